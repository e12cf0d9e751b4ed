"""`scaling demo --quick`: the main job's whole path, end to end, as a user runs it."""

import json

import pytest

import analysis


@pytest.mark.slow
def test_quick_demo_runs_the_whole_path_and_says_what_the_data_shows(run_cli, tmp_path):
    sweep_dir = tmp_path / "demo"
    proc = run_cli("demo", "--quick", f"--sweep_dir={sweep_dir}", timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    for step in ("== 1/4 sweep", "== 2/4 collect", "== 3/4 fit the laws", "== 4/4 what the data shows"):
        assert step in out
    assert "6 of 6 runs finished" in out
    assert "100.0%  runs done 6/6" in proc.stderr  # the progress bar's last line
    # The tables, the law files (loadable by `scaling recommend`), every figure, the report.
    results = sweep_dir / "results"
    assert (results / "training.parquet").is_file() and (results / "inference.parquet").is_file()
    for name in ("chinchilla", "augmentation", "joint_inference"):
        assert isinstance(analysis.load_law(results / "laws" / f"{name}.json").converged, bool)
    multipliers = {p for p in analysis.load_law(results / "laws" / "augmentation.json").parameters if p.startswith("m_")}
    assert multipliers == {"m_thinking", "m_thinking_raw"}
    joint = analysis.load_law(results / "laws" / "joint_inference.json")
    assert {"gamma_T_vanilla", "gamma_T_thinking"} <= set(joint.parameters)
    figures = {p.name for p in (results / "figures").iterdir()}
    for stem in ("data_efficiency", "iso_compute_curves", "test_time_scaling", "residuals"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures, figures
    report = (sweep_dir / "report.html").read_text()
    for heading in ("Findings", "Fitted laws", "Figures", "Recommendations", "Provenance"):
        assert heading in report
    # The findings are computed from the data: the multiplier with its interval, test-time
    # accuracy per arm, the joint law's split; the same sentences are printed.
    assert "Data efficiency: a token of thinking data is worth" in out
    for arm in ("thinking", "vanilla"):
        assert f"Test-time thinking, {arm}-trained models" in out
    assert "Iso-compute: with" in out and "Joint allocation" in out and "Example recommendation" in out
    assert f"report: {(sweep_dir / 'report.html').resolve()}" in out
    # The recommendation the demo prints is the one `scaling recommend` gives on its law file.
    law_file = results / "laws" / "chinchilla.json"
    budget = float(out.split("--train_flops=")[1].split(")")[0])
    again = run_cli("recommend", law_file, f"--train_flops={budget}", "--json")
    assert again.returncode == 0, again.stderr
    expected = analysis.load_law(law_file).recommend(train_flops=budget).to_dict()
    assert json.loads(again.stdout) == expected
    assert analysis.load_law(law_file).recommend(train_flops=budget).table() in out
