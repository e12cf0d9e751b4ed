"""A decoder-only transformer in Flax linen, meant to be read top to bottom.

Llama-style blocks: RMSNorm -> grouped-query attention with rotary embeddings -> residual,
RMSNorm -> SwiGLU MLP -> residual. The layers are stacked with `nn.scan`, so compile time does
not grow with depth, and every parameter carries logical axis names that
`scaling.partitioning` maps onto a device mesh. Parameters are float32; activations run in
`ModelConfig.dtype` (bfloat16 on accelerators, float32 on CPU).

Decoding with a key/value cache uses the same modules: pass `cache` (from `init_cache`), the
slot `cache_index` where the new tokens go (one index for the whole batch, so the write is one
in-place slice update) and their absolute `positions` (rows may be left-padded: a row's slot and
position differ by its padding, and slots before its first token stay masked).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.model_config import ModelConfig

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
    def __call__(self, x, positions, cache=None, segment_ids=None, cache_index=None):
        c, dt = self.config, self.config.compute_dtype
        init = nn.initializers.normal(stddev=c.d_model ** -0.5)
        wq = _param(self, "query", (c.d_model, c.n_heads, c.dim_per_head), ("embed", "heads", "head_dim"), init)
        wk = _param(self, "key", (c.d_model, c.kv_heads, c.dim_per_head), ("embed", "kv_heads", "head_dim"), init)
        wv = _param(self, "value", (c.d_model, c.kv_heads, c.dim_per_head), ("embed", "kv_heads", "head_dim"), init)
        wo = _param(self, "out", (c.n_heads, c.dim_per_head, c.d_model), ("heads", "head_dim", "embed"),
                    nn.initializers.normal(stddev=(c.n_heads * c.dim_per_head * 2 * c.n_layers) ** -0.5))
        q = _project(x, wq.astype(dt))  # x[b,s,d] @ wq[d,h*k] -> q[b,s,h,k]
        k = _project(x, wk.astype(dt))  # x[b,s,d] @ wk[d,g*k] -> k[b,s,g,k]  (g: kv heads)
        v = _project(x, wv.astype(dt))  # x[b,s,d] @ wv[d,g*k] -> v[b,s,g,k]
        q, k = rotary(q, positions, c.rope_base), rotary(k, positions, c.rope_base)
        if cache is None:
            out, new = causal_attention(q, k, v, segment_ids), None
        else:
            out = _attend_with_cache(q, k, v, cache, positions, cache_index).astype(dt)
            new = {"key": k.astype(cache["key"].dtype), "value": v.astype(cache["value"].dtype)}
        return _project(out, wo.astype(dt), in_dims=2), new  # out[b,s,h*k] @ wo[h*k,d] -> [b,s,d]


ATTENTION_BLOCK = 32  # query rows per block of causal attention
# Up to this depth the scan over layers is unrolled: a shallow model's per-layer stacking of
# activations (the scan's loop state) costs more than its compilation saves; deeper models keep
# the scan, whose compile time does not grow with depth.
UNROLL_LAYERS = 8


def causal_attention(q, k, v, segment_ids=None):
    """Causal attention within documents (packed sequences: a token sees only earlier tokens of
    its own segment), computed in blocks of ATTENTION_BLOCK queries, each against the keys up to
    its end only. The same numbers as one masked softmax over the whole sequence (masked scores
    contribute exact zeros), in about half the work, and in score tiles small enough to stay in
    cache: on a CPU, small models spend most of a training step on the seq x seq score tensors.

    q [batch, seq, heads, head_dim]; k, v [batch, seq, kv_heads, head_dim]; segment_ids [batch, seq]."""
    batch, length, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    grouped = q.reshape(batch, length, kv_heads, heads // kv_heads, head_dim)
    index = jnp.arange(length)
    lowest = -0.7 * float(jnp.finfo(jnp.float32).max)  # what jax.nn.dot_product_attention masks with
    blocks = []
    for start in range(0, length, ATTENTION_BLOCK):
        end = min(start + ATTENTION_BLOCK, length)
        scores = jnp.einsum("btkgh,bskh->bkgts", grouped[:, start:end], k[:, :end],
                            preferred_element_type=jnp.float32) * jnp.float32(head_dim ** -0.5)
        visible = index[None, :end] <= index[start:end, None]  # [queries, keys]
        if segment_ids is not None:
            visible = visible & (segment_ids[:, start:end, None] == segment_ids[:, None, :end])
        scores = jnp.where(visible.reshape(-1, 1, 1, end - start, end), scores, lowest)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        blocks.append(jnp.einsum("bkgts,bskh->btkgh", probs, v[:, :end]))
    return jnp.concatenate(blocks, axis=1).reshape(batch, length, heads, head_dim)


def _attend_with_cache(q, k, v, cache, positions, cache_index):
    """Attention of new tokens over the cached slots and over each other, as two blocks of scores
    under one softmax: the cache is only read (the caller writes the new keys and values into it
    with one slice update), so a decoding step never copies it.

    q [batch, new, heads, head_dim]; k, v [batch, new, kv_heads, head_dim]; cache layer buffers
    [batch, slots, kv_heads, head_dim], written up to `cache_index`. Slot s of a row holds
    position s - shift (shift: the row's left padding); negative positions are padding."""
    batch, new, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    q = q.reshape(batch, new, kv_heads, heads // kv_heads, head_dim).astype(jnp.float32) * head_dim ** -0.5
    slots = jnp.arange(cache["key"].shape[1])[None, :]
    slot_positions = slots - (cache_index - positions[:, :1])
    cached = (slot_positions >= 0) & (slots < cache_index)  # [batch, slots]
    among_new = (positions[:, None, :] <= positions[:, :, None]) & (positions[:, None, :] >= 0)  # [b, query, key]
    lowest = jnp.finfo(jnp.float32).min  # a fully masked row (padding) gets uniform weights, not NaN
    scores_new = jnp.where(among_new[:, None, None, :, :], jnp.einsum("btkgh,bskh->bkgts", q, k.astype(jnp.float32)),
                           lowest)
    if isinstance(cache_index, int) and cache_index == 0:  # the prompt of an empty cache: nothing to read
        out = jnp.einsum("bkgts,bskh->btkgh", jax.nn.softmax(scores_new, axis=-1), v.astype(jnp.float32))
        return out.reshape(batch, new, heads, head_dim)
    scores_cached = jnp.einsum("btkgh,bskh->bkgts", q, cache["key"].astype(jnp.float32))
    weights = jax.nn.softmax(jnp.concatenate([jnp.where(cached[:, None, None, None, :], scores_cached, lowest),
                                              scores_new], axis=-1), axis=-1)
    n_slots = cache["key"].shape[1]
    out = jnp.einsum("bkgts,bskh->btkgh", weights[..., :n_slots], cache["value"].astype(jnp.float32)) + \
        jnp.einsum("bkgts,bskh->btkgh", weights[..., n_slots:], v.astype(jnp.float32))
    return out.reshape(batch, new, heads, head_dim)


def _project(x, w, in_dims: int = 1):
    """x [batch, seq, *in] @ w [*in, *out] as one 2-D matmul over batch*seq rows.

    Same result as the einsum; XLA:CPU computes the weight gradient of a contraction over two
    batch dimensions several times slower than the 2-D x^T @ dy (benchmarks/train_step.py).
    """
    lead, inner = x.shape[:2], w.shape[:in_dims]
    out = w.shape[in_dims:]
    flat = x.reshape(lead[0] * lead[1], math.prod(inner)) @ w.reshape(math.prod(inner), math.prod(out))
    return flat.reshape(*lead, *out)


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
        # x[b,s,d] @ gate[d,f] -> [b,s,f], and the same with up; silu(gate) * up -> hidden[b,s,f]
        hidden = nn.silu(_project(x, gate.astype(dt))) * _project(x, up.astype(dt))
        return _project(hidden, down.astype(dt))  # hidden[b,s,f] @ down[f,d] -> [b,s,d]


class Block(nn.Module):
    """One transformer layer; `nn.scan` stacks n_layers of these (carry = residual stream)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, positions, cache, segment_ids, cache_index):
        c = self.config
        attended, new = Attention(c, name="attention")(RMSNorm(c.norm_eps, c.compute_dtype, name="attention_norm")(x),
                                                         positions, cache, segment_ids, cache_index)
        x = x + attended
        x = x + MLP(c, name="mlp")(RMSNorm(c.norm_eps, c.compute_dtype, name="mlp_norm")(x))
        return x, new


class Transformer(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, positions=None, cache=None, segment_ids=None, cache_index=None):
        """tokens [batch, seq] -> logits [batch, seq, vocab] (float32), and the updated cache.

        positions: absolute positions (default 0..seq-1; packed data restarts them per document);
        segment_ids: document ids of packed tokens (attention stays within a document);
        cache: a KV cache from `init_cache` for incremental decoding, with cache_index the slot
        (shared by the batch) where tokens[:, 0] is written.
        """
        c = self.config
        if cache is not None and cache_index is None:
            raise ValueError("decoding with a cache needs cache_index, the slot of the first new token")
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        embedding = _param(self, "embedding", (c.vocab_size, c.d_model), ("vocab", "embed"),
                           nn.initializers.normal(stddev=1.0))
        x = embedding.astype(c.compute_dtype)[tokens]
        block = nn.remat(Block, prevent_cse=False) if c.remat else Block
        layers = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                         in_axes=(nn.broadcast, 0, nn.broadcast, nn.broadcast), length=c.n_layers,
                         unroll=c.n_layers if c.n_layers <= UNROLL_LAYERS else 1,
                         metadata_params={nn.PARTITION_NAME: "layers"})
        x, new = layers(c, name="layers")(x, positions, cache, segment_ids, cache_index)
        if cache is not None:  # one in-place slice update of the [layers, batch, slots, ...] buffers
            cache = {name: jax.lax.dynamic_update_slice_in_dim(cache[name], new[name], cache_index, axis=2)
                     for name in cache}
        x = RMSNorm(c.norm_eps, c.compute_dtype, name="final_norm")(x)
        if c.tie_embeddings:
            logits = x @ embedding.astype(c.compute_dtype).T  # x[b,s,d] @ embedding[v,d]^T -> logits[b,s,v]
        else:
            unembedding = _param(self, "unembedding", (c.d_model, c.vocab_size), ("embed", "vocab"),
                                 nn.initializers.normal(stddev=c.d_model ** -0.5))
            logits = x @ unembedding.astype(c.compute_dtype)  # x[b,s,d] @ unembedding[d,v] -> logits[b,s,v]
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
