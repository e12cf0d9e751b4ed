"""`scaling report`: one self-contained HTML page from result tables.

Sweep summary, every law the data supports (fitted with `analysis.fit`, with intervals and
held-out error), every figure the data supports (a missing one says why), recommendations for a
few budgets, and the provenance of the data (files, SHA-256, rows). Images are embedded as data
URIs, so the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
import hashlib
import html
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots, recommend, tables
from analysis.forms import get_form

TABLE_NAMES = ("training", "inference")
TABLE_SUFFIXES = (".parquet", ".csv")


@dataclasses.dataclass
class Section:
    title: str
    body: str


@dataclasses.dataclass
class Source:
    path: Path
    role: str
    sha256: str
    rows: int
    columns: int


def find_tables(path: Path, scratch: Path | None = None) -> dict[str, Path]:
    """training/inference tables in a results dir (or its results/ folder), or one table file.

    A sweep folder (run folders, no tables yet) is collected first into `scratch` with
    `scaling collect`'s own code, so the report reads exactly what `collect` would write.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix not in TABLE_SUFFIXES:
            raise ValueError(f"{path}: a table must be .parquet or .csv")
        return {"training": path}
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or directory")
    for folder in (path, path / "results"):
        found = {name: folder / f"{name}{suffix}" for name in TABLE_NAMES for suffix in TABLE_SUFFIXES
                 if (folder / f"{name}{suffix}").is_file()}
        if "training" in found:
            return found
    if scratch is not None and any(path.glob("*/run.json")):
        from scaling.sweep import collect

        collect.collect(path, scratch)
        return {name: scratch / f"{name}.parquet" for name in TABLE_NAMES}
    raise ValueError(f"{path}: no training.parquet (or training.csv) here or in {path / 'results'}; "
                     f"run `scaling collect` first, or give a table file")


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# HTML pieces
# ---------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; } .skipped { color: #a33; } code { font-size: .9em; }
.note { color: #555; font-size: .9em; }
"""


def esc(value) -> str:
    return html.escape(str(value))


def html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(fig, caption: str) -> str:
    data = base64.b64encode(plots.figure_bytes(fig, "png")).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def skipped_html(name: str, reason: str) -> str:
    return f'<p class="skipped">{esc(name)}: not drawn: {esc(reason)}</p>'


def fmt(value) -> str:
    return recommend._fmt(value)


# ---------------------------------------------------------------------------------------------
# Building the report
# ---------------------------------------------------------------------------------------------

def build_report(path, columns: dict[str, str] | None = None, bootstrap: int = 200,
                 budgets: list[float] | None = None, inference_tokens: float = 1e12,
                 target: str = "eval_loss", laws_dir: Path | None = None, figures_dir: Path | None = None,
                 floor="auto", findings_path: Path | None = None) -> str:
    """The report's HTML for the tables under `path`. With laws_dir, every fitted law is also
    written there as a law file (<name>.json, for `scaling recommend`); with figures_dir, every
    figure as PNG and SVG. `floor`: the true irreducible loss to set beside the fitted E ("auto":
    the generator's entropy when the runs evaluated on the synthetic corpus, see true_floor; None:
    none; a number; or the dict `scaling describe --corpus=...` prints). With findings_path, the
    measured findings are written there (analysis.findings) and the report shows them from it."""
    path, columns = Path(path), dict(columns or {})
    with tempfile.TemporaryDirectory() as scratch:
        found = find_tables(path, Path(scratch))
        frames = {role: read_table(p) for role, p in found.items()}
        collected = Path(scratch) in found["training"].parents
        sources = [Source(path if collected else p, role + (" (collected from the sweep)" if collected else ""),
                          sha256(p), len(frames[role]), frames[role].shape[1]) for role, p in found.items()]
        # Errors name the file the user gave; a collected sweep's tables are only in memory.
        training_source = frames["training"] if collected else found["training"]
        inference = frames.get("inference")
        if inference is not None and inference.empty:
            inference = None
        # Bootstrap draws far from the data overflow in exp/power; their intervals show it.
        if isinstance(floor, str) and floor == "auto":
            floor = true_floor(path, frames["training"]) if target == "eval_loss" else None
        elif isinstance(floor, (int, float)):
            floor = {"entropy_nats_per_token": float(floor), "stderr": None, "source": "given"}
        with np.errstate(all="ignore"):
            return render(path.name, training_source, frames["training"], inference, sources, columns, bootstrap,
                          budgets, inference_tokens, target, run_states(path), laws_dir, figures_dir, floor,
                          findings_path)


_EVAL_CORPUS = re.compile(r"eval_corpus\s*=\s*['\"]([^'\"]*)['\"]")
FLOOR_DOCUMENTS = 2000


def run_configs(path: Path) -> list[Path]:
    """The run folders' config.gin files of a sweep folder, or of the sweep a results folder is in."""
    if not path.is_dir():
        return []
    return sorted(path.glob("*/config.gin")) or sorted(path.parent.glob("*/config.gin"))


def true_floor(path: Path, training: pd.DataFrame) -> dict | None:
    """The generator's entropy per token (scaling.data.entropy) when every run under `path`
    evaluated on the synthetic corpus (train's eval_corpus, "synthetic" unless bound otherwise),
    tokens counted at the smallest seq_len of the table; None when that is not known."""
    configs = run_configs(path)
    if not configs:
        return None
    corpora = {m.group(1) for c in configs for m in _EVAL_CORPUS.finditer(c.read_text())} or {"synthetic"}
    if corpora != {"synthetic"} or any(not _EVAL_CORPUS.search(c.read_text()) and "eval_corpus" in c.read_text()
                                       for c in configs):
        return None
    seq_len = int(training["seq_len"].min()) if "seq_len" in training and len(training) else None
    models = [c.parent / "model.json" for c in configs]
    vocabularies = {json.loads(m.read_text()).get("vocabulary", "bytes") if m.is_file() else "bytes" for m in models}
    if len(vocabularies) != 1:
        return None  # tokens of several vocabularies: no one floor per token
    return {**_synthetic_floor(seq_len, vocabularies.pop()), "source": f"the synthetic generator's entropy ({len(configs)} runs "
                                                  "evaluated on the synthetic corpus)"}


@functools.lru_cache(maxsize=8)
def _synthetic_floor(seq_len: int | None, vocabulary_name: str = "bytes") -> dict:
    from scaling.data import entropy, vocabulary

    # the runs' ModelConfig.vocabulary (scaling.data.pipeline.use_vocabulary)
    encode = vocabulary.get_vocabulary(vocabulary_name).encode
    return {**entropy.entropy(encode, n_documents=FLOOR_DOCUMENTS, seq_len=seq_len), "vocabulary": vocabulary_name}


def floor_value(floor) -> float | None:
    return None if not floor else float(floor["entropy_nats_per_token"])


def floor_text(floor) -> str:
    se = floor.get("stderr")
    return f"{floor['entropy_nats_per_token']:.4f}" + (f" ± {se:.4f}" if se else "") + " nats/token"


def ground_truth_html(laws, floor) -> str:
    """The fitted E of every law that has one beside the true floor."""
    rows = []
    for name, law in laws.items():
        e = law.parameters.get("E")
        if e is None:
            continue
        verdict = e_verdict(e, floor)
        rows.append([name, fmt(e.estimate), f"[{fmt(e.ci[0])}, {fmt(e.ci[1])}]" if e.ci else "", verdict])
    bound = (" It is a lower bound: some documents are longer than seq_len and the trainer cuts them."
             if floor.get("is_lower_bound") else "")
    return (f"<p>True irreducible loss: <b>{esc(floor_text(floor))}</b> ({esc(floor.get('source', ''))}; "
            f"{esc(floor.get('method', ''))}).{esc(bound)}</p>"
            + html_table(["law", "fitted E", "95% interval", "against the truth"], rows))


def e_verdict(e, floor) -> str:
    truth = floor_value(floor)
    if e.ci is None or not np.all(np.isfinite(e.ci)):
        return f"E {e.estimate / truth:.3g}x the truth (no interval)"
    if e.ci[1] < truth:
        return f"the interval lies below the truth: E {e.estimate / truth:.3g}x the truth, an impossible loss"
    if e.ci[0] > truth:
        return f"the interval lies above the truth (E {e.estimate / truth:.3g}x): the runs do not reach the floor's regime"
    return "the interval contains the truth"


def below_floor_warnings(answer, floor) -> list[str]:
    """A warning for each predicted loss of an answer that falls below the true floor."""
    truth = floor_value(floor)
    if truth is None:
        return []
    return [f"{name} = {fmt(q.estimate)} is below the corpus's true irreducible loss {floor_text(floor)}: "
            "no model can reach it" for name, q in answer.quantities.items()
            if "loss" in name and isinstance(q.estimate, (int, float, np.number)) and q.estimate < truth]


def file_stem(name: str) -> str:
    """A law's or figure's file name without suffix: 'approach 2 (IsoFLOP)' -> 'approach_2_isoflop'."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def render(name, training_source, training, inference, sources, columns, bootstrap, budgets, inference_tokens,
           target, states, laws_dir=None, figures_dir=None, floor=None, findings_path=None) -> str:
    canonical, _ = tables.canonical_table(training_source, ("N", "D"), target=target, columns=columns,
                                          optional=("C", "arm", "D_raw"))
    if "C" not in canonical:
        canonical["C"] = 6 * canonical["N"] * canonical["D"]
    sections = [Section("Data", summary_html(training, canonical, inference, states))]
    laws, fit_notes = fit_laws(training_source, canonical, inference, columns, bootstrap, target)
    if laws_dir is not None:
        for law_name, law in laws.items():
            law.save(Path(laws_dir) / f"{file_stem(law_name)}.json")
    sections.append(Section("Findings", "<ul>" + "".join(f"<li>{esc(line)}</li>"
                                                         for line in findings(laws, inference, floor))
                            + "</ul><p class='note'>Computed from this data and its fitted laws; nothing here is "
                              "written in advance.</p>"))
    if findings_path is not None:
        from analysis import findings as measured
        measured.write(findings_path, measured.build(laws, training, inference, floor, bootstrap))
        sections.append(Section("Measured findings", measured.html(measured.read(findings_path))))
    sections.append(Section("Fitted laws", "".join(law_html(n, law) for n, law in laws.items()) + "".join(fit_notes)))
    if floor:
        sections.append(Section("Ground truth", ground_truth_html(laws, floor)))
    sections.append(Section("Figures", figures_html(canonical, training, inference, laws, figures_dir)))
    sections.append(Section("Recommendations", recommendations_html(laws, canonical, training, budgets,
                                                                    inference_tokens, floor)))
    sections.append(Section("Provenance", provenance_html(sources, columns)))
    return page_html(f"Scaling report: {name}", sections)


def fit_laws(training_source, canonical, inference, columns, bootstrap, target):
    """Every law the data supports, fitted with analysis.fit; the others with the reason."""
    import analysis

    laws, notes = {}, []
    plan = [("chinchilla", dict(form="chinchilla", approach=3)), ("approach 2 (IsoFLOP)", dict(approach=2))]
    if "arm" in canonical and canonical["arm"].nunique() > 1:
        plan.append(("augmentation", dict(form="augmentation", approach=3)))
    else:
        notes.append(skipped_html("law augmentation", "the data has a single arm"))
    for name, options in plan:
        try:
            laws[name] = analysis.fit(training_source, target=target, bootstrap=bootstrap, columns=columns, **options)
        except ValueError as e:
            notes.append(skipped_html(f"law {name}", str(e)))
    loss_law = laws.get("augmentation") or laws.get("chinchilla")
    if inference is None:
        notes.append(skipped_html("law joint_inference", "no inference table (inference.parquet) beside the training table"))
    elif loss_law is None:
        notes.append(skipped_html("law joint_inference", "no loss law to build it on"))
    else:
        # pass@k rows measure a different thing than greedy/majority answers: fit on the latter.
        rows = inference[inference["aggregator"] != "pass@k"] if "aggregator" in inference else inference
        # With several pretraining arms, each gets its own test-time slope: the question is
        # whether thinking-trained models turn thinking tokens into accuracy when others do not.
        per_arm = loss_law.form == "augmentation" and "arm" in rows and rows["arm"].nunique() > 1
        try:
            laws["joint_inference"] = analysis.fit(rows, form="joint_inference", target="accuracy",
                                                   bootstrap=bootstrap, loss_law=loss_law,
                                                   **({"per_arm_thinking": True} if per_arm else {}))
        except ValueError as e:
            notes.append(skipped_html("law joint_inference", str(e)))
    return laws, notes


def run_states(path: Path) -> dict[str, int]:
    """For a sweep folder: how many runs are finished, running, failed or not started."""
    states = {}
    for run in sorted(path.glob("*/run.json")) if path.is_dir() else []:
        status = run.parent / "status.json"
        state = json.loads(status.read_text()).get("state", "unknown") if status.is_file() else "not started"
        states[state] = states.get(state, 0) + 1
    return states


def summary_html(training, canonical, inference, states: dict[str, int]) -> str:
    rows = [[f"runs {state}", count] for state, count in states.items()] + [["points fitted on (final)", len(canonical)], ["training-table rows", len(training)],
            ["model sizes", canonical["N"].nunique()],
            ["N range (parameters)", f"{fmt(canonical['N'].min())} - {fmt(canonical['N'].max())}"],
            ["D range (tokens)", f"{fmt(canonical['D'].min())} - {fmt(canonical['D'].max())}"],
            ["C range (FLOPs)", f"{fmt(canonical['C'].min())} - {fmt(canonical['C'].max())}"],
            ["loss range", f"{canonical['loss'].min():.4f} - {canonical['loss'].max():.4f}"]]
    if "arm" in canonical:
        rows.append(["arms", ", ".join(sorted(map(str, canonical["arm"].unique())))])
    for column in ("sweep", "run_id"):
        if column in training:
            rows.append([f"distinct {column}", training[column].nunique()])
    if inference is not None:
        rows.append(["inference-table rows", len(inference)])
        for column in ("task", "thinking_budget", "samples"):
            if column in inference:
                rows.append([f"inference {column} values", ", ".join(map(str, sorted(inference[column].unique())))])
    return html_table(["", "value"], rows)


def law_html(name: str, law) -> str:
    rows = [[p, fmt(e.estimate), fmt(e.se) if e.se is not None else "",
             f"[{fmt(e.ci[0])}, {fmt(e.ci[1])}]" if e.ci is not None else ""] for p, e in law.parameters.items()]
    facts = [f"form <code>{esc(law.form)}</code>, approach {esc(law.approach)}, target <code>{esc(law.target)}</code>",
             f"{law.n_points} points, objective {fmt(law.objective)} (Huber delta {fmt(law.huber_delta)}), "
             f"{law.n_starts} starts, " + ("converged" if law.converged else "<b>did not converge</b>"),
             f"bootstrap draws: {len(next(iter(law.bootstrap_samples.values()))) if law.bootstrap_samples else 0}"]
    heldout = heldout_text(law.heldout)
    facts.append(f"held-out error: {esc(heldout)}")
    return (f"<h3>{esc(name)}</h3><p class='note'>" + "<br>".join(facts) + "</p>"
            + html_table(["parameter", "estimate", "standard error", "95% interval"], rows)
            + diagnostics_html(law.options.get("diagnostics")))


def diagnostics_html(data) -> str:
    """Residual diagnostics of a fit (analysis.diagnostics): a row per covariate and the warnings."""
    if not data:
        return ""
    from analysis.diagnostics import from_dict
    d = from_dict(data)
    rows = [[c.covariate, f"{c.spearman_rho:+.3f}", fmt(c.spearman_p), fmt(c.trend_f_p),
             "structure" if c.structured else ""] for c in d.covariates]
    note = (f"residuals ({esc(d.scale)}, {d.n} points): rms {fmt(d.rms)}, mean {fmt(d.mean)}; "
            f"{esc(d.normality_test)} normality p = {fmt(d.normality_p)}")
    warnings = "".join(f"<p class='note'><b>warning:</b> {esc(w)}</p>" for w in d.warnings)
    return (f"<p class='note'>{note}</p>"
            + html_table(["covariate", "Spearman rho", "p", "trend/curvature F-test p", ""], rows) + warnings)


def heldout_text(heldout) -> str:
    if not heldout:
        return "not computed"
    if heldout.get("skipped"):
        return f"skipped: {heldout['skipped']}"
    if heldout.get("mean_relative_error") is None:
        return ", ".join(f"{k} = {v}" for k, v in heldout.items() if k != "train_parameters")
    return (f"fitted on the {heldout['n_train']} lower-compute points, the {heldout['n_test']} highest-compute "
            f"points are predicted with mean relative error {heldout['mean_relative_error']:.2%} "
            f"(max {heldout['max_relative_error']:.2%})")


def findings(laws, inference, floor=None) -> list[str]:
    """What the data shows on the three questions the framework asks, in plain sentences:
    the worth of augmented data, what test-time thinking buys each arm, and the joint law's
    best split of a fixed compute budget; first, with a known floor, the fitted E against it."""
    out = []
    law = laws.get("chinchilla")
    if floor and law is not None and "E" in law.parameters:
        e = law.parameters["E"]
        out.append(f"Irreducible loss: the Chinchilla law's E = {fmt(e.estimate)}"
                   + (f" [{fmt(e.ci[0])}, {fmt(e.ci[1])}]" if e.ci else "")
                   + f" against the corpus's true {floor_text(floor)}: {e_verdict(e, floor)}.")
    aug = laws.get("augmentation")
    if aug is None:
        out.append("Data efficiency: no augmentation law was fitted (it needs two arms), so there is no multiplier.")
    for arm in recommend.augmentation_arms(aug) if aug is not None else []:
        reference = aug.options.get("reference_arm", "vanilla")
        parts = []
        for suffix, accounting in (("", f"a token of {reference} data (every trained token counted, thinking "
                                        "included)"), ("_raw", "(raw document tokens counted only)")):
            p = aug.parameters.get(f"m_{arm}{suffix}")
            if p is not None:
                parts.append(f"{p.estimate:.3g}x [{fmt(p.ci[0])}, {fmt(p.ci[1])}] {accounting}")
        m = aug.parameters[f"m_{arm}"]
        if m.ci is None or not np.isfinite(m.ci[0]):
            verdict = "no bootstrap interval was computed"
        elif m.ci[0] > 1:
            verdict = f"the first interval lies above 1: a token of {arm} data taught more than a token of {reference} data"
        elif m.ci[1] < 1:
            verdict = f"the first interval lies below 1: a token of {arm} data taught less than a token of {reference} data"
        else:
            verdict = "the first interval contains 1: this data cannot tell the two arms' data apart"
        out.append(f"Data efficiency: a token of {arm} data is worth " + "; and ".join(parts) + " "
                   f"(augmentation law, {aug.n_points} points, held-out error: {heldout_text(aug.heldout)}); {verdict}.")
    out.extend(test_time_findings(inference, laws.get("joint_inference")))
    joint = laws.get("joint_inference")
    if joint is not None:
        total, queries, tokens = joint_scenario(joint)
        try:
            answer = recommend.joint_allocation(joint, total, queries, tokens)
        except ValueError as e:
            out.append(f"Iso-compute: no allocation: {e}")
        else:
            q = answer.quantities
            arm = f"the {q['arm'].estimate} arm ({q['arm'].unit}), " if "arm" in q else ""
            accuracy = next(v for k, v in q.items() if k.startswith("predicted_"))
            out.append(f"Iso-compute: with {fmt(total)} FLOPs in all and {fmt(queries)} queries of {tokens} tokens, "
                       f"the joint law's best split is {arm}N = {fmt(q['N'].estimate)}, D = {fmt(q['D'].estimate)}, "
                       f"thinking budget T = {fmt(q['thinking_budget'].estimate)}, k = {fmt(q['samples'].estimate)} "
                       f"samples ({'; '.join(answer.notes)}), predicted accuracy {accuracy.estimate:.3f}"
                       + (f" [{accuracy.ci[0]:.3f}, {accuracy.ci[1]:.3f}]" if accuracy.ci else "") + ".")
    return out


def test_time_findings(inference, joint) -> list[str]:
    """Per arm: greedy accuracy at T = 0 and at the largest T, paired over the same checkpoint and
    task, with the standard error of the mean change; and the joint law's test-time slopes."""
    needed = {"arm", "thinking_budget", "aggregator", "accuracy", "run_id", "task"}
    if inference is None or not needed <= set(inference.columns):
        return ["Test-time thinking: no inference table with arm, thinking_budget, aggregator, accuracy columns."]
    greedy = inference[inference["aggregator"] == "greedy"]
    keys = [c for c in ("run_id", "branch", "step", "task") if c in greedy]
    t_max = greedy["thinking_budget"].max() if len(greedy) else 0
    if not t_max > 0:
        return ["Test-time thinking: the inference table has no greedy rows with a thinking budget above 0."]
    out = []
    for arm, rows in greedy.groupby("arm"):
        low = rows[rows["thinking_budget"] == 0].set_index(keys)["accuracy"]
        high = rows[rows["thinking_budget"] == t_max].set_index(keys)["accuracy"]
        paired = pd.concat([low.rename("low"), high.rename("high")], axis=1).dropna()
        if paired.empty:
            continue
        change = paired["high"] - paired["low"]
        se = float(change.std(ddof=1) / np.sqrt(len(change))) if len(change) > 1 else float("nan")
        out.append(f"Test-time thinking, {arm}-trained models (greedy, {len(paired)} checkpoint x task cells): "
                   f"accuracy {paired['low'].mean():.3f} at T = 0 and {paired['high'].mean():.3f} at T = {t_max:g}, "
                   f"a change of {change.mean():+.3f} (standard error {se:.3f}).")
    best = float(greedy["accuracy"].max())
    if best < 0.05:
        out.append(f"Test-time thinking: no model answers more than {best:.1%} of the problems at any budget; at "
                   "this scale the question of what test-time thinking buys is not answered.")
    if joint is not None:
        slopes = [(name, p) for name, p in joint.parameters.items() if name.startswith("gamma_T")]
        out.append("Joint law test-time slopes (logit gain per log(1 + T)): " + ", ".join(
            f"{name} = {p.estimate:.3g}" + (f" [{fmt(p.ci[0])}, {fmt(p.ci[1])}]" if p.ci else "") for name, p in slopes)
            + ".")
    return out


def figures_html(canonical, training, inference, laws, figures_dir: Path | None = None) -> str:
    parts = []
    base = laws.get("chinchilla")

    def attempt(name, caption, build):
        try:
            fig = build()
        except ValueError as e:
            parts.append(skipped_html(name, str(e)))
            return
        if figures_dir is not None:
            plots.save_figure(fig, Path(figures_dir) / file_stem(name))
        parts.append(figure_html(fig, caption))

    curves = plots.isoflop_curves(canonical)
    if len(curves) >= 2:
        attempt("IsoFLOP curves", "Loss against model size per compute budget; dashed: parabola in log N; "
                "solid: the Chinchilla law", lambda: plots.isoflop_figure(canonical, base))
    else:
        parts.append(skipped_html("IsoFLOP curves", "fewer than two compute budgets with three or more sizes"))
    frontier_law = base or laws.get("approach 2 (IsoFLOP)")
    if frontier_law is not None:
        attempt("Compute-optimal frontier", "N_opt and D_opt against compute with the 95% bootstrap band",
                lambda: plots.frontier_figure(frontier_law, canonical if len(curves) >= 2 else None))
    else:
        parts.append(skipped_html("Compute-optimal frontier", "no Chinchilla or approach-2 law was fitted"))
    if {"arm", "tokens", "tokens_raw", "params"} <= set(training.columns):
        aug = laws.get("augmentation")
        multipliers = None
        if aug is not None:
            arms = recommend.augmentation_arms(aug)
            multipliers = {column: {arm: (aug.parameters[name].estimate, aug.parameters[name].ci)
                                    for arm in arms if (name := f"m_{arm}{suffix}") in aug.parameters}
                           for column, suffix in (("tokens", ""), ("tokens_raw", "_raw"))}
        attempt("Data efficiency", "Loss and hard-span loss against tokens per arm and size, both accountings",
                lambda: plots.data_efficiency_figure(training, multipliers))
    else:
        parts.append(skipped_html("Data efficiency", "the table has no arm / tokens / tokens_raw / params columns"))
    joint = laws.get("joint_inference")
    if joint is not None:
        sizes = np.geomspace(*[float(x) for x in joint.ranges["N"]], 3)
        total, queries, tokens = joint_scenario(joint)
        attempt("Iso-compute curves", f"Predicted accuracy against the share of a fixed total compute spent at "
                f"inference ({fmt(queries)} queries of {tokens} tokens)",
                lambda: plots.iso_compute_figure(joint, total, queries, tokens, sizes))
    else:
        parts.append(skipped_html("Iso-compute curves", "no joint_inference law (it needs an inference table)"))
    if inference is not None and {"params", "arm", "thinking_budget", "samples", "accuracy"} <= set(inference.columns):
        attempt("Test-time scaling", "Accuracy against thinking tokens and against samples",
                lambda: plots.test_time_figure(inference))
    else:
        parts.append(skipped_html("Test-time scaling", "no inference table"))
    residual_laws = {n: law for n, law in laws.items() if n in ("chinchilla", "augmentation")}
    if residual_laws:
        attempt("Residuals", "log(observed / predicted) of each fit against N, D and C",
                lambda: plots.residuals_figure(canonical, residual_laws))
    else:
        parts.append(skipped_html("Residuals", "no loss law was fitted"))
    return "".join(parts)


def joint_scenario(joint, tokens_per_query: int = 256) -> tuple[float, float, int]:
    """An example where inference matters: the largest fitted run's training compute in total, and
    enough queries that the largest model at the largest thinking budget would spend half of it."""
    n_max, d_max = float(joint.ranges["N"][1]), float(joint.ranges["D"][1])
    t_max = float(joint.ranges.get("T", [0, 0])[1])
    total = 6 * n_max * d_max
    queries = float(f"{0.5 * total / (2 * n_max * (tokens_per_query + t_max)):.1g}")
    return total, queries, tokens_per_query


def quantity_cells(answer, names) -> list[str]:
    return [f"{fmt(answer[k].estimate)} [{fmt(answer[k].ci[0])}, {fmt(answer[k].ci[1])}]" if answer[k].ci
            else fmt(answer[k].estimate) for k in names]


def answer_html(title: str, answer, floor=None) -> str:
    rows = [[k, fmt(q.estimate), f"[{fmt(q.ci[0])}, {fmt(q.ci[1])}]" if q.ci else "", q.unit]
            for k, q in answer.quantities.items()]
    notes = list(answer.notes) + [f"warning: {w}" for w in list(answer.warnings) + below_floor_warnings(answer, floor)]
    return (f"<h3>{esc(title)}</h3>" + html_table(["quantity", "estimate", "95% interval", "unit"], rows)
            + "".join(f"<p class='note'>{esc(n)}</p>" for n in notes))


def recommendations_html(laws, canonical, training, budgets, inference_tokens, floor=None) -> str:
    law = laws.get("chinchilla")
    if law is None:
        return skipped_html("Recommendations", "no Chinchilla law was fitted")
    if budgets is None:
        decade = 10 ** np.round(np.log10(canonical["C"].max()))
        budgets = [decade / 10, decade, decade * 10]
    rows = []
    for c in budgets:
        answer = recommend.compute_optimal(law, c)
        below = below_floor_warnings(answer, floor)
        rows.append([fmt(c)] + quantity_cells(answer, ("N", "D", "predicted_loss"))
                    + ["; ".join([extrapolation_text(answer.warnings)] + [f"warning: {w}" for w in below])])
    parts = ["<h3>Compute-optimal allocation (Chinchilla law)</h3>",
             html_table(["training FLOPs", "N (parameters)", "D (tokens)", "predicted loss", "range check"], rows)]
    try:
        answer = recommend.inference_aware(law, inference_tokens, train_flops=budgets[0])
        parts.append(answer_html(f"Inference-aware sizing: {fmt(inference_tokens)} lifetime inference tokens", answer,
                                 floor))
    except ValueError as e:
        parts.append(skipped_html("Inference-aware sizing", str(e)))
    aug = laws.get("augmentation")
    if aug is not None:
        try:
            teacher, shares = teacher_costs(training)
            answer = recommend.augmentation_pays(aug, budgets[0], teacher, shares)
            parts.append(answer_html(f"Does thinking augmentation pay for itself at {fmt(budgets[0])} FLOPs?", answer,
                                     floor))
        except ValueError as e:
            parts.append(skipped_html("Augmentation question", str(e)))
    joint = laws.get("joint_inference")
    if joint is not None:
        total, queries, tokens = joint_scenario(joint)
        try:
            answer = recommend.joint_allocation(joint, total, queries, tokens)
            parts.append(answer_html(f"Joint allocation of {fmt(total)} FLOPs with {fmt(queries)} queries of "
                                     f"{tokens} tokens", answer))
        except ValueError as e:
            parts.append(skipped_html("Joint allocation", str(e)))
    return "".join(parts)


def teacher_costs(training: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Teacher FLOPs per thinking token and each arm's thinking share of trained tokens, from the table."""
    needed = {"teacher_flops", "tokens_thinking", "tokens", "arm"}
    if not needed <= set(training.columns):
        raise ValueError(f"the training table lacks {sorted(needed - set(training.columns))} to charge the teacher")
    final = training[training["is_final"].astype(bool)] if "is_final" in training else training
    thinking = final[final["tokens_thinking"] > 0]
    if thinking.empty or not (thinking["teacher_flops"] > 0).any():
        raise ValueError("no trained thinking tokens with teacher FLOPs recorded")
    teacher = float(thinking["teacher_flops"].sum() / thinking["tokens_thinking"].sum())
    shares = {str(arm): float(part["tokens_thinking"].sum() / part["tokens"].sum()) for arm, part in final.groupby("arm")}
    return teacher, shares


def extrapolation_text(warnings) -> str:
    names = [w.split(" = ")[0] for w in warnings]
    return f"extrapolates {', '.join(names)} (beyond 3x the fitted range)" if names else "inside the fitted range"


def provenance_html(sources: list[Source], columns: dict[str, str]) -> str:
    rows = [[s.role, str(s.path.resolve()), s.sha256, s.rows, s.columns] for s in sources]
    mapping = ", ".join(f"{k}={v}" for k, v in columns.items()) or "result-table defaults"
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (html_table(["table", "file", "SHA-256", "rows", "columns"], rows)
            + f"<p class='note'>column map: {esc(mapping)}; generated {generated}</p>")


def page_html(title: str, sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#s{i}">{esc(s.title)}</a></li>' for i, s in enumerate(sections))
    body = "".join(f'<h2 id="s{i}">{esc(s.title)}</h2>{s.body}' for i, s in enumerate(sections))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head>'
            f"<body><h1>{esc(title)}</h1><ul>{toc}</ul>{body}</body></html>")


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# `scaling report`
# ---------------------------------------------------------------------------------------------

def configure_report(parser) -> None:
    parser.add_argument("path", help="results dir (training.parquet, inference.parquet), sweep dir, or one table")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    parser.add_argument("--columns", help="column map for a foreign table, e.g. N='Model Size',C='Training FLOP'")
    parser.add_argument("--target", default="eval_loss", help="the loss column laws are fitted to (default eval_loss)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap refits per law (default 200)")
    parser.add_argument("--budgets", help="training FLOPs to recommend for, comma-separated (default: the "
                                          "decades around the largest budget in the data)")
    parser.add_argument("--inference_tokens", type=float, default=1e12,
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
        return float(value)
    except ValueError:
        pass
    path = Path(value)
    try:
        data = json.loads(path.read_text())
        float(data["entropy_nats_per_token"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"--floor {value!r}: give auto, none, a number or the JSON of `scaling describe "
                         f"--corpus=...` ({type(e).__name__}: {e})") from None
    return {**data, "source": str(path)}


def run_report(args) -> int:
    import sys

    try:
        budgets = [float(x) for x in args.budgets.split(",")] if args.budgets else None
        text = build_report(args.path, tables.parse_columns(args.columns), args.bootstrap, budgets,
                            args.inference_tokens, args.target, floor=parse_floor(args.floor))
    except ValueError as e:
        print(f"scaling report: {e}", file=sys.stderr)
        return 2
    write_atomic(Path(args.output), text)
    print(f"wrote {args.output} ({len(text) / 1024:.0f} KiB)")
    return 0
