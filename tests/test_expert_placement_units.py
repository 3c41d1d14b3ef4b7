"""Expert placement in any unit: loads from 1e-9 to 1e9 tokens and GPU speed ratios up to 1e9.

The reference for a scaled instance is the same instance at scale 1 (loads x c: every cost, bound
and makespan x c, prices per token unchanged, prices per slot x c; speeds x c: times / c), and for
the two reproductions of the boundary audit a hand calculation. HiGHS's tolerances are absolute:
in tokens, loads of 1e-7 came back "optimal" at makespan 0 and a GPU 1e9 times slower than the
other made the evaluator's dispatch LP "infeasible".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import servopt
from servopt.benchmarks import expert_placement as bench
from servopt.core import InvalidInstanceError
from servopt.instances import expert_placement as ep
from servopt.models import expert_placement as em
from servopt.solvers import expert_placement as sv

SCALES = (1e-9, 1e-6, 1e-3, 1e3, 1e6, 1e9)
REL = 1e-9


def two_gpu_lp_makespan(phy2log: np.ndarray, w: np.ndarray, speed: np.ndarray, slots: int) -> float:
    """Min-max dispatch of one layer on two GPUs by hand: experts only on GPU 0 (tokens a), only on
    GPU 1 (b), on both (c); the shared tokens x go to GPU 0 until the times meet."""
    gpu = np.arange(phy2log.size) // slots
    on = [set(phy2log[gpu == g]) - {-1} for g in (0, 1)]
    a = sum(w[e] for e in on[0] - on[1])
    b = sum(w[e] for e in on[1] - on[0])
    c = sum(w[e] for e in on[0] & on[1])
    s0, s1 = speed
    x = min(max((s0 * (b + c) - s1 * a) / (s0 + s1), 0.0), c)  # tokens of c on GPU 0
    return max((a + x) / s0, (b + c - x) / s1)


def two_gpu_even_makespan(phy2log: np.ndarray, w: np.ndarray, speed: np.ndarray, slots: int) -> float:
    """Even split of each expert over its replicas, by hand."""
    tokens = [0.0, 0.0]
    for e in set(phy2log) - {-1}:
        where = np.nonzero(phy2log == e)[0] // slots
        for g in where:
            tokens[g] += w[e] / where.size
    return max(tokens[0] / speed[0], tokens[1] / speed[1])


# ---------------------------------------------------------------------------------------------
# the audit's reproductions
# ---------------------------------------------------------------------------------------------
def test_loads_of_1e7_tokens_are_solved_bounded_and_scored_right():
    # 4 experts of 1e-7 tokens on 2 GPUs x 3 slots: 4e-7 tokens over 2 GPUs, makespan >= 2e-7, and
    # one replica of each of two experts on both GPUs reaches it (was: solve 0.0 "optimal",
    # eplb_lp and exact 1e-7, below the bound)
    inst = ep.Instance(loads=np.full((1, 1, 4), 1e-7), gpus_per_node=2, slots_per_gpu=3)
    sol = servopt.solve(inst, mip_gap=1e-9)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(2e-7, rel=REL)
    assert sol.bound == pytest.approx(2e-7, rel=REL)
    assert sol.decisions["z"].iloc[0] == pytest.approx(2e-7, rel=REL)
    assert sol.decisions["f"].sum() == pytest.approx(4e-7, rel=REL)
    assert bench.bound(inst).value == pytest.approx(2e-7, rel=REL)
    assert bench.bound(inst, milp_time_limit=10).value == pytest.approx(2e-7, rel=REL)
    for method in ("eplb_lp", "bid_price_lp", "exact"):
        assert bench.evaluate(inst, method).cost == pytest.approx(2e-7, rel=REL), method
    relaxed = servopt.solve(inst, relax=True)
    np.testing.assert_allclose(relaxed.prices["gpu_load"].to_numpy(), [0.5, 0.5], rtol=REL)


@pytest.mark.parametrize("slow", [1e-9, 1e-6])
def test_a_gpu_1e9_times_slower_is_scored_by_hand(slow):
    # loads 7, 1, 0, 3 on a GPU of speed `slow` and one of speed 1 (was: "dispatch LP failed
    # (infeasible)" for eplb, eplb_lp, eplb_price and no_replication at 1e-9)
    w = np.array([7.0, 1.0, 0.0, 3.0])
    speed = np.array([slow, 1.0])
    inst = ep.Instance(loads=np.array([[w]] * 2), gpus_per_node=2, slots_per_gpu=3, gpu_speed=speed)
    best = 11.0 / (1.0 + slow)  # every token shared at one time: the bound, and reached
    assert bench.bound(inst).value == pytest.approx(best, rel=1e-12)
    for method in ("exact", "bid_price_lp"):
        assert bench.evaluate(inst, method).cost == pytest.approx(best, rel=REL), method
    for method, dispatch, by_hand in (("eplb", "even", two_gpu_even_makespan),
                                      ("eplb_lp", "lp", two_gpu_lp_makespan),
                                      ("no_replication", "even", two_gpu_even_makespan)):
        plan = sv.POLICIES[method](inst)
        assert plan.dispatch == dispatch
        out = bench.evaluate(inst, lambda i, plan=plan: plan)
        assert out.cost == pytest.approx(by_hand(plan.phy2log[0], w, speed, 3), rel=REL), method
        lp = two_gpu_lp_makespan(plan.phy2log[0], w, speed, 3)
        assert bench.gpu_times(inst, plan, inst.next_loads, "lp").max() == pytest.approx(lp, rel=REL)
    price = bench.evaluate(inst, "eplb_price").cost
    assert np.isfinite(price) and price >= best * (1 - REL)
    # the dispatch LP of the matrix path (rules) agrees with the hand value and prices per token
    plan = sv.POLICIES["eplb_lp"](inst)
    _, z, gpu_price = sv.lp_dispatch(plan.phy2log, inst.planned_loads, 3, speed)
    assert z[0] == pytest.approx(two_gpu_lp_makespan(plan.phy2log[0], w, speed, 3), rel=REL)
    assert (gpu_price[0] * speed).sum() == pytest.approx(1.0, rel=REL)


# ---------------------------------------------------------------------------------------------
# the scale sweep
# ---------------------------------------------------------------------------------------------
def _instance(kind: str, seed: int) -> ep.Instance:
    inst = ep.generate("tiny", windows=3, seed=seed)
    if kind == "speeds":
        return dataclasses.replace(inst, gpu_speed=np.array([1.0, 1.5, 2.0]))
    if kind == "migration":
        prev = sv.eplb(inst.loads[0], inst.num_slots, inst.num_groups, inst.num_nodes, inst.num_gpus)[0]
        return dataclasses.replace(inst, previous_placement=prev, migration_cost=20.0)
    return inst


def _results(inst: ep.Instance, cost_unit: float, price_unit: float) -> dict[str, np.ndarray]:
    """Every number of the decision, divided by its unit: costs, bounds and makespans by
    ``cost_unit``, prices per token by ``price_unit``, prices per slot or replica by cost_unit."""
    out: dict[str, np.ndarray] = {}
    for method in sv.POLICIES:
        outcome = bench.evaluate(inst, method)
        out[method] = np.array([outcome.cost, outcome.metrics["makespan"]]) / cost_unit
        out[method + " balancedness"] = np.array([outcome.metrics["balancedness"],
                                                  outcome.metrics["balancedness_lp"]])
    out["bound"] = np.array([bench.bound(inst).value]) / cost_unit
    out["bound milp"] = np.array([bench.bound(inst, milp_time_limit=10).value]) / cost_unit
    sol = servopt.solve(inst, mip_gap=1e-9, time_limit=60)
    out["solve"] = np.array([sol.objective, sol.bound]) / cost_unit
    out["solve z"] = sol.decisions["z"].to_numpy() / cost_unit
    relaxed = servopt.solve(inst, relax=True)
    out["relax"] = np.array([relaxed.objective]) / cost_unit
    for name, price in relaxed.prices.items():
        per_token = name in ("demand", "link", "gpu_load", "order")
        out["relax " + name] = price.to_numpy() / (price_unit if per_token else
                                                   cost_unit if name in ("slots", "placed") else 1.0)
    placement = sv.eplb(inst.planned_loads, inst.num_slots, inst.num_groups, inst.num_nodes, inst.num_gpus)[0]
    for backend in ("highs", "cvxpy"):
        dispatch = servopt.solve(inst, placement=placement, backend=backend)
        out[backend + " dispatch"] = np.array([dispatch.objective]) / cost_unit
        out[backend + " f"] = dispatch.decisions["f"].to_numpy() * price_unit / cost_unit
        for name in ("demand", "gpu_load"):
            out[backend + " " + name] = dispatch.prices[name].to_numpy() / price_unit
    flows, z, gpu_price = sv.lp_dispatch(placement, inst.planned_loads, inst.slots_per_gpu, inst.speed)
    out["lp_dispatch"] = np.concatenate([z / cost_unit, flows.ravel() * price_unit / cost_unit])
    out["lp_dispatch price"] = gpu_price.ravel() / price_unit
    return out


def _assert_same(got: dict, ref: dict, label: str) -> None:
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        np.testing.assert_allclose(got[key], value, rtol=REL, atol=0, err_msg=f"{label}: {key}")


def _load_sweep(kind: str, seed: int) -> None:
    base = _instance(kind, seed)
    ref = _results(base, 1.0, 1.0)
    for c in SCALES:
        scaled = dataclasses.replace(base, loads=base.loads * c, migration_cost=base.migration_cost * c)
        _assert_same(_results(scaled, c, 1.0), ref, f"{kind} seed {seed}, loads x {c:g}")


def _speed_sweep(ratio: float, seed: int) -> None:
    # speeds 1, ratio^-1/2, ratio^-1 (a 1e9 ratio: a GPU a billion times slower); all x c: every
    # time / c, so costs, bounds and makespans x 1/c, prices per token x 1/c
    base = ep.generate("tiny", windows=3, seed=seed)
    speed = np.array([1.0, ratio ** -0.5, 1.0 / ratio])
    ref = _results(dataclasses.replace(base, gpu_speed=speed), 1.0, 1.0)
    for c in SCALES:
        scaled = dataclasses.replace(base, gpu_speed=speed * c)
        _assert_same(_results(scaled, 1.0 / c, 1.0 / c), ref, f"speed ratio {ratio:g} seed {seed}, x {c:g}")


@pytest.mark.parametrize("kind", ["plain", "speeds", "migration"])
def test_every_number_scales_with_the_loads(kind):
    _load_sweep(kind, 0)


@pytest.mark.parametrize("ratio", [1e3, 1e9])
def test_every_number_scales_with_the_speeds(ratio):
    _speed_sweep(ratio, 0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kind", ["plain", "speeds", "migration"])
def test_every_number_scales_with_the_loads_more_seeds(kind, seed):
    _load_sweep(kind, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("ratio", [1.0, 1e6, 1e9])
def test_every_number_scales_with_the_speeds_more_seeds(ratio, seed):
    _speed_sweep(ratio, seed)


# ---------------------------------------------------------------------------------------------
# prices in their units with unequal speeds, and the refusals
# ---------------------------------------------------------------------------------------------
def test_gpu_time_prices_are_speed_times_gpu_load_prices():
    inst = _instance("speeds", 0)
    placement = sv.eplb(inst.planned_loads, inst.num_slots, inst.num_groups, inst.num_nodes, inst.num_gpus)[0]
    for sol in (servopt.solve(inst, placement=placement), servopt.solve(inst, relax=True),
                servopt.solve(inst, placement=placement, backend="cvxpy")):
        load, time = sol.prices["gpu_load"], sol.prices["gpu_time"]
        speed = inst.speed[load.index.get_level_values("gpu")]
        np.testing.assert_allclose(time.to_numpy(), load.to_numpy() * speed, atol=1e-9)
        np.testing.assert_allclose(time.groupby(level="layer").sum().to_numpy(), 1.0, atol=1e-9)
    # the rules' matrix path gives the same per-token prices as the model's dispatch LP where unique
    _, _, price = sv.lp_dispatch(placement, inst.planned_loads, inst.slots_per_gpu, inst.speed)
    np.testing.assert_allclose((price * inst.speed).sum(axis=1), 1.0, rtol=REL)


def test_speed_ratio_beyond_the_limit_is_refused_by_name():
    inst = ep.Instance(loads=np.array([[[7.0, 1, 0, 3]]]), gpus_per_node=2, slots_per_gpu=3,
                       gpu_speed=[1e-13, 1.0])
    for call in (lambda: servopt.solve(inst), lambda: bench.evaluate(inst, "eplb_lp"),
                 lambda: sv.lp_dispatch(np.array([[0, 1, 2, 3, 0, -1]]), inst.planned_loads, 3, inst.speed),
                 lambda: servopt.solve(inst, placement=[[0, 1, 2, 3, 0, -1]], backend="cvxpy")):
        with pytest.raises(InvalidInstanceError, match=r"gpu_speed.*1e\+12"):
            call()
    assert bench.bound(inst).value == pytest.approx(11.0 / (1 + 1e-13))  # no LP: still answered


def test_migration_cost_beyond_double_precision_of_the_loads_is_refused_by_name():
    inst = ep.Instance(loads=np.full((1, 1, 4), 1e-7), gpus_per_node=2, slots_per_gpu=3,
                       previous_placement=np.array([[0, 1, -1, 2, 3, -1]]), migration_cost=1e9)
    with pytest.raises(InvalidInstanceError, match=r"migration_cost.*1e\+12"):
        servopt.solve(inst)
    # the evaluator needs no MILP: the previous placement costs no migration, makespan 2e-7
    assert bench.evaluate(inst, lambda i: sv.Plan(i.previous_placement, "lp")).cost == pytest.approx(2e-7)


def test_gpu_times_that_overflow_are_refused_by_name():
    # 4e12 tokens at speed 1e-300: a time of 4e312
    inst = ep.Instance(loads=np.full((1, 1, 4), 1e12), gpus_per_node=2, slots_per_gpu=3,
                       gpu_speed=[1e-300, 1e-300])
    with pytest.raises(InvalidInstanceError, match="loads / gpu_speed"):
        servopt.solve(inst)


def test_the_models_are_written_in_load_units():
    # the unit is the data's: the largest expert load maps to 1024 load units
    inst = ep.generate("tiny", windows=2, seed=0)
    model = em.build(inst)
    assert model.load_unit == pytest.approx(inst.planned_loads.max() / 1024)
    assert max(con.upper for con in model.demand.values()) == pytest.approx(1024.0)
