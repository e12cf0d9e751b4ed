"""Budget questions answered from a fitted law, one module each (analysis.questions.base says what
a question is), with intervals from the law's bootstrap draws: every answer is computed once with
the point estimates and once per draw; the interval is the 2.5-97.5 percentile range of the draws'.

QUESTIONS is the order in which a query is matched: the first question whose `asks` holds for the
law and the flags given answers. Adding a question is adding its module and one line below
(tests/test_recommend.py fails, naming the module, for a question module the list misses).
"""

from __future__ import annotations

from analysis.answers import Recommendation
from analysis.determination import with_status
from analysis.questions.adaptive_thinking import AdaptiveThinking
from analysis.questions.augmentation import AugmentationPays
from analysis.questions.base import TOLERANCE, Flag, Query, Question
from analysis.questions.compute_optimal import ComputeOptimal
from analysis.questions.hyperparameters import Hyperparameters
from analysis.questions.inference_aware import InferenceAware
from analysis.questions.joint_allocation import JointAllocation

QUESTIONS: tuple[Question, ...] = (
    Hyperparameters(),
    AdaptiveThinking(),
    JointAllocation(),
    InferenceAware(),
    AugmentationPays(),
    ComputeOptimal(),
)


def _flags() -> tuple[Flag, ...]:
    """Every question's inputs, once each (a flag two questions read is one object), and the tolerance."""
    found: dict[str, Flag] = {}
    for question in QUESTIONS:
        for flag in question.flags:
            if found.setdefault(flag.name, flag) is not flag:
                raise TypeError(f"questions declare two different flags named {flag.name!r}: share one Flag object")
    return (*found.values(), TOLERANCE)


FLAGS = _flags()


def query_of(given) -> Query:
    """The typed query: every flag's value (parsed; None when not given), each checked, naming the flag."""
    names = {flag.name for flag in FLAGS}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"no question reads {unknown}; the inputs are {sorted(names)}")
    values = {}
    for flag in FLAGS:
        value = given.get(flag.name)
        value = flag.default if value is None else flag.value(value)
        problem = flag.problem(value)
        if problem:
            raise ValueError(problem)
        values[flag.name] = value
    return Query(values)


def question_for(law, query: Query) -> Question:
    """The question the law and the query ask; a flag it does not read is refused, naming it."""
    for question in QUESTIONS:
        if question.asks(law, query):
            stray = [name for name in query.given() if name not in question.reads()]
            if stray:
                reads = ", ".join(f"--{flag.name}" for flag in question.flags)
                raise ValueError(f"--{stray[0]} does not apply to the question this law ({law.form.name}) and "
                                 f"these flags ask: {question.title.lower()}, which reads {reads}")
            return question
    raise ValueError("no question matches these flags")  # ComputeOptimal asks for anything it gets


def recommend(law, **given) -> Recommendation:
    """Answer the budget question the keyword arguments (the flags of `scaling recommend`) ask, with
    whether the data determine the answer (analysis.determination); `Law.recommend` calls this."""
    query = query_of(given)
    return with_status(law, question_for(law, query).answer(law, query), **query)


__all__ = ["FLAGS", "QUESTIONS", "Flag", "Query", "Question", "query_of", "question_for", "recommend"]
