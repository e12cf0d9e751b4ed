"""Packed batches stored once and read by every run that needs the same stream.

Why: in a sweep, every model size of an arm trains on the same batch stream (same task, seed,
batch size and sequence length), and on a small model producing a batch (generating documents,
tokenizing, packing) costs as much CPU as the training step. The first run to need a stretch of
the stream stores it here; the others read it back, bit for bit what the pipeline would give.

Layout: `<root>/<stream key>/block-<n>.npz`, block n holding batches [n * B, (n + 1) * B) with
B = block_batches(batch_size, seq_len), or the first of them when the run that produced it
stopped inside the block (a later run that goes further completes it). The key hashes what determines the stream, including the
source of the data code and vocabulary files (scaling/data/), so a changed generator never reads
old batches. Blocks are written atomically (analysis/atomic.py; concurrent writers of one block write
identical batches), only ever replaced by another prefix of the same stream, and one that
cannot be read is produced again.
The root is named by SCALING_BATCH_CACHE (the local sweep executor sets it); unset, nothing is stored.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import logging
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from analysis.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

CACHE_ENV = "SCALING_BATCH_CACHE"
BLOCK_TOKENS = 1 << 17  # batch slots per block file (a few MB)
DATA_DIR = Path(__file__).resolve().parent


def cache_root() -> Path | None:
    """The cache folder named by SCALING_BATCH_CACHE, or None (no caching)."""
    value = os.environ.get(CACHE_ENV, "")
    return Path(value) if value else None


@functools.cache
def code_fingerprint() -> str:
    """A hash of the data code and vocabulary files: what generates, tokenizes and packs."""
    digest = hashlib.sha256()
    for path in sorted(DATA_DIR.iterdir()):
        if path.suffix in (".py", ".model", ".vocab") and path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stream_folder(root: Path, **identity) -> Path:
    """The folder of one stream: a readable prefix and a hash of everything that determines it."""
    text = repr(sorted(identity.items())) + code_fingerprint()
    label = "-".join(str(identity[k]) for k in ("task", "batch_size", "seq_len", "seed") if k in identity)
    return root / f"{label}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def block_batches(batch_size: int, seq_len: int) -> int:
    return max(1, BLOCK_TOKENS // (batch_size * seq_len))


def _read(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """A stored block, or None when there is none (or it cannot be read: it is then made again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log.warning("batch cache: %s unreadable (%s); producing it again", path, e)
        return None


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a reader sees the whole block or none of it."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as e:  # a full or read-only disk costs speed, never the run
        log.warning("batch cache: could not write %s (%s)", path, e)


class OpenPipelines:
    """Pipelines left open by streams that stopped, by stream folder: (the batch they produce
    next, the pipeline). A trainer opens a new stream at every phase (trunk stretch, cooldown
    branch), each starting where the stored batches end; resuming a pipeline in the middle of a
    chunk regenerates the chunk up to that point, so the next stream of the same folder continues
    the open one instead. Owned by a run's data source (scaling/data/source.py), closed with it."""

    def __init__(self):
        self._left: dict[Path, tuple[int, Iterator]] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)  # a tf.data iterator finalised at interpreter shutdown can hang the exit

    def source_at(self, folder: Path, first: int, produce: Callable[[int], Iterator]) -> Iterator:
        """A pipeline whose next batch is batch `first`: the one a stopped stream left at
        `first`, or a new one."""
        with self._lock:
            left = self._left.pop(folder, None)
        if left is not None:
            at, source = left
            if at == first:
                return source
            source.close()
        return produce(first)

    def leave_open(self, folder: Path, at: int, source: Iterator) -> None:
        with self._lock:
            previous = self._left.pop(folder, None)
            self._left[folder] = (at, source)
        if previous is not None:
            previous[1].close()

    def close(self) -> None:
        with self._lock:
            left = list(self._left.values())
            self._left.clear()
        for _, source in left:
            source.close()


def cached_stream(folder: Path, keys: tuple[str, ...], per_block: int, start_batch: int,
                  produce: Callable[[int], Iterator[dict[str, np.ndarray]]],
                  open_pipelines: OpenPipelines) -> Iterator[dict[str, np.ndarray]]:
    """Batches start_batch, start_batch + 1, ... of a deterministic stream: stored batches are
    read, missing ones are taken from `produce(first_batch)` (the pipeline from that batch on) and
    stored. A block is stored as soon as it is complete; when the reader stops in the middle of
    one, the part it produced is stored too (closing the generator does that), so the next run of
    the same length reads its whole stream instead of resuming the pipeline mid-chunk, and the
    pipeline is left in `open_pipelines` for the next stream of `folder` to continue."""
    n = start_batch
    source, source_at = None, None
    try:
        while True:
            block, offset = divmod(n, per_block)
            path = folder / f"block-{block:07d}.npz"
            stored = _read(path, keys) or {k: np.zeros((0,)) for k in keys}
            have = len(stored[keys[0]])
            for i in range(offset, have):
                yield {k: stored[k][i] for k in keys}
            if have < per_block:
                first = block * per_block + have
                if source is None or source_at != first:
                    if source is not None:
                        source.close()
                    source, source_at = open_pipelines.source_at(folder, first, produce), first
                fresh = []
                try:
                    for i in range(have, per_block):
                        fresh.append(next(source))
                        source_at = first + len(fresh)
                        if i == per_block - 1:  # stored before its last batch is handed on
                            _write(path, _merged(stored, fresh, keys))
                        if i >= offset:
                            yield fresh[-1]
                finally:
                    if fresh and have + len(fresh) < per_block:
                        _write(path, _merged(stored, fresh, keys))
            n = (block + 1) * per_block
    except GeneratorExit:  # stopped by its reader: the pipeline stays usable
        if source is not None:
            open_pipelines.leave_open(folder, source_at, source)
            source = None
        raise
    finally:
        if source is not None:
            source.close()


def _merged(stored: dict[str, np.ndarray], fresh: list[dict[str, np.ndarray]], keys) -> dict[str, np.ndarray]:
    """A block's stored batches followed by the ones just produced (in the produced dtypes)."""
    produced = _stacked(fresh, keys)
    if not len(stored[keys[0]]):
        return produced
    return {k: np.concatenate([stored[k], produced[k]]) for k in keys}


def _stacked(batches: list[dict[str, np.ndarray]], keys) -> dict[str, np.ndarray]:
    return {k: np.stack([b[k] for b in batches]) for k in keys}


def cached_list(path: Path, keys: tuple[str, ...], produce: Callable[[], list[dict[str, np.ndarray]]]
                ) -> list[dict[str, np.ndarray]]:
    """A fixed list of batches (the evaluation set), stored as one file."""
    stored = _read(path, keys)
    if stored is not None:
        return [{k: stored[k][i] for k in keys} for i in range(len(stored[keys[0]]))]
    batches = produce()
    if batches:
        _write(path, _stacked(batches, keys))
    return batches
