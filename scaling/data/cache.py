"""Append-only sharded JSONL cache of teacher thinking, keyed by
(document hash, teacher id, prompt-and-sampling hash).

Layout: `<dir>/shard-<start time>-<pid>-<n>.jsonl`. A writer opens new shards only (old ones are
never modified), writes one JSON line per record and flushes + fsyncs it, so a kill -9 loses at
most the requests in flight; a torn last line is skipped on read. One writer at a time (an flock
on `<dir>/.lock`), and it loads the keys already present first, so no key is ever written twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from analysis.appended import CorruptLine, read_jsonl
from scaling.configuration import ConfigError

RECORDS_PER_SHARD = 10_000


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(doc_hash: str, teacher_id: str, config_hash: str) -> str:
    return hashlib.sha256(f"{doc_hash}|{teacher_id}|{config_hash}".encode()).hexdigest()[:32]


def read_records(cache_dir: str | Path) -> Iterator[dict]:
    """Every complete record of every shard, in shard then line order."""
    for shard in sorted(Path(cache_dir).glob("shard-*.jsonl")):
        try:
            lines = list(read_jsonl(shard))
        except CorruptLine as e:
            raise ConfigError(f"corrupt cache record: {e}") from None
        for number, record in lines:
            if not isinstance(record.get("key"), str):
                raise ConfigError(f"{shard}:{number}: a cache record without its 'key'; this file was not written "
                                  f"by `scaling augment` (move it out of the cache folder)")
            yield record


class CacheWriter:
    """Appends records; `key in writer` tells whether a document is already done."""

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(f"{self.dir}: another `scaling augment` is writing this cache") from None
        self.keys = {r["key"] for r in read_records(self.dir)}
        self._stem = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self._shard_index = 0
        self._in_shard = 0
        self._file = None

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def _open_next(self):
        if self._file:
            self._file.close()
        path = self.dir / f"{self._stem}-{self._shard_index:04d}.jsonl"
        self._shard_index += 1
        self._in_shard = 0
        self._file = open(path, "ab")

    def append(self, record: dict) -> bool:
        """Write a record durably; False (and nothing written) if its key is already present."""
        if record["key"] in self.keys:
            return False
        if self._file is None or self._in_shard >= RECORDS_PER_SHARD:
            self._open_next()
        self._file.write(json.dumps(record, sort_keys=True).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._in_shard += 1
        self.keys.add(record["key"])
        return True

    def close(self):
        if self._file:
            self._file.close()
            self._file = None
        if self._lock:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
