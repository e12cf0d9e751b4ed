"""Scaling-law forms: one object per form with its parameters, bounds, starting grid and prediction.

Every form works on an internal, unconstrained parameter vector `theta` (logs of positive
constants) because that is what the optimiser moves; `to_parameters` / `from_parameters`
convert to and from the names the papers use, which are what law files store.

Covariates (canonical column names, see analysis.tables):
  N params, D trained tokens, U unique tokens, arm, x = d_model / sqrt(non-embedding params),
  r = MLP-to-attention parameter ratio, g = query heads per KV head, T thinking budget,
  k samples, loss (for the accuracy step of the joint form).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

CHINCHILLA_NAMES = ("E", "A", "B", "alpha", "beta")


def chinchilla_grid() -> np.ndarray:
    """Hoffmann et al.'s initialisation grid as Epoch ran it: 6 x 6 x 5 x 5 x 5 = 4,500 starts
    over (log A, log B, log E, alpha, beta)."""
    return np.array(list(itertools.product(
        np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
        np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))), dtype=np.float64)


def _log_chinchilla(a, b, e, alpha, beta, log_n, log_d):
    """log(E + A/N^alpha + B/D^beta) in log-sum-exp form (Besiroglu et al. 2024)."""
    return jnp.logaddexp(jnp.logaddexp(a - alpha * log_n, b - beta * log_d), e)


def _chinchilla_theta(p: Mapping[str, float]) -> list:
    return [jnp.log(p["A"]), jnp.log(p["B"]), jnp.log(p["E"]), p["alpha"], p["beta"]]


@dataclass(frozen=True)
class Form:
    """A law's functional form. Subclasses define `parameter_names_for`, `log_predict` etc."""

    name: str
    description: str
    paper: str
    covariates: tuple[str, ...]
    log_target: bool = True  # residuals are log(prediction) - log(observation)

    # -- interface every form implements -------------------------------------------------------
    def parameter_names_for(self, options: Mapping) -> tuple[str, ...]:
        raise NotImplementedError

    def to_parameters(self, theta: np.ndarray, options: Mapping) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def from_parameters(self, params: Mapping[str, float], options: Mapping) -> jnp.ndarray:
        raise NotImplementedError

    def raw_predict(self, theta, cov: Mapping[str, jnp.ndarray], options: Mapping):
        """Prediction on the fitting scale: log target if log_target, else the target itself."""
        raise NotImplementedError

    def starts(self, options: Mapping) -> np.ndarray:
        raise NotImplementedError

    def bounds_for(self, options: Mapping) -> dict[str, tuple[float, float]]:
        return {name: (-np.inf, np.inf) for name in self.parameter_names_for(options)}

    def min_points(self, options: Mapping) -> int | None:
        """Fewest points the form may be fitted to (None: the fitter's default per parameter)."""
        return None

    # -- shared --------------------------------------------------------------------------------
    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.parameter_names_for({})

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        return self.bounds_for({})

    def predict(self, params: Mapping[str, float], options: Mapping | None = None, **covariates):
        """The target at the covariates (numpy arrays broadcast together)."""
        options = dict(options or {})
        missing = [c for c in self.required_covariates(options) if c not in covariates]
        if missing:
            raise ValueError(f"form {self.name!r} needs covariates {missing} to predict")
        with jax.enable_x64(True):
            theta = self.from_parameters(params, options)
            cov = self.encode_covariates(covariates, options)
            out = self.raw_predict(theta, cov, options)
            out = jnp.exp(out) if self.log_target else out
            return np.asarray(out)

    def required_covariates(self, options: Mapping) -> tuple[str, ...]:
        return self.covariates

    def encode_covariates(self, covariates: Mapping, options: Mapping) -> dict[str, jnp.ndarray]:
        """Numeric arrays for raw_predict (logs of sizes; arm names become indices)."""
        out = {}
        for name, value in covariates.items():
            if name == "arm":
                arms = list(options.get("arms", []))
                labels = np.asarray(value, dtype=object)
                unknown = sorted(set(np.atleast_1d(labels).tolist()) - set(arms))
                if unknown:
                    raise ValueError(f"form {self.name!r}: arm(s) {unknown} were not in the fit "
                                     f"(fitted arms: {arms})")
                out["arm"] = jnp.asarray(np.vectorize(arms.index, otypes=[np.int64])(labels))
            elif name in self.covariates or name == "L":
                out[name] = jnp.asarray(np.asarray(value, dtype=np.float64))
        return out


@dataclass(frozen=True)
class Chinchilla(Form):
    """Hoffmann et al.'s L = E + A/N^alpha + B/D^beta. With options["shared_exponent"] (Gadre et
    al. 2024's over-training law) alpha = beta: four parameters E, A, B, alpha; `beta` is still
    reported (equal to alpha) so the law answers every Chinchilla question. In their
    parametrisation with M = D/N and C = 6ND, L = E + (a M^eta + b M^-eta) C^-eta with
    eta = alpha/2, a = A 6^eta, b = B 6^eta (`gadre_parameters`)."""

    def parameter_names_for(self, options):
        return CHINCHILLA_NAMES[:4] if options.get("shared_exponent") else CHINCHILLA_NAMES

    def to_parameters(self, theta, options):
        theta = np.moveaxis(np.asarray(theta), -1, 0)
        if options.get("shared_exponent"):
            a, b, e, alpha = theta
            return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": alpha}
        a, b, e, alpha, beta = theta
        return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}

    def from_parameters(self, params, options):
        theta = _chinchilla_theta({**params, "beta": params.get("beta", params["alpha"])})
        if options.get("shared_exponent"):
            theta = theta[:4]
        return jnp.stack([jnp.asarray(v, dtype=jnp.float64) for v in theta], -1)

    def raw_predict(self, theta, cov, options):
        if options.get("shared_exponent"):
            a, b, e, alpha = (theta[..., i] for i in range(4))
            beta = alpha
        else:
            a, b, e, alpha, beta = (theta[..., i] for i in range(5))
        return _log_chinchilla(a, b, e, alpha, beta, jnp.log(cov["N"]), jnp.log(cov["D"]))

    def starts(self, options):
        grid = chinchilla_grid()
        if options.get("shared_exponent"):
            return np.unique(grid[:, :4], axis=0)
        return grid

    def bounds_for(self, options):
        bounds = {"E": (0, np.inf), "A": (0, np.inf), "B": (0, np.inf), "alpha": (0, 3), "beta": (0, 3)}
        return {k: bounds[k] for k in self.parameter_names_for(options)}

    def min_points(self, options):
        # Gadre et al. fit the four shared-exponent parameters to five runs
        return len(self.parameter_names_for(options)) + 1 if options.get("shared_exponent") else None


def gadre_parameters(params: Mapping[str, float]) -> dict[str, float]:
    """Gadre et al.'s (a, b, eta, E) of L(C, M) = E + (a M^eta + b M^-eta) C^-eta from a
    shared-exponent Chinchilla law's (E, A, B, alpha)."""
    eta = params["alpha"] / 2
    return {"E": params["E"], "a": params["A"] * 6 ** eta, "b": params["B"] * 6 ** eta, "eta": eta}


@dataclass(frozen=True)
class DataConstrained(Form):
    """Muennighoff et al. 2023: repeated tokens and excess parameters decay in value.

    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), R_D = D/U_D - 1 repetitions;
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), U_N = min(N, compute-optimal N for U_D tokens),
    R_N = N/U_N - 1; L = E + A/N'^alpha + B/D'^beta. Law-file names: R_D, R_N (the paper's
    R_D*, R_N*). options["base"] = {E, A, B, alpha, beta} fixes the base law; without it the base
    is fitted too.
    """

    def parameter_names_for(self, options):
        return ("R_D", "R_N") + (() if options.get("base") else CHINCHILLA_NAMES)

    def to_parameters(self, theta, options):
        theta = np.asarray(theta)
        out = {"R_D": np.exp(theta[..., 0]), "R_N": np.exp(theta[..., 1])}
        if not options.get("base"):
            out.update(CHINCHILLA.to_parameters(theta[..., 2:], options))
        return out

    def from_parameters(self, params, options):
        parts = [jnp.log(params["R_D"]), jnp.log(params["R_N"])]
        if not options.get("base"):
            parts += _chinchilla_theta(params)
        return jnp.stack([jnp.asarray(v, dtype=jnp.float64) for v in parts], -1)

    def raw_predict(self, theta, cov, options):
        r_d, r_n = jnp.exp(theta[..., 0]), jnp.exp(theta[..., 1])
        if options.get("base"):
            base = options["base"]
            a, b, e = (jnp.log(float(base[k])) for k in ("A", "B", "E"))
            alpha, beta = float(base["alpha"]), float(base["beta"])
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
        return _log_chinchilla(a, b, e, alpha, beta, log_n_eff, log_d_eff)

    def starts(self, options):
        r_grid = np.log(np.array(list(itertools.product([1, 5, 15, 50, 200], [0.5, 2, 5, 20, 100]))))
        if options.get("base"):
            return r_grid
        base = chinchilla_grid()
        return np.concatenate([r_grid[np.arange(len(base)) % len(r_grid)], base], axis=1)

    def bounds_for(self, options):
        return {name: (0, np.inf) for name in self.parameter_names_for(options)}


def _arm_options(options) -> tuple[list[str], str]:
    arms = list(options.get("arms", []))
    reference = options.get("reference_arm", arms[0] if arms else "vanilla")
    return arms, reference


@dataclass(frozen=True)
class Augmentation(Form):
    """Each arm's data is worth a multiple of the reference arm's: D_eff = m_arm D, with
    L = E + A/N^alpha + B/D_eff^beta (m_<reference> = 1). With options["per_arm_exponents"],
    instead every arm has its own data exponent beta_<arm> (shared E, A, B, alpha)."""

    def _others(self, options):
        arms, reference = _arm_options(options)
        return [arm for arm in arms if arm != reference]

    def parameter_names_for(self, options):
        arms, _ = _arm_options(options)
        if options.get("per_arm_exponents"):
            return ("E", "A", "B", "alpha") + tuple(f"beta_{arm}" for arm in arms)
        return CHINCHILLA_NAMES + tuple(f"m_{arm}" for arm in self._others(options))

    def to_parameters(self, theta, options):
        theta = np.asarray(theta)
        out = CHINCHILLA.to_parameters(theta[..., :5], options)
        if options.get("per_arm_exponents"):
            arms, _ = _arm_options(options)
            del out["beta"]
            out.update({f"beta_{arm}": theta[..., 4 + i] for i, arm in enumerate(arms)})
        else:
            out.update({f"m_{arm}": np.exp(theta[..., 5 + i]) for i, arm in enumerate(self._others(options))})
        return out

    def from_parameters(self, params, options):
        arms, _ = _arm_options(options)
        if options.get("per_arm_exponents"):
            parts = _chinchilla_theta({**params, "beta": params[f"beta_{arms[0]}"]})[:4]
            parts += [params[f"beta_{arm}"] for arm in arms]
        else:
            parts = _chinchilla_theta(params) + [jnp.log(params[f"m_{arm}"]) for arm in self._others(options)]
        return jnp.stack([jnp.asarray(v, dtype=jnp.float64) for v in parts], -1)

    def raw_predict(self, theta, cov, options):
        arms, reference = _arm_options(options)
        a, b, e, alpha = (theta[..., i] for i in range(4))
        arm = cov["arm"]
        if options.get("per_arm_exponents"):
            betas = theta[4:4 + len(arms)]
            beta = betas[arm]
            return _log_chinchilla(a, b, e, alpha, beta, jnp.log(cov["N"]), jnp.log(cov["D"]))
        beta = theta[..., 4]
        log_m = [jnp.zeros_like(theta[0])]
        log_m += [theta[..., 5 + i] for i in range(len(arms) - 1)]
        order = [reference] + self._others(options)
        table = jnp.stack([log_m[order.index(name)] for name in arms])
        log_d = jnp.log(cov["D"]) + table[arm]
        return _log_chinchilla(a, b, e, alpha, beta, jnp.log(cov["N"]), log_d)

    def starts(self, options):
        base = chinchilla_grid()
        arms, _ = _arm_options(options)
        if options.get("per_arm_exponents"):
            return np.concatenate([base[:, :4]] + [base[:, 4:5]] * len(arms), axis=1)
        extra = np.log(np.array([0.5, 1.0, 2.0]))[np.arange(len(base)) % 3]
        return np.concatenate([base] + [extra[:, None]] * (len(arms) - 1), axis=1)

    def required_covariates(self, options):
        return ("N", "D", "arm")


@dataclass(frozen=True)
class Architecture(Form):
    """Bian et al. 2025 (arXiv 2510.18245) conditional law: the Chinchilla loss times calibration
    factors in the hidden size relative to model size, x = d_model / sqrt(N), and in the
    MLP-to-attention ratio r:  L = L_chinchilla(N, D) (1 + a1 log x + a2 / x)(1 + b1 log r + b2 / r),
    and with options["gqa"] a further factor (1 + c1 log g), g = query heads per KV head.
    The paper's constant terms a0, b0 multiply the whole law and are absorbed into E, A, B
    (fixed to 1) because only their product with the base law is identifiable."""

    def parameter_names_for(self, options):
        return CHINCHILLA_NAMES + ("a1", "a2", "b1", "b2") + (("c1",) if options.get("gqa") else ())

    def to_parameters(self, theta, options):
        theta = np.asarray(theta)
        out = CHINCHILLA.to_parameters(theta[..., :5], options)
        for i, name in enumerate(self.parameter_names_for(options)[5:]):
            out[name] = theta[..., 5 + i]
        return out

    def from_parameters(self, params, options):
        parts = _chinchilla_theta(params) + [params[n] for n in self.parameter_names_for(options)[5:]]
        return jnp.stack([jnp.asarray(v, dtype=jnp.float64) for v in parts], -1)

    def raw_predict(self, theta, cov, options):
        a, b, e, alpha, beta, a1, a2, b1, b2 = (theta[..., i] for i in range(9))
        base = _log_chinchilla(a, b, e, alpha, beta, jnp.log(cov["N"]), jnp.log(cov["D"]))
        x, r = cov["x"], cov["r"]
        factor = (1 + a1 * jnp.log(x) + a2 / x) * (1 + b1 * jnp.log(r) + b2 / r)
        if options.get("gqa"):
            factor = factor * (1 + theta[..., 9] * jnp.log(cov["g"]))
        return base + jnp.log(jnp.maximum(factor, 1e-12))

    def starts(self, options):
        base = chinchilla_grid()
        n_extra = len(self.parameter_names_for(options)) - 5
        return np.concatenate([base, np.zeros((len(base), n_extra))], axis=1)

    def required_covariates(self, options):
        return ("N", "D", "x", "r") + (("g",) if options.get("gqa") else ())


@dataclass(frozen=True)
class JointInference(Form):
    """Two-step accuracy law (OLMo ladder, Bhagia et al. 2024) with a test-time term:
    step 1 predicts the loss L(N, D[, arm]) from a loss law given as options["loss_law"] (a law
    file's dict, any loss form) or, without one, takes the measured loss as covariate L; step 2 maps it to accuracy with a sigmoid whose logit gains from
    thinking tokens T and parallel samples k:
        acc = b + a * sigmoid(-kappa (L - L0) + gamma_T log(1 + T) + gamma_k log k).
    b in (0, 1) is the floor and a in (0, 1 - b) the range above it (fitted through logits, so
    every prediction is an accuracy in [0, 1]), kappa > 0 the steepness, L0 the loss at the
    midpoint. Residuals are on accuracy itself (it can be 0). With options["per_arm_thinking"]
    (and an augmentation loss law) each arm has its own gamma_T_<arm>: whether a model turns
    thinking tokens into accuracy may depend on what it was pretrained on."""

    def _thinking_arms(self, options) -> list[str]:
        if not options.get("per_arm_thinking"):
            return []
        arms = list(options.get("loss_law", {}).get("options", {}).get("arms", []))
        if len(arms) < 2:
            raise ValueError("per_arm_thinking needs a loss law fitted on several arms (an augmentation law)")
        return arms

    def _gamma_t_names(self, options) -> tuple[str, ...]:
        arms = self._thinking_arms(options)
        return tuple(f"gamma_T_{arm}" for arm in arms) if arms else ("gamma_T",)

    def parameter_names_for(self, options):
        return ("a", "b", "kappa", "L0") + self._gamma_t_names(options) + ("gamma_k",)

    def to_parameters(self, theta, options):
        theta = np.moveaxis(np.asarray(theta), -1, 0)
        names = self._gamma_t_names(options)
        b = 1.0 / (1.0 + np.exp(-theta[1]))
        a = (1.0 - b) / (1.0 + np.exp(-theta[0]))
        out = {"a": a, "b": b, "kappa": np.exp(theta[2]), "L0": theta[3], "gamma_k": theta[-1]}
        out.update({name: theta[4 + i] for i, name in enumerate(names)})
        return out

    def from_parameters(self, params, options):
        b = jnp.asarray(params["b"], dtype=jnp.float64)
        share = jnp.asarray(params["a"], dtype=jnp.float64) / (1.0 - b)
        parts = [jnp.log(share / (1.0 - share)), jnp.log(b / (1.0 - b)), jnp.log(params["kappa"]), params["L0"]]
        parts += [params[name] for name in self._gamma_t_names(options)] + [params["gamma_k"]]
        return jnp.stack([jnp.asarray(v, dtype=jnp.float64) for v in parts], -1)

    def loss(self, cov, options):
        """Step 1: the loss law's prediction, or the measured loss when given as a covariate."""
        if "L" in cov:
            return cov["L"]
        law = options["loss_law"]
        loss_form = get_form(law["form"])
        loss_options = law.get("options", {})
        params = {**loss_options.get("fixed", {}),
                  **{k: v["estimate"] for k, v in law["parameters"].items()}}
        theta = loss_form.from_parameters(params, loss_options)
        sub = {k: cov[k] for k in loss_form.required_covariates(loss_options)}
        return jnp.exp(loss_form.raw_predict(theta, sub, loss_options))

    def raw_predict(self, theta, cov, options):
        logit_share, logit_b, log_kappa, l0 = (theta[..., i] for i in range(4))
        b = jax.nn.sigmoid(logit_b)
        a = (1.0 - b) * jax.nn.sigmoid(logit_share)
        g_k = theta[..., -1]
        n_gamma_t = len(self._gamma_t_names(options))
        g_t = theta[..., 4:4 + n_gamma_t][..., cov["arm"]] if n_gamma_t > 1 else theta[..., 4]
        loss = self.loss(cov, options)
        logit = -jnp.exp(log_kappa) * (loss - l0) + g_t * jnp.log1p(cov["T"]) + g_k * jnp.log(cov["k"])
        return b + a * jax.nn.sigmoid(logit)

    def starts(self, options):
        # logit of a / (1 - b): shares 0.5, 0.95; logit of b: floors 0.01, 0.25
        grid = np.array(list(itertools.product([0.0, 3.0], [-4.6, -1.1], np.log([1.0, 5.0, 20.0]),
                                               [1.5, 2.5, 4.0], [0.0, 0.5], [0.0, 0.5])), dtype=np.float64)
        repeats = len(self._gamma_t_names(options))
        return np.concatenate([grid[:, :4]] + [grid[:, 4:5]] * repeats + [grid[:, 5:]], axis=1)

    def required_covariates(self, options):
        if "loss_law" not in options:
            return ("L", "T", "k")
        loss_covariates = ("N", "D")
        if options["loss_law"].get("form") == "augmentation":
            loss_covariates += ("arm",)
        return loss_covariates + ("T", "k")

    def encode_covariates(self, covariates, options):
        if "arm" in covariates and "loss_law" in options:
            arm_options = options["loss_law"].get("options", {})
            out = super().encode_covariates({k: v for k, v in covariates.items() if k != "arm"}, options)
            out.update(Form.encode_covariates(self, {"arm": covariates["arm"]}, arm_options))
            return out
        return super().encode_covariates(covariates, options)


def pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k),
    computed as a running product so large n does not overflow."""
    n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
    if np.any(k > n):
        raise ValueError(f"pass@{k} needs at least {k} samples per problem (smallest n is {n.min()})")
    out = np.empty(np.broadcast(n, c).shape, dtype=np.float64)
    for idx in np.ndindex(out.shape):
        ni, ci = int(np.broadcast_to(n, out.shape)[idx]), int(np.broadcast_to(c, out.shape)[idx])
        if ni - ci < k:
            out[idx] = 1.0
        else:
            out[idx] = 1.0 - np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1))
    return out


CHINCHILLA = Chinchilla("chinchilla", "L = E + A/N^alpha + B/D^beta", "Hoffmann et al. 2022; Besiroglu et al. 2024",
                        ("N", "D"))
FORMS: dict[str, Form] = {
    form.name: form for form in (
        CHINCHILLA,
        DataConstrained("data_constrained", "repeated data and excess parameters decay in value",
                        "Muennighoff et al. 2023", ("N", "D", "U")),
        Augmentation("augmentation", "each arm's data counts as m_arm times reference data",
                     "this project (Chinchilla form with effective data)", ("N", "D", "arm")),
        Architecture("architecture", "Chinchilla loss times hidden-size and MLP/attention calibration",
                     "Bian et al. 2025, arXiv 2510.18245", ("N", "D", "x", "r", "g")),
        JointInference("joint_inference", "loss law then sigmoid accuracy with test-time T, k terms",
                       "Bhagia et al. 2024 (OLMo ladder); Snell et al. 2024; Brown et al. 2024",
                       ("N", "D", "arm", "T", "k"), log_target=False),
    )
}


def get_form(name: str) -> Form:
    try:
        return FORMS[name]
    except KeyError:
        raise ValueError(f"unknown form {name!r}; known forms: {', '.join(FORMS)}") from None
