"""A MIP answer whose column values are not the point HiGHS valued is not called optimal (audit R58
F1). highspy 1.16.0, given a MIP start, can return a column its presolve removed at the start's
value while it reports the optimum's objective and status; servopt values the returned point, so
it reported e.g. 2.5 against a bound of 2 as "optimal". The solve now compares the two and solves
again without the start (solvers/exact.py, ``without_start_if_mismatched``).

The three instances are R58's reproducers. Each expected optimum comes from a brute force here
(every cache content, every routing, every placement), not from the model; the tests assert the
optimum, so they hold on highspy 1.13-1.15 too (which never mismatched)."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

import servopt
from servopt.benchmarks import decode_routing as routing_bench
from servopt.instances.caching import Instance as CachingInstance
from servopt.instances.decode_routing import Instance as RoutingInstance
from servopt.instances.expert_placement import Instance as PlacementInstance
from servopt.solvers import decode_routing as routing
from servopt.solvers import exact


def caching_instance() -> CachingInstance:
    ids = np.array([1, 2, 1, 1, 0, 2, 0, 0, 2, 2, 2, 2, 0, 1, 0, 0])
    return CachingInstance(time=np.arange(ids.size, dtype=float), object_id=ids,
                           size=np.array([1.0, 2.0, 1.0]), miss_cost=np.array([2.0, 2.0, 3.0]),
                           capacity=2.0)


def caching_brute_force(inst: CachingInstance) -> float:
    """Least miss cost over every sequence of cache contents: after each request the cache holds
    any subset (within capacity) of what it held plus the requested object (bypass allowed, no
    prefetch)."""
    best = {frozenset(): 0.0}
    for obj in inst.object_id.tolist():
        after: dict[frozenset, float] = {}
        for held, cost in best.items():
            cost += 0.0 if obj in held else float(inst.miss_cost[obj])
            pool = sorted(held | {obj})
            for k in range(len(pool) + 1):
                for keep in itertools.combinations(pool, k):
                    if sum(inst.size[o] for o in keep) <= inst.capacity:
                        key = frozenset(keep)
                        after[key] = min(after.get(key, np.inf), cost)
        best = after
    return min(best.values())


class _Fixed(routing.Router):
    """Routes request i to worker ``w[i]``."""

    name = "fixed"

    def __init__(self, w):
        self.w = list(w)

    def choose(self, view, i):
        return int(self.w[i])


def routing_instance() -> RoutingInstance:
    requests = pd.DataFrame({"arrival_s": [1.0, 1.0, 1.0, 5.0, 5.0],
                             "prompt_tokens": [2, 5, 1, 0, 0], "output_tokens": [5, 1, 2, 3, 5]})
    return RoutingInstance(workers=2, slots=100, kv_capacity=100000, step_ms=0.0,
                           ms_per_kv_token=1.0, prefill_ms_per_token=0.5, requests=requests,
                           arrival_unit="step")


def placement_instance() -> PlacementInstance:
    return PlacementInstance(loads=np.array([[[1.0, 0.0]]]), gpus_per_node=2, slots_per_gpu=2,
                             gpu_speed=np.array([0.5, 0.5]),
                             previous_placement=np.array([[-1, -1, 1, -1]]), migration_cost=0.5)


def placement_brute_force(inst: PlacementInstance) -> float:
    """One layer: every set of replicas (each expert on at least one GPU, at most S per GPU),
    the makespan from a dispatch LP (tokens split over the expert's replicas, each GPU's tokens
    over its speed), plus migration_cost per replica on a GPU that did not hold that expert."""
    w = np.asarray(inst.loads, dtype=float)[0, 0]
    speed = np.asarray(inst.gpu_speed, dtype=float)
    E, G, S = w.size, speed.size, int(inst.slots_per_gpu)
    previous = np.asarray(inst.previous_placement)[0].reshape(G, S)
    best = np.inf
    for bits in itertools.product([0, 1], repeat=E * G):
        y = np.array(bits).reshape(E, G)
        if np.any(y.sum(axis=1) < 1) or np.any(y.sum(axis=0) > S):
            continue
        # variables f[e, g] then z: min z, sum_g f = w_e, sum_e f[e, g] <= speed_g z
        n = E * G
        c = np.zeros(n + 1)
        c[-1] = 1.0
        a_eq = np.zeros((E, n + 1))
        for e in range(E):
            a_eq[e, e * G:(e + 1) * G] = 1.0
        a_ub = np.zeros((G, n + 1))
        for g in range(G):
            a_ub[g, [e * G + g for e in range(E)]] = 1.0
            a_ub[g, -1] = -speed[g]
        bounds = [(0.0, None if y[e, g] else 0.0) for e in range(E) for g in range(G)]
        lp = linprog(c, A_ub=a_ub, b_ub=np.zeros(G), A_eq=a_eq, b_eq=w,
                     bounds=[*bounds, (0.0, None)])
        assert lp.status == 0
        moved = sum(1 for e in range(E) for g in range(G) if y[e, g] and e not in previous[g])
        best = min(best, lp.fun + inst.migration_cost * moved)
    return best


def _assert_optimal_and_true(sol, expected: float) -> None:
    assert sol.status == "optimal"
    # (relative: decode routing's model sits 1e-6 under the simulator's 37, by design)
    assert sol.objective == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert sol.bound <= sol.objective + 1e-6
    assert sol.gap <= 1e-4


def test_caching_with_start_reports_the_brute_force_optimum():
    inst = caching_instance()
    expected = caching_brute_force(inst)
    assert expected == pytest.approx(12.0)  # R58's DP
    sol = servopt.solve(inst)
    _assert_optimal_and_true(sol, expected)


def test_decode_routing_with_start_reports_the_brute_force_optimum():
    inst = routing_instance()
    costs = [routing_bench.evaluate(inst, _Fixed(w)).cost
             for w in itertools.product(range(2), repeat=5)]
    expected = min(costs)
    assert expected == pytest.approx(37.0)  # R58's brute force
    sol = servopt.solve(inst)
    _assert_optimal_and_true(sol, expected)
    # the routing it returns scores its objective in the simulator
    w = sol.decisions["worker"].to_numpy()
    assert routing_bench.evaluate(inst, _Fixed(w)).cost == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("backend", ["highs", "pyomo"])
def test_expert_placement_with_start_reports_the_brute_force_optimum(backend):
    inst = placement_instance()
    expected = placement_brute_force(inst)
    # by hand: expert 0 on both GPUs (makespan 0.5 / 0.5 = 1, two new replicas, 2 x 0.5), expert
    # 1 kept on GPU 1: 2.0; expert 0 on one GPU: 1 / 0.5 + 0.5 = 2.5
    assert expected == pytest.approx(2.0)
    sol = servopt.solve(inst, backend=backend)
    _assert_optimal_and_true(sol, expected)


def test_values_that_still_disagree_are_not_called_optimal(monkeypatch):
    """Where the solve without the start disagrees too, the better feasible point is returned
    with its own objective and the proved bound, and the status is not optimal."""
    def always(reported, raw, terms, bound, status, *, started, scale=1.0):
        return {"highs_objective": reported * scale, "objective_of_values": raw * scale,
                "highs_bound": bound * scale, "highs_status": status, "started": started}

    monkeypatch.setattr(exact, "values_mismatch", always)
    inst = caching_instance()
    sol = servopt.solve(inst)
    assert sol.status == "error"
    mismatch = sol.info["highs_values_mismatch"]
    assert mismatch["retry"] == "re-solved without the start: its values disagree too"
    assert sol.objective >= caching_brute_force(inst) - 1e-6  # a feasible point's true value
    assert sol.bound <= caching_brute_force(inst) + 1e-6
    assert sol.decisions  # the values are kept


def test_mismatch_is_more_than_float_noise():
    """values_mismatch only flags a real disagreement (float noise is not one)."""
    assert exact.values_mismatch(6.0, 6.0 + 1e-9, 6.0, 6.0, "optimal", started=True) is None
    flagged = exact.values_mismatch(6.0, 6.5, 6.5, 6.0, "optimal", started=True)
    assert flagged is not None and flagged["objective_of_values"] == 6.5
    assert exact.unclaimed("optimal", flagged) == "error"
    assert exact.unclaimed("time_limit", flagged) == "time_limit"


def test_no_time_left_for_the_retry_is_a_time_limit():
    """Out of budget, the mismatched answer is kept as a stopped solve's (status time_limit), not
    re-solved and not called optimal."""
    from servopt.core import Solution

    first = Solution(status="error", objective=13.0, bound=12.0, gap=1 / 12, wall_s=0.1,
                     info={"highs_values_mismatch": {"highs_status": "optimal", "started": True}})
    budget = exact.TimeBudget(1e-9)  # already spent

    def again():
        raise AssertionError("no re-solve without time")

    kept = exact.without_start_if_mismatched(first, again, budget)
    assert kept.status == "time_limit" and kept.objective == 13.0 and kept.bound == 12.0
    assert kept.info["highs_values_mismatch"]["retry"] == "skipped: no time left"
