"""Decode routing: the routers do not depend on where the stream's clock starts, and the bid-price
routers' arrival rate counts only the steps they saw (found by the shift audit: bid_price_lp and
bid_price_argmin changed cost when every arrival of a step-clock stream came later)."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as gen
from servopt.solvers import decode_routing as routing


def _shifted(instance: gen.Instance, by: float) -> gen.Instance:
    frame = instance.requests.copy()
    frame["arrival_s"] += by
    return dataclasses.replace(instance, requests=frame)


def _stream(rows, *, workers: int = 2) -> gen.Instance:
    """A step-clock stream of (arrival step, prompt, output) rows; slots and KV never bind."""
    frame = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"])
    return gen.Instance(workers=workers, slots=64, kv_capacity=10_000, step_ms=10.0,
                        ms_per_kv_token=1e-4, requests=frame, arrival_unit="step")


# the step-clock stream of the audit (code lengths: bid_price_lp and bid_price_argmin changed
# with a shift of 1 or 1000 steps before the fix) and a seconds-clock stream
STREAMS = {
    "step": (lambda: gen.generate_steps(workload="code", requests=30, workers=3, seed=1), (1, 1000)),
    "seconds": (lambda: gen.generate(workload="code", requests=60, workers=3, load=0.85, seed=0,
                                     slots=64, kv_capacity=131072), (1000.0,)),
}
CASES = [pytest.param(clock, method, marks=[pytest.mark.slow] if method == "epoch_ip" else [],
                      id=f"{clock}-{method}")
         for clock in STREAMS for method in routing.POLICIES]


@pytest.mark.parametrize("clock, method", CASES)
def test_every_router_costs_the_same_when_every_arrival_comes_later_by_a_constant(clock, method):
    # expected: the unshifted stream's cost (the same requests, the same gaps between them); a
    # whole number of steps on the step clock (a fraction would move arrivals across step ends)
    make, shifts = STREAMS[clock]
    instance = make()
    expected = bench.evaluate(instance, method).cost
    for by in shifts:
        assert bench.evaluate(_shifted(instance, by), method).cost == expected, by


@pytest.mark.parametrize("start", [0, 1000])
def test_the_arrival_rate_counts_from_the_first_step_the_router_sees(start):
    # 4 requests at one step on 2 workers: the router has seen one step, 4 arrivals per step.
    # auto discount: gamma = exp(-4 / 1 / 2) = exp(-2) (inside the clamp [0.05, 0.95]); counted
    # from step 0 the stream at step 1000 would show 4 / 64 per step and gamma = 0.95 (clamped).
    instance = _stream([(start, 100 + 10 * k, 5) for k in range(4)])
    router = routing.BidPrice()
    bench.evaluate(instance, router)
    assert router.gamma == pytest.approx(math.exp(-2.0), rel=1e-12)
    # the gated LP's class: m = slack 1.5 x rate 4 x refresh 4 = 24 requests (from step 0: 1.5)
    gated = routing.POLICIES["bid_price_lp"]()
    bench.evaluate(instance, gated)
    assert gated.solves == 1
    assert gated.epoch.demand.tolist() == [24.0]


def test_the_arrival_ring_forgets_the_steps_the_clock_jumped_over():
    # 40 requests at step 0 finish after one step; the fleet is empty and the step clock jumps to
    # step 100, where 8 arrive. The last 64 steps (37..100) hold those 8 only: 8 / 64 per step,
    # 1/16 per worker, gamma = exp(-1/16). (A ring whose skipped slots keep their counts still
    # holds step 0's 40: 48 / 64 per step, gamma = exp(-0.375).)
    instance = _stream([(0, 10 + k, 1) for k in range(40)] + [(100, 20 + k, 3) for k in range(8)])
    router = routing.BidPrice()
    bench.evaluate(instance, router)
    assert router.gamma == pytest.approx(math.exp(-1.0 / 16.0), rel=1e-12)
    # the gated LP at step 100: rate max(8 / 64, 1 / refresh 4) = 0.25, m = max(1, 1.5 x 0.25 x 4)
    gated = routing.POLICIES["bid_price_lp"]()
    bench.evaluate(instance, gated)
    assert gated.epoch.demand.tolist() == [1.5]
