"""The optimizer: AdamW without the learning rate, which the step applies (it follows tokens)."""

from __future__ import annotations

import jax
import optax


def make_optimizer(beta1: float, beta2: float, weight_decay: float, grad_clip: float,
                   eps: float = 1e-8) -> optax.GradientTransformation:
    """AdamW without the learning rate, which the step applies (it follows tokens, not steps).

    Weight decay is decoupled (scaled by the learning rate, as optax.adamw does) and skips norm
    scales. grad_clip <= 0 turns clipping off.
    """
    def decay_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: not any(getattr(k, "key", None) == "scale" for k in path), params)

    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    parts += [optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps),
              optax.add_decayed_weights(weight_decay, mask=decay_mask)]
    return optax.chain(*parts)
