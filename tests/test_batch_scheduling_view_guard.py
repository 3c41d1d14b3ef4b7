"""Batch scheduling: what the built-in online policies read of the true output lengths (review R11).

``prepare(instance)`` is given the whole instance, true output lengths included: the evaluator does
not police what a policy reads there (README, "Your own rule"). The built-in online policies plan
on predicted lengths only; this checks it the way a leak would show: each is prepared on the
instance and on the same instance with other true lengths (prompts, predictions and arrivals
kept), and both are run on the instance: the runs must be the same.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.instances import batch_scheduling as gen
from servopt.solvers import batch_scheduling as rules

ONLINE = {
    "fcfs": rules.FCFS,
    "spf": rules.ShortestPredictedFirst,
    "mcsf": rules.MCSF,
    "bid_price": rules.BidPrice,
    "bid_price_stationary": rules.BidPriceStationary,
}


def _other_truth(instance):
    """The instance with other true output lengths: a third of each, and the visible data kept."""
    return dataclasses.replace(instance, output_tokens=np.maximum(1, instance.output_tokens // 3))


def _run_prepared_on(policy, prepared_on, instance):
    policy.prepare(prepared_on)
    return bench.simulate(instance, policy)["latency"]


def test_the_online_set_is_every_policy_but_the_labelled_hindsight_one():
    assert set(ONLINE) == set(rules.POLICIES) - set(bench.FORESIGHT)


@pytest.mark.parametrize("arrivals", ["offline", "poisson"])
@pytest.mark.parametrize("noise", [0.0, 0.5])
@pytest.mark.parametrize("name", sorted(ONLINE))
def test_an_online_policy_never_reads_the_true_output_lengths(name, arrivals, noise):
    instance = gen.generate(60, arrivals=arrivals, noise=noise, seed=3)
    other = _other_truth(instance)
    assert not np.array_equal(other.output_tokens, instance.output_tokens)
    latency = _run_prepared_on(ONLINE[name](), instance, instance)
    assert np.array_equal(_run_prepared_on(ONLINE[name](), other, instance), latency)


def test_the_bid_price_load_sample_does_not_read_the_true_output_lengths():
    # the whole LP over max_columns: the price is learned on a load sample of 40 requests
    instance = gen.generate(200, seed=0)
    make = lambda: rules.BidPrice(max_columns=50, sample=40, sample_max_columns=100_000)  # noqa: E731
    policy = make()
    latency = _run_prepared_on(policy, instance, instance)
    assert policy.price_from == "sample"
    assert np.array_equal(_run_prepared_on(make(), _other_truth(instance), instance), latency)
