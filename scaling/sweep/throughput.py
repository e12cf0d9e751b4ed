"""Training throughput for wall-time estimates: read from earlier runs, or measured here.

Earlier runs' log.jsonl lines carry flops_per_s; a run of the same architecture and batch size
anywhere in the sweep folder gives its median. Otherwise a few real training steps of the
architecture (the trainer's own jitted step, on random tokens) are timed on this machine. An
architecture whose single step would take longer than `max_step_s` at the fastest rate seen so
far is not measured; it borrows the rate of the largest measured one, and says so. Nor is an
architecture whose runs' steps would all take under `PEAK_BOUND_S` at this machine's matmul peak:
measuring compiles a step, which costs more than such runs train, and their wall time is start-up
and compilation, which no step rate predicts. Its rate is then the peak, so its time is a lower
bound, and says so.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from analysis.appended import read_records
from scaling import accounting, timings
from scaling.model_config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Throughput:
    flops_per_s: float
    source: str  # 'recorded', 'measured', 'as <arch>', 'given', or PEAK_SOURCE (a lower bound on time)


# Runs whose steps would take less than this at the matmul peak are not worth a measurement.
PEAK_BOUND_S = 1.0
PEAK_SOURCE = "at the matmul peak: a lower bound"


@dataclasses.dataclass(frozen=True)
class StartUp:
    """A run's seconds before its first training step: process start, imports, compilation."""
    seconds: float
    source: str


def process_seconds() -> float:
    """Seconds since this process started: the interpreter's start-up and the imports so far."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # not Linux: from the import of scaling.timings
        return time.time() - timings.PROCESS.started


def startup(sweep_dir: Path, smallest: tuple[ModelConfig, int] | None, imports_s: float) -> StartUp:
    """Each run's start-up: the median that the sweep folder's runs recorded (timings.jsonl), else
    this process's imports (`imports_s`, what a run's process also pays) plus compiling and taking
    a step of the smallest model here (None: not measured), a lower bound either way a run
    compiles its evaluation and inference too."""
    seen = [float(record["startup_s"]) for path in Path(sweep_dir).glob(f"*/{timings.FILE}")
            for record in read_records(path) if "startup_s" in record]
    if seen:
        return StartUp(statistics.median(seen), f"recorded: median of {len(seen)} processes")
    began = time.perf_counter()
    importlib.import_module("scaling.train")  # what a run's process imports beyond this one's
    imports_s += time.perf_counter() - began
    if smallest is None:
        return StartUp(imports_s, f"imports {imports_s:.0f}s; compilation not measured (--throughput given): "
                                  "a lower bound")
    began = time.perf_counter()
    measure(*smallest, steps=1)
    compile_s = time.perf_counter() - began
    return StartUp(imports_s + compile_s, f"measured here: process start and imports {imports_s:.0f}s + "
                                          f"compiling the smallest model's step {compile_s:.0f}s; a lower bound")


def recorded(sweep_dir: Path, config: dict, batch_size: int) -> float | None:
    """Median flops_per_s logged by finished or running runs of this architecture and batch size."""
    rates = []
    for run_json in Path(sweep_dir).glob("*/run.json"):
        point = json.loads(run_json.read_text())["point"]
        if point["config"] != config or point.get("batch_size") != batch_size:
            continue
        log = run_json.parent / "log.jsonl"
        if not log.is_file():
            continue
        lines = read_records(log)[-20:]
        rates += [float(r["flops_per_s"]) for r in lines[1:] if r.get("flops_per_s")]  # first includes compile
    return statistics.median(rates) if rates else None


def measure(config: ModelConfig, batch_size: int, steps: int = 3) -> float:
    """FLOP/s of the trainer's jitted training step on this machine (compile excluded)."""
    import jax  # here: planning a sweep (and its --help) reads recorded rates without JAX
    import jax.numpy as jnp

    from scaling import partitioning
    from scaling.optimizer import make_optimizer
    from scaling.step import compile_functions

    mesh = partitioning.make_mesh(-1, 1)
    batch_size = max(mesh.size, batch_size - batch_size % mesh.size)
    compiled = compile_functions(config, make_optimizer(0.9, 0.95, 0.1, 1.0), mesh, seed=0)
    params, opt_state = compiled.init()
    rng = np.random.default_rng(0)
    shape = (batch_size, config.seq_len)
    tokens = rng.integers(0, config.vocab_size, size=(batch_size, config.seq_len + 1), dtype=np.int32)
    batch = partitioning.global_batch({
        "inputs": tokens[:, :-1], "targets": tokens[:, 1:],
        "positions": np.broadcast_to(np.arange(config.seq_len, dtype=np.int32), shape).copy(),
        "segment_ids": np.ones(shape, np.int32), "loss_weights": np.ones(shape, np.float32)}, mesh)
    lr = jnp.asarray(1e-3, jnp.float32)
    params, opt_state, loss = compiled.step(params, opt_state, batch, lr)  # compile
    jax.block_until_ready(loss)
    start = time.perf_counter()
    for _ in range(steps):
        params, opt_state, loss = compiled.step(params, opt_state, batch, lr)
    jax.block_until_ready(loss)
    seconds = (time.perf_counter() - start) / steps
    return accounting.training_flops_per_token(config) * batch_size * config.seq_len / seconds


def estimate(architectures: list[tuple[str, ModelConfig, int]], sweep_dir: Path,
             max_step_s: float = 5.0, training_flops: dict[str, float] | None = None) -> dict[str, Throughput]:
    """label -> throughput for each (label, config, batch_size), smallest architecture first.
    training_flops: label -> the FLOPs its runs train (all of them), for the peak bound."""
    out: dict[str, Throughput] = {}
    largest_measured: tuple[str, float] | None = None
    peak: float | None = None
    ordered = sorted(architectures, key=lambda a: accounting.training_flops_per_token(a[1]) * a[2])
    for label, config, batch_size in ordered:
        rate = recorded(sweep_dir, dataclasses.asdict(config), batch_size)
        if rate:
            out[label] = Throughput(rate, "recorded")
            continue
        if training_flops is not None and label in training_flops:
            if not peak:
                from scaling import mfu  # JAX, as measure()

                peak = mfu.measure_matmul_peak()
            if training_flops[label] / peak < PEAK_BOUND_S:
                out[label] = Throughput(peak, PEAK_SOURCE)
                continue
        step_flops = accounting.training_flops_per_token(config) * batch_size * config.seq_len
        if largest_measured is not None and step_flops / largest_measured[1] > max_step_s:
            out[label] = Throughput(largest_measured[1], f"as {largest_measured[0]}")
            continue
        rate = measure(config, batch_size)
        out[label] = Throughput(rate, "measured")
        largest_measured = (label, rate)
    return out
