"""The law forms by name. This module imports nothing of analysis: the built-in forms register
themselves when analysis/forms/__init__.py imports them (explicitly, in one list), so looking a
form up never imports anything, needs no lock, and closes no import loop (tests/test_imports.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping


class Registry(Mapping):
    """Forms by name: one instance of each form class, added by `register`."""

    def __init__(self):
        self._forms: dict = {}

    def add(self, form) -> None:
        if form.name in self._forms and type(self._forms[form.name]) is not type(form):
            raise ValueError(f"two forms are named {form.name!r}: {type(self._forms[form.name]).__name__} "
                             f"and {type(form).__name__}")
        self._forms[form.name] = form

    def __getitem__(self, name: str):
        return self._forms[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._forms)

    def __len__(self) -> int:
        return len(self._forms)


FORMS = Registry()


def register(cls):
    """Class decorator: one instance of the form, registered under its name."""
    FORMS.add(cls())
    return cls


def get_form(name):
    """The form named `name` (a form object is returned as it is)."""
    if not isinstance(name, str):
        return name
    try:
        return FORMS[name]
    except KeyError:
        raise ValueError(f"unknown form {name!r}; known forms: {', '.join(FORMS)}") from None


def form_of_approach(approach: int):
    """The form whose laws approach 1 or 2 fits (approach 3 fits the form asked for)."""
    found = [form for form in FORMS.values() if approach in form.approaches and approach != 3]
    if len(found) != 1:
        raise ValueError(f"approach must be 1, 2 or 3, got {approach!r}")
    return found[0]


def forms_with_option(option: str) -> list[str]:
    """The names of the forms whose settings include `option`."""
    return sorted(name for name, form in FORMS.items() if option in {f.name for f in dataclasses.fields(form.Options)})
