"""Decode routing, capacity and expert placement fixes of the R21 / R24 audits (E19).

Each test fails on the code before the fix; expected numbers are hand calculations, the other
formulation (the unblocked hindsight optimum, the combinatorial makespan bound) or counts taken
independently of the code under test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import servopt
from servopt.benchmarks import capacity as cap_bench
from servopt.benchmarks import decode_routing as dr_bench
from servopt.core import InvalidInstanceError
from servopt.instances import capacity as cap_inst
from servopt.instances import decode_routing as dr_inst
from servopt.instances import expert_placement as ep_inst
from servopt.models import expert_placement as ep_model
from servopt.solvers import capacity as cap_rules
from servopt.solvers import decode_routing as routing


# -- R21 #1: a blocked decode relaxation is not called an optimum -----------------------------------
def test_blocked_hindsight_value_is_labelled_a_lower_bound():
    inst = dr_inst.generate_steps(requests=10)
    exact = servopt.solve(inst)
    blocked = servopt.solve(inst, step_block=10**6)
    assert "note" not in exact.info  # exact here: the optimum itself
    # the other formulation: the unblocked optimum is above the blocked value (R21: 4293.39 vs 4270.50)
    assert blocked.objective < exact.objective - 1.0
    assert "lower bound" in blocked.info["note"] and "step_block=1000000" in blocked.info["note"]
    assert blocked.info["bound_kind"] == "lower_bound" and exact.info["bound_kind"] == "mip_bound"


# -- R21 #1: a user's makespan_lb above the optimum is refused or labelled --------------------------
def test_makespan_lb_above_a_reachable_makespan_is_refused():
    ep = ep_inst.generate("tiny")
    with pytest.raises(InvalidInstanceError, match="makespan_lb=1000000000 for layer 0"):
        servopt.solve(ep, makespan_lb=1e9)  # was ('optimal', 1999999999.99)
    with pytest.raises(InvalidInstanceError, match="makespan_lb"):
        servopt.solve(ep, makespan_lb=1e9, group_locality=True)


def test_makespan_lb_between_the_proved_bound_and_a_plan_is_labelled():
    ep = ep_inst.generate("tiny")
    w = ep.planned_loads
    proved = ep_model.makespan_lower_bound(w, ep.num_gpus, ep.slots_per_gpu, ep.speed)
    plain = servopt.solve(ep)
    # a valid cut (the proved bound) changes nothing and is not labelled
    cut = servopt.solve(ep, makespan_lb=proved)
    assert cut.objective == pytest.approx(plain.objective, rel=1e-9)
    assert "note" not in cut.info and "note" not in plain.info
    # 215 on both layers: above layer 0's optimum (the plain solve's z, 208.67) and below what a
    # simple plan reaches (218.33): accepted, but the "optimal" value is the cut's, and says so
    layer_z = plain.decisions["z"].to_numpy()
    reach = ep_model.feasible_makespan(ep, w)
    assert layer_z[0] < 215 < reach.min()
    assert np.all(reach >= layer_z - 1e-6)  # the cheap plan is a plan: never below the optimum
    wrong = servopt.solve(ep, makespan_lb=215)
    assert wrong.objective > plain.objective + 1.0
    assert "only if your makespan_lb is a valid lower bound" in wrong.info["note"]


# -- R21 #3: explain_infeasible names makespan_ub --------------------------------------------------
def test_explain_infeasible_names_makespan_ub():
    ep = ep_inst.generate("tiny")
    proved = ep_model.makespan_lower_bound(ep.planned_loads, ep.num_gpus, ep.slots_per_gpu, ep.speed)
    text = ep_model.explain_infeasible(ep, makespan_ub=2.5)
    assert "makespan_ub=2.5" in text and f"{proved[0]:.10g}" in text
    assert "makespan_ub" not in ep_model.explain_infeasible(ep)
    assert "group_locality=True" in ep_model.explain_infeasible(ep, group_locality=True)


# -- R21 #5: model options refused by name ----------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("layers", 0), ("max_binaries", None), ("max_binaries", math.nan),
    ("max_binaries", 2.5), ("symmetry", "no"), ("group_locality", "abc"),
])
def test_expert_model_options_refused_by_name(option, value):
    with pytest.raises(InvalidInstanceError, match=rf"{option} must be"):
        servopt.solve(ep_inst.generate("tiny"), **{option: value})


@pytest.mark.parametrize("option, value", [
    ("max_entries", "1e6"), ("max_entries", math.nan), ("max_entries", 0), ("max_entries", True),
    ("step_block", True),
])
def test_decode_model_options_refused_by_name(option, value):
    with pytest.raises(InvalidInstanceError, match=rf"{option} must be"):
        servopt.solve(dr_inst.generate_steps(requests=10), **{option: value})


# -- R24 #6: decode bound says when HiGHS stopped at its time limit -----------------------------------
def test_decode_bound_says_time_limit_when_the_busy_bound_answers(monkeypatch):
    inst = dr_inst.generate_steps(requests=10)
    stopped = {"status": "time_limit", "objective": math.nan, "bound": -math.inf, "x": None,
               "info": {}}
    monkeypatch.setattr(routing, "solve_matrix", lambda *args, **kw: dict(stopped))
    out = dr_bench.bound(inst, time_limit=0.5)
    assert out.kind == "lower_bound" and out.value == pytest.approx(dr_bench.busy_lower_bound(inst))
    assert out.status.startswith("time_limit") and "busy-time bound" in out.status  # was "ok"


# -- R24 #7: epoch_ip reports its solves, time-limited steps and fallbacks -----------------------------
def test_epoch_ip_counts_time_limited_steps_and_fallbacks(monkeypatch):
    real = routing.solve_matrix
    calls = {"n": 0, "limited": 0, "fallback": 0}

    def patched(mat, **kw):  # every third solve stopped with an incumbent, every third without
        calls["n"] += 1
        out = real(mat, **kw)
        if calls["n"] % 3 == 1:
            calls["limited"] += 1
            out["status"] = "time_limit"
        elif calls["n"] % 3 == 2:
            calls["fallback"] += 1
            out["status"], out["x"] = "time_limit", None
        return out

    monkeypatch.setattr(routing, "solve_matrix", patched)
    inst = dr_inst.generate(requests=40, workers=2, seed=0)
    router = routing.EpochIP(time_limit=5.0)
    m = dr_bench.evaluate(inst, router).metrics
    assert calls["n"] > 3
    assert m["epoch_solves"] == calls["n"]
    assert m["epoch_time_limited"] == calls["limited"]
    assert m["epoch_fallbacks"] == calls["fallback"] == router.fallbacks


def test_router_metrics_do_not_overwrite_the_evaluators():
    assert set(dr_bench.METRIC_NAMES) == set(
        dr_bench.simulate(dr_inst.generate(requests=20, workers=2, seed=0), "least_kv")["metrics"])

    class Clash(routing.LeastKV):
        def run_metrics(self):
            return {"steps": 1.0}

    with pytest.raises(InvalidInstanceError, match="steps"):
        dr_bench.evaluate(dr_inst.generate(requests=20, workers=2, seed=0), Clash())


# -- R21 #4: router and autoscaler options refused in the constructor ----------------------------------
@pytest.mark.parametrize("make, option", [
    (lambda: routing.BidPrice(window=0), "window"),
    (lambda: routing.BidPrice(window=-1), "window"),
    (lambda: routing.BidPrice(window=10**12), "window"),
    (lambda: routing.BidPrice(window=math.nan), "window"),
    (lambda: routing.BidPrice(horizon=10**7), "horizon"),
    (lambda: routing.BidPrice(horizon=math.nan), "horizon"),
    (lambda: routing.BidPrice(refresh=math.nan), "refresh"),
    (lambda: routing.BidPrice(span=10**12), "span"),
    (lambda: routing.BidPrice(span=True), "span"),
    (lambda: routing.BidPrice(central="no"), "central"),
    (lambda: routing.BidPrice(slack=math.nan), "slack"),
    (lambda: routing.BidPrice(tolerance="0.1"), "tolerance"),
    (lambda: routing.EpochIP(horizon=-1), "horizon"),
    (lambda: routing.EpochIP(horizon=math.nan), "horizon"),
    (lambda: routing.EpochIP(discount=math.nan), "discount"),
])
def test_router_options_refused_by_name(make, option):
    with pytest.raises(InvalidInstanceError, match=option):
        make()


@pytest.mark.parametrize("rule, kw, option", [
    (cap_rules.utilisation, {"target": 0}, "target"),
    (cap_rules.utilisation, {"target": 1.5}, "target"),
    (cap_rules.utilisation, {"rounds": 0}, "rounds"),
    (cap_rules.utilisation, {"rounds": -1}, "rounds"),
    (cap_rules.queue_depth, {"target": 0}, "target"),
    (cap_rules.queue_depth, {"target": -1}, "target"),
    (cap_rules.queue_depth, {"tolerance": math.nan}, "tolerance"),
    (cap_rules.queue_depth, {"rounds": 0}, "rounds"),
])
def test_autoscaler_options_refused_before_observing(rule, kw, option):
    seen = []

    def observe(workers):  # the refusal comes before any observation
        seen.append(workers)
        return {"compute_utilisation": 0.5, "mean_waiting": 100.0}

    with pytest.raises(InvalidInstanceError, match=option):
        rule(cap_inst.generate(requests=300), observe, **kw)
    assert seen == []


# -- R21 #2: the fleet observer counts requests that arrive during an iteration ---------------------
HAND = dict(prompt_tokens=[100], output_tokens=[11], arrival_rate=1.0, kv_tokens=1000,
            token_budget=200, batch_cap=4, prefill_chunk=50, step_overhead_s=0.01,
            per_token_s=0.001, headroom=0.1)


def _observe_hand(monkeypatch, arrivals, log):
    """fleet_observer(...)(1) on a hand-made arrival stream and simulator log (rate 1 req/s)."""
    n = len(arrivals)
    monkeypatch.setattr(cap_bench, "sample_requests",
                        lambda *a, **k: (np.full(n, 100), np.full(n, 11), np.asarray(arrivals)))
    monkeypatch.setattr(cap_bench, "simulate", lambda *a, **k: log)
    return cap_bench.fleet_observer(cap_inst.Instance(**HAND), window=n)(1)


def _log(times, waiting, tokens):
    k = len(times)
    return cap_bench.SimResult(times=np.array(times), in_system=np.zeros(k, int),
                               waiting=np.array(waiting), tokens=np.array(tokens),
                               kv_used=np.zeros(k), iterations=np.ones(k, int),
                               done_times=np.full(4, np.nan), preemptions=0, recomputed_tokens=0,
                               work_tokens=0)


def test_observer_counts_arrivals_during_an_iteration_by_hand(monkeypatch):
    # one iteration of 10 tokens from t = 0 to 0.01 + 0.001 x 10 = 0.02 s, then one ending past the
    # last arrival (0.5 s). Requests 1 and 2 arrive at 0.005 and 0.015, during the first: they wait
    # 0.015 + 0.005 = 0.02 request-seconds of the 0.02 s window -> mean 1.0 (was 0: the log counts
    # arrivals at the iteration's start only); 2 waiting at its end (was 0).
    seen = _observe_hand(monkeypatch, [0.0, 0.005, 0.015, 0.5], _log([0.02, 0.6], [0, 2], [10, 10]))
    assert seen["mean_waiting"] == pytest.approx(1.0)
    assert seen["final_waiting"] == 2


def test_observer_measures_the_backlog_when_no_iteration_ends_in_the_window(monkeypatch):
    # the first iteration (590 tokens: 0.01 + 0.59 = 0.6 s from t = 0) outlasts the window [0, 0.3]:
    # requests at 0.1, 0.2, 0.3 wait 0.2 + 0.1 + 0 = 0.3 request-seconds over 0.3 s -> 1.0; 3 waiting
    seen = _observe_hand(monkeypatch, [0.0, 0.1, 0.2, 0.3], _log([0.6], [0], [590]))
    assert seen["mean_waiting"] == pytest.approx(1.0)
    assert seen["final_waiting"] == 3


def test_queue_depth_scales_out_at_heavy_overload():
    # R21's reproduction: 600 arrivals at 1e4 req/s on one worker (0.062 s) while its first
    # iteration runs 0.043 s: the queue it sees is hundreds deep, not empty
    inst = cap_inst.generate(requests=300, arrival_rate=1e4)
    observe = cap_bench.fleet_observer(inst, window=600)
    assert observe(1)["mean_waiting"] > 100  # was 0.0
    assert cap_rules.queue_depth(inst, observe).workers > 100  # was 1 (the plan rule: 908)


# -- R21 #13: a stopped capacity LP is not an infeasible instance ---------------------------------------
def test_plan_from_a_time_limited_solution_is_invalid_not_infeasible():
    inst = cap_inst.generate(requests=300)
    solution = dataclasses.replace(servopt.solve(inst), status="time_limit")
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        cap_rules.plan_from_solution(inst, solution)
