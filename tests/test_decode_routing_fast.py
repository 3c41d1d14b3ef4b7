"""The bid-price router's fast paths against straightforward implementations.

``forecast="exact"``: the reference below recomputes, for every request, the forecast L_gh of
every worker from each running request's own profile (:meth:`_Forecaster.profile`, the documented
survival / prediction formulas), and the price sum_h gamma^h c1 (max(M_h, L_gh + w_ih) - M_h) with
plain Python loops; a step's arrivals are placed largest discounted profile mass first (ties in
arrival order) and assigned in arrival order; ties go to the fewest KV tokens, lowest index. It
shares only the online estimates (survival, prediction spread, discount), refreshed on the same
schedule.

``forecast="book"`` (the default): at every step the book's forecast equals, to rounding, a
plain-Python recomputation of what it stands for (the exact forecast at the last rebuild over
H + span steps, plus the profiles of the requests routed since, shifted to this step, plus each
worker's error now carried forward with the fleet's KV-weighted decay), and at a rebuild it is
bit-identical to the exact forecast.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.core import InvalidInstanceError
from servopt.instances import decode_routing as inst_mod
from servopt.solvers import decode_routing as routing


class ReferenceBidPrice(routing.BidPrice):
    """Per-request forecast and price, loops over workers and horizon steps."""

    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        self.ties = self.unique = self.reordered = 0

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
        profile = {}
        for i in ids:
            i = int(i)
            p = None if view.predicted is None else np.array([float(view.predicted[i])])
            profile[i] = self.fc.profile(np.array([float(view.prompt[i])]), np.zeros(1), p)[0]
        # largest discounted profile mass first (Python's sort is stable: ties in arrival order)
        mass = {i: sum(self.gamma ** h * profile[i][h] for h in range(H)) for i in profile}
        chosen = {}
        kv = view.kv_running + view.kv_queued
        order = sorted(profile, key=lambda i: -mass[i])
        self.reordered += order != sorted(profile)
        for i in order:
            w = profile[i]
            top = [max(load[g][h] for g in range(G)) for h in range(H)]
            price = [sum(self.gamma ** h * c1 * (max(top[h], load[g][h] + w[h]) - top[h])
                         for h in range(H)) for g in range(G)]
            best = min(price)
            tied = [g for g in range(G) if price[g] <= best + 1e-9 * max(1.0, abs(best))]
            self.ties += len(tied) > 1
            self.unique += len(tied) == 1
            g = min(tied, key=lambda g: (kv[g], g))
            chosen[i] = g
            kv[g] += view.prompt[i]
            for h in range(H):
                load[g][h] += w[h]
        for i in ids:  # assigned in arrival order
            view.assign(int(i), chosen[int(i)])


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
    fast = bench.simulate(inst, routing.BidPrice(forecast="exact"))["worker"]
    np.testing.assert_array_equal(fast, expected)
    # the streams exercise both branches: ties broken by least-KV and a strictly cheapest worker,
    # and steps whose arrivals are placed out of arrival order
    assert ref.ties > 0 and ref.unique > 0 and ref.reordered > 0


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




class CheckedBook(routing.BidPrice):
    """The default router, checking its book against a plain-Python recomputation at every step."""

    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        self.ref = None
        self.checked = self.at_rebuild = 0
        book = self.book
        check = book.load

        def load(view, error):
            got = check(view, error)
            self._check(view, got)
            return got

        book.load = load

    def _wide(self, fc, width):
        wide = routing._Forecaster(width, self.prior_mean)  # the same formulas, a longer horizon
        wide.set_survival(fc.S)
        wide.sigma = fc.sigma
        return wide

    def _check(self, view, got):
        book, fc, H, G = self.book, self.fc, self.horizon, view.workers
        if book.t0 == view.step:  # rebuilt now: the exact forecast, over W steps
            assert np.array_equal(got, fc.base_load(view))
            wide = self._wide(fc, book.W)
            running = np.zeros((G, book.W))
            for r, j, g in zip(view.run_ids, view.run_generated, view.run_worker, strict=True):
                pred = None if view.predicted is None else np.array([float(view.predicted[r])])
                running[g] += wide.profile(np.array([float(view.prompt[r])]), np.array([float(j)]), pred)[0]
            surv = fc._S(np.arange(book.W))
            queued = (view.kv_queued[:, None] * surv[None, :]
                      + view.queued[:, None] * (surv / fc._S(np.zeros(1))[0] * np.arange(book.W))[None, :])
            total = running.sum(axis=0)
            self.ref = running + queued
            self.decay = total[:H] / total[0] if total[0] > 0 else np.ones(H)
            self.at_rebuild += 1
        d = view.step - book.t0
        kv = view.kv_running + view.kv_queued
        error = kv - self.ref[:, d]
        expected = self.ref[:, d:d + H] + error[:, None] * self.decay[None, :]
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6 * max(1.0, np.abs(expected).max()))
        self.checked += 1

    def route(self, view, ids):
        super().route(view, ids)
        if len(ids):  # the requests just routed, from this step on
            d = view.step - self.book.t0
            wide = self._wide(self.fc, self.book.W - d)
            for i in ids:
                pred = None if view.predicted is None else np.array([float(view.predicted[i])])
                self.ref[view.worker_of[i], d:] += wide.profile(
                    np.array([float(view.prompt[i])]), np.zeros(1), pred)[0]


@pytest.mark.parametrize("workload,workers,load,error,arrivals,seed",
                         [s for s in STREAMS if s[3] is None])
@pytest.mark.parametrize("tolerance", [0.01, 0.2])
def test_book_forecast_equals_reference(workload, workers, load, error, arrivals, seed, tolerance):
    inst = inst_mod.generate(workload=workload, requests=90, workers=workers, load=load,
                             arrivals=arrivals, slots=8, kv_capacity=40_000, seed=seed)
    router = CheckedBook(tolerance=tolerance)
    bench.simulate(inst, router)
    # the streams exercise rebuilds and steps the book only carries forward
    assert router.at_rebuild >= 2 and router.checked > router.at_rebuild


@pytest.mark.parametrize("error", [0.0, 0.5])
def test_streams_with_predictions_use_the_exact_forecast(error):
    inst = inst_mod.generate(workload="conversation", requests=90, workers=3, load=0.9,
                             slots=8, kv_capacity=40_000, prediction_error=error, seed=7)
    router = routing.BidPrice()
    default = bench.simulate(inst, router)["worker"]
    assert router.book is None
    exact = bench.simulate(inst, routing.BidPrice(forecast="exact"))["worker"]
    np.testing.assert_array_equal(default, exact)


def test_book_options_are_checked():
    with pytest.raises(InvalidInstanceError, match="forecast"):
        routing.BidPrice(forecast="cached")
    with pytest.raises(InvalidInstanceError, match="span"):
        routing.BidPrice(span=0)
    with pytest.raises(InvalidInstanceError, match="tolerance"):
        routing.BidPrice(tolerance=-0.1)


class StraightRouter(routing.BidPrice):
    """The default rule written straightforwardly: per request the full price at every worker.

    Per step: the forecast (the :class:`_LoadBook`'s, rebuilt on the documented condition, or
    the exact one), every arrival's profile from :meth:`_Forecaster.new_profiles`, the placement
    order from ``np.argsort`` of the discounted profile mass; per request: the discounted barrier
    rise sum_h gamma^h c1 (max(M_h, L_gh + w_ih) - M_h) at every worker (no shortcut when the
    request fits under the barriers, no screen, no lazy or batched updates), the cheapest worker
    with the fewest KV tokens (lowest index), then the forecast, the barrier and the book's row
    updated. A request that fits on least-KV's worker has price exactly 0 there, so the rule's
    shortcuts must give the same worker.
    """

    def _route_marginal(self, view, ids):
        if len(ids) == 0:
            return
        fc, book, H = self.fc, self.book, self.horizon
        kv = view.kv_running + view.kv_queued
        pred = None if view.predicted is None else view.predicted[ids].astype(float)
        prompt = view.prompt[ids].astype(float)
        if book is None:
            if view.step - self.last_refresh >= self.refresh_every:
                fc.refresh(view)
                self._discount(view)
                self.last_refresh = view.step
            load = fc.base_load(view)
            wide = fc.new_profiles(prompt, pred)
        else:
            error = book.error(view, kv)
            if error is None or np.abs(error).sum() > self.tolerance * kv.sum():
                if view.step - self.last_refresh >= self.refresh_every:
                    fc.refresh(view)
                    self._discount(view)
                    self.last_refresh = view.step
                book.rebuild(view, fc)
                error = book.error(view, kv)
            load = book.load(view, error)
            d = view.step - book.t0
            wide = fc.new_profiles(prompt, pred, book.W - d)
        top = load.max(axis=0)
        profiles = wide[:, :H]
        order = np.argsort(-(profiles @ self.weights), kind="stable")
        chosen = {}
        for k in order:
            w = profiles[k]
            price = self.instance.ms_per_kv_token * ((np.maximum(load + w, top) - top) @ self.weights)
            best = price.min()
            cheapest = np.flatnonzero(price <= best + 1e-9 * max(1.0, abs(best)))
            g = int(cheapest[np.argmin(kv[cheapest])])
            chosen[k] = g
            kv[g] += int(view.prompt[ids[k]])
            load[g] += w
            top = np.maximum(top, load[g])
            if book is not None:
                book.F[g, d:] += wide[k]
        for k, i in enumerate(ids):
            view.assign(int(i), chosen[k])


class BookWithPredictions(routing.BidPrice):
    """The load book on a stream with predictions (``benchmarks/decode_routing_forecast.py``)."""

    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        if self.book is None:
            self.book = routing._LoadBook(instance.workers, self.horizon, self.span)


class StraightBookWithPredictions(StraightRouter, BookWithPredictions):
    pass


SPEED_STREAMS = [
    # the speed benchmark's workloads (benchmarks/decode_routing_speed.py), shorter
    # (workload, workers, requests, prediction_error)
    ("conversation", 8, 1600, None),
    ("conversation", 32, 3200, None),
    ("code", 32, 3200, None),
    ("code", 8, 1600, None),
    ("conversation", 8, 1200, 0.5),
    ("code", 32, 2000, 0.0),
]


@pytest.mark.parametrize("workload,workers,requests,error", SPEED_STREAMS)
def test_default_router_routes_as_the_straightforward_rule(workload, workers, requests, error):
    inst = bench.make_cell(seed=3, workload=workload, workers=workers, load=0.9, requests=requests,
                           prediction_error=error)
    expected = bench.simulate(inst, StraightRouter())["worker"]
    np.testing.assert_array_equal(bench.simulate(inst, routing.BidPrice())["worker"], expected)
    if error is None:  # the exact forecast too (the default uses it on streams with predictions)
        expected = bench.simulate(inst, StraightRouter(forecast="exact"))["worker"]
        np.testing.assert_array_equal(bench.simulate(inst, routing.BidPrice(forecast="exact"))["worker"],
                                      expected)
    else:  # the book with predictions (its own benchmark)
        expected = bench.simulate(inst, StraightBookWithPredictions())["worker"]
        np.testing.assert_array_equal(bench.simulate(inst, BookWithPredictions())["worker"], expected)


def test_fast_book_paths_are_exercised():
    """The speed streams exercise the barrier-rise prices and both step paths (few arrivals: the
    exact check per request; more: the screen first)."""
    counts = {"cheapest": 0}
    sizes = []
    for workload, workers in (("code", 32), ("conversation", 8)):
        inst = bench.make_cell(seed=3, workload=workload, workers=workers, load=0.9, requests=1600)
        router = routing.BidPrice()
        cheapest, route_book = router._cheapest, router._route_book

        def counted(*args, _cheapest=cheapest):
            counts["cheapest"] += 1
            return _cheapest(*args)

        def book(view, ids, _route_book=route_book):
            sizes.append(len(ids))
            _route_book(view, ids)

        router._cheapest, router._route_book = counted, book
        bench.simulate(inst, router)
    screened = np.array(sizes) >= routing.BidPrice.SCREEN_FROM
    assert counts["cheapest"] > 50
    assert screened.sum() > 20 and (~screened).sum() > 20


RANDOM_STREAMS = [
    # small random streams, with and without predictions: (workload, workers, load, arrivals, error, seed)
    ("code", 6, 0.95, "bursty", None, 1),  # bursts of 12 or more arrivals in a step
    ("conversation", 4, 0.9, "bursty", None, 2),  # many steps with one arrival
    ("conversation", 3, 0.85, "poisson", None, 3),
    ("code", 5, 0.9, "bursty", 0.5, 4),
    ("conversation", 4, 0.9, "bursty", 0.0, 5),
    ("conversation", 2, 0.95, "poisson", 1.0, 6),
]


@pytest.mark.parametrize("workload,workers,load,arrivals,error,seed", RANDOM_STREAMS)
def test_router_on_random_streams_routes_as_the_straightforward_rule(workload, workers, load, arrivals,
                                                                     error, seed):
    """Every request to the same worker at the same step as :class:`StraightRouter` (the rule without
    any of the fast paths), on the load book and on the exact forecast; the streams exercise steps
    with one arrival and with two, the bursty ones with 3-11 and the first with 12 or more."""
    inst = inst_mod.generate(workload=workload, requests=400, workers=workers, load=load,
                             arrivals=arrivals, slots=16, kv_capacity=60_000, prediction_error=error,
                             seed=seed)
    sizes = []

    class Counted(routing.BidPrice):
        def route(self, view, ids):
            sizes.append(len(ids))
            super().route(view, ids)

    fast = bench.simulate(inst, Counted())
    straight = bench.simulate(inst, StraightRouter())
    np.testing.assert_array_equal(fast["worker"], straight["worker"])
    np.testing.assert_array_equal(fast["steps"]["step_ms"], straight["steps"]["step_ms"])
    if error is None:  # the exact forecast (the default one on streams with predictions)
        np.testing.assert_array_equal(bench.simulate(inst, routing.BidPrice(forecast="exact"))["worker"],
                                      bench.simulate(inst, StraightRouter(forecast="exact"))["worker"])
    sizes = np.array(sizes)
    assert (sizes == 1).sum() > 5 and (sizes == 2).sum() > 5
    if arrivals == "bursty":
        assert ((sizes >= 3) & (sizes < 12)).sum() > 5
    if seed == 1:
        assert (sizes >= 12).sum() > 0


def test_tolerance_test_decides_as_numpys_sums():
    """The book's rebuild test on Python sums gives numpy's answer, also with the limit exactly on
    numpy's sum and on error vectors whose Python and numpy sums differ in the last bits."""
    router = routing.BidPrice()
    rng = np.random.default_rng(0)
    on_limit = differ = 0
    for _ in range(300):
        G = int(rng.integers(1, 80))
        kv = rng.integers(0, 300_000, G)
        error = rng.normal(0.0, 1.0, G) * 10.0 ** rng.integers(-3, 12, G)  # mixed magnitudes
        numpy_sum = float(np.add.reduce(np.abs(error)))
        kv_sum = float(np.add.reduce(kv))
        differ += sum(abs(e) for e in error.tolist()) != numpy_sum
        exact = numpy_sum / kv_sum if kv_sum else 0.05
        for tolerance in (exact, np.nextafter(exact, 0.0), np.nextafter(exact, 1.0), exact * (1 + 1e-10),
                          exact * (1 - 1e-10), 0.05):
            router.tolerance = float(tolerance)
            limit = router.tolerance * kv_sum
            on_limit += numpy_sum == limit
            assert router._over_tolerance(error, kv) == (numpy_sum > limit)
    assert on_limit > 50 and differ > 50


def _predicting_forecaster(seed: int, n: int, H: int = 8):
    """A forecaster over ``n`` random requests with predicted lengths (sigma 0.37), and its view."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(1, 3000, n)
    predicted = np.maximum(rng.lognormal(4.0, 1.5, n), 0.5)
    fc = routing._Forecaster(H, 100.0)
    fc.set_survival(routing.survival(rng.integers(1, 300, 80), rng.integers(0, 100, 20), 320, 100.0))
    fc.sigma = 0.37
    return fc, types.SimpleNamespace(prompt=prompt, predicted=predicted, workers=3)


def test_prediction_profiles_equal_the_formula():
    """:meth:`_Forecaster.new_predicted` gives :meth:`new_profiles`' numbers, and the log Phi it keeps
    gives :meth:`_predicted_running` the numbers of :meth:`profile` when the requests start running
    (bit for bit), as does a fresh evaluation after a refresh changes sigma."""
    fc, view = _predicting_forecaster(seed=1, n=30)
    prompt, predicted = view.prompt, view.predicted
    ids = np.array([3, 7, 8, 20, 29])
    got = fc.new_predicted(view, ids)
    expected = fc.new_profiles(prompt[ids].astype(float), predicted[ids].astype(float))
    assert np.array_equal(got, expected)

    def running(age):
        view.run_ids, view.run_generated = ids, np.full(len(ids), age)
        return fc._predicted_running(view)

    for age in range(4):  # seeded at routing: the cache from new_predicted is used
        formula = fc.profile(prompt[ids].astype(float), np.full(len(ids), float(age)),
                             predicted[ids].astype(float)).T
        assert np.array_equal(running(age), formula)
    fc.version += 1  # a refresh: the cache is stale
    fc.sigma = 0.8
    formula = fc.profile(prompt[ids].astype(float), np.full(len(ids), 3.0), predicted[ids].astype(float)).T
    assert np.array_equal(running(3), formula)


def test_prediction_profiles_after_a_preemption_equal_the_formula():
    """A preempted request restarts at age 0 (recompute preemption) below the age its kept log Phi
    starts at: it must be evaluated afresh, not read from the slot before its own (another
    request's numbers)."""
    fc, view = _predicting_forecaster(seed=2, n=12)
    prompt, predicted = view.prompt, view.predicted
    ids = np.array([2, 5, 9])
    fc.new_predicted(view, ids)  # routed: their log Phi kept from age 0
    for age in (0, 3, 6, 9, 0, 1):  # ages 6 and 9 move the kept window; then all are preempted
        view.run_ids, view.run_generated = ids, np.full(len(ids), age)
        formula = fc.profile(prompt[ids].astype(float), np.full(len(ids), float(age)),
                             predicted[ids].astype(float)).T
        assert np.array_equal(fc._predicted_running(view), formula), age
