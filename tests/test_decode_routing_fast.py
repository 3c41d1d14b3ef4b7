"""The bid-price router's fast path makes the same decisions as a straightforward implementation.

The reference below recomputes, for every request, the forecast L_gh of every worker from each
running request's own profile (:meth:`_Forecaster.profile`, the documented survival / prediction
formulas), and the price sum_h gamma^h c1 (max(M_h, L_gh + w_ih) - M_h) with plain Python loops;
ties go to the fewest KV tokens, lowest index. It shares only the online estimates (survival,
prediction spread, discount), refreshed on the same schedule.
"""

from __future__ import annotations

import numpy as np
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as inst_mod
from servopt.solvers import decode_routing as routing


class ReferenceBidPrice(routing.BidPrice):
    """Per-request forecast and price, loops over workers and horizon steps."""

    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        self.ties = self.unique = 0

    def _forecast(self, view) -> list[list[float]]:
        G, H, fc = view.workers, self.horizon, self.fc
        load = [[0.0] * H for _ in range(G)]
        pred = view.predicted
        for r, g, age in zip(view.run_ids, view.run_worker, view.run_generated, strict=True):
            p = None if pred is None else np.array([float(pred[r])])
            prof = fc.profile(np.array([float(view.prompt[r])]), np.array([float(age)]), p)[0]
            for h in range(H):
                load[g][h] += prof[h]
        s0 = fc._S(np.zeros(1))[0]
        for g in range(G):
            for h in range(H):
                surv = fc._S(np.array([h]))[0]
                # queued prompts alive with S(h); each queued request adds h tokens by step h
                load[g][h] += view.kv_queued[g] * surv + view.queued[g] * h * surv / max(s0, 1e-12)
        return load

    def route(self, view, ids):
        self.arrivals[view.step % self.window] += len(ids)
        if len(ids) and view.step - self.last_refresh >= self.refresh_every:
            self.fc.refresh(view)
            self._discount(view)
            self.last_refresh = view.step
        if len(ids) == 0:
            return
        G, H, c1 = view.workers, self.horizon, self.instance.ms_per_kv_token
        load = self._forecast(view)
        for i in ids:
            i = int(i)
            p = None if view.predicted is None else np.array([float(view.predicted[i])])
            w = self.fc.profile(np.array([float(view.prompt[i])]), np.zeros(1), p)[0]
            top = [max(load[g][h] for g in range(G)) for h in range(H)]
            price = [sum(self.gamma ** h * c1 * (max(top[h], load[g][h] + w[h]) - top[h])
                         for h in range(H)) for g in range(G)]
            best = min(price)
            tied = [g for g in range(G) if price[g] <= best + 1e-9 * max(1.0, abs(best))]
            self.ties += len(tied) > 1
            self.unique += len(tied) == 1
            kv = view.kv_running + view.kv_queued
            g = min(tied, key=lambda g: (kv[g], g))
            view.assign(i, g)
            for h in range(H):
                load[g][h] += w[h]


STREAMS = [
    # (workload, workers, load, prediction_error, arrivals, seed)
    ("conversation", 3, 0.85, None, "poisson", 0),
    ("conversation", 4, 0.95, None, "bursty", 1),
    ("code", 3, 0.7, None, "poisson", 2),
    ("conversation", 3, 0.85, 0.0, "poisson", 3),
    ("conversation", 4, 0.85, 0.5, "bursty", 4),
    ("code", 2, 0.95, 1.0, "poisson", 5),
]


@pytest.mark.parametrize("workload,workers,load,error,arrivals,seed", STREAMS)
def test_fast_bid_price_equals_reference(workload, workers, load, error, arrivals, seed):
    inst = inst_mod.generate(workload=workload, requests=90, workers=workers, load=load,
                             arrivals=arrivals, slots=8, kv_capacity=40_000,
                             prediction_error=error, seed=seed)
    ref = ReferenceBidPrice()
    expected = bench.simulate(inst, ref)["worker"]
    fast = bench.simulate(inst, routing.BidPrice())["worker"]
    np.testing.assert_array_equal(fast, expected)
    # the streams exercise both branches: ties broken by least-KV and a strictly cheapest worker
    assert ref.ties > 0 and ref.unique > 0


def test_fast_forecast_tables_equal_profile_formula():
    """Survival tables give bit-identical profiles to :meth:`_Forecaster.profile`."""
    fc = routing._Forecaster(horizon=8, prior_mean=50.0)
    rng = np.random.default_rng(0)
    fc.set_survival(routing.survival(rng.integers(1, 60, 40), rng.integers(0, 30, 10), 70, 50.0))
    prompt = rng.integers(1, 2000, 12).astype(float)
    assert np.array_equal(fc.new_profiles(prompt, None), fc.profile(prompt, np.zeros(12), None))
    ages = rng.integers(0, 62, 12)
    table = fc.alive_table()[:, ages].T
    direct = fc._S(ages[:, None] + np.arange(8)) / np.maximum(fc._S(ages), 1e-12)[:, None]
    assert np.array_equal(table, direct)
    # past the table the tail formula still applies
    assert fc._S(np.array([80]))[0] == pytest.approx(fc.S[-1] * (1 - 1 / 50.0) ** 11)
