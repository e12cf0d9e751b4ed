"""The batched fitting program of one form and table (analysis.fitting's engine): screening,
refinement, the bootstrap's refits and the profile likelihood's constrained refits all run as one
compiled JAX program, each start with its own row of data."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import xlogy

from analysis.forms.base import CurveForm, FormOptions, compiled_prediction
from analysis.solver import minimize_batch
from analysis.uncertainty import leverage, resample_rows

ROWS = 64  # starts per call of the compiled minimizer (refinement keeps 64: one call)
# Starts x data-row elements one call may hold (2**24 float64: 128 MiB, and each of the objective's
# intermediates [starts, rows] about half that): a 1e6-row table's 4,500 starts held at once asked
# for 33.5 GiB. Small tables keep ROWS starts per call.
ELEMENT_BUDGET = 2 ** 24
# Calls of the compiled minimizer run side by side on this many threads: XLA runs each call on one
# core and releases the GIL, and a start's result does not depend on which thread solves it.
CALL_THREADS = max(1, min(4, os.cpu_count() or 1))
ROW_BUCKET = 16  # data rows are padded to a multiple of this, so tables of similar size share a program


def starts_per_call(row_length: int) -> int:
    """ROWS, or fewer starts per call (a power of two, at least 1, so tables of similar size share
    a program) where ROWS data rows of `row_length` would pass ELEMENT_BUDGET."""
    fitting = max(1, ELEMENT_BUDGET // row_length)
    return ROWS if fitting >= ROWS else 1 << (fitting.bit_length() - 1)


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
    resample), step 1's losses (a joint law's step-1 draw), and a mask and values of fitting
    coordinates held fixed (a profile, which minimises the fit's own objective: its statistic is
    read in analysis.uncertainty). Screening, refinement, the bootstrap and the profiles share one
    program."""

    def __init__(self, form: CurveForm, options: FormOptions, frame: pd.DataFrame, delta: float,
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
                value = jnp.sum(weights * binomial_deviance(prediction, y, counts))
            elif squared:  # Gadre et al.: least squares on the loss itself (scipy curve_fit)
                value = jnp.sum(weights * (jnp.exp(prediction) - jnp.exp(y)) ** 2)
            else:
                value = jnp.sum(weights * huber(prediction - y, delta))
            return jnp.where(jnp.isfinite(value), value, jnp.inf)

        def objective_of_table(theta, weights):
            """The fit's objective on this table's rows (weights [n]): what benchmarks/solver.py
            hands to each solver."""
            return objective(theta, self._row(np.pad(np.asarray(weights), (0, self._pad)) if isinstance(
                weights, np.ndarray) else jnp.pad(weights, (0, self._pad))), self._cov, self._counts)

        self.objective = objective_of_table
        self._minimize = jax.jit(lambda x0, rows, cov, counts, iters: minimize_batch(
            lambda theta, row: objective(theta, row, cov, counts), x0, rows, False, max_iter=iters))

    def _row(self, weights, y=None, loss=None, mask=None, fixed=None):
        """One start's data row (see the class docstring), padded rows weighted 0."""
        xp = jnp if isinstance(weights, jax.Array) else np
        parts = [weights, self._y if y is None else y]
        if self.step1 is not None:
            parts.append(self._padded(self.step1) if loss is None else loss)
        zeros = np.zeros(self.n_params)
        parts += [zeros if mask is None else mask, zeros if fixed is None else fixed]
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
                 starts_per_draw: int = 1):
        """Minimize from each row of x0 [s, P]; weights, targets y (fitting scale) and step-1
        losses [s / starts_per_draw, n] (draw j serves starts j * starts_per_draw onwards: the
        bootstrap's warm starts of one resample), masks and fixed values [s, P] per start, or None
        for the table's own. Each start's data row is built when its call comes: a call holds
        `starts_per_call` starts (the last padded with copies of its first, dropped), so memory
        stays bounded whatever the number of starts and rows (weights, y and loss may be sequences
        that draw row j when asked: the bootstrap's resamples). Each start stops on its own, so a
        start's result does not depend on the starts beside it, nor on how many share its call."""
        count = len(x0)

        @functools.lru_cache(maxsize=2 * CALL_THREADS)  # the starts of one draw follow each other
        def draw(j):
            return (np.pad(np.ones(self.n) if weights is None else weights[j], (0, self._pad)),
                    None if y is None else self._padded(y[j]), None if loss is None else self._padded(loss[j]))

        def data_row(i):
            return self._row(*draw(i // starts_per_draw), None if mask is None else mask[i],
                             None if fixed is None else fixed[i])

        row = data_row(0)
        per_call = starts_per_call(len(row))

        def solve(first):
            """The starts first .. first + per_call in one call (the last call padded with copies of its first)."""
            x = x0[first:first + per_call]
            real = len(x)
            r = np.empty((per_call, len(row)))
            for k in range(real):
                r[k] = data_row(first + k)
            r[real:] = r[0]
            x = np.concatenate([x, np.repeat(x[:1], per_call - real, axis=0)])
            with jax.enable_x64(True):   # per thread
                out = self._minimize(jnp.asarray(x, dtype=jnp.float64), jnp.asarray(r), self._cov,
                                     jnp.asarray(self._counts), iters)
                return [np.asarray(v)[:real] for v in out[:3]], int(out[3])

        firsts = range(0, count, per_call)
        if len(firsts) > 1 and CALL_THREADS > 1:
            with concurrent.futures.ThreadPoolExecutor(min(CALL_THREADS, len(firsts))) as pool:
                solved = list(pool.map(solve, firsts))
        else:
            solved = [solve(first) for first in firsts]
        parts = [part for part, _ in solved]
        iterations = max(steps for _, steps in solved)
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

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d prediction / d theta [n, P] on the fitting scale at the table's rows."""
        with jax.enable_x64(True):
            return np.asarray(jax.jacfwd(lambda t: self.form.raw_predict(t, self.cov, self.options))(
                jnp.asarray(theta)))

    def bootstrap(self, warm: np.ndarray, n_boot: int, seed: int, max_iter: int = 300, scheme: str = "pairs",
                  runs: np.ndarray | None = None, best: np.ndarray | None = None, step1_draws=None):
        """Refit n_boot resamples (analysis.uncertainty.resample_rows), each from every row of
        `warm`; the best refit per resample. `best` (the fit) centres a wild bootstrap; step-1
        draws [B1, n] of a joint law's loss law enter resample b as draw b mod B1. Each resample
        is drawn when its refits' call comes (one row of the table at a time, not [n_boot, n])."""
        runs = np.arange(self.n) if runs is None else runs
        resamples = Draws(n_boot, lambda b: resample_rows(scheme, runs, seed, b))
        weights, y = resamples, None
        if scheme in ("wild", "residual"):
            weights = None
            y = self._perturbed_targets(best if best is not None else warm[0], scheme, resamples)
        loss = None if step1_draws is None else Draws(n_boot, lambda b: step1_draws[b % len(step1_draws)])
        n_warm = len(warm)
        x, f, converged, _ = self.minimize(np.tile(warm, (n_boot, 1)), max_iter, weights=weights, y=y, loss=loss,
                                           starts_per_draw=n_warm)
        f = f.reshape(n_boot, n_warm)
        pick = np.argmin(f, axis=1)
        x = x.reshape(n_boot, n_warm, -1)[np.arange(n_boot), pick]
        return x, converged.reshape(n_boot, n_warm)[np.arange(n_boot), pick]

    def _perturbed_targets(self, theta: np.ndarray, scheme: str, resamples: Draws) -> Draws:
        """Fitted values plus leverage-scaled residuals: each row's own times the resample's
        multipliers (wild), or residuals drawn from the centred pool (residual)."""
        fitted = self.fitted(theta)
        residual = (np.asarray(self.y) - fitted) / np.sqrt(1.0 - leverage(self.jacobian(theta)))
        if scheme == "residual":
            residual = residual - residual.mean()

        def target(b):
            draw = resamples[b]
            y = fitted + (residual[draw] if scheme == "residual" else draw * residual)
            return y if self.form.log_target else np.clip(y, 0.0, 1.0)

        return Draws(len(resamples), target)


@dataclasses.dataclass(frozen=True)
class Draws:
    """`count` rows of a resampled quantity, row b computed by `row(b)` when it is asked for."""

    count: int
    row: Callable[[int], np.ndarray]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, b: int) -> np.ndarray:
        return self.row(b)
