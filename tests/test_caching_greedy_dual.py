"""The bid-price rule's optional GreedyDual expert (``BidPrice(greedy_dual=True)``): its shadow
cache against a plain re-implementation, the rule's own replay against the evaluator, and the
shipped rule (without it) unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from servopt.benchmarks import caching as bench
from servopt.instances import caching as ci
from servopt.solvers import caching as cs


def _greedy_dual_by_hand(inst: ci.Instance) -> list[set[int]]:
    """Contents after each request of a cache run by H = L + f c / s (L: the H of the last
    eviction before the request; f: requests since the object entered; lowest H evicted first,
    ties the entry made first, the requested object included; an object larger than the cache
    never enters), written with plain dicts and a linear scan."""
    size, cost = inst.size.tolist(), inst.miss_cost.tolist()
    capacity = inst.capacity * (1 + 1e-12)
    held: dict[int, tuple[float, int]] = {}  # object -> (H, entry number)
    freq: dict[int, int] = {}
    inflation, entries, after = 0.0, 0, []
    for o in inst.object_id.tolist():
        f = freq.get(o, 0) + 1 if o in held else 1
        freq[o] = f
        h = inflation + f * cost[o] / size[o]
        if size[o] > capacity:
            held.pop(o, None)
        else:
            entries += 1
            held[o] = (h, entries)
            while sum(size[v] for v in held) > capacity:
                victim = min(held, key=held.__getitem__)
                inflation = held.pop(victim)[0]
        after.append(set(held))
    return after


@pytest.mark.parametrize("seed", [0, 1])
def test_the_greedy_dual_shadow_keeps_what_the_plain_rule_keeps(seed):
    inst = ci.generate(requests=1500, objects=300, cache_share=0.05, seed=seed)
    rule = cs.BidPrice(tune=False, priced=False, experts=cs.EXPERTS, greedy_dual=True)
    rule.start(inst)
    expected = _greedy_dual_by_hand(inst)
    shadow = rule.shadows[-1]
    for t, o in enumerate(inst.object_id.tolist()):
        rule.touch(t, o, False)
        assert set(shadow.cached) == expected[t], t


@pytest.mark.parametrize("seed", [2, 3])
def test_the_rule_with_it_replays_as_the_evaluator_counts(seed):
    """The rule's own replay and the evaluator's simulator are separate code (as for the shipped
    rule in test_caching.py): the same miss cost to the bit, through switches to the expert."""
    inst = ci.generate(requests=4000, objects=400, cache_share=0.05, skew=0.6, seed=seed)

    def rule():
        return cs.BidPrice(tune=False, priced=False, experts=cs.EXPERTS, greedy_dual=True)

    replayed = rule()
    cost = replayed.replay(inst)
    assert cost == bench.simulate(inst, rule()).miss_cost
    assert "gdsf" in [expert for _, expert in replayed.switches]  # it led at some point
    without = cs.BidPrice(tune=False, priced=False, experts=cs.EXPERTS)
    assert bench.simulate(inst, without).miss_cost != cost


def test_off_by_default_and_not_in_the_shipped_rule():
    inst = ci.generate(requests=2000, objects=300, cache_share=0.05, seed=4)
    shipped = cs.POLICIES["bid_price"]()
    assert shipped.greedy_dual is False
    cost = bench.simulate(inst, shipped).miss_cost
    assert cost == bench.simulate(inst, cs.BidPrice(warmup=0.2, refresh=0.2,
                                                    experts=cs.EXPERTS)).miss_cost
    assert np.isfinite(cost)
