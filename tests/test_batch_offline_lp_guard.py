"""The offline bid-price rule's whole-LP guard counts memory-row entries at 25x ``max_columns``
(review R31 of 397a9c3): at 100x, 40 requests at round 0 predicted to run a few hundred rounds
(116,500 start columns, 16.4M entries, under both old limits) had their whole LP solved in
``prepare`` for 250 s and 1.6 GB, where the same requests as a stream were priced on a load
sample in seconds. The committed offline instances (n <= 200) stay under the new limit, so their
rows are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from servopt.instances import batch_scheduling as inst_mod
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def test_an_lp_over_25x_entries_is_priced_on_the_load_sample():
    # 12 requests, outputs 50-200 rounds: 2,186 start columns and 289,700 memory-row entries
    inst = inst_mod.generate(12, seed=0, output_range=(50, 200))
    _, columns, entries = model.model_size(rules.planning_instance(inst))
    assert columns == 2186 and entries == 289_700  # model's own counter, pinned
    # max_columns 5,000: the entries are over 25x (125,000) and under the old 100x (500,000)
    rule = rules.BidPrice(max_columns=5_000, sample_max_columns=200_000)
    rule.prepare(inst)
    assert rule.price_from == "sample" and len(rule.prices) == 0
    # the sample of min(n, 120) = 12 requests is the instance itself (memory scaled by 12 / 12):
    # its price is the stationary price learned on the instance, computed here the other way
    assert rule.sample_size == 12
    assert rule.tail == pytest.approx(rules.BidPriceStationary.learn(inst), rel=1e-9)
    # under 25x the whole LP is still solved: per-round prices
    whole = rules.BidPrice(max_columns=20_000)
    whole.prepare(inst)
    assert whole.price_from == "lp" and len(whole.prices) > 0


@pytest.mark.parametrize("n", [50, 100, 200])
def test_the_committed_offline_sizes_stay_under_the_shipped_limit(n):
    # batch_scheduling_full (n = 50, 100) and batch_scheduling_offline200 (n = 200), seeds 0-4:
    # their whole LP is still what the rule prices, so the committed rows do not move
    limit = 25 * rules.MAX_LP_COLUMNS
    for seed in range(5):
        inst = inst_mod.generate(n, seed=seed, lengths="azure")
        _, columns, entries = model.model_size(rules.planning_instance(inst))
        assert columns <= rules.MAX_LP_COLUMNS and entries <= limit, (n, seed, entries)


def test_the_review_instance_is_over_the_shipped_limit_without_building_its_lp():
    # R31's reproducer, all at round 0: the count (no LP built) is over 25x and under 100x
    rng = np.random.default_rng(0)
    n = 40
    rng.choice(200, n, replace=False)  # the stream's arrivals, drawn first as in the reproducer
    prompt = rng.choice(np.arange(20, 400), n, replace=False)
    output = rng.integers(5, 80, n)
    predicted = rng.choice(np.arange(5, 300), n, replace=False)
    inst = inst_mod.Instance(kv_memory=int((prompt + output).max() * 2),
                             arrival=np.zeros(n, int), prompt_tokens=prompt,
                             output_tokens=output, predicted_output=predicted)
    _, columns, entries = model.model_size(rules.planning_instance(inst))
    assert (columns, entries) == (116_500, 16_428_944)  # as the review measured
    assert columns < rules.MAX_LP_COLUMNS
    assert 25 * rules.MAX_LP_COLUMNS < entries < 100 * rules.MAX_LP_COLUMNS
    assert rules.lp_too_large(rules.planning_instance(inst), rules.MAX_LP_COLUMNS,
                              25 * rules.MAX_LP_COLUMNS)
