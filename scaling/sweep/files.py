"""Reading a sweep's JSON state files (kept free of heavy imports: claims use it). They are written
with analysis.atomic.write_json_atomic(..., sort_keys=True)."""

from __future__ import annotations

import json
from pathlib import Path

from scaling.configuration import ConfigError


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
