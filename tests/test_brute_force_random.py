"""Randomised brute-force cross-checks of every exact model and evaluator on tiny instances.

Each decision gets 20-50 seeded random tiny instances. The brute force here is written from the
problem statement in the model docstrings and shares no code with the models, the solvers or
the evaluators (it imports only the Instance classes, the public solve and the evaluators, and
compares against them). Features the fixed tests may not hit are drawn on purpose: ties (equal
loads, equal requests, equal arrivals), zero loads and zero-token prompts, capacities exactly
equal to a demand, batch caps and slot limits that bind, late arrivals, GPU speeds, previous
placements with a migration cost.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.core import InfeasibleError, InvalidInstanceError

SEEDS = range(30)


# =================================================================================================
# expert placement
# =================================================================================================
def _min_makespan(hosts: list[set[int]], w: np.ndarray, speed: np.ndarray) -> float:
    """Min over dispatches of the max GPU time for a fixed placement (hosts[g] = experts on g).

    A dispatch with makespan z exists iff every set X of experts fits on the GPUs hosting one
    of them: w(X) <= z * speed(N(X)) (Gale / Hall for bipartite supply and demand), so the
    optimum is max_X w(X) / speed(N(X)). No LP involved.
    """
    E = len(w)
    best = 0.0
    for mask in range(1, 1 << E):
        X = [e for e in range(E) if mask >> e & 1]
        load = float(sum(w[e] for e in X))
        if load == 0:
            continue
        cap = float(sum(speed[g] for g, h in enumerate(hosts) if h & set(X)))
        best = max(best, load / cap)
    return best


def _even_makespan(hosts: list[set[int]], w: np.ndarray, speed: np.ndarray) -> float:
    """Every replica of an expert takes an equal share (EPLB's semantics)."""
    count = np.zeros(len(w))
    for h in hosts:
        for e in h:
            count[e] += 1
    return max(sum(w[e] / count[e] for e in h) / speed[g] for g, h in enumerate(hosts))


def _placements(E: int, G: int, S: int):
    """Every placement: each GPU a set of at most S distinct experts, every expert placed."""
    subsets = [frozenset(c) for k in range(S + 1) for c in itertools.combinations(range(E), k)]
    for choice in itertools.product(subsets, repeat=G):
        if len(frozenset().union(*choice)) == E:
            yield [set(c) for c in choice]


def _phy2log(hosts: list[set[int]], S: int) -> np.ndarray:
    row = np.full(len(hosts) * S, -1)
    for g, h in enumerate(hosts):
        row[g * S: g * S + len(h)] = sorted(h)
    return row


def _expert_instance(seed: int):
    from servopt.instances.expert_placement import Instance

    rng = np.random.default_rng(seed)
    G = int(rng.integers(2, 4))
    S = int(rng.integers(1, 3))
    E = int(rng.integers(max(2, G * S - 2), G * S + 1)) if G * S > 2 else 2
    E = min(E, 5)
    kind = seed % 5
    if kind == 0:  # ties: all loads equal
        w = np.full(E, float(rng.integers(1, 10)))
    elif kind == 1:  # zero loads
        w = rng.integers(0, 3, size=E).astype(float) * rng.integers(0, 10)
    else:
        w = rng.integers(0, 25, size=E).astype(float)
    speed = None
    if seed % 3 == 2:
        speed = rng.choice([1.0, 2.0, 0.5], size=G)
    prev, beta = None, 0.0
    if seed % 4 == 3:  # a previous placement (a random valid one) and a migration cost
        allp = list(_placements(E, G, S))
        prev_hosts = allp[int(rng.integers(len(allp)))]
        prev = _phy2log(prev_hosts, S)[None]
        beta = float(rng.choice([0.5, 2.0, 5.0]))
    inst = Instance(loads=w[None, None, :], num_nodes=1, gpus_per_node=G, slots_per_gpu=S,
                    gpu_speed=speed, previous_placement=prev, migration_cost=beta)
    return inst


def _expert_brute(inst) -> tuple[float, float]:
    """(min of makespan + beta * migrations, min makespan) over every placement."""
    E, G, S = inst.num_experts, inst.num_gpus, inst.slots_per_gpu
    w = inst.loads[0, 0]
    speed = inst.speed
    prev = None
    if inst.previous_placement is not None:
        prev = [set(int(e) for e in inst.previous_placement[0, g * S:(g + 1) * S] if e >= 0)
                for g in range(G)]
    best_obj, best_z = math.inf, math.inf
    for hosts in _placements(E, G, S):
        z = _min_makespan(hosts, w, speed)
        moved = 0 if prev is None else sum(len(h - p) for h, p in zip(hosts, prev, strict=True))
        best_obj = min(best_obj, z + inst.migration_cost * moved)
        best_z = min(best_z, z)
    return best_obj, best_z


@pytest.mark.parametrize("seed", range(25))
def test_expert_placement_milp_matches_brute_force(seed):
    from servopt.benchmarks import expert_placement as bench
    from servopt.solvers import expert_placement as sv

    inst = _expert_instance(seed)
    G, S = inst.num_gpus, inst.slots_per_gpu
    best_obj, best_z = _expert_brute(inst)
    sol = servopt.solve(inst, mip_gap=1e-9)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(best_obj, rel=1e-6, abs=1e-6), inst.to_json()
    # the returned placement, scored by the brute force's own dispatch formula and the evaluator
    y = sol.decisions["y"]
    hosts = [{int(e) for (_, e, g), v in y.items() if v > 0.5 and g == gg} for gg in range(G)]
    assert all(len(h) <= S for h in hosts)
    w, speed = inst.loads[0, 0], inst.speed
    z = _min_makespan(hosts, w, speed)
    moved = bench.migrations(inst, _phy2log(hosts, S)[None])
    assert z + inst.migration_cost * moved == pytest.approx(best_obj, rel=1e-6, abs=1e-6)
    plan = sv.Plan(_phy2log(hosts, S)[None], "lp")
    assert bench.gpu_times(inst, plan, inst.loads[0], "lp").max() == pytest.approx(
        z, rel=1e-6, abs=1e-6)
    assert bench.gpu_times(inst, plan, inst.loads[0], "even").max() == pytest.approx(
        _even_makespan(hosts, w, speed), rel=1e-9, abs=1e-9)
    # the evaluator's cost of a policy returning this plan (one window: plan = scored window)
    outcome = bench.evaluate(inst, lambda _inst: plan, detail=False)
    assert outcome.cost == pytest.approx(best_obj, rel=1e-6, abs=1e-6)
    # the combinatorial bound and the evaluator's bound never exceed the brute-force makespan
    assert bench.bound(inst).value <= best_z + 1e-9


@pytest.mark.parametrize("seed", SEEDS)
def test_expert_placement_exact_method_is_certified_against_brute_force(seed):
    from servopt.benchmarks import expert_placement as bench
    from servopt.solvers import expert_placement as sv

    inst = _expert_instance(seed)
    best_obj, _ = _expert_brute(inst)
    plan = sv.exact_placement(inst)
    cost = bench.evaluate(inst, "exact", detail=False).cost
    assert cost >= best_obj - 1e-6
    objective = plan.info.get("objective", plan.info["makespan"])
    assert float(np.sum(plan.info["bound"])) <= best_obj + 1e-6
    assert cost == pytest.approx(float(np.sum(objective)), rel=1e-6, abs=1e-6)
    assert cost <= 1.01 * best_obj + 1e-6


# =================================================================================================
# batch scheduling
# =================================================================================================
def _batch_instance(seed: int):
    from servopt.instances.batch_scheduling import Instance

    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(3, 6))
    if seed % 5 == 0:  # several identical requests
        a = np.zeros(n, dtype=int)
        s = np.full(n, int(rng.integers(0, 3)))
        o = np.full(n, int(rng.integers(1, 4)))
    else:
        a = np.sort(rng.integers(0, 5, size=n))
        if seed % 3 == 1:  # late arrivals: the first request arrives after round 0
            a = a + int(rng.integers(1, 4))
        s = rng.integers(0, 5, size=n)
        o = rng.integers(1, 4, size=n)
    peak = s + o
    kind = seed % 4
    if kind == 0:  # memory exactly the largest peak need
        M = int(peak.max())
    elif kind == 1:  # memory exactly the sum of two peaks (two fit, a third does not)
        M = int(np.sort(peak)[-2:].sum())
    else:
        M = int(rng.integers(peak.max(), peak.sum() + 2))
    cap = None if seed % 3 == 0 else int(rng.integers(1, 3))  # binding batch caps
    return Instance(kv_memory=M, arrival=a, prompt_tokens=s, output_tokens=o, max_batch=cap)


def _memory_rows(a, s, o, start, rounds):
    """KV held and requests running in every round of a schedule (written from the statement:
    started at p, request i holds s_i + j tokens in its j-th round p + j - 1, j = 1..o_i)."""
    mem = np.zeros(rounds, dtype=np.int64)
    run = np.zeros(rounds, dtype=np.int64)
    for i, p in enumerate(start):
        for j in range(1, o[i] + 1):
            mem[p + j - 1] += s[i] + j
            run[p + j - 1] += 1
    return mem, run


def _batch_brute(inst) -> tuple[float, list[int]]:
    """Min total latency over all start rounds, by depth-first enumeration.

    Starts are bounded by a feasible schedule's latency UB (one request at a time in arrival
    order): in an optimal schedule every other request has latency >= its output, so request i
    starts at most UB - sum_j o_j rounds after its arrival.
    """
    a = inst.arrival.tolist()
    s = inst.prompt_tokens.tolist()
    o = inst.output_tokens.tolist()
    n, M = len(a), inst.kv_memory
    cap = inst.max_batch if inst.max_batch is not None else n
    t, ub = 0, 0
    for i in np.argsort(inst.arrival, kind="stable"):
        t = max(t, a[i])
        ub += t + o[i] - a[i]
        t += o[i]
    slack = ub - sum(o)
    rounds = max(a) + slack + max(o) + 2
    mem = [0] * rounds
    run = [0] * rounds
    best = [math.inf, None]
    start = [0] * n
    order = sorted(range(n), key=lambda i: a[i])

    def dfs(k: int, cost: int) -> None:
        if cost + sum(o[i] for i in order[k:]) >= best[0]:
            return
        if k == n:
            best[0], best[1] = cost, list(start)
            return
        i = order[k]
        for p in range(a[i], a[i] + slack + 1):
            ok = all(mem[p + j - 1] + s[i] + j <= M and run[p + j - 1] + 1 <= cap
                     for j in range(1, o[i] + 1))
            if not ok:
                continue
            for j in range(1, o[i] + 1):
                mem[p + j - 1] += s[i] + j
                run[p + j - 1] += 1
            start[i] = p
            dfs(k + 1, cost + p + o[i] - a[i])
            for j in range(1, o[i] + 1):
                mem[p + j - 1] -= s[i] + j
                run[p + j - 1] -= 1

    dfs(0, 0)
    return float(best[0]), best[1]


def _fixed_schedule_policy(start):
    """A policy that admits each request at a given round (and nothing else)."""
    from servopt.solvers import batch_scheduling as rules

    class Fixed(rules.Policy):
        name = "fixed"

        def admit(self, state):
            due = state.waiting[np.asarray(start)[state.waiting] == state.t]
            return due

    return Fixed()


@pytest.mark.parametrize("seed", range(30))
def test_batch_scheduling_ip_matches_brute_force(seed):
    from servopt.benchmarks import batch_scheduling as bench

    inst = _batch_instance(seed)
    best, _ = _batch_brute(inst)
    # the matrix form (the default) and the Pyomo model both reach the brute-force optimum
    pyomo = servopt.solve(inst, mip_gap=1e-9, backend="pyomo")
    assert pyomo.info["form"] == "pyomo" and pyomo.objective == pytest.approx(best, abs=1e-6)
    sol = servopt.solve(inst, mip_gap=1e-9)
    assert sol.info["form"] == "matrix"
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(best, abs=1e-6), inst.to_json()
    start = sol.decisions["start"].to_numpy()
    assert np.all(start >= 0)  # no request parked in a late column
    a, s, o = inst.arrival, inst.prompt_tokens, inst.output_tokens
    mem, run = _memory_rows(a, s, o, start, int((start + o).max()) + 1)
    assert mem.max() <= inst.kv_memory
    if inst.max_batch is not None:
        assert run.max() <= inst.max_batch
    assert float(np.sum(start + o - a)) == pytest.approx(best)
    # the evaluator replays the optimal schedule and charges exactly its latency
    out = bench.evaluate(inst, _fixed_schedule_policy(start))
    assert out.cost == pytest.approx(best), inst.to_json()
    assert out.metrics["preemptions"] == 0 and out.metrics["refused"] == 0
    # LP relaxation and the evaluator's bound are lower bounds; every policy is an upper bound
    lp = servopt.solve(inst, relax=True).objective
    assert lp <= best + 1e-6
    assert servopt.solve(inst, relax=True, backend="pyomo").objective == pytest.approx(lp, abs=1e-6)
    assert bench.bound(inst, time_limit=10).value <= best + 1e-6
    for name in ("fcfs", "spf", "mcsf", "bid_price"):
        out = bench.evaluate(inst, name)
        if out.metrics["preemptions"] == 0:  # preempting runs: see the below_bound test below
            assert out.cost >= best - 1e-9, (name, inst.to_json())


@pytest.mark.parametrize("seed", range(20))
def test_batch_scheduling_evaluator_charges_any_feasible_schedule_exactly(seed):
    """Random feasible schedules (not only optimal ones) replayed by the evaluator."""
    from servopt.benchmarks import batch_scheduling as bench

    inst = _batch_instance(seed)
    rng = np.random.default_rng(seed)
    a, s, o = inst.arrival, inst.prompt_tokens, inst.output_tokens
    cap = inst.max_batch if inst.max_batch is not None else inst.n
    checked = 0
    for _ in range(200):
        start = a + rng.integers(0, 6, size=inst.n)
        mem, run = _memory_rows(a, s, o, start, int((start + o).max()) + 1)
        if mem.max() > inst.kv_memory or run.max() > cap:
            continue
        out = bench.evaluate(inst, _fixed_schedule_policy(start))
        assert out.cost == pytest.approx(float(np.sum(start + o - a))), (start, inst.to_json())
        assert out.metrics["peak_memory"] == mem.max()
        assert out.metrics["makespan"] == float((start + o).max())
        assert out.metrics["mean_ttft"] == pytest.approx(float(np.mean(start + 1 - a)))
        checked += 1
        if checked == 5:
            break


def test_batch_scheduling_a_preempting_policy_can_beat_the_non_preemptive_bound_and_is_marked():
    """The simulator's recompute preemption keeps the emitted tokens and frees the KV (as vLLM
    does), so a preempting policy can pause a request: the hindsight model (contiguous runs) does
    not cover it. Only the area bound does; the gap table marks such a run ``below_bound``."""
    import servopt
    from servopt.benchmarks import batch_scheduling as bench
    from servopt.instances.batch_scheduling import Instance

    # three identical requests, each alone fills the memory (1 + 3 = 4 = M): by brute force the
    # best contiguous schedule runs them one after the other, 3 + 6 + 9 = 18 rounds
    inst = Instance(kv_memory=4, arrival=[0, 0, 0], prompt_tokens=[1, 1, 1],
                    output_tokens=[3, 3, 3])
    assert _batch_brute(inst)[0] == 18.0
    fcfs = bench.evaluate(inst, "fcfs")  # 16 rounds with one preemption
    assert fcfs.cost == 16.0 and fcfs.metrics["preemptions"] == 1
    assert bench.bound(inst).value == 18.0  # the non-preemptive optimum
    assert bench.bound(inst, method="area").value <= fcfs.cost
    table = servopt.gap_table(inst, ["fcfs", "mcsf"]).set_index("method")
    assert table.loc["fcfs", "status"] == "below_bound" and table.loc["fcfs", "gap"] < 0
    assert table.loc["mcsf", "status"] == "ok"  # no preemption: within the model's class


# =================================================================================================
# decode routing (hindsight model: sticky assignment, barrier steps, every request starts on arrival)
# =================================================================================================
def _decode_instance(seed: int):
    from servopt.instances.decode_routing import Instance

    rng = np.random.default_rng(2000 + seed)
    n = int(rng.integers(3, 6))
    G = 3 if seed % 7 == 6 else 2
    if seed % 5 == 0:  # several identical requests arriving together
        arrival = np.zeros(n)
        prompt = np.full(n, int(rng.integers(0, 4)))
        output = np.full(n, int(rng.integers(1, 4)))
    else:
        arrival = np.sort(rng.integers(0, 4, size=n)).astype(float)
        if seed % 3 == 1:  # late and fractional arrivals (the request starts at ceil)
            arrival = np.sort(arrival + rng.choice([0.5, 1.0, 2.25], size=n))
        prompt = rng.integers(0, 6, size=n)
        output = rng.integers(1, 5, size=n)
    need = prompt + output
    kind = seed % 4
    if kind == 0:  # KV exactly the largest request's peak need s + o
        kv = int(need.max())
    elif kind == 1:  # exactly the two largest peaks
        kv = int(np.sort(need)[-2:].sum())
    else:
        kv = int(need.sum()) + 10
    slots = int(rng.integers(1, 3)) if seed % 2 else 8
    frame = pd.DataFrame({"arrival_s": arrival, "prompt_tokens": prompt, "output_tokens": output})
    return Instance(workers=G, slots=slots, kv_capacity=kv,
                    step_ms=float(rng.choice([0.0, 1.0, 5.0])),
                    ms_per_kv_token=float(rng.choice([0.5, 1.0, 2.0])),
                    prefill_ms_per_token=float(rng.choice([0.0, 0.0, 0.3])),
                    arrival_unit="step", requests=frame)


def _decode_cost(inst, worker) -> float | None:
    """Total step time of a sticky assignment when every request starts the step it arrives;
    None when a worker would exceed its slots or KV in some step (written from the statement)."""
    a = np.ceil(inst.requests["arrival_s"].to_numpy() - 1e-9).astype(int)
    s = inst.requests["prompt_tokens"].to_numpy()
    o = inst.requests["output_tokens"].to_numpy()
    c0, c1, p = inst.step_ms, inst.ms_per_kv_token, inst.prefill_ms_per_token
    total = 0.0
    for k in range(int(a.min()), int((a + o).max())):
        active = [i for i in range(len(a)) if a[i] <= k < a[i] + o[i]]
        if not active:
            continue
        work = []
        for g in range(inst.workers):
            mine = [i for i in active if worker[i] == g]
            if len(mine) > inst.slots:
                return None
            if sum(s[i] + (k - a[i]) + 1 for i in mine) > inst.kv_capacity:
                return None
            work.append(sum(c1 * (s[i] + k - a[i]) + (p * s[i] if k == a[i] else 0.0)
                            for i in mine))
        total += c0 + max(work)
    return total


def _fixed_router(worker):
    from servopt.solvers import decode_routing as routing

    class Fixed(routing.Router):
        name = "fixed"

        def choose(self, view, request):
            return int(worker[request])

    return Fixed()


@pytest.mark.parametrize("seed", range(35))
def test_decode_routing_hindsight_matches_brute_force(seed):
    from servopt.benchmarks import decode_routing as bench

    inst = _decode_instance(seed)
    costs = {}
    for worker in itertools.product(range(inst.workers), repeat=inst.n_requests):
        c = _decode_cost(inst, worker)
        if c is not None:
            costs[worker] = c
    if not costs:
        for backend in ("highs", "pyomo"):
            with pytest.raises(InfeasibleError, match="no sticky assignment"):
                servopt.solve(inst, backend=backend)
        return
    best = min(costs.values())
    pyomo = servopt.solve(inst, mip_gap=1e-9, backend="pyomo")
    assert pyomo.objective == pytest.approx(best, rel=1e-7, abs=1e-7), inst.to_json()
    sol = servopt.solve(inst, mip_gap=1e-9)
    assert sol.status == "optimal" and sol.info["form"] == "matrix"
    assert sol.objective == pytest.approx(best, rel=1e-7, abs=1e-7), inst.to_json()
    worker = tuple(int(g) for g in sol.decisions["worker"].to_numpy())
    assert worker in costs  # the returned assignment respects slots and KV in every step
    assert costs[worker] == pytest.approx(best, rel=1e-7, abs=1e-7)
    # the simulator (the evaluator) realises exactly that cost for the returned assignment
    sim = bench.evaluate(inst, _fixed_router(worker))
    assert sim.cost == pytest.approx(best, rel=1e-9, abs=1e-9), inst.to_json()
    assert sim.metrics["preemptions"] == 0
    # ... and for every other feasible assignment (no queueing happens for those)
    for other, c in list(costs.items())[:8]:
        assert bench.evaluate(inst, _fixed_router(other)).cost == pytest.approx(c, abs=1e-9)
    # the relaxation and the evaluator's bound are lower bounds
    assert servopt.solve(inst, relax=True).objective <= best + 1e-7
    assert bench.bound(inst, time_limit=10).value <= best + 1e-7


@pytest.mark.parametrize("seed", range(20))
def test_decode_routing_every_assignment_costs_at_least_the_bound(seed):
    """The evaluator on every sticky assignment (queueing and preemption included) is never
    below the evaluator's bound, nor below the brute-force optimum when nothing can bind."""
    from servopt.benchmarks import decode_routing as bench
    from servopt.models import decode_routing as dmodel

    inst = _decode_instance(seed)
    low = bench.bound(inst, time_limit=10).value
    exact = dmodel.hindsight_exact(inst)
    best = min((c for w in itertools.product(range(inst.workers), repeat=inst.n_requests)
                if (c := _decode_cost(inst, w)) is not None), default=math.inf)
    for worker in itertools.product(range(inst.workers), repeat=inst.n_requests):
        cost = bench.evaluate(inst, _fixed_router(worker)).cost
        assert cost >= low - 1e-7, (worker, inst.to_json())
        if exact:
            assert cost >= best - 1e-7, (worker, inst.to_json())


# =================================================================================================
# caching
# =================================================================================================
def _cache_instance(seed: int, *, unit: bool):
    from servopt.instances.caching import Instance

    rng = np.random.default_rng(3000 + seed)
    m = int(rng.integers(2, 6))
    n = int(rng.integers(5, 13))
    ids = rng.integers(0, m, size=n)
    if seed % 5 == 0:  # ties: a repeating pattern of identical objects
        ids = np.tile(np.arange(m), n // m + 1)[:n]
    if unit:
        size = np.ones(m)
        cost = np.full(m, float(rng.choice([1.0, 3.0])))
        capacity = float(rng.integers(1, max(2, m)))
    else:
        size = rng.integers(1, 5, size=m).astype(float)
        cost = rng.integers(0, 6, size=m).astype(float)  # zero miss costs allowed
        kind = seed % 3
        if kind == 0:  # capacity exactly one object's size
            capacity = float(rng.choice(size))
        elif kind == 1:  # exactly two objects' sizes
            capacity = float(size[0] + size[-1])
        else:
            capacity = float(rng.integers(0, int(size.sum()) + 1))
    return Instance(time=np.arange(n, dtype=float), object_id=ids, size=size, miss_cost=cost,
                    capacity=capacity)


def _belady(inst) -> float:
    """Belady's MIN with bypass (unit sizes, equal costs): after each request keep the cached
    objects plus the requested one, dropping those whose next request is furthest (never
    requested again = infinitely far) until at most C remain."""
    ids = inst.object_id.tolist()
    n, C = len(ids), round(inst.capacity)
    cache: set[int] = set()
    cost = 0.0
    for t, o in enumerate(ids):
        if o not in cache:
            cost += float(inst.miss_cost[o])
        cache.add(o)
        while len(cache) > C:  # drop the furthest next use (never again = n + 1)
            cache.remove(max(sorted(cache), key=lambda x, t=t: next(
                (u for u in range(t + 1, n) if ids[u] == x), n + 1)))
    return cost


def _cache_intervals(inst):
    ids = inst.object_id.tolist()
    out = []  # (start, end, size, cost)
    for t, o in enumerate(ids):
        for u in range(t + 1, len(ids)):
            if ids[u] == o:
                out.append((t, u, float(inst.size[o]), float(inst.miss_cost[o])))
                break
    first = sum(float(inst.miss_cost[o]) for t, o in enumerate(ids) if o not in ids[:t])
    return out, first


def _cache_integral_optimum(inst) -> float:
    """Min miss cost over every set of kept intervals that fits in every gap."""
    iv, first = _cache_intervals(inst)
    n = len(inst.object_id)
    best = math.inf
    for keep in itertools.product((0, 1), repeat=len(iv)):
        occ = np.zeros(max(n - 1, 1))
        for k, (a, b, s, _) in zip(keep, iv, strict=True):
            if k:
                occ[a:b] += s
        if occ.max() > inst.capacity + 1e-9:
            continue
        best = min(best, first + sum(c for k, (_, _, _, c) in zip(keep, iv, strict=True) if not k))
    return best


def _replay_lru(inst) -> float:
    """LRU with demand fetch (an object larger than the cache is never cached)."""
    cache: list[int] = []  # least recent first
    used, cost = 0.0, 0.0
    for o in inst.object_id.tolist():
        s = float(inst.size[o])
        if o in cache:
            cache.remove(o)
            cache.append(o)
            continue
        cost += float(inst.miss_cost[o])
        if s > inst.capacity + 1e-9:
            continue
        while used + s > inst.capacity + 1e-9:
            used -= float(inst.size[cache.pop(0)])
        cache.append(o)
        used += s
    return cost


@pytest.mark.parametrize("seed", range(30))
def test_caching_lp_on_unit_sizes_equals_belady(seed):
    from servopt.benchmarks import caching as bench
    from servopt.solvers import caching as rules

    inst = _cache_instance(seed, unit=True)
    opt = _belady(inst)
    assert _cache_integral_optimum(inst) == pytest.approx(opt)
    for form, backend in (("flow", "highs"), ("flow", "pyomo"), ("interval", "highs")):
        assert servopt.solve(inst, form=form, backend=backend).objective == pytest.approx(
            opt, abs=1e-7), (form, backend, inst.to_json())
    assert servopt.solve(inst, backend="cvxpy").objective == pytest.approx(opt, abs=1e-5)
    assert rules.solve_lp(inst).value == pytest.approx(opt, abs=1e-7)
    assert bench.bound(inst).value == pytest.approx(opt, abs=1e-7)
    # the evaluator: Belady (with bypass) and the rounded LP schedule realise the optimum
    assert bench.evaluate(inst, "belady").cost == pytest.approx(opt), inst.to_json()
    assert bench.evaluate(inst, "lp_schedule").cost == pytest.approx(opt), inst.to_json()
    assert bench.evaluate(inst, "lru").cost == pytest.approx(_replay_lru(inst))


@pytest.mark.parametrize("seed", range(40))
def test_caching_variable_sizes_integral_optimum_between_lp_and_rounding(seed):
    from servopt.benchmarks import caching as bench
    from servopt.solvers import caching as rules

    inst = _cache_instance(seed, unit=False)
    ip = _cache_integral_optimum(inst)
    lp = servopt.solve(inst, relax=True).objective
    assert servopt.solve(inst, form="interval", relax=True).objective == pytest.approx(lp, abs=1e-7)
    # the caching IP (binary keep) in every form is the brute-force optimum
    for form, backend in (("flow", "highs"), ("flow", "pyomo"), ("interval", "highs")):
        exact = servopt.solve(inst, form=form, backend=backend)
        assert not exact.relaxed and exact.status == "optimal"
        assert exact.objective == pytest.approx(ip, abs=1e-6), (form, backend, inst.to_json())
    # ... and its keep decisions, replayed as a schedule by the evaluator, cost that optimum
    as_schedule = dataclasses.replace(rules.solve_lp(inst), keep=exact.decisions["keep"].to_numpy())
    assert bench.evaluate(inst, rules.LPSchedule(as_schedule)).cost == pytest.approx(ip, abs=1e-6)
    assert rules.solve_lp(inst).value == pytest.approx(lp, abs=1e-7)
    assert lp <= ip + 1e-7, inst.to_json()
    res = rules.solve_lp(inst)
    keep = rules.round_schedule(inst, res)
    rounded = rules.schedule_cost(inst, res, keep)
    # the rounded schedule fits (own check) and costs what the brute force says
    iv, first = _cache_intervals(inst)
    occ = np.zeros(max(len(inst.object_id) - 1, 1))
    own = first
    for (a, b, s, c), k in zip(iv, keep, strict=True):
        if k:
            occ[a:b] += s
        else:
            own += c
    assert occ.max() <= inst.capacity + 1e-9
    assert rounded == pytest.approx(own)
    assert ip <= rounded + 1e-9, inst.to_json()
    # the evaluator replays it at that cost; every policy costs at least the integral optimum
    assert bench.evaluate(inst, "lp_schedule").cost == pytest.approx(rounded), inst.to_json()
    assert bench.evaluate(inst, "lru").cost == pytest.approx(_replay_lru(inst)), inst.to_json()
    for name in ("lru", "fifo", "lfu", "gds", "gdsf", "lec", "belady", "belady_size", "static"):
        assert bench.evaluate(inst, name).cost >= ip - 1e-9, (name, inst.to_json())


# =================================================================================================
# capacity (fluid LP and fleet size)
# =================================================================================================
def _capacity_instance(seed: int):
    from servopt.instances.capacity import Instance

    rng = np.random.default_rng(4000 + seed)
    n = int(rng.integers(1, 6))
    s = rng.integers(1, 40, size=n)
    o = rng.integers(1, 30, size=n)
    if seed % 5 == 0:  # identical requests
        s, o = np.full(n, s[0]), np.full(n, o[0])
    B = int(rng.integers(1, 9))
    b = int(rng.integers(B, 64))
    kind = seed % 3
    M = int((s + o - 1).max()) if kind == 0 else int(rng.integers((s + o - 1).max(), 400))
    return Instance(prompt_tokens=s, output_tokens=o, arrival_rate=float(rng.choice([0.5, 3.0, 40.0])),
                    kv_tokens=M, token_budget=b, batch_cap=B,
                    prefill_chunk=int(rng.integers(1, 20)),
                    step_overhead_s=float(rng.choice([0.0, 0.01, 0.02])),
                    per_token_s=float(rng.choice([1e-4, 5e-4])),
                    headroom=float(rng.choice([0.0, 0.1, 0.25])))


def _walk_request(s: int, o: int, C: int) -> tuple[int, int, int]:
    """(tokens processed w, iterations in the batch n, KV token-iterations g) of one request,
    iteration by iteration: prefill chunks of at most C tokens (the whole prompt reserved from
    admission), the last chunk emitting the first token, then one token per decode iteration
    holding s + j tokens at decode iteration j."""
    w = n = g = 0
    left = s
    while left > 0:  # prefill
        chunk = min(C, left)
        left -= chunk
        w += chunk
        n += 1
        g += s
    for j in range(1, o):  # decode
        w += 1
        n += 1
        g += s + j
    return w, n, g


def _fluid_optimum(inst, memory: float) -> float:
    """max theta of the fluid LP for the sample mix: for a rate theta the iterations per second r
    must cover E[g] theta / M', E[w] theta / b and E[n] theta / B while d0 r + d1 E[w] theta <= 1,
    so theta* = 1 / (d0 max(E[g] / M', E[w] / b, E[n] / B) + d1 E[w])."""
    rows = np.array([_walk_request(int(a), int(b), inst.prefill_chunk)
                     for a, b in zip(inst.prompt_tokens, inst.output_tokens, strict=True)], float)
    Ew, En, Eg = rows.mean(axis=0)
    need = max(Eg / memory, Ew / inst.token_budget, En / inst.batch_cap)
    return 1.0 / (inst.step_overhead_s * need + inst.per_token_s * Ew)


def _fleet_size(rate: float, mu: float, headroom: float) -> int:
    n = 1
    while n * (1 - headroom) * mu < rate * (1 - 1e-12):
        n += 1
    return n


@pytest.mark.parametrize("seed", range(20))
def test_capacity_fluid_lp_and_fleet_size_match_brute_force(seed):
    from servopt.models import capacity as cmodel
    from servopt.solvers import capacity as plans

    inst = _capacity_instance(seed)
    theta = _fluid_optimum(inst, float(inst.kv_tokens))
    sol = servopt.solve(inst, corrected=False)
    assert sol.objective == pytest.approx(theta, rel=1e-7), inst.to_json()
    assert servopt.solve(inst, corrected=False, backend="cvxpy").objective == pytest.approx(
        theta, rel=1e-5)
    first = cmodel.bounds(inst, corrected=False)
    assert first.max_stable_rate == pytest.approx(theta, rel=1e-9)
    # corrected: the LP with the model's usable memory M' equals the corrected bounds' minimum
    corrected = cmodel.bounds(inst)
    theta_c = _fluid_optimum(inst, corrected.usable_kv_tokens)
    if inst.step_overhead_s == 0:  # no M' can bind without overhead: the LP carries the
        theta_c = corrected.max_stable_rate  # recomputation in the work (next test)
    assert servopt.solve(inst).objective == pytest.approx(theta_c, rel=1e-6)
    assert corrected.max_stable_rate == pytest.approx(theta_c, rel=1e-6)
    # fleet sizes by enumeration
    assert plans.first_order(inst).workers == _fleet_size(inst.arrival_rate, theta, inst.headroom)
    assert plans.fluid_lp(inst).workers == _fleet_size(inst.arrival_rate, theta_c, inst.headroom)
    assert plans.plan(inst).workers == _fleet_size(inst.arrival_rate, theta_c, inst.headroom)
    # the price of one more KV token (uncorrected), against a finite difference of theta*
    if inst.step_overhead_s > 0:
        h = 1e-3
        slope = (_fluid_optimum(inst, inst.kv_tokens + h) - theta) / h
        value = cmodel.marginal_values(sol, inst, corrected=False)["kv_token"]
        assert value >= 0
        assert value == pytest.approx(slope, rel=1e-3, abs=1e-9), inst.to_json()


def test_capacity_corrected_fluid_lp_equals_the_corrected_bounds_without_step_overhead():
    from servopt.models import capacity as cmodel
    from servopt.solvers import capacity as plans

    inst = _capacity_instance(7).with_(arrival_rate=450.0)
    assert inst.step_overhead_s == 0.0
    bounds = cmodel.bounds(inst)
    assert servopt.solve(inst).objective == pytest.approx(bounds.max_stable_rate, rel=1e-6)
    assert plans.fluid_lp(inst).workers == plans.plan(inst).workers


def _decode_queue_sim(inst, worker, detail: bool = False):
    """Total step time of a sticky assignment with FIFO queues, written from the simulator's
    documented step (route arrivals; preempt the newest request of a worker whose running set
    needs more than K this step, keeping its generated tokens; admit the queue head while a slot
    is free and its prompt and kept tokens fit; one token each; W_g = c1 L_g + p P_g, P_g the
    prompt and kept tokens prefilled; the clock jumps when idle)."""
    from collections import deque

    a = inst.requests["arrival_s"].to_numpy()
    s = inst.requests["prompt_tokens"].to_numpy()
    o = inst.requests["output_tokens"].to_numpy()
    G, B, K = inst.workers, inst.slots, inst.kv_capacity
    c0, c1, p = inst.step_ms, inst.ms_per_kv_token, inst.prefill_ms_per_token
    n = len(a)
    queues = [deque() for _ in range(G)]
    running: list[list[int]] = [[] for _ in range(G)]  # admission order
    gen = [0] * n
    routed, done, k, total = 0, 0, 0, 0.0
    idle = busy = 0.0  # sum_k sum_g (max W - W_g) and sum_k G max W (idle_fraction_run)
    preempted = 0
    while done < n:
        if not any(running) and not any(queues):
            k = max(k, math.ceil(a[routed] - 1e-9))
        while routed < n and a[routed] <= k + 1e-9:
            queues[worker[routed]].append(routed)
            routed += 1
        work = []
        for g in range(G):
            while running[g] and sum(s[i] + gen[i] + 1 for i in running[g]) > K:
                i = running[g].pop()
                preempted += 1
                queues[g].appendleft(i)
            prefill = 0.0
            while queues[g] and len(running[g]) < B:
                i = queues[g][0]
                if sum(s[j] + gen[j] + 1 for j in running[g]) + s[i] + gen[i] + 1 > K:
                    break
                queues[g].popleft()
                running[g].append(i)
                prefill += p * (s[i] + gen[i])
            work.append(c1 * sum(s[i] + gen[i] for i in running[g]) + prefill)
        if not any(running):
            continue
        total += c0 + max(work)
        idle += G * max(work) - sum(work)
        busy += G * max(work)
        k += 1
        for g in range(G):
            for i in running[g]:
                gen[i] += 1
            finished = [i for i in running[g] if gen[i] >= o[i]]
            done += len(finished)
            running[g] = [i for i in running[g] if gen[i] < o[i]]
    if detail:
        return total, (idle / busy if busy > 0 else 0.0), preempted
    return total


@pytest.mark.parametrize("seed", range(25))
def test_decode_routing_evaluator_matches_own_queue_simulation(seed):
    """Every sticky assignment, including those that queue (slots or KV bind) and preempt."""
    from servopt.benchmarks import decode_routing as bench

    inst = _decode_instance(seed)
    for worker in itertools.product(range(inst.workers), repeat=inst.n_requests):
        own, idle, preempted = _decode_queue_sim(inst, worker, detail=True)
        out = bench.evaluate(inst, _fixed_router(worker))
        assert out.cost == pytest.approx(own, abs=1e-9), (worker, inst.to_json())
        assert out.metrics["idle_fraction_run"] == pytest.approx(idle, abs=1e-12)
        assert out.metrics["preemptions"] == preempted
        assert out.metrics["completed"] == inst.n_requests
        if (c := _decode_cost(inst, worker)) is not None:
            assert own == pytest.approx(c)


@pytest.mark.parametrize("seed", range(12))
def test_expert_placement_evaluator_scores_every_policy_on_the_next_window(seed):
    """Two windows, two layers: each policy plans on window 0 and is scored on window 1; the
    evaluator's cost is recomputed from the returned placement (own dispatch formulas, own
    migration count) and is never below the hindsight brute-force optimum of window 1."""
    from servopt.benchmarks import expert_placement as bench
    from servopt.instances.expert_placement import Instance
    from servopt.solvers import expert_placement as sv

    rng = np.random.default_rng(5000 + seed)
    G, S = 2, 2
    E = int(rng.integers(2, 5))
    loads = rng.integers(0, 20, size=(2, 2, E)).astype(float)
    if seed % 4 == 0:
        loads[1] = loads[0]  # the next window repeats the planned one
    prev, beta = None, 0.0
    allp = list(_placements(E, G, S))
    if seed % 2:
        prev = np.stack([_phy2log(allp[int(rng.integers(len(allp)))], S) for _ in range(2)])
        beta = float(rng.choice([0.5, 3.0]))
    inst = Instance(loads=loads, num_nodes=1, gpus_per_node=G, slots_per_gpu=S,
                    previous_placement=prev, migration_cost=beta)
    hindsight = 0.0
    for layer in range(2):
        hindsight += min(_min_makespan(h, loads[1, layer], inst.speed) for h in allp)
    assert bench.bound(inst).value <= hindsight + 1e-9
    for name, policy in sv.POLICIES.items():
        plan = policy(bench.planning_view(inst))
        cost = span = 0.0
        for layer in range(2):
            row = plan.phy2log[layer]
            hosts = [{int(e) for e in row[g * S:(g + 1) * S] if e >= 0} for g in range(G)]
            w = loads[1, layer]
            if plan.dispatch == "lp":
                z = _min_makespan(hosts, w, inst.speed)
            elif plan.dispatch == "even":
                count = np.bincount(row[row >= 0], minlength=E)
                z = max(sum(w[e] / count[e] for e in row[g * S:(g + 1) * S] if e >= 0)
                        for g in range(G))
            else:  # price dispatch: its flows come from the rule; only the bound is checked
                cost = math.nan
                break
            cost += z
            span += z
            if prev is not None:
                before = [{int(e) for e in prev[layer, g * S:(g + 1) * S] if e >= 0}
                          for g in range(G)]
                cost += beta * sum(len(h - b) for h, b in zip(hosts, before, strict=True))
        out = bench.evaluate(inst, name, detail=False)
        assert out.cost >= hindsight - 1e-9, (name, inst.to_json())
        if not math.isnan(cost):
            assert out.cost == pytest.approx(cost, rel=1e-7, abs=1e-7), (name, inst.to_json())
            # equal speeds: the mean GPU time of a layer is its total load / G
            mean = loads[1].sum() / G
            assert out.metrics["balancedness"] == pytest.approx(
                mean / span if span > 0 else 1.0, rel=1e-7)


# =================================================================================================
# price signs: the LP value is convex in a capacity, so by the documented convention (price =
# improvement per unit of extra capacity, >= 0) value(C + d) >= value(C) - d * sum(prices), and
# for the min problems here value(C - d) >= value(C) + d * sum(prices)
# =================================================================================================
@pytest.mark.parametrize("seed", range(20))
def test_caching_capacity_prices_are_supergradients(seed):
    from servopt.instances.caching import Instance

    inst = _cache_instance(seed, unit=False)
    sol = servopt.solve(inst, form="interval", relax=True)
    prices = sol.prices.get("cache_capacity", pd.Series(dtype=float))
    assert (prices >= 0).all()
    total = float(prices.sum())
    for d in (0.5, 1.0):
        if np.any((inst.size > inst.capacity - d - 1e-9) & (inst.size <= inst.capacity + d)):
            continue  # an object starts or stops fitting: keep_i = 0 when s_i > C jumps
        up = Instance(time=inst.time, object_id=inst.object_id, size=inst.size,
                      miss_cost=inst.miss_cost, capacity=inst.capacity + d)
        assert servopt.solve(up, form="interval", relax=True).objective >= (
            sol.objective - d * total - 1e-7)
        if inst.capacity >= d:
            down = Instance(time=inst.time, object_id=inst.object_id, size=inst.size,
                            miss_cost=inst.miss_cost, capacity=inst.capacity - d)
            assert servopt.solve(down, form="interval", relax=True).objective >= (
                sol.objective + d * total - 1e-7), inst.to_json()


@pytest.mark.parametrize("seed", range(20))
def test_batch_scheduling_memory_prices_are_supergradients(seed):
    from servopt.models import batch_scheduling as bmodel

    inst = _batch_instance(seed)
    T = bmodel.horizon_rounds(inst, "safe")
    sol = servopt.solve(inst, relax=True, horizon=T)
    mu = sol.prices["kv_memory"]
    assert (mu >= 0).all()
    total = float(mu.sum())
    # the same LP with one more token of memory in every round (same horizon and columns)
    m = bmodel.build(inst, relax=True, horizon=T)
    from servopt.solvers import exact

    for t in m.kv_memory:
        m.kv_memory[t].set_value((None, m.kv_memory[t].body, inst.kv_memory + 1))
    more = exact.solve_model(m, relax=True, prices=False, decision=inst.decision).objective
    assert more >= sol.objective - total - 1e-7, inst.to_json()
    assert more <= sol.objective + 1e-7


@pytest.mark.parametrize("seed", range(12))
def test_batch_scheduling_every_bound_method_is_below_the_brute_force_optimum(seed):
    from servopt.benchmarks import batch_scheduling as bench

    inst = _batch_instance(seed)
    best, _ = _batch_brute(inst)
    methods = ["lp", "ip", "cover", "coarse", "area"]
    if inst.max_batch is None:
        methods.append("group")  # documented: the group bound does not model a batch cap
    for method in methods:
        b = bench.bound(inst, method=method, time_limit=5)
        assert b.value <= best + 1e-6, (method, inst.to_json())
        if b.kind == "optimal":
            assert b.value == pytest.approx(best), (method, inst.to_json())


def _ample_iterations(s, o, C, d0, d1):
    """Completion times when every request arrives at 0 and nothing binds: request i runs
    ceil(s_i / C) prefill iterations of min(C, rest) tokens, then o_i - 1 decode iterations of
    one token; each iteration lasts d0 + d1 x (tokens of every request in it)."""
    plan = []
    for si, oi in zip(s, o, strict=True):
        chunks, rest = [], int(si)
        while rest > 0:
            chunks.append(min(C, rest))
            rest -= chunks[-1]
        plan.append(chunks + [1] * (int(oi) - 1))
    t, k, done = 0.0, 0, np.zeros(len(s))
    while any(len(p) > k for p in plan):
        t += d0 + d1 * sum(p[k] for p in plan if len(p) > k)
        for i, p in enumerate(plan):
            if len(p) == k + 1:
                done[i] = t
        k += 1
    return done


@pytest.mark.parametrize("seed", range(30))
def test_capacity_simulator_matches_hand_simulation_when_nothing_binds(seed):
    from servopt.benchmarks import capacity as cbench

    inst = _capacity_instance(seed)
    s, o = inst.prompt_tokens, inst.output_tokens
    C = inst.prefill_chunk
    d0, d1 = inst.step_overhead_s, inst.per_token_s
    # (1) requests far apart: each alone, P d0 + d1 s + (o - 1)(d0 + d1)
    C1 = min(C, inst.token_budget)
    one = inst.with_(prefill_chunk=C1)
    alone = -(-s // C1) * d0 + d1 * s + (o - 1) * (d0 + d1)
    arrivals = np.cumsum(np.r_[0.0, alone[:-1] + 1.0])
    for skip in (True, False):
        res = cbench.simulate(one, s, o, arrivals, skip=skip)
        np.testing.assert_allclose(res.done_times, arrivals + alone, rtol=1e-9, atol=1e-12)
    # (2) all at time 0 on a worker where memory, slots and budget cannot bind
    n = len(s)
    big = inst.with_(kv_tokens=int((s + o).sum()) + 1, batch_cap=n, token_budget=n * C)
    for skip in (True, False):
        res = cbench.simulate(big, s, o, np.zeros(n), skip=skip)
        np.testing.assert_allclose(res.done_times, _ample_iterations(s, o, C, d0, d1),
                                   rtol=1e-9, atol=1e-12, err_msg=big.to_json())
        assert res.preemptions == 0


@pytest.mark.parametrize("seed", range(20))
def test_decode_routing_epoch_ip_matches_brute_force(seed):
    """The per-epoch assignment IP (Pyomo and matrix path) against enumeration; its LP is below."""
    from servopt.models import decode_routing as dmodel
    from servopt.solvers import decode_routing as routing
    from servopt.solvers import exact

    rng = np.random.default_rng(6000 + seed)
    G, n, H = int(rng.integers(2, 4)), int(rng.integers(2, 5)), int(rng.integers(1, 4))
    base = rng.integers(0, 10, size=(G, H)).astype(float)
    if seed % 3 == 0:
        base[:] = base[0]  # identical workers: ties
    profile = rng.integers(0, 6, size=(n, H)).astype(float)
    need = rng.integers(1, 5, size=n).astype(float)
    slots = rng.integers(0, 3, size=G).astype(float)
    kv = rng.integers(0, 10, size=G).astype(float)
    if seed % 4 == 0:
        kv[0] = need.sum()  # exactly the demand
    c1, gamma = float(rng.choice([1.0, 0.25])), float(rng.choice([1.0, 0.8, 0.5]))
    epoch = dmodel.Epoch(base, profile, np.ones(n), need, slots, kv, c1, gamma)
    best = math.inf
    for a in itertools.product(range(G), repeat=n):
        a = np.array(a)
        if any((a == g).sum() > slots[g] or need[a == g].sum() > kv[g] for g in range(G)):
            continue
        load = base.copy()
        for i, g in enumerate(a):
            load[g] += profile[i]
        best = min(best, float((c1 * gamma ** np.arange(H) * load.max(axis=0)).sum()))
    res = routing.solve_matrix(dmodel.epoch_matrices(epoch, relax=False))
    if best == math.inf:
        with pytest.raises(InfeasibleError):
            exact.solve_model(dmodel.build_epoch(epoch), decision="decode_routing")
        assert res.get("x") is None
        return
    ip = exact.solve_model(dmodel.build_epoch(epoch), mip_gap=1e-9, decision="decode_routing")
    assert ip.objective == pytest.approx(best, abs=1e-7)
    assert res["objective"] == pytest.approx(best, abs=1e-7)
    lp = exact.solve_model(dmodel.build_epoch(epoch, relax=True), relax=True,
                           decision="decode_routing")
    assert lp.objective <= best + 1e-7


@pytest.mark.parametrize("seed", range(12))
def test_decode_routing_epoch_ip_with_class_demand_matches_brute_force(seed):
    """A request class with demand d_i > 1 may put several of its requests on one worker: the IP
    (x_ig in 0..d_i) against enumerating every worker for every one of the class's requests. The
    old IP had x binary, so it was too high (or "infeasible" with d_i > workers)."""
    from servopt.models import decode_routing as dmodel
    from servopt.solvers import exact

    rng = np.random.default_rng(7000 + seed)
    G, n, H = int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    demand = rng.integers(1, 4, size=n)
    demand[0] = max(demand[0], G + (seed % 2))  # some class needs >= G (or > G) of its requests
    base = rng.integers(0, 30, size=(G, H)).astype(float)
    profile = rng.integers(1, 10, size=(n, H)).astype(float)
    need = rng.integers(1, 5, size=n).astype(float)
    slots = rng.integers(1, 5, size=G).astype(float)
    kv = rng.integers(4, 20, size=G).astype(float)
    epoch = dmodel.Epoch(base, profile, demand.astype(float), need, slots, kv, 1.0, 0.8)
    unit = np.repeat(np.arange(n), demand)  # every request of every class, one by one
    best = math.inf
    for a in itertools.product(range(G), repeat=len(unit)):
        a = np.array(a)
        if any((a == g).sum() > slots[g] or need[unit[a == g]].sum() > kv[g] for g in range(G)):
            continue
        load = base.copy()
        np.add.at(load, a, profile[unit])
        best = min(best, float((0.8 ** np.arange(H) * load.max(axis=0)).sum()))
    if best == math.inf:
        with pytest.raises(InfeasibleError):
            exact.solve_model(dmodel.build_epoch(epoch), decision="decode_routing")
        return
    ip = exact.solve_model(dmodel.build_epoch(epoch), mip_gap=1e-9, decision="decode_routing")
    assert ip.objective == pytest.approx(best, abs=1e-7)
    lp = exact.solve_model(dmodel.build_epoch(epoch, relax=True), relax=True, decision="decode_routing")
    assert lp.objective <= best + 1e-7


def test_decode_routing_epoch_ip_refuses_fractional_demand():
    from servopt.models import decode_routing as dmodel

    epoch = dmodel.Epoch(np.zeros((2, 1)), np.ones((1, 1)), [1.5], [1.0], [2, 2], [9, 9], 1.0)
    with pytest.raises(InvalidInstanceError, match=r"class 0 has demand 1\.5"):
        dmodel.build_epoch(epoch)
    with pytest.raises(InvalidInstanceError, match=r"class 0 has demand 1\.5"):
        dmodel.epoch_matrices(epoch, relax=False)
    assert dmodel.build_epoch(epoch, relax=True) is not None  # the LP takes fractional demand
