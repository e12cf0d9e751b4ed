"""`scaling infer`: what test-time thinking buys a trained model.

For one finished checkpoint of a run, every (difficulty, thinking budget T) setting of the
question-answering set is decoded twice with the KV-cache decoder of `scaling.decode`: greedily
(one answer per problem) and with temperature sampling (n = max(samples) answers per problem,
aggregated for each k in `samples` by majority vote and by unbiased pass@k). Vanilla and
thinking-trained models go through the same protocol (scaling.data.formats), so they compare
fairly. Rows go to `<run_dir>/inference_rows.jsonl` (the inference table of docs/schema.md),
appended atomically; settings already there are skipped, so a sweep resumes where it stopped.
The s1 metrics Control and Scaling go to `<run_dir>/inference_metrics.json`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import sys
import time
import zlib
from pathlib import Path

import gin
import numpy as np
import pandas as pd

from analysis.appended import CorruptLine, read_jsonl, read_records
from analysis.atomic import write_text_atomic
from analysis.schema import pass_at_k
from scaling import accounting, checkpoints, configuration, decode, timings
from scaling.configuration import ConfigError
from scaling.data import corpus, formats, protocols, vocabulary
from scaling.model import ModelConfig

ROWS_FILE = "inference_rows.jsonl"
# A policy's rows stay out of the grid's table, so a law fitted on the grid never sees them.
POLICY_ROWS_FILE = "inference_policy_rows.jsonl"
METRICS_FILE = "inference_metrics.json"
WAIT_TEXT = " Wait"  # s1's continuation when the model tries to stop thinking early
# Columns that identify a setting: a row whose key is already in the file is not recomputed.
KEY_COLUMNS = ("run_id", "branch", "step", "task", "thinking_budget", "samples", "aggregator", "n_problems",
               "n_samples", "temperature", "top_p", "max_extensions", "max_answer_tokens", "seed")
TABLE_COLUMNS = ["task", "thinking_budget", "samples", "aggregator", "accuracy", "accuracy_stderr",
                 "mean_thinking_tokens", "mean_generated_tokens", "flops_per_query"]


class InferenceError(RuntimeError):
    """The run folder cannot be evaluated (no finished branch, unknown branch or step)."""


def task_name(difficulty: int) -> str:
    return f"synthetic_qa_d{difficulty}"


def protocol(max_answer_tokens: int, vocab=None) -> decode.Protocol:
    """The test-time protocol of scaling.data.formats as token ids (of `vocab`, default the
    byte vocabulary), with s1's "Wait"."""
    vocab = vocab or vocabulary.ThinkByteVocabulary()
    return decode.Protocol(eos_id=vocab.eos_id, pad_id=vocab.pad_id,
                           think_open_id=vocab.think_open_id, think_close_id=vocab.think_close_id,
                           wait_ids=tuple(vocab.encode(WAIT_TEXT)),
                           close_ids=tuple(vocab.encode(formats.THINK_CLOSE)),
                           max_answer_tokens=max_answer_tokens)


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


def _row_key(row: dict) -> tuple:
    return tuple(row.get(c) for c in KEY_COLUMNS)


def append_rows(run_dir: str | Path, rows: list[dict], name: str = ROWS_FILE) -> None:
    """Append rows to the run's inference table; the file is replaced whole, never half-written."""
    path = Path(run_dir) / name
    existing = path.read_text() if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    write_text_atomic(path, existing + "".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------------------------
# Decoding a setting


@dataclasses.dataclass(frozen=True)
class _Request:
    """One row to decode: a problem of a setting, greedy or the `sample`-th sampled answer."""

    setting: int
    problem: int
    sample: int
    prompt: tuple[int, ...]
    budget: int
    temperature: float
    seed: int


def _decode_requests(config: ModelConfig, params, requests: list[_Request], proto: decode.Protocol,
                     max_extensions: int, top_p: float, batch_size: int, max_new: int, on_batch,
                     decode_text=vocabulary.decode) -> None:
    """Decode every request in fixed-shape batches that mix settings: requests are ordered by
    thinking budget (a batch of short budgets stops early) and prompt length, and each row carries
    its own budget, temperature and seed, so its output does not depend on its batch. Every batch
    has room for `max_new` tokens (the largest budget's) and every prompt is padded to the
    longest one's width, so all share one compiled program; the last batch is filled with
    repeats. `on_batch(requests, outcomes)` sees each batch's results: the decoded thinking and
    answer texts (the setting's protocol reads the answer from them)."""
    order = sorted(requests, key=lambda r: (r.budget, len(r.prompt)))
    width = decode.prompt_width(max((len(r.prompt) for r in requests), default=1))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        take = rows + [rows[0]] * (batch_size - len(rows))
        padded, lengths = decode.pad_prompts([list(r.prompt) for r in take], proto.pad_id, width=width)
        started = time.perf_counter()
        out = decode.decode(config, params, padded, lengths, proto, [r.budget for r in take], max_extensions,
                            [r.temperature for r in take], top_p, seed=[r.seed for r in take], max_new=max_new)
        if timings.PROCESS.first_step_at is None:  # the first call compiles: start-up, not a step
            timings.PROCESS.first_step_done()
        else:
            timings.PROCESS.decode_s += time.perf_counter() - started
        on_batch(rows, [{
            "thinking_text": decode_text(out.thinking_ids(i)), "answer_text": decode_text(out.answer_ids(i)),
            "thinking": int(out.thinking[i]),
            "generated": int(out.generated[i]),
            "flops": accounting.inference_flops_per_query(config, int(lengths[i]), int(out.generated[i])),
        } for i in range(len(rows))])


def _sample_seed(seed: int, difficulty: int, budget: int, problem: int, sample: int) -> int:
    """The sampling stream of one answer: fixed by what it answers, not by where it is decoded."""
    return zlib.crc32(f"{seed}:{difficulty}:{budget}:{problem}:{sample}".encode())


def _row(base: dict, aggregator: str, samples: int, scores: list[float], outcomes: list[dict], budget: int) -> dict:
    scores = np.asarray(scores, np.float64)
    return {**base, "samples": samples, "aggregator": aggregator,
            "accuracy": float(scores.mean()),
            "accuracy_stderr": float(scores.std() / math.sqrt(len(scores))),
            "n_problems": len(scores),
            "mean_thinking_tokens": float(np.mean([o["thinking"] for o in outcomes])),
            "mean_generated_tokens": float(np.mean([o["generated"] for o in outcomes])),
            "flops_per_query": samples * float(np.mean([o["flops"] for o in outcomes])),
            "within_budget": float(np.mean([o["thinking"] <= budget for o in outcomes]))}


def _setting_rows(setting: dict, n_samples: int, qa: protocols.QAProtocol) -> list[dict]:
    """The missing rows of one (difficulty, T) setting from its decoded outcomes; `qa` reads each
    answer where the run's training format states it."""
    truths, budget, questions, rows = setting["truths"], setting["budget"], setting["questions"], []

    def answer(problem: int, outcome: dict) -> str | None:
        return qa.read_answer(questions[problem], budget, outcome["thinking_text"], outcome["answer_text"])

    if any(agg == "greedy" for _, agg, _ in setting["missing"]):
        outcomes = [setting["greedy"][(i, 0)] for i in range(len(truths))]
        scores = [answer(i, o) == t for i, (o, t) in enumerate(zip(outcomes, truths))]
        rows.append(_row(setting["greedy_base"], "greedy", 1, scores, outcomes, budget))
    sampled = [(agg, k) for _, agg, k in setting["missing"] if agg != "greedy"]
    if sampled:
        outcomes = [setting["sampled"][(i, j)] for i in range(len(truths)) for j in range(n_samples)]
        answers = [[answer(i, o) for o in outcomes[i * n_samples:(i + 1) * n_samples]] for i in range(len(truths))]
        for agg, k in sampled:
            if agg == "majority":
                scores = [majority_accuracy(a, t, k) for a, t in zip(answers, truths)]
            else:
                scores = [pass_at_k(n_samples, sum(x == t for x in a), k) for a, t in zip(answers, truths)]
            rows.append(_row(setting["sampled_base"], agg, k, scores, outcomes, budget))
    return rows


# ----------------------------------------------------------------------------------------------
# The entry point


def _int_list(name: str, value, minimum: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values):
        raise ConfigError(f"infer.{name} must be a non-empty list of integers >= {minimum}, got {value!r}")
    return tuple(sorted(set(values)))


def _select_checkpoint(run_dir: Path, branch: str | None, step: int | None) -> dict:
    finished = checkpoints.finished_branches(run_dir)
    if not finished:
        raise InferenceError(f"{run_dir}: no finished branch to evaluate (checkpoints/branches.json is missing "
                             "or empty); finish training with `scaling train` first")
    if branch is not None:
        matches = [r for r in finished if r["branch"] == branch]
    elif step is not None:
        matches = [r for r in finished if r["step"] == step]
    else:
        matches = finished[-1:]
    if not matches:
        wanted = f"branch {branch!r}" if branch is not None else f"step {step}"
        raise InferenceError(f"{run_dir}: no finished {wanted}; finished: "
                             + ", ".join(f"{r['branch']} (step {r['step']})" for r in finished))
    return matches[-1]


def _identity(run_dir: Path) -> dict:
    """run_id, sweep and arm as the trainer recorded them in training_rows.jsonl."""
    path = run_dir / "training_rows.jsonl"
    first = next(iter(read_records(path)), {})
    return {"run_id": first.get("run_id", run_dir.name), "sweep": first.get("sweep", ""),
            "arm": first.get("arm", "")}


@gin.configurable(denylist=["branch", "step"])
def infer(model_dir: str = gin.REQUIRED,
          thinking_budgets=(0, 16, 64),
          samples=(1, 4, 16),
          temperature: float = 0.7,
          top_p: float = 1.0,
          max_extensions: int = 0,
          difficulties=(1, 2, 3),
          problems_per_difficulty: int = 32,
          max_answer_tokens: int = 12,
          batch_size: int = 64,
          seed: int = 0,
          thinking_policy: dict | None = None,
          difficulty_mix: dict | None = None,
          branch: str | None = None,
          step: int | None = None) -> pd.DataFrame:
    """Evaluate one finished checkpoint of `model_dir` over the grid; see gin/runs/infer.gin.

    With `thinking_policy` ({difficulty: T}, e.g. {1: 0, 2: 16, 3: 64}), only the policy's
    settings are decoded, greedily (difficulties and thinking_budgets are not used), into
    POLICY_ROWS_FILE (settings already in either file are not decoded again), and the
    policy's accuracy over `difficulty_mix` ({difficulty: weight}, default equal weights) is
    printed (`policy_accuracy`). Returns this checkpoint's rows (all settings, including those
    found already computed).
    """
    if not isinstance(model_dir, (str, os.PathLike)) or not str(model_dir):
        raise ConfigError("infer.model_dir: missing required value; give the run folder with --run_dir=<path> "
                          "(or --gin.MODEL_DIR=<path>)")
    ks = _int_list("samples", samples, 1)
    if thinking_policy is None:
        budgets = _int_list("thinking_budgets", thinking_budgets, 0)
        settings_wanted = [(d, t) for d in _int_list("difficulties", difficulties, 1) for t in budgets]
    else:
        policy = thinking_policy_of(thinking_policy)
        mix = difficulty_mix_of(difficulty_mix, policy)
        settings_wanted = sorted(policy.items())
    levels = sorted({d for d, _ in settings_wanted})
    largest = max(t for _, t in settings_wanted)
    for name, value, minimum in (("problems_per_difficulty", problems_per_difficulty, 1),
                                 ("max_extensions", max_extensions, 0), ("max_answer_tokens", max_answer_tokens, 1),
                                 ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"infer.{name} must be an integer >= {minimum}, got {value!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ConfigError(f"infer.temperature must be > 0 (greedy rows are always added), got {temperature!r}")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ConfigError(f"infer.top_p must be in (0, 1], got {top_p!r}")

    run_dir = Path(model_dir).resolve()
    chosen = _select_checkpoint(run_dir, branch, step)
    config, params = checkpoints.restore_params(run_dir, chosen["branch"])
    vocab = vocabulary.get_vocabulary(config.vocabulary)
    proto = protocol(max_answer_tokens, vocab)
    qa = protocols.for_run(run_dir)  # in distribution for the run's training format
    n_samples = max(ks)
    base = {**_identity(run_dir), "params": accounting.param_count(config).total, "step": chosen["step"],
            "tokens": chosen["tokens"], "branch": chosen["branch"]}
    # A policy reuses the grid's rows (and earlier policies'); its new rows go to their own file.
    rows_file = ROWS_FILE if thinking_policy is None else POLICY_ROWS_FILE
    existing = lambda: read_rows(run_dir) + (read_rows(run_dir, POLICY_ROWS_FILE) if thinking_policy else [])
    done = {_row_key(r) for r in existing()}
    requested: set[tuple] = set()
    longest = max(len(qa.prompt_ids(protocols.Question.of(p), largest, vocab.encode)) for d in levels
                  for p in corpus.qa_problems(problems_per_difficulty, d, seed)) + proto.max_new_tokens(largest)
    if longest > config.seq_len:
        print(f"note: sequences reach {longest} tokens, beyond the {config.seq_len} the model was trained on")

    max_new = proto.max_new_tokens(largest)
    settings, requests = [], []  # every (difficulty, T) with rows missing, and the rows to decode for them
    for difficulty in levels:
        problems = corpus.qa_problems(problems_per_difficulty, difficulty, seed)
        for budget in [t for d, t in settings_wanted if d == difficulty]:
            setting = {**base, "task": task_name(difficulty), "difficulty": difficulty, "thinking_budget": budget,
                       "n_problems": len(problems), "top_p": top_p, "max_extensions": max_extensions,
                       "max_answer_tokens": max_answer_tokens, "seed": seed, "protocol": qa.name(budget)}
            greedy_base = {**setting, "n_samples": 1, "temperature": 0.0}
            sampled_base = {**setting, "n_samples": n_samples, "temperature": float(temperature)}
            wanted = [(greedy_base, "greedy", 1)] + [(sampled_base, agg, k) for k in ks
                                                     for agg in ("majority", "pass@k")
                                                     if thinking_policy is None]
            keys = [_row_key({**b, "aggregator": agg, "samples": k}) for b, agg, k in wanted]
            requested |= set(keys)
            missing = [w for w, key in zip(wanted, keys) if key not in done]
            if not missing:
                continue
            index = len(settings)
            questions = [protocols.Question.of(p) for p in problems]
            settings.append({"difficulty": difficulty, "budget": budget, "questions": questions,
                             "truths": [p.answer for p in problems], "greedy_base": greedy_base,
                             "sampled_base": sampled_base, "missing": missing, "greedy": {}, "sampled": {}})
            prompts = [tuple(qa.prompt_ids(q, budget, vocab.encode)) for q in questions]
            opened = budget if qa.thinks(budget) else 0  # a raw-trained model answers directly at every T
            if any(agg == "greedy" for _, agg, _ in missing):
                requests += [_Request(index, i, 0, prompt, opened, 0.0, 0) for i, prompt in enumerate(prompts)]
            if any(agg != "greedy" for _, agg, _ in missing):
                requests += [_Request(index, i, j, prompt, opened, float(temperature),
                                      _sample_seed(seed, difficulty, budget, i, j))
                             for i, prompt in enumerate(prompts) for j in range(n_samples)]
    pending = collections.Counter(r.setting for r in requests)

    def finish_settings(rows: list[_Request], outcomes: list[dict]) -> None:
        """File each outcome under its setting; a setting whose rows are all decoded is written."""
        finished = []
        for request, outcome in zip(rows, outcomes):
            setting = settings[request.setting]
            kind = "greedy" if request.temperature == 0 else "sampled"
            setting[kind][(request.problem, request.sample)] = outcome
            pending[request.setting] -= 1
            if pending[request.setting] == 0:
                finished.append(setting)
        for setting in finished:
            new_rows = _setting_rows(setting, n_samples, qa)
            append_rows(run_dir, new_rows, rows_file)
            done.update(_row_key(r) for r in new_rows)
            summary = ", ".join(f"{r['aggregator'].replace('@k', '')}@{r['samples']}={r['accuracy']:.3f}"
                                for r in new_rows)
            print(f"{task_name(setting['difficulty'])} T={setting['budget']}: {summary}", flush=True)

    _decode_requests(config, params, requests, proto, max_extensions, top_p, batch_size, max_new, finish_settings,
                     vocab.decode)

    mine = list({_row_key(r): r for r in existing() if _row_key(r) in requested}.values())
    metrics = write_metrics(run_dir, chosen, mine)
    table = pd.DataFrame(mine)
    print(table[TABLE_COLUMNS].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    scaling = "n/a" if metrics["scaling"] is None else f"{metrics['scaling']:.3g} accuracy per thinking token"
    control = "n/a" if metrics["control"] is None else f"{metrics['control']:.3f}"
    print(f"s1 metrics ({run_dir / METRICS_FILE}): Control {control}, Scaling {scaling}")
    print(json.dumps(metrics))
    if thinking_policy is not None:
        result = policy_accuracy(mine, policy, mix)
        print(f"policy {policy} over difficulty mix {mix}: accuracy {result['accuracy']:.3f} "
              f"+- {result['stderr']:.3f}, {result['mean_thinking_tokens']:.1f} thinking tokens per query")
        print(json.dumps({"policy": {str(d): t for d, t in policy.items()}, **result}))
    return table


# ----------------------------------------------------------------------------------------------
# Budget policies: a thinking budget per difficulty


def thinking_policy_of(value) -> dict[int, int]:
    """infer.thinking_policy as {difficulty: T}, checked."""
    if not isinstance(value, dict) or not value or any(
            not isinstance(k, int) or isinstance(k, bool) or k < 1 or not isinstance(v, int) or isinstance(v, bool)
            or v < 0 for k, v in value.items()):
        raise ConfigError("infer.thinking_policy must map difficulties (integers >= 1) to thinking budgets "
                          f"(integers >= 0), e.g. {{1: 0, 2: 16, 3: 64}}; got {value!r}")
    return dict(sorted(value.items()))


def difficulty_mix_of(value, policy: dict[int, int]) -> dict[int, float]:
    """infer.difficulty_mix as weights summing to 1 over the policy's difficulties (None: equal)."""
    if value is None:
        return {d: 1.0 / len(policy) for d in policy}
    if (not isinstance(value, dict) or set(value) != set(policy)
            or any(not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0 for w in value.values())
            or not math.isclose(sum(value.values()), 1.0, abs_tol=1e-6)):
        raise ConfigError(f"infer.difficulty_mix must give a weight >= 0 to each difficulty of the policy "
                          f"{sorted(policy)}, summing to 1; got {value!r}")
    return {d: float(value[d]) for d in policy}


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


# ----------------------------------------------------------------------------------------------
# The `infer` verb


def configure_infer(parser):
    parser.add_argument("--run_dir", help="the run folder to evaluate (same as --gin.MODEL_DIR=...)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--branch", help="finished branch to evaluate, e.g. D=1.0e6 (default: the last finished)")
    which.add_argument("--step", type=int, help="evaluate the finished branch that ended at this step")


def run_infer(args) -> int:
    if not args.gin.files:
        raise ConfigError("give the run file: --gin_file=gin/runs/infer.gin (and --run_dir=<run folder>)")
    gin_args = args.gin
    if args.run_dir:
        gin_args = configuration.GinArgs(gin_args.files, gin_args.bindings + (f"MODEL_DIR = {str(args.run_dir)!r}",))
    configuration.parse(gin_args)
    try:
        with configuration.explained(gin_args):
            infer(branch=args.branch, step=args.step)
        timings.PROCESS.record(args.run_dir or gin.query_parameter("%MODEL_DIR"), "infer")
    except (InferenceError, FileNotFoundError) as e:
        print(f"scaling infer: {e}", file=sys.stderr)
        return 1
    return 0
