"""A CVXPY model whose constraint families and variables carry labels, like a Pyomo model's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from servopt.core.solution import Sense

if TYPE_CHECKING:  # cvxpy is imported lazily: it is slow to import
    import cvxpy as cp


@dataclasses.dataclass
class CvxpyModel:
    """A CVXPY problem with named, labelled constraint families and variables.

    ``constraints[name] = (constraint, index)``: one (vector) constraint per family, whose
    entries in C order match ``index``. ``variables[name] = (variable or expression, index)``.
    ``decisions`` (optional) turns the variables' labelled values into the decisions the Pyomo
    path reports, so a solution has the same fields whatever the backend.
    Price signs are normalised from CVXPY's convention by :mod:`servopt.solvers.exact`.
    """

    problem: cp.Problem
    sense: Sense
    constraints: dict[str, tuple[Any, pd.Index]]
    variables: dict[str, tuple[Any, pd.Index]]
    decisions: Callable[[dict[str, pd.Series]], dict[str, Any]] | None = None
