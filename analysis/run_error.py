"""The error a run's rows share, and intervals that include it (docs/fitting.md, "Several seeds a point").

A training run (seed, size, arm) writes several rows, one per budget it is evaluated at, and its
seed's error moves all of them. A fit that treats rows as independent, and a bootstrap over six
runs, both understate the spread this gives. Pure functions on the best fit's Jacobian J and
residuals r on the fitting scale and the run labels of the rows (analysis.uncertainty.runs_of):

- `run_error`: the two variance components of the linearised model, within a run (sigma_e^2) and
  shared by a run (sigma_u^2), by unbiased moments (E[r'Ar] = tr(A M Sigma M), A = I and ZZ', M
  the residual maker, Z the run incidence; Henderson's method for a linear mixed model), with
  their covariance, so that any direction g of the fitting coordinates has a variance
  g' G' (sigma_e^2 I + sigma_u^2 ZZ') G g (G = (J'J)^-1 J') and Satterthwaite's degrees of freedom.
- `run_error_stretch`: per fitting coordinate, how much the profile interval (an independence
  likelihood) is stretched (Chandler and Bate's horizontal adjustment, 2007).

Answers reach the run-level spread through the profile intervals: where runs hold several rows
the bootstrap's draws are calibrated to them (analysis.uncertainty.calibration). The stretch only
widens: where the run-level analysis would narrow an interval, it is kept as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class RunError:
    """The linearised fit's error split into a part within runs and a part a run's rows share."""

    sigma_e: float                # variance within a run
    sigma_u: float                # variance shared by a run's rows
    spread: np.ndarray            # [2, 2] covariance of the two estimates
    gain: np.ndarray              # G = (J'J)^-1 J', [P, n]
    runs: np.ndarray              # run label per row
    residual_dof: int             # n - rank(J)
    independent: float            # s^2 = r'r / (n - rank): the variance the independence profile assumes

    def _weights(self, directions: np.ndarray) -> np.ndarray:
        """[k, 2]: |G'g|^2 and |Z'G'g|^2 for each direction g (rows of `directions`, [k, P])."""
        along = np.atleast_2d(directions) @ self.gain                       # [k, n]
        shared = np.zeros((along.shape[0], int(self.runs.max()) + 1))
        np.add.at(shared.T, self.runs, along.T)
        return np.stack([np.sum(along ** 2, axis=1), np.sum(shared ** 2, axis=1)], axis=1)

    def half_width(self, directions: np.ndarray) -> np.ndarray:
        """The run-level 95% interval's half-width along each direction: Student's t with
        Satterthwaite's degrees of freedom (few runs: few degrees of freedom) times the standard error."""
        weights = self._weights(directions)
        variance = weights @ np.array([self.sigma_e, self.sigma_u])
        dof = 2.0 * variance ** 2 / np.maximum(np.einsum("ja,ab,jb->j", weights, self.spread, weights), 1e-300)
        return stats.t.ppf(0.5 + LEVEL / 2, np.maximum(dof, 1.0)) * np.sqrt(np.maximum(variance, 0.0))

    def ratio(self, directions: np.ndarray) -> np.ndarray:
        """Along each direction, the run-level half-width over the independence one, s^2 g'(J'J)^+ g
        with F(1, n - p) (what the profile likelihood assumes); 1 where g is outside J's span."""
        independent = np.sqrt(self.independent * self._weights(directions)[:, 0]
                              * stats.f.ppf(LEVEL, 1, self.residual_dof))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.half_width(directions) / independent
        return np.where(np.isfinite(ratio), ratio, 1.0)


def run_error(jacobian: np.ndarray, residual: np.ndarray, runs: np.ndarray) -> RunError | None:
    """The run-level error of a fit, or None where there is none to estimate: every row its own
    run, no residual degrees of freedom, or a within-run variance estimated at or below zero. A
    shared variance estimated at or below zero is truncated at zero: the error is then the
    independence model's, s^2 with n - p degrees of freedom (the profile is not stretched).
    Run-level matrices only (K = Z'MZ), so a long table costs O(n p^2)."""
    n = jacobian.shape[0]
    n_runs = int(runs.max()) + 1 if len(runs) else 0
    jac = np.nan_to_num(jacobian)
    q, singular, _ = np.linalg.svd(jac, full_matrices=False)
    q = q[:, singular > singular[0] * 1e-12] if singular[0] > 0 else q[:, :0]
    rank = q.shape[1]
    if n_runs >= n or n <= rank:
        return None

    def run_sums(values):                                  # Z' values
        out = np.zeros((n_runs,) + values.shape[1:])
        np.add.at(out, runs, values)
        return out

    spanned = run_sums(q)
    k = np.diag(np.bincount(runs, minlength=n_runs).astype(float)) - spanned @ spanned.T   # K = Z'MZ
    k2 = k @ k
    power = [None, np.trace(k), np.trace(k2), float(np.sum(k * k2))]   # tr(K), tr(K^2), tr(K^3)
    moments = np.array([[n - rank, power[1]], [power[1], power[2]]])
    shared = run_sums(residual)
    observed = np.array([residual @ residual, shared @ shared])
    sigma_e, sigma_u = np.linalg.lstsq(moments, observed, rcond=None)[0]
    gain, independent = np.linalg.pinv(jac), float(residual @ residual) / (n - rank)
    if not sigma_u > 0:   # truncated at 0, as a variance component is: the independence model's s^2
        return RunError(independent, 0.0, np.diag([2.0 * independent ** 2 / (n - rank), 0.0]), gain,
                        np.asarray(runs), n - rank, independent)
    if not sigma_e > 0:
        return None
    # Cov of the two quadratic forms under normality: 2 tr(A Omega B Omega), Omega = M Sigma M
    between = 2.0 * np.array([
        [sigma_e ** 2 * (n - rank) + 2 * sigma_e * sigma_u * power[1] + sigma_u ** 2 * power[2],
         sigma_e ** 2 * power[1] + 2 * sigma_e * sigma_u * power[2] + sigma_u ** 2 * power[3]],
        [0.0, np.sum((sigma_e * k + sigma_u * k2) ** 2)]])
    between[1, 0] = between[0, 1]
    spread = np.linalg.solve(moments, np.linalg.solve(moments, between).T)   # Cov(sigma_e, sigma_u)
    return RunError(float(sigma_e), float(sigma_u), spread, gain, np.asarray(runs), n - rank, independent)


def run_error_stretch(jacobian: np.ndarray, residual: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Per fitting coordinate, the factor (>= 1) by which the profile interval is stretched about
    the estimate when rows share a run's error (coordinate_stretch of run_error)."""
    return coordinate_stretch(run_error(jacobian, residual, runs), jacobian.shape[1])


def coordinate_stretch(error: RunError | None, n_coords: int) -> np.ndarray:
    """Per fitting coordinate, RunError.ratio (>= 1); ones without a run-level error."""
    if error is None or error.sigma_u == 0.0:   # the independence model: the profile as it is
        return np.ones(n_coords)
    return np.maximum(error.ratio(np.eye(n_coords)), 1.0)
