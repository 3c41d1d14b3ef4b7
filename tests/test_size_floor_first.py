"""A batch model certainly too large is told from an O(n) size floor, before any greedy plan;
a Case refuses negative seeds when it is built, not task by task at run time."""
import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.registry import Case
from servopt.core.errors import InvalidInstanceError
from servopt.instances import batch_scheduling as inst_mod
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def _no_greedy(*args, **kwargs):
    raise AssertionError("the greedy plan ran")


def test_auto_bound_of_a_large_offline_instance_is_the_area_bound_without_a_greedy_plan(monkeypatch):
    instance = inst_mod.generate(n=1000, seed=0)
    expected = model.area_bound(model.from_first_arrival(instance)[0])  # the same closed form
    monkeypatch.setattr(model, "greedy_schedule", _no_greedy)
    monkeypatch.setattr(model, "lookahead_schedule", _no_greedy)
    found = bench.bound(instance, max_columns=10_000)
    assert found.value == expected
    assert found.kind == "lower_bound"
    assert "model too large (at least" in found.status


def test_size_floor_never_exceeds_the_counted_size():
    # the floor decides alone only when it is over a limit: it must never be above the exact count
    for arrivals in ("offline", "poisson"):
        for seed in range(3):
            instance = inst_mod.generate(n=60, arrivals=arrivals, seed=seed)
            window = None if instance.offline else 64
            _, columns, entries = model.size_lower_bound(instance, None, window)
            _, exact_columns, exact_entries = model.model_size(instance, None, window)
            assert columns <= exact_columns and entries <= exact_entries


def test_auto_bound_of_a_model_that_fits_is_unchanged_by_the_floor():
    instance = inst_mod.generate(n=12, seed=1)
    found = bench.bound(instance, max_columns=400_000)
    assert found.status is None or "too large" not in str(found.status)
    assert found.kind == "lp_relaxation"  # the LP ran: the floor did not refuse a model that fits


def test_lp_too_large_answers_from_the_floor_without_a_greedy_plan(monkeypatch):
    instance = inst_mod.generate(n=1000, seed=0)
    monkeypatch.setattr(model, "greedy_schedule", _no_greedy)
    monkeypatch.setattr(model, "lookahead_schedule", _no_greedy)
    assert rules.lp_too_large(instance, 10_000, 1_000_000)


def test_lp_too_large_still_counts_exactly_when_the_floor_fits():
    instance = inst_mod.generate(n=20, seed=0)
    _, columns, entries = model.model_size(instance)
    assert not rules.lp_too_large(instance, columns, entries)
    assert rules.lp_too_large(instance, columns - 1, entries)


@pytest.mark.parametrize("seeds", [(-1,), (0, -3)])
def test_case_refuses_negative_seeds_when_built(seeds):
    with pytest.raises(InvalidInstanceError, match=r"seeds must be whole numbers >= 0"):
        Case(name="mine", decision="batch_scheduling", seeds=seeds)
