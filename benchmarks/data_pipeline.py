"""Throughput of the data pipeline (seqio tasks -> packed numpy batches), per task.

Prints a table and one JSON line. Figures: trained tokens/s (loss-weighted tokens, padding
excluded) at steady state, packing efficiency (trained tokens / batch slots), seconds to the
first batch, and seconds to the first batch of a resume at the worst place in a chunk.
With --batch_cache, each stream is then read back from the batch cache (scaling/data/batch_cache.py,
in a fresh temporary folder): `cached_batches_per_s`.
Usage: .venv/bin/python benchmarks/data_pipeline.py [--batch_size 32] [--seq_len 256] [--batches 200]
       [--batch_cache] [--vocabulary synthetic_sp256] [--tasks synthetic_vanilla]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from scaling.data import batch_cache, pipeline  # noqa: E402
from scaling.data.source import DataSource  # noqa: E402



def measure(task: str, batch_size: int, seq_len: int, batches: int, vocabulary: str) -> dict:
    def source():
        return DataSource(task, batch_size, seq_len, vocabulary=vocabulary, cache_root=batch_cache.cache_root())

    start = time.perf_counter()
    stream = source().train_batches()
    next(stream)
    first = time.perf_counter() - start
    tokens = thinking = 0.0
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(stream)
        tokens += float(batch["loss_weights"].sum())
        thinking += float(batch["thinking_mask"].sum())
    seconds = time.perf_counter() - start
    stream.close()  # with the batch cache on, what was produced is stored now
    cached = None
    if batch_cache.cache_root() is not None:
        again = source().train_batches()
        next(again)
        start = time.perf_counter()
        for _ in range(batches):
            next(again)
        cached = batches / (time.perf_counter() - start)
        again.close()
    worst = pipeline.chunk_batches(batch_size, seq_len) - 1
    start = time.perf_counter()
    next(source().train_batches(start_batch=worst))
    resume = time.perf_counter() - start
    return {"task": task, "tokens_per_s": tokens / seconds, "batches_per_s": batches / seconds,
            "packing_efficiency": tokens / (batches * batch_size * seq_len),
            "thinking_fraction": thinking / tokens, "first_batch_s": first,
            "worst_resume_s": resume, "resume_skips_batches": worst, "cached_batches_per_s": cached}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--tasks", default=",".join(pipeline.SYNTHETIC_TASKS))
    parser.add_argument("--batch_cache", action="store_true",
                        help="also read each stream back from the batch cache (a fresh temporary folder)")
    parser.add_argument("--vocabulary", default="bytes", help="the synthetic tasks' vocabulary")
    args = parser.parse_args()
    if args.batch_cache:
        os.environ[batch_cache.CACHE_ENV] = tempfile.mkdtemp(prefix="batch-cache-")
    try:
        rows = [measure(t, args.batch_size, args.seq_len, args.batches, args.vocabulary) for t in args.tasks.split(",")]
    finally:
        if args.batch_cache:
            shutil.rmtree(os.environ[batch_cache.CACHE_ENV], ignore_errors=True)
    print(f"data pipeline, batch {args.batch_size} x seq_len {args.seq_len}, {args.batches} batches, "
          f"{os.cpu_count()} CPUs ({platform.machine()})")
    print(f"{'task':34s} {'tokens/s':>10s} {'batches/s':>9s} {'packing':>8s} {'thinking':>8s} "
          f"{'first s':>8s} {'resume s':>8s} {'cached b/s':>10s}")
    for r in rows:
        print(f"{r['task']:34s} {r['tokens_per_s']:10.0f} {r['batches_per_s']:9.1f} {r['packing_efficiency']:8.3f} "
              f"{r['thinking_fraction']:8.3f} {r['first_batch_s']:8.2f} {r['worst_resume_s']:8.2f} "
              f"{r['cached_batches_per_s'] or float('nan'):10.0f}")
    print(json.dumps({"benchmark": "data_pipeline", "batch_size": args.batch_size, "seq_len": args.seq_len,
                      "batches": args.batches, "cpus": os.cpu_count(),
                      "rows": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
