"""The compiled functions of a run: parameter and optimizer-state initialisation, the training
step and the evaluation sums, jitted with the mesh's shardings (the sweep's throughput
measurement compiles the same step)."""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import numpy as np
import jax
import jax.numpy as jnp
import optax

from scaling import partitioning
from scaling.model import ModelConfig, Transformer, init_params

# Arrays the training step reads; the masks used only for counting stay on the host.
STEP_KEYS = ("inputs", "targets", "positions", "segment_ids", "loss_weights")
EVAL_KEYS = STEP_KEYS + ("hard_mask", "target_bytes")


def token_loss_sums(config: ModelConfig, params, batch):
    """Per-token cross entropy (nats) and the batch's loss weights."""
    logits, _ = Transformer(config).apply({"params": params}, batch["inputs"], batch["positions"], None,
                                          batch["segment_ids"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]), batch["loss_weights"]


@dataclasses.dataclass
class Compiled:
    """The run's jitted functions, their shardings and the abstract state (for restoring)."""

    init: callable
    step: callable
    evaluate: callable
    abstract_params: object
    abstract_opt_state: object
    mesh: object


def compile_functions(config: ModelConfig, tx: optax.GradientTransformation, mesh, seed: int) -> Compiled:
    def init_boxed():
        params = init_params(config, jax.random.PRNGKey(seed))
        return params, tx.init(params)

    boxed = jax.eval_shape(init_boxed)
    param_shardings, opt_shardings = partitioning.shardings_for(boxed, mesh)
    abstract_params, abstract_opt = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), nn.unbox(boxed),
        (param_shardings, opt_shardings))
    batch_sharding = partitioning.batch_sharding(mesh)
    scalar = partitioning.replicated(mesh)

    def step(params, opt_state, batch, learning_rate):
        def mean_loss(p):
            losses, weights = token_loss_sums(config, p, batch)
            return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)

        loss, grads = jax.value_and_grad(mean_loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - learning_rate * u, params, updates)
        return params, opt_state, loss

    def evaluate(params, batch):
        """Sums over the batch: loss, weight, hard loss, hard weight, easy loss, easy weight, bytes."""
        losses, weights = token_loss_sums(config, params, batch)
        hard = weights * batch["hard_mask"]
        easy = weights - hard
        return jnp.stack([(losses * weights).sum(), weights.sum(), (losses * hard).sum(), hard.sum(),
                          (losses * easy).sum(), easy.sum(), (batch["target_bytes"] * weights).sum()])

    return Compiled(
        init=jax.jit(lambda: nn.unbox(init_boxed()), out_shardings=(param_shardings, opt_shardings)),
        step=jax.jit(step, in_shardings=(param_shardings, opt_shardings, batch_sharding, scalar),
                     out_shardings=(param_shardings, opt_shardings, scalar), donate_argnums=(0, 1)),
        evaluate=jax.jit(evaluate, in_shardings=(param_shardings, batch_sharding), out_shardings=scalar),
        abstract_params=abstract_params, abstract_opt_state=abstract_opt, mesh=mesh)


def eval_metrics(sums: np.ndarray) -> dict[str, float]:
    """The evaluation row's metrics from `evaluate`'s sums over the evaluation batches: loss (nats
    per token), bits per byte, and the loss on tokens in and outside hard spans (NaN for none)."""
    loss_sum, weight, hard_sum, hard_weight, easy_sum, easy_weight, n_bytes = sums
    return {"eval_loss": loss_sum / max(weight, 1.0),
            "eval_bpb": loss_sum / math.log(2) / max(n_bytes, 1.0),
            "eval_loss_hard": hard_sum / hard_weight if hard_weight else float("nan"),
            "eval_loss_easy": easy_sum / easy_weight if easy_weight else float("nan")}
