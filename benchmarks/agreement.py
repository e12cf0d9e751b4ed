"""How often two disjoint seed sets agree, by resampling the runs a study trained (docs/data.md,
"Replicates").

`scaling compare` asks of two runs of a study on disjoint seed sets that no claim holds in one and
fails in the other, and that at least 80% of each run's claim estimates lie inside the other
run's intervals. Even with intervals that are right, that bar is passed by chance only: two
independent estimates differ by sqrt(2) of one's standard error. This benchmark measures how
often it is passed at a given number of seeds, from runs that were actually trained: it pools
the result tables of several sweeps of one grid (e.g. three demos on disjoint seed sets), draws
`--pairs` pairs of disjoint sets of `--seeds_per_set` seeds among the seeds every arm trained at
the largest size, computes each set's measured claims with the findings' own code
(analysis.report.measured.replicate_findings, then analysis.report.claims) and compares them as
`scaling compare` does. It prints one JSON line: pairs, the share of pairs that agree, the mean
of the two shares inside, the pairs with a contradiction, and per claim how often each set's
estimate lay inside the other's interval.

Only the measured claims that the tables determine are resampled (data efficiency at matched
accuracy, test-time effects). The adaptive-thinking claims decode a policy that each study's own
joint law chose, so runs of different studies do not share it; the best split is a law's answer.

    python benchmarks/agreement.py --sweeps /tmp/demoK /tmp/demoJ /tmp/demoM --seeds_per_set 5 --pairs 40
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.report import claims as claims_of  # noqa: E402
from analysis.report.measured import replicate_findings  # noqa: E402
from analysis.tables import read_table  # noqa: E402


def pooled_tables(sweeps: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweeps' training and inference tables, each run once (a run two sweeps share is one run)."""
    training = pd.concat([read_table(Path(s) / "results" / "training.parquet") for s in sweeps])
    inference = pd.concat([read_table(Path(s) / "results" / "inference.parquet") for s in sweeps])
    key = ["run_id", "branch", "step"]
    return (training.drop_duplicates(key).reset_index(drop=True),
            inference.drop_duplicates(key + ["task", "thinking_budget", "aggregator", "samples"]).reset_index(drop=True))


def claim_seeds(training: pd.DataFrame) -> list[int]:
    """The seeds every arm trained at the largest size, where the measured claims are made."""
    largest = training[training["params"] == training["params"].max()]
    per_arm = largest.groupby("arm")["seed"].agg(lambda s: set(s.astype(int)))
    return sorted(set.intersection(*per_arm))


def measured_claims(training, inference, seeds, bootstrap: int) -> list[dict]:
    keep_t, keep_i = training["seed"].isin(seeds), inference["seed"].isin(seeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = replicate_findings({}, training[keep_t], inference[keep_i], bootstrap, [])
    return claims_of.data_efficiency_claims(found) + claims_of.effect_claims(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", nargs="+", default=None,
                        help="sweep folders of one grid, each with results/ (default: sweeps/demo*/ that have them)")
    parser.add_argument("--seeds_per_set", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--bootstrap", type=int, default=200, help="draws of each set's replicate bootstrap")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sweeps = args.sweeps or sorted(str(p.parent.parent) for p in Path("sweeps").glob("demo*/results/findings.json"))
    if not sweeps:   # `make bench` on a clone that has run no demo: nothing to resample yet
        print(json.dumps({"skipped": "no sweep folders: run `scaling demo` on disjoint seed sets, then pass them "
                                     "with --sweeps"}))
        return
    training, inference = pooled_tables(sweeps)
    seeds = claim_seeds(training)
    if len(seeds) < 2 * args.seeds_per_set:
        problem = (f"--seeds_per_set {args.seeds_per_set}: two disjoint sets need {2 * args.seeds_per_set} seeds, and "
                   f"every arm of {', '.join(sweeps)} trained only {seeds} at the largest size")
        if args.sweeps is None:
            print(json.dumps({"skipped": problem}))
            return
        raise SystemExit(problem)
    rng = np.random.default_rng(args.seed)
    agree, shares, contradicted = 0, [], 0
    inside = collections.defaultdict(list)
    for _ in range(args.pairs):
        drawn = rng.permutation(seeds)[:2 * args.seeds_per_set]
        a = measured_claims(training, inference, sorted(drawn[:args.seeds_per_set]), args.bootstrap)
        b = measured_claims(training, inference, sorted(drawn[args.seeds_per_set:]), args.bootstrap)
        result = claims_of.compare(a, b)
        agree += claims_of.agrees(result)
        contradicted += bool(result["contradictions"])
        shares += [result["a_inside_b"], result["b_inside_a"]]
        for row in result["rows"]:
            for key in ("a_in_b", "b_in_a"):
                if row[key] is not None:
                    inside[row["id"]].append(row[key])
    print(json.dumps({"seeds": seeds, "seeds_per_set": args.seeds_per_set, "pairs": args.pairs,
                      "agree": agree / args.pairs, "mean_share_inside": float(np.mean(shares)),
                      "min_share_inside_median": float(np.median([min(shares[i], shares[i + 1])
                                                                  for i in range(0, len(shares), 2)])),
                      "pairs_with_a_contradiction": contradicted / args.pairs,
                      "inside_by_claim": {k: round(float(np.mean(v)), 3) for k, v in sorted(inside.items())}}))


if __name__ == "__main__":
    main()
