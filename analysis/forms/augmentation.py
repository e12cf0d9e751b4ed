"""Each arm's data is worth a multiple of the reference arm's (thinking-augmented pretraining)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from analysis import chinchilla
from analysis.forms.base import CurveForm, CurveOptions, register, stack_theta
from analysis.tables import TableError


@dataclasses.dataclass(frozen=True)
class AugmentationOptions(CurveOptions):
    arms: tuple[str, ...] = ()            # reference arm first; filled from the table's arm column
    reference_arm: str | None = None      # the arm whose data counts 1x (default vanilla)
    per_arm_exponents: bool = False       # a data exponent beta_<arm> per arm instead of multipliers
    # what a trained token of an arm costs the teacher (analysis.recommend.augmentation_pays)
    teacher_flops_per_token: float | None = None
    thinking_fraction: Mapping[str, float] | float | None = None


def ordered_arms(frame, reference: str | None) -> tuple[list[str], str | None]:
    """The table's arms with the reference arm (given, else vanilla, else the first) first."""
    arms = sorted(frame["arm"].unique().tolist()) if "arm" in frame else []
    reference = reference or ("vanilla" if "vanilla" in arms else (arms[0] if arms else None))
    return ([reference] + [a for a in arms if a != reference] if reference else arms), reference


@register
class Augmentation(CurveForm):
    """D_eff = m_arm D, L = E + A/N^alpha + B/D_eff^beta (m_<reference> = 1). With
    per_arm_exponents, instead every arm has its own data exponent beta_<arm> (shared E, A, B,
    alpha). Fitted also with D = raw document tokens where the table has them (m_<arm>_raw)."""

    name = "augmentation"
    description = "each arm's data counts as m_arm times reference data"
    paper = "this project (Chinchilla form with effective data)"
    covariates = ("N", "D", "arm")
    Options = AugmentationOptions
    questions = ("compute_optimal", "inference_aware", "augmentation_pays")

    def prepare(self, options, frame):
        options = super().prepare(options, frame)
        arms, reference = ordered_arms(frame, options.reference_arm)
        if len(arms) < 2 and not options.per_arm_exponents:
            raise TableError(f"form 'augmentation' needs at least two arms; the table has {sorted(arms)}")
        if reference not in arms:
            raise TableError(f"reference arm {reference!r} is not among the table's arms {sorted(arms)}")
        return options.replace(arms=arms, reference_arm=reference)

    def arms(self, options):
        return list(options.arms)

    def _reference(self, options) -> str:
        return options.reference_arm or (options.arms[0] if options.arms else "vanilla")

    def _others(self, options):
        return [arm for arm in options.arms if arm != self._reference(options)]

    def parameter_names_for(self, options=None):
        options = self.options_from(options)
        if options.per_arm_exponents:
            return ("E", "A", "B", "alpha") + tuple(f"beta_{arm}" for arm in options.arms)
        return chinchilla.NAMES + tuple(f"m_{arm}" for arm in self._others(options))

    def to_parameters(self, theta, options):
        theta = np.asarray(theta)
        a, b, e, alpha = (theta[..., i] for i in range(4))
        out = {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha}
        if options.per_arm_exponents:
            out.update({f"beta_{arm}": theta[..., 4 + i] for i, arm in enumerate(options.arms)})
        else:
            out["beta"] = theta[..., 4]
            out.update({f"m_{arm}": np.exp(theta[..., 5 + i]) for i, arm in enumerate(self._others(options))})
        return out

    def from_parameters(self, params, options):
        if options.per_arm_exponents:
            parts = chinchilla.log_parameters({**params, "beta": params[f"beta_{options.arms[0]}"]})[:4]
            parts += [params[f"beta_{arm}"] for arm in options.arms]
        else:
            with np.errstate(divide="ignore"):   # a multiplier of 0 is the vanishing term log 0 = -inf
                parts = chinchilla.log_parameters(params) + [np.log(params[f"m_{arm}"]) for arm in self._others(options)]
        return stack_theta(parts)

    def raw_predict(self, theta, cov, options):
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        a, b, e, alpha = (theta[..., i] for i in range(4))
        arm = cov["arm"]
        if options.per_arm_exponents:
            beta = theta[4:4 + len(options.arms)][arm]
            return chinchilla.log_loss(a, b, e, alpha, beta, jnp.log(cov["N"]), jnp.log(cov["D"]), xp=jnp)
        beta = theta[..., 4]
        log_m = [jnp.zeros_like(theta[0])] + [theta[..., 5 + i] for i in range(len(options.arms) - 1)]
        order = [self._reference(options)] + self._others(options)
        table = jnp.stack([log_m[order.index(name)] for name in options.arms])
        log_d = jnp.log(cov["D"]) + table[arm]
        return chinchilla.log_loss(a, b, e, alpha, beta, jnp.log(cov["N"]), log_d, xp=jnp)

    def bounds_for(self, options=None):
        """Chinchilla's bounds on the shared terms and the exponents (a fit outside them is not a law:
        the three-seed demo's E-held fit reached alpha 21, A 1e96), multipliers non-negative."""
        bounds = {"E": (0, np.inf), "A": (0, np.inf), "B": (0, np.inf), "alpha": (0, 3)}
        return {name: bounds.get(name, (0, 3) if name.startswith("beta") else (0, np.inf))
                for name in self.parameter_names_for(options)}

    def starts(self, options=None):
        options = self.options_from(options)
        base = chinchilla.initial_grid()
        if options.per_arm_exponents:
            return np.concatenate([base[:, :4]] + [base[:, 4:5]] * len(options.arms), axis=1)
        extra = np.log(np.array([0.5, 1.0, 2.0]))[np.arange(len(base)) % 3]
        return np.concatenate([base] + [extra[:, None]] * (len(options.arms) - 1), axis=1)

    def optional_columns(self, options):
        return ("C", "D_raw")

    def refit_on_raw_tokens(self, options):
        return not options.per_arm_exponents

    def log_e_index(self, options):
        return 2

    def chinchilla_closed_forms(self, options):
        return not options.per_arm_exponents
