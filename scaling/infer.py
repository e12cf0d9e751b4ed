"""`scaling infer`: what test-time thinking buys a trained model.

For one finished checkpoint of a run, every (difficulty, thinking budget T) setting of the
question-answering set is decoded twice with the KV-cache decoder of `scaling.decode`: greedily
(one answer per problem) and with temperature sampling (n = max(samples) answers per problem,
aggregated for each k in `samples` by majority vote and by unbiased pass@k). Vanilla and
thinking-trained models go through the same protocol (scaling.data.formats), so they compare
fairly. Rows go to `<run_dir>/inference_rows.jsonl` (the inference table of docs/schema.md),
appended atomically; settings already there are skipped, so a sweep resumes where it stopped.
The s1 metrics Control and Scaling go to `<run_dir>/inference_metrics.json`.

The settings are InferConfig's (scaling/infer_config.py, `infer.<field>` in gin); the table, the
aggregators and the metrics are scaling/infer_rows.py's; this module decodes and drives.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import gin
import pandas as pd

from analysis.appended import read_records
from scaling import accounting, configuration, timings
from scaling.configuration import ConfigError
from scaling.data import corpus, formats, protocols
from scaling.infer_config import CheckedInference, InferConfig
from scaling.infer_rows import (METRICS_FILE, POLICY_ROWS_FILE, ROWS_FILE, InferenceError, append_rows, policy_accuracy,
                                read_rows, row_key, setting_rows, write_metrics)
from scaling.model_config import ModelConfig

if TYPE_CHECKING:
    from scaling import decode

# JAX (decoding, checkpoints) and TensorFlow (the vocabularies) are imported where they are used:
# `scaling infer --help` then answers at once (scaling.cli imports this module to build it).

WAIT_TEXT = " Wait"  # s1's continuation when the model tries to stop thinking early
TABLE_COLUMNS = ["task", "thinking_budget", "samples", "aggregator", "accuracy", "accuracy_stderr",
                 "mean_thinking_tokens", "mean_generated_tokens", "flops_per_query"]


def task_name(difficulty: int) -> str:
    return f"synthetic_qa_d{difficulty}"


def protocol(max_answer_tokens: int, vocab=None) -> decode.Protocol:
    """The test-time protocol of scaling.data.formats as token ids (of `vocab`, default the
    byte vocabulary), with s1's "Wait"."""
    from scaling import decode
    from scaling.data import vocabulary

    vocab = vocab or vocabulary.ThinkByteVocabulary()
    return decode.Protocol(eos_id=vocab.eos_id, pad_id=vocab.pad_id,
                           think_open_id=vocab.think_open_id, think_close_id=vocab.think_close_id,
                           wait_ids=tuple(vocab.encode(WAIT_TEXT)),
                           close_ids=tuple(vocab.encode(formats.THINK_CLOSE)),
                           max_answer_tokens=max_answer_tokens)


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
                     decode_text=None) -> None:
    """Decode every request in fixed-shape batches that mix settings: requests are ordered by
    thinking budget (a batch of short budgets stops early) and prompt length, and each row carries
    its own budget, temperature and seed, so its output does not depend on its batch. Every batch
    has room for `max_new` tokens (the largest budget's) and every prompt is padded to the
    longest one's width, so all share one compiled program; the last batch is filled with
    repeats. Requests that are the same decode (prompt, budget, temperature and seed: a model that
    answers directly at every T asks the same greedy question at each T) are decoded once.
    `on_batch(requests, outcomes)` sees each batch's results: the decoded thinking and answer texts
    (the setting's protocol reads the answer from them); `decode_text` turns ids into text
    (default the byte vocabulary's)."""
    from scaling import decode
    from scaling.data import vocabulary

    decode_text = decode_text or vocabulary.decode
    same: dict[tuple, list[_Request]] = {}
    for r in requests:
        same.setdefault((r.prompt, r.budget, r.temperature, r.seed), []).append(r)
    order = sorted(same.values(), key=lambda group: (group[0].budget, len(group[0].prompt)))
    width = decode.prompt_width(max((len(r.prompt) for r in requests), default=1))
    for start in range(0, len(order), batch_size):
        groups = order[start:start + batch_size]
        rows = [group[0] for group in groups]
        take = rows + [rows[0]] * (batch_size - len(rows))
        padded, lengths = decode.pad_prompts([list(r.prompt) for r in take], proto.pad_id, width=width)
        started = time.perf_counter()
        out = decode.decode(config, params, padded, lengths, proto, [r.budget for r in take], max_extensions,
                            [r.temperature for r in take], top_p, seed=[r.seed for r in take], max_new=max_new)
        if timings.PROCESS.first_step_at is None:  # the first call compiles: start-up, not a step
            timings.PROCESS.first_step_done()
        else:
            timings.PROCESS.decode_s += time.perf_counter() - started
        outcomes = [{
            "thinking_text": decode_text(out.thinking_ids(i)), "answer_text": decode_text(out.answer_ids(i)),
            "thinking": int(out.thinking[i]),
            "generated": int(out.generated[i]),
            "flops": accounting.inference_flops_per_query(config, int(lengths[i]), int(out.generated[i])),
        } for i in range(len(rows))]
        on_batch([r for group in groups for r in group],
                 [outcome for group, outcome in zip(groups, outcomes) for _ in group])


def _sample_seed(seed: int, difficulty: int, budget: int, problem: int, sample: int) -> int:
    """The sampling stream of one answer: fixed by what it answers, not by where it is decoded."""
    return zlib.crc32(f"{seed}:{difficulty}:{budget}:{problem}:{sample}".encode())


# ----------------------------------------------------------------------------------------------
# The entry point


def _select_checkpoint(run_dir: Path, branch: str | None, step: int | None) -> dict:
    from scaling import checkpoints

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


def _plan(config: InferConfig, checked: CheckedInference, base: dict, qa: protocols.QAProtocol, encode,
          done: set) -> tuple[list[dict], list[_Request], set]:
    """Every (difficulty, T) setting with rows missing from `done`, the requests that decode them
    (greedy and sampled rows as needed), and the keys of every row this checkpoint wants."""
    settings, requests, requested = [], [], set()
    for difficulty in checked.difficulties:
        problems = corpus.qa_problems(config.problems_per_difficulty, difficulty, config.seed)
        for budget in [t for d, t in checked.settings if d == difficulty]:
            setting = {**base, "task": task_name(difficulty), "difficulty": difficulty, "thinking_budget": budget,
                       "n_problems": len(problems), "top_p": config.top_p, "max_extensions": config.max_extensions,
                       "max_answer_tokens": config.max_answer_tokens, "seed": config.seed,
                       "protocol": qa.name(budget)}
            greedy_base = {**setting, "n_samples": 1, "temperature": 0.0}
            sampled_base = {**setting, "n_samples": checked.n_samples, "temperature": float(config.temperature)}
            wanted = [(greedy_base, "greedy", 1)] + [(sampled_base, agg, k) for k in checked.samples
                                                     for agg in ("majority", "pass@k")
                                                     if checked.policy is None]
            keys = [row_key({**b, "aggregator": agg, "samples": k}) for b, agg, k in wanted]
            requested |= set(keys)
            missing = [w for w, key in zip(wanted, keys) if key not in done]
            if not missing:
                continue
            index = len(settings)
            questions = [protocols.Question.of(p) for p in problems]
            settings.append({"difficulty": difficulty, "budget": budget, "questions": questions,
                             "truths": [p.answer for p in problems], "greedy_base": greedy_base,
                             "sampled_base": sampled_base, "missing": missing, "greedy": {}, "sampled": {}})
            prompts = [tuple(qa.prompt_ids(q, budget, encode)) for q in questions]
            opened = budget if qa.thinks(budget) else 0  # a raw-trained model answers directly at every T
            if any(agg == "greedy" for _, agg, _ in missing):
                requests += [_Request(index, i, 0, prompt, opened, 0.0, 0) for i, prompt in enumerate(prompts)]
            if any(agg != "greedy" for _, agg, _ in missing):
                requests += [_Request(index, i, j, prompt, opened, float(config.temperature),
                                      _sample_seed(config.seed, difficulty, budget, i, j))
                             for i, prompt in enumerate(prompts) for j in range(checked.n_samples)]
    return settings, requests, requested


def infer(config: InferConfig, branch: str | None = None, step: int | None = None) -> pd.DataFrame:
    """Evaluate one finished checkpoint of `config.model_dir` (the branch named, the one that ended
    at `step`, or the last finished) over the config's settings; see gin/runs/infer.gin.

    A budget policy (`config.thinking_policy`) decodes only its settings, greedily, into
    POLICY_ROWS_FILE (settings already in either file are not decoded again) and prints its
    accuracy over the difficulty mix (`policy_accuracy`). Returns this checkpoint's rows (all
    settings, including those found already computed)."""
    from scaling import checkpoints
    from scaling.data import vocabulary

    run_dir = config.run_dir()
    checked = config.check()
    chosen = _select_checkpoint(run_dir, branch, step)
    model, params = checkpoints.restore_params(run_dir, chosen["branch"])
    vocab = vocabulary.get_vocabulary(model.vocabulary)
    proto = protocol(config.max_answer_tokens, vocab)
    qa = protocols.for_run(run_dir)  # in distribution for the run's training format
    base = {**_identity(run_dir), "params": accounting.param_count(model).total, "step": chosen["step"],
            "tokens": chosen["tokens"], "branch": chosen["branch"]}
    # A policy reuses the grid's rows (and earlier policies'); its new rows go to their own file.
    rows_file = ROWS_FILE if checked.policy is None else POLICY_ROWS_FILE
    existing = lambda: read_rows(run_dir) + (read_rows(run_dir, POLICY_ROWS_FILE) if checked.policy else [])
    done = {row_key(r) for r in existing()}
    largest = checked.largest_budget
    longest = max(len(qa.prompt_ids(protocols.Question.of(p), largest, vocab.encode)) for d in checked.difficulties
                  for p in corpus.qa_problems(config.problems_per_difficulty, d, config.seed)) \
        + proto.max_new_tokens(largest)
    for line in checked.warnings(longest, model.seq_len):
        print(f"scaling infer: warning: {line}", file=sys.stderr, flush=True)

    settings, requests, requested = _plan(config, checked, base, qa, vocab.encode, done)
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
            new_rows = setting_rows(setting, checked.n_samples, qa)
            append_rows(run_dir, new_rows, rows_file)
            done.update(row_key(r) for r in new_rows)
            summary = ", ".join(f"{r['aggregator'].replace('@k', '')}@{r['samples']}={r['accuracy']:.3f}"
                                for r in new_rows)
            print(f"{task_name(setting['difficulty'])} T={setting['budget']}: {summary}", flush=True)

    _decode_requests(model, params, requests, proto, config.max_extensions, config.top_p, config.batch_size,
                     proto.max_new_tokens(largest), finish_settings, vocab.decode)

    mine = list({row_key(r): r for r in existing() if row_key(r) in requested}.values())
    _report(run_dir, chosen, mine, checked)
    return pd.DataFrame(mine)


def _report(run_dir: Path, chosen: dict, rows: list[dict], checked: CheckedInference) -> None:
    """Store and print this checkpoint's s1 metrics and its table; a policy's accuracy too."""
    metrics = write_metrics(run_dir, chosen, rows)
    print(pd.DataFrame(rows)[TABLE_COLUMNS].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    scaling = "n/a" if metrics["scaling"] is None else f"{metrics['scaling']:.3g} accuracy per thinking token"
    control = "n/a" if metrics["control"] is None else f"{metrics['control']:.3f}"
    print(f"s1 metrics ({run_dir / METRICS_FILE}): Control {control}, Scaling {scaling}")
    print(json.dumps(metrics))
    if checked.policy is not None:
        policy, mix = checked.policy, checked.mix
        result = policy_accuracy(rows, policy, mix)
        print(f"policy {policy} over difficulty mix {mix}: accuracy {result['accuracy']:.3f} "
              f"+- {result['stderr']:.3f}, {result['mean_thinking_tokens']:.1f} thinking tokens per query")
        print(json.dumps({"policy": {str(d): t for d, t in policy.items()}, **result}))


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
            infer(InferConfig(), branch=args.branch, step=args.step)
        timings.PROCESS.record(args.run_dir or gin.query_parameter("%MODEL_DIR"), "infer")
    except (InferenceError, FileNotFoundError) as e:
        print(f"scaling infer: {e}", file=sys.stderr)
        return 1
    return 0
