"""Budget recommendations: the math against independent numerical solutions, then the CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import analysis
from analysis import chinchilla, recommend
from helpers import EPOCH, make_law

# Epoch's refit of Chinchilla (Besiroglu et al. 2024) and Hoffmann's original law.
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


@pytest.mark.parametrize("law", [EPOCH, HOFFMANN])
@pytest.mark.parametrize("flops", [1e19, 5.76e23, 1e26])
def test_closed_form_optimum_matches_numerical_minimisation(law, flops):
    def loss_at(log_n):
        n = np.exp(log_n)
        return chinchilla.chinchilla_loss(law, n, flops / (6 * n))

    numerical = optimize.minimize_scalar(loss_at, bounds=(np.log(1e5), np.log(1e14)), method="bounded",
                                         options={"xatol": 1e-10})
    n, d = chinchilla.chinchilla_optimum(law, flops)
    assert n == pytest.approx(np.exp(numerical.x), rel=1e-4)
    assert 6 * n * d == pytest.approx(flops, rel=1e-12)


def test_hoffmann_law_gives_chinchilla_scale_answer():
    # Chinchilla's own budget (5.76e23 FLOPs) with Hoffmann's approach-3 law: tens of billions.
    n, d = chinchilla.chinchilla_optimum(HOFFMANN, 5.76e23)
    assert 2e10 < n < 6e10 and 1e12 < d < 6e12


def _independent_inference_aware(law, target, inference_tokens):
    """SLSQP on (log N, log D) with the loss as an equality constraint: no shared code."""
    def cost(x):
        n, d = np.exp(x)
        return (6 * n * d + 2 * n * inference_tokens) / 1e20

    def on_target(x):
        n, d = np.exp(x)
        return law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"] - target

    best = None
    with np.errstate(all="ignore"):  # SLSQP may probe far outside the region of interest
        results = [optimize.minimize(cost, start, method="SLSQP", constraints=[{"type": "eq", "fun": on_target}],
                                     options={"ftol": 1e-14, "maxiter": 1000})
                   for start in ([np.log(1e9), np.log(1e11)], [np.log(1e8), np.log(1e12)], [np.log(1e10), np.log(1e10)])]
    for res in results:
        if res.success and abs(on_target(res.x)) < 1e-9 and (best is None or res.fun < best.fun):
            best = res
    assert best is not None
    return np.exp(best.x)


@pytest.mark.parametrize("target, inference_tokens", [(2.2, 0.0), (2.2, 1e12), (2.05, 2e13), (2.4, 5e13)])
def test_inference_aware_matches_constrained_optimisation(target, inference_tokens):
    n_ref, d_ref = _independent_inference_aware(EPOCH, target, inference_tokens)
    n, d, total = chinchilla.inference_aware_optimum(EPOCH, target, inference_tokens)
    assert n == pytest.approx(n_ref, rel=1e-3) and d == pytest.approx(d_ref, rel=1e-3)
    assert chinchilla.chinchilla_loss(EPOCH, n, d) == pytest.approx(target, rel=1e-10)
    assert total == pytest.approx(6 * n * d + 2 * n * inference_tokens, rel=1e-12)


def test_inference_demand_shrinks_the_model_and_lengthens_training():
    sizes = [chinchilla.inference_aware_optimum(EPOCH, 2.2, tokens) for tokens in (0.0, 1e12, 1e13, 1e14)]
    ns, ds = [s[0] for s in sizes], [s[1] for s in sizes]
    assert ns == sorted(ns, reverse=True) and ds == sorted(ds)
    # With no inference the cheapest model for a loss is the compute-optimal one for its budget.
    n0, d0, _ = sizes[0]
    n_chin, _ = chinchilla.chinchilla_optimum(EPOCH, 6 * n0 * d0)
    assert n0 == pytest.approx(n_chin, rel=1e-6)


def test_unreachable_target_and_size_cap_give_nan():
    n, d, total = chinchilla.inference_aware_optimum(EPOCH, EPOCH["E"] - 0.01, 1e12)
    assert np.isnan(n) and np.isnan(d) and np.isnan(total)
    n_min = chinchilla.smallest_size_for(EPOCH, 2.2)
    assert np.isnan(chinchilla.inference_aware_optimum(EPOCH, 2.2, 1e12, max_params=n_min / 2)[0])
    capped = chinchilla.inference_aware_optimum(EPOCH, 2.2, 0.0, max_params=n_min * 1.5)[0]
    assert capped == pytest.approx(n_min * 1.5, rel=1e-6)


def test_vectorised_over_draws_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    draws = {k: v * rng.uniform(0.97, 1.03, size=50) for k, v in EPOCH.items()}
    n, d, _ = chinchilla.inference_aware_optimum(draws, 2.3, 1e12)
    for i in (0, 17, 49):
        one = {k: v[i] for k, v in draws.items()}
        n_i, d_i, _ = chinchilla.inference_aware_optimum(one, 2.3, 1e12)
        assert n[i] == pytest.approx(n_i, rel=1e-9) and d[i] == pytest.approx(d_i, rel=1e-9)


def test_best_loss_at_budget_reduces_to_closed_forms():
    n, d, loss = chinchilla.best_loss_at_budget(EPOCH, 1e21)
    n_ref, d_ref = chinchilla.chinchilla_optimum(EPOCH, 1e21)
    assert n == pytest.approx(n_ref, rel=1e-6) and d == pytest.approx(d_ref, rel=1e-6)
    # Data worth m x vanilla is the same law with B / m^beta.
    m = 2.5
    n, d, loss = chinchilla.best_loss_at_budget(EPOCH, 1e21, multiplier=m)
    scaled = {**EPOCH, "B": EPOCH["B"] / m ** EPOCH["beta"]}
    assert n == pytest.approx(chinchilla.chinchilla_optimum(scaled, 1e21)[0], rel=1e-6)
    # Charging the teacher per token can only cost loss; numerically, against a bounded search.
    extra = 3e9
    n, d, loss = chinchilla.best_loss_at_budget(EPOCH, 1e21, m, extra)
    ref = optimize.minimize_scalar(lambda u: chinchilla.chinchilla_loss(EPOCH, np.exp(u), m * 1e21 / (6 * np.exp(u) + extra)),
                                   bounds=(np.log(1e6), np.log(1e12)), method="bounded", options={"xatol": 1e-10})
    assert n == pytest.approx(np.exp(ref.x), rel=1e-4) and d == pytest.approx(1e21 / (6 * n + extra))
    assert loss > chinchilla.best_loss_at_budget(EPOCH, 1e21, m)[2]

# --- On fitted laws: the Python API and `scaling recommend` -------------------------------------

@pytest.fixture(scope="module")
def law_file(tmp_path_factory):
    return make_law().save(tmp_path_factory.mktemp("law") / "law.json")


def test_law_recommend_is_the_closed_form_with_bootstrap_intervals(law_file):
    law = analysis.load_law(law_file)
    answer = law.recommend(train_flops=1e21)
    n, d = chinchilla.chinchilla_optimum(EPOCH, 1e21)
    assert answer["N"].estimate == pytest.approx(n, rel=1e-9) and answer["D"].estimate == pytest.approx(d, rel=1e-9)
    for name in ("N", "D", "predicted_loss"):
        low, high = answer[name].ci
        assert low < high and low <= answer[name].estimate * 1.05 and high >= answer[name].estimate / 1.05
    assert answer.warnings == ()


def test_cli_json_is_one_object_of_estimates_and_intervals(run_cli, law_file):
    proc = run_cli("recommend", law_file, "--train_flops=1e21", "--json", check=True)
    out = json.loads(proc.stdout)
    assert list(out) == ["N", "D", "predicted_loss", "status"] and out["status"] == {"status": "determined"}
    for name in ("N", "D", "predicted_loss"):
        value = out[name]
        assert set(value) == {"estimate", "ci"} and len(value["ci"]) == 2 and value["ci"][0] <= value["ci"][1]
    python = analysis.load_law(law_file).recommend(train_flops=1e21).to_dict()
    assert out == python  # `scaling recommend` and Law.recommend are the same answer


def test_cli_inference_aware_table_and_extrapolation_warning(run_cli, law_file):
    proc = run_cli("recommend", law_file, "--train_flops=2e23", "--inference_queries=1e9",
                   "--tokens_per_query=1000", check=True)
    # 7x past the largest budget fitted: warned about (tolerance 3), still determined (within 10x)
    assert "Inference-aware sizing" in proc.stdout and "total_flops" in proc.stdout
    assert "warning: C = " in proc.stderr and "outside the fitted range" in proc.stderr
    quiet = run_cli("recommend", law_file, "--train_flops=2e23", "--inference_queries=1e9",
                    "--tokens_per_query=1000", "--tolerance=1e6", "--json", check=True)
    assert quiet.stderr == "" and set(json.loads(quiet.stdout)) >= {"N", "D", "total_flops"}
    # Serving demand makes the model smaller than the compute-optimal one at the same loss.
    optimal = json.loads(run_cli("recommend", law_file, "--train_flops=2e23", "--json", check=True).stdout)
    assert json.loads(quiet.stdout)["N"]["estimate"] < optimal["N"]["estimate"]


def test_cli_refuses_a_corrupted_law_file(run_cli, law_file, tmp_path):
    data = json.loads(law_file.read_text())
    del data["parameters"]["beta"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    proc = run_cli("recommend", broken, "--train_flops=1e21")
    assert proc.returncode == 2 and str(broken) in proc.stderr and proc.stdout == ""
    truncated = tmp_path / "truncated.json"
    truncated.write_text(law_file.read_text()[:200])
    proc = run_cli("recommend", truncated, "--train_flops=1e21")
    assert proc.returncode == 2 and str(truncated) in proc.stderr


def test_questions_that_cannot_be_answered_say_why(run_cli, law_file):
    proc = run_cli("recommend", law_file, "--inference_queries=1e9")
    assert proc.returncode == 2 and "--tokens_per_query" in proc.stderr
    proc = run_cli("recommend", law_file, "--target_loss=1.0", "--inference_queries=1", "--tokens_per_query=1")
    assert proc.returncode == 2 and "out of reach" in proc.stderr


def augmentation_law(m=2.0):
    settings = {"arms": ["vanilla", "thinking"], "reference_arm": "vanilla"}
    return make_law({**EPOCH, "m_thinking": m}, form="augmentation", settings=settings)


def test_augmentation_pays_only_while_the_teacher_is_cheap():
    law = augmentation_law(2.0)
    free = recommend.augmentation_pays(law, 1e21, teacher_flops_per_token=0.0, thinking_fraction=0.5)
    # With a free teacher, data worth 2x is the Chinchilla law with B / 2^beta: a closed form.
    scaled = {**EPOCH, "B": EPOCH["B"] / 2.0 ** EPOCH["beta"]}
    n, d = chinchilla.chinchilla_optimum(scaled, 1e21)
    assert free["loss_thinking"].estimate == pytest.approx(chinchilla.chinchilla_loss(scaled, n, d), rel=1e-9)
    assert free["loss_gain_thinking"].estimate > 0 and free["loss_gain_thinking"].ci[0] > 0
    # A teacher costing 1e13 FLOPs per thinking token eats the budget: it no longer pays.
    costly = recommend.augmentation_pays(law, 1e21, teacher_flops_per_token=1e13, thinking_fraction=0.5)
    assert costly["loss_gain_thinking"].estimate < 0
    assert "does not pay for itself" in " ".join(costly.shown_notes)
    with pytest.raises(ValueError, match="--teacher_flops_per_token"):
        recommend.augmentation_pays(law, 1e21)


def joint_law(n_draws=40):
    loss_law = make_law()
    params = {"a": 0.9, "b": 0.05, "kappa": 4.0, "L0": 2.6, "gamma_T": 0.3, "gamma_k": 0.2}
    return make_law(params, form="joint_inference", target="accuracy", n_draws=n_draws, spread=0.01,
                    settings={"loss_law": loss_law.to_dict()},
                    ranges={"N": [1e8, 1e10], "D": [1e9, 2e11], "T": [0, 1024], "k": [1, 8]})


def test_joint_allocation_spends_the_budget_and_shrinks_with_demand():
    law = joint_law()
    total, tokens = 1e21, 256
    demands = (1e3, 1e9)
    answers = [recommend.joint_allocation(law, total, queries, tokens) for queries in demands]
    for queries, answer in zip(demands, answers):
        n, d, t, k = (answer[name].estimate for name in ("N", "D", "thinking_budget", "samples"))
        spent = 6 * n * d + queries * 2 * n * k * (tokens + t)
        assert spent == pytest.approx(total, rel=1e-9)
        predicted = law.predict(N=np.array([n]), D=np.array([d]), T=np.array([t]), k=np.array([k]))[0]
        assert answer["predicted_accuracy"].estimate == pytest.approx(predicted, rel=1e-12)
        assert answer["predicted_accuracy"].ci[0] <= predicted <= answer["predicted_accuracy"].ci[1]
    light, heavy = answers
    # Heavy serving demand buys less test-time compute per query and no larger a model.
    assert heavy["N"].estimate <= light["N"].estimate
    assert heavy["samples"].estimate * (tokens + heavy["thinking_budget"].estimate) < \
        light["samples"].estimate * (tokens + light["thinking_budget"].estimate)


def test_cli_joint_json_has_the_allocation_keys(run_cli, tmp_path):
    path = joint_law(n_draws=20).save(tmp_path / "joint.json")
    proc = run_cli("recommend", path, "--total_flops=1e21", "--inference_queries=1e5", "--tokens_per_query=256",
                   "--json", check=True)
    out = json.loads(proc.stdout)
    assert list(out) == ["N", "D", "thinking_budget", "samples", "predicted_accuracy", "status"]
    assert all(set(v) == {"estimate", "ci"} for k, v in out.items() if k != "status")
    assert out["status"]["status"] in ("determined", "not_determined")
    proc = run_cli("recommend", path, "--train_flops=1e21")
    assert proc.returncode == 2 and "--total_flops" in proc.stderr


def test_cli_warns_when_a_prediction_falls_below_the_floor(run_cli, law_file, tmp_path):
    predicted = analysis.load_law(law_file).recommend(train_flops=1e21)["predicted_loss"].estimate
    proc = run_cli("recommend", law_file, "--train_flops=1e21", f"--floor={predicted * 1.01}", check=True)
    assert "predicted_loss = " in proc.stderr and "below the true irreducible loss" in proc.stderr
    proc = run_cli("recommend", law_file, "--train_flops=1e21", f"--floor={predicted * 0.99}", check=True)
    assert "irreducible" not in proc.stderr
    floor = tmp_path / "floor.json"
    floor.write_text(json.dumps({"entropy_nats_per_token": predicted * 1.01}))
    proc = run_cli("recommend", law_file, "--train_flops=1e21", f"--floor={floor}", check=True)
    assert "below the true irreducible loss" in proc.stderr
    bad = run_cli("recommend", law_file, "--train_flops=1e21", "--floor=nofile")
    assert bad.returncode == 2 and "neither a number nor a file" in bad.stderr


def test_every_question_module_is_asked_and_every_form_names_real_questions():
    from pathlib import Path

    from analysis.forms import FORMS
    from analysis.questions import QUESTIONS
    folder = Path(analysis.__file__).parent / "questions"
    listed = {type(q).__module__.rpartition(".")[2] for q in QUESTIONS}
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "base", "thinking"}
    assert modules == listed, f"question modules missing from QUESTIONS: {sorted(modules - listed)}"
    names = {q.name for q in QUESTIONS}
    declared = {form.name: set(form.questions) - names for form in FORMS.values()}
    assert {form: unknown for form, unknown in declared.items() if unknown} == {}


def test_a_flag_the_chosen_question_does_not_read_is_refused_naming_it():
    law = make_law()
    with pytest.raises(ValueError, match="--arm does not apply"):
        law.recommend(train_flops=1e21, arm="vanilla")
    with pytest.raises(ValueError, match=r"--thinking_fraction=1.5: must be a share in \[0, 1\]"):
        law.recommend(train_flops=1e21, thinking_fraction=1.5)
    with pytest.raises(ValueError, match="no question reads"):
        law.recommend(train_flop=1e21)


def test_a_joint_allocation_whose_draws_answer_nothing_leaves_them_out_instead_of_crashing():
    """The three-seed demo's joint law (tests/data/laws_demo): some bootstrap draws predict no finite
    accuracy on the allocation grid; `scaling demo` crashed on them at its last line."""
    from analysis.report import joint_scenario

    law = analysis.load_law(Path(__file__).parent / "data" / "laws_demo" / "joint_inference_three_seeds.json")
    total, queries, tokens = joint_scenario(law)
    answer = law.recommend(total_flops=total, inference_queries=queries, tokens_per_query=tokens)
    assert not answer.status.determined and "rho_T" in answer.table()
