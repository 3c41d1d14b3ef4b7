"""relative_gap's tolerance scales with the numbers (audit R7: an absolute floor of 1e-9 called
every gap 0 once costs were in units of 1e-12, and hid rows below the bound)."""

from __future__ import annotations

import dataclasses
import math

import pytest

import servopt
from servopt.benchmarks.harness import Bound, Outcome, outcome_row
from servopt.core.solution import Solution, relative_gap
from servopt.instances import caching as c


@pytest.mark.parametrize("scale", [1e-12, 1e-300, 1.0, 1e12])
def test_a_gap_is_the_same_in_any_unit(scale):
    # by hand: 3 against a bound of 2.7 is 0.3 / 2.7 = 1/9 over (min), 2.7 under 3 the same (max)
    assert relative_gap(3.0 * scale, 2.7 * scale) == pytest.approx(1 / 9)
    assert relative_gap(2.7 * scale, 3.0 * scale, "max") == pytest.approx(0.1)
    # below the bound: negative, not 0 (the old floor called 2.5e-12 against 2.7e-12 equal)
    assert relative_gap(2.5 * scale, 2.7 * scale) == pytest.approx(-0.2 / 2.7)
    # solver noise (1e-12 of the value) is still 0
    assert relative_gap(2.7 * scale * (1 + 1e-12), 2.7 * scale) == 0.0


def test_zero_and_infinite_bounds():
    assert relative_gap(0.0, 0.0) == 0.0 == relative_gap(-0.0, 0.0, "max")  # exactly equal
    assert relative_gap(1e-300, 0.0) == math.inf  # any difference from a bound of 0
    assert relative_gap(0.0, 1e-300) == -1.0  # 0 below a bound of 1e-300: -100%
    assert relative_gap(4.0, -math.inf) == math.inf
    # an infinite value against a finite bound (the tolerance, relative to the value, is inf)
    assert relative_gap(math.inf, 5.0) == math.inf and relative_gap(-math.inf, 5.0) == -math.inf


def test_a_tiny_run_below_its_bound_is_flagged():
    row = outcome_row("m", Outcome(cost=2.5e-12, wall_s=0.0), Bound(2.7e-12, "lower_bound"), "min")
    assert row["status"] == "below_bound" and row["gap"] == pytest.approx(-0.2 / 2.7)


def test_gap_table_in_tiny_cost_units_matches_the_table_in_plain_units():
    # audit R7: belady, belady_size and lp_schedule showed 0.000 at miss costs x 1e-12 instead of
    # 0.101, 0.084, 0.063. Expected: each row's (cost - bound) / bound in plain units
    inst = c.generate(requests=300, objects=60, seed=1)
    plain = servopt.gap_table(inst)
    tiny = servopt.gap_table(dataclasses.replace(inst, miss_cost=inst.miss_cost * 1e-12))
    by_hand = (plain["cost"] - plain["bound"]) / plain["bound"]
    assert tiny["method"].tolist() == plain["method"].tolist()
    assert tiny["gap"].to_numpy() == pytest.approx(by_hand.to_numpy(), rel=1e-6)
    gap = dict(zip(tiny["method"], tiny["gap"], strict=True))
    assert (round(gap["belady"], 3), round(gap["belady_size"], 3),
            round(gap["lp_schedule"], 3)) == (0.101, 0.084, 0.063)


def test_a_solution_saved_with_the_old_zero_gap_still_loads(tmp_path):
    # files written before the tolerance was relative carry gap 0 where |objective - bound|
    # <= 1e-9; they are not "edited", while another wrong gap still is
    old = Solution(status="optimal", objective=3e-12, bound=2.7e-12, gap=0.0, wall_s=0.0)
    assert Solution.load(old.save(tmp_path / "old")).gap == 0.0
    new = dataclasses.replace(old, gap=relative_gap(3e-12, 2.7e-12))
    assert Solution.load(new.save(tmp_path / "new")).gap == pytest.approx(1 / 9)
    edited = dataclasses.replace(old, gap=0.5)
    with pytest.raises(servopt.core.InvalidInstanceError, match="the file was edited"):
        Solution.load(edited.save(tmp_path / "edited"))


def test_a_solution_saved_with_the_old_sign_below_a_zero_bound_still_loads(tmp_path):
    # before 2ff6719 a value below a bound of 0 had gap +inf; it is -inf now (the sign of value -
    # bound). A file saved then loads; +inf where the value is above the bound is still its gap
    old = Solution(status="optimal", objective=-5.0, bound=0.0, gap=math.inf, wall_s=0.0)
    assert Solution.load(old.save(tmp_path / "old")).gap == math.inf
    above = dataclasses.replace(old, objective=5.0)
    assert Solution.load(above.save(tmp_path / "above")).gap == math.inf
    edited = dataclasses.replace(above, gap=-math.inf)
    with pytest.raises(servopt.core.InvalidInstanceError, match="the file was edited"):
        Solution.load(edited.save(tmp_path / "edited"))
