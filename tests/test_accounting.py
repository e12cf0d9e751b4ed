import random

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import accounting
from scaling.model import ATTENTION_BLOCK, ModelConfig, Transformer, param_shapes


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _random_config(rng: random.Random) -> ModelConfig:
    kv = rng.choice([1, 2, 4])
    n_heads = kv * rng.choice([1, 2, 3])
    head_dim = rng.choice([8, 16, 32])
    return ModelConfig(d_model=rng.choice([16, 24, 64, 96]), n_layers=rng.randint(1, 5), n_heads=n_heads,
                       n_kv_heads=kv, head_dim=head_dim, d_ff=rng.choice([32, 80, 200]),
                       vocab_size=rng.choice([7, 264, 1000]), seq_len=64, tie_embeddings=rng.random() < 0.5)


@pytest.mark.parametrize("seed", range(25))
def test_analytic_params_equal_initialised_model(seed):
    config = _random_config(random.Random(seed))
    count = accounting.param_count(config)
    assert count.total == _count(param_shapes(config))
    embeddings = config.vocab_size * config.d_model * (1 if config.tie_embeddings else 2)
    assert count.non_embedding == count.total - embeddings


PUBLIC = {
    # name: (d_model, n_layers, n_heads, n_kv_heads, d_ff, vocab, published parameter count)
    "llama-2-7b": (4096, 32, 32, 32, 11008, 32000, 6_738_415_616),
    "llama-2-13b": (5120, 40, 40, 40, 13824, 32000, 13_015_864_320),
    "mistral-7b-v0.1": (4096, 32, 32, 8, 14336, 32000, 7_241_732_096),
    "llama-3-8b": (4096, 32, 32, 8, 14336, 128256, 8_030_261_248),
    "tinyllama-1.1b": (2048, 22, 32, 4, 5632, 32000, 1_100_048_384),
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_architectures_match_published_counts(name):
    d, layers, heads, kv, ff, vocab, published = PUBLIC[name]
    config = ModelConfig(d_model=d, n_layers=layers, n_heads=heads, n_kv_heads=kv, d_ff=ff,
                         vocab_size=vocab, seq_len=4096)
    assert accounting.param_count(config).total == published
    assert _count(param_shapes(config)) == published  # eval_shape: no memory for 13B


def test_flops_agree_with_xla_cost_analysis():
    # One layer: XLA's cost analysis counts a scanned (while-loop) body once, not n_layers times.
    config = ModelConfig(d_model=256, n_layers=1, n_heads=4, d_ff=1024, vocab_size=264, seq_len=256)
    params = param_shapes(config)
    tokens = jax.ShapeDtypeStruct((1, config.seq_len), jnp.int32)
    compiled = jax.jit(lambda p, t: Transformer(config).apply({"params": p}, t)[0]).lower(params, tokens).compile()
    analysis = compiled.cost_analysis()
    xla_flops = (analysis[0] if isinstance(analysis, list) else analysis)["flops"]
    ours = accounting.forward_flops_breakdown(config, causal=False)
    # The model computes causal attention in blocks of ATTENTION_BLOCK queries, each against the
    # keys up to its end, so XLA executes that share of the S^2 query/key pairs.
    s, block = config.seq_len, ATTENTION_BLOCK
    executed_pairs = sum(min(start + block, s) * (min(start + block, s) - start) for start in range(0, s, block))
    pair_terms = ("attention_logits", "softmax", "attention_values")
    # The embedding lookup is a gather (no FLOPs for XLA); Chinchilla counts it as a matmul.
    ours_executed = sum(v * (executed_pairs / s**2 if k in pair_terms else 1) for k, v in ours.items()
                        if k != "embedding")
    assert abs(xla_flops - ours_executed) / ours_executed < 0.03


def test_training_flops_terms_and_causal_halving():
    c = ModelConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, vocab_size=264, seq_len=128)
    full = accounting.forward_flops_breakdown(c, causal=False)
    causal = accounting.forward_flops_breakdown(c, causal=True)
    s = c.seq_len
    assert causal["attention_logits"] == pytest.approx(full["attention_logits"] * (s + 1) / (2 * s))
    assert causal["mlp"] == full["mlp"] == 2 * s * 3 * 64 * 256 * 2
    assert accounting.training_flops_per_token(c, causal=False) == pytest.approx(3 * sum(full.values()) / s)
    assert accounting.six_n_flops_per_token(c) == 6 * accounting.param_count(c).total


def test_inference_flops_per_query_is_the_sum_over_processed_tokens():
    c = ModelConfig(d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=160, vocab_size=264)
    prompt, generated = 17, 9
    direct = sum(accounting.inference_flops_per_token(c, t) for t in range(1, prompt + generated))
    assert accounting.inference_flops_per_query(c, prompt, generated) == pytest.approx(direct)
    # one forward at context t costs what a causal pass charges its t-th token
    seq = 12
    causal_forward = sum(accounting.forward_flops_breakdown(c, seq, causal=True).values())
    assert causal_forward == pytest.approx(accounting.inference_flops_per_query(c, seq, 1))


def test_architecture_terms():
    c = ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=512)
    assert accounting.mlp_attn_ratio(c) == pytest.approx(3 * 128 * 512 / (4 * 128 * 128))
    assert accounting.d_model_over_sqrt_n(c) == pytest.approx(128 / accounting.param_count(c).non_embedding ** 0.5)
