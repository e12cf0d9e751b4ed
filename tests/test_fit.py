"""Law fitter: acceptance on published data, synthetic recovery, degenerate input, law files."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.answers import interval
from analysis.law import LawError

REF = Path(__file__).parent / "data" / "refdata"
EPOCH_COLUMNS = {"N": "Model Size", "C": "Training FLOP", "loss": "loss"}


def epoch_points() -> pd.DataFrame:
    """Epoch's reconstruction of Chinchilla's points without the 5 highest losses, as Epoch fit."""
    return pd.read_csv(REF / "chinchilla_epoch_svg.csv").sort_values("loss").iloc[:-5]


def synthetic_chinchilla(n_sizes=8, n_budgets=10, noise=0.003, seed=0, truth=None):
    truth = truth or {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, n_sizes), np.geomspace(2e8, 1e12, n_budgets))
    n, d = n.ravel(), d.ravel()
    loss = truth["E"] + truth["A"] / n ** truth["alpha"] + truth["B"] / d ** truth["beta"]
    loss = loss * np.exp(rng.normal(0, noise, loss.shape))
    return pd.DataFrame({"params": n, "tokens": d, "flops": 6 * n * d, "eval_loss": loss}), truth


@pytest.mark.slow
def test_epoch_chinchilla_refit_matches_published_estimates_and_intervals():
    law = analysis.fit(epoch_points(), columns=EPOCH_COLUMNS, bootstrap=100, heldout_fraction=0)
    assert law.n_points == 240 and law.n_starts == 4500 and law.converged
    est = {k: p.estimate for k, p in law.parameters.items()}
    # Epoch's 95% intervals for their refit (Besiroglu et al. 2024, Table 1)
    assert 1.769 <= est["E"] <= 1.871
    assert 0.317 <= est["alpha"] <= 0.373
    assert 0.331 <= est["beta"] <= 0.415
    # Epoch's replication of the plain Huber objective
    for name, published in {"A": 477.8, "B": 2144, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}.items():
        assert est[name] == pytest.approx(published, rel=2e-3), name
    for name, p in law.parameters.items():
        assert p.ci[0] <= p.estimate <= p.ci[1], name
        assert p.se > 0
    # The profile intervals are about as wide as Epoch's bootstrap intervals (profiling squared
    # residuals about the Huber estimate gave E an interval 4e-6 wide in log E here).
    for name, (low, high) in {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}.items():
        p = law.parameters[name]
        assert p.status == "identified" and p.method == "profile likelihood", name
        assert 0.4 <= (p.ci[1] - p.ci[0]) / (high - low) <= 2.5, (name, p.ci)


@pytest.mark.slow
def test_muennighoff_data_constrained_objective_at_or_below_published():
    # the published base law (datablations README, exact logs) and the published fit's objective:
    # the sum over the 182 runs of Huber(delta=1e-3) of the log residuals, 0.0158259 at
    # R_D* = 15.39, R_N* = 5.31
    base = {"A": math.exp(6.255414), "B": math.exp(7.3049974), "E": math.exp(0.6254804),
            "alpha": 0.3526596, "beta": 0.3526596}
    law = analysis.fit(REF / "datablations_fit_set_182.csv", form="data_constrained", bootstrap=20,
                       columns={"N": "N_params", "D": "D_tokens", "U": "U_unique_tokens", "loss": "val_loss"},
                       base=base, heldout_fraction=0)
    assert law.n_points == 182 and law.converged
    assert law.objective <= 0.0158259 <= 0.01583
    assert set(law.parameters) == {"R_D", "R_N"}
    assert law.settings.base == base and law.estimates()["E"] == base["E"]


@pytest.mark.slow
def test_synthetic_chinchilla_parameters_recovered_within_intervals():
    frame, truth = synthetic_chinchilla()
    law = analysis.fit(frame, bootstrap=60, heldout_fraction=0.2)
    assert law.converged
    for name, value in truth.items():
        p = law.parameters[name]
        assert p.ci[0] <= value <= p.ci[1], (name, value, p)
    assert law.heldout["n_test"] > 0 and law.heldout["mean_relative_error"] < 0.02
    # the stored draws propagate: the interval at the truth's point brackets the true loss
    draws = law.predict_draws(N=1e9, D=2e10)
    true_loss = truth["E"] + truth["A"] / 1e9 ** truth["alpha"] + truth["B"] / 2e10 ** truth["beta"]
    assert draws.shape == (60 + law.n_region,)   # the bootstrap's draws, then the likelihood region's points
    low, high = interval(draws, law.spread, float(law.predict(N=1e9, D=2e10)))
    assert low <= true_loss <= high


def test_law_file_round_trip_and_validation(tmp_path):
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    law = analysis.fit(frame, bootstrap=8, heldout_fraction=0)
    path = law.save(tmp_path / "law.json")
    loaded = analysis.load_law(path)
    assert loaded.parameters == law.parameters
    assert np.allclose(loaded.predict(N=[1e8, 1e9], D=[1e9, 1e10]), law.predict(N=[1e8, 1e9], D=[1e9, 1e10]))
    data = json.loads(path.read_text())
    assert set(data["parameters"]["alpha"]) == {"estimate", "se", "ci", "status", "reason", "method", "profile_ci"}
    assert data["parameters"]["alpha"]["status"] == "identified"
    assert len(data["bootstrap_samples"]["beta"]) == 8

    def broken(change, message):
        bad = json.loads(path.read_text())
        change(bad)
        target = tmp_path / "bad.json"
        target.write_text(json.dumps(bad))
        with pytest.raises(LawError, match=message):
            analysis.load_law(target)

    broken(lambda d: d.update(schema_version=99), "schema_version")
    broken(lambda d: d.update(form="cubic"), "unknown form 'cubic'")
    broken(lambda d: d["parameters"].pop("beta"), r"parameters \['beta'\] missing")
    broken(lambda d: d["parameters"]["E"].update(estimate="inf"), "non-finite")
    with pytest.raises(LawError, match="no such law file"):
        analysis.load_law(tmp_path / "absent.json")


@pytest.mark.parametrize("change, message", [
    (lambda f: f.iloc[:5], "too few to fit"),
    (lambda f: f.assign(params=1e8), "single model size"),
    (lambda f: f.assign(eval_loss=np.where(np.arange(len(f)) == 3, np.nan, f["eval_loss"])),
     "'eval_loss' .* non-finite"),
    (lambda f: f.assign(tokens=np.where(np.arange(len(f)) == 2, 0.0, f["tokens"])), "'tokens' .* non-positive"),
    (lambda f: f.drop(columns=["params"]), "missing column 'params' for N"),
])
def test_degenerate_input_is_refused_naming_the_problem(change, message):
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    with pytest.raises(analysis.TableError, match=message):
        analysis.fit(change(frame), bootstrap=0)


def test_results_folder_uses_final_rows_only(tmp_path):
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    trunk = frame.assign(eval_loss=frame["eval_loss"] + 5.0, is_final=False)
    pd.concat([frame.assign(is_final=True), trunk]).to_parquet(tmp_path / "training.parquet")
    law = analysis.fit(tmp_path, bootstrap=0, heldout_fraction=0)
    assert law.n_points == len(frame)
    assert law.ranges["N"] == [frame["params"].min(), frame["params"].max()]


@pytest.mark.slow
def test_cli_fit_writes_law_file_and_prints_summary(run_cli, tmp_path):
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    table = tmp_path / "points.csv"
    frame.rename(columns={"params": "n", "eval_loss": "val"}).to_csv(table, index=False)
    out = tmp_path / "law.json"
    proc = run_cli("fit", table, "--form=chinchilla", "--bootstrap=5", "--columns", "N=n,loss=val",
                   "--heldout-fraction=0", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "alpha" in proc.stdout and "95% low" in proc.stdout
    law = analysis.load_law(out)
    assert law.target == "val" and law.form.name == "chinchilla"
    bad = run_cli("fit", table, "--columns", "N=n", "-o", tmp_path / "x.json")
    assert bad.returncode == 2 and "missing column 'eval_loss'" in bad.stderr
    assert not (tmp_path / "x.json").exists()


def test_non_converged_fit_is_flagged_in_the_summary():
    from analysis.cli import summary
    import dataclasses
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    law = analysis.fit(frame, bootstrap=0, heldout_fraction=0)
    assert "WARNING" not in summary(law)
    assert "did not converge" in summary(dataclasses.replace(law, converged=False))


def test_known_floor_fixed_holds_e_and_recovers_the_rest(tmp_path):
    frame, truth = synthetic_chinchilla(n_sizes=6, n_budgets=6, noise=0.002)
    law = analysis.fit(frame, bootstrap=30, heldout_fraction=0.2, floor=truth["E"], floor_mode="fix")
    assert law.converged and law.settings.floor == truth["E"] and law.settings.floor_mode == "fix"
    e = law.parameters["E"]
    assert e.estimate == pytest.approx(truth["E"], rel=1e-12) and e.se < 1e-12 and e.ci == (truth["E"], truth["E"])
    for name in ("A", "B", "alpha", "beta"):
        p = law.parameters[name]
        assert p.ci[0] <= truth[name] <= p.ci[1], (name, p)
    assert law.heldout["mean_relative_error"] < 0.02
    assert law.diagnostics["points_below_floor"] == 0
    loaded = analysis.load_law(law.save(tmp_path / "law.json"))
    assert np.allclose(loaded.predict(N=1e9, D=1e10), law.predict(N=1e9, D=1e10))
    assert np.all(loaded.predict_draws(N=1e12, D=1e14) >= truth["E"])


def test_known_floor_as_a_bound_binds_only_when_the_data_ask_for_less():
    frame, truth = synthetic_chinchilla(n_sizes=5, n_budgets=6, noise=0.002)
    free = analysis.fit(frame, bootstrap=0, heldout_fraction=0)
    below = analysis.fit(frame, bootstrap=0, heldout_fraction=0, floor=1.5)  # inactive: E ~ 1.8
    assert below.parameters["E"].estimate == pytest.approx(free.parameters["E"].estimate, rel=1e-3)
    assert below.objective == pytest.approx(free.objective, rel=1e-3, abs=1e-9)
    above = analysis.fit(frame, bootstrap=20, heldout_fraction=0, floor=2.1)  # binds (E ~ 1.8), and lies above the lowest losses
    assert above.settings.floor_mode == "bound"
    assert above.parameters["E"].estimate >= 2.1 and above.parameters["E"].ci[0] >= 2.1
    assert above.objective > free.objective
    assert above.diagnostics["points_below_floor"] == int((frame["eval_loss"] < 2.1).sum()) > 0


@pytest.mark.parametrize("options, message", [
    (dict(floor=-1.0), "finite positive"),
    (dict(floor=float("nan")), "finite positive"),
    (dict(floor=1.0, floor_mode="clamp"), "floor mode"),
    (dict(floor=1.0, approach=2), "approaches 1 and 2 have no E"),
])
def test_bad_floor_is_refused(options, message):
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    with pytest.raises(ValueError, match=message):
        analysis.fit(frame, bootstrap=0, heldout_fraction=0, **options)


def test_cli_fit_reads_the_floor_from_describe_json(run_cli, tmp_path):
    frame, truth = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    table = tmp_path / "points.csv"
    frame.to_csv(table, index=False)
    floor = tmp_path / "floor.json"
    floor.write_text(json.dumps({"corpus": "synthetic", "entropy_nats_per_token": truth["E"], "stderr": 0.001}))
    out = tmp_path / "law.json"
    proc = run_cli("fit", table, "--bootstrap=0", "--heldout-fraction=0", f"--floor={floor}", "--floor-mode=fix",
                   "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert f"E held at the known floor {truth['E']:g}" in proc.stdout
    assert analysis.load_law(out).parameters["E"].estimate == truth["E"]
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    for value, message in ((junk, "needs entropy_nats_per_token"), ("nofile", "neither a number nor a file")):
        bad = run_cli("fit", table, f"--floor={value}", "-o", tmp_path / "x.json")
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_canonical_columns_and_json_lines_need_no_column_map(tmp_path, capsys):
    """A table whose columns are already N, D, loss fits without a map, from Python and from the
    CLI, and a JSON Lines table (as Gemstones ships them) reads like a CSV."""
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    canonical = frame.rename(columns={"params": "N", "tokens": "D", "eval_loss": "loss"}).drop(columns=["flops"])
    law = analysis.fit(canonical, bootstrap=0)
    assert law.n_points == len(canonical) and law.ranges["C"][0] == pytest.approx(6 * (canonical.N * canonical.D).min())
    table = tmp_path / "runs.jsonl"
    canonical.to_json(table, orient="records", lines=True)
    assert analysis.fit(table, bootstrap=0).parameters["alpha"].estimate == pytest.approx(
        law.parameters["alpha"].estimate, rel=1e-6)
    from scaling.cli import main
    assert main(["fit", str(table), "--bootstrap", "0", "--output", str(tmp_path / "law.json")]) == 0
    assert json.loads((tmp_path / "law.json").read_text())["n_points"] == len(canonical)
    table.write_text('{"N": 1e8, "D": 1e9, "loss": 3.0}\nnot json\n')
    with pytest.raises(analysis.TableError, match="runs.jsonl: not readable as JSON Lines"):
        analysis.fit(table, bootstrap=0)


def test_python_api_errors_name_the_keyword_not_a_cli_flag():
    frame, _ = synthetic_chinchilla(n_sizes=4, n_budgets=5)
    with pytest.raises(analysis.TableError, match=r"columns=\{'N': '<column>'\} in Python") as missing:
        analysis.fit(frame.drop(columns=["params"]), bootstrap=0)
    assert "N" in str(missing.value)
    with pytest.raises(analysis.TableError, match=r"no rows satisfy where 'params < 0'"):
        analysis.fit(frame, bootstrap=0, where="params < 0")


def test_the_minimizer_holds_a_bounded_number_of_starts_per_call():
    from analysis.problem import ELEMENT_BUDGET, ROWS, starts_per_call
    assert starts_per_call(2 * 240 + 11) == ROWS  # a published table: one call of ROWS starts, as before
    for rows in (200_000, 1_000_000, 30_000_000):
        row_length = 2 * rows + 11  # weights and targets per row, a mask and fixed values per parameter
        per_call = starts_per_call(row_length)
        assert 1 <= per_call < ROWS and per_call & (per_call - 1) == 0
        assert per_call * row_length <= ELEMENT_BUDGET or per_call == 1
        assert 2 * per_call * row_length > ELEMENT_BUDGET  # no smaller than it need be
    assert starts_per_call(2 * 1_000_000 + 11) * 8 * (2 * 1_000_000 + 11) < 2 ** 28  # 33.5 GiB asked before


def test_a_fit_gives_the_same_law_whatever_the_number_of_starts_per_call(monkeypatch):
    from analysis import problem
    frame, _ = synthetic_chinchilla()
    columns = {"N": "params", "D": "tokens", "loss": "eval_loss"}
    kwargs = dict(columns=columns, bootstrap=20, heldout_fraction=0)
    whole = analysis.fit(frame, **kwargs)
    monkeypatch.setattr(problem, "ELEMENT_BUDGET", 8 * (2 * 80 + 11))  # 8 starts per call, not 64
    assert problem.starts_per_call(2 * 80 + 11) == 8
    split = analysis.fit(frame, **kwargs)
    for name, p in whole.parameters.items():
        assert split.parameters[name].estimate == pytest.approx(p.estimate, rel=1e-6), name  # batch width: rounding only
        assert split.parameters[name].ci == pytest.approx(p.ci, rel=1e-6), name


def test_a_fit_gives_the_same_law_whether_its_calls_run_on_one_thread_or_several(monkeypatch):
    from analysis import problem
    frame, _ = synthetic_chinchilla()
    kwargs = dict(columns={"N": "params", "D": "tokens", "loss": "eval_loss"}, bootstrap=20, heldout_fraction=0)
    monkeypatch.setattr(problem, "ELEMENT_BUDGET", 8 * (2 * 80 + 11))  # 8 starts per call: many calls
    monkeypatch.setattr(problem, "CALL_THREADS", 3)
    threads = analysis.fit(frame, **kwargs)
    monkeypatch.setattr(problem, "CALL_THREADS", 1)
    one = analysis.fit(frame, **kwargs)
    for name, p in one.parameters.items():
        assert (threads.parameters[name].estimate, threads.parameters[name].ci) == (p.estimate, p.ci), name


@pytest.mark.slow
def test_a_large_table_is_minimized_and_bootstrapped_in_bounded_memory():
    """512 starts over 2e5 rows held at once were 1.6 GB of data rows (a 1e6-row table's fit asked
    for 33.5 GiB); now a call holds ELEMENT_BUDGET elements, built when it comes. The bootstrap's
    400 resamples were drawn up front, [400, 2e5] weights and as many run counts (1.3 GB); now each
    is drawn when its refit's call comes."""
    import tracemalloc

    from analysis.forms import get_form
    from analysis.problem import ELEMENT_BUDGET, Problem
    rows = 200_000
    rng = np.random.default_rng(0)
    n, d = np.exp(rng.uniform(np.log(1e7), np.log(1e10), rows)), np.exp(rng.uniform(np.log(2e8), np.log(1e12), rows))
    loss = (1.8 + 400 / n ** 0.34 + 2000 / d ** 0.37) * np.exp(rng.normal(0, 0.003, rows))
    frame = pd.DataFrame({"N": n, "D": d, "C": 6 * n * d, "loss": loss})
    form = get_form("chinchilla")
    options = form.prepare(form.options_from({}), frame)
    fitting = Problem(form, options, frame, 1e-3)
    starts = form.starts(options)[:512]
    tracemalloc.start()
    try:
        x, f, _, _ = fitting.minimize(starts, 0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        boot_x, _ = fitting.bootstrap(x[:1], 400, seed=0, max_iter=0)
        boot_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == starts.shape and np.isfinite(f).all()
    assert peak < 4 * 8 * ELEMENT_BUDGET < len(starts) * 2 * rows * 8, peak
    assert boot_x.shape == (400, x.shape[1]) and np.isfinite(boot_x).all()
    assert boot_peak < 4 * 8 * ELEMENT_BUDGET < 400 * rows * 8, boot_peak
