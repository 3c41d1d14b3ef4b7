"""CVXPY solves in threads give the answers they give one after another.

``servopt.solve(..., backend="cvxpy")`` builds its CVXPY problem in the calling thread (beside the
other threads' builds) and solves it holding ``exact.PROCESS_OUTPUT_LOCK`` (for the redirect that
silences HiGHS's banner); the duals are read from the thread's own problem after the lock is
released. The expected values are the same calls run serially in this process; the threads start
together (a barrier), so their builds and solves overlap. A race is likely to show, not certain.
How it was checked that this can fail: with one problem object per decision shared by the
threads (``exact.solve_cvxpy`` monkeypatched to solve, once it holds the lock, the decision's
problem built last), ``check_threads_match_serial`` failed in its first trial in 3 runs of 3,
while the serial runs stayed right; as the code is, 20 trials of 9 threads gave the serial
answers bit for bit, with the lock and also with it removed (it is there for the redirect).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from shared import in_threads, output_lock_held_elsewhere

import servopt
from servopt.instances import batch_scheduling as bi
from servopt.instances import caching as ci
from servopt.instances import capacity as cpi
from servopt.instances import decode_routing as dri
from servopt.instances import library
from servopt.solvers import exact
from servopt.solvers import expert_placement as ep_rules


def _jobs() -> list[tuple[Any, dict[str, Any]]]:
    """Each decision's CVXPY LP on two instances (one for expert placement, whose CVXPY LP is
    the dispatch LP of a given placement), so that two threads of a decision solve different LPs."""
    ep = library.load("ep_tiny")
    return [(ep, {"placement": ep_rules.POLICIES["eplb"](ep).phy2log}),
            (library.load("dr_hindsight_8x2"), {}),
            (dri.generate_steps(requests=8, workers=2, seed=3), {}),
            (library.load("bs_offline_10"), {}), (bi.generate(12, seed=4), {}),
            (library.load("cap_conversation"), {}), (cpi.generate(requests=200, seed=5), {}),
            (library.load("cache_mm_300"), {}), (ci.generate(requests=200, seed=6), {})]


def _answer(job: tuple[Any, dict[str, Any]], backend: str = "cvxpy") -> tuple[Any, ...]:
    """Status, objective, and every price and decision table's labels and values (exactly)."""
    instance, options = job
    solution = servopt.solve(instance, backend=backend, relax=backend != "cvxpy", **options)
    tables = {f"{kind}.{name}": (list(table.index), np.asarray(table.to_numpy()).tobytes())
              for kind in ("prices", "decisions")
              for name, table in getattr(solution, kind).items()}
    return solution.status, solution.objective, tables


def check_threads_match_serial(trials: int) -> None:
    jobs = _jobs()
    serial = [_answer(job) for job in jobs]
    assert all(answer[0] == "optimal" for answer in serial)
    objectives = [answer[1] for answer in serial]
    assert len(set(objectives)) == len(objectives)  # all different, so a swap would show
    for trial in range(trials):
        got = in_threads(jobs, _answer)
        wrong = [k for k in range(len(jobs)) if got[k] != serial[k]]
        assert not wrong, (f"trial {trial}: job(s) {wrong} differ from the serial run: "
                           f"{[got[k] if isinstance(got[k], str) else got[k][1] for k in wrong]} "
                           f"instead of {[objectives[k] for k in wrong]}")


def test_cvxpy_solves_in_threads_give_the_serial_answers() -> None:
    check_threads_match_serial(trials=3)


@pytest.mark.slow
def test_cvxpy_solves_in_threads_give_the_serial_answers_20_trials() -> None:
    check_threads_match_serial(trials=20)


def test_cvxpy_beside_pyomo_and_highs_solvesin_threads() -> None:
    """A CVXPY solve next to the same LPs on the Pyomo path (which takes the same lock) and on the
    matrix path (which takes none): each gives its serial answer."""
    jobs = _jobs()[1:4]
    work = [(job, backend) for job in jobs for backend in ("cvxpy", "pyomo", "highs")]
    serial = [_answer(job, backend) for job, backend in work]
    for _ in range(2):
        assert in_threads(work, lambda item: _answer(*item)) == serial


@pytest.fixture
def lock_held_elsewhere():
    """Another thread's Pyomo (or CVXPY) solve, simulated by holding the lock it holds for 10 s."""
    with output_lock_held_elsewhere(10):
        yield


@pytest.mark.parametrize("name", ["cap_conversation", "bs_offline_10"])
def test_a_cvxpy_solve_stops_waiting_at_its_limit(lock_held_elsewhere, name) -> None:
    """It waited out the other solve, however long, then solved (here: 10 s on a 0.5 s limit).
    cap_conversation's fluid LP is the capacity model itself; bs_offline_10's is a relaxation."""
    solution = servopt.solve(library.load(name), backend="cvxpy", time_limit=0.5)
    assert solution.status == "time_limit" and "another thread" in solution.info["waited"]
    assert np.isnan(solution.objective) and solution.prices == {}


def test_a_cvxpy_solve_waits_within_its_limit_then_solves() -> None:
    """A wait shorter than the limit (the lock held 0.3 s, limit 30 s) ends in the serial answer."""
    job = _jobs()[5]  # cap_conversation
    serial = _answer(job)
    taken = threading.Event()

    def hold() -> None:
        with exact.PROCESS_OUTPUT_LOCK:
            taken.set()
            threading.Event().wait(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(10)
    instance, options = job
    solution = servopt.solve(instance, backend="cvxpy", time_limit=30.0, **options)
    holder.join()
    assert solution.status == "optimal" and solution.objective == serial[1]
