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


def test_the_order_search_says_when_it_is_too_large(monkeypatch):
    # the size limit was caught as "the order needs more rounds" and retried on a longer profile,
    # so its message named the wrong size and advised calling the function that raised it
    from servopt.models import batch_scheduling as model
    from servopt.solvers import batch_scheduling as rules

    inst = bs.generate(60, lengths="azure", seed=0)
    start = model.warm_start_schedule(inst)
    first_rounds = int(2 * (start + inst.output_tokens).max() + inst.output_tokens.max() + 1)
    monkeypatch.setattr(rules, "SERIAL_MAX_ENTRIES", inst.n * first_rounds - 1)
    with pytest.raises(Exception, match=f"{first_rounds:,}-round .* too large for the order search"):
        rules.search_order(inst, start, time_limit=1)
    monkeypatch.setattr(rules, "SERIAL_MAX_ENTRIES", inst.n * first_rounds)  # fits: it searches
    found = rules.search_order(inst, start, time_limit=0.2)
    assert model.is_feasible(inst, found)
