"""A solve leaves the caller's model as it was, and its figures do not depend on the units or on
where the clock starts: a relaxed solve of a Pyomo model the caller owns, the decode-routing
hindsight IP with small time units, batch scheduling with every arrival shifted by a constant."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from servopt.core import InfeasibleError
from servopt.instances import caching as caching_instances
from servopt.instances.library import LIBRARY_DIR
from servopt.models import caching as caching_model
from servopt.solvers import exact


def _knapsack() -> pyo.ConcreteModel:
    """max x + y s.t. 2x + 2y <= 3, x, y binary: LP 1.5 (any x + y = 1.5), IP 1 (by hand)."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var(domain=pyo.Binary)
    m.y = pyo.Var(domain=pyo.Binary)
    m.cap = pyo.Constraint(expr=2 * m.x + 2 * m.y <= 3)
    m.obj = pyo.Objective(expr=m.x + m.y, sense=pyo.maximize)
    return m


def test_relaxed_solve_leaves_the_callers_model_integer():
    m = _knapsack()
    assert exact.solve_model(m, relax=True).objective == pytest.approx(1.5)
    assert m.x.domain is pyo.Binary and m.y.domain is pyo.Binary
    ip = exact.solve_model(m)  # the same model object, now as an IP: 1 by hand, not the LP's 1.5
    assert ip.status == "optimal" and ip.objective == pytest.approx(1.0)
    assert not ip.info["lp"]


def test_readme_caching_example_lp_then_ip_on_one_model():
    # the README's example: LP bound 6.583, integer optimum 8.23 (a fresh model's IP agrees)
    inst = caching_instances.Instance(time=np.arange(6.0), object_id=np.array([1, 1, 2, 1, 0, 2]),
                                      size=np.array([1, 1, 3]),
                                      miss_cost=np.array([0.71, 2.58, 2.47]), capacity=3)
    m = caching_model.build(inst)
    assert exact.solve_model(m, relax=True).objective == pytest.approx(6.58333333, abs=1e-6)
    ip = exact.solve_model(m)
    assert ip.objective == pytest.approx(8.23, abs=1e-9)
    assert ip.objective == pytest.approx(exact.solve_model(caching_model.build(inst)).objective)
    assert ip.bound == pytest.approx(8.23, abs=1e-3)


def test_relaxed_solve_restores_domains_when_it_raises():
    m = _knapsack()
    m.need = pyo.Constraint(expr=m.x + m.y >= 3)  # infeasible even relaxed
    with pytest.raises(InfeasibleError):
        exact.solve_model(m, relax=True)
    assert m.x.domain is pyo.Binary and m.y.domain is pyo.Binary


def test_infeasible_message_without_a_decision_names_the_model_once():
    m = _knapsack()
    m.need = pyo.Constraint(expr=m.x + m.y >= 3)
    with pytest.raises(InfeasibleError, match=r"^the model is infeasible"):
        exact.solve_model(m)
    with pytest.raises(InfeasibleError, match=r"^the caching model is infeasible"):
        exact.solve_model(m, decision="caching")


# ---------------------------------------------------------------------------------------------
# decode routing: the hindsight IP in small time units
# ---------------------------------------------------------------------------------------------
DR_8X2_OPTIMUM = 1467.7597  # dr_hindsight_8x2's proved optimum (ms), in the library's units


def _dr_scaled(factor: float):
    import dataclasses

    from servopt.instances import load

    inst = load(str(LIBRARY_DIR / "decode_routing" / "dr_hindsight_8x2.json"))
    return dataclasses.replace(inst, step_ms=inst.step_ms * factor,
                               ms_per_kv_token=inst.ms_per_kv_token * factor,
                               prefill_ms_per_token=inst.prefill_ms_per_token * factor)


def _dr_cost(inst, worker: np.ndarray) -> float:
    """What an assignment costs, by hand: sum over active steps of c0 + the largest load."""
    from servopt.models import decode_routing as dm

    act = dm.activity(inst)
    load = np.zeros((inst.workers, len(act.steps)))
    np.add.at(load, (worker[act.request], act.step), act.work)
    return float(inst.step_ms * len(act.steps) + load.max(axis=0).sum())


@pytest.mark.parametrize("factor", [1.0, 1e-5, 1e-9])
@pytest.mark.parametrize("backend", ["highs", "pyomo"])
def test_decode_hindsight_ip_is_honest_in_any_time_unit(factor, backend):
    import servopt

    inst = _dr_scaled(factor)
    sol = servopt.solve(inst, backend=backend)
    cost = _dr_cost(inst, sol.decisions["worker"].to_numpy())
    optimum = DR_8X2_OPTIMUM * factor
    # the reported objective is what its assignment costs (never less: 1467.28 at 1e-5 was),
    # within the requested gap of the proved optimum, and the bound is below the optimum
    assert sol.status == "optimal"
    assert sol.objective >= cost * (1 - 1e-9)
    assert cost == pytest.approx(optimum, rel=1.01e-4)
    assert sol.bound <= optimum * (1 + 1e-7)
    assert sol.gap <= 1e-4 + 1e-12
    u = sol.decisions["u"].to_numpy()  # in ms, like the objective
    assert inst.step_ms * len(u) + u.sum() == pytest.approx(sol.objective, rel=1e-9)


@pytest.mark.parametrize("factor", [1e-5, 1e-9, 1e5])
def test_decode_evaluator_bound_is_the_proved_optimum_in_any_time_unit(factor):
    # the gap table's bound (benchmarks.decode_routing.bound, its own HiGHS matrix solve) built
    # the rows in ms: at 1e-5 it reported "optimal" 1467.26, below the proved optimum 1467.76
    from servopt.benchmarks import decode_routing as bench

    bound = bench.bound(_dr_scaled(factor))
    assert bound.kind == "optimal"
    assert bound.value == pytest.approx(DR_8X2_OPTIMUM * factor, rel=1e-4)
    assert bound.value <= DR_8X2_OPTIMUM * factor * (1 + 1e-9)


def test_decode_hindsight_lp_prices_keep_their_units_at_any_time_unit():
    import servopt

    base = servopt.solve(_dr_scaled(1.0), relax=True)
    small = servopt.solve(_dr_scaled(1e-5), relax=True)
    assert small.objective == pytest.approx(base.objective * 1e-5, rel=1e-7)
    # step_load and step_floor: ms per ms, the same numbers; assign: ms per request, x 1e-5
    per_step = (small.prices["step_load"].groupby(level="step").sum()
                + small.prices["step_floor"])
    np.testing.assert_allclose(per_step.to_numpy(), 1.0, atol=1e-7)
    assert small.prices["assign"].sum() == pytest.approx(base.prices["assign"].sum() * 1e-5,
                                                         rel=1e-6)
    cvx = servopt.solve(_dr_scaled(1e-5), backend="cvxpy")
    assert cvx.objective == pytest.approx(small.objective, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# batch scheduling: every arrival shifted by a constant
# ---------------------------------------------------------------------------------------------
SHIFTS = [10**7, 1_700_000_000]


def _bs(offset: int = 0):
    import dataclasses

    from servopt.instances import load

    inst = load(str(LIBRARY_DIR / "batch_scheduling" / "bs_offline_10.json"))
    return dataclasses.replace(inst, arrival=inst.arrival + offset)


@pytest.mark.parametrize("offset", SHIFTS)
def test_batch_solves_are_shift_invariant_and_small(offset):
    import tracemalloc

    import servopt
    from servopt.models import batch_scheduling as bm

    base, shifted = _bs(), _bs(offset)
    tracemalloc.start()
    try:
        for kw in ({}, {"relax": True}, {"backend": "pyomo"}, {"backend": "cvxpy"}):
            want = servopt.solve(base, **kw)
            got = servopt.solve(shifted, **kw)
            assert got.objective == pytest.approx(want.objective, rel=1e-9), kw
            if not got.relaxed:  # a schedule on the instance's own rounds
                start = got.decisions["start"].to_numpy()
                assert bm.is_feasible(base, start - offset)
                assert bm.schedule_latency(shifted, start) == pytest.approx(got.objective)
            if "kv_memory" in got.prices:  # priced rounds labelled as the instance's
                assert got.prices["kv_memory"].index[0] == offset
                np.testing.assert_allclose(got.prices["kv_memory"].to_numpy(),
                                           want.prices["kv_memory"].to_numpy(), atol=1e-7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6  # 2.4 GB at +1e7 and a MemoryError at +1.7e9 before


def _bs_numbers(inst) -> dict[str, float]:
    """The batch rules' costs, the hindsight search's cost and every bound method's value."""
    from servopt.benchmarks import batch_scheduling as bb
    from servopt.solvers import batch_scheduling as bs

    numbers = {method: bb.evaluate(inst, method).cost
               for method in ("fcfs", "bid_price", "bid_price_stationary")}
    numbers["hindsight"] = bb.evaluate(inst, bs.Hindsight(time_limit=1.0)).cost
    numbers["bound"] = bb.bound(inst).value
    for method in ("lp", "ip", "cover"):
        numbers[f"bound {method}"] = bb.bound(inst, method=method, time_limit=10).value
    return numbers


@pytest.fixture(scope="module")
def unshifted_numbers() -> dict[str, float]:
    """The unshifted instance's numbers, computed once for every shift (plain floats)."""
    return _bs_numbers(_bs())


@pytest.mark.parametrize("offset", SHIFTS)
def test_batch_rules_and_bound_are_shift_invariant(offset, unshifted_numbers):
    from servopt.models import batch_scheduling as bm
    from servopt.solvers import batch_scheduling as bs

    shifted = _bs(offset)
    # every bound method, not only auto (the review: method="ip" allocated a row per absolute
    # round, a MemoryError at +1.7e9; cover's value moved with the shift)
    assert _bs_numbers(shifted) == unshifted_numbers
    # the search's first schedule is on the instance's rounds, like its plan
    search = bs.Hindsight(time_limit=1.0)
    search.prepare(shifted)
    assert bm.is_feasible(shifted, search.initial) and bm.is_feasible(shifted, search.planned)
