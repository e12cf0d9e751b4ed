"""The embedded synthetic reasoning corpus: easy, predictable text around hard spans.

A document tells a small story from templates (names, places, colours, items). Most documents
hold one word problem: a person starts with some items and a chain of `difficulty` operations
(buy more, give away, multiply) changes the count; the sentence "So NAME now has V ITEMS." then
states the result V, the hard span, whose production needs the whole chain. Each step alone is
one small-number operation a ~1M-parameter model learns quickly; the chain is what stays hard
without thinking. Difficulty 0 documents have no hard span. Difficulty d >= 1 has d steps;
operands grow with d (at most 9 below d=3, at most 19 from d=3 on).

Documents are a pure function of (split, seed, index): any document can be produced without its
predecessors, so streams resume anywhere. Held-out sets (eval documents, QA problems) use their
own seed stream AND a hash split: for chains of two or more steps on the arithmetic alone
(operands and operations, not the names), so a held-out chain is never generated for training;
for single steps on the whole problem (person, items and the step), so every one-step fact is
learnable from training text while no held-out problem appears there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Iterator, Mapping

NAMES = ("Mia", "Noah", "Emma", "Liam", "Ava", "Omar", "Sofia", "Ravi", "Lena", "Kai",
         "Zoe", "Ivan", "Nora", "Yuki", "Ana", "Tom")
ITEMS = ("apples", "pears", "books", "coins", "stamps", "shells", "cards", "marbles",
         "pencils", "cookies", "stickers", "eggs")
PLACES = ("Paris", "Lima", "Oslo", "Cairo", "Delhi", "Tokyo", "Quito", "Rome")
COLOURS = ("red", "blue", "green", "yellow", "white", "brown")

# Default mix of difficulties in the training stream (0 = no hard span).
DEFAULT_MIX: Mapping[int, float] = {0: 0.15, 1: 0.3, 2: 0.25, 3: 0.15, 4: 0.1, 5: 0.05}
HELD_OUT_BUCKETS = 10  # one problem in ten (by hash) is reserved for evaluation and QA


@dataclasses.dataclass(frozen=True)
class Generator:
    """The generator's sizes; the default is the corpus. Smaller ones exist so that the
    document distribution can be enumerated exactly (scaling.data.entropy's tests)."""
    names: tuple[str, ...] = NAMES
    items: tuple[str, ...] = ITEMS
    places: tuple[str, ...] = PLACES
    colours: tuple[str, ...] = COLOURS
    top_small: int = 9          # operands at most this below `large_from` steps
    top_large: int = 19         # ... and at most this from `large_from` steps on
    large_from: int = 3
    max_value: int = 999        # no multiplication past this
    max_count: int = 19         # the stated count of a difficulty-0 document
    max_fillers: int = 3        # filler sentences of a difficulty-0 document

    def top(self, difficulty: int) -> int:
        return self.top_small if difficulty < self.large_from else self.top_large


DEFAULT_GENERATOR = Generator()


@dataclasses.dataclass(frozen=True)
class HardSpan:
    """Characters [start, end) of a document whose value needs `steps` to compute."""
    start: int
    end: int
    value: int
    steps: tuple[str, ...]       # "3 + 12 = 15." ...
    setup: str                   # "Mia starts with 3 pears."
    conclusion: str              # "So Mia now has 10 pears."


@dataclasses.dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    difficulty: int
    hard_spans: tuple[HardSpan, ...]


@dataclasses.dataclass(frozen=True)
class QAProblem:
    """A held-out problem: `prompt` ends with the answer prefix; `answer` is exact."""
    problem_id: str
    prompt: str
    answer: str
    difficulty: int


@dataclasses.dataclass(frozen=True)
class _Chain:
    start: int
    ops: tuple[tuple[str, int], ...]  # ("+", 5), ("-", 3), ("*", 2)

    @property
    def key(self) -> str:
        return f"{self.start}" + "".join(f"{op}{b}" for op, b in self.ops)

    def values(self) -> list[int]:
        out = [self.start]
        for op, b in self.ops:
            out.append(out[-1] + b if op == "+" else out[-1] - b if op == "-" else out[-1] * b)
        return out


def _bucket(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % HELD_OUT_BUCKETS


def is_held_out(key: str) -> bool:
    """The hash split: True for the keys reserved for evaluation."""
    return _bucket(key) == 0


def _split_key(chain: _Chain, name: str, items: str) -> str:
    """What the hash split holds out: a multi-step chain, or a single step in its surface.

    A one-step chain is an arithmetic fact (135 exist); holding facts out would make
    difficulty-1 evaluation a test of unseen facts rather than of computing one step.
    """
    return chain.key if len(chain.ops) >= 2 else f"{name}|{items}|{chain.key}"


def _chain(rng: random.Random, difficulty: int, g: Generator = DEFAULT_GENERATOR) -> _Chain:
    top = g.top(difficulty)
    value = start = rng.randint(1, top)
    ops = []
    for _ in range(difficulty):
        choices = ["+", "*"] + (["-"] if value > 1 else [])
        op = rng.choice(choices)
        if op == "*" and value * 3 > g.max_value:
            op = "-" if value > 1 else "+"
        if op == "*":
            b = rng.randint(2, 3)
        elif op == "-":
            b = rng.randint(1, min(top, value - 1))
        else:
            b = rng.randint(1, top)
        ops.append((op, b))
        value = value + b if op == "+" else value - b if op == "-" else value * b
    return _Chain(start, tuple(ops))


def _op_sentence(name: str, other: str, items: str, op: str, b: int) -> str:
    if op == "+":
        return f"{name} buys {b} more {items}."
    if op == "-":
        return f"{name} gives {b} {items} to {other}."
    return f"{name} gets {'twice' if b == 2 else 'three times'} as many {items}."


def _filler(rng: random.Random, name: str, other: str, items: str, g: Generator = DEFAULT_GENERATOR) -> str:
    return rng.choice((
        f"{name} lives in {rng.choice(g.places)}.",
        f"The {items} are {rng.choice(g.colours)}.",
        f"{other} is a friend of {name}.",
        f"{name} likes {items} very much.",
        f"It is a sunny day in {rng.choice(g.places)}.",
    ))


def filler_templates(name: str, other: str, items: str, g: Generator = DEFAULT_GENERATOR):
    """`_filler`'s outcomes as (probability, sentence), for exact log-probabilities."""
    fives = [[f"{name} lives in {p}." for p in g.places], [f"The {items} are {c}." for c in g.colours],
             [f"{other} is a friend of {name}."], [f"{name} likes {items} very much."],
             [f"It is a sunny day in {p}." for p in g.places]]
    return [(1 / 5 / len(group), sentence) for group in fives for sentence in group]


def zero_text(name: str, items: str, count: int, fillers: list[str]) -> str:
    """A difficulty-0 document: fillers, a stated count and its echo."""
    return " ".join(fillers + [f"{name} has {count} {items}.", f"{name} is happy with {count} {items}."])


def chain_text(name: str, other: str, items: str, chain: _Chain, filler: str | None) -> tuple[str, str]:
    """(prefix up to the answer slot, whole text) of a document with a chain."""
    parts = [filler] if filler is not None else []
    parts.append(f"{name} has {chain.start} {items}.")
    parts += [_op_sentence(name, other, items, op, b) for op, b in chain.ops]
    prefix = " ".join(parts) + f" So {name} now has "
    answer = str(chain.values()[-1])
    return prefix, prefix + answer + f" {items}. {name} is happy with {answer} {items}."


def _draw_difficulty(rng: random.Random, mix: Mapping[int, float]) -> int:
    levels = sorted(mix)
    return rng.choices(levels, weights=[mix[d] for d in levels])[0]


def make_document(split: str, seed: int, index: int, difficulty: int | None = None,
                  mix: Mapping[int, float] = DEFAULT_MIX, generator: Generator = DEFAULT_GENERATOR) -> Document:
    """Document `index` of a split ("train" or "eval"): a pure function of its arguments."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    want_held_out = split == "eval"
    rng = random.Random(f"{split}:{seed}:{index}:{difficulty}")
    g = generator
    name, other = rng.sample(g.names, 2)
    items = rng.choice(g.items)
    d = _draw_difficulty(rng, mix) if difficulty is None else difficulty
    if d == 0:
        while True:  # a document with no hard span: fillers, a stated count and its echo
            count = rng.randint(1, g.max_count)
            sentences = [_filler(rng, name, other, items, g) for _ in range(rng.randint(1, g.max_fillers))]
            text = zero_text(name, items, count, sentences)
            if is_held_out(text) == want_held_out:
                return Document(f"{split}-{seed}-{index}", text, 0, ())
    while True:
        chain = _chain(rng, d, g)
        if is_held_out(_split_key(chain, name, items)) == want_held_out:
            break
    values = chain.values()
    prefix, text = chain_text(name, other, items, chain, _filler(rng, name, other, items, g) if rng.random() < 0.5 else None)
    answer = str(values[-1])
    steps = tuple(f"{a} {op} {b} = {c}." for a, (op, b), c in zip(values, chain.ops, values[1:]))
    span = HardSpan(len(prefix), len(prefix) + len(answer), values[-1], steps,
                    f"{name} starts with {chain.start} {items}.", f"So {name} now has {answer} {items}.")
    return Document(f"{split}-{seed}-{index}", text, d, (span,))


def documents(split: str, seed: int, start: int = 0, mix: Mapping[int, float] = DEFAULT_MIX,
              generator: Generator = DEFAULT_GENERATOR) -> Iterator[Document]:
    """The endless stream of a split from document `start` on."""
    index = start
    while True:
        yield make_document(split, seed, index, mix=mix, generator=generator)
        index += 1


def qa_problems(n: int, difficulty: int, seed: int = 0) -> list[QAProblem]:
    """`n` held-out problems of `difficulty` (>= 1) steps: the document up to its answer slot."""
    if difficulty < 1:
        raise ValueError(f"QA difficulty must be >= 1 (steps in the chain), got {difficulty}")
    out = []
    for i in range(n):
        doc = make_document("eval", 1_000_003 + seed, i, difficulty=difficulty)
        span = doc.hard_spans[0]
        prompt = doc.text[:span.start].rstrip()
        digest = hashlib.sha256(f"{seed}:{difficulty}:{i}:{prompt}".encode()).hexdigest()[:10]
        out.append(QAProblem(f"d{difficulty}-{i}-{digest}", prompt, str(span.value), difficulty))
    return out


_ANSWER = re.compile(r"-?\d+")


def extract_answer(text) -> str | None:
    """The first integer in a model's output (None if there is none); never raises."""
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8", errors="replace") if isinstance(text, (bytes, bytearray)) else str(text)
        except Exception:
            return None
    match = _ANSWER.search(text)
    return match.group(0) if match else None
