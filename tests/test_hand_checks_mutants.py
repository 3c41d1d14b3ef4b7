"""Hand-checked edge cases found by mutation testing (R35): nine changed lines no test caught.

Each test names the mutant it kills (R35's ids) and takes its expected numbers from a hand trace
or a closed form written out in the test, never from the code under test.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from servopt.benchmarks import batch_scheduling as batch_bench
from servopt.benchmarks import capacity as cap_bench
from servopt.benchmarks import decode_routing as decode_bench
from servopt.benchmarks import expert_placement as expert_bench
from servopt.benchmarks.harness import BELOW_BOUND, Bound, Outcome, outcome_row
from servopt.instances import batch_scheduling as batch_instances
from servopt.instances import capacity as cap_instances
from servopt.instances import decode_routing as decode_instances
from servopt.instances import expert_placement as expert_instances
from servopt.models.capacity import workers_needed
from servopt.solvers import exact
from servopt.solvers.expert_placement import Plan


def one_second_iterations(prompt, output, kv_tokens) -> cap_instances.Instance:
    """A capacity worker whose iterations last exactly 1 s (d0 = 1 s, d1 = 0) and whose budget
    (64), batch cap (8) and chunk (64) never bind on these tiny requests."""
    return cap_instances.Instance(prompt_tokens=prompt, output_tokens=output, arrival_rate=1.0,
                                  kv_tokens=kv_tokens, token_budget=64, batch_cap=8,
                                  prefill_chunk=64, step_overhead_s=1.0, per_token_s=0.0)


@pytest.mark.parametrize("skip", [False, True])
def test_two_preempted_requests_requeue_with_the_older_admission_at_the_head(skip):
    # kills K1 (capacity.simulate: a preempted request appended at the back of the front queue
    # instead of put back at its head). M = 9 KV tokens, all five requests arrive at 0.
    # clock 0: admit 0 (2 tokens), 1 (5), 2 (1): 8 held, 1 free; 3 (3 tokens) does not fit.
    #   Their prefills end at 1 s, each emits its first token.
    # clock 1: three decodes need 3 tokens, 1 free: preempt 2 (the newest; 7 held, 2 free, the
    #   two decodes fit). Front [2]; 2 needs 1 + 1 generated = 2 > 0 free. Ends at 2 s: 0 and 1
    #   have 2 tokens each, 9 held.
    # clock 2: two decodes, 0 free: preempt 1 (6 tokens freed, 3 held). Front [1, 2] (1 at the
    #   head). 1 needs 5 + 2 = 7 > 9 - 3 - 1 = 5 free: it blocks the queue (no skipping).
    # clocks 3, 4: 0 decodes alone; it emits its 5th token at 5 s and leaves (done 5).
    # clock 5: empty: admit 1 (7 tokens) and 2 (2): 0 free, 3 waits. Their recompute prefills
    #   emit 1's 3rd (last) and 2's 2nd (last) token at 6 s (done 6, 6).
    # clock 6: admit 3 (3) and 4 (4), 2 free; first tokens at 7 s. clock 7: 2 decodes fit; at
    #   8 s 3 has its 2 tokens (done 8), 4 has 2 of 3. clock 8: at 9 s 4 is done.
    # (the mutant's front is [2, 1]: 2 fits at clock 2 and is done at 3 s)
    s, o = np.array([2, 5, 1, 3, 4]), np.array([5, 3, 2, 2, 3])
    res = cap_bench.simulate(one_second_iterations(s, o, 9), s, o, np.zeros(5), skip=skip)
    np.testing.assert_array_equal(res.done_times, [5.0, 6.0, 6.0, 8.0, 9.0])
    assert res.preemptions == 2


@pytest.mark.parametrize("skip", [False, True])
def test_an_arrival_exactly_at_an_iteration_start_joins_that_iteration(skip):
    # kills K12 (capacity.simulate: searchsorted(arr, clock, side="left"), so an arrival at exactly
    # the clock is not counted as arrived). 1 s iterations start at 0, 1, 2, ... (exact in
    # floats). Request 0 (s = 1, o = 5) at 0: prefill ends at 1 s, decodes end at 2, 3, 4, 5 s
    # (done 5). Request 1 (s = 1, o = 1) arrives at 2.0 s, the start of the third iteration: it is
    # admitted there and its prefill emits its only token at 3 s (done 3; a step late: 4).
    s, o = np.array([1, 1]), np.array([5, 1])
    res = cap_bench.simulate(one_second_iterations(s, o, 100), s, o, np.array([0.0, 2.0]),
                             skip=skip)
    np.testing.assert_array_equal(res.done_times, [5.0, 3.0])
    assert res.preemptions == 0


def test_workers_needed_at_exact_multiples_of_the_per_worker_rate():
    # kills KB1 (models.capacity.workers_needed: ceil(ratio + 1e-9) instead of ceil(ratio - 1e-9),
    # one worker too many whenever the ratio is a whole number). N = ceil(lambda / ((1 - delta) mu)):
    # 10 / (0.5 x 10) = 2 and 30 / (1 x 10) = 3 exactly (both exact in floats); 30.000001 / 10 is
    # above 3, so 4.
    assert workers_needed(10.0, 10.0, 0.5) == 2
    assert workers_needed(30.0, 10.0, 0.0) == 3
    assert workers_needed(30.000001, 10.0, 0.0) == 4
    assert workers_needed(5.0, 10.0, 0.0) == 1


def test_decode_clock_keeps_an_arrival_exactly_at_a_step_start_after_thousands_of_steps():
    # kills D9 (decode_routing.simulate: the compensation of the clock's sum of step times
    # removed, a plain running sum of milliseconds). The arrival tolerance is 1e-7 of c0, so a
    # step dominated by its KV term (c0 = 0.03 ms, c1 = 0.3 ms per KV token, ~300 ms per step,
    # 1e4 c0) makes it a tiny share of a step, and the plain sum's rounding drift crosses it after
    # a few thousand steps (here 4.5 tolerances short at step 2818, from a float emulation of that
    # sum; the compensated clock is exact here) instead of the ~2e5 steps of a c1 = 0 run.
    # One worker, two slots, no prefill cost. Request 0 (prompt P = 1000) runs alone for N steps:
    # step k (from 0) holds P + k KV tokens and lasts c0 + c1 (P + k) ms, so step N starts at
    # S_N = N c0 + c1 (N P + N (N - 1) / 2) ms. Request 1 (prompt 1, output 1) arrives exactly
    # then, joins step N (P + N + 1 KV tokens) and emits its only token at its end:
    # (S_N + c0 + c1 (P + N + 1)) / 1000 s. A step late it would be ~1 step (~1.15 s) later.
    n_steps, prompt = 2818, 1000
    c0, c1 = Fraction("0.03"), Fraction("0.3")
    start_ms = n_steps * c0 + c1 * (n_steps * prompt + Fraction(n_steps * (n_steps - 1), 2))
    end_s = (start_ms + c0 + c1 * (prompt + n_steps + 1)) / 1000
    requests = pd.DataFrame({"arrival_s": [0.0, float(start_ms / 1000)],
                             "prompt_tokens": [prompt, 1], "output_tokens": [n_steps + 10, 1]})
    inst = decode_instances.Instance(workers=1, slots=2, kv_capacity=10**6, step_ms=float(c0),
                                     ms_per_kv_token=float(c1), requests=requests)
    res = decode_bench.simulate(inst, "round_robin")
    assert res["first_t"][1] == pytest.approx(float(end_s), abs=1e-9)
    assert res["finish_t"][1] == pytest.approx(float(end_s), abs=1e-9)
    # request 0 emits one token a step, its first in step 0: N + 10 steps, none preempted
    assert res["metrics"]["steps"] == n_steps + 10
    assert res["metrics"]["preemptions"] == 0


def test_batch_makespan_rounds_counts_from_round_0_not_from_the_first_arrival():
    # kills B10 (batch_scheduling.evaluate: makespan_rounds = finish.max() + 1 - arrival.min()).
    # One request arriving at round 3 with 2 output tokens and ample memory runs in rounds 3 and 4
    # (one token each) and finishes at the end of round 4: makespan_rounds = 4 + 1 = 5 (the round
    # after the last finish, counted from round 0); latency 4 + 1 - 3 = 2, first token 1 round
    # after arrival; throughput 2 tokens / (4 + 1 - 3) rounds = 1.
    inst = batch_instances.Instance(kv_memory=100, arrival=np.array([3]),
                                    prompt_tokens=np.array([5]), output_tokens=np.array([2]))
    m = batch_bench.evaluate(inst, "fcfs").metrics
    assert m["makespan_rounds"] == 5.0
    assert m["makespan"] == 5.0
    assert m["mean_latency"] == 2.0
    assert m["mean_ttft"] == 1.0
    assert m["throughput"] == 1.0


def test_expert_max_load_is_the_mean_over_layers_of_each_layer_s_max():
    # kills E2 (expert_placement.evaluate: max_load = the max over all layers and GPUs). 2 layers,
    # 2 GPUs x 1 slot, no replication: each GPU holds one expert. Next-window loads [4, 2] in
    # layer 0 and [1, 1] in layer 1: layer maxima 4 and 1, so max_load = (4 + 1) / 2 = 2.5,
    # makespan_tokens = cost = 4 + 1 = 5 (no migration), mean_load = (3 + 1) / 2 = 2.
    loads = np.array([[[4.0, 2.0], [1.0, 1.0]],   # planned window
                      [[4.0, 2.0], [1.0, 1.0]]])  # next (scored) window
    inst = expert_instances.Instance(loads=loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=1)
    out = expert_bench.evaluate(inst, "no_replication", detail=False)
    assert out.metrics["max_load"] == 2.5
    assert out.metrics["mean_load"] == 2.0
    assert out.metrics["makespan_tokens"] == 5.0
    assert out.cost == 5.0


def test_expert_colocated_counts_only_the_same_expert_on_the_same_gpu():
    # kills E9 (expert_placement._colocated keyed by expert + GPU, so (expert 1, GPU 0) and
    # (expert 0, GPU 1) collide). 2 GPUs x 2 slots (slots 0, 1 on GPU 0; 2, 3 on GPU 1).
    # [0, 1, 1, 0]: each GPU holds experts 0 and 1 once: no extra replica shares a GPU, 0.
    # [0, 0, 1, 1]: expert 0 twice on GPU 0 and expert 1 twice on GPU 1: 2 extra replicas.
    # [0, 0, 1, 0]: expert 0 twice on GPU 0 (once on GPU 1, which is no colocation): 1.
    loads = np.array([[[3.0, 1.0]], [[3.0, 1.0]]])
    inst = expert_instances.Instance(loads=loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    for phy2log, expected in [([[0, 1, 1, 0]], 0.0), ([[0, 0, 1, 1]], 2.0), ([[0, 0, 1, 0]], 1.0)]:
        def fixed(instance, phy2log=phy2log):
            return Plan(phy2log=np.array(phy2log))

        assert expert_bench.evaluate(inst, fixed).metrics["colocated"] == expected, phy2log


@pytest.mark.parametrize("cost", [99.99999, 100.0 - 1e-8 * 100.0])
def test_a_cost_below_its_bound_by_more_than_gap_rtol_is_flagged(cost):
    # kills H5 (harness.flag_below_bound with its own tolerance, gap < -1e-6). The only tolerance
    # is relative_gap's GAP_RTOL = 1e-9 of the larger magnitude: 99.99999 against a lower bound of
    # 100 is 1e-7 relative below it (100 x GAP_RTOL), 100 - 1e-6 is 1e-8 below (10 x GAP_RTOL):
    # both are a negative gap and an ok run with it is below_bound.
    row = outcome_row("m", Outcome(cost=cost, wall_s=0.0, status="ok", metrics={}),
                      Bound(value=100.0, kind="lower_bound", wall_s=0.0), "min")
    assert row["gap"] < 0
    assert row["status"] == BELOW_BOUND


def test_a_cost_within_gap_rtol_of_its_bound_is_not_flagged():
    # the other side of H5's line: 100 - 1e-8 is 1e-10 relative below 100, within GAP_RTOL, so
    # the gap is 0 and the run stays ok
    row = outcome_row("m", Outcome(cost=100.0 - 1e-8, wall_s=0.0, status="ok", metrics={}),
                      Bound(value=100.0, kind="lower_bound", wall_s=0.0), "min")
    assert row["gap"] == 0.0
    assert row["status"] == "ok"


def test_expert_bound_stopped_within_the_mip_gap_is_a_mip_bound_not_optimal(monkeypatch):
    # kills E7 (expert_placement.bound: proved = True, so HiGHS's "optimal" within its mip_gap
    # (1e-6) labels the bound optimal). One layer, loads [4, 2, 3, 1], 2 GPUs x 3 slots: the
    # makespan bound is the total over the GPUs, 10 / 2 = 5, and 5 is reached (GPU 0: 4 + 1,
    # GPU 1: 2 + 3). The solver is wrapped to report its dual bound 5e-7 relative below its
    # incumbent with status still "optimal", as HiGHS may at mip_gap 1e-6: that proves no
    # optimum, so the kind is mip_bound; the value stays the makespan bound, 5.
    real = exact.solve_model
    calls = []

    def stopped_within_gap(*args, **kwargs):
        sol = real(*args, **kwargs)
        calls.append(sol.status)
        return dataclasses.replace(sol, bound=sol.objective * (1 - 5e-7))

    loads = np.array([[[4.0, 2.0, 3.0, 1.0]], [[4.0, 2.0, 3.0, 1.0]]])
    inst = expert_instances.Instance(loads=loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=3)
    proved = expert_bench.bound(inst, time_limit=10)
    assert (proved.kind, proved.value) == ("optimal", 5.0)  # the real solve proves 5

    monkeypatch.setattr(exact, "solve_model", stopped_within_gap)
    b = expert_bench.bound(inst, time_limit=10)
    assert calls == ["optimal"]
    assert b.kind == "mip_bound"
    assert b.value == 5.0
