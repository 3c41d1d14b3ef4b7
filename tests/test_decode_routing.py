"""Decode routing: instance rules, simulator against hand-computed traces, router invariants,
model agreement (Pyomo / CVXPY / matrix), hindsight IP against brute force."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.instances import decode_routing as inst_mod
from servopt.models import decode_routing as model
from servopt.solvers import decode_routing as routing
from servopt.solvers import exact


def stream(rows, **kw):
    frame = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"])
    args = dict(workers=2, slots=2, kv_capacity=100, step_ms=1.0, ms_per_kv_token=0.1,
                arrival_unit="step")
    args.update(kw)
    return inst_mod.Instance(requests=frame, **args)


class Fixed(routing.Router):
    """Routes request i to ``plan[i]`` (for hand-computed traces)."""

    name = "fixed"

    def __init__(self, plan):
        self.plan = list(plan)

    def choose(self, view, request):
        return self.plan[request]


# ---------------------------------------------------------------------------------------------
# Instance
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows, kw, message", [
    ([(0, -5, 3)], {}, "prompt_tokens is negative"),
    ([(0, 5, 0)], {}, "output_tokens is 0"),
    ([(1, 5, 3), (0, 5, 3)], {}, "must be sorted"),
    ([(0, 5.5, 3)], {}, "whole number"),
    ([(0, 5, 3)], {"workers": 0}, "workers must be a positive integer"),
    ([(0, 5, 3)], {"slots": 0}, "slots must be a positive integer"),
    ([(0, 5, 3)], {"slots": True}, "slots must be a positive integer"),
    ([(0, 5, 3)], {"kv_capacity": 2.5}, "kv_capacity must be a positive integer"),
    ([(0, 5, 3)], {"step_ms": "fast"}, "step_ms must be a finite number"),
    ([(0, 5, 3)], {"step_ms": float("inf")}, "step_ms must be a finite number"),
    ([(0, 5, 3)], {"prefill_ms_per_token": -0.1}, "prefill_ms_per_token"),
    ([(0, 5, 3)], {"step_ms": 0, "ms_per_kv_token": 0}, "steps take no time"),
    ([(-1, 5, 3)], {}, "arrival_s is negative"),
    ([(0, 5, 3)], {"ms_per_kv_token": -1}, "ms_per_kv_token"),
    ([(0, 5, 3)], {"arrival_unit": "minutes"}, "arrival_unit"),
    ([(float("nan"), 5, 3)], {}, "arrival_s is missing"),
])
def test_bad_streams_get_clear_errors(rows, kw, message):
    with pytest.raises(InvalidInstanceError, match=message):
        stream(rows, **kw)


def test_the_requests_frame_is_read_only_in_the_instance_and_its_copies():
    # the views (prompt, output, ...) read the frame: an edit through .loc/.iloc/.at would
    # bypass validation and change the instance for every method evaluated after it
    import copy
    import pickle

    inst = stream([(0, 5, 3), (1, 7, 2)])
    for other in (inst, copy.deepcopy(inst), pickle.loads(pickle.dumps(inst))):
        for edit in (lambda f: f.loc.__setitem__((0, "prompt_tokens"), 999),
                     lambda f: f.iloc.__setitem__((1, 2), 50),
                     lambda f: f.at.__setitem__((0, "arrival_s"), 3.0)):
            with pytest.raises(ValueError, match="read-only"):
                edit(other.requests)
        assert other.prompt.tolist() == [5, 7] and other.output.tolist() == [3, 2]
    mine = inst.requests.copy()  # the documented way to edit: a copy, then a new instance
    mine.loc[0, "prompt_tokens"] = 9
    assert inst.prompt.tolist() == [5, 7] and mine["prompt_tokens"].tolist() == [9, 7]


@pytest.mark.parametrize("index", [[3, 4], [1, 0]])
def test_a_frame_not_numbered_0_to_n_minus_1_is_refused_not_relabelled(index):
    # a filtered or sorted frame keeps the user's labels; results are labelled 0..n-1 in
    # arrival order, so accepting it would silently misattribute every per-request result
    frame = pd.DataFrame([(0, 5, 3), (1, 7, 2)], columns=["arrival_s", "prompt_tokens",
                                                         "output_tokens"], index=index)
    with pytest.raises(InvalidInstanceError, match=r"index must be 0\.\.1 .*reset_index"):
        inst_mod.Instance(workers=2, slots=2, kv_capacity=100, step_ms=1.0, ms_per_kv_token=0.1,
                          requests=frame)


def test_a_request_larger_than_a_worker_is_infeasible_like_in_batch_scheduling():
    # 99 + 3 = 102 KV tokens > 100 per worker: no routing can ever finish it. Same error class
    # as batch_scheduling's "can never run" (InfeasibleError), not a malformed field.
    with pytest.raises(InfeasibleError, match=r"request 0 needs 102 KV tokens.*kv_capacity=100"):
        stream([(0, 99, 3)])


@pytest.mark.parametrize("generator, kw, message", [
    ("generate_steps", {"requests": 0}, "requests must be a whole number >= 1"),
    ("generate_steps", {"requests": 2.5}, "requests must be a whole number >= 1"),
    ("generate_steps", {"workers": 0}, "workers must be a whole number >= 1"),
    ("generate_steps", {"per_step": 0}, "per_step"),
    ("generate_steps", {"per_step": -1.0}, "per_step"),
    ("generate", {"requests": 10**11}, "at most 10,000,000"),
    ("generate", {"load": 1e308}, "load must be in"),
    ("generate", {"load": 0}, "load must be in"),
    ("generate", {"workers": 0}, "workers must be a whole number >= 1"),
    ("generate", {"slots": 0}, "slots must be a whole number >= 1"),
])
def test_generators_refuse_bad_parameters_by_name(generator, kw, message):
    with pytest.raises(InvalidInstanceError, match=message):
        getattr(inst_mod, generator)(**kw)


def test_empty_stream_and_unknown_column():
    with pytest.raises(InvalidInstanceError, match="no request"):
        stream([])
    frame = pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [3], "output_tokens": [2],
                          "colour": [1]})
    with pytest.raises(InvalidInstanceError, match="unknown column"):
        inst_mod.Instance(workers=1, slots=1, kv_capacity=10, step_ms=1, ms_per_kv_token=0,
                          requests=frame)


def test_json_round_trip_keeps_everything():
    a = inst_mod.generate(requests=50, prediction_error=0.3, seed=3)
    b = inst_mod.Instance.from_json(a.to_json())
    assert b.content_hash() == a.content_hash()
    pd.testing.assert_frame_equal(a.requests, b.requests)
    c = stream([(0, 5, 3), (2, 7, 1)])
    c = inst_mod.Instance(**{**c.__dict__, "block_ids": [[1, 2], [1]]})
    d = inst_mod.Instance.from_json(c.to_json())
    assert d.block_ids == [[1, 2], [1]] and d.arrival_unit == "step"


@pytest.mark.parametrize("workload", ["conversation", "code"])
def test_generator_matches_published_azure_statistics(workload):
    """Lengths reproduce the published Azure 2023 means and medians (within sampling error)."""
    rng = np.random.default_rng(0)
    prompt, output = inst_mod.sample_lengths(workload, 200_000, rng)
    (pm, pmean, _), (om, omean, ocap) = (inst_mod.WORKLOADS[workload][k]
                                         for k in ("prompt", "output"))
    assert abs(np.median(prompt) - pm) / pm < 0.02
    assert abs(prompt.mean() - pmean) / pmean < 0.02
    assert abs(np.median(output) - om) / om < 0.05
    assert abs(output.mean() - omean) / omean < 0.03
    assert output.max() <= ocap and output.min() >= 1


def test_fleet_capacity_hand_calculation():
    # one class: s = 100, o = 3 -> kbar = (3*100 + 3) / 3 = 101 tokens; slots 4, K huge:
    # n = 4, step = 10 + 0.01 * 4 * 101 = 14.04 ms, per worker 4 / (3 * 14.04) per ms.
    cap = inst_mod.fleet_capacity(np.array([100]), np.array([3]), workers=2, slots=4,
                                  kv_capacity=10**6, step_ms=10, ms_per_kv_token=0.01)
    assert cap == pytest.approx(2 * 4 / (3 * 14.04) * 1000)
    # KV binds: K = 202 tokens -> n = 2
    cap = inst_mod.fleet_capacity(np.array([100]), np.array([3]), workers=1, slots=4,
                                  kv_capacity=202, step_ms=10, ms_per_kv_token=0.01)
    assert cap == pytest.approx(2 / (3 * (10 + 0.01 * 202)) * 1000)


def test_generate_load_scales_arrival_rate():
    lo = inst_mod.generate(requests=400, load=0.5, seed=1)
    hi = inst_mod.generate(requests=400, load=1.0, seed=1)
    assert lo.arrival[-1] == pytest.approx(2 * hi.arrival[-1])


@pytest.mark.parametrize("arrivals, scv", [("poisson", 1.0), ("bursty", 4.0)])
def test_generate_offers_load_times_capacity(arrivals, scv):
    """Mean arrival rate = load x fleet capacity of the stream's own lengths; inter-arrival
    squared coefficient of variation 1 (Poisson) or ``burstiness`` (default 4)."""
    inst = inst_mod.generate(requests=20_000, workers=3, load=0.8, arrivals=arrivals, seed=5)
    cap = inst_mod.fleet_capacity(inst.prompt, inst.output, workers=3, slots=64, kv_capacity=131072,
                                  step_ms=10.0, ms_per_kv_token=1e-4)
    gaps = np.diff(inst.arrival)
    assert 1 / gaps.mean() == pytest.approx(0.8 * cap, rel=0.05)
    assert gaps.var() / gaps.mean() ** 2 == pytest.approx(scv, rel=0.15)


# ---------------------------------------------------------------------------------------------
# Simulator against hand-computed traces
# ---------------------------------------------------------------------------------------------
def test_simulator_hand_trace_barrier():
    """r0 (s=10, o=2) and r2 (s=5, o=3) on worker 0, r1 (s=20, o=1) on worker 1.

    step 0: W = (1.5, 2.0) -> 1 + 2.0 = 3.0 ms, idle 0.5; r1 finishes.
    step 1: W = (1.1 + 0.6, 0) -> 2.7 ms, idle 1.7; r0 finishes.
    step 2: W = (0.7, 0) -> 1.7 ms, idle 0.7; r2 finishes.
    """
    inst = stream([(0, 10, 2), (0, 20, 1), (0, 5, 3)])
    res = bench.simulate(inst, Fixed([0, 1, 0]))
    assert res["steps"]["step_ms"] == pytest.approx([3.0, 2.7, 1.7])
    assert res["cost"] == pytest.approx(7.4)
    # all arrive at once: every step is measured; idle fraction per step 0.5/4, 1.7/3.4, 0.7/1.4
    assert res["metrics"]["idle_fraction"] == pytest.approx(np.mean([0.5 / 4, 1.7 / 3.4, 0.7 / 1.4]))
    assert res["metrics"]["idle_fraction_run"] == pytest.approx(2.9 / 8.8)
    assert res["finish_t"] * 1000 == pytest.approx([5.7, 3.0, 7.4])
    # (max W - mean W) / step time: 0.25 / 3.0, 0.85 / 2.7, 0.35 / 1.7
    assert res["metrics"]["imbalance"] == pytest.approx(np.mean([0.25 / 3.0, 0.85 / 2.7, 0.35 / 1.7]))
    # first tokens at 3.0 ms; TPOT after the first: r0 (5.7 - 3.0) / 1, r2 (7.4 - 3.0) / 2 (r1 has
    # one token: none); p99 interpolates between the sorted values (numpy's default, linear)
    m = res["metrics"]
    assert m["tpot_mean_ms"] == pytest.approx((2.7 + 2.2) / 2)
    assert m["tpot_p99_ms"] == pytest.approx(2.2 + 0.99 * 0.5)
    assert m["e2e_p99_s"] * 1000 == pytest.approx(5.7 + 0.98 * 1.7)  # e2e 3.0, 5.7, 7.4 ms
    # round robin makes the same assignment
    assert bench.evaluate(inst, "round_robin").cost == pytest.approx(7.4)


def test_simulator_steady_state_window():
    """Metrics cover the steps from the arrival of request floor(warmup n) to the last arrival.

    r0 (step 0, s=10, o=1), r1 (step 1, s=20, o=1), r2 (step 2, s=10, o=2) on worker 0, r3
    (step 2, s=30, o=1) on worker 1; warmup 0.25 -> window = steps 1..2.
    step 0: W = (1.0, 0): 2.0 ms, idle share 0.5.   step 1: W = (2.0, 0): 3.0 ms, 0.5.
    step 2: W = (1.0, 3.0): 4.0 ms, 2/6.             step 3: W = (1.1, 0): 2.1 ms, 0.5.
    """
    inst = stream([(0, 10, 1), (1, 20, 1), (2, 10, 2), (2, 30, 1)])
    res = bench.simulate(inst, Fixed([0, 0, 0, 1]), warmup=0.25)
    m = res["metrics"]
    assert res["steps"]["step_ms"] == pytest.approx([2.0, 3.0, 4.0, 2.1])
    assert m["window_steps"] == 2
    assert m["idle_fraction"] == pytest.approx((0.5 + 2 / 6) / 2)
    assert m["idle_fraction_run"] == pytest.approx((1.0 + 2.0 + 2.0 + 1.1) / (2.0 + 4.0 + 6.0 + 2.2))
    assert m["throughput_tok_s"] == pytest.approx(3 / 0.007)  # 1 + 2 tokens in 3.0 + 4.0 ms
    # requests arriving in the window: r1 3.0 ms, r2 (5.0 -> 11.1) 6.1 ms, r3 (5.0 -> 9.0) 4.0 ms
    assert m["e2e_mean_s"] * 1000 == pytest.approx((3.0 + 6.1 + 4.0) / 3)
    assert m["imbalance"] == pytest.approx((1.0 / 3.0 + 1.0 / 4.0) / 2)
    assert m["step_ms_mean"] == pytest.approx((3.0 + 4.0) / 2)
    with pytest.raises(InvalidInstanceError, match="warmup"):
        bench.simulate(inst, Fixed([0, 0, 0, 1]), warmup=1.0)


def test_simulator_window_queue_mean_leaves_out_the_warmup_queue():
    """One worker, one slot: r1 waits behind r0 for 2 steps (queue 1, 1), then r2, r3 arrive at
    steps 3, 4 and never wait. warmup 0.5 -> window = steps 3..4: queue_mean 0 (0.4 over the run).

    step 0: r0 (10) 2.0 ms.  step 1: r0 at 11: 2.1.  step 2: r1 (10): 2.0.  steps 3, 4: 2.0 each.
    """
    inst = stream([(0, 10, 2), (0, 10, 1), (3, 10, 1), (4, 10, 1)], workers=1, slots=1)
    res = bench.simulate(inst, Fixed([0, 0, 0, 0]), warmup=0.5)
    m = res["metrics"]
    assert res["steps"]["step_ms"] == pytest.approx([2.0, 2.1, 2.0, 2.0, 2.0])
    assert res["steps"]["queue"].tolist() == [1, 1, 0, 0, 0]
    assert m["window_steps"] == 2
    assert m["queue_mean"] == 0.0
    assert m["step_ms_mean"] == pytest.approx(2.0)
    assert m["e2e_mean_s"] * 1000 == pytest.approx(2.0)  # r2 and r3 only
    full = bench.simulate(inst, Fixed([0, 0, 0, 0]), warmup=0.0)["metrics"]
    assert full["queue_mean"] == pytest.approx(0.4) and full["window_steps"] == 5


def test_simulator_hand_trace_slots_queue_and_late_arrival():
    """One slot per worker: r2 waits for r0 on worker 0; r3 arrives at step 5 after a gap.

    step 0: w0 runs r0 (10), w1 runs r1 (20): 1 + 2.0 = 3.0; r1 done.
    step 1: w0 r0 at 11: 1 + 1.1 = 2.1; r0 done.   step 2: w0 admits r2 (5): 1.5.
    step 3: r2 at 6: 1.6; r2 done.  Then idle until step 5: r3 (s=30, o=1) on w1: 4.0.
    """
    inst = stream([(0, 10, 2), (0, 20, 1), (0, 5, 2), (5, 30, 1)], slots=1)
    res = bench.simulate(inst, Fixed([0, 1, 0, 1]))
    assert res["steps"]["step_ms"] == pytest.approx([3.0, 2.1, 1.5, 1.6, 4.0])
    assert res["steps"]["queue"].tolist() == [1, 1, 0, 0, 0]
    assert res["steps"]["max_running"].max() == 1
    # e2e of r2: arrived at t=0, finished after 4 steps = 8.2 ms
    assert (res["finish_t"][2] - res["arrive_t"][2]) * 1000 == pytest.approx(8.2)


def test_simulator_kv_admission_and_preemption():
    """K = 30: r0 (s=20, o=5) runs; r1 (s=8, o=2) is admitted (20+1 + 8+1 = 30 <= 30).

    step 0: need 21 + 9 = 30. After it r0 holds 21, r1 9: next need 22 + 10 = 32 > 30, so r1
    (newest) is preempted back to the queue with its 1 token and r0 continues alone until it
    ends (4 more steps); then r1 is admitted again (its prompt and token prefilled again) and
    generates its second token in 1 step.
    """
    inst = stream([(0, 20, 5), (0, 8, 2)], workers=1, slots=4, kv_capacity=30,
                  ms_per_kv_token=0.0, step_ms=1.0)
    res = bench.simulate(inst, Fixed([0, 0]))
    assert res["metrics"]["preemptions"] == 1
    assert res["metrics"]["steps"] == 1 + 4 + 1
    assert res["steps"]["max_kv"].max() <= 30
    assert res["finish_t"] * 1000 == pytest.approx([5.0, 6.0])
    # TPOT counts from the first token ever produced (r1's at 1.0 ms, before it was preempted):
    # r0 (5.0 - 1.0) / 4 = 1.0, r1 (6.0 - 1.0) / 1 = 5.0
    assert res["metrics"]["tpot_mean_ms"] == pytest.approx((1.0 + 5.0) / 2)


def test_preempted_request_returns_to_the_head_of_its_queue():
    """As above, plus r2 (s=2, o=1) queued at step 1. r1 is preempted at step 1 back to the
    queue's head, ahead of r2; r1 (8 + 1 kept + 1 tokens over 22 + 1) does not fit, and FCFS
    head-of-line blocking keeps r2 (which would fit) waiting behind it until r0 ends at 5.0 ms;
    then both run and end after step 5 (6.0 ms): r1 had 1 of its 2 tokens. Routing is sticky: r1
    waits on worker 0 although worker 1 stays empty.
    """
    inst = stream([(0, 20, 5), (0, 8, 2), (1, 2, 1)], workers=2, slots=4, kv_capacity=30,
                  ms_per_kv_token=0.0, step_ms=1.0)
    res = bench.simulate(inst, Fixed([0, 0, 0]))
    assert res["metrics"]["preemptions"] == 1
    assert res["finish_t"] * 1000 == pytest.approx([5.0, 6.0, 6.0])
    assert res["steps"]["queue"].tolist() == [0, 2, 2, 2, 2, 0]


def test_second_clock_prefill_and_throughput():
    """Arrivals in seconds; prefill adds p * s on the admission step."""
    frame = pd.DataFrame({"arrival_s": [0.0, 0.0], "prompt_tokens": [100, 100],
                          "output_tokens": [1, 1]})
    inst = inst_mod.Instance(workers=2, slots=1, kv_capacity=1000, step_ms=2.0,
                             ms_per_kv_token=0.01, prefill_ms_per_token=0.05, requests=frame)
    res = bench.simulate(inst, Fixed([0, 0]))
    # step 0: w0 100 tokens -> 1 + 5 = 6 ms work, + 2 = 8 ms; step 1 same for r1.
    assert res["steps"]["step_ms"] == pytest.approx([8.0, 8.0])
    assert res["metrics"]["throughput_tok_s"] == pytest.approx(2 / 0.016)


# ---------------------------------------------------------------------------------------------
# Routers
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(routing.POLICIES))
def test_every_router_assigns_once_sticky_within_capacity(method):
    inst = inst_mod.generate(requests=150, workers=3, slots=6, kv_capacity=12000, load=0.95,
                             seed=2)
    log = []

    class Spy(routing.Router):
        name = "spy"

        def __init__(self, inner):
            self.inner = inner

        def reset(self, instance, seed=0):
            self.inner.reset(instance, seed)

        def on_step(self, view):
            self.inner.on_step(view)

        def route(self, view, ids):
            before = view.worker_of.copy()
            self.inner.route(view, ids)
            changed = np.flatnonzero(before != view.worker_of)
            assert sorted(changed.tolist()) == sorted(ids.tolist())  # only these, each once
            assert np.all(before[before >= 0] == view.worker_of[before >= 0])  # never moved
            log.extend(ids.tolist())

    res = bench.simulate(inst, Spy(routing.make_router(method)))
    assert sorted(log) == list(range(inst.n_requests))
    assert res["metrics"]["completed"] == inst.n_requests
    assert res["steps"]["max_running"].max() <= inst.slots
    assert res["steps"]["max_kv"].max() <= inst.kv_capacity
    assert np.all(res["worker"] >= 0)


def test_simulator_refuses_double_and_out_of_range_assignment():
    inst = stream([(0, 5, 1), (0, 5, 1)])

    class Twice(routing.Router):
        def route(self, view, ids):
            view.assign(int(ids[0]), 0)
            view.assign(int(ids[0]), 1)

    with pytest.raises(InvalidInstanceError, match="twice"):
        bench.simulate(inst, Twice())

    class Lazy(routing.Router):
        def route(self, view, ids):
            view.assign(int(ids[0]), 0)

    with pytest.raises(InvalidInstanceError, match="unrouted"):
        bench.simulate(inst, Lazy())
    with pytest.raises(InvalidInstanceError, match=r"workers are 0\.\.1"):
        bench.simulate(inst, Fixed([5, 0]))


class View:
    """A hand-set fleet state for checking one routing choice."""

    def __init__(self, running, queued, kv_running, kv_queued):
        self.workers = len(running)
        self.running, self.queued = np.array(running), np.array(queued)
        self.kv_running, self.kv_queued = np.array(kv_running), np.array(kv_queued)


def test_baseline_rules_on_hand_examples():
    v = View(running=[3, 1, 1, 2], queued=[0, 1, 0, 0], kv_running=[100, 50, 80, 20],
             kv_queued=[0, 60, 0, 0])
    rr = routing.RoundRobin()
    rr.reset(None)
    assert [rr.choose(v, 0) for _ in range(6)] == [0, 1, 2, 3, 0, 1]
    assert routing.JoinShortestQueue().choose(v, 0) == 2  # counts 3,2,1,2
    # vLLM score 4 * waiting + running = 3, 5, 1, 2 -> worker 2
    assert routing.LeastOutstanding().choose(v, 0) == 2
    assert routing.LeastKV().choose(v, 0) == 3  # KV 100, 110, 80, 20
    tie = View([1, 1], [0, 0], [10, 10], [0, 0])
    assert routing.JoinShortestQueue().choose(tie, 0) == 0  # lowest index on ties
    assert routing.LeastOutstanding().choose(tie, 0) == 0  # first in scan order (strict <)
    # vLLM weighs waiting 4x: 1 waiting (score 4) loses to 3 running (score 3)
    w = View(running=[0, 3], queued=[1, 0], kv_running=[0, 0], kv_queued=[0, 0])
    assert routing.LeastOutstanding().choose(w, 0) == 1
    assert routing.JoinShortestQueue().choose(w, 0) == 0
    # least-KV counts the queued prompts: running KV 40, 0, 20, 10 + queued 0, 50, 0, 25
    q = View(running=[1, 0, 1, 1], queued=[0, 1, 0, 1], kv_running=[40, 0, 20, 10],
             kv_queued=[0, 50, 0, 25])
    assert routing.LeastKV().choose(q, 0) == 2  # totals 40, 50, 20, 35
    # ties on total KV (30, 20, 20, 20) go to the lowest index
    kv_tie = View([1, 1, 1, 1], [0, 0, 0, 1], [30, 20, 20, 5], [0, 0, 0, 15])
    assert routing.LeastKV().choose(kv_tie, 0) == 1
    lo_tie = View(running=[2, 1, 1], queued=[0, 0, 0], kv_running=[0, 0, 0], kv_queued=[0, 0, 0])
    assert routing.LeastOutstanding().choose(lo_tie, 0) == 1  # scores 2, 1, 1: first minimum


def test_random_router_is_uniform_over_all_workers_and_seeded():
    v = View([0] * 4, [0] * 4, [0] * 4, [0] * 4)
    picks = []
    for seed in (3, 3, 4):
        rnd = routing.RandomRouter()
        rnd.reset(None, seed=seed)
        picks.append([rnd.choose(v, 0) for _ in range(4000)])
    assert picks[0] == picks[1] and picks[0] != picks[2]  # the seed fixes the draws
    share = np.bincount(picks[0], minlength=4) / 4000
    assert share == pytest.approx([0.25] * 4, abs=0.03)  # every worker, ~1/G each


def test_power_of_two_picks_lower_of_two_samples():
    v = View([0] * 4, [0] * 4, [40, 30, 20, 10], [0] * 4)
    p2c = routing.PowerOfTwoKV()
    p2c.reset(None, seed=5)
    rng = np.random.default_rng(5)
    for _ in range(50):
        a, b = rng.choice(4, size=2, replace=False)
        expected = b if v.kv_running[b] < v.kv_running[a] else a
        assert p2c.choose(v, 0) == expected
    picks = [p2c.choose(v, 0) for _ in range(400)]
    assert 0 not in picks  # the most loaded worker never wins a pair
    # load is running KV + queued prompts: totals 40, 50, 20, 35 (worker 2 wins every pair)
    q = View([0] * 4, [0] * 4, [40, 0, 20, 10], [0, 50, 0, 25])
    p2c.reset(None, seed=1)
    rng = np.random.default_rng(1)
    total = q.kv_running + q.kv_queued
    for _ in range(50):
        a, b = rng.choice(4, size=2, replace=False)
        assert p2c.choose(q, 0) == (b if total[b] < total[a] else a)
    # equal loads: the first of the two drawn workers
    tie = View([0] * 4, [0] * 4, [7] * 4, [0] * 4)
    p2c.reset(None, seed=2)
    rng = np.random.default_rng(2)
    for _ in range(50):
        assert p2c.choose(tie, 0) == rng.choice(4, size=2, replace=False)[0]


def test_survival_estimate_matches_empirical_tail():
    rng = np.random.default_rng(0)
    out = rng.geometric(1 / 50, 20000)
    s = routing.survival(out, np.zeros(0, dtype=np.int64), 200, prior_weight=0.0)
    for t in (1, 10, 50, 100):
        assert s[t] == pytest.approx(np.mean(out > t), abs=0.01)
    # censored running requests (alive at age 30) raise the tail
    cens = routing.survival(out[:100], np.full(200, 30), 200, prior_weight=0.0)
    raw = routing.survival(out[:100], np.zeros(0, dtype=np.int64), 200, prior_weight=0.0)
    assert cens[29] > raw[29]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def small_epoch(seed=0, n=3, G=3, H=4):
    rng = np.random.default_rng(seed)
    return model.Epoch(base_load=rng.uniform(0, 300, (G, H)), profile=rng.uniform(10, 120, (n, H)),
                       demand=np.array([1.0, 2.0, 1.5][:n]), kv_need=rng.uniform(5, 50, n),
                       free_slots=np.array([1.0, 3.0, 2.0][:G]), free_kv=np.full(G, 120.0),
                       ms_per_kv_token=0.01, discount=0.8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epoch_lp_pyomo_cvxpy_matrix_agree_on_objective_and_prices(seed):
    epoch = small_epoch(seed)
    pyo_sol = exact.solve_model(model.build_epoch(epoch, relax=True))
    cvx_sol = exact.solve_cvxpy(model.build_epoch_cvxpy(epoch))
    mat = model.epoch_matrices(epoch)
    res = routing.solve_matrix(mat)
    assert pyo_sol.objective == pytest.approx(cvx_sol.objective, rel=1e-6, abs=1e-7)
    assert res["objective"] == pytest.approx(pyo_sol.objective, rel=1e-6, abs=1e-7)
    for name in ("worker_load", "slots", "kv_memory", "assign"):
        a = pyo_sol.prices[name].to_numpy()
        b = cvx_sol.prices[name].to_numpy()
        c = res["price"][mat.rows[name]]
        assert a == pytest.approx(b, abs=1e-6), name
        assert c == pytest.approx(a, abs=1e-6), name
    # the load prices of each horizon step sum to its weight gamma^h c1 (the epigraph's dual)
    rho = pyo_sol.prices["worker_load"].to_numpy().reshape(3, 4)
    assert rho.sum(axis=0) == pytest.approx(epoch.weights, abs=1e-9)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("base_load", [[np.nan, 90.0], [0.0, 0.0]], "base_load must be finite and >= 0"),
    ("free_kv", [np.inf, 5000.0], "free_kv must be finite and >= 0"),
    ("free_slots", [-1.0, 2.0], "free_slots must be finite and >= 0"),
    ("profile", [["a", "b"]], "profile must be an array of numbers"),
    ("ms_per_kv_token", "0.01", "ms_per_kv_token must be a finite number"),
    ("discount", 1.5, "discount must be in"),
])
def test_epoch_data_is_checked_in_the_users_terms(field, value, message):
    # before: NaN reached HiGHS (IndexError inside pyomo), a string ms_per_kv_token a numpy
    # UFuncTypeError, an infinite free KV solved silently
    data = dict(base_load=[[100.0, 90.0], [0.0, 0.0]], profile=[[40.0, 41.0]], demand=[1.0],
                kv_need=[20.0], free_slots=[2.0, 2.0], free_kv=[100.0, 100.0],
                ms_per_kv_token=0.01, discount=0.9)
    model.Epoch(**data)  # the valid epoch builds
    data[field] = value
    with pytest.raises(InvalidInstanceError, match=message):
        model.Epoch(**data)


def test_epoch_ip_brute_force():
    epoch = model.Epoch(base_load=[[100, 90, 80], [50, 60, 70], [0, 0, 0]],
                        profile=[[40, 41, 0], [10, 11, 12], [70, 0, 0], [5, 6, 7]],
                        demand=np.ones(4), kv_need=[20, 5, 30, 5], free_slots=[2, 2, 1],
                        free_kv=[100, 100, 100], ms_per_kv_token=1.0, discount=0.9)
    res = routing.solve_matrix(model.epoch_matrices(epoch, relax=False))
    best = math.inf
    for plan in itertools.product(range(3), repeat=4):
        counts = np.bincount(plan, minlength=3)
        if np.any(counts > epoch.free_slots):
            continue
        load = epoch.base_load.copy()
        for i, g in enumerate(plan):
            load[g] += epoch.profile[i]
        best = min(best, float(epoch.weights @ load.max(axis=0)))
    assert res["objective"] == pytest.approx(best)
    pyo_sol = exact.solve_model(model.build_epoch(epoch))
    assert pyo_sol.objective == pytest.approx(best)


def brute_force_hindsight(inst):
    best = math.inf
    for plan in itertools.product(range(inst.workers), repeat=inst.n_requests):
        best = min(best, bench.simulate(inst, Fixed(plan))["cost"])
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hindsight_ip_equals_brute_force_over_simulated_assignments(seed):
    rng = np.random.default_rng(seed)
    n = 6
    arrival = np.sort(rng.integers(0, 4, n))
    rows = list(zip(arrival, rng.integers(5, 40, n), rng.integers(1, 5, n), strict=True))
    inst = stream(rows, workers=3, slots=10, kv_capacity=10_000, step_ms=0.5,
                  prefill_ms_per_token=0.01)
    assert model.hindsight_exact(inst)
    best = brute_force_hindsight(inst)
    sol = exact.solve(inst)
    assert sol.objective == pytest.approx(best)
    res = routing.solve_matrix(model.hindsight_matrices(inst))
    assert res["objective"] == pytest.approx(best)
    b = bench.bound(inst)
    assert b.kind == "optimal" and b.value == pytest.approx(best)
    # the blocked relaxation and the simple bound stay below the optimum
    assert bench.bound(inst, step_block=3).value <= best + 1e-9
    assert bench.simple_lower_bound(inst) <= best + 1e-9
    assert bench.busy_lower_bound(inst) <= best + 1e-9
    # the simulator realises the IP's assignment at the IP's objective
    worker = sol.decisions["worker"].to_numpy()
    assert bench.simulate(inst, Fixed(worker))["cost"] == pytest.approx(best)


def test_hindsight_ip_with_binding_slots_by_hand():
    """Four one-token requests of 100, 10, 10, 10 tokens at step 0, 2 workers of 2 slots.

    Without slots the optimum is {100} | {10, 10, 10}: 1 + 0.1 * 100 = 11 ms; two slots force
    {100, 10} | {10, 10}: 1 + 0.1 * 110 = 12 ms (the simulator realises it too).
    """
    inst = stream([(0, 100, 1), (0, 10, 1), (0, 10, 1), (0, 10, 1)], workers=2, slots=2,
                  kv_capacity=1000)
    assert model.binding(inst) == {"slots": True, "kv_memory": False}
    assert exact.solve(inst).objective == pytest.approx(12.0)
    assert routing.solve_matrix(model.hindsight_matrices(inst))["objective"] == pytest.approx(12.0)
    assert bench.simulate(inst, Fixed([0, 0, 1, 1]))["cost"] == pytest.approx(12.0)
    roomy = dataclasses.replace(inst, slots=3)
    assert exact.solve(roomy).objective == pytest.approx(11.0)
    # KV rows count s + j + 1 tokens per active request (the simulator's admission rule): at step
    # 0 r0 (s=10) and r1 (s=20) need 11 + 21 = 32, at step 1 r0 needs 12
    two = stream([(0, 10, 2), (0, 20, 1)], workers=2, slots=10, kv_capacity=32)
    assert model.activity(two).kv_need.tolist() == [11, 12, 21]
    assert model.binding(two) == {"slots": False, "kv_memory": False}
    assert model.binding(dataclasses.replace(two, kv_capacity=31))["kv_memory"]


def test_hindsight_lp_pyomo_and_cvxpy_agree():
    inst = stream([(0, 10, 3), (0, 30, 2), (1, 20, 4), (2, 5, 2)], workers=2, slots=10,
                  kv_capacity=1000)
    lp = exact.solve_model(model.build(inst, relax=True, symmetry=False), relax=True)
    cvx = exact.solve(inst, backend="cvxpy", symmetry=False)
    assert lp.objective == pytest.approx(cvx.objective, rel=1e-7)
    assert lp.prices["step_load"].to_numpy() == pytest.approx(
        cvx.prices["step_load"].to_numpy(), abs=1e-6)
    # by default both fix the same symmetry (x_ig = 0 for g > i), so the two backends agree
    # (on the README's steps stream they differed: 7523.71 against 7522.59)
    steps = inst_mod.generate_steps(requests=20)
    pyomo_default = exact.solve(steps, relax=True, backend="pyomo").objective
    assert pyomo_default == pytest.approx(exact.solve(steps, backend="cvxpy").objective, rel=1e-7)
    # the matrix form (the default path) is the same model, with rows labelled the same way
    matrix, pyomo = exact.solve(inst, relax=True), exact.solve(inst, relax=True, backend="pyomo")
    assert matrix.info["form"] == "matrix"
    assert matrix.objective == pytest.approx(pyomo.objective, rel=1e-9)
    for family in ("assign", "step_load", "step_floor"):
        assert matrix.prices[family].index.equals(pyomo.prices[family].index)
    assert exact.solve(steps, relax=True).objective == pytest.approx(pyomo_default, rel=1e-9)
    assert pyomo_default >= exact.solve(steps, backend="cvxpy", symmetry=False).objective - 1e-6


def test_hindsight_with_binding_slots_has_rows_and_seconds_clock_is_refused():
    inst = stream([(0, 10, 3), (0, 30, 2), (0, 20, 4)], workers=2, slots=1, kv_capacity=1000)
    m = model.build(inst)
    assert hasattr(m, "slots") and not model.hindsight_exact(inst)
    assert bench.bound(inst).kind == "lower_bound"
    # one request more than a worker's slots already binds (all on one worker would queue one)
    pair = stream([(0, 10, 3), (0, 30, 2)], workers=2, slots=1, kv_capacity=1000)
    assert model.binding(pair)["slots"] and bench.bound(pair).kind == "lower_bound"
    sec = inst_mod.generate(requests=20, seed=0)
    with pytest.raises(InvalidInstanceError, match="decode steps"):
        model.build(sec)


def test_bound_is_below_every_method():
    # HiGHS proves this stream's optimum in about a second, so the bound checked is the optimum
    # itself (seed 4 ran into the 10 s limit and was checked against a looser dual bound)
    inst = inst_mod.generate_steps(requests=8, workers=2, seed=3)
    b = bench.bound(inst, time_limit=10)
    assert b.kind in ("optimal", "mip_bound")
    for method in routing.POLICIES:
        assert bench.evaluate(inst, method).cost >= b.value - 1e-6


def test_busy_bound_hand_values_and_validity():
    # two requests far apart on a seconds clock: the fleet is busy exactly their service times
    # 3 steps of 10 ms + 0.001 ms x (100, 101, 102) KV tokens = 30.303 ms each, disjoint
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_tokens": [100, 100],
                          "output_tokens": [3, 3]})
    inst = inst_mod.Instance(workers=2, slots=2, kv_capacity=1000, step_ms=10.0,
                             ms_per_kv_token=0.001, requests=frame)
    assert bench.busy_lower_bound(inst) == pytest.approx(2 * 30.303)
    assert bench.evaluate(inst, "least_kv").cost == pytest.approx(2 * 30.303)
    # with prefill (0.5 ms a prompt token, once): each is busy 30.303 + 50 ms (R49: no hand
    # value had p > 0, and a prefill term dropped from request_work passed every test)
    pre = dataclasses.replace(inst, prefill_ms_per_token=0.5)
    assert bench.busy_lower_bound(pre) == pytest.approx(2 * 80.303)
    assert bench.evaluate(pre, "least_kv").cost == pytest.approx(2 * 80.303)
    # a lone request on the step clock: 3 c0 + c1 (10 + 11 + 12) + p x 10 = 3 + 3.3 + 5 = 11.3 ms,
    # every bound tight: the simulator's cost and the IP's optimum
    lone = dataclasses.replace(stream([(0, 10, 3)], workers=1), prefill_ms_per_token=0.5)
    for low in (bench.busy_lower_bound(lone), bench.simple_lower_bound(lone),
                model.cheap_bound(lone), bench.evaluate(lone, "least_kv").cost,
                exact.solve(lone).objective):
        assert low == pytest.approx(11.3)
    # overlapping: [0, 30.303) and [10, 40.303) ms -> union 40.303 ms
    inst = dataclasses.replace(inst, requests=frame.assign(arrival_s=[0.0, 0.010]))
    assert bench.busy_lower_bound(inst) == pytest.approx(40.303)
    # step clock: steps [0, 3) and [2, 5) -> 5 steps; 5 c0 + work / G
    rows = [(0, 10, 3), (2, 10, 3)]
    inst = stream(rows)
    work = 2 * 0.1 * (30 + 3)
    assert bench.busy_lower_bound(inst) == pytest.approx(5 * 1.0 + work / 2)
    # nested: [0, 10) holds [1, 3) and [2, 5): 10 steps, not 10 + 2 (the union, not pairwise)
    inst = stream([(0, 10, 10), (1, 10, 2), (2, 10, 3)])
    work = 0.1 * ((10 * 10 + 45) + (2 * 10 + 1) + (3 * 10 + 3))
    assert bench.busy_lower_bound(inst) == pytest.approx(10 * 1.0 + work / 2)
    assert bench.evaluate(inst, "least_kv").cost >= 10 * 1.0 + work / 2 - 1e-9
    # slots bind: 5 requests of 3 steps on 1 worker x 2 slots need ceil(15 / 2) = 8 steps at
    # least; work 0.1 x 5 x (3 x 10 + 0 + 1 + 2) = 16.5 ms -> 8 + 16.5 (the union gives only 3 steps)
    five = stream([(0, 10, 3)] * 5, workers=1, slots=2)
    assert bench.simple_lower_bound(five) == pytest.approx(8 * 1.0 + 16.5)
    assert bench.busy_lower_bound(five) == pytest.approx(8 * 1.0 + 16.5)
    # the simulator: pairs run 3 steps of 1 + 0.1 x 2 x (10 + j), the last alone 1 + 0.1 x (10 + j)
    assert bench.evaluate(five, "least_kv").cost == pytest.approx(2 * 9.6 + 6.3)
    # valid for every router on streams where slots and KV bind, with prefill, both clocks
    for seed in range(3):
        sec = inst_mod.generate(requests=60, workers=3, load=1.1, slots=4, kv_capacity=9000,
                                prefill_ms_per_token=0.002, arrivals="bursty", seed=seed)
        low = bench.busy_lower_bound(sec)
        assert low >= bench.simple_lower_bound(sec)
        for method in ("round_robin", "jsq", "least_kv", "bid_price"):
            assert bench.evaluate(sec, method).cost >= low - 1e-6
    steps = inst_mod.generate_steps(requests=30, workers=2, slots=3, kv_capacity=5000, seed=1)
    for method in ("round_robin", "least_kv", "bid_price"):
        assert bench.evaluate(steps, method).cost >= bench.busy_lower_bound(steps) - 1e-6


def test_gap_table_runs():
    from servopt import gap_table

    # a stream whose optimum HiGHS proves in about a second (12 requests, seed 1 took 10 s or more);
    # at the default mip_gap 1e-4, HiGHS 1.13-1.15 stop 5e-7 short of proving it (mip_bound)
    inst = inst_mod.generate_steps(requests=8, workers=2, seed=3)
    table = gap_table(inst, bound_kw={"mip_gap": 1e-6})
    assert set(table["bound_kind"]) == {"optimal"}
    assert list(table["method"]) == list(bench.DEFAULT_METHODS)
    assert (table["gap"] >= -1e-9).all()
    assert {"idle_fraction", "throughput_tok_s", "router_us"} <= set(table.columns)


def test_from_trace_frame_with_load_and_blocks():
    frame = pd.DataFrame({"arrival_s": [5.0, 6.0, 8.0], "prompt_tokens": [100, 5000, 30],
                          "output_tokens": [10, 0, 4], "block_ids": [[1], [1, 2], []]})
    inst = inst_mod.from_trace(frame, workers=2, slots=4, kv_capacity=1000, rate_scale=2.0,
                               clip_to_kv=True)
    assert inst.arrival.tolist() == [0.0, 0.5, 1.5]
    assert inst.output.tolist() == [10, 1, 4]  # a 0-token reply still occupies one step
    assert inst.prompt.tolist() == [100, 999, 30]  # clipped to fit the worker's KV
    assert inst.block_ids == [[1], [1, 2], []]
    # max_requests keeps the first requests; outputs are capped at half the KV, prompts fill the rest
    long = frame.assign(output_tokens=[10, 800, 4])
    cut = inst_mod.from_trace(long, workers=2, slots=4, kv_capacity=1000, max_requests=2,
                              clip_to_kv=True)
    assert cut.n_requests == 2 and cut.block_ids == [[1], [1, 2]]
    assert cut.output.tolist() == [10, 500] and cut.prompt.tolist() == [100, 500]
    loaded = inst_mod.from_trace(frame, workers=2, slots=4, kv_capacity=1000, load=0.5,
                                 clip_to_kv=True)
    cap = inst_mod.fleet_capacity(loaded.prompt, loaded.output, workers=2, slots=4,
                                  kv_capacity=1000, step_ms=10.0, ms_per_kv_token=1e-4)
    assert (len(frame) - 1) / loaded.arrival[-1] == pytest.approx(0.5 * cap)


def test_trace_cell_replays_the_seeds_block_at_the_asked_load():
    from servopt.instances import traces

    path = traces.shared_trace("azure2023_code.csv")
    if path is None:
        pytest.skip("shared trace azure2023_code.csv not available")
    frame = traces.read_azure(path)
    inst = bench.make_cell(kind="trace", requests=40, seed=2, workers=2, load=0.5)
    block = frame.iloc[80:120]  # seed 2 of blocks of 40 consecutive requests
    assert inst.prompt.tolist() == block["prompt_tokens"].tolist()
    assert inst.output.tolist() == np.maximum(block["output_tokens"], 1).tolist()
    gaps = np.diff(block["arrival_s"].to_numpy())
    assert np.diff(inst.arrival) == pytest.approx(gaps * inst.arrival[-1] / gaps.sum())
    cap = inst_mod.fleet_capacity(inst.prompt, inst.output, workers=2, **bench.FLEET)
    assert 39 / inst.arrival[-1] == pytest.approx(0.5 * cap)


def test_bid_price_plans_on_the_light_worker_and_solves_per_refresh_not_per_request():
    # worker 0 holds a long request; a burst of small requests should go to worker 1 first
    rows = [(0, 5000, 400)] + [(1, 100, 50)] * 6
    inst = stream(rows, workers=2, slots=8, kv_capacity=20_000, ms_per_kv_token=0.01)
    for router in (routing.BidPrice(refresh=4, gate=True, pick="kv"),
                   routing.BidPrice(pick="price", gate=True, central=True),
                   routing.BidPrice(gate=True), routing.BidPrice()):
        res = bench.simulate(inst, router)
        heavy = res["worker"][0]
        if not router.gate:  # an empty fleet: every price is 0, the tie goes to worker 0
            assert heavy == 0
        light = 1 - heavy
        # the first burst request goes to the light worker, and most of the burst does
        assert res["worker"][1] == light
        assert np.sum(res["worker"][1:] == light) >= 4
        assert router.solves <= (3 if router.gate else 0)
    with pytest.raises(InvalidInstanceError, match="pick"):
        routing.BidPrice(pick="best")
    with pytest.raises(InvalidInstanceError, match="gate=True"):
        routing.BidPrice(pick="price")
    with pytest.raises(InvalidInstanceError, match="discount"):
        routing.BidPrice(discount=1.5)
    with pytest.raises(InvalidInstanceError, match="prediction_prior"):
        routing.BidPrice(prediction_prior=0.0)
    for bad in (-0.5, float("nan")):
        with pytest.raises(InvalidInstanceError, match="prediction_error"):
            bench.make_cell(kind="hindsight", requests=20, prediction_error=bad)
        with pytest.raises(InvalidInstanceError, match="prediction_error"):
            inst_mod.generate(requests=20, prediction_error=bad)


def test_step_floor_hand_values_and_validity():
    """Sizes at one step 5, 4, 3, 1 on G = 2 workers: max(13/2, 5, 4 + 3) = 7 (= the optimum)."""
    inst = stream([(0, 50, 1), (0, 40, 1), (0, 30, 1), (0, 10, 1)], workers=2, slots=10,
                  kv_capacity=1000)
    assert model.step_floor(inst).tolist() == pytest.approx([7.0])
    assert brute_force_hindsight(inst) == pytest.approx(1.0 + 7.0)
    # with 3 workers: max(13/3, 5, 3 + 1) = 5
    three = stream([(0, 50, 1), (0, 40, 1), (0, 30, 1), (0, 10, 1)], workers=3, slots=10,
                   kv_capacity=1000)
    assert model.step_floor(three).tolist() == pytest.approx([5.0])
    # blocks: the floor of a block of steps is at most the optimum's load in the block
    inst = inst_mod.generate_steps(requests=6, workers=2, seed=3)
    opt = routing.solve_matrix(model.hindsight_matrices(inst))
    assert model.step_floor(inst).sum() + inst.step_ms * len(model.activity(inst).steps) <= (
        opt["objective"] + 1e-6)


# ---------------------------------------------------------------------------------------------
# Bid-price router: predictions, discount, the marginal barrier price
# ---------------------------------------------------------------------------------------------
def test_prediction_spread_hand_values():
    # prior 0.5 with 20 pseudo-observations, plus log-ratios 0.1 and -0.1
    assert routing.prediction_spread(np.array([0.1, -0.1])) == pytest.approx(
        math.sqrt((20 * 0.25 + 0.02) / 22))
    assert routing.prediction_spread(np.zeros(10**6)) == pytest.approx(0.02)  # the floor


def test_forecast_with_noisy_prediction_matches_monte_carlo():
    """Alive probability of a request with prediction p = 40, age j: P(o > j + h | o > j)."""
    fc = routing._Forecaster(horizon=30, prior_mean=128.0)
    fc.sigma = 0.5
    rng = np.random.default_rng(0)
    o = 40.0 * np.exp(rng.normal(0.0, 0.5, 2_000_000))
    for j in (0, 35, 60):  # before, near and past the prediction
        prof = fc.profile(np.array([100.0]), np.array([float(j)]), np.array([40.0]))[0]
        h = np.arange(30)
        alive = np.array([np.mean(o[o > j + 0.5] > j + k + 0.5) for k in h])
        assert prof == pytest.approx((100 + j + h) * alive, abs=0.01 * (100 + j + 30))
    # exact predictions (sigma -> 0): alive exactly while j + h < p
    fc.sigma = 1e-3
    prof = fc.profile(np.array([100.0]), np.array([3.0]), np.array([10.0]))[0]
    assert prof[:7] == pytest.approx(100 + 3 + np.arange(7), rel=1e-6)
    assert prof[7:] == pytest.approx(0.0, abs=1e-6)


def _two_worker_view(discount):
    """w0 runs r0 (s=1000, 1 of 2 tokens done: it leaves after this step), w1 runs r1 (s=600,
    1 of 50 done); r2 (s=500, 50 tokens, predicted exactly) arrives."""
    frame = pd.DataFrame({"arrival_s": [0, 0, 1], "prompt_tokens": [1000, 600, 500],
                          "output_tokens": [2, 50, 50], "predicted_tokens": [2, 50, 50]})
    inst = inst_mod.Instance(workers=2, slots=8, kv_capacity=10_000, step_ms=1.0,
                             ms_per_kv_token=0.01, requests=frame, arrival_unit="step")
    view = bench.Fleet(inst)
    view.step = 1
    view.run_ids = np.array([0, 1])
    view.run_worker = np.array([0, 1])
    view.run_generated = np.array([1, 1])
    view.running = np.array([1, 1])
    view.kv_running = np.array([1001, 601])
    view.worker_of[:2] = [0, 1]
    view._routable = (2, 3)
    router = routing.BidPrice(discount=discount, prediction_prior=0.02)
    router.reset(inst)
    return inst, view, router


def test_bid_price_marginal_barrier_price_by_hand():
    """Loads at h = 0, 1, ...: w0 (1001, 0, ...), w1 (601, 602, ...); r2 adds (500, 501, ...).

    On w0 it raises only this step's barrier, 1001 -> 1501 (+500 tokens); on w1 it raises step 0
    by 100 (1001 -> 1101) and every later step h by 500 + h (w1 is the barrier there). With
    gamma = 0.8 the rule picks w0 (least-KV picks w1: 601 < 1001); with gamma = 0.05 the later
    steps hardly count (100 + 0.05 * 501 + ... < 500) and it picks w1.
    """
    h = np.arange(16)
    for gamma, expected in ((0.8, 0), (0.05, 1)):
        _, view, router = _two_worker_view(gamma)
        router.route(view, np.array([2]))
        assert view.worker_of[2] == expected
        w1_price = 0.01 * (100 + np.sum(gamma ** h[1:] * (500 + h[1:])))
        assert (0.01 * 500 < w1_price) == (expected == 0)
    _, view, _ = _two_worker_view(0.8)
    assert routing.LeastKV().choose(view, 2) == 1


def test_bid_price_ties_among_the_cheapest_go_to_the_fewest_kv():
    """w0 (s=1000), w1 (s=900) and w3 (s=3000) run requests that leave after this step; w2 runs
    one (s=600) with 49 steps to go. A new r4 (s=100, 50 tokens) fits under the coming barriers
    (3001 now, w2's 602 + h later) on w0 and w1: price 0 on both; on w2 (least-KV, 601 tokens) it
    raises every later step by 100 + h, on w3 this step's by 100. Of the two free workers the rule
    takes the one with fewer KV tokens, w1 (901 < 1001), not the lower index.
    """
    frame = pd.DataFrame({"arrival_s": [0, 0, 0, 0, 1], "prompt_tokens": [1000, 900, 600, 3000, 100],
                          "output_tokens": [2, 2, 50, 2, 50], "predicted_tokens": [2, 2, 50, 2, 50]})
    inst = inst_mod.Instance(workers=4, slots=8, kv_capacity=10_000, step_ms=1.0,
                             ms_per_kv_token=0.01, requests=frame, arrival_unit="step")
    view = bench.Fleet(inst)
    view.step = 1
    view.run_ids, view.run_worker = np.arange(4), np.arange(4)
    view.run_generated, view.running = np.ones(4, dtype=np.int64), np.ones(4, dtype=np.int64)
    view.kv_running = np.array([1001, 901, 601, 3001])
    view.worker_of[:4] = np.arange(4)
    view._routable = (4, 5)
    router = routing.BidPrice(discount=0.8, prediction_prior=0.02)
    router.reset(inst)
    assert routing.LeastKV().choose(view, 4) == 2
    router.route(view, np.array([4]))
    assert view.worker_of[4] == 1


def _burst_view():
    """An empty 2-worker fleet; r0 (s=300), r1 (s=300), r2 (s=600) arrive in the same step."""
    frame = pd.DataFrame({"arrival_s": [0, 0, 0], "prompt_tokens": [300, 300, 600],
                          "output_tokens": [10, 10, 10]})
    inst = inst_mod.Instance(workers=2, slots=8, kv_capacity=10_000, step_ms=1.0,
                             ms_per_kv_token=0.01, requests=frame, arrival_unit="step")
    view = bench.Fleet(inst)
    view._routable = (0, 3)
    calls = []
    assign = view.assign
    view.assign = lambda i, g: (calls.append(i), assign(i, g))
    return inst, view, calls


@pytest.mark.parametrize("router, expected", [
    # largest first: r2 -> w0 (empty fleet, lowest index); r0 -> w1 (least KV, under the barrier
    # 600 + h); r1 on w1 would raise the later steps by h, on w0 by 300 + h: w1. KV 600 / 600.
    (routing.BidPrice(), [1, 1, 0]),
    (routing.LeastKVSorted(), [1, 1, 0]),
    # arrival order: r0 -> w0, r1 -> w1, then r2 raises either barrier alike: w0. KV 900 / 300.
    (routing.BidPrice(order="arrival"), [0, 1, 0]),
    (routing.LeastKV(), [0, 1, 0]),
])
def test_a_steps_arrivals_are_placed_largest_first_and_queued_in_arrival_order(router, expected):
    inst, view, calls = _burst_view()
    router.reset(inst)
    router.on_step(view)
    router.route(view, np.arange(3))
    assert view.worker_of.tolist() == expected
    assert calls == [0, 1, 2]  # assigned in arrival order: each worker's queue stays FIFO
    assert [list(q) for q in view.queues] == [[i for i in range(3) if expected[i] == g] for g in (0, 1)]


def test_sorted_placement_ties_keep_arrival_order_and_count_queued_prompts():
    # equal prompts: arrival order; w0 already holds a queued prompt of 100 tokens
    frame = pd.DataFrame({"arrival_s": [0, 1, 1, 1], "prompt_tokens": [100, 200, 200, 250],
                          "output_tokens": [5, 5, 5, 5]})
    inst = inst_mod.Instance(workers=3, slots=8, kv_capacity=10_000, step_ms=1.0,
                             ms_per_kv_token=0.01, requests=frame, arrival_unit="step")
    view = bench.Fleet(inst)
    view._routable = (0, 1)
    view.assign(0, 0)
    view._routable = (1, 4)
    routing.LeastKVSorted().route(view, np.arange(1, 4))
    # r3 (250) -> w1 (0 KV, lowest index of w1/w2), r1 (200) -> w2, r2 (200) -> w0 (100 < 250)
    assert view.worker_of.tolist() == [0, 2, 0, 1]
    with pytest.raises(InvalidInstanceError, match="order"):
        routing.BidPrice(order="random")


def test_lp_gate_keeps_least_kv_inside_the_plan_shares():
    """bid_price_lp: least-KV among the workers whose LP share is not used up (a request uses
    (s + 1) / unit of it); when every share is used up, every worker is open again."""
    inst, view, _ = _two_worker_view(0.8)
    router = routing.make_router("bid_price_lp")
    router.reset(inst)
    router.share, router.routed, router.unit = np.array([1.5, 0.0]), np.zeros(2), 250.5
    assert routing.LeastKV().choose(view, 2) == 1  # KV 1001 vs 601
    assert router._pick(view, 2) == 0  # only worker 0 has plan share left
    assert router.routed.tolist() == [2.0, 0.0]  # r2 (s = 500) used 501 / 250.5 units
    assert router._pick(view, 2) == 1  # all used up: least-KV over every worker


def test_epoch_ip_routes_the_arrival_away_from_the_long_request():
    # r0 holds 5000+ KV tokens on its worker for a long time; the IP's x row for r1 is one-hot
    inst = stream([(0, 5000, 400), (1, 100, 50)], workers=2, slots=8, kv_capacity=20_000,
                  ms_per_kv_token=0.01)
    res = bench.simulate(inst, routing.make_router("epoch_ip"))
    assert res["worker"][1] == 1 - res["worker"][0]


def test_bid_price_auto_discount_is_exp_of_minus_arrivals_per_worker_per_step():
    # two requests arrive at each of steps 0..9 on two workers: one per worker per step
    rows = [(k, 50, 30) for k in range(10) for _ in range(2)]
    inst = stream(rows, workers=2, slots=64, kv_capacity=100_000)
    router = routing.BidPrice()
    bench.simulate(inst, router)
    assert router.gamma == pytest.approx(math.exp(-1.0))
    assert router.weights[:3] == pytest.approx(math.exp(-1.0) ** np.arange(3))


def test_step_model_from_public_figures_and_scale_invariance():
    from servopt.benchmarks import decode_routing_step_model as study

    # KV bytes per token = 2 x layers x KV heads x head dim x 2 bytes
    assert study.step_model("Llama-2-7B", "A100-80GB-SXM")["kv_bytes"] == 2 * 32 * 32 * 128 * 2
    m13 = study.step_model("Llama-2-13B", "A100-80GB-SXM")
    assert m13["kv_bytes"] == 800 * 1024  # the vLLM paper's 800 KB per token of a 13B model
    assert m13["c1"] == pytest.approx(819200 / 2.039e12 * 1e3)
    assert m13["c0"] == pytest.approx(13.02e9 * 2 / 2.039e12 * 1e3)
    m70 = study.step_model("Llama-3-70B", "H100-80GB-SXM", tp=4)
    assert m70["kv_bytes"] == 2 * 80 * 8 * 128 * 2
    assert m70["c0"] / m70["c1"] == pytest.approx(70.6e9 * 2 / 327680)
    # scaling c0 and c1 together changes no decision and stretches time by the same factor
    runs = []
    for a in (1.0, 3.0):
        inst = inst_mod.generate(requests=150, workers=3, load=0.9, slots=8, kv_capacity=40_000,
                                 step_ms=10.0 * a, ms_per_kv_token=2e-4 * a, seed=3)
        runs.append(bench.simulate(inst, routing.BidPrice()))
    assert np.array_equal(runs[0]["worker"], runs[1]["worker"])
    assert runs[1]["metrics"]["steps"] == runs[0]["metrics"]["steps"]
    assert runs[1]["metrics"]["e2e_mean_s"] == pytest.approx(3 * runs[0]["metrics"]["e2e_mean_s"])


@pytest.mark.parametrize("mip_bound, kind", [(-1.0, "lower_bound"), (math.nan, "lower_bound"),
                                             (+1.0, "mip_bound")])
def test_bound_keeps_the_better_of_a_time_limited_mip_and_the_busy_bound(monkeypatch, mip_bound, kind):
    """A MIP stopped at its time limit may prove less than the busy-time bound: bound() must then
    report the busy bound (mip_bound is an offset from it here, nan = no bound at all)."""
    inst = inst_mod.generate_steps(requests=8, workers=2, seed=4)
    busy = bench.busy_lower_bound(inst)
    unit = model.work_unit(inst)  # bound() builds the matrices in work units and reads them back in ms
    monkeypatch.setattr(routing, "solve_matrix", lambda mat, **kw: {
        "status": "time_limit", "objective": math.nan, "bound": (busy + mip_bound) / unit})
    got = bench.bound(inst)
    assert got.kind == kind
    assert got.value == pytest.approx(busy + 1.0 if kind == "mip_bound" else busy)


@pytest.mark.parametrize(("change", "message"), [
    ({"output_tokens": [10, float("nan"), 5]}, "row 1: output_tokens"),
    ({"output_tokens": [10, 3, -5]}, "row 2: output_tokens"),
    ({"prompt_tokens": [10.7, 20, 30]}, "row 0: prompt_tokens"),
    ({"arrival_s": [0.0, float("inf"), 2.0]}, "row 1: arrival_s"),
    # unsorted: it had said "arrival_s is negative (-0.5)", a value the frame does not hold
    ({"arrival_s": [1.0, 0.5, 2.0]}, r"row 1 arrives at 0.5 s, before row 0 at 1 s"),
])
def test_from_trace_refuses_a_frame_it_would_repair_silently(change, message):
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "prompt_tokens": [10, 20, 30],
                          "output_tokens": [10, 3, 5]} | change)
    with pytest.raises(InvalidInstanceError, match=message):
        inst_mod.from_trace(frame, workers=2)


@pytest.mark.parametrize("kw", [{"workers": "2"}, {"rate_scale": "2"}, {"max_requests": 2.5}])
def test_from_trace_refuses_options_of_the_wrong_type(kw):
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_tokens": [10, 20], "output_tokens": [1, 2]})
    with pytest.raises(InvalidInstanceError, match=next(iter(kw))):
        inst_mod.from_trace(frame, **kw)


def test_policies_values_are_accepted_as_methods():
    # DESIGN: evaluate takes a POLICIES name or the method; the values are classes or factories
    inst = inst_mod.generate_steps(requests=30, workers=3, seed=0)
    for name in ("round_robin", "jsq", "least_kv", "bid_price_lp"):
        assert bench.evaluate(inst, routing.POLICIES[name]).cost == bench.evaluate(inst, name).cost


def test_outputs_beyond_a_million_tokens_are_refused_not_simulated_for_hours():
    frame = pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [10], "output_tokens": [10**9]})
    with pytest.raises(InvalidInstanceError, match="at most 1,000,000"):
        inst_mod.Instance(workers=1, slots=1, kv_capacity=2 * 10**9, step_ms=10.0,
                          ms_per_kv_token=1e-4, requests=frame)


def test_a_router_that_edits_the_fleet_arrays_fails_instead_of_changing_the_fleet():
    class InPlace(routing.Router):
        name = "in_place"

        def choose(self, view, request):
            load = view.kv_running
            load += view.kv_queued  # meant as a local sum: would corrupt the simulator's state
            return int(np.argmin(load))

    inst = inst_mod.generate_steps(requests=30, workers=3, seed=0)
    with pytest.raises(ValueError, match="read-only"):
        bench.evaluate(inst, InPlace())


def test_assign_refuses_a_boolean_worker():
    class Truthy(routing.Router):
        name = "truthy"

        def choose(self, view, request):
            return True

    with pytest.raises(InvalidInstanceError, match="router chose worker True"):
        bench.evaluate(inst_mod.generate_steps(requests=5, workers=3, seed=0), Truthy())


def test_a_numpy_worker_out_of_range_is_named_by_value_and_dtype():
    # np.int64(7)'s repr is "7" under numpy 1.26 and "np.int64(7)" under 2.x: the message names
    # it the same way on both (as the request-id message does)
    class Far(routing.Router):
        name = "far"

        def choose(self, view, request):
            return np.int64(7)

    with pytest.raises(InvalidInstanceError,
                       match=r"router chose worker 7 \(numpy int64\); workers are 0\.\.2"):
        bench.evaluate(inst_mod.generate_steps(requests=5, workers=3, seed=0), Far())


def test_every_fleet_array_a_router_sees_is_read_only_and_writable_again_after():
    # the fleet state a router reads (solvers/decode_routing.py's Router docs): none may be
    # written while it chooses; the simulator's own updates between steps still work
    names = ("worker_of", "running", "queued", "kv_running", "kv_queued", "run_ids", "run_worker",
             "run_generated")
    seen = {name: set() for name in names}

    class Probe(routing.Router):
        name = "probe"

        def choose(self, view, request):
            for name in names:
                seen[name].add(bool(getattr(view, name).flags.writeable))
            return int(request) % view.workers

    inst = inst_mod.generate_steps(requests=30, workers=3, seed=0)
    probe = bench.evaluate(inst, Probe())
    assert seen == {name: {False} for name in names}
    # round robin by request id: the same schedule as the built-in round robin's cost
    assert probe.cost == bench.evaluate(inst, "round_robin").cost


def test_a_router_cannot_change_the_instance_for_later_evaluations():
    # the request frame is a DataFrame (its columns could be rebound); routers are not given it
    # (it holds the true output lengths: benchmarks.decode_routing.RouterInstance)
    inst = inst_mod.generate_steps(requests=30, workers=3, seed=0)
    before = bench.evaluate(inst, "least_kv").cost

    class Doubler(routing.LeastKV):
        name = "doubler"

        def reset(self, instance, seed=0):
            super().reset(instance, seed)
            instance.requests["output_tokens"] *= 2

    with pytest.raises(InvalidInstanceError, match=r"Doubler \('doubler'\): its reset\(\) read "
                                                   r"instance.requests"):
        bench.evaluate(inst, Doubler())
    assert bench.evaluate(inst, "least_kv").cost == before


def test_hindsight_infeasibility_names_only_the_resource_that_is_short():
    # 3 requests at step 0 on 1 worker with 2 slots and 100 KV tokens: slots are short, KV is
    # not (3 x (5 + 3) = 24 tokens at most); with 3 slots and 20 KV tokens only KV is short
    frame = pd.DataFrame({"arrival_s": [0.0, 0.0, 0.0], "prompt_tokens": [5, 5, 5],
                          "output_tokens": [3, 3, 3]})

    def inst(slots, kv):
        return inst_mod.Instance(workers=1, slots=slots, kv_capacity=kv, step_ms=10.0,
                                 ms_per_kv_token=1e-4, requests=frame, arrival_unit="step")

    slots_short = model.explain_infeasible(inst(2, 100))
    assert "slots" in slots_short and "KV tokens" not in slots_short
    kv_short = model.explain_infeasible(inst(3, 20))
    assert "KV tokens for 1 x 20" in kv_short and "slots" not in kv_short


@pytest.mark.parametrize("workers", [2, 3])
def test_bound_at_a_loose_mip_gap_never_exceeds_the_optimum(workers):
    # HiGHS stops "optimal" within mip_gap with its incumbent above the optimum: the bound must be
    # the dual bound (mip_bound), labelled optimal only when proved; the optimum from mip_gap=0.
    # On both streams HiGHS's incumbent at mip_gap=0.01 is above the optimum (by 0.08 and 0.06 ms),
    # so the incumbent reported as the bound fails here (14 requests on 3 workers, seeds 2 and 3,
    # showed it too, in 110 s instead of 10 s)
    inst = inst_mod.generate_steps(requests=6, workers=workers, seed=0)
    optimum = exact.solve(inst, mip_gap=0.0).objective
    b = bench.bound(inst, mip_gap=0.01)
    assert b.value <= optimum + 1e-6
    if b.kind == "optimal":
        assert b.value == pytest.approx(optimum, rel=1e-9)
    assert bench.bound(inst, mip_gap=0.0).value == pytest.approx(optimum, rel=1e-9)


def test_a_hindsight_model_too_large_to_build_is_refused_and_bound_falls_back(monkeypatch):
    # 3200 requests x 64 workers were 45M nonzeros and 3 GB before HiGHS even started; the limit
    # counts one entry per (request, active step, worker) and row family, before building
    from servopt.benchmarks import decode_routing as bench_dr

    inst = inst_mod.generate_steps(requests=6, workers=2, seed=0)
    act = model.activity(inst)
    entries = len(act.request) * 2 * (1 + sum(model.binding(inst).values()))
    assert exact.solve(inst, max_entries=entries).status == "optimal"
    for kw in ({}, {"backend": "pyomo"}):
        with pytest.raises(InvalidInstanceError, match=f"{entries:,} nonzeros"):
            exact.solve(inst, max_entries=entries - 1, **kw)
    monkeypatch.setattr(model, "MAX_ENTRIES", entries - 1)
    fallback = bench_dr.bound(inst)
    assert fallback.kind == "lower_bound"
    assert fallback.value == pytest.approx(bench_dr.busy_lower_bound(inst))


@pytest.mark.parametrize("step_block", [1, 4, 16])
def test_the_size_limit_counts_no_more_than_the_models_real_nonzeros(step_block):
    # a blocked model is far smaller than the unblocked one; counting it by request-steps
    # refused it 13x too early, and a bad step_block must still raise, not fall back
    from servopt.benchmarks import decode_routing as bench_dr

    inst = inst_mod.generate_steps(requests=40, workers=3, seed=1)
    real = model.hindsight_matrices(inst, relax=True, step_block=step_block).A.nnz
    model.hindsight_matrices(inst, relax=True, step_block=step_block, max_entries=real)
    with pytest.raises(InvalidInstanceError, match="step_block"):
        bench_dr.bound(inst, step_block=0)


def test_from_trace_refuses_requests_larger_than_the_kv_unless_told_to_clip():
    # kv 1000: request 1 needs 5000 + 10 (too long), request 2 needs 10 + 800 (fits, but its
    # output is above half the KV: the clipping rule used to cut it to 500 too)
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "prompt_tokens": [100, 5000, 10],
                          "output_tokens": [10, 10, 800]})
    with pytest.raises(InfeasibleError, match=r"1 of 3 requests .* row 1, needs 5,010 .*clip_to_kv=True"):
        inst_mod.from_trace(frame, workers=2, kv_capacity=1000)
    clipped = inst_mod.from_trace(frame, workers=2, kv_capacity=1000, clip_to_kv=True)
    assert clipped.prompt.tolist() == [100, 990, 10]  # only the request that does not fit
    assert clipped.output.tolist() == [10, 10, 800]
    assert clipped.name == "trace (1 request clipped to the KV)"
    fits = inst_mod.from_trace(frame.iloc[[0, 2]], workers=2, kv_capacity=1000)
    assert fits.name == "trace" and fits.output.tolist() == [10, 800]


def test_fleet_capacity_charges_the_barrier_the_largest_worker_prefill():
    # R20: with a prefill term the capacity charged each worker the mean prefill, but a prompt is
    # prefilled whole on one worker and the step waits for the slowest: "load 0.7" grew every
    # router's queue. Hand check: G = 2, every prompt 100 tokens, 2 output tokens, 2 slots, KV
    # ample: kbar = (2 x 100 + 1) / 2 = 100.5, n = 2, a worker admits Poisson(n / E[o] = 1)
    # requests per step, so P = 100 E[max(N1, N2)], N ~ Poisson(1): sum_k (1 - F(k)^2).
    from scipy import stats

    e_max = sum(1 - stats.poisson.cdf(k, 1.0) ** 2 for k in range(60))
    step = 10 + 0.01 * 2 * 100.5 + 0.05 * 100 * e_max
    cap = inst_mod.fleet_capacity(np.full(50, 100), np.full(50, 2), workers=2, slots=2,
                                  kv_capacity=10**6, step_ms=10, ms_per_kv_token=0.01,
                                  prefill_ms_per_token=0.05)
    assert cap == pytest.approx(2 * 2 / (2 * step) * 1000, rel=0.01)


def test_fleet_capacity_with_prefill_is_what_the_simulator_sustains():
    # The evaluator's saturated throughput (every router at 3x the offered capacity; the middle
    # half of the completions) on Azure code lengths, 8 workers, 0.02 ms per prompt token:
    # 70.7 req/s with JSQ and least-KV alike; the mean-prefill capacity said 157 (R20).
    inst = inst_mod.generate(workload="code", requests=6000, workers=8, load=3.0,
                             prefill_ms_per_token=0.02, seed=0)
    cap = inst_mod.fleet_capacity(inst.prompt, inst.output, workers=8, slots=64,
                                  kv_capacity=131072, step_ms=10.0, ms_per_kv_token=1e-4,
                                  prefill_ms_per_token=0.02)
    finish = np.sort(bench.simulate(inst, "least_kv")["finish_t"])
    lo, hi = len(finish) // 4, 3 * len(finish) // 4
    assert cap == pytest.approx((hi - lo) / (finish[hi] - finish[lo]), rel=0.1)
