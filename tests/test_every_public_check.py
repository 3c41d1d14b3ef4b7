"""Every built-in decision's public evaluate and bound carry their option checks (R18: a helper
inserted between batch's @checked_keywords and `def bound` took the decorator, and bound lost
every check with no test noticing); batch's bound refuses each bad option value by name before
any work."""
import pytest

from servopt.benchmarks import batch_scheduling as batch_bench
from servopt.benchmarks.harness import OptionError, benchmark_module
from servopt.core.registry import DECISIONS
from servopt.instances import batch_scheduling as batch_gen
from servopt.models import batch_scheduling as batch_model


@pytest.mark.parametrize("decision", DECISIONS)
@pytest.mark.parametrize("public", ["evaluate", "bound"])
def test_the_public_function_checks_its_option_values(decision, public):
    func = getattr(benchmark_module(decision), public)
    assert callable(getattr(func, "check_options", None)), f"{decision}.{public} lost its checks"
    assert func.checks_values, f"{decision}.{public} checks keywords but not values"


@pytest.mark.parametrize("options, option", [
    ({"method": "bogus"}, "method"),
    ({"method": "area", "time_limit": -1}, "time_limit"),  # refused whichever method reads it
    ({"horizon": "x"}, "horizon"),
    ({"window": True}, "window"),
    ({"group_size": 0}, "group_size"),
    ({"bucket": 0}, "bucket"),
    ({"penalty": 2.0}, "penalty"),
    ({"max_columns": 2.5}, "max_columns"),
])
def test_batch_bound_refuses_before_any_greedy_plan(options, option, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work ran before the option check")

    monkeypatch.setattr(batch_model, "greedy_schedule", no_work)
    monkeypatch.setattr(batch_model, "area_bound", no_work)
    with pytest.raises(OptionError) as refused:
        batch_bench.bound(batch_gen.generate(n=12, arrivals="poisson", seed=0), **options)
    assert refused.value.option == option


@pytest.mark.parametrize("options", [{"horizon": "safe"}, {"window": None}, {"window": 0},
                                     {"method": "coarse", "bucket": 3, "penalty": 0.5}])
def test_batch_bound_accepts_valid_values(options):
    batch_bench.bound.check_options(**options)
