"""Sweeps under failure, with real processes: a SIGKILLed driver, two concurrent drivers, a Ray
worker killed mid-run, and a real smoke sweep (scaling train + scaling infer) end to end."""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scaling.sweep import claims, store

REPO = Path(__file__).resolve().parent.parent
FAST_CLAIMS = {"SCALING_CLAIM_HEARTBEAT_S": "0.5", "SCALING_CLAIM_STALE_S": "5", "SCALING_SWEEP_POLL_S": "0.5"}

# A resumable unit of work, standing in for a trainer: STEPS steps of 0.3 s, each appending a row
# and then saving its progress (a checkpoint); a restart drops rows past the checkpoint, as the
# trainer does, and continues; a finished unit started again does nothing. It records every
# start, every end, and any overlap with a live earlier instance of itself.
WORK = textwrap.dedent("""
    import json, os, sys, time
    run_dir, steps = sys.argv[1], int(sys.argv[2])
    path = lambda name: os.path.join(run_dir, name)
    try:  # a zombie (killed, never reaped by the container's init) is not running
        other = int(open(path("running.pid")).read())
        if open(f"/proc/{other}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX":
            open(path("OVERLAP"), "a").write(f"{os.getpid()} started while {other} ran\\n")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass
    done = json.load(open(path("progress.json")))["step"] if os.path.exists(path("progress.json")) else 0
    if done >= steps:  # finished already (its driver died before recording it): a no-op, like the trainer
        sys.exit(0)
    open(path("running.pid"), "w").write(str(os.getpid()))
    rows = open(path("rows.jsonl")).read().splitlines()[:done] if os.path.exists(path("rows.jsonl")) else []
    open(path("rows.jsonl"), "w").write("".join(r + "\\n" for r in rows))
    open(path("starts.log"), "a").write(f"{os.getpid()} {done}\\n")
    for step in range(done, steps):
        time.sleep(0.3)
        open(path("rows.jsonl"), "a").write(json.dumps({"step": step}) + "\\n")
        open(path("progress.tmp"), "w").write(json.dumps({"step": step + 1}))
        os.replace(path("progress.tmp"), path("progress.json"))
    open(path("ends.log"), "a").write(f"{os.getpid()}\\n")
    os.remove(path("running.pid"))
""")
STEPS = 6

DRIVER = textwrap.dedent("""
    import sys
    from scaling.sweep import executors, runner
    work, workers, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    jobs = [runner.Job(d, (("work", (sys.executable, "-c", work, d, str(%d))),)) for d in dirs]
    outcomes = executors.run_local(jobs, workers=workers)
    print(sorted(outcomes.items()))
    sys.exit(0 if set(outcomes.values()) == {"done"} else 1)
""" % STEPS)


def _driver(run_dirs: list[Path], workers: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, WORK, str(workers), *map(str, run_dirs)],
                            env={**os.environ, **FAST_CLAIMS}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _assert_exactly_once(run_dir: Path):
    assert not (run_dir / "OVERLAP").exists(), (run_dir / "OVERLAP").read_text()
    assert len(_lines(run_dir / "ends.log")) == 1, run_dir
    assert [json.loads(r)["step"] for r in _lines(run_dir / "rows.jsonl")] == list(range(STEPS)), run_dir
    assert store.read_job(run_dir)["state"] == "done"


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_sigkilled_driver_restarted_runs_every_run_exactly_once_and_loses_no_rows(tmp_path):
    run_dirs = [tmp_path / f"run{i}" for i in range(5)]
    for d in run_dirs:
        d.mkdir()
    driver = _driver(run_dirs, workers=2)
    # Kill it once a run has finished (and the driver has recorded it) and another is part-way
    # through its work. (A run whose work ends in the instant the driver dies, before the driver
    # records it, is executed again on restart; the trainer and inference phases are idempotent
    # for that reason: a finished trainer is a no-op, inference skips rows it has.)
    _wait_for(lambda: any(store.read_job(d)["state"] == "done" for d in run_dirs)
              and any(2 <= len(_lines(d / "rows.jsonl")) <= 3 and not (d / "ends.log").exists() for d in run_dirs),
              60, "a finished run and a run in progress")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished_before = {d for d in run_dirs if store.read_job(d)["state"] == "done"}
    in_progress = {d for d in run_dirs if (d / "running.pid").exists()}
    assert in_progress, "no run was in progress at the kill"
    # Its children die with it: nothing keeps working on the runs it held.
    for d in in_progress:
        pid = int((d / "running.pid").read_text())
        _wait_for(lambda: not claims.pid_running(pid),
                  10, f"work process {pid} to die with its driver")
    restarted = _driver(run_dirs, workers=2)
    out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, out + err
    for d in run_dirs:
        _assert_exactly_once(d)
    for d in finished_before:  # finished runs were not started again
        assert len(_lines(d / "starts.log")) == 1 and store.read_job(d)["attempts"] == 1
    for d in in_progress:  # the interrupted run resumed from its progress, not from zero
        starts = [int(line.split()[1]) for line in _lines(d / "starts.log")]
        assert len(starts) == 2 and starts[1] > 0 and store.read_job(d)["attempts"] == 2


@pytest.mark.slow
def test_two_concurrent_drivers_never_run_a_run_twice(tmp_path):
    run_dirs = [tmp_path / f"run{i}" for i in range(6)]
    for d in run_dirs:
        d.mkdir()
    drivers = [_driver(run_dirs, workers=2), _driver(run_dirs, workers=2)]
    results = [d.communicate(timeout=120) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], results
    owners = set()
    for d in run_dirs:
        _assert_exactly_once(d)
        assert len(_lines(d / "starts.log")) == 1 and store.read_job(d)["attempts"] == 1
        owners.add(store.read_job(d)["owner"].split(":")[1])
    assert len(owners) == 2  # both drivers did part of the work


def _sweep(tmp_path, *extra, env=None) -> subprocess.Popen:
    args = [sys.executable, "-m", "scaling.cli", "sweep", str(REPO / "grids" / "smoke.gin"),
            f"--sweep_dir={tmp_path / 'sweep'}", "--throughput=1e9", *extra]
    return subprocess.Popen(args, cwd=REPO, env={**os.environ, **FAST_CLAIMS, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_and_the_run_resumes_from_its_checkpoint(tmp_path):
    pytest.importorskip("ray")
    sweep = _sweep(tmp_path, "--gin.Grid.models=['p50k']", "--gin.Grid.arms={'vanilla': 'synthetic_vanilla'}",
                   "--gin.Grid.infer_files=[]", "--gin.Grid.data_budgets=[16000]", "--executor=ray")
    run_dir = None

    def training_past_a_checkpoint():
        nonlocal run_dir
        found = list((tmp_path / "sweep").glob("p50k_vanilla*/checkpoints/trunk/*"))
        if found:
            run_dir = found[0].parents[2]
            return any(p.name.isdigit() for p in found)
        return False

    _wait_for(training_past_a_checkpoint, 240, "a trunk checkpoint")
    _, claim = claims.current(run_dir)
    steps_before = [json.loads(line)["step"] for line in _lines(run_dir / "log.jsonl")]
    checkpoint_at_kill = min(int(p.name) for p in (run_dir / "checkpoints" / "trunk").iterdir() if p.name.isdigit())
    os.kill(int(claim["pid"]), signal.SIGKILL)  # the Ray worker executing the run
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, out
    assert "os.fork()" not in out and "Token authentication" not in out, out  # Ray starts quietly
    assert "100.0%  runs done 1/1" in out, out  # progress in a log, not only outcome lines
    job = store.read_job(run_dir)
    assert job["state"] == "done" and job["attempts"] == 2, job
    train_log = (run_dir / "run.log").read_text()
    assert train_log.count("=== attempt") == 2
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished"
    finals = [json.loads(line) for line in _lines(run_dir / "training_rows.jsonl") if json.loads(line)["is_final"]]
    assert [r["branch"] for r in finals] == ["D=1.6e4"]
    # Each attempt opens its own TensorBoard file (the killed one may not have flushed any); the
    # second attempt's first step is past the checkpoint that existed at the kill: it restored it.
    second = _tensorboard_steps(_newest_events(run_dir))
    assert steps_before and checkpoint_at_kill < min(second), (second, checkpoint_at_kill)


def _newest_events(run_dir: Path) -> Path:
    return max((run_dir / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)


def _tensorboard_steps(path: Path) -> list[int]:
    """Steps of the summaries in a TensorBoard event file (TFRecord framing, tensorboardX protos)."""
    from tensorboardX.proto import event_pb2

    data, offset, steps = path.read_bytes(), 0, []
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        if event.summary.value:
            steps.append(event.step)
    return steps


@pytest.mark.slow
def test_smoke_sweep_end_to_end_with_status_and_collected_tables(tmp_path, run_cli):
    one_size = ("--gin.Grid.models=['p50k']",)
    sweep = _sweep(tmp_path, *one_size, "--workers=2")
    out, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, out
    assert "2 of 2 runs finished" in out
    status = run_cli("status", tmp_path / "sweep", check=True)
    assert "2 done" in status.stdout
    collected = run_cli("collect", tmp_path / "sweep", "-o", tmp_path / "results", check=True)
    training = pq.read_table(tmp_path / "results" / "training.parquet").to_pandas()
    finals = training[training.is_final]
    assert sorted(zip(finals.arm, finals.branch)) == [("thinking", "D=4.0e3"), ("thinking", "D=8.0e3"),
                                                      ("vanilla", "D=4.0e3"), ("vanilla", "D=8.0e3")]
    assert (finals.sweep == "smoke").all() and (finals.tokens_thinking[finals.arm == "thinking"] > 0).all()
    inference = pq.read_table(tmp_path / "results" / "inference.parquet").to_pandas()
    assert set(inference.branch) == {"D=8.0e3"} and set(inference.thinking_budget) == {0, 8}
    assert "rows" in collected.stdout
    # A second invocation finds everything finished and runs nothing.
    again = _sweep(tmp_path, *one_size)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "2 of 2 runs finished" in out
    assert all(store.read_job(d)["attempts"] == 1 for d in (tmp_path / "sweep").iterdir() if d.is_dir())


@pytest.mark.slow
def test_a_sigkilled_scaling_sweep_resumes_its_run_and_runs_the_rest_once(tmp_path):
    """The real thing: `scaling sweep` (two cosine runs, one at a time) is SIGKILLed while its first
    run trains past a checkpoint; its trainer dies with it; the restarted sweep resumes that run
    from the checkpoint and runs the second once."""
    grid = ("--gin.Grid.models=['p50k']", "--gin.Grid.arms={'vanilla': 'synthetic_vanilla'}",
            "--gin.Grid.infer_files=[]", "--gin.Grid.schedule='cosine'", "--gin.Grid.data_budgets=[8000, 12000]",
            "--workers=1")
    sweep = _sweep(tmp_path, *grid)
    checkpoints = lambda: [p for p in (tmp_path / "sweep").glob("*/checkpoints/D=*/*") if p.name.isdigit()]
    _wait_for(lambda: checkpoints(), 240, "a checkpoint of the first run")
    first = checkpoints()[0].parents[2]
    checkpoint_at_kill = min(int(p.name) for p in checkpoints())
    _, claim = claims.current(first)
    trainer_pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(claim["pid"])], capture_output=True,
                                                   text=True).stdout.split()]
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    for pid in trainer_pids:
        _wait_for(lambda: not claims.pid_running(pid),
                  10, f"trainer {pid} to die with the sweep driver")
    assert store.read_job(first)["state"] == "running"  # as the kill left it: crashed
    again = _sweep(tmp_path, *grid)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "2 of 2 runs finished" in out, out
    runs = [d for d in (tmp_path / "sweep").iterdir() if d.is_dir()]
    assert len(runs) == 2
    for run_dir in runs:
        job = store.read_job(run_dir)
        assert job["state"] == "done" and job["attempts"] == (2 if run_dir == first else 1), (run_dir, job)
        finals = [json.loads(line) for line in _lines(run_dir / "training_rows.jsonl") if json.loads(line)["is_final"]]
        assert len(finals) == 1 and finals[0]["schedule"] == "cosine", finals
        steps = [json.loads(line)["step"] for line in _lines(run_dir / "log.jsonl")]
        assert steps == sorted(set(steps)), "log rows duplicated or lost across the resume"
    assert min(_tensorboard_steps(_newest_events(first))) > checkpoint_at_kill  # resumed, not from step 0


RAY_DRIVER = textwrap.dedent("""
    import sys
    from scaling.sweep import executors, runner
    work, address, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    jobs = [runner.Job(d, (("work", (sys.executable, "-c", work, d, str(%d))),)) for d in dirs]
    outcomes = executors.run_ray(jobs, address=address, cpus_per_run=1)
    print(sorted(outcomes.items()))
    sys.exit(0 if set(outcomes.values()) == {"done"} else 1)
""" % STEPS)


@pytest.mark.slow
def test_the_ray_executor_runs_on_a_cluster_started_with_ray_start_head(tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = Path(sys.executable).parent / "ray"
    # --block keeps `ray start` in the foreground, so stopping it (by its pid) stops the cluster.
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        run_dirs = [tmp_path / f"run{i}" for i in range(3)]
        for d in run_dirs:
            d.mkdir()
        # 'auto' finds the cluster `ray start` recorded on this machine, as tpu/pod.py's sweep does.
        recorded = Path("/tmp/ray/ray_current_cluster")
        _wait_for(lambda: recorded.exists() and recorded.read_text().strip().endswith(f":{port}"), 120,
                  "the Ray head to come up")
        driver = subprocess.run([sys.executable, "-c", RAY_DRIVER, WORK, "auto", *map(str, run_dirs)],
                                env={**os.environ, **FAST_CLAIMS}, capture_output=True, text=True, timeout=180)
        assert driver.returncode == 0, driver.stdout + driver.stderr
        for d in run_dirs:
            _assert_exactly_once(d)
            assert len(_lines(d / "starts.log")) == 1
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


@pytest.mark.slow
def test_a_run_with_a_non_finite_loss_is_recorded_failed_and_left_alone_without_retry_failed(tmp_path, run_cli):
    grid = ("--gin.Grid.models=['p50k']", "--gin.Grid.arms={'vanilla': 'synthetic_vanilla'}", "--gin.Grid.infer_files=[]",
            "--gin.Grid.train_overrides={'train.batch_size': 4, 'train.learning_rate': 1e12, 'train.grad_clip': 0.0}")
    out, _ = _sweep(tmp_path, *grid).communicate(timeout=300)
    assert "failed" in out and "non-finite loss" in out and "0 of 1 runs finished" in out, out
    assert "runs done 0/1" in out, out  # the sweep's progress line, written to a pipe
    status = run_cli("status", tmp_path / "sweep", check=True)
    assert "failed" in status.stdout and "non-finite loss" in status.stdout
    again = _sweep(tmp_path, *grid)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 1 and "non-finite loss" in out
    (run_dir,) = [d for d in (tmp_path / "sweep").iterdir() if d.is_dir()]
    assert store.read_job(run_dir)["attempts"] == 1  # not run again
