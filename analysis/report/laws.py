"""Which laws the report fits: every law the data supports, each with the reason when it cannot."""

from __future__ import annotations

import concurrent.futures

import numpy as np

from analysis.fitting import fit
from analysis.forms.augmentation import ordered_arms
from analysis.tables import TooFewPoints

# With a known floor, the laws used for answers hold E at it; this E-free fit is the check.
E_FREE = "chinchilla (E free)"


def measured_thinking(rows):
    """The inference rows with an arm that never thinks (no thinking token written at any budget:
    its models answer directly) at T = its measured 0 thinking tokens, not the nominal budget it
    was asked with: the joint law then gives it no test-time slope."""
    if not {"arm", "mean_thinking_tokens", "thinking_budget"} <= set(rows.columns):
        return rows
    silent = rows.groupby("arm")["mean_thinking_tokens"].transform("max") == 0
    # Its rows at several nominal budgets are then one measurement (the same answers, every column
    # equal): kept once, not counted once per budget asked.
    return rows.assign(thinking_budget=rows["thinking_budget"].where(~silent, 0)).drop_duplicates()


APPROACH_2 = "approach 2 (IsoFLOP)"


def report_name(law) -> str:
    """The name the report gives a law (a law file the user passes takes the place of the fit of
    that name)."""
    return APPROACH_2 if law.approach in (1, 2) else law.form.name


def law_label(name: str, law) -> str:
    """Which law a figure or an answer comes from, in words."""
    return f"the {name} law (form {law.form}, approach {law.approach}, {law.n_points} points)"


def fit_laws(training_source, canonical, inference, columns, bootstrap, target, floor: float | None = None,
             given=None):
    """Every law the data supports, fitted with analysis.fitting.fit, by name; (name, reason) for
    each law that could not be fitted; and (name, caveat) for a law fitted on other rows than
    planned. With a known `floor` (the synthetic corpus's entropy) the Chinchilla and augmentation
    laws hold E at it (a fitted E on a small grid is often not determined: issue 27), and the
    Chinchilla law is fitted with E free as well (E_FREE), as the check against the truth.
    `given`: laws by report name (law files) used as they are, not fitted again."""
    laws, notes = dict(given or {}), []
    caveats = [(name, "read from a law file, not fitted here") for name in laws]
    several_arms = "arm" in canonical and canonical["arm"].nunique() > 1
    # The single-arm laws describe plain pretraining: with several arms, the reference arm's rows
    # (an arm's raw-text loss also measures its format; pooled, the arms make one law of several).
    arm_column = (columns or {}).get("arm", "arm")  # the table's own name for it (a --columns map)
    single = {"where": f"`{arm_column}` == {ordered_arms(canonical, None)[1]!r}"} if several_arms else {}
    held = {"floor": floor, "floor_mode": "fix"} if floor is not None else {}
    plan = [("chinchilla", dict(form="chinchilla", approach=3, **single, **held)),
            (APPROACH_2, dict(approach=2, **single))]
    if floor is not None:
        plan.append((E_FREE, dict(form="chinchilla", approach=3, **single)))
    if several_arms:
        plan.append(("augmentation", dict(form="augmentation", approach=3, **held)))
    elif "augmentation" not in laws:
        notes.append(("augmentation", "the data has a single arm"))
    plan = [(name, options) for name, options in plan if name not in laws]
    def attempt(name, options):
        """(law or None, note or None, caveat or None) of one planned fit."""
        with np.errstate(all="ignore"):  # bootstrap draws far from the data overflow; intervals show it
            try:
                return fit(training_source, target=target, bootstrap=bootstrap, columns=columns, **options), None, None
            except ValueError as e:
                if "where" not in options or not isinstance(e, TooFewPoints):
                    return None, str(e), None
                # Too few reference points: every arm's rows, saying so beside the law.
                caveat = (f"fitted on every arm's rows, whose raw-text loss also measures their formats: "
                          f"the reference arm's alone are too few ({e})")
                pooled = {k: v for k, v in options.items() if k != "where"}
                try:
                    return fit(training_source, target=target, bootstrap=bootstrap, columns=columns, **pooled), None, caveat
                except ValueError as again:
                    return None, str(again), caveat

    # The planned laws are independent: fitted side by side, their compilations and solves (which
    # release the GIL) use both of a small machine's cores. Results do not depend on the order.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda item: attempt(*item), plan))
    for (name, _), (law, note, caveat) in zip(plan, outcomes):
        if caveat:
            caveats.append((name, caveat))
        if law is not None:
            laws[name] = law
        if note:
            notes.append((name, note))
    loss_law = laws.get("augmentation") or laws.get("chinchilla")
    if "joint_inference" in laws:
        return laws, notes, caveats
    if inference is None:
        notes.append(("joint_inference", "no inference table (inference.parquet) beside the training table"))
    elif loss_law is None:
        notes.append(("joint_inference", "no loss law to build it on"))
    else:
        # pass@k rows measure a different thing than greedy/majority answers: fit on the latter.
        rows = measured_thinking(inference[inference["aggregator"] != "pass@k"] if "aggregator" in inference
                                 else inference)
        # With several pretraining arms, each gets its own test-time slope (the question is
        # whether thinking-trained models turn thinking tokens into accuracy when others do not)
        # and its own loss-to-accuracy midpoint (each arm's loss is on raw text, a format the
        # thinking arms' training changes); without an augmentation law, from the reference arm's
        # Chinchilla law at each row's N and D.
        per_arm = "arm" in rows and rows["arm"].nunique() > 1
        try:
            laws["joint_inference"] = fit(rows, form="joint_inference", target="accuracy", bootstrap=bootstrap,
                                          loss_law=loss_law,
                                          **({"per_arm_thinking": True, "per_arm_midpoint": True} if per_arm else {}))
        except ValueError as e:
            notes.append(("joint_inference", str(e)))
    return laws, notes, caveats
