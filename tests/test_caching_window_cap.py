"""Caching bid-price rules: the cap on the LP's warm-up and sliding window (``window_cap``)."""

from __future__ import annotations

import pytest

from servopt.benchmarks import caching as bench
from servopt.benchmarks.cases.caching_full import CASE as FULL
from servopt.benchmarks.cases.caching_quick import CASE as QUICK
from servopt.core import InvalidInstanceError
from servopt.instances import caching as ci
from servopt.instances.traces import shared_trace
from servopt.solvers import caching as cs


def test_a_capped_rule_learns_at_the_cap_and_refreshes_on_the_last_cap_requests():
    # n = 3000: warm-up and window 0.2 n = 600 requests, capped at 250
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=2)
    policy = cs.BidPrice(warmup=0.2, refresh=0.2, tune=False, experts=cs.EXPERTS, window_cap=250)
    bench.simulate(inst, policy)
    assert (policy.warm_end, policy.window) == (250, 250)
    assert [t for t, _ in policy.prices] == list(range(0, 3000, 250))
    for t, price in policy.prices[1:]:  # each price is the mean LP price of requests t-250..t-1
        window = cs.request_window(inst, t - 250, t)
        assert price == pytest.approx(cs.solve_lp(window).price.mean(), rel=1e-9)
    assert any(price > 0 for _, price in policy.prices)


@pytest.mark.parametrize("method", ["bid_price", "bid_price_window", "bid_price_static"])
def test_a_cap_that_is_not_reached_changes_nothing(method):
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=2)
    uncapped = cs.make_policy(method)
    uncapped.window_cap = None
    capped = cs.make_policy(method)
    capped.window_cap = 600  # exactly the 0.2 n window: not exceeded
    a, b = bench.simulate(inst, uncapped, record=True), bench.simulate(inst, capped, record=True)
    assert a.hit.tolist() == b.hit.tolist() and a.miss_cost == b.miss_cost
    assert uncapped.prices == capped.prices


def test_no_case_of_the_benchmark_reaches_the_default_cap():
    # the committed caching_full / caching_quick results were produced without a cap
    path = shared_trace("mooncake_synthetic.jsonl")
    if path is None:
        pytest.skip("mooncake_synthetic.jsonl is not in ../shared/traces")
    trace = ci.from_trace(path).requests  # the whole trace: 121,877 blocks
    assert trace > 100_000
    for params in FULL.grid + QUICK.grid:
        n = params.get("requests", params.get("max_requests", trace))
        assert max(int(0.2 * n), 100) < cs.WINDOW_CAP, params


def test_the_window_is_resolved_per_instance_and_the_cap_is_checked():
    policy = cs.BidPrice(warmup=0.2, refresh=0.2, tune=False)
    policy.start(ci.generate(requests=3000, seed=0))
    assert policy.window == 600
    policy.start(ci.generate(requests=1000, seed=0))  # a share of this n, not the last one's 600
    assert policy.window == 200 and policy.refresh == 0.2
    for bad in (0, 2.5, -10, float("nan")):
        with pytest.raises(InvalidInstanceError, match="window_cap"):
            cs.BidPrice(window_cap=bad)
