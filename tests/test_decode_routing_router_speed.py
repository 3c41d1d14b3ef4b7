"""The bid-price router's cheaper survival refresh on streams with predictions, against the full
computation it replaces (bit for bit, so the routing decisions cannot move): with predictions the
forecast reads the survival table S(t) only for new and queued requests over the horizon, so the
refresh keeps S(t) for t < H + 2 only; that table must be the first H + 2 entries of the full
Kaplan-Meier table (and of :func:`survival` on the same observations), refresh after refresh, and
the router must route every request as one that keeps the full table. The forecast of the running
requests with predictions (kept log Phi, binned per worker) is pinned against each request's
:meth:`_Forecaster.profile` row summed in run order.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as inst_mod
from servopt.solvers import decode_routing as routing


def _view(rng: np.random.Generator, n_req: int, done: int, running: int, G: int,
          longest: int) -> types.SimpleNamespace:
    """A fleet view: ``done`` finished requests (outputs 1..longest), ``running`` running ones
    (ages 0..longest), predictions for all."""
    done_ids = rng.permutation(n_req)[:done]
    outputs = rng.integers(1, longest + 1, done)
    outputs[:3] = [1, 2, longest][:done]  # the shortest outputs and one far past the horizon
    run_ids = np.setdiff1d(np.arange(n_req), done_ids)[:running]
    ages = rng.integers(0, longest + 1, running)
    ages[:2] = [0, 0][:running]
    return types.SimpleNamespace(
        workers=G, prompt=rng.integers(1, 3000, n_req),
        predicted=np.maximum(rng.lognormal(4.0, 1.2, n_req), 0.5),
        run_ids=run_ids, run_worker=rng.integers(0, G, running), run_generated=ages,
        completed_outputs=lambda: outputs, completed_ids=lambda: done_ids,
        kv_queued=np.zeros(G, dtype=np.int64), queued=np.zeros(G, dtype=np.int64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_survival_equals_the_full_table(seed):
    H, n_req = 8, 400
    for rnd, done in enumerate((0, 5, 40, 150, 300)):
        view = _view(np.random.default_rng([seed, rnd]), n_req, done, 60, 3, longest=200 + 40 * rnd)
        short, full = routing._Forecaster(H, 100.0), routing._Forecaster(H, 100.0)
        short.prefix = H + 2
        short.refresh(view)
        full.refresh(view)
        assert len(short.S) == H + 2 < len(full.S)
        assert np.array_equal(short.S, full.S[:H + 2]), rnd
        # and the straightforward Kaplan-Meier estimate from all observations (the same numbers)
        km = routing.survival(view.completed_outputs(), view.run_generated, len(full.S), 100.0)
        assert np.array_equal(short.S, km[:H + 2]), rnd
        assert short.sigma == full.sigma


def test_prefix_survival_counts_finished_requests_once_over_a_run():
    """Successive refreshes within a run extend the death counts by the newly finished requests
    (outputs within the prefix and beyond it): the table stays the full table's prefix."""
    rng = np.random.default_rng(7)
    H, n_req = 6, 500
    outputs_all = rng.integers(1, 120, n_req)
    outputs_all[:4] = [1, H + 1, H + 2, 119]
    predicted = np.maximum(rng.lognormal(3.5, 1.0, n_req), 0.5)
    short, full = routing._Forecaster(H, 50.0), routing._Forecaster(H, 50.0)
    short.prefix = H + 2
    for done in (0, 1, 4, 30, 31, 200, 420):
        running = np.arange(done, min(done + 50, n_req))
        view = types.SimpleNamespace(
            predicted=predicted, run_generated=rng.integers(0, 130, len(running)),
            completed_outputs=lambda d=done: outputs_all[:d],
            completed_ids=lambda d=done: np.arange(d))
        short.refresh(view)
        full.refresh(view)
        assert np.array_equal(short.S, full.S[:H + 2]), done
        assert short.sigma == full.sigma
    # a new run on the same forecasters (fewer finished requests than counted): counts restart
    view = types.SimpleNamespace(predicted=predicted, run_generated=rng.integers(0, 130, 20),
                                 completed_outputs=lambda: outputs_all[:3],
                                 completed_ids=lambda: np.arange(3))
    short.refresh(view)
    full.refresh(view)
    assert np.array_equal(short.S, full.S[:H + 2])
    fresh = routing._Forecaster(H, 50.0)
    fresh.refresh(view)
    assert np.array_equal(short.S, fresh.S[:H + 2])


def test_prediction_base_load_equals_per_request_sums():
    """base_load with predictions: each worker's load at step h is the sum, in run order, of the
    running requests' :meth:`_Forecaster.profile` rows (plain Python sums; no queued requests)."""
    rng = np.random.default_rng(3)
    H, G = 8, 4
    view = _view(rng, 300, 40, 120, G, longest=90)
    fc = routing._Forecaster(H, 100.0)
    fc.prefix = H + 2
    fc.refresh(view)
    for step in range(7):  # ages advance: the kept log Phi windows move, then go stale
        got = fc.base_load(view)
        expected = [[0.0] * H for _ in range(G)]
        for r, g, age in zip(view.run_ids, view.run_worker, view.run_generated, strict=True):
            row = fc.profile(np.array([float(view.prompt[r])]), np.array([float(age)]),
                             np.array([float(view.predicted[r])]))[0]
            for h in range(H):
                expected[g][h] += row[h]
        assert np.array_equal(got, np.array(expected)), step
        view.run_generated = view.run_generated + 1
        if step == 3:  # a refresh: sigma changes, every kept row is stale
            fc.version += 1
            fc.sigma *= 1.3


@pytest.mark.parametrize("workload,error,seed", [("conversation", 0.5, 0), ("code", 0.0, 1),
                                                 ("conversation", 1.0, 2)])
def test_router_with_prefix_survival_routes_as_with_the_full_table(workload, error, seed):
    """On streams with predictions the router decides as one whose forecaster keeps the full
    survival table (the same assignments; the LP-gated router too)."""

    class FullTable(routing.BidPrice):
        def reset(self, instance, seed=0):
            super().reset(instance, seed)
            self.fc.prefix = None

    inst = inst_mod.generate(workload=workload, requests=300, workers=4, load=0.9, slots=16,
                             kv_capacity=60_000, prediction_error=error, seed=seed)
    assert inst.predicted is not None
    expected = bench.simulate(inst, FullTable())["worker"]
    np.testing.assert_array_equal(bench.simulate(inst, routing.BidPrice())["worker"], expected)
    if seed:  # the LP-gated router (an LP per refresh) on one stream
        return
    gated = dict(gate=True, pick="kv", discount=0.8)
    expected = bench.simulate(inst, FullTable(**gated))["worker"]
    np.testing.assert_array_equal(bench.simulate(inst, routing.BidPrice(**gated))["worker"], expected)
