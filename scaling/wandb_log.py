"""Optional Weights & Biases logging beside TensorBoard, as Marin, Levanter and OLMo-core log.

`train.wandb = 'offline'` writes a W&B run into `<run_dir>/wandb/` with no network (upload it
later with `wandb sync <run_dir>/wandb/offline-run-*`); 'online' logs to the W&B server
(`wandb login` first); 'off' (default) logs nothing. The package is an optional extra:
`pip install 'scaling[wandb]'`. The W&B run's id is derived from the run folder, so a resumed run
continues its W&B run. Steps go back where a cooldown branch forks from the trunk, so every
metric is plotted against a logged `step` rather than W&B's own counter, which only increases.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from scaling.configuration import ConfigError

MODES = ("off", "offline", "online")


def check(mode: str) -> None:
    """Name the binding when the mode is unknown or the package is missing (before any compute)."""
    if mode not in MODES:
        raise ConfigError(f"train.wandb: one of {MODES}, got {mode!r}")
    if mode != "off" and importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"train.wandb = {mode!r}: the wandb package is not installed "
                          "(pip install 'scaling[wandb]', or bind train.wandb = 'off')")


class WandbLog:
    """One W&B run for one run folder."""

    def __init__(self, run_dir: Path, mode: str, project: str, config: dict):
        import wandb  # optional: imported only when asked for

        run_id = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(project=project, name=Path(run_dir).name, id=run_id, resume="allow", mode=mode,
                              dir=str(run_dir), config=config, settings=wandb.Settings(console="off"))
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, prefix: str, values: dict, step: int) -> None:
        self.run.log({**{f"{prefix}/{k}": float(v) for k, v in values.items()}, "step": int(step)})

    def close(self) -> None:
        self.run.finish()
