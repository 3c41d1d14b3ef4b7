"""A solve waiting for another thread's Pyomo solve (simulated here by holding the lock that
solve holds): the matrix path does not wait (it waited for the whole Pyomo solve only to hide a
banner HiGHS prints once per process, and came back ``time_limit`` after overrunning its limit),
and a Pyomo solve whose limit passes while it waits returns ``time_limit`` at the limit (it
waited out the other solve, however long, then ran)."""

from __future__ import annotations

import math
import threading

import pytest
from shared import output_lock_held_elsewhere

import servopt
from servopt.instances import library
from servopt.solvers import exact


@pytest.fixture
def lock_held_elsewhere():
    exact.new_highs()  # the process's first HiGHS object (its banner) is made outside the test
    with output_lock_held_elsewhere(30):
        yield


def test_a_matrix_solve_does_not_wait_for_a_pyomo_solve(lock_held_elsewhere) -> None:
    solution = servopt.solve(library.load("bs_offline_10"), time_limit=5.0)
    assert solution.info["form"] == "matrix"
    assert solution.status == "optimal" and solution.objective == 170.0  # the manifest's optimum


def test_a_pyomo_solve_stops_waiting_at_its_limit(lock_held_elsewhere) -> None:
    solution = servopt.solve(library.load("bs_offline_10"), time_limit=0.5, backend="pyomo")
    assert solution.status == "time_limit" and "another thread" in solution.info["waited"]
    assert solution.bound <= 170.0  # the model's cheap bound, below the optimum


def test_the_first_highs_object_does_not_wait_either(lock_held_elsewhere, monkeypatch) -> None:
    """Review R6: the process's first HiGHS object waited, without any limit, for the lock only to
    hide its banner (a time-limited Pyomo solve whose warm-start LP made it hung as long as
    another thread's solve ran)."""
    monkeypatch.setattr(exact, "_BANNER_SHOWN", False)
    made = []
    maker = threading.Thread(target=lambda: made.append(exact.new_highs()))
    maker.start()
    maker.join(10)  # the holder keeps the lock for 30 s
    assert not maker.is_alive() and len(made) == 1
    assert exact._BANNER_SHOWN


@pytest.mark.parametrize("backend", ["cvxpy", "pyomo"])
@pytest.mark.parametrize("limit", [1e10, 1e12])
def test_time_limits_beyond_what_a_lock_wait_takes_run(backend, limit) -> None:
    """Review R6: a limit above threading.TIMEOUT_MAX (~9.2e9 s) raised OverflowError ('timestamp
    out of range') from the lock's acquire instead of solving."""
    solution = servopt.solve(library.load("cap_code"), backend=backend, time_limit=limit)
    assert solution.status == "optimal"
    assert solution.objective == pytest.approx(7.6503822, rel=1e-6)  # the manifest's optimum


def test_solve_cvxpy_with_an_infinite_limit_runs() -> None:
    from servopt.models import capacity

    cvx = capacity.build_cvxpy(library.load("cap_code"))
    solution = exact.solve_cvxpy(cvx, time_limit=math.inf, decision="capacity")
    assert solution.status == "optimal"
    assert solution.objective == pytest.approx(7.6503822, rel=1e-6)
