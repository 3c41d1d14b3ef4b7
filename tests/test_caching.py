"""Caching: the interval LP and its flow forms agree, bounds match brute force and Belady, the
simulator counts hits as worked by hand, and bad input gets a clear error."""

from __future__ import annotations

import dataclasses
import fractions
import itertools
import math

import numpy as np
import pytest

from servopt import gap_table
from servopt.benchmarks import caching as bench
from servopt.core import InvalidInstanceError
from servopt.instances import caching as ci
from servopt.instances.traces import shared_trace
from servopt.models import caching as mc
from servopt.solvers import caching as cs
from servopt.solvers import exact


def unit_instance(sequence, capacity, size=None, cost=None) -> ci.Instance:
    objects = max(sequence) + 1
    return ci.Instance(time=np.arange(len(sequence), dtype=float), object_id=np.array(sequence),
                       size=np.ones(objects) if size is None else np.asarray(size, float),
                       miss_cost=np.ones(objects) if cost is None else np.asarray(cost, float),
                       capacity=capacity)


def misses(instance, method) -> int:
    result = bench.simulate(instance, method)
    return result.requests - result.hits


# ---------------------------------------------------------------------------------------------
# The LP: five formulations agree
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lp_formulations_agree(seed):
    inst = ci.generate(requests=250, objects=50, cache_share=0.06, seed=seed)
    values = {
        "highs_matrix": cs.solve_lp(inst).value,
        "highs_matrix_ipm": cs.solve_lp(inst, algorithm="ipm").value,
        "highs_matrix_dual": cs.solve_lp(inst, algorithm="dual_simplex").value,
        "pyomo_flow": exact.solve(inst, relax=True).objective,
        "pyomo_interval": exact.solve(inst, relax=True, form="interval").objective,
        "cvxpy_flow": exact.solve(inst, relax=True, backend="cvxpy").objective,
        "cvxpy_interval": exact.solve(inst, relax=True, backend="cvxpy", form="interval").objective,
        "networkx": cs.solve_lp(inst, method="networkx").value,
    }
    reference = values["pyomo_interval"]
    for name, value in values.items():
        # networkx rounds arc costs down to 1e-6 of the cheapest cost per token: allow that
        assert value == pytest.approx(reference, rel=1e-6), name
    assert values["networkx"] <= reference * (1 + 1e-12)  # rounded down: still a lower bound


@pytest.mark.parametrize("unit", [1.5e-5, 1.2e-5, 1e-6, 1e3])
def test_networkx_flow_is_a_bound_in_any_cost_unit(unit):
    # the audit's case: the same costs in another unit (x 1.5e-5, e.g. ms -> dollars). The old
    # fixed weight scale 1e6 with rounding to nearest gave 0.16152 against the LP's 0.15481, above
    # Belady's achievable 0.15759: a "lower bound" above a real schedule. Reference: the HiGHS LP.
    inst = ci.generate(requests=300, objects=60, cache_share=0.06, seed=3)
    scaled = dataclasses.replace(inst, miss_cost=inst.miss_cost * unit)
    lp = cs.solve_lp(scaled).value
    flow = cs.solve_lp(scaled, method="networkx").value
    assert lp * (1 - 1e-6) <= flow <= lp * (1 + 1e-12)
    assert flow <= bench.evaluate(scaled, "belady").cost


def test_networkx_flow_with_costs_spanning_300_orders_of_magnitude():
    # the review's case: the data-derived weight scale (1e6 / the cheapest cost per token) times
    # 1e10 overflowed to inf (a bare OverflowError); capped, the value is the LP's within 1e-6
    inst = ci.Instance(time=np.arange(8.0), object_id=np.array([0, 1, 2, 0, 1, 2, 0, 2]),
                       size=np.array([1, 1, 3]), miss_cost=np.array([1e-300, 2.58, 1e10]), capacity=3)
    lp = cs.solve_lp(inst).value
    assert lp * (1 - 1e-6) <= cs.solve_lp(inst, method="networkx").value <= lp * (1 + 1e-12)


@pytest.mark.parametrize(("sequence", "capacity", "by_hand"), [
    ([], 1.0, 0.0),  # no request
    ([0], 1.0, 1.0),  # one request: one first miss, no interval
    ([0, 0], 0.0, 2.0),  # a cache of size 0 never hits
    ([0, 1, 0, 1], 1.0, 3.0),  # the two intervals overlap at gap 1: keep one of them
])
def test_edge_cases_by_hand(sequence, capacity, by_hand):
    inst = ci.Instance(time=np.arange(len(sequence), dtype=float),
                       object_id=np.array(sequence, dtype=np.int64), size=np.ones(2),
                       miss_cost=np.ones(2), capacity=capacity)
    assert cs.solve_lp(inst).value == pytest.approx(by_hand)
    assert cs.solve_lp(inst, method="networkx").value == pytest.approx(by_hand)
    for form in mc.FORMS:
        assert exact.solve(inst, relax=True, form=form).objective == pytest.approx(by_hand)
        assert exact.solve(inst, relax=True, backend="cvxpy", form=form).objective == pytest.approx(by_hand)
    assert bench.simulate(inst, "belady").miss_cost == pytest.approx(by_hand)


def lagrangian(inst: ci.Instance, price: np.ndarray) -> float:
    """Dual function of the interval LP: sum_i min(c_i, s_i Lambda_i) - C sum_t price_t + const."""
    iv = mc.intervals(inst)
    cum = np.concatenate([[0.0], np.cumsum(price)])
    lam = cum[iv.end] - cum[iv.start]
    ok = iv.fits
    return float(iv.first_miss_cost + iv.cost[~ok].sum()
                 + np.minimum(iv.cost[ok], iv.size[ok] * lam[ok]).sum()
                 - inst.capacity * price.sum())


@pytest.mark.parametrize(("sequence", "capacity", "kept"), [
    ([0, 1, 0, 1], 1.0, [1]),  # gap 0 only rises into gap 1; gap 2 only falls from it
    ([0, 1, 0, 1], 2.0, []),  # both intervals fit together: no row can bind
    ([0, 2, 1, 0, 1], 1.0, [2]),  # object 2 is requested once: gaps 0-1 share one occupancy
    ([0, 1, 0, 1, 0, 1], 1.0, [1, 2, 3]),  # gap 0 and gap 4 are dominated
])
def test_binding_gaps_by_hand(sequence, capacity, kept):
    inst = unit_instance(sequence, capacity)
    assert mc.binding_gaps(inst).tolist() == kept


@pytest.mark.parametrize("seed", range(12))
def test_reduced_network_is_exact(seed):
    """Dropping the rows that cannot bind changes neither the value nor the prices' validity."""
    rng = np.random.default_rng(seed)
    inst = ci.generate(requests=int(rng.integers(20, 400)), objects=int(rng.integers(3, 80)),
                       skew=float(rng.uniform(0.3, 1.4)),
                       cache_share=float(rng.choice([0.01, 0.05, 0.2, 0.6])), seed=seed)
    full = cs.solve_lp(inst, reduce=False)
    reduced = cs.solve_lp(inst, reduce=True)
    assert reduced.value == pytest.approx(full.value, rel=1e-9)
    assert reduced.value == pytest.approx(exact.solve(inst, relax=True, form="interval").objective, rel=1e-7)
    assert lagrangian(inst, reduced.price) == pytest.approx(full.value, rel=1e-7)
    dropped = np.setdiff1d(np.arange(inst.requests - 1), mc.binding_gaps(inst))
    assert np.all(reduced.price[dropped] == 0)
    # servopt.solve's matrix form is this network, labelled like the Pyomo model
    matrix, pyomo = exact.solve(inst, relax=True), exact.solve(inst, relax=True, backend="pyomo")
    assert matrix.info["form"] == "matrix"
    assert matrix.objective == pytest.approx(pyomo.objective, rel=1e-9)
    assert lagrangian(inst, matrix.prices["cache_capacity"].to_numpy()) == pytest.approx(
        full.value, rel=1e-7)
    assert matrix.prices["cache_capacity"].index.equals(pyomo.prices["cache_capacity"].index)
    for key in ("keep", "occupancy"):
        assert matrix.decisions[key].index.equals(pyomo.decisions[key].index)


@pytest.mark.parametrize("seed", [0, 3])
def test_prices_certify_the_bound(seed):
    """Weak duality: any prices >= 0 give a lower bound; the LP's prices give the LP value."""
    inst = ci.generate(requests=300, objects=60, cache_share=0.05, seed=seed)
    fast = cs.solve_lp(inst)
    matrix = exact.solve(inst, relax=True)
    pyomo = exact.solve(inst, relax=True, backend="pyomo")
    cvx = exact.solve(inst, relax=True, backend="cvxpy", form="interval")
    assert (matrix.info["form"], pyomo.info["form"]) == ("matrix", "pyomo")
    assert matrix.objective == pytest.approx(pyomo.objective, rel=1e-9)
    for price in (fast.price, matrix.prices["cache_capacity"].to_numpy(),
                  pyomo.prices["cache_capacity"].to_numpy(),
                  cvx.prices["cache_capacity"].to_numpy()):
        assert np.all(price >= 0)
        assert lagrangian(inst, price) == pytest.approx(fast.value, rel=1e-7)
    # perturbed prices are still a valid (weaker) bound
    assert lagrangian(inst, fast.price * 0.5) <= fast.value + 1e-7
    assert lagrangian(inst, fast.price * 2.0) <= fast.value + 1e-7
    assert pyomo.prices["cache_capacity"].index.equals(matrix.prices["cache_capacity"].index)
    assert pyomo.prices["cache_capacity"].index.name == "gap"
    # the matrix form's occupancy is that of its kept intervals, like the Pyomo model's
    keep = matrix.decisions["keep"].to_numpy()
    iv = mc.intervals(inst)
    alive = np.zeros(inst.requests)
    for i in np.flatnonzero(keep > 0):
        alive[iv.start[i]:iv.end[i]] += iv.size[i] * keep[i]
    assert np.allclose(matrix.decisions["occupancy"].to_numpy(), alive[:-1])
    assert alive.max() <= inst.capacity + 1e-6


def brute_force(inst: ci.Instance) -> float:
    """Cheapest integral schedule over all subsets of intervals (tiny instances)."""
    iv = mc.intervals(inst)
    gaps = inst.requests - 1
    best = np.inf
    for keep in itertools.product([0, 1], repeat=len(iv.start)):
        keep = np.array(keep, dtype=bool)
        occupancy = np.zeros(gaps)
        for i in np.flatnonzero(keep):
            occupancy[iv.start[i]:iv.end[i]] += iv.size[i]
        if np.all(occupancy <= inst.capacity + 1e-9):
            best = min(best, iv.first_miss_cost + iv.cost[~keep].sum())
    return best


@pytest.mark.parametrize("seed", range(6))
def test_unit_sizes_bound_equals_belady_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    sequence = rng.integers(0, 5, 14).tolist()
    inst = unit_instance(sequence, capacity=2)
    lp = cs.solve_lp(inst).value
    assert lp == pytest.approx(brute_force(inst))
    assert bench.simulate(inst, "belady").miss_cost == pytest.approx(lp)


@pytest.mark.parametrize("seed", range(4))
def test_sized_schedule_brackets_the_optimum(seed):
    rng = np.random.default_rng(seed)
    sequence = rng.integers(0, 4, 12).tolist()
    inst = unit_instance(sequence, capacity=5, size=rng.integers(1, 5, 4),
                         cost=rng.uniform(1, 10, 4))
    lp = cs.solve_lp(inst)
    optimum = brute_force(inst)
    keep = cs.round_schedule(inst, lp)
    scheduled = bench.simulate(inst, cs.LPSchedule(lp)).miss_cost
    assert lp.value <= optimum + 1e-9
    assert scheduled >= optimum - 1e-9
    assert scheduled == pytest.approx(cs.schedule_cost(inst, lp, keep))  # model vs simulator


# ---------------------------------------------------------------------------------------------
# The simulator and the baselines, against hand-worked and published sequences
# ---------------------------------------------------------------------------------------------
# Silberschatz, Galvin and Gagne, Operating System Concepts, ch. 9 (page replacement): reference
# string 7 0 1 2 0 3 0 4 2 3 0 3 2 1 2 0 1 7 0 1 with 3 frames: FIFO 15 faults, LRU 12, OPT 9.
# OPT there must load every faulting page; a cache may bypass, which saves one more miss: page 4
# (t=7) is never used again, so bypassing it keeps page 0, which then hits at t=10.
REFERENCE = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1]


@pytest.mark.parametrize(("method", "faults"), [("fifo", 15), ("lru", 12), ("belady", 8)])
def test_textbook_page_faults(method, faults):
    assert misses(unit_instance(REFERENCE, capacity=3), method) == faults


def test_textbook_optimum_is_the_lp_bound():
    inst = unit_instance(REFERENCE, capacity=3)
    assert cs.solve_lp(inst).value == pytest.approx(8)
    assert brute_force(inst) == pytest.approx(8)


def test_lfu_by_hand():
    # capacity 2: a a b c a b. a:2 after t1; b enters (a, b); c evicts b (count 1, older than a?
    # both b and c... b has count 1 and c count 1 -> the least recent, b, goes); a hits; b misses
    # and evicts c (count 1) -> misses: a, b, c, b = 4
    assert misses(unit_instance([0, 0, 1, 2, 0, 1], capacity=2), "lfu") == 4
    assert misses(unit_instance([0, 0, 1, 2, 0, 1], capacity=2), "lru") == 5


def test_greedy_dual_size_by_hand():
    # sizes (1, 2, 1), costs (4, 2, 1), capacity 3 -> densities c/s = 4, 1, 1.
    # t0 a: H=4. t1 b: H=1, full (3). t2 c: H=1 -> 4 tokens: evict the lowest, b (H=1, older),
    # L=1. t3 b: miss, H=L+1=2 -> a(4) + c(1) + b(2) = 4 > 3: evict c (H=1), L=1.
    # t4 c: miss, H=2 -> a + b + c = 4: evict b (H=2, older than c) -> L=2. t5 a: hit.
    inst = unit_instance([0, 1, 2, 1, 2, 0], capacity=3, size=[1, 2, 1], cost=[4, 2, 1])
    result = bench.simulate(inst, "gds", record=True)
    assert result.hit.tolist() == [False, False, False, False, False, True]
    assert result.miss_cost == pytest.approx(4 + 2 + 1 + 2 + 1)
    assert result.contents == [0, 2]
    # GDSF counts b's second request only while cached: b was evicted, so freq restarts at 1
    assert bench.simulate(inst, "gdsf").miss_cost == pytest.approx(10)


def test_greedy_dual_inflation_ages_out_an_expensive_object():
    """The example above ends the same without L; here L decides. Room for 2 unit objects, costs
    a 3, b 1, c 1; requests a b c b c b c a; as Cao and Irani publish it, a miss first evicts
    the lowest H among the cached objects (setting L), then the new object gets H = L + c.
    t2 c: evict b (H 1), L = 1, c: 2. t3 b: evict c (2), L = 2, b: 3. t4 c: a (3) and b (3)
    tie, a is the older and goes, L = 3, c: 4. t5 b, t6 c hit (H = 3 + 1). t7 a misses:
    6 misses, cost 3 + 1 + 1 + 1 + 1 + 3 = 10. Without the inflation (L = 0) b and c would
    only evict each other and a would hit at t7 (cost 9)."""
    inst = unit_instance([0, 1, 2, 1, 2, 1, 2, 0], capacity=2, cost=[3, 1, 1])
    result = bench.simulate(inst, "gds", record=True)
    assert result.hit.tolist() == [False] * 5 + [True, True, False]
    assert result.miss_cost == pytest.approx(10)


def test_greedy_dual_size_example_of_the_audit():
    """Room for 2 unit objects, costs a 10, b 10, c 1; requests a b c c. The published order
    brings c in (evicting a or b, L = 10, H(c) = 11), so the second c hits: cost 21. (Computing
    H(c) = 0 + 1 before the evictions would make c the lowest and bypass it twice: 22.)"""
    inst = unit_instance([0, 1, 2, 2], capacity=2, cost=[10, 10, 1])
    for method in ("gds", "gdsf"):
        result = bench.simulate(inst, method, record=True)
        assert result.hit.tolist() == [False, False, False, True]
        assert result.miss_cost == pytest.approx(21)


def test_demand_fetch_rules_always_bring_the_requested_object_in():
    # room for 1: a a b b. LFU and LEC rank b (1 request) below a (2), but a demand-fetch cache
    # must hold b to serve it, so a goes and b's second request hits: 2 misses, not 3
    inst = unit_instance([0, 0, 1, 1], capacity=1)
    for method in ("lfu", "lec", "gds", "gdsf", "lru", "fifo"):
        assert misses(inst, method) == 2, method


def test_greedy_dual_frequency_restarts_after_an_eviction():
    """Room for 2 unit objects of cost 1 (GDSF: H = L + freq). a b c c a b a. t2 c: evict a
    (H 1, older than b), L = 1, c: 2. t3 c hits: freq 2, H = 3. t4 a misses: freq restarts at
    1; evict b (1), L = 1, a: 2. t5 b misses (freq 1): evict a (2), L = 2, b: 3. t6 a misses.
    Had a's freq kept its first request, a would have H = 3 at t4, t5 would evict c (3, older)
    and a would hit at t6."""
    inst = unit_instance([0, 1, 2, 2, 0, 1, 0], capacity=2)
    hits = bench.simulate(inst, "gdsf", record=True).hit.tolist()
    assert hits == [False, False, False, True, False, False, False]


def test_least_expected_cost_by_hand():
    """LEC keeps the larger k / (k + 1) x c (k: requests so far). Room for 2 unit objects; costs
    a 4, b 2, c 10; requests b b b a c a b. After b b b: b = 3/4 x 2 = 1.5; a = 1/2 x 4 = 2;
    c = 1/2 x 10 = 5 evicts b (1.5); a hits (2/3 x 4); b misses and evicts a (2.67, the lower
    of the others: demand fetch).
    (A count k x c would rank b 6 above a 4 and evict a instead.)"""
    inst = unit_instance([1, 1, 1, 0, 2, 0, 1], capacity=2, cost=[4, 2, 10])
    result = bench.simulate(inst, "lec", record=True)
    assert result.hit.tolist() == [False, True, True, False, False, True, False]
    assert result.contents == [1, 2]  # b came in and a went (bypassing b would keep a and c)
    # the value is cost, not cost per token: x (4 tokens, cost 4) outranks y (1 token, cost 2);
    # z (1 token) fills the cache of 5 tokens and y goes, so x hits
    sized = unit_instance([0, 1, 2, 0], capacity=5, size=[4, 1, 1], cost=[4, 2, 100])
    assert bench.simulate(sized, "lec", record=True).hit.tolist() == [False, False, False, True]


@pytest.mark.parametrize(("cost", "by_hand"), [
    # t2: a = 1/3, b = 4/8, c = 3/10: c goes (cost alone would evict a, the cheapest)
    ([1, 4, 3], [False, False, False] + [True] * 9 + [False]),
    # t2: a = 1/3, b = 4/8, c = 10/10: a goes (distance alone would evict c, the furthest);
    # t3 a (1/1) then evicts b (1/2), so b misses at t9
    ([1, 4, 10], [False] * 4 + [True] * 5 + [False] + [True] * 3),
])
def test_belady_size_weighs_cost_per_token_by_distance(cost, by_hand):
    """Room for 2 unit objects a, b, c; requests a b c a a a a a a b a a c. At t2 the next
    requests are a at 3, b at 9, c at 12: belady_size evicts the smallest c / (s x distance).
    An object with no further request is dropped (a at t11, b at t9 in the first case)."""
    inst = unit_instance([0, 1, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2], capacity=2, cost=cost)
    assert bench.simulate(inst, "belady_size", record=True).hit.tolist() == by_hand


@pytest.mark.parametrize("method", list(cs.POLICIES))
def test_every_policy_stays_within_capacity(method):
    inst = ci.generate(requests=1500, objects=300, cache_share=0.03, seed=5)
    result = bench.simulate(inst, method, record=True)
    assert result.occupancy.max() <= inst.capacity + 1e-6
    assert inst.size[result.contents].sum() == pytest.approx(result.occupancy[-1])
    # a hit needs an earlier request of the same object
    seen = np.zeros(inst.objects, dtype=bool)
    for t, o in enumerate(inst.object_id):
        assert not (result.hit[t] and not seen[o])
        seen[o] = True
    assert result.miss_cost >= cs.solve_lp(inst).value - 1e-6
    assert result.miss_cost == pytest.approx(
        inst.miss_cost[inst.object_id[~result.hit]].sum())


def test_object_larger_than_cache_is_never_cached():
    inst = unit_instance([1, 1, 0, 0, 1], capacity=5, size=[1, 10], cost=[2, 7])
    for method in cs.POLICIES:
        result = bench.simulate(inst, method, record=True)
        assert result.hit.tolist() == [False, False, False, True, False], method
    assert cs.solve_lp(inst).value == pytest.approx(3 * 7 + 2)
    assert exact.solve(inst, relax=True).objective == pytest.approx(3 * 7 + 2)
    # metrics with a 2-token object: 1 hit in 5 requests; 2 tokens of 10 + 10 + 2 + 2 + 10 = 34
    # served from the cache
    metrics = bench.evaluate(unit_instance([1, 1, 0, 0, 1], capacity=5, size=[2, 10],
                                           cost=[2, 7]), "lru").metrics
    assert metrics["hit_ratio"] == pytest.approx(1 / 5)
    assert metrics["byte_hit_ratio"] == pytest.approx(2 / 34)


@pytest.mark.parametrize(("keep", "cost", "kept"), [
    ([0.3, 0.6, 0.1], [1, 1, 1], [False, True, False]),  # the largest keep first: b
    ([0.5, 0.5, 0.0], [1, 3, 1], [False, True, False]),  # a tie in keep: higher cost per token
    ([1.0, 0.0, 0.7], [1, 1, 1], [True, False, False]),  # a whole interval is kept first
])
def test_round_schedule_by_hand(keep, cost, kept):
    """Room for one unit object; requests a b c a b c: the intervals a 0-3, b 1-4, c 2-5 all
    span gap 2, so one at most is kept. Fractional intervals are added in decreasing keep
    (ties: higher cost per token) while they fit; an interval the LP drops (keep 0) never is."""
    inst = unit_instance([0, 1, 2, 0, 1, 2], capacity=1, cost=cost)
    iv = mc.intervals(inst)
    order = np.argsort(iv.start)
    assert iv.start[order].tolist() == [0, 1, 2] and iv.end[order].tolist() == [3, 4, 5]
    lp = cs.LPResult(value=np.nan, keep=np.empty(3), price=np.zeros(5), intervals=iv, wall_s=0.0,
                     method="by hand")
    lp.keep[order] = keep
    assert cs.round_schedule(inst, lp)[order].tolist() == kept
    # lp_schedule keeps an object only over its kept interval: one hit, at that interval's end
    hits = [False] * 6
    hits[3 + kept.index(True)] = True
    assert bench.simulate(inst, cs.LPSchedule(lp), record=True).hit.tolist() == hits


def test_static_set_fits_and_prefers_value_per_token():
    inst = unit_instance([0, 0, 0, 1, 1, 2, 2, 2, 2], capacity=3, size=[2, 1, 2], cost=[1, 1, 1])
    # saved cost per token: a 2/2, b 1/1, c 3/2 -> c then b (a does not fit any more)
    assert cs.static_set(inst).tolist() == [False, True, True]
    # a first request is a miss for any set: an object requested once saves nothing, whatever
    # its cost (room for one; a: 2 requests, cost 1 saves 1; b: 1 request, cost 5 saves 0)
    once = unit_instance([0, 0, 1], capacity=1, cost=[1, 5])
    assert cs.static_set(once).tolist() == [True, False]
    # per token, not per object: a (2 tokens) saves 3, b and c (1 token each) save 2 each; room
    # for 2 tokens -> b and c (2 per token) beat a (1.5 per token, the largest saving)
    per_token = unit_instance([0] * 4 + [1] * 3 + [2] * 3, capacity=2, size=[2, 1, 1])
    assert cs.static_set(per_token).tolist() == [False, True, True]
    # expected requests mu (Poisson): saved c x (mu - 1 + e^-mu); a: mu 0.5, cost 10 ->
    # 10 x 0.1065 = 1.065; b: mu 2, cost 1 -> 1.135: b, though a's 10 x 0.5 > b's 1 x 2
    assert cs.static_set(unit_instance([0, 1], capacity=1, cost=[10, 1]),
                         popularity=np.array([0.5, 2.0])).tolist() == [False, True]


def test_phase_popularity_is_the_generator_s():
    kw = {"requests": 3000, "objects": 500, "skew": 0.9, "phases": 4, "seed": 5}
    inst = ci.generate(**kw)
    bounds, probability = ci.phase_popularity(**kw)
    assert bounds.tolist() == [0, 750, 1500, 2250, 3000]
    np.testing.assert_allclose(probability.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diff(bounds) @ probability, inst.popularity)


def test_phase_static_by_hand():
    """Room for one object. Phase 0 (requests 0-3) prefers object 0, phase 1 (4-7) object 1.
    Phase 0: 1 fills the empty cache (rank 0) until 0 arrives; phase 1: 0 loses its rank, and 1
    takes its place at its first request."""
    inst = unit_instance([1, 1, 0, 0, 0, 1, 1, 0], capacity=1.0)
    policy = cs.PhaseStatic([0, 4, 8], [[0.9, 0.1], [0.1, 0.9]])
    hits = bench.simulate(inst, policy, record=True).hit.tolist()
    assert hits == [False, True, False, True, True, False, True, False]


def test_phase_static_with_one_phase_keeps_every_hit_of_static():
    """Members are never evicted (they fit together), others only use free room: every hit of
    the static reference is a hit of the one-phase reference with the same popularity."""
    inst = ci.generate(requests=4000, objects=800, cache_share=0.05, seed=4)
    static = bench.simulate(inst, "static", record=True)
    phase = bench.simulate(inst, cs.PhaseStatic([0, inst.requests],
                                                [inst.popularity / inst.requests]), record=True)
    assert np.all(phase.hit[static.hit]) and phase.miss_cost <= static.miss_cost
    assert phase.max_occupancy <= inst.capacity
    with pytest.raises(InvalidInstanceError, match="probability table"):
        bench.simulate(inst, cs.PhaseStatic([0, 10], [inst.popularity / inst.requests]))


def test_bid_price_learns_a_price_and_tracks_it():
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=2)
    policy = cs.make_policy("bid_price")
    bench.simulate(inst, policy)
    assert policy.warm_end == 600 and [t for t, _ in policy.prices][:2] == [0, 600]
    assert policy.price > 0  # the warm-up LP's capacity rows bind
    assert len(policy.prices) > 2  # refreshed on the sliding window
    # each refresh is the mean LP price of the last 600 requests only (bid_price_window: scale
    # 1; the tuned bid_price chose scale 0 here, so its price history is all zeros)
    window_policy = cs.make_policy("bid_price_window")
    bench.simulate(inst, window_policy)
    assert [t for t, _ in window_policy.prices] == [0, 600, 1200, 1800, 2400]
    for t, price in window_policy.prices[2:]:
        window = cs.request_window(inst, t - 600, t)
        assert price > 0 and price == pytest.approx(cs.solve_lp(window).price.mean())


@pytest.mark.parametrize(("tau_objects", "by_hand"), [(1e6, [False, True, False, True]),
                                                     (1.0, [False, True, False, False])])
def test_bid_price_value_order_by_hand(tau_objects, by_hand):
    """Room for one object. After 0, 0, 1: object 0 has weight e^(0/tau) + e^(1/tau), object 1
    e^(2/tau). Slow ageing (tau = 1e6): 2 > 1, object 1 is dropped and 0 hits again (LFU);
    fast ageing (tau = 1): log(1 + e) = 1.31 < 2, object 0 is evicted (LRU)."""
    inst = unit_instance([0, 0, 1, 0], capacity=1.0)
    policy = cs.BidPrice(tau_objects=tau_objects, tune=False)
    assert bench.simulate(inst, policy, record=True).hit.tolist() == by_hand


class _FlipToRank:
    """LRU until request ``flip``, then a fixed rank per object (``rank``), and asks the cache
    to re-rank what it holds."""

    def __init__(self, flip, rank):
        self.flip, self.rank, self.rerank, self.ranked = flip, rank, False, False

    def start(self, instance):
        self.last = [0] * instance.objects

    def touch(self, t, o, hit):
        self.last[o] = t
        if t == self.flip:
            self.ranked = self.rerank = True
        return self.priority(o)

    def priority(self, o):
        return self.rank[o] if self.ranked else self.last[o]


FLIP_SEQUENCE, FLIP_RANK = [0, 1, 2, 0, 1], [5.0, 0.0, 3.0]
# Room for 2. LRU throughout: 2 evicts 0, 0 evicts 1, 1 misses: all miss. Ranked at request 2
# (0: 5, 1: 0, 2: 3) with the cache re-ranked: 2 evicts 1, so 0 hits and 1 misses. Without the
# re-rank 0 and 1 would keep their LRU priorities (0, 1): 2 would evict 0, which would miss and
# evict 1 (rank 0 now): all miss.
FLIP_HITS = {"lru": [False] * 5, "reranked": [False, False, False, True, False],
             "not reranked": [False] * 5}


def test_simulator_reranks_when_the_policy_asks():
    inst = unit_instance(FLIP_SEQUENCE, capacity=2.0)
    lru = bench.simulate(inst, _FlipToRank(99, FLIP_RANK), record=True)
    assert lru.hit.tolist() == FLIP_HITS["lru"]
    flipped = bench.simulate(inst, _FlipToRank(2, FLIP_RANK), record=True)
    assert flipped.hit.tolist() == FLIP_HITS["reranked"]


def rule_cache_misses(sequence, capacity, priority, size=None) -> list[bool]:
    """Drive the rule's own :class:`~servopt.solvers.caching.Cache` directly: the miss flags."""
    size = [1.0] * (max(sequence) + 1) if size is None else size
    cache = cs.Cache(size, capacity)
    out = []
    for t, o in enumerate(sequence):
        hit = o in cache.cached
        out.append(not hit)
        cache.put(o, priority(t, o, hit), hit)
        assert cache.used <= capacity + 1e-9
        assert cache.used == pytest.approx(sum(size[v] for v in cache.cached))
    return out


def test_rule_cache_textbook_page_faults():
    """The bid-price rule's own cache against the same published counts as the evaluator: LRU
    12 faults, FIFO 15 on the textbook reference string with 3 frames."""
    assert sum(rule_cache_misses(REFERENCE, 3.0, lambda t, o, hit: t)) == 12
    inserted = {}

    def fifo(t, o, hit):
        if not hit:
            inserted[o] = t
        return inserted[o]

    assert sum(rule_cache_misses(REFERENCE, 3.0, fifo)) == 15


def test_rule_cache_by_hand():
    """Room for 2 tokens. Sizes a=1, b=1, c=3 (larger than the cache). a b c a b: c is never
    kept, so a and b hit. Dropping a (priority None) at its first request makes its second a
    miss. A re-rank changes which object the next miss evicts (as in the evaluator's test)."""
    size = [1.0, 1.0, 3.0]
    assert rule_cache_misses([0, 1, 2, 0, 1], 2.0, lambda t, o, hit: t, size) == \
        [True, True, True, False, False]
    # equal priorities: the older entry goes (a b c a: c evicts a, which misses again)
    assert rule_cache_misses([0, 1, 2, 0], 2.0, lambda t, o, hit: 0.0) == [True] * 4
    drop_first_a = rule_cache_misses([0, 1, 0, 0], 2.0,
                                     lambda t, o, hit: None if t == 0 else t, size)
    assert drop_first_a == [True, True, True, False]
    for rerank, expected in ((True, "reranked"), (False, "not reranked")):
        cache, policy, hits = cs.Cache([1.0, 1.0, 1.0], 2.0), _FlipToRank(2, FLIP_RANK), []
        policy.start(unit_instance(FLIP_SEQUENCE, capacity=2.0))
        for t, o in enumerate(FLIP_SEQUENCE):
            hit = o in cache.cached
            hits.append(hit)
            priority = policy.touch(t, o, hit)
            if rerank and policy.rerank:
                policy.rerank = False
                cache.rerank(policy.priority)
            cache.put(o, priority, hit)
        assert hits == FLIP_HITS[expected]


@pytest.mark.parametrize(("seed", "price_share", "kw"), [
    (2, 0.0, {"experts": cs.EXPERTS}),  # switching ageing (re-ranks), no price
    (3, 0.5, {"experts": cs.EXPERTS}),  # and admission by a price
    (1, 2.0, {"tau_objects": 5.0}),  # one fixed ageing, a high price
])
def test_rule_replay_matches_the_evaluator(seed, price_share, kw):
    """The rule's own replay (its warm-up tuning) and the evaluator's simulator are separate
    code: they must agree to the last bit on the same rule, with re-ranks and refusals."""
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=seed)
    price = price_share * cs.solve_lp(inst).price.mean()

    def rule(price=price):
        return cs.BidPrice(price=price, tune=False, priced=False, **kw)

    replayed = rule()
    cost = replayed.replay(inst)
    assert cost == bench.simulate(inst, rule()).miss_cost
    if "experts" in kw:
        assert len(replayed.switches) > 2  # the replay went through re-ranks
    if price > 0:  # the price refused some objects
        assert cost != bench.simulate(inst, rule(0.0)).miss_cost


def test_warm_up_tuning_picks_the_evaluator_s_best_scale():
    """The scale the warm-up replay chooses is the one with the lowest miss cost on the warm-up
    window as the evaluator counts it (ties: the smaller scale)."""
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=2)
    scales = (0.5, 1.0, 2.0, 4.0)
    policy = cs.BidPrice(warmup=0.2, experts=cs.EXPERTS, scales=scales)
    bench.simulate(inst, policy)
    window = cs.request_window(inst, 0, policy.warm_end)
    costs = [bench.simulate(window, cs.BidPrice(price=policy.price, price_scale=s, tune=False,
                                                priced=False, experts=cs.EXPERTS)).miss_cost
             for s in scales]
    assert policy.price > 0 and len(set(costs)) > 1
    assert policy.price_scale == scales[int(np.argmin(costs))]


def test_warm_up_tuning_breaks_ties_to_the_smaller_scale():
    """A price so small that no scale refuses anything: every replay costs the same, and the
    rule keeps the smallest scale offered."""
    inst = ci.generate(requests=600, objects=120, cache_share=0.05, seed=1)
    policy = cs.BidPrice(price=1e-30, tune=False, priced=False, experts=cs.EXPERTS,
                         scales=(4.0, 0.5, 2.0))
    policy.start(inst)
    policy._tune(inst)
    assert policy.price_scale == 0.5


def test_adaptive_ageing_scores_each_expert_by_its_own_replay():
    """With no discounting, each expert's score is the miss cost of a cache that runs that
    expert alone (the evaluator's replay of the fixed-ageing rule, or LRU)."""
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=3)
    policy = cs.BidPrice(experts=(0.0, 50.0), horizon=1e12, tune=False)
    bench.simulate(inst, policy)
    lru = bench.simulate(inst, "lru").miss_cost
    slow = bench.simulate(inst, cs.BidPrice(tau_objects=50.0, tune=False)).miss_cost
    assert policy.score == pytest.approx([lru, slow], rel=1e-9)


def test_adaptive_ageing_follows_recency_after_a_popularity_shift():
    """Room for 3. Objects 0-2 are requested 20 times each, then only 3-5. Slow ageing keeps
    the old objects and bypasses the new ones for a while; LRU hits the new ones from their
    second request. The adaptive rule switches to recency and misses less than slow ageing."""
    inst = unit_instance([0, 1, 2] * 20 + [3, 4, 5] * 30, capacity=3.0)
    slow = bench.simulate(inst, cs.BidPrice(tau_objects=50.0, tune=False))
    adaptive_policy = cs.make_policy("cost_freq_size")
    adaptive = bench.simulate(inst, adaptive_policy)
    lru = bench.simulate(inst, "lru")
    assert lru.requests - lru.hits == 6
    assert slow.miss_cost > adaptive.miss_cost
    assert [tau for _, tau in adaptive_policy.switches][:2] == [50.0, 0.0]
    # six distinct objects: every expert's shadow misses every request, the scores stay tied,
    # and a tie keeps the current (slow) expert: no switch
    tied = cs.make_policy("cost_freq_size")
    bench.simulate(unit_instance([0, 1, 2, 3, 4, 5], capacity=2.0), tied)
    assert tied.switches == [(0, 50.0)]


def test_adaptive_ageing_rejects_bad_experts():
    with pytest.raises(InvalidInstanceError, match="experts"):
        cs.BidPrice(experts=(0.0,))
    with pytest.raises(InvalidInstanceError, match="horizon"):
        cs.BidPrice(experts=(0.0, 50.0), horizon=0.0)


def test_bid_price_with_a_prohibitive_price_admits_nothing():
    inst = ci.generate(requests=500, objects=100, seed=1)
    result = bench.simulate(inst, cs.BidPrice(price=1e9, tune=False))
    assert result.hits == 0
    assert result.miss_cost == pytest.approx(inst.miss_cost[inst.object_id].sum())


@pytest.mark.parametrize("backend", ["highs", "cvxpy"])
def test_bid_price_from_solution_takes_the_lp_price_by_hand(backend):
    # requests A B A B, A: 2 tokens cost 4, B: 1 token cost 1, cache 2.5 tokens. Only gap 1
    # holds both intervals: keep A (2 per token), half of B (1 per token), so B's keep is
    # fractional and pins gap 1's price at B's 1 per token-step; gaps 0 and 2 are slack.
    # The rule's price is the mean over the 3 gaps: 1/3.
    inst = unit_instance([0, 1, 0, 1], 2.5, size=[2.0, 1.0], cost=[4.0, 1.0])
    sol = exact.solve(inst, relax=True, backend=backend)
    assert sol.objective == pytest.approx(4.0 + 1.0 + 0.5)
    policy = cs.BidPrice.from_solution(sol, experts=cs.EXPERTS)
    assert policy.price == pytest.approx(1 / 3)
    assert policy.price_scale == 1.0 and policy.warmup == 0.0


def test_bid_price_from_solution_refuses_other_solutions():
    from servopt.instances import batch_scheduling as bi

    other = exact.solve(bi.generate(n=4, seed=0), relax=True)
    with pytest.raises(InvalidInstanceError, match="caching LP"):
        cs.BidPrice.from_solution(other)
    sol = exact.solve(unit_instance([0, 1, 0, 1], 1.0), relax=True)
    stopped = dataclasses.replace(sol, status="time_limit")
    with pytest.raises(InvalidInstanceError, match="not solved to optimality"):
        cs.BidPrice.from_solution(stopped)


# ---------------------------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"size": [1.0, -2.0]}, "size of object 1 is -2"),
    ({"miss_cost": [1.0, -1.0]}, "miss_cost of object 1"),
    ({"time": [0.0, 2.0, 1.0]}, "time must be sorted"),
    ({"object_id": [0, 1, 2]}, "object 2, which has no size"),
    ({"capacity": -1.0}, "capacity"),
    ({"time": [0.0, 1.0]}, "one time per request"),
    ({"size": [1.0, 0.0]}, "size of object 1 is 0: sizes must be > 0"),  # the boundary
    ({"object_id": [0, -1, 0]}, "object -1, which has no size"),
    ({"miss_cost": [1.0, float("nan")]}, "miss_cost must be finite"),
    ({"miss_cost": [1.0]}, "size has 2 objects but miss_cost has 1"),
    ({"popularity": [1.0, -0.5]}, "popularity must give each object"),
])
def test_bad_input_is_named(change, message):
    fields = {"time": [0.0, 1.0, 2.0], "object_id": [0, 1, 0], "size": [1.0, 2.0],
              "miss_cost": [1.0, 1.0], "capacity": 2.0}
    fields.update(change)
    with pytest.raises(InvalidInstanceError, match=message):
        ci.Instance(**fields)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"requests": 2.5}, "requests must be a whole number"), ({"phases": 2.5}, "phases must be"),
    ({"requests": 10**12}, "at most"), ({"skew": -1.0}, "skew must be in"),
    ({"cache_share": 2.0}, "cache_share must be in"), ({"rate": 0.0}, "rate must be in"),
    ({"drift": float("nan")}, "drift must be in"),
])
def test_generator_refuses_bad_parameters_by_name(kwargs, message):
    with pytest.raises(InvalidInstanceError, match=message):
        ci.generate(**kwargs)


def test_zero_cost_and_zero_capacity_are_valid():
    inst = ci.Instance(time=[0.0, 1.0, 2.0], object_id=[0, 1, 0], size=[1.0, 2.0],
                       miss_cost=[0.0, 1.0], capacity=0.0)
    assert bench.simulate(inst, "lru").miss_cost == pytest.approx(1.0)  # object 1's one miss


def test_json_round_trip():
    inst = ci.generate(requests=200, objects=40, seed=3)
    back = ci.Instance.from_json(inst.to_json())
    assert back.content_hash() == inst.content_hash()
    assert cs.solve_lp(back).value == pytest.approx(cs.solve_lp(inst).value)


def test_generator_sizes_and_costs_are_not_proportional():
    inst = ci.generate(requests=100, objects=2000, seed=0)
    density = inst.miss_cost / inst.size
    names = inst.kind_names
    by_kind = {names[k]: np.median(density[inst.kind == k]) for k in range(len(names))}
    assert by_kind["thumbnail"] > 2 * by_kind["image"]  # fixed encoder overhead per item
    assert inst.popularity.sum() == pytest.approx(100)


def test_mooncake_blocks():
    path = shared_trace("mooncake_synthetic.jsonl")
    if path is None:
        pytest.skip("mooncake_synthetic.jsonl not in ../shared/traces")
    inst = ci.from_trace(path, max_requests=3000, cost="position", cache_share=0.1)
    assert np.all(inst.size == 512)
    assert inst.requests <= 3000
    assert inst.miss_cost.min() == pytest.approx(1.0)  # a block at position 0
    assert inst.capacity == pytest.approx(round(0.1 * len(np.unique(inst.object_id))) * 512)


def test_gap_table_runs():
    inst = ci.generate(requests=400, objects=80, seed=0)
    table = gap_table(inst, methods=["lru", "belady_size", "bid_price", "lp_schedule"])
    assert (table["gap"] >= -1e-9).all()
    assert set(table["bound_kind"]) == {"lp_relaxation"}
    assert {"hit_ratio", "byte_hit_ratio"} <= set(table.columns)


def test_auto_falls_back_to_interior_point(monkeypatch):
    inst = ci.generate(requests=2000, objects=400, cache_share=0.05, seed=4)
    reference = cs.solve_lp(inst, algorithm="dual_simplex")
    import highspy

    restarts = []
    clear = highspy.Highs.clearSolver
    monkeypatch.setattr(highspy.Highs, "clearSolver",
                        lambda self: (restarts.append(1), clear(self))[1])
    monkeypatch.setattr(cs, "AUTO_SIMPLEX_S", 1e-6)  # the simplex stops at once
    fallback = cs.solve_lp(inst, algorithm="auto")
    assert restarts == [1]
    assert fallback.value == pytest.approx(reference.value, rel=1e-9)
    assert lagrangian(inst, fallback.price) == pytest.approx(reference.value, rel=1e-7)


def test_phase_static_skips_an_empty_phase():
    """Room for one object; phases: requests 0-1, none, 2-3, each preferring object 1. At
    request 2 the empty phase (no member: no expected request) is passed over, so object 1 stays
    a member, object 0 (rank 0) bypasses the cache and object 1 hits at request 3. Stopping in
    the empty phase would rank both 0 and evict object 1, the older entry."""
    inst = unit_instance([1, 1, 0, 1], capacity=1.0)
    policy = cs.PhaseStatic([0, 2, 2, 4], [[0.0, 1.0]] * 3)
    assert bench.simulate(inst, policy, record=True).hit.tolist() == [False, True, False, True]
    with pytest.raises(InvalidInstanceError, match="bounds"):
        cs.PhaseStatic([1, 2, 4], [[1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("kw", [{"requests": 0}, {"skew": float("nan")}, {"cache_share": -1.0},
                                {"phases": 0}])
def test_phase_popularity_refuses_what_generate_refuses(kw):
    for make in (ci.generate, ci.phase_popularity):
        with pytest.raises(InvalidInstanceError):
            make(**kw)
    with pytest.raises(TypeError):
        ci.phase_popularity(skw=1.2)  # a misspelt argument is not silently ignored


@pytest.mark.parametrize("kw", [{"tau_objects": float("nan")}, {"horizon": float("nan")},
                                {"experts": (float("nan"), 50.0)}, {"price": float("nan")},
                                {"price": -5.0}, {"price_scale": "1"}])
def test_bid_price_refuses_nan_parameters(kw):
    with pytest.raises(InvalidInstanceError, match=next(iter(kw))):
        cs.BidPrice(**kw)


def test_simulator_ignores_a_priority_method_without_the_rerank_flag():
    class Recency:
        def start(self, instance):
            pass

        def touch(self, t, o, hit):
            return float(t)

        def priority(self, o):  # the policy's own helper, not the re-rank protocol
            return 0.0

    inst = unit_instance([0, 1, 2, 0, 1], capacity=2.0)
    assert bench.simulate(inst, Recency()).hits == bench.simulate(inst, "lru").hits


def test_policies_values_are_accepted_as_methods():
    # DESIGN: evaluate takes a POLICIES name or the method; the values are classes or factories
    inst = ci.generate(requests=400, objects=60, seed=2)
    for name in ("lru", "gdsf", "lec", "belady", "static", "cost_freq_size"):
        assert bench.simulate(inst, cs.POLICIES[name]).miss_cost == \
            bench.simulate(inst, name).miss_cost


def test_lp_schedule_refuses_the_lp_of_another_instance():
    first = ci.generate(requests=300, objects=50, seed=0)
    second = ci.generate(requests=300, objects=50, seed=1)
    with pytest.raises(InvalidInstanceError, match="another request sequence"):
        bench.simulate(second, cs.LPSchedule(cs.solve_lp(first)))


@pytest.mark.parametrize(("change", "message"), [
    ({"capacity": "15"}, "capacity must be a finite number"),
    ({"object_id": ["0", "1"]}, "object_id must be a vector of numbers"),
    ({"object_id": [True, False]}, "object_id must be a vector of numbers"),
])
def test_instance_refuses_text_and_booleans_for_numbers(change, message):
    fields = {"time": [0.0, 1.0], "object_id": [0, 1], "size": [1.0, 1.0], "miss_cost": [1.0, 1.0],
              "capacity": 1.0} | change
    with pytest.raises(InvalidInstanceError, match=message):
        ci.Instance(**fields)


def test_a_nan_priority_is_refused():
    class NaNRule(cs.LRU):
        def touch(self, t, o, hit):
            return float("nan")

    with pytest.raises(InvalidInstanceError, match="NaN"):
        bench.simulate(unit_instance([0, 1, 0], 1), NaNRule())


@pytest.mark.parametrize("answer", [lambda t: str(t), lambda t: np.array([1.0, 2.0]),
                                    lambda t: True, lambda t: 1j])
def test_a_priority_that_is_not_a_number_is_refused(answer):
    # a string would be ordered as text ("10" < "9") and cost silently more; an array failed deep
    # in the heap
    class OddRule(cs.LRU):
        def touch(self, t, o, hit):
            return answer(t)

    with pytest.raises(InvalidInstanceError, match="must return a number or None"):
        bench.simulate(unit_instance([0, 1, 0], 1), OddRule())


def test_numpy_and_integer_priorities_are_numbers():
    # LRU's priority is the request time: as an int or a numpy float it is the same LRU
    class IntLRU(cs.LRU):
        def touch(self, t, o, hit):
            return int(super().touch(t, o, hit))

    class NumpyLRU(cs.LRU):
        def touch(self, t, o, hit):
            return np.float32(super().touch(t, o, hit))

    class FractionLRU(cs.LRU):  # any real number (numbers.Real) is a priority
        def touch(self, t, o, hit):
            return fractions.Fraction(super().touch(t, o, hit))

    inst = ci.generate(requests=300, objects=40, seed=1, cache_share=0.05)
    lru = bench.simulate(inst, "lru").miss_cost
    assert bench.simulate(inst, IntLRU()).miss_cost == pytest.approx(lru)
    assert bench.simulate(inst, NumpyLRU()).miss_cost == pytest.approx(lru)
    assert bench.simulate(inst, FractionLRU()).miss_cost == pytest.approx(lru)


def test_balance_duals_differ_by_the_capacity_price_where_the_cache_holds_something():
    # stationarity in occupancy[t] (free, cost 0): balance[t] - balance[t+1] = capacity price[t]
    # wherever occupancy[t] > 0 (the docstring's reading of the flow form's balance duals)
    inst = ci.generate(requests=300, objects=40, seed=3, cache_share=0.05)
    sol = exact.solve(inst, relax=True, backend="pyomo")  # the matrix form leaves the balance duals out
    balance = sol.prices["occupancy_balance"].to_numpy()
    price = sol.prices["cache_capacity"].to_numpy()
    held = sol.decisions["occupancy"].to_numpy()[:-1] > 1e-9
    assert (price[:-1][held] > 1e-9).any()
    np.testing.assert_allclose((balance[:-1] - balance[1:])[held], price[:-1][held], atol=1e-7)


def test_solve_gives_the_integer_optimum_and_relax_the_interval_lp_by_hand():
    # requests 1 1 2 1 0 2; sizes 1, 1, 3; costs 0.71, 2.58, 2.47; cache 3 tokens. First misses
    # 2.58 + 2.47 + 0.71 = 5.76. Intervals: A = obj 1 (0 -> 1), B = obj 1 (1 -> 3), C = obj 2
    # (2 -> 5, 3 tokens); gap 2 holds B and C: 1 + 3 > 3. IP: keep A and B, miss C: 5.76 + 2.47
    # = 8.23 (keeping C instead costs 5.76 + 2.58). LP: keep C at 2/3: 5.76 + 2.47 / 3.
    inst = ci.Instance(time=np.arange(6.0), object_id=np.array([1, 1, 2, 1, 0, 2]),
                       size=np.array([1.0, 1.0, 3.0]), miss_cost=np.array([0.71, 2.58, 2.47]),
                       capacity=3.0)
    for kw in ({}, {"backend": "pyomo"}, {"form": "interval"}):
        ip = exact.solve(inst, **kw)
        assert ip.objective == pytest.approx(8.23) and not ip.relaxed, kw
        assert ip.decisions["keep"].tolist() == pytest.approx([1, 1, 0]), kw
    for kw in ({}, {"backend": "pyomo"}, {"form": "interval"}, {"backend": "cvxpy"}):
        lp = exact.solve(inst, relax=True, **kw)
        assert lp.objective == pytest.approx(5.76 + 2.47 / 3) and lp.relaxed, kw
    # a rule is built from the LP's prices only: the IP's are all zero
    with pytest.raises(InvalidInstanceError, match="relax=True"):
        cs.BidPrice.from_solution(exact.solve(inst))


def test_the_summary_of_an_instance_without_requests_says_so():
    empty = ci.Instance(time=np.zeros(0), object_id=np.zeros(0, dtype=np.int64), size=np.ones(2),
                        miss_cost=np.ones(2), capacity=1.0)
    assert empty.summary() == "caching 0 requests, 0 objects, capacity 1 tokens (no request)"


def test_an_ip_too_large_to_stop_on_time_is_refused_with_the_lp_as_the_way_out():
    # 5 intervals fit (requests 0 1 0 1 0 1 2 2: objects 0 and 1 twice each, object 2 once)
    inst = unit_instance([0, 1, 0, 1, 0, 1, 2, 2], 1.0)
    for kw in ({}, {"backend": "pyomo"}, {"form": "interval"}):
        with pytest.raises(InvalidInstanceError, match=r"5 binary keep variables .*relax=True"):
            exact.solve(inst, max_binaries=4, **kw)
        assert exact.solve(inst, max_binaries=5, **kw).status == "optimal"
        assert exact.solve(inst, relax=True, max_binaries=4, **kw).status == "optimal"


def test_a_caching_lp_stopped_by_its_time_limit_is_refused_on_every_path():
    # the pyomo path failed with KeyError 'keep' (a stopped LP has no decisions), the default
    # path said "HiGHS stopped on the caching LP": every path now says that, as a TimeoutError
    # (an InvalidInstanceError before, for a valid instance); the bound is then no bound
    inst = ci.generate(requests=2000, seed=0)
    for method in ("highs_matrix", "pyomo"):
        with pytest.raises(TimeoutError, match=r"HiGHS stopped on the caching LP .*time_limit=1e-06"):
            cs.solve_lp(inst, method=method, time_limit=1e-6)
    stopped = bench.bound(inst, time_limit=1e-6)
    assert math.isnan(stopped.value) and (stopped.kind, stopped.status) == ("none", "time_limit")
