"""Test-time protocols: how a model trained on one format is asked a question, in distribution.

A question is a held-out word problem (`corpus.qa_problems`). Each training format gets the
protocol whose prompt is a piece of one of its own training samples, and reads the answer where
that format states it (docs/inference.md has the table):

- every format at T = 0 (`direct`): the document up to its answer slot ("... So Mia now has"),
  the answer is the first integer the model writes next. The same prompt for every arm, so T = 0
  compares arms on equal terms.
- `before_hard` at T > 0: the same prompt, then `<think>`: the model writes the bare chain, the
  thinking is closed (by the model, or forced at the budget) and the answer follows, as in
  "... So Mia now has <think> 6 + 4 = 10. </think> 10 pears.".
- `append` (TPT) at T > 0: TPT's thinking follows a whole document and ends by stating the result
  ("<think> Mia starts with 6 pears. 6 + 4 = 10. So Mia now has 10 pears. </think>"). The prompt
  is the problem as a document (its setup and operations, without the sentences that state the
  result) followed by `<think>`; the answer is the value the thinking states after its
  conclusion cue ("So Mia now has"), the last time it states one. A thinking cut by the budget
  before its conclusion states nothing and scores as wrong. The one difference from a training
  sample: there the document goes on to state the result before `<think>`; a question cannot.
- `raw` (vanilla) has no thinking in training, so nothing at T > 0 is in its distribution: it
  answers directly at every budget (the allowance goes unused: 0 thinking tokens).

The prompt's tokens are those of the training sample: segment by segment, as the trainer
encodes them (formats.annotated_ids), which matters for a SentencePiece vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from scaling.data import corpus, formats

RAW, APPEND, BEFORE_HARD = "raw", "append", "before_hard"
DIRECT = "direct"  # the protocol's name at T = 0, and for raw-trained models at every T
TRAINING_FORMATS = (RAW, APPEND, BEFORE_HARD)
# The synthetic tasks (scaling.data.pipeline) and the format of their thinking.
TASK_FORMATS = {"synthetic_vanilla": RAW, "synthetic_thinking": APPEND,
                "synthetic_thinking_before_hard": BEFORE_HARD, "synthetic_mix": APPEND}
# Cache tasks: `<name>_<variant>` or `<cache dir>:<variant>`; their thinking is appended (TPT).
CACHE_VARIANT_FORMATS = {"vanilla": RAW, "thinking": APPEND, "mix": APPEND}
_CUE = re.compile(r"^(?P<statement>.*?) ?(?P<cue>So \S+ now has)$", re.S)


class ProtocolError(ValueError):
    """A run whose training format is unknown, or a problem the protocol cannot pose."""


def training_format(task: str) -> str:
    """The thinking format a training task teaches (raw, append or before_hard)."""
    if task in TASK_FORMATS:
        return TASK_FORMATS[task]
    for separator in (":", "_"):
        variant = task.rpartition(separator)[2]
        if separator in task and variant in CACHE_VARIANT_FORMATS:
            return CACHE_VARIANT_FORMATS[variant]
    raise ProtocolError(f"train.task = {task!r}: no test-time protocol is known for it; known tasks: "
                        f"{', '.join(TASK_FORMATS)}, or a cache task ending in _vanilla, _thinking or _mix")


def run_task(run_dir: str | Path) -> str:
    """The training task recorded in a run folder (identity.json, else config.gin)."""
    run_dir = Path(run_dir)
    identity = run_dir / "identity.json"
    if identity.is_file():
        task = json.loads(identity.read_text()).get("train.task")
        if isinstance(task, str):
            return task
    config = run_dir / "config.gin"
    if config.is_file():
        match = re.search(r"^train\.task\s*=\s*['\"]([^'\"]+)['\"]", config.read_text(), re.M)
        if match:
            return match.group(1)
    raise ProtocolError(f"{run_dir}: neither identity.json nor config.gin records train.task, so the run's "
                        "training format (and its test-time protocol) is unknown")


@dataclasses.dataclass(frozen=True)
class Question:
    """A QA problem split where the protocols need it: the statement of the problem (setup and
    operations), the cue before the answer ("So Mia now has") and the answer."""
    problem: corpus.QAProblem
    statement: str
    cue: str

    @classmethod
    def of(cls, problem: corpus.QAProblem) -> "Question":
        match = _CUE.match(problem.prompt)
        if not match:
            raise ProtocolError(f"QA problem {problem.problem_id}: its prompt does not end with 'So NAME now has'")
        return cls(problem, match.group("statement"), match.group("cue"))


@dataclasses.dataclass(frozen=True)
class QAProtocol:
    """The test-time protocol of one training format."""
    training_format: str

    def __post_init__(self):
        if self.training_format not in TRAINING_FORMATS:
            raise ProtocolError(f"training format must be one of {TRAINING_FORMATS}, got {self.training_format!r}")

    def thinks(self, thinking_budget: int) -> bool:
        """Whether thinking is opened at this budget (never for raw-trained models)."""
        return thinking_budget > 0 and self.training_format != RAW

    def name(self, thinking_budget: int) -> str:
        return self.training_format if self.thinks(thinking_budget) else DIRECT

    def prompt_segments(self, question: Question, thinking_budget: int) -> list[formats.Segment]:
        """The prompt as the trainer's segments (text, flags)."""
        if not self.thinks(thinking_budget):
            return [(question.problem.prompt, 0)]
        if self.training_format == BEFORE_HARD:
            return [(question.problem.prompt, 0), (formats.THINK_OPEN, formats.THINKING_BIT)]
        return [(question.statement, 0), (formats.THINK_OPEN, formats.THINKING_BIT)]

    def prompt_ids(self, question: Question, thinking_budget: int, encode) -> list[int]:
        ids = formats.annotated_ids(self.prompt_segments(question, thinking_budget), encode)
        return [int(i) & formats.ID_MASK for i in ids]

    def read_answer(self, question: Question, thinking_budget: int, thinking_text: str,
                    answer_text: str) -> str | None:
        """The model's answer, read where the format states it; None when it states none."""
        if self.thinks(thinking_budget) and self.training_format == APPEND:
            _, cue, after = thinking_text.rpartition(question.cue)
            return corpus.extract_answer(after.lstrip()[:12]) if cue and re.match(r"\s*-?\d", after) else None
        return corpus.extract_answer(answer_text)


def for_run(run_dir: str | Path) -> QAProtocol:
    """The protocol in distribution for the run's training task."""
    return QAProtocol(training_format(run_task(run_dir)))
