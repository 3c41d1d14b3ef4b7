"""The library manifest's bounds are the best the project can prove cheaply, not whatever a loose
solve happened to stop at.

``bs_offline_15`` recorded bound 237 (HiGHS stopped at mip_gap 0.01) while a default solve proves
its optimum 239 in seconds; ``dr_hindsight_20x3`` (mip_gap 0.01) and ``cache_mm_5k`` (the interval
LP only) recorded bounds below what a default solve proves in well under 30 s.
"""

from __future__ import annotations

import pytest

from servopt.benchmarks import library as lib_bench
from servopt.benchmarks.build_library import SPECS
from servopt.instances import library
from servopt.solvers import exact

VERIFIED = library.names(sizes=("small", "medium"))  # what `servopt library verify` re-solves


def _proved(name: str, **options) -> tuple[float, float, str]:
    """(incumbent, proved bound, sense) of a default solve (mip_gap 1e-4) of a library instance."""
    solution = exact.solve(library.load(name), prices=False, **options)
    return solution.objective, solution.bound, solution.sense


def _at_least_as_tight(recorded: float | None, proved: float, sense: str) -> bool:
    """A recorded (min: lower, max: upper) bound no weaker than ``proved``, to 1e-7 relative."""
    assert recorded is not None
    slack = 1e-7 * max(1.0, abs(proved))
    return recorded >= proved - slack if sense == "min" else recorded <= proved + slack


def test_bs_offline_15_records_its_proved_optimum():
    """A default solve proves 239 (about 6 s on one shared core): the manifest says so."""
    objective, bound, sense = _proved("bs_offline_15")
    assert sense == "min" and bound == pytest.approx(239.0, abs=1e-6)  # the batch's whole rounds
    entry = library.entry("bs_offline_15")
    assert entry.bound_kind == "optimal"
    assert _at_least_as_tight(entry.bound, bound, sense), (entry.bound, bound)
    assert entry.objective == pytest.approx(objective, rel=1e-9)


def test_every_spec_is_in_the_manifest_with_the_options_it_was_solved_with():
    """build_library's specs and the manifest agree: an entry refreshed by hand (or a spec changed
    without a rebuild) shows here, not as a bound nobody can reproduce."""
    entries = library.read_manifest()
    assert sorted(entries) == sorted(spec[0] for spec in SPECS)
    for name, size, decision, *_, solve_kw, obtained in SPECS:
        entry = entries[name]
        assert (entry.size, entry.decision, entry.solve) == (size, decision, solve_kw), name
        assert entry.obtained.startswith(obtained), name


@pytest.mark.slow
@pytest.mark.parametrize("name", VERIFIED)
def test_no_verified_bound_is_weaker_than_a_ten_second_default_solve(name):
    """The manifests's bound of each instance `library verify` checks is at least what a default
    solve (the integer model, mip_gap 1e-4) proves in 10 s. (The entries were built with 30 s or
    more of solving; 10 s leaves room for a faster machine.)"""
    _, bound, sense = _proved(name, time_limit=10)
    recorded = library.entry(name).bound
    assert _at_least_as_tight(recorded, bound, sense), f"{name}: manifest {recorded}, proved {bound}"


def test_verify_compares_a_stopped_mips_interval_not_its_numbers():
    """What `library verify` checks for a mip_bound entry (the refreshed ones): the re-solved
    [bound, incumbent] overlaps the recorded one; by hand on the recorded dr_hindsight_20x3."""
    entry = library.entry("dr_hindsight_20x3")
    assert entry.bound_kind == "mip_bound" and entry.bound < entry.objective
    inside = (entry.bound + entry.objective) / 2
    assert lib_bench.check(entry, entry.objective + 40.0, entry.bound - 5.0, 1e-5)[0]  # looser
    assert lib_bench.check(entry, inside, inside, 1e-5)[0]
    assert not lib_bench.check(entry, entry.bound - 1.0, entry.bound - 2.0, 1e-5)[0]  # below
