"""Capacity at the edges of its ranges: the derivatives of the usable KV near the 1e12 magnitude
limit, the fluid LP at any scale of the times and of the token counts, KV footprints past int64.

References: hand values (usable KV M' = M - L when KV is not the first resource to saturate),
differences taken through the public constructor on the valid side of a limit, Python's exact
integers, the closed-form planning rule (``plan``: no LP), and the same instance at scale 1.
"""

from __future__ import annotations

import numpy as np
import pytest

import servopt
from servopt.core.instance import MAX_MAGNITUDE
from servopt.instances import capacity as ci
from servopt.models import capacity as cm
from servopt.solvers import capacity as cs

LENGTHS = dict(prompt_tokens=[100, 200, 300], output_tokens=[10, 20, 30])


# ---------------------------------------------------------------------------------------------
# finding 5: the forward differences of M' must not leave the constructor's range
# ---------------------------------------------------------------------------------------------
def test_usable_kv_derivatives_of_a_huge_worker_are_the_hand_values():
    # M = 999.5e9: +0.1% is past 1e12, which the constructor refuses (fluid_lp and gap_table
    # raised InvalidInstanceError blaming kv_tokens). KV does not saturate first here (slots bind),
    # so M' = M - L with L = E[s^2] / (2 E[s]) = (1e4 + 4e4 + 9e4) / 3 / 400 = 116.67 tokens:
    # dM'/dM = 1 and dM'/dd0 = 0 by hand
    inst = ci.Instance(**LENGTHS, arrival_rate=5.0, kv_tokens=999_500_000_000)
    assert inst.kv_tokens * 1.001 > MAX_MAGNITUDE
    assert cm.bounds(inst).binding == "slots"
    hol = (1e4 + 4e4 + 9e4) / 3 / (2 * 200)
    assert cm.bounds(inst).usable_kv_tokens == pytest.approx(999_500_000_000 - hol, abs=1e-3)
    assert cm.usable_kv_slope(inst) == pytest.approx(1.0, rel=1e-9)
    assert cm.usable_kv_per_overhead(inst) == pytest.approx(0.0, abs=1e-9)
    # and the LP's plan, which prices M through both, is the closed-form rule's
    lp, rule = cs.fluid_lp(inst), cs.plan(inst)
    assert lp.max_stable_rate == pytest.approx(rule.max_stable_rate, rel=1e-9)
    assert (lp.workers, lp.binding) == (rule.workers, rule.binding)


def _kv_first_at_the_limit(**worker) -> ci.Instance:
    # prompts of 1e11-3e11 and outputs of 2e11-4e11 tokens on a worker of 1e12 KV tokens: KV
    # is the first resource to saturate (preemptions and recomputation move M' with M and d0)
    return ci.Instance(prompt_tokens=[10**11, 2 * 10**11, 3 * 10**11],
                       output_tokens=[4 * 10**11, 3 * 10**11, 2 * 10**11],
                       arrival_rate=1e-6, kv_tokens=10**12, **worker)


def test_usable_kv_slope_at_the_kv_limit_matches_a_difference_on_the_valid_side():
    inst = _kv_first_at_the_limit()
    bounds = cm.bounds(inst)
    assert bounds.binding == "memory" and bounds.usable_kv_tokens < inst.kv_tokens
    step = round(1e-3 * inst.kv_tokens)
    below = inst.with_(kv_tokens=inst.kv_tokens - step)  # through the constructor: valid
    backward = (bounds.usable_kv_tokens - cm.bounds(below).usable_kv_tokens) / step
    assert 0.5 < backward < 1.0
    assert cm.usable_kv_slope(inst) == pytest.approx(backward, rel=1e-3)
    # the marginal values come out, in the LP and in the rule, and agree
    sol = servopt.solve(inst)
    lp, rule = cs.plan_from_solution(inst, sol), cs.plan(inst)
    assert lp.binding == rule.binding == "memory"
    assert lp.price == pytest.approx(rule.price, rel=1e-6)
    assert lp.max_stable_rate == pytest.approx(rule.max_stable_rate, rel=1e-9)


def test_usable_kv_per_overhead_at_the_overhead_limit_matches_a_difference_on_the_valid_side():
    inst = _kv_first_at_the_limit(step_overhead_s=MAX_MAGNITUDE, per_token_s=5e9)
    assert cm.bounds(inst).binding == "memory"
    d0, step = inst.step_overhead_s, 1e-3 * inst.step_overhead_s
    below = inst.with_(step_overhead_s=d0 - step)
    backward = (cm.bounds(inst).usable_kv_tokens - cm.bounds(below).usable_kv_tokens) / step
    assert backward > 0
    assert cm.usable_kv_per_overhead(inst) == pytest.approx(backward, rel=2e-2)
    values = cm.marginal_values(servopt.solve(inst), inst)
    assert np.isfinite(values.to_numpy()).all()


# ---------------------------------------------------------------------------------------------
# finding 6: the fluid LP at any scale of the times
# ---------------------------------------------------------------------------------------------
SCALES = [1e-12, 1e-10, 1e-8, 1e-6, 1e-3, 1.0, 1e3, 1e6]


def _scaled(scale: float, **changes) -> ci.Instance:
    """The same worker with every time x scale (d0, d1) and the fleet rate / scale: the same
    fleet size, every rate / scale."""
    fields = dict(LENGTHS, arrival_rate=0.9, kv_tokens=10_000, step_overhead_s=0.012,
                  per_token_s=6e-5)
    fields.update(changes)
    fields.update(arrival_rate=fields["arrival_rate"] / scale,
                  step_overhead_s=fields["step_overhead_s"] * scale,
                  per_token_s=fields["per_token_s"] * scale)
    return ci.Instance(**fields)


@pytest.mark.parametrize("backend", ["pyomo", "cvxpy"])
def test_fluid_lp_gives_the_same_answer_at_every_time_scale(backend):
    # at 1e-8 and below the LP came back "unbounded" (HiGHS dropped the busy-time coefficients)
    base = servopt.solve(_scaled(1.0), backend=backend)
    base_values = cm.marginal_values(base, _scaled(1.0))
    for scale in SCALES:
        inst = _scaled(scale)
        sol = servopt.solve(inst, backend=backend)
        assert sol.status == "optimal", scale
        # rates scale as 1 / time: the scale-1 LP and the closed-form rule (no LP)
        assert sol.objective * scale == pytest.approx(base.objective, rel=1e-9), scale
        assert sol.objective == pytest.approx(cs.plan(inst).max_stable_rate, rel=1e-9), scale
        assert sol.decisions["theta"].iloc[0] == pytest.approx(sol.objective, rel=1e-9)
        assert sol.decisions["r"].iloc[0] * scale == pytest.approx(
            base.decisions["r"].iloc[0], rel=1e-6), scale
        # prices in their units: busy time (= theta) as 1 / time, the rest scale-free;
        # elasticities are pure numbers
        assert sol.prices["busy_time"].iloc[0] * scale == pytest.approx(
            base.prices["busy_time"].iloc[0], rel=1e-6), scale
        for row in ("kv_memory", "token_budget", "batch_slots"):
            assert sol.prices[row].iloc[0] == pytest.approx(base.prices[row].iloc[0], rel=1e-6,
                                                            abs=1e-15), (scale, row)
        values = cm.marginal_values(sol, inst)
        for key in ("kv_token", "token_budget", "batch_slot", "step_overhead_ms"):
            elasticity = f"{key}_elasticity"
            assert values[elasticity] == pytest.approx(base_values[elasticity], rel=1e-6,
                                                       abs=1e-12), (scale, key)
        plan = cs.plan_from_solution(inst, sol)
        assert (plan.workers, plan.binding) == (cs.plan(inst).workers, cs.plan(inst).binding)


@pytest.mark.parametrize("scale", [1e-12, 1e6])
def test_fluid_lp_at_extreme_time_scales_in_each_regime(scale):
    # slots, compute and (no step overhead) memory binding, each at both ends of the time scale
    for changes in ({"kv_tokens": 2_000_000}, {"kv_tokens": 2_000_000, "batch_cap": 1024,
                                                "token_budget": 2048},
                    {"step_overhead_s": 0.0}, {"per_token_s": 0.0}):
        inst, ref = _scaled(scale, **changes), _scaled(1.0, **changes)
        assert servopt.solve(inst).objective * scale == pytest.approx(
            servopt.solve(ref).objective, rel=1e-9), changes
        assert cs.fluid_lp(inst).workers == cs.plan(inst).workers, changes


def test_fluid_lp_when_the_token_time_is_a_tiny_share_of_a_long_iteration():
    # s = o = 1 (w = n = g = 1), b = B = C = 1e12, d0 = 1 s, d1 = 1e-12 s: an iteration of 1e12
    # tokens takes 2 s, so by hand mu = 1e12 / 2 = 5e11 req/s (compute, slots and memory all
    # give it; M' = M - L = 1e12 - 0.5). Written in seconds, d1 w = 1e-12 fell below HiGHS's
    # 1e-9 and the LP answered 1e12 (the busy-time row lost its token term)
    inst = ci.Instance(prompt_tokens=[1, 1], output_tokens=[1, 1], arrival_rate=1.0,
                       kv_tokens=10**12, token_budget=10**12, batch_cap=10**12,
                       prefill_chunk=10**12, step_overhead_s=1.0, per_token_s=1e-12)
    for backend in ("pyomo", "cvxpy"):
        assert servopt.solve(inst, backend=backend).objective == pytest.approx(5e11, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# token counts near the magnitude limit
# ---------------------------------------------------------------------------------------------
def test_kv_footprint_past_int64_is_the_exact_integer_value():
    # P s = ceil(1e11 / 512) x 1e11 = 1.95e19 > 2**63: int64 arithmetic wrapped to a negative
    s, o, chunk = [10**11, 5 * 10**11, 7], [10**9, 3 * 10**11, 5], 512
    for reserve in ("admission", "chunks"):
        got = cm.kv_footprint(s, o, chunk, reserve=reserve)
        for k in range(len(s)):
            p = -(-s[k] // chunk)
            prefill = p * s[k] if reserve == "admission" else chunk * (p - 1) * p // 2 + s[k]
            exact = prefill + (o[k] - 1) * s[k] + o[k] * (o[k] - 1) // 2  # Python integers
            assert got[k] == pytest.approx(float(exact), rel=1e-15), (reserve, k)


@pytest.mark.parametrize("backend", ["pyomo", "cvxpy"])
def test_fluid_lp_with_prompts_of_1e11_tokens(backend):
    # KV coefficients of 1e21 token-iterations per request (past HiGHS's 1e15 matrix limit, and
    # int64 wrapped them): the LP answered "unbounded". The rule needs no LP
    inst = ci.Instance(prompt_tokens=[10**11, 5 * 10**10], output_tokens=[10, 10**9],
                       arrival_rate=5.0, kv_tokens=10**12)
    sol = servopt.solve(inst, backend=backend)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(cs.plan(inst).max_stable_rate, rel=1e-9)
    assert cs.plan_from_solution(inst, sol).workers == cs.plan(inst).workers
