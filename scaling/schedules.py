"""Learning-rate schedules: which lines of training a run has and the rate along each.

A schedule is a frozen dataclass behind the small `Schedule` protocol, bound in gin as
`train.schedule = @WSD()` or `@Cosine()`, its own settings bound on it (`WSD.cooldown_fraction`);
the strings 'wsd' and 'cosine' name the same classes, built with the settings gin binds on them
(`schedule_named`). Each class owns everything its schedule decides: its settings and their
checks, the phases of a run (its plan), the learning rate at a token count, which budgets it
accepts, how many tokens the run trains in all (for the sweep's cost estimates), whether one run
serves several data budgets, and whether periodic evaluations happen on the way. The run-wide
numbers (peak and warmup) are train settings (`LearningRate`). A run's identity and a sweep's
run hash record the object's settings (`settings`, `bindings`), so a changed setting is a
different run.

- WSD (warmup-stable-decay with cooldown branches, Hagele et al. 2024): a single
  constant-learning-rate trunk; for each data budget D, at D*(1-cooldown_fraction) tokens the
  trunk's state is forked into a cooldown branch that decays the rate to zero by D tokens
  ('1-sqrt' or 'linear'); the branch's end is a finished point.
- Cosine: warmup then a cosine decay to zero over one budget (one data budget only).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import gin

from scaling.configuration import ConfigError

# The phase every run starts with (and its checkpoint folder's name): the part of a WSD schedule
# before any cooldown branch forks off. Here, not in scaling.checkpoints, so that planning a sweep
# (and `scaling sweep --help`) does not import JAX and Orbax.
TRUNK = "trunk"

COOLDOWN_SHAPES = ("1-sqrt", "linear")


def branch_label(tokens: float) -> str:
    """'D=1.0e6' for 1e6 tokens: the name of a data budget's branch."""
    mantissa, exponent = f"{float(tokens):.1e}".split("e")
    return f"D={mantissa}e{int(exponent)}"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One line of training: the trunk up to a fork point, a cooldown branch, or a cosine run."""

    name: str  # TRUNK, or a branch label
    schedule: str  # the result rows' `schedule` column: 'constant' (trunk), 'wsd' (branch), 'cosine'
    end_tokens: int  # train until at least this many tokens
    budget: int = 0  # the data budget this phase serves


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """The run's learning-rate settings shared by every schedule: the peak and the warmup."""

    peak: float
    warmup_tokens: int

    def warmup(self, tokens: int) -> float:
        return min(1.0, tokens / self.warmup_tokens) if self.warmup_tokens > 0 else 1.0

    def constant(self, tokens: int) -> float:
        return self.peak * self.warmup(tokens)


Plan = list[tuple[Phase | None, Phase]]  # (trunk phase to its fork, or None; the finishing phase)


class Schedule(Protocol):
    """What the trainer and the sweep ask of a schedule (a frozen dataclass: its fields are its
    settings, bound in gin as `<Class>.<field>`)."""

    name: str  # the string spelling ('wsd'), recorded in the run's identity and run names
    one_run_per_budget: bool  # False: one run trains every data budget (a branch each)
    periodic_eval: bool  # whether train.eval_every_tokens evaluates during its finishing phases

    def check(self, budgets: list[int], lr: LearningRate) -> None:
        """Raise ConfigError naming the binding when the budgets or settings do not fit."""

    def plan(self, budgets: list[int], lr: LearningRate) -> Plan:
        """The run's phases, one (trunk, finishing phase) pair per budget, in order of budget."""

    def learning_rate(self, lr: LearningRate, phase: Phase, tokens: int, start_tokens: int) -> float:
        """The rate at `tokens` in `phase`, which started (forked) at `start_tokens`."""

    def train_tokens(self, budgets: list[int]) -> int:
        """Tokens the run trains in all."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class WSD:
    """Warmup-stable-decay: a constant trunk and a cooldown branch per data budget; each branch
    decays over the last `cooldown_fraction` of its budget, '1-sqrt' or 'linear' to zero."""

    name = "wsd"
    one_run_per_budget = False
    periodic_eval = False  # the trunk evaluates periodically; each branch once, at its end

    cooldown_fraction: float = 0.2
    cooldown_shape: str = "1-sqrt"

    def check(self, budgets: list[int], lr: LearningRate) -> None:
        if self.cooldown_shape not in COOLDOWN_SHAPES:
            raise ConfigError(f"WSD.cooldown_shape: must be one of {COOLDOWN_SHAPES}, got {self.cooldown_shape!r}")
        if isinstance(self.cooldown_fraction, bool) or not isinstance(self.cooldown_fraction, (int, float)) \
                or not 0.0 < self.cooldown_fraction < 1.0:
            raise ConfigError(f"WSD.cooldown_fraction: must be a number in (0, 1), got {self.cooldown_fraction!r}")
        first_fork = self.plan(budgets, lr)[0][0].end_tokens
        if lr.warmup_tokens > first_fork:
            raise ConfigError(f"train.warmup_tokens: warmup ({lr.warmup_tokens} tokens) must end before the "
                              f"first fork at {first_fork} tokens")

    def plan(self, budgets: list[int], lr: LearningRate) -> Plan:
        return [(Phase(TRUNK, "constant", int(round(b * (1.0 - self.cooldown_fraction))), b),
                 Phase(branch_label(b), "wsd", b, b)) for b in sorted(int(b) for b in budgets)]

    def learning_rate(self, lr: LearningRate, phase: Phase, tokens: int, start_tokens: int) -> float:
        if phase.name == TRUNK:
            return lr.constant(tokens)
        return self.cooldown(lr, tokens, start_tokens, phase.end_tokens)

    def cooldown(self, lr: LearningRate, tokens: int, start: int, end: int) -> float:
        """Decay from the trunk's rate at `start` to zero at `end` tokens."""
        progress = min(1.0, max(0.0, (tokens - start) / max(end - start, 1)))
        decay = 1.0 - math.sqrt(progress) if self.cooldown_shape == "1-sqrt" else 1.0 - progress
        return lr.constant(tokens) * decay

    def train_tokens(self, budgets: list[int]) -> int:
        """The trunk to the last fork plus every cooldown."""
        fraction = self.cooldown_fraction
        return int(round(max(budgets) * (1 - fraction) + fraction * sum(budgets)))


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Cosine:
    """Warmup then a cosine decay to zero over the run's one data budget."""

    name = "cosine"
    one_run_per_budget = True
    periodic_eval = True

    def check(self, budgets: list[int], lr: LearningRate) -> None:
        if len(budgets) != 1:
            raise ConfigError("train.data_budgets: schedule='cosine' decays over one horizon: give exactly one "
                              "budget (or use 'wsd')")

    def plan(self, budgets: list[int], lr: LearningRate) -> Plan:
        budget = min(int(b) for b in budgets)
        return [(None, Phase(branch_label(budget), "cosine", budget, budget))]

    def learning_rate(self, lr: LearningRate, phase: Phase, tokens: int, start_tokens: int) -> float:
        return self.decay(lr, tokens, phase.end_tokens)

    @staticmethod
    def decay(lr: LearningRate, tokens: int, end: int) -> float:
        progress = min(1.0, max(0.0, (tokens - lr.warmup_tokens) / max(end - lr.warmup_tokens, 1)))
        return lr.peak * lr.warmup(tokens) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def train_tokens(self, budgets: list[int]) -> int:
        return int(budgets[0])


SCHEDULES = {"wsd": WSD, "cosine": Cosine}


def schedule_named(schedule: Schedule | str, binding: str = "train.schedule") -> Schedule:
    """The schedule object for `binding`: an object as it is, a string by its name (built with
    the settings gin binds on its class). Raises ConfigError naming `binding` for anything else."""
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ConfigError(f"{binding}: must be one of {tuple(SCHEDULES)} (or @WSD(), @Cosine()), "
                              f"got {schedule!r}")
        return SCHEDULES[schedule]()
    if not dataclasses.is_dataclass(schedule) or isinstance(schedule, type) or not all(
            hasattr(schedule, a) for a in ("name", "one_run_per_budget", "periodic_eval", "check", "plan",
                                           "learning_rate", "train_tokens")):
        raise ConfigError(f"{binding}: not a schedule (bind 'wsd', 'cosine', @WSD() or @Cosine()), "
                          f"got {schedule!r}")
    return schedule


def settings(schedule: Schedule) -> dict:
    """The schedule's settings as `<Class>.<field>` -> value: what a run's identity records."""
    return {f"{type(schedule).__name__}.{f.name}": getattr(schedule, f.name) for f in dataclasses.fields(schedule)}


def bindings(schedule: Schedule, binding: str = "train.schedule") -> tuple[str, ...]:
    """Gin lines that bind `schedule` to `binding`, every setting written out (a sweep's run file)."""
    return (f"{binding} = @{type(schedule).__name__}()",) + tuple(
        f"{name} = {value!r}" for name, value in settings(schedule).items())
