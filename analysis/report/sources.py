"""Where the report's data comes from: table discovery, provenance, and the sweep support a
caller that knows sweep folders (scaling) may give.

analysis does not know sweep folders (run folders, their configs and states); `scaling report`
passes a `SweepSupport` (scaling.sweep.report_support) that collects a sweep folder into tables,
counts its runs' states and knows the true floor of its corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Protocol

import pandas as pd

from analysis.schema import TABLE_NAMES

TABLE_SUFFIXES = (".parquet", ".csv")


class SweepSupport(Protocol):
    def collect(self, sweep_dir: Path, out_dir: Path) -> None:
        """Write the sweep's training.parquet and inference.parquet into out_dir."""

    def is_sweep(self, path: Path) -> bool:
        """Whether `path` is a sweep folder (run folders) that collect() can read."""

    def run_states(self, path: Path) -> dict[str, int]:
        """How many runs are finished, running, failed or not started (empty if not a sweep)."""

    def true_floor(self, path: Path, training: pd.DataFrame) -> dict | None:
        """The corpus's true irreducible loss (as `scaling describe --corpus=...` prints it), if known."""


@dataclasses.dataclass
class Source:
    path: Path
    role: str
    sha256: str
    rows: int
    columns: int


def find_tables(path: Path, scratch: Path | None = None, sweep: SweepSupport | None = None) -> dict[str, Path]:
    """training/inference tables in a results dir (or its results/ folder), or one table file.

    A sweep folder (run folders, no tables yet) is collected first into `scratch` by `sweep`
    (`scaling collect`'s own code), so the report reads exactly what `collect` would write.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix not in TABLE_SUFFIXES:
            raise ValueError(f"{path}: a table must be .parquet or .csv")
        return {"training": path}
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or directory")
    for folder in (path, path / "results"):
        found = {name: folder / f"{name}{suffix}" for name in TABLE_NAMES for suffix in TABLE_SUFFIXES
                 if (folder / f"{name}{suffix}").is_file()}
        if "training" in found:
            return found
    if scratch is not None and sweep is not None and sweep.is_sweep(path):
        sweep.collect(path, scratch)
        return {name: scratch / f"{name}.parquet" for name in TABLE_NAMES}
    raise ValueError(f"{path}: no training.parquet (or training.csv) here or in {path / 'results'}; "
                     f"run `scaling collect` first, or give a table file")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stem(name: str) -> str:
    """A law's or figure's file name without suffix: 'approach 2 (IsoFLOP)' -> 'approach_2_isoflop'."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())
