"""Decode throughput: the KV-cache decoder against full recompute, at 512 generated tokens.

Both decoders are greedy and emit exactly the same tokens (tests/test_decode.py); the stop token
is disabled so every row generates all 512. Full recompute runs the whole forward pass over the
sequence so far at every step (padded to a multiple of 64 tokens, one compiled step per length).
Compilation is excluded: each decoder runs once to warm up; then the two are timed alternately
`--repeats` times and the fastest run of each counts (the least disturbed by other processes).

    .venv/bin/python benchmarks/decode.py [--presets p100k p1m p3m] [--batch 1] [--generated 512] [--repeats 3]

Prints a table, then one JSON line per configuration (preset, generated_tokens,
tokens_per_s_cache, tokens_per_s_recompute, speedup, batch, prompt_tokens, device).
"""

from __future__ import annotations

import argparse
import json
import time

import flax.linen as nn
import jax
import numpy as np

from scaling import decode
from scaling.presets import PRESET_DIR, load_model_config
from scaling.model import init_params

NEVER = -1  # a token id no model emits: every row generates the full length


def _seconds(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn().tokens)
    return time.perf_counter() - start


def measure(preset: str, batch: int, prompt_tokens: int, generated: int, repeats: int) -> dict:
    config = load_model_config(PRESET_DIR / f"{preset}.gin")
    params = nn.unbox(init_params(config, jax.random.PRNGKey(0)))
    protocol = decode.Protocol(eos_id=NEVER, pad_id=0, think_open_id=NEVER, think_close_id=NEVER,
                               wait_ids=(0,), close_ids=(0,), max_answer_tokens=generated)
    rng = np.random.default_rng(0)
    prompts, lengths = decode.pad_prompts(rng.integers(3, 259, (batch, prompt_tokens)).tolist(), 0)
    with_cache = lambda: decode.decode(config, params, prompts, lengths, protocol, 0)
    recompute = lambda: decode.decode_by_recompute(config, params, prompts, lengths, protocol, 0)
    with_cache(), recompute()  # compile every shape first
    times = [(_seconds(with_cache), _seconds(recompute)) for _ in range(repeats)]
    cached, recomputed = min(t[0] for t in times), min(t[1] for t in times)
    return {"preset": preset, "generated_tokens": generated,
            "tokens_per_s_cache": batch * generated / cached,
            "tokens_per_s_recompute": batch * generated / recomputed,
            "speedup": recomputed / cached, "batch": batch, "prompt_tokens": prompt_tokens,
            "device": jax.devices()[0].device_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["p100k", "p1m", "p3m"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt_tokens", type=int, default=32)
    parser.add_argument("--generated", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each decoder; the fastest counts")
    args = parser.parse_args()
    rows = [measure(p, args.batch, args.prompt_tokens, args.generated, args.repeats) for p in args.presets]
    print(f"{'preset':>8} {'generated':>9} {'cache tok/s':>12} {'recompute tok/s':>16} {'speedup':>8}  device")
    for r in rows:
        print(f"{r['preset']:>8} {r['generated_tokens']:>9} {r['tokens_per_s_cache']:>12.1f} "
              f"{r['tokens_per_s_recompute']:>16.1f} {r['speedup']:>7.1f}x  {r['device']}")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
