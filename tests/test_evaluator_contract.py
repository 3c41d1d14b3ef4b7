"""gap_table holds a plug-in evaluator to the contract (R16): what it returns must be an Outcome
(a row that says so otherwise, not an AttributeError out of gap_table), a bound a Bound, an ok
cost a number; a max-sense
decision's run above its upper bound is flagged above_bound."""
import math
import types

import pytest

from servopt.benchmarks import caching as caching_bench
from servopt.benchmarks.harness import Bound, Outcome, gap_table
from servopt.core.registry import register_decision, unregister_decision
from servopt.instances import caching

INSTANCE = caching.generate(requests=200, objects=40, seed=0)


def _with(evaluate=None, bound=None, sense="min"):
    register_decision("caching", replace=True, benchmarks=types.SimpleNamespace(
        evaluate=evaluate or caching_bench.evaluate, bound=bound or caching_bench.bound,
        SENSE=sense))


@pytest.fixture(autouse=True)
def _restore():
    yield
    unregister_decision("caching")


def test_an_evaluator_returning_a_number_gives_an_error_row_naming_it():
    _with(evaluate=lambda instance, method, **kw: 5.0)
    with pytest.warns(RuntimeWarning):
        table = gap_table(INSTANCE, ["lru"])
    assert table.loc[0, "status"].startswith("error: TypeError: the caching evaluator returned float")
    assert math.isnan(table.loc[0, "cost"])


def test_a_bound_returning_a_number_is_a_type_error_naming_it():
    _with(bound=lambda instance, **kw: 3.0)
    with pytest.raises(TypeError, match="the caching bound returned float, not a"):
        gap_table(INSTANCE, ["lru"])


@pytest.mark.parametrize("status", ["ok", "optimal"])
def test_an_ok_outcome_without_a_cost_is_an_error_row(status):
    _with(evaluate=lambda instance, method, **kw: Outcome(cost=math.nan, wall_s=0.0, status=status))
    with pytest.warns(RuntimeWarning):
        table = gap_table(INSTANCE, ["lru"])
    assert f"cost nan with status {status}" in table.loc[0, "status"]


@pytest.mark.parametrize("fields", [{"cost": "12"}, {"cost": None, "status": "timeout"},
                                    {"cost": True}, {"wall_s": None}, {"status": None}])
def test_an_outcome_whose_fields_are_not_numbers_and_text_is_an_error_row(fields):
    # R18: cost None with status timeout, text costs and wall_s None were bare TypeErrors out
    # of gap_table (its float() calls), losing every row
    given = {"cost": 1.0, "wall_s": 0.0, "status": "ok", **fields}
    _with(evaluate=lambda instance, method, **kw: Outcome(**given))
    with pytest.warns(RuntimeWarning):
        table = gap_table(INSTANCE, ["lru", "fifo"])
    assert table["status"].str.startswith("error: TypeError: the caching evaluator reported").all()


def test_an_outcome_not_ok_may_carry_no_cost():
    _with(evaluate=lambda instance, method, **kw: Outcome(cost=math.nan, wall_s=0.0, status="unstable"))
    table = gap_table(INSTANCE, ["lru"])
    assert table.loc[0, "status"] == "unstable"


def test_a_max_decision_above_its_upper_bound_is_flagged_above_bound():
    _with(evaluate=lambda instance, method, **kw: Outcome(cost=12.0, wall_s=0.0),
          bound=lambda instance, **kw: Bound(10.0, "lower_bound"), sense="max")
    table = gap_table(INSTANCE, ["lru"])
    assert table.loc[0, "gap"] == pytest.approx(-0.2)  # (10 - 12) / 10
    assert table.loc[0, "status"] == "above_bound"


def test_the_runner_flags_a_max_decision_above_its_upper_bound_too(tmp_path):
    from servopt.benchmarks import runner
    from servopt.benchmarks.registry import Case

    _with(evaluate=lambda instance, method, **kw: Outcome(cost=12.0, wall_s=0.0),
          bound=lambda instance, **kw: Bound(10.0, "lower_bound"), sense="max")
    case = Case(name="contract_max", decision="caching", grid=({"requests": 200, "objects": 40},),
                methods=("lru",))
    frame = runner.run([case], cache_dir=tmp_path / "cache", progress=False)
    assert frame.loc[0, "status"] == "above_bound"


def test_metrics_that_are_not_a_dict_are_an_error_row():
    # R19: Outcome(metrics=None) was a bare AttributeError out of gap_table
    _with(evaluate=lambda instance, method, **kw: Outcome(cost=1.0, metrics=None, wall_s=0.0))
    with pytest.warns(RuntimeWarning):
        table = gap_table(INSTANCE, ["lru"])
    assert table.loc[0, "status"].startswith("error: TypeError: the caching evaluator reported metrics")


@pytest.mark.parametrize("fields", [{"value": None}, {"value": "12"}, {"wall_s": None}])
def test_a_bound_whose_value_or_time_is_not_a_number_is_a_type_error_naming_it(fields):
    # R19: Bound(None) and Bound(wall_s=None) were bare TypeErrors, Bound("12") was taken as 12
    given = {"value": 10.0, "kind": "lower_bound", "wall_s": 0.0, **fields}
    _with(bound=lambda instance, **kw: Bound(**given))
    with pytest.raises(TypeError, match="the caching bound returned"):
        gap_table(INSTANCE, ["lru"])


def test_an_optimal_run_that_beats_the_bound_is_flagged():
    # R19: an 'optimal' cost is measured as an 'ok' one is: below the bound it is flagged
    _with(evaluate=lambda instance, method, **kw: Outcome(cost=8.0, wall_s=0.0, status="optimal"),
          bound=lambda instance, **kw: Bound(10.0, "lower_bound"))
    assert gap_table(INSTANCE, ["lru"]).loc[0, "status"] == "below_bound"
