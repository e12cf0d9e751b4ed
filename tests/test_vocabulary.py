"""The built-in SentencePiece vocabulary: reproducible from its documented command, and cheaper
than bytes on the corpus (scaling.data.build_sentencepiece)."""

import pytest

from scaling.configuration import ConfigError
from scaling.data import build_sentencepiece, corpus, formats, pipeline, sentencepiece_vocab, vocabulary


def test_the_built_in_model_is_rebuilt_byte_for_byte(tmp_path):
    out = tmp_path / "sp.model"
    assert build_sentencepiece.main([f"--output={out}"]) == 0
    assert out.read_bytes() == sentencepiece_vocab.BUILTIN["synthetic_sp256"].read_bytes()


def test_sentencepiece_splits_digits_keeps_think_tags_and_costs_fewer_tokens():
    sp = vocabulary.get_vocabulary("synthetic_sp256")
    assert sp.vocab_size <= 264 and sp.eos_id == vocabulary.EOS_ID and sp.pad_id == vocabulary.PAD_ID
    block = formats.thinking_block("6 + 14 = 20.")
    ids = sp.encode(block)
    assert ids.count(sp.think_open_id) == 1 and ids.count(sp.think_close_id) == 1 and sp.decode(ids) == block
    assert all(len(sp.tokenizer.id_to_piece(i).strip("\u2581")) <= 1 for i in sp.encode("1234567890"))
    docs = [corpus.make_document("eval", 0, i) for i in range(200)]
    sp_tokens = sum(len(sp.encode(d.text)) for d in docs)
    byte_tokens = sum(len(vocabulary.encode(d.text)) for d in docs)
    assert sp_tokens < byte_tokens / 2.5
    for d in docs:  # segment-wise encoding (the trainer's) decodes to the document, nothing added
        ids, _, _ = formats.split_flags(formats.annotated_ids(formats.raw_segments(d), sp.encode))
        assert sp.decode(ids.tolist()) == d.text


def test_a_vocabulary_that_does_not_fit_the_model_is_named():
    with pytest.raises(ConfigError, match="ModelConfig.vocab_size = 200"):
        pipeline.use_vocabulary("synthetic_sp256", 200)
    with pytest.raises(ConfigError, match="ModelConfig.vocabulary = '/nonexistent.model'"):
        pipeline.use_vocabulary("/nonexistent.model", 264)
    assert pipeline.use_vocabulary("bytes", 264).vocab_size == vocabulary.VOCAB_SIZE


def test_describe_takes_the_built_in_name_and_the_entropy_per_document_is_unchanged():
    from scaling import describe

    sp = describe.describe_corpus("synthetic", "synthetic_sp256", documents=200)
    by_bytes = describe.describe_corpus("synthetic", None, documents=200)
    assert sp["vocabulary"] == "synthetic_sp256" and sp["tokens_per_document"] < by_bytes["tokens_per_document"] / 2.5
    assert sp["entropy_nats_per_document"] == pytest.approx(by_bytes["entropy_nats_per_document"], rel=1e-9)
    assert sp["entropy_nats_per_token"] > 2.5 * by_bytes["entropy_nats_per_token"]
    with pytest.raises(ConfigError, match="no_such_vocabulary"):
        describe.describe_corpus("synthetic", "no_such_vocabulary", documents=200)


def test_an_unknown_model_vocabulary_fails_at_configuration():
    from scaling.model import ModelConfig

    assert ModelConfig(vocabulary="synthetic_sp256").vocabulary == "synthetic_sp256"
    with pytest.raises(ConfigError, match="ModelConfig.vocabulary: vocabulary 'nope'"):
        ModelConfig(vocabulary="nope")
