"""Law files: settings apart from diagnostics, and files of the older layout still load."""

import json
from pathlib import Path

import pytest

import analysis
from analysis.forms.data_constrained import DataConstrainedOptions
from analysis.law import LawError

OLD = Path(__file__).parent / "data" / "laws_v1"   # written by the schema_version 1 code, with its predictions
EXPECTED = json.loads((OLD / "expected_predictions.json").read_text())


def test_version_1_law_files_load_and_predict_as_they_did():
    assert analysis.load_law(OLD / "chinchilla.json").predict(N=1e9, D=2e10) == pytest.approx(
        EXPECTED["chinchilla"], rel=1e-12)
    assert analysis.load_law(OLD / "data_constrained.json").predict(N=1e9, D=2e10, U=5e9) == pytest.approx(
        EXPECTED["data_constrained"], rel=1e-12)
    augmentation = analysis.load_law(OLD / "augmentation.json")
    assert augmentation.predict(N=1e8, D=1e9, arm="thinking") == pytest.approx(EXPECTED["augmentation"], rel=1e-12)
    optimal = analysis.load_law(OLD / "compute_optimal.json")
    assert optimal.predict(C=1e21) == pytest.approx(EXPECTED["compute_optimal_N"], rel=1e-12)
    assert optimal.predict(C=1e21, quantity="D") == pytest.approx(EXPECTED["compute_optimal_D"], rel=1e-12)
    # the old `options` object is split: the form's settings typed, the rest diagnostics, `fixed` dropped
    assert augmentation.settings.arms == ("vanilla", "thinking") and augmentation.settings.reference_arm == "vanilla"
    assert "iterations" in augmentation.diagnostics and "arms" not in augmentation.diagnostics
    assert optimal.settings.budget_decimals == 1 and optimal.diagnostics["n_optima"] > 0


def test_a_saved_law_stores_the_base_law_once_and_reloads_equal(tmp_path):
    old = json.loads((OLD / "data_constrained.json").read_text())
    assert old["options"]["base"] == old["options"]["fixed"]      # version 1 stored the base law twice
    law = analysis.load_law(OLD / "data_constrained.json")
    assert isinstance(law.settings, DataConstrainedOptions) and law.settings.base == old["options"]["base"]
    data = json.loads(law.save(tmp_path / "law.json").read_text())
    assert data["schema_version"] == 2 and "options" not in data
    assert data["settings"]["base"] == old["options"]["base"] and "fixed" not in data["diagnostics"]
    again = analysis.load_law(tmp_path / "law.json")
    assert again.settings == law.settings and again.diagnostics == law.diagnostics
    assert again.predict(N=1e9, D=2e10, U=5e9) == pytest.approx(EXPECTED["data_constrained"], rel=1e-12)


def test_unreadable_versions_and_unknown_settings_are_refused_naming_them(tmp_path):
    data = json.loads((OLD / "chinchilla.json").read_text())
    for version in (0, 3, None):
        (tmp_path / "law.json").write_text(json.dumps({**data, "schema_version": version}))
        with pytest.raises(LawError, match=rf"law.json: schema_version {version!r} is not one this code reads \(1, 2\)"):
            analysis.load_law(tmp_path / "law.json")
    (tmp_path / "law.json").write_text(json.dumps({**data, "schema_version": 2, "settings": {"gqa": True}}))
    with pytest.raises(LawError, match=r"settings of form 'chinchilla': form 'chinchilla' has no option\(s\) \['gqa'\]"):
        analysis.load_law(tmp_path / "law.json")


def test_a_law_holds_its_form_and_a_law_setting_holds_a_law(tmp_path):
    from helpers import make_law
    loss_law = make_law(n_draws=5)
    assert loss_law.form is analysis.get_form("chinchilla") and loss_law.to_dict()["form"] == "chinchilla"
    joint_params = {"a": 0.5, "b": 0.1, "kappa": 2.0, "L0": 2.5, "gamma_T": 0.3, "gamma_k": 0.2}
    joint = make_law(joint_params, form="joint_inference", target="accuracy", n_draws=5,
                     settings={"loss_law": loss_law.to_dict()})
    assert isinstance(joint.settings.loss_law, analysis.Law)      # the JSON is read into a Law, once
    again = analysis.load_law(joint.save(tmp_path / "joint.json"))
    assert again.settings.loss_law.to_dict() == loss_law.to_dict()
    assert again.predict(N=1e9, D=2e10, T=0, k=1) == pytest.approx(joint.predict(N=1e9, D=2e10, T=0, k=1), rel=1e-12)
    data = json.loads((tmp_path / "joint.json").read_text())
    del data["settings"]["loss_law"]["parameters"]["E"]
    (tmp_path / "broken.json").write_text(json.dumps(data))
    with pytest.raises(LawError, match=r"broken.json: settings of form 'joint_inference': setting loss_law: "
                                       r"parameters \['E'\] missing"):
        analysis.load_law(tmp_path / "broken.json")
