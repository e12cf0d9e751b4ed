"""Claims with verdicts and TPT's matched-accuracy multiplier, on small tables with a known answer."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.report import claims, measured, replicates

BUDGETS = (250_000, 500_000, 1_000_000)


def tables(seeds=(0, 1, 2), n=2000, worth=2.0, seed_spread=0.0, rng_seed=0):
    """training and inference tables of two arms: the thinking arm's accuracy is vanilla's at
    `worth` times the tokens (accuracy 0.1 + 0.2 log2(D / 250k)), plus a gain from thinking
    tokens; each run (seed) shifted by N(0, seed_spread); n greedy problems a cell."""
    rng = np.random.default_rng(rng_seed)
    training, inference = [], []
    for arm, multiplier, thinks in (("vanilla", 1.0, False), ("thinking", worth, True)):
        for params in (50_000, 200_000):
            for seed in seeds:
                run, shift = f"{arm}_{params}_s{seed}", rng.normal(0, seed_spread)
                for budget in BUDGETS:
                    branch = f"d{budget}"
                    training.append(dict(run_id=run, arm=arm, seed=seed, params=params, branch=branch, tokens=budget,
                                         tokens_raw=int(budget * (0.5 if thinks else 1)), is_final=True))
                    for difficulty in (1, 2):
                        for t in (0, 16, 64):
                            accuracy = 0.1 + 0.2 * np.log2(multiplier * budget / BUDGETS[0]) + shift
                            accuracy += 0.03 * np.log1p(t) if thinks else 0.0
                            correct = rng.binomial(n, float(np.clip(accuracy, 0, 1)))
                            inference.append(dict(run_id=run, branch=branch, arm=arm, params=params, tokens=budget,
                                                  difficulty=difficulty, thinking_budget=t, aggregator="greedy",
                                                  accuracy=correct / n, n_problems=n,
                                                  mean_thinking_tokens=float(min(t, 10)) if thinks else 0.0))
    return pd.DataFrame(training), pd.DataFrame(inference)


def test_tokens_to_reach_interpolates_in_log_tokens_and_says_where_the_curve_is_censored():
    # halfway between 0.2 and 0.4 in accuracy is halfway between 100 and 400 in log tokens: 200
    assert replicates.tokens_to_reach([100, 400, 1600], [0.2, 0.4, 0.6], 0.3) == pytest.approx((200, 200, "reached"))
    assert replicates.tokens_to_reach([400, 100, 1600], [0.4, 0.2, 0.6], 0.3)[0] == pytest.approx(200)  # any order
    assert replicates.tokens_to_reach([100, 400], [0.5, 0.6], 0.3) == (0.0, 100.0, replicates.AT_SMALLEST)
    assert replicates.tokens_to_reach([100, 400], [0.1, 0.2], 0.3) == (400.0, math.inf, replicates.NOT_REACHED)
    # the first crossing of a curve that falls back
    assert replicates.tokens_to_reach([100, 400, 1600], [0.1, 0.5, 0.2], 0.3)[2] == replicates.REACHED
    assert replicates.multiplier_interval(1000, 0.0, 100.0) == (10.0, math.inf)
    low, high = replicates.multiplier_interval(1000, 400.0, math.inf)  # needs more than 400: strictly below 2.5
    assert low == 0.0 and high < 2.5 and high == pytest.approx(2.5)


@pytest.mark.parametrize("low, high, null, direction, floor, expected", [
    (1.2, 3.0, 1.0, 1, False, claims.HOLDS),
    (0.2, 0.9, 1.0, 1, False, claims.DOES_NOT_HOLD),
    (0.5, 2.0, 1.0, 1, False, claims.NOT_DETERMINED),
    (None, 0.9, 1.0, 1, False, claims.DOES_NOT_HOLD),       # unbounded below, but all below the null
    (1.1, None, 1.0, 1, False, claims.HOLDS),
    (None, None, 0.0, 1, False, claims.NOT_DETERMINED),
    (-0.3, -0.1, 0.0, -1, False, claims.HOLDS),             # "more thinking hurts": below the null holds
    (0.1, 0.3, 0.0, -1, False, claims.DOES_NOT_HOLD),
    (0.0, 0.0, 0.0, 1, True, claims.DOES_NOT_HOLD),         # a budget pinned at 0 refutes "thinks"
    (0.0, 0.0, 0.0, 1, False, claims.NOT_DETERMINED),
])
def test_verdict_holds_only_when_the_interval_excludes_the_null(low, high, null, direction, floor, expected):
    assert claims.verdict(low, high, null, direction, floor) == expected


def test_matched_multiplier_recovers_a_known_worth_with_replicates_in_its_interval():
    training, inference = tables(worth=2.0, n=20000)
    notes = []
    found = measured.with_claims(measured.replicate_findings({}, training, inference, 200, notes))
    assert found["replicates"] == 3 and not notes
    # Without thinking's test-time gain the worth is 2; at the largest T the arm also gains
    # 0.03 ln(65) accuracy = 0.63 log2-steps of tokens: 2 x 2^0.626.
    expected = 2.0 * 2 ** (0.03 * np.log1p(64) / 0.2)
    top = {(m["params"], m["accounting"]): m for m in found["matched_multipliers"] if m["reference_tokens"] == 1e6}
    for params in (50_000, 200_000):
        m = top[(params, "all")]
        assert m["status"] == "reached" and m["low"] < expected < m["high"]
        assert m["estimate"] == pytest.approx(expected, rel=0.05)
        raw = top[(params, "raw")]  # half the arm's tokens are documents: twice the raw multiplier
        assert raw["estimate"] == pytest.approx(2 * m["estimate"], rel=1e-6)
    # at the smallest reference budget the arm is already past the target: a bound, not a number
    low = [m for m in found["matched_multipliers"] if m["reference_tokens"] == BUDGETS[0] and m["accounting"] == "all"]
    assert all(m["estimate"] is None and m["status"] == replicates.AT_SMALLEST and m["bound"] == 1.0
               and m["high"] is None for m in low)
    by_id = {c["id"]: c for c in found["claims"]}
    assert by_id["data_efficiency.thinking.all"]["verdict"] == claims.HOLDS
    assert by_id["test_time.thinking"]["verdict"] == claims.HOLDS
    assert by_id["more_thinking_hurts.thinking"]["verdict"] == claims.DOES_NOT_HOLD
    # vanilla never thinks: no test-time claim for it
    assert not any(i.endswith(".vanilla") for i in by_id if not i.startswith("data_efficiency"))
    json.dumps(found["claims"])  # JSON as written


def test_run_to_run_variance_widens_the_interval_and_one_seed_is_said_to_hold_evaluation_noise_only():
    def width(spread):
        found = measured.replicate_findings({}, *tables(n=4000, seed_spread=spread, rng_seed=3), 200, [])
        m = next(m for m in found["matched_multipliers"]
                 if (m["params"], m["accounting"], m["reference_tokens"]) == (200_000, "all", 1e6))
        return np.log(m["estimate"] / m["low"])  # the lower half (the upper may reach the censored range)
    assert width(0.015) > 2 * width(0.0)  # the runs differ by 0.015 in accuracy; the problems by 0.005
    notes = []
    measured.replicate_findings({}, *tables(seeds=(5,)), 100, notes)
    assert any("evaluation noise only" in n for n in notes)


def test_a_worthless_arm_does_not_hold_and_a_never_reached_target_is_a_bound():
    training, inference = tables(worth=0.25, n=4000)
    inference.loc[inference["arm"] == "thinking", "mean_thinking_tokens"] = 0.0  # and it never thinks
    found = measured.with_claims(measured.replicate_findings({}, training, inference, 200, []))
    top = next(m for m in found["matched_multipliers"]
               if m["reference_tokens"] == 1e6 and m["params"] == 200_000 and m["accounting"] == "all")
    assert top["status"] == replicates.NOT_REACHED and top["estimate"] is None and top["bound"] == pytest.approx(1.0)
    assert top["low"] is None and top["high"] < 1.0
    by_id = {c["id"]: c for c in found["claims"]}
    assert by_id["data_efficiency.thinking.all"]["verdict"] == claims.DOES_NOT_HOLD
    assert "test_time.thinking" not in by_id  # an arm that never thinks makes no test-time claim


def test_compare_finds_contradictions_and_the_share_of_estimates_inside_the_other_interval():
    def claim(id_, estimate, low, high):
        return {"id": id_, "estimate": estimate, "low": low, "high": high,
                "verdict": claims.verdict(low, high, 1.0)}
    a = [claim("x", 2.0, 1.5, 3.0), claim("y", 1.0, 0.5, 1.5), claim("only_a", 1, 0, 2)]
    b = [claim("x", 0.5, 0.2, 0.8), claim("y", 1.2, 0.9, 1.6)]
    result = claims.compare(a, b)
    assert result["contradictions"] == ["x"] and result["only_a"] == ["only_a"] and result["only_b"] == []
    assert result["a_inside_b"] == 0.5 and result["b_inside_a"] == 0.5


def test_compare_reads_a_bound_as_the_half_line_it_states_and_skips_claims_without_an_estimate():
    def claim(id_, estimate, low, high, bound=None):
        return {"id": id_, "estimate": estimate, "bound": bound, "low": low, "high": high,
                "verdict": claims.verdict(low, high, 1.0)}
    # both runs: "at most 1.83 (not reached)", their bounds 0.2% apart (token counts differ by seed)
    a = [claim("m", 1.833, None, 2.54, claims.AT_MOST), claim("k", 3.0, None, None, claims.AT_LEAST),
         claim("split", None, None, None)]
    b = [claim("m", 1.830, None, 1.830, claims.AT_MOST), claim("k", 1.0, 0.5, 2.0), claim("split", None, None, None)]
    result = claims.compare(a, b)
    rows = {r["id"]: r for r in result["rows"]}
    assert rows["m"]["a_in_b"] and rows["m"]["b_in_a"]
    assert rows["k"]["a_in_b"] is False and rows["k"]["b_in_a"] is True   # "at least 3" against [0.5, 2]
    assert rows["split"]["a_in_b"] is None and rows["split"]["b_in_a"] is None
    assert result["a_inside_b"] == 0.5 and result["b_inside_a"] == 1.0


def test_few_runs_widen_the_run_level_spread_to_students_interval():
    assert replicates.few_runs_factor(1) == 1.0
    assert replicates.few_runs_factor(3) == pytest.approx(np.sqrt(1.5) * 4.3027 / 1.95996, rel=1e-4)
    assert 1.0 < replicates.few_runs_factor(30) < replicates.few_runs_factor(10) < replicates.few_runs_factor(3)



def test_the_adaptive_claim_widens_its_three_runs_to_students_interval():
    """Three runs of +0.10, +0.20 and +0.30 with little problem noise: resampled plainly they give
    about [0.10, 0.30] and the claim would hold; Student's interval on three runs reaches below 0."""
    runs = [{"accuracy": 0.5 + diff, "uniform_accuracy": 0.5, "stderr": 0.001, "uniform_stderr": 0.001}
            for diff in (0.10, 0.20, 0.30)]
    entry = {"arm": "thinking", "uniform_thinking_budget": 64, "params": 2e5, "tokens": 2e6, "replicates": runs}
    (claim,) = claims.adaptive_claims({"adaptive": [entry]})
    assert claim["estimate"] == pytest.approx(0.2)
    half = replicates.few_runs_factor(3) * 0.1
    assert claim["low"] == pytest.approx(0.2 - half, abs=0.02) and claim["high"] == pytest.approx(0.2 + half, abs=0.02)
    assert claim["low"] < 0 and claim["verdict"] == "not determined"


def test_an_adaptive_claim_whose_law_is_not_determined_has_no_estimate_and_says_why():
    """Each seed set's undetermined law picks other budgets: the measured difference is kept in
    the statement, and the claim is not determined, with no estimate to compare across runs."""
    runs = [{"accuracy": 0.7, "uniform_accuracy": 0.5, "stderr": 0.001, "uniform_stderr": 0.001}] * 3
    entry = {"arm": "thinking", "uniform_thinking_budget": 16, "params": 2e5, "tokens": 1e6, "replicates": runs,
             "accuracy": 0.7, "uniform_accuracy": 0.5, "policy": {"1": 18, "2": 18, "3": 0},
             "policy_status": {"status": "not_determined", "reasons": ["it depends on rho_T, which the data do not "
                                                                       "determine (flat)"],
                               "would_determine": ["thinking budgets spanning at least two orders of magnitude"]}}
    (claim,) = claims.adaptive_claims({"adaptive": [entry]})
    assert claim["verdict"] == "not determined" and claim["estimate"] is None and claim["low"] is None
    assert "+0.200" in claim["statement"] and "d1: T=18" in claim["statement"]
    assert "rho_T" in claim["reason"] and "two orders of magnitude" in claim["reason"]
    (line,) = claims.lines([claim])
    assert "no estimate" in line and "inf" not in line
    other = {**entry, "accuracy": 0.3, "replicates": [{**runs[0], "accuracy": 0.3}] * 3}
    result = claims.compare([claim], claims.adaptive_claims({"adaptive": [other]}))
    assert result["a_inside_b"] is None and not result["contradictions"]


def _findings_file(path, seeds, rng_seed):
    found = measured.replicate_findings({}, *tables(seeds=seeds, n=4000, seed_spread=0.02, rng_seed=rng_seed), 200, [])
    found = measured.with_claims({"wall_s": 1.0, "entropy_nats_per_token": None, "fitted_E": None, "multipliers": [],
                                  "accuracy": [], "best_split": None, **found})
    measured.write(path, found)
    return found


def test_scaling_compare_sets_two_seed_sets_side_by_side(tmp_path, capsys):
    from scaling.cli import main

    a = _findings_file(tmp_path / "a.json", (0, 1, 2), 1)
    _findings_file(tmp_path / "b.json", (3, 4, 5), 2)
    code = main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    for claim in a["claims"]:
        assert claim["id"] in out
    assert "contradictions (holds in one, does not hold in the other): none" in out
    assert (code == 0) == ("the runs agree" in out)
    # the same study against a copy with one claim reversed: a contradiction, and exit status 1
    flipped = json.loads((tmp_path / "a.json").read_text())
    claim = next(c for c in flipped["claims"] if c["verdict"] == claims.HOLDS)
    claim.update(estimate=0.5, low=0.4, high=0.6, verdict=claims.DOES_NOT_HOLD)
    (tmp_path / "c.json").write_text(json.dumps(flipped))
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["contradictions"] == [claim["id"]] and result["agree"] is False
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in flipped.items() if k != "claims"}))
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "old.json")]) == 2
    assert "old.json: the findings have no claims" in capsys.readouterr().err


def test_an_undetermined_best_split_is_said_so_with_its_reason_not_printed_as_none():
    """The three-seed demo's joint law could not determine rho_T: its best split was printed as
    'arm None, N = n/a' and its claim gave the interval's reason instead of the law's."""
    empty = {"estimate": None, "ci": None}
    split = {name: empty for name in ("N", "D", "arm", "thinking_budget", "samples", "predicted_accuracy")}
    split["status"] = {"status": "not_determined", "reasons": ["it depends on rho_T, which the data do not determine"],
                       "would_determine": []}
    found = {"wall_s": 1.0, "entropy_nats_per_token": None, "fitted_E": None, "multipliers": [], "accuracy": [],
             "best_split": split, "best_split_query": {"total_flops": 1.41e12}}
    claim = next(c for c in claims.build(found) if c["id"] == "best_split.thinks")
    assert claim["verdict"] == claims.NOT_DETERMINED and "depends on rho_T" in claim["reason"]
    assert "None arm" not in claim["statement"]
    line = next(l for l in measured.summary_lines(found) if l.startswith("Best split"))
    assert line.startswith("Best split of 1.41e12 FLOPs: not determined by these data: it depends on rho_T")
