"""An answer to a budget question or a prediction: quantities with bootstrap intervals, notes and
range warnings, and how they are printed."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from analysis.determination import NOT_DETERMINED, Determination

INTERVAL = (2.5, 97.5)


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
    """One answered question: its quantities (ordered), notes for the reader and range warnings.
    `notes` state the question's inputs; `derived` notes state numbers computed from the answer
    (tokens per parameter, a reference optimum) and are shown only where the answer is determined."""

    question: str
    quantities: dict[str, Quantity]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    status: Determination = Determination("determined")   # whether the data determine the answer
    derived: tuple[str, ...] = ()

    @property
    def shown_notes(self) -> tuple[str, ...]:
        """The notes for the reader: without the derived ones where the data do not determine the answer."""
        return self.notes + self.derived if self.status.determined else self.notes

    def __getitem__(self, name: str) -> Quantity:
        return self.quantities[name]

    def to_dict(self) -> dict:
        """The --json object: recommended quantity -> {"estimate", "ci": [low, high]} (both null
        where the data do not determine the answer), and its `status`."""
        if not self.status.determined:
            return {**{name: {"estimate": None, "ci": None} for name in self.quantities}, "status": self.status.to_dict()}
        return {**{name: q.to_dict() for name, q in self.quantities.items()}, "status": self.status.to_dict()}

    def table(self) -> str:
        if not self.status.determined:
            rows = [(name, NOT_DETERMINED, "", q.unit) for name, q in self.quantities.items()]
        else:
            rows = [(name, fmt(q.estimate), "" if q.ci is None else f"[{fmt(q.ci[0])}, {fmt(q.ci[1])}]", q.unit)
                    for name, q in self.quantities.items()]
        widths = [max(len(r[i]) for r in rows + [("quantity", "estimate", "95% interval", "unit")])
                  for i in range(4)]
        lines = [self.question, ""]
        for row in [("quantity", "estimate", "95% interval", "unit")] + rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        lines += [f"note: {n}" for n in self.shown_notes]
        if not self.status.determined:
            lines.append(self.status.text())
        return "\n".join(lines)


def fmt(value) -> str:
    if isinstance(value, str):
        return value
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"


@dataclasses.dataclass(frozen=True)
class Spread:
    """How an answer's values under a law's draws (Law.predict_draws' rows) give its interval
    (Law.spread): the last `region` rows are the likelihood region's points, and the bootstrap
    draws' percentiles are stretched `calibration` times about the estimate (the median over the
    identified parameters of how far short of their profile intervals the draws fall)."""

    region: int = 0
    calibration: float = 1.0


def interval(draws, spread: Spread = Spread(), center: float | None = None) -> tuple[float, float] | None:
    """An answer's 95% interval from its values under the law's draws: the bootstrap draws'
    2.5-97.5 percentiles (stretched about `center`, the answer at the estimates, by the spread's
    calibration), widened to cover the answer's range over the likelihood region's points. The
    range is the part valid where the bootstrap is not (a parameter near a bound: docs/fitting.md)."""
    low, high = band(np.asarray(draws, float)[:, None], spread, None if center is None else [center])
    return None if np.isnan(low[0]) else (float(low[0]), float(high[0]))


def band(draws: np.ndarray, spread: Spread = Spread(), center=None) -> tuple[np.ndarray, np.ndarray]:
    """`interval` along the columns of draws [B + region, K] (a figure's band; `center` [K]): NaN
    where fewer than two bootstrap values are finite."""
    draws = np.asarray(draws, float)
    boot, points = draws[:len(draws) - spread.region], draws[len(draws) - spread.region:]
    low, high = np.full(draws.shape[1], np.nan), np.full(draws.shape[1], np.nan)
    for k in range(draws.shape[1]):
        column = boot[:, k][np.isfinite(boot[:, k])]
        if column.size < 2:
            continue
        low[k], high[k] = np.percentile(column, INTERVAL)
        mid = None if center is None else float(center[k])
        if mid is not None and np.isfinite(mid) and spread.calibration != 1.0:
            low[k] = mid - spread.calibration * max(mid - low[k], 0.0)
            high[k] = mid + spread.calibration * max(high[k] - mid, 0.0)
        reached = points[:, k][np.isfinite(points[:, k])]
        if reached.size:
            low[k], high[k] = min(low[k], reached.min()), max(high[k], reached.max())
    return low, high


def quantity(point, draws, unit: str, spread: Spread) -> Quantity:
    """The answer at the point estimates with its interval (`interval`; `spread`: Law.spread, which
    says which of the draws are the likelihood region's, so it has no default)."""
    return Quantity(float(point), interval(draws, spread, float(point)) if np.size(draws) else None, unit)


def range_warnings(law, tolerance: float, **values) -> list[str]:
    """Warn for each value (N, D, C, T) outside the law's fitted range by more than `tolerance`x."""
    out = []
    for name, value in values.items():
        bounds = (law.ranges or {}).get(name)
        if bounds is None or value is None or not np.isfinite(value):
            continue
        low, high = float(bounds[0]), float(bounds[1])
        if value > high * tolerance or value < low / tolerance:
            out.append(f"{name} = {fmt(value)} is outside the fitted range [{fmt(low)}, {fmt(high)}] "
                       f"by more than the tolerance factor {tolerance:g}: an extrapolation")
    return out


def below_floor(answer: Recommendation, floor: float | None, target_loss: float | None = None) -> list[str]:
    """Warnings for every predicted loss of the answer (and a target loss) below a known floor."""
    if floor is None:
        return []
    out = [f"{name} = {fmt(q.estimate)} is below the true irreducible loss {fmt(floor)}: no model can reach it"
           for name, q in answer.quantities.items()
           if "loss" in name and isinstance(q.estimate, (int, float, np.number)) and q.estimate < floor]
    if target_loss is not None and target_loss < floor:
        out.append(f"target_loss = {fmt(target_loss)} is below the true irreducible loss {fmt(floor)}: unreachable")
    return out
