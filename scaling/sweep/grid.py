"""A sweep grid, written in gin (grids/*.gin), and its expansion into runs.

`Grid` is the sweep's one configurable: a product over model sizes (presets, optionally with
architecture axes applied on top), arms, seeds and data budgets, where a data budget is either
given in tokens or derived from an isoFLOP compute budget with the exact accounting. Grid points
that differ only in their data budget become one run with a cooldown branch per budget
(schedule 'wsd'); schedule 'cosine' makes one run per point instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import gin

from scaling import accounting, configuration
from scaling.configuration import ConfigError
from scaling.model_config import ModelConfig
from scaling.presets import PRESET_DIR, load_model_config
from scaling.schedules import SCHEDULES, Schedule, schedule_named

# Architecture axes a grid may vary. Besides ModelConfig's own fields, `mlp_ratio` sets
# d_ff = mlp_ratio * d_model (rounded to a multiple of 8).
_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}
_AXES = (_MODEL_FIELDS - {"dtype", "remat", "rope_base", "norm_eps", "vocab_size"}) | {"mlp_ratio"}
# Short labels for axes in run names, e.g. p3m.d256.l8.kv2
_AXIS_LABELS = {"d_model": "d", "n_layers": "l", "n_heads": "h", "n_kv_heads": "kv", "head_dim": "hd",
                "d_ff": "ff", "mlp_ratio": "r", "seq_len": "s", "tie_embeddings": "tie"}
FITTED_PREFIX = "fitted:"
HYPERPARAMETER_BINDINGS = ("train.learning_rate", "train.batch_size")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Grid:
    """What a sweep trains and evaluates. Every list is an axis of the product.

    models: size presets (names of gin/models/*.gin).
    axes: architecture axes applied on top of every preset, as a product, e.g.
      {'d_model': [256, 384], 'n_layers': [4, 8], 'mlp_ratio': [2.0, 4.0], 'n_kv_heads': [None, 2]}.
    data_budgets: trained tokens (document + thinking tokens) per finished point.
    compute_budgets: isoFLOP budgets C in FLOPs; each size gets D = C / training FLOPs per token.
    tokens_per_param: (low, high) bounds on D / params; isoFLOP points outside are dropped.
    arms: arm name -> the task it trains on (e.g. {'vanilla': 'synthetic_vanilla'}).
    arm_overrides: arm name -> extra train bindings for that arm (a teacher, a format).
    seeds: training seeds.
    seeds_per_model: preset -> at most how many of `seeds` (the first ones) its runs train, e.g.
      {'p50k': 3} with seeds [0, 1, 2, 3, 4]: replicates spent where a study's claims are made (its
      largest size) and fewer where they only shape the laws. A preset not named trains every seed,
      and so does one whose count reaches len(seeds) (a sweep of fewer seeds, Grid.seeds = [0]).
    schedule: a schedule object with its settings, @WSD() (one run per size, arm and seed, a
      cooldown branch per data budget; WSD.cooldown_fraction, WSD.cooldown_shape) or @Cosine()
      (one run per data budget); or its name, 'wsd' or 'cosine' (the class, with the settings
      bound on it). Every run trains with it: the run files and overrides do not bind
      train.schedule or its settings.
    train_files, train_overrides: the run's gin files and extra bindings {'NAME': value}.
    infer_files, infer_overrides: the inference sweep every finished run gets; no files: none.
    infer_branches: 'all' (every finished data budget) or 'last' (the largest budget only).
    hyperparameters: '' (train.learning_rate and train.batch_size as the run files and overrides
      set them) or 'fitted:<law file>': each run's learning rate and batch size from a fitted
      hyperparameter law (`scaling fit --form=hyperparameters`, Step Law) at its parameter count
      and its largest data budget (see sweep.store.fitted_hyperparameters).
    """

    name: str = ""
    models: tuple = ()
    axes: dict = dataclasses.field(default_factory=dict)
    data_budgets: tuple = ()
    compute_budgets: tuple = ()
    tokens_per_param: tuple | None = None
    arms: dict = dataclasses.field(default_factory=lambda: {"vanilla": "synthetic_vanilla"})
    arm_overrides: dict = dataclasses.field(default_factory=dict)
    seeds: tuple = (0,)
    seeds_per_model: dict = dataclasses.field(default_factory=dict)
    schedule: Schedule | str = "wsd"
    train_files: tuple = ("runs/pretrain.gin",)
    train_overrides: dict = dataclasses.field(default_factory=dict)
    infer_files: tuple = ("runs/infer.gin",)
    infer_overrides: dict = dataclasses.field(default_factory=dict)
    infer_branches: str = "all"
    hyperparameters: str = ""

    def __post_init__(self):
        for field in ("models", "data_budgets", "compute_budgets", "seeds", "train_files", "infer_files"):
            value = getattr(self, field)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"Grid.{field} must be a list, got {value!r}")
            object.__setattr__(self, field, tuple(value))
        for field in ("axes", "arms", "arm_overrides", "seeds_per_model", "train_overrides", "infer_overrides"):
            if not isinstance(getattr(self, field), dict):
                raise ConfigError(f"Grid.{field} must be a dict, got {getattr(self, field)!r}")
        if not self.models:
            raise ConfigError("Grid.models is empty: give at least one preset, e.g. ['p1m']")
        known = {p.stem for p in PRESET_DIR.glob("*.gin")} - {"base"}
        for preset in self.models:
            if preset not in known:
                raise ConfigError(f"Grid.models: no preset {preset!r} (known: {', '.join(sorted(known))})")
        for axis, values in self.axes.items():
            if axis not in _AXES:
                raise ConfigError(f"Grid.axes: unknown axis {axis!r} (known: {', '.join(sorted(_AXES))})")
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"Grid.axes[{axis!r}] must be a non-empty list, got {values!r}")
        if not self.data_budgets and not self.compute_budgets:
            raise ConfigError("Grid: give data_budgets (tokens) or compute_budgets (FLOPs), or both")
        for field in ("data_budgets", "compute_budgets"):
            for value in getattr(self, field):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise ConfigError(f"Grid.{field} must hold positive numbers, got {value!r}")
        if self.tokens_per_param is not None and (len(self.tokens_per_param) != 2
                                                  or not 0 <= self.tokens_per_param[0] < self.tokens_per_param[1]):
            raise ConfigError(f"Grid.tokens_per_param must be (low, high) with 0 <= low < high, "
                              f"got {self.tokens_per_param!r}")
        if not self.arms:
            raise ConfigError("Grid.arms is empty: give at least {'vanilla': 'synthetic_vanilla'}")
        for arm, task in self.arms.items():
            if not isinstance(task, str) or not task:
                raise ConfigError(f"Grid.arms[{arm!r}] must be a task name, got {task!r}")
        for source, name in [("Grid.train_overrides", n) for n in self.train_overrides] + \
                [("Grid.arm_overrides", n) for o in self.arm_overrides.values() for n in o]:
            field = str(name).split("/")[-1]
            if field.startswith("ModelConfig.") and field.split(".", 1)[1] in _AXES | {"vocab_size"}:
                raise ConfigError(f"{source}: {name} changes the architecture behind the accounting's "
                                  f"back; vary it with Grid.axes = {{'{str(name).split('.')[-1]}': [...]}}")
        for arm in self.arm_overrides:
            if arm not in self.arms:
                raise ConfigError(f"Grid.arm_overrides: {arm!r} is not one of Grid.arms ({', '.join(self.arms)})")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise ConfigError(f"Grid.seeds must be a non-empty list of integers, got {self.seeds!r}")
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise ConfigError(f"Grid.seeds = {list(self.seeds)!r} repeats seed(s) {', '.join(map(str, repeated))}: "
                              f"the same seed is the same run; give distinct seeds")
        for preset, count in self.seeds_per_model.items():
            if preset not in self.models:
                raise ConfigError(f"Grid.seeds_per_model: {preset!r} is not one of Grid.models "
                                  f"({', '.join(self.models)})")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"Grid.seeds_per_model[{preset!r}] must be a count of seeds >= 1 (the first "
                                  f"ones of Grid.seeds), got {count!r}")
        if self.infer_branches not in ("all", "last"):
            raise ConfigError(f"Grid.infer_branches must be 'all' or 'last', got {self.infer_branches!r}")
        if not isinstance(self.hyperparameters, str) or (
                self.hyperparameters and not self.hyperparameters.startswith(FITTED_PREFIX)):
            raise ConfigError(f"Grid.hyperparameters must be '' or '{FITTED_PREFIX}<law file>', "
                              f"got {self.hyperparameters!r}")
        if self.hyperparameters:
            fixed = [n for n in self.train_overrides if str(n).split("/")[-1] in HYPERPARAMETER_BINDINGS]
            if fixed:
                raise ConfigError(f"Grid.train_overrides sets {', '.join(fixed)} while Grid.hyperparameters = "
                                  f"{self.hyperparameters!r} sets it from the law: keep one")
        if isinstance(self.schedule, str) and self.schedule not in SCHEDULES:
            raise ConfigError(f"Grid.schedule must be one of {tuple(SCHEDULES)} (or @WSD(), @Cosine()), "
                              f"got {self.schedule!r}")
        object.__setattr__(self, "schedule", schedule_named(self.schedule, "Grid.schedule"))
        for source, name in [("Grid.train_overrides", n) for n in self.train_overrides] + \
                [("Grid.arm_overrides", n) for o in self.arm_overrides.values() for n in o]:
            configurable = str(name).split("/")[-1].rsplit(".", 1)[0]
            if str(name).split("/")[-1] == "train.schedule" or configurable == type(self.schedule).__name__:
                raise ConfigError(f"{source}: {name} would be overridden by the grid's schedule; set it on "
                                  f"Grid.schedule (e.g. Grid.schedule = @WSD() and WSD.cooldown_fraction = 0.1)")


@dataclasses.dataclass(frozen=True)
class Model:
    """One architecture of the grid: the preset it starts from and the axis values on top."""

    preset: str
    changes: tuple  # ((axis, value), ...) in the grid's axis order
    config: ModelConfig

    varied: tuple = ()  # the axes with more than one value in the grid: the ones the name shows

    @property
    def label(self) -> str:
        parts = [self.preset] + [f"{_AXIS_LABELS.get(axis, axis)}{_short(value)}"
                                 for axis, value in self.changes if axis in self.varied]
        return ".".join(parts)

    @property
    def bindings(self) -> tuple[str, ...]:
        """Gin bindings that turn the preset into this architecture."""
        out = []
        for axis, value in self.changes:
            if axis == "mlp_ratio":
                out.append(f"ModelConfig.d_ff = {self.config.d_ff}")
            else:
                out.append(f"ModelConfig.{axis} = {value!r}")
        return tuple(out)

    @property
    def params(self) -> int:
        return accounting.param_count(self.config).total

    @property
    def flops_per_token(self) -> float:
        return accounting.training_flops_per_token(self.config)


@dataclasses.dataclass(frozen=True)
class Point:
    """A run of the grid: one model, arm and seed, and the data budgets it finishes at."""

    model: Model
    arm: str
    task: str
    seed: int
    schedule: Schedule
    data_budgets: tuple[int, ...]  # sorted; one cooldown branch each (wsd) or exactly one (cosine)
    compute_budgets: tuple[float | None, ...]  # the isoFLOP budget each data budget came from, or None

    @property
    def readable_name(self) -> str:
        name = f"{self.model.label}_{self.arm}_s{self.seed}_{self.schedule.name}"
        if self.schedule.one_run_per_budget:
            name += f"_D{self.data_budgets[0]:.3g}".replace("+", "")
        return sanitise(name)


def _short(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sanitise(name: str) -> str:
    """A name safe as one path component: letters, digits, '.', '_', '-' only; no leading dot."""
    parts = [part for part in re.split(r"[^A-Za-z0-9._-]+", name) if part.strip(".")]
    cleaned = "-".join(parts).lstrip(".-")
    if not cleaned:
        raise ConfigError(f"name {name!r} has no usable characters (letters, digits, '.', '_', '-')")
    return cleaned


def load_grid(path: str | Path, bindings: tuple[str, ...] = ()) -> Grid:
    """Parse a grid file (and --gin.Grid.X overrides) into a validated Grid; errors name where."""
    args = configuration.GinArgs((str(path),), tuple(bindings))
    configuration.parse(args)
    with configuration.explained(args):
        grid = Grid()
    if not grid.name:
        grid = dataclasses.replace(grid, name=Path(path).stem)
    return dataclasses.replace(grid, name=sanitise(grid.name))


def models(grid: Grid) -> list[Model]:
    """Every architecture of the grid, in grid order (presets x axis product)."""
    out = []
    axes = list(grid.axes.items())
    varied = tuple(axis for axis, values in axes if len(values) > 1)
    for preset in grid.models:
        base = load_model_config(PRESET_DIR / f"{preset}.gin")
        for values in itertools.product(*(v for _, v in axes)):
            changes = tuple(zip((a for a, _ in axes), values))
            fields = {}
            for axis, value in changes:
                if axis == "mlp_ratio":
                    d_model = dict(changes).get("d_model", base.d_model)
                    fields["d_ff"] = max(8, int(round(value * d_model / 8)) * 8)
                else:
                    fields[axis] = value
            try:
                config = dataclasses.replace(base, **fields)
            except ConfigError as e:
                raise ConfigError(f"Grid.axes: preset {preset} with {dict(changes)} is not a valid "
                                  f"architecture: {e}") from None
            out.append(Model(preset, changes, config, varied))
    return out


def expand(grid: Grid) -> list[Point]:
    """The grid's runs: points that differ only in data budget share a run under 'wsd'."""
    points = []
    for model in models(grid):
        budgets: dict[int, float | None] = {int(d): None for d in grid.data_budgets}
        for c in grid.compute_budgets:
            d = int(round(c / model.flops_per_token))
            if grid.tokens_per_param is not None:
                low, high = grid.tokens_per_param
                if not low <= d / model.params <= high:
                    continue
            budgets.setdefault(d, float(c))
        if not budgets:
            continue
        ordered = tuple(sorted(budgets))
        seeds = grid.seeds[:grid.seeds_per_model.get(model.preset, len(grid.seeds))]
        for (arm, task), seed in itertools.product(grid.arms.items(), seeds):
            groups = [(d,) for d in ordered] if grid.schedule.one_run_per_budget else [ordered]
            for group in groups:
                points.append(Point(model, arm, task, seed, grid.schedule, group,
                                    tuple(budgets[d] for d in group)))
    names = [p.readable_name for p in points]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"grid {grid.name}: several points share the name(s) {', '.join(duplicates)}; "
                          "make the axes distinct")
    if not points:
        raise ConfigError(f"grid {grid.name}: no points (Grid.tokens_per_param drops every isoFLOP point?)")
    return points
