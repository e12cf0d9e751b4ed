"""Execute one run: claim it, run its phases (train, then infer) as subprocesses, record the outcome.

The same function runs in a local driver's worker thread and inside a Ray task. A run's phases
are commands; `scaling` as the first word means this interpreter's `scaling` CLI, so a Ray worker
runs the project installed on its own host. Children die with the process that started them
(Linux parent-death signal), so a killed driver or Ray worker never leaves a trainer behind to
race the run's next attempt.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scaling import timings
from scaling.native_noise import NOISE
from scaling.sweep import claims, store

# Outcomes of execute(): terminal ones end the run's scheduling; the rest are retried later.
DONE, FAILED, BUSY, LOST, INTERRUPTED = "done", "failed", "busy", "lost", "interrupted"
TERMINAL = (DONE, FAILED)

# Runs a command with the parent-death signal set and, where given, pinned to its worker's cores
# (XLA, tf.data and BLAS size their thread pools from the cores a process may use), then
# replaces itself with the command.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(137)\n"
    "if sys.argv[2] != '-' and hasattr(os, 'sched_setaffinity'):\n"
    "    os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(',')})\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)
# Thread-pool sizes of the libraries a run uses, set to its share of the machine.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS")


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one run may use: the cores it is pinned to (None: not pinned), its thread count, and
    the executor's layout "<workers>x<threads>" (recorded in timings.jsonl)."""

    cpus: tuple[int, ...] | None = None
    threads: int | None = None
    layout: str = ""

    def environment(self) -> dict[str, str]:
        env = {timings.LAUNCHED_AT_ENV: repr(time.time())}
        if self.threads:
            env.update({name: str(self.threads) for name in THREAD_VARIABLES})
        if self.layout:
            env[timings.LAYOUT_ENV] = self.layout
        return env


@dataclasses.dataclass(frozen=True)
class Job:
    """A run folder and the commands that make it (each phase: (name, argv))."""

    run_dir: str
    phases: tuple

    @property
    def name(self) -> str:
        return Path(self.run_dir).name

    def to_json(self) -> dict:
        return {"run_dir": self.run_dir, "phases": [[n, list(a)] for n, a in self.phases]}

    @classmethod
    def from_json(cls, obj: dict) -> "Job":
        return cls(obj["run_dir"], tuple((n, tuple(a)) for n, a in obj["phases"]))


def job_for(run_dir: Path, plan: store.RunPlan) -> Job:
    """The command of a planned run: one process that trains (resuming what is there) and then
    evaluates each branch to be inferred, so start-up, imports and compilation are paid once
    per run. The phase is named "run" (older records named "train" and "infer_<branch>" phases;
    a run whose "run" phase is not done simply runs it: finished work is skipped inside)."""
    run_dir = Path(run_dir).resolve()
    command = ("scaling", "train", f"--gin_file={run_dir / 'config.gin'}", f"--gin.MODEL_DIR={run_dir}")
    if plan.infer_config:
        command += (f"--infer_gin_file={run_dir / 'infer.gin'}",
                    f"--infer_branches={','.join(plan.point['infer_branches'])}")
    return Job(str(run_dir), (("run", command),))


def _argv(command: tuple) -> list[str]:
    if command and command[0] == "scaling":
        return [sys.executable, "-m", "scaling.cli", *command[1:]]
    return list(command)


def _failure_reason(run_dir: Path, phase: str, returncode: int, log: Path) -> str:
    status = store.read_json(run_dir / "status.json", default={}) if phase in ("run", "train") else {}
    if isinstance(status, dict) and status.get("state") == "failed" and status.get("reason"):
        return str(status["reason"])
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
    lines = [line for line in log.read_text(errors="replace").splitlines()
             if line.strip() and not NOISE.match(line.encode())] if log.exists() else []
    # the command's own one-line error where there is one, else the log's last lines
    tail = [line for line in lines if line.startswith("scaling ")][-1:] or lines[-3:]
    return f"{phase} {how}" + (": " + " | ".join(tail) if tail else "")


def _stop_child(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited within grace_s."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def execute(job: Job, retry_failed: bool = False, stop: threading.Event | None = None,
            owner: str | None = None, resources: Resources = Resources()) -> str:
    """Run the job's remaining phases under a claim; returns one of the outcomes above."""
    run_dir = Path(job.run_dir)
    record = store.read_job(run_dir)
    if record["state"] == DONE or (record["state"] == FAILED and not retry_failed):
        return record["state"]
    claim = claims.Claim.acquire(run_dir, owner)
    if claim is None:
        return BUSY
    try:
        record = store.read_job(run_dir)  # re-read under the claim: another driver may have finished it
        if record["state"] == DONE or (record["state"] == FAILED and not retry_failed):
            return record["state"]
        claim.start_heartbeat()
        record.update(state="running", attempts=record.get("attempts", 0) + 1, owner=claim.owner, reason="")
        record.setdefault("phases_done", [])
        for phase, command in job.phases:
            if phase in record["phases_done"]:
                continue
            record["phase"] = phase
            store.write_job(run_dir, record)
            started = time.monotonic()
            outcome, returncode = _run_phase(run_dir, phase, command, claim, stop, record["attempts"], resources)
            seconds = record.setdefault("seconds", {})
            seconds[phase] = seconds.get(phase, 0.0) + time.monotonic() - started
            if outcome == LOST:
                return LOST
            if outcome == INTERRUPTED:
                store.write_job(run_dir, {**record, "state": INTERRUPTED})
                return INTERRUPTED
            if returncode != 0:
                reason = _failure_reason(run_dir, phase, returncode, run_dir / f"{phase}.log")
                store.write_job(run_dir, {**record, "state": FAILED, "reason": reason})
                return FAILED
            record["phases_done"].append(phase)
        store.write_job(run_dir, {**record, "state": DONE, "phase": ""})
        return DONE
    except KeyboardInterrupt:  # a cancelled Ray task
        store.write_job(run_dir, {**record, "state": INTERRUPTED})
        return INTERRUPTED
    finally:
        claim.release()


def _run_phase(run_dir: Path, phase: str, command: tuple, claim: claims.Claim,
               stop: threading.Event | None, attempt: int, resources: Resources) -> tuple[str, int]:
    log = run_dir / f"{phase}.log"
    with open(log, "a") as out:
        out.write(f"\n=== attempt {attempt} by {claim.owner} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{json.dumps(list(command))}\n")
        out.flush()
        cpus = ",".join(map(str, resources.cpus)) if resources.cpus else "-"
        argv = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), cpus, *_argv(command)]
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **resources.environment()})
        try:
            while True:
                try:
                    return DONE, proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
                if claim.lost.is_set():
                    _stop_child(proc)
                    return LOST, -1
                if stop is not None and stop.is_set():
                    _stop_child(proc)
                    return INTERRUPTED, -1
        except BaseException:
            _stop_child(proc)
            raise
