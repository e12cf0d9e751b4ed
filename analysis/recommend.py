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

CHINCHILLA_PARAMETERS = ("E", "A", "B", "alpha", "beta")
INTERVAL = (2.5, 97.5)


# ---------------------------------------------------------------------------------------------
# Pure math on parameter mappings (floats, or arrays of bootstrap draws that broadcast together)
# ---------------------------------------------------------------------------------------------

def chinchilla_loss(p: Mapping[str, Any], n, d):
    """L = E + A / N^alpha + B / D^beta."""
    return p["E"] + p["A"] / np.power(n, p["alpha"]) + p["B"] / np.power(d, p["beta"])


def chinchilla_optimum(p: Mapping[str, Any], train_flops):
    """The (N, D) minimising L(N, D) subject to 6ND = train_flops, in closed form."""
    alpha, beta = np.asarray(p["alpha"], float), np.asarray(p["beta"], float)
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


def inference_aware_optimum(p: Mapping[str, Any], target_loss, inference_tokens, max_params=None,
                            iterations: int = 200):
    """(N, D, total FLOPs) reaching target_loss at least 6ND + 2N x inference_tokens.

    D(N) is exact on the constraint, so the search is one-dimensional in log N, between the
    smallest size that can reach the target and the size that is optimal without inference
    (inference demand only ever shrinks the model). Golden-section search, vectorised over draws.
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
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = cost(c), cost(d)
    for _ in range(iterations):
        left = fc < fd
        a, b = np.where(left, a, c), np.where(left, d, b)
        c_next = np.where(left, b - ratio * (b - a), d)
        d_next = np.where(left, c, a + ratio * (b - a))
        fc, fd = np.where(left, cost(c_next), fd), np.where(left, fc, cost(d_next))
        c, d = c_next, d_next
    n = np.exp((a + b) / 2.0)
    dd = tokens_to_reach(p, target_loss, n)
    total = 6.0 * n * dd + 2.0 * n * inference_tokens
    nan = np.full(np.shape(n), np.nan)
    return (np.where(feasible, n, nan), np.where(feasible, dd, nan), np.where(feasible, total, nan))


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
    return {name: float(p.estimate) for name, p in law.parameters.items()}


def draw_parameters(law) -> dict[str, np.ndarray]:
    return {name: np.asarray(v, float) for name, v in (law.bootstrap_samples or {}).items()}


def _require_chinchilla(law, question: str) -> None:
    missing = [k for k in CHINCHILLA_PARAMETERS if k not in law.parameters]
    if missing:
        raise ValueError(f"{question} needs a law with Chinchilla parameters E, A, B, alpha, beta; "
                         f"law of form {law.form!r} lacks {', '.join(missing)}")


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
    if max_params is not None and n >= max_params:
        notes.append(f"capped at --max_params {_fmt(max_params)}: the unconstrained optimum is larger")
    return Recommendation(
        "Compute-optimal allocation (Chinchilla closed form)",
        {"N": _quantity(n, dn, "parameters"), "D": _quantity(d, dd, "tokens"),
         "predicted_loss": _quantity(loss, dl, law.target)},
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
