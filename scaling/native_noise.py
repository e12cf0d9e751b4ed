"""TensorFlow's native start-up lines kept off the user's terminal.

TensorFlow (under seqio) only feeds data here, yet importing it writes absl/oneDNN/cudart lines
("WARNING: All log messages before absl::InitializeLog() ...", "I0000 ... port.cc:153] oneDNN
custom operations are on", "I0000 ... cudart_stub.cc:31] Could not find cuda drivers") straight to
file descriptor 2 from C++, and TF 2.16+ writes them whatever TF_CPP_MIN_LOG_LEVEL says. The
`scaling` command installs `quiet_tensorflow_import()` before anything is imported: the first
`import tensorflow`, wherever it happens, runs with descriptor 2 caught, and every caught line that
is not such an information line is written back (a failed import's traceback included).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import threading

# A native log line at level I (information) or W (warning) in absl/glog's format, or absl's notice
# that such lines go to stderr; errors (E, F) are kept.
NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                   rb"|[IW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] .*)$")


@contextlib.contextmanager
def native_stderr_filtered():
    """Catch what is written to descriptor 2 (C++ and Python alike) and write back all but NOISE."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not NOISE.match(line.rstrip(b"\r\n"))]
            if kept:
                os.write(2, b"".join(kept))


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the real loader of `tensorflow` in native_stderr_filtered."""

    def __init__(self):
        self._finding = threading.local()

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or getattr(self._finding, "active", False):
            return None
        self._finding.active = True   # the real finders answer the lookup below, not this one
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding.active = False
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            # Installed until TensorFlow is really imported: a mere lookup (etils asks whether
            # TensorFlow is installed when Orbax restores a checkpoint) must not use it up.
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            with native_stderr_filtered():
                load(module)

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """Install the finder (once; a no-op when TensorFlow is already imported)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
