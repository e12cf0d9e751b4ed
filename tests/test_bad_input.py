"""Bad input never costs data or shows a traceback (issue 14): each mistake through the CLI, the
message's content, the exit code, and that nothing already on disk changed."""

import hashlib
import json
from pathlib import Path

import pytest

from tests.test_data_teacher import SECRET, _gin, _write_corpus, openai_server  # noqa: F401 (a fixture)
from tests.test_recommend import EPOCH, make_law

REPO = Path(__file__).resolve().parent.parent
# A tiny run: p50k at sequence 64, 4 sequences a step, one budget of 2,000 tokens.
TINY = ["--gin_file=gin/models/p50k.gin", "--gin_file=gin/runs/pretrain.gin", "--gin.ModelConfig.seq_len=64",
        "--gin.train.batch_size=4", "--gin.train.data_budgets=[2000]", "--gin.train.eval_batches=1",
        "--gin.train.log_every_steps=1", "--gin.train.checkpoint_every_steps=4"]


def snapshot(folder) -> dict:
    """path -> content hash of every file under folder (what 'nothing changed' is checked on)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def no_traceback(proc):
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


# -- scaling train: the run folder ----------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tests.conftest import _scaling_executable
    import subprocess
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    proc = subprocess.run(_scaling_executable() + ["train", *TINY, f"--gin.MODEL_DIR={run_dir}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.mark.slow
def test_a_run_folder_refuses_another_preset_naming_the_bindings_and_is_left_untouched(run_cli, finished_run):
    before = snapshot(finished_run)
    other = [a.replace("p50k", "p100k") for a in TINY]
    proc = run_cli("train", *other, f"--gin.MODEL_DIR={finished_run}")
    assert proc.returncode == 2, proc.stderr
    no_traceback(proc)
    assert f"--gin.MODEL_DIR={finished_run} holds a run with a different config" in proc.stderr
    assert "ModelConfig.d_model: 32 in the run folder, 48 now" in proc.stderr
    assert "ModelConfig.n_layers: 2 in the run folder, 3 now" in proc.stderr
    assert snapshot(finished_run) == before
    # another seed is another run too; the same command is still "already finished"
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={finished_run}", "--gin.train.seed=1")
    assert proc.returncode == 2 and "train.seed: 0 in the run folder, 1 now" in proc.stderr
    assert snapshot(finished_run) == before
    again = run_cli("train", *TINY, f"--gin.MODEL_DIR={finished_run}")
    assert again.returncode == 0 and "already finished" in again.stdout


def _unfinished_copy(finished_run, tmp_path):
    """A copy of the finished run as if killed before its branch: trunk checkpoints only."""
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "checkpoints" / "branches.json").unlink()
    for branch in (run_dir / "checkpoints").glob("D=*"):
        shutil.rmtree(branch)
    return run_dir


@pytest.mark.slow
def test_checkpoints_of_an_unknown_model_are_not_trained_over(run_cli, finished_run, tmp_path):
    run_dir = _unfinished_copy(finished_run, tmp_path)
    (run_dir / "identity.json").unlink()
    (run_dir / "model.json").unlink()
    before = snapshot(run_dir)
    proc = run_cli("train", *[a.replace("p50k", "p100k") for a in TINY], f"--gin.MODEL_DIR={run_dir}")
    assert proc.returncode == 2, proc.stderr
    no_traceback(proc)
    assert f"--gin.MODEL_DIR={run_dir} holds checkpoints but neither identity.json nor model.json" in proc.stderr
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_a_checkpoint_of_other_shapes_is_refused_not_called_corrupt(run_cli, finished_run, tmp_path):
    # the folder's records say p100k but its checkpoints are p50k's: a shape mismatch, not corruption
    run_dir = _unfinished_copy(finished_run, tmp_path)
    for name in ("identity.json", "model.json"):
        record = json.loads((run_dir / name).read_text())
        prefix = "ModelConfig." if name == "identity.json" else ""
        record.update({f"{prefix}d_model": 48, f"{prefix}n_layers": 3, f"{prefix}n_heads": 3, f"{prefix}d_ff": 128})
        (run_dir / name).write_text(json.dumps(record))
    before = snapshot(run_dir)
    proc = run_cli("train", *[a.replace("p50k", "p100k") for a in TINY], f"--gin.MODEL_DIR={run_dir}")
    assert proc.returncode == 2, proc.stderr
    no_traceback(proc)
    assert "holds arrays of other shapes than this model's: the folder is a run of another model" in proc.stderr
    assert "is not compatible with the stored shape" in proc.stderr
    assert "unreadable" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "TensorStore" not in proc.stderr
    # the checkpoints, logs and rows are as they were (the status says the start failed; the config
    # files are written again with the same content; devices.jsonl records each start's devices)
    bookkeeping = ("config.gin", "model.json", "status.json", "devices.jsonl")
    assert {k: v for k, v in snapshot(run_dir).items() if k not in bookkeeping} == \
        {k: v for k, v in before.items() if k not in bookkeeping}


@pytest.mark.slow
def test_a_truncated_checkpoint_falls_back_with_one_warning_line(run_cli, finished_run, tmp_path):
    # as if killed in the branch: the finished branch is gone and the newest trunk step is truncated
    run_dir = _unfinished_copy(finished_run, tmp_path)
    trunk = run_dir / "checkpoints" / "trunk"
    newest = max((p for p in trunk.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    data = [f for f in newest.rglob("*") if f.is_file() and f.parent.name == "d"]
    assert data
    for f in data:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={run_dir}")
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert "Event loop is closed" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "unreadable" in line]
    assert len(warnings) == 1 and f"checkpoint {newest} is unreadable" in warnings[0], proc.stderr
    assert "falling back to the previous one" in warnings[0]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["finished"][0]["branch"] == "D=2.0e3"


@pytest.mark.slow
def test_status_progress_is_current_before_the_first_evaluation(tmp_path):
    import subprocess
    import time
    from tests.conftest import _scaling_executable
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_scaling_executable() + ["train", *TINY, f"--gin.MODEL_DIR={run_dir}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and seen is None:
            status = run_dir / "status.json"
            if status.is_file() and not (run_dir / "training_rows.jsonl").exists():
                state = json.loads(status.read_text())
                if state["state"] == "running" and state["step"] > 0:
                    seen = state
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    # the only evaluation is at the end of the only branch: progress came from the logged steps
    assert seen is not None, "status.json never showed a running step before the first evaluation"
    assert 0 < seen["tokens"] < seen["total_tokens"]


@pytest.mark.parametrize("binding, message", [
    ("--gin.train.batch_size='abc'", "train.batch_size: must be an integer (int), got 'abc' (str) "
                                     "(set at command line --gin.train.batch_size='abc')"),
    ("--gin.train.learning_rate='abc'", "train.learning_rate: must be a number (float), got 'abc' (str)"),
    ("--gin.train.data_budgets=['many']", "train.data_budgets: must be a list of token counts, got ['many']"),
])
def test_wrong_typed_bindings_are_named_with_the_expected_type(run_cli, tmp_path, binding, message):
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={tmp_path / 'run'}", binding)
    assert proc.returncode == 2
    no_traceback(proc)
    assert message in proc.stderr
    assert "In call to configurable" not in proc.stderr and "<function" not in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before the folder was made


def test_model_dir_naming_an_existing_file_is_refused(run_cli, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    proc = run_cli("train", *TINY, f"--gin.MODEL_DIR={target}")
    assert proc.returncode == 2
    no_traceback(proc)
    assert f"--gin.MODEL_DIR={target} is a file, not a run folder" in proc.stderr
    assert target.read_text() == "keep me"


# -- scaling recommend ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def law_file(tmp_path_factory):
    return make_law().save(tmp_path_factory.mktemp("law") / "law.json")


@pytest.mark.parametrize("flag, message", [
    ("--train_flops=-1e21", "--train_flops=-1e+21: must be a finite number above zero"),
    ("--train_flops=nan", "--train_flops=nan: must be a finite number above zero"),
    ("--train_flops=inf", "--train_flops=inf: must be a finite number above zero"),
    ("--inference_queries=-5", "--inference_queries=-5: must be a finite number above zero"),
])
def test_recommend_refuses_impossible_budgets(run_cli, law_file, flag, message):
    extra = ["--tokens_per_query=100"] if "inference" in flag else []
    proc = run_cli("recommend", law_file, "--train_flops=1e21", *extra, flag)
    assert proc.returncode == 2 and proc.stdout == ""
    no_traceback(proc)
    assert message in proc.stderr


def test_recommend_refuses_a_law_outside_its_forms_bounds(run_cli, tmp_path):
    law = make_law({**EPOCH, "alpha": -0.3}).save(tmp_path / "negative.json")
    proc = run_cli("recommend", law, "--train_flops=1e21")
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"cannot use law file {law}: parameter alpha = -0.3 is outside the chinchilla form's bounds [0, 3]" \
        in proc.stderr


def test_total_flops_on_a_chinchilla_law_says_a_joint_law_is_needed(run_cli, law_file):
    proc = run_cli("recommend", law_file, "--total_flops=1e21", "--inference_queries=1e6", "--tokens_per_query=100")
    assert proc.returncode == 2
    assert "--total_flops asks for a joint allocation" in proc.stderr
    assert "needs a joint law (scaling fit --form joint_inference); this law's form is 'chinchilla'" in proc.stderr


# -- scaling fit: tables ----------------------------------------------------------------------------


def _fit(run_cli, table, tmp_path):
    out = tmp_path / "law.json"
    proc = run_cli("fit", table, "-o", out, "--bootstrap=0")
    no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert not out.exists()
    return proc.stderr


@pytest.mark.parametrize("text, message", [
    ("params,tokens,eval_loss\n1e6,1e8,3.0\nabc,2e8,2.9\n", "column 'params' (N) holds non-numeric value(s) (1), "
                                                           "first 'abc' at line 3"),
    ("", "empty table (no header line with column names)"),
    ("params,tokens,eval_loss,eval_loss\n1e6,1e8,3.0,3.1\n", "column(s) 'eval_loss' appear more than once"),
    ("params,tokens,eval_loss\n1e6,1e8,3.0\n2e6,1e8,3.0\n1e6,-2e8,2.9\n",
     "column 'tokens' (D) has 1 non-positive value(s) (e.g. -2e+08 at line 4)"),
    ("params,tokens,eval_loss\n1e6,1e8,3.0\n2e6,1e8,inf\n",
     "column 'eval_loss' (loss) has 1 non-finite or non-numeric value(s), first at line 3"),
])
def test_fit_names_the_file_column_and_line_of_bad_tables(run_cli, tmp_path, text, message):
    table = tmp_path / "points.csv"
    table.write_text(text)
    stderr = _fit(run_cli, table, tmp_path)
    assert f"{table}: {message}" in stderr
    assert "np.float64" not in stderr


# -- scaling sweep: grids ---------------------------------------------------------------------------


def _sweep_refused(run_cli, tmp_path, grid_text, *flags):
    tmp_path.mkdir(exist_ok=True)
    grid = tmp_path / "grid.gin"
    grid.write_text("include 'grids/smoke.gin'\n" + grid_text)
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "notes.txt").write_text("keep me")
    before = snapshot(sweep_dir)
    proc = run_cli("sweep", grid, f"--sweep_dir={sweep_dir}", *flags)  # not a dry run: nothing may be written
    assert proc.returncode == 2, proc.stderr
    no_traceback(proc)
    assert snapshot(sweep_dir) == before
    return grid, proc.stderr


def test_a_grid_dict_with_a_repeated_key_is_refused_naming_the_line(run_cli, tmp_path):
    grid, stderr = _sweep_refused(run_cli, tmp_path, "Grid.arms = {'vanilla': 'synthetic_vanilla',\n"
                                                     "             'vanilla': 'synthetic_thinking'}\n")
    assert f"{grid}:3: the key 'vanilla' is given twice in one dict" in stderr
    _, stderr = _sweep_refused(run_cli, tmp_path / "flag", "",
                               "--gin.Grid.train_overrides={'train.seed': 1, 'train.seed': 2}")
    assert "command line --gin.Grid.train_overrides" in stderr and "'train.seed' is given twice" in stderr


def test_budgets_without_distinct_labels_are_refused_at_planning(run_cli, tmp_path):
    _, stderr = _sweep_refused(run_cli, tmp_path, "Grid.data_budgets = [4000, 4001]\n")
    assert "grid point p50k_vanilla_s0_wsd: train.data_budgets: budgets [4000, 4001] do not have distinct " \
           "labels" in stderr


def test_a_wrong_typed_override_is_refused_at_planning(run_cli, tmp_path):
    _, stderr = _sweep_refused(run_cli, tmp_path, "Grid.train_overrides = {'train.batch_size': 'abc'}\n")
    assert "grid point p50k_vanilla_s0_wsd: train.batch_size: must be an integer (int), got 'abc'" in stderr


def test_an_override_set_by_the_grid_file_is_located_there(run_cli, tmp_path):
    grid, stderr = _sweep_refused(run_cli, tmp_path, "Grid.train_overrides = {'ModelConfig.d_model': 64}\n")
    assert f"Grid.train_overrides: ModelConfig.d_model changes the architecture" in stderr
    assert f"(set at {grid}:2)" in stderr and "default value" not in stderr


# -- scaling augment: the teacher --------------------------------------------------------------------


def test_augment_warns_of_an_unset_key_variable_and_writes_the_teachers_settings(run_cli, openai_server, tmp_path):
    corpus_dir, cache_dir = tmp_path / "corpus", tmp_path / "cache"
    _write_corpus(corpus_dir, 3)
    openai_server.faults_per_document = 0
    gin_file = _gin(tmp_path, openai_server, cache_dir, corpus_dir)
    import os
    import subprocess
    from tests.conftest import _scaling_executable
    env = {k: v for k, v in os.environ.items() if k != "TEACHER_API_KEY"}  # run_cli cannot unset a variable
    proc = subprocess.run(_scaling_executable() + ["augment", f"--gin_file={gin_file}", "--no_progress"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert "scaling augment: warning: OpenAICompatibleTeacher.api_key_env = 'TEACHER_API_KEY' names an environment " \
           "variable that is not set" in proc.stderr
    assert openai_server.auth == {""}
    # docs/data.md: the resolved gin file in the cache holds the teacher's settings (the key's name, never a key)
    written = list(cache_dir.glob("augment-*.gin"))
    assert len(written) == 1
    text = written[0].read_text()
    for line in ("OpenAICompatibleTeacher.model = 'tiny-teacher'", "OpenAICompatibleTeacher.params = 1000000000.0",
                 "OpenAICompatibleTeacher.api_key_env = 'TEACHER_API_KEY'", "OpenAICompatibleTeacher.concurrency = 4",
                 f"OpenAICompatibleTeacher.base_url = 'http://127.0.0.1:{openai_server.server_address[1]}'"):
        assert line in text, text
    # with the variable set there is nothing to warn of (and the key is written nowhere)
    proc = run_cli("augment", f"--gin_file={gin_file}", "--no_progress", env={"TEACHER_API_KEY": SECRET})
    assert proc.returncode == 0 and "api_key_env" not in proc.stderr, proc.stderr
    assert all(SECRET not in p.read_text(errors="replace") for p in cache_dir.rglob("*") if p.is_file())
