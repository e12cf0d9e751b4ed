"""`scaling <verb>`: one console script for the whole pipeline.

Each verb lives in its entry module, beside the entry point it drives (docs/architecture.md,
"Commands"); this file only routes, and VERBS is the one list of them. A verb's module provides
`configure_<verb>(parser)` and `run_<verb>(args) -> int`; gin flags (--gin_file, --gin.NAME=VALUE)
are taken out of the command line first and arrive as `args.gin` (a `GinArgs`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

# TensorFlow (under seqio) only feeds data here: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from scaling.native_noise import quiet_tensorflow_import

quiet_tensorflow_import()

from scaling.configuration import ConfigError, split_gin_args  # noqa: E402 (after the import hook)

# The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130

# verb -> (module, one-line help)
VERBS = {
    "augment": ("scaling.data.augment", "run a teacher over a corpus into the thinking-augmentation cache"),
    "demo": ("scaling.demo", "the whole study on the embedded corpus: sweep, collect, fit, figures, report, answers"),
    "describe": ("scaling.describe", "print parameter and FLOP accounting of a model preset as JSON"),
    "fit": ("analysis.cli", "fit a scaling law (with bootstrap intervals) to a results folder or table"),
    "infer": ("scaling.infer", "evaluate a trained run over test-time thinking budgets and parallel samples"),
    "predict": ("analysis.cli", "a fitted law's prediction at given points (N, D, ...), with bootstrap intervals"),
    "recommend": ("analysis.cli", "answer budget questions from a fitted law, with bootstrap intervals"),
    "report": ("scaling.sweep.report_support", "write a self-contained HTML report: laws, figures, recommendations, provenance"),
    "train": ("scaling.train", "train a model preset: WSD cooldown branches or cosine, exact resume"),
    "sweep": ("scaling.sweep.launch", "plan and run a grid of runs (grids/*.gin) locally or on Ray"),
    "status": ("scaling.sweep.status", "show each run of a sweep: state, progress, latest loss, throughput"),
    "collect": ("scaling.sweep.collect", "write a sweep's training.parquet and inference.parquet, validated"),
    "compare": ("analysis.report.claims", "two studies' claims side by side (findings.json): contradictions, "
                "estimates inside the other's interval"),
}

# Verbs configured by their flags alone: a gin flag given to them would be silently ignored.
NO_GIN = ("fit", "predict", "recommend", "report", "status", "collect")


class OneLineErrors(argparse.ArgumentParser):
    """A usage mistake in one line naming the flag and the problem (verbs inherit it), not the
    whole usage block: the options are one --help away."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (options: `{self.prog} --help`)\n")


def main(argv: list[str] | None = None) -> int:
    return _dispatch(argv)[1]


def interrupted_line(verb: str | None) -> str:
    """The one line a Ctrl-C gets (scaling train says more: it checkpoints first)."""
    return (f"scaling{' ' + verb if verb else ''}: interrupted (Ctrl-C); files are written whole or not at "
            f"all, so every file already there is intact")


def _dispatch(argv: list[str] | None) -> tuple[str | None, int]:
    """(the verb run, or None when the command line named none, its exit code)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        gin_args, rest = split_gin_args(argv)
    except ConfigError as e:
        print(f"scaling: error: {e}", file=sys.stderr)
        return None, 2
    parser = OneLineErrors(prog="scaling", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="verb")
    modules = {}
    for verb, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        if verb in (rest[:1] or [None]):
            modules[verb] = importlib.import_module(module_name)
            getattr(modules[verb], f"configure_{verb}")(verb_parser)
    args = parser.parse_args(rest)
    if args.verb in NO_GIN and (gin_args.files or gin_args.bindings):
        given = [f"--gin_file={f}" for f in gin_args.files] + [f"(gin binding {b})" for b in gin_args.bindings]
        print(f"scaling {args.verb}: error: {args.verb} takes no gin flags, and would ignore {' '.join(given)}; "
              f"see `scaling {args.verb} --help` for its options", file=sys.stderr)
        return args.verb, 2
    args.gin = gin_args
    try:
        return args.verb, int(getattr(modules[args.verb], f"run_{args.verb}")(args) or 0)
    except ConfigError as e:
        print(f"scaling {args.verb}: configuration error: {e}", file=sys.stderr)
        return args.verb, 2
    except OSError as e:  # a full disk, a read-only folder: what failed, in one line (writes are atomic)
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"scaling {args.verb}: error: {e.strerror or e}{where}; files already written are intact",
              file=sys.stderr)
        return args.verb, 1


# Verbs whose process ends with os._exit once everything is written: they hold tf.data
# pipelines (scaling.data.batch_cache keeps the training stream open between phases), and a
# tf.data iterator destroyed at exit waits on its threads, measured at 12 to 90 s.
EXIT_AT_ONCE = ("train", "infer")

# Verbs that hold nothing to save on Ctrl-C (their every write is atomic, or an append a reader
# may find torn): the process ends in the signal handler itself, so no library that catches
# KeyboardInterrupt (some do, around optional imports) and no worker thread can keep it running.
# train checkpoints first, sweep and demo stop their runs, infer finishes its write: they take
# KeyboardInterrupt.
END_ON_INTERRUPT = ("augment", "collect", "describe", "fit", "predict", "recommend", "report", "status")


def _end_on_interrupt(verb: str):
    def handler(signum, frame):
        print(interrupted_line(verb), file=sys.stderr, flush=True)
        end_child_processes()
        os._exit(INTERRUPTED)
    return handler


def end_child_processes() -> None:
    """Terminate this process's multiprocessing workers (the report's process beside its fits:
    they ignore Ctrl-C, and orphaned they would wait on their parent's queue for ever), and release
    their queues' semaphores as a normal exit does (else multiprocessing's resource tracker warns
    of them once this process is gone)."""
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    from multiprocessing import util
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=5)
    util._run_finalizers(0)  # the semaphores' finalizers (exit priority 0), as at interpreter exit


def entry() -> None:
    """The console script (and `python -m scaling.cli`): main(), then exit. Every output of a
    train or infer run (checkpoints waited for, rows, logs, timings) is written before main
    returns, so skipping interpreter shutdown loses nothing. A Ctrl-C also ends the process at
    once: waiting for worker threads (a report's fits, tf.data) would outlast the user's patience,
    and every write is atomic or an append that a reader may find torn."""
    argv = sys.argv[1:]
    verb = next((a for a in argv if a in VERBS), None)
    if verb in END_ON_INTERRUPT and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _end_on_interrupt(verb))
    try:
        verb, code = _dispatch(argv)
    except KeyboardInterrupt:  # the one interrupt path: one line, exit 130, no interpreter shutdown
        print(interrupted_line(verb), file=sys.stderr)
        end_child_processes()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    if verb in EXIT_AT_ONCE:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
