"""Loss law, then a sigmoid from loss to accuracy with test-time thinking and sampling terms; with a
difficulty column, a difficulty covariate and a penalty on long thinking (issue 18)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import expit

from analysis.estimates import LawError
from analysis.forms.augmentation import ordered_arms
from analysis.forms.base import CurveForm, CurveOptions, encode_arms, register, stack_theta


@dataclasses.dataclass(frozen=True)
class JointInferenceOptions(CurveOptions):
    # step 1: the loss law (an analysis.law.Law; its JSON in a law file); None: the loss is a covariate L
    loss_law: Any = dataclasses.field(default=None, metadata={"law": True})
    per_arm_thinking: bool = False              # a test-time slope gamma_T_<arm> per arm of the loss law
    # With per_arm_thinking, the arms that think (T above 0 in the table; completed by prepare): an
    # arm that never thinks (its T is the 0 thinking tokens it wrote) has no slope, its T term is 0.
    thinking_arms: tuple[str, ...] | None = None
    per_arm_midpoint: bool = False              # a loss-to-accuracy midpoint L0_<arm> per arm of the loss law
    # With a per-arm option and a loss law without arms (a Chinchilla law of the reference arm, where
    # no augmentation law is within its bounds): the table's arms, reference first (completed by
    # prepare). Every arm's step-1 loss is then the loss law's at its N and D.
    table_arms: tuple[str, ...] = ()
    # Starting midpoints L0: quantiles of the table's own step-1 loss (completed by prepare)
    loss_quantiles: tuple[float, ...] | None = None
    # what a trained token of an arm costs the teacher (analysis.recommend.joint_allocation)
    teacher_flops_per_token: float | None = None
    thinking_fraction: Mapping[str, float] | None = None
    # The difficulty levels of the table (completed from its difficulty column when it holds two or
    # more; None: the pooled law) and each level's share of the table's rows (the default mix).
    difficulties: tuple[float, ...] | None = None
    difficulty_shares: tuple[float, ...] | None = None
    pool_difficulties: bool = dataclasses.field(
        default=False, metadata={"help": "joint_inference: ignore a difficulty column (the pooled law)"})
    # The one sample count k of a table where k never varies (completed by prepare): no gamma_k is
    # fitted (the data cannot determine it) and the law answers only at that k. None: k varies.
    constant_samples: float | None = None

    @property
    def reference_difficulty(self) -> float | None:
        """d0, the smallest fitted difficulty: L0 and gamma_T are the law's at d0."""
        return None if not self.difficulties else float(min(self.difficulties))

    @property
    def difficulty_range(self) -> tuple[float, float] | None:
        return None if not self.difficulties else (float(min(self.difficulties)), float(max(self.difficulties)))


@register
class JointInference(CurveForm):
    """Two-step accuracy law (OLMo ladder, Bhagia et al. 2024) with a test-time term: step 1
    predicts the loss L(N, D[, arm]) from the loss law (any loss form) or, without one, takes the
    measured loss as covariate L; step 2 maps it to accuracy with a sigmoid whose logit gains from
    thinking tokens T and parallel samples k:
        acc = b + a * sigmoid(-kappa (L - L0) + gamma_T log(1 + T) + gamma_k log k).
    b in (0, 1) is the floor and a in (0, 1 - b) the range above it (fitted through logits, so
    every prediction is an accuracy in [0, 1]), kappa > 0 the steepness, L0 the loss at the
    midpoint. Residuals are on accuracy itself (it can be 0). With per_arm_thinking (the loss
    law's arms, or the table's where the loss law has none) each arm has its own gamma_T_<arm>:
    whether a model turns thinking tokens into accuracy may depend on what it was pretrained on. With per_arm_midpoint each arm has its own
    L0_<arm>: the loss is measured on raw text, a format a thinking arm's training changes (inline
    thinking expects <think> before every hard value), so one loss need not mean one accuracy
    across arms; kappa stays shared.

    With a difficulty column (two or more levels; `difficulties` is completed from the table, and
    `pool_difficulties` keeps the pooled law) the logit becomes
        -kappa (L - L0) - delta_d (d - d0) + gamma_T exp(eta_d (d - d0)) log(1 + T)
            - rho_T T / 1000 + gamma_k log k,
    d0 the smallest fitted difficulty: delta_d is how much harder each difficulty step is at T = 0,
    eta_d how the thinking gain scales with difficulty, rho_T a logit penalty per 1,000 thinking
    tokens (of either sign: the data decide whether long thinking hurts). With rho_T > 0 the
    logit is concave in T with its peak at T* = 1000 gamma_T exp(eta_d (d - d0)) / rho_T - 1,
    later for harder queries when eta_d > 0: accuracy rises and then falls with T."""

    name = "joint_inference"
    description = "loss law then sigmoid accuracy with test-time T, k terms"
    paper = "Bhagia et al. 2024 (OLMo ladder); Snell et al. 2024; Brown et al. 2024"
    covariates = ("N", "D", "arm", "T", "k")
    Options = JointInferenceOptions
    log_target = False
    questions = ("joint_allocation", "adaptive_thinking")

    def loss_law(self, options):
        """Step 1's law: a Law, which analysis.law reads from the law file's JSON (this module sits
        below analysis.law, so it does not read law files itself)."""
        law = options.loss_law
        if isinstance(law, Mapping):
            raise LawError("joint_inference: the loss_law setting must be a Law (analysis.load_law(path), or "
                           "Law.from_dict(json)), not its JSON")
        return law

    def arms(self, options):
        """The arms this law predicts for: its loss law's, else the table's (`table_arms`)."""
        loss_law = options.loss_law
        if loss_law is None or isinstance(loss_law, Mapping):
            own = list(((loss_law or {}).get("settings") or {}).get("arms", []))
        else:
            own = loss_law.form.arms(loss_law.settings)
        return own or list(options.table_arms)

    def difficulties(self, options) -> list[float]:
        """The fitted difficulty levels (empty: the pooled law)."""
        return [float(d) for d in (options.difficulties or ())]

    def _difficulty_names(self, options) -> tuple[str, ...]:
        return ("delta_d", "eta_d", "rho_T") if options.difficulties else ()

    def prepare(self, options, frame):
        if options.objective is None and "n" in frame:
            options = options.replace(objective="binomial")   # accuracy of n problems: a binomial likelihood
        options = super().prepare(options, frame)
        options = options.replace(loss_quantiles=self._loss_quantiles(options, frame))
        if ((options.per_arm_thinking or options.per_arm_midpoint) and not self.arms(options) and "arm" in frame
                and frame["arm"].nunique() > 1):
            options = options.replace(table_arms=tuple(ordered_arms(frame, None)[0]))
        if options.per_arm_thinking and options.thinking_arms is None and {"arm", "T"} <= set(frame.columns):
            thinks = frame.groupby("arm")["T"].max()
            options = options.replace(thinking_arms=tuple(a for a in self.arms(options) if thinks.get(a, 0) > 0))
        if "k" in frame and frame["k"].nunique() == 1:
            options = options.replace(constant_samples=float(frame["k"].iloc[0]))
        if options.pool_difficulties:
            return options.replace(difficulties=None, difficulty_shares=None)
        if "difficulty" in frame and frame["difficulty"].nunique() >= 2 and self._difficulty_identifiable(options, frame):
            counts = frame["difficulty"].astype(float).value_counts().sort_index()
            levels = tuple(int(d) if float(d).is_integer() else float(d) for d in counts.index)
            shares = tuple(float(c) for c in counts.to_numpy() / counts.sum())
            return options.replace(difficulties=levels, difficulty_shares=shares)
        return options

    def _loss_quantiles(self, options, frame) -> tuple[float, ...] | None:
        """The 10th, 50th and 90th percentiles of step 1's loss over the table, where the fit's
        starting midpoints go: a midpoint far outside the table's losses leaves the sigmoid flat,
        where no gradient moves it (losses per token differ by vocabulary, so no fixed start fits
        every table)."""
        if options.loss_law is None:
            if "L" not in frame:
                return None
            losses = frame["L"].to_numpy(dtype=np.float64)
        else:
            law = self.loss_law(options)
            names = law.form.required_covariates(law.settings)
            if any(name not in frame for name in names):
                return None
            losses = np.asarray(law.predict(**{name: frame[name].to_numpy() for name in names}), dtype=np.float64)
        losses = losses[np.isfinite(losses)]
        return tuple(float(q) for q in np.quantile(losses, [0.1, 0.5, 0.9])) if losses.size else None

    def check_difficulties(self, values, options, flag: str = "difficulty") -> np.ndarray:
        """Difficulties as floats, refused outside the fitted range (see `check_difficulties`)."""
        return check_difficulties(values, options, flag)

    def summary_lines(self, law) -> list[str]:
        """Where each difficulty's accuracy peaks in T (a difficulty law with rho_T > 0)."""
        lines = super().summary_lines(law)
        options, p = law.settings, law.estimates()
        if not options.difficulties:
            return lines
        if p["rho_T"] <= 0:
            return lines + [f"rho_T = {p['rho_T']:.4g} <= 0: no penalty on long thinking, accuracy rises with T at "
                            f"every difficulty"]
        for name in self._gamma_t_names(options):
            peaks = [max(0.0, 1000.0 * p[name] * np.exp(p["eta_d"] * (d - options.reference_difficulty)) / p["rho_T"]
                         - 1.0) for d in self.difficulties(options)]
            arm = f" ({name[len('gamma_T_'):]})" if name != "gamma_T" else ""
            lines.append(f"accuracy peaks in T{arm} at T* = " + ", ".join(
                f"{t:.4g} (d{d:g})" for t, d in zip(peaks, self.difficulties(options)))
                + " thinking tokens; more lowers it (fitted T up to "
                + f"{law.ranges.get('T', [0, 0])[1]:g})")
        return lines

    def _difficulty_identifiable(self, options, frame) -> bool:
        """The difficulty terms need three or more thinking budgets (with two, ln(1 + T) and T are
        collinear: gamma_T and rho_T cannot be told apart) and two points per parameter; a table
        without them gets the pooled law, as before."""
        n_params = len(self.parameter_names_for(options)) + 3
        return "T" in frame and frame["T"].nunique() >= 3 and len(frame) >= 2 * n_params

    def optional_columns(self, options):
        per_arm = ("arm",) if options.per_arm_thinking or options.per_arm_midpoint else ()   # table_arms
        return ("C", "n") + per_arm + (() if options.pool_difficulties else ("difficulty",))

    def _per_arm(self, name: str, options, flag: str) -> tuple[str, ...]:
        arms = self.arms(options)
        if len(arms) < 2:
            raise ValueError(f"{flag} needs several arms: a loss law fitted on them (an augmentation law) or a "
                             f"table whose arm column holds them")
        return tuple(f"{name}_{arm}" for arm in arms)

    def _gamma_t_names(self, options) -> tuple[str, ...]:
        if not options.per_arm_thinking:
            return ("gamma_T",)
        names = self._per_arm("gamma_T", options, "per_arm_thinking")
        if options.thinking_arms is None:
            return names
        return tuple(name for name, arm in zip(names, self.arms(options)) if arm in options.thinking_arms)

    def _gamma_t_slots(self, options) -> np.ndarray:
        """Per arm of the loss law, its slope's index among the gamma_T parameters; an arm that
        does not think points one past them, at a slope of 0."""
        names = self._gamma_t_names(options)
        return np.array([names.index(f"gamma_T_{arm}") if f"gamma_T_{arm}" in names else len(names)
                         for arm in self.arms(options)])

    def _midpoint_names(self, options) -> tuple[str, ...]:
        return self._per_arm("L0", options, "per_arm_midpoint") if options.per_arm_midpoint else ("L0",)

    def parameter_names_for(self, options=None):
        options = self.options_from(options)
        sampling = () if options.constant_samples is not None else ("gamma_k",)
        return (("a", "b", "kappa") + self._midpoint_names(options) + self._gamma_t_names(options) + sampling
                + self._difficulty_names(options))

    def to_parameters(self, theta, options):
        theta = np.moveaxis(np.asarray(theta), -1, 0)
        b = expit(theta[1])            # logistic without overflow at a profile's far rungs
        a = (1.0 - b) * expit(theta[0])
        with np.errstate(over="ignore"):
            out = {"a": a, "b": b, "kappa": np.exp(theta[2])}
        out.update({name: theta[i] for i, name in enumerate(self.parameter_names_for(options)) if i >= 3})
        return out

    def from_parameters(self, params, options):
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        b = jnp.asarray(params["b"], dtype=jnp.float64)
        share = jnp.asarray(params["a"], dtype=jnp.float64) / (1.0 - b)
        parts = [jnp.log(share / (1.0 - share)), jnp.log(b / (1.0 - b)), jnp.log(params["kappa"])]
        parts += [params[name] for name in self.parameter_names_for(options)[3:]]
        return stack_theta(parts)

    def loss(self, cov, options):
        """Step 1: the loss law's prediction, or the measured loss when given as a covariate."""
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        if "L" in cov:
            return cov["L"]
        law = self.loss_law(options)
        loss_form, settings = law.form, law.settings
        theta = loss_form.from_parameters(law.estimates(), settings)
        sub = {k: cov[k] for k in loss_form.required_covariates(settings)}
        return jnp.exp(loss_form.raw_predict(theta, sub, settings))

    def predict_draws(self, draws, options=None, **covariates):
        """Draw b of step 2 with draw b of step 1 (mod their count): the loss law's uncertainty is
        carried into accuracy, as the fit's bootstrap carried it (analysis.fitting._step1)."""
        options = self.options_from(options)
        if options.loss_law is None or "L" in covariates or not draws:
            return super().predict_draws(draws, options, **covariates)
        law = self.loss_law(options)
        if not law.bootstrap_samples:
            return super().predict_draws(draws, options, **covariates)
        names = law.form.required_covariates(law.settings)
        with np.errstate(over="ignore", invalid="ignore"):
            losses = np.asarray(law.predict_draws(**{k: covariates[k] for k in names}), dtype=np.float64)
        losses = losses[:law.n_bootstrap][np.arange(len(draws)) % law.n_bootstrap]
        return self._evaluate({name: np.array([float(d[name]) for d in draws]) for name in draws[0]}, options,
                              {**covariates, "L": losses}, self._raw_predict_paired)

    def _raw_predict_paired(self, thetas, cov, options):
        import jax  # JAX on first evaluation (analysis/forms/__init__.py)
        return jax.vmap(lambda t, loss: self.raw_predict(t, {**cov, "L": loss}, options))(thetas, cov["L"])

    def raw_predict(self, theta, cov, options):
        import jax
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        logit_share, logit_b, log_kappa = (theta[..., i] for i in range(3))
        b = jax.nn.sigmoid(logit_b)
        a = (1.0 - b) * jax.nn.sigmoid(logit_share)
        n_l0, n_gamma_t = len(self._midpoint_names(options)), len(self._gamma_t_names(options))

        def per_arm(first: int, count: int):
            return theta[..., first:first + count][..., cov["arm"]] if count > 1 else theta[..., first]

        l0 = per_arm(3, n_l0)
        if options.per_arm_thinking and options.thinking_arms is not None:
            slopes = jnp.concatenate([theta[..., 3 + n_l0:3 + n_l0 + n_gamma_t],
                                      jnp.zeros(theta.shape[:-1] + (1,), theta.dtype)], axis=-1)
            g_t = slopes[..., jnp.asarray(self._gamma_t_slots(options))[cov["arm"]]]
        else:
            g_t = per_arm(3 + n_l0, n_gamma_t)
        rest = 3 + n_l0 + n_gamma_t  # gamma_k (where k varies), then the difficulty terms
        loss = self.loss(cov, options)
        thinking = jnp.log1p(cov["T"])
        logit = -jnp.exp(log_kappa) * (loss - l0)
        if options.constant_samples is None:
            logit = logit + theta[..., rest] * jnp.log(cov["k"])
            rest += 1
        if options.difficulties:
            delta, eta, rho = (theta[..., rest + i] for i in range(3))
            excess = cov["difficulty"] - options.reference_difficulty
            logit = logit - delta * excess + g_t * jnp.exp(eta * excess) * thinking - rho * cov["T"] / 1000.0
        else:
            logit = logit + g_t * thinking
        return b + a * jax.nn.sigmoid(logit)

    def starts(self, options=None):
        options = self.options_from(options)
        # logit of a / (1 - b): shares 0.5, 0.95; logit of b: floors 0.01, 0.25; midpoints in the
        # table's loss range (fixed ones for a table prepare did not see)
        midpoints = options.loss_quantiles or (1.5, 2.5, 4.0)
        grid = np.array(list(itertools.product([0.0, 3.0], [-4.6, -1.1], np.log([1.0, 5.0, 20.0]),
                                               midpoints, [0.0, 0.5], [0.0, 0.5])), dtype=np.float64)
        n_l0, n_gamma_t = len(self._midpoint_names(options)), len(self._gamma_t_names(options))
        sampling = [] if options.constant_samples is not None else [grid[:, 5:]]
        starts = np.concatenate([grid[:, :3]] + [grid[:, 3:4]] * n_l0 + [grid[:, 4:5]] * n_gamma_t + sampling,
                                axis=1)
        if options.constant_samples is not None:   # the grid's gamma_k column dropped: its copies too
            starts = np.unique(starts, axis=0)
        if not options.difficulties:
            return starts
        # delta_d (0: no harder; 1: a logit step per level), eta_d (flat or growing gain), rho_T
        extra = np.array(list(itertools.product([0.0, 1.0], [0.0, 0.5], [0.0, 0.5])), dtype=np.float64)
        return np.concatenate([np.repeat(starts, len(extra), axis=0), np.tile(extra, (len(starts), 1))], axis=1)

    def required_covariates(self, options=None):
        options = self.options_from(options)
        extra = ("difficulty",) if options.difficulties else ()
        arm = ("arm",) if options.table_arms else ()   # the loss law's own covariates hold it otherwise
        if options.loss_law is None:
            return ("L",) + arm + ("T", "k") + extra
        law = self.loss_law(options)
        return tuple(law.form.required_covariates(law.settings)) + arm + ("T", "k") + extra

    def encode_covariates(self, covariates, options):
        import jax.numpy as jnp  # JAX on first evaluation (analysis/forms/__init__.py)
        out = super().encode_covariates({k: v for k, v in covariates.items() if k not in ("arm", "difficulty")},
                                        options)
        if "arm" in covariates:
            out["arm"] = encode_arms(self.name, covariates["arm"], self.arms(options))
        if "difficulty" in covariates and options.difficulties:
            out["difficulty"] = jnp.asarray(check_difficulties(covariates["difficulty"], options))
        if "k" in covariates and options.constant_samples is not None:
            k = np.asarray(covariates["k"], dtype=np.float64)
            if np.any(k != options.constant_samples):
                raise ValueError(f"k = {float(np.atleast_1d(k)[np.atleast_1d(k != options.constant_samples)][0]):g}: "
                                 f"not determined by these data (every fitted row has k = "
                                 f"{options.constant_samples:g}, so the law has no gamma_k); fit a table with two or "
                                 f"more sample counts to answer at other k")
        return out


def check_difficulties(values, options, flag: str = "difficulty") -> np.ndarray:
    """Difficulties as floats, refused (naming `flag` and the fitted range) outside the fitted range:
    the law's difficulty terms are linear in d, checked only between the levels it was fitted on."""
    values = np.asarray(values, dtype=np.float64)
    low, high = options.difficulty_range
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if np.any(bad):
        first = float(np.atleast_1d(values)[np.atleast_1d(bad)][0])
        raise ValueError(f"{flag} {first:g} is outside the fitted difficulties "
                         f"{list(options.difficulties)} (range [{low:g}, {high:g}]): the law does not extrapolate "
                         f"in difficulty")
    return values
