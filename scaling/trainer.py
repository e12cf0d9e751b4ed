"""The training loop: the phases of a run's plan (trunk, cooldown branches, or one cosine line),
each trained to its token count with logging, evaluation and checkpoints on the way, and resumed
exactly from the newest checkpoint. `train()` (scaling/train.py) builds a Trainer from a checked
TrainConfig and runs it."""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from scaling import accounting, partitioning
from scaling.checkpoints import TRUNK, RunCheckpoints, finished_branches
from scaling.data.source import DataSource
from scaling.mfu import device_peak_flops
from scaling.optimizer import make_optimizer
from scaling.prefetch import Prefetcher
from scaling.run_folder import RunFolder
from scaling.schedules import Phase
from scaling.step import EVAL_KEYS, compile_functions, eval_metrics, summed
from scaling.timings import ProcessTimings
from scaling.train_config import CheckedRun, TrainConfig

log = logging.getLogger(__name__)


class TrainingFailed(RuntimeError):
    """The run stopped without finishing; the reason goes to status.json."""


class Preempted(TrainingFailed):
    """SIGTERM arrived; a checkpoint was saved and a rerun resumes."""


class Interrupted(Preempted):
    """Ctrl-C (SIGINT) arrived; a checkpoint was saved and a rerun resumes."""


@dataclasses.dataclass
class Counters:
    """Where a line of training stands; saved in every checkpoint's meta."""

    step: int = 0
    batch_index: int = 0  # batches consumed from the deterministic stream (the resume position)
    tokens: int = 0
    tokens_raw: int = 0
    tokens_thinking: int = 0

    def add_batch(self, counts) -> None:
        """One step on a batch of [tokens, tokens_raw, tokens_thinking] (prefetch.batch_counts)."""
        self.step += 1
        self.batch_index += 1
        self.tokens += int(counts[0])
        self.tokens_raw += int(counts[1])
        self.tokens_thinking += int(counts[2])


class Trainer:
    """The loop over a run's phases; holds the device state, the counters and the outputs.

    What it reads and where its step seconds go are arguments: `data` (the run's batches,
    DataSource.from_config) and `timings` (this process's ProcessTimings)."""

    def __init__(self, config: TrainConfig, run: CheckedRun, run_dir: Path, folder: RunFolder, mesh,
                 data: DataSource, timings: ProcessTimings):
        model = config.model
        self.data, self.timings = data, timings
        self.run_dir, self.folder, self.model = run_dir, folder, model
        self.lr, self.schedule, self.mesh = run.learning_rate, run.schedule, mesh
        self.eval_every_tokens = config.eval_every_tokens
        self.log_every, self.checkpoint_every = config.log_every_steps, config.checkpoint_every_steps
        self.checkpoints = RunCheckpoints(run_dir, keep=config.keep_checkpoints)
        tx = make_optimizer(config.beta1, config.beta2, config.weight_decay, config.grad_clip)
        self.compiled = compile_functions(model, tx, mesh, config.seed)
        self.flops_per_token = accounting.training_flops_per_token(model)
        self.params_count = accounting.param_count(model)
        self.peak_flops, self.peak_source = device_peak_flops(model.compute_dtype)
        self.peak_flops *= jax.device_count()
        self.teacher_flops_per_thinking_token = data.teacher_flops_per_thinking_token()
        self.eval_batch_count = config.eval_batches
        self._eval_data = None
        self.epoch_tokens = data.epoch_tokens()  # math.inf: a source that never repeats
        self.row_base = {
            "run_id": run_dir.name, "sweep": config.sweep, "arm": config.arm, "seed": config.seed,
            "d_model": model.d_model, "n_layers": model.n_layers, "n_heads": model.n_heads,
            "n_kv_heads": model.kv_heads, "d_ff": model.d_ff, "vocab_size": model.vocab_size,
            "seq_len": model.seq_len, "mlp_attn_ratio": accounting.mlp_attn_ratio(model),
            "params": self.params_count.total, "params_non_embedding": self.params_count.non_embedding,
            "flops_per_token": self.flops_per_token}
        self.counters = Counters()
        self.params = self.opt_state = None
        self.pending_losses: list = []
        self.stop_requested = None  # the signal that asked the loop to checkpoint and stop
        in_main_thread = threading.current_thread() is threading.main_thread()
        self._previous_handlers = {sig: signal.signal(sig, self._on_stop_signal)
                                   for sig in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
        log.info("peak %.3g FLOP/s (%s); %d devices, mesh %s", self.peak_flops, self.peak_source,
                 jax.device_count(), dict(mesh.shape))
        folder.record_devices(mesh)

    def _on_stop_signal(self, signum, frame):
        """The loop checkpoints and stops at the next step; a second Ctrl-C stops at once."""
        if signum == signal.SIGINT and self.stop_requested == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop_requested = signum

    def close(self):
        try:
            self.checkpoints.wait()  # raises a save's failure
            self.checkpoints.close()
        finally:
            self.data.close()
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)

    # -- state ----------------------------------------------------------------------------------

    def _load(self, name: str) -> bool:
        restored = self.checkpoints.restore_latest(name, self.compiled.abstract_params, self.compiled.abstract_opt_state)
        if restored is None:
            return False
        self.params, self.opt_state, meta = restored
        self.loaded_phase_start = int(meta["phase_start_tokens"])
        self.counters = Counters(**{f.name: int(meta[f.name]) for f in dataclasses.fields(Counters)})
        return True

    def _init(self):
        self.params, self.opt_state = self.compiled.init()
        self.counters = Counters()

    def _losses_so_far(self) -> list[float]:
        """Fetch the losses dispatched since the last fetch; stop on a non-finite one."""
        losses = [float(x) for x in jax.device_get(self.pending_losses)]
        first_step = self.counters.step - len(losses) + 1
        self.pending_losses = []
        for i, value in enumerate(losses):
            if not math.isfinite(value):
                raise TrainingFailed(f"non-finite loss ({value}) at step {first_step + i}; "
                                     f"the last good checkpoint is kept")
        return losses

    def _save(self, name: str, phase_start_tokens: int):
        self._losses_so_far()  # never checkpoint a state that produced a non-finite loss
        meta = {**dataclasses.asdict(self.counters), "phase_start_tokens": int(phase_start_tokens)}
        if self.counters.step in self.checkpoints.manager(name).all_steps():
            return  # a resume that starts exactly at a saved step
        self.checkpoints.save(name, self.counters.step, self.params, self.opt_state, meta)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, plan):
        finished = {r["branch"] for r in finished_branches(self.run_dir)}
        for trunk_phase, final_phase in plan:
            if final_phase.name in finished:
                continue
            if self.checkpoints.has_checkpoint(final_phase.name) and self._load(final_phase.name):
                fork_tokens = self.loaded_phase_start
                self._prune_rows(final_phase.name)
            else:
                if trunk_phase is None or not self._load(TRUNK):
                    self._init()
                self._prune_rows(TRUNK if trunk_phase else final_phase.name)
                if trunk_phase is not None:
                    self._train(trunk_phase, start_tokens=0)
                    self._save(TRUNK, 0)
                fork_tokens = self.counters.tokens
            self._train(final_phase, start_tokens=fork_tokens)
            self._save(final_phase.name, fork_tokens)
            self._evaluate(final_phase, is_final=True)
            self.checkpoints.mark_finished(final_phase.name, self.counters.step, self.counters.tokens)
            finished.add(final_phase.name)

    def _prune_rows(self, current: str):
        """Keep rows of finished branches, and of the current line up to the restored step."""
        finished = {r["branch"] for r in finished_branches(self.run_dir)}
        step = self.counters.step

        def keep(row):
            branch = row.get("branch", "")
            name = branch or TRUNK
            if branch in finished:
                return True
            if name == current:  # a final row of an unfinished branch is written again
                return row["step"] <= step and not row.get("is_final", False)
            if name == TRUNK:
                return row["step"] <= step
            return False

        self.folder.keep_rows(keep)

    def _train(self, phase: Phase, start_tokens: int):
        """Train until phase.end_tokens, logging, evaluating and checkpointing on the way."""
        c = self.counters
        if c.tokens >= phase.end_tokens:
            return
        prefetch = Prefetcher(self.data.train_batches(start_batch=c.batch_index), self.mesh)
        periodic_eval = self.eval_every_tokens > 0 and (phase.name == TRUNK or self.schedule.periodic_eval)
        next_eval = (c.tokens // self.eval_every_tokens + 1) * self.eval_every_tokens if periodic_eval else None
        progress = _progress_bar(phase, c.tokens)
        window_start, window_tokens = time.perf_counter(), 0
        try:
            while c.tokens < phase.end_tokens:
                if self.stop_requested:
                    self._save(phase.name, start_tokens)
                    self.checkpoints.wait()
                    if self.stop_requested == signal.SIGINT:
                        raise Interrupted(f"interrupted (Ctrl-C) at step {c.step}; checkpoint saved; rerun to resume")
                    raise Preempted(f"preempted by SIGTERM at step {c.step}; checkpoint saved; rerun to resume")
                counts, batch = prefetch.next()
                if jax.process_count() > 1:
                    counts = np.asarray(multihost_utils.process_allgather(counts)).reshape(-1, 3).sum(0)
                lr = self.schedule.learning_rate(self.lr, phase, c.tokens, start_tokens)
                self.params, self.opt_state, loss = self.compiled.step(self.params, self.opt_state, batch,
                                                                       np.float32(lr))
                self.pending_losses.append(loss)
                if self.timings.first_step_at is None:  # start-up (compilation included) ends here
                    jax.block_until_ready(loss)
                    self.timings.first_step_done()
                    window_start = time.perf_counter()
                c.add_batch(counts)
                window_tokens += int(counts[0])
                progress.update(int(counts[0]))
                if c.step % self.log_every == 0 or c.tokens >= phase.end_tokens:
                    losses = self._losses_so_far()
                    elapsed = time.perf_counter() - window_start
                    self.timings.train_step_s += elapsed
                    self._log(phase, losses, lr, window_tokens / elapsed)
                    progress.set_postfix(loss=f"{losses[-1]:.3f}")
                    window_start, window_tokens = time.perf_counter(), 0
                if next_eval is not None and c.tokens >= next_eval and c.tokens < phase.end_tokens:
                    self._evaluate(phase, is_final=False)
                    next_eval = (c.tokens // self.eval_every_tokens + 1) * self.eval_every_tokens
                    window_start, window_tokens = time.perf_counter(), 0
                if c.step % self.checkpoint_every == 0 and c.tokens < phase.end_tokens:
                    self._save(phase.name, start_tokens)
                    window_start, window_tokens = time.perf_counter(), 0
        finally:
            prefetch.close()
            progress.close()

    def _log(self, phase: Phase, losses: list[float], lr: float, tokens_per_s: float):
        c = self.counters
        flops_per_s = tokens_per_s * self.flops_per_token
        record = {"step": c.step, "branch": "" if phase.name == TRUNK else phase.name, "loss": float(np.mean(losses)),
                  "lr": lr, "tokens": c.tokens, "flops": c.tokens * self.flops_per_token,
                  "tokens_per_s": tokens_per_s, "flops_per_s": flops_per_s, "mfu": flops_per_s / self.peak_flops}
        self.folder.append("log.jsonl", record)
        self.folder.progress(c.step, c.tokens)
        self.folder.scalars("train" if phase.name == TRUNK else f"train/{phase.name}",
                            {k: record[k] for k in ("loss", "lr", "tokens_per_s", "mfu")}, c.step)

    def _eval_batches(self) -> list:
        """The evaluation set on the devices, read at the first evaluation."""
        if self._eval_data is None:
            self._eval_data = [partitioning.global_batch({k: np.asarray(b[k]) for k in EVAL_KEYS}, self.mesh)
                               for b in self.data.eval_batches(self.eval_batch_count)]
        return self._eval_data

    def _evaluate(self, phase: Phase, is_final: bool):
        self._losses_so_far()
        totals = [self.compiled.evaluate(self.params, batch) for batch in self._eval_batches()]
        metrics = eval_metrics(summed(jax.device_get(totals)))
        c = self.counters
        # Repetition (Muennighoff et al.): raw tokens seen once at most, and passes over the source.
        finite = math.isfinite(self.epoch_tokens)
        stats = {"unique_tokens": int(min(c.tokens_raw, self.epoch_tokens)),
                 "epochs": c.tokens_raw / self.epoch_tokens if finite else 1.0,
                 "teacher_flops": c.tokens_thinking * self.teacher_flops_per_thinking_token}
        row = {**self.row_base,
               "step": c.step, "tokens": c.tokens, "tokens_raw": c.tokens_raw, "tokens_thinking": c.tokens_thinking,
               **stats,
               "flops": c.tokens * self.flops_per_token, "flops_6nd": 6.0 * self.params_count.total * c.tokens,
               "schedule": phase.schedule, "branch": "" if phase.name == TRUNK else phase.name, "is_final": is_final,
               **metrics}
        self.folder.append("training_rows.jsonl", row)
        self.folder.scalars("eval" if phase.name == TRUNK else f"eval/{phase.name}", metrics, c.step)
        self.folder.status("running", "", c.step, c.tokens)

def _progress_bar(phase: Phase, tokens: int):
    return tqdm(total=phase.end_tokens, initial=tokens, unit="tok", unit_scale=True, dynamic_ncols=True,
                desc=phase.name, disable=not sys.stderr.isatty(), leave=False)
