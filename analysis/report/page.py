"""`scaling report`'s page: one self-contained HTML page from result tables.

Sweep summary, every law the data supports (fitted with `analysis.fitting`, with intervals and
held-out error), every figure the data supports (a missing one says why), recommendations for a
few budgets, and the provenance of the data (files, SHA-256, rows). Images are embedded as data
URIs, so the page can be mailed or archived as one file. The modules: sources (table discovery),
laws (which laws to fit), findings (sentences and answers), figures, html (markup); this one
puts them together (`analysis.report.build_report` names it).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from analysis import plots, tables
from analysis.atomic import write_bytes_atomic
from analysis.report.figures import draw_figures
from analysis.report.findings import findings, floor_value, recommendations
from analysis.report.html import (Section, esc, figure_html, ground_truth_html, law_html, page_html,
                                  provenance_html, recommendations_html, skipped_html, skipped_list_html, summary_html)
from analysis.fitting import BOOTSTRAP
from analysis.report.laws import fit_laws, report_name
from analysis.report import measured
from analysis.report.sources import Source, SweepSupport, file_stem, find_tables, sha256

__all__ = ["build_report", "render"]


def build_report(path, columns: dict[str, str] | None = None, bootstrap: int = BOOTSTRAP,
                 budgets: list[float] | None = None, inference_tokens: float = 1e12,
                 target: str = "eval_loss", laws_dir: Path | None = None, figures_dir: Path | None = None,
                 floor="auto", sweep: SweepSupport | None = None, findings_path: Path | None = None,
                 measure: Callable[[dict], dict] | None = None, laws: list | None = None,
                 where: str | None = None, frontier: str = "chinchilla") -> str:
    """The report's HTML for the tables under `path`. With laws_dir, every fitted law is also
    written there as a law file (<name>.json, for `scaling recommend`); with figures_dir, every
    figure as PNG and SVG. `floor`: the true irreducible loss to set beside the fitted E ("auto":
    what `sweep` knows of the runs' corpus, see SweepSupport.true_floor; None: none; a number; or
    the dict `scaling describe --corpus=...` prints). `sweep` lets `path` be a sweep folder. With
    findings_path, the measured findings are written there (analysis.report.measured, the
    findings.json contract) and the page shows them read back from that file; `measure(laws)`,
    called with the fitted laws, returns further findings measured with them (the demo's
    adaptive-thinking evaluation), added to the file before the page is written. `laws`: Law
    objects (law files loaded) used in place of fitting the law of their name
    (report.laws.report_name); `where`: a pandas query keeping the training rows it holds for
    (as `scaling fit --where`); `frontier`: the law ('chinchilla', or 'approach 2 (IsoFLOP)')
    that draws the compute-optimal frontier and answers the compute-optimal split."""
    path, columns = Path(path), dict(columns or {})
    with tempfile.TemporaryDirectory() as scratch:
        found = find_tables(path, Path(scratch), sweep)
        frames = {role: tables.read_table(p) for role, p in found.items()}
        collected = Path(scratch) in found["training"].parents
        sources = [Source(path if collected else p, role + (" (collected from the sweep)" if collected else ""),
                          sha256(p), len(frames[role]), frames[role].shape[1]) for role, p in found.items()]
        # Errors name the file the user gave; a collected sweep's tables are only in memory.
        if collected:
            for frame in frames.values():
                frame.attrs["source"] = f"{path} (collected)"
        training_source = frames["training"] if collected else found["training"]
        if where:
            training_source = frames["training"] = tables.select_rows(training_source, where)
        inference = frames.get("inference")
        if inference is not None and inference.empty:
            inference = None
        # Bootstrap draws far from the data overflow in exp/power; their intervals show it.
        # The true floor (a Monte Carlo pass over the generator, pure Python) is computed in a
        # process beside the fits, on a core the fits (mostly single-threaded compilation and
        # Python) leave idle; in a thread it held the GIL the fits' Python needed. A Ctrl-C is
        # this process's to handle (scaling.cli ends the worker): the worker ignores it.
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)) \
                as beside:
            if isinstance(floor, str) and floor == "auto":
                floor = (beside.submit(sweep.true_floor, path, frames["training"])
                         if sweep is not None and target == "eval_loss" else None)
            elif isinstance(floor, (int, float)):
                floor = {"entropy_nats_per_token": float(floor), "stderr": None, "source": "given"}
            with np.errstate(all="ignore"):
                return render(path.name, training_source, frames["training"], inference, sources, columns,
                              bootstrap, budgets, inference_tokens, target, sweep.run_states(path) if sweep else {},
                              laws_dir, figures_dir, floor, findings_path, measure,
                              {report_name(law): law for law in laws or []}, frontier)


def render(name, training_source, training, inference, sources, columns, bootstrap, budgets, inference_tokens,
           target, states, laws_dir=None, figures_dir=None, floor=None, findings_path=None, measure=None,
           given=None, frontier="chinchilla") -> str:
    canonical, _ = tables.canonical_table(training_source, ("N", "D"), target=target, columns=columns,
                                          optional=("C", "arm", "D_raw"))
    if "C" not in canonical:
        canonical["C"] = 6 * canonical["N"] * canonical["D"]
    sections = [Section("Data", summary_html(training, canonical, inference, states))]
    if isinstance(floor, concurrent.futures.Future):  # computed beside the table reading (build_report)
        floor = floor.result()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as beside:
        # the findings' own augmentation fits need only the tables: they run beside the report's
        started = (measured.start_multiplier_fits(training, inference, bootstrap, beside)
                   if findings_path is not None else {})
        laws, fit_notes, fit_caveats = fit_laws(training_source, canonical, inference, columns, bootstrap, target,
                                                floor=floor_value(floor) if target == "eval_loss" else None,
                                                given=given)
        if laws_dir is not None:
            for law_name, law in laws.items():
                law.save(Path(laws_dir) / f"{file_stem(law_name)}.json")
        if findings_path is not None:  # measured first: the claims and TPT's matched-accuracy multipliers lead
            found = measured.build(laws, training, inference, floor, bootstrap, fit_notes=fit_notes, started=started)
            measured.write(findings_path, measured.with_claims({**found, **(measure(laws) if measure is not None else {})}))
            sections.append(Section("Measured findings", measured.html(measured.read(findings_path))))
    sections.append(Section("Findings", "<ul>" + "".join(f"<li>{esc(line)}</li>"
                                                         for line in findings(laws, inference, floor, fit_notes))
                            + "</ul><p class='note'>Computed from this data and its fitted laws; nothing here is "
                              "written in advance.</p>"))
    sections.append(Section("Fitted laws", "".join(law_html(n, law) for n, law in laws.items())
                            + "".join(f'<p class="note">law {esc(n)}: {esc(c)}</p>' for n, c in fit_caveats)
                            + "".join(skipped_html(f"law {n}", reason) for n, reason in fit_notes)))
    if floor and ground_truth_html(laws, floor):
        sections.append(Section("Ground truth", ground_truth_html(laws, floor)))
    parts, not_drawn = [], []
    for drawn in draw_figures(canonical, training, inference, laws, frontier):
        if drawn.figure is None:
            not_drawn.append((drawn.name, drawn.reason))
            continue
        try:
            png = plots.figure_bytes(drawn.figure, "png")  # drawn once for the page and the file
        except ValueError as e:  # built, but matplotlib cannot render it (a log axis with nothing above 0)
            parts.append(skipped_html(drawn.name, f"cannot be drawn: {e}"))
            continue
        if figures_dir is not None:
            stem = Path(figures_dir) / file_stem(drawn.name)
            write_bytes_atomic(stem.with_suffix(".png"), png)
            plots.save_figure(drawn.figure, stem, formats=[f for f in plots.FORMATS if f != "png"])
        parts.append(figure_html(png, drawn.caption))
    sections.append(Section("Figures", "".join(parts) + skipped_list_html(not_drawn)))
    sections.append(Section("Recommendations", recommendations_html(
        recommendations(laws, canonical, training, budgets, inference_tokens, frontier), floor)))
    sections.append(Section("Provenance", provenance_html(sources, columns)))
    return page_html(f"Scaling report: {name}", sections)
