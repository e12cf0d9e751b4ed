"""`scaling report` on a small results folder made from a known law: content, self-containment, skips."""

import base64
import hashlib
import re

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import chinchilla, report
from scaling.sweep import report_support

LAW = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def write_results(folder, seed=0, with_inference=True):
    """training.parquet (schema columns) on an IsoFLOP grid, and optionally inference.parquet."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in np.geomspace(1e17, 1e19, 4):
        n_opt, _ = chinchilla.chinchilla_optimum(LAW, c)
        for i, n in enumerate(n_opt * np.geomspace(0.2, 5, 6)):
            tokens = c / (6 * n)
            loss = chinchilla.chinchilla_loss(LAW, n, tokens) * np.exp(rng.normal(0, 0.005))
            rows.append({"run_id": f"n{i}_c{c:.0e}", "sweep": "fixture", "arm": "vanilla", "params": int(n),
                         "tokens": int(tokens), "tokens_raw": int(tokens), "flops": 6 * int(n) * int(tokens),
                         "is_final": True, "eval_loss": loss, "eval_loss_hard": loss + 0.4})
    # A trunk evaluation that is not a final point: the report must not fit on it.
    rows.append({**rows[0], "run_id": "trunk", "is_final": False, "eval_loss": 9.0})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "training.parquet")
    if with_inference:
        # Accuracy from the joint form's own shape: a sigmoid of the loss, lifted by thinking and samples.
        final = pd.DataFrame(rows[:-1]).iloc[::3]
        inf = []
        for row in final.itertuples():
            for t in (0, 16, 64, 256):
                for k in (1, 2, 4):
                    logit = -4.0 * (row.eval_loss - 3.5) + 0.3 * np.log1p(t) + 0.2 * np.log(k)
                    inf.append({"run_id": row.run_id, "arm": "vanilla", "params": row.params, "tokens": row.tokens,
                                "thinking_budget": t, "samples": k, "aggregator": "majority", "task": "qa",
                                "accuracy": 0.05 + 0.9 / (1 + np.exp(-logit)) + rng.normal(0, 0.005)})
        pd.DataFrame(inf).to_parquet(folder / "inference.parquet")
    return folder


@pytest.mark.slow
def test_report_is_self_contained_and_complete(run_cli, tmp_path):
    results = write_results(tmp_path / "results")
    out = tmp_path / "report.html"
    proc = run_cli("report", results, "-o", out, "--bootstrap=20", check=True)
    assert str(out) in proc.stdout
    page = out.read_text()
    for title in ("Data", "Fitted laws", "Figures", "Recommendations", "Provenance"):
        assert f">{title}</h2>" in page
    # Self-contained: every image is an embedded PNG that decodes; nothing is fetched.
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) >= 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', page)
    # The law with intervals, recommendations, provenance with the table's hash and row count.
    assert "<td>alpha</td>" in page and "95% interval" in page and "held-out error" in page
    assert "Compute-optimal allocation" in page and "Inference-aware sizing" in page
    assert "<h3>joint_inference</h3>" in page and "Joint allocation of" in page
    digest = hashlib.sha256((results / "training.parquet").read_bytes()).hexdigest()
    assert digest in page and "<td>25</td>" in page  # 24 final points + 1 trunk row in the table
    assert "<td>points fitted on (final)</td><td>24</td>" in page
    assert 'alt="Predicted accuracy against the share' in page and 'alt="Measured accuracy (no law)' in page
    # What the data cannot support says why.
    assert "law augmentation: not drawn: the data has a single arm" in page


@pytest.mark.slow
def test_report_without_inference_table_states_the_skip(run_cli, tmp_path):
    results = write_results(tmp_path / "results", with_inference=False)
    proc = run_cli("report", results, "-o", tmp_path / "r.html", "--bootstrap=10", check=True)
    page = (tmp_path / "r.html").read_text()
    assert "<li>Test-time scaling: no inference table</li>" in page


@pytest.mark.slow
def test_report_on_a_foreign_table_with_a_column_map(run_cli, tmp_path):
    table = pd.read_parquet(write_results(tmp_path / "results", with_inference=False) / "training.parquet")
    table = table[table["is_final"]].rename(columns={"params": "Model Size", "flops": "Training FLOP", "eval_loss": "loss"})
    csv = tmp_path / "foreign.csv"
    table[["Model Size", "Training FLOP", "loss"]].to_csv(csv, index=False)
    out = tmp_path / "foreign.html"
    run_cli("report", csv, "-o", out, "--columns", "N=Model Size,C=Training FLOP,loss=loss", "--bootstrap=10",
            "--budgets=1e20", check=True)
    page = out.read_text()
    assert "column map: N=Model Size, C=Training FLOP, loss=loss" in page and "1.000e+20" in page


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.mkdir(), "no training.parquet"),
    (lambda p: None, "no such file or directory"),
])
def test_report_errors_name_the_problem(run_cli, tmp_path, setup, message):
    target = tmp_path / "empty"
    setup(target)
    proc = run_cli("report", target, "-o", tmp_path / "x.html")
    assert proc.returncode == 2 and message in proc.stderr and str(target) in proc.stderr
    assert not (tmp_path / "x.html").exists()


def test_report_bad_column_map_names_the_column(run_cli, tmp_path):
    results = write_results(tmp_path / "results", with_inference=False)
    proc = run_cli("report", results / "training.parquet", "-o", tmp_path / "x.html", "--columns", "N=size")
    assert proc.returncode == 2 and "'size'" in proc.stderr


@pytest.mark.slow
def test_report_sets_the_fitted_e_beside_the_true_floor(tmp_path):
    results = write_results(tmp_path / "sweep" / "results", with_inference=False)
    page = report.build_report(results, bootstrap=20, sweep=report_support.SWEEP_FOLDERS)
    assert "Ground truth" not in page  # no run configs: nothing says which corpus this was

    # A floor above the data's E (1.8172): the E-free fit is impossible and the report says so.
    page = report.build_report(results, bootstrap=20, sweep=report_support.SWEEP_FOLDERS, floor=2.9)
    assert ">Ground truth</h2>" in page and "True irreducible loss: <b>2.9000 nats/token</b>" in page
    assert "the interval lies below the truth" in page and "an impossible loss" in page
    assert "Irreducible loss: the Chinchilla law&#x27;s E, fitted free, = " in page
    # the laws that answer hold E at the given floor (issue 27), so no answer falls below it
    assert "hold E at the corpus&#x27;s true floor 2.9000 nats/token" in page
    assert "no model can reach it" not in page

    # Runs of a sweep that evaluated on the synthetic corpus: the generator's entropy, computed.
    run = tmp_path / "sweep" / "run-0"
    run.mkdir()
    (run / "config.gin").write_text("train.arm = 'vanilla'\n")
    sweep = report_support.SweepFolders(floor_documents=300)  # a coarser estimate: the test's time
    page = report.build_report(results, bootstrap=20, sweep=sweep)
    truth = report_support.synthetic_floor(None, n_documents=300)["entropy_nats_per_token"]
    assert f"True irreducible loss: <b>{truth:.4f} ± " in page and "the interval lies above the truth" in page
    assert "no model can reach it" not in page
    (run / "config.gin").write_text("train.eval_corpus = '/data/cache'\n")
    assert "Ground truth" not in report.build_report(results, bootstrap=20, sweep=report_support.SWEEP_FOLDERS)
    assert "Ground truth" not in report.build_report(results, bootstrap=20, sweep=report_support.SWEEP_FOLDERS, floor=None)


def test_report_cli_rejects_a_bad_floor(run_cli, tmp_path):
    results = write_results(tmp_path / "results", with_inference=False)
    proc = run_cli("report", results, "-o", tmp_path / "r.html", "--floor=nonsense")
    assert proc.returncode == 2 and "--floor 'nonsense'" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_with_several_arms_the_single_arm_laws_fit_the_reference_arm_alone(tmp_path):
    # A thinking arm whose raw-text loss also pays for its format (0.3 nats more, worse with data):
    # pooled with vanilla it would drag Chinchilla's E; on vanilla's rows E is vanilla's own.
    results = write_results(tmp_path / "results", with_inference=False)
    training = pd.read_parquet(results / "training.parquet")
    final = training[training["is_final"]]
    thinking = final.assign(arm="thinking", run_id=final["run_id"] + "_t",
                            eval_loss=final["eval_loss"] + 0.3 + 0.05 * np.log(final["tokens"] / final["tokens"].min()))
    pd.concat([training, thinking]).to_parquet(results / "training.parquet")
    report.build_report(results, bootstrap=20, laws_dir=tmp_path / "laws", floor=None)
    chinchilla_law = analysis.load_law(tmp_path / "laws" / "chinchilla.json")
    assert chinchilla_law.parameters["E"].estimate == pytest.approx(LAW["E"], rel=0.05)
    assert chinchilla_law.n_points == len(final)


@pytest.mark.slow
def test_report_takes_law_files_and_the_fits_selection_and_names_each_figures_law(tmp_path, capsys):
    """`scaling report --law FILE --where ... --approach 2`: the law file is used as it is, the rows
    are the selected ones, the IsoFLOP law draws the frontier and answers the split, and every
    figure's caption names its law."""
    from scaling.cli import main

    results = write_results(tmp_path / "results")
    law_file = tmp_path / "chinchilla.json"
    analysis.fit(results, bootstrap=20).save(law_file)
    out = tmp_path / "r.html"
    assert main(["report", str(results), "-o", str(out), "--bootstrap=20", "--law", str(law_file),
                 "--where", "run_id != 'n0_c1e+17'", "--approach", "2", "--floor=none"]) == 0
    page = out.read_text()
    assert "law chinchilla: read from a law file, not fitted here" in page
    assert "<td>points fitted on (final)</td><td>23</td>" in page
    assert "from the approach 2 (IsoFLOP) law (form compute_optimal, approach 2" in page
    assert "Compute-optimal allocation</h3><p class='note'>From the approach 2 (IsoFLOP) law" in page
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions and all(" law (" in c or "(no law" in c for c in captions), [
        c for c in captions if " law (" not in c and "(no law" not in c]
    assert any("solid: the chinchilla law (form chinchilla, approach 3, 24 points)" in c for c in captions)
    assert main(["report", str(results), "-o", str(out), "--law", str(tmp_path / "absent.json")]) == 2
    assert "no such law file" in capsys.readouterr().err


def test_report_on_a_tiny_grid_gives_the_real_reasons_and_no_empty_sections(tmp_path):
    """Two sizes x two budgets x two arms: the augmentation law fails on its point count (said so,
    not 'it needs two arms'), the test-time figure shows greedy at k = 1 (not a mean with
    majority@1 and pass@1), no empty ground-truth table, the figures not drawn folded in one list."""
    rows, inference = [], []
    for arm in ("vanilla", "thinking"):
        for n in (1e6, 4e6):
            for d in (1e7, 4e7):
                loss = chinchilla.chinchilla_loss(LAW, n, d) + (0.05 if arm == "thinking" else 0)
                rows.append({"run_id": f"{arm}{n:g}{d:g}", "arm": arm, "params": n, "tokens": d, "tokens_raw": d,
                             "flops": 6 * n * d, "is_final": True, "eval_loss": loss, "eval_loss_hard": np.nan})
            for t, greedy in ((0, 0.0), (8, 0.2)):
                for aggregator, k, accuracy in (("greedy", 1, greedy), ("majority", 1, greedy + 0.1),
                                                ("pass@k", 1, greedy + 0.15), ("majority", 2, greedy + 0.2)):
                    inference.append({"run_id": f"{arm}{n:g}", "arm": arm, "params": n, "tokens": 4e7,
                                      "thinking_budget": t, "samples": k, "aggregator": aggregator, "task": "qa",
                                      "accuracy": accuracy})
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame(rows).to_parquet(results / "training.parquet")
    pd.DataFrame(inference).to_parquet(results / "inference.parquet")
    page = report.build_report(results, bootstrap=0, floor=1.5)
    assert "no augmentation law was fitted (planned" not in page
    assert re.search(r"no augmentation law was fitted \([^)]*8 points are too few to fit", page), page
    assert "it needs two arms" not in page
    from analysis.report.html import ground_truth_html
    assert ground_truth_html({}, {"entropy_nats_per_token": 1.5}) == ""  # no law with an E: no section
    assert 'class="skipped">IsoFLOP curves' not in page and "<summary>Not drawn (" in page
    assert "against thinking tokens at k = 1 (greedy)" in page and "against samples k at each size&#x27;s largest T (majority)" in page
