"""Caching IP warm start: ``servopt.solve`` starts the IP from the rounded LP schedule (the
``lp_schedule`` method), on the matrix and the Pyomo paths, so a time-limited IP never ends
worse than it; a start is checked before it reaches HiGHS (which ignores an infeasible one
silently)."""

from __future__ import annotations

import numpy as np
import pytest

from servopt.benchmarks import caching as bench
from servopt.core import InvalidInstanceError
from servopt.instances import caching as ci
from servopt.instances import library
from servopt.models import caching as mc
from servopt.solvers import caching as cs
from servopt.solvers import exact


def rounded(instance: ci.Instance) -> tuple[np.ndarray, float]:
    """The lp_schedule method's keep and its miss cost replayed by the evaluator."""
    lp = cs.solve_lp(instance)
    return cs.round_schedule(instance, lp).astype(float), bench.evaluate(instance, "lp_schedule").cost


@pytest.mark.parametrize("seed", [0, 1])
def test_the_start_is_a_feasible_point_of_the_matrix_ip_costing_the_lp_schedule(seed):
    inst = ci.generate(requests=1500, objects=300, seed=seed, cache_share=0.03)
    keep, cost = rounded(inst)
    assert 0 < keep.sum() < len(keep)  # a real choice: some intervals kept, some not
    mm = mc.build_matrix_model(inst, start=keep)
    x = mm.start
    np.testing.assert_allclose(mm.matrix @ x, 0.0, atol=1e-9)  # every balance row holds
    assert np.all(x >= mm.col_lower - 1e-12) and np.all(x <= mm.col_upper + 1e-9)  # capacity too
    assert np.all(x[mm.integer] == np.round(x[mm.integer]))
    # the model is in cost units (models.caching.units): objective_scale turns it into miss cost
    assert (mm.objective @ x + mm.offset) * mm.objective_scale == pytest.approx(cost, rel=1e-12)
    assert mc.build_matrix_model(inst, start=keep, relax=True).start is None  # an LP has none


@pytest.mark.parametrize("backend", ["highs", "pyomo"])
def test_solve_reads_the_rounded_lp_start_on_a_small_instance(backend):
    # the default run's check of the slow one below (R43): the start reaches HiGHS on both paths
    # and the IP ends at or below the evaluator's cost of the lp_schedule method
    inst = library.load("cache_mm_300")
    _, cost = rounded(inst)
    sol = exact.solve(inst, backend=backend)
    assert sol.info["warm_start"] == "rounded LP relaxation"
    assert sol.objective <= cost * (1 + 1e-9) and sol.bound <= sol.objective * (1 + 1e-9)


@pytest.mark.slow  # two 5 s time-limited IP solves of cache_mm_5k (~12 s)
def test_solve_starts_from_the_rounded_lp_and_cannot_end_worse():
    # cache_mm_5k: without the start HiGHS ends at 290k after 1 s and 174k after 10 s, above the
    # rounded LP's 141,869 (benchmarks/results/caching_warm_start.md); with it, HiGHS reads the
    # start within 0.4 s and ends at it unless it finds better. 5 s: margin for a loaded machine
    inst = library.load("cache_mm_5k")
    _, cost = rounded(inst)
    for backend in ("highs", "pyomo"):
        sol = exact.solve(inst, time_limit=5.0, backend=backend)
        assert sol.info["warm_start"] == "rounded LP relaxation"
        assert sol.objective <= cost * (1 + 1e-9), backend
        assert sol.bound <= sol.objective
        keep = sol.decisions["keep"].to_numpy()
        assert bench.evaluate(inst, cs.LPSchedule(_fixed(inst, keep))).cost == pytest.approx(
            sol.objective, rel=1e-9)


def _fixed(instance: ci.Instance, keep: np.ndarray) -> cs.LPResult:
    """An 'LP' whose keep is already integral: LPSchedule then replays exactly that schedule."""
    iv = mc.intervals(instance)
    return cs.LPResult(value=float("nan"), keep=np.round(keep), price=np.zeros(0), intervals=iv,
                       wall_s=0.0, method="fixed")


def test_the_pyomo_model_carries_the_start_in_every_variable():
    inst = ci.generate(requests=400, objects=80, seed=2, cache_share=0.05)
    keep, _ = rounded(inst)
    for form in ("flow", "interval"):
        model = mc.build(inst, start=keep, form=form)
        assert model.warm_start
        assert [model.keep[i].value for i in range(len(keep))] == keep.tolist()
        if form == "flow":  # occupancy = tokens of the kept intervals over each gap, by hand
            iv = mc.intervals(inst)
            held = [sum(iv.size[i] for i in np.flatnonzero(keep) if iv.start[i] <= t < iv.end[i])
                    for t in range(inst.requests - 1)]
            # the model holds them in size_unit tokens (models.caching.units)
            assert [model.occupancy[t].value * model.size_unit for t in model.T] == \
                pytest.approx(held)
    assert not hasattr(mc.build(inst, start=keep, relax=True), "warm_start")


def test_a_start_is_checked_before_it_reaches_highs():
    # requests 1 1 2 1 0 2; sizes 1, 1, 3; cache 3: intervals A (obj 1, 0 -> 1), B (obj 1,
    # 1 -> 3), C (obj 2, 2 -> 5). B and C together hold 4 tokens over gap 2
    inst = ci.Instance(time=np.arange(6.0), object_id=np.array([1, 1, 2, 1, 0, 2]),
                       size=np.array([1.0, 1.0, 3.0]), miss_cost=np.array([0.71, 2.58, 2.47]),
                       capacity=3.0)
    for builder in (mc.build, mc.build_matrix_model):
        with pytest.raises(InvalidInstanceError, match="more than the cache capacity"):
            builder(inst, start=[0, 1, 1])
        with pytest.raises(InvalidInstanceError, match="0/1 keep per interval"):
            builder(inst, start=[1, 1])
        with pytest.raises(InvalidInstanceError, match="0/1 keep per interval"):
            builder(inst, start=[1, 0.5, 0])
    big = ci.Instance(time=np.arange(2.0), object_id=np.array([0, 0]), size=np.array([5.0]),
                      miss_cost=np.ones(1), capacity=3.0)
    with pytest.raises(InvalidInstanceError, match="larger than the cache"):
        mc.build_matrix_model(big, start=[1])
    # a user's own start (here the optimum) is used as given; solve does not replace it
    sol = exact.solve(inst, start=[1, 1, 0])
    assert sol.objective == pytest.approx(8.23) and "warm_start" not in sol.info
    assert exact.solve(inst).info["warm_start"] == "rounded LP relaxation"
    assert "warm_start" not in exact.solve(inst, relax=True).info


def test_an_ip_too_large_is_refused_before_its_lp_is_solved(monkeypatch):
    # the warm start solves the LP first: a refused IP must not pay for it (a 320k-request LP
    # takes minutes); no HiGHS solve may run before the refusal
    def no_solve(*args, **kw):
        raise AssertionError("an LP was solved before the size refusal")

    for name in ("solve_matrix", "solve_model", "_solve_matrix", "_solve_model"):  # solve() calls
        monkeypatch.setattr(exact, name, no_solve)  # the private ones (a review found the public
    inst = ci.generate(requests=300, objects=40, seed=0)  # ones alone let the test pass anyway)
    for kw in ({}, {"backend": "pyomo"}):
        with pytest.raises(InvalidInstanceError, match="binary keep variables"):
            exact.solve(inst, max_binaries=10, **kw)
