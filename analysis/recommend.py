"""Budget questions answered from a fitted law, with intervals from its bootstrap draws.

Four questions, chosen by what the query gives and what the law's form answers (its `questions`):
- compute-optimal N and D for a training budget C = 6ND (closed form for a Chinchilla law,
  analysis.chinchilla; the power laws of an approach-1/2 law);
- inference-aware sizing (Sardana & Frankle 2023): the N and D that reach a target loss at the
  least lifetime cost 6ND + 2N x (inference tokens);
- joint allocation: for a total compute and an expected number of queries, the (N, D, arm,
  thinking budget T, samples k) of highest predicted accuracy under a joint law;
- whether thinking-augmented data pays for itself once the teacher's generation FLOPs are charged
  (an augmentation law with per-arm multipliers m_<arm>).

Every answer is computed once with the point estimates and once per bootstrap draw; the interval
is the 2.5-97.5 percentile range of the draws' answers.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    if target_loss is None:
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
        raise ValueError(f"target loss {target_loss} is out of reach: {reason}")
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
                     teacher_flops_per_token: float | None = None) -> Recommendation:
    """The (N, D, arm, T, k) of highest predicted accuracy within total compute.

    total = 6 N D (+ the teacher's FLOPs for an augmented arm) + queries x 2N k (tokens_per_query + T).
    A grid over log N (inside the fitted range widened by the tolerance), every fitted arm, thinking
    budgets T and samples k up to the fitted maxima; D takes what inference leaves. The argmax is
    taken for the point law and for every bootstrap draw; the categorical arm reports the share of
    draws that agree with it instead of an interval.
    """
    ranges = law.ranges or {}
    settings = law.settings
    arms = joint_arms(law)
    n_low, n_high = ranges.get("N", [1e6, 1e10])
    n_low, n_high = float(n_low) / tolerance, float(n_high) * tolerance
    if max_params is not None:
        n_high = min(n_high, max_params)
    sizes = np.geomspace(n_low, n_high, 64)
    t_max = float(ranges.get("T", [0, 0])[1])
    budgets = np.unique(np.concatenate([[0.0], np.geomspace(16, t_max, 9)])) if t_max >= 16 else np.array([0.0])
    k_max = float(ranges.get("k", [1, 1])[1])
    samples = 2.0 ** np.arange(0, int(np.log2(max(k_max, 1))) + 1)
    teacher = teacher_flops_per_token if teacher_flops_per_token is not None else settings.teacher_flops_per_token
    fractions = settings.thinking_fraction or {}
    grid_n, grid_t, grid_k = (g.ravel() for g in np.meshgrid(sizes, budgets, samples, indexing="ij"))
    inference = inference_queries * 2.0 * grid_n * grid_k * (tokens_per_query + grid_t)
    best = None
    per_draw = []
    for arm in arms:
        share = float(fractions.get(arm, 0.0)) if isinstance(fractions, Mapping) else 0.0
        d = (total_flops - inference) / (6.0 * grid_n + share * float(teacher or 0.0))
        ok = d > 0
        if not ok.any():
            continue
        covariates = dict(N=grid_n[ok], D=d[ok], T=grid_t[ok], k=grid_k[ok], **({"arm": arm} if arm else {}))
        acc = np.asarray(law.predict(**covariates), float)
        i = int(np.nanargmax(acc))
        candidate = (acc[i], arm, grid_n[ok][i], d[ok][i], grid_t[ok][i], grid_k[ok][i], inference[ok][i])
        if best is None or candidate[0] > best[0]:
            best = candidate
        if law.bootstrap_samples:
            draws = np.asarray(law.predict_draws(**covariates), float)
            j = np.nanargmax(draws, axis=1)
            per_draw.append((draws[np.arange(len(j)), j], np.full(len(j), arm, dtype=object), grid_n[ok][j],
                             d[ok][j], grid_t[ok][j], grid_k[ok][j]))
    if best is None:
        raise ValueError(f"total compute {fmt(total_flops)} is spent on inference alone for every size in the "
                         f"grid: raise --total_flops or lower --inference_queries")
    acc, arm, n, d, t, k, inf = best
    notes = [f"{fmt(inference_queries)} queries of {fmt(tokens_per_query)} tokens plus the thinking budget; "
             f"{100 * inf / total_flops:.1f}% of the compute goes to inference"]
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


def joint_arms(law) -> list[str | None]:
    """The arms a joint law can predict: its loss law's arms if that is an augmentation law, else [None]."""
    return get_form(law.form).arms(law.settings) or [None]


def recommend(law, *, train_flops: float | None = None, inference_queries: float | None = None,
              tokens_per_query: float | None = None, total_flops: float | None = None,
              max_params: float | None = None, target_loss: float | None = None, tolerance: float = 3.0,
              teacher_flops_per_token: float | None = None, thinking_fraction: float | None = None,
              params: float | None = None, tokens: float | None = None) -> Recommendation:
    """Answer the question the arguments ask (see the module docstring); `Law.recommend` calls this."""
    if tolerance < 1:
        raise ValueError(f"tolerance is a factor >= 1, got {tolerance}")
    if form_answers(law, "hyperparameters"):
        return hyperparameters_for(law, params, tokens, tolerance)
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
