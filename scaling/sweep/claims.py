"""Claims: which process may execute a run, so concurrent drivers never run a run twice.

A run's claims are numbered files `<run_dir>/claims/<generation>.json`. The highest generation
is the current claim. To claim, a process creates the next generation with O_CREAT|O_EXCL,
which exactly one contender wins (atomic on local file systems and NFSv3+), and only when the
current claim is released or stale. The owner rewrites its file (atomically) with a heartbeat;
a claim is stale when its heartbeat is older than `stale_after`, or at once when its owner
process is on this host and gone. An owner that finds a higher generation has lost its claim
and must stop.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from analysis.atomic import write_json_atomic

HEARTBEAT_S = float(os.environ.get("SCALING_CLAIM_HEARTBEAT_S", "5"))
STALE_AFTER_S = float(os.environ.get("SCALING_CLAIM_STALE_S", "60"))
_WIDTH = 6


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart); None if gone.
    A zombie counts as gone: in a container whose init never reaps orphans, a killed driver's
    children stay zombies forever, and kill(pid, 0) still succeeds on them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None if not _signal_reaches(pid) else ""
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _signal_reaches(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    return _process_start(pid) is not None


def _generations(claims_dir: Path) -> list[int]:
    out = []
    for path in claims_dir.glob("*.json"):
        if path.stem.isdigit():
            out.append(int(path.stem))
    return sorted(out)


def describe_owner(claim: dict | None) -> str:
    if not claim:
        return "nobody"
    return f"{claim.get('owner', '?')} (pid {claim.get('pid')} on {claim.get('host')})"


def current(run_dir: Path) -> tuple[int, dict | None]:
    """The current (highest) claim generation and its content ({} while being written)."""
    claims_dir = Path(run_dir) / "claims"
    gens = _generations(claims_dir) if claims_dir.is_dir() else []
    if not gens:
        return 0, None
    path = claims_dir / f"{gens[-1]:0{_WIDTH}d}.json"
    try:
        return gens[-1], json.loads(path.read_text())
    except FileNotFoundError:
        return current(run_dir)
    except json.JSONDecodeError:  # created, content not yet written: live while fresh
        try:
            return gens[-1], {"heartbeat": path.stat().st_mtime}
        except FileNotFoundError:
            return current(run_dir)


def is_live(claim: dict | None, stale_after: float = STALE_AFTER_S) -> bool:
    """Held by a process that is (as far as we can tell) still running it."""
    if not claim or claim.get("released"):
        return False
    if time.time() - float(claim.get("heartbeat", 0)) > stale_after:
        return False
    if claim.get("host") == socket.gethostname() and claim.get("pid") is not None:
        started = _process_start(int(claim["pid"]))
        if started is None or (started and claim.get("pid_start") and started != claim["pid_start"]):
            return False
    return True


class Claim:
    """A held claim on one run. Use `Claim.acquire`; keep it alive with `start_heartbeat`."""

    def __init__(self, run_dir: Path, generation: int, owner: str):
        self.run_dir = Path(run_dir)
        self.generation = generation
        self.owner = owner
        self.path = self.run_dir / "claims" / f"{generation:0{_WIDTH}d}.json"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, run_dir: Path, owner: str | None = None, stale_after: float = STALE_AFTER_S) -> "Claim | None":
        """Claim the run, or None when another live process holds it (or won the race)."""
        claims_dir = Path(run_dir) / "claims"
        claims_dir.mkdir(parents=True, exist_ok=True)
        generation, claim = current(run_dir)
        if is_live(claim, stale_after):
            return None
        owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        held = cls(run_dir, generation + 1, owner)
        try:
            fd = os.open(held.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "w") as f:
            json.dump(held._content(), f)
            f.flush()
            os.fsync(f.fileno())
        for old in _generations(claims_dir):
            if old < generation:
                (claims_dir / f"{old:0{_WIDTH}d}.json").unlink(missing_ok=True)
        return held

    def _content(self, released: bool = False) -> dict:
        pid = os.getpid()
        return {"owner": self.owner, "pid": pid, "pid_start": _process_start(pid), "host": socket.gethostname(),
                "heartbeat": time.time(), "released": released, "generation": self.generation}

    def still_held(self) -> bool:
        generation, _ = current(self.run_dir)
        return generation == self.generation

    def beat(self) -> bool:
        """Refresh the heartbeat; False (and `lost` set) when a newer claim has taken over."""
        if not self.still_held():
            self.lost.set()
            return False
        write_json_atomic(self.path, self._content(), sort_keys=True)
        return True

    def start_heartbeat(self, interval: float = HEARTBEAT_S) -> None:
        def loop():
            while not self._stop.wait(interval):
                if not self.beat():
                    return

        self._thread = threading.Thread(target=loop, name=f"heartbeat {self.run_dir.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.still_held():
            write_json_atomic(self.path, self._content(released=True), sort_keys=True)
