"""The budget questions' functions under the names the report, the plots and the demo call them by
(analysis.recommend.compute_optimal, ...). The questions themselves, their flags and the choice
between them live in analysis.questions, one module each."""

from analysis.questions import recommend
from analysis.questions.adaptive_thinking import adaptive_thinking
from analysis.questions.augmentation import augmentation_arms, augmentation_pays
from analysis.questions.base import draw_parameters, form_answers, point_parameters
from analysis.questions.compute_optimal import compute_optimal, compute_optimal_power_law
from analysis.questions.hyperparameters import hyperparameters_for
from analysis.questions.inference_aware import inference_aware
from analysis.questions.joint_allocation import joint_allocation, joint_arms
from analysis.questions.thinking import (ThinkingPolicy, accuracy_by_difficulty, adaptive_thinking_policy,
                                         check_difficulty_mix, check_mix_shares, law_difficulties, law_difficulty_mix,
                                         mixed_prediction, parse_difficulty_mix, policy_frontier,
                                         solve_thinking_policy, thinking_budgets)

__all__ = ["ThinkingPolicy", "accuracy_by_difficulty", "adaptive_thinking", "adaptive_thinking_policy",
           "augmentation_arms", "augmentation_pays", "check_difficulty_mix", "check_mix_shares", "compute_optimal",
           "compute_optimal_power_law", "draw_parameters", "form_answers", "hyperparameters_for", "inference_aware",
           "joint_allocation", "joint_arms", "law_difficulties", "law_difficulty_mix", "mixed_prediction",
           "parse_difficulty_mix", "point_parameters", "policy_frontier", "recommend", "solve_thinking_policy",
           "thinking_budgets"]
