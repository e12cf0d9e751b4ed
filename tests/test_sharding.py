"""Data-parallel and FSDP meshes give the single-device losses (4 simulated CPU devices)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from scaling import partitioning
from scaling.configuration import ConfigError

# Trains three steps on one seeded random-token batch (so the loss falls) under each mesh and prints the losses, plus
# the mesh placement of the embedding and of its Adam moment.
SCRIPT = r"""
import json, sys
import numpy as np, jax
from scaling import optimizer, partitioning, step
from scaling.model import ModelConfig

config = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, seq_len=32)
tx = optimizer.make_optimizer(0.9, 0.95, 0.1, 1.0)
rng = np.random.default_rng(0)
batches = []
for _ in range(1):
    tokens = rng.integers(0, config.vocab_size, (8, config.seq_len + 1)).astype(np.int32)
    segments = np.where(np.arange(config.seq_len) < 20, 1, 2).astype(np.int32)[None].repeat(8, 0)
    positions = np.where(segments == 1, np.arange(config.seq_len), np.arange(config.seq_len) - 20).astype(np.int32)
    batches.append({"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "positions": positions,
                    "segment_ids": segments, "loss_weights": (rng.random((8, config.seq_len)) > 0.1).astype(np.float32)})
out = {}
for data, fsdp in json.loads(sys.argv[1]):
    mesh = partitioning.make_mesh(data, fsdp)
    fns = step.compile_functions(config, tx, mesh, seed=0)
    params, opt_state = fns.init()
    losses = []
    for b in batches * 3:
        params, opt_state, loss = fns.step(params, opt_state, partitioning.global_batch(b, mesh), np.float32(1e-2))
        losses.append(float(loss))
    out[f"{data}x{fsdp}"] = {"losses": losses, "embedding": list(params["embedding"].sharding.spec),
                             "mu": list(opt_state[1].mu["embedding"].sharding.spec),
                             "shards": len(params["embedding"].addressable_shards)}
print(json.dumps(out))
"""


def _run(devices: int, meshes):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(meshes)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_data_parallel_and_fsdp_match_one_device():
    single = _run(1, [[1, 1]])["1x1"]["losses"]
    many = _run(4, [[4, 1], [1, 4], [2, 2]])
    for name, result in many.items():
        np.testing.assert_allclose(result["losses"], single, rtol=2e-5, err_msg=name)
    assert single[2] < single[0]  # it trains
    # fsdp shards the embed dimension of parameters and optimizer state; data parallel replicates
    assert many["1x4"]["embedding"] == [None, "fsdp"]
    assert many["1x4"]["mu"] == [None, "fsdp"]
    assert many["4x1"]["embedding"] == [None, "fsdp"] and many["4x1"]["shards"] == 4


def test_mesh_must_cover_the_devices():
    with pytest.raises(ConfigError, match="mesh_data x train.mesh_fsdp"):
        partitioning.make_mesh(data=3, fsdp=5)


@pytest.mark.slow
def test_a_run_on_simulated_devices_records_its_mesh(run_cli, tmp_path):
    """docs/gpu.md's recipe: XLA's host-platform flag makes 2 CPU devices; the run folder says
    what the run ran on."""
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--gin_file=gin/models/p50k.gin", "--gin_file=gin/runs/pretrain.gin",
                   "--gin.ModelConfig.seq_len=32", "--gin.train.batch_size=4", "--gin.train.data_budgets=[1000]",
                   "--gin.train.eval_batches=1", "--gin.train.mesh_fsdp=2", f"--gin.MODEL_DIR={run_dir}",
                   env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in (run_dir / "devices.jsonl").read_text().splitlines()]
    assert line["device_count"] == 2 and line["platform"] == "cpu"
    assert line["mesh"] == {"data": 1, "fsdp": 2} and "device_count=2" in line["xla_flags"]
