"""Batch scheduling in CP-SAT (``benchmarks/batch_scheduling_cpsat.py``): the memory staircase by
hand, the optimum against brute force and the IP, every schedule replayed in the evaluator.
Skipped when OR-Tools is not installed (it is not a dependency of servopt)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_batch_scheduling import brute_force, make

from servopt.benchmarks import batch_scheduling_cpsat as cpsat
from servopt.instances import batch_scheduling as inst_mod
from servopt.models import batch_scheduling as model

pytest.importorskip("ortools")


def tiny(seed: int, max_batch: int | None = None):
    rng = np.random.default_rng(seed)
    n = 4
    prompts = rng.integers(1, 6, n)
    outputs = rng.integers(1, 5, n)
    arrivals = rng.integers(0, 3, n) if seed % 2 else np.zeros(n, int)
    return make(int(max((prompts + outputs).max(), 12)), prompts, outputs, arrivals=arrivals,
                max_batch=max_batch)


def brute_force_capped(inst, horizon: int) -> float:
    """Every combination of start rounds, judged by model.is_feasible (memory and batch cap)."""
    a, o = inst.arrival, inst.output_tokens
    ranges = [range(int(a[i]), horizon - int(o[i]) + 1) for i in range(inst.n)]
    best = np.inf
    for starts in itertools.product(*ranges):
        start = np.array(starts)
        if model.is_feasible(inst, start):
            best = min(best, model.schedule_latency(inst, start))
    return float(best)


def test_staircase_and_its_rectangles_by_hand():
    # prompt 3, output 5: 4, 5, 6, 7, 8 tokens in rounds 1..5 of the run
    assert cpsat.staircase(3, 5).tolist() == [4, 5, 6, 7, 8]
    assert cpsat.staircase(3, 5, 2, "down").tolist() == [4, 4, 6, 6, 8]
    assert cpsat.staircase(3, 5, 2, "up").tolist() == [5, 5, 7, 7, 8]
    assert cpsat.staircase(3, 5, 3, "up").tolist() == [6, 6, 6, 8, 8]
    # a base of 4 for the whole run, then one more token from each later round to the end
    assert cpsat.steps(cpsat.staircase(3, 5)) == [(0, 4), (1, 1), (2, 1), (3, 1), (4, 1)]
    assert cpsat.steps(cpsat.staircase(3, 5, 2, "down")) == [(0, 4), (2, 2), (4, 2)]
    assert cpsat.steps(np.array([7])) == [(0, 7)]
    assert cpsat.variant("exact") == ("exact", 1, "")
    assert cpsat.variant("down4:lb") == ("down", 4, "lb")
    assert cpsat.variant("up2:lbc") == ("up", 2, "lbc")
    for bad in ("down0", "up", "exact:ub", "side2"):
        with pytest.raises(ValueError):
            cpsat.variant(bad)


def test_one_request_per_round_by_hand():
    # three requests of 5 prompt tokens and 1 output token (6 KV tokens), memory 10: one a
    # round, so the optimum is 1 + 2 + 3 = 6 rounds
    inst = make(10, [5, 5, 5], [1, 1, 1])
    res = cpsat.solve(inst, time_limit=10, workers=1)
    assert res["status"] == "OPTIMAL" and res["objective"] == 6.0 == res["bound"]
    assert sorted(res["start"].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("seed", range(8))
def test_exact_model_matches_brute_force_and_the_evaluator(seed):
    inst = tiny(seed)
    optimum = brute_force(inst, model.horizon_rounds(inst, "safe"))
    res = cpsat.solve(inst, time_limit=20, workers=1)
    assert res["status"] == "OPTIMAL"
    assert res["objective"] == optimum == res["bound"]
    played = cpsat.replay(inst, res["start"])
    assert played["as_planned"] and played["cost"] == optimum
    assert played["peak"] <= inst.kv_memory


@pytest.mark.parametrize("seed", range(4))
def test_batch_cap_matches_brute_force(seed):
    inst = tiny(seed, max_batch=2)
    optimum = brute_force_capped(inst, model.horizon_rounds(inst, "safe"))
    res = cpsat.solve(inst, time_limit=20, workers=1)
    assert res["status"] == "OPTIMAL" and res["objective"] == optimum
    played = cpsat.replay(inst, res["start"])
    assert played["as_planned"] and played["cost"] == optimum


@pytest.mark.parametrize("seed", range(6))
def test_rounded_down_is_a_bound_and_rounded_up_is_feasible(seed):
    inst = tiny(seed)
    optimum = brute_force(inst, model.horizon_rounds(inst, "safe"))
    down = cpsat.solve(inst, rounding="down", chunk=2, time_limit=20, workers=1)
    assert down["status"] == "OPTIMAL" and down["bound"] <= optimum
    up = cpsat.solve(inst, rounding="up", chunk=2, time_limit=20, workers=1)
    assert up["status"] == "OPTIMAL" and up["objective"] >= optimum
    assert model.is_feasible(inst, up["start"])
    played = cpsat.replay(inst, up["start"])
    assert played["as_planned"] and played["cost"] == up["objective"]


def test_rounded_down_is_strictly_weaker_by_hand():
    # memory 9; A (4 prompt, 2 output) holds 5, 6 and B (2, 2) holds 3, 4: together 8, 10 in
    # rounds 0, 1, so they cannot both start at 0; starting one at 1 fits (A at 0, B at 1:
    # 6 + 3 = 9 tokens in round 1), latencies 2 + 3 = 5. Rounded down in chunks of 2 (A: 5, 5;
    # B: 3, 3; 8 <= 9) both start at 0: bound 4
    inst = make(9, [4, 2], [2, 2])
    assert cpsat.solve(inst, time_limit=10, workers=1)["objective"] == 5.0
    down = cpsat.solve(inst, rounding="down", chunk=2, time_limit=10, workers=1)
    assert down["objective"] == 4.0 and down["start"].tolist() == [0, 0]
    assert not cpsat.replay(inst, down["start"])["as_planned"]


def test_the_ip_optimum_at_n12():
    # generate(12, lengths="azure", seed=0): the IP proved 235 (batch_scheduling_bound_exact.csv)
    inst = inst_mod.generate(12, lengths="azure", seed=0)
    res = cpsat.solve(inst, time_limit=60, workers=1)
    assert res["status"] == "OPTIMAL" and res["objective"] == 235.0
    played = cpsat.replay(inst, res["start"])
    assert played["as_planned"] and played["cost"] == 235.0


def test_replay_flags_an_overflowing_schedule():
    # both of the memory-9 pair above at round 0: 10 tokens in round 1, so the evaluator
    # preempts and the schedule does not run as planned
    inst = make(9, [4, 2], [2, 2])
    played = cpsat.replay(inst, np.array([0, 0]))
    assert not played["as_planned"]
    assert cpsat.replay(inst, np.array([0, 2])) == {"cost": 6.0, "as_planned": True, "peak": 6}


def test_a_proved_lower_bound_keeps_the_optimum():
    # objective >= a proved lower bound (``:lbc``) cannot cut off the optimum: with the
    # brute-force optimum itself as the bound CP-SAT still finds an optimal schedule
    for seed in (1, 3, 4):
        inst = tiny(seed)
        optimum = brute_force(inst, model.horizon_rounds(inst, "safe"))
        res = cpsat.solve(inst, time_limit=10, workers=1, lower=optimum)
        assert res["status"] == "OPTIMAL" and res["objective"] == optimum
        assert model.is_feasible(inst, res["start"])


def test_hint_is_accepted_and_upper_caps_the_starts():
    inst = tiny(2)
    hint = model.warm_start_schedule(inst)
    upper = model.schedule_latency(inst, hint)
    res = cpsat.solve(inst, time_limit=10, workers=1, hint=hint, upper=upper)
    assert res["objective"] <= upper
    slack = int(upper - inst.output_tokens.sum())
    assert np.all(res["start"] <= inst.arrival + slack)
