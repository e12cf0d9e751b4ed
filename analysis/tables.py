"""Read result tables (docs/schema.md) or any CSV/Parquet table through a column map, and check
them before a fit: every problem is reported with the column and the source it came from."""

from __future__ import annotations

import csv
import io
import hashlib
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd


class TableError(ValueError):
    """A table a law cannot be fitted on, with the column and the source named."""


class TooFewPoints(TableError):
    """Fewer rows than the law's parameters need (a selection may be what made them few)."""


# canonical name -> column of the training / inference tables of docs/schema.md
DEFAULT_COLUMNS = {
    "N": "params", "D": "tokens", "D_raw": "tokens_raw", "C": "flops", "U": "unique_tokens",
    "arm": "arm", "r": "mlp_attn_ratio", "T": "thinking_budget", "k": "samples",
    "L": "eval_loss", "difficulty": "difficulty",
    "seed": "seed",          # replicates: rows of one grid point with different seeds
    "n": "n_problems",       # problems behind an accuracy (its binomial weight)
}
# every canonical name a column map may give: the above, the target, and the columns of the
# architecture, hyperparameter and two-step laws
CANONICAL_NAMES = (*DEFAULT_COLUMNS, "loss", "task", "x", "g", "lr", "batch_size", "task_loss", "accuracy", "final")
MAY_BE_ZERO = ("T", "seed")
# is_final as text (a spreadsheet's export): the spellings of true and false taken
FINAL_TEXT = {"true": True, "t": True, "yes": True, "1": True, "1.0": True,
              "false": False, "f": False, "no": False, "0": False, "0.0": False}
ANY_SIGN = ("difficulty",)        # a benchmark's difficulty scale may start at 0 or below
# the synthetic QA tasks name their difficulty (chain steps): synthetic_qa_d3 (scaling.infer.task_name)
DIFFICULTY_TASK = re.compile(r"^synthetic_qa_d(\d+)$")


def parse_columns(text: str | None) -> dict[str, str]:
    """'N=Model Size,D=tokens' -> {'N': 'Model Size', 'D': 'tokens'}."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise TableError(f"--columns: {item!r} must look like CANONICAL=column (e.g. N=params)")
        key, value = (part.strip() for part in item.split("=", 1))
        if key not in CANONICAL_NAMES:
            raise TableError(f"--columns: {key!r} (in {item.strip()!r}) is not a name any law reads; "
                             f"the names are {', '.join(CANONICAL_NAMES)}")
        if key in out:
            raise TableError(f"--columns: {key!r} is mapped twice ({key}={out[key]} and {key}={value})")
        out[key] = value
    return out


def final_rows(frame: pd.DataFrame) -> pd.Series:
    """The is_final column as booleans: bool, 0/1, or text true/false (t/f, yes/no); anything
    else is refused naming the line, since reading "F" as true would fit every logged row."""
    column = frame["is_final"]
    if pd.api.types.is_bool_dtype(column):
        return column
    if pd.api.types.is_numeric_dtype(column):
        values = column
    else:
        values = column.map(lambda v: FINAL_TEXT.get(str(v).strip().lower()) if isinstance(v, str) else v)
    flags = pd.to_numeric(values.map(lambda v: int(v) if isinstance(v, bool) else v), errors="coerce")
    bad = ~flags.isin([0, 1])
    if bad.any():
        first = frame.index[bad.to_numpy()][0]
        raise TableError(f"{frame.attrs.get('source', 'table')}: column 'is_final' must be true/false (or 1/0) in "
                         f"every row; {int(bad.sum())} row(s) are not, first {column[first]!r} at {_where(frame, first)}")
    return flags == 1


def check_no_repeated_rows(frame: pd.DataFrame) -> None:
    """Refuse rows that repeat another row in every column: a table concatenated twice would
    count each measurement again and narrow every interval without a new observation."""
    repeated = frame.duplicated(keep="first")
    if repeated.any():
        first = frame.index[repeated.to_numpy()][0]
        hashes = pd.util.hash_pandas_object(frame, index=False)
        original = frame.index[(hashes == hashes[first]).to_numpy()][0]
        raise TableError(f"{frame.attrs.get('source', 'table')}: {int(repeated.sum())} row(s) repeat another row in "
                         f"every column (first {_where(frame, first)}, a copy of {_where(frame, original)}); "
                         f"remove the copies (a repeated run would differ at least in its seed or run id)")


def read_table(source) -> pd.DataFrame:
    """A DataFrame from a path (CSV, Parquet, JSON Lines as Gemstones ships them, or a results
    folder holding training.parquet) or a DataFrame (copied); frame.attrs["source"] names where
    it came from, for error messages."""
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
        frame.attrs["source"] = source.attrs.get("source", "DataFrame")
        return frame
    path = Path(source)
    if path.is_dir():
        candidates = [path / "training.parquet", path / "training.csv"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise TableError(f"{path}: a results folder must hold training.parquet")
        path = found
    if not path.exists():
        raise TableError(f"{path}: no such table")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix in (".csv", ".txt"):
        frame = _read_csv(path)
    elif path.suffix in JSON_SUFFIXES:
        frame = _read_json(path)
    else:
        raise TableError(f"{path}: unsupported table type {path.suffix!r} (CSV, Parquet or JSON Lines)")
    frame.attrs["source"] = str(path)
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV whose rows remember their line in the file (frame.attrs['first_line']); an empty file
    and a header naming a column twice are refused, naming the file."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header or not any(h.strip() for h in header):
        raise TableError(f"{path}: empty table (no header line with column names)")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise TableError(f"{path}: column(s) {', '.join(map(repr, twice))} appear more than once in the "
                         f"header; which one is meant is not clear")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise TableError(f"{path}: not a readable CSV ({str(e).strip()})") from None
    frame.attrs["first_line"] = 2  # data row 0 is line 2, after the header
    return frame


JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _read_json(path: Path) -> pd.DataFrame:
    """JSON Lines (one object per line; a .json file may also be one array of objects), each row
    remembering its line (frame.attrs['first_line'])."""
    text = path.read_text()
    if not text.strip():
        raise TableError(f"{path}: empty table (no JSON object)")
    lines = not text.lstrip().startswith("[")
    try:
        frame = pd.read_json(io.StringIO(text), lines=lines, orient="records")
    except ValueError as e:
        raise TableError(f"{path}: not readable as {'JSON Lines' if lines else 'a JSON array of objects'} "
                         f"({str(e).strip()})") from None
    if lines and text.lstrip() == text:
        frame.attrs["first_line"] = 1  # data row 0 is line 1
    return frame


def _where(frame: pd.DataFrame, index) -> str:
    """'line 7' of a CSV (its line in the file), else 'row 5' (the table's index)."""
    first = frame.attrs.get("first_line")
    return f"line {int(index) + first}" if first is not None else f"row {index}"


def _check_numeric(frame: pd.DataFrame, column: str, canon: str, name: str) -> None:
    """Refuse a column holding text where a number belongs, naming it, the line and the value."""
    if column not in frame.columns or pd.api.types.is_numeric_dtype(frame[column]) or \
            pd.api.types.is_bool_dtype(frame[column]):
        return
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        first = frame.index[bad.to_numpy()][0]
        raise TableError(f"{name}: column {column!r} ({canon}) holds non-numeric value(s) ({int(bad.sum())}), "
                         f"first {frame[column][first]!r} at {_where(frame, first)}")


def canonical_table(source, required: tuple[str, ...], target: str = "eval_loss",
                    columns: Mapping[str, str] | None = None, optional: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str]:
    """The canonical columns `required` (+ `optional` where present) and `loss` (the target),
    one row per observation, validated. Returns (frame, source name)."""
    frame = read_table(source)
    name = frame.attrs["source"]
    columns = dict(columns or {})
    mapping = _resolve(frame, {**DEFAULT_COLUMNS, "loss": target}, columns)
    check_no_repeated_rows(frame)
    if "is_final" in frame.columns and "is_final" not in columns.values():
        frame = frame[final_rows(frame)]
    out = pd.DataFrame(index=frame.index)
    for canon in required + optional + ("loss",):
        if canon != "arm":
            _check_numeric(frame, mapping.get(canon, canon), canon, name)
    for column in ("params", "tokens", "flops", "d_model", "params_non_embedding", "n_heads", "n_kv_heads"):
        _check_numeric(frame, column, column, name)
    derived = _derived(frame, mapping, columns)
    for canon in required + ("loss",):
        column = mapping.get(canon, canon)
        if column in frame.columns:
            out[canon] = frame[column]
        elif canon in derived:
            out[canon] = derived[canon]
        else:
            nor = f" (nor one named {canon!r})" if column != canon else ""
            hint = f"map it with columns={{{canon!r}: '<column>'}} in Python, --columns {canon}=<column> on the command line"
            raise TableError(f"{name}: missing column {column!r} for {canon}{nor}; {hint}; "
                             f"table has {', '.join(map(str, frame.columns))}")
    for canon in optional:
        column = mapping.get(canon, canon)
        if column in frame.columns:
            out[canon] = frame[column]
        elif canon in derived:
            out[canon] = derived[canon]
    for canon in out.columns:
        if canon == "arm":
            out[canon] = out[canon].astype(str)
            continue
        column = mapping.get(canon, canon)
        values = pd.to_numeric(out[canon], errors="coerce").astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise TableError(f"{name}: column {column!r} ({canon}) has {int(bad.sum())} non-finite or "
                             f"non-numeric value(s), first at {_where(frame, out.index[bad.to_numpy()][0])}")
        low = values < 0 if canon in MAY_BE_ZERO else values <= 0
        if canon not in ANY_SIGN and (canon != "loss" or target_is_positive(canon, target)):
            if low.any():
                raise TableError(f"{name}: column {column!r} ({canon}) has {int(low.sum())} non-positive "
                                 f"value(s) (e.g. {float(values[low].iloc[0]):g} at "
                                 f"{_where(frame, values.index[low.to_numpy()][0])}); a law needs positive values")
        out[canon] = values
    if len(out) == 0:
        raise TableError(f"{name}: no rows to fit" + (" (none with is_final)" if "is_final" in frame.columns else ""))
    return out.reset_index(drop=True), name


def target_is_positive(canon: str, target: str) -> bool:
    """Losses must be positive (fitted in log space); accuracies may be 0."""
    return "acc" not in target


def _resolve(frame: pd.DataFrame, defaults: Mapping[str, str], columns: Mapping[str, str]) -> dict[str, str]:
    """canonical name -> the table's column: the user's map, else the schema's column (params for
    N), else a column named by the canonical name itself (a table whose columns are N, D, loss)."""
    out = dict(defaults)
    for canon, column in defaults.items():
        if column not in frame.columns and canon in frame.columns:
            out[canon] = canon
    return {**out, **columns}


def _derived(frame: pd.DataFrame, mapping: Mapping[str, str], columns: Mapping[str, str]) -> dict[str, pd.Series]:
    """Covariates computed from schema columns when not given directly."""
    out = {}
    if {"d_model", "params_non_embedding"} <= set(frame.columns):
        out["x"] = frame["d_model"] / np.sqrt(frame["params_non_embedding"])
    if {"n_heads", "n_kv_heads"} <= set(frame.columns):
        out["g"] = frame["n_heads"] / frame["n_kv_heads"]
    task_col = columns.get("task", "task")
    if "difficulty" not in columns and "difficulty" not in frame.columns and task_col in frame.columns:
        found = frame[task_col].astype(str).str.extract(DIFFICULTY_TASK, expand=False)
        if len(found) and found.notna().all():  # only when every task names its difficulty
            out["difficulty"] = found.astype(np.float64)
    n_col, c_col = mapping["N"], mapping["C"]
    if "D" not in columns and mapping["D"] not in frame.columns and {n_col, c_col} <= set(frame.columns):
        out["D"] = frame[c_col] / (6.0 * frame[n_col])  # C = 6 N D when only compute is recorded
    if "C" not in columns and c_col not in frame.columns:
        d_col = mapping["D"]
        if {n_col, d_col} <= set(frame.columns):
            out["C"] = 6.0 * frame[n_col] * frame[d_col]
    return out


def data_hash(frame: pd.DataFrame) -> str:
    """A short content hash of the fitted columns, to tie a law to its data."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(frame.columns).encode())
    return digest.hexdigest()[:16]


def ranges(frame: pd.DataFrame) -> dict[str, list[float]]:
    return {c: [float(frame[c].min()), float(frame[c].max())] for c in ("N", "D", "C", "U", "T", "k", "difficulty")
            if c in frame}


def select_rows(source, where: str | None) -> pd.DataFrame:
    """The rows of a table (path or DataFrame) for which the pandas query `where` holds, e.g.
    "dataset == 'rw' and hparams == 'tuned'" (column names with spaces or slashes in backticks).
    The result remembers its source for error messages."""
    frame = read_table(source)
    name = frame.attrs["source"]
    if not where:
        return frame
    try:
        selected = frame.query(where, engine="python")
    except Exception as e:  # pandas raises many kinds (UndefinedVariableError, SyntaxError, TypeError)
        raise TableError(f"{name}: where {where!r} cannot be evaluated: {type(e).__name__}: {e}; "
                         f"columns: {', '.join(map(str, frame.columns))}") from None
    if not isinstance(selected, pd.DataFrame) or len(selected) == 0:
        raise TableError(f"{name}: no rows satisfy where {where!r}")
    selected = selected.copy()
    selected.attrs["source"] = f"{name} [where {where}]"
    return selected
