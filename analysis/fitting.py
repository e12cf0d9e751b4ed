"""Approach 3: robust multi-start fitting of a law form, bootstrap intervals and held-out validation.

Objective (Hoffmann et al. 2022 as replicated by Besiroglu et al. 2024): the sum over points of
the Huber loss (delta 1e-3 by default) of log(prediction) - log(observation), the prediction
computed in log-sum-exp form. Minimised by the batched BFGS of analysis.solver from every start
of the form's grid (4,500 for the Chinchilla form) at once: the starts are a batch dimension of
one jitted JAX program, not a Python loop. Starts are screened after a few iterations and the
best ones run to convergence. The bootstrap refits every resample (multinomial weights over
points) in the same batched way, warm-started from the best fit and from the runner-up optima.

`fit` is the entry point for every form: a form that is not a CurveForm brings its own
estimator (its `fit` method: approaches 1/2, the two-step law, Step Law).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.forms.base import CurveForm, FormOptions, compiled_prediction, form_of_approach, get_form
from analysis.estimates import BOOTSTRAP
from analysis.law import Law, ParameterEstimate, load_law, typed_settings
from analysis.diagnostics import residual_diagnostics
from analysis.problem import Problem
from analysis.run_error import run_error
from analysis.uncertainty import Identification, calibration, identify, runs_of, scheme_for
from analysis.tables import TableError, TooFewPoints, canonical_table, data_hash, ranges, select_rows

MIN_POINTS_PER_PARAMETER = 2


class Floored:
    """A form whose irreducible loss E is held at a known floor (mode "fix": E = floor, one
    parameter fewer) or kept above it (mode "bound": E = floor + exp(u), u unconstrained). Used
    only while fitting: the law it yields is of the base form, with E among its parameters
    (in "fix" mode with zero spread), so predictions and law files need nothing new."""

    def __init__(self, base: CurveForm, options: FormOptions):
        self.base, self.floor, self.mode = base, float(options.floor), options.floor_mode
        self.index = base.log_e_index(options)
        self.name, self.log_target = base.name, base.log_target

    def required_covariates(self, options):
        return self.base.required_covariates(options)

    def encode_covariates(self, covariates, options):
        return self.base.encode_covariates(covariates, options)

    def parameter_names_for(self, options):
        names = self.base.parameter_names_for(options)
        return tuple(n for n in names if n != "E") if self.mode == "fix" else names

    def min_points(self, options):
        needed = self.base.min_points(options)
        return needed - 1 if needed is not None and self.mode == "fix" else needed

    def _full(self, theta, xp):
        i, log_floor = self.index, math.log(self.floor)
        if self.mode == "fix":
            fill = xp.full(theta.shape[:-1] + (1,), log_floor, dtype=theta.dtype)
            return xp.concatenate([theta[..., :i], fill, theta[..., i:]], axis=-1)
        e = xp.logaddexp(log_floor, theta[..., i:i + 1])
        return xp.concatenate([theta[..., :i], e, theta[..., i + 1:]], axis=-1)

    def raw_predict(self, theta, cov, options):
        return self.base.raw_predict(self._full(theta, jnp), cov, options)

    def starts(self, options):
        starts = self.base.starts(options)
        if self.mode == "fix":
            return np.delete(starts, self.index, axis=1)
        # log(E - floor): the grid's log E values, and excesses down to 1e-4 of the floor
        low = np.log(self.floor * np.array([1e-4, 1e-2]))
        column = starts[:, self.index].copy()
        column[::3] = low[np.arange(len(column[::3])) % 2]
        starts[:, self.index] = column
        return starts

    def to_parameters(self, theta, options):
        return self.base.to_parameters(self._full(np.asarray(theta, dtype=np.float64), np), options)


def _floored(form: CurveForm, options: FormOptions):
    """The form to fit: itself, or with E held at the options' floor."""
    return form if options.floor is None else Floored(form, options)


def distinct_optima(x: np.ndarray, f: np.ndarray, count: int, tol: float = 1e-3) -> np.ndarray:
    """Up to `count` of the best optima that differ from each other."""
    chosen = []
    for i in range(len(x)):
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(x[i] - x[j])) > tol for j in chosen):
            chosen.append(i)
        if len(chosen) == count:
            break
    return x[chosen]


def _check_enough(frame: pd.DataFrame, form, options: FormOptions, source: str) -> None:
    n_params = len(form.parameter_names_for(options))
    needed = form.min_points(options) or MIN_POINTS_PER_PARAMETER * n_params
    if len(frame) < needed:
        raise TooFewPoints(f"{source}: {len(frame)} points are too few to fit the {n_params} parameters of "
                         f"form {form.name!r} (need at least {needed})")
    if "loss" in frame and frame["loss"].nunique() < 2:
        raise TableError(f"{source}: the target is {frame['loss'].iloc[0]:g} in every row; there is nothing to fit")
    if "N" in frame and frame["N"].nunique() < 2 and "N" in form.required_covariates(options):
        raise TableError(f"{source}: a single model size (N = {frame['N'].iloc[0]:g}); a law in N needs "
                         "at least two")
    if "D" in frame and frame["D"].nunique() < 2 and "D" in form.required_covariates(options):
        raise TableError(f"{source}: a single data budget (D = {frame['D'].iloc[0]:g}); a law in D needs "
                         "at least two")


def fit_support(frame: pd.DataFrame, form: str | CurveForm = "chinchilla", source: str = "planned points",
                **form_options) -> str | None:
    """Why `form` cannot be fitted (approach 3) to a canonical frame, or None when it can: the
    checks fit_form makes before any compute. The frame may be planned points without a loss
    (`scaling sweep --dry_run` asks before anything is trained)."""
    form = get_form(form) if isinstance(form, str) else form
    try:
        options = form.prepare(form.options_from(form_options), frame)
        _check_enough(frame, _floored(form, options), options, source)
    except TableError as e:
        return str(e)
    return None


def _heldout_split(frame: pd.DataFrame, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    compute = frame["C"] if "C" in frame else frame["N"] * frame["D"]
    threshold = np.quantile(compute, 1.0 - fraction)
    test = (compute >= threshold).to_numpy()
    return ~test, test


class LawOutOfBounds(TableError):
    """A fit whose estimates fall outside its form's bounds: not a law (it is not written)."""


def fit_form(frame: pd.DataFrame, form: str | CurveForm = "chinchilla", *, target: str = "eval_loss",
             bootstrap: int = 1000, huber_delta: float = 1e-3, heldout_fraction: float = 0.2,
             seed: int = 0, source: str = "table", keep: int = 64, screen_iters: int = 3,
             options: FormOptions | Mapping | None = None, resampling: str = "auto", profile: bool = True,
             **form_options) -> Law:
    """Fit one form (approach 3) to a canonical frame (see analysis.tables.canonical_table).
    Its settings: `options` (typed or a mapping), or keyword arguments. `resampling`: the
    bootstrap's scheme ('auto', 'pairs', 'wild', 'residual'; analysis.uncertainty.scheme_for);
    `profile`: read each parameter's status from its profile likelihood (the held-out refit skips it)."""
    form = get_form(form)
    given = form.options_from(options if options is not None else form_options)
    options = form.prepare(given, frame)
    fitted = _floored(form, options)
    _check_enough(frame, fitted, options, source)
    step1, step1_draws = _step1(form, options, frame, bootstrap)
    problem = Problem(fitted, options, frame, huber_delta, step1=step1)
    starts = fitted.starts(options)
    x, f, converged, iterations = problem.multistart(starts, screen_iters=screen_iters, keep=keep)
    best = x[0]
    if not np.isfinite(f[0]):
        raise TableError(f"{source}: no start of form {form.name!r} reached a finite objective")
    estimates = fitted.to_parameters(best, options)
    _check_bounds(estimates, form.bounds_for(options), form.name, source)
    names = fitted.parameter_names_for(options)
    statuses, warm = {}, distinct_optima(x, f, 2)
    runs, replicates = runs_of(frame, tuple(fitted.required_covariates(options)))
    shared = None if problem.binomial else run_error(problem.jacobian(best), np.asarray(problem.y) - problem.fitted(best),
                                                     runs)
    region, closed = np.zeros((0, len(best))), {}
    if profile:
        statuses, ends, region, closed = identify(problem, best, warm, names, lambda t: fitted.to_parameters(t, options),
                                                  form.bounds_for(options), run_error=shared)
        unsettled = [t for thetas in ends.values() for t in thetas]
        warm = distinct_optima(np.concatenate([warm] + [np.array(unsettled)] * bool(unsettled)),
                               np.zeros(len(warm) + len(unsettled)), 4)
    scheme = scheme_for(runs, homoscedastic=fitted.log_target, requested=resampling)
    draws, region_draws, boot_converged, stretch = {}, {}, None, 1.0
    if bootstrap > 0:
        boot_x, boot_converged = problem.bootstrap(warm, bootstrap, seed, scheme=scheme, runs=runs, best=best,
                                                   step1_draws=step1_draws)
        if shared is not None:   # runs of several rows: the profiles carry their shared error, the draws short of it
            stretch = calibration(boot_x, best, closed)
        with np.errstate(over="ignore"):   # a draw run off towards a limit: inf, read as unbounded
            draws = fitted.to_parameters(boot_x, options)
            if len(region):
                region_draws = fitted.to_parameters(region, options)
    if options.floor is not None and options.floor_mode == "fix":  # exactly the floor, not exp(log(floor))
        estimates["E"] = np.float64(options.floor)
        statuses["E"] = Identification("fixed", f"held at the known floor {options.floor:.6g} (not fitted)",
                                       (options.floor, options.floor))
        for samples in (draws, region_draws):
            if samples:
                samples["E"] = np.full(len(samples["E"]), options.floor)
    parameters = {name: _estimate(float(estimates[name]), draws.get(name), statuses.get(name)) for name in estimates}
    diagnostics = {"iterations": iterations, "replicates": replicates}
    if bootstrap > 0:
        diagnostics["bootstrap"] = {"scheme": scheme, "resamples": bootstrap, "warm_starts": len(warm),
                                    "step1_draws": step1_draws is not None,
                                    "runs": int(runs.max()) + 1 if len(runs) else 0,
                                    "calibration": round(float(stretch), 4)}
    residuals = _residual_diagnostics(problem, best, frame, options)
    if residuals is not None:
        diagnostics["diagnostics"] = residuals.to_dict()
    if boot_converged is not None:
        diagnostics["bootstrap_converged_fraction"] = float(np.mean(boot_converged))
    if options.floor is not None:
        diagnostics["points_below_floor"] = int(np.sum(frame["loss"].to_numpy() < options.floor))
    law = Law(form=form, target=target, approach=3, parameters=parameters,
              bootstrap_samples={k: np.asarray(v, dtype=np.float64) for k, v in draws.items()},
              region_samples={k: np.asarray(v, dtype=np.float64) for k, v in region_draws.items()},
              ranges=ranges(frame), objective=float(f[0]),
              huber_delta=huber_delta if options.objective == "huber_log" else 0.0, n_points=len(frame),
              n_starts=len(starts), converged=bool(converged[0]), heldout={}, data_hash=data_hash(frame),
              settings=options, diagnostics=diagnostics)
    again = dict(target=target, huber_delta=huber_delta, source=source, keep=keep, screen_iters=screen_iters,
                 options=given, resampling=resampling)
    if form.refit_on_raw_tokens(options) and "D_raw" in frame:
        law = _with_raw_accounting(law, frame, form, bootstrap, seed, again)
    if heldout_fraction > 0:
        law = _with_heldout(law, frame, form, heldout_fraction, again)
    return law


def _check_bounds(estimates, bounds, form_name: str, source: str) -> None:
    """Refuse a fit whose estimates leave the form's bounds (a law of E = 0, alpha = 19.7 from two
    model sizes): it is not a law of this form the data support."""
    for name, (low, high) in bounds.items():
        value = float(np.asarray(estimates.get(name, np.nan)))
        if name in estimates and not low <= value <= high:
            raise LawOutOfBounds(
                f"{source}: the best fit has {name} = {value:.4g}, outside the {form_name} form's bounds "
                f"[{low:g}, {high:g}]; no law is written. The data do not determine this law: fit more "
                f"model sizes and data budgets (each spanning at least an order of magnitude), or hold E "
                f"at a known floor (--floor)")


def _step1(form, options: FormOptions, frame: pd.DataFrame, bootstrap: int):
    """A joint law's step-1 losses at the table's rows: the loss law's point prediction, and its
    bootstrap draws [B1, n] (carried into step 2's bootstrap), or (None, None)."""
    loss_law = getattr(options, "loss_law", None)
    if loss_law is None or "L" in form.required_covariates(options):
        return None, None
    law = form.loss_law(options)
    names = law.form.required_covariates(law.settings)
    covariates = {name: frame[name].to_numpy() for name in names}
    point = np.asarray(law.predict(**covariates), dtype=np.float64)
    if bootstrap <= 0 or not law.bootstrap_samples:
        return point, None
    with np.errstate(over="ignore", invalid="ignore"):
        draws = np.asarray(law.predict_draws(**covariates), dtype=np.float64)[:law.n_bootstrap]
    draws = draws[np.all(np.isfinite(draws), axis=1)]
    return point, (draws if len(draws) else None)


def _residual_diagnostics(problem: Problem, theta: np.ndarray, frame: pd.DataFrame, options: FormOptions):
    """Residual diagnostics (analysis.diagnostics) of the best fit against each numeric covariate."""
    form = problem.form
    with jax.enable_x64(True):
        residual = compiled_prediction(form.raw_predict, jnp.asarray(theta), problem.cov, options) - np.asarray(problem.y)
    names = [c for c in form.required_covariates(options) if c != "arm"] + (["C"] if "C" in frame else [])
    covariates = {c: frame[c].to_numpy() for c in dict.fromkeys(names) if c in frame}
    return residual_diagnostics(residual, covariates, scale="log" if form.log_target else "target")


def _estimate(value: float, draws: np.ndarray | None, status: Identification | None) -> ParameterEstimate:
    """The estimate with its interval: the profile likelihood's for a parameter that is one fitting
    coordinate (valid at a bound, and closer to nominal coverage than the bootstrap's percentiles
    on small grids: benchmarks/coverage.py), else the bootstrap's percentiles. se is the
    bootstrap's standard deviation."""
    se, ci = math.nan, (math.nan, math.nan)
    finite = np.asarray(draws if draws is not None else [], dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) > 1:
        low, high = np.percentile(finite, [2.5, 97.5])
        with np.errstate(over="ignore", invalid="ignore"):   # draws near the float limit: se inf
            se, ci = float(np.std(finite, ddof=1)), (float(low), float(high))
    if status is None:
        return ParameterEstimate(value, se, ci)
    profile = None if np.any(np.isnan(status.profile_ci)) else tuple(map(float, status.profile_ci))
    if status.status == "fixed":
        return ParameterEstimate(value, 0.0, profile, status.status, status.reason, profile, "fixed")
    if profile is not None:
        return ParameterEstimate(value, se, profile, status.status, status.reason, profile, status.method)
    return ParameterEstimate(value, se, ci, status.status, status.reason, None, "bootstrap percentile")


def _with_raw_accounting(law: Law, frame: pd.DataFrame, form: CurveForm, bootstrap: int, seed: int, again) -> Law:
    """Refit with D = raw document tokens and report <name>_raw beside each multiplier m_<arm>."""
    raw_frame = frame.assign(D=frame["D_raw"]).drop(columns="D_raw")
    raw = fit_form(raw_frame, form, bootstrap=bootstrap, heldout_fraction=0, seed=seed, **again)
    extra = {f"{k}_raw": v for k, v in raw.parameters.items() if k.startswith("m_")}
    extra_draws = {f"{k}_raw": v for k, v in raw.bootstrap_samples.items() if k.startswith("m_")}
    accounting = {k: "all trained tokens" for k in law.parameters if k.startswith("m_")}
    accounting.update({k: "raw document tokens" for k in extra})
    return law.replace(parameters={**law.parameters, **extra},
                       bootstrap_samples={**law.bootstrap_samples, **extra_draws},
                       diagnostics={**law.diagnostics, "accounting": accounting})


def _with_heldout(law: Law, frame: pd.DataFrame, form: CurveForm, fraction: float, again) -> Law:
    """Refit on the lower-compute points, predict the highest-compute ones."""
    train, test = _heldout_split(frame, fraction)
    try:
        train_options = form.prepare(again["options"], frame[train])
        _check_enough(frame[train], _floored(form, train_options), train_options, again["source"])
        small = fit_form(frame[train].reset_index(drop=True), form, bootstrap=0, heldout_fraction=0, profile=False,
                         **again)
    except TableError as e:
        return law.replace(heldout={"skipped": str(e)})
    held = frame[test]
    covariates = {c: held[c].to_numpy() for c in form.required_covariates(small.settings)}
    predicted = small.predict(**covariates)
    observed = held["loss"].to_numpy()
    relative = np.abs(predicted - observed) / np.abs(observed)
    return law.replace(heldout={
        "fraction": fraction, "n_train": int(train.sum()), "n_test": int(test.sum()),
        "split": "highest compute held out (C, or N*D where C is absent)",
        "mean_relative_error": float(np.mean(relative)), "max_relative_error": float(np.max(relative)),
        "rmse_log": float(np.sqrt(np.mean((np.log(predicted) - np.log(observed)) ** 2)))
        if np.all(predicted > 0) and np.all(observed > 0) else None,
        "train_parameters": {k: p.estimate for k, p in small.parameters.items()}})


def _is_path(value) -> bool:
    return isinstance(value, (str, bytes)) or hasattr(value, "__fspath__")


def fit(table, form: str = "chinchilla", approach: int = 3, target: str = "eval_loss", bootstrap: int = BOOTSTRAP,
        columns: Mapping[str, str] | None = None, huber_delta: float = 1e-3, heldout_fraction: float = 0.2,
        seed: int = 0, where: str | None = None, resampling: str = "auto", **form_options) -> Law:
    """Fit a law to a table (path, results folder or DataFrame). Approach 3 fits `form` with its
    settings `form_options`; approaches 1 and 2 fit the compute-optimal power laws
    N_opt = k_N C^a, D_opt = k_D C^b (the compute_optimal form). `where` keeps the rows where a
    pandas query holds. Settings that name a law (`base`, `loss_law`) may be law files.
    `resampling`: approach 3's bootstrap scheme (fit_form)."""
    target = (columns or {}).get("loss", target)
    if where:
        table = select_rows(table, where)
    if approach == 3:
        form = get_form(form)
    else:
        if form_options.get("floor") is not None:
            raise ValueError("a known floor (E) applies to approach 3 laws; approaches 1 and 2 have no E")
        form = form_of_approach(approach)
    if _is_path(form_options.get("base")):
        form_options["base"] = load_law(form_options["base"]).estimates()
    if _is_path(form_options.get("loss_law")):
        form_options["loss_law"] = load_law(form_options["loss_law"])
    options = typed_settings(form, form_options)
    if not isinstance(form, CurveForm):
        estimates = form.fit(table, options, approach=approach, target=target, columns=columns, bootstrap=bootstrap,
                             huber_delta=huber_delta, heldout_fraction=heldout_fraction, seed=seed, fit_curve=fit_form)
        return Law.from_estimates(form, options, estimates)
    required = form.required_covariates(options)
    frame, source = canonical_table(table, required, target=target, columns=columns,
                                    optional=tuple(dict.fromkeys(form.optional_columns(options) + ("seed",))))
    return fit_form(frame, form, target=target, bootstrap=bootstrap, huber_delta=huber_delta,
                    heldout_fraction=heldout_fraction, source=source, seed=seed, options=options, resampling=resampling)
