"""Every decision's dual prices against finite differences of the optimal value.

The independent check of a price is the value function itself: move the right-hand side of one
row of the built Pyomo model by +-delta (``REL`` = 1e-4 of the row's size, read off the optimum),
re-solve, and read the one-sided derivatives of the optimum. In servopt's convention
(``servopt/core/solution.py``) the price of an inequality row is the improvement per unit of
relaxation (>= 0) and the price of an equality row is d(optimum)/d(rhs). The value function of an
LP is piecewise linear and convex (min) or concave (max) in one right-hand side, so *every* optimal
dual lies between its two one-sided derivatives, and at a nondegenerate point (both derivatives
equal) the price is that common number. The tests assert the bracket on every row and the
equality on the rows where the point is nondegenerate (and that such rows with a positive price
exist, so the check is not vacuous). Prices of the
CVXPY twins and of the matrix (highspy) paths are checked against the Pyomo model's derivatives
row by row through their labels, which also checks that the labels name the same rows. The
tolerance is relative as well (``check_family``), and the last test checks that the check rejects a
price of the wrong sign or 0.1% off in every decision.

Not duplicated here: the caching Lagrangian certificate (``test_caching.py``) and the capacity
``kv_token`` marginal value (``test_capacity.py``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest
from pyomo.repn import generate_standard_repn

from servopt.core import InfeasibleError
from servopt.instances import batch_scheduling as bi
from servopt.instances import caching as ci
from servopt.instances import capacity as capi
from servopt.instances import decode_routing as di
from servopt.instances import expert_placement as ei
from servopt.models import batch_scheduling as bm
from servopt.models import caching as cm
from servopt.models import capacity as capm
from servopt.models import decode_routing as dm
from servopt.models import expert_placement as em
from servopt.solvers import batch_scheduling as bs
from servopt.solvers import caching as cs
from servopt.solvers import capacity as caps
from servopt.solvers import decode_routing as dr
from servopt.solvers import exact
from servopt.solvers import expert_placement as ep

# ---------------------------------------------------------------------------------------------
# the finite-difference oracle (written here, not taken from servopt)
# ---------------------------------------------------------------------------------------------
REL = 1e-4  # each row is moved by this share of its size (``row_sizes``)


def _solved(model: pyo.ConcreteModel) -> tuple[float, pyo.ConcreteModel | None]:
    """Optimal value of a clone of a Pyomo LP with HiGHS, and the clone holding the optimum's
    values (nan and None when the LP is infeasible)."""
    clone = model.clone()
    try:
        return exact.solve_model(clone, prices=False).objective, clone
    except InfeasibleError:
        return math.nan, None


def _value(model: pyo.ConcreteModel) -> float:
    """Optimal value of a Pyomo LP with HiGHS (nan when the perturbed LP is infeasible)."""
    return _solved(model)[0]


def _rhs(con: pyo.Constraint) -> float:
    return pyo.value(con.upper if con.upper is not None else con.lower)


def row_sizes(solved: pyo.ConcreteModel, family: str) -> dict:
    """Each row's size in its model's units, read off the optimum: the largest of |rhs| and
    |a_j x_j| over its terms (a row ``f - c y <= 0`` has rhs 0 but carries the flow f). A row
    with no term active and rhs 0 takes its family's largest size (1.0 if that is 0 too).

    The nudge (``REL`` x size) and the tolerance are relative to it: a fixed nudge of 1.0 was 100%
    of the capacity LP's rows once they were written per their capacity (a08c0ca), and a fixed
    tolerance of 1e-6 was half the capacity LP's kv_memory price (1.9e-6 per token-iteration/s),
    so a price 50% off passed."""
    sizes = {}
    for key, con in getattr(solved, family).items():
        repn = generate_standard_repn(con.body, compute_values=True)
        terms = [abs(float(a) * float(v.value or 0.0)) for a, v in
                 zip(repn.linear_coefs, repn.linear_vars, strict=True)]
        sizes[key] = max([abs(_rhs(con)), *terms])
    largest = max(sizes.values(), default=0.0) or 1.0
    return {k: v if v > 0 else largest for k, v in sizes.items()}


def _shifted(model: pyo.ConcreteModel, con: pyo.Constraint, delta: float) -> float:
    """Optimal value after moving the row's right-hand side by ``delta`` (both sides of an
    equality, the one finite side of an inequality)."""
    clone = model.clone()
    row = clone.find_component(con.name)
    lower = None if row.lower is None else pyo.value(row.lower) + delta
    upper = None if row.upper is None else pyo.value(row.upper) + delta
    row.set_value((lower, row.body, upper))
    return _value(clone)


def one_sided(model: pyo.ConcreteModel, con: pyo.Constraint, delta: float,
              base: float | None = None) -> tuple[float, float]:
    """The two one-sided derivatives of the optimum in the row's rhs, turned into servopt's
    convention by hand: ``(forward, backward)``. For an inequality both are "improvement per
    unit of relaxation"; for an equality both are d(optimum)/d(rhs)."""
    sense = next(model.component_data_objects(pyo.Objective, active=True)).sense
    base = _value(model) if base is None else base
    up, down = _shifted(model, con, delta), _shifted(model, con, -delta)
    # an infeasible side is an infinite value: +inf for a min problem, -inf for a max problem
    worst = math.inf if sense == pyo.minimize else -math.inf
    forward = worst if math.isnan(up) else (up - base) / delta
    backward = -worst if math.isnan(down) else (base - down) / delta
    if con.equality:
        sign = 1.0
    elif con.upper is not None and con.lower is None:  # body <= rhs: relaxing raises rhs
        sign = -1.0 if sense == pyo.minimize else 1.0
    elif con.lower is not None and con.upper is None:  # body >= rhs: relaxing lowers rhs
        sign = 1.0 if sense == pyo.minimize else -1.0
    else:
        raise AssertionError(f"ranged row {con.name} not expected")
    return sign * forward, sign * backward


class Derivs(NamedTuple):
    """One row's one-sided derivatives (per reported row unit) and the price tolerance there."""
    forward: float
    backward: float
    tol: float


def check_family(model: pyo.ConcreteModel, prices: pd.Series, family: str, *, rel: float = REL,
                 tol: float = 1e-6, keys=None) -> dict:
    """Bracket every priced row of ``family`` by its one-sided derivatives; equality at the
    nondegenerate rows. Returns {key: Derivs} for further checks.

    Each row moves by ``rel`` x its size (:func:`row_sizes`). ``tol`` is relative too: a price
    may be off by what moves the optimum by ``tol`` x |optimum| when the whole row (its size)
    is relaxed, i.e. ``tol |optimum| / size`` per row unit, whatever units the model is in."""
    component = getattr(model, family)
    base, solved = _solved(model)
    assert solved is not None and math.isfinite(base), f"{family}: the base LP has no optimum"
    sizes = row_sizes(solved, family)
    # a row written in other units than its price (decode routing's step_load in KV tokens,
    # priced per ms: ``row_scale``) moves the objective per row unit, not per priced unit
    per_unit = float((getattr(model, "row_scale", None) or {}).get(family, 1.0))
    scale = abs(base) or 1.0
    out = {}
    for key, con in component.items():
        if keys is not None and key not in keys:
            continue
        price = float(prices.loc[key])
        fwd, bwd = (d / per_unit for d in one_sided(model, con, rel * sizes[key], base))
        row_tol = tol * scale / (sizes[key] * per_unit)
        out[key] = Derivs(fwd, bwd, row_tol)
        lo, hi = min(fwd, bwd), max(fwd, bwd)
        assert math.isfinite(lo) or math.isfinite(hi), f"{family}[{key}]: both sides infeasible"
        assert lo - row_tol <= price <= hi + row_tol, (
            f"{family}[{key}]: price {price} outside the one-sided derivatives {fwd}, {bwd} "
            f"(tolerance {row_tol:.3g})")
        if not con.equality:
            assert price >= 0, f"{family}[{key}]: inequality price {price} < 0"
        if math.isfinite(fwd) and math.isfinite(bwd) and abs(fwd - bwd) <= row_tol:
            assert price == pytest.approx(fwd, abs=row_tol), f"{family}[{key}]"
    return out


def nondegenerate_positive(derivs: dict) -> list:
    return [k for k, d in derivs.items()
            if math.isfinite(d.forward) and math.isfinite(d.backward)
            and abs(d.forward - d.backward) <= d.tol and abs(d.forward) > 10 * d.tol]


def assert_matches_fd(prices: pd.Series, derivs: dict, label: str, factor: float = 1.0) -> None:
    """Another backend's prices, looked up by label, inside the Pyomo rows' brackets (each
    row's tolerance x ``factor``)."""
    for key, d in derivs.items():
        price = float(prices.loc[key])
        tol = factor * d.tol
        assert min(d.forward, d.backward) - tol <= price <= max(d.forward, d.backward) + tol, (
            f"{label}[{key}]: {price} outside {d.forward}, {d.backward}")


# ---------------------------------------------------------------------------------------------
# expert placement
# ---------------------------------------------------------------------------------------------
def _placement_instance() -> tuple[ei.Instance, np.ndarray]:
    # layer 0: expert 1 is on both GPUs and its tokens split so that GPU 0 (speed 1) and GPU 1
    # (speed 2) finish together: z = 50/3, pi = (1/3, 1/3) (sum_g s_g pi_g = 1); layer 1: expert
    # 1 (9 tokens) lives only on GPU 0, which is the bottleneck (z = 9, pi = (1, 0))
    loads = np.array([[[10.0, 20.0, 20.0], [12.0, 9.0, 2.0]]])
    inst = ei.Instance(loads=loads, num_nodes=1, gpus_per_node=2, slots_per_gpu=2,
                       gpu_speed=np.array([1.0, 2.0]))
    return inst, np.array([[0, 1, 2, 1], [0, 1, 2, 0]])


def test_expert_dispatch_lp_prices_are_finite_differences():
    inst, placement = _placement_instance()
    model = em.build(inst, placement=placement)
    sol = exact.solve_model(model, decision="expert_placement")
    assert sol.objective == pytest.approx(50 / 3 + 9)
    load = check_family(model, sol.prices["gpu_load"], "gpu_load")
    demand = check_family(model, sol.prices["demand"], "demand")
    # the hand values, and every row nondegenerate here
    np.testing.assert_allclose(sol.prices["gpu_load"].to_numpy(), [1 / 3, 1 / 3, 1, 0], atol=1e-9)
    np.testing.assert_allclose(sol.prices["demand"].to_numpy(), [1 / 3] * 3 + [0, 1, 0], atol=1e-9)
    assert len(nondegenerate_positive(load)) == 3
    assert len(nondegenerate_positive(demand)) == 4
    # the CVXPY dispatch LP, through its labels
    cvx = exact.solve(inst, backend="cvxpy", placement=placement)
    assert cvx.prices["gpu_load"].index.names == ["layer", "gpu"]
    assert cvx.prices["demand"].index.names == ["layer", "expert"]
    assert_matches_fd(cvx.prices["gpu_load"], load, "cvxpy gpu_load")
    assert_matches_fd(cvx.prices["demand"], demand, "cvxpy demand")
    # the matrix path of the rules (layers x GPUs array)
    _, _, price = ep.lp_dispatch(placement, inst.planned_loads, inst.slots_per_gpu, inst.speed)
    assert price.shape == (inst.num_layers, inst.num_gpus)
    assert_matches_fd(pd.Series(price.ravel(), index=pd.MultiIndex.from_product(
        [range(inst.num_layers), range(inst.num_gpus)])), load, "lp_dispatch gpu_load")


def test_expert_dispatch_prices_of_a_layer_subset_carry_the_layer_id():
    inst, placement = _placement_instance()
    model = em.build(inst, placement=placement, layers=[1])
    sol = exact.solve_model(model)
    assert list(sol.prices["gpu_load"].index) == [(1, 0), (1, 1)]
    assert sol.prices["gpu_load"].index.names == ["layer", "gpu"]
    check_family(model, sol.prices["gpu_load"], "gpu_load")
    check_family(model, sol.prices["demand"], "demand")
    assert sol.prices["gpu_load"].loc[(1, 0)] == pytest.approx(1.0)


def test_expert_placement_relaxation_prices_are_finite_differences():
    inst, _ = _placement_instance()
    model = em.build(inst, relax=True)
    sol = exact.solve(inst, relax=True)
    for family in ("gpu_load", "demand", "slots", "placed", "lower"):
        check_family(model, sol.prices[family], family)
    # the link rows of layer 0 and the symmetry rows
    check_family(model, sol.prices["link"], "link",
                 keys=[k for k in model.link if k[0] == 0])
    if "order" in sol.prices:
        check_family(model, sol.prices["order"], "order")


def test_expert_placement_mip_prices_are_those_of_the_lp_with_the_placement_fixed():
    # a MIP's prices are documented as the duals of the LP with every integer fixed at the
    # incumbent: the finite differences of that LP, built here by fixing y by hand
    inst, _ = _placement_instance()
    mip = em.build(inst)
    sol = exact.solve_model(mip)
    fixed = em.build(inst)
    for key, var in fixed.y.items():
        var.fix(round(mip.y[key].value))
    for family in ("gpu_load", "demand"):
        derivs = check_family(fixed, sol.prices[family], family)
        assert nondegenerate_positive(derivs), family


# ---------------------------------------------------------------------------------------------
# decode routing
# ---------------------------------------------------------------------------------------------
def _epoch() -> dm.Epoch:
    return dm.Epoch(base_load=[[100.0, 90.0], [40.0, 20.0], [10.0, 60.0]],
                    profile=[[50.0, 45.0], [30.0, 10.0], [70.0, 70.0]], demand=[1.0, 1.0, 1.0],
                    kv_need=[51.0, 31.0, 71.0], free_slots=[1, 2, 2], free_kv=[500, 60, 500],
                    ms_per_kv_token=0.01, discount=0.8)


def test_decode_epoch_lp_prices_are_finite_differences():
    epoch = _epoch()
    model = dm.build_epoch(epoch, relax=True)
    sol = exact.solve_model(model, decision="decode_routing")
    derivs = {}
    for family in ("worker_load", "slots", "kv_memory", "assign"):
        derivs[family] = check_family(model, sol.prices[family], family)
    # one binding row of each resource family, each nondegenerate (so the price is pinned)
    for family in ("worker_load", "slots", "kv_memory"):
        assert nondegenerate_positive(derivs[family]), family
    # the CVXPY twin and the matrix path (highspy), through their labels / row slices
    cvx = exact.solve_cvxpy(dm.build_epoch_cvxpy(epoch), decision="decode_routing")
    mat = dm.epoch_matrices(epoch)
    res = dr.solve_matrix(mat)
    G, H = epoch.base_load.shape
    for family, d in derivs.items():
        assert_matches_fd(cvx.prices[family], d, f"cvxpy {family}")
        flat = res["price"][mat.rows[family]]
        index = (pd.MultiIndex.from_product([range(G), range(H)]) if family == "worker_load"
                 else pd.RangeIndex(len(flat)))
        assert_matches_fd(pd.Series(flat, index=index), d, f"matrix {family}")


def _hindsight_instance(**kw) -> di.Instance:
    # an idle gap between steps 2 and 5: the active steps are 0, 1, 2, 5, 6, 7
    frame = pd.DataFrame({"arrival_s": [0.0, 0.0, 1.0, 5.0, 5.0, 6.0],
                          "prompt_tokens": [100, 40, 70, 30, 80, 50],
                          "output_tokens": [3, 2, 2, 2, 3, 1]})
    args = dict(workers=2, slots=8, kv_capacity=10_000, step_ms=1.0, ms_per_kv_token=0.01,
                arrival_unit="step", requests=frame)
    args.update(kw)
    return di.Instance(**args)


def test_decode_hindsight_lp_prices_are_finite_differences():
    inst = _hindsight_instance()
    model = dm.build(inst, relax=True)
    sol = exact.solve(inst, relax=True)
    cvx = exact.solve(inst, backend="cvxpy")
    derivs = {}
    for family in ("step_load", "step_floor", "assign"):
        derivs[family] = check_family(model, sol.prices[family], family)
        assert_matches_fd(cvx.prices[family], derivs[family], f"cvxpy {family}")
    assert nondegenerate_positive(derivs["step_floor"])
    # the highspy matrix path (its step_floor is a column bound, so it has no such row)
    mat = dm.hindsight_matrices(inst, relax=True)
    res = dr.solve_matrix(mat)
    for family in ("step_load", "assign"):
        flat = pd.Series(res["price"][mat.rows[family]], index=sol.prices[family].index)
        assert_matches_fd(flat, derivs[family], f"matrix {family}")


def test_decode_hindsight_slot_and_kv_prices_are_finite_differences():
    # two slots and 112 KV tokens per worker: both families exist, and the KV row of worker 1
    # at step 1 binds with a unique price (the slot rows only bracket: they are degenerate)
    inst = _hindsight_instance(slots=2, kv_capacity=112)
    model = dm.build(inst, relax=True)
    assert hasattr(model, "slots") and hasattr(model, "kv_memory")
    sol = exact.solve(inst, relax=True)
    cvx = exact.solve(inst, backend="cvxpy")
    for family in ("slots", "kv_memory"):
        derivs = check_family(model, sol.prices[family], family)
        assert_matches_fd(cvx.prices[family], derivs, f"cvxpy {family}")
        if family == "kv_memory":
            assert nondegenerate_positive(derivs) == [(1, 1)]


def test_decode_hindsight_block_prices_are_finite_differences():
    # step_block=2: one epigraph row per block of two active steps, still priced as above
    inst = _hindsight_instance()
    model = dm.build(inst, relax=True, step_block=2)
    sol = exact.solve(inst, relax=True, step_block=2)
    for family in ("step_load", "step_floor", "assign"):
        check_family(model, sol.prices[family], family)


def test_decode_epoch_central_prices_used_by_the_router_are_finite_differences():
    # ``BidPrice(central=True)`` reads interior-point duals without crossover: still inside
    # every row's bracket
    epoch = _epoch()
    G, H = epoch.base_load.shape
    mat = dm.epoch_matrices(epoch)
    res = dr.solve_matrix(mat, central=True)
    model = dm.build_epoch(epoch, relax=True)
    sol = exact.solve_model(model)
    for family in ("worker_load", "slots", "kv_memory", "assign"):
        derivs = check_family(model, sol.prices[family], family)
        flat = res["price"][mat.rows[family]]
        index = (pd.MultiIndex.from_product([range(G), range(H)]) if family == "worker_load"
                 else pd.RangeIndex(len(flat)))
        assert_matches_fd(pd.Series(flat, index=index), derivs, f"central {family}", factor=10)


def test_decode_hindsight_step_labels_are_the_step_numbers():
    """The docs index ``step_load[g, k]`` / ``step_floor[k]`` by the active step k; with an idle
    gap (no request active at steps 3 and 4) the label must be the step number, not the
    position among the active steps."""
    inst = _hindsight_instance()
    active = dm.activity(inst).steps
    assert list(active) == [0, 1, 2, 5, 6, 7]
    sol = exact.solve(inst, relax=True)
    assert list(sol.prices["step_floor"].index) == list(active)
    assert sorted(set(sol.prices["step_load"].index.get_level_values("step"))) == list(active)
    assert list(sol.decisions["u"].index) == list(active)
    cvx = exact.solve(inst, backend="cvxpy")
    assert list(cvx.prices["step_floor"].index) == list(active)
    assert sorted(set(cvx.prices["step_load"].index.get_level_values("step"))) == list(active)
    # blocks of two active steps: (0, 1), (2, 5), (6, 7), each labelled by its first step
    blocked = exact.solve(inst, relax=True, step_block=2)
    assert list(blocked.prices["step_floor"].index) == [0, 2, 6]


# ---------------------------------------------------------------------------------------------
# batch scheduling
# ---------------------------------------------------------------------------------------------
def _batch_instance(max_batch=None) -> bi.Instance:
    return bi.Instance(kv_memory=30, arrival=np.array([0, 0, 0, 1, 2]),
                       prompt_tokens=np.array([6, 9, 4, 7, 3]),
                       output_tokens=np.array([3, 2, 4, 2, 3]), max_batch=max_batch)


@pytest.mark.parametrize("max_batch", [None, 2])
def test_batch_scheduling_lp_prices_are_finite_differences(max_batch):
    inst = _batch_instance(max_batch)
    model = bm.build(inst, relax=True)
    sol = exact.solve(inst, relax=True)
    families = ["kv_memory", "start_once"] + (["batch_size"] if max_batch else [])
    derivs = {f: check_family(model, sol.prices[f], f) for f in families}
    assert nondegenerate_positive(derivs["batch_size" if max_batch else "kv_memory"])
    # the matrix path and the CVXPY LP, by round / request label
    mat = bs.solve_lp(inst)
    cvx = exact.solve(inst, backend="cvxpy")
    for family, d in derivs.items():
        assert_matches_fd(mat.prices[family], d, f"matrix {family}")
        assert_matches_fd(cvx.prices[family], d, f"cvxpy {family}")
    assert mat.prices["kv_memory"].index.name == "round"


@pytest.mark.parametrize("max_batch", [None, 50])
def test_batch_scheduling_prices_with_cover_cuts_are_finite_differences(max_batch):
    # the LP strengthened by cover cuts (solve_lp(cuts=...)) is another LP: its memory prices
    # are the derivatives of *its* value, checked on the Pyomo model with the same cut rows
    inst = bi.generate(10, seed=0, max_batch=max_batch)
    cuts = bs.cover_bound(inst, rounds=3, time_limit=20).cuts
    assert cuts
    sol = bs.solve_lp(inst, cuts=cuts)
    model = bm.build(inst, relax=True)
    keys = list(model.x.keys())
    model.cuts = pyo.ConstraintList()
    for columns, rhs in cuts:
        model.cuts.add(sum(model.x[keys[c]] if c < len(keys) else model.late[c - len(keys)]
                           for c in np.asarray(columns).tolist()) <= rhs)
    assert sol.objective == pytest.approx(_value(model.clone()), rel=1e-9)
    priced = sol.prices["kv_memory"]
    rows = [t for t in model.kv_memory if priced.loc[t] > 1e-6][:4]
    assert rows
    check_family(model, priced, "kv_memory", keys=rows)
    if max_batch is not None:
        assert len(sol.prices["batch_size"]) == sol.info["rounds"]


def test_batch_bid_price_rule_reads_the_prices_by_round():
    # nothing can run before round 3: the Pyomo LP's kv_memory prices start at round 3
    inst = bi.Instance(kv_memory=30, arrival=np.array([3, 3, 3, 4, 5]),
                       prompt_tokens=np.array([6, 9, 4, 7, 3]),
                       output_tokens=np.array([3, 2, 4, 2, 3]))
    sol = exact.solve(inst, relax=True)
    model = bm.build(inst, relax=True)
    derivs = check_family(model, sol.prices["kv_memory"], "kv_memory")
    assert nondegenerate_positive(derivs) == [4]
    # every modelled round is priced (0 where the model has no row), labelled by round; the
    # model's rounds run from the first arrival (3)
    assert sol.prices["kv_memory"].index.name == "round"
    assert sol.prices["kv_memory"].index.tolist() == list(range(3, 3 + model.columns.rounds))
    rule = bs.BidPrice.from_solution(sol)
    assert rule.origin == 3
    # the rule's price for round 4 is round 4's finite difference, and no other round is priced
    assert rule.prices[4 - 3] == pytest.approx(derivs[4].forward, abs=derivs[4].tol)
    assert derivs[4].forward > 0
    assert np.count_nonzero(rule.prices > 1e-9) == 1
    # and it prices a footprint like the rule built on the matrix path (prices 0..T-1)
    other = bs.BidPrice.from_solution(bs.solve_lp(inst))
    assert rule.footprint_price(4, np.array([10.0]), np.array([1])) == pytest.approx(
        other.footprint_price(4, np.array([10.0]), np.array([1])))


# ---------------------------------------------------------------------------------------------
# capacity
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, binding", [
    ({}, "memory"),
    ({"kv_tokens": 2_000_000}, "slots"),
    ({"kv_tokens": 2_000_000, "batch_cap": 1024, "token_budget": 2048}, "compute"),
])
def test_capacity_lp_prices_are_finite_differences(changes, binding):
    inst = capi.generate(workload="conversation", requests=300, kv_tokens=40_000, seed=2)
    inst = inst.with_(**changes)
    assert capm.bounds(inst).binding == binding
    model = capm.build(inst)
    sol = exact.solve(inst)
    cvx = exact.solve(inst, backend="cvxpy")
    # each row moved by REL of its size: the rows are written per their capacity (about 1 at
    # the optimum), and the binding resource's row has a nondegenerate positive price
    row = {"memory": "kv_memory", "slots": "batch_slots", "compute": "token_budget"}[binding]
    for family in ("busy_time", "kv_memory", "token_budget", "batch_slots", "mix"):
        prices = sol.prices[family]
        if family != "mix":
            prices = pd.Series(prices.to_numpy(), index=[None])
        d = check_family(model, prices, family)
        if family == row:
            assert nondegenerate_positive(d) == [None], family
        other = cvx.prices[family]
        if family != "mix":
            other = pd.Series(other.to_numpy(), index=[None])
        assert_matches_fd(other, d, f"cvxpy {family}")


@pytest.mark.parametrize("changes, key, field, step", [
    ({"kv_tokens": 2_000_000}, "batch_slot", "batch_cap", 1),
    ({"kv_tokens": 2_000_000, "batch_cap": 1024, "token_budget": 2048}, "token_budget",
     "token_budget", 1),
])
def test_capacity_marginal_values_are_finite_differences_of_the_instance(changes, key, field,
                                                                          step):
    inst = capi.generate(workload="conversation", requests=300, kv_tokens=40_000, seed=2)
    inst = inst.with_(**changes)
    value = capm.marginal_values(exact.solve(inst), inst)[key]
    here = getattr(inst, field)
    up = exact.solve(inst.with_(**{field: here + step})).objective
    down = exact.solve(inst.with_(**{field: here - step})).objective
    assert value > 0
    assert value == pytest.approx((up - down) / (2 * step), rel=1e-3)


def test_capacity_step_overhead_value_is_a_finite_difference_under_the_corrected_bound():
    inst = capi.generate(workload="conversation", requests=300, kv_tokens=40_000, seed=2)
    assert capm.bounds(inst).binding == "memory"
    d0, h = inst.step_overhead_s, 1e-6
    fd = (exact.solve(inst.with_(step_overhead_s=d0 - h)).objective
          - exact.solve(inst.with_(step_overhead_s=d0 + h)).objective) / (2 * h) * 1e-3
    value = capm.marginal_values(exact.solve(inst), inst)["step_overhead_ms"]
    closed = caps.bound_prices(inst, capm.bounds(inst))["step_overhead_ms"]
    assert (value, closed) == pytest.approx((fd, fd), rel=1e-3)


# ---------------------------------------------------------------------------------------------
# caching
# ---------------------------------------------------------------------------------------------
def _cache_instance() -> ci.Instance:
    # objects A, B, C of 3 tokens (miss costs 5, 4, 6) in a 5-token cache, requested
    # A B A B C B C: only gap 1 (A and B alive) and gap 4 (B and C alive) can bind; the LP keeps
    # A and C and 2/3 of each B interval, so each binding gap is worth B's 4/3 per token
    ids = np.array([0, 1, 0, 1, 2, 1, 2])
    return ci.Instance(time=np.arange(len(ids), dtype=float), object_id=ids,
                       size=np.array([3.0, 3.0, 3.0]), miss_cost=np.array([5.0, 4.0, 6.0]),
                       capacity=5.0)


@pytest.mark.parametrize("form", ["flow", "interval"])
def test_caching_capacity_prices_per_gap_are_finite_differences(form):
    inst = _cache_instance()
    model = cm.build(inst, form=form, relax=True)
    sol = exact.solve(inst, form=form, relax=True)
    cap = check_family(model, sol.prices["cache_capacity"], "cache_capacity")
    assert nondegenerate_positive(cap) == [1, 4]
    assert sol.prices["cache_capacity"].loc[[1, 4]].tolist() == pytest.approx([4 / 3, 4 / 3])
    assert sol.prices["cache_capacity"].index.name == "gap"
    if form == "flow":
        assert sol.info["form"] == "matrix"  # the default path; Pyomo's prices agree as well
        pyomo = exact.solve(inst, form=form, backend="pyomo", relax=True)
        assert_matches_fd(pyomo.prices["cache_capacity"], cap, "pyomo cache_capacity")
        check_family(model, pyomo.prices["occupancy_balance"], "occupancy_balance")
        # the matrix path (full and reduced network) and CVXPY: one price per gap
        for reduce in (False, True):
            fast = cs.solve_lp(inst, reduce=reduce)
            assert len(fast.price) == inst.requests - 1
            assert_matches_fd(pd.Series(fast.price), cap, f"highs_matrix reduce={reduce}")
        cvx = exact.solve(inst, backend="cvxpy", form=form, relax=True)
        assert_matches_fd(cvx.prices["cache_capacity"], cap, "cvxpy cache_capacity")


def test_caching_bid_price_from_either_form_of_the_same_lp_is_the_same():
    # requests 0 and 1 are one-off objects: no interval spans gaps 0 and 1
    ids = np.array([3, 4, 0, 1, 0, 1])
    inst = ci.Instance(time=np.arange(6, dtype=float), object_id=ids, size=np.full(5, 3.0),
                       miss_cost=np.array([5.0, 4.0, 6.0, 1.0, 1.0]), capacity=5.0)
    flow = exact.solve(inst, form="flow", relax=True)
    interval = exact.solve(inst, form="interval", relax=True)
    assert flow.objective == pytest.approx(interval.objective)
    assert cs.BidPrice.from_solution(interval).price == pytest.approx(
        cs.BidPrice.from_solution(flow).price)
    # every gap is priced in both forms (0 where the interval form has no row), labelled alike
    for sol in (flow, interval):
        assert sol.prices["cache_capacity"].index.name == "gap"
        assert sol.prices["cache_capacity"].index.tolist() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# the oracle itself: it must reject a price of the wrong sign or 0.1% off
# ---------------------------------------------------------------------------------------------
def _expert_case():
    inst, placement = _placement_instance()
    return em.build(inst, placement=placement), exact.solve(inst, placement=placement), "gpu_load"


def _decode_case():
    model = dm.build_epoch(_epoch(), relax=True)
    return model, exact.solve_model(model), "kv_memory"


def _batch_case():
    inst = _batch_instance()
    return bm.build(inst, relax=True), exact.solve(inst, relax=True), "kv_memory"


def _capacity_case():
    # memory binds: the kv_memory price is 1.9e-6 per token-iteration/s, below the old fixed
    # tolerance of 1e-6 x max(1, price) by less than its own size (a price 50% off passed)
    inst = capi.generate(workload="conversation", requests=300, kv_tokens=40_000, seed=2)
    sol = exact.solve(inst)
    return capm.build(inst), sol, "kv_memory"


def _caching_case():
    inst = _cache_instance()
    return cm.build(inst, form="flow", relax=True), exact.solve(inst, relax=True), "cache_capacity"


@pytest.mark.parametrize("case", [_expert_case, _decode_case, _batch_case, _capacity_case,
                                  _caching_case], ids=lambda f: f.__name__.strip("_"))
def test_the_finite_difference_check_rejects_a_wrong_sign_or_scale(case):
    model, sol, family = case()
    prices = sol.prices[family]
    if family == "kv_memory" and hasattr(model, "units"):  # capacity: one unlabelled row
        prices = pd.Series(prices.to_numpy(), index=[None])
    rows = nondegenerate_positive(check_family(model, prices, family))
    assert rows
    for factor in (-1.0, 1.001, 0.999):
        with pytest.raises(AssertionError):
            check_family(model, prices * factor, family, keys=rows)
