"""Decode routing: hand-checked values where a changed line went unnoticed before (found by mutation testing).

Each test names the mutant it kills; the expected numbers are hand-traced decode steps.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_decode_routing import Fixed, stream

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as inst_mod


def test_preemption_stops_as_soon_as_the_step_fits_exactly():
    # kills: the preemption loop's stop test 'sum (s + j + 1) <= K' turned into '< K'.
    # K = 30, one worker: r0 (s=20, o=2), r1 (s=6, o=2), r2 (s=1, o=2) are admitted at step 0
    # (21 + 7 + 2 = 30 <= 30). Step 1 needs 22 + 8 + 3 = 33 > 30: the newest, r2, is preempted, and
    # the rest needs exactly 30 = K, so preemption stops there (1 preemption); r0 and r1 finish after
    # step 1 (2.0 ms), r2 is admitted again at step 2 with the token it generated (its KV recomputed)
    # and finishes after step 2 (3.0 ms). Preempting r1 as well would make it finish at 3.0 ms too.
    # (The simpler mutant of the outer test, '> K' -> '>= K', is equivalent: this stop test alone
    # decides.)
    inst = stream([(0, 20, 2), (0, 6, 2), (0, 1, 2)], workers=1, slots=4, kv_capacity=30,
                  ms_per_kv_token=0.0, step_ms=1.0)
    res = bench.simulate(inst, Fixed([0, 0, 0]))
    assert res["metrics"]["preemptions"] == 1
    assert res["steps"]["max_kv"].tolist() == [30, 30, 3]  # r2 alone: 1 + 1 (kept) + 1
    assert res["finish_t"] * 1000 == pytest.approx([2.0, 2.0, 3.0])


def test_a_preempted_request_keeps_its_tokens_as_batch_scheduling_s_simulator_does():
    # R20: preemption threw the generated tokens away, re-admitted the request from zero (in the
    # same step, three steps running) and counted the regenerated tokens as throughput.
    # One worker, 2 slots, K = 12, step clock (1 ms per step); r0 (s=4, o=6), r1 (s=3, o=4) at 0.
    # Steps 1-2 run both (KV 5 + 4, then 6 + 5 = 11); step 3 needs 7 + 6 = 13 > 12: r1 (newest) is
    # preempted with j = 2 and waits (re-admission needs 7 + 1 + 3 + 2 + 1 = 14 > 12) until r0
    # finishes after step 6; r1 runs steps 7-8 from j = 2: latencies 6 and 8 steps, 1 preemption,
    # 6 + 4 = 10 tokens generated. batch_scheduling's round simulator (FCFS, no watermark: the same
    # rules, written separately) gives the same latencies.
    from servopt.benchmarks import batch_scheduling as batch_bench
    from servopt.instances import batch_scheduling as batch_inst
    from servopt.solvers.batch_scheduling import FCFS

    frame = pd.DataFrame({"arrival_s": [0, 0], "prompt_tokens": [4, 3], "output_tokens": [6, 4]})
    inst = inst_mod.Instance(workers=1, slots=2, kv_capacity=12, step_ms=1.0, ms_per_kv_token=0.0,
                             arrival_unit="step", requests=frame)
    res = bench.simulate(inst, Fixed([0, 0]), warmup=0.0)
    assert (res["finish_t"] - res["arrive_t"]) * 1000 == pytest.approx([6, 8])  # s -> steps
    assert res["metrics"]["preemptions"] == 1
    assert res["steps"]["tokens"].sum() == 10
    batch = batch_inst.Instance(kv_memory=12, arrival=[0, 0], prompt_tokens=[4, 3],
                                output_tokens=[6, 4], max_batch=2)
    policy = FCFS(watermark=0.0)
    policy.prepare(batch)
    assert batch_bench.simulate(batch, policy)["latency"].tolist() == [6, 8]


def test_a_preempted_request_s_kept_tokens_are_prefilled_again_on_admission():
    # As above with a prefill cost p = 0.5 ms per token: the admission steps prefill r0 and r1
    # (4 + 3 tokens, both on the one worker: 1 + 3.5 ms) and, at step 7, r1's prompt and its 2
    # kept tokens (1 + 2.5 ms); every other step takes 1 ms.
    frame = pd.DataFrame({"arrival_s": [0, 0], "prompt_tokens": [4, 3], "output_tokens": [6, 4]})
    inst = inst_mod.Instance(workers=1, slots=2, kv_capacity=12, step_ms=1.0, ms_per_kv_token=0.0,
                             prefill_ms_per_token=0.5, arrival_unit="step", requests=frame)
    res = bench.simulate(inst, Fixed([0, 0]), warmup=0.0)
    assert res["steps"]["step_ms"].tolist() == [4.5, 1, 1, 1, 1, 1, 3.5, 1]


def test_end_to_end_latency_counts_from_the_arrival_not_from_the_next_step():
    # kills: in the seconds clock, a request's arrival recorded as the start of the step that routes
    # it (arrive_t = t), which drops its wait for the running step from e2e.
    # One worker, step 2 ms + 0.01 ms per KV token. r0 (s=100, o=2) arrives at 0: step 0 takes
    # 2 + 1.00 = 3.00 ms. r1 (s=100, o=1) arrives at 1 ms, during step 0; it is routed and admitted at
    # the next step, 3 ms: KV 101 + 100 -> 2 + 2.01 = 4.01 ms; both finish at 7.01 ms.
    # e2e: r0 7.01 ms, r1 7.01 - 1 = 6.01 ms (not 7.01 - 3 = 4.01).
    frame = pd.DataFrame({"arrival_s": [0.0, 0.001], "prompt_tokens": [100, 100],
                          "output_tokens": [2, 1]})
    inst = inst_mod.Instance(workers=1, slots=4, kv_capacity=1000, step_ms=2.0, ms_per_kv_token=0.01,
                             prefill_ms_per_token=0.0, requests=frame)
    res = bench.simulate(inst, Fixed([0, 0]), warmup=0.0)
    assert res["steps"]["step_ms"] == pytest.approx([3.0, 4.01])
    assert res["arrive_t"] == pytest.approx([0.0, 0.001])
    assert (res["finish_t"] - res["arrive_t"]) * 1000 == pytest.approx([7.01, 6.01])
    assert res["metrics"]["e2e_mean_s"] * 1000 == pytest.approx((7.01 + 6.01) / 2)


def test_throughput_when_all_arrive_at_once_counts_from_the_arrival():
    # kills: the no-window throughput (all requests arrive at once) divided by the clock since 0
    # instead of since the arrival. Seconds clock, both requests arrive at 5 s; one slot per worker,
    # both on worker 0: step 0 runs r0 (100 tokens: 1 + 5 ms of work + 2 ms = 8 ms), step 1 r1
    # (8 ms). 2 tokens in 16 ms from the arrival: 125 tokens/s (2 / 5.016 s from time 0).
    frame = pd.DataFrame({"arrival_s": [5.0, 5.0], "prompt_tokens": [100, 100],
                          "output_tokens": [1, 1]})
    inst = inst_mod.Instance(workers=2, slots=1, kv_capacity=1000, step_ms=2.0, ms_per_kv_token=0.01,
                             prefill_ms_per_token=0.05, requests=frame)
    res = bench.simulate(inst, Fixed([0, 0]))
    assert res["steps"]["step_ms"] == pytest.approx([8.0, 8.0])
    assert res["finish_t"] == pytest.approx([5.008, 5.016])
    assert res["metrics"]["throughput_tok_s"] == pytest.approx(2 / 0.016)


def test_throughput_without_a_window_leaves_out_idle_time_between_arrivals():
    # the audit's case: arrivals 0, 1, 1, 1, 1 s (the window's first arrival, request floor(0.2 x 5)
    # = 1, is the last: no distinct window, every step measured). One worker, 4 slots, 10 ms per
    # step, no KV cost; every request has 1 prompt token and 2 output tokens. r0 runs steps 0-1
    # (0-20 ms), the fleet sits idle until 1 s, r1-r4 run two steps together: 10 tokens in 4 steps
    # of 10 ms = 250 tokens/s. The old branch divided by the makespan since the first arrival:
    # 10 / 1.02 s = 9.8 tokens/s, counting 0.98 s of idle fleet as decode time.
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0, 1.0, 1.0, 1.0], "prompt_tokens": [1] * 5,
                          "output_tokens": [2] * 5})
    inst = inst_mod.Instance(workers=1, slots=4, kv_capacity=1000, step_ms=10.0, ms_per_kv_token=0.0,
                             requests=frame)
    res = bench.simulate(inst, Fixed([0] * 5))
    assert res["steps"]["step_ms"] == pytest.approx([10.0] * 4)
    assert res["metrics"]["throughput_tok_s"] == pytest.approx(250.0)


def test_time_per_output_token_is_nan_when_no_request_has_a_second_token():
    # two requests of one output token each: no token after the first, so no TPOT (was 0.0 ms)
    inst = stream([(0, 5, 1), (0, 5, 1)])
    metrics = bench.simulate(inst, Fixed([0, 1]))["metrics"]
    assert math.isnan(metrics["tpot_mean_ms"]) and math.isnan(metrics["tpot_p99_ms"])
    assert metrics["completed"] == 2
