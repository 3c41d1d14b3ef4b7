"""API contract: solver options are checked by name (never refused silently by HiGHS, which then
kept the previous call's setting), and no option leaks from one call into the next."""

from __future__ import annotations

import math

import pytest

from servopt.benchmarks import caching as bc
from servopt.benchmarks import decode_routing as bd
from servopt.core.errors import InvalidInstanceError
from servopt.instances import caching as ic
from servopt.instances import decode_routing as idr
from servopt.solvers import decode_routing as routing

BAD_LIMITS = [-1.0, 0, 0.0, math.nan, -math.inf, "5", True]
BAD_GAPS = [-1.0, math.nan, 1.0, 2.0, "0.1"]


@pytest.fixture(scope="module")
def steps() -> idr.Instance:
    return idr.generate_steps(requests=6, workers=2)  # hindsight IP: ~0.6 s to the default gap


@pytest.mark.parametrize("bad", BAD_LIMITS)
def test_decode_bound_refuses_bad_time_limit(steps: idr.Instance, bad: object) -> None:
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bd.bound(steps, time_limit=bad)


@pytest.mark.parametrize("bad", BAD_GAPS)
def test_decode_bound_refuses_bad_mip_gap(steps: idr.Instance, bad: object) -> None:
    with pytest.raises(InvalidInstanceError, match="mip_gap"):
        bd.bound(steps, mip_gap=bad)


def test_decode_bound_options_do_not_leak(steps: idr.Instance) -> None:
    """A loose gap, then a refused one, then the default: the last is proved optimal (the old code
    ran mip_gap=-1 at the previous call's 0.5 and returned its bound as if proved)."""
    loose = bd.bound(steps, time_limit=60, mip_gap=0.5)
    with pytest.raises(InvalidInstanceError, match="mip_gap"):
        bd.bound(steps, time_limit=60, mip_gap=-1)
    again = bd.bound(steps, time_limit=60)
    assert again.kind == "optimal"
    assert again.value >= loose.value - 1e-9 * abs(loose.value)
    # no limit spelled as infinity or None: the same proved optimum
    assert bd.bound(steps, time_limit=math.inf).value == pytest.approx(again.value, rel=1e-9)
    assert bd.bound(steps, time_limit=None).value == pytest.approx(again.value, rel=1e-9)


def test_solve_matrix_and_epoch_ip_refuse_bad_options() -> None:
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        routing.EpochIP(time_limit=-1)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        routing.EpochIP(time_limit=math.nan)
    routing.EpochIP(time_limit=None)  # no limit


@pytest.mark.parametrize("bad", [-1.0, 0, math.nan, "10"])
def test_caching_bound_refuses_bad_time_limit(bad: object) -> None:
    inst = ic.generate(requests=50, objects=10, seed=0)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bc.bound(inst, time_limit=bad)
    # no limit: the same LP value as the default
    assert bc.bound(inst, time_limit=math.inf).value == pytest.approx(bc.bound(inst).value)


# --- batch scheduling: the hindsight search stops only at its time limit -----------------------
@pytest.mark.parametrize("bad", [None, math.inf, math.nan, 0, -1.0, "3", True])
def test_hindsight_refuses_a_limit_it_cannot_stop_at(bad: object) -> None:
    """None used to fail deep in prepare (None * 3 / 4) and NaN or infinity looped forever."""
    from servopt.solvers import batch_scheduling as bs

    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bs.Hindsight(time_limit=bad)


@pytest.mark.parametrize("bad", [None, math.inf, math.nan, 0])
def test_searches_refuse_a_limit_they_cannot_stop_at(bad: object) -> None:
    from servopt.instances import batch_scheduling as ib
    from servopt.models import batch_scheduling as mb
    from servopt.solvers import batch_scheduling as bs

    inst = ib.generate(12, seed=0)
    start = mb.warm_start_schedule(inst)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bs.search_order(inst, start, time_limit=bad)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bs.improve_schedule(inst, start, time_limit=bad)


# --- low-level helpers: an unknown sense or row is an error, not "max" / "le" -----------------
def test_relative_gap_refuses_unknown_sense() -> None:
    from servopt.core.solution import relative_gap

    # by hand: min, value 110 over bound 100 -> 0.1; max, value 90 under bound 100 -> 0.1
    assert relative_gap(110.0, 100.0, "min") == pytest.approx(0.1)
    assert relative_gap(90.0, 100.0, "max") == pytest.approx(0.1)
    for bad in ("minimize", "MIN", "maximise", None):
        with pytest.raises(ValueError, match="sense"):
            relative_gap(110.0, 100.0, bad)  # type: ignore[arg-type]


def test_normalise_dual_refuses_unknown_sense_or_row() -> None:
    from servopt.core.solution import normalise_dual

    # by hand: a min problem's <= row, Pyomo dual d(obj)/d(ub) = -2 -> price 2 (relaxing saves 2)
    assert normalise_dual(-2.0, sense="min", row="le", convention="pyomo") == 2.0
    for bad in ("leq", "<=", "LE", None):
        with pytest.raises(ValueError, match="row"):
            normalise_dual(-2.0, sense="min", row=bad, convention="pyomo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sense"):
        normalise_dual(-2.0, sense="minimize", row="le", convention="pyomo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="convention"):
        normalise_dual(-2.0, sense="min", row="le", convention="gurobi")  # type: ignore[arg-type]

