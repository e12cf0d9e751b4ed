"""Step Law (`--form=hyperparameters`, analysis.hyperparameters) on the paper's dense runs
(tests/data/refdata/steplaw_dense_lr_bs_loss.csv) and on a grid with a known optimum."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import analysis
from analysis.hyperparameters import near_optimal_runs

POINTS = Path(__file__).parent / "data" / "refdata" / "steplaw_dense_lr_bs_loss.csv"
COLUMNS = {"N": "N", "D": "D", "lr": "lr", "batch_size": "bs", "loss": "smooth loss"}
CANON = {"N": "N", "D": "D", "loss": "loss"}


@pytest.fixture(scope="module")
def law():
    return analysis.fit(POINTS, form="hyperparameters", columns=COLUMNS, seq_len=2048, bootstrap=400)


def canonical():
    frame = pd.read_csv(POINTS)
    return pd.DataFrame({"N": frame["N"], "D": frame["D"], "lr": frame["lr"], "batch_size": frame["bs"] * 2048,
                         "loss": frame["smooth loss"]})


def test_near_optimal_runs_are_each_groups_best_and_its_close_rivals():
    frame = canonical()
    runs = near_optimal_runs(frame, 0.0025)
    best = frame.groupby(["N", "D"])["loss"].min()
    assert runs.groupby(["N", "D"]).ngroups == frame.groupby(["N", "D"]).ngroups == 17
    for (n, d), group in runs.groupby(["N", "D"]):
        assert group["loss"].min() == best[(n, d)]
        assert (group["loss"] / best[(n, d)] - 1 < 0.0025).all()


def test_step_law_on_the_dense_runs(law):
    p = law.estimates()
    assert law.diagnostics["n_groups"] == 17 and law.diagnostics["n_near_optimal"] > 17
    # the paper's qualitative finding: lr falls with N and rises with D; the batch grows with D
    assert p["a_lr"] < 0 < p["b_lr"] and p["b_bs"] > 0
    for name in ("a_lr", "b_lr", "b_bs"):
        est = law.parameters[name]
        assert est.ci[0] < est.estimate < est.ci[1]
    # the bootstrap mean agrees with one least-squares fit on all near-optimal runs (statsmodels)
    runs = near_optimal_runs(canonical())
    x = sm.add_constant(np.column_stack([np.log(runs["N"]), np.log(runs["D"])]))
    ols = sm.OLS(np.log(runs["lr"].to_numpy()), x).fit()
    assert p["a_lr"] == pytest.approx(ols.params[1], abs=2 * law.parameters["a_lr"].se)
    assert law.diagnostics["least_squares_on_all"]["a_lr"] == pytest.approx(ols.params[1], rel=1e-9)
    bs = sm.OLS(np.log(runs["batch_size"].to_numpy()), sm.add_constant(np.log(runs["D"].to_numpy()))).fit()
    assert law.diagnostics["least_squares_on_all"]["b_bs"] == pytest.approx(bs.params[1], rel=1e-9)


def test_a_known_optimum_is_recovered():
    rng = np.random.default_rng(0)
    rows = []
    for n in np.geomspace(1e8, 1e9, 4):
        for d in np.geomspace(1e10, 1e11, 4):
            lr_opt, bs_opt = 2.0 * n ** -0.7 * d ** 0.3, 0.5 * d ** 0.55
            for lr in lr_opt * np.geomspace(0.25, 4, 9):
                for bs in bs_opt * np.geomspace(0.25, 4, 9):
                    loss = 2.0 + 0.01 * np.log(lr / lr_opt) ** 2 + 0.01 * np.log(bs / bs_opt) ** 2
                    rows.append({"N": n, "D": d, "lr": lr, "batch_size": bs, "loss": loss * (1 + 1e-5 * rng.normal())})
    law = analysis.fit(pd.DataFrame(rows), form="hyperparameters", bootstrap=100, threshold=1e-4, columns=CANON)
    p = law.estimates()
    assert p["a_lr"] == pytest.approx(-0.7, abs=0.02) and p["b_lr"] == pytest.approx(0.3, abs=0.02)
    assert p["b_bs"] == pytest.approx(0.55, abs=0.02)


def test_predict_and_recommend_give_both_quantities_with_intervals(law, tmp_path):
    loaded = analysis.load_law(law.save(tmp_path / "step.json"))
    p = loaded.estimates()
    lr = loaded.predict(N=1e9, D=1e11, quantity="lr")
    assert lr == pytest.approx(p["k_lr"] * 1e9 ** p["a_lr"] * 1e11 ** p["b_lr"])
    point = analysis.predict(loaded, {"N": 1e9, "D": 1e11}).points[0]
    assert set(point.quantities) == {"lr", "batch_size"}
    assert point.quantities["lr"].low < point.quantities["lr"].estimate < point.quantities["lr"].high
    answer = loaded.recommend(params=1e9, tokens=1e11)
    assert answer["batch_sequences"].estimate == pytest.approx(answer["batch_size"].estimate / 2048)
    assert answer.warnings == ()
    assert loaded.recommend(params=1e11, tokens=1e13).warnings
    with pytest.raises(ValueError, match="give --params and --tokens"):
        loaded.recommend(train_flops=1e20)


def test_bad_input_names_the_problem():
    with pytest.raises(analysis.TableError, match="missing column 'batch_size'"):
        analysis.fit(POINTS, form="hyperparameters", columns={**COLUMNS, "batch_size": "batch_size"})
    with pytest.raises(analysis.TableError, match="at least two model sizes"):
        analysis.fit(canonical().query("N == 214663680"), form="hyperparameters", bootstrap=10, columns=CANON)


@pytest.mark.slow
def test_cli_fit_predict_recommend(run_cli, tmp_path):
    out = tmp_path / "step.json"
    proc = run_cli("fit", POINTS, "--form=hyperparameters", "--columns",
                   "N=N,D=D,lr=lr,batch_size=bs,loss=smooth loss", "--seq-len=2048", "--bootstrap=200", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "Step Law: lr = " in proc.stdout
    pred = json.loads(run_cli("predict", out, "--N=1e9", "--D=1e11", "--json", check=True).stdout)
    assert set(pred["predictions"][0]) == {"lr", "batch_size", "N", "D", "status"}
    assert pred["predictions"][0]["status"] == "determined"  # inside the fitted ranges
    rec = run_cli("recommend", out, "--params=1e9", "--tokens=1e11", check=True)
    assert "batch_sequences" in rec.stdout
    bad = run_cli("fit", POINTS, "--seq-len=2048", "-o", tmp_path / "x.json")
    assert bad.returncode == 2 and "--form=hyperparameters" in bad.stderr
    wrong = run_cli("fit", POINTS, "--form=hyperparameters", "--columns", "N=N,D=D,lr=lr,batch_size=bsz", "-o",
                    tmp_path / "x.json")
    assert wrong.returncode == 2 and "'bsz'" in wrong.stderr and POINTS.name in wrong.stderr


def test_a_grid_takes_each_runs_learning_rate_and_batch_from_the_fitted_law(law, tmp_path):
    """Grid.hyperparameters = 'fitted:<law file>': every run is planned with the law's lr and
    batch (in sequences of its seq_len) at its parameter count and largest data budget."""
    from scaling.configuration import ConfigError
    from scaling.sweep import store
    from scaling.sweep.launch import plan

    law_file = tmp_path / "steplaw.json"
    law.save(law_file)
    smoke = str(Path(__file__).resolve().parent.parent / "grids" / "smoke.gin")
    fitted = (f"Grid.hyperparameters = 'fitted:{law_file}'", "Grid.train_overrides = {'train.eval_batches': 1}")
    _, plans, _ = plan(smoke, fitted, str(tmp_path / "s"))
    for p in plans:
        tokens = max(p.point["data_budgets"])
        quantities = analysis.predict(law, {"N": [p.point["params"]], "D": [tokens]}).points[0].quantities
        lr = float(f"{quantities['lr'].estimate:.4g}")
        batch = max(1, round(quantities["batch_size"].estimate / p.point["config"]["seq_len"]))
        assert f"train.learning_rate = {lr!r}" in p.train_config
        assert p.point["batch_size"] == batch
    assert store.fitted_hyperparameters(str(law_file), 10**9, 10**11, 2048)["train.batch_size"] == \
        round(law.predict(N=1e9, D=1e11, quantity="batch_size") / 2048)

    with pytest.raises(ConfigError, match="sets train.learning_rate while Grid.hyperparameters"):
        plan(smoke, (fitted[0], "Grid.train_overrides = {'train.learning_rate': 0.1}"), str(tmp_path / "s2"))
    with pytest.raises(ConfigError, match="Grid.hyperparameters must be '' or 'fitted:<law file>'"):
        plan(smoke, ("Grid.hyperparameters = 'steplaw.json'",), str(tmp_path / "s3"))
    with pytest.raises(ConfigError, match=r"Grid.hyperparameters = 'fitted:.*missing.json'"):
        plan(smoke, (f"Grid.hyperparameters = 'fitted:{tmp_path / 'missing.json'}'", fitted[1]), str(tmp_path / "s4"))
