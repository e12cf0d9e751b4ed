"""Porian et al. 2024's approach-2 estimator ("Resolving Discrepancies in Compute-Optimal Scaling
of Language Models", github.com/formll/resolving-scaling-law-discrepancies).

It differs from the plain approach 2 of `analysis.isoflop` in four places, each taken from the
paper's released analysis:
1. Points: on each IsoFLOP curve, the lowest loss per model size (several runs of one size, e.g.
   learning rates or seeds, count once, by their best).
2. Minimum: an Akima spline through (ln N, ln L), evaluated on a geometric grid of
   (sizes - 1) x 25 points between the smallest and largest size; N* is the grid point of least
   interpolated loss. D* is found the same way in ln D (D = the tokens column, not C/6N).
3. Bootstrap: the losses of a curve are perturbed by Gaussian "seed noise" (standard deviation
   `seed_noise`, in loss units) `noise_draws` times; each perturbed curve is re-interpolated.
   Perturbations whose minimum falls on the grid's ends are discarded, and a curve that keeps
   fewer than half (in N or in D) is dropped; as in their `fit_compute_optimal_power_laws`, the
   unperturbed minimum is reported but does not decide whether a curve is kept. The curve's
   observation is the median of the perturbed optima, its uncertainty the standard deviation of
   their logs, floored at a third of the mean log spacing of the sizes tried and inflated by
   draws / kept draws.
4. Power law: ln N* on ln C by least squares weighted by 1 / std^2 (statsmodels WLS). The
   interval of the exponent comes from refitting with the i-th kept perturbed optimum of every
   curve, for each i (as many as the curve with fewest kept draws has), 2.5-97.5 percentiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.interpolate import Akima1DInterpolator

from analysis.diagnostics import residual_diagnostics
from analysis.isoflop import budgets
from analysis.estimates import Estimates, ParameterEstimate
from analysis.tables import TableError, canonical_table, data_hash, ranges

GRID_MULTIPLIER = 25          # interpolation points per interval between sizes tried
MIN_STD_FACTOR = 0.33         # floor of a curve's std, in units of the sizes' mean log spacing
DEFAULT_SEED_NOISE = 0.002    # the paper's RefinedWeb seed noise (0.01 for OpenWebText2)
DEFAULT_NOISE_DRAWS = 1000


@dataclass(frozen=True)
class CurveOptimum:
    """One IsoFLOP curve's optimum in one variable (N or D)."""

    budget: float            # the curve's compute C
    estimate: float          # median of the perturbed optima (the observation the power law uses)
    unperturbed: float       # the optimum of the spline through the measured losses
    loss: float              # interpolated loss at the unperturbed optimum
    std_log: float           # uncertainty of ln(optimum), floored and inflated (see module doc)
    draws: np.ndarray        # the kept perturbed optima
    n_sizes: int


def spline_minimum(x: np.ndarray, loss: np.ndarray, grid_multiplier: int = GRID_MULTIPLIER):
    """(grid, index of the minimum per column, interpolated log loss) for losses `loss` [k] or
    [k, draws] at sizes x [k] (sorted ascending): an Akima spline in (ln x, ln loss) on a
    geometric grid of (k - 1) * grid_multiplier points."""
    grid = np.geomspace(x[0], x[-1], (len(x) - 1) * grid_multiplier)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_loss = np.log(loss)
    curve = Akima1DInterpolator(np.log(x), log_loss, axis=0)(np.log(grid))
    curve = np.where(np.isfinite(curve), curve, np.inf)
    return grid, np.argmin(curve, axis=0), curve


def curve_optimum(x: np.ndarray, loss: np.ndarray, budget: float, rng: np.random.Generator,
                  seed_noise: float = DEFAULT_SEED_NOISE, noise_draws: int = DEFAULT_NOISE_DRAWS,
                  grid_multiplier: int = GRID_MULTIPLIER) -> CurveOptimum | None:
    """The optimum of one IsoFLOP curve in x (N or D), or None when fewer than half of the
    seed-noise perturbations put the minimum inside the sizes tried."""
    order = np.argsort(x)
    x, loss = np.asarray(x, float)[order], np.asarray(loss, float)[order]
    grid, index, curve = spline_minimum(x, loss, grid_multiplier)
    last = len(grid) - 1
    noisy = loss[:, None] + seed_noise * rng.standard_normal((len(x), noise_draws))
    _, noisy_index, _ = spline_minimum(x, noisy, grid_multiplier)
    kept = grid[noisy_index[(noisy_index != 0) & (noisy_index != last)]]
    if len(kept) < noise_draws / 2:
        return None
    floor = MIN_STD_FACTOR * grid_multiplier * math.log(grid[1] / grid[0])
    std = max(float(np.std(np.log(kept))), floor) * noise_draws / len(kept)
    return CurveOptimum(budget=budget, estimate=float(np.median(kept)), unperturbed=float(grid[index]),
                        loss=float(np.exp(curve[index])), std_log=std, draws=kept, n_sizes=len(x))


def porian_optima(frame: pd.DataFrame, budget_decimals: int = 1, seed_noise: float = DEFAULT_SEED_NOISE,
                  noise_draws: int = DEFAULT_NOISE_DRAWS, seed: int = 0, min_sizes: int = 3
                  ) -> tuple[list[CurveOptimum], list[CurveOptimum], list[dict]]:
    """Per IsoFLOP curve, the N and D optima (curves kept in both), and a note per dropped curve."""
    rng = np.random.default_rng(seed)
    n_optima, d_optima, dropped = [], [], []
    for budget, curve in frame.groupby(budgets(frame, budget_decimals)):
        compute = float(curve["C"].median())
        best = curve.loc[curve.groupby("N")["loss"].idxmin()]
        if len(best) < min_sizes:
            dropped.append({"C": compute, "reason": f"{len(best)} model sizes (need {min_sizes})"})
            continue
        n_opt = curve_optimum(best["N"].to_numpy(), best["loss"].to_numpy(), compute, rng, seed_noise, noise_draws)
        d_opt = curve_optimum(best["D"].to_numpy(), best["loss"].to_numpy(), compute, rng, seed_noise, noise_draws)
        if n_opt is None or d_opt is None:
            dropped.append({"C": compute, "reason": "for most seed-noise draws the minimum "
                                                   f"in {'N' if n_opt is None else 'D'} is at an end of the sizes tried"})
            continue
        n_optima.append(n_opt)
        d_optima.append(d_opt)
    return n_optima, d_optima, dropped


def _weighted_power_law(compute: np.ndarray, optimum: np.ndarray, std_log: np.ndarray):
    x = sm.add_constant(np.log(compute))
    result = sm.WLS(np.log(optimum), x, weights=1.0 / std_log ** 2).fit()
    return result


def _power_law_with_draws(optima: list[CurveOptimum], n_draws: int, exponent: str, prefactor: str):
    compute = np.array([o.budget for o in optima])
    std = np.array([o.std_log for o in optima])
    point = _weighted_power_law(compute, np.array([o.estimate for o in optima]), std)
    intercepts, slopes = [], []
    for i in range(n_draws):
        fit = _weighted_power_law(compute, np.array([o.draws[i] for o in optima]), std)
        intercepts.append(fit.params[0])
        slopes.append(fit.params[1])
    slopes, prefactors = np.array(slopes), np.exp(np.array(intercepts))
    estimates = {exponent: _from_draws(float(point.params[1]), slopes),
                 prefactor: _from_draws(float(np.exp(point.params[0])), prefactors)}
    return estimates, {exponent: slopes, prefactor: prefactors}, float(point.rsquared), point


def _from_draws(value: float, draws: np.ndarray) -> ParameterEstimate:
    if len(draws) < 2:
        return ParameterEstimate(value, math.nan, (math.nan, math.nan))
    low, high = np.percentile(draws, [2.5, 97.5])
    return ParameterEstimate(value, float(np.std(draws, ddof=1)), (float(low), float(high)))


def fit_porian(table, target: str = "eval_loss", columns: Mapping[str, str] | None = None,
               budget_decimals: int = 1, seed_noise: float = DEFAULT_SEED_NOISE,
               noise_draws: int = DEFAULT_NOISE_DRAWS, seed: int = 0, bootstrap: int | None = None) -> Estimates:
    """Porian et al.'s approach 2 on a table with N, D, C and the target (see the module doc).
    `bootstrap` caps the number of power-law refits (default: every kept noise draw)."""
    if not seed_noise > 0:
        raise TableError(f"--seed-noise must be a positive loss standard deviation, got {seed_noise}")
    if noise_draws < 2:
        raise TableError(f"noise_draws must be at least 2, got {noise_draws}")
    frame, source = canonical_table(table, ("N", "D", "C"), target=target, columns=columns)
    n_optima, d_optima, dropped = porian_optima(frame, budget_decimals, seed_noise, noise_draws, seed)
    if len(n_optima) < 3:
        raise TableError(f"{source}: the Porian estimator found {len(n_optima)} IsoFLOP curves with an interior "
                         f"minimum (need at least 3); budgets are log10 C rounded to {budget_decimals} decimal(s)")
    n_draws = min(min(len(o.draws) for o in n_optima), min(len(o.draws) for o in d_optima))
    if bootstrap is not None:
        n_draws = min(n_draws, bootstrap)
    n_params, n_draw_values, n_r2, n_fit = _power_law_with_draws(n_optima, n_draws, "a", "k_N")
    d_params, d_draw_values, d_r2, d_fit = _power_law_with_draws(d_optima, n_draws, "b", "k_D")
    residual = np.concatenate([n_fit.resid, d_fit.resid])
    diagnostics = residual_diagnostics(np.asarray(n_fit.resid), {"C": np.array([o.budget for o in n_optima])},
                                       scale="ln N* - ln(k_N C^a)")
    optima = {"C": [o.budget for o in n_optima], "N": [o.estimate for o in n_optima],
              "D": [o.estimate for o in d_optima], "N_std_log": [o.std_log for o in n_optima],
              "D_std_log": [o.std_log for o in d_optima], "N_unperturbed": [o.unperturbed for o in n_optima],
              "kept_draws": [len(o.draws) for o in n_optima], "n_sizes": [o.n_sizes for o in n_optima]}
    return Estimates(target=target, approach=2, parameters={**n_params, **d_params},
               bootstrap_samples={**n_draw_values, **d_draw_values}, ranges=ranges(frame),
               objective=float(np.sum(np.concatenate([n_fit.wresid, d_fit.wresid]) ** 2)), huber_delta=0.0,
               n_points=len(frame), n_starts=0, converged=True, heldout={}, data_hash=data_hash(frame),
               settings={"isoflop_method": "porian", "budget_decimals": budget_decimals, "seed_noise": seed_noise,
                         "noise_draws": noise_draws},
               diagnostics={"n_optima": len(n_optima), "seed": seed,
                        "grid_multiplier": GRID_MULTIPLIER, "optima": optima, "dropped_curves": dropped,
                        "r_squared": {"N": n_r2, "D": d_r2},
                        **({"diagnostics": diagnostics.to_dict()} if diagnostics is not None else {}),
                        "residual_rms_log": float(np.sqrt(np.mean(residual ** 2))),
                        "objective": "sum of squared weighted log residuals (WLS, weights 1/std^2)",
                        "draws": "power law refitted on the i-th kept seed-noise optimum of every curve"})
