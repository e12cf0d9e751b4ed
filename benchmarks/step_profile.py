"""Where a training step's time goes, for the demo's sizes: the trainer's own compiled step, then
its parts compiled and timed alone at the step's shapes, all in one process (so machine load
affects every figure alike; the shares are ratios of times measured minutes apart at most).

Parts (each forward and backward where the step differentiates it):
- matmuls: every projection of the step (q, k, v, out, gate, up, down per layer, the unembedding)
  with both of its gradient matmuls, each jitted alone at its shape. Their FLOPs over their summed
  time is the ceiling: the rate of the step's own matrix multiplies with nothing else around them;
- attention: `model.causal_attention` (scores, masking, softmax, weighted values) of every layer;
- optimizer: clipping, Adam, weight decay and the update over the parameter tree;
- rest: the step minus those (norms, rotary, SwiGLU's elementwise, embedding, loss, XLA glue);
- host: a trainer-like loop (dispatch, one sync per 50 steps) minus the compiled step's time.

The step runs on packed batches of the demo's rows (documents of about 44 tokens); what is masked
does not change the work, so the token values are random.

    PYTHONPATH=. .venv/bin/python benchmarks/step_profile.py                      # p50k p100k p200k, rows of 256 x 2
    PYTHONPATH=. .venv/bin/python benchmarks/step_profile.py --seq_len 192 --batch_size 3
    PYTHONPATH=. .venv/bin/python benchmarks/step_profile.py --ops    # XLA's per-op profile of the step

Prints a table, then one JSON line per preset.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from scaling import accounting, mfu, optimizer, partitioning, step
from scaling.model import causal_attention
from scaling.presets import PRESET_DIR, load_model_config

DOCUMENT_TOKENS = 44  # a demo document in the synthetic_sp256 vocabulary, eos included (docs/data.md)


def packed_batch(config, batch_size: int, seed: int = 0) -> dict:
    """A batch shaped like the trainer's: rows of whole documents of DOCUMENT_TOKENS tokens."""
    rng = np.random.default_rng(seed)
    s = config.seq_len
    index = np.arange(s)
    segments = (index // DOCUMENT_TOKENS + 1).astype(np.int32)[None].repeat(batch_size, 0)
    positions = (index % DOCUMENT_TOKENS).astype(np.int32)[None].repeat(batch_size, 0)
    tokens = rng.integers(0, config.vocab_size, (batch_size, s + 1)).astype(np.int32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "positions": positions,
            "segment_ids": segments, "loss_weights": np.ones((batch_size, s), np.float32)}


def best_seconds(fn, *args, repeats: int) -> float:
    """The best of `repeats` timed calls after one warm-up (the least disturbed by other load)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def projection_shapes(config, tokens: int) -> list[tuple[int, int, int]]:
    """(rows, inner, out) of every forward projection of one step."""
    c = config
    hk, kv = c.n_heads * c.dim_per_head, c.kv_heads * c.dim_per_head
    per_layer = [(tokens, c.d_model, hk), (tokens, c.d_model, kv), (tokens, c.d_model, kv), (tokens, hk, c.d_model),
                 (tokens, c.d_model, c.d_ff), (tokens, c.d_model, c.d_ff), (tokens, c.d_ff, c.d_model)]
    return per_layer * c.n_layers + [(tokens, c.d_model, c.vocab_size)]


CHAIN = 8  # products per jitted call, so that dispatch does not count as matmul time


def matmul_part(config, tokens: int, repeats: int) -> tuple[float, float]:
    """(seconds, FLOPs) of the step's projections: x @ w, dy @ w^T and x^T @ dy at every shape,
    each CHAIN times per call (the weight-sized operand perturbed so no product is reused)."""
    seconds = flops = 0.0
    forward = jax.jit(lambda x, w: [x @ (w + i) for i in range(CHAIN)])
    input_grad = jax.jit(lambda dy, w: [dy @ (w + i).T for i in range(CHAIN)])
    weight_grad = jax.jit(lambda x, dy: [(x + i).T @ dy for i in range(CHAIN)])
    for m, k, n in projection_shapes(config, tokens):
        x, w, dy = jnp.ones((m, k)), jnp.ones((k, n)), jnp.ones((m, n))
        for fn, args in ((forward, (x, w)), (input_grad, (dy, w)), (weight_grad, (x, dy))):
            seconds += best_seconds(fn, *args, repeats=repeats) / CHAIN
            flops += 2.0 * m * k * n
    return seconds, flops


def attention_part(config, batch: dict, repeats: int) -> float:
    """Seconds of every layer's causal_attention, forward and backward."""
    c = config
    b, s = batch["inputs"].shape
    q = jnp.ones((b, s, c.n_heads, c.dim_per_head))
    kv = jnp.ones((b, s, c.kv_heads, c.dim_per_head))
    segments = jnp.asarray(batch["segment_ids"])

    def loss(q, k, v):
        return causal_attention(q, k, v, segments).sum()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    return c.n_layers * best_seconds(grad, q, kv, kv, repeats=repeats)


def optimizer_part(fns, tx, repeats: int) -> float:
    params, opt_state = fns.init()
    grads = jax.tree.map(jnp.ones_like, params)

    def update(grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p - 1e-3 * u, params, updates), opt_state

    return best_seconds(jax.jit(update), grads, opt_state, params, repeats=repeats)


def warm_step(preset: str, seq_len: int, batch_size: int, tx, mesh):
    """The trainer's compiled step for a preset, run three times: (config, fns, host batch, device
    batch, params, opt_state, learning rate)."""
    config = load_model_config(PRESET_DIR / f"{preset}.gin").replace(seq_len=seq_len)
    fns = step.compile_functions(config, tx, mesh, seed=0)
    batch = packed_batch(config, batch_size)
    device_batch = partitioning.global_batch(batch, mesh)
    params, opt_state = fns.init()
    lr = np.float32(1e-3)
    for _ in range(3):
        params, opt_state, loss = fns.step(params, opt_state, device_batch, lr)
    jax.block_until_ready(loss)
    return config, fns, batch, device_batch, params, opt_state, lr


def profile(preset: str, seq_len: int, batch_size: int, steps: int, repeats: int, tx, mesh, peak: float) -> dict:
    config, fns, batch, device_batch, params, opt_state, lr = warm_step(preset, seq_len, batch_size, tx, mesh)
    step_s = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        params, opt_state, loss = fns.step(params, opt_state, device_batch, lr)
        jax.block_until_ready(loss)
        step_s = min(step_s, time.perf_counter() - start)
    loop_s = float("inf")  # the trainer's loop: host batches in, one sync per window; the best window counts
    for _ in range(max(1, repeats // 4)):
        start = time.perf_counter()
        losses = []
        for _ in range(steps):
            params, opt_state, loss = fns.step(params, opt_state, partitioning.global_batch(batch, mesh), lr)
            losses.append(loss)
        jax.device_get(losses)
        loop_s = min(loop_s, (time.perf_counter() - start) / steps)
    tokens = batch_size * seq_len
    matmul_s, matmul_flops = matmul_part(config, tokens, repeats)
    attention_s = attention_part(config, batch, repeats)
    optimizer_s = optimizer_part(fns, tx, repeats)
    rest_s = max(step_s - matmul_s - attention_s - optimizer_s, 0.0)
    return {"preset": preset, "seq_len": seq_len, "batch_size": batch_size, "tokens_per_step": tokens,
            "step_ms": step_s * 1e3, "loop_step_ms": loop_s * 1e3, "tokens_per_s": tokens / loop_s,
            "share_matmuls": matmul_s / loop_s, "share_attention": attention_s / loop_s,
            "share_optimizer": optimizer_s / loop_s, "share_rest": rest_s / loop_s,
            "share_host": max(loop_s - step_s, 0.0) / loop_s,
            "matmul_ceiling_flops_per_s": matmul_flops / matmul_s,
            "model_flops_per_s": tokens / loop_s * accounting.training_flops_per_token(config),
            "matmul_peak_flops_per_s": peak}


def op_profile(preset: str, seq_len: int, batch_size: int, steps: int, tx, mesh, top: int = 12) -> dict:
    """XLA's own per-op profile of the step (jax.profiler's trace of the compiled program's thunks):
    ops per step and the milliseconds per step of each kind of fused op (a fusion's name without
    its number: ynn_fusion are the dots and what XLA fused into them, *copy*/*transpose* layout
    changes, the rest elementwise work), the `top` largest."""
    import collections
    import gzip
    import re
    import tempfile
    from pathlib import Path

    _, fns, _, batch, params, opt_state, lr = warm_step(preset, seq_len, batch_size, tx, mesh)
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(steps):
                params, opt_state, loss = fns.step(params, opt_state, batch, lr)
            jax.block_until_ready(loss)
        trace = json.loads(gzip.decompress(next(Path(folder).rglob("*.trace.json.gz")).read_bytes()))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    host = ("ThunkExecutor", "$", "PjitFunction", "CommonPjRt", "end: ")
    kinds, count = collections.Counter(), 0
    for e in events:
        if e.get("ph") == "X" and "dur" in e and not e["name"].startswith(host):
            kinds[re.sub(r"\.\d+$", "", e["name"])] += e["dur"] / 1e3 / steps
            count += 1
    total = sum(kinds.values())
    return {"preset": preset, "ops_per_step": count / steps, "op_ms_per_step": total,
            "kinds_ms": dict(kinds.most_common(top))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=["p50k", "p100k", "p200k"])
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50, help="steps per window of the trainer-like loop (one sync per window)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per part; the best counts")
    parser.add_argument("--ops", action="store_true", help="print XLA's per-op profile of each step instead")
    args = parser.parse_args(argv)
    mesh = partitioning.make_mesh()
    tx = optimizer.make_optimizer(0.9, 0.95, 0.1, 1.0)
    if args.ops:
        for preset in args.presets:
            r = op_profile(preset, args.seq_len, args.batch_size, args.steps, tx, mesh)
            print(f"{preset}: {r['ops_per_step']:.0f} ops a step, {r['op_ms_per_step']:.2f} ms in them")
            for kind, ms in r["kinds_ms"].items():
                print(f"  {kind:28} {ms:7.3f} ms {ms / r['op_ms_per_step']:5.0%}")
            print(json.dumps(r))
        return 0
    peak = mfu.measure_matmul_peak()
    rows = [profile(p, args.seq_len, args.batch_size, args.steps, args.repeats, tx, mesh, peak) for p in args.presets]
    print(f"rows {args.batch_size} x {args.seq_len}; matmul peak {peak / 1e9:.1f} GFLOP/s (1024^3, this process)")
    print(f"{'preset':7} {'tok/s':>8} {'step ms':>8} {'matmul':>7} {'attn':>6} {'optim':>6} {'rest':>6} {'host':>6} "
          f"{'ceiling GF/s':>12} {'model GF/s':>10}")
    for r in rows:
        print(f"{r['preset']:7} {r['tokens_per_s']:8.0f} {r['loop_step_ms']:8.2f} {r['share_matmuls']:7.0%} "
              f"{r['share_attention']:6.0%} {r['share_optimizer']:6.0%} {r['share_rest']:6.0%} {r['share_host']:6.0%} "
              f"{r['matmul_ceiling_flops_per_s'] / 1e9:12.2f} {r['model_flops_per_s'] / 1e9:10.2f}")
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
