"""tpu/pod.py through its dry run: the gcloud commands it would run, exactly."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WHERE = ["--project", "proj", "--zone", "us-central2-b", "--name", "pod1"]


def dry_run(command, *args) -> list[list[str]]:
    proc = subprocess.run([sys.executable, str(REPO / "tpu" / "pod.py"), command, "--dry_run", *args],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines()]


def test_create_requests_a_queued_resource_and_waits_for_it_to_be_active():
    create, wait = dry_run("create", *WHERE, "--accelerator_type", "v5litepod-16", "--spot")
    assert create == ["gcloud", "compute", "tpus", "queued-resources", "create", "pod1-qr", "--node-id=pod1",
                      "--accelerator-type=v5litepod-16", "--runtime-version=v2-alpha-tpuv5-lite",
                      "--zone=us-central2-b", "--project=proj", "--spot"]
    assert wait[:6] == ["gcloud", "compute", "tpus", "queued-resources", "describe", "pod1-qr"]
    assert wait[-1] == "--format=value(state.state)"


def test_unknown_generation_needs_a_runtime_version():
    proc = subprocess.run([sys.executable, str(REPO / "tpu" / "pod.py"), "create", *WHERE, "--accelerator_type",
                           "v9-8", "--dry_run"], capture_output=True, text=True)
    assert proc.returncode != 0 and "give --runtime_version" in proc.stderr


def test_install_ships_the_tree_to_every_host_and_installs_it_with_tpu_jax():
    archive, scp, ssh = dry_run("install", *WHERE, "--nfs", "10.1.2.3:/share")
    assert archive[:2] == ["git", "archive"] and "HEAD" in archive
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod1"] and "--worker=all" in ssh
    remote = ssh[-1].removeprefix("--command=")
    steps = remote.split(" && ")
    assert "sudo mount -t nfs 10.1.2.3:/share /mnt/shared" in remote
    assert ".venv/bin/pip install -q -e . 'jax[tpu]'" in steps


def test_train_runs_scaling_train_on_all_hosts_with_the_given_arguments():
    (ssh,) = dry_run("train", *WHERE, "--", "--gin_file=gin/models/p1b.gin", "--gin.MODEL_DIR=/mnt/shared/runs/a b")
    assert "--worker=all" in ssh
    remote = ssh[-1].removeprefix("--command=")
    assert shlex.split(remote.split(" && ", 1)[1]) == [
        ".venv/bin/scaling", "train", "--gin_file=gin/models/p1b.gin", "--gin.MODEL_DIR=/mnt/shared/runs/a b"]


def test_ray_starts_the_head_on_worker_0_and_joins_the_others_to_it():
    describe, head, join = dry_run("ray", *WHERE)
    assert describe[-1] == "--format=value(networkEndpoints[0].ipAddress)"
    assert "--worker=0" in head and head[-1].endswith("ray start --head --port=6379")
    assert "--worker=all" in join and "ray start --address=$HEAD_IP:6379" in join[-1]
    assert "agent-worker-number" in join[-1] and "!= 0" in join[-1]


def test_sweep_runs_the_driver_on_the_head_against_the_ray_cluster():
    scp, ssh = dry_run("sweep", *WHERE, "--grid", "grids/arch.gin", "--tpus_per_run", "8")
    assert scp[4:7] == ["scp", "grids/arch.gin", "pod1:~/grid-arch.gin"] and "--worker=0" in scp
    assert "--worker=0" in ssh
    remote = ssh[-1]
    for part in ("scaling sweep ~/grid-arch.gin", "--executor=ray", "--ray_address=auto", "--tpus_per_run=8",
                 "--sweep_dir=/mnt/shared/sweeps/arch", "nohup"):
        assert part in remote


def test_sweep_ships_a_grid_from_outside_the_repository_and_refuses_a_missing_one(tmp_path):
    """The install ships `git archive HEAD`: a grid of the user's own is copied to the head."""
    mine = tmp_path / "my_grid.gin"
    mine.write_text("Grid.name = 'mine'\n")
    scp, ssh = dry_run("sweep", *WHERE, "--grid", str(mine))
    assert scp[5:7] == [str(mine), "pod1:~/grid-my_grid.gin"]
    assert "scaling sweep ~/grid-my_grid.gin" in ssh[-1]
    proc = subprocess.run([sys.executable, str(REPO / "tpu" / "pod.py"), "sweep", *WHERE, "--grid",
                           str(tmp_path / "absent.gin"), "--dry_run"], capture_output=True, text=True)
    assert proc.returncode == 1 and "absent.gin: no such file on this machine" in proc.stderr


def test_delete_removes_the_queued_resource():
    (delete,) = dry_run("delete", *WHERE)
    assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "pod1-qr"]
    assert "--quiet" in delete


@pytest.mark.parametrize("command", ["train"])
def test_train_without_arguments_is_refused(command):
    proc = subprocess.run([sys.executable, str(REPO / "tpu" / "pod.py"), command, *WHERE, "--dry_run"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "after --" in proc.stderr
