"""The bid-price rules built from a saved LP refuse a price no LP gives (R44 F1).

A ``kv_memory`` row is a capacity (<=) row: its price is >= 0 and finite. ``BidPrice.from_solution``
refused a negative or non-finite price, but ``BidPriceStationary.from_solution`` averaged it in,
so a price edited to -0.01 in ``prices/kv_memory.csv`` silently lowered the stationary price.
Truth: the sign of a capacity row's price (module docstring of servopt.core.solution) and the
refusal ``BidPrice.from_solution`` already gave."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt import Solution
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling
from servopt.solvers import batch_scheduling as bs

RULES = (bs.BidPrice, bs.BidPriceStationary)


@pytest.fixture(scope="module")
def lp() -> Solution:
    solution = servopt.solve(bs.planning_instance(batch_scheduling.generate(12, seed=0)), relax=True)
    assert solution.status == "optimal" and (solution.prices["kv_memory"] > 0).any()
    return solution


def _with_price(solution: Solution, position: int, value: float) -> Solution:
    price = solution.prices["kv_memory"].copy()
    price.iloc[position] = value
    return dataclasses.replace(solution, prices={**solution.prices, "kv_memory": price})


def test_a_negative_price_edited_into_the_saved_file_is_refused_by_both_rules(lp, tmp_path):
    lp.save(tmp_path)
    path = tmp_path / "prices" / "kv_memory.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    busy = int(np.flatnonzero(lp.prices["kv_memory"].to_numpy() > 0)[-1])
    table.iloc[0, -1] = "-0.01"  # a round among the busy ones: it would enter the mean
    assert busy > 0
    table.to_csv(path, index=False)
    edited = Solution.load(tmp_path)  # load checks only that prices are numbers
    assert edited.prices["kv_memory"].iloc[0] == -0.01
    for rule in RULES:
        with pytest.raises(InvalidInstanceError, match=r"prices must be finite and >= 0 \(rounds per KV"):
            rule.from_solution(edited)


@pytest.mark.parametrize("value", [-1e-3, -1000.0, math.nan, math.inf])
def test_a_price_no_lp_gives_is_refused_in_any_round(lp, value):
    for rule in RULES:
        with pytest.raises(InvalidInstanceError, match=r"prices must be finite and >= 0"):
            rule.from_solution(_with_price(lp, 0, value))


def test_the_unedited_lp_still_gives_the_mean_over_its_busy_rounds(lp):
    mu = lp.prices["kv_memory"].sort_index().to_numpy()
    last = int(np.flatnonzero(mu > 0)[-1])
    expected = sum(mu[: last + 1]) / (last + 1)  # by hand: the mean up to the last positive round
    assert bs.BidPriceStationary.from_solution(lp).price == pytest.approx(expected, rel=1e-12)
