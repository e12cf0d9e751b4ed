"""Parameter counts and FLOPs, computed from the architecture (never assumed).

Conventions, so the laws know what they are fitted on:
- `params` counts every trainable weight; `params_non_embedding` leaves out the input
  embedding and the (untied) output unembedding, as Kaplan et al. 2020 do.
- Training FLOPs follow Chinchilla's appendix F (Hoffmann et al. 2022): embeddings, QKV
  projections, attention logits, softmax (3 FLOPs per logit), attention over values, output
  projection, MLP and output logits, each a multiply-add counted as 2 FLOPs; backward = 2x
  forward. We extend it to grouped-query attention (K and V have n_kv_heads heads) and SwiGLU
  (three d_model x d_ff matrices). Norms, rotary and activation functions are not counted, as in
  Chinchilla. `causal=True` counts only the query/key pairs a causal mask keeps: S(S+1)/2.
- Inference counts one forward pass per processed token with a KV cache: a token at context
  length t attends over t positions (itself included).
"""

from __future__ import annotations

import dataclasses
import math

from scaling.model_config import ModelConfig


@dataclasses.dataclass(frozen=True)
class ParamCount:
    embedding: int
    unembedding: int
    attention_per_layer: int
    mlp_per_layer: int
    norms_per_layer: int
    final_norm: int
    n_layers: int

    @property
    def total(self) -> int:
        per_layer = self.attention_per_layer + self.mlp_per_layer + self.norms_per_layer
        return self.embedding + self.unembedding + self.n_layers * per_layer + self.final_norm

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding - self.unembedding


def param_count(c: ModelConfig) -> ParamCount:
    q_and_out = 2 * c.d_model * c.n_heads * c.dim_per_head
    k_and_v = 2 * c.d_model * c.kv_heads * c.dim_per_head
    return ParamCount(
        embedding=c.vocab_size * c.d_model,
        unembedding=0 if c.tie_embeddings else c.d_model * c.vocab_size,
        attention_per_layer=q_and_out + k_and_v,
        mlp_per_layer=3 * c.d_model * c.d_ff,
        norms_per_layer=2 * c.d_model,
        final_norm=c.d_model,
        n_layers=c.n_layers,
    )


def forward_flops_breakdown(c: ModelConfig, seq_len: int | None = None, causal: bool = False) -> dict[str, float]:
    """Forward FLOPs of one sequence of `seq_len` tokens, by Chinchilla's terms."""
    s = seq_len or c.seq_len
    heads_dim = c.n_heads * c.dim_per_head
    # Query/key pairs per head: all S^2, or the S(S+1)/2 a causal mask keeps.
    pairs = s * (s + 1) / 2 if causal else s * s
    per_layer = {
        "qkv_projections": 2 * s * c.d_model * (c.n_heads + 2 * c.kv_heads) * c.dim_per_head,
        "attention_logits": 2 * pairs * heads_dim,
        "softmax": 3 * pairs * c.n_heads,
        "attention_values": 2 * pairs * heads_dim,
        "output_projection": 2 * s * heads_dim * c.d_model,
        "mlp": 2 * s * 3 * c.d_model * c.d_ff,
    }
    out = {"embedding": 2 * s * c.vocab_size * c.d_model}
    out.update({k: c.n_layers * v for k, v in per_layer.items()})
    out["output_logits"] = 2 * s * c.d_model * c.vocab_size
    return out


def training_flops_per_token(c: ModelConfig, seq_len: int | None = None, causal: bool = True) -> float:
    """Forward plus backward (2x forward) FLOPs per trained token at sequence length seq_len."""
    s = seq_len or c.seq_len
    return 3 * sum(forward_flops_breakdown(c, s, causal).values()) / s


def six_n_flops_per_token(c: ModelConfig) -> float:
    """The 6N approximation (Kaplan et al. 2020; Chinchilla's C = 6ND), N = all parameters."""
    return 6.0 * param_count(c).total


def inference_flops_per_token(c: ModelConfig, context: int) -> float:
    """Forward FLOPs of one token at context length `context` (itself included) with a KV cache."""
    t = context
    heads_dim = c.n_heads * c.dim_per_head
    per_layer = (2 * c.d_model * (c.n_heads + 2 * c.kv_heads) * c.dim_per_head  # qkv
                 + 2 * t * heads_dim + 3 * t * c.n_heads + 2 * t * heads_dim  # logits, softmax, values
                 + 2 * heads_dim * c.d_model + 2 * 3 * c.d_model * c.d_ff)  # output projection, mlp
    return 2 * c.vocab_size * c.d_model + c.n_layers * per_layer + 2 * c.d_model * c.vocab_size


def inference_flops_per_query(c: ModelConfig, prompt_tokens: int, generated_tokens: int) -> float:
    """FLOPs to read a P-token prompt and generate G tokens with a KV cache.

    The prompt's P tokens are processed at contexts 1..P (producing the first generated token);
    each later generated token is fed back, so P + G - 1 tokens are processed at contexts 1..P+G-1.
    The per-token count is affine in the context, so the sum has a closed form.
    """
    if prompt_tokens < 1 or generated_tokens < 0:
        raise ValueError(f"need prompt_tokens >= 1 and generated_tokens >= 0, got {prompt_tokens}, {generated_tokens}")
    n = prompt_tokens + max(generated_tokens, 1) - 1
    base = inference_flops_per_token(c, 0)
    slope = inference_flops_per_token(c, 1) - base
    return n * base + slope * n * (n + 1) / 2


def mlp_attn_ratio(c: ModelConfig) -> float:
    """MLP parameters over attention parameters in one layer (arXiv 2510.18245's r)."""
    p = param_count(c)
    return p.mlp_per_layer / p.attention_per_layer


def d_model_over_sqrt_n(c: ModelConfig) -> float:
    """Width relative to size, d_model / sqrt(non-embedding params) (arXiv 2510.18245)."""
    return c.d_model / math.sqrt(param_count(c).non_embedding)


def describe(c: ModelConfig, inference_context: int | None = None) -> dict:
    """Every figure a law consumes for one architecture, as a JSON-ready dict."""
    p = param_count(c)
    ctx = inference_context or c.seq_len
    return {
        "config": dataclasses.asdict(c),
        "params": p.total,
        "params_non_embedding": p.non_embedding,
        "params_embedding": p.embedding + p.unembedding,
        "flops_per_token": {
            "exact_causal": training_flops_per_token(c, causal=True),
            "exact_noncausal": training_flops_per_token(c, causal=False),
            "six_n": six_n_flops_per_token(c),
        },
        "inference_flops_per_token": {"context": ctx, "flops": inference_flops_per_token(c, ctx)},
        "mlp_attn_ratio": mlp_attn_ratio(c),
        "d_model_over_sqrt_n": d_model_over_sqrt_n(c),
    }
