"""Batch scheduling's own LP/IP and bound loops refuse a time limit that is not seconds."""

from __future__ import annotations

import pytest

from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as bs
from servopt.solvers import batch_scheduling as sb


@pytest.mark.parametrize("call", [
    lambda i: sb.solve_lp(i, time_limit=-1),
    lambda i: sb.solve_lp(i, time_limit=0),
    lambda i: sb.solve_lp(i, time_limit="2"),
    lambda i: sb.solve_lp(i, time_limit=float("nan")),
    lambda i: sb.solve_lp(i, time_limit=-1, integer=True),
    lambda i: sb.cover_bound(i, time_limit="x"),
    lambda i: sb.cover_bound(i, time_limit=None),
    lambda i: sb.cover_bound(i, time_limit=float("nan")),
    lambda i: sb.group_bound(i, time_limit=None),
    lambda i: sb.group_bound(i, price_time=-2.0),
])
def test_bound_loops_refuse_a_time_limit_that_is_not_seconds(call):
    # HiGHS ignores a time_limit it refuses: -1 ran the IP with no limit (still running after
    # 300 s), 0 returned 'time_limit' with objective 0.0, NaN loops never ended (audit R9)
    with pytest.raises(InvalidInstanceError, match=r"time_limit|price_time"):
        call(bs.generate(8, seed=0))


@pytest.mark.parametrize("rule", [sb.BidPrice, sb.BidPriceStationary])
def test_rules_refuse_a_time_limit_that_is_not_seconds_when_built(rule):
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        rule(time_limit=-1)
    assert rule(time_limit=None).time_limit is None and rule(time_limit=5).time_limit == 5.0


def test_cover_bound_takes_infinity_as_no_limit():
    found = sb.cover_bound(bs.generate(8, seed=0), time_limit=float("inf"), rounds=2)
    assert found.bound > 0
