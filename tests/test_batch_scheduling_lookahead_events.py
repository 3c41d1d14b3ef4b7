"""Batch scheduling: the exact-lookahead schedules jump over rounds where nothing can change.

``lookahead_schedule`` used to look at every round (``t += 1``): a request of 1e6 output tokens
is 1e6 rounds, so ``servopt solve`` on 30 such requests ran for minutes inside ``time_estimate``
before refusing the model. It now goes from one event (arrival, completion, admission) to the
next. The schedules must be those of stepping every round: here they are compared with a
brute-force reference that steps every round and checks each admission against the memory held
in every future round, counted out token by token (no ``fits``)."""

from __future__ import annotations

import numpy as np
import pytest

from servopt.instances.batch_scheduling import Instance
from servopt.models import batch_scheduling as model


def make(kv, prompts, outputs, arrivals=None, max_batch=None) -> Instance:
    n = len(prompts)
    return Instance(kv_memory=kv, arrival=np.zeros(n, int) if arrivals is None else arrivals,
                    prompt_tokens=prompts, output_tokens=outputs, max_batch=max_batch)


def reference_schedule(inst: Instance, priority: np.ndarray, skip: bool) -> np.ndarray:
    """Every round in turn; a waiting request (by priority, arrival, index) joins when the
    memory held in each round from now to the end of everything, counted per request, stays
    within M and the batch has room; stop at the first that does not (``skip``: pass it)."""
    a, s, o = inst.arrival, inst.prompt_tokens, inst.output_tokens
    cap = inst.max_batch or inst.n
    start = np.full(inst.n, -1)
    order = sorted(range(inst.n), key=lambda i: (priority[i], a[i], i))
    horizon = int(a.max() + o.sum()) + 2

    def held(rounds: np.ndarray, i: int, p: int) -> np.ndarray:
        return np.where((rounds >= p) & (rounds <= p + o[i] - 1), s[i] + rounds - p + 1, 0)

    for t in range(horizon):
        rounds = np.arange(t, horizon)
        for i in order:
            if start[i] >= 0 or a[i] > t:
                continue
            running = [j for j in range(inst.n) if start[j] >= 0 and start[j] + o[j] - 1 >= t]
            memory = sum((held(rounds, j, start[j]) for j in running), np.zeros(len(rounds)))
            if len(running) < cap and np.all(memory + held(rounds, i, t) <= inst.kv_memory):
                start[i] = t
            elif not skip:
                break
    assert np.all(start >= 0)
    return start


def random_instance(rng: np.random.Generator) -> Instance:
    n = int(rng.integers(1, 9))
    o = rng.integers(1, int(rng.integers(2, 25)), n)
    s = rng.integers(0, int(rng.integers(1, 25)), n)
    kind = int(rng.integers(0, 4))
    if kind == 0:  # all at round 0
        a = np.zeros(n, int)
    elif kind == 1:  # spread
        a = rng.integers(0, 30, n)
    elif kind == 2:  # bursts with idle gaps between them
        a = np.cumsum(rng.integers(0, 2, n) * rng.integers(0, 40, n))
    else:  # a few arrival rounds, many ties
        a = rng.integers(0, 4, n) * 20
    return make(int((s + o).max() + rng.integers(0, 50)), s, o, a,
                None if rng.random() < 0.5 else int(rng.integers(1, 4)))


@pytest.mark.parametrize("seed", range(4))
def test_schedules_match_a_round_by_round_reference(seed):
    rng = np.random.default_rng(seed)
    jumped = 0
    for _ in range(100):
        inst = random_instance(rng)
        o = inst.output_tokens
        kind = int(rng.integers(0, 3))  # by output, by a price with ties, by a random score
        priority = (o.astype(float), rng.integers(0, 3, inst.n).astype(float),
                    rng.random(inst.n))[kind]
        for skip in (False, True):
            got = model.lookahead_schedule(inst, priority, skip=skip)
            want = reference_schedule(inst, priority, skip)
            assert got.tolist() == want.tolist(), (inst.kv_memory, inst.arrival.tolist(),
                                                   inst.prompt_tokens.tolist(), o.tolist(),
                                                   inst.max_batch, priority.tolist(), skip)
            # a start with nothing arriving or ending in that round: the jump landed on it
            ends = set((want + o).tolist())
            jumped += sum(1 for p in want.tolist() if p not in ends and p not in set(inst.arrival.tolist()))
    assert jumped > 0  # the comparison reached starts that only a computed delay finds


def test_a_start_between_events_by_hand():
    # M = 10**6. Request 0 (s 400,000, o 200,000) starts at 0 and holds 600,000 in its last
    # round 199,999. Request 1 (s 310,000, o 300,000; output longer, so second) started at p
    # holds 310,001 + (199,999 - p) then: it fits once 600,000 + 510,000 - p <= 10**6, i.e.
    # p = 110,000 (after 0 ends it is alone: 610,000). No arrival or completion at 110,000.
    inst = make(10**6, [400_000, 310_000], [200_000, 300_000])
    assert model.greedy_schedule(inst).tolist() == [0, 110_000]
    # skipping: the same (nothing else waits)
    assert model.lookahead_schedule(inst, inst.output_tokens, skip=True).tolist() == [0, 110_000]
    # request 2 (s 1, o 10, shortest, so first in line) arrives at 50,000 and joins then (0
    # holds 450,010 + its 11 at most); request 1 still needs 600,000 + 310,001 + 149,999 >
    # 10**6 in 0's last round. 2 ends at 50,009 (an event), and 1 still starts at 110,000.
    inst = make(10**6, [400_000, 310_000, 1], [200_000, 300_000, 10], [0, 0, 50_000])
    assert model.greedy_schedule(inst).tolist() == [0, 110_000, 50_000]


def test_long_outputs_take_a_few_admission_checks_not_one_per_round(monkeypatch):
    # 30 requests of 10**5 output tokens (the CLI repro has 10**6): 10**5 rounds per wave.
    # Stepping every round made one fits() call per round (millions in all); jumping makes a
    # few per event. Counted, not timed.
    calls = []
    original = model.fits

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) > 10_000:
            raise AssertionError("fits() called once per round")
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "fits", counting)
    rng = np.random.default_rng(0)
    prompts = rng.integers(1, 41, 30)
    outputs = np.full(30, 10**5)
    inst = make(int(6 * (prompts + outputs).mean()), prompts, outputs)
    start = model.greedy_schedule(inst)
    assert model.is_feasible(inst, start)
    # ties in output go by index: the first six fit at round 0 (6 peaks within M = 6 mean
    # peaks), the seventh starts once the six's 6 peaks + its own s + 10**5 - d fit in their
    # last round, d = (sum of the 7 first peaks) - M: before the first six end (no event there)
    M = inst.kv_memory
    assert start[:6].tolist() == [0] * 6
    assert start[6] == int((prompts[:7] + 10**5).sum()) - M
    assert 0 < start[6] < 10**5
    assert len(calls) < 1_000
    warm = model.warm_start_schedule(inst)  # 18 lookahead schedules
    assert model.is_feasible(inst, warm)
    assert len(calls) < 10_000
