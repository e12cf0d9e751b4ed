"""`scaling report` with what only the sweep side knows: a sweep folder is collected into tables
(by `scaling collect`'s own code), its runs' states are counted, and when every run evaluated on
the synthetic corpus the generator's entropy is the true floor set beside the fitted E.

The command itself is analysis.cli's; this module gives it a `SweepSupport`
(analysis.report.sources), so that analysis never imports scaling.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

import pandas as pd

from analysis import cli
from scaling.data import entropy
from scaling.sweep import collect

_EVAL_CORPUS = re.compile(r"eval_corpus\s*=\s*['\"]([^'\"]*)['\"]")
FLOOR_DOCUMENTS = 2000


def run_configs(path: Path) -> list[Path]:
    """The run folders' config.gin files of a sweep folder, or of the sweep a results folder is in."""
    if not path.is_dir():
        return []
    return sorted(path.glob("*/config.gin")) or sorted(path.parent.glob("*/config.gin"))


@functools.lru_cache(maxsize=8)
def synthetic_floor(seq_len: int | None, vocabulary_name: str = "bytes", n_documents: int = FLOOR_DOCUMENTS) -> dict:
    """The synthetic generator's entropy per token of the runs' vocabulary (ModelConfig.vocabulary,
    scaling.data.pipeline.use_vocabulary), a Monte Carlo estimate over `n_documents`. The
    vocabulary brings TensorFlow, so it is imported only when a floor is computed."""
    from scaling.data import vocabulary

    encode = vocabulary.get_vocabulary(vocabulary_name).encode
    return {**entropy.entropy(encode, n_documents=n_documents, seq_len=seq_len), "vocabulary": vocabulary_name}


@dataclasses.dataclass(frozen=True)
class SweepFolders:
    """analysis.report.sources.SweepSupport for this package's sweep folders. floor_documents:
    the documents the true floor is estimated over (its standard error shrinks as their root)."""

    floor_documents: int = FLOOR_DOCUMENTS

    def collect(self, sweep_dir: Path, out_dir: Path) -> None:
        collect.collect(sweep_dir, out_dir)

    def is_sweep(self, path: Path) -> bool:
        return any(Path(path).glob("*/run.json"))

    def run_states(self, path: Path) -> dict[str, int]:
        """How many runs are finished, running, failed or not started."""
        states = {}
        for run in sorted(path.glob("*/run.json")) if path.is_dir() else []:
            status = run.parent / "status.json"
            state = json.loads(status.read_text()).get("state", "unknown") if status.is_file() else "not started"
            states[state] = states.get(state, 0) + 1
        return states

    def true_floor(self, path: Path, training: pd.DataFrame) -> dict | None:
        """The generator's entropy per token (scaling.data.entropy) when every run under `path`
        evaluated on the synthetic corpus (train's eval_corpus, "synthetic" unless bound otherwise),
        tokens counted at the smallest seq_len of the table; None when that is not known."""
        configs = run_configs(path)
        if not configs:
            return None
        corpora = {m.group(1) for c in configs for m in _EVAL_CORPUS.finditer(c.read_text())} or {"synthetic"}
        if corpora != {"synthetic"} or any(not _EVAL_CORPUS.search(c.read_text()) and "eval_corpus" in c.read_text()
                                           for c in configs):
            return None
        seq_len = int(training["seq_len"].min()) if "seq_len" in training and len(training) else None
        models = [c.parent / "model.json" for c in configs]
        vocabularies = {json.loads(m.read_text()).get("vocabulary", "bytes") if m.is_file() else "bytes"
                        for m in models}
        if len(vocabularies) != 1:
            return None  # tokens of several vocabularies: no one floor per token
        return {**synthetic_floor(seq_len, vocabularies.pop(), self.floor_documents), "source": f"the synthetic generator's entropy ({len(configs)} runs "
                                                      "evaluated on the synthetic corpus)"}


SWEEP_FOLDERS = SweepFolders()
configure_report = cli.configure_report


def run_report(args) -> int:
    return cli.run_report(args, sweep=SWEEP_FOLDERS)
