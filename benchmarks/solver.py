"""analysis.solver.minimize_batch against optax.lbfgs (zoom line search) under jax.vmap.

The two workloads of analysis.fitting on Epoch's 240 Chinchilla points (Huber delta 1e-3 on log
loss), each run as fitting.Problem runs it with the solver swapped: the 4,500-start fit (every
start of the grid for 3 iterations, the best 64 to convergence, at most 500 iterations) and the
1,000-draw bootstrap (multinomial weights, the fit's two best distinct optima as warm starts, in
chunks of 100 draws, at most 300 iterations). Both solvers stop a start at max |gradient| <= 1e-10
or a relative decrease <= 1e-12. Each program is compiled first (on one chunk); the timings are of a
warm call. Prints each timing as it is measured, a table, then one JSON line with the ratios
(optax time / hand-written time) and the objective gaps.
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


def optax_lbfgs_batch(fun, x0, data, shared_data: bool, max_iter: int, gtol: float, ftol: float = 1e-12):
    """optax.lbfgs with its default zoom line search, one start per vmap lane, stopped as
    analysis.solver stops a start (max |gradient| <= gtol, or a relative decrease <= ftol);
    returns (x, f, converged)."""
    solver = optax.lbfgs()

    def one(x_start, d):
        value_fn = lambda x: fun(x, d)  # noqa: E731
        value_and_grad = optax.value_and_grad_from_state(value_fn)

        def step(carry):
            x, state, k, _ = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = solver.update(grad, state, x, value=value, grad=grad, value_fn=value_fn)
            return optax.apply_updates(x, updates), state, k + 1, value

        def small(state, previous):
            value, grad = optax.tree.get(state, "value"), optax.tree.get(state, "grad")
            return (jnp.max(jnp.abs(grad)) <= gtol) | ((previous - value) <= ftol * jnp.maximum(1e-3, jnp.abs(value)))

        def keep_going(carry):
            _, state, k, previous = carry
            return (k <= 1) | ((k < max_iter) & ~small(state, previous)
                               & jnp.isfinite(optax.tree.get(state, "value")))

        start = (x_start, solver.init(x_start), 0, jnp.asarray(jnp.inf, x_start.dtype))
        x, state, _, previous = jax.lax.while_loop(keep_going, step, start)
        value = optax.tree.get(state, "value")
        return x, jnp.where(jnp.isfinite(value), value, jnp.inf), small(state, previous)

    return jax.vmap(one, in_axes=(0, None if shared_data else 0))(x0, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=4500, help="the first this many starts of the grid")
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

    def hand(x0, w, shared, iters):
        return minimize_batch(problem.objective, x0, w, shared, max_iter=iters)[:3]

    def lbfgs(x0, w, shared, iters):
        return optax_lbfgs_batch(problem.objective, x0, w, shared, iters, 1e-10)

    results = {}
    with jax.enable_x64(True):
        for name, solve in (("hand-written BFGS", hand), ("optax.lbfgs (zoom)", lbfgs)):
            shared = jax.jit(lambda x0, w, iters, solve=solve: solve(x0, w, True, iters))
            per_start = jax.jit(lambda x0, w, iters, solve=solve: solve(x0, w, False, iters))

            def fit():
                ones = jnp.ones(problem.n)
                x, f, _ = shared(jnp.asarray(starts, jnp.float64), ones, 3)
                best = np.argsort(np.where(np.isfinite(np.asarray(f)), np.asarray(f), np.inf), kind="stable")[:64]
                return jax.block_until_ready(shared(x[best], ones, 500))

            def bootstrap(n_draws=args.bootstrap):
                out = []
                for first in range(0, n_draws, 100):
                    part = counts[first:first + 100]
                    x0 = jnp.asarray(np.tile(warm, (len(part), 1)), jnp.float64)
                    w = jnp.asarray(np.repeat(part, len(warm), axis=0), jnp.float64)
                    out.append([np.asarray(v) for v in per_start(x0, w, 300)])
                return [np.concatenate(parts) for parts in zip(*out)]

            row = {}
            for label, run, compile_only in (("fit", fit, fit), ("bootstrap", bootstrap, lambda: bootstrap(100))):
                compile_only()                                          # compile (one chunk of draws)
                t = time.perf_counter()
                x, f, converged = run()
                row[f"{label}_s"] = time.perf_counter() - t
                print(f"{name}, {label}: {row[f'{label}_s']:.2f} s", flush=True)
                f = np.where(np.isfinite(np.asarray(f)), np.asarray(f), np.inf)
                if label == "fit":
                    row["fit_best_objective"] = float(f.min())
                    row["fit_converged_fraction"] = float(np.mean(converged))
                else:
                    row["bootstrap_objective_sum"] = float(f.reshape(args.bootstrap, len(warm)).min(axis=1).sum())
                    row["bootstrap_converged_fraction"] = float(np.mean(converged))
            results[name] = row
    hand_row, opt = results["hand-written BFGS"], results["optax.lbfgs (zoom)"]
    print(f"{'solver':<22}{'fit s':>9}{'best objective':>18}{'converged':>11}{'bootstrap s':>13}{'converged':>11}")
    for name, r in results.items():
        print(f"{name:<22}{r['fit_s']:>9.2f}{r['fit_best_objective']:>18.10g}{r['fit_converged_fraction']:>11.3f}"
              f"{r['bootstrap_s']:>13.2f}{r['bootstrap_converged_fraction']:>11.3f}")
    print(json.dumps({
        "n_starts": len(starts), "n_bootstrap": args.bootstrap,
        "fit_time_ratio_optax_over_hand": round(opt["fit_s"] / hand_row["fit_s"], 3),
        "bootstrap_time_ratio_optax_over_hand": round(opt["bootstrap_s"] / hand_row["bootstrap_s"], 3),
        "fit_best_objective_gap_optax_minus_hand": opt["fit_best_objective"] - hand_row["fit_best_objective"],
        "bootstrap_objective_gap_optax_minus_hand": opt["bootstrap_objective_sum"] - hand_row["bootstrap_objective_sum"],
        "results": results, "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
