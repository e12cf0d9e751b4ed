"""TrainConfig: the settings of a pretraining run, bound in gin as `train.<field>`
(gin/runs/pretrain.gin lists and explains every one), and the checks made on them before any
compute. The sweep reads the same class: its fields' defaults, and `check()` when it plans a
grid, so a run the trainer would refuse is refused there."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import gin
import numpy as np

from scaling import schedules, wandb_log
from scaling.configuration import ConfigError
from scaling.data import cache as cache_lib, corpus
from scaling.data.batches import SYNTHETIC_TASKS
from scaling.model_config import ModelConfig
from scaling.schedules import WSD, LearningRate, Plan, Schedule, branch_label

# Settings that do not change what is trained: a rerun may give other values.
NOT_IDENTITY = ("model_dir", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "mesh_data",
                "mesh_fsdp", "wandb", "wandb_project")
_KINDS = {"int": ("an integer", lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)),
          "float": ("a number", lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool)),
          "str": ("a string", lambda v: isinstance(v, str))}


def require(condition: bool, binding: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"train.{binding}: {message}")


@dataclasses.dataclass(frozen=True)
class CheckedRun:
    """What a TrainConfig trains, resolved: budgets in order, the schedule object, its settings
    (warmup in tokens) and its plan."""

    budgets: list[int]
    schedule: Schedule
    learning_rate: LearningRate
    plan: Plan


@gin.configurable("train")
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Train `model` on `task` to each of `data_budgets` tokens (gin/runs/pretrain.gin)."""

    model_dir: str
    model: ModelConfig
    task: str = "synthetic_vanilla"
    arm: str = "vanilla"
    seed: int = 0
    batch_size: int = 16
    data_budgets: tuple | list = (1_000_000,)
    schedule: Schedule | str = WSD()  # a schedule object (@WSD(), @Cosine()) or its name ('wsd', 'cosine')
    learning_rate: float = 3e-3
    warmup_tokens: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_corpus: str = "synthetic"
    eval_every_tokens: int = 0
    eval_batches: int = 8
    log_every_steps: int = 10
    checkpoint_every_steps: int = 200
    keep_checkpoints: int = 3
    mesh_data: int = -1
    mesh_fsdp: int = 1
    sweep: str = ""
    wandb: str = "off"                # 'offline' | 'online': log to Weights & Biases too (scaling/wandb_log.py)
    wandb_project: str = "scaling"

    @staticmethod
    def defaults() -> dict:
        """Field name -> default, for the fields that have one."""
        return {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}

    def settings(self) -> dict:
        """The fields by name (shallow: the model stays a ModelConfig; the schedule is its object,
        a name resolved to the object it names, so either spelling is the same run)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not isinstance(self.schedule, str) or self.schedule in schedules.SCHEDULES:
            out["schedule"] = schedules.schedule_named(self.schedule)
        return out

    def run_dir(self) -> Path:
        if not isinstance(self.model_dir, (str, os.PathLike)) or not str(self.model_dir):
            raise ConfigError("train.model_dir: missing required value; give the run folder with "
                              "--gin.MODEL_DIR=<path>")
        return Path(self.model_dir).resolve()

    def budgets(self) -> list[int]:
        given = self.data_budgets
        return sorted(int(b) for b in (given if isinstance(given, (list, tuple)) else [given]))

    def check_types(self) -> None:
        """Every numeric or string setting has its annotated type: a string such as 'abc' is named
        here instead of failing later in a comparison."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if str(field.type) not in _KINDS:
                continue
            expected, ok = _KINDS[str(field.type)]
            if not ok(value):
                raise ConfigError(f"train.{field.name}: must be {expected} ({field.type}), "
                                  f"got {value!r} ({type(value).__name__})")
        given = self.data_budgets
        for b in given if isinstance(given, (list, tuple)) else [given]:
            if isinstance(b, bool) or not isinstance(b, (int, float, np.number)):
                raise ConfigError(f"train.data_budgets: must be a list of token counts, got {given!r}")

    def check_eval_corpus(self) -> None:
        """A cache evaluated on must hold documents in the held-out hash bucket; otherwise tf.data's
        generator would fail with a long traceback. A few dozen documents may hold none."""
        if Path(self.eval_corpus).is_dir():
            require(any(corpus.is_held_out(r["doc_hash"]) for r in cache_lib.read_records(self.eval_corpus)),
                    "eval_corpus", f"{self.eval_corpus!r}: none of the cache's documents is held out for evaluation "
                    f"(the hash split holds out about 1 in {corpus.HELD_OUT_BUCKETS}); augment more documents, or "
                    "evaluate on train.eval_corpus = 'synthetic'")

    def check(self) -> CheckedRun:
        """Everything checked before any compute (the model_dir aside, which train() checks)."""
        self.check_types()
        budgets = self.budgets()
        require(isinstance(self.model, ModelConfig), "model",
               f"must be a ModelConfig (bind train.model = @ModelConfig()), got {self.model!r}")
        require(bool(budgets) and budgets[0] > 0, "data_budgets", f"need positive token budgets, got {self.data_budgets!r}")
        require(len({branch_label(b) for b in budgets}) == len(budgets), "data_budgets",
               f"budgets {budgets} do not have distinct labels at two significant digits")
        schedule = schedules.schedule_named(self.schedule)
        require(self.learning_rate > 0, "learning_rate", f"must be positive, got {self.learning_rate}")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2",
               f"must be in [0, 1), got {self.beta1}, {self.beta2}")
        wandb_log.check(self.wandb)
        require(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        require(self.warmup_tokens >= 0, "warmup_tokens", f"must be >= 0, got {self.warmup_tokens}")
        require(self.eval_batches > 0, "eval_batches", f"must be positive, got {self.eval_batches}")
        self.check_eval_corpus()
        require(self.log_every_steps > 0 and self.checkpoint_every_steps > 0 and self.keep_checkpoints > 0,
               "log_every_steps/checkpoint_every_steps/keep_checkpoints", "must be positive")
        if self.task not in SYNTHETIC_TASKS:  # the built-in tasks are known without seqio/TensorFlow
            from scaling.data import pipeline  # here: seqio/TensorFlow, needed only to know the other task names
            try:
                pipeline.resolve_task(self.task)
            except ValueError as e:  # an unknown task fails here, at a sweep's planning, not after training
                raise ConfigError(f"train.task: {e}") from None
        warmup = int(self.warmup_tokens * budgets[0]) if self.warmup_tokens < 1 else int(self.warmup_tokens)
        learning_rate = LearningRate(self.learning_rate, warmup)
        try:
            schedule.check(budgets, learning_rate)
        except ConfigError as e:
            if str(e).startswith("train."):
                raise
            raise ConfigError(f"train.schedule: {e}") from None
        return CheckedRun(budgets, schedule, learning_rate, schedule.plan(budgets, learning_rate))
