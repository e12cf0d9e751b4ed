"""The synthetic corpus, vocabulary, formats and seqio batches, through the public API."""

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import seqio

from scaling.data import THINK_CLOSE, THINK_OPEN, extract_answer, make_document, qa_problems
from scaling.data import batch_cache
from scaling.data import cache as cache_lib
from scaling.data import corpus, formats, pipeline, vocabulary
from scaling.data.augment import AugmentConfig, augment
from scaling.data.batches import BATCH_KEYS, EVAL_BATCH_KEYS
from scaling.data.source import DataSource

REPO = Path(__file__).resolve().parent.parent
from scaling.data.teachers import ProgrammaticTeacher


def test_vocabulary_round_trip_and_special_ids():
    text = "Mia has 3 pears. <think> 3 + 4 = 7. </think> 7 üñ"
    ids = vocabulary.encode(text)
    assert vocabulary.THINK_OPEN_ID in ids and vocabulary.THINK_CLOSE_ID in ids
    assert ids.count(vocabulary.THINK_OPEN_ID) == 1 and max(ids) < 264
    assert vocabulary.decode(ids + [vocabulary.EOS_ID, vocabulary.PAD_ID]) == text
    vocab = vocabulary.ThinkByteVocabulary()
    assert vocab.eos_id == vocabulary.EOS_ID and vocab.decode(ids + [vocabulary.EOS_ID] + ids) == text
    in_seqio = pipeline.SeqioVocabulary(vocab)  # what the tasks' features hold
    assert isinstance(in_seqio, seqio.Vocabulary) and in_seqio.decode(ids + [vocabulary.EOS_ID] + ids) == text
    assert list(in_seqio.encode_tf(text).numpy()) == ids


def test_documents_are_deterministic_and_mark_their_hard_spans():
    a = [make_document("train", 3, i) for i in range(200)]
    assert a == [make_document("train", 3, i) for i in range(200)]
    assert a != [make_document("train", 4, i) for i in range(200)]
    assert {d.difficulty for d in a} >= {0, 1, 2, 3, 4}
    for doc in a:
        for span in doc.hard_spans:
            assert doc.text[span.start:span.end] == str(span.value)
            assert len(span.steps) == doc.difficulty
            last = span.steps[-1]
            assert last.endswith(f"= {span.value}.")


def test_eval_and_qa_are_disjoint_from_training():
    def chains(docs):
        return {"|".join(s.steps) + f"|{s.value}" for d in docs for s in d.hard_spans}

    def chain_key(span):
        start = span.steps[0].split(" ")[0]
        return start + "".join(s.split(" ")[1] + s.split(" ")[2] for s in span.steps)

    train = [make_document("train", 0, i) for i in range(3000)]
    held_out = [make_document("eval", 0, i) for i in range(500)]
    multi_step = [d for d in held_out if d.difficulty >= 2]
    assert multi_step and not chains(train) & chains(multi_step)
    assert not {d.text for d in train} & {d.text for d in held_out}
    train_texts = [d.text for d in train]
    for difficulty in (1, 2):
        problems = qa_problems(50, difficulty, seed=0)
        assert not any(t.startswith(p.prompt) for p in problems for t in train_texts)
    # the hash split: no training chain of two or more steps is in the reserved bucket
    for doc in train:
        for span in doc.hard_spans:
            assert len(span.steps) < 2 or not corpus.is_held_out(chain_key(span))


def test_single_step_facts_of_held_out_problems_are_all_in_training():
    """Difficulty-1 QA tests computing a step in an unseen problem, not recalling an unseen fact."""
    train_facts = {d.hard_spans[0].steps[0] for d in
                   (make_document("train", 0, i, difficulty=1) for i in range(3000))}
    qa_docs = [make_document("eval", 1_000_003, i, difficulty=1) for i in range(64)]
    assert [p.prompt for p in qa_problems(64, 1)] == [d.text[:d.hard_spans[0].start].rstrip() for d in qa_docs]
    qa_facts = {d.hard_spans[0].steps[0] for d in qa_docs}
    assert qa_facts <= train_facts
    assert len(train_facts) == 135  # every one-step fact: 9 starts x (9 adds, 2 products) + 36 takes


def test_qa_problems_and_answer_extraction():
    problems = qa_problems(20, 3, seed=1)
    assert problems == qa_problems(20, 3, seed=1)
    assert len({p.problem_id for p in problems}) == 20
    for p in problems:
        assert p.prompt.endswith("now has") and p.answer.isdigit() and p.difficulty == 3
    assert extract_answer(" 42 pears.") == "42"
    assert extract_answer("</think> -7 apples") == "-7"
    assert extract_answer("no number") is None
    assert extract_answer(None) is None and extract_answer(b"\xff 5") == "5"
    with pytest.raises(ValueError, match="difficulty"):
        qa_problems(1, 0)


def test_before_hard_sample_follows_the_test_time_protocol():
    doc = next(d for d in (make_document("train", 0, i) for i in range(100)) if d.difficulty == 2)
    span = doc.hard_spans[0]
    sample = "".join(t for t, _ in formats.before_hard_segments(doc, ProgrammaticTeacher.span_thinking(doc)))
    prompt = doc.text[:span.start].rstrip()
    thinking = " ".join(span.steps)
    assert sample.startswith(prompt + THINK_OPEN + " " + thinking + THINK_CLOSE + " " + str(span.value))
    raw = "".join(t for t, flag in formats.before_hard_segments(doc, [thinking]) if not flag & formats.THINKING_BIT)
    assert raw == doc.text


def test_thinking_length_grows_with_difficulty():
    teacher = ProgrammaticTeacher()
    docs = [make_document("train", 0, i) for i in range(2000)]
    difficulty = np.array([d.difficulty for d in docs], float)
    length = np.array([teacher.think(d.text, d).tokens_generated for d in docs], float)
    assert length[difficulty == 0].max() == 0
    correlation = np.corrcoef(difficulty, length)[0, 1]
    assert correlation > 0.8, correlation


def train_batches(task, batch_size, seq_len, seed, start_batch=0, **fields):
    return DataSource(task, batch_size, seq_len, seed, **fields).train_batches(start_batch)


def eval_batches(corpus_name, batch_size, seq_len, n_batches, **fields):
    return DataSource("synthetic_vanilla", batch_size, seq_len, eval_corpus=corpus_name, **fields).eval_batches(n_batches)


def _documents_of(batch, row):
    seg = batch["segment_ids"][row]
    return [vocabulary.decode(batch["targets"][row][seg == s]) for s in np.unique(seg[seg > 0])]


def test_train_batches_shapes_masks_and_decoding():
    batch = next(train_batches("synthetic_thinking", 8, 256, seed=7))
    assert set(batch) == set(BATCH_KEYS)
    for key, value in batch.items():
        assert value.shape == (8, 256), key
        assert value.dtype == (np.float32 if key.endswith(("mask", "weights")) else np.int32), key
    w = batch["loss_weights"]
    assert np.array_equal(w, (batch["segment_ids"] > 0).astype(np.float32))
    assert np.array_equal(batch["thinking_mask"] + batch["raw_mask"], w)
    assert batch["thinking_mask"].sum() > 0 and batch["targets"].max() < 264
    # inputs are targets shifted right within each packed document, positions restart at 0
    for row in range(8):
        seg = batch["segment_ids"][row]
        for s in np.unique(seg[seg > 0]):
            idx = np.flatnonzero(seg == s)
            assert batch["positions"][row][idx[0]] == 0
            assert np.array_equal(batch["inputs"][row][idx[1:]], batch["targets"][row][idx[:-1]])
    # the documents decode back: the first full document of row 0 is a generated document
    # followed by its thinking, and the thinking mask covers exactly the <think> block
    # (samples longer than seq_len arrive in pieces: take a whole one)
    row, s = next((r, s) for r in range(8) for s in range(1, batch["segment_ids"][r].max() + 1)
                  if _documents_of(batch, r)[s - 1].endswith(THINK_CLOSE.strip())
                  and _documents_of(batch, r)[s - 1][0].isupper())
    seg = batch["segment_ids"][row] == s
    thinking = vocabulary.decode(batch["targets"][row][seg & (batch["thinking_mask"][row] > 0)])
    assert thinking.startswith(THINK_OPEN) and thinking.endswith(THINK_CLOSE)
    text = vocabulary.decode(batch["targets"][row][seg & (batch["raw_mask"][row] > 0)])
    assert "So " in text and "now has" in text and text.endswith(".")
    assert text + thinking == _documents_of(batch, row)[s - 1]


def test_vanilla_batches_are_the_raw_documents():
    batch = next(train_batches("synthetic_vanilla", 2, 256, seed=0))
    assert batch["thinking_mask"].sum() == 0
    seed = pipeline.train_stream_seed(0, 0)
    expected = [d.text for d, _ in zip(corpus.documents("train", seed), range(pipeline.PACKING_WINDOW))]
    decoded = [doc for row in range(2) for doc in _documents_of(batch, row)]
    assert len(decoded) >= 2 and set(decoded) <= set(expected)  # reordered for packing


@pytest.mark.slow
def test_train_batches_deterministic_and_resume_equals_skipping(monkeypatch):
    monkeypatch.setattr(pipeline, "CHUNK_TOKENS", 4 * 2 * 64)  # chunks of 4 batches
    def take(n, **kw):
        it = train_batches("synthetic_thinking_before_hard", 2, 64, seed=5, **kw)
        return [next(it) for _ in range(n)]
    full = take(9)
    again = take(9)
    for a, b in zip(full, again):
        for k in a:
            assert np.array_equal(a[k], b[k])
    for start in (4, 6):
        resumed = take(9 - start, start_batch=start)
        for a, b in zip(full[start:], resumed):
            for k in a:
                assert np.array_equal(a[k], b[k]), (start, k)
    other_host = take(1, host_index=1, host_count=2)[0]
    assert not np.array_equal(other_host["targets"], full[0]["targets"])


@pytest.mark.slow
def test_batch_cache_gives_the_pipelines_batches_and_survives_lost_blocks(monkeypatch, tmp_path):
    """With SCALING_BATCH_CACHE set, batches come back bit-identical to the pipeline's (from the
    start, resumed mid-block, after a block is deleted or torn), and a stored stream is read
    without running the pipeline at all."""
    monkeypatch.setattr(pipeline, "CHUNK_TOKENS", 4 * 2 * 64)  # chunks of 4 batches
    monkeypatch.setattr(batch_cache, "BLOCK_TOKENS", 3 * 2 * 64)  # blocks of 3 batches

    cache = {"cache_root": None}

    def take(n, **kw):
        it = train_batches("synthetic_thinking_before_hard", 2, 64, seed=5, **cache, **kw)
        return [next(it) for _ in range(n)]

    def same(xs, ys):
        return len(xs) == len(ys) and all(np.array_equal(x[k], y[k]) and x[k].dtype == y[k].dtype
                                          for x, y in zip(xs, ys) for k in x)

    reference = take(9)
    evaluation = eval_batches("synthetic", 2, 64, 2)
    cache["cache_root"] = tmp_path
    assert same(take(9), reference)
    blocks = sorted(tmp_path.glob("*/block-*.npz"))  # the reader runs ahead, so there may be more
    assert [b.name for b in blocks[:3]] == ["block-0000000.npz", "block-0000001.npz", "block-0000002.npz"]
    assert same(eval_batches("synthetic", 2, 64, 2, cache_root=tmp_path), evaluation)

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the pipeline ran although the stream is stored")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "train_stream", no_pipeline)
        m.setattr(pipeline, "_packed", no_pipeline)
        assert same(take(9), reference)
        assert same(take(4, start_batch=5), reference[5:])
        assert same(eval_batches("synthetic", 2, 64, 2, cache_root=tmp_path), evaluation)

    blocks[1].unlink()
    blocks[2].write_bytes(b"torn")
    assert same(take(9), reference)
    assert same(take(2, start_batch=4), reference[4:6])
    assert blocks[1].is_file() and blocks[2].stat().st_size > 100
    assert not list(tmp_path.glob("*/.*.tmp"))
    other_seed = train_batches("synthetic_thinking_before_hard", 2, 64, seed=6, cache_root=tmp_path)
    assert not np.array_equal(next(other_seed)["targets"], reference[0]["targets"])  # its own stream


def test_eval_batches_hold_out_raw_documents_with_hard_masks():
    batches = eval_batches("synthetic", 4, 256, 2)
    assert len(batches) == 2 and set(batches[0]) == set(EVAL_BATCH_KEYS)
    b = batches[0]
    assert b["thinking_mask"].sum() == 0 and b["hard_mask"].sum() > 0
    hard = vocabulary.decode(b["targets"][b["hard_mask"] > 0])
    assert hard.isdigit()
    assert np.all(b["target_bytes"] <= b["loss_weights"]) and b["target_bytes"].sum() < b["loss_weights"].sum()
    assert all(np.array_equal(x[k], y[k])
               for x, y in zip(batches, eval_batches("synthetic", 4, 256, 2)) for k in x)
    eval_docs = {d for b in batches for r in range(4) for d in _documents_of(b, r)}
    train_docs = {make_document("train", s, i).text for s in (0, pipeline.train_stream_seed(0, 0)) for i in range(2000)}
    assert not eval_docs & train_docs


def test_teacher_flops_and_unknown_task():
    assert pipeline.teacher_flops_per_thinking_token("synthetic_vanilla") == 0.0
    assert pipeline.teacher_flops_per_thinking_token("synthetic_thinking") >= 0.0
    for task in ("synthetic_vanilla", "synthetic_thinking"):  # the source's light answer is the registry's
        assert DataSource(task, 2, 64).teacher_flops_per_thinking_token() == \
            pipeline.teacher_flops_per_thinking_token(task)
    with pytest.raises(ValueError, match="unknown data task 'nope'"):
        train_batches("nope", 2, 64, 0)


@pytest.mark.slow
def test_cache_backed_tasks(tmp_path):
    cache_dir = tmp_path / "mycorpus"
    summary = augment(AugmentConfig(cache_dir=str(cache_dir), n_documents=300), progress=False)
    assert summary["written"] + summary["skipped"] == 300
    records = list(cache_lib.read_records(cache_dir))
    by_text = {r["text"]: r for r in records}
    batch = next(train_batches(f"{cache_dir}:thinking", 8, 256, seed=0))
    docs = [d for row in range(8) for d in _documents_of(batch, row)]
    checked = 0
    for doc in docs:  # samples longer than seq_len arrive as pieces: check whole first pieces
        text, _, thinking = doc.partition(THINK_OPEN)
        if text in by_text:
            record = by_text[text]
            assert not corpus.is_held_out(record["doc_hash"])
            expected = formats.thinking_block(record["thinking"]) if record["thinking"] else ""
            assert expected.startswith(THINK_OPEN + thinking) if thinking else not expected
            checked += 1
    assert checked >= 3
    assert batch["thinking_mask"].sum() > 0
    assert "mycorpus_thinking" in seqio.TaskRegistry.names()
    held_out = eval_batches(str(cache_dir), 2, 256, 1)[0]
    assert held_out["thinking_mask"].sum() == 0
    for row in range(2):
        for doc in _documents_of(held_out, row):
            if doc in by_text:
                assert corpus.is_held_out(by_text[doc]["doc_hash"])
    assert pipeline.teacher_flops_per_thinking_token("mycorpus_thinking") == 0.0
    train_records = [r for r in records if not corpus.is_held_out(r["doc_hash"])]
    assert pipeline.source_raw_tokens("mycorpus_vanilla") == sum(len(r["text"].encode()) + 1 for r in train_records)
    assert pipeline.source_raw_tokens("synthetic_thinking") == float("inf")


@pytest.mark.slow
def test_sentencepiece_vocabulary_for_a_cache(tmp_path):
    import sentencepiece as spm
    texts = [make_document("train", 0, i).text for i in range(400)]
    (tmp_path / "train.txt").write_text("\n".join(texts))
    spm.SentencePieceTrainer.train(input=str(tmp_path / "train.txt"), model_prefix=str(tmp_path / "sp"),
                                   vocab_size=120, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   user_defined_symbols=["<think>", "</think>"], character_coverage=1.0,
                                   minloglevel=2)
    cache_dir = tmp_path / "spcorpus"
    augment(AugmentConfig(cache_dir=str(cache_dir), n_documents=200), progress=False)
    names = pipeline.register_cache_tasks(str(cache_dir), sentencepiece_model=str(tmp_path / "sp.model"))
    vocab = seqio.get_mixture_or_task(names[1]).output_features["targets"].vocabulary
    assert isinstance(vocab, seqio.Vocabulary) and isinstance(vocab.base, vocabulary.SentencePieceVocabulary)
    reference = seqio.SentencePieceVocabulary(str(tmp_path / "sp.model"))  # the ids seqio's own would give
    assert vocab.encode(texts[0]) == reference.encode(texts[0]) and vocab.vocab_size == reference.vocab_size
    ids = reference.encode(texts[1]) + [reference.eos_id, 5, 999]
    assert vocab.decode(ids) == reference.decode(ids) and vocab.base.decode(ids) == reference.decode(ids)
    batch = eval_batches(str(cache_dir), 2, 128, 1)[0]
    seg = batch["segment_ids"][0]
    first = batch["targets"][0][seg == 1]
    text = vocab.decode(first[first != vocab.eos_id].tolist())
    assert text in {r["text"] for r in cache_lib.read_records(cache_dir)}
    assert batch["target_bytes"][0][seg == 1].sum() == pytest.approx(len(text.encode()) + 1, abs=1)
    thinking = next(train_batches(names[1], 2, 128, seed=0))
    assert thinking["thinking_mask"].sum() > 0 and thinking["targets"].max() < 120


def test_batch_cache_stores_the_part_of_a_block_a_stopped_reader_produced(tmp_path):
    """A reader that stops inside a block leaves the batches it produced; a reader in another
    process reads them and resumes the producer right after them, completing the block, and the
    next stream in the same process continues the open producer instead of starting it again."""
    stream = [{"inputs": np.full((2, 4), i, np.int32)} for i in range(12)]
    started = []
    open_pipelines = batch_cache.OpenPipelines()

    def produce(first):
        started.append(first)
        return (batch for batch in stream[first:])  # a generator, as the pipeline is

    def read(n, start=0, folder=tmp_path):
        it = batch_cache.cached_stream(folder, ("inputs",), 3, start, produce, open_pipelines)
        out = [int(next(it)["inputs"][0, 0]) for _ in range(n)]
        it.close()
        return out

    assert read(4) == [0, 1, 2, 3] and started == [0]
    with np.load(tmp_path / "block-0000001.npz") as partial:
        assert partial["inputs"].shape == (1, 2, 4)  # batch 3 only
    elsewhere = tmp_path / "copy"  # what another process finds: the stored blocks, no open producer
    elsewhere.mkdir()
    for block in tmp_path.glob("block-*.npz"):
        shutil.copy(block, elsewhere / block.name)
    assert read(7, folder=elsewhere) == list(range(7)) and started == [0, 4]  # 0-3 read, the producer from 4
    assert read(7) == list(range(7)) and started == [0, 4]  # this folder's producer was left at 4
    with np.load(tmp_path / "block-0000002.npz") as partial:
        assert partial["inputs"][:, 0, 0].tolist() == [6]
    assert read(3, start=4) == [4, 5, 6] and started == [0, 4]  # all stored now
    open_pipelines.close()  # what a source's close does: the next stream starts its own producer
    assert read(9) == list(range(9)) and started == [0, 4, 7]
    for block in tmp_path.glob("block-*.npz"):
        with np.load(block) as stored:
            assert stored["inputs"].dtype == np.int32, block  # stored as produced


def test_a_cache_without_held_out_documents_is_refused_before_any_compute(tmp_path):
    """Evaluating on a cache whose documents all fall in the training split names the binding
    in one line (the run's checks), instead of a tf.data generator's traceback."""
    from scaling.configuration import ConfigError
    from scaling.model import ModelConfig
    from scaling.train_config import TrainConfig

    cache_dir = tmp_path / "tiny"
    augment(AugmentConfig(cache_dir=str(cache_dir), n_documents=1), progress=False)
    assert not any(corpus.is_held_out(r["doc_hash"]) for r in cache_lib.read_records(cache_dir))
    config = TrainConfig(model_dir=str(tmp_path / "run"), model=ModelConfig(), task=f"{cache_dir}:vanilla",
                         eval_corpus=str(cache_dir))
    with pytest.raises(ConfigError, match=r"train.eval_corpus: .*tiny': none of the cache's documents is held out"):
        config.check()
    augment(AugmentConfig(cache_dir=str(cache_dir), n_documents=12), progress=False)  # some are held out now
    config.check()


SP_FIELDS = {"task": "synthetic_thinking", "batch_size": 2, "seq_len": 64, "seed": 3,
             "vocabulary": "synthetic_sp256", "vocab_size": 264}


def targets_read_without_tensorflow(tmp_path, script: str) -> np.ndarray:
    """Run `script` (which sets `targets`, a list of arrays) in a fresh process; assert that it
    imported neither TensorFlow nor seqio, and return the stacked targets."""
    out = tmp_path / "targets.npy"
    program = (f"import sys, numpy as np; from pathlib import Path; from scaling.data.source import DataSource; "
               f"{script}; print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules)); "
               f"np.save(sys.argv[1], np.stack(targets))")
    proc = subprocess.run([sys.executable, "-c", program, str(out)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    return np.load(out)


@pytest.mark.slow
def test_a_run_that_produces_its_batches_runs_the_pipeline_in_a_process_of_its_own(tmp_path):
    """The synthetic tasks' batches are produced by a child process (scaling/data/producer.py):
    bit for bit the pipeline's own, and the training process imports neither TensorFlow nor seqio
    (tf.data running beside the step on its core made the demo's p200k step 2.5x slower)."""
    pipeline.use_vocabulary("synthetic_sp256", 264)
    expected = list(itertools.islice(pipeline.train_stream("synthetic_thinking", 2, 64, 3, 4), 3))
    expected_eval = pipeline.eval_list("synthetic_vanilla", 2, 64, 2)
    produced = targets_read_without_tensorflow(
        tmp_path, f"s = DataSource(**{SP_FIELDS!r}); it = s.train_batches(4); b = [next(it) for _ in range(3)]; "
                  f"e = s.eval_batches(2); it.close(); targets = [x['targets'] for x in b] + [e[1]['targets']]")
    assert all(np.array_equal(produced[i], expected[i]["targets"]) for i in range(3))
    assert np.array_equal(produced[3], expected_eval[1]["targets"])


def test_a_failure_in_the_producer_process_is_raised_in_the_run_with_its_message():
    from scaling.data import producer
    with pytest.raises(ValueError, match="host_index 5 out of range for host_count 2"):
        next(producer.produced({"kind": "train", "task": "synthetic_vanilla", "vocabulary": "bytes",
                                "vocab_size": None, "batch_size": 2, "seq_len": 64, "seed": 0, "first_batch": 0,
                                "host_index": 5, "host_count": 2}))


@pytest.mark.slow
def test_a_run_on_stored_batches_imports_neither_tensorflow_nor_seqio(tmp_path):
    """Start-up: the trainer's modules, the run's config check and a data source whose batches
    the cache holds read them without importing TensorFlow or seqio (3 s of every sweep process)."""
    source = DataSource(**SP_FIELDS, cache_root=tmp_path)
    stored = list(itertools.islice(source.train_batches(), 5))
    evaluation = source.eval_batches(2)
    source.close()
    read = targets_read_without_tensorflow(
        tmp_path, f"import scaling.train; from scaling.model_config import ModelConfig; "
                  f"from scaling.train_config import TrainConfig; "
                  f"TrainConfig(model_dir={str(tmp_path / 'run')!r}, task='synthetic_thinking', "
                  f"model=ModelConfig(vocabulary='synthetic_sp256', vocab_size=264, seq_len=64)).check(); "
                  f"s = DataSource(**{SP_FIELDS!r}, cache_root=Path({str(tmp_path)!r})); "
                  f"it = s.train_batches(1); b = next(it); e = s.eval_batches(2); "
                  f"targets = [b['targets'], e[1]['targets']]")
    assert np.array_equal(read[0], stored[1]["targets"]) and np.array_equal(read[1], evaluation[1]["targets"])
