"""A solve leaves the caller's model as it was, and its figures do not depend on the units or on
where the clock starts: a relaxed solve of a Pyomo model the caller owns, the decode-routing
hindsight IP with small time units, batch scheduling with every arrival shifted by a constant."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from servopt.core import InfeasibleError
from servopt.instances import caching as caching_instances
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
