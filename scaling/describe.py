"""`scaling describe`: what a preset costs, before anything is trained."""

from __future__ import annotations

import json
from pathlib import Path

from scaling import accounting, configuration
from scaling.model import ModelConfig

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


def configure_describe(parser):
    parser.add_argument("--context", type=int, default=None,
                        help="context length for the inference FLOPs per token (default: seq_len)")
    parser.add_argument("--all", action="store_true", help="describe every preset in gin/models, one JSON line each")


def run_describe(args) -> int:
    if args.all:
        for preset in presets():
            config = load_model_config(preset, args.gin.bindings)
            print(json.dumps({"preset": preset.stem, **accounting.describe(config, args.context)}))
        return 0
    if not args.gin.files:
        raise configuration.ConfigError("give a model with --gin_file=gin/models/<preset>.gin (or use --all)")
    configuration.parse(args.gin)
    with configuration.explained(args.gin):
        config = ModelConfig()
    print(json.dumps(accounting.describe(config, args.context), indent=2))
    return 0
