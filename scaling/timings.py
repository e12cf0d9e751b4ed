"""Where a process's wall time went: start-up before its first compiled step, then the seconds
spent in compiled training and decoding steps. One JSON line per process is appended to the run
folder's timings.jsonl, which benchmarks/sweep.py and `scaling status` read.

Start-up counts from the moment the sweep's runner launched the process (SCALING_LAUNCHED_AT,
so the interpreter and imports are included) or, for a process started by hand, from the import
of this module; it ends when the first compiled step (training or decoding, compilation
included) has returned.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from analysis.appended import append_jsonl

LAUNCHED_AT_ENV = "SCALING_LAUNCHED_AT"
LAYOUT_ENV = "SCALING_WORKER_LAYOUT"  # "<workers>x<threads>", set by the local executor
FILE = "timings.jsonl"

_IMPORTED_AT = time.time()


class ProcessTimings:
    """Accumulates this process's step seconds; `first_step_done` marks the end of start-up."""

    def __init__(self):
        self.started = float(os.environ.get(LAUNCHED_AT_ENV, _IMPORTED_AT))
        self.first_step_at: float | None = None
        self.train_step_s = 0.0
        self.decode_s = 0.0

    def first_step_done(self) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    @property
    def startup_s(self) -> float:
        return (self.first_step_at or time.time()) - self.started

    def record(self, run_dir: str | Path, command: str) -> dict:
        """Append this process's line to <run_dir>/timings.jsonl (one short write)."""
        layout = os.environ.get(LAYOUT_ENV, "")
        workers, _, threads = layout.partition("x")
        row = {"command": command, "pid": os.getpid(), "wall_s": time.time() - self.started,
               "startup_s": self.startup_s, "train_step_s": self.train_step_s, "decode_s": self.decode_s}
        if workers and threads:
            row.update(workers=int(workers), threads=int(threads))
        path = Path(run_dir) / FILE
        if path.parent.is_dir():
            append_jsonl(path, row)
        return row


PROCESS = ProcessTimings()
