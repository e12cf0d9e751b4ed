"""Step Law (Li et al. 2025, "Predictable Scale: Part I -- Optimal Hyperparameter Scaling Law in
Large Language Model Pretraining", github.com/step-law/steplaw): the optimal learning rate and
batch size as power laws,

    lr*(N, D) = k_lr N^a_lr D^b_lr,        bs*(D) = k_bs D^b_bs   (bs in tokens),

fitted as in their `code/fit_tool.py` (`query_optimal_lr_bs_data`, `get_bootstrap_lr_bs_scaling_models`,
`get_mean_lr_bs_scaling_model`, and the released parameter set's keys: lr on log N and log D,
batch size on log D):

1. Near-optimal runs: per (N, D) group, the runs whose loss is within `threshold` (relative,
   default 0.25%) of the group's lowest loss. Batch sizes are converted to tokens (x seq_len).
2. Ordinary least squares of ln lr on (ln N, ln D) and of ln bs on ln D, over those runs.
3. Bootstrap: the near-optimal runs resampled with replacement `bootstrap` times (default 1000),
   both regressions refitted on each resample; the reported law is the mean of the bootstrap
   coefficients (their "mean model"), the interval the 2.5-97.5 percentiles.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from analysis.diagnostics import residual_diagnostics
from analysis.estimates import Estimates, ParameterEstimate
from analysis.tables import TableError, canonical_table, data_hash, ranges

HYPERPARAMETERS = "hyperparameters"   # the form name (analysis.forms.hyperparameters)

DEFAULT_THRESHOLD = 0.0025    # their filter_threshold
LR_PARAMETERS = ("k_lr", "a_lr", "b_lr")
BS_PARAMETERS = ("k_bs", "b_bs")


def near_optimal_runs(frame: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """The runs within `threshold` (relative) of the lowest loss of their (N, D) group."""
    best = frame.groupby(["N", "D"])["loss"].transform("min")
    return frame[np.abs(frame["loss"] / best - 1.0) < threshold].reset_index(drop=True)


def _ols(y: np.ndarray, *xs: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones_like(y)] + list(xs))
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef


def regressions(runs: pd.DataFrame) -> np.ndarray:
    """[ln k_lr, a_lr, b_lr, ln k_bs, b_bs] by least squares on the given runs."""
    log_n, log_d = np.log(runs["N"].to_numpy()), np.log(runs["D"].to_numpy())
    lr = _ols(np.log(runs["lr"].to_numpy()), log_n, log_d)
    bs = _ols(np.log(runs["batch_size"].to_numpy()), log_d)
    return np.concatenate([lr, bs])


def _estimate(draws: np.ndarray) -> ParameterEstimate:
    low, high = np.percentile(draws, [2.5, 97.5])
    return ParameterEstimate(float(np.mean(draws)), float(np.std(draws, ddof=1)), (float(low), float(high)))


def fit_hyperparameters(table, target: str = "loss", columns: Mapping[str, str] | None = None,
                        bootstrap: int = 1000, seed: int = 0, threshold: float = DEFAULT_THRESHOLD,
                        seq_len: float = 1.0) -> Estimates:
    """Step Law on a table with N, D, lr, batch_size and the loss (see the module doc). `seq_len`
    multiplies batch_size (sequences -> tokens; 1 if the column is already in tokens)."""
    if not threshold > 0:
        raise TableError(f"--threshold must be a positive relative loss difference, got {threshold}")
    if not seq_len > 0:
        raise TableError(f"--seq-len must be positive, got {seq_len}")
    if bootstrap < 2:
        raise TableError(f"the Step Law estimate is the mean of bootstrap fits: --bootstrap must be at least 2, "
                         f"got {bootstrap}")
    frame, source = canonical_table(table, ("N", "D", "lr", "batch_size"), target=target, columns=columns)
    frame = frame.assign(batch_size=frame["batch_size"] * seq_len)
    groups = frame.groupby(["N", "D"]).ngroups
    runs = near_optimal_runs(frame, threshold)
    if frame["N"].nunique() < 2 or frame["D"].nunique() < 2:
        raise TableError(f"{source}: the learning-rate law needs at least two model sizes and two data budgets "
                         f"(has {frame['N'].nunique()} N, {frame['D'].nunique()} D)")
    if len(runs) < 4:
        raise TableError(f"{source}: {len(runs)} near-optimal runs (within {threshold:g} of their (N, D) group's "
                         "lowest loss); need at least 4")
    rng = np.random.default_rng(seed)
    draws = np.stack([regressions(runs.iloc[rng.integers(0, len(runs), len(runs))]) for _ in range(bootstrap)])
    draws[:, 0] = np.exp(draws[:, 0])
    draws[:, 3] = np.exp(draws[:, 3])
    names = LR_PARAMETERS + BS_PARAMETERS
    samples = {name: draws[:, i] for i, name in enumerate(names)}
    parameters = {name: _estimate(samples[name]) for name in names}
    # the mean model's prefactor is exp(mean of the log intercepts), as in get_mean_lr_bs_scaling_model
    for name in ("k_lr", "k_bs"):
        p = parameters[name]
        parameters[name] = ParameterEstimate(float(np.exp(np.mean(np.log(samples[name])))), p.se, p.ci)
    point = regressions(runs)
    mean = {n: parameters[n].estimate for n in names}
    residual_lr = (np.log(runs["lr"]) - np.log(mean["k_lr"]) - mean["a_lr"] * np.log(runs["N"])
                   - mean["b_lr"] * np.log(runs["D"]))
    residual_bs = np.log(runs["batch_size"]) - np.log(mean["k_bs"]) - mean["b_bs"] * np.log(runs["D"])
    per_group = (runs.groupby(["N", "D"]).size()).to_numpy()
    diagnostics = residual_diagnostics(residual_lr.to_numpy(), {"N": runs["N"].to_numpy(), "D": runs["D"].to_numpy()},
                                       scale="ln lr - ln lr*(N, D)")
    return Estimates(target=target, approach=3, parameters=parameters, bootstrap_samples=samples,
               ranges=ranges(frame), objective=float(np.sum(residual_lr ** 2) + np.sum(residual_bs ** 2)),
               huber_delta=0.0, n_points=len(frame), n_starts=0, converged=True, heldout={},
               data_hash=data_hash(frame),
               settings={"threshold": threshold, "seq_len": seq_len},
               diagnostics={"seed": seed, "n_groups": int(groups),
                        "n_near_optimal": int(len(runs)), "near_optimal_per_group": [int(v) for v in per_group],
                        "least_squares_on_all": {"k_lr": float(np.exp(point[0])), "a_lr": float(point[1]),
                                                 "b_lr": float(point[2]), "k_bs": float(np.exp(point[3])),
                                                 "b_bs": float(point[4])},
                        "rms_log_residual": {"lr": float(np.sqrt(np.mean(residual_lr ** 2))),
                                             "batch_size": float(np.sqrt(np.mean(residual_bs ** 2)))},
                        "ranges_lr_batch": {"lr": [float(frame["lr"].min()), float(frame["lr"].max())],
                                            "batch_size": [float(frame["batch_size"].min()),
                                                           float(frame["batch_size"].max())]},
                        "estimate": "mean of the bootstrap coefficients (Step Law's mean model)",
                        **({"diagnostics": diagnostics.to_dict()} if diagnostics is not None else {})})


def predict_hyperparameters(params: Mapping[str, float], N, D, quantity: str) -> np.ndarray:
    N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    if quantity == "lr":
        return params["k_lr"] * N ** params["a_lr"] * D ** params["b_lr"]
    if quantity == "batch_size":
        return params["k_bs"] * D ** params["b_bs"] * np.ones_like(N)
    raise ValueError(f"a hyperparameter law predicts 'lr' or 'batch_size', not {quantity!r}")


__all__ = ["fit_hyperparameters", "near_optimal_runs", "regressions", "predict_hyperparameters"]
