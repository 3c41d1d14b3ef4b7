"""Caching: the exact model, its LP and its prices are the same whatever the unit of size and of
miss cost.

HiGHS's tolerances are absolute; written in raw tokens, the reduced network dropped binding rows
and HiGHS accepted over-full caches when sizes were ~1e-7 or ~1e9 (``servopt.solve`` returned
2.0 "optimal" for 3, and 10.0 for 7.5). The models are now written in units taken from the data
(:func:`servopt.models.caching.units`) and every "fits" test is relative. Expected values come
from outside the code under test: brute force over every keep set of the instance at scale 1
(whole-token sizes), Belady replayed by the evaluator's simulator (optimal for unit sizes and
equal costs), networkx's network simplex at scale 1 for the LP, and hand calculations.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.benchmarks import caching as bench
from servopt.core import InvalidInstanceError
from servopt.instances import caching as ci
from servopt.models import caching as mc
from servopt.solvers import caching as cs

IP_BACKENDS = ("highs", "pyomo")
LP_BACKENDS = ("highs", "pyomo", "cvxpy")
LP_METHODS = ("highs_matrix", "pyomo", "cvxpy")
# (size scale, cost scale): tokens and cost units from 1e-7 to 1e9, and one that is no power of
# ten (nor of two)
SCALES = ((1e-7, 1.0), (1e-7, 1e9), (1e-3, 1e-7), (3.3, 0.01), (1e6, 1e3), (1e9, 1e-7), (1e9, 1e9))


def scaled(instance: ci.Instance, size: float, cost: float) -> ci.Instance:
    return ci.Instance(time=instance.time, object_id=instance.object_id,
                       size=instance.size * size, miss_cost=instance.miss_cost * cost,
                       capacity=instance.capacity * size)


def brute_force(instance: ci.Instance) -> float:
    """The offline optimum by enumeration of every keep set (whole-token sizes: exact sums)."""
    n = instance.requests
    nxt: dict[int, int] = {}
    spans = []  # (start, end, size, cost) of each interval
    for t in range(n - 1, -1, -1):
        o = int(instance.object_id[t])
        if o in nxt:
            spans.append((t, nxt[o], float(instance.size[o]), float(instance.miss_cost[o])))
        nxt[o] = t
    first = float(sum(instance.miss_cost[o] for o in nxt))  # first requests always miss
    best = np.inf
    for keep in itertools.product([False, True], repeat=len(spans)):
        held = np.zeros(max(n - 1, 0))
        for (a, b, s, _), k in zip(spans, keep, strict=True):
            if k:
                held[a:b] += s
        if np.all(held <= instance.capacity):
            best = min(best, sum(c for (_, _, _, c), k in zip(spans, keep, strict=True) if not k))
    return first + best


def random_instance(rng: np.random.Generator) -> ci.Instance:
    """The audit's generator: up to 11 requests of up to 4 objects, whole-token sizes."""
    n, m = int(rng.integers(2, 12)), int(rng.integers(2, 5))
    return ci.Instance(time=np.arange(n, dtype=float), object_id=rng.integers(0, m, n),
                       size=rng.choice([1.0, 2.0, 3.0, 7.0], m),
                       miss_cost=rng.choice([1.0, 2.5, 4.0], m),
                       capacity=float(rng.choice([1.0, 3.0, 7.0])))


def test_tiny_sizes_give_the_optimum_not_an_over_full_cache():
    # audit finding 1: requests 0 1 0 1, objects of 1e-7 tokens, room for one. Keeping 0 over
    # gaps 0-1 and 1 over gaps 1-2 would hold both in gap 1: at most one hit, miss cost 3 (by
    # hand; Belady, replayed at unit size, too). Before: 2.0 "optimal", bound 2.0
    inst = ci.Instance(time=[0.0, 1.0, 2.0, 3.0], object_id=[0, 1, 0, 1], size=[1e-7, 1e-7],
                       miss_cost=[1.0, 1.0], capacity=1e-7)
    assert bench.simulate(scaled(inst, 1e7, 1.0), "belady").miss_cost == 3.0
    for backend in IP_BACKENDS:
        sol = servopt.solve(inst, backend=backend)
        assert (sol.status, sol.objective, sol.bound) == ("optimal", pytest.approx(3.0),
                                                          pytest.approx(3.0)), backend
    for backend in LP_BACKENDS:
        assert servopt.solve(inst, relax=True, backend=backend).objective == pytest.approx(3.0)
    # the per-gap interval form (Pyomo; CVXPY's LP) too
    assert servopt.solve(inst, backend="pyomo", form="interval").objective == pytest.approx(3.0)
    assert servopt.solve(inst, backend="cvxpy", form="interval").objective == pytest.approx(3.0)


def test_huge_sizes_give_the_optimum():
    # audit finding 1: sizes ~1e9 tokens. Before: 10.0 "optimal", bound 10.0 on HiGHS
    kw = dict(time=[0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 5.5, 5.5, 5.5],
              object_id=[0, 3, 3, 3, 3, 1, 2, 1, 0, 0], miss_cost=[2.5, 0.0, 0.0, 2.5])
    inst = ci.Instance(size=[1e9, 2e9, 7e9, 7e9], capacity=7e9, **kw)
    optimum = brute_force(ci.Instance(size=[1.0, 2.0, 7.0, 7.0], capacity=7.0, **kw))
    assert optimum == 7.5
    for backend in IP_BACKENDS:
        sol = servopt.solve(inst, backend=backend)
        assert sol.objective == pytest.approx(optimum, rel=1e-9), backend
        assert sol.bound <= sol.objective + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_any_unit_gives_the_same_optimum_decisions_and_lp(seed):
    """Sizes x 1e-7..1e9 and costs x 1e-7..1e9: the IP's value is the brute-force optimum x the
    cost scale, its keep is the one at scale 1 (and costs the optimum), and the LP's value is
    networkx's at scale 1 x the cost scale, on every path."""
    rng = np.random.default_rng(seed)
    for _ in range(2):
        base = random_instance(rng)
        optimum = brute_force(base)
        graph, constant, weight = mc.build_networkx(base)
        lp = nx.network_simplex(graph)[0] / weight + constant
        ip_keep = {b: servopt.solve(base, mip_gap=0, backend=b).decisions["keep"] for b in IP_BACKENDS}
        lp_keep = {b: servopt.solve(base, relax=True, backend=b).decisions["keep"] for b in LP_BACKENDS}
        iv = mc.intervals(base)
        for size, cost in SCALES:
            inst = scaled(base, size, cost)
            for backend in IP_BACKENDS:
                sol = servopt.solve(inst, mip_gap=0, backend=backend)
                where = f"{backend} at sizes x {size:g}, costs x {cost:g}"
                assert sol.status == "optimal", where
                assert sol.objective == pytest.approx(optimum * cost, rel=1e-9), where
                keep = sol.decisions["keep"]
                pd.testing.assert_series_equal(keep, ip_keep[backend], check_exact=False, atol=1e-9)
                kept = keep.to_numpy() > 0.5
                assert iv.first_miss_cost + iv.cost[~kept].sum() == pytest.approx(optimum), where
            for backend in LP_BACKENDS:
                sol = servopt.solve(inst, relax=True, backend=backend)
                where = f"LP {backend} at sizes x {size:g}, costs x {cost:g}"
                assert sol.objective == pytest.approx(lp * cost, rel=1e-6), where
                pd.testing.assert_series_equal(sol.decisions["keep"], lp_keep[backend],
                                               check_exact=False, atol=1e-7)
            for method in LP_METHODS:
                assert cs.solve_lp(inst, method=method).value == pytest.approx(lp * cost, rel=1e-6)


@pytest.mark.parametrize("capacity", [1.0, 2.0, 3.0])
def test_unit_sizes_match_belady_at_any_unit(capacity):
    # unit sizes and equal costs: Belady with bypass is optimal, the LP integral
    rng = np.random.default_rng(int(capacity))
    sequence = rng.integers(0, 6, 16)
    base = ci.Instance(time=np.arange(16.0), object_id=sequence, size=np.ones(6),
                       miss_cost=np.ones(6), capacity=capacity)
    belady = bench.simulate(base, "belady").miss_cost
    for size, cost in SCALES:
        inst = scaled(base, size, cost)
        for backend in IP_BACKENDS:
            assert servopt.solve(inst, mip_gap=0, backend=backend).objective == pytest.approx(
                belady * cost, rel=1e-9)
        assert cs.solve_lp(inst).value == pytest.approx(belady * cost, rel=1e-9)


@pytest.mark.parametrize(("size", "cost"), ((1.0, 1.0), *SCALES))
def test_prices_come_back_per_token_in_the_users_units(size, cost):
    # A (2 tokens, cost 4) over gaps 0-1, B (2 tokens, cost 2) over gaps 1-2, cache 3. Gap 1 holds
    # 2 kA + 2 kB <= 3: the LP keeps A and half of B (miss cost 4 + 2 first + 1 = 7). B is
    # fractional, so its cost equals its size x the price: 2 = 2 p1, p1 = 1 miss-cost unit per
    # token and gap; gaps 0 and 2 have room (price 0). In other units: p1 x cost / size. The IP
    # evicts B: 8. Occupancy (tokens): 2, 3, 1.
    base = ci.Instance(time=np.arange(4.0), object_id=[0, 1, 0, 1], size=[2.0, 2.0],
                       miss_cost=[4.0, 2.0], capacity=3.0)
    inst = scaled(base, size, cost)
    expected = np.array([0.0, 1.0, 0.0]) * cost / size
    for backend in LP_BACKENDS:
        sol = servopt.solve(inst, relax=True, backend=backend)
        assert sol.objective == pytest.approx(7.0 * cost, rel=1e-9), backend
        np.testing.assert_allclose(sol.prices["cache_capacity"].to_numpy(), expected, rtol=1e-9,
                                   atol=1e-12 * abs(expected).max(), err_msg=backend)
        if backend != "cvxpy":
            np.testing.assert_allclose(sol.decisions["occupancy"].to_numpy(),
                                       np.array([2.0, 3.0, 1.0]) * size, rtol=1e-9)
    for method in LP_METHODS:
        np.testing.assert_allclose(cs.solve_lp(inst, method=method).price, expected, rtol=1e-9,
                                   atol=1e-12 * abs(expected).max(), err_msg=method)
    for backend in IP_BACKENDS:
        sol = servopt.solve(inst, backend=backend)
        assert sol.objective == pytest.approx(8.0 * cost, rel=1e-9)
        np.testing.assert_allclose(sol.decisions["occupancy"].to_numpy(),
                                   np.array([2.0, 2.0, 0.0]) * size, rtol=1e-9)


def test_a_unit_of_two_to_the_k_tokens_gives_the_same_model_bit_for_bit():
    inst = ci.generate(requests=300, objects=60, seed=1, cache_share=0.05)
    small = scaled(inst, 2.0**-40, 2.0**30)
    a, b = mc.flow_matrix(inst, reduce=True), mc.flow_matrix(small, reduce=True)
    assert (a.balance != b.balance).nnz == 0
    assert np.array_equal(a.objective, b.objective) and np.array_equal(a.upper, b.upper)
    assert a.constant == b.constant
    assert (b.size_unit, b.cost_unit) == (a.size_unit * 2.0**-40, a.cost_unit * 2.0**30)


def test_the_fit_tests_are_relative():
    # an object 0.5% larger than a cache of 1e-7 tokens never fits (an absolute 1e-9 let it in):
    # both requests miss
    big = ci.Instance(time=[0.0, 1.0], object_id=[0, 0], size=[1.005e-7], miss_cost=[1.0],
                      capacity=1e-7)
    assert not mc.intervals(big).fits.any()
    for backend in IP_BACKENDS:
        assert servopt.solve(big, backend=backend).objective == pytest.approx(2.0)
    assert cs.solve_lp(big).value == pytest.approx(2.0)
    # two objects of 1e-9 tokens, room for one, both wanted over gap 1: the rounded schedule
    # keeps one, and a start keeping both is refused
    pair = ci.Instance(time=np.arange(4.0), object_id=[0, 1, 0, 1], size=[1e-9, 1e-9],
                       miss_cost=[1.0, 1.0], capacity=1e-9)
    assert mc.round_schedule(pair, np.array([0.6, 0.6])).sum() == 1
    with pytest.raises(InvalidInstanceError, match="more than the cache capacity"):
        mc.build_matrix_model(pair, start=[1, 1])
    assert len(mc.binding_gaps(pair)) == 1  # gap 1 can bind: its row stays in the network


@pytest.mark.parametrize("requests", [0, 1])
def test_no_capacity_row_every_lp_method_gives_no_price(requests):
    # audit finding 4: no gap, so no capacity row; bench.bound(method="pyomo") raised KeyError
    # 'cache_capacity'. Every method: the miss cost of the first requests (1 each), no price
    inst = ci.Instance(time=np.arange(float(requests)), object_id=np.zeros(requests, dtype=int),
                       size=[1.0], miss_cost=[1.0], capacity=1.0)
    for method in cs.LP_METHODS:
        assert bench.bound(inst, method=method).value == float(requests), method
        assert cs.solve_lp(inst, method=method).price.shape == (0,), method
    for backend in LP_BACKENDS:  # an empty family labelled by gap (not a phantom gap 0, nor none)
        prices = servopt.solve(inst, relax=True, backend=backend).prices["cache_capacity"]
        assert len(prices) == 0 and prices.index.name == "gap", backend


@pytest.mark.parametrize("size", [1.0, 1e-9, 1e-15])
def test_the_evaluator_and_the_rules_cache_hold_one_object_in_a_cache_of_one(size):
    # requests 0 1 0 1, room for one object: Belady misses 3 times (by hand, as at unit size).
    # An absolute 1e-9-token slack let both objects of 1e-9 tokens in: 2.0, "ok", below the LP
    # bound 3
    inst = ci.Instance(time=np.arange(4.0), object_id=[0, 1, 0, 1], size=[size, size],
                       miss_cost=[1.0, 1.0], capacity=size)
    out = bench.evaluate(inst, "belady")
    assert (out.cost, out.status) == (3.0, "ok")
    assert bench.bound(inst).value == pytest.approx(3.0)
    cache = cs.Cache([size, size], size)  # the bid-price rule's own cache: the lower priority goes
    cache.put(0, 2.0, hit=False)
    cache.put(1, 1.0, hit=False)
    assert list(cache.cached) == [0] and cache.used == size
