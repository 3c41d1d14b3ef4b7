"""The runner's gap flag and capacity's plan check do not trust what they are given (audit R11).

Each test names the hole it closes; every one failed on the code before the fix.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from servopt.benchmarks import runner as runner_mod
from servopt.benchmarks.harness import Bound, Outcome, flag_below_bound, outcome_row
from servopt.core import InvalidInstanceError
from servopt.core.solution import relative_gap


def _rows(methods_per_task):
    """Runner rows of one task (case c, params {}, seed 0): a bound of 100 and the methods' costs."""
    base = {"case": "c", "decision": "batch_scheduling", "params": "{}", "seed": 0,
            "instance": "i", "wall_s": 0.0}
    rows = [{**base, "method": runner_mod.BOUND, "cost": math.nan, "bound": 100.0,
             "bound_kind": "lp_relaxation", "status": "ok"}]
    rows += [{**base, "method": m, "cost": c, "status": "ok"} for m, c in methods_per_task]
    return rows


# ---------------------------------------------------------------------------------------------
# 5. a cost below a bound of 0 is below the bound
# ---------------------------------------------------------------------------------------------
def test_a_cost_below_a_zero_bound_is_flagged():
    # before: relative_gap(-5, 0) was +inf and the run was "ok"
    assert relative_gap(-5.0, 0.0) == -math.inf and relative_gap(5.0, 0.0) == math.inf
    assert relative_gap(5.0, 0.0, "max") == -math.inf and relative_gap(-5.0, 0.0, "max") == math.inf
    # a finite cost under a min bound of +inf (no feasible schedule) is below it too
    assert relative_gap(4.0, math.inf) == -math.inf and relative_gap(4.0, -math.inf) == math.inf
    assert flag_below_bound(-math.inf, "ok") == "below_bound"
    assert flag_below_bound(math.inf, "ok") == "ok"
    row = outcome_row("m", Outcome(cost=-5.0, wall_s=0.0), Bound(0.0, "lower_bound"), "min")
    assert row["status"] == "below_bound" and row["gap"] == -math.inf
    above = outcome_row("m", Outcome(cost=12.0, wall_s=0.0), Bound(0.0, "lower_bound"), "max")
    assert above["status"] == "below_bound"  # (a max decision: 12 beats an upper bound of 0)
    # within the tolerance of a bound of 0 means exactly 0: -0.0 is not below it
    assert outcome_row("m", Outcome(cost=-0.0, wall_s=0.0), Bound(0.0, "lower_bound"),
                       "min")["status"] == "ok"


def test_the_runner_flags_a_cost_below_a_zero_bound():
    rows = _rows([("fcfs", -5.0)])
    rows[0]["bound"] = 0.0
    out = runner_mod.assemble(rows)
    assert out.loc[0, "gap"] == -math.inf and out.loc[0, "status"] == "below_bound"


# ---------------------------------------------------------------------------------------------
# 6. capacity: a plan's predicted rate is a number
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cap_inst():
    from servopt.instances import capacity

    return capacity.generate(seed=0)


@pytest.mark.parametrize("rate", ["fast", -1.0, math.inf, True, None, [3.0]])
def test_capacity_refuses_a_predicted_rate_that_is_not_a_rate(cap_inst, rate):
    from servopt.benchmarks import capacity as bench
    from servopt.solvers.capacity import Plan

    def my_plan(instance, observe):
        return Plan(100, max_stable_rate=rate)

    # before: 'fast' went into the row's predicted_rate, status ok
    with pytest.raises(InvalidInstanceError, match=r"capacity method 'my_plan': the plan's "
                                                   r"max_stable_rate must be a number"):
        bench.evaluate(cap_inst, my_plan, n_requests=1000)


def test_capacity_takes_a_rate_or_none(cap_inst):
    from servopt.benchmarks import capacity as bench
    from servopt.solvers.capacity import Plan

    given = bench.evaluate(cap_inst, lambda i, o: Plan(100, max_stable_rate=np.float32(12.5)),
                           n_requests=1000)
    assert given.metrics["predicted_rate"] == 12.5 and type(given.metrics["predicted_rate"]) is float
    none = bench.evaluate(cap_inst, lambda i, o: Plan(100), n_requests=1000)  # NaN: "none"
    assert math.isnan(none.metrics["predicted_rate"])
