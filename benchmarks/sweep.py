"""End-to-end sweep throughput: how much of the machine a local sweep turns into training.

Runs a fixed grid (grids/demo.gin by default; `--models` picks a documented subset of its sizes)
with `scaling sweep` in a fresh sweep folder, exactly as a user would, and prints one JSON line:

- wall_s: the sweep command's wall time (planning, start-up, compilation, training, inference);
- train_flops: training FLOPs of the plan (WSD trunks counted once, exact accounting);
- effective_flops_per_s: train_flops / wall_s;
- matmul_peak_flops_per_s: the dense-matmul rate measured in this process just before the sweep;
- effective_mfu: effective_flops_per_s over that peak;
- train_tokens_per_s: tokens trained (WSD trunks counted once) over wall_s, and
  train_tokens_per_peak_gflop: that over the peak in GFLOP/s (tokens per second per GFLOP/s of
  the machine's matmul rate: the figure to compare across commits, load and machines);
- processes: processes the sweep started (one per phase in each run's job record);
- startup_s: summed over processes, the seconds from process start to its first compiled step
  (interpreter, imports, gin, compilation, checkpoint restore), from each run's timings.jsonl;
- step_s: seconds spent in compiled training and decoding steps (timings.jsonl), and
  share_of_wall_in_steps = step_s / (wall_s * workers);
- workers, threads_per_worker: the executor's layout.

Where the runs predate timings.jsonl (an older checkout) the timing fields are null.

    .venv/bin/python benchmarks/sweep.py                        # the demo grid
    .venv/bin/python benchmarks/sweep.py --models p50k p500k     # the subset used in docs/sweeps.md
    .venv/bin/python benchmarks/sweep.py --workers 2 --threads_per_worker 1
    .venv/bin/python benchmarks/sweep.py --models p50k p200k --gin "Grid.data_budgets=[50000, 100000]"

To compare with an older commit, run this file from a checkout of that commit (it runs the sweep
of the checkout it sits in): `cp benchmarks/sweep.py /tmp/old/benchmarks/ && python /tmp/old/benchmarks/sweep.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def matmul_peak() -> float:
    from scaling.mfu import measure_matmul_peak

    return measure_matmul_peak()


def timings(run_dir: Path) -> list[dict]:
    path = run_dir / "timings.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=str(REPO / "grids" / "demo.gin"))
    parser.add_argument("--models", nargs="*", default=None, help="a subset of the grid's sizes")
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: the executor's choice)")
    parser.add_argument("--threads_per_worker", type=int, default=None)
    parser.add_argument("--gin", action="append", default=[], help="a further grid binding (repeatable)")
    parser.add_argument("--sweep_dir", default=None, help="default: a fresh temporary folder, removed after")
    parser.add_argument("--keep", action="store_true", help="keep the sweep folder")
    args = parser.parse_args(argv)

    peak = matmul_peak()
    sweep_dir = Path(args.sweep_dir or tempfile.mkdtemp(prefix="bench_sweep_"))
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise SystemExit(f"{sweep_dir}: not empty; the benchmark needs a fresh sweep folder")
    command = [sys.executable, "-m", "scaling.cli", "sweep", args.grid, f"--sweep_dir={sweep_dir}"]
    if args.models:
        command.append(f"--gin.Grid.models={list(args.models)!r}")
    command += [f"--gin.{binding}" for binding in args.gin]
    if args.workers:
        command.append(f"--workers={args.workers}")
    if args.threads_per_worker:
        command.append(f"--threads_per_worker={args.threads_per_worker}")
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(sweep_dir / ".jax_cache")}  # cold cache, as a fresh clone
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"the sweep failed (exit {result.returncode})")

    train_flops, train_tokens, processes, startup, steps, have_timings = 0.0, 0, 0, 0.0, 0.0, True
    layout = {}
    for run_json in sorted(sweep_dir.glob("*/run.json")):
        run_dir = run_json.parent
        point = json.loads(run_json.read_text())["point"]
        train_flops += point["flops_per_token"] * point["train_tokens"]
        train_tokens += point["train_tokens"]
        job = json.loads((run_dir / "job.json").read_text())
        processes += len(job.get("seconds", {}))
        records = timings(run_dir)
        if not records:
            have_timings = False
        for r in records:
            startup += r.get("startup_s", 0.0)
            steps += r.get("train_step_s", 0.0) + r.get("decode_s", 0.0)
            layout = {k: r[k] for k in ("workers", "threads") if k in r} or layout
    workers = layout.get("workers", args.workers or 1)
    out = {
        "grid": Path(args.grid).name, "models": args.models, "runs": len(list(sweep_dir.glob("*/run.json"))),
        "wall_s": wall, "train_flops": train_flops, "effective_flops_per_s": train_flops / wall,
        "matmul_peak_flops_per_s": peak, "effective_mfu": train_flops / wall / peak,
        "train_tokens": train_tokens, "train_tokens_per_s": train_tokens / wall,
        "train_tokens_per_peak_gflop": train_tokens / wall / (peak / 1e9),
        "processes": processes,
        "startup_s": startup if have_timings else None,
        "step_s": steps if have_timings else None,
        "share_of_wall_in_steps": steps / (wall * workers) if have_timings else None,
        "workers": workers, "threads_per_worker": layout.get("threads", args.threads_per_worker),
    }
    print(json.dumps(out))
    if not args.keep and not args.sweep_dir:
        shutil.rmtree(sweep_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
