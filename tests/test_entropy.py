"""The synthetic corpus's ground truth (scaling.data.entropy) against independent computations:
forward enumeration of a tiny generator, empirical frequencies of the generator's own documents,
and the token counts of the trainer's packed evaluation batches."""

import collections
import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from scaling.data import corpus, entropy, vocabulary

TINY = corpus.Generator(names=("Mia", "Noah", "Ava"), items=("pears", "eggs"), places=("Oslo", "Rome"),
                        colours=("red",), top_small=4, top_large=5, large_from=2, max_value=12, max_count=3,
                        max_fillers=2)
TINY_MIX = {0: 0.3, 1: 0.4, 2: 0.3}


@pytest.fixture(scope="module", params=["eval", "train"])
def tiny(request):
    split = request.param
    return split, entropy.exact_distribution(split, TINY_MIX, TINY)


def test_log_prob_matches_forward_enumeration(tiny):
    split, dist = tiny
    assert abs(sum(dist.values()) - 1) < 1e-9
    acceptance = entropy.Acceptance(split, TINY)
    for text, p in dist.items():
        assert math.exp(entropy.log_prob(text, split, TINY_MIX, TINY, acceptance)) == pytest.approx(p, rel=1e-9), text
    assert acceptance.estimated == 0  # every Z of the tiny generator is summed exactly
    some = next(t for t in dist if " So " in t)
    wrong_answer = some.replace("now has ", "now has 1")
    assert entropy.log_prob(wrong_answer, split, TINY_MIX, TINY, acceptance) == -math.inf
    assert entropy.log_prob("Mia has 2 pears.", split, TINY_MIX, TINY, acceptance) == -math.inf


def _pooled_chi_square(counts: collections.Counter, probs: dict[str, float], n: int, min_expected: float = 40):
    """Chi-square of the counts against `probs`, texts pooled (in order of probability) into
    bins of at least `min_expected` expected documents; returns (statistic, degrees of freedom)."""
    bins, expected, observed = [], 0.0, 0
    for text in sorted(probs, key=probs.get):
        expected += n * probs[text]
        observed += counts.get(text, 0)
        if expected >= min_expected:
            bins.append((observed, expected))
            expected, observed = 0.0, 0
    if bins and expected:
        last_o, last_e = bins.pop()
        bins.append((last_o + observed, last_e + expected))
    return sum((o - e) ** 2 / e for o, e in bins), len(bins) - 1


def test_generated_documents_follow_log_prob(tiny):
    """Independent of the enumeration: the generator's own documents, counted."""
    split, dist = tiny
    n = 40_000
    texts = [d.text for d in itertools.islice(corpus.documents(split, 7, mix=TINY_MIX, generator=TINY), n)]
    counts = collections.Counter(texts)
    assert set(counts) <= set(dist), "the generator wrote a text the enumeration does not know"
    acceptance = entropy.Acceptance(split, TINY)
    probs = {t: math.exp(entropy.log_prob(t, split, TINY_MIX, TINY, acceptance)) for t in dist}
    statistic, df = _pooled_chi_square(counts, probs, n)
    assert statistic < stats.chi2.ppf(1 - 1e-6, df), (statistic, df)

    # The test has power: on the eval split (Z from 0.06 to 0.3 by context; on train it is near
    # 0.9 everywhere, too close to tell at this n) the naive distribution that drops the rejected
    # outcomes without renormalising each context (p times Z, renormalised overall) is rejected.
    if split != "eval":
        return
    naive = {}
    for text in dist:
        terms = entropy._terms(text, acceptance, TINY_MIX)
        naive[text] = sum(term * acceptance.cache[context][0] for (_, context), term in terms.items())
    total = sum(naive.values())
    naive = {t: p / total for t, p in naive.items()}
    statistic_naive, df_naive = _pooled_chi_square(counts, naive, n)
    assert statistic_naive > stats.chi2.ppf(1 - 1e-6, df_naive), (statistic_naive, df_naive)

    # Entropy per document: the empirical plug-in estimate (Miller-Madow corrected) against H.
    h = -sum(p * math.log(p) for p in probs.values())
    freqs = np.array(list(counts.values()), float) / n
    plug_in = -np.sum(freqs * np.log(freqs)) + (len(counts) - 1) / (2 * n)
    spread = math.sqrt(sum(p * math.log(p) ** 2 for p in probs.values()) - h * h) / math.sqrt(n)
    assert abs(plug_in - h) < 5 * spread + 0.01, (plug_in, h, spread)


def test_entropy_per_token_estimator_matches_exact(tiny):
    split, _ = tiny
    exact = entropy.exact_entropy(vocabulary.encode, split, TINY_MIX, TINY)
    estimate = entropy.entropy(vocabulary.encode, n_documents=3000, split=split, mix=TINY_MIX, generator=TINY)
    assert estimate["stderr_acceptance"] == 0 and not estimate["is_lower_bound"] and estimate["documents_cut"] == 0
    assert 0 < estimate["stderr"] < 0.01
    assert abs(estimate["entropy_nats_per_token"] - exact["entropy_nats_per_token"]) < 4 * estimate["stderr"], \
        (estimate, exact)
    assert estimate["tokens_per_document"] == pytest.approx(exact["tokens_per_document"], rel=0.05)


def test_sampled_acceptance_agrees_with_exact():
    """Z estimated from the generator's own draws (as for the default corpus's large contexts)
    gives the exact figure within the standard error it reports for itself."""
    kwargs = dict(n_documents=1500, split="eval", mix=TINY_MIX, generator=TINY)
    exact = entropy.entropy(vocabulary.encode, **kwargs)
    sampled = entropy.entropy(vocabulary.encode, exact_limit=0, zero_exact_limit=0, z_samples=400,
                              chain_z_samples=400, **kwargs)
    assert "contexts estimated" in sampled["method"] and sampled["stderr_acceptance"] > 0
    assert abs(sampled["entropy_nats_per_token"] - exact["entropy_nats_per_token"]) < 4 * sampled["stderr_acceptance"]


def test_default_corpus_rejection_is_accounted_for():
    """On the default corpus every eval document has a finite log p, and Z sits near the hash
    split's 1/10 (a wrong renormalisation would move the entropy by log 10 per document)."""
    acceptance = entropy.Acceptance("eval")
    docs = list(itertools.islice(corpus.documents("eval", 0), 200))
    logs = [entropy.log_prob(d.text, acceptance=acceptance) for d in docs]
    assert all(math.isfinite(x) and x < 0 for x in logs)
    zs = [z for z, _ in acceptance.cache.values()]
    assert 0.05 < np.median(zs) < 0.15
    train = entropy.Acceptance("train")
    doc = corpus.make_document("train", 0, 0)
    assert math.isfinite(entropy.log_prob(doc.text, "train", acceptance=train))
    # an eval document is not a train document (the hash split), and vice versa
    assert entropy.log_prob(docs[0].text, "train", acceptance=train) == -math.inf


def test_trainer_tokens_match_the_packed_eval_batches():
    """Each packed segment of the trainer's eval batches is one piece of a document as
    trainer_tokens counts it (seq_len - 1 tokens at most, plus its loss-weighted eos)."""
    from scaling.data import pipeline
    from scaling.data.source import DataSource

    seq_len = 128  # short enough that many documents are cut
    batches = DataSource("synthetic_vanilla", 8, seq_len).eval_batches(6)
    segments = collections.Counter()
    for batch in batches:
        for row in range(batch["segment_ids"].shape[0]):
            ids, weights = batch["segment_ids"][row], batch["loss_weights"][row]
            for s in set(ids[ids > 0].tolist()):
                segments[int(weights[ids == s].sum())] += 1
    pieces, cut = collections.Counter(), 0
    for doc in itertools.islice(corpus.documents("eval", pipeline.EVAL_SEED), 4 * pipeline.PACKING_WINDOW):
        total, n_pieces = entropy.trainer_tokens(doc, vocabulary.encode, seq_len)
        ids = total - n_pieces
        lengths = [seq_len] * (n_pieces - 1) + [ids - (seq_len - 1) * (n_pieces - 1) + 1]
        assert sum(lengths) == total and all(0 < x <= seq_len for x in lengths)
        pieces.update(lengths)
        cut += n_pieces > 1
    assert cut > 0 and sum(segments.values()) > 20
    assert not segments - pieces, f"packed segments no document piece explains: {segments - pieces}"


def test_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match="n_documents"):
        entropy.entropy(vocabulary.encode, n_documents=1)
    with pytest.raises(ValueError, match="seq_len"):
        entropy.entropy(vocabulary.encode, n_documents=10, seq_len=1)
    with pytest.raises(ValueError, match="split"):
        entropy.Acceptance("test")
    too_small = corpus.Generator(names=("Mia", "Noah"), items=("eggs",), places=("Oslo",), colours=("red",),
                                 top_small=1, top_large=1, max_count=1, max_fillers=1)
    with pytest.raises(ValueError, match="never return"):
        entropy.exact_distribution("eval", {1: 1.0}, too_small)


def test_describe_corpus_prints_the_floor(run_cli, tmp_path):
    proc = run_cli("describe", "--corpus=synthetic", "--documents", "300", check=True)
    out = json.loads(proc.stdout)
    direct = entropy.entropy(vocabulary.encode, n_documents=300, seq_len=256)
    assert out["entropy_nats_per_token"] == pytest.approx(direct["entropy_nats_per_token"], rel=1e-12)
    assert out["vocabulary"] == "bytes" and 0 < out["stderr"] < 0.01 and out["documents"] == 300

    # another vocabulary changes the tokens, never the documents' entropy
    import sentencepiece as spm
    lines = tmp_path / "corpus.txt"
    lines.write_text("\n".join(d.text for d in itertools.islice(corpus.documents("train", 0), 2000)) + "\n")
    spm.SentencePieceTrainer.train(input=str(lines), model_prefix=str(tmp_path / "sp"), vocab_size=120,
                                   split_digits=True, user_defined_symbols=["<think>", "</think>"],
                                   bos_id=-1, pad_id=0, eos_id=1, unk_id=2)
    proc = run_cli("describe", "--corpus=synthetic", "--documents", "300", f"--vocabulary={tmp_path / 'sp.model'}",
                   check=True)
    sp = json.loads(proc.stdout)
    assert sp["entropy_nats_per_document"] == pytest.approx(out["entropy_nats_per_document"], rel=1e-12)
    assert sp["tokens_per_document"] < 0.8 * out["tokens_per_document"]
    assert sp["entropy_nats_per_token"] > out["entropy_nats_per_token"]


@pytest.mark.parametrize("flags, message", [
    (("--documents", "1"), "--documents must be at least 2"),
    (("--vocabulary=/nonexistent.model",), "no such file"),
    (("--gin_file=gin/models/p1m.gin",), "give no model"),
])
def test_describe_corpus_bad_input(run_cli, flags, message):
    proc = run_cli("describe", "--corpus=synthetic", *flags)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_describe_corpus_rejects_a_file_that_is_not_a_model(run_cli, tmp_path):
    junk = tmp_path / "junk.model"
    junk.write_text("not a model")
    proc = run_cli("describe", "--corpus=synthetic", f"--vocabulary={junk}")
    assert proc.returncode == 2 and "not a usable SentencePiece model" in proc.stderr, proc.stderr
