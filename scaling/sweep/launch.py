"""`scaling sweep grids/<name>.gin`: plan a grid's runs, show them, and execute them.

Planning resolves every run's config (failing before any compute on a bad binding), names each
run by its grid point and config hash, refuses a sweep folder where a grid point already ran with
a different config, and writes the run folders. Execution hands unfinished runs to the local or
Ray executor; finished runs are skipped, interrupted ones resume from their checkpoints, failed
ones wait for --retry_failed.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from analysis import flags
from scaling.configuration import ConfigError
from scaling.data import batch_cache
from scaling.model_config import ModelConfig
from scaling.sweep import executors, grid as grids, runner, store, throughput
from scaling.sweep.progress import SweepProgress
from scaling.sweep.status import format_table


def configure_sweep(parser):
    parser.add_argument("grid", help="the grid file, e.g. grids/smoke.gin (override with --gin.Grid.X=...)")
    parser.add_argument("--sweep_dir", default=None, help="the sweep folder (default: sweeps/<grid name>)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs at a time (local default: one per core / threads_per_worker; "
                             "ray default: as many as the cluster fits)")
    parser.add_argument("--threads_per_worker", type=int, default=None,
                        help="local: cores (and XLA/tf.data/BLAS threads) per run (default 1, or cores / workers)")
    parser.add_argument("--dry_run", action="store_true", help="print the plan, total FLOPs and wall time; run nothing")
    parser.add_argument("--retry_failed", action="store_true", help="run failed runs again")
    parser.add_argument("--throughput", type=flags.positive, default=None,
                        help="training FLOP/s per run for the time estimates (default: measured or recorded)")
    ray = parser.add_argument_group("ray executor")
    ray.add_argument("--ray_address", default=None,
                     help="'auto' or host:port of a `ray start --head` cluster (default: a local cluster)")
    ray.add_argument("--cpus_per_run", type=float, default=1)
    ray.add_argument("--gpus_per_run", type=float, default=0)
    ray.add_argument("--tpus_per_run", type=float, default=0, help="TPU chips per run (Ray resource 'TPU')")
    ray.add_argument("--max_retries", type=int, default=3, help="Ray retries of a run whose worker died")


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _on_workers(seconds: float, workers: int | None) -> str:
    if workers is None:
        return "on as many workers at a time as the Ray cluster fits"
    return f"{_hours(seconds / workers)} on {workers} worker(s)"


# A plan estimated longer than this draws a warning naming its days (a budget typed in the wrong unit).
LONG_PLAN_DAYS = 7


def plan(grid_file: str, bindings: tuple[str, ...], sweep_dir: str | None):
    """Load and expand the grid and resolve every run; nothing is written."""
    if not Path(grid_file).is_file():
        raise ConfigError(f"{grid_file}: no such grid file")
    grid = grids.load_grid(grid_file, bindings)
    points = grids.expand(grid)
    plans = [store.plan_run(grid, point) for point in points]
    directory = Path(sweep_dir) if sweep_dir else Path("sweeps") / grid.name
    store.check_unchanged(directory, plans)
    return grid, plans, directory


def estimates(plans: list[store.RunPlan], directory: Path, given: float | None) -> dict[str, throughput.Throughput]:
    """Training FLOP/s per architecture and batch size (keyed by _arch_key)."""
    archs, flops = {}, {}
    for p in plans:
        archs.setdefault(_arch_key(p), (_arch_key(p), ModelConfig(**p.point["config"]), p.point["batch_size"]))
        flops[_arch_key(p)] = flops.get(_arch_key(p), 0.0) + training_flops(p)
    if given is not None:
        return {key: throughput.Throughput(given, "given") for key in archs}
    return throughput.estimate(list(archs.values()), directory, training_flops=flops)


def training_flops(p: store.RunPlan) -> float:
    """The run's training FLOPs (a WSD trunk counted once)."""
    return p.point["flops_per_token"] * p.point["train_tokens"]


def estimated_seconds(p: store.RunPlan, rates: dict[str, throughput.Throughput]) -> float:
    return training_flops(p) / rates[_arch_key(p)].flops_per_s


def start_order(plans: list[store.RunPlan], rates: dict[str, throughput.Throughput],
                workers: int) -> list[store.RunPlan]:
    """The runs in the order they are started: longest estimated training first (ties keep the
    grid's order). With more runs than workers, starting the short runs last fills the workers
    to the end instead of leaving one long run alone with idle cores (LPT scheduling).

    Except the first `workers` runs, which differ in architecture and in arm where the grid
    allows: the first run of an architecture compiles its programs and the first run of an arm
    produces its batch stream, and later runs read both from the caches (share_caches). Two
    runs of one architecture or arm started together would both compile or both produce."""
    ordered = sorted(plans, key=lambda p: estimated_seconds(p, rates), reverse=True)
    first: list[store.RunPlan] = []
    for p in ordered:
        if len(first) < workers and all(_arch_key(p) != _arch_key(q) and p.point["arm"] != q.point["arm"]
                                        for q in first):
            first.append(p)
    # With fewer architectures or arms than workers, the remaining workers take the rest in order.
    return first + [p for p in ordered if all(p is not q for q in first)]


def _arch_key(p: store.RunPlan) -> str:
    """The run's model label (preset and varied axes, e.g. p1m.d192) and its batch size."""
    return f"{p.readable.split('_')[0]}/b{p.point['batch_size']}"


def share_caches() -> None:
    """Runs of one architecture (every arm, every branch's inference, and the throughput
    measurement here) compile the same programs, and runs of one arm read the same batch stream:
    JAX's persistent compilation cache and the batch cache (scaling/data/batch_cache.py), in the
    user's cache folder (not the sweep folder, which holds only runs), make each once. Children
    inherit them through the environment; caches the user set are kept."""
    import jax  # here, as every JAX import of a verb's module: `scaling sweep --help` answers at once

    root = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scaling").resolve()
    os.environ.setdefault(batch_cache.CACHE_ENV, str(root / "batches"))
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    folder = str(root / "jax")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_sweep(args) -> int:
    imports_s = throughput.process_seconds()
    if args.gin.files:
        raise ConfigError(f"scaling sweep takes the grid as its argument; --gin_file={args.gin.files[0]} "
                          "is not used (override the grid with --gin.Grid.NAME=VALUE)")
    grid, plans, directory = plan(args.grid, args.gin.bindings, args.sweep_dir)
    if args.executor == "local" and not args.dry_run:
        share_caches()
    rates = estimates(plans, directory, args.throughput)
    if args.executor == "local":
        workers, threads = executors.local_layout(args.workers, getattr(args, "threads_per_worker", None))
    else:
        workers = executors.ray_workers(args.workers, args.ray_address, args.cpus_per_run, args.gpus_per_run,
                                        args.tpus_per_run, len(plans))
        threads = None
    plans = start_order(plans, rates, workers or len(plans))
    smallest = min(plans, key=lambda p: p.point["flops_per_token"] * p.point["batch_size"])
    start = throughput.startup(directory, None if args.throughput is not None else
                               (ModelConfig(**smallest.point["config"]), smallest.point["batch_size"]), imports_s)
    rows, total_flops, total_seconds = [], 0.0, 0.0  # training FLOPs: WSD trunks counted once
    for p in plans:
        flops, seconds = training_flops(p), estimated_seconds(p, rates)
        total_flops += flops
        total_seconds += seconds + start.seconds
        state = store.read_job(directory / p.name)["state"] if (directory / p.name).is_dir() else "new"
        rows.append([p.name, f"{p.point['params']:.3g}", " ".join(f"{d:.3g}" for d in p.point["data_budgets"]),
                     f"{flops:.3g}", p.point["arm"],
                     f"{_hours(seconds + start.seconds)} (training {_hours(seconds)} {rates[_arch_key(p)].source})",
                     state])
    print(format_table(["run", "N", "D", "C", "arm", "est. time", "state"], rows))
    points = sum(len(p.point["data_budgets"]) for p in plans)
    point_flops = sum(p.point["flops_per_token"] * d for p in plans for d in p.point["data_budgets"])
    print(f"\n{grid.name}: {len(plans)} runs, {points} finished points standing for {point_flops:.3g} FLOPs, "
          f"trained with {total_flops:.3g} FLOPs; {_hours(total_seconds)} in all "
          f"({_on_workers(total_seconds, workers)}): training at the rates shown plus each run's start-up, "
          f"{_hours(start.seconds)} ({start.source}); evaluations and inference add to it")
    from scaling.sweep import law_support  # here: the fitter imports JAX, not needed by --help

    print(law_support.describe(law_support.planned_points(plans)))
    days = total_seconds / (workers or len(plans)) / 86400
    if days > LONG_PLAN_DAYS:
        print(f"scaling sweep: warning: the plan's training steps alone are estimated at {days:,.0f} days on "
              f"{workers or len(plans)} worker(s); check Grid.data_budgets (tokens) and Grid.compute_budgets (FLOPs)",
              file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    store.write_plan(directory, grid, args.grid, plans)
    jobs = [runner.job_for(directory / p.name, p) for p in plans]
    print(f"sweep folder: {directory}", flush=True)

    progress = SweepProgress(directory)

    def report(job, outcome):
        reason = store.read_job(Path(job.run_dir)).get("reason") if outcome == runner.FAILED else ""
        progress.clear()
        print(f"{outcome:12s} {job.name}" + (f": {reason}" if reason else ""), flush=True)

    # SIGTERM (a preempted VM, a job scheduler) stops the runs as Ctrl-C does: trainers checkpoint.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with progress:  # redrawn on a terminal, a line every 30 s in a log
            if args.executor == "local":
                outcomes = executors.run_local(jobs, workers, args.retry_failed, report, threads)
            else:
                outcomes = executors.run_ray(jobs, args.ray_address, args.workers, args.cpus_per_run,
                                             args.gpus_per_run, args.tpus_per_run, args.max_retries,
                                             args.retry_failed, report)
    except KeyboardInterrupt:
        print("\ninterrupted; running runs were stopped and resume when you run this command again", flush=True)
        return 130
    failed = sorted(name for name, outcome in outcomes.items() if outcome != runner.DONE)
    print(f"\n{len(outcomes) - len(failed)} of {len(plans)} runs finished"
          + (f"; not finished: {', '.join(failed)} (see scaling status {directory}; --retry_failed reruns failed ones)"
             if failed else ""))
    return 1 if failed else 0

