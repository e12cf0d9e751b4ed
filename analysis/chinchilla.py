"""The Chinchilla law L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022): its parameter names,
its loss in the log-sum-exp form the fits use, and its closed forms. Pure maths on parameter
mappings (floats, or arrays of bootstrap draws that broadcast together); forms, questions and
figures all take the law from here.

Closed forms: compute-optimal N and D for a training budget C = 6ND, N_opt = G (C/6)^(beta/(alpha+beta)),
G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. 2022, appendix D); the data that reaches a
loss; inference-aware sizing (Sardana & Frankle 2023); the best loss at a budget when a token is
worth m vanilla tokens and costs extra FLOPs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

NAMES = ("E", "A", "B", "alpha", "beta")


def initial_grid() -> np.ndarray:
    """Hoffmann et al.'s initialisation grid as Epoch ran it: 6 x 6 x 5 x 5 x 5 = 4,500 starts
    over (log A, log B, log E, alpha, beta)."""
    return np.array(list(itertools.product(
        np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
        np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))), dtype=np.float64)


def log_loss(log_a, log_b, log_e, alpha, beta, log_n, log_d, xp=np):
    """log(E + A/N^alpha + B/D^beta) in log-sum-exp form (Besiroglu et al. 2024); xp is numpy, or
    jax.numpy inside a traced fit."""
    return xp.logaddexp(xp.logaddexp(log_a - alpha * log_n, log_b - beta * log_d), log_e)


def log_parameters(p: Mapping[str, Any]) -> list:
    """(log A, log B, log E, alpha, beta): the fitting coordinates of a parameter mapping (log 0 is
    -inf, which the log-sum-exp form takes as a vanishing term: a law with E = 0)."""
    with np.errstate(divide="ignore"):
        return [np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]]


def gadre_parameters(params: Mapping[str, float]) -> dict[str, float]:
    """Gadre et al.'s (a, b, eta, E) of L(C, M) = E + (a M^eta + b M^-eta) C^-eta from a
    shared-exponent Chinchilla law's (E, A, B, alpha)."""
    eta = params["alpha"] / 2
    return {"E": params["E"], "a": params["A"] * 6 ** eta, "b": params["B"] * 6 ** eta, "eta": eta}


def in_domain(p: Mapping[str, Any]):
    """Where a parameter mapping (or each bootstrap draw of one) is a Chinchilla law: A, B, alpha
    and beta positive, E non-negative, all finite. A draw outside it (alpha < 0: a loss that grows
    with model size) has no compute-optimal split; answers give it NaN and drop it from intervals."""
    values = [np.asarray(p[k], float) for k in NAMES]
    with np.errstate(invalid="ignore"):
        finite = np.logical_and.reduce([np.isfinite(v) for v in values])
        return finite & (values[0] >= 0) & (values[1] > 0) & (values[2] > 0) & (values[3] > 0) & (values[4] > 0)


def chinchilla_loss(p: Mapping[str, Any], n, d):
    """L = E + A / N^alpha + B / D^beta: inf for extreme bootstrap draws, NaN for a draw outside
    the law's domain or at an N or D that is NaN (a draw without an optimum), without warnings."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return np.exp(log_loss(np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), np.asarray(p["alpha"], float),
                               np.asarray(p["beta"], float), np.log(n), np.log(d)))


def chinchilla_optimum(p: Mapping[str, Any], train_flops):
    """The (N, D) minimising L(N, D) subject to 6ND = train_flops, in closed form; NaN for a draw
    outside the law's domain (in_domain)."""
    alpha, beta = np.asarray(p["alpha"], float), np.asarray(p["beta"], float)
    # extreme bootstrap draws give 0 or inf: dropped from intervals
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        g = np.power(alpha * p["A"] / (beta * p["B"]), 1.0 / (alpha + beta))
        half = np.asarray(train_flops, float) / 6.0
        n = g * np.power(half, beta / (alpha + beta))
        d = np.power(half, alpha / (alpha + beta)) / g
    valid = in_domain(p)
    return np.where(valid, n, np.nan), np.where(valid, d, np.nan)


def tokens_to_reach(p: Mapping[str, Any], target_loss, n):
    """D such that L(N, D) = target_loss; inf where N alone cannot get below the target."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gap = target_loss - p["E"] - p["A"] / np.power(n, p["alpha"])
        return np.where(gap > 0, np.power(p["B"] / np.where(gap > 0, gap, 1.0), 1.0 / p["beta"]), np.inf)


def smallest_size_for(p: Mapping[str, Any], target_loss):
    """The N below which no amount of data reaches target_loss (inf if E >= target)."""
    gap = target_loss - np.asarray(p["E"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, np.power(p["A"] / np.where(gap > 0, gap, 1.0), 1.0 / p["alpha"]), np.inf)


def golden_minimise(f, lo, hi, iterations: int = 200):
    """Minimiser of a unimodal f on [lo, hi] by golden-section search, elementwise over arrays."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = np.asarray(lo, float), np.asarray(hi, float)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        left = fc < fd
        a, b = np.where(left, a, c), np.where(left, d, b)
        c_next = np.where(left, b - ratio * (b - a), d)
        d_next = np.where(left, c, a + ratio * (b - a))
        fc, fd = np.where(left, f(c_next), fd), np.where(left, fc, f(d_next))
        c, d = c_next, d_next
    return (a + b) / 2.0


def inference_aware_optimum(p: Mapping[str, Any], target_loss, inference_tokens, max_params=None,
                            iterations: int = 200):
    """(N, D, total FLOPs) reaching target_loss at least 6ND + 2N x inference_tokens.

    D(N) is exact on the constraint, so the search is one-dimensional in log N, between the
    smallest size that can reach the target and the size that is optimal without inference
    (inference demand only ever shrinks the model): a golden-section search, vectorised over draws.
    NaN where the target is out of reach (E >= target, or max_params too small) and for a draw
    outside the law's domain (in_domain).
    """
    def cost(log_n):
        n = np.exp(log_n)
        return 6.0 * n * tokens_to_reach(p, target_loss, n) + 2.0 * n * inference_tokens

    n_min = smallest_size_for(p, target_loss)
    feasible = np.isfinite(n_min) & (n_min > 0) & in_domain(p)
    n_min = np.where(feasible, n_min, 1.0)
    alpha = np.where(feasible, np.asarray(p["alpha"], float), 1.0)
    beta = np.where(feasible, np.asarray(p["beta"], float), 1.0)
    lo = np.log(n_min) + 1e-9
    # Without inference, d log(N D(N)) / d log N = 0 where A N^-alpha = (target - E) beta/(alpha+beta).
    hi = np.log(n_min) + np.log((alpha + beta) / beta) / alpha + 1e-6
    if max_params is not None:
        hi = np.minimum(hi, np.log(max_params))
        feasible &= hi > lo
    hi = np.where(hi > lo, hi, lo + 1e-9)
    n = np.exp(golden_minimise(cost, lo, hi, iterations))
    dd = tokens_to_reach(p, target_loss, n)
    total = 6.0 * n * dd + 2.0 * n * inference_tokens
    nan = np.full(np.shape(n), np.nan)
    return (np.where(feasible, n, nan), np.where(feasible, dd, nan), np.where(feasible, total, nan))


def best_loss_at_budget(p: Mapping[str, Any], train_flops, multiplier=1.0, extra_flops_per_token=0.0):
    """(N, D, loss) minimising E + A/N^alpha + B/(m D)^beta when each token costs 6N + extra FLOPs.

    `multiplier` m is an arm's worth in vanilla tokens; `extra_flops_per_token` charges what else a
    trained token costs (the teacher's generation of its thinking). With extra = 0 and m = 1 this is
    the closed-form optimum; the search brackets it by three decades on each side.
    """
    n0, _ = chinchilla_optimum(p, train_flops)

    def loss(log_n):
        n = np.exp(log_n)
        return chinchilla_loss(p, n, multiplier * train_flops / (6.0 * n + extra_flops_per_token))

    log_n = golden_minimise(loss, np.log(n0) - np.log(1e3), np.log(n0) + np.log(1e3))
    n = np.exp(log_n)
    d = train_flops / (6.0 * n + extra_flops_per_token)
    return n, d, loss(log_n)
