"""What a budget question is: its inputs (flags), the checks of each, and its answer.

A question is an object (one per question, listed in analysis/questions/__init__.py) with
- `name`, which a law form lists in its `questions` when it answers it (analysis.forms.base);
- `flags`, its inputs: each a `Flag`, which is both a keyword of `Law.recommend` and a
  `scaling recommend` flag (analysis.cli builds the flags from these, help and check included);
- `asks(law, query)`: whether the query (the flags given) asks this question of this law; it
  may refuse a query that is half this question, naming the missing flag;
- `answer(law, query)`: a Recommendation (analysis.answers) with intervals from the bootstrap draws.
`recommend` (analysis.questions) checks every flag, asks the questions in order, refuses a flag the
chosen question does not read, and answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from analysis.answers import Recommendation
from analysis.chinchilla import NAMES as CHINCHILLA_PARAMETERS
from analysis.forms import FORMS

CHECKS = {
    "positive": (lambda v: math.isfinite(v) and v > 0, "must be a finite number above zero"),
    "nonnegative": (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
    "share": (lambda v: math.isfinite(v) and 0 <= v <= 1, "must be a share in [0, 1]"),
    "factor": (lambda v: math.isfinite(v) and v >= 1, "must be a finite factor >= 1"),
}


@dataclass(frozen=True)
class Flag:
    """One input of a question: `--<name>` of `scaling recommend` and the keyword `name` of `Law.recommend`."""

    name: str
    help: str
    type: Callable = float
    check: str | None = "positive"   # a key of CHECKS, or None (the question checks the value itself)
    default: Any = None
    parse: Callable | None = None    # text (a CLI value) to the value the question reads

    def value(self, given):
        """The value a question reads: parsed from text where the flag has a parser."""
        return self.parse(given) if self.parse is not None and isinstance(given, str) else given

    def problem(self, value) -> str | None:
        """What is wrong with a given value (naming the flag), or None."""
        if value is None or self.check is None:
            return None
        ok, rule = CHECKS[self.check]
        return None if ok(float(value)) else f"--{self.name}={float(value):g}: {rule}"


# Flags more than one question reads (one object each, so the CLI has one flag for each).
MAX_PARAMS = Flag("max_params", "largest model you can serve")
TRAIN_FLOPS = Flag("train_flops", "training budget C in FLOPs")
INFERENCE_QUERIES = Flag("inference_queries", "expected lifetime queries")
TOKENS_PER_QUERY = Flag("tokens_per_query", "tokens processed per query (prompt + answer)")
TOTAL_FLOPS = Flag("total_flops", "training plus inference compute (joint law)")
TEACHER_FLOPS_PER_TOKEN = Flag("teacher_flops_per_token",
                               "teacher FLOPs per generated thinking token (default: the law's settings)")
PARAMS = Flag("params", "hyperparameter law: model size N of the grid point; --difficulty_mix: the model's N "
                        "(default the largest fitted)")
TOKENS = Flag("tokens", "hyperparameter law: training tokens D of the grid point; --difficulty_mix: the model's D "
                        "(default the largest fitted)")
TOLERANCE = Flag("tolerance", "warn when the answer leaves the fitted ranges by more than this factor (default 3)",
                 check="factor", default=3.0)


class Query(Mapping):
    """The flags given to `recommend` (None: not given), read as attributes: query.train_flops."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def given(self) -> list[str]:
        return [name for name, value in self._values.items() if value is not None and name != "tolerance"]


class Question:
    """A budget question (see the module docstring)."""

    name: ClassVar[str]
    title: ClassVar[str]
    flags: ClassVar[tuple[Flag, ...]]

    def asks(self, law, query: Query) -> bool:
        raise NotImplementedError

    def answer(self, law, query: Query) -> Recommendation:
        raise NotImplementedError

    def reads(self) -> set[str]:
        return {flag.name for flag in self.flags} | {"tolerance"}


def point_parameters(law) -> dict[str, float]:
    """Point estimates, parameters the fit held fixed included."""
    return {name: float(v) for name, v in law.estimates().items()}


def draw_parameters(law) -> dict[str, np.ndarray]:
    """Per parameter, its bootstrap draws followed by its values at the likelihood region's points
    (the last law.n_region; answers.quantity reads them apart), fixed parameters as constants;
    empty without draws. A parameter the region lacks (a multiplier refitted in raw tokens) holds
    its estimate there."""
    draws = {name: np.asarray(v, float) for name, v in (law.bootstrap_samples or {}).items()}
    if not draws:
        return {}
    if law.n_region:
        region = law.region_parameters()
        draws = {name: np.concatenate([v, region[name]]) for name, v in draws.items()}
    fixed = law.form.fixed_parameters(law.settings)
    return {**{k: float(v) for k, v in fixed.items()}, **draws}


def form_answers(law, question: str) -> bool:
    """Whether the law's form answers `question` (a question's name, listed in the form's `questions`)."""
    return question in law.form.questions


def require_chinchilla(law, question: str) -> None:
    """The closed forms need a law whose (reference-arm) loss is E + A/N^alpha + B/D^beta."""
    if not law.form.chinchilla_closed_forms(law.settings) or any(k not in law.estimates() for k in CHINCHILLA_PARAMETERS):
        closed = sorted(name for name, f in FORMS.items() if f.chinchilla_closed_forms(f.options_from()))
        raise ValueError(f"{question} needs a Chinchilla-form law ({' or '.join(closed)}, with E, A, B, "
                         f"alpha, beta); this law's form is {law.form.name!r}")
