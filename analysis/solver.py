"""Batched BFGS: many starts of one small problem minimised at once, as one JAX program.

A scaling-law fit is a few parameters and thousands of starts (4,500 for the Chinchilla grid), or
a thousand bootstrap resamples: the starts are a batch dimension of a `jax.lax.while_loop`, not a
Python loop, and each start stops on its own. benchmarks/solver.py measures this against
optax.lbfgs (zoom line search) under jax.vmap; docs/fitting.md has the figures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def minimize_batch(fun, x0, data, shared_data: bool, max_iter: int = 400, gtol: float = 1e-10,
                   ftol: float = 1e-12, max_backtracks: int = 40):
    """BFGS with Armijo backtracking on a batch of starts x0 [S, P]; fun(x [P], data) -> scalar.

    `data` has a leading axis S unless shared_data. Each start stops on its own (gradient or
    relative decrease below tolerance, or no descent step found); the batch runs until all have.
    A start whose objective or gradient is not finite at x0 is left where it is, not converged
    (its f is not finite).
    Returns (x, f, converged, iterations) per start.
    """
    in_axes = (0, None) if shared_data else (0, 0)
    value_and_grad = jax.vmap(jax.value_and_grad(fun), in_axes=in_axes)
    values = jax.vmap(fun, in_axes=in_axes)
    n_starts, n_params = x0.shape
    eye = jnp.eye(n_params, dtype=x0.dtype)

    def line_search(x, f, p, slope, done):
        def accept(ft, t):
            return (ft <= f + 1e-4 * t * slope) & jnp.isfinite(ft)

        def cond(c):
            return (c[3] < max_backtracks) & ~jnp.all(c[2] | done)

        def body(c):
            t, ft, ok, k = c
            t = jnp.where(ok, t, 0.5 * t)
            ft_new = values(x + t[:, None] * p, data)
            return t, jnp.where(ok, ft, ft_new), ok | accept(ft_new, t), k + 1

        ft0 = values(x + p, data)
        ones = jnp.ones(n_starts, dtype=x.dtype)
        return jax.lax.while_loop(cond, body, (ones, ft0, accept(ft0, ones), 0))[:3]

    def step(c):
        x, f, g, h, it, done, converged = c
        p = -jnp.einsum("sij,sj->si", h, g)
        slope = jnp.sum(p * g, -1)
        descent = slope < 0
        p = jnp.where(descent[:, None], p, -g)
        slope = jnp.where(descent, slope, -jnp.sum(g * g, -1))
        h = jnp.where(descent[:, None, None], h, eye)
        t, _, found = line_search(x, f, p, slope, done)
        move = found & ~done
        x_new = jnp.where(move[:, None], x + t[:, None] * p, x)
        f_new, g_new = value_and_grad(x_new, data)
        s, y = x_new - x, g_new - g
        sy = jnp.sum(s * y, -1)
        update = move & (sy > 1e-12 * jnp.sqrt(jnp.sum(s * s, -1) * jnp.sum(y * y, -1)))
        rho = jnp.where(update, 1.0 / jnp.where(update, sy, 1.0), 0.0)
        v = eye - rho[:, None, None] * jnp.einsum("si,sj->sij", s, y)
        h_new = jnp.einsum("sij,sjk,slk->sil", v, h, v) + rho[:, None, None] * jnp.einsum("si,sj->sij", s, s)
        h_new = jnp.where(update[:, None, None], h_new, h)
        small_gradient = jnp.max(jnp.abs(g_new), -1) <= gtol
        small_decrease = move & ((f - f_new) <= ftol * jnp.maximum(1e-3, jnp.abs(f_new)))
        stuck = ~found & ~done
        newly = ~done & (small_gradient | small_decrease | stuck)
        converged = converged | (newly & (small_gradient | small_decrease | (stuck & (jnp.max(jnp.abs(g_new), -1) <= 1e-6))))
        return x_new, f_new, g_new, h_new, it + 1, done | newly, converged

    def keep_going(c):
        return (c[4] < max_iter) & ~jnp.all(c[5])

    f0, g0 = value_and_grad(x0, data)
    bad = ~jnp.isfinite(f0) | ~jnp.all(jnp.isfinite(g0), -1)
    f0 = jnp.where(bad, jnp.inf, f0)
    g0 = jnp.where(bad[:, None], 0.0, g0)
    state = (x0, f0, g0, jnp.broadcast_to(eye, (n_starts, n_params, n_params)), 0, bad, jnp.zeros(n_starts, bool))
    x, f, g, _, iterations, done, converged = jax.lax.while_loop(keep_going, step, state)
    return x, f, converged, iterations
