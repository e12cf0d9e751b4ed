"""Compute-optimal N and D for a training budget C = 6ND: the Chinchilla closed form
(analysis.chinchilla) for a Chinchilla-form law, the power laws N_opt = k_N C^a, D_opt = k_D C^b
of an approach-1/2 law."""

from __future__ import annotations

import numpy as np

from analysis.answers import Recommendation, fmt, quantity, range_warnings
from analysis.chinchilla import NAMES as CHINCHILLA_PARAMETERS, chinchilla_loss, chinchilla_optimum
from analysis.questions.base import (MAX_PARAMS, TRAIN_FLOPS, Question, draw_parameters, form_answers,
                                     point_parameters, require_chinchilla)


class ComputeOptimal(Question):
    """The last question asked: a training budget alone."""

    name = "compute_optimal"
    title = "Compute-optimal allocation"
    flags = (TRAIN_FLOPS, MAX_PARAMS)

    def asks(self, law, query):
        if query.train_flops is None:
            raise ValueError("give --train_flops (or --target_loss, or --total_flops for a joint law)")
        return True

    def answer(self, law, query):
        return compute_optimal(law, query.train_flops, query.max_params, query.tolerance)


def compute_optimal(law, train_flops: float, max_params: float | None = None, tolerance: float = 3.0) -> Recommendation:
    """N and D minimising the predicted loss for a training budget C = 6ND."""
    if not law.form.chinchilla_closed_forms(law.settings) and form_answers(law, "compute_optimal"):
        return compute_optimal_power_law(law, train_flops, max_params, tolerance)
    require_chinchilla(law, "the compute-optimal split")
    point, draws = point_parameters(law), draw_parameters(law)

    def answer(p):
        n, d = chinchilla_optimum(p, train_flops)
        if max_params is not None:
            n = np.minimum(n, max_params)
            d = train_flops / (6.0 * n)
        return n, d, chinchilla_loss(p, n, d)

    n, d, loss = answer(point)
    dn, dd, dl = answer(draws) if all(k in draws for k in CHINCHILLA_PARAMETERS) else ([], [], [])
    notes = [f"training budget C = 6ND = {fmt(train_flops)} FLOPs"]
    derived = [f"tokens per parameter {fmt(d / n)}"]
    if law.form.arms(law.settings):
        notes.append(f"for the reference arm {law.settings.reference_arm!r}; give --teacher_flops_per_token "
                     f"and --thinking_fraction to ask whether the other arms pay for themselves")
    if max_params is not None and n >= max_params:
        derived.append(f"capped at --max_params {fmt(max_params)}: the unconstrained optimum is larger")
    return Recommendation(
        "Compute-optimal allocation (Chinchilla closed form)",
        {"N": quantity(n, dn, "parameters", law.spread), "D": quantity(d, dd, "tokens", law.spread),
         "predicted_loss": quantity(loss, dl, law.target, law.spread)},
        tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, C=train_flops)), derived=tuple(derived))


def compute_optimal_power_law(law, train_flops: float, max_params: float | None, tolerance: float) -> Recommendation:
    """Approach 1/2 laws: N_opt = k_N C^a and D_opt = k_D C^b, with the draws of their coefficients."""
    point, draws = point_parameters(law), draw_parameters(law)

    def answer(p):
        n = p["k_N"] * np.power(train_flops, p["a"])
        d = p["k_D"] * np.power(train_flops, p["b"])
        if max_params is not None:
            n = np.minimum(n, max_params)
        return n, d

    n, d = answer(point)
    dn, dd = answer(draws) if draws else ([], [])
    notes = [f"approach {law.approach} power laws N_opt = k_N C^a, D_opt = k_D C^b at C = {fmt(train_flops)} FLOPs"]
    return Recommendation(f"Compute-optimal allocation (approach {law.approach} power laws)",
                          {"N": quantity(n, dn, "parameters", law.spread),
                           "D": quantity(d, dd, "tokens", law.spread)},
                          tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, C=train_flops)),
                          derived=(f"6 N D = {fmt(6 * n * d)}",))
