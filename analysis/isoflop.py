"""Hoffmann et al.'s approaches 1 and 2: compute-optimal power laws N_opt = k_N C^a, D_opt = k_D C^b.

Approach 1 takes, in each compute bin, the run with the lowest loss (the envelope of the loss
over compute). Approach 2 fits a parabola of loss in log N (and in log D) to each IsoFLOP
curve and takes its minimum. Both then regress log N_opt and log D_opt on log C with
statsmodels OLS; the law file stores the OLS estimates with their standard errors and 95%
intervals (k_N, k_D through exp of the intercept) and parametric draws from the coefficients'
sampling distribution so intervals propagate like the bootstrap draws of approach 3.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
import statsmodels.api as sm

from analysis.estimates import Estimates, ParameterEstimate
from analysis.tables import TableError, canonical_table, data_hash, ranges


def budgets(frame: pd.DataFrame, decimals: int) -> pd.Series:
    """The compute budget each row belongs to: log10 C rounded to `decimals`."""
    return np.round(np.log10(frame["C"]), decimals)


def envelope_points(frame: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Approach 1: the lowest-loss run in each compute bin."""
    best = frame.loc[frame.groupby(budgets(frame, decimals))["loss"].idxmin()]
    return best[["C", "N", "D", "loss"]].reset_index(drop=True)


def isoflop_minima(frame: pd.DataFrame, decimals: int = 1, min_points: int = 3) -> pd.DataFrame:
    """Approach 2: per IsoFLOP curve, the minimum of a parabola in log N and one in log D.
    Curves with too few sizes, no curvature, or a minimum outside the sizes tried are dropped."""
    rows = []
    for budget, curve in frame.groupby(budgets(frame, decimals)):
        if curve["N"].nunique() < min_points:
            continue
        row = {"C": float(curve["C"].median()), "budget_log10": float(budget), "n_runs": len(curve)}
        for var in ("N", "D"):
            x = np.log(curve[var].to_numpy())
            c2, c1, c0 = np.polyfit(x, curve["loss"].to_numpy(), 2)
            x_min = -c1 / (2 * c2) if c2 > 0 else math.nan
            if not (c2 > 0 and x.min() <= x_min <= x.max()):
                break
            row[var] = float(np.exp(x_min))
            row[f"loss_at_{var}"] = float(c0 + c1 * x_min + c2 * x_min ** 2)
        else:
            rows.append(row)
    return pd.DataFrame(rows, columns=["C", "budget_log10", "n_runs", "N", "loss_at_N", "D", "loss_at_D"])


def _power_law(points: pd.DataFrame, var: str, exponent: str, prefactor: str, n_draws: int, rng):
    x = sm.add_constant(np.log(points["C"].to_numpy()))
    result = sm.OLS(np.log(points[var].to_numpy()), x).fit()
    (low_c, high_c), (low_e, high_e) = result.conf_int(0.05)
    intercept, slope = result.params
    se_c, se_e = result.bse
    estimates = {
        exponent: ParameterEstimate(float(slope), float(se_e), (float(low_e), float(high_e))),
        # delta method for the se of exp(intercept); the interval maps exactly
        prefactor: ParameterEstimate(float(np.exp(intercept)), float(np.exp(intercept) * se_c),
                                     (float(np.exp(low_c)), float(np.exp(high_c)))),
    }
    draws = rng.multivariate_normal(result.params, result.cov_params(), size=n_draws) if n_draws else np.empty((0, 2))
    return estimates, {exponent: draws[:, 1], prefactor: np.exp(draws[:, 0])}, float(result.rsquared)


COMPUTE_OPTIMAL = "compute_optimal"  # the form name of approach-1/2 laws (analysis.forms.compute_optimal)


def fit_compute_optimal(table, approach: int = 2, target: str = "eval_loss", columns: Mapping[str, str] | None = None,
                        bootstrap: int = 1000, budget_decimals: int = 1, seed: int = 0) -> Estimates:
    """Approach 1 or 2 (a parabola per IsoFLOP curve) on a table with N, D, C and the target.
    analysis.porian is the other approach-2 estimator."""
    frame, source = canonical_table(table, ("N", "D", "C"), target=target, columns=columns)
    points = envelope_points(frame, budget_decimals) if approach == 1 else isoflop_minima(frame, budget_decimals)
    if len(points) < 3:
        what = "compute bins" if approach == 1 else "IsoFLOP curves with an interior minimum"
        raise TableError(f"{source}: approach {approach} found {len(points)} {what} (need at least 3); "
                         f"budgets are log10 C rounded to {budget_decimals} decimal(s)")
    rng = np.random.default_rng(seed)
    n_params, n_draws, n_r2 = _power_law(points, "N", "a", "k_N", bootstrap, rng)
    d_params, d_draws, d_r2 = _power_law(points, "D", "b", "k_D", bootstrap, rng)
    residual = np.concatenate([
        np.log(points["N"]) - np.log(n_params["k_N"].estimate * points["C"] ** n_params["a"].estimate),
        np.log(points["D"]) - np.log(d_params["k_D"].estimate * points["C"] ** d_params["b"].estimate)])
    return Estimates(target=target, approach=approach, parameters={**n_params, **d_params},
               bootstrap_samples={**n_draws, **d_draws}, ranges=ranges(frame),
               objective=float(np.sum(residual ** 2)), huber_delta=0.0, n_points=len(frame),
               n_starts=0, converged=True, heldout={}, data_hash=data_hash(frame),
               settings={"budget_decimals": budget_decimals},
               diagnostics={"n_optima": len(points), "optima": points[["C", "N", "D"]].to_dict(orient="list"),
                            "r_squared": {"N": n_r2, "D": d_r2}, "objective": "sum of squared log residuals (OLS)",
                            "draws": "parametric, from the OLS coefficient covariance"})
