"""Issue 18: the joint law with a difficulty term, adaptive thinking budgets per difficulty, and
their figure. Synthetic data come from a chosen law with binomial noise; the fitted law's
recommendation is checked against the true law's optimum found by brute force."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import analysis
from analysis import plots, recommend
from analysis.forms import get_form
from helpers import make_law

# Easy queries (d1) are near saturation at T = 0; harder ones need thinking, and gain more per
# log thinking token (eta_d > 0); every difficulty's accuracy falls beyond a peak (rho_T > 0).
TRUTH = {"a": 0.95, "b": 0.02, "kappa": 3.0, "L0": 3.0, "gamma_T": 0.35, "gamma_k": 0.3,
         "delta_d": 2.5, "eta_d": 0.3, "rho_T": 0.6}
LEVELS = (1, 2, 3)
MIX = {1: 0.5, 2: 0.3, 3: 0.2}
BUDGETS = (0, 16, 64, 256, 1024, 4096)
MODEL = {"N": 1e10, "D": 2e11}   # the largest model of the table
MEAN = 300.0


@pytest.fixture(scope="module")
def loss_law():
    return make_law(n_draws=20)   # Epoch's Chinchilla law (tests/helpers.py)


def true_options(loss_law):
    return {"loss_law": loss_law, "difficulties": LEVELS}


def inference_table(loss_law, seed=0, problems=200):
    """Task names carry the difficulty (synthetic_qa_d<k>), as scaling infer writes them; no
    difficulty column, so the table reader derives it."""
    rng = np.random.default_rng(seed)
    form, options = get_form("joint_inference"), true_options(loss_law)
    rows = []
    for n, d, level, t, k in itertools.product(np.geomspace(1e8, 1e10, 4), (1e9, 1.5e10, 2e11), LEVELS, BUDGETS, (1, 4)):
        p = float(form.predict(TRUTH, options, N=n, D=d, T=t, k=k, difficulty=level))
        rows.append({"params": n, "tokens": d, "task": f"synthetic_qa_d{level}", "thinking_budget": t, "samples": k,
                     "aggregator": "majority", "accuracy": rng.binomial(problems, p) / problems})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted(loss_law):
    return analysis.fit(inference_table(loss_law), form="joint_inference", target="accuracy", bootstrap=20,
                        heldout_fraction=0, loss_law=loss_law)


def brute_force(predict, mean, grid):
    """The best budget per difficulty on `grid` (every combination tried) and the best uniform one."""
    acc = {lv: predict(lv, grid) for lv in LEVELS}
    best = (-1.0, None)
    for combo in itertools.product(range(len(grid)), repeat=len(LEVELS)):
        if sum(MIX[lv] * grid[i] for lv, i in zip(LEVELS, combo)) <= mean + 1e-9:
            value = sum(MIX[lv] * acc[lv][i] for lv, i in zip(LEVELS, combo))
            if value > best[0]:
                best = (value, {lv: grid[i] for lv, i in zip(LEVELS, combo)})
    uniform = max(sum(MIX[lv] * acc[lv][i] for lv in LEVELS) for i in range(len(grid)) if grid[i] <= mean)
    return best[1], best[0], uniform


def true_predict(loss_law):
    form, options = get_form("joint_inference"), true_options(loss_law)
    return lambda level, t: form.predict(TRUTH, options, **{k: np.full(len(t), v) for k, v in MODEL.items()},
                                         T=np.asarray(t, float), k=np.ones(len(t)), difficulty=np.full(len(t), level))


def test_the_difficulty_column_is_derived_and_the_parameters_recovered(fitted):
    assert fitted.converged and fitted.settings.difficulties == LEVELS
    assert fitted.settings.difficulty_shares == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert fitted.ranges["difficulty"] == [1.0, 3.0]
    for name in ("delta_d", "eta_d", "rho_T", "gamma_T"):
        p = fitted.parameters[name]
        assert p.estimate == pytest.approx(TRUTH[name], rel=0.15), (name, p)
        assert p.ci[0] < p.ci[1] and len(fitted.bootstrap_samples[name]) == 20
    # More thinking hurts past a peak: the fitted curve rises and then falls for every difficulty.
    for level in LEVELS:
        curve = fitted.predict(**MODEL, T=np.array([0.0, 512.0, 4096.0]), k=1, difficulty=level)
        assert curve[1] > curve[0] and curve[1] > curve[2], (level, curve)


def test_law_recovers_the_true_per_difficulty_optimum_and_gain(fitted, loss_law):
    truth = true_predict(loss_law)
    grid = [0.0] + list(np.round(np.geomspace(1, 4096, 40)))
    true_budgets, true_best, true_uniform = brute_force(truth, MEAN, grid)
    # The design is the claim: adaptive beats uniform at the same mean, easy queries get least.
    assert true_best - true_uniform > 0.01
    assert true_budgets[1] < true_budgets[3]
    policy = recommend.adaptive_thinking_policy(fitted, MIX, MEAN, **MODEL)
    assert policy.mean_thinking_tokens <= MEAN + 1e-9
    assert sum(MIX[lv] * policy.budgets[lv] for lv in LEVELS) == pytest.approx(policy.mean_thinking_tokens)
    for level in LEVELS:   # each budget within a factor 1.6 of the true optimum's (or both nearly 0)
        got, want = policy.budgets[level], true_budgets[level]
        assert (got <= 8 and want <= 8) or 1 / 1.6 <= (got + 1) / (want + 1) <= 1.6, (level, got, want)
    # The policy, judged by the true law, is within 0.005 of the true optimum; so is the gain.
    realised = sum(MIX[lv] * truth(lv, [policy.budgets[lv]])[0] for lv in LEVELS)
    assert realised >= true_best - 0.005
    assert policy.gain == pytest.approx(true_best - true_uniform, abs=0.01)
    # With intervals: the answer's gain is the policy's, its interval excludes no gain.
    answer = recommend.adaptive_thinking(fitted, MIX, MEAN, N=MODEL["N"], D=MODEL["D"])
    assert answer["adaptive_gain"].estimate == pytest.approx(policy.gain, rel=1e-12)
    assert answer["adaptive_gain"].ci[0] > 0
    assert answer["thinking_budget_d3"].estimate == policy.budgets[3]


def test_policy_is_exact_on_its_grid_and_zero_mean_answers_directly(fitted):
    budgets = np.array([0.0, 16, 64, 256, 1024])
    predict = fitted.predict
    policy = recommend.adaptive_thinking_policy(fitted, MIX, 200.0, budgets=budgets, **MODEL)
    table = {lv: predict(**{k: np.full(5, v) for k, v in MODEL.items()}, T=budgets, k=np.ones(5),
                         difficulty=np.full(5, lv)) for lv in LEVELS}
    best = max((sum(MIX[lv] * table[lv][i] for lv, i in zip(LEVELS, c)), c)
               for c in itertools.product(range(5), repeat=3)
               if sum(MIX[lv] * budgets[i] for lv, i in zip(LEVELS, c)) <= 200.0)
    assert policy.accuracy == pytest.approx(best[0], rel=1e-12)
    assert policy.budgets == {lv: budgets[i] for lv, i in zip(LEVELS, best[1])}
    zero = recommend.adaptive_thinking_policy(fitted, MIX, 0.0, **MODEL)
    assert set(zero.budgets.values()) == {0.0} and zero.uniform_budget == 0.0 and zero.gain == 0.0


def test_without_a_difficulty_column_the_pooled_law_is_unchanged(loss_law):
    table = inference_table(loss_law).query("task == 'synthetic_qa_d2'").assign(task="qa")
    pooled = analysis.fit(table, form="joint_inference", target="accuracy", bootstrap=0, heldout_fraction=0,
                          loss_law=loss_law)
    assert list(pooled.parameters) == ["a", "b", "kappa", "L0", "gamma_T", "gamma_k"]
    assert pooled.settings.difficulties is None and "difficulty" not in pooled.ranges
    both = inference_table(loss_law)
    forced = analysis.fit(both, form="joint_inference", target="accuracy", bootstrap=0, heldout_fraction=0,
                          loss_law=loss_law, pool_difficulties=True)
    assert "rho_T" not in forced.parameters and forced.settings.difficulties is None
    # two budgets cannot tell the gain in ln(1 + T) from the penalty in T: the pooled law
    two = analysis.fit(both[both["thinking_budget"].isin([0, 64])], form="joint_inference", target="accuracy",
                       bootstrap=0, heldout_fraction=0, loss_law=loss_law)
    assert two.settings.difficulties is None and "rho_T" not in two.parameters
    with pytest.raises(ValueError, match="no difficulty term"):
        recommend.adaptive_thinking_policy(forced, MIX, 100.0, **MODEL)


def test_bad_mixes_are_refused_naming_the_flag(fitted):
    assert recommend.parse_difficulty_mix("1:0.5,2:0.3,3:0.2") == {1.0: 0.5, 2.0: 0.3, 3.0: 0.2}
    for text, message in (("1:0.5,2:0.3", "sum to 0.8, not 1"), ("1:0.5,2", "DIFFICULTY:SHARE"),
                          ("1:1.2,2:-0.2", "finite and >= 0"), ("1:0.5,1:0.5", "given twice")):
        with pytest.raises(ValueError, match="--difficulty_mix") as info:
            recommend.parse_difficulty_mix(text)
        assert message in str(info.value)
    with pytest.raises(ValueError, match=r"--difficulty_mix: difficulty 5 is outside the fitted difficulties"):
        recommend.adaptive_thinking_policy(fitted, {1: 0.5, 5: 0.5}, 100.0, **MODEL)
    with pytest.raises(ValueError, match="--mean_thinking_tokens=-1"):
        recommend.adaptive_thinking_policy(fitted, MIX, -1.0, **MODEL)
    with pytest.raises(ValueError, match="outside the fitted difficulties"):
        fitted.predict(**MODEL, T=0, k=1, difficulty=0.5)


def test_law_file_round_trip_keeps_the_difficulty_term(fitted, tmp_path):
    again = analysis.load_law(fitted.save(tmp_path / "acc.json"))
    assert again.settings.difficulties == LEVELS and again.settings.difficulty_shares == fitted.settings.difficulty_shares
    point = dict(**MODEL, T=[0, 300, 3000], k=[1, 1, 4], difficulty=[1, 2, 3])
    assert again.predict(**point) == pytest.approx(fitted.predict(**point), rel=1e-12)
    assert again.predict_draws(**point).shape == (20 + again.n_region, 3)   # the draws, then the region


def test_adaptive_figure_has_a_uniform_and_an_adaptive_curve_per_arm(fitted):
    fig = plots.adaptive_thinking_figure(fitted, MIX, **MODEL)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["uniform T", "adaptive per difficulty"]
    uniform, adaptive = (line.get_ydata() for line in ax.get_lines())
    # The frontier: at every mean the adaptive policy is at least the best uniform budget within it.
    best_uniform = np.maximum.accumulate(uniform)
    assert np.all(adaptive >= best_uniform - 1e-12) and np.any(adaptive > best_uniform + 0.005)
    assert "mean thinking tokens" in ax.get_xlabel()


# --- `scaling fit` and `scaling recommend` --------------------------------------------------------

def difficulty_law(loss_law, n_draws=20, arms=False):
    """A law file as `scaling fit` writes it, with known parameters (no fit: fast CLI tests)."""
    settings = {"loss_law": loss_law.to_dict(), "difficulties": list(LEVELS), "difficulty_shares": [0.5, 0.3, 0.2]}
    return make_law(TRUTH, form="joint_inference", target="accuracy", n_draws=n_draws, spread=0.01,
                    settings=settings, ranges={"N": [1e8, 1e10], "D": [1e9, 2e11], "T": [0, 4096], "k": [1, 4],
                                               "difficulty": [1, 3]})


def test_cli_recommend_with_a_difficulty_mix(run_cli, loss_law, tmp_path):
    law = difficulty_law(loss_law)
    path = law.save(tmp_path / "acc.json")
    proc = run_cli("recommend", path, "--difficulty_mix=1:0.5,2:0.3,3:0.2", "--mean_thinking_tokens=300",
                   "--params=1e10", "--tokens=2e11", "--json", check=True)
    out = json.loads(proc.stdout)
    assert list(out) == ["thinking_budget_d1", "thinking_budget_d2", "thinking_budget_d3", "mean_thinking_tokens",
                         "predicted_accuracy_adaptive", "uniform_thinking_budget", "predicted_accuracy_uniform",
                         "adaptive_gain", "status"]
    python = analysis.load_law(path).recommend(difficulty_mix=MIX, mean_thinking_tokens=300.0, params=1e10,
                                               tokens=2e11).to_dict()
    assert out == python
    policy = recommend.adaptive_thinking_policy(law, MIX, 300.0, **MODEL)
    assert out["thinking_budget_d3"]["estimate"] == policy.budgets[3]
    assert out["adaptive_gain"]["estimate"] == pytest.approx(policy.gain) and out["adaptive_gain"]["ci"][0] > 0
    table = run_cli("recommend", path, "--difficulty_mix=1:0.5,2:0.3,3:0.2", "--mean_thinking_tokens=300", check=True)
    assert "Adaptive thinking budget per difficulty" in table.stdout and "uniform_thinking_budget" in table.stdout
    assert "the largest fitted" in table.stdout   # no --params/--tokens: the largest fitted model


def test_cli_joint_allocation_with_a_difficulty_mix(run_cli, loss_law, tmp_path):
    path = difficulty_law(loss_law).save(tmp_path / "acc.json")
    query = ("--total_flops=1e21", "--inference_queries=1e5", "--tokens_per_query=256")
    out = json.loads(run_cli("recommend", path, *query, "--difficulty_mix=1:0.5,2:0.3,3:0.2", "--json",
                             check=True).stdout)
    assert {"N", "D", "mean_thinking_budget", "thinking_budget_d1", "thinking_budget_d3", "samples",
            "predicted_accuracy"} <= set(out)
    budgets = [out[f"thinking_budget_d{lv}"]["estimate"] for lv in LEVELS]
    assert sum(MIX[lv] * b for lv, b in zip(LEVELS, budgets)) <= out["mean_thinking_budget"]["estimate"] + 1e-9
    n, d, k = out["N"]["estimate"], out["D"]["estimate"], out["samples"]["estimate"]
    spent = 6 * n * d + 1e5 * 2 * n * k * (256 + out["mean_thinking_budget"]["estimate"])
    assert spent == pytest.approx(1e21, rel=1e-9)
    # One budget for all (no mix): never more accurate than choosing per difficulty.
    single = json.loads(run_cli("recommend", path, *query, "--json", check=True).stdout)
    assert out["predicted_accuracy"]["estimate"] >= single["predicted_accuracy"]["estimate"] - 1e-3


def test_cli_refuses_bad_difficulty_questions_naming_the_flag(run_cli, loss_law, tmp_path):
    path = difficulty_law(loss_law, n_draws=5).save(tmp_path / "acc.json")
    for args, message in ((("--difficulty_mix=1:0.5,2:0.3", "--mean_thinking_tokens=100"), "--difficulty_mix"),
                          (("--difficulty_mix=1:0.5,7:0.5", "--mean_thinking_tokens=100"), "outside the fitted"),
                          (("--difficulty_mix=1:1", "--mean_thinking_tokens=-5"), "--mean_thinking_tokens")):
        proc = run_cli("recommend", path, *args)
        assert proc.returncode == 2 and message in proc.stderr and proc.stdout == "", (args, proc.stderr)
    law = analysis.load_law(path)   # the same checks `scaling recommend` reports (exit 2), asked in Python
    for query, message in (({"mean_thinking_tokens": 100.0}, "give --difficulty_mix"),
                           ({"difficulty_mix": "1:1"}, "give --mean_thinking_tokens"),
                           ({"difficulty_mix": "1:1", "mean_thinking_tokens": 100.0, "params": -3.0}, "--params"),
                           ({"difficulty_mix": "1:1", "mean_thinking_tokens": 100.0, "total_flops": 1e21,
                             "inference_queries": 1.0, "tokens_per_query": 1.0}, "give one of them")):
        with pytest.raises(ValueError, match=message):
            law.recommend(**query)
    pooled = make_law({k: TRUTH[k] for k in ("a", "b", "kappa", "L0", "gamma_T", "gamma_k")}, form="joint_inference",
                      target="accuracy", n_draws=5, settings={"loss_law": loss_law.to_dict()},
                      ranges={"N": [1e8, 1e10], "D": [1e9, 2e11], "T": [0, 4096], "k": [1, 4]})
    proc = run_cli("recommend", pooled.save(tmp_path / "pooled.json"), "--difficulty_mix=1:1",
                   "--mean_thinking_tokens=100")
    assert proc.returncode == 2 and "difficulty column" in proc.stderr


def test_scaling_fit_on_an_inference_table_with_difficulties(run_cli, loss_law, fitted, tmp_path):
    inference_table(loss_law).to_parquet(tmp_path / "inference.parquet")
    loss_path = loss_law.save(tmp_path / "loss.json")
    proc = run_cli("fit", tmp_path / "inference.parquet", "--form=joint_inference", "--target=accuracy",
                   "--loss-law", loss_path, "--bootstrap=5", "--heldout-fraction=0", "-o", tmp_path / "acc.json")
    assert proc.returncode == 0, proc.stderr
    assert "rho_T" in proc.stdout and "delta_d" in proc.stdout and "accuracy peaks in T at T* = " in proc.stdout
    law = analysis.load_law(tmp_path / "acc.json")
    for name, p in fitted.parameters.items():   # the same fit as analysis.fit's
        assert law.parameters[name].estimate == pytest.approx(p.estimate, rel=1e-6, abs=1e-9), name


def test_the_report_draws_the_adaptive_figure_for_a_difficulty_law(fitted, loss_law):
    from analysis.report.figures import draw_figures

    canonical = pd.DataFrame({"N": [1e8, 1e9], "D": [1e9, 1e10], "C": [6e17, 6e19], "loss": [3.0, 2.5]})
    inference = inference_table(loss_law)
    drawn = {part.name: part for part in draw_figures(canonical, pd.DataFrame(), inference,
                                                      {"joint_inference": fitted})}
    assert isinstance(drawn["Adaptive thinking"].figure, Figure), drawn["Adaptive thinking"].reason
    # the iso-compute curves of a difficulty law average over its table's mix
    assert isinstance(drawn["Iso-compute curves"].figure, Figure), drawn["Iso-compute curves"].reason
    pooled = make_law({k: TRUTH[k] for k in ("a", "b", "kappa", "L0", "gamma_T", "gamma_k")}, form="joint_inference",
                      target="accuracy", n_draws=5, settings={"loss_law": loss_law.to_dict()},
                      ranges={"N": [1e8, 1e10], "D": [1e9, 2e11], "T": [0, 4096], "k": [1, 4]})
    drawn = {part.name: part for part in draw_figures(canonical, pd.DataFrame(), inference,
                                                      {"joint_inference": pooled})}
    assert drawn["Adaptive thinking"].figure is None and "difficulty" in drawn["Adaptive thinking"].reason
    assert isinstance(drawn["Iso-compute curves"].figure, Figure)
