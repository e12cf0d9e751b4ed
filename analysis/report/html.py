"""The report's HTML: escaping, tables, embedded figures, one function per section's markup, the page."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html

from analysis.answers import fmt
from analysis.diagnostics import from_dict
from analysis.determination import NOT_DETERMINED
from analysis.report.findings import (BudgetAnswers, below_floor_warnings, e_verdict, extrapolation_text,
                                      floor_text, heldout_text)
from analysis.report.sources import Source


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


@dataclasses.dataclass
class Section:
    title: str
    body: str


def esc(value) -> str:
    return html.escape(str(value))


def html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def skipped_html(name: str, reason: str) -> str:
    return f'<p class="skipped">{esc(name)}: not drawn: {esc(reason)}</p>'


def skipped_list_html(skipped: list[tuple[str, str]]) -> str:
    """What was not drawn and why, as one folded list (not a line each down the page)."""
    if not skipped:
        return ""
    items = "".join(f"<li>{esc(name)}: {esc(reason)}</li>" for name, reason in skipped)
    return f'<details class="note"><summary>Not drawn ({len(skipped)})</summary><ul>{items}</ul></details>'


def ground_truth_html(laws, floor) -> str:
    """The fitted E of every law that has one beside the true floor ('' when no law has an E:
    no section then)."""
    rows = []
    for name, law in laws.items():
        e = law.parameters.get("E")
        if e is None:
            continue
        verdict = "held at the floor (not fitted)" if e.status == "fixed" else e_verdict(e, floor)
        if e.status in ("at_bound", "not_identified"):
            verdict += f" ({e.status}: {e.reason})"
        rows.append([name, fmt(e.estimate), f"[{fmt(e.ci[0])}, {fmt(e.ci[1])}]" if e.ci else "", verdict])
    if not rows:
        return ""
    bound = (" It is a lower bound: some documents are longer than seq_len and the trainer cuts them."
             if floor.get("is_lower_bound") else "")
    return (f"<p>True irreducible loss: <b>{esc(floor_text(floor))}</b> ({esc(floor.get('source', ''))}; "
            f"{esc(floor.get('method', ''))}).{esc(bound)}</p>"
            + html_table(["law", "fitted E", "95% interval", "against the truth"], rows))


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
    if "seed" in training:  # the replicate axis the measured findings resample
        rows.append(["training seeds (replicates)", ", ".join(map(str, sorted(training["seed"].unique())))])
    if inference is not None:
        rows.append(["inference-table rows", len(inference)])
        for column in ("task", "thinking_budget", "samples"):
            if column in inference:
                rows.append([f"inference {column} values", ", ".join(map(str, sorted(inference[column].unique())))])
    return html_table(["", "value"], rows)


def law_html(name: str, law) -> str:
    rows = [[p, fmt(e.estimate), fmt(e.se) if e.se is not None else "",
             f"[{fmt(e.ci[0])}, {fmt(e.ci[1])}]" if e.ci is not None else "",
             (e.status or "") + (f": {e.reason}" if e.status not in (None, "identified") else "")]
            for p, e in law.parameters.items()]
    facts = [f"form <code>{esc(law.form)}</code>, approach {esc(law.approach)}, target <code>{esc(law.target)}</code>",
             f"{law.n_points} points, objective {fmt(law.objective)} (Huber delta {fmt(law.huber_delta)}), "
             f"{law.n_starts} starts, " + ("converged" if law.converged else "<b>did not converge</b>"),
             f"bootstrap draws: {law.n_bootstrap}; points of the 95% likelihood region: {law.n_region}"]
    heldout = heldout_text(law.heldout)
    facts.append(f"held-out error: {esc(heldout)}")
    return (f"<h3>{esc(name)}</h3><p class='note'>" + "<br>".join(facts) + "</p>"
            + html_table(["parameter", "estimate", "standard error", "95% interval", "status"], rows)
            + diagnostics_html(law.diagnostics.get("diagnostics")))


def diagnostics_html(data) -> str:
    """Residual diagnostics of a fit (analysis.diagnostics): a row per covariate and the warnings."""
    if not data:
        return ""
    d = from_dict(data)
    rows = [[c.covariate, f"{c.spearman_rho:+.3f}", fmt(c.spearman_p), fmt(c.trend_f_p),
             "structure" if c.structured else ""] for c in d.covariates]
    note = (f"residuals ({esc(d.scale)}, {d.n} points): rms {fmt(d.rms)}, mean {fmt(d.mean)}; "
            f"{esc(d.normality_test)} normality p = {fmt(d.normality_p)}")
    warnings = "".join(f"<p class='note'><b>warning:</b> {esc(w)}</p>" for w in d.warnings)
    return (f"<p class='note'>{note}</p>"
            + html_table(["covariate", "Spearman rho", "p", "trend/curvature F-test p", ""], rows) + warnings)


def quantity_cells(answer, names) -> list[str]:
    """Estimate [interval] of each quantity; '' for one the law does not predict (an approach-2
    law gives no loss)."""
    cells = []
    for k in names:
        q = answer.quantities.get(k)
        cells.append("" if q is None else f"{fmt(q.estimate)} [{fmt(q.ci[0])}, {fmt(q.ci[1])}]" if q.ci
                     else fmt(q.estimate))
    return cells


def answer_html(title: str, answer, floor=None) -> str:
    rows = [[k, fmt(q.estimate), f"[{fmt(q.ci[0])}, {fmt(q.ci[1])}]" if q.ci else "", q.unit] if answer.status.determined
            else [k, NOT_DETERMINED, "", q.unit] for k, q in answer.quantities.items()]
    notes = list(answer.shown_notes) + [f"warning: {w}" for w in list(answer.warnings) + below_floor_warnings(answer, floor)]
    if not answer.status.determined:
        notes.append(answer.status.text())
    return (f"<h3>{esc(title)}</h3>" + html_table(["quantity", "estimate", "95% interval", "unit"], rows)
            + "".join(f"<p class='note'>{esc(n)}</p>" for n in notes))


def recommendations_html(answers: BudgetAnswers, floor=None) -> str:
    if answers.reason:
        return skipped_html("Recommendations", answers.reason)
    rows = []
    for c, answer in zip(answers.budgets, answers.compute_optimal):
        below = below_floor_warnings(answer, floor)
        if not answer.status.determined:
            rows.append([fmt(c), NOT_DETERMINED, "", "", answer.status.text()])
            continue
        rows.append([fmt(c)] + quantity_cells(answer, ("N", "D", "predicted_loss"))
                    + ["; ".join([extrapolation_text(answer.warnings)] + [f"warning: {w}" for w in below])])
    parts = [f"<h3>Compute-optimal allocation</h3><p class='note'>From {esc(answers.law)}.</p>",
             html_table(["training FLOPs", "N (parameters)", "D (tokens)", "predicted loss", "range check"], rows)]
    for item in answers.questions:
        parts.append(answer_html(item.title, item.answer, floor) if item.answer is not None
                     else skipped_html(item.title, item.reason))
    return "".join(parts)


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
