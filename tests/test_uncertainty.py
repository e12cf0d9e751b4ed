"""Statuses, profile intervals, replicate-aware resampling and answers the data do not determine
(issue 27). The coverage of the intervals is measured by benchmarks/coverage.py, not here."""

import dataclasses
import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis
from analysis import plots
from analysis.answers import interval
from analysis.fitting import LawOutOfBounds
from analysis.forms.base import get_form
from analysis.run_error import run_error, run_error_stretch
from analysis.uncertainty import parameter_coordinates, resample_rows, runs_of

DEMO_TRUTH = {"E": 0.384, "A": 30.0, "B": 80.0, "alpha": 0.35, "beta": 0.3}


def grid(truth, sizes, budgets, seeds=1, noise=0.01, seed=0, run_noise=0.0):
    """A loss table with log-normal noise per row, plus `run_noise` shared by a (seed, size) run's rows."""
    rng = np.random.default_rng(seed)
    n, d = (a.ravel() for a in np.meshgrid(sizes, budgets, indexing="ij"))
    loss = get_form("chinchilla").predict(truth, N=n, D=d)
    size_index = np.searchsorted(np.sort(sizes), n)
    tables = []
    for s in range(seeds):
        shared = rng.normal(0, run_noise, len(sizes))[size_index] if run_noise else 0.0   # no draw: tables as before
        tables.append(pd.DataFrame({"params": n, "tokens": d, "seed": s,
                                    "eval_loss": loss * np.exp(shared + rng.normal(0, noise, n.size))}))
    return pd.concat(tables, ignore_index=True)


@pytest.fixture(scope="module")
def small_grid_law():
    """The demo's 3 x 3 grid (one decade in N and in D) with two seeds a cell."""
    table = grid(DEMO_TRUTH, np.geomspace(2e4, 2e5, 3), np.geomspace(2e6, 2e7, 3), seeds=2, seed=5)
    return analysis.fit(table, bootstrap=40, heldout_fraction=0)


def test_every_parameter_has_a_status_and_a_profile_interval_that_holds_its_estimate(small_grid_law, tmp_path):
    law = small_grid_law
    for name, p in law.parameters.items():
        assert p.status in ("identified", "at_bound", "not_identified"), name
        assert p.reason and p.method == "profile likelihood"
        assert p.ci[0] <= p.estimate <= p.ci[1] or p.status != "identified", (name, p)
    again = analysis.load_law(law.save(tmp_path / "law.json"))
    assert again.parameters == law.parameters
    assert json.loads((tmp_path / "law.json").read_text())["parameters"]["E"]["status"] == law.parameters["E"].status


def test_a_floor_the_data_cannot_tell_from_zero_is_at_bound_with_an_interval_reaching_zero():
    truth = {**DEMO_TRUTH, "E": 1e-9}   # a pure power law: E = 0 fits as well as the truth
    law = analysis.fit(grid(truth, np.geomspace(2e4, 2e5, 3), np.geomspace(2e6, 2e7, 4), seeds=1, seed=1),
                       bootstrap=0, heldout_fraction=0)
    e = law.parameters["E"]
    assert e.status == "at_bound", e
    assert e.ci[0] == 0.0 and e.ci[1] > 0.01 and "lower limit" in e.reason
    assert law.parameters["alpha"].status == "identified"


def test_replicates_are_recorded_and_one_seed_a_point_says_run_to_run_variance_is_missing(small_grid_law):
    rep = small_grid_law.diagnostics["replicates"]
    assert rep == {"points": 9, "replicates_per_point": [2, 2], "seeds": 2, "run_to_run_variance_in_intervals": True}
    assert small_grid_law.diagnostics["bootstrap"]["scheme"] == "wild"   # 18 points: few
    frame = pd.DataFrame({"N": [1.0, 1.0, 2.0, 2.0], "D": [1.0, 2.0, 1.0, 2.0], "seed": [0, 0, 0, 0]})
    runs, summary = runs_of(frame, ("N", "D"))
    assert not summary["run_to_run_variance_in_intervals"] and "one seed per grid point" in summary["note"]
    assert list(runs) == [0, 1, 2, 3]


def test_a_designed_grid_below_fifty_points_keeps_its_design_in_the_bootstrap():
    """A 5 x 5 grid resampled in pairs drops whole corners of its design: its prediction at 10x the
    compute covered 0.99 (benchmarks/coverage.py). One seed a point: the residual bootstrap (every
    row its own run); several: the wild bootstrap by run; 50 points or more: pairs."""
    table = grid(DEMO_TRUTH, np.geomspace(2e4, 2e6, 5), np.geomspace(2e6, 2e8, 5), seed=2)
    law = analysis.fit(table, bootstrap=8, heldout_fraction=0)
    assert law.diagnostics["bootstrap"]["scheme"] == "residual"
    bigger = grid(DEMO_TRUTH, np.geomspace(2e4, 2e6, 6), np.geomspace(2e6, 2e8, 10), seed=2)
    law = analysis.fit(bigger, bootstrap=8, heldout_fraction=0)
    assert law.diagnostics["bootstrap"]["scheme"] == "pairs"


def test_the_residual_bootstrap_moves_the_points_a_huber_fit_passes_through():
    """The Huber loss (delta 1e-3 on residuals of about 1e-2) fits within delta of 6-9 of a 5 x 5
    grid's points; a wild bootstrap scales each point's own residual, so those barely move and hold
    the refits near them (the loss at the grid's centre covered 0.83-0.87, benchmarks/coverage.py).
    Residuals drawn from the pool move them as much as the rest. Without replicates the answers'
    draws are not stretched (calibration 1): the draws and the likelihood region each cover."""
    table = grid(DEMO_TRUTH, np.geomspace(2e4, 2e6, 5), np.geomspace(2e6, 2e8, 5), seed=3)
    n, d = table["params"].to_numpy(), table["tokens"].to_numpy()
    spread = {}
    for scheme in ("wild", "residual"):
        law = analysis.fit(table, bootstrap=40, heldout_fraction=0, resampling=scheme)
        assert law.diagnostics["bootstrap"]["scheme"] == scheme and law.spread.calibration == 1.0
        residual = np.log(table["eval_loss"].to_numpy() / np.ravel(law.predict(N=n, D=d)))
        anchored = np.abs(residual) < 1e-3
        spread[scheme] = np.std(np.log(law.predict_draws(N=n, D=d)[:law.n_bootstrap]), axis=0)[anchored].mean()
    assert anchored.sum() >= 5
    assert spread["residual"] > 1.3 * spread["wild"]


def test_resampling_keeps_a_run_together():
    runs = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    wild = np.stack([resample_rows("wild", runs, 0, b) for b in range(50)])
    assert np.all(wild[:, 0] == wild[:, 2]) and np.all(wild[:, 3] == wild[:, 5])   # one multiplier a run
    donors = np.stack([resample_rows("residual", np.arange(9), 0, b) for b in range(50)])
    assert donors.min() >= 0 and donors.max() <= 8 and len(np.unique(donors)) == 9   # a row's residual, any row's
    pairs = np.stack([resample_rows("pairs", runs, 0, b) for b in range(50)])
    assert np.allclose(pairs.sum(axis=1), 9)
    per_run = np.stack([pairs[:, runs == r].sum(axis=1) for r in range(3)], axis=1)
    assert np.all(per_run % 3 == 0)   # a run is drawn whole (0, 1, 2 or 3 copies), rows within it


def test_a_run_error_shared_by_a_runs_rows_widens_the_size_direction_to_nominal_coverage():
    """The demo's 3 x 3 design with two seeds, linearised: a run (seed, size) adds one error to its
    three rows, which moves exactly the size direction. The independence F interval of a size
    coefficient covers about 80%; stretched by run_error_stretch, about 95%. The budget direction,
    which a run's error does not move, is left as it is; with one row a run nothing changes."""
    rng = np.random.default_rng(1)
    size, budget = (a.ravel() for a in np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij"))
    design = np.tile(np.stack([np.ones(9), size, size ** 2, budget, budget ** 2], axis=1), (2, 1))
    runs = np.repeat(np.arange(6), 3)                       # rows 3s..3s+2: one seed's run of one size
    cut = np.sqrt(stats.f.ppf(0.95, 1, 13) * np.diag(np.linalg.inv(design.T @ design)))
    plain, stretched, reps = np.zeros(5), np.zeros(5), 400
    for _ in range(reps):
        y = rng.normal(0, 0.01, 6)[runs] + rng.normal(0, 0.01, 18)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        residual = y - design @ coef
        half = cut * np.sqrt(residual @ residual / 13)
        plain += np.abs(coef) <= half
        stretched += np.abs(coef) <= half * run_error_stretch(design, residual, runs)
    assert np.all(plain[1:3] / reps < 0.87) and np.all(np.abs(stretched[1:3] / reps - 0.95) < 0.03)
    assert np.array_equal(stretched[3:], plain[3:])
    assert np.all(run_error_stretch(design, residual, np.arange(18)) == 1.0)


def test_answers_stretch_the_draws_by_how_far_short_of_the_profile_intervals_they_fall():
    """calibration: the median over identified coordinates and sides of profile reach over draw
    reach (never below 1); an answer's interval stretches the draws' percentiles by it about its
    estimate, then covers its range over the likelihood region's points."""
    from analysis.answers import Spread
    from analysis.uncertainty import calibration

    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4000, 3)) * [0.1, 0.2, 5.0]
    center = np.zeros(3)
    reach = 1.96 * np.array([0.1, 0.2])
    assert calibration(draws, center, {0: (-1.4 * reach[0], 1.4 * reach[0]),
                                       1: (-1.5 * reach[1], 1.3 * reach[1])}) == pytest.approx(1.4, abs=0.05)
    assert calibration(draws, center, {0: (-0.5 * reach[0], 0.5 * reach[0])}) == 1.0   # never narrows
    answer = np.concatenate([rng.normal(1.0, 0.1, 4000), [1.1, 0.5]])   # the draws, then two region points
    low, high = interval(answer, Spread(region=2, calibration=2.0), center=1.0)
    assert low == pytest.approx(0.5) and high == pytest.approx(1.0 + 2.0 * 1.96 * 0.1, rel=0.05)
    assert interval(answer[:4000], Spread(), 1.0) == pytest.approx((1.0 - 0.196, 1.0 + 0.196), rel=0.05)


def test_a_fit_outside_the_forms_bounds_is_refused():
    # Two model sizes cannot fix A, alpha and E at once; a steep law and a noisy draw put the best
    # fit's alpha past the form's bound of 3.
    truth = {"E": 0.1, "A": 3e4, "B": 80.0, "alpha": 2.9, "beta": 0.3}
    table = grid(truth, np.array([2e4, 4e4]), np.geomspace(2e6, 2e8, 5), noise=0.02, seed=3)
    with pytest.raises(LawOutOfBounds, match="outside the chinchilla form's bounds"):
        analysis.fit(table, bootstrap=0, heldout_fraction=0)


def test_an_answer_on_a_parameter_not_identified_or_far_outside_the_data_is_not_a_number(small_grid_law):
    law = small_grid_law
    inside = analysis.predict(law, {"N": [1e5], "D": [1e7]})
    assert inside.points[0].status.determined and inside.to_dict()["predictions"][0]["status"] == "determined"
    far = analysis.predict(law, {"N": [1e7], "D": [1e9]}).to_dict()["predictions"][0]
    assert far["status"] == "not_determined" and far["estimate"] is None
    assert any("outside the fitted range" in r for r in far["reasons"]) and far["would_determine"]
    flat = dataclasses.replace(law.parameters["beta"], status="not_identified", reason="flat")
    unknown = law.replace(parameters={**law.parameters, "beta": flat})
    result = analysis.predict(unknown, {"N": [1e5], "D": [1e7]})
    assert not result.points[0].status.determined
    table = result.table()
    assert "not determined by these data" in table and "data budgets spanning" in table


def joint_table(seed: int, n: int, problems: int, losses: tuple[float, float], floor: float, top: float):
    """Accuracy of `problems` problems per row from a joint law (L0 2, kappa 3, gamma_T 0.3, k = 1)
    at uniform losses and T in {0, 64, 512}."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"eval_loss": rng.uniform(*losses, n), "thinking_budget": rng.choice([0, 64, 512], n),
                          "samples": 1, "n_problems": problems})
    z = -3.0 * (frame["eval_loss"] - 2.0) + 0.3 * np.log1p(frame["thinking_budget"])
    frame["accuracy"] = rng.binomial(problems, floor + (top - floor) / (1 + np.exp(-z))) / problems
    return frame


def test_a_sample_count_that_never_varies_gives_no_parameter():
    frame = joint_table(0, 40, 64, (1.0, 3.0), 0.05, 0.85)
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=0, heldout_fraction=0,
                       columns={"L": "eval_loss"})
    assert "gamma_k" not in law.parameters and law.settings.constant_samples == 1.0
    assert law.settings.objective == "binomial"
    with pytest.raises(ValueError, match="not determined by these data"):
        law.predict(L=2.0, T=64.0, k=4.0)


def test_scaling_recommend_gives_the_status_law_recommend_gives(small_grid_law, run_cli, tmp_path):
    """The CLI answers through the same call as the Python API: an answer on a parameter the data
    do not determine is not printed as a number by either."""
    flat = dataclasses.replace(small_grid_law.parameters["alpha"], status="not_identified", reason="flat")
    path = small_grid_law.replace(parameters={**small_grid_law.parameters, "alpha": flat}).save(tmp_path / "law.json")
    expected = analysis.load_law(path).recommend(train_flops=1e13).to_dict()
    assert expected["status"]["status"] == "not_determined" and expected["N"]["estimate"] is None
    proc = run_cli("recommend", path, "--train_flops=1e13", "--json", check=True)
    assert json.loads(proc.stdout) == expected
    table = run_cli("recommend", path, "--train_flops=1e13", check=True).stdout
    assert "not determined by these data" in table and "it depends on alpha" in table


DEMO_LAW = Path(__file__).parent / "data" / "laws_demo" / "chinchilla_quick_demo.json"


def test_no_numpy_warning_reaches_the_user_from_draws_outside_the_forms_domain():
    """The quick demo's law (tests/data/laws_demo): draws with alpha < 0 and A near 1e93. Its
    answers, predictions and figures raise no RuntimeWarning; an answer the data do not determine
    prints no number derived from it (inputs such as the budget stay)."""
    law = analysis.load_law(DEMO_LAW)
    assert np.min(law.bootstrap_samples["alpha"]) < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        far = law.recommend(train_flops=1e12)
        near = law.recommend(train_flops=3e9)
        for query in (dict(target_loss=2.2), dict(target_loss=2.2, inference_queries=1e6, tokens_per_query=100),
                      dict(train_flops=1e10, inference_queries=1e6, tokens_per_query=100)):
            law.recommend(**query).table()
        analysis.predict(law, {"N": [1e3, 1e5, 1e9], "D": [1e3, 1e5, 1e12]}).table()
        plots.frontier_figure(law)
    assert not far.status.determined
    assert "training budget C = 6ND = 1.000e+12 FLOPs" in far.table() and "tokens per parameter" not in far.table()
    assert near.status.determined and "tokens per parameter" in near.table()
    # a multiplier whose draw sits at 0 (the vanishing term log 0) reads without a warning either
    augmentation = get_form("augmentation")
    options = augmentation.options_from({"arms": ["vanilla", "thinking"], "reference_arm": "vanilla"})
    with warnings.catch_warnings(), jax.enable_x64(True):   # as CurveForm._evaluate calls it
        warnings.simplefilter("error", RuntimeWarning)
        theta = augmentation.from_parameters({**DEMO_TRUTH, "m_thinking": 0.0}, options)
        assert theta[-1] == -np.inf


def test_a_parameter_keeps_every_coordinate_it_depends_on_when_one_has_collapsed():
    """The joint law's range a = (1 - b) expit(x0) with the floor b = expit(x1) collapsed to
    expit(-40): a still depends on x1, so its status is the worse of the two coordinates' and it
    gets no one-coordinate profile interval (which read a as expit(x0) and covered 0.80)."""
    form = get_form("joint_inference")
    options = form.options_from({})
    names = form.parameter_names_for(options)
    theta = np.array([1.5, -40.0, 1.0, 2.0, 0.3, 0.2])[:len(names)]
    depends, identity = parameter_coordinates(names, lambda t: form.to_parameters(t, options), theta)
    assert depends["a"] == [0, 1] and depends["b"] == [1] and identity.get(0) is None


def test_a_joint_law_answer_is_not_determined_when_its_step1_loss_law_leaves_a_parameter_undetermined():
    """The joint law predicts accuracy from its loss law's losses, so a loss-law parameter the data
    do not determine undetermines its answers too, with the reason named."""
    import dataclasses

    from analysis.determination import determination

    law = analysis.load_law(Path(__file__).parent / "data" / "laws_demo" / "joint_inference_three_seeds.json")
    own = {k: dataclasses.replace(p, status="identified") for k, p in law.parameters.items()}
    law = dataclasses.replace(law, parameters=own)
    assert determination(law).determined
    loss_law = law.settings.loss_law
    undetermined = {**loss_law.parameters, "B": dataclasses.replace(loss_law.parameters["B"], status="not_identified",
                                                                     reason="flat upwards")}
    settings = dataclasses.replace(law.settings, loss_law=dataclasses.replace(loss_law, parameters=undetermined))
    status = determination(dataclasses.replace(law, settings=settings))
    assert not status.determined and "step 1's loss law, whose B" in status.text()


def test_a_closed_profile_interval_spanning_many_orders_of_magnitude_is_not_identified():
    """The three-seed demo's multiplier on eval_loss_hard: 3.9e-12 [2.5e-19, 2.7e-9], closed on both
    sides, yet no reader can act on it; Epoch's A (318 to 688) stays identified."""
    from analysis.uncertainty import Identification, within_decades

    closed = "the profile likelihood is closed on both sides"
    wide = within_decades("m_thinking_inline", Identification("identified", closed, (2.45e-19, 2.71e-9)))
    assert wide.status == "not_identified" and "spans 10 orders of magnitude" in wide.reason
    assert wide.profile_ci == (2.45e-19, 2.71e-9)
    assert within_decades("A", Identification("identified", closed, (318.0, 688.0))).status == "identified"
    at_zero = Identification("at_bound", "consistent with 0", (0.0, 3.1e-4))
    assert within_decades("m", at_zero) is at_zero
    # closed, but its lower end below 1e-100 (the demo's inline multiplier on eval_loss: 4.6e-11 [0, 6.2e-6])
    underflow = within_decades("m_thinking_inline", Identification("identified", closed, (0.0, 6.17e-6)))
    assert underflow.status == "not_identified" and "down to 0" in underflow.reason
    signed = Identification("identified", closed, (-0.057, 0.084))   # beta may be negative: no decades
    assert within_decades("beta", signed) is signed
    # a parameter of several coordinates (identify applies the rule to its profile box too)
    box = within_decades("a", Identification("identified", closed, (3e-9, 0.61), "profile box"))
    assert box.status == "not_identified" and box.method == "profile box"


def test_a_parameter_of_several_identified_coordinates_gets_the_range_over_their_intervals_box():
    """The joint law's range a = (1 - b) expit(x0): with its floor b identified, a's interval is its
    range over the corners of the two coordinates' profile intervals ('profile box'), not the
    bootstrap's percentiles (which covered 0 of 3 such fits in benchmarks/coverage.py)."""
    frame = joint_table(1, 120, 512, (0.5, 3.5), 0.2, 0.8)
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=0, heldout_fraction=0,
                       columns={"L": "eval_loss"})
    a, b = law.parameters["a"], law.parameters["b"]
    assert b.status == "identified" and a.status == "identified" and a.method == "profile box"
    assert a.ci[0] < a.estimate < a.ci[1] and a.ci[0] < 0.6 < a.ci[1]


def test_an_interval_widened_for_run_error_to_its_bound_reads_at_bound():
    """A run-level stretch that carries alpha's interval to its bound 0 makes it at_bound (the data
    are consistent with the bound), not an interval 'down to 0' read as not_identified."""
    from analysis.uncertainty import _read

    values = np.linspace(-0.2, 0.2, 9) + 0.3
    stat = ((values - 0.3) / 0.1) ** 2
    thetas = values[:, None]
    names, depends = ("alpha",), {"alpha": [0]}
    ident, _ = _read(0, values, stat, thetas, 0.3, 3.84, (0.0, 3.0), depends, names, lambda t: {"alpha": t[..., 0]},
                     np.array([0.3]), stretch=2.0)
    assert ident.status == "at_bound" and ident.profile_ci[0] == 0.0 and "reaches its bound 0" in ident.reason
    narrow, _ = _read(0, values, stat, thetas, 0.3, 3.84, (0.0, 3.0), depends, names, lambda t: {"alpha": t[..., 0]},
                      np.array([0.3]), stretch=1.2)
    assert narrow.status == "identified" and narrow.profile_ci[0] > 0


def test_profile_chains_stop_at_their_first_crossing_and_no_interval_moves(monkeypatch):
    """A chain ends at its first rung over the cut (the rungs past it were half the profile's work
    and no interval reads them): statuses and intervals are those of the full ladders, on the demo
    grid with E at a bound and on a Chinchilla-like grid where every parameter is identified."""
    import analysis.uncertainty as uncertainty

    tables = [grid(DEMO_TRUTH, np.geomspace(2e4, 2e5, 3), np.geomspace(2e6, 2e7, 3), seeds=2, seed=5),
              grid(DEMO_TRUTH, np.geomspace(2e4, 2e6, 5), np.geomspace(2e6, 2e8, 5), seeds=1, seed=2)]
    stopped = [analysis.fit(t, bootstrap=0, heldout_fraction=0).parameters for t in tables]
    calls = []
    full_ladders = uncertainty._profile_runs

    def without_stopping(*args, stop=None, **kwargs):
        calls.append(stop)
        return full_ladders(*args, **kwargs)

    monkeypatch.setattr(uncertainty, "_profile_runs", without_stopping)
    full = [analysis.fit(t, bootstrap=0, heldout_fraction=0).parameters for t in tables]
    assert any(stop is not None for stop in calls)
    for short, long in zip(stopped, full):
        for name, p in long.items():
            assert short[name].status == p.status, (name, short[name], p)
            assert short[name].ci == pytest.approx(p.ci, rel=1e-3, abs=1e-9), (name, short[name], p)


def test_a_profile_can_bring_back_a_coordinate_that_ran_off_to_its_bound():
    """A joint table whose fit puts the floor b at its bound (logit -25, where the deviance no longer
    moves with it) although the truth has b = 0.25. Profiles started only at the estimate kept b at
    0 and excluded the truth of kappa, L0 and gamma_T (kappa [1.40, 2.84] against 3), though with
    kappa held at 3 a refit from b's own interval edge reads 1.2 against the cut of 4.3; they now
    start from every coordinate's edges too, and every identified interval holds its truth."""
    table = pd.read_csv(Path(__file__).parent / "data" / "joint_floor_at_bound.csv", comment="#")
    law = analysis.fit(table, form="joint_inference", target="accuracy", bootstrap=0, heldout_fraction=0,
                       columns={"L": "eval_loss"})
    assert law.parameters["b"].status == "at_bound" and law.parameters["b"].estimate < 1e-6
    truth = {"kappa": 3.0, "L0": 1.8, "gamma_T": 0.35}
    for name, value in truth.items():
        p = law.parameters[name]
        assert p.status == "identified" and p.ci[0] <= value <= p.ci[1], (name, p)


def test_an_answers_interval_reaches_the_likelihood_region_and_stays_as_narrow_as_the_data_inside(small_grid_law,
                                                                                                   tmp_path):
    """The demo grid: E's profile reaches 0 while the bootstrap's draws keep E near its estimate, so
    at 10x the compute the likelihood region's refits carry the answer's interval past the draws'
    percentiles; at the grid's centre, which the data pin down to about 1%, they leave it narrow
    (stretching each coordinate's draws to its profile interval made it 1.17 wide there)."""
    law = small_grid_law
    again = analysis.load_law(law.save(tmp_path / "law.json"))
    assert law.n_region > 0 and again.n_region == law.n_region
    assert all(np.array_equal(again.region_samples[k], v) for k, v in law.region_samples.items())
    form = get_form("chinchilla")
    centre = {"N": np.sqrt(2e4 * 2e5), "D": np.sqrt(2e6 * 2e7)}
    low, high = interval(law.predict_draws(**centre).ravel(), law.spread, float(law.predict(**centre)))
    truth = float(form.predict(DEMO_TRUTH, **centre))
    assert low <= truth <= high and high - low < 0.03 * truth, (low, high, truth)
    far = law.predict_draws(N=2e5 * 10 ** 0.5, D=2e7 * 10 ** 0.5).ravel()
    boot, region = far[:law.n_bootstrap], far[law.n_bootstrap:]
    low, high = interval(far, law.spread, float(law.predict(N=2e5 * 10 ** 0.5, D=2e7 * 10 ** 0.5)))
    assert low <= region.min() and region.max() <= high
    assert high - low > np.subtract(*np.percentile(boot, [97.5, 2.5]))


def test_an_at_bound_parameters_closed_end_takes_in_the_error_a_runs_rows_share(monkeypatch):
    """The demo's grid, two seeds a cell, each (seed, size) run adding one error to its rows: E's
    profile stays under the cut down to 0, and its closed end is read where the statistic reaches
    the cut times the run-level stretch squared, farther than the independence profile's end
    (unstretched, E's intervals reaching 0 covered 0.87 of their truths, 0.98 now: benchmarks/coverage.py)."""
    import analysis.uncertainty as uncertainty

    table = grid(DEMO_TRUTH, np.geomspace(2e4, 2e5, 3), np.geomspace(2e6, 2e7, 3), seeds=2, seed=1, run_noise=0.01)
    stretched = analysis.fit(table, bootstrap=0, heldout_fraction=0).parameters["E"]
    monkeypatch.setattr(uncertainty, "coordinate_stretch", lambda error, n_coords: np.ones(n_coords))
    plain = analysis.fit(table, bootstrap=0, heldout_fraction=0).parameters["E"]
    assert stretched.status == plain.status == "at_bound"
    assert stretched.ci[0] == plain.ci[0] == 0.0
    assert stretched.ci[1] > 1.2 * plain.ci[1]
    assert "for the error a run's rows share" in stretched.reason and "run's rows" not in plain.reason


def test_a_crossing_over_a_wide_gap_of_the_ladder_is_refined_until_its_end_is_read_close():
    """A joint table whose floor collapses to logit -62: the ladder about that estimate is coarse
    where b's profile crosses the cut (logit -4.9 reads 0.05, logit -0.17 reads 22.8, after one
    refinement), and a straight line between them put b's interval end at 0.018 against a truth of
    0.25 (this machine, 2026-12-07). Refined again where the first rung over the cut reads more than
    twice it, the end lies where the profile crosses: 0.251."""
    table = pd.read_csv(Path(__file__).parent / "data" / "joint_floor_coarse_crossing.csv", comment="#")
    b = analysis.fit(table, form="joint_inference", target="accuracy", bootstrap=0, heldout_fraction=0,
                     columns={"L": "eval_loss"}).parameters["b"]
    assert b.status == "at_bound" and b.estimate < 1e-6 and b.ci[0] == 0.0
    assert b.ci[1] > 0.2
