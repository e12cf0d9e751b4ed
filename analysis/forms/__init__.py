"""Law forms, one module each, registered by name (analysis.forms.base explains what a form is).

Importing anything of this package runs this file, which imports every built-in form: the registry
(analysis.forms.registry) is complete before any lookup, with no lock and no lazy load, and the
imports are plain statements that tests/test_imports.py follows. Adding a form is adding its module
(a class decorated with `@register`) and its name to the import below; tests/test_forms.py fails,
naming the module, for a module of this folder that the import misses.

JAX is imported inside the methods that evaluate a law ("JAX on first evaluation"), not at the
top of a form's module: the registry's names, approaches and settings build `scaling fit`'s flags,
so `scaling <verb> --help` imports no JAX (tests/test_faults.py).
"""

from analysis.forms.base import CurveForm, CurveOptions, FormOptions, LawForm
from analysis.forms.registry import FORMS, form_of_approach, forms_with_option, get_form, register

# The built-in forms: importing a module registers its form.
from analysis.forms import (architecture, augmentation, chinchilla, compute_optimal, data_constrained,  # noqa: E402,F401
                            hyperparameters, joint_inference, two_step)

__all__ = ["FORMS", "CurveForm", "CurveOptions", "FormOptions", "LawForm", "form_of_approach", "forms_with_option",
           "get_form", "register"]
