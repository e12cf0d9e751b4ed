"""`scaling demo`: the whole study on the embedded synthetic corpus, on this machine.

It sweeps grids/demo.gin (grids/demo_quick.gin with --quick) with the local executor, collects
the result tables, fits the laws (the loss law with the augmentation multiplier, the joint
accuracy law), writes every figure and the HTML report, and prints what the data shows and a
recommendation for an example budget. The measured findings (floor, fitted E, multipliers with
intervals, accuracy cells, the best split) go to <sweep_dir>/results/findings.json, which the
printed findings and the report read. Everything lands in the sweep folder; rerunning the
command skips finished runs and resumes interrupted ones, so nothing computed is lost.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

from analysis.atomic import unwritable, write_text_atomic
from analysis.tables import read_table
from scaling import infer
from scaling.configuration import REPO_ROOT, GinArgs
from scaling.infer_config import InferConfig
from scaling.sweep import collect, launch
from scaling.sweep.progress import minutes as _minutes
from scaling.sweep.executors import local_layout

GRIDS = {False: REPO_ROOT / "grids" / "demo.gin", True: REPO_ROOT / "grids" / "demo_quick.gin"}
# Documents the true floor is estimated over: the quick demo's coarser estimate (standard error
# about twice the full demo's) takes a fifth of the time.
QUICK_FLOOR_DOCUMENTS = 400

# The analysis package (its laws are JAX code) is imported where the demo reaches its analysis:
# `scaling demo --help` then answers at once.


def configure_demo(parser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="the same path on a smaller grid (grids/demo_quick.gin; a few minutes)")
    parser.add_argument("--seeds", type=seed_list, default=None,
                        help="training seeds, e.g. 5,6,7,8,9: the grid's replicates (default the grid's Grid.seeds; "
                             "presets with Grid.seeds_per_model train the first of them); each seed set gets "
                             "its own sweep folder")
    parser.add_argument("--sweep_dir", default=None,
                        help="where runs, tables, laws, figures and the report go (default sweeps/demo[_quick], "
                             "with --seeds sweeps/demo[_quick]_seeds<seeds>)")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs at a time (default: one single-threaded run per core)")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help="bootstrap refits per law (default 200; 50 with --quick)")
    parser.add_argument("-o", "--output", default=None, help="the report (default <sweep_dir>/report.html)")


def seed_list(text: str) -> tuple[int, ...]:
    """--seeds: distinct integers >= 0, comma-separated."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, e.g. 7,8,9; got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds must be distinct integers >= 0, e.g. 7,8,9; got {text!r}")
    return seeds


def _step(number: int, title: str) -> None:
    print(f"\n== {number}/4 {title}", flush=True)


def _print_answer(answer) -> None:
    print(answer.table())
    for warning in answer.warnings:
        print(f"warning: {warning}")


def policy_status(joint, arm: str, **inputs):
    """Whether the joint law determines the budgets it chooses for `arm` (analysis.determination):
    the parameters the arm's predictions use (not another arm's own), and N, D, T against the
    fitted ranges. A policy chosen by a law the data do not determine is not an answer: each seed
    set's law picks another one, so the claim about it is not determined either."""
    from analysis.determination import determination

    others = [a for a in (joint.form.arms(joint.settings) or []) if a != arm]
    uses = [name for name in joint.parameters if not any(name.endswith(f"_{o}") for o in others)]
    return determination(joint, depends_on=uses, **inputs)


class AdaptiveThinking:
    """The demo's measurement of adaptive test-time thinking (`build_report(measure=...)`): for
    each arm whose models think, at its largest model and data budget, the joint law's thinking
    budget per difficulty and its best uniform budget at the same mean are both decoded greedily on
    held-out problems (another problem seed than the grid's) with `infer.thinking_policy`, on every
    seed's run (the replicates the claim's interval resamples), into each run's
    inference_policy_rows.jsonl, so the sweep's tables and laws never see them."""

    def __init__(self, sweep_dir: Path, results: Path):
        self.sweep_dir, self.results = Path(sweep_dir), Path(results)

    def __call__(self, laws: dict) -> dict:
        from analysis import recommend

        joint = laws.get("joint_inference")
        if joint is None or not recommend.law_difficulties(joint):
            return {"adaptive": [], "adaptive_note": "no joint law with a difficulty term: nothing to adapt"}
        training = read_table(self.results / "training.parquet")
        inference = read_table(self.results / "inference.parquet")
        mix = {int(d): w for d, w in recommend.law_difficulty_mix(joint).items()}
        budgets = sorted(inference["thinking_budget"].unique())
        mean = float(budgets[len(budgets) // 2])  # the grid's middle budget: room to move both ways
        problems = inference["problem_seed"] if "problem_seed" in inference else inference["seed"]
        held_out = int(problems.max()) + 1
        thinking = inference.groupby("arm")["mean_thinking_tokens"].max()
        entries = []
        for arm in sorted(thinking[thinking > 0].index):  # an arm that never thinks has nothing to adapt
            runs = training[(training["arm"] == arm) & training["is_final"].astype(bool)]
            runs = runs[runs["params"] == runs["params"].max()]
            best = runs.sort_values("tokens").groupby("seed").tail(1).sort_values("seed")
            best = best[best.apply(lambda r: ((inference["run_id"] == r["run_id"])
                                              & (inference["branch"] == r["branch"])).any(), axis=1)]
            if best.empty:
                continue
            first = best.iloc[0]
            settings = inference[(inference["run_id"] == first["run_id"]) & (inference["branch"] == first["branch"])].iloc[0]
            chosen = recommend.adaptive_thinking_policy(joint, mix, mean, arm=arm, N=float(first["params"]),
                                                        D=float(best["tokens"].mean()))
            status = policy_status(joint, arm, N=float(first["params"]), D=float(best["tokens"].mean()), T=mean)
            adaptive = {int(d): int(round(t)) for d, t in chosen.budgets.items()}
            uniform = {d: int(round(chosen.uniform_budget)) for d in adaptive}
            replicates = []
            for run in best.itertuples():
                measured = {}
                for name, policy in (("adaptive", adaptive), ("uniform", uniform)):
                    with contextlib.redirect_stdout(io.StringIO()):   # `scaling infer`'s tables: one line below
                        rows = infer.infer(InferConfig(str(self.sweep_dir / run.run_id), thinking_policy=policy,
                                                       difficulty_mix=mix,
                                                       problems_per_difficulty=int(settings["n_problems"]),
                                                       max_answer_tokens=int(settings["max_answer_tokens"]),
                                                       max_extensions=int(settings["max_extensions"]), seed=held_out),
                                           branch=run.branch)
                    measured[name] = infer.policy_accuracy(rows.to_dict("records"), policy, mix)
                print(f"adaptive thinking, {run.run_id} at {run.branch}: the law's budgets {adaptive} "
                      f"{measured['adaptive']['accuracy']:.3f} +- {measured['adaptive']['stderr']:.3f}, uniform "
                      f"T = {uniform[next(iter(uniform))]} {measured['uniform']['accuracy']:.3f} +- "
                      f"{measured['uniform']['stderr']:.3f} ({measured['adaptive']['n']} held-out problems)", flush=True)
                replicates.append({
                    "seed": int(run.seed), "run_id": run.run_id, "branch": run.branch, "tokens": int(run.tokens),
                    "accuracy": measured["adaptive"]["accuracy"], "stderr": measured["adaptive"]["stderr"],
                    "mean_thinking_tokens": measured["adaptive"]["mean_thinking_tokens"],
                    "uniform_accuracy": measured["uniform"]["accuracy"], "uniform_stderr": measured["uniform"]["stderr"],
                    "uniform_mean_thinking_tokens": measured["uniform"]["mean_thinking_tokens"],
                    "n": measured["adaptive"]["n"]})
            mean_of = lambda key: float(sum(r[key] for r in replicates) / len(replicates))
            stderr_of = lambda key: float(sum(r[key] ** 2 for r in replicates) ** 0.5 / len(replicates))
            entries.append({
                "arm": arm, "run_id": first["run_id"], "branch": first["branch"], "params": int(first["params"]),
                "tokens": int(round(best["tokens"].mean())),
                "difficulty_mix": {str(d): w for d, w in mix.items()}, "held_out_seed": held_out,
                "policy": {str(d): t for d, t in adaptive.items()},
                # means over the seeds' runs (their standard errors: problems only); per run in `replicates`
                "accuracy": mean_of("accuracy"), "stderr": stderr_of("stderr"),
                "mean_thinking_tokens": mean_of("mean_thinking_tokens"),
                "uniform_thinking_budget": uniform[next(iter(uniform))],
                "uniform_accuracy": mean_of("uniform_accuracy"), "uniform_stderr": stderr_of("uniform_stderr"),
                "uniform_mean_thinking_tokens": mean_of("uniform_mean_thinking_tokens"),
                "mean_thinking_budget": mean, "predicted_accuracy": float(chosen.accuracy),
                "predicted_uniform_accuracy": float(chosen.uniform_accuracy), "n": replicates[0]["n"],
                "policy_status": {"status": status.status, "reasons": list(status.reasons),
                                  "would_determine": list(status.would_determine)},
                "replicates": replicates})
        return {"adaptive": entries}


def run_demo(args) -> int:
    from analysis import load_law, report
    from analysis.cli import check_law_bounds
    from analysis.report import measured
    from analysis.report.findings import findings
    from scaling.sweep import report_support

    if args.gin.files:
        print("scaling demo: --gin_file is not used; override the grid with --gin.Grid.NAME=VALUE", file=sys.stderr)
        return 2
    started = time.monotonic()
    grid_file = GRIDS[args.quick]
    seeds = getattr(args, "seeds", None)
    default_dir = grid_file.stem + (f"_seeds{'-'.join(map(str, seeds))}" if seeds else "")
    sweep_dir = Path(args.sweep_dir or Path("sweeps") / default_dir)
    bindings = tuple(args.gin.bindings) + ((f"Grid.seeds = {list(seeds)}",) if seeds else ())
    bootstrap = args.bootstrap if args.bootstrap is not None else (50 if args.quick else 200)
    output = Path(args.output or sweep_dir / "report.html")
    # every output is checked before the sweep: a report that cannot be written is known now, not in an hour
    problem = unwritable(output, "--output") or unwritable(sweep_dir / "results" / "training.parquet", "--sweep_dir")
    if problem:
        print(f"scaling demo: error: {problem}", file=sys.stderr)
        return 2

    workers, threads = local_layout(args.workers, None)
    _step(1, f"sweep {grid_file.relative_to(REPO_ROOT)} into {sweep_dir} ({workers} workers x {threads} threads)")
    sweep_args = argparse.Namespace(grid=str(grid_file), sweep_dir=str(sweep_dir), executor="local",
                                    workers=workers, threads_per_worker=threads, dry_run=False, retry_failed=False, throughput=None,
                                    gin=GinArgs((), bindings))
    code = launch.run_sweep(sweep_args)  # with its progress bar
    if code != 0:
        print(f"scaling demo: the sweep did not finish (exit {code}); rerun `scaling demo"
              f"{' --quick' if args.quick else ''}` to resume it", file=sys.stderr)
        return code
    swept = time.monotonic()

    _step(2, "collect the result tables")
    results = sweep_dir / "results"
    counts = collect.collect(sweep_dir, results)
    print(f"{results / 'training.parquet'}: {counts['training']} rows; "
          f"{results / 'inference.parquet'}: {counts['inference']} rows", flush=True)

    _step(3, f"fit the laws ({bootstrap} bootstrap refits each), measure adaptive thinking on held-out problems, "
             "draw the figures, write the report")
    laws_dir, figures_dir = results / "laws", results / "figures"
    findings_path = results / measured.FILE_NAME
    text = report.build_report(results, bootstrap=bootstrap, laws_dir=laws_dir, figures_dir=figures_dir,
                               # the runs' true floor beside the fitted E
                               sweep=report_support.SweepFolders(floor_documents=QUICK_FLOOR_DOCUMENTS if args.quick else
                                                                 report_support.FLOOR_DOCUMENTS),
                               findings_path=findings_path, measure=AdaptiveThinking(sweep_dir, results))
    write_text_atomic(output, text)
    print(f"laws: {laws_dir}/  figures: {figures_dir}/  report: {output}", flush=True)

    _step(4, "what the data shows")
    laws = {path.stem: load_law(path) for path in sorted(laws_dir.glob("*.json"))}
    inference = read_table(results / "inference.parquet")
    # The claims' verdicts and TPT's matched-accuracy multipliers first, then the laws' findings.
    print(f"Measured findings ({findings_path}):")
    for line in measured.summary_lines(measured.read(findings_path)):
        print(f"- {line}")
    print("\nWhat the fitted laws say:")
    for line in findings(laws, inference):
        print(f"- {line}")
    out_of_bounds = "chinchilla" in laws and check_law_bounds(laws["chinchilla"], laws_dir / "chinchilla.json")
    if out_of_bounds:
        print(f"\nNo example recommendation: {out_of_bounds}")
    elif "chinchilla" in laws:
        law = laws["chinchilla"]
        # Twice the largest trained budget: a modest extrapolation, the use a law is fitted for.
        budget = float(f"{2 * float(law.ranges['C'][1]):.1g}")
        print(f"\nExample recommendation (scaling recommend {laws_dir / 'chinchilla.json'} --train_flops={budget:g}):")
        _print_answer(law.recommend(train_flops=budget))   # what `scaling recommend` prints, status included
    if "joint_inference" in laws:
        total, queries, tokens = report.joint_scenario(laws["joint_inference"])
        print(f"\nJoint allocation (scaling recommend {laws_dir / 'joint_inference.json'} --total_flops={total:.10g} "
              f"--inference_queries={queries:g} --tokens_per_query={tokens}):")
        _print_answer(laws["joint_inference"].recommend(total_flops=float(f"{total:.10g}"), inference_queries=queries,
                                                        tokens_per_query=tokens))
    finished = time.monotonic()
    measured.write(findings_path, {**measured.read(findings_path), "wall_s": round(finished - started, 1)})
    print(f"\ndemo finished in {_minutes(finished - started)} (sweep {_minutes(swept - started)}, "
          f"analysis {_minutes(finished - swept)}); report: {output.resolve()}")
    return 0
