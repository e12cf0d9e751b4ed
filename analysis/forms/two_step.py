"""The OLMo ladder's two-step task law: (N, D) -> task loss -> accuracy (analysis.two_step fits it)."""

from __future__ import annotations

import dataclasses

from analysis import two_step
from analysis.forms.base import FormOptions, LawForm, register
from analysis.estimates import LawError


@dataclasses.dataclass(frozen=True)
class TwoStepOptions(FormOptions):
    task_min: float = 0.25   # the task's chance accuracy
    task_max: float = 1.0    # the task's best accuracy: the helper point at task loss 0


@register
class TwoStep(LawForm):
    name = two_step.TWO_STEP
    description = "task loss = E + A/N^alpha + B/D^beta, accuracy = a / (1 + exp(-k (L - x0))) + b"
    paper = "Bhagia et al. 2024 (OLMo ladder)"
    covariates = ("N", "D")
    Options = TwoStepOptions

    def fit(self, table, options, *, columns, bootstrap, huber_delta, seed, fit_curve, **_):
        return two_step.fit_two_step(table, columns=columns, bootstrap=bootstrap, huber_delta=huber_delta, seed=seed,
                                     task_min=options.task_min, task_max=options.task_max, fit_curve=fit_curve)

    def parameter_names_for(self, options=None):
        return two_step.STEP1 + two_step.STEP2

    def quantities(self, options):
        return {"task_loss": {"quantity": "task_loss"}, "accuracy": {"quantity": "accuracy"}}

    def objective_text(self, law):
        return f" (step 2 least squares on accuracy; step 1 Huber delta {law.huber_delta:g})"

    def summary_lines(self, law):
        e, o, d = law.estimates(), law.settings, law.diagnostics
        return [f"step 1 ({d['n_step1']} runs): task loss = {e['E']:.4g} + {e['A']:.4g}/N^{e['alpha']:.4f} + "
                f"{e['B']:.4g}/D^{e['beta']:.4f}; mean |relative error| {d['step1_fit_error']:.2%}",
                f"step 2 ({d['n_step2']} checkpoints + helper point (0, {o.task_max:g})): accuracy = "
                f"{e['a']:.4g} / (1 + exp(-{e['k']:.4g} (L - {e['x0']:.4g}))) + {e['b']:.4g}; "
                f"mean |relative error| {d['step2_fit_error']:.2%}"]

    def predict(self, params, options=None, **covariates):
        if "N" not in covariates or "D" not in covariates:
            raise LawError("a two-step law predicts at N and D: predict(N=..., D=..., quantity='accuracy'|'task_loss')")
        return two_step.predict_two_step(params, covariates["N"], covariates["D"], covariates.get("quantity", "accuracy"))
