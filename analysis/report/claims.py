"""Claims with verdicts: one per question a study answers, read from its findings.json.

A claim is {id, question, statement, estimate, low, high, null, direction, verdict, unit, basis,
reason}. `verdict` is "holds" when the 95% interval (runs and problems resampled, see
analysis.report.replicates) lies wholly on the claim's side of the null, "does not hold" when it
lies wholly on the other side, and "not determined" when it contains the null, or when the
quantity is not measured or extrapolates past the data. `id`s are stable across runs of a study,
so two runs' claims can be set side by side (`compare`, `scaling compare A B`).
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from analysis.report.replicates import widened

HOLDS, DOES_NOT_HOLD, NOT_DETERMINED = "holds", "does not hold", "not determined"
AT_MOST, AT_LEAST = "at most", "at least"
VERDICTS = (HOLDS, DOES_NOT_HOLD, NOT_DETERMINED)


def verdict(low, high, null: float, direction: int = 1, floor_at_null: bool = False) -> str:
    """The verdict of an interval [low, high] (None: unbounded on that side) against `null`.
    direction +1: the claim is "above the null"; -1: "below". `floor_at_null`: the quantity
    cannot pass the null on the far side (a budget >= 0), so an interval at the null refutes."""
    lo = -math.inf if low is None else float(low)
    hi = math.inf if high is None else float(high)
    if direction < 0:
        lo, hi, null = -hi, -lo, -null
    if lo > null:
        return HOLDS
    if hi < null or (floor_at_null and hi <= null):
        return DOES_NOT_HOLD
    return NOT_DETERMINED


def _claim(id_, question, statement, estimate, low, high, null, unit, basis, direction=1, floor_at_null=False,
           reason=None, bound=None) -> dict:
    """`bound`: None for a point estimate, AT_MOST or AT_LEAST where `estimate` is a censored
    value's bound (a multiplier whose target the arm never reached, or reached at once)."""
    result = NOT_DETERMINED if reason else verdict(low, high, null, direction, floor_at_null)
    if result == NOT_DETERMINED and not reason:
        reason = "the interval contains the null: the data cannot decide at this scale"
    return {"id": id_, "question": question, "statement": statement, "estimate": estimate, "bound": bound,
            "low": low, "high": high, "null": null, "direction": direction, "unit": unit, "verdict": result,
            "basis": basis, "reason": reason}


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _seeds(entry) -> str:
    seeds = entry.get("seeds") or []
    return (f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})" if seeds
            else "seeds unknown")


def data_efficiency_claims(findings: dict) -> list[dict]:
    """Per arm and accounting: at the largest size, the matched-accuracy multiplier at the
    reference arm's largest budget (where its accuracy is furthest above the floor)."""
    out = []
    entries = findings.get("matched_multipliers") or []
    for arm in sorted({e["arm"] for e in entries}):
        for accounting, label in (("all", "all trained tokens, thinking included"), ("raw", "raw document tokens")):
            mine = [e for e in entries if e["arm"] == arm and e["accounting"] == accounting]
            if not mine:
                continue
            params = max(e["params"] for e in mine)
            e = max((e for e in mine if e["params"] == params), key=lambda e: e["reference_tokens"])
            reference = e["reference_arm"]
            bound = None if e["estimate"] is not None else (AT_LEAST if e["status"].startswith("reached") else AT_MOST)
            shown = _num(e["estimate"]) if bound is None else f"{bound} {_num(e['bound'])} ({e['status']})"
            out.append(_claim(
                f"data_efficiency.{arm}.{accounting}",
                f"Does a token of {arm} data teach more than a token of {reference} data ({label}), at matched "
                f"accuracy?",
                f"At N = {e['params']:.3g} and matched accuracy ({reference}'s at {e['reference_tokens']:.3g} tokens), "
                f"a token of {arm} data is worth {shown} tokens of {reference} data ({label})",
                e["estimate"] if e["estimate"] is not None else e["bound"], e["low"], e["high"], 1.0,
                "multiplier (reference tokens / arm tokens)",
                f"matched accuracy, greedy, difficulties pooled, at each arm's largest thinking budget; {_seeds(e)} "
                f"and {len(e.get('reference_seeds') or [])} of {reference}", bound=bound))
    return out


EFFECTS = {
    "test_time": ("test_time.{arm}", "Does thinking at test time raise {arm} models' accuracy?",
                  "From T = {from_budget} to T = {to_budget}, greedy accuracy (difficulties pooled) changes by {est}",
                  1),
    "hardest": ("beyond_training.{arm}", "Does test-time thinking reach past the chain lengths {arm} models "
                "solve (difficulty {difficulty})?",
                "At difficulty {difficulty}, greedy accuracy changes by {est} from T = {from_budget} to T = "
                "{to_budget}", 1),
    "more_thinking": ("more_thinking_hurts.{arm}", "Does more thinking lower {arm} models' accuracy?",
                      "From T = {from_budget} to T = {to_budget}, greedy accuracy (difficulties pooled) changes by "
                      "{est}", -1),
}


def effect_claims(findings: dict) -> list[dict]:
    out = []
    for e in findings.get("effects") or []:
        if e["effect"] not in EFFECTS:
            continue
        id_, question, statement, direction = EFFECTS[e["effect"]]
        fields = {**e, "est": f"{e['estimate']:+.3f}"}
        out.append(_claim(id_.format(**fields), question.format(**fields), statement.format(**fields),
                          e["estimate"], e["low"], e["high"], 0.0, "accuracy (difference)",
                          f"the arm's largest model (N = {e['params']:.3g}) at its largest budget "
                          f"({e['tokens']:.3g} tokens), {_seeds(e)}", direction))
    return out


def adaptive_claims(findings: dict, draws: int = 1000, seed: int = 0) -> list[dict]:
    """Adaptive against uniform budgets per arm: the mean measured difference over the arm's runs,
    its interval from a bootstrap over runs, then problems (each run's difference drawn around its
    value with its standard error: the normal approximation of resampling its problems). The
    run-level part of each draw is widened to Student's interval (replicates.widened), as every
    measured claim's is: three runs resampled give the spread of many."""
    out = []
    rng = np.random.default_rng(seed)
    for a in findings.get("adaptive") or []:
        status = a.get("policy_status") or {}
        if status.get("status") == "not_determined":   # the law that chose the budgets: another pick per seed set
            measured = a["accuracy"] - a["uniform_accuracy"]
            out.append(_claim(
                f"adaptive_vs_uniform.{a['arm']}",
                f"Do budgets chosen per difficulty beat one uniform budget at the same mean, for {a['arm']} models?",
                f"The joint law's budgets per difficulty ({policy_text(a['policy'])}) minus its best uniform budget (T = "
                f"{a['uniform_thinking_budget']}) measured {measured:+.3f} accuracy on held-out problems, but the "
                f"law that chose them is not determined by these data",
                None, None, None, 0.0, "accuracy (difference)",
                f"N = {a['params']:.3g}, {a['tokens']:.3g} tokens, {len(a.get('replicates') or [a])} run(s)",
                reason="the joint law's budgets are not determined by these data: "
                       + "; ".join(status.get("reasons") or [])
                       + ("; what would determine them: " + "; ".join(status["would_determine"])
                          if status.get("would_determine") else "")))
            continue
        runs = a.get("replicates") or [a]
        diff = np.array([r["accuracy"] - r["uniform_accuracy"] for r in runs])
        se = np.array([math.hypot(r["stderr"], r["uniform_stderr"]) for r in runs])
        picks = rng.integers(len(runs), size=(draws, len(runs)))
        center, picked = diff.mean(), diff[picks].mean(axis=1)
        sampled = widened(center, picked, len(runs)) + (rng.normal(size=picks.shape) * se[picks]).mean(axis=1)
        low, high = (float(x) for x in np.percentile(sampled, [2.5, 97.5]))
        out.append(_claim(
            f"adaptive_vs_uniform.{a['arm']}",
            f"Do budgets chosen per difficulty beat one uniform budget at the same mean, for {a['arm']} models?",
            f"The joint law's budgets per difficulty minus its best uniform budget (T = "
            f"{a['uniform_thinking_budget']}), held-out problems: {float(diff.mean()):+.3f} accuracy",
            float(diff.mean()), low, high, 0.0, "accuracy (difference)",
            f"N = {a['params']:.3g}, {a['tokens']:.3g} tokens, {len(runs)} run(s)"))
    return out


def policy_text(policy: dict) -> str:
    """A thinking budget per difficulty, {difficulty: T}, in words: "d1: T=18, d2: T=0"."""
    return ", ".join(f"d{d}: T={t}" for d, t in policy.items())


def best_split_claims(findings: dict) -> list[dict]:
    """The joint law's best split of the study's budget: does it spend compute on thinking?"""
    split, query = findings.get("best_split"), findings.get("best_split_query") or {}
    if not split or "thinking_budget" not in split:
        return []
    t = split["thinking_budget"]
    ci = t.get("ci") or [None, None]
    warnings = list(query.get("warnings") or [])
    status, answer = t.get("status"), split.get("status") or {}
    reason = None
    if answer.get("status") == "not_determined":   # the whole answer (analysis.determination)
        reason = "the law's answer is not determined by these data: " + "; ".join(answer.get("reasons") or [])
    elif status not in (None, "identified", "determined"):
        reason = f"the law's answer is {status}" + (f": {t.get('reason')}" if t.get("reason") else "")
    elif warnings:
        reason = "the split extrapolates past the data: " + warnings[0]
    arm = f" ({split['arm']['estimate']} arm)" if (split.get("arm") or {}).get("estimate") is not None else ""
    return [_claim("best_split.thinks",
                   f"Does the best split of {_num(query.get('total_flops'))} FLOPs spend compute on test-time thinking?",
                   f"The joint law's best split{arm} thinks T = {_num(t['estimate'])} tokens a query",
                   t["estimate"], ci[0], ci[1], 0.0, "thinking tokens per query",
                   "the joint law's bootstrap draws and likelihood region (scaling recommend --total_flops)",
                   floor_at_null=True, reason=reason)]


def build(findings: dict) -> list[dict]:
    """Every claim a findings file supports, in a stable order."""
    return (data_efficiency_claims(findings) + effect_claims(findings) + adaptive_claims(findings)
            + best_split_claims(findings))


def lines(claims: list[dict]) -> list[str]:
    """One plain sentence per claim: the verdict first."""
    out = []
    for c in claims:
        # an open end: unbounded (a ratio's lower end is 0)
        low = _num(c["low"]) if c["low"] is not None else ("0" if c.get("null") == 1.0 else "-inf")
        interval = f"95% interval [{low}, {_num(c['high']) if c['high'] is not None else 'inf'}]"
        if c["estimate"] is None and c["low"] is None and c["high"] is None:   # nothing measured to bound
            interval = "no estimate"
        text = f"{c['id']}: {c['verdict'].upper()}: {c['statement']}; {interval} ({c['basis']})"
        out.append(text + (f"; {c['reason']}" if c["verdict"] == NOT_DETERMINED and c.get("reason") else "") + ".")
    return out


def _inside(claim: dict, other: dict) -> bool | None:
    """Whether `claim`'s estimate lies inside `other`'s interval: a point inside [low, high]; a
    bound ("at most b", "at least b") when the half-line it asserts meets the interval (both runs'
    "at most 1.83 (not reached)" agree, though their token counts put the bound 0.2% apart).
    None when the claim has no estimate (a question its run could not answer)."""
    value = claim["estimate"]
    if value is None:
        return None
    lo = -math.inf if other["low"] is None else other["low"]
    hi = math.inf if other["high"] is None else other["high"]
    bound = claim.get("bound")
    if bound == AT_MOST:
        return lo <= value
    if bound == AT_LEAST:
        return hi >= value
    return lo <= value <= hi


def compare(a: list[dict], b: list[dict]) -> dict:
    """Two runs' claims side by side: the shared ids, the contradictions (holds in one, does not
    hold in the other), and the share of each run's estimates inside the other's interval (among
    the claims the run gives an estimate for)."""
    by_a, by_b = {c["id"]: c for c in a}, {c["id"]: c for c in b}
    shared = [i for i in by_a if i in by_b]
    rows, contradictions = [], []
    for i in shared:
        x, y = by_a[i], by_b[i]
        if {x["verdict"], y["verdict"]} == {HOLDS, DOES_NOT_HOLD}:
            contradictions.append(i)
        rows.append({"id": i, "a": x, "b": y, "a_in_b": _inside(x, y), "b_in_a": _inside(y, x)})

    def share(key):
        counted = [r[key] for r in rows if r[key] is not None]
        return sum(counted) / len(counted) if counted else None
    return {"rows": rows, "only_a": [i for i in by_a if i not in by_b], "only_b": [i for i in by_b if i not in by_a],
            "contradictions": contradictions, "a_inside_b": share("a_in_b"), "b_inside_a": share("b_in_a")}


# ----------------------------------------------------------------------------------------------
# `scaling compare A/findings.json B/findings.json`

AGREEMENT = 0.8  # issue 28's bar: the share of each run's estimates inside the other run's interval


def configure_compare(parser) -> None:
    parser.add_argument("a", help="a findings.json (e.g. sweeps/demo_seeds0-1-2/results/findings.json)")
    parser.add_argument("b", help="another findings.json (another machine or seed set)")
    parser.add_argument("--json", action="store_true", help="print the comparison as one JSON object")


def _read_claims(path) -> list[dict]:
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the findings ({e})") from None
    if not isinstance(found, dict) or "claims" not in found:
        raise ValueError(f"{path}: the findings have no claims (written before findings version 2); "
                         "run `scaling demo` again to add them")
    if any("bound" not in c for c in found["claims"]):   # written before claims said which are bounds
        return build(found)
    return found["claims"]


def _cell(c: dict) -> str:
    bound = f"{c['bound']} " if c.get("bound") else ""
    return f"{c['verdict']}: {bound}{_num(c['estimate'])} [{_num(c['low'])}, {_num(c['high'])}]"


def comparison_lines(result: dict, a: str, b: str) -> list[str]:
    rows = [["claim", f"A ({a})", f"B ({b})", "A in B", "B in A"]]
    answer = {True: "yes", False: "no", None: "n/a"}
    rows += [[r["id"], _cell(r["a"]), _cell(r["b"]), answer[r["a_in_b"]], answer[r["b_in_a"]]] for r in result["rows"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    out.append("")
    out.append("contradictions (holds in one, does not hold in the other): "
               + (", ".join(result["contradictions"]) or "none"))
    share = lambda x: "n/a" if x is None else f"{x:.0%}"
    out.append(f"A's estimates inside B's intervals: {share(result['a_inside_b'])}; "
               f"B's inside A's: {share(result['b_inside_a'])} (bar: {AGREEMENT:.0%} each; a claim without an "
               f"estimate (n/a) is not counted, a bound is inside when the half-line it states meets the interval)")
    for side, ids in (("A", result["only_a"]), ("B", result["only_b"])):
        if ids:
            out.append(f"only in {side}: {', '.join(ids)}")
    out.append("the runs agree" if agrees(result) else "the runs do not agree")
    return out


def agrees(result: dict) -> bool:
    """Issue 28's acceptance: no contradiction, and each run's estimates inside the other's
    intervals at least AGREEMENT of the time."""
    return (not result["contradictions"] and result["a_inside_b"] is not None
            and min(result["a_inside_b"], result["b_inside_a"]) >= AGREEMENT)


def run_compare(args) -> int:
    """Exit 0 when the two runs agree, 1 when they do not (as diff does), 2 on unreadable input."""
    try:
        a, b = _read_claims(args.a), _read_claims(args.b)
    except ValueError as e:
        print(f"scaling compare: {e}", file=sys.stderr)
        return 2
    result = compare(a, b)
    if args.json:
        print(json.dumps({**result, "agree": agrees(result)}, default=float))
    else:
        print("\n".join(comparison_lines(result, args.a, args.b)))
    return 0 if agrees(result) else 1
