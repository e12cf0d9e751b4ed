"""Ground truth from the generator: each document's exact log-probability, and the corpus's
irreducible loss in nats per token of a vocabulary, counted as the trainer counts it.

The corpus is a known probabilistic program (scaling/data/corpus.make_document), so the
probability of a document as emitted is computable. make_document draws, in order: the ordered
pair (name, other) uniformly, the items uniformly, the difficulty d from the mix; then
- d = 0: count and fillers, redrawn together until the hash of the whole text falls on the
  split's side;
- d >= 1: the chain (start, then per step the operation, overridden past max_value, and its
  operand), redrawn until the split key (the chain alone for d >= 2, name|items|chain for d = 1)
  falls on the split's side; then, never redrawn, a filler sentence with probability 1/2.

Renormalisation of the rejection. The loop redraws only the outcome (count and fillers, or the
chain), never the context drawn before it (names, items, d). So for a context c and an outcome o
p(o | c, split) = p(o | c) 1[split(o) = split] / Z(c),  Z(c) = sum over o' on the split's side of
p(o' | c): the acceptance probability of the loop in that context (for d = 0, c includes
`other`, which the fillers may mention; for d >= 2 the split key is the arithmetic alone, so Z
depends on d only). The probability of a text is the sum over every choice sequence that writes
it: over the unnamed second person `other` when the text never mentions them (each with its own
Z), and over the raw operation draws that the multiplication override merges.

Z is summed exactly where a context's outcomes are few enough (chains up to `exact_limit`
outcomes: difficulties 1-3 of the default corpus), otherwise estimated from draws of the
generator's own code (`z_samples` per difficulty-0 context, `chain_z_samples` per long chain
difficulty). An estimated Z's variance, (1 - Z)/(n Z) in log Z, is carried into the standard
error by the delta method; the estimate of log Z is corrected for its second-order bias
(E[log z] ~ log Z - (1 - Z)/(2 n Z), 0.011 nats per difficulty-0 document at 400 draws and
Z ~ 0.1, i.e. about 1e-5 nats per token before the correction).

The irreducible loss. The trainer scores held-out raw documents (pipeline.eval_batches: the
"validation" split = corpus.documents("eval", EVAL_SEED)), each encoded as formats.raw_segments
(hard span as its own segment) and cut by split_to_length into pieces of at most seq_len - 1
tokens, each piece followed by an eos that is loss-weighted; packed rows keep documents apart
(segment ids, positions restart), and the first token of a piece is predicted from the start.
A model that knew the generator would then pay -log p(document) on a whole document and its
eos, so the floor is E[-log p(doc)] / E[tokens per doc + 1]. A document cut into pieces loses
context in its later pieces and pays an extra eos per piece: then the same ratio, with the
trainer's token count, is a lower bound (`is_lower_bound` in the result).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from collections import defaultdict
from collections.abc import Callable, Mapping

from scaling.data import corpus, formats
from scaling.data.corpus import DEFAULT_GENERATOR, DEFAULT_MIX, Generator

EXACT_LIMIT = 1_000_000   # chain difficulties with at most this many outcomes have Z summed exactly
ZERO_EXACT_LIMIT = 20_000  # difficulty-0 contexts with at most this many outcomes likewise
Z_SAMPLES = 400            # draws per difficulty-0 context otherwise (there are thousands of them)
CHAIN_Z_SAMPLES = 100_000  # draws per chain difficulty otherwise (a handful of them)

_SENTENCES = re.compile(r"(?<=\.) ")
_LAST = re.compile(r"(\S+) is happy with (\d+) (\S+)\.")


@functools.lru_cache(maxsize=None)
def _step_probs(value: int, top: int, g: Generator) -> dict[tuple[str, int], float]:
    """P(op, b) of one chain step from `value`, as _chain draws it (the override included)."""
    out: dict[tuple[str, int], float] = defaultdict(float)
    choices = ["+", "*"] + (["-"] if value > 1 else [])
    for op in choices:
        if op == "*" and value * 3 > g.max_value:
            op = "-" if value > 1 else "+"
        bs = [2, 3] if op == "*" else range(1, min(top, value - 1) + 1) if op == "-" else range(1, top + 1)
        for b in bs:
            out[(op, b)] += 1 / len(choices) / len(bs)
    return dict(out)


def _apply(value: int, op: str, b: int) -> int:
    return value + b if op == "+" else value - b if op == "-" else value * b


@functools.lru_cache(maxsize=None)
def _paths(value: int, left: int, top: int, g: Generator) -> int:
    """How many distinct step sequences of length `left` start from `value`."""
    if left == 0:
        return 1
    return sum(_paths(_apply(value, op, b), left - 1, top, g) for op, b in _step_probs(value, top, g))


def _chain_outcomes(d: int, g: Generator, limit: float = math.inf):
    """Every chain of `d` steps as (its key, its probability); None if there are more than `limit`."""
    top = g.top(d)
    if sum(_paths(s, d, top, g) for s in range(1, top + 1)) > limit:
        return None
    out = []

    def walk(value, key, p, left):
        if not left:
            out.append((key, p))
            return
        for (op, b), q in _step_probs(value, top, g).items():
            walk(_apply(value, op, b), f"{key}{op}{b}", p * q, left - 1)

    for start in range(1, top + 1):
        walk(start, str(start), 1 / top, d)
    return out


def _zero_outcomes(name: str, other: str, items: str, g: Generator):
    """Every difficulty-0 attempt's text with its probability."""
    fillers = corpus.filler_templates(name, other, items, g)
    for count in range(1, g.max_count + 1):
        for k in range(1, g.max_fillers + 1):
            for combo in itertools.product(fillers, repeat=k):
                p = 1 / g.max_count / g.max_fillers * math.prod(q for q, _ in combo)
                yield corpus.zero_text(name, items, count, [s for _, s in combo]), p


class Acceptance:
    """Z per context of the rejection loop: P(the split matches) under the attempt's distribution;
    with the variance of log Z (0 where exact)."""

    def __init__(self, split: str, generator: Generator = DEFAULT_GENERATOR, exact_limit: int = EXACT_LIMIT,
                 z_samples: int = Z_SAMPLES, chain_z_samples: int = CHAIN_Z_SAMPLES, seed: int = 0,
                 zero_exact_limit: int = ZERO_EXACT_LIMIT):
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        if z_samples < 1 or chain_z_samples < 1:
            raise ValueError(f"z_samples and chain_z_samples must be positive, got {z_samples}, {chain_z_samples}")
        self.want = split == "eval"
        self.g, self.exact_limit, self.z_samples, self.seed = generator, exact_limit, z_samples, seed
        self.chain_z_samples, self.zero_exact_limit = chain_z_samples, zero_exact_limit
        self.estimated = 0  # contexts whose Z was estimated by sampling
        self.cache: dict[tuple, tuple[float, float]] = {}
        self._chains: dict[int, list | None] = {}

    def _estimate(self, hits: int, n: int, context) -> tuple[float, float]:
        if hits == 0:
            raise ValueError(f"no accepted draw among {n} for context {context}: raise z_samples")
        self.estimated += 1
        z = hits / n
        var = (1 - z) / (n * z)  # of log z (delta method); E[log z] ~ log Z - var / 2
        return z * math.exp(var / 2), var

    def chain(self, d: int, name: str, items: str) -> tuple[float, float]:
        context = ("chain", d) if d >= 2 else ("chain", d, name, items)
        if context not in self.cache:
            if d not in self._chains:
                self._chains[d] = _chain_outcomes(d, self.g, self.exact_limit)
            outcomes = self._chains[d]
            if outcomes is not None:  # keys as corpus._split_key writes them
                prefix = "" if d >= 2 else f"{name}|{items}|"
                z = sum(p for key, p in outcomes if corpus.is_held_out(prefix + key) == self.want)
                self.cache[context] = (z, 0.0)
            else:
                rng = random.Random(f"z:{context}:{self.seed}")  # the generator's own drawing code
                hits = sum(corpus.is_held_out(corpus._split_key(corpus._chain(rng, d, self.g), name, items)) == self.want
                           for _ in range(self.chain_z_samples))
                self.cache[context] = self._estimate(hits, self.chain_z_samples, context)
            if self.cache[context][0] == 0:
                raise ValueError(f"context {context}: no outcome falls on the split's side, so make_document "
                                 "would never return (a generator too small for the hash split)")
        return self.cache[context]

    def zero(self, name: str, other: str, items: str) -> tuple[float, float]:
        context = ("zero", name, other, items)
        if context not in self.cache:
            g = self.g
            size = g.max_count * sum((5 + 2 * len(g.places) + len(g.colours) - 3) ** k for k in range(1, g.max_fillers + 1))
            if size <= self.zero_exact_limit:
                z = sum(p for text, p in _zero_outcomes(name, other, items, g) if corpus.is_held_out(text) == self.want)
                if z == 0:
                    raise ValueError(f"context {context}: no outcome falls on the split's side, so make_document "
                                     "would never return (a generator too small for the hash split)")
                self.cache[context] = (z, 0.0)
            else:
                rng = random.Random(f"z:{context}:{self.seed}")
                hits = 0
                for _ in range(self.z_samples):  # the generator's own drawing code
                    count = rng.randint(1, g.max_count)
                    sentences = [corpus._filler(rng, name, other, items, g) for _ in range(rng.randint(1, g.max_fillers))]
                    hits += corpus.is_held_out(corpus.zero_text(name, items, count, sentences)) == self.want
                self.cache[context] = self._estimate(hits, self.z_samples, context)
        return self.cache[context]


def _terms(text: str, acceptance: Acceptance, mix: Mapping[int, float]) -> dict[tuple, float]:
    """p(text, other = o) / Z for each second person o that can produce the text, keyed by
    (o, the acceptance context it was divided by): the terms whose sum is p(text)."""
    g = acceptance.g
    sentences = _SENTENCES.split(text)
    last = _LAST.fullmatch(sentences[-1])
    if not last:
        return {}
    name, value, items = last.group(1), int(last.group(2)), last.group(3)
    if name not in g.names or items not in g.items:
        return {}
    base = 1 / (len(g.names) * (len(g.names) - 1)) / len(g.items) / sum(mix.values())
    chained = len(sentences) >= 3 and sentences[-2].startswith("So ")
    out: dict[tuple, float] = {}
    for other in (o for o in g.names if o != name):
        fill = {}
        for q, s in corpus.filler_templates(name, other, items, g):
            fill[s] = fill.get(s, 0.0) + q
        if not chained:
            fillers = sentences[:-2]
            if mix.get(0, 0) == 0 or not 1 <= len(fillers) <= g.max_fillers or not 1 <= value <= g.max_count:
                continue
            q = mix[0] / g.max_count / g.max_fillers * math.prod(fill.get(s, 0.0) for s in fillers)
            if q == 0 or corpus.zero_text(name, items, value, fillers) != text or corpus.is_held_out(text) != acceptance.want:
                continue
            z, _ = acceptance.zero(name, other, items)
            out[(other, ("zero", name, other, items))] = base * q / z
            continue
        head = 1 if sentences[0] in fill else 0
        filler = sentences[0] if head else None
        m = re.fullmatch(rf"{re.escape(name)} has (\d+) {re.escape(items)}\.", sentences[head])
        d = len(sentences) - head - 3
        if not m or d < 1 or mix.get(d, 0) == 0:
            continue
        top, start = g.top(d), int(m.group(1))
        sentence_ops = {corpus._op_sentence(name, other, items, op, b): (op, b)
                        for op, b in [("*", 2), ("*", 3)] + [(op, b) for op in "+-" for b in range(1, g.max_value + 1)]
                        if op == "*" or b <= top}
        ops = [sentence_ops.get(s) for s in sentences[head + 1:head + 1 + d]]
        if None in ops or not 1 <= start <= top:
            continue
        q, v = mix[d] / top * (0.5 * fill[filler] if filler else 0.5), start
        for op, b in ops:
            q *= _step_probs(v, top, g).get((op, b), 0.0)
            v = _apply(v, op, b)
        chain = corpus._Chain(start, tuple(ops))
        if (q == 0 or corpus.chain_text(name, other, items, chain, filler)[1] != text
                or corpus.is_held_out(corpus._split_key(chain, name, items)) != acceptance.want):
            continue
        z, _ = acceptance.chain(d, name, items)
        out[(other, ("chain", d) if d >= 2 else ("chain", d, name, items))] = base * q / z
    return out


def log_prob(text: str, split: str = "eval", mix: Mapping[int, float] = DEFAULT_MIX,
             generator: Generator = DEFAULT_GENERATOR, acceptance: Acceptance | None = None) -> float:
    """log p(text) of a document of `split` as make_document emits it (-inf if it cannot)."""
    acceptance = acceptance or Acceptance(split, generator)
    total = sum(_terms(text, acceptance, mix).values())
    return math.log(total) if total > 0 else -math.inf


def exact_distribution(split: str = "eval", mix: Mapping[int, float] = DEFAULT_MIX,
                       generator: Generator = DEFAULT_GENERATOR) -> dict[str, float]:
    """p(text) by forward enumeration of every choice sequence (the rejection loop renormalised
    per context): an independent check of log_prob, feasible only for tiny generators."""
    g, want, dist = generator, split == "eval", defaultdict(float)
    total_mix = sum(mix.values())
    for name, other in itertools.permutations(g.names, 2):
        for items in g.items:
            p_context = 1 / (len(g.names) * (len(g.names) - 1)) / len(g.items)
            for d, w in mix.items():
                if d == 0:
                    outcomes = [(t, p) for t, p in _zero_outcomes(name, other, items, g)]
                    kept = [(t, p) for t, p in outcomes if corpus.is_held_out(t) == want]
                else:
                    kept = []
                    for chain, p in _enumerate_chains(d, g):
                        if corpus.is_held_out(corpus._split_key(chain, name, items)) != want:
                            continue
                        kept.append((corpus.chain_text(name, other, items, chain, None)[1], p * 0.5))
                        kept += [(corpus.chain_text(name, other, items, chain, s)[1], p * 0.5 * q)
                                 for q, s in corpus.filler_templates(name, other, items, g)]
                z = sum(p for _, p in kept)
                if z == 0:
                    raise ValueError(f"context {(name, other, items, d)}: no outcome falls on the {split} side, so "
                                     "make_document would never return (a generator too small for the hash split)")
                for t, p in kept:
                    dist[t] += p_context * w / total_mix * p / z
    return dict(dist)


def _enumerate_chains(d: int, g: Generator):
    """Chains by the raw choice sequence (op drawn, then overridden), merged only by the caller."""
    top = g.top(d)

    def walk(value, ops, p, left):
        if not left:
            yield ops, p
            return
        choices = ["+", "*"] + (["-"] if value > 1 else [])
        for op in choices:
            if op == "*" and value * 3 > g.max_value:
                op = "-" if value > 1 else "+"
            bs = [2, 3] if op == "*" else list(range(1, min(top, value - 1) + 1)) if op == "-" else list(range(1, top + 1))
            for b in bs:
                yield from walk(_apply(value, op, b), ops + ((op, b),), p / len(choices) / len(bs), left - 1)

    for start in range(1, top + 1):
        for ops, p in walk(start, (), 1 / top, d):
            yield corpus._Chain(start, ops), p


def trainer_tokens(doc: corpus.Document, encode: Callable[[str], list[int]],
                   seq_len: int | None = None) -> tuple[int, int]:
    """(tokens the trainer scores for a held-out document, pieces it is cut into): the raw
    segments' ids (pipeline._synthetic_examples), cut by split_to_length into pieces of at most
    seq_len - 1, plus one eos per piece. seq_len None: never cut."""
    n = len(formats.annotated_ids(formats.raw_segments(doc), encode))
    pieces = 1 if seq_len is None else max(1, -(-n // (seq_len - 1)))
    return n + pieces, pieces


def entropy(encode: Callable[[str], list[int]], n_documents: int = 4000, split: str = "eval",
            seed: int = 0, mix: Mapping[int, float] = DEFAULT_MIX, generator: Generator = DEFAULT_GENERATOR,
            seq_len: int | None = None, exact_limit: int = EXACT_LIMIT, z_samples: int = Z_SAMPLES,
            chain_z_samples: int = CHAIN_Z_SAMPLES, zero_exact_limit: int = ZERO_EXACT_LIMIT) -> dict:
    """The split's entropy per token (trainer_tokens of `encode`), a ratio estimator over the
    stream's first `n_documents` (seed 0 of "eval": the documents the trainer evaluates on, in
    stream order), with its standard error as an estimate of E[-log p] / E[tokens]."""
    if n_documents < 2:
        raise ValueError(f"n_documents must be at least 2 (for a standard error), got {n_documents}")
    if seq_len is not None and seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    acceptance = Acceptance(split, generator, exact_limit, z_samples, chain_z_samples,
                            zero_exact_limit=zero_exact_limit)
    losses, tokens, weights, cut = [], [], defaultdict(float), 0
    for doc in itertools.islice(corpus.documents(split, seed, mix=mix, generator=generator), n_documents):
        terms = _terms(doc.text, acceptance, mix)
        total = sum(terms.values())
        if total <= 0:
            raise RuntimeError(f"{doc.doc_id}: the generator emitted a text of probability 0: {doc.text!r}")
        losses.append(-math.log(total))
        n_tokens, pieces = trainer_tokens(doc, encode, seq_len)
        tokens.append(n_tokens)
        cut += pieces > 1
        for (_, context), term in terms.items():  # d(-log p)/d(log Z_context)
            weights[context] += term / total
    n, sum_t = len(losses), float(sum(tokens))
    rate = sum(losses) / sum_t
    mean_t = sum_t / n
    var_docs = sum((l - rate * t) ** 2 for l, t in zip(losses, tokens)) / (n * (n - 1)) / mean_t ** 2
    var_z = sum((w / sum_t) ** 2 * acceptance.cache[c][1] for c, w in weights.items())
    z_note = ("every Z summed exactly" if acceptance.estimated == 0 else
              f"Z summed exactly where a context has <= {exact_limit} chain or {acceptance.zero_exact_limit} "
              f"difficulty-0 outcomes, else {z_samples} draws per difficulty-0 context and {chain_z_samples} "
              f"per chain difficulty ({acceptance.estimated} contexts estimated)")
    return {"entropy_nats_per_token": rate, "stderr": math.sqrt(var_docs + var_z),
            "stderr_documents": math.sqrt(var_docs), "stderr_acceptance": math.sqrt(var_z),
            "entropy_nats_per_document": sum(losses) / n, "tokens_per_document": mean_t,
            "max_tokens_per_document": max(tokens), "documents": n, "split": split, "seed": seed,
            "seq_len": seq_len, "documents_cut": cut, "is_lower_bound": cut > 0,
            "method": "Monte Carlo over the split's documents (ratio estimator), exact log p per document; " + z_note}


def exact_entropy(encode: Callable[[str], list[int]], split: str = "eval", mix: Mapping[int, float] = DEFAULT_MIX,
                  generator: Generator = DEFAULT_GENERATOR) -> dict:
    """H(document) / E[tokens + eos] by forward enumeration (tiny generators only; the texts'
    tokens as the byte-level count of `encode` on the whole text)."""
    dist = exact_distribution(split, mix, generator)
    h = -sum(p * math.log(p) for p in dist.values())
    t = sum(p * (len(encode(text)) + 1) for text, p in dist.items())
    return {"entropy_nats_per_token": h / t, "entropy_nats_per_document": h, "tokens_per_document": t,
            "texts": len(dist), "total_probability": sum(dist.values())}
