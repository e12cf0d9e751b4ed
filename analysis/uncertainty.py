"""Whether the data determine each fitted parameter, and intervals that stay valid at a bound.

Pure functions on arrays; analysis.fitting runs the optimisations they ask for.

- Resampling (`resample_rows`): the bootstrap's resamples. Replicates stay together: rows are
  grouped into runs (same seed and model size, and arm: the rows one training run wrote), and a
  resample draws runs and then rows within them. Tables of fewer than RESIDUALS_BELOW points (a
  designed grid of a few sizes and budgets) keep their design and resample residuals instead
  (scaled for their leverage): drawn from the centred pool where every run is one row and the
  noise has one scale (a loss on its log scale), else each run's own, flipped and stretched by
  one multiplier per run (wild). Resampling nine points drops some of them and understates the
  spread, and resampling a 5 x 5 grid drops whole corners of it, so a prediction at 10x its
  compute covered 0.99; the wild bootstrap of one-row runs left the points a Huber fit passes
  through where they were, and the loss at the grid's centre covered 0.83.
- Profile likelihood (`profile_ladder`, `read_profile`): each parameter held at values on a
  ladder around its estimate while the others are refitted on the fit's own objective; the
  values whose statistic (`_profile_statistic`: the likelihood ratio, or for the Huber loss its
  scaled drop in dispersion) stays under the F (or chi-square) threshold form the 95% interval.
  Profiling another objective than the fit's (squared residuals about a Huber estimate) put the
  estimate itself outside the region on Epoch's Chinchilla table: intervals 4e-6 wide.
  A profile that never crosses the threshold before the parameter reaches a limit (E -> 0,
  alpha -> 0, b -> 0) gives an interval closed at that limit and the status "at_bound"; one flat
  towards infinity, or flat on both sides, gives "not_identified"; a closed one spanning more
  than MAX_DECADES orders of magnitude, "not_identified" too. The percentile bootstrap cannot do
  this: once a refit has left E at 1e-48 the objective no longer depends on it and no resample
  brings it back.
  Each chain of rungs stops at its first rung over the threshold: no interval reads a rung past it.
  Each crossing is refined, and refined again while its first rung over reads more than COARSE
  times the threshold. An at_bound coordinate whose runs share an error has its closed end read
  at the threshold times the run-level stretch squared (analysis.run_error).
- Answers (`likelihood_region`, `calibration`): every refit of the profiles whose statistic stays
  under the cut lies in the 95% likelihood region, so an answer's range over them lies inside the
  answer's own profile interval; the law stores them beside the bootstrap's draws, and an
  answer's interval is the draws' percentiles (where runs hold several rows, stretched by how
  far short of the identified parameters' profile intervals the draws fall), widened to cover that range
  (analysis.answers.interval). The draws alone do not travel as far along log E as its profile
  does on a 3 x 3 grid (a prediction at 10x the compute covered 0.87); stretching each
  coordinate's draws to its profile interval broke the draws' correlations and widened an answer
  inside the grid 30-fold.
- Runs with several rows (analysis.run_error): the profile treats rows as independent, so where
  a seed's error is shared by a run's rows the profile interval is stretched about the estimate
  by the ratio of the coordinate's run-level interval to the one the profile assumes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis.run_error import RunError, coordinate_stretch

STATUSES = ("identified", "at_bound", "not_identified")
# offsets (fitting coordinates: log E, log A, alpha, ...) of the profile's first pass, each side
LADDER = np.geomspace(1e-4, 300.0, 28)
REFINE = 8                 # second pass: points between the last value under and the first over
# A crossing whose first rung over the cut reads more than COARSE times the cut is refined again
# (up to REFINE_PASSES more times): linear interpolation over a wide gap misplaces the end. The
# joint law's floor collapsed at logit -62 crossed between b 0.008 (0.05) and b 0.46 (22.8) and
# was read b 0.018, where the truth was 0.25 (joint_floor_T, table 91).
COARSE = 2.0
REFINE_PASSES = 2
# A positive parameter whose closed profile interval spans more orders of magnitude than this is
# not determined (the demo's multiplier 6.9e-8 [2.4e-72, 3.1e-4], its A 187 [3.6, 8.8e25]).
MAX_DECADES = 6
RESIDUALS_BELOW = 50       # fewer points than this: residuals resampled, the design kept (docs/fitting.md)
# Webb's six-point multipliers: mean 0, variance 1, and more distinct resamples than +-1 with few runs
WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])


@dataclass(frozen=True)
class Identification:
    """One parameter's status, why, and its profile-likelihood interval (parameter units)."""

    status: str
    reason: str
    profile_ci: tuple[float, float]
    method: str = "profile likelihood"   # or "profile box": the range over several coordinates' intervals


def runs_of(frame, covariates: tuple[str, ...]) -> tuple[np.ndarray, dict]:
    """Run labels per row and the replicates summary the law file records.

    With a `seed` column and several seeds at some grid point, a run is a (seed, N[, arm]) group:
    the rows one training run wrote, whose errors move together. Otherwise every row is its own
    run and run-to-run variance is not in the intervals (said in the summary)."""
    point_columns = [c for c in covariates if c in frame]
    per_point = frame.groupby(point_columns, sort=False).size() if point_columns else None
    counts = per_point.to_numpy() if per_point is not None else np.ones(len(frame), int)
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    replicated = "seed" in frame and counts.max() > 1 and seeds > 1
    summary = {"points": int(len(counts)), "replicates_per_point": [int(counts.min()), int(counts.max())],
               "seeds": int(seeds), "run_to_run_variance_in_intervals": bool(replicated)}
    if not replicated:
        summary["note"] = ("one seed per grid point: the intervals do not include run-to-run (seed) variance; "
                           "train two or more seeds per point to include it")
        return np.arange(len(frame)), summary
    keys = [c for c in ("seed", "N", "arm") if c in frame]
    return frame.groupby(keys, sort=False).ngroup().to_numpy(), summary


def scheme_for(runs: np.ndarray, homoscedastic: bool, requested: str = "auto") -> str:
    """What was asked for, else: 'pairs' from RESIDUALS_BELOW points; below, 'residual' where every
    run is one row and the noise has one scale on the fitting scale (log loss), else 'wild'."""
    if requested != "auto":
        return requested
    if len(runs) >= RESIDUALS_BELOW:
        return "pairs"
    one_row_runs = len(np.unique(runs)) == len(runs)
    return "residual" if one_row_runs and homoscedastic else "wild"


def resample_rows(scheme: str, runs: np.ndarray, seed: int, b: int) -> np.ndarray:
    """Resample b [n], drawn from its own stream (seed, b): memory stays one row of the table
    whatever the number of resamples, and resample b does not depend on how many are drawn.
    Pairs: weights (runs drawn with replacement, then rows within each drawn run: a run drawn c
    times gets c times its size in uniform picks of its rows). Wild: multipliers (one Webb
    multiplier per run, shared by its rows). Residual: for each row, the row whose residual it
    takes (drawn with replacement)."""
    rng = np.random.default_rng([seed, b])
    n_runs = int(runs.max()) + 1
    if scheme == "residual":
        return rng.integers(0, len(runs), size=len(runs))
    if scheme == "wild":
        return WEBB[rng.integers(0, len(WEBB), size=n_runs)][runs]
    copies = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs))
    sizes = np.bincount(runs, minlength=n_runs)
    picked = np.repeat(np.arange(n_runs), copies * sizes)                  # the run of each pick
    by_run = np.argsort(runs, kind="stable")                               # rows, run after run
    rows = by_run[(np.cumsum(sizes) - sizes)[picked] + rng.integers(0, sizes[picked])]
    return np.bincount(rows, minlength=len(runs)).astype(np.float64)


def leverage(jacobian: np.ndarray) -> np.ndarray:
    """Diagonal of the hat matrix J (J'J)^+ J' (clipped below 1), for residuals r / sqrt(1 - h)."""
    q, _ = np.linalg.qr(np.nan_to_num(jacobian))
    return np.clip(np.sum(q * q, axis=1), 0.0, 0.99)


def profile_ladder(center: float, low: float, high: float) -> np.ndarray:
    """The first pass's fixed values of one fitting coordinate: center +- LADDER, inside [low, high]
    (the coordinate's limits; the limit itself is a rung when the ladder passes it)."""
    below = np.concatenate([center - LADDER[center - LADDER > low], [low] if np.isfinite(low) and low < center else []])
    above = np.concatenate([center + LADDER[center + LADDER < high], [high] if np.isfinite(high) and high > center else []])
    return np.concatenate([below, above])


def threshold(n_points: int, n_params: int) -> float:
    """The 95% cut-off of the profile statistic: F(1, n - p), every objective's scale being estimated."""
    return float(stats.f.ppf(0.95, 1, max(n_points - n_params, 1)))


def crossing(values: np.ndarray, deviance: np.ndarray, center: float, cut: float, side: int):
    """On one side of the center: (last value under the cut, first over it, or None when it never
    crosses) of the profile sorted outwards."""
    mask = (values < center) if side < 0 else (values > center)
    order = np.argsort(side * values[mask])               # outwards from the center
    v, d = values[mask][order], deviance[mask][order]
    inside = center
    for value, dev in zip(v, d):
        if dev > cut:
            return inside, value
        inside = value
    return inside, None


def interpolate(inside: float, outside: float, d_in: float, d_out: float, cut: float) -> float:
    """Where the deviance reaches the cut between two rungs (linear in the coordinate)."""
    if not np.isfinite(d_out) or d_out <= d_in:
        return outside
    return inside + (outside - inside) * (cut - d_in) / (d_out - d_in)


def status_of(name: str, ends: dict, limit_values: dict) -> Identification:
    """Status from the profile's two ends. `ends[side]` is ('closed', value) or ('open', value at
    the last rung); `limit_values[side]` says whether that open end reached a finite limit (the
    parameter stopped changing along the ladder, or the form's bound)."""
    low_kind, low = ends[-1]
    high_kind, high = ends[1]
    if low_kind == "closed" and high_kind == "closed":
        return Identification("identified", "the profile likelihood is closed on both sides", (low, high))
    open_sides = [s for s in (-1, 1) if ends[s][0] == "open"]
    bounded = [s for s in open_sides if limit_values[s]]
    if len(open_sides) == 1 and bounded:
        side = "lower" if open_sides[0] < 0 else "upper"
        return Identification("at_bound", f"the data are consistent with {name} at its {side} limit: the profile "
                                          f"likelihood stays within the 95% threshold up to it", (low, high))
    where = "on both sides" if len(open_sides) == 2 else ("downwards" if open_sides[0] < 0 else "upwards")
    return Identification("not_identified", f"the profile likelihood of {name} is flat {where}: the data "
                                            f"do not determine it", (low, high))


SEVERITY = {"identified": 0, "at_bound": 1, "not_identified": 2}


def parameter_coordinates(names, to_parameters, best: np.ndarray):
    """For each parameter, the fitting coordinates it depends on; for each coordinate, whether it
    is the parameter itself (its bounds then apply to the coordinate). Dependence is read at the
    estimate and at the estimate with every coordinate clipped to [-3, 3]: at a collapsed estimate
    (the joint law's floor b = expit(-40)) a = (1 - b) expit(x) no longer moves with b's
    coordinate, though it depends on it."""
    depends, identity = {name: [] for name in names}, {}
    for at in (best, np.clip(best, -3.0, 3.0)):
        with np.errstate(all="ignore"):
            base = to_parameters(at)
        for j in range(len(best)):
            moved = at.copy()
            moved[j] += 0.37
            with np.errstate(all="ignore"):
                after = to_parameters(moved)
            for name in names:
                was, now = float(base[name]), float(after[name])
                if np.isfinite(was) and np.isfinite(now) and not np.isclose(now, was, rtol=1e-12, atol=0.0):
                    if j not in depends[name]:
                        depends[name].append(j)
                    if at is best and abs(now - was - 0.37) < 1e-9:
                        identity.setdefault(j, name)
    for name in names:
        depends[name].sort()
    return depends, identity


def identify(problem, best: np.ndarray, warm: np.ndarray, names, to_parameters, bounds, iters: int = 300,
             run_error: RunError | None = None):
    """Profile every fitting coordinate of `problem` (analysis.fitting.Problem) around `best` and
    read each parameter's status and profile interval; with `run_error` (analysis.run_error: the
    error a run's rows share) each closed end is stretched for it (coordinate_stretch). Returns
    ({name: Identification}, {coordinate: [thetas at the profile's ends]} for the coordinates not
    identified: diverse optima for the bootstrap's warm starts, from which a refit can leave a bound,
    the likelihood region's points [M, P]: likelihood_region, and {coordinate: (low, high)} the
    identified coordinates' intervals: calibration's)."""
    depends, identity = parameter_coordinates(names, to_parameters, best)
    n_coords = len(best)
    limits = {j: bounds.get(identity[j], (-np.inf, np.inf)) if j in identity else (-np.inf, np.inf)
              for j in range(n_coords)}
    _, d0, _, _ = problem.minimize(best[None], iters)
    ladders = {j: profile_ladder(float(best[j]), *map(float, limits[j])) for j in range(n_coords)}
    # A chain stops at its first rung over the cut (read against the best fit's deviance d0: the
    # lowest deviance found, d_min <= d0, only raises the statistic): the interval needs no rung
    # past its first crossing, and those were half the profile's work.
    scale0, cut0 = _profile_statistic(problem, best, float(d0[0]))
    # where runs share an error, a chain goes on to the cut an at_bound coordinate's closed end is read at
    stretch = coordinate_stretch(run_error, n_coords)
    crossed = lambda j, dev: scale0(dev) > cut0 * stretch[j] ** 2
    runs = _profile_runs(problem, warm, ladders, iters, stop=crossed)
    # Second round, started also from the first round's far ends (a profile of E reaches optima
    # with E large that a profile of beta started at E ~ 0 would not find) and from the edges of
    # the coordinates open on a side (the solutions at the last rung inside the cut, refined). A
    # coordinate that ran off (the joint law's floor at logit -25) no longer moves the objective,
    # so a profile started at the estimate cannot bring it back: with kappa held at its truth the
    # refit kept b at 0 and read 9.3 over the cut of 4.3 where b's own edge (b 0.21) gives 1.2
    # (joint_floor_T, table 15). Edges of every coordinate cost the demo's analysis 36% more time.
    ran_off = {j: r for j, r in runs.items()
               if any(crossing(r[0], scale0(r[1]), float(best[j]), cut0, side)[1] is None for side in (-1, 1))}
    ends = np.concatenate([r[2][[int(np.argmin(r[0])), int(np.argmax(r[0]))]] for r in runs.values()]
                          + [_edges(_refined(problem, ran_off, warm, best, scale0, cut0, iters), best, scale0, cut0)])
    runs = _merged(runs, _profile_runs(problem, np.concatenate([warm, ends]), ladders, iters, stop=crossed))
    d_min = min(float(d0[0]), *(float(np.min(r[1])) for r in runs.values()))
    scale, cut = _profile_statistic(problem, best, d_min)
    runs = _refined_until_fine(problem, runs, warm, best, scale, cut, iters)
    per_coordinate, ends_thetas = {}, {}
    for j, (values, dev, thetas) in runs.items():
        per_coordinate[j], ends_thetas[j] = _read(j, values, scale(dev), thetas, float(best[j]), cut, limits[j],
                                                  depends, names, to_parameters, best, stretch[j])
        if per_coordinate[j].status == "at_bound" and stretch[j] > 1.0:
            per_coordinate[j], ends_thetas[j], runs[j] = _read_at_bound_stretched(
                problem, j, runs[j], warm, best, scale, cut, stretch[j], iters, limits[j], depends, names,
                to_parameters)
    result = {}
    for name in names:
        coords = depends[name]
        if not coords:
            continue
        if len(coords) == 1:
            ident = per_coordinate[coords[0]]
            interval = _in_units(name, coords[0], ident.profile_ci, to_parameters, best)
            result[name] = within_decades(name, Identification(ident.status, ident.reason.replace("{name}", name),
                                                               interval))
        else:
            worst = max((per_coordinate[j] for j in coords), key=lambda i: SEVERITY[i.status])
            interval = (_corners(name, coords, per_coordinate, to_parameters, best) if worst.status == "identified"
                        else (math.nan, math.nan))
            result[name] = within_decades(name, Identification(
                worst.status, f"{name} depends on several fitted quantities: "
                + worst.reason.replace("{name}", "one of them"), interval, "profile box"))
    unsettled = {j: ends_thetas[j] for j, ident in per_coordinate.items() if ident.status != "identified"}
    closed = {j: ident.profile_ci for j, ident in per_coordinate.items() if ident.status == "identified"}
    return result, unsettled, likelihood_region(runs, best, scale, cut), closed


def calibration(draws: np.ndarray, center: np.ndarray, intervals: dict) -> float:
    """How many times farther from the estimate the profile intervals of the identified coordinates
    (`intervals`: {coordinate: (low, high)}, fitting units) reach than the bootstrap draws' 2.5 and
    97.5 percentiles [B, P]: the median over coordinates and sides, at least 1. Answers' intervals
    stretch the draws' percentiles by it (analysis.answers.Spread), in the answer's own units: the
    draws keep their shape and correlations. Taken where runs hold several rows (analysis.fitting):
    on the demo grid a run's shared error, which the profile intervals are stretched for and a
    wild bootstrap over six runs understates, enters the answers here. Where every row is its own
    run the draws and the likelihood region each cover, and stretching the draws over-covered (the
    joint law, 98 of 98 at 10x). Stretching the draws themselves moved them off the
    curved valley of the demo grid's likelihood: per coordinate to its profile interval, the loss
    at the grid's centre got intervals 1.17 wide (median of 100 tables), and along the run-level
    directions 0.29 (up to [1.58, 3.01] where the data pin it near 1.73)."""
    finite = draws[np.all(np.isfinite(draws), axis=1)]
    if len(finite) < 3:
        return 1.0
    ratios = []
    for j, (low, high) in intervals.items():
        for end, q in ((low, 2.5), (high, 97.5)):
            reach = float(np.percentile(finite[:, j], q)) - center[j]
            want = end - center[j]
            if np.isfinite(want) and reach * want > 0:
                ratios.append(want / reach)
    return max(1.0, float(np.median(ratios))) if ratios else 1.0


def likelihood_region(runs, best, scale, cut) -> np.ndarray:
    """[M, P]: the estimate and every profile refit whose statistic is under the cut: points of the
    95% likelihood region, over which any answer's range lies inside its own profile interval.
    Along a profile the other coordinates move with the one held (log A with log E), so the
    answers they give keep the parameters' correlations. Refits only, never a point interpolated
    between two rungs: where the path jumps between them (log E from -25 to -1.5) the line
    between is far outside the region (a loss inside the grid 5% below every refit's)."""
    points = [best[None]] + [thetas[scale(dev) <= cut] for values, dev, thetas in runs.values()]
    region = np.concatenate(points)
    return region[np.all(np.isfinite(region), axis=1)]


def _refined_until_fine(problem, runs, warm, best, scale, cut, iters):
    """`runs` refined at each crossing (_refined), then again where a crossing is still coarse."""
    runs = _refined(problem, runs, warm, best, scale, cut, iters)
    for _ in range(REFINE_PASSES):
        again = _refined(problem, runs, warm, best, scale, cut, iters, coarse_only=True)
        if all(len(again[j][0]) == len(runs[j][0]) for j in runs):
            break
        runs = again
    return runs


def _refined(problem, runs, warm, best, scale, cut, iters, coarse_only=False):
    """`runs` with REFINE more rungs between each side's last rung inside the cut and its first
    over it, each chain started from that last rung inside; `coarse_only`: only where that first
    rung over reads more than COARSE times the cut."""
    refine, first = {}, {}
    for j, (values, dev, thetas) in runs.items():
        extra = []
        stat = scale(dev)
        for side in (-1, 1):
            inside, outside = crossing(values, stat, float(best[j]), cut, side)
            if outside is None or (coarse_only and stat[np.flatnonzero(values == outside)[0]] <= COARSE * cut):
                continue
            extra.append(np.linspace(inside, outside, REFINE + 2)[1:-1])
            if inside != float(best[j]):
                first[(j, side)] = thetas[np.flatnonzero(values == inside)[0]]
        if extra:
            refine[j] = np.concatenate(extra)
    out = dict(runs)
    for j, (values, dev, thetas) in _profile_runs(problem, warm, refine, iters, first).items():
        old = out[j]
        out[j] = (np.concatenate([old[0], values]), np.concatenate([old[1], dev]), np.concatenate([old[2], thetas]))
    return out


def _edges(runs, best, scale, cut) -> np.ndarray:
    """The solutions at each coordinate's last rung inside the cut, per side that crossed: the
    far edges of the region the data allow, where the other coordinates' profiles start too."""
    edges = []
    for j, (values, dev, thetas) in runs.items():
        for side in (-1, 1):
            inside, outside = crossing(values, scale(dev), float(best[j]), cut, side)
            if outside is not None and inside != float(best[j]):
                edges.append(thetas[np.flatnonzero(values == inside)[0]])
    return np.array(edges).reshape(-1, len(best))


def within_decades(name: str, ident: Identification) -> Identification:
    """An identified positive parameter whose interval spans more than MAX_DECADES orders of
    magnitude becomes not_identified: its profile closed, but no reader could act on it."""
    low, high = ident.profile_ci
    if ident.status != "identified" or not low >= 0 or not high > low * 10 ** MAX_DECADES:
        return ident
    # low == 0: the closed end lies below 1e-100 (where _in_units reads 0), more decades than any
    span = f"{math.log10(high / low):.0f} orders of magnitude" if low > 0 else "down to 0 (below 1e-100)"
    return Identification("not_identified", f"its 95% profile interval [{low:.3g}, {high:.3g}] spans {span}: "
                                            f"closed, but the data do not pin {name} down", (low, high), ident.method)


def _profile_runs(problem, warm, ladders, iters, first=None, stop=None):
    """Minimise the deviance with coordinate j held at each value of ladders[j], outwards from the
    estimate on each side, every rung started from the rung before it (continuation: far from the
    estimate the nuisance parameters have moved, and a start at the estimate can stall in a local
    minimum) and from every warm start; `first[(j, side)]`: where a chain's first rung starts
    (default: the estimate); `stop(j, deviance)`: true where a chain of coordinate j ends after that rung. Per
    coordinate: (values, deviance, fitted thetas)."""
    if not ladders:
        return {}
    n_coords = warm.shape[1]
    chains, previous = [], []   # (coordinate, rungs ordered outwards); each chain's last solution
    for j, values in ladders.items():
        center = float(warm[0][j])
        for side in (-1, 1):
            rungs = np.asarray(values)[(np.asarray(values) - center) * side > 0]
            if len(rungs):
                chains.append((j, rungs[np.argsort(side * rungs)]))
                previous.append(np.array((first or {}).get((j, side), warm[0]), dtype=np.float64))
    found = {j: ([], [], []) for j in ladders}
    done = set()
    for step in range(max(len(rungs) for _, rungs in chains)):
        x0, mask, fixed, owner = [], [], [], []
        for c, (j, rungs) in enumerate(chains):
            if step >= len(rungs) or c in done:
                continue
            for start in [previous[c], *warm]:
                start = start.copy()
                start[j] = rungs[step]
                x0.append(start)
                mask.append(np.eye(n_coords)[j])
                fixed.append(start * np.eye(n_coords)[j])
                owner.append(c)
        if not x0:   # every chain still on its ladder has stopped
            break
        x, f, _, _ = problem.minimize(np.array(x0), iters, mask=np.array(mask), fixed=np.array(fixed))
        owner = np.array(owner)
        for c in np.unique(owner):
            rows = np.flatnonzero(owner == c)
            pick = rows[np.argmin(f[rows])]
            j, rungs = chains[c]
            previous[c] = x[pick]
            found[j][0].append(rungs[step])
            found[j][1].append(f[pick])
            found[j][2].append(x[pick])
            if stop is not None and stop(j, f[pick]):
                done.add(c)
        if len(done) == len(chains):
            break
    return {j: (np.array(v), np.array(d), np.array(t)) for j, (v, d, t) in found.items() if v}


def _merged(runs: dict, again: dict) -> dict:
    """Two profiles of the same coordinates on the same ladders (chains may have stopped at other
    rungs): every rung either reached, with the lower deviance where both did."""
    out = {}
    for j in sorted(set(runs) | set(again)):
        best = {}
        for values, dev, thetas in (r[j] for r in (runs, again) if j in r):
            for value, d, theta in zip(values, dev, thetas):
                if value not in best or d < best[value][0]:
                    best[value] = (d, theta)
        values = np.array(sorted(best))
        out[j] = (values, np.array([best[v][0] for v in values]), np.array([best[v][1] for v in values]))
    return out


def _profile_statistic(problem, best, d_min):
    """(objective -> profile statistic, its 95% cut) for the objective the fit minimises, so the
    profile is centred on the estimate it reports:
    - binomial deviance: its drop over the Pearson dispersion (quasi-binomial, against F: a
      dispersion kept at 1 or more, with chi2 below, made L0's and gamma_T's intervals cover
      0.97-0.99 on the joint designs of benchmarks/coverage.py);
    - squares (on the loss itself): the Gaussian likelihood ratio with the variance estimated;
    - Huber: the scaled drop in dispersion of an M-estimator (Ronchetti 1982), 2 (rho - rho_min) / xi
      with xi = E[psi^2] / E[psi'] for residuals N(0, s^2), s from the residuals' median absolute
      deviation: chi2(1) asymptotically, the Gaussian ratio when delta >> s, Koenker's
      least-absolute-deviation ratio when delta << s.
    The cut is F(1, n - p) where a scale is estimated."""
    n, p = problem.n, problem.n_params
    dof = max(n - p, 1)
    if problem.binomial:
        fitted = np.clip(problem.fitted(best), 1e-9, 1 - 1e-9)
        counts = problem._counts[:n]
        pearson = float(np.sum(counts * (np.asarray(problem.y) - fitted) ** 2 / (fitted * (1 - fitted))))
        phi = max(pearson / dof, 1e-12)
        return (lambda d: (np.asarray(d) - d_min) / phi), threshold(n, p)
    if problem.options.objective == "squared_loss" or not np.isfinite(problem.delta):
        floor = max(d_min, 1e-300)
        return (lambda d: dof * (np.asarray(d) - d_min) / floor), threshold(n, p)
    xi = huber_dispersion(np.asarray(problem.y) - problem.fitted(best), problem.delta, n_params=p)
    return (lambda d: 2.0 * (np.asarray(d) - d_min) / xi), threshold(n, p)


def huber_dispersion(residuals: np.ndarray, delta: float, n_params: int = 0) -> float:
    """E[psi^2] / E[psi'] of the Huber function with threshold delta for residuals N(0, s^2), s the
    residuals' normalised median absolute deviation (corrected for n_params fitted): the factor that
    makes twice a drop of the summed Huber loss a chi2(1) statistic."""
    r = np.asarray(residuals, dtype=np.float64)
    n = len(r)
    s = 1.4826 * float(np.median(np.abs(r - np.median(r)))) * math.sqrt(n / max(n - n_params, 1))
    s = max(s, 1e-300)
    c = delta / s
    inside = 2.0 * stats.norm.cdf(c) - 1.0                       # E[psi'] = P(|r| <= delta)
    psi2 = s * s * (inside - 2.0 * c * stats.norm.pdf(c)) + 2.0 * delta * delta * stats.norm.sf(c)
    return max(psi2 / max(inside, 1e-300), 1e-300)


def _read(j, values, stat, thetas, center, cut, limit, depends, names, to_parameters, best, stretch=1.0):
    """One coordinate's status (reason with a '{name}' placeholder) and the thetas at its ends;
    an identified coordinate's ends move `stretch` times as far from the center (inside its limits)."""
    ends, at_limit, end_thetas = {}, {}, []
    for side in (-1, 1):
        inside, outside = crossing(values, stat, center, cut, side)
        mask = (values < center) if side < 0 else (values > center)
        if outside is not None:
            i_in = np.flatnonzero(values == inside)
            d_in = float(stat[i_in[0]]) if len(i_in) else 0.0
            d_out = float(stat[np.flatnonzero(values == outside)[0]])
            ends[side] = ("closed", interpolate(inside, outside, d_in, d_out, cut))
            end_thetas.append(thetas[np.flatnonzero(values == outside)[0]])
            at_limit[side] = False
            continue
        side_values = values[mask]
        order = np.argsort(side * side_values)
        ends[side] = ("open", float(side_values[order[-1]]) if len(order) else center)
        if len(order):
            end_thetas.append(thetas[np.flatnonzero(mask)[order[-1]]])
        limit_value = limit[0] if side < 0 else limit[1]
        reached = np.isfinite(limit_value) and len(order) and side_values[order[-1]] == limit_value
        if not reached and len(order) >= 2:
            last, before = (thetas[np.flatnonzero(mask)[order[k]]] for k in (-1, -2))
            a, b = to_parameters(last), to_parameters(before)
            deps = [name for name in names if j in depends[name]]
            reached = all(np.isclose(float(a[n]), float(b[n]), rtol=1e-6, atol=1e-12) for n in deps)
        at_limit[side] = bool(reached)
    ident = status_of("{name}", ends, at_limit)
    reason = ident.reason
    status = ident.status
    if stretch > 1.0 and status == "identified":   # near a limit the linearisation does not hold
        ends = {side: ("closed", float(np.clip(center + stretch * (end - center), *limit)))
                for side, (_, end) in ends.items()}
        reason += f"; its interval widened {stretch:.2f}x for the error a run's rows share (several seeds a point)"
        reached = [value for _, value in ends.values() if value in limit]
        if reached:   # widened to the limit: consistent with it, as a profile that never crossed
            status = "at_bound"
            reason = (f"{{name}}'s 95% interval, widened {stretch:.2f}x for the error a run's rows share (several "
                      f"seeds a point), reaches its bound {reached[0]:g}: the data are consistent with it")
    return Identification(status, reason, (ends[-1][1], ends[1][1])), end_thetas


def _read_at_bound_stretched(problem, j, run, warm, best, scale, cut, stretch, iters, limit, depends, names,
                             to_parameters):
    """An at_bound coordinate where runs share an error: its closed end read where the statistic
    reaches the cut times stretch^2 (refined there), which moves a quadratic profile's end stretch
    times as far as an identified coordinate's end is moved. Stretching about the estimate does
    not serve here: a collapsed estimate (log E at -40) sits nowhere near the closed end. On the
    demo grid E's intervals reaching 0 covered 0.87 read at the plain cut, 0.98 read this way
    (benchmarks/coverage.py, 167 tables). Returns (Identification, end thetas, the run with its
    new rungs)."""
    wider = cut * stretch ** 2
    run = _refined_until_fine(problem, {j: run}, warm, best, scale, wider, iters)[j]
    values, dev, thetas = run
    ident, end_thetas = _read(j, values, scale(dev), thetas, float(best[j]), wider, limit, depends, names,
                              to_parameters, best)
    reason = (ident.reason + f"; its closed end read at the statistic's cut times {stretch ** 2:.2f}, for the "
              f"error a run's rows share (several seeds a point)")
    return Identification(ident.status, reason, ident.profile_ci, ident.method), end_thetas, run


def _corners(name, coords, per_coordinate, to_parameters, best):
    """The interval of a parameter that mixes several identified coordinates (the joint law's
    a = (1 - b) expit(x0)): its range over the corners of the box their profile intervals span
    (stretched as they are), the estimate included. Each side holds with 95% alone, so the box is
    conservative; the bootstrap's percentiles, used before, covered 0 of 3 such fits."""
    values = [float(to_parameters(best)[name])]
    for corner in itertools.product(*(per_coordinate[j].profile_ci for j in coords)):
        theta = best.copy()
        theta[list(coords)] = corner
        with np.errstate(all="ignore"):
            values.append(float(to_parameters(theta)[name]))
    values = [v for v in values if np.isfinite(v)]
    return (min(values), max(values))


def _in_units(name, j, coords, to_parameters, best):
    """A coordinate interval in the parameter's units (monotone: one coordinate)."""
    out = []
    for value in coords:
        theta = best.copy()
        theta[j] = value
        with np.errstate(over="ignore", under="ignore"):
            v = float(to_parameters(theta)[name])
        out.append(0.0 if abs(v) < 1e-100 else v)
    return (min(out), max(out))
