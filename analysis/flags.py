"""Argparse types for numeric flags, for both packages' commands: a value outside its range is
refused while the command line is parsed (exit 2, "argument --flag: ..."), before any work, rather
than giving a silently wrong law (a Huber delta of 0 leaves the start values as the estimates).
Imports nothing heavy."""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind=float) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
    return value


def positive(text: str) -> float:
    """A finite number above zero (a budget, a token count, a Huber delta)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number above zero")
    return value


def positive_int(text: str) -> int:
    """An integer above zero (a context length)."""
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be an integer above zero")
    return value


def count(text: str) -> int:
    """An integer >= 0 (bootstrap resamples: 0 means none)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be an integer >= 0 (0: none)")
    return value


def share_below_one(text: str) -> float:
    """A share in [0, 1): held out from a fit, whose remainder must still be fitted."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a share in [0, 1) (0: none held out)")
    return value


def positive_list(text: str) -> list[float]:
    """Comma-separated finite numbers above zero (training budgets)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more numbers, comma-separated")
    return [positive(item) for item in items]
