"""What an estimator measured, as typed records below the forms and the law (docs/architecture.md).

An estimator (analysis.isoflop, analysis.porian, analysis.hyperparameters, analysis.two_step, the
multistart fitter of analysis.fitting) returns `Estimates`; `analysis.fitting.fit` wraps them with
the form object and its settings into a `Law` (analysis.law). Keeping these records here, with no
import of the forms or the law, is what lets a form call its estimator without an import loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


class LawError(ValueError):
    """A law file that cannot be used, or a law asked what it cannot answer, with the reason."""


PARAMETER_STATUSES = ("identified", "at_bound", "not_identified", "fixed")
BOOTSTRAP = 1000  # refits per law, for `scaling fit` and `scaling report` alike


@dataclass(frozen=True)
class ParameterEstimate:
    """An estimate, its standard error and 95% interval, and whether the data determine it
    (`status`, with the `reason`): the interval is the bootstrap's percentiles for an identified
    parameter and the profile likelihood's (`profile_ci`, valid at a bound) otherwise (`method`).
    Files written before statuses existed load with status None."""

    estimate: float
    se: float
    ci: tuple[float, float]
    status: str | None = None
    reason: str = ""
    profile_ci: tuple[float, float] | None = None
    method: str = "bootstrap percentile"

    @property
    def determined(self) -> bool:
        """False when the data do not determine the parameter (status not_identified)."""
        return self.status != "not_identified"

    def to_dict(self) -> dict:
        out = {"estimate": self.estimate, "se": self.se, "ci": [self.ci[0], self.ci[1]]}
        if self.status is not None:
            out.update(status=self.status, reason=self.reason, method=self.method)
            if self.profile_ci is not None:
                out["profile_ci"] = [self.profile_ci[0], self.profile_ci[1]]
        return out


@dataclass(frozen=True)
class Estimates:
    """One fit's result without its form: the fields a Law has besides `form` (the estimator may
    complete the form's settings, e.g. with its defaults: `settings`, merged over the given ones)."""

    target: str
    approach: int
    parameters: dict[str, ParameterEstimate]
    bootstrap_samples: dict[str, np.ndarray]
    ranges: dict[str, list[float]]
    objective: float
    huber_delta: float
    n_points: int
    n_starts: int
    converged: bool
    heldout: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
