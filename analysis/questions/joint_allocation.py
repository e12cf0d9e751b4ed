"""Joint allocation: for a total compute and an expected number of queries, the (N, D, arm,
thinking budget T, samples k) of highest predicted accuracy under a joint law; with a difficulty
mix, the thinking budget is chosen per difficulty (analysis.questions.thinking)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from analysis.answers import Quantity, Recommendation, fmt, quantity, range_warnings
from analysis.questions.base import (INFERENCE_QUERIES, MAX_PARAMS, TEACHER_FLOPS_PER_TOKEN, TOKENS_PER_QUERY,
                                     TOTAL_FLOPS, Question, form_answers)
from analysis.questions.inference_aware import check_queries_and_tokens
from analysis.questions.thinking import (DIFFICULTY_MIX, accuracy_by_difficulty, best_within, check_difficulty_mix,
                                         law_difficulties, law_difficulty_mix, mixed_prediction, policy_frontier,
                                         solve_thinking_policy, thinking_budgets)


class JointAllocation(Question):
    """The question a joint law answers (asked by --total_flops, --inference_queries, --tokens_per_query)."""

    name = "joint_allocation"
    title = "Joint allocation"
    flags = (TOTAL_FLOPS, INFERENCE_QUERIES, TOKENS_PER_QUERY, MAX_PARAMS, TEACHER_FLOPS_PER_TOKEN, DIFFICULTY_MIX)

    def asks(self, law, query):
        if not form_answers(law, self.name):
            if query.total_flops is not None:
                raise ValueError(f"--total_flops asks for a joint allocation (training + inference + thinking), which "
                                 f"needs a joint law (scaling fit --form joint_inference); this law's form is "
                                 f"{law.form.name!r}: give --train_flops for a training budget")
            return False
        if query.difficulty_mix is not None and query.mean_thinking_tokens is not None:
            raise ValueError("--mean_thinking_tokens and --total_flops: the joint allocation chooses the mean "
                             "thinking budget itself; give one of them")
        check_queries_and_tokens(query)
        if query.total_flops is None or query.inference_queries is None:
            raise ValueError("a joint law answers joint allocation: give --total_flops, --inference_queries "
                             "and --tokens_per_query")
        return True

    def answer(self, law, query):
        return joint_allocation(law, query.total_flops, query.inference_queries, query.tokens_per_query,
                                query.max_params, query.tolerance, query.teacher_flops_per_token, query.difficulty_mix)


def joint_allocation(law, total_flops: float, inference_queries: float, tokens_per_query: float,
                     max_params: float | None = None, tolerance: float = 3.0,
                     teacher_flops_per_token: float | None = None,
                     difficulty_mix: Mapping[float, float] | None = None) -> Recommendation:
    """The (N, D, arm, T, k) of highest predicted accuracy within total compute.

    total = 6 N D (+ the teacher's FLOPs for an augmented arm) + queries x 2N k (tokens_per_query + T).
    A grid over log N (inside the fitted range widened by the tolerance), every fitted arm, thinking
    budgets T and samples k up to the fitted maxima; D takes what inference leaves. The argmax is
    taken for the point law and for every bootstrap draw; the categorical arm reports the share of
    draws that agree with it instead of an interval. A law with a difficulty term predicts the
    accuracy over its fitted table's difficulty mix; given `difficulty_mix`, the thinking budget is
    chosen per difficulty (`adaptive_thinking_policy`) at each mean budget T of the grid.
    """
    if difficulty_mix is not None:
        return _joint_allocation_adaptive(law, total_flops, inference_queries, tokens_per_query, max_params,
                                          tolerance, teacher_flops_per_token, check_difficulty_mix(law, difficulty_mix))
    grid_n, grid_t, grid_k, inference, data_for = _allocation_grid(
        law, total_flops, inference_queries, tokens_per_query, max_params, tolerance, teacher_flops_per_token, 64)
    best = None
    per_draw = []
    for arm in joint_arms(law):
        d = data_for(arm)
        ok = d > 0
        if not ok.any():
            continue
        covariates = dict(N=grid_n[ok], D=d[ok], T=grid_t[ok], k=grid_k[ok], **({"arm": arm} if arm else {}))
        acc = mixed_prediction(law, **covariates)
        if not np.isfinite(acc).any():
            continue
        i = int(np.nanargmax(acc))
        candidate = (acc[i], arm, grid_n[ok][i], d[ok][i], grid_t[ok][i], grid_k[ok][i], inference[ok][i])
        if best is None or candidate[0] > best[0]:
            best = candidate
        if law.bootstrap_samples:
            draws = mixed_prediction(law, draws=True, **covariates)
            j = np.argmax(np.where(np.isnan(draws), -np.inf, draws), axis=1)   # a draw with no answer: NaN
            per_draw.append((np.where(np.isfinite(draws).any(axis=1), draws[np.arange(len(j)), j], np.nan),
                             np.full(len(j), arm, dtype=object), grid_n[ok][j], d[ok][j], grid_t[ok][j], grid_k[ok][j]))
    if best is None:
        raise ValueError(f"total compute {fmt(total_flops)} is spent on inference alone for every size in the "
                         f"grid: raise --total_flops or lower --inference_queries")
    acc, arm, n, d, t, k, inf = best
    notes = [f"{fmt(inference_queries)} queries of {fmt(tokens_per_query)} tokens plus the thinking budget"]
    derived = [f"{100 * inf / total_flops:.1f}% of the compute goes to inference"]
    if law_difficulties(law):
        notes.append("accuracy over the fitted table's difficulty mix " + ", ".join(
            f"d{d:g}: {w:.3g}" for d, w in law_difficulty_mix(law).items())
            + " with one thinking budget for all; give --difficulty_mix for one per difficulty")
    columns = [[] for _ in range(6)]  # per draw: accuracy, arm, N, D, T, k of the best over arms
    if per_draw:
        accuracies = np.stack([p[0] for p in per_draw])
        winner = np.argmax(np.where(np.isnan(accuracies), -np.inf, accuracies), axis=0)
        answered = np.isfinite(accuracies).any(axis=0)   # a draw no arm answers drops out of the intervals (NaN)
        columns = [np.array([per_draw[w][field][i] if answered[i] else (None if field == 1 else np.nan)
                             for i, w in enumerate(winner)]) for field in range(6)]
    quantities = {"N": quantity(n, columns[2], "parameters", law.spread),
                  "D": quantity(d, columns[3], "tokens", law.spread)}
    if arm is not None:
        voted = columns[1][:law.n_bootstrap][answered[:law.n_bootstrap]] if per_draw else []
        agree = f"{100 * np.mean(voted == arm):.0f}% of draws agree" if len(voted) else ""
        quantities["arm"] = Quantity(arm, None, agree)
    quantities.update({"thinking_budget": quantity(t, columns[4], "tokens", law.spread),
                       "samples": quantity(k, columns[5], "per query", law.spread),
                       f"predicted_{law.target}": quantity(acc, columns[0], "", law.spread)})
    return Recommendation("Joint allocation (model size, data, arm, thinking budget, samples)", quantities,
                          tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, T=t)), derived=tuple(derived))


def _allocation_grid(law, total_flops, inference_queries, tokens_per_query, max_params, tolerance,
                     teacher_flops_per_token, n_sizes):
    """The joint allocation's search grid, flattened: sizes around the fitted N range (capped by
    max_params), thinking budgets 0 and 16 up to the largest fitted T, samples 1, 2, 4, ... up to
    the largest fitted k; each point's inference FLOPs; and `data_for(arm)`, the training tokens
    the rest of the compute buys for an arm (its teacher's FLOPs on its thinking share included)."""
    ranges, settings = law.ranges or {}, law.settings
    n_low, n_high = ranges.get("N", [1e6, 1e10])
    n_low, n_high = float(n_low) / tolerance, float(n_high) * tolerance
    if max_params is not None:
        n_high = min(n_high, max_params)
    sizes = np.geomspace(n_low, n_high, n_sizes)
    t_max = float(ranges.get("T", [0, 0])[1])
    budgets = np.unique(np.concatenate([[0.0], np.geomspace(16, t_max, 9)])) if t_max >= 16 else np.array([0.0])
    k_max = float(ranges.get("k", [1, 1])[1])
    samples = 2.0 ** np.arange(0, int(np.log2(max(k_max, 1))) + 1)
    teacher = teacher_flops_per_token if teacher_flops_per_token is not None else settings.teacher_flops_per_token
    fractions = settings.thinking_fraction or {}
    grid_n, grid_t, grid_k = (g.ravel() for g in np.meshgrid(sizes, budgets, samples, indexing="ij"))
    inference = inference_queries * 2.0 * grid_n * grid_k * (tokens_per_query + grid_t)

    def data_for(arm):
        share = float(fractions.get(arm, 0.0)) if isinstance(fractions, Mapping) else 0.0
        return (total_flops - inference) / (6.0 * grid_n + share * float(teacher or 0.0))

    return grid_n, grid_t, grid_k, inference, data_for


def _joint_allocation_adaptive(law, total_flops, inference_queries, tokens_per_query, max_params, tolerance,
                               teacher_flops_per_token, mix) -> Recommendation:
    """Joint allocation whose thinking is a per-difficulty policy: the grid's T is the mean budget
    over the mix, spent by `policy_frontier` where it buys most. The (arm, N, D, k, mean budget) is
    the point law's argmax; the per-difficulty budgets and the accuracy are re-solved for every
    bootstrap draw at that allocation (their intervals), the allocation itself is not."""
    # the grid's T is the mean budget over the mix here
    grid_n, grid_m, grid_k, inference, data_for = _allocation_grid(
        law, total_flops, inference_queries, tokens_per_query, max_params, tolerance, teacher_flops_per_token, 32)
    policy_budgets = thinking_budgets(law, None, count=20)
    best = None
    levels, weights = list(mix), np.asarray(list(mix.values()), float)
    n_budgets = len(policy_budgets)
    for arm in joint_arms(law):
        d = data_for(arm)
        ok = np.flatnonzero(d > 0)
        if not ok.size:
            continue
        # accuracy[point, difficulty, budget] at every point of the grid, in one prediction per difficulty
        rep = lambda v: np.repeat(v[ok], n_budgets)
        covariates = dict(N=rep(grid_n), D=rep(d), k=rep(grid_k), T=np.tile(policy_budgets, ok.size),
                          **({"arm": arm} if arm else {}))
        table = np.stack([np.asarray(law.predict(**covariates, difficulty=np.full(ok.size * n_budgets, lv)), float)
                          .reshape(ok.size, n_budgets) for lv in levels], axis=1)
        for row, i in enumerate(ok):
            cost, value, choice = policy_frontier(table[row], policy_budgets, weights, grid_m[i])
            picked, acc, spent = best_within(cost, value, choice, grid_m[i])
            if best is None or acc > best[0]:
                best = (acc, arm, grid_n[i], d[i], grid_m[i], grid_k[i], inference[i],
                        {lv: float(policy_budgets[j]) for lv, j in zip(levels, picked)}, spent)
    if best is None:
        raise ValueError(f"total compute {fmt(total_flops)} is spent on inference alone for every size in the "
                         f"grid: raise --total_flops or lower --inference_queries")
    acc, arm, n, d, mean, k, inf, budgets, spent = best
    per_draw = []
    if law.bootstrap_samples:
        table = accuracy_by_difficulty(law.predict_draws, mix, policy_budgets, {"N": n, "D": d, **({"arm": arm} if arm else {})}, k)
        per_draw = [solve_thinking_policy(table[i], policy_budgets, mix, mean) for i in range(len(table))]
    quantities = {"N": Quantity(float(n), None, "parameters"), "D": Quantity(float(d), None, "tokens")}
    if arm is not None:
        quantities["arm"] = Quantity(arm, None, "")
    quantities["mean_thinking_budget"] = Quantity(float(mean), None, "tokens per query (over the mix)")
    for lv in levels:
        quantities[f"thinking_budget_d{lv:g}"] = quantity(budgets[lv], [p.budgets[lv] for p in per_draw],
                                                          f"tokens (share {mix[lv]:g})", law.spread)
    quantities["samples"] = Quantity(float(k), None, "per query")
    quantities[f"predicted_{law.target}"] = quantity(acc, [p.accuracy for p in per_draw], "", law.spread)
    derived = [f"{100 * inf / total_flops:.1f}% of the compute goes to inference"]
    notes = [f"{fmt(inference_queries)} queries of {fmt(tokens_per_query)} tokens plus the mean thinking budget",
             "thinking budget per difficulty over the mix " + ", ".join(f"d{lv:g}: {w:g}" for lv, w in mix.items())
             + "; N, D, arm, samples and the mean budget are the point law's choice (no interval); the budgets "
               "per difficulty and the accuracy are re-solved per bootstrap draw at that allocation"]
    if spent < mean - 1e-9:
        derived.append(f"the budgets per difficulty spend a mean of {fmt(spent)} tokens, less than the {fmt(mean)} "
                     f"charged (more thinking would lower accuracy); the difference's FLOPs stay counted as inference")
    return Recommendation("Joint allocation with adaptive thinking (model size, data, arm, budget per difficulty, "
                          "samples)", quantities, tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d)),
                          derived=tuple(derived))


def joint_arms(law) -> list[str | None]:
    """The arms a joint law can predict: its loss law's arms if that is an augmentation law, else [None]."""
    return law.form.arms(law.settings) or [None]
