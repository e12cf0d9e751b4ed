"""Training-step throughput of the trainer's own jitted step, per model preset.

Prints tokens/s, model FLOP/s (exact training FLOPs per token from scaling.accounting) and MFU
against the peak: on a CPU the dense-matmul rate measured in this same process (so machine load
affects both alike), on an accelerator the device's data-sheet bf16 peak. Also compile time at 4
and 24 layers (nn.scan keeps depth out of compile time). A readable table, then one JSON object
per configuration per line.

    .venv/bin/python benchmarks/train_step.py                     # CPU presets
    .venv/bin/python benchmarks/train_step.py --presets p125m --dtype bfloat16 --seq_len 1024  # GPU/TPU
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from scaling import accounting, partitioning, train
from scaling.describe import PRESET_DIR, load_model_config

CPU_PRESETS = ("p1m", "p3m", "p10m", "p25m")
ACCELERATOR_PRESETS = ("p25m", "p125m")


def random_batches(config, batch_size: int, count: int, seed: int = 0) -> list[dict]:
    """Packed-looking batches of random tokens (two documents per row), the trainer's dict shape."""
    rng = np.random.default_rng(seed)
    s = config.seq_len
    cut = s // 2
    segments = np.where(np.arange(s) < cut, 1, 2).astype(np.int32)[None].repeat(batch_size, 0)
    positions = np.where(segments == 1, np.arange(s), np.arange(s) - cut).astype(np.int32)
    out = []
    for _ in range(count):
        tokens = rng.integers(0, config.vocab_size, (batch_size, s + 1)).astype(np.int32)
        out.append({"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "positions": positions,
                    "segment_ids": segments, "loss_weights": np.ones((batch_size, s), np.float32)})
    return out


def compile_seconds(config, tx, mesh, batch) -> float:
    fns = train.compile_functions(config, tx, mesh, seed=0)
    start = time.perf_counter()
    fns.step.lower(fns.abstract_params, fns.abstract_opt_state, batch, np.float32(1e-3)).compile()
    return time.perf_counter() - start


def measure(preset: str, config, batch_size: int, steps: int, peak: float, tx, mesh) -> dict:
    batches = [partitioning.global_batch(b, mesh) for b in random_batches(config, batch_size, 4)]
    fns = train.compile_functions(config, tx, mesh, seed=0)
    compile_s = compile_seconds(config, tx, mesh, batches[0])
    params, opt_state = fns.init()
    lr = np.float32(1e-3)
    for b in batches[:2]:  # compile and warm up
        params, opt_state, loss = fns.step(params, opt_state, b, lr)
    jax.block_until_ready(loss)
    start = time.perf_counter()
    for i in range(steps):  # dispatch runs ahead; one sync at the end, as in the trainer
        params, opt_state, loss = fns.step(params, opt_state, batches[i % len(batches)], lr)
    jax.block_until_ready(loss)
    elapsed = time.perf_counter() - start
    tokens_per_s = steps * batch_size * config.seq_len / elapsed
    flops_per_s = tokens_per_s * accounting.training_flops_per_token(config)
    return {"preset": preset, "d_model": config.d_model, "n_layers": config.n_layers,
            "params": accounting.param_count(config).total, "seq_len": config.seq_len, "batch_size": batch_size,
            "dtype": config.dtype, "tokens_per_s": tokens_per_s, "model_flops_per_s": flops_per_s,
            "matmul_peak_flops_per_s": peak, "mfu": flops_per_s / peak, "compile_s": compile_s,
            "device": jax.devices()[0].device_kind, "devices": jax.device_count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_cpu = jax.default_backend() == "cpu"
    parser.add_argument("--presets", nargs="*", default=list(CPU_PRESETS if on_cpu else ACCELERATOR_PRESETS))
    parser.add_argument("--batch_size", type=int, default=8 if on_cpu else 32, help="sequences per step")
    parser.add_argument("--seq_len", type=int, default=None, help="override the preset's sequence length")
    parser.add_argument("--steps", type=int, default=6 if on_cpu else 30)
    parser.add_argument("--dtype", default="float32" if on_cpu else "bfloat16")
    parser.add_argument("--depth_preset", default="p3m", help="preset whose compile time is taken at 4 and 24 layers")
    args = parser.parse_args(argv)

    mesh = partitioning.make_mesh()
    tx = train.make_optimizer(0.9, 0.95, 0.1, 1.0)
    compute_dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    if on_cpu:
        peak, source = train.measure_matmul_peak(compute_dtype), "measured matmul peak (this process)"
    else:
        peak, source = train.device_peak_flops(compute_dtype)
    peak *= jax.device_count()
    results = []
    for preset in args.presets:
        changes = {"dtype": args.dtype} | ({"seq_len": args.seq_len} if args.seq_len else {})
        config = load_model_config(PRESET_DIR / f"{preset}.gin").replace(**changes)
        results.append(measure(preset, config, args.batch_size, args.steps, peak, tx, mesh))

    depth = load_model_config(PRESET_DIR / f"{args.depth_preset}.gin").replace(dtype=args.dtype)
    batch = partitioning.global_batch(random_batches(depth, args.batch_size, 1)[0], mesh)
    compile_by_depth = {n: compile_seconds(depth.replace(n_layers=n), tx, mesh, batch) for n in (4, 24)}

    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; peak {peak / 1e9:.1f} GFLOP/s ({source})")
    print(f"{'preset':8} {'d_model':>7} {'layers':>6} {'params':>11} {'tokens/s':>10} {'GFLOP/s':>9} {'MFU':>6} {'compile s':>9}")
    for r in results:
        print(f"{r['preset']:8} {r['d_model']:7d} {r['n_layers']:6d} {r['params']:11,d} {r['tokens_per_s']:10.0f} "
              f"{r['model_flops_per_s'] / 1e9:9.2f} {r['mfu']:6.1%} {r['compile_s']:9.2f}")
    ratio = compile_by_depth[24] / compile_by_depth[4]
    print(f"compile time of {args.depth_preset}: 4 layers {compile_by_depth[4]:.2f} s, 24 layers "
          f"{compile_by_depth[24]:.2f} s (ratio {ratio:.2f})")
    for r in results:
        print(json.dumps(r))
    for n, seconds in compile_by_depth.items():
        print(json.dumps({"preset": f"{args.depth_preset}@{n}layers", "d_model": depth.d_model, "n_layers": n,
                          "params": accounting.param_count(depth.replace(n_layers=n)).total, "compile_s": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
