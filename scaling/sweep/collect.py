"""`scaling collect <sweep_dir> -o results/`: the sweep's rows as the two result tables.

Reads every run folder's training_rows.jsonl and inference_rows.jsonl, checks each row against
the schema of docs/schema.md (required columns present, values of the right type; errors name
the file, line and column), and writes training.parquet and inference.parquet with the schema
version in the Parquet metadata (`scaling.schema_version`), each written to a temporary file and
renamed into place. Columns beyond the schema (e.g. inference's top_p) are kept after it; an
inference row's `seed` is its run's training seed (the replicate axis), `problem_seed` the seed of
the problems asked (`infer.seed`). A
training evaluation repeated under the same (run_id, branch, schedule, step) keeps its last
version; an inference row repeated exactly is kept once.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.appended import CorruptLine, read_jsonl
from analysis.atomic import write_bytes_atomic
from analysis.schema import INFERENCE, METADATA_KEY, SCHEMA_VERSION, TRAINING, TRAINING_KEY
from scaling.configuration import ConfigError
from scaling.sweep import store

_ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _check_value(value, kind, where: str, column: str):
    if kind is float:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: column {column!r} must be a number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: column {column!r} must be an integer, got {value!r}")
        return value
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: column {column!r} must be {kind.__name__}, got {value!r}")
    return value


def read_rows(path: Path, schema: dict) -> list[dict]:
    """A jsonl table file's rows, each checked against the schema."""
    rows = []
    try:
        lines = list(read_jsonl(path))
    except CorruptLine as e:
        raise ConfigError(str(e)) from None
    for line_no, row in lines:
        where = f"{path}:{line_no}"
        missing = [c for c in schema if c not in row]
        if missing:
            raise ConfigError(f"{where}: missing required column(s) {', '.join(missing)}")
        rows.append({**row, **{c: _check_value(row[c], kind, where, c) for c, kind in schema.items()}})
    return rows


def table(rows: list[dict], schema: dict, key: tuple[str, ...] | None) -> pa.Table:
    """Rows as an Arrow table: schema columns first (typed), extra columns after, versioned."""
    frame = pd.DataFrame(rows, columns=None if rows else list(schema))
    extras = [c for c in frame.columns if c not in schema]
    frame = frame[list(schema) + extras]
    if len(frame):
        frame = frame.drop_duplicates(subset=list(key) if key else None, keep="last").reset_index(drop=True)
    fields = [pa.field(c, _ARROW[kind], nullable=kind is float) for c, kind in schema.items()]
    arrow_schema = pa.schema(fields)
    columns = {c: pa.array(frame[c].tolist(), type=_ARROW[kind]) for c, kind in schema.items()}
    result = pa.table(columns, schema=arrow_schema)
    for c in extras:
        result = result.append_column(c, pa.array(frame[c].tolist()))
    return result.replace_schema_metadata({METADATA_KEY: SCHEMA_VERSION.encode()})


def with_training_seed(rows: list[dict], seed: int) -> list[dict]:
    """Inference rows with `seed` the training seed of their run (the replicate axis the findings
    resample, as in the training table) and `problem_seed` the seed of the problems asked
    (`infer.seed`, which `scaling infer` writes as `seed` in the run's own rows)."""
    return [{**{k: v for k, v in row.items() if k != "seed"}, "seed": int(seed),
             "problem_seed": row.get("problem_seed", row.get("seed"))} for row in rows]


def write_atomic(t: pa.Table, path: Path) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(t, buffer)
    write_bytes_atomic(path, buffer.getvalue().to_pybytes())


def collect(sweep_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write training.parquet and inference.parquet for the sweep; returns row counts."""
    sweep_dir = Path(sweep_dir)
    runs = store.existing_runs(sweep_dir)
    if not runs:
        raise ConfigError(f"{sweep_dir}: no planned runs here (run.json files); is this a sweep folder?")
    training, inference = [], []
    for name in runs:
        for file_name, schema, rows in (("training_rows.jsonl", TRAINING, training),
                                        ("inference_rows.jsonl", INFERENCE, inference)):
            path = sweep_dir / name / file_name
            if path.is_file():
                found = read_rows(path, schema)
                if schema is INFERENCE:
                    found = with_training_seed(found, store.load_plan(sweep_dir / name).point["seed"])
                rows.extend(found)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"training": table(training, TRAINING, TRAINING_KEY),
              "inference": table(inference, INFERENCE, None)}
    for name, t in tables.items():
        write_atomic(t, out_dir / f"{name}.parquet")
    return {name: t.num_rows for name, t in tables.items()}


def configure_collect(parser):
    parser.add_argument("sweep_dir", help="the sweep folder (e.g. sweeps/smoke)")
    parser.add_argument("-o", "--out", default="results", help="folder for training.parquet and inference.parquet")


def run_collect(args) -> int:
    counts = collect(Path(args.sweep_dir), Path(args.out))
    out = Path(args.out)
    print(f"{out / 'training.parquet'}: {counts['training']} rows\n{out / 'inference.parquet'}: "
          f"{counts['inference']} rows (schema version {SCHEMA_VERSION})")
    return 0
