"""Approaches 1 and 2 of Hoffmann et al.: compute-optimal power laws N_opt = k_N C^a, D_opt = k_D C^b."""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis import isoflop, porian
from analysis.forms.base import FormOptions, LawForm, register
from analysis.estimates import LawError


ISOFLOP_METHODS = ("parabola", "porian")


@dataclasses.dataclass(frozen=True)
class ComputeOptimalOptions(FormOptions):
    budget_decimals: int = 1              # compute budgets are log10 C rounded to this many decimals
    isoflop_method: str = "parabola"      # approach 2: "parabola" or "porian" (analysis.porian)
    seed_noise: float | None = None       # porian: loss standard deviation between seeds
    noise_draws: int | None = None        # porian: seed-noise perturbations per curve


@register
class ComputeOptimal(LawForm):
    """Fitted by analysis.isoflop (approach 1: the lowest-loss run per compute bin; approach 2: the
    minimum of each IsoFLOP curve) or analysis.porian, then OLS of log N_opt and log D_opt on log C."""

    name = isoflop.COMPUTE_OPTIMAL
    description = "N_opt = k_N C^a, D_opt = k_D C^b"
    paper = "Hoffmann et al. 2022 (approaches 1 and 2); Porian et al. 2024"
    covariates = ("C",)
    Options = ComputeOptimalOptions
    approaches = (1, 2)
    questions = ("compute_optimal",)

    def fit(self, table, options, *, approach, target, columns, bootstrap, seed, **_):
        method_options = {k: v for k in ("seed_noise", "noise_draws") if (v := getattr(options, k)) is not None}
        if options.isoflop_method not in ISOFLOP_METHODS:
            raise ValueError(f"isoflop_method must be one of {ISOFLOP_METHODS}, got {options.isoflop_method!r}")
        if options.isoflop_method == "porian":
            if approach != 2:
                raise ValueError("--isoflop-method=porian is an approach-2 estimator; use it with --approach=2")
            return porian.fit_porian(table, target=target, columns=columns, budget_decimals=options.budget_decimals,
                                     seed=seed, bootstrap=bootstrap or None, **method_options)
        if method_options:
            raise ValueError(f"options {sorted(method_options)} apply only to --isoflop-method=porian")
        return isoflop.fit_compute_optimal(table, approach=approach, target=target, columns=columns,
                                           bootstrap=bootstrap, budget_decimals=options.budget_decimals, seed=seed)

    def parameter_names_for(self, options=None):
        return ("a", "b", "k_N", "k_D")

    def quantities(self, options):
        return {"N_opt": {"quantity": "N"}, "D_opt": {"quantity": "D"}}

    def optimal_allocation(self, params, flops):
        return params["k_N"] * np.power(flops, params["a"]), params["k_D"] * np.power(flops, params["b"])

    def summary_lines(self, law):
        if law.settings.isoflop_method != "porian":
            return []
        d = law.diagnostics
        lines = [f"Porian et al. approach 2: {d['n_optima']} IsoFLOP curves, seed noise {law.settings.seed_noise:g}, "
                 f"{law.settings.noise_draws} draws per curve; interval from {len(law.bootstrap_samples['a'])} "
                 f"weighted refits; R^2 (N) {d['r_squared']['N']:.4f}"]
        lines += [f"dropped curve C = {dropped['C']:.3g}: {dropped['reason']}" for dropped in d.get("dropped_curves", [])]
        return lines

    def predict(self, params, options=None, **covariates):
        quantity = covariates.get("quantity", "N")
        if quantity not in ("N", "D") or "C" not in covariates:
            raise LawError("an approach-1/2 law predicts N_opt or D_opt: predict(C=..., quantity='N'|'D')")
        n, d = self.optimal_allocation(params, np.asarray(covariates["C"], dtype=np.float64))
        return n if quantity == "N" else d
