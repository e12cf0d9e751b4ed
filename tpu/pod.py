#!/usr/bin/env python3
"""Cloud TPU pods for this project: queued resources, install, multi-host training, Ray sweeps.

    python tpu/pod.py create  --project P --zone Z --name N --accelerator_type v4-32 [--spot]
    python tpu/pod.py install --project P --zone Z --name N [--nfs 10.0.0.2:/share]
    python tpu/pod.py train   --project P --zone Z --name N -- --gin_file=gin/models/p1b.gin ...
    python tpu/pod.py ray     --project P --zone Z --name N
    python tpu/pod.py sweep   --project P --zone Z --name N --grid grids/tpt_isoflop.gin --tpus_per_run 4
    python tpu/pod.py delete  --project P --zone Z --name N

Every subcommand takes --dry_run: it prints the commands (one per line, shell-quoted) and runs
nothing. A command's output that a later one needs (the Ray head's address) appears as $HEAD_IP.
Only the standard library is used, so this runs from any machine with gcloud.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

# Software image per TPU generation (Cloud TPU runtime versions for JAX on TPU VMs).
RUNTIME_VERSIONS = {"v4": "tpu-ubuntu2204-base", "v5litepod": "v2-alpha-tpuv5-lite", "v5p": "v2-alpha-tpuv5",
                    "v6e": "v2-alpha-tpuv6e"}
WORKER_NUMBER = ("curl -s -H 'Metadata-Flavor: Google' "
                 "http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number")
PROJECT_DIR = "~/scaling"
RAY_PORT = 6379


def _where(args) -> list[str]:
    return [f"--zone={args.zone}", f"--project={args.project}"]


def _ssh(args, worker: str, command: str) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, f"--worker={worker}", *_where(args),
            f"--command={command}"]


def create(args) -> list[list[str]]:
    generation = args.accelerator_type.split("-")[0]
    runtime = args.runtime_version or RUNTIME_VERSIONS.get(generation)
    if runtime is None:
        raise SystemExit(f"--accelerator_type={args.accelerator_type}: unknown generation {generation!r}; "
                         f"give --runtime_version (known: {', '.join(RUNTIME_VERSIONS)})")
    command = ["gcloud", "compute", "tpus", "queued-resources", "create", f"{args.name}-qr",
               f"--node-id={args.name}", f"--accelerator-type={args.accelerator_type}",
               f"--runtime-version={runtime}", *_where(args)]
    if args.spot:
        command.append("--spot")
    if args.reserved:
        command.append("--reserved")
    if args.valid_until_duration:
        command.append(f"--valid-until-duration={args.valid_until_duration}")
    return [command, _describe_state(args)]


def _describe_state(args) -> list[str]:
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", f"{args.name}-qr", *_where(args),
            "--format=value(state.state)"]


def install(args) -> list[list[str]]:
    """Ship the working tree (git archive of HEAD) to every host and install it in a venv there."""
    tarball = "/tmp/scaling-src.tar.gz"
    setup = [f"mkdir -p {PROJECT_DIR}", f"tar xzf ~/scaling-src.tar.gz -C {PROJECT_DIR}", f"cd {PROJECT_DIR}",
             "python3 -m venv .venv", ".venv/bin/pip install -q -U pip",
             ".venv/bin/pip install -q -e . 'jax[tpu]'",
             ".venv/bin/python -c 'import jax; print(jax.process_index(), jax.device_count())'"]
    if args.nfs:
        setup = ["sudo apt-get -qq install -y nfs-common", f"sudo mkdir -p {args.shared_dir}",
                 f"(mountpoint -q {args.shared_dir} || sudo mount -t nfs {args.nfs} {args.shared_dir})"] + setup
    return [["git", "archive", "--format=tar.gz", f"--output={tarball}", "HEAD"],
            ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball, f"{args.name}:~/scaling-src.tar.gz",
             "--worker=all", *_where(args)],
            _ssh(args, "all", " && ".join(setup))]


def train(args) -> list[list[str]]:
    """One `scaling train` on every host at once: multi-host JAX over the whole slice."""
    if not args.rest:
        raise SystemExit("give the train arguments after --, e.g. -- --gin_file=gin/models/p1b.gin "
                         "--gin_file=gin/runs/pretrain.gin --gin.MODEL_DIR=/mnt/shared/runs/p1b")
    return [_ssh(args, "all", f"cd {PROJECT_DIR} && .venv/bin/scaling train {shlex.join(args.rest)}")]


def ray(args) -> list[list[str]]:
    """A Ray cluster over the slice's hosts: the head on worker 0, every other host joins it."""
    head_ip = ["gcloud", "compute", "tpus", "tpu-vm", "describe", args.name, *_where(args),
               "--format=value(networkEndpoints[0].ipAddress)"]
    join = (f"if [ \"$({WORKER_NUMBER})\" != 0 ]; then cd {PROJECT_DIR} && "
            f".venv/bin/ray start --address=$HEAD_IP:{RAY_PORT}; fi")
    return [head_ip,
            _ssh(args, "0", f"cd {PROJECT_DIR} && .venv/bin/ray start --head --port={RAY_PORT}"),
            _ssh(args, "all", join)]


def sweep(args) -> list[list[str]]:
    """`scaling sweep` on the head, one Ray task per run; the sweep folder on shared storage. The
    grid is this machine's file, copied to the head (the install ships only committed files, so
    an edited or out-of-repo grid would otherwise be missing or stale there). The driver runs
    detached (nohup), so a dropped ssh session does not stop it; its output goes to
    <sweep_dir>.log, and `scaling status <sweep_dir>` shows progress. Rerunning resumes."""
    local = Path(args.grid)
    if not local.is_file():
        raise SystemExit(f"--grid {args.grid}: no such file on this machine (the grid is read here and copied "
                         "to the pod's head)")
    name = local.name.removesuffix(".gin")
    remote = f"~/grid-{name}.gin"
    sweep_dir = f"{args.shared_dir}/sweeps/{name}"
    command = (f"cd {PROJECT_DIR} && mkdir -p {args.shared_dir}/sweeps && nohup .venv/bin/scaling sweep "
               f"{remote} --executor=ray --ray_address=auto --tpus_per_run={args.tpus_per_run} "
               f"--cpus_per_run=1 --sweep_dir={sweep_dir} > {sweep_dir}.log 2>&1 &")
    return [["gcloud", "compute", "tpus", "tpu-vm", "scp", str(local), f"{args.name}:{remote}", "--worker=0",
             *_where(args)],
            _ssh(args, "0", command)]


def delete(args) -> list[list[str]]:
    return [["gcloud", "compute", "tpus", "queued-resources", "delete", f"{args.name}-qr", *_where(args),
             "--force", "--quiet"]]


COMMANDS = {"create": create, "install": install, "train": train, "ray": ray, "sweep": sweep, "delete": delete}


def parse(argv: list[str]) -> argparse.Namespace:
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="tpu/pod.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--project", required=True)
    parser.add_argument("--zone", required=True)
    parser.add_argument("--name", required=True, help="TPU VM (node) name; the queued resource is <name>-qr")
    parser.add_argument("--accelerator_type", default="v4-8", help="e.g. v4-32, v5litepod-16, v5p-64")
    parser.add_argument("--runtime_version", default=None, help="default: by generation, see RUNTIME_VERSIONS")
    parser.add_argument("--spot", action="store_true", help="create: Spot capacity (preemptible)")
    parser.add_argument("--reserved", action="store_true", help="create: use the project's reservation")
    parser.add_argument("--valid_until_duration", default=None, help="create: give up after e.g. 6h")
    parser.add_argument("--nfs", default=None, help="install: mount this NFS export (e.g. Filestore IP:/share)")
    parser.add_argument("--shared_dir", default="/mnt/shared", help="where the shared storage is mounted")
    parser.add_argument("--grid", default="grids/tpt_isoflop.gin", help="sweep: the grid file")
    parser.add_argument("--tpus_per_run", type=int, default=4, help="sweep: TPU chips per run (4 = one v4 host)")
    parser.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    args.rest = rest
    return args


def run(commands: list[list[str]], args) -> int:
    head_ip = None
    for command in commands:
        if head_ip is not None:
            command = [part.replace("$HEAD_IP", head_ip) for part in command]
        print("+ " + shlex.join(command), flush=True)
        if command[-1] == "--format=value(networkEndpoints[0].ipAddress)":
            head_ip = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()
        elif command[-1] == "--format=value(state.state)":
            while (state := subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()) != "ACTIVE":
                if state in ("FAILED", "SUSPENDED"):
                    print(f"queued resource {args.name}-qr is {state}", file=sys.stderr)
                    return 1
                print(f"  {state or 'unknown'}; waiting", flush=True)
                time.sleep(30)
        else:
            subprocess.run(command, check=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    commands = COMMANDS[args.command](args)
    if args.dry_run:
        for command in commands:
            print(shlex.join(command))
        return 0
    return run(commands, args)


if __name__ == "__main__":
    sys.exit(main())
