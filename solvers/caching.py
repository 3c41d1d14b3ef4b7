"""Caching methods: the offline LP bound and schedule, the deployed eviction rules, the bid-price rule.

Policy protocol
---------------
A policy is an object with

- ``start(instance)``: called once before the first request (offline policies may read the whole
  request sequence here; online ones read only ``size``, ``miss_cost`` and ``kind``, which are an
  object's metadata known at request time);
- ``touch(t, o, hit) -> float | None``: called after request ``t`` for object ``o`` is served.
  It returns the object's eviction priority (the cache evicts the lowest priority first; the
  object just requested may itself be evicted, which is a bypass) or ``None`` to not keep it;
- optionally ``evicted(o, priority)``: told when the cache evicts ``o`` (GreedyDual's ageing).

The simulator in :mod:`servopt.benchmarks.caching` owns the cache contents, the byte count and
the hit/miss accounting; a policy only ranks and admits. Rules run in O(1) or O(log n) Python per
request (a cache is sequential); the prices are computed once (or once per window) by HiGHS.

Methods (``POLICIES``)
----------------------
``lru``, ``fifo``, ``lfu`` (request count, ties to the least recent), ``gds``
(GreedyDual-Size, Cao and Irani 1997: H = L + c/s), ``gdsf`` (GreedyDual-Size-Frequency,
Cherkasova 1998: H = L + freq * c/s, L = H of the last eviction), ``lec`` (least expected cost:
evict the smallest estimated reuse probability x miss cost), ``belady`` (furthest next request:
optimal for unit sizes and costs), ``belady_size`` (evict the smallest c / (s x distance to the
next request)), ``static`` (the best fixed set for the realised popularity: no online rule beats
it on independent requests), ``lp_schedule`` (the rounded LP: an achievable offline upper bound),
``cost_freq_size`` (evict the lowest GreedyDual-aged c x frequency / s; no price),
``bid_price_static`` (the same score, admission only while c x reuse rate / s exceeds a price
learned once from the LP prices on a warm-up prefix), ``bid_price_class`` (the same with the reuse
rate predicted from the object's class: kind x how often it was seen) and ``bid_price`` (the price
refreshed by the LP on a sliding window of the past: a time-varying price).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Protocol

import numpy as np
import pandas as pd

from servopt.core import InvalidInstanceError, Solution
from servopt.core.solution import normalise_dual
from servopt.instances.caching import Instance
from servopt.models import caching as model
from servopt.solvers.exact import new_highs

LP_METHODS = ("highs_matrix", "pyomo", "cvxpy", "networkx")


class Policy(Protocol):
    def start(self, instance: Instance) -> None: ...

    def touch(self, t: int, o: int, hit: bool) -> float | None: ...


# ---------------------------------------------------------------------------------------------
# The LP bound and its integral schedule
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class LPResult:
    """Optimal LP value (a lower bound on miss cost), ``keep`` per interval, ``price`` per gap."""

    value: float
    keep: np.ndarray
    price: np.ndarray
    intervals: model.Intervals
    wall_s: float
    method: str

    def schedule(self, instance: Instance) -> np.ndarray:
        return round_schedule(instance, self)


def solve_lp(instance: Instance, *, method: str = "highs_matrix",
             time_limit: float | None = None, algorithm: str = "auto") -> LPResult:
    """Solve the offline caching LP.

    method : ``highs_matrix`` (flow form as sparse data, HiGHS dual simplex: the fast path),
        ``pyomo`` / ``cvxpy`` (flow form through :mod:`servopt.solvers.exact`), or ``networkx``
        (network simplex; value only, no prices).
    algorithm : for ``highs_matrix``, ``dual_simplex`` (fastest on most instances: 13-16 s for
        1e5 requests), ``ipm`` (interior point + crossover: 2-3x slower on most instances, but 13x
        faster on a degenerate one, multimodal skew 1.2 with a 20% cache; see
        ``benchmarks/results/caching_lp_algorithms.md``) or ``auto``: dual simplex for at most
        ``AUTO_SIMPLEX_S`` seconds, then interior point.
    """
    start = time.perf_counter()
    if method == "highs_matrix":
        result = _solve_highs_matrix(instance, time_limit, algorithm)
    elif method in ("pyomo", "cvxpy"):
        from servopt.solvers import exact

        sol = exact.solve(instance, backend="highs" if method == "pyomo" else "cvxpy",
                          time_limit=time_limit)
        iv = model.intervals(instance)
        keep = sol.decisions["keep"].to_numpy()[:len(iv.start)]
        price = sol.prices["cache_capacity"].to_numpy()[:max(instance.requests - 1, 0)]
        result = LPResult(sol.objective, keep, price, iv, 0.0, method)
    elif method == "networkx":
        import networkx as nx

        graph, constant, scale = model.build_networkx(instance)
        flow_cost = nx.network_simplex(graph)[0] if instance.requests else 0.0
        iv = model.intervals(instance)
        result = LPResult(flow_cost / scale + constant, np.full(len(iv.start), np.nan),
                          np.full(max(instance.requests - 1, 0), np.nan), iv, 0.0, method)
    else:
        raise InvalidInstanceError(f"unknown LP method {method!r}; choose one of {LP_METHODS}")
    result.wall_s = time.perf_counter() - start
    return result


AUTO_SIMPLEX_S = 40.0


def _solve_highs_matrix(instance: Instance, time_limit: float | None,
                        algorithm: str = "auto") -> LPResult:
    import highspy

    fm = model.flow_matrix(instance)
    iv = fm.intervals
    m, cols = len(iv.start), len(fm.objective)
    gaps = cols - m
    if cols == 0:
        return LPResult(fm.constant, np.zeros(0), np.zeros(gaps), iv, 0.0, "highs_matrix")
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = cols, gaps
    lp.col_cost_ = fm.objective
    lp.col_lower_, lp.col_upper_ = fm.lower, fm.upper
    lp.row_lower_ = np.zeros(gaps)
    lp.row_upper_ = np.zeros(gaps)
    a = fm.balance.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    highs = new_highs()
    if algorithm not in ("auto", "dual_simplex", "ipm"):
        raise InvalidInstanceError(f"algorithm must be 'auto', 'dual_simplex' or 'ipm', got "
                                   f"{algorithm!r}")
    highs.passModel(lp)
    start = time.perf_counter()
    limit = math.inf if time_limit is None else float(time_limit)
    if algorithm in ("auto", "dual_simplex"):
        highs.setOptionValue("solver", "simplex")
        highs.setOptionValue("simplex_strategy", 1)
        first = min(limit, AUTO_SIMPLEX_S) if algorithm == "auto" else limit
        if math.isfinite(first):
            highs.setOptionValue("time_limit", first)
        highs.run()
    status = highs.getModelStatus()
    left = limit - (time.perf_counter() - start)
    if algorithm == "ipm" or (algorithm == "auto" and status != highspy.HighsModelStatus.kOptimal
                              and left > 0):
        highs.clearSolver()
        highs.setOptionValue("solver", "ipm")
        highs.setOptionValue("run_crossover", "on")  # a vertex: prices like the simplex's
        highs.setOptionValue("time_limit", left if math.isfinite(left) else math.inf)
        highs.run()
        status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise InvalidInstanceError("HiGHS stopped on the caching LP: "
                                   f"{highs.modelStatusToString(status)}")
    sol = highs.getSolution()
    value = float(highs.getInfo().objective_function_value) + fm.constant
    values = np.asarray(sol.col_value)
    # the reduced cost of occupancy[t] is d(objective)/d(its upper bound C), like a <= row's dual
    dual = np.asarray(sol.col_dual)[m:]
    price = np.maximum(normalise_dual(dual, sense="min", row="le", convention="pyomo"), 0.0)
    return LPResult(value, np.clip(values[:m], 0.0, 1.0), price, iv, 0.0, "highs_matrix")


def lp_solution(result: LPResult, instance: Instance) -> Solution:
    """An :class:`~servopt.core.Solution` view of an LP result (prices as ``cache_capacity``)."""
    gaps = pd.RangeIndex(len(result.price), name="gap")
    return Solution(status="optimal", objective=result.value, bound=result.value, gap=0.0,
                    wall_s=result.wall_s, relaxed=True, backend=result.method, decision="caching",
                    decisions={"keep": pd.Series(result.keep, index=pd.Index(
                        result.intervals.start, name="start_request"), name="keep")},
                    prices={"cache_capacity": pd.Series(result.price, index=gaps,
                                                        name="cache_capacity")})


def round_schedule(instance: Instance, result: LPResult, tol: float = 1e-6,
                   scan_budget: float = 3e8) -> np.ndarray:
    """An integral schedule from the LP: ``keep[i] in {0, 1}``, feasible for the capacity.

    Keep every interval the LP keeps fully, then add fractional intervals in decreasing
    ``keep`` (ties: higher cost per token) while every gap they span has room. The greedy stops
    once it has scanned ``scan_budget`` gap entries (the schedule stays feasible, only less
    tight), which bounds its time when the LP has very many long fractional intervals.
    """
    iv = result.intervals
    gaps = max(instance.requests - 1, 0)
    keep = (result.keep >= 1 - tol) & iv.fits
    delta = np.zeros(gaps + 1)
    np.add.at(delta, iv.start[keep], iv.size[keep])
    np.add.at(delta, iv.end[keep], -iv.size[keep])
    occupancy = np.cumsum(delta)[:gaps]
    fractional = np.flatnonzero((result.keep > tol) & ~keep & iv.fits)
    order = fractional[np.lexsort((-iv.cost[fractional] / iv.size[fractional],
                                   -result.keep[fractional]))]
    capacity = instance.capacity + 1e-9
    scanned = 0.0
    for i in order.tolist():
        a, b, s = int(iv.start[i]), int(iv.end[i]), float(iv.size[i])
        scanned += b - a
        if scanned > scan_budget:
            break
        if occupancy[a:b].max() + s <= capacity:
            occupancy[a:b] += s
            keep[i] = True
    return keep


def schedule_cost(instance: Instance, result: LPResult, keep: np.ndarray) -> float:
    """Miss cost of an integral schedule (the model's arithmetic; the simulator re-checks it)."""
    iv = result.intervals
    return float(iv.first_miss_cost + iv.cost[~keep].sum())


# ---------------------------------------------------------------------------------------------
# Deployed eviction rules
# ---------------------------------------------------------------------------------------------
class _Base:
    """Common state: sizes, costs and cost per token as Python lists (fast scalar access)."""

    name = "base"

    def start(self, instance: Instance) -> None:
        self.size = instance.size.tolist()
        self.cost = instance.miss_cost.tolist()
        self.density = (instance.miss_cost / instance.size).tolist()

    def __repr__(self) -> str:
        return f"<caching policy {self.name}>"


class LRU(_Base):
    """Least recently used (vLLM's encoder cache, Dynamo's embedding cache): priority = last use."""

    name = "lru"

    def touch(self, t: int, o: int, hit: bool) -> float:
        return t


class FIFO(_Base):
    """First in, first out: priority = insertion time, unchanged by hits."""

    name = "fifo"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.inserted: dict[int, int] = {}

    def touch(self, t: int, o: int, hit: bool) -> float:
        if not hit:
            self.inserted[o] = t
        return self.inserted[o]


class LFU(_Base):
    """Least frequently used: requests counted since the start (perfect LFU), ties to the LRU."""

    name = "lfu"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.count = [0] * instance.objects
        self.scale = 1.0 / (instance.requests + 1)

    def touch(self, t: int, o: int, hit: bool) -> float:
        self.count[o] += 1
        return self.count[o] + t * self.scale


class GDS(_Base):
    """GreedyDual-Size (Cao and Irani 1997): H(o) = L + c_o / s_o, L = H of the last eviction."""

    name = "gds"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.inflation = 0.0

    def touch(self, t: int, o: int, hit: bool) -> float:
        return self.inflation + self.density[o]

    def evicted(self, o: int, priority: float) -> None:
        self.inflation = priority


class GDSF(GDS):
    """GreedyDual-Size-Frequency (Cherkasova 1998): H = L + freq_o c_o / s_o; freq counts the
    object's requests while cached and restarts at 1 after an eviction."""

    name = "gdsf"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.freq = [0] * instance.objects

    def touch(self, t: int, o: int, hit: bool) -> float:
        f = self.freq[o] + 1 if hit else 1
        self.freq[o] = f
        return self.inflation + f * self.density[o]


class LEC(_Base):
    """Least expected cost: evict the smallest P(reuse) x c_o, P(reuse) = k / (k + 1) after k
    requests (Laplace's rule of succession for 'the object is requested again')."""

    name = "lec"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.count = [0] * instance.objects

    def touch(self, t: int, o: int, hit: bool) -> float:
        k = self.count[o] + 1
        self.count[o] = k
        return k / (k + 1.0) * self.cost[o]


class Belady(_Base):
    """Belady's MIN: evict the object requested furthest in the future (never-again first)."""

    name = "belady"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.next = model.intervals(instance).next_request.tolist()
        self.n = instance.requests

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        nxt = self.next[t]
        return None if nxt >= self.n else -float(nxt)


class BeladySize(Belady):
    """Size- and cost-aware Belady: evict the smallest c_o / (s_o x distance to next request)."""

    name = "belady_size"

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        nxt = self.next[t]
        return None if nxt >= self.n else self.density[o] / (nxt - t)


class Static(_Base):
    """The best fixed set for the true popularity (greedy knapsack on expected saved cost per
    token): members are admitted on first request and never evicted; others bypass. Uses the
    instance's ``popularity`` (expected requests) when the generator knows it, else the realised
    request counts of the trace."""

    name = "static"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.member = static_set(instance).tolist()

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        return 1.0 if self.member[o] else None


def static_set(instance: Instance) -> np.ndarray:
    """Boolean mask of the fixed set: greedy by saved cost per token, then fill what still fits.

    Saved cost of keeping o from its first request: c_o x (requests - 1) for realised counts,
    c_o x (mu - P(N >= 1)) = c_o x (mu - 1 + e^-mu) for a Poisson count of mean mu.
    """
    if instance.popularity is not None:
        mu = instance.popularity
        value = (mu - 1.0 + np.exp(-mu)) * instance.miss_cost
    else:
        counts = np.bincount(instance.object_id, minlength=instance.objects).astype(float)
        value = np.maximum(counts - 1, 0) * instance.miss_cost
    fits = instance.size <= instance.capacity
    candidates = np.flatnonzero((value > 0) & fits)
    order = candidates[np.argsort(-value[candidates] / instance.size[candidates], kind="stable")]
    cumulative = np.cumsum(instance.size[order])
    member = np.zeros(instance.objects, dtype=bool)
    first = order[cumulative <= instance.capacity]
    member[first] = True
    room = instance.capacity - instance.size[first].sum()
    for o in order[len(first):].tolist():  # fill: the greedy prefix leaves a little room
        if instance.size[o] <= room:
            member[o] = True
            room -= instance.size[o]
    return member


class LPSchedule(_Base):
    """The rounded offline LP schedule: keep the object after request t iff the schedule does."""

    name = "lp_schedule"

    def __init__(self, lp: LPResult | None = None) -> None:
        self.lp = lp

    def start(self, instance: Instance) -> None:
        super().start(instance)
        lp = self.lp or solve_lp(instance)
        keep_at = np.zeros(instance.requests, dtype=bool)
        keep_at[lp.intervals.start] = round_schedule(instance, lp)
        self.keep = keep_at.tolist()
        self.next = lp.intervals.next_request.tolist()
        self.lp_value = lp.value

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        return -float(self.next[t]) if self.keep[t] else None


# ---------------------------------------------------------------------------------------------
# The bid-price rule
# ---------------------------------------------------------------------------------------------
LN2 = math.log(2.0)


class BidPrice(_Base):
    """Keep o while c_o x reuse_rate_o / s_o exceeds the price of a token-request-step.

    Eviction: lowest score ``L + (k_o + prior) c_o / s_o`` first, where k_o counts the object's
    earlier requests (cost x frequency / size) and L, the score of the last eviction, ages the
    whole cache slowly (GreedyDual's inflation).

    Admission (where the price acts): after a request the object is kept only if
    ``c_o x rate_o / s_o >= price_scale x price``, with ``rate_o`` (requests per step)

    - ``admission="rate"``: the object's own rate (k_o + prior) / (age_o + D), D the mean reuse
      distance seen on the past window (a prior that keeps a new object's rate finite);
    - ``admission="class"``: the reuse rate of its class (kind x how many times it was requested
      before: 1st, 2nd, 3rd, later) measured on the past window: P(requested again) / mean
      distance to that request. This predicts reuse at admission, before the object has history.

    price : miss cost per token-step. With ``warmup`` > 0 it is learned online: at request
        ``warmup x n`` the LP is solved on the requests seen so far and the price is the mean of
        its ``cache_capacity`` prices over that window (per-gap prices are degenerate; their mean
        is the average price of a token-step); ``prior`` and then ``price_scale`` are chosen
        from small grids by replaying the warm-up. With ``refresh`` = W (requests, or a share of
        them if < 1), the LP is re-solved every W requests on the last W requests: a
        sliding-window, time-varying price (and class rates).
    """

    name = "bid_price"
    CLASSES_PER_KIND = 4

    def __init__(self, *, price: float = 0.0, price_scale: float = 1.0, prior: float = 1.0,
                 warmup: float = 0.0, refresh: int | float | None = None, tune: bool = True,
                 admission: str = "rate",
                 scales: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0),
                 priors: tuple[float, ...] = (0.0, 0.2, 1.0),
                 class_rate: np.ndarray | None = None, distance: float | None = None) -> None:
        if admission not in ("rate", "class"):
            raise InvalidInstanceError(f"admission must be 'rate' or 'class', got {admission!r}")
        self.price, self.price_scale, self.prior = float(price), price_scale, prior
        self.warmup, self.refresh, self.tune = warmup, refresh, tune
        self.admission, self.scales, self.priors = admission, scales, priors
        self.class_rate, self.distance = class_rate, distance
        self.prices: list[tuple[int, float]] = []  # (request, price x scale) history

    # -- set-up -------------------------------------------------------------------------------
    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.instance = instance
        n = instance.requests
        self.count = [0] * instance.objects
        self.first = [0] * instance.objects
        self.inflation = 0.0
        if self.distance is None:
            self.distance = float(max(n, 1))
        kind = instance.kind if instance.kind is not None else np.zeros(instance.objects, int)
        self.kind_base = (kind * self.CLASSES_PER_KIND).tolist()
        classes = (int(kind.max(initial=0)) + 1) * self.CLASSES_PER_KIND
        if self.class_rate is None:
            self.class_rate = np.zeros(classes)
        self.rate_of_class = self.class_rate.tolist()
        self.warm_end = int(self.warmup * n) if self.warmup > 0 else -1
        if self.refresh is not None and 0 < self.refresh < 1:
            self.refresh = max(int(self.refresh * n), 100)
        self.next_refresh = -1
        self.prices = [(0, self.price * self.price_scale)]
        self._set_threshold()

    def _set_threshold(self) -> None:
        self.threshold = self.price * self.price_scale

    # -- per request --------------------------------------------------------------------------
    def touch(self, t: int, o: int, hit: bool) -> float | None:
        if t == self.warm_end or t == self.next_refresh:
            self._learn(t)
        k = self.count[o]
        self.count[o] = k + 1
        if k == 0:
            self.first[o] = t
        if self.threshold > 0:
            if self.admission == "rate":
                rate = (k + self.prior) / (t - self.first[o] + self.distance)
            else:
                rate = self.rate_of_class[self.kind_base[o] + min(k, self.CLASSES_PER_KIND - 1)]
            if self.density[o] * rate < self.threshold:
                return None
        return self.inflation + (k + self.prior) * self.density[o]

    def evicted(self, o: int, priority: float) -> None:
        self.inflation = priority

    # -- learning the price from the past ---------------------------------------------------
    def _learn(self, t: int) -> None:
        first = t == self.warm_end
        lo = 0 if first or not self.refresh else max(0, t - int(self.refresh))
        window = _window(self.instance, lo, t)
        lp = solve_lp(window)
        # the per-gap prices are degenerate (HiGHS may put a whole interval's price on one gap);
        # their mean over the window is the average price of a token-step
        self.price = float(lp.price.mean()) if len(lp.price) else 0.0
        iv = lp.intervals
        self.distance = float((iv.end - iv.start).mean()) if len(iv.start) else float(t)
        if self.admission == "class":
            self.class_rate = class_rates(window, self.CLASSES_PER_KIND, len(self.class_rate))
            self.rate_of_class = self.class_rate.tolist()
        if first and self.tune:
            self._tune(window)
        self._set_threshold()
        self.prices.append((t, self.threshold))
        if self.refresh:
            self.next_refresh = t + int(self.refresh)

    def _tune(self, window: Instance) -> None:
        """Choose ``prior`` with no price, then ``price_scale``, by replaying the past window."""
        from servopt.benchmarks.caching import simulate  # the warm-up replay (past requests)

        def replay(prior: float, scale: float) -> float:
            trial = BidPrice(price=self.price, price_scale=scale, prior=prior, tune=False,
                             admission=self.admission, class_rate=self.class_rate,
                             distance=self.distance)
            return simulate(window, trial).miss_cost

        _, self.prior = min((replay(p, 0.0), p) for p in self.priors)
        scales = self.scales if self.price > 0 else (0.0,)
        _, self.price_scale = min((replay(self.prior, s), s) for s in scales)


def _safe_log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(values > 0, np.log(np.maximum(values, 1e-300)), -np.inf)


def class_rates(window: Instance, per_kind: int, classes: int) -> np.ndarray:
    """Reuse rate (requests per step) of each class (kind x prior request count) on a window:
    P(requested again inside the window) / mean distance to that request."""
    iv = model.intervals(window)
    n = window.requests
    ids = window.object_id
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=window.objects)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ordinal = np.empty(n, dtype=np.int64)
    ordinal[order] = np.arange(n) - np.repeat(first, counts)
    kind = window.kind if window.kind is not None else np.zeros(window.objects, dtype=np.int64)
    cls = kind[ids] * per_kind + np.minimum(ordinal, per_kind - 1)
    reused = iv.next_request < n
    distance = np.where(reused, iv.next_request - np.arange(n), 0)
    total = np.bincount(cls, minlength=classes)[:classes].astype(float)
    again = np.bincount(cls, weights=reused, minlength=classes)[:classes]
    dist = np.bincount(cls, weights=distance, minlength=classes)[:classes]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(again > 0, (again / np.maximum(total, 1)) / (dist / np.maximum(again, 1)),
                        0.0)
    return rate


def _window(instance: Instance, lo: int, hi: int) -> Instance:
    """The requests ``lo..hi-1`` as an instance over the same objects."""
    return Instance(time=instance.time[lo:hi], object_id=instance.object_id[lo:hi],
                    size=instance.size, miss_cost=instance.miss_cost,
                    capacity=instance.capacity, kind=instance.kind,
                    kind_names=instance.kind_names, name=instance.name)  # no popularity: past only


class CostFreqSize(BidPrice):
    """The bid-price score without a price: evict the lowest L + (k + prior) c / s, admit all
    (``prior`` chosen on the warm-up like the bid-price rule; no LP)."""

    name = "cost_freq_size"

    def __init__(self, *, warmup: float = 0.2, **kw: Any) -> None:
        super().__init__(warmup=warmup, scales=(0.0,), **kw)

    def _learn(self, t: int) -> None:
        self.price = 0.0
        if self.tune:
            self._tune(_window(self.instance, 0, t))
        self._set_threshold()


def _factory(cls: type, **kw: Any) -> Any:
    def make() -> Any:
        return cls(**kw)

    make.__name__ = cls.__name__
    return make


# name -> zero-argument factory of a fresh policy object
POLICIES: dict[str, Any] = {
    "lru": LRU,
    "fifo": FIFO,
    "lfu": LFU,
    "gds": GDS,
    "gdsf": GDSF,
    "lec": LEC,
    "belady": Belady,
    "belady_size": BeladySize,
    "static": Static,
    "lp_schedule": LPSchedule,
    "cost_freq_size": CostFreqSize,
    "bid_price_static": _factory(BidPrice, warmup=0.2),
    "bid_price_class": _factory(BidPrice, warmup=0.2, admission="class"),
    "bid_price": _factory(BidPrice, warmup=0.2, refresh=0.2),
}


def make_policy(method: Any) -> Any:
    """A fresh policy object from a POLICIES name, a factory or a policy object."""
    if isinstance(method, str):
        if method not in POLICIES:
            raise InvalidInstanceError(f"unknown caching method {method!r}; known: "
                                       f"{', '.join(POLICIES)}")
        return POLICIES[method]()
    if hasattr(method, "touch"):
        return method
    if callable(method):
        return method()
    raise InvalidInstanceError(f"not a caching policy: {method!r}")
