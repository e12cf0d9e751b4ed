"""Figures of the data and the fitted laws: pure functions (tables and laws in, Figure out) + a saver.

Figures are built on `matplotlib.figure.Figure` directly (Agg canvas, no pyplot state), so they
are safe in tests, servers and threads. Tables use canonical column names for the law's inputs
(N parameters, D tokens, C FLOPs, loss) and the result-table schema (docs/schema.md) elsewhere.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import isoflop, recommend
from analysis.answers import band
from analysis.atomic import write_bytes_atomic
from analysis.determination import EXTRAPOLATION_LIMIT, NOT_DETERMINED, determination

FORMATS = ("png", "svg")


def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.4):
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def determined_at(law, **values) -> np.ndarray:
    """Per point, whether the data determine the law's answer there (analysis.determination): at
    none where a parameter is not identified, and not at a point whose N, D, C or T lies past
    EXTRAPOLATION_LIMIT times the fitted range. `values`: arrays (or scalars) that broadcast."""
    arrays = np.broadcast_arrays(*(np.asarray(v, float) for v in values.values()))
    flat = [a.ravel() for a in arrays]
    size = flat[0].size if flat else 1
    return np.array([determination(law, **{k: float(a[i]) for k, a in zip(values, flat)}).determined
                     for i in range(size)]).reshape(arrays[0].shape if arrays else ())


def _plot_determined(ax, x, y, determined, label=None, **style):
    """A law's curve in its style where the data determine it, grey and dotted where they do not
    (the whole curve beneath, so the two parts join)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not np.all(determined):
        ax.plot(x, y, color="0.6", ls=":", lw=style.get("lw", 1.5), zorder=1)
    ax.plot(x, np.where(determined, y, np.nan), label=label, **style)


def _undetermined_title(law, determined) -> str:
    """What the grey, dotted parts of a figure mean ("" where everything drawn is determined)."""
    if np.all(determined):
        return ""
    missing = law.undetermined()
    if missing:
        return f"\n{NOT_DETERMINED}: {', '.join(missing)} not identified (grey, dotted)"
    return f"\ngrey, dotted: {NOT_DETERMINED} (past {EXTRAPOLATION_LIMIT:g}x the fitted range)"


def isoflop_curves(table: pd.DataFrame, width: float = 0.1, min_points: int = 3) -> list[tuple[float, pd.DataFrame]]:
    """(median C, points) per compute budget: runs whose log10 C lie within `width` decades of the
    budget's smallest (isoflop.budget_groups; rounding log10 C to a decimal instead splits a
    budget that straddles a rounding boundary into small groups)."""
    return [(float(curve["C"].median()), curve.sort_values("N"))
            for _, curve in table.groupby(isoflop.budget_groups(table, width)) if curve["N"].nunique() >= min_points]


def isoflop_figure(table: pd.DataFrame, law=None, width: float = 0.1, min_points: int = 3) -> Figure:
    """Loss against N at each compute budget, the parabola in log N per budget, and the law's curve."""
    fig, (ax,) = _figure()
    curves = isoflop_curves(table, width, min_points)
    undetermined = False
    if not curves:
        raise ValueError(f"no compute budget (runs within {width} decades of C) has {min_points} or more model sizes")
    for (c, curve), colour in zip(curves, _colours(len(curves))):
        log_n = np.log(curve["N"].to_numpy(float))
        ax.scatter(curve["N"], curve["loss"], s=14, color=colour, label=f"C = {c:.1e} FLOPs")
        grid = np.linspace(log_n.min(), log_n.max(), 100)
        # The same parabola in log N that approach 2 minimises (analysis.isoflop.isoflop_minima).
        ax.plot(np.exp(grid), np.polyval(np.polyfit(log_n, curve["loss"].to_numpy(float), 2), grid),
                color=colour, lw=1, ls="--")
        if law is not None:
            n = np.exp(grid)
            ok = determined_at(law, N=n, D=c / (6 * n), C=c)
            undetermined = undetermined or not ok.all()
            _plot_determined(ax, n, law.predict(N=n, D=c / (6 * n)), ok, color=colour, lw=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("model size N (parameters)")
    ax.set_ylabel("loss (nats/token)")
    title = "IsoFLOP curves: points, parabola in log N (dashed)"
    ax.set_title(title + (", law (solid)" if law is not None else "")
                 + (_undetermined_title(law, False) if undetermined else ""), fontsize=10 if undetermined else None)
    _legend_outside(ax, fontsize=7)
    return fig


def _legend_outside(ax, **kwargs) -> None:
    """The legend right of the axes, where it covers no data (constrained layout makes room)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def frontier_figure(law, table: pd.DataFrame | None = None, flops: Sequence[float] | None = None) -> Figure:
    """N_opt and D_opt against C: the law's frontier, its 95% band (analysis.answers.band), and the IsoFLOP minima."""
    fig, (ax_n, ax_d) = _figure(2, width=5.2)
    if flops is None:
        low, high = (law.ranges or {}).get("C", [1e18, 1e22])
        flops = np.geomspace(float(low) / 10, float(high) * 100, 60)
    flops = np.asarray(flops, float)
    point, draws = frontier(law, flops)
    undetermined = law.undetermined()
    c_low, c_high = (law.ranges or {}).get("C", [flops.min(), flops.max()])
    # not determined: the whole law where a parameter is not identified, else past 10x the fitted C
    within = (np.zeros_like(flops, bool) if undetermined else
              (flops >= float(c_low) / EXTRAPOLATION_LIMIT) & (flops <= float(c_high) * EXTRAPOLATION_LIMIT))
    for ax, idx, name, unit in ((ax_n, 0, "N_opt", "parameters"), (ax_d, 1, "D_opt", "tokens")):
        ax.plot(flops, np.where(within, point[idx], np.nan), color="C0", label=f"{law.form} law (approach {law.approach})")
        ax.plot(flops, point[idx], color="0.6", linestyle=":", zorder=1,
                label=f"{NOT_DETERMINED}" + ("" if undetermined else f" (> {EXTRAPOLATION_LIMIT:g}x the fitted C)"))
        if draws is not None and within.any():
            low, high = band(draws[idx], law.spread, point[idx])   # NaN where no draw has an optimum
            ax.fill_between(flops, np.where(within, low, np.nan), np.where(within, high, np.nan), color="C0",
                            alpha=0.25, label="95% band (bootstrap and likelihood region)")
        if table is not None:
            minima = isoflop.isoflop_minima(table)
            if len(minima):
                ax.scatter(minima["C"], minima[name[0]], color="k", s=16, zorder=3, label="IsoFLOP minima (data)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(f"{name} ({unit})")
        ax.legend(fontsize=8)
    fig.suptitle("Compute-optimal frontier" + (
        f" ({NOT_DETERMINED}: {', '.join(undetermined)} not identified)" if undetermined else ""))
    return fig


def frontier(law, flops: np.ndarray):
    """((N, D) of the point law, (N, D) per bootstrap draw or None) along `flops`: the law's form
    says how (the Chinchilla closed form, or the approach-1/2 power laws)."""
    form = law.form
    params = recommend.point_parameters(law)
    draws = recommend.draw_parameters(law)
    point = form.optimal_allocation(params, flops)
    if draws and all(k in draws for k in form.parameter_names_for(law.settings)):
        return point, form.optimal_allocation({k: v[:, None] if np.ndim(v) else v for k, v in draws.items()}, flops)
    return point, None


def data_efficiency_figure(training: pd.DataFrame,
                           multipliers: dict[str, dict[str, tuple[float, tuple[float, float] | None]]] | None = None,
                           ) -> Figure:
    """Loss and hard-span loss against tokens per arm, in both accountings (all trained; raw document).

    `multipliers` maps accounting column ("tokens" or "tokens_raw") -> arm -> (m, interval): the
    fitted worth of the arm's data in vanilla tokens (m NaN: not determined by the data, said in
    the panel's title). Each panel names it, and redraws that arm's
    points at m x D (hollow, dotted): where the law holds they fall on the vanilla curve of the
    same size. Only points whose m x D lies within the panel's measured tokens are redrawn (a
    multiplier far from 1 would put them where no run was; the title says so). Final points only;
    one marker per model size.
    """
    final = training[training["is_final"]] if "is_final" in training else training
    targets = [c for c in ("eval_loss", "eval_loss_hard") if c in final and final[c].notna().any()]
    accountings = [("tokens", "all trained tokens"), ("tokens_raw", "raw document tokens")]
    fig = Figure(figsize=(10.5, 3.8 * len(targets)), layout="constrained")
    axes = fig.subplots(len(targets), 2, squeeze=False)
    arms = sorted(final["arm"].unique())
    sizes = sorted(final["params"].unique())
    markers = "osD^v<>ph*"
    multipliers = multipliers or {}
    for row, target in enumerate(targets):
        for col, (column, label) in enumerate(accountings):
            ax = axes[row][col]
            worth = multipliers.get(column, {})
            low, high = final[column].min(), final[column].max()
            outside = set()
            for i, arm in enumerate(arms):
                for j, size in enumerate(sizes):
                    part = final[(final["arm"] == arm) & (final["params"] == size)].sort_values(column)
                    if part.empty:
                        continue
                    marker = markers[j % len(markers)]
                    ax.plot(part[column], part[target], marker=marker, ms=4, color=f"C{i}", lw=1,
                            label=arm if j == 0 else None)
                    if arm in worth and np.isfinite(worth[arm][0]):
                        shifted = part[column] * worth[arm][0]
                        inside = (shifted >= low) & (shifted <= high)
                        if not inside.all():
                            outside.add(arm)
                        if inside.any():
                            ax.plot(shifted[inside], part[target][inside], marker=marker, ms=5, mfc="none",
                                    color=f"C{i}", ls=":", lw=1, label=f"{arm} at m x D" if j == 0 else None)
            ax.set_xscale("log")
            ax.set_xlabel(f"D ({label})")
            ax.set_ylabel(f"{target} (nats/token)")
            ax.set_title(f"{target} vs {label}" + "".join(
                f"\n{arm}: worth {NOT_DETERMINED}" if not np.isfinite(m) else
                f"\n{arm} worth {m:.3g}x vanilla (fitted)" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
                + ("; m x D outside the data, not drawn" if arm in outside else "")
                for arm, (m, ci) in worth.items()), fontsize=9)
            ax.legend(fontsize=8, title="arm (marker = size)", title_fontsize=7)
    fig.suptitle("Data efficiency per arm")
    return fig


def thinks(law, arm) -> bool:
    """Whether the joint law gives `arm` a test-time slope (an arm that never thought has none)."""
    thinking = getattr(law.settings, "thinking_arms", None)
    return thinking is None or arm in thinking


def iso_compute_figure(law, total_flops: float, inference_queries: float, tokens_per_query: float,
                       sizes: Sequence[float], thinking_budgets: Sequence[float] | None = None,
                       arms: Sequence[str] | None = None, samples: int = 1) -> Figure:
    """Predicted accuracy against the share of a fixed total compute spent at inference.

    For a size N, a share s at inference buys thinking T from s x total = queries x 2N k
    (tokens_per_query + T); the rest trains, D = (1 - s) total / 6N. One curve per arm and size.
    """
    fig, (ax,) = _figure(width=7.2)
    arms = list(arms or recommend.joint_arms(law))
    t_max = float((law.ranges or {}).get("T", [0, 4096])[1]) if thinking_budgets is None else max(thinking_budgets)
    styles = ["-", "--", "-.", (0, (5, 1, 1, 1))]   # dotted is the grey of what is not determined
    everywhere = []
    for i, size in enumerate(sizes):
        base = inference_queries * 2 * size * samples * tokens_per_query
        thinking = (np.concatenate([[0.0], np.geomspace(1, max(t_max, 2), 80)]) if thinking_budgets is None
                    else np.asarray(thinking_budgets, float))
        inference = base + inference_queries * 2 * size * samples * thinking
        share = inference / total_flops
        ok = share < 1
        for j, arm in enumerate(arms):
            # an arm that does not think spends nothing on thinking: its one point at T = 0
            use = ok & (thinking == 0) if not thinks(law, arm) else ok
            d = (total_flops - inference[use]) / (6 * size)
            acc = recommend.mixed_prediction(law, N=np.full(use.sum(), size), D=d, T=thinking[use],
                                             k=np.full(use.sum(), samples), **({"arm": arm} if arm is not None else {}))
            label = f"N = {size:.2g}" + (f", {arm}" if arm is not None else "")
            determined = determined_at(law, N=size, D=d, C=6 * size * d, T=thinking[use])
            everywhere.append(determined)
            _plot_determined(ax, share[use], acc, determined, color=f"C{i}", ls=styles[j % len(styles)],
                             marker="o" if use.sum() == 1 else None,
                             label=label + ("" if thinks(law, arm) else " (does not think)"))
    ax.set_xscale("log")
    ax.set_xlabel("share of total compute spent at inference (fraction)")
    ax.set_ylabel(f"predicted {law.target} (fraction)")
    ok = np.concatenate(everywhere) if everywhere else np.ones(0, bool)
    ax.set_title(f"Iso-compute: total {total_flops:.2e} FLOPs, {inference_queries:.2g} queries"
                 + _undetermined_title(law, ok), fontsize=10 if not ok.all() else None)
    ax.legend(fontsize=7, ncol=2)
    return fig


def adaptive_thinking_figure(law, difficulty_mix=None, N: float | None = None, D: float | None = None,
                             arms: Sequence[str] | None = None, means: Sequence[float] | None = None,
                             k: float = 1) -> Figure:
    """Expected accuracy against the mean thinking tokens per query, for uniform budgets (every
    difficulty gets T, dashed) and for the adaptive policy at each mean (a budget per difficulty,
    recommend.adaptive_thinking_policy; solid): the frontier. One curve pair per arm that thinks, for one model
    (default the largest fitted N and D) and a difficulty mix (default the fitted table's)."""
    mix = recommend.check_difficulty_mix(law, difficulty_mix or recommend.law_difficulty_mix(law))
    ranges = law.ranges or {}
    n = float(ranges["N"][1]) if N is None else float(N)
    d = float(ranges["D"][1]) if D is None else float(D)
    budgets = recommend.thinking_budgets(law, None, count=24)
    means = budgets if means is None else np.asarray(means, float)
    fig, (ax,) = _figure(width=7.2)
    levels, weights = list(mix), np.asarray(list(mix.values()), float)
    uniform_ok, adaptive_ok = (determined_at(law, N=n, D=d, C=6 * n * d, T=t) for t in (budgets, means))
    for i, arm in enumerate(list(arms or [a for a in recommend.joint_arms(law) if thinks(law, a)])):
        model = {"N": n, "D": d, **({"arm": arm} if arm is not None else {})}
        table = recommend.accuracy_by_difficulty(law.predict, mix, budgets, model, k)
        cost, value, _ = recommend.policy_frontier(table, budgets, weights, float(np.max(means)))
        adaptive = value[np.searchsorted(cost, means * (1 + 1e-12) + 1e-12, side="right") - 1]
        suffix = f", {arm}" if arm is not None else ""
        _plot_determined(ax, budgets + 1, weights @ table, uniform_ok, color=f"C{i}", ls="--", marker="o", ms=2.5,
                         label=f"uniform T{suffix}")
        _plot_determined(ax, means + 1, adaptive, adaptive_ok, color=f"C{i}", ls="-",
                         label=f"adaptive per difficulty{suffix}")
    ax.set_xscale("log")
    ax.set_xlabel("mean thinking tokens per query + 1 (tokens)")
    ax.set_ylabel(f"expected {law.target} over the mix (fraction)")
    ax.set_title(f"Adaptive vs uniform thinking: N = {n:.3g}, D = {d:.3g}, mix "
                 + ", ".join(f"d{lv:g}: {w:.2g}" for lv, w in zip(levels, weights))
                 + _undetermined_title(law, np.concatenate([uniform_ok, adaptive_ok])), fontsize=9)
    ax.legend(fontsize=7)
    return fig


# The aggregator a test-time panel shows, in order of preference: one answer per query where
# there is one sample, a vote over k samples where there are several (pass@k measures another thing).
THINKING_AGGREGATORS = ("greedy", "majority", "pass@k")
SAMPLES_AGGREGATORS = ("majority", "pass@k", "greedy")


def test_time_aggregators(inference: pd.DataFrame) -> tuple[str | None, str | None]:
    """(the aggregator of the thinking panel at the fewest samples, that of the samples panel)."""
    if "aggregator" not in inference:
        return None, None
    fewest = set(inference.loc[inference["samples"] == inference["samples"].min(), "aggregator"])
    several = set(inference.loc[inference["samples"] > inference["samples"].min(), "aggregator"])
    return (next((a for a in THINKING_AGGREGATORS if a in fewest), None),
            next((a for a in SAMPLES_AGGREGATORS if a in several), None))


def test_time_figure(inference: pd.DataFrame) -> Figure:
    """Accuracy against thinking tokens (fewest samples) and against samples (each size's largest
    T), per size and arm, one aggregator per panel (test_time_aggregators): rows of different
    aggregators at one k measure different things and are never averaged together."""
    fig, (ax_t, ax_k) = _figure(2, width=5.4)
    thinking_agg, samples_agg = test_time_aggregators(inference)

    def rows(part, aggregator):
        return part if aggregator is None else part[part["aggregator"] == aggregator]

    keys = sorted(inference.groupby(["params", "arm"]).groups)
    for i, (size, arm) in enumerate(keys):
        part = inference[(inference["params"] == size) & (inference["arm"] == arm)]
        label = f"N = {size:.3g}, {arm}"
        few = rows(part[part["samples"] == part["samples"].min()], thinking_agg)
        single = few.groupby("thinking_budget")["accuracy"].mean()  # the mean over tasks
        ax_t.plot(single.index.to_numpy() + 1, single.to_numpy(), marker="o", ms=3, color=f"C{i % 10}", label=label)
        widest = rows(part[part["thinking_budget"] == part["thinking_budget"].max()], samples_agg)
        by_k = widest.groupby("samples")["accuracy"].mean()
        ax_k.plot(by_k.index, by_k.to_numpy(), marker="o", ms=3, color=f"C{i % 10}", label=label)
    ax_t.set_xscale("log")
    ax_t.set_xlabel("thinking budget T + 1 (tokens)")
    ax_k.set_xscale("log", base=2)
    ax_k.set_xlabel("samples k (per query)")
    for ax in (ax_t, ax_k):
        ax.set_ylabel("accuracy (fraction correct)")
    _legend_outside(ax_k, fontsize=7)
    k = int(inference["samples"].min())
    ax_t.set_title(f"Thinking: {thinking_agg or 'accuracy'} at k = {k}", fontsize=10)
    ax_k.set_title(f"Samples: {samples_agg or 'accuracy'} at the largest T", fontsize=10)
    return fig


def residuals_figure(table: pd.DataFrame, laws: dict[str, object]) -> Figure:
    """log(observed) - log(predicted) of every law against N, D and C."""
    fig, axes = _figure(3, width=4.2, height=3.6)
    for i, (name, law) in enumerate(laws.items()):
        predicted = np.asarray(law.predict(**_covariates(table, law)), float)
        residual = np.log(table["loss"].to_numpy(float)) - np.log(predicted)
        for ax, column, unit in zip(axes, ("N", "D", "C"), ("parameters", "tokens", "FLOPs")):
            ax.scatter(table[column], residual, s=8, alpha=0.7, color=f"C{i}", label=name)
            ax.set_xscale("log")
            ax.set_xlabel(f"{column} ({unit})")
    for ax in axes:
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("log residual (observed / predicted)")
        ax.legend(fontsize=7)
    fig.suptitle("Residuals of each fit")
    return fig


def _covariates(table: pd.DataFrame, law) -> dict:
    """The columns the law's form predicts from."""
    names = law.form.required_covariates(law.settings)
    missing = [c for c in names if c not in table]
    if missing:
        raise ValueError(f"law {law.form.name!r} needs columns {missing} to compute residuals")
    return {c: table[c].to_numpy() for c in names}


def _colours(n: int) -> list:
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0, 0.9, max(n, 1))]


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, stem: str | os.PathLike, formats: Iterable[str] = FORMATS, dpi: int = 110) -> list[Path]:
    """Write stem.png and stem.svg, each atomically."""
    stem = Path(stem)
    return [write_bytes_atomic(stem.with_suffix(f".{fmt}"), figure_bytes(fig, fmt, dpi)) for fmt in formats]
