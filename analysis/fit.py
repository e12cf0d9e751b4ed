"""Robust multi-start fitting of a law form, bootstrap intervals and held-out validation.

Objective (Hoffmann et al. 2022 as replicated by Besiroglu et al. 2024): the sum over points of
the Huber loss (delta 1e-3 by default) of log(prediction) - log(observation), the prediction
computed in log-sum-exp form. Minimised by BFGS from every start of the form's grid (4,500 for
the Chinchilla form) at once: the starts are a batch dimension of one jitted JAX program, not a
Python loop. Starts are screened after a few iterations and the best ones run to convergence.
The bootstrap refits every resample (multinomial weights over points) in the same batched way,
warm-started from the best fit and from the runner-up optima.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.forms import Form, get_form
from analysis.law import Law, ParameterEstimate
from analysis.tables import TableError, canonical_table, data_hash, ranges

MIN_POINTS_PER_PARAMETER = 2
FLOOR_MODES = ("bound", "fix")
# where log E sits in each form's theta (forms with an irreducible loss E)
_LOG_E_INDEX = {"chinchilla": 2, "augmentation": 2, "architecture": 2, "data_constrained": 4}


class _Floored:
    """A form whose irreducible loss E is held at a known floor (mode "fix": E = floor, one
    parameter fewer) or kept above it (mode "bound": E = floor + exp(u), u unconstrained). Used
    only while fitting: the law it yields is of the base form, with E among its parameters
    (in "fix" mode with zero spread), so predictions and law files need nothing new."""

    def __init__(self, base: Form, floor: float, mode: str, options: Mapping):
        if mode not in FLOOR_MODES:
            raise ValueError(f"floor mode must be one of {FLOOR_MODES}, got {mode!r}")
        if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor > 0):
            raise ValueError(f"the floor must be a finite positive loss, got {floor!r}")
        if base.name not in _LOG_E_INDEX or (base.name == "data_constrained" and options.get("base")):
            raise ValueError(f"form {base.name!r} has no fitted irreducible loss E, so a floor cannot apply")
        self.base, self.floor, self.mode, self.index = base, float(floor), mode, _LOG_E_INDEX[base.name]
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


def _floored_form(form: Form, options: Mapping):
    """The form to fit: itself, or with E held at options["floor"] (options["floor_mode"])."""
    if options.get("floor") is None:
        return form
    return _Floored(form, options["floor"], options.get("floor_mode", "bound"), options)


def huber(r, delta):
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def minimize_batch(fun, x0, data, shared_data: bool, max_iter: int = 400, gtol: float = 1e-10,
                   ftol: float = 1e-12, max_backtracks: int = 40):
    """BFGS with Armijo backtracking on a batch of starts x0 [S, P]; fun(x [P], data) -> scalar.

    `data` has a leading axis S unless shared_data. Each start stops on its own (gradient or
    relative decrease below tolerance, or no descent step found); the batch runs until all have.
    Returns (x, f, converged, iterations) per start.
    """
    in_axes = (0, None) if shared_data else (0, 0)
    value_and_grad = jax.vmap(jax.value_and_grad(fun), in_axes=in_axes)
    values = jax.vmap(fun, in_axes=in_axes)
    n_starts, n_params = x0.shape
    eye = jnp.eye(n_params, dtype=x0.dtype)

    def line_search(x, f, p, slope, done):
        def accept(ft, t):
            return (ft <= f + 1e-4 * t * slope) & jnp.isfinite(ft)

        def cond(c):
            return (c[3] < max_backtracks) & ~jnp.all(c[2] | done)

        def body(c):
            t, ft, ok, k = c
            t = jnp.where(ok, t, 0.5 * t)
            ft_new = values(x + t[:, None] * p, data)
            return t, jnp.where(ok, ft, ft_new), ok | accept(ft_new, t), k + 1

        ft0 = values(x + p, data)
        ones = jnp.ones(n_starts, dtype=x.dtype)
        return jax.lax.while_loop(cond, body, (ones, ft0, accept(ft0, ones), 0))[:3]

    def step(c):
        x, f, g, h, it, done, converged = c
        p = -jnp.einsum("sij,sj->si", h, g)
        slope = jnp.sum(p * g, -1)
        descent = slope < 0
        p = jnp.where(descent[:, None], p, -g)
        slope = jnp.where(descent, slope, -jnp.sum(g * g, -1))
        h = jnp.where(descent[:, None, None], h, eye)
        t, _, found = line_search(x, f, p, slope, done)
        move = found & ~done
        x_new = jnp.where(move[:, None], x + t[:, None] * p, x)
        f_new, g_new = value_and_grad(x_new, data)
        s, y = x_new - x, g_new - g
        sy = jnp.sum(s * y, -1)
        update = move & (sy > 1e-12 * jnp.sqrt(jnp.sum(s * s, -1) * jnp.sum(y * y, -1)))
        rho = jnp.where(update, 1.0 / jnp.where(update, sy, 1.0), 0.0)
        v = eye - rho[:, None, None] * jnp.einsum("si,sj->sij", s, y)
        h_new = jnp.einsum("sij,sjk,slk->sil", v, h, v) + rho[:, None, None] * jnp.einsum("si,sj->sij", s, s)
        h_new = jnp.where(update[:, None, None], h_new, h)
        small_gradient = jnp.max(jnp.abs(g_new), -1) <= gtol
        small_decrease = move & ((f - f_new) <= ftol * jnp.maximum(1e-3, jnp.abs(f_new)))
        stuck = ~found & ~done
        newly = ~done & (small_gradient | small_decrease | stuck)
        converged = converged | (newly & (small_gradient | small_decrease | (stuck & (jnp.max(jnp.abs(g_new), -1) <= 1e-6))))
        return x_new, f_new, g_new, h_new, it + 1, done | newly, converged

    def keep_going(c):
        return (c[4] < max_iter) & ~jnp.all(c[5])

    f0, g0 = value_and_grad(x0, data)
    bad = ~jnp.isfinite(f0) | ~jnp.all(jnp.isfinite(g0), -1)
    f0 = jnp.where(bad, jnp.inf, f0)
    g0 = jnp.where(bad[:, None], 0.0, g0)
    state = (x0, f0, g0, jnp.broadcast_to(eye, (n_starts, n_params, n_params)), 0, bad, jnp.zeros(n_starts, bool))
    x, f, g, _, iterations, done, converged = jax.lax.while_loop(keep_going, step, state)
    return x, f, converged, iterations


class _Problem:
    """A form, its options and its data, compiled into batched fitting programs."""

    def __init__(self, form: Form, options: Mapping, frame: pd.DataFrame, delta: float):
        self.form, self.options, self.delta = form, dict(options), delta
        with jax.enable_x64(True):
            covariates = {c: frame[c].to_numpy() for c in form.required_covariates(self.options)}
            self.cov = form.encode_covariates(covariates, self.options)
            y = frame["loss"].to_numpy(np.float64)
            self.y = jnp.asarray(np.log(y) if form.log_target else y)
        self.n = len(frame)
        squared = self.options.get("objective") == "squared_loss"
        if squared and not form.log_target:
            raise ValueError(f"objective 'squared_loss' is for loss forms; form {form.name!r} fits accuracy")

        def objective(theta, weights):
            if squared:  # Gadre et al.: least squares on the loss itself (scipy curve_fit)
                residual = jnp.exp(form.raw_predict(theta, self.cov, self.options)) - jnp.exp(self.y)
                value = jnp.sum(weights * residual ** 2)
            else:
                residual = form.raw_predict(theta, self.cov, self.options) - self.y
                value = jnp.sum(weights * huber(residual, delta))
            return jnp.where(jnp.isfinite(value), value, jnp.inf)

        self.objective = objective
        # max_iter is traced, so screening and refinement share one compiled program
        self._shared = jax.jit(lambda x0, w, iters: minimize_batch(objective, x0, w, True, max_iter=iters))
        self._per_start = jax.jit(lambda x0, w, iters: minimize_batch(objective, x0, w, False, max_iter=iters))

    def multistart(self, starts: np.ndarray, screen_iters: int = 3, keep: int = 64, max_iter: int = 500):
        """All starts for a few iterations, the best `keep` (distinct) to convergence."""
        with jax.enable_x64(True):
            w = jnp.ones(self.n)
            x0 = jnp.asarray(starts, dtype=jnp.float64)
            if len(starts) > keep:
                x, f, _, _ = self._shared(x0, w, screen_iters)
                f = np.where(np.isfinite(np.asarray(f)), np.asarray(f), np.inf)
                order = np.argsort(f, kind="stable")[:keep]
                x0 = x[order]
            x, f, converged, iterations = self._shared(x0, w, max_iter)
            x, f, converged = np.asarray(x), np.asarray(f), np.asarray(converged)
        f = np.where(np.isfinite(f), f, np.inf)
        order = np.argsort(f, kind="stable")
        return x[order], f[order], converged[order], int(iterations)

    def bootstrap(self, warm: np.ndarray, n_boot: int, seed: int, max_iter: int = 300, chunk: int = 100):
        """Refit n_boot resamples, each from every row of `warm`; best per resample."""
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(self.n, np.full(self.n, 1.0 / self.n), size=n_boot).astype(np.float64)
        n_warm = len(warm)
        results = []
        with jax.enable_x64(True):
            # chunks, so that a slow resample holds up only its own chunk
            for first in range(0, n_boot, chunk):
                part = counts[first:first + chunk]
                x0 = jnp.asarray(np.tile(warm, (len(part), 1)), dtype=jnp.float64)
                w = jnp.asarray(np.repeat(part, n_warm, axis=0))
                results.append([np.asarray(v) for v in self._per_start(x0, w, max_iter)[:3]])
        x, f, converged = (np.concatenate(parts) for parts in zip(*results))
        f = np.where(np.isfinite(f), f, np.inf).reshape(n_boot, n_warm)
        best = np.argmin(f, axis=1)
        x = x.reshape(n_boot, n_warm, -1)[np.arange(n_boot), best]
        return x, converged.reshape(n_boot, n_warm)[np.arange(n_boot), best]


def _distinct(x: np.ndarray, f: np.ndarray, count: int, tol: float = 1e-3) -> np.ndarray:
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


def _check_enough(frame: pd.DataFrame, form: Form, options: Mapping, source: str) -> None:
    n_params = len(form.parameter_names_for(options))
    needed = form.min_points(options) or MIN_POINTS_PER_PARAMETER * n_params
    if len(frame) < needed:
        raise TableError(f"{source}: {len(frame)} points are too few to fit the {n_params} parameters of "
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


def fit_form(frame: pd.DataFrame, form_name: str = "chinchilla", *, target: str = "eval_loss",
             bootstrap: int = 1000, huber_delta: float = 1e-3, heldout_fraction: float = 0.2,
             seed: int = 0, source: str = "table", keep: int = 64, screen_iters: int = 3,
             **form_options) -> Law:
    """Fit one form (approach 3) to a canonical frame (see analysis.tables.canonical_table)."""
    form = get_form(form_name)
    options = _form_options(form, frame, form_options)
    form = _floored_form(form, options)
    _check_enough(frame, form, options, source)
    problem = _Problem(form, options, frame, huber_delta)
    starts = form.starts(options)
    x, f, converged, iterations = problem.multistart(starts, screen_iters=screen_iters, keep=keep)
    best = x[0]
    if not np.isfinite(f[0]):
        raise TableError(f"{source}: no start of form {form.name!r} reached a finite objective")
    estimates = form.to_parameters(best, options)
    draws, boot_converged = {}, None
    if bootstrap > 0:
        warm = _distinct(x, f, 2)
        boot_x, boot_converged = problem.bootstrap(warm, bootstrap, seed)
        draws = form.to_parameters(boot_x, options)
    if getattr(form, "mode", None) == "fix":  # exactly the floor, not exp(log(floor))
        estimates["E"] = np.float64(form.floor)
        if draws:
            draws["E"] = np.full(len(draws["E"]), form.floor)
    parameters = {name: _estimate(float(estimates[name]), draws.get(name)) for name in estimates}
    options_out = {k: v for k, v in options.items() if k != "loss_law"}
    if "base" in options:
        options_out["fixed"] = dict(options["base"])
    if "loss_law" in options:
        options_out["loss_law"] = options["loss_law"]
    options_out["iterations"] = iterations
    diagnostics = _diagnostics(problem, best, frame, form, options)
    if diagnostics is not None:
        options_out["diagnostics"] = diagnostics.to_dict()
    if boot_converged is not None:
        options_out["bootstrap_converged_fraction"] = float(np.mean(boot_converged))
    if options.get("floor") is not None:
        options_out["floor_mode"] = form.mode
        options_out["points_below_floor"] = int(np.sum(frame["loss"].to_numpy() < form.floor))
    law = Law(form=form.name, target=target, approach=3, parameters=parameters,
              bootstrap_samples={k: np.asarray(v, dtype=np.float64) for k, v in draws.items()},
              ranges=ranges(frame), objective=float(f[0]),
              huber_delta=0.0 if options.get("objective") == "squared_loss" else huber_delta, n_points=len(frame),
              n_starts=len(starts), converged=bool(converged[0]), heldout={}, data_hash=data_hash(frame),
              options=options_out)
    if form.name == "augmentation" and "D_raw" in frame and not options.get("per_arm_exponents"):
        law = _with_raw_accounting(law, frame, form_name, target, bootstrap, huber_delta, seed, source,
                                   keep, screen_iters, form_options)
    if heldout_fraction > 0:
        law = _with_heldout(law, frame, form_name, target, huber_delta, heldout_fraction, source, keep,
                            screen_iters, form_options)
    return law


OBJECTIVES = ("huber_log", "squared_loss")


def _diagnostics(problem: _Problem, theta: np.ndarray, frame: pd.DataFrame, form: Form, options: Mapping):
    """Residual diagnostics (analysis.diagnostics) of the best fit against each numeric covariate."""
    from analysis.diagnostics import residual_diagnostics
    with jax.enable_x64(True):
        residual = np.asarray(form.raw_predict(jnp.asarray(theta), problem.cov, problem.options) - problem.y)
    names = [c for c in form.required_covariates(options) if c != "arm"] + (["C"] if "C" in frame else [])
    covariates = {c: frame[c].to_numpy() for c in dict.fromkeys(names) if c in frame}
    return residual_diagnostics(residual, covariates, scale="log" if form.log_target else "target")


def _form_options(form: Form, frame: pd.DataFrame, form_options: Mapping) -> dict:
    options = dict(form_options)
    if options.get("shared_exponent"):
        if form.name != "chinchilla":
            raise ValueError(f"--shared-exponent is an option of --form=chinchilla, not {form.name!r}")
        options.setdefault("objective", "squared_loss")   # Gadre et al.'s procedure
    if options.get("objective", "huber_log") not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {options['objective']!r}")
    if "arm" in form.required_covariates(options) or (form.name == "augmentation"):
        arms = sorted(frame["arm"].unique().tolist()) if "arm" in frame else []
        reference = options.get("reference_arm") or ("vanilla" if "vanilla" in arms else (arms[0] if arms else None))
        if form.name == "augmentation":
            if len(arms) < 2 and not options.get("per_arm_exponents"):
                raise TableError(f"form 'augmentation' needs at least two arms; the table has {arms}")
            if reference not in arms:
                raise TableError(f"reference arm {reference!r} is not among the table's arms {arms}")
        options["arms"] = [reference] + [a for a in arms if a != reference] if reference else arms
        options["reference_arm"] = reference
    return options


def _estimate(value: float, draws: np.ndarray | None) -> ParameterEstimate:
    if draws is None or len(draws) == 0:
        return ParameterEstimate(value, math.nan, (math.nan, math.nan))
    draws = np.asarray(draws, dtype=np.float64)
    finite = draws[np.isfinite(draws)]
    low, high = np.percentile(finite, [2.5, 97.5])
    return ParameterEstimate(value, float(np.std(finite, ddof=1)), (float(low), float(high)))


def _with_raw_accounting(law, frame, form_name, target, bootstrap, delta, seed, source, keep, screen_iters,
                         form_options):
    """Refit augmentation with D = raw document tokens and report m_<arm>_raw beside m_<arm>."""
    raw_frame = frame.assign(D=frame["D_raw"]).drop(columns="D_raw")
    raw = fit_form(raw_frame, form_name, target=target, bootstrap=bootstrap, huber_delta=delta,
                   heldout_fraction=0, seed=seed, source=source, keep=keep, screen_iters=screen_iters,
                   **form_options)
    extra = {f"{k}_raw": v for k, v in raw.parameters.items() if k.startswith("m_")}
    extra_draws = {f"{k}_raw": v for k, v in raw.bootstrap_samples.items() if k.startswith("m_")}
    accounting = {k: "all trained tokens" for k in law.parameters if k.startswith("m_")}
    accounting.update({k: "raw document tokens" for k in extra})
    return _replace(law, parameters={**law.parameters, **extra},
                    bootstrap_samples={**law.bootstrap_samples, **extra_draws},
                    options={**law.options, "accounting": accounting})


def _with_heldout(law, frame, form_name, target, delta, fraction, source, keep, screen_iters, form_options):
    """Refit on the lower-compute points, predict the highest-compute ones."""
    train, test = _heldout_split(frame, fraction)
    form = get_form(form_name)
    try:
        train_options = _form_options(form, frame[train], form_options)
        _check_enough(frame[train], _floored_form(form, train_options), train_options, source)
        small = fit_form(frame[train].reset_index(drop=True), form_name, target=target, bootstrap=0,
                         huber_delta=delta, heldout_fraction=0, source=source, keep=keep,
                         screen_iters=screen_iters, **form_options)
    except TableError as e:
        return _replace(law, heldout={"skipped": str(e)})
    held = frame[test]
    covariates = {c: held[c].to_numpy() for c in form.required_covariates(small.options)}
    predicted = small.predict(**covariates)
    observed = held["loss"].to_numpy()
    relative = np.abs(predicted - observed) / np.abs(observed)
    return _replace(law, heldout={
        "fraction": fraction, "n_train": int(train.sum()), "n_test": int(test.sum()),
        "split": "highest compute held out (C, or N*D where C is absent)",
        "mean_relative_error": float(np.mean(relative)), "max_relative_error": float(np.max(relative)),
        "rmse_log": float(np.sqrt(np.mean((np.log(predicted) - np.log(observed)) ** 2)))
        if np.all(predicted > 0) and np.all(observed > 0) else None,
        "train_parameters": {k: p.estimate for k, p in small.parameters.items()}})


def _replace(law: Law, **changes) -> Law:
    import dataclasses
    return dataclasses.replace(law, **changes)


def fit(table, form: str = "chinchilla", approach: int = 3, target: str = "eval_loss", bootstrap: int = 1000,
        columns: Mapping[str, str] | None = None, huber_delta: float = 1e-3, **form_options) -> Law:
    """Fit a law to a table (path, results folder or DataFrame). approach 3 fits `form`;
    approaches 1 and 2 fit the compute-optimal power laws N_opt = k_N C^a, D_opt = k_D C^b."""
    target = (columns or {}).get("loss", target)
    if form_options.get("where"):
        from analysis.tables import select_rows
        table = select_rows(table, form_options.pop("where"))
    form_options.pop("where", None)
    if approach in (1, 2):
        if form_options.get("floor") is not None:
            raise ValueError("a known floor (E) applies to approach 3 laws; approaches 1 and 2 have no E")
        from analysis.isoflop import fit_compute_optimal
        return fit_compute_optimal(table, approach=approach, target=target, columns=columns,
                                   bootstrap=bootstrap, **form_options)
    if approach != 3:
        raise ValueError(f"approach must be 1, 2 or 3, got {approach!r}")
    if form == "two_step":
        from analysis.two_step import fit_two_step
        return fit_two_step(table, columns=columns, bootstrap=bootstrap, huber_delta=huber_delta, **form_options)
    if form == "hyperparameters":
        from analysis.hyperparameters import fit_hyperparameters
        return fit_hyperparameters(table, target=target, columns=columns, bootstrap=bootstrap, **form_options)
    form_object = get_form(form)
    options = dict(form_options)
    if isinstance(options.get("base"), (str, bytes)) or hasattr(options.get("base"), "__fspath__"):
        options["base"] = _law_estimates(options["base"])
    if isinstance(options.get("loss_law"), (str, bytes)) or hasattr(options.get("loss_law"), "__fspath__"):
        from analysis.law import load_law
        options["loss_law"] = load_law(options["loss_law"]).to_dict()
    elif isinstance(options.get("loss_law"), Law):
        options["loss_law"] = options["loss_law"].to_dict()
    required = form_object.required_covariates(options)
    optional = ("C", "D_raw") if form == "augmentation" else ("C",)
    frame, source = canonical_table(table, required, target=target, columns=columns, optional=optional)
    seed = options.pop("seed", 0)
    return fit_form(frame, form, target=target, bootstrap=bootstrap, huber_delta=huber_delta, source=source,
                    seed=seed, **options)


def _law_estimates(path) -> dict[str, float]:
    from analysis.law import load_law
    return load_law(path).estimates()
