"""Prices and errors of ``servopt.solve`` that misled (review of the exact solver's outputs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt import cli
from servopt.core import InfeasibleError
from servopt.core.matrix import Family, MatrixModel
from servopt.instances import library
from servopt.solvers import exact


def _mm(matrix, row_lower, row_upper, integer, col_lower=None, col_upper=None) -> MatrixModel:
    a = np.asarray(matrix, dtype=float)
    m, n = a.shape
    return MatrixModel(
        objective=np.ones(n), matrix=a, row_lower=row_lower, row_upper=row_upper,
        col_lower=np.zeros(n) if col_lower is None else col_lower,
        col_upper=np.full(n, 10.0) if col_upper is None else col_upper,
        rows={"r": Family(list(range(m)), pd.RangeIndex(m))},
        columns={"x": Family(list(range(n)), pd.RangeIndex(n))}, integer=np.asarray(integer))


@pytest.mark.parametrize(("matrix", "lower", "upper", "integer", "col_upper", "expected"), [
    # every column integer: nothing left to move
    ([[1, 1]], [1], [np.inf], [True, True], None, True),
    # x1 continuous, fixed by its bounds (0 <= x1 <= 0)
    ([[1, 1]], [1], [np.inf], [True, False], [10.0, 0.0], True),
    # x1 = 3 - x0 by an equality row: determined once x0 is fixed, but the row's price is
    # x1's cost (1 per unit of right-hand side), not zero
    ([[1, 1]], [3], [3], [True, False], None, False),
    # x1 >= 1 - x0, an inequality: x1 can still move
    ([[1, 1]], [1], [np.inf], [True, False], None, False),
    # two continuous columns in one equality row: one degree of freedom left
    ([[1, 1, 1]], [3], [3], [True, False, False], None, False),
    # two equality rows on x1, x2 but singular (the same row twice): not determined
    ([[1, 1, 1], [2, 2, 2]], [3, 6], [3, 6], [True, False, False], None, False),
    # two independent equality rows: x1 - x2 = 0, x1 + x2 = 3 - x0: determined, priced
    ([[0, 1, -1], [1, 1, 1]], [0, 3], [0, 3], [True, False, False], None, False),
])
def test_nothing_to_price_when_no_continuous_column_can_move(matrix, lower, upper, integer,
                                                             col_upper, expected):
    # closes: prices that are zero by construction returned as prices; and the converse,
    # a model with a free continuous column losing its prices (each case decided by hand)
    assert exact._nothing_to_price(_mm(matrix, lower, upper, integer, col_upper=col_upper)) is expected


def test_the_refusals_of_bid_price_rules_keep_their_messages_for_mip_solutions():
    from servopt.solvers import batch_scheduling, caching

    for name, rule in (("bs_offline_10", batch_scheduling.BidPrice), ("cache_mm_300", caching.BidPrice)):
        with pytest.raises(ValueError, match="relax=True"):
            rule.from_solution(servopt.solve(library.load(name)))


def test_decode_routing_hindsight_keeps_its_prices():
    # a continuous load column moves with the assignment fixed: its step_load prices are real
    sol = servopt.solve(library.load("dr_hindsight_8x2"))
    assert "prices_skipped" not in sol.info and sol.prices["step_load"].abs().max() > 0


def _placement_of(sol, inst) -> np.ndarray:
    """phy2log (layers x slots, -1 empty) of the MILP's incumbent ``y``."""
    y = sol.decisions["y"]
    S = inst.slots_per_gpu
    out = np.full((inst.num_layers, inst.num_gpus * S), -1, dtype=np.int64)
    for (layer, expert, gpu), value in y.items():
        if value > 0.5:
            row = out[layer, gpu * S:(gpu + 1) * S]
            row[np.flatnonzero(row < 0)[0]] = expert
    return out


@pytest.mark.parametrize("options", [{}, {"makespan_lb": 0.2}])
def test_placement_prices_are_the_dispatch_lp_prices_of_the_incumbent(options):
    # closes: gpu_load prices soaked up by the symmetry-breaking order rows ([1, 0, 0] for
    # three equally loaded GPUs) or by the lower row of makespan_lb (all 0)
    inst = library.load("ep_tiny")
    sol = servopt.solve(inst, **options)
    assert sol.status == "optimal" and "order" not in sol.prices and "lower" not in sol.prices
    dispatch = servopt.solve(inst, placement=_placement_of(sol, inst))
    assert dispatch.objective == pytest.approx(sol.objective, rel=1e-7)
    got, want = sol.prices["gpu_load"], dispatch.prices["gpu_load"]
    np.testing.assert_allclose(got.sort_index().to_numpy(), want.sort_index().to_numpy(), atol=1e-7)
    assert got.groupby(level=0).sum().to_numpy() == pytest.approx(np.ones(inst.num_layers))


def test_a_solver_failure_is_not_reported_as_infeasibility(monkeypatch):
    import cvxpy as cp

    def fail(self, *args, **kwargs):
        raise cp.error.SolverError("The solver HIGHS is not installed.")

    monkeypatch.setattr(cp.Problem, "solve", fail)
    inst = library.load("bs_offline_10")
    with pytest.raises(exact.SolverFailedError, match="HIGHS is not installed") as caught:
        servopt.solve(inst, backend="cvxpy")
    assert not isinstance(caught.value, InfeasibleError)
    assert "solver failed" in str(caught.value)


def test_bound_kind_uses_the_harness_vocabulary():
    from servopt.benchmarks.harness import BOUND_KINDS

    kinds = {servopt.solve(library.load("bs_offline_10")).info["bound_kind"],
             servopt.solve(library.load("bs_offline_10"), relax=True).info["bound_kind"],
             servopt.solve(library.load("ep_tiny")).info["bound_kind"],  # the Pyomo path
             servopt.solve(library.load("bs_offline_10"), backend="cvxpy").info["bound_kind"],
             servopt.solve(library.load("ep_tiny"), placement=np.tile(np.arange(9) % 6, (2, 1)),
                           backend="pyomo").info["bound_kind"]}  # the dispatch LP: an LP
    assert kinds == {"mip_bound", "lp_relaxation", "optimal"} and kinds <= set(BOUND_KINDS)


def test_cli_says_when_highs_did_not_run(monkeypatch, capsys):
    from servopt.core import Solution

    def skipped(*args, **kwargs):
        return Solution(status="time_limit", objective=5.0, bound=float("nan"), gap=float("nan"),
                        wall_s=1.0, sense="min", decision="caching",
                        info={"highs_skipped": "time_limit", "bound_kind": "none",
                              "prices_skipped": "time_limit"})

    monkeypatch.setattr(exact, "solve", skipped)
    assert cli.main(["solve", "cache_mm_300", "--time-limit", "1"]) == 0
    assert "HiGHS did not run" in capsys.readouterr().out


def test_a_pure_binary_model_reports_no_prices_and_says_why():
    inst = library.load("bs_offline_10")  # the batch IP: every column a binary start
    mip = servopt.solve(inst)
    assert mip.prices == {} and mip.info["prices_skipped"] == exact.INTEGER_PRICES_SKIPPED
    # the optimum does move with the memory (so zeros would say something false): the LP's
    # memory prices are positive, and the IP loses when memory shrinks
    lp = servopt.solve(inst, relax=True)
    assert lp.prices["kv_memory"].max() > 0 and "prices_skipped" not in lp.info
    smaller = servopt.solve(dataclasses.replace(inst, kv_memory=inst.kv_memory - 20), prices=False)
    assert smaller.objective > mip.objective


def test_cli_says_why_there_are_no_prices_and_labels_fixed_integer_ones(capsys):
    assert cli.main(["solve", "bs_offline_10", "--prices", "3"]) == 0
    out = capsys.readouterr().out
    assert "zero by construction" in out and "--relax" in out
    assert "extra capacity" not in out  # no table of zeros
    # the caching IP's continuous occupancy follows from keep and costs nothing: no prices either
    # (audit R7: 299 zeros were printed); its LP's are shown, not labelled as fixed-integer ones
    assert cli.main(["solve", "cache_mm_300", "--prices", "3"]) == 0
    out = capsys.readouterr().out
    assert "zero by construction" in out and "extra capacity" not in out
    assert cli.main(["solve", "cache_mm_300", "--relax", "--prices", "3"]) == 0
    out = capsys.readouterr().out
    assert "extra capacity" in out and "integer decisions fixed" not in out


def test_a_mip_whose_prices_are_skipped_keeps_no_time_for_them(monkeypatch):
    # the all-binary batch IP: its prices are skipped, so HiGHS gets the same seconds with
    # prices on as off (it used to get 10% less with prices on, kept for a price LP never run)
    from servopt.instances import batch_scheduling

    limits: list[list[float]] = []
    real = exact._run_interruptible

    def spy(highs, *args, **kwargs):
        limits[-1].append(highs.getOptionValue("time_limit"))
        return real(highs, *args, **kwargs)

    monkeypatch.setattr(exact, "_run_interruptible", spy)
    monkeypatch.setattr(exact.time, "perf_counter", lambda: 0.0)  # a clock that stands still
    # 10 requests: HiGHS proves the optimum within a second, the limits it was given are the
    # same as for 20 (which spent its 6 s each time)
    inst = batch_scheduling.generate(10, seed=1)
    for prices in (True, False):
        limits.append([])
        sol = servopt.solve(inst, time_limit=6.0, prices=prices)
        assert "kv_memory" not in sol.prices
    assert limits[0] == limits[1] and len(limits[0]) == 2  # the bound LP, then the MIP


def test_a_continuous_variable_fixed_by_its_bounds_is_not_free_on_the_pyomo_path():
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var(domain=pyo.Binary)
    m.y = pyo.Var(bounds=(0, 0))
    m.cost = pyo.Objective(expr=m.x + 2 * m.y)
    assert not exact._has_free_continuous(m)  # as the matrix path's _nothing_to_price
    m.y.setub(1)
    assert exact._has_free_continuous(m)
    # free but out of the objective (the caching IP's occupancy): its duals would be zero
    m.cost.set_value(m.x)
    assert not exact._has_free_continuous(m)


def test_cli_names_ctrl_c_during_the_bound_lp(monkeypatch, capsys):
    import math

    monkeypatch.setattr(exact, "_bound_lp_value",
                        lambda mm, limit: (math.nan, {"bound_lp_s": 0.1, "bound_lp_status": "interrupted"}))
    cli.main(["solve", "bs_offline_10", "--time-limit", "20"])
    out = capsys.readouterr().out
    assert "HiGHS did not run (interrupted during the bound LP)" in out
    assert "the build used the budget" not in out
