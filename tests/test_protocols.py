"""Each training format's test-time protocol is in its training distribution, token for token,
and reads the answer where the format states it (scaling.data.protocols)."""

import json

import pytest

from scaling.data import corpus, formats, protocols, vocabulary
from scaling.data.teachers import ProgrammaticTeacher

TEACHER = ProgrammaticTeacher()
VOCABULARIES = ["bytes", "synthetic_sp256"]


def _held_out(n=12):
    """(question, the held-out document it was cut from) for difficulties 1..4."""
    out = []
    for difficulty in (1, 2, 3, 4):
        for i, problem in enumerate(corpus.qa_problems(n // 4, difficulty, seed=0)):
            doc = corpus.make_document("eval", 1_000_003, i, difficulty=difficulty)
            assert doc.text.startswith(problem.prompt)
            out.append((protocols.Question.of(problem), doc))
    return out


def _ids(segments, vocab):
    return [int(i) & formats.ID_MASK for i in formats.annotated_ids(segments, vocab.encode)]


def _continuation(sample, prompt, vocab):
    """The training sample's text after the prompt's tokens (which must be its prefix)."""
    assert sample[:len(prompt)] == prompt
    return vocab.decode(sample[len(prompt):])


@pytest.mark.parametrize("name", VOCABULARIES)
def test_before_hard_prompt_is_a_prefix_of_its_training_sample(name):
    vocab = vocabulary.get_vocabulary(name)
    qa = protocols.QAProtocol(protocols.BEFORE_HARD)
    for question, doc in _held_out():
        sample = _ids(formats.before_hard_segments(doc, TEACHER.span_thinking(doc)), vocab)
        prompt = qa.prompt_ids(question, 16, vocab.encode)
        rest = _continuation(sample, prompt, vocab)       # " 6 + 4 = 10. </think> 10 pears. ..."
        thinking, close, answer = rest.partition(vocabulary.THINK_CLOSE_TEXT)
        assert close and thinking.strip() == " ".join(doc.hard_spans[0].steps)
        assert qa.read_answer(question, 16, thinking, answer) == question.problem.answer
        assert qa.name(16) == "before_hard" and qa.name(0) == "direct"


@pytest.mark.parametrize("name", VOCABULARIES)
@pytest.mark.parametrize("training_format", protocols.TRAINING_FORMATS)
def test_direct_prompt_is_a_prefix_of_every_format_s_raw_document(name, training_format):
    """T = 0 asks every arm the same tokens: the document up to its answer slot."""
    vocab = vocabulary.get_vocabulary(name)
    qa = protocols.QAProtocol(training_format)
    for question, doc in _held_out():
        raw = _ids(formats.raw_segments(doc), vocab)
        prompt = qa.prompt_ids(question, 0, vocab.encode)
        answer = _continuation(raw, prompt, vocab)        # " 10 pears. Mia is happy with 10 pears."
        assert qa.read_answer(question, 0, "", answer) == question.problem.answer
        if training_format == protocols.RAW:               # vanilla never opens thinking
            assert qa.prompt_ids(question, 64, vocab.encode) == prompt and not qa.thinks(64)


@pytest.mark.parametrize("name", VOCABULARIES)
def test_append_prompt_is_the_training_sample_without_the_result_sentences(name):
    """The append (TPT) sample of the held-out document, with only the sentences that state the
    result taken out of the document, begins with the prompt; what follows is the teacher's
    thinking, and the answer is read from its conclusion, not from its first number."""
    vocab = vocabulary.get_vocabulary(name)
    qa = protocols.QAProtocol(protocols.APPEND)
    read_first_number_would_fail = 0
    for question, doc in _held_out():
        span = doc.hard_spans[0]
        thinking = TEACHER.think(doc.text, doc).text
        sample = _ids(formats.append_segments(doc, thinking), vocab)
        statement = _ids([(question.statement, 0)], vocab)
        raw = _ids(formats.raw_segments(doc), vocab)
        # the document's tokens: the statement's, then the result sentences' only
        result_sentences = _continuation(raw, statement, vocab)
        assert result_sentences == f" {span.conclusion} {doc.text.rsplit('. ', 1)[1]}"
        assert question.cue in span.conclusion and question.statement + " " + question.cue == question.problem.prompt
        # the sample after the document starts with <think>: the prompt is statement + that
        prompt = qa.prompt_ids(question, 64, vocab.encode)
        after_document = sample[len(raw):]
        assert prompt == statement + after_document[:len(prompt) - len(statement)]
        written = _continuation(statement + after_document, prompt, vocab)
        thought, close, _ = written.partition(vocabulary.THINK_CLOSE_TEXT)
        assert close and thought.strip() == thinking
        assert qa.read_answer(question, 64, thought, "") == question.problem.answer
        read_first_number_would_fail += corpus.extract_answer(thought) != question.problem.answer
        # cut before the conclusion states the result: no answer
        assert qa.read_answer(question, 64, thought[:thought.rindex(question.cue) + len(question.cue)], "") is None
    assert read_first_number_would_fail > 0


def test_the_run_folder_names_the_training_format(tmp_path):
    (tmp_path / "identity.json").write_text(json.dumps({"train.task": "synthetic_thinking"}))
    assert protocols.for_run(tmp_path).training_format == "append"
    (tmp_path / "identity.json").unlink()
    (tmp_path / "config.gin").write_text("train.task = 'synthetic_thinking_before_hard'\n")
    assert protocols.for_run(tmp_path).training_format == "before_hard"
    assert protocols.training_format("/data/cache/mycorpus:vanilla") == "raw"
    assert protocols.training_format("mycorpus_thinking") == "append"
    with pytest.raises(protocols.ProtocolError, match="train.task = 'nonsense'"):
        protocols.training_format("nonsense")
    (tmp_path / "config.gin").unlink()
    with pytest.raises(protocols.ProtocolError, match="identity.json nor config.gin"):
        protocols.for_run(tmp_path)
