"""Scaling-law analysis: fit laws with uncertainty to result tables (or any table with a column
map), validate them on held-out compute, and store them as law files.

The names below are imported on first use, so that the light shared modules (analysis.schema,
analysis.atomic), which the sweep imports, do not pull in JAX.
"""

import importlib

_PUBLIC = {
    "fit": "analysis.fitting",
    "FORMS": "analysis.forms",
    "get_form": "analysis.forms",
    "pass_at_k": "analysis.schema",
    "Law": "analysis.law",
    "LawError": "analysis.law",
    "ParameterEstimate": "analysis.estimates",
    "load_law": "analysis.law",
    "TableError": "analysis.tables",
    "predict": "analysis.prediction",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
