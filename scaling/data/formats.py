"""Where thinking goes in a training sample, and the matching test-time protocol.

- `append` (TPT, the default): `doc <think> thinking </think>`, the thinking after the whole
  document, re-deriving each hard value step by step.
- `before_hard`: the thinking for each hard span inserted right before it,
  "... So Mia now has <think> 3 + 4 = 7. </think> 7 pears." (synthetic corpus only).

Test-time protocol (the inference part): answer directly = feed the QA prompt and read the
answer; with thinking = feed `prompt + THINK_OPEN`, let the model write, append `THINK_CLOSE`
(forced at the budget, or when the model closes it itself) and read the answer. A before_hard
training sample contains exactly this sequence, so the protocol is in-distribution.

Samples are lists of segments (text, flags). Flags ride on the token ids through seqio's packing
as high bits (THINKING_BIT, HARD_BIT) and are split off again after packing; no id of a real
vocabulary reaches them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scaling.data.corpus import Document

THINK_OPEN = " <think>"    # continuation that opens thinking after a prompt
THINK_CLOSE = " </think>"  # continuation that closes it; the answer follows as " 42"
FORMATS = ("append", "before_hard")

THINKING_BIT = 1 << 20
HARD_BIT = 1 << 21
ID_MASK = (1 << 20) - 1

Segment = tuple[str, int]


def thinking_block(thinking: str) -> str:
    """The exact text a thinking passage becomes in a sample (its leading space included)."""
    return f"{THINK_OPEN} {thinking.strip()}{THINK_CLOSE}"


def raw_segments(doc: Document) -> list[Segment]:
    """The document alone, its hard spans flagged."""
    out, cursor = [], 0
    for span in doc.hard_spans:
        out += [(doc.text[cursor:span.start], 0), (doc.text[span.start:span.end], HARD_BIT)]
        cursor = span.end
    out.append((doc.text[cursor:], 0))
    return [s for s in out if s[0]]


def append_segments(doc: Document, thinking: str) -> list[Segment]:
    """TPT: `[doc; <think> thinking </think>]`; no thinking, no block."""
    out = raw_segments(doc)
    if thinking.strip():
        out.append((thinking_block(thinking), THINKING_BIT))
    return out


def before_hard_segments(doc: Document, span_thinking: Sequence[str]) -> list[Segment]:
    """Each span's thinking inserted before the space that precedes the span."""
    if len(span_thinking) != len(doc.hard_spans):
        raise ValueError(f"{doc.doc_id}: {len(doc.hard_spans)} hard spans but {len(span_thinking)} thinking passages")
    out, cursor = [], 0
    for span, thinking in zip(doc.hard_spans, span_thinking):
        cut = span.start - 1 if span.start and doc.text[span.start - 1] == " " else span.start
        out += [(doc.text[cursor:cut], 0), (thinking_block(thinking), THINKING_BIT),
                (doc.text[cut:span.start], 0), (doc.text[span.start:span.end], HARD_BIT)]
        cursor = span.end
    out.append((doc.text[cursor:], 0))
    return [s for s in out if s[0]]


def annotated_ids(segments: Sequence[Segment], encode) -> np.ndarray:
    """Token ids of the segments, each carrying its segment's flag bits."""
    parts = [np.asarray(encode(text), np.int32) | flags for text, flags in segments]
    return np.concatenate(parts) if parts else np.zeros([0], np.int32)


def split_flags(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, thinking mask, hard mask) of annotated ids."""
    ids = np.asarray(ids)
    return ((ids & ID_MASK).astype(np.int32), ((ids & THINKING_BIT) != 0).astype(np.float32),
            ((ids & HARD_BIT) != 0).astype(np.float32))
