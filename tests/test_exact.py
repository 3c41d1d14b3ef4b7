"""The solve layer and the one sign convention for prices, on LPs whose duals are known by hand."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest
from highs_stub import stop_the_nth_highs

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
    assert len(calls) == 1 and calls[0] is not None and calls[0][0]["cap"].iloc[0] == pytest.approx(1.0)
    assert calls[0][1] is None  # nothing skipped
    assert exact._fixed_integer_prices(m, "max")[0]["cap"].iloc[0] == pytest.approx(1.0)
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
    assert dispatch.info["form"].startswith("cvxpy: the dispatch LP of a given placement")
    assert dispatch.objective == pytest.approx(exact.solve(inst, placement=prev).objective, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Mutation round 2: the status, bound and label a solve reports (each test says the hole it closes)
# ---------------------------------------------------------------------------------------------
def _covering_mip(cost: list[float], need: float, *, sense: str = "min", offset: float = 0.0):
    """min (or max) cost @ x + offset  s.t.  x0 + x1 >= need (<= need for max), x whole in
    0..10, with its own LP relaxation as ``bound_lp``."""
    from servopt.core.matrix import Family, MatrixModel

    def make(integer):
        return MatrixModel(
            objective=np.asarray(cost, dtype=float), matrix=np.array([[1.0, 1.0]]),
            row_lower=[need if sense == "min" else -np.inf],
            row_upper=[np.inf if sense == "min" else need],
            col_lower=[0.0, 0.0], col_upper=[10.0, 10.0],
            rows={"cover": Family([0], pd.RangeIndex(1))}, columns={"x": Family([0, 1], pd.RangeIndex(2))},
            sense=sense, offset=offset, integer=integer)

    mm = make(np.array([True, True]))
    mm.bound_lp = lambda: make(None)
    return mm


@pytest.mark.parametrize(("cost", "need", "sense", "offset", "value", "kind", "optimum"), [
    # min x0 + x1, x0 + x1 >= 1.5: LP 1.5, every schedule a whole number -> 2 (= the IP optimum)
    ([1.0, 1.0], 1.5, "min", 0.0, 2.0, "up", 2.0),
    # max x0 + x1, x0 + x1 <= 1.5: LP 1.5, rounded down to 1 (= the IP optimum)
    ([1.0, 1.0], 1.5, "max", 0.0, 1.0, "down", 1.0),
    # costs 0.4: LP 0.6, IP 0.8 (two units). Rounding up to 1 would exceed the optimum
    ([0.4, 0.4], 1.5, "min", 0.0, 0.6, None, 0.8),
    # whole costs but an offset 0.25: x0 + x1 >= 0.85 gives LP 1.1, IP 1.25; 2 would be above it
    ([1.0, 1.0], 0.85, "min", 0.25, 1.1, None, 1.25),
])
def test_the_lp_fallback_bound_is_rounded_only_when_every_value_is_whole(
        cost, need, sense, offset, value, kind, optimum):
    # closes: ceil/floor swapped by sense, the 'up'/'down' label, rounding with a fractional cost
    # or offset, and extra['bound_lp'] missing (all by hand above; optimum by enumerating x)
    mm = _covering_mip(cost, need, sense=sense, offset=offset)
    bound, extra = exact._bound_from_lp(mm, math.nan, None)
    assert bound == pytest.approx(value, abs=1e-9)
    assert extra["bound_kind"] == "lp_relaxation" and extra.get("bound_lp_rounded") == kind
    assert extra["bound_lp"] == pytest.approx(value, abs=1e-9)
    assert (bound <= optimum + 1e-9) if sense == "min" else (bound >= optimum - 1e-9)
    best = [cost[0] * a + cost[1] * b + offset for a in range(11) for b in range(11)
            if (a + b >= need if sense == "min" else a + b <= need)]
    assert optimum == pytest.approx(min(best) if sense == "min" else max(best))


@pytest.mark.parametrize(("sense", "dual", "kept"), [
    ("min", 1.0, False),  # LP 2 (rounded) is the better lower bound than 1
    ("min", 2.0, True),  # not better: the MIP's own bound stays, with its own label
    ("max", 1.5, False),  # LP 1 (rounded down) is the better upper bound than 1.5
    ("max", 1.0, True),
])
def test_the_lp_fallback_bound_replaces_the_dual_bound_only_when_better(sense, dual, kept):
    # closes: the 'better' comparison reversed for min / max
    bound, extra = exact._bound_from_lp(_covering_mip([1.0, 1.0], 1.5, sense=sense), dual, None)
    if kept:
        assert bound == dual and extra["bound_kind"] == "mip_bound"
    else:
        assert bound == (2.0 if sense == "min" else 1.0) and extra["bound_kind"] == "lp_relaxation"


def test_an_lp_stopped_by_its_iteration_limit_reports_no_bound():
    # closes: an LP stopped early reporting its iterate as a proved bound (and the status of an
    # iteration limit, 'time_limit'). Wyndor with no simplex iteration allowed: x = 0 is the
    # iterate (profit 0), far from the optimum 36; nothing is proved
    from servopt.core.matrix import Family, MatrixModel

    mm = MatrixModel(objective=np.array([3.0, 5.0]), matrix=np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 2.0]]),
                     row_lower=[-np.inf] * 3, row_upper=[4.0, 12.0, 18.0], col_lower=[0.0, 0.0],
                     col_upper=[np.inf, np.inf], rows={"capacity": Family([0, 1, 2], pd.RangeIndex(3))},
                     columns={"x": Family([0, 1], pd.RangeIndex(2))}, sense="max",
                     options={"simplex_iteration_limit": 0, "presolve": "off"})
    sol = exact.solve_matrix(mm)
    assert sol.status == "time_limit"
    assert math.isnan(sol.bound) and math.isnan(sol.gap)
    # and the stopped iterate's duals (0, 0, 0) are not passed off as prices (at the optimum
    # they are 0, 1.5, 1)
    assert sol.prices == {}


@pytest.mark.parametrize("sense", ["min", "max"])
def test_an_unbounded_cvxpy_lp_says_so_with_the_infinite_value_of_its_sense(sense):
    # closes: -inf / +inf swapped by sense, and a gap of 0 for a problem with no optimum.
    # min -x (or max x) over x >= 1: the objective improves without end
    import cvxpy as cp

    x = cp.Variable(1, nonneg=True)
    floor = x >= 1
    objective = cp.Minimize(-x[0]) if sense == "min" else cp.Maximize(x[0])
    model = CvxpyModel(cp.Problem(objective, [floor]), sense, {"floor": (floor, pd.RangeIndex(1))},
                       {"x": (x, pd.RangeIndex(1))})
    sol = exact.solve_cvxpy(model)
    assert sol.status == "unbounded"
    assert sol.objective == (-math.inf if sense == "min" else math.inf)
    assert math.isnan(sol.gap)


def test_the_relaxed_flag_says_whether_an_integer_model_was_relaxed():
    # closes: relax=True not marked relaxed on the Pyomo path, and a LINEAR model's CVXPY solve
    # (the same model, not a relaxation) marked relaxed
    from servopt.instances import caching as ci
    from servopt.instances import capacity as cpi
    from servopt.instances import expert_placement as ie

    toy = ToyInstance(**WYNDOR)  # LINEAR: relax=True relaxes nothing
    assert not exact.solve(toy, relax=True).relaxed and not exact.solve(toy).relaxed
    placement = ie.generate(preset="tiny", seed=0)  # a MIP on the Pyomo path
    assert exact.solve(placement, relax=True, backend="pyomo").relaxed
    fleet = cpi.generate(requests=50, seed=0)  # LINEAR: CVXPY solves the model itself
    assert not exact.solve(fleet, backend="cvxpy").relaxed
    cache = ci.generate(requests=40, objects=8, seed=0)  # an IP (binary keep): CVXPY has its LP
    assert exact.solve(cache, backend="cvxpy").relaxed and not exact.solve(cache).relaxed
    assert exact.solve(cache, backend="cvxpy", relax=True).relaxed
    # a model module that does not say LINEAR (batch scheduling's: binary starts) is an integer
    # model: its CVXPY solve is the relaxation
    from servopt.instances import batch_scheduling as bi

    assert not hasattr(exact.model_module("batch_scheduling"), "LINEAR")
    assert exact.solve(bi.generate(n=6, seed=1), backend="cvxpy").relaxed


def test_the_pyomo_path_hands_mip_gap_and_time_limit_to_highs(monkeypatch):
    # closes: mip_gap (or the time limit) not reaching HiGHS on the Pyomo path
    seen = []
    real = exact._highs

    class Spy:
        def __init__(self):
            self.inner = real()

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def solve(self, model, **kw):
            seen.append(kw)
            return self.inner.solve(model, **kw)

    monkeypatch.setattr(exact, "_highs", Spy)
    m = pyo.ConcreteModel()
    m.y = pyo.Var(domain=pyo.NonNegativeIntegers, bounds=(0, 10))
    m.cap = pyo.Constraint(expr=2 * m.y <= 9)
    m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
    sol = exact.solve_model(m, mip_gap=0.25, time_limit=7.0, prices=False)
    assert sol.objective == pytest.approx(4.0)  # by hand: y <= 4.5, whole
    # the limit is a budget for the whole call: HiGHS gets what is left of the 7 s after the model
    # went to HiGHS (no price LP to keep time for: prices=False)
    assert seen[0]["solver_options"]["mip_rel_gap"] == 0.25 and 6.0 < seen[0]["time_limit"] <= 7.0


def test_a_ctrl_c_after_highs_finished_keeps_the_optimal_status(monkeypatch):
    # closes: a solve that HiGHS finished to optimality reported 'interrupted' because a Ctrl-C
    # arrived as it ended (the answer is complete: nothing was cut short). Wyndor: optimum 36.
    from servopt.core.matrix import Family, MatrixModel

    def finished_then_interrupted(highs, poll=True):
        highs.run()
        return True

    monkeypatch.setattr(exact, "_run_interruptible", finished_then_interrupted)
    mm = MatrixModel(objective=np.array([3.0, 5.0]), matrix=np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 2.0]]),
                     row_lower=[-np.inf] * 3, row_upper=[4.0, 12.0, 18.0], col_lower=[0.0, 0.0],
                     col_upper=[np.inf, np.inf], rows={"capacity": Family([0, 1, 2], pd.RangeIndex(3))},
                     columns={"x": Family([0, 1], pd.RangeIndex(2))}, sense="max")
    sol = exact.solve_matrix(mm)
    assert sol.status == "optimal" and sol.objective == pytest.approx(36.0)
    stopped = MatrixModel(**{**mm.__dict__, "options": {"simplex_iteration_limit": 0, "presolve": "off"}})
    assert exact.solve_matrix(stopped).status == "interrupted"  # cut short: the Ctrl-C is what stopped it


@pytest.mark.parametrize(("nodes", "bound", "kind"), [
    (0, 2.0, "lp_relaxation"),  # stopped at the root: LP 1.5 -> 2
    (7, 1.0, "mip_bound"),  # branching had started: HiGHS's own bound stands
])
def test_a_mip_stopped_at_its_root_with_a_weak_bound_gets_the_lp_fallback(monkeypatch, nodes, bound, kind):
    # closes: the fallback bound LP tried only when HiGHS has no bound at all, not when it stopped
    # at the root node with a weak one. HiGHS's report is replaced so that it stops by its time
    # limit having explored `nodes` nodes with a dual bound of 1.0; the covering MIP
    # min x0 + x1, x0 + x1 >= 1.5 (whole x) has the LP bound 1.5, rounded up to 2 (= its optimum)
    made = stop_the_nth_highs(monkeypatch, 1, nodes=nodes, dual=1.0)
    # the limit among the model's options, not the call's: a call's budget solves the bound LP
    # first (tests/test_time_budget.py); without one, the LP is the fallback after the MIP
    mm = _covering_mip([1.0, 1.0], 1.5)
    mm.options["time_limit"] = 5.0
    sol = exact.solve_matrix(mm, prices=False)
    assert sol.status == "time_limit" and sol.objective == pytest.approx(2.0)
    assert sol.bound == pytest.approx(bound) and sol.info["bound_kind"] == kind
    assert len(made) == (1 if nodes else 2)  # the LP solved only when the MIP stopped at its root


@pytest.mark.parametrize(("info", "bound", "said"), [
    ({"highs_skipped": "time_limit"}, float("nan"), "with no bound"),
    ({"highs_skipped": "time_limit"}, 4.0, "with the bound above"),  # the bound LP's, or area
    ({"build_skipped": "time_limit: the model ..."}, 4.0, "the model would not be built in time"),
])
def test_the_cli_says_which_bound_a_start_without_highs_has(monkeypatch, capsys, info, bound, said):
    # a start returned without HiGHS can carry the bound LP's value or the model's cheap bound:
    # the command line printed "with no bound" under a bound line before
    from servopt import cli
    from servopt.core import Solution

    def stopped(*args, **kwargs):
        return Solution(status="time_limit", objective=5.0, bound=bound, gap=float("nan"),
                        wall_s=1.0, sense="min", decision="caching",
                        info={**info, "bound_kind": "lower_bound", "prices_skipped": "time_limit"})

    monkeypatch.setattr(exact, "solve", stopped)
    assert cli.main(["solve", "cache_mm_300", "--time-limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "HiGHS did not run" in out and said in out


# ---------------------------------------------------------------------------------------------
# The CVXPY path reports its status and bound like the HiGHS one
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cache_mm_300", "dr_hindsight_8x2", "cap_code"])
def test_cvxpy_relaxation_says_where_its_bound_comes_from_like_highs(name):
    # closes: every CVXPY solve labelled its bound "mip_bound" (it never said it was an LP)
    from servopt.instances.library import load

    inst = load(name)
    via_cvxpy = exact.solve(inst, relax=True, backend="cvxpy")
    via_highs = exact.solve(inst, relax=True)
    # (capacity's fluid LP has no integer variables: its optimum is the model's, not a relaxation's)
    assert via_highs.info["bound_kind"] == ("optimal" if name == "cap_code" else "lp_relaxation")
    assert via_cvxpy.info["bound_kind"] == via_highs.info["bound_kind"]
    assert via_cvxpy.objective == pytest.approx(via_highs.objective, rel=1e-6)


def test_a_cvxpy_lp_stopped_by_its_time_limit_says_time_limit_without_a_warning():
    # closes: HiGHS stopped at the limit came back as status "error" with CVXPY's UserWarning
    # "Solution may be inaccurate"
    import warnings

    from servopt.instances.library import load

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = exact.solve(load("cache_mm_300"), relax=True, backend="cvxpy", time_limit=1e-9)
    assert sol.status == "time_limit"
    assert math.isnan(sol.objective) and math.isnan(sol.bound)
    assert sol.prices == {} and sol.info["prices_skipped"] == "time_limit"
    assert sol.info["bound_kind"] == "none"


def test_a_status_cvxpy_cannot_unpack_is_a_solver_failure_not_a_traceback(monkeypatch):
    # closes: HiGHS ending in a status CVXPY cannot unpack raised a bare ValueError
    import cvxpy as cp

    x = cp.Variable(1, nonneg=True)
    floor = x >= 1
    model = CvxpyModel(cp.Problem(cp.Minimize(x[0]), [floor]), "min",
                       {"floor": (floor, pd.RangeIndex(1))}, {"x": (x, pd.RangeIndex(1))})

    def unpack_fails(*args, **kwargs):
        raise ValueError("Cannot unpack invalid solution")

    monkeypatch.setattr(model.problem, "solve", unpack_fails)
    with pytest.raises(exact.SolverFailedError, match="says nothing about its feasibility"):
        exact.solve_cvxpy(model, decision="caching")


def test_relax_on_a_linear_model_solves_the_model_itself():
    # closes: capacity's fluid LP (LINEAR, no integer variables) solved with relax=True was
    # labelled a relaxation, its optimum a bound ("lp_relaxation"); the oracle is the same solve
    # without relax, which is the model's optimum
    from servopt.instances import capacity as cpi

    fleet = cpi.generate(requests=50, seed=0)
    plain = exact.solve(fleet)
    assert plain.status == "optimal" and plain.info["bound_kind"] == "optimal"
    for backend in ("highs", "pyomo", "cvxpy"):
        relaxed = exact.solve(fleet, relax=True, backend=backend)
        assert relaxed.objective == pytest.approx(plain.objective, rel=1e-6), backend
        assert not relaxed.relaxed and relaxed.info["bound_kind"] == "optimal", backend
        assert relaxed.info["form"] == exact.solve(fleet, backend=backend).info["form"], backend
