"""`scaling predict` / analysis.predict on laws fitted to published data: Epoch's Chinchilla points
(tests/data/refdata/chinchilla_epoch_svg.csv) and Porian et al.'s IsoFLOP points."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis

REF = Path(__file__).parent / "data" / "refdata"
EPOCH_COLUMNS = {"N": "Model Size", "C": "Training FLOP", "loss": "loss"}


@pytest.fixture(scope="module")
def chinchilla_law(tmp_path_factory):
    points = pd.read_csv(REF / "chinchilla_epoch_svg.csv").sort_values("loss").iloc[:-5]
    law = analysis.fit(points, columns=EPOCH_COLUMNS, bootstrap=60, heldout_fraction=0)
    return law.save(tmp_path_factory.mktemp("law") / "chinchilla.json")


@pytest.fixture(scope="module")
def porian_law(tmp_path_factory):
    frame = pd.read_csv(REF / "porian2024_isoflop_rw_tuned.csv")
    law = analysis.fit(frame, approach=2, isoflop_method="porian", noise_draws=200,
                       columns={"N": "n_params", "D": "tokens", "C": "flops", "loss": "loss"})
    return law.save(tmp_path_factory.mktemp("law") / "porian.json")


def test_predictions_are_the_law_with_intervals_from_its_calibrated_draws_and_likelihood_region(chinchilla_law):
    """The interval: the bootstrap draws' percentiles, stretched about the estimate by the law's
    calibration, widened to the range over the points of the 95% likelihood region that follow
    them in predict_draws."""
    law = analysis.load_law(chinchilla_law)
    n, d = np.array([1e8, 1e9]), np.array([2e9, 2e10])
    result = analysis.predict(law, {"N": n, "D": d})
    p = law.estimates()
    closed = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    assert len(result.points) == 2 and result.n_draws == 60 and result.spread == law.spread and law.n_region > 0
    for point, expected, draws in zip(result.points, closed, law.predict_draws(N=n, D=d).T):
        q = point.quantities["loss"]
        assert q.estimate == pytest.approx(expected, rel=1e-9)
        boot, region = draws[:60], draws[60:]
        assert len(region) == law.n_region
        c = law.spread.calibration
        assert c >= 1.0
        assert (q.low, q.high) == pytest.approx((min(expected - c * (expected - np.percentile(boot, 2.5)), region.min()),
                                                 max(expected + c * (np.percentile(boot, 97.5) - expected), region.max())))
        assert q.low < q.estimate < q.high and point.warnings == ()
    assert result.points[1].quantities["loss"].estimate < result.points[0].quantities["loss"].estimate


def test_extrapolation_is_warned_as_recommend_does(chinchilla_law):
    law = analysis.load_law(chinchilla_law)
    chinchilla_70b = analysis.predict(law, {"N": 7e10, "D": 1.4e12}).points[0]
    assert any(w.startswith("N = 7.000e+10 is outside the fitted range") for w in chinchilla_70b.warnings)
    quiet = analysis.predict(law, {"N": 7e10, "D": 1.4e12}, tolerance=100).points[0]
    assert quiet.warnings == ()


def test_compute_optimal_law_predicts_n_and_d_at_c(porian_law):
    law = analysis.load_law(porian_law)
    point = analysis.predict(law, {"C": 1e19}).points[0]
    assert set(point.quantities) == {"N_opt", "D_opt"}
    assert point.quantities["N_opt"].estimate == pytest.approx(float(law.predict(C=1e19)))
    assert point.to_dict()["N_opt"]["low"] < point.quantities["N_opt"].estimate < point.to_dict()["N_opt"]["high"]


def test_bad_inputs_name_the_problem(chinchilla_law):
    law = analysis.load_law(chinchilla_law)
    with pytest.raises(analysis.TableError, match=r"needs input\(s\) \['D'\]"):
        analysis.predict(law, {"N": 1e9})
    with pytest.raises(analysis.TableError, match="different numbers of values"):
        analysis.predict(law, {"N": [1e8, 1e9, 1e10], "D": [1e9, 1e10]})
    with pytest.raises(analysis.TableError, match="input 'N'"):
        analysis.predict(law, {"N": [-1.0], "D": [1e10]})


@pytest.mark.slow
def test_cli_predict_table_json_points_and_errors(run_cli, chinchilla_law, porian_law, tmp_path):
    proc = run_cli("predict", chinchilla_law, "--N=1e8,1e9", "--D=2e9,2e10", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    python = analysis.predict(analysis.load_law(chinchilla_law), {"N": [1e8, 1e9], "D": [2e9, 2e10]}).to_dict()
    assert out == python and list(out) == ["predictions"]
    assert set(out["predictions"][0]) == {"estimate", "low", "high", "quantity", "N", "D", "status"}
    points = tmp_path / "points.csv"
    pd.DataFrame({"N": [7e10], "D": [1.4e12]}).to_csv(points, index=False)
    table = run_cli("predict", chinchilla_law, f"--points={points}")
    assert table.returncode == 0 and "95% low" in table.stdout
    assert "scaling predict: warning: N = 7.000e+10 is outside the fitted range" in table.stderr
    co = json.loads(run_cli("predict", porian_law, "--C=1e18,1e19", "--json", check=True).stdout)
    assert set(co["predictions"][1]) == {"N_opt", "D_opt", "C", "status"} and co["predictions"][1]["C"] == 1e19
    pd.DataFrame({"N": [1e9]}).to_csv(points, index=False)
    missing = run_cli("predict", chinchilla_law, f"--points={points}")
    assert missing.returncode == 2 and str(points) in missing.stderr and "['D']" in missing.stderr
    none = run_cli("predict", chinchilla_law)
    assert none.returncode == 2 and "--N, --D" in none.stderr
    bad_law = run_cli("predict", tmp_path / "nope.json", "--N=1e9", "--D=1e10")
    assert bad_law.returncode == 2 and "no such law file" in bad_law.stderr


def test_a_parameter_the_region_lacks_holds_its_estimate_at_the_regions_points(chinchilla_law):
    """A multiplier refitted in raw tokens has bootstrap draws but no region points: predictions
    and questions read it at its estimate there (Law.region_parameters, for both)."""
    from analysis.questions.base import draw_parameters

    law = analysis.load_law(chinchilla_law)
    lacking = dataclasses.replace(law, region_samples={k: v for k, v in law.region_samples.items() if k != "E"})
    region = lacking.region_parameters()
    assert len(region["E"]) == law.n_region and np.all(region["E"] == law.parameters["E"].estimate)
    assert np.array_equal(region["alpha"], law.region_samples["alpha"])
    rows = lacking.predict_draws(N=np.array([1e8]), D=np.array([2e9]))[law.n_bootstrap:, 0]
    expected = law.parameters["E"].estimate + region["A"] / 1e8 ** region["alpha"] + region["B"] / 2e9 ** region["beta"]
    assert rows == pytest.approx(expected, rel=1e-9)
    assert np.array_equal(draw_parameters(lacking)["E"][law.n_bootstrap:], region["E"])
