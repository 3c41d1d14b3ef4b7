"""A model as sparse arrays with named, labelled row and column families (linopy-style).

A model module may offer ``build_matrix_model(instance, *, relax=False, **options)`` next to its
Pyomo ``build``: the same formulation as data, which :func:`servopt.solvers.exact.solve` hands to
HiGHS directly (no Pyomo expression building or solver translation: 1.3-8.5x faster on the
library's large LPs, ``benchmarks/results/exact_matrix.md``) and whose duals come back labelled
like the Pyomo model's.

    sense  objective @ x + offset
    s.t.   row_lower <= matrix @ x <= row_upper        (a row with equal sides is an equality)
           col_lower <= x <= col_upper,  x[integer] whole numbers (ignored when relaxed)

``rows[name]`` is a constraint family named as in the Pyomo model: ``positions[k]`` is the row
of label ``index[k]``, or -1 for a row the model leaves out because it can never bind (its price
is 0, like a skipped Pyomo row). ``bound_rows`` are families the model states as column upper
bounds (``x_j <= u_j``): their price is the column's reduced cost, normalised like a ``<=`` row.
``columns[name]`` labels variables the same way; ``decisions`` (optional) turns the column values
into the Pyomo path's decisions (a Series, or a DataFrame such as decode routing's request x
worker shares, per name). ``start`` is a feasible point (the warm start of a MIP).
``bound_lp`` (optional) builds an LP whose optimum is a proved bound on the MIP's optimum (e.g. a
cheaper relaxation of it): solved before the MIP when the call has a time limit (after it when a
limit among ``options`` stopped it before its root LP); the better bound is reported.
``objective_scale`` and ``row_scale`` state a model written in other units than it reports (for
HiGHS's absolute tolerances, e.g. rows in tokens rather than in a tiny number of ms): the
reported objective and bound are ``objective_scale`` x the model's, and the price of row family
F is ``objective_scale / row_scale[F]`` x its dual (``row_scale[F]``: reported units per row
unit, 1 when absent); ``decisions`` reports the columns in their documented units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from servopt.core.solution import Sense


@dataclasses.dataclass
class Family:
    """Positions (rows or columns; -1 = left out, price 0) of a family, labelled by ``index``."""

    positions: np.ndarray
    index: pd.Index

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.int64).ravel()
        if len(self.positions) != len(self.index):
            raise ValueError(f"a family has {len(self.positions)} positions for "
                             f"{len(self.index)} labels")


@dataclasses.dataclass
class MatrixModel:
    """See the module docstring. Arrays are float (``integer`` a bool mask over the columns)."""

    objective: np.ndarray
    matrix: sp.spmatrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    rows: dict[str, Family]
    columns: dict[str, Family]
    sense: Sense = "min"
    offset: float = 0.0
    integer: np.ndarray | None = None
    bound_rows: dict[str, Family] = dataclasses.field(default_factory=dict)
    start: np.ndarray | None = None
    decisions: Callable[[np.ndarray], Mapping[str, pd.Series | pd.DataFrame]] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    bound_lp: Callable[[], MatrixModel] | None = None
    objective_scale: float = 1.0
    row_scale: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = sp.csc_matrix(self.matrix)
        rows, cols = self.matrix.shape
        for name in ("objective", "col_lower", "col_upper"):
            setattr(self, name, _vector(name, getattr(self, name), cols))
        for name in ("row_lower", "row_upper"):
            setattr(self, name, _vector(name, getattr(self, name), rows))
        if self.integer is not None:
            self.integer = np.asarray(self.integer, dtype=bool).ravel()
            if len(self.integer) != cols:
                raise ValueError(f"integer has {len(self.integer)} entries for {cols} columns")
        if self.start is not None:
            self.start = _vector("start", self.start, cols)
        if self.sense not in ("min", "max"):
            raise ValueError(f"sense must be 'min' or 'max', got {self.sense!r}")
        for kind, families, size in (("row", self.rows, rows), ("column", self.columns, cols),
                                     ("column", self.bound_rows, cols)):
            for name, family in families.items():
                if len(family.positions) and (family.positions.max() >= size
                                              or family.positions.min() < -1):
                    raise ValueError(f"family {name!r} refers to a {kind} outside 0..{size - 1}")

    @property
    def is_mip(self) -> bool:
        return self.integer is not None and bool(self.integer.any())

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


def _vector(name: str, values: Any, size: int) -> np.ndarray:
    out = np.asarray(values, dtype=float).ravel()
    if out.size != size:
        raise ValueError(f"{name} has {out.size} entries, expected {size}")
    return out
