"""Capacity: ``kv_utilisation`` is the time average of the KV tokens held over the window / M.

Both paths report it: the fleet observer (what a reactive policy reads) and the rate check (what
``evaluate`` puts in a row). Idle time counts as 0 KV, on the time base of
``compute_utilisation``. Before (R40 F1) the observer gave each idle gap the KV of the busy entry
after it and the rate check took a mean per iteration, leaving idle time out: a worker busy 0.3%
of the time showed 0.10 on both. Expected values are hand calculations, or a brute-force
time average over a fine grid of a one-entry-per-iteration log.
"""

from __future__ import annotations

import numpy as np
import pytest

from servopt.benchmarks import capacity as bench
from servopt.instances import capacity as instances
from servopt.solvers.capacity import Plan

# the toy of R40's reproducer: every request s = 100, o = 2, M = 1000, default worker
# (b = 4096, C = 512, d0 = 0.012 s, d1 = 6e-5 s/token). Alone on the worker a request takes a
# prefill iteration (100 tokens, 0.012 + 0.006 = 0.018 s, KV 100 reserved, emits token 1) and a
# decode iteration (1 token, 0.01206 s, KV 101, emits token 2): it lasts T = 0.03006 s and holds
# K = 100 x 0.018 + 101 x 0.01206 = 3.01806 KV token-seconds.
T = 0.018 + 0.01206
K = 100 * 0.018 + 101 * 0.01206
M = 1000


def toy(rate: float = 0.1) -> instances.Instance:
    return instances.Instance(prompt_tokens=np.array([100] * 50), output_tokens=np.array([2] * 50),
                              arrival_rate=rate, kv_tokens=M)


def every_ten_seconds(monkeypatch) -> None:
    """Arrivals at unit times 1, 2, ..., n (every 10 s at 0.1 req/s), all requests s = 100, o = 2."""
    monkeypatch.setattr(bench, "sample_requests", lambda instance, n, seed=0, balanced=True: (
        np.full(n, 100), np.full(n, 2), np.arange(1.0, n + 1)))


def test_an_idle_worker_by_hand_on_both_paths(monkeypatch):
    # n arrivals at 10, 20, ..., 10 n s. The run stops at the last arrival (its prefill ends
    # after it), so the window holds the first n - 1 requests and ends when request n - 1 is
    # done, at 10 (n - 1) + T: kv_utilisation = (n - 1) K / (10 (n - 1) + T) / M ~ 0.000302.
    # Before: 0.0998 from the observer (each 9.97 s gap held the next prefill's 100 tokens),
    # (100 + 101) / 2 / M = 0.1005 from the rate check.
    every_ten_seconds(monkeypatch)
    seen = bench.fleet_observer(toy(), window=50)(1)
    assert seen["kv_utilisation"] == pytest.approx(49 * K / (490 + T) / M, rel=1e-9)
    check = bench.check_rate(toy(), 0.1, n_requests=600)
    assert check.kv_utilisation == pytest.approx(599 * K / (5990 + T) / M, rel=1e-9)
    # evaluate reports the rate check's figure
    out = bench.evaluate(toy(), lambda inst, observe: Plan(workers=1), n_requests=600, seeds=1,
                         max_seeds=1)
    assert out.metrics["kv_utilisation"] == pytest.approx(599 * K / (5990 + T) / M, rel=1e-9)


def test_the_reproducers_poisson_toy_in_closed_form():
    # R40's reproducer as it stands (Poisson arrivals at 0.1 req/s): no two requests overlap on
    # the drawn streams (every gap > T, checked), so each of the first n - 1 requests runs alone,
    # from its arrival a_k to a_k + T, and the window ends at a_{n-1} + T:
    # kv_utilisation = (n - 1) K / (a_{n-1} + T) / M ~ 0.0003. Before: 0.1 (observer), 0.10075
    # (evaluate, seed 0).
    inst = toy()
    _, _, unit = bench.sample_requests(inst, 200, 1)  # the observer's draw (seed 1)
    arr = unit / 0.1
    assert np.diff(arr).min() > T
    seen = bench.fleet_observer(inst, window=200)(1)
    assert seen["kv_utilisation"] == pytest.approx(199 * K / (arr[-2] + T) / M, rel=1e-9)
    assert seen["kv_utilisation"] < 0.0004
    # evaluate's rate check: its seed 0 draw has two arrivals 5 ms apart (overlapping requests, no
    # closed form); seed 10's closest pair is 54 ms apart
    _, _, unit = bench.sample_requests(inst, 600, 10)
    arr = unit / 0.1
    assert np.diff(arr).min() > T
    out = bench.evaluate(inst, lambda i, observe: Plan(workers=1), n_requests=600, seed=10, seeds=1,
                         max_seeds=1)
    assert out.metrics["kv_utilisation"] == pytest.approx(599 * K / (arr[-2] + T) / M, rel=1e-9)


def preset() -> instances.Instance:
    return instances.generate(workload="code", requests=300, seed=0, arrival_rate=20.0)


def brute_force(inst: instances.Instance, rate: float, n: int, seed: int, elapsed: float) -> float:
    """Time-average KV / M over [0, elapsed] from a log of single iterations (no quiet stretches),
    sampled at the midpoints of 400,000 equal slices: each point takes the KV of the iteration
    running then, 0 between iterations."""
    s, o, unit = bench.sample_requests(inst, n, seed)
    arr = unit / rate
    res = bench.simulate(inst, s, o, arr, until=float(arr[-1]), skip=False)
    assert np.all(res.iterations == 1)
    start = res.times - (inst.step_overhead_s + inst.per_token_s * res.tokens)
    grid = (np.arange(400_000) + 0.5) * (elapsed / 400_000)
    k = np.searchsorted(res.times, grid, side="left")  # the first iteration ending at or after t
    inside = k < res.times.size
    inside[inside] = start[k[inside]] <= grid[inside]
    held = np.where(inside, res.kv_used[np.minimum(k, res.times.size - 1)], 0)
    return float(held.mean()) / inst.kv_tokens


@pytest.mark.parametrize("workers", [2, 10, 40])
def test_both_paths_agree_with_a_brute_force_time_average_on_a_preset(workers):
    # The observer at N workers and the rate check at lambda / N with the same arrivals (window
    # 600, seed 1) simulate the same run: one figure. A brute-force time average over a grid of
    # the iteration-by-iteration log matches it (within the grid's resolution). Before, at 40
    # workers: 0.00484 from the observer against 0.00124.
    inst = preset()
    rate = inst.arrival_rate / workers
    seen = bench.fleet_observer(inst, window=600, seed=1)(workers)["kv_utilisation"]
    check = bench.check_rate(inst, rate, n_requests=600, seed=1).kv_utilisation
    assert seen == pytest.approx(check, rel=1e-12)
    s, o, unit = bench.sample_requests(inst, 600, 1)
    arr = unit / rate
    res = bench.simulate(inst, s, o, arr, until=float(arr[-1]))
    elapsed = float(res.times[res.times <= arr[-1]][-1])
    assert seen == pytest.approx(brute_force(inst, rate, 600, 1, elapsed), rel=2e-3)


def test_it_falls_as_the_fleet_grows():
    # lambda / N per worker: five times the workers, about a fifth of the KV held on average, as
    # compute_utilisation falls (before: 0.00484 at 40 workers, 0.00447 at 200, barely moving).
    observe = bench.fleet_observer(preset(), window=600)
    seen = {n: observe(n) for n in (8, 40, 200)}
    kv = [seen[n]["kv_utilisation"] for n in (8, 40, 200)]
    assert kv[0] > kv[1] > kv[2] > 0
    assert kv[2] / kv[1] < 0.3
    assert kv[1] / kv[0] < 0.3
    for n in (40, 200):  # it falls with the compute utilisation, within a factor of 1.5
        compute = seen[n]["compute_utilisation"] / seen[8]["compute_utilisation"]
        assert 1 / 1.5 < (seen[n]["kv_utilisation"] / kv[0]) / compute < 1.5
