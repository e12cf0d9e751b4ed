"""Each law form recovers known parameters from synthetic data; pass@k matches published values."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.forms import FORMS, CurveForm, get_form
from analysis.schema import pass_at_k

REF = Path(__file__).parent / "data" / "refdata"
BASE = {"E": 1.87, "A": 520.4, "B": 1488.6, "alpha": 0.3527, "beta": 0.3527}


def noisy(loss, noise, seed):
    return loss * np.exp(np.random.default_rng(seed).normal(0, noise, np.shape(loss)))


def covered(law, truth):
    return {name: law.parameters[name].ci[0] <= value <= law.parameters[name].ci[1] for name, value in truth.items()}


def test_every_form_declares_parameters_bounds_starts_and_covariates():
    given = {"arms": ["vanilla", "thinking"], "base": BASE}
    for name, form in FORMS.items():
        assert form.name == name and form.parameter_names_for() and form.covariates
        assert set(form.bounds_for()) == set(form.parameter_names_for())
        if isinstance(form, CurveForm):   # fitted from a grid of starts (the others have their own estimators)
            settings = {k: v for k, v in given.items() if k in {f.name for f in dataclasses.fields(form.Options)}}
            assert form.starts(settings).ndim == 2
    assert len(get_form("chinchilla").starts({})) == 4500
    with pytest.raises(ValueError, match="unknown form 'cubic'"):
        get_form("cubic")
    with pytest.raises(ValueError, match=r"needs covariates \['D'\]"):
        get_form("chinchilla").predict(BASE, N=1e9)


@pytest.mark.slow
def test_data_constrained_recovers_decay_constants_on_fixed_base():
    truth = {"R_D": 15.0, "R_N": 5.0}
    rng = np.random.default_rng(0)
    n = np.geomspace(5e7, 5e9, 7).repeat(12)
    u = np.tile(np.geomspace(1e8, 1e10, 4).repeat(3), 7)
    d = u * np.tile([1.0, 8.0, 40.0], 28) * rng.uniform(0.9, 1.1, len(n))
    loss = get_form("data_constrained").predict({**truth, **BASE}, {"base": BASE}, N=n, D=d, U=u)
    frame = pd.DataFrame({"params": n, "tokens": d, "unique_tokens": u, "eval_loss": noisy(loss, 0.002, 1)})
    law = analysis.fit(frame, form="data_constrained", base=BASE, bootstrap=40, heldout_fraction=0)
    assert law.converged and all(covered(law, truth).values()), law.parameters


@pytest.mark.slow
def test_augmentation_reports_multiplier_in_both_accountings():
    # thinking-augmented data worth 1.5x vanilla per trained token; 60% of its tokens are document
    # tokens, so per raw document token it is worth 1.5 / 0.6 = 2.5x
    truth = {"E": 1.9, "A": 300.0, "B": 1500.0, "alpha": 0.33, "beta": 0.36}
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 3e9, 6), np.geomspace(1e8, 1e11, 6)))
    rows = []
    for arm, m, raw_share in (("vanilla", 1.0, 1.0), ("thinking", 1.5, 0.6)):
        loss = get_form("chinchilla").predict(truth, N=n, D=m * d)
        rows.append(pd.DataFrame({"params": n, "tokens": d, "tokens_raw": raw_share * d, "arm": arm,
                                  "eval_loss": noisy(loss, 0.002, len(rows))}))
    frame = pd.concat(rows)
    law = analysis.fit(frame, form="augmentation", bootstrap=40, heldout_fraction=0)
    assert list(law.settings.arms) == ["vanilla", "thinking"]
    assert law.parameters["m_thinking"].estimate == pytest.approx(1.5, rel=0.03)
    assert law.parameters["m_thinking_raw"].estimate == pytest.approx(2.5, rel=0.03)
    assert law.parameters["m_thinking"].se > 0 and len(law.bootstrap_samples["m_thinking_raw"]) == 40
    assert law.diagnostics["accounting"]["m_thinking_raw"] == "raw document tokens"
    assert law.predict(N=[1e9, 1e9], D=[1e10, 1e10], arm=["vanilla", "thinking"])[1] < \
        law.predict(N=1e9, D=1e10, arm="vanilla")
    with pytest.raises(ValueError, match=r"arm\(s\) \['code'\] were not in the fit"):
        law.predict(N=1e9, D=1e10, arm="code")
    per_arm = analysis.fit(frame, form="augmentation", per_arm_exponents=True, bootstrap=0, heldout_fraction=0)
    assert {"beta_vanilla", "beta_thinking"} <= set(per_arm.parameters)


@pytest.mark.slow
def test_architecture_calibration_recovered():
    truth = {"E": 1.9, "A": 300.0, "B": 1500.0, "alpha": 0.33, "beta": 0.36,
             "a1": 0.02, "a2": 0.004, "b1": -0.03, "b2": 0.05}
    rng = np.random.default_rng(2)
    n = np.geomspace(3e7, 3e9, 8).repeat(16)
    d = np.tile(np.geomspace(1e9, 1e11, 4), 32)
    x = rng.uniform(0.03, 0.3, len(n))
    r = rng.uniform(0.5, 6.0, len(n))
    loss = get_form("architecture").predict(truth, N=n, D=d, x=x, r=r)
    frame = pd.DataFrame({"params": n, "tokens": d, "x": x, "mlp_attn_ratio": r, "eval_loss": noisy(loss, 0.002, 3)})
    law = analysis.fit(frame, form="architecture", bootstrap=30, heldout_fraction=0)
    cover = covered(law, {k: truth[k] for k in ("a1", "b1", "alpha")})
    assert all(cover.values()), (cover, law.parameters)


def test_joint_inference_accuracy_recovered_from_measured_loss():
    truth = {"a": 0.9, "b": 0.05, "kappa": 4.0, "L0": 2.6, "gamma_T": 0.3, "gamma_k": 0.5}
    rng = np.random.default_rng(4)
    loss = rng.uniform(2.0, 3.5, 300)
    t = rng.choice([0, 64, 256, 1024], 300)
    k = rng.choice([1, 4, 16], 300)
    acc = get_form("joint_inference").predict(truth, L=loss, T=t, k=k) + rng.normal(0, 0.005, 300)
    frame = pd.DataFrame({"eval_loss": loss, "thinking_budget": t, "samples": k, "accuracy": acc})
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=30, heldout_fraction=0)
    assert law.target == "accuracy"
    cover = covered(law, {k: truth[k] for k in ("kappa", "L0", "gamma_T", "gamma_k")})
    assert all(cover.values()), (cover, law.parameters)


def test_pass_at_k_matches_large_language_monkeys_coverage():
    per_problem = pd.read_csv(REF / "llmonkeys_math_per_problem.csv")
    published = pd.read_csv(REF / "llmonkeys_math_coverage_by_k.csv")
    for model, rows in per_problem.groupby("Model"):
        for k in (1, 10, 100, 1000):
            estimate = pass_at_k(rows["Num. Samples Total"], rows["Num. Samples Correct"].astype(int), k).mean()
            expected = published[(published["Model"] == model) & (published["k"] == k)]["coverage_mean_pass_at_k"]
            assert estimate == pytest.approx(float(expected.iloc[0]), rel=1e-9), (model, k)
    assert pass_at_k(10, 0, 3) == 0.0 and pass_at_k(10, 8, 3) == 1.0
    with pytest.raises(ValueError, match="at least 20 samples"):
        pass_at_k([10], [1], 20)


def two_arm_loss_law(base: dict, n: np.ndarray, d: np.ndarray, thinking_multiplier: float):
    """An augmentation law fitted to exact Chinchilla losses of a vanilla arm and a thinking arm
    whose data counts `thinking_multiplier` times."""
    training = pd.concat([pd.DataFrame({"params": n, "tokens": d, "arm": arm,
                                        "eval_loss": get_form("chinchilla").predict(base, N=n, D=m * d)})
                          for arm, m in (("vanilla", 1.0), ("thinking", thinking_multiplier))])
    return analysis.fit(training, form="augmentation", bootstrap=0, heldout_fraction=0)


@pytest.mark.slow
def test_joint_inference_two_step_through_a_loss_law_file(run_cli, tmp_path):
    """Step 1 from a fitted augmentation law file, step 2 fitted by `scaling fit --loss-law`."""
    base = {"E": 1.9, "A": 300.0, "B": 1500.0, "alpha": 0.33, "beta": 0.36}
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 3e9, 5), np.geomspace(1e8, 1e11, 5)))
    loss_law = two_arm_loss_law(base, n, d, 1.5)
    loss_law.save(tmp_path / "loss.json")
    truth = {"a": 0.9, "b": 0.05, "kappa": 4.0, "L0": 2.6, "gamma_T": 0.3, "gamma_k": 0.5}
    rng = np.random.default_rng(0)
    cov = {"N": rng.choice(n, 200), "D": rng.choice(d, 200), "arm": rng.choice(["vanilla", "thinking"], 200),
           "T": rng.choice([0, 64, 512], 200), "k": rng.choice([1, 4, 16], 200)}
    acc = get_form("joint_inference").predict(truth, {"loss_law": loss_law}, **cov)
    pd.DataFrame({"params": cov["N"], "tokens": cov["D"], "arm": cov["arm"], "thinking_budget": cov["T"],
                  "samples": cov["k"], "aggregator": "majority",
                  "accuracy": acc + rng.normal(0, 0.005, 200)}).to_parquet(tmp_path / "inference.parquet")
    proc = run_cli("fit", tmp_path / "inference.parquet", "--form=joint_inference", "--target=accuracy",
                   "--loss-law", tmp_path / "loss.json", "--bootstrap=20", "-o", tmp_path / "acc.json")
    assert proc.returncode == 0, proc.stderr
    law = analysis.load_law(tmp_path / "acc.json")
    assert law.parameters["kappa"].estimate == pytest.approx(4.0, rel=0.05)
    assert law.parameters["gamma_T"].estimate == pytest.approx(0.3, rel=0.05)
    assert law.predict_draws(N=1e9, D=1e10, arm="thinking", T=512, k=4).shape == (20 + law.n_region,)


def test_joint_inference_per_arm_thinking_gains_recovered():
    """Thinking-trained models gain from T, vanilla ones do not: per_arm_thinking recovers both slopes."""
    base = {"E": 1.9, "A": 300.0, "B": 1500.0, "alpha": 0.33, "beta": 0.36}
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 3e9, 4), np.geomspace(1e8, 1e11, 4)))
    loss_law = two_arm_loss_law(base, n, d, 1.5)
    options = {"loss_law": loss_law, "per_arm_thinking": True}
    assert get_form("joint_inference").parameter_names_for(options) == (
        "a", "b", "kappa", "L0", "gamma_T_vanilla", "gamma_T_thinking", "gamma_k")
    truth = {"a": 0.9, "b": 0.05, "kappa": 4.0, "L0": 2.6, "gamma_T_vanilla": 0.0, "gamma_T_thinking": 0.4,
             "gamma_k": 0.5}
    rng = np.random.default_rng(1)
    cov = {"N": rng.choice(n, 300), "D": rng.choice(d, 300), "arm": rng.choice(["vanilla", "thinking"], 300),
           "T": rng.choice([0, 64, 512], 300), "k": rng.choice([1, 4, 16], 300)}
    acc = get_form("joint_inference").predict(truth, options, **cov) + rng.normal(0, 0.005, 300)
    frame = pd.DataFrame({"params": cov["N"], "tokens": cov["D"], "arm": cov["arm"], "thinking_budget": cov["T"],
                          "samples": cov["k"], "accuracy": acc})
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=30, heldout_fraction=0,
                       loss_law=loss_law, per_arm_thinking=True)
    cover = covered(law, {k: truth[k] for k in ("gamma_T_vanilla", "gamma_T_thinking", "gamma_k")})
    assert all(cover.values()), (cover, law.parameters)
    gain = {arm: float(law.predict(N=1e8, D=1e9, arm=arm, T=512, k=1) - law.predict(N=1e8, D=1e9, arm=arm, T=0, k=1))
            for arm in ("vanilla", "thinking")}
    assert gain["thinking"] > 0.05 and abs(gain["vanilla"]) < 0.02, gain
    with pytest.raises(ValueError, match="several arms"):
        get_form("joint_inference").parameter_names_for({"per_arm_thinking": True, "loss_law": {"options": {}}})


def test_joint_inference_gives_an_arm_that_never_thinks_no_test_time_slope():
    """An arm whose T is 0 throughout (it wrote no thinking tokens) gets no gamma_T: predictions
    for it do not move with T, and the thinking arm's slope is still recovered."""
    base = {"E": 1.9, "A": 300.0, "B": 1500.0, "alpha": 0.33, "beta": 0.36}
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 3e9, 4), np.geomspace(1e8, 1e11, 4)))
    loss_law = two_arm_loss_law(base, n, d, 1.5)
    truth = {"a": 0.9, "b": 0.05, "kappa": 4.0, "L0": 2.6, "gamma_T_vanilla": 0.0, "gamma_T_thinking": 0.4,
             "gamma_k": 0.5}
    rng = np.random.default_rng(4)
    arm = rng.choice(["vanilla", "thinking"], 300)
    cov = {"N": rng.choice(n, 300), "D": rng.choice(d, 300), "arm": arm,
           "T": np.where(arm == "vanilla", 0, rng.choice([0, 64, 512], 300)), "k": rng.choice([1, 4, 16], 300)}
    acc = get_form("joint_inference").predict(truth, {"loss_law": loss_law, "per_arm_thinking": True}, **cov)
    frame = pd.DataFrame({"params": cov["N"], "tokens": cov["D"], "arm": arm, "thinking_budget": cov["T"],
                          "samples": cov["k"], "accuracy": acc + rng.normal(0, 0.005, 300)})
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=10, heldout_fraction=0,
                       loss_law=loss_law, per_arm_thinking=True)
    assert law.settings.thinking_arms == ("thinking",)
    assert "gamma_T_vanilla" not in law.parameters
    assert law.parameters["gamma_T_thinking"].estimate == pytest.approx(0.4, abs=0.05)
    flat = [float(law.predict(N=1e8, D=1e9, arm="vanilla", T=t, k=1)) for t in (0, 512)]
    assert flat[0] == flat[1]
    reloaded = analysis.Law.from_dict(json.loads(json.dumps(law.to_dict())))  # the setting survives a law file
    assert reloaded.settings.thinking_arms == ("thinking",)


def test_joint_inference_per_arm_midpoints_recovered_on_a_low_loss_scale():
    """Arms whose raw-text losses sit on different scales (a thinking format the eval text lacks)
    get their own loss-to-accuracy midpoint L0_<arm>; losses near 0.5 nats (a subword vocabulary)
    are fitted from starts inside the table's own loss range."""
    base = {"E": 0.38, "A": 4.0, "B": 6.0, "alpha": 0.33, "beta": 0.36}
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(4e4, 3e5, 4), np.geomspace(2e5, 1e6, 4)))
    fitted_loss = two_arm_loss_law(base, n, d, 0.5)
    loss_law = fitted_loss
    options = {"loss_law": loss_law, "per_arm_thinking": True, "per_arm_midpoint": True}
    assert get_form("joint_inference").parameter_names_for(options) == (
        "a", "b", "kappa", "L0_vanilla", "L0_thinking", "gamma_T_vanilla", "gamma_T_thinking", "gamma_k")
    midpoint = {arm: float(np.median(fitted_loss.predict(N=n, D=d, arm=arm))) for arm in ("vanilla", "thinking")}
    assert 0.4 < midpoint["vanilla"] < midpoint["thinking"] < 1.0
    truth = {"a": 0.9, "b": 0.03, "kappa": 30.0, "L0_vanilla": midpoint["vanilla"], "L0_thinking": midpoint["thinking"],
             "gamma_T_vanilla": 0.0, "gamma_T_thinking": 0.6, "gamma_k": 0.3}
    rng = np.random.default_rng(2)
    cov = {"N": rng.choice(n, 400), "D": rng.choice(d, 400), "arm": rng.choice(["vanilla", "thinking"], 400),
           "T": rng.choice([0, 16, 64], 400), "k": rng.choice([1, 4], 400)}
    acc = get_form("joint_inference").predict(truth, options, **cov) + rng.normal(0, 0.005, 400)
    frame = pd.DataFrame({"params": cov["N"], "tokens": cov["D"], "arm": cov["arm"], "thinking_budget": cov["T"],
                          "samples": cov["k"], "accuracy": acc})
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=20, heldout_fraction=0,
                       loss_law=loss_law, per_arm_thinking=True, per_arm_midpoint=True)
    for name in ("L0_vanilla", "L0_thinking", "gamma_T_thinking"):
        assert law.parameters[name].estimate == pytest.approx(truth[name], abs=0.05 * max(1.0, abs(truth[name]))), (
            name, law.parameters)
    with pytest.raises(ValueError, match="per_arm_midpoint needs several arms"):
        get_form("joint_inference").parameter_names_for({"per_arm_midpoint": True, "loss_law": {"options": {}}})


def test_a_per_arm_joint_law_on_a_single_arm_loss_law_takes_its_arms_from_the_table():
    """Where no augmentation law is within its bounds, the demo's joint law builds on the reference
    arm's Chinchilla law: every arm's step-1 loss is that law's at its N and D, and the arms (for
    the per-arm midpoints and slopes) come from the table's arm column, reference first."""
    base = {"E": 1.9, "A": 300.0, "B": 1500.0, "alpha": 0.33, "beta": 0.36}
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 3e9, 4), np.geomspace(1e8, 1e11, 4)))
    rng = np.random.default_rng(5)
    loss = get_form("chinchilla").predict(base, N=n, D=d) * np.exp(rng.normal(0, 0.005, n.size))
    loss_law = analysis.fit(pd.DataFrame({"params": n, "tokens": d, "eval_loss": loss}), bootstrap=10,
                            heldout_fraction=0)
    truth = {"a": 0.9, "b": 0.05, "kappa": 4.0, "L0_thinking": 2.4, "L0_vanilla": 2.7, "gamma_T_thinking": 0.4,
             "gamma_k": 0.5}
    arm = rng.choice(["thinking", "vanilla"], 300)
    cov = {"N": rng.choice(n, 300), "D": rng.choice(d, 300), "T": np.where(arm == "vanilla", 0, rng.choice([0, 64, 512], 300)),
           "k": rng.choice([1, 4, 16], 300)}
    logit = (-truth["kappa"] * (loss_law.predict(N=cov["N"], D=cov["D"])
                                - np.where(arm == "vanilla", truth["L0_vanilla"], truth["L0_thinking"]))
             + np.where(arm == "vanilla", 0.0, truth["gamma_T_thinking"]) * np.log1p(cov["T"])
             + truth["gamma_k"] * np.log(cov["k"]))
    acc = truth["b"] + truth["a"] / (1 + np.exp(-logit)) + rng.normal(0, 0.005, 300)
    frame = pd.DataFrame({"params": cov["N"], "tokens": cov["D"], "arm": arm, "thinking_budget": cov["T"],
                          "samples": cov["k"], "accuracy": acc})
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=10, heldout_fraction=0,
                       loss_law=loss_law, per_arm_thinking=True, per_arm_midpoint=True)
    assert law.settings.table_arms == ("vanilla", "thinking") and law.settings.thinking_arms == ("thinking",)
    for name in ("L0_vanilla", "L0_thinking", "gamma_T_thinking"):
        assert law.parameters[name].estimate == pytest.approx(truth[name], abs=0.05), (name, law.parameters)
    # the same step-1 loss, the arm of the higher midpoint more accurate at T = 0
    assert float(law.predict(N=1e8, D=1e9, arm="vanilla", T=0, k=1)) > float(law.predict(N=1e8, D=1e9, arm="thinking", T=0, k=1))
    reloaded = analysis.Law.from_dict(json.loads(json.dumps(law.to_dict())))  # the arms survive a law file
    assert reloaded.settings.table_arms == ("vanilla", "thinking")
    assert float(reloaded.predict(N=1e8, D=1e9, arm="thinking", T=64, k=1)) == pytest.approx(
        float(law.predict(N=1e8, D=1e9, arm="thinking", T=64, k=1)))


def test_a_constant_target_is_refused_and_accuracy_predictions_stay_in_0_1():
    frame = pd.DataFrame({"eval_loss": np.linspace(2, 3, 40), "thinking_budget": 0, "samples": 1, "accuracy": 0.0})
    with pytest.raises(analysis.TableError, match="0 in every row; there is nothing to fit"):
        analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=0)
    frame["accuracy"] = np.random.default_rng(0).uniform(0, 0.05, 40)
    law = analysis.fit(frame, form="joint_inference", target="accuracy", bootstrap=20, heldout_fraction=0)
    draws = law.predict_draws(L=np.array([0.1, 2.5, 9.0]), T=[0, 0, 0], k=[1, 1, 1])
    assert np.all((draws >= 0) & (draws <= 1))


def test_threads_that_look_up_forms_in_a_fresh_process_all_see_every_form():
    # The report fits laws in threads; a thread that looks a form up while another is importing
    # the forms package must wait for the import (Python's import lock), not see half the registry.
    script = (
        "import threading\n"
        "from analysis.forms import get_form\n"
        "names = ['chinchilla', 'augmentation', 'joint_inference', 'architecture']\n"
        "start, found = threading.Barrier(len(names)), []\n"
        "def look(name):\n"
        "    start.wait()\n"
        "    try:\n"
        "        found.append(get_form(name).name)\n"
        "    except Exception as e:\n"
        "        found.append(repr(e))\n"
        "threads = [threading.Thread(target=look, args=(n,)) for n in names]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(sorted(found))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(analysis.__file__).resolve().parent.parent)
    assert out.stdout.strip() == str(sorted(["chinchilla", "augmentation", "joint_inference", "architecture"]))
