"""Expert placement: EPLB against DeepSeek's published example, hand-checked dispatch and bounds,
the MILP against brute force, Pyomo vs CVXPY vs the matrix path, feasibility of every rule,
and clear errors for bad instances."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servopt.benchmarks import expert_placement as bench
from servopt.core import InvalidInstanceError
from servopt.instances import expert_placement as inst_mod
from servopt.instances.expert_placement import Instance
from servopt.models import expert_placement as model
from servopt.solvers import exact
from servopt.solvers import expert_placement as sv

README_WEIGHT = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                 [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]
README_PHY2LOG = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                  [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]


# -- EPLB -----------------------------------------------------------------------------------------
def test_eplb_reproduces_deepseek_readme_example():
    phy2log, log2phy, logcnt = sv.eplb(np.array(README_WEIGHT), 16, 4, 2, 8)
    assert phy2log.tolist() == README_PHY2LOG
    # the three outputs describe the same placement
    for layer in range(2):
        for expert in range(12):
            slots = [p for p in log2phy[layer, expert] if p >= 0]
            assert len(slots) == logcnt[layer, expert]
            assert all(phy2log[layer, p] == expert for p in slots)
    assert logcnt.sum(axis=1).tolist() == [16, 16]


def test_eplb_global_policy_when_groups_do_not_divide_nodes():
    # 3 groups on 2 nodes: global policy = one group, one node; replicas by largest load/count
    w = np.array([[10.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    phy2log, _, logcnt = sv.eplb(w, 8, 3, 2, 4)
    # 2 extra slots both go to expert 0 (10/1 > 10/2 = 5 > 1)
    assert logcnt.tolist() == [[3, 1, 1, 1, 1, 1]]
    assert sorted(phy2log[0].tolist()) == [0, 0, 0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(("groups", "nodes"), [(5, 2), (4, 3)])
def test_eplb_global_fallback_needs_no_group_divisibility(groups, nodes):
    # the original falls back to its global policy (one group, one node) whenever groups % nodes
    # != 0, without asking the experts to split into groups or the GPUs into nodes; the old code
    # refused these (12 experts in 5 groups; 8 GPUs on 3 nodes). Reference: the global policy
    # itself, called with one group and one node
    w = np.array(README_WEIGHT)
    phy2log, _, logcnt = sv.eplb(w, 16, groups, nodes, 8)
    ref = sv.eplb(w, 16, 1, 1, 8)
    assert phy2log.tolist() == ref[0].tolist() and logcnt.tolist() == ref[2].tolist()
    with pytest.raises(InvalidInstanceError, match="num_replicas divisible by num_gpus"):
        sv.eplb(w, 15, groups, nodes, 8)


def test_balanced_packing_by_hand():
    # weights 5, 4, 3, 3 into 2 packs of 2: 5 -> pack 0, 4 -> pack 1, 3 (index 2) -> pack 1
    # (lighter), 3 (index 3) -> pack 0 (the only pack with room). Equal weights in index order is
    # servopt's deterministic choice: DeepSeek's torch.sort(descending=True) is not stable by
    # default and does not guarantee an order for ties.
    pack, rank = sv.balanced_packing(np.array([[5.0, 4.0, 3.0, 3.0]], dtype=np.float32), 2)
    assert pack.tolist() == [[0, 1, 1, 0]]
    assert rank.tolist() == [[0, 0, 1, 1]]


def test_replicate_experts_tie_goes_to_the_first_expert():
    # EPLB takes torch's max(dim=-1).indices, documented to return the first maximal index:
    # loads 4, 4, 1, 1 tie for the one extra slot -> expert 0 gets it (a last-index rule picks 1)
    phy2log, rank, count = sv.replicate_experts(np.array([[4.0, 4.0, 1.0, 1.0]]), 5)
    assert phy2log.tolist() == [[0, 1, 2, 3, 0]]
    assert rank.tolist() == [[0, 0, 0, 0, 1]]
    assert count.tolist() == [[2, 1, 1, 1]]
    # a second extra slot: load per replica 2, 4, 1, 1 -> expert 1
    assert sv.replicate_experts(np.array([[4.0, 4.0, 1.0, 1.0]]), 6)[0].tolist() == [[0, 1, 2, 3, 0, 1]]


def test_balanced_packing_accumulates_in_float32_like_the_reference():
    # DeepSeek's pack weights are float32 tensors: 2**24 + 1 rounds to 2**24 (ties to even).
    # Items 2**24 + 2, 2**24, then six 1s into 2 packs of 4. In float32 pack 1 stays at 2**24
    # while it takes three 1s, so it is still the lighter pack for the third 1 (item 4) and
    # fills up; in float64 it reaches 2**24 + 2 after two 1s, ties with pack 0, and item 4 goes
    # to pack 0 (lowest index): pack [0, 1, 1, 1, 0, 1, 0, 0].
    w = np.array([[2.0**24 + 2, 2.0**24, 1, 1, 1, 1, 1, 1]], dtype=np.float32)
    pack, rank = sv.balanced_packing(w, 2)
    assert pack.tolist() == [[0, 1, 1, 1, 1, 0, 0, 0]]
    assert rank.tolist() == [[0, 0, 1, 2, 3, 1, 2, 3]]


# -- hand-checked dispatch and bounds -------------------------------------------------------------
def _two_gpu_instance(loads):
    return Instance(loads=np.asarray(loads, dtype=float), num_nodes=1, gpus_per_node=2,
                    slots_per_gpu=2)


def test_even_price_and_lp_dispatch_by_hand():
    # expert 0 (10 tokens) on both GPUs, expert 1 (4) on GPU 0, expert 2 (0) on GPU 1
    inst = _two_gpu_instance([[[10.0, 4.0, 0.0]]])
    phy2log = np.array([[0, 1, 0, 2]])
    w = inst.loads[0]
    even = sv.even_dispatch(phy2log, w)
    assert even.tolist() == [[5.0, 4.0, 5.0, 0.0]]  # GPU times 9 and 5
    # water-filling: levels 4 and 0, 10 tokens -> common level 7: 3 to GPU 0, 7 to GPU 1
    price = sv.price_dispatch(phy2log, w, np.array([[0.5, 0.5]]), 2)
    np.testing.assert_allclose(price, [[3.0, 4.0, 7.0, 0.0]])
    # a lower price on GPU 1 sends all of expert 0 there (times 4 and 10)
    cheap = sv.price_dispatch(phy2log, w, np.array([[1.0, 0.0]]), 2)
    np.testing.assert_allclose(cheap, [[0.0, 4.0, 10.0, 0.0]])
    _, makespan, gpu_price = sv.lp_dispatch(phy2log, w, 2)
    assert makespan[0] == pytest.approx(7.0)
    np.testing.assert_allclose(gpu_price, [[0.5, 0.5]], atol=1e-9)  # both GPUs tight, unique
    plan = sv.Plan(phy2log, "even")
    assert bench.gpu_times(inst, plan, w).tolist() == [[9.0, 5.0]]
    assert bench.gpu_times(inst, plan, w, "lp").max() == pytest.approx(7.0)


def test_price_dispatch_sweeps_by_hand():
    # a chain: expert 0 (6 tokens) on GPUs 0 and 1, expert 1 (6) on GPUs 1 and 2, equal prices.
    # Sweep 1: expert 0 splits 3 / 3; expert 1 fills GPU 1 (3) and GPU 2 (0) to 4.5.
    # Sweep 2: expert 0 re-fills against GPU 1 = 1.5 -> 3.75; expert 1 against 2.25 -> 4.125.
    # Sweep 3: 3.9375 and 4.03125. The LP optimum is 12 / 3 = 4.
    phy2log = np.array([[0, -1, 0, 1, 1, -1]])
    w = np.array([[6.0, 6.0]])
    price = np.full((1, 3), 1.0 / 3)

    def times(passes):
        return sv.gpu_times(sv.price_dispatch(phy2log, w, price, 2, passes=passes), 2)[0]

    np.testing.assert_allclose(times(1), [3.0, 4.5, 4.5])
    np.testing.assert_allclose(times(2), [3.75, 4.125, 4.125])
    np.testing.assert_allclose(sv.gpu_times(sv.price_dispatch(phy2log, w, price, 2), 2)[0],
                               [3.9375, 4.03125, 4.03125])  # the default: 3 sweeps
    assert sv.lp_dispatch(phy2log, w, 2)[1][0] == pytest.approx(4.0)


def test_dispatch_lp_with_gpu_speeds_by_hand():
    # one expert (8 tokens) on a GPU of speed 1 and one of speed 3: f0 / 1 = f1 / 3 = z,
    # f0 + f1 = 8 -> z = 2 (flows 2 and 6); both rows tight, s0 pi0 + s1 pi1 = 1 and the
    # expert's price equals both GPU prices -> pi = (1/4, 1/4)
    inst = Instance(loads=np.array([[[8.0, 0.0]]]), num_nodes=1, gpus_per_node=2,
                    slots_per_gpu=2, gpu_speed=np.array([1.0, 3.0]))
    plan = np.array([[0, 1, 0, -1]])
    flows, makespan, gpu_price = sv.lp_dispatch(plan, inst.planned_loads, 2, inst.speed)
    np.testing.assert_allclose(flows, [[2.0, 0.0, 6.0, 0.0]], atol=1e-9)
    assert makespan[0] == pytest.approx(2.0)
    np.testing.assert_allclose(gpu_price, [[0.25, 0.25]], atol=1e-9)
    for backend in ("highs", "cvxpy"):
        sol = exact.solve(inst, backend=backend, placement=plan)
        assert sol.objective == pytest.approx(2.0)
        np.testing.assert_allclose(sol.prices["gpu_load"].to_numpy(), [0.25, 0.25], atol=1e-7)
    # the evaluator's own LP, and even split (4 tokens each: times 4 and 4 / 3)
    np.testing.assert_allclose(bench.gpu_times(inst, sv.Plan(plan, "lp"), inst.next_loads),
                               [[2.0, 2.0]], atol=1e-9)
    np.testing.assert_allclose(bench.gpu_times(inst, sv.Plan(plan, "even"), inst.next_loads),
                               [[4.0, 4.0 / 3.0]])


def test_evaluator_refuses_flows_that_do_not_serve_the_loads(monkeypatch):
    phy2log = np.array([[0, 1, 0, -1]])
    w = np.array([[4.0, 2.0]])
    bench._check_flows(np.array([[2.0, 2.0, 2.0, 0.0]]), phy2log, w)  # a valid dispatch
    for flows, message in [([[5.0, 2.0, -1.0, 0.0]], "negative"),
                           ([[2.0, 2.0, 1.0, 1.0]], "empty slot"),
                           ([[2.0, 2.0, 1.0, 0.0]], "every expert")]:
        with pytest.raises(InvalidInstanceError, match=message):
            bench._check_flows(np.array(flows), phy2log, w)
    # a price dispatch that loses tokens is refused by evaluate, not scored
    inst = _two_gpu_instance([[[4.0, 2.0]]])
    plan = sv.Plan(phy2log, "price", np.full((1, 2), 0.5))
    monkeypatch.setattr(bench, "price_dispatch", lambda *a, **k: np.zeros((1, 4)))
    with pytest.raises(InvalidInstanceError, match="every expert"):
        bench.evaluate(inst, lambda instance: plan)


def test_evaluate_plans_on_the_history_and_scores_the_next_window_by_hand():
    # planned window 6, 2, 2; next window 1, 1, 10; 2 GPUs x 2 slots.
    # no_replication packs the planned window: expert 0 -> GPU 0, experts 1, 2 -> GPU 1.
    # Next window: GPU times 1 and 1 + 10 = 11 -> cost 11 (scoring the planned window gives 6,
    # planning on the next window gives 10), balancedness (1 + 11) / 2 / 11.
    prev = np.array([[1, 2, 0, -1]])  # GPU 0 held experts 1, 2; GPU 1 expert 0
    inst = Instance(loads=np.array([[[6.0, 2.0, 2.0]], [[1.0, 1.0, 10.0]]]), num_nodes=1,
                    gpus_per_node=2, slots_per_gpu=2, previous_placement=prev)
    out = bench.evaluate(inst, "no_replication")
    assert out.cost == pytest.approx(11.0)
    assert out.metrics["balancedness"] == pytest.approx(6.0 / 11.0)
    # planned window: times 6 and 4, bound max(10 / 2, replica counts 3) = 5 -> gap 0.2
    assert out.metrics["balancedness_same"] == pytest.approx(5.0 / 6.0)
    assert out.metrics["gap_same"] == pytest.approx(0.2)
    # all three replicas land where the previous placement had none of their expert
    assert out.metrics["migrations"] == 3 and out.metrics["colocated"] == 0
    # two replicas of expert 0 on GPU 0 (EPLB may do this): one co-located replica; even split
    # on the next window: GPU 0 serves 0.5 + 0.5, GPU 1 serves 1 + 10
    twin = bench.evaluate(inst, lambda instance: sv.Plan(np.array([[0, 0, 1, 2]]), "even"))
    assert twin.metrics["colocated"] == 1 and twin.cost == pytest.approx(11.0)
    assert twin.metrics["migrations"] == 3


def test_bound_uses_the_scored_window_by_hand():
    # planned window 3, 3, 3, 3 (bound 6, optimal 6); next window 10, 1, 1, 1: the combinatorial
    # bound is 10 but with no spare slot the best placement gives 10 + 1 on one GPU (MILP: 11)
    inst = Instance(loads=np.array([[[3.0, 3.0, 3.0, 3.0]], [[10.0, 1.0, 1.0, 1.0]]]),
                    num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    assert bench.bound(inst).value == pytest.approx(10.0)
    assert bench.bound(inst, window="planned").value == pytest.approx(6.0)
    milp = bench.bound(inst, milp_time_limit=5)
    assert (milp.value, milp.kind) == (pytest.approx(11.0), "optimal")
    assert bench.bound(inst, window="planned", milp_time_limit=5).value == pytest.approx(6.0)


def test_lower_bound_by_hand():
    # no spare slot: expert 0 (10 tokens) has one replica, so z >= 10 although total / G = 6.5
    assert model.makespan_lower_bound(np.array([[10.0, 1.0, 1.0, 1.0]]), 2, 2)[0] == 10.0
    # one spare slot: 6 can be split in two, z >= total / G = 4
    assert model.makespan_lower_bound(np.array([[6.0, 1.0, 1.0]]), 2, 2)[0] == 4.0
    # 4 GPUs x 2 slots, experts 12, 1, 1: 5 spare slots but at most 4 replicas (one per GPU):
    # z >= 12 / 4 = 3.5? total / G = 14 / 4 = 3.5 and 12 / 4 = 3 -> 3.5
    assert model.makespan_lower_bound(np.array([[12.0, 1.0, 1.0]]), 4, 2)[0] == 3.5
    # speeds: a GPU twice as fast: total / total speed = 9 / 3
    assert model.makespan_lower_bound(np.array([[3.0, 3.0, 3.0]]), 2, 2,
                                       np.array([1.0, 2.0]))[0] == 3.0


def test_replica_count_bound_by_hand():
    # 4 GPUs x 1 slot, experts 12, 12, 12: one spare slot, so only one 12 can be split and
    # z >= 12, although total / G = 36 / 4 = 9 and one expert over its most replicas is
    # 12 / 2 = 6 (only the replica-count term gives 12; a floor instead of a ceiling in the
    # replicas needed would accept z = 6). Brute force and the MILP: 12 is achieved.
    w = np.array([[12.0, 12.0, 12.0]])
    assert model.makespan_lower_bound(w, 4, 1)[0] == 12.0
    inst = Instance(loads=w[None], num_nodes=1, gpus_per_node=4, slots_per_gpu=1)
    assert _brute_force(inst, 0, 0) == pytest.approx(12.0)
    assert exact.solve(inst).objective == pytest.approx(12.0)


# -- MILP vs brute force ----------------------------------------------------------------------------
def _brute_force(inst: Instance, layer: int, window: int) -> float:
    """Min over all placements (each GPU a set of <= S distinct experts, every expert placed) of
    the LP-dispatch makespan (the evaluator's own LP)."""
    E, G, S = inst.num_experts, inst.num_gpus, inst.slots_per_gpu
    subsets = [c for k in range(S + 1) for c in itertools.combinations(range(E), k)]
    w = inst.loads[window][layer:layer + 1]
    best = np.inf
    sub = Instance(loads=w[None], num_nodes=1, gpus_per_node=G, slots_per_gpu=S,
                   gpu_speed=inst.gpu_speed)
    for choice in itertools.product(subsets, repeat=G):
        if len(set().union(*choice)) < E:
            continue
        row = np.full(G * S, -1)
        for g, experts in enumerate(choice):
            row[g * S: g * S + len(experts)] = experts
        times = bench.gpu_times(sub, sv.Plan(row[None], "lp"), w, "lp")
        best = min(best, float(times.max()))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_milp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    loads = rng.integers(1, 30, size=(1, 1, 4)).astype(float)
    speed = np.array([1.0, 1.0, 2.0]) if seed == 2 else None
    inst = Instance(loads=loads, num_nodes=1, gpus_per_node=3, slots_per_gpu=2, gpu_speed=speed)
    sol = exact.solve(inst, mip_gap=1e-9)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(_brute_force(inst, 0, 0), rel=1e-6)
    assert model.makespan_lower_bound(loads[0], 3, 2, speed)[0] <= sol.objective + 1e-9


def test_milp_bound_for_the_no_spare_slot_case():
    # brute force: 10 + 1 on one GPU, 1 + 1 on the other -> 11 (the combinatorial bound is 10)
    inst = _two_gpu_instance([[[10.0, 1.0, 1.0, 1.0]]])
    sol = exact.solve(inst)
    assert sol.objective == pytest.approx(11.0)
    assert _brute_force(inst, 0, 0) == pytest.approx(11.0)
    assert bench.bound(inst, window="planned", milp_time_limit=5).value == pytest.approx(11.0)
    # the exact method: its heuristic plans reach 11 but the bound 10 leaves a 10 % gap, so
    # the MILP runs on that layer and proves 11
    plan = sv.exact_placement(inst)
    assert plan.info["bound"].tolist() == [pytest.approx(11.0)]
    assert plan.info["makespan"].tolist() == [pytest.approx(11.0)]
    assert plan.info["status"] == "certified"


def test_migration_penalty_keeps_the_previous_placement():
    # previous: expert 0 on GPU 0 with expert 1, expert 2 + its second replica... (0,1 | 0,2)
    prev = np.array([[0, 1, 0, 2]])
    loads = np.array([[[10.0, 4.0, 2.0]]])
    free = Instance(loads=loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    kept = Instance(loads=loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=2,
                    previous_placement=prev, migration_cost=100.0)
    assert exact.solve(free).objective == pytest.approx(8.0)  # (10 + 4 + 2) / 2
    sol = exact.solve(kept)
    y = sol.decisions["y"]
    moved = sum(v > 0.5 for (_, e, g), v in y.items() if e not in prev[0, g * 2: g * 2 + 2])
    assert moved == 0
    assert sol.objective == pytest.approx(8.0)  # the previous placement balances already


def test_group_locality_puts_each_group_on_one_node():
    inst = inst_mod.generate("tiny", windows=2, seed=3)
    inst = Instance(loads=inst.loads, num_nodes=2, gpus_per_node=2, slots_per_gpu=2,
                    num_groups=2)
    sol = exact.solve(inst, group_locality=True, layers=[0])
    y = sol.decisions["y"]
    for group in range(2):
        nodes = {g // 2 for (_, e, g), v in y.items() if v > 0.5 and e // 3 == group}
        assert len(nodes) == 1


# -- Pyomo vs CVXPY vs matrix path -------------------------------------------------------------------
def test_dispatch_lp_pyomo_cvxpy_and_matrix_path_agree():
    inst = inst_mod.generate("small", windows=3, skew=1.2, seed=4)
    phy2log = sv.POLICIES["eplb"](inst).phy2log
    pyomo_sol = exact.solve(inst, placement=phy2log)
    cvx_sol = exact.solve(inst, backend="cvxpy", placement=phy2log)
    _, makespan, _ = sv.lp_dispatch(phy2log, inst.planned_loads, inst.slots_per_gpu)
    assert pyomo_sol.objective == pytest.approx(cvx_sol.objective, rel=1e-6)
    assert pyomo_sol.objective == pytest.approx(makespan.sum(), rel=1e-6)
    for prices in (pyomo_sol.prices["gpu_load"], cvx_sol.prices["gpu_load"]):
        by_layer = prices.groupby(level="layer").sum()
        np.testing.assert_allclose(by_layer.to_numpy(), 1.0, atol=1e-6)  # sum_g pi_g = 1
        assert (prices >= -1e-9).all()
    # on a plan whose duals are unique (an isolated hot GPU), the prices agree exactly
    hot = Instance(loads=np.array([[[10.0, 1.0, 1.0, 1.0]], [[2.0, 2.0, 3.0, 1.0]]]),
                   num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    plan = np.array([[0, 1, 2, 3]])
    a = exact.solve(hot, placement=plan).prices["gpu_load"].to_numpy()
    b = exact.solve(hot, backend="cvxpy", placement=plan).prices["gpu_load"].to_numpy()
    np.testing.assert_allclose(a, [1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(b, [1.0, 0.0], atol=1e-7)
    assert sv.lp_dispatch(plan, hot.planned_loads, 2)[2].tolist() == [[1.0, 0.0]]


def test_lp_relaxation_is_the_total_bound():
    inst = inst_mod.generate("tiny", windows=2, seed=1)
    sol = exact.solve(inst, relax=True)
    lb = model.makespan_lower_bound(inst.planned_loads, inst.num_gpus, inst.slots_per_gpu)
    assert sol.objective <= lb.sum() + 1e-6  # the valid inequalities keep it a relaxation
    assert sol.objective >= (inst.planned_loads.sum(axis=1) / inst.num_gpus).sum() - 1e-6


# -- rules: feasible on random instances --------------------------------------------------------------
@st.composite
def instances(draw):
    nodes = draw(st.integers(1, 2))
    gpus_per_node = draw(st.integers(1, 3))
    G = nodes * gpus_per_node
    slots = draw(st.integers(1, 4))
    groups = draw(st.sampled_from([1, 2])) if G * slots >= 2 else 1
    E = draw(st.integers(1, G * slots))
    E = max(groups, E - E % groups)
    windows = draw(st.integers(1, 3))
    layers = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 10_000))
    loads = np.random.default_rng(seed).lognormal(0, 1.5, size=(windows, layers, E)).round(2)
    if draw(st.booleans()):
        loads[..., 0] = 0.0
    return Instance(loads=loads, num_nodes=nodes, gpus_per_node=gpus_per_node,
                    slots_per_gpu=slots, num_groups=groups)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_every_rule_returns_a_feasible_plan(inst):
    for name, policy in sv.POLICIES.items():
        if name == "exact":
            continue
        plan = policy(inst)
        distinct = not name.startswith("eplb")  # EPLB may co-locate replicas, as DeepSeek's does
        phy2log = model.check_placement(inst, plan.phy2log, distinct=distinct)
        flows = sv.dispatch_flows(plan, inst, inst.next_loads)
        bench._check_flows(flows, phy2log, inst.next_loads)
        outcome = bench.evaluate(inst, name, detail=False)
        assert outcome.cost >= bench.bound(inst).value - 1e-6


def test_exact_certifies_the_planned_window_and_evaluator_agrees():
    inst = inst_mod.generate("small", windows=3, skew=1.0, seed=0)
    plan = sv.exact_placement(inst)
    times = bench.gpu_times(inst, plan, inst.planned_loads)
    cost = times.max(axis=1).sum()
    assert cost == pytest.approx(plan.info["makespan"].sum(), rel=1e-6)
    assert plan.info["bound"].sum() <= cost + 1e-6
    assert cost <= 1.01 * plan.info["bound"].sum()


def test_counts_by_bids_match_eplb_replication():
    # the k-th extra replica bids w / k: all at once this is EPLB's one-at-a-time rule (the
    # next slot to the largest load per replica), here on random loads without ties
    w = np.random.default_rng(0).uniform(0, 10, (5, 12))
    for slots in (12, 13, 20, 40):
        np.testing.assert_array_equal(sv.counts_by_bids(w, slots, 12),
                                      sv.replicate_experts(w, slots)[2])


def test_bid_price_bids_by_hand():
    # 2 GPUs x 2 slots, 3 experts: one extra slot. History windows 1, 6, 5 then (planned)
    # 5, 6, 1; load change |5 - 1|, 0, |1 - 5| = 4, 0, 4, so with kappa = 0.5 the risk-weighted
    # loads are 7, 6, 3 and the extra replica goes to expert 0 (the planned load alone: 1)
    inst = Instance(loads=np.array([[[1.0, 6.0, 5.0]], [[5.0, 6.0, 1.0]], [[4.0, 4.0, 4.0]]]),
                    num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    assert sv.BidPrice()(inst).info["count"].tolist() == [[2, 1, 1]]
    assert sv.BidPrice(kappa=0.0)(inst).info["count"].tolist() == [[1, 2, 1]]
    # history windows are rescaled to the planned window's total before the changes are taken:
    # 1, 6, 5 (total 12) against a planned 10, 12, 2 (total 24) counts as 2, 12, 10
    grown = Instance(loads=np.array([[[1.0, 6.0, 5.0]], [[10.0, 12.0, 2.0]], [[4.0, 4.0, 4.0]]]),
                     num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    np.testing.assert_array_equal(sv.scaled_history(grown)[:, 0], [[2.0, 12.0, 10.0], [10.0, 12.0, 2.0]])
    # previous placement GPU 0: experts 0, 2; GPU 1: expert 1. With GPU 1 the priced bottleneck
    # (pi = 0, 1; sum_g pi_g = 1) expert 1's price is 1 x 2 GPUs = 2, the others' 0: bids
    # 7 x 0.5 = 3.5, 6 x (0.5 + 0.5 x 2) = 9, 3 x 0.5 -> expert 1; with GPU 0 priced, expert 0
    prev = Instance(loads=inst.loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=2,
                    previous_placement=np.array([[0, 2, 1, -1]]))
    hot_1 = sv.BidPrice(gpu_price=np.array([[0.0, 1.0]]))(prev)
    assert hot_1.info["count"].tolist() == [[1, 2, 1]]
    assert sv.BidPrice(gpu_price=np.array([[1.0, 0.0]]))(prev).info["count"].tolist() == [[2, 1, 1]]


def test_bid_price_from_solution_uses_the_dual_prices():
    inst = inst_mod.generate("small", windows=3, seed=2)
    prev = sv.POLICIES["eplb"](inst).phy2log
    inst = Instance(loads=inst.loads, num_nodes=2, gpus_per_node=4, slots_per_gpu=5,
                    num_groups=4, previous_placement=prev)
    sol = exact.solve(inst, placement=prev)
    rule = sv.BidPrice.from_solution(sol, inst.num_layers, inst.num_gpus, price_weight=1.0)
    assert rule.gpu_price.shape == (inst.num_layers, inst.num_gpus)
    np.testing.assert_allclose(rule.gpu_price.sum(axis=1), 1.0, atol=1e-6)
    plan = rule(inst)
    model.check_placement(inst, plan.phy2log, distinct=True)
    # an isolated hot GPU: GPU 0 (experts 0, 1: 11 tokens) is the only tight row, so its dual
    # price is 1 and GPU 1's is 0 (by hand); from_solution carries exactly these prices
    hot = Instance(loads=np.array([[[10.0, 1.0, 1.0, 1.0]], [[2.0, 2.0, 3.0, 1.0]]]),
                   num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    hot_sol = exact.solve(hot, placement=np.array([[0, 1, 2, 3]]))
    hot_rule = sv.BidPrice.from_solution(hot_sol, 1, 2)
    np.testing.assert_allclose(hot_rule.gpu_price, [[1.0, 0.0]], atol=1e-7)
    for layers, gpus in (("1", 2), (1, 2.0), (0, 2)):  # before: a bare numpy TypeError for "1"
        with pytest.raises(InvalidInstanceError, match="must be a whole number"):
            sv.BidPrice.from_solution(hot_sol, layers, gpus)
    # the shape defaults to what the labels cover (1 layer x 2 GPUs here)
    np.testing.assert_allclose(sv.BidPrice.from_solution(hot_sol).gpu_price, [[1.0, 0.0]], atol=1e-7)


def test_bid_price_from_solution_names_a_nan_or_missing_price():
    hot = Instance(loads=np.array([[[10.0, 1.0, 1.0, 1.0]], [[2.0, 2.0, 3.0, 1.0]]]),
                   num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    sol = exact.solve(hot, placement=np.array([[0, 1, 2, 3]]))
    edited = dict(sol.prices)
    edited["gpu_load"] = sol.prices["gpu_load"].copy()
    edited["gpu_load"].iloc[1] = np.nan  # before: "no gpu_load price for layer 0, GPU 1"
    with pytest.raises(InvalidInstanceError, match="layer 0, GPU 1 is nan: prices must be finite"):
        sv.BidPrice.from_solution(dataclasses.replace(sol, prices=edited))
    edited["gpu_load"] = sol.prices["gpu_load"].iloc[:1]
    with pytest.raises(InvalidInstanceError, match="no gpu_load price for layer 0, GPU 1"):
        sv.BidPrice.from_solution(dataclasses.replace(sol, prices=edited), 1, 2)


# -- instances ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"loads": [[[1.0, -2.0]]]}, "negative"),
    ({"loads": [[[1.0, np.nan]]]}, "finite"),
    ({"loads": np.ones((1, 1, 9)), "gpus_per_node": 2, "slots_per_gpu": 4}, "every expert needs"),
    ({"loads": np.ones((1, 1, 6)), "num_groups": 4}, "must divide"),
    ({"loads": np.ones((1, 1, 4)), "gpu_speed": [1.0, 0.0, 1.0, 1.0]}, "gpu_speed"),
    ({"loads": np.ones((1, 1, 4)), "previous_placement": np.zeros((1, 3))}, "previous_placement"),
    ({"loads": np.ones((1, 1, 4)), "previous_placement": np.full((1, 8), 7)}, "expert ids"),
    ({"loads": np.ones((1, 1, 4)), "slots_per_gpu": 0}, "slots_per_gpu"),
    ({"loads": np.ones(4)}, "shape"),
    ({"loads": np.ones((1, 1, 4)), "migration_cost": -1.0}, "migration_cost must be >= 0"),
    ({"loads": np.ones((1, 1, 4)), "migration_cost": np.nan}, "migration_cost must be >= 0"),
    ({"loads": np.ones((1, 1, 4)), "gpu_speed": [1.0, 1.0]}, "one relative speed per GPU"),
    ({"loads": np.ones((1, 1, 4)), "previous_placement": np.full((1, 8), 0.5)}, "integer expert ids"),
    ({"loads": np.ones((1, 1, 4)), "num_nodes": True}, "num_nodes must be a positive integer"),
])
def test_bad_instances_raise_clear_errors(kwargs, match):
    with pytest.raises(InvalidInstanceError, match=match):
        Instance(**kwargs)


def test_json_round_trip_and_presets():
    inst = inst_mod.generate("small", windows=2, seed=5)
    full = Instance(loads=inst.loads, num_nodes=2, gpus_per_node=4, slots_per_gpu=5,
                    num_groups=4, previous_placement=sv.POLICIES["eplb"](inst).phy2log,
                    migration_cost=3.0, gpu_speed=np.linspace(1, 2, 8))
    back = Instance.from_json(full.to_json())
    np.testing.assert_array_equal(back.loads, full.loads)
    np.testing.assert_array_equal(back.previous_placement, full.previous_placement)
    np.testing.assert_array_equal(back.gpu_speed, full.gpu_speed)
    assert back.content_hash() == full.content_hash()
    ds = inst_mod.generate("deepseek_v3", windows=2, seed=0)
    assert (ds.num_layers, ds.num_experts, ds.num_gpus, ds.num_slots) == (58, 256, 32, 288)
    # popularity differs per layer and drifts between windows
    assert not np.allclose(ds.loads[0, 0], ds.loads[0, 1])
    assert not np.allclose(ds.loads[0, 0], ds.loads[1, 0])
    # an explicit size overrides the preset's (it was silently ignored)
    two = inst_mod.generate("deepseek_v3", windows=2, layers=2, seed=0)
    assert (two.num_layers, two.num_experts, two.num_gpus, two.num_slots) == (2, 256, 32, 288)


@pytest.mark.parametrize("kwargs, match", [
    ({"skew": -1.0}, "skew must be in"), ({"skew": float("nan")}, "skew must be in"),
    ({"tokens_per_window": -5.0}, "tokens_per_window must be in"),
    ({"tokens_per_window": 1e30}, "tokens_per_window must be in"),
    ({"layers": 0}, "layers must be a whole number"), ({"gpus_per_node": 1.5}, "gpus_per_node"),
    ({"drift": 1.0}, "drift must be in"), ({"persistent": 2.0}, "persistent must be in"),
])
def test_generator_refuses_bad_parameters_by_name(kwargs, match):
    with pytest.raises(InvalidInstanceError, match=match):
        inst_mod.generate(**kwargs)


def test_from_trace_sums_steps_into_windows(tmp_path):
    steps = [{"logical_expert_load": [[1, 2, 3, 4], [0, 1, 0, 1]]} for _ in range(5)]
    path = tmp_path / "load.json"
    path.write_text(json.dumps({"load_history": steps}))
    inst = inst_mod.from_trace(path, window=2, gpus_per_node=2)
    assert inst.loads.shape == (2, 2, 4)  # the fifth step (a partial window) is dropped
    np.testing.assert_array_equal(inst.loads[0, 0], [2, 4, 6, 8])
    assert inst.slots_per_gpu == 3


def test_gap_table_runs():
    import servopt

    inst = inst_mod.generate("small", windows=3, seed=1)
    table = servopt.gap_table(inst, ["eplb", "eplb_lp", "bid_price"])
    assert list(table["method"]) == ["eplb", "eplb_lp", "bid_price"]
    assert (table["gap"] >= -1e-9).all()
    # LP dispatch never does worse than even split on the same placement
    assert table.loc[1, "cost"] <= table.loc[0, "cost"] + 1e-6


def test_ring_placement_by_hand_and_its_fallback():
    # 2 experts x 2 replicas on 4 GPUs x 2 slots: expert 0 (heavier) on GPUs 0, 1, expert 1
    # starts where expert 0 ended: GPUs 1, 2; the single expert 2 goes to an empty GPU (3)
    w = np.array([[8.0, 6.0, 1.0]])
    count = np.array([[2, 2, 1]])
    row = sv.pack_ring(w, count, 4, 2)[0]
    hosts = {e: sorted({int(p) // 2 for p in np.nonzero(row == e)[0]}) for e in range(3)}
    assert hosts == {0: [0, 1], 1: [1, 2], 2: [3]}
    # with one slot per GPU the chain would put two replicas on GPU 1: dealt round-robin instead
    inst = Instance(loads=np.array([[[5.0, 5.0]]]), num_nodes=1, gpus_per_node=4,
                    slots_per_gpu=1)
    one = sv.pack_ring(inst.planned_loads, np.array([[2, 2]]), 4, 1)
    model.check_placement(inst, one, distinct=True)
    assert sorted(one[0].tolist()) == [0, 0, 1, 1]


def test_full_size_milp_is_refused_with_advice():
    inst = inst_mod.generate("deepseek_v3", windows=2, seed=0)
    with pytest.raises(InvalidInstanceError, match="pass layers="):
        exact.solve(inst)
    # one layer of it builds (8192 binaries); the decomposition certifies all 58 layers
    assert len(model.build(inst, layers=[0]).y) == 256 * 32


def test_a_planner_cannot_read_the_scored_window():
    seen = []

    def peek(instance):
        seen.append(instance.loads[-1].sum())  # the scored window: hidden from planners
        return sv.POLICIES["eplb"](instance)

    inst = inst_mod.generate(preset="tiny", windows=3, seed=0)
    assert bench.evaluate(inst, peek).cost == bench.evaluate(inst, "eplb").cost
    assert seen == [0.0] and inst.loads[-1].sum() > 0



def test_the_evaluator_measures_planning_time_itself():
    # audit R11: Plan(wall_s=-5.0) was reported as the method's time with status ok; the evaluator
    # is the judge, so it times the call itself and a plan's own note of its time is only checked
    import math
    import time as _time

    from servopt.solvers.expert_placement import POLICIES, Plan

    inst = inst_mod.generate(seed=0)
    placement = POLICIES["eplb"](inst).phy2log

    def slow_but_claims_instant(instance):
        _time.sleep(0.05)
        return Plan(placement, wall_s=1e-9)

    assert bench.evaluate(inst, slow_but_claims_instant).wall_s >= 0.05
    for bad in (-5.0, math.inf, "fast", True, None):
        with pytest.raises(InvalidInstanceError, match="wall_s"):
            Plan(placement, wall_s=bad)
    assert Plan(placement, wall_s=2).wall_s == 2.0
    assert math.isnan(Plan(placement, wall_s=np.float32("nan")).wall_s)  # NaN of any float type
