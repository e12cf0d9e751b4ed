"""Gin handling in the T5X manner: repeatable --gin_file, --gin.NAME=VALUE overrides after the
files, errors that name the file and the binding, and the resolved config written to the run.

Only entry points and config dataclasses are gin-configurable; everything else takes arguments.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import logging
import os
import re
from pathlib import Path

import gin

from analysis.atomic import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parent.parent
GIN_ROOT = REPO_ROOT / "gin"


class ConfigError(ValueError):
    """A configuration problem, reported before any computation."""


class PlacedConfigError(ConfigError):
    """A configuration error whose message already says where the problem is (a file, a run
    folder): `explained` passes it on as it is."""


@dataclasses.dataclass(frozen=True)
class GinArgs:
    files: tuple[str, ...]
    bindings: tuple[str, ...]


def split_gin_args(argv: list[str]) -> tuple[GinArgs, list[str]]:
    """Take --gin_file=F (or --gin_file F) and --gin.NAME=VALUE out of argv, keeping their order."""
    files, bindings, rest = [], [], []
    it = iter(argv)
    for arg in it:
        if arg == "--gin_file":
            files.append(next(it, ""))
        elif arg.startswith("--gin_file="):
            files.append(arg.split("=", 1)[1])
        elif arg.startswith("--gin."):
            body = arg[len("--gin."):]
            if "=" not in body:
                raise ConfigError(f"command line: {arg!r} must look like --gin.NAME=VALUE")
            name, value = body.split("=", 1)
            bindings.append(f"{name} = {_as_gin_value(value)}")
        elif arg.startswith("--gin_bindings="):
            bindings.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return GinArgs(tuple(files), tuple(bindings)), rest


def _as_gin_value(value: str) -> str:
    """Bare words become strings, so --gin.MODEL_DIR=/tmp/run needs no shell-quoted quotes."""
    text = value.strip()
    if text.startswith(("%", "@", "'", '"')):
        return text
    try:
        ast.literal_eval(text)
        return text
    except (ValueError, SyntaxError):
        return repr(text)


def _binding_lines(path: str) -> list[tuple[int, str]]:
    return [(i, line) for i, line in enumerate(Path(path).read_text().splitlines(), 1)]


def locate_binding(name: str, args: GinArgs) -> str:
    """Where `name` (e.g. 'ModelConfig.d_model' or 'MODEL_DIR') was last set: file:line or flag."""
    short = name.split(".")[-2:] if "." in name else [name]
    pattern = re.compile(r"^\s*([\w./]*\.)?" + re.escape(".".join(short)) + r"\s*=")
    for binding in reversed(args.bindings):
        if pattern.match(binding):
            return f"command line --gin.{binding.replace(' = ', '=')}"
    for path in reversed(_all_files(args.files)):
        for line_no, line in reversed(_binding_lines(path)):
            if pattern.match(line):
                return f"{path}:{line_no}"
    return "the default value"


def _all_files(files) -> list[str]:
    """The given files and, before each, what it includes (depth first), as gin reads them."""
    out = []
    for f in files:
        path = _resolve(f, None)
        if path is None:
            continue
        for line in Path(path).read_text().splitlines():
            m = re.match(r"^\s*include\s+['\"](.+)['\"]", line)
            if m:
                out.extend(_all_files([_resolve(m.group(1), Path(path).parent) or m.group(1)]))
        out.append(str(path))
    return out


def _resolve(name: str, including_dir: Path | None) -> str | None:
    candidates = [Path(name)]
    if including_dir is not None:
        candidates.append(including_dir / name)
    candidates += [REPO_ROOT / name, GIN_ROOT / name]
    for c in candidates:
        if c.is_file():
            return str(c)
    return None


_SEARCH_PATHS: set[str] = set()


def _add_search_path(path) -> None:
    if str(path) not in _SEARCH_PATHS:
        _SEARCH_PATHS.add(str(path))
        gin.add_config_file_search_path(str(path))


class _DropGinSearchMisses(logging.Filter):
    """gin logs an error for every search path an include is not found under; only the
    final failure matters, and that one raises."""

    def filter(self, record):
        return not str(record.msg).startswith("Path not found")


class _Placeholders(gin.config_parser.ParserDelegate):
    """References and macros as plain text: enough to read a file's dict literals."""

    def configurable_reference(self, scoped_selector, evaluate):
        return f"@{scoped_selector}{'()' if evaluate else ''}"

    def macro(self, name):
        return f"%{name}"


class _DuplicateKeys(gin.config_parser.ConfigParser):
    """gin's parser, refusing a dict literal that gives a key twice (gin keeps the last silently)."""

    def __init__(self, text, where):
        self._where, self._keys = where, []
        super().__init__(text, _Placeholders())

    def _maybe_parse_container(self):
        if self._current_token.string != "{":
            return super()._maybe_parse_container()
        self._keys.append(set())
        try:
            return super()._maybe_parse_container()
        finally:
            self._keys.pop()

    def _parse_dict_item(self):
        line = self._current_token.start[0]
        key, value = super()._parse_dict_item()
        if key in self._keys[-1]:
            raise ConfigError(f"{self._where(line)}: the key {key!r} is given twice in one dict; "
                              f"gin would keep only the last")
        self._keys[-1].add(key)
        return key, value


def check_duplicate_keys(text: str, where) -> None:
    """Raise ConfigError naming file:line for a dict literal with a repeated key; `where(line)`
    names the place. Syntax errors are left to gin, which reports them itself."""
    try:
        for _ in _DuplicateKeys(text, where):
            pass
    except ConfigError:
        raise
    except Exception:  # gin reports its own syntax errors when it parses the file for real
        return


# Bindings and configurables that moved onto the objects they configure: old name -> new name.
# A config that still binds an old name gets the new one in its error (run_folder reads old
# run folders' identities through the same table).
MOVED = {"train.cooldown_fraction": "WSD.cooldown_fraction", "train.cooldown_shape": "WSD.cooldown_shape",
         "OpenAITeacherConfig": "OpenAICompatibleTeacher", "ProgrammaticTeacherConfig": "ProgrammaticTeacher"}


def _moved(error: Exception) -> str:
    """The error's text, with the new name of any moved binding it mentions."""
    text = str(error)
    for old, new in MOVED.items():
        configurable, _, parameter = old.rpartition(".")
        named = f"'{configurable}' doesn't have a parameter named '{parameter}'" in text if configurable else \
            re.search(rf"\b{old}\b", text)
        if named:
            return f"{text}\n  ({old} has moved: bind {new}{'' if configurable else '.<setting>'} instead)"
    return text


# The modules whose configurables a resolved run config binds (the planner's process had them all
# imported when it wrote config.gin): imported before parsing, so a run parses whatever its
# command imported so far.
CONFIGURABLE_MODULES = ("scaling.model_config", "scaling.schedules", "scaling.train_config",
                        "scaling.infer_config", "scaling.data.teachers")


def parse(args: GinArgs) -> None:
    """Parse the files, then the bindings; any error names the file or the flag."""
    for module in CONFIGURABLE_MODULES:
        importlib.import_module(module)
    for f in args.files:
        resolved = _resolve(f, None)
        if resolved is not None:
            check_duplicate_keys(Path(resolved).read_text(), lambda line, path=resolved: f"{path}:{line}")
    for binding in args.bindings:
        check_duplicate_keys(binding, lambda line, b=binding: f"command line --gin.{b.replace(' = ', '=')}")
    gin.clear_config()
    for path in (REPO_ROOT, GIN_ROOT):
        _add_search_path(path)
    quiet = _DropGinSearchMisses()
    logging.getLogger().addFilter(quiet)
    try:
        for f in args.files:
            resolved = _resolve(f, None)
            if resolved is None:
                raise ConfigError(f"--gin_file={f}: no such file (looked in {os.getcwd()}, {REPO_ROOT}, {GIN_ROOT})")
            _add_search_path(Path(resolved).parent)
            try:
                gin.parse_config_file(resolved)
            except Exception as e:  # gin raises several types; all are configuration errors here
                raise ConfigError(f"{resolved}: {_moved(e)}") from None
    finally:
        logging.getLogger().removeFilter(quiet)
    for binding in args.bindings:
        try:
            gin.parse_config(binding)
        except Exception as e:
            raise ConfigError(f"command line --gin.{binding.replace(' = ', '=')}: {_moved(e)}") from None


@contextlib.contextmanager
def explained(args: GinArgs):
    """Re-raise configuration errors from constructing configurables with where they were set."""
    try:
        yield
    except PlacedConfigError as e:
        raise PlacedConfigError(re.sub(r"\n\s*In call to configurable '(\w+)' \(<[^>]*>\)", "", str(e))) from None
    except ConfigError as e:
        # gin appends "In call to configurable 'train' (<function train at 0x...>)": not for users
        text = re.sub(r"\n\s*In call to configurable '(\w+)' \(<[^>]*>\)", "", str(e))
        if text != str(e):
            e = ConfigError(text)
        match = re.search(r"\b([A-Za-z_]\w*\.[A-Za-z_]\w*)\b", str(e))
        where = locate_binding(match.group(1), args) if match else None
        if where is None or where == "the default value":
            raise e from None  # not bound in the files or flags given: no place to name
        raise ConfigError(f"{e} (set at {where})") from None
    except (ValueError, TypeError) as e:
        message = str(e)
        if "Required bindings" in message or "gin.REQUIRED" in message or "REQUIRED" in message:
            raise ConfigError(f"missing required value: {message}; give it with --gin.NAME=VALUE "
                              f"(files: {', '.join(args.files) or 'none'})") from None
        raise


def write_config(run_dir: str | Path, name: str = "config.gin") -> Path:
    """Write the resolved (operative) config beside the run's outputs, atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(run_dir / name, gin.operative_config_str() or gin.config_str())
