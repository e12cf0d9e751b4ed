"""`scaling train`: the entry point of a pretraining run and its command.

`train(TrainConfig())` trains one model on one task and yields one finished point per data budget
under the run's schedule (scaling/schedules.py: WSD cooldown branches, or one cosine line). The
settings are TrainConfig's fields, bound in gin as `train.<field>` (scaling/train_config.py).

Token counts are trained non-padding tokens (loss_weights summed), never steps. The run folder
(docs/schema.md) gets config.gin, model.json, identity.json, status.json, log.jsonl,
training_rows.jsonl, tensorboard/ and checkpoints/; rerunning a folder resumes it exactly
(docs/training.md).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from scaling import configuration, timings
from scaling.configuration import ConfigError, PlacedConfigError
from scaling.infer_config import InferConfig  # light: gin and the config's checks

if TYPE_CHECKING:
    from scaling.train_config import TrainConfig

# JAX, Flax, Orbax and TensorFlow (under the data pipeline) are imported where a run starts, not
# here: `scaling train --help` then answers at once (scaling.cli imports this module to build it).


def train(config: TrainConfig) -> dict:
    """Train `config.model` on `config.task` to each of its data budgets. Returns a summary;
    raises TrainingFailed (status.json says why)."""
    import jax

    from analysis.atomic import unwritable
    from scaling import partitioning, run_folder
    from scaling.checkpoints import discard_unfinished, finished_branches, write_failure, write_model_config
    from scaling.data.source import DataSource
    from scaling.run_folder import IDENTITY_FILE, RunFolder
    from scaling.train_config import NOT_IDENTITY, require
    from scaling.trainer import Interrupted, Trainer, TrainingFailed
    run_dir = config.run_dir()
    config.check_types()
    if run_dir.exists() and not run_dir.is_dir():
        raise PlacedConfigError(f"--gin.MODEL_DIR={run_dir} is a file, not a run folder; give a folder path")
    identity = run_folder.identity(config.settings(), NOT_IDENTITY)
    run_folder.check_same_run(run_dir, identity)
    problem = unwritable(run_dir / "status.json", "--gin.MODEL_DIR")  # a read-only or full disk: before the work
    if problem:
        raise TrainingFailed(problem)
    run_dir.mkdir(parents=True, exist_ok=True)
    budgets = config.budgets()
    folder = RunFolder(run_dir, budgets[-1] if budgets else 0)
    trainer = None
    try:
        run = config.check()
        mesh = partitioning.make_mesh(config.mesh_data, config.mesh_fsdp)
        require(config.batch_size % mesh.size == 0, "batch_size",
               f"{config.batch_size} does not split over {mesh.size} devices")

        if folder.read_status().get("state") == "finished" and \
                {r["branch"] for r in finished_branches(run_dir)} >= {p.name for _, p in run.plan}:
            print(f"{run_dir}: already finished; nothing to do")
            return {"run_dir": str(run_dir), "finished": finished_branches(run_dir), "skipped": True}

        if folder.writes:
            configuration.write_config(run_dir)
            write_model_config(run_dir, config.model)
            if not (run_dir / IDENTITY_FILE).is_file():
                run_folder.write_identity(run_dir, identity)
            folder.start_wandb(config.wandb, config.wandb_project, identity)
        data = DataSource.from_config(config, jax.process_index(), jax.process_count())
        trainer = Trainer(config, run, run_dir, folder, mesh, data, timings.PROCESS)
        try:
            trainer.run(run.plan)
        finally:
            trainer.close()
        folder.status("finished", "", trainer.counters.step, trainer.counters.tokens)
        return {"run_dir": str(run_dir), "finished": finished_branches(run_dir), "skipped": False}
    except Interrupted as e:
        folder.status("interrupted", str(e), trainer.counters.step, trainer.counters.tokens)
        raise
    except KeyboardInterrupt:  # before the loop, or a second Ctrl-C: the newest checkpoint stays the resume point
        folder.status("interrupted", "interrupted (Ctrl-C) before a checkpoint of this moment; rerun to resume "
                                     "from the newest checkpoint")
        raise
    except TrainingFailed as e:
        folder.status("failed", str(e))
        raise
    except ConfigError as e:
        folder.status("failed", f"configuration error: {e}")
        raise
    except Exception as e:
        refused = write_failure(e)
        if refused is None:
            folder.status("failed", f"{type(e).__name__}: {e}")
            raise
        step = trainer.counters.step if trainer else 0
        reason = (f"{refused}; stopped at step {step} with every complete checkpoint intact: "
                  f"free space (or make the folder writable) and rerun the same command to resume")
        discard_unfinished(run_dir)  # a failed save's partial files: the space status.json needs
        try:
            folder.status("failed", reason, step, trainer.counters.tokens if trainer else 0)
        except OSError as status_error:
            reason += f" ({run_dir / 'status.json'} not updated: {status_error.strerror})"
        raise TrainingFailed(reason) from None
    finally:
        folder.close()


# ----------------------------------------------------------------------------------------------
# The `train` verb


def configure_train(parser):
    parser.add_argument("--log_level", default="INFO", help="Python logging level (default INFO)")
    parser.add_argument("--infer_gin_file", default=None,
                        help="after training, evaluate finished branches with this inference config, in this "
                             "process (what a sweep's run does; same rows as `scaling infer` per branch)")
    parser.add_argument("--infer_branches", default="all",
                        help="with --infer_gin_file: 'all' finished branches, or comma-separated labels (D=1.0e6,...)")


def infer_branches(run_dir: Path, gin_file: str, branches: str) -> None:
    """`scaling infer` on each branch, in this process: compiled decoders are shared across
    branches, and rows already in the run's table are skipped as always."""
    from scaling import infer  # imported only here: a run that only trains needs none of the decoding stack
    from scaling.checkpoints import finished_branches
    from scaling.trainer import TrainingFailed

    finished = [r["branch"] for r in finished_branches(run_dir)]
    wanted = finished if branches == "all" else [b for b in branches.split(",") if b]
    missing = [b for b in wanted if b not in finished]
    if missing:
        raise TrainingFailed(f"--infer_branches: {', '.join(missing)} not finished; finished: {', '.join(finished)}")
    gin_args = configuration.GinArgs((gin_file,), (f"MODEL_DIR = {str(run_dir)!r}",))
    for branch in wanted:
        configuration.parse(gin_args)
        with configuration.explained(gin_args):
            infer.infer(InferConfig(), branch=branch)


def run_train(args) -> int:
    # the run's modules, imported before the gin files are parsed: their configurables (train, the
    # data pipeline's tasks and teachers) must be known to gin by then
    from scaling import partitioning
    from scaling.train_config import TrainConfig
    from scaling.trainer import Interrupted, Preempted, TrainingFailed
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    partitioning.initialize_distributed()
    if not args.gin.files:
        raise ConfigError("give a model and a run file: --gin_file=gin/models/<preset>.gin "
                          "--gin_file=gin/runs/pretrain.gin --gin.MODEL_DIR=<run folder>")
    configuration.parse(args.gin)
    try:
        with configuration.explained(args.gin):
            summary = train(TrainConfig())
        if args.infer_gin_file:
            infer_branches(Path(summary["run_dir"]), args.infer_gin_file, args.infer_branches)
        timings.PROCESS.record(summary["run_dir"], "train" + (" + infer" if args.infer_gin_file else ""))
    except TrainingFailed as e:
        print(f"scaling train: {e}", file=sys.stderr)
        return 130 if isinstance(e, Interrupted) else 143 if isinstance(e, Preempted) else 1
    except ConfigError:
        raise
    except Exception as e:
        from scaling.checkpoints import write_failure  # loaded with the run
        refused = write_failure(e)
        if refused is None:
            traceback.print_exc()
        else:
            print(f"scaling train: {refused}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
