"""Expert placement's bound takes ``time_limit`` (seconds for the whole bound, its layers' MILPs
sharing them; None: no MILP), the name and meaning every decision's bound has, so
``gap_table(..., bound_kw={"time_limit": t})`` works for it as for the others;
``milp_time_limit`` stays as the older option, seconds for each layer (both: refused)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import servopt
from servopt.benchmarks import expert_placement as bench
from servopt.core import InvalidInstanceError
from servopt.instances import expert_placement as gen
from servopt.instances.expert_placement import Instance


def _hand() -> Instance:
    """Planned window 3, 3, 3, 3, next window 10, 1, 1, 1 on 2 GPUs x 2 slots: 4 experts fill the
    4 slots (no replica), so the best next-window makespan is 10 + 1 = 11, while the combinatorial
    bound is 10 (expert 0's 10 tokens on one GPU)."""
    return Instance(loads=np.array([[[3.0, 3.0, 3.0, 3.0]], [[10.0, 1.0, 1.0, 1.0]]]),
                    num_nodes=1, gpus_per_node=2, slots_per_gpu=2)


def test_gap_table_takes_time_limit_for_the_milp_bound_by_hand():
    inst = _hand()
    table = servopt.gap_table(inst, ["eplb"], bound_kw={"time_limit": 5})
    assert table["bound"].iloc[0] == pytest.approx(11.0)
    assert table["bound_kind"].iloc[0] == "optimal"
    assert table["cost"].iloc[0] >= 11.0 - 1e-9
    # without a time limit there is no MILP: the combinatorial bound
    plain = servopt.gap_table(inst, ["eplb"])
    assert (plain["bound"].iloc[0], plain["bound_kind"].iloc[0]) == (pytest.approx(10.0),
                                                                     "lower_bound")
    old = servopt.gap_table(inst, ["eplb"], bound_kw={"milp_time_limit": 5})
    assert old["bound"].iloc[0] == table["bound"].iloc[0]
    assert old["bound_kind"].iloc[0] == "optimal"


@pytest.mark.parametrize("window", ["next", "planned"])
def test_time_limit_and_milp_time_limit_give_the_same_bound(window: str):
    inst = gen.generate(windows=2, layers=2, experts=8, nodes=1, gpus_per_node=4,
                        slots_per_gpu=3, seed=0)
    new = bench.bound(inst, window=window, time_limit=10)
    old = bench.bound(inst, window=window, milp_time_limit=10)
    none = bench.bound(inst, window=window)
    assert (new.value, new.kind) == (old.value, old.kind)
    assert new.kind in ("optimal", "mip_bound") and none.kind == "lower_bound"
    assert new.value >= none.value - 1e-9
    # infinity: the MILP without a limit (this one is solved to optimality either way)
    unlimited = bench.bound(inst, window=window, time_limit=math.inf)
    assert unlimited.kind == new.kind and unlimited.value == pytest.approx(new.value, rel=1e-9)


def test_both_names_are_refused():
    with pytest.raises(InvalidInstanceError, match=r"time_limit \(the whole call\) or the older "
                                                   r"milp_time_limit \(each layer\), not both "
                                                   r"\(got time_limit=5, milp_time_limit=5\)"):
        bench.bound(_hand(), time_limit=5, milp_time_limit=5)
    with pytest.raises(InvalidInstanceError, match="not both"):
        servopt.gap_table(_hand(), ["eplb"], bound_kw={"time_limit": 5, "milp_time_limit": 5})


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, "5", True])
def test_a_time_limit_that_is_not_seconds_is_refused_by_name(bad):
    # refused before any MILP, whatever the model's size (it was passed on to HiGHS's solve only
    # when the MILP ran)
    with pytest.raises(InvalidInstanceError, match=r"^time_limit must be positive seconds"):
        bench.bound(_hand(), time_limit=bad)
    with pytest.raises(InvalidInstanceError, match=r"^time_limit must be positive seconds"):
        bench.bound(_hand(), time_limit=bad, milp_max_binaries=1)


def test_the_older_name_keeps_its_meanings():
    # milp_time_limit 0 meant no MILP (it was tested for truth); a bad value is refused by its name
    assert bench.bound(_hand(), milp_time_limit=0).kind == "lower_bound"
    assert bench.bound(_hand(), milp_time_limit=None).value == pytest.approx(10.0)
    with pytest.raises(InvalidInstanceError, match=r"^milp_time_limit must be positive seconds"):
        bench.bound(_hand(), milp_time_limit=-1)
    assert "time_limit" in bench.bound.accepted_keywords
    assert "milp_time_limit" in bench.bound.accepted_keywords


def test_time_limit_is_shared_by_the_layers_and_milp_time_limit_is_each_layers(monkeypatch):
    # review R13: time_limit=1 on 8 layers took 5.6 s, each layer's MILP getting the whole second.
    # Now the first layer gets at most a share (limit / layers) and none more than what is left;
    # the older milp_time_limit still gives every layer its full limit
    from servopt.solvers import exact
    inst = gen.generate(windows=2, layers=4, experts=8, nodes=1, gpus_per_node=4,
                        slots_per_gpu=3, seed=0)
    given = []
    real = exact.solve_model

    def spy(model, **kw):
        given.append(kw["time_limit"])
        return real(model, **kw)

    monkeypatch.setattr(exact, "solve_model", spy)
    shared = bench.bound(inst, time_limit=8.0)
    assert len(given) == 4 and given[0] <= 8.0 / 4 and max(given) <= 8.0
    assert shared.kind in ("optimal", "mip_bound")
    given.clear()
    each = bench.bound(inst, milp_time_limit=8.0)
    assert given == [8.0] * 4 and (each.value, each.kind) == (shared.value, shared.kind)


def test_a_spent_budget_keeps_the_makespan_bound_for_the_layers_left(monkeypatch):
    # a budget spent before a layer is reached: that layer keeps its makespan bound (valid), and
    # no MILP runs with a limit <= 0; here no layer's MILP ran, so the kind is the makespan
    # bound's, lower_bound (mip_bound when some layer's MILP ran: not every layer proved)
    import itertools
    import time as clock
    inst = gen.generate(windows=2, layers=3, experts=8, nodes=1, gpus_per_node=4,
                        slots_per_gpu=3, seed=0)
    now = itertools.count(0.0, 100.0)  # every read of the clock: 100 s later
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(now))
    out = bench.bound(inst, time_limit=50.0)
    monkeypatch.setattr(bench.time, "perf_counter", clock.perf_counter)
    assert (out.value, out.kind) == (pytest.approx(bench.bound(inst).value), "lower_bound")
    assert out.status == "makespan bound kept for 3 of 3 layer(s): the time budget was spent before them"
