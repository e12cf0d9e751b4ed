"""Budget questions answered from a fitted law, with intervals from its bootstrap draws.

Four questions, chosen by what the query gives:
- compute-optimal N and D for a training budget C = 6ND (closed form for a Chinchilla law:
  N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)), Hoffmann et al.
  2022, appendix D);
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

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from analysis.law import COMPUTE_OPTIMAL

CHINCHILLA_PARAMETERS = ("E", "A", "B", "alpha", "beta")
INTERVAL = (2.5, 97.5)


# ---------------------------------------------------------------------------------------------
# Pure math on parameter mappings (floats, or arrays of bootstrap draws that broadcast together)
# ---------------------------------------------------------------------------------------------

def chinchilla_loss(p: Mapping[str, Any], n, d):
    """L = E + A / N^alpha + B / D^beta (inf for extreme bootstrap draws, without warnings)."""
    with np.errstate(over="ignore", divide="ignore"):
        return p["E"] + p["A"] / np.power(n, p["alpha"]) + p["B"] / np.power(d, p["beta"])


def chinchilla_optimum(p: Mapping[str, Any], train_flops):
    """The (N, D) minimising L(N, D) subject to 6ND = train_flops, in closed form."""
    alpha, beta = np.asarray(p["alpha"], float), np.asarray(p["beta"], float)
    with np.errstate(over="ignore", divide="ignore"):  # extreme bootstrap draws give 0 or inf
        g = np.power(alpha * p["A"] / (beta * p["B"]), 1.0 / (alpha + beta))
        half = np.asarray(train_flops, float) / 6.0
        n = g * np.power(half, beta / (alpha + beta))
        d = np.power(half, alpha / (alpha + beta)) / g
    return n, d


def tokens_to_reach(p: Mapping[str, Any], target_loss, n):
    """D such that L(N, D) = target_loss; inf where N alone cannot get below the target."""
    gap = target_loss - p["E"] - p["A"] / np.power(n, p["alpha"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, np.power(p["B"] / np.where(gap > 0, gap, 1.0), 1.0 / p["beta"]), np.inf)


def smallest_size_for(p: Mapping[str, Any], target_loss):
    """The N below which no amount of data reaches target_loss (inf if E >= target)."""
    gap = target_loss - np.asarray(p["E"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, np.power(p["A"] / np.where(gap > 0, gap, 1.0), 1.0 / p["alpha"]), np.inf)


def golden_minimise(f, lo, hi, iterations: int = 200):
    """Minimiser of a unimodal f on [lo, hi] by golden-section search, elementwise over arrays."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = np.asarray(lo, float), np.asarray(hi, float)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        left = fc < fd
        a, b = np.where(left, a, c), np.where(left, d, b)
        c_next = np.where(left, b - ratio * (b - a), d)
        d_next = np.where(left, c, a + ratio * (b - a))
        fc, fd = np.where(left, f(c_next), fd), np.where(left, fc, f(d_next))
        c, d = c_next, d_next
    return (a + b) / 2.0


def inference_aware_optimum(p: Mapping[str, Any], target_loss, inference_tokens, max_params=None,
                            iterations: int = 200):
    """(N, D, total FLOPs) reaching target_loss at least 6ND + 2N x inference_tokens.

    D(N) is exact on the constraint, so the search is one-dimensional in log N, between the
    smallest size that can reach the target and the size that is optimal without inference
    (inference demand only ever shrinks the model): a golden-section search, vectorised over draws.
    NaN where the target is out of reach (E >= target, or max_params too small).
    """
    def cost(log_n):
        n = np.exp(log_n)
        return 6.0 * n * tokens_to_reach(p, target_loss, n) + 2.0 * n * inference_tokens

    n_min = smallest_size_for(p, target_loss)
    feasible = np.isfinite(n_min)
    n_min = np.where(feasible, n_min, 1.0)
    alpha, beta = np.asarray(p["alpha"], float), np.asarray(p["beta"], float)
    lo = np.log(n_min) + 1e-9
    # Without inference, d log(N D(N)) / d log N = 0 where A N^-alpha = (target - E) beta/(alpha+beta).
    hi = np.log(n_min) + np.log((alpha + beta) / beta) / alpha + 1e-6
    if max_params is not None:
        hi = np.minimum(hi, np.log(max_params))
        feasible &= hi > lo
    hi = np.where(hi > lo, hi, lo + 1e-9)
    n = np.exp(golden_minimise(cost, lo, hi, iterations))
    dd = tokens_to_reach(p, target_loss, n)
    total = 6.0 * n * dd + 2.0 * n * inference_tokens
    nan = np.full(np.shape(n), np.nan)
    return (np.where(feasible, n, nan), np.where(feasible, dd, nan), np.where(feasible, total, nan))


def best_loss_at_budget(p: Mapping[str, Any], train_flops, multiplier=1.0, extra_flops_per_token=0.0):
    """(N, D, loss) minimising E + A/N^alpha + B/(m D)^beta when each token costs 6N + extra FLOPs.

    `multiplier` m is an arm's worth in vanilla tokens; `extra_flops_per_token` charges what else a
    trained token costs (the teacher's generation of its thinking). With extra = 0 and m = 1 this is
    the closed-form optimum; the search brackets it by three decades on each side.
    """
    n0, _ = chinchilla_optimum(p, train_flops)

    def loss(log_n):
        n = np.exp(log_n)
        return chinchilla_loss(p, n, multiplier * train_flops / (6.0 * n + extra_flops_per_token))

    log_n = golden_minimise(loss, np.log(n0) - np.log(1e3), np.log(n0) + np.log(1e3))
    n = np.exp(log_n)
    d = train_flops / (6.0 * n + extra_flops_per_token)
    return n, d, loss(log_n)


# ---------------------------------------------------------------------------------------------
# Answers with intervals
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Quantity:
    """A recommended quantity: the point-law answer and the bootstrap interval around it."""

    estimate: Any
    ci: tuple[Any, Any] | None
    unit: str = ""

    def to_dict(self) -> dict:
        value = self.estimate.item() if isinstance(self.estimate, np.generic) else self.estimate
        ci = None if self.ci is None else [float(x) if isinstance(x, (int, float, np.number)) else x
                                           for x in self.ci]
        return {"estimate": value, "ci": ci}


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One answered question: its quantities (ordered), notes for the reader and range warnings."""

    question: str
    quantities: dict[str, Quantity]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> Quantity:
        return self.quantities[name]

    def to_dict(self) -> dict:
        """The --json object: recommended quantity -> {"estimate", "ci": [low, high]}."""
        return {name: q.to_dict() for name, q in self.quantities.items()}

    def table(self) -> str:
        rows = [(name, _fmt(q.estimate), "" if q.ci is None else f"[{_fmt(q.ci[0])}, {_fmt(q.ci[1])}]", q.unit)
                for name, q in self.quantities.items()]
        widths = [max(len(r[i]) for r in rows + [("quantity", "estimate", "95% interval", "unit")])
                  for i in range(4)]
        lines = [self.question, ""]
        for row in [("quantity", "estimate", "95% interval", "unit")] + rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, str):
        return value
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"


def _interval(draws) -> tuple[float, float] | None:
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    if draws.size < 2:
        return None
    low, high = np.percentile(draws, INTERVAL)
    return float(low), float(high)


def _quantity(point, draws, unit="") -> Quantity:
    return Quantity(float(point), _interval(draws), unit)


def point_parameters(law) -> dict[str, float]:
    """Point estimates, parameters the fit held fixed included."""
    return {name: float(v) for name, v in law.estimates().items()}


def draw_parameters(law) -> dict[str, np.ndarray]:
    """Bootstrap draws per parameter (fixed parameters as constants); empty without draws."""
    draws = {name: np.asarray(v, float) for name, v in (law.bootstrap_samples or {}).items()}
    if not draws:
        return {}
    return {**{k: float(v) for k, v in law.options.get("fixed", {}).items()}, **draws}


# Forms whose reference-arm loss is E + A/N^alpha + B/D^beta, so the closed forms apply.
CHINCHILLA_FORMS = ("chinchilla", "augmentation")


def _require_chinchilla(law, question: str) -> None:
    if law.form not in CHINCHILLA_FORMS or any(k not in law.estimates() for k in CHINCHILLA_PARAMETERS):
        raise ValueError(f"{question} needs a Chinchilla-form law ({' or '.join(CHINCHILLA_FORMS)}, with E, A, B, "
                         f"alpha, beta); this law's form is {law.form!r}")


def range_warnings(law, tolerance: float, **values) -> list[str]:
    """Warn for each value (N, D, C, T) outside the law's fitted range by more than `tolerance`x."""
    out = []
    for name, value in values.items():
        bounds = (law.ranges or {}).get(name)
        if bounds is None or value is None or not np.isfinite(value):
            continue
        low, high = float(bounds[0]), float(bounds[1])
        if value > high * tolerance or value < low / tolerance:
            out.append(f"{name} = {_fmt(value)} is outside the fitted range [{_fmt(low)}, {_fmt(high)}] "
                       f"by more than the tolerance factor {tolerance:g}: an extrapolation")
    return out


def compute_optimal(law, train_flops: float, max_params: float | None = None, tolerance: float = 3.0) -> Recommendation:
    """N and D minimising the predicted loss for a training budget C = 6ND."""
    if law.form == COMPUTE_OPTIMAL:
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
    notes = [f"training budget C = 6ND = {_fmt(train_flops)} FLOPs; tokens per parameter {_fmt(d / n)}"]
    if law.form == "augmentation":
        notes.append(f"for the reference arm {law.options.get('reference_arm')!r}; give --teacher_flops_per_token "
                     f"and --thinking_fraction to ask whether the other arms pay for themselves")
    if max_params is not None and n >= max_params:
        notes.append(f"capped at --max_params {_fmt(max_params)}: the unconstrained optimum is larger")
    return Recommendation(
        "Compute-optimal allocation (Chinchilla closed form)",
        {"N": _quantity(n, dn, "parameters"), "D": _quantity(d, dd, "tokens"),
         "predicted_loss": _quantity(loss, dl, law.target)},
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
    notes = [f"approach {law.approach} power laws N_opt = k_N C^a, D_opt = k_D C^b at C = {_fmt(train_flops)} FLOPs; "
             f"6 N D = {_fmt(6 * n * d)}"]
    return Recommendation(f"Compute-optimal allocation (approach {law.approach} power laws)",
                          {"N": _quantity(n, dn, "parameters"), "D": _quantity(d, dd, "tokens")},
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
        notes.append(f"target loss {target_loss:.4f}: the compute-optimal model's at {_fmt(train_flops)} FLOPs")
    n, d, total = inference_aware_optimum(point, target_loss, inference_tokens, max_params)
    if not np.isfinite(n):
        reason = (f"the law's E = {point['E']:.4f} is at or above the target" if point["E"] >= target_loss
                  else f"--max_params {_fmt(max_params)} is below the smallest size that can reach it")
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
    notes.append(f"lifetime inference {_fmt(inference_tokens)} tokens at 2N FLOPs each; training 6ND")
    notes.append(f"the compute-optimal model for this loss (no inference) has N = {_fmt(n_chin)}, "
                 f"D = {_fmt(d_chin)}, lifetime cost {_fmt(6 * n_chin * d_chin + 2 * n_chin * inference_tokens)}")
    return Recommendation(
        "Inference-aware sizing (least training + inference FLOPs at a target loss)",
        {"N": _quantity(n, dn, "parameters"), "D": _quantity(d, dd, "tokens"),
         "train_flops": _quantity(train, 6.0 * np.asarray(dn) * np.asarray(dd), "FLOPs"),
         "total_flops": _quantity(total, dt, "FLOPs"),
         "target_loss": Quantity(target_loss, None, law.target)},
        tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, C=train)))


def augmentation_arms(law) -> list[str]:
    """Arms with a fitted data multiplier m_<arm> (the reference arm, usually vanilla, has m = 1)."""
    if law.form != "augmentation":
        return []
    reference = law.options.get("reference_arm")
    return [arm for arm in law.options.get("arms", []) if arm != reference and f"m_{arm}" in law.parameters]


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
    options = law.options or {}
    teacher = teacher_flops_per_token if teacher_flops_per_token is not None else options.get("teacher_flops_per_token")
    if teacher is None:
        raise ValueError("the teacher's FLOPs per thinking token are not in the law's options: give "
                         "--teacher_flops_per_token")
    fractions = options.get("thinking_fraction") or {}
    point, draws = point_parameters(law), draw_parameters(law)
    have_draws = all(k in draws for k in CHINCHILLA_PARAMETERS)
    _, _, base = best_loss_at_budget(point, train_flops)
    base_draws = best_loss_at_budget(draws, train_flops)[2] if have_draws else None
    quantities = {"loss_vanilla": _quantity(base, base_draws if have_draws else [], law.target)}
    notes = [f"training budget {_fmt(train_flops)} FLOPs including the teacher's generation at "
             f"{_fmt(teacher)} FLOPs per thinking token"]
    for arm in arms:
        given = thinking_fraction if thinking_fraction is not None else fractions
        share = given.get(arm) if isinstance(given, Mapping) else given
        if share is None:
            raise ValueError(f"the thinking share of arm {arm!r}'s trained tokens is not in the law's "
                             f"options (thinking_fraction): give --thinking_fraction")
        extra = float(share) * float(teacher)
        m = point[f"m_{arm}"]
        n, d, loss = best_loss_at_budget(point, train_flops, m, extra)
        gain_draws = []
        if have_draws and f"m_{arm}" in draws:
            dn, dd, dl = best_loss_at_budget(draws, train_flops, draws[f"m_{arm}"], extra)
            gain_draws = base_draws - dl
        else:
            dn = dd = dl = []
        quantities[f"m_{arm}"] = _quantity(m, draws.get(f"m_{arm}", []), "vanilla tokens per token")
        quantities[f"N_{arm}"] = _quantity(n, dn, "parameters")
        quantities[f"D_{arm}"] = _quantity(d, dd, "tokens")
        quantities[f"loss_{arm}"] = _quantity(loss, dl, law.target)
        quantities[f"loss_gain_{arm}"] = _quantity(base - loss, gain_draws, law.target)
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
    options = law.options or {}
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
    teacher = teacher_flops_per_token if teacher_flops_per_token is not None else options.get("teacher_flops_per_token", 0.0)
    fractions = options.get("thinking_fraction") or {}
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
        raise ValueError(f"total compute {_fmt(total_flops)} is spent on inference alone for every size in the "
                         f"grid: raise --total_flops or lower --inference_queries")
    acc, arm, n, d, t, k, inf = best
    notes = [f"{_fmt(inference_queries)} queries of {_fmt(tokens_per_query)} tokens plus the thinking budget; "
             f"{100 * inf / total_flops:.1f}% of the compute goes to inference"]
    columns = [[] for _ in range(6)]  # per draw: accuracy, arm, N, D, T, k of the best over arms
    if per_draw:
        winner = np.argmax(np.stack([p[0] for p in per_draw]), axis=0)
        columns = [np.array([per_draw[w][field][i] for i, w in enumerate(winner)]) for field in range(6)]
    quantities = {"N": _quantity(n, columns[2], "parameters"), "D": _quantity(d, columns[3], "tokens")}
    if arm is not None:
        agree = f"{100 * np.mean(columns[1] == arm):.0f}% of draws agree" if per_draw else ""
        quantities["arm"] = Quantity(arm, None, agree)
    quantities.update({"thinking_budget": _quantity(t, columns[4], "tokens"),
                       "samples": _quantity(k, columns[5], "per query"),
                       f"predicted_{law.target}": _quantity(acc, columns[0], "")})
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
    seq_len = float(law.options.get("seq_len", 1.0))
    for name, unit in (("lr", ""), ("batch_size", "tokens" if seq_len != 1 else "batch_size units")):
        point = float(law.predict(N=params, D=tokens, quantity=name))
        draws = law.predict_draws(N=params, D=tokens, quantity=name) if law.bootstrap_samples else []
        quantities[name] = _quantity(point, draws, unit)
    notes = [f"Step Law fit: lr = k_lr N^a_lr D^b_lr, batch = k_bs D^b_bs (bootstrap-mean coefficients)"]
    if seq_len != 1:
        b = quantities["batch_size"]
        quantities["batch_sequences"] = Quantity(b.estimate / seq_len,
                                                 None if b.ci is None else (b.ci[0] / seq_len, b.ci[1] / seq_len),
                                                 f"sequences of {seq_len:g} tokens")
    return Recommendation(f"Hyperparameters for N = {_fmt(params)}, D = {_fmt(tokens)}", quantities, tuple(notes),
                          tuple(range_warnings(law, tolerance, N=params, D=tokens)))


def is_joint(law) -> bool:
    return law.form == "joint_inference"


def joint_arms(law) -> list[str | None]:
    """The arms a joint law can predict: its loss law's arms if that is an augmentation law, else [None]."""
    loss_law = (law.options or {}).get("loss_law") or {}
    if loss_law.get("form") == "augmentation":
        return list(loss_law.get("options", {}).get("arms", []))
    return [None]


def recommend(law, *, train_flops: float | None = None, inference_queries: float | None = None,
              tokens_per_query: float | None = None, total_flops: float | None = None,
              max_params: float | None = None, target_loss: float | None = None, tolerance: float = 3.0,
              teacher_flops_per_token: float | None = None, thinking_fraction: float | None = None,
              params: float | None = None, tokens: float | None = None) -> Recommendation:
    """Answer the question the arguments ask (see the module docstring); `Law.recommend` calls this."""
    if tolerance < 1:
        raise ValueError(f"tolerance is a factor >= 1, got {tolerance}")
    if law.form == "hyperparameters":
        return hyperparameters_for(law, params, tokens, tolerance)
    if params is not None or tokens is not None:
        raise ValueError("--params and --tokens ask a hyperparameter law (scaling fit --form=hyperparameters); "
                         f"this law's form is {law.form!r}")
    if (inference_queries is None) != (tokens_per_query is None):
        raise ValueError("give --inference_queries and --tokens_per_query together")
    if is_joint(law):
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
                                   or "teacher_flops_per_token" in law.options):
        return augmentation_pays(law, train_flops, teacher_flops_per_token, thinking_fraction, tolerance)
    return compute_optimal(law, train_flops, max_params, tolerance)


def below_floor(answer: Recommendation, floor: float | None, target_loss: float | None = None) -> list[str]:
    """Warnings for every predicted loss of the answer (and a target loss) below a known floor."""
    if floor is None:
        return []
    out = [f"{name} = {_fmt(q.estimate)} is below the true irreducible loss {_fmt(floor)}: no model can reach it"
           for name, q in answer.quantities.items()
           if "loss" in name and isinstance(q.estimate, (int, float, np.number)) and q.estimate < floor]
    if target_loss is not None and target_loss < floor:
        out.append(f"target_loss = {_fmt(target_loss)} is below the true irreducible loss {_fmt(floor)}: unreachable")
    return out


# ---------------------------------------------------------------------------------------------
# `scaling recommend`
# ---------------------------------------------------------------------------------------------

def configure_recommend(parser) -> None:
    parser.add_argument("law", help="law file written by `scaling fit`")
    parser.add_argument("--train_flops", type=float, help="training budget C in FLOPs")
    parser.add_argument("--inference_queries", type=float, help="expected lifetime queries")
    parser.add_argument("--tokens_per_query", type=float, help="tokens processed per query (prompt + answer)")
    parser.add_argument("--total_flops", type=float, help="training plus inference compute (joint law)")
    parser.add_argument("--max_params", type=float, help="largest model you can serve")
    parser.add_argument("--target_loss", type=float, help="quality bar for inference-aware sizing")
    parser.add_argument("--teacher_flops_per_token", type=float,
                        help="teacher FLOPs per generated thinking token (default: the law's options)")
    parser.add_argument("--thinking_fraction", type=float,
                        help="share of an augmented arm's trained tokens that are thinking (default: the law's options)")
    parser.add_argument("--params", type=float, help="hyperparameter law: model size N of the grid point")
    parser.add_argument("--tokens", type=float, help="hyperparameter law: training tokens D of the grid point")
    parser.add_argument("--tolerance", type=float, default=3.0,
                        help="warn when the answer leaves the fitted ranges by more than this factor (default 3)")
    parser.add_argument("--floor", help="the true irreducible loss (a number, or the JSON of `scaling describe "
                                        "--corpus=synthetic`): warn when a predicted loss falls below it "
                                        "(default: the floor the law was fitted with, if any)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


# The budget flags: each must be a finite number above zero when given.
POSITIVE_FLAGS = ("train_flops", "inference_queries", "tokens_per_query", "total_flops", "max_params",
                  "target_loss", "teacher_flops_per_token")


def check_query(args) -> str | None:
    """What is wrong with the query's numbers (non-finite, non-positive), or None."""
    for flag in POSITIVE_FLAGS:
        value = getattr(args, flag, None)
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"--{flag}={value:g}: must be a finite number above zero"
    if args.thinking_fraction is not None and not (math.isfinite(args.thinking_fraction)
                                                   and 0 <= args.thinking_fraction <= 1):
        return f"--thinking_fraction={args.thinking_fraction:g}: must be a share in [0, 1]"
    if not (math.isfinite(args.tolerance) and args.tolerance >= 1):
        return f"--tolerance={args.tolerance:g}: must be a finite factor >= 1"
    return None


def check_law_bounds(law, source: str) -> str | None:
    """A law whose estimates lie outside its form's bounds (a negative exponent, say) answers
    nothing meaningful: say which parameter and the bounds."""
    if law.form == COMPUTE_OPTIMAL:
        return None
    from analysis.forms import FORMS
    form = FORMS.get(law.form)
    if form is None:
        return None
    try:
        bounds = form.bounds_for(law.options or {})
    except (ValueError, KeyError, TypeError):
        return None
    for name, value in law.estimates().items():
        low, high = bounds.get(name, (-math.inf, math.inf))
        if not low <= float(value) <= high:
            return (f"cannot use law file {source}: parameter {name} = {float(value):g} is outside the "
                    f"{law.form} form's bounds [{low:g}, {high:g}]")
    return None


def run_recommend(args) -> int:
    import analysis

    try:
        law = analysis.load_law(args.law)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"scaling recommend: cannot use law file {args.law}: {e}", file=sys.stderr)
        return 2
    problem = check_query(args) or check_law_bounds(law, args.law)
    if problem:
        print(f"scaling recommend: {problem}", file=sys.stderr)
        return 2
    try:
        answer = law.recommend(train_flops=args.train_flops, inference_queries=args.inference_queries,
                               tokens_per_query=args.tokens_per_query, total_flops=args.total_flops,
                               max_params=args.max_params, target_loss=args.target_loss, tolerance=args.tolerance,
                               teacher_flops_per_token=args.teacher_flops_per_token,
                               thinking_fraction=args.thinking_fraction, params=args.params, tokens=args.tokens)
    except ValueError as e:
        print(f"scaling recommend: {e}", file=sys.stderr)
        return 2
    try:
        from analysis.cli import read_floor
        floor = read_floor(args.floor) if args.floor is not None else law.options.get("floor")
    except ValueError as e:
        print(f"scaling recommend: {e}", file=sys.stderr)
        return 2
    for warning in answer.warnings + tuple(below_floor(answer, floor, args.target_loss)):
        print(f"scaling recommend: warning: {warning}", file=sys.stderr)
    print(json.dumps(answer.to_dict()) if args.json else answer.table())
    return 0
