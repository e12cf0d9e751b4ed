"""What the data and its fitted laws say, in plain sentences and answered questions: the
findings, the ground truth beside the fitted E, and the recommendations for a few budgets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis import recommend
from analysis.answers import Recommendation, fmt
from analysis.determination import answer_status, with_status
from analysis.report.laws import E_FREE, law_label


def floor_value(floor) -> float | None:
    return None if not floor else float(floor["entropy_nats_per_token"])


def floor_text(floor) -> str:
    se = floor.get("stderr")
    return f"{floor['entropy_nats_per_token']:.4f}" + (f" ± {se:.4f}" if se else "") + " nats/token"


def e_verdict(e, floor) -> str:
    truth = floor_value(floor)
    if e.ci is None or not np.all(np.isfinite(e.ci)):
        return f"E {e.estimate / truth:.3g}x the truth (no interval)"
    if e.ci[1] < truth:
        return f"the interval lies below the truth: E {e.estimate / truth:.3g}x the truth, an impossible loss"
    if e.ci[0] > truth:
        return f"the interval lies above the truth (E {e.estimate / truth:.3g}x): the runs do not reach the floor's regime"
    return "the interval contains the truth"


def below_floor_warnings(answer, floor) -> list[str]:
    """A warning for each predicted loss of an answer that falls below the true floor."""
    truth = floor_value(floor)
    if truth is None:
        return []
    return [f"{name} = {fmt(q.estimate)} is below the corpus's true irreducible loss {floor_text(floor)}: "
            "no model can reach it" for name, q in answer.quantities.items()
            if "loss" in name and isinstance(q.estimate, (int, float, np.number)) and q.estimate < truth]


def heldout_text(heldout) -> str:
    if not heldout:
        return "not computed"
    if heldout.get("skipped"):
        return f"skipped: {heldout['skipped']}"
    if heldout.get("mean_relative_error") is None:
        return ", ".join(f"{k} = {v}" for k, v in heldout.items() if k != "train_parameters")
    return (f"fitted on the {heldout['n_train']} lower-compute points, the {heldout['n_test']} highest-compute "
            f"points are predicted with mean relative error {heldout['mean_relative_error']:.2%} "
            f"(max {heldout['max_relative_error']:.2%})")


def findings(laws, inference, floor=None, notes=None) -> list[str]:
    """What the data shows on the three questions the framework asks, in plain sentences:
    the worth of augmented data, what test-time thinking buys each arm, and the joint law's
    best split of a fixed compute budget; first, with a known floor, the fitted E against it."""
    out = []
    law = laws.get(E_FREE) or laws.get("chinchilla")
    if floor and law is not None and "E" in law.parameters and law.parameters["E"].status != "fixed":
        e = law.parameters["E"]
        status = f" ({e.status}: {e.reason})" if e.status not in (None, "identified") else ""
        out.append(f"Irreducible loss: the Chinchilla law's E, fitted free, = {fmt(e.estimate)}"
                   + (f" [{fmt(e.ci[0])}, {fmt(e.ci[1])}]" if e.ci else "") + status
                   + f" against the corpus's true {floor_text(floor)}: {e_verdict(e, floor)}.")
    if floor and E_FREE in laws:
        out.append(f"The laws used for the answers below (chinchilla, augmentation) hold E at the corpus's true "
                   f"floor {floor_text(floor)}; the fit with E free is kept as the check against the truth.")
    aug = laws.get("augmentation")
    if aug is None:
        why = dict(notes or {}).get("augmentation")
        out.append("Data efficiency: no augmentation law was fitted" + (f" ({why})" if why else "")
                   + ", so there is no multiplier.")
    for arm in recommend.augmentation_arms(aug) if aug is not None else []:
        reference = aug.settings.reference_arm or "vanilla"
        parts = []
        for suffix, accounting in (("", f"a token of {reference} data (every trained token counted, thinking "
                                        "included)"), ("_raw", "(raw document tokens counted only)")):
            p = aug.parameters.get(f"m_{arm}{suffix}")
            if p is not None and not p.determined:
                parts.append(f"not determined by these data ({p.reason}) {accounting}")
            elif p is not None:
                parts.append(f"{p.estimate:.3g}x [{fmt(p.ci[0])}, {fmt(p.ci[1])}] {accounting}"
                             + (f" ({p.status}: {p.reason})" if p.status == "at_bound" else ""))
        m = aug.parameters[f"m_{arm}"]
        if not m.determined:
            verdict = "more arms' runs, at budgets where their losses differ, would determine it"
        elif m.ci is None or not np.isfinite(m.ci[0]):
            verdict = "no bootstrap interval was computed"
        elif m.ci[0] > 1:
            verdict = f"the first interval lies above 1: a token of {arm} data taught more than a token of {reference} data"
        elif m.ci[1] < 1:
            verdict = f"the first interval lies below 1: a token of {arm} data taught less than a token of {reference} data"
        else:
            verdict = "the first interval contains 1: this data cannot tell the two arms' data apart"
        out.append(f"Data efficiency: a token of {arm} data is worth " + "; and ".join(parts) + " "
                   f"(augmentation law, {aug.n_points} points, held-out error: {heldout_text(aug.heldout)}); {verdict}.")
    out.extend(test_time_findings(inference, laws.get("joint_inference")))
    joint = laws.get("joint_inference")
    if joint is not None:
        total, queries, tokens = joint_scenario(joint)
        try:
            answer = recommend.joint_allocation(joint, total, queries, tokens)
        except ValueError as e:
            out.append(f"Iso-compute: no allocation: {e}")
            return out
        status = answer_status(joint, answer, total_flops=total)
        if not status.determined:
            out.append(f"Iso-compute: with {fmt(total)} FLOPs in all and {fmt(queries)} queries of {tokens} tokens, "
                       f"the joint law's best split is {status.text()}.")
        else:
            q = answer.quantities
            arm = f"the {q['arm'].estimate} arm ({q['arm'].unit}), " if "arm" in q else ""
            accuracy = next(v for k, v in q.items() if k.startswith("predicted_"))
            out.append(f"Iso-compute: with {fmt(total)} FLOPs in all and {fmt(queries)} queries of {tokens} tokens, "
                       f"the joint law's best split is {arm}N = {fmt(q['N'].estimate)}, D = {fmt(q['D'].estimate)}, "
                       f"thinking budget T = {fmt(q['thinking_budget'].estimate)}, k = {fmt(q['samples'].estimate)} "
                       f"samples ({'; '.join(answer.shown_notes)}), predicted accuracy {accuracy.estimate:.3f}"
                       + (f" [{accuracy.ci[0]:.3f}, {accuracy.ci[1]:.3f}]" if accuracy.ci else "") + ".")
    return out


def test_time_findings(inference, joint) -> list[str]:
    """Per arm: greedy accuracy at T = 0 and at the largest T, paired over the same checkpoint and
    task, with the standard error of the mean change; and the joint law's test-time slopes."""
    needed = {"arm", "thinking_budget", "aggregator", "accuracy", "run_id", "task"}
    if inference is None or not needed <= set(inference.columns):
        return ["Test-time thinking: no inference table with arm, thinking_budget, aggregator, accuracy columns."]
    greedy = inference[inference["aggregator"] == "greedy"]
    keys = [c for c in ("run_id", "branch", "step", "task") if c in greedy]
    t_max = greedy["thinking_budget"].max() if len(greedy) else 0
    if not t_max > 0:
        return ["Test-time thinking: the inference table has no greedy rows with a thinking budget above 0."]
    out = []
    for arm, rows in greedy.groupby("arm"):
        low = rows[rows["thinking_budget"] == 0].set_index(keys)["accuracy"]
        high = rows[rows["thinking_budget"] == t_max].set_index(keys)["accuracy"]
        paired = pd.concat([low.rename("low"), high.rename("high")], axis=1).dropna()
        if paired.empty:
            continue
        change = paired["high"] - paired["low"]
        se = float(change.std(ddof=1) / np.sqrt(len(change))) if len(change) > 1 else float("nan")
        out.append(f"Test-time thinking, {arm}-trained models (greedy, {len(paired)} checkpoint x task cells): "
                   f"accuracy {paired['low'].mean():.3f} at T = 0 and {paired['high'].mean():.3f} at T = {t_max:g}, "
                   f"a change of {change.mean():+.3f} (standard error {se:.3f}).")
    best = float(greedy["accuracy"].max())
    if best < 0.05:
        out.append(f"Test-time thinking: no model answers more than {best:.1%} of the problems at any budget; at "
                   "this scale the question of what test-time thinking buys is not answered.")
    if joint is not None:
        slopes = [(name, p) for name, p in joint.parameters.items() if name.startswith("gamma_T")]
        out.append("Joint law test-time slopes (logit gain per log(1 + T)): " + ", ".join(
            f"{name} = {p.estimate:.3g}" + (f" [{fmt(p.ci[0])}, {fmt(p.ci[1])}]" if p.ci else "") for name, p in slopes)
            + ".")
    return out


def joint_scenario(joint, tokens_per_query: int = 256) -> tuple[float, float, int]:
    """An example where inference matters: the largest fitted run's training compute in total, and
    enough queries that the largest model at the largest thinking budget would spend half of it."""
    n_max, d_max = float(joint.ranges["N"][1]), float(joint.ranges["D"][1])
    t_max = float(joint.ranges.get("T", [0, 0])[1])
    total = 6 * n_max * d_max
    queries = float(f"{0.5 * total / (2 * n_max * (tokens_per_query + t_max)):.1g}")
    return total, queries, tokens_per_query


def teacher_costs(training: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Teacher FLOPs per thinking token and each arm's thinking share of trained tokens, from the table."""
    needed = {"teacher_flops", "tokens_thinking", "tokens", "arm"}
    if not needed <= set(training.columns):
        raise ValueError(f"the training table lacks {sorted(needed - set(training.columns))} to charge the teacher")
    final = training[training["is_final"].astype(bool)] if "is_final" in training else training
    thinking = final[final["tokens_thinking"] > 0]
    if thinking.empty or not (thinking["teacher_flops"] > 0).any():
        raise ValueError("no trained thinking tokens with teacher FLOPs recorded")
    teacher = float(thinking["teacher_flops"].sum() / thinking["tokens_thinking"].sum())
    shares = {str(arm): float(part["tokens_thinking"].sum() / part["tokens"].sum()) for arm, part in final.groupby("arm")}
    return teacher, shares


def extrapolation_text(warnings) -> str:
    names = [w.split(" = ")[0] for w in warnings]
    return f"extrapolates {', '.join(names)} (beyond 3x the fitted range)" if names else "inside the fitted range"


@dataclasses.dataclass(frozen=True)
class Answered:
    """One budget question of the report: its answer, or (answer None) why it has none."""

    title: str
    answer: Recommendation | None = None
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class BudgetAnswers:
    """The report's recommendations: the compute-optimal split per budget, then the other questions."""

    budgets: list[float] = dataclasses.field(default_factory=list)
    compute_optimal: list[Recommendation] = dataclasses.field(default_factory=list)
    questions: list[Answered] = dataclasses.field(default_factory=list)
    reason: str = ""    # why there are none
    law: str = ""       # which law gave the compute-optimal split (report.laws.law_label)


def _ask(title: str, short_title: str, question) -> Answered:
    """The answer under `title`, or under `short_title` the reason there is none."""
    try:
        return Answered(title, question())
    except ValueError as e:
        return Answered(short_title, reason=str(e))


def recommendations(laws, canonical, training, budgets, inference_tokens, frontier: str = "chinchilla") -> BudgetAnswers:
    """The questions the report answers from its laws: the compute-optimal split at a few budgets
    (the decades around the largest in the data unless given) from the `frontier` law,
    inference-aware sizing (the Chinchilla law's closed form), whether augmentation pays at the
    smallest budget, and the joint law's allocation."""
    law = laws.get("chinchilla")
    split_name = frontier if frontier in laws else "chinchilla"
    split_law = laws.get(split_name)
    if law is None and split_law is None:
        return BudgetAnswers(reason="no Chinchilla law was fitted")
    if budgets is None:
        decade = 10 ** np.round(np.log10(canonical["C"].max()))
        budgets = [decade / 10, decade, decade * 10]
    questions = [] if law is None else [
        _ask(f"Inference-aware sizing: {fmt(inference_tokens)} lifetime inference tokens",
             "Inference-aware sizing", lambda: with_status(law, recommend.inference_aware(
                 law, inference_tokens, train_flops=budgets[0]), train_flops=budgets[0]))]
    aug = laws.get("augmentation")
    if aug is not None:
        def augmentation():
            teacher, shares = teacher_costs(training)
            return with_status(aug, recommend.augmentation_pays(aug, budgets[0], teacher, shares), train_flops=budgets[0])
        questions.append(_ask(f"Does thinking augmentation pay for itself at {fmt(budgets[0])} FLOPs?",
                              "Augmentation question", augmentation))
    joint = laws.get("joint_inference")
    if joint is not None:
        total, queries, tokens = joint_scenario(joint)
        questions.append(_ask(f"Joint allocation of {fmt(total)} FLOPs with {fmt(queries)} queries of {tokens} tokens",
                              "Joint allocation", lambda: with_status(
                                  joint, recommend.joint_allocation(joint, total, queries, tokens), total_flops=total)))
    return BudgetAnswers(list(budgets), [with_status(split_law, recommend.compute_optimal(split_law, c), train_flops=c)
                                         for c in budgets], questions, law=law_label(split_name, split_law))
