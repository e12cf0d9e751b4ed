"""Executors: hand runs to workers until every run is finished or failed.

One scheduling loop serves both. `local` runs up to N runs at a time, each a subprocess started
from a worker thread of this driver; `ray` makes each run a Ray task with resource requests
(CPU, GPU, TPU) that Ray retries when its worker dies. Either way a run is executed under a claim
(scaling.sweep.claims), so a run held by another driver is left alone and polled until that
driver finishes it (or dies, and its claim goes stale).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import queue
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

from scaling.configuration import ConfigError
from scaling.sweep import runner, store
from scaling.sweep.runner import FAILED, INTERRUPTED, TERMINAL, Job

POLL_S = float(os.environ.get("SCALING_SWEEP_POLL_S", "5"))


def _schedule(jobs: list[Job], capacity: int, submit: Callable, wait: Callable,
              on_outcome: Callable[[Job, str], None], in_flight: dict) -> dict[str, str]:
    """Submit jobs up to `capacity` at a time; busy ones wait POLL_S and are tried again.
    `in_flight` (handle -> job) is the caller's, so it can cancel what is running on Ctrl-C."""
    queue = collections.deque(jobs)
    later: list[tuple[float, Job]] = []
    outcomes: dict[str, str] = {}
    while queue or later or in_flight:
        now = time.monotonic()
        queue.extend(job for due, job in later if due <= now)
        later = [(due, job) for due, job in later if due > now]
        while queue and len(in_flight) < capacity:
            job = queue.popleft()
            in_flight[submit(job)] = job
        if not in_flight:
            time.sleep(max(0.05, min(due for due, _ in later) - time.monotonic()))
            continue
        for handle, outcome in wait(list(in_flight), timeout=POLL_S):
            job = in_flight.pop(handle)
            if outcome in TERMINAL or outcome == INTERRUPTED:
                outcomes[job.name] = outcome
                on_outcome(job, outcome)
            else:  # BUSY or LOST: another driver holds it; look again later
                later.append((time.monotonic() + POLL_S, job))
    return outcomes


def available_cpus() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def local_layout(workers: int | None, threads_per_worker: int | None) -> tuple[int, int]:
    """(workers, threads per worker) for the local executor. Default: one single-threaded worker
    per core, which measured fastest for the small models a CPU sweep trains (docs/sweeps.md);
    given one of the two, the other fills the machine."""
    cores = len(available_cpus())
    for name, value in (("--workers", workers), ("--threads_per_worker", threads_per_worker)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if workers is None:
        threads = threads_per_worker or 1
        return max(1, cores // threads), threads
    return workers, threads_per_worker or max(1, cores // workers)


def worker_resources(workers: int, threads: int) -> list[runner.Resources]:
    """Each worker's own cores, `threads` of them (wrapping round when the layout oversubscribes)."""
    cpus = available_cpus()
    layout = f"{workers}x{threads}"
    return [runner.Resources(tuple(cpus[(w * threads + t) % len(cpus)] for t in range(threads)), threads, layout)
            for w in range(workers)]


def run_local(jobs: list[Job], workers: int = 1, retry_failed: bool = False,
              on_outcome: Callable[[Job, str], None] = lambda j, o: None,
              threads_per_worker: int | None = None) -> dict[str, str]:
    """Run the jobs from this process, `workers` at a time, each pinned to its worker's cores.
    Ctrl-C stops them as interrupted."""
    stop = threading.Event()
    workers = max(1, workers)
    slots: queue.Queue = queue.Queue()
    for resources in worker_resources(workers, threads_per_worker or max(1, len(available_cpus()) // workers)):
        slots.put(resources)

    def execute(job):
        resources = slots.get()
        try:
            return runner.execute(job, retry_failed, stop, resources=resources)
        finally:
            slots.put(resources)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="run") as pool:
        def submit(job):
            return pool.submit(execute, job)

        def wait(handles, timeout):
            done, _ = concurrent.futures.wait(handles, timeout=timeout,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            return [(h, h.result()) for h in done]

        try:
            return _schedule(jobs, max(1, workers), submit, wait, on_outcome, {})
        except KeyboardInterrupt:
            stop.set()
            raise


def ray_workers(workers: int | None, address: str | None, cpus_per_run: float, gpus_per_run: float,
                tpus_per_run: float, runs: int) -> int | None:
    """Runs at a time under Ray, for the plan: --workers, else what a new local cluster fits of
    the runs (its CPUs / cpus_per_run); None when only the cluster knows (a remote cluster, or
    accelerators per run)."""
    if workers:
        return workers
    if address or gpus_per_run or tpus_per_run:
        return None
    fits = int((os.cpu_count() or 1) // cpus_per_run) if cpus_per_run else runs
    return max(1, min(runs, fits))


def _ray_execute(job: dict, retry_failed: bool, threads: int | None = None) -> str:
    """The body of a run's Ray task (module level, so workers import it by name); Ray places it
    on its CPUs, the run's thread pools are sized to them."""
    return runner.execute(Job.from_json(job), retry_failed, resources=runner.Resources(threads=threads))


def run_ray(jobs: list[Job], address: str | None = None, workers: int | None = None,
            cpus_per_run: float = 1, gpus_per_run: float = 0, tpus_per_run: float = 0,
            max_retries: int = 3, retry_failed: bool = False,
            on_outcome: Callable[[Job, str], None] = lambda j, o: None) -> dict[str, str]:
    """Each run a Ray task. address: None starts a new local cluster for this driver; 'auto' or
    host:port joins one started with `ray start --head`."""
    if not address:
        # Token authentication, which Ray turns on for a new local cluster anyway, chosen
        # explicitly: Ray then says nothing about it. Read when Ray is imported.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray  # here: Ray is optional, needed only by --executor=ray

    if not ray.is_initialized():
        with warnings.catch_warnings():
            # JAX warns at every fork; Ray's fork_exec of its own processes executes a new program
            # at once, so none of this process's threads is copied into anything that runs.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                # "local": a new cluster for this driver, never one a stale /tmp/ray record points to
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         object_store_memory=100 * 1024 * 1024)
    resources = {"TPU": tpus_per_run} if tpus_per_run else None
    available = ray.cluster_resources()
    for name, need in (("CPU", cpus_per_run), ("GPU", gpus_per_run), ("TPU", tpus_per_run)):
        if need and available.get(name, 0) < need:
            raise ConfigError(f"--{name.lower()}s_per_run={need}: the Ray cluster has {available.get(name, 0)} "
                              f"{name} in all; no run could ever be scheduled")
    task = ray.remote(_ray_execute).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, resources=resources,
                                            max_retries=max_retries, retry_exceptions=False)

    def submit(job):
        return task.remote(job.to_json(), retry_failed, max(1, int(cpus_per_run)) if cpus_per_run else None)

    in_flight: dict = {}

    def wait(handles, timeout):
        done, _ = ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            try:
                out.append((ref, ray.get(ref)))
            except ray.exceptions.RayError as e:  # its retries are spent, or it raised
                run_dir = Path(in_flight[ref].run_dir)
                reason = f"Ray task failed after {max_retries} retries: {str(e).strip().splitlines()[-1]}"
                store.write_job(run_dir, {**store.read_job(run_dir), "state": FAILED, "reason": reason})
                out.append((ref, FAILED))
        return out

    try:
        return _schedule(jobs, workers or len(jobs) or 1, submit, wait, on_outcome, in_flight)
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref)
        raise

