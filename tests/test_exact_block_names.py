"""Rows and variables in a Pyomo Block are named by their full name (``blk.pin``), so a Block's
family no longer replaces a top-level family of the same local name (R44 F4: ``prices["pin"]``
was the Block row's price, and one family was gone). A top-level model's names are unchanged.

Truth: tiny LPs priced by hand. min x + 2 y with pin: x >= 1 and blk.pin: y >= 3 has x = 1,
y = 3; one more unit of either right-hand side costs 1 (pin) and 2 (blk.pin)."""

from __future__ import annotations

import pyomo.environ as pyo
import pytest

from servopt.solvers.exact import _pyomo_values, solve_model


def _model(*, integer: bool = False) -> pyo.ConcreteModel:
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeIntegers if integer else pyo.NonNegativeReals)
    m.blk = pyo.Block()
    m.blk.x = pyo.Var(within=pyo.NonNegativeReals)  # (blk.x: the y of the docstring)
    m.pin = pyo.Constraint(expr=m.x >= 1)
    m.blk.pin = pyo.Constraint(expr=m.blk.x >= 3)
    m.obj = pyo.Objective(expr=m.x + 2 * m.blk.x, sense=pyo.minimize)
    return m


def test_a_block_row_and_a_top_level_row_of_one_local_name_keep_their_own_prices():
    solution = solve_model(_model(), relax=True)
    assert solution.objective == pytest.approx(1 + 2 * 3)
    assert sorted(solution.prices) == ["blk.pin", "pin"]
    assert solution.prices["pin"].tolist() == pytest.approx([1.0])
    assert solution.prices["blk.pin"].tolist() == pytest.approx([2.0])


def test_a_block_variable_does_not_replace_a_top_level_one():
    # the decisions of a registered decision without its own ``decisions`` (a plug-in's) are
    # read this way from its solved model
    model = _model()
    solve_model(model, relax=True)
    values = _pyomo_values(model)
    assert sorted(values) == ["blk.x", "x"]
    assert values["x"].tolist() == pytest.approx([1.0])
    assert values["blk.x"].tolist() == pytest.approx([3.0])


def test_a_top_level_cut_family_does_not_leave_a_block_row_of_its_name_unpriced():
    # valid_inequalities names the model's own top-level cut; blk.cut is an ordinary row and
    # keeps its price (y >= 3 costs 2 a unit) in the fixed-integer price LP of the MIP
    m = _model(integer=True)
    m.cut = pyo.Constraint(expr=m.x >= 0)
    m.blk.cut = pyo.Constraint(expr=m.blk.x >= 3)
    m.blk.del_component(m.blk.pin)
    m.valid_inequalities = ("cut",)
    solution = solve_model(m)
    assert solution.objective == pytest.approx(7)
    assert "cut" not in solution.prices
    assert solution.prices["blk.cut"].tolist() == pytest.approx([2.0])
