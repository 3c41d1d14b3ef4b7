"""Every bound method on a stream with a long idle stretch: one memory row per round made a gap
of 1e9 rounds a 7.5 GB allocation for all methods but ``auto`` and ``area``."""

import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.instances import batch_scheduling as bs


@pytest.mark.parametrize("method", ["lp", "cover", "group", "coarse", "ip", "auto"])
def test_bound_methods_cut_idle_stretches(method):
    # two requests that never meet: 3 + 4 rounds of latency (hand figure), 1e9 rounds apart
    gap = bs.Instance(kv_memory=20, arrival=[0, 10**9], prompt_tokens=[5, 6], output_tokens=[3, 4])
    found = bench.bound(gap, method=method, time_limit=10)
    assert found.value == 7.0
    assert "idle stretches cut short" in found.status


def test_short_streams_are_bounded_as_given():
    near = bs.Instance(kv_memory=20, arrival=[0, 2], prompt_tokens=[5, 6], output_tokens=[3, 4])
    found = bench.bound(near, method="lp")
    assert found.value == 7.0 and "idle" not in found.status
