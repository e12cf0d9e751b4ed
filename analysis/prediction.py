"""A fitted law's prediction, with its bootstrap interval, at given points.

`predict(law, points)` evaluates the law at every row of `points` (a mapping of input name to
values, or a DataFrame) under the point estimates, under every bootstrap draw stored in the law
file and at every point of its likelihood region; the interval is the 2.5-97.5 percentile of the
finite draws, stretched by the law's calibration and widened to cover the region's range
(analysis.answers.interval). Each point also carries the range warnings `scaling recommend`
gives (an input outside the fitted range by more than `tolerance` times).

What a law predicts: the target (e.g. eval_loss) for a form's covariates (N, D, ... as
`law.form.required_covariates`); for an approach-1/2 law, N_opt and D_opt at C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis.answers import INTERVAL, Spread, interval, range_warnings
from analysis.determination import NOT_DETERMINED, Determination, determination
from analysis.law import Law
from analysis.tables import TableError, select_rows

STRING_INPUTS = ("arm",)
KNOWN_INPUTS = ("N", "D", "C", "U", "T", "k", "arm", "x", "r", "g", "L", "difficulty")


@dataclass(frozen=True)
class Estimate:
    """One predicted quantity at one point: the point-law value and its bootstrap interval."""

    estimate: float
    low: float | None
    high: float | None

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class PointPrediction:
    inputs: dict[str, Any]
    quantities: dict[str, Estimate]          # quantity name -> estimate (one for a single-target law)
    warnings: tuple[str, ...] = ()
    observed: dict[str, float] = field(default_factory=dict)   # measured values, where the points give them
    status: Determination = Determination("determined")        # whether the data determine it

    def relative_error(self, name: str | None = None) -> float | None:
        """(estimate - observed) / observed of a quantity (default: the only one) with a measured value."""
        name = name or (next(iter(self.quantities)) if len(self.quantities) == 1 else None)
        if name is None or name not in self.observed or self.observed[name] == 0:
            return None
        return (self.quantities[name].estimate - self.observed[name]) / self.observed[name]

    def _measured(self, name: str) -> dict:
        if name not in self.observed:
            return {}
        return {"observed": self.observed[name], "relative_error": self.relative_error(name)}

    def _quantity(self, q: Estimate) -> dict:
        """A quantity's estimate and interval, or none where the data do not determine it."""
        if self.status.determined:
            return q.to_dict()
        return {"estimate": None, "low": None, "high": None}

    def to_dict(self) -> dict:
        status = self.status.to_dict()
        if len(self.quantities) == 1:
            (name, q), = self.quantities.items()
            return {**self._quantity(q), "quantity": name, **status, **self._measured(name), **self.inputs}
        return {**{name: {**self._quantity(q), **self._measured(name)} for name, q in self.quantities.items()},
                **status, **self.inputs}


@dataclass(frozen=True)
class Predictions:
    law_form: str
    points: tuple[PointPrediction, ...]
    n_draws: int
    spread: Spread = Spread()

    @property
    def warnings(self) -> tuple[str, ...]:
        seen = []
        for p in self.points:
            seen += [w for w in p.warnings if w not in seen]
        return tuple(seen)

    def to_dict(self) -> dict:
        return {"predictions": [p.to_dict() for p in self.points]}

    def relative_errors(self, name: str | None = None) -> np.ndarray:
        """Relative errors of one quantity (default: every quantity with a measured value)."""
        out = [p.relative_error(q) for p in self.points for q in p.quantities if name in (None, q)]
        return np.array([e for e in out if e is not None])

    def table(self) -> str:
        if not self.points:
            return ""
        inputs = list(self.points[0].inputs)
        measured = any(p.observed for p in self.points)
        header = inputs + ["quantity", "estimate", "95% low", "95% high"] + (["observed", "rel. error"] if measured else [])
        rows, undetermined = [], []
        for p in self.points:
            for name, q in p.quantities.items():
                error = p.relative_error(name)
                extra = ([_fmt(p.observed.get(name)), "-" if error is None else f"{error:+.2%}"] if measured else [])
                values = [_fmt(q.estimate), _fmt(q.low), _fmt(q.high)] if p.status.determined else [NOT_DETERMINED, "", ""]
                rows.append([_fmt(p.inputs[k]) for k in inputs] + [name] + values + extra)
            if not p.status.determined and p.status.text() not in undetermined:
                undetermined.append(p.status.text())
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in [header] + rows]
        if self.n_draws == 0:
            lines.append("note: the law has no bootstrap draws (fitted with --bootstrap=0): no intervals")
        else:
            lines.append(f"intervals: {INTERVAL[0]:g}-{INTERVAL[1]:g} percentiles over {self.n_draws} bootstrap draws"
                         + (f" stretched {self.spread.calibration:.3g}x (calibrated to the profile intervals)"
                            if self.spread.calibration != 1.0 else "")
                         + (f", widened to the range over {self.spread.region} points of the 95% likelihood region"
                            if self.spread.region else ""))
        lines += undetermined
        for name in self.points[0].quantities:
            errors = self.relative_errors(name)
            if errors.size:
                lines.append(f"relative error of {name} against the measured values ({errors.size} points): "
                             f"mean |error| {np.mean(np.abs(errors)):.2%}, max {np.max(np.abs(errors)):.2%}")
        return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.4e}"
    return f"{value:.5g}"


def required_inputs(law: Law) -> tuple[str, ...]:
    """The inputs a law needs to predict."""
    return tuple(law.form.required_covariates(law.settings))


def quantities(law: Law) -> dict[str, dict]:
    """Predicted quantity name -> extra keyword arguments for Law.predict."""
    return {law.target if name is None else name: extra
            for name, extra in law.form.quantities(law.settings).items()}


def _as_frame(points, source: str) -> pd.DataFrame:
    if isinstance(points, pd.DataFrame):
        return points.reset_index(drop=True)
    columns = {k: np.atleast_1d(np.asarray(v, dtype=object)) for k, v in points.items()}
    lengths = {len(v) for v in columns.values() if len(v) != 1}
    if len(lengths) > 1:
        raise TableError(f"{source}: inputs have different numbers of values "
                         f"({', '.join(f'{k}: {len(v)}' for k, v in columns.items())}); give one value or the same "
                         f"number for each")
    n = lengths.pop() if lengths else 1
    return pd.DataFrame({k: np.repeat(v, n) if len(v) == 1 else v for k, v in columns.items()})


def predict(law: Law, points, tolerance: float = 3.0, source: str = "inputs",
            columns: Mapping[str, str] | None = None) -> Predictions:
    """The law at every point (a mapping input -> value(s), or a DataFrame with one column per input),
    with bootstrap intervals and range warnings. `columns` maps inputs to other column names
    (N=N_params, and loss=<column> for the measured target). Where the points hold the measured
    target (the law's target column, or `columns['loss']`), each point gets it and the relative
    error. Raises TableError naming a missing or bad input."""
    frame = _as_frame(points, source)
    columns = dict(columns or {})
    for canon, column in columns.items():
        if column not in frame.columns:
            raise TableError(f"{source}: no column {column!r} (mapped to {canon}); has {list(frame.columns)}")
    frame = frame.assign(**{canon: frame[column] for canon, column in columns.items() if canon != "loss"})
    observed = {}
    for name in quantities(law):
        column = columns.get("loss", law.target) if len(quantities(law)) == 1 else columns.get(name, name)
        if column in frame.columns:
            observed[name] = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    needed = required_inputs(law)
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise TableError(f"{source}: the {law.form} law needs input(s) {missing} (has {list(frame.columns)})")
    inputs: dict[str, np.ndarray] = {}
    for name in needed:
        if name in STRING_INPUTS:
            inputs[name] = frame[name].astype(str).to_numpy()
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0 if name in ("T",) else values <= 0)
        if name == "L":
            bad = ~np.isfinite(values)
        if bad.any():
            raise TableError(f"{source}: input {name!r} has a non-finite, non-numeric or non-positive value "
                             f"({frame[name].iloc[int(np.argmax(bad))]!r} at row {int(np.argmax(bad))})")
        inputs[name] = values
    n_draws = law.n_bootstrap
    per_quantity = {}
    for name, extra in quantities(law).items():
        point = np.broadcast_to(np.asarray(law.predict(**inputs, **extra), dtype=np.float64), (len(frame),))
        draws = (np.asarray(law.predict_draws(**inputs, **extra), dtype=np.float64)
                 .reshape(n_draws + law.n_region, len(frame)) if n_draws else None)
        per_quantity[name] = (point, draws)
    out = []
    for i in range(len(frame)):
        row_inputs = {k: (v[i].item() if isinstance(v[i], np.generic) else v[i]) for k, v in inputs.items()}
        estimates = {}
        for name, (point, draws) in per_quantity.items():
            low, high = (interval(draws[:, i], law.spread, point[i]) if draws is not None else None) or (None, None)
            estimates[name] = Estimate(float(point[i]), low, high)
        numeric = {k: v for k, v in row_inputs.items() if k in ("N", "D", "C", "T") and not isinstance(v, str)}
        if "N" in numeric and "D" in numeric and "C" not in numeric:
            numeric["C"] = 6.0 * numeric["N"] * numeric["D"]
        measured = {name: float(values[i]) for name, values in observed.items() if np.isfinite(values[i])}
        out.append(PointPrediction(row_inputs, estimates, tuple(range_warnings(law, tolerance, **numeric)), measured,
                                   determination(law, **numeric)))
    return Predictions(law.form.name, tuple(out), n_draws, law.spread)


def select_points(frame: pd.DataFrame, where: str, source: str) -> pd.DataFrame:
    """The points (rows) where the pandas query `where` holds."""
    frame = frame.copy()
    frame.attrs["source"] = source
    return select_rows(frame, where).reset_index(drop=True)


def read_points(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        frame = pd.read_csv(path) if path.suffix != ".parquet" else pd.read_parquet(path)
    except FileNotFoundError:
        raise TableError(f"{path}: no such points file") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise TableError(f"{path}: cannot be read as a table: {e}") from None
    if len(frame) == 0:
        raise TableError(f"{path}: no rows")
    return frame
