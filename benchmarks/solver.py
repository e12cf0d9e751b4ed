"""analysis.solver.minimize_batch against optax.lbfgs (zoom line search) under jax.vmap.

Two workloads, both on Epoch's 240 Chinchilla points (Huber delta 1e-3 on log loss, the fit of
analysis.fitting): every start of the 4,500-start grid run to convergence, and a 1,000-draw
bootstrap (multinomial weights, two warm starts per draw, as fitting.Problem.bootstrap runs it).
Each solver's program is compiled first; the timings are of a second, warm call. Both stop a
start at max |gradient| <= gtol or after max_iter iterations. Prints a table, then one JSON line
with the ratios (optax time / hand-written time; objective gaps).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from analysis.fitting import Problem, distinct_optima
from analysis.forms import get_form
from analysis.solver import minimize_batch
from analysis.tables import canonical_table

EPOCH = Path(__file__).resolve().parent.parent / "tests" / "data" / "refdata" / "chinchilla_epoch_svg.csv"


def optax_lbfgs_batch(fun, x0, data, shared_data: bool, max_iter: int, gtol: float):
    """optax.lbfgs with its default zoom line search, one start per vmap lane; returns (x, f, converged)."""
    solver = optax.lbfgs()

    def one(x_start, d):
        value_fn = lambda x: fun(x, d)  # noqa: E731
        value_and_grad = optax.value_and_grad_from_state(value_fn)

        def step(carry):
            x, state, k = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = solver.update(grad, state, x, value=value, grad=grad, value_fn=value_fn)
            return optax.apply_updates(x, updates), state, k + 1

        def keep_going(carry):
            _, state, k = carry
            grad = optax.tree.get(state, "grad")
            return (k == 0) | ((k < max_iter) & (jnp.max(jnp.abs(grad)) > gtol)
                               & jnp.isfinite(optax.tree.get(state, "value")))

        x, state, _ = jax.lax.while_loop(keep_going, step, (x_start, solver.init(x_start), 0))
        value, grad = optax.tree.get(state, "value"), optax.tree.get(state, "grad")
        return x, jnp.where(jnp.isfinite(value), value, jnp.inf), jnp.max(jnp.abs(grad)) <= gtol

    return jax.vmap(one, in_axes=(0, None if shared_data else 0))(x0, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=4500, help="the first this many starts of the grid")
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--gtol", type=float, default=1e-10)
    args = parser.parse_args()
    points = pd.read_csv(EPOCH).sort_values("loss").iloc[:-5]
    frame, _ = canonical_table(points, ("N", "D"), target="loss",
                               columns={"N": "Model Size", "C": "Training FLOP", "loss": "loss"})
    form = get_form("chinchilla")
    options = form.prepare(form.options_from({}), frame)
    problem = Problem(form, options, frame, 1e-3)
    starts = form.starts(options)[:args.starts]
    x_best, f_best, _, _ = problem.multistart(starts)
    warm = distinct_optima(x_best, f_best, 2)
    counts = np.random.default_rng(0).multinomial(problem.n, np.full(problem.n, 1 / problem.n), size=args.bootstrap)

    solvers = {
        "hand-written BFGS": lambda x0, w, shared: minimize_batch(problem.objective, x0, w, shared, max_iter=args.max_iter,
                                                                  gtol=args.gtol)[:3],
        "optax.lbfgs (zoom)": lambda x0, w, shared: optax_lbfgs_batch(problem.objective, x0, w, shared,
                                                                     args.max_iter, args.gtol),
    }
    results = {}
    with jax.enable_x64(True):
        grid = jnp.asarray(starts, jnp.float64)
        ones = jnp.ones(problem.n)
        boot_x0 = jnp.asarray(np.tile(warm, (args.bootstrap, 1)), jnp.float64)
        boot_w = jnp.asarray(np.repeat(counts, len(warm), axis=0), jnp.float64)
        for name, solve in solvers.items():
            fit = jax.jit(lambda x0, w, solve=solve: solve(x0, w, True))
            boot = jax.jit(lambda x0, w, solve=solve: solve(x0, w, False))
            row = {}
            for label, program, x0, w in (("fit", fit, grid, ones), ("bootstrap", boot, boot_x0, boot_w)):
                jax.block_until_ready(program(x0, w))                      # compile
                t = time.perf_counter()
                x, f, converged = jax.block_until_ready(program(x0, w))
                row[f"{label}_s"] = time.perf_counter() - t
                f = np.where(np.isfinite(np.asarray(f)), np.asarray(f), np.inf)
                if label == "fit":
                    row["fit_best_objective"] = float(f.min())
                    row["fit_converged_fraction"] = float(np.mean(converged))
                else:
                    per_draw = f.reshape(args.bootstrap, len(warm)).min(axis=1)
                    row["bootstrap_objective_sum"] = float(per_draw.sum())
                    row["bootstrap_converged_fraction"] = float(np.mean(converged))
            results[name] = row
    hand, opt = results["hand-written BFGS"], results["optax.lbfgs (zoom)"]
    print(f"{'solver':<22}{'fit s':>9}{'best objective':>18}{'converged':>11}{'bootstrap s':>13}{'converged':>11}")
    for name, r in results.items():
        print(f"{name:<22}{r['fit_s']:>9.2f}{r['fit_best_objective']:>18.10g}{r['fit_converged_fraction']:>11.3f}"
              f"{r['bootstrap_s']:>13.2f}{r['bootstrap_converged_fraction']:>11.3f}")
    print(json.dumps({
        "n_starts": len(starts), "n_bootstrap": args.bootstrap, "max_iter": args.max_iter, "gtol": args.gtol,
        "fit_time_ratio_optax_over_hand": round(opt["fit_s"] / hand["fit_s"], 3),
        "bootstrap_time_ratio_optax_over_hand": round(opt["bootstrap_s"] / hand["bootstrap_s"], 3),
        "fit_best_objective_gap_optax_minus_hand": opt["fit_best_objective"] - hand["fit_best_objective"],
        "bootstrap_objective_gap_optax_minus_hand": opt["bootstrap_objective_sum"] - hand["bootstrap_objective_sum"],
        "results": {k: {m: round(v, 6) if isinstance(v, float) else v for m, v in r.items()} for k, r in results.items()},
        "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
