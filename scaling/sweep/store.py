"""The sweep folder on disk: run identity, planned runs, and each run's job record.

```
<sweep_dir>/
  sweep.json              grid name and file, the planned run names (rewritten at each plan)
  <run name>-<hash>/      one run folder (the trainer's layout, docs/schema.md), plus:
    run.json              identity: grid point, config hash, resolved configs (never rewritten)
    config.gin            the resolved train config, written at planning (the trainer rewrites
                          it with its operative config; run.json keeps the planned text)
    infer.gin             the resolved inference settings
    job.json              the sweep's record: state, phase, attempts, reason (atomic rewrites)
    claims/               claim files (scaling.sweep.claims)
    run.log                 the run's command output (training, then inference), a section per attempt
    timings.jsonl           per process: start-up and seconds in compiled steps (scaling.timings)
```

A run's identity is its readable name (from the grid point) plus a short hash of its resolved
config and inference settings. Everything stored is JSON or gin text: nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import gin

from analysis.atomic import write_json_atomic, write_text_atomic
from scaling import configuration
from scaling.configuration import ConfigError
from scaling import schedules
from scaling.schedules import branch_label
from scaling.sweep.files import read_json
from scaling.sweep.grid import FITTED_PREFIX, Grid, Point, sanitise
from scaling.infer_config import InferConfig

if TYPE_CHECKING:
    from scaling.train_config import TrainConfig

HASH_LENGTH = 8
JOB_STATES = ("pending", "running", "done", "failed", "interrupted")


def point_bindings(grid: Grid, point: Point) -> tuple[str, ...]:
    """The bindings that make the trainer run this grid point (MODEL_DIR is given at launch)."""
    return point.model.bindings + (
        f"train.sweep = {grid.name!r}",
        f"train.arm = {point.arm!r}",
        f"train.task = {point.task!r}",
        f"train.seed = {point.seed}",
        f"train.data_budgets = {list(point.data_budgets)!r}",
    ) + schedules.bindings(point.schedule)


def fitted_hyperparameters(law_file: str, params: int, tokens: int, seq_len: int) -> dict[str, float | int]:
    """train.learning_rate and train.batch_size from a fitted hyperparameter law at (N, D): the
    law's point estimates; its batch is in tokens (fitted with --seq-len) and becomes sequences
    of this model's seq_len, at least one. For a WSD run D is its largest data budget: one run
    trains every budget with one learning rate and batch."""
    from analysis import LawError, TableError, load_law, predict  # here: the fitting stack, only for fitted laws

    where = f"Grid.hyperparameters = 'fitted:{law_file}'"
    try:
        law = load_law(law_file)
    except (OSError, ValueError, LawError, TableError) as e:
        raise ConfigError(f"{where}: {e}") from None
    if law.form.name != "hyperparameters":
        raise ConfigError(f"{where}: the law is of form {law.form.name!r}; fit one with "
                          "`scaling fit TABLE --form=hyperparameters`")
    point = predict(law, {"N": [float(params)], "D": [float(tokens)]}).points[0]
    lr = point.quantities["lr"].estimate
    batch = max(1, int(round(point.quantities["batch_size"].estimate / seq_len)))
    if not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"{where}: the law gives learning rate {lr} at N = {params}, D = {tokens}")
    return {"train.learning_rate": float(f"{lr:.4g}"), "train.batch_size": batch}


def _override_bindings(overrides: dict, where: str) -> tuple[str, ...]:
    out = []
    for name, value in overrides.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: binding names must be strings, got {name!r}")
        out.append(f"{name} = {value if isinstance(value, str) and value.startswith(('@', '%')) else repr(value)}")
    return tuple(out)


def resolve(entry_module: str, files: tuple[str, ...], bindings: tuple[str, ...]) -> str:
    """The resolved gin config of files + bindings: every binding, sorted, includes expanded.
    `entry_module` (scaling.train_config, scaling.infer) is imported so gin knows every name bound."""
    importlib.import_module(entry_module)
    configuration.parse(configuration.GinArgs(tuple(files), tuple(bindings)))
    return gin.config_str()


def check_trainable(point: Point) -> TrainConfig:
    """The parsed config of a grid point, built as the trainer builds it (gin makes the schedule
    object) and put through the trainer's own checks, so that a run the trainer would refuse at its
    start (budgets without distinct labels, a warmup past the first fork, a wrong-typed override, a
    bad schedule setting) is refused when the grid is planned, naming the grid point."""
    from scaling.train_config import TrainConfig  # here: it imports the model (JAX); status and collect do not

    try:
        config = TrainConfig(model_dir="", model=point.model.config)
        config.check()
    except ConfigError as e:
        raise ConfigError(f"grid point {point.readable_name}: {e}") from None
    return config


def check_inferable(point: Point) -> None:
    """The inference settings of a grid point through `InferConfig.check()`, as `scaling infer`
    checks them, so a bad setting is refused when the grid is planned."""
    try:
        InferConfig(model_dir="").check()
    except ConfigError as e:
        raise ConfigError(f"grid point {point.readable_name}: {e}") from None


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything needed to execute one run, as plain JSON (Ray ships it to workers as is)."""

    name: str  # <readable>-<hash>
    readable: str
    config_hash: str
    point: dict
    train_config: str  # resolved gin text, MODEL_DIR left %gin.REQUIRED (given at launch)
    infer_config: str  # resolved gin text of the inference sweep, "" for none

    @property
    def record(self) -> dict:
        return dataclasses.asdict(self)


def plan_run(grid: Grid, point: Point) -> RunPlan:
    """Resolve a grid point's train config and inference settings; name it by their hash."""
    train_bindings = (_override_bindings(grid.train_overrides, "Grid.train_overrides")
                      + _override_bindings(grid.arm_overrides.get(point.arm, {}),
                                           f"Grid.arm_overrides[{point.arm!r}]")
                      + point_bindings(grid, point))
    if grid.hyperparameters:
        fitted = fitted_hyperparameters(grid.hyperparameters[len(FITTED_PREFIX):], point.model.params,
                                        max(point.data_budgets), point.model.config.seq_len)
        train_bindings += _override_bindings(fitted, "Grid.hyperparameters")
    # The preset first, then the run files (which may refine it), then the grid's bindings.
    train_config = resolve("scaling.train_config", (f"models/{point.model.preset}.gin",) + tuple(grid.train_files), train_bindings)
    batch_size = check_trainable(point).batch_size
    branches = [branch_label(d) for d in point.data_budgets]
    infer_branches = branches[-1:] if grid.infer_branches == "last" else branches
    infer_config = ""
    if grid.infer_files:
        infer_config = (f"# Evaluated on the finished branches {', '.join(infer_branches)}\n"
                        + resolve("scaling.infer", tuple(grid.infer_files),
                                  _override_bindings(grid.infer_overrides, "Grid.infer_overrides")))
        check_inferable(point)
    digest = hashlib.sha256(f"{train_config}\n# inference\n{infer_config}".encode()).hexdigest()[:HASH_LENGTH]
    readable = point.readable_name
    point_record = {
        "preset": point.model.preset, "architecture": dict(point.model.changes), "arm": point.arm,
        "task": point.task, "seed": point.seed, "schedule": point.schedule.name,
        "schedule_settings": schedules.settings(point.schedule),
        "data_budgets": list(point.data_budgets), "compute_budgets": list(point.compute_budgets),
        "params": point.model.params, "flops_per_token": point.model.flops_per_token,
        "config": dataclasses.asdict(point.model.config), "batch_size": batch_size,
        "train_tokens": point.schedule.train_tokens(list(point.data_budgets)),
        "branches": branches, "infer_branches": infer_branches if infer_config else [],
    }
    return RunPlan(sanitise(f"{readable}-{digest}"), readable, digest, point_record, train_config, infer_config)


def _diff(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), old_name, new_name))


def existing_runs(sweep_dir: Path) -> dict[str, dict]:
    """run folder name -> its run.json record, for every planned run in the sweep folder."""
    out = {}
    if not sweep_dir.is_dir():
        return out
    for run_dir in sorted(sweep_dir.iterdir()):
        record = read_json(run_dir / "run.json") if run_dir.is_dir() else None
        if record is not None:
            out[run_dir.name] = record
    return out


def check_unchanged(sweep_dir: Path, plans: list[RunPlan]) -> None:
    """Refuse a plan whose grid point already exists in the sweep with a different config."""
    by_readable = {}
    for name, record in existing_runs(sweep_dir).items():
        by_readable.setdefault(record["readable"], []).append((name, record))
    for plan in plans:
        for name, record in by_readable.get(plan.readable, []):
            if name != plan.name:
                diff = _diff(_identity_text(record), _identity_text(plan.record), f"{name} (in {sweep_dir})",
                             f"{plan.name} (this grid)")
                raise ConfigError(
                    f"sweep {sweep_dir}: grid point {plan.readable} was run with a different config "
                    f"({name}); use a new --sweep_dir or restore the grid. Difference:\n{diff}")


def _identity_text(record: dict) -> str:
    return f"{record['train_config']}\n# inference\n{record['infer_config']}"


def write_plan(sweep_dir: Path, grid: Grid, grid_file: str, plans: list[RunPlan]) -> None:
    """Create run folders (run.json, config.gin) for new runs and record the sweep's run list."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        run_dir = sweep_dir / plan.name
        if (run_dir / "run.json").exists():
            continue
        run_dir.mkdir(exist_ok=True)
        for file_name, text in (("config.gin", plan.train_config), ("infer.gin", plan.infer_config)):
            if text:
                write_text_atomic(run_dir / file_name, text)
        write_json_atomic(run_dir / "run.json", plan.record, sort_keys=True)
    write_json_atomic(sweep_dir / "sweep.json", {
        "grid": grid.name, "grid_file": str(grid_file), "runs": [p.name for p in plans], "updated": time.time(),
        "grid_config": {**dataclasses.asdict(grid), "schedule": {"name": grid.schedule.name,
                                                                 **schedules.settings(grid.schedule)}}},
        sort_keys=True)


def load_plan(run_dir: Path) -> RunPlan:
    record = read_json(run_dir / "run.json")
    if record is None:
        raise ConfigError(f"{run_dir}: no run.json (not a planned run)")
    return RunPlan(**record)


def read_job(run_dir: Path) -> dict:
    return read_json(run_dir / "job.json", default={"state": "pending", "attempts": 0, "phases_done": []})


def write_job(run_dir: Path, job: dict) -> None:
    if job["state"] not in JOB_STATES:
        raise ValueError(f"job state {job['state']!r} is not one of {JOB_STATES}")
    write_json_atomic(run_dir / "job.json", {**job, "updated": time.time()}, sort_keys=True)
