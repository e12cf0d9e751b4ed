"""The data pipeline in a process of its own, beside the trainer's.

Why: a run that produces its batch stream (the first run of an arm and seed in a sweep, any run
without a batch cache) ran tf.data, TensorFlow's threads and the document generator inside the
training process, on the worker's one core. Measured on the demo's p200k (docs/training.md,
"Producing batches beside the step"): the step took 42 ms instead of 17 ms while its own process
produced, and the producing runs were two thirds of the demo sweep's training time. In a process
of its own the pipeline takes its share of the core (a few ms a batch) and the training process
never imports TensorFlow. Only the built-in synthetic tasks are produced here: a task registered
in the run's process (a cache of teacher-written thinking) exists only there.

The child (`python -m scaling.data.producer`) gets the pipeline's arguments and the run's gin
configuration as JSON on stdin and writes length-prefixed pickles of its batches to stdout: a
training stream until the parent stops reading, or an evaluation list. A failure in the child is
raised in the parent with its type (a builtin exception, else RuntimeError) and message; a child
that dies without one is named with its exit status. The child ends when its parent does, so a
killed trainer leaves no producer behind.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from scaling.native_noise import quiet_tensorflow_import

HEADER = struct.Struct("<Q")
BATCH, END, FAILURE = "batch", "end", "failure"


def produced(request: dict) -> Iterator:
    """The batches the child produces for `request` ({kind: 'train' | 'eval', and the pipeline's
    arguments}), as a generator whose close() stops the child."""
    import gin

    child = subprocess.Popen([sys.executable, "-m", "scaling.data.producer"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        child.stdin.write(json.dumps({**request, "gin": gin.config_str()}).encode())
        child.stdin.close()
        while True:
            kind, payload = _read_frame(child.stdout)
            if kind is None:
                child.wait(timeout=30)
                raise RuntimeError(f"the batch producer ({request['kind']} {request.get('task')!r}) exited with status "
                                   f"{child.returncode} before its batches were written; its messages are above")
            if kind == FAILURE:
                name, message = payload
                error = getattr(builtins, name, None)
                raise (error if isinstance(error, type) and issubclass(error, Exception) else RuntimeError)(message)
            if kind == END:
                return
            yield payload
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def _read_frame(stream):
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None, None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None, None
    return pickle.loads(body)


def _write_frame(stream, kind: str, payload) -> None:
    body = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(body)))
    stream.write(body)
    stream.flush()


def _die_with_parent() -> None:
    """A killed trainer takes its producer with it: the next write to its closed pipe ends the
    child, and so does this watch of the parent (the Linux parent-death signal would not do: it
    fires when the thread that started the child ends, and a stream's thread ends with its phase)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the trainer's to handle
    out = sys.stdout.buffer
    sys.stdout = sys.stderr                        # a stray print must not corrupt the frames
    request = json.loads(sys.stdin.read())
    quiet_tensorflow_import()   # TensorFlow's native start-up lines stay off the run's stderr, as in the run
    try:
        import gin

        from scaling.data import pipeline
        gin.parse_config(request["gin"], skip_unknown=True)
        pipeline.use_vocabulary(request["vocabulary"], request["vocab_size"])
        if request["kind"] == "eval":
            for batch in pipeline.eval_list(request["task"], request["batch_size"], request["seq_len"],
                                            request["n_batches"]):
                _write_frame(out, BATCH, batch)
        else:
            for batch in pipeline.train_stream(request["task"], request["batch_size"], request["seq_len"],
                                               request["seed"], request["first_batch"], request["host_index"],
                                               request["host_count"]):
                _write_frame(out, BATCH, batch)
        _write_frame(out, END, None)
    except BrokenPipeError:   # the trainer stopped reading: the normal end of a training stream
        os._exit(0)
    except Exception as e:
        _write_frame(out, FAILURE, (type(e).__name__, str(e)))
    out.flush()
    os._exit(0)   # a tf.data iterator finalised at interpreter shutdown can hang the exit


if __name__ == "__main__":
    main()
