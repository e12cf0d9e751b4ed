"""Figures: built from generated tables (and fitted laws), saved as PNG and SVG."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import chinchilla, plots
from helpers import make_law

LAW = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def isoflop_table(seed=0, budgets=(1e18, 1e19, 1e20), per_budget=7, noise=0.005):
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = chinchilla.chinchilla_optimum(LAW, c)
        for n in n_opt * np.geomspace(0.2, 5, per_budget) * rng.uniform(0.97, 1.03, per_budget):
            d = c / (6 * n)
            loss = chinchilla.chinchilla_loss(LAW, n, d) * np.exp(rng.normal(0, noise))
            rows.append({"N": n, "D": d, "C": c * rng.uniform(0.98, 1.02), "loss": loss})
    return pd.DataFrame(rows)


def training_table():
    rows = []
    for arm, worth, thinking in (("vanilla", 1.0, 0.0), ("thinking", 2.0, 0.4)):
        for n in (1e6, 4e6):
            for tokens in (1e7, 3e7, 1e8):
                loss = chinchilla.chinchilla_loss(LAW, n, worth * tokens)
                rows.append({"arm": arm, "params": n, "tokens": tokens, "tokens_raw": tokens * (1 - thinking),
                             "is_final": True, "eval_loss": loss, "eval_loss_hard": loss + 0.5})
    return pd.DataFrame(rows)


def inference_table():
    rows = []
    for arm, bonus in (("vanilla", 0.0), ("thinking", 0.1)):
        for n in (1e6, 4e6):
            for t in (0, 32, 128, 512):
                for k in (1, 2, 4, 8):
                    p = min(0.95, 0.1 + bonus + 0.05 * np.log2(1 + t) / 2 + 0.02 * np.log2(n / 1e6))
                    rows.append({"arm": arm, "params": n, "thinking_budget": t, "samples": k,
                                 "accuracy": 1 - (1 - p) ** k})
    return pd.DataFrame(rows)


def test_isoflop_curves_are_the_approach_2_budgets():
    curves = plots.isoflop_curves(isoflop_table())
    assert [round(np.log10(c)) for c, _ in curves] == [18, 19, 20]
    assert [len(g) for _, g in curves] == [7, 7, 7]
    with pytest.raises(ValueError, match="3 or more model sizes"):
        plots.isoflop_figure(isoflop_table(per_budget=2))


def test_law_figures_draw_the_law(tmp_path):
    law = make_law(LAW)
    table = isoflop_table(noise=0.0)
    fig = plots.isoflop_figure(table, law)
    solid = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"]
    assert len(solid) == 3
    for line, (c, _) in zip(solid, plots.isoflop_curves(table)):  # the law along each budget
        n = line.get_xdata()
        assert line.get_ydata() == pytest.approx(chinchilla.chinchilla_loss(LAW, n, c / (6 * n)), rel=1e-9)
    residuals = plots.residuals_figure(table, {"true law": law})
    for ax in residuals.axes:
        offsets = ax.collections[0].get_offsets()
        assert np.max(np.abs(offsets[:, 1])) < 1e-9  # noise-free data: zero residuals
    frontier = plots.frontier_figure(law, table)
    (n_line, grey), band = frontier.axes[0].get_lines()[:2], frontier.axes[0].collections[0]
    c = n_line.get_xdata()
    optimum = chinchilla.chinchilla_optimum(LAW, c)[0]
    drawn = np.isfinite(n_line.get_ydata())
    assert drawn.any() and not drawn.all()  # past 10x the fitted C the answer is not determined: grey only
    assert n_line.get_ydata()[drawn] == pytest.approx(optimum[drawn], rel=1e-9)
    assert grey.get_ydata() == pytest.approx(optimum, rel=1e-9) and grey.get_linestyle() == ":"
    low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert low < n_line.get_ydata()[drawn].min() and high > n_line.get_ydata()[drawn].max()
    for name, f in {"isoflop_law": fig, "residuals": residuals, "frontier": frontier}.items():
        assert plots.save_figure(f, tmp_path / name)[0].stat().st_size > 10_000


def test_each_figure_has_units_logs_and_legends(tmp_path):
    figures = {
        "isoflop": plots.isoflop_figure(isoflop_table()),
        "data_efficiency": plots.data_efficiency_figure(
            training_table(), {"tokens": {"thinking": (2.0, (1.8, 2.2))}, "tokens_raw": {"thinking": (3.33, None)}}),
        "test_time": plots.test_time_figure(inference_table()),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert "(" in ax.get_xlabel() and "(" in ax.get_ylabel(), (name, ax.get_xlabel(), ax.get_ylabel())
            assert ax.get_xscale() == "log", name
        assert fig.axes[-1].get_legend() is not None, name  # panels of one figure share the last one's legend
        written = plots.save_figure(fig, tmp_path / name)
        assert [p.suffix for p in written] == [".png", ".svg"]
        assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in written[1].read_bytes()[:2000]
    titles = [ax.get_title() for ax in figures["data_efficiency"].axes]
    assert "thinking worth 2x vanilla (fitted) [1.8, 2.2]" in titles[0] and "thinking worth 3.33x vanilla" in titles[1]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_data_efficiency_shift_puts_arm_on_the_vanilla_curve():
    # The fixture's thinking data is worth exactly 2x: shifted by m = 2 it lands on vanilla's losses.
    fig = plots.data_efficiency_figure(training_table(), {"tokens": {"thinking": (2.0, None)}})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    shifted = lines["thinking at m x D"]
    vanilla_curve = chinchilla.chinchilla_loss(LAW, 1e6, shifted.get_xdata())  # the smallest size's
    assert shifted.get_ydata() == pytest.approx(vanilla_curve, rel=1e-12)


def test_data_efficiency_draws_no_point_at_a_multiplier_coordinate_outside_the_data():
    table = training_table()
    fig = plots.data_efficiency_figure(table, {"tokens": {"thinking": (1e-3, (1e-9, 1e-2))}})
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert "thinking at m x D" not in labels
    assert "thinking worth 0.001x vanilla (fitted) [1e-09, 0.01]; m x D outside the data, not drawn" in fig.axes[0].get_title()
    # m = 2: the points whose 2 x D stays within the measured tokens are drawn, the largest budget's are not
    fig = plots.data_efficiency_figure(table, {"tokens": {"thinking": (2.0, None)}})
    drawn = np.concatenate([line.get_xdata() for line in fig.axes[0].get_lines() if line.get_mfc() == "none"])
    assert drawn.max() <= table["tokens"].max() and sorted(set(drawn)) == [2e7, 6e7]


def test_test_time_curves_rise_with_samples():
    fig = plots.test_time_figure(inference_table())
    for line in fig.axes[1].get_lines():
        assert np.all(np.diff(line.get_ydata()) > 0)


def test_the_test_time_figure_shows_one_aggregator_per_panel():
    """At k = 1 an inference table holds greedy, majority@1 and pass@1 rows: the thinking panel
    draws greedy alone (not their mean), the samples panel majority alone, and says so."""
    rows = []
    for t, greedy in ((0, 0.0), (8, 0.25)):
        rows += [{"arm": "vanilla", "params": 1e6, "thinking_budget": t, "samples": 1, "aggregator": "greedy",
                  "accuracy": greedy},
                 {"arm": "vanilla", "params": 1e6, "thinking_budget": t, "samples": 1, "aggregator": "majority",
                  "accuracy": greedy + 0.1},
                 {"arm": "vanilla", "params": 1e6, "thinking_budget": t, "samples": 1, "aggregator": "pass@k",
                  "accuracy": greedy + 0.15},
                 {"arm": "vanilla", "params": 1e6, "thinking_budget": t, "samples": 2, "aggregator": "majority",
                  "accuracy": greedy + 0.2},
                 {"arm": "vanilla", "params": 1e6, "thinking_budget": t, "samples": 2, "aggregator": "pass@k",
                  "accuracy": greedy + 0.4}]
    table = pd.DataFrame(rows)
    assert plots.test_time_aggregators(table) == ("greedy", "majority")
    fig = plots.test_time_figure(table)
    (thinking,) = fig.axes[0].get_lines()
    assert list(thinking.get_ydata()) == [0.0, 0.25]
    (samples,) = fig.axes[1].get_lines()
    assert list(samples.get_xdata()) == [1, 2] and list(samples.get_ydata()) == pytest.approx([0.35, 0.45])
    assert "greedy at k = 1" in fig.axes[0].get_title() and "majority" in fig.axes[1].get_title()


def test_isoflop_budgets_straddling_a_rounding_boundary_stay_one_curve():
    """Runs of one budget whose C differ by a few percent across log10 C = x.x5 are one curve
    (one-decimal rounding split them into small groups, one drawing a spurious dip)."""
    n = np.geomspace(1e7, 1e9, 8)
    c = 10 ** (18.05 + np.array([-0.01, 0.01] * 4))  # 1.10e18 and 1.15e18: rounding gives 18.0 and 18.1
    table = pd.DataFrame({"N": n, "C": c, "D": c / (6 * n), "loss": 2 + (np.log(n) - np.log(1e8)) ** 2 / 50})
    curves = plots.isoflop_curves(table)
    assert len(curves) == 1 and len(curves[0][1]) == 8
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = plots.isoflop_figure(table)
    FigureCanvasAgg(fig).draw()
    (ax,) = fig.axes
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # beside the data, not on it


# --- what the data do not determine is not drawn as an answer (issue 27) ---------------------------

JOINT = {"a": 0.9, "b": 0.05, "kappa": 3.0, "L0": 2.5, "gamma_T": 0.35, "gamma_k": 0.3}
JOINT_RANGES = {"N": [1e8, 1e10], "D": [1e9, 2e11], "C": [6e17, 1.2e22], "T": [0, 4096], "k": [1, 4]}


def not_identified(law, name):
    """The law with `name` marked as the data not determining it (as a fit's profile would)."""
    p = law.parameters[name]
    return law.replace(parameters={**law.parameters, name: dataclasses.replace(
        p, status="not_identified", reason=f"the profile likelihood of {name} is flat upwards")})


def joint_law(difficulties=False):
    loss_law = make_law(n_draws=20)
    params = {**JOINT, **({"delta_d": 2.5, "eta_d": 0.3, "rho_T": 0.6} if difficulties else {})}
    settings = {"loss_law": loss_law.to_dict()}
    if difficulties:
        settings.update(difficulties=[1, 2, 3], difficulty_shares=[0.5, 0.3, 0.2])
    return make_law(params, form="joint_inference", target="accuracy", n_draws=20, spread=0.01, settings=settings,
                    ranges={**JOINT_RANGES, **({"difficulty": [1, 3]} if difficulties else {})})


def law_lines(ax):
    """The lines a figure draws as the law's answer (the grey, dotted undetermined ones left out)."""
    return [line for line in ax.get_lines() if line.get_color() != "0.6"]


def test_the_iso_compute_figure_greys_what_the_data_do_not_determine():
    law = joint_law()
    fig = plots.iso_compute_figure(law, 1e21, 1e6, 100, sizes=[1e9, 2e11])   # 2e11: 20x the largest N
    (ax,) = fig.axes
    lines = {line.get_label(): line.get_ydata() for line in law_lines(ax)}
    assert np.isfinite(lines["N = 1e+09"]).any() and not np.isfinite(lines["N = 2e+11"]).any()
    assert any(line.get_color() == "0.6" and line.get_linestyle() == ":" for line in ax.get_lines())
    assert "not determined by these data" in ax.get_title()
    fig = plots.iso_compute_figure(not_identified(law, "gamma_T"), 1e21, 1e6, 100, sizes=[1e9])
    assert not any(np.isfinite(line.get_ydata()).any() for line in law_lines(fig.axes[0]))
    assert "not determined by these data: gamma_T not identified" in fig.axes[0].get_title()


def test_the_adaptive_thinking_figure_greys_a_law_the_data_do_not_determine():
    law = joint_law(difficulties=True)
    (ax,) = plots.adaptive_thinking_figure(law, {1: 0.5, 2: 0.3, 3: 0.2}).axes
    assert all(np.isfinite(line.get_ydata()).all() for line in law_lines(ax))
    assert "not determined" not in ax.get_title()
    (ax,) = plots.adaptive_thinking_figure(not_identified(law, "eta_d"), {1: 0.5, 2: 0.3, 3: 0.2}).axes
    assert law_lines(ax) and not any(np.isfinite(line.get_ydata()).any() for line in law_lines(ax))
    assert "eta_d not identified" in ax.get_title()
    (ax,) = plots.adaptive_thinking_figure(law, {1: 0.5, 2: 0.3, 3: 0.2}, N=1e12, D=1e13).axes   # far outside
    assert not any(np.isfinite(line.get_ydata()).any() for line in law_lines(ax))
    assert "past 10x the fitted range" in ax.get_title()


def test_the_frontier_and_isoflop_figures_grey_a_law_with_a_parameter_not_identified():
    law = not_identified(make_law(LAW), "alpha")
    frontier = plots.frontier_figure(law)
    assert not np.isfinite(frontier.axes[0].get_lines()[0].get_ydata()).any()
    assert "alpha not identified" in frontier.get_suptitle()
    (ax,) = plots.isoflop_figure(isoflop_table(), law).axes
    solid = [line for line in law_lines(ax) if line.get_linestyle() == "-"]
    assert len(solid) == 3 and not any(np.isfinite(line.get_ydata()).any() for line in solid)
    assert "alpha not identified" in ax.get_title()
