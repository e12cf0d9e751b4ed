"""`scaling status <sweep_dir>`: where every run of a sweep stands, read from its folder.

States: pending (never started), running (a live claim holds it), crashed (its driver or worker
died; the next `scaling sweep` resumes it), interrupted (stopped on request; resumes too),
done, failed (with the reason; rerun with --retry_failed).
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

from scaling.configuration import ConfigError
from scaling.sweep import claims, store


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _last_json_line(path: Path, tail_bytes: int = 8192) -> dict | None:
    """The last complete JSON line of a growing jsonl file, reading only its tail."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def run_state(run_dir: Path) -> dict:
    """One run's state, progress, latest loss and throughput, from its folder."""
    job = store.read_job(run_dir)
    state = job["state"]
    _, claim = claims.current(run_dir)
    if state in ("running", "pending") and claims.is_live(claim):
        state = "running"
    elif state == "running":
        state = "crashed"
    trained = store.read_json(run_dir / "status.json", default={}) or {}
    last = _last_json_line(run_dir / "log.jsonl") or {}
    total = trained.get("total_tokens") or 0
    tokens = trained.get("tokens") or last.get("tokens") or 0  # a failed status may not carry them
    progress = min(1.0, tokens / total) if total else 0.0
    return {"run": run_dir.name, "state": state, "phase": job.get("phase", "") if state != "done" else "",
            "progress": progress, "tokens": tokens, "total_tokens": total,
            "loss": last.get("loss"), "tokens_per_s": last.get("tokens_per_s"),
            "attempts": job.get("attempts", 0), "reason": job.get("reason", ""),
            "owner": claims.describe_owner(claim) if state == "running" else ""}


def sweep_states(sweep_dir: Path) -> list[dict]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir}: no such sweep folder")
    runs = store.existing_runs(sweep_dir)
    if not runs:
        raise ConfigError(f"{sweep_dir}: no planned runs here (run.json files); is this a sweep folder?")
    return [run_state(sweep_dir / name) for name in runs]


def configure_status(parser):
    parser.add_argument("sweep_dir", help="the sweep folder (e.g. sweeps/smoke)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")


def run_status(args) -> int:
    states = sweep_states(Path(args.sweep_dir))
    if args.json:
        for s in states:
            print(json.dumps(s))
        return 0
    rows = []
    for s in states:
        rows.append([s["run"], s["state"], s["phase"], f"{100 * s['progress']:.0f}%",
                     "" if s["loss"] is None else f"{s['loss']:.4f}",
                     "" if s["tokens_per_s"] is None else f"{s['tokens_per_s']:.3g}", str(s["attempts"]),
                     s["reason"][:80] or s["owner"]])
    print(format_table(["run", "state", "phase", "progress", "loss", "tok/s", "attempts", "note"], rows))
    counts = collections.Counter(s["state"] for s in states)
    print("\n" + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0
