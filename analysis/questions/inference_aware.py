"""Inference-aware sizing (Sardana & Frankle 2023): the N and D that reach a target loss at the
least lifetime cost 6ND + 2N x (inference tokens)."""

from __future__ import annotations

import numpy as np

from analysis.answers import Quantity, Recommendation, fmt, quantity, range_warnings
from analysis.chinchilla import NAMES as CHINCHILLA_PARAMETERS, chinchilla_loss, chinchilla_optimum, inference_aware_optimum
from analysis.questions.base import (INFERENCE_QUERIES, MAX_PARAMS, TOKENS_PER_QUERY, TRAIN_FLOPS, Flag, Question,
                                     draw_parameters, point_parameters, require_chinchilla)

TARGET_LOSS = Flag("target_loss", "quality bar for inference-aware sizing")


def check_queries_and_tokens(query) -> None:
    if (query.inference_queries is None) != (query.tokens_per_query is None):
        raise ValueError("give --inference_queries and --tokens_per_query together")


class InferenceAware(Question):
    """Asked by a lifetime demand (--inference_queries and --tokens_per_query) or a target loss."""

    name = "inference_aware"
    title = "Inference-aware sizing"
    flags = (INFERENCE_QUERIES, TOKENS_PER_QUERY, TARGET_LOSS, TRAIN_FLOPS, MAX_PARAMS)

    def asks(self, law, query):
        check_queries_and_tokens(query)
        return query.inference_queries is not None or query.target_loss is not None

    def answer(self, law, query):
        tokens = (query.inference_queries or 0.0) * (query.tokens_per_query or 0.0)
        return inference_aware(law, tokens, query.target_loss, query.train_flops, query.max_params, query.tolerance)


def inference_aware(law, inference_tokens: float, target_loss: float | None = None,
                    train_flops: float | None = None, max_params: float | None = None,
                    tolerance: float = 3.0) -> Recommendation:
    """The N and D reaching a target loss at least lifetime cost (Sardana & Frankle 2023).

    Without --target_loss the target is the loss of the compute-optimal model at train_flops:
    "as good as Chinchilla-optimal, but cheaper to serve". The target is the user's quality bar, so
    it is held fixed across bootstrap draws; draws whose E is above it cannot reach it and are
    counted in a note.
    """
    require_chinchilla(law, "inference-aware sizing")
    point, draws = point_parameters(law), draw_parameters(law)
    notes, derived = [], []
    given = target_loss is not None
    if not given:
        if train_flops is None:
            raise ValueError("inference-aware sizing needs --target_loss or --train_flops (whose "
                             "compute-optimal loss becomes the target)")
        n0, d0 = chinchilla_optimum(point, train_flops)
        target_loss = float(chinchilla_loss(point, n0, d0))
        derived.append(f"target loss {target_loss:.4f}: the compute-optimal model's at {fmt(train_flops)} FLOPs")
    n, d, total = inference_aware_optimum(point, target_loss, inference_tokens, max_params)
    if not np.isfinite(n):
        reason = (f"the law's E = {point['E']:.4f} is at or above the target" if point["E"] >= target_loss
                  else f"--max_params {fmt(max_params)} is below the smallest size that can reach it"
                  if max_params is not None else "the law gives no finite model size that reaches it")
        target = (f"--target_loss {target_loss}" if given else f"the target (the compute-optimal model's loss "
                  f"{target_loss:.4f} at --train_flops {fmt(train_flops)}, no --target_loss given)")
        raise ValueError(f"{target} is out of reach: {reason}")
    if all(k in draws for k in CHINCHILLA_PARAMETERS):
        dn, dd, dt = inference_aware_optimum(draws, target_loss, inference_tokens, max_params)
        unreachable = int(np.sum(~np.isfinite(dn[:law.n_bootstrap])))
        if unreachable:
            derived.append(f"{unreachable} of {law.n_bootstrap} bootstrap draws cannot reach the target (or lie outside "
                           f"the form's domain); the interval is over the rest")
    else:
        dn = dd = dt = []
    # The compute-optimal model for the same loss, to show what serving costs change.
    n_chin, d_chin, _ = inference_aware_optimum(point, target_loss, 0.0, max_params)
    train = 6.0 * n * d
    notes.append(f"lifetime inference {fmt(inference_tokens)} tokens at 2N FLOPs each; training 6ND")
    derived.append(f"the compute-optimal model for this loss (no inference) has N = {fmt(n_chin)}, "
                 f"D = {fmt(d_chin)}, lifetime cost {fmt(6 * n_chin * d_chin + 2 * n_chin * inference_tokens)}")
    return Recommendation(
        "Inference-aware sizing (least training + inference FLOPs at a target loss)",
        {"N": quantity(n, dn, "parameters", law.spread), "D": quantity(d, dd, "tokens", law.spread),
         "train_flops": quantity(train, 6.0 * np.asarray(dn) * np.asarray(dd), "FLOPs", law.spread),
         "total_flops": quantity(total, dt, "FLOPs", law.spread),
         "target_loss": Quantity(target_loss, None, law.target)},
        tuple(notes), tuple(range_warnings(law, tolerance, N=n, D=d, C=train)), derived=tuple(derived))
