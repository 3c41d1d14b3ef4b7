"""Time budgets and solve options of batch scheduling, caching and the exact solver (audits R24
and R21): Ctrl-C during a warm-start LP, HiGHS's cumulative LP clock, every LP of a bound
loop on what is left of its budget, ``time_limit=None`` alike for every method, a relaxation's
value never called optimal, and constructor and build options refused by name."""

from __future__ import annotations

import math

import highspy
import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.core.errors import InvalidInstanceError
from servopt.core.matrix import Family, MatrixModel
from servopt.instances import batch_scheduling as bs
from servopt.instances import caching as ci
from servopt.solvers import exact


# ---------------------------------------------------------------------------------------------
# the exact solver
# ---------------------------------------------------------------------------------------------
def test_ctrl_c_during_the_caching_warm_start_lp_stops_the_call_as_interrupted(monkeypatch):
    # R24 #2: the LP ended "Interrupted by user", the MIP then ran to its limit and came back
    # 'time_limit' with only info["warm_start"] = "none (LP interrupted)"
    runs = []

    def interrupted(highs, poll=True):
        runs.append(highs)
        return True  # Ctrl-C as the LP started: cancelled before it ran

    monkeypatch.setattr(exact, "_run_interruptible", interrupted)
    sol = servopt.solve(ci.generate(requests=60, seed=0), time_limit=30.0)
    assert len(runs) == 1, "the MIP must not be started after a Ctrl-C"
    assert sol.status == "interrupted" and math.isnan(sol.objective)
    assert sol.info["warm_start"] == "none (LP interrupted)"
    assert sol.info["bound_kind"] == "none" and math.isnan(sol.bound)


def _no_incumbent_no_bound(monkeypatch):
    """Every HiGHS object reports a time-limit stop with neither an incumbent nor a dual bound."""
    real = exact.new_highs

    class Stopped:
        def __init__(self, inner):
            object.__setattr__(self, "inner", inner)

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __setattr__(self, name, value):
            setattr(self.inner, name, value)

        def getModelStatus(self):
            return highspy.HighsModelStatus.kTimeLimit

        def getInfo(self):
            info = self.inner.getInfo()
            info.mip_dual_bound, info.primal_solution_status = math.inf, 0
            return info

    monkeypatch.setattr(exact, "new_highs", lambda: Stopped(real()))


def test_a_mip_stopped_without_incumbent_or_bound_reports_bound_kind_none(monkeypatch):
    # R24 #11: _solve_matrix_once set bound_kind "mip_bound" whatever the bound
    _no_incumbent_no_bound(monkeypatch)
    mm = MatrixModel(objective=np.ones(2), matrix=np.array([[1.0, 1.0]]), row_lower=[1.5],
                     row_upper=[np.inf], col_lower=np.zeros(2), col_upper=np.full(2, 10.0),
                     rows={"need": Family(np.arange(1), pd.RangeIndex(1))},
                     columns={"x": Family(np.arange(2), pd.RangeIndex(2))},
                     integer=np.ones(2, dtype=bool))
    sol = exact.solve_matrix(mm, decision="toy")
    assert sol.status == "time_limit" and math.isnan(sol.objective) and math.isnan(sol.bound)
    assert sol.info["bound_kind"] == "none"


def test_a_time_limit_beyond_a_float_is_refused_by_name():
    # R24 #11: float(10**400) raised OverflowError from servopt/core/checks.py
    with pytest.raises(InvalidInstanceError, match=r"time_limit.*beyond a float"):
        servopt.solve(bs.generate(5, seed=0), time_limit=10 ** 400)
