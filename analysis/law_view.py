"""How a Law shows itself: a one-line repr (print(law), a REPL, a log) and an HTML table for
notebooks (Jupyter calls Law._repr_html_). Neither lists the bootstrap draws, only their count;
`scaling fit` prints the full summary (analysis.cli.summary)."""

from __future__ import annotations

import html

from analysis.answers import fmt


def _interval(p) -> str:
    return f"[{fmt(p.ci[0])}, {fmt(p.ci[1])}]" if p.ci is not None else ""


def _heldout(law) -> str:
    error = law.heldout.get("mean_relative_error")
    return f"held-out error {error:.2%}" if error is not None else "no held-out check"


def short_repr(law) -> str:
    """Law(chinchilla, approach 3, eval_loss, 240 points: E=1.82 [1.77, 1.87], ...; held-out error
    0.40%; 1000 bootstrap draws)."""
    params = ", ".join(f"{name}={fmt(p.estimate)} {_interval(p)}".rstrip() for name, p in law.parameters.items())
    return (f"Law({law.form}, approach {law.approach}, {law.target}, {law.n_points} points: {params}; "
            f"{_heldout(law)}; {law.n_bootstrap} bootstrap draws"
            + ("" if law.converged else "; NOT CONVERGED") + ")")


def html_table(law) -> str:
    """The law as a notebook shows it: a heading line, then a row per parameter."""
    esc = html.escape
    ranges = ", ".join(f"{k} {fmt(lo)} to {fmt(hi)}" for k, (lo, hi) in law.ranges.items())
    rows = "".join(f"<tr><td>{esc(name)}</td><td>{esc(fmt(p.estimate))}</td><td>{esc(fmt(p.se))}</td>"
                   f"<td>{esc(_interval(p))}</td></tr>" for name, p in law.parameters.items())
    return (f"<div><p><b>{esc(str(law.form))}</b> law (approach {law.approach}) of {esc(law.target)}: "
            f"{law.n_points} points, {esc(_heldout(law))}, {law.n_bootstrap} bootstrap draws"
            + ("" if law.converged else ", <b>not converged</b>") + f"<br><small>ranges: {esc(ranges)}</small></p>"
            "<table><thead><tr><th>parameter</th><th>estimate</th><th>se</th><th>95% interval</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")
