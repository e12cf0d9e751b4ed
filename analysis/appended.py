"""Append-only JSON-lines files (a run's log.jsonl and training_rows.jsonl, timings.jsonl, the
teacher cache's shards, inference rows): the one reader and the one appender, for both packages.

A kill or a full disk during an append leaves an incomplete last line. That line is a write that
never finished, so the reader skips it; a bad line anywhere else is damage, and the error names
the file and line. The appender first cuts a torn last line off (the reader would skip it anyway;
each of these files has one writer), so the next record is not glued onto it. Imports nothing heavy, so the sweep's light modules may use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator


class CorruptLine(ValueError):
    """A line that is not JSON and is not the file's last: '<file>:<line>: ...'."""


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every complete line; a torn last line is skipped, any other
    line that is not a JSON object raises CorruptLine naming the file and line."""
    path = Path(path)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            if number == len(lines):  # no newline after it: the write a kill or a full disk interrupted
                continue
            raise CorruptLine(f"{path}:{number}: not a JSON line ({e}), and not the last line (a torn "
                              f"last line is skipped; this one is damage)") from None
        if not isinstance(record, dict):
            raise CorruptLine(f"{path}:{number}: a JSON {type(record).__name__}, not an object")
        yield number, record


def read_records(path: str | os.PathLike) -> list[dict]:
    """read_jsonl's records without line numbers; a missing file has none."""
    return [record for _, record in read_jsonl(path)] if Path(path).is_file() else []


def append_jsonl(path: str | os.PathLike, records: list[dict] | dict) -> None:
    """Append records, one a line, in one write, after cutting off a torn last line."""
    records = [records] if isinstance(records, dict) else records
    data = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
    try:
        with open(path, "ab+") as f:
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.truncate(_last_line_start(f, end))
            f.write(data)
    except OSError as e:
        if e.filename is None:  # a full disk names no file: the message names the one being written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def _last_line_start(f, end: int, chunk: int = 65536) -> int:
    """The offset just after the last newline before `end` (0 when there is none)."""
    position = end
    while position > 0:
        start = max(0, position - chunk)
        f.seek(start)
        cut = f.read(position - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        position = start
    return 0
