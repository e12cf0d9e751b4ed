"""Orbax checkpoints of a run: the constant-LR trunk, each cooldown branch, exact resume.

Layout under `<run_dir>/checkpoints/`:
  trunk/<step>/          the trunk (WSD) at periodic steps and at every fork point
  <branch>/<step>/       a cooldown branch (e.g. `D=1.0e6/`), or the single cosine run
  branches.json          the finished branches: [{"branch", "step", "tokens"}, ...]
Each step folder holds three items: `params` and `opt_state` (array pytrees) and `meta` (JSON:
step, data position, token counters, ...). Saving is asynchronous; Orbax writes into a temporary
folder and renames it when complete, so a kill mid-save leaves the previous step intact. A step
that still fails to restore (truncated or corrupted files) is skipped with a warning and the one
before it used. `<run_dir>/model.json` holds the ModelConfig, so a run folder alone is enough to
rebuild the model (`restore_params`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from analysis.atomic import write_json_atomic
from scaling.configuration import PlacedConfigError
from scaling.model import ModelConfig
from scaling.schedules import TRUNK  # the trunk phase names its checkpoint folder
ITEMS = ("params", "opt_state", "meta")

log = logging.getLogger(__name__)


def write_model_config(run_dir: str | Path, config: ModelConfig) -> None:
    write_json_atomic(Path(run_dir) / "model.json", dataclasses.asdict(config))


def read_model_config(run_dir: str | Path) -> ModelConfig:
    path = Path(run_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model.json; is {run_dir} a run folder written by `scaling train`?")
    return ModelConfig(**json.loads(path.read_text()))


def _quiet_closed_loop_callbacks() -> None:
    """After a step fails to restore (or to save: a full disk), Orbax closes the event loop while
    TensorStore reads (writes) of the other arrays are still in flight; each one then reports
    `RuntimeError: Event loop is closed` (a traceback per array), and each read coroutine left
    unfinished its own error with a TensorStore spec, through sys.unraisablehook. Those say nothing
    beyond the one warning or error line: drop them, pass every other exception on."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_closed_loop", False):
        return

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
            return
        code = getattr(unraisable.object, "cr_code", None)  # an Orbax read coroutine left unfinished
        if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
            return
        previous(unraisable)

    hook._drops_closed_loop = True
    sys.unraisablehook = hook
    # TensorStore reports a callback into the closed loop with PyErr_Print, which calls sys.excepthook
    previous_excepthook = sys.excepthook

    def excepthook(kind, value, tb):
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous_excepthook(kind, value, tb)

    sys.excepthook = excepthook
    # A read task that finished with its error before the loop closed is reported instead by
    # asyncio's "Task exception was never retrieved" (its logger, with a traceback) when collected.
    logging.getLogger("asyncio").addFilter(_drop_orbax_task_reports)


def _drop_orbax_task_reports(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (message.startswith("Task exception was never retrieved") and f"{os.sep}orbax{os.sep}" in message)


def _shape_mismatch(e: Exception) -> bool:
    """Whether a restore failed because the stored arrays have other shapes (another model)."""
    text = str(e).lower()
    return ("not compatible with the stored shape" in text or ("shape" in text and "mismatch" in text)
            or "ScopeParamShapeError" in type(e).__name__)


# A write the disk refused: full, read-only, not permitted, over a file-size or quota limit.
WRITE_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EDQUOT)
_OS_ERROR_CODE = re.compile(r"\[os_error_code='?(\d+)'?\]")   # how TensorStore's errors (under Orbax) carry it
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')
_UNFINISHED = ".orbax-checkpoint-tmp"  # Orbax writes a step here and renames it when complete


def write_failure(e: BaseException | str | None) -> str | None:
    """'cannot write <where>: <what>' (or 'cannot access', for a permission that may be a read's)
    when `e` (an exception, or one it came from, or a logged message) is a write the disk refused,
    else None. TensorStore's errors arrive through Orbax as ValueError text with the OS error code;
    a checkpoint's temporary files are named by their checkpoint."""
    seen = []
    while e is not None and not any(e is s for s in seen):
        seen.append(e)
        code, where = (e.errno, e.filename) if isinstance(e, OSError) else (None, None)
        if code is None:
            match = _OS_ERROR_CODE.search(str(e))
            paths = _QUOTED_PATH.findall(str(e))
            code, where = (int(match.group(1)) if match else None), (paths[-1] if paths else None)
        if code in WRITE_ERRORS:
            what = "cannot access" if code in (errno.EACCES, errno.EPERM) else "cannot write"
            where = str(where).split(_UNFINISHED)[0] if where else "a file"
            return f"{what} {where}: {os.strerror(code)}"
        e = None if isinstance(e, str) else (e.__cause__ or e.__context__)
    return None


class _OrbaxWriteFailures(logging.Filter):
    """Orbax logs a failed save from each of its threads (absl ERROR lines with tracebacks); the
    run reports it once, in one line (scaling.train): drop those records, pass every other."""

    def filter(self, record: logging.LogRecord) -> bool:
        if f"{os.sep}orbax{os.sep}" not in record.pathname:
            return True
        return write_failure(record.exc_info[1] if record.exc_info else None) is None and \
            write_failure(record.getMessage()) is None


@contextlib.contextmanager
def _naming(path: Path):
    """An OSError that names no file (Orbax's own metadata writes) names the checkpoint `path`."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def discard_unfinished(run_dir: str | Path) -> None:
    """Remove the temporary folders of checkpoints that failed to write (never a complete one):
    on a full disk that frees the space status.json needs."""
    for unfinished in (Path(run_dir) / "checkpoints").glob(f"*/*{_UNFINISHED}*"):
        shutil.rmtree(unfinished, ignore_errors=True)


class RunCheckpoints:
    """One Orbax CheckpointManager per line of training (trunk, each branch) in a run folder."""

    def __init__(self, run_dir: str | Path, keep: int = 3, asynchronous: bool = True):
        self.root = Path(run_dir).resolve() / "checkpoints"
        self.keep = keep
        self.asynchronous = asynchronous
        self._managers: dict[str, ocp.CheckpointManager] = {}
        absl_log = logging.getLogger("absl")
        if not any(isinstance(f, _OrbaxWriteFailures) for f in absl_log.filters):
            absl_log.addFilter(_OrbaxWriteFailures())
        _quiet_closed_loop_callbacks()  # a failed save, like a failed restore, closes its loop early

    def manager(self, name: str) -> ocp.CheckpointManager:
        if name not in self._managers:
            options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                                   enable_async_checkpointing=self.asynchronous)
            self._managers[name] = ocp.CheckpointManager(self.root / name, options=options, item_names=ITEMS)
        return self._managers[name]

    def has_checkpoint(self, name: str) -> bool:
        return (self.root / name).is_dir() and bool(self.manager(name).all_steps())

    def save(self, name: str, step: int, params, opt_state, meta: dict) -> None:
        """Start an asynchronous save; the arrays are copied off the device before it returns."""
        with _naming(self.root / name / str(step)):
            self.manager(name).save(step, args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state),
                meta=ocp.args.JsonSave(meta)), force=True)

    def restore_latest(self, name: str, abstract_params, abstract_opt_state) -> tuple[Any, Any, dict] | None:
        """(params, opt_state, meta) of the newest step that restores cleanly, or None if none does.

        The abstract trees (jax.ShapeDtypeStruct leaves with shardings) place the arrays on the
        mesh directly.
        """
        if not (self.root / name).is_dir():
            return None
        manager = self.manager(name)
        manager.wait_until_finished()
        _quiet_closed_loop_callbacks()  # before: a failing read may leave its reports while Orbax unwinds
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                restored = manager.restore(step, args=ocp.args.Composite(
                    params=ocp.args.StandardRestore(abstract_params),
                    opt_state=ocp.args.StandardRestore(abstract_opt_state),
                    meta=ocp.args.JsonRestore()))
                meta = restored["meta"]
                if meta.get("step") != step:
                    raise ValueError(f"meta says step {meta.get('step')}")
                return restored["params"], restored["opt_state"], meta
            except Exception as e:  # any failure to read this step means: fall back to the previous one
                if _shape_mismatch(e):
                    # another model's checkpoint is not a corrupt one: falling back would train over it
                    raise PlacedConfigError(f"checkpoint {self.root / name}/{step} holds arrays of other shapes "
                                            f"than this model's: the folder is a run of another model; not "
                                            f"training over it ({str(e).splitlines()[0][:200]})") from None
                log.warning("checkpoint %s/%d is unreadable (%s: %s); falling back to the previous one",
                            self.root / name, step, type(e).__name__, str(e).splitlines()[0][:200])
        return None

    def wait(self) -> None:
        for name, manager in self._managers.items():
            with _naming(self.root / name):
                manager.wait_until_finished()

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
        self._managers.clear()

    def mark_finished(self, branch: str, step: int, tokens: int) -> None:
        """Record a finished branch, once its final checkpoint is safely on disk."""
        with _naming(self.root / branch):
            self.manager(branch).wait_until_finished()
        records = [r for r in finished_branches(self.root.parent) if r["branch"] != branch]
        records.append({"branch": branch, "step": int(step), "tokens": int(tokens)})
        if jax.process_index() == 0:
            write_json_atomic(self.root / "branches.json", records)


def finished_branches(run_dir: str | Path) -> list[dict]:
    """The finished cooldown branches (or cosine run) of a run: [{"branch", "step", "tokens"}]."""
    path = Path(run_dir) / "checkpoints" / "branches.json"
    return json.loads(path.read_text()) if path.is_file() else []


def restore_params(run_dir: str | Path, branch: str | None = None) -> tuple[ModelConfig, Any]:
    """The ModelConfig and plain float32 parameters of a finished branch.

    branch=None: the last finished branch, or the newest trunk checkpoint if none has finished.
    """
    run_dir = Path(run_dir)
    config = read_model_config(run_dir)
    finished = finished_branches(run_dir)
    if branch is None:
        name, step = (finished[-1]["branch"], finished[-1]["step"]) if finished else (TRUNK, None)
    else:
        matches = [r for r in finished if r["branch"] == branch]
        if not matches:
            raise KeyError(f"{run_dir}: branch {branch!r} is not finished; finished: "
                           f"{[r['branch'] for r in finished]}")
        name, step = branch, matches[0]["step"]
    directory = run_dir / "checkpoints" / name
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no checkpoints")
    with ocp.CheckpointManager(directory, item_names=ITEMS,
                               options=ocp.CheckpointManagerOptions(create=False)) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{directory}: no checkpoints")
        restored = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))
    return config, jax.tree.map(lambda x: jax.numpy.asarray(x, jax.numpy.float32), restored["params"])
