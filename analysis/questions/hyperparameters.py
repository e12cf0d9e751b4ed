"""Step Law's learning rate and batch size for one (N, D) grid point, from a hyperparameter law."""

from __future__ import annotations

from analysis.answers import Quantity, Recommendation, fmt, quantity, range_warnings
from analysis.questions.base import PARAMS, TOKENS, Question, form_answers


class Hyperparameters(Question):
    """The only question a hyperparameter law answers."""

    name = "hyperparameters"
    title = "Hyperparameters"
    flags = (PARAMS, TOKENS)

    def asks(self, law, query):
        if not form_answers(law, self.name):
            return False
        if query.params is None or query.tokens is None:
            raise ValueError("a hyperparameter law answers for one grid point: give --params and --tokens")
        return True

    def answer(self, law, query):
        return hyperparameters_for(law, query.params, query.tokens, query.tolerance)


def hyperparameters_for(law, params: float | None, tokens: float | None, tolerance: float = 3.0) -> Recommendation:
    """Step Law's learning rate and batch size for a model of `params` parameters trained on
    `tokens` tokens, with bootstrap intervals."""
    if params is None or tokens is None:
        raise ValueError("a hyperparameter law answers for one grid point: give --params and --tokens")
    if not (params > 0 and tokens > 0):
        raise ValueError(f"--params and --tokens must be positive, got {params} and {tokens}")
    quantities = {}
    seq_len = float(law.settings.seq_len)
    for name, unit in (("lr", ""), ("batch_size", "tokens" if seq_len != 1 else "batch_size units")):
        point = float(law.predict(N=params, D=tokens, quantity=name))
        draws = law.predict_draws(N=params, D=tokens, quantity=name) if law.bootstrap_samples else []
        quantities[name] = quantity(point, draws, unit, law.spread)
    notes = ["Step Law fit: lr = k_lr N^a_lr D^b_lr, batch = k_bs D^b_bs (bootstrap-mean coefficients)"]
    if seq_len != 1:
        b = quantities["batch_size"]
        quantities["batch_sequences"] = Quantity(b.estimate / seq_len,
                                                 None if b.ci is None else (b.ci[0] / seq_len, b.ci[1] / seq_len),
                                                 f"sequences of {seq_len:g} tokens")
    return Recommendation(f"Hyperparameters for N = {fmt(params)}, D = {fmt(tokens)}", quantities, tuple(notes),
                          tuple(range_warnings(law, tolerance, N=params, D=tokens)))
