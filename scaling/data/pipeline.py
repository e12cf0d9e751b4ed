"""seqio Tasks and Mixtures for each corpus, and the batches the trainer reads.

Tasks (each name is also the data of an arm; docs/data.md has the mapping):
- `synthetic_vanilla`: raw synthetic documents; `synthetic_thinking`: the same documents with
  the programmatic teacher's thinking appended (TPT); `synthetic_thinking_before_hard`: thinking
  inserted before each hard span; mixture `synthetic_mix`: vanilla and thinking at equal rates.
- `register_cache_tasks(cache_dir)`: `<name>_vanilla`, `<name>_thinking` and `<name>_mix` from an
  augmentation cache (`scaling augment`).
Split "train" is the training stream; "validation" holds the held-out raw documents (hash split).

Packing is seqio's DecoderFeatureConverter. Token flags (thinking, hard span) travel through it
as high bits of the ids (formats.THINKING_BIT, HARD_BIT) and become masks afterwards.

Resumption without replay: the batch stream is cut into chunks of CHUNK_TOKENS tokens; chunk c
is packed from its own document stream, seeded by (seed, host, c), so batch n is found by
starting at chunk n // chunk_batches and skipping at most chunk_batches - 1 batches in it.
The whole stream is one tf.data pipeline (built once, chunks by flat_map). A run reads its
batches through a DataSource (scaling/data/source.py), which keeps them in the batch cache and
imports this module only to produce batches the cache lacks.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import seqio
import tensorflow as tf

from scaling.configuration import ConfigError
from scaling.data import cache as cache_lib
from scaling.data import corpus, formats, vocabulary
from scaling.data.batches import CHUNK_TOKENS, EVAL_SEED, SYNTHETIC_TASKS, synthetic_teacher_flops_per_thinking_token
from scaling.data.teachers import ProgrammaticTeacher

_FEATURE_CONVERTER = seqio.DecoderFeatureConverter(pack=True)
_TEACHER_FLOPS: dict[str, Callable[[], float]] = {}
_SOURCE_TOKENS: dict[str, Callable[[], float]] = {}  # task -> raw tokens of one epoch
_CACHE_TASKS: dict[str, list[str]] = {}  # resolved cache folder -> its registered task names
_programmatic = ProgrammaticTeacher()


def train_stream_seed(seed: int, chunk: int, host_index: int = 0, host_count: int = 1) -> int:
    """The document-stream seed of a chunk (corpus.documents("train", it) for synthetic tasks)."""
    host = int.from_bytes(hashlib.sha256(repr((seed, host_index, host_count)).encode()).digest()[:4], "big") >> 1
    return (host << 31) + chunk


def split_to_length(dataset: tf.data.Dataset, sequence_length, output_features) -> tf.data.Dataset:
    """Cut long examples into pieces that fit seq_len with their eos (nothing is thrown away)."""
    piece = sequence_length["targets"] - 1

    def pieces(example):
        targets = example["targets"]
        n = tf.size(targets, out_type=tf.int64)
        bounds = tf.concat([tf.range(0, n, piece, dtype=tf.int64), [n]], 0)
        return tf.data.Dataset.range(tf.size(bounds, out_type=tf.int64) - 1).map(
            lambda i: {"targets": targets[bounds[i]:bounds[i + 1]]})

    return dataset.flat_map(pieces)


PACKING_WINDOW = 64  # examples reordered together so that seqio's sequential packer fills rows


def _first_fit_decreasing(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """An order of the examples that lists them bin by bin (first-fit decreasing), the bins in
    an order shuffled by the window's own lengths (so that batches do not sort by length)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    shuffled = np.random.default_rng([int(n) for n in lengths]).permutation(len(bins))
    return np.asarray([i for b in shuffled for i in bins[b]], np.int64)


def order_for_packing(dataset: tf.data.Dataset, sequence_length, output_features) -> tf.data.Dataset:
    """Reorder each window of examples bin by bin, so that the DecoderFeatureConverter's
    sequential packing (a row closes when the next example does not fit) leaves little padding.
    Deterministic; the eos appended later is counted in each length."""
    capacity = sequence_length["targets"]

    def reorder(window):
        targets = window["targets"]
        lengths = tf.math.count_nonzero(targets, axis=1, dtype=tf.int64)
        order = tf.numpy_function(lambda n: _first_fit_decreasing(n + 1, capacity), [lengths], tf.int64)
        return tf.data.Dataset.from_tensor_slices(order).map(
            lambda i: {"targets": targets[i, :lengths[i]]})

    return dataset.padded_batch(PACKING_WINDOW, padded_shapes={"targets": [None]}).flat_map(reorder)


def _generator_dataset(examples: Callable[[int], Iterator[np.ndarray]], split: str, seed) -> tf.data.Dataset:
    """The examples of a stream seed; `seed` may be a tensor (the chunk's, inside tf.data)."""
    seed = tf.constant(EVAL_SEED, tf.int64) if split == "validation" or seed is None else tf.cast(seed, tf.int64)
    return tf.data.Dataset.from_generator(
        lambda s: ({"targets": ids} for ids in examples(int(s))), args=(seed,),
        output_signature={"targets": tf.TensorSpec([None], tf.int32)})


class SeqioVocabulary(seqio.Vocabulary):
    """A vocabulary of scaling/data/vocabulary.py (`base`) where seqio expects one: the feature
    of the tasks below. The ids arrive tokenized, so the TensorFlow sides are never on the hot path."""

    def __init__(self, base):
        self.base = base
        super().__init__(extra_ids=0)

    @property
    def eos_id(self) -> int:
        return self.base.eos_id

    @property
    def unk_id(self) -> int:
        return self.base.unk_id

    @property
    def _base_vocab_size(self) -> int:
        return self.base.vocab_size

    def _encode(self, s: str):
        return self.base.encode(s)

    def _decode(self, ids) -> str:
        return self.base.decode(ids)

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        return tf.py_function(lambda t: tf.constant(self.base.encode(t.numpy().decode("utf-8")), tf.int32),
                              [s], tf.int32)

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        return tf.py_function(lambda t: tf.constant(self.base.decode(t.numpy().ravel().tolist())), [ids], tf.string)

    def byte_lengths(self, ids: np.ndarray) -> np.ndarray:
        return self.base.byte_lengths(ids)

    def __eq__(self, other):
        return isinstance(other, SeqioVocabulary) and other.base == self.base

    def __hash__(self):
        return hash(self.base)


def _register_task(name: str, dataset_fn, vocab) -> None:
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(dataset_fn, splits=("train", "validation")),
        output_features={"targets": seqio.Feature(SeqioVocabulary(vocab), add_eos=True)},
        preprocessors=[split_to_length, order_for_packing, seqio.preprocessors.append_eos_after_trim],
        shuffle_buffer_size=None)


def _register_mixture(name: str, tasks: list[str]) -> None:
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, [(t, 1.0) for t in tasks])


# ---- the synthetic corpus ------------------------------------------------------------------

def _synthetic_examples(split: str, seed: int, fmt: str | None, encode=vocabulary.encode) -> Iterator[np.ndarray]:
    docs = corpus.documents("eval" if split == "validation" else "train", seed)
    for doc in docs:
        if fmt is None:
            segments = formats.raw_segments(doc)
        elif fmt == "append":
            segments = formats.append_segments(doc, _programmatic.think(doc.text, doc).text)
        else:
            segments = formats.before_hard_segments(doc, _programmatic.span_thinking(doc))
        yield formats.annotated_ids(segments, encode)


def _synthetic_dataset_fn(fmt: str | None, encode=vocabulary.encode):
    def dataset_fn(split, shuffle_files=False, seed=None):
        # Training never sees the eval split's documents: corpus' hash split and seed streams.
        return _generator_dataset(functools.partial(_synthetic_examples, split, fmt=fmt, encode=encode), split, seed)
    return dataset_fn


_SYNTHETIC_VOCABULARY = [vocabulary.BYTES]  # the vocabulary the synthetic tasks are registered with



def register_synthetic_tasks(vocab=None) -> None:
    vocab = vocab or vocabulary.ThinkByteVocabulary()
    _register_task("synthetic_vanilla", _synthetic_dataset_fn(None, vocab.encode), vocab)
    _register_task("synthetic_thinking", _synthetic_dataset_fn("append", vocab.encode), vocab)
    _register_task("synthetic_thinking_before_hard", _synthetic_dataset_fn("before_hard", vocab.encode), vocab)
    _register_mixture("synthetic_mix", ["synthetic_vanilla", "synthetic_thinking"])
    _TEACHER_FLOPS.update({task: functools.partial(synthetic_teacher_flops_per_thinking_token, task)
                           for task in SYNTHETIC_TASKS})


def use_vocabulary(name: str, vocab_size: int | None = None):
    """Register the synthetic tasks with the vocabulary `name` (a model's ModelConfig.vocabulary),
    after checking that its ids fit the model's `vocab_size`."""
    try:
        vocab = vocabulary.get_vocabulary(name)
        vocab.think_open_id, vocab.think_close_id  # noqa: B018 (the thinking tags must be single pieces)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
        raise ConfigError(f"ModelConfig.vocabulary = {name!r}: {e}") from None
    if vocab_size is not None and vocab.vocab_size > vocab_size:
        raise ConfigError(f"ModelConfig.vocab_size = {vocab_size} is smaller than vocabulary {name!r}'s "
                          f"{vocab.vocab_size} ids; bind ModelConfig.vocab_size >= {vocab.vocab_size}")
    if _SYNTHETIC_VOCABULARY[0] != name:
        register_synthetic_tasks(vocab)
        _SYNTHETIC_VOCABULARY[0] = name
    return vocab


# ---- cache-backed real corpora -------------------------------------------------------------

class _CacheCorpus:
    """The documents of an augmentation cache (one record per document), split by hash."""

    def __init__(self, cache_dir: str, teacher_id: str | None, encode):
        self.cache_dir, self.teacher_id, self.encode = cache_dir, teacher_id, encode

    @functools.cached_property
    def records(self) -> dict[str, list[dict]]:
        seen, train, held_out = set(), [], []
        for r in cache_lib.read_records(self.cache_dir):
            if (self.teacher_id and r["teacher_id"] != self.teacher_id) or r["doc_hash"] in seen:
                continue
            seen.add(r["doc_hash"])
            (held_out if corpus.is_held_out(r["doc_hash"]) else train).append(r)
        if not train:
            raise ValueError(f"{self.cache_dir}: no cache records for training (run `scaling augment` first)")
        return {"train": train, "validation": held_out}

    def examples(self, split: str, seed: int, *, thinking: bool) -> Iterator[np.ndarray]:
        records = self.records[split]
        if not records:
            raise ValueError(f"{self.cache_dir}: no {split} documents in the cache")
        rng = random.Random(seed)
        while True:
            order = list(range(len(records)))
            if split == "train":
                rng.shuffle(order)
            for i in order:
                r = records[i]
                segments = [(r["text"], 0)] + ([(formats.thinking_block(r["thinking"]), formats.THINKING_BIT)]
                                               if thinking and r["thinking"].strip() else [])
                yield formats.annotated_ids(segments, self.encode)

    def raw_tokens(self) -> float:
        """Document tokens of the training split, eos included: one epoch."""
        return float(sum(len(self.encode(r["text"])) + 1 for r in self.records["train"]))

    def teacher_flops_per_thinking_token(self) -> float:
        train = self.records["train"]
        tokens = sum(len(self.encode(formats.thinking_block(r["thinking"]))) for r in train if r["thinking"].strip())
        return sum(r["teacher_flops"] for r in train) / tokens if tokens else 0.0


def register_cache_tasks(cache_dir: str, name: str | None = None, teacher_id: str | None = None,
                         sentencepiece_model: str | None = None) -> list[str]:
    """Register `<name>_vanilla`, `<name>_thinking` and mixture `<name>_mix` for a cache."""
    if not Path(cache_dir).is_dir():
        raise ValueError(f"cache {cache_dir!r}: no such folder")
    name = name or Path(cache_dir).resolve().name
    vocab = vocabulary.get_vocabulary(sentencepiece_model)
    source = _CacheCorpus(cache_dir, teacher_id, vocab.encode)

    def dataset_fn_for(thinking: bool):
        def dataset_fn(split, shuffle_files=False, seed=None):
            return _generator_dataset(functools.partial(source.examples, split, thinking=thinking and split == "train"),
                                      split, seed)
        return dataset_fn

    _register_task(f"{name}_vanilla", dataset_fn_for(False), vocab)
    _register_task(f"{name}_thinking", dataset_fn_for(True), vocab)
    _register_mixture(f"{name}_mix", [f"{name}_vanilla", f"{name}_thinking"])
    _CACHE_TASKS[str(Path(cache_dir).resolve())] = [f"{name}_vanilla", f"{name}_thinking", f"{name}_mix"]
    _SOURCE_TOKENS.update({f"{name}_{v}": source.raw_tokens for v in ("vanilla", "thinking", "mix")})
    _TEACHER_FLOPS.update({f"{name}_vanilla": lambda: 0.0,
                           f"{name}_thinking": source.teacher_flops_per_thinking_token,
                           f"{name}_mix": source.teacher_flops_per_thinking_token})
    return [f"{name}_vanilla", f"{name}_thinking", f"{name}_mix"]


def resolve_task(task: str) -> str:
    """A registered task or mixture name; `<cache dir>:vanilla|thinking|mix` registers that
    cache's tasks on first use (so a run file can name a cache directly)."""
    if task in seqio.TaskRegistry.names() or task in seqio.MixtureRegistry.names():
        return task
    folder, _, variant = task.rpartition(":")
    if folder and variant in ("vanilla", "thinking", "mix") and Path(folder).is_dir():
        names = _CACHE_TASKS.get(str(Path(folder).resolve())) or register_cache_tasks(folder)
        return names[("vanilla", "thinking", "mix").index(variant)]
    raise ValueError(f"unknown data task {task!r}: give a registered task "
                     f"({', '.join(sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())))}) "
                     f"or <cache dir>:vanilla|thinking|mix")


def source_raw_tokens(task: str) -> float:
    """Raw (document) tokens in one epoch of the task's training source: math.inf for the
    endless synthetic generator, so unique_tokens = tokens_raw and epochs = 1 there; for a cache,
    unique_tokens = min(tokens_raw, this) and epochs = tokens_raw / this."""
    task = resolve_task(task)
    return float(_SOURCE_TOKENS[task]()) if task in _SOURCE_TOKENS else math.inf


def teacher_flops_per_thinking_token(task: str) -> float:
    """Teacher generation FLOPs per thinking token trained on (0 for raw tasks)."""
    task = resolve_task(task)
    if task not in _TEACHER_FLOPS:
        raise KeyError(f"unknown task {task!r}; registered: {sorted(_TEACHER_FLOPS)}")
    return float(_TEACHER_FLOPS[task]())


# ---- batches -------------------------------------------------------------------------------

def _vocabulary_of(task: str) -> SeqioVocabulary:
    return seqio.get_mixture_or_task(task).output_features["targets"].vocabulary


def _to_batch(packed: dict, vocab: SeqioVocabulary, with_eval_keys: bool) -> dict[str, np.ndarray]:
    targets, thinking, hard = formats.split_flags(packed["decoder_target_tokens"])
    weights = packed["decoder_loss_weights"].astype(np.float32)
    batch = {"inputs": (packed["decoder_input_tokens"] & formats.ID_MASK).astype(np.int32),
             "targets": targets,
             "positions": packed["decoder_positions"].astype(np.int32),
             "segment_ids": packed["decoder_segment_ids"].astype(np.int32),
             "loss_weights": weights,
             "thinking_mask": thinking * weights,
             "raw_mask": (1.0 - thinking) * weights}
    if with_eval_keys:
        batch["hard_mask"] = hard * weights
        batch["target_bytes"] = vocab.byte_lengths(targets).astype(np.float32) * weights
    return batch


def _packed(task: str, split: str, seq_len: int, seed) -> tf.data.Dataset:
    return seqio.get_dataset(task, {"targets": seq_len}, _FEATURE_CONVERTER, dataset_split=split,
                             shuffle=False, num_epochs=1, seed=seed, verbose=False)


def chunk_batches(batch_size: int, seq_len: int) -> int:
    """Batches per chunk: the most one resume has to skip is one less than this."""
    return max(1, CHUNK_TOKENS // (batch_size * seq_len))


def train_stream(task: str, batch_size: int, seq_len: int, seed: int, start_batch: int = 0,
                 host_index: int = 0, host_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Endless packed training batches of this host, deterministic for (task, seed, host), from
    batch `start_batch` on: one tf.data pipeline over all chunks (traced once); chunk c is the
    first `per_chunk` batches packed from stream seed (host seed << 31) + c."""
    task = resolve_task(task)
    if not 0 <= host_index < host_count:
        raise ValueError(f"host_index {host_index} out of range for host_count {host_count}")
    vocab = _vocabulary_of(task)
    per_chunk = chunk_batches(batch_size, seq_len)
    first_chunk, skip = divmod(start_batch, per_chunk)
    host_seed = train_stream_seed(seed, 0, host_index, host_count)

    def chunk(c):
        ds = _packed(task, "train", seq_len, tf.constant(host_seed, tf.int64) + c)
        return ds.batch(batch_size, drop_remainder=True).take(per_chunk)

    chunks = tf.data.Dataset.range(first_chunk, 1 << 31).flat_map(chunk)
    for packed in chunks.skip(skip).as_numpy_iterator():
        yield _to_batch(packed, vocab, with_eval_keys=False)


def eval_task(corpus_name: str) -> str:
    """The task of a held-out corpus's raw documents: "synthetic", a registered cache corpus
    name, or a cache directory."""
    return resolve_task(f"{corpus_name}:vanilla" if Path(corpus_name).is_dir() else f"{corpus_name}_vanilla")


def eval_list(task: str, batch_size: int, seq_len: int, n_batches: int) -> list[dict[str, np.ndarray]]:
    """`n_batches` packed batches of the task's held-out documents (never augmented), with
    hard-span masks and the bytes per target token."""
    vocab = _vocabulary_of(task)
    ds = _packed(task, "validation", seq_len, EVAL_SEED).batch(batch_size, drop_remainder=True).take(n_batches)
    return [_to_batch(packed, vocab, with_eval_keys=True) for packed in ds.as_numpy_iterator()]


register_synthetic_tasks()
