"""InferConfig: the settings of an inference sweep, bound in gin as `infer.<field>`
(gin/runs/infer.gin lists and explains every one), and the checks made on them before any
checkpoint is read. The sweep planner runs the same `check()` on a grid's inference settings, so a
setting `scaling infer` would refuse is refused when the grid is planned (scaling/sweep/store.py)."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import gin

from scaling.configuration import ConfigError


@dataclasses.dataclass(frozen=True)
class CheckedInference:
    """What an InferConfig decodes, resolved: the (difficulty, T) settings in order, the k of the
    sampled aggregators (n = max(k) samples drawn), and the budget policy with its mix, if any."""

    settings: list[tuple[int, int]]
    samples: tuple[int, ...]
    policy: dict[int, int] | None
    mix: dict[int, float] | None

    @property
    def difficulties(self) -> list[int]:
        return sorted({d for d, _ in self.settings})

    @property
    def largest_budget(self) -> int:
        return max(t for _, t in self.settings)

    @property
    def n_samples(self) -> int:
        return max(self.samples, default=0)


@gin.configurable("infer")
@dataclasses.dataclass(frozen=True)
class InferConfig:
    """Evaluate one finished checkpoint of `model_dir` over thinking budgets, samples and
    difficulties (gin/runs/infer.gin; docs/inference.md).

    With `thinking_policy` ({difficulty: T}, e.g. {1: 0, 2: 16, 3: 64}), only the policy's settings
    are decoded, greedily (difficulties and thinking_budgets are not used), and the policy's
    accuracy over `difficulty_mix` ({difficulty: weight}, default equal weights) is reported."""

    model_dir: str
    thinking_budgets: tuple | list = (0, 16, 64)
    samples: tuple | list = (1, 4, 16)
    temperature: float = 0.7
    top_p: float = 1.0
    max_extensions: int = 0
    difficulties: tuple | list = (1, 2, 3)
    problems_per_difficulty: int = 32
    max_answer_tokens: int = 12
    batch_size: int = 64
    seed: int = 0
    thinking_policy: dict | None = None
    difficulty_mix: dict | None = None

    def run_dir(self) -> Path:
        if not isinstance(self.model_dir, (str, os.PathLike)) or not str(self.model_dir):
            raise ConfigError("infer.model_dir: missing required value; give the run folder with --run_dir=<path> "
                              "(or --gin.MODEL_DIR=<path>)")
        return Path(self.model_dir).resolve()

    def check(self) -> CheckedInference:
        """Every setting checked, naming its binding; the model_dir aside (run_dir() checks it)."""
        ks = _int_list("samples", self.samples, 1, empty=True)  # []: greedy rows only, nothing sampled
        policy = mix = None
        if self.thinking_policy is None:
            budgets = _int_list("thinking_budgets", self.thinking_budgets, 0)
            settings = [(d, t) for d in _int_list("difficulties", self.difficulties, 1) for t in budgets]
        else:
            policy = thinking_policy_of(self.thinking_policy)
            mix = difficulty_mix_of(self.difficulty_mix, policy)
            settings = sorted(policy.items())
        for name, minimum in (("problems_per_difficulty", 1), ("max_extensions", 0), ("max_answer_tokens", 1),
                              ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"infer.{name} must be an integer >= {minimum}, got {value!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature > 0:
            raise ConfigError(f"infer.temperature must be > 0 (greedy rows are always added), got {self.temperature!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ConfigError(f"infer.top_p must be in (0, 1], got {self.top_p!r}")
        return CheckedInference(settings, ks, policy, mix)


def _int_list(name: str, value, minimum: int, empty: bool = False) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if (not values and not empty) or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values):
        raise ConfigError(f"infer.{name} must be a {'' if empty else 'non-empty '}list of integers >= {minimum}, "
                          f"got {value!r}")
    return tuple(sorted(set(values)))


def thinking_policy_of(value) -> dict[int, int]:
    """infer.thinking_policy as {difficulty: T}, checked."""
    if not isinstance(value, dict) or not value or any(
            not isinstance(k, int) or isinstance(k, bool) or k < 1 or not isinstance(v, int) or isinstance(v, bool)
            or v < 0 for k, v in value.items()):
        raise ConfigError("infer.thinking_policy must map difficulties (integers >= 1) to thinking budgets "
                          f"(integers >= 0), e.g. {{1: 0, 2: 16, 3: 64}}; got {value!r}")
    return dict(sorted(value.items()))


def difficulty_mix_of(value, policy: dict[int, int]) -> dict[int, float]:
    """infer.difficulty_mix as weights summing to 1 over the policy's difficulties (None: equal)."""
    if value is None:
        return {d: 1.0 / len(policy) for d in policy}
    if (not isinstance(value, dict) or set(value) != set(policy)
            or any(not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0 for w in value.values())
            or not math.isclose(sum(value.values()), 1.0, abs_tol=1e-6)):
        raise ConfigError(f"infer.difficulty_mix must give a weight >= 0 to each difficulty of the policy "
                          f"{sorted(policy)}, summing to 1; got {value!r}")
    return {d: float(value[d]) for d in policy}
