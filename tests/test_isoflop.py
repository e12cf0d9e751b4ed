"""Approaches 1 and 2 on Porian et al.'s IsoFLOP points and on curves drawn from a known law."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.forms import get_form

REF = Path(__file__).parent / "data" / "refdata"
PORIAN_COLUMNS = {"N": "n_params", "D": "tokens", "C": "flops", "loss": "loss"}


def test_approach_2_on_porian_isoflops_gives_balanced_exponents_with_intervals(tmp_path):
    law = analysis.fit(REF / "porian2024_isoflop_rw_tuned.csv", approach=2, columns=PORIAN_COLUMNS, bootstrap=50)
    assert law.form.name == "compute_optimal" and law.approach == 2 and law.diagnostics["n_optima"] == 12
    a, b = law.parameters["a"], law.parameters["b"]
    # Porian et al. find N_opt ~ C^0.5 once warmup, decay and tuning are fixed
    assert 0.45 < a.estimate < 0.56 and a.ci[0] < a.estimate < a.ci[1]
    assert a.estimate + b.estimate == pytest.approx(1.0, abs=0.03)  # D = C / 6N on these points
    n_opt = law.predict(C=1e19)
    assert n_opt == pytest.approx(law.parameters["k_N"].estimate * 1e19 ** a.estimate)
    assert law.predict_draws(C=[1e18, 1e19]).shape == (50, 2)
    loaded = analysis.load_law(law.save(tmp_path / "law.json"))
    assert loaded.predict(C=1e19, quantity="D") == pytest.approx(law.predict(C=1e19, quantity="D"))


def test_approaches_1_and_2_recover_the_exponent_of_a_known_law():
    truth = {"E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.34}  # a = beta/(alpha+beta) = 0.5
    rows = []
    for c in np.geomspace(1e18, 1e22, 9):
        n = np.geomspace(0.1, 10, 11) * np.sqrt(c / 6)
        d = c / (6 * n)
        rows.append(pd.DataFrame({"params": n, "tokens": d, "flops": c,
                                  "eval_loss": get_form("chinchilla").predict(truth, N=n, D=d)}))
    frame = pd.concat(rows)
    two = analysis.fit(frame, approach=2, bootstrap=0)
    assert two.parameters["a"].estimate == pytest.approx(0.5, abs=0.01)
    one = analysis.fit(frame, approach=1, bootstrap=0)
    assert one.parameters["a"].estimate == pytest.approx(0.5, abs=0.05)


def test_too_few_isoflop_curves_is_an_error_naming_the_cause():
    frame = pd.read_csv(REF / "porian2024_isoflop_rw_tuned.csv")
    frame = frame[frame["flops"] <= 2.5e16]
    with pytest.raises(analysis.TableError, match="IsoFLOP curves with an interior minimum"):
        analysis.fit(frame, approach=2, columns=PORIAN_COLUMNS, bootstrap=0)
