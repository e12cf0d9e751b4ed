"""Training-step throughput of the trainer's own jitted step, per model preset.

Prints tokens/s, model FLOP/s (exact training FLOPs per token from scaling.accounting) and MFU
against the peak: on a CPU the dense-matmul rate measured in this same process (so machine load
affects both alike), on an accelerator the device's data-sheet bf16 peak. Also compile time at 4
and 24 layers (nn.scan keeps depth out of compile time). A readable table, then one JSON object
per configuration per line.

    .venv/bin/python benchmarks/train_step.py                     # CPU presets
    .venv/bin/python benchmarks/train_step.py --presets p125m --dtype bfloat16 --seq_len 1024  # GPU/TPU
    .venv/bin/python benchmarks/train_step.py --reference [--torch_python /path/to/torch-venv/bin/python]

`--reference` trains exactly the architecture of ../shared/bench/torch_ref_train.py (d_model 512,
8 layers, 8 heads of 64, d_ff 2048, untied, vocabulary 256) at batch 32 x 128 and prints one JSON
line; with `--torch_python` (a virtualenv with torch, never this project's) the PyTorch reference
runs in the same invocation, eager and torch.compile, and the line adds their tokens/s and the
ratios; each side's figure goes to stderr as it is measured. The project itself does not depend
on torch.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from scaling import accounting, mfu, optimizer, partitioning, step
from scaling.presets import PRESET_DIR, load_model_config
from scaling.model import ModelConfig

CPU_PRESETS = ("p1m", "p3m", "p10m", "p25m")
ACCELERATOR_PRESETS = ("p25m", "p125m")
# ../shared/bench/torch_ref_train.py's model: RMSNorm, causal MHA of 64-dim heads, SwiGLU of 4d, untied.
REFERENCE = ModelConfig(d_model=512, n_layers=8, n_heads=8, d_ff=2048, vocab_size=256, seq_len=128,
                        tie_embeddings=False, dtype="float32")
REFERENCE_BATCH = 32
TORCH_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "torch_ref_train.py"


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
    fns = step.compile_functions(config, tx, mesh, seed=0)
    start = time.perf_counter()
    fns.step.lower(fns.abstract_params, fns.abstract_opt_state, batch, np.float32(1e-3)).compile()
    return time.perf_counter() - start


def measure(preset: str, config, batch_size: int, steps: int, peak: float, tx, mesh) -> dict:
    batches = [partitioning.global_batch(b, mesh) for b in random_batches(config, batch_size, 4)]
    fns = step.compile_functions(config, tx, mesh, seed=0)
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


def torch_reference(python: str, script: Path, compiled: bool) -> float:
    """tokens/s of the PyTorch reference at the reference shape, run by another interpreter."""
    c = REFERENCE
    command = [python, str(script), str(c.d_model), str(c.n_layers), str(REFERENCE_BATCH), str(c.seq_len)]
    out = subprocess.run(command + (["compile"] if compiled else []), capture_output=True, text=True, check=True)
    found = re.search(r"tok/s=([0-9.]+)", out.stdout)
    if not found:
        raise SystemExit(f"{script}: no 'tok/s=' in its output:\n{out.stdout}{out.stderr}")
    return float(found.group(1))


def _progress(side: str, figures: dict) -> None:
    """Each side's figure to stderr as soon as it is measured, so a run cut short (torch.compile
    can take minutes on a few cores) still leaves what it measured."""
    print(json.dumps({"measured": side, **figures}), file=sys.stderr, flush=True)


def reference(args, peak: float, tx, mesh) -> int:
    """The reference shape, ours then torch's (eager, compiled), then ours again: the mean of
    our two runs counts, so a drift in machine load during the run affects both sides alike.
    Ten timed steps after warm-up on each side, as the reference script times itself."""
    steps = 10
    ours = [measure("reference", REFERENCE, REFERENCE_BATCH, steps, peak, tx, mesh)]
    _progress("jax", {k: ours[0][k] for k in ("tokens_per_s", "mfu", "matmul_peak_flops_per_s")})
    row = dict(ours[0])
    if args.torch_python:
        row["torch_eager_tokens_per_s"] = torch_reference(args.torch_python, args.torch_script, compiled=False)
        _progress("torch_eager", {"tokens_per_s": row["torch_eager_tokens_per_s"]})
        row["torch_compile_tokens_per_s"] = torch_reference(args.torch_python, args.torch_script, compiled=True)
        _progress("torch_compile", {"tokens_per_s": row["torch_compile_tokens_per_s"]})
        ours.append(measure("reference", REFERENCE, REFERENCE_BATCH, steps, peak, tx, mesh))
        row.update({k: float(np.mean([r[k] for r in ours])) for k in ("tokens_per_s", "model_flops_per_s", "mfu")})
        row["vs_torch_compile"] = row["tokens_per_s"] / row["torch_compile_tokens_per_s"]
        row["vs_torch_eager"] = row["tokens_per_s"] / row["torch_eager_tokens_per_s"]
    print(json.dumps(row))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_cpu = jax.default_backend() == "cpu"
    parser.add_argument("--presets", nargs="*", default=list(CPU_PRESETS if on_cpu else ACCELERATOR_PRESETS))
    parser.add_argument("--batch_size", type=int, default=8 if on_cpu else 32, help="sequences per step")
    parser.add_argument("--seq_len", type=int, default=None, help="override the preset's sequence length")
    parser.add_argument("--steps", type=int, default=6 if on_cpu else 30)
    parser.add_argument("--dtype", default="float32" if on_cpu else "bfloat16")
    parser.add_argument("--depth_preset", default="p3m", help="preset whose compile time is taken at 4 and 24 layers")
    parser.add_argument("--reference", action="store_true", help="the PyTorch reference's shape only (one JSON line)")
    parser.add_argument("--torch_python", default=None, help="with --reference: a Python with torch, to run the reference")
    parser.add_argument("--torch_script", type=Path, default=TORCH_SCRIPT)
    args = parser.parse_args(argv)

    mesh = partitioning.make_mesh()
    tx = optimizer.make_optimizer(0.9, 0.95, 0.1, 1.0)
    compute_dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    if on_cpu:
        peak, source = mfu.measure_matmul_peak(compute_dtype), "measured matmul peak (this process)"
    else:
        peak, source = mfu.device_peak_flops(compute_dtype)
    peak *= jax.device_count()
    if args.reference:
        return reference(args, peak, tx, mesh)
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
