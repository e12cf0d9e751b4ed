"""Sweeps through their public surface: grid expansion, run identity, claims, executors running
real commands, status from run folders, and collection into the result tables."""

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gin
import pyarrow.parquet as pq
import pytest

from analysis.atomic import write_json_atomic
from scaling import accounting
from scaling.configuration import ConfigError
from scaling.presets import load_model_config
from scaling.sweep import claims, collect, executors, grid as grids, runner, store, throughput
from scaling.sweep.launch import plan

REPO = Path(__file__).resolve().parent.parent
SMOKE = str(REPO / "grids" / "smoke.gin")


# -- grids ----------------------------------------------------------------------------------------


def test_smoke_grid_groups_budgets_into_one_run_per_size_arm_and_seed():
    grid = grids.load_grid(SMOKE)
    points = grids.expand(grid)
    assert grid.name == "smoke"
    assert [p.readable_name for p in points] == [
        "p50k_vanilla_s0_wsd", "p50k_thinking_s0_wsd", "p100k_vanilla_s0_wsd", "p100k_thinking_s0_wsd"]
    assert all(p.data_budgets == (4000, 8000) for p in points)
    assert {p.task for p in points} == {"synthetic_vanilla", "synthetic_thinking"}
    assert all(p.model.config.seq_len == 64 for p in points)  # a one-value axis: applied, not named


def test_the_dry_run_lists_runs_in_the_order_the_executors_start_them(tmp_path, run_cli):
    # smoke.gin lists p50k before p100k; at one given rate the larger model's runs take longer.
    def order(workers):
        proc = run_cli("sweep", SMOKE, f"--sweep_dir={tmp_path / 's'}", "--dry_run", "--throughput=1e9",
                       f"--workers={workers}", check=True)
        return [line.split()[0].split("_")[:2] for line in proc.stdout.splitlines()
                if line.startswith(("p50k_", "p100k_"))]

    # One worker: longest first, ties in the grid's order.
    assert order(1) == [["p100k", "vanilla"], ["p100k", "thinking"], ["p50k", "vanilla"], ["p50k", "thinking"]]
    # Two: the runs started together differ in size and arm (each compiles and produces its own).
    assert order(2) == [["p100k", "vanilla"], ["p50k", "thinking"], ["p100k", "thinking"], ["p50k", "vanilla"]]


def test_the_dry_run_says_which_laws_the_grid_can_fit_and_counts_start_up(tmp_path, capsys):
    """Before anything trains: which laws the finished points support, with the fitter's own
    point counts; each run's time includes its start-up (recorded by earlier runs when there are
    any); the Ray plan names the workers a local cluster runs at once."""
    from scaling.cli import main

    def dry_run(*extra):  # a rate at which the smoke runs train in well under a second
        try:
            assert main(["sweep", SMOKE, f"--sweep_dir={tmp_path / 's'}", "--dry_run", "--throughput=1e15", *extra]) == 0
        finally:
            gin.clear_config()  # the command's bindings stay in this process otherwise
        return capsys.readouterr().out

    out = dry_run()
    laws = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "arm vanilla: 4 points are too few" in laws["chinchilla"] and "(need at least 10)" in laws["chinchilla"]
    assert "8 points are too few" in laws["augmentation"]
    assert "no: needs a loss law" in laws["joint_inference"]
    assert "start-up" in out and "compilation not measured (--throughput given)" in out
    out = dry_run("--gin.Grid.data_budgets=[2000, 4000, 8000, 16000, 32000]")
    laws = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert laws["chinchilla"].split()[1:] == ["yes"] and laws["augmentation"].split()[1:] == ["yes"]
    assert laws["joint_inference"].split()[1:] == ["yes"]
    assert "0 compute budget(s) with 3 or more sizes" in laws["approach"]

    # earlier runs' recorded start-up is what each run is estimated to add
    run_dir = tmp_path / "s" / "earlier"
    run_dir.mkdir(parents=True)
    (run_dir / "timings.jsonl").write_text("\n".join(json.dumps({"command": "train", "startup_s": s})
                                                       for s in (40.0, 50.0, 60.0)) + "\n")
    out = dry_run("--workers=1")
    assert "50s (recorded: median of 3 processes)" in out
    runs = [line for line in out.splitlines() if line.startswith(("p50k_", "p100k_"))]
    assert len(runs) == 4 and all(" 50s (training 0s given)" in line for line in runs)
    assert "3m in all (3m on 1 worker(s))" in out  # 4 runs x 50 s
    out = dry_run("--executor=ray", "--cpus_per_run=1")  # a new local cluster: one run per CPU
    assert f"on {min(4, os.cpu_count())} worker(s)" in out


def test_cosine_makes_one_run_per_data_budget():
    points = grids.expand(grids.load_grid(SMOKE, ("Grid.schedule = 'cosine'",)))
    assert len(points) == 8 and all(len(p.data_budgets) == 1 for p in points)
    assert "p50k_vanilla_s0_cosine_D4e03" in [p.readable_name for p in points]


def test_isoflop_budgets_spend_the_compute_and_respect_the_tokens_per_param_bounds():
    grid = grids.load_grid(SMOKE, ("Grid.data_budgets = []", "Grid.compute_budgets = [1e10, 1e11]",
                                   "Grid.models = ['p50k', 'p100k', 'p1m']", "Grid.tokens_per_param = (1, 100)"))
    points = grids.expand(grid)
    for p in points:
        for d, c in zip(p.data_budgets, p.compute_budgets):
            assert d * accounting.training_flops_per_token(p.model.config) == pytest.approx(c, rel=1e-5)
            assert 1 <= d / p.model.params <= 100
    # p1m (0.9M params) at 1e10 FLOPs gets ~4000 tokens: 0.004 tokens per parameter, dropped.
    p1m = [p for p in points if p.model.preset == "p1m"]
    assert all(c == 1e11 for p in p1m for c in p.compute_budgets)


def test_architecture_axes_form_a_product_with_mlp_ratio_setting_d_ff():
    grid = grids.load_grid(SMOKE, ("Grid.models = ['p1m']", "Grid.arms = {'vanilla': 'synthetic_vanilla'}",
                                   "Grid.axes = {'d_model': [128, 192], 'n_heads': [4], 'mlp_ratio': [2.0, 4.0]}"))
    models = grids.models(grid)
    assert [(m.config.d_model, m.config.d_ff) for m in models] == [(128, 256), (128, 512), (192, 384), (192, 768)]
    assert models[1].label == "p1m.d128.r4" and "ModelConfig.d_ff = 512" in models[1].bindings


@pytest.mark.parametrize("binding, message", [
    ("Grid.models = ['p7q']", "no preset 'p7q'"),
    ("Grid.axes = {'width': [1]}", "unknown axis 'width'"),
    ("Grid.schedule = 'linear'", "Grid.schedule must be one of"),
    ("Grid.train_overrides = {'ModelConfig.d_model': 64}", "vary it with Grid.axes"),
    ("Grid.axes = {'n_heads': [3]}", "is not a valid architecture"),
    ("Grid.arm_overrides = {'other': {}}", "'other' is not one of Grid.arms"),
    ("Grid.seeds = 0", "Grid.seeds must be a list"),
    ("Grid.seeds_per_model = {'p1m': 1}", r"Grid.seeds_per_model: 'p1m' is not one of Grid.models"),
    ("Grid.seeds_per_model = {'p50k': 0}", r"Grid.seeds_per_model\['p50k'\] must be a count of seeds >= 1"),
])
def test_bad_grids_fail_naming_the_binding(binding, message):
    with pytest.raises(ConfigError, match=message):
        grids.expand(grids.load_grid(SMOKE, (binding,)))


def test_seeds_per_model_trains_the_first_seeds_of_a_preset_and_every_seed_of_the_others():
    grid = grids.load_grid(SMOKE, ("Grid.models = ['p50k', 'p100k']", "Grid.seeds = [4, 2, 7]",
                                   "Grid.seeds_per_model = {'p50k': 2, 'p100k': 5}"))
    vanilla = [(p.model.preset, p.seed) for p in grids.expand(grid) if p.arm == "vanilla"]
    assert sorted(vanilla) == [("p100k", 2), ("p100k", 4), ("p100k", 7), ("p50k", 2), ("p50k", 4)]


def test_names_are_sanitised_into_one_safe_path_component():
    assert grids.sanitise("../../etc/passwd") == "etc-passwd"
    assert grids.sanitise("a b/c") == "a-b-c"
    with pytest.raises(ConfigError):
        grids.sanitise("../..")
    grid = grids.load_grid(SMOKE, ("Grid.name = '../escape'",))
    assert grid.name == "escape"


# -- identity and planning ----------------------------------------------------------------------------


def test_identity_hash_follows_the_resolved_config_and_a_changed_point_is_refused_with_a_diff(tmp_path):
    grid, plans, directory = plan(SMOKE, ("Grid.models = ['p50k']",), str(tmp_path / "s"))
    assert [p.readable for p in plans] == ["p50k_vanilla_s0_wsd", "p50k_thinking_s0_wsd"]
    assert all(p.name == f"{p.readable}-{p.config_hash}" and len(p.config_hash) == 8 for p in plans)
    assert "train.data_budgets = [4000, 8000]" in plans[0].train_config
    assert "MODEL_DIR = %gin.REQUIRED" in plans[0].train_config
    store.write_plan(directory, grid, SMOKE, plans)
    run_dir = directory / plans[0].name
    assert (run_dir / "config.gin").read_text() == plans[0].train_config
    assert json.loads((run_dir / "run.json").read_text())["config_hash"] == plans[0].config_hash
    # The same grid plans the same names; adding a seed adds runs and is accepted.
    _, again, _ = plan(SMOKE, ("Grid.models = ['p50k']", "Grid.seeds = [0, 1]"), str(directory))
    assert {p.name for p in plans} < {p.name for p in again}
    # A changed point (another learning rate, another inference sweep) is refused, with the diff.
    with pytest.raises(ConfigError, match=r"(?s)different config.*-train.learning_rate = 0.01.*\+train.learning_rate = 0.02"):
        plan(SMOKE, ("Grid.models = ['p50k']", "Grid.train_overrides = {'train.batch_size': 4, "
                     "'train.learning_rate': 2e-2, 'train.eval_batches': 2, 'train.log_every_steps': 4, "
                     "'train.checkpoint_every_steps': 8}"), str(directory))
    with pytest.raises(ConfigError, match=r"infer.samples"):
        plan(SMOKE, ("Grid.models = ['p50k']", "Grid.infer_overrides = {'infer.samples': [1]}"), str(directory))


def test_a_grid_schedule_object_carries_its_settings_into_each_run_and_its_identity(tmp_path):
    _, default, _ = plan(SMOKE, ("Grid.models = ['p50k']",), str(tmp_path / "a"))
    _, longer, _ = plan(SMOKE, ("Grid.models = ['p50k']", "WSD.cooldown_fraction = 0.5"), str(tmp_path / "b"))
    assert "train.schedule = @WSD()" in longer[0].train_config
    assert "WSD.cooldown_fraction = 0.5" in longer[0].train_config
    assert longer[0].readable == default[0].readable and longer[0].config_hash != default[0].config_hash
    assert longer[0].point["schedule_settings"] == {"WSD.cooldown_fraction": 0.5, "WSD.cooldown_shape": "1-sqrt"}
    # the trunk to the last fork and both cooldowns: 8000 * 0.5 + 0.5 * (4000 + 8000)
    assert longer[0].point["train_tokens"] == 10000 and default[0].point["train_tokens"] == 8000 * 0.8 + 0.2 * 12000
    _, cosine, _ = plan(SMOKE, ("Grid.models = ['p50k']", "Grid.schedule = @Cosine()"), str(tmp_path / "c"))
    assert "train.schedule = @Cosine()" in cosine[0].train_config and cosine[0].readable.endswith("_cosine_D4e03")


@pytest.mark.parametrize("binding, message", [
    ("WSD.cooldown_fraction = 1.5", r"grid point p50k_vanilla_s0_wsd: train.schedule: WSD.cooldown_fraction: must be"),
    ("Grid.infer_overrides = {'infer.top_p': 2.0}", r"grid point p50k_vanilla_s0_wsd: infer.top_p must be in \(0, 1\]"),
    ("Grid.infer_overrides = {'infer.thinking_policy': {1: -2}}", "infer.thinking_policy must map"),
    ("Grid.train_overrides = {'train.schedule': 'cosine'}", "set it on Grid.schedule"),
    ("Grid.arm_overrides = {'vanilla': {'WSD.cooldown_shape': 'linear'}}", "set it on Grid.schedule"),
])
def test_a_bad_schedule_or_inference_setting_is_refused_when_the_grid_is_planned(tmp_path, binding, message):
    with pytest.raises(ConfigError, match=message):
        plan(SMOKE, ("Grid.models = ['p50k']", binding), str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()


def test_nothing_in_the_run_folder_is_pickled(tmp_path):
    grid, plans, directory = plan(SMOKE, ("Grid.models = ['p50k']",), str(tmp_path / "s"))
    store.write_plan(directory, grid, SMOKE, plans)
    for path in directory.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert not text.startswith(b"\x80"), path  # pickle protocol 2+ header
            if path.suffix == ".json":
                json.loads(text)


# -- claims ----------------------------------------------------------------------------------------


def test_a_live_claim_excludes_others_and_a_released_one_can_be_taken(tmp_path):
    first = claims.Claim.acquire(tmp_path)
    assert first is not None and claims.Claim.acquire(tmp_path) is None
    first.release()
    second = claims.Claim.acquire(tmp_path)
    assert second is not None and second.generation == first.generation + 1
    assert not first.still_held() and not first.beat() and first.lost.is_set()
    second.release()


def test_a_claim_of_a_dead_process_is_stale_at_once_and_an_old_heartbeat_after_stale_after(tmp_path):
    code = f"from scaling.sweep import claims; c = claims.Claim.acquire({str(tmp_path)!r}); print(c.generation)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    taken = claims.Claim.acquire(tmp_path)
    assert taken is not None and taken.generation == 2
    # An alive owner whose heartbeat is older than stale_after loses the run to a newcomer.
    assert claims.Claim.acquire(tmp_path, stale_after=60) is None
    time.sleep(0.3)
    usurper = claims.Claim.acquire(tmp_path, stale_after=0.2)
    assert usurper is not None and not taken.beat()


def _claim_round(run_dir: Path, contenders: int) -> list[tuple[str, int, int]]:
    """`contenders` processes claim `run_dir` together: each signals it is ready, spins until the
    start file appears, claims, and reports (won/lost, attempt start, attempt end) on the system-wide
    monotonic clock; all stay alive until every report is in (a dead owner's claim is stale)."""
    go, done = run_dir / "go", run_dir / "done"
    run_dir.mkdir(parents=True)
    code = textwrap.dedent(f"""
        import json, os, sys, time
        from scaling.sweep import claims
        open(os.path.join({str(run_dir)!r}, "ready" + sys.argv[1]), "w").close()
        while not os.path.exists({str(go)!r}):
            pass
        start = time.monotonic_ns()
        c = claims.Claim.acquire({str(run_dir)!r})
        end = time.monotonic_ns()
        print(json.dumps(["won" if c else "lost", start, end]), flush=True)
        while not os.path.exists({str(done)!r}):
            time.sleep(0.01)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(contenders)]
    try:
        deadline = time.monotonic() + 120
        while len(list(run_dir.glob("ready*"))) < contenders and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        return [tuple(json.loads(p.stdout.readline())) for p in procs]
    finally:
        done.touch()
        for p in procs:
            p.communicate(timeout=60)


def test_exactly_one_of_many_concurrent_claimants_wins(tmp_path):
    """Exactly one of six simultaneous claimants wins, in a round where the claims really raced: a
    loser whose attempt began before the winner's ended contended with it for the same generation
    (a later one only found a held claim, which proves nothing about the race)."""
    for attempt in range(5):
        results = _claim_round(tmp_path / f"round{attempt}", 6)
        assert [outcome for outcome, _, _ in results].count("won") == 1, results
        (_, won_start, won_end), = [r for r in results if r[0] == "won"]
        if any(start < won_end and won_start < end for outcome, start, end in results if outcome == "lost"):
            return
    pytest.fail(f"in 5 rounds no losing claim overlapped the winner's in time: the race never happened ({results})")


# -- executors on real commands -------------------------------------------------------------------


def _command_job(run_dir: Path, code: str) -> runner.Job:
    run_dir.mkdir(parents=True, exist_ok=True)
    return runner.Job(str(run_dir), (("work", (sys.executable, "-c", code)),))


def test_local_executor_runs_each_job_once_and_records_failures_with_their_reason(tmp_path):
    ok = [_command_job(tmp_path / f"ok{i}", f"open({str(tmp_path / f'ok{i}' / 'out')!r}, 'a').write('x')")
          for i in range(3)]
    bad = _command_job(tmp_path / "bad", "import sys; print('loss is nan at step 7'); sys.exit(3)")
    seen = []
    outcomes = executors.run_local(ok + [bad], workers=2, on_outcome=lambda j, o: seen.append((j.name, o)))
    assert outcomes == {"ok0": "done", "ok1": "done", "ok2": "done", "bad": "failed"}
    assert sorted(seen) == sorted(outcomes.items())
    for job in ok:
        assert (Path(job.run_dir) / "out").read_text() == "x"
    job = store.read_job(tmp_path / "bad")
    assert job["state"] == "failed" and "exited with code 3" in job["reason"] and "loss is nan" in job["reason"]
    # Finished and failed runs are left alone; --retry_failed runs the failed one again.
    assert executors.run_local(ok + [bad]) == outcomes
    assert store.read_job(tmp_path / "bad")["attempts"] == 1
    executors.run_local([bad], retry_failed=True)
    assert store.read_job(tmp_path / "bad")["attempts"] == 2


# -- status -----------------------------------------------------------------------------------------


def _planned_run(sweep: Path, name: str, job: dict | None, status: dict | None, log: list[dict]) -> Path:
    run_dir = sweep / name
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / "run.json", {"name": name, "readable": name.rsplit("-", 1)[0],
                                             "config_hash": name.rsplit("-", 1)[1], "point": {"seed": 0},
                                             "train_config": "", "infer_config": ""}, sort_keys=True)
    if job:
        store.write_job(run_dir, job)
    if status:
        (run_dir / "status.json").write_text(json.dumps(status))
    (run_dir / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return run_dir


def test_status_shows_state_progress_loss_and_throughput_from_the_run_folders(tmp_path, run_cli):
    sweep = tmp_path / "sweep"
    _planned_run(sweep, "a-00000001", {"state": "done", "attempts": 1}, {"state": "finished", "tokens": 8000,
                 "total_tokens": 8000}, [{"step": 9, "loss": 2.5, "tokens_per_s": 900.0}])
    crashed = _planned_run(sweep, "b-00000002", {"state": "running", "attempts": 1, "phase": "train"},
                           {"state": "running", "tokens": 2000, "total_tokens": 8000},
                           [{"step": 1, "loss": 5.0, "tokens_per_s": 10.0}, {"step": 2, "loss": 4.25, "tokens_per_s": 1200.0}])
    dead = subprocess.run([sys.executable, "-c", f"from scaling.sweep import claims; claims.Claim.acquire({str(crashed)!r})"])
    assert dead.returncode == 0
    _planned_run(sweep, "c-00000003", {"state": "failed", "attempts": 1, "reason": "train: loss is nan"}, None, [])
    _planned_run(sweep, "d-00000004", None, None, [])
    live = _planned_run(sweep, "e-00000005", {"state": "running", "attempts": 2, "phase": "infer_D8.0e3"}, None, [])
    held = claims.Claim.acquire(live)
    try:
        proc = run_cli("status", sweep, check=True)
    finally:
        held.release()
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:] if line.strip() and "-0000" in line}
    assert lines["a-00000001"][1:5] == ["done", "100%", "2.5000", "900"]
    assert lines["b-00000002"][1:6] == ["crashed", "train", "25%", "4.2500", "1.2e+03"]
    assert lines["c-00000003"][1] == "failed" and "loss is nan" in proc.stdout
    assert lines["d-00000004"][1] == "pending" and lines["e-00000005"][1:3] == ["running", "infer_D8.0e3"]
    assert "1 crashed, 1 done, 1 failed, 1 pending, 1 running" in proc.stdout
    assert run_cli("status", tmp_path / "nothing").returncode == 2


# -- collect --------------------------------------------------------------------------------------------


def training_row(run_id: str, step: int, branch: str, is_final: bool, loss: float) -> dict:
    row = {c: 0 for c, kind in collect.TRAINING.items() if kind is int}
    row.update({c: 1.5 for c, kind in collect.TRAINING.items() if kind is float})
    row.update(run_id=run_id, sweep="s", arm="vanilla", schedule="wsd" if is_final else "constant",
               branch=branch, is_final=is_final, step=step, tokens=step * 100, eval_loss=loss,
               eval_loss_hard=float("nan"))
    return row


def inference_row(run_id: str, budget: int, accuracy: float) -> dict:
    row = {c: 1 for c, kind in collect.INFERENCE.items() if kind is int}
    row.update({c: 0.5 for c, kind in collect.INFERENCE.items() if kind is float})
    row.update(run_id=run_id, sweep="s", arm="vanilla", branch="D=8.0e3", task="synthetic_qa_d1",
               aggregator="greedy", thinking_budget=budget, accuracy=accuracy, top_p=1.0)
    return row


def _write_rows(run_dir: Path, name: str, rows: list[dict]) -> None:
    (run_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_collect_writes_both_tables_typed_versioned_and_deduplicated(tmp_path, run_cli):
    sweep = tmp_path / "sweep"
    a = _planned_run(sweep, "a-00000001", {"state": "done"}, None, [])
    b = _planned_run(sweep, "b-00000002", {"state": "running"}, None, [])
    _write_rows(a, "training_rows.jsonl", [training_row("a", 5, "", False, 3.0), training_row("a", 9, "D=8.0e3", True, 2.0),
                                           training_row("a", 9, "D=8.0e3", True, 1.9)])  # a replayed evaluation
    _write_rows(b, "training_rows.jsonl", [training_row("b", 5, "", False, 3.5)])
    _write_rows(a, "inference_rows.jsonl", [inference_row("a", 0, 0.25), inference_row("a", 8, 0.5)] * 2)
    out = tmp_path / "results"
    proc = run_cli("collect", sweep, "-o", out, check=True)
    assert "3 rows" in proc.stdout and "2 rows" in proc.stdout
    training = pq.read_table(out / "training.parquet")
    assert training.schema.metadata[b"scaling.schema_version"] == b"1"
    assert training.column_names == list(collect.TRAINING)
    assert str(training.schema.field("step").type) == "int64" and str(training.schema.field("is_final").type) == "bool"
    frame = training.to_pandas()
    assert frame.loc[frame.is_final, "eval_loss"].tolist() == [1.9] and math.isnan(frame.eval_loss_hard[0])
    inference = pq.read_table(out / "inference.parquet")
    assert inference.column_names[:len(collect.INFERENCE)] == list(collect.INFERENCE) and "top_p" in inference.column_names
    assert sorted(inference.column("accuracy").to_pylist()) == [0.25, 0.5]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("change, message", [
    ({"step": "nine"}, r"training_rows.jsonl:1: column 'step' must be an integer"),
    ({"is_final": 1}, r"column 'is_final' must be bool"),
    ({"eval_loss": "low"}, r"column 'eval_loss' must be a number"),
])
def test_collect_rejects_rows_of_the_wrong_type_naming_file_line_and_column(tmp_path, run_cli, change, message):
    sweep = tmp_path / "sweep"
    run = _planned_run(sweep, "a-00000001", {"state": "done"}, None, [])
    _write_rows(run, "training_rows.jsonl", [{**training_row("a", 5, "", False, 3.0), **change}])
    proc = run_cli("collect", sweep, "-o", tmp_path / "out")
    assert proc.returncode == 2 and __import__("re").search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "out" / "training.parquet").exists()


def test_collect_names_a_missing_required_column(tmp_path):
    sweep = tmp_path / "sweep"
    run = _planned_run(sweep, "a-00000001", {"state": "done"}, None, [])
    row = training_row("a", 5, "", False, 3.0)
    del row["eval_bpb"]
    _write_rows(run, "training_rows.jsonl", [row])
    with pytest.raises(ConfigError, match=r"a-00000001/training_rows.jsonl:1: missing required column\(s\) eval_bpb"):
        collect.collect(sweep, tmp_path / "out")
