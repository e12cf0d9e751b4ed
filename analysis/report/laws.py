"""Which laws the report fits: every law the data supports, each with the reason when it cannot."""

from __future__ import annotations

from analysis.fitting import fit
from analysis.forms.augmentation import ordered_arms
from analysis.forms.base import get_form


def fit_laws(training_source, canonical, inference, columns, bootstrap, target):
    """Every law the data supports, fitted with analysis.fitting.fit, by name; (name, reason) for
    each law that could not be fitted; and (name, caveat) for a law fitted on other rows than
    planned."""
    laws, notes, caveats = {}, [], []
    several_arms = "arm" in canonical and canonical["arm"].nunique() > 1
    # The single-arm laws describe plain pretraining: with several arms, the reference arm's rows
    # (an arm's raw-text loss also measures its format; pooled, the arms make one law of several).
    arm_column = (columns or {}).get("arm", "arm")  # the table's own name for it (a --columns map)
    single = {"where": f"`{arm_column}` == {ordered_arms(canonical, None)[1]!r}"} if several_arms else {}
    plan = [("chinchilla", dict(form="chinchilla", approach=3, **single)),
            ("approach 2 (IsoFLOP)", dict(approach=2, **single))]
    if several_arms:
        plan.append(("augmentation", dict(form="augmentation", approach=3)))
    else:
        notes.append(("augmentation", "the data has a single arm"))
    for name, options in plan:
        try:
            laws[name] = fit(training_source, target=target, bootstrap=bootstrap, columns=columns, **options)
        except ValueError as e:
            if "where" not in options or "too few" not in str(e):
                notes.append((name, str(e)))
                continue
            # Too few reference points: every arm's rows, saying so beside the law.
            caveats.append((name, f"fitted on every arm's rows, whose raw-text loss also measures their formats: "
                                  f"the reference arm's alone are too few ({e})"))
            pooled = {k: v for k, v in options.items() if k != "where"}
            try:
                laws[name] = fit(training_source, target=target, bootstrap=bootstrap, columns=columns, **pooled)
            except ValueError as again:
                notes.append((name, str(again)))
    loss_law = laws.get("augmentation") or laws.get("chinchilla")
    if inference is None:
        notes.append(("joint_inference", "no inference table (inference.parquet) beside the training table"))
    elif loss_law is None:
        notes.append(("joint_inference", "no loss law to build it on"))
    else:
        # pass@k rows measure a different thing than greedy/majority answers: fit on the latter.
        rows = inference[inference["aggregator"] != "pass@k"] if "aggregator" in inference else inference
        # With several pretraining arms, each gets its own test-time slope (the question is
        # whether thinking-trained models turn thinking tokens into accuracy when others do not)
        # and its own loss-to-accuracy midpoint (each arm's loss is on raw text, a format the
        # thinking arms' training changes).
        per_arm = bool(get_form(loss_law.form).arms(loss_law.settings)) and "arm" in rows and rows["arm"].nunique() > 1
        try:
            laws["joint_inference"] = fit(rows, form="joint_inference", target="accuracy", bootstrap=bootstrap,
                                          loss_law=loss_law,
                                          **({"per_arm_thinking": True, "per_arm_midpoint": True} if per_arm else {}))
        except ValueError as e:
            notes.append(("joint_inference", str(e)))
    return laws, notes, caveats
