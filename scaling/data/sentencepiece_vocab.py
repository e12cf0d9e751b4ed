"""A SentencePiece vocabulary trained on the synthetic corpus, built reproducibly.

Why: with the byte vocabulary a document costs about 143 tokens and one step of thinking
("6 + 4 = 10.") 12; a tokenizer fitted to the corpus's few dozen words makes a word one token,
so the same model spends its context and its thinking budget on content. Digits stay single
pieces (split_digits) so arithmetic is written digit by digit in every vocabulary, and
`<think>` / `</think>` are user-defined symbols (one piece each, never merged with text).

This module only names the models (light: model.py checks a configured name with it); the
built-in `synthetic_sp256` (scaling/data/synthetic_sp256.model) is built reproducibly by
scaling/data/build_sentencepiece.py, which needs the corpus and the teacher.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTIN = {"synthetic_sp256": BUILTIN_DIR / "synthetic_sp256.model"}
BYTES_VOCAB_SIZE = 261  # the byte vocabulary's ids (scaling/data/vocabulary.py)


def resolve(name_or_path: str) -> Path:
    """A built-in vocabulary's file, or the given SentencePiece model file."""
    path = BUILTIN.get(name_or_path, Path(name_or_path))
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary {name_or_path!r}: no such file; give 'bytes', a built-in "
                                f"({', '.join(BUILTIN)}) or a SentencePiece model file")
    return path


def vocabulary_size(name: str) -> int:
    """The number of ids of a vocabulary ('bytes', a built-in name or a model file), read
    without TensorFlow (what a run checks against ModelConfig.vocab_size)."""
    if not name or name == "bytes":
        return BYTES_VOCAB_SIZE
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(resolve(name))).get_piece_size()
