"""Muennighoff et al. 2023: repeated tokens and excess parameters decay in value."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping

import numpy as np

from analysis import chinchilla
from analysis.forms.base import CurveForm, CurveOptions, register, stack_theta


@dataclasses.dataclass(frozen=True)
class DataConstrainedOptions(CurveOptions):
    base: Mapping[str, float] | None = None   # a fixed base law {E, A, B, alpha, beta}; None: fitted too


@register
class DataConstrained(CurveForm):
    """D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), R_D = D/U_D - 1 repetitions;
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), U_N = min(N, compute-optimal N for U_D tokens),
    R_N = N/U_N - 1; L = E + A/N'^alpha + B/D'^beta. Law-file names: R_D, R_N (the paper's
    R_D*, R_N*). With the `base` setting the base law is given; without it, it is fitted too."""

    name = "data_constrained"
    description = "repeated data and excess parameters decay in value"
    paper = "Muennighoff et al. 2023"
    covariates = ("N", "D", "U")
    Options = DataConstrainedOptions

    def parameter_names_for(self, options=None):
        return ("R_D", "R_N") + (() if self.options_from(options).base else chinchilla.NAMES)

    def fixed_parameters(self, options):
        return dict(options.base or {})

    def to_parameters(self, theta, options):
        theta = np.asarray(theta)
        out = {"R_D": np.exp(theta[..., 0]), "R_N": np.exp(theta[..., 1])}
        if not options.base:
            a, b, e, alpha, beta = np.moveaxis(theta[..., 2:], -1, 0)
            out.update({"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta})
        return out

    def from_parameters(self, params, options):
        parts = [np.log(params["R_D"]), np.log(params["R_N"])]
        if not options.base:
            parts += chinchilla.log_parameters(params)
        return stack_theta(parts)

    def raw_predict(self, theta, cov, options):
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        r_d, r_n = jnp.exp(theta[..., 0]), jnp.exp(theta[..., 1])
        if options.base:
            a, b, e, alpha, beta = (float(v) for v in chinchilla.log_parameters(options.base))
        else:
            a, b, e, alpha, beta = (theta[..., 2 + i] for i in range(5))
        n, d, u = cov["N"], cov["D"], cov["U"]
        repeats = jnp.maximum(d / u - 1.0, 0.0)
        # compute-optimal parameters for U tokens under the base law: N = (U G)^(beta/alpha) G
        log_g = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
        log_un = jnp.minimum(jnp.log(n), (jnp.log(u) + log_g) * beta / alpha + log_g)
        excess = jnp.maximum(jnp.exp(jnp.log(n) - log_un) - 1.0, 0.0)
        log_d_eff = jnp.log(u) + jnp.log1p(r_d * -jnp.expm1(-repeats / r_d))
        log_n_eff = log_un + jnp.log1p(r_n * -jnp.expm1(-excess / r_n))
        return chinchilla.log_loss(a, b, e, alpha, beta, log_n_eff, log_d_eff, xp=jnp)

    def starts(self, options=None):
        r_grid = np.log(np.array(list(itertools.product([1, 5, 15, 50, 200], [0.5, 2, 5, 20, 100]))))
        if self.options_from(options).base:
            return r_grid
        base = chinchilla.initial_grid()
        return np.concatenate([r_grid[np.arange(len(base)) % len(r_grid)], base], axis=1)

    def bounds_for(self, options=None):
        return {name: (0, np.inf) for name in self.parameter_names_for(options)}

    def log_e_index(self, options):
        return None if options.base else 4
