"""The routers that solve epoch models decide the same in any time unit (solve_matrix scaling).

Scaling every time quantity (c0, c1, arrival seconds) by a power of two is exact in floating
point, so a unit-free router must choose the same worker for every request and the total step
time must scale exactly. Before the objective was scaled inside ``solve_matrix``, HiGHS's absolute
tolerances decided: ``epoch_ip`` cost 16597.07 / 2^-10 against 15359.81 on the audit stream.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as gen
from servopt.models import decode_routing as model
from servopt.solvers import decode_routing as routing


def _in_unit(inst: gen.Instance, f: float) -> gen.Instance:
    """The same stream with every time quantity given in units of 1/f ms (and 1/f s)."""
    req = inst.requests.copy()
    req["arrival_s"] = req["arrival_s"] * f
    return dataclasses.replace(inst, step_ms=inst.step_ms * f,
                               ms_per_kv_token=inst.ms_per_kv_token * f,
                               prefill_ms_per_token=inst.prefill_ms_per_token * f, requests=req)


@pytest.fixture(scope="module")
def audit_stream() -> gen.Instance:
    return gen.generate(requests=300, workers=4, seed=0)


@pytest.mark.parametrize("method", [pytest.param("epoch_ip", marks=pytest.mark.slow),  # ~11 s
                                    "bid_price_lp", "bid_price_argmin"])
def test_epoch_routers_decide_the_same_in_any_time_unit(audit_stream: gen.Instance,
                                                       method: str) -> None:
    base = bench.simulate(audit_stream, method)
    for f in (2.0**-10, 2.0**20):
        other = bench.simulate(_in_unit(audit_stream, f), method)
        moved = np.flatnonzero(other["worker"] != base["worker"])
        assert len(moved) == 0, f"{method} at unit x{f:g}: {len(moved)} requests on other workers"
        assert other["cost"] == base["cost"] * f  # exact: same steps, power-of-two scale


def _tiny_epoch(c1: float) -> model.Epoch:
    """Two workers, three horizon steps, two requests: worker 0 is loaded early, worker 1 late."""
    base = np.array([[50.0, 40.0, 0.0], [0.0, 30.0, 60.0]])
    profile = np.array([[30.0, 20.0, 10.0], [25.0, 25.0, 25.0]])
    return model.Epoch(base, profile, np.ones(2), np.array([31.0, 26.0]), np.array([4.0, 4.0]),
                       np.array([1000.0, 1000.0]), c1, 0.5)


def _brute_force(epoch: model.Epoch) -> tuple[float, list[tuple[int, ...]]]:
    """The least sum_h gamma^h c1 max_g load_gh over every assignment, and the assignments at it."""
    G = epoch.base_load.shape[0]
    n = epoch.profile.shape[0]
    costs = {}
    for a in np.ndindex(*(G,) * n):
        load = epoch.base_load.copy()
        for i, g in enumerate(a):
            load[g] += epoch.profile[i]
        costs[a] = float(epoch.weights @ load.max(axis=0))
    best = min(costs.values())
    return best, [a for a, c in costs.items() if c <= best * (1 + 1e-12)]


@pytest.mark.parametrize("f", [1.0, 2.0**-30, 1e-12, 2.0**30])
def test_epoch_ip_finds_the_brute_force_optimum_in_any_unit(f: float) -> None:
    # at c1 = 1e-4 x 2^-30 every assignment's objective is within HiGHS's absolute MIP gap
    # (1e-6) of the optimum: unscaled, its first incumbent was returned as optimal
    epoch = _tiny_epoch(1e-4 * f)
    best, argbest = _brute_force(epoch)
    mat = model.epoch_matrices(epoch, relax=False)
    res = routing.solve_matrix(mat, mip_gap=0.0)
    assert res["status"] == "optimal"
    x = res["x"][mat.cols["x"]].reshape(2, 2)
    assert tuple(np.argmax(x, axis=1).tolist()) in argbest
    assert res["objective"] == pytest.approx(best, rel=1e-9)
    assert res["bound"] == pytest.approx(best, rel=1e-6)


def test_epoch_lp_prices_scale_with_the_unit() -> None:
    # prices are d objective / d rhs in ms per KV token (or slot): x f in units of 1/f ms; the
    # plan and the objective / f are the same numbers (bit for bit for a power of two)
    epoch = _tiny_epoch(1e-4)
    mat = model.epoch_matrices(epoch, relax=True)
    base = routing.solve_matrix(mat, central=True)
    assert base["status"] == "optimal"
    for f in (2.0**-24, 2.0**24):
        mat_f = model.epoch_matrices(dataclasses.replace(epoch, ms_per_kv_token=1e-4 * f),
                                     relax=True)
        res = routing.solve_matrix(mat_f, central=True)
        assert res["status"] == "optimal"
        np.testing.assert_array_equal(res["x"], base["x"])
        np.testing.assert_array_equal(res["price"], base["price"] * f)
        assert res["objective"] == base["objective"] * f


def test_an_lp_solve_does_not_depend_on_a_mip_solved_before_it(
        audit_stream: gen.Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    # HiGHS leaves primal_feasibility_tolerance at the MIP's 1e-6 after a MIP (solve_matrix
    # shares one HiGHS object): at IPX's default optimality tolerance one epoch LP of this
    # stream ended 'unknown' at 1e-7 and 'optimal' at 1e-6, so bid_price_lp routed differently
    # after an epoch_ip run in the same process (15540.94 vs 15441.73 ms)
    mats = []
    solve = routing.solve_matrix

    def record(mat: model.MatrixLP, **kw: object) -> dict:
        mats.append((mat, kw))
        return solve(mat, **kw)

    monkeypatch.setattr(routing, "solve_matrix", record)
    bench.simulate(audit_stream, "bid_price_lp")
    monkeypatch.undo()
    assert len(mats) > 50
    monkeypatch.setattr(routing._LOCAL, "highs", None)  # a fresh HiGHS object (this thread's)
    fresh = [solve(mat, **kw) for mat, kw in mats]
    assert all(r["status"] == "optimal" for r in fresh)
    tolerances = ("primal_feasibility_tolerance", "dual_feasibility_tolerance",
                  "ipm_optimality_tolerance")
    options = [routing._highs().getOptionValue(name) for name in tolerances]
    solve(model.epoch_matrices(_tiny_epoch(1e-4), relax=False))  # a MIP on the same object
    after = [solve(mat, **kw) for mat, kw in mats]
    assert [routing._highs().getOptionValue(name) for name in tolerances] == options
    for a, b in zip(fresh, after, strict=True):
        assert a["status"] == b["status"]
        np.testing.assert_array_equal(a["x"], b["x"])
