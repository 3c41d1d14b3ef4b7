"""Decode routers: deployed baselines, the bid-price router and the per-step IP.

Policy protocol
---------------
A router subclasses :class:`Router` (which supplies ``reset``, ``on_step`` and ``route``; a simple
rule writes only ``choose(view, i) -> worker``) and has

- ``reset(instance, seed)``: called once before a simulation (clears its state). The simulator
  passes a ``RouterInstance`` (:mod:`servopt.benchmarks.decode_routing`; typed by the
  :class:`InstanceView` protocol): the fleet's constants and the read-only ``arrival``,
  ``prompt``, ``predicted`` and ``block_ids``; reading ``output``, ``output_tokens`` or
  ``requests`` is refused, and the instance's methods (``summary`` ...) are not there. Of the
  instance, the ``POLICIES`` routers read only ``workers``, ``ms_per_kv_token`` [ms of step time
  per KV token on the most loaded worker] and whether ``predicted`` is None (whether the stream
  carries predicted output lengths; the values are read from ``view``), never the request frame,
  so a live system can start one without a stream:
  ``router.reset(types.SimpleNamespace(workers=8, ms_per_kv_token=c1, predicted=None))``
  (``predicted=True`` when requests come with predictions; this namespace holds only what those
  routers read, not all of :class:`InstanceView`: a router of your own that reads more needs
  more); all else arrives through ``view``;
- ``on_step(view)``: called at the start of every decode step (may refresh prices);
- ``route(view, ids)``: route the requests ``ids`` that arrived by this step, in arrival order,
  by calling ``view.assign(i, worker)`` exactly once for each, with whole-number ids and workers
  (assignment is sticky: the simulator refuses a second assignment).

``view`` is a view of the simulator's fleet state (``RouterView``), read-only except for ``assign``:
none of its attributes can be set, added or deleted (a router keeps its own state on itself), its
arrays are read-only copies made for each call (editing one raises; one kept from an earlier call
stays as it was), except ``worker_of``, which stays up to date as requests are routed, and it holds
no queues: ``workers``, ``slots``, ``kv_capacity``, ``step`` (decode step number), ``now`` (s; on a
step-clock stream, ``arrival_unit == "step"``, the step number), per-worker arrays ``running``,
``queued`` (requests), ``kv_running`` (KV tokens of running requests) and ``kv_queued`` (prompt
tokens of queued requests), the visible request data ``prompt`` and ``predicted`` (None when the
stream has no predictions), ``worker_of`` (each request's worker, -1 before it is routed), the
running set ``run_ids``, ``run_worker``, ``run_generated``, and ``completed_outputs()`` /
``completed_ids()`` (output lengths and ids of finished requests, observable once they finish). True
output lengths of unfinished requests are never shown (neither ``view`` nor the instance ``reset``
gets holds them). ``Router.route`` calls ``choose(view, i)`` per request, so a simple rule only
writes ``choose``; counts in ``view`` include the requests routed earlier in the same step.

Baselines (faithful to the deployed code they are named after)
--------------------------------------------------------------
- ``round_robin``: a counter from worker 0, +1 per request (SGLang ``round_robin_scheduler``).
- ``random``: uniform over workers (seeded).
- ``jsq``: join the shortest queue by request count, ``argmin`` (lowest index on ties) of the
  requests on each worker, running and waiting (SGLang router's ``TOTAL_REQUESTS`` load; its
  older ``shortest_queue_scheduler`` counted only the dispatch queue).
- ``least_kv``: fewest KV tokens committed (running KV + queued prompts), lowest index on ties
  (SGLang's ``TOTAL_TOKENS`` load breaks ties by fewer requests first: the two differ only when
  KV token counts tie exactly).
- ``p2c_kv``: power of two choices: two distinct workers uniformly at random, the one with fewer
  KV tokens (the first drawn on ties).
- ``least_outstanding``: vLLM's data-parallel load balancer (``DPLBAsyncMPClient``): score
  ``4 * waiting + running``, scanned from the client's start index (0), strict ``<`` so the first
  minimum in scan order wins; counts include requests routed since (here: exact counts).

Not deployed: ``least_kv_sorted``, least-KV placing each step's arrivals largest prompt first
(an ablation of the bid-price router's placement order).

The bid-price router (``bid_price``: each step's arrivals, largest first, each to the worker where
its discounted barrier cost over the next H steps on the forecast is least, ties to least-KV;
``bid_price_lp``: the
epoch LP's plan gates the workers, least-KV among them; ``bid_price_argmin``: the textbook argmin
of the request's LP-priced KV profile among the gated workers, refresh every 2 steps, kept for
comparison: its prices measured no help, zeroed they gave less barrier idle) and the per-step IP
(``epoch_ip``) are documented on their classes.
``POLICIES`` maps each name to a zero-argument factory returning a fresh router.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import special

from servopt.core import InfeasibleError, InvalidInstanceError, Solution
from servopt.core.checks import flag, number, whole_number
from servopt.core.registry import layer_module
from servopt.core.solution import normalise_dual, relative_gap
from servopt.models.decode_routing import Epoch, MatrixLP, epoch_matrices
from servopt.solvers.exact import (
    MIP_FEASIBILITY_MAX,
    TimeBudget,
    gap_option,
    highs_lp,
    integrality_tolerance,
    new_highs,
    recorded_check,
    repaired_incumbent,
    retry_tight,
    seconds,
)


class FleetView(Protocol):
    workers: int
    slots: int
    kv_capacity: int
    step: int
    now: float
    running: np.ndarray
    queued: np.ndarray
    kv_running: np.ndarray
    kv_queued: np.ndarray
    prompt: np.ndarray
    predicted: np.ndarray | None
    run_ids: np.ndarray
    run_worker: np.ndarray
    run_generated: np.ndarray
    worker_of: np.ndarray

    def assign(self, request: int, worker: int) -> None:
        """Route ``request`` (a whole-number id among those passed to ``route``) to ``worker``
        (0 .. workers - 1), exactly once: the assignment is sticky."""

    def completed_outputs(self) -> np.ndarray: ...

    def completed_ids(self) -> np.ndarray: ...


class InstanceView(Protocol):
    """What a router's ``reset`` is shown of the instance: the fleet's constants and the visible
    request data, read-only (the simulator passes a
    :class:`~servopt.benchmarks.decode_routing.RouterInstance`; not the true output lengths:
    ``output``, ``output_tokens`` and ``requests`` are refused, and the methods of
    :class:`servopt.instances.decode_routing.Instance`, ``summary`` and the rest, are not there)."""

    @property
    def workers(self) -> int: ...
    @property
    def slots(self) -> int: ...
    @property
    def kv_capacity(self) -> int: ...
    @property
    def step_ms(self) -> float: ...
    @property
    def ms_per_kv_token(self) -> float: ...
    @property
    def prefill_ms_per_token(self) -> float: ...
    @property
    def n_requests(self) -> int: ...
    @property
    def arrival(self) -> np.ndarray: ...
    @property
    def arrival_unit(self) -> str: ...
    @property
    def prompt(self) -> np.ndarray: ...
    @property
    def predicted(self) -> np.ndarray | None: ...
    @property
    def block_ids(self) -> Sequence[Sequence[int]] | None: ...
    @property
    def name(self) -> str: ...


MAX_STEPS = 10_000  # horizon and span (steps): forecasts hold workers x (horizon + span) numbers
MAX_WINDOW = 1_000_000  # BidPrice's arrival-rate window (steps): a ring of that many counts


def _whole(name: str, value: Any, high: int | None = None) -> int:
    """A router's option counted in steps: a whole number in 1..high, refused by name otherwise
    (R21: window=0 was a ZeroDivisionError, horizon=10**7 a MemoryError after 101 s, NaN "cannot
    convert float NaN to integer")."""
    if isinstance(value, np.bool_):  # (whole_number refuses Python's bools)
        raise InvalidInstanceError(f"{name} must be a whole number of steps >= 1, got {value!r}")
    return whole_number(f"{name} (steps)", value, low=1, high=high)


class Router:
    """Base router: ``route`` calls ``choose`` for each request in arrival order."""

    name = "router"

    def reset(self, instance: InstanceView, seed: int = 0) -> None:
        """Called once before a simulation: keep ``instance`` (the fleet's constants and the
        visible request data) and start a random generator from ``seed``."""
        self.rng = np.random.default_rng(seed)
        self.instance = instance

    def on_step(self, view: FleetView) -> None:
        """Called at the start of each decode step."""

    def route(self, view: FleetView, ids: np.ndarray) -> None:
        """Route the requests ``ids`` that arrived by this step, in arrival order: here
        ``view.assign(i, self.choose(view, i))`` for each."""
        for i in ids:
            view.assign(int(i), self.choose(view, int(i)))

    def choose(self, view: FleetView, request: int) -> int:
        """The worker (0 .. workers - 1) for ``request``; a simple rule writes only this."""
        raise NotImplementedError

    def run_metrics(self) -> dict[str, float]:
        """The router's own counts over the last simulation, added to the evaluator's metrics
        (``servopt.benchmarks.decode_routing.evaluate``); none here (:class:`EpochIP` has its
        solves, time-limited steps and fallbacks)."""
        return {}


class RoundRobin(Router):
    name = "round_robin"

    def reset(self, instance: InstanceView, seed: int = 0) -> None:
        super().reset(instance, seed)
        self.counter = 0

    def choose(self, view: FleetView, request: int) -> int:
        g = self.counter
        self.counter = (self.counter + 1) % view.workers
        return g


class RandomRouter(Router):
    name = "random"

    def choose(self, view: FleetView, request: int) -> int:
        return int(self.rng.integers(view.workers))


class JoinShortestQueue(Router):
    name = "jsq"

    def choose(self, view: FleetView, request: int) -> int:
        return int(np.argmin(view.running + view.queued))


class LeastKV(Router):
    name = "least_kv"

    def choose(self, view: FleetView, request: int) -> int:
        return int(np.argmin(view.kv_running + view.kv_queued))


class LeastKVSorted(Router):
    """Ablation, not a deployed router: least-KV placing each step's arrivals largest prompt first.

    The requests that arrive during a decode step are all admitted at the next step's start, so a
    router may place them together: in decreasing order of prompt tokens (ties in arrival order),
    each on the worker with the fewest KV tokens committed so far (lowest index on ties), the
    longest-processing-time-first order of list scheduling. Assignments are made in arrival order
    (per-worker queues stay FIFO). It isolates what the bid-price router's largest-first order
    is worth without its prices.
    """

    name = "least_kv_sorted"

    def route(self, view: FleetView, ids: np.ndarray) -> None:
        prompt = view.prompt[ids]
        kv = view.kv_running + view.kv_queued
        chosen = np.empty(len(ids), dtype=np.int64)
        for k in np.argsort(-prompt, kind="stable").tolist():
            g = int(kv.argmin())
            chosen[k] = g
            kv[g] += prompt[k]
        for i, g in zip(ids.tolist(), chosen.tolist(), strict=True):
            view.assign(i, g)


class PowerOfTwoKV(Router):
    name = "p2c_kv"

    def choose(self, view: FleetView, request: int) -> int:
        if view.workers == 1:
            return 0
        a, b = self.rng.choice(view.workers, size=2, replace=False)
        kv = view.kv_running + view.kv_queued
        return int(b) if kv[b] < kv[a] else int(a)


class LeastOutstanding(Router):
    name = "least_outstanding"

    def choose(self, view: FleetView, request: int) -> int:
        return int(np.argmin(4 * view.queued + view.running))


# ---------------------------------------------------------------------------------------------
# Output-length knowledge available online
# ---------------------------------------------------------------------------------------------
def survival(completed: np.ndarray, running_age: np.ndarray, length: int,
             prior_mean: float = 128.0, prior_weight: float = 20.0) -> np.ndarray:
    """Kaplan-Meier estimate of S(t) = P(output > t), t = 0..length-1, from observable data.

    ``completed`` are output lengths of finished requests (events), ``running_age`` the tokens
    generated so far by running requests (censored: their output exceeds the age). A geometric
    prior with mean ``prior_mean`` tokens and weight ``prior_weight`` pseudo-requests smooths the
    estimate while few requests have finished.
    """
    deaths = np.bincount(np.clip(completed, 0, length - 1).astype(np.int64), minlength=length)
    cens = np.bincount(np.clip(running_age, 0, length - 1).astype(np.int64), minlength=length)
    return survival_from_counts(deaths, cens, prior_mean, prior_weight)


_PRIOR_RISK: dict[tuple[float, float], np.ndarray] = {}


def _prior_risk(length: int, prior_mean: float, prior_weight: float) -> np.ndarray:
    """prior_weight (1 - 1 / prior_mean)^t, t = 0..length-1 (cached; elementwise, so a slice of a
    longer table is the same numbers)."""
    key = (float(prior_mean), float(prior_weight))
    table = _PRIOR_RISK.get(key)
    if table is None or len(table) < length:
        t = np.arange(max(length, 2 * len(table) if table is not None else 2048))
        table = prior_weight * (1 - 1.0 / max(prior_mean, 1.0)) ** t
        _PRIOR_RISK[key] = table
    return table[:length]


_LOG_AGE = np.zeros(0)


def _log_age(length: int) -> np.ndarray:
    """ln(t + 1/2), t = 0..length-1 (a cached table, grown by doubling; elementwise, so the same
    numbers as ``np.log`` of any array of those t + 1/2)."""
    global _LOG_AGE
    table = _LOG_AGE  # read once: another thread may replace the global meanwhile
    if len(table) < length:
        table = np.log(np.arange(max(length, 2 * len(table), 4096), dtype=float) + 0.5)
        _LOG_AGE = table
    return table


def survival_from_counts(deaths: np.ndarray, cens: np.ndarray, prior_mean: float = 128.0,
                         prior_weight: float = 20.0) -> np.ndarray:
    """:func:`survival` from histograms: ``deaths[t]`` finished requests with output t,
    ``cens[t]`` running requests of age t (both of the same length)."""
    length = len(deaths)
    hazard0 = 1.0 / max(prior_mean, 1.0)
    # at risk at t: outputs > t-1 ... requests with output >= t or age >= t
    at_risk = (deaths + cens)[::-1].cumsum()[::-1].astype(float)
    prior_risk = _prior_risk(length, prior_mean, prior_weight)
    hazard = np.zeros(length)
    # event "output == t" for t >= 1 (an output is at least one token)
    num = deaths + prior_risk * hazard0
    den = at_risk + prior_risk
    hazard[1:] = num[1:] / np.maximum(den[1:], 1e-12)
    return np.cumprod(1.0 - np.minimum(np.maximum(hazard, 0.0), 1.0))  # hazard clipped to [0, 1]


def prediction_spread(log_ratio: np.ndarray, prior: float = 0.5, prior_weight: float = 20.0,
                      floor: float = 0.02) -> float:
    """Spread sigma of ``log(true / predicted output)`` estimated from finished requests.

    A root-mean-square with ``prior_weight`` pseudo-observations at ``prior``, floored at ``floor``
    (exact predictions give sigma -> floor).
    """
    ss = prior_weight * prior**2 + float(np.sum(np.square(log_ratio)))
    return max(floor, float(np.sqrt(ss / (prior_weight + len(log_ratio)))))


class _Forecaster:
    """Predicted KV profiles of running, queued and new requests over a horizon (vectorised).

    Without predictions a request of age j is alive at j + h with probability S(j + h) / S(j)
    (Kaplan-Meier, :func:`survival`). With ``predicted_tokens`` p, the true output is modelled as
    p exp(N(0, sigma^2)), sigma estimated online from finished requests
    (:func:`prediction_spread`): alive with probability Phi((ln p - ln(j + h + 1/2)) / sigma) /
    Phi((ln p - ln(j + 1/2)) / sigma), which tends to the indicator ``j + h < p`` as sigma -> 0
    and stays honest about a request that has outlived its prediction.
    """

    _SPAN = 4  # ages cached past the horizon for the prediction forecast (steps)

    def __init__(self, horizon: int, prior_mean: float, prediction_prior: float = 0.5) -> None:
        self.H = int(horizon)
        self.prior_mean = prior_mean
        self._logphi: np.ndarray | None = None
        self._pred: np.ndarray | None = None
        self.version = 0
        self.prediction_prior = prediction_prior
        self.sigma = prediction_prior
        self._deaths = np.zeros(0, dtype=np.int64)  # finished requests per output length
        self._n_dead = 0  # finished requests counted in _deaths
        self._longest = 0  # their longest output
        self._tail_pow: np.ndarray = np.zeros(0)  # (1 - 1 / prior_mean)^k, k = 1, 2, ... (see _extended)
        self._log_ratio = np.zeros(0)  # log(true / predicted output) of finished requests
        self.set_survival(np.ones(self.H + 2))

    def set_survival(self, S: np.ndarray) -> None:
        """Install the survival table S(t) and clear the tables derived from it."""
        self.S = S
        self._new: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._alive: np.ndarray | None = None
        self._ext: np.ndarray | None = None
        self._queued_tables: tuple[np.ndarray, np.ndarray] | None = None

    def refresh(self, view: FleetView) -> None:
        completed = view.completed_outputs()
        # the death histogram (and the longest output) grow by the requests finished since the
        # last refresh (finished requests only accumulate), instead of a pass over all of them
        if len(completed) < self._n_dead:  # a new run on the same forecaster
            self._deaths, self._n_dead, self._longest = np.zeros(0, dtype=np.int64), 0, 0
        fresh = completed[self._n_dead:]
        if len(fresh):
            self._longest = max(self._longest, int(fresh.max()))
        length = max(self._longest, int(view.run_generated.max(initial=0))) + self.H + 2
        if len(self._deaths) < length:
            self._deaths = np.concatenate([self._deaths, np.zeros(2 * length - len(self._deaths),
                                                                  dtype=np.int64)])
        if len(fresh):
            np.add.at(self._deaths, fresh.astype(np.int64), 1)
            self._n_dead = len(completed)
        cens = np.bincount(view.run_generated.astype(np.int64), minlength=length)
        self.set_survival(survival_from_counts(self._deaths[:length], cens, self.prior_mean))
        self.version += 1
        if view.predicted is not None:
            # log(true / predicted) of the finished requests, extended by those finished since
            # the last refresh (the same numbers as recomputing all of them)
            if len(completed) < len(self._log_ratio):
                self._log_ratio = np.zeros(0)
            done = len(self._log_ratio)
            ids = view.completed_ids()[done:]
            self._log_ratio = np.concatenate([self._log_ratio,
                                              np.log(completed[done:] / view.predicted[ids])])
            self.sigma = prediction_spread(self._log_ratio, prior=self.prediction_prior)

    def _S(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t).astype(np.int64)
        last = len(self.S) - 1
        if t.size and int(t.max()) <= last:  # inside the table (the usual case): no tail needed
            return self.S[t]
        tail = self.S[last] * (1 - 1 / max(self.prior_mean, 1.0)) ** np.maximum(t - last, 0)
        return np.where(t <= last, self.S[np.minimum(t, last)], tail)

    def profile(self, prompt: np.ndarray, generated: np.ndarray,
                predicted: np.ndarray | None, width: int | None = None) -> np.ndarray:
        """(n, width) expected KV tokens of requests at horizon steps h = 0..width-1 (default H)."""
        h = np.arange(self.H if width is None else width)[None, :]
        j = generated[:, None]
        kv = prompt[:, None] + j + h
        if predicted is not None:
            log_p = np.log(np.maximum(predicted, 1.0))[:, None]
            now = special.log_ndtr((log_p - np.log(j + 0.5)) / self.sigma)
            later = special.log_ndtr((log_p - np.log(j + h + 0.5)) / self.sigma)
            return kv * np.exp(later - now)
        p = self._S(j + h) / np.maximum(self._S(j), 1e-12)
        return kv * p

    def new_tables(self, width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-refresh tables: steps h (float), S(h) and S(h) / S(0), h = 0..width-1 (default H).

        A new request of prompt s without a prediction has the profile (s + h) S(h) / S(0) (the
        same arithmetic as :meth:`profile` with age 0), so pricing it costs one multiply.
        """
        width = self.H if width is None else width
        if self._new is None or len(self._new[0]) < width:
            n = max(width, self.H)
            if n <= len(self.S):  # inside the table: S(h) is a slice (the numbers of _S)
                surv = self.S[:n]
                self._new = (np.arange(n, dtype=float), surv, surv / max(float(self.S[0]), 1e-12))
            else:
                h = np.arange(n)
                surv = self._S(h)
                self._new = (h.astype(float), surv, surv / np.maximum(self._S(np.zeros(1)), 1e-12))
        h, surv, ratio = self._new
        return h[:width], surv[:width], ratio[:width]

    def alive_table(self) -> np.ndarray:
        """Per-refresh table A[h, j] = S(j + h) / max(S(j), 1e-12): a request of age j alive h
        steps later (the division of :meth:`profile`), stored horizon-major.

        Columns j = 0 .. len(S) + H (ages a request can reach before the next refresh, tail
        included); one division over a window view of S per refresh, so each step only gathers
        the running requests' columns.
        """
        if self._alive is None:
            H, S = self.H, self.S
            last, ages = len(S) - 1, len(S) + H + 1
            # S extended by the geometric tail of :meth:`_S` (the same numbers)
            tail = S[last] * (1 - 1 / max(self.prior_mean, 1.0)) ** np.arange(1, 2 * H + 2)
            ext = np.concatenate([S, tail])
            step = ext.strides[0]
            win = np.lib.stride_tricks.as_strided(ext, (H, ages), (step, step))  # S(j + h)
            self._alive = win / np.maximum(ext[:ages], 1e-12)[None, :]
        return self._alive

    def rows(self, view: FleetView, ids: np.ndarray, age: np.ndarray, width: int) -> np.ndarray:
        """(n, width) forecast KV profiles of requests ``ids`` of age ``age`` over the next
        ``width`` steps: the formulas (and floating-point arithmetic) of :meth:`profile` and
        :meth:`base_load`, over a horizon of any width."""
        age = age.astype(np.int64)
        kv = (view.prompt[ids] + age).astype(float)[:, None] + np.arange(width, dtype=float)[None, :]
        if view.predicted is not None:
            log_p = np.log(np.maximum(view.predicted[ids].astype(float), 1.0))[:, None]
            t = age.astype(float)[:, None] + np.arange(width)[None, :]
            logphi = special.log_ndtr((log_p - np.log(t + 0.5)) / self.sigma)
            logphi -= logphi[:, :1]
            np.exp(logphi, out=logphi)
            kv *= logphi
            return kv
        ext = self._extended(width)
        if len(age) and int(age.max()) < len(self._windows):
            # S(j + u): rows of the sliding windows of S (a gather of contiguous rows)
            alive = self._windows[age, :width]
            alive /= np.maximum(ext[age], 1e-12)[:, None]
        else:
            alive = self._S(age[:, None] + np.arange(width)[None, :])
            alive /= np.maximum(self._S(age), 1e-12)[:, None]
        kv *= alive
        return kv

    def _extended(self, width: int) -> np.ndarray:
        """S extended by ``width`` + H steps of the geometric tail of :meth:`_S` (the same
        numbers as :meth:`alive_table`'s); also sets ``_windows``, its sliding windows of
        ``width`` steps."""
        if self._ext is None or self._windows.shape[1] < width:
            last = len(self.S) - 1
            n_tail = max(width, self.H) + self.H + 1
            if len(self._tail_pow) < n_tail:  # the same for every survival table: computed once
                self._tail_pow = (1 - 1 / max(self.prior_mean, 1.0)) ** np.arange(1, n_tail + 1)
            tail = self.S[last] * self._tail_pow[:n_tail]
            self._ext = np.concatenate([self.S, tail])
            step = self._ext.strides[0]  # windows[j] = S(j .. j + width - 1), a read-only view
            self._windows = np.ndarray((len(self._ext) - width + 1, width), dtype=self._ext.dtype,
                                       buffer=self._ext, strides=(step, step))
            self._windows.flags.writeable = False
        return self._ext

    def alive(self, age: np.ndarray) -> np.ndarray:
        """(H, n) probability that a request of age j is alive h = 0..H-1 steps later,
        S(j + h) / S(j) (a fresh array, horizon-major)."""
        table = self.alive_table()
        if len(age) and int(age.max()) < table.shape[1]:
            return table.take(age, axis=1)
        p = self._S(age[None, :] + np.arange(self.H)[:, None])
        p /= np.maximum(self._S(age), 1e-12)[None, :]
        return p

    def new_profiles(self, prompt: np.ndarray, predicted: np.ndarray | None,
                     width: int | None = None) -> np.ndarray:
        """(n, width) forecast KV profiles of new requests (age 0) over ``width`` steps (default
        H); equal to :meth:`profile`."""
        if predicted is not None:
            return self.profile(prompt, np.zeros(len(prompt)), predicted, width)
        h, _, ratio = self.new_tables(width)
        out = np.add.outer(prompt, h)
        out *= ratio
        return out

    def _prediction_cache(self, view: FleetView) -> None:
        """Allocate the per-request cache of log Phi (and ln max(p, 1) of every prediction, the
        elementwise numbers of :meth:`profile`'s) for this stream."""
        n_req = len(view.prompt)
        if self._logphi is None or self._logphi.shape[0] != n_req or self._pred is not view.predicted:
            self._logphi = np.zeros((n_req, self.H + self._SPAN))
            self._start = np.zeros(n_req, dtype=np.int64)
            self._epoch = np.full(n_req, -1, dtype=np.int64)
            self._pred = view.predicted
            self._log_p = np.log(np.maximum(view.predicted.astype(float), 1.0))

    def new_predicted(self, view: FleetView, ids: np.ndarray) -> np.ndarray:
        """(n, H) forecast profiles of new requests ``ids`` with predictions: the numbers of
        :meth:`new_profiles` (log Phi evaluated once per age, at ages 0..H + ``_SPAN`` - 1, where
        :meth:`profile` evaluates age 0 twice). Their log Phi is kept for :meth:`_predicted_running`,
        which uses it when they start running at age 0 before the next refresh."""
        self._prediction_cache(view)
        width = self.H + self._SPAN
        logphi = np.subtract.outer(self._log_p[ids], _log_age(width)[:width])  # ln p - ln(t + 1/2)
        logphi /= self.sigma
        logphi = special.log_ndtr(logphi)
        self._logphi[ids] = logphi
        self._start[ids] = 0
        self._epoch[ids] = self.version
        prof = logphi[:, :self.H] - logphi[:, :1]
        np.exp(prof, out=prof)
        prof *= view.prompt[ids].astype(float)[:, None] + np.arange(self.H)[None, :]  # s + h
        return prof

    def _predicted_running(self, view: FleetView) -> np.ndarray:
        """(H, n) profiles of the running requests with predictions (horizon-major); equal to
        :meth:`profile` transposed.

        log Phi((ln p - ln(t + 1/2)) / sigma) of request r at age t is kept from the step it was
        first needed (or routed: :meth:`new_predicted`) until the next refresh (sigma fixed in
        between) for ages up to ``_SPAN`` steps beyond, so each step only gathers and
        exponentiates; ln p and ln(t + 1/2) are tables (the same numbers).
        """
        ids = view.run_ids
        H = self.H
        width = H + self._SPAN
        self._prediction_cache(view)
        age = view.run_generated.astype(np.int64)
        start = self._start[ids]
        # stale: sigma changed, the kept ages run out, or the request is younger than they begin
        # (a guard: the simulator's preemption keeps a request's tokens, so its age never falls)
        stale = (self._epoch[ids] != self.version) | (age - start + H > width) | (age < start)
        if stale.any():
            r, a = ids[stale], age[stale]
            ages = a[:, None] + np.arange(width)[None, :]
            logphi = _log_age(int(ages[:, -1].max()) + 1)[ages]  # ln(t + 1/2)
            np.subtract(self._log_p[r][:, None], logphi, out=logphi)
            logphi /= self.sigma
            self._logphi[r] = special.log_ndtr(logphi)
            self._start[r] = a
            self._epoch[r] = self.version
            start = self._start[ids]
        flat = ids * width + (age - start)  # flat index of each request's age now
        later = self._logphi.ravel().take(np.arange(H)[:, None] + flat[None, :])
        prof = later - later[:1]
        np.exp(prof, out=prof)
        prof *= np.arange(H, dtype=float)[:, None] + (view.prompt[ids] + age).astype(float)[None, :]
        return prof

    def base_load(self, view: FleetView) -> np.ndarray:
        """(G, H) expected KV tokens of each worker's running and queued requests."""
        G = view.workers
        pred = view.predicted
        ids = view.run_ids
        H = self.H
        # profiles horizon-major (H, n): long inner loops; the bins below still add each
        # worker's requests in run order, so the sums are those of the (n, H) layout
        if pred is None:  # survival forecast: table look-ups only (same values as profile())
            h, surv, ratio = self.new_tables()
            age = view.run_generated.astype(np.int64)
            prof = self.alive(age)
            prof *= h[:, None] + (view.prompt[ids] + age).astype(float)[None, :]
            new = ratio * h  # a typical new request of prompt 0: h S(h) / S(0)
        else:
            prof = self._predicted_running(view)
            if self._queued_tables is None:  # per survival table: h S(h) / S(0) and S(h)
                self._queued_tables = (self.profile(np.zeros(1), np.zeros(1), None)[0],
                                       self._S(np.arange(H)))
            new, surv = self._queued_tables
        cell = (np.arange(H) * G)[:, None] + view.run_worker[None, :]  # bin of (h, g): h G + g
        base = np.bincount(cell.ravel(), weights=prof.ravel(), minlength=G * H)
        base = base.astype(float, copy=False).reshape(H, G).T.copy()
        # queued requests start (approximately) now: s + h for a typical new request
        base += view.kv_queued[:, None] * surv[None, :] + view.queued[:, None] * new[None, :]
        return base


class _LoadBook:
    """Each worker's forecast KV over the coming steps, rebuilt every few steps and nowcast in between.

    At a rebuild (step t0) F[g, u], u = 0..W-1 (W = H + span), is the exact forecast of
    :meth:`_Forecaster.base_load` over W steps: every running request r of age j contributes
    (s_r + j + u) S(j + u) / S(j) (or the prediction formula), every queued request starts now.
    Until the next rebuild a routed request adds the profile it was priced with, from its routing
    step, and the forecast at step t = t0 + d is the window F[:, d : d + H] corrected by what the
    fleet shows now: worker g's KV tokens K_g (running + queued) differ from the window's first
    column by e_g (requests finished since t0 are still in F, the survivors are under-weighted:
    their survival since t0 is not credited), and the error is carried forward as it would decay,
    e_g a(h), with a(h) = sum_g F[g, h] / sum_g F[g, 0] the KV-weighted chance that a running
    request's tokens are still there h steps later. So the forecast is exact at a rebuild, equal
    to the fleet's KV at every step's h = 0, and costs O(G H) per step plus O(W) per routed
    request, and O(running x W) per rebuild.
    """

    def __init__(self, workers: int, horizon: int, span: int) -> None:
        self.H, self.W, self.G = int(horizon), int(horizon) + int(span), int(workers)
        self.F = np.zeros((self.G, self.W))
        self._columns = np.arange(self.W)
        self.decay = np.ones(self.H)
        self.t0 = -(10**9)
        self.rebuilds = 0

    def rebuild(self, view: FleetView, fc: _Forecaster) -> None:
        """The exact forecast at this step, over W steps."""
        ids, W, G = view.run_ids, self.W, self.G
        rows = fc.rows(view, ids, view.run_generated, W)
        cell = np.add.outer(view.run_worker * W, self._columns).ravel()  # bin of (g, u): g W + u
        F = np.bincount(cell, weights=rows.ravel(), minlength=G * W)
        F = F.astype(float, copy=False).reshape(G, W)
        total = F.sum(axis=0)
        self.decay = total[:self.H] / total[0] if total[0] > 0 else np.ones(self.H)
        if view.queued.any():  # queued requests start now (the arithmetic of ``base_load``)
            u, surv, ratio = fc.new_tables(W)
            F += view.kv_queued[:, None] * surv[None, :] + view.queued[:, None] * (ratio * u)[None, :]
        self.F = F
        self.t0 = view.step
        self.rebuilds += 1

    def error(self, view: FleetView, kv: np.ndarray) -> np.ndarray | None:
        """e_g: ``kv`` (each worker's running + queued KV tokens now) minus the book's forecast of
        this step; None when the book does not reach H steps ahead (a rebuild is due)."""
        d = view.step - self.t0
        if d + self.H > self.W:
            return None
        return kv - self.F[:, d]

    def load(self, view: FleetView, error: np.ndarray) -> np.ndarray:
        """(G, H) forecast KV at steps now .. now + H - 1 (a fresh array), given :meth:`error`."""
        d = view.step - self.t0
        load = np.multiply.outer(error, self.decay)  # e_g a(h)
        load += self.F[:, d:d + self.H]
        return load


# ---------------------------------------------------------------------------------------------
# HiGHS matrix path
# ---------------------------------------------------------------------------------------------
# one HiGHS object per thread, reused by every solve_matrix call in that thread: a single
# process-wide object shared by two threads evaluating bid_price_lp on different instances gave
# wrong costs with status ok, a KeyError 'price', and (bid_price_argmin) a segfault. Per thread,
# not per call: a call in one thread sees the same object, with the same history, as before
_LOCAL = threading.local()


def _highs() -> Any:
    """This thread's HiGHS object (made on first use)."""
    h = getattr(_LOCAL, "highs", None)
    if h is None:
        h = _LOCAL.highs = new_highs()
    return h


def check_options(time_limit: Any, mip_gap: Any) -> tuple[float | None, float]:
    """``(time_limit, mip_gap)`` checked as :func:`servopt.solvers.exact.solve` checks them:
    time_limit positive seconds, None or infinity (no limit); mip_gap a relative gap in [0, 1).
    Anything else (<= 0, NaN, text) is an :class:`InvalidInstanceError` naming the option."""
    return seconds(time_limit), gap_option(mip_gap)


def solve_matrix(mat: MatrixLP, *, time_limit: float | None = None,
                 mip_gap: float = 1e-4, central: bool = False) -> dict[str, Any]:
    """Solve a :class:`MatrixLP` with highspy.

    time_limit : seconds for the whole call (None or infinity: no limit); mip_gap : HiGHS's
    relative MIP gap, in [0, 1). Anything else is refused (:func:`check_options`).

    Returns ``status`` (optimal / time_limit / infeasible / error), ``objective``, ``bound``,
    ``x`` (column values) and ``price`` (row prices in servopt's sign convention: >= 0 for the
    ``<=`` rows, d objective / d rhs for equalities), the latter for LPs solved to optimality
    (a stopped LP has neither a bound nor prices), and ``info`` (how an integer answer was
    checked, below).

    An integer answer is checked as :mod:`servopt.solvers.exact` checks every MIP's: HiGHS runs
    at its own integrality tolerance (1e-6), its incumbent's integer columns are rounded to whole
    numbers, the rows are checked at that point
    (:func:`~servopt.solvers.exact.checked_incumbent`: exact for whole-number rows such as
    ``assign``, ``slots`` and ``kv_memory``) and ``objective`` is ``c x + offset`` there, so it is
    the value of the returned ``x``. A broken row is repaired by re-solving the continuous
    columns (``u``) with the integers fixed (``info["incumbent_repaired"]``), else the model is
    solved once more at :func:`~servopt.solvers.exact.integrality_tolerance` on what is left of
    ``time_limit`` (:func:`~servopt.solvers.exact.retry_tight`, ``info["tight_retry"]``), else
    no incumbent is reported: ``x`` None, ``objective`` NaN, status ``error`` where HiGHS said
    optimal, the bound kept, ``info["incumbent_rejected"]`` naming the row. (HiGHS accepts a
    binary within 1e-6 of 0 or 1: requests of 2.4M KV tokens at x = 1 - 4e-7 and 4e-7 put one
    token more on a worker than its free KV; the epoch IP called that "optimal", 0.7% below
    the true optimum: ``tests/test_decode_routing_integer_check.py``.)

    HiGHS solves ``c / s`` with s = max |c_j| (when finite and > 0), and objective, bound and
    prices are multiplied back by s: the answer is in the units of ``c``, the decisions are not in
    any. HiGHS's tolerances are absolute (dual feasibility 1e-7, MIP absolute gap 1e-6), and the
    epoch model's coefficients gamma^h c1 are 1e-4 .. 3.5e-6 ms per token at the default c1:
    with the times of ``generate(requests=300, workers=4, seed=0)`` given in 2^-10 ms,
    ``epoch_ip``'s total step time was 16597.07 ms against 15359.81 in ms (another assignment
    for 222 of 300 requests). Divided by its largest coefficient the objective is gamma^h c1 / c1,
    whatever the time unit (bit for bit when the unit changes by a power of two).
    """
    limit, gap = check_options(time_limit, mip_gap)
    if not mat.integer.any():
        return _solve_once(mat, limit, gap, central, MIP_FEASIBILITY_MAX)
    budget = TimeBudget(limit)
    answers: dict[int, dict[str, Any]] = {}  # each solve's dict, by its Solution's id

    def once(tight: bool) -> Solution:
        tolerance = integrality_tolerance(mat.A, mat.integer) if tight else MIP_FEASIBILITY_MAX
        left = budget.left()
        out = _solve_once(mat, None if left is None else max(left, 0.0), gap, central, tolerance)
        if out["status"] == "infeasible":  # retry_tight keeps the first answer over this one
            raise InfeasibleError("the routing IP is infeasible")
        if out["x"] is not None:  # rounded, checked against the rows, its value recomputed
            point, value, rejected, repaired = repaired_incumbent(
                mat.c, mat.A, mat.row_lo, mat.row_hi, mat.col_lo, mat.col_hi, mat.integer,
                out["x"], offset=mat.offset, sense="min", time_limit=budget.left(),
                names=lambda row: _row_name(mat, row), tolerance=tolerance)
            reported, out["status"] = recorded_check(out["info"], repaired, rejected,
                                                     out["status"])
            out["x"], out["objective"] = (point, value) if reported else (None, math.nan)
        solution = Solution(status=out["status"], objective=out["objective"], bound=out["bound"],
                            gap=relative_gap(out["objective"], out["bound"]), wall_s=0.0,
                            info=out["info"])
        answers[id(solution)] = out
        return solution

    try:
        chosen = retry_tight(once, integrality_tolerance(mat.A, mat.integer) < MIP_FEASIBILITY_MAX,
                             budget)
    except InfeasibleError:
        return {"status": "infeasible", "objective": np.nan, "bound": np.nan, "info": {}}
    out = answers[id(chosen)]
    out["status"], out["bound"], out["info"] = chosen.status, chosen.bound, chosen.info
    return out


def _row_name(mat: MatrixLP, row: int) -> str:
    """Row ``row`` of ``mat`` as its family and position in it (``kv_memory[1]``: worker 1's)."""
    for name, rows in mat.rows.items():
        if rows.start <= row < rows.stop:
            return f"{name}[{row - rows.start}]"
    return f"row {row}"


def _solve_once(mat: MatrixLP, limit: float | None, gap: float, central: bool,
                tolerance: float) -> dict[str, Any]:
    """One HiGHS run of ``mat`` on this thread's HiGHS object (:func:`solve_matrix`'s keys; an
    integer ``x`` as HiGHS gives it), at integrality tolerance ``tolerance``."""
    import highspy

    h = _highs()
    h.clearModel()
    # the HiGHS object is shared by every call in this thread: each call sets every option it
    # relies on, and a refused setting is an error (HiGHS would otherwise keep the previous
    # call's value)
    options = {
        "time_limit": highspy.kHighsInf if limit is None else limit,
        "mip_rel_gap": gap,
        "mip_feasibility_tolerance": tolerance,
        "presolve": "choose" if mat.integer.any() else "off",
        "solver": "ipm" if central else "choose",
        "run_crossover": "off" if central else "on",
        # a MIP solve leaves HiGHS's primal_feasibility_tolerance at the MIP's 1e-6: without
        # this, an LP's answer depended on whether a MIP (epoch_ip, the hindsight bound) ran first
        "primal_feasibility_tolerance": 1e-7,
        "dual_feasibility_tolerance": 1e-7,
        # the central point without crossover: at IPX's default 1e-8, 12 of 897 epoch LPs (audit
        # stream, quick cell, a hindsight stream) stopped 'unknown' 7e-6 outside a bound
        "ipm_optimality_tolerance": 1e-10 if central else 1e-8,
    }
    for key, value in options.items():
        if h.setOptionValue(key, value) != highspy.HighsStatus.kOk:
            raise InvalidInstanceError(f"HiGHS refused option {key}={value!r}")
    n_cols = mat.A.shape[1]
    is_mip = bool(mat.integer.any())
    scale = float(np.abs(mat.c).max()) if mat.c.size else 0.0  # the objective's unit (see above)
    if not 0.0 < scale < np.inf:
        scale = 1.0
    h.passModel(highs_lp(mat.c / scale, mat.A, mat.row_lo, mat.row_hi, mat.col_lo, mat.col_hi,
                         integer=mat.integer))
    h.run()
    status = h.getModelStatus()
    S = highspy.HighsModelStatus
    info = h.getInfo()
    if status in (S.kInfeasible, S.kUnboundedOrInfeasible):
        return {"status": "infeasible", "objective": np.nan, "bound": np.nan, "info": {}}
    sol = h.getSolution()
    x = np.array(sol.col_value, dtype=float)
    has = len(x) == n_cols and (status == S.kOptimal or info.primal_solution_status == 2)
    name = {S.kOptimal: "optimal", S.kTimeLimit: "time_limit"}.get(status, "error")
    obj = scale * float(info.objective_function_value) + mat.offset if has else np.nan
    bound = (scale * float(info.mip_dual_bound) + mat.offset) if is_mip \
        else obj if name == "optimal" else np.nan
    out = {"status": name, "objective": obj, "bound": bound, "x": x if has else None, "info": {}}
    if not is_mip and has and name == "optimal":  # a stopped LP's duals are no prices
        dual = scale * np.asarray(sol.row_dual, dtype=float)  # in the units of ``c``
        eq = mat.row_lo == mat.row_hi
        # HiGHS's row_dual is d(objective)/d(row bound), Pyomo's convention
        le = normalise_dual(dual, sense="min", row="le", convention="pyomo")
        eqp = normalise_dual(dual, sense="min", row="eq", convention="pyomo")
        out["price"] = np.where(eq, eqp, np.maximum(le, 0.0))
    return out


# ---------------------------------------------------------------------------------------------
# Bid-price router
# ---------------------------------------------------------------------------------------------
_sum, _max = np.add.reduce, np.maximum.reduce  # ndarray.sum / .max without their Python wrappers


PRICE_UNITS = {"worker_load": "ms per KV token on a worker at a horizon step",
               "slots": "ms per free batch slot", "kv_memory": "ms per free KV token"}


def _labels(series: Any, family: str, levels: int) -> np.ndarray:
    """The whole-number labels of a price family as a (rows, levels) int array (refused otherwise)."""
    what = "(worker, step)" if levels == 2 else "worker"
    if not isinstance(series, pd.Series) or series.index.nlevels != levels:
        raise InvalidInstanceError(f"the solution's {family} prices must be a Series labelled by "
                                   f"{what}, as build_epoch labels them; got {type(series).__name__}")
    index = series.index
    rows = [index.get_level_values(k) for k in range(levels)]
    if not all(pd.api.types.is_integer_dtype(r) for r in rows):
        raise InvalidInstanceError(f"the solution's {family} prices must be labelled by {what} "
                                   f"(whole numbers); got labels such as "
                                   f"{index[0] if len(index) else 'none'!r}")
    if index.has_duplicates:
        raise InvalidInstanceError(f"the solution's {family} prices label {what} "
                                   f"{index[index.duplicated()][0]!r} twice")
    return np.column_stack([np.asarray(r, dtype=np.int64) for r in rows])


def _checked_values(series: pd.Series, family: str, labels: np.ndarray) -> np.ndarray:
    """The prices as floats, refused unless finite and >= 0, naming the first offending label."""
    try:
        values = series.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"the solution's {family} prices must be numbers") from None
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        k = int(np.argmax(bad))
        where = ("worker {}, step {}" if labels.shape[1] == 2 else "worker {}").format(*labels[k])
        raise InvalidInstanceError(
            f"the solution's {family} price for {where} is {float(values[k])!r}: bid prices must be finite "
            f"and >= 0 ({PRICE_UNITS[family]}); re-solve the epoch LP or correct the saved value")
    return values


def _epoch_prices(prices: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rho (G, H), sigma (G,), kappa (G,) of an epoch LP's prices, read by label (not row order).

    ``worker_load`` must price every (worker, step) of 0..G-1 x 0..H-1 once; ``slots`` and
    ``kv_memory`` every worker 0..G-1 once; every price finite and >= 0.
    """
    load = prices["worker_load"]
    gh = _labels(load, "worker_load", 2)
    if len(gh) == 0:
        raise InvalidInstanceError("the solution's worker_load prices are empty")
    G, H = int(gh[:, 0].max()) + 1, int(gh[:, 1].max()) + 1
    if gh.min() < 0 or len(gh) != G * H:
        raise InvalidInstanceError(
            f"the solution's worker_load prices do not form one epoch: {len(gh)} (worker, step) "
            f"labels, where workers 0..{G - 1} x steps 0..{H - 1} need {G * H} (labels from "
            f"{tuple(gh.min(axis=0))} to {tuple(gh.max(axis=0))})")
    rho = np.empty((G, H))
    rho[gh[:, 0], gh[:, 1]] = _checked_values(load, "worker_load", gh)
    per_worker = []
    for family in ("slots", "kv_memory"):
        series = prices[family]
        g = _labels(series, family, 1)
        if not np.array_equal(np.sort(g[:, 0]), np.arange(G)):
            raise InvalidInstanceError(
                f"the solution's {family} prices are for workers {sorted(g[:, 0].tolist())}; "
                f"worker_load prices workers 0..{G - 1}: one {family} price per worker is needed")
        vec = np.empty(G)
        vec[g[:, 0]] = _checked_values(series, family, g)
        per_worker.append(vec)
    return rho, per_worker[0], per_worker[1]



class BidPrice(Router):
    """Bid-price router: route each request where its priced barrier cost over the next H steps is least.

    The cost of request i at worker g is its bid price, the discounted ms by which i would raise
    the barrier over the next ``horizon`` steps on the router's forecast:

        price_g(i) = sum_h gamma^h c1 (max(M_h, L_gh + w_ih) - M_h),   M_h = max_g L_gh,

    with L_gh the forecast KV tokens of worker g at step h (running and queued requests, each
    alive with its estimated survival: :class:`_Forecaster`, from ``predicted_tokens`` when the
    stream has them, else Kaplan-Meier on finished requests) and w_ih the request's own forecast
    KV profile. This is what the epoch LP's epigraph duals rho_gh price linearly (rho_gh =
    gamma^h c1 on the barrier worker of step h, 0 below it), evaluated exactly, so that headroom
    below the barrier is free; ties (no barrier rise anywhere) go to the fewest KV tokens, so the
    rule is least-KV unless least-KV's choice would raise a coming barrier that another worker
    would not. Work conserving: every request is routed at the step it arrives; no solver.

    ``order="largest"`` (default) places the requests that arrive during one decode step (all
    admitted at the next step's start) in decreasing order of their discounted profile mass
    ``sum_h gamma^h w_ih`` (the prompt order when the stream has no predictions; ties in arrival
    order), the longest-processing-time-first order of list scheduling, and then assigns them in
    arrival order, so per-worker queues stay FIFO. Placed in arrival order (``order="arrival"``,
    the earlier rule), a burst's last large prompt lands on an already levelled fleet and sets
    the barrier: the miss on the Azure code trace (32 workers, 85% load, 1.12x least-KV's idle)
    came from that. Measured on held-out streams (trace halves and thirds, other loads and fleet
    sizes, bursty synthetic code streams, full-grid seeds 10-11; not the reported cells):
    0.58x least-KV's idle against 0.99x in arrival order, throughput and latency no worse
    (``benchmarks/results/decode_routing_trace_diagnosis.md``). Least-KV in the same order
    (``least_kv_sorted``) gains as much: the order, not the prices, is what wins there.

    ``forecast="book"`` (default) keeps the forecast in a :class:`_LoadBook`: the exact forecast
    of every running and queued request over H + ``span`` steps, rebuilt only when the fleet's
    KV tokens now differ from the book's by more than ``tolerance`` x the fleet's total (or after
    ``span`` steps), shifted one step per decode step, with each routed request's profile added
    and each worker's current error carried forward in between: O(G H) per step and O(G H) per
    request, instead of O(running x H) per step. ``forecast="exact"`` recomputes it from every
    running request at each step with arrivals (the earlier rule; same decisions as before).
    Survival and the discount are re-estimated every ``refresh`` steps at most (with a rebuild,
    for the book). Tolerance 0.05 was chosen on seeds 10-11 of the full grid (not the reported
    0-2): idle within noise of the exact forecast (geometric mean 0.99x), at 1.9-2.2x less CPU
    on conversation lengths and about the same on code lengths (``decode_routing_speed.md``).
    Streams with ``predicted_tokens`` always use the exact forecast: a sharp prediction makes a
    request's survival fall within a few steps near its predicted end, so a row anchored a few
    steps earlier weighs a request still running there at about half, and the book lost 4-6%
    idle with exact predictions (conversation, 85% load, all three seeds of the prediction case);
    re-measured in largest-first order on seeds 10-11 it loses 2.9-4.3% at 85% load on code
    lengths and with exact predictions (within 0.3% with noisy conversation predictions; 0.87-1.09x
    at 95% load), for 0.54x the router time
    (``benchmarks/results/decode_routing_forecast_predictions.md``). The exact forecast with
    predictions has no cheaper exact evaluation we found: a running request's profile is renormalised
    at its current age, Phi(. age .), so every step with arrivals touches every running request
    (O(running x H)), and every survival refresh re-estimates sigma, so log Phi is re-evaluated
    for running x (H + 4) ages; only a forecast that skips one of the two (the book) is cheaper.
    Measured (``decode_routing_speed.md``, conversation, 8 workers, noise 0.5): that upkeep is 86 of
    bid_price's 99 us per request, with 914 log Phi evaluations per request, which is why this
    stream costs several times the streams without predictions.

    ``prediction_prior`` is the spread sigma of log(true / predicted output) assumed until finished
    requests show the real one (:func:`prediction_spread`).

    ``discount="auto"`` (default) sets gamma = exp(-lambda), lambda the measured arrivals per
    worker per step (over the last ``window`` steps, counted from the first step the router saw,
    so it does not depend on where the stream's clock starts): a forecast of step h matters only
    as long as no later arrival can correct it (gamma ~ 0.8 on conversation lengths, ~ 0.2 on
    code). A fixed gamma in (0, 1] is accepted.

    ``gate=True`` adds the LP plan of the issue's first design: at a refresh the router solves
    the epoch LP relaxation (:func:`servopt.models.decode_routing.build_epoch`, HiGHS matrix
    path) for a class of ``m = slack * rate * refresh`` new requests of the average observed
    prompt and keeps its duals rho_gh (``worker_load``), sigma_g (``slots``), kappa_g
    (``kv_memory``) and its plan y_g (requests of the class per worker, positive only where the
    class's reduced cost is zero). A request may then only go to a worker whose planned share is
    not used up (shares count the class's KV need, so a long prompt uses more; a fresh LP is
    solved when all are used up), and among those ``pick`` chooses: ``"marginal"`` the price
    above, ``"kv"`` the fewest KV tokens (``bid_price_lp``), ``"price"`` the textbook LP bid
    price ``argmin_g sum_h rho_gh w_ih + sigma_g + kappa_g (s_i + 1)`` (``bid_price_argmin``).
    After a run, ``router.epoch`` is the last :class:`~servopt.models.decode_routing.Epoch` the
    gated router solved (None before its first solve): ``solve_model(build_epoch(router.epoch,
    relax=True), relax=True, decision="decode_routing")`` gives that LP's labelled prices.
    The default is ungated: on the reported grid (``decode_routing_targets.md``) the gated
    ``bid_price_lp`` has 1.01-1.12x least-KV's barrier idle on the synthetic cells, where
    ``bid_price`` has 0.16-0.92x. ``bid_price_argmin``'s LP prices do not earn their place: with
    the same solves and gate and its prices set to 0 after every solve (so least-KV picks among
    the open workers), its barrier idle was 0.67x its own (0.39-0.96x, lower in 24 of 24 runs:
    conversation and code lengths, 4 and 8 workers, 85% and 95% load, 800 requests, seeds 0-2),
    total step time 0.98-1.01x; with the prices permuted across workers 1.03x (0.91-1.18x), so
    which worker a price sits on carries little. On the same streams least-KV has 0.66x its idle
    and ``bid_price`` 0.50x, for total step time 0.97-1.01x its own
    (``benchmarks/results/decode_routing_price_ablation.md``).

    ``BidPrice.from_solution(solution)`` builds the textbook rule from a solved epoch LP
    relaxation (:func:`servopt.models.decode_routing.build_epoch` with ``relax=True``, solved by
    :func:`servopt.solvers.exact.solve_model`, or its CVXPY twin): fixed prices rho_gh, sigma_g,
    kappa_g, each request to ``argmin_g sum_h rho_gh w_ih + sigma_g + kappa_g (s_i + 1)`` (ties to
    the fewest KV tokens), never a solver. The prices belong to the fleet state of that epoch: they
    route that epoch's requests; over a stream they go stale (no refresh), so simulate
    ``bid_price`` (the default) instead. Re-solving does not make such prices earn their place:
    ``bid_price_argmin`` re-solves the LP every 2 steps and has more barrier idle than the same
    router with its prices zeroed (above).

    ``central=True`` (default) solves the LP with HiGHS's interior-point method without
    crossover, so plan and duals are central in the optimal face: the LP only prices the
    barrier's top, so when there is room below it a simplex vertex puts the whole class on one or
    two workers, which raised idle well above least-KV's in our runs (not a committed table);
    the central plan spreads it over every worker with room.
    """

    name = "bid_price"
    SCREEN_FROM = 3  # arrivals in a step from which :meth:`_route_book` screens (below: exact checks)

    def __init__(self, horizon: int = 16, discount: float | str = "auto", refresh: int = 4,
                 prior_mean: float = 128.0, window: int = 64, slack: float = 1.5,
                 pick: str = "marginal", central: bool = True, gate: bool = False,
                 prediction_prior: float = 0.5, forecast: str = "book", span: int = 16,
                 tolerance: float = 0.05, order: str = "largest") -> None:
        if order not in ("largest", "arrival"):
            raise InvalidInstanceError(f"order must be 'largest' or 'arrival', got {order!r}")
        self.order = order
        if forecast not in ("book", "exact"):
            raise InvalidInstanceError(f"forecast must be 'book' or 'exact', got {forecast!r}")
        self.span = _whole("span", span, MAX_STEPS)
        self.forecast = forecast
        self.tolerance = number("tolerance", tolerance, lambda v: 0.0 <= v < np.inf,
                                "a share of the fleet's KV tokens >= 0")
        if pick not in ("kv", "price", "marginal"):
            raise InvalidInstanceError(f"pick must be 'kv', 'price' or 'marginal', got {pick!r}")
        self.pick, self.central, self.gate = pick, flag("central", central), flag("gate", gate)
        if pick != "marginal" and not self.gate:
            raise InvalidInstanceError(f"pick={pick!r} chooses among the LP plan's workers: it "
                                       "needs gate=True")
        horizon = _whole("horizon", horizon, MAX_STEPS)
        refresh = _whole("refresh", refresh)
        if discount != "auto" and not (isinstance(discount, int | float) and 0.0 < discount <= 1.0):
            raise InvalidInstanceError(f"discount must be 'auto' or in (0, 1] per step, got {discount!r}")
        self.slack = number("slack", slack, lambda v: 0.0 < v < np.inf,
                            "a finite number > 0 (the LP class's share of the expected arrivals)")
        self.horizon, self.discount, self.refresh_every = horizon, discount, refresh
        self.prior_mean = number("prior_mean", prior_mean, lambda v: 0.0 < v < np.inf,
                                 "a finite number of output tokens > 0")
        self.window = _whole("window", window, MAX_WINDOW)
        if not (isinstance(prediction_prior, int | float) and 0.0 < prediction_prior < np.inf):
            raise InvalidInstanceError("prediction_prior (the assumed spread of log(true / "
                                       f"predicted output)) must be > 0, got {prediction_prior!r}")
        self.prediction_prior = float(prediction_prior)
        self.fixed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see from_solution
        self.epoch: Epoch | None = None  # the last epoch solved (gate=True)

    @classmethod
    def from_solution(cls, solution: Any, **kw: Any) -> BidPrice:
        """The textbook bid-price rule with the fixed prices of a solved epoch LP relaxation.

        Stale prices: the prices belong to the fleet state of the epoch they were solved for and
        are never refreshed, so over a stream they go stale; to route a stream use ``bid_price``
        (the default). ``bid_price_argmin`` re-solves the LP every 2 steps, but its prices measured
        no help: with them zeroed after every solve its barrier idle was 0.67x (class docstring).

        ``solution`` comes from ``solve_model(build_epoch(epoch, relax=True), relax=True,
        decision="decode_routing")`` (or ``solve_cvxpy(build_epoch_cvxpy(epoch))``): its
        ``worker_load`` prices rho_gh [ms per KV token on worker g at horizon step h], ``slots``
        sigma_g [ms per free slot] and ``kv_memory`` kappa_g [ms per free KV token]. The router
        sends each request to ``argmin_g sum_h rho_gh w_ih + sigma_g + kappa_g (s_i + 1)`` on its
        own forecast profile w_ih, ties to the fewest KV tokens (lowest index), and never solves.
        ``kw`` go to the constructor (``horizon`` is the prices' H).

        Prices are read by label, not by row order (a saved solution's rows may be re-sorted):
        ``worker_load`` must price each (worker, step) of 0..G-1 x 0..H-1 once and ``slots`` and
        ``kv_memory`` each worker 0..G-1 once. A price that is nan, infinite or negative is
        refused (``InvalidInstanceError`` naming the family and label): it would send every
        request to one worker.
        """
        decision = getattr(solution, "decision", None)
        prices = getattr(solution, "prices", None)
        if decision not in ("decode_routing", "") or not isinstance(prices, dict):
            raise InvalidInstanceError(
                "BidPrice.from_solution needs a solved decode_routing epoch LP (a servopt Solution), got "
                + (f"a {decision!r} solution" if decision else type(solution).__name__))
        if not (solution.relaxed or solution.info.get("lp", False)):
            raise InvalidInstanceError(
                "BidPrice.from_solution needs the epoch LP relaxation's prices: build_epoch(epoch, "
                "relax=True) and solve with relax=True (a MIP's prices are the duals with every "
                "assignment fixed, not bid prices)")
        if "worker_load" not in prices or "slots" not in prices or "kv_memory" not in prices:
            raise InvalidInstanceError(
                "BidPrice.from_solution needs the epoch LP's worker_load, slots and kv_memory prices; "
                f"this solution has {sorted(prices)} (the hindsight model's step_load prices price "
                "whole steps of a known trace, not a routing epoch)")
        rho, sigma, kappa = _epoch_prices(prices)
        H = rho.shape[1]
        router = cls(**{"horizon": H, **kw})
        if router.horizon != H:
            raise InvalidInstanceError(f"the prices cover {H} horizon steps; horizon={router.horizon} "
                                       "was asked")
        router.fixed = (rho, sigma, kappa)
        router.name = "bid_price_fixed"
        return router

    def reset(self, instance: InstanceView, seed: int = 0) -> None:
        if self.fixed is not None and len(self.fixed[1]) != instance.workers:
            raise InvalidInstanceError(f"the router's prices are for {len(self.fixed[1])} workers; "
                                       f"the instance has {instance.workers}")
        super().reset(instance, seed)
        self.fc = _Forecaster(self.horizon, self.prior_mean, self.prediction_prior)
        self.last_refresh = -10**9
        self.arrivals = [0] * self.window  # requests routed per step (a ring of ``window`` steps)
        self.first_step = self.last_step = None  # the first and latest steps this router saw
        self.prompt_sum, self.prompt_n = 0.0, 0
        self.plan = None
        self.epoch = None
        self.solves = 0
        self.solve_s = 0.0  # seconds inside the LP solver (the rest of the time is O(G) rules)
        self.gamma = 0.8 if self.discount == "auto" else float(self.discount)
        self.weights = self.gamma ** np.arange(self.horizon)
        self.load_step = -1
        self.book = None
        self._tables_version = -1
        self._rise = np.empty((instance.workers, self.horizon))
        self._score = np.empty(instance.workers)
        if self.forecast == "book" and not self.gate and instance.predicted is None:
            self.book = _LoadBook(instance.workers, self.horizon, self.span)

    def _discount(self, view: FleetView) -> None:
        """``discount="auto"``: gamma = exp(-arrivals per worker per step), measured online.

        A forecast of step h only matters if no later routing decision can correct it: with
        lambda arrivals per worker per step, the chance that none reaches a worker within h
        steps is exp(-lambda h). (Conversation lengths at 85% load: gamma ~ 0.8; code: ~ 0.2.)
        """
        if self.discount != "auto":
            return
        per_worker = self._arrival_rate(view) / view.workers
        self.gamma = min(max(float(np.exp(-per_worker)), 0.05), 0.95)
        self.weights = self.gamma ** np.arange(self.horizon)

    def _tick(self, view: FleetView) -> None:
        """Move the arrivals ring to ``view.step``: empty the slots of every step since the last one
        seen (the step clock jumps over idle steps, whose slots would otherwise keep the counts
        of steps ``window`` or more ago)."""
        step = view.step
        if self.first_step is None:
            self.first_step = self.last_step = step
            return
        gone = min(step - self.last_step, self.window)
        for s in range(step - gone + 1, step + 1):
            self.arrivals[s % self.window] = 0
        self.last_step = max(self.last_step, step)

    def _arrival_rate(self, view: FleetView) -> float:
        """Requests routed per step over the last ``window`` steps, counted from the first step
        this router saw (not from step 0: a stream whose first arrival comes at step 1000 has not
        shown 1000 empty steps, and the rate must not depend on where its clock starts)."""
        self._tick(view)  # (a no-op at a step already seen; a subclass's route may not tick)
        seen = min(view.step - self.first_step + 1, self.window)
        return sum(self.arrivals) / seen

    def on_step(self, view: FleetView) -> None:
        self._tick(view)
        if self.gate and view.step - self.last_refresh >= self.refresh_every:  # (only the gated use a plan)
            self.plan = None

    def route(self, view: FleetView, ids: np.ndarray) -> None:
        self._tick(view)
        self.arrivals[view.step % self.window] += len(ids)
        if self.fixed is not None:
            self._route_fixed(view, ids)
            return
        if not self.gate:  # ungated means pick="marginal" (the constructor checks)
            self._route_marginal(view, ids)
            return
        self.prompt_sum += float(view.prompt[ids].sum())  # the LP's request class
        self.prompt_n += len(ids)
        for i in ids:
            i = int(i)
            if self.plan is None or not np.any(self.share - self.routed > 1e-6):
                self._solve(view)
            if self.pick == "marginal":
                self._step_load(view)
            view.assign(i, self._pick(view, i))

    def _step_load(self, view: FleetView) -> None:
        """The forecast L_gh and its barrier M_h, recomputed once per step (no solver)."""
        if self.load_step != view.step:
            self.load = self.fc.base_load(view)
            self.top = self.load.max(axis=0)
            self.load_step = view.step

    def _route_marginal(self, view: FleetView, ids: np.ndarray) -> None:
        """The default rule's fast path: forecast once per step, all new profiles at once.

        With ``forecast="exact"`` the same decisions and floating-point arithmetic as :meth:`_pick`
        (which the LP-gated variants use); with ``forecast="book"`` see :meth:`_route_book`. Per
        request one (G, H) barrier-rise evaluation in reused buffers, only when least-KV's worker
        would raise a coming barrier.
        """
        if len(ids) == 0:
            return
        if self.book is not None:
            self._route_book(view, ids)
            return
        kv = view.kv_running + view.kv_queued  # kept up to date below (assign queues the prompt)
        if view.step - self.last_refresh >= self.refresh_every:
            self.fc.refresh(view)
            self._discount(view)
            self.last_refresh = view.step
        prompt = view.prompt[ids]
        self._step_load(view)
        if view.predicted is None:
            profiles = self.fc.new_profiles(prompt.astype(float), None)
        else:
            profiles = self.fc.new_predicted(view, ids)
        load, top = self.load, self.top
        weights = self.weights
        c1 = self.instance.ms_per_kv_token
        rise, score = self._rise, self._score
        # the order in which this step's arrivals are placed (all are assigned below, in arrival
        # order): largest discounted profile first (the LPT order), or arrival order
        if self.order == "largest" and len(ids) > 1:
            order = np.argsort(-(profiles @ weights), kind="stable")
        else:
            order = np.arange(len(ids))
        chosen = np.empty(len(ids), dtype=np.int64)
        for k in order.tolist():
            s = int(prompt[k])
            w = profiles[k]
            g = int(kv.argmin())
            # prices are >= 0, so when the request fits under every coming barrier on least-KV's
            # worker its price there is exactly 0, the least, the tie goes to that worker, and
            # the coming barriers stay as they are
            fits = np.count_nonzero(load[g] + w > top) == 0
            if not fits:
                g = self._cheapest(load, top, w, kv, g, rise, score, weights, c1)
            chosen[k] = g
            kv[g] += s
            load[g] += w
            if not fits:
                np.maximum(top, load[g], out=top)
        for i, g in zip(ids.tolist(), chosen.tolist(), strict=True):
            view.assign(i, g)

    @staticmethod
    def _cheapest(load: np.ndarray, top: np.ndarray, w: np.ndarray, kv: np.ndarray, g: int,
                  rise: np.ndarray, score: np.ndarray, weights: np.ndarray, c1: float) -> int:
        """The worker where profile ``w`` raises the coming barriers ``top`` least (discounted ms),
        least-KV's worker ``g`` if it is among the cheapest, else the fewest KV tokens among them
        (lowest index); ``rise`` (G, H) and ``score`` (G,) are reused buffers."""
        np.add(load, w, out=rise)
        np.maximum(rise, top, out=rise)
        np.subtract(rise, top, out=rise)
        np.matmul(rise, weights, out=score)
        score *= c1
        best = float(score[score.argmin()])
        limit = best + 1e-9 * max(1.0, abs(best))
        if score[g] > limit:  # least-KV's worker is not among the cheapest
            cheapest = (score <= limit).nonzero()[0]  # fewest KV among them, lowest index
            g = int(cheapest[kv[cheapest].argmin()])
        return g

    def _book_upkeep(self, view: FleetView) -> tuple[np.ndarray, int, np.ndarray]:
        """The load book's upkeep at a step with arrivals: each worker's KV tokens now (a fresh
        array), the steps since the rebuild, and the book's error e_g, rebuilt first when the
        error exceeds the tolerance (or the book runs out of steps)."""
        book = self.book
        kv = view.kv_running + view.kv_queued  # kept up to date below (assign queues the prompt)
        # rebuild when the book's error now exceeds the tolerance (or it runs out of steps)
        d = view.step - book.t0
        if d + self.horizon <= book.W:
            error = kv - book.F[:, d]  # :meth:`_LoadBook.error`
            if not self._over_tolerance(error, kv):
                return kv, d, error
        # survival and discount every ``refresh`` steps at most (a rebuild may come sooner)
        if view.step - self.last_refresh >= self.refresh_every:
            self.fc.refresh(view)
            self._discount(view)
            self.last_refresh = view.step
        book.rebuild(view, self.fc)
        if self._tables_version != self.fc.version:  # a new survival table
            # new requests' profile tables over the book's width (the numbers of new_profiles)
            self._new_u, _, self._new_ratio = self.fc.new_tables(book.W)
            self._tables_version = self.fc.version
        return kv, 0, kv - book.F[:, 0]

    def _over_tolerance(self, error: np.ndarray, kv: np.ndarray) -> bool:
        """``sum_g |e_g| > tolerance x sum_g K_g`` with numpy's sums, decided on Python's.

        The KV sum is of integers (exact either way). numpy's pairwise sum of |e_g| and Python's
        sequential one are each within n eps sum |e_g| of the exact sum (n = workers), far inside a
        margin of 1e-9 of it, so numpy's sum is computed only when Python's falls inside that margin
        of the limit (the same answer, without two numpy reductions per step).
        """
        limit = self.tolerance * float(sum(kv.tolist()))
        total = sum(map(abs, error.tolist()))
        margin = 1e-9 * total
        if total - margin > limit:
            return True
        if total + margin <= limit:
            return False
        return float(_sum(np.abs(error))) > limit

    def _route_book(self, view: FleetView, ids: np.ndarray) -> None:
        """One step's arrivals on the :class:`_LoadBook`'s forecast (the default rule).

        The decisions (and floating-point arithmetic of every forecast and price that decides) are
        those of the straightforward loop (per request: the exact check that the request fits
        under every coming barrier on least-KV's worker, the barrier-rise prices when it does
        not, the book's row updated); what is cheaper:

        - a scalar screen first: with hr_g = min_h fl(M_h - L_gh) (worker g's headroom under the
          coming barriers) and m = max_h w_ih, ``m + eps <= hr_g`` implies fl(L_gh + w_ih) <= M_h
          at every h, by the error bound of one rounding (eps = 1e-9 x the step's largest load,
          far above it), so the exact (G, H) check runs only when the screen fails. After a
          request that fits, hr_g - m - eps stays a lower bound of worker g's headroom (the barrier
          is unchanged); after one that raises the barrier, g's headroom is unknown (-inf) and the
          others' can only have grown;
        - the load rows of this step's forecast are updated lazily, in placement order, only
          before an exact check (the same additions in the same order);
        - a step with one arrival (the most common on 8 workers) skips the ordering and the screen
          (:meth:`_route_one`);
        - the book's rows receive the step's profiles in placement order, a row slice each, or one
          unbuffered ``np.add.at`` from 12 arrivals on (the same single addition per row, in order);
        - the rebuild test on Python sums (:meth:`_over_tolerance`: numpy's answer).
        """
        book = self.book
        kv, d, error = self._book_upkeep(view)
        load = book.load(view, error)
        top = _max(load, axis=0)
        if len(ids) == 1 and view.predicted is None:  # the most common step: one arrival
            self._route_one(view, int(ids[0]), kv, d, load, top)
            return
        prompt = view.prompt[ids]
        if view.predicted is None:  # (s + u) S(u) / S(0), u = d .. W-1: new_profiles' arithmetic
            wide = np.add.outer(prompt, self._new_u[:book.W - d])
            wide *= self._new_ratio[:book.W - d]
        else:
            wide = self.fc.new_profiles(prompt.astype(float), view.predicted[ids].astype(float), book.W - d)
        H, n, F = self.horizon, len(ids), book.F
        profiles = wide[:, :H]
        c1, rise, score, weights = self.instance.ms_per_kv_token, self._rise, self._score, self.weights
        if self.order == "largest" and n > 1:
            # largest discounted profile first (the LPT order; ties in arrival order: both sorts are
            # stable); assigned below in arrival order
            mass = profiles @ weights
            if n <= 16:
                mass = mass.tolist()
                order = sorted(range(n), key=lambda k: -mass[k])
            else:
                order = np.argsort(-mass, kind="stable").tolist()
        else:
            order = list(range(n))
        prompt_list = prompt.tolist()
        chosen = [0] * n
        if n < self.SCREEN_FROM:  # few arrivals: the exact check per request
            for k in order:
                g = int(kv.argmin())
                w = profiles[k]
                if np.count_nonzero(load[g] + w > top):  # it would raise a coming barrier on g
                    g = self._cheapest(load, top, w, kv, g, rise, score, weights, c1)
                    load[g] += w
                    np.maximum(top, load[g], out=top)
                elif k != order[-1]:  # (``load`` is this step's: the last update is not needed)
                    load[g] += w
                chosen[k] = g
                kv[g] += prompt_list[k]
                F[g, d:] += wide[k]
        else:
            peak = profiles.max(axis=1).tolist()  # m_i = max_h w_ih
            # headroom under the coming barriers, and the screen's margin (see the docstring)
            head = (top - load).min(axis=1).tolist()
            eps = 1e-9 * (float(_max(np.abs(load), axis=None)) + sum(peak)) + 1e-300
            pending: list[tuple[int, int]] = []  # (worker, request) rows not yet added to ``load``
            for k in order:
                g = int(kv.argmin())
                m = peak[k]
                if m + eps <= head[g]:  # fits for sure: price 0 on g, the least (see _route_marginal)
                    head[g] -= m + eps
                    pending.append((g, k))
                else:
                    for pg, pk in pending:
                        load[pg] += profiles[pk]
                    pending.clear()
                    w = profiles[k]
                    if np.count_nonzero(load[g] + w > top) == 0:
                        head[g] -= m + eps
                        load[g] += w
                    else:
                        g = self._cheapest(load, top, w, kv, g, rise, score, weights, c1)
                        load[g] += w
                        np.maximum(top, load[g], out=top)
                        head[g] = -np.inf
                chosen[k] = g
                kv[g] += prompt_list[k]
            if n < 12:  # the book's rows, in placement order: a row slice each (cheaper for a few)
                for k in order:
                    F[chosen[k], d:] += wide[k]
            else:  # one unbuffered update (the same additions, in the same order, row by row)
                np.add.at(F[:, d:], [chosen[k] for k in order], wide[order])
        for i, g in zip(ids.tolist(), chosen, strict=True):
            view.assign(i, g)

    def _route_one(self, view: FleetView, i: int, kv: np.ndarray, d: int, load: np.ndarray,
                   top: np.ndarray) -> None:
        """:meth:`_route_book` for a step with one arrival ``i`` (the same decision and arithmetic:
        least-KV's worker unless it would raise a coming barrier, then the cheapest)."""
        book = self.book
        wide = self._new_u[:book.W - d] + float(view.prompt[i])  # (s + u) S(u) / S(0), as np.add.outer
        wide *= self._new_ratio[:book.W - d]
        w = wide[:self.horizon]
        g = int(kv.argmin())
        if np.count_nonzero(load[g] + w > top):  # it would raise a coming barrier on g
            g = self._cheapest(load, top, w, kv, g, self._rise, self._score, self.weights,
                               self.instance.ms_per_kv_token)
        book.F[g, d:] += wide
        view.assign(i, g)

    def _route_fixed(self, view: FleetView, ids: np.ndarray) -> None:
        """:meth:`from_solution`'s rule: fixed LP prices, arrival order, no solver."""
        if len(ids) == 0:
            return
        if view.step - self.last_refresh >= self.refresh_every:  # survival for the profiles w_ih
            self.fc.refresh(view)
            self.last_refresh = view.step
        rho, sigma, kappa = self.fixed
        prompt = view.prompt[ids]
        pred = None if view.predicted is None else view.predicted[ids].astype(float)
        profiles = self.fc.new_profiles(prompt.astype(float), pred)
        # (n, G) bid prices [ms]: sum_h rho_gh w_ih + sigma_g + kappa_g (s_i + 1)
        score = profiles @ rho.T + sigma[None, :] + np.multiply.outer(prompt + 1.0, kappa)
        kv = view.kv_running + view.kv_queued
        for k, i in enumerate(ids.tolist()):
            best = float(score[k].min())
            cheapest = score[k] <= best + 1e-9 * max(1.0, abs(best))
            g = int(np.where(cheapest, kv, np.iinfo(np.int64).max).argmin())
            kv[g] += int(prompt[k])
            view.assign(i, g)

    def _solve(self, view: FleetView) -> None:
        G, H = view.workers, self.horizon
        self.fc.refresh(view)
        self._discount(view)
        base = self.fc.base_load(view)
        rate = max(self._arrival_rate(view), 1.0 / self.refresh_every)
        m = max(1.0, self.slack * rate * self.refresh_every)
        mean_prompt = self.prompt_sum / max(self.prompt_n, 1)
        profile = self.fc.profile(np.array([mean_prompt]), np.zeros(1), None)
        free = (view.slots - view.running - view.queued).astype(float).clip(0)
        if free.sum() < m:
            free += (m - free.sum()) / G
        kv_need = mean_prompt + 1
        self.unit = kv_need
        free_kv = (view.kv_capacity - view.kv_running - view.running - view.kv_queued)
        free_kv = free_kv.astype(float).clip(0)
        if free_kv.sum() < m * kv_need:
            free_kv += (m * kv_need - free_kv.sum()) / G
        epoch = Epoch(base, profile, [m], [kv_need], free, free_kv,
                      self.instance.ms_per_kv_token, self.gamma)
        self.epoch = epoch
        mat = epoch_matrices(epoch, relax=True)
        start = time.perf_counter()
        res = solve_matrix(mat, central=self.central)
        self.solve_s += time.perf_counter() - start
        self.solves += 1
        self.last_refresh = view.step
        self.routed = np.zeros(G)
        if res["status"] != "optimal":  # cannot happen with the overflow shares; be safe
            self.share = np.full(G, m / G)
            self.rho = np.zeros((G, H))
            self.sigma = self.kappa = np.zeros(G)
        else:
            price = res["price"]
            self.rho = price[mat.rows["worker_load"]].reshape(G, H)
            self.sigma = price[mat.rows["slots"]]
            self.kappa = price[mat.rows["kv_memory"]]
            self.share = res["x"][mat.cols["x"]]
        self.plan = True

    def _pick(self, view: FleetView, i: int) -> int:
        """One request of the LP-gated router: among the workers with plan share left."""
        open_ = self.share - self.routed > 1e-6
        if not open_.any():  # even a fresh plan has no share left for this request
            open_[:] = True
        if self.pick != "kv":
            pred = None if view.predicted is None else view.predicted[i:i + 1].astype(float)
            w = self.fc.profile(view.prompt[i:i + 1].astype(float), np.zeros(1), pred)[0]
        if self.pick == "marginal":
            # discounted ms by which the request would raise the barrier at each step
            rise = np.maximum(self.load + w[None, :], self.top[None, :]) - self.top[None, :]
            score = np.where(open_, self.instance.ms_per_kv_token * (rise @ self.weights), np.inf)
            best = score.min()
            open_ = score <= best + 1e-9 * max(1.0, abs(best))
        elif self.pick == "price":
            score = self.rho @ w + self.sigma + self.kappa * (view.prompt[i] + 1)
            score = np.where(open_, score, np.inf)
            best = score.min()
            # ties within 1e-9 of max(|best|, 1e4 c1): 1 ms at the default c1 = 1e-4, and in
            # the instance's time unit, as the prices are (solve_matrix), so that the choice
            # does not depend on that unit
            floor = 1e4 * self.instance.ms_per_kv_token or 1.0
            open_ = score <= best + 1e-9 * max(floor, abs(best))
        kv = np.where(open_, view.kv_running + view.kv_queued, np.iinfo(np.int64).max)
        g = int(np.argmin(kv))
        self.routed[g] += (view.prompt[i] + 1) / self.unit
        if self.pick == "marginal":
            self.load[g] += w
            self.top = np.maximum(self.top, self.load[g])
        return g


# ---------------------------------------------------------------------------------------------
# Per-step IP (slow exact policy)
# ---------------------------------------------------------------------------------------------
class EpochIP(Router):
    """Solve the epoch assignment IP for the requests arriving at each step (HiGHS MIP).

    Same forecast as :class:`BidPrice` (no new-request class: the actual arrivals are routed,
    each one binary). Slots and KV rows use the free capacity, spread over all workers when the
    fleet is full. Slow: one MIP per step with arrivals.

    ``time_limit`` is seconds per step's solve (None: none), not for the whole run: a run has
    up to one solve per step with arrivals. A solve stopped at the limit with an incumbent routes
    by that incumbent (not proved optimal); one that ends without an incumbent (at the limit, or
    failed) falls back to least-KV for that step's arrivals. After a run, and in the evaluator's
    metrics (:meth:`run_metrics`): ``epoch_solves`` (steps solved), ``epoch_time_limited``
    (solves stopped at the limit, incumbent used) and ``epoch_fallbacks`` (steps routed by
    least-KV instead; also ``router.fallbacks``). How many depends on the machine's load: at
    ``time_limit=0.001`` on ``generate(requests=300, workers=4, seed=0, load=0.9)`` 22 steps fell
    back in the R24 audit's run, 12 of 211 (34 more time-limited) in another.
    """

    name = "epoch_ip"

    def __init__(self, horizon: int = 16, discount: float = 0.8, prior_mean: float = 128.0,
                 time_limit: float | None = 2.0) -> None:
        self.horizon = _whole("horizon", horizon, MAX_STEPS)
        self.discount = number("discount", discount, lambda v: 0.0 < v <= 1.0, "in (0, 1] per step")
        self.prior_mean = number("prior_mean", prior_mean, lambda v: 0.0 < v < math.inf,
                                 "a finite number of output tokens > 0")
        check_options(time_limit, 0.0)  # refused here, not at the first step's solve
        self.time_limit = time_limit

    def reset(self, instance: InstanceView, seed: int = 0) -> None:
        super().reset(instance, seed)
        self.fc = _Forecaster(self.horizon, self.prior_mean)
        self.fallbacks = self.solves = self.time_limited = 0

    def run_metrics(self) -> dict[str, float]:
        """``epoch_solves``, ``epoch_time_limited`` and ``epoch_fallbacks`` of the last run
        (steps; see the class docstring)."""
        return {"epoch_solves": getattr(self, "solves", 0),
                "epoch_time_limited": getattr(self, "time_limited", 0),
                "epoch_fallbacks": getattr(self, "fallbacks", 0)}

    def route(self, view: FleetView, ids: np.ndarray) -> None:
        G = view.workers
        self.fc.refresh(view)
        base = self.fc.base_load(view)
        pred = None if view.predicted is None else view.predicted[ids].astype(float)
        prompt = view.prompt[ids].astype(float)
        profile = self.fc.profile(prompt, np.zeros(len(ids)), pred)
        free = (view.slots - view.running - view.queued).astype(float).clip(0)
        n = len(ids)
        if free.sum() < n:
            free += np.ceil((n - free.sum()) / G)
        need = prompt + 1
        free_kv = (view.kv_capacity - view.kv_running - view.running - view.kv_queued)
        free_kv = free_kv.astype(float).clip(0)
        if free_kv.sum() < need.sum() or free_kv.max() < need.max():
            free_kv += need.sum()
        epoch = Epoch(base, profile, np.ones(n), need, free, free_kv,
                      self.instance.ms_per_kv_token, self.discount)
        mat = epoch_matrices(epoch, relax=False)
        res = solve_matrix(mat, time_limit=self.time_limit)
        self.solves += 1
        if res.get("x") is None:
            self.fallbacks += 1
            fallback = LeastKV()
            for i in ids:
                view.assign(int(i), fallback.choose(view, int(i)))
            return
        self.time_limited += res["status"] == "time_limit"
        x = res["x"][mat.cols["x"]].reshape(n, G)
        for i, g in zip(ids, np.argmax(x, axis=1), strict=True):
            view.assign(int(i), int(g))


POLICIES: dict[str, Callable[[], Router]] = {
    "round_robin": RoundRobin,
    "random": RandomRouter,
    "jsq": JoinShortestQueue,
    "least_kv": LeastKV,
    "least_kv_sorted": LeastKVSorted,
    "p2c_kv": PowerOfTwoKV,
    "least_outstanding": LeastOutstanding,
    "bid_price": BidPrice,
    "bid_price_lp": lambda: BidPrice(gate=True, pick="kv", discount=0.8),
    "bid_price_argmin": lambda: BidPrice(gate=True, pick="price", refresh=2, discount=0.8),
    "epoch_ip": EpochIP,
}


def make_router(method: str | Router | Callable[[], Router]) -> Router:
    """A fresh router from a POLICIES name or value (a class or factory), or the router object.
    Also named :func:`make_policy`, as in the batch scheduling and caching solvers."""
    if isinstance(method, str):
        policies = layer_module("decode_routing", "solvers").POLICIES  # a replaced layer's
        if method not in policies:
            raise InvalidInstanceError(f"unknown decode routing method {method!r}; "
                                       f"choose one of {sorted(policies)}")
        return policies[method]()
    if isinstance(method, type) or (callable(method) and not hasattr(method, "route")):
        try:
            method = method()
        except TypeError as exc:
            raise InvalidInstanceError(f"cannot make a router from {method!r}: {exc}") from None
    if not all(hasattr(method, m) for m in ("reset", "on_step", "route")):
        raise InvalidInstanceError(
            f"a router needs reset(), on_step() and route(): subclass "
            f"servopt.solvers.decode_routing.Router and write choose(view, i) (or route); got "
            f"{type(method).__name__}")
    return method


make_policy = make_router  # (batch scheduling's and caching's solvers name theirs make_policy)
