"""The caching IP reports no prices and says why, on every form and backend (audit R7: the flow
form's IP returned 299 zero ``cache_capacity`` prices with ``prices_skipped`` None while the
interval form skipped them, and the README said it has none). Zeros would be false: the IP's
optimum does move with the capacity, and the LP prices it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt import cli
from servopt.core.matrix import Family, MatrixModel
from servopt.instances import caching as ci
from servopt.solvers import exact


@pytest.mark.parametrize("kw", [{}, {"backend": "pyomo"}, {"form": "interval"},
                                {"backend": "pyomo", "form": "interval"}])
def test_the_caching_ip_has_no_prices_and_says_why(kw):
    inst = ci.generate(requests=120, objects=30, seed=1)  # (300 x 60 took 49 s over the four)
    ip = servopt.solve(inst, **kw)
    assert ip.status == "optimal" and not ip.relaxed
    assert ip.prices == {} and ip.info["prices_skipped"] == exact.INTEGER_PRICES_SKIPPED, kw
    # the optimum moves with the capacity (so zero prices would say something false) ...
    smaller = servopt.solve(dataclasses.replace(inst, capacity=inst.capacity * 0.9), prices=False,
                            **kw)
    assert smaller.objective > ip.objective + 1
    # ... and the LP prices it
    lp = servopt.solve(inst, relax=True, **kw)
    assert lp.prices["cache_capacity"].max() > 0 and "prices_skipped" not in lp.info


def test_the_cli_says_the_caching_ip_has_no_prices(capsys):
    assert cli.main(["solve", "cache_mm_300"]) == 0
    out = capsys.readouterr().out
    assert "prices    none: integer model" in out and "largest prices" not in out


def _tiny(objective: list[float]) -> MatrixModel:
    # min objective . (x, y): x integer in [0, 3], y continuous in [0, 5], row x + y >= 2
    return MatrixModel(objective=np.array(objective), matrix=np.array([[1.0, 1.0]]),
                       row_lower=np.array([2.0]), row_upper=np.array([np.inf]),
                       col_lower=np.zeros(2), col_upper=np.array([3.0, 5.0]),
                       rows={"cover": Family(np.array([0]), pd.RangeIndex(1, name="r"))},
                       columns={"x": Family(np.array([0, 1]), pd.RangeIndex(2, name="c"))},
                       integer=np.array([True, False]))


def test_a_free_continuous_column_with_a_cost_is_priced_one_without_is_not():
    # by hand: cost (1, 0.4): x = 0, y = 2 (cost 0.8); with x fixed at 0 the row's price is y's
    # cost, 0.4. Cost (1, 0): y = 2 for free, the fixed LP's objective is 0 whatever the row
    # asks (within y's bounds): its dual is 0 by construction, so no price is reported
    priced = exact.solve_matrix(_tiny([1.0, 0.4]))
    assert priced.objective == pytest.approx(0.8)
    assert priced.prices["cover"].tolist() == pytest.approx([0.4])
    assert "prices_skipped" not in priced.info
    free = exact.solve_matrix(_tiny([1.0, 0.0]))
    assert free.objective == pytest.approx(0.0)
    assert free.prices == {} and free.info["prices_skipped"] == exact.INTEGER_PRICES_SKIPPED
