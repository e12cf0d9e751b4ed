"""Batches counted on the host and placed on the mesh ahead of the step, in a background thread."""

from __future__ import annotations

import queue
import threading

import numpy as np

from scaling import partitioning
from scaling.step import STEP_KEYS


def batch_counts(local_batch: dict) -> np.ndarray:
    """[tokens, tokens_raw, tokens_thinking] of this host's slice of a batch."""
    return np.array([local_batch["loss_weights"].sum(), local_batch["raw_mask"].sum(),
                     local_batch["thinking_mask"].sum()], np.float64)


class Prefetcher:
    """Reads the batch stream and places batches on the mesh ahead of the step that needs them,
    so data preparation overlaps with the (asynchronously dispatched) computation."""

    def __init__(self, batches, mesh, depth: int = 2):
        self._batches = batches
        self._mesh = mesh
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self):
        try:
            for local in self._batches:
                item = (batch_counts(local),
                        partitioning.global_batch({k: local[k] for k in STEP_KEYS}, self._mesh))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except Exception as e:  # surfaced to the training loop on its next read
            self._queue.put(e)

    def next(self):
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        """Stop reading, then close the batch stream (which lets the batch cache store what was
        produced) once the reading thread is out of it."""
        self._stop.set()
        self._thread.join(timeout=5)
        close = getattr(self._batches, "close", None)
        if close is not None and not self._thread.is_alive():
            close()
