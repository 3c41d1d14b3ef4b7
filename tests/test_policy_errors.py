"""Custom policies that break their decision's contract get an ``InvalidInstanceError`` in the
user's terms, not a bare numpy or attribute error: caching and expert placement methods that
write into the instance's read-only arrays, caching policy objects without the protocol's
methods. And what expert placement's methods do with ``previous_placement``: EPLB's ignore it
(their migrations depend on how the GPUs are labelled), ``bid_price`` and ``exact`` align to it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from servopt.benchmarks import caching as cb
from servopt.benchmarks import expert_placement as eb
from servopt.core import InvalidInstanceError
from servopt.instances import caching as ci
from servopt.instances import expert_placement as ei
from servopt.solvers import expert_placement as es


def unit_instance(sequence: list[int], capacity: float) -> ci.Instance:
    objects = max(sequence) + 1
    return ci.Instance(time=np.arange(len(sequence), dtype=float), object_id=np.array(sequence),
                       size=np.ones(objects), miss_cost=np.ones(objects), capacity=capacity)


# ---------------------------------------------------------------------------------------------
# Caching: writes into the instance
# ---------------------------------------------------------------------------------------------
class Writer:
    """LRU (priority = time of the last request, bypass allowed) whose ``where`` method writes
    into the instance at request ``at`` (``start`` writes at once)."""

    def __init__(self, where: str, at: int = 0) -> None:
        self.where, self.at, self.ranked = where, at, False

    def start(self, instance: ci.Instance) -> None:
        self.instance = instance
        self.last: dict[int, int] = {}
        if self.where == "start":
            instance.size[0] = 5

    def touch(self, t: int, o: int, hit: bool) -> float:
        self.t, self.last[o] = t, t
        if self.where == "touch" and t == self.at:
            self.instance.miss_cost[o] = 0.0
        if self.where == "priority" and t == self.at:
            self.rerank = True
        return float(t)

    def evicted(self, o: int, priority: float) -> None:
        if self.where == "evicted" and self.t == self.at:
            self.instance.size[o] += 1

    def priority(self, o: int) -> float:
        sizes = self.instance.size
        sizes[o] = 2.0
        return float(self.last[o])


# Unit sizes, room for 2, requests 0 1 2 0: request 2 is the first that evicts (object 0, the
# least recent); the re-rank after request 2 asks priority() of the cached objects.
@pytest.mark.parametrize(("where", "at", "match"), [
    ("start", 0, r"the policy's start\(\) wrote into a read-only array of the instance \(.*"
                 r"test_policy_errors.py, line \d+: instance.size\[0\] = 5\): the instance's "
                 r"arrays \(time, object_id, size, miss_cost\) are the simulator's and read-only; "
                 r"copy one first \(np.array\(instance.size\)\)"),
    ("touch", 1, r"the policy's touch\(\) wrote into a read-only array of the instance at request "
                 r"1 \(.*line \d+: self.instance.miss_cost\[o\] = 0.0\).*"
                 r"np.array\(instance.miss_cost\)"),
    ("evicted", 2, r"the policy's evicted\(\) wrote into a read-only array of the instance at "
                   r"request 2 \(.*self.instance.size\[o\] \+= 1\)"),
    # the line that writes names no field: the message quotes it and suggests a copy of size
    ("priority", 2, r"the policy's priority\(\) wrote into a read-only array of the instance at "
                    r"request 2 \(.*line \d+: sizes\[o\] = 2.0\)"),
])
def test_a_caching_policy_that_writes_into_the_instance_is_told_which_method(where, at, match):
    """It used to end in numpy's bare ``ValueError: assignment destination is read-only`` (or
    ``output array is read-only``), naming neither the method nor the request."""
    inst = unit_instance([0, 1, 2, 0], 2.0)
    with pytest.raises(InvalidInstanceError, match=match) as info:
        cb.simulate(inst, Writer(where, at))
    assert isinstance(info.value.__cause__, ValueError)  # numpy's error kept as the cause
    assert inst.size.tolist() == [1.0, 1.0, 1.0] and inst.miss_cost.tolist() == [1.0] * 3


def test_the_same_policy_without_the_write_runs_as_lru():
    """The writer's order is LRU with bypass: requests 0 1 2 0 with room for 2 -> 0 is evicted
    at request 2 and misses again: 4 misses, no hit (by hand)."""
    result = cb.simulate(unit_instance([0, 1, 2, 0], 2.0), Writer("nowhere"), record=True)
    assert (result.miss_cost, result.hit.tolist()) == (4.0, [False] * 4)


def test_other_value_errors_of_a_policy_pass_through():
    class Fails(Writer):
        def touch(self, t, o, hit):
            raise ValueError("the policy's own complaint")

    with pytest.raises(ValueError, match="the policy's own complaint") as info:
        cb.simulate(unit_instance([0, 1], 1.0), Fails("nowhere"))
    assert type(info.value) is ValueError


# ---------------------------------------------------------------------------------------------
# Caching: policy objects without the protocol
# ---------------------------------------------------------------------------------------------
class NoStart:
    def touch(self, t, o, hit):
        return float(t)


class NoTouch:
    name = "no_touch"

    def start(self, instance):
        pass


class BadEvicted(Writer):
    evicted = 3


@pytest.mark.parametrize(("policy", "match"), [
    (NoStart(), r"the policy 'NoStart' lacks start\(\): a caching policy needs "
                r"start\(instance\) and touch\(t, o, hit\) -> float \| None; optionally "
                r"evicted\(o, priority\)"),
    (NoStart, r"the policy 'NoStart' lacks start\(\)"),  # a class: made, then checked
    (lambda: NoStart(), r"the policy 'NoStart' lacks start\(\)"),  # a factory's product
    (NoTouch(), r"the policy 'no_touch' lacks touch\(\): a caching policy needs"),
    (object(), r"the policy 'object' lacks start\(\), touch\(\)"),
    (BadEvicted("nowhere"), r"lacks evicted\(\) \(set, but not a method\)"),
])
def test_a_caching_policy_without_the_protocol_is_refused_up_front(policy, match):
    """``NoStart`` used to fail with ``AttributeError: 'NoStart' object has no attribute
    'start'``, a non-callable ``evicted`` with a TypeError at the first eviction."""
    with pytest.raises(InvalidInstanceError, match=match):
        cb.evaluate(unit_instance([0, 1, 2, 0], 2.0), policy)


# ---------------------------------------------------------------------------------------------
# Expert placement: writes into the instance
# ---------------------------------------------------------------------------------------------
def placement_instance() -> ei.Instance:
    return ei.generate(windows=3, layers=2, experts=8, nodes=1, gpus_per_node=4, slots_per_gpu=3,
                       seed=0)


def writes_loads(inst: ei.Instance) -> es.Plan:
    inst.loads[0, 0, 0] = 5
    return es.Plan(np.zeros((2, 12), dtype=np.int64))


def writes_history(inst: ei.Instance) -> es.Plan:
    hist = inst.history
    hist *= 2
    return es.Plan(np.zeros((2, 12), dtype=np.int64))


@pytest.mark.parametrize(("method", "match"), [
    (writes_loads, r"the placement method 'writes_loads' wrote into a read-only array of the "
                   r"instance \(.*test_policy_errors.py, line \d+: inst.loads\[0, 0, 0\] = 5\): "
                   r"the instance's arrays \(loads and its views history, planned_loads, "
                   r"next_loads; previous_placement; gpu_speed\) are the evaluator's and "
                   r"read-only; copy one first \(np.array\(instance.loads\)\)"),
    # an in-place operator: numpy says "output array is read-only"
    (writes_history, r"the placement method 'writes_history' wrote into a read-only array .*"
                     r"line \d+: hist \*= 2\)"),
])
def test_a_placement_method_that_writes_into_the_instance_is_told_so(method, match):
    """It used to end in numpy's bare ``ValueError: assignment destination is read-only``."""
    inst = placement_instance()
    before = np.array(inst.loads)
    with pytest.raises(InvalidInstanceError, match=match):
        eb.evaluate(inst, method)
    np.testing.assert_array_equal(inst.loads, before)


# ---------------------------------------------------------------------------------------------
# Expert placement: GPU labels of the previous placement
# ---------------------------------------------------------------------------------------------
def relabelled(phy2log: np.ndarray, perm: list[int], slots: int) -> np.ndarray:
    """``phy2log`` with GPU ``perm[g]``'s slots put on GPU ``g``."""
    layers, gpus = phy2log.shape[0], phy2log.shape[1] // slots
    return phy2log.reshape(layers, gpus, slots)[:, perm, :].reshape(phy2log.shape)


def moved_pairs(plan: np.ndarray, previous: np.ndarray, slots: int) -> int:
    """(expert, GPU) pairs of ``plan`` absent from ``previous``, counted here by sets."""
    moved = 0
    for now, before in zip(plan, previous, strict=True):
        pairs = [{(int(e), p // slots) for p, e in enumerate(row) if e >= 0}
                 for row in (now, before)]
        moved += len(pairs[0] - pairs[1])
    return moved


def test_gpu_labels_of_the_previous_placement_move_eplb_only():
    """The documented behaviour (solvers.expert_placement POLICIES, evaluate's docstring): the
    tiny preset deployed with EPLB's own plan, migration cost 5. Relabelling the deployed GPUs
    (same placement, other GPU numbers) leaves bid_price and exact at their cost (they align to
    the previous placement); EPLB plans the same array either way, so its migrations go from 0 to
    the pairs it no longer shares with the relabelled deployment (12), each costing 5."""
    base = ei.generate("tiny", seed=0)
    S = base.slots_per_gpu
    deployed = es.POLICIES["eplb"](eb.planning_view(base)).phy2log
    same = dataclasses.replace(base, previous_placement=deployed, migration_cost=5.0)
    other = dataclasses.replace(same, previous_placement=relabelled(deployed, [1, 2, 0], S))
    for method in ("bid_price", "bid_price_lp", "exact"):
        kept, moved = eb.evaluate(same, method), eb.evaluate(other, method)
        assert moved.cost == pytest.approx(kept.cost, rel=1e-12), method
        assert moved.metrics["migrations"] == kept.metrics["migrations"], method
    for method in ("eplb", "eplb_lp", "eplb_price", "no_replication"):  # previous_placement unread
        plans = [es.POLICIES[method](eb.planning_view(inst)).phy2log for inst in (base, other)]
        np.testing.assert_array_equal(plans[0], plans[1], err_msg=method)
    plan = es.POLICIES["eplb"](eb.planning_view(other)).phy2log
    np.testing.assert_array_equal(plan, deployed)
    kept, moved = eb.evaluate(same, "eplb"), eb.evaluate(other, "eplb")
    count = moved_pairs(plan, other.previous_placement, S)
    assert (kept.metrics["migrations"], moved.metrics["migrations"]) == (0.0, count) == (0.0, 12)
    assert moved.metrics["makespan"] == kept.metrics["makespan"]
    assert moved.cost - kept.cost == pytest.approx(5.0 * 12, rel=1e-12)
