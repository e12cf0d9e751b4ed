"""The inference sweep through its public surface: aggregators, rows, FLOPs, resume, the CLI."""

import itertools
import json
import math

import flax.linen as nn
import jax
import optax
import pytest

from scaling import accounting, checkpoints, decode, infer, infer_rows
from scaling.configuration import ConfigError
from scaling.data import corpus, protocols, vocabulary
from scaling.infer_config import InferConfig
from scaling.model import ModelConfig, init_params
from scaling.sweep import collect

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, vocab_size=264, seq_len=128)
BRANCH = "D=1.0e4"
SMALL = dict(thinking_budgets=(0, 4), samples=(1, 2), difficulties=(1,), problems_per_difficulty=2,
             max_answer_tokens=4, batch_size=4)


def _make_run(run_dir, task="synthetic_thinking_before_hard"):
    """A run folder as the trainer leaves it: model.json, identity.json (the training task, which
    picks the test-time protocol), an Orbax checkpoint, branches.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "identity.json").write_text(json.dumps({"train.task": task}))
    params = nn.unbox(init_params(CONFIG, jax.random.PRNGKey(0)))
    checkpoints.write_model_config(run_dir, CONFIG)
    saver = checkpoints.RunCheckpoints(run_dir, asynchronous=False)
    saver.save(BRANCH, 7, params, optax.adam(1e-3).init(params), {"step": 7})
    saver.mark_finished(BRANCH, 7, 10_000)
    saver.close()
    return params


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    params = _make_run(run_dir)
    table = infer.infer(InferConfig(str(run_dir), **SMALL))
    return run_dir, params, table


def test_pass_at_k_matches_enumerating_every_subset():
    for n, correct, k in [(5, 2, 1), (5, 2, 3), (6, 0, 2), (6, 6, 4), (7, 3, 7), (8, 1, 5)]:
        outcomes = [True] * correct + [False] * (n - correct)
        subsets = list(itertools.combinations(outcomes, k))
        assert math.isclose(infer_rows.pass_at_k(n, correct, k), sum(any(s) for s in subsets) / len(subsets))
    with pytest.raises(ValueError, match="k <= n"):
        infer_rows.pass_at_k(2, 1, 3)


def test_majority_vote_ignores_unreadable_answers_and_averages_disjoint_groups():
    assert infer_rows.majority_vote([None, "3", "4", "3", None]) == "3"
    assert infer_rows.majority_vote(["4", "3"]) == "4"  # a tie goes to the first seen
    assert infer_rows.majority_vote([None, None]) is None
    answers = ["7", "7", "1", "2", "2", "7", None, None]
    assert infer_rows.majority_accuracy(answers, "7", 2) == 0.25  # groups: (7,7) (1,2) (2,7) (None,None)
    assert infer_rows.majority_accuracy(answers, "7", 4) == 0.5  # (7,7,1,2) right, (2,7,None,None) wrong
    assert infer_rows.majority_accuracy(answers, "7", 1) == 3 / 8


def test_s1_scaling_is_the_average_pairwise_slope():
    assert math.isclose(infer_rows.s1_scaling([0, 10, 20], [0.1, 0.3, 0.3]), (0.02 + 0.01 + 0.0) / 3)
    assert infer_rows.s1_scaling([5, 5], [0.1, 0.9]) is None  # no pair with different thinking


def test_rows_follow_the_inference_schema(swept):
    run_dir, _, table = swept
    path = run_dir / infer_rows.ROWS_FILE
    rows = collect.read_rows(path, collect.INFERENCE)  # the collector's own schema check
    # 2 budgets x (greedy + majority and pass@k for k in 1, 2)
    assert len(rows) == len(table) == 2 * 5
    assert {(r["thinking_budget"], r["aggregator"], r["samples"]) for r in rows} == {
        (t, a, k) for t in (0, 4) for a, k in [("greedy", 1), ("majority", 1), ("pass@k", 1),
                                                ("majority", 2), ("pass@k", 2)]}
    for r in rows:
        assert r["run_id"] == run_dir.name and r["branch"] == BRANCH and r["step"] == 7 and r["tokens"] == 10_000
        assert r["params"] == accounting.param_count(CONFIG).total and r["task"] == "synthetic_qa_d1"
        assert 0 <= r["accuracy"] <= 1 and r["n_problems"] == 2
        assert r["mean_thinking_tokens"] <= r["thinking_budget"] and r["within_budget"] == 1.0
        assert r["mean_generated_tokens"] <= infer.protocol(4).max_new_tokens(r["thinking_budget"])
    sampled = {(r["thinking_budget"], r["aggregator"], r["samples"]): r for r in rows}
    for t in (0, 4):  # flops are summed over the k samples of one sample set
        assert math.isclose(sampled[(t, "pass@k", 2)]["flops_per_query"],
                            2 * sampled[(t, "pass@k", 1)]["flops_per_query"])
        # pass@k is at least majority, and grows with k
        assert sampled[(t, "pass@k", 2)]["accuracy"] >= sampled[(t, "majority", 2)]["accuracy"]
        assert sampled[(t, "pass@k", 2)]["accuracy"] >= sampled[(t, "pass@k", 1)]["accuracy"]


def test_greedy_flops_are_exact_for_the_actual_lengths(swept):
    run_dir, params, _ = swept
    rows = {r["thinking_budget"]: r for r in infer_rows.read_rows(run_dir) if r["aggregator"] == "greedy"}
    problems = corpus.qa_problems(2, 1, 0)
    proto = infer.protocol(4)
    before_hard = protocols.QAProtocol(protocols.BEFORE_HARD)
    for budget in (0, 4):
        prompts = [before_hard.prompt_ids(protocols.Question.of(p), budget, vocabulary.encode) for p in problems]
        padded, lengths = decode.pad_prompts(prompts, proto.pad_id)
        out = decode.decode(CONFIG, params, padded, lengths, proto, budget)
        flops = [accounting.inference_flops_per_query(CONFIG, len(p), int(g)) for p, g in zip(prompts, out.generated)]
        assert math.isclose(rows[budget]["flops_per_query"], sum(flops) / 2)
        assert rows[budget]["mean_generated_tokens"] == out.generated.mean()
        answers = [corpus.extract_answer(vocabulary.decode(out.answer_ids(i))) for i in range(2)]
        assert rows[budget]["accuracy"] == sum(a == p.answer for a, p in zip(answers, problems)) / 2


def test_rerun_skips_what_is_there_and_adds_only_new_settings(swept):
    run_dir, _, _ = swept
    path = run_dir / infer_rows.ROWS_FILE
    before = path.read_text()
    infer.infer(InferConfig(str(run_dir), **SMALL))
    assert path.read_text() == before
    infer.infer(InferConfig(str(run_dir), **{**SMALL, "thinking_budgets": (0, 4, 6)}))
    after = path.read_text()
    assert after.startswith(before)
    assert [json.loads(l)["thinking_budget"] for l in after[len(before):].splitlines()] == [6] * 5
    metrics = json.loads((run_dir / infer_rows.METRICS_FILE).read_text())
    assert [(m["branch"], m["step"]) for m in metrics] == [(BRANCH, 7)]
    assert metrics[0]["control"] == 1.0 and metrics[0]["tasks"]["synthetic_qa_d1"]["scaling"] is not None


def test_no_samples_decodes_greedy_rows_only_and_they_equal_the_grids(swept, tmp_path):
    run_dir, _, table = swept
    other = tmp_path / "run"
    _make_run(other)
    greedy = infer.infer(InferConfig(str(other), **{**SMALL, "samples": []}))
    assert set(greedy["aggregator"]) == {"greedy"} and len(greedy) == 2  # one row per budget
    columns = ["thinking_budget", "accuracy", "mean_thinking_tokens", "flops_per_query"]
    expected = table[table["aggregator"] == "greedy"][columns].sort_values(columns).reset_index(drop=True)
    assert greedy[columns].sort_values(columns).reset_index(drop=True).equals(expected)


def test_collect_gives_inference_rows_their_runs_training_seed():
    rows = [{"seed": 0, "accuracy": 0.5}, {"seed": 0, "accuracy": 0.25}]
    assert collect.with_training_seed(rows, 7) == [{"accuracy": 0.5, "seed": 7, "problem_seed": 0},
                                                   {"accuracy": 0.25, "seed": 7, "problem_seed": 0}]


def test_a_row_does_not_depend_on_the_batch_it_was_decoded_in(swept, tmp_path):
    """Settings share batches (any budget, greedy and sampled rows together); every answer is
    fixed by its problem, budget, temperature and seed, so the batch size changes no row."""
    run_dir, _, table = swept
    other = tmp_path / "run"
    _make_run(other)
    rebatched = infer.infer(InferConfig(str(other), **{**SMALL, "batch_size": 3}))
    columns = ["task", "thinking_budget", "samples", "aggregator", "accuracy", "mean_thinking_tokens",
               "mean_generated_tokens", "flops_per_query"]
    ordered = lambda t: t[columns].sort_values(columns[:4]).reset_index(drop=True)
    assert ordered(rebatched).equals(ordered(table))


def test_a_thinking_policy_decodes_its_settings_greedily_and_weighs_them_by_the_mix(swept, capsys):
    """A policy's rows are the same greedy rows the grid writes (decoded once, shared), new ones
    kept out of the grid's table, and its accuracy is the mix-weighted mean of its difficulties'
    rows at their budgets."""
    run_dir, _, table = swept
    path = run_dir / infer_rows.ROWS_FILE
    before = path.read_text()
    policy = {1: 4}
    rows = infer.infer(InferConfig(str(run_dir), **{**SMALL, "thinking_policy": policy}))
    assert path.read_text() == before  # d1 at T=4 greedy was already there: nothing decoded
    assert list(rows["aggregator"]) == ["greedy"] and list(rows["thinking_budget"]) == [4]
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = table[(table["aggregator"] == "greedy") & (table["thinking_budget"] == 4)].iloc[0]
    assert line["policy"] == {"1": 4} and line["accuracy"] == expected["accuracy"]
    assert line["mean_thinking_tokens"] == expected["mean_thinking_tokens"]

    two = infer.infer(InferConfig(str(run_dir), **{**SMALL, "thinking_policy": {1: 0, 2: 4},
                                                   "difficulty_mix": {1: 0.25, 2: 0.75}}))
    assert path.read_text() == before  # the grid's table (what laws are fitted on) is left alone
    added = [json.loads(l) for l in (run_dir / infer_rows.POLICY_ROWS_FILE).read_text().splitlines()]
    assert [(r["difficulty"], r["thinking_budget"], r["aggregator"]) for r in added] == [(2, 4, "greedy")]
    infer.infer(InferConfig(str(run_dir), **{**SMALL, "thinking_policy": {2: 4}}))
    assert len((run_dir / infer_rows.POLICY_ROWS_FILE).read_text().splitlines()) == 1  # decoded once
    result = infer_rows.policy_accuracy(two.to_dict("records"), {1: 0, 2: 4}, {1: 0.25, 2: 0.75})
    by = {r["difficulty"]: r for r in two.to_dict("records")}
    assert math.isclose(result["accuracy"], 0.25 * by[1]["accuracy"] + 0.75 * by[2]["accuracy"])
    assert math.isclose(result["stderr"], math.hypot(0.25 * by[1]["accuracy_stderr"], 0.75 * by[2]["accuracy_stderr"]))


@pytest.mark.parametrize("policy, mix, match", [
    ({1: -1}, None, "infer.thinking_policy must map"),
    ({}, None, "infer.thinking_policy must map"),
    ({1: 0, 2: 4}, {1: 0.5, 2: 0.6}, "infer.difficulty_mix must give"),
    ({1: 0, 2: 4}, {1: 1.0}, "infer.difficulty_mix must give"),
])
def test_a_bad_policy_or_mix_is_refused_naming_the_binding(swept, policy, mix, match):
    run_dir, _, _ = swept
    with pytest.raises(infer.ConfigError, match=match):
        infer.infer(InferConfig(str(run_dir), **{**SMALL, "thinking_policy": policy, "difficulty_mix": mix}))


@pytest.mark.parametrize("setting, match", [
    ({"samples": [0]}, r"infer.samples must be a list of integers >= 1, got \[0\]"),  # []: greedy only
    ({"thinking_budgets": []}, "infer.thinking_budgets must be a non-empty list"),
    ({"temperature": 0.0}, r"infer.temperature must be > 0"),
    ({"top_p": True}, r"infer.top_p must be in \(0, 1\]"),
    ({"batch_size": 2.5}, "infer.batch_size must be an integer >= 1"),
])
def test_the_inference_config_names_a_bad_setting_before_any_checkpoint_is_read(setting, match):
    with pytest.raises(ConfigError, match=match):
        InferConfig("/nonexistent/run", **setting).check()
    checked = InferConfig("/nonexistent/run", thinking_budgets=[64, 0, 0], samples=[4, 1], difficulties=[2]).check()
    assert checked.settings == [(2, 0), (2, 64)] and checked.samples == (1, 4) and checked.n_samples == 4
    with pytest.raises(ConfigError, match="infer.model_dir: missing required value"):
        InferConfig("").run_dir()


def test_a_step_or_branch_that_did_not_finish_is_named(swept):
    run_dir, _, _ = swept
    with pytest.raises(infer.InferenceError, match=r"no finished step 99; finished: D=1.0e4 \(step 7\)"):
        infer.infer(InferConfig(str(run_dir), **SMALL), step=99)
    with pytest.raises(infer.InferenceError, match="no finished branch 'D=2.0e4'"):
        infer.infer(InferConfig(str(run_dir), **SMALL), branch="D=2.0e4")


def test_cli_validates_settings_before_any_compute(run_cli, tmp_path):
    proc = run_cli("infer", f"--run_dir={tmp_path}", "--gin_file=gin/runs/infer.gin", "--gin.infer.samples=[0]")
    assert proc.returncode == 2 and "infer.samples" in proc.stderr and "command line" in proc.stderr, proc.stderr
    proc = run_cli("infer", "--gin_file=gin/runs/infer.gin")
    assert proc.returncode == 2 and "MODEL_DIR" in proc.stderr, proc.stderr
    with pytest.raises(infer.InferenceError, match="no finished branch"):
        infer.infer(InferConfig(str(tmp_path), **SMALL))


def test_cli_names_an_unknown_branch(run_cli, tmp_path):
    _make_run(tmp_path)
    proc = run_cli("infer", f"--run_dir={tmp_path}", "--gin_file=gin/runs/infer.gin", "--branch=D=5.0e9")
    assert proc.returncode == 1 and "no finished branch 'D=5.0e9'" in proc.stderr and BRANCH in proc.stderr


@pytest.mark.slow
def test_train_then_infer_from_the_cli(run_cli, tmp_path):
    run_dir = tmp_path / "tiny"
    run_cli("train", "--gin_file=gin/models/p50k.gin", "--gin_file=gin/runs/pretrain.gin",
            "--gin.ModelConfig.seq_len=64", "--gin.train.batch_size=4", "--gin.train.data_budgets=[2000]",
            "--gin.train.eval_batches=1", f"--gin.MODEL_DIR={run_dir}", check=True)
    proc = run_cli("infer", f"--run_dir={run_dir}", "--gin_file=gin/runs/infer.gin",
                   "--gin.infer.thinking_budgets=[0,8]", "--gin.infer.samples=[2]", "--gin.infer.difficulties=[2]",
                   "--gin.infer.problems_per_difficulty=2", "--gin.infer.batch_size=4", check=True)
    rows = collect.read_rows(run_dir / infer_rows.ROWS_FILE, collect.INFERENCE)
    finished = checkpoints.finished_branches(run_dir)[-1]
    assert len(rows) == 2 * 3 and {r["branch"] for r in rows} == {finished["branch"]}
    assert {r["task"] for r in rows} == {"synthetic_qa_d2"} and {r["step"] for r in rows} == {finished["step"]}
    assert "flops_per_query" in proc.stdout and '"control": 1.0' in proc.stdout
    metrics = json.loads((run_dir / infer_rows.METRICS_FILE).read_text())
    assert metrics[0]["branch"] == finished["branch"]


@pytest.mark.parametrize("task, name", [("synthetic_vanilla", "direct"), ("synthetic_thinking", "append")])
def test_the_run_s_training_format_picks_the_protocol(tmp_path, task, name):
    """A raw-trained run answers directly at every budget (no thinking opened); an append-trained
    run is asked the problem statement followed by <think>, and its answer is read from the
    thinking's stated result. T = 0 is the same direct protocol for every run."""
    params = _make_run(tmp_path, task)
    rows = [r for r in infer.infer(InferConfig(str(tmp_path), **SMALL)).to_dict("records")
            if r["aggregator"] == "greedy"]
    by_budget = {r["thinking_budget"]: r for r in rows}
    assert by_budget[0]["protocol"] == "direct" and by_budget[4]["protocol"] == name
    proto, qa = infer.protocol(4), protocols.QAProtocol(protocols.TASK_FORMATS[task])
    questions = [protocols.Question.of(p) for p in corpus.qa_problems(2, 1, 0)]
    prompts = [qa.prompt_ids(q, 4, vocabulary.encode) for q in questions]
    padded, lengths = decode.pad_prompts(prompts, proto.pad_id)
    out = decode.decode(CONFIG, params, padded, lengths, proto, 4 if qa.thinks(4) else 0)
    assert by_budget[4]["mean_thinking_tokens"] == out.thinking.mean()
    assert by_budget[4]["mean_generated_tokens"] == out.generated.mean()
    if task == "synthetic_vanilla":
        assert by_budget[4]["mean_thinking_tokens"] == 0 and prompts[0] == vocabulary.encode(questions[0].problem.prompt)
    else:
        assert vocabulary.decode(prompts[0]) == questions[0].statement + " <think>"
    answers = [qa.read_answer(q, 4, vocabulary.decode(out.thinking_ids(i)), vocabulary.decode(out.answer_ids(i)))
               for i, q in enumerate(questions)]
    assert by_budget[4]["accuracy"] == sum(a == q.problem.answer for a, q in zip(answers, questions)) / 2


def test_a_run_without_a_recorded_task_is_refused(tmp_path):
    _make_run(tmp_path)
    (tmp_path / "identity.json").unlink()
    with pytest.raises(protocols.ProtocolError, match="train.task"):
        infer.infer(InferConfig(str(tmp_path), **SMALL))


def test_settings_the_model_never_met_in_training_are_run_with_a_one_line_warning_each(tmp_path, capsys):
    other = tmp_path / "run"
    _make_run(other)
    setting = dict(thinking_budgets=(0, CONFIG.seq_len + 2), samples=[], difficulties=(1, 9),
                   problems_per_difficulty=1, max_answer_tokens=2, batch_size=4)
    rows = infer.infer(InferConfig(str(other), **setting))
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("scaling infer: warning: ")]
    assert len(warnings) == 2, err
    assert "difficulties [9] are never generated by the training corpus (it holds [1, 2, 3, 4, 5])" in warnings[0]
    assert f"beyond the {CONFIG.seq_len}-token context" in warnings[1]
    assert f"(thinking budgets [{CONFIG.seq_len + 2}] alone exceed it)" in warnings[1]
    assert len(rows) == 4 and set(rows["task"]) == {"synthetic_qa_d1", "synthetic_qa_d9"}  # still run, all written
    assert len(infer.read_rows(other)) == 4
    capsys.readouterr()
    infer.infer(InferConfig(str(other), **{**setting, "thinking_budgets": (0,), "difficulties": (1,)}))
    assert "warning" not in capsys.readouterr().err


def test_a_model_that_answers_directly_decodes_its_greedy_rows_once_for_every_budget(tmp_path, monkeypatch):
    """A raw-trained model's protocol opens no thinking at any T, so its greedy question is the
    same at every budget: decoded once, written at each T with identical rows."""
    run_dir = tmp_path / "run"
    _make_run(run_dir, task="synthetic_vanilla")
    calls = []
    real = decode.decode
    monkeypatch.setattr(decode, "decode", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    table = infer.infer(InferConfig(str(run_dir), **{**SMALL, "thinking_budgets": (0, 4, 16), "samples": []}))
    assert sorted(table["thinking_budget"]) == [0, 4, 16] and len(calls) == 1   # 2 problems, one batch of 4
    columns = ["accuracy", "mean_thinking_tokens", "mean_generated_tokens", "flops_per_query"]
    assert (table[columns].nunique() == 1).all() and (table["mean_thinking_tokens"] == 0).all()
