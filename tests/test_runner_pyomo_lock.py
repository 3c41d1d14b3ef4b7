"""A pool worker that dies holding Pyomo's output lock leaves the parent able to take it (E35).

Pyomo's ``capture_output_lock`` becomes a ``multiprocessing.Lock`` once ``multiprocessing`` is
imported, shared with forked children. A worker killed inside ``capture_output`` left it held,
and every later Pyomo solve in the parent waited 200 s and failed. Truth: the lock itself (can
the parent acquire it after the worker died holding it?)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

pyomo_dependencies = pytest.importorskip("pyomo.common.dependencies")
if not hasattr(pyomo_dependencies, "capture_output_lock"):
    # Pyomo < 6.10.1 (6.9.3 is the floor) has no such lock: capture_output serialises on a
    # threading.Lock of its own, which a forked worker only copies, so a worker that dies
    # holding its copy cannot leave the parent's held (runner._own_pyomo_output_lock then only
    # adds an attribute no Pyomo code reads)
    pytest.skip("pyomo.common.dependencies.capture_output_lock first exists in Pyomo 6.10.1; "
                "before it the lock is a plain thread lock a dead worker cannot leave held",
                allow_module_level=True)

from servopt.benchmarks import runner  # noqa: E402


def _worker_dies_holding_the_lock(parent: int) -> None:
    runner._init_worker(parent)  # as the pool runs it in each worker
    pyomo_dependencies.capture_output_lock.acquire()
    os._exit(0)  # (as a killed worker: no release, no clean-up)


def test_a_worker_that_dies_holding_pyomos_output_lock_does_not_leave_it_held():
    import pyomo.environ  # noqa: F401  (the lock the solves take)

    lock = pyomo_dependencies.capture_output_lock
    assert isinstance(lock, type(multiprocessing.get_context("fork").Lock())), \
        "the shared lock this guards against (Pyomo upgrades it once multiprocessing is imported)"
    child = multiprocessing.get_context("fork").Process(
        target=_worker_dies_holding_the_lock, args=(os.getpid(),))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    taken = pyomo_dependencies.capture_output_lock.acquire(timeout=2)
    if taken:
        pyomo_dependencies.capture_output_lock.release()
    else:  # (a leaked lock would hang every later Pyomo test for 200 s: replace it, then fail)
        pyomo_dependencies.capture_output_lock = multiprocessing.Lock()
    assert taken, "the parent could not take Pyomo's output lock after its worker died"
