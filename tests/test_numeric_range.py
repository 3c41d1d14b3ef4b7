"""Numbers at the edge of the legal ranges: sums past int64, stretches of 1e10 decode steps, and
a seconds clock summed over 1e5+ steps. Expected values come from exact integer arithmetic or
from step-by-step float sums, not from the code under test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from servopt.benchmarks import decode_routing as dr_bench
from servopt.instances import batch_scheduling as bs_instances
from servopt.instances import decode_routing as dr_instances
from servopt.models import batch_scheduling as bs_model


def test_area_bound_sums_footprints_past_int64():
    # 900,000 requests at round 0, prompt 1e7 and output 1e6 (both at their caps): the
    # footprints sum to 9.45e18 token-rounds, past 2^63; an int64 running sum wraps and the
    # bound came out 4.7% low (3.68e17 against 3.87e17)
    n, s, o, memory = 900_000, 10_000_000, 1_000_000, 11_000_000
    inst = bs_instances.Instance(kv_memory=memory, arrival=np.zeros(n, dtype=np.int64),
                                 prompt_tokens=np.full(n, s, dtype=np.int64),
                                 output_tokens=np.full(n, o, dtype=np.int64))
    footprint = s * o + o * (o + 1) // 2  # Python int: sum_j (s + j), j = 1..o
    # the k-th finisher needs the k smallest footprints' area: ceil(k footprint / M), exactly
    exact = sum(max(o, -(-k * footprint // memory)) for k in range(1, n + 1))
    assert exact > 2**63 // memory  # the instance does reach past int64
    got = bs_model.area_bound(inst)
    # the bound divides in floats (1 ulp at 8.6e11 is 1.2e-4 of a round), so a term may round
    # down by one round: at most n of 3.9e17
    assert exact - n <= got <= exact


def test_decode_seconds_clock_does_not_drift_past_the_arrival_tolerance():
    # one worker: request 0's prefill makes step 0 last 21,299,201.07 ms (about 5.9 hours), then
    # every step lasts c0 = 1.07 ms (c1 = 0). The plain float sum of step seconds fell behind
    # the true step starts by more than the 1e-7 x c0 arrival tolerance after 69 steps, so a
    # request arriving exactly at a step's start joined one step late. The true start of step K
    # is the exact sum of the step times (math.fsum), rounded once.
    c0, p, prompt, K = 1.07, 100.0, 212_992, 69
    start_k = math.fsum([c0 + p * prompt] + [c0] * (K - 1)) / 1000.0
    requests = pd.DataFrame({"arrival_s": [0.0, start_k], "prompt_tokens": [prompt, 1],
                             "output_tokens": [200, 1]})
    inst = dr_instances.Instance(workers=1, slots=4, kv_capacity=300_000, step_ms=c0,
                                 ms_per_kv_token=0.0, prefill_ms_per_token=p, requests=requests)
    res = dr_bench.simulate(inst, "round_robin")
    steps = res["steps"]
    assert steps["step_ms"][0] == c0 + p * prompt and np.all(steps["step_ms"][1:K] == c0)
    assert steps["tokens"][K - 1] == 1 and steps["tokens"][K] == 2  # it runs in step K
    # its first token ends step K, whose time is c0 plus its one-token prefill
    assert res["first_t"][1] - res["arrive_t"][1] == pytest.approx((c0 + p) / 1000.0, rel=1e-6)


def _step_by_step(clock, step, jump, head_at=math.inf):
    """The clock over a quiet stretch, one float addition per iteration (the oracle)."""
    prev, x = clock, clock
    for k in range(1, jump + 1):
        prev, x = x, x + step
        if x >= head_at:
            return k, prev, x
    return jump, prev, x


@pytest.mark.parametrize("clock, step, jump, head_at", [
    (0.0, 0.01206, 200_000, math.inf),
    (0.018, 0.01206, 150_000, 1000.0),
    (12345.678, 6e-5 * 7 + 0.012, 100_000, math.inf),
    (2.0**20, 2.5 * 2.0**-32, 100_000, math.inf),  # a tie at half an ulp: ties-to-even alternates
    (2.0**20 + 2.0**-32, 2.5 * 2.0**-32, 100_000, math.inf),
    (2.0**30 - 2.0**-22, 1e-7, 50_000, math.inf),  # starts one ulp below a binade's end
    (5e8, 1e-9, 1000, math.inf),  # a step below half an ulp: the clock never moves
])
def test_capacity_quiet_clock_is_the_step_by_step_float_sum(clock, step, jump, head_at):
    from servopt.benchmarks import capacity as cap_bench
    assert cap_bench.quiet_clock(clock, step, jump, head_at) == _step_by_step(clock, step, jump, head_at)


def test_capacity_quiet_clock_stops_at_a_head_arriving_exactly_at_a_start():
    from servopt.benchmarks import capacity as cap_bench
    clock, step = 3.7, 0.01206
    head = _step_by_step(clock, step, 4321)[2]  # exactly the start of iteration 4321
    assert cap_bench.quiet_clock(clock, step, 10**6, head) == _step_by_step(clock, step, 4321)
    assert cap_bench.quiet_clock(clock, step, 10**6, head)[0] == 4321


def test_capacity_outputs_of_1e10_tokens_simulate_in_bounded_memory_and_time():
    # the simulator held one float per decode step of a quiet stretch: 74.5 GiB here
    # (MemoryError), 1.5 GB for outputs of 1e8 (R29 #2)
    import time
    import tracemalloc

    from servopt.benchmarks import capacity as cap_bench
    from servopt.instances import capacity as cap_instances
    inst = cap_instances.Instance(
        prompt_tokens=np.array([100, 200]), output_tokens=np.array([10**10, 10**10]),
        arrival_rate=1e-9, kv_tokens=3 * 10**10, token_budget=4096, batch_cap=256,
        prefill_chunk=512, step_overhead_s=0.012, per_token_s=6e-5, headroom=0.1)
    start = time.process_time()
    tracemalloc.start()
    try:
        res = cap_bench.simulate(inst, np.array([100]), np.array([10**10]), np.array([0.0]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    # by hand: one prefill iteration of 100 tokens, then 1e10 - 1 decode iterations of 1 token
    # (the clock adds each iteration's time in floats, as step by step: 1e10 additions drift
    # by 1e-7 of the total here)
    hand = (0.012 + 6e-5 * 100) + (10**10 - 1) * (0.012 + 6e-5)
    assert res.done_times[0] == pytest.approx(hand, rel=1e-6)
    # one request every 1e9 s, each busy for 1.2e8 s: one worker is stable and the least
    assert cap_bench.evaluate(inst, "plan", n_requests=1000).cost == 1
    assert cap_bench.bound(inst, n_requests=1000).value == 1
    assert time.process_time() - start < 30


def test_capacity_simulation_cut_short_says_so():
    # it used to stop silently at max_iterations, and the unfinished requests read as a
    # backlog, i.e. an unstable rate (R29, by reading)
    from servopt.benchmarks import capacity as cap_bench
    from servopt.core import InvalidInstanceError
    from servopt.instances import capacity as cap_instances
    inst = cap_instances.Instance(prompt_tokens=[2000], output_tokens=[5], arrival_rate=1.0,
                                  kv_tokens=10_000, token_budget=512, batch_cap=4, prefill_chunk=100)
    s, o, arr = np.array([2000]), np.array([5]), np.array([0.0])
    # 20 prefill iterations of 100 tokens, then 4 decode iterations: 24 in all
    assert cap_bench.simulate(inst, s, o, arr, max_iterations=24, skip=False).completed == 1
    with pytest.raises(InvalidInstanceError, match=r"max_iterations = 23 .* 1 of 1 requests unfinished"):
        cap_bench.simulate(inst, s, o, arr, max_iterations=23, skip=False)
