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
from scaling.data.batches import EVAL_MASKS, STEP_KEYS
from scaling.model import ModelConfig, Transformer, init_params

# Arrays the evaluation reads (the training step reads STEP_KEYS; the masks used only for
# counting stay on the host).
EVAL_KEYS = STEP_KEYS + EVAL_MASKS


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
        """The batch's sums, by name: loss and weight over all tokens, hard-span and other tokens,
        and the bytes the targets stand for."""
        losses, weights = token_loss_sums(config, params, batch)
        hard = weights * batch["hard_mask"]
        easy = weights - hard
        return {"loss": (losses * weights).sum(), "weight": weights.sum(),
                "hard_loss": (losses * hard).sum(), "hard_weight": hard.sum(),
                "easy_loss": (losses * easy).sum(), "easy_weight": easy.sum(),
                "target_bytes": (batch["target_bytes"] * weights).sum()}

    return Compiled(
        init=jax.jit(lambda: nn.unbox(init_boxed()), out_shardings=(param_shardings, opt_shardings)),
        step=jax.jit(step, in_shardings=(param_shardings, opt_shardings, batch_sharding, scalar),
                     out_shardings=(param_shardings, opt_shardings, scalar), donate_argnums=(0, 1)),
        evaluate=jax.jit(evaluate, in_shardings=(param_shardings, batch_sharding), out_shardings=scalar),
        abstract_params=abstract_params, abstract_opt_state=abstract_opt, mesh=mesh)


def summed(totals) -> dict[str, float]:
    """`evaluate`'s sums added over the evaluation batches, by name, in float64."""
    out: dict[str, float] = {}
    for sums in totals:
        for name, value in sums.items():
            out[name] = out.get(name, 0.0) + float(np.float64(value))
    return out


def eval_metrics(sums: dict[str, float]) -> dict[str, float]:
    """The evaluation row's metrics from `evaluate`'s sums over the evaluation batches: loss (nats
    per token), bits per byte, and the loss on tokens in and outside hard spans (NaN for none)."""
    hard_weight, easy_weight = sums["hard_weight"], sums["easy_weight"]
    return {"eval_loss": sums["loss"] / max(sums["weight"], 1.0),
            "eval_bpb": sums["loss"] / math.log(2) / max(sums["target_bytes"], 1.0),
            "eval_loss_hard": sums["hard_loss"] / hard_weight if hard_weight else float("nan"),
            "eval_loss_easy": sums["easy_loss"] / easy_weight if easy_weight else float("nan")}
