"""A run's data, as one object built from its config and handed to the trainer: the training
stream of this host and the evaluation set, read through the batch cache.

Why an object: everything that determines the batches (task, vocabulary, batch size, sequence
length, seed, host, cache folder) is a field, so nothing depends on what a process registered
before, and the pipelines it leaves open between phases close with it. Reading batches the
cache already holds imports neither TensorFlow nor seqio (a sweep's later runs start seconds
sooner): the pipeline (scaling/data/pipeline.py) is imported only to produce missing batches.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scaling.configuration import ConfigError
from scaling.data import batch_cache, producer, sentencepiece_vocab
from scaling.data.batches import (BATCH_KEYS, CHUNK_TOKENS, EVAL_BATCH_KEYS, EVAL_SEED, SYNTHETIC_TASKS,
                                  synthetic_teacher_flops_per_thinking_token)

# Batches the data thread reads ahead of the trainer; at the end of a phase, a cached stream is
# read on this many past the last batch handed out, plus the few the trainer's Prefetcher holds.
READ_AHEAD = 32
READ_AHEAD_TAIL = READ_AHEAD + 8


@dataclasses.dataclass(frozen=True)
class DataSource:
    """The batches of one run on one host. `batch_size` is this host's share of the batch."""

    task: str
    batch_size: int
    seq_len: int
    seed: int = 0
    vocabulary: str = "bytes"  # ModelConfig.vocabulary: what the ids mean
    vocab_size: int | None = None  # the model's; checked against the vocabulary's ids
    eval_corpus: str = "synthetic"
    host_index: int = 0
    host_count: int = 1
    cache_root: Path | None = None  # the batch cache (None: nothing stored)
    open_pipelines: batch_cache.OpenPipelines = dataclasses.field(
        default_factory=batch_cache.OpenPipelines, compare=False, repr=False)

    def __post_init__(self):
        if not 0 <= self.host_index < self.host_count:
            raise ValueError(f"host_index {self.host_index} out of range for host_count {self.host_count}")
        if self.vocab_size is not None:
            size = sentencepiece_vocab.vocabulary_size(self.vocabulary)
            if size > self.vocab_size:
                raise ConfigError(f"ModelConfig.vocab_size = {self.vocab_size} is smaller than vocabulary "
                                  f"{self.vocabulary!r}'s {size} ids; bind ModelConfig.vocab_size >= {size}")

    @classmethod
    def from_config(cls, config, host_index: int = 0, host_count: int = 1) -> DataSource:
        """The source of a TrainConfig's run on host `host_index` of `host_count`; the batch
        cache is the folder SCALING_BATCH_CACHE names (the local sweep executor sets it)."""
        model = config.model
        return cls(task=config.task, batch_size=config.batch_size // host_count, seq_len=model.seq_len,
                   seed=config.seed, vocabulary=model.vocabulary, vocab_size=model.vocab_size,
                   eval_corpus=config.eval_corpus, host_index=host_index, host_count=host_count,
                   cache_root=batch_cache.cache_root())

    def _pipeline(self):
        """The producing pipeline, its synthetic tasks speaking this source's vocabulary."""
        from scaling.data import pipeline

        pipeline.use_vocabulary(self.vocabulary, self.vocab_size)
        return pipeline

    def _request(self, kind: str, **arguments) -> dict:
        """What the producer process (scaling/data/producer.py) needs to run the pipeline on a
        built-in synthetic task (a task registered in this process, a cache's, is produced here)."""
        return {"kind": kind, "vocabulary": self.vocabulary, "vocab_size": self.vocab_size,
                "batch_size": self.batch_size, "seq_len": self.seq_len, **arguments}

    def _cache_folder(self, task: str, **identity) -> Path | None:
        """Where the batch cache keeps a stream, when caching is on and the task is a pure
        function of the code (the synthetic tasks; an augmentation cache can grow between runs)."""
        if self.cache_root is None or task not in SYNTHETIC_TASKS:
            return None
        return batch_cache.stream_folder(self.cache_root, task=task, vocabulary=self.vocabulary,
                                         batch_size=self.batch_size, seq_len=self.seq_len, **identity)

    def train_batches(self, start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Endless packed training batches of this host, deterministic for (task, seed, host):
        `start_batch=n` begins with what the (n+1)-th batch would have been."""
        if self.task not in SYNTHETIC_TASKS:  # a cache's task: named (or refused) by the pipeline now
            self._pipeline().resolve_task(self.task)

        def produce(first_batch):
            if self.task in SYNTHETIC_TASKS:   # a pure function of the code: produced beside the trainer
                return producer.produced(self._request("train", task=self.task, seed=self.seed,
                                                       first_batch=first_batch, host_index=self.host_index,
                                                       host_count=self.host_count))
            return self._pipeline().train_stream(self.task, self.batch_size, self.seq_len, self.seed, first_batch,
                                                 self.host_index, self.host_count)

        folder = self._cache_folder(self.task, kind="train", seed=self.seed, host_index=self.host_index,
                                    host_count=self.host_count, chunk_tokens=CHUNK_TOKENS)
        if folder is None:
            return _background(produce(start_batch))
        per_block = batch_cache.block_batches(self.batch_size, self.seq_len)
        return _background(batch_cache.cached_stream(folder, BATCH_KEYS, per_block, start_batch, produce,
                                                     self.open_pipelines), tail=READ_AHEAD_TAIL)

    def eval_batches(self, n_batches: int) -> list[dict[str, np.ndarray]]:
        """`n_batches` packed batches of the evaluation corpus's held-out raw documents (never
        augmented), with hard-span masks and the bytes per target token."""
        synthetic = f"{self.eval_corpus}_vanilla"
        task = synthetic if synthetic in SYNTHETIC_TASKS and not Path(self.eval_corpus).is_dir() else None

        def produce():
            if task is not None:   # the synthetic corpus: produced beside the trainer
                return list(producer.produced(self._request("eval", task=task, n_batches=n_batches)))
            pipeline = self._pipeline()
            return pipeline.eval_list(pipeline.eval_task(self.eval_corpus), self.batch_size, self.seq_len, n_batches)

        folder = self._cache_folder(task, kind="eval", seed=EVAL_SEED) if task else None
        if folder is None:
            return produce()
        return batch_cache.cached_list(folder / f"eval-{n_batches}.npz", EVAL_BATCH_KEYS, produce)

    def teacher_flops_per_thinking_token(self) -> float:
        """Teacher generation FLOPs per thinking token trained on (0 for raw tasks)."""
        if self.task in SYNTHETIC_TASKS:
            return synthetic_teacher_flops_per_thinking_token(self.task)
        return self._pipeline().teacher_flops_per_thinking_token(self.task)

    def epoch_tokens(self) -> float:
        """Raw tokens in one epoch of the training source (math.inf for the endless synthetic
        generator), for the rows' unique_tokens and epochs."""
        if self.task in SYNTHETIC_TASKS:
            return math.inf
        return self._pipeline().source_raw_tokens(self.task)

    def close(self) -> None:
        """Close the pipelines left open between phases."""
        self.open_pipelines.close()


def _background(iterator: Iterator, depth: int = READ_AHEAD, tail: int = 0) -> Iterator:
    """Run `iterator` in a thread, `depth` items ahead; stops when the consumer goes away.

    tail: when the consumer stops, the thread reads on until it has taken `tail` items past the
    last one handed out, then closes `iterator`. Over a batch cache this stores the read-ahead
    that a later run of the same length will take (its queue runs up to `depth` items ahead of
    where it stops), so that run never resumes the pipeline mid-stream only to throw it away."""
    items: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()
    handed_out = [0]

    def offer(item) -> bool:
        """Queue `item` unless the consumer has gone."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill():
        taken = 0
        try:
            for item in iterator:
                taken += 1
                if not offer(item):
                    for _ in itertools.islice(iterator, max(0, handed_out[0] + tail - taken)):
                        pass
                    return
        except BaseException as e:  # handed to the consumer
            offer(e)
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # in this thread, the only one that runs it (the batch cache stores here)
                close()
        offer(end)

    thread = threading.Thread(target=fill, daemon=True, name="data-prefetch")
    thread.start()
    try:
        while True:
            item = items.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            handed_out[0] += 1
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
