"""Expert placement methods: DeepSeek EPLB, no replication, LPLB-style dispatch, bid prices, exact.

Policy protocol
---------------
A placement method is a callable ``method(instance) -> Plan``. It may read only the history
(``instance.history``: every window but the last; the evaluator hands it the instance with the
scored window's loads set to zero) and returns a :class:`Plan`: ``phy2log[l, p]``
(the logical expert in physical slot ``p`` of layer ``l``, on GPU ``p // slots_per_gpu``; -1 for
an empty slot), the dispatch semantics the plan is served with (``"even"``: every replica gets
an equal share, as EPLB assumes; ``"lp"``: LPLB's min-max dispatch LP per window; ``"price"``:
the bid-price dispatch rule with the plan's ``gpu_price``), and optionally its own note of the
wall time of planning (``wall_s``, seconds: the evaluator measures the call itself and reports
that).
The dispatches (:func:`even_dispatch`, :func:`lp_dispatch`, :func:`price_dispatch`, and
:func:`dispatch_flows` for a plan) return flows (layers, slots): the window's tokens served by
each physical slot.

Methods (``POLICIES``)
----------------------
- ``eplb`` / ``eplb_lp`` / ``eplb_price``: :func:`eplb` (DeepSeek's ``rebalance_experts``,
  re-implemented in numpy with the tie-breaks torch guarantees, and a stable sort where it does
  not) on the planned window, served with even split,
  the LP, or price dispatch. EPLB assumes equal GPUs and so does this re-implementation: the
  plan ignores ``gpu_speed`` (loads packed onto GPUs in index order), so with unequal speeds
  which GPU gets which experts, and the cost, depend on how the GPUs are numbered; only the LP
  and price dispatches serve the plan at the GPUs' speeds (``exact`` leaves EPLB's plan out of
  its candidates when speeds are given). ``eplb_price``'s prices are the dispatch LP's duals on
  the planned window. On EPLB's plans they are equal on every GPU of each replicated expert (0
  of 40,888 replicated experts differ, 30 full-case instances), so its price dispatch is
  water-filling, with exactly the flows of uniform prices; with two GPU speed tiers 28 of 4,010
  differ and uniform prices cost 0.1% less. What separates it from ``eplb_lp`` is the dispatch
  rule, not the prices (``benchmarks/results/expert_placement_prices.md``, second table).
- ``no_replication``: one slot per expert, LPT packing (heaviest expert to the GPU with a free
  slot on which it would finish first: the least-loaded one when speeds are equal).
- ``bid_price`` (and ``bid_price_lp``): the :class:`BidPrice` placement (bids for replicas,
  ring placement), served with the price dispatch rule :func:`price_dispatch` (or the LP).
- ``exact``: :func:`exact_placement`, the decomposition (layers independent; per layer replica
  counts, then placement, then the dispatch LP) certified against the combinatorial bound, with
  the placement MILP on layers that are not certified (small instances).

The previous placement. ``eplb``, ``eplb_lp``, ``eplb_price`` and ``no_replication`` ignore
``previous_placement`` and ``migration_cost`` (as EPLB does: it plans from the loads alone and
numbers the GPUs its own way), so their migrations, and their cost when ``migration_cost`` > 0,
depend on how the deployed placement's GPUs are labelled: on the tiny preset (seed 0) deployed
with EPLB's own plan at migration cost 5, ``eplb`` costs 481.83 with 0 migrations, and with the
same deployment's GPUs renumbered (0 1 2 -> 2 0 1) 541.83 with 12, for the same plan.
``bid_price``, ``bid_price_lp`` and ``exact`` align to the previous placement when
``migration_cost`` > 0 (their plan relabelled onto the deployed GPUs among GPUs of equal speed,
:func:`align_to_previous`, with keeping replicas in place among the candidates), so renumbering
the deployed GPUs leaves their cost as it was (up to tie-breaks: two plans that tie on the
planned window can score differently on the next); with ``migration_cost`` = 0 they ignore it
too (migrations are reported but cost nothing). ``tests/test_policy_errors.py`` pins this. A
method may not write into the instance: its arrays are read-only, and the evaluator names the
method and the line that tried.

GPU speeds. Every rule but EPLB's places by earliest finish (:func:`earliest_finish`) and walks
GPUs in an order set by their speeds (:func:`ring_order`, the fastest first when keeping
replicas), their numbers breaking ties among equal speeds only, so renumbering GPUs of unequal
speed (speeds and deployed placement with them) renumbers the plan and leaves its cost as it was
(``tests/test_expert_placement_speeds.py``); with equal speeds the choices are exactly the
least-time-now choices these rules made before speeds counted.

The rules and baselines are vectorised numpy over layers; once prices are known no solver runs.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.core.checks import either, number, whole_number
from servopt.core.solution import normalise_dual
from servopt.instances.expert_placement import Instance
from servopt.models import expert_placement as placement_model
from servopt.models.expert_placement import (
    check_placement,
    dispatch_matrices,
    makespan_lower_bound,
    placement_matrix,
)
from servopt.solvers.exact import new_highs

DISPATCHES = ("even", "lp", "price")


def _check_instance(instance: Any) -> None:
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(f"an expert_placement method needs a servopt expert_placement Instance, "
                                   f"got {type(instance).__name__}")


def check_gpu_price(gpu_price: Any, num_layers: int, num_gpus: int, what: str = "gpu_price") -> np.ndarray:
    """GPU prices as a (layers, GPUs) float array; refused unless finite and >= 0 of that shape.
    Units: makespan (tokens per unit speed) per token on that GPU, i.e. 1 / speed: the dispatch
    LP's GPU-row dual / the GPU's speed (:func:`lp_dispatch`: sum_g speed_g x price_g = 1 per
    layer); only their order within a layer matters to :func:`price_dispatch`."""
    try:
        price = np.asarray(gpu_price)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"{what} must be a layers x GPUs = {num_layers} x {num_gpus} array of "
                                   "prices") from None
    if price.dtype.kind not in "iuf":
        raise InvalidInstanceError(f"{what} must hold numbers (one price per layer and GPU), got values of "
                                   f"type {price.dtype}")
    if price.shape != (num_layers, num_gpus):
        raise InvalidInstanceError(f"{what} must be layers x GPUs = {num_layers} x {num_gpus}, got shape "
                                   f"{price.shape}")
    price = price.astype(float)
    if not np.all(np.isfinite(price)) or np.any(price < 0):
        raise InvalidInstanceError(f"{what} must be finite and >= 0 (a GPU's price per token of capacity)")
    return price


@dataclasses.dataclass
class Plan:
    """A placement and how its tokens are dispatched (see the module docstring)."""

    phy2log: np.ndarray
    dispatch: str = "even"
    gpu_price: np.ndarray | None = None
    wall_s: float = math.nan
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        try:  # a nested list as well (the evaluator reads .shape): an array, not a copy
            self.phy2log = np.asarray(self.phy2log)
        except ValueError as exc:  # ragged rows
            raise InvalidInstanceError(
                f"phy2log must be a layers x physical slots array of expert ids (-1 empty); got "
                f"a {type(self.phy2log).__name__} whose rows differ in length") from exc
        if self.dispatch not in DISPATCHES:
            raise InvalidInstanceError(f"dispatch must be one of {DISPATCHES}, got {self.dispatch!r}")
        if self.dispatch == "price" and self.gpu_price is None:
            raise InvalidInstanceError("price dispatch needs gpu_price (layers x GPUs)")
        if not (isinstance(self.wall_s, float | np.floating) and math.isnan(self.wall_s)):
            self.wall_s = number("wall_s", self.wall_s, lambda v: 0 <= v < math.inf,
                                 "seconds >= 0 (or NaN: not noted)")


# =============================================================================================
# DeepSeek EPLB (re-implementation of eplb.py's rebalance_experts in numpy). Ties: torch.max and
# torch.min return the first index, and so does argmax/argmin here; torch.sort(descending=True)
# does not guarantee the order of equal weights, so equal weights keep index order (a stable
# sort), a deterministic choice the reference may not make on every device.
# =============================================================================================
def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack each row's n items into ``num_packs`` packs of exactly n / num_packs items.

    Items go in descending weight order (a stable sort: equal weights keep index order) to the
    lightest pack that still has room (lowest pack index on ties). Pack weights accumulate in
    float32 like the reference. Returns (pack index, rank in pack), each (rows, n).
    """
    rows, n = weight.shape
    if n % num_packs:
        raise InvalidInstanceError(f"{n} items cannot be packed evenly into {num_packs} packs")
    per_pack = n // num_packs
    if per_pack == 1:
        return (np.broadcast_to(np.arange(n), (rows, n)).copy(),
                np.zeros((rows, n), dtype=np.int64))
    order = np.argsort(-weight, axis=1, kind="stable")
    pack = np.full((rows, n), -1, dtype=np.int64)
    rank = np.full((rows, n), -1, dtype=np.int64)
    pack_weight = np.zeros((rows, num_packs), dtype=np.float32)
    pack_items = np.zeros((rows, num_packs), dtype=np.int64)
    r = np.arange(rows)
    for k in range(n):
        item = order[:, k]
        chosen = np.argmin(np.where(pack_items < per_pack, pack_weight, np.inf), axis=1)
        pack[r, item] = chosen
        rank[r, item] = pack_items[r, chosen]
        pack_weight[r, chosen] += weight[r, item]
        pack_items[r, chosen] += 1
    return pack, rank


def replicate_experts(weight: np.ndarray, num_phy: int) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Give each extra physical slot to the expert with the largest load per replica (first
    index on ties). Returns (phy2log, replica rank, count), like EPLB's ``replicate_experts``."""
    rows, num_log = weight.shape
    if num_phy < num_log:
        raise InvalidInstanceError(f"{num_phy} physical experts < {num_log} logical experts")
    phy2log = np.tile(np.arange(num_phy), (rows, 1))
    rank = np.zeros((rows, num_phy), dtype=np.int64)
    count = np.ones((rows, num_log), dtype=np.int64)
    r = np.arange(rows)
    for i in range(num_log, num_phy):
        chosen = np.argmax(weight / count.astype(np.float32), axis=1)
        phy2log[:, i] = chosen
        rank[:, i] = count[r, chosen]
        count[r, chosen] += 1
    return phy2log, rank, count


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1]), perm.shape), axis=1)
    return inv


def _eplb_hierarchical(weight: np.ndarray, num_physical: int, num_groups: int, num_nodes: int,
                       num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    layers, num_logical = weight.shape
    group_size = num_logical // num_groups
    groups_per_node = num_groups // num_nodes
    per_gpu = num_physical // num_gpus
    # 1. pack expert groups onto nodes
    group_load = weight.reshape(layers, num_groups, group_size).sum(-1)
    group_pack, group_rank = balanced_packing(group_load, num_nodes)
    log2mlog = (((group_pack * groups_per_node + group_rank) * group_size)[:, :, None]
                + np.arange(group_size)).reshape(layers, num_logical)
    mlog2log = _inverse(log2mlog)
    # 2. replicate experts within each node
    per_node = num_logical // num_nodes
    mlog_load = np.take_along_axis(weight, mlog2log, 1).reshape(-1, per_node)
    phy2mlog, phy_rank, mlog_count = replicate_experts(mlog_load, num_physical // num_nodes)
    # 3. pack the node's physical experts onto its GPUs
    phy_load = np.take_along_axis(mlog_load / mlog_count.astype(np.float32), phy2mlog, 1)
    pack, rank = balanced_packing(phy_load, num_gpus // num_nodes)
    pphy2phy = _inverse(pack * per_gpu + rank)
    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, 1)
    pphy2mlog = (pphy2mlog.reshape(layers, num_nodes, -1)
                 + np.arange(0, num_logical, per_node)[None, :, None]).reshape(layers, -1)
    phy2log = np.take_along_axis(mlog2log, pphy2mlog, 1)
    phy_rank = np.take_along_axis(phy_rank, pphy2phy, 1).reshape(layers, -1)
    count = np.take_along_axis(mlog_count.reshape(layers, -1), log2mlog, 1)
    return phy2log, phy_rank, count


def eplb(weight: Any, num_replicas: int, num_groups: int, num_nodes: int,
         num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeepSeek EPLB ``rebalance_experts``: (phy2log, log2phy, logcnt).

    weight : (layers, experts) loads. Hierarchical (groups packed onto nodes, replication within
    nodes, packing onto GPUs) when ``num_groups % num_nodes == 0``, global otherwise (one group,
    one node; as the original, the global policy then needs no other divisibility). GPUs are
    taken to be equal, as in the original: there is no speed argument.
    ``log2phy[l, e, k]`` is the physical slot of the k-th replica of e (-1 padding).
    """
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise InvalidInstanceError("weight must be a layers x experts array")
    layers, experts = w.shape
    hierarchical = num_groups % num_nodes == 0
    if num_replicas % num_gpus or (hierarchical and (num_gpus % num_nodes or experts % num_groups)):
        raise InvalidInstanceError(
            "EPLB needs num_replicas divisible by num_gpus and, for its hierarchical policy "
            "(num_groups divisible by num_nodes), num_gpus by num_nodes and the experts by "
            "num_groups")
    if hierarchical:
        phy2log, rank, count = _eplb_hierarchical(w, num_replicas, num_groups, num_nodes,
                                                  num_gpus)
    else:
        phy2log, rank, count = _eplb_hierarchical(w, num_replicas, 1, 1, num_gpus)
    width = int(count.max())
    log2phy = np.full((layers, experts * width), -1, dtype=np.int64)
    np.put_along_axis(log2phy, phy2log * width + rank,
                      np.broadcast_to(np.arange(num_replicas), (layers, num_replicas)), axis=1)
    return phy2log, log2phy.reshape(layers, experts, width), count


# =============================================================================================
# Dispatch: even split, the LP (LPLB), and the price rule
# =============================================================================================
def even_dispatch(phy2log: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Flows (layers, slots): each replica serves an equal share of its expert's tokens."""
    L, E = w.shape
    count = np.zeros((L, E))
    np.add.at(count, (np.repeat(np.arange(L), phy2log.shape[1]), np.maximum(phy2log, 0).ravel()),
              (phy2log >= 0).ravel())
    share = np.take_along_axis(w / np.maximum(count, 1), np.maximum(phy2log, 0), 1)
    return np.where(phy2log >= 0, share, 0.0)


def lp_dispatch(phy2log: np.ndarray, w: np.ndarray, slots_per_gpu: int,
                speed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPLB-style min-max dispatch LP for all layers at once (HiGHS, matrix path).

    Returns (flows (layers, slots), makespan per layer, GPU prices (layers, GPUs)); prices are
    the ``gpu_load`` duals in servopt's convention (>= 0, sum_g s_g pi_g = 1 per layer). HiGHS
    sees each layer in units of its largest load and GPU rows in time
    (:func:`~servopt.models.expert_placement.dispatch_matrices`), so loads scaled by c give flows
    and makespans times c and the same prices; speeds beyond ``MAX_SPEED_RATIO`` are refused.
    """
    import highspy

    L, R = phy2log.shape
    G = R // slots_per_gpu
    speed = np.ones(G) if speed is None else np.asarray(speed, dtype=float)
    mats = dispatch_matrices(phy2log, w, slots_per_gpu, speed)
    A = _vstack(mats["A_eq"], mats["A_ub"])
    n_rows = A.shape[0]
    lower = np.concatenate([mats["b_eq"], np.full(L * G, -np.inf)])
    upper = np.concatenate([mats["b_eq"], mats["b_ub"]])
    h = new_highs()
    lp = highspy.HighsLp()
    n = A.shape[1]
    lp.num_col_, lp.num_row_ = n, n_rows
    lp.col_cost_ = mats["c"]
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.full(n, highspy.kHighsInf)
    lp.row_lower_ = np.where(np.isfinite(lower), lower, -highspy.kHighsInf)
    lp.row_upper_ = upper
    csc = A.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr
    lp.a_matrix_.index_ = csc.indices
    lp.a_matrix_.value_ = csc.data
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise InvalidInstanceError(f"dispatch LP not solved: {h.modelStatusToString(h.getModelStatus())}")
    sol = h.getSolution()
    x = np.asarray(sol.col_value)
    unit = mats["load_unit"]  # per layer, tokens
    flows = np.zeros((L, R))
    flows[mats["slot_layer"], mats["slot_index"]] = (np.maximum(x[: mats["slot_layer"].size], 0)
                                                     * unit[mats["slot_layer"]])
    makespan = x[-L:] * unit / mats["speed_unit"]
    dual = np.asarray(sol.row_dual)[L * w.shape[1]:].reshape(L, G)
    # a GPU's row is its time: its dual per unit time, / speed per token of capacity
    price = np.maximum(normalise_dual(dual, sense="min", row="le", convention="pyomo"), 0.0) / speed
    return flows, makespan, price


def _vstack(a: Any, b: Any) -> Any:
    import scipy.sparse as sp

    return sp.vstack([a, b], format="csr")


def _water_fill(level: np.ndarray, cap: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Split ``amount`` (rows) over columns raising ``level`` (rows, k) at rate 1 / ``cap``
    (speeds; 0 = not eligible) to a common water level. Returns the flows (rows, k)."""
    big = np.where(cap > 0, level, np.inf)
    order = np.argsort(big, axis=1, kind="stable")
    lv = np.take_along_axis(big, order, 1)
    cp = np.take_along_axis(cap, order, 1)
    finite = np.isfinite(lv)
    lv0 = np.where(finite, lv, 0.0)
    cum_cap = np.cumsum(cp, axis=1)
    cum_mass = np.cumsum(cp * lv0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (amount[:, None] + cum_mass) / cum_cap
    # the level with the first j columns wet is valid iff it does not reach column j + 1
    nxt = np.concatenate([lv[:, 1:], np.full((lv.shape[0], 1), np.inf)], axis=1)
    valid = finite & (h <= nxt + 1e-12 * np.abs(h))  # relative: the same at any load scale
    j = np.argmax(valid, axis=1)
    height = h[np.arange(lv.shape[0]), j]
    flow_sorted = np.where(finite, np.maximum(height[:, None] - lv0, 0.0) * cp, 0.0)
    flow = np.empty_like(flow_sorted)
    np.put_along_axis(flow, order, flow_sorted, axis=1)
    return flow


def price_dispatch(phy2log: np.ndarray, w: np.ndarray, gpu_price: np.ndarray,
                   slots_per_gpu: int, speed: np.ndarray | None = None, *,
                   passes: int = 3, tol: float = 1e-9) -> np.ndarray:
    """The bid-price dispatch rule: flows (layers, slots) without a solver.

    A single-replica expert's tokens go to its GPU. A replicated expert's tokens go to its
    replicas on the GPUs with the lowest price (within ``tol`` x the layer's highest price); among
    tied GPUs they are water-filled (raising the lowest GPU times first). Experts are taken
    heaviest first, and ``passes`` Gauss-Seidel sweeps re-fill each expert against the others'
    current flows.
    """
    L, R = phy2log.shape
    E = w.shape[1]
    G = R // slots_per_gpu
    gpu_price = check_gpu_price(gpu_price, L, G)
    speed = np.ones(G) if speed is None else np.asarray(speed, dtype=float)
    gpu = np.arange(R) // slots_per_gpu
    flows = np.zeros((L, R))
    occupied = phy2log >= 0
    safe = np.maximum(phy2log, 0)
    count = np.zeros((L, E), dtype=np.int64)
    np.add.at(count, (np.repeat(np.arange(L), R), safe.ravel()), occupied.ravel())
    rep_count = np.where(occupied, np.take_along_axis(count, safe, 1), 0)
    single = rep_count == 1
    flows[single] = np.take_along_axis(w, safe, 1)[single]
    gpu_tokens = np.zeros((L, G))
    np.add.at(gpu_tokens, (np.repeat(np.arange(L), R), np.tile(gpu, L)), flows.ravel())
    # replicated experts, heaviest first: (layers, K) expert ids, -1 padding
    multi = np.where(count > 1, w, -1.0)
    n_multi = int((count > 1).sum(axis=1).max(initial=0))
    if n_multi == 0:
        return flows
    order = np.argsort(-multi, axis=1, kind="stable")[:, :n_multi]
    active = np.take_along_axis(count, order, 1) > 1
    width = int(count.max())
    # slots of each expert: (layers, E, width), -1 padding
    slot_rank = _replica_rank(phy2log, count)
    slots_of = np.full((L, E, width), -1, dtype=np.int64)
    li, pi = np.nonzero(occupied)
    slots_of[li, phy2log[li, pi], slot_rank[li, pi]] = pi
    r = np.arange(L)
    price_min_tol = tol * np.abs(gpu_price).max(axis=1, keepdims=True)  # relative: any speed scale
    for sweep in range(passes):
        for k in range(n_multi):
            e = order[:, k]
            ok = active[:, k]
            slots = slots_of[r, e]  # (L, width)
            has = (slots >= 0) & ok[:, None]
            g = gpu[np.maximum(slots, 0)]
            if sweep:  # take the expert's current flows out before re-filling
                current = np.where(has, flows[r[:, None], np.maximum(slots, 0)], 0.0)
                np.add.at(gpu_tokens, (np.repeat(r, width), g.ravel()), -current.ravel())
            price = np.where(has, gpu_price[r[:, None], g], np.inf)
            cheapest = price <= price.min(axis=1, keepdims=True) + price_min_tol
            cap = np.where(has & cheapest, speed[g], 0.0)
            level = gpu_tokens[r[:, None], g] / speed[g]
            amount = np.where(ok, w[r, e], 0.0)
            new = _water_fill(level, cap, amount)
            new = np.where(has, new, 0.0)
            rows_has, cols_has = np.nonzero(has)
            flows[rows_has, slots[rows_has, cols_has]] = new[rows_has, cols_has]
            np.add.at(gpu_tokens, (np.repeat(r, width), g.ravel()), new.ravel())
    return flows


def _replica_rank(phy2log: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The k-th occurrence (0-based) of each slot's expert within its layer's row."""
    L, R = phy2log.shape
    E = count.shape[1]
    safe = np.where(phy2log >= 0, phy2log, E)  # empty slots form their own bucket
    key = np.arange(L)[:, None] * (E + 1) + safe
    order = np.argsort(key, axis=1, kind="stable")
    sorted_key = np.take_along_axis(key, order, 1)
    start = np.ones_like(sorted_key, dtype=bool)
    start[:, 1:] = sorted_key[:, 1:] != sorted_key[:, :-1]
    idx = np.arange(R)[None, :].repeat(L, 0)
    first = np.maximum.accumulate(np.where(start, idx, 0), axis=1)
    rank_sorted = idx - first
    rank = np.empty_like(rank_sorted)
    np.put_along_axis(rank, order, rank_sorted, axis=1)
    return rank


def gpu_times(flows: np.ndarray, slots_per_gpu: int, speed: np.ndarray | None = None
              ) -> np.ndarray:
    """GPU time (tokens / speed) per layer and GPU from slot flows."""
    L, R = flows.shape
    G = R // slots_per_gpu
    tokens = flows.reshape(L, G, slots_per_gpu).sum(axis=2)
    return tokens / (np.ones(G) if speed is None else speed)


def tight_prices(times: np.ndarray, speed: np.ndarray, rel_tol: float = 1e-3) -> np.ndarray:
    """Dual prices of the min-max dispatch from a dispatch's GPU times: uniform on the GPUs at
    the maximum (within ``rel_tol``), normalised so sum_g s_g pi_g = 1."""
    top = times >= times.max(axis=1, keepdims=True) * (1 - rel_tol)
    price = top / (top * speed).sum(axis=1, keepdims=True)
    return price


# =============================================================================================
# Placement building blocks (vectorised over layers)
# =============================================================================================
def counts_by_bids(bid_weight: np.ndarray, num_slots: int, max_count: int) -> np.ndarray:
    """Replica counts: every expert one, then the extra slots to the highest bids
    ``bid_weight[e] / k`` for the k-th replica (k = 1..max_count - 1), all at once.

    Ties: equal bids go to the lowest expert index first (then the lowest k), the order in which
    handing the slots out one at a time to the largest bid, first index on ties (as EPLB's
    replication does), would take them. The order is explicit (:func:`_first_by_value`: the
    values above the cut, then the equal ones in index order): ``np.argpartition`` picked among
    equal bids by its selection algorithm, so the counts of an instance with ties differed
    between numpy 1.26 and 2.x (all-zero weights, 5 extra slots, at most 4 replicas: 2, 3, 3
    replicas under numpy 1.26, 4, 3, 1 under 2.x)."""
    L, E = bid_weight.shape
    extra = num_slots - E
    count = np.ones((L, E), dtype=np.int64)
    if extra <= 0 or max_count <= 1:
        return count
    # only the ``extra`` first experts by (weight descending, index) can win an extra replica (any
    # other bid has at least ``extra`` bids ahead of it), each at most ``extra`` times
    top_n = min(E, extra)
    cand = _first_by_value(bid_weight, top_n)  # (L, top_n), ascending expert index
    depth = min(max_count - 1, extra)
    k = np.arange(1, depth + 1)
    bids = np.take_along_axis(bid_weight, cand, 1)[:, :, None] / k[None, None, :]
    flat = bids.reshape(L, -1)  # by (expert ascending, k ascending): the tie order
    take = min(extra, flat.shape[1])
    winners = np.take_along_axis(cand, _first_by_value(flat, take) // depth, 1)
    np.add.at(count, (np.repeat(np.arange(L), take), winners.ravel()), 1)
    return count


def _first_by_value(values: np.ndarray, n: int) -> np.ndarray:
    """Per row, the positions of the ``n`` largest values, ties to the lowest positions, in
    ascending position order ((rows, n) ints). Linear time: the cut is the n-th largest value
    (``np.partition`` gives the value, whatever it does with ties), every value above it is in,
    and of those equal to it the first ones by position."""
    rows, width = values.shape
    if n >= width:
        return np.broadcast_to(np.arange(width), (rows, width)).copy()
    cut = -np.partition(-values, n - 1, axis=1)[:, n - 1:n]
    above = values > cut
    room = n - above.sum(axis=1, keepdims=True)
    at_cut = values == cut
    chosen = above | (at_cut & (np.cumsum(at_cut, axis=1) <= room))
    return np.nonzero(chosen)[1].reshape(rows, n)


def ring_order(speed: np.ndarray) -> np.ndarray:
    """The order of the GPUs along :func:`pack_ring`'s ring: the fastest, the slowest, the next
    fastest, the next slowest, ... (each time the lowest index among equal speeds not yet taken),
    so consecutive GPUs, which the replicated experts link, pair fast with slow ones, and
    numbering GPUs of different speeds another way only renumbers the plan. Equal speeds:
    0, 1, ..., G - 1, the ring as it was before speeds counted.

    Why fast with slow: on the small preset (8 GPUs, seeds 0..11, five speed profiles)
    ``bid_price``'s cost / bound, averaged per profile, was 1.076-1.139 with this ring,
    1.101-1.275 with the ring fastest first and 1.094-1.236 slowest first (never lower than
    this ring's), and 1.087-1.174 for the rules before speeds counted (ring in index order,
    least time now) averaged over four random numberings; ``bid_price_lp`` ranked them the
    same."""
    speed = np.asarray(speed, dtype=float)
    ends = (np.argsort(-speed, kind="stable"), np.argsort(speed, kind="stable"))
    taken = np.zeros(speed.size, dtype=bool)
    order, at = [], [0, 0]
    for k in range(speed.size):
        end = ends[k % 2]
        while taken[end[at[k % 2]]]:
            at[k % 2] += 1
        g = end[at[k % 2]]
        taken[g] = True
        order.append(g)
    return np.array(order, dtype=np.int64)


def earliest_finish(load: np.ndarray, piece: np.ndarray, speed: np.ndarray,
                    blocked: np.ndarray) -> np.ndarray:
    """Per layer, the GPU on which a piece of ``piece`` tokens (layers,) would finish first, given
    the tokens ``load`` (layers, GPUs) already there: least ``(load + piece) / speed``, then the
    faster GPU, then the one with less time now (``load / speed``), then the lowest index;
    ``blocked`` GPUs are skipped (0 when every GPU is). Picking the least time now instead sends
    the first piece to GPU 0 whatever its speed (every time is 0), so the plan would depend on how
    GPUs of different speeds are numbered.

    With equal speeds the earliest finish is the least time now (lowest index on ties): the piece
    adds the same time on every GPU, which keeps the order of the times (rounding may merge two,
    never swap them; the third key would separate them again). So with equal speeds the least
    time now is what runs, computed as it always was: the same choices, bit for bit."""
    if speed.size and (speed == speed[0]).all():
        return np.argmin(np.where(blocked, np.inf, load / speed), axis=1)
    now = load / speed
    finish = (load + piece[:, None]) / speed
    finish[blocked] = np.inf
    chosen = finish.argmin(axis=1)
    first = finish <= finish[np.arange(finish.shape[0]), chosen][:, None]
    if np.count_nonzero(first) == finish.shape[0]:  # one earliest GPU per layer: no tie to break
        return chosen
    first &= ~blocked
    fastest = first & (speed >= np.where(first, speed, -np.inf).max(axis=1, keepdims=True))
    return np.argmin(np.where(fastest, now, np.inf), axis=1)


def pack_replicas(piece: np.ndarray, count: np.ndarray, num_gpus: int, slots_per_gpu: int,
                  speed: np.ndarray | None = None) -> np.ndarray:
    """Place ``count[l, e]`` replicas of each expert (each weighing ``piece[l, e]``) on GPUs:
    heaviest replica first, to the GPU with a free slot and no replica of that expert on which it
    would finish first (:func:`earliest_finish`: with equal speeds, the least-loaded one). Returns
    phy2log (layers, G * S), -1 for empty slots.

    A replica that no GPU can take (every GPU full or already hosting that expert) is not placed,
    as in :func:`sticky_placement`: that expert gets fewer replicas than ``count`` and a slot stays
    empty. Every expert still gets its first replica (a blocked replica means some GPU with a free
    slot hosts it: ``sum(count) <= G * S`` leaves a free slot), never two on one GPU, and never
    more than ``count``. It happens with unequal speeds, when the greedy fills the fast GPUs and
    the last expert's replicas find too few GPUs with room (loads 2, 4, 5, counts 1, 2, 3 on 3
    GPUs x 2 slots of speeds 1, 2, 1: the third replica of expert 2; 2.5% of random small plans
    with unequal speeds, audit R58 F2); before, it was written at GPU 0's next slot, past GPU 0's
    slots into GPU 1's, over a replica there, which could leave an expert with none and the
    dispatch LP infeasible. With equal speeds it did not happen in 10,000 random plans; the plans
    that place every replica are as they were."""
    L, E = piece.shape
    G, S = num_gpus, slots_per_gpu
    speed = np.ones(G) if speed is None else np.asarray(speed, dtype=float)
    width = int(count.max())
    # replicas as (expert, weight) rows sorted by weight desc (expert id asc on ties)
    rep_e = np.broadcast_to(np.arange(E)[None, :, None], (L, E, width))
    valid = np.arange(width)[None, None, :] < count[:, :, None]
    rep_w = np.where(valid, piece[:, :, None], -np.inf)
    rep_e = rep_e.reshape(L, -1)
    rep_w = rep_w.reshape(L, -1)
    order = np.argsort(-rep_w, axis=1, kind="stable")
    n_rep = int(count.sum(axis=1).max())
    order = order[:, :n_rep]
    experts = np.take_along_axis(rep_e, order, 1)
    weights = np.take_along_axis(rep_w, order, 1)
    live = np.isfinite(weights)
    load = np.zeros((L, G))
    used = np.zeros((L, G), dtype=np.int64)
    hosts = np.zeros((L, E, G), dtype=bool)
    phy2log = np.full((L, G * S), -1, dtype=np.int64)
    r = np.arange(L)
    r_first = r * G  # (layer, GPU 0) in a flattened (L, G) array
    # every GPU blocked needs G - (width - 1) full ones (an expert is on at most width - 1 GPUs
    # before its last replica), so S (G - width + 1) replicas placed before: none earlier
    can_block = S * (G - width + 1)
    for k in range(n_rep):
        e = experts[:, k]
        blocked = (used >= S) | hosts[r, e]
        ok = live[:, k]
        chosen = earliest_finish(load, np.where(ok, weights[:, k], 0.0), speed, blocked)
        if k >= can_block:  # earliest_finish picks a blocked GPU only when every GPU is blocked
            ok = ok & ~blocked.ravel()[r_first + chosen]
        chosen = np.where(ok, chosen, 0)
        slot = chosen * S + used[r, chosen]
        phy2log[r[ok], slot[ok]] = e[ok]
        load[r[ok], chosen[ok]] += weights[ok, k]
        used[r[ok], chosen[ok]] += 1
        hosts[r[ok], e[ok], chosen[ok]] = True
    return phy2log


def pack_ring(weight: np.ndarray, count: np.ndarray, num_gpus: int, slots_per_gpu: int,
              speed: np.ndarray | None = None) -> np.ndarray:
    """Ring placement: replicated experts (count > 1), heaviest first, take consecutive GPUs
    along a ring, each starting on the last GPU of the previous one, so the replicas chain every
    GPU into one component through which a dispatch can move tokens (with ``sum(count - 1) >=
    G`` extra replicas the chain closes the ring). The ring alternates fast and slow GPUs
    (:func:`ring_order`; index order when speeds are equal), so a replicated expert links GPUs of
    unlike speed and renumbering GPUs only renumbers the plan. Single experts then
    go heaviest first, in rounds (one per GPU with a free slot), each to the GPU of the round on
    which it would finish first (:func:`earliest_finish`: with equal speeds, the i-th heaviest of
    the round to the i-th least-loaded GPU). Returns phy2log (layers, G * S)."""
    L, E = weight.shape
    G, S = num_gpus, slots_per_gpu
    speed = np.ones(G) if speed is None else np.asarray(speed, dtype=float)
    if int(count.sum(axis=1).max()) > G * S:
        raise InvalidInstanceError(f"{int(count.sum(axis=1).max())} replicas do not fit in "
                                   f"{G} GPUs x {S} slots")
    # replicated experts first, heaviest first, then the singles, heaviest first (index order on
    # ties); each run of count replicas starts where the last ended
    order = np.lexsort((-weight, count <= 1), axis=1)  # stable
    n_multi = int((count > 1).sum(axis=1).max())
    c_sorted = np.take_along_axis(count, order[:, :n_multi], 1)
    multi = c_sorted > 1
    runs = np.where(multi, c_sorted, 0)
    start = np.cumsum(np.where(multi, c_sorted - 1, 0), axis=1) - np.where(multi, c_sorted - 1, 0)
    layer = np.repeat(np.arange(L), runs.sum(axis=1))
    expert = np.repeat(order[:, :n_multi].ravel(), runs.ravel())
    first = np.repeat(start.ravel(), runs.ravel())
    offset = np.arange(layer.size) - np.repeat(np.cumsum(runs.ravel()) - runs.ravel(), runs.ravel())
    ring = ring_order(speed)
    gpu = ring[(first + offset) % G]
    # slot of each replica: its rank among the replicas on the same (layer, GPU)
    cell = layer * G + gpu
    by_cell = np.argsort(cell, kind="stable")
    sorted_cell = cell[by_cell]
    new_cell = np.ones(cell.size, dtype=bool)
    new_cell[1:] = sorted_cell[1:] != sorted_cell[:-1]
    pos = np.arange(cell.size)
    rank_sorted = pos - np.maximum.accumulate(np.where(new_cell, pos, 0))
    rank = np.empty_like(rank_sorted)
    rank[by_cell] = rank_sorted
    used = np.zeros((L, G), dtype=np.int64)
    np.add.at(used, (layer, gpu), 1)
    piece = weight / np.maximum(count, 1)
    phy2log = np.full((L, G * S), -1, dtype=np.int64)
    load = np.zeros((L, G))
    fits = (used <= S).all(axis=1)
    keep = fits[layer]
    phy2log[layer[keep], gpu[keep] * S + rank[keep]] = expert[keep]
    np.add.at(load, (layer[keep], gpu[keep]), piece[layer[keep], expert[keep]])
    for bad in np.nonzero(~fits)[0]:  # the chain wrapped onto full GPUs: deal column-wise
        _deal_round_robin(bad, order[bad, :n_multi][multi[bad]], count[bad], piece[bad], phy2log, used,
                          load, G, S, ring)
    # single experts, heaviest first, in rounds over the GPUs with a free slot: the round's j-th
    # heaviest goes to the GPU of the round (not yet given one) on which it would finish first
    ptr = E - (count == 1).sum(axis=1)  # singles follow the replicated experts in ``order``
    cols = np.arange(G)[None, :]
    r = np.arange(L)
    w_sorted = np.take_along_axis(weight, order, 1)
    out = np.concatenate([phy2log, np.full((L, 1), -1, dtype=np.int64)], axis=1)  # + a bin
    inv_speed = 1.0 / speed
    equal = bool(np.all(speed == speed[0]))
    while np.any(ptr < E):
        free = used < S
        idx = ptr[:, None] + cols
        take = (cols < free.sum(axis=1, keepdims=True)) & (idx < E)
        if not take.any():
            raise InvalidInstanceError("no free slot left for a single expert")
        idx = np.minimum(idx, E - 1)
        if equal:  # earliest finish is least time now: the i-th heaviest to the i-th least loaded
            gpus = np.argsort(np.where(free, load * inv_speed, np.inf), axis=1, kind="stable")
            rc = r[:, None]
            out[rc, np.where(take, gpus * S + used[rc, gpus], G * S)] = order[rc, idx]
            used[rc, gpus] += take
            load[rc, gpus] += np.where(take, w_sorted[rc, idx], 0.0)
            ptr += take.sum(axis=1)
            continue
        blocked = ~free  # and, once given a single, each GPU of the round
        w_round = np.where(take, w_sorted[r[:, None], idx], 0.0)  # 0 where a layer takes none
        e_round = order[r[:, None], idx]
        for j in range(int(take.sum(axis=1).max())):
            ok = take[:, j]
            g = earliest_finish(load, w_round[:, j], speed, blocked)
            out[r, np.where(ok, g * S + used[r, g], G * S)] = e_round[:, j]
            blocked[r, g] |= ok
            used[r, g] += ok
            load[r, g] += w_round[:, j]
        ptr += take.sum(axis=1)
    return out[:, : G * S]


def _deal_round_robin(layer: int, experts: np.ndarray, count: np.ndarray, piece: np.ndarray,
                      phy2log: np.ndarray, used: np.ndarray, load: np.ndarray, G: int,
                      S: int, ring: np.ndarray | None = None) -> None:
    """Replicas listed expert by expert go to GPU ``ring[i mod G]`` (GPUs in ring order, default
    index order), slot i // G (always distinct GPUs for an expert with at most G replicas): the
    fallback when a ring would overfill a GPU."""
    ring = np.arange(G) if ring is None else ring
    used[layer] = 0
    load[layer] = 0.0
    i = 0
    for e in experts:
        for _ in range(int(count[e])):
            g = ring[i % G]
            phy2log[layer, g * S + used[layer, g]] = e
            used[layer, g] += 1
            load[layer, g] += piece[e]
            i += 1


def no_replication_placement(w: np.ndarray, num_gpus: int, slots_per_gpu: int,
                             speed: np.ndarray | None = None) -> np.ndarray:
    """One replica per expert, LPT: heaviest expert to the GPU with a free slot on which it would
    finish first (the least-loaded one when speeds are equal)."""
    return pack_replicas(w, np.ones(w.shape, dtype=np.int64), num_gpus, slots_per_gpu, speed)


def scaled_history(instance: Instance, depth: int = 4) -> np.ndarray:
    """The last ``depth`` history windows, each layer rescaled to the planned window's total."""
    hist = instance.history[-depth:]
    total = hist.sum(axis=2, keepdims=True)
    target = instance.planned_loads.sum(axis=1)[None, :, None]
    return hist * np.where(total > 0, target / np.maximum(total, 1e-300), 0.0)


# =============================================================================================
# The bid-price placement
# =============================================================================================
@dataclasses.dataclass
class BidPrice:
    """Bid-price placement and dispatch (no solver once prices are known).

    Prices. In the dispatch LP every GPU has a price pi_g (its ``gpu_load`` dual) and every
    expert the price of the cheapest GPU hosting it (its ``demand`` dual); a replica of e on
    GPU g is worth (price_e - pi_g) per token it takes. Tokens flow along replicated experts,
    so GPUs linked by replicas that carry tokens share one price, and a GPU cut off from the
    others keeps its own (the straggler's). Two decisions follow:

    - which expert gets the next replica: the extra slots go to the highest bids, the bid of
      the k-th replica of e being ``v_e / (k - 1) * (1 - a + a * sum_g(s_g) * price_e)``, where
      ``v_e = w_e + kappa * d_e`` is its risk-weighted load (``w_e`` in the planned window,
      ``d_e`` the mean absolute change of its load between the recent windows, so experts whose
      load moves bid more) and ``price_e`` comes from ``gpu_price`` (the dispatch prices of the
      deployed previous placement, e.g. :meth:`from_solution`; ``a = price_weight``). Without
      prices every expert is priced alike (``1 / G``), and that is what ``POLICIES["bid_price"]``
      runs: measured, LP prices do not help this rule. With the deployed placement's dispatch
      prices it was 9.6% worse than without at ``a = 0.5`` (8 of 10 seeds) and no better at any
      ``a`` from 0.05 to 1; the placement LP's prices are uniform and change nothing
      (``benchmarks/results/expert_placement_prices.md``). The dispatch LP puts the price on the
      straggler's GPUs, so their experts' bids grow up to G-fold: replicas chase last window's
      hot spot, which moves.
    - on which GPU it goes: replicated experts, heaviest first, take consecutive GPUs of a
      ring (:func:`pack_ring`), so the replicas link every GPU into one component: every GPU
      then shares one price, which is what lets the next window's dispatch move tokens away
      from whichever GPU turns out hot; the ring alternates fast and slow GPUs
      (:func:`ring_order`). Single experts then go heaviest first, in rounds, to the GPU with a
      free slot on which they would finish first.

    Dispatch: :func:`price_dispatch` with the plan's prices: uniform over the GPUs whose
    planned time is within ``tight`` of the planned makespan (default 1.0: the whole ring
    component, the price of a connected plan; a smaller ``tight`` prices the planned hot GPUs
    higher, which measured worse because the hot GPUs move from window to window).

    Migrations (instance ``migration_cost`` beta > 0 and a ``previous_placement``): a replica
    placed where the previous placement had none of its expert costs beta tokens, as in the
    model's objective. Per layer the rule takes the least planned-window makespan (price
    dispatch) + beta x migrations among three plans: the new plan with its GPUs relabelled among
    GPUs of equal speed to keep as many replicas where they were as possible
    (:func:`align_to_previous`; the makespan does not change), the fewest moves that reach the new
    replica counts (:func:`sticky_placement`), and the previous placement itself. With beta = 0
    (the default) none of this runs. Measured (small preset, deployed = EPLB's plan of the window
    before, seeds 0..4): ``benchmarks/results/expert_placement_migration.md``.

    ``gpu_price`` only acts through the previous placement (an expert's price is that of the GPUs
    hosting it now; before a placement exists, GPU labels carry no meaning): on an instance without
    ``previous_placement`` the prices are ignored and a ``UserWarning`` says so. Prices are
    refused (``InvalidInstanceError``) unless finite, >= 0 and of shape layers x GPUs.
    """

    gpu_price: np.ndarray | None = None
    kappa: float = 0.5
    depth: int = 4
    price_weight: float = 0.5
    tight: float = 1.0
    passes: int = 3

    def __post_init__(self) -> None:
        number("kappa", self.kappa, lambda v: 0 <= v < math.inf, ">= 0")
        whole_number("depth", self.depth)
        whole_number("passes", self.passes)
        number("price_weight", self.price_weight, lambda v: 0 <= v <= 1, "in [0, 1]")
        number("tight", self.tight, lambda v: 0 < v <= 1, "in (0, 1]")
        if self.gpu_price is not None:
            shape = np.shape(self.gpu_price)
            if len(shape) != 2:
                raise InvalidInstanceError(f"gpu_price must be a layers x GPUs array, got shape {shape}")
            self.gpu_price = check_gpu_price(self.gpu_price, *shape)

    @classmethod
    def from_solution(cls, solution: Any, num_layers: int | None = None, num_gpus: int | None = None,
                      **kw: Any) -> BidPrice:
        """From an expert-placement :class:`~servopt.core.Solution` (its ``gpu_load`` prices: the
        dispatch LP's, or the placement MILP relaxation's), covering every layer and GPU.
        ``num_layers`` / ``num_gpus`` default to those the labels cover; give the instance's to
        catch a solution of another shape. Measured to make the placement worse, not better (see
        the class docstring): for experiments."""
        prices = getattr(solution, "prices", None)
        if not isinstance(prices, dict) or "gpu_load" not in prices:
            kind = getattr(solution, "decision", None) or type(solution).__name__
            raise InvalidInstanceError(
                f"BidPrice.from_solution needs an expert_placement solution with gpu_load prices "
                f"(servopt.solve(instance, placement=phy2log) or relax=True); got a {kind} solution "
                f"with prices {sorted(prices) if isinstance(prices, dict) else 'none'}")
        series = prices["gpu_load"]
        keys = list(series.index)
        if not all(isinstance(key, tuple) and len(key) == 2 for key in keys):
            raise InvalidInstanceError("gpu_load prices must be indexed by (layer, gpu)")
        labels = np.array([(int(layer), int(gpu)) for layer, gpu in keys], dtype=int).reshape(-1, 2)
        seen = labels.max(axis=0) + 1 if len(labels) else np.zeros(2, dtype=int)
        num_layers = int(seen[0]) if num_layers is None else whole_number("num_layers", num_layers)
        num_gpus = int(seen[1]) if num_gpus is None else whole_number("num_gpus", num_gpus)
        price = np.zeros((num_layers, num_gpus))
        priced = np.zeros((num_layers, num_gpus), dtype=bool)
        for (layer, gpu), value in zip(labels.tolist(), series.to_numpy(dtype=float).tolist(), strict=True):
            if not (0 <= layer < num_layers and 0 <= gpu < num_gpus):
                raise InvalidInstanceError(
                    f"the solution prices layer {layer}, GPU {gpu}, outside the {num_layers} layers x "
                    f"{num_gpus} GPUs given: pass the instance's num_layers and num_gpus")
            if not np.isfinite(value):
                raise InvalidInstanceError(
                    f"the gpu_load price of layer {layer}, GPU {gpu} is {value}: prices must be finite")
            price[layer, gpu], priced[layer, gpu] = value, True
        if not priced.all():
            layer, gpu = np.argwhere(~priced)[0]
            raise InvalidInstanceError(
                f"the solution has no gpu_load price for layer {layer}, GPU {gpu}: it must price all "
                f"{num_layers} layers x {num_gpus} GPUs")
        return cls(gpu_price=price, **kw)

    def __call__(self, instance: Instance) -> Plan:
        _check_instance(instance)
        start = time.perf_counter()
        G, S, R = instance.num_gpus, instance.slots_per_gpu, instance.num_slots
        speed = instance.speed
        w = instance.planned_loads
        scen = scaled_history(instance, self.depth)  # (K, L, E)
        change = (np.abs(np.diff(scen, axis=0)).mean(axis=0) if scen.shape[0] > 1
                  else np.zeros_like(w))
        risk = w + self.kappa * change
        bid = risk
        prev = instance.previous_placement
        if self.gpu_price is not None:
            price = check_gpu_price(self.gpu_price, instance.num_layers, G)
            if prev is None:
                warnings.warn("BidPrice: gpu_price is ignored: the instance has no previous_placement "
                              "(an expert's price is that of the GPUs hosting it now)", stacklevel=2)
            else:
                # an expert's price: the cheapest GPU hosting it now (its demand dual)
                hosted = placement_matrix(prev, instance.num_experts, G, S)
                expert_price = np.where(hosted, price[:, None, :], np.inf).min(axis=2) * speed.sum()
                expert_price = np.where(np.isfinite(expert_price), expert_price, 1.0)  # not hosted
                bid = risk * ((1 - self.price_weight) + self.price_weight * expert_price)
        count = counts_by_bids(bid, R, min(G, R - instance.num_experts + 1))
        phy2log = pack_ring(risk, count, G, S, speed)
        plan_price = np.full((instance.num_layers, G), 1.0 / speed.sum())
        kept = np.zeros(instance.num_layers, dtype=bool)
        if prev is not None and instance.migration_cost > 0:
            # candidates: the new plan relabelled onto the previous GPUs, the fewest moves to the new
            # replica counts, and the previous placement; per layer the least planned-window
            # makespan (price dispatch) + beta x moves
            E, beta = instance.num_experts, instance.migration_cost
            options = [align_to_previous(phy2log, prev, G, S, speed),
                       sticky_placement(w, count, prev, G, S, speed)]
            if covers_all_experts(prev, E):
                options.append(prev)
            options = [p for p in options if covers_all_experts(p, E)]
            flows = [price_dispatch(p, w, plan_price, S, speed, passes=self.passes) for p in options]
            score = np.stack([gpu_times(f, S, speed).max(axis=1) + beta * layer_migrations(p, prev, E, G, S)
                              for f, p in zip(flows, options, strict=True)])
            pick = np.argmin(score, axis=0)  # first option on ties
            phy2log = np.stack(options)[pick, np.arange(instance.num_layers)]
            kept = (pick == len(options) - 1) & covers_all_experts(prev, E)
            count = expert_counts(phy2log, E)
        # the plan's dispatch prices: tight set of its price dispatch on the planned window
        if self.tight < 1:
            flows = price_dispatch(phy2log, w, plan_price, S, speed, passes=self.passes)
            plan_price = tight_prices(gpu_times(flows, S, speed), speed, rel_tol=self.tight)
        wall = time.perf_counter() - start
        return Plan(phy2log, "price", plan_price, wall, {"count": count, "kept_previous": kept})


# =============================================================================================
# Migrations
# =============================================================================================
def expert_counts(phy2log: np.ndarray, num_experts: int) -> np.ndarray:
    """Replicas per expert (layers, experts)."""
    L, R = phy2log.shape
    count = np.zeros((L, num_experts), dtype=np.int64)
    ok = phy2log >= 0
    np.add.at(count, (np.repeat(np.arange(L), R)[ok.ravel()], phy2log[ok]), 1)
    return count


def covers_all_experts(phy2log: np.ndarray, num_experts: int) -> bool:
    """Every expert of every layer has at least one replica in ``phy2log``."""
    return bool((expert_counts(phy2log, num_experts) > 0).all())


def layer_migrations(phy2log: np.ndarray, previous: np.ndarray, num_experts: int, num_gpus: int,
                     slots_per_gpu: int) -> np.ndarray:
    """Per layer: (expert, GPU) pairs of ``phy2log`` absent from ``previous`` (the model's count)."""
    now = placement_matrix(phy2log, num_experts, num_gpus, slots_per_gpu)
    before = placement_matrix(previous, num_experts, num_gpus, slots_per_gpu)
    return (now & ~before).sum(axis=(1, 2))


def sticky_placement(w: np.ndarray, count: np.ndarray, previous: np.ndarray, num_gpus: int,
                     slots_per_gpu: int, speed: np.ndarray | None = None) -> np.ndarray:
    """The fewest moves for the replica counts ``count``: every expert keeps up to ``count`` of the
    GPUs it had in ``previous`` (the fastest first, lowest GPU index among equal speeds, so that
    renumbering the GPUs only renumbers the plan); its missing replicas (each weighing
    ``w / count``) go heaviest first to the GPU with a free slot that does not host it yet on
    which it would finish first (:func:`earliest_finish`; one that cannot be placed is dropped).
    Returns phy2log (layers, G * S), -1 for empty slots."""
    L, E = w.shape
    G, S = num_gpus, slots_per_gpu
    speed = np.ones(G) if speed is None else np.asarray(speed, dtype=float)
    before = placement_matrix(previous, E, G, S)
    fast = np.argsort(-speed, kind="stable")
    hosts = np.empty_like(before)
    hosts[:, :, fast] = before[:, :, fast] & (np.cumsum(before[:, :, fast], axis=2) <= count[:, :, None])
    piece = w / np.maximum(count, 1)
    load = np.einsum("leg,le->lg", hosts.astype(float), piece)
    used = hosts.sum(axis=1)
    need = count - hosts.sum(axis=2)
    width = int(need.max(initial=0))
    if width > 0:
        valid = np.arange(width)[None, None, :] < need[:, :, None]
        rep_w = np.where(valid, piece[:, :, None], -np.inf).reshape(L, -1)
        rep_e = np.broadcast_to(np.arange(E)[None, :, None], (L, E, width)).reshape(L, -1)
        order = np.argsort(-rep_w, axis=1, kind="stable")[:, : int(need.sum(axis=1).max())]
        experts = np.take_along_axis(rep_e, order, 1)
        live = np.isfinite(np.take_along_axis(rep_w, order, 1))
        r = np.arange(L)
        for k in range(experts.shape[1]):
            e = experts[:, k]
            blocked = (used >= S) | hosts[r, e]
            ok = live[:, k] & ~blocked.all(axis=1)
            chosen = earliest_finish(load, np.where(ok, piece[r, e], 0.0), speed, blocked)
            hosts[r[ok], e[ok], chosen[ok]] = True
            load[r[ok], chosen[ok]] += piece[r[ok], e[ok]]
            used[r[ok], chosen[ok]] += 1
    # slots: each GPU's experts in id order
    layer, gpu, expert = np.nonzero(hosts.transpose(0, 2, 1))
    cell = layer * G + gpu
    first = np.searchsorted(cell, cell)
    phy2log = np.full((L, G * S), -1, dtype=np.int64)
    phy2log[layer, gpu * S + np.arange(cell.size) - first] = expert
    return phy2log


def align_to_previous(phy2log: np.ndarray, previous: np.ndarray, num_gpus: int, slots_per_gpu: int,
                      speed: np.ndarray | None = None) -> np.ndarray:
    """Relabel each layer's GPUs, among GPUs of equal speed, so the plan keeps as many (expert,
    GPU) pairs of ``previous`` as possible (a maximum-weight assignment of the plan's GPUs to the
    previous GPUs; weights = experts in common). GPU times are only permuted."""
    from scipy.optimize import linear_sum_assignment

    L, R = phy2log.shape
    G, S = num_gpus, slots_per_gpu
    speed = np.ones(G) if speed is None else np.asarray(speed, dtype=float)
    E = int(max(phy2log.max(), previous.max())) + 1
    now = placement_matrix(phy2log, E, G, S).astype(float)
    before = placement_matrix(previous, E, G, S).astype(float)
    common = np.einsum("leg,leh->lgh", now, before)  # plan GPU g vs previous GPU h
    allowed = speed[:, None] == speed[None, :]
    blocks = phy2log.reshape(L, G, S)
    out = np.empty_like(blocks)
    for layer in range(L):  # one G x G assignment per layer
        rows, cols = linear_sum_assignment(np.where(allowed, common[layer], -1e9), maximize=True)
        out[layer, cols] = blocks[layer, rows]
    return out.reshape(L, R)


# =============================================================================================
# Exact side: bound, decomposition, MILP
# =============================================================================================
def balanced_plan(w: np.ndarray, num_gpus: int, slots_per_gpu: int,
                  speed: np.ndarray | None = None) -> np.ndarray:
    """A plan for known loads: replica counts by the largest load per replica (the counts the
    bound needs first), pieces packed heaviest first to the GPU where each finishes first."""
    R = num_gpus * slots_per_gpu
    count = counts_by_bids(w, R, min(num_gpus, R - w.shape[1] + 1))
    return pack_replicas(w / count, count, num_gpus, slots_per_gpu, speed)


def _target_gap(target_gap: Any, mip_gap: Any) -> float:
    """:func:`exact_placement`'s relative gap from ``target_gap`` or its other name ``mip_gap``
    (both given is refused; neither: 0.01), checked >= 0 under the name given."""
    value = either("target_gap", target_gap, "mip_gap", mip_gap, None)
    if value is None:
        return 0.01
    name = "mip_gap" if mip_gap is not None else "target_gap"
    return number(name, value, lambda v: 0 <= v < math.inf, ">= 0 (a relative gap)")


def exact_placement(instance: Instance, *, target_gap: float | None = None,
                    milp_time_limit: float = 5.0, milp_max_binaries: int = 2000,
                    mip_gap: float | None = None) -> Plan:
    """Plan on the planned window with a certificate.

    Layers are independent. Per layer: (1) the combinatorial bound (total / speed and replica
    counts); (2) replica counts and placements (:func:`balanced_plan`, :func:`pack_ring` and
    EPLB's plan), each served with the dispatch LP on the layers where it hosts every expert (the
    LP has no solution on the others; the ring plan hosts every expert), the best kept per layer
    (a later candidate replaces an earlier one only when better by more than 1e-12 relative:
    plans that tie are not picked by LP round-off, which differs with the load scale); (3)
    layers whose best plan is not within ``target_gap`` (a relative gap >= 0; default 0.01) of
    the bound go to the placement MILP (strengthened with that plan's value and the bound) when
    it has at most ``milp_max_binaries`` binaries; its plan, scored by the dispatch LP like the
    candidates, replaces the best when better. Returns the best plan, LP-dispatched, with
    ``info['bound']`` (per-layer proved bound) and ``info['makespan']``.

    With a previous placement and ``migration_cost`` beta > 0 every layer minimises the model's
    objective, makespan + beta x migrations: the candidates are relabelled onto the previous GPUs
    (:func:`align_to_previous`), the previous placement itself is a candidate, the best is kept by
    that objective, and the MILP (which carries the migration term) gets that objective as its
    makespan upper bound (valid: migrations >= 0). ``info['migrations']`` per layer and
    ``info['objective']`` (makespan + beta x migrations) report it.

    ``mip_gap`` is ``target_gap`` under the name the other decisions' solvers give their relative
    gap (one of the two at most; each layer's MILP itself is solved to 1e-6 either way).
    """
    _check_instance(instance)
    target_gap = _target_gap(target_gap, mip_gap)
    number("milp_time_limit", milp_time_limit, lambda v: 0 < v < math.inf, "finite seconds > 0")
    whole_number("milp_max_binaries", milp_max_binaries, low=0)
    start = time.perf_counter()
    w = instance.planned_loads
    G, S, speed = instance.num_gpus, instance.slots_per_gpu, instance.speed
    bound = makespan_lower_bound(w, G, S, speed)
    count = counts_by_bids(w, instance.num_slots, min(G, instance.num_slots
                                                      - instance.num_experts + 1))
    candidates = [balanced_plan(w, G, S, speed), pack_ring(w, count, G, S, speed)]
    if instance.gpu_speed is None:
        groups = instance.num_groups
        candidates.append(eplb(w, instance.num_slots, groups, instance.num_nodes, G)[0])
    E, beta, prev = instance.num_experts, instance.migration_cost, instance.previous_placement
    moving = prev is not None and beta > 0
    if moving:
        candidates = [align_to_previous(c, prev, G, S, speed) for c in candidates]
        if covers_all_experts(prev, E):
            candidates.append(prev.copy())
    best, best_z = None, None  # best_z: the layer's objective, makespan + beta x migrations
    for phy2log in candidates:
        # a candidate is scored on the layers where it hosts every expert (on the others the
        # dispatch LP has no solution, and it would fail for every layer): never the best there
        serves = (expert_counts(phy2log, E) > 0).all(axis=1)
        z = np.full(len(w), np.inf)
        if serves.any():
            z[serves] = lp_dispatch(phy2log[serves], w[serves], S, speed)[1]
        if moving:
            z = z + beta * layer_migrations(phy2log, prev, E, G, S)
        if best is None:
            best, best_z = phy2log.copy(), z.copy()
        else:
            better = z < best_z * (1 - 1e-12)  # relative: LP round-off never replaces a tie
            best[better], best_z[better] = phy2log[better], z[better]
    if not np.isfinite(best_z).all():  # pack_ring hosts every expert: not reached
        layer = int(np.argmin(np.isfinite(best_z)))
        raise InfeasibleError(f"exact: no candidate plan hosts every one of the {E} experts of layer "
                              f"{layer} in {G} GPUs x {S} slots")
    status = "certified"
    open_layers = np.nonzero(best_z > bound * (1 + target_gap) + 1e-12 * best_z)[0]
    if open_layers.size and instance.num_experts * G <= milp_max_binaries:
        from servopt.solvers import exact

        for layer in open_layers:
            from servopt.models.expert_placement import build

            model = build(instance, layers=[int(layer)], makespan_ub=best_z[layer],
                          makespan_lb=bound[layer])
            sol = exact.solve_model(model, time_limit=milp_time_limit, mip_gap=1e-6,
                                    prices=False, decision=instance.decision)
            if sol.status == "interrupted":  # Ctrl-C: stop, not a plan from a cut-short MILP
                raise KeyboardInterrupt(f"the placement MILP of layer {layer} was interrupted")
            if not math.isnan(sol.bound):
                bound[layer] = max(bound[layer], sol.bound)
            if math.isnan(sol.objective):
                continue
            # the MILP's plan, scored like the candidates (its own value can sit up to HiGHS's MIP
            # feasibility tolerance below what the plan achieves: a makespan 1e-6 below its GPU)
            row = _phy2log_from_model(model, layer, instance)[None]
            if not covers_all_experts(row, E):
                continue
            z = lp_dispatch(row, w[[layer]], S, speed)[1][0]
            if moving:
                z += beta * layer_migrations(row, prev[[layer]], E, G, S)[0]
            if z < best_z[layer] * (1 - 1e-12):
                best[layer], best_z[layer] = row[0], z
    elif open_layers.size:
        status = "uncertified"
    _, z, price = lp_dispatch(best, w, S, speed)
    moved = layer_migrations(best, prev, E, G, S) if prev is not None else np.zeros(len(z), dtype=np.int64)
    objective = z + beta * moved
    wall = time.perf_counter() - start
    gap = float(objective.sum() / bound.sum() - 1) if bound.sum() > 0 else 0.0
    return Plan(best, "lp", price, wall, {"bound": bound, "makespan": z, "migrations": moved,
                                          "objective": objective, "gap": gap, "status": status})


def _phy2log_from_model(model: Any, layer: int, instance: Instance) -> np.ndarray:
    S = instance.slots_per_gpu
    row = np.full(instance.num_slots, -1, dtype=np.int64)
    used = np.zeros(instance.num_gpus, dtype=np.int64)
    for (l, e, g), var in model.y.items():
        if l == layer and var.value is not None and var.value > 0.5:
            row[g * S + used[g]] = e
            used[g] += 1
    return row


# =============================================================================================
# Policies
# =============================================================================================
def _eplb_plan(dispatch: str) -> Callable[[Instance], Plan]:
    def plan(instance: Instance) -> Plan:
        start = time.perf_counter()
        phy2log, _, _ = eplb(instance.planned_loads, instance.num_slots, instance.num_groups,
                             instance.num_nodes, instance.num_gpus)
        price = None
        if dispatch == "price":  # prices: the dispatch LP's duals on the planned window
            _, _, price = lp_dispatch(phy2log, instance.planned_loads, instance.slots_per_gpu,
                                      instance.speed)
        return Plan(phy2log, dispatch, price, time.perf_counter() - start)

    plan.__name__ = f"eplb_{dispatch}"
    return plan


def no_replication(instance: Instance) -> Plan:
    """One slot per expert (the rest empty), LPT on the planned window."""
    start = time.perf_counter()
    phy2log = no_replication_placement(instance.planned_loads, instance.num_gpus,
                                       instance.slots_per_gpu, instance.speed)
    return Plan(phy2log, "even", None, time.perf_counter() - start)


def bid_price(instance: Instance) -> Plan:
    return BidPrice()(instance)


def bid_price_lp(instance: Instance) -> Plan:
    plan = BidPrice()(instance)
    return dataclasses.replace(plan, dispatch="lp")


def exact_method(instance: Instance) -> Plan:
    return exact_placement(instance)


POLICIES: dict[str, Callable[[Instance], Plan]] = {
    "no_replication": no_replication,
    "eplb": _eplb_plan("even"),
    "eplb_lp": _eplb_plan("lp"),
    "eplb_price": _eplb_plan("price"),
    "bid_price": bid_price,
    "bid_price_lp": bid_price_lp,
    "exact": exact_method,
}


def dispatch_flows(plan: Plan, instance: Instance, w: np.ndarray) -> np.ndarray:
    """The plan's flows (layers, slots) for window loads ``w`` under its dispatch semantics."""
    phy2log = check_placement(instance, plan.phy2log)
    if plan.dispatch == "even":
        return even_dispatch(phy2log, w)
    if plan.dispatch == "lp":
        return lp_dispatch(phy2log, w, instance.slots_per_gpu, instance.speed)[0]
    return price_dispatch(phy2log, w, plan.gpu_price, instance.slots_per_gpu, instance.speed)


__all__ = ["POLICIES", "BidPrice", "Plan", "align_to_previous", "balanced_packing", "balanced_plan",
           "check_gpu_price", "dispatch_flows", "earliest_finish", "eplb", "even_dispatch", "exact_placement",
           "layer_migrations", "lp_dispatch", "no_replication_placement", "pack_replicas", "placement_matrix",
           "price_dispatch", "replicate_experts", "ring_order", "sticky_placement"]

# the placement MILP starts from this module's fast plans (models.expert_placement.START_PLANS):
# the model, a layer below, cannot import them
placement_model.START_PLANS = sys.modules[__name__]
