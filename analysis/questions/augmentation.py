"""Whether thinking-augmented data pays for itself once the teacher's generation FLOPs are charged
(an augmentation law with per-arm multipliers m_<arm>)."""

from __future__ import annotations

from collections.abc import Mapping

from analysis.answers import Recommendation, fmt, quantity, range_warnings
from analysis.chinchilla import NAMES as CHINCHILLA_PARAMETERS, best_loss_at_budget
from analysis.questions.base import (TEACHER_FLOPS_PER_TOKEN, TRAIN_FLOPS, Flag, Question, draw_parameters,
                                     form_answers, point_parameters, require_chinchilla)

THINKING_FRACTION = Flag("thinking_fraction", "share of an augmented arm's trained tokens that are thinking "
                                              "(default: the law's settings)", check="share")


class AugmentationPays(Question):
    """Asked of an augmentation law with a training budget and the teacher's cost (given, or in the
    law's settings)."""

    name = "augmentation_pays"
    title = "Does thinking augmentation pay for itself"
    flags = (TRAIN_FLOPS, TEACHER_FLOPS_PER_TOKEN, THINKING_FRACTION)

    def asks(self, law, query):
        return bool(query.train_flops is not None and augmentation_arms(law)
                    and (query.teacher_flops_per_token is not None or query.thinking_fraction is not None
                         or law.settings.teacher_flops_per_token is not None))

    def answer(self, law, query):
        return augmentation_pays(law, query.train_flops, query.teacher_flops_per_token, query.thinking_fraction,
                                 query.tolerance)


def augmentation_arms(law) -> list[str]:
    """Arms with a fitted data multiplier m_<arm> (the reference arm, usually vanilla, has m = 1)."""
    if not form_answers(law, "augmentation_pays"):
        return []
    reference = law.settings.reference_arm
    return [arm for arm in law.settings.arms if arm != reference and f"m_{arm}" in law.parameters]


def augmentation_pays(law, train_flops: float, teacher_flops_per_token: float | None = None,
                      thinking_fraction: float | Mapping[str, float] | None = None,
                      tolerance: float = 3.0) -> Recommendation:
    """Does training on an augmented arm beat vanilla at equal compute, teacher FLOPs charged?

    Each trained token of arm a costs 6N plus f_a x teacher FLOPs per thinking token, where f_a is
    the share of its trained tokens that are thinking; its data is worth m_a vanilla tokens. For
    each arm the best (N, D) within train_flops is found, and the loss gain over the best vanilla
    model is reported: positive means the augmentation pays for itself.
    """
    require_chinchilla(law, "the augmentation question")
    arms = augmentation_arms(law)
    if not arms:
        raise ValueError(f"law of form {law.form.name!r} has no data multipliers m_<arm>: fit the augmentation form")
    settings = law.settings
    teacher = teacher_flops_per_token if teacher_flops_per_token is not None else settings.teacher_flops_per_token
    if teacher is None:
        raise ValueError("the teacher's FLOPs per thinking token are not in the law's settings: give "
                         "--teacher_flops_per_token")
    fractions = settings.thinking_fraction or {}
    point, draws = point_parameters(law), draw_parameters(law)
    have_draws = all(k in draws for k in CHINCHILLA_PARAMETERS)
    _, _, base = best_loss_at_budget(point, train_flops)
    base_draws = best_loss_at_budget(draws, train_flops)[2] if have_draws else None
    quantities = {"loss_vanilla": quantity(base, base_draws if have_draws else [], law.target, law.spread)}
    notes = [f"training budget {fmt(train_flops)} FLOPs including the teacher's generation at "
             f"{fmt(teacher)} FLOPs per thinking token"]
    derived = []
    for arm in arms:
        given = thinking_fraction if thinking_fraction is not None else fractions
        share = given.get(arm) if isinstance(given, Mapping) else given
        if share is None:
            raise ValueError(f"the thinking share of arm {arm!r}'s trained tokens is not in the law's "
                             f"settings (thinking_fraction): give --thinking_fraction")
        extra = float(share) * float(teacher)
        m = point[f"m_{arm}"]
        n, d, loss = best_loss_at_budget(point, train_flops, m, extra)
        gain_draws = []
        if have_draws and f"m_{arm}" in draws:
            dn, dd, dl = best_loss_at_budget(draws, train_flops, draws[f"m_{arm}"], extra)
            gain_draws = base_draws - dl
        else:
            dn = dd = dl = []
        quantities[f"m_{arm}"] = quantity(m, draws.get(f"m_{arm}", []), "vanilla tokens per token", law.spread)
        quantities[f"N_{arm}"] = quantity(n, dn, "parameters", law.spread)
        quantities[f"D_{arm}"] = quantity(d, dd, "tokens", law.spread)
        quantities[f"loss_{arm}"] = quantity(loss, dl, law.target, law.spread)
        quantities[f"loss_gain_{arm}"] = quantity(base - loss, gain_draws, law.target, law.spread)
        ci = quantities[f"loss_gain_{arm}"].ci
        verdict = ("pays for itself" if base > loss else "does not pay for itself")
        if ci is not None and ci[0] < 0 < ci[1]:
            verdict += " (the interval includes no gain: not settled by this data)"
        derived.append(f"arm {arm!r}: worth {m:.3g}x vanilla data, thinking share {share:g}; it {verdict}")
    return Recommendation("Does thinking augmentation pay for itself (teacher FLOPs charged)?",
                          quantities, tuple(notes), tuple(range_warnings(law, tolerance, C=train_flops)),
                          derived=tuple(derived))
