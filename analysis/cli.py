"""The analysis package's commands: `scaling fit`, `scaling predict`, `scaling recommend` and
`scaling report` (argument parsing, checks of the user's input, printing, exit codes).

scaling.cli routes each verb here (`configure_<verb>` / `run_<verb>`); `scaling report` comes
through scaling.sweep.report_support, which adds what only the sweep side knows (sweep folders).
A form's settings become `scaling fit` flags: the ones below with their own spelling and help,
and a generic `--<setting>` for any other field of a registered form's options dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

from analysis import flags
from analysis.answers import below_floor
from analysis.atomic import unwritable, write_text_atomic
from analysis.diagnostics import lines_from_dict
from analysis.estimates import BOOTSTRAP
from analysis.forms import FORMS, form_of_approach, forms_with_option, get_form
from analysis.law import LawError, load_law
from analysis.questions import FLAGS, QUESTIONS, recommend
from analysis.questions.base import TOLERANCE
from analysis.prediction import KNOWN_INPUTS, predict, read_points, required_inputs, select_points
from analysis.tables import TableError, parse_columns

# ---------------------------------------------------------------------------------------------
# `scaling fit`
# ---------------------------------------------------------------------------------------------

# flag (argparse dest) -> the form setting it gives, where the two are spelt differently
SETTING_OF_FLAG = {"base_law": "base"}


def configure_fit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="results folder (holding training.parquet), or a CSV/Parquet table")
    parser.add_argument("--approach", type=int, choices=(1, 2, 3), default=3,
                        help="3: fit --form (default); 1: min-loss envelope; 2: IsoFLOP parabolas")
    fitted_by_approach_3 = sorted(name for name, form in FORMS.items() if 3 in form.approaches)
    parser.add_argument("--form", choices=fitted_by_approach_3, default="chinchilla",
                        help="law form; 'hyperparameters' is Step Law (columns N, D, lr, batch_size, loss); "
                             "'two_step' the OLMo ladder (N, D, task_loss, accuracy[, final])")
    parser.add_argument("--target", default="eval_loss", help="the column to fit (default eval_loss)")
    parser.add_argument("--bootstrap", type=flags.count, default=BOOTSTRAP, help=f"bootstrap resamples (0: none; default {BOOTSTRAP})")
    parser.add_argument("--columns", default="", help="column map, e.g. N=params,D=tokens,loss=eval_loss")
    parser.add_argument("--huber-delta", type=flags.positive, default=1e-3,
                        help="Huber loss threshold on log residuals (> 0; default 1e-3)")
    parser.add_argument("--heldout-fraction", type=flags.share_below_one, default=0.2,
                        help="share of highest-compute points held out for validation (0: none)")
    parser.add_argument("--where", help="fit only the rows where this pandas query holds, e.g. "
                                        "\"dataset == 'rw' and hparams == 'tuned'\"")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, help="law file to write (JSON)")
    settings = parser.add_argument_group("form settings (each applies to the forms that have it)")
    settings.add_argument("--task-min", type=float,
                          help="--form=two_step: the task's chance accuracy (default 0.25)")
    settings.add_argument("--task-max", type=float,
                          help="--form=two_step: the task's best accuracy, the helper point at task loss 0 (default 1)")
    settings.add_argument("--base-law", help="data_constrained: fix the base law to this law file's estimates")
    settings.add_argument("--loss-law", help="joint_inference: the loss law file for step 1")
    settings.add_argument("--per-arm-thinking", action="store_true", default=None,
                          help="joint_inference on an augmentation loss law: a test-time slope gamma_T per arm")
    settings.add_argument("--per-arm-midpoint", action="store_true", default=None,
                          help="joint_inference on an augmentation loss law: a loss-to-accuracy midpoint L0 per arm")
    settings.add_argument("--per-arm-exponents", action="store_true", default=None,
                          help="augmentation: a data exponent per arm instead of multipliers")
    settings.add_argument("--reference-arm", help="augmentation: the arm whose data counts 1x (default vanilla)")
    settings.add_argument("--gqa", action="store_true", default=None, help="architecture: add the GQA factor")
    settings.add_argument("--shared-exponent", action="store_true", default=None,
                          help="chinchilla: one exponent for N and D (Gadre et al. 2024's over-training law); "
                               "fitted by least squares on the loss unless --objective says otherwise")
    settings.add_argument("--objective", choices=("huber_log", "squared_loss"),
                          help="approach 3: Huber on log residuals (default) or least squares on the loss "
                               "(the default with --shared-exponent)")
    settings.add_argument("--budget-decimals", type=int,
                          help="approaches 1/2: compute budgets are log10 C rounded to this many decimals (default 1)")
    settings.add_argument("--floor", help="a known irreducible loss: a number, or the JSON file `scaling describe "
                                          "--corpus=synthetic` prints (its entropy_nats_per_token)")
    settings.add_argument("--floor-mode", choices=("bound", "fix"),
                          help="with --floor: keep E >= the floor (bound, default) or set E = the floor (fix)")
    settings.add_argument("--isoflop-method", choices=("parabola", "porian"),
                          help="approach 2: a parabola per IsoFLOP curve (default) or Porian et al. 2024's "
                               "Akima-spline minima with a seed-noise bootstrap and weighted power law")
    settings.add_argument("--seed-noise", type=float,
                          help="--isoflop-method=porian: loss standard deviation between seeds (default 0.002)")
    settings.add_argument("--noise-draws", type=int,
                          help="--isoflop-method=porian: seed-noise perturbations per curve (default 1000)")
    settings.add_argument("--seq-len", type=float,
                          help="--form=hyperparameters: tokens per sequence, to count batch_size in tokens (default 1)")
    settings.add_argument("--threshold", type=float,
                          help="--form=hyperparameters: near-optimal runs are within this relative loss of their "
                               "(N, D) group's best (default 0.0025)")
    _add_generic_setting_flags(settings, parser)


def _add_generic_setting_flags(group, parser) -> None:
    """A `--<setting>` flag for every setting of a registered form that has no flag above."""
    taken = {action.dest for action in parser._actions} | set(SETTING_OF_FLAG.values())
    for form in FORMS.values():
        for f in dataclasses.fields(form.Options):
            if f.name in taken or f.default is dataclasses.MISSING or not isinstance(f.default, (bool, int, float, str)):
                continue
            taken.add(f.name)
            flag, help_text = f"--{f.name.replace('_', '-')}", f.metadata.get("help", f"setting of form {form.name!r}")
            if isinstance(f.default, bool):
                group.add_argument(flag, dest=f.name, action="store_true", default=None, help=help_text)
            else:
                group.add_argument(flag, dest=f.name, type=type(f.default), help=help_text)


def _settings_from_flags(args, form) -> dict:
    """The form settings the flags give; a flag of a setting the form does not have is refused,
    naming the forms that have it."""
    fields = {f.name for f in dataclasses.fields(form.Options)}
    every = {f.name for other in FORMS.values() for f in dataclasses.fields(other.Options)}
    settings = {}
    for dest, value in vars(args).items():
        setting = SETTING_OF_FLAG.get(dest, dest)
        if setting not in every or value is None:
            continue
        if setting not in fields:
            having = forms_with_option(setting)
            where = " or ".join(f"--form={name}" if 3 in FORMS[name].approaches
                                else " or ".join(f"--approach={a}" for a in FORMS[name].approaches) for name in having)
            raise ValueError(f"--{dest.replace('_', '-')} is not a setting of form {form.name!r}; it applies to {where}")
        settings[setting] = value
    if "base" in settings:
        settings["base"] = load_law(settings["base"]).estimates()
    if "loss_law" in settings:
        settings["loss_law"] = load_law(settings["loss_law"])
    if "floor" in settings:
        settings["floor"] = read_floor(settings["floor"])
    return settings


def run_fit(args) -> int:
    problem = unwritable(args.output, "-o")
    if problem:
        print(f"scaling fit: error: {problem}", file=sys.stderr)
        return 2
    from analysis.fitting import fit  # the fitting stack (JAX) when a fit runs: --help imports none
    try:
        columns = parse_columns(args.columns)
        form = get_form(args.form) if args.approach == 3 else form_of_approach(args.approach)
        settings = _settings_from_flags(args, form)
        law = fit(args.table, form=form.name, approach=args.approach, target=args.target, bootstrap=args.bootstrap,
                  columns=columns, huber_delta=args.huber_delta, heldout_fraction=args.heldout_fraction,
                  seed=args.seed, where=args.where, **settings)
    except (TableError, LawError, ValueError) as e:
        print(f"scaling fit: error: {e}", file=sys.stderr)
        return 2
    path = law.save(args.output)
    print(summary(law))
    print(f"law file: {path}")
    return 0 if law.converged else 1


def read_floor(value: str) -> float:
    """A floor given as a number, or as the JSON of `scaling describe --corpus=...`."""
    try:
        return floor_number(float(value))
    except ValueError as e:
        if "--floor" in str(e):
            raise
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--floor {value!r}: neither a number nor a file")
    try:
        floor = json.loads(path.read_text())["entropy_nats_per_token"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"--floor {path}: not the JSON of `scaling describe --corpus=...` "
                         f"(needs entropy_nats_per_token): {e}") from None
    return floor_number(float(floor))


def floor_number(value: float) -> float:
    """A floor is an irreducible loss: finite and above zero."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--floor={value:g}: an irreducible loss must be a finite number above zero")
    return value


def summary(law) -> str:
    """A plain-text table of the estimates, intervals and fit diagnostics."""
    form = law.form
    lines = [f"form {law.form} (approach {law.approach}), target {law.target}, {law.n_points} points, "
             f"{law.n_starts} starts, objective {law.objective:.6g}" + form.objective_text(law),
             f"{'parameter':<14}{'estimate':>14}{'se':>12}{'95% low':>14}{'95% high':>14}  status"]
    for name, p in law.parameters.items():
        lines.append(f"{name:<14}{_num(p.estimate):>14}{_num(p.se):>12}{_num(p.ci[0]):>14}{_num(p.ci[1]):>14}"
                     f"  {p.status or '-'}")
    lines += [f"{name}: {p.status}: {p.reason} (interval: {p.method})" for name, p in law.parameters.items()
              if p.status not in (None, "identified")]
    replicates = law.diagnostics.get("replicates") or {}
    if replicates.get("note"):
        lines.append(f"note: {replicates['note']}")
    if law.heldout.get("mean_relative_error") is not None:
        h = law.heldout
        lines.append(f"held-out ({h['n_test']} highest-compute points): mean relative error "
                     f"{h['mean_relative_error']:.3%}, max {h['max_relative_error']:.3%}")
    elif law.heldout.get("skipped"):
        lines.append(f"held-out validation skipped: {law.heldout['skipped']}")
    lines += form.summary_lines(law)
    if law.diagnostics.get("diagnostics"):
        lines += lines_from_dict(law.diagnostics["diagnostics"])
    if not law.converged:
        lines.append("WARNING: the best start did not converge; treat the estimates with caution")
    return "\n".join(lines)


def _num(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


# ---------------------------------------------------------------------------------------------
# `scaling predict`
# ---------------------------------------------------------------------------------------------

def configure_predict(parser) -> None:
    parser.add_argument("law", help="law file written by `scaling fit`")
    for name in KNOWN_INPUTS:
        parser.add_argument(f"--{name}", dest=f"input_{name}",
                            help=f"{name}: one value or a comma-separated list (lists of one length broadcast)")
    parser.add_argument("--points", help="CSV/Parquet with one column per input (N, D, ...), one point per row; "
                                         "a column with the law's target adds the relative error")
    parser.add_argument("--columns", default="", help="--points column map, e.g. N=N_params,D=D_tokens,loss=loss_c4_val")
    parser.add_argument("--where", help="--points: only the rows where this pandas query holds")
    parser.add_argument("--tolerance", type=float, default=3.0,
                        help="warn when a point leaves the fitted ranges by more than this factor (default 3)")
    parser.add_argument("--json", action="store_true", help='print {"predictions": [...]} instead of a table')


def run_predict(args) -> int:
    try:
        law = load_law(args.law)
    except (OSError, LawError) as e:
        print(f"scaling predict: cannot use law file {args.law}: {e}", file=sys.stderr)
        return 2
    problem = check_law_bounds(law, args.law)
    if problem:
        print(f"scaling predict: {problem}", file=sys.stderr)
        return 2
    given = {name: getattr(args, f"input_{name}") for name in KNOWN_INPUTS
             if getattr(args, f"input_{name}") is not None}
    try:
        if args.points:
            if given:
                raise TableError(f"give the points either with --points or with --{'/--'.join(given)}, not both")
            points, source = read_points(args.points), str(args.points)
            if args.where:
                points = select_points(points, args.where, source)
        elif given:
            if args.columns or args.where:
                raise TableError("--columns and --where apply to --points")
            points = {k: [v.strip() for v in text.split(",")] for k, text in given.items()}
            source = "command line"
        else:
            raise TableError(f"no points: give {', '.join('--' + n for n in required_inputs(law))} or --points=FILE")
        with np.errstate(over="ignore"):  # an overflow far outside the fitted ranges is reported below, once
            result = predict(law, points, tolerance=args.tolerance, source=source, columns=parse_columns(args.columns))
    except (TableError, LawError, ValueError) as e:
        print(f"scaling predict: error: {e}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"scaling predict: warning: {warning}", file=sys.stderr)
    if args.json:
        answer, overflowed = finite_json(result.to_dict())
        if overflowed:
            print(f"scaling predict: warning: {overflowed} value(s) are not finite numbers at these points (the law "
                  f"overflows this far outside its fitted ranges); written as null", file=sys.stderr)
        print(json.dumps(answer, allow_nan=False))
    else:
        print(result.table())
    return 0


def finite_json(value) -> tuple[object, int]:
    """`value` with every non-finite float as None (JSON has no inf or nan), and how many there were."""
    if isinstance(value, float):
        return (value, 0) if math.isfinite(value) else (None, 1)
    if isinstance(value, dict):
        pairs = [(k, finite_json(v)) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, sum(n for _, (_, n) in pairs)
    if isinstance(value, (list, tuple)):
        items = [finite_json(v) for v in value]
        return [v for v, _ in items], sum(n for _, n in items)
    return value, 0


# ---------------------------------------------------------------------------------------------
# `scaling recommend`
# ---------------------------------------------------------------------------------------------

def configure_recommend(parser) -> None:
    """The question flags come from the questions (analysis.questions): help, type and default,
    grouped under the first question that reads each."""
    parser.add_argument("law", help="law file written by `scaling fit`")
    added = set()
    for question in QUESTIONS:
        group = parser.add_argument_group(question.title.lower())
        for flag in question.flags:
            if flag.name not in added:
                added.add(flag.name)
                group.add_argument(f"--{flag.name}", type=flag.type, default=flag.default, help=flag.help)
    parser.add_argument(f"--{TOLERANCE.name}", type=TOLERANCE.type, default=TOLERANCE.default, help=TOLERANCE.help)
    parser.add_argument("--floor", help="the true irreducible loss (a number, or the JSON of `scaling describe "
                                        "--corpus=synthetic`): warn when a predicted loss falls below it "
                                        "(default: the floor the law was fitted with, if any)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def check_law_bounds(law, source: str) -> str | None:
    """A law whose estimates lie outside its form's bounds (a negative exponent, say) answers
    nothing meaningful: say which parameter and the bounds."""
    bounds = law.form.bounds_for(law.settings)
    for name, value in law.estimates().items():
        low, high = bounds.get(name, (-math.inf, math.inf))
        if not low <= float(value) <= high:
            return (f"cannot use law file {source}: parameter {name} = {float(value):g} is outside the "
                    f"{law.form} form's bounds [{low:g}, {high:g}]")
    return None


def run_recommend(args) -> int:
    try:
        law = load_law(args.law)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"scaling recommend: cannot use law file {args.law}: {e}", file=sys.stderr)
        return 2
    try:
        problem = check_law_bounds(law, args.law)
        if problem:
            print(f"scaling recommend: {problem}", file=sys.stderr)
            return 2
        # the same call as Law.recommend: the answer with whether the data determine it
        answer = recommend(law, **{flag.name: getattr(args, flag.name) for flag in FLAGS})
        floor = read_floor(args.floor) if args.floor is not None else getattr(law.settings, "floor", None)
    except ValueError as e:
        print(f"scaling recommend: {e}", file=sys.stderr)
        return 2
    for warning in answer.warnings + tuple(below_floor(answer, floor, args.target_loss)):
        print(f"scaling recommend: warning: {warning}", file=sys.stderr)
    print(json.dumps(answer.to_dict()) if args.json else answer.table())
    return 0


# ---------------------------------------------------------------------------------------------
# `scaling report`
# ---------------------------------------------------------------------------------------------

def configure_report(parser) -> None:
    parser.add_argument("path", help="results dir (training.parquet, inference.parquet), sweep dir, or one table")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    parser.add_argument("--columns", help="column map for a foreign table, e.g. N='Model Size',C='Training FLOP'")
    parser.add_argument("--target", default="eval_loss", help="the loss column laws are fitted to (default eval_loss)")
    parser.add_argument("--bootstrap", type=flags.count, default=BOOTSTRAP,
                        help=f"bootstrap refits per law (default {BOOTSTRAP}, as `scaling fit`)")
    parser.add_argument("--law", action="append", default=[], metavar="LAW_FILE",
                        help="a law file (`scaling fit -o`) used in place of fitting the law of its kind "
                             "(chinchilla, approach 2, augmentation, joint_inference); repeatable")
    parser.add_argument("--where", default=None,
                        help="keep the training rows for which this pandas query holds, as `scaling fit --where`")
    parser.add_argument("--approach", type=int, choices=(2, 3), default=3,
                        help="the law that draws the compute-optimal frontier and answers the compute-optimal "
                             "split: 3 (the Chinchilla law; default) or 2 (the IsoFLOP law)")
    parser.add_argument("--budgets", type=flags.positive_list, help="training FLOPs to recommend for, comma-separated (default: the "
                                          "decades around the largest budget in the data)")
    parser.add_argument("--inference_tokens", type=flags.positive, default=1e12,
                        help="lifetime inference tokens for the inference-aware example (default 1e12)")
    parser.add_argument("--floor", default="auto",
                        help="the true irreducible loss set beside the fitted E: auto (the synthetic generator's "
                             "entropy when the sweep's runs evaluated on it; default), none, a number, or the "
                             "JSON file `scaling describe --corpus=synthetic` prints")


def parse_floor(value: str):
    """--floor: "auto", "none", a number, or a describe JSON file."""
    if value in ("auto", "none"):
        return None if value == "none" else "auto"
    try:
        return floor_number(float(value))
    except ValueError as e:
        if "--floor" in str(e):
            raise
    path = Path(value)
    try:
        data = json.loads(path.read_text())
        floor_number(float(data["entropy_nats_per_token"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"--floor {value!r}: give auto, none, a number or the JSON of `scaling describe "
                         f"--corpus=...` ({type(e).__name__}: {e})") from None
    return {**data, "source": str(path)}


def run_report(args, sweep=None) -> int:
    """`sweep`: a SweepSupport (analysis.report.sources) for sweep folders and their true floor."""
    problem = unwritable(args.output, "-o")
    if problem:
        print(f"scaling report: error: {problem}", file=sys.stderr)
        return 2
    from analysis.report import build_report  # the fitting stack (JAX) when a report runs: --help imports none
    from analysis.report.laws import APPROACH_2
    try:
        text = build_report(args.path, parse_columns(args.columns), args.bootstrap, args.budgets,
                            args.inference_tokens, args.target, floor=parse_floor(args.floor), sweep=sweep,
                            laws=[load_law(path) for path in args.law], where=args.where,
                            frontier="chinchilla" if args.approach == 3 else APPROACH_2)
    except (ValueError, LawError) as e:
        print(f"scaling report: {e}", file=sys.stderr)
        return 2
    write_text_atomic(Path(args.output), text)
    print(f"wrote {args.output} ({len(text) / 1024:.0f} KiB)")
    return 0
