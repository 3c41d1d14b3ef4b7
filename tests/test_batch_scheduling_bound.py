"""Batch scheduling: the cover-cut bound and the order search, against hand calculations and
brute force on tiny instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_batch_scheduling import brute_force, make

from servopt.benchmarks import batch_scheduling as bench
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as inst_mod
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def tiny(seed: int):
    rng = np.random.default_rng(seed)
    n = 4
    prompts = rng.integers(1, 6, n)
    outputs = rng.integers(1, 5, n)
    arrivals = rng.integers(0, 3, n) if seed % 2 else np.zeros(n, int)
    return make(int(max((prompts + outputs).max(), 12)), prompts, outputs, arrivals=arrivals)


def test_cover_cuts_close_the_gap_by_hand():
    # three requests of 5 prompt tokens and 1 output token (6 KV tokens each), memory 10: one
    # runs per round, so the optimum is 1 + 2 + 3 = 6 rounds. The LP runs 10/6 requests per
    # round: 5/3 with latency 1 and 4/3 with latency 2, 13/3 in all. The extended cover of
    # round p (any two of them hold 12 > 10 tokens) is x[A,p] + x[B,p] + x[C,p] <= 1.
    inst = make(10, [5, 5, 5], [1, 1, 1])
    assert rules.solve_lp(inst, horizon="safe").objective == pytest.approx(13 / 3)
    cut = rules.cover_bound(inst, horizon="safe")
    assert cut.bound == pytest.approx(6.0)
    assert brute_force(inst, model.horizon_rounds(inst, "safe")) == 6.0
    assert cut.history[0] == pytest.approx(13 / 3) and cut.rounds >= 1
    assert bench.bound(inst, method="cover", horizon="safe").value == 6.0


@pytest.mark.parametrize("seed", range(12))
def test_cover_bound_is_valid_and_at_least_the_lp(seed):
    inst = tiny(seed)
    optimum = brute_force(inst, model.horizon_rounds(inst, "safe"))
    cut = rules.cover_bound(inst, horizon="safe")
    assert cut.lp - 1e-6 <= cut.bound <= optimum + 1e-6
    assert np.all(np.diff(cut.history) >= -1e-9)


def test_cover_bound_is_stronger_than_the_lp_on_random_tiny_instances():
    # the cuts must raise the plain LP by more than half a round on at least one of these seeds
    # (that the raised bound stays below the optimum is checked against brute force above)
    gains = []
    for seed in range(12):
        inst = tiny(seed)
        lp = rules.solve_lp(inst, horizon="safe").objective
        gains.append(rules.cover_bound(inst, horizon="safe").bound - lp)
    assert max(gains) > 0.5


def test_cover_cuts_hold_for_an_optimal_schedule():
    inst = inst_mod.generate(10, lengths="azure", seed=3)
    ip = rules.solve_lp(inst, horizon="safe", integer=True, time_limit=60)
    assert ip.status == "optimal"
    cut = rules.cover_bound(inst, horizon="safe", rounds=10)
    cols = model.columns(inst, "safe")
    z = model.start_vector(cols, ip.decisions["start"].to_numpy())
    assert cut.cuts
    # the loop runs its 10 rounds and the later ones keep lifting the bound (measured: 150.9
    # after the first round, 153.5 after the tenth; the optimum is 157)
    assert cut.rounds == 10 and cut.history[-1] > cut.history[1] + 1.0
    for columns, rhs in cut.cuts:
        assert z[columns].sum() <= rhs + 1e-9
    assert cut.bound <= ip.objective + 1e-6


@pytest.mark.parametrize("seed", range(8))
def test_serial_schedule_over_all_orders_reaches_the_optimum(seed):
    inst = tiny(seed)
    optimum = brute_force(inst, model.horizon_rounds(inst, "safe"))
    costs = []
    for order in itertools.permutations(range(inst.n)):
        start, _ = rules.serial_schedule(inst, np.array(order))
        assert model.is_feasible(inst, start)
        costs.append(model.schedule_latency(inst, start))
    assert min(costs) == optimum


def test_serial_schedule_by_hand():
    # memory 10; A (4 prompt, 2 output) holds 5, 6; B (3, 1) holds 4; C (5, 1) holds 6.
    # Order A, B, C: A at 0, B at 0 (5 + 4 <= 10), C needs 6 with 10 - 6 = 4 free in round 1
    # and 10 - 9 = 1 free in round 0, so it starts at 2.
    inst = make(10, [4, 3, 5], [2, 1, 1])
    start, _ = rules.serial_schedule(inst, np.array([0, 1, 2]))
    assert start.tolist() == [0, 0, 2]
    start, _ = rules.serial_schedule(inst, np.array([2, 1, 0]))
    assert start.tolist() == [1, 0, 0]  # C, B at 0 (10 tokens), A at 1


def test_order_search_is_feasible_and_never_worse():
    inst = inst_mod.generate(25, lengths="azure", seed=8)
    start = rules.plan_schedule(inst, rules.MCSF())
    better = rules.search_order(inst, start, time_limit=2)
    assert model.is_feasible(inst, better)
    assert model.schedule_latency(inst, better) <= model.schedule_latency(inst, start)
    assert model.schedule_latency(inst, better) >= bench.bound(inst, method="cover",
                                                                time_limit=3).value


# ---------------------------------------------------------------------------------------------
# group bound: the LP with a group of requests scheduled integrally (column generation)
# ---------------------------------------------------------------------------------------------
def test_group_bound_by_hand():
    # the three 6-token requests of the cover test (memory 10, one per round): with all three
    # in the group every column is a real schedule, so the bound is the optimum 1 + 2 + 3 = 6
    # (the LP is 13/3, see above)
    inst = make(10, [5, 5, 5], [1, 1, 1])
    group = rules.group_bound(inst, group=np.arange(3), horizon="safe")
    assert group.status == "converged"
    assert group.lp == pytest.approx(13 / 3)
    assert group.bound == pytest.approx(6.0)
    assert bench.bound(inst, method="group", group_size=3, horizon="safe").value == 6.0


@pytest.mark.parametrize("seed", range(12))
def test_group_bound_is_valid_and_exact_with_every_request(seed):
    inst = tiny(seed)
    optimum = brute_force(inst, model.horizon_rounds(inst, "safe"))
    part = rules.group_bound(inst, group_size=2, horizon="safe", time_limit=20)
    assert part.lp - 1e-6 <= part.bound <= optimum + 1e-6
    assert part.status == "converged"  # tiny pricings are solved exactly: no stall
    full = rules.group_bound(inst, group=np.arange(inst.n), horizon="safe")
    assert full.status == "converged"
    assert full.bound == pytest.approx(optimum)


def test_group_bound_beats_the_cover_bound_below_the_optimum():
    # n = 12 Azure instance (seed 2): LP 218.5, LP with covers 225.6, optimum 231 (IP, proved
    # here); the six requests the LP finishes last, scheduled integrally, give 227.1
    inst = inst_mod.generate(12, lengths="azure", seed=2)
    ip = rules.solve_lp(inst, horizon="safe", integer=True, time_limit=120)
    assert ip.status == "optimal"
    cover = rules.cover_bound(inst, horizon="safe", time_limit=60).bound
    group = rules.group_bound(inst, group_size=6, horizon="safe", time_limit=60, price_time=10)
    assert group.status == "converged"
    assert cover + 1.0 < group.bound <= ip.objective + 1e-6
    assert len(group.group) == 6 and group.bound == pytest.approx(group.master)


def test_group_bound_refuses_bad_groups():
    inst = tiny(0)
    with pytest.raises(InvalidInstanceError, match="group"):
        rules.group_bound(inst, group=[7])
    for size in (0, -1, 2.5, True):  # -1 would otherwise slice all requests but one
        with pytest.raises(InvalidInstanceError, match="group_size"):
            rules.group_bound(inst, group_size=size)
    with pytest.raises(InvalidInstanceError, match="batch cap"):
        rules.group_bound(make(12, [1, 2], [2, 2], max_batch=1))
