"""The inference table and what is computed from it: the rows file (appended atomically; a row's
key columns say which setting it is, so a rerun skips what is there), the aggregators that turn
decoded answers into rows (greedy, majority of k, unbiased pass@k), a budget policy's accuracy and
s1's Control and Scaling metrics (docs/inference.md, docs/schema.md)."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

import numpy as np

from analysis.appended import CorruptLine, read_jsonl
from analysis.atomic import write_text_atomic
from analysis.schema import pass_at_k
from scaling.data import protocols

ROWS_FILE = "inference_rows.jsonl"
# A policy's rows stay out of the grid's table, so a law fitted on the grid never sees them.
POLICY_ROWS_FILE = "inference_policy_rows.jsonl"
METRICS_FILE = "inference_metrics.json"
# Columns that identify a setting: a row whose key is already in the file is not recomputed.
KEY_COLUMNS = ("run_id", "branch", "step", "task", "thinking_budget", "samples", "aggregator", "n_problems",
               "n_samples", "temperature", "top_p", "max_extensions", "max_answer_tokens", "seed")


class InferenceError(RuntimeError):
    """The run folder cannot be evaluated (no finished branch, unknown branch or step, a bad row)."""


# ----------------------------------------------------------------------------------------------
# Aggregators


def majority_vote(answers: list[str | None]) -> str | None:
    """The most frequent extracted answer (ties: the first seen); None when none could be read."""
    counts = collections.Counter(a for a in answers if a is not None)
    return counts.most_common(1)[0][0] if counts else None


def majority_accuracy(answers: list[str | None], truth: str, k: int) -> float:
    """Majority-of-k accuracy on one problem, averaged over the n // k disjoint groups of k."""
    groups = [answers[i:i + k] for i in range(0, len(answers) - k + 1, k)]
    return float(np.mean([majority_vote(g) == truth for g in groups]))


def s1_scaling(thinking_tokens, accuracy) -> float | None:
    """s1's Scaling: the average slope of accuracy over thinking tokens, over all pairs of settings."""
    points = sorted(zip(thinking_tokens, accuracy))
    slopes = [(b_acc - a_acc) / (b_x - a_x) for i, (a_x, a_acc) in enumerate(points)
              for b_x, b_acc in points[i + 1:] if b_x > a_x]
    return float(np.mean(slopes)) if slopes else None


# ----------------------------------------------------------------------------------------------
# The table file


def read_rows(run_dir: str | Path, name: str = ROWS_FILE) -> list[dict]:
    path = Path(run_dir) / name
    if not path.is_file():
        return []
    try:
        return [row for _, row in read_jsonl(path)]
    except CorruptLine as e:
        raise InferenceError(str(e)) from None


def row_key(row: dict) -> tuple:
    return tuple(row.get(c) for c in KEY_COLUMNS)


def append_rows(run_dir: str | Path, rows: list[dict], name: str = ROWS_FILE) -> None:
    """Append rows to the run's inference table; the file is replaced whole, never half-written."""
    path = Path(run_dir) / name
    existing = path.read_text() if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    write_text_atomic(path, existing + "".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------------------------
# Rows of a decoded setting


def _aggregate_row(base: dict, aggregator: str, samples: int, scores: list[float], outcomes: list[dict],
                   budget: int) -> dict:
    scores = np.asarray(scores, np.float64)
    return {**base, "samples": samples, "aggregator": aggregator,
            "accuracy": float(scores.mean()),
            "accuracy_stderr": float(scores.std() / math.sqrt(len(scores))),
            "n_problems": len(scores),
            "mean_thinking_tokens": float(np.mean([o["thinking"] for o in outcomes])),
            "mean_generated_tokens": float(np.mean([o["generated"] for o in outcomes])),
            "flops_per_query": samples * float(np.mean([o["flops"] for o in outcomes])),
            "within_budget": float(np.mean([o["thinking"] <= budget for o in outcomes]))}


def setting_rows(setting: dict, n_samples: int, qa: protocols.QAProtocol) -> list[dict]:
    """The missing rows of one (difficulty, T) setting from its decoded outcomes; `qa` reads each
    answer where the run's training format states it."""
    truths, budget, questions, rows = setting["truths"], setting["budget"], setting["questions"], []

    def answer(problem: int, outcome: dict) -> str | None:
        return qa.read_answer(questions[problem], budget, outcome["thinking_text"], outcome["answer_text"])

    if any(agg == "greedy" for _, agg, _ in setting["missing"]):
        outcomes = [setting["greedy"][(i, 0)] for i in range(len(truths))]
        scores = [answer(i, o) == t for i, (o, t) in enumerate(zip(outcomes, truths))]
        rows.append(_aggregate_row(setting["greedy_base"], "greedy", 1, scores, outcomes, budget))
    sampled = [(agg, k) for _, agg, k in setting["missing"] if agg != "greedy"]
    if sampled:
        outcomes = [setting["sampled"][(i, j)] for i in range(len(truths)) for j in range(n_samples)]
        answers = [[answer(i, o) for o in outcomes[i * n_samples:(i + 1) * n_samples]] for i in range(len(truths))]
        for agg, k in sampled:
            if agg == "majority":
                scores = [majority_accuracy(a, t, k) for a, t in zip(answers, truths)]
            else:
                scores = [pass_at_k(n_samples, sum(x == t for x in a), k) for a, t in zip(answers, truths)]
            rows.append(_aggregate_row(setting["sampled_base"], agg, k, scores, outcomes, budget))
    return rows


# ----------------------------------------------------------------------------------------------
# Policies and metrics


def policy_accuracy(rows: list[dict], policy: dict[int, int], mix: dict[int, float]) -> dict:
    """Greedy accuracy of a per-difficulty budget policy over a difficulty mix, from this
    checkpoint's rows: the mix-weighted mean of each difficulty's accuracy at its budget, its
    standard error (independent problem sets per difficulty), and the mix-weighted mean thinking
    tokens actually spent per query."""
    cells = {(r["difficulty"], r["thinking_budget"]): r for r in rows if r["aggregator"] == "greedy"}
    missing = [f"d{d} T={t}" for d, t in policy.items() if (d, t) not in cells]
    if missing:
        raise InferenceError(f"no greedy rows for {', '.join(missing)} of the policy")
    picked = {d: cells[(d, t)] for d, t in policy.items()}
    return {"accuracy": float(sum(mix[d] * r["accuracy"] for d, r in picked.items())),
            "stderr": float(math.sqrt(sum((mix[d] * r["accuracy_stderr"]) ** 2 for d, r in picked.items()))),
            "mean_thinking_tokens": float(sum(mix[d] * r["mean_thinking_tokens"] for d, r in picked.items())),
            "n": int(sum(r["n_problems"] for r in picked.values()))}


def s1_metrics(rows: list[dict]) -> dict:
    """Control (share of greedy samples whose thinking stayed within T, over T > 0) and Scaling
    (average pairwise slope of greedy accuracy over mean thinking tokens), overall and per task."""
    greedy = [r for r in rows if r["aggregator"] == "greedy"]
    per_task = {}
    for task in sorted({r["task"] for r in greedy}):
        mine = [r for r in greedy if r["task"] == task]
        thinking = [r for r in mine if r["thinking_budget"] > 0]
        per_task[task] = {
            "control": float(np.mean([r["within_budget"] for r in thinking])) if thinking else None,
            "scaling": s1_scaling([r["mean_thinking_tokens"] for r in mine], [r["accuracy"] for r in mine])}
    controls = [m["control"] for m in per_task.values() if m["control"] is not None]
    scalings = [m["scaling"] for m in per_task.values() if m["scaling"] is not None]
    return {"control": float(np.mean(controls)) if controls else None,
            "scaling": float(np.mean(scalings)) if scalings else None,
            "scaling_unit": "accuracy per thinking token", "tasks": per_task}


def write_metrics(run_dir: Path, chosen: dict, rows: list[dict]) -> dict:
    """Store this checkpoint's s1 metrics in <run_dir>/inference_metrics.json (one entry per branch)."""
    path = run_dir / METRICS_FILE
    entries = json.loads(path.read_text()) if path.is_file() else []
    metrics = {"branch": chosen["branch"], "step": chosen["step"], "tokens": chosen["tokens"], **s1_metrics(rows)}
    entries = [e for e in entries if (e["branch"], e["step"]) != (chosen["branch"], chosen["step"])] + [metrics]
    write_text_atomic(path, json.dumps(entries, indent=2) + "\n")
    return metrics
