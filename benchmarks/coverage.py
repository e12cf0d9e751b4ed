"""Coverage of the fitter's 95% intervals, by simulation from known laws (docs/fitting.md, "Coverage").

Each design draws `--datasets` result tables from a known law with realistic noise, fits each with
the project's fitter (analysis.fit, the law's own statuses and intervals) and prints one JSON line
per form, design and parameter (and one each for a prediction at 10x the largest compute and at
the grid's centre, with the intervals' median width): datasets, the share marked identified, the
coverage of the 95% interval among those identified (and of the profile-likelihood interval),
how often a collapsed estimate (below 1e-3 of the truth) was marked identified (the target:
never), and the share marked at_bound with the coverage of their profile intervals, which reach
the bound: a reader acts on those too, and where the truth lies near the bound "identified"
selects the tables whose noise lifted the estimate, so coverage among them alone reads low
(docs/fitting.md). With `--misses`, also one line per identified or at_bound interval that
misses its truth (dataset, estimate, interval, truth, reason) and one per prediction whose
interval misses, to read why. `--bootstrap 0` measures the parameters' profile intervals only.

Designs:
- demo_3x3_2seeds: the demo's grid (3 sizes x 3 budgets, one decade each), two seeds a cell;
  1% log-normal noise per row plus 1% run-to-run noise shared by a (seed, size) run.
- chinchilla_5x5: 5 sizes x 5 budgets over two orders of magnitude each, one seed, 1% noise.
- joint_demo_T: the joint accuracy law on the demo's cells (3 sizes x 3 budgets x 3 thinking
  budgets), k = 1, accuracy of 128 problems a cell (binomial, as grids/demo.gin evaluates), the
  measured loss as step 1; the floor b = 0.05 lies near its bound 0.
- joint_floor_T: the same with the floor well inside its range (b = 0.25, a = 0.6).

    python benchmarks/coverage.py --datasets 40 --bootstrap 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd

import analysis
from analysis.answers import interval
from analysis.forms.base import get_form
from analysis.tables import TableError

DEMO_LAW = {"E": 0.384, "A": 30.0, "B": 80.0, "alpha": 0.35, "beta": 0.3}
CHINCHILLA_LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
JOINT_LAW = {"a": 0.8, "b": 0.05, "kappa": 3.0, "L0": 1.8, "gamma_T": 0.35}
# a floor well inside (0, 1 - a): the demo-like law's b = 0.05 is at its bound in most tables, so
# its interval is measured on the few where the data happen to lift it; here b is determined
JOINT_FLOOR_LAW = {"a": 0.6, "b": 0.25, "kappa": 3.0, "L0": 1.8, "gamma_T": 0.35}
PROBLEMS = 128   # greedy problems a cell, as grids/demo.gin asks (infer.problems_per_difficulty)


def loss_table(truth, sizes, budgets, seeds, rng, noise=0.01, run_noise=0.01):
    form = get_form("chinchilla")
    rows = []
    for seed in range(seeds):
        for n in sizes:
            run = rng.normal(0, run_noise) if seeds > 1 else 0.0   # shared by one training run
            loss = form.predict(truth, N=np.full(len(budgets), n), D=budgets)
            loss = loss * np.exp(run + rng.normal(0, noise, len(budgets)))
            rows.append(pd.DataFrame({"params": n, "tokens": budgets, "eval_loss": loss, "seed": seed}))
    return pd.concat(rows, ignore_index=True)


def joint_accuracy(truth, loss, t):
    z = -truth["kappa"] * (loss - truth["L0"]) + truth["gamma_T"] * np.log1p(t)
    return truth["b"] + truth["a"] / (1 + np.exp(-z))


def joint_table(truth, rng):
    sizes, budgets, thinking = np.geomspace(2e4, 2e5, 3), np.geomspace(2e6, 2e7, 3), np.array([0.0, 64.0, 512.0])
    n, d, t = (a.ravel() for a in np.meshgrid(sizes, budgets, thinking, indexing="ij"))
    loss = get_form("chinchilla").predict(DEMO_LAW, N=n, D=d) * np.exp(rng.normal(0, 0.01, n.size))
    correct = rng.binomial(PROBLEMS, joint_accuracy(truth, loss, t))
    return pd.DataFrame({"params": n, "tokens": d, "eval_loss": loss, "thinking_budget": t, "samples": 1,
                         "accuracy": correct / PROBLEMS, "n_problems": PROBLEMS})


def designs():
    demo_n, demo_d = np.geomspace(2e4, 2e5, 3), np.geomspace(2e6, 2e7, 3)
    chin_n, chin_d = np.geomspace(1e7, 1e9, 5), np.geomspace(2e9, 2e11, 5)
    return {
        "demo_3x3_2seeds": ("chinchilla", DEMO_LAW, lambda rng: loss_table(DEMO_LAW, demo_n, demo_d, 2, rng),
                            {"N": demo_n[-1] * 10 ** 0.5, "D": demo_d[-1] * 10 ** 0.5}),
        "chinchilla_5x5": ("chinchilla", CHINCHILLA_LAW, lambda rng: loss_table(CHINCHILLA_LAW, chin_n, chin_d, 1, rng),
                           {"N": chin_n[-1] * 10 ** 0.5, "D": chin_d[-1] * 10 ** 0.5}),
        "joint_demo_T": ("joint_inference", JOINT_LAW, lambda rng: joint_table(JOINT_LAW, rng), None),
        "joint_floor_T": ("joint_inference", JOINT_FLOOR_LAW, lambda rng: joint_table(JOINT_FLOOR_LAW, rng), None),
    }


def truth_at(form, truth, point):
    if form == "chinchilla":
        return float(get_form("chinchilla").predict(truth, **point))
    return float(joint_accuracy(truth, point["L"], point["T"]))


PREDICTIONS = ("prediction_10x", "prediction_inside")


def predictions(form, table, point):
    """The answers whose intervals are checked: at 10x the largest compute (`point`; the joint law:
    the loss there, the largest thinking budget) and at the grid's centre, where an interval as wide
    as the extrapolation's would be honest in coverage but useless (`median_width` shows it)."""
    sizes, budgets = np.sort(table["params"].unique()), np.sort(table["tokens"].unique())
    centre = {"N": float(np.sqrt(sizes[0] * sizes[-1])), "D": float(np.sqrt(budgets[0] * budgets[-1]))}
    if form != "joint_inference":
        return {"prediction_10x": point, "prediction_inside": centre}
    n, d = table["params"].max() * 10 ** 0.5, table["tokens"].max() * 10 ** 0.5
    loss = get_form("chinchilla")
    return {"prediction_10x": {"L": float(loss.predict(DEMO_LAW, N=n, D=d)), "T": 512.0, "k": 1.0},
            "prediction_inside": {"L": float(loss.predict(DEMO_LAW, **centre)), "T": 64.0, "k": 1.0}}


def run_design(name, form, truth, simulate, point, args):
    rng = np.random.default_rng(args.seed)
    answers = PREDICTIONS if args.bootstrap else ()   # answers need the bootstrap's draws
    tally = {k: {"identified": 0, "covered": 0, "profile_covered": 0, "collapsed": 0, "collapsed_identified": 0,
                 "at_bound": 0, "at_bound_covered": 0, "widths": []} for k in list(truth) + list(answers)}
    datasets = refused = 0
    started = time.perf_counter()
    for i in range(args.datasets):
        print(f"{name}: dataset {i + 1}/{args.datasets} ({time.perf_counter() - started:.0f} s)", file=sys.stderr,
              flush=True)
        table = simulate(rng)
        try:
            if form == "joint_inference":
                law = analysis.fit(table, form=form, target="accuracy", bootstrap=args.bootstrap, heldout_fraction=0,
                                   columns={"L": "eval_loss"}, resampling=args.resampling)
            else:
                law = analysis.fit(table, bootstrap=args.bootstrap, heldout_fraction=0, resampling=args.resampling)
        except TableError:
            refused += 1
            continue
        datasets += 1
        for k, value in truth.items():
            p = law.parameters[k]
            t = tally[k]
            collapsed = abs(p.estimate) < 1e-3 * abs(value)
            t["collapsed"] += collapsed
            checked = None   # the interval a reader acts on
            if p.status == "identified":
                checked = p.ci
                t["identified"] += 1
                t["collapsed_identified"] += collapsed
                t["covered"] += p.ci[0] <= value <= p.ci[1]
                if p.profile_ci is not None:
                    t["profile_covered"] += p.profile_ci[0] <= value <= p.profile_ci[1]
            elif p.status == "at_bound" and p.profile_ci is not None:   # the interval reaching the bound
                checked = p.profile_ci
                t["at_bound"] += 1
                t["at_bound_covered"] += p.profile_ci[0] <= value <= p.profile_ci[1]
            if args.misses and checked is not None and not checked[0] <= value <= checked[1]:
                print(json.dumps({"miss": k, "status": p.status, "design": name, "dataset": i, "estimate": p.estimate,
                                  "ci": list(checked), "truth": value, "reason": p.reason,
                                  "others": {o: law.parameters[o].estimate for o in truth}}), flush=True)
        for quantity, query in (predictions(form, table, point) if answers else {}).items():
            t = tally[quantity]
            if law.undetermined():
                continue
            t["identified"] += 1
            draws = np.asarray(law.predict_draws(**{k: np.asarray(v) for k, v in query.items()})).ravel()
            low, high = interval(draws, law.spread, float(np.ravel(law.predict(**query))[0]))
            target = truth_at(form, truth, query)
            t["covered"] += low <= target <= high
            t["widths"].append(float(high - low))
            if args.misses and not low <= target <= high:
                print(json.dumps({"miss": quantity, "design": name, "dataset": i,
                                  "estimate": float(law.predict(**query)), "ci": [float(low), float(high)],
                                  "truth": target, "statuses": {o: law.parameters[o].status for o in truth},
                                  "others": {o: law.parameters[o].estimate for o in truth}}), flush=True)
    seconds = time.perf_counter() - started
    for k, t in tally.items():
        identified = t["identified"]
        line = {"form": form, "design": name, "quantity": k, "resampling": args.resampling, "datasets": datasets,
                "refused": refused,
                "share_identified": round(identified / max(datasets, 1), 3),
                "coverage_identified": round(t["covered"] / identified, 3) if identified else None}
        if k in PREDICTIONS:
            line.update(median_width=float(f"{np.median(t['widths']):.4g}") if t["widths"] else None)
        else:
            line.update(profile_coverage_identified=round(t["profile_covered"] / identified, 3) if identified else None,
                        collapsed=t["collapsed"], collapsed_marked_identified=t["collapsed_identified"],
                        share_at_bound=round(t["at_bound"] / max(datasets, 1), 3),
                        coverage_at_bound=round(t["at_bound_covered"] / t["at_bound"], 3) if t["at_bound"] else None)
        line["seconds"] = round(seconds, 1)
        print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=40, help="tables simulated per design")
    parser.add_argument("--bootstrap", type=int, default=100,
                        help="resamples per fit; 0: the parameters' profile intervals only (answers need draws)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resampling", default="auto", choices=("auto", "pairs", "wild", "residual"),
                        help="the bootstrap's scheme (analysis.fit; auto: analysis.uncertainty.scheme_for)")
    parser.add_argument("--designs", default=",".join(designs()), help="comma-separated subset")
    parser.add_argument("--misses", action="store_true", help="a line per identified or at_bound interval missing its truth")
    args = parser.parse_args()
    warnings.simplefilter("error", RuntimeWarning)   # none may reach a user: fail loudly here
    for name in args.designs.split(","):
        form, truth, simulate, point = designs()[name]
        run_design(name, form, truth, simulate, point, args)


if __name__ == "__main__":
    main()
