"""Caching bid-price rules run live: started on the catalogue only, fed requests by ``touch``.

A live cache knows its objects (sizes, miss costs, capacity) but not the requests to come. These
tests drive the rules through a cache written here (not the evaluator's simulator) and check
them against the evaluator on the same stream.
"""

from __future__ import annotations

import dataclasses
import heapq
import math

import numpy as np
import pytest

import servopt
from servopt.benchmarks import caching as bench
from servopt.core import InvalidInstanceError
from servopt.instances import caching as ci
from servopt.solvers import caching as cs

N, W = 3000, 600  # the benchmark's shares: warm-up and windows of 0.2 n = 600 requests


@pytest.fixture(scope="module")
def inst() -> ci.Instance:
    # capacity binds: bid_price_window's price acts here (test_caching)
    return ci.generate(requests=N, objects=600, cache_share=0.02, seed=2)


def catalogue(instance: ci.Instance) -> ci.Instance:
    """What a live cache knows at start: its objects and capacity, no requests."""
    return ci.Instance(time=np.zeros(0), object_id=np.zeros(0, dtype=np.int64),
                       size=instance.size, miss_cost=instance.miss_cost,
                       capacity=instance.capacity)


def serve_live(policy, start_with: ci.Instance, stream: list[int], before=None) -> np.ndarray:
    """A cache of our own around an admission policy: per request, ``touch`` (after
    ``before(policy, t)``), re-rank when asked, keep with the priority or drop on None, then
    evict the lowest priorities until the contents fit. Returns the hit flags."""
    policy.start(start_with)
    size = start_with.size.tolist()
    room = start_with.capacity * (1 + 1e-12) + 1e-9  # the evaluator's rounding allowance
    cached: dict[int, int] = {}
    heap: list[tuple[float, int, int]] = []
    used, seq, hits = 0.0, 0, []
    for t, o in enumerate(stream):
        if before is not None:
            before(policy, t)
        hit = o in cached
        hits.append(hit)
        priority = policy.touch(t, o, hit)
        if policy.rerank:
            policy.rerank = False
            heap = [(policy.priority(v), q, v) for v, q in cached.items()]
            heapq.heapify(heap)
        if priority is None or size[o] > room:
            if hit:
                del cached[o]
                used -= size[o]
            continue
        if not hit:
            used += size[o]
        seq += 1
        cached[o] = seq
        heapq.heappush(heap, (priority, seq, o))
        while used > room:
            _, q, v = heapq.heappop(heap)
            if cached.get(v) == q:
                del cached[v]
                used -= size[v]
    return np.array(hits)


EXPERTS = cs.EXPERTS
LIVE = {  # evaluator rule (shares of n) -> the same rule with warm-up and windows in requests
    "bid_price": dict(warmup=W, refresh=W, experts=EXPERTS),
    "bid_price_window": dict(warmup=W, refresh=W, tune=False, price_scale=1.0, experts=EXPERTS),
    "bid_price_static": dict(warmup=W, experts=EXPERTS),
    # tuned among positive scales only: the tuned price acts
    "tuned_positive": dict(warmup=W, refresh=W, scales=(0.5, 1.0, 2.0, 4.0), experts=EXPERTS),
}


def evaluator_rule(name: str) -> cs.BidPrice:
    if name == "tuned_positive":
        return cs.BidPrice(warmup=0.2, refresh=0.2, scales=(0.5, 1.0, 2.0, 4.0), experts=EXPERTS)
    return cs.make_policy(name)


@pytest.mark.parametrize("name", list(LIVE))
def test_a_live_rule_makes_the_evaluator_s_decisions(inst, name):
    reference = evaluator_rule(name)
    expected = bench.simulate(inst, reference, record=True)
    live = cs.BidPrice(**LIVE[name])
    hits = serve_live(live, catalogue(inst), inst.object_id.tolist())
    assert hits.tolist() == expected.hit.tolist()
    assert live.prices == reference.prices and live.price_scale == reference.price_scale
    assert [t for t, _ in live.prices][:2] == [0, W]
    if name in ("bid_price_window", "tuned_positive"):  # the price acted: it changed decisions
        assert live.price * live.price_scale > 0
        unpriced = bench.simulate(inst, "cost_freq_size", record=True)
        assert hits.tolist() != unpriced.hit.tolist()


def test_requests_and_shares_give_the_same_rule_on_the_instance(inst):
    for name, kw in LIVE.items():
        a = bench.simulate(inst, evaluator_rule(name), record=True)
        b = bench.simulate(inst, cs.BidPrice(**kw), record=True)
        assert a.hit.tolist() == b.hit.tolist(), name


def test_each_window_price_comes_from_the_requests_shown(inst):
    """Fed a stream different from the instance given at start, the rule learns from what it
    was shown: each price is the LP's mean price on the last W requests of that stream."""
    stream = inst.object_id[::-1].copy()  # the same requests in reverse order
    policy = cs.BidPrice(warmup=W, refresh=W, tune=False, experts=EXPERTS)
    serve_live(policy, inst, stream.tolist())  # started on the instance, shown another stream
    shown = dataclasses.replace(inst, object_id=stream)
    assert [t for t, _ in policy.prices] == list(range(0, N, W))
    for t, price in policy.prices[1:]:
        lo = 0 if t == W else t - W
        assert price == cs.solve_lp(cs.request_window(shown, lo, t)).price.mean()
    assert policy.prices[1][1] != cs.solve_lp(cs.request_window(inst, 0, W)).price.mean()


def test_refresh_without_a_warm_up_learns_at_each_window(inst):
    policy = cs.BidPrice(refresh=W, tune=False, experts=EXPERTS)
    serve_live(policy, catalogue(inst), inst.object_id.tolist())
    assert [t for t, _ in policy.prices] == list(range(0, N, W))
    for t, price in policy.prices[1:]:
        assert price == cs.solve_lp(cs.request_window(inst, t - W, t)).price.mean()


@pytest.mark.parametrize(("kw", "field"), [({"warmup": 0.2}, "warmup"),
                                           ({"warmup": W, "refresh": 0.2}, "refresh")])
def test_a_share_on_a_catalogue_is_refused_in_requests_terms(inst, kw, field):
    """Refused at the first request: an empty instance (no request to serve) still evaluates."""
    first = int(inst.object_id[0])
    policy = cs.BidPrice(**kw)
    policy.start(catalogue(inst))
    with pytest.raises(InvalidInstanceError, match=f"{field}=0.2 is a share.*give {field} in "
                                                   f"requests"):
        policy.touch(0, first, False)
    for name in ("bid_price", "bid_price_window", "bid_price_static"):
        policy = cs.make_policy(name)
        policy.start(catalogue(inst))
        with pytest.raises(InvalidInstanceError, match="give warmup in requests"):
            policy.touch(0, first, False)
        assert bench.simulate(catalogue(inst), name).miss_cost == 0.0
    live = cs.make_policy("cost_freq_size")  # no price to learn: runs live
    live.start(catalogue(inst))
    assert live.touch(0, first, False) is not None


def test_a_share_sized_on_a_shorter_instance_is_refused_at_its_end(inst):
    """Started on a one-request stand-in for the catalogue, a share would size a warm-up of 0
    requests and windows of 100: fed the real stream, the rule refuses it at request 1."""
    stand_in = ci.Instance(time=np.zeros(1), object_id=np.zeros(1, dtype=np.int64),
                           size=inst.size, miss_cost=inst.miss_cost, capacity=inst.capacity)
    policy = cs.make_policy("bid_price")
    with pytest.raises(InvalidInstanceError,
                       match=r"warmup=0.2 and refresh=0.2 is a share .* for the 1 requests of the "
                             r"instance given to start\(\), and touch\(\) has been given request 1: "
                             r"for a live stream give warmup in requests"):
        serve_live(policy, stand_in, inst.object_id.tolist())
    # sized on the instance itself, the evaluator never reaches request n
    assert bench.simulate(inst, "bid_price").requests == N


@pytest.mark.parametrize(("kw", "message"), [
    ({"warmup": 1.5}, "warmup must be 0 .none., a share"),
    ({"warmup": -0.2}, "warmup must be"),
    ({"warmup": math.nan}, "warmup must be"),
    ({"warmup": "600"}, "warmup must be"),
    ({"warmup": True}, "warmup must be"),
    ({"refresh": 2.5}, "refresh must be"),
    ({"refresh": math.inf}, "refresh must be"),
    ({"warmup": 50_000}, "warmup=50000 requests is above window_cap=30000"),
    ({"refresh": 40_000, "window_cap": 30_000}, "refresh=40000 requests is above window_cap"),
])
def test_bad_warm_up_and_refresh_are_refused(kw, message):
    with pytest.raises(InvalidInstanceError, match=message):
        cs.BidPrice(**kw)


def test_a_count_above_the_default_cap_is_accepted_without_a_cap():
    policy = cs.BidPrice(warmup=50_000, refresh=40_000.0, window_cap=None)
    policy.start(ci.generate(requests=100, objects=20, seed=0))
    assert (policy.warm_end, policy.window) == (50_000, 40_000)


def test_requests_out_of_order_are_refused_when_the_price_is_learned(inst):
    policy = cs.BidPrice(warmup=W, tune=False)
    policy.start(catalogue(inst))
    ids = inst.object_id.tolist()
    for t in range(W - 1):
        policy.touch(t, ids[t], False)
    with pytest.raises(InvalidInstanceError, match=f"at request {W + 1} it has seen {W - 1} "
                                                   f"requests since request 0, not {W + 1}"):
        policy.touch(W + 1, ids[W], False)  # requests W - 1 and W were never shown


@pytest.mark.parametrize("name", ["bid_price", "cost_freq_size"])
@pytest.mark.parametrize("bad", [600, 10**6, -1])
def test_an_object_outside_the_catalogue_is_refused(inst, name, bad):
    policy = cs.make_policy(name)
    policy.start(catalogue(inst) if name == "cost_freq_size" else inst)
    policy.touch(0, 5, False)
    weights = [list(w) for w in policy.weights]
    with pytest.raises(InvalidInstanceError,
                       match=rf"request 1 asks for object {bad}, outside the catalogue of 600 "
                             rf"objects \(ids 0\.\.599\)"):
        policy.touch(1, bad, False)
    assert [list(w) for w in policy.weights] == weights  # refused before any update


def test_set_price_from_outside_matches_the_rule_s_own_windows(inst):
    """Solving the LP on the last window outside the rule and handing over its solution keeps
    the rule's state: the decisions are those of bid_price_window, which learns the same price
    on the same windows itself."""
    expected = bench.simulate(inst, "bid_price_window", record=True)
    stream = inst.object_id.tolist()
    seen: list[int] = []

    def refresh(policy: cs.BidPrice, t: int) -> None:
        if t and t % W == 0:  # the log of this cache, not the rule's
            lo = 0 if t == W else t - W
            past = ci.Instance(time=np.arange(lo, t, dtype=float), object_id=seen[lo:t],
                               size=inst.size, miss_cost=inst.miss_cost, capacity=inst.capacity)
            policy.update_from_solution(servopt.solve(past, relax=True))
        seen.append(stream[t])

    policy = cs.BidPrice(experts=EXPERTS)  # no warm-up, no refresh: the price comes from outside
    hits = serve_live(policy, catalogue(inst), stream, before=refresh)
    assert hits.tolist() == expected.hit.tolist()
    assert [t for t, _ in policy.prices] == list(range(0, N, W))
    # a new rule per window (from_solution) starts its ageing over: other decisions
    fresh: dict[str, cs.BidPrice] = {}

    def rebuild(policy: cs.BidPrice, t: int) -> None:
        if t and t % W == 0:
            past = cs.request_window(inst, 0 if t == W else t - W, t)
            fresh["rule"] = cs.BidPrice.from_solution(servopt.solve(past, relax=True),
                                                      experts=EXPERTS)
            fresh["rule"].start(catalogue(inst))

    class Rebuilt:  # delegates to the latest rebuilt rule
        rerank = False

        def start(self, instance):
            fresh["rule"] = cs.BidPrice(experts=EXPERTS)
            fresh["rule"].start(instance)

        def touch(self, t, o, hit):
            p = fresh["rule"].touch(t, o, hit)
            self.rerank, fresh["rule"].rerank = fresh["rule"].rerank, False
            return p

        def priority(self, o):
            return fresh["rule"].priority(o)

    rebuilt = serve_live(Rebuilt(), catalogue(inst), stream, before=rebuild)
    assert rebuilt.tolist() != expected.hit.tolist()


def test_set_price_checks_and_records(inst):
    policy = cs.BidPrice(experts=EXPERTS)
    policy.start(catalogue(inst))
    for t in range(10):
        policy.touch(t, int(inst.object_id[t]), False)
    policy.set_price(2e-4, scale=0.5)
    assert (policy.price, policy.price_scale) == (2e-4, 0.5)
    assert policy.prices[-1] == (10, 1e-4)
    assert policy.log_threshold == math.log(1e-4)
    for bad in (-1.0, math.nan, math.inf, "1"):
        with pytest.raises(InvalidInstanceError, match="price must be"):
            policy.set_price(bad)
    with pytest.raises(InvalidInstanceError, match="price_scale must be"):
        policy.set_price(1e-4, scale=-1.0)
    assert policy.price == 2e-4


def _with_price(solution, gap: int, value: float):
    prices = dict(solution.prices)
    column = prices["cache_capacity"].copy()
    column.iloc[gap] = value
    prices["cache_capacity"] = column
    return dataclasses.replace(solution, prices=prices)


@pytest.mark.parametrize("value", [-0.1, -1e-12, math.nan, math.inf])
def test_from_solution_refuses_a_negative_or_non_finite_price(inst, value):
    solution = servopt.solve(cs.request_window(inst, 0, W), relax=True)
    assert cs.BidPrice.from_solution(solution).price == pytest.approx(
        solution.prices["cache_capacity"].mean())
    edited = _with_price(solution, 5, value)
    gap = edited.prices["cache_capacity"].index[5]
    with pytest.raises(InvalidInstanceError, match=rf"price of gap {gap} is {value!r}.*finite "
                                                   rf"and >= 0"):
        cs.BidPrice.from_solution(edited)
    policy = cs.BidPrice.from_solution(solution)
    before = policy.price
    with pytest.raises(InvalidInstanceError, match="finite and >= 0"):
        policy.update_from_solution(edited)
    assert policy.price == before


def test_update_from_solution_refuses_other_solutions():
    from servopt.instances import batch_scheduling as bi

    policy = cs.BidPrice()
    with pytest.raises(InvalidInstanceError, match="caching LP"):
        policy.update_from_solution(servopt.solve(bi.generate(n=4, seed=0), relax=True))
