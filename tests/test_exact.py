"""The solve layer and the one sign convention for prices, on LPs whose duals are known by hand."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest

from servopt.benchmarks.exact_time_limit import market_split
from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.core.cvxmodel import CvxpyModel
from servopt.core.solution import clean_prices, normalise_dual, relative_gap
from servopt.solvers import exact

from toy_decision import ToyInstance

# Wyndor Glass (Hillier & Lieberman, Introduction to Operations Research, ch. 3-6):
# max 3 x1 + 5 x2  s.t.  x1 <= 4,  2 x2 <= 12,  3 x1 + 2 x2 <= 18.
# Optimum x = (2, 6), profit 36; shadow prices (0, 3/2, 1).
WYNDOR = {"profit": [3.0, 5.0], "usage": [[1, 0], [0, 2], [3, 2]], "capacity": [4, 12, 18]}


@pytest.mark.parametrize("backend", ["highs", "cvxpy"])
@pytest.mark.parametrize("sense", ["max", "min"])
def test_production_lp_prices_by_hand(backend, sense):
    inst = ToyInstance(**WYNDOR, sense=sense)
    sol = exact.solve(inst, backend=backend)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(36.0 if sense == "max" else -36.0)
    assert sol.bound == pytest.approx(sol.objective)
    # improvement per unit of extra capacity: >= 0 in both senses
    np.testing.assert_allclose(sol.prices["capacity"].to_numpy(), [0.0, 1.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(sol.decisions["x"].to_numpy(), [2.0, 6.0], atol=1e-7)
    assert sol.prices["capacity"].index.name == "resource"


def _transport(sense: str, demand_row: str):
    """Supplies (20, 40), demands (25, 25), costs [[1, 3], [2, 1]].

    By hand: x11 = 20, x21 = 5, x22 = 25, cost 55. One more unit at supply 1 saves 1 (it
    replaces a unit shipped 2 -> 1 at cost 2); supply 2 is slack (price 0). One more unit of
    demand 1 costs 2 (shipped from supply 2), of demand 2 costs 1.
    """
    supply, demand = [20.0, 40.0], [25.0, 25.0]
    cost = [[1.0, 3.0], [2.0, 1.0]]
    S, D = range(2), range(2)
    m = pyo.ConcreteModel()
    m.x = pyo.Var(S, D, domain=pyo.NonNegativeReals)
    m.supply = pyo.Constraint(S, rule=lambda m, s: sum(m.x[s, d] for d in D) <= supply[s])
    if demand_row == "eq":
        m.demand = pyo.Constraint(D, rule=lambda m, d: sum(m.x[s, d] for s in S) == demand[d])
    else:
        m.demand = pyo.Constraint(D, rule=lambda m, d: sum(m.x[s, d] for s in S) >= demand[d])
    total = sum(cost[s][d] * m.x[s, d] for s in S for d in D)
    m.obj = pyo.Objective(expr=total if sense == "min" else -total,
                          sense=pyo.minimize if sense == "min" else pyo.maximize)
    return m


def _transport_cvxpy(sense: str, demand_row: str) -> CvxpyModel:
    import cvxpy as cp

    x = cp.Variable((2, 2), nonneg=True)
    cost = np.array([[1.0, 3.0], [2.0, 1.0]])
    supply = cp.sum(x, axis=1) <= np.array([20.0, 40.0])
    shipped = cp.sum(x, axis=0)
    demand = shipped == np.array([25.0, 25.0]) if demand_row == "eq" else shipped >= np.array(
        [25.0, 25.0])
    total = cp.sum(cp.multiply(cost, x))
    obj = cp.Minimize(total) if sense == "min" else cp.Maximize(-total)
    return CvxpyModel(cp.Problem(obj, [supply, demand]), sense,
                      {"supply": (supply, pd.RangeIndex(2)), "demand": (demand, pd.RangeIndex(2))},
                      {"x": (x, pd.MultiIndex.from_product([range(2), range(2)]))})


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("demand_row", ["ge", "eq"])
def test_transportation_prices_by_hand(sense, demand_row):
    sign = 1 if sense == "min" else -1
    by_backend = {
        "highs": exact.solve_model(_transport(sense, demand_row)),
        "cvxpy": exact.solve_cvxpy(_transport_cvxpy(sense, demand_row)),
    }
    for sol in by_backend.values():
        assert sol.objective == pytest.approx(sign * 55.0)
        np.testing.assert_allclose(sol.prices["supply"].to_numpy(), [1.0, 0.0], atol=1e-7)
        if demand_row == "ge":
            # relaxing a demand row (one unit less to ship) improves the objective by 2 and 1
            np.testing.assert_allclose(sol.prices["demand"].to_numpy(), [2.0, 1.0], atol=1e-7)
        else:
            # equality: derivative of the objective in the right-hand side
            np.testing.assert_allclose(sol.prices["demand"].to_numpy(), [2.0 * sign, 1.0 * sign],
                                       atol=1e-7)


def test_normalise_dual_table():
    # a <= row in a min problem: raw d(obj)/d(rhs) = -2 means one more unit saves 2
    assert normalise_dual(-2.0, sense="min", row="le", convention="pyomo") == 2.0
    assert normalise_dual(2.0, sense="max", row="le", convention="pyomo") == 2.0
    assert normalise_dual(2.0, sense="min", row="ge", convention="pyomo") == 2.0
    assert normalise_dual(-2.0, sense="max", row="ge", convention="pyomo") == 2.0
    assert normalise_dual(-2.5, sense="min", row="eq", convention="cvxpy") == 2.5
    assert normalise_dual(2.5, sense="max", row="eq", convention="cvxpy") == 2.5
    assert normalise_dual(1.5, sense="min", row="le", convention="cvxpy") == 1.5  # multipliers >= 0
    assert normalise_dual(1.5, sense="max", row="le", convention="cvxpy") == 1.5


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("push_up", [True, False])
def test_ranged_row_prices_by_hand(sense, push_up):
    # one ranged row 1 <= x <= 3. Pushed up, x = 3 and one more unit of the upper limit is worth
    # 1; pushed down, x = 1 and one unit lower is worth 1: the price of the active side, >= 0
    m = pyo.ConcreteModel()
    m.x = pyo.Var()
    m.band = pyo.Constraint(expr=pyo.inequality(1.0, m.x, 3.0))
    gain = m.x if push_up else -m.x
    m.obj = pyo.Objective(expr=gain if sense == "max" else -gain,
                          sense=pyo.maximize if sense == "max" else pyo.minimize)
    sol = exact.solve_model(m)
    best = 3.0 if push_up else -1.0
    assert sol.objective == pytest.approx(best if sense == "max" else -best)
    assert sol.prices["band"].iloc[0] == pytest.approx(1.0)


def test_clean_prices_rounds_only_solver_noise():
    # inequality prices a hair below 0 (relative to the largest price) become exactly 0; a clearly
    # negative one stays visible (it would be a sign error), and equality prices keep their sign
    noisy = pd.Series([-1e-9, 2.0, -0.5, 0.0])
    np.testing.assert_array_equal(clean_prices(noisy, inequality=True).to_numpy(), [0.0, 2.0, -0.5, 0.0])
    np.testing.assert_array_equal(clean_prices(noisy, inequality=False).to_numpy(), noisy.to_numpy())


def test_time_limit_returns_incumbent_and_bound():
    start = time.perf_counter()
    sol = exact.solve_model(market_split(), time_limit=1.0, prices=False)
    elapsed = time.perf_counter() - start
    assert sol.status == "time_limit"
    assert sol.bound <= sol.objective + 1e-9
    assert sol.gap > 0
    assert elapsed < 10  # a hang guard, not a speed target (honoured within ~2x: see benchmarks)


def test_infeasible_lp_raises():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(domain=pyo.NonNegativeReals)
    m.low = pyo.Constraint(expr=m.x >= 5)
    m.high = pyo.Constraint(expr=m.x <= 3)
    m.obj = pyo.Objective(expr=m.x)
    with pytest.raises(InfeasibleError):
        exact.solve_model(m)


def test_infeasible_instance_raises_through_solve():
    inst = ToyInstance(profit=[1.0], usage=[[1.0]], capacity=[1.0])
    bad = dataclasses.replace(inst)  # valid; now make the model infeasible with a negative floor

    def build_infeasible(instance, relax=False):
        m = pyo.ConcreteModel()
        m.x = pyo.Var(domain=pyo.NonNegativeReals)
        m.c = pyo.Constraint(expr=m.x <= -1)
        m.obj = pyo.Objective(expr=m.x)
        return m

    from servopt.core.registry import layer_module

    models = layer_module(bad.decision, "models")
    original = models.build
    models.build = build_infeasible
    try:
        with pytest.raises(InfeasibleError, match="infeasible"):
            exact.solve(bad)
        # a decision's explain_infeasible replaces the solver's message
        models.explain_infeasible = lambda instance: "no plan meets the floor of -1 units"
        with pytest.raises(InfeasibleError, match="no plan meets the floor of -1 units"):
            exact.solve(bad)
    finally:
        models.build = original
        vars(models).pop("explain_infeasible", None)


def test_mip_prices_from_fixed_integers():
    # max 3y + x  s.t.  cap: x + y <= 4.5, 0 <= x <= 1, y integer in 0..10.
    # By hand: y = 4, x = 0.5, profit 12.5. With y fixed at 4 the row cap is tight and one more
    # unit of it is worth 1 (through x). Fixed one lower (y = 3, e.g. a truncated 3.9999999),
    # x would sit at its bound 1 with cap slack, and the price would be 0.
    m = pyo.ConcreteModel()
    m.y = pyo.Var(domain=pyo.NonNegativeIntegers, bounds=(0, 10))
    m.x = pyo.Var(domain=pyo.NonNegativeReals, bounds=(0, 1))
    m.cap = pyo.Constraint(expr=m.x + m.y <= 4.5)
    m.obj = pyo.Objective(expr=3 * m.y + m.x, sense=pyo.maximize)
    sol = exact.solve_model(m)
    assert sol.objective == pytest.approx(12.5)
    assert sol.prices["cap"].iloc[0] == pytest.approx(1.0)
    # the prices come from the HiGHS object that solved the MIP (no clone), and the clone's way
    # (kept as the fallback) agrees
    calls = []
    original = exact._fixed_integer_prices_in_place
    try:
        exact._fixed_integer_prices_in_place = lambda *a: calls.append(original(*a)) or calls[-1]
        again = exact.solve_model(m)
    finally:
        exact._fixed_integer_prices_in_place = original
    assert len(calls) == 1 and calls[0] is not None and calls[0]["cap"].iloc[0] == pytest.approx(1.0)
    assert exact._fixed_integer_prices(m, "max")["cap"].iloc[0] == pytest.approx(1.0)
    assert again.prices["cap"].iloc[0] == pytest.approx(1.0)


def test_bad_arguments():
    inst = ToyInstance(**WYNDOR)
    with pytest.raises(InvalidInstanceError, match="backend"):
        exact.solve(inst, backend="gurobi")
    with pytest.raises(InvalidInstanceError, match="servopt instance"):
        exact.solve({"not": "an instance"})
    for limit in (0, -1.0):
        with pytest.raises(InvalidInstanceError, match="time_limit must be positive"):
            exact.solve(inst, time_limit=limit)


def test_relative_gap():
    assert relative_gap(110, 100) == pytest.approx(0.1)
    assert relative_gap(90, 100, "max") == pytest.approx(0.1)
    assert relative_gap(5, 5) == 0.0
    assert np.isnan(relative_gap(float("nan"), 1.0))
    # a negative bound: the gap is relative to its magnitude, in both senses
    assert relative_gap(-90, -100) == pytest.approx(0.1)
    assert relative_gap(-110, -100, "max") == pytest.approx(0.1)
    # a zero bound: equal is 0, anything else an infinite gap
    assert relative_gap(0.0, 0.0) == 0.0 and relative_gap(1.0, 0.0) == math.inf


@pytest.mark.parametrize(("kw", "message"), [
    ({"relax": "no"}, "relax must be True or False"),
    ({"time_limit": "10"}, "time_limit"),
    ({"time_limit": -1}, "time_limit"),
    ({"mip_gap": -1}, "mip_gap"),
    ({"mip_gap": "x"}, "mip_gap"),
    ({"prices": 1}, "prices"),
    ({"foo": 1}, "unknown option"),
    ({"backend": "cvxpy", "foo": 1}, "unknown option"),
])
def test_solve_refuses_options_in_the_users_terms(kw, message):
    with pytest.raises(InvalidInstanceError, match=message):
        exact.solve(ToyInstance(**WYNDOR), **kw)


def test_cvxpy_form_that_is_another_model_is_not_labelled_a_relaxation():
    # expert placement's CVXPY form is the dispatch LP of a given placement, not the placement
    # MILP's relaxation: relax=True there is refused, and without it the LP is not "relaxed"
    from servopt.instances import expert_placement as ie

    inst = ie.generate(preset="tiny", seed=0)
    prev = np.tile(np.arange(inst.num_slots) % inst.num_experts, (inst.num_layers, 1))
    inst = inst.with_(previous_placement=prev) if hasattr(inst, "with_") else \
        dataclasses.replace(inst, previous_placement=prev)
    with pytest.raises(InvalidInstanceError, match="dispatch LP"):
        exact.solve(inst, relax=True, backend="cvxpy")
    dispatch = exact.solve(inst, backend="cvxpy")
    assert dispatch.relaxed is False
    assert dispatch.objective == pytest.approx(exact.solve(inst, placement=prev).objective, rel=1e-6)
