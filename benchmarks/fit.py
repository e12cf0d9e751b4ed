"""Time the full Chinchilla-grid fit (4,500 starts) on Epoch's 240 points and 1,000 bootstrap refits.

Prints a table and one JSON line (n_points, n_starts, fit_s, n_bootstrap, bootstrap_s, ...).
fit_s and bootstrap_s are warm timings (programs already compiled, as in any session that fits
more than once); the first-call times, compilation included, are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

from analysis.fitting import Problem, distinct_optima
from analysis.forms import get_form
from analysis.tables import canonical_table

EPOCH = Path(__file__).resolve().parent.parent / "tests" / "data" / "refdata" / "chinchilla_epoch_svg.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    points = pd.read_csv(EPOCH).sort_values("loss").iloc[:-5]
    frame, _ = canonical_table(points, ("N", "D"), target="loss",
                               columns={"N": "Model Size", "C": "Training FLOP", "loss": "loss"})
    form = get_form("chinchilla")
    options = form.prepare(form.options_from({}), frame)
    starts = form.starts(options)
    problem = Problem(form, options, frame, 1e-3)

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t

    (x, f, converged, _), fit_cold = timed(lambda: problem.multistart(starts))
    (x, f, converged, _), fit_warm = timed(lambda: problem.multistart(starts))
    warm = distinct_optima(x, f, 2)
    _, boot_cold = timed(lambda: problem.bootstrap(warm, args.bootstrap, seed=0))
    (_, boot_converged), boot_warm = timed(lambda: problem.bootstrap(warm, args.bootstrap, seed=1))
    best = form.to_parameters(x[0], options)
    result = {"n_points": len(frame), "n_starts": len(starts), "fit_s": round(fit_warm, 3),
              "n_bootstrap": args.bootstrap, "bootstrap_s": round(boot_warm, 3),
              "fit_first_call_s": round(fit_cold, 3), "bootstrap_first_call_s": round(boot_cold, 3),
              "objective": float(f[0]), "converged": bool(converged[0]),
              "bootstrap_converged_fraction": float(boot_converged.mean()),
              "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}
    print(f"{'measurement':<44}{'seconds':>10}")
    print(f"{'fit, 4,500 starts x 240 points (warm)':<44}{fit_warm:>10.2f}")
    print(f"{'fit, first call (compilation included)':<44}{fit_cold:>10.2f}")
    print(f"{f'bootstrap, {args.bootstrap} refits (warm)':<44}{boot_warm:>10.2f}")
    print(f"{'bootstrap, first call (compilation included)':<44}{boot_cold:>10.2f}")
    print("estimates: " + ", ".join(f"{k}={float(v):.5g}" for k, v in best.items())
          + f"; objective {float(f[0]):.6g}; load average {result['load_average_1m']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
