"""Scaling-law analysis: fit laws with uncertainty to result tables (or any table with a column
map), validate them on held-out compute, and store them as law files."""

from analysis.fit import fit
from analysis.forms import FORMS, get_form, pass_at_k
from analysis.law import Law, LawError, ParameterEstimate, load_law
from analysis.predict import predict
from analysis.tables import TableError

__all__ = ["fit", "FORMS", "get_form", "pass_at_k", "Law", "LawError", "ParameterEstimate", "load_law",
           "TableError", "predict"]
