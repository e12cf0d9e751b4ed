"""The result-table schema (docs/schema.md): the one module both packages share.

`scaling collect` writes the tables by it and `analysis` reads them by it; this module imports
nothing from either package (and nothing heavy), so the sweep's light modules may use it. It also
defines the one metric the inference table's `pass@k` rows carry, `pass_at_k`.
"""

from __future__ import annotations

import numpy as np

SCHEMA_VERSION = "1"
METADATA_KEY = b"scaling.schema_version"   # Parquet metadata key holding SCHEMA_VERSION
TABLE_NAMES = ("training", "inference")     # <name>.parquet in a results folder

# column -> type; the order is the tables' column order.
TRAINING = {
    "run_id": str, "sweep": str, "arm": str, "seed": int,
    "d_model": int, "n_layers": int, "n_heads": int, "n_kv_heads": int, "d_ff": int, "vocab_size": int,
    "seq_len": int, "mlp_attn_ratio": float, "params": int, "params_non_embedding": int,
    "flops_per_token": float, "step": int, "tokens": int, "tokens_raw": int, "tokens_thinking": int,
    "unique_tokens": int, "epochs": float, "flops": float, "flops_6nd": float, "teacher_flops": float,
    "schedule": str, "branch": str, "is_final": bool, "eval_loss": float, "eval_bpb": float,
    "eval_loss_hard": float, "eval_loss_easy": float,
}
INFERENCE = {
    "run_id": str, "sweep": str, "arm": str, "params": int, "step": int, "tokens": int, "branch": str,
    "task": str, "difficulty": int, "thinking_budget": int, "samples": int, "aggregator": str,
    "accuracy": float, "accuracy_stderr": float, "n_problems": int, "mean_thinking_tokens": float,
    "mean_generated_tokens": float, "flops_per_query": float,
}
# Columns that identify a training evaluation; a repeated key keeps the last row.
TRAINING_KEY = ("run_id", "branch", "schedule", "step")


def pass_at_k(n, c, k: int):
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k),
    computed as a running product so large n does not overflow. Arrays broadcast; a float for
    scalar n and c."""
    n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}")
    if np.any(k > n):
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, k <= n (smallest n is {n.min()})")
    if np.any(c < 0) or np.any(c > n):
        raise ValueError(f"pass@k needs 0 <= correct <= n, got n={n.tolist()}, correct={c.tolist()}")
    out = np.empty(np.broadcast(n, c).shape, dtype=np.float64)
    n_all, c_all = np.broadcast_to(n, out.shape), np.broadcast_to(c, out.shape)
    for idx in np.ndindex(out.shape):
        ni, ci = int(n_all[idx]), int(c_all[idx])
        out[idx] = 1.0 if ni - ci < k else 1.0 - np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1))
    return float(out) if out.ndim == 0 else out
