"""ModelConfig: the architecture's settings, bound in gin as `ModelConfig.<field>`, and their
checks. Light to import (gin only): planning a sweep, accounting FLOPs, describing a preset and
every verb's --help read it without JAX; the architecture itself is scaling.model."""

from __future__ import annotations

import dataclasses

import gin

from scaling.configuration import ConfigError
from scaling.data import sentencepiece_vocab  # light: no TensorFlow

# Activation dtypes (parameters stay float32).
DTYPES = ("bfloat16", "float16", "float32")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The architecture. Every field is a knob a scaling study may vary."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: as many as n_heads (multi-head attention)
    head_dim: int | None = None  # None: d_model // n_heads
    d_ff: int = 256
    vocab_size: int = 264
    vocabulary: str = "bytes"  # what the ids mean: 'bytes', a built-in SentencePiece name, or a model file
    seq_len: int = 256
    tie_embeddings: bool = False
    dtype: str = "float32"
    remat: bool = False
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self):
        check_model_config(self)  # below the architecture, at the end of the file

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def compute_dtype(self):
        import jax.numpy as jnp  # here: the config is read and checked without JAX

        return getattr(jnp, self.dtype)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# -- validation of ModelConfig ----------------------------------------------------------------


def check_model_config(config: ModelConfig) -> None:
    """Refuse a ModelConfig the architecture cannot build, naming the field."""
    for name, kind in (("d_model", int), ("n_layers", int), ("n_heads", int), ("d_ff", int),
                       ("vocab_size", int), ("seq_len", int)):
        value = getattr(config, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"ModelConfig.{name} must be an integer, got {value!r}")
        if value <= 0:
            raise ConfigError(f"ModelConfig.{name} must be positive, got {value}")
    if not isinstance(config.vocabulary, str) or not config.vocabulary:
        raise ConfigError(f"ModelConfig.vocabulary must be 'bytes', a built-in SentencePiece name or a model "
                          f"file, got {config.vocabulary!r}")
    if config.vocabulary != "bytes":
        try:
            sentencepiece_vocab.resolve(config.vocabulary)
        except FileNotFoundError as e:
            raise ConfigError(f"ModelConfig.vocabulary: {e}") from None
    for name in ("n_kv_heads", "head_dim"):
        value = getattr(config, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"ModelConfig.{name} must be a positive integer or None, got {value!r}")
    for name in ("tie_embeddings", "remat"):
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"ModelConfig.{name} must be True or False, got {getattr(config, name)!r}")
    if config.dtype not in DTYPES:
        raise ConfigError(f"ModelConfig.dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}")
    if config.head_dim is None and config.d_model % config.n_heads:
        raise ConfigError(
            f"ModelConfig.n_heads={config.n_heads} does not divide ModelConfig.d_model={config.d_model}; "
            "set ModelConfig.head_dim explicitly or choose a divisor")
    if config.n_heads % config.kv_heads:
        raise ConfigError(
            f"ModelConfig.n_kv_heads={config.kv_heads} does not divide ModelConfig.n_heads={config.n_heads}")
    if config.dim_per_head % 2:
        raise ConfigError(f"ModelConfig.head_dim must be even for rotary embeddings, got {config.dim_per_head}")
