"""Atomic file writes, for both packages: readers (a sweep's status, a browser, another worker)
never see half a file. Imports nothing heavy, so the sweep's light modules may use it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a uniquely named temporary file beside `path`, flush it to disk, then rename it
    over `path`. The file is readable by everyone (0644), as a plain open() would make it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a full disk names no file: the message names the one being written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj, **dumps_options) -> Path:
    """JSON (indent 1 unless dumps_options say otherwise) plus a final newline, atomically."""
    return write_text_atomic(path, json.dumps(obj, **{"indent": 1, **dumps_options}) + "\n")


def unwritable(path: str | os.PathLike, flag: str) -> str | None:
    """What stops `path` from being written (a folder of that name, a file where a folder must be,
    a read-only or full place), or None: asked before the work, so a report or a fit is not
    computed only to be lost. A file is created and removed beside it to find out."""
    path = Path(path)
    if path.is_dir():
        return f"{flag} {path}: is a folder; give a file path such as {path / 'out'}"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{flag} {path}: {folder} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        return f"{flag} {path}: cannot write in {folder} ({e.strerror})"
    return None
