"""Porian et al. 2024's approach-2 estimator (analysis.porian) on the paper's own IsoFLOP points
(tests/data/refdata/porian2024_isoflop_points.csv, all 15 settings) and on curves of known optimum."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.porian import curve_optimum, fit_porian, spline_minimum

REF = Path(__file__).parent / "data" / "refdata"
POINTS = REF / "porian2024_isoflop_points.csv"
COLUMNS = {"N": "n_params", "D": "tokens", "C": "flops", "loss": "loss"}
SETTING = ["dataset", "hparams", "warmup", "decay", "param_count", "val"]


def setting(**values) -> pd.DataFrame:
    frame = pd.read_csv(POINTS)
    for key, value in values.items():
        frame = frame[frame[key] == value]
    assert len(frame), values
    return frame


def tuned_rw():
    return setting(dataset="rw", hparams="tuned", warmup="short", decay="const", param_count="standard", val="val")


def test_spline_minimum_finds_the_minimum_of_a_smooth_curve_within_the_grid_step():
    n = np.geomspace(1e7, 1e9, 9)
    true_optimum = 1.3e8
    loss = 3.0 + 0.05 * np.log(n / true_optimum) ** 2
    grid, index, _ = spline_minimum(n, loss)
    step = np.log(grid[1] / grid[0])
    assert abs(np.log(grid[index] / true_optimum)) <= step


def test_seed_noise_spreads_the_optimum_and_the_std_has_the_papers_floor():
    n = np.geomspace(1e7, 1e9, 9)
    loss = 3.0 + 0.05 * np.log(n / 1.3e8) ** 2
    rng = np.random.default_rng(0)
    quiet = curve_optimum(n, loss, 1e18, rng, seed_noise=1e-7, noise_draws=200)
    grid_step = np.log(n[-1] / n[0]) / ((len(n) - 1) * 25 - 1)
    assert quiet.std_log == pytest.approx(0.33 * 25 * grid_step)          # floor: noise moves nothing
    assert quiet.estimate == pytest.approx(quiet.unperturbed)
    noisy = curve_optimum(n, loss, 1e18, rng, seed_noise=0.01, noise_draws=200)
    assert noisy.std_log > quiet.std_log and len(noisy.draws) <= 200


def test_a_curve_that_does_not_bracket_its_optimum_is_dropped():
    n = np.geomspace(1e7, 1e8, 6)                        # the optimum 1.3e8 lies beyond the largest size
    loss = 3.0 + 0.05 * np.log(n / 1.3e8) ** 2
    assert curve_optimum(n, loss, 1e18, np.random.default_rng(0), noise_draws=100) is None


def test_porian_estimator_on_the_tuned_refinedweb_setting():
    law = analysis.fit(tuned_rw(), approach=2, isoflop_method="porian", bootstrap=0, columns=COLUMNS, seed=0)
    a, b = law.parameters["a"], law.parameters["b"]
    assert law.diagnostics["n_optima"] == 12 and law.diagnostics["dropped_curves"] == []
    # the paper's conclusion for this setting: N* ~ C^0.5 once warmup, decay and tuning are fixed
    assert 0.47 < a.estimate < 0.53 and a.ci[0] < a.estimate < a.ci[1]
    assert a.ci[1] - a.ci[0] < 0.05
    assert len(law.bootstrap_samples["a"]) > 500            # one weighted refit per kept noise draw
    assert law.predict(C=1e19) == pytest.approx(law.parameters["k_N"].estimate * 1e19 ** a.estimate)
    again = fit_porian(tuned_rw(), columns=COLUMNS, seed=0)
    assert again.parameters["a"].estimate == a.estimate and again.parameters["a"].ci == a.ci


def test_porian_estimator_runs_on_every_setting_and_orders_them_as_the_paper_does():
    frame = pd.read_csv(POINTS)
    a = {}
    for key, group in frame.groupby(SETTING):
        noise = 0.01 if key[0] == "owt2" else 0.002            # the paper's SEED_ARGS per dataset
        law = analysis.fit(group, approach=2, isoflop_method="porian", columns=COLUMNS, seed_noise=noise,
                           noise_draws=300)
        est = law.parameters["a"]
        assert est.ci[0] <= est.estimate <= est.ci[1], key
        assert law.diagnostics["n_optima"] >= 10, key
        a[key] = est.estimate
    assert len(a) == 15
    # each correction of the paper lowers a (Kaplan -> last-layer FLOPs -> warmup -> tuning), on both datasets
    for data in ("rw", "owt2"):
        chain = [a[(data, "base", "long", "kaplan", "kaplan", "train")],
                 a[(data, "base", "long", "kaplan", "standard", "val")],
                 a[(data, "base", "short", "kaplan", "standard", "val")],
                 a[(data, "tuned", "short", "const", "standard", "val")]]
        assert chain == sorted(chain, reverse=True), (data, chain)


def test_porian_estimator_is_below_the_plain_parabola_where_the_issue_found_it_high():
    frame = setting(dataset="rw", hparams="base", warmup="long", decay="kaplan", param_count="standard", val="val")
    parabola = analysis.fit(frame, approach=2, columns=COLUMNS, bootstrap=0).parameters["a"].estimate
    porian = analysis.fit(frame, approach=2, isoflop_method="porian", columns=COLUMNS, noise_draws=300)
    assert porian.parameters["a"].ci[1] < parabola


def test_porian_options_are_refused_where_they_do_not_apply():
    with pytest.raises(ValueError, match="approach-2 estimator"):
        analysis.fit(tuned_rw(), approach=1, isoflop_method="porian", columns=COLUMNS)
    with pytest.raises(ValueError, match="only to --isoflop-method=porian"):
        analysis.fit(tuned_rw(), approach=2, columns=COLUMNS, seed_noise=0.01)
    with pytest.raises(analysis.TableError, match="seed-noise"):
        analysis.fit(tuned_rw(), approach=2, isoflop_method="porian", columns=COLUMNS, seed_noise=0.0)


@pytest.mark.slow
def test_cli_porian_with_where_and_bad_input(run_cli, tmp_path):
    out = tmp_path / "porian.json"
    where = ("dataset == 'rw' and hparams == 'tuned' and warmup == 'short' and param_count == 'standard' "
             "and val == 'val'")
    proc = run_cli("fit", POINTS, "--approach=2", "--isoflop-method=porian", "--where", where,
                   "--columns", "N=n_params,D=tokens,C=flops,loss=loss", "--noise-draws=200", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "Porian et al. approach 2: 12 IsoFLOP curves" in proc.stdout
    law = analysis.load_law(out)
    assert law.settings.isoflop_method == "porian" and 0.47 < law.parameters["a"].estimate < 0.53
    bad = run_cli("fit", POINTS, "--approach=2", "--isoflop-method=porian", "--where", "datasett == 'rw'",
                  "--columns", "N=n_params,D=tokens,C=flops,loss=loss", "-o", tmp_path / "x.json")
    assert bad.returncode == 2 and "porian2024_isoflop_points.csv" in bad.stderr and "datasett" in bad.stderr
    none = run_cli("fit", POINTS, "--approach=2", "--isoflop-method=porian", "--where", "dataset == 'c4'",
                   "--columns", "N=n_params,D=tokens,C=flops,loss=loss", "-o", tmp_path / "x.json")
    assert none.returncode == 2 and "no rows satisfy" in none.stderr
    wrong = run_cli("fit", POINTS, "--isoflop-method=porian", "-o", tmp_path / "x.json")
    assert wrong.returncode == 2 and "--approach=2" in wrong.stderr
    assert not (tmp_path / "x.json").exists()
