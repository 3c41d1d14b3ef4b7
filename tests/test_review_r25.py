"""Defects a review of this session's diff found (R25), each checked against the code before."""

from __future__ import annotations

import numpy as np
import pytest

from servopt.cli import main
from servopt.core import InvalidInstanceError
from servopt.instances import capacity as cp
from servopt.instances import decode_routing as dr
from servopt.instances import expert_placement as ep


@pytest.mark.parametrize("kw, says", [
    # before: OverflowError from the unit-slip message's f-string, and from the magnitude check
    ({"step_overhead_s": 10**400}, r"a value beyond 1e\+12"),
    ({"per_token_s": 10**400}, r"a value beyond 1e\+12"),
    # before: "for inf ms pass step_ms=inf", advice that is itself refused
    ({"step_overhead_s": float("inf")}, "step_overhead_s must be a finite number"),
    # before: accepted as 2 s per iteration (a 0-d array passed the unit-slip check)
    ({"step_overhead_s": np.array(2.0)}, "step_overhead_s is in seconds"),
    # before: pointed at step_overhead_s, whose unit-slip check then refused the ms value
    ({"step_overhead_ms": 12}, "'step_overhead_ms' -> 'step_ms'"),
])
def test_capacity_worker_times_are_refused_in_the_user_s_terms(kw, says):
    with pytest.raises(InvalidInstanceError, match=says):
        cp.generate(requests=200, **kw)


def test_capacity_takes_none_as_not_given_like_the_other_two_name_options():
    # before: "give step_overhead_s ... or step_ms ..., not both (... step_ms=None)"
    assert cp.generate(requests=200, step_overhead_s=0.5, step_ms=None).step_overhead_s == 0.5
    assert cp.generate(requests=200, step_ms=None).step_overhead_s == \
        cp.generate(requests=200).step_overhead_s


@pytest.mark.parametrize("decision, draw", [("decode_routing", "prediction_error=0.5"),
                                            ("batch_scheduling", "noise=0.5")])
def test_a_trace_seed_that_draws_nothing_is_refused_as_for_the_other_decisions(
        tmp_path, capsys, decision, draw):
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    + "".join(f"{i * 0.1},{100 + i},{5 + i}\n" for i in range(20)))
    base = ["generate", decision, "--generator", "trace", f"path={path}", "max_requests=20"]
    # before: accepted, and the file was byte-identical to --seed 0's
    assert main([*base, "--seed", "3", "-o", str(tmp_path / "a.json")]) == 2
    assert "--seed 3 would not be used" in capsys.readouterr().err
    assert main([*base, draw, "--seed", "3", "-o", str(tmp_path / "b.json")]) == 0
    assert main([*base, "-o", str(tmp_path / "c.json")]) == 0


def test_expert_drift_is_the_window_correlation_only_without_persistent_experts():
    # the docstring's formula: corr = persistent + (1 - persistent) drift (log-popularity); the
    # loads are Poisson samples of it, so with many tokens per expert the log-loads follow it
    inst = ep.generate(windows=2, layers=1, experts=256, slots_per_gpu=64, drift=0.0,
                       persistent=0.8, tokens_per_window=10**8, seed=1)
    logs = np.log1p(inst.loads.astype(float))
    assert np.corrcoef(logs[0].ravel(), logs[1].ravel())[0, 1] == pytest.approx(0.8, abs=0.08)
    assert "persistent + (1 - persistent) * drift" in ep.generate.__doc__


def test_fleet_capacity_has_no_jump_where_its_sampling_changes():
    # before: a switch from sampling to the normal law at 200 admissions per worker and step
    # moved the capacity by 0.6% against its trend
    rng = np.random.default_rng(0)
    prompt = np.round(np.exp(rng.normal(6, 1, 5000))).astype(int) + 1
    caps = [dr.fleet_capacity(prompt, np.ones(5000, int), workers=8, slots=b, kv_capacity=10**9,
                              step_ms=10, ms_per_kv_token=1e-4, prefill_ms_per_token=0.02)
            for b in (198, 199, 200, 201, 202)]
    steps = np.diff(caps)
    assert np.abs(steps).max() < 0.002 * caps[0]




def test_servopt_solve_names_the_option_that_made_an_expert_model_infeasible():
    # R21 #3: "no placement fits: 6 experts need a slot each and 9 slots exist" blamed the slots
    import servopt
    from servopt.core import InfeasibleError

    with pytest.raises(InfeasibleError, match=r"makespan_ub=2\.5 is below layer 0's least"):
        servopt.solve(ep.generate("tiny"), makespan_ub=2.5)


# R26, a review of the engineers' later fixes


def test_lp_schedule_does_not_take_an_lp_result_its_caller_edited():
    # before: solve_lp kept the very result it returned, and LPSchedule reused it: a caller who
    # rounded its own result changed lp_schedule's cost (34362.6 -> 34566.7)
    from servopt.benchmarks import caching as cb
    from servopt.instances import caching as gen
    from servopt.solvers import caching as cs

    inst = gen.generate(requests=2000, seed=3)
    fresh = cb.evaluate(inst, cs.LPSchedule()).cost
    lp = cs.solve_lp(inst)
    lp.keep[:] = 0
    assert cb.evaluate(inst, cs.LPSchedule()).cost == fresh


def test_a_group_bound_whose_budget_is_spent_at_once_is_a_stopped_lp_not_a_bad_limit():
    # before: InvalidInstanceError "time_limit must be positive ..., got -4.4e-06"
    from servopt.benchmarks import batch_scheduling as bb
    from servopt.instances import batch_scheduling as gen

    bound = bb.bound(gen.generate(n=30, seed=0), method="group", time_limit=1e-9)
    assert bound.kind == "lower_bound" and "LP relaxation did not finish" in bound.status


def test_a_cli_number_beyond_a_float_is_refused_by_name(tmp_path, capsys):
    # before: "requests must be a positive number of requests, got inf"
    assert main(["generate", "batch_scheduling", "requests=1e400", "-o",
                 str(tmp_path / "x.json")]) == 2
    assert "requests=1e400: 1e400 is beyond any number" in capsys.readouterr().err


def test_a_spent_budget_stops_highs_at_once_instead_of_lifting_its_limit():
    # R26: HiGHS refuses a negative time_limit and keeps its own (none): a batch IP bound called
    # with time_limit=1e-9 reached HiGHS with a spent (negative) budget and ran for minutes
    from servopt.instances import batch_scheduling as gen
    from servopt.models import batch_scheduling as bmodel
    from servopt.solvers import batch_scheduling as rules

    inst = gen.generate(10, seed=0)
    lp_data = bmodel.build_matrix(inst)
    highs = rules._highs_problem(inst, lp_data, integer=True, time_limit=-0.5)
    value = highs.getOptionValue("time_limit")  # (status, value) in some highspy versions
    assert (value[1] if isinstance(value, tuple) else value) == 0.0
