"""What a packed batch holds and which task streams are pure functions of the code; shared by
the pipeline that produces batches, the data source that reads them (and the batch cache
behind it) and the compiled step. Light: imports neither TensorFlow nor seqio."""

from __future__ import annotations

# A training batch: what the step reads, then the masks used only for counting tokens.
STEP_KEYS = ("inputs", "targets", "positions", "segment_ids", "loss_weights")
BATCH_KEYS = STEP_KEYS + ("thinking_mask", "raw_mask")
# An evaluation batch adds the hard-span mask and the bytes each target token stands for.
EVAL_MASKS = ("hard_mask", "target_bytes")
EVAL_BATCH_KEYS = BATCH_KEYS + EVAL_MASKS

CHUNK_TOKENS = 1 << 20  # the training stream is cut into chunks of this many tokens (pipeline.py)
EVAL_SEED = 0

# The embedded synthetic corpus's tasks: a pure function of the code and the vocabulary, so the
# batch cache may keep their streams.
SYNTHETIC_TASKS = ("synthetic_vanilla", "synthetic_thinking", "synthetic_thinking_before_hard", "synthetic_mix")


def synthetic_teacher_flops_per_thinking_token(task: str) -> float:
    """Generation FLOPs per thinking token of the programmatic teacher that writes a synthetic
    task's thinking (its emulated size, gin-bound); 0 for the raw task."""
    from scaling.data.teachers import ProgrammaticTeacher

    return 0.0 if task == "synthetic_vanilla" else ProgrammaticTeacher().flops_per_token
