"""Caching methods: the offline LP bound and schedule, the deployed eviction rules, the bid-price rule.

Policy protocol
---------------
A policy is an object with

- ``start(instance)``: called once before the first request (offline policies may read the whole
  request sequence here; online ones read only ``size``, ``miss_cost`` and ``kind``, which are an
  object's metadata known at request time);
- ``touch(t, o, hit) -> float | None``: called after request ``t`` for object ``o`` is served,
  with ``t`` = 0, 1, 2, ... It returns the object's eviction priority (the cache evicts the lowest
  priority first; the object just requested may itself be evicted, which is a bypass) or ``None``
  to not keep it;
- optionally ``evicted(o, priority)``: told when the cache evicts ``o`` (GreedyDual's ageing);
- optionally ``bypass = False`` (demand fetch, as LRU, FIFO, LFU, GreedyDual and LEC are
  published): on a miss the cache first evicts the lowest-priority cached objects until the
  requested one fits, telling ``evicted``, and only then calls ``touch``, whose priority the
  requested object enters with. By default (``bypass = True``) ``touch`` is called first and the
  requested object competes with the cached ones, so it may be evicted at once: a bypass
  (admission control: the bid-price rule, the static set, Belady with bypass, the LP schedule);
- optionally ``priority(o) -> float`` and a flag ``rerank``: when ``touch`` sets ``rerank``, the
  simulator clears it and re-ranks every cached object by ``priority(o)`` (a policy whose order
  changes between requests, e.g. the bid-price rule switching its ageing). Its answers are
  checked as ``touch``'s are (a number, not NaN); a ``rerank`` flag set by a policy without
  ``priority`` is refused.

The simulator in :mod:`servopt.benchmarks.caching` owns the cache contents, the byte count and
the hit/miss accounting; a policy only ranks and admits. The one exception is the bid-price
rule's own past: its shadow caches and warm-up replay run in :class:`Cache`, defined here and
not shared with the evaluator, which keeps its own (tests check the two against each other).
Rules run in O(1) or O(log n) Python per request (a cache is sequential); the prices are
computed once (or once per window) by HiGHS.

Outside the simulator (a live cache), ``start`` gets an instance with the catalogue and no
requests. The bid-price rules then learn only from the requests ``touch`` shows them (give their
warm-up and windows in requests: a share of n is refused at request n), refuse an object
id outside the catalogue, and take a price from outside with :meth:`BidPrice.set_price` or
:meth:`BidPrice.update_from_solution` without losing their ageing state. ``belady``,
``belady_size``, ``static`` and ``lp_schedule`` read the future and cannot run live.

Methods (``POLICIES``)
----------------------
The first six always bring the requested object in (demand fetch, as published); the others
may bypass it. ``lru``, ``fifo``, ``lfu`` (request count, ties to the least recent), ``gds``
(GreedyDual-Size, Cao and Irani 1997: H = L + c/s), ``gdsf`` (GreedyDual-Size-Frequency,
Cherkasova 1998: H = L + freq * c/s, L = H of the last eviction), ``lec`` (least expected cost:
evict the smallest estimated reuse probability x miss cost), ``belady`` (furthest next request, with
bypass: optimal for unit sizes and costs), ``belady_size`` (evict the smallest c / (s x distance to the
next request)), ``static`` (the best fixed set for the realised popularity: no online rule beats
it on independent requests), ``lp_schedule`` (the rounded LP: an achievable offline upper bound),
``cost_freq_size`` (evict the lowest c x reuse rate / s, the rate a request count with slow
exponential ageing; no price), ``bid_price_static`` (the same order, admission only while
c x reuse rate / s exceeds a price learned once from the LP prices on a warm-up prefix) and
``bid_price`` (the price refreshed by the LP on a sliding window of the past: a time-varying price;
its ``price_scale`` is chosen on the warm-up, 0 = no admission control; warm-up and windows are
0.2 n requests, at most ``WINDOW_CAP``; ``BidPrice(warmup=N, refresh=W)`` gives them in requests
for a live cache), ``bid_price_window``
(the same sliding-window price applied at face value, scale 1: what the price does when it acts).

Not in ``POLICIES``: ``PhaseStatic`` (the best fixed set of each popularity phase of the
multimodal generator, from its true per-phase popularity: a foresight reference for drift).
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from servopt.core import InvalidInstanceError
from servopt.core.checks import flag, number
from servopt.core.registry import layer_module
from servopt.core.solution import normalise_dual
from servopt.instances.caching import Instance
from servopt.models import caching as model
from servopt.solvers.exact import give_seconds, highs_lp, new_highs, seconds

LP_METHODS = ("highs_matrix", "pyomo", "cvxpy", "networkx")
LP_ALGORITHMS = ("auto", "dual_simplex", "dual_steepest_edge", "ipm")  # (highs_matrix's)


def check_algorithm(algorithm: Any) -> None:
    """Refuse an ``algorithm`` that is not one of :data:`LP_ALGORITHMS`."""
    if not (isinstance(algorithm, str) and algorithm in LP_ALGORITHMS):
        raise InvalidInstanceError(f"algorithm must be 'auto', 'dual_simplex', "
                                   f"'dual_steepest_edge' or 'ipm', got {algorithm!r}")


class Policy(Protocol):
    """The caching policy protocol (the module docstring has it in full)."""

    def start(self, instance: Instance) -> None:
        """Called once before the first request with the instance (arrays read-only; an online
        rule reads only ``size`` (tokens), ``miss_cost`` and ``kind``)."""

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        """Called after request ``t`` for object ``o`` is served (``hit``: it was cached): ``o``'s
        eviction priority (the cache evicts the lowest first), or None to not keep it."""


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


def solve_lp(instance: Instance, *, method: str = "highs_matrix",
             time_limit: float | None = None, algorithm: str = "dual_simplex",
             reduce: bool = True) -> LPResult:
    """Solve the offline caching LP.

    method : ``highs_matrix`` (flow form as sparse data, HiGHS dual simplex: the fast path),
        ``pyomo`` / ``cvxpy`` (flow form through :mod:`servopt.solvers.exact`), or ``networkx``
        (network simplex; value only, no prices).
    algorithm : for ``highs_matrix``, ``dual_simplex`` (Devex pricing; the default: 6-15 s of
        CPU on the 1e5-request benchmark instances, ``caching_lp_time.md``), ``dual_steepest_edge`` (HiGHS's
        default pricing), ``ipm`` (interior point + crossover) or ``auto``: dual simplex for at
        most ``AUTO_SIMPLEX_S`` wall seconds, then interior point from scratch (no longer the
        default: on a loaded machine the wall-clock switch fired on instances the simplex was
        about to finish, and the degenerate instance it was for now has no binding row). See
        ``benchmarks/results/caching_lp_algorithms.md``.
    reduce : for ``highs_matrix``, solve the reduced network (only the capacity rows that can
        bind, :func:`servopt.models.caching.binding_gaps`): same value and ``keep`` feasible set,
        21-39% fewer rows on the multimodal instances and 55-71% on Mooncake blocks
        (``caching_lp_algorithms.md``), and none when even keeping everything
        fits; prices of the dropped rows are 0.
    Above ``servopt.models.caching.MAX_LP_REQUESTS`` requests it is refused before anything is
    built (:class:`InvalidInstanceError`).
    time_limit : seconds; None or infinity: no limit; <= 0, NaN or text are refused
        (:class:`InvalidInstanceError`), as :func:`servopt.solvers.exact.solve` refuses them.
        An LP stopped by it raises ``TimeoutError`` (no bound, no prices; the instance is
        fine); a solver failure raises :class:`servopt.solvers.exact.SolverFailedError`.
    """
    time_limit = seconds(time_limit)  # HiGHS would refuse -1 silently and run without a limit
    model.check_lp_size(instance, relax=True)  # every method: the same LP, the same memory
    if method == "highs_matrix":
        check_algorithm(algorithm)  # (before the flow matrix is built)
    start = time.perf_counter()
    if method == "highs_matrix":
        result = _solve_highs_matrix(instance, time_limit, algorithm, reduce)
        _LAST_LP.clear()  # the last optimum, for lp_schedule on the same instance (LPSchedule):
        # a copy, so that a caller who edits the result it was given cannot change it
        _LAST_LP[(instance.content_hash(), algorithm, reduce)] = copy.deepcopy(result)
    elif method in ("pyomo", "cvxpy"):
        from servopt.solvers import exact

        sol = exact.solve(instance, relax=True, backend=method, time_limit=time_limit)
        if sol.status == "interrupted":  # Ctrl-C: stop, not a slow LP's TimeoutError
            raise KeyboardInterrupt(f"the caching LP ({method}) was interrupted")
        if sol.status == "time_limit":  # as the highs_matrix path: a stopped LP
            raise TimeoutError(_stopped(f"{sol.status} ({method})", time_limit))  # is no bound
        if sol.status != "optimal":
            raise exact.SolverFailedError(f"HiGHS stopped on the caching LP ({method}): {sol.status}")
        iv = model.intervals(instance)
        keep = sol.decisions["keep"].to_numpy()[:len(iv.start)]
        gaps = max(instance.requests - 1, 0)
        # no request, or one: no gap, no row (Pyomo then has no price family at all): no price
        price = (sol.prices["cache_capacity"].to_numpy()[:gaps] if gaps else np.zeros(0))
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
# the last LP ``solve_lp`` solved to optimality on the highs_matrix path, keyed by (instance
# content hash, algorithm, reduce): one entry, read only by :class:`LPSchedule`, so that
# ``gap_table``'s bound (solved first) and the lp_schedule method share one LP solve
_LAST_LP: dict[tuple, LPResult] = {}


def _stopped(why: str, time_limit: float | None) -> str:
    """The message of a caching LP stopped before optimality (not a fault of the instance)."""
    return (f"HiGHS stopped on the caching LP before it was solved ({why}; time_limit="
            f"{time_limit} s): no bound or prices; allow more time (servopt.solve returns such a "
            f"solve with status 'time_limit' instead)")


def _solve_highs_matrix(instance: Instance, time_limit: float | None,
                        algorithm: str = "dual_simplex", reduce: bool = True) -> LPResult:
    import highspy

    fm = model.flow_matrix(instance, reduce=reduce)
    iv = fm.intervals
    m, cols = len(iv.start), len(fm.objective)
    rows = cols - m
    gaps = max(instance.requests - 1, 0)
    if rows == 0:  # no capacity row can bind: keep every interval that fits
        keep = np.where(iv.fits, 1.0, 0.0)
        return LPResult(float(iv.cost.sum() + iv.first_miss_cost - iv.cost[iv.fits].sum()), keep,
                        np.zeros(gaps), iv, 0.0, "highs_matrix")
    lp = highs_lp(fm.objective, fm.balance, np.zeros(rows), np.zeros(rows), fm.lower, fm.upper)
    highs = new_highs()
    highs.passModel(lp)
    start = time.perf_counter()
    limit = math.inf if time_limit is None else float(time_limit)
    if algorithm in ("auto", "dual_simplex", "dual_steepest_edge"):
        highs.setOptionValue("solver", "simplex")
        highs.setOptionValue("simplex_strategy", 1)
        if algorithm != "dual_steepest_edge":  # HiGHS's default pricing (the previous default)
            # Devex pricing: less CPU than dual steepest edge on these networks
            highs.setOptionValue("simplex_dual_edge_weight_strategy", 1)
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
        give_seconds(highs, left)  # HiGHS's clock counts the simplex's run: ``left`` more
        highs.run()
        status = highs.getModelStatus()
    if status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit,
                  highspy.HighsModelStatus.kInterrupt):
        raise TimeoutError(_stopped(highs.modelStatusToString(status), time_limit))
    if status != highspy.HighsModelStatus.kOptimal:
        from servopt.solvers.exact import SolverFailedError

        raise SolverFailedError("HiGHS stopped on the caching LP: "
                                f"{highs.modelStatusToString(status)}")
    sol = highs.getSolution()
    # the LP is in the model's units (models.caching.units): cost_unit per unit of the objective,
    # size_unit tokens per unit of occupancy
    value = (float(highs.getInfo().objective_function_value) + fm.constant) * fm.cost_unit
    values = np.asarray(sol.col_value)
    # the reduced cost of occupancy[t] is d(objective)/d(its upper bound C), like a <= row's dual
    dual = np.asarray(sol.col_dual)[m:] * (fm.cost_unit / fm.size_unit)  # miss cost per token
    price = np.zeros(gaps)  # dropped rows are redundant: price 0
    price[fm.gaps] = np.maximum(normalise_dual(dual, sense="min", row="le", convention="pyomo"), 0.0)
    return LPResult(value, np.clip(values[:m], 0.0, 1.0), price, iv, 0.0, "highs_matrix")


def round_schedule(instance: Instance, result: LPResult, tol: float = 1e-6,
                   scan_budget: float = 3e8) -> np.ndarray:
    """An integral schedule from the LP: ``keep[i] in {0, 1}``, feasible for the capacity
    (:func:`servopt.models.caching.round_schedule`, which also warm-starts the caching IP)."""
    return model.round_schedule(instance, result.keep, result.intervals, tol, scan_budget)


def schedule_cost(instance: Instance, result: LPResult, keep: np.ndarray) -> float:
    """Miss cost of an integral schedule (the model's arithmetic; the simulator re-checks it)."""
    iv = result.intervals
    return float(iv.first_miss_cost + iv.cost[~keep].sum())


# ---------------------------------------------------------------------------------------------
# Deployed eviction rules
# ---------------------------------------------------------------------------------------------
class BasePolicy:
    """Common state: sizes, costs and cost per token as Python lists (fast scalar access)."""

    name = "base"

    def start(self, instance: Instance) -> None:
        self.size = instance.size.tolist()
        self.cost = instance.miss_cost.tolist()
        self.density = (instance.miss_cost / instance.size).tolist()

    def __repr__(self) -> str:
        return f"<caching policy {self.name}>"


class LRU(BasePolicy):
    """Least recently used (vLLM's encoder cache, Dynamo's embedding cache): priority = last use."""

    name = "lru"
    bypass = False

    def touch(self, t: int, o: int, hit: bool) -> float:
        return t


class FIFO(BasePolicy):
    """First in, first out: priority = insertion time, unchanged by hits."""

    name = "fifo"
    bypass = False

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.inserted: dict[int, int] = {}

    def touch(self, t: int, o: int, hit: bool) -> float:
        if not hit:
            self.inserted[o] = t
        return self.inserted[o]


class LFU(BasePolicy):
    """Least frequently used: requests counted since the start (perfect LFU), ties to the LRU.
    Demand fetch: the requested object always enters, evicting the least frequently used."""

    name = "lfu"
    bypass = False

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.count = [0] * instance.objects
        self.scale = 1.0 / (instance.requests + 1)

    def touch(self, t: int, o: int, hit: bool) -> float:
        self.count[o] += 1
        return self.count[o] + t * self.scale


class GDS(BasePolicy):
    """GreedyDual-Size (Cao and Irani 1997): H(o) = L + c_o / s_o, L = H of the last eviction.

    As published: on a miss the object is always brought in; the cache first evicts the lowest
    H among the cached objects (each eviction sets L), then the new object gets H = L + c/s
    with the L of those evictions (a hit resets H with the current L)."""

    name = "gds"
    bypass = False

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


class LEC(BasePolicy):
    """Least expected cost: evict the smallest P(reuse) x c_o, P(reuse) = k / (k + 1) after k
    requests (Laplace's rule of succession for 'the object is requested again'). Demand fetch:
    the requested object always enters; the eviction is among the others."""

    name = "lec"
    bypass = False

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.count = [0] * instance.objects

    def touch(self, t: int, o: int, hit: bool) -> float:
        k = self.count[o] + 1
        self.count[o] = k
        return k / (k + 1.0) * self.cost[o]


class Belady(BasePolicy):
    """Belady's rule with bypass: keep the objects requested soonest; the requested object
    itself competes, so one whose next request is the furthest (or never) is not cached.

    For unit sizes and costs this is optimal among all policies that may bypass, so it equals the
    LP bound there (tested). Textbook MIN (demand paging: the requested object always enters) can
    miss more: 9 page faults against 8 on the textbook reference string of ``tests``.
    """

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


class Static(BasePolicy):
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


def static_set(instance: Instance, popularity: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the fixed set: greedy by saved cost per token, then fill what still fits.

    Saved cost of keeping o from its first request: c_o x (requests - 1) for realised counts,
    c_o x (mu - P(N >= 1)) = c_o x (mu - 1 + e^-mu) for a Poisson count of mean mu (the
    instance's ``popularity``, or ``popularity`` given here: expected requests per object).
    """
    if popularity is None:
        popularity = instance.popularity
    if popularity is not None:
        mu = np.asarray(popularity, dtype=float)
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


class PhaseStatic(BasePolicy):
    """A foresight reference for drifting popularity: the best fixed set of each phase, chosen
    with that phase's true request probabilities (``bounds``: phase k covers requests
    ``bounds[k]..bounds[k+1]-1``; ``probability``: phases x objects). Members are admitted on
    request with rank 1; any other object is kept with rank 0 while there is room (it fills
    what the members leave free and is evicted first, oldest first); at a phase change every
    cached object is re-ranked by the new phase's membership. Not in ``POLICIES``: it needs the
    generator's per-phase popularity (:func:`servopt.instances.caching.phase_popularity`)."""

    name = "phase_static"

    def __init__(self, bounds: np.ndarray, probability: np.ndarray) -> None:
        self.bounds = np.asarray(bounds, dtype=np.int64)
        self.probability = np.asarray(probability, dtype=float)
        if self.probability.ndim != 2 or len(self.bounds) != len(self.probability) + 1:
            raise InvalidInstanceError("phase_static needs phases + 1 bounds and a phases x "
                                       "objects probability table")
        if self.bounds[0] != 0 or np.any(np.diff(self.bounds) < 0):
            raise InvalidInstanceError("phase_static: bounds must start at request 0 and not "
                                       "decrease")

    def start(self, instance: Instance) -> None:
        super().start(instance)
        if self.probability.shape[1] != instance.objects or self.bounds[-1] != instance.requests:
            raise InvalidInstanceError("phase_static: the probability table does not match the "
                                       "instance's objects and requests")
        lengths = np.diff(self.bounds)
        self.members = [static_set(instance, n * p).tolist()
                        for n, p in zip(lengths, self.probability, strict=True)]
        self.starts = self.bounds[1:-1].tolist()
        self.phase = 0
        self.member = self.members[0]
        self.rerank = False

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        if self.phase < len(self.starts) and t >= self.starts[self.phase]:
            while self.phase < len(self.starts) and t >= self.starts[self.phase]:  # empty phases
                self.phase += 1
            self.member = self.members[self.phase]
            self.rerank = True
        return 1.0 if self.member[o] else 0.0

    def priority(self, o: int) -> float:
        return 1.0 if self.member[o] else 0.0


class LPSchedule(BasePolicy):
    """The rounded offline LP schedule: keep the object after request t iff the schedule does.

    lp : a solved LP of the instance (:func:`solve_lp`); None (default): solved in ``start``
    (HiGHS's dual simplex), or the one :func:`solve_lp` last solved to optimality on the same
    instance with those defaults, e.g. ``gap_table``'s bound (solved just before), reused.
    time_limit : seconds for that solve; None (default): no limit, since the schedule needs the
    LP's optimum (an LP of 100,000 requests took 52 s here). A solve stopped by the limit raises
    ``TimeoutError`` (no schedule); ``gap_table``'s ``bound_kw`` does not reach this rule: pass
    ``LPSchedule(time_limit=...)`` as the method to limit it.
    """

    name = "lp_schedule"

    def __init__(self, lp: LPResult | None = None, *, time_limit: float | None = None) -> None:
        if lp is not None and not isinstance(lp, LPResult):
            raise InvalidInstanceError(f"lp must be a solved caching LP (solve_lp's LPResult) or "
                                       f"None, got {type(lp).__name__}")
        self.lp = lp
        self.time_limit = seconds(time_limit)  # refused now, not at the first instance

    def start(self, instance: Instance) -> None:
        super().start(instance)
        if self.lp is None:
            model.check_lp_size(instance, relax=True)  # (refused before the hash of 10M requests)
        lp = self.lp or _LAST_LP.get((instance.content_hash(), "dual_simplex", True)) \
            or solve_lp(instance, time_limit=self.time_limit)
        if not np.array_equal(lp.intervals.next_request, model.intervals(instance).next_request):
            raise InvalidInstanceError("lp_schedule: the LP was solved for another request "
                                       "sequence; solve it on this instance (or pass no LP)")
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
class Cache:
    """The bid-price rule's own cache of ``capacity`` tokens: after a request it keeps the object
    with the priority it is given (drops it on ``None``), then evicts the lowest priorities (a heap
    with lazy deletion; ties: the older entry) until the contents fit. An object larger than the
    cache is never kept.

    The rule uses it for the shadow caches that score its ageing experts and for the warm-up
    replay that chooses its price scale (:meth:`BidPrice.replay`). It is the rule's machinery,
    not the evaluator's: :mod:`servopt.benchmarks.caching` keeps its own simulator, so that a
    reported miss cost shares no code with the rule under test, and tests check both against
    hand-worked sequences and against each other.
    """

    def __init__(self, size: list[float], capacity: float) -> None:
        self.size, self.capacity = size, capacity * (1 + 1e-12)  # as the evaluator's simulator
        self.cached: dict[int, int] = {}  # object -> sequence number of its live heap entry
        self.heap: list[tuple[float, int, int]] = []
        self.used, self.seq = 0.0, 0
        self.inflation = 0.0  # the priority of the last object evicted (GreedyDual's L)

    def put(self, o: int, priority: float | None, hit: bool) -> None:
        """After a request for ``o`` (``hit``: it was cached): keep it with ``priority``, or drop
        it on ``None``, then evict the lowest priorities (``o`` itself included) until it fits."""
        s = self.size[o]
        if priority is None or s > self.capacity:
            if hit:
                del self.cached[o]
                self.used -= s
            return
        if not hit:
            self.used += s
        self.seq += 1
        cached = self.cached
        cached[o] = self.seq
        heap = self.heap
        heapq.heappush(heap, (priority, self.seq, o))
        while self.used > self.capacity:
            p, q, v = heapq.heappop(heap)
            if cached.get(v) == q:
                del cached[v]
                self.used -= self.size[v]
                self.inflation = p
        if len(heap) > 4 * len(cached) + 4096:  # drop stale entries
            self.heap = [e for e in heap if cached.get(e[2]) == e[1]]
            heapq.heapify(self.heap)

    def rerank(self, priority: Callable[[int], float]) -> None:
        """Re-rank every cached object by ``priority(o)`` (each keeps its place among ties)."""
        self.heap = [(priority(v), q, v) for v, q in self.cached.items()]
        heapq.heapify(self.heap)


EXPERTS = (0.0, 50.0)  # ageing of the shipped rule, in cache-fulls: pure recency and slow ageing
# most requests in the bid-price rule's warm-up and in each sliding window: above the largest
# window of the benchmark (0.2 x 121,877 Mooncake blocks = 24,375), so no committed case
# reaches it; on longer traces the rule re-solves a bounded LP every WINDOW_CAP requests
WINDOW_CAP = 30_000
NEVER = 2**62  # a request number no stream reaches: the price is not learned again


def _numbers(name: str, values: Any, ok: Any, rule: str) -> bool:
    """``values`` checked as a sequence (tuple, list or 1-d array) of numbers each passing
    ``ok`` (:func:`servopt.core.checks.number`), refused by ``name`` otherwise; whether it has
    any."""
    if isinstance(values, str | bytes) or not isinstance(values, tuple | list | np.ndarray) \
            or np.ndim(values) != 1:
        raise InvalidInstanceError(f"{name} must be a sequence of {rule}, got {values!r}")
    for value in values:
        number(name, value, ok, f"a sequence of {rule}")
    return len(values) > 0


class BidPrice(BasePolicy):
    """Keep o while c_o x reuse_rate_o / s_o exceeds the price of a token-request-step.

    Value (eviction order): the expected miss cost saved per token and per request-step,
    ``c_o / s_o x rate_o``, with ``rate_o(t) = sum_j exp(-(t - t_j) / tau) / tau`` over the
    object's past requests ``t_j``: a request count with exponential ageing (LRFU-style).
    The heap priority is in request-steps, ``p_o = tau x (log(c_o / s_o / d_ref) +
    log sum_j exp(t_j / tau))`` (``d_ref`` the geometric mean of c / s): the step at which the
    object's value falls to the reference level. For one ``tau`` this is the order of the value
    (all rates decay at the same speed, so it is fixed between requests); as ``tau -> 0`` it is
    the last request time, LRU. Being in steps, priorities set under different ``tau`` compare.

    ``tau = tau_objects x C / mean size`` (cache-fulls of requests). ``experts`` (the shipped
    rule: ``EXPERTS`` = 0 and 50 cache-fulls) makes the ageing adapt online: a shadow cache per
    expert replays the same requests with that expert's priorities, each expert's miss cost is
    discounted with a horizon of ``horizon`` cache-fulls of requests, and the cache follows the
    expert with the lowest discounted cost (ties keep the current one; the slowest ageing
    starts): on a switch the whole cache is re-ranked by that expert's priorities (``rerank``;
    without it, entries ranked under slow ageing sit far in the future and pin the cache).
    Recency wins when popularity drifts, slow ageing when it is stable. Without ``experts`` the
    ageing is fixed at ``tau_objects``. ``greedy_dual`` adds GreedyDual-Size-Frequency's order as
    one more expert, with its own shadow cache: ``H_o = L + f_o c_o / s_o``, ``L`` the priority
    of that shadow's last eviction before the request and ``f_o`` the requests since ``o`` entered
    it; while it leads, the cache ranks by these ``H``. Off by default: on the issue's grid it
    adds 0.8 points of LRU's gap closed on average (Mooncake >= 25% in 5 of 12 settings, 4
    without it), but held out it is mixed: -0.2 points on the Mooncake trace's first half, +1.7
    on its second, -0.2 on another multimodal seed (``benchmarks/results/caching_greedy_dual.md``).
    The defaults (experts 0 and 50, horizon 3 among 3, 10, 30) were chosen on generator seed 1
    and on the first half of the Mooncake trace, not on the reported instances.

    Admission (where the price acts): after a request the object is kept only if
    ``c_o / s_o x rate_o >= price_scale x price``, the rate aged at the slowest expert's ``tau``.

    Live use (outside the simulator): ``start`` needs only the catalogue (an instance with no
    requests: sizes, miss costs, capacity); then call ``touch(t, o, hit)`` once per request with
    ``t`` = 0, 1, 2, ... The price is learned from the rule's own log of the requests it has been
    shown, never from the instance's request arrays, so give ``warmup`` and ``refresh`` in
    requests (a share sizes them for the ``n`` requests of the instance given to ``start``: a
    longer stream is refused at request ``n``, on a catalogue at the first). A live-driven rule
    makes the evaluator's decisions on the same stream (``tests/test_caching_live.py``).

    price : miss cost per token-step. With ``warmup`` > 0 it is learned online: after the
        warm-up (``warmup`` requests if a whole number >= 1, or that share of the instance's
        requests if < 1) the LP is solved on the requests seen so far and the price is the mean of
        its ``cache_capacity`` prices over that window (per-gap prices are degenerate; their mean
        is the average price of a token-step); ``price_scale`` is then chosen from ``scales``
        (0 = no admission control) by replaying the warm-up. With ``refresh`` = W (the same:
        requests, or a share of them if < 1, raised to at least 100 requests: ``max(int(W x n),
        100)``), the LP is re-solved every W requests on the last W
        requests: a sliding-window, time-varying price (without a warm-up the first solve is at
        request W, and the scale is not tuned). :meth:`set_price` and
        :meth:`update_from_solution` set the price from outside, keeping the ageing state.
        While ``price_scale`` is 0 (chosen on the warm-up, or given) no window LP is solved: the
        price could change no decision.
    window_cap : at most this many requests (``WINDOW_CAP`` by default; None: no cap) in the
        warm-up and in a window: a share's warm-up ends at request ``min(warmup x n,
        window_cap)`` and it is refreshed every ``min(W, window_cap)`` requests, so on a long trace
        the rule re-solves a bounded LP at a fixed interval and its time per request stays constant
        (uncapped, the windows grow with n and so does each LP: time superlinear in n,
        ``benchmarks/results/caching_window_cap.md``). A warm-up or refresh given in requests
        above the cap is refused (raise the cap, or pass None).
    """

    name = "bid_price"

    def __init__(self, *, price: float = 0.0, price_scale: float = 1.0, tau_objects: float = 50.0,
                 warmup: int | float = 0.0, refresh: int | float | None = None, tune: bool = True,
                 priced: bool = True, scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0),
                 experts: tuple[float, ...] | None = None, horizon: float = 3.0,
                 window_cap: int | None = WINDOW_CAP, greedy_dual: bool = False) -> None:
        number("tau_objects", tau_objects, lambda v: v > 0, "a number of objects > 0")
        if experts is not None and (not _numbers("experts", experts, lambda v: 0 <= v < math.inf,
                                                 "ageing times >= 0 (cache-fulls)")
                                    or not max(experts) > 0):
            raise InvalidInstanceError(f"experts must be ageing times >= 0 (cache-fulls) with "
                                       f"one > 0, got {experts}")
        number("horizon", horizon, lambda v: 0 < v < math.inf, "a finite number of cache-fulls > 0")
        for name, value in (("price", price), ("price_scale", price_scale)):
            number(name, value, lambda v: 0 <= v < math.inf, "a finite number >= 0")
        _numbers("scales", scales, lambda v: 0 <= v < math.inf, "finite price scales >= 0")
        if not len(scales):
            raise InvalidInstanceError("scales must list at least one price scale, got none")
        for name, value in (("tune", tune), ("priced", priced), ("greedy_dual", greedy_dual)):
            flag(name, value)  # ("no" or -1 was taken as True)
        if window_cap is not None:
            number("window_cap", window_cap, lambda v: 1 <= v < math.inf and v == int(v),
                   "a whole number of requests >= 1, or None (no cap)")
        self.window_cap = None if window_cap is None else int(window_cap)
        for name, value in (("warmup", warmup), ("refresh", refresh)):
            if value is None and name == "refresh":
                continue
            number(name, value, lambda v: v == 0 or 0 < v < 1 or (1 <= v < math.inf and v == int(v)),
                   "0 (none), a share of the instance's requests in (0, 1), or a whole number of "
                   "requests >= 1")
            if value >= 1 and self.window_cap is not None and value > self.window_cap:
                raise InvalidInstanceError(
                    f"{name}={value:g} requests is above window_cap={self.window_cap}: raise "
                    f"window_cap, or pass window_cap=None")
        self.price, self.price_scale, self.tau_objects = float(price), price_scale, tau_objects
        self.warmup, self.refresh, self.tune, self.scales = warmup, refresh, tune, scales
        self.priced = priced
        self.experts, self.horizon = (tuple(experts) if experts else None), horizon
        self.greedy_dual = bool(greedy_dual)
        self.prices: list[tuple[int, float]] = []  # (request, price x scale) history
        # (request, expert: its tau_objects, or "gdsf") history
        self.switches: list[tuple[int, float | str]] = []

    @classmethod
    def from_solution(cls, solution: Any, **kw: Any) -> BidPrice:
        """The rule with a fixed price from a solved caching LP (``exact.solve(past, relax=True)``
        on past requests): the mean of its ``cache_capacity`` prices, miss cost per token-step
        (the price :meth:`_learn` takes from a warm-up window). Negative or non-finite prices are
        refused (the LP's are finite and >= 0). Other keywords as for the class, e.g.
        ``experts=EXPERTS``; to refresh the price later without losing the ageing state, use
        :meth:`update_from_solution` on the running rule, not a new rule.

        ``price_scale`` defaults to 1, the price at face value, and at face value the price hurt
        in the committed results: ``bid_price_window`` (scale 1 on each sliding window) costs up
        to 33 points of LRU's gap closed against the rule without a price, while the warm-up
        replay of ``bid_price`` chose scale 0 (price off) in 20 of 21 settings and helped only
        where it kept the price (Mooncake, position cost, 1% cache: +12 points)
        (``benchmarks/results/README.md``, ``caching_price_scale.md``). So choose the scale on
        past requests before deploying: replay them under each candidate, e.g.
        ``min((BidPrice(price=p, price_scale=s, tune=False, priced=False,
        experts=EXPERTS).replay(past), s) for s in (0, 0.5, 1, 2, 4))``, and keep the cheapest
        (ties: the smaller), which is what ``bid_price`` does on its warm-up; or let the rule do
        it (``BidPrice(warmup=N, refresh=W, experts=EXPERTS)``, N and W in requests).
        """
        return cls(price=cls._solution_price(solution), **kw)

    @staticmethod
    def _solution_price(solution: Any) -> float:
        """The mean ``cache_capacity`` price of a solved caching LP, checked."""
        decision = getattr(solution, "decision", "")
        prices = getattr(solution, "prices", None)
        if decision in ("", "caching") and getattr(solution, "relaxed", True) is False:
            raise InvalidInstanceError(
                "BidPrice.from_solution needs the LP's prices: solve with relax=True (with every "
                "keep fixed at its integer value, the caching IP's prices are all zero)")
        if decision not in ("", "caching") or not isinstance(prices, dict) \
                or "cache_capacity" not in prices:
            raise InvalidInstanceError(
                f"BidPrice.from_solution needs a solved caching LP (its cache_capacity prices); "
                f"got a {decision or type(solution).__name__} solution")
        if getattr(solution, "status", "optimal") != "optimal":
            raise InvalidInstanceError(
                f"the caching LP was not solved to optimality (status {solution.status}): its "
                f"prices are not the LP's duals")
        price = prices["cache_capacity"].to_numpy(dtype=float)
        bad = ~np.isfinite(price) | (price < 0)
        if bad.any():
            k = int(np.argmax(bad))
            raise InvalidInstanceError(
                f"cache_capacity price of gap {prices['cache_capacity'].index[k]} is {float(price[k])!r}: "
                f"the caching LP's prices are finite and >= 0 (miss cost per token-step); "
                f"{int(bad.sum())} of {len(price)} are not")
        return float(price.mean()) if len(price) else 0.0

    def set_price(self, price: float, *, scale: float | None = None) -> None:
        """Set the price (miss cost per token-step; and ``price_scale`` if given) from outside,
        from the next request on, keeping the ageing weights, the shadow caches and the expert
        scores (a new rule would start them over). A rule with ``warmup`` or ``refresh`` still
        replaces it when its own window is due."""
        price = number("price", price, lambda v: 0 <= v < math.inf,
                       "a finite number >= 0 (miss cost per token-step)")
        if scale is not None:
            self.price_scale = number("price_scale", scale, lambda v: 0 <= v < math.inf,
                                      "a finite number >= 0")
        self.price = price
        self._set_threshold()
        self.prices.append((getattr(self, "t", -1) + 1, self.price * self.price_scale))

    def update_from_solution(self, solution: Any, *, scale: float | None = None) -> None:
        """:meth:`set_price` with the mean ``cache_capacity`` price of a solved caching LP (checked
        as in :meth:`from_solution`), e.g. one solved on the requests of the last window."""
        self.set_price(self._solution_price(solution), scale=scale)

    # -- set-up -------------------------------------------------------------------------------
    def start(self, instance: Instance) -> None:
        super().start(instance)
        # the catalogue only: the rule learns from the requests touch() shows it, not from these
        self.catalogue = request_window(instance, 0, 0)
        self.objects = instance.objects
        n = instance.requests
        density = instance.miss_cost / instance.size
        positive = density[density > 0]
        with np.errstate(divide="ignore"):
            self.log_density = np.log(density).tolist()
            reference = float(np.log(positive).mean()) if len(positive) else 0.0
            self.log_relative = (np.log(density) - reference).tolist()
        # a share sizes the warm-up and windows for this instance's n requests only: a stream
        # longer than n (a live cache started on its catalogue: n = 0) is refused at request n
        self.shares = [(name, value) for name, value in (("warmup", self.warmup),
                                                        ("refresh", self.refresh))
                       if value is not None and 0 < value < 1]
        self.share_limit = n if self.shares else NEVER
        warmup = self.warmup
        self.warm_end = (int(warmup * n) if warmup < 1 else int(warmup)) if warmup > 0 else -1
        window = self.refresh
        if window is not None and 0 < window < 1:
            window = max(int(window * n), 100)
        self.window = int(window) if window else 0  # requests per refresh (0: never refreshed)
        if self.window_cap is not None:
            self.warm_end = min(self.warm_end, self.window_cap)
            self.window = min(self.window, self.window_cap)
        # the request at which the price is next learned (the warm-up's end, else the first window)
        self.next_learn = min(self.warm_end if self.warm_end >= 0 else self.window or NEVER,
                              self.share_limit)
        self.learned = False
        # the requests since the last solve (object ids; request log_start, log_start + 1, ...)
        self.log: list[int] = []
        self.log_start = 0
        self.logging = self.priced and self.next_learn < NEVER
        self.t = -1  # the last request touched
        self.prices = [(0, self.price * self.price_scale)]
        self._set_experts(self.experts or (self.tau_objects,))
        self._set_threshold()

    def _set_experts(self, experts: tuple[float, ...]) -> None:
        """Ageing times in steps, a log weight list per expert, shadow caches when several."""
        objects = self.catalogue.objects
        fulls = self.catalogue.capacity / float(self.catalogue.size.mean()) if objects else 1.0
        self.expert_tau = [max(e * fulls, 1.0) if e > 0 else 0.0 for e in experts]
        self.slow = int(np.argmax(self.expert_tau))  # the admission rate's ageing
        self.tau_objects = experts[self.slow]
        self.tau = self.expert_tau[self.slow]
        self.log_tau = math.log(self.tau)
        # log sum_j exp(t_j / tau) per object and expert (none for a pure-recency expert)
        self.weights = [[-math.inf] * objects if tau > 0 else [] for tau in self.expert_tau]
        self.log_weight = self.weights[self.slow]
        self.best = self.slow
        self.last = [0] * objects
        self.rerank = False
        self.switches = [(0, experts[self.slow])]
        self.expert_names: list[float | str] = [*experts, *(["gdsf"] if self.greedy_dual else [])]
        several = len(self.expert_names) > 1
        self.shadows = [Cache(self.size, self.catalogue.capacity) for _ in self.expert_names] \
            if several else []
        self.score = [0.0] * len(self.expert_names)
        self.gd_freq = [0] * objects if self.greedy_dual else []  # GDSF's f and H per object
        self.gd_priority = [0.0] * objects if self.greedy_dual else []
        self.decay = math.exp(-1.0 / max(self.horizon * fulls, 1.0))

    def _set_threshold(self) -> None:
        threshold = self.price * self.price_scale
        self.log_threshold = math.log(threshold) if threshold > 0 else -math.inf

    # -- per request --------------------------------------------------------------------------
    def touch(self, t: int, o: int, hit: bool) -> float | None:
        # _observe, inlined: the call cost 3-7% of touch (benchmarks/caching_touch_time.py)
        if not 0 <= o < self.objects:
            self._refuse(t, o)
        if t >= self.next_learn:
            self._learn(t)
        if self.logging:
            self.log.append(o)
        self.t = t
        self.last[o] = t
        priorities = []
        for k, tau in enumerate(self.expert_tau):
            if tau > 0:
                now = t / tau
                weights = self.weights[k]
                weight = weights[o]
                weight = now + math.log1p(math.exp(weight - now)) if weight > -math.inf else now
                weights[o] = weight
                priorities.append(tau * (self.log_relative[o] + weight))
            else:
                priorities.append(float(t))
        if self.greedy_dual:  # H = L + f c / s in the expert's own shadow
            shadow = self.shadows[-1]
            f = self.gd_freq[o] + 1 if o in shadow.cached else 1
            self.gd_freq[o] = f
            self.gd_priority[o] = h = shadow.inflation + f * self.density[o]
            priorities.append(h)
        if self.shadows:
            score, decay, c = self.score, self.decay, self.cost[o]
            for k, shadow in enumerate(self.shadows):
                score[k] *= decay
                shadow_hit = o in shadow.cached
                shadow.put(o, priorities[k], shadow_hit)
                if not shadow_hit:
                    score[k] += c
            best = min(range(len(score)), key=score.__getitem__)
            if score[best] < score[self.best]:  # ties keep the current expert
                self.best = best
                self.rerank = True  # the cache re-ranks its contents by priority()
                self.switches.append((t, self.expert_names[best]))
        # log(c/s x rate) at the slow ageing = log(c/s) + log weight - t / tau - log(tau)
        if self.log_threshold > -math.inf and (self.log_density[o] + self.log_weight[o] - t / self.tau
                                               - self.log_tau < self.log_threshold):
            return None
        return priorities[self.best]

    def _observe(self, t: int, o: int) -> None:
        """The price's share of ``touch`` (a subclass that overrides ``touch`` calls it first):
        refuse an object outside the catalogue, learn the price when due, log the request."""
        if not 0 <= o < self.objects:
            self._refuse(t, o)
        if t >= self.next_learn:
            self._learn(t)
        if self.logging:
            self.log.append(o)
        self.t = t

    def _refuse(self, t: int, o: Any) -> None:
        raise InvalidInstanceError(
            f"{self.name}: request {t} asks for object {o!r}, outside the catalogue of "
            f"{self.objects} objects (ids 0..{self.objects - 1}) given to start()")

    def priority(self, o: int) -> float:
        """The current expert's priority of ``o`` (as at its last request)."""
        if self.best == len(self.expert_tau):  # the GreedyDual expert
            return self.gd_priority[o]
        tau = self.expert_tau[self.best]
        return tau * (self.log_relative[o] + self.weights[self.best][o]) if tau > 0 \
            else float(self.last[o])

    # -- learning the price from the past ---------------------------------------------------
    def _learn(self, t: int) -> None:
        if t >= self.share_limit:
            self._refuse_share(t)
        first = not self.learned and self.warm_end >= 0
        self.learned = True
        # while the scale is 0 the price changes no decision (the threshold is -inf), so no LP
        # is solved for it (R50 F3: three of four window LPs a run, a third of its time); a
        # scale set later by set_price comes with its price
        if self.priced and (self.price_scale > 0 or (first and self.tune)):
            lo = 0 if first or not self.window else max(0, t - self.window)
            window = self._past(lo, t)
            lp = solve_lp(window)
            # the per-gap prices are degenerate (HiGHS may put a whole interval's price on one
            # gap); their mean over the window is the average price of a token-step
            self.price = float(lp.price.mean()) if len(lp.price) else 0.0
            if first and self.tune:
                self._tune(window)
        self._set_threshold()
        self.prices.append((t, self.price * self.price_scale))
        if self.window:  # the next window is requests t..t + W - 1: the log so far is done with
            self.next_learn = min(t + self.window, self.share_limit)
        else:
            self.next_learn, self.logging = self.share_limit, False
        self.log, self.log_start = [], t

    def _refuse_share(self, t: int) -> None:
        n = self.share_limit
        name = self.shares[0][0]
        given = " and ".join(f"{k}={v:g}" for k, v in self.shares)
        size = ("the instance given to start() has no requests (a live cache started on its "
                "catalogue)" if n == 0 else
                f"it sizes the warm-up and windows for the {n:,} requests of the instance given "
                f"to start(), and touch() has been given request {t}")
        example = 5000 if n == 0 else (self.warm_end if name == "warmup" else self.window)
        raise InvalidInstanceError(
            f"{self.name}: {given} is a share of the instance's requests, but {size}: for a live "
            f"stream give {name} in requests, a whole number >= 1 (e.g. {name}={example})")

    def _past(self, lo: int, t: int) -> Instance:
        """Requests ``lo..t-1`` from the rule's log, as an instance over the catalogue (request
        numbers stand for the times, which the LP does not read)."""
        log, start = self.log, self.log_start
        if len(log) != t - start or lo < start:
            raise InvalidInstanceError(
                f"{self.name} learns its price from the requests shown to touch(), numbered 0, 1, "
                f"2, ... in order (a subclass that overrides touch() calls _observe()): at request "
                f"{t} it has seen {len(log)} requests since request {start}, not {t - start}")
        catalogue = self.catalogue
        return Instance(time=np.arange(lo, t, dtype=float),
                        object_id=np.array(log[lo - start:], dtype=np.int64),
                        size=catalogue.size, miss_cost=catalogue.miss_cost,
                        capacity=catalogue.capacity, kind=catalogue.kind,
                        kind_names=catalogue.kind_names, name=catalogue.name)

    def _tune(self, window: Instance) -> None:
        """Choose ``price_scale`` by replaying the past window (ties: the smaller scale)."""

        def replay(scale: float) -> float:
            trial = BidPrice(price=self.price, price_scale=scale, tau_objects=self.tau_objects,
                             tune=False, priced=False, experts=self.experts, horizon=self.horizon,
                             greedy_dual=self.greedy_dual)
            return trial.replay(window)

        scales = self.scales if self.price > 0 else (0.0,)
        _, self.price_scale = min((replay(s), s) for s in scales)

    def replay(self, instance: Instance) -> float:
        """Miss cost of this rule serving ``instance`` alone in a :class:`Cache` of its own (the
        warm-up replay; reported costs come from the evaluator's simulator instead)."""
        self.start(instance)
        cache = Cache(self.size, instance.capacity)
        cached, cost, touch = cache.cached, self.cost, self.touch
        miss_cost = 0.0
        for t, o in enumerate(instance.object_id.tolist()):
            hit = o in cached
            if not hit:
                miss_cost += cost[o]
            priority = touch(t, o, hit)
            if self.rerank:  # the ageing expert changed: re-rank by its priorities
                self.rerank = False
                cache.rerank(self.priority)
            cache.put(o, priority, hit)
        return miss_cost


def request_window(instance: Instance, lo: int, hi: int) -> Instance:
    """The requests ``lo..hi-1`` as an instance over the same objects."""
    return Instance(time=instance.time[lo:hi], object_id=instance.object_id[lo:hi],
                    size=instance.size, miss_cost=instance.miss_cost,
                    capacity=instance.capacity, kind=instance.kind,
                    kind_names=instance.kind_names, name=instance.name)  # no popularity: past only


class CostFreqSize(BidPrice):
    """The bid-price rule without a price: the same value order (ageing cost x frequency /
    size), every object admitted, no LP."""

    name = "cost_freq_size"

    def __init__(self, **kw: Any) -> None:
        super().__init__(price=0.0, priced=False, **kw)


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
    "cost_freq_size": _factory(CostFreqSize, experts=EXPERTS),
    "bid_price_static": _factory(BidPrice, warmup=0.2, experts=EXPERTS),
    "bid_price": _factory(BidPrice, warmup=0.2, refresh=0.2, experts=EXPERTS),
    "bid_price_window": _factory(BidPrice, warmup=0.2, refresh=0.2, tune=False, price_scale=1.0,
                                 experts=EXPERTS),
}


def make_policy(method: Any) -> Any:
    """A fresh policy object from a POLICIES name, a factory or a policy object."""
    if isinstance(method, str):
        policies = layer_module("caching", "solvers").POLICIES  # a replaced layer's (plug-in)
        if method not in policies:
            raise InvalidInstanceError(f"unknown caching method {method!r}; known: "
                                       f"{', '.join(policies)}")
        return policies[method]()
    if isinstance(method, type):  # a POLICIES class: a fresh object
        return method()
    if hasattr(method, "touch") or hasattr(method, "start"):
        missing = [m for m in ("start", "touch") if not callable(getattr(method, m, None))]
        if missing:
            raise InvalidInstanceError(
                f"not a caching policy: {method!r} has no {' or '.join(missing)} method (a policy "
                "needs start(instance) and touch(t, o, hit))")
        return method
    if callable(method):
        return method()
    raise InvalidInstanceError(f"not a caching policy: {method!r}")
