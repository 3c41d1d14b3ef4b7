"""A small decision defined inside the tests: a production LP (Wyndor-style), all four layers.

It exercises the contracts without any of the five real decisions: Instance validation and
JSON, a Pyomo and a CVXPY model, a POLICIES dict, an evaluator and a bound.
"""

from __future__ import annotations

import dataclasses
import time
import types

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from servopt.benchmarks.harness import Bound, Outcome
from servopt.core import Instance, InvalidInstanceError
from servopt.core.cvxmodel import CvxpyModel
from servopt.core.registry import register_decision

DECISION = "toy_production"


@dataclasses.dataclass(frozen=True, repr=False)
class ToyInstance(Instance):
    """max profit @ x  s.t.  usage @ x <= capacity, x >= 0."""

    decision = DECISION
    schema_version = 2
    profit: np.ndarray
    usage: np.ndarray
    capacity: np.ndarray
    sense: str = "max"

    def validate(self) -> None:
        self._set("profit", np.asarray(self.profit, dtype=float))
        self._set("usage", np.asarray(self.usage, dtype=float))
        self._set("capacity", np.asarray(self.capacity, dtype=float))
        if self.usage.shape != (len(self.capacity), len(self.profit)):
            raise InvalidInstanceError(
                f"usage must be resources x products = {len(self.capacity)} x {len(self.profit)},"
                f" got {self.usage.shape}")
        if np.any(self.capacity < 0):
            raise InvalidInstanceError("capacity must be >= 0")

    def summary(self) -> str:
        return f"toy production: {len(self.profit)} products, {len(self.capacity)} resources"


def generate(*, products: int = 3, resources: int = 2, seed: int = 0) -> ToyInstance:
    rng = np.random.default_rng(seed)
    return ToyInstance(profit=rng.uniform(1, 5, products),
                       usage=rng.uniform(0.5, 2, (resources, products)),
                       capacity=rng.uniform(5, 10, resources))


def build(instance: ToyInstance, *, relax: bool = False) -> pyo.ConcreteModel:
    m = pyo.ConcreteModel()
    P, R = range(len(instance.profit)), range(len(instance.capacity))
    m.x = pyo.Var(P, domain=pyo.NonNegativeReals)
    m.capacity = pyo.Constraint(
        R, rule=lambda m, r: sum(float(instance.usage[r, p]) * m.x[p] for p in P)
        <= float(instance.capacity[r]))
    profit = sum(float(instance.profit[p]) * m.x[p] for p in P)
    if instance.sense == "max":
        m.obj = pyo.Objective(expr=profit, sense=pyo.maximize)
    else:
        m.obj = pyo.Objective(expr=-profit, sense=pyo.minimize)
    m.index_names = {"capacity": ["resource"], "x": ["product"]}
    return m


def build_cvxpy(instance: ToyInstance) -> CvxpyModel:
    import cvxpy as cp

    x = cp.Variable(len(instance.profit), nonneg=True)
    cap = instance.usage @ x <= instance.capacity
    profit = instance.profit @ x
    objective = cp.Maximize(profit) if instance.sense == "max" else cp.Minimize(-profit)
    return CvxpyModel(cp.Problem(objective, [cap]), instance.sense,
                      {"capacity": (cap, pd.RangeIndex(len(instance.capacity), name="resource"))},
                      {"x": (x, pd.RangeIndex(len(instance.profit), name="product"))})


def nothing(instance: ToyInstance) -> np.ndarray:
    return np.zeros(len(instance.profit))


def greedy(instance: ToyInstance) -> np.ndarray:
    """Make only the product with the best profit per unit of its tightest resource."""
    per_unit = instance.profit / instance.usage.max(axis=0)
    best = int(np.argmax(per_unit))
    x = np.zeros(len(instance.profit))
    column = instance.usage[:, best]
    room = np.divide(instance.capacity, column, out=np.full(len(column), np.inf), where=column > 0)
    x[best] = np.min(room)
    return x


def exact(instance: ToyInstance) -> np.ndarray:
    from servopt.solvers import exact as ex

    return ex.solve(instance).decisions["x"].to_numpy()


POLICIES = {"nothing": nothing, "greedy": greedy, "exact": exact}
SENSE = "max"
COST = "profit"


def evaluate(instance: ToyInstance, method, **kw) -> Outcome:
    policy = POLICIES[method] if isinstance(method, str) else method
    start = time.perf_counter()
    x = policy(instance)
    wall = time.perf_counter() - start
    used = instance.usage @ x
    feasible = bool(np.all(used <= instance.capacity + 1e-6))
    return Outcome(cost=float(instance.profit @ x), wall_s=wall,
                   metrics={"utilisation": float(np.max(used / instance.capacity))},
                   status="ok" if feasible else "infeasible")


def bound(instance: ToyInstance, **kw) -> Bound:
    from servopt.solvers import exact as ex

    sol = ex.solve(instance)
    return Bound(sol.objective, "optimal")


def make_instance(*, seed: int, products: int = 3) -> ToyInstance:
    return generate(products=products, seed=seed)


ns = types.SimpleNamespace
register_decision(
    DECISION,
    instances=ns(Instance=ToyInstance, generate=generate, __file__=__file__),
    models=ns(build=build, build_cvxpy=build_cvxpy, LINEAR=True, __file__=__file__),
    solvers=ns(POLICIES=POLICIES, __file__=__file__),
    benchmarks=ns(evaluate=evaluate, bound=bound, SENSE=SENSE, COST=COST, __file__=__file__),
)
