"""`scaling report`'s page and the study's claims: build_report (analysis.report.page) puts
together the modules of this package: sources (table discovery), laws (which laws to fit),
findings (sentences and answers), figures, html (markup), measured and claims (findings.json).

The names below are imported on first use, as in `analysis`: `scaling compare` reads two
findings.json files through analysis.report.claims without the fitting stack (JAX), so its
--help and its comparison start at once.
"""

import importlib

_PUBLIC = {
    "build_report": "analysis.report.page",
    "render": "analysis.report.page",
    "joint_scenario": "analysis.report.findings",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    """A public name, or a module of this package (analysis.report.laws, ...) on first use."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value
