"""Caching: hand-checked values where a changed line went unnoticed before (found by mutation testing).

Each test names the mutant it kills; the expected numbers are hand calculations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from servopt.benchmarks import caching as bench
from servopt.instances import caching as ci


def unit_instance(sequence, capacity, cost=None) -> ci.Instance:
    objects = max(sequence) + 1
    return ci.Instance(time=np.arange(len(sequence), dtype=float), object_id=np.array(sequence),
                       size=np.ones(objects),
                       miss_cost=np.ones(objects) if cost is None else np.asarray(cost, float),
                       capacity=capacity)


def test_lfu_breaks_count_ties_by_evicting_the_least_recent():
    # kills: LFU's tie-break flipped to evict the most recently used of equal counts.
    # Capacity 2, unit objects: a b c b. c misses and must evict one of a, b (one request each):
    # the least recent, a; then b hits. Evicting b instead would make the last request a miss.
    result = bench.simulate(unit_instance([0, 1, 2, 1], capacity=2), "lfu", record=True)
    assert result.hit.tolist() == [False, False, False, True]
    assert result.contents == [1, 2]


def test_least_expected_cost_uses_k_over_k_plus_1():
    # kills: LEC's reuse probability k / (k + 1) shifted to (k + 1) / (k + 2) (the existing hand
    # case ranks the same under both). Room for 2 unit objects; costs a 10, b 8, c 1; requests
    # b b a c b a. At c (a miss; demand fetch) the cache holds b (k = 2: 2/3 x 8 = 5.33) and a
    # (k = 1: 1/2 x 10 = 5): a goes; b hits; a misses and evicts c (1/2 x 1). Miss cost 8 + 10 + 1
    # + 10 = 29. With (k + 1) / (k + 2), b (3/4 x 8 = 6) would go before a (2/3 x 10 = 6.67).
    inst = unit_instance([1, 1, 0, 2, 1, 0], capacity=2, cost=[10, 8, 1])
    result = bench.simulate(inst, "lec", record=True)
    assert result.hit.tolist() == [False, True, False, False, True, False]
    assert result.miss_cost == pytest.approx(29.0)
    assert result.contents == [0, 1]


def test_closed_gap_by_hand():
    # kills: closed_gap measuring the method's remaining gap (cost - bound) instead of the share of
    # LRU's gap it closes (lru - cost) / (lru - bound). LRU 100, bound 60 (gap 40): a method at 90
    # closes 10 / 40 = 0.25 (the remaining share would be 0.75); at the bound 1, at LRU 0, worse
    # than LRU negative; no gap to close: nan.
    assert bench.closed_gap(90.0, 100.0, 60.0) == pytest.approx(0.25)
    assert bench.closed_gap(60.0, 100.0, 60.0) == pytest.approx(1.0)
    assert bench.closed_gap(100.0, 100.0, 60.0) == 0.0
    assert bench.closed_gap(110.0, 100.0, 60.0) == pytest.approx(-0.25)
    assert math.isnan(bench.closed_gap(50.0, 50.0, 50.0))
