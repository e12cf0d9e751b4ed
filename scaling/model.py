"""A decoder-only transformer in Flax linen, meant to be read top to bottom.

Llama-style blocks: RMSNorm -> grouped-query attention with rotary embeddings -> residual,
RMSNorm -> SwiGLU MLP -> residual. The layers are stacked with `nn.scan`, so compile time does
not grow with depth, and every parameter carries logical axis names that
`scaling.partitioning` maps onto a device mesh. Parameters are float32; activations run in
`ModelConfig.dtype` (bfloat16 on accelerators, float32 on CPU).

Decoding with a key/value cache uses the same modules: pass `cache` (from `init_cache`) and the
absolute `positions` of the new tokens, and the layers read and update the cache in place.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from scaling.configuration import ConfigError

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The architecture. Every field is a knob a scaling study may vary."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: as many as n_heads (multi-head attention)
    head_dim: int | None = None  # None: d_model // n_heads
    d_ff: int = 256
    vocab_size: int = 264
    seq_len: int = 256
    tie_embeddings: bool = False
    dtype: str = "float32"
    remat: bool = False
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self):
        for name, kind in (("d_model", int), ("n_layers", int), ("n_heads", int), ("d_ff", int),
                           ("vocab_size", int), ("seq_len", int)):
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ConfigError(f"ModelConfig.{name} must be an integer, got {value!r}")
            if value <= 0:
                raise ConfigError(f"ModelConfig.{name} must be positive, got {value}")
        for name in ("n_kv_heads", "head_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"ModelConfig.{name} must be a positive integer or None, got {value!r}")
        for name in ("tie_embeddings", "remat"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"ModelConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"ModelConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"ModelConfig.n_heads={self.n_heads} does not divide ModelConfig.d_model={self.d_model}; "
                "set ModelConfig.head_dim explicitly or choose a divisor")
        if self.n_heads % self.kv_heads:
            raise ConfigError(
                f"ModelConfig.n_kv_heads={self.kv_heads} does not divide ModelConfig.n_heads={self.n_heads}")
        if self.dim_per_head % 2:
            raise ConfigError(f"ModelConfig.head_dim must be even for rotary embeddings, got {self.dim_per_head}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def _param(module: nn.Module, name: str, shape, axes, init):
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


class RMSNorm(nn.Module):
    eps: float
    dtype: Any

    @nn.compact
    def __call__(self, x):
        scale = _param(self, "scale", (x.shape[-1],), ("embed",), nn.initializers.ones)
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (x32 * scale).astype(self.dtype)


def rotary(x, positions, base: float):
    """Rotate pairs of channels by position-dependent angles (RoPE, Su et al. 2021)."""
    half = x.shape[-1] // 2
    freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[..., None].astype(jnp.float32) * freqs  # [batch, seq, half]
    sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, positions, cache=None, segment_ids=None):
        c, dt = self.config, self.config.compute_dtype
        init = nn.initializers.normal(stddev=c.d_model ** -0.5)
        wq = _param(self, "query", (c.d_model, c.n_heads, c.dim_per_head), ("embed", "heads", "head_dim"), init)
        wk = _param(self, "key", (c.d_model, c.kv_heads, c.dim_per_head), ("embed", "kv_heads", "head_dim"), init)
        wv = _param(self, "value", (c.d_model, c.kv_heads, c.dim_per_head), ("embed", "kv_heads", "head_dim"), init)
        wo = _param(self, "out", (c.n_heads, c.dim_per_head, c.d_model), ("heads", "head_dim", "embed"),
                    nn.initializers.normal(stddev=(c.n_heads * c.dim_per_head * 2 * c.n_layers) ** -0.5))
        q, k, v = (_project(x, w.astype(dt)) for w in (wq, wk, wv))
        q, k = rotary(q, positions, c.rope_base), rotary(k, positions, c.rope_base)
        if cache is None:
            # Packed sequences: a token attends only within its own document (segment).
            same_segment = None if segment_ids is None else \
                (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
            out = jax.nn.dot_product_attention(q, k, v, mask=same_segment, is_causal=True)
        else:
            k_all, v_all, cache = _update_cache(cache, k, v, positions)
            # Each new token sees every cached position at or before its own.
            mask = jnp.arange(k_all.shape[1])[None, None, None, :] <= positions[:, None, :, None]
            out = jax.nn.dot_product_attention(q, k_all.astype(dt), v_all.astype(dt), mask=mask)
        return _project(out, wo.astype(dt), in_dims=2), cache


def _project(x, w, in_dims: int = 1):
    """x [batch, seq, *in] @ w [*in, *out] as one 2-D matmul over batch*seq rows.

    Same result as the einsum; XLA:CPU computes the weight gradient of a contraction over two
    batch dimensions several times slower than the 2-D x^T @ dy (benchmarks/train_step.py).
    """
    lead, inner = x.shape[:2], w.shape[:in_dims]
    out = w.shape[in_dims:]
    flat = x.reshape(lead[0] * lead[1], math.prod(inner)) @ w.reshape(math.prod(inner), math.prod(out))
    return flat.reshape(*lead, *out)


def _update_cache(cache, k, v, positions):
    """Write the new keys/values at their positions; return the full cache and the new one."""
    write = jax.vmap(lambda buf, new, start: jax.lax.dynamic_update_slice_in_dim(buf, new, start, axis=0))
    keys = write(cache["key"], k.astype(cache["key"].dtype), positions[:, 0])
    values = write(cache["value"], v.astype(cache["value"].dtype), positions[:, 0])
    return keys, values, {"key": keys, "value": values}


class MLP(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x):
        c, dt = self.config, self.config.compute_dtype
        init = nn.initializers.normal(stddev=c.d_model ** -0.5)
        gate = _param(self, "gate", (c.d_model, c.d_ff), ("embed", "mlp"), init)
        up = _param(self, "up", (c.d_model, c.d_ff), ("embed", "mlp"), init)
        down = _param(self, "down", (c.d_ff, c.d_model), ("mlp", "embed"),
                      nn.initializers.normal(stddev=(c.d_ff * 2 * c.n_layers) ** -0.5))
        hidden = nn.silu(_project(x, gate.astype(dt))) * _project(x, up.astype(dt))
        return _project(hidden, down.astype(dt))


class Block(nn.Module):
    """One transformer layer; `nn.scan` stacks n_layers of these (carry = residual stream)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, positions, cache, segment_ids):
        c = self.config
        attended, cache = Attention(c, name="attention")(RMSNorm(c.norm_eps, c.compute_dtype, name="attention_norm")(x),
                                                         positions, cache, segment_ids)
        x = x + attended
        x = x + MLP(c, name="mlp")(RMSNorm(c.norm_eps, c.compute_dtype, name="mlp_norm")(x))
        return x, cache


class Transformer(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, positions=None, cache=None, segment_ids=None):
        """tokens [batch, seq] -> logits [batch, seq, vocab] (float32), and the updated cache.

        positions: absolute positions (default 0..seq-1; packed data restarts them per document);
        segment_ids: document ids of packed tokens (attention stays within a document);
        cache: a KV cache from `init_cache` for incremental decoding.
        """
        c = self.config
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        embedding = _param(self, "embedding", (c.vocab_size, c.d_model), ("vocab", "embed"),
                           nn.initializers.normal(stddev=1.0))
        x = embedding.astype(c.compute_dtype)[tokens]
        block = nn.remat(Block, prevent_cse=False) if c.remat else Block
        layers = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                         in_axes=(nn.broadcast, 0, nn.broadcast), length=c.n_layers,
                         metadata_params={nn.PARTITION_NAME: "layers"})
        x, cache = layers(c, name="layers")(x, positions, cache, segment_ids)
        x = RMSNorm(c.norm_eps, c.compute_dtype, name="final_norm")(x)
        if c.tie_embeddings:
            logits = x @ embedding.astype(c.compute_dtype).T
        else:
            unembedding = _param(self, "unembedding", (c.d_model, c.vocab_size), ("embed", "vocab"),
                                 nn.initializers.normal(stddev=c.d_model ** -0.5))
            logits = x @ unembedding.astype(c.compute_dtype)
        return logits.astype(jnp.float32), cache


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype=jnp.float32):
    """An empty key/value cache: one [layers, batch, max_len, kv_heads, head_dim] buffer each."""
    shape = (config.n_layers, batch, max_len, config.kv_heads, config.dim_per_head)
    return {"key": jnp.zeros(shape, dtype), "value": jnp.zeros(shape, dtype)}


def init_params(config: ModelConfig, rng: jax.Array):
    """Initialised parameters (boxed with their logical axis names)."""
    tokens = jnp.zeros((1, min(8, config.seq_len)), jnp.int32)
    return Transformer(config).init(rng, tokens)["params"]


def param_shapes(config: ModelConfig):
    """Parameter shapes without allocating memory (works for multi-billion configurations)."""
    return jax.eval_shape(lambda: nn.unbox(init_params(config, jax.random.PRNGKey(0))))
