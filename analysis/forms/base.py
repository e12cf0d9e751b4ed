"""What a law form is, and the registry of forms by name.

A form is an object (one per form, registered with `@register`) with a frozen options dataclass
(`Options`, its settings as the law file stores them) and methods that say what it supports, so
that fitting, prediction, recommendation, the report and the CLI ask the form instead of matching
names. Forms fitted by the multistart Huber estimator (analysis.fitting) are `CurveForm`s: they
add the unconstrained parameter vector `theta` the optimiser moves, with its starts and bounds.

Each module of the analysis.forms package defines one form, registered when the package imports
it (analysis/forms/__init__.py); docs/fitting.md shows one. The registry's names are re-exported
here for the code that imported them from this module.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from analysis import chinchilla
from analysis.forms.registry import FORMS, form_of_approach, forms_with_option, get_form, register  # noqa: F401

if TYPE_CHECKING:
    import jax


@dataclasses.dataclass(frozen=True)
class FormOptions:
    """A form's settings. Subclasses add fields (with defaults); a law file stores `to_dict()`. A
    field whose metadata has `law: True` holds a Law (analysis.law reads it from its JSON)."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], form_name: str) -> "FormOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            elsewhere = "".join(f"; {name} is an option of --form={' or --form='.join(owners)}"
                                for name in unknown if (owners := forms_with_option(name)))
            raise ValueError(f"form {form_name!r} has no option(s) {unknown}; its options are "
                             f"{sorted(known) or 'none'}{elsewhere}")
        return cls(**{k: _frozen(v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes) -> "FormOptions":
        return dataclasses.replace(self, **{k: _frozen(v) for k, v in changes.items()})


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def _plain(value):
    """A setting as JSON: tuples as lists, a law (a setting such as joint_inference's loss_law) as its dict."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return list(value) if isinstance(value, tuple) else value


@dataclasses.dataclass(frozen=True)
class CurveOptions(FormOptions):
    """Settings every form fitted by analysis.fitting has: the objective, and a known floor for
    the irreducible loss E (forms whose `log_e_index` is not None)."""

    objective: str | None = None       # "huber_log" or "squared_loss" (None: the form's default)
    floor: float | None = None         # a known irreducible loss
    floor_mode: str = "bound"          # "bound": E >= floor; "fix": E = floor


OBJECTIVES = ("huber_log", "squared_loss", "binomial")
FLOOR_MODES = ("bound", "fix")


class LawForm:
    """A law's functional form: its settings, parameters, prediction and what it supports."""

    name: ClassVar[str]
    description: ClassVar[str]
    paper: ClassVar[str]
    covariates: ClassVar[tuple[str, ...]]
    Options: ClassVar[type[FormOptions]] = FormOptions
    log_target: ClassVar[bool] = True       # fitted on log(target) (a loss), else on the target
    # the approaches of Hoffmann et al. whose law this form is (compute_optimal: 1 and 2)
    approaches: ClassVar[tuple[int, ...]] = (3,)
    # the names of the budget questions (analysis.questions) it answers
    questions: ClassVar[tuple[str, ...]] = ()

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<law form {self.name!r}>"

    # -- settings ------------------------------------------------------------------------------
    def options_from(self, options: Mapping | FormOptions | None = None) -> FormOptions:
        """Typed settings from a mapping (a law file's, or keyword arguments), refusing unknown keys."""
        if isinstance(options, self.Options):
            return options
        return self.Options.from_mapping(dict(options or {}), self.name)

    def prepare(self, options: FormOptions, frame) -> FormOptions:
        """Settings completed from the data before a fit (e.g. the arms a table holds)."""
        return options

    # -- parameters and covariates ---------------------------------------------------------------
    def parameter_names_for(self, options: Mapping | FormOptions | None = None) -> tuple[str, ...]:
        raise NotImplementedError

    def fixed_parameters(self, options: FormOptions) -> dict[str, float]:
        """Parameters the settings fix (not fitted) that prediction needs, e.g. a given base law."""
        return {}

    def required_covariates(self, options: Mapping | FormOptions | None = None) -> tuple[str, ...]:
        return self.covariates

    def quantities(self, options: FormOptions) -> dict[str, dict]:
        """Predicted quantity name -> extra keyword arguments for predict (None: the law's target)."""
        return {None: {}}

    def bounds_for(self, options: Mapping | FormOptions | None = None) -> dict[str, tuple[float, float]]:
        return {name: (-np.inf, np.inf) for name in self.parameter_names_for(options)}

    def min_points(self, options: FormOptions) -> int | None:
        """Fewest points the form may be fitted to (None: the estimator's default per parameter)."""
        return None

    # -- what it supports --------------------------------------------------------------------------
    def log_e_index(self, options: FormOptions) -> int | None:
        """Where log E sits in theta, for forms with a fitted irreducible loss E (a floor applies)."""
        return None

    def arms(self, options: FormOptions) -> list[str]:
        """The pretraining arms the law distinguishes (empty: none)."""
        return []

    def chinchilla_closed_forms(self, options: FormOptions) -> bool:
        """Whether the (reference-arm) loss is E + A/N^alpha + B/D^beta, so analysis.chinchilla's
        closed forms answer compute-optimal and inference-aware questions."""
        return False

    def optimal_allocation(self, params: Mapping[str, Any], flops):
        """(N_opt, D_opt) at training compute `flops`: the Chinchilla closed form for a law with its
        parameters E, A, B, alpha, beta, else ValueError."""
        if all(name in params for name in chinchilla.NAMES):
            return chinchilla.chinchilla_optimum(params, flops)
        raise ValueError(f"law of form {self.name!r} has neither Chinchilla parameters nor the power-law "
                         f"coefficients k_N, a, k_D, b: no compute-optimal frontier to draw")

    # -- fitting and prediction ----------------------------------------------------------------
    def fit(self, table, options: FormOptions, *, approach: int, target: str, columns, bootstrap: int,
            huber_delta: float, heldout_fraction: float, seed: int, fit_curve):
        """The form's own estimator, returning analysis.estimates.Estimates (analysis.fitting.fit
        wraps them in a Law). `fit_curve` is analysis.fitting.fit_form, for an estimator that fits a
        curve form as one step. CurveForms have none: analysis.fitting fits them."""
        raise NotImplementedError

    def predict(self, params: Mapping[str, float], options: Mapping | FormOptions | None = None, **covariates):
        raise NotImplementedError

    def predict_draws(self, draws: list[Mapping[str, float]], options: Mapping | FormOptions | None = None,
                      **covariates) -> np.ndarray:
        """`predict` under each parameter set of `draws`, stacked on a leading axis."""
        return np.stack([self.predict(params, options, **covariates) for params in draws])

    # -- a fitted law in words (`scaling fit`'s summary) ----------------------------------------
    def objective_text(self, law) -> str:
        """How the law's objective was computed, e.g. ' (Huber delta 0.001)' (empty: nothing to add)."""
        return ""

    def summary_lines(self, law) -> list[str]:
        """Lines that state the fitted law in the form's own terms."""
        return []


class CurveForm(LawForm):
    """A form fitted by analysis.fitting: theta is the unconstrained vector the optimiser moves
    (logs of positive constants); `to_parameters` / `from_parameters` convert to and from the
    names the papers use, which law files store."""

    Options: ClassVar[type[FormOptions]] = CurveOptions

    def prepare(self, options, frame):
        if options.objective is None:
            options = options.replace(objective=self.default_objective(options))
        if options.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {options.objective!r}")
        if options.objective == "squared_loss" and not self.log_target:
            raise ValueError(f"objective 'squared_loss' is for loss forms; form {self.name!r} fits accuracy")
        if options.objective == "binomial" and (self.log_target or "n" not in frame):
            raise ValueError(f"objective 'binomial' is for accuracy forms on a table with problem counts "
                             f"(column n_problems, or --columns n=<column>); form {self.name!r}"
                             + ("" if self.log_target else " got none"))
        if options.floor is not None:
            if options.floor_mode not in FLOOR_MODES:
                raise ValueError(f"floor mode must be one of {FLOOR_MODES}, got {options.floor_mode!r}")
            if not (isinstance(options.floor, (int, float)) and np.isfinite(options.floor) and options.floor > 0):
                raise ValueError(f"the floor must be a finite positive loss, got {options.floor!r}")
            if self.log_e_index(options) is None:
                raise ValueError(f"form {self.name!r} has no fitted irreducible loss E, so a floor cannot apply")
        return options

    def default_objective(self, options) -> str:
        return "huber_log"

    def to_parameters(self, theta: np.ndarray, options: FormOptions) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def from_parameters(self, params: Mapping[str, float], options: FormOptions) -> jax.Array:
        raise NotImplementedError

    def raw_predict(self, theta, cov: Mapping[str, jax.Array], options: FormOptions):
        """Prediction on the fitting scale: log target if log_target, else the target itself."""
        raise NotImplementedError

    def starts(self, options: Mapping | FormOptions | None = None) -> np.ndarray:
        raise NotImplementedError

    def optional_columns(self, options: FormOptions) -> tuple[str, ...]:
        """Columns the fit uses where the table has them (C for the held-out split)."""
        return ("C",)

    def refit_on_raw_tokens(self, options: FormOptions) -> bool:
        """Whether the fit is repeated with D = raw document tokens (reported as <name>_raw)."""
        return False

    def objective_text(self, law) -> str:
        if law.settings.objective == "squared_loss":
            return " (least squares on the loss)"
        if law.settings.objective == "binomial":
            return " (binomial deviance, weighted by problem counts)"
        return f" (Huber delta {law.huber_delta:g})"

    def summary_lines(self, law) -> list[str]:
        if law.settings.floor is None:
            return []
        how = "held at" if law.settings.floor_mode == "fix" else "bounded below by"
        lines = [f"E {how} the known floor {law.settings.floor:.6g}"]
        if law.diagnostics.get("points_below_floor"):
            lines.append(f"WARNING: {law.diagnostics['points_below_floor']} measured losses lie below the floor")
        return lines

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.parameter_names_for({})

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        return self.bounds_for({})

    def predict(self, params, options=None, **covariates):
        """The target at the covariates (numpy arrays broadcast together)."""
        options = self.options_from(options)
        return self._evaluate({**self.fixed_parameters(options), **params}, options, covariates, self.raw_predict)

    def predict_draws(self, draws, options=None, **covariates):
        """All draws in one vectorised evaluation (a bootstrap's 200 draws as one array program,
        not 200 op-by-op predictions: recommend and the report call this in their searches).
        A form whose bootstrap carried another law's draws (joint_inference's step 1) pairs them here."""
        return self.predict_each(draws, options, **covariates)

    def predict_each(self, draws, options=None, **covariates):
        """Every parameter set of `draws` on its own (another law it uses at its point estimate), in
        one vectorised evaluation: the likelihood region's points, and the bootstrap's draws of a
        form whose draws carry nothing else."""
        options = self.options_from(options)
        if not draws:
            return np.zeros((0,))
        merged = [{**self.fixed_parameters(options), **d} for d in draws]
        columns = {name: np.array([float(m[name]) for m in merged]) for name in merged[0]}
        return self._evaluate(columns, options, covariates, self._raw_predict_draws)

    def _raw_predict_draws(self, thetas, cov, options):
        import jax  # JAX on first evaluation (analysis/forms/__init__.py)
        return jax.vmap(lambda t: self.raw_predict(t, cov, options))(thetas)

    def _evaluate(self, params, options, covariates, raw_predict):
        """`raw_predict` on the fitting coordinates of `params`, back on the target's scale."""
        missing = [c for c in self.required_covariates(options) if c not in covariates]
        if missing:
            raise ValueError(f"form {self.name!r} needs covariates {missing} to predict")
        import jax  # JAX on first evaluation (analysis/forms/__init__.py)
        with jax.enable_x64(True):
            theta = self.from_parameters(params, options)
            out = compiled_prediction(raw_predict, theta, self.encode_covariates(covariates, options), options)
            return np.exp(out) if self.log_target else out

    def encode_covariates(self, covariates: Mapping, options: FormOptions) -> dict[str, jax.Array]:
        """Numeric arrays for raw_predict (arm names become indices into the fitted arms)."""
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        out = {}
        for name, value in covariates.items():
            if name == "arm":
                out["arm"] = encode_arms(self.name, value, self.arms(options))
            elif name in self.covariates or name == "L":
                out[name] = jnp.asarray(np.asarray(value, dtype=np.float64))
        return out


class _StaticOptions:
    """A form's options as a static argument of a compiled function: equal when their law-file
    JSON is (options may hold mappings, which do not hash)."""

    def __init__(self, options: FormOptions):
        self.options = options
        self.key = json.dumps(options.to_dict(), sort_keys=True, default=repr)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _StaticOptions) and self.key == other.key


def compiled_prediction(raw_predict, theta, cov, options: FormOptions) -> np.ndarray:
    """raw_predict(theta, cov, options) as one compiled program, on the host. Run op by op, each
    of a prediction's dozens of array operations would be compiled (and cached) on its own: most
    of a small fit's time. Call it under jax.enable_x64(True), as the fits do."""
    return np.asarray(_prediction_program()(raw_predict, _StaticOptions(options), theta, cov))


@functools.cache
def _prediction_program():
    """The one jitted program (built once, so that its compilation cache is kept between calls)."""
    import jax  # JAX on first evaluation (analysis/forms/__init__.py)

    def prediction(raw_predict, options: _StaticOptions, theta, cov):
        return raw_predict(theta, cov, options.options)

    return jax.jit(prediction, static_argnums=(0, 1))


def encode_arms(form_name: str, labels, arms: list[str]) -> jax.Array:
    import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
    labels = np.asarray(labels, dtype=object)
    unknown = sorted(set(np.atleast_1d(labels).tolist()) - set(arms))
    if unknown:
        raise ValueError(f"form {form_name!r}: arm(s) {unknown} were not in the fit (fitted arms: {arms})")
    return jnp.asarray(np.vectorize(arms.index, otypes=[np.int64])(labels))


def stack_theta(parts) -> jax.Array:
    import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
    return jnp.stack([jnp.asarray(v, dtype=jnp.float64) for v in parts], -1)
