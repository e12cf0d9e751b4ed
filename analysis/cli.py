"""`scaling fit`: fit a law to a results folder or any CSV/Parquet table and write the law file."""

from __future__ import annotations

import argparse
import math
import sys

from analysis.fit import fit
from analysis.forms import FORMS
from analysis.law import LawError, load_law
from analysis.tables import TableError, parse_columns


def configure_fit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="results folder (holding training.parquet), or a CSV/Parquet table")
    parser.add_argument("--approach", type=int, choices=(1, 2, 3), default=3,
                        help="3: fit --form (default); 1: min-loss envelope; 2: IsoFLOP parabolas")
    parser.add_argument("--form", choices=sorted(FORMS) + ["hyperparameters", "two_step"], default="chinchilla",
                        help="law form; 'hyperparameters' is Step Law (columns N, D, lr, batch_size, loss); "
                             "'two_step' the OLMo ladder (N, D, task_loss, accuracy[, final])")
    parser.add_argument("--task-min", type=float,
                        help="--form=two_step: the task's chance accuracy (default 0.25)")
    parser.add_argument("--task-max", type=float,
                        help="--form=two_step: the task's best accuracy, the helper point at task loss 0 (default 1)")
    parser.add_argument("--target", default="eval_loss", help="the column to fit (default eval_loss)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: none)")
    parser.add_argument("--columns", default="", help="column map, e.g. N=params,D=tokens,loss=eval_loss")
    parser.add_argument("--huber-delta", type=float, default=1e-3)
    parser.add_argument("--heldout-fraction", type=float, default=0.2,
                        help="share of highest-compute points held out for validation (0: none)")
    parser.add_argument("--base-law", help="data_constrained: fix the base law to this law file's estimates")
    parser.add_argument("--loss-law", help="joint_inference: the loss law file for step 1")
    parser.add_argument("--per-arm-thinking", action="store_true",
                        help="joint_inference on an augmentation loss law: a test-time slope gamma_T per arm")
    parser.add_argument("--per-arm-exponents", action="store_true",
                        help="augmentation: a data exponent per arm instead of multipliers")
    parser.add_argument("--reference-arm", help="augmentation: the arm whose data counts 1x (default vanilla)")
    parser.add_argument("--gqa", action="store_true", help="architecture: add the GQA factor")
    parser.add_argument("--shared-exponent", action="store_true",
                        help="chinchilla: one exponent for N and D (Gadre et al. 2024's over-training law); "
                             "fitted by least squares on the loss unless --objective says otherwise")
    parser.add_argument("--objective", choices=("huber_log", "squared_loss"),
                        help="approach 3: Huber on log residuals (default) or least squares on the loss "
                             "(the default with --shared-exponent)")
    parser.add_argument("--budget-decimals", type=int, default=1,
                        help="approaches 1/2: compute budgets are log10 C rounded to this many decimals")
    parser.add_argument("--floor", help="a known irreducible loss: a number, or the JSON file `scaling describe "
                                        "--corpus=synthetic` prints (its entropy_nats_per_token)")
    parser.add_argument("--floor-mode", choices=("bound", "fix"), default="bound",
                        help="with --floor: keep E >= the floor (bound, default) or set E = the floor (fix)")
    parser.add_argument("--isoflop-method", choices=("parabola", "porian"), default="parabola",
                        help="approach 2: a parabola per IsoFLOP curve (default) or Porian et al. 2024's "
                             "Akima-spline minima with a seed-noise bootstrap and weighted power law")
    parser.add_argument("--seed-noise", type=float,
                        help="--isoflop-method=porian: loss standard deviation between seeds (default 0.002)")
    parser.add_argument("--noise-draws", type=int,
                        help="--isoflop-method=porian: seed-noise perturbations per curve (default 1000)")
    parser.add_argument("--where", help="fit only the rows where this pandas query holds, e.g. "
                                        "\"dataset == 'rw' and hparams == 'tuned'\"")
    parser.add_argument("--seq-len", type=float,
                        help="--form=hyperparameters: tokens per sequence, to count batch_size in tokens (default 1)")
    parser.add_argument("--threshold", type=float,
                        help="--form=hyperparameters: near-optimal runs are within this relative loss of their "
                             "(N, D) group's best (default 0.0025)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, help="law file to write (JSON)")


def run_fit(args) -> int:
    try:
        columns = parse_columns(args.columns)
        options = {}
        if args.approach == 3 and args.isoflop_method != "parabola":
            raise ValueError("--isoflop-method applies to --approach=2 (IsoFLOP curves); this is approach 3")
        for name in ("seq_len", "threshold"):
            if getattr(args, name) is not None and args.form != "hyperparameters":
                raise ValueError(f"--{name.replace('_', '-')} applies only to --form=hyperparameters")
        for name in ("task_min", "task_max"):
            if getattr(args, name) is not None and args.form != "two_step":
                raise ValueError(f"--{name.replace('_', '-')} applies only to --form=two_step")
        if args.approach == 3 and args.form == "two_step":
            options.update(seed=args.seed, **{n: getattr(args, n) for n in ("task_min", "task_max")
                                                if getattr(args, n) is not None})
        elif args.approach == 3 and args.form == "hyperparameters":
            options.update(seed=args.seed, **{n: getattr(args, n) for n in ("seq_len", "threshold")
                                                if getattr(args, n) is not None})
        elif args.approach == 3:
            options.update(huber_delta=args.huber_delta, heldout_fraction=args.heldout_fraction, seed=args.seed)
            if args.base_law:
                options["base"] = load_law(args.base_law).estimates()
            if args.loss_law:
                options["loss_law"] = load_law(args.loss_law).to_dict()
            if args.per_arm_thinking:
                options["per_arm_thinking"] = True
            if args.per_arm_exponents:
                options["per_arm_exponents"] = True
            if args.reference_arm:
                options["reference_arm"] = args.reference_arm
            if args.gqa:
                options["gqa"] = True
            if args.floor is not None:
                options.update(floor=read_floor(args.floor), floor_mode=args.floor_mode)
            if args.shared_exponent:
                options["shared_exponent"] = True
            if args.objective:
                options["objective"] = args.objective
        else:
            if args.floor is not None:
                raise ValueError("--floor applies to approach 3 laws; approaches 1 and 2 have no E")
            options.update(budget_decimals=args.budget_decimals, seed=args.seed)
            if args.isoflop_method != "parabola":
                options["isoflop_method"] = args.isoflop_method
            for name in ("seed_noise", "noise_draws"):
                if getattr(args, name) is not None:
                    if args.isoflop_method != "porian":
                        raise ValueError(f"--{name.replace('_', '-')} applies only to --isoflop-method=porian")
                    options[name] = getattr(args, name)
        if args.where:
            options["where"] = args.where
        law = fit(args.table, form=args.form, approach=args.approach, target=args.target,
                  bootstrap=args.bootstrap, columns=columns, **options)
    except (TableError, LawError, ValueError) as e:
        print(f"scaling fit: error: {e}", file=sys.stderr)
        return 2
    path = law.save(args.output)
    print(summary(law))
    print(f"law file: {path}")
    return 0 if law.converged else 1


def read_floor(value: str) -> float:
    """A floor given as a number, or as the JSON of `scaling describe --corpus=...`."""
    import json
    from pathlib import Path

    try:
        return float(value)
    except ValueError:
        pass
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--floor {value!r}: neither a number nor a file")
    try:
        floor = json.loads(path.read_text())["entropy_nats_per_token"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"--floor {path}: not the JSON of `scaling describe --corpus=...` "
                         f"(needs entropy_nats_per_token): {e}") from None
    return float(floor)


def summary(law) -> str:
    """A plain-text table of the estimates, intervals and fit diagnostics."""
    lines = [f"form {law.form} (approach {law.approach}), target {law.target}, {law.n_points} points, "
             f"{law.n_starts} starts, objective {law.objective:.6g}"
             + ("" if law.approach != 3 else " (least squares on the loss)"
                if law.options.get("objective") == "squared_loss" else " (least squares on log lr and log batch)"
                if law.form == "hyperparameters" else " (step 2 least squares on accuracy; step 1 Huber delta "
                f"{law.huber_delta:g})" if law.form == "two_step" else f" (Huber delta {law.huber_delta:g})"),
             f"{'parameter':<14}{'estimate':>14}{'se':>12}{'95% low':>14}{'95% high':>14}"]
    for name, p in law.parameters.items():
        lines.append(f"{name:<14}{_num(p.estimate):>14}{_num(p.se):>12}{_num(p.ci[0]):>14}{_num(p.ci[1]):>14}")
    if law.heldout.get("mean_relative_error") is not None:
        h = law.heldout
        lines.append(f"held-out ({h['n_test']} highest-compute points): mean relative error "
                     f"{h['mean_relative_error']:.3%}, max {h['max_relative_error']:.3%}")
    elif law.heldout.get("skipped"):
        lines.append(f"held-out validation skipped: {law.heldout['skipped']}")
    if law.options.get("floor") is not None:
        how = "held at" if law.options.get("floor_mode") == "fix" else "bounded below by"
        lines.append(f"E {how} the known floor {law.options['floor']:.6g}")
        if law.options.get("points_below_floor"):
            lines.append(f"WARNING: {law.options['points_below_floor']} measured losses lie below the floor")
    if law.options.get("isoflop_method") == "porian":
        o = law.options
        lines.append(f"Porian et al. approach 2: {o['n_optima']} IsoFLOP curves, seed noise {o['seed_noise']:g}, "
                     f"{o['noise_draws']} draws per curve; interval from {len(law.bootstrap_samples['a'])} "
                     f"weighted refits; R^2 (N) {o['r_squared']['N']:.4f}")
        for dropped in o.get("dropped_curves", []):
            lines.append(f"dropped curve C = {dropped['C']:.3g}: {dropped['reason']}")
    if law.options.get("shared_exponent"):
        from analysis.forms import gadre_parameters
        g = gadre_parameters(law.estimates())
        lines.append("shared exponent (Gadre et al.): L = E + (a M^eta + b M^-eta) C^-eta, M = D/N: "
                     + ", ".join(f"{k} = {v:.6g}" for k, v in g.items()))
    if law.form == "two_step":
        e, o = law.estimates(), law.options
        lines.append(f"step 1 ({o['n_step1']} runs): task loss = {e['E']:.4g} + {e['A']:.4g}/N^{e['alpha']:.4f} + "
                     f"{e['B']:.4g}/D^{e['beta']:.4f}; mean |relative error| {o['step1_fit_error']:.2%}")
        lines.append(f"step 2 ({o['n_step2']} checkpoints + helper point (0, {o['task_max']:g})): accuracy = "
                     f"{e['a']:.4g} / (1 + exp(-{e['k']:.4g} (L - {e['x0']:.4g}))) + {e['b']:.4g}; "
                     f"mean |relative error| {o['step2_fit_error']:.2%}")
    if law.form == "hyperparameters":
        e = law.estimates()
        o = law.options
        lines.append(f"Step Law: lr = {e['k_lr']:.4g} N^{e['a_lr']:.4f} D^{e['b_lr']:.4f}, "
                     f"batch = {e['k_bs']:.4g} D^{e['b_bs']:.4f} (batch in units of batch_size x {o['seq_len']:g}); "
                     f"{o['n_near_optimal']} near-optimal runs (within {o['threshold']:g}) in {o['n_groups']} (N, D) "
                     f"groups; estimates are bootstrap means")
    if law.options.get("diagnostics"):
        from analysis.diagnostics import lines_from_dict
        lines += lines_from_dict(law.options["diagnostics"])
    if not law.converged:
        lines.append("WARNING: the best start did not converge; treat the estimates with caution")
    return "\n".join(lines)


def _num(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"
