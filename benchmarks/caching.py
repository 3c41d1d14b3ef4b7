"""The caching evaluator: an online cache simulator with a capacity in tokens.

:func:`simulate` replays the requests through a policy (see the protocol in
:mod:`servopt.solvers.caching`). The simulator alone keeps the cache contents and the token
count: after each request it stores the object with the priority the policy returns (or drops
it on ``None``), then evicts the lowest priorities (a heap with lazy deletion) until the contents
fit; among equal priorities the entry pushed first goes first (the heap orders by priority, then
by push order), and this tie-break decides costs on small instances. An object larger than the
cache is never stored and every request for it is a miss.
When the policy sets its ``rerank`` flag (in ``start`` or in any ``touch``) the cached objects
are re-ranked by its ``priority(o)``; every answer of ``touch`` and ``priority`` is checked (a
number, not NaN), and a flag set by a policy without ``priority`` is refused. A policy object
without ``start`` or ``touch`` is refused before the replay, and one whose method writes into the
instance's (read-only) arrays gets an ``InvalidInstanceError`` naming the method, the request and
the line that wrote (the replay runs inside one ``try``: nothing is added per request).

The cost is the total miss cost (the sum of the instance's ``miss_cost`` over the misses; not a
metric). Metrics (each with its unit in :func:`evaluate`): ``hit_ratio`` (hits / requests),
``token_hit_ratio`` (tokens served from cache / tokens requested; ``byte_hit_ratio`` is the same
figure under the usual name), ``requests_per_s`` (replay speed with the policy).
The bound is the offline LP (:mod:`servopt.models.caching`), a lower bound on the miss cost of
every policy; the ``lp_schedule`` method is its rounded integral schedule, an achievable upper
bound, so a table brackets the optimum.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
import numbers
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from servopt.benchmarks.harness import Bound, OptionError, Outcome, checked_keywords, refusing, written_at
from servopt.core import InvalidInstanceError
from servopt.core.checks import flag
from servopt.instances.caching import Instance
from servopt.solvers import caching as methods
from servopt.solvers.exact import seconds

SENSE = "min"
COST = "total miss cost (the instance's miss-cost unit, e.g. encoder ms)"
FORESIGHT = ("belady", "belady_size", "static", "lp_schedule")  # see the future or true popularity
DEFAULT_METHODS = ("lru", "fifo", "lfu", "gds", "gdsf", "lec", "belady", "belady_size",
                   "static", "cost_freq_size", "bid_price_static", "bid_price", "bid_price_window",
                   "lp_schedule")


@dataclasses.dataclass
class SimResult:
    """Counts of one replay. ``occupancy`` (tokens after each request) only with ``record``."""

    miss_cost: float
    hits: int
    requests: int
    hit_tokens: float
    requested_tokens: float
    wall_s: float
    max_occupancy: float
    hit: np.ndarray | None = None
    occupancy: np.ndarray | None = None
    contents: list[int] | None = None

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def token_hit_ratio(self) -> float:
        """Tokens served from the cache / tokens requested (sizes are in tokens)."""
        return self.hit_tokens / self.requested_tokens if self.requested_tokens else 0.0

    @property
    def byte_hit_ratio(self) -> float:
        """The same figure as :attr:`token_hit_ratio`, under the usual name of caches whose
        sizes are bytes (sizes here are tokens)."""
        return self.token_hit_ratio


def _as_priority(priority: Any, o: int, t: int, rule: str = "touch()") -> float:
    """A ``touch()`` (or ``priority()``) answer other than a float as a number (a string would
    sort as text, an array would fail deep in the heap)."""
    if isinstance(priority, bool | np.bool_) or not isinstance(priority, numbers.Real | np.number) \
            or isinstance(priority, np.complexfloating):
        allowed, where = ("a number or None", f"for object {o} at request {t}") \
            if rule == "touch()" else ("a number", f"for cached object {o} at the re-rank after "
                                                   f"request {t}")
        raise InvalidInstanceError(
            f"the policy's {rule} must return {allowed}, got {type(priority).__name__} "
            f"{priority!r:.40} {where}")
    return float(priority)


def _reranked(cached: dict[int, int], priority: Any, t: int) -> list[tuple[float, int, int]]:
    """A fresh heap of the cached objects ranked by the policy's ``priority(o)``, each answer
    checked as ``touch()``'s are (a NaN would break the heap's order, a string would not sort)."""
    heap = []
    for v, q in cached.items():
        p = priority(v)
        if type(p) is not float and type(p) is not int:
            p = _as_priority(p, v, t, "priority()")
        if p != p:
            raise InvalidInstanceError(f"the policy's priority() returned NaN for cached object "
                                       f"{v} at the re-rank after request {t}")
        heap.append((p, q, v))
    heapq.heapify(heap)
    return heap


PROTOCOL = ("a caching policy needs start(instance) and touch(t, o, hit) -> float | None; "
            "optionally evicted(o, priority), bypass = False, and priority(o) -> float with a "
            "rerank flag (the protocol in servopt.solvers.caching)")


def _check_protocol(policy: Any) -> None:
    """Refuse an object without the protocol's methods before the replay, not deep inside it."""
    missing = [f"{m}()" for m in ("start", "touch") if not callable(getattr(policy, m, None))]
    evicted = getattr(policy, "evicted", None)
    if evicted is not None and not callable(evicted):
        missing.append("evicted() (set, but not a method)")
    if missing:
        name = getattr(policy, "name", type(policy).__name__)
        raise InvalidInstanceError(f"the policy {name!r} lacks {', '.join(missing)}: {PROTOCOL}")


def _read_only_write(exc: ValueError, policy: Any, instance: Instance) -> InvalidInstanceError:
    """The error for a policy that wrote into one of the instance's (read-only) arrays: which
    method, at which request, the line of the policy's code, and what to do instead."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    method, t = "a method", -1
    for i, (frame, _) in enumerate(frames):
        if frame.f_code is _replay.__code__:
            t = frame.f_locals.get("t", -1)
        if frame.f_code.co_filename == __file__ and i + 1 < len(frames):
            callee = frames[i + 1][0].f_code  # the policy's method the simulator called
            method = next((f"{m}()" for m in ("start", "touch", "evicted", "priority")
                           if _code(getattr(policy, m, None)) is callee), f"{callee.co_name}()")
    when = f" at request {t}" if t >= 0 and method != "start()" else ""
    arrays = [f.name for f in dataclasses.fields(instance)
              if isinstance(getattr(instance, f.name), np.ndarray)]
    line, named = written_at(exc, arrays)
    example = named[0] if len(named) == 1 else "size"
    return InvalidInstanceError(
        f"the policy's {method} wrote into a read-only array of the instance{when}{line}: the "
        f"instance's arrays ({', '.join(arrays)}) are the simulator's and read-only; copy one "
        f"first (np.array(instance.{example})) to change it")


def _code(method: Any) -> Any:
    """The code object of a (bound) Python method, None for anything else."""
    return getattr(getattr(method, "__func__", method), "__code__", None)


def simulate(instance: Instance, policy: Any, *, record: bool = False) -> SimResult:
    """Replay ``instance`` through ``policy``; return the realised miss cost and hit counts."""
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(f"simulate() needs a caching instance, got "
                                   f"{type(instance).__name__}")
    check_options(record=record)  # ("no" was taken as true)
    if not isinstance(policy, str | type) and not callable(policy):
        _check_protocol(policy)  # an object must be a policy itself (a callable is a factory)
    policy = methods.make_policy(policy)
    _check_protocol(policy)
    try:  # around the whole replay: no cost per request
        return _replay(instance, policy, record)
    except ValueError as exc:
        if isinstance(exc, InvalidInstanceError) or "read-only" not in str(exc):
            raise
        raise _read_only_write(exc, policy, instance) from exc


def _replay(instance: Instance, policy: Any, record: bool) -> SimResult:
    """:func:`simulate`'s replay of a checked policy."""
    start = time.perf_counter()
    policy.start(instance)
    size = instance.size.tolist()
    cost = instance.miss_cost.tolist()
    capacity = instance.capacity * (1 + 1e-12)  # relative: the same in any unit of size
    touch = policy.touch
    evicted = getattr(policy, "evicted", None)
    demand = not getattr(policy, "bypass", True)  # demand fetch: the requested object always enters
    # fresh priority of a cached object, when the policy sets its ``rerank`` flag (read at every
    # request, also when the flag first appears in touch; only for a policy with a priority()
    # method, so the rules without one pay nothing)
    rerank = getattr(policy, "priority", None)
    if not callable(rerank):
        rerank = None
    heappush, heappop = heapq.heappush, heapq.heappop
    cached: dict[int, int] = {}  # object -> sequence number of its live heap entry
    heap: list[tuple[float, int, int]] = []
    used = 0.0
    peak = 0.0
    seq = 0
    hits = 0
    hit_tokens = 0.0
    miss_cost = 0.0
    ids = instance.object_id.tolist()
    hit_flags = np.zeros(len(ids), dtype=bool) if record else None
    occupancy = np.zeros(len(ids)) if record else None

    def evict_to(limit: float) -> None:
        """Evict the lowest priorities (skipping stale heap entries) until at most ``limit``
        tokens are cached, telling the policy of each eviction."""
        nonlocal used
        while used > limit:
            p, q, v = heappop(heap)
            if cached.get(v) != q:
                continue
            del cached[v]
            used -= size[v]
            if evicted is not None:
                evicted(v, p)

    for t, o in enumerate(ids):
        s = size[o]
        hit = o in cached
        if hit:
            hits += 1
            hit_tokens += s
            if record:
                hit_flags[t] = True
        else:
            miss_cost += cost[o]
            if demand and s <= capacity and used + s > capacity:
                evict_to(capacity - s)  # make room among the cached objects, then bring o in
        priority = touch(t, o, hit)
        if priority is not None and type(priority) is not float and type(priority) is not int:
            priority = _as_priority(priority, o, t)
        if priority is not None and priority != priority:  # NaN would break the heap's order
            raise InvalidInstanceError(f"the policy's touch() returned NaN as the priority of "
                                       f"object {o} at request {t}")
        if rerank is not None and getattr(policy, "rerank", False):  # its order changed
            policy.rerank = False
            heap = _reranked(cached, rerank, t)
        if priority is None or s > capacity:
            if hit:
                del cached[o]
                used -= s
        else:
            if not hit:
                used += s
            seq += 1
            cached[o] = seq
            heappush(heap, (priority, seq, o))
            if used > capacity:
                evict_to(capacity)
            if len(heap) > 4 * len(cached) + 4096:  # drop stale entries
                heap = [e for e in heap if cached.get(e[2]) == e[1]]
                heapq.heapify(heap)
        if used > peak:
            peak = used
        if record:
            occupancy[t] = used
    wall = time.perf_counter() - start
    flag = getattr(policy, "rerank", False)
    if rerank is None and flag and not callable(flag):  # a re-rank asked for, never done
        raise InvalidInstanceError(
            f"the policy {getattr(policy, 'name', type(policy).__name__)!r} set its rerank flag "
            "but has no priority(o) method to re-rank the cached objects by: define "
            "priority(o) -> float, or leave rerank unset")
    requested = float(instance.size[instance.object_id].sum())
    return SimResult(miss_cost=miss_cost, hits=hits, requests=len(ids), hit_tokens=hit_tokens,
                     requested_tokens=requested, wall_s=wall, max_occupancy=peak, hit=hit_flags,
                     occupancy=occupancy, contents=sorted(cached) if record else None)


def check_options(*, record: Any = False) -> None:
    """The ``check`` of :func:`evaluate` (the replay's one option, ``record``, True or False; a
    flag is also refused by :func:`~servopt.benchmarks.harness.checked_keywords`)."""
    with refusing("record"):
        flag("record", record)


def check_bound_options(*, method: Any = "highs_matrix", time_limit: Any = None,
                        algorithm: Any = "dual_simplex", reduce: Any = True) -> None:
    """The ``check`` of :func:`bound`, before the LP is built: ``method`` one of
    ``methods.LP_METHODS``, ``time_limit`` positive seconds, infinity or None (as
    :func:`servopt.solvers.exact.seconds` reads it), ``algorithm`` one of ``methods.LP_ALGORITHMS``
    whatever the method (the other methods ignored an unknown one; ``highs_matrix`` refused it
    only after building the flow matrix), ``reduce`` True or False."""
    if not (isinstance(method, str) and method in methods.LP_METHODS):
        raise OptionError(f"unknown LP method {method!r}; choose one of {methods.LP_METHODS}",
                          option="method")
    with refusing("time_limit"):
        seconds(time_limit)
    with refusing("algorithm"):
        methods.check_algorithm(algorithm)
    with refusing("reduce"):
        flag("reduce", reduce)


@checked_keywords(simulate, check=check_options)
def evaluate(instance: Instance, method: Any, **kw: Any) -> Outcome:
    """Simulate one method (a ``POLICIES`` name, a factory or a policy object).

    cost : total miss cost (the instance's miss-cost unit). ``wall_s`` is the whole replay: a
    cache rule decides at every request, inside the simulation, so its time is not separated
    from the cache's bookkeeping (``requests_per_s``). ``record=True`` changes nothing in the
    Outcome (its arrays are not metrics): ``simulate(instance, method, record=True)`` returns
    them in its :class:`SimResult` (``hit`` per request, ``occupancy`` in tokens after each
    request, ``contents``: the objects cached at the end).

    Metrics (``Outcome.metrics``; name, unit, meaning):

    - ``hit_ratio`` (fraction): requests served from the cache / requests.
    - ``token_hit_ratio`` (fraction): tokens served from the cache / tokens requested.
    - ``byte_hit_ratio`` (fraction): the same figure as ``token_hit_ratio``, under the usual name
      of caches sized in bytes (sizes here are tokens).
    - ``requests_per_s`` (requests per wall-clock second): replay speed with the policy.
    """
    result = simulate(instance, method, **kw)
    status = "ok" if result.max_occupancy <= instance.capacity * (1 + 1e-9) else \
        "over capacity"
    return Outcome(cost=result.miss_cost, wall_s=result.wall_s, status=status,
                   metrics={"hit_ratio": result.hit_ratio,
                            "token_hit_ratio": result.token_hit_ratio,
                            "byte_hit_ratio": result.byte_hit_ratio,
                            "requests_per_s": result.requests / max(result.wall_s, 1e-9)})


@checked_keywords(methods.solve_lp, check=check_bound_options)
def bound(instance: Instance, *, method: str = "highs_matrix", **kw: Any) -> Bound:
    """The offline LP value: a lower bound on every policy's miss cost. An LP stopped by its
    ``time_limit`` proves nothing: no bound (NaN, kind ``none``, status ``time_limit``)."""
    start = time.perf_counter()
    try:
        lp = methods.solve_lp(instance, method=method, **kw)
    except TimeoutError:
        return Bound(value=math.nan, kind="none", wall_s=time.perf_counter() - start,
                     status="time_limit")
    return Bound(value=lp.value, kind="lp_relaxation", wall_s=lp.wall_s)


def closed_gap(cost: float, lru_cost: float, lp_bound: float) -> float:
    """Share of LRU's gap to the bound that a method closes (1 = reaches the bound)."""
    gap = lru_cost - lp_bound
    return float((lru_cost - cost) / gap) if gap > 0 else float("nan")


def setting_label(params: dict) -> str:
    """The workload of a benchmark setting as the result tables name it: ``multimodal skew=S``
    or ``mooncake cost=C``."""
    if params["workload"] == "multimodal":
        return f"multimodal skew={params['skew']}"
    return f"mooncake cost={params.get('cost', 'unit')}"


def committed_bounds(path: str | Path = "benchmarks/results/caching_full.csv") -> list[tuple[dict, float]]:
    """``(params, LP bound)`` of every setting of the committed full-case results, in their order
    (scripts that compare extra methods reuse the bound instead of solving the LP again)."""
    import pandas as pd

    full = pd.read_csv(path)
    bounds = full.drop_duplicates("params").set_index("params")["bound"]
    return [(json.loads(params), float(value)) for params, value in bounds.items()]


def make_instance(*, seed: int = 0, workload: str = "multimodal", **params: Any) -> Instance:
    """Benchmark instances: ``workload="multimodal"`` (the generator) or ``"mooncake"`` (the
    shared Mooncake trace; ``seed`` is unused there, the trace is fixed)."""
    from servopt.instances import caching as instances

    if workload == "multimodal":
        return instances.generate(seed=seed, **params)
    if workload == "mooncake":
        from servopt.instances.traces import shared_trace

        path = shared_trace("mooncake_synthetic.jsonl")
        if path is None:
            raise InvalidInstanceError("mooncake_synthetic.jsonl not found in $SERVOPT_TRACES or "
                                       "../shared/traces: set SERVOPT_TRACES to the folder "
                                       "holding it")
        return instances.from_trace(path, **params)
    raise InvalidInstanceError(f"unknown workload {workload!r}: 'multimodal' or 'mooncake'")
