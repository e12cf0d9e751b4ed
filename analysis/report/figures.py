"""The report's figures: every figure the data and its laws support, or the reason it is not drawn."""

from __future__ import annotations

import dataclasses

import numpy as np

from matplotlib.figure import Figure

from analysis import plots, recommend
from analysis.answers import fmt
from analysis.forms.base import CurveForm
from analysis.report.findings import joint_scenario
from analysis.report.laws import APPROACH_2, law_label


@dataclasses.dataclass(frozen=True)
class Drawn:
    """A figure of the report, or (figure None) the reason it is not drawn."""

    name: str
    caption: str = ""
    figure: Figure | None = None
    reason: str = ""


def is_loss_law(law) -> bool:
    """A law fitted to the loss of each point (its residuals are drawn)."""
    form = law.form
    return isinstance(form, CurveForm) and form.log_target


def draw_figures(canonical, training, inference, laws, frontier: str = "chinchilla") -> list[Drawn]:
    """Every figure the data and laws support, in the report's order; each caption names the law
    it draws (and the aggregator of measured accuracy). `frontier`: the law drawn as the
    compute-optimal frontier ('chinchilla' or APPROACH_2), the other when it is missing."""
    parts = []
    base = laws.get("chinchilla")

    def attempt(name, caption, build):
        try:
            parts.append(Drawn(name, caption, build()))
        except ValueError as e:
            parts.append(Drawn(name, reason=str(e)))


    curves = plots.isoflop_curves(canonical)
    if len(curves) >= 2:
        attempt("IsoFLOP curves", "Loss against model size per compute budget (runs within 0.1 decades of C); "
                "dashed: parabola in log N; " + (f"solid: {law_label('chinchilla', base)}" if base is not None
                                                 else "no law drawn (no Chinchilla law)"),
                lambda: plots.isoflop_figure(canonical, base))
    else:
        parts.append(Drawn("IsoFLOP curves", reason="fewer than two compute budgets with three or more sizes"))
    other = APPROACH_2 if frontier == "chinchilla" else "chinchilla"
    frontier_name = frontier if frontier in laws else other
    frontier_law = laws.get(frontier_name)
    if frontier_law is not None:
        attempt("Compute-optimal frontier", "N_opt and D_opt against compute with the 95% band (bootstrap and "
                f"likelihood region), from {law_label(frontier_name, frontier_law)}",
                lambda: plots.frontier_figure(frontier_law, canonical if len(curves) >= 2 else None))
    else:
        parts.append(Drawn("Compute-optimal frontier", reason="no Chinchilla or approach-2 law was fitted"))
    if {"arm", "tokens", "tokens_raw", "params"} <= set(training.columns):
        aug = laws.get("augmentation")
        multipliers = None
        if aug is not None:
            arms = recommend.augmentation_arms(aug)
            multipliers = {column: {arm: (aug.parameters[name].estimate, aug.parameters[name].ci)
                                    if aug.parameters[name].determined else (float("nan"), None)
                                    for arm in arms if (name := f"m_{arm}{suffix}") in aug.parameters}
                           for column, suffix in (("tokens", ""), ("tokens_raw", "_raw"))}
        attempt("Data efficiency", "Loss and hard-span loss against tokens per arm and size, both accountings; "
                + (f"multipliers from {law_label('augmentation', aug)}" if aug is not None
                   else "measured points (no law; no augmentation law was fitted)"),
                lambda: plots.data_efficiency_figure(training, multipliers))
    else:
        parts.append(Drawn("Data efficiency", reason="the table has no arm / tokens / tokens_raw / params columns"))
    joint = laws.get("joint_inference")
    if joint is not None:
        sizes = np.geomspace(*[float(x) for x in joint.ranges["N"]], 3)
        total, queries, tokens = joint_scenario(joint)
        attempt("Iso-compute curves", f"Predicted accuracy against the share of a fixed total compute spent at "
                f"inference ({fmt(queries)} queries of {tokens} tokens), from {law_label('joint_inference', joint)}",
                lambda: plots.iso_compute_figure(joint, total, queries, tokens, sizes))
    else:
        parts.append(Drawn("Iso-compute curves", reason="no joint_inference law (it needs an inference table)"))
    if inference is not None and {"params", "arm", "thinking_budget", "samples", "accuracy"} <= set(inference.columns):
        thinking_agg, samples_agg = plots.test_time_aggregators(inference)
        attempt("Test-time scaling", f"Measured accuracy (no law), the mean over tasks: against thinking tokens at "
                f"k = {int(inference['samples'].min())} ({thinking_agg or 'every aggregator'}) and against samples "
                f"k at each size's largest T ({samples_agg or 'every aggregator'})",
                lambda: plots.test_time_figure(inference))
    else:
        parts.append(Drawn("Test-time scaling", reason="no inference table"))
    if joint is not None and recommend.law_difficulties(joint):
        attempt("Adaptive thinking", "Expected accuracy against mean thinking tokens per query over the table's "
                "difficulty mix, largest model: one budget for all (dashed) and a budget per difficulty (solid), "
                f"from {law_label('joint_inference', joint)}",
                lambda: plots.adaptive_thinking_figure(joint))
    else:
        parts.append(Drawn("Adaptive thinking", reason="no joint_inference law with a difficulty term (it needs an "
                                                       "inference table with two or more difficulties)"))
    residual_laws = {n: law for n, law in laws.items() if is_loss_law(law)}
    if residual_laws:
        attempt("Residuals", "log(observed / predicted) against N, D and C of "
                + "; ".join(law_label(n, law) for n, law in residual_laws.items()),
                lambda: plots.residuals_figure(canonical, residual_laws))
    else:
        parts.append(Drawn("Residuals", reason="no loss law was fitted"))
    return parts
