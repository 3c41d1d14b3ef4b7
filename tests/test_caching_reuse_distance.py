"""The reuse-distance experiment's rules and its LIRS / ARC references, on hand-worked sequences."""

import heapq
import json
from collections import OrderedDict

import numpy as np
import pytest

from servopt.benchmarks import caching as bench
from servopt.benchmarks.caching_reuse_distance import ReuseDistance, ReuseExpert, arc, lirs
from servopt.instances.caching import Instance, from_trace, generate
from servopt.instances.traces import shared_trace
from servopt.solvers.caching import solve_lp

A, B, C, D = 0, 1, 2, 3


def unit_instance(sequence: list[int], costs: list[float], blocks: int) -> Instance:
    return Instance(time=np.arange(len(sequence), dtype=float), object_id=np.array(sequence),
                    size=np.ones(len(costs)), miss_cost=np.array(costs, dtype=float),
                    capacity=float(blocks))


def test_lirs_hand_worked() -> None:
    # cache 3 = 2 LIR + 1 resident HIR. a, b become LIR; c enters Q; d evicts c (c stays in the
    # stack, non-resident); c's re-reference makes it LIR (a demoted to Q, d evicted); a hits in
    # Q; d's re-reference evicts a and makes d LIR (b demoted); b hits in Q.
    # Misses: a b c d c d = 1 + 2 + 4 + 8 + 4 + 8. LRU misses a b c d a b = 18.
    inst = unit_instance([A, B, C, D, C, A, D, B], [1, 2, 4, 8], 3)
    assert lirs(inst) == 27.0
    assert bench.simulate(inst, "lru").miss_cost == 18.0


def test_lirs_keeps_lir_blocks_on_a_loop_larger_than_the_cache() -> None:
    # the paper's motivating case: a loop over 4 blocks in a 3-block cache. LRU misses every
    # request; LIRS keeps its 2 LIR blocks: 4 cold misses, then 2 misses per loop.
    inst = unit_instance([A, B, C, D] * 10, [1, 1, 1, 1], 3)
    assert bench.simulate(inst, "lru").miss_cost == 40.0
    assert lirs(inst) == 4 + 2 * 9


def test_arc_hand_worked() -> None:
    # cache 2: a is seen twice (T2); the scan b c d cycles through T1 and B1; a still hits.
    # Misses a b c d = 15 (LRU also misses the last a: 16).
    inst = unit_instance([A, A, B, C, D, A], [1, 2, 4, 8], 2)
    assert arc(inst) == 15.0
    assert bench.simulate(inst, "lru").miss_cost == 16.0
    # ghost hits move p both ways: a b a c b a c a misses at 1 2 4 5 6 7
    inst = unit_instance([A, B, A, C, B, A, C, A], [1, 10, 100, 1000], 2)
    assert arc(inst) == 1 + 10 + 100 + 10 + 1 + 100


def test_lirs_and_arc_refuse_mixed_sizes() -> None:
    inst = generate(requests=50, objects=10, seed=0)
    with pytest.raises(ValueError):
        lirs(inst)
    with pytest.raises(ValueError):
        arc(inst)


def test_reuse_distance_prior_and_order_by_hand() -> None:
    # a b a c b, 2 blocks, unit cost, span 0 (priority = last request - reuse distance).
    # t=0: a first seen, no exposure yet -> prior 1 (the floor), priority -1.
    # t=1: b first seen; waiting a (0), b (1): exposure 1, no reuse yet -> prior 1, priority 0.
    # t=2: a reused after 2 -> priority 2 - 2 = 0.
    # t=3: c first seen; waiting b (1), c (3), a waited 2: exposure 2 + 2 x 3 - 4 = 4 over 1
    # reuse -> prior 4, priority -1: c is the lowest (a and b have 0) and is not kept; b hits.
    inst = unit_instance([A, B, A, C, B], [1, 1, 1], 2)
    policy = ReuseDistance(span=0.0)
    policy.start(inst)
    assert [policy.touch(t, o, False) for t, o in enumerate([A, B, A, C])] == [-1.0, 0.0, 0.0, -1.0]
    assert policy.prior(3) == 4.0
    assert bench.simulate(inst, ReuseDistance(span=0.0)).miss_cost == 3.0
    assert bench.simulate(inst, "lru").miss_cost == 4.0


def test_reuse_distance_price_gate() -> None:
    inst = generate(requests=3000, objects=300, seed=2)
    free = bench.simulate(inst, ReuseDistance()).miss_cost
    # a price no value reaches: nothing is kept, every request misses
    shut = bench.evaluate(inst, ReuseDistance(price=1e9, price_scale=1.0))
    assert shut.cost == pytest.approx(float(inst.miss_cost[inst.object_id].sum()))
    assert shut.metrics["hit_ratio"] == 0.0
    # a price every value reaches: the plain value order
    assert bench.simulate(inst, ReuseDistance(price=1e-300, price_scale=1.0)).miss_cost == free
    learned = bench.evaluate(inst, ReuseDistance(warmup=0.2, refresh=0.2))
    assert learned.status == "ok" and learned.cost <= float(inst.miss_cost[inst.object_id].sum())


def test_reuse_expert_without_reuse_is_the_shipped_order() -> None:
    # the switching machinery with recency and slow ageing only reproduces cost_freq_size
    inst = generate(requests=4000, objects=400, skew=0.9, cache_share=0.05, seed=3)
    shipped = bench.simulate(inst, "cost_freq_size").miss_cost
    assert bench.simulate(inst, ReuseExpert(reuse=False)).miss_cost == shipped
    three = bench.evaluate(inst, ReuseExpert())
    assert three.status == "ok"


def _ordered_dict_lru(blocks: list[int], room: int) -> int:
    cache: OrderedDict[int, None] = OrderedDict()
    misses = 0
    for b in blocks:
        if b in cache:
            cache.move_to_end(b)
        else:
            misses += 1
            cache[b] = None
            if len(cache) > room:
                cache.popitem(last=False)
    return misses


def _belady_with_bypass(blocks: list[int], room: int) -> int:
    n = len(blocks)
    following, seen = [n] * n, {}
    for i in range(n - 1, -1, -1):
        following[i] = seen.get(blocks[i], n)
        seen[blocks[i]] = i
    cache: dict[int, int] = {}
    heap: list[tuple[int, int]] = []
    misses = 0
    for i, b in enumerate(blocks):
        misses += b not in cache
        if following[i] == n:  # never requested again: not kept
            cache.pop(b, None)
            continue
        cache[b] = following[i]
        heapq.heappush(heap, (-following[i], b))
        while len(cache) > room:
            far, v = heapq.heappop(heap)
            if cache.get(v) == -far:
                del cache[v]
    return misses


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2])
def test_mooncake_blocks_lru_and_bound_against_independent_code(share: float) -> None:
    """The first ~3000 block requests of the Mooncake trace: the conversion is the hash_ids in
    prompt order, the simulator's LRU counts what a 10-line OrderedDict LRU counts, and at unit
    cost the LP bound is Belady's miss count with bypass."""
    path = shared_trace("mooncake_synthetic.jsonl")
    if path is None:
        pytest.skip("mooncake_synthetic.jsonl not in ../shared/traces")
    blocks: list[int] = []
    with open(path) as handle:
        for line in handle:
            ids = json.loads(line)["hash_ids"]
            if len(blocks) + len(ids) > 3000:
                break
            blocks += ids
    distinct = sorted(set(blocks))
    inst = from_trace(path, cache_share=share, max_requests=3000)
    assert inst.requests == len(blocks)
    assert np.array_equal(np.array(distinct)[inst.object_id], np.array(blocks))
    room = round(share * len(distinct))
    assert inst.capacity == room * 512
    assert bench.simulate(inst, "lru").miss_cost == _ordered_dict_lru(blocks, room)
    assert solve_lp(inst).value == pytest.approx(_belady_with_bypass(blocks, room), abs=1e-6)


def test_lirs_hand_worked_continued() -> None:
    # test_lirs_hand_worked's sequence, then a b a (unit costs, 2 LIR + 1 HIR block). After t7:
    # S = [c a d b] (bottom first), LIR c d, Q = [b], a non-resident in S (evicted at t6).
    # t8 a misses: b (front of Q) goes; a is in S, so it becomes LIR and c, the bottom LIR block,
    # is demoted to Q; pruning stops at d. t9 b misses: c goes; b is in S (pushed at its HIR hit
    # at t7), so it becomes LIR and d is demoted. t10 a hits (LIR). Misses: 4 cold + c, d, a, b = 8.
    # (Without the promotion of a non-resident block found in S, a and b are never demoted and
    # hit at t8 and t9: 6. Without pushing a resident HIR block to S when it hits, a (t5) and b
    # (t7) are not in S when they miss at t8 and t9, stay HIR, and a misses again at t10: 9.)
    inst = unit_instance([A, B, C, D, C, A, D, B, A, B, A], [1, 1, 1, 1], 3)
    assert lirs(inst) == 8.0


def test_lirs_evicts_the_front_of_q() -> None:
    # cache 4 with hir_share 0.5: 2 LIR + 2 resident HIR. a b LIR; c d enter Q = [c d]; e evicts
    # the front, c (the oldest resident HIR), so c misses again: 6 misses (evicting d: 5)
    inst = unit_instance([A, B, C, D, 4, C], [1, 1, 1, 1, 1], 4)
    assert lirs(inst, hir_share=0.5) == 6.0


def test_arc_a_ghost_hit_in_b2_lowers_the_target() -> None:
    # cache 2, unit costs, a a b c b a c d a c. t1 a -> T2. t3 c: b to B1. t4 b (B1): p 0 -> 1,
    # a (T2's LRU) to B2. t5 a (B2): p 1 -> 0, |T1| = 1 > 0: c to B1. t6 c (B1): p 0 -> 1, b to
    # B2. t7 d: a to B2. t8 a (B2): p 1 -> 0, |T1| = 1 > 0: d goes, c stays in T2 and hits at t9.
    # Misses: every request but t1 and t9 = 8. (If a B2 hit did not lower p, p would be 2 at t8,
    # T2's c would go instead and miss at t9: 9.)
    inst = unit_instance([A, A, B, C, B, A, C, D, A, C], [1, 1, 1, 1], 2)
    assert arc(inst) == 8.0


def test_arc_a_b2_hit_with_t1_at_its_target_evicts_from_t1() -> None:
    # cache 3, unit costs, a a b c d b c a b. t1 a -> T2. t4 d: b to B1. t5 b (B1): p 0 -> 1,
    # c (|T1| 2 > 1) to B1. t6 c (B1): p 1 -> 2, a (T2's LRU) to B2. t7 a (B2): p 2 -> 1 and
    # |T1| = 1 = p: REPLACE takes T1's d (Megiddo and Modha's tie rule for a B2 hit), so b stays
    # in T2 and hits at t8: 7 misses. (Breaking the tie towards T2 evicts b: 8.)
    inst = unit_instance([A, A, B, C, D, B, C, A, B], [1, 1, 1, 1], 3)
    assert arc(inst) == 7.0


def test_reuse_distance_prior_is_exposure_per_reuse() -> None:
    # a b a b c, span 0: a and b are each reused after 2 requests (2 reuses, waited 4). At t=4
    # c is first seen and waits alone from t=4: exposure 4 + 1 x 4 - 4 = 4 over 2 reuses -> prior
    # 2, priority 4 - 2 = 2. Priorities: a -1, b 0 (prior 1, the floor), a 2 - 2, b 3 - 2, c 2.
    inst = unit_instance([A, B, A, B, C], [1, 1, 1], 2)
    policy = ReuseDistance(span=0.0)
    policy.start(inst)
    assert [policy.touch(t, o, False) for t, o in enumerate([A, B, A, B, C])] == [-1.0, 0.0, 0.0, 1.0, 2.0]
    assert policy.prior(4) == 2.0
