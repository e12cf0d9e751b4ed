"""Adaptive thinking: for a mix of query difficulties and a mean thinking budget per query, the
thinking budget per difficulty (0: answer directly) of highest expected accuracy under a joint law
fitted with a difficulty column, beside the best uniform budget at the same mean."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from analysis.answers import Quantity, Recommendation, fmt, quantity, range_warnings
from analysis.questions.base import PARAMS, TOKENS, Flag, Question, form_answers
from analysis.questions.thinking import (DIFFICULTY_MIX, MEAN_THINKING_TOKENS, accuracy_by_difficulty,
                                         adaptive_thinking_policy, check_difficulty_mix, model_covariates,
                                         solve_thinking_policy, thinking_budgets)

ARM = Flag("arm", "with --difficulty_mix: the pretraining arm (default: each fitted arm, the best reported)",
           type=str, check=None)


class AdaptiveThinking(Question):
    """Asked by --difficulty_mix with --mean_thinking_tokens (with --total_flops instead, the joint
    allocation chooses the mean itself)."""

    name = "adaptive_thinking"
    title = "Adaptive thinking budget per difficulty"
    flags = (DIFFICULTY_MIX, MEAN_THINKING_TOKENS, ARM, PARAMS, TOKENS)

    def asks(self, law, query):
        if query.mean_thinking_tokens is not None and query.difficulty_mix is None:
            raise ValueError("--mean_thinking_tokens asks for a thinking budget per difficulty: give --difficulty_mix too")
        if query.difficulty_mix is None:
            return False
        if not form_answers(law, self.name):
            raise ValueError(f"--difficulty_mix needs a joint law (scaling fit --form joint_inference on a table with "
                             f"a difficulty column); this law's form is {law.form.name!r}")
        if query.total_flops is not None:
            return False
        if query.mean_thinking_tokens is None:
            raise ValueError("--difficulty_mix asks for a thinking budget per difficulty: give --mean_thinking_tokens "
                             "(the mean over the mix), or --total_flops for a joint allocation")
        return True

    def answer(self, law, query):
        return adaptive_thinking(law, query.difficulty_mix, query.mean_thinking_tokens, arm=query.arm,
                                 N=query.params, D=query.tokens, tolerance=query.tolerance)


def adaptive_thinking(law, difficulty_mix: Mapping[float, float], mean_thinking_tokens: float, *,
                      arm: str | None = None, N: float | None = None, D: float | None = None, k: float = 1,
                      tolerance: float = 3.0) -> Recommendation:
    """`adaptive_thinking_policy` with intervals: the policy is solved for the point law and again
    for every bootstrap draw (its budgets, accuracies and gain over uniform per draw). Without N
    and D the largest fitted model (the ranges' largest N and D) answers; without an arm, every
    fitted arm is solved and the one of highest adaptive accuracy is reported."""
    if not (np.isfinite(mean_thinking_tokens) and mean_thinking_tokens >= 0):
        raise ValueError(f"--mean_thinking_tokens={mean_thinking_tokens:g}: must be a finite number >= 0")
    mix = check_difficulty_mix(law, difficulty_mix)
    for flag, value in (("--params", N), ("--tokens", D)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{flag}={value:g}: must be a finite number above zero")
    ranges = law.ranges or {}
    notes = []
    needed = law.form.required_covariates(law.settings)
    if "N" in needed and (N is None or D is None):
        N = float(ranges["N"][1]) if N is None else N
        D = float(ranges["D"][1]) if D is None else D
        notes.append(f"for N = {fmt(N)}, D = {fmt(D)} (the largest fitted; give --params and --tokens for another model)")
    if "L" in needed:
        raise ValueError("this joint law takes the measured loss L as its covariate; adaptive thinking needs one "
                         "fitted with a loss law (--loss-law), which predicts from N and D")
    arms = [arm] if arm is not None else (law.form.arms(law.settings) or [None])
    budgets = thinking_budgets(law, mean_thinking_tokens)
    point = {a: adaptive_thinking_policy(law, mix, mean_thinking_tokens, arm=a, N=N, D=D, k=k, budgets=budgets)
             for a in arms}
    best_arm = max(point, key=lambda a: point[a].accuracy)
    policy = point[best_arm]
    per_draw = []
    if law.bootstrap_samples:
        table = accuracy_by_difficulty(law.predict_draws, mix, budgets, model_covariates(law, best_arm, N, D, None), k)
        per_draw = [solve_thinking_policy(table[i], budgets, mix, mean_thinking_tokens) for i in range(len(table))]
    quantities, spread = {}, law.spread
    if best_arm is not None:
        quantities["arm"] = Quantity(best_arm, None, "highest adaptive accuracy" if arm is None else "")
    for d in mix:
        quantities[f"thinking_budget_d{d:g}"] = quantity(policy.budgets[d], [p.budgets[d] for p in per_draw],
                                                         f"tokens (share {mix[d]:g})", spread)
    quantities["mean_thinking_tokens"] = quantity(policy.mean_thinking_tokens,
                                                  [p.mean_thinking_tokens for p in per_draw], "tokens per query", spread)
    quantities[f"predicted_{law.target}_adaptive"] = quantity(policy.accuracy, [p.accuracy for p in per_draw], "",
                                                              spread)
    quantities["uniform_thinking_budget"] = quantity(policy.uniform_budget, [p.uniform_budget for p in per_draw],
                                                     "tokens", spread)
    quantities[f"predicted_{law.target}_uniform"] = quantity(policy.uniform_accuracy,
                                                             [p.uniform_accuracy for p in per_draw], "", spread)
    quantities["adaptive_gain"] = quantity(policy.gain, [p.gain for p in per_draw],
                                           f"{law.target} (adaptive - uniform)", spread)
    t_max = float(ranges.get("T", [0, 0])[1])
    notes.append(f"mean thinking budget per query at most {fmt(mean_thinking_tokens)} tokens over the mix "
                 + ", ".join(f"d{d:g}: {w:g}" for d, w in mix.items())
                 + f"; budgets on a grid of {len(budgets)} from 0 to the largest fitted T = {fmt(t_max)}; k = {k:g}")
    if mean_thinking_tokens > t_max:
        notes.append(f"the mean {fmt(mean_thinking_tokens)} exceeds the largest fitted T: no budget goes beyond "
                     f"{fmt(t_max)}, so some of the mean is left unspent")
    derived = []
    if len(point) > 1:
        derived.append("adaptive accuracy per arm: " + ", ".join(f"{a}: {fmt(p.accuracy)}" for a, p in point.items()))
    gain = quantities["adaptive_gain"]
    if gain.ci is not None and gain.ci[0] <= 0:
        derived.append("the gain's interval reaches 0: this data does not settle that adaptive beats uniform")
    return Recommendation("Adaptive thinking budget per difficulty (beside the best uniform budget)", quantities,
                          tuple(notes), tuple(range_warnings(law, tolerance, N=N, D=D)), derived=tuple(derived))
