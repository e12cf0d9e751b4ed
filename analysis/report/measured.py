"""findings.json: what a study's data shows, machine-readable, with intervals.

`scaling demo` writes `<sweep_dir>/results/findings.json`; the printed findings and the report's
"Measured findings" section are read back from that file (`read`, `summary_lines`, `html`), so
what a user reads and what a program reads are the same numbers. The contract (docs/report.md):

- wall_s; entropy_nats_per_token (the corpus's true floor, scaling.data.entropy) and its stderr;
- fitted_E {estimate, low, high}: the Chinchilla law's E fitted free, the fitter's check;
- claims: [{id, question, statement, estimate, low, high, null, direction, unit, verdict, basis,
  reason}], one per question the study answers, with verdict "holds" | "does not hold" | "not
  determined" (analysis.report.claims);
- matched_multipliers: TPT's data-efficiency multiplier at matched accuracy per arm, model size,
  reference budget and accounting, with its interval from a bootstrap over runs (seeds), then
  problems (analysis.report.replicates); effects: the test-time effects per thinking arm, the same way;
  replicates: the fewest seeds any arm and size has;
- multipliers: [{arm, target, accounting, estimate, low, high}], the augmentation law's data
  multiplier m of each thinking arm (a token of its data is worth m tokens of the reference arm's)
  on eval_loss, eval_loss_hard and on QA accuracy, counting all trained tokens or raw ones;
- accuracy: every greedy cell {arm, params, tokens, difficulty, thinking_budget, accuracy,
  stderr, n, protocol, mean_thinking_tokens};
- thinking_hurts: pairs of budgets where greedy accuracy falls by more than two standard errors;
- best_split: the joint law's answer (as `scaling recommend --json` prints it) and its query;
- adaptive (when the demo measured it): per arm, the joint law's thinking budget per difficulty
  and the best uniform budget at the same mean, both decoded on held-out problems:
  {arm, params, tokens, difficulty_mix, policy, accuracy, stderr, mean_thinking_tokens,
  uniform_thinking_budget, uniform_accuracy, uniform_stderr, uniform_mean_thinking_tokens,
  predicted_accuracy, predicted_uniform_accuracy, n}.

The multiplier on accuracy fits the augmentation form to the QA error rate of each finished
checkpoint (greedy, at the largest thinking budget it was evaluated with, all difficulties
pooled), smoothed as (wrong + 0.5) / (n + 1) so that a perfect score stays a finite log.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import recommend
from analysis.determination import with_status
from analysis.atomic import write_json_atomic
from analysis.fitting import fit
from analysis.forms.augmentation import ordered_arms
from analysis.report import claims as claims_of, replicates
from analysis.report.findings import joint_scenario
from analysis.report.laws import E_FREE

FILE_NAME = "findings.json"
VERSION = 2
TARGETS = ("eval_loss", "eval_loss_hard", "accuracy")
ACCOUNTINGS = {"all": "", "raw": "_raw"}  # m_<arm> counts every trained token, m_<arm>_raw document tokens


def _interval(p) -> tuple[float | None, float | None]:
    if p is None or p.ci is None or not all(np.isfinite(p.ci)):
        return None, None
    return float(p.ci[0]), float(p.ci[1])


def multipliers_of(law, target: str) -> list[dict]:
    """One entry per (thinking arm, accounting) of a fitted augmentation law."""
    out = []
    for arm in recommend.augmentation_arms(law):
        for accounting, suffix in ACCOUNTINGS.items():
            p = law.parameters.get(f"m_{arm}{suffix}")
            if p is not None:
                low, high = _interval(p)
                out.append({"arm": arm, "target": target, "accounting": accounting,
                            "estimate": float(p.estimate), "low": low, "high": high,
                            "status": getattr(p, "status", None),  # whether the data determine it
                            "reference_arm": law.settings.reference_arm or "vanilla"})
    return out


def qa_error_table(training: pd.DataFrame, inference: pd.DataFrame) -> pd.DataFrame:
    """One row per finished checkpoint: N, D, D_raw, arm and `qa_error`, the smoothed greedy
    error rate at the largest thinking budget evaluated, all difficulties pooled."""
    greedy = inference[inference["aggregator"] == "greedy"]
    largest = greedy.groupby(["run_id", "step"])["thinking_budget"].transform("max")
    cells = greedy[greedy["thinking_budget"] == largest].copy()
    cells["correct"] = cells["accuracy"] * cells["n_problems"]
    pooled = cells.groupby(["run_id", "step"], as_index=False).agg(correct=("correct", "sum"),
                                                                    n=("n_problems", "sum"))
    pooled["qa_error"] = (pooled["n"] - pooled["correct"] + 0.5) / (pooled["n"] + 1.0)
    final = training[training["is_final"].astype(bool)] if "is_final" in training else training
    keep = [c for c in ("run_id", "step", "arm", "params", "tokens", "tokens_raw", "flops", "is_final") if c in final]
    return final[keep].merge(pooled[["run_id", "step", "qa_error"]], on=["run_id", "step"])


def _fit_multipliers(frame, target: str, bootstrap: int) -> tuple[list[dict], str | None]:
    """The multipliers of an augmentation law fitted on `target`, or ([], why there is none)."""
    try:
        with np.errstate(all="ignore"):   # bootstrap draws far from the data overflow; intervals show it
            law = fit(frame, form="augmentation", approach=3, target=target, bootstrap=bootstrap)
    except (ValueError, KeyError) as e:
        return [], f"multipliers on {target}: no augmentation law ({e})"
    return multipliers_of(law, target), None


def start_multiplier_fits(training: pd.DataFrame, inference: pd.DataFrame | None, bootstrap: int,
                          pool: concurrent.futures.Executor) -> dict:
    """The augmentation laws the findings fit beyond the report's (on the hard span's loss, and on
    accuracy as qa_error), submitted to `pool`: they need only the tables, so they run beside the
    report's own fits (whose joint law, fitted last and alone, leaves a core idle). {target: future}."""
    arms = training["arm"].nunique() if "arm" in training else 0
    if arms < 2:
        return {}
    started = {}
    if "eval_loss_hard" in training and training["eval_loss_hard"].notna().any():
        started["eval_loss_hard"] = pool.submit(_fit_multipliers, training, "eval_loss_hard", bootstrap)
    if inference is not None and len(inference):
        started["qa_error"] = pool.submit(_fit_multipliers, qa_error_table(training, inference), "qa_error", bootstrap)
    return started


def accuracy_cells(inference: pd.DataFrame, training: pd.DataFrame | None = None) -> list[dict]:
    """Every greedy cell, with the training seed of its run (from the training table)."""
    greedy = inference[inference["aggregator"] == "greedy"]
    seeds = ({} if training is None or "seed" not in training
             else dict(zip(training["run_id"], training["seed"].astype(int))))
    out = []
    for r in greedy.sort_values(["arm", "params", "tokens", "difficulty", "thinking_budget"]).to_dict("records"):
        out.append({"arm": r["arm"], "params": int(r["params"]), "seed": seeds.get(r["run_id"], 0),
                    "tokens": int(r["tokens"]),
                    "difficulty": int(r["difficulty"]), "thinking_budget": int(r["thinking_budget"]),
                    "accuracy": float(r["accuracy"]), "stderr": float(r["accuracy_stderr"]),
                    "n": int(r["n_problems"]), "protocol": r.get("protocol") if isinstance(r.get("protocol"), str) else None,
                    "mean_thinking_tokens": float(r["mean_thinking_tokens"])})
    return out


def thinking_hurts(cells: list[dict], z: float = 2.0) -> list[dict]:
    """Consecutive budgets of one cell (arm, params, tokens, difficulty) where accuracy falls by
    more than z standard errors of the difference."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["arm"], c["params"], c["tokens"], c["difficulty"], c.get("seed", 0)), []).append(c)
    for key, rows in groups.items():
        rows = sorted(rows, key=lambda c: c["thinking_budget"])
        for a, b in zip(rows, rows[1:]):
            se = math.hypot(a["stderr"], b["stderr"])
            drop = a["accuracy"] - b["accuracy"]
            if drop > 0 and drop > z * max(se, 1.0 / max(a["n"], 1)):
                out.append({"arm": key[0], "params": key[1], "tokens": key[2], "difficulty": key[3], "seed": key[4],
                            "from_budget": a["thinking_budget"], "to_budget": b["thinking_budget"],
                            "accuracy_from": a["accuracy"], "accuracy_to": b["accuracy"], "stderr": se})
    return out


def best_split(joint) -> tuple[dict, dict]:
    """(the joint law's answer as `scaling recommend --json` prints it, the query it answers)."""
    total, queries, tokens = joint_scenario(joint)
    answer = with_status(joint, recommend.joint_allocation(joint, total, queries, tokens), total_flops=total)
    return answer.to_dict(), {"total_flops": total, "inference_queries": queries, "tokens_per_query": tokens,
                              "notes": list(answer.shown_notes), "warnings": list(answer.warnings)}


def build(laws: dict, training: pd.DataFrame, inference: pd.DataFrame | None, floor: dict | None,
          bootstrap: int, wall_s: float | None = None, fit_notes=(), started: dict | None = None) -> dict:
    """The findings of fitted laws and tables (fits the extra augmentation laws it needs, or takes
    them from `started`: start_multiplier_fits's futures). `fit_notes`: (law name, reason) for each
    law the report could not fit, so a missing law is explained by its real reason."""
    notes: list[str] = []
    chinchilla = laws.get(E_FREE) or laws.get("chinchilla")   # with a known floor, E free is the check
    fitted_e = None
    if chinchilla is not None and "E" in chinchilla.parameters:
        e = chinchilla.parameters["E"]
        low, high = _interval(e)
        fitted_e = {"estimate": float(e.estimate), "low": low, "high": high, "law": "chinchilla (E free)"}
    # The best split (a search over the joint law, mostly compilation) beside the multiplier fits.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as beside:
        split_answer = beside.submit(_best_split_or_note, laws.get("joint_inference"))
        multipliers, cells = _multipliers_and_cells(laws, training, inference, bootstrap, notes,
                                                    dict(fit_notes).get("augmentation"), started)
        split, query, split_note = split_answer.result()
    if split_note:
        notes.append(split_note)
    measured = replicate_findings(laws, training, inference, bootstrap, notes)
    return {"version": VERSION, "wall_s": wall_s, **measured,
            "entropy_nats_per_token": floor["entropy_nats_per_token"] if floor else None,
            "entropy_stderr": floor.get("stderr") if floor else None,
            "fitted_E": fitted_e, "multipliers": multipliers, "accuracy": cells,
            "thinking_hurts": thinking_hurts(cells), "best_split": split, "best_split_query": query,
            "notes": notes}


def replicate_findings(laws, training, inference, bootstrap: int, notes: list[str]) -> dict:
    """The matched-accuracy multipliers and test-time effects, bootstrapped over runs then problems."""
    empty = {"matched_multipliers": [], "effects": [], "replicates": None}
    if inference is None or not len(inference) or "arm" not in training or training["arm"].nunique() < 2:
        notes.append("matched-accuracy multipliers: they need an inference table and two or more arms")
        return empty
    missing = (sorted(replicates.INFERENCE_COLUMNS - set(inference.columns))
               + sorted(replicates.TRAINING_COLUMNS - set(training.columns)))
    if missing:
        notes.append(f"matched-accuracy multipliers: the tables lack {', '.join(missing)}")
        return empty
    cells = replicates.checkpoint_cells(training, inference)
    if cells.empty:
        notes.append("matched-accuracy multipliers: no greedy inference row matches a finished training row")
        return empty
    aug = laws.get("augmentation")
    reference = ordered_arms(cells, aug.settings.reference_arm if aug is not None else None)[1]
    reps = replicates.Replicates.of(cells)
    stats = replicates.bootstrap(reps, reference, replicates.thinking_arms(cells), draws=max(bootstrap, 100))
    if reps.replicates() < 2:
        notes.append("one run per arm and size: the intervals of the matched multipliers, the effects and the "
                     "claims hold evaluation noise only, not run-to-run variance (train more seeds: Grid.seeds)")
    return {"matched_multipliers": replicates.matched_multipliers(stats, reps, reference),
            "effects": replicates.effects(stats, reps), "replicates": reps.replicates()}


def with_claims(findings: dict) -> dict:
    """The findings with their `claims` (computed last: the adaptive measurement comes from the demo)."""
    return {**findings, "claims": claims_of.build(findings)}


def _best_split_or_note(joint) -> tuple[dict | None, dict | None, str | None]:
    if joint is None:
        return None, None, None
    with np.errstate(all="ignore"):
        try:
            return (*best_split(joint), None)
        except ValueError as e:
            return None, None, f"best_split: {e}"


def _multipliers_and_cells(laws, training, inference, bootstrap, notes, augmentation_reason: str | None,
                           started: dict | None = None) -> tuple[list[dict], list[dict]]:
    multipliers = []
    if laws.get("augmentation") is not None:
        multipliers += multipliers_of(laws["augmentation"], "eval_loss")
    else:
        reason = augmentation_reason or ("it needs two arms" if training.get("arm", pd.Series()).nunique() < 2
                                         else "it was not fitted")
        notes.append(f"multipliers on eval_loss: no augmentation law ({reason})")
    if started is None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            fitted = {target: future.result()
                      for target, future in start_multiplier_fits(training, inference, bootstrap, pool).items()}
    else:
        fitted = {target: future.result() for target, future in started.items()}
    for target, (found, note) in fitted.items():
        multipliers += [dict(m, target="accuracy") for m in found] if target == "qa_error" else found
        if note:
            notes.append(note)
    cells = accuracy_cells(inference, training) if inference is not None and len(inference) else []
    return multipliers, cells


def write(path: str | Path, findings: dict) -> Path:
    return write_json_atomic(path, findings, default=float)


def read(path: str | Path) -> dict:
    path = Path(path)
    try:
        findings = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the findings ({e})") from None
    missing = {"wall_s", "entropy_nats_per_token", "fitted_E", "multipliers", "accuracy", "best_split"} - set(findings)
    if missing:
        raise ValueError(f"{path}: not a findings file (missing {', '.join(sorted(missing))})")
    return findings


def _num(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3g}".replace("e+0", "e").replace("e+", "e")


def _best_cells(findings: dict) -> dict[str, list[dict]]:
    """Per arm, the cells of its largest model at each seed's largest budget."""
    best: dict[str, list[dict]] = {}
    for arm in sorted({c["arm"] for c in findings["accuracy"]}):
        mine = [c for c in findings["accuracy"] if c["arm"] == arm]
        params = max(c["params"] for c in mine)
        largest = {}
        for c in mine:
            if c["params"] == params:
                largest[c.get("seed", 0)] = max(largest.get(c.get("seed", 0), 0), c["tokens"])
        best[arm] = [c for c in mine if c["params"] == params and c["tokens"] == largest[c.get("seed", 0)]]
    return best


def matched_lines(findings: dict) -> list[str]:
    """TPT's measure, per arm and size: the matched-accuracy multiplier at each reference budget."""
    out, groups = [], {}
    for m in findings.get("matched_multipliers") or []:
        groups.setdefault((m["arm"], m["params"], m["accounting"]), []).append(m)
    for (arm, params, accounting), entries in sorted(groups.items()):
        parts = []
        for m in entries:
            value = (_num(m["estimate"]) if m["estimate"] is not None
                     else f"{'>=' if m['status'] == replicates.AT_SMALLEST else '<='} {_num(m['bound'])} ({m['status']})")
            parts.append(f"at {m['reference_arm']}'s {_num(m['reference_tokens'])} tokens {value}x "
                         f"[{_num(m['low']) if m['low'] is not None else '0'}, "
                         f"{_num(m['high']) if m['high'] is not None else 'inf'}]")
        tokens = "all trained tokens" if accounting == "all" else "raw document tokens"
        out.append(f"Matched-accuracy multiplier of {arm} at N = {_num(params)} ({tokens}, "
                   f"{len(entries[0].get('seeds') or [])} seed(s)): " + "; ".join(parts) + ".")
    return out


def summary_lines(findings: dict) -> list[str]:
    """The findings in plain sentences, every number from the file: the claims' verdicts first,
    then TPT's matched-accuracy multipliers, then the rest."""
    out = claims_of.lines(findings.get("claims") or [])
    out += matched_lines(findings)
    truth, e = findings.get("entropy_nats_per_token"), findings.get("fitted_E")
    if truth is not None or e:
        out.append(f"Floor: true entropy {_num(truth)} nats/token; the Chinchilla law's free E = "
                   + (f"{_num(e['estimate'])} [{_num(e['low'])}, {_num(e['high'])}]" if e else "n/a") + ".")
    for m in findings["multipliers"]:
        verdict = ("" if m["low"] is None else " (above 1)" if m["low"] > 1 else " (below 1)" if m["high"] < 1
                   else " (interval contains 1)")
        if m.get("status") and m["status"] != "identified":
            verdict += f" ({m['status']}: not determined by these data)"
        out.append(f"Fitted multiplier of {m['arm']} on {m['target']} ({m['accounting']} tokens, augmentation law): "
                   f"{_num(m['estimate'])} "
                   f"[{_num(m['low'])}, {_num(m['high'])}]{verdict}.")
    for arm, cells in _best_cells(findings).items():
        settings: dict[tuple, list[dict]] = {}
        for c in cells:
            settings.setdefault((c["difficulty"], c["thinking_budget"]), []).append(c)
        parts = [f"d{d} T={t}: " + "/".join(f"{c['accuracy']:.2f}" for c in group)
                 + f" ({np.mean([c['mean_thinking_tokens'] for c in group]):.0f} thinking tokens)"
                 for (d, t), group in sorted(settings.items())]
        seeds = sorted({c.get("seed", 0) for c in cells})
        out.append(f"Accuracy, {arm} at N = {_num(cells[0]['params'])}, D = {_num(max(c['tokens'] for c in cells))} "
                   f"(greedy, {cells[0]['n']} problems a cell, seed{'s' if len(seeds) > 1 else ''} "
                   f"{'/'.join(map(str, seeds))}): " + "; ".join(parts) + ".")
    hurts = findings.get("thinking_hurts") or []
    out.append("More thinking hurt in no cell (no drop beyond two standard errors)." if not hurts else
               f"More thinking hurt in {len(hurts)} cell(s), e.g. " + "; ".join(
                   f"{h['arm']} N={_num(h['params'])} D={_num(h['tokens'])} d{h['difficulty']}: "
                   f"{h['accuracy_from']:.2f} at T={h['from_budget']} -> {h['accuracy_to']:.2f} at T={h['to_budget']}"
                   for h in hurts[:3]) + ".")
    split = findings.get("best_split")
    if split:
        q, query = split, findings.get("best_split_query") or {}
        status = q.get("status") or {}
        if status.get("status") == "not_determined":
            out.append(f"Best split of {_num(query.get('total_flops'))} FLOPs: not determined by these data: "
                       + "; ".join(status.get("reasons") or []) + ".")
        else:
            acc = next((v for k, v in q.items() if k.startswith("predicted_")), None)
            arm = f"arm {q['arm']['estimate']}, " if "arm" in q else ""
            out.append(f"Best split of {_num(query.get('total_flops'))} FLOPs: {arm}N = {_num(q['N']['estimate'])}, "
                       f"D = {_num(q['D']['estimate'])}, T = {_num(q['thinking_budget']['estimate'])}, "
                       f"k = {_num(q['samples']['estimate'])}"
                       + (f", predicted accuracy {_num(acc['estimate'])}" if acc else "") + ".")
    for a in findings.get("adaptive") or []:
        policy = claims_of.policy_text(a["policy"])
        diff = a["accuracy"] - a["uniform_accuracy"]
        se = math.hypot(a["stderr"], a["uniform_stderr"])
        out.append(f"Adaptive thinking, {a['arm']} at N = {_num(a['params'])}, D = {_num(a['tokens'])} (held-out "
                   f"problems, greedy): budgets per difficulty ({policy}) {a['accuracy']:.2f}±{a['stderr']:.2f} at "
                   f"{a['mean_thinking_tokens']:.1f} thinking tokens per query; uniform T = "
                   f"{a['uniform_thinking_budget']} {a['uniform_accuracy']:.2f}±{a['uniform_stderr']:.2f} at "
                   f"{a['uniform_mean_thinking_tokens']:.1f}; measured difference {diff:+.2f}±{se:.2f} "
                   f"(the law predicted {a['predicted_accuracy'] - a['predicted_uniform_accuracy']:+.2f})"
                   + ("; the law that chose these budgets is not determined by these data, so they are one pick of "
                      "many" if (a.get("policy_status") or {}).get("status") == "not_determined" else "") + ".")
    out += [f"note: {n}" for n in findings.get("notes", [])]
    return out


def html(findings: dict) -> str:
    """The report's section: the findings file's sentences."""
    rows = "".join(f"<tr><td>{escape(c['id'])}</td><td><b>{escape(c['verdict'])}</b></td><td>{_num(c['estimate'])}</td>"
                   f"<td>[{_num(c['low'])}, {_num(c['high'])}]</td><td>{escape(c['question'])}</td></tr>"
                   for c in findings.get("claims") or [])
    table = ("<table><thead><tr><th>claim</th><th>verdict</th><th>estimate</th><th>95% interval</th>"
             f"<th>question</th></tr></thead><tbody>{rows}</tbody></table>" if rows else "")
    return (table + "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in summary_lines(findings)) + "</ul>"
            "<p class='note'>Read from findings.json, the same file `scaling demo` prints from.</p>")
