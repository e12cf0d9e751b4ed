"""`scaling demo --quick`: the main job's whole path, end to end, as a user runs it."""

import json

import numpy as np
import pandas as pd
import pytest

import analysis


@pytest.mark.slow
def test_quick_demo_runs_the_whole_path_and_says_what_the_data_shows(run_cli, tmp_path):
    sweep_dir = tmp_path / "demo"
    # The seed set from the command line to the claims. One seed keeps the CI test within its time;
    # the replicate bootstrap itself is tested on small tables (tests/test_claims.py).
    proc = run_cli("demo", "--quick", "--seeds=0", f"--sweep_dir={sweep_dir}", timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    for step in ("== 1/4 sweep", "== 2/4 collect", "== 3/4 fit the laws", "== 4/4 what the data shows"):
        assert step in out
    assert "6 of 6 runs finished" in out
    # the adaptive-thinking measurement says one line per run, not `scaling infer`'s tables
    assert out.count("adaptive thinking, ") == 2 and "s1 metrics" not in out
    assert "100.0%  runs done 6/6" in proc.stderr  # the progress bar's last line
    assert {p.name.split("_wsd")[0].rsplit("_", 1)[1] for p in sweep_dir.iterdir() if "_wsd" in p.name} == {"s0"}
    # The measured findings (claims, matched multipliers) lead; the laws' findings follow.
    assert out.index("Measured findings") < out.index("What the fitted laws say")
    # The tables, the law files (loadable by `scaling recommend`), every figure, the report.
    results = sweep_dir / "results"
    assert (results / "training.parquet").is_file() and (results / "inference.parquet").is_file()
    _check_laws_against_the_tables(results)
    # An augmentation law is written only within its form's bounds; a refused one is said so.
    augmented = (results / "laws" / "augmentation.json").is_file()
    if augmented:
        multipliers = {p for p in analysis.load_law(results / "laws" / "augmentation.json").parameters
                       if p.startswith("m_")}
        assert multipliers == {"m_thinking", "m_thinking_raw", "m_thinking_inline", "m_thinking_inline_raw"}
        assert "Data efficiency: a token of thinking data is worth" in out
    else:
        assert "outside the augmentation form's bounds" in out and "Data efficiency: no augmentation law" in out
    joint = analysis.load_law(results / "laws" / "joint_inference.json")
    # vanilla models never think: their T is the 0 thinking tokens they wrote, and no slope in T
    assert {"gamma_T_thinking", "gamma_T_thinking_inline"} <= set(joint.parameters)
    assert "gamma_T_vanilla" not in joint.parameters
    _check_findings_contract(results, joint, out)
    figures = {p.name for p in (results / "figures").iterdir()}
    for stem in ("data_efficiency", "iso_compute_curves", "test_time_scaling", "residuals"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures, figures
    report = (sweep_dir / "report.html").read_text()
    for heading in ("Findings", "Fitted laws", "Figures", "Recommendations", "Provenance"):
        assert heading in report
    # The findings are computed from the data: the multiplier with its interval, test-time
    # accuracy per arm, the joint law's split; the same sentences are printed.
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


def _check_laws_against_the_tables(results):
    """The law files hold what the demo's own tables give: the loss laws were fitted to every
    finished training point, over the table's model sizes and token counts, and predict those
    points' losses (the augmentation law, with a multiplier per arm, within a few percent: 2.4%
    measured; the pooled Chinchilla law 9.4%); the joint law's step 1 is the augmentation law file,
    or, where that law left its form's bounds and was not written, the Chinchilla law's, with the
    arms taken from the table."""
    training = pd.read_parquet(results / "training.parquet")
    finished = training[training["is_final"].astype(bool)]
    measured = finished["eval_loss"].to_numpy()
    laws = {name: analysis.load_law(results / "laws" / f"{name}.json")
            for name in ("chinchilla", "augmentation", "joint_inference")
            if (results / "laws" / f"{name}.json").is_file()}
    for name, bound in (("chinchilla", 0.25), ("augmentation", 0.10)):
        if name not in laws:
            continue
        law = laws[name]
        assert law.form.name == name and law.target == "eval_loss" and law.n_points == len(finished)
        assert law.ranges["N"] == [finished["params"].min(), finished["params"].max()]
        assert law.ranges["D"] == [finished["tokens"].min(), finished["tokens"].max()]
        covariates = {"N": finished["params"].to_numpy(), "D": finished["tokens"].to_numpy()}
        if name == "augmentation":
            covariates["arm"] = finished["arm"].to_numpy()
        error = np.mean(np.abs(law.predict(**covariates) / measured - 1))
        assert error < bound, (name, error)
    joint = laws["joint_inference"]
    step1 = laws.get("augmentation") or laws["chinchilla"]
    assert joint.target == "accuracy" and joint.ranges["N"] == step1.ranges["N"]
    assert joint.settings.loss_law.to_dict()["parameters"] == step1.to_dict()["parameters"]
    if "augmentation" not in laws:
        assert joint.settings.table_arms == ("vanilla", "thinking", "thinking_inline")


def _check_findings_contract(results, joint, out):
    """results/findings.json holds the contract's keys, its numbers agree with the tables and law
    files they come from, and the printed findings are read from it."""
    import pandas as pd

    from analysis.report import measured
    from analysis.report import joint_scenario

    findings = json.loads((results / "findings.json").read_text())
    assert findings["wall_s"] > 0
    assert 0 < findings["entropy_nats_per_token"] < 3  # the SentencePiece vocabulary's floor
    # the laws that answer hold E at the corpus's floor; fitted_E is the E-free check's
    assert analysis.load_law(results / "laws" / "chinchilla.json").parameters["E"].status == "fixed"
    e = analysis.load_law(results / "laws" / "chinchilla_e_free.json").parameters["E"]
    assert findings["fitted_E"]["law"] == "chinchilla (E free)"
    assert findings["fitted_E"]["estimate"] == e.estimate and [findings["fitted_E"]["low"], findings["fitted_E"]["high"]] == list(e.ci)
    seen = {(m["arm"], m["target"], m["accounting"]) for m in findings["multipliers"]}
    # per target, every arm's multiplier in both accountings, or the note saying why there is no law
    for target, fitted_as in (("eval_loss", "eval_loss"), ("eval_loss_hard", "eval_loss_hard"), ("accuracy", "qa_error")):
        if not any(m["target"] == target for m in findings["multipliers"]):
            assert any(f"multipliers on {fitted_as}: no augmentation law" in n for n in findings["notes"]), target
            continue
        for arm in ("thinking", "thinking_inline"):
            assert {(arm, target, "all"), (arm, target, "raw")} <= seen
    augmented = (results / "laws" / "augmentation.json").is_file()
    augmentation = analysis.load_law(results / "laws" / "augmentation.json") if augmented else None
    for m in findings["multipliers"]:
        assert set(m) >= {"arm", "target", "accounting", "estimate", "low", "high"}
        assert m["target"] in ("eval_loss", "eval_loss_hard", "accuracy") and m["estimate"] > 0
        if m["target"] == "eval_loss":
            p = augmentation.parameters[f"m_{m['arm']}" + ("_raw" if m["accounting"] == "raw" else "")]
            assert m["estimate"] == p.estimate
    inference = pd.read_parquet(results / "inference.parquet")
    greedy = inference[inference["aggregator"] == "greedy"]
    assert len(findings["accuracy"]) == len(greedy) > 0
    for cell in findings["accuracy"]:
        assert set(cell) >= {"arm", "params", "tokens", "difficulty", "thinking_budget", "accuracy", "stderr", "n"}
        row = greedy[(greedy["arm"] == cell["arm"]) & (greedy["params"] == cell["params"])
                     & (greedy["tokens"] == cell["tokens"]) & (greedy["difficulty"] == cell["difficulty"])
                     & (greedy["thinking_budget"] == cell["thinking_budget"]) & (greedy["seed"] == cell["seed"])]
        assert len(row) == 1 and row["accuracy"].item() == cell["accuracy"] and row["n_problems"].item() == cell["n"]
    # each arm's protocol: T = 0 direct for all; vanilla never thinks; thinking arms open <think>
    protocols = {(c["arm"], c["thinking_budget"] > 0): c["protocol"] for c in findings["accuracy"]}
    assert protocols == {("vanilla", False): "direct", ("vanilla", True): "direct",
                         ("thinking", False): "direct", ("thinking", True): "append",
                         ("thinking_inline", False): "direct", ("thinking_inline", True): "before_hard"}
    total, queries, tokens = joint_scenario(joint)
    assert findings["best_split"] == json.loads(json.dumps(joint.recommend(
        total_flops=total, inference_queries=queries, tokens_per_query=tokens).to_dict()))
    # adaptive thinking: each thinking arm's policy and the uniform budget, measured on held-out
    # problems on every seed's run (their rows kept out of the tables the laws were fitted on)
    assert {a["arm"] for a in findings["adaptive"]} == {"thinking", "thinking_inline"}
    assert (inference["problem_seed"] != findings["adaptive"][0]["held_out_seed"]).all()
    for a in findings["adaptive"]:
        assert [r["seed"] for r in a["replicates"]] == [0]
        assert set(a) >= {"arm", "policy", "accuracy", "stderr", "uniform_thinking_budget", "uniform_accuracy",
                          "uniform_stderr", "mean_thinking_tokens"}
        weights = {int(d): w for d, w in a["difficulty_mix"].items()}
        assert sum(weights[int(d)] * t for d, t in a["policy"].items()) <= a["mean_thinking_budget"] + 1e-9
        assert a["uniform_thinking_budget"] <= a["mean_thinking_budget"] and 0 <= a["accuracy"] <= 1
        policy_rows = [json.loads(l) for l in (results.parent / a["run_id"] / "inference_policy_rows.jsonl")
                       .read_text().splitlines()]
        assert {r["seed"] for r in policy_rows} == {a["held_out_seed"]}
    _check_claims(findings, training=pd.read_parquet(results / "training.parquet"), inference=inference)
    for line in measured.summary_lines(findings):
        assert line in out


def _check_claims(findings, training, inference):
    """Seeds are the replicate axis of both tables; the matched multipliers and the claims carry
    them; every verdict follows from its interval."""
    from analysis.report import claims

    assert set(training["seed"]) == set(inference["seed"]) == {0}
    assert findings["replicates"] == 1 and findings["version"] == 2
    assert any("evaluation noise only" in n for n in findings["notes"])  # one seed, said so
    matched = findings["matched_multipliers"]
    assert {(m["arm"], m["accounting"]) for m in matched} == {
        (arm, accounting) for arm in ("thinking", "thinking_inline") for accounting in ("all", "raw")}
    for m in matched:
        assert m["seeds"] == m["reference_seeds"] == [0]
        assert m["status"] in ("reached", "not reached", "reached at the smallest budget")
        assert (m["estimate"] is None) == (m["status"] != "reached")
    ids = {c["id"] for c in findings["claims"]}
    assert {f"data_efficiency.{arm}.{accounting}" for arm in ("thinking", "thinking_inline")
            for accounting in ("all", "raw")} <= ids
    assert {"best_split.thinks", "adaptive_vs_uniform.thinking", "adaptive_vs_uniform.thinking_inline"} <= ids
    thinking = set(inference.loc[inference["mean_thinking_tokens"] > 0, "arm"])
    for prefix in ("test_time", "beyond_training", "more_thinking_hurts"):
        assert {i for i in ids if i.startswith(prefix + ".")} == {f"{prefix}.{arm}" for arm in thinking}
    for c in findings["claims"]:
        assert set(c) >= {"id", "question", "statement", "estimate", "low", "high", "verdict"}
        assert c["verdict"] in claims.VERDICTS
        if c["verdict"] != claims.NOT_DETERMINED:
            assert c["verdict"] == claims.verdict(c["low"], c["high"], c["null"], c["direction"], c["id"] == "best_split.thinks")
        else:
            assert c["reason"]


def test_demo_seeds_flag_names_bad_seed_lists(capsys):
    from scaling.cli import main

    for bad in ("7,x", "1,1", "-1", ""):
        with pytest.raises(SystemExit) as exit_info:
            main(["demo", "--quick", f"--seeds={bad}"])
        assert exit_info.value.code == 2
        assert "--seeds must be" in capsys.readouterr().err
