import json

import pytest

from scaling import accounting
from scaling.presets import load_model_config, presets


def test_every_preset_is_described(run_cli):
    proc = run_cli("describe", "--all", check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["preset"] for r in rows] == [p.stem for p in presets()]
    params = [r["params"] for r in rows]
    assert params == sorted(params) and params[0] < 60_000 and 0.8e9 < params[-1] < 1.2e9
    for row in rows:
        assert row["flops_per_token"]["exact_causal"] > 0 and row["flops_per_token"]["six_n"] == 6 * row["params"]


def test_presets_change_only_dimensions():
    dimensions = {"d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "seq_len"}
    for preset in presets():
        lines = [l for l in preset.read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert lines[0] == "include 'models/base.gin'", preset
        assert {l.split("=")[0].strip().split(".")[1] for l in lines[1:]} <= dimensions, preset


def test_overrides_apply_after_files(run_cli):
    proc = run_cli("describe", "--gin_file=gin/models/p1m.gin", "--gin.ModelConfig.n_kv_heads=1",
                   "--context", "64", check=True)
    out = json.loads(proc.stdout)
    expected = load_model_config("gin/models/p1m.gin", ("ModelConfig.n_kv_heads = 1",))
    assert out["params"] == accounting.param_count(expected).total
    assert out["config"]["n_kv_heads"] == 1 and out["inference_flops_per_token"]["context"] == 64


@pytest.mark.parametrize("flag, message", [
    ("--gin.ModelConfig.d_modle=3", "d_modle"),
    ("--gin.ModelConfig.n_kv_heads=3", "command line --gin.ModelConfig.n_kv_heads=3"),
    ("--gin.ModelConfig.d_model='wide'", "ModelConfig.d_model must be an integer"),
    ("--gin.Nothing.x=1", "Nothing"),
])
def test_bad_bindings_fail_naming_the_binding(run_cli, flag, message):
    proc = run_cli("describe", "--gin_file=gin/models/p1m.gin", flag)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_bad_value_in_a_file_names_the_file(run_cli, tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("include 'models/p1m.gin'\nModelConfig.n_heads = 5\n")
    proc = run_cli("describe", f"--gin_file={bad}")
    assert proc.returncode == 2 and f"{bad}:2" in proc.stderr, proc.stderr


def test_missing_file(run_cli):
    proc = run_cli("describe", "--gin_file=gin/models/nope.gin")
    assert proc.returncode == 2 and "nope.gin: no such file" in proc.stderr
