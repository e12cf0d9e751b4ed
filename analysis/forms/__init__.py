"""Law forms, one module each, registered by name (analysis.forms.base explains what a form is).

Adding a form is adding a module here whose class is decorated with `@register`; the registry
imports every module of this package the first time a form is looked up.
"""

from analysis.forms.base import FORMS, CurveForm, CurveOptions, FormOptions, LawForm, get_form, register

__all__ = ["FORMS", "CurveForm", "CurveOptions", "FormOptions", "LawForm", "get_form", "register"]
