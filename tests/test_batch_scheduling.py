"""Batch scheduling: simulator vs hand-worked schedules, IP vs brute force, LP formulations agree,
prices and complementary slackness, policy properties, and clear errors for bad instances."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servopt
from servopt.benchmarks import batch_scheduling as bench
from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.instances import batch_scheduling as inst_mod
from servopt.instances.batch_scheduling import Instance
from servopt.instances.traces import shared_trace
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules
from servopt.solvers import exact


def make(kv, prompts, outputs, arrivals=None, predicted=None, max_batch=None) -> Instance:
    n = len(prompts)
    return Instance(kv_memory=kv, arrival=np.zeros(n, int) if arrivals is None else arrivals,
                    prompt_tokens=prompts, output_tokens=outputs, predicted_output=predicted,
                    max_batch=max_batch)


# ---------------------------------------------------------------------------------------------
# simulator against hand-worked schedules
# ---------------------------------------------------------------------------------------------
THREE = ([2, 3, 4], [3, 2, 2])  # (prompt, output) of requests 0, 1, 2; M = 10


def test_mcsf_hand_schedule():
    # round 0: shortest first = request 1 (holds 4, 5); request 2 would need 5 + 6 = 11 at
    # round 1 -> stop. Round 1: request 1 holds 5, request 2 joins (5 now, 6 next) = 10;
    # request 0 would make 13 -> stop. Round 2: request 2 holds 6, request 0 joins with 3
    # (peak 5 at round 4). Latencies 2, 3, 5 -> 10; memory 4, 10, 9, 4, 5.
    out = bench.simulate(make(10, *THREE), rules.MCSF())
    assert out["latency"].tolist() == [5, 2, 3]
    assert out["memory"].tolist() == [4, 10, 9, 4, 5]
    assert out["preemptions"] == 0


def test_fcfs_hand_schedule():
    # watermark int(0.01 * 10) = 0 tokens. Round 0: 0 (needs 3) and 1 (needs 4) fit, 2 (5)
    # does not -> head-of-line stop. Round 1: 4 + 5 = 9, request 2 needs 5 -> no; request 1
    # ends. Round 2: request 0 holds 5, request 2 joins with 5 -> 10; request 0 ends (lat 3).
    # Round 3: request 2 holds 6 and ends (lat 4). Total 2 + 3 + 4 = 9.
    out = bench.simulate(make(10, *THREE), rules.FCFS())
    assert out["latency"].tolist() == [3, 2, 4]
    assert out["memory"].tolist() == [7, 9, 10, 6]
    assert out["ttft"].tolist() == [1, 1, 3]
    # the evaluator's metrics from the same schedule: 7 output tokens over rounds 0-3
    result = bench.evaluate(make(10, *THREE), "fcfs")
    assert result.cost == 9.0
    assert result.metrics == pytest.approx({
        "mean_latency": 3.0, "mean_ttft": 5 / 3, "throughput": 7 / 4, "preemptions": 0.0,
        "refused": 0.0, "peak_memory": 10.0, "makespan_rounds": 4.0, "makespan": 4.0})


def test_spf_hand_schedule():
    # shortest predicted output first (stable): 1 (2), 2 (2), 0 (3), vLLM's admission. Round 0:
    # 1 (4) + 2 (5) = 9; 0 needs 3 more -> 12, no. Round 1: 5 + 6 = 11 > 10: 2, the most recent,
    # is preempted with 1 token; 1 holds 5 and ends. Round 2: 2 (1 round left, needs 4 + 1 + 1
    # = 6) then 0 (3): 9; 2 ends. Rounds 3-4: 0 holds 4, 5. Latencies 5, 2, 3.
    out = bench.simulate(make(10, *THREE), rules.ShortestPredictedFirst())
    assert out["latency"].tolist() == [5, 2, 3]
    assert out["memory"].tolist() == [9, 5, 9, 4, 5]
    assert out["preemptions"] == 1
    assert out["ttft"].tolist() == [3, 1, 1]


def test_fcfs_preempts_most_recent_and_recomputes():
    # Two requests (prompt 1, output 6) on M = 10, both admitted at round 0 (2 + 2 tokens).
    # Memory 4, 6, 8, 10; round 4 needs 12 -> the most recently admitted (1) is preempted with
    # 4 tokens emitted; it needs 1 + 4 + 1 = 6 to come back, which fits only after request 0
    # ends at round 5. Readmitted at round 6, it emits its last 2 tokens in rounds 6, 7.
    out = bench.simulate(make(10, [1, 1], [6, 6]), rules.FCFS())
    assert out["preemptions"] == 1
    assert out["latency"].tolist() == [6, 8]
    assert out["memory"].tolist() == [4, 6, 8, 10, 6, 7, 6, 7]
    assert out["ttft"].tolist() == [1, 1]
    # a request arriving at round 4 queues behind the preempted one: round 4 has 4 free tokens,
    # request 1 needs 6 (head-of-line) so request 2 (needs 2) waits too; request 0 ends at round
    # 5; round 6 admits 1 (6) and 2 (2). Latencies 6, 8, 3 (2 would run at once, latency 1, if
    # a preempted request went to the back of the queue)
    late = bench.simulate(make(10, [1, 1, 1], [6, 6, 1], arrivals=[0, 0, 4]), rules.FCFS())
    assert late["preemptions"] == 1
    assert late["latency"].tolist() == [6, 8, 3]
    # MC-SF waits instead: request 1 starts at round 4, when the peaks no longer collide
    mc = bench.simulate(make(10, [1, 1], [6, 6]), rules.MCSF())
    assert mc["preemptions"] == 0
    assert mc["latency"].tolist() == [6, 10]


def test_watermark_blocks_admission():
    # M = 200 -> watermark 2 tokens. Request 0 holds 101 tokens in round 0; request 1 needs
    # 98 -> free after it would be 1 < 2: vLLM says LATER; with watermark 0 it is admitted.
    inst = make(200, [100, 97], [1, 1])
    assert bench.simulate(inst, rules.FCFS())["latency"].tolist() == [1, 2]
    assert bench.simulate(inst, rules.FCFS(watermark=0.0))["latency"].tolist() == [1, 1]


def test_fcfs_head_of_line_blocking():
    # M = 10, watermark 0. Requests (prompt, output): 0 (5, 3), 1 (6, 1), 2 (1, 1). Round 0: 0
    # holds 6; 1 needs 7 > 4 free, so 2 (needs 2) waits behind it too. Rounds 1-2: 1 still needs
    # 7 > 3, 2 free tokens. Round 3: 0 is done, 1 and 2 join (7 + 2). Latencies 3, 4, 4 (a
    # scheduler that skips the blocked head would run 2 in round 0: latency 1).
    out = bench.simulate(make(10, [5, 6, 1], [3, 1, 1]), rules.FCFS())
    assert out["latency"].tolist() == [3, 4, 4]
    assert out["memory"].tolist() == [6, 7, 8, 9]


def test_empty_batch_takes_a_head_that_fits_below_the_watermark():
    # M = 200 -> watermark 2 tokens; the request needs 199 (peak 199 <= 200): vLLM's watermark
    # would never admit it; with nothing running the batch takes it (documented choice)
    for policy in (rules.FCFS(), rules.ShortestPredictedFirst()):
        assert bench.simulate(make(200, [198], [1]), policy)["latency"].tolist() == [1]


def test_arrivals_and_batch_cap():
    # batch cap 1: strictly one request at a time, in FCFS order, each as soon as it arrives
    inst = make(100, [5, 5, 5], [2, 2, 2], arrivals=[0, 1, 5], max_batch=1)
    out = bench.simulate(inst, rules.FCFS())
    assert out["finish"].tolist() == [1, 3, 6]
    assert out["latency"].tolist() == [2, 3, 2]


# ---------------------------------------------------------------------------------------------
# MC-SF and the bid-price rule never overflow with exact predictions
# ---------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 25), online=st.booleans())
def test_lookahead_rules_never_preempt_with_exact_predictions(seed, n, online):
    inst = inst_mod.generate(n, arrivals="poisson" if online else "offline",
                             load=1.2 if online else None, seed=seed)
    for policy in (rules.MCSF(), rules.BidPriceStationary(price=0.05)):
        out = bench.simulate(inst, policy)
        assert out["preemptions"] == 0
        assert out["memory"].max() <= inst.kv_memory
        assert np.all(out["latency"] >= inst.output_tokens)


def test_noise_causes_preemption_not_stalls():
    inst = inst_mod.generate(60, lengths="azure", noise=1.0, seed=3)
    for name in ("fcfs", "spf", "mcsf"):
        out = bench.evaluate(inst, name)
        assert out.metrics["peak_memory"] <= inst.kv_memory
        assert out.cost >= inst.output_tokens.sum()
    # MC-SF's lookahead trusts the predictions: wrong ones make it preempt, exact ones never do
    assert bench.evaluate(inst, "mcsf").metrics["preemptions"] > 0
    exact_inst = inst.with_outputs(inst.output_tokens)
    assert bench.evaluate(exact_inst, "mcsf").metrics["preemptions"] == 0


# ---------------------------------------------------------------------------------------------
# the IP against brute force on tiny instances
# ---------------------------------------------------------------------------------------------
def brute_force(inst: Instance, horizon: int) -> float:
    """Try every combination of start rounds; keep the best that respects memory."""
    a, s, o = inst.arrival, inst.prompt_tokens, inst.output_tokens
    best = np.inf
    ranges = [range(int(a[i]), horizon - int(o[i]) + 1) for i in range(inst.n)]
    for starts in itertools.product(*ranges):
        memory = np.zeros(horizon)
        for i, p in enumerate(starts):
            memory[p:p + o[i]] += s[i] + np.arange(1, o[i] + 1)
        if memory.max() <= inst.kv_memory:
            best = min(best, sum(p + o[i] - a[i] for i, p in enumerate(starts)))
    return float(best)


@pytest.mark.parametrize("seed", range(4))
def test_ip_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 4
    prompts = rng.integers(1, 6, n)
    outputs = rng.integers(1, 5, n)
    arrivals = rng.integers(0, 3, n) if seed % 2 else np.zeros(n, int)
    inst = make(int(max((prompts + outputs).max(), 12)), prompts, outputs, arrivals=arrivals)
    horizon = model.horizon_rounds(inst, "safe")
    sol = exact.solve(inst, horizon="safe")
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(brute_force(inst, horizon))
    assert sol.decisions["late"].sum() == pytest.approx(0.0)
    # the replayed schedule is feasible in the simulator and costs the same
    start = sol.decisions["start"].to_numpy()
    assert model.schedule_latency(inst, start) == pytest.approx(sol.objective)


def test_the_no_idle_horizon_is_exact_when_shorter_than_the_cost_horizon():
    # four requests that each fill the memory alone (3 + 2 = 5 = M): the greedy schedule runs them
    # one by one, UB = 2 + 4 + 6 + 8 = 20, so the cost-based horizon is 2 + (20 - 8) = 14 rounds;
    # no optimal schedule idles, so 0 + 8 = 8 rounds suffice (and late columns are priced out)
    inst = make(5, [3, 3, 3, 3], [2, 2, 2, 2])
    assert model.no_idle_horizon(inst) == 8
    assert model.horizon_rounds(inst, "safe") == 8
    optimum = brute_force(inst, 14)  # enumerated over the longer, cost-based horizon
    assert optimum == 20.0
    sol = exact.solve(inst)  # the IP's default: the safe horizon
    assert sol.status == "optimal" and sol.objective == pytest.approx(optimum)
    assert sol.decisions["late"].sum() == pytest.approx(0.0)
    assert exact.solve(inst, relax=True, horizon="safe").objective <= optimum + 1e-9
    # with a window that cuts the starts, late columns keep their (relaxing) earliest-late cost
    cols = model.columns(inst, "safe", window=1)
    assert cols.late_cost.tolist() == [4.0, 4.0, 4.0, 4.0]


def test_lp_bound_below_ip_below_heuristics():
    inst = inst_mod.generate(10, seed=5)
    lp = exact.solve(inst, relax=True)
    ip = exact.solve(inst, horizon="safe", time_limit=60)
    assert lp.objective <= ip.bound + 1e-6
    for name in ("fcfs", "spf", "mcsf", "bid_price"):
        assert bench.evaluate(inst, name).cost >= ip.bound - 1e-6


# ---------------------------------------------------------------------------------------------
# LP: three builds agree; prices >= 0 and complementary slackness
# ---------------------------------------------------------------------------------------------
def dual_objective(inst: Instance, sol) -> float:
    """sum_i (value of request i) - M sum_t mu_t: equals the LP optimum for any optimal dual."""
    return float(sol.prices["start_once"].sum() - inst.kv_memory * sol.prices["kv_memory"].sum())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("arrivals", ["offline", "poisson"])
def test_lp_formulations_agree(seed, arrivals):
    inst = inst_mod.generate(14, arrivals=arrivals, load=1.2 if arrivals == "poisson" else None,
                             seed=seed)
    pyomo = exact.solve(inst, relax=True, backend="pyomo")
    cvx = exact.solve(inst, backend="cvxpy")
    matrix = rules.solve_lp(inst)
    generic = exact.solve(inst, relax=True)  # the model's MatrixModel through exact
    assert (pyomo.info["form"], generic.info["form"]) == ("pyomo", "matrix")
    assert pyomo.objective == pytest.approx(cvx.objective, rel=1e-6)
    assert pyomo.objective == pytest.approx(matrix.objective, rel=1e-6)
    assert pyomo.objective == pytest.approx(generic.objective, rel=1e-6)
    for sol in (pyomo, cvx, matrix, generic):
        assert dual_objective(inst, sol) == pytest.approx(sol.objective, rel=1e-5)
        assert (sol.prices["kv_memory"] >= 0).all()


def test_prices_zero_where_memory_is_slack():
    inst = inst_mod.generate(16, arrivals="poisson", load=1.0, seed=2)
    sol = rules.solve_lp(inst)
    cols = model.columns(inst)
    row, col, tokens = model.usage(inst, cols)
    x = np.zeros(len(cols.request))
    xs = sol.decisions["x"]
    index = {(i, p): k for k, (i, p) in enumerate(zip(cols.request, cols.start, strict=True))}
    for (i, p), v in xs.items():
        x[index[(i, p)]] = v
    used = np.bincount(row, weights=tokens * x[col], minlength=cols.rounds)
    mu = sol.prices["kv_memory"].to_numpy()
    slack = used < inst.kv_memory - 1e-6
    assert slack.any() and (~slack).any()
    np.testing.assert_allclose(mu[slack], 0.0, atol=1e-7)
    # a positive price needs a full round
    assert np.all(used[mu > 1e-7] >= inst.kv_memory - 1e-5)


def test_batch_cap_rows_and_prices():
    inst = inst_mod.generate(12, max_batch=2, seed=1)
    pyomo = exact.solve(inst, relax=True, backend="pyomo")
    cvx = exact.solve(inst, backend="cvxpy")
    generic = exact.solve(inst, relax=True)
    assert pyomo.objective == pytest.approx(cvx.objective, rel=1e-6)
    assert generic.objective == pytest.approx(cvx.objective, rel=1e-6)
    assert pyomo.prices["batch_size"].index.equals(generic.prices["batch_size"].index)
    for sol in (pyomo, generic):
        assert (sol.prices["batch_size"] >= 0).all()
        # strong duality with the cap rows: sum_i start_once - M sum mu - B sum beta = LP
        dual = dual_objective(inst, sol) - inst.max_batch * sol.prices["batch_size"].sum()
        assert dual == pytest.approx(sol.objective, rel=1e-5)
    out = bench.simulate(inst, rules.MCSF())
    assert bench.evaluate(inst, "mcsf").cost >= pyomo.objective - 1e-6
    assert out["latency"].sum() >= pyomo.objective - 1e-6


def test_footprint_price_by_hand():
    # prices for rounds 0-4: 0, 1, 2, 0.5, 0 -> tail = mean up to the last positive price =
    # 3.5 / 4 = 0.875. Holding 3, 4, 5, 6, 7 tokens from round 2: 2 x 3 + 0.5 x 4 + 0 x 5, then
    # past the vector 0.875 x (6 + 7) = 11.375: 19.375 in all.
    rule = rules.BidPrice(np.array([0.0, 1.0, 2.0, 0.5, 0.0]))
    assert rule.tail == pytest.approx(0.875)
    assert rule.footprint_price(2, np.array([3]), np.array([5]))[0] == pytest.approx(19.375)
    assert rule.footprint_price(0, np.array([3]), np.array([2]))[0] == pytest.approx(4.0)


def test_stationary_score_by_hand():
    # M = 100, nothing running, prompts 10, 20, 30, predicted 5, 10, 15: score = r + price x
    # (c r + r (r - 1) / 2) with c = prompt + 1. Price 0.1: 5 + 0.1 x (55 + 10) = 11.5, 10 +
    # 0.1 x (210 + 45) = 35.5, 15 + 0.1 x (465 + 105) = 72. The backlog is 3 requests over
    # 100 / 30 that fit at once = 0.9; with backlog_factor 0.45 the price is scaled by 0.45 / 0.9.
    state = rules.State(t=0, kv_memory=100, max_batch=None, used=0, waiting=np.arange(3),
                        running=np.zeros(0, int), generated=np.zeros(3, int),
                        admitted_at=np.full(3, -1), prompt=np.array([10, 20, 30]),
                        predicted=np.array([5, 10, 15]), arrival=np.zeros(3, int))
    score = rules.BidPriceStationary(price=0.1).score(state, np.arange(3))
    np.testing.assert_allclose(score, [11.5, 35.5, 72.0])
    busy = rules.BidPriceStationary(price=0.1, backlog_factor=0.45).score(state, np.arange(3))
    np.testing.assert_allclose(busy, [5 + 0.05 * 65, 10 + 0.05 * 255, 15 + 0.05 * 570])


def test_state_values_of_the_waiting_queue_follow_an_in_place_sort():
    # current = prompt + generated + 1; remaining = max(min(predicted, M - prompt) - generated, 1).
    # Request 0: 10 + 0 + 1 = 11, min(5, 90) - 0 = 5; request 1: 20 + 3 + 1 = 24, min(10, 80) - 3
    # = 7; request 2: 30 + 0 + 1 = 31, min(95, 70) - 0 = 70 (capped by the memory).
    state = rules.State(t=4, kv_memory=100, max_batch=None, used=0, waiting=np.array([2, 0, 1]),
                        running=np.zeros(0, int), generated=np.array([0, 3, 0]),
                        admitted_at=np.full(3, -1), prompt=np.array([10, 20, 30]),
                        predicted=np.array([5, 10, 95]), arrival=np.zeros(3, int))
    np.testing.assert_array_equal(state.current(state.waiting), [31, 11, 24])
    np.testing.assert_array_equal(state.remaining(state.waiting), [70, 5, 7])
    state.waiting.sort()  # a policy may sort its copy of the queue in place
    np.testing.assert_array_equal(state.current(state.waiting), [11, 24, 31])
    np.testing.assert_array_equal(state.remaining(state.waiting), [5, 7, 70])
    np.testing.assert_array_equal(state.current(np.array([1])), [24])  # any other ids
    # a policy may also replace an array of the state (e.g. predictions it trusts more)
    state.predicted = np.array([2, 4, 6])  # remaining: 2, 4 - 3 = 1, 6
    np.testing.assert_array_equal(state.remaining(state.waiting), [2, 1, 6])
    state.kv_memory = 35  # request 2: min(6, 35 - 30) = 5
    np.testing.assert_array_equal(state.remaining(state.waiting), [2, 1, 5])
    state.prompt = np.array([10, 38, 30])  # request 1 now holds 38 + 3 + 1
    np.testing.assert_array_equal(state.current(state.waiting), [11, 42, 31])


def test_stationary_price_is_the_mean_over_the_busy_rounds():
    # the learned price averages the LP's memory prices up to the last round with a positive
    # price (the trailing rounds where the last requests finish alone do not dilute it)
    history = inst_mod.generate(14, seed=0)
    mu = rules.solve_lp(history).prices["kv_memory"].to_numpy()
    last = np.flatnonzero(mu > 0)[-1]
    assert last < len(mu) - 1  # there are trailing zero prices to leave out
    expected = mu[: last + 1].sum() / (last + 1)
    assert rules.BidPriceStationary.learn(history) == pytest.approx(expected, rel=1e-9)


def test_remaining_rounds_are_capped_by_memory():
    # M = 10, prompt 5, 2 tokens emitted: at most 10 - 5 - 2 = 3 more rounds fit, whatever the
    # prediction says (50); a prediction already reached counts 1 more round
    state = rules.State(t=0, kv_memory=10, max_batch=None, used=0, waiting=np.arange(2),
                        running=np.zeros(0, int), generated=np.array([2, 2]),
                        admitted_at=np.full(2, -1), prompt=np.array([5, 5]),
                        predicted=np.array([50, 2]), arrival=np.zeros(2, int))
    assert state.remaining(np.arange(2)).tolist() == [3, 1]


def test_bid_price_from_solution_matches_policy():
    inst = inst_mod.generate(20, seed=4)
    sol = exact.solve(inst, relax=True)
    rule = rules.BidPrice.from_solution(sol)
    by_name = bench.evaluate(inst, "bid_price")
    from_solution = bench.evaluate(inst, rule)
    assert from_solution.cost == pytest.approx(by_name.cost)
    # the score is predicted rounds + priced footprint, by hand for one request at round 0
    mu = sol.prices["kv_memory"].to_numpy()
    s, o = int(inst.prompt_tokens[0]), int(inst.output_tokens[0])
    state = rules.State(t=0, kv_memory=inst.kv_memory, max_batch=None, used=0,
                        waiting=np.arange(inst.n), running=np.zeros(0, int),
                        generated=np.zeros(inst.n, int), admitted_at=np.full(inst.n, -1),
                        prompt=inst.prompt_tokens, predicted=inst.predicted_output,
                        arrival=inst.arrival)
    by_hand = o + sum(mu[j - 1] * (s + j) for j in range(1, o + 1))
    assert rule.score(state, np.array([0]))[0] == pytest.approx(by_hand)


def test_bound_is_below_every_method_and_gap_table():
    inst = inst_mod.generate(25, arrivals="poisson", load=1.3, seed=7)
    table = servopt.gap_table(inst)
    assert set(table["method"]) == set(bench.DEFAULT_METHODS)
    assert (table["gap"] >= -1e-9).all()
    assert table["bound_kind"].iloc[0] == "lp_relaxation"
    assert model.area_bound(inst) <= table["bound"].iloc[0] + 1e-9


def test_bound_is_the_closed_form_where_it_beats_the_lp():
    # M = 8, prompts 3, 6, 6, 0, outputs 1, 1, 2, 1: footprints 4, 7, 15, 1 -> sorted 1, 4, 7,
    # 15, cumulative / 8 = 0.125, 0.625, 1.5, 3.375 -> ceil 1, 1, 2, 4; sorted outputs 1, 1, 1,
    # 2 -> 1 + 1 + 2 + 4 = 8, above the LP (7): the bound reports 8 as a plain lower bound
    inst = make(8, [3, 6, 6, 0], [1, 1, 2, 1])
    assert model.area_bound(inst) == 8.0
    assert rules.solve_lp(inst).objective < 8.0 - 0.5
    best = bench.bound(inst)
    assert (best.value, best.kind) == (8.0, "lower_bound")
    assert brute_force(inst, model.horizon_rounds(inst, "safe")) >= 8.0


def test_area_bound_by_hand():
    # M = 10, footprints (s o + o(o+1)/2): 2*3+6 = 12, 3*2+3 = 9, 4*2+3 = 11 -> sorted 9, 11, 12
    # cumulative / M = 0.9, 2.0, 3.2 -> ceil 1, 2, 4; outputs sorted 2, 2, 3 -> max 2, 2, 4 = 8
    assert model.area_bound(make(10, *THREE)) == 8.0
    assert bench.bound(make(10, *THREE), method="area").value == 8.0


# ---------------------------------------------------------------------------------------------
# instances: JSON, generators, traces, errors
# ---------------------------------------------------------------------------------------------
def test_json_round_trip_and_generators():
    inst = inst_mod.generate(40, arrivals="poisson", lengths="azure", noise=0.5, seed=3)
    back = Instance.from_json(inst.to_json())
    for field in ("arrival", "prompt_tokens", "output_tokens", "predicted_output"):
        np.testing.assert_array_equal(getattr(back, field), getattr(inst, field))
    assert back.kv_memory == inst.kv_memory and back.content_hash() == inst.content_hash()
    assert not np.array_equal(inst.predicted_output, inst.output_tokens)
    assert inst_mod.generate(5).offline
    assert np.all(inst.peak_need <= inst.kv_memory)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kv_memory": 0}, "kv_memory must be >= 1"),
        ({"kv_memory": 10.5}, "kv_memory must be a whole number"),
        ({"output_tokens": [3, 0]}, r"output_tokens\[1\] = 0"),
        ({"prompt_tokens": [-1, 2]}, r"prompt_tokens\[0\] = -1"),
        ({"arrival": [0, 1, 2]}, "arrival has 3 entries|has 2 entries but arrival has 3"),
        ({"predicted_output": [1, 0]}, "predicted"),
        ({"max_batch": 0}, "max_batch must be >= 1"),
        ({"arrival": [0.5, 1]}, "whole number"),
        ({"arrival": [-1, 0]}, r"arrival\[0\] = -1: an arrival round must be >= 0"),
        ({"arrival": [], "prompt_tokens": [], "output_tokens": []}, "at least one request"),
        ({"max_batch": 1.5}, "max_batch must be a whole number"),
    ],
)
def test_bad_instances(kwargs, match):
    fields = {"kv_memory": 20, "arrival": [0, 0], "prompt_tokens": [2, 3],
              "output_tokens": [3, 4]}
    fields.update(kwargs)
    with pytest.raises(InvalidInstanceError, match=match):
        Instance(**fields)


def test_request_too_large_is_infeasible():
    with pytest.raises(InfeasibleError, match="request 1 can never run"):
        make(10, [2, 8], [3, 4])
    # a peak of exactly M (6 + 4 = 10) runs alone: 4 rounds
    assert bench.simulate(make(10, [6], [4]), rules.FCFS())["latency"].tolist() == [4]


def test_bad_arguments():
    inst = make(10, *THREE)
    with pytest.raises(InvalidInstanceError, match="unknown batch_scheduling method"):
        bench.evaluate(inst, "lifo")
    with pytest.raises(InvalidInstanceError, match="lengths must be"):
        inst_mod.generate(5, lengths="zipf")
    with pytest.raises(InvalidInstanceError, match="horizon"):
        model.build(inst, horizon=-3)
    with pytest.raises(InvalidInstanceError, match="unknown field"):
        Instance.from_json('{"decision": "batch_scheduling", "schema_version": 1, '
                           '"fields": {"kv_memory": 5, "colour": 1}}')
    for kw, message in (({"concurrency": 0}, "concurrency must be in"),
                        ({"concurrency": -2}, "concurrency must be in"),
                        ({"lengths": "azure", "prompt_scale": 1e300}, "prompt_scale must be in"),
                        ({"lengths": "azure", "max_output": 2.5},
                         "max_output must be a whole number")):
        with pytest.raises(InvalidInstanceError, match=message):
            inst_mod.generate(5, **kw)
    # a MIP's prices (integers fixed: all zero) would make the rule plain shortest-first
    with pytest.raises(InvalidInstanceError, match="relax=True"):
        rules.BidPrice.from_solution(exact.solve(inst))
    # another decision's LP (a capacity fluid LP has a kv_memory row too; a decode-routing
    # hindsight LP prices kv_memory by worker and step) or no solution at all
    from servopt.instances import capacity as cpi
    from servopt.instances import decode_routing as dri

    others = (exact.solve(cpi.generate(requests=50, seed=0), relax=True),
              exact.solve(dri.generate_steps(requests=6, workers=2, seed=0), relax=True), None)
    for other in others:
        with pytest.raises(InvalidInstanceError, match="needs a solved batch_scheduling LP"):
            rules.BidPrice.from_solution(other)


def test_from_azure_trace():
    path = shared_trace("azure2023_code.csv")
    if path is None:
        pytest.skip("the shared Azure trace is not available")
    inst = inst_mod.from_trace(path, n=80, start=100, round_s=0.05)
    assert inst.n == 80 and inst.arrival[0] == 0 and np.all(np.diff(inst.arrival) >= 0)
    assert bench.evaluate(inst, "mcsf").metrics["preemptions"] == 0


# ---------------------------------------------------------------------------------------------
# schedules with known lengths: plans, memory profile, large-neighbourhood search, hindsight
# ---------------------------------------------------------------------------------------------
def test_plan_and_memory_profile_match_the_simulator():
    inst = inst_mod.generate(30, arrivals="poisson", lengths="azure", load=1.2, seed=11)
    out = bench.simulate(inst, rules.MCSF())
    start = rules.plan_schedule(inst, rules.MCSF())
    np.testing.assert_array_equal(start, out["finish"] + 1 - inst.output_tokens)
    profile = model.memory_profile(inst, start)
    busy = out["memory"]  # the simulator skips idle rounds; compare on the rounds it ran
    assert profile.max() == busy.max() <= inst.kv_memory
    assert profile.sum() == pytest.approx(inst.footprint().sum())
    assert model.is_feasible(inst, start)
    late = start.copy()
    late[0] = inst.arrival[0] - 1
    assert not model.is_feasible(inst, late)


def test_plan_of_a_policy_without_lookahead_never_overflows():
    # FCFS and SPF admit on this round's memory only; their plans must still fit in every
    # round (the plan checks the known lengths), unlike their simulated runs, which preempt
    inst = inst_mod.generate(30, lengths="azure", seed=11)
    assert bench.simulate(inst, rules.FCFS())["preemptions"] > 0
    for policy in (rules.FCFS(), rules.ShortestPredictedFirst()):
        start = rules.plan_schedule(inst, policy)
        assert model.is_feasible(inst, start)


@pytest.mark.parametrize("seed", range(3))
def test_reoptimise_all_requests_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    n = 4
    prompts, outputs = rng.integers(1, 6, n), rng.integers(1, 5, n)
    inst = make(int(max((prompts + outputs).max(), 12)), prompts, outputs)
    horizon = model.horizon_rounds(inst, "safe")
    start = model.greedy_schedule(inst)
    best = rules.reoptimise(inst, start, np.arange(n), 0, horizon, time_limit=30)
    assert model.is_feasible(inst, best)
    assert model.schedule_latency(inst, best) == pytest.approx(brute_force(inst, horizon))


def test_improve_schedule_and_hindsight_bracket_the_optimum():
    inst = inst_mod.generate(25, lengths="azure", seed=8)
    start = rules.plan_schedule(inst, rules.MCSF())
    better = rules.improve_schedule(inst, start, time_limit=3)
    assert model.is_feasible(inst, better)
    assert model.schedule_latency(inst, better) <= model.schedule_latency(inst, start)
    lower = bench.bound(inst).value
    assert lower == int(lower)  # total latency is whole rounds: the LP bound is rounded up
    assert lower >= rules.solve_lp(inst).objective - 1e-6
    hind = bench.evaluate(inst, rules.Hindsight(time_limit=3))
    assert lower <= hind.cost <= min(bench.evaluate(inst, m).cost for m in ("mcsf", "bid_price"))
    assert hind.metrics["preemptions"] == 0


def test_online_bid_price_skips_a_request_that_fails_the_lookahead():
    # M = 10; running: one request holding 5 tokens, 3 rounds left (5, 6, 7). Waiting by score
    # (price 0 -> predicted rounds): A (prompt 4, 2 rounds) holds 5, 6: 5 + 5 = 10 now but
    # 6 + 6 = 12 next round -> fails. B (prompt 0, 3 rounds) holds 1, 2, 3: 6, 8, 10 -> fits.
    def state(arrival, t=2):
        return rules.State(t=t, kv_memory=10, max_batch=None, used=5, waiting=np.array([1, 2]),
                           running=np.array([0]), generated=np.array([2, 0, 0]),
                           admitted_at=np.array([0, -1, -1]), prompt=np.array([2, 4, 0]),
                           predicted=np.array([5, 2, 3]), arrival=np.asarray(arrival))
    rule = rules.BidPriceStationary(price=0.0)
    assert rule.admit(state([0, 0, 0])).tolist() == []  # all at once: stop at A, as MC-SF
    assert rules.MCSF().admit(state([0, 0, 0])).tolist() == []
    assert rule.admit(state([0, 1, 2])).tolist() == [2]  # online: skip A, admit B
    assert rules.MCSF().admit(state([0, 1, 2])).tolist() == []
    # A has waited 9 rounds > patience 2 x its 2 predicted rounds: it blocks the queue
    assert rule.admit(state([0, 1, 2], t=10)).tolist() == []
    assert rule.admit(state([0, 1, 2], t=5)).tolist() == [2]  # waited 4 = 2 x 2: not more
    assert rules.BidPriceStationary(price=0.0, patience=5).admit(
        state([0, 1, 2], t=10)).tolist() == [2]


@pytest.mark.parametrize("patience", [-1, float("nan"), "2", True])
def test_bad_patience_is_refused_by_name(patience):
    with pytest.raises(InvalidInstanceError, match="patience"):
        rules.BidPriceStationary(patience=patience)
    with pytest.raises(InvalidInstanceError, match="patience"):
        rules.BidPrice(patience=patience)


def test_schedule_search_refuses_bad_input_by_name():
    inst = inst_mod.generate(6, lengths="azure", seed=1)
    start = model.greedy_schedule(inst)
    late = start - 1  # before the arrivals (all at round 0)
    with pytest.raises(InvalidInstanceError, match="feasible schedule"):
        rules.improve_schedule(inst, late, time_limit=1)
    capped = dataclasses.replace(inst, max_batch=2)
    with pytest.raises(InvalidInstanceError, match="max_batch"):
        rules.serial_schedule(capped, np.arange(inst.n))


def test_bounds_round_up_to_whole_rounds_but_not_on_solver_noise():
    assert bench.whole_rounds(13 / 3) == 5.0
    assert bench.whole_rounds(3.001) == 4.0
    assert bench.whole_rounds(3 + 1e-7) == 3.0
    assert bench.whole_rounds(44_534 + 1e-5) == 44_534.0  # 2e-10 relative: noise, not a round
    assert bench.whole_rounds(44_534.01) == 44_535.0


def test_ip_default_horizon_gives_the_true_optimum_not_a_late_column():
    # With the greedy makespan as horizon (5 rounds) the IP parks a request in the late column,
    # which costs its earliest late start and holds no memory: 10 rounds, below every real
    # schedule. Brute force over the safe horizon: 11. The IP's default is the safe horizon.
    inst = make(7, [3, 5, 2, 3], [3, 1, 1, 1], arrivals=np.array([0, 1, 1, 3]))
    optimum = brute_force(inst, model.horizon_rounds(inst, "safe"))
    assert optimum == 11.0
    sol = exact.solve(inst)
    assert sol.objective == pytest.approx(optimum) and sol.decisions["late"].max() < 1e-9
    ip = bench.bound(inst, method="ip")
    assert ip.value == optimum and ip.kind == "optimal"
    # on the short horizon the IP is only a bound, and the table must not call it optimal
    short = bench.bound(inst, method="ip", horizon=model.horizon_rounds(inst, None))
    assert short.value < optimum and short.kind == "mip_bound"


@pytest.mark.parametrize("cls", [rules.BidPrice, rules.BidPriceStationary])
def test_a_bid_price_object_reused_on_another_instance_relearns_its_prices(cls):
    # (on this pair, stale prices from the first instance change the second's cost for both)
    first = inst_mod.generate(n=30, seed=1, lengths="azure")
    second = inst_mod.generate(n=30, seed=2, lengths="azure")
    policy = cls()
    bench.evaluate(first, policy)
    assert bench.evaluate(second, policy).cost == bench.evaluate(second, cls()).cost


@pytest.mark.parametrize("bad", [[0.1, float("nan")], [0.1, -1.0], [[0.1]], "x"])
def test_bid_price_refuses_prices_that_are_not_prices(bad):
    with pytest.raises(InvalidInstanceError, match="prices"):
        rules.BidPrice(bad)
    with pytest.raises(InvalidInstanceError, match="price"):
        rules.BidPriceStationary(float("nan"))


def test_outputs_beyond_a_million_tokens_are_refused_not_simulated_for_hours():
    with pytest.raises(InvalidInstanceError, match="at most 1,000,000"):
        make(2 * 10**9, [10], [10**9])


@pytest.mark.parametrize(("kw", "message"), [({"n": 2.5}, "n must be"), ({"kv_memory": 100.7}, "kv_memory"),
                                            ({"start": -1}, "start"), ({"round_s": "1"}, "round_s")])
def test_from_trace_refuses_options_it_would_truncate(tmp_path, kw, message):
    path = tmp_path / "a.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,64,4\n"
                    "2023-11-16 18:17:04,32,8\n")
    with pytest.raises(InvalidInstanceError, match=message):
        inst_mod.from_trace(path, **{"n": 2} | kw)


class _Greedy(rules.Policy):
    name = "greedy"

    def admit(self, state):
        return rules.admit_with_watermark(state, state.waiting, 0.0)


@pytest.mark.parametrize(("answer", "message"), [
    (lambda v: np.concatenate([v, v, v]), "returned a request twice"),
    (lambda v: v.astype(float) + 0.5, "must return request ids"),
    (lambda v: np.array([-1]), "must return request ids"),
])
def test_a_preempt_rule_with_a_bad_answer_is_refused_not_counted(answer, message):
    # KV 12, prompts 4 4 2 2, outputs 6: the greedy batch overflows at round 2. A preempt() that
    # returns its victims three times used to free their memory three times: cost 28, below the
    # LP bound 46 (a correct rule costs 47).
    class Bad(_Greedy):
        def preempt(self, state, excess):
            return answer(super().preempt(state, excess))

    inst = make(12, [4, 4, 2, 2], [6, 6, 6, 6])
    assert bench.evaluate(inst, _Greedy()).cost == 47.0
    with pytest.raises(InvalidInstanceError, match=message):
        bench.evaluate(inst, Bad())


@pytest.mark.parametrize("answer", [-1, 2, 3])
def test_an_admit_rule_returning_no_request_id_is_refused(answer):
    # two requests: ids 0 and 1; -1, 2 (= n, once a bare IndexError) and 3 name no request
    class Bad(rules.Policy):
        def admit(self, state):
            return np.array([answer])

    with pytest.raises(InvalidInstanceError, match="must return request ids"):
        bench.evaluate(make(12, [4, 4], [2, 2]), Bad())


def test_a_bid_price_object_reused_after_an_online_instance_relearns_its_tail():
    # online, the tail price is learned on a history window; offline it is the LP's own mean
    # price. A reused object must not carry the online tail into the offline instance.
    online = inst_mod.generate(n=30, seed=1, lengths="azure", arrivals="poisson")
    offline = inst_mod.generate(n=30, seed=2, lengths="azure")
    policy, fresh = rules.BidPrice(), rules.BidPrice()
    bench.evaluate(online, policy)
    online_tail = policy.tail
    bench.evaluate(offline, policy)
    bench.evaluate(offline, fresh)
    assert policy.tail == fresh.tail != online_tail


@pytest.mark.parametrize("horizon", [4, 6, 9])
def test_cvxpy_lp_with_a_horizon_shorter_than_the_longest_output(horizon):
    # outputs 3, 2, 8: with a horizon below 8 rounds the long request can only be late; both
    # backends must agree (CVXPY crashed on a negative slice)
    inst = make(20, [2, 3, 4], [3, 2, 8])
    pyomo_lp = exact.solve(inst, relax=True, horizon=horizon)
    cvxpy_lp = exact.solve(inst, relax=True, horizon=horizon, backend="cvxpy")
    assert cvxpy_lp.objective == pytest.approx(pyomo_lp.objective, rel=1e-6)


def test_offline_bid_price_prices_a_load_sample_when_the_lp_is_too_large():
    inst = inst_mod.generate(40, seed=3)
    sample = rules.load_sample(inst, 10)
    # 10 of 40 requests spread over the predicted outputs, a quarter of the memory (or the
    # largest sampled request's peak need, if that is more)
    assert sample.n == 10
    peak = int(np.max(sample.prompt_tokens + sample.output_tokens))
    assert sample.kv_memory == max(round(inst.kv_memory / 4), peak)
    assert sample.predicted_output.min() == inst.predicted_output.min()
    assert sample.predicted_output.max() == inst.predicted_output.max()
    assert rules.load_sample(inst, 40) is inst
    # the start columns are counted without building them: n x horizon minus what ends too late
    T = model.horizon_rounds(rules.planning_instance(inst))
    plan = rules.planning_instance(inst)
    cols = model.columns(plan)
    assert model.model_size(plan) == (T, len(cols.request), model.memory_entries(plan, cols))
    # long outputs: the whole LP (and a 120-request sample's) is too large; the sample shrinks
    long = inst_mod.generate(110, seed=0, output_range=(100, 400))
    _, columns, entries = model.model_size(rules.planning_instance(long))
    assert columns > 200_000 and entries > 20_000_000
    shrunk = rules.load_sample(long, 120, (200_000, 2_000_000))
    assert shrunk.n < 110 and (shrunk.n == 8 or not rules.lp_too_large(
        rules.planning_instance(shrunk), 200_000, 2_000_000))
    with pytest.warns(RuntimeWarning, match="the price is 0"):  # no longer silent (98bc6d5)
        assert math.isfinite(bench.evaluate(long, "bid_price").cost)  # it used to raise
    # a limit the whole LP passes and a 10-request sample's LP does not
    limit = model.model_size(rules.planning_instance(sample))[1]
    assert model.model_size(rules.planning_instance(inst))[1] > limit
    small = rules.BidPrice(max_columns=limit, sample=10)
    out = bench.evaluate(inst, small)
    assert len(small.prices) == 0 and small.tail > 0  # one stationary price, from the sample
    assert math.isfinite(out.cost) and out.metrics["peak_memory"] <= inst.kv_memory
    assert out.cost != bench.evaluate(inst, rules.BidPrice(tail=0.0, prices=np.zeros(0))).cost


def test_the_fine_model_refuses_memory_rows_that_would_not_fit(monkeypatch):
    inst = make(20, [3, 3], [4, 4])  # both run at once (7 + 7 <= 20): horizon 4, one start each
    cols = model.columns(inst)
    assert len(cols.request) == 2 and model.memory_entries(inst, cols) == 8  # 2 x 4 rounds
    monkeypatch.setattr(model, "_MAX_NONZEROS", 7)
    with pytest.raises(InvalidInstanceError, match="8 entries"):
        model.build_matrix(inst)
    model.columns(inst)  # listing the columns (the coarse model's start) is still allowed


def test_auto_bound_falls_back_to_the_area_bound_on_a_model_too_large_to_build():
    # 40 requests of 5000 tokens, 4 at a time: ~1.8M start columns and ~9e9 memory entries
    inst = make(4 * 5001, [1] * 40, [5000] * 40)
    bound = bench.bound(inst)
    assert bound.kind == "lower_bound" and bound.value == model.area_bound(inst)
    assert "too large" in bound.status


@pytest.mark.parametrize("seed", range(3))
def test_compress_idle_keeps_the_optimum_and_cuts_the_rounds(seed):
    rng = np.random.default_rng(40 + seed)
    prompts, outputs = rng.integers(1, 5, 4), rng.integers(1, 4, 4)
    arrivals = np.array([0, int(rng.integers(0, 2)), 25, 26])  # a long idle stretch before 25
    inst = make(int((prompts + outputs).max()) + 3, prompts, outputs, arrivals=arrivals)
    short = model.compress_idle(inst)
    # the part arriving at 25 moves to where the first part must have finished
    assert short.arrival[2] < 25 and short.arrival[3] - short.arrival[2] == 1
    assert short.arrival[:2].tolist() == arrivals[:2].tolist()
    # optimum by enumeration over each instance's own long horizon (latencies do not move)
    long_h = lambda x: int(x.arrival.max() + x.output_tokens.sum()) + 2  # noqa: E731
    assert brute_force(short, long_h(short)) == brute_force(inst, long_h(inst))
    assert model.compress_idle(short) is short  # nothing left to cut


def test_start_vector_by_hand():
    # outputs 2 and 3, memory 20, horizon 5, window 1: request 0 may start at 0-1, request 1
    # (arriving at round 1) at 1-2. Columns: (0,0) (0,1) (1,1) (1,2), then late 0, late 1
    inst = make(20, [2, 3], [2, 3], arrivals=[0, 1])
    cols = model.columns(inst, 5, window=1)
    assert cols.request.tolist() == [0, 0, 1, 1] and cols.start.tolist() == [0, 1, 1, 2]
    np.testing.assert_array_equal(model.start_vector(cols, np.array([1, 2])), [0, 1, 0, 1, 0, 0])
    # a start outside a request's modelled rounds takes its late column
    np.testing.assert_array_equal(model.start_vector(cols, np.array([0, 3])), [1, 0, 0, 0, 0, 1])
    # a request with no column at all (horizon too short for its output) is late
    short = model.columns(inst, 3, window=1)
    assert short.request.tolist() == [0, 0]
    np.testing.assert_array_equal(model.start_vector(short, np.array([0, 1])), [1, 0, 0, 1])


# ---------------------------------------------------------------------------------------------
# the IP's warm start and its bound when HiGHS stops before the root LP
# ---------------------------------------------------------------------------------------------
def test_lookahead_schedule_stop_and_skip_by_hand():
    # M = 10. Request 0 (s 2, o 2) holds 3, 4; request 1 (s 7, o 3) holds 8, 9, 10; request 2
    # (s 1, o 4) holds 2, 3, 4, 5. By output: 0, 1, 2. Round 0: 0 joins; 1 would need 4 + 9 = 13
    # in round 1. Stopping there: 1 starts at 2 (after 0), 2 at 5 (2 + 4 + 8 + 2 > 10 before):
    # latency 2 + 5 + 9 = 16. Skipping 1: 2 joins at round 0 (4 + 3 in round 1, 5 in round 3);
    # 1 fits only once 2 has finished (round 4: 8 alone): latency 2 + 7 + 4 = 13.
    inst = make(10, [2, 7, 1], [2, 3, 4])
    o = inst.output_tokens
    assert model.lookahead_schedule(inst, o).tolist() == [0, 2, 5]
    assert model.greedy_schedule(inst).tolist() == [0, 2, 5]
    assert model.lookahead_schedule(inst, o, skip=True).tolist() == [0, 4, 0]
    warm = model.warm_start_schedule(inst)
    assert model.is_feasible(inst, warm)
    assert model.schedule_latency(inst, warm) <= 13
    assert model.schedule_latency(inst, warm) >= brute_force(inst, model.horizon_rounds(inst, "safe"))


@pytest.mark.parametrize("seed", range(6))  # every combination of lengths, arrivals, cap
def test_warm_start_is_feasible_deterministic_and_never_worse_than_greedy(seed):
    rng = np.random.default_rng(seed)
    inst = inst_mod.generate(int(rng.integers(5, 60)), lengths=("uniform", "azure")[seed % 2],
                             arrivals=("offline", "poisson")[(seed // 2) % 2],
                             max_batch=(None, 3, None)[seed % 3], seed=seed)
    warm = model.warm_start_schedule(inst)
    assert model.is_feasible(inst, warm)
    assert np.array_equal(warm, model.warm_start_schedule(inst))
    assert model.schedule_latency(inst, warm) <= model.schedule_latency(inst, model.greedy_schedule(inst))
    # every candidate is a feasible schedule that the warm start is at least as good as
    footprint = inst.footprint().astype(float)
    for skip in (False, True):
        for mu in model.WARM_PRICES:
            start = model.lookahead_schedule(
                inst, inst.output_tokens + mu / inst.kv_memory * footprint, skip=skip)
            assert model.is_feasible(inst, start)
            assert model.schedule_latency(inst, warm) <= model.schedule_latency(inst, start)


def test_the_ip_starts_from_the_warm_start_on_both_paths():
    inst = inst_mod.generate(16, seed=3)
    warm = model.schedule_latency(inst, model.warm_start_schedule(inst))
    mm = model.build_matrix_model(inst)
    assert float(mm.objective @ mm.start) == pytest.approx(warm)
    m = model.build(inst)
    assert m.warm_start and float(pyo_value(m.latency)) == pytest.approx(warm)
    for backend in ("highs", "pyomo"):
        sol = exact.solve(inst, time_limit=1.0, backend=backend, prices=False)
        assert sol.objective <= warm + 1e-9
        start = sol.decisions["start"].to_numpy()
        assert model.is_feasible(inst, start)
        assert model.schedule_latency(inst, start) == pytest.approx(sol.objective)


def pyo_value(expr):
    import pyomo.environ as pyo

    return pyo.value(expr)


def test_a_mip_stopped_before_its_root_reports_the_rounded_lp_bound():
    inst = inst_mod.generate(30, seed=3)
    lp = exact.solve(inst, relax=True).objective
    # HiGHS stops before its root LP while the call has time left for the bound LP (a time_limit
    # of 1e-4 s is now the whole call's budget: the bound LP would be skipped)
    ip = model.build_matrix_model(inst)
    ip.options["time_limit"] = 1e-4
    sol = exact.solve_matrix(ip, decision="batch_scheduling")
    assert sol.status == "time_limit"
    assert sol.info["bound_kind"] == "lp_relaxation" and sol.info["bound_lp_rounded"] == "up"
    assert sol.bound == math.ceil(lp - 1e-6) and sol.bound <= sol.objective
    # a proved bound: below the optimum found by brute force on a tiny instance
    tiny = make(12, [3, 1, 4, 2], [3, 2, 4, 1])
    optimum = brute_force(tiny, model.horizon_rounds(tiny, "safe"))
    tiny_ip = model.build_matrix_model(tiny)
    tiny_ip.options["time_limit"] = 1e-4
    stopped = exact.solve_matrix(tiny_ip, decision="batch_scheduling")
    assert stopped.bound <= optimum
    # with a window the IP is a relaxation of its own: no makespan LP is offered as its bound
    assert model.build_matrix_model(inst, window=5).bound_lp is None


def test_a_subclass_score_or_footprint_price_orders_the_queue():
    # M = 100, nothing running, three requests that all fit: prompts 30, 10, 20, predicted 3,
    # 1, 2. The built-in rules (price 0) admit shortest first: 1, 2, 0. A subclass that
    # overrides score (largest prompt first) or, for BidPrice, footprint_price (a flat charge
    # of -10 x prompt) is what admit uses, for either class.
    state = rules.State(t=0, kv_memory=100, max_batch=None, used=0, waiting=np.array([0, 1, 2]),
                        running=np.zeros(0, int), generated=np.zeros(3, int),
                        admitted_at=np.full(3, -1), prompt=np.array([30, 10, 20]),
                        predicted=np.array([3, 1, 2]), arrival=np.zeros(3, int))
    assert rules.BidPrice(np.zeros(0), tail=0.0).admit(state).tolist() == [1, 2, 0]
    assert rules.BidPriceStationary(0.0).admit(state).tolist() == [1, 2, 0]

    def largest_prompt(self, state, ids):
        return -state.prompt[ids].astype(float)

    for base in (rules.BidPrice, rules.BidPriceStationary):
        cls = type("LargestPromptFirst", (base,), {"score": largest_prompt})
        rule = cls(np.zeros(0), tail=0.0) if base is rules.BidPrice else cls(0.0)
        assert rule.admit(state).tolist() == [0, 2, 1]

    class Flat(rules.BidPrice):
        def footprint_price(self, t, c, r):
            return -10.0 * c

    assert Flat(np.zeros(0), tail=0.0).admit(state).tolist() == [0, 2, 1]


def test_simulate_takes_a_policies_name_as_evaluate_does():
    # the simulator's latency total of a name equals evaluate's cost (total end-to-end latency)
    # and the prepared object's; anything else is refused in the user's terms
    inst = inst_mod.generate(20, seed=0)
    prepared = rules.MCSF()
    prepared.prepare(inst)
    by_name = bench.simulate(inst, "mcsf")["latency"].sum()
    assert by_name == bench.simulate(inst, prepared)["latency"].sum() == bench.evaluate(inst, "mcsf").cost
    with pytest.raises(InvalidInstanceError, match="must be a POLICIES name"):
        bench.simulate(inst, 3)


def test_an_lp_stopped_before_its_optimum_gives_no_prices_to_the_rules():
    # a 0.05 s limit stops the n = 150 LP at an iterate whose duals were all 0.25 (optimal:
    # 0.728, 0.700, ...): the rules scheduled on them silently (12787 against 12591)
    inst = inst_mod.generate(n=150, seed=0)
    stopped = rules.solve_lp(inst, time_limit=0.05)
    if stopped.status == "optimal":  # a fast machine finished anyway: nothing to check
        pytest.skip("the LP finished within 0.05 s here")
    assert stopped.prices == {}
    with pytest.raises(InvalidInstanceError, match="stopped before its optimum"):
        rules.BidPriceStationary.learn(inst, time_limit=0.05)
    with pytest.raises(InvalidInstanceError, match="stopped before its optimum"):
        bench.evaluate(inst, rules.BidPrice(time_limit=0.05))
    with pytest.raises(InvalidInstanceError, match="not solved to optimality"):
        rules.BidPrice.from_solution(stopped)


def test_azure_lengths_have_the_documented_medians_and_means():
    # closes: the fit was documented with the trace's means (2048 / 28) while its clipped draws
    # average 1977 / 28.7 (audit R55); the medians are the trace's (its README: 1469 and 13)
    import numpy as np

    from servopt.instances.batch_scheduling import AZURE_OUTPUT, AZURE_PROMPT, _lognormal

    rng = np.random.default_rng(7)
    prompt, output = _lognormal(rng, AZURE_PROMPT, 400_000), _lognormal(rng, AZURE_OUTPUT, 400_000)
    assert abs(np.median(prompt) - 1469) <= 5 and np.median(output) == 13
    assert prompt.mean() == pytest.approx(1977, rel=0.01)
    assert output.mean() == pytest.approx(28.7, rel=0.01)
