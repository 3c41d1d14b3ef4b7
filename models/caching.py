r"""Offline optimal caching with variable sizes and costs: the interval LP and its flow form.

Formulation (symbols = names in the code)
-----------------------------------------
Requests ``t = 0..n-1`` ask for object ``o(t)`` of size ``s_o`` (tokens) and miss cost ``c_o``;
the cache holds ``C`` tokens. An *interval* ``i = (a_i, b_i)`` joins two consecutive requests
``a_i < b_i`` of one object; keeping the object in the cache over the whole interval makes the
request ``b_i`` a hit. The gaps ``t = 0..n-2`` lie between request ``t`` and ``t + 1``; interval
``i`` is alive in gaps ``a_i <= t < b_i``.

Interval LP (``form="interval"``, the per-gap statement)::

    min   sum_i c_i (1 - keep_i)  +  first_miss_cost
    s.t.  cache_capacity[t]:  sum_{i alive at t} s_i keep_i <= C     for every gap t
          0 <= keep_i <= 1 ;  keep_i = 0 when s_i > C

``first_miss_cost`` is the cost of every object's first request (a miss for any policy).

With ``keep_i`` in {0, 1} (``relax=False``, the default of :func:`build` and
``servopt.solve``) this is the offline optimum itself: a set of kept intervals that fits in every
gap is a cache schedule (admit the object at ``a_i``, evict it after ``b_i`` unless the next
interval is kept; objects may bypass the cache), and every schedule keeps such a set. With
``relax=True`` it is the interval LP, a lower bound on that optimum (the two can differ when
sizes differ; with unit sizes and a whole-token capacity the LP is integral, and with equal costs
too it equals Belady). The IP is NP-hard in general: use it on small instances (it is refused
above ``MAX_BINARIES`` intervals: HiGHS's root-node work on larger ones does not check the time
limit); the LP and :class:`~servopt.solvers.caching.LPSchedule` (its rounded schedule,
:func:`round_schedule`) bracket the optimum up to ``MAX_LP_REQUESTS`` requests (beyond it
``servopt.solve`` refuses the LP too: ~2.4 KB a request). ``servopt.solve`` starts the IP from
that rounded schedule (:func:`start_from_relaxation`: the LP is solved first, inside the time
limit), so a time-limited IP never ends worse than ``lp_schedule``
(``benchmarks/results/caching_warm_start.md``).

Flow form (``form="flow"``, the default; Berger, Beckmann and Harchol-Balter's FOO): the tokens
held over gap ``t`` are a variable ``occupancy[t]`` and each gap's row only records what enters
and leaves, so each ``keep_i`` appears in two rows instead of ``b_i - a_i``::

    occupancy_balance[t]: occupancy[t] = occupancy[t-1] + s_i keep_{i starts at t}
                                                        - s_j keep_{j ends at t}
    cache_capacity[t]:    occupancy[t] <= C

It is a min-cost flow: nodes are requests, the chain ``t -> t+1`` carries the cached tokens
(capacity ``C``, cost 0) and interval ``i`` has a bypass arc ``a_i -> b_i`` (capacity ``s_i``,
cost ``c_i / s_i`` per token) with supply ``s_i`` at ``a_i`` and demand ``s_i`` at ``b_i``
(:func:`build_networkx`). All three LPs give the same optimal value (for a whole-token capacity C;
see :func:`build_networkx` otherwise; the networkx flow rounds its weights down, so its value may
sit below by at most 1e-6 of the cheapest cost per token): a lower bound on the miss
cost of every caching policy, online or offline, including ones that bypass the cache; with
integer ``keep`` both Pyomo forms and the matrix form give the optimum.

Prices
------
``cache_capacity[t]`` (``price_t >= 0``, the LP's: ``relax=True``): miss cost saved (ms of encoder
time, or block-recompute units) per extra token of cache over gap ``t``, i.e. per
token-request-step. The IP has none (with ``keep`` fixed the occupancy follows and costs
nothing, so the duals would be zero by construction): ``info["prices_skipped"]`` says so.
Keeping interval ``i`` pays for itself iff ``c_i > s_i * sum_{t in i} price_t``: an object is
worth its place while its miss cost per token exceeds the summed price of the gaps until its next
request, the bid-price rule of :mod:`servopt.solvers.caching`.

In the flow form ``occupancy_balance[t]`` (an equality) is the bookkeeping dual of the occupancy
carried through gap t: wherever that occupancy is positive, ``balance[t] - balance[t+1] =
cache_capacity[t]`` (stationarity in ``occupancy[t]``; checked on a generated instance), so it
adds no information to the capacity prices. Both families are
degenerate where the optimum is not unique (the flow form's Pyomo, CVXPY and matrix duals can
differ there; the objective agrees, and so do the per-interval sums ``s_i * sum_{t in i}
price_t`` of the intervals kept fractionally, which complementary slackness pins at ``c_i``;
elsewhere only the keep / evict reading agrees: a sum above ``c_i`` for an evicted interval, below
it for a kept one). The interval form (Pyomo) has no row for a gap no interval that fits spans;
:func:`servopt.solvers.exact.solve` prices such a gap 0, so both forms label ``cache_capacity`` by
every gap (all zeros when no interval fits at all).

Units
-----
HiGHS's tolerances are absolute (feasibility 1e-7, 1e-6 in a MIP; dual 1e-7; MIP gap 1e-6), so a model
written in raw tokens and cost units changes its answer with the unit: with sizes and capacity
in units of 1e-7 (or 1e9) tokens the IP came back "optimal" below (or above) the optimum (a
boundary audit; tests/test_caching_units.py). Every solver-facing form (:func:`build`,
:func:`build_cvxpy`, :func:`flow_matrix`, :func:`build_matrix_model`) is therefore written in
units taken from the data (:func:`units`): sizes, capacity and occupancy in ``size_unit`` tokens
(about the smallest object that fits), the objective in ``cost_unit`` (about the cheapest positive
miss cost of an interval). Both are powers of two, so the scaled data are the given data exactly
(a model on data in tokens is the same model, bit for bit, as on the same data in units of 2^k
tokens). ``servopt.solve`` reports objective, bound, decisions and prices in the instance's own
units (``objective_scale`` = ``cost_unit``, ``row_scale`` = ``size_unit``: a price is miss cost per
token and gap). Tests to decide whether an object fits are relative (``FIT_RTOL``), never absolute.

Large instances: :func:`flow_matrix` returns the flow form as scipy.sparse data (4 nonzeros per
request) for a direct HiGHS solve; tests check it agrees with the Pyomo, CVXPY and networkx forms.
:func:`build_matrix_model` labels its reduced network for ``servopt.solve``'s default path.

Reduced network (``flow_matrix(..., reduce=True)``, the default of the HiGHS path): most
``cache_capacity[t]`` rows are implied by others, for every ``keep``, and are dropped
(:func:`binding_gaps`):

- *dominated gaps*: occupancy rises only at a request that starts an interval and falls only at
  one that ends an interval, so a gap can be the fullest of its neighbourhood only if the last
  request before it starts an interval and the next request after it ends one. Any other gap
  holds at most what a neighbouring such gap holds (walk towards it: the occupancy never
  decreases on the way), and a run of gaps separated by requests that start and end nothing
  (objects requested once, or too large to cache) has one occupancy, kept once;
- *slack gaps*: where even keeping every interval alive fits (``sum_{i alive at t} s_i <= C``),
  the row can never bind.

The kept rows ``g_1 < g_2 < ...`` chain as before, ``occupancy[g_k] = occupancy[g_{k-1}] + (tokens
of intervals starting at requests g_{k-1}+1..g_k) - (tokens of intervals ending there)``, so
every interval still has 2 nonzeros; an interval that spans no kept row is free (its ``keep`` is
1). The feasible set of ``keep`` is unchanged, hence the optimal value; the prices of dropped
rows are 0 (their constraints are redundant), those of kept rows are the LP's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import scipy.sparse as sp

from servopt.core import InvalidInstanceError
from servopt.core.checks import whole_number
from servopt.core.cvxmodel import CvxpyModel
from servopt.core.matrix import Family, MatrixModel
from servopt.instances.caching import Instance

OBJECTIVE_UNIT = "the instance's miss-cost unit"  # total miss cost (e.g. encoder ms)
FORMS = ("flow", "interval")
LINEAR = False  # keep is binary unless relaxed; the CVXPY forms are the LP
MAX_INTERVAL_NONZEROS = 5_000_000
# binary keep variables of the IP. Chosen when HiGHS's root node ran far past a 5 s limit (24 s
# at 80k binaries, 0a32c4e); with highspy 1.16 benchmarks/results/limits.md measures 1.3-2.5x the
# limit on both sides of the cap (three runs, the last at load 5: 5.8-10.6 s at 50k, 6.5-10.8 s
# at 80k, 8.3-12.5 s and 1.4-1.5 GB at 320k). Kept:
# above it the rounded LP schedule is the practical answer, and max_binaries lifts it
MAX_BINARIES = 50_000
# requests of an instance whose LP (or IP, which solves the LP first) servopt.solve builds: the
# matrix path holds ~2.4 KB a request at its peak (audit R12, servopt solve --relax on generate's
# 400-object workload: 250k requests 0.70 GB, 500k 1.30 GB, 1M 2.23-2.45 GB, and at 1M no
# optimum after 926 s). Refused before anything is built; the policies (lru, belady, ...) take up
# to the instances' 10M requests. At the cap: benchmarks/results/limits.md, cache_lp_requests
MAX_LP_REQUESTS = 500_000
# relative slack of every "fits in the cache" test (float noise of summed sizes), as the
# evaluator's simulator: C (1 + 1e-12) tokens
FIT_RTOL = 1e-12
# the units keep the data's spread below this ratio (an outlier far smaller than the rest does not
# push the capacity or the dearest cost to a huge number of units)
UNIT_SPREAD = 1e6


def check_lp_size(instance: Instance, relax: bool) -> None:
    """Refuse, before the intervals are extracted, an instance of more than ``MAX_LP_REQUESTS``
    requests: the LP's memory grows ~2.4 KB a request and HiGHS's time faster."""
    n = instance.requests
    if n > MAX_LP_REQUESTS:
        model = "LP relaxation" if relax else "IP (which solves its LP relaxation first)"
        raise InvalidInstanceError(
            f"the caching {model} would cover {n:,} requests (more than {MAX_LP_REQUESTS:,}: "
            f"it holds ~2.4 KB a request, 1.3 GB at 500,000, and HiGHS had no optimum after "
            f"3 minutes at 250,000, nor after 15 at 1,000,000): solve a shorter stretch of the "
            f"trace, or evaluate the caching policies (lru, gdsf, belady, ...), which take up to "
            f"10,000,000 requests")


def _check_ip_size(iv: Intervals, relax: bool, max_binaries: int) -> None:
    """Refuse an IP too large for HiGHS to stop on time: on 80k requests a 5 s limit returned
    after 24 s, on 320k it ran for minutes past it, growing to 6 GB (its root-node work does not
    check the clock). ``max_binaries`` is refused by name unless a whole number >= 0 (None or
    NaN was a TypeError, or silently no limit)."""
    max_binaries = whole_number("max_binaries (binary keep variables the IP may have)",
                                max_binaries, low=0)
    binaries = int(iv.fits.sum())
    if not relax and binaries > max_binaries:
        raise InvalidInstanceError(
            f"the caching IP would have {binaries:,} binary keep variables (limit max_binaries="
            f"{max_binaries:,}): HiGHS may run far past a time limit on it. Solve relax=True for "
            "the interval LP bound (servopt solve --relax), and use the lp_schedule method for "
            "an integral schedule; or, from Python, pass max_binaries to try anyway")


@dataclasses.dataclass(frozen=True)
class Intervals:
    """The intervals of an instance (arrays indexed by interval ``i``).

    start, end : request indexes ``a_i < b_i``; object : ``o(a_i)``; size, cost : ``s_i, c_i``.
    next_request : (n,) index of the next request of the same object, ``n`` when none.
    first_miss_cost : cost of every first request (paid by any policy).
    fits : ``s_i <= C`` (an interval that does not fit is never kept).
    """

    start: np.ndarray
    end: np.ndarray
    object: np.ndarray
    size: np.ndarray
    cost: np.ndarray
    next_request: np.ndarray
    first_miss_cost: float
    fits: np.ndarray


def intervals(instance: Instance) -> Intervals:
    """Vectorised interval extraction (O(n log n))."""
    ids = instance.object_id
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    same = ids[order[1:]] == ids[order[:-1]]
    next_request = np.full(n, n, dtype=np.int64)
    next_request[order[:-1][same]] = order[1:][same]
    start = np.flatnonzero(next_request < n)
    end = next_request[start]
    obj = ids[start]
    first = np.ones(n, dtype=bool)
    first[next_request[next_request < n]] = False
    return Intervals(start=start, end=end, object=obj, size=instance.size[obj],
                     cost=instance.miss_cost[obj], next_request=next_request,
                     first_miss_cost=float(instance.miss_cost[ids[first]].sum()),
                     fits=instance.size[obj] <= room(instance.capacity))


def room(capacity: float) -> float:
    """The most tokens the cache may hold: ``capacity`` with a relative slack ``FIT_RTOL`` for
    float noise (relative, so the same whatever the unit of size)."""
    return float(capacity) * (1.0 + FIT_RTOL)


def _power_of_two(value: float) -> float:
    """The power of two at or below ``value`` (> 0): dividing by it changes no digit."""
    return math.ldexp(1.0, math.frexp(value)[1] - 1)


def units(instance: Instance, iv: Intervals | None = None) -> tuple[float, float]:
    """``(size_unit, cost_unit)``: the tokens and the miss cost of one unit of the solver-facing
    forms (see "Units"). ``size_unit`` is the power of two at or below the smallest size of an
    interval that fits (at least ``capacity / UNIT_SPREAD``), ``cost_unit`` the one at or below the
    smallest positive cost of such an interval (at least the largest / ``UNIT_SPREAD``); 1.0 when
    there is none. Both scale with the data: sizes x k give ``size_unit`` x k (to the power of two),
    so the model, and HiGHS's tolerances on it, are the same in any unit."""
    iv = iv or intervals(instance)
    size = iv.size[iv.fits]
    cost = iv.cost[iv.fits]
    cost = cost[cost > 0]
    size_unit = (_power_of_two(max(float(size.min()), instance.capacity / UNIT_SPREAD))
                 if size.size else 1.0)
    cost_unit = (_power_of_two(max(float(cost.min()), float(cost.max()) / UNIT_SPREAD))
                 if cost.size else 1.0)
    return size_unit, cost_unit


def _gap_index(n: int) -> pd.Index:
    return pd.RangeIndex(max(n - 1, 0), name="gap")


def build(instance: Instance, *, relax: bool = False, form: str = "flow",
          max_binaries: int = MAX_BINARIES, start: np.ndarray | None = None) -> pyo.ConcreteModel:
    """The offline caching model in Pyomo (``form="flow"`` or ``"interval"``): binary ``keep``
    (the offline optimum; refused above ``max_binaries`` intervals that fit), or the interval LP
    with ``relax=True`` (its lower bound); either refused above ``MAX_LP_REQUESTS`` requests.
    ``start``: a feasible 0/1 ``keep`` per interval (:func:`round_schedule`), the IP's warm
    start (``servopt.solve`` passes the rounded LP, :func:`start_from_relaxation`)."""
    if form not in FORMS:
        raise InvalidInstanceError(f"form must be one of {FORMS}, got {form!r}")
    check_lp_size(instance, relax)
    iv = intervals(instance)
    _check_ip_size(iv, relax, max_binaries)
    start_keep = None if start is None or relax else _start_keep(instance, iv, start)
    n, m = instance.requests, len(iv.start)
    gaps = range(max(n - 1, 0))
    model = pyo.ConcreteModel(name=f"caching_{form}")
    model.I = pyo.RangeSet(0, m - 1) if m else pyo.Set(initialize=[])
    model.T = pyo.RangeSet(0, n - 2) if n > 1 else pyo.Set(initialize=[])
    upper = {i: (1.0 if iv.fits[i] else 0.0) for i in range(m)}
    model.keep = pyo.Var(model.I, domain=pyo.Reals if relax else pyo.Binary,
                         bounds=lambda _, i: (0.0, upper[i]))
    size_unit, cost_unit = units(instance, iv)  # rows in size_unit tokens, objective in cost_unit
    size, cost, start, end = ((iv.size / size_unit).tolist(), (iv.cost / cost_unit).tolist(),
                              iv.start.tolist(), iv.end.tolist())
    capacity = instance.capacity / size_unit
    if form == "flow":
        starts_at = {a: i for i, a in enumerate(start)}
        ends_at = {b: i for i, b in enumerate(end)}
        model.occupancy = pyo.Var(model.T, domain=pyo.NonNegativeReals)

        def balance(mdl: Any, t: int) -> Any:
            flow = mdl.occupancy[t - 1] if t > 0 else 0.0
            if t in starts_at:
                flow = flow + size[starts_at[t]] * mdl.keep[starts_at[t]]
            if t in ends_at:
                flow = flow - size[ends_at[t]] * mdl.keep[ends_at[t]]
            return mdl.occupancy[t] == flow

        model.occupancy_balance = pyo.Constraint(model.T, rule=balance)
        model.cache_capacity = pyo.Constraint(
            model.T, rule=lambda mdl, t: mdl.occupancy[t] <= capacity)
    else:
        _check_interval_size(iv)
        alive: list[list[int]] = [[] for _ in gaps]
        for i in range(m):
            if iv.fits[i]:
                for t in range(start[i], end[i]):
                    alive[t].append(i)
        model.cache_capacity = pyo.Constraint(
            model.T, rule=lambda mdl, t: (sum(size[i] * mdl.keep[i] for i in alive[t]) <= capacity
                                          if alive[t] else pyo.Constraint.Skip))
    total = sum(cost[i] * (1 - model.keep[i]) for i in range(m)) + iv.first_miss_cost / cost_unit
    if m == 0:  # no request is ever repeated: keep the LP well-formed for the solver
        model.nothing_to_keep = pyo.Var(bounds=(0.0, 0.0))
        total = total + model.nothing_to_keep
    model.miss_cost = pyo.Objective(expr=total, sense=pyo.minimize)
    model.index_names = {"cache_capacity": ["gap"], "occupancy_balance": ["gap"],
                         "occupancy": ["gap"], "keep": ["interval"]}
    model.size_unit, model.cost_unit = size_unit, cost_unit  # decisions() reports tokens
    model.objective_scale = cost_unit  # servopt.solve reports objective, bound and prices in the
    model.row_scale = {"cache_capacity": size_unit, "occupancy_balance": size_unit}  # user's units
    if start_keep is not None:  # every variable gets the start's value (exact's warm start)
        for i, value in enumerate(start_keep.tolist()):
            model.keep[i].value = value
        if form == "flow":
            occupancy = _occupancy(instance, iv, start_keep)[:n - 1] / size_unit
            for t, value in enumerate(occupancy.tolist()):
                model.occupancy[t].value = value
        if m == 0:
            model.nothing_to_keep.value = 0.0
        model.warm_start = True
    return model


def _start_keep(instance: Instance, iv: Intervals, start: Any) -> np.ndarray:
    """A warm start as 0/1 floats, checked: one entry per interval, 0 or 1, 0 where it does
    not fit, and the kept intervals within the capacity at every gap."""
    try:
        keep = np.asarray(start, dtype=float).ravel()
    except (TypeError, ValueError):  # start="lp": could not convert string to float
        raise InvalidInstanceError(f"start must be a 0/1 keep per interval ({len(iv.start)} "
                                   f"values), got {start!r:.60}") from None
    if len(keep) != len(iv.start) or not np.all((keep == 0) | (keep == 1)):
        raise InvalidInstanceError(f"start must be a 0/1 keep per interval ({len(iv.start)} "
                                   f"values), got {len(keep)} values")
    if np.any(keep[~iv.fits] > 0):
        raise InvalidInstanceError("start keeps an interval whose object is larger than the cache")
    if _occupancy(instance, iv, keep).max(initial=0.0) > room(instance.capacity):
        raise InvalidInstanceError("start keeps more than the cache capacity at some gap")
    return keep


def _occupancy(instance: Instance, iv: Intervals, keep: np.ndarray) -> np.ndarray:
    """Tokens of the kept intervals alive at each request (index t: the gap after request t)."""
    delta = np.zeros(instance.requests + 1)
    np.add.at(delta, iv.start, iv.size * keep)
    np.add.at(delta, iv.end, -iv.size * keep)
    return np.maximum(np.cumsum(delta), 0.0)  # not -4e-16 where +s and -s cancel (Pyomo warns)


def round_schedule(instance: Instance, keep: np.ndarray, iv: Intervals | None = None,
                   tol: float = 1e-6, scan_budget: float = 3e8) -> np.ndarray:
    """An integral schedule from an LP ``keep`` (per interval): ``{0, 1}``, feasible for the
    capacity (an achievable upper bound on the optimum).

    Keep every interval the LP keeps fully (``keep >= 1 - tol``), then add fractional intervals
    in decreasing ``keep`` (ties: higher cost per token) while every gap they span has room.
    Rounding ``1 - tol`` up to 1 can overfill a gap (sizes 1.2 + 2.8 at ``keep`` 1 and
    0.99999964 in a cache of 4 - 1e-6 tokens): the near-1 intervals alive at any overfilled gap
    then join the greedy (first, as their ``keep`` is highest), so the schedule fits by
    construction. The greedy stops once it has scanned ``scan_budget`` gap entries (the schedule
    stays feasible, only less tight), which bounds its time when the LP has very many long
    fractional intervals.
    """
    iv = iv or intervals(instance)
    keep = np.asarray(keep, dtype=float)
    gaps = max(instance.requests - 1, 0)
    capacity = room(instance.capacity)
    kept = (keep >= 1 - tol) & iv.fits
    occupancy = _occupancy(instance, iv, kept.astype(float))[:gaps]
    over = occupancy > capacity
    if over.any():  # drop every near-1 interval alive at an overfilled gap (a_i <= t < b_i)
        over_before = np.concatenate([[0], np.cumsum(over)])  # overfilled gaps before request t
        kept &= over_before[iv.end] == over_before[iv.start]
        occupancy = _occupancy(instance, iv, kept.astype(float))[:gaps]
    fractional = np.flatnonzero((keep > tol) & ~kept & iv.fits)
    order = fractional[np.lexsort((-iv.cost[fractional] / iv.size[fractional],
                                   -keep[fractional]))]
    scanned = 0.0
    for i in order.tolist():
        a, b, s = int(iv.start[i]), int(iv.end[i]), float(iv.size[i])
        scanned += b - a
        if scanned > scan_budget:
            break
        if occupancy[a:b].max() + s <= capacity:
            occupancy[a:b] += s
            kept[i] = True
    return kept


def start_from_relaxation(instance: Instance, relaxation: Any) -> dict[str, Any]:
    """The IP's warm start (``servopt.solve``'s hook): the LP's ``keep`` rounded by
    :func:`round_schedule`, the schedule of the ``lp_schedule`` method, so a time-limited IP
    never ends worse than it."""
    keep = relaxation.decisions["keep"].to_numpy(dtype=float)
    return {"start": round_schedule(instance, keep).astype(float)}


def _check_interval_size(iv: Intervals) -> None:
    nonzeros = int((iv.end - iv.start)[iv.fits].sum())
    if nonzeros > MAX_INTERVAL_NONZEROS:
        raise InvalidInstanceError(
            f"the per-gap interval LP would have {nonzeros:.3g} nonzeros; use form='flow' (the "
            "equivalent min-cost-flow form has 4 per request)")


def decisions(model: pyo.ConcreteModel, instance: Instance) -> dict[str, pd.Series]:
    """``keep`` per interval (indexed by its start request) and cache ``occupancy`` per gap."""
    iv = intervals(instance)
    keep = np.array([model.keep[i].value or 0.0 for i in range(len(iv.start))])
    out = {"keep": pd.Series(keep, index=pd.Index(iv.start, name="start_request"), name="keep")}
    if hasattr(model, "occupancy"):  # in size_unit tokens in the model
        occ = np.array([model.occupancy[t].value or 0.0 for t in model.T])
        occ = occ * getattr(model, "size_unit", 1.0)
        out["occupancy"] = pd.Series(occ, index=_gap_index(instance.requests), name="occupancy")
    return out


def explain_infeasible(instance: Instance) -> str:
    """Domain reason for ``InfeasibleError``: the caching model always has a solution, so an
    infeasible status is the solver's failure."""
    return ("the caching model is always feasible (keep nothing); an infeasible status means a "
            "solver failure")


# ---------------------------------------------------------------------------------------------
# CVXPY
# ---------------------------------------------------------------------------------------------
def interval_matrix(instance: Instance, iv: Intervals | None = None, *,
                    size_unit: float = 1.0) -> sp.csr_matrix:
    """(gaps x intervals) incidence of the per-gap form, entry ``s_i / size_unit`` where ``i``
    is alive."""
    iv = iv or intervals(instance)
    _check_interval_size(iv)
    lengths = np.where(iv.fits, iv.end - iv.start, 0)
    cols = np.repeat(np.arange(len(iv.start)), lengths)
    rows = np.repeat(iv.start, lengths) + (np.arange(lengths.sum()) -
                                           np.repeat(np.cumsum(lengths) - lengths, lengths))
    vals = np.repeat(iv.size / size_unit, lengths)
    return sp.csr_matrix((vals, (rows, cols)),
                         shape=(max(instance.requests - 1, 0), len(iv.start)))


class _NoRows:
    """An empty constraint family on the CVXPY path: no row, so no dual (an empty price series)."""

    dual_value = np.zeros(0)


def build_cvxpy(instance: Instance, *, form: str = "flow") -> CvxpyModel:
    """The same LP in CVXPY (``form="flow"`` or ``"interval"``), built from sparse matrices."""
    import cvxpy as cp

    if form not in FORMS:
        raise InvalidInstanceError(f"form must be one of {FORMS}, got {form!r}")
    check_lp_size(instance, relax=True)
    iv = intervals(instance)
    n, m = instance.requests, len(iv.start)
    gaps = max(n - 1, 1)
    gap_index = _gap_index(n) if n > 1 else pd.RangeIndex(1, name="gap")
    keep = cp.Variable(max(m, 1), name="keep")
    upper = np.where(iv.fits, 1.0, 0.0) if m else np.zeros(1)
    size_unit, cost_unit = units(instance, iv)  # rows in size_unit tokens, objective in cost_unit
    cost = iv.cost / cost_unit if m else np.zeros(1)
    constraints: dict[str, tuple[Any, pd.Index]] = {}
    bounds = [keep >= 0, keep <= upper]
    if form == "flow":
        fm = flow_matrix(instance, iv)
        occupancy = cp.Variable(gaps, name="occupancy", nonneg=True)
        a_keep = fm.balance[:, :m] if m else sp.csr_matrix((gaps, 1))
        a_occ = fm.balance[:, m:] if n > 1 else sp.csr_matrix((1, gaps))
        balance = a_keep @ keep + a_occ @ occupancy == 0
        capacity = occupancy <= instance.capacity / size_unit
        constraints["occupancy_balance"] = (balance, gap_index)
        rows = [balance, capacity]
    else:
        a = (interval_matrix(instance, iv, size_unit=size_unit) if n > 1
             else sp.csr_matrix((1, max(m, 1))))
        if a.shape[1] == 0:
            a = sp.csr_matrix((a.shape[0], 1))
        capacity = a @ keep <= instance.capacity / size_unit
        rows = [capacity]
    constraints["cache_capacity"] = (capacity, gap_index)
    if n <= 1:  # no gap: empty families, as on the matrix path (not a phantom gap 0); not as
        # zero-size CVXPY rows, which CVXPY refuses before 1.9 ("Invalid dimensions (0,)")
        constraints = {name: (_NoRows(), _gap_index(n)) for name in constraints}
    objective = cp.Minimize(cost @ (1 - keep) + iv.first_miss_cost / cost_unit)
    problem = cp.Problem(objective, rows + bounds)
    # keep per interval (none when no object is requested twice, as on the matrix path)
    variables = {"keep": (keep[:m], pd.Index(iv.start, name="start_request"))}
    if form == "flow" and n > 1:  # as the Pyomo flow form reports it, in tokens
        variables["occupancy"] = (occupancy * size_unit, gap_index)

    def labelled(values: dict[str, pd.Series]) -> dict[str, pd.Series]:
        if form == "flow" and n <= 1:  # no gap: an empty occupancy, as on the other paths
            values["occupancy"] = pd.Series([], index=_gap_index(n), name="occupancy",
                                            dtype=float)
        return values

    model = CvxpyModel(problem, "min", constraints, variables, decisions=labelled)
    model.objective_scale = cost_unit  # servopt.solve reports objective, bound and prices in the
    model.row_scale = {"cache_capacity": size_unit, "occupancy_balance": size_unit}  # user's units
    return model


# ---------------------------------------------------------------------------------------------
# Sparse matrix form for HiGHS, and networkx min-cost flow
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FlowMatrix:
    """The flow form as data: variables ``[keep (m), occupancy (rows)]``.

    minimise ``objective @ v + constant`` s.t. ``balance @ v == 0``, ``lower <= v <= upper``;
    ``upper`` of ``occupancy`` is ``C`` (its reduced cost gives the ``cache_capacity`` price).
    ``gaps``: the gap of each row / occupancy variable (all gaps ``0..n-2`` unless reduced).
    Written in :func:`units`: ``objective`` and ``constant`` in ``cost_unit``, ``balance``,
    occupancy and ``C`` in ``size_unit`` tokens (miss cost = ``cost_unit`` x the value; a price
    per token = ``cost_unit / size_unit`` x the dual).
    """

    objective: np.ndarray
    constant: float
    balance: sp.csc_matrix
    lower: np.ndarray
    upper: np.ndarray
    intervals: Intervals
    gaps: np.ndarray
    size_unit: float = 1.0
    cost_unit: float = 1.0


def binding_gaps(instance: Instance, iv: Intervals | None = None) -> np.ndarray:
    """The gaps whose ``cache_capacity`` row can bind (see "Reduced network" above), sorted."""
    iv = iv or intervals(instance)
    n = instance.requests
    gaps = max(n - 1, 0)
    fit = iv.fits
    has_start = np.zeros(n, dtype=bool)
    has_start[iv.start[fit]] = True
    has_end = np.zeros(n, dtype=bool)
    has_end[iv.end[fit]] = True
    active = np.flatnonzero(has_start | has_end)  # requests where the occupancy can change
    g = np.flatnonzero(has_start[:gaps])  # candidate: the request opening the gap starts one
    # the next active request after gap g (request g + 1 or later) must end an interval
    nxt = np.searchsorted(active, g + 1)
    ok = nxt < len(active)
    g = g[ok]
    g = g[has_end[active[nxt[ok]]]]
    delta = np.zeros(n + 1)
    np.add.at(delta, iv.start[fit], iv.size[fit])
    np.add.at(delta, iv.end[fit], -iv.size[fit])
    total = np.cumsum(delta)[:gaps]  # tokens alive if every fitting interval were kept
    return g[total[g] > room(instance.capacity)]


def flow_matrix(instance: Instance, iv: Intervals | None = None, *,
                reduce: bool = False) -> FlowMatrix:
    """Build the flow form as sparse data (at most 4 nonzeros per row), no Python loops.

    reduce : keep only the rows of :func:`binding_gaps` (same optimal value and ``keep``
        feasible set; far fewer rows when many requests are one-off or the cache is large).
    """
    iv = iv or intervals(instance)
    n, m = instance.requests, len(iv.start)
    size_unit, cost_unit = units(instance, iv)
    size = iv.size / size_unit
    gap_of_row = binding_gaps(instance, iv) if reduce else np.arange(max(n - 1, 0))
    rows_n = len(gap_of_row)
    # row k: occupancy[k] - occupancy[k-1] - s keep_(starts in group k) + s keep_(ends in it) = 0,
    # group k = requests g_{k-1}+1 .. g_k (all requests <= g_0 for k = 0)
    k = np.arange(rows_n)
    rows = [k, k[1:]]
    cols = [m + k, m + k[1:] - 1]
    vals = [np.ones(rows_n), -np.ones(max(rows_n - 1, 0))]
    fit = iv.fits if reduce else np.ones(m, dtype=bool)
    start_row = np.searchsorted(gap_of_row, iv.start)
    end_row = np.searchsorted(gap_of_row, iv.end)
    s_ok = (start_row < rows_n) & fit
    rows += [start_row[s_ok]]
    cols += [np.flatnonzero(s_ok)]
    vals += [-size[s_ok]]
    e_ok = (end_row < rows_n) & fit
    rows += [end_row[e_ok]]
    cols += [np.flatnonzero(e_ok)]
    vals += [size[e_ok]]
    balance = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(rows_n, m + rows_n))
    balance.sum_duplicates()
    balance.eliminate_zeros()  # an interval inside one group cancels: it spans no kept row
    objective = np.concatenate([-iv.cost / cost_unit, np.zeros(rows_n)])
    lower = np.zeros(m + rows_n)
    upper = np.concatenate([np.where(iv.fits, 1.0, 0.0),
                            np.full(rows_n, instance.capacity / size_unit)])
    constant = float(iv.cost.sum() + iv.first_miss_cost) / cost_unit
    return FlowMatrix(objective=objective, constant=constant, balance=balance, lower=lower,
                      upper=upper, intervals=iv, gaps=gap_of_row, size_unit=size_unit,
                      cost_unit=cost_unit)


# Devex dual simplex: less CPU than HiGHS's default pricing on these networks (caching_lp_time.md)
FLOW_SIMPLEX = {"solver": "simplex", "simplex_strategy": 1, "simplex_dual_edge_weight_strategy": 1}


def build_matrix_model(instance: Instance, *, relax: bool = False, form: str = "flow",
                       max_binaries: int = MAX_BINARIES,
                       start: np.ndarray | None = None) -> MatrixModel | None:
    """The flow form on the reduced network as a :class:`~servopt.core.matrix.MatrixModel`
    (what ``servopt.solve`` hands to HiGHS); None for ``form="interval"`` (Pyomo only). ``keep``
    is integer unless ``relax`` (dropping rows that cannot bind keeps every integer ``keep``
    feasible too).

    Prices: ``cache_capacity`` for every gap (the reduced cost of ``occupancy``'s upper bound C;
    0 on dropped gaps). The bookkeeping ``occupancy_balance`` duals are left out (see "Prices";
    ``backend="pyomo"`` gives them). Decisions as :func:`decisions`: ``keep`` per interval and
    ``occupancy`` per gap (the tokens of the kept intervals alive there). ``start``: the IP's
    warm start, a feasible 0/1 ``keep`` per interval, as for :func:`build`.
    """
    if form not in FORMS:
        raise InvalidInstanceError(f"form must be one of {FORMS}, got {form!r}")
    if form != "flow":
        return None
    check_lp_size(instance, relax)
    iv = intervals(instance)
    _check_ip_size(iv, relax, max_binaries)  # before the network is built
    fm = flow_matrix(instance, iv, reduce=True)
    n = instance.requests
    m, gaps = len(iv.start), max(n - 1, 0)
    rows = fm.balance.shape[0]
    capacity_column = np.full(gaps, -1, dtype=np.int64)
    capacity_column[fm.gaps] = m + np.arange(rows)
    gap_index = _gap_index(n)
    start_vector = None
    if start is not None and not relax:
        keep = _start_keep(instance, iv, start)
        start_vector = np.concatenate([keep, _occupancy(instance, iv, keep)[fm.gaps] / fm.size_unit])

    def decode(values: np.ndarray) -> dict[str, pd.Series]:
        keep = np.clip(values[:m], 0.0, 1.0)
        return {"keep": pd.Series(keep, index=pd.Index(iv.start, name="start_request"), name="keep"),
                "occupancy": pd.Series(_occupancy(instance, iv, keep)[:gaps], index=gap_index,
                                       name="occupancy")}

    return MatrixModel(
        objective=fm.objective, matrix=fm.balance, row_lower=np.zeros(rows),
        row_upper=np.zeros(rows), col_lower=fm.lower, col_upper=fm.upper, rows={},
        columns={"keep": Family(np.arange(m), pd.Index(iv.start, name="start_request"))},
        offset=fm.constant, bound_rows={"cache_capacity": Family(capacity_column, gap_index)},
        integer=None if relax else np.arange(len(fm.objective)) < m, start=start_vector,
        decisions=decode, options=dict(FLOW_SIMPLEX) if relax else {},
        info={"reduced_rows": rows, "gaps": gaps}, objective_scale=fm.cost_unit,
        row_scale={"cache_capacity": fm.size_unit})  # reported in the instance's units


def build_networkx(instance: Instance, *, scale: float | None = None) -> tuple[Any, float, float]:
    """The min-cost flow graph: ``(graph, constant, weight_scale)``.

    Arc weights are integers ``floor(scale * c_i / s_i)`` (networkx's network simplex needs
    integers); rounding down keeps ``flow_cost / weight_scale + constant`` a lower bound on the
    LP's value, below it by at most ``1 / scale`` per token-interval kept. ``scale`` defaults to
    ``1e6`` over the smallest positive cost per token (at least 1e6), so that error is at most
    1e-6 of the cheapest kept interval's cost, in whatever unit the costs are given (capped so no
    weight exceeds 2^62: with costs per token spanning more than ~1e13 the cheapest ones round
    to less precision, the value still a lower bound).
    Sizes must be whole tokens, and a fractional capacity is rounded down (whole-token
    objects never fill the fraction, so every cache schedule stays feasible and the value is
    still a lower bound, tighter than the LP forms' there). The optimal miss cost is
    ``flow_cost / weight_scale + constant``; ``constant`` holds first misses and the cost of
    intervals whose object does not fit in the cache.
    """
    import networkx as nx

    if np.any(instance.size != np.round(instance.size)):
        raise InvalidInstanceError("the networkx flow needs whole-token sizes")
    iv = intervals(instance)
    n = instance.requests
    graph = nx.MultiDiGraph()
    graph.add_nodes_from(range(n), demand=0)
    capacity = int(np.floor(room(instance.capacity)))
    for t in range(n - 1):
        graph.add_edge(t, t + 1, capacity=capacity, weight=0)
    constant = iv.first_miss_cost + float(iv.cost[~iv.fits].sum())
    if scale is None:
        density = iv.cost[iv.fits] / iv.size[iv.fits]
        positive = density[density > 0]
        scale = max(1e6, 1e6 / float(positive.min())) if positive.size else 1e6
        if positive.size:  # weights stay below 2^62 (cost per token spanning > 1e300 overflowed)
            scale = min(scale, 2.0**62 / float(positive.max()))
    elif not (isinstance(scale, int | float) and 0 < scale < math.inf):
        raise InvalidInstanceError(f"scale must be a finite number > 0 (weight units per cost unit "
                                   f"per token), got {scale!r}")
    for a, b, s, c in zip(iv.start[iv.fits].tolist(), iv.end[iv.fits].tolist(),
                          iv.size[iv.fits].tolist(), iv.cost[iv.fits].tolist(), strict=True):
        s = int(s)
        graph.add_edge(a, b, capacity=s, weight=math.floor(scale * c / s))
        graph.nodes[a]["demand"] -= s
        graph.nodes[b]["demand"] += s
    return graph, constant, scale
