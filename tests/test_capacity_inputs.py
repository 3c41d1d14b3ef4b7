"""Capacity inputs a new user gets wrong: method names, callables, plans, run options, text for numbers
and unknown keyword options all get InvalidInstanceError naming what is expected."""

from __future__ import annotations

import numpy as np
import pytest

from servopt.benchmarks import capacity as bench
from servopt.core import InvalidInstanceError
from servopt.instances import capacity as instances
from servopt.solvers import capacity as rules

RUN = dict(n_requests=500, seeds=1, window=200)  # short runs: these tests check inputs, not rates


@pytest.fixture(scope="module")
def inst() -> instances.Instance:
    return instances.generate(requests=300, arrival_rate=5.0)


def test_unknown_method_names_the_known_ones(inst):
    with pytest.raises(InvalidInstanceError, match=r"unknown method 'planx'; known: \['compute_only'"):
        bench.evaluate(inst, "planx", **RUN)


def test_a_method_that_is_not_callable(inst):
    with pytest.raises(InvalidInstanceError, match=r"callable policy\(instance, observe\) -> Plan, got 3"):
        bench.evaluate(inst, 3, **RUN)


@pytest.mark.parametrize(("returned", "match"), [
    (3, "must return a servopt capacity Plan"),
    (rules.Plan(workers=0), "workers must be a whole number >= 1, got 0"),
    (rules.Plan(workers=2.5), "workers must be a whole number >= 1, got 2.5"),
    (rules.Plan(workers=True), "workers must be a whole number >= 1, got True"),
])
def test_a_method_returning_a_bad_plan(inst, returned, match):
    with pytest.raises(InvalidInstanceError, match=match):
        bench.evaluate(inst, lambda instance, observe: returned, **RUN)


@pytest.mark.parametrize(("option", "match"), [
    ({"n_requests": "100"}, "n_requests must be a whole number"),
    ({"n_requests": 100}, "at least 500 arrivals"),
    ({"seeds": "2"}, "seeds must be a whole number"),
    ({"seed": -1}, "seed must be a whole number >= 0"),
    ({"eps": "0.01"}, "eps must be in"),
    ({"warmup": 1.5}, "warmup must be in"),
    ({"window": 0}, "window must be a whole number >= 1"),
])
def test_run_options_are_checked(inst, option, match):
    with pytest.raises(InvalidInstanceError, match=match):
        bench.evaluate(inst, "plan", **{**RUN, **option})


def test_check_rate_refuses_text():
    inst = instances.generate(requests=300, arrival_rate=5.0)
    with pytest.raises(InvalidInstanceError, match="rate must be a number"):
        bench.check_rate(inst, "1.0", n_requests=500)


def test_policy_objects_match_their_names(inst):
    # the plan rule: the workers follow from the bounds (no simulation), so name and object must agree
    for name in ("plan", "first_order", "compute_only", "fluid_lp"):
        by_object = bench.evaluate(inst, rules.POLICIES[name], **RUN)
        assert by_object.cost == bench.evaluate(inst, name, **RUN).cost == rules.POLICIES[name](inst).workers


@pytest.mark.parametrize("field", ["arrival_rate", "kv_tokens", "token_budget", "headroom",
                                   "step_overhead_s"])
def test_instance_refuses_text_and_booleans_for_numbers(inst, field):
    for bad in ("5", True):
        with pytest.raises(InvalidInstanceError, match=f"{field}.* must be a number, got {bad!r}"):
            inst.with_(**{field: bad})


def test_generate_and_from_trace_check_their_options():
    with pytest.raises(InvalidInstanceError, match="arrival_rate"):
        instances.generate(requests=300, arrival_rate="5")
    with pytest.raises(InvalidInstanceError, match="seed must be a whole number"):
        instances.generate(requests=300, seed="0")
    # unknown keywords: an InvalidInstanceError listing the worker fields (checked before reading)
    with pytest.raises(InvalidInstanceError, match=r"unknown option\(s\) \['foo'\].*batch_cap"):
        instances.from_trace("unused.csv", kv_tokens=16_000, foo=1)
    with pytest.raises(InvalidInstanceError, match="arrival_rate"):
        instances.from_trace("unused.csv", kv_tokens=16_000, arrival_rate="5")
    with pytest.raises(InvalidInstanceError, match="kv_tokens"):
        instances.from_trace("unused.csv", kv_tokens="16000")
    with pytest.raises(InvalidInstanceError, match="memory_utilisation"):
        instances.kv_tokens_from_model(layers=32, kv_heads=8, head_dim=128, weight_bytes=16e9,
                                       gpu_memory_bytes=80 * 2**30, memory_utilisation="0.9")


def test_numpy_numbers_are_still_accepted(inst):
    same = inst.with_(arrival_rate=np.float64(5.0), kv_tokens=np.int64(inst.kv_tokens))
    assert same.arrival_rate == 5.0 and same.kv_tokens == inst.kv_tokens


def test_reactive_policies_need_an_observer_and_observers_need_whole_workers(inst):
    with pytest.raises(InvalidInstanceError, match=r"reactive autoscaler.*evaluate"):
        rules.utilisation(inst, None)
    with pytest.raises(InvalidInstanceError, match=r"reactive autoscaler.*evaluate"):
        rules.queue_depth(inst, None)
    observe = bench.fleet_observer(inst, window=200)
    for bad in (0, 2.5, "3"):
        with pytest.raises(InvalidInstanceError, match="whole number of workers >= 1"):
            observe(bad)


def test_drop_too_long_sizes_the_fleet_for_the_kept_requests(tmp_path):
    # four requests over 3 s (trace rate (4 - 1) / 3 = 1 req/s); the 900-token one needs
    # 900 + 100 - 1 = 999 > 500 KV tokens: dropped, so the fleet serves 3/4 of the rate
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:46.0,100,10\n2023-11-16 18:15:47.0,900,100\n"
                     "2023-11-16 18:15:48.0,200,20\n2023-11-16 18:15:49.0,300,30\n")
    inst = instances.from_trace(trace, kv_tokens=500, drop_too_long=True)
    assert inst.prompt_tokens.tolist() == [100, 200, 300]
    assert inst.arrival_rate == pytest.approx(0.75)
    assert "1 of 4 requests longer than kv_tokens dropped" in inst.summary()
    assert instances.from_trace(trace, kv_tokens=5000).arrival_rate == pytest.approx(1.0)
    with pytest.raises(InvalidInstanceError, match="none of its 4 requests fits in kv_tokens = 5"):
        instances.from_trace(trace, kv_tokens=5, drop_too_long=True)
