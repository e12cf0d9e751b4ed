"""The model size presets (gin/models/*.gin) and reading one into a ModelConfig."""

from __future__ import annotations

from pathlib import Path

from scaling import accounting, configuration
from scaling.model_config import ModelConfig

PRESET_DIR = configuration.GIN_ROOT / "models"


def presets() -> list[Path]:
    """Every size preset (all of gin/models except the shared base)."""
    return sorted((p for p in PRESET_DIR.glob("*.gin") if p.name != "base.gin"),
                  key=lambda p: accounting.param_count(load_model_config(p)).total)


def load_model_config(preset: Path | str, bindings: tuple[str, ...] = ()) -> ModelConfig:
    args = configuration.GinArgs((str(preset),), tuple(bindings))
    configuration.parse(args)
    with configuration.explained(args):
        return ModelConfig()
