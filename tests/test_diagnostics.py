"""Residual diagnostics (analysis.diagnostics): structure against covariates and normality, on
synthetic laws with known defects and on Epoch's Chinchilla points (tests/data/refdata)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.diagnostics import from_dict, residual_diagnostics
from analysis.report.html import diagnostics_html

REF = Path(__file__).parent / "data" / "refdata"
TRUTH = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def grid(noise, extra=lambda n, d: 0.0, seed=0):
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(2e8, 1e12, 10))
    n, d = n.ravel(), d.ravel()
    loss = TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"] + extra(n, d)
    return pd.DataFrame({"params": n, "tokens": d, "eval_loss": loss * np.exp(noise(rng, n.size))})


def test_a_correct_law_with_normal_noise_raises_no_warning():
    law = analysis.fit(grid(lambda rng, k: rng.normal(0, 0.003, k)), bootstrap=0, heldout_fraction=0)
    d = from_dict(law.diagnostics["diagnostics"])
    assert d.n == 80 and {c.covariate for c in d.covariates} == {"N", "D", "C"}
    assert d.warnings == () and d.normality_p > 0.01


def test_a_missing_curvature_in_n_is_flagged_in_n():
    bend = lambda n, d: 0.03 * np.log(n / 3e8) ** 2  # noqa: E731  (not a Chinchilla term)
    law = analysis.fit(grid(lambda rng, k: rng.normal(0, 0.002, k), bend), bootstrap=0, heldout_fraction=0)
    d = from_dict(law.diagnostics["diagnostics"])
    flagged = {c.covariate for c in d.covariates if c.structured}
    assert "N" in flagged
    assert any("structure in N" in w for w in d.warnings)


def test_heavy_tailed_noise_fails_the_normality_test():
    law = analysis.fit(grid(lambda rng, k: 0.003 * rng.standard_t(1.5, k)), bootstrap=0, heldout_fraction=0)
    d = from_dict(law.diagnostics["diagnostics"])
    assert d.normality_p < 0.01 and any("not normal" in w for w in d.warnings)


def test_direct_use_and_too_few_points():
    z = np.linspace(-1, 1, 40)
    out = residual_diagnostics(0.01 * z ** 2 - 0.0033, {"N": np.exp(z * 3 + 20)})
    assert out.covariates[0].structured and out.covariates[0].trend_f_p < 1e-6
    assert residual_diagnostics(np.zeros(5), {"N": np.arange(1, 6)}) is None


def test_epoch_chinchilla_fit_carries_diagnostics_into_law_file_and_report(tmp_path):
    points = pd.read_csv(REF / "chinchilla_epoch_svg.csv").sort_values("loss").iloc[:-5]
    law = analysis.fit(points, columns={"N": "Model Size", "C": "Training FLOP", "loss": "loss"}, bootstrap=0,
                       heldout_fraction=0)
    loaded = analysis.load_law(law.save(tmp_path / "law.json"))
    d = from_dict(loaded.diagnostics["diagnostics"])
    assert d.n == 240 and [c.covariate for c in d.covariates] == ["N", "D", "C"]
    assert d.normality_p < 1e-6          # the extracted points have outliers (Epoch drop 5 and use Huber)
    html = diagnostics_html(loaded.diagnostics["diagnostics"])
    assert "Shapiro-Wilk" in html and "trend/curvature" in html and html.count("<tr>") >= 4
