"""The law file: a fitted law with its uncertainty, as JSON (docs/fitting.md, "The law file").

The bootstrap draws are stored with the estimates so that an interval can be carried through
any function of the parameters (an optimal allocation, a predicted accuracy) by evaluating it
on every draw. A law file keeps the form's settings (`settings`, the form's typed options) apart
from what the fit measured about itself (`diagnostics`). Files of schema_version 1, which held
both in one `options` object, load too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from analysis import law_view
from analysis.answers import Spread
from analysis.atomic import write_json_atomic
from analysis.estimates import PARAMETER_STATUSES, Estimates, LawError, ParameterEstimate
from analysis.forms import FORMS, FormOptions, LawForm, get_form
from analysis.questions import recommend

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class Law:
    """A fitted law: its form object (given by name or as the object; resolved once, here), the
    form's typed settings, and what the estimator measured (the fields of analysis.estimates.Estimates)."""

    form: LawForm
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
    settings: FormOptions | Mapping[str, Any] | None = None   # the form's options (a mapping is typed here)
    diagnostics: dict[str, Any] = field(default_factory=dict)  # what the fit measured about itself
    # the profiles' refits inside the 95% likelihood region (analysis.uncertainty.likelihood_region):
    # every answer's interval covers its range over them (analysis.answers.interval)
    region_samples: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        form = get_form(self.form)
        object.__setattr__(self, "form", form)
        object.__setattr__(self, "settings", typed_settings(form, self.settings))

    @classmethod
    def from_estimates(cls, form: LawForm, settings: FormOptions, estimates: Estimates) -> "Law":
        """Wrap an estimator's result: `estimates.settings` (what the estimator completed) over `settings`."""
        fields = {f.name: getattr(estimates, f.name) for f in dataclasses.fields(Estimates)}
        completed = fields.pop("settings")
        return cls(form=form, settings=settings.replace(**completed) if completed else settings, **fields)

    # -- prediction ----------------------------------------------------------------------------
    def estimates(self) -> dict[str, float]:
        """Point estimates, parameters the settings fix (e.g. a given base law) included."""
        fixed = self.form.fixed_parameters(self.settings)
        return {**fixed, **{k: p.estimate for k, p in self.parameters.items()}}

    def predict(self, **covariates) -> np.ndarray:
        """The target at the covariates, e.g. law.predict(N=1e9, D=2e10); for approach 1/2 laws
        law.predict(C=1e21) gives N_opt and law.predict(C=1e21, quantity="D") gives D_opt."""
        return self.form.predict(self.estimates(), self.settings, **covariates)

    def predict_draws(self, **covariates) -> np.ndarray:
        """The prediction under every bootstrap draw, then at every point of the likelihood region
        (the last `n_region` rows; each with step 1's point estimate where the form has a step 1):
        shape [n_bootstrap + n_region, *covariate shape]. analysis.answers.interval reads it."""
        boot = self.form.predict_draws(self.draws(), self.settings, **covariates)
        if not self.n_region:
            return boot
        region = self.form.predict_each(self.draws(self.region_parameters()), self.settings, **covariates)
        return np.concatenate([np.asarray(boot), np.asarray(region)])

    def region_parameters(self) -> dict[str, np.ndarray]:
        """Per parameter the bootstrap draws have, its values at the likelihood region's points; a
        parameter the region lacks (a multiplier refitted in raw tokens) holds its estimate there."""
        return {name: np.asarray(self.region_samples[name], float) if name in self.region_samples
                else np.full(self.n_region, float(self.parameters[name].estimate)) for name in self.bootstrap_samples}

    def draws(self, samples: Mapping[str, np.ndarray] | None = None) -> list[dict[str, float]]:
        """The parameters of every bootstrap draw (or of `samples`), fixed parameters included."""
        samples = self.bootstrap_samples if samples is None else samples
        names = list(samples)
        if not names:
            raise LawError("this law has no bootstrap draws (fitted with bootstrap=0)")
        fixed = self.form.fixed_parameters(self.settings)
        return [{**fixed, **{k: samples[k][i] for k in names}} for i in range(len(samples[names[0]]))]

    @property
    def n_bootstrap(self) -> int:
        return len(next(iter(self.bootstrap_samples.values()))) if self.bootstrap_samples else 0

    @property
    def spread(self) -> Spread:
        """How answers' intervals read this law's draws (analysis.answers.Spread)."""
        calibration = (self.diagnostics.get("bootstrap") or {}).get("calibration", 1.0)
        return Spread(self.n_region, float(calibration))

    @property
    def n_region(self) -> int:
        """Points of the likelihood region that follow the bootstrap's draws in predict_draws (none
        without draws: the law then gives no intervals)."""
        if not self.n_bootstrap or not self.region_samples:
            return 0
        return len(next(iter(self.region_samples.values())))

    def recommend(self, **query):
        """Answer a budget question (analysis.recommend.recommend)."""
        return recommend(self, **query)

    def undetermined(self) -> dict[str, str]:
        """Parameters the data do not determine (status not_identified), with the reason: an
        answer that depends on one is not given as a number."""
        return {k: p.reason for k, p in self.parameters.items() if not p.determined}

    def replace(self, **changes) -> "Law":
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:  # one line: the estimates and intervals, never the bootstrap draws
        return law_view.short_repr(self)

    def _repr_html_(self) -> str:  # the notebook view
        return law_view.html_table(self)

    # -- storage -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "form": self.form.name,
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
            "settings": self.settings.to_dict(),
            "diagnostics": self.diagnostics,
            "region_samples": {k: np.asarray(v, dtype=float).tolist() for k, v in self.region_samples.items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the law file atomically."""
        return write_json_atomic(path, _jsonable(self.to_dict()), allow_nan=False)

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


def typed_settings(form: LawForm, settings: FormOptions | Mapping[str, Any] | None) -> FormOptions:
    """The form's typed settings from a mapping (a law file's) or as given; a setting that holds a
    law (metadata `law`, e.g. joint_inference's loss_law) is read from its JSON into a Law."""
    if isinstance(settings, FormOptions):
        return form.options_from(settings)
    settings = dict(settings or {})
    for f in dataclasses.fields(form.Options):
        if f.metadata.get("law") and isinstance(settings.get(f.name), Mapping):
            settings[f.name] = Law.from_dict(settings[f.name], f"setting {f.name}")
    return form.options_from(settings)


def _split_version_1_options(form, options: Mapping) -> tuple[dict, dict]:
    """A schema_version 1 `options` object as (settings, diagnostics): the keys the form's options
    dataclass has are settings; `fixed` (a copy of `base`) is dropped; the rest are diagnostics."""
    fields = {f.name for f in dataclasses.fields(form.Options)}
    settings = {k: v for k, v in options.items() if k in fields}
    diagnostics = {k: v for k, v in options.items() if k not in fields and k != "fixed"}
    return settings, diagnostics


def _validated(data: Mapping, source: str) -> Law:
    def fail(problem: str):
        raise LawError(f"{source}: {problem}")

    if not isinstance(data, Mapping):
        fail("not a JSON object")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        fail(f"schema_version {version!r} is not one this code reads ({', '.join(map(str, READABLE_VERSIONS))}); "
             f"refit the law, or load it with the version of this package that wrote it")
    for key in ("form", "target", "approach", "parameters", "ranges", "objective", "n_points"):
        if key not in data:
            fail(f"missing field {key!r}")
    name = data["form"]
    if name not in FORMS:
        fail(f"unknown form {name!r} (known: {', '.join(FORMS)})")
    form = get_form(name)
    if version == 1:
        settings, diagnostics = _split_version_1_options(form, dict(data.get("options") or {}))
    else:
        settings, diagnostics = dict(data.get("settings") or {}), dict(data.get("diagnostics") or {})
    try:
        settings = typed_settings(form, settings)
        expected = form.parameter_names_for(settings)
    except (ValueError, TypeError) as e:   # a law setting's LawError too, named with this file
        fail(f"settings of form {name!r}: {e}")
    params = data["parameters"]
    if not isinstance(params, Mapping):
        fail(f"field 'parameters' must be a JSON object of name -> estimate, got {params!r}")
    missing = [p for p in expected if p not in params]
    if missing:
        fail(f"parameters {missing} missing for form {name!r}")
    estimates = {}
    for pname, p in params.items():
        try:
            est, (lo, hi) = float(p["estimate"]), p["ci"]
            se, lo, hi = (math.nan if v is None else float(v) for v in (p["se"], lo, hi))
        except (KeyError, TypeError, ValueError):
            fail(f"parameter {pname!r} must be {{'estimate', 'se', 'ci': [low, high]}}, got {p!r}")
        if not math.isfinite(est):
            fail(f"parameter {pname!r} has a non-finite estimate {est}")
        status = p.get("status")
        if status is not None and status not in PARAMETER_STATUSES:
            fail(f"parameter {pname!r} has status {status!r}; known: {', '.join(PARAMETER_STATUSES)}")
        profile = p.get("profile_ci")
        if profile is not None:  # JSON null: unbounded on that side
            profile = (-math.inf if profile[0] is None else float(profile[0]),
                       math.inf if profile[1] is None else float(profile[1]))
        estimates[pname] = ParameterEstimate(est, se, (lo, hi), status, str(p.get("reason", "")), profile,
                                             str(p.get("method", "bootstrap percentile")))
    typed = {}
    for key, kind, default in (("approach", int, None), ("objective", float, None), ("huber_delta", float, 0.0),
                               ("n_points", int, None), ("n_starts", int, 0)):
        value = data.get(key) or default if default is not None else data[key]
        try:
            typed[key] = kind(value)
        except (TypeError, ValueError):
            fail(f"field {key!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    for key in ("ranges", "heldout", "bootstrap_samples", "region_samples"):
        if not isinstance(data.get(key) or {}, Mapping):
            fail(f"field {key!r} must be a JSON object, got {data[key]!r}")
    samples = {}
    for key in ("bootstrap_samples", "region_samples"):
        try:
            samples[key] = {k: np.asarray(v, dtype=np.float64) for k, v in (data.get(key) or {}).items()}
        except (TypeError, ValueError) as e:
            fail(f"field {key!r} must hold lists of numbers ({e})")
        lengths = {len(v) for v in samples[key].values()}
        if len(lengths) > 1:
            fail(f"{key} have unequal lengths {sorted(lengths)}")
    return Law(form=form, target=data["target"], approach=typed["approach"], parameters=estimates,
               bootstrap_samples=samples["bootstrap_samples"], region_samples=samples["region_samples"],
               ranges=dict(data["ranges"]), objective=typed["objective"],
               huber_delta=typed["huber_delta"], n_points=typed["n_points"],
               n_starts=typed["n_starts"], converged=bool(data.get("converged", False)),
               heldout=dict(data.get("heldout") or {}), data_hash=str(data.get("data_hash", "")),
               settings=settings, diagnostics=diagnostics)


def load_law(path: str | os.PathLike) -> Law:
    """Read and validate a law file; raises LawError naming the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LawError(f"{path}: no such law file") from None
    except IsADirectoryError:
        raise LawError(f"{path}: a folder, not a law file") from None
    except UnicodeDecodeError as e:
        raise LawError(f"{path}: not a law file (not UTF-8 text: {e.reason} at byte {e.start})") from None
    except OSError as e:
        raise LawError(f"{path}: cannot be read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise LawError(f"{path}: not valid JSON ({e})") from None
    return _validated(data, str(path))
