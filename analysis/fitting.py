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
from jax.scipy.special import xlogy
import numpy as np
import pandas as pd

from analysis.forms.base import CurveForm, FormOptions, compiled_prediction, form_of_approach, get_form
from analysis.law import Law, ParameterEstimate, load_law
from analysis.diagnostics import residual_diagnostics
from analysis.solver import minimize_batch
from analysis.uncertainty import Identification, identify, leverage, resample_rows, runs_of, scheme_for
from analysis.tables import TableError, TooFewPoints, canonical_table, data_hash, ranges, select_rows

MIN_POINTS_PER_PARAMETER = 2
ROWS = 64  # starts per call of the compiled minimizer (refinement keeps 64: one call)
ROW_BUCKET = 16  # data rows are padded to a multiple of this, so tables of similar size share a program


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


def huber(r, delta):
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def binomial_deviance(p, y, counts):
    """2 sum n [y log(y/p) + (1-y) log((1-y)/(1-p))]: accuracy y of n problems against p."""
    p = jnp.clip(p, 1e-12, 1.0 - 1e-12)
    return 2.0 * counts * (xlogy(y, y) - xlogy(y, p) + xlogy(1.0 - y, 1.0 - y) - xlogy(1.0 - y, 1.0 - p))


class Problem:
    """A form, its options and its data, compiled into one batched fitting program.

    The data enter the program as arguments, padded to a multiple of ROW_BUCKET rows (copies of
    the last row, weighted 0), so fits of one form and options to different tables (targets,
    accountings, held-out splits) lower to the same program and JAX's persistent compilation
    cache, where one is set (`scaling demo`, `scaling sweep`), compiles it once.

    Each start of a batch carries its own row of data: weights, targets (a wild bootstrap's
    resample), step 1's losses (a joint law's step-1 draw), a mask and values of fitting
    coordinates held fixed (a profile) and whether to minimise the fit's objective or the
    deviance the profile likelihood reads (squared residuals on the fitting scale, or the
    binomial deviance). Screening, refinement, the bootstrap and the profiles share one program."""

    def __init__(self, form: CurveForm | Floored, options: FormOptions, frame: pd.DataFrame, delta: float,
                 step1: np.ndarray | None = None):
        self.form, self.options, self.delta = form, options, delta
        self.n = len(frame)
        self.n_params = len(form.parameter_names_for(options))
        padded_index = np.minimum(np.arange(-(-self.n // ROW_BUCKET) * ROW_BUCKET), self.n - 1)
        self.m = len(padded_index)
        self._pad = self.m - self.n
        self.step1 = None if step1 is None else np.asarray(step1, dtype=np.float64)
        self.cov, self.y = self._encode(frame, self.step1)
        padded = frame.iloc[padded_index]
        self._cov, y_padded = self._encode(padded, None if step1 is None else self.step1[padded_index])
        self._y = np.asarray(y_padded, dtype=np.float64)
        if self.step1 is not None:
            self._cov = {k: v for k, v in self._cov.items() if k != "L"}
        self.binomial = options.objective == "binomial"
        self._counts = padded["n"].to_numpy(np.float64) if self.binomial else np.ones(self.m)
        squared, m, n_params, per_row_loss = options.objective == "squared_loss", self.m, self.n_params, step1 is not None

        def objective(theta, row, cov, counts):
            weights, y, offset = row[:m], row[m:2 * m], 2 * m
            if per_row_loss:
                cov, offset = {**cov, "L": row[offset:offset + m]}, offset + m
            mask, fixed = row[offset:offset + n_params], row[offset + n_params:offset + 2 * n_params]
            theta = jnp.where(mask > 0, fixed, theta)
            prediction = form.raw_predict(theta, cov, options)
            if self.binomial:
                fitted = deviance = jnp.sum(weights * binomial_deviance(prediction, y, counts))
            else:
                residual = prediction - y
                deviance = jnp.sum(weights * residual ** 2)
                if squared:  # Gadre et al.: least squares on the loss itself (scipy curve_fit)
                    fitted = jnp.sum(weights * (jnp.exp(prediction) - jnp.exp(y)) ** 2)
                else:
                    fitted = jnp.sum(weights * huber(residual, delta))
            value = jnp.where(row[-1] > 0, deviance, fitted)
            return jnp.where(jnp.isfinite(value), value, jnp.inf)

        def objective_of_table(theta, weights):
            """The fit's objective on this table's rows (weights [n]): what benchmarks/solver.py
            hands to each solver."""
            return objective(theta, self._row(np.pad(np.asarray(weights), (0, self._pad)) if isinstance(
                weights, np.ndarray) else jnp.pad(weights, (0, self._pad))), self._cov, self._counts)

        self.objective = objective_of_table
        self._minimize = jax.jit(lambda x0, rows, cov, counts, iters: minimize_batch(
            lambda theta, row: objective(theta, row, cov, counts), x0, rows, False, max_iter=iters))

    def _row(self, weights, y=None, loss=None, mask=None, fixed=None, deviance=0.0):
        """One start's data row (see the class docstring), padded rows weighted 0."""
        xp = jnp if isinstance(weights, jax.Array) else np
        parts = [weights, self._y if y is None else y]
        if self.step1 is not None:
            parts.append(self._padded(self.step1) if loss is None else loss)
        zeros = np.zeros(self.n_params)
        parts += [zeros if mask is None else mask, zeros if fixed is None else fixed, np.array([deviance])]
        return xp.concatenate([xp.asarray(p, dtype=np.float64) for p in parts])

    def _padded(self, values: np.ndarray) -> np.ndarray:
        return values[np.minimum(np.arange(self.m), self.n - 1)]

    def _encode(self, frame: pd.DataFrame, step1):
        """(covariates for raw_predict, target) of these rows, in float64."""
        with jax.enable_x64(True):
            covariates = {c: frame[c].to_numpy() for c in self.form.required_covariates(self.options)}
            if step1 is not None:
                covariates["L"] = step1
            y = frame["loss"].to_numpy(np.float64)
            return (self.form.encode_covariates(covariates, self.options),
                    jnp.asarray(np.log(y) if self.form.log_target else y))

    def minimize(self, x0: np.ndarray, iters: int, weights=None, y=None, loss=None, mask=None, fixed=None,
                 deviance: bool = False):
        """Minimize from each row of x0 [m, P]; weights [m, n], targets y [m, n] (fitting scale),
        step-1 losses [m, n], masks and fixed values [m, P] per row, or None for the table's own.
        ROWS rows per call (the last call padded with copies of its first row, whose results are
        dropped). Each row stops on its own, so a row's result does not depend on the rows beside it."""
        count = len(x0)
        rows = np.stack([self._row(np.pad(np.ones(self.n) if weights is None else weights[i], (0, self._pad)),
                                   None if y is None else self._padded(y[i]),
                                   None if loss is None else self._padded(loss[i]),
                                   None if mask is None else mask[i], None if fixed is None else fixed[i],
                                   float(deviance)) for i in range(count)])
        parts, iterations = [], 0
        with jax.enable_x64(True):
            for first in range(0, count, ROWS):
                x, r = x0[first:first + ROWS], rows[first:first + ROWS]
                real = len(x)
                if real < ROWS:
                    x = np.concatenate([x, np.repeat(x[:1], ROWS - real, axis=0)])
                    r = np.concatenate([r, np.repeat(r[:1], ROWS - real, axis=0)])
                out = self._minimize(jnp.asarray(x, dtype=jnp.float64), jnp.asarray(r), self._cov,
                                     jnp.asarray(self._counts), iters)
                parts.append([np.asarray(v)[:real] for v in out[:3]])
                iterations = max(iterations, int(out[3]))
        x, f, converged = (np.concatenate(column) for column in zip(*parts))
        return x, np.where(np.isfinite(f), f, np.inf), converged, iterations

    def multistart(self, starts: np.ndarray, screen_iters: int = 3, keep: int = 64, max_iter: int = 500):
        """All starts for a few iterations, the best `keep` (distinct) to convergence."""
        x0 = np.asarray(starts, dtype=np.float64)
        if len(x0) > keep:
            x, f, _, _ = self.minimize(x0, screen_iters)
            x0 = x[np.argsort(f, kind="stable")[:keep]]
        x, f, converged, iterations = self.minimize(x0, max_iter)
        order = np.argsort(f, kind="stable")
        return x[order], f[order], converged[order], iterations

    def fitted(self, theta: np.ndarray) -> np.ndarray:
        """The best fit's predictions on the fitting scale at the table's rows."""
        with jax.enable_x64(True):
            return compiled_prediction(self.form.raw_predict, jnp.asarray(theta), self.cov, self.options)

    def bootstrap(self, warm: np.ndarray, n_boot: int, seed: int, max_iter: int = 300, scheme: str = "pairs",
                  runs: np.ndarray | None = None, best: np.ndarray | None = None, step1_draws=None):
        """Refit n_boot resamples (analysis.uncertainty.resample_rows), each from every row of
        `warm`; the best refit per resample. `best` (the fit) centres a wild bootstrap; step-1
        draws [B1, n] of a joint law's loss law enter resample b as draw b mod B1."""
        rng = np.random.default_rng(seed)
        runs = np.arange(self.n) if runs is None else runs
        drawn = resample_rows(scheme, runs, n_boot, rng)
        weights, y = drawn, None
        if scheme == "wild":
            weights = np.ones((n_boot, self.n))
            y = self._wild_targets(best if best is not None else warm[0], drawn)
        loss = None if step1_draws is None else step1_draws[np.arange(n_boot) % len(step1_draws)]
        n_warm = len(warm)

        def per_start(a):
            return None if a is None else np.repeat(a, n_warm, axis=0)

        x, f, converged, _ = self.minimize(np.tile(warm, (n_boot, 1)), max_iter, weights=per_start(weights),
                                           y=per_start(y), loss=per_start(loss))
        f = f.reshape(n_boot, n_warm)
        pick = np.argmin(f, axis=1)
        x = x.reshape(n_boot, n_warm, -1)[np.arange(n_boot), pick]
        return x, converged.reshape(n_boot, n_warm)[np.arange(n_boot), pick]

    def _wild_targets(self, theta: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
        """Fitted values plus each resample's multipliers times the leverage-scaled residuals."""
        fitted = self.fitted(theta)
        with jax.enable_x64(True):
            jac = np.asarray(jax.jacfwd(lambda t: self.form.raw_predict(t, self.cov, self.options))(
                jnp.asarray(theta)))
        residual = (np.asarray(self.y) - fitted) / np.sqrt(1.0 - leverage(jac))
        y = fitted + multipliers * residual
        return y if self.form.log_target else np.clip(y, 0.0, 1.0)


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
    if frame["loss"].nunique() < 2:
        raise TableError(f"{source}: the target is {frame['loss'].iloc[0]:g} in every row; there is nothing to fit")
    if "N" in frame and frame["N"].nunique() < 2 and "N" in form.required_covariates(options):
        raise TableError(f"{source}: a single model size (N = {frame['N'].iloc[0]:g}); a law in N needs "
                         "at least two")
    if "D" in frame and frame["D"].nunique() < 2 and "D" in form.required_covariates(options):
        raise TableError(f"{source}: a single data budget (D = {frame['D'].iloc[0]:g}); a law in D needs "
                         "at least two")


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
    bootstrap's scheme ('auto', 'pairs', 'wild'; analysis.uncertainty); `profile`: read each
    parameter's status from its profile likelihood (the held-out refit skips it)."""
    form = get_form(form) if isinstance(form, str) else form
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
    if profile:
        statuses, ends = identify(problem, best, warm, names, lambda t: fitted.to_parameters(t, options),
                                  form.bounds_for(options))
        unsettled = [t for thetas in ends.values() for t in thetas]
        warm = distinct_optima(np.concatenate([warm] + [np.array(unsettled)] * bool(unsettled)),
                               np.zeros(len(warm) + len(unsettled)), 4)
    runs, replicates = runs_of(frame, tuple(fitted.required_covariates(options)))
    scheme = scheme_for(len(frame), resampling)
    draws, boot_converged = {}, None
    if bootstrap > 0:
        boot_x, boot_converged = problem.bootstrap(warm, bootstrap, seed, scheme=scheme, runs=runs, best=best,
                                                   step1_draws=step1_draws)
        draws = fitted.to_parameters(boot_x, options)
    if options.floor is not None and options.floor_mode == "fix":  # exactly the floor, not exp(log(floor))
        estimates["E"] = np.float64(options.floor)
        statuses["E"] = Identification("fixed", f"held at the known floor {options.floor:.6g} (not fitted)",
                                       (options.floor, options.floor))
        if draws:
            draws["E"] = np.full(len(draws["E"]), options.floor)
    parameters = {name: _estimate(float(estimates[name]), draws.get(name), statuses.get(name)) for name in estimates}
    diagnostics = {"iterations": iterations, "replicates": replicates}
    if bootstrap > 0:
        diagnostics["bootstrap"] = {"scheme": scheme, "resamples": bootstrap, "warm_starts": len(warm),
                                    "step1_draws": step1_draws is not None,
                                    "runs": int(runs.max()) + 1 if len(runs) else 0}
    residuals = _residual_diagnostics(problem, best, frame, options)
    if residuals is not None:
        diagnostics["diagnostics"] = residuals.to_dict()
    if boot_converged is not None:
        diagnostics["bootstrap_converged_fraction"] = float(np.mean(boot_converged))
    if options.floor is not None:
        diagnostics["points_below_floor"] = int(np.sum(frame["loss"].to_numpy() < options.floor))
    law = Law(form=form.name, target=target, approach=3, parameters=parameters,
              bootstrap_samples={k: np.asarray(v, dtype=np.float64) for k, v in draws.items()},
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
    names = get_form(law.form).required_covariates(law.settings)
    covariates = {name: frame[name].to_numpy() for name in names}
    point = np.asarray(law.predict(**covariates), dtype=np.float64)
    if bootstrap <= 0 or not law.bootstrap_samples:
        return point, None
    with np.errstate(over="ignore", invalid="ignore"):
        draws = np.asarray(law.predict_draws(**covariates), dtype=np.float64)
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
    """The estimate with its interval: the bootstrap's percentiles where the parameter is
    identified, the profile likelihood's where it is at a bound or not identified (the bootstrap
    collapses there); the bootstrap's where it has no profile of its own."""
    se, ci = math.nan, (math.nan, math.nan)
    finite = np.asarray(draws if draws is not None else [], dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) > 1:
        low, high = np.percentile(finite, [2.5, 97.5])
        se, ci = float(np.std(finite, ddof=1)), (float(low), float(high))
    if status is None:
        return ParameterEstimate(value, se, ci)
    profile = status.profile_ci if np.all(np.isfinite(status.profile_ci)) or status.status != "identified" else None
    profile = None if profile is not None and np.any(np.isnan(profile)) else profile
    method = "bootstrap percentile"
    if status.status == "fixed":
        method = "fixed"
    elif profile is not None and (status.status != "identified" or len(finite) < 2):
        ci, method = profile, "profile likelihood"
    return ParameterEstimate(value, se, ci, status.status, status.reason, profile, method)


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


def fit(table, form: str = "chinchilla", approach: int = 3, target: str = "eval_loss", bootstrap: int = 1000,
        columns: Mapping[str, str] | None = None, huber_delta: float = 1e-3, heldout_fraction: float = 0.2,
        seed: int = 0, where: str | None = None, **form_options) -> Law:
    """Fit a law to a table (path, results folder or DataFrame). Approach 3 fits `form` with its
    settings `form_options`; approaches 1 and 2 fit the compute-optimal power laws
    N_opt = k_N C^a, D_opt = k_D C^b (the compute_optimal form). `where` keeps the rows where a
    pandas query holds. Settings that name a law (`base`, `loss_law`) may be law files."""
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
    options = form.options_from(form_options)
    if not isinstance(form, CurveForm):
        return form.fit(table, options, approach=approach, target=target, columns=columns, bootstrap=bootstrap,
                        huber_delta=huber_delta, heldout_fraction=heldout_fraction, seed=seed)
    required = form.required_covariates(options)
    frame, source = canonical_table(table, required, target=target, columns=columns,
                                    optional=tuple(dict.fromkeys(form.optional_columns(options) + ("seed",))))
    return fit_form(frame, form, target=target, bootstrap=bootstrap, huber_delta=huber_delta,
                    heldout_fraction=heldout_fraction, source=source, seed=seed, options=options)
