"""Bian et al. 2025 (arXiv 2510.18245): the Chinchilla loss calibrated by architecture factors."""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis import chinchilla
from analysis.forms.base import CurveForm, CurveOptions, register, stack_theta


@dataclasses.dataclass(frozen=True)
class ArchitectureOptions(CurveOptions):
    gqa: bool = False   # add the factor in g = query heads per KV head


@register
class Architecture(CurveForm):
    """The Chinchilla loss times calibration factors in the hidden size relative to model size,
    x = d_model / sqrt(N), and in the MLP-to-attention ratio r:
    L = L_chinchilla(N, D) (1 + a1 log x + a2 / x)(1 + b1 log r + b2 / r), and with gqa a further
    factor (1 + c1 log g). The paper's constant terms a0, b0 multiply the whole law and are absorbed
    into E, A, B (fixed to 1) because only their product with the base law is identifiable."""

    name = "architecture"
    description = "Chinchilla loss times hidden-size and MLP/attention calibration"
    paper = "Bian et al. 2025, arXiv 2510.18245"
    covariates = ("N", "D", "x", "r", "g")
    Options = ArchitectureOptions

    def parameter_names_for(self, options=None):
        gqa = self.options_from(options).gqa
        return chinchilla.NAMES + ("a1", "a2", "b1", "b2") + (("c1",) if gqa else ())

    def to_parameters(self, theta, options):
        theta = np.asarray(theta)
        a, b, e, alpha, beta = (theta[..., i] for i in range(5))
        out = {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}
        out.update({name: theta[..., 5 + i] for i, name in enumerate(self.parameter_names_for(options)[5:])})
        return out

    def from_parameters(self, params, options):
        return stack_theta(chinchilla.log_parameters(params) + [params[n] for n in self.parameter_names_for(options)[5:]])

    def raw_predict(self, theta, cov, options):
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        a, b, e, alpha, beta, a1, a2, b1, b2 = (theta[..., i] for i in range(9))
        base = chinchilla.log_loss(a, b, e, alpha, beta, jnp.log(cov["N"]), jnp.log(cov["D"]), xp=jnp)
        x, r = cov["x"], cov["r"]
        factor = (1 + a1 * jnp.log(x) + a2 / x) * (1 + b1 * jnp.log(r) + b2 / r)
        if options.gqa:
            factor = factor * (1 + theta[..., 9] * jnp.log(cov["g"]))
        return base + jnp.log(jnp.maximum(factor, 1e-12))

    def starts(self, options=None):
        base = chinchilla.initial_grid()
        n_extra = len(self.parameter_names_for(options)) - 5
        return np.concatenate([base, np.zeros((len(base), n_extra))], axis=1)

    def required_covariates(self, options=None):
        return ("N", "D", "x", "r") + (("g",) if self.options_from(options).gqa else ())

    def log_e_index(self, options):
        return 2
