"""`scaling describe`: what a preset costs, before anything is trained; with --corpus=synthetic,
the corpus's true irreducible loss (scaling.data.entropy)."""

from __future__ import annotations

import json

from analysis import flags
from scaling import accounting, configuration
from scaling.data import sentencepiece_vocab
from scaling.model_config import ModelConfig
from scaling.presets import load_model_config, presets


def configure_describe(parser):
    parser.add_argument("--context", type=flags.positive_int, default=None,
                        help="context length for the inference FLOPs per token (default: seq_len)")
    parser.add_argument("--all", action="store_true", help="describe every preset in gin/models, one JSON line each")
    parser.add_argument("--corpus", choices=("synthetic",),
                        help="describe a corpus instead of a model: its entropy in nats per token")
    parser.add_argument("--vocabulary", default=None,
                        help="with --corpus: 'bytes' (the default), a built-in SentencePiece vocabulary "
                             "(synthetic_sp256) or a SentencePiece model file")
    parser.add_argument("--documents", type=flags.positive_int, default=DEFAULT_DOCUMENTS,
                        help=f"with --corpus: held-out documents averaged over (default {DEFAULT_DOCUMENTS})")
    parser.add_argument("--seq_len", type=flags.count, default=DEFAULT_SEQ_LEN,
                        help=f"with --corpus: the trainer's sequence length, which cuts longer documents "
                             f"(default {DEFAULT_SEQ_LEN}, gin/models/base.gin; 0: never cut)")


DEFAULT_DOCUMENTS = 4000
DEFAULT_SEQ_LEN = 256


def describe_corpus(corpus_name: str, vocabulary_path: str | None = None, documents: int = DEFAULT_DOCUMENTS,
                    seq_len: int | None = DEFAULT_SEQ_LEN) -> dict:
    """The corpus's entropy per token of the vocabulary, as the trainer counts tokens."""
    from scaling.data import entropy, vocabulary  # here: seqio/TensorFlow, not needed to describe a preset

    if corpus_name != "synthetic":
        raise configuration.ConfigError(f"--corpus: only 'synthetic' has a known generator, got {corpus_name!r}")
    if documents < 2:
        raise configuration.ConfigError(f"--documents must be at least 2, got {documents}")
    if seq_len is not None and seq_len < 2:
        raise configuration.ConfigError(f"--seq_len must be at least 2 (or 0: never cut), got {seq_len}")
    if vocabulary_path is not None and vocabulary_path != vocabulary.BYTES:
        try:
            sentencepiece_vocab.resolve(vocabulary_path)
        except FileNotFoundError as e:
            raise configuration.ConfigError(f"--vocabulary: {e}") from None
    try:
        vocab = vocabulary.get_vocabulary(vocabulary_path)
        encode = vocab.encode
        encode("So Mia now has 7 pears.")
    except Exception as e:  # a file that is not a SentencePiece model
        raise configuration.ConfigError(f"--vocabulary {vocabulary_path}: not a usable SentencePiece model ({e})") from e
    result = entropy.entropy(encode, n_documents=documents, seq_len=seq_len)
    return {"corpus": corpus_name, "vocabulary": vocabulary_path or "bytes", **result}


def run_describe(args) -> int:
    if args.corpus:
        if args.all or args.gin.files:
            raise configuration.ConfigError("--corpus describes a corpus: give no model (--gin_file, --all) with it")
        print(json.dumps(describe_corpus(args.corpus, args.vocabulary, args.documents, args.seq_len or None), indent=2))
        return 0
    if args.vocabulary:
        raise configuration.ConfigError("--vocabulary applies to --corpus only")
    if args.all:
        for preset in presets():
            config = load_model_config(preset, args.gin.bindings)
            print(json.dumps({"preset": preset.stem, **accounting.describe(config, args.context)}))
        return 0
    if not args.gin.files:
        raise configuration.ConfigError("give a model with --gin_file=gin/models/<preset>.gin (or use --all)")
    configuration.parse(args.gin)
    with configuration.explained(args.gin):
        config = ModelConfig()
    print(json.dumps(accounting.describe(config, args.context), indent=2))
    return 0
