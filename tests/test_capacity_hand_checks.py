"""Capacity: hand-checked values where a changed line went unnoticed before (found by mutation testing).

Each test names the mutant it kills; the expected numbers are hand calculations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from servopt.benchmarks import capacity as bench
from servopt.instances import capacity as instances
from servopt.solvers import capacity as rules

HAND = dict(prompt_tokens=[100], output_tokens=[11], arrival_rate=20.0, kv_tokens=1000,
            token_budget=200, batch_cap=4, prefill_chunk=50, step_overhead_s=0.01,
            per_token_s=0.001, headroom=0.1)


def hand_instance(**changes) -> instances.Instance:
    return instances.Instance(**{**HAND, **changes})


def test_a_preempted_request_counts_as_waiting_by_hand():
    # kills: the waiting log leaving out preempted requests (those at the front of the queue),
    # which the queue-depth autoscaler reads. The trace of test_preemption_and_recompute_by_hand:
    # M = 10, two requests s = 4, o = 4 at t = 0. it1, it2: both run; it3: the newer is preempted
    # (back to the front of the queue) while the older decodes; it4: the older finishes, the newer
    # still waits (no admission before the iteration's end); it5: it is recomputed; it6: it ends.
    inst = hand_instance(prompt_tokens=[4, 4], output_tokens=[4, 4], kv_tokens=10, batch_cap=2,
                         token_budget=64, prefill_chunk=64)
    res = bench.simulate(inst, np.array([4, 4]), np.array([4, 4]), np.array([0.0, 0.0]))
    assert res.preemptions == 1
    np.testing.assert_array_equal(res.waiting, [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(res.in_system, [2, 2, 2, 1, 1, 0])


def test_check_rate_adds_seeds_while_the_drift_is_within_two_standard_errors(monkeypatch):
    # kills: the 'undecided' test |mean drift - eps| < 2 se loosened to 1 se.
    # Seeds 0 and 1 give drift / rate 0.015 and 0.045: mean 0.03, sd 0.0212, se 0.015;
    # |0.03 - 0.01| = 0.02 < 2 x 0.015, so the test is undecided and two more seeds run (0.025 and
    # 0.035): mean 0.03, se = sd([.015, .045, .025, .035]) / 2 = 0.01291 / 2 = 0.00645, decided.
    drifts = {0: 0.015, 1: 0.045, 2: 0.025, 3: 0.035}
    runs = []

    def one_run(instance, rate, n_requests, seed, warmup):
        runs.append(seed)
        return {"drift": drifts[seed], "raw": drifts[seed], "mean_in_system": 1.0,
                "preemptions_per_request": 0.0, "recompute_fraction": 0.0,
                "compute_utilisation": 0.5, "kv_utilisation": 0.5}

    monkeypatch.setattr(bench, "_one_run", one_run)
    check = bench.check_rate(hand_instance(), 5.0, n_requests=1000, seeds=2, max_seeds=8)
    assert runs == [0, 1, 2, 3]
    assert check.seeds == 4 and check.decided and not check.stable
    assert check.slope_ratio == pytest.approx(0.03)
    sd = math.sqrt(sum((d - 0.03) ** 2 for d in drifts.values()) / 3)
    assert check.se == pytest.approx(sd / 2)


def test_hpa_rounds_the_desired_fleet_up():
    # kills: the HPA formula rounded down. Kubernetes documents desiredReplicas =
    # ceil(currentReplicas x currentMetricValue / desiredMetricValue). HAND starts the utilisation
    # HPA at 6 workers (test_hpa_tolerance_scale_up_limit_and_start_by_hand). A fleet whose
    # utilisation is 5.82 / N: 0.97 at 6, ratio 0.97 / 0.8 = 1.2125 (beyond the 10 % tolerance) ->
    # ceil(6 x 1.2125) = ceil(7.275) = 8; at 8, 0.7275 / 0.8 = 0.909 is within tolerance: 8 workers.
    # Rounding down would stop at 7 (ratio 0.831 / 0.8 = 1.039), below what the formula asks for.
    grown = rules.utilisation(hand_instance(), lambda n: {"compute_utilisation": 5.82 / n})
    assert [n for n, _ in grown.detail["history"]] == [6, 8]
    assert grown.workers == 8


def test_fleet_observer_time_averages_what_it_reports(monkeypatch):
    # kills: mean_waiting as the plain mean over the simulation's log entries, which are iterations
    # of different lengths (and quiet stretches of many iterations), instead of a time average.
    # A hand-made log on a worker at 1 req/s (the last of 50 arrivals is far beyond t = 4 s):
    # entries end at 1, 3, 4 s with 2, 0, 4 requests waiting, 10, 20, 10 tokens, KV token-iterations
    # 100, 400, 50 over 1, 2, 1 iterations, one request done at 2.5 s.
    # mean_waiting = (2 x 1 + 0 x 2 + 4 x 1) / 4 = 1.5 (the plain mean would be 2);
    # kv_utilisation: iterations of 0.01 + 0.001 x 10 = 0.02 s each (20 tokens over 2 in the second),
    # (100 + 400 + 50) x 0.02 = 11 KV token-seconds over 4 s / 1000 = 0.00275 (a time average, idle 0);
    # compute_utilisation = 40 tokens / 4 s / (200 / (0.01 + 0.001 x 200)) tokens/s = 0.0105;
    # throughput = 1 / 4 s; final_waiting = 4.
    log = bench.SimResult(times=np.array([1.0, 3.0, 4.0]), in_system=np.array([3, 1, 5]),
                          waiting=np.array([2, 0, 4]), tokens=np.array([10, 20, 10]),
                          kv_used=np.array([100, 400, 50]), iterations=np.array([1, 2, 1]),
                          done_times=np.array([2.5, np.nan]), preemptions=0, recomputed_tokens=0,
                          work_tokens=0)
    monkeypatch.setattr(bench, "simulate", lambda *args, **kw: log)
    seen = bench.fleet_observer(hand_instance(arrival_rate=1.0), window=50)(1)
    assert seen["mean_waiting"] == pytest.approx(1.5)
    assert seen["final_waiting"] == 4
    assert seen["kv_utilisation"] == pytest.approx(0.00275)
    assert seen["compute_utilisation"] == pytest.approx(40 / 4 / (200 / 0.21))
    assert seen["throughput"] == pytest.approx(0.25)


def test_saturated_throughput_by_hand():
    # kills: the saturated rate measured from time 0 (completions / time of the 75% completion)
    # instead of between the 25% and 75% completions. One batch slot, every request s = 50, o = 2:
    # a 50-token prefill iteration (0.01 + 0.05 = 0.06 s, emits token 1) and a decode iteration
    # (0.011 s): request k (0-based) finishes at 0.071 (k + 1) s. Of 500 waiting at t = 0, completions
    # 125..375 give 250 / (0.071 x 250) = 1 / 0.071 req/s exactly (375 / (0.071 x 376) from t = 0).
    inst = hand_instance(prompt_tokens=[50], output_tokens=[2], batch_cap=1)
    assert bench.saturated_throughput(inst, n_requests=500) == pytest.approx(1 / 0.071, rel=1e-9)


def test_a_prompt_that_exactly_fills_the_free_kv_is_admitted():
    # kills: the admission test 'prompt > free KV' (blocks) turned into '>=' (a prompt that exactly
    # fits is refused). M = 10; at t = 0 request 0 (s = 6, o = 3) is admitted (free 10 -> 4), then
    # request 1 (s = 4, o = 1) needs exactly the 4 tokens left: admitted in the same iteration.
    # it1: 6 + 4 = 10 tokens (0.02 s), request 1 done; it2, it3: request 0 decodes (0.011 s each).
    inst = hand_instance(prompt_tokens=[6, 4], output_tokens=[3, 1], kv_tokens=10,
                         token_budget=64, prefill_chunk=64, batch_cap=4)
    res = bench.simulate(inst, np.array([6, 4]), np.array([3, 1]), np.array([0.0, 0.0]))
    np.testing.assert_array_equal(res.tokens, [10, 1, 1])
    np.testing.assert_array_equal(res.kv_used, [10, 7, 8])
    np.testing.assert_allclose(res.done_times, [0.042, 0.02])


def test_check_rate_kv_utilisation_is_a_time_average(monkeypatch):
    # kills: the rate check's KV held averaged over log entries, or over iterations (idle time left
    # out: 550 / 4 iterations / 1000 = 0.1375), instead of over time. The hand-made log of
    # test_fleet_observer_time_averages_what_it_reports: KV token-iterations 100 + 400 + 50, each
    # iteration 0.02 s: 11 KV token-seconds over 4 s / 1000 = 0.00275; compute utilisation
    # 40 tokens / 4 s / (200 / 0.21) tokens/s.
    log = bench.SimResult(times=np.array([1.0, 3.0, 4.0]), in_system=np.array([3, 1, 5]),
                          waiting=np.array([2, 0, 4]), tokens=np.array([10, 20, 10]),
                          kv_used=np.array([100, 400, 50]), iterations=np.array([1, 2, 1]),
                          done_times=np.array([2.5] + [np.nan] * 499), preemptions=0,
                          recomputed_tokens=0, work_tokens=0)
    monkeypatch.setattr(bench, "simulate", lambda *args, **kw: log)
    check = bench.check_rate(hand_instance(arrival_rate=1.0), 1.0, n_requests=500)
    assert check.kv_utilisation == pytest.approx(0.00275)
    assert check.compute_utilisation == pytest.approx(40 / 4 / (200 / 0.21))


def test_zero_step_overhead_with_ample_kv_is_compute_bound_by_hand():
    # With d0 = 0 an iteration costs d1 per token, so a worker completes at most 1 / (d1 E[w])
    # requests per second, w = s + o - 1 tokens of work each, whatever its KV and slots: with
    # 2M KV tokens nothing is preempted and compute binds (before: the three bounds tied, the
    # tie fired the KV-saturation correction and memory was reported binding at ~14% less).
    from servopt.models import capacity as model
    from servopt.solvers import exact

    inst = instances.generate(requests=400, seed=2, kv_tokens=2_000_000).with_(step_overhead_s=0.0)
    by_hand = 1.0 / (inst.per_token_s * float(np.mean(inst.prompt_tokens + inst.output_tokens - 1)))
    bounds = model.bounds(inst)
    assert bounds.max_stable_rate == pytest.approx(by_hand, rel=1e-9)
    assert bounds.memory == pytest.approx(by_hand, rel=1e-9) and bounds.binding == "compute"
    assert exact.solve(inst).objective == pytest.approx(by_hand, rel=1e-9)
    # a KV cache holding a few requests does saturate first: recomputation lowers the rate
    small = inst.with_(kv_tokens=20_000)
    assert model.bounds(small).binding == "memory"
    assert model.bounds(small).max_stable_rate < 0.95 * by_hand
