"""Measured accuracy with replicates: TPT's matched-accuracy data multiplier and the test-time
effects, each with an interval from a bootstrap over runs (seeds), then problems.

A study's greedy accuracy cells (one per run, checkpoint, difficulty and thinking budget) are
averaged over the runs that differ only in their seed. A bootstrap draw resamples, for every arm
and model size, its runs with replacement, then each drawn run's problems (resampling a cell's n
problems with replacement gives Binomial(n, its accuracy) correct answers); every statistic is
recomputed on the draw. A few seeds understate the spread of their mean, so the run-level part of
each draw is widened to Student's t interval (`few_runs_factor`). With one seed per cell the
intervals hold evaluation noise only, and the findings say so.

The matched-accuracy multiplier (TPT, arXiv 2509.20186, measures data efficiency this way): for a
model size and a reference budget D_ref, the accuracy the reference arm (vanilla) reaches there is
the target; along an arm's branch curve (its accuracy at each data budget, linear in log tokens
between budgets) the first point that reaches the target is the tokens D_arm the arm needs; the
multiplier is D_ref / D_arm, in either accounting (all trained tokens, thinking included; or raw
document tokens). Where the arm already reaches the target at its smallest budget the multiplier is
at least D_ref / D_min ("reached at the smallest budget"); where it never does within its budgets, at
most D_ref / D_max ("not reached"). A statistic is carried as an interval [lo, hi] (equal for an
exact value), so a bootstrap of censored values stays honest: the interval's low end is the 2.5th
percentile of the draws' lo, its high end the 97.5th percentile of their hi.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats

ACCOUNTINGS = {"all": "tokens", "raw": "tokens_raw"}   # matched multipliers, per token accounting
REACHED, AT_SMALLEST, NOT_REACHED = "reached", "reached at the smallest budget", "not reached"
SETTING = ["arm", "params", "branch", "difficulty", "thinking_budget"]
INFERENCE_COLUMNS = {"run_id", "branch", "arm", "params", "tokens", "thinking_budget", "aggregator", "accuracy",
                     "n_problems", "mean_thinking_tokens"}   # (difficulty optional: one level)
TRAINING_COLUMNS = {"run_id", "branch", "tokens_raw"}        # (seed optional: one replicate)


def checkpoint_cells(training: pd.DataFrame, inference: pd.DataFrame) -> pd.DataFrame:
    """One row per run, finished checkpoint, difficulty and thinking budget (greedy answers):
    arm, params, seed, run_id, branch, tokens, tokens_raw, difficulty, thinking_budget,
    mean_thinking_tokens, correct, n. The seed and raw tokens come from the training table's final
    row of the same run and branch (a table without a seed column is one replicate, seed 0)."""
    greedy = inference[inference["aggregator"] == "greedy"]
    final = training[training["is_final"].astype(bool)] if "is_final" in training else training
    side = final.assign(seed=final["seed"] if "seed" in final else 0)[["run_id", "branch", "seed", "tokens_raw"]]
    cells = greedy.drop(columns=[c for c in ("seed", "tokens_raw") if c in greedy]).merge(
        side.drop_duplicates(["run_id", "branch"]), on=["run_id", "branch"], how="inner")
    if "difficulty" not in cells:
        cells = cells.assign(difficulty=0)
    cells = cells.assign(n=cells["n_problems"].astype(int),
                         correct=np.rint(cells["accuracy"] * cells["n_problems"]).astype(int))
    keep = ["arm", "params", "seed", "run_id", "branch", "tokens", "tokens_raw", "difficulty", "thinking_budget",
            "mean_thinking_tokens", "correct", "n"]
    return cells[keep].sort_values(SETTING + ["seed"]).reset_index(drop=True)


def thinking_arms(cells: pd.DataFrame) -> list[str]:
    """Arms whose models wrote thinking tokens at some budget (the others answer directly)."""
    return sorted(cells.loc[cells["mean_thinking_tokens"] > 0, "arm"].unique())


@dataclasses.dataclass(frozen=True)
class Replicates:
    """Accuracy cells averaged over seeds, and bootstrap draws of the same average."""

    settings: pd.DataFrame          # one row per SETTING: tokens and tokens_raw (means over seeds), n
    groups: tuple                   # per (arm, params): (row positions in settings, correct[R, S], n[R, S])
    seeds: dict                     # (arm, params) -> the seeds averaged over

    @classmethod
    def of(cls, cells: pd.DataFrame) -> "Replicates":
        settings = (cells.groupby(SETTING, as_index=False)
                    .agg(tokens=("tokens", "mean"), tokens_raw=("tokens_raw", "mean"), n=("n", "mean")))
        position = {key: i for i, key in enumerate(settings[SETTING].itertuples(index=False, name=None))}
        groups, seeds = [], {}
        for (arm, params), part in cells.groupby(["arm", "params"]):
            keys = sorted({k for k in part[SETTING].itertuples(index=False, name=None)})
            runs = sorted(part["seed"].unique())
            correct = np.full((len(runs), len(keys)), np.nan)
            n = np.full((len(runs), len(keys)), np.nan)
            column = {k: j for j, k in enumerate(keys)}
            row = {s: i for i, s in enumerate(runs)}
            for r in part.itertuples(index=False):
                j = column[(r.arm, r.params, r.branch, r.difficulty, r.thinking_budget)]
                correct[row[r.seed], j], n[row[r.seed], j] = r.correct, r.n
            groups.append((np.array([position[k] for k in keys]), correct, n))
            seeds[(arm, int(params))] = [int(s) for s in runs]
        return cls(settings, tuple(groups), seeds)

    def point(self) -> np.ndarray:
        """Accuracy of every setting, the mean over its runs."""
        out = np.empty(len(self.settings))
        for where, correct, n in self.groups:
            with np.errstate(invalid="ignore"):
                out[where] = np.nanmean(correct / n, axis=0)
        return out

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One bootstrap draw: runs resampled per arm and size, then each run's problems. The
        run-level part of the draw is widened by `few_runs_factor` (a handful of seeds must not
        give the interval of many)."""
        out = np.empty(len(self.settings))
        for where, correct, n in self.groups:
            runs = rng.integers(len(correct), size=len(correct))
            n_drawn = n[runs]
            ok = np.isfinite(n_drawn)
            drawn = np.full(n_drawn.shape, np.nan)
            drawn[ok] = rng.binomial(n_drawn[ok].astype(int), correct[runs][ok] / n_drawn[ok]) / n_drawn[ok]
            with np.errstate(invalid="ignore"):
                measured = correct / n
                center, picked = np.nanmean(measured, axis=0), np.nanmean(measured[runs], axis=0)
                out[where] = widened(center, picked, len(correct)) + np.nanmean(drawn, axis=0) - picked
        return out

    def replicates(self) -> int:
        """The fewest seeds any arm and size has (1: intervals hold evaluation noise only)."""
        return min(len(s) for s in self.seeds.values()) if self.seeds else 0


def few_runs_factor(runs: int) -> float:
    """The widening of the run-level bootstrap spread for `runs` replicates: sqrt(R / (R - 1)) makes
    the spread of a resampled mean the standard error's (the plain bootstrap's is smaller by that
    factor), and t(0.975, R - 1) / z(0.975) turns a normal 95% interval into Student's (for 3 runs,
    2.7 in all; for 10, 1.2). 1 for a single run (which has no run-level spread)."""
    if runs < 2:
        return 1.0
    return float(np.sqrt(runs / (runs - 1)) * stats.t.ppf(0.975, runs - 1) / stats.norm.ppf(0.975))


def widened(center, picked, runs: int):
    """A bootstrap draw's mean over `runs` resampled runs (`picked`), moved about the runs' mean
    `center` by few_runs_factor: the run-level part of every measured claim's draw."""
    return center + few_runs_factor(runs) * (picked - center)


def tokens_to_reach(tokens, accuracy, target: float) -> tuple[float, float, str]:
    """(lo, hi, status): the tokens at which a branch curve (accuracy at each budget, linear in log
    tokens between budgets) first reaches `target`. Exact when reached between budgets; (0, the
    smallest budget) when reached already there; (the largest budget, inf) when never reached."""
    order = np.argsort(tokens)
    tokens, accuracy = np.asarray(tokens, float)[order], np.asarray(accuracy, float)[order]
    if accuracy[0] >= target:
        return 0.0, float(tokens[0]), AT_SMALLEST
    for i in range(1, len(tokens)):
        if accuracy[i] >= target:
            share = (target - accuracy[i - 1]) / (accuracy[i] - accuracy[i - 1])
            value = float(np.exp(np.log(tokens[i - 1]) + share * (np.log(tokens[i]) - np.log(tokens[i - 1]))))
            return value, value, REACHED
    return float(tokens[-1]), float("inf"), NOT_REACHED


def multiplier_interval(reference_tokens: float, lo: float, hi: float) -> tuple[float, float]:
    """D_ref / D_arm for D_arm in [lo, hi]: [D_ref / hi, D_ref / lo] (0 and inf at the open ends).
    A target never reached needs more than the largest budget lo: the multiplier lies strictly
    below D_ref / lo (so a bound of exactly 1 still says "less than 1")."""
    if lo <= 0:
        return reference_tokens / hi, float("inf")
    upper = reference_tokens / lo
    return (reference_tokens / hi if np.isfinite(hi) else 0.0), (upper if np.isfinite(hi) else float(np.nextafter(upper, 0)))


class Statistics:
    """The statistics measured on one table of setting accuracies (the point, or a draw): each
    key maps to (lo, hi); `status` the point's matched-accuracy statuses."""

    def __init__(self, settings: pd.DataFrame, reference_arm: str, thinking: list[str]):
        self.settings, self.reference, self.thinking = settings, reference_arm, thinking
        self.compared = [a for a in sorted(settings["arm"].unique()) if a != reference_arm]
        self.columns = {c: settings[c].to_numpy() for c in settings.columns}
        self._masks: dict = {}
        s = settings
        self.largest_t = s.groupby(["arm", "params", "branch"])["thinking_budget"].transform("max").to_numpy()
        self.at_largest_t = s["thinking_budget"].to_numpy() == self.largest_t
        self.sizes = sorted(s["params"].unique())
        self.branches = {(a, p): part.sort_values("tokens")["branch"].tolist()
                         for (a, p), part in s.groupby(["arm", "params"])}

    def pooled(self, accuracy: np.ndarray, mask: np.ndarray) -> float:
        """Problem-weighted mean accuracy of the selected settings."""
        weights = self.columns["n"][mask]
        return float(np.sum(accuracy[mask] * weights) / np.sum(weights)) if weights.sum() else float("nan")

    def _mask(self, **where) -> np.ndarray:
        key = tuple(sorted(where.items()))
        if key not in self._masks:  # the same selections on every draw
            mask = np.ones(len(self.settings), bool)
            for column, value in where.items():
                mask &= self.columns[column] == value
            self._masks[key] = mask
        return self._masks[key]

    def curve(self, accuracy, arm, params, column) -> tuple[list[float], list[float]]:
        """The arm's branch curve at a size: tokens (in `column`) and accuracy at its largest
        thinking budget, difficulties pooled."""
        tokens, values = [], []
        for branch in self.branches.get((arm, params), []):
            mask = self._mask(arm=arm, params=params, branch=branch) & self.at_largest_t
            tokens.append(float(self.columns[column][mask].mean()))
            values.append(self.pooled(accuracy, mask))
        return tokens, values

    def largest_checkpoint(self, arm) -> tuple | None:
        """(params, branch) of the arm's largest model at its largest budget (where claims are made)."""
        sizes = [p for p in self.sizes if (arm, p) in self.branches]
        if not sizes:
            return None
        return sizes[-1], self.branches[(arm, sizes[-1])][-1]

    def measure(self, accuracy: np.ndarray) -> tuple[dict, dict]:
        values, statuses = {}, {}
        for params in self.sizes:
            if (self.reference, params) not in self.branches:
                continue
            for accounting, column in ACCOUNTINGS.items():
                ref_tokens, ref_acc = self.curve(accuracy, self.reference, params, column)
                for arm in self.compared:
                    if (arm, params) not in self.branches:
                        continue
                    tokens, acc = self.curve(accuracy, arm, params, column)
                    for d_ref, target in zip(ref_tokens, ref_acc):
                        lo, hi, status = tokens_to_reach(tokens, acc, target)
                        key = ("matched", arm, int(params), accounting, float(d_ref))
                        values[key] = multiplier_interval(d_ref, lo, hi)
                        statuses[key] = status
        for arm in self.thinking:
            where = self.largest_checkpoint(arm)
            if where is None:
                continue
            params, branch = where
            cell = self._mask(arm=arm, params=params, branch=branch)
            t = self.columns["thinking_budget"]
            budgets = sorted(set(t[cell]))
            if len(budgets) < 2:
                continue
            low, high = budgets[0], budgets[-1]
            d = self.columns["difficulty"]
            gain = self.pooled(accuracy, cell & (t == high)) - self.pooled(accuracy, cell & (t == low))
            values[("test_time", arm)] = (gain, gain)
            where = {"params": int(params), "tokens": float(self.columns["tokens"][cell].mean()),
                     "from_budget": int(low), "to_budget": int(high)}
            statuses[("test_time", arm)] = where
            hardest = d[cell].max()
            statuses[("hardest", arm)] = {**where, "difficulty": int(hardest)}
            hard = cell & (d == hardest)
            gain = self.pooled(accuracy, hard & (t == high)) - self.pooled(accuracy, hard & (t == low))
            values[("hardest", arm)] = (gain, gain)
            if len(budgets) >= 3:
                middle = budgets[-2]
                change = (self.pooled(accuracy, cell & (t == high))
                          - self.pooled(accuracy, cell & (t == middle)))
                values[("more_thinking", arm)] = (change, change)
                statuses[("more_thinking", arm)] = {**where, "from_budget": int(middle)}
        return values, statuses


def bootstrap(replicates: Replicates, reference_arm: str, thinking: list[str], draws: int, seed: int = 0) -> dict:
    """Every statistic's point value, status and 95% interval: {key: {estimate_lo, estimate_hi,
    low, high, status}} (see the module docstring for censored values). Matched multipliers for
    every arm against `reference_arm`; test-time effects for the `thinking` arms."""
    stats = Statistics(replicates.settings, reference_arm, thinking)
    point, statuses = stats.measure(replicates.point())
    rng = np.random.default_rng(seed)
    sampled = [stats.measure(replicates.draw(rng))[0] for _ in range(draws)]
    out = {}
    for key, (lo, hi) in point.items():
        los = np.array([s.get(key, (np.nan, np.nan))[0] for s in sampled], float)
        his = np.array([s.get(key, (np.nan, np.nan))[1] for s in sampled], float)
        # the draws' own values (no interpolation between a bound and infinity)
        low = float(np.nanpercentile(los, 2.5, method="lower")) if draws else None
        high = float(np.nanpercentile(his, 97.5, method="higher")) if draws else None
        out[key] = {"estimate_lo": lo, "estimate_hi": hi, "low": low, "high": high, "status": statuses.get(key)}
    return out


def matched_multipliers(measured: dict, replicates: Replicates, reference_arm: str) -> list[dict]:
    """findings.json's `matched_multipliers`: one entry per (arm, size, reference budget, accounting)."""
    out = []
    for key, m in measured.items():
        if key[0] != "matched":
            continue
        _, arm, params, accounting, d_ref = key
        exact = m["status"] == REACHED
        out.append({"arm": arm, "params": params, "accounting": accounting, "reference_arm": reference_arm,
                    "reference_tokens": d_ref, "status": m["status"],
                    "estimate": m["estimate_lo"] if exact else None,
                    # the bound a censored estimate gives: at least (reached at the smallest budget) or at most
                    "bound": None if exact else (m["estimate_lo"] if m["status"] == AT_SMALLEST else m["estimate_hi"]),
                    "low": m["low"] if m["low"] and np.isfinite(m["low"]) else None,
                    "high": m["high"] if m["high"] is not None and np.isfinite(m["high"]) else None,
                    "seeds": replicates.seeds.get((arm, params), []),
                    "reference_seeds": replicates.seeds.get((reference_arm, params), [])})
    return sorted(out, key=lambda e: (e["arm"], e["params"], e["accounting"], e["reference_tokens"]))


def effects(measured: dict, replicates: Replicates) -> list[dict]:
    """findings.json's `effects`: the test-time effects per thinking arm at its largest checkpoint."""
    out = []
    for key, m in measured.items():
        if key[0] == "matched":
            continue
        kind, arm = key
        out.append({"effect": kind, "arm": arm, **(m["status"] or {}), "estimate": m["estimate_lo"],
                    "low": m["low"], "high": m["high"], "seeds": replicates.seeds.get((arm, (m["status"] or {})
                                                                                            .get("params")), [])})
    return sorted(out, key=lambda e: (e["effect"], e["arm"]))
