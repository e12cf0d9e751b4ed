"""`scaling augment --gin_file=gin/data/<file>.gin`: run a teacher over a source into the cache.

Sources: the synthetic corpus (its training stream), a folder of .txt files (one document each)
and .jsonl files (one document a line, in `text_field`), or a TFDS dataset by name. Re-running
resumes: documents whose key is already in the cache are skipped, so each is written once.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gin
from tqdm import tqdm

from scaling import configuration
from scaling.configuration import ConfigError
from scaling.data import cache as cache_lib
from scaling.data.corpus import Document, make_document
from scaling.data.teachers import TEACHERS, Teacher, TeacherError, concurrent_map, require_values, teacher_named

SOURCES = ("synthetic", "folder", "tfds")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """What to augment, with which teacher, into which cache."""
    cache_dir: str
    source: str = "synthetic"        # "synthetic", "folder" or "tfds"
    path: str = ""                   # folder path, or TFDS dataset name
    split: str = "train"             # TFDS split
    data_dir: str = ""               # TFDS data folder (local or gs://); "" = TFDS's default
    text_field: str = "text"         # .jsonl / TFDS feature holding the text
    n_documents: int = 1000          # synthetic: how many; folder/tfds: at most (0 = all)
    seed: int = 0                    # synthetic stream seed
    # @ProgrammaticTeacher() or @OpenAICompatibleTeacher(), settings bound on the class
    # (OpenAICompatibleTeacher.model = ...), or by name: "programmatic" or "openai"
    teacher: Teacher | str = "programmatic"

    def check(self) -> None:
        require_values(self)
        if self.source not in SOURCES:
            raise ConfigError(f"AugmentConfig.source: one of {SOURCES}, got {self.source!r}")
        if isinstance(self.teacher, str) and self.teacher not in TEACHERS:
            raise ConfigError(f"AugmentConfig.teacher: one of {tuple(TEACHERS)} (or @ProgrammaticTeacher(), "
                              f"@OpenAICompatibleTeacher()), got {self.teacher!r}")
        if not isinstance(self.teacher, str) and not hasattr(self.teacher, "think"):
            raise ConfigError(f"AugmentConfig.teacher: not a teacher (bind @ProgrammaticTeacher() or "
                              f"@OpenAICompatibleTeacher()), got {self.teacher!r}")
        if self.source != "synthetic" and not self.path:
            raise ConfigError(f"AugmentConfig.path: required for source {self.source!r}")
        if self.source == "folder" and not Path(self.path).is_dir():
            raise ConfigError(f"AugmentConfig.path: {self.path!r} is not a folder")
        teacher = TEACHERS[self.teacher] if isinstance(self.teacher, str) else self.teacher
        if teacher.needs_synthetic_documents and self.source != "synthetic":
            raise ConfigError("AugmentConfig.teacher: the programmatic teacher needs source 'synthetic'")
        if self.n_documents < 0:
            raise ConfigError(f"AugmentConfig.n_documents: must be >= 0, got {self.n_documents}")


def source_documents(config: AugmentConfig) -> Iterator[tuple[str, str, Document | None]]:
    """(doc_id, text, synthetic Document or None) of the configured source, in a fixed order."""
    limit = config.n_documents or None
    if config.source == "synthetic":
        for i in range(config.n_documents):
            doc = make_document("train", config.seed, i)
            yield doc.doc_id, doc.text, doc
    elif config.source == "folder":
        count = 0
        for path in sorted(Path(config.path).rglob("*")):
            for doc_id, text in _folder_file(path, config.text_field):
                if limit is not None and count >= limit:
                    return
                count += 1
                yield doc_id, text, None
    else:
        import tensorflow_datasets as tfds  # here: heavy (TensorFlow), needed only for source 'tfds'
        try:
            dataset = tfds.load(config.path, split=config.split, data_dir=config.data_dir or None,
                                shuffle_files=False)
        except Exception as e:
            raise ConfigError(f"AugmentConfig.path: TFDS dataset {config.path!r} split {config.split!r}: {e}") from None
        for i, example in enumerate(tfds.as_numpy(dataset)):
            if limit is not None and i >= limit:
                return
            if config.text_field not in example:
                raise ConfigError(f"AugmentConfig.text_field: {config.text_field!r} not in {sorted(example)}")
            yield f"{config.path}/{config.split}/{i}", example[config.text_field].decode("utf-8"), None


def _folder_file(path: Path, text_field: str) -> Iterator[tuple[str, str]]:
    """A folder's .txt file (one document) or .jsonl file (one a line, in `text_field`); a file
    that is not UTF-8 text, or a line without a string in the field, is refused naming it."""
    if path.suffix not in (".txt", ".jsonl"):
        return
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it, or move it out of "
                          f"AugmentConfig.path") from None
    if path.suffix == ".txt":
        yield str(path), content
        return
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)[text_field]
        except (ValueError, KeyError, TypeError):
            text = None
        if not isinstance(text, str):
            raise ConfigError(f"{path}:{number}: not a JSON object with a string field {text_field!r} "
                              f"(AugmentConfig.text_field)") from None
        yield f"{path}:{number}", text


def augment(config: AugmentConfig, progress: bool = True, teacher=None) -> dict:
    """Augment every source document not yet cached (with `teacher`, else the one `config`
    names); returns the run's summary."""
    config.check()
    teacher = teacher if teacher is not None else teacher_named(config.teacher)
    start = time.perf_counter()
    written = skipped = failed = tokens = 0
    with cache_lib.CacheWriter(config.cache_dir) as writer:
        def todo():
            nonlocal skipped
            for doc_id, text, doc in source_documents(config):
                doc_hash = cache_lib.document_hash(text)
                key = cache_lib.cache_key(doc_hash, teacher.teacher_id, teacher.config_hash)
                if key in writer:
                    skipped += 1
                    continue
                yield key, doc_hash, doc_id, text, doc

        def work(item):
            key, doc_hash, doc_id, text, doc = item
            try:
                return teacher.think(text, doc)
            except TeacherError as e:
                return e

        total = config.n_documents if config.source == "synthetic" else None
        bar = tqdm(total=total, disable=not progress, unit="doc", file=sys.stderr, dynamic_ncols=True)
        for (key, doc_hash, doc_id, text, doc), result in concurrent_map(work, todo(), teacher.concurrency):
            if isinstance(result, TeacherError):
                failed += 1
                print(f"scaling augment: {doc_id}: {result}", file=sys.stderr)
                continue
            record = {"key": key, "doc_hash": doc_hash, "teacher_id": teacher.teacher_id,
                      "config_hash": teacher.config_hash, "doc_id": doc_id, "text": text,
                      "thinking": result.text, "tokens_generated": result.tokens_generated,
                      "teacher_flops": teacher.flops_per_token * result.tokens_generated,
                      "difficulty": doc.difficulty if doc is not None else None}
            if writer.append(record):
                written += 1
                tokens += result.tokens_generated
            bar.n = written + skipped
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(docs_s=f"{written / elapsed:.1f}", tokens_s=f"{tokens / elapsed:.0f}", refresh=False)
            bar.update(0)
        bar.close()
    elapsed = time.perf_counter() - start
    return {"cache_dir": str(config.cache_dir), "teacher_id": teacher.teacher_id, "config_hash": teacher.config_hash,
            "written": written, "skipped": skipped, "failed": failed, "tokens_generated": tokens,
            "teacher_flops": teacher.flops_per_token * tokens, "seconds": round(elapsed, 3),
            "docs_per_s": round(written / elapsed, 2) if elapsed else 0.0,
            "tokens_per_s": round(tokens / elapsed, 1) if elapsed else 0.0}


def configure_augment(parser):
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")


def run_augment(args) -> int:
    configuration.parse(args.gin)
    with configuration.explained(args.gin):
        config = AugmentConfig()
        config.check()
        teacher = teacher_named(config.teacher)  # before the config is written: it holds the teacher's settings
    warning = getattr(teacher, "key_warning", lambda: None)()
    if warning:
        print(f"scaling augment: warning: {warning}", file=sys.stderr)
    try:
        getattr(teacher, "check_answers", lambda: None)()
    except TeacherError as e:
        print(f"scaling augment: error: {e}", file=sys.stderr)
        return 1
    configuration.write_config(config.cache_dir, f"augment-{time.strftime('%Y%m%dT%H%M%S')}.gin")
    summary = augment(config, progress=not args.no_progress, teacher=teacher)
    print(json.dumps(summary))
    if summary["failed"]:
        print(f"scaling augment: {summary['failed']} documents failed; run again to retry them", file=sys.stderr)
        return 1
    return 0
