"""The law file: a fitted law with its uncertainty, as JSON (DESIGN.md "Law file").

The bootstrap draws are stored with the estimates so that an interval can be carried through
any function of the parameters (an optimal allocation, a predicted accuracy) by evaluating it
on every draw.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

SCHEMA_VERSION = 1
COMPUTE_OPTIMAL = "compute_optimal"  # the form name of approach-1/2 laws
HYPERPARAMETERS = "hyperparameters"  # Step Law: lr*(N, D) and batch*(D), analysis.hyperparameters
TWO_STEP = "two_step"                # OLMo ladder: (N, D) -> task loss -> accuracy, analysis.two_step


class LawError(ValueError):
    """A law file that cannot be used, with the reason and the file."""


@dataclass(frozen=True)
class ParameterEstimate:
    estimate: float
    se: float
    ci: tuple[float, float]

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "se": self.se, "ci": [self.ci[0], self.ci[1]]}


@dataclass(frozen=True)
class Law:
    form: str
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
    schema_version: int = SCHEMA_VERSION
    options: dict[str, Any] = field(default_factory=dict)

    # -- prediction ----------------------------------------------------------------------------
    def estimates(self) -> dict[str, float]:
        """Point estimates, fixed parameters (e.g. a given base law) included."""
        return {**self.options.get("fixed", {}), **{k: p.estimate for k, p in self.parameters.items()}}

    def predict(self, **covariates) -> np.ndarray:
        """The target at the covariates, e.g. law.predict(N=1e9, D=2e10); for approach 1/2 laws
        law.predict(C=1e21) gives N_opt and law.predict(C=1e21, quantity="D") gives D_opt."""
        return self._evaluate(self.estimates(), covariates)

    def predict_draws(self, **covariates) -> np.ndarray:
        """The prediction under every bootstrap draw: shape [n_bootstrap, *covariate shape]."""
        names = list(self.bootstrap_samples)
        if not names:
            raise LawError("this law has no bootstrap draws (fitted with bootstrap=0)")
        fixed = self.options.get("fixed", {})
        n = len(self.bootstrap_samples[names[0]])
        return np.stack([self._evaluate({**fixed, **{k: self.bootstrap_samples[k][i] for k in names}}, covariates)
                         for i in range(n)])

    def _evaluate(self, params: Mapping[str, float], covariates: Mapping) -> np.ndarray:
        if self.form == COMPUTE_OPTIMAL:
            quantity = covariates.get("quantity", "N")
            if quantity not in ("N", "D") or "C" not in covariates:
                raise LawError("an approach-1/2 law predicts N_opt or D_opt: predict(C=..., quantity='N'|'D')")
            exponent, prefactor = (params["a"], params["k_N"]) if quantity == "N" else (params["b"], params["k_D"])
            return prefactor * np.asarray(covariates["C"], dtype=np.float64) ** exponent
        if self.form == TWO_STEP:
            if "N" not in covariates or "D" not in covariates:
                raise LawError("a two-step law predicts at N and D: predict(N=..., D=..., quantity='accuracy'|'task_loss')")
            from analysis.two_step import predict_two_step
            return predict_two_step(params, covariates["N"], covariates["D"], covariates.get("quantity", "accuracy"))
        if self.form == HYPERPARAMETERS:
            if "N" not in covariates or "D" not in covariates:
                raise LawError("a hyperparameter law predicts at N and D: predict(N=..., D=..., quantity='lr'|'batch_size')")
            from analysis.hyperparameters import predict_hyperparameters
            return predict_hyperparameters(params, covariates["N"], covariates["D"], covariates.get("quantity", "lr"))
        from analysis.forms import get_form
        return get_form(self.form).predict(params, self.options, **covariates)

    def recommend(self, **query):
        from analysis.recommend import recommend
        return recommend(self, **query)

    # -- storage -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "form": self.form,
            "target": self.target,
            "approach": self.approach,
            "parameters": {k: p.to_dict() for k, p in self.parameters.items()},
            "bootstrap_samples": {k: np.asarray(v, dtype=float).tolist() for k, v in self.bootstrap_samples.items()},
            "ranges": self.ranges,
            "objective": self.objective,
            "huber_delta": self.huber_delta,
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "converged": self.converged,
            "heldout": self.heldout,
            "data_hash": self.data_hash,
            "options": self.options,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file in the same folder, then os.replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_jsonable(self.to_dict()), indent=1, allow_nan=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "law") -> "Law":
        return _validated(data, source)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _validated(data: Mapping, source: str) -> Law:
    def fail(problem: str):
        raise LawError(f"{source}: {problem}")

    if not isinstance(data, Mapping):
        fail("not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        fail(f"schema_version {version!r} is not the supported {SCHEMA_VERSION}")
    for key in ("form", "target", "approach", "parameters", "ranges", "objective", "n_points"):
        if key not in data:
            fail(f"missing field {key!r}")
    form = data["form"]
    options = dict(data.get("options") or {})
    if form == COMPUTE_OPTIMAL:
        expected = ("a", "b", "k_N", "k_D")
    elif form == HYPERPARAMETERS:
        expected = ("k_lr", "a_lr", "b_lr", "k_bs", "b_bs")
    elif form == TWO_STEP:
        expected = ("E", "A", "B", "alpha", "beta", "a", "x0", "k", "b")
    else:
        from analysis.forms import FORMS
        if form not in FORMS:
            fail(f"unknown form {form!r} (known: {', '.join(FORMS)}, {COMPUTE_OPTIMAL}, {HYPERPARAMETERS}, {TWO_STEP})")
        expected = FORMS[form].parameter_names_for(options)
    params = data["parameters"]
    missing = [name for name in expected if name not in params]
    if missing:
        fail(f"parameters {missing} missing for form {form!r}")
    estimates = {}
    for name, p in params.items():
        try:
            est, (lo, hi) = float(p["estimate"]), p["ci"]
            se, lo, hi = (math.nan if v is None else float(v) for v in (p["se"], lo, hi))
        except (KeyError, TypeError, ValueError):
            fail(f"parameter {name!r} must be {{'estimate', 'se', 'ci': [low, high]}}, got {p!r}")
        if not math.isfinite(est):
            fail(f"parameter {name!r} has a non-finite estimate {est}")
        estimates[name] = ParameterEstimate(est, se, (lo, hi))
    draws = {k: np.asarray(v, dtype=np.float64) for k, v in (data.get("bootstrap_samples") or {}).items()}
    lengths = {len(v) for v in draws.values()}
    if len(lengths) > 1:
        fail(f"bootstrap_samples have unequal lengths {sorted(lengths)}")
    return Law(form=form, target=data["target"], approach=int(data["approach"]), parameters=estimates,
               bootstrap_samples=draws, ranges=dict(data["ranges"]), objective=float(data["objective"]),
               huber_delta=float(data.get("huber_delta") or 0.0), n_points=int(data["n_points"]),
               n_starts=int(data.get("n_starts") or 0), converged=bool(data.get("converged", False)),
               heldout=dict(data.get("heldout") or {}), data_hash=str(data.get("data_hash", "")),
               schema_version=int(version), options=options)


def load_law(path: str | os.PathLike) -> Law:
    """Read and validate a law file; raises LawError naming the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LawError(f"{path}: no such law file") from None
    except json.JSONDecodeError as e:
        raise LawError(f"{path}: not valid JSON ({e})") from None
    return _validated(data, str(path))
