"""Expert placement heuristics on GPUs of unequal speed: renumbering the GPUs (their speeds with
them) renumbers the plan and leaves every cost as it was; with equal speeds the rules are the
least-time-now rules they always were.

Audit R27, finding 1: ``no_replication``, ``bid_price`` and ``bid_price_lp`` put the heaviest
expert on GPU 0 whatever its speed (every GPU's time is 0 at the start, and the least time won),
and ``pack_ring``'s ring walked the GPUs in index order, so the same GPUs numbered another way
cost up to 4x more on a tie-free instance.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from servopt.benchmarks import expert_placement as bench
from servopt.instances.expert_placement import Instance, generate
from servopt.solvers import expert_placement as sv

HEURISTICS = ("no_replication", "bid_price", "bid_price_lp")


def _renumbered(inst: Instance, perm: np.ndarray) -> Instance:
    """The same GPUs, new GPU j being old GPU perm[j] (speeds and a previous placement follow)."""
    prev = inst.previous_placement
    if prev is not None:
        L = prev.shape[0]
        prev = prev.reshape(L, inst.num_gpus, inst.slots_per_gpu)[:, perm].reshape(L, -1)
    return dataclasses.replace(inst, gpu_speed=np.asarray(inst.gpu_speed)[perm], previous_placement=prev)


@pytest.mark.parametrize("speed", list(itertools.permutations([0.5, 1.0, 2.0])))
@pytest.mark.parametrize("method", HEURISTICS)
def test_three_gpus_of_three_speeds_cost_the_optimum_under_every_numbering(method, speed):
    # One layer, experts of 90, 30 and 10 tokens, 3 GPUs x 1 slot of speeds 0.5, 1 and 2 in some
    # order. Three slots for three experts: no replicas, one expert per GPU, and the makespan is
    # the largest load / speed. The optimum is 45: expert 0 alone needs 90 / 2 = 45 on the fastest
    # GPU, and 90 -> speed 2 (45), 30 -> speed 1 (30), 10 -> speed 0.5 (20) reaches it. The rule
    # (heaviest first, to the GPU where it finishes first) builds exactly that plan: 90 finishes at
    # 180, 90, 45 on speeds 0.5, 1, 2 -> speed 2; then 30 at 60, 30 -> speed 1; 10 on speed 0.5.
    # The old rule (least time now) sent 90 to GPU 0 whatever its speed: 180 when GPU 0 had 0.5.
    inst = Instance(loads=np.array([[[90.0, 30.0, 10.0]]]), num_nodes=1, gpus_per_node=3,
                    slots_per_gpu=1, gpu_speed=np.array(speed))
    out = bench.evaluate(inst, method)
    assert out.cost == pytest.approx(45.0)
    plan = sv.POLICIES[method](inst)
    host_speed = {int(e): speed[p] for p, e in enumerate(plan.phy2log[0]) if e >= 0}
    assert host_speed == {0: 2.0, 1: 1.0, 2: 0.5}


def _random_heterogeneous(seed: int, **kw) -> Instance:
    rng = np.random.default_rng(seed)
    inst = generate("small", seed=seed, **kw)
    speed = rng.permutation(np.linspace(0.5, 1.8, inst.num_gpus))  # distinct speeds
    return dataclasses.replace(inst, gpu_speed=speed)


@pytest.mark.parametrize("seed", [0, 1])
def test_gpu_numbering_does_not_change_a_heuristic_cost(seed):
    # 8 GPUs of distinct speeds, 32 experts, 5 slots per GPU (replicas, the ring, singles):
    # the cost of each heuristic is the same for the same GPUs numbered four other ways.
    # On the old code the costs spread by 14-73% (R27, ep3.py).
    inst = _random_heterogeneous(seed)
    rng = np.random.default_rng(100 + seed)
    perms = [np.argsort(inst.gpu_speed), np.argsort(-inst.gpu_speed)] + [rng.permutation(inst.num_gpus)
                                                                        for _ in range(2)]
    for method in HEURISTICS:
        ref = bench.evaluate(inst, method).cost
        for perm in perms:
            assert bench.evaluate(_renumbered(inst, perm), method).cost == pytest.approx(ref, rel=1e-9), \
                (method, perm)


def test_the_plan_is_renumbered_with_the_gpus():
    # Stronger than equal costs: the expert sets on each GPU move with the GPU.
    inst = _random_heterogeneous(3)
    perm = np.random.default_rng(7).permutation(inst.num_gpus)
    other = _renumbered(inst, perm)
    G, S = inst.num_gpus, inst.slots_per_gpu
    for method in HEURISTICS:
        a = sv.POLICIES[method](inst).phy2log.reshape(inst.num_layers, G, S)
        b = sv.POLICIES[method](other).phy2log.reshape(inst.num_layers, G, S)
        for layer in range(inst.num_layers):
            for j in range(G):
                assert sorted(b[layer, j]) == sorted(a[layer, perm[j]]), (method, layer, j)


@pytest.mark.parametrize("method", ["bid_price", "bid_price_lp"])
def test_renumbering_the_deployed_gpus_with_their_speeds_keeps_the_migration_cost(method):
    # With a previous placement and a migration cost the rule also keeps and moves replicas
    # (sticky_placement); renumbering the GPUs, the deployed placement and the speeds together,
    # must leave the cost (makespan + beta x migrations) as it was.
    inst = _random_heterogeneous(4)
    prev = sv.POLICIES["eplb"](dataclasses.replace(inst, gpu_speed=None)).phy2log
    inst = dataclasses.replace(inst, previous_placement=prev, migration_cost=5.0)
    ref = bench.evaluate(inst, method)
    for perm in (np.argsort(inst.gpu_speed), np.random.default_rng(1).permutation(inst.num_gpus)):
        out = bench.evaluate(_renumbered(inst, perm), method)
        assert out.cost == pytest.approx(ref.cost, rel=1e-9)
        assert out.metrics["migrations"] == ref.metrics["migrations"]


def test_sticky_placement_keeps_the_faster_host_and_adds_where_a_replica_finishes_first():
    # Hand check. Loads 3 and 2, one replica each, 2 GPUs x 2 slots of speeds 1 and 3. Expert 0
    # had replicas on both GPUs and keeps one: the faster GPU's (the old rule kept the lowest
    # index). Expert 1 had none: on the slow GPU it finishes at 0 + 2 / 1 = 2, on the fast one at
    # 3 / 3 + 2 / 3 = 1.67, so it joins expert 0 there (the least time now, 0, was the slow GPU's).
    # Numbered the other way round, the same GPU (now GPU 0) gets both.
    prev = np.array([[0, -1, 0, -1]])
    w, count = np.array([[3.0, 2.0]]), np.array([[1, 1]])
    out = sv.sticky_placement(w, count, prev, 2, 2, np.array([1.0, 3.0]))
    assert list(out[0, :2]) == [-1, -1] and sorted(out[0, 2:]) == [0, 1]
    out = sv.sticky_placement(w, count, prev, 2, 2, np.array([3.0, 1.0]))
    assert sorted(out[0, :2]) == [0, 1] and list(out[0, 2:]) == [-1, -1]


# --- equal speeds: the choices are those of the least-time-now rules ----------------------------
def _least_time_now_lpt(piece, count, G, S, speed):
    """Reference (the rule before speeds counted, in plain Python): replicas heaviest first (expert
    id on ties), each to the GPU with the least load / speed that has a free slot and no replica
    of that expert, lowest index on ties."""
    L, E = piece.shape
    out = np.full((L, G * S), -1, dtype=np.int64)
    for layer in range(L):
        reps = sorted((-piece[layer, e], e) for e in range(E) for _ in range(count[layer, e]))
        load, used, hosts = [0.0] * G, [0] * G, [set() for _ in range(G)]
        for neg_w, e in reps:
            cands = [g for g in range(G) if used[g] < S and e not in hosts[g]]
            g = min(cands, key=lambda g: (load[g] / speed[g], g))
            out[layer, g * S + used[g]] = e
            load[g] += -neg_w
            used[g] += 1
            hosts[g].add(e)
    return out


def _index_ring_reference(weight, count, G, S, speed):
    """Reference pack_ring for equal speeds (the ring in index order, singles in rounds: the
    round's i-th heaviest to the i-th least-loaded free GPU), for plans the ring does not overfill."""
    L, E = weight.shape
    out = np.full((L, G * S), -1, dtype=np.int64)
    for layer in range(L):
        w, c = weight[layer], count[layer]
        multi = sorted((e for e in range(E) if c[e] > 1), key=lambda e: (-w[e], e))
        singles = sorted((e for e in range(E) if c[e] == 1), key=lambda e: (-w[e], e))
        load, slots = [0.0] * G, [[] for _ in range(G)]
        pos = 0
        for e in multi:
            for k in range(c[e]):
                g = (pos + k) % G
                slots[g].append(e)
                load[g] += w[e] / c[e]
            pos += c[e] - 1
        if any(len(s) > S for s in slots):
            return None
        while singles:
            free = sorted((g for g in range(G) if len(slots[g]) < S), key=lambda g: (load[g] / speed[g], g))
            for g in free:
                if not singles:
                    break
                e = singles.pop(0)
                slots[g].append(e)
                load[g] += w[e]
        for g in range(G):
            out[layer, g * S: g * S + len(slots[g])] = slots[g]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_equal_speeds_choose_what_least_time_now_chose(seed):
    # argmin((load + piece) / speed) == argmin(load / speed) with the same tie-break when all
    # speeds are equal; integer loads make ties frequent, and a speed of 0.7 makes load / speed
    # round. Compared slot for slot with plain-Python references of the old rules.
    rng = np.random.default_rng(seed)
    checked_ring = 0
    for _ in range(40):
        L, G, S = int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(1, 4))
        E = int(rng.integers(1, G * S + 1))
        w = (rng.integers(0, 5, (L, E)) * 1.0 if rng.random() < 0.5 else rng.random((L, E)) * 50)
        speed = np.full(G, [1.0, 0.7, 3.3][int(rng.integers(3))])
        count = sv.counts_by_bids(w, G * S, min(G, G * S - E + 1))
        piece = w / count
        np.testing.assert_array_equal(sv.pack_replicas(piece, count, G, S, speed),
                                      _least_time_now_lpt(piece, count, G, S, speed))
        ones = np.ones_like(count)
        np.testing.assert_array_equal(sv.no_replication_placement(w, G, S, speed),
                                      _least_time_now_lpt(w, ones, G, S, speed))
        ref = _index_ring_reference(w, count, G, S, speed)
        if ref is not None:
            np.testing.assert_array_equal(sv.pack_ring(w, count, G, S, speed), ref)
            checked_ring += 1
    assert checked_ring >= 20


# --- counts_by_bids: tied bids in a fixed order, whatever numpy's version ----------------------
def _slots_one_at_a_time(w, num_slots, max_count):
    """Reference (plain Python): each extra slot in turn to the expert with the largest w / count
    among those below ``max_count`` replicas, the lowest expert index on ties."""
    L, E = w.shape
    count = np.ones((L, E), dtype=np.int64)
    for layer in range(L):
        for _ in range(num_slots - E):
            open_ = [e for e in range(E) if count[layer, e] < max_count]
            if not open_:
                break
            e = min(open_, key=lambda e: (-w[layer, e] / count[layer, e], e))
            count[layer, e] += 1
    return count


def test_tied_bids_go_to_the_lowest_expert_index_first():
    # Hand checks. Three experts of load 0, 8 slots, at most 4 replicas: the 5 extra slots are
    # bids of 0 all tied, so expert 0 takes 3 (up to 4 replicas), expert 1 the other 2: 4, 3, 1.
    # (np.argpartition chose among the ties: 2, 3, 3 under numpy 1.26, 4, 3, 1 under 2.x.)
    np.testing.assert_array_equal(sv.counts_by_bids(np.zeros((1, 3)), 8, 4), [[4, 3, 1]])
    # Loads 2, 4, 4, 1, 7 slots, at most 3 replicas: the bids are 2, 1 | 4, 2 | 4, 2 | 1, 0.5;
    # the 3 extra slots go to 4 (expert 1), 4 (expert 2) and one of the three bids of 2, expert
    # 0's (lowest index): 2, 2, 2, 1 (numpy 1.26 and 2.x both gave expert 1's: 1, 3, 2, 1)
    np.testing.assert_array_equal(sv.counts_by_bids(np.array([[2.0, 4.0, 4.0, 1.0]]), 7, 3),
                                  [[2, 2, 2, 1]])


@pytest.mark.parametrize("seed", range(3))
def test_counts_by_bids_are_the_slots_handed_out_one_at_a_time(seed):
    # small integer loads (zeros included): ties in almost every instance
    rng = np.random.default_rng(seed)
    for _ in range(300):
        L, E = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        num_slots, max_count = E + int(rng.integers(0, 12)), int(rng.integers(1, 6))
        w = rng.integers(0, 4, (L, E)) * 1.0
        np.testing.assert_array_equal(sv.counts_by_bids(w, num_slots, max_count),
                                      _slots_one_at_a_time(w, num_slots, max_count))


def test_ring_order_pairs_fast_with_slow_and_keeps_index_order_for_equal_speeds():
    np.testing.assert_array_equal(sv.ring_order(np.ones(5)), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(sv.ring_order(np.array([0.5, 1.0, 2.0])), [2, 0, 1])
    np.testing.assert_array_equal(sv.ring_order(np.array([1.0, 1.0, 2.0, 2.0])), [2, 0, 3, 1])
    np.testing.assert_array_equal(sv.ring_order(np.array([2.0, 1.0, 1.0, 1.0])), [0, 1, 2, 3])


# --- every replica lands in a slot of its own GPU (audit R58 F2) --------------------------------
# With unequal speeds the greedy can fill the fast GPUs early, and the last expert's replicas then
# find too few GPUs with room and without that expert. pack_replicas wrote such a replica at GPU
# 0's next slot, which lies past GPU 0's slots, over GPU 1's first replica: wrong counts, a
# duplicate on a GPU, or an expert with no replica and a dispatch LP with no solution.
R58 = dict(loads=np.array([[[2.0, 4.0, 5.0]]]), num_nodes=1, gpus_per_node=3, slots_per_gpu=2,
           gpu_speed=np.array([1.0, 2.0, 1.0]))


def _brute_force_makespan(w, speed, S):
    """Least makespan over every placement (each GPU any set of at most S distinct experts, every
    expert somewhere), each served by its min-max dispatch LP, solved here with scipy's linprog:
    variables x[e, g] for the hosted pairs and t; sum_g x[e, g] = w[e], sum_e x[e, g] <= speed[g] t."""
    from scipy.optimize import linprog

    E, G = len(w), len(speed)
    subsets = [c for k in range(S + 1) for c in itertools.combinations(range(E), k)]
    best = np.inf
    for hosts in itertools.product(subsets, repeat=G):
        if set().union(*hosts) != set(range(E)):
            continue
        pairs = [(e, g) for g in range(G) for e in hosts[g]]
        n = len(pairs) + 1
        A_eq = np.zeros((E, n))
        A_ub = np.zeros((G, n))
        for j, (e, g) in enumerate(pairs):
            A_eq[e, j] = 1.0
            A_ub[g, j] = 1.0
        A_ub[:, -1] = -np.asarray(speed)
        c = np.zeros(n)
        c[-1] = 1.0
        res = linprog(c, A_ub=A_ub, b_ub=np.zeros(G), A_eq=A_eq, b_eq=w, bounds=(0, None))
        assert res.status == 0
        best = min(best, res.fun)
    return best


def test_r58_instance_hosts_every_expert_and_exact_reaches_the_brute_force_optimum():
    # Loads 2, 4, 5 on 3 GPUs x 2 slots of speeds 1, 2, 1; counts 1, 2, 3 (all 6 slots). Heaviest
    # piece first, where it finishes first: expert 0 (2) -> GPU 1 (2 / 2 = 1), expert 1's two
    # pieces (2) -> GPU 1 (4 / 2 = 2, the faster of three ties at 2) and GPU 0 (GPU 1 hosts it; GPU
    # 0 and 2 tie, lower index), expert 2's pieces (5/3) -> GPU 2 (1.67 < 3.67) and GPU 0 (the only
    # GPU with room without it). The third has no GPU: not placed. The old code wrote it over GPU
    # 1's expert 0 and expert 0 had no replica.
    w = R58["loads"][0]
    count = sv.counts_by_bids(w, 6, 3)
    np.testing.assert_array_equal(count, [[1, 2, 3]])
    plan = sv.balanced_plan(w, 3, 2, R58["gpu_speed"])
    np.testing.assert_array_equal(plan, [[1, 2, 0, 1, 2, -1]])
    # the optimum: total 11 tokens over total speed 4 = 2.75 is a lower bound, and brute force
    # over every placement reaches it (e.g. this plan: GPU 1 serves 2 + 3.5 = 5.5 = 2 x 2.75)
    assert _brute_force_makespan(w[0], R58["gpu_speed"], 2) == pytest.approx(2.75)
    inst = Instance(**R58)
    assert bench.evaluate(inst, "exact").cost == pytest.approx(2.75)
    assert bench.bound(inst, time_limit=10).value == pytest.approx(2.75)
    import servopt

    assert servopt.solve(inst).objective == pytest.approx(2.75)


def _check_plan(plan, count, G, S):
    """Every expert hosted, at most count[e] times, never twice on one GPU, and a replica missing
    only when every GPU without that expert is full (no GPU could have taken it)."""
    L, E = count.shape
    for layer in range(L):
        gpus = plan[layer].reshape(G, S)
        hosted = [[e for e in row if e >= 0] for row in gpus]
        for row in hosted:
            assert len(set(row)) == len(row), f"a GPU hosts an expert twice: {plan[layer]}"
        got = np.bincount(plan[layer][plan[layer] >= 0], minlength=E)
        assert (got >= 1).all(), f"an expert has no replica: {plan[layer]}, counts {count[layer]}"
        assert (got <= count[layer]).all(), f"more replicas than asked: {plan[layer]}, {count[layer]}"
        for e in np.nonzero(got < count[layer])[0]:
            assert all(len(row) == S for row in hosted if e not in row), plan[layer]


def test_balanced_plans_with_unequal_speeds_host_every_expert_within_the_slots():
    rng = np.random.default_rng(58)
    short = 0  # plans where some replica had no GPU (the old code misplaced it)
    for _ in range(400):
        L, G, S = int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(1, 4))
        E = int(rng.integers(1, G * S + 1))
        w = rng.integers(0, 10, (L, E)).astype(float)
        speed = rng.choice([0.5, 1.0, 2.0], G)
        count = sv.counts_by_bids(w, G * S, min(G, G * S - E + 1))
        plan = sv.balanced_plan(w, G, S, speed)
        _check_plan(plan, count, G, S)
        short += int((sv.expert_counts(plan, E) < count).any())
    assert short > 0  # the sweep reaches the case it is about


def test_exact_skips_a_candidate_that_leaves_an_expert_without_a_replica(monkeypatch):
    # A candidate plan that does not host every expert of a layer is not scored there (the
    # dispatch LP has no solution) instead of failing the whole plan: here the balanced plan is
    # replaced by the old code's plan for R58 (expert 0 overwritten) on layer 0 of two layers.
    inst = Instance(loads=np.array([[[2.0, 4.0, 5.0], [3.0, 3.0, 3.0]]]), num_nodes=1,
                    gpus_per_node=3, slots_per_gpu=2, gpu_speed=np.array([1.0, 2.0, 1.0]))
    real = sv.balanced_plan

    def broken(w, G, S, speed=None):
        plan = real(w, G, S, speed)
        plan[0] = [1, 2, 2, 1, 2, -1]
        return plan

    monkeypatch.setattr(sv, "balanced_plan", broken)
    plan = sv.exact_placement(inst)
    assert sv.covers_all_experts(plan.phy2log, 3)
    # each layer's optimum is total / total speed: 11 / 4 and 9 / 4
    np.testing.assert_allclose(plan.info["makespan"], [2.75, 2.25], rtol=1e-9)
