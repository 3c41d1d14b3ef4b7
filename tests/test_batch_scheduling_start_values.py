"""Batch scheduling's own HiGHS solves (the IP of ``solve_lp`` and the group bound's pricing IPs)
against values HiGHS did not value: highspy 1.16, given a MIP start, can return the start's values
for columns its presolve removed while it reports the optimum's objective (audit R58 F1; servopt's
exact path checks this since 8d44308). The stand-in below makes every started HiGHS object of the
module return its start as its values, so the tests do not depend on the installed HiGHS.
Real HiGHS 1.16 pricing IPs also do the reverse: the optimum's values with a reported objective
below them (tests/test_batch_scheduling_bound.py's tiny instance 8, after a start).
Expected figures: the same solves without the stand-in (Azure n = 10, seed 4: the IP's optimum is
289 and its warm start 291; the group bound with 5 requests in the group converges at 280.02)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from servopt.instances import batch_scheduling as inst_mod
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


class StartValues:
    """A HiGHS object that returns its MIP start as its solution's values (its objective, bound
    and status stay HiGHS's own)."""

    def __init__(self, inner):
        self._inner, self._start = inner, None

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def setSolution(self, start):
        self._start = start
        return self._inner.setSolution(start)

    def getSolution(self):
        solution = self._inner.getSolution()
        if self._start is None or not solution.value_valid:
            return solution
        return types.SimpleNamespace(value_valid=True, col_value=np.asarray(self._start.col_value),
                                     dual_valid=False, row_dual=[])


@pytest.fixture
def instance():
    return inst_mod.generate(10, lengths="azure", seed=4)


def _start_values(monkeypatch):
    real = rules.new_highs
    monkeypatch.setattr(rules, "new_highs", lambda *a, **k: StartValues(real(*a, **k)))


def test_the_ip_is_not_called_optimal_for_its_start_s_values(instance, monkeypatch):
    plain = rules.solve_lp(instance, horizon="safe", integer=True, time_limit=60)
    assert plain.status == "optimal" and plain.objective == pytest.approx(289.0)
    assert "highs_values_mismatch" not in plain.info
    warm = model.schedule_latency(instance, model.warm_start_schedule(instance))
    assert warm == 291.0  # the start is not the optimum
    _start_values(monkeypatch)
    forced = rules.solve_lp(instance, horizon="safe", integer=True, time_limit=60)
    # was "optimal" with objective 291 (the start's) and bound 289: now the IP is solved again
    # without its start, whose values HiGHS valued
    assert forced.status == "optimal" and forced.objective == pytest.approx(289.0)
    mismatch = forced.info["highs_values_mismatch"]
    assert mismatch["objective_of_values"] == pytest.approx(291.0)
    assert mismatch["highs_objective"] == pytest.approx(289.0)
    assert mismatch["retry"] == "re-solved without the start: its values agree with HiGHS"


def test_the_group_bound_does_not_take_a_start_s_cost_as_the_pricing_optimum(instance, monkeypatch):
    exact = rules.group_bound(instance, group_size=5, horizon="safe", time_limit=90, price_time=10)
    assert exact.status == "converged" and exact.bound == pytest.approx(280.0238, abs=1e-3)
    _start_values(monkeypatch)
    forced = rules.group_bound(instance, group_size=5, horizon="safe", time_limit=30, price_time=5)
    # the pricing IPs' least reduced costs were taken from the start's columns: the bound
    # "converged" at 283.28, above the group bound itself; each such pricing is now solved again
    # without its start
    assert forced.status == "converged" and forced.bound == pytest.approx(exact.bound, abs=1e-6)
