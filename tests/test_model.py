import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.configuration import ConfigError
from scaling.model import ModelConfig, Transformer, init_cache, init_params

import flax.linen as nn


def _forward(config, params, tokens):
    return Transformer(config).apply({"params": params}, tokens)[0]


@pytest.mark.parametrize("overrides", [{}, {"n_kv_heads": 2}, {"tie_embeddings": True}, {"remat": True}])
def test_forward_shapes_and_causality(overrides):
    config = ModelConfig(d_model=32, n_layers=3, n_heads=4, d_ff=64, vocab_size=50, seq_len=16, **overrides)
    params = nn.unbox(init_params(config, jax.random.PRNGKey(0)))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 50)
    logits = _forward(config, params, tokens)
    assert logits.shape == (2, 16, 50) and logits.dtype == jnp.float32
    changed = tokens.at[:, 10].set((tokens[:, 10] + 1) % 50)
    np.testing.assert_allclose(_forward(config, params, changed)[:, :10], logits[:, :10], atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
    config = ModelConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, vocab_size=50, dtype="bfloat16")
    params = nn.unbox(init_params(config, jax.random.PRNGKey(0)))
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
    assert _forward(config, params, jnp.zeros((1, 8), jnp.int32)).dtype == jnp.float32


def test_kv_cache_decoding_matches_full_forward():
    config = ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, vocab_size=50, seq_len=32)
    params = nn.unbox(init_params(config, jax.random.PRNGKey(0)))
    tokens = jax.random.randint(jax.random.PRNGKey(2), (2, 12), 0, 50)
    full = _forward(config, params, tokens)
    cache = init_cache(config, batch=2, max_len=32)
    model = Transformer(config)
    prompt_logits, cache = model.apply({"params": params}, tokens[:, :5], jnp.broadcast_to(jnp.arange(5), (2, 5)), cache,
                                        cache_index=0)
    np.testing.assert_allclose(prompt_logits, full[:, :5], atol=1e-4)
    for t in range(5, 12):
        step_logits, cache = model.apply({"params": params}, tokens[:, t:t + 1], jnp.full((2, 1), t), cache,
                                        cache_index=t)
        np.testing.assert_allclose(step_logits[:, 0], full[:, t], atol=1e-4)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_heads": 3}, "n_heads"),
    ({"n_kv_heads": 3}, "n_kv_heads"),
    ({"d_model": 0}, "d_model"),
    ({"d_ff": -1}, "d_ff"),
    ({"vocab_size": 2.5}, "vocab_size"),
    ({"dtype": "float64"}, "dtype"),
    ({"head_dim": 7, "n_heads": 1}, "head_dim"),
])
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{"d_model": 64, "n_heads": 4, **kwargs})


def test_packed_segments_do_not_attend_across_documents():
    config = ModelConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, vocab_size=50, seq_len=16)
    params = nn.unbox(init_params(config, jax.random.PRNGKey(0)))
    model = Transformer(config)
    first, second = jnp.array([[5, 6, 7, 8, 9]]), jnp.array([[10, 11, 12]])
    packed = jnp.concatenate([first, second], axis=1)
    segments = jnp.array([[1, 1, 1, 1, 1, 2, 2, 2]])
    positions = jnp.array([[0, 1, 2, 3, 4, 0, 1, 2]])
    logits = model.apply({"params": params}, packed, positions, None, segments)[0]
    alone = model.apply({"params": params}, second)[0]
    np.testing.assert_allclose(logits[:, 5:], alone, atol=1e-5)


@pytest.mark.parametrize("length, kv_heads", [(70, 4), (64, 2)])
def test_blocked_causal_attention_equals_one_masked_softmax(length, kv_heads):
    """The blocked attention of training computes what one masked softmax over the whole
    sequence does (jax.nn.dot_product_attention), with packed segments and grouped queries."""
    from scaling.model import causal_attention

    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    q = jax.random.normal(keys[0], (2, length, 4, 8))
    k, v = (jax.random.normal(key, (2, length, kv_heads, 8)) for key in keys[1:])
    segments = jnp.asarray(np.sort(np.random.default_rng(0).integers(0, 4, (2, length)), axis=1))
    same = segments[:, None, :, None] == segments[:, None, None, :]
    expected = jax.nn.dot_product_attention(q, k, v, mask=same, is_causal=True)
    np.testing.assert_allclose(causal_attention(q, k, v, segments), expected, atol=1e-5)
    np.testing.assert_allclose(causal_attention(q, k, v), jax.nn.dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-5)
