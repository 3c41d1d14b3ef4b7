"""A solve waiting for another thread's Pyomo solve (simulated here by holding the lock that
solve holds): the matrix path does not wait (it waited for the whole Pyomo solve only to hide a
banner HiGHS prints once per process, and came back ``time_limit`` after overrunning its limit),
and a Pyomo solve whose limit passes while it waits returns ``time_limit`` at the limit (it
waited out the other solve, however long, then ran)."""

from __future__ import annotations

import threading

import pytest

import servopt
from servopt.instances import library
from servopt.solvers import exact


@pytest.fixture
def lock_held_elsewhere():
    exact.new_highs()  # the process's first HiGHS object (its banner) is made outside the test
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with exact.PROCESS_OUTPUT_LOCK:
            taken.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(10)
    yield
    done.set()
    holder.join()


def test_a_matrix_solve_does_not_wait_for_a_pyomo_solve(lock_held_elsewhere) -> None:
    solution = servopt.solve(library.load("bs_offline_10"), time_limit=5.0)
    assert solution.info["form"] == "matrix"
    assert solution.status == "optimal" and solution.objective == 170.0  # the manifest's optimum


def test_a_pyomo_solve_stops_waiting_at_its_limit(lock_held_elsewhere) -> None:
    solution = servopt.solve(library.load("bs_offline_10"), time_limit=0.5, backend="pyomo")
    assert solution.status == "time_limit" and "another thread" in solution.info["waited"]
    assert solution.bound <= 170.0  # the model's cheap bound, below the optimum
