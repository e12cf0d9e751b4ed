"""Builds the synthetic corpus's SentencePiece model, reproducibly (`synthetic_sp256`).

The model is a pure function of the options below: the training text is the synthetic corpus's
training stream (`corpus.documents("train", TRAIN_SEED)`: raw documents and both thinking
formats, never a held-out document), fed in a fixed order, one thread, no sampling. The built-in
`synthetic_sp256` (scaling/data/synthetic_sp256.model) is rebuilt byte for byte by

    python -m scaling.data.build_sentencepiece --output=scaling/data/synthetic_sp256.model

(tests/test_vocabulary.py checks that it reproduces). No whitespace normalisation and no dummy
prefix: the trainer encodes a sample segment by segment (formats.annotated_ids), and a dummy
prefix would add a space at every segment boundary. A module of its own above the teachers, so
that naming a vocabulary (sentencepiece_vocab) stays below them.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from pathlib import Path

import sentencepiece as spm

from scaling.data import corpus, formats
from scaling.data.sentencepiece_vocab import BUILTIN
from scaling.data.teachers import ProgrammaticTeacher

TRAIN_SEED = 7_000_001          # a training-stream seed of its own (documents, not held out)
TRAIN_DOCUMENTS = 4000
VOCAB_SIZE = 256                # fits the presets' vocab_size of 264 (ids 256..263 stay unused)


def training_sentences(n_documents: int = TRAIN_DOCUMENTS, seed: int = TRAIN_SEED) -> Iterator[str]:
    """The text the tokenizer is fitted on: each training document raw, with its appended (TPT)
    thinking, and with its thinking before the hard value, as the trainer renders them."""
    teacher = ProgrammaticTeacher()
    for doc in corpus.documents("train", seed):
        if int(doc.doc_id.rsplit("-", 1)[1]) >= n_documents:
            return
        yield doc.text
        if doc.hard_spans:
            yield "".join(t for t, _ in formats.append_segments(doc, teacher.think(doc.text, doc).text))
            yield "".join(t for t, _ in formats.before_hard_segments(doc, teacher.span_thinking(doc)))


def train_model(vocab_size: int = VOCAB_SIZE, n_documents: int = TRAIN_DOCUMENTS, seed: int = TRAIN_SEED) -> bytes:
    """The serialised SentencePiece model (deterministic for its arguments)."""
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=training_sentences(n_documents, seed), model_writer=out,
        model_type="bpe", vocab_size=vocab_size, character_coverage=1.0, split_digits=True,
        user_defined_symbols=["<think>", "</think>"], pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity",
        num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, hard_vocab_limit=True,
        minloglevel=2)
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build the synthetic corpus's SentencePiece model.")
    parser.add_argument("--output", default=str(BUILTIN["synthetic_sp256"]))
    parser.add_argument("--vocab_size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--documents", type=int, default=TRAIN_DOCUMENTS)
    args = parser.parse_args(argv)
    data = train_model(args.vocab_size, args.documents)
    Path(args.output).write_bytes(data)
    print(f"{args.output}: {len(data)} bytes, {args.vocab_size} pieces")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
