"""Whether the data determine an answer (a prediction, a recommendation): never a bare number for
a quantity they do not.

An answer is not determined when it depends on a parameter the fit marked not_identified
(analysis.uncertainty), or one of its step-1 loss law (a joint law's losses), or when it
extrapolates past EXTRAPOLATION_LIMIT times the fitted range of an input (N, D, C, T). It then carries the reasons and what data would determine it, and is
printed as "not determined by these data" instead of an estimate (docs/fitting.md, "Statuses").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

EXTRAPOLATION_LIMIT = 10.0   # an answer past 10x the fitted range of an input is not determined
NOT_DETERMINED = "not determined by these data"

# what data pin a parameter down (by name, then by the first letters of a per-arm name)
WOULD_DETERMINE = {
    "E": "losses that flatten: data budgets and model sizes spanning two orders of magnitude, or a known floor (--floor)",
    "A": "model sizes spanning at least one order of magnitude", "alpha": "model sizes spanning at least one order of magnitude",
    "B": "data budgets spanning at least one order of magnitude", "beta": "data budgets spanning at least one order of magnitude",
    "gamma_T": "thinking budgets spanning at least two orders of magnitude (and T = 0)",
    "gamma_k": "two or more sample counts k",
    "L0": "accuracies on both sides of the midpoint (losses where accuracy is near its floor and near its top)",
    "kappa": "accuracies on both sides of the midpoint (losses where accuracy is near its floor and near its top)",
    "a": "accuracies approaching the top of the curve", "b": "accuracies at the floor (the weakest models)",
}


@dataclass(frozen=True)
class Determination:
    """'determined', or 'not_determined' with the reasons and what data would determine it."""

    status: str
    reasons: tuple[str, ...] = ()
    would_determine: tuple[str, ...] = ()

    @property
    def determined(self) -> bool:
        return self.status == "determined"

    def to_dict(self) -> dict:
        if self.determined:
            return {"status": self.status}
        return {"status": self.status, "reasons": list(self.reasons), "would_determine": list(self.would_determine)}

    def text(self) -> str:
        """One paragraph for the reader."""
        if self.determined:
            return ""
        return (f"{NOT_DETERMINED}: " + "; ".join(self.reasons)
                + (". What would determine it: " + "; ".join(self.would_determine) if self.would_determine else ""))


def _hint(name: str) -> str:
    for key in sorted(WOULD_DETERMINE, key=len, reverse=True):
        if name == key or name.startswith(key + "_"):
            return WOULD_DETERMINE[key]
    return f"points that vary what {name} multiplies over a wider range"


def determination(law, limit: float = EXTRAPOLATION_LIMIT, depends_on=None, **values) -> Determination:
    """Whether the law determines an answer at these inputs (N, D, C, T; floats or None).
    `depends_on`: the parameters the answer uses (default: all of the law's)."""
    reasons, needs = [], []
    for name, p in law.parameters.items():
        if (depends_on is None or name in depends_on) and p.status == "not_identified":
            reasons.append(f"it depends on {name}, which the data do not determine ({p.reason})")
            needs.append(_hint(name))
    # A two-step law (the joint accuracy law) predicts from its step-1 loss law's losses.
    step1 = getattr(getattr(law, "settings", None), "loss_law", None)
    for name, p in (getattr(step1, "parameters", None) or {}).items():
        if p.status == "not_identified":
            reasons.append(f"it predicts from step 1's loss law, whose {name} the data do not determine ({p.reason})")
            needs.append(_hint(name))
    for name, value in values.items():
        bounds = (law.ranges or {}).get(name)
        if bounds is None or value is None or not np.isfinite(value):
            continue
        low, high = float(bounds[0]), float(bounds[1])
        if (high > 0 and value > high * limit) or (low > 0 and value < low / limit):
            reasons.append(f"{name} = {value:.4g} lies more than {limit:g}x outside the fitted range "
                           f"[{low:.4g}, {high:.4g}]")
            needs.append(f"runs with {name} within {limit:g}x of {value:.4g}")
    if not reasons:
        return Determination("determined")
    return Determination("not_determined", tuple(reasons), tuple(dict.fromkeys(needs)))


def answer_status(law, answer, **query) -> Determination:
    """The status of a budget question's answer (analysis.answers.Recommendation): the law's
    parameters, the budget asked about (C: train_flops or total_flops) and the answer's own N and D
    against the fitted ranges."""
    values = {"C": query.get("train_flops") or query.get("total_flops"), "N": query.get("params"),
              "D": query.get("tokens")}
    for name in ("N", "D"):
        q = answer.quantities.get(name)
        if values[name] is None and q is not None and isinstance(q.estimate, (int, float, np.number)):
            values[name] = float(q.estimate)
    return determination(law, **{k: v for k, v in values.items() if v is not None})


def with_status(law, answer, **query):
    """The answer (a Recommendation) carrying its status (answer_status)."""
    return dataclasses.replace(answer, status=answer_status(law, answer, **query))
