"""Hoffmann et al.'s L = E + A/N^alpha + B/D^beta, optionally with one exponent (Gadre et al. 2024)."""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis import chinchilla
from analysis.forms.base import CurveForm, CurveOptions, register, stack_theta


@dataclasses.dataclass(frozen=True)
class ChinchillaOptions(CurveOptions):
    shared_exponent: bool = False   # alpha = beta (Gadre et al.'s over-training law)


@register
class Chinchilla(CurveForm):
    """With shared_exponent (Gadre et al. 2024's over-training law) alpha = beta: four parameters
    E, A, B, alpha; `beta` is still reported (equal to alpha) so the law answers every Chinchilla
    question. In their parametrisation with M = D/N and C = 6ND, L = E + (a M^eta + b M^-eta) C^-eta
    with eta = alpha/2, a = A 6^eta, b = B 6^eta (analysis.chinchilla.gadre_parameters). Fitted by
    least squares on the loss by default when the exponent is shared, as they fit it."""

    name = "chinchilla"
    description = "L = E + A/N^alpha + B/D^beta"
    paper = "Hoffmann et al. 2022; Besiroglu et al. 2024"
    covariates = ("N", "D")
    Options = ChinchillaOptions
    questions = ("compute_optimal", "inference_aware")

    def default_objective(self, options):
        return "squared_loss" if options.shared_exponent else "huber_log"   # Gadre et al.'s procedure

    def parameter_names_for(self, options=None):
        return chinchilla.NAMES[:4] if self.options_from(options).shared_exponent else chinchilla.NAMES

    def to_parameters(self, theta, options):
        theta = np.moveaxis(np.asarray(theta), -1, 0)
        if options.shared_exponent:
            a, b, e, alpha = theta
            return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": alpha}
        a, b, e, alpha, beta = theta
        return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}

    def from_parameters(self, params, options):
        theta = chinchilla.log_parameters({**params, "beta": params.get("beta", params["alpha"])})
        return stack_theta(theta[:4] if options.shared_exponent else theta)

    def raw_predict(self, theta, cov, options):
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        if options.shared_exponent:
            a, b, e, alpha = (theta[..., i] for i in range(4))
            beta = alpha
        else:
            a, b, e, alpha, beta = (theta[..., i] for i in range(5))
        return chinchilla.log_loss(a, b, e, alpha, beta, jnp.log(cov["N"]), jnp.log(cov["D"]), xp=jnp)

    def starts(self, options=None):
        grid = chinchilla.initial_grid()
        return np.unique(grid[:, :4], axis=0) if self.options_from(options).shared_exponent else grid

    def bounds_for(self, options=None):
        bounds = {"E": (0, np.inf), "A": (0, np.inf), "B": (0, np.inf), "alpha": (0, 3), "beta": (0, 3)}
        return {k: bounds[k] for k in self.parameter_names_for(options)}

    def min_points(self, options):
        # Gadre et al. fit the four shared-exponent parameters to five runs
        return len(self.parameter_names_for(options)) + 1 if options.shared_exponent else None

    def summary_lines(self, law):
        lines = super().summary_lines(law)
        if law.settings.shared_exponent:
            g = chinchilla.gadre_parameters(law.estimates())
            lines.append("shared exponent (Gadre et al.): L = E + (a M^eta + b M^-eta) C^-eta, M = D/N: "
                         + ", ".join(f"{k} = {v:.6g}" for k, v in g.items()))
        return lines

    def log_e_index(self, options):
        return 2

    def chinchilla_closed_forms(self, options):
        return True
