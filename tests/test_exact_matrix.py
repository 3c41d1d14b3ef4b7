"""The matrix path of the solve layer (``MatrixModel`` -> HiGHS), on models whose answers and
duals are known by hand: the same cases as ``test_exact.py`` gives the Pyomo path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from servopt.core import InfeasibleError
from servopt.core.matrix import Family, MatrixModel
from servopt.solvers import exact

INF = np.inf


def _rows(n: int, name: str = "row") -> Family:
    return Family(np.arange(n), pd.RangeIndex(n, name=name))


@pytest.mark.parametrize("sense", ["max", "min"])
def test_wyndor_prices_by_hand(sense):
    # Wyndor Glass (Hillier & Lieberman): max 3 x1 + 5 x2 s.t. x1 <= 4, 2 x2 <= 12,
    # 3 x1 + 2 x2 <= 18: x = (2, 6), profit 36, shadow prices (0, 3/2, 1); as a min of -profit
    # the prices are the same (improvement per unit of capacity, >= 0)
    sign = 1.0 if sense == "max" else -1.0
    mm = MatrixModel(objective=sign * np.array([3.0, 5.0]),
                     matrix=np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 2.0]]),
                     row_lower=[-INF] * 3, row_upper=[4.0, 12.0, 18.0], col_lower=[0.0, 0.0],
                     col_upper=[INF, INF], rows={"capacity": _rows(3, "resource")},
                     columns={"x": _rows(2, "product")}, sense=sense)
    sol = exact.solve_matrix(mm)
    assert sol.status == "optimal" and sol.info["form"] == "matrix"
    assert sol.objective == pytest.approx(sign * 36.0)
    assert sol.bound == pytest.approx(sol.objective)
    np.testing.assert_allclose(sol.prices["capacity"].to_numpy(), [0.0, 1.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(sol.decisions["x"].to_numpy(), [2.0, 6.0], atol=1e-7)
    assert sol.prices["capacity"].index.name == "resource"
    assert sol.decisions["x"].index.name == "product"


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("demand_row", ["ge", "eq"])
def test_transportation_prices_by_hand(sense, demand_row):
    # ship from 2 plants (supply 20, 40) to 2 markets (demand 25 each) at costs [[1, 3], [2, 1]]:
    # x = [[20, 0], [5, 25]], cost 55. Plant 0's row is worth 1 (it saves shipping from plant 1
    # at 2 instead of 1); a demand unit costs 2 and 1 (the marginal plant 1's lanes)
    sign = 1.0 if sense == "min" else -1.0
    cost = np.array([1.0, 3.0, 2.0, 1.0])  # x00, x01, x10, x11
    matrix = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=float)
    upper = [20.0, 40.0] + ([25.0, 25.0] if demand_row == "eq" else [INF, INF])
    mm = MatrixModel(objective=sign * cost, matrix=matrix, row_lower=[-INF, -INF, 25.0, 25.0],
                     row_upper=upper, col_lower=np.zeros(4), col_upper=np.full(4, INF),
                     rows={"supply": Family([0, 1], pd.RangeIndex(2)),
                           "demand": Family([2, 3], pd.RangeIndex(2))},
                     columns={"x": Family(np.arange(4), pd.MultiIndex.from_product(
                         [range(2), range(2)]))}, sense=sense)
    sol = exact.solve_matrix(mm)
    assert sol.objective == pytest.approx(sign * 55.0)
    np.testing.assert_allclose(sol.prices["supply"].to_numpy(), [1.0, 0.0], atol=1e-7)
    if demand_row == "ge":
        np.testing.assert_allclose(sol.prices["demand"].to_numpy(), [2.0, 1.0], atol=1e-7)
    else:  # an equality's price is d objective / d rhs
        np.testing.assert_allclose(sol.prices["demand"].to_numpy(), [2.0 * sign, 1.0 * sign],
                                   atol=1e-7)
    np.testing.assert_allclose(sol.decisions["x"].to_numpy(), [20.0, 0.0, 5.0, 25.0], atol=1e-7)


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("push_up", [True, False])
def test_ranged_row_prices_by_hand(sense, push_up):
    # one ranged row 1 <= x <= 3: pushed up, x = 3 and one more unit of the upper limit is worth
    # 1; pushed down, x = 1 and one unit lower is worth 1
    gain = 1.0 if push_up else -1.0
    mm = MatrixModel(objective=[gain if sense == "max" else -gain], matrix=[[1.0]],
                     row_lower=[1.0], row_upper=[3.0], col_lower=[-INF], col_upper=[INF],
                     rows={"band": _rows(1)}, columns={"x": _rows(1)}, sense=sense)
    sol = exact.solve_matrix(mm)
    best = 3.0 if push_up else -1.0
    assert sol.objective == pytest.approx(best if sense == "max" else -best)
    assert sol.prices["band"].iloc[0] == pytest.approx(1.0)


def test_left_out_rows_and_bound_rows_are_priced():
    # min -2 x - y  s.t.  x + y <= 3 (row), x <= 2 (a column bound standing for a capacity row):
    # x = 2, y = 1, -5. The row is worth 1 (more y); the bound 2 - 1 = 1 (x instead of y). A row
    # the model left out (position -1) is priced 0, labelled like the data
    mm = MatrixModel(objective=[-2.0, -1.0], matrix=[[1.0, 1.0]], row_lower=[-INF],
                     row_upper=[3.0], col_lower=[0.0, 0.0], col_upper=[2.0, INF],
                     rows={"total": Family([-1, 0], pd.Index(["gap_a", "gap_b"], name="gap"))},
                     columns={"x": _rows(2)},
                     bound_rows={"x_cap": Family([0, -1], pd.Index(["x", "y"], name="product"))})
    sol = exact.solve_matrix(mm)
    assert sol.objective == pytest.approx(-5.0)
    assert sol.prices["total"].to_dict() == pytest.approx({"gap_a": 0.0, "gap_b": 1.0})
    assert sol.prices["x_cap"].to_dict() == pytest.approx({"x": 1.0, "y": 0.0})
    assert sol.prices["total"].index.name == "gap"


def test_mip_prices_from_fixed_integers_and_the_offset():
    # max 3y + x + 10 s.t. cap: x + y <= 4.5, 0 <= x <= 1, y integer in 0..10: y = 4, x = 0.5,
    # 22.5; with y fixed at 4 the row is tight and worth 1 (through x)
    mm = MatrixModel(objective=[3.0, 1.0], matrix=[[1.0, 1.0]], row_lower=[-INF],
                     row_upper=[4.5], col_lower=[0.0, 0.0], col_upper=[10.0, 1.0],
                     rows={"cap": _rows(1)}, columns={"v": _rows(2)}, sense="max",
                     offset=10.0, integer=[True, False])
    sol = exact.solve_matrix(mm)
    assert sol.objective == pytest.approx(22.5) and sol.bound == pytest.approx(22.5)
    assert sol.prices["cap"].iloc[0] == pytest.approx(1.0)
    np.testing.assert_allclose(sol.decisions["v"].to_numpy(), [4.0, 0.5], atol=1e-7)
    # relaxed, y = 4.5 and x = 0: 13.5 + 10, and the row is worth 3 (more y)
    lp = exact.solve_matrix(mm, relax=True)
    assert lp.objective == pytest.approx(23.5) and lp.info["lp"]
    assert lp.prices["cap"].iloc[0] == pytest.approx(3.0)


def _market_split(seed: int = 3, m: int = 5, n: int = 40, start: bool = True) -> MatrixModel:
    """The market split MIP of ``benchmarks/exact_time_limit.py`` (hard for branch and bound):
    min sum |slack| s.t. a_i x = floor(sum_j a_ij / 2), x binary; the all-zero x with slacks
    = rhs is feasible (the warm start)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, size=(m, n)).astype(float)
    rhs = np.floor(a.sum(axis=1) / 2)
    matrix = np.hstack([a, np.eye(m), -np.eye(m)])
    cols = n + 2 * m
    warm = np.concatenate([np.zeros(n), rhs, np.zeros(m)]) if start else None
    return MatrixModel(objective=np.r_[np.zeros(n), np.ones(2 * m)], matrix=matrix,
                       row_lower=rhs, row_upper=rhs, col_lower=np.zeros(cols),
                       col_upper=np.r_[np.ones(n), np.full(2 * m, INF)],
                       rows={"split": _rows(m)}, columns={"x": _rows(n)},
                       integer=np.r_[np.ones(n, dtype=bool), np.zeros(2 * m, dtype=bool)],
                       start=warm)


def test_time_limit_keeps_the_warm_start_and_a_bound():
    model = _market_split()
    sol = exact.solve_matrix(model, time_limit=1.0, prices=False)
    assert sol.status == "time_limit"
    # the incumbent is at least as good as the warm start (the sum of the right-hand sides)
    assert sol.objective <= model.start.sum() + 1e-9
    assert 0 <= sol.bound <= sol.objective + 1e-9


def test_infeasible_and_empty_models():
    bad = MatrixModel(objective=[1.0], matrix=[[1.0], [1.0]], row_lower=[5.0, -INF],
                      row_upper=[INF, 3.0], col_lower=[0.0], col_upper=[INF],
                      rows={"r": _rows(2)}, columns={"x": _rows(1)})
    with pytest.raises(InfeasibleError, match="infeasible"):
        exact.solve_matrix(bad, decision="toy")
    empty = MatrixModel(objective=np.zeros(0), matrix=np.zeros((0, 0)), row_lower=[],
                        row_upper=[], col_lower=[], col_upper=[], rows={}, columns={},
                        offset=7.0)
    sol = exact.solve_matrix(empty)
    assert (sol.status, sol.objective, sol.bound) == ("optimal", 7.0, 7.0)


def test_a_family_outside_the_model_is_refused():
    with pytest.raises(ValueError, match="outside"):
        MatrixModel(objective=[1.0], matrix=[[1.0]], row_lower=[0.0], row_upper=[1.0],
                    col_lower=[0.0], col_upper=[1.0], rows={"r": Family([3], pd.RangeIndex(1))},
                    columns={})
    with pytest.raises(ValueError, match="entries"):
        MatrixModel(objective=[1.0, 2.0], matrix=[[1.0]], row_lower=[0.0], row_upper=[1.0],
                    col_lower=[0.0], col_upper=[1.0], rows={}, columns={})


CTRL_C = textwrap.dedent(
    """
    import signal  # Ctrl-C as in a terminal even if this test runs in a background job (which
    signal.signal(signal.SIGINT, signal.default_int_handler)  # inherits SIGINT ignored)
    import os, signal, sys, threading, time
    sys.path.insert(0, {tests!r})
    from test_exact_matrix import _market_split
    from servopt.solvers import exact
    threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    start = time.perf_counter()
    sol = exact.solve_matrix(_market_split(n=60), time_limit=60, prices=False)
    print("STATUS", sol.status, sol.objective, round(time.perf_counter() - start))
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to self")
def test_ctrl_c_stops_highs_and_keeps_the_incumbent():
    script = CTRL_C.format(tests=os.path.dirname(__file__))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    line = [s for s in proc.stdout.splitlines() if s.startswith("STATUS")]
    assert line, proc.stdout + proc.stderr
    _, status, objective, seconds = line[0].split()
    assert status == "interrupted"
    assert float(objective) >= 0  # the incumbent came back
    assert int(seconds) < 30  # stopped at the interrupt, not at the 60 s limit


def test_solve_picks_the_matrix_form_and_pyomo_on_request():
    from servopt.instances import caching

    inst = caching.generate(requests=300, seed=1)
    fast, slow = exact.solve(inst), exact.solve(inst, backend="pyomo")
    assert (fast.info["form"], slow.info["form"]) == ("matrix", "pyomo")
    assert (fast.backend, slow.backend) == ("highs", "pyomo")
    assert fast.objective == pytest.approx(slow.objective, rel=1e-9)
    # an option only the Pyomo model has falls back to it
    assert exact.solve(inst, form="interval").info["form"] == "pyomo"


@pytest.mark.parametrize("relax", [False, True])
def test_decisions_never_show_a_negative_zero(relax):
    # HiGHS returns -0.0 for some variables at 0 (expert placement's y and f, decode routing's x
    # on these instances): a user reading or printing decisions saw "-0.0"
    from servopt.instances import decode_routing as dri
    from servopt.instances import expert_placement as ie

    for inst in (ie.generate(preset="tiny", seed=0), dri.generate_steps(requests=8, workers=2, seed=0)):
        for backend in ("highs", "pyomo"):
            for name, value in exact.solve(inst, relax=relax, backend=backend).decisions.items():
                values = np.asarray(value, dtype=float).ravel()
                assert not np.any((values == 0) & np.signbit(values)), (inst.decision, backend, name)
