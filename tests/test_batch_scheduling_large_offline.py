"""The offline bid-price rule's load-sample price: forceable, and never 0 without saying so.

benchmarks/batch_scheduling_large_offline.py forced the sample price with ``max_columns=1``;
since the sample's LP limit followed ``max_columns`` that sample was always "too large", its
price became 0 and the committed bid_price_sample rows silently measured another rule.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks import batch_scheduling_large_offline as script
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as inst_mod
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def test_the_forced_sample_price_is_the_price_learned_on_the_load_sample():
    inst = inst_mod.generate(200, seed=1)
    # the whole LP passes the shipped limit; forcing the sample takes max_columns=1
    assert model.model_size(rules.planning_instance(inst))[1] < 200_000
    rule = rules.BidPrice(max_columns=1, sample_max_columns=200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rule.prepare(inst)
    # the other route: the 120-request sample built and priced by hand
    sample = rules.load_sample(inst, 120)
    assert sample.n == 120
    assert model.model_size(rules.planning_instance(sample))[1] <= 200_000
    expected = rules.BidPriceStationary.learn(sample)
    assert expected > 0
    assert rule.tail == pytest.approx(expected, rel=1e-9)
    assert len(rule.prices) == 0 and rule.price_from == "sample" and rule.sample_size == 120


def test_a_price_that_falls_to_zero_because_the_sample_lp_is_too_large_warns():
    inst = inst_mod.generate(200, seed=1)
    rule = rules.BidPrice(max_columns=1)  # the sample's LP limited to 1 column too
    with pytest.warns(RuntimeWarning, match="price is 0.*sample_max_columns"):
        rule.prepare(inst)
    assert rule.tail == 0.0 and rule.price_from == "zero" and rule.sample_size == 8
    # the shipped limits on long outputs (100-400 rounds): even 8 requests' LP has 2.6M memory
    # entries (> 2M), so the shipped rule prices at 0 too, and now says so
    long = inst_mod.generate(110, seed=0, output_range=(100, 400))
    shipped = rules.BidPrice()
    with pytest.warns(RuntimeWarning, match="load sample of 8 requests"):
        shipped.prepare(long)
    assert shipped.tail == 0.0 and shipped.price_from == "zero"
    # a policy object reused on an instance whose whole LP fits says so
    small = inst_mod.generate(30, seed=0)
    rule = rules.BidPrice()
    rule.prepare(small)
    assert rule.price_from == "lp" and rule.sample_size == 0 and len(rule.prices) > 0


def test_shipped_rule_decisions_do_not_depend_on_the_new_option():
    # sample_max_columns defaults to max_columns: the limits of before
    inst = inst_mod.generate(40, seed=3)
    limit = model.model_size(rules.planning_instance(rules.load_sample(inst, 10)))[1]
    a = bench.evaluate(inst, rules.BidPrice(max_columns=limit, sample=10)).cost
    b = bench.evaluate(inst, rules.BidPrice(max_columns=limit, sample=10,
                                            sample_max_columns=limit)).cost
    assert a == b
    with pytest.raises(InvalidInstanceError, match="sample_max_columns"):
        rules.BidPrice(sample_max_columns=0)


def test_the_script_measures_the_sample_price_and_refuses_a_row_that_does_not(tmp_path,
                                                                              monkeypatch):
    out = tmp_path / "large.md"
    script.main(["--cases", "40:3", "--out", str(out)])
    frame = pd.read_csv(out.with_suffix(".csv"))
    forced = frame[frame["method"] == "bid_price_sample"].iloc[0]
    assert forced["price_from"] == "sample" and forced["tail_price"] > 0
    assert forced["sample_size"] == 40  # n <= 120: the sample is the instance itself
    # its cost is that of the stationary price learned on the instance, evaluated directly
    price = rules.BidPriceStationary.learn(inst_mod.generate(40, seed=3))
    direct = bench.evaluate(inst_mod.generate(40, seed=3),
                            rules.BidPrice(prices=[], tail=price)).cost
    assert forced["total_latency"] == direct
    assert not math.isnan(forced["vs_mcsf"])
    # a forced rule whose price falls to 0 stops the script instead of writing the row
    monkeypatch.setattr(script, "forced_sample_rule", lambda: rules.BidPrice(max_columns=1))
    with pytest.raises(SystemExit, match="not from a load sample"):
        script.main(["--cases", "40:3", "--out", str(tmp_path / "bad.md")])
    assert not (tmp_path / "bad.md").exists()
