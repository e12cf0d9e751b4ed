"""Step Law: the optimal learning rate and batch size as power laws in N and D (analysis.hyperparameters)."""

from __future__ import annotations

import dataclasses

from analysis import hyperparameters
from analysis.forms.base import FormOptions, LawForm, register
from analysis.estimates import LawError


@dataclasses.dataclass(frozen=True)
class HyperparametersOptions(FormOptions):
    threshold: float = hyperparameters.DEFAULT_THRESHOLD  # near-optimal: within this relative loss of the best
    seq_len: float = 1.0                                  # tokens per sequence (batch_size in tokens)


@register
class Hyperparameters(LawForm):
    name = hyperparameters.HYPERPARAMETERS
    description = "lr* = k_lr N^a_lr D^b_lr, batch* = k_bs D^b_bs"
    paper = "Li et al. 2025 (Step Law)"
    covariates = ("N", "D")
    Options = HyperparametersOptions
    questions = ("hyperparameters",)

    def fit(self, table, options, *, target, columns, bootstrap, seed, **_):
        return hyperparameters.fit_hyperparameters(table, target=target, columns=columns, bootstrap=bootstrap,
                                                   seed=seed, threshold=options.threshold, seq_len=options.seq_len)

    def parameter_names_for(self, options=None):
        return hyperparameters.LR_PARAMETERS + hyperparameters.BS_PARAMETERS

    def quantities(self, options):
        return {"lr": {"quantity": "lr"}, "batch_size": {"quantity": "batch_size"}}

    def objective_text(self, law):
        return " (least squares on log lr and log batch)"

    def summary_lines(self, law):
        e, d = law.estimates(), law.diagnostics
        return [f"Step Law: lr = {e['k_lr']:.4g} N^{e['a_lr']:.4f} D^{e['b_lr']:.4f}, "
                f"batch = {e['k_bs']:.4g} D^{e['b_bs']:.4f} (batch in units of batch_size x {law.settings.seq_len:g}); "
                f"{d['n_near_optimal']} near-optimal runs (within {law.settings.threshold:g}) in {d['n_groups']} (N, D) "
                f"groups; estimates are bootstrap means"]

    def predict(self, params, options=None, **covariates):
        if "N" not in covariates or "D" not in covariates:
            raise LawError("a hyperparameter law predicts at N and D: predict(N=..., D=..., quantity='lr'|'batch_size')")
        return hyperparameters.predict_hyperparameters(params, covariates["N"], covariates["D"],
                                                       covariates.get("quantity", "lr"))
