"""A progress bar over a whole sweep, read from its run folders: `scaling sweep` and `scaling demo`
show it while the runs train (each run's own output goes to its run.log)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from scaling.sweep import status, store


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class SweepProgress:
    """A progress bar over the whole sweep, read from the run folders every `interval` seconds:
    each run counts its training tokens and its finished inference phases. Redrawn in place on a
    terminal, one line every `line_every` seconds otherwise (logs, CI)."""

    def __init__(self, sweep_dir: Path, interval: float = 2.0, line_every: float = 30.0, stream=sys.stderr):
        self.sweep_dir, self.interval, self.line_every, self.stream = Path(sweep_dir), interval, line_every, stream
        self.tty = stream.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep progress", daemon=True)
        self.started = time.monotonic()

    def fraction(self) -> tuple[float, int, int]:
        """(share of the sweep's work done, runs done, runs in all)."""

        names = store.existing_runs(self.sweep_dir)  # none until `scaling sweep` has planned them
        shares, done = [], 0
        for name in names:
            run_dir = self.sweep_dir / name
            job = store.read_job(run_dir)
            if job["state"] == "done":
                shares.append(1.0)
                done += 1
                continue
            plan = store.load_plan(run_dir)
            branches = set(plan.point["infer_branches"]) if plan.infer_config else set()
            metrics = store.read_json(run_dir / "inference_metrics.json", default=[])
            infer_done = len(branches & {entry["branch"] for entry in metrics})
            shares.append((status.run_state(run_dir)["progress"] + infer_done) / (1 + len(branches)))
        return (sum(shares) / len(shares) if shares else 0.0), done, len(names)

    def line(self) -> str:
        share, done, total = self.fraction()
        if not total:
            return f"planning the sweep  elapsed {minutes(time.monotonic() - self.started)}"
        width = 30
        filled = int(round(share * width))
        return (f"[{'#' * filled}{'.' * (width - filled)}] {share:6.1%}  runs done {done}/{total}  "
                f"elapsed {minutes(time.monotonic() - self.started)}")

    def _loop(self):
        last_line = 0.0
        while not self._stop.wait(self.interval):
            try:
                text = self.line()
            except (OSError, ValueError, KeyError):  # a run folder mid-write: draw next time
                continue
            if self.tty:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
            elif time.monotonic() - last_line >= self.line_every:
                self.stream.write(text + "\n")
                self.stream.flush()
                last_line = time.monotonic()

    def clear(self) -> None:
        """Take the bar off a terminal's line before something else prints there (the next
        redraw brings it back)."""
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(self.line() + "\n")
        self.stream.flush()
