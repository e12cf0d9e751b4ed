"""The device's peak FLOP rate, the denominator of MFU (model FLOPs utilisation).

Data-sheet peaks for known accelerators; on anything else (a CPU) the best rate of a few large
jitted matmuls, which is the honest denominator where the nominal peak is unknown.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets; matched against device_kind.
DEVICE_PEAK_FLOPS = (
    ("TPU v6 lite", 918e12), ("TPU v6e", 918e12),
    ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
    ("TPU v5p", 459e12), ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("H200", 989e12), ("H100", 989e12),
    ("A100", 312e12),
)


def measure_matmul_peak(dtype=jnp.float32, size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of the best of a few large jitted matmuls on the default device.

    The achievable dense-matmul rate is the honest MFU denominator on a CPU, whose nominal
    peak depends on vector units and clocks nobody reports.
    """
    on_cpu = jax.default_backend() == "cpu"
    n = size or (1024 if on_cpu else 8192)
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype)
    chain = 4  # several products per call so dispatch overhead is amortised
    fn = jax.jit(lambda x, y: [x @ (y + i) for i in range(chain)])
    jax.block_until_ready(fn(a, b))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(a, b))
        best = min(best, time.perf_counter() - start)
    return chain * 2 * n ** 3 / best


def device_peak_flops(dtype=jnp.float32) -> tuple[float, str]:
    """(peak FLOP/s per device, where it came from): the data-sheet table, else measured."""
    kind = jax.devices()[0].device_kind
    for name, peak in DEVICE_PEAK_FLOPS:
        if name.lower() in kind.lower():
            return peak, f"{kind} bf16 data sheet"
    return measure_matmul_peak(dtype), f"{kind} measured matmul peak"
