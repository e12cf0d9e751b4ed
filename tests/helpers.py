"""Helpers shared by test modules (imported as `helpers`: pytest puts tests/ on sys.path)."""

import numpy as np

from analysis.law import Law, ParameterEstimate

EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def make_law(params=EPOCH, form="chinchilla", n_draws=200, spread=0.02, seed=0, settings=None, target="eval_loss",
             ranges=None):
    """A real Law with known estimates and draws around them (as a fit would give)."""
    rng = np.random.default_rng(seed)
    draws = {k: v * np.exp(rng.normal(0, spread, n_draws)) for k, v in params.items()}
    estimates = {k: ParameterEstimate(v, float(np.std(draws[k])), tuple(np.percentile(draws[k], [2.5, 97.5])))
                 for k, v in params.items()}
    ranges = ranges or {"N": [4e7, 1.6e10], "D": [2e8, 3e11], "C": [1e18, 3e22]}
    return Law(form=form, target=target, approach=3, parameters=estimates, bootstrap_samples=draws, ranges=ranges,
               objective=0.0, huber_delta=1e-3, n_points=240, n_starts=4500, converged=True, settings=settings or {})
