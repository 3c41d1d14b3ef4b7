"""The bid-price router's forecast with predictions, against the plain sum it computes: the kept
log Phi rows binned per worker must equal each running request's :meth:`_Forecaster.profile` row
summed in run order, step after step and across a change of the prediction spread."""

from __future__ import annotations

import types

import numpy as np

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



def test_prediction_base_load_equals_per_request_sums():
    """base_load with predictions: each worker's load at step h is the sum, in run order, of the
    running requests' :meth:`_Forecaster.profile` rows (plain Python sums; no queued requests)."""
    rng = np.random.default_rng(3)
    H, G = 8, 4
    view = _view(rng, 300, 40, 120, G, longest=90)
    fc = routing._Forecaster(H, 100.0)
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

