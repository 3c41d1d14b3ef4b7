"""Expert placement with a previous placement and a migration cost, and the input checks a new user
meets: the evaluator's cost is the model's objective (makespan + beta x migrations), the exact
method optimises it, the bid-price rule accounts for it, and bad prices / options are refused."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from servopt.benchmarks import expert_placement as bench
from servopt.core import InvalidInstanceError
from servopt.instances import capacity as capacity_instances
from servopt.instances import expert_placement as inst_mod
from servopt.instances.expert_placement import Instance
from servopt.solvers import exact
from servopt.solvers import expert_placement as sv

# the reviewer's reproducer: the tiny preset (2 layers x 6 experts, 1 node x 3 GPUs x 3 slots) with a
# previous placement holding experts 0..5 once and 0, 1, 2 twice
PREV = np.tile([0, 1, 2, 3, 4, 5, 0, 1, 2], (2, 1))


def tiny(beta: float, windows: int = 3) -> Instance:
    loads = inst_mod.generate(preset="tiny", windows=windows, seed=0).loads
    return Instance(loads, 1, 3, 3, previous_placement=PREV, migration_cost=beta)


def pairs(phy2log: np.ndarray, slots_per_gpu: int) -> list[set[tuple[int, int]]]:
    """(expert, GPU) pairs per layer, by hand."""
    return [{(int(e), p // slots_per_gpu) for p, e in enumerate(row) if e >= 0} for row in phy2log]


def test_cost_adds_beta_times_migrations_by_hand():
    # one window (plan = evaluation), loads 6, 2, 2 on 2 GPUs x 2 slots; previous GPU 0: experts 1, 2,
    # GPU 1: expert 0 (times 4 and 6: makespan 6). The plan GPU 0: expert 0, GPU 1: experts 1, 2 has
    # makespan 6 too but moves all three replicas: cost 6 + 5 x 3 = 21.
    inst = Instance(loads=np.array([[[6.0, 2.0, 2.0]]]), num_nodes=1, gpus_per_node=2, slots_per_gpu=2,
                    previous_placement=np.array([[1, 2, 0, -1]]), migration_cost=5.0)
    moved = bench.evaluate(inst, lambda i: sv.Plan(np.array([[0, -1, 1, 2]]), "even"))
    assert moved.metrics["migrations"] == 3
    assert moved.metrics["makespan"] == pytest.approx(6.0)
    assert moved.metrics["migration_cost"] == pytest.approx(15.0)
    assert moved.cost == pytest.approx(21.0)
    # the same placement with its slots in another order on each GPU: same pairs, same cost
    same = bench.evaluate(inst, lambda i: sv.Plan(np.array([[-1, 0, 2, 1]]), "even"))
    assert same.cost == pytest.approx(21.0)
    # a second replica of expert 0 on GPU 1 (where it was) is not a move: the plan 1, 0 | 2, 0 moves
    # expert 0 to GPU 0 and expert 2 to GPU 1 (2 moves); even split: GPU 0 = 2 + 3, GPU 1 = 2 + 3
    split = bench.evaluate(inst, lambda i: sv.Plan(np.array([[1, 0, 2, 0]]), "even"))
    assert split.metrics["migrations"] == 2 and split.cost == pytest.approx(5.0 + 10.0)
    # two replicas of expert 0 on GPU 0 (where it was not) are one copy moved there, not two: the plan
    # 0, 0 | 1, 2 moves 3 (expert 0 to GPU 0, 1 and 2 to GPU 1); GPU 0 = 3 + 3, GPU 1 = 2 + 2: 6 + 15
    doubled = bench.evaluate(inst, lambda i: sv.Plan(np.array([[0, 0, 1, 2]]), "even"))
    assert doubled.metrics["migrations"] == 3 and doubled.cost == pytest.approx(21.0)
    # keeping the previous placement: no move, cost = its makespan 6
    keep = bench.evaluate(inst, lambda i: sv.Plan(i.previous_placement.copy(), "even"))
    assert keep.metrics["migrations"] == 0 and keep.cost == pytest.approx(6.0)
    # the exact method finds it: nothing beats 6 (bound: 10 tokens / 2 GPUs = 5 needs moves of 5 each)
    best = bench.evaluate(inst, "exact")
    assert best.cost == pytest.approx(6.0)


def test_brute_force_optimum_equals_exact_and_the_milp():
    # every placement of 3 experts in 2 GPUs x 2 slots (one replica per expert per GPU), scored by hand
    # (LP dispatch of a two-GPU layer: an expert on both GPUs fills the lower one first)
    loads = np.array([[[7.0, 3.0, 2.0]]])
    prev = np.array([[0, 1, 2, -1]])
    for beta in (0.0, 1.0, 3.0, 100.0):
        inst = Instance(loads=loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=2, previous_placement=prev,
                        migration_cost=beta)
        best = np.inf
        for gpu0, gpu1 in itertools.product(itertools.combinations(range(-1, 3), 2), repeat=2):
            row = np.array([list(gpu0), list(gpu1)]).reshape(1, 4)
            if not {0, 1, 2} <= set(row.ravel()):
                continue
            cost = bench.evaluate(inst, lambda i, row=row: sv.Plan(row, "lp")).cost
            best = min(best, cost)
        # brute force: beta 0 -> 6 (7 + 3 + 2 split evenly); the previous plan (0, 1 | 2) has makespan
        # 10; moving 0 onto GPU 1 too gives 6 with one move
        assert best == pytest.approx(min(10.0, 6.0 + beta))
        assert exact.solve(inst, mip_gap=1e-9).objective == pytest.approx(best, abs=1e-6)
        assert bench.evaluate(inst, "exact").cost == pytest.approx(best, abs=1e-6)


def test_exact_cost_equals_the_milp_objective_and_the_hindsight_bound():
    # one window: the plan is scored on the window the MILP optimises, so the evaluator's cost of the
    # exact method (certified to gap 0) is the Pyomo MILP's objective, computed independently
    for beta in (0.0, 10.0, 1000.0):
        inst = tiny(beta, windows=1)
        milp = exact.solve(inst, mip_gap=1e-9)
        assert milp.status == "optimal"
        out = bench.evaluate(inst, lambda i: sv.exact_placement(i, target_gap=0.0))
        assert out.cost == pytest.approx(milp.objective, rel=1e-6)
        hindsight = bench.bound(inst, milp_time_limit=10)
        assert hindsight.kind == "optimal" and hindsight.value == pytest.approx(milp.objective, rel=1e-6)


def test_reviewer_reproducer_migrations_now_count():
    blind = sv.exact_placement(tiny(0.0))  # the plan that ignores migrations makes 12 moves
    costs, moves = [], []
    for beta in (0.0, 10.0, 1000.0):
        inst = tiny(beta)
        out = bench.evaluate(inst, "exact")
        costs.append(out.cost)
        moves.append(out.metrics["migrations"])
        # the cost is the makespan + beta x migrations, and the exact plan is no worse than the blind one
        assert out.cost == pytest.approx(out.metrics["makespan"] + beta * out.metrics["migrations"])
        assert out.cost <= bench.evaluate(inst, lambda i: blind).cost + 1e-9
        assert bench.bound(inst).value <= out.cost + 1e-9
        assert bench.bound(inst, milp_time_limit=10).value <= out.cost + 1e-6
        for method in bench.DEFAULT_METHODS:
            assert bench.bound(inst).value <= bench.evaluate(inst, method).cost + 1e-9
    assert moves[0] == 12 and moves[1] < 12 and moves[2] == 0
    assert costs[0] < costs[1] < costs[2]


def test_large_beta_keeps_the_previous_placement():
    inst = tiny(1000.0)
    for method in ("exact", "bid_price", "bid_price_lp"):
        plan = sv.POLICIES[method](inst)
        assert pairs(plan.phy2log, 3) == pairs(PREV, 3), method
        assert bench.evaluate(inst, method).metrics["migrations"] == 0
    # the baselines ignore migrations, as deployed: the table shows their true cost
    eplb = bench.evaluate(inst, "eplb")
    assert eplb.cost == pytest.approx(eplb.metrics["makespan"] + 1000.0 * eplb.metrics["migrations"])


def test_bid_price_moves_only_when_worth_it():
    # beta = 0: the rule ignores the previous placement (same plan as without one)
    free = sv.BidPrice()(tiny(0.0))
    plain = sv.BidPrice()(Instance(tiny(0.0).loads, 1, 3, 3))
    np.testing.assert_array_equal(free.phy2log, plain.phy2log)
    # small beta: relabelled onto the previous GPUs, never more moves than the unaligned plan
    cheap = sv.BidPrice()(tiny(0.01))
    assert bench.migrations(tiny(0.01), cheap.phy2log) <= bench.migrations(tiny(0.01), plain.phy2log)
    assert not cheap.info["kept_previous"].any()


def test_align_to_previous_by_hand():
    prev = np.array([[0, 1, 2, 3]])  # GPU 0: 0, 1; GPU 1: 2, 3
    plan = np.array([[2, 3, 1, 0]])  # the same pairs with the GPUs swapped
    np.testing.assert_array_equal(sv.align_to_previous(plan, prev, 2, 2), [[1, 0, 2, 3]])
    # GPUs of different speed are never swapped (the makespan would change)
    np.testing.assert_array_equal(sv.align_to_previous(plan, prev, 2, 2, np.array([1.0, 2.0])), plan)


# -- prices --------------------------------------------------------------------------------------------
def test_bid_price_refuses_bad_prices():
    inst = inst_mod.generate(preset="tiny", seed=0)
    with pytest.raises(InvalidInstanceError, match="2 x 3"):
        sv.BidPrice(gpu_price=np.ones((7, 7)))(inst)
    with pytest.raises(InvalidInstanceError, match="finite and >= 0"):
        sv.BidPrice(gpu_price=np.array([[np.nan, 1.0, 1.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(InvalidInstanceError, match="finite and >= 0"):
        sv.BidPrice(gpu_price=-np.ones((2, 3)))
    with pytest.raises(InvalidInstanceError, match="layers x GPUs"):
        sv.BidPrice(gpu_price=np.ones(3))
    with pytest.raises(InvalidInstanceError, match="numbers"):
        sv.BidPrice(gpu_price=[["a", "b", "c"], ["a", "b", "c"]])
    # a plan whose dispatch prices have the wrong shape: refused by the evaluator, not an IndexError
    bad = sv.Plan(sv.POLICIES["bid_price"](inst).phy2log, "price", np.ones((5, 5)))
    with pytest.raises(InvalidInstanceError, match="2 x 3"):
        bench.evaluate(inst, lambda i: bad)


def test_bid_price_warns_when_prices_cannot_act():
    inst = inst_mod.generate(preset="tiny", seed=0)  # no previous placement
    with pytest.warns(UserWarning, match="ignored"):
        plan = sv.BidPrice(gpu_price=np.full((2, 3), 1e6))(inst)
    np.testing.assert_array_equal(plan.phy2log, sv.BidPrice()(inst).phy2log)
    # with a previous placement they act (by hand in test_expert_placement.py), and no warning
    deployed = Instance(inst.loads, 1, 3, 3, previous_placement=PREV)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sv.BidPrice(gpu_price=np.array([[1.0, 0.0, 0.0]] * 2))(deployed)


def test_from_solution_refuses_the_wrong_solution():
    inst = inst_mod.generate(preset="tiny", seed=0)
    relaxed = exact.solve(inst, relax=True)
    rule = sv.BidPrice.from_solution(relaxed, 2, 3)
    assert rule.gpu_price.shape == (2, 3)
    with pytest.raises(InvalidInstanceError, match="outside the 1 layers x 3 GPUs"):
        sv.BidPrice.from_solution(relaxed, 1, 3)
    with pytest.raises(InvalidInstanceError, match="no gpu_load price for layer 0, GPU 3"):
        sv.BidPrice.from_solution(relaxed, 2, 5)
    other = exact.solve(capacity_instances.generate(requests=200, arrival_rate=5.0))
    with pytest.raises(InvalidInstanceError, match="expert_placement solution with gpu_load prices"):
        sv.BidPrice.from_solution(other, 2, 3)


# -- inputs and policy objects ---------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"migration_cost": "1"}, "migration_cost"),
    ({"migration_cost": True}, "migration_cost"),
    ({"gpu_speed": ["a", "b", "c"]}, "gpu_speed"),
    ({"loads": [[["1", "2", "3", "4", "5", "6"]] * 2]}, "loads"),
    ({"previous_placement": np.full((2, 9), "0")}, "previous_placement"),
    ({"previous_placement": np.full((2, 9), np.inf)}, "integer expert ids"),
])
def test_instance_refuses_text_for_numbers(kwargs, match):
    base = dict(loads=np.ones((1, 2, 6)), num_nodes=1, gpus_per_node=3, slots_per_gpu=3)
    with pytest.raises(InvalidInstanceError, match=match):
        Instance(**{**base, **kwargs})


def test_from_trace_names_unknown_options():
    with pytest.raises(InvalidInstanceError, match=r"unknown option\(s\) \['foo'\].*migration_cost"):
        inst_mod.from_trace("unused.json", foo=1)


def test_policy_objects_match_names_and_are_reusable():
    a = inst_mod.generate(preset="tiny", seed=0)
    b = inst_mod.generate(preset="tiny", seed=1)
    for name, policy in sv.POLICIES.items():
        assert bench.evaluate(a, policy).cost == pytest.approx(bench.evaluate(a, name).cost), name
    rule = sv.BidPrice()
    first = bench.evaluate(a, rule).cost
    bench.evaluate(b, rule)
    assert bench.evaluate(a, rule).cost == first  # no state carried between instances
    with pytest.raises(InvalidInstanceError, match="known"):
        bench.evaluate(a, "planx")
    with pytest.raises(InvalidInstanceError, match="callable"):
        bench.evaluate(a, 3)
    with pytest.raises(InvalidInstanceError, match="Plan"):
        bench.evaluate(a, lambda i: 3)


@pytest.mark.parametrize(("call", "match"), [
    (lambda e: exact.solve(e, beta="x"), "beta must be >= 0"),
    (lambda e: exact.solve(e, layers=[5]), "layer indices in 0..1"),
    (lambda e: exact.solve(e, window="a"), "window must be a window index"),
    (lambda e: exact.solve(e, makespan_ub="a"), "makespan bounds"),
    (lambda e: inst_mod.generate(preset="tiny", seed="0"), "seed must be a whole number"),
    (lambda e: bench.evaluate(e, lambda i: sv.Plan(np.full((2, 9), 0.5), "even")), "integer expert ids"),
    (lambda e: bench.evaluate(e, lambda i: sv.Plan(np.full((2, 9), "a"), "even")), "integer expert ids"),
    (lambda e: sv.exact_placement(e, target_gap="a"), "target_gap"),
    (lambda e: sv.BidPrice(kappa="a"), "kappa"),
    (lambda e: sv.BidPrice(depth=0), "depth must be a whole number >= 1"),
    (lambda e: sv.BidPrice(price_weight=2.0), "price_weight must be in"),
    (lambda e: sv.BidPrice()("instance"), "expert_placement Instance"),
])
def test_options_of_the_wrong_type_are_refused(call, match):
    with pytest.raises(InvalidInstanceError, match=match):
        call(inst_mod.generate(preset="tiny", seed=0))


def test_sticky_placement_by_hand():
    # previous GPU 0: experts 0, 1; GPU 1: expert 2 and a free slot. New counts 2, 1, 1: everything
    # stays and expert 0's second replica takes the only free slot (GPU 1): one move
    prev = np.array([[0, 1, 2, -1]])
    plan = sv.sticky_placement(np.array([[8.0, 2.0, 2.0]]), np.array([[2, 1, 1]]), prev, 2, 2)
    np.testing.assert_array_equal(plan, [[0, 1, 0, 2]])
    inst = Instance(np.array([[[8.0, 2.0, 2.0]]]), 1, 2, 2, previous_placement=prev, migration_cost=1.0)
    assert bench.migrations(inst, plan) == 1
    # counts 1, 1, 1 against a previous placement with expert 0 on both GPUs: GPU 0's copy stays
    # (lowest GPU first), GPU 1's slot is freed, nothing moves
    twice = np.array([[0, 1, 2, 0]])
    plan = sv.sticky_placement(np.array([[8.0, 2.0, 2.0]]), np.array([[1, 1, 1]]), twice, 2, 2)
    np.testing.assert_array_equal(plan, [[0, 1, 2, -1]])


@pytest.mark.parametrize(("prev", "beta", "optimum"), [
    # GPU 0: 2, GPU 1: 0, 1 (expert 3 nowhere). The balanced pairs {0, 3} {1, 2} (makespan 5) put on
    # the previous GPUs as 1, 2 | 0, 3 move 2 replicas: 5 + 2 = 7; labelled 0, 3 | 1, 2 they move 3
    # (8); keeping 0, 1 together (3 joins 2) moves 1 but has makespan 7: 8. Relabelling wins.
    ([[2, -1, 0, 1]], 1.0, 7.0),
    # GPU 0: 0, 1, GPU 1: 2 (3 nowhere), beta 3: the balanced pairs move at least 2 (5 + 6 = 11);
    # the fewest moves (3 into the free slot, makespan 7) cost 7 + 3 = 10. Staying wins.
    ([[0, 1, 2, -1]], 3.0, 10.0),
])
def test_migration_candidates_by_hand_and_brute_force(prev, beta, optimum):
    loads = np.array([4.0, 3.0, 2.0, 1.0])
    inst = Instance(loads[None, None, :], 1, 2, 2, previous_placement=np.array(prev), migration_cost=beta)
    before = pairs(np.array(prev), 2)[0]
    brute = min(max(loads[list(p[:2])].sum(), loads[list(p[2:])].sum())
                + beta * len(pairs(np.array([p]), 2)[0] - before)
                for p in itertools.permutations(range(4)))
    assert brute == pytest.approx(optimum)
    for method in ("bid_price", "bid_price_lp", "exact"):
        assert bench.evaluate(inst, method).cost == pytest.approx(optimum), method
    if optimum == 7.0:  # exact's candidate stage alone (no MILP) relabels onto the previous GPUs
        heuristic = bench.evaluate(inst, lambda i: sv.exact_placement(i, milp_max_binaries=0))
        assert heuristic.cost == pytest.approx(optimum)
