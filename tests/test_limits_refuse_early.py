"""Size caps refuse before the expensive step (audit R12): the batch model before its greedy
horizon, the batch generator and loader before their arrays, the Pyomo batch model and the
caching LP before their builders. Expected counts are hand calculations on instances made for
them; the expensive step is replaced by a function that fails the test if it is called."""

from __future__ import annotations

import json

import numpy as np
import pytest

import servopt
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as bi
from servopt.instances import caching as ci
from servopt.models import batch_scheduling as bm
from servopt.models import caching as cm
from servopt.solvers import batch_scheduling as bs


def _never(name: str):
    def called(*args, **kwargs):
        raise AssertionError(f"{name} was called before the size check")
    return called


def _same(n: int, s: int, o: int, memory: int) -> bi.Instance:
    return bi.Instance(kv_memory=memory, arrival=np.zeros(n, dtype=np.int64),
                       prompt_tokens=np.full(n, s), output_tokens=np.full(n, o))


@pytest.fixture
def no_schedule(monkeypatch):
    """The greedy and lookahead schedules (146 s at 100,000 requests) fail if called."""
    monkeypatch.setattr(bm, "greedy_schedule", _never("greedy_schedule"))
    monkeypatch.setattr(bm, "lookahead_schedule", _never("lookahead_schedule"))


# -- batch scheduling: the lower bound on the model's size -----------------------------------
def test_horizon_lower_bound_by_hand():
    # 6 requests of s=2, o=3 (footprint 2*3 + 6 = 12 token-rounds each, 72 in all), M = 10:
    # 72 / 10 = 7.2 -> 8 whole rounds; max a + o = 3; a batch cap of 2 needs 18 / 2 = 9 rounds
    inst = _same(6, 2, 3, 10)
    assert bm.horizon_lower_bound(inst) == 8
    capped = bi.Instance(kv_memory=10, arrival=np.zeros(6, dtype=np.int64),
                         prompt_tokens=np.full(6, 2), output_tokens=np.full(6, 3), max_batch=2)
    assert bm.horizon_lower_bound(capped) == 9
    late = bi.Instance(kv_memory=10, arrival=np.array([0, 40]), prompt_tokens=np.array([2, 2]),
                       output_tokens=np.array([3, 3]))
    assert bm.horizon_lower_bound(late) == 43


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_size_lower_bound_is_below_model_size(seed):
    inst = bi.generate(40, arrivals="poisson", seed=seed, max_batch=4)
    for horizon in (None, "safe"):
        exact = bm.model_size(inst, horizon)
        least = bm.size_lower_bound(inst, horizon)
        assert all(lo <= hi for lo, hi in zip(least, exact, strict=True)), (horizon, least, exact)
    assert bm.size_lower_bound(inst, 500) == bm.model_size(inst, 500)  # a given horizon: exact


def test_columns_refused_before_greedy(no_schedule):
    # 6000 requests of s=0, o=1 in M=1: every schedule takes >= 6000 rounds, each request has
    # >= 6000 start rounds: at least 36,000,000 columns (the cap is 30,000,000)
    inst = _same(6000, 0, 1, 1)
    for call in (lambda: servopt.solve(inst, relax=True),
                 lambda: servopt.solve(inst, time_limit=2),
                 lambda: servopt.solve(inst, relax=True, backend="pyomo"),
                 lambda: bm.start_answer(inst),
                 lambda: bm.build_cvxpy(inst)):
        with pytest.raises(InvalidInstanceError, match="at least 36,000,000 start columns"):
            call()


def test_entries_refused_before_greedy(no_schedule):
    # 600 requests of s=0, o=20 in M=20: footprint 210 each, 126,000 in all -> >= 6300 rounds;
    # 6300 - 20 + 1 = 6281 starts each, 3,768,600 columns (under 30M), x 20 rounds each =
    # 75,372,000 memory-row entries (over 60M)
    inst = _same(600, 0, 20, 20)
    with pytest.raises(InvalidInstanceError, match="at least 75,372,000 entries"):
        servopt.solve(inst, relax=True)
    with pytest.raises(InvalidInstanceError, match="at least 75,372,000 entries"):
        servopt.solve(inst, time_limit=2)


# -- batch scheduling: the Pyomo model's own cap ---------------------------------------------
def test_pyomo_cap_refused_before_greedy(no_schedule):
    # as above with 200 requests: >= 2100 rounds, 2081 starts each, 416,200 columns x 20 =
    # 8,324,000 entries: over the Pyomo cap (5M), under the matrix path's (60M)
    inst = _same(200, 0, 20, 20)
    assert bm.size_lower_bound(inst)[2] == 8_324_000
    with pytest.raises(InvalidInstanceError, match="at least 8,324,000 entries") as err:
        servopt.solve(inst, relax=True, backend="pyomo")
    assert "default backend" in str(err.value) and "--backend pyomo" in str(err.value)


def test_pyomo_cap_on_a_given_horizon(monkeypatch):
    # 10 requests of o=1 over a horizon of 600,000 rounds: 10 x 600,000 = 6,000,000 columns of
    # one entry each: over the Pyomo cap, not the matrix path's
    inst = _same(10, 0, 1, 1)
    import pyomo.environ as pyo
    monkeypatch.setattr(pyo, "ConcreteModel", _never("pyo.ConcreteModel"))
    with pytest.raises(InvalidInstanceError, match=r"6,000,000 entries \(more than 5,000,000"):
        bm.build(inst, relax=True, horizon=600_000)
    assert bm.model_size(inst, 600_000)[2] == 6_000_000 <= bm._MAX_NONZEROS


# -- batch scheduling: the request cap --------------------------------------------------------
def test_generate_refuses_requests_before_drawing(monkeypatch):
    monkeypatch.setattr(np.random, "default_rng", _never("default_rng"))
    with pytest.raises(InvalidInstanceError, match="n is 10,000,001 requests: at most 10,000,000"):
        bi.generate(10_000_001)
    with pytest.raises(InvalidInstanceError, match="at most 10,000,000"):
        bi.from_trace("unused.csv", n=10_000_001)


def test_loader_refuses_requests_before_decoding(monkeypatch, tmp_path):
    import servopt.core.instance as core

    data = json.loads(_same(6, 1, 1, 4).to_json())
    monkeypatch.setattr(bi, "MAX_REQUESTS", 5)
    path = tmp_path / "six.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(core, "_decode", _never("_decode"))
    with pytest.raises(InvalidInstanceError, match=r"six.json: field 'arrival' has 6 requests: at most 5"):
        servopt.load(path)
    monkeypatch.undo()
    monkeypatch.setattr(bi, "MAX_REQUESTS", 5)
    with pytest.raises(InvalidInstanceError, match="arrival has 6 requests: at most 5"):
        _same(6, 1, 1, 4)
    assert _same(5, 1, 1, 4).n == 5


# -- caching: the LP's request cap ------------------------------------------------------------
def test_caching_lp_refused_before_intervals(monkeypatch):
    inst = ci.generate(requests=101, objects=20, seed=0)
    monkeypatch.setattr(cm, "MAX_LP_REQUESTS", 100)
    monkeypatch.setattr(cm, "intervals", _never("intervals"))
    for kw in ({"relax": True}, {}, {"relax": True, "backend": "pyomo"},
               {"relax": True, "backend": "cvxpy"}):
        with pytest.raises(InvalidInstanceError, match=r"would cover 101 requests \(more than 100"):
            servopt.solve(inst, **kw)


def test_caching_solve_lp_and_the_bound_refuse_over_the_cap_before_intervals(monkeypatch):
    # the gap table's bound (solvers.caching.solve_lp) had no cap: 1M requests took 2.4 GB
    from servopt.benchmarks import caching as cb
    from servopt.solvers import caching as cs
    inst = ci.generate(requests=101, objects=20, seed=0)
    monkeypatch.setattr(cm, "MAX_LP_REQUESTS", 100)
    monkeypatch.setattr(cm, "intervals", _never("intervals"))
    monkeypatch.setattr(cm, "flow_matrix", _never("flow_matrix"))
    for method in ("highs_matrix", "pyomo", "cvxpy", "networkx"):
        with pytest.raises(InvalidInstanceError, match=r"would cover 101 requests \(more than 100"):
            cs.solve_lp(inst, method=method)
    with pytest.raises(InvalidInstanceError, match=r"would cover 101 requests"):
        cb.bound(inst)


def test_caching_lp_under_cap_solves(monkeypatch):
    inst = ci.generate(requests=100, objects=20, seed=0)
    monkeypatch.setattr(cm, "MAX_LP_REQUESTS", 100)
    assert servopt.solve(inst, relax=True).status == "optimal"


# -- coarse_bound's time limit ----------------------------------------------------------------
@pytest.mark.parametrize("limit", [True, False])
def test_coarse_bound_refuses_bool_time_limit(limit):
    with pytest.raises(InvalidInstanceError, match="time_limit must be a number of seconds"):
        bs.coarse_bound(bi.generate(5), time_limit=limit)
