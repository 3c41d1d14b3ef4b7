"""Batch scheduling across long idle stretches: the hindsight search plans on the instance with
its idle stretches cut short (compress_idle) and puts the schedule back on the instance's rounds
part by part (close_idle), so a gap of 1e9 rounds between arrivals costs neither memory nor time.
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from test_batch_scheduling import brute_force as brute_force_within

from servopt.benchmarks import batch_scheduling as bench
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as inst_mod
from servopt.instances.batch_scheduling import Instance
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def test_hindsight_across_a_gap_of_1e9_rounds_costs_what_each_request_alone_costs():
    # the audit's reproduction (a MemoryError: n x 2e9 floats). Each request runs alone at its
    # arrival (5 + 3 and 6 + 4 tokens <= 20): 3 + 4 = 7 rounds, by hand
    inst = Instance(kv_memory=20, arrival=[0, 10**9], prompt_tokens=[5, 6], output_tokens=[3, 4])
    out = bench.evaluate(inst, "hindsight")
    assert out.cost == 7.0 and out.metrics["preemptions"] == 0


def reference_close_idle(parts: np.ndarray, inst: Instance, start: np.ndarray) -> np.ndarray:
    """close_idle written round by round, given each request's part: mark the rounds from the
    part's last arrival on where none of its requests runs and move every later start earlier
    by the marked rounds before it."""
    closed = start.copy()
    for value in np.unique(parts):
        members = np.flatnonzero(parts == value)
        floor = int(inst.arrival[members].max())
        end = int(np.max(start[members] + inst.output_tokens[members]))
        busy = np.zeros(max(end, floor) + 1, dtype=bool)
        for i in members:
            busy[start[i]:start[i] + inst.output_tokens[i]] = True
        for i in members:
            closed[i] = start[i] - int(np.sum(~busy[floor:max(floor, start[i])]))
    return closed


def test_close_idle_by_hand():
    # M = 10; requests 0, 1 arrive at 0 (outputs 2, 1), request 2 at 5 (output 2). compress_idle:
    # the first part can finish by 0 + 3, so request 2 moves to round 3 (shift 2). A schedule of
    # the compressed instance: 0 at 0 (rounds 0-1), 2 at 3 (rounds 3-4), 1 at 4 (round 4).
    # Rounds 2 and 3 are idle for the first part: request 1 moves to 2. Back on the instance's
    # rounds (+ shift): [0, 2, 5], latency 2 + 3 + 2 = 7 (9 before the cut)
    inst = Instance(kv_memory=10, arrival=[0, 0, 5], prompt_tokens=[1, 1, 1],
                    output_tokens=[2, 1, 2])
    short, shift = rules.idle_cut(inst)
    assert short.arrival.tolist() == [0, 0, 3] and shift.tolist() == [0, 0, 2]
    assert rules.idle_parts(short).tolist() == rules.idle_parts(inst).tolist() == [0, 0, 1]
    start = np.array([0, 4, 3])
    assert model.schedule_latency(short, start) == 9
    closed = rules.close_idle(short, start)
    assert closed.tolist() == [0, 2, 3]
    assert (closed + shift).tolist() == [0, 2, 5]
    assert model.is_feasible(inst, closed + shift) and model.schedule_latency(inst, closed + shift) == 7


def parted(rng: np.random.Generator) -> Instance:
    """2-3 parts of 1-3 requests arriving together; each part starts 1-3 rounds after the
    previous can end (its arrival + output sum): a new part for compress_idle, moved 1-3 rounds
    earlier by it."""
    arrival, outputs, t = [], [], 0
    for _ in range(int(rng.integers(2, 4))):
        k = int(rng.integers(1, 4))
        a, o = np.full(k, t), rng.integers(1, 6, k)
        arrival += a.tolist()
        outputs += o.tolist()
        t = int(a.max() + o.sum() + rng.integers(1, 4))
    prompts = rng.integers(0, 6, len(arrival))
    return Instance(kv_memory=int((prompts + np.array(outputs)).max() + rng.integers(0, 4)),
                    arrival=arrival, prompt_tokens=prompts, output_tokens=outputs)


def test_close_idle_matches_the_round_by_round_reference():
    # parts known by construction (compress_idle's shifts name them too); schedules of the
    # compressed instance placed in random order after random delays, so they leave idle rounds
    # and a part often runs into the next one's rounds: shifted back without the cut, such a
    # schedule can overflow memory on the instance's rounds (the earlier part's requests hold
    # more tokens by the time the later part starts)
    changed = overflow = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        inst = parted(rng)
        short, shift = rules.idle_cut(inst)
        parts = np.unique(shift, return_inverse=True)[1]
        assert rules.idle_parts(short).tolist() == rules.idle_parts(inst).tolist() == parts.tolist()
        late = dataclasses.replace(short, arrival=short.arrival + rng.integers(0, 12, inst.n))
        start, _ = rules.serial_schedule(late, rng.permutation(inst.n))  # feasible on short too
        closed = rules.close_idle(short, start)
        np.testing.assert_array_equal(closed, reference_close_idle(parts, short, start))
        assert model.is_feasible(short, closed)
        assert model.is_feasible(inst, closed + shift)
        assert model.schedule_latency(inst, closed + shift) == model.schedule_latency(short, closed)
        assert model.schedule_latency(short, closed) <= model.schedule_latency(short, start)
        changed += bool(np.any(closed != start))
        overflow += not model.is_feasible(inst, start + shift)
    assert changed >= 20 and overflow >= 3  # measured: 30 and 10 of 30


def halves(seed: int) -> tuple[Instance, Instance]:
    rng = np.random.default_rng(1000 + seed)

    def half() -> Instance:
        n = int(rng.integers(1, 4))  # both halves together: at most EXHAUSTIVE_ORDERS requests
        prompts, outputs = rng.integers(0, 6, n), rng.integers(1, 5, n)
        return Instance(kv_memory=12, arrival=rng.integers(0, 4, n), prompt_tokens=prompts,
                        output_tokens=outputs)
    return half(), half()


def joined(first: Instance, second: Instance, gap: int) -> Instance:
    """The two halves one after the other, the second ``gap`` rounds after the first can end
    (its last arrival + the sum of its outputs): the halves never meet in any schedule that
    lets no round idle after the first half's last arrival."""
    offset = int(first.arrival.max() + first.output_tokens.sum()) + gap
    return Instance(kv_memory=first.kv_memory,
                    arrival=np.r_[first.arrival, second.arrival + offset],
                    prompt_tokens=np.r_[first.prompt_tokens, second.prompt_tokens],
                    output_tokens=np.r_[first.output_tokens, second.output_tokens])


@pytest.mark.parametrize("gap", [10**6, 10**9])
@pytest.mark.parametrize("seed", range(6))
def test_a_long_gap_costs_the_two_halves_evaluated_apart(seed, gap):
    first, second = halves(seed)
    assert first.n + second.n <= rules.EXHAUSTIVE_ORDERS  # every order tried: no time limit in play
    whole = joined(first, second, gap)
    policy = rules.Hindsight(time_limit=0.5)
    out = bench.evaluate(whole, policy)
    apart = [bench.evaluate(h, rules.Hindsight(time_limit=0.5)).cost for h in (first, second)]
    assert out.cost == sum(apart) == brute_force(first) + brute_force(second)
    # the plan is on the instance's rounds, each half's part of it feasible on its own, the
    # first half done before the second starts, and it is what the simulator ran
    k = first.n
    offset = int(whole.arrival[k] - second.arrival[0])  # what joined added to its arrivals
    for plan in (policy.planned, policy.initial):
        assert np.max(plan[:k] + first.output_tokens) <= np.min(plan[k:])
        assert model.is_feasible(first, plan[:k]) and model.is_feasible(second, plan[k:] - offset)
    assert model.schedule_latency(whole, policy.planned) == out.cost
    assert out.metrics["preemptions"] == 0


def test_hindsight_replays_its_plan_across_gaps_on_the_instance_rounds():
    # two generated streams (searched within a time limit, not exhaustively) with 1e6 idle
    # rounds between them and the clock stamped 1e9 rounds in: the simulator's cost on the
    # instance is the plan's latency, the plan is feasible there, and no worse than MC-SF's
    a = inst_mod.generate(10, arrivals="poisson", lengths="azure", load=1.0, seed=3)
    b = inst_mod.generate(10, arrivals="poisson", lengths="azure", load=1.0, seed=4)
    whole = joined(a, b, 10**6)
    whole = dataclasses.replace(whole, arrival=whole.arrival + 10**9)
    policy = rules.Hindsight(time_limit=1.0)
    out = bench.evaluate(whole, policy)
    planned = policy.planned - 10**9  # feasibility checked on rounds from 0 (a 1e9-row profile)
    assert model.is_feasible(dataclasses.replace(whole, arrival=whole.arrival - 10**9), planned)
    assert out.cost == model.schedule_latency(whole, policy.planned)
    assert out.cost <= bench.evaluate(whole, "mcsf").cost


def brute_force(inst: Instance) -> float:
    """The least total latency over every combination of start rounds (each request within the
    last arrival + the sum of outputs, after which no optimal schedule runs)."""
    return brute_force_within(inst, int(inst.arrival.max() + inst.output_tokens.sum()))


@pytest.mark.parametrize("seed", range(3))
def test_order_search_and_lns_across_a_gap_of_1e9_rounds(seed):
    # called directly (not through Hindsight): both cut the gap themselves; the order search
    # tries every order of these <= 6 requests, so it reaches the optimum, by brute force on
    # each half (the halves never meet)
    first, second = halves(seed)
    whole = joined(first, second, 10**9)
    k = first.n
    offset = int(whole.arrival[k] - second.arrival[0])
    start = rules.plan_schedule(whole, rules.MCSF())

    def check(plan: np.ndarray) -> None:
        assert np.max(plan[:k] + first.output_tokens) <= np.min(plan[k:])
        assert model.is_feasible(first, plan[:k]) and model.is_feasible(second, plan[k:] - offset)

    check(start)
    tracemalloc.start()  # nothing sized by the 1e9 rounds (before: 8 GB to check the start)
    try:
        found = rules.search_order(whole, start, time_limit=0.5)
        better = rules.improve_schedule(whole, start, time_limit=0.3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    check(found)
    assert model.schedule_latency(whole, found) == brute_force(first) + brute_force(second)
    check(better)
    assert model.schedule_latency(whole, better) <= model.schedule_latency(whole, start)
    with pytest.raises(InvalidInstanceError, match="idle_cut"):  # not a MemoryError
        rules.serial_schedule(whole, np.arange(whole.n))


def test_sparse_feasibility_check_agrees_with_the_memory_profile():
    # model.is_feasible checks the busy rounds only; the reference builds the whole memory and
    # batch profiles round by round: the same answer on random schedules, feasible or not, with
    # and without a batch cap
    rng = np.random.default_rng(7)
    answers = []
    for _ in range(200):
        n = int(rng.integers(1, 6))
        inst = Instance(kv_memory=int(rng.integers(8, 16)), arrival=rng.integers(0, 5, n),
                        prompt_tokens=rng.integers(0, 5, n), output_tokens=rng.integers(1, 5, n),
                        max_batch=None if rng.random() < 0.5 else int(rng.integers(1, 4)))
        start = inst.arrival + rng.integers(-1, 6, n)
        expected = bool(np.all(start >= inst.arrival)) and (
            model.memory_profile(inst, np.maximum(start, 0)).max() <= inst.kv_memory) and (
            inst.max_batch is None
            or model.batch_profile(inst, np.maximum(start, 0)).max() <= inst.max_batch)
        assert model.is_feasible(inst, start) == expected
        answers.append(expected)
    assert 20 <= sum(answers) <= 180  # both answers occur
