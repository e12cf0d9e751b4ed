"""Byte-level vocabulary with two special tokens for thinking, and SentencePiece vocabularies.

Ids: 0 pad, 1 eos, 2 unk, the 256 UTF-8 byte values at 3..258, 259 `<think>`, 260 `</think>`.
The model's vocab_size (264, gin/models/base.gin) leaves room to spare. Nothing is downloaded;
`get_vocabulary(name)` returns a SentencePiece vocabulary instead for a built-in name
(`synthetic_sp256`, scaling/data/sentencepiece_vocab.py) or a model file (that model should
define `<think>` and `</think>` as user-defined symbols). A model's vocabulary is
`ModelConfig.vocabulary`; every vocabulary here answers `think_open_id` and `think_close_id`.
Light: no TensorFlow or seqio (decoding needs neither); scaling/data/pipeline.py wraps these as
seqio vocabularies for its tasks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import numpy as np

from scaling.data import sentencepiece_vocab

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
BYTE_OFFSET = 3
THINK_OPEN_ID = 259
THINK_CLOSE_ID = 260
VOCAB_SIZE = sentencepiece_vocab.BYTES_VOCAB_SIZE

THINK_OPEN_TEXT = "<think>"
THINK_CLOSE_TEXT = "</think>"
_SPECIAL_TEXT = {THINK_OPEN_TEXT: THINK_OPEN_ID, THINK_CLOSE_TEXT: THINK_CLOSE_ID}
_SPECIAL_SPLIT = re.compile("(<think>|</think>)")


def encode(text: str) -> list[int]:
    """UTF-8 bytes shifted by 3; the literal markers become their single special ids."""
    ids: list[int] = []
    for piece in _SPECIAL_SPLIT.split(text):
        if piece in _SPECIAL_TEXT:
            ids.append(_SPECIAL_TEXT[piece])
        elif piece:
            ids.extend(b + BYTE_OFFSET for b in piece.encode("utf-8"))
    return ids


def decode(ids: Iterable[int]) -> str:
    """Inverse of `encode`; pad and eos are dropped, unk and out-of-range ids become U+FFFD."""
    out: list[str] = []
    pending = bytearray()
    for i in (int(i) for i in ids):
        if BYTE_OFFSET <= i < BYTE_OFFSET + 256:
            pending.append(i - BYTE_OFFSET)
            continue
        out.append(pending.decode("utf-8", errors="replace"))
        pending = bytearray()
        if i == THINK_OPEN_ID:
            out.append(THINK_OPEN_TEXT)
        elif i == THINK_CLOSE_ID:
            out.append(THINK_CLOSE_TEXT)
        elif i not in (PAD_ID, EOS_ID):
            out.append("\ufffd")
    out.append(pending.decode("utf-8", errors="replace"))
    return "".join(out)


def byte_lengths(ids: np.ndarray) -> np.ndarray:
    """UTF-8 bytes each id stands for (1 for a byte token, 0 for specials): for bits per byte."""
    ids = np.asarray(ids)
    return ((ids >= BYTE_OFFSET) & (ids < BYTE_OFFSET + 256)).astype(np.float32)


class _Vocabulary:
    """What seqio.Vocabulary.decode does before detokenizing (ids past the vocabulary become unk,
    nothing after the first eos), so that decoding is the same here and inside seqio's tasks."""

    def decode(self, ids: Iterable[int]) -> str:
        clean = [self.unk_id if int(i) >= self.vocab_size else int(i) for i in ids]
        if self.eos_id in clean:
            clean = clean[:clean.index(self.eos_id) + 1]
        return self._decode(clean)

    @property
    def pad_id(self) -> int:
        return PAD_ID


class ThinkByteVocabulary(_Vocabulary):
    """The byte vocabulary above as an object (the pipeline hands it to seqio's tasks)."""

    eos_id, unk_id, vocab_size = EOS_ID, UNK_ID, VOCAB_SIZE
    think_open_id, think_close_id = THINK_OPEN_ID, THINK_CLOSE_ID

    def encode(self, s: str) -> list[int]:
        return encode(s)

    def _decode(self, ids) -> str:
        return decode(ids)

    def byte_lengths(self, ids: np.ndarray) -> np.ndarray:
        return byte_lengths(ids)

    def __eq__(self, other):
        return isinstance(other, ThinkByteVocabulary)

    def __hash__(self):
        return hash(type(self).__name__)


class SentencePieceVocabulary(_Vocabulary):
    """A SentencePiece model's vocabulary (ids as seqio.SentencePieceVocabulary gives them), plus
    the bytes-per-token table bits-per-byte needs. Loads the model with sentencepiece alone."""

    def __init__(self, sentencepiece_model_file: str):
        self.sentencepiece_model_file = sentencepiece_model_file

    @functools.cached_property
    def tokenizer(self):
        import sentencepiece

        return sentencepiece.SentencePieceProcessor(model_file=self.sentencepiece_model_file)

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_id()

    @property
    def unk_id(self) -> int:
        return self.tokenizer.unk_id()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_piece_size()

    def encode(self, s: str) -> list[int]:
        return self.tokenizer.encode_as_ids(s)

    def _decode(self, ids) -> str:
        return self.tokenizer.decode_ids(ids)

    def byte_lengths(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        table = np.zeros(self.vocab_size, np.float32)
        model = self.tokenizer
        for i in range(model.get_piece_size()):
            if not (model.is_control(i) or model.is_unknown(i)):
                table[i] = len(model.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return table[np.clip(ids, 0, self.vocab_size - 1)] * (ids < self.vocab_size)

    def _special(self, text: str) -> int:
        i = self.tokenizer.piece_to_id(text)
        if i == self.tokenizer.unk_id() or self.tokenizer.encode(text) != [i]:
            raise ValueError(f"SentencePiece model {self.sentencepiece_model_file}: {text} is not one "
                             "piece; train it with user_defined_symbols=['<think>', '</think>']")
        return i

    @property
    def think_open_id(self) -> int:
        return self._special(THINK_OPEN_TEXT)

    @property
    def think_close_id(self) -> int:
        return self._special(THINK_CLOSE_TEXT)

    def __eq__(self, other):
        return isinstance(other, SentencePieceVocabulary) and \
            other.sentencepiece_model_file == self.sentencepiece_model_file

    def __hash__(self):
        return hash(self.sentencepiece_model_file)


BYTES = "bytes"


def get_vocabulary(name: str | None = None) -> ThinkByteVocabulary | SentencePieceVocabulary:
    """The byte vocabulary for None, '' or 'bytes'; else SentencePiece: a built-in name
    (scaling.data.sentencepiece_vocab.BUILTIN) or a model file."""
    if not name or name == BYTES:
        return ThinkByteVocabulary()
    return SentencePieceVocabulary(str(sentencepiece_vocab.resolve(name)))
