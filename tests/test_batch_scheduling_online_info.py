"""No batch-scheduling rule reads a request that has not arrived.

Every rule of ``POLICIES`` is driven twice on the same stream: by the evaluator
(``benchmarks.batch_scheduling.simulate``, whose states carry the whole instance's per-request
arrays) and by a live driver written here, whose states carry only the requests arrived by the
round (arrays cut to the arrived prefix, as a live scheduler would have them). The decisions
(every admit and preempt answer) and the latencies must be identical. ``hindsight`` plans on
every request by design (it is not an online method): it is driven on one all-at-once stream
only, where every request has arrived at round 0.

The rounds of the two drivers follow the evaluator's documented rules (queue order, preemption
to the front by admission, refusals); the driver is a plain list-based loop, not the evaluator.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math

import numpy as np
import pytest

import servopt
from servopt.benchmarks import batch_scheduling as bench
from servopt.core import InvalidInstanceError, Solution
from servopt.instances import batch_scheduling as inst_mod
from servopt.instances.batch_scheduling import Instance
from servopt.solvers import batch_scheduling as rules


def read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def live_run(instance: Instance, policy: rules.Policy, log: list) -> np.ndarray:
    """Simulate with states that hold only the arrived requests; latencies (rounds)."""
    n, M = instance.n, instance.kv_memory
    a, s, o = instance.arrival, instance.prompt_tokens, instance.output_tokens
    assert np.all(np.diff(a) >= 0), "ids must be in arrival order: the arrived ones a prefix"
    cap = instance.max_batch if instance.max_batch is not None else n
    gen, adm, seq = np.zeros(n, np.int64), np.full(n, -1, np.int64), np.zeros(n, np.int64)
    gen_seen, adm_seen = read_only(gen), read_only(adm)
    finish = np.full(n, -1, np.int64)
    waiting: list[int] = []
    running: list[int] = []
    views: dict[int, tuple] = {}
    t = m = done = admissions = 0

    def state(used: int) -> rules.State:
        if m not in views:  # the arrays of the m arrived requests (same objects while m holds)
            views.clear()
            views[m] = (s[:m], instance.predicted_output[:m], a[:m], gen_seen[:m], adm_seen[:m])
        prompt, predicted, arrival, generated, admitted_at = views[m]
        return rules.State(t=t, kv_memory=M, max_batch=instance.max_batch, used=used,
                           waiting=np.array(waiting, dtype=np.int64),
                           running=np.array(running, dtype=np.int64), generated=generated,
                           admitted_at=admitted_at, prompt=prompt, predicted=predicted,
                           arrival=arrival)

    def held() -> int:
        return sum(int(s[i] + gen[i] + 1) for i in running)

    while done < n:
        while m < n and a[m] <= t:
            waiting.append(m)
            m += 1
        if not running and not waiting:
            t = int(a[m])
            continue
        used = held()
        if used > M:
            victims = [int(v) for v in policy.preempt(state(used), used - M)]
            log.append(("preempt", t, victims))
            running = [i for i in running if i not in victims]
            waiting = sorted(victims, key=lambda i: seq[i]) + waiting
            used = held()
        if waiting and len(running) < cap:
            chosen = [int(i) for i in policy.admit(state(used))]
            log.append(("admit", t, chosen))
            for i in chosen:
                need = int(s[i] + gen[i] + 1)
                if i in waiting and used + need <= M and len(running) < cap:
                    waiting.remove(i)
                    running.append(i)
                    admissions += 1
                    adm[i], seq[i] = t, admissions
                    used += need
        for i in running:
            gen[i] += 1
        ended = [i for i in running if gen[i] >= o[i]]
        finish[ended] = t
        running = [i for i in running if gen[i] < o[i]]
        done += len(ended)
        t += 1
    return finish + 1 - a


def evaluator_run(instance: Instance, policy: rules.Policy, log: list) -> np.ndarray:
    """The evaluator's run (whole-stream arrays), logging the same answers."""
    admit, preempt = policy.admit, policy.preempt

    def logged_admit(state: rules.State) -> np.ndarray:
        out = admit(state)
        log.append(("admit", state.t, [int(i) for i in out]))
        return out

    def logged_preempt(state: rules.State, excess: int) -> np.ndarray:
        out = preempt(state, excess)
        log.append(("preempt", state.t, [int(i) for i in out]))
        return out

    policy.admit, policy.preempt = logged_admit, logged_preempt
    return bench.simulate(instance, policy)["latency"]


def burst(n: int, first: int, seed: int, load: float = 1.2) -> Instance:
    """A Poisson stream whose first ``first`` requests all arrive at round 0."""
    base = inst_mod.generate(n, arrivals="poisson", load=load, noise=0.5, seed=seed)
    arrival = base.arrival.copy()
    arrival[:first] = 0
    return dataclasses.replace(base, arrival=arrival)


def late_start(n: int, seed: int) -> Instance:
    """A Poisson stream whose first request arrives at round 3 (nothing to plan at round 0)."""
    base = inst_mod.generate(n, arrivals="poisson", load=1.3, noise=0.5, seed=seed)
    return dataclasses.replace(base, arrival=base.arrival + 3)


def drift(n: int, seed: int) -> Instance:
    """An overloaded Poisson stream (load 2) whose second half has 4x the prompts (a workload
    shift: the mean need of the arrived requests is not the whole stream's until the end)."""
    base = inst_mod.generate(n, arrivals="poisson", load=2.0, noise=0.5, seed=seed)
    prompt = base.prompt_tokens.copy()
    late = slice(n // 2, None)
    prompt[late] = np.minimum(4 * prompt[late], base.kv_memory - base.output_tokens[late])
    return dataclasses.replace(base, prompt_tokens=prompt)


STREAMS = {
    "offline": lambda: inst_mod.generate(40, lengths="azure", noise=0.5, seed=3),
    "offline_capped": lambda: inst_mod.generate(40, noise=0.5, max_batch=4, concurrency=2.0,
                                                seed=4),
    "poisson": lambda: inst_mod.generate(150, arrivals="poisson", load=1.3, lengths="azure",
                                         noise=0.5, seed=1),
    "poisson_drift": lambda: drift(150, seed=0),  # overloaded, prompts x 4 from the middle on
    "burst": lambda: burst(150, 40, seed=2),  # 40 at round 0, then a Poisson stream
    "late_start": lambda: late_start(60, seed=6),  # no request at round 0
}
ONLINE = ("fcfs", "spf", "mcsf", "bid_price", "bid_price_stationary")


@functools.cache
def hindsight(stream: str) -> rules.Hindsight:
    """The hindsight plan of an all-at-once stream, made once (its search is time-limited, so
    two plans may differ; both drivers get copies of this one)."""
    policy = rules.Hindsight(time_limit=3.0)
    policy.prepare(STREAMS[stream]())
    return policy


def prepared(name: str, instance: Instance) -> rules.Policy:
    policy = rules.make_policy(name)
    policy.prepare(instance)
    return policy


def assert_live_equals_evaluator(instance: Instance, policy: rules.Policy) -> list:
    """The prepared ``policy``, copied, driven both ways: identical answers and latencies."""
    live_log: list = []
    eval_log: list = []
    live = live_run(instance, copy.deepcopy(policy), live_log)
    evaluated = evaluator_run(instance, copy.deepcopy(policy), eval_log)
    for k, (x, y) in enumerate(zip(live_log, eval_log, strict=False)):
        assert x == y, f"answer {k}: arrived-only {x} vs evaluator {y}"
    assert len(live_log) == len(eval_log)
    np.testing.assert_array_equal(live, evaluated)
    return eval_log


@pytest.mark.parametrize("keep_from", [rules.KEEP_ORDER_FROM, 0])
@pytest.mark.parametrize("stream", list(STREAMS))
def test_every_rule_decides_the_same_on_the_arrived_requests_only(stream, keep_from, monkeypatch):
    # keep_from 0: every waiting queue goes through KeptOrder (these queues never reach 512)
    monkeypatch.setattr(rules, "KEEP_ORDER_FROM", keep_from)
    instance = STREAMS[stream]()
    policies = [prepared(name, instance) for name in ONLINE]
    if stream == "offline":  # hindsight plans on every request: all at once only
        policies.append(hindsight(stream))
    preempted = 0
    for policy in policies:
        log = assert_live_equals_evaluator(instance, policy)
        preempted += any(kind == "preempt" for kind, *_ in log)
    assert preempted >= 1  # the preempt answers are compared too


def test_the_streams_reach_what_the_old_reads_changed():
    # the burst stream holds 40 requests at round 0 that the bid-price rule cannot all admit
    # (its mode decides whether it skips there), and in the drifting stream the stationary
    # rule's backlog guard is active while the arrived requests' mean need is below the whole
    # stream's (which it used to read)
    instance = STREAMS["burst"]()
    assert np.sum(instance.arrival == 0) == 40 and instance.arrival[40] > 0
    log: list = []
    evaluator_run(instance, prepared("bid_price", instance), log)
    first = log[0]
    assert first[:2] == ("admit", 0) and 0 < len(first[2]) < 40

    stream = STREAMS["poisson_drift"]()
    policy = prepared("bid_price_stationary", stream)
    whole = float(np.mean(stream.prompt_tokens + stream.predicted_output))
    guarded = []
    price_now = policy.price_now

    def watched(state: rules.State) -> float:
        value = price_now(state)
        arrived = state.arrival <= state.t
        mean = float(np.mean((state.prompt + state.predicted)[arrived]))
        guarded.append(value < policy.price and mean < 0.8 * whole)
        return value

    policy.price_now = watched
    bench.simulate(stream, policy)
    assert sum(guarded) > 10


def example_state(arrival: list[int], t: int) -> rules.State:
    # M = 10; running: request 0 holding 5 tokens, 3 rounds left (5, 6, 7). Waiting by score
    # (price 0 -> predicted rounds): A = 1 (prompt 4, 2 rounds) holds 5, 6: 5 + 5 = 10 now but
    # 6 + 6 = 12 next round -> fails. B = 2 (prompt 0, 3 rounds) holds 1, 2, 3: 6, 8, 10 -> fits.
    # Request 3 (if listed) is in the arrays only: waiting holds 1 and 2.
    k = len(arrival)
    return rules.State(t=t, kv_memory=10, max_batch=None, used=5, waiting=np.array([1, 2]),
                       running=np.array([0]), generated=np.array([2, 0, 0, 0][:k]),
                       admitted_at=np.array([0, -1, -1, -1][:k]),
                       prompt=np.array([2, 4, 0, 1][:k]), predicted=np.array([5, 2, 3, 1][:k]),
                       arrival=np.asarray(arrival))


@pytest.mark.parametrize("rule", [lambda: rules.BidPrice(np.zeros(0), tail=0.0),
                                  lambda: rules.BidPriceStationary(price=0.0)])
def test_the_admission_mode_reads_only_arrived_requests_by_hand(rule):
    # all present at round 0; request 3 arrives at round 5. At round 2 nothing has arrived after
    # round 0: the all-at-once mode stops at A (it used to skip to B because request 3, not yet
    # arrived, has arrival 5 > 0). The live arrays (without request 3) give the same answer.
    assert rule().admit(example_state([0, 0, 0, 5], t=2)).tolist() == []
    assert rule().admit(example_state([0, 0, 0], t=2)).tolist() == []
    # request 3 arriving at round 4: at round 4 a request has arrived after round 0, so the
    # online mode skips A (it has waited 4 rounds = 2 x its 2 predicted, not more) and admits B;
    # with request 3 still to come (round 5) the same round stops at A
    assert rule().admit(example_state([0, 0, 0, 4], t=4)).tolist() == [2]
    assert rule().admit(example_state([0, 0, 0, 5], t=4)).tolist() == []
    assert rule().admit(example_state([0, 0, 0, 5], t=5)).tolist() == []  # A waited 5 > 4: blocks


def test_the_backlog_guard_counts_the_arrived_requests_by_hand():
    # M = 100, price 1.0, factor 4. Arrived by round 3: requests 0-2, prompt + predicted 10 each
    # -> 10 fit at once; waiting 60 -> backlog 6 > 4: price 1 x 4 / 6. Request 3 (arrives at
    # round 9, prompt + predicted 990) would make the mean 255 and fit 100 / 255 -> 1 (the floor),
    # backlog 60: price 4 / 60.
    waiting = np.arange(60)  # ids need not exist in the arrays for price_now
    arrays = dict(prompt=np.array([4, 5, 6, 900]), predicted=np.array([6, 5, 4, 90]),
                  arrival=np.array([0, 1, 3, 9]))

    def state(t: int, k: int) -> rules.State:
        return rules.State(t=t, kv_memory=100, max_batch=None, used=0, waiting=waiting,
                           running=np.zeros(0, np.int64), generated=np.zeros(k, np.int64),
                           admitted_at=np.full(k, -1), **{key: v[:k] for key, v in arrays.items()})

    rule = rules.BidPriceStationary(price=1.0)
    assert rule.price_now(state(3, 4)) == pytest.approx(4 / 6)
    assert rule.price_now(state(3, 3)) == pytest.approx(4 / 6)  # the live arrays
    assert rule.price_now(state(9, 4)) == pytest.approx(4 / 60)
    # round 1: requests 0 and 1 (mean 10, the same)
    assert rule.price_now(state(1, 4)) == pytest.approx(4 / 6)


def test_with_no_batch_cap_the_free_slots_are_the_waiting_queue_not_the_stream():
    st = example_state([0, 0, 0, 5], t=2)
    assert st.slots() == 2  # it was n - running = 3: the stream's size read
    assert example_state([0, 0, 0], t=2).slots() == 2
    capped = dataclasses.replace(st, max_batch=3)
    assert capped.slots() == 2 and dataclasses.replace(st, max_batch=1).slots() == 0


def fake_lp(prices: list[float]) -> Solution:
    import pandas as pd

    sol = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                                relaxed=True, backend="test", decision="batch_scheduling")
    sol.prices["kv_memory"] = pd.Series(prices, index=pd.RangeIndex(len(prices), name="round"))
    return sol


def test_the_stationary_rule_from_a_solved_lp_by_hand():
    # prices 0, 2, 4, 0, 0: the last positive one is round 2, so the stationary price is the
    # mean over rounds 0-2 = 2 (it was refused: "price must be one number")
    rule = rules.BidPriceStationary.from_solution(fake_lp([0.0, 2.0, 4.0, 0.0, 0.0]),
                                                  backlog_factor=None)
    assert rule.price == pytest.approx(2.0) and rule.backlog_factor is None
    assert rules.BidPriceStationary.from_solution(fake_lp([0.0, 0.0])).price == 0.0
    with pytest.raises(InvalidInstanceError, match=r"BidPriceStationary\.from_solution needs the LP"):
        mip = fake_lp([1.0])
        mip.relaxed = False
        rules.BidPriceStationary.from_solution(mip)


def test_the_stationary_rule_from_servopt_solve_prices_as_learn_defines():
    # a real LP of the planning instance: the price is the mean of its kv_memory prices up to the
    # last positive round, and the rule runs (all at once: it stops at the first failure)
    inst = inst_mod.generate(12, noise=0.5, seed=7)
    sol = servopt.solve(rules.planning_instance(inst), relax=True)
    mu = sol.prices["kv_memory"].sort_index().to_numpy()
    last = int(np.flatnonzero(mu > 0)[-1])
    assert last > 0
    rule = rules.BidPriceStationary.from_solution(sol)
    assert rule.price == pytest.approx(float(np.mean(mu[: last + 1])))
    assert math.isfinite(bench.evaluate(inst, rule).cost)
