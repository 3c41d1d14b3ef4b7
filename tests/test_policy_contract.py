"""The evaluators against policies that break (or use every corner of) their decision's contract.

Caching: the re-rank hook (a ``rerank`` flag first set in ``touch``, ``priority()`` answers
checked as ``touch()``'s are, a flag without ``priority``). Batch scheduling: ``admit`` may
return only waiting requests, each once (a waiting request that does not fit is a counted
refusal, not an error), and a policy that never admits is refused. Expert placement: a plan
given as nested lists.
"""

from __future__ import annotations

import numpy as np
import pytest

from servopt.benchmarks import batch_scheduling as bb
from servopt.benchmarks import caching as cb
from servopt.benchmarks import expert_placement as eb
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as bi
from servopt.instances import caching as ci
from servopt.instances import expert_placement as ei
from servopt.solvers import batch_scheduling as bs
from servopt.solvers import expert_placement as es


# ---------------------------------------------------------------------------------------------
# Caching: the re-rank hook
# ---------------------------------------------------------------------------------------------
def unit_instance(sequence: list[int], capacity: float) -> ci.Instance:
    objects = max(sequence) + 1
    return ci.Instance(time=np.arange(len(sequence), dtype=float), object_id=np.array(sequence),
                       size=np.ones(objects), miss_cost=np.ones(objects), capacity=capacity)


class RankFrom:
    """LRU until request ``switch``, then a fixed rank per object; at the switch ``touch`` sets
    the ``rerank`` flag. ``declare`` also sets it (False) in ``__init__``: the simulator used to
    honour the flag only then."""

    def __init__(self, switch: int, rank: list, *, declare: bool) -> None:
        self.switch, self.rank, self.ranked = switch, rank, False
        if declare:
            self.rerank = False

    def start(self, instance: ci.Instance) -> None:
        self.last = [0] * instance.objects

    def touch(self, t: int, o: int, hit: bool) -> float:
        self.last[o] = t
        if t == self.switch:
            self.ranked = self.rerank = True
        return self.priority(o)

    def priority(self, o: int):
        return self.rank[o] if self.ranked else float(self.last[o])


# Unit sizes, room for 2, requests a b c a b; bypass allowed (touch first, then the cache evicts
# the lowest priority, the requested object included). Ranks from request 2: a 5, b 0, c 3.
# Re-ranked at request 2: a=5, b=0, c enters with 3 -> b (0) goes; a hits at request 3; b misses.
# Not re-ranked: a and b keep their LRU priorities 0 and 1, c (3) evicts a, which misses.
SEQUENCE, RANK = [0, 1, 2, 0, 1], [5.0, 0.0, 3.0]
HITS_RERANKED, HITS_NOT = [False, False, False, True, False], [False] * 5


@pytest.mark.parametrize("declare", [True, False])
def test_a_rerank_flag_first_set_in_touch_is_honoured(declare):
    """The docstring's protocol: ``touch`` sets ``rerank``. Before the fix a policy that had no
    ``rerank`` attribute at ``start`` was never re-ranked (declare=False scored as LRU)."""
    inst = unit_instance(SEQUENCE, 2.0)
    result = cb.simulate(inst, RankFrom(2, RANK, declare=declare), record=True)
    assert result.hit.tolist() == HITS_RERANKED
    never = cb.simulate(inst, RankFrom(99, RANK, declare=declare), record=True)
    assert never.hit.tolist() == HITS_NOT


class MRU:
    """Most recently used out, by re-ranking at every request (the audit's reproduction)."""

    name, bypass = "mru", False

    def __init__(self, declare: bool) -> None:
        if declare:
            self.rerank = False

    def start(self, instance: ci.Instance) -> None:
        self.last: dict[int, int] = {}

    def touch(self, t: int, o: int, hit: bool) -> float:
        self.last[o] = t
        self.rerank = True
        return float(t)

    def priority(self, o: int) -> float:
        return -float(self.last[o])


def test_declaring_the_flag_or_not_gives_the_same_cost():
    inst = ci.generate(requests=500, seed=0)
    lru = cb.evaluate(inst, "lru").cost
    declared = cb.evaluate(inst, MRU(True)).cost
    assert cb.evaluate(inst, MRU(False)).cost == declared
    assert declared != lru  # the re-rank acts (the undeclared policy used to score as LRU)


@pytest.mark.parametrize(("answer", "match"), [
    (float("nan"), "priority\\(\\) returned NaN for cached object 0 at the re-rank after "
                   "request 2"),
    ("x", "priority\\(\\) must return a number, got str 'x' for cached object 0"),
    (None, "priority\\(\\) must return a number, got NoneType"),
    (True, "priority\\(\\) must return a number, got bool"),
    (np.array([1.0]), "priority\\(\\) must return a number, got ndarray"),
])
def test_priority_answers_are_checked_as_touch_answers_are(answer, match):
    """A NaN used to be accepted (a cost reported from a broken heap), a string a raw
    TypeError from the heap."""
    rank = [answer, 0.0, 3.0]  # object 0 is cached at the re-rank of request 2
    with pytest.raises(InvalidInstanceError, match=match):
        cb.simulate(unit_instance(SEQUENCE, 2.0), RankFrom(2, rank, declare=True))


def test_priority_numbers_of_other_types_are_accepted():
    rank = [np.float32(5.0), np.int64(0), 3]
    result = cb.simulate(unit_instance(SEQUENCE, 2.0), RankFrom(2, rank, declare=False),
                         record=True)
    assert result.hit.tolist() == HITS_RERANKED


def test_a_rerank_flag_without_priority_is_refused():
    """The flag asks for a re-rank the simulator cannot do: it used to be ignored silently."""

    class NoPriority:
        name = "no_priority"

        def start(self, instance):
            pass

        def touch(self, t, o, hit):
            if t == 2:
                self.rerank = True  # nothing clears it: the simulator has no priority() to call
            return float(t)

    with pytest.raises(InvalidInstanceError, match="'no_priority' set its rerank flag but has no "
                                                   "priority"):
        cb.simulate(unit_instance(SEQUENCE, 2.0), NoPriority())


# ---------------------------------------------------------------------------------------------
# Batch scheduling: admit returns waiting requests, each once
# ---------------------------------------------------------------------------------------------
class Admit(bs.Policy):
    """``admit`` = ``rule(state)``; ``preempt`` = ``victims(state)`` when given."""

    def __init__(self, rule, victims=None, name="test") -> None:
        self.rule, self.victims, self.name = rule, victims, name

    def admit(self, state):
        return self.rule(state)

    def preempt(self, state, excess):
        return self.victims(state) if self.victims else super().preempt(state, excess)


def batch(arrival, prompt, output, memory=100) -> bi.Instance:
    return bi.Instance(kv_memory=memory, arrival=np.array(arrival), prompt_tokens=np.array(prompt),
                       output_tokens=np.array(output))


def test_a_waiting_request_that_does_not_fit_is_a_counted_refusal():
    """Memory 10, two requests at round 0 of prompt 5 and one output token: each needs 5 + 0 + 1
    = 6 tokens. Admitting both at round 0: request 0 runs (6), request 1 (6 + 6 > 10) is refused;
    request 0 finishes at round 0 (latency 1), request 1 runs at round 1 (latency 2): cost 3,
    one refusal, status ok."""
    out = bb.evaluate(batch([0, 0], [5, 5], [1, 1], memory=10), Admit(lambda s: s.waiting))
    assert (out.cost, out.metrics["refused"], out.status) == (3.0, 1.0, "ok")


@pytest.mark.parametrize(("rule", "match"), [
    # request 0 twice at round 0 (it used to be admitted once and the copy counted as refused)
    (lambda s: np.array([0, 0]) if s.t == 0 else s.waiting,
     "admit\\(\\) at round 0 returned a request twice: request 0, 2 times"),
    # request 0 runs from round 0 (5 tokens to emit); asking for it again at round 1
    (lambda s: np.array([0]) if s.t == 0 else np.array([0, 1]),
     "admit\\(\\) at round 1 returned request 0, which is already running"),
    # request 2 arrives at round 5
    (lambda s: np.array([0, 2]),
     "admit\\(\\) at round 0 returned request 2, which has not arrived yet \\(it arrives at "
     "round 5\\)"),
    (lambda s: np.array([3]), "admit\\(\\) at round 0 must return request ids \\(whole numbers "
                              "in 0..2\\)"),
])
def test_admit_answers_that_break_the_protocol_are_refused(rule, match):
    inst = batch([0, 0, 5], [2, 2, 2], [5, 5, 5])
    with pytest.raises(InvalidInstanceError, match=match):
        bb.evaluate(inst, Admit(rule))


def test_admitting_a_finished_request_is_refused():
    """Request 0 (one output token) finishes at round 0; asking for it at round 1."""
    inst = batch([0, 0], [2, 2], [1, 5])
    rule = Admit(lambda s: np.array([0]) if s.t == 0 else np.concatenate([[0], s.waiting]))
    with pytest.raises(InvalidInstanceError, match="at round 1 returned request 0, which has "
                                                   "already finished"):
        bb.evaluate(inst, rule)


def test_preempt_errors_name_the_round():
    """Memory 8, two requests of prompt 2 admitted at round 0: 3 + 3 tokens, 4 + 4 at round 1,
    5 + 5 > 8 at round 2, the first preemption."""
    inst = batch([0, 0], [2, 2], [5, 5], memory=8)
    twice = Admit(lambda s: s.waiting, victims=lambda s: np.array([1, 1]))
    with pytest.raises(InvalidInstanceError, match="preempt\\(\\) at round 2 returned a request "
                                                   "twice: request 1, 2 times"):
        bb.evaluate(inst, twice)


def test_a_policy_that_never_admits_is_refused():
    """It used to end in a bare RuntimeError after max_rounds."""
    never = Admit(lambda s: np.zeros(0, dtype=np.int64), name="never")
    with pytest.raises(InvalidInstanceError, match="policy 'never' did not finish 2 of 2 "
                                                   "requests within 112 rounds: it stalls"):
        bb.evaluate(batch([0, 0], [2, 2], [1, 2]), never)  # 100 + 4 x (1 + 2) rounds


# ---------------------------------------------------------------------------------------------
# Expert placement: a plan as nested lists
# ---------------------------------------------------------------------------------------------
def placement_case() -> tuple[ei.Instance, np.ndarray]:
    inst = ei.generate(windows=3, layers=2, experts=8, nodes=1, gpus_per_node=4, slots_per_gpu=3,
                       seed=0)
    phy2log = np.full((2, 12), -1, dtype=np.int64)
    phy2log[:, :8] = np.arange(8)
    return inst, phy2log


def test_a_plan_given_as_nested_lists_scores_as_its_array():
    """It used to crash with AttributeError in the colocation metric."""
    inst, phy2log = placement_case()
    as_array = eb.evaluate(inst, lambda instance: es.Plan(phy2log))
    as_list = eb.evaluate(inst, lambda instance: es.Plan(phy2log.tolist()))
    timed = ("plan_ms",)
    assert as_list.cost == as_array.cost
    assert {k: v for k, v in as_list.metrics.items() if k not in timed} == \
        {k: v for k, v in as_array.metrics.items() if k not in timed}

    def replaced(instance):  # a list put in after construction: the evaluator checks it too
        plan = es.Plan(phy2log)
        plan.phy2log = phy2log.tolist()
        return plan

    assert eb.evaluate(inst, replaced).cost == as_array.cost


def test_a_ragged_plan_is_refused():
    with pytest.raises(InvalidInstanceError, match="rows differ in length"):
        es.Plan([[0, 1, 2], [0, 1]])
