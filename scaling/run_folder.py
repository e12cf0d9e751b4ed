"""The run folder's own files (docs/schema.md): status.json, log.jsonl, training_rows.jsonl,
TensorBoard events, and identity.json (what the folder is a run of, so a rerun with another
config is refused). Written by process 0 only; every rewrite is atomic (analysis.atomic)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import time
from pathlib import Path

import jax
from tensorboardX import SummaryWriter

from analysis.appended import CorruptLine, append_jsonl, read_records
from analysis.atomic import write_json_atomic, write_text_atomic
from scaling.configuration import MOVED, ConfigError, PlacedConfigError
from scaling.model import ModelConfig

IDENTITY_FILE = "identity.json"
DEVICES_FILE = "devices.jsonl"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """status.json, log.jsonl, training_rows.jsonl and TensorBoard events; written by process 0."""

    def __init__(self, run_dir: Path, total_tokens: int):
        self.dir = run_dir
        self.total_tokens = total_tokens
        self.writes = jax.process_index() == 0
        self._tensorboard = None
        self._wandb = None

    def start_wandb(self, mode: str, project: str, config: dict) -> None:
        """Log the scalars to W&B too (scaling/wandb_log.py); 'off' does nothing."""
        if self.writes and mode != "off" and self._wandb is None:
            from scaling.wandb_log import WandbLog
            self._wandb = WandbLog(self.dir, mode, project, config)

    def status(self, state: str, reason: str = "", step: int = 0, tokens: int = 0) -> None:
        if not self.writes:
            return
        write_json_atomic(self.dir / "status.json", {
            "state": state, "reason": reason, "step": int(step), "tokens": int(tokens),
            "total_tokens": int(self.total_tokens), "updated": _now()}, indent=None)

    def progress(self, step: int, tokens: int, every_s: float = 2.0) -> None:
        """status.json 'running' at the latest logged step, at most once per `every_s` seconds (a
        small atomic rewrite), so a run killed before its first evaluation shows how far it got."""
        now = time.monotonic()
        if now - getattr(self, "_progress_at", -math.inf) >= every_s:
            self._progress_at = now
            self.status("running", "", step, tokens)

    def record_devices(self, mesh) -> None:
        """One line per start in devices.jsonl: what this attempt ran on (a resumed run may run on
        other hardware), for reading a run's speed and for reproducing it."""
        device = jax.devices()[0]
        self.append(DEVICES_FILE, {
            "started": _now(), "platform": device.platform, "device_kind": device.device_kind,
            "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
            "process_count": jax.process_count(), "mesh": {k: int(v) for k, v in dict(mesh.shape).items()},
            "xla_flags": os.environ.get("XLA_FLAGS", "")})

    def read_status(self) -> dict:
        path = self.dir / "status.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def append(self, name: str, record: dict) -> None:
        if self.writes:
            append_jsonl(self.dir / name, record)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        """TensorBoard (and W&B) scalars. A metric that is not defined at this step is left out:
        eval_loss_hard is NaN on text without hard spans (any real corpus), and the rows say so."""
        values = {k: v for k, v in values.items() if math.isfinite(v)}
        if not self.writes or not values:
            return
        if self._tensorboard is None:
            self._tensorboard = SummaryWriter(str(self.dir / "tensorboard"))
        for key, value in values.items():
            self._tensorboard.add_scalar(f"{prefix}/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log(prefix, values, step)

    def keep_rows(self, keep) -> None:
        """Drop log and table rows written after the checkpoints a resume starts from, so that
        the replayed steps do not appear twice. A torn last line (a kill or a full disk during an
        append) is dropped with them; a corrupt line elsewhere stops the resume, naming the file."""
        if not self.writes:
            return
        for name in ("log.jsonl", "training_rows.jsonl"):
            path = self.dir / name
            if not path.is_file():
                continue
            try:
                rows = read_records(path)
            except CorruptLine as e:
                raise ConfigError(f"{e}; move the file aside to resume without its rows") from None
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows if keep(r)))

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None


# -- identity: what the folder is a run of ------------------------------------------------------


def identity(settings: dict, not_identity: tuple[str, ...]) -> dict:
    """The run's train settings as JSON, less `not_identity`. An object's settings are recorded as
    its gin bindings: the model's as `ModelConfig.<field>`, the schedule's as `train.schedule`
    (its name) and `<Class>.<field>` (its settings), so changing any of them is a different run."""
    out = {}
    for name, value in settings.items():
        if name in not_identity:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update({f"{type(value).__name__}.{f.name}": getattr(value, f.name) for f in dataclasses.fields(value)})
            if not isinstance(value, ModelConfig):
                out[f"train.{name}"] = getattr(value, "name", type(value).__name__)
        else:
            out[f"train.{name}"] = value
    return json.loads(json.dumps(out, default=str))


def write_identity(run_dir: Path, recorded: dict) -> None:
    write_json_atomic(run_dir / IDENTITY_FILE, recorded, indent=1, sort_keys=True)


def check_same_run(run_dir: Path, identity: dict) -> None:
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
    recorded = {MOVED.get(name, name): value for name, value in recorded.items()}
    differ = [name for name in sorted(set(recorded) & set(identity)) if recorded[name] != identity[name]]
    if differ:
        lines = "\n".join(f"  {name}: {recorded[name]!r} in the run folder, {identity[name]!r} now" for name in differ)
        raise PlacedConfigError(f"--gin.MODEL_DIR={run_dir} holds a run with a different config; nothing was changed. "
                                f"Give a new --gin.MODEL_DIR, or the bindings the run was made with. "
                                f"Differing bindings:\n{lines}")
