"""The trainer through its public surface: schedules, `scaling train` runs, resume, failures."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import gin
import numpy as np
import pytest

from scaling import configuration, run_folder, schedules
from scaling.configuration import ConfigError, PlacedConfigError
from scaling.checkpoints import finished_branches, restore_params
from scaling.train_config import NOT_IDENTITY, TrainConfig

REPO = Path(__file__).resolve().parent.parent
SCHEMA_COLUMNS = {
    "run_id", "sweep", "arm", "seed", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "vocab_size",
    "seq_len", "mlp_attn_ratio", "params", "params_non_embedding", "flops_per_token", "step", "tokens",
    "tokens_raw", "tokens_thinking", "unique_tokens", "epochs", "flops", "flops_6nd", "teacher_flops",
    "schedule", "branch", "is_final", "eval_loss", "eval_bpb", "eval_loss_hard", "eval_loss_easy"}

# A tiny run: p50k at sequence 64, 4 sequences a step; two WSD budgets -> two branches.
TINY = ["--gin_file=gin/models/p50k.gin", "--gin_file=gin/runs/pretrain.gin", "--gin.ModelConfig.seq_len=64",
        "--gin.train.batch_size=4", "--gin.train.data_budgets=[5000,9000]", "--gin.train.eval_every_tokens=2000",
        "--gin.train.eval_batches=2", "--gin.train.log_every_steps=1", "--gin.train.checkpoint_every_steps=4",
        "--gin.train.learning_rate=1e-2"]


def rows(run_dir, name="training_rows.jsonl"):
    path = Path(run_dir) / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def status(run_dir):
    return json.loads((Path(run_dir) / "status.json").read_text())


# -- schedules ------------------------------------------------------------------------------------


def test_branch_labels_have_two_significant_digits():
    assert schedules.branch_label(1e6) == "D=1.0e6"
    assert schedules.branch_label(25_000_000) == "D=2.5e7"
    assert schedules.branch_label(123_456) == "D=1.2e5"


def test_wsd_cooldown_decays_from_the_trunk_rate_to_zero():
    lr = schedules.LearningRate(peak=1e-3, warmup_tokens=100)
    wsd = schedules.WSD(cooldown_shape="1-sqrt")
    assert lr.constant(50) == pytest.approx(5e-4)  # warmup
    assert lr.constant(5000) == pytest.approx(1e-3)  # stable
    assert wsd.cooldown(lr, 800, start=800, end=1000) == pytest.approx(1e-3)  # continuous at the fork
    assert wsd.cooldown(lr, 900, start=800, end=1000) == pytest.approx(1e-3 * (1 - math.sqrt(0.5)))
    assert wsd.cooldown(lr, 1000, start=800, end=1000) == 0.0
    linear = schedules.WSD(cooldown_shape="linear")
    assert linear.cooldown(lr, 900, start=800, end=1000) == pytest.approx(5e-4)


def test_cosine_warms_up_then_decays_to_zero_at_the_horizon():
    lr = schedules.LearningRate(peak=2e-3, warmup_tokens=100)
    cosine = schedules.Cosine()
    assert cosine.decay(lr, 50, end=1100) == pytest.approx(1e-3)
    assert cosine.decay(lr, 100, end=1100) == pytest.approx(2e-3)
    assert cosine.decay(lr, 600, end=1100) == pytest.approx(1e-3)
    assert cosine.decay(lr, 1100, end=1100) == pytest.approx(0.0, abs=1e-12)


def test_wsd_plan_forks_each_budget_at_its_cooldown_start():
    plan = schedules.WSD(cooldown_fraction=0.2).plan([2_000_000, 1_000_000], schedules.LearningRate(1e-3, 0))
    assert [(t.end_tokens, b.name, b.end_tokens) for t, b in plan] == [
        (800_000, "D=1.0e6", 1_000_000), (1_600_000, "D=2.0e6", 2_000_000)]


def _checked_run(*bindings):
    """TrainConfig from the preset, gin/runs/pretrain.gin and `bindings`, checked: (config, run)."""
    args = configuration.GinArgs(("gin/models/p50k.gin", "gin/runs/pretrain.gin"),
                                 ("MODEL_DIR = '/tmp/unused'", "train.data_budgets = [5000, 9000]",
                                  "train.warmup_tokens = 500") + bindings)
    configuration.parse(args)
    try:
        with configuration.explained(args):
            config = TrainConfig()
            return config, config.check()
    finally:
        gin.clear_config()


def _learning_rates(run):
    """The rate along every phase of the plan, every 100 tokens."""
    return [run.schedule.learning_rate(run.learning_rate, phase, tokens, start)
            for trunk, final in run.plan for phase, start in ((trunk, 0), (final, trunk.end_tokens if trunk else 0))
            if phase is not None for tokens in range(start, phase.end_tokens + 1, 100)]


@pytest.mark.parametrize("name, bound", [("wsd", "@WSD()"), ("cosine", "@Cosine()")])
def test_a_schedule_bound_as_an_object_plans_and_decays_like_its_name(name, bound):
    budgets = () if name == "wsd" else ("train.data_budgets = [9000]",)
    by_name_config, by_name = _checked_run(f"train.schedule = {name!r}", *budgets)
    by_object_config, by_object = _checked_run(f"train.schedule = {bound}", *budgets)
    assert type(by_object.schedule) is type(by_name.schedule) and by_object.schedule.name == name
    assert by_object.plan == by_name.plan and by_object.learning_rate == by_name.learning_rate
    assert _learning_rates(by_object) == _learning_rates(by_name)
    assert max(_learning_rates(by_object)) == pytest.approx(3e-3) and min(_learning_rates(by_object)) == 0.0
    # the run folder's identity records the object's settings: either spelling resumes the other's run
    assert by_object_config.settings() == by_name_config.settings()


def test_a_schedule_object_answers_what_the_sweep_asks():
    assert schedules.WSD(cooldown_fraction=0.2).train_tokens([1000, 2000]) == 2000 * 0.8 + 0.2 * 3000
    assert schedules.Cosine().train_tokens([1000]) == 1000
    assert not schedules.WSD().one_run_per_budget and schedules.Cosine().one_run_per_budget


def test_a_changed_schedule_setting_is_another_run_and_an_old_folder_still_resumes(tmp_path):
    """The identity records the schedule object's settings: a run folder made with one cooldown
    refuses another, naming the binding; a folder written when the cooldown was train.* resumes."""
    config, _ = _checked_run()
    run_folder.write_identity(tmp_path, run_folder.identity(config.settings(), NOT_IDENTITY))
    assert json.loads((tmp_path / "identity.json").read_text())["WSD.cooldown_fraction"] == 0.2
    run_folder.check_same_run(tmp_path, run_folder.identity(config.settings(), NOT_IDENTITY))
    shorter, _ = _checked_run("WSD.cooldown_fraction = 0.1")
    with pytest.raises(PlacedConfigError, match="WSD.cooldown_fraction: 0.2 in the run folder, 0.1 now"):
        run_folder.check_same_run(tmp_path, run_folder.identity(shorter.settings(), NOT_IDENTITY))
    old = {k: v for k, v in json.loads((tmp_path / "identity.json").read_text()).items() if not k.startswith("WSD.")}
    (tmp_path / "identity.json").write_text(json.dumps({**old, "train.cooldown_fraction": 0.2,
                                                        "train.cooldown_shape": "1-sqrt"}))
    run_folder.check_same_run(tmp_path, run_folder.identity(config.settings(), NOT_IDENTITY))
    with pytest.raises(PlacedConfigError, match="WSD.cooldown_fraction: 0.2 in the run folder, 0.1 now"):
        run_folder.check_same_run(tmp_path, run_folder.identity(shorter.settings(), NOT_IDENTITY))


def test_a_bad_schedule_setting_is_named_before_any_compute():
    with pytest.raises(ConfigError, match=r"WSD.cooldown_fraction: must be a number in \(0, 1\), got 1.5"):
        _checked_run("WSD.cooldown_fraction = 1.5")
    with pytest.raises(ConfigError, match="WSD.cooldown_shape: must be one of"):
        _checked_run("WSD.cooldown_shape = 'cubic'")


# -- configuration errors name the binding --------------------------------------------------------


def test_bad_schedule_fails_naming_the_binding_and_marks_the_run_failed(run_cli, tmp_path):
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={tmp_path}", "--gin.train.schedule='step'")
    assert proc.returncode != 0
    assert "train.schedule" in proc.stderr
    assert status(tmp_path)["state"] == "failed" and "train.schedule" in status(tmp_path)["reason"]


def test_missing_model_dir_is_a_configuration_error(run_cli):
    proc = run_cli("train", *TINY)
    assert proc.returncode == 2
    assert "MODEL_DIR" in proc.stderr or "model_dir" in proc.stderr


# -- end to end -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_wsd_run_writes_the_run_folder_and_one_final_point_per_budget(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={run_dir}")
    assert proc.returncode == 0, proc.stderr
    for name in ("config.gin", "model.json", "status.json", "log.jsonl", "training_rows.jsonl"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert status(run_dir)["state"] == "finished"

    table = rows(run_dir)
    assert all(set(r) == SCHEMA_COLUMNS for r in table)
    finals = [r for r in table if r["is_final"]]
    assert [(r["branch"], r["schedule"]) for r in finals] == [("D=5.0e3", "wsd"), ("D=9.0e3", "wsd")]
    assert finals[0]["tokens"] >= 5000 and finals[1]["tokens"] >= 9000
    trunk = [r for r in table if r["branch"] == ""]
    assert trunk and all(r["schedule"] == "constant" for r in trunk)
    for r in table:
        assert r["flops"] == pytest.approx(r["flops_per_token"] * r["tokens"])
        assert r["flops_6nd"] == pytest.approx(6 * r["params"] * r["tokens"])
        assert r["tokens_raw"] + r["tokens_thinking"] == r["tokens"]
        assert r["eval_bpb"] > 0 and math.isfinite(r["eval_loss"])
    # the longer budget's cooldown ends lower than the shorter one's
    assert finals[1]["eval_loss"] < finals[0]["eval_loss"]

    log = rows(run_dir, "log.jsonl")
    assert {"step", "loss", "lr", "tokens", "flops", "tokens_per_s", "flops_per_s", "mfu"} <= set(log[0])
    branch_log = [r for r in log if r["branch"] == "D=9.0e3"]
    assert branch_log[-1]["lr"] < 0.3e-2 < branch_log[0]["lr"]  # the cooldown decays towards zero

    assert [(b["branch"], b["tokens"]) for b in finished_branches(run_dir)] == [
        (f["branch"], f["tokens"]) for f in finals]
    config, params = restore_params(run_dir, "D=5.0e3")
    assert config.d_model == 32 and config.seq_len == 64
    assert params["embedding"].shape == (264, 32) and params["embedding"].dtype == np.float32

    again = run_cli("train", *TINY, f"--gin.MODEL_DIR={run_dir}")
    assert again.returncode == 0 and "already finished" in again.stdout
    assert rows(run_dir) == table


def _start(run_dir):
    from tests.conftest import _scaling_executable
    return subprocess.Popen(_scaling_executable() + ["train", *TINY, f"--gin.MODEL_DIR={run_dir}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(proc, run_dir, step, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = rows(run_dir, "log.jsonl") if (Path(run_dir) / "log.jsonl").is_file() else []
        if log and log[-1]["step"] >= step:
            return log[-1]["step"]
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def _final_state(run_dir):
    table = [{k: v for k, v in r.items() if k != "run_id"} for r in rows(run_dir)]
    losses = [(r["step"], r["branch"], r["loss"]) for r in rows(run_dir, "log.jsonl")]
    params = {b["branch"]: restore_params(run_dir, b["branch"])[1] for b in finished_branches(run_dir)}
    return table, losses, params


def _assert_bitwise_equal(a, b):
    import jax
    table_a, losses_a, params_a = a
    table_b, losses_b, params_b = b
    assert table_a == table_b
    assert losses_a == losses_b
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        for x, y in zip(jax.tree.leaves(params_a[name]), jax.tree.leaves(params_b[name])):
            assert np.array_equal(np.asarray(x), np.asarray(y)), name


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted TINY run, the baseline the interrupted runs must reproduce bit for bit."""
    from tests.conftest import _scaling_executable
    run_dir = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(_scaling_executable() + ["train", *TINY, f"--gin.MODEL_DIR={run_dir}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_rerun_is_bitwise_identical(run_cli, tmp_path, reference_run):
    reference = reference_run
    total_steps = finished_branches(reference)[-1]["step"]

    kill_at = random.Random().randint(2, total_steps - 2)
    print(f"killing at step >= {kill_at} of {total_steps}")
    killed = tmp_path / "killed"
    proc = _start(killed)
    _wait_for_step(proc, killed, kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_cli("train", *TINY, f"--gin.MODEL_DIR={killed}")
    assert resumed.returncode == 0, resumed.stderr
    _assert_bitwise_equal(_final_state(reference), _final_state(killed))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes_identically(run_cli, tmp_path, reference_run):
    reference = reference_run
    stopped = tmp_path / "stopped"
    proc = _start(stopped)
    step = _wait_for_step(proc, stopped, 6)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    state = status(stopped)
    assert state["state"] == "failed" and "SIGTERM" in state["reason"]
    saved = [int(p.name) for d in (stopped / "checkpoints").iterdir() if d.is_dir() for p in d.iterdir()
             if p.name.isdigit()]
    assert max(saved) >= step  # saved at the step it stopped, not only at the last periodic one
    assert run_cli("train", *TINY, f"--gin.MODEL_DIR={stopped}").returncode == 0
    _assert_bitwise_equal(_final_state(reference), _final_state(stopped))


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(run_cli, tmp_path):
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={tmp_path}", "--gin.train.learning_rate=1e30",
                   "--gin.train.grad_clip=0.0", "--gin.train.warmup_tokens=0")
    assert proc.returncode == 1
    state = status(tmp_path)
    assert state["state"] == "failed" and "non-finite loss" in state["reason"]
    assert not finished_branches(tmp_path)


@pytest.mark.slow
def test_tiny_preset_learns_well_below_the_unigram_entropy(run_cli, tmp_path):
    from scaling.data.source import DataSource
    counts = np.zeros(264)
    stream = DataSource("synthetic_vanilla", 8, 128, seed=0).train_batches()
    for _ in range(20):
        batch = next(stream)
        np.add.at(counts, batch["targets"].ravel(), batch["loss_weights"].ravel())
    p = counts[counts > 0] / counts.sum()
    unigram_entropy = float(-(p * np.log(p)).sum())  # nats/token

    proc = run_cli("train", "--gin_file=gin/models/p50k.gin", "--gin_file=gin/runs/pretrain.gin",
                   f"--gin.MODEL_DIR={tmp_path}", "--gin.ModelConfig.seq_len=128", "--gin.train.batch_size=8",
                   "--gin.train.data_budgets=[40000]", "--gin.train.learning_rate=1e-2", "--gin.train.eval_batches=4",
                   "--gin.train.log_every_steps=20")
    assert proc.returncode == 0, proc.stderr
    final = [r for r in rows(tmp_path) if r["is_final"]][-1]
    print(f"unigram entropy {unigram_entropy:.3f} nats, final eval loss {final['eval_loss']:.3f}")
    assert final["eval_loss"] < 0.6 * unigram_entropy


@pytest.mark.slow
def test_a_run_with_the_schedule_bound_as_an_object_is_the_run_with_its_name(run_cli, tmp_path, reference_run):
    """`train.schedule = @WSD()` trains bit for bit what `train.schedule = 'wsd'` (pretrain.gin) does,
    with the same learning rate at every logged step, and a folder of either resumes under the other."""
    bound = tmp_path / "bound"
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={bound}", "--gin.train.schedule=@WSD()")
    assert proc.returncode == 0, proc.stderr
    assert [(r["step"], r["branch"], r["lr"]) for r in rows(bound, "log.jsonl")] == \
        [(r["step"], r["branch"], r["lr"]) for r in rows(reference_run, "log.jsonl")]
    _assert_bitwise_equal(_final_state(reference_run), _final_state(bound))
    again = run_cli("train", *TINY, f"--gin.MODEL_DIR={bound}", "--gin.train.schedule='wsd'")
    assert again.returncode == 0 and "already finished" in again.stdout, again.stderr


def test_evaluation_sums_are_named_and_make_the_row_metrics():
    """The compiled evaluation returns its sums by name, and the row's metrics are the
    weighted per-token losses over all, hard-span and other tokens, however many batches."""
    import jax

    from scaling import optimizer, partitioning, step
    from scaling.model import ModelConfig

    config = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=16)
    mesh = partitioning.make_mesh()
    fns = step.compile_functions(config, optimizer.make_optimizer(0.9, 0.95, 0.1, 1.0), mesh, seed=0)
    params, _ = fns.init()
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, config.vocab_size, (2, config.seq_len + 1)).astype(np.int32)
    weights = (rng.random((2, config.seq_len)) > 0.2).astype(np.float32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
             "positions": np.arange(config.seq_len, dtype=np.int32)[None].repeat(2, 0),
             "segment_ids": np.ones((2, config.seq_len), np.int32), "loss_weights": weights,
             "hard_mask": weights * (np.arange(config.seq_len) % 3 == 0), "target_bytes": 2.0 * weights}
    sums = jax.device_get(fns.evaluate(params, partitioning.global_batch(batch, mesh)))
    losses, _ = jax.device_get(step.token_loss_sums(config, params, batch))
    hard = batch["hard_mask"]
    metrics = step.eval_metrics(step.summed([sums, sums]))
    assert metrics["eval_loss"] == pytest.approx((losses * weights).sum() / weights.sum(), rel=1e-5)
    assert metrics["eval_loss_hard"] == pytest.approx((losses * hard).sum() / hard.sum(), rel=1e-5)
    assert metrics["eval_loss_easy"] == pytest.approx((losses * (weights - hard)).sum() / (weights - hard).sum(),
                                                      rel=1e-5)
    assert metrics["eval_bpb"] == pytest.approx(metrics["eval_loss"] / math.log(2) / 2.0, rel=1e-5)
