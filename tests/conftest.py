import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _scaling_executable() -> list[str]:
    exe = shutil.which("scaling", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "scaling.cli"]


@pytest.fixture
def run_cli():
    """Run the `scaling` console script as a user would; returns the CompletedProcess."""

    def run(*args, cwd=REPO, timeout=600, env=None, check=False):
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(_scaling_executable() + [str(a) for a in args], cwd=cwd, env=full_env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"scaling {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return run
