"""The OLMo ladder's two-step prediction (`--form=two_step`, analysis.two_step) on the ladder's
own runs (tests/data/refdata/olmo_ladder_two_step.csv, built by build_olmo_ladder_two_step.py),
predicting the 7B-4T and 13B-5T targets."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.two_step import fit_sigmoid, sigmoid

POINTS = Path(__file__).parent / "data" / "refdata" / "olmo_ladder_two_step.csv"
COLUMNS = {"N": "N", "D": "D"}


def task(name):
    frame = pd.read_csv(POINTS)
    frame = frame[frame["task"] == name]
    return frame[frame["target"] == 0], frame[frame["target"] == 1]


@pytest.fixture(scope="module")
def hellaswag():
    fit, _ = task("hellaswag_val_5shot")
    return analysis.fit(fit, form="two_step", columns=COLUMNS, bootstrap=100)


def test_fixture_is_the_ladder_and_its_targets():
    frame = pd.read_csv(POINTS)
    assert frame["task"].nunique() == 8
    fit, targets = task("mmlu_avg_test_5shot")
    assert fit.loc[fit["final"] == 1, "run"].nunique() == 16 and fit["N"].max() == 1279395840
    assert sorted(targets["D"].round(-6)) == [3945066000000.0, 5000089000000.0]   # the paper's -d values


def test_sigmoid_step_recovers_a_known_curve():
    rng = np.random.default_rng(0)
    loss = np.linspace(0.6, 1.4, 300)
    truth = (-0.7, 0.9, 6.0, 0.95)
    acc = sigmoid(loss, *truth) + rng.normal(0, 0.003, loss.size)
    params, start = fit_sigmoid(loss, acc, 0.25, 1.0, helper_point=False)
    assert start == 0 and params == pytest.approx(truth, rel=0.05)


def test_two_step_law_on_hellaswag(hellaswag, tmp_path):
    law = analysis.load_law(hellaswag.save(tmp_path / "hs.json"))
    o, p = law.diagnostics, law.estimates()
    assert o["n_step1"] == 16 and o["n_step2"] > 1000 and o["helper_point"] == [0.0, 1.0]
    assert -1 <= p["a"] <= 0 and 0 <= p["b"] <= 1 and p["k"] > 0     # the paper's bounds
    assert o["step1_fit_error"] < 0.01 and o["step2_fit_error"] < 0.03
    n, d = 6887575552, 3945065873408
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    assert law.predict(N=n, D=d, quantity="task_loss") == pytest.approx(loss)
    assert law.predict(N=n, D=d) == pytest.approx(sigmoid(loss, p["a"], p["x0"], p["k"], p["b"]))


def test_chained_prediction_of_the_targets_with_intervals(hellaswag):
    _, targets = task("hellaswag_val_5shot")
    result = analysis.predict(hellaswag, targets, columns=COLUMNS)
    for point in result.points:
        assert set(point.observed) == {"task_loss", "accuracy"} and point.warnings
        q = point.quantities["accuracy"]
        assert q.low < q.estimate < q.high
    # HellaSwag is one of the tasks the ladder predicts well: both targets within 5% in accuracy
    assert np.max(np.abs(result.relative_errors("accuracy"))) < 0.05
    assert np.max(np.abs(result.relative_errors("task_loss"))) < 0.03


def test_bad_input_names_the_problem():
    fit, _ = task("hellaswag_val_5shot")
    with pytest.raises(analysis.TableError, match="missing column 'task_loss'"):
        analysis.fit(fit.drop(columns="task_loss"), form="two_step", columns=COLUMNS, bootstrap=0)
    with pytest.raises(analysis.TableError, match="must be 0 or 1"):
        analysis.fit(fit.assign(final=2), form="two_step", columns=COLUMNS, bootstrap=0)
    with pytest.raises(analysis.TableError, match="step-1 rows"):
        analysis.fit(fit[fit["final"] == 0].head(50).assign(final=[1] * 5 + [0] * 45), form="two_step",
                     columns=COLUMNS, bootstrap=0)


@pytest.mark.slow
def test_cli_fit_and_predict(run_cli, tmp_path):
    out = tmp_path / "two.json"
    proc = run_cli("fit", POINTS, "--form=two_step", "--task-min=0.5", "--where",
                   "task == 'piqa_val_5shot' and target == 0", "--columns", "N=N,D=D", "--bootstrap=20", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "step 1 (16 runs)" in proc.stdout and "step 2 (" in proc.stdout
    pred = run_cli("predict", out, f"--points={POINTS}", "--where", "task == 'piqa_val_5shot' and target == 1",
                   "--columns", "N=N,D=D", "--json")
    assert pred.returncode == 0, pred.stderr
    rows = json.loads(pred.stdout)["predictions"]
    assert len(rows) == 2 and set(rows[0]["accuracy"]) == {"estimate", "low", "high", "observed", "relative_error"}
    bad = run_cli("fit", POINTS, "--task-min=0.5", "-o", tmp_path / "x.json")
    assert bad.returncode == 2 and "--form=two_step" in bad.stderr
