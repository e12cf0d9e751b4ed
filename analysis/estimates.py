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


@dataclass(frozen=True)
class ParameterEstimate:
    estimate: float
    se: float
    ci: tuple[float, float]

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "se": self.se, "ci": [self.ci[0], self.ci[1]]}


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
