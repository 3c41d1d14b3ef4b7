"""A replaced layer of a built-in decision is honoured or refused, never ignored (audit R28).

Before: ``register_decision("caching", solvers=..., replace=True)`` was accepted and the harness
checked names against the override's ``POLICIES``, but the built-in evaluators looked names up in
their own import of the built-in solvers module: the ``lru`` row ran the built-in LRU under the
override's label, and a name the override added passed the case's check, then failed to run.
Each expected number here is the replacement rule's cost evaluated as an object (a path that
looks no name up), checked to differ from the built-in's cost under that name.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

from servopt.benchmarks import batch_scheduling as batch_bench
from servopt.benchmarks import caching as caching_bench
from servopt.benchmarks import capacity as capacity_bench
from servopt.benchmarks import decode_routing as routing_bench
from servopt.benchmarks import expert_placement as expert_bench
from servopt.benchmarks import runner
from servopt.benchmarks.harness import gap_table
from servopt.benchmarks.registry import Case
from servopt.core import InvalidInstanceError
from servopt.core.registry import register_decision, registered_layers, unregister_decision
from servopt.instances import batch_scheduling, caching, capacity, decode_routing, expert_placement
from servopt.solvers import batch_scheduling as batch_rules
from servopt.solvers import caching as caching_rules
from servopt.solvers import capacity as capacity_rules
from servopt.solvers import decode_routing as routing_rules
from servopt.solvers import expert_placement as expert_rules

DECISIONS = ("caching", "batch_scheduling", "decode_routing", "expert_placement", "capacity")


@pytest.fixture(autouse=True)
def _forget_overrides():
    yield
    for decision in DECISIONS:
        unregister_decision(decision)


def _override(decision: str, builtin: types.ModuleType, **changes) -> None:
    """Replace ``decision``'s solvers layer by the built-in one with ``POLICIES`` changed."""
    layer = types.SimpleNamespace(**{k: v for k, v in vars(builtin).items() if not k.startswith("__")})
    layer.POLICIES = {**builtin.POLICIES, **changes}
    register_decision(decision, solvers=layer, replace=True)


class MostRecentlyUsed:
    """Evict the most recently used object: far from LRU on a skewed trace."""

    name = "mru"
    bypass = False

    def start(self, instance):
        pass

    def touch(self, t, o, hit):
        return -float(t)


class LargestFirst(batch_rules.Policy):
    """Admit the largest prompts first (README's example rule)."""

    name = "largest_first"

    def admit(self, state):
        order = state.waiting[np.argsort(-state.prompt[state.waiting], kind="stable")]
        return batch_rules.admit_with_watermark(state, order, 0.0)


class AllToWorkerZero(routing_rules.Router):
    name = "worker_zero"

    def choose(self, view, request):
        return 0


def test_a_replaced_caching_rule_is_what_its_row_runs():
    instance = caching.generate(requests=400, objects=60, seed=0)
    builtin_lru = caching_bench.evaluate(instance, "lru").cost
    mru = caching_bench.evaluate(instance, MostRecentlyUsed()).cost
    assert mru != pytest.approx(builtin_lru)  # (else the test could not tell them apart)
    _override("caching", caching_rules, lru=MostRecentlyUsed, mru=MostRecentlyUsed)
    assert caching_bench.evaluate(instance, "lru").cost == pytest.approx(mru)
    table = gap_table(instance, ["lru", "mru", "fifo"]).set_index("method")
    assert table.loc["lru", "cost"] == pytest.approx(mru)
    assert table.loc["mru", "cost"] == pytest.approx(mru)  # a name the override adds runs
    assert table.loc["fifo", "cost"] == pytest.approx(caching_bench.evaluate(
        instance, caching_rules.FIFO()).cost)  # the names it keeps are the built-in rules
    unregister_decision("caching")
    assert caching_bench.evaluate(instance, "lru").cost == pytest.approx(builtin_lru)
    with pytest.raises(InvalidInstanceError, match="unknown caching method 'mru'"):
        caching_bench.evaluate(instance, "mru")


def test_a_name_a_caching_override_adds_runs_in_a_registered_case(tmp_path):
    """R28's ``servopt bench --plugin mru_plugin.py``: the case was accepted, its mru rows failed
    with "unknown caching method 'mru'"."""
    params = {"requests": 400, "objects": 60}
    mru = caching_bench.evaluate(caching.generate(**params, seed=0), MostRecentlyUsed()).cost
    _override("caching", caching_rules, mru=MostRecentlyUsed)
    case = Case(name="e22_mru", decision="caching", grid=(params,), seeds=(0,), methods=("mru",))
    table = runner.run([case], cache_dir=tmp_path / "cache", progress=False)
    row = table[table["method"] == "mru"].iloc[0]
    assert row["status"] == "ok"
    assert row["cost"] == pytest.approx(mru)


def test_a_replaced_batch_scheduling_rule_is_what_its_row_runs():
    instance = batch_scheduling.generate(30, seed=0)
    builtin_fcfs = batch_bench.evaluate(instance, "fcfs").cost
    largest = batch_bench.evaluate(instance, LargestFirst()).cost
    assert largest != pytest.approx(builtin_fcfs)
    _override("batch_scheduling", batch_rules, fcfs=LargestFirst, largest_first=LargestFirst)
    table = gap_table(instance, ["fcfs", "largest_first"]).set_index("method")
    assert table.loc["fcfs", "cost"] == pytest.approx(largest)
    assert table.loc["largest_first", "cost"] == pytest.approx(largest)


def test_a_replaced_decode_router_is_what_its_row_runs():
    instance = decode_routing.generate(requests=200, workers=3, seed=0)
    builtin_jsq = routing_bench.evaluate(instance, "jsq").cost
    zero = routing_bench.evaluate(instance, AllToWorkerZero()).cost
    assert zero != pytest.approx(builtin_jsq)
    _override("decode_routing", routing_rules, jsq=AllToWorkerZero, worker_zero=AllToWorkerZero)
    assert routing_bench.evaluate(instance, "jsq").cost == pytest.approx(zero)
    assert routing_bench.evaluate(instance, "worker_zero").cost == pytest.approx(zero)


def test_a_replaced_expert_placement_rule_is_what_its_row_runs():
    instance = expert_placement.generate(seed=0)
    builtin_eplb = expert_bench.evaluate(instance, "eplb").cost
    alone = expert_bench.evaluate(instance, expert_rules.POLICIES["no_replication"]).cost
    assert alone != pytest.approx(builtin_eplb)
    _override("expert_placement", expert_rules, eplb=expert_rules.POLICIES["no_replication"],
              mine=expert_rules.POLICIES["no_replication"])
    assert expert_bench.evaluate(instance, "eplb").cost == pytest.approx(alone)
    assert expert_bench.evaluate(instance, "mine").cost == pytest.approx(alone)


def two_more_workers(instance, observe=None):
    """The built-in plan with two more workers."""
    plan = capacity_rules.POLICIES["plan"](instance)
    return dataclasses.replace(plan, workers=plan.workers + 2)


def test_a_replaced_capacity_rule_is_what_its_row_runs():
    instance = capacity.generate(requests=300, arrival_rate=5.0)
    run = dict(n_requests=500, seeds=1, window=200)
    builtin_plan = capacity_bench.evaluate(instance, "plan", **run).cost
    more = capacity_bench.evaluate(instance, two_more_workers, **run).cost
    assert more != builtin_plan
    _override("capacity", capacity_rules, plan=two_more_workers, mine=two_more_workers)
    assert capacity_bench.evaluate(instance, "plan", **run).cost == more
    assert capacity_bench.evaluate(instance, "mine", **run).cost == more


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_built_in_decisions_model_cannot_be_replaced(decision):
    """Its solvers and evaluator import the built-in model: a replaced one would reach only
    servopt.solve, so it is refused, with or without replace=True."""
    for replace in (True, False):
        with pytest.raises(ValueError, match=f"models layer of the built-in decision '{decision}' "
                                             "cannot be replaced.*new decision name"):
            register_decision(decision, models=types.SimpleNamespace(), replace=replace)
    assert registered_layers(decision) == {}


def test_a_solvers_override_without_policies_is_refused():
    with pytest.raises(ValueError, match="solvers override of 'caching' needs POLICIES, a dict"):
        register_decision("caching", solvers=types.SimpleNamespace(), replace=True)
    with pytest.raises(ValueError, match="needs POLICIES"):
        register_decision("caching", solvers=types.SimpleNamespace(POLICIES=["lru"]), replace=True)
    assert registered_layers("caching") == {}
