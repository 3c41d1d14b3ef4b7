"""Refusals from the R59 audit: tiny files that kept a simulator stepping for minutes, and
``servopt bench`` over many cases naming a report longer than a file name may be."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from servopt import cli
from servopt.benchmarks import batch_scheduling as batch_bench
from servopt.benchmarks import capacity as capacity_bench
from servopt.benchmarks import registry
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as batch
from servopt.instances import capacity


def _serial(n: int, output: int) -> batch.Instance:
    """n requests at round 0, prompt 10, memory for one of them at its peak."""
    o = np.full(n, output)
    return batch.Instance(arrival=np.zeros(n, dtype=int), prompt_tokens=np.full(n, 10),
                          output_tokens=o, predicted_output=o, kv_memory=output + 11)


def test_batch_busy_rounds_by_hand():
    # footprints: s*o + o(o+1)/2 = 2*3 + 6 = 12 and 1*4 + 10 = 14; M = 7: ceil(26 / 7) = 4;
    # the longest output 4; the arrivals do not count (the simulator jumps idle rounds)
    inst = batch.Instance(arrival=np.array([0, 2]), prompt_tokens=np.array([2, 1]),
                          output_tokens=np.array([3, 4]), predicted_output=np.array([3, 4]),
                          kv_memory=7)
    assert batch_bench.busy_rounds(inst) == 4
    at_once = dataclasses.replace(inst, arrival=np.array([0, 0]))
    assert batch_bench.busy_rounds(dataclasses.replace(at_once, kv_memory=5)) == 6  # ceil(26 / 5)
    # 3 + 4 outputs, one request at a time
    assert batch_bench.busy_rounds(dataclasses.replace(at_once, max_batch=1)) == 7


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["fcfs", "mcsf"])
def test_batch_busy_rounds_is_a_lower_bound_on_the_simulated_busy_rounds(seed, method):
    inst = batch.generate(40, arrivals="poisson", load=0.6, seed=seed)
    result = batch_bench.simulate(inst, method, trace=True)
    assert np.count_nonzero(np.asarray(result["batch"]) > 0) >= batch_bench.busy_rounds(inst)


def test_batch_idle_gaps_do_not_count_against_the_round_cap():
    inst = dataclasses.replace(_serial(2, 5), arrival=np.array([0, 10**9]))
    # footprints 2 x (10 x 5 + 15) = 130 token-rounds over 16 tokens: 9 (the arrivals 1e9 apart
    # do not count; the simulator jumps the gap)
    assert batch_bench.busy_rounds(inst) == 9
    result = batch_bench.simulate(inst, "fcfs")
    assert result["finish"].tolist() == [4, 10**9 + 4]


def test_batch_simulation_past_the_round_cap_is_refused_before_any_policy():
    inst = _serial(30, 1_000_000)  # 3 kB of requests; 1.5e7 rounds at least (~15 s a million)
    assert batch_bench.busy_rounds(inst) > batch_bench.MAX_SIMULATED_ROUNDS
    for run in (lambda: batch_bench.evaluate(inst, "fcfs"), lambda: batch_bench.simulate(inst, "mcsf"),
                lambda: batch_bench.evaluate(inst, "bid_price")):
        t0 = time.perf_counter()
        with pytest.raises(InvalidInstanceError, match=r"at least 15,000,150 busy rounds.*max_rounds"):
            run()
        assert time.perf_counter() - t0 < 5  # before the policy's prepare (an LP) or any round
    # 3 x (10 x 50 + 50 x 51 / 2) = 5325 token-rounds over 61 tokens: 88 rounds at least
    assert batch_bench.busy_rounds(_serial(3, 50)) == 88
    with pytest.raises(InvalidInstanceError, match=r"at least 88 rounds.*more than max_rounds = 87"):
        batch_bench.simulate(_serial(3, 50), "fcfs", max_rounds=87)


def test_batch_explicit_max_rounds_lifts_the_default_cap(monkeypatch):
    inst = _serial(3, 50)
    monkeypatch.setattr(batch_bench, "MAX_SIMULATED_ROUNDS", 80)
    with pytest.raises(InvalidInstanceError, match="at most 80 by default"):
        batch_bench.simulate(inst, "fcfs")
    result = batch_bench.simulate(inst, "fcfs", max_rounds=1000)  # the caller's own cap: runs
    assert int(result["finish"].max()) + 1 >= 88


def test_capacity_simulation_with_more_prefill_than_its_iterations_is_refused_at_once():
    inst = capacity.Instance(prompt_tokens=np.full(5, 9_000_000), output_tokens=np.full(5, 10),
                             arrival_rate=1.0, kv_tokens=10**7)
    n = 8000  # 7.2e10 prompt tokens at 4096 a step: 1.76e7 iterations > 1e7
    s, o, unit = capacity_bench.sample_requests(inst, n, 0)
    t0 = time.perf_counter()
    with pytest.raises(InvalidInstanceError, match="at least 17,578,125 iterations"):
        capacity_bench.simulate(inst, s, o, unit)
    assert time.perf_counter() - t0 < 5
    # stopped by ``until`` the same run is legitimate: in 1 s (iterations of at least 12 ms) none
    # of the 9e6-token prompts (512 tokens a step) can finish
    res = capacity_bench.simulate(inst, s, o, unit, until=1.0)
    assert np.isnan(res.done_times).all() and res.times[-1] >= 1.0


def test_bench_default_report_name_fits_a_file_name_for_every_case():
    names = [case.name for case in registry.cases(suite=None)]
    assert len("-".join(names).encode()) > 200  # what gave "File name too long"
    name = cli.default_report_name("quick", names)
    assert len(name.encode()) <= 200 and name.startswith(names[0] + "-and-")
    assert cli.report_name(name) == name
    assert name != cli.default_report_name("quick", names[::-1])  # distinct lists, distinct names
    assert cli.default_report_name("quick", names[:2]) == "-".join(names[:2])  # short: as before
    assert cli.default_report_name("full", None) == "full"
