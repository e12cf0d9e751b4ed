"""Thinking budgets per query difficulty (issue 18): a law's difficulty levels and mix, the
--difficulty_mix flag, and the exact policy solver the adaptive-thinking and joint-allocation
questions share. `adaptive_thinking_policy` is the pure function for one model; the questions add
the intervals."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from analysis.questions.base import Flag

MIX_TOLERANCE = 1e-6


def law_difficulties(law) -> list[float]:
    """The difficulty levels a joint law was fitted on (empty: a pooled law)."""
    form = law.form
    return form.difficulties(law.settings) if hasattr(form, "difficulties") else []


def law_difficulty_mix(law) -> dict[float, float]:
    """The fitted table's own mix: each difficulty's share of its rows."""
    levels, shares = law_difficulties(law), law.settings.difficulty_shares
    if not levels:
        return {}
    shares = shares or [1.0 / len(levels)] * len(levels)
    return {float(d): float(w) for d, w in zip(levels, shares)}


def parse_difficulty_mix(text: str, flag: str = "--difficulty_mix") -> dict[float, float]:
    """'1:0.5,2:0.3,3:0.2' -> {1.0: 0.5, 2.0: 0.3, 3.0: 0.2}; a malformed item, a repeated
    difficulty, a negative or non-finite share or shares not summing to 1 are refused, naming the flag."""
    mix = {}
    for item in str(text).split(","):
        parts = item.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            difficulty, share = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"{flag}: {item.strip()!r} must look like DIFFICULTY:SHARE (e.g. "
                             f"{flag}=1:0.5,2:0.3,3:0.2)") from None
        if difficulty in mix:
            raise ValueError(f"{flag}: difficulty {difficulty:g} is given twice")
        mix[difficulty] = share
    return check_mix_shares(mix, flag)


def check_mix_shares(mix: Mapping[float, float], flag: str = "--difficulty_mix") -> dict[float, float]:
    mix = {float(d): float(w) for d, w in mix.items()}
    if not mix:
        raise ValueError(f"{flag}: no difficulties given")
    for d, w in mix.items():
        if not (np.isfinite(d) and np.isfinite(w) and w >= 0):
            raise ValueError(f"{flag}: difficulty {d:g} has share {w:g}; shares must be finite and >= 0")
    total = sum(mix.values())
    if abs(total - 1.0) > MIX_TOLERANCE:
        raise ValueError(f"{flag}: the shares sum to {total:g}, not 1 (they are the fractions of queries "
                         f"at each difficulty)")
    return mix


def check_difficulty_mix(law, mix: Mapping[float, float], flag: str = "--difficulty_mix") -> dict[float, float]:
    """The mix, checked against the law: it must have difficulties, each inside the fitted range."""
    if not law_difficulties(law):
        raise ValueError(f"{flag} needs a joint_inference law fitted on a table with a difficulty column "
                         f"(two or more difficulties, not --pool-difficulties); this law "
                         f"({law.form.name!r}) has no difficulty term")
    mix = check_mix_shares(mix, flag)
    law.form.check_difficulties(list(mix), law.settings, flag=f"{flag}: difficulty")
    return mix


@dataclasses.dataclass(frozen=True)
class ThinkingPolicy:
    """A thinking budget per difficulty and the best uniform budget at the same mean, with the
    expected accuracies over the mix (one law, one arm and model; no intervals)."""

    budgets: dict[float, float]                 # difficulty -> thinking budget T (0: answer directly)
    accuracy: float                             # expected accuracy of the adaptive policy over the mix
    accuracies: dict[float, float]              # difficulty -> predicted accuracy at its budget
    mean_thinking_tokens: float                 # sum over the mix of share x budget (<= the mean given)
    uniform_budget: float                       # the best single T <= the mean given
    uniform_accuracy: float
    uniform_accuracies: dict[float, float]

    @property
    def gain(self) -> float:
        """Expected accuracy of the adaptive policy minus the best uniform budget's."""
        return self.accuracy - self.uniform_accuracy


def policy_frontier(accuracy: np.ndarray, budgets: np.ndarray, weights: np.ndarray, max_mean: float):
    """Every undominated per-difficulty choice of budgets: (mean cost, expected accuracy, choice),
    sorted by cost with accuracy strictly rising, over choices whose mean cost is <= max_mean.

    `accuracy` is [difficulty, budget]; the choice is an index into `budgets` per difficulty. Exact
    on the grid: difficulties are added one at a time and dominated partial choices (no cheaper,
    no more accurate) are dropped, so a budget curve that is not concave (or falls) is handled."""
    limit = max_mean * (1 + 1e-12) + 1e-12
    cost, value, choice = np.zeros(1), np.zeros(1), np.zeros((1, 0), dtype=np.int64)
    for d in range(len(weights)):
        c = (cost[:, None] + weights[d] * budgets[None, :]).ravel()
        v = (value[:, None] + weights[d] * accuracy[d][None, :]).ravel()
        ch = np.concatenate([np.repeat(choice, len(budgets), axis=0),
                             np.tile(np.arange(len(budgets)), len(cost))[:, None]], axis=1)
        ok = (c <= limit) & np.isfinite(v)
        c, v, ch = c[ok], v[ok], ch[ok]
        order = np.lexsort((-v, c))
        c, v, ch = c[order], v[order], ch[order]
        best_before = np.concatenate([[-np.inf], np.maximum.accumulate(v)[:-1]])
        keep = v > best_before
        cost, value, choice = c[keep], v[keep], ch[keep]
    return cost, value, choice


def best_within(cost, value, choice, mean):
    i = int(np.searchsorted(cost, mean * (1 + 1e-12) + 1e-12, side="right")) - 1
    return choice[i], value[i], cost[i]


def _best_uniform(accuracy, budgets, weights, mean):
    expected = weights @ accuracy
    expected = np.where(budgets <= mean * (1 + 1e-12) + 1e-12, expected, -np.inf)
    g = int(np.argmax(expected))
    return g, expected[g]


def thinking_budgets(law, mean_thinking_tokens: float | None = None, count: int = 40) -> np.ndarray:
    """The candidate budgets: 0, a geometric grid up to the largest fitted T, and the mean itself
    (so the uniform policy can spend exactly the mean) when it is inside the fitted range."""
    t_max = float((law.ranges or {}).get("T", [0, 0])[1])
    grid = [0.0] + (list(np.round(np.geomspace(1, t_max, count))) if t_max >= 1 else [])
    if mean_thinking_tokens is not None and 0 < mean_thinking_tokens <= t_max:
        grid.append(float(mean_thinking_tokens))
    return np.unique(np.asarray(grid, dtype=np.float64))


def model_covariates(law, arm, N, D, L) -> dict:
    needed = law.form.required_covariates(law.settings)
    model = {}
    for name, value in (("N", N), ("D", D), ("L", L)):
        if name in needed:
            if value is None:
                raise ValueError(f"this law predicts from {name}: give it (--params/--tokens for N and D)")
            model[name] = float(value)
    if "arm" in needed:
        arms = law.form.arms(law.settings)
        if arm is None:
            raise ValueError(f"this law has arms {arms}: give the arm (--arm)")
        model["arm"] = arm
    return model


def accuracy_by_difficulty(predict: Callable[..., np.ndarray], mix: Mapping[float, float], budgets: np.ndarray,
                    model: Mapping, k: float) -> np.ndarray:
    """[..., difficulty, budget]: the prediction at every budget for every difficulty of the mix
    (a leading axis when `predict` gives one row per bootstrap draw)."""
    g = len(budgets)
    rows = [np.asarray(predict(**{name: (np.full(g, v, dtype=object) if name == "arm" else np.full(g, v))
                                  for name, v in model.items()},
                               T=budgets, k=np.full(g, float(k)), difficulty=np.full(g, d)), float)
            for d in mix]
    return np.stack(rows, axis=-2)


def solve_thinking_policy(accuracy: np.ndarray, budgets: np.ndarray, mix: Mapping[float, float],
                          mean_thinking_tokens: float) -> ThinkingPolicy:
    """The adaptive and the best uniform policy from a table of accuracies [difficulty, budget]."""
    levels = list(mix)
    weights = np.asarray([mix[d] for d in levels], float)
    cost, value, choice = policy_frontier(accuracy, budgets, weights, mean_thinking_tokens)
    picked, expected, spent = best_within(cost, value, choice, mean_thinking_tokens)
    g, uniform = _best_uniform(accuracy, budgets, weights, mean_thinking_tokens)
    return ThinkingPolicy(
        budgets={d: float(budgets[i]) for d, i in zip(levels, picked)}, accuracy=float(expected),
        accuracies={d: float(accuracy[j, i]) for j, (d, i) in enumerate(zip(levels, picked))},
        mean_thinking_tokens=float(spent), uniform_budget=float(budgets[g]), uniform_accuracy=float(uniform),
        uniform_accuracies={d: float(accuracy[j, g]) for j, d in enumerate(levels)})


def adaptive_thinking_policy(law, difficulty_mix: Mapping[float, float], mean_thinking_tokens: float, *,
                             arm: str | None = None, N: float | None = None, D: float | None = None,
                             L: float | None = None, k: float = 1, budgets=None,
                             predict: Callable[..., np.ndarray] | None = None) -> ThinkingPolicy:
    """The thinking budget per difficulty (0 allowed: answer directly) that maximises the expected
    accuracy over `difficulty_mix` ({difficulty: share}, shares summing to 1) at a mean thinking
    budget per query of at most `mean_thinking_tokens`, and the best uniform budget at the same
    mean, for one model (N, D[, arm]; or a measured loss L) of a joint law fitted with a
    difficulty column. `predict` (default `law.predict`) may be any function of the law's
    covariates, e.g. one bootstrap draw's. Budgets are a grid (`thinking_budgets`) up to the
    largest fitted T; the policy is exact on it."""
    if not (np.isfinite(mean_thinking_tokens) and mean_thinking_tokens >= 0):
        raise ValueError(f"--mean_thinking_tokens={mean_thinking_tokens:g}: must be a finite number >= 0")
    mix = check_difficulty_mix(law, difficulty_mix)
    budgets = thinking_budgets(law, mean_thinking_tokens) if budgets is None else np.unique(np.asarray(budgets, float))
    if budgets.size == 0 or budgets[0] != 0:
        budgets = np.unique(np.concatenate([[0.0], budgets]))
    accuracy = accuracy_by_difficulty(predict or law.predict, mix, budgets, model_covariates(law, arm, N, D, L), k)
    return solve_thinking_policy(accuracy, budgets, mix, mean_thinking_tokens)


def mixed_prediction(law, mix: Mapping[float, float] | None = None, draws: bool = False, **covariates) -> np.ndarray:
    """The law's prediction averaged over a difficulty mix (default: the fitted table's) for a law
    with a difficulty term; the plain prediction otherwise. `draws`: one row per bootstrap draw."""
    call = law.predict_draws if draws else law.predict
    if not law_difficulties(law) or "difficulty" in covariates:
        return np.asarray(call(**covariates), float)
    mix = mix or law_difficulty_mix(law)
    shape = np.broadcast(*[np.asarray(v, dtype=object if k == "arm" else float) for k, v in covariates.items()]).shape
    return sum(w * np.asarray(call(**covariates, difficulty=np.full(shape, d)), float) for d, w in mix.items())


DIFFICULTY_MIX = Flag("difficulty_mix", "joint law fitted with a difficulty column: the share of queries at each "
                                        "difficulty, e.g. 1:0.5,2:0.3,3:0.2 (shares sum to 1); a thinking budget "
                                        "per difficulty", type=str, check=None, parse=parse_difficulty_mix)
MEAN_THINKING_TOKENS = Flag("mean_thinking_tokens", "with --difficulty_mix: the mean thinking budget per query over "
                                                    "the mix (>= 0; 0: answer every query directly)",
                            check="nonnegative")
