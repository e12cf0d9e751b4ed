"""Which laws a grid's finished points can support, asked before anything is trained.

`scaling sweep --dry_run` builds the table the sweep will collect (one row per run and data
budget: N, D, C, arm; no loss yet) and asks the fitter the checks it makes before any compute
(analysis.fitting.fit_support), for the laws `scaling report` fits: chinchilla on the reference
arm's points (every arm's when those are too few), augmentation across the arms, approach 2 on
IsoFLOP groups, and the joint inference law on the grid's inference sweep.
"""

from __future__ import annotations

import pandas as pd

from analysis.fitting import fit_support
from analysis.forms.augmentation import ordered_arms
from analysis.isoflop import budgets

ISOFLOP_SIZES = 3    # sizes per compute budget for an IsoFLOP parabola (analysis.isoflop.isoflop_minima)
ISOFLOP_BUDGETS = 3  # budgets with a minimum, for the power laws of approach 2


def planned_points(plans) -> pd.DataFrame:
    """The canonical table of the finished points the plans will produce (store.RunPlan)."""
    rows = [{"N": float(p.point["params"]), "D": float(d), "C": float(p.point["flops_per_token"]) * d,
             "arm": p.point["arm"], "infer": d in _inferred_budgets(p)}
            for p in plans for d in p.point["data_budgets"]]
    return pd.DataFrame(rows)


def _inferred_budgets(p) -> set[float]:
    labels = set(p.point.get("infer_branches") or [])
    return {d for d, label in zip(p.point["data_budgets"], p.point["branches"]) if label in labels}


def law_support(frame: pd.DataFrame) -> list[tuple[str, str | None]]:
    """(law, None when the points support it, else why not) for each law `scaling report` fits."""
    arms, reference = ordered_arms(frame, None)
    out = []
    if len(arms) > 1:
        why = fit_support(frame[frame["arm"] == reference], "chinchilla", source=f"arm {reference}")
        pooled = fit_support(frame, "chinchilla", source="every arm") if why else None
        if why and pooled:
            out.append(("chinchilla", f"{why}; {pooled}"))
        else:
            out.append(("chinchilla", None))
            if why:
                out.append(("note", f"the reference arm's points are too few ({why}): the report pools every "
                                    "arm's points, whose raw-text losses also measure their formats"))
        out.append(("augmentation", fit_support(frame, "augmentation")))
    else:
        out.append(("chinchilla", fit_support(frame, "chinchilla")))
        out.append(("augmentation", f"one arm ({', '.join(arms)}); it compares two or more"))
    out.append(("approach 2 (IsoFLOP)", _isoflop_support(frame[frame["arm"] == reference] if reference else frame)))
    loss_law = any(why is None for name, why in out if name in ("chinchilla", "augmentation"))
    if not frame["infer"].any():
        out.append(("joint_inference", "the grid runs no inference (Grid.infer_files is empty)"))
    elif not loss_law:
        out.append(("joint_inference", "needs a loss law to build on, and none above can be fitted"))
    else:
        n = int(frame["infer"].sum())
        out.append(("joint_inference", None if n >= 2 else
                    f"inference on {n} finished point; the law relates loss to accuracy across two or more"))
    return out


def _isoflop_support(frame: pd.DataFrame) -> str | None:
    """Approach 2 fits a parabola per compute budget (log10 C to one decimal, as the fitter
    groups them) through 3 or more sizes, then power laws through 3 or more minima."""
    sizes = frame.groupby(budgets(frame, 1))["N"].nunique()
    usable = int((sizes >= ISOFLOP_SIZES).sum())
    if usable >= ISOFLOP_BUDGETS:
        return None
    return (f"{usable} compute budget(s) with {ISOFLOP_SIZES} or more sizes (need {ISOFLOP_BUDGETS}); "
            "a grid of Grid.compute_budgets gives each budget every size")


def describe(frame: pd.DataFrame) -> str:
    """The dry run's lines: the points, then each law with yes or why not."""
    arms = sorted(frame["arm"].unique())
    counts = ", ".join(f"{arm} {int((frame['arm'] == arm).sum())}" for arm in arms)
    lines = [f"laws these {len(frame)} finished points can fit ({frame['N'].nunique()} sizes x "
             f"{frame['D'].nunique()} data budgets; points per arm: {counts}):"]
    for name, why in law_support(frame):
        if name == "note":
            lines.append(f"    note: {why}")
        else:
            lines.append(f"  {name:22s} " + ("yes" if why is None else f"no: {why}"))
    return "\n".join(lines)
