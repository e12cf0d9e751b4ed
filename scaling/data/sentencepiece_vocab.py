"""A SentencePiece vocabulary trained on the synthetic corpus, built reproducibly.

Why: with the byte vocabulary a document costs about 143 tokens and one step of thinking
("6 + 4 = 10.") 12; a tokenizer fitted to the corpus's few dozen words makes a word one token,
so the same model spends its context and its thinking budget on content. Digits stay single
pieces (split_digits) so arithmetic is written digit by digit in every vocabulary, and
`<think>` / `</think>` are user-defined symbols (one piece each, never merged with text).

The model is a pure function of the options below: the training text is the synthetic corpus's
training stream (`corpus.documents("train", TRAIN_SEED)`: raw documents and both thinking
formats, never a held-out document), fed in a fixed order, one thread, no sampling. The built-in
`synthetic_sp256` (scaling/data/synthetic_sp256.model) is rebuilt byte for byte by

    python -m scaling.data.sentencepiece_vocab --output=scaling/data/synthetic_sp256.model

(tests/test_vocabulary.py checks that it reproduces). No whitespace normalisation and no dummy
prefix: the trainer encodes a sample segment by segment (formats.annotated_ids), and a dummy
prefix would add a space at every segment boundary.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTIN = {"synthetic_sp256": BUILTIN_DIR / "synthetic_sp256.model"}
TRAIN_SEED = 7_000_001          # a training-stream seed of its own (documents, not held out)
TRAIN_DOCUMENTS = 4000
VOCAB_SIZE = 256                # fits the presets' vocab_size of 264 (ids 256..263 stay unused)


def training_sentences(n_documents: int = TRAIN_DOCUMENTS, seed: int = TRAIN_SEED) -> Iterator[str]:
    """The text the tokenizer is fitted on: each training document raw, with its appended (TPT)
    thinking, and with its thinking before the hard value, as the trainer renders them."""
    from scaling.data import corpus, formats
    from scaling.data.teachers import ProgrammaticTeacher

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
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=training_sentences(n_documents, seed), model_writer=out,
        model_type="bpe", vocab_size=vocab_size, character_coverage=1.0, split_digits=True,
        user_defined_symbols=["<think>", "</think>"], pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity",
        num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, hard_vocab_limit=True,
        minloglevel=2)
    return out.getvalue()


def resolve(name_or_path: str) -> Path:
    """A built-in vocabulary's file, or the given SentencePiece model file."""
    path = BUILTIN.get(name_or_path, Path(name_or_path))
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary {name_or_path!r}: no such file; give 'bytes', a built-in "
                                f"({', '.join(BUILTIN)}) or a SentencePiece model file")
    return path


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
