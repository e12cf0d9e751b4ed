"""Budget questions answered from a fitted law, with intervals from its bootstrap draws.

Four questions, chosen by what the query gives and what the law's form answers (its `questions`):
- compute-optimal N and D for a training budget C = 6ND (closed form for a Chinchilla law,
  analysis.chinchilla; the power laws of an approach-1/2 law);
- inference-aware sizing (Sardana & Frankle 2023): the N and D that reach a target loss at the
  least lifetime cost 6ND + 2N x (inference tokens);
- joint allocation: for a total compute and an expected number of queries, the (N, D, arm,
  thinking budget T, samples k) of highest predicted accuracy under a joint law;
- whether thinking-augmented data pays for itself once the teacher's generation FLOPs are charged
  (an augmentation law with per-arm multipliers m_<arm>);
- adaptive thinking (issue 18): for a mix of query difficulties and a mean thinking budget per
  query, the thinking budget per difficulty (0: answer directly) of highest expected accuracy
  under a joint law fitted with a difficulty column, beside the best uniform budget at the same
  mean (`adaptive_thinking_policy`, the pure function; `adaptive_thinking`, the answer with
  intervals); inside joint allocation the same per-difficulty choice replaces the single T.

Every answer is computed once with the point estimates and once per bootstrap draw; the interval
is the 2.5-97.5 percentile range of the draws' answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from analysis.answers import Quantity, Recommendation, fmt, quantity, range_warnings
from analysis.chinchilla import (NAMES as CHINCHILLA_PARAMETERS, best_loss_at_budget, chinchilla_loss,
                                 chinchilla_optimum, inference_aware_optimum)
from analysis.forms.base import FORMS, get_form


def point_parameters(law) -> dict[str, float]:
    """Point estimates, parameters the fit held fixed included."""
    return {name: float(v) for name, v in law.estimates().items()}


def draw_parameters(law) -> dict[str, np.ndarray]:
    """Bootstrap draws per parameter (fixed parameters as constants); empty without draws."""
    draws = {name: np.asarray(v, float) for name, v in (law.bootstrap_samples or {}).items()}
    if not draws:
        return {}
    fixed = get_form(law.form).fixed_parameters(law.settings)
    return {**{k: float(v) for k, v in fixed.items()}, **draws}


def form_answers(law, question: str) -> bool:
    """Whether the law's form answers `question` (one of the forms' `questions`)."""
    return question in get_form(law.form).questions


def _require_chinchilla(law, question: str) -> None:
    """The closed forms need a law whose (reference-arm) loss is E + A/N^alpha + B/D^beta."""
    form = get_form(law.form)
    if not form.chinchilla_closed_forms(law.settings) or any(k not in law.estimates() for k in CHINCHILLA_PARAMETERS):
        closed = sorted(name for name, f in FORMS.items() if f.chinchilla_closed_forms(f.options_from()))
        raise ValueError(f"{question} needs a Chinchilla-form law ({' or '.join(closed)}, with E, A, B, "
                         f"alpha, beta); this law's form is {law.form!r}")


def compute_optimal(law, train_flops: float, max_params: float | None = None, tolerance: float = 3.0) -> Recommendation:
    """N and D minimising the predicted loss for a training budget C = 6ND."""
    if not get_form(law.form).chinchilla_closed_forms(law.settings) and form_answers(law, "compute_optimal"):
        return compute_optimal_power_law(law, train_flops, max_params, tolerance)
    _require_chinchilla(law, "the compute-optimal split")
    point, draws = point_parameters(law), draw_parameters(law)

    def answer(p):
        n, d = chinchilla_optimum(p, train_flops)
        if max_params is not None:
            n = np.minimum(n, max_params)
            d = train_flops / (6.0 * n)
        return n, d, chinchilla_loss(p, n, d)

    n, d, loss = answer(point)
    dn, dd, dl = answer(draws) if all(k in draws for k in CHINCHILLA_PARAMETERS) else ([], [], [])
    notes = [f"training budget C = 6ND = {fmt(train_flops)} FLOPs; tokens per parameter {fmt(d / n)}"]
    if get_form(law.form).arms(law.settings):
        notes.append(f"for the reference arm {law.settings.reference_arm!r}; give --teacher_flops_per_token "
                     f"and --thinking_fraction to ask whether the other arms pay for themselves")
    if max_params is not None and n >= max_params:
        notes.append(f"capped at --max_params {fmt(max_params)}: the unconstrained optimum is larger")
    return Recommendation(
        "Compute-optimal allocation (Chinchilla closed form)",
        {"N": quantity(n, dn, "parameters"), "D": quantity(d, dd, "tokens"),
         "predicted_loss": quantity(loss, dl, law.target)},
        tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, C=train_flops)))


def compute_optimal_power_law(law, train_flops: float, max_params: float | None, tolerance: float) -> Recommendation:
    """Approach 1/2 laws: N_opt = k_N C^a and D_opt = k_D C^b, with the draws of their coefficients."""
    point, draws = point_parameters(law), draw_parameters(law)

    def answer(p):
        n = p["k_N"] * np.power(train_flops, p["a"])
        d = p["k_D"] * np.power(train_flops, p["b"])
        if max_params is not None:
            n = np.minimum(n, max_params)
        return n, d

    n, d = answer(point)
    dn, dd = answer(draws) if draws else ([], [])
    notes = [f"approach {law.approach} power laws N_opt = k_N C^a, D_opt = k_D C^b at C = {fmt(train_flops)} FLOPs; "
             f"6 N D = {fmt(6 * n * d)}"]
    return Recommendation(f"Compute-optimal allocation (approach {law.approach} power laws)",
                          {"N": quantity(n, dn, "parameters"), "D": quantity(d, dd, "tokens")},
                          tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, C=train_flops)))


def inference_aware(law, inference_tokens: float, target_loss: float | None = None,
                    train_flops: float | None = None, max_params: float | None = None,
                    tolerance: float = 3.0) -> Recommendation:
    """The N and D reaching a target loss at least lifetime cost (Sardana & Frankle 2023).

    Without --target_loss the target is the loss of the compute-optimal model at train_flops:
    "as good as Chinchilla-optimal, but cheaper to serve". The target is the user's quality bar, so
    it is held fixed across bootstrap draws; draws whose E is above it cannot reach it and are
    counted in a note.
    """
    _require_chinchilla(law, "inference-aware sizing")
    point, draws = point_parameters(law), draw_parameters(law)
    notes = []
    given = target_loss is not None
    if not given:
        if train_flops is None:
            raise ValueError("inference-aware sizing needs --target_loss or --train_flops (whose "
                             "compute-optimal loss becomes the target)")
        n0, d0 = chinchilla_optimum(point, train_flops)
        target_loss = float(chinchilla_loss(point, n0, d0))
        notes.append(f"target loss {target_loss:.4f}: the compute-optimal model's at {fmt(train_flops)} FLOPs")
    n, d, total = inference_aware_optimum(point, target_loss, inference_tokens, max_params)
    if not np.isfinite(n):
        reason = (f"the law's E = {point['E']:.4f} is at or above the target" if point["E"] >= target_loss
                  else f"--max_params {fmt(max_params)} is below the smallest size that can reach it")
        target = (f"--target_loss {target_loss}" if given else f"the target (the compute-optimal model's loss "
                  f"{target_loss:.4f} at --train_flops {fmt(train_flops)}, no --target_loss given)")
        raise ValueError(f"{target} is out of reach: {reason}")
    if all(k in draws for k in CHINCHILLA_PARAMETERS):
        dn, dd, dt = inference_aware_optimum(draws, target_loss, inference_tokens, max_params)
        unreachable = int(np.sum(~np.isfinite(dn)))
        if unreachable:
            notes.append(f"{unreachable} of {dn.size} bootstrap draws cannot reach the target; "
                         f"the interval is over the rest")
    else:
        dn = dd = dt = []
    # The compute-optimal model for the same loss, to show what serving costs change.
    n_chin, d_chin, _ = inference_aware_optimum(point, target_loss, 0.0, max_params)
    train = 6.0 * n * d
    notes.append(f"lifetime inference {fmt(inference_tokens)} tokens at 2N FLOPs each; training 6ND")
    notes.append(f"the compute-optimal model for this loss (no inference) has N = {fmt(n_chin)}, "
                 f"D = {fmt(d_chin)}, lifetime cost {fmt(6 * n_chin * d_chin + 2 * n_chin * inference_tokens)}")
    return Recommendation(
        "Inference-aware sizing (least training + inference FLOPs at a target loss)",
        {"N": quantity(n, dn, "parameters"), "D": quantity(d, dd, "tokens"),
         "train_flops": quantity(train, 6.0 * np.asarray(dn) * np.asarray(dd), "FLOPs"),
         "total_flops": quantity(total, dt, "FLOPs"),
         "target_loss": Quantity(target_loss, None, law.target)},
        tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, C=train)))


def augmentation_arms(law) -> list[str]:
    """Arms with a fitted data multiplier m_<arm> (the reference arm, usually vanilla, has m = 1)."""
    if not form_answers(law, "augmentation_pays"):
        return []
    reference = law.settings.reference_arm
    return [arm for arm in law.settings.arms if arm != reference and f"m_{arm}" in law.parameters]


def augmentation_pays(law, train_flops: float, teacher_flops_per_token: float | None = None,
                      thinking_fraction: float | Mapping[str, float] | None = None,
                      tolerance: float = 3.0) -> Recommendation:
    """Does training on an augmented arm beat vanilla at equal compute, teacher FLOPs charged?

    Each trained token of arm a costs 6N plus f_a x teacher FLOPs per thinking token, where f_a is
    the share of its trained tokens that are thinking; its data is worth m_a vanilla tokens. For
    each arm the best (N, D) within train_flops is found, and the loss gain over the best vanilla
    model is reported: positive means the augmentation pays for itself.
    """
    _require_chinchilla(law, "the augmentation question")
    arms = augmentation_arms(law)
    if not arms:
        raise ValueError(f"law of form {law.form!r} has no data multipliers m_<arm>: fit the augmentation form")
    settings = law.settings
    teacher = teacher_flops_per_token if teacher_flops_per_token is not None else settings.teacher_flops_per_token
    if teacher is None:
        raise ValueError("the teacher's FLOPs per thinking token are not in the law's settings: give "
                         "--teacher_flops_per_token")
    fractions = settings.thinking_fraction or {}
    point, draws = point_parameters(law), draw_parameters(law)
    have_draws = all(k in draws for k in CHINCHILLA_PARAMETERS)
    _, _, base = best_loss_at_budget(point, train_flops)
    base_draws = best_loss_at_budget(draws, train_flops)[2] if have_draws else None
    quantities = {"loss_vanilla": quantity(base, base_draws if have_draws else [], law.target)}
    notes = [f"training budget {fmt(train_flops)} FLOPs including the teacher's generation at "
             f"{fmt(teacher)} FLOPs per thinking token"]
    for arm in arms:
        given = thinking_fraction if thinking_fraction is not None else fractions
        share = given.get(arm) if isinstance(given, Mapping) else given
        if share is None:
            raise ValueError(f"the thinking share of arm {arm!r}'s trained tokens is not in the law's "
                             f"settings (thinking_fraction): give --thinking_fraction")
        extra = float(share) * float(teacher)
        m = point[f"m_{arm}"]
        n, d, loss = best_loss_at_budget(point, train_flops, m, extra)
        gain_draws = []
        if have_draws and f"m_{arm}" in draws:
            dn, dd, dl = best_loss_at_budget(draws, train_flops, draws[f"m_{arm}"], extra)
            gain_draws = base_draws - dl
        else:
            dn = dd = dl = []
        quantities[f"m_{arm}"] = quantity(m, draws.get(f"m_{arm}", []), "vanilla tokens per token")
        quantities[f"N_{arm}"] = quantity(n, dn, "parameters")
        quantities[f"D_{arm}"] = quantity(d, dd, "tokens")
        quantities[f"loss_{arm}"] = quantity(loss, dl, law.target)
        quantities[f"loss_gain_{arm}"] = quantity(base - loss, gain_draws, law.target)
        ci = quantities[f"loss_gain_{arm}"].ci
        verdict = ("pays for itself" if base > loss else "does not pay for itself")
        if ci is not None and ci[0] < 0 < ci[1]:
            verdict += " (the interval includes no gain: not settled by this data)"
        notes.append(f"arm {arm!r}: worth {m:.3g}x vanilla data, thinking share {share:g}; it {verdict}")
    return Recommendation("Does thinking augmentation pay for itself (teacher FLOPs charged)?",
                          quantities, tuple(notes), tuple(range_warnings(law, tolerance, C=train_flops)))


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
        i = int(np.nanargmax(acc))
        candidate = (acc[i], arm, grid_n[ok][i], d[ok][i], grid_t[ok][i], grid_k[ok][i], inference[ok][i])
        if best is None or candidate[0] > best[0]:
            best = candidate
        if law.bootstrap_samples:
            draws = mixed_prediction(law, draws=True, **covariates)
            j = np.nanargmax(draws, axis=1)
            per_draw.append((draws[np.arange(len(j)), j], np.full(len(j), arm, dtype=object), grid_n[ok][j],
                             d[ok][j], grid_t[ok][j], grid_k[ok][j]))
    if best is None:
        raise ValueError(f"total compute {fmt(total_flops)} is spent on inference alone for every size in the "
                         f"grid: raise --total_flops or lower --inference_queries")
    acc, arm, n, d, t, k, inf = best
    notes = [f"{fmt(inference_queries)} queries of {fmt(tokens_per_query)} tokens plus the thinking budget; "
             f"{100 * inf / total_flops:.1f}% of the compute goes to inference"]
    if law_difficulties(law):
        notes.append("accuracy over the fitted table's difficulty mix " + ", ".join(
            f"d{d:g}: {w:.3g}" for d, w in law_difficulty_mix(law).items())
            + " with one thinking budget for all; give --difficulty_mix for one per difficulty")
    columns = [[] for _ in range(6)]  # per draw: accuracy, arm, N, D, T, k of the best over arms
    if per_draw:
        winner = np.argmax(np.stack([p[0] for p in per_draw]), axis=0)
        columns = [np.array([per_draw[w][field][i] for i, w in enumerate(winner)]) for field in range(6)]
    quantities = {"N": quantity(n, columns[2], "parameters"), "D": quantity(d, columns[3], "tokens")}
    if arm is not None:
        agree = f"{100 * np.mean(columns[1] == arm):.0f}% of draws agree" if per_draw else ""
        quantities["arm"] = Quantity(arm, None, agree)
    quantities.update({"thinking_budget": quantity(t, columns[4], "tokens"),
                       "samples": quantity(k, columns[5], "per query"),
                       f"predicted_{law.target}": quantity(acc, columns[0], "")})
    return Recommendation("Joint allocation (model size, data, arm, thinking budget, samples)", quantities,
                          tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, T=t)))


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
            picked, acc, spent = _best_within(cost, value, choice, grid_m[i])
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
                                                          f"tokens (share {mix[lv]:g})")
    quantities["samples"] = Quantity(float(k), None, "per query")
    quantities[f"predicted_{law.target}"] = quantity(acc, [p.accuracy for p in per_draw], "")
    notes = [f"{fmt(inference_queries)} queries of {fmt(tokens_per_query)} tokens plus the mean thinking budget; "
             f"{100 * inf / total_flops:.1f}% of the compute goes to inference",
             "thinking budget per difficulty over the mix " + ", ".join(f"d{lv:g}: {w:g}" for lv, w in mix.items())
             + "; N, D, arm, samples and the mean budget are the point law's choice (no interval); the budgets "
               "per difficulty and the accuracy are re-solved per bootstrap draw at that allocation"]
    if spent < mean - 1e-9:
        notes.append(f"the budgets per difficulty spend a mean of {fmt(spent)} tokens, less than the {fmt(mean)} "
                     f"charged (more thinking would lower accuracy); the difference's FLOPs stay counted as inference")
    return Recommendation("Joint allocation with adaptive thinking (model size, data, arm, budget per difficulty, "
                          "samples)", quantities, tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d)))


def hyperparameters_for(law, params: float | None, tokens: float | None, tolerance: float = 3.0) -> Recommendation:
    """Step Law's learning rate and batch size for a model of `params` parameters trained on
    `tokens` tokens, with bootstrap intervals."""
    if params is None or tokens is None:
        raise ValueError("a hyperparameter law answers for one grid point: give --params and --tokens")
    if not (params > 0 and tokens > 0):
        raise ValueError(f"--params and --tokens must be positive, got {params} and {tokens}")
    quantities = {}
    seq_len = float(law.settings.seq_len)
    for name, unit in (("lr", ""), ("batch_size", "tokens" if seq_len != 1 else "batch_size units")):
        point = float(law.predict(N=params, D=tokens, quantity=name))
        draws = law.predict_draws(N=params, D=tokens, quantity=name) if law.bootstrap_samples else []
        quantities[name] = quantity(point, draws, unit)
    notes = ["Step Law fit: lr = k_lr N^a_lr D^b_lr, batch = k_bs D^b_bs (bootstrap-mean coefficients)"]
    if seq_len != 1:
        b = quantities["batch_size"]
        quantities["batch_sequences"] = Quantity(b.estimate / seq_len,
                                                 None if b.ci is None else (b.ci[0] / seq_len, b.ci[1] / seq_len),
                                                 f"sequences of {seq_len:g} tokens")
    return Recommendation(f"Hyperparameters for N = {fmt(params)}, D = {fmt(tokens)}", quantities, tuple(notes),
                          tuple(range_warnings(law, tolerance, N=params, D=tokens)))


# --- adaptive thinking by difficulty (issue 18) --------------------------------------------------

MIX_TOLERANCE = 1e-6


def law_difficulties(law) -> list[float]:
    """The difficulty levels a joint law was fitted on (empty: a pooled law)."""
    form = get_form(law.form)
    return form.difficulties(law.settings) if hasattr(form, "difficulties") else []


def law_difficulty_mix(law) -> dict[float, float]:
    """The fitted table's own mix: each difficulty's share of its rows."""
    levels, shares = law_difficulties(law), law.settings.difficulty_shares
    if not levels:
        return {}
    shares = shares or [1.0 / len(levels)] * len(levels)
    return {float(d): float(w) for d, w in zip(levels, shares)}


def parse_difficulty_mix(text: str, flag: str = "--difficulty_mix") -> dict[float, float]:
    """'1:0.5,2:0.3,3:0.2' -> {1.0: 0.5, 2.0: 0.3, 3.0: 0.2}; a malformed item, a repeated
    difficulty, a negative or non-finite share or shares not summing to 1 are refused, naming the flag."""
    mix = {}
    for item in str(text).split(","):
        parts = item.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            difficulty, share = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"{flag}: {item.strip()!r} must look like DIFFICULTY:SHARE (e.g. "
                             f"{flag}=1:0.5,2:0.3,3:0.2)") from None
        if difficulty in mix:
            raise ValueError(f"{flag}: difficulty {difficulty:g} is given twice")
        mix[difficulty] = share
    return check_mix_shares(mix, flag)


def check_mix_shares(mix: Mapping[float, float], flag: str = "--difficulty_mix") -> dict[float, float]:
    mix = {float(d): float(w) for d, w in mix.items()}
    if not mix:
        raise ValueError(f"{flag}: no difficulties given")
    for d, w in mix.items():
        if not (np.isfinite(d) and np.isfinite(w) and w >= 0):
            raise ValueError(f"{flag}: difficulty {d:g} has share {w:g}; shares must be finite and >= 0")
    total = sum(mix.values())
    if abs(total - 1.0) > MIX_TOLERANCE:
        raise ValueError(f"{flag}: the shares sum to {total:g}, not 1 (they are the fractions of queries "
                         f"at each difficulty)")
    return mix


def check_difficulty_mix(law, mix: Mapping[float, float], flag: str = "--difficulty_mix") -> dict[float, float]:
    """The mix, checked against the law: it must have difficulties, each inside the fitted range."""
    if not law_difficulties(law):
        raise ValueError(f"{flag} needs a joint_inference law fitted on a table with a difficulty column "
                         f"(two or more difficulties, not --pool-difficulties); this law "
                         f"({law.form!r}) has no difficulty term")
    mix = check_mix_shares(mix, flag)
    get_form(law.form).check_difficulties(list(mix), law.settings, flag=f"{flag}: difficulty")
    return mix


@dataclasses.dataclass(frozen=True)
class ThinkingPolicy:
    """A thinking budget per difficulty and the best uniform budget at the same mean, with the
    expected accuracies over the mix (one law, one arm and model; no intervals)."""

    budgets: dict[float, float]                 # difficulty -> thinking budget T (0: answer directly)
    accuracy: float                             # expected accuracy of the adaptive policy over the mix
    accuracies: dict[float, float]              # difficulty -> predicted accuracy at its budget
    mean_thinking_tokens: float                 # sum over the mix of share x budget (<= the mean given)
    uniform_budget: float                       # the best single T <= the mean given
    uniform_accuracy: float
    uniform_accuracies: dict[float, float]

    @property
    def gain(self) -> float:
        """Expected accuracy of the adaptive policy minus the best uniform budget's."""
        return self.accuracy - self.uniform_accuracy


def policy_frontier(accuracy: np.ndarray, budgets: np.ndarray, weights: np.ndarray, max_mean: float):
    """Every undominated per-difficulty choice of budgets: (mean cost, expected accuracy, choice),
    sorted by cost with accuracy strictly rising, over choices whose mean cost is <= max_mean.

    `accuracy` is [difficulty, budget]; the choice is an index into `budgets` per difficulty. Exact
    on the grid: difficulties are added one at a time and dominated partial choices (no cheaper,
    no more accurate) are dropped, so a budget curve that is not concave (or falls) is handled."""
    limit = max_mean * (1 + 1e-12) + 1e-12
    cost, value, choice = np.zeros(1), np.zeros(1), np.zeros((1, 0), dtype=np.int64)
    for d in range(len(weights)):
        c = (cost[:, None] + weights[d] * budgets[None, :]).ravel()
        v = (value[:, None] + weights[d] * accuracy[d][None, :]).ravel()
        ch = np.concatenate([np.repeat(choice, len(budgets), axis=0),
                             np.tile(np.arange(len(budgets)), len(cost))[:, None]], axis=1)
        ok = (c <= limit) & np.isfinite(v)
        c, v, ch = c[ok], v[ok], ch[ok]
        order = np.lexsort((-v, c))
        c, v, ch = c[order], v[order], ch[order]
        best_before = np.concatenate([[-np.inf], np.maximum.accumulate(v)[:-1]])
        keep = v > best_before
        cost, value, choice = c[keep], v[keep], ch[keep]
    return cost, value, choice


def _best_within(cost, value, choice, mean):
    i = int(np.searchsorted(cost, mean * (1 + 1e-12) + 1e-12, side="right")) - 1
    return choice[i], value[i], cost[i]


def _best_uniform(accuracy, budgets, weights, mean):
    expected = weights @ accuracy
    expected = np.where(budgets <= mean * (1 + 1e-12) + 1e-12, expected, -np.inf)
    g = int(np.argmax(expected))
    return g, expected[g]


def thinking_budgets(law, mean_thinking_tokens: float | None = None, count: int = 40) -> np.ndarray:
    """The candidate budgets: 0, a geometric grid up to the largest fitted T, and the mean itself
    (so the uniform policy can spend exactly the mean) when it is inside the fitted range."""
    t_max = float((law.ranges or {}).get("T", [0, 0])[1])
    grid = [0.0] + (list(np.round(np.geomspace(1, t_max, count))) if t_max >= 1 else [])
    if mean_thinking_tokens is not None and 0 < mean_thinking_tokens <= t_max:
        grid.append(float(mean_thinking_tokens))
    return np.unique(np.asarray(grid, dtype=np.float64))


def _model_covariates(law, arm, N, D, L) -> dict:
    needed = get_form(law.form).required_covariates(law.settings)
    model = {}
    for name, value in (("N", N), ("D", D), ("L", L)):
        if name in needed:
            if value is None:
                raise ValueError(f"this law predicts from {name}: give it (--params/--tokens for N and D)")
            model[name] = float(value)
    if "arm" in needed:
        arms = get_form(law.form).arms(law.settings)
        if arm is None:
            raise ValueError(f"this law has arms {arms}: give the arm (--arm)")
        model["arm"] = arm
    return model


def accuracy_by_difficulty(predict: Callable[..., np.ndarray], mix: Mapping[float, float], budgets: np.ndarray,
                    model: Mapping, k: float) -> np.ndarray:
    """[..., difficulty, budget]: the prediction at every budget for every difficulty of the mix
    (a leading axis when `predict` gives one row per bootstrap draw)."""
    g = len(budgets)
    rows = [np.asarray(predict(**{name: (np.full(g, v, dtype=object) if name == "arm" else np.full(g, v))
                                  for name, v in model.items()},
                               T=budgets, k=np.full(g, float(k)), difficulty=np.full(g, d)), float)
            for d in mix]
    return np.stack(rows, axis=-2)


def solve_thinking_policy(accuracy: np.ndarray, budgets: np.ndarray, mix: Mapping[float, float],
                          mean_thinking_tokens: float) -> ThinkingPolicy:
    """The adaptive and the best uniform policy from a table of accuracies [difficulty, budget]."""
    levels = list(mix)
    weights = np.asarray([mix[d] for d in levels], float)
    cost, value, choice = policy_frontier(accuracy, budgets, weights, mean_thinking_tokens)
    picked, expected, spent = _best_within(cost, value, choice, mean_thinking_tokens)
    g, uniform = _best_uniform(accuracy, budgets, weights, mean_thinking_tokens)
    return ThinkingPolicy(
        budgets={d: float(budgets[i]) for d, i in zip(levels, picked)}, accuracy=float(expected),
        accuracies={d: float(accuracy[j, i]) for j, (d, i) in enumerate(zip(levels, picked))},
        mean_thinking_tokens=float(spent), uniform_budget=float(budgets[g]), uniform_accuracy=float(uniform),
        uniform_accuracies={d: float(accuracy[j, g]) for j, d in enumerate(levels)})


def adaptive_thinking_policy(law, difficulty_mix: Mapping[float, float], mean_thinking_tokens: float, *,
                             arm: str | None = None, N: float | None = None, D: float | None = None,
                             L: float | None = None, k: float = 1, budgets=None,
                             predict: Callable[..., np.ndarray] | None = None) -> ThinkingPolicy:
    """The thinking budget per difficulty (0 allowed: answer directly) that maximises the expected
    accuracy over `difficulty_mix` ({difficulty: share}, shares summing to 1) at a mean thinking
    budget per query of at most `mean_thinking_tokens`, and the best uniform budget at the same
    mean, for one model (N, D[, arm]; or a measured loss L) of a joint law fitted with a
    difficulty column. `predict` (default `law.predict`) may be any function of the law's
    covariates, e.g. one bootstrap draw's. Budgets are a grid (`thinking_budgets`) up to the
    largest fitted T; the policy is exact on it."""
    if not (np.isfinite(mean_thinking_tokens) and mean_thinking_tokens >= 0):
        raise ValueError(f"--mean_thinking_tokens={mean_thinking_tokens:g}: must be a finite number >= 0")
    mix = check_difficulty_mix(law, difficulty_mix)
    budgets = thinking_budgets(law, mean_thinking_tokens) if budgets is None else np.unique(np.asarray(budgets, float))
    if budgets.size == 0 or budgets[0] != 0:
        budgets = np.unique(np.concatenate([[0.0], budgets]))
    accuracy = accuracy_by_difficulty(predict or law.predict, mix, budgets, _model_covariates(law, arm, N, D, L), k)
    return solve_thinking_policy(accuracy, budgets, mix, mean_thinking_tokens)


def mixed_prediction(law, mix: Mapping[float, float] | None = None, draws: bool = False, **covariates) -> np.ndarray:
    """The law's prediction averaged over a difficulty mix (default: the fitted table's) for a law
    with a difficulty term; the plain prediction otherwise. `draws`: one row per bootstrap draw."""
    call = law.predict_draws if draws else law.predict
    if not law_difficulties(law) or "difficulty" in covariates:
        return np.asarray(call(**covariates), float)
    mix = mix or law_difficulty_mix(law)
    shape = np.broadcast(*[np.asarray(v, dtype=object if k == "arm" else float) for k, v in covariates.items()]).shape
    return sum(w * np.asarray(call(**covariates, difficulty=np.full(shape, d)), float) for d, w in mix.items())


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
    needed = get_form(law.form).required_covariates(law.settings)
    if "N" in needed and (N is None or D is None):
        N = float(ranges["N"][1]) if N is None else N
        D = float(ranges["D"][1]) if D is None else D
        notes.append(f"for N = {fmt(N)}, D = {fmt(D)} (the largest fitted; give --params and --tokens for another model)")
    if "L" in needed:
        raise ValueError("this joint law takes the measured loss L as its covariate; adaptive thinking needs one "
                         "fitted with a loss law (--loss-law), which predicts from N and D")
    arms = [arm] if arm is not None else (get_form(law.form).arms(law.settings) or [None])
    budgets = thinking_budgets(law, mean_thinking_tokens)
    point = {a: adaptive_thinking_policy(law, mix, mean_thinking_tokens, arm=a, N=N, D=D, k=k, budgets=budgets)
             for a in arms}
    best_arm = max(point, key=lambda a: point[a].accuracy)
    policy = point[best_arm]
    per_draw = []
    if law.bootstrap_samples:
        table = accuracy_by_difficulty(law.predict_draws, mix, budgets, _model_covariates(law, best_arm, N, D, None), k)
        per_draw = [solve_thinking_policy(table[i], budgets, mix, mean_thinking_tokens) for i in range(len(table))]
    quantities = {}
    if best_arm is not None:
        quantities["arm"] = Quantity(best_arm, None, "highest adaptive accuracy" if arm is None else "")
    for d in mix:
        quantities[f"thinking_budget_d{d:g}"] = quantity(policy.budgets[d], [p.budgets[d] for p in per_draw],
                                                         f"tokens (share {mix[d]:g})")
    quantities["mean_thinking_tokens"] = quantity(policy.mean_thinking_tokens,
                                                  [p.mean_thinking_tokens for p in per_draw], "tokens per query")
    quantities[f"predicted_{law.target}_adaptive"] = quantity(policy.accuracy, [p.accuracy for p in per_draw], "")
    quantities["uniform_thinking_budget"] = quantity(policy.uniform_budget, [p.uniform_budget for p in per_draw],
                                                     "tokens")
    quantities[f"predicted_{law.target}_uniform"] = quantity(policy.uniform_accuracy,
                                                             [p.uniform_accuracy for p in per_draw], "")
    quantities["adaptive_gain"] = quantity(policy.gain, [p.gain for p in per_draw], f"{law.target} (adaptive - uniform)")
    t_max = float(ranges.get("T", [0, 0])[1])
    notes.append(f"mean thinking budget per query at most {fmt(mean_thinking_tokens)} tokens over the mix "
                 + ", ".join(f"d{d:g}: {w:g}" for d, w in mix.items())
                 + f"; budgets on a grid of {len(budgets)} from 0 to the largest fitted T = {fmt(t_max)}; k = {k:g}")
    if mean_thinking_tokens > t_max:
        notes.append(f"the mean {fmt(mean_thinking_tokens)} exceeds the largest fitted T: no budget goes beyond "
                     f"{fmt(t_max)}, so some of the mean is left unspent")
    if len(point) > 1:
        notes.append("adaptive accuracy per arm: " + ", ".join(f"{a}: {fmt(p.accuracy)}" for a, p in point.items()))
    gain = quantities["adaptive_gain"]
    if gain.ci is not None and gain.ci[0] <= 0:
        notes.append("the gain's interval reaches 0: this data does not settle that adaptive beats uniform")
    return Recommendation("Adaptive thinking budget per difficulty (beside the best uniform budget)", quantities,
                          tuple(notes), tuple(range_warnings(law, tolerance, N=N, D=D)))


def joint_arms(law) -> list[str | None]:
    """The arms a joint law can predict: its loss law's arms if that is an augmentation law, else [None]."""
    return get_form(law.form).arms(law.settings) or [None]


def recommend(law, *, train_flops: float | None = None, inference_queries: float | None = None,
              tokens_per_query: float | None = None, total_flops: float | None = None,
              max_params: float | None = None, target_loss: float | None = None, tolerance: float = 3.0,
              teacher_flops_per_token: float | None = None, thinking_fraction: float | None = None,
              params: float | None = None, tokens: float | None = None,
              difficulty_mix: Mapping[float, float] | str | None = None, mean_thinking_tokens: float | None = None,
              arm: str | None = None) -> Recommendation:
    """Answer the question the arguments ask (see the module docstring); `Law.recommend` calls this."""
    if tolerance < 1:
        raise ValueError(f"tolerance is a factor >= 1, got {tolerance}")
    if form_answers(law, "hyperparameters"):
        return hyperparameters_for(law, params, tokens, tolerance)
    if isinstance(difficulty_mix, str):
        difficulty_mix = parse_difficulty_mix(difficulty_mix)
    if mean_thinking_tokens is not None and difficulty_mix is None:
        raise ValueError("--mean_thinking_tokens asks for a thinking budget per difficulty: give --difficulty_mix too")
    if difficulty_mix is not None:
        if not form_answers(law, "joint_allocation"):
            raise ValueError(f"--difficulty_mix needs a joint law (scaling fit --form joint_inference on a table with "
                             f"a difficulty column); this law's form is {law.form!r}")
        if total_flops is not None:
            if mean_thinking_tokens is not None:
                raise ValueError("--mean_thinking_tokens and --total_flops: the joint allocation chooses the mean "
                                 "thinking budget itself; give one of them")
            if inference_queries is None or tokens_per_query is None:
                raise ValueError("a joint allocation needs --inference_queries and --tokens_per_query")
            return joint_allocation(law, total_flops, inference_queries, tokens_per_query, max_params, tolerance,
                                    teacher_flops_per_token, difficulty_mix)
        if mean_thinking_tokens is None:
            raise ValueError("--difficulty_mix asks for a thinking budget per difficulty: give --mean_thinking_tokens "
                             "(the mean over the mix), or --total_flops for a joint allocation")
        return adaptive_thinking(law, difficulty_mix, mean_thinking_tokens, arm=arm, N=params, D=tokens,
                                 tolerance=tolerance)
    if arm is not None:
        raise ValueError("--arm applies to --difficulty_mix questions")
    if params is not None or tokens is not None:
        raise ValueError("--params and --tokens ask a hyperparameter law (scaling fit --form=hyperparameters); "
                         f"this law's form is {law.form!r}")
    if (inference_queries is None) != (tokens_per_query is None):
        raise ValueError("give --inference_queries and --tokens_per_query together")
    if form_answers(law, "joint_allocation"):
        if total_flops is None or inference_queries is None:
            raise ValueError("a joint law answers joint allocation: give --total_flops, --inference_queries "
                             "and --tokens_per_query")
        return joint_allocation(law, total_flops, inference_queries, tokens_per_query, max_params, tolerance,
                                teacher_flops_per_token)
    if total_flops is not None:
        raise ValueError(f"--total_flops asks for a joint allocation (training + inference + thinking), which "
                         f"needs a joint law (scaling fit --form joint_inference); this law's form is "
                         f"{law.form!r}: give --train_flops for a training budget")
    if inference_queries is not None or target_loss is not None:
        tokens = (inference_queries or 0.0) * (tokens_per_query or 0.0)
        return inference_aware(law, tokens, target_loss, train_flops, max_params, tolerance)
    if train_flops is None:
        raise ValueError("give --train_flops (or --target_loss, or --total_flops for a joint law)")
    if augmentation_arms(law) and (teacher_flops_per_token is not None or thinking_fraction is not None
                                   or law.settings.teacher_flops_per_token is not None):
        return augmentation_pays(law, train_flops, teacher_flops_per_token, thinking_fraction, tolerance)
    return compute_optimal(law, train_flops, max_params, tolerance)
