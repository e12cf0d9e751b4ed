"""`scaling train`: train() is the one gin-configurable entry point of a pretraining run.

A run trains one model on one task and yields one finished point per data budget:
- schedule='wsd' (warmup-stable-decay with cooldown branches, Hagele et al. 2024): a single
  constant-learning-rate trunk; for each data budget D, at D*(1-cooldown_fraction) tokens the
  trunk's state is checkpointed and a cooldown branch forked from it decays the learning rate to
  zero by D tokens ('1-sqrt' or 'linear'); the branch is evaluated (is_final=True) and kept as a
  finished checkpoint, then the trunk continues from the fork to the next budget's fork point.
- schedule='cosine': warmup then a cosine decay to zero over one budget (one data budget only).

Token counts are trained non-padding tokens (loss_weights summed), never steps. The run folder
(docs/schema.md) gets config.gin, model.json, status.json, log.jsonl, training_rows.jsonl,
tensorboard/ and checkpoints/; rerunning a folder resumes it exactly (docs/training.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaling import accounting, configuration, partitioning, timings
from scaling.checkpoints import TRUNK, RunCheckpoints, finished_branches, write_model_config
from scaling.configuration import ConfigError, PlacedConfigError
from scaling.model import ModelConfig, Transformer, init_params

log = logging.getLogger(__name__)

SCHEDULES = ("wsd", "cosine")
COOLDOWN_SHAPES = ("1-sqrt", "linear")
# Arrays the training step reads; the masks used only for counting stay on the host.
STEP_KEYS = ("inputs", "targets", "positions", "segment_ids", "loss_weights")
EVAL_KEYS = STEP_KEYS + ("hard_mask", "target_bytes")

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets; matched against device_kind.
DEVICE_PEAK_FLOPS = (
    ("TPU v6 lite", 918e12), ("TPU v6e", 918e12),
    ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
    ("TPU v5p", 459e12), ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("H200", 989e12), ("H100", 989e12),
    ("A100", 312e12),
)


class TrainingFailed(RuntimeError):
    """The run stopped without finishing; the reason goes to status.json."""


class Preempted(TrainingFailed):
    """SIGTERM arrived; a checkpoint was saved and a rerun resumes."""


# ----------------------------------------------------------------------------------------------
# Device peak, for MFU


def measure_matmul_peak(dtype=jnp.float32, size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of the best of a few large jitted matmuls on the default device.

    The achievable dense-matmul rate is the honest MFU denominator on a CPU, whose nominal
    peak depends on vector units and clocks nobody reports.
    """
    on_cpu = jax.default_backend() == "cpu"
    n = size or (1024 if on_cpu else 8192)
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype)
    chain = 4  # several products per call so dispatch overhead is amortised
    fn = jax.jit(lambda x, y: [x @ (y + i) for i in range(chain)])
    jax.block_until_ready(fn(a, b))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(a, b))
        best = min(best, time.perf_counter() - start)
    return chain * 2 * n ** 3 / best


def device_peak_flops(dtype=jnp.float32) -> tuple[float, str]:
    """(peak FLOP/s per device, where it came from): the data-sheet table, else measured."""
    kind = jax.devices()[0].device_kind
    for name, peak in DEVICE_PEAK_FLOPS:
        if name.lower() in kind.lower():
            return peak, f"{kind} bf16 data sheet"
    return measure_matmul_peak(dtype), f"{kind} measured matmul peak"


# ----------------------------------------------------------------------------------------------
# Schedules


def branch_label(tokens: float) -> str:
    """'D=1.0e6' for 1e6 tokens: the name of a data budget's branch."""
    mantissa, exponent = f"{float(tokens):.1e}".split("e")
    return f"D={mantissa}e{int(exponent)}"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One line of training: the trunk up to a fork point, a cooldown branch, or a cosine run."""

    name: str  # TRUNK, or a branch label
    schedule: str  # 'constant' (trunk), 'wsd' (cooldown branch), 'cosine'
    end_tokens: int  # train until at least this many tokens
    budget: int = 0  # the data budget this phase serves


@dataclasses.dataclass(frozen=True)
class LearningRate:
    peak: float
    warmup_tokens: int
    cooldown_shape: str = "1-sqrt"

    def warmup(self, tokens: int) -> float:
        return min(1.0, tokens / self.warmup_tokens) if self.warmup_tokens > 0 else 1.0

    def constant(self, tokens: int) -> float:
        return self.peak * self.warmup(tokens)

    def cooldown(self, tokens: int, start: int, end: int) -> float:
        """Decay from the trunk's rate at `start` to zero at `end` tokens."""
        progress = min(1.0, max(0.0, (tokens - start) / max(end - start, 1)))
        decay = 1.0 - math.sqrt(progress) if self.cooldown_shape == "1-sqrt" else 1.0 - progress
        return self.constant(tokens) * decay

    def cosine(self, tokens: int, end: int) -> float:
        progress = min(1.0, max(0.0, (tokens - self.warmup_tokens) / max(end - self.warmup_tokens, 1)))
        return self.peak * self.warmup(tokens) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------
# The jitted steps


def make_optimizer(beta1: float, beta2: float, weight_decay: float, grad_clip: float,
                   eps: float = 1e-8) -> optax.GradientTransformation:
    """AdamW without the learning rate, which the step applies (it follows tokens, not steps).

    Weight decay is decoupled (scaled by the learning rate, as optax.adamw does) and skips norm
    scales. grad_clip <= 0 turns clipping off.
    """
    def decay_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: not any(getattr(k, "key", None) == "scale" for k in path), params)

    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    parts += [optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps),
              optax.add_decayed_weights(weight_decay, mask=decay_mask)]
    return optax.chain(*parts)


def token_loss_sums(config: ModelConfig, params, batch):
    """Per-token cross entropy (nats) and the batch's loss weights."""
    logits, _ = Transformer(config).apply({"params": params}, batch["inputs"], batch["positions"], None,
                                          batch["segment_ids"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]), batch["loss_weights"]


@dataclasses.dataclass
class Compiled:
    """The run's jitted functions, their shardings and the abstract state (for restoring)."""

    init: callable
    step: callable
    evaluate: callable
    abstract_params: object
    abstract_opt_state: object
    mesh: object


def compile_functions(config: ModelConfig, tx: optax.GradientTransformation, mesh, seed: int) -> Compiled:
    def init_boxed():
        params = init_params(config, jax.random.PRNGKey(seed))
        return params, tx.init(params)

    boxed = jax.eval_shape(init_boxed)
    param_shardings, opt_shardings = partitioning.shardings_for(boxed, mesh)
    abstract_params, abstract_opt = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), nn.unbox(boxed),
        (param_shardings, opt_shardings))
    batch_sharding = partitioning.batch_sharding(mesh)
    scalar = partitioning.replicated(mesh)

    def step(params, opt_state, batch, learning_rate):
        def mean_loss(p):
            losses, weights = token_loss_sums(config, p, batch)
            return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)

        loss, grads = jax.value_and_grad(mean_loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - learning_rate * u, params, updates)
        return params, opt_state, loss

    def evaluate(params, batch):
        """Sums over the batch: loss, weight, hard loss, hard weight, easy loss, easy weight, bytes."""
        losses, weights = token_loss_sums(config, params, batch)
        hard = weights * batch["hard_mask"]
        easy = weights - hard
        return jnp.stack([(losses * weights).sum(), weights.sum(), (losses * hard).sum(), hard.sum(),
                          (losses * easy).sum(), easy.sum(), (batch["target_bytes"] * weights).sum()])

    return Compiled(
        init=jax.jit(lambda: nn.unbox(init_boxed()), out_shardings=(param_shardings, opt_shardings)),
        step=jax.jit(step, in_shardings=(param_shardings, opt_shardings, batch_sharding, scalar),
                     out_shardings=(param_shardings, opt_shardings, scalar), donate_argnums=(0, 1)),
        evaluate=jax.jit(evaluate, in_shardings=(param_shardings, batch_sharding), out_shardings=scalar),
        abstract_params=abstract_params, abstract_opt_state=abstract_opt, mesh=mesh)


# ----------------------------------------------------------------------------------------------
# Data: counted on the host, prefetched onto the devices in a background thread


@dataclasses.dataclass
class Counters:
    """Where a line of training stands; saved in every checkpoint's meta."""

    step: int = 0
    batch_index: int = 0  # batches consumed from the deterministic stream (the resume position)
    tokens: int = 0
    tokens_raw: int = 0
    tokens_thinking: int = 0


def batch_counts(local_batch: dict) -> np.ndarray:
    """[tokens, tokens_raw, tokens_thinking] of this host's slice of a batch."""
    return np.array([local_batch["loss_weights"].sum(), local_batch["raw_mask"].sum(),
                     local_batch["thinking_mask"].sum()], np.float64)


class Prefetcher:
    """Reads the batch stream and places batches on the mesh ahead of the step that needs them,
    so data preparation overlaps with the (asynchronously dispatched) computation."""

    def __init__(self, batches, mesh, depth: int = 2):
        self._batches = batches
        self._mesh = mesh
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self):
        try:
            for local in self._batches:
                item = (batch_counts(local),
                        partitioning.global_batch({k: local[k] for k in STEP_KEYS}, self._mesh))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except Exception as e:  # surfaced to the training loop on its next read
            self._queue.put(e)

    def next(self):
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


# ----------------------------------------------------------------------------------------------
# The run folder


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """status.json, log.jsonl, training_rows.jsonl and TensorBoard events; written by process 0."""

    def __init__(self, run_dir: Path, total_tokens: int):
        self.dir = run_dir
        self.total_tokens = total_tokens
        self.writes = jax.process_index() == 0
        self._tensorboard = None

    def status(self, state: str, reason: str = "", step: int = 0, tokens: int = 0) -> None:
        if not self.writes:
            return
        path = self.dir / "status.json"
        tmp = path.with_name("status.json.tmp")
        tmp.write_text(json.dumps({"state": state, "reason": reason, "step": int(step), "tokens": int(tokens),
                                   "total_tokens": int(self.total_tokens), "updated": _now()}))
        os.replace(tmp, path)

    def progress(self, step: int, tokens: int, every_s: float = 2.0) -> None:
        """status.json 'running' at the latest logged step, at most once per `every_s` seconds (a
        small atomic rewrite), so a run killed before its first evaluation shows how far it got."""
        now = time.monotonic()
        if now - getattr(self, "_progress_at", -math.inf) >= every_s:
            self._progress_at = now
            self.status("running", "", step, tokens)

    def read_status(self) -> dict:
        path = self.dir / "status.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def append(self, name: str, record: dict) -> None:
        if self.writes:
            with open(self.dir / name, "a") as f:
                f.write(json.dumps(record) + "\n")

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if not self.writes:
            return
        if self._tensorboard is None:
            from tensorboardX import SummaryWriter
            self._tensorboard = SummaryWriter(str(self.dir / "tensorboard"))
        for key, value in values.items():
            self._tensorboard.add_scalar(f"{prefix}/{key}", value, step)

    def keep_rows(self, keep) -> None:
        """Drop log and table rows written after the checkpoints a resume starts from, so that
        the replayed steps do not appear twice."""
        if not self.writes:
            return
        for name in ("log.jsonl", "training_rows.jsonl"):
            path = self.dir / name
            if not path.is_file():
                continue
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            tmp = path.with_name(name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if keep(r)))
            os.replace(tmp, path)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


# ----------------------------------------------------------------------------------------------
# train()


def _check(condition: bool, binding: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"train.{binding}: {message}")


# train() arguments that do not change what is trained: a rerun may give other values.
NOT_IDENTITY = ("model_dir", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "mesh_data",
                "mesh_fsdp")
IDENTITY_FILE = "identity.json"


def _check_types(arguments: dict) -> None:
    """Every numeric or string train() argument has its annotated type: a string such as 'abc' is
    named here instead of failing later in a comparison."""
    import inspect
    kinds = {"int": ("an integer", lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)),
             "float": ("a number", lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool)),
             "str": ("a string", lambda v: isinstance(v, str))}
    for name, parameter in inspect.signature(train).parameters.items():
        if name not in arguments or str(parameter.annotation) not in kinds:
            continue
        expected, ok = kinds[str(parameter.annotation)]
        if not ok(arguments[name]):
            raise ConfigError(f"train.{name}: must be {expected} ({parameter.annotation}), "
                              f"got {arguments[name]!r} ({type(arguments[name]).__name__})")
    budgets = arguments.get("data_budgets")
    for b in budgets if isinstance(budgets, (list, tuple)) else [budgets]:
        if isinstance(b, bool) or not isinstance(b, (int, float, np.number)):
            raise ConfigError(f"train.data_budgets: must be a list of token counts, got {budgets!r}")


def _identity(arguments: dict) -> dict:
    """What the run folder is a run of: train()'s arguments (the model's fields included), as JSON."""
    out = {}
    for name, value in arguments.items():
        if name in NOT_IDENTITY or name in ("run_dir",):
            continue
        if name == "model" and isinstance(value, ModelConfig):
            out.update({f"ModelConfig.{k}": v for k, v in dataclasses.asdict(value).items()})
        else:
            out[f"train.{name}"] = value
    return json.loads(json.dumps(out, default=str))


def _write_identity(run_dir: Path, identity: dict) -> None:
    path = run_dir / IDENTITY_FILE
    tmp = path.with_name(IDENTITY_FILE + ".tmp")
    tmp.write_text(json.dumps(identity, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _check_same_run(run_dir: Path, identity: dict) -> None:
    """Refuse to train into a run folder made with a different config (another preset, task, seed,
    ...), naming the bindings that differ; the folder is left as it is."""
    if not run_dir.is_dir():
        return
    path = run_dir / IDENTITY_FILE
    if path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise PlacedConfigError(f"{path}: not valid JSON ({e}); cannot tell what this run folder holds") from None
    elif (run_dir / "model.json").is_file():  # a folder written before identity.json existed
        recorded = {f"ModelConfig.{k}": v for k, v in json.loads((run_dir / "model.json").read_text()).items()}
    elif (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise PlacedConfigError(f"--gin.MODEL_DIR={run_dir} holds checkpoints but neither {IDENTITY_FILE} nor "
                                f"model.json: which model they are of is not known; nothing was changed. "
                                f"Give a new --gin.MODEL_DIR")
    else:
        return
    differ = [name for name in sorted(set(recorded) & set(identity)) if recorded[name] != identity[name]]
    if differ:
        lines = "\n".join(f"  {name}: {recorded[name]!r} in the run folder, {identity[name]!r} now" for name in differ)
        raise PlacedConfigError(f"--gin.MODEL_DIR={run_dir} holds a run with a different config; nothing was changed. "
                          f"Give a new --gin.MODEL_DIR, or the bindings the run was made with. "
                          f"Differing bindings:\n{lines}")


def check_arguments(arguments: dict) -> tuple[list[int], int, list]:
    """What train() checks before any compute, on its arguments by name (the sweep calls this
    when it plans a grid, so a run that would be refused at its start is refused there).
    Returns (sorted budgets, warmup tokens, the plan)."""
    a = dict(inspect_defaults(), **arguments)
    _check_types(a)
    model, data_budgets, schedule = a["model"], a["data_budgets"], a["schedule"]
    cooldown_shape, cooldown_fraction, learning_rate = a["cooldown_shape"], a["cooldown_fraction"], a["learning_rate"]
    beta1, beta2, batch_size, warmup_tokens = a["beta1"], a["beta2"], a["batch_size"], a["warmup_tokens"]
    eval_batches, log_every_steps = a["eval_batches"], a["log_every_steps"]
    checkpoint_every_steps, keep_checkpoints = a["checkpoint_every_steps"], a["keep_checkpoints"]
    budgets = sorted(int(b) for b in (data_budgets if isinstance(data_budgets, (list, tuple)) else [data_budgets]))
    _check(isinstance(model, ModelConfig), "model", f"must be a ModelConfig (bind train.model = @ModelConfig()), got {model!r}")
    _check(bool(budgets) and budgets[0] > 0, "data_budgets", f"need positive token budgets, got {data_budgets!r}")
    _check(len({branch_label(b) for b in budgets}) == len(budgets), "data_budgets",
           f"budgets {budgets} do not have distinct labels at two significant digits")
    _check(schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}, got {schedule!r}")
    _check(schedule != "cosine" or len(budgets) == 1, "data_budgets",
           "schedule='cosine' decays over one horizon: give exactly one budget (or use 'wsd')")
    _check(cooldown_shape in COOLDOWN_SHAPES, "cooldown_shape", f"must be one of {COOLDOWN_SHAPES}, got {cooldown_shape!r}")
    _check(0.0 < cooldown_fraction < 1.0, "cooldown_fraction", f"must be in (0, 1), got {cooldown_fraction}")
    _check(learning_rate > 0, "learning_rate", f"must be positive, got {learning_rate}")
    _check(0 <= beta1 < 1 and 0 <= beta2 < 1, "beta1/beta2", f"must be in [0, 1), got {beta1}, {beta2}")
    _check(batch_size > 0, "batch_size", f"must be positive, got {batch_size}")
    _check(warmup_tokens >= 0, "warmup_tokens", f"must be >= 0, got {warmup_tokens}")
    _check(eval_batches > 0, "eval_batches", f"must be positive, got {eval_batches}")
    _check(log_every_steps > 0 and checkpoint_every_steps > 0 and keep_checkpoints > 0,
           "log_every_steps/checkpoint_every_steps/keep_checkpoints", "must be positive")
    warmup = int(warmup_tokens * budgets[0]) if warmup_tokens < 1 else int(warmup_tokens)
    plan = _plan(budgets, schedule, cooldown_fraction)
    if schedule == "wsd":
        _check(warmup <= plan[0][0].end_tokens, "warmup_tokens",
               f"warmup ({warmup} tokens) must end before the first fork at {plan[0][0].end_tokens} tokens")
    return budgets, warmup, plan


def inspect_defaults() -> dict:
    import inspect
    return {name: p.default for name, p in inspect.signature(train).parameters.items()
            if p.default is not inspect.Parameter.empty}

def _plan(data_budgets, schedule, cooldown_fraction) -> list[tuple[Phase | None, Phase]]:
    """(trunk phase to its fork, or None; the finishing phase) for each budget, in order."""
    budgets = sorted(int(b) for b in data_budgets)
    if schedule == "cosine":
        return [(None, Phase(branch_label(budgets[0]), "cosine", budgets[0], budgets[0]))]
    return [(Phase(TRUNK, "constant", int(round(b * (1.0 - cooldown_fraction))), b),
             Phase(branch_label(b), "wsd", b, b)) for b in budgets]


@gin.configurable
def train(model_dir: str,
          model: ModelConfig,
          task: str = "synthetic_vanilla",
          arm: str = "vanilla",
          seed: int = 0,
          batch_size: int = 16,
          data_budgets=(1_000_000,),
          schedule: str = "wsd",
          learning_rate: float = 3e-3,
          warmup_tokens: float = 0.05,
          cooldown_fraction: float = 0.2,
          cooldown_shape: str = "1-sqrt",
          beta1: float = 0.9,
          beta2: float = 0.95,
          weight_decay: float = 0.1,
          grad_clip: float = 1.0,
          eval_corpus: str = "synthetic",
          eval_every_tokens: int = 0,
          eval_batches: int = 8,
          log_every_steps: int = 10,
          checkpoint_every_steps: int = 200,
          keep_checkpoints: int = 3,
          mesh_data: int = -1,
          mesh_fsdp: int = 1,
          sweep: str = "") -> dict:
    """Train `model` on `task` to each of `data_budgets` tokens; see gin/runs/pretrain.gin for
    every argument. Returns a summary; raises TrainingFailed (status.json says why)."""
    if not isinstance(model_dir, (str, os.PathLike)) or not str(model_dir):
        raise ConfigError("train.model_dir: missing required value; give the run folder with --gin.MODEL_DIR=<path>")
    run_dir = Path(model_dir).resolve()
    arguments = dict(locals())
    _check_types(arguments)
    if run_dir.exists() and not run_dir.is_dir():
        raise PlacedConfigError(f"--gin.MODEL_DIR={run_dir} is a file, not a run folder; give a folder path")
    identity = _identity(arguments)
    _check_same_run(run_dir, identity)
    run_dir.mkdir(parents=True, exist_ok=True)
    budgets = sorted(int(b) for b in (data_budgets if isinstance(data_budgets, (list, tuple)) else [data_budgets]))
    folder = RunFolder(run_dir, budgets[-1] if budgets else 0)
    try:
        budgets, warmup, plan = check_arguments(arguments)
        mesh = partitioning.make_mesh(mesh_data, mesh_fsdp)
        _check(batch_size % mesh.size == 0, "batch_size", f"{batch_size} does not split over {mesh.size} devices")

        if folder.read_status().get("state") == "finished" and \
                {r["branch"] for r in finished_branches(run_dir)} >= {p.name for _, p in plan}:
            print(f"{run_dir}: already finished; nothing to do")
            return {"run_dir": str(run_dir), "finished": finished_branches(run_dir), "skipped": True}

        if folder.writes:
            configuration.write_config(run_dir)
            write_model_config(run_dir, model)
            if not (run_dir / IDENTITY_FILE).is_file():
                _write_identity(run_dir, identity)
        trainer = _Trainer(run_dir, folder, model, task, arm, seed, batch_size, LearningRate(
            learning_rate, warmup, cooldown_shape), make_optimizer(beta1, beta2, weight_decay, grad_clip),
            mesh, eval_corpus, eval_every_tokens, eval_batches, log_every_steps, checkpoint_every_steps,
            keep_checkpoints, sweep, schedule)
        try:
            trainer.run(plan)
        finally:
            trainer.close()
        folder.status("finished", "", trainer.counters.step, trainer.counters.tokens)
        return {"run_dir": str(run_dir), "finished": finished_branches(run_dir), "skipped": False}
    except TrainingFailed as e:
        folder.status("failed", str(e))
        raise
    except ConfigError as e:
        folder.status("failed", f"configuration error: {e}")
        raise
    except Exception as e:
        folder.status("failed", f"{type(e).__name__}: {e}")
        raise
    finally:
        folder.close()


class _Trainer:
    """The loop over phases; holds the device state, the counters and the outputs."""

    def __init__(self, run_dir, folder, model, task, arm, seed, batch_size, lr, tx, mesh, eval_corpus,
                 eval_every_tokens, eval_batches, log_every_steps, checkpoint_every_steps, keep_checkpoints,
                 sweep, schedule):
        from scaling.data import pipeline  # imported here: it brings in seqio/TensorFlow
        self.pipeline = pipeline
        pipeline.use_vocabulary(model.vocabulary, model.vocab_size)  # the synthetic tasks speak the model's ids
        self.run_dir, self.folder, self.model, self.task, self.seed = run_dir, folder, model, task, seed
        self.batch_size, self.lr, self.mesh = batch_size, lr, mesh
        self.eval_every_tokens, self.log_every, self.checkpoint_every = eval_every_tokens, log_every_steps, checkpoint_every_steps
        self.checkpoints = RunCheckpoints(run_dir, keep=keep_checkpoints)
        self.compiled = compile_functions(model, tx, mesh, seed)
        self.flops_per_token = accounting.training_flops_per_token(model)
        self.params_count = accounting.param_count(model)
        self.peak_flops, self.peak_source = device_peak_flops(model.compute_dtype)
        self.peak_flops *= jax.device_count()
        self.teacher_flops_per_thinking_token = pipeline.teacher_flops_per_thinking_token(task)
        local = pipeline.eval_batches(eval_corpus, batch_size // jax.process_count(), model.seq_len, eval_batches)
        self.eval_data = [partitioning.global_batch({k: np.asarray(b[k]) for k in EVAL_KEYS}, mesh) for b in local]
        self.row_base = {
            "run_id": run_dir.name, "sweep": sweep, "arm": arm, "seed": seed,
            "d_model": model.d_model, "n_layers": model.n_layers, "n_heads": model.n_heads,
            "n_kv_heads": model.kv_heads, "d_ff": model.d_ff, "vocab_size": model.vocab_size,
            "seq_len": model.seq_len, "mlp_attn_ratio": accounting.mlp_attn_ratio(model),
            "params": self.params_count.total, "params_non_embedding": self.params_count.non_embedding,
            "flops_per_token": self.flops_per_token}
        self.schedule = schedule
        self.counters = Counters()
        self.params = self.opt_state = None
        self.pending_losses: list = []
        self.stop_requested = False
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm) \
            if threading.current_thread() is threading.main_thread() else None
        log.info("peak %.3g FLOP/s (%s); %d devices, mesh %s", self.peak_flops, self.peak_source,
                 jax.device_count(), dict(mesh.shape))

    def _on_sigterm(self, signum, frame):
        self.stop_requested = True

    def close(self):
        self.checkpoints.wait()
        self.checkpoints.close()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    # -- state ----------------------------------------------------------------------------------

    def _load(self, name: str) -> bool:
        restored = self.checkpoints.restore_latest(name, self.compiled.abstract_params, self.compiled.abstract_opt_state)
        if restored is None:
            return False
        self.params, self.opt_state, meta = restored
        self.loaded_phase_start = int(meta["phase_start_tokens"])
        self.counters = Counters(**{f.name: int(meta[f.name]) for f in dataclasses.fields(Counters)})
        return True

    def _init(self):
        self.params, self.opt_state = self.compiled.init()
        self.counters = Counters()

    def _losses_so_far(self) -> list[float]:
        """Fetch the losses dispatched since the last fetch; stop on a non-finite one."""
        losses = [float(x) for x in jax.device_get(self.pending_losses)]
        first_step = self.counters.step - len(losses) + 1
        self.pending_losses = []
        for i, value in enumerate(losses):
            if not math.isfinite(value):
                raise TrainingFailed(f"non-finite loss ({value}) at step {first_step + i}; "
                                     f"the last good checkpoint is kept")
        return losses

    def _save(self, name: str, phase_start_tokens: int):
        self._losses_so_far()  # never checkpoint a state that produced a non-finite loss
        meta = {**dataclasses.asdict(self.counters), "phase_start_tokens": int(phase_start_tokens)}
        if self.counters.step in self.checkpoints.manager(name).all_steps():
            return  # a resume that starts exactly at a saved step
        self.checkpoints.save(name, self.counters.step, self.params, self.opt_state, meta)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, plan):
        finished = {r["branch"] for r in finished_branches(self.run_dir)}
        for trunk_phase, final_phase in plan:
            if final_phase.name in finished:
                continue
            if self.checkpoints.has_checkpoint(final_phase.name) and self._load(final_phase.name):
                fork_tokens = self.loaded_phase_start
                self._prune_rows(final_phase.name)
            else:
                if trunk_phase is None or not self._load(TRUNK):
                    self._init()
                self._prune_rows(TRUNK if trunk_phase else final_phase.name)
                if trunk_phase is not None:
                    self._train(trunk_phase, start_tokens=0)
                    self._save(TRUNK, 0)
                fork_tokens = self.counters.tokens
            self._train(final_phase, start_tokens=fork_tokens)
            self._save(final_phase.name, fork_tokens)
            self._evaluate(final_phase, is_final=True)
            self.checkpoints.mark_finished(final_phase.name, self.counters.step, self.counters.tokens)
            finished.add(final_phase.name)

    def _prune_rows(self, current: str):
        """Keep rows of finished branches, and of the current line up to the restored step."""
        finished = {r["branch"] for r in finished_branches(self.run_dir)}
        step = self.counters.step

        def keep(row):
            branch = row.get("branch", "")
            name = branch or TRUNK
            if branch in finished:
                return True
            if name == current:  # a final row of an unfinished branch is written again
                return row["step"] <= step and not row.get("is_final", False)
            if name == TRUNK:
                return row["step"] <= step
            return False

        self.folder.keep_rows(keep)

    def _learning_rate(self, phase: Phase, start_tokens: int) -> float:
        tokens = self.counters.tokens
        if phase.schedule == "constant":
            return self.lr.constant(tokens)
        if phase.schedule == "wsd":
            return self.lr.cooldown(tokens, start_tokens, phase.end_tokens)
        return self.lr.cosine(tokens, phase.end_tokens)

    def _train(self, phase: Phase, start_tokens: int):
        """Train until phase.end_tokens, logging, evaluating and checkpointing on the way."""
        c = self.counters
        if c.tokens >= phase.end_tokens:
            return
        batches = self.pipeline.train_batches(self.task, self.batch_size // jax.process_count(), self.model.seq_len,
                                              self.seed, start_batch=c.batch_index, host_index=jax.process_index(),
                                              host_count=jax.process_count())
        prefetch = Prefetcher(batches, self.mesh)
        periodic_eval = self.eval_every_tokens > 0 and phase.schedule != "wsd"
        next_eval = (c.tokens // self.eval_every_tokens + 1) * self.eval_every_tokens if periodic_eval else None
        progress = _progress_bar(phase, c.tokens)
        window_start, window_tokens, losses_in_window = time.perf_counter(), 0, 0
        try:
            while c.tokens < phase.end_tokens:
                if self.stop_requested:
                    self._save(phase.name, start_tokens)
                    self.checkpoints.wait()
                    raise Preempted(f"preempted by SIGTERM at step {c.step}; checkpoint saved; rerun to resume")
                counts, batch = prefetch.next()
                if jax.process_count() > 1:
                    from jax.experimental import multihost_utils
                    counts = np.asarray(multihost_utils.process_allgather(counts)).reshape(-1, 3).sum(0)
                lr = self._learning_rate(phase, start_tokens)
                self.params, self.opt_state, loss = self.compiled.step(self.params, self.opt_state, batch,
                                                                       np.float32(lr))
                self.pending_losses.append(loss)
                if timings.PROCESS.first_step_at is None:  # start-up (compilation included) ends here
                    jax.block_until_ready(loss)
                    timings.PROCESS.first_step_done()
                    window_start = time.perf_counter()
                c.step += 1
                c.batch_index += 1
                c.tokens += int(counts[0])
                c.tokens_raw += int(counts[1])
                c.tokens_thinking += int(counts[2])
                window_tokens += int(counts[0])
                progress.update(int(counts[0]))
                if c.step % self.log_every == 0 or c.tokens >= phase.end_tokens:
                    losses = self._losses_so_far()
                    elapsed = time.perf_counter() - window_start
                    timings.PROCESS.train_step_s += elapsed
                    self._log(phase, losses, lr, window_tokens / elapsed)
                    progress.set_postfix(loss=f"{losses[-1]:.3f}")
                    window_start, window_tokens = time.perf_counter(), 0
                if next_eval is not None and c.tokens >= next_eval and c.tokens < phase.end_tokens:
                    self._evaluate(phase, is_final=False)
                    next_eval = (c.tokens // self.eval_every_tokens + 1) * self.eval_every_tokens
                    window_start, window_tokens = time.perf_counter(), 0
                if c.step % self.checkpoint_every == 0 and c.tokens < phase.end_tokens:
                    self._save(phase.name, start_tokens)
                    window_start, window_tokens = time.perf_counter(), 0
        finally:
            prefetch.close()
            progress.close()

    def _log(self, phase: Phase, losses: list[float], lr: float, tokens_per_s: float):
        c = self.counters
        flops_per_s = tokens_per_s * self.flops_per_token
        record = {"step": c.step, "branch": "" if phase.name == TRUNK else phase.name, "loss": float(np.mean(losses)),
                  "lr": lr, "tokens": c.tokens, "flops": c.tokens * self.flops_per_token,
                  "tokens_per_s": tokens_per_s, "flops_per_s": flops_per_s, "mfu": flops_per_s / self.peak_flops}
        self.folder.append("log.jsonl", record)
        self.folder.progress(c.step, c.tokens)
        self.folder.scalars("train" if phase.name == TRUNK else f"train/{phase.name}",
                            {k: record[k] for k in ("loss", "lr", "tokens_per_s", "mfu")}, c.step)

    def _evaluate(self, phase: Phase, is_final: bool):
        self._losses_so_far()
        sums = np.zeros(7)
        totals = [self.compiled.evaluate(self.params, batch) for batch in self.eval_data]
        for t in jax.device_get(totals):
            sums += np.asarray(t, np.float64)
        loss_sum, weight, hard_sum, hard_weight, easy_sum, easy_weight, n_bytes = sums
        c = self.counters
        # unique_tokens/epochs: the pipeline does not track repetition yet; 0 means unknown.
        stats = {"unique_tokens": 0, "epochs": 0.0,
                 "teacher_flops": c.tokens_thinking * self.teacher_flops_per_thinking_token}
        row = {**self.row_base,
               "step": c.step, "tokens": c.tokens, "tokens_raw": c.tokens_raw, "tokens_thinking": c.tokens_thinking,
               **stats,
               "flops": c.tokens * self.flops_per_token, "flops_6nd": 6.0 * self.params_count.total * c.tokens,
               "schedule": phase.schedule, "branch": "" if phase.name == TRUNK else phase.name, "is_final": is_final,
               "eval_loss": loss_sum / max(weight, 1.0),
               "eval_bpb": loss_sum / math.log(2) / max(n_bytes, 1.0),
               "eval_loss_hard": hard_sum / hard_weight if hard_weight else float("nan"),
               "eval_loss_easy": easy_sum / easy_weight if easy_weight else float("nan")}
        self.folder.append("training_rows.jsonl", row)
        self.folder.scalars("eval" if phase.name == TRUNK else f"eval/{phase.name}",
                            {k: row[k] for k in ("eval_loss", "eval_bpb", "eval_loss_hard", "eval_loss_easy")},
                            c.step)
        self.folder.status("running", "", c.step, c.tokens)


def _progress_bar(phase: Phase, tokens: int):
    from tqdm import tqdm
    return tqdm(total=phase.end_tokens, initial=tokens, unit="tok", unit_scale=True, dynamic_ncols=True,
                desc=phase.name, disable=not sys.stderr.isatty(), leave=False)


# ----------------------------------------------------------------------------------------------
# The `train` verb


def configure_train(parser):
    parser.add_argument("--log_level", default="INFO", help="Python logging level (default INFO)")
    parser.add_argument("--infer_gin_file", default=None,
                        help="after training, evaluate finished branches with this inference config, in this "
                             "process (what a sweep's run does; same rows as `scaling infer` per branch)")
    parser.add_argument("--infer_branches", default="all",
                        help="with --infer_gin_file: 'all' finished branches, or comma-separated labels (D=1.0e6,...)")


def infer_branches(run_dir: Path, gin_file: str, branches: str) -> None:
    """`scaling infer` on each branch, in this process: compiled decoders are shared across
    branches, and rows already in the run's table are skipped as always."""
    from scaling import infer

    finished = [r["branch"] for r in finished_branches(run_dir)]
    wanted = finished if branches == "all" else [b for b in branches.split(",") if b]
    missing = [b for b in wanted if b not in finished]
    if missing:
        raise TrainingFailed(f"--infer_branches: {', '.join(missing)} not finished; finished: {', '.join(finished)}")
    gin_args = configuration.GinArgs((gin_file,), (f"MODEL_DIR = {str(run_dir)!r}",))
    for branch in wanted:
        configuration.parse(gin_args)
        with configuration.explained(gin_args):
            infer.infer(branch=branch)


def run_train(args) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    partitioning.initialize_distributed()
    if not args.gin.files:
        raise ConfigError("give a model and a run file: --gin_file=gin/models/<preset>.gin "
                          "--gin_file=gin/runs/pretrain.gin --gin.MODEL_DIR=<run folder>")
    configuration.parse(args.gin)
    try:
        with configuration.explained(args.gin):
            summary = train()
        if args.infer_gin_file:
            infer_branches(Path(summary["run_dir"]), args.infer_gin_file, args.infer_branches)
        timings.PROCESS.record(summary["run_dir"], "train" + (" + infer" if args.infer_gin_file else ""))
    except TrainingFailed as e:
        print(f"scaling train: {e}", file=sys.stderr)
        return 143 if isinstance(e, Preempted) else 1
    except ConfigError:
        raise
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps(summary))
    return 0
