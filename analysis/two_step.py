"""The OLMo ladder's two-step task prediction (Bhagia et al. 2024, "Establishing Task Scaling Laws
via Compute-Efficient Model Ladders", github.com/allenai/OLMo-ladder, src/fitting/step1.py, step2.py):

    step 1   task_loss(N, D) = E + A / N^alpha + B / D^beta       (task loss in bits per byte)
    step 2   accuracy(L)     = a / (1 + exp(-k (L - x0))) + b
    chained  accuracy(N, D)  = step2(step1(N, D))

Step 1 is the framework's Chinchilla fit (Huber, delta 1e-3, on log residuals, as their
`get_coefficients_huber`), on the rows with `final` = 1 (one per ladder run; all rows if the
table has no `final` column). Step 2 is least squares on accuracy (their `curve_fit`) over the
other rows (all rows without `final`), with their helper point (L = 0, accuracy = task maximum)
added, their bounds a in [-1, 0], x0 >= 0, k >= 0, b in [0, 1] for the first start
(a, x0, k, b) = (task_min - 1, 0.9, 3, task_max), and their further starts, unbounded, when that
fit does not converge. Intervals: the step-1 bootstrap (resampled final rows) paired draw by
draw with a step-2 bootstrap (resampled step-2 rows, helper point kept), so a chained draw is
step2_i(step1_i(N, D)).
"""

from __future__ import annotations

import warnings
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from analysis.chinchilla import chinchilla_loss
from analysis.estimates import Estimates, ParameterEstimate
from analysis.tables import TableError, canonical_table, data_hash, final_rows, ranges, read_table

TWO_STEP = "two_step"   # the form name (analysis.forms.two_step)

STEP1 = ("E", "A", "B", "alpha", "beta")
STEP2 = ("a", "x0", "k", "b")
EXTRA_STARTS = [[-0.7, 0.6, 7.0, 1.0], [-0.7, 1.4, 3.2, 1.3], [-2.7, 1.4, 3.2, 1.3], [-0.09, 0.6, 6.5, 0.1],
                [-0.64, -0.41, 12.7, 1.05], [-2.15771768e-02, 1.39273020, -5.85129498e+01, 4.54084320e-01],
                [-1.60006552, 1.36001561, -4.95252012e+02, 4.10217043e-01]]


def sigmoid(loss, a, x0, k, b):
    return a / (1.0 + np.exp(-k * (np.asarray(loss, dtype=np.float64) - x0))) + b


def fit_sigmoid(loss: np.ndarray, accuracy: np.ndarray, task_min: float, task_max: float,
                helper_point: bool = True) -> tuple[np.ndarray, int]:
    """(a, x0, k, b) and the index of the start that converged (their order of starts)."""
    x = np.append(loss, 0.0) if helper_point else np.asarray(loss)
    y = np.append(accuracy, task_max) if helper_point else np.asarray(accuracy)
    starts = [[task_min - 1.0, 0.9, 3.0, task_max]] + EXTRA_STARTS
    last = None
    for i, p0 in enumerate(starts):
        kwargs = {"bounds": ([-1.0, 0.0, 0.0, 0.0], [0.0, np.inf, np.inf, 1.0])} if i == 0 else {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                params, _ = curve_fit(sigmoid, x, y, p0=p0, maxfev=500000, **kwargs)
            except RuntimeError:
                continue
        last = (params, i)
        if not any(issubclass(w.category, OptimizeWarning) for w in caught):
            return params, i
    if last is None:
        raise TableError("step 2 (the sigmoid from task loss to accuracy) failed from every start")
    return last


def _estimate(point: float, draws: np.ndarray) -> ParameterEstimate:
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return ParameterEstimate(point, float("nan"), (float("nan"), float("nan")))
    low, high = np.percentile(finite, [2.5, 97.5])
    return ParameterEstimate(point, float(np.std(finite, ddof=1)), (float(low), float(high)))


def fit_two_step(table, target: str = "accuracy", columns: Mapping[str, str] | None = None, bootstrap: int = 1000,
                 seed: int = 0, task_min: float = 0.25, task_max: float = 1.0, huber_delta: float = 1e-3, *,
                 fit_curve: Callable) -> Estimates:
    """The two-step law on a table with N, D, task_loss, accuracy and optionally final (see the module doc).
    `fit_curve` is analysis.fitting.fit_form, given by the caller: step 1 is a Chinchilla fit, and
    this module sits below the fitter (it is called through the two_step form)."""
    if not 0 <= task_min < task_max <= 1:
        raise TableError(f"--task-min and --task-max must satisfy 0 <= min < max <= 1, got {task_min}, {task_max}")
    columns = dict(columns or {})
    columns.setdefault("loss", columns.pop("accuracy", target))
    final_column = columns.pop("final", "final")
    raw = read_table(table)
    if "is_final" in raw.columns and "is_final" not in columns.values():
        raw = raw[final_rows(raw)]     # as canonical_table does, so rows stay aligned
    raw = raw.reset_index(drop=True)
    final = None
    if final_column in raw.columns:  # checked first: a bad value can make rows look repeated
        final = pd.to_numeric(raw[final_column], errors="coerce")
        if not final.isin([0, 1]).all():
            raise TableError(f"{raw.attrs.get('source', 'table')}: column {final_column!r} (final) must be 0 or 1 "
                             f"in every row")
    frame, source = canonical_table(raw, ("N", "D", "task_loss"), target=columns["loss"], columns=columns)
    frame = frame.rename(columns={"loss": "accuracy"})
    if final is not None:
        frame = frame.assign(final=final.to_numpy())
    if "final" in frame:
        step1_rows = frame[frame["final"] == 1]
        step2_rows = frame[frame["final"] != 1]
    else:
        step1_rows = step2_rows = frame
    if len(step1_rows) < 10:
        raise TableError(f"{source}: {len(step1_rows)} step-1 rows (final = 1); the task-loss law needs at least 10")
    if len(step2_rows) < 4:
        raise TableError(f"{source}: {len(step2_rows)} step-2 rows (final = 0); the sigmoid needs at least 4")
    step1_frame = step1_rows[["N", "D"]].assign(loss=step1_rows["task_loss"].to_numpy()).reset_index(drop=True)
    step1 = fit_curve(step1_frame, "chinchilla", target="task_loss", bootstrap=bootstrap, huber_delta=huber_delta,
                     heldout_fraction=0, seed=seed, source=source)
    loss2, acc2 = step2_rows["task_loss"].to_numpy(float), step2_rows["accuracy"].to_numpy(float)
    point2, start = fit_sigmoid(loss2, acc2, task_min, task_max)
    draws2 = []
    rng = np.random.default_rng(seed + 1)
    for _ in range(bootstrap):
        pick = rng.integers(0, len(loss2), len(loss2))
        try:
            draws2.append(fit_sigmoid(loss2[pick], acc2[pick], task_min, task_max)[0])
        except TableError:
            draws2.append(np.full(4, np.nan))
    draws2 = np.array(draws2).reshape(-1, 4)
    parameters = {name: step1.parameters[name] for name in STEP1}
    parameters.update({name: _estimate(float(point2[i]), draws2[:, i]) for i, name in enumerate(STEP2)})
    samples = {**{name: step1.bootstrap_samples[name] for name in STEP1 if name in step1.bootstrap_samples},
               **({name: draws2[:, i] for i, name in enumerate(STEP2)} if bootstrap else {})}
    fitted_acc = sigmoid(loss2, *point2)
    step1_pred = step1.predict(N=step1_frame["N"].to_numpy(), D=step1_frame["D"].to_numpy())
    return Estimates(target="accuracy", approach=3, parameters=parameters, bootstrap_samples=samples,
               ranges=ranges(frame), objective=float(np.sum((fitted_acc - acc2) ** 2)), huber_delta=huber_delta,
               n_points=len(frame), n_starts=step1.n_starts, converged=step1.converged, heldout={},
               data_hash=data_hash(frame),
               settings={"task_min": task_min, "task_max": task_max},
               diagnostics={"n_step1": int(len(step1_rows)),
                        "n_step2": int(len(step2_rows)), "step2_start": int(start), "helper_point": [0.0, task_max],
                        "step1_objective": step1.objective,
                        "step1_fit_error": float(np.mean(np.abs(step1_pred / step1_frame["loss"].to_numpy() - 1))),
                        "step2_fit_error": float(np.mean(np.abs(fitted_acc / acc2 - 1))),
                        **({"diagnostics": step1.diagnostics["diagnostics"]} if "diagnostics" in step1.diagnostics else {}),
                        "objective": "step 2 sum of squared accuracy residuals; step 1 Huber on log task loss"})


def predict_two_step(params: Mapping[str, float], N, D, quantity: str = "accuracy") -> np.ndarray:
    n, d = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    task_loss = chinchilla_loss(params, n, d)
    if quantity == "task_loss":
        return task_loss
    if quantity == "accuracy":
        return sigmoid(task_loss, params["a"], params["x0"], params["k"], params["b"])
    raise ValueError(f"a two-step law predicts 'task_loss' or 'accuracy', not {quantity!r}")
