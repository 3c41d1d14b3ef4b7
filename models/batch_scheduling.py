r"""Time-indexed hindsight model of admission into a continuous batch under a KV-memory limit.

Data (see :mod:`servopt.instances.batch_scheduling`): requests i with arrival round a_i, prompt
s_i and output o_i tokens; KV memory M tokens; optional batch cap B; horizon of T rounds
t = 0..T-1, counted from the first arrival: the builders (:func:`build`, :func:`build_cvxpy`,
:func:`build_matrix_model`, :func:`start_answer`, :func:`time_estimate`) model the instance with
every arrival moved min_i a_i rounds earlier (:func:`from_first_arrival`; total latency does
not change), with idle stretches cut short when the stream could span more than ``IDLE_ROUNDS``
rounds (:func:`model_clock`: same optimum; the cut rounds have no memory row), and label rounds,
starts and prices as the instance's. The lower-level helpers
(:func:`columns`, :func:`build_matrix`, :func:`horizon_rounds`, ...) count from round 0 of the
instance they are given. Request i admitted at round p holds s_i + (t - p + 1) tokens in rounds
t = p..p+o_i-1 and has end-to-end latency p + o_i - a_i rounds.

Formulation (Jaillet et al., arXiv 2502.07115, hindsight IP; symbols as in the code)::

    x[i, p] in {0, 1}    request i starts (is admitted) at round p,  a_i <= p <= last_i
    late[i] in {0, 1}    request i starts after last_i (beyond the modelled window)

    min  latency = sum_{i,p} (p + o_i - a_i) x[i,p] + sum_i (last_i + 1 + o_i - a_i) late[i]
    s.t. start_once[i]:  sum_p x[i,p] + late[i] = 1                               for all i
         kv_memory[t]:   sum_{i, p <= t <= p+o_i-1} (s_i + t - p + 1) x[i,p] <= M  for all t
         batch_size[t]:  sum_{i, p <= t <= p+o_i-1} x[i,p] <= B    for all t (only with a cap)

with last_i = min(T - o_i, a_i + window). The ``late`` column is costed at the earliest late
start and uses no memory, so the model is a *relaxation* of the true problem for any horizon
and window: its LP value (and its IP value) are valid lower bounds on the total latency of every
schedule that runs each request without a break once admitted (the class this model, like the
paper's, optimises over). The simulator of :mod:`servopt.benchmarks.batch_scheduling` lets a
preempted request resume where it stopped (as vLLM's recompute preemption keeps the emitted
tokens), at no extra round, so a preempting policy can end below these bounds (the gap tables
then mark the run ``below_bound``); only the ``area`` bound also holds for it. When the optimum
puts no weight on ``late`` it is a real schedule, hence optimal. The
``horizon`` option: ``None`` takes T from a feasible schedule (the makespan of shortest-first
admission with exact lengths), ``"safe"`` takes the smaller of T = max_i(a_i + o_i) + UB -
sum_i o_i, where UB is that schedule's total latency (every other request has latency >= its
o_j), and T = max_i a_i + sum_i o_i (:func:`no_idle_horizon`: an optimal schedule leaves no
round idle after the last arrival), at least the greedy makespan; no optimal schedule ends after
it, late columns are then priced out (:func:`late_costs`), and the IP is the exact hindsight
optimum. :func:`build` takes
``"safe"`` when ``horizon`` is None and ``relax`` is False, so that ``servopt.solve(instance)``
is the hindsight optimum; the LP keeps the shorter makespan horizon (a valid bound either way).

Prices (servopt convention: improvement of the optimum per unit of extra capacity, >= 0):

- ``kv_memory[t]``: rounds of total latency saved by one more KV token in round t, i.e. the
  price of one KV token-round. It is zero in rounds where memory is slack.
- ``batch_size[t]``: rounds of total latency saved by one more batch slot in round t.
- ``start_once[i]``: the marginal total latency of request i (rounds), its own latency plus the
  delay it imposes on others through the memory prices.

The LP of a request's start at round p has reduced cost
``p + o_i - a_i + sum_{j=1..o_i} mu[p + j - 1] (s_i + j) - start_once[i]`` (with a batch cap,
plus ``sum_{j=1..o_i} batch_size[p + j - 1]``): a request is worth
starting now when its latency value beats the price of its memory-time footprint. That is the
bid-price rule of :mod:`servopt.solvers.batch_scheduling`.

Cover inequalities (:func:`cover_cuts`): for a round t, a set C of requests and token
thresholds w_i with sum_{i in C} w_i > M, at most |C| - 1 requests of C can hold at least w_i
tokens each in round t; the columns holding that much in round t (and, extended, those of any
other request holding at least max_C w_i) sum to at most |C| - 1. Every schedule satisfies
them; the LP point often does not (it starts a large request fractionally in memory left over
by others), so adding them in a cut loop raises the lower bound (the solvers'
``cover_bound``).

Three builders share these symbols: :func:`build` (Pyomo, ``servopt.solve(...,
backend="pyomo")``: up to ``_MAX_PYOMO_ENTRIES`` = 5M memory-row entries, as it holds ~450 bytes
an entry, a twelfth of the default matrix path's 60M: use that path to go larger),
:func:`build_cvxpy` (the LP, written independently as a convolution of the start matrix) and
:func:`build_matrix` (scipy.sparse arrays, no Python loop over terms), which
:func:`build_matrix_model` labels for ``servopt.solve``'s default path. The IP (both paths)
starts from :func:`warm_start_schedule`, the best of a few exact-lookahead schedules.
:func:`build_coarse_matrix` builds a relaxation of the same problem over *buckets* of start
rounds (y[i, b]: the least latency and least KV of any start in bucket b), whose IP is a lower
bound; tests check it against brute force and, with buckets of one round, against the fine IP.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.core.expr.numeric_expr import LinearExpression

from servopt.core import InvalidInstanceError
from servopt.core.checks import whole_number
from servopt.core.cvxmodel import CvxpyModel
from servopt.core.matrix import Family, MatrixModel
from servopt.instances.batch_scheduling import Instance

OBJECTIVE_UNIT = "rounds"  # total end-to-end latency
_MAX_COLUMNS = 30_000_000
# memory rows (one per modelled round): above this the model is refused, whatever its columns
# (arrivals [0, 1e7, 1e7] of 3-round requests made 1e7 rows and 1e7 start columns: the OOM killer)
_MAX_ROUNDS = 10_000_000
# a model whose rounds from the first arrival could exceed this (max arrival + sum of outputs,
# :func:`no_idle_horizon`) is built with its idle stretches cut short (:func:`model_clock`)
IDLE_ROUNDS = 1_000_000
# fine memory-row entries: at the cap build_matrix peaks at 3.7 GB (~58 bytes an entry) and
# build_matrix_model with HiGHS's copy at 4.2 GB (benchmarks/results/limits.md)
_MAX_NONZEROS = 60_000_000
# fine memory-row entries of the Pyomo model (:func:`build`, ``backend="pyomo"``): it holds
# Python objects per term, ~410-460 bytes an entry with HiGHS's copy, peak RSS less a 157 MB
# baseline (servopt.solve(generate(110), backend="pyomo", time_limit=2), 1.63M entries: 822 MB
# in benchmarks/results/limits.md's batch_pyomo_entries, 897 MB from the CLI; the audit R12:
# 18.1M entries, 7.98 GB, 131 s), so its cap is a twelfth of the matrix path's: 2.2-2.4 GB at
# the cap, extrapolated linearly from those (not run at the cap)
_MAX_PYOMO_ENTRIES = 5_000_000

# Seconds per nonzero of the IP's matrix (generate(n, seed=0), n = 100-400, 1.4M-20M nonzeros;
# ``benchmarks/results/exact_time_limit.md``, "build and set-up rates"): build_matrix_model
# (the warm start included; 0.34-0.39 us per nonzero at load 4-5, 0.11 at load 1), and HiGHS's
# MIP set-up and root on it (presolve off, from the warm start), during which it does not read
# its clock: on a 0.01 s limit HiGHS stops after its set-up (0.25-0.42 us), on a 2 s limit after
# set-up and root (2.1-2.5 us at n = 100 and 200: 13 s at n = 200). :func:`time_estimate`
# scales them by the model's size; a busier machine takes longer, a quiet one less
BUILD_S_PER_NONZERO = 2.5e-7
SETUP_S_PER_NONZERO = 1.5e-6


# ---------------------------------------------------------------------------------------------
# A feasible schedule (for the horizon) and the column set
# ---------------------------------------------------------------------------------------------
def fits(c_run: np.ndarray, r_run: np.ndarray, c_new: Any, r_new: Any, memory: int) -> Any:
    """Will memory stay within ``memory`` if a request joins the running set?

    ``c`` is each request's KV tokens in the current round, ``r`` its remaining rounds
    (including this one); a request holds c + k tokens k rounds from now while k < r. Memory
    only grows between completions, so it is checked at every completion offset k = r - 1 of
    the running set and of the newcomer. ``c_new`` and ``r_new`` may be arrays of candidates
    (each checked on its own against the running set): the answer is then one bool per
    candidate. Cost O(candidates x running + running^2).
    """
    c_run = np.asarray(c_run, dtype=np.int64)
    r_run = np.asarray(r_run, dtype=np.int64)
    one = np.ndim(c_new) == 0 and np.ndim(r_new) == 0
    c_new = np.atleast_1d(np.asarray(c_new, dtype=np.int64))
    r_new = np.atleast_1d(np.asarray(r_new, dtype=np.int64))
    last = r_new - 1  # the candidate's own completion offset
    # memory of the running set at each candidate's completion offset
    held_last = ((r_run > last[:, None]) * (c_run + last[:, None])).sum(axis=1)
    ok = held_last + c_new + last <= memory
    if len(r_run):  # ... and at each completion offset of the running set
        ks = r_run - 1
        held = ((r_run > ks[:, None]) * (c_run + ks[:, None])).sum(axis=1)
        ok &= ((r_new[:, None] > ks) * (c_new[:, None] + ks) + held <= memory).all(axis=1)
    return bool(ok[0]) if one else ok


def first_fit_delay(c_run: np.ndarray, r_run: np.ndarray, c_new: np.ndarray, r_new: np.ndarray,
                    memory: int, within: int) -> int:
    """The fewest rounds d in 1..``within`` - 1 after which one of the candidates fits
    (:func:`fits` with the running set d rounds on: ``c_run + d``, ``r_run - d``), or ``within``
    when none does. The running set must not change in between (``within`` <= min(r_run)).

    Per candidate, from d = 1: where :func:`fits` fails, each failed check names the least d at
    which it can hold again, and d jumps to the largest of them (a lower bound on the first fit,
    so no fit is passed over). The check at a running request j's last round (offset r_j - 1)
    sees the running set's memory H_j there, which does not depend on d, plus the candidate's
    c + r_j - 1 - d when it still runs then: it fails until d = H_j + c + r_j - 1 - M. The check
    at the candidate's own last round sees the requests still running then, each holding one
    more token per round of delay: it fails until one of them has ended before it
    (d = r_i - r + 1). Cost O(candidates x running) per jump, a few jumps in practice.
    """
    c_run = np.asarray(c_run, dtype=np.int64)
    r_run = np.asarray(r_run, dtype=np.int64)
    c_new = np.asarray(c_new, dtype=np.int64)
    r_new = np.asarray(r_new, dtype=np.int64)
    if within <= 1 or not len(c_new):
        return int(within)
    # H_j: the running set's memory at j's last round (offset r_j - 1 from now)
    held = ((r_run[None, :] >= r_run[:, None]) * (c_run[None, :] + r_run[:, None] - 1)).sum(axis=1)
    d = np.ones(len(c_new), dtype=np.int64)
    never = np.iinfo(np.int64).max
    found = int(within)  # the earliest fit seen so far
    while True:
        idx = np.flatnonzero(d < found)
        if not idx.size:
            return found
        c, r, dd = c_new[idx, None], r_new[idx, None], d[idx, None]
        # fits() d rounds on, one row per candidate: the check at each running request's last
        # round (offset r_j - 1 - d from then) ...
        own = (r > r_run[None, :] - dd - 1) * (c + r_run[None, :] - dd - 1)
        failing = own + held[None, :] > memory
        # ... and at the candidate's own last round, with the requests still running then
        still = r_run[None, :] >= r + dd
        at_last = (still * (c_run[None, :] + dd + r - 1)).sum(axis=1) + c[:, 0] + r[:, 0] - 1
        late = at_last > memory
        ok = ~late & ~failing.any(axis=1)
        if ok.any():  # a fit; the other candidates may still fit earlier than it
            found = int(d[idx[ok]].min())
            d[idx[ok]] = found
        # the least d at which each failed check can hold again; d jumps to the largest
        threshold = held[None, :] + c + r_run[None, :] - 1 - memory
        nxt = np.maximum(dd[:, 0] + 1, np.where(failing, threshold, 0).max(axis=1, initial=0))
        ends = np.where(still, r_run[None, :] - r + 1, never).min(axis=1, initial=never)
        d[idx[~ok]] = np.where(late, np.maximum(nxt, ends), nxt)[~ok]


def lookahead_schedule(instance: Instance, priority: np.ndarray, *, skip: bool = False,
                       deadline: float | None = None) -> np.ndarray:
    """Start rounds of a feasible schedule: exact-lookahead admission in ``priority`` order.

    At each round the waiting requests (by ``priority``, then arrival, then index) are admitted
    while memory stays within M at every future round (:func:`fits`, true lengths) and the batch
    cap holds. ``skip=False`` stops at the first request that does not fit; ``skip=True`` passes
    over it and admits the next ones that fit (a request that fails cannot fit later in the same
    round: every admission only adds memory).

    Rounds in which nothing can happen are jumped over: after a round, the next one looked at is
    the first with an arrival, a completion or an admission (:func:`first_fit_delay`: the first
    round the head of the queue, or with ``skip`` any waiting request, fits while the running
    set stays as it is). The schedule is the one of stepping every round; the cost is
    O(events x waiting x running), not proportional to the outputs (a 1e6-token output is 1e6
    rounds).

    ``deadline`` (a ``time.perf_counter()`` value): checked at every event; TimeoutError once
    it has passed (no schedule: a part of one is not feasible).
    """
    a, s, o = instance.arrival, instance.prompt_tokens, instance.output_tokens
    M, cap = instance.kv_memory, instance.max_batch or instance.n
    start = np.full(instance.n, -1, dtype=np.int64)
    order = np.lexsort((np.arange(instance.n), a, priority))
    t = 0
    while np.any(start < 0):
        if deadline is not None and time.perf_counter() >= deadline:
            raise TimeoutError(f"a lookahead schedule passed its deadline at round {t} "
                               f"({int(np.sum(start >= 0))} of {instance.n} requests started)")
        running = (start >= 0) & (start + o - 1 >= t)
        waiting = order[(start[order] < 0) & (a[order] <= t)]
        if not waiting.size and not running.any():
            t = int(a[start < 0].min())
            continue
        c_run = s[running] + (t - start[running]) + 1
        r_run = start[running] + o[running] - t
        if skip:
            while waiting.size and len(c_run) < cap:
                ok = fits(c_run, r_run, s[waiting] + 1, o[waiting], M)
                if not ok.any():
                    break
                k = int(np.argmax(ok))
                i = waiting[k]
                start[i] = t
                c_run, r_run = np.append(c_run, s[i] + 1), np.append(r_run, o[i])
                waiting = waiting[k + 1:]
            waiting = order[(start[order] < 0) & (a[order] <= t)]  # all of them, next round
        else:
            for k, i in enumerate(waiting):
                if len(c_run) >= cap or not fits(c_run, r_run, s[i] + 1, o[i], M):
                    waiting = waiting[k:k + 1]  # the head: nothing behind it starts before it
                    break
                start[i] = t
                c_run, r_run = np.append(c_run, s[i] + 1), np.append(r_run, o[i])
            else:
                waiting = waiting[:0]
        # the next round where something can change: an arrival, a completion, an admission
        later = a[(start < 0) & (a > t)]
        step = int(later.min()) - t if later.size else None
        if len(r_run):
            step = int(r_run.min()) if step is None else min(step, int(r_run.min()))
        if step is None:  # nothing runs and nothing is to come: the waiting start next round
            step = 1
        if waiting.size and len(c_run) < cap and step > 1:
            step = first_fit_delay(c_run, r_run, s[waiting] + 1, o[waiting], M, step)
        t += step
    return start


def greedy_schedule(instance: Instance) -> np.ndarray:
    """Start rounds of a feasible schedule: shortest true output first, exact lookahead.

    At each round the waiting requests (by output, then arrival, then index) are admitted while
    memory stays within M at every future round (and the batch cap holds), stopping at the
    first that does not fit (:func:`lookahead_schedule`). It sets the model's horizon.
    """
    return lookahead_schedule(instance, instance.output_tokens)


WARM_PRICES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # warm-start memory prices x M


def warm_start_schedule(instance: Instance) -> np.ndarray:
    """The IP's warm start: the best of a few exact-lookahead schedules (true lengths).

    Each orders the waiting requests by ``o_i + (mu / M) x footprint_i`` (output rounds plus a
    stationary memory price mu / M per KV token-round times the request's token-rounds,
    :meth:`Instance.footprint`) for mu in ``WARM_PRICES`` and admits either stopping at the
    first request that does not fit or skipping it (:func:`lookahead_schedule`). mu = 0 with
    stopping is :func:`greedy_schedule`, so the start is never worse than it. Deterministic (ties:
    the first candidate in that order). No solver: 0.25-1.6 s at n = 50-100 on a shared machine
    (``benchmarks/results/batch_scheduling_warm_start_bracket.md``), about 15 s at n = 2000
    online. The price grid was chosen on generated instances of seeds 10-19 (n = 50 and 100,
    uniform and Azure lengths, all at round 0), not on the reported ones: there a grid stopping at
    8 was 0.2% above this one on average (2.8% at worst) and shortest-first alone 18% (29%); the
    best schedule came from a skipping variant on at least 35 of the 40 instances.
    """
    return best_warm_start(instance)[0]


def warm_start_candidates() -> list[tuple[bool, float]]:
    """(skip, mu) of :func:`warm_start_schedule`'s schedules, in the order they are tried: the
    first, (False, 0.0), is :func:`greedy_schedule`."""
    return [(skip, mu) for skip in (False, True) for mu in WARM_PRICES]


def best_warm_start(instance: Instance, *, deadline: float | None = None,
                    greedy: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """:func:`warm_start_schedule` under a ``deadline`` (a ``time.perf_counter()`` value), and
    how many of its :func:`warm_start_candidates` were computed. The first (shortest-first
    admission, O(events x waiting x running)) always is; a later one that the deadline stops
    (:func:`lookahead_schedule` checks it at every event) is dropped with those after it, so the
    answer is the best of the first k, the same schedule as :func:`warm_start_schedule` when k
    is all of them. No deadline: all of them. ``greedy``: the first, when already computed."""
    footprint = instance.footprint().astype(float)
    o = instance.output_tokens.astype(float)
    best, best_cost, done = None, math.inf, 0
    for k, (skip, mu) in enumerate(warm_start_candidates()):
        try:
            start = greedy if k == 0 and greedy is not None else lookahead_schedule(
                instance, o + mu / instance.kv_memory * footprint, skip=skip,
                deadline=None if k == 0 else deadline)
        except TimeoutError:
            break
        done += 1
        cost = schedule_latency(instance, start)
        if cost < best_cost:
            best, best_cost = start, cost
    return best, done


def run_rounds(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One entry per round of each run of ``lengths[k]`` rounds: the run k and j = 1..lengths[k]
    (a request started at p is in its j-th round in round p + j - 1, holding s + j tokens)."""
    col = np.repeat(np.arange(len(lengths)), lengths)
    j = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
    return col, j


def memory_profile(instance: Instance, start: np.ndarray, rounds: int | None = None) -> np.ndarray:
    """KV tokens held in each round by a schedule given by start rounds (vectorised)."""
    start = np.asarray(start, dtype=np.int64)
    o, s = instance.output_tokens, instance.prompt_tokens
    if rounds is None:
        rounds = int(np.max(start + o))
    col, j = run_rounds(o)
    return np.bincount(start[col] + j - 1, weights=(s[col] + j).astype(float),
                       minlength=rounds)[:rounds]


def batch_profile(instance: Instance, start: np.ndarray, rounds: int | None = None) -> np.ndarray:
    """Requests running in each round of a schedule given by start rounds (vectorised)."""
    start = np.asarray(start, dtype=np.int64)
    o = instance.output_tokens
    if rounds is None:
        rounds = int(np.max(start + o))
    col, j = run_rounds(o)
    return np.bincount(start[col] + j - 1, minlength=rounds)[:rounds]


def is_feasible(instance: Instance, start: np.ndarray) -> bool:
    """Does a schedule respect arrivals, the memory in every round and the batch cap? Checked on
    the rounds where something runs only, so a schedule stamped 1e9 rounds in or across a long
    idle gap costs O(sum of outputs), nothing sized by its last round."""
    start = np.asarray(start, dtype=np.int64)
    if start.shape != (instance.n,) or np.any(start < instance.arrival):
        return False
    if instance.n == 0:
        return True
    col, j = run_rounds(instance.output_tokens)
    _, busy = np.unique(start[col] + j - 1, return_inverse=True)  # the rounds something runs in
    memory = np.bincount(busy, weights=(instance.prompt_tokens[col] + j).astype(float))
    if memory.max() > instance.kv_memory:
        return False
    return instance.max_batch is None or int(np.bincount(busy).max()) <= instance.max_batch


def schedule_latency(instance: Instance, start: np.ndarray) -> float:
    """Total end-to-end latency (rounds) of a schedule given by start rounds."""
    return float(np.sum(start + instance.output_tokens - instance.arrival))


def no_idle_horizon(instance: Instance) -> int:
    """A_max + sum_i o_i: no optimal schedule ends later (rounds).

    After the last arrival A_max, a schedule with a round where nothing runs and a later start
    can shift everything that starts later one round earlier (memory and batch profiles move
    with it, and nothing that started before is still running), lowering total latency; so an
    optimal schedule runs something in every round from A_max to its end, at most sum_i o_i."""
    return int(np.max(instance.arrival)) + int(np.sum(instance.output_tokens))


def first_round(instance: Instance) -> int:
    """The first arrival round min_i a_i (0 for no request): where the builders' clock starts."""
    return int(np.min(instance.arrival)) if instance.n else 0


def from_first_arrival(instance: Instance) -> tuple[Instance, int]:
    """The instance with every arrival moved ``first_round`` rounds earlier (the first at round
    0), and that shift. Total latency sum_i (p_i + o_i - a_i) does not change when every arrival
    and start moves by the same number of rounds, so a model of the moved instance has the same
    costs, and its rounds + the shift are those of the given one. The builders solve it so that
    a clock that does not start at 0 (a stream stamped 1.7e9 rounds in) costs nothing: the
    model's rounds ran from round 0 (1.7e9 memory rows: a MemoryError; +1e7: 2.4 GB)."""
    origin = first_round(instance)
    if origin == 0:
        return instance, 0
    return dataclasses.replace(instance, arrival=instance.arrival - origin), origin


def compress_idle(instance: Instance) -> Instance:
    """The instance with every idle stretch cut short: where the requests that arrived before a
    gap can all finish (their arrival max + sum of outputs, :func:`no_idle_horizon`'s argument)
    before the next arrival, later arrivals move earlier to that round. An optimal schedule of
    the earlier requests ends by then, so the parts never meet: the optimum is unchanged (and
    the LP of the compressed instance is still a lower bound on it), with far fewer rounds.
    The stretch before the first arrival is cut too (the first arrival moves to round 0)."""
    a, o = instance.arrival, instance.output_tokens
    order = np.argsort(a, kind="stable")
    sa, so = a[order].astype(np.int64), o[order].astype(np.int64)
    shifted = sa.copy()
    # the current part's last arrival and total output so far; the first part starts at 0
    shift, latest, work = (int(sa[0]) if len(sa) else 0), 0, 0
    for k in range(len(sa)):  # one pass; the Python loop is over requests, not rounds
        arrival = int(sa[k]) - shift
        if k and arrival > latest + work:  # the part before can finish by latest + work
            shift += arrival - (latest + work)
            arrival = latest + work
            work = 0  # a new part starts here
        shifted[k] = arrival
        latest, work = max(latest, arrival), work + int(so[k])
    if shift == 0:
        return instance
    new = np.empty_like(shifted)
    new[order] = shifted
    return dataclasses.replace(instance, arrival=new)


@dataclasses.dataclass
class Clock:
    """How a model's rounds map to its instance's (:func:`model_clock`): request i's round p in
    the model is round p + ``shift[i]`` of the instance; a model round t of the part that begins
    at model round ``starts[k]`` is instance round t + ``shifts[k]``. ``ends[i]``: the model
    round by which request i's run must end (the next part's first arrival), None: no such cap
    (one part: every shift is the first arrival's)."""

    shift: np.ndarray
    starts: np.ndarray
    shifts: np.ndarray
    ends: np.ndarray | None = None

    def rounds(self, t: np.ndarray) -> np.ndarray:
        """The instance's rounds of model rounds ``t``."""
        t = np.asarray(t, dtype=np.int64)
        return t + self.shifts[np.searchsorted(self.starts, t, side="right") - 1]

    def labels(self, rounds: int) -> pd.Index:
        """The ``round`` labels of model rounds 0..``rounds`` - 1 (a RangeIndex for one part)."""
        if len(self.shifts) == 1:
            first = int(self.shifts[0])
            return pd.RangeIndex(first, first + rounds, name="round")
        return pd.Index(self.rounds(np.arange(rounds)), name="round")


def model_clock(instance: Instance, horizon: Any = None, window: int | None = None
                ) -> tuple[Instance, Clock]:
    """The instance the builders model and how its rounds map back (:class:`Clock`);
    ``window`` does not change it (the builders apply it to the instance returned).

    Always the instance from its first arrival (:func:`from_first_arrival`). With the default
    horizon (None or ``"safe"``; a number of rounds counts from the first arrival, uncut) and
    more than ``IDLE_ROUNDS`` rounds possible (:func:`no_idle_horizon`), also with its idle
    stretches cut short (:func:`compress_idle`: each part of the stream after a stretch moves
    earlier by its own shift) and every request's run capped to end by the next part's first
    arrival (``Clock.ends``). Every optimal schedule ends each part by then
    (:func:`no_idle_horizon`'s argument), so the capped model has the same optimum (with a
    ``window``, its late columns still make it a relaxation: an optimal schedule's starts
    within the window keep their columns), and every schedule of it, moved back part by part,
    is a schedule of the instance with the same latency: decisions and prices are labelled by
    the instance's rounds (the rounds of a cut stretch have no memory row: nothing can run
    there in the model)."""
    short, origin = from_first_arrival(instance)
    n = short.n
    flat = Clock(np.full(n, origin, dtype=np.int64), np.zeros(1, dtype=np.int64),
                 np.array([origin], dtype=np.int64))
    if (not n or not (horizon is None or horizon == "safe")
            or no_idle_horizon(short) <= IDLE_ROUNDS):
        return short, flat
    cut = compress_idle(short)
    if cut is short:
        return short, flat
    shift = np.asarray(instance.arrival, dtype=np.int64) - cut.arrival
    shifts = np.unique(shift)  # one per part, rising with the parts
    part = np.searchsorted(shifts, shift)
    starts = np.full(len(shifts), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(starts, part, cut.arrival.astype(np.int64))
    never = np.iinfo(np.int64).max // 4  # the last part: no cap
    ends = np.append(starts[1:], never)[part]
    return cut, Clock(shift, starts, shifts, ends)


def horizon_rounds(instance: Instance, horizon: Any = None, *, greedy: np.ndarray | None = None
                   ) -> int:
    """Number of modelled rounds T (see the module docstring for ``None`` and ``"safe"``);
    ``greedy``: :func:`greedy_schedule`'s, when already computed."""
    if horizon is None or horizon == "safe":
        start = greedy_schedule(instance) if greedy is None else greedy
        makespan = int(np.max(start + instance.output_tokens))
        if horizon is None:
            return makespan
        ub = schedule_latency(instance, start)
        slack = ub - float(instance.output_tokens.sum())
        by_cost = int(np.max(instance.arrival + instance.output_tokens) + slack)
        return int(max(makespan, min(by_cost, no_idle_horizon(instance))))
    return check_horizon(horizon)


def check_horizon(horizon: Any) -> Any:
    """``horizon`` as the models take it: None, ``"safe"`` or a whole number of rounds >= 1
    (returned as an int); anything else is refused by name."""
    if horizon is None or (isinstance(horizon, str) and horizon == "safe"):
        return horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise InvalidInstanceError(f"horizon must be None, 'safe' or a positive number of rounds, "
                                   f"got {horizon!r}")
    return int(horizon)


@dataclasses.dataclass
class Columns:
    """The start columns of the time-indexed model: column k = (request[k], start[k])."""

    rounds: int
    request: np.ndarray
    start: np.ndarray
    cost: np.ndarray
    last: np.ndarray
    late_cost: np.ndarray


def _last_starts(instance: Instance, rounds: int, window: int | None,
                 ends: np.ndarray | None = None) -> np.ndarray:
    """last_i = min(T - o_i, a_i + window, ends_i - o_i): each request's latest modelled start
    (``ends``: :attr:`Clock.ends`, the round each run must end by; None: none)."""
    a, o = instance.arrival, instance.output_tokens
    last = rounds - o
    if window is not None:
        last = np.minimum(last, a + whole_number("window (rounds)", window, low=0))
    if ends is not None:
        last = np.minimum(last, ends - o)
    return last


def model_size(instance: Instance, horizon: Any = None, window: int | None = None,
               ends: np.ndarray | None = None) -> tuple[int, int, int]:
    """(rounds T, start columns, fine memory-row entries) of the model, counted, not built.
    Exact where int64 holds them; above 2**62 (1e6-token outputs over a horizon of 1e9 rounds
    and more, which int64 wrapped to a negative count) the float sum, a size far past any cap.
    ``ends``: :attr:`Clock.ends`."""
    T = horizon_rounds(instance, horizon)
    return (T, *_counted(instance, T, window, ends))


def _counted(instance: Instance, rounds: int, window: int | None,
             ends: np.ndarray | None) -> tuple[int, int]:
    """(start columns, fine memory-row entries) of the model over ``rounds`` rounds."""
    count = np.maximum(0, _last_starts(instance, rounds, window, ends) - instance.arrival + 1)
    return _sum_past_int64(count, 1), _sum_past_int64(count, instance.output_tokens)


def _sum_past_int64(count: np.ndarray, weight: Any) -> int:
    """sum(count x weight): exact where int64 holds it; above 2**62 (where int64 would wrap to a
    negative count) the float sum, a size far past any cap."""
    approx = float(np.sum(count.astype(float) * weight))
    if approx >= 2.0**62:
        return int(approx)
    with np.errstate(over="ignore"):  # (it holds here)
        return int(np.sum(count * weight))


def horizon_lower_bound(instance: Instance) -> int:
    """Rounds (from round 0 of ``instance``) that the makespan of every schedule reaches, in
    O(n) and without a schedule: the largest a_i + o_i; the KV token-rounds of all requests
    (sum_i :meth:`~Instance.footprint`) over the memory M, as no round holds more than M; with a
    batch cap B, the output rounds sum_i o_i over B. The default horizons (None: the greedy
    schedule's makespan; ``"safe"``: at least that) are never shorter."""
    if not instance.n:
        return 0
    o = instance.output_tokens.astype(float)
    work = float(np.sum(instance.prompt_tokens.astype(float) * o + o * (o + 1) / 2))
    # whole rounds: the ceiling, taken a hair low (float sums: no overflow, some rounding)
    bound = max(int(np.max(instance.arrival + instance.output_tokens)),
                math.ceil(work / instance.kv_memory * (1 - 1e-9)))
    if instance.max_batch is not None:
        bound = max(bound, math.ceil(float(np.sum(o)) / instance.max_batch * (1 - 1e-9)))
    return bound


def size_lower_bound(instance: Instance, horizon: Any = None, window: int | None = None,
                     ends: np.ndarray | None = None) -> tuple[int, int, int]:
    """What :func:`model_size` is at least, in O(n): (rounds, start columns, fine memory-row
    entries) counted on :func:`horizon_lower_bound`'s rounds for the default horizons (so no
    greedy schedule, O(events x waiting x running): 146 s at 100,000 requests), on the given
    number of rounds otherwise (then exact). Each request's start columns only grow with the
    horizon, so each count is at most the model's."""
    if horizon is None or horizon == "safe":
        rounds = horizon_lower_bound(instance)
    else:
        rounds = horizon_rounds(instance, horizon)
    return (rounds, *_counted(instance, rounds, window, ends))


def _refuse_certainly_large(instance: Instance, horizon: Any, window: int | None,
                            ends: np.ndarray | None, *, with_memory_rows: bool,
                            pyomo: bool = False) -> None:
    """Refuse, before the greedy schedule that sets the default horizon, a model that
    :func:`size_lower_bound` already puts over a cap (:func:`_column_counts`'s, with the same
    messages): an instance of 100,000 requests was refused only after 146 s of that schedule."""
    rounds, starts, entries = size_lower_bound(instance, horizon, window, ends)
    _refuse_size(rounds, starts, entries if with_memory_rows else None, pyomo=pyomo,
                 at_least=horizon is None or horizon == "safe")


def _refuse_size(rounds: int, starts: int, entries: int | None, *, pyomo: bool = False,
                 at_least: bool = False) -> None:
    """The model's size refusals: ``rounds`` memory rows above ``_MAX_ROUNDS`` and ``entries``
    above the entries cap (``_MAX_NONZEROS``, or ``_MAX_PYOMO_ENTRIES`` for the Pyomo model,
    ``pyomo``; both only when ``entries`` is given: the caller builds memory rows),
    ``starts`` start columns above ``_MAX_COLUMNS``. ``at_least``: the counts are lower bounds."""
    least = "at least " if at_least else ""
    if entries is not None and rounds > _MAX_ROUNDS:  # (checked first: the rows come first)
        raise InvalidInstanceError(
            f"the time-indexed model would have {least}{rounds:,} rounds, one memory row each "
            f"(more than {_MAX_ROUNDS:,}): pass a smaller horizon, or use the area bound (a long "
            f"idle stretch is cut short only with the default horizon)")
    if starts > _MAX_COLUMNS:
        raise InvalidInstanceError(
            f"the time-indexed model would have {least}{starts:,} start columns (more than "
            f"{_MAX_COLUMNS:,}): pass a smaller horizon or a window, or use the area bound")
    if entries is not None:
        _check_entries(entries, pyomo=pyomo, at_least=at_least)


def time_estimate(instance: Instance, *, relax: bool = False, horizon: Any = None,
                  window: int | None = None) -> dict[str, float]:
    """What :func:`build_matrix_model` with these options would cost, counted without building
    it (the greedy schedule of the horizon only): ``nonzeros`` of its matrix, ``build_s`` the
    seconds of the build and ``setup_s`` those of HiGHS's MIP set-up on it, at the measured
    rates (``BUILD_S_PER_NONZERO``, ``SETUP_S_PER_NONZERO``; a busy machine takes longer).
    ``servopt.solve`` under a time limit builds the IP only when both fit in what is left."""
    if horizon is None and not relax:
        horizon = "safe"
    instance, clock = model_clock(instance, horizon, window)
    _refuse_certainly_large(instance, horizon, window, clock.ends, with_memory_rows=True)
    _, starts, entries = model_size(instance, horizon, window, clock.ends)
    nonzeros = starts + instance.n + entries * (1 if instance.max_batch is None else 2)
    return {"nonzeros": float(nonzeros), "build_s": BUILD_S_PER_NONZERO * nonzeros,
            "setup_s": SETUP_S_PER_NONZERO * nonzeros}


def _on_time(deadline: float | None, done: str) -> None:
    """Raise TimeoutError when the build's ``deadline`` (a ``time.perf_counter()`` value) has
    passed, naming the stage just ``done``."""
    if deadline is not None and time.perf_counter() >= deadline:
        raise TimeoutError(f"the batch-scheduling model's build passed its deadline "
                           f"({done}); the matrix was not finished")


def columns(instance: Instance, horizon: Any = None, window: int | None = None, *,
            with_memory_rows: bool = False, ends: np.ndarray | None = None,
            pyomo: bool = False) -> Columns:
    """Every allowed (request, start round) pair and the cost of each late column.
    ``with_memory_rows``: the caller goes on to the fine memory rows (:func:`usage`), so their
    size (above ``_MAX_NONZEROS``, or with ``pyomo`` the Pyomo model's ``_MAX_PYOMO_ENTRIES``)
    and their number (the rounds) are refused here, before the
    columns are allocated (up to 30M of them, ~1 GB). A model that :func:`size_lower_bound`
    already puts over a cap is refused before the default horizon's greedy schedule.
    ``ends``: :attr:`Clock.ends` (each run ends by then)."""
    _refuse_certainly_large(instance, horizon, window, ends, with_memory_rows=with_memory_rows,
                            pyomo=pyomo)
    T = horizon_rounds(instance, horizon)
    a, o = instance.arrival, instance.output_tokens
    last = _last_starts(instance, T, window, ends)
    count = _column_counts(instance, last, with_memory_rows=with_memory_rows, rounds=T,
                           pyomo=pyomo)
    request = np.repeat(np.arange(instance.n), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    start = a[request] + offset
    cost = (start + o[request] - a[request]).astype(float)
    late_cost = late_costs(instance, T, last, ends=ends)
    return Columns(T, request, start, cost, np.maximum(last, a - 1), late_cost)


def _column_counts(instance: Instance, last: np.ndarray, *, with_memory_rows: bool,
                   rounds: int | None = None, pyomo: bool = False) -> np.ndarray:
    """Each request's start columns (a_i..``last_i``), refused above ``_MAX_COLUMNS`` in all
    (and, ``with_memory_rows``, their memory-row entries above the cap, with ``pyomo`` the Pyomo
    model's, and the ``rounds`` of memory rows above ``_MAX_ROUNDS``)."""
    count = np.maximum(0, last - instance.arrival + 1)
    entries = _sum_past_int64(count, instance.output_tokens) if with_memory_rows else None
    _refuse_size(0 if rounds is None else rounds, _sum_past_int64(count, 1), entries,
                 pyomo=pyomo)
    return count


def late_costs(instance: Instance, rounds: int, last: np.ndarray, *,
               greedy: np.ndarray | None = None, ends: np.ndarray | None = None) -> np.ndarray:
    """Cost of each request's late column (a start after ``last``).

    In general the earliest late start's latency (``last + 1 + o - a``): the late column is then
    a relaxation. When T >= :func:`no_idle_horizon` no optimal schedule starts a request after
    T - o_i, so a late column that is not cut by a window is costed at UB + 1 - sum_{k != i} o_k
    instead (UB: the greedy schedule's latency): any solution using it costs more than UB, so the
    IP never picks it, and the LP stays below the optimum, which the model still contains.
    So is one cut only by its part's end (``ends``, :attr:`Clock.ends`: every optimal schedule
    ends the part by then). ``greedy``: the greedy schedule, when already computed."""
    a, o = instance.arrival, instance.output_tokens
    cost = (np.maximum(last, a - 1) + 1 + o - a).astype(float)
    if rounds >= no_idle_horizon(instance):
        ub = schedule_latency(instance, greedy_schedule(instance) if greedy is None else greedy)
        floor = ub + 1.0 - (float(np.sum(o)) - o)
        uncut = last == (rounds - o if ends is None else np.minimum(rounds, ends) - o)
        cost = np.where(uncut, np.maximum(cost, floor), cost)
    return cost


def memory_entries(instance: Instance, cols: Columns) -> int:
    """Entries of the fine memory rows (one per column and round it runs): what they allocate."""
    return int(np.sum(instance.output_tokens[cols.request]))


def _check_entries(entries: int, *, pyomo: bool = False,
                   at_least: bool = False) -> None:
    """Refuse fine memory rows of more than ``_MAX_NONZEROS`` entries (the matrix path's), or
    with ``pyomo`` more than ``_MAX_PYOMO_ENTRIES`` (the Pyomo model's)."""
    cap = _MAX_PYOMO_ENTRIES if pyomo else _MAX_NONZEROS
    if entries <= cap:
        return
    least = "at least " if at_least else ""
    if pyomo:
        raise InvalidInstanceError(
            f"the Pyomo model's memory rows would have {least}{entries:,} entries (more than "
            f"{_MAX_PYOMO_ENTRIES:,}: Pyomo keeps Python objects per entry, ~410-460 bytes "
            f"each with the solver's copy): use the default backend (servopt solve without --backend "
            f"pyomo; backend='highs' from Python), whose matrix form takes up to "
            f"{_MAX_NONZEROS:,} entries, or pass a smaller horizon or a window")
    raise InvalidInstanceError(
        f"the time-indexed model's memory rows would have {least}{entries:,} entries (more than "
        f"{cap:,}, about 4 GB with the solver's copy): pass a smaller horizon or a "
        "window, or use the area or coarse bound")


def usage(instance: Instance, cols: Columns, *, pyomo: bool = False
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO triplets (round, column, KV tokens) of the memory rows (refused above
    the entries cap, ``pyomo``: the Pyomo model's)."""
    _check_entries(memory_entries(instance, cols), pyomo=pyomo)
    col, j = run_rounds(instance.output_tokens[cols.request])
    row = cols.start[col] + j - 1
    tokens = instance.prompt_tokens[cols.request][col] + j
    return row, col, tokens.astype(float)


# ---------------------------------------------------------------------------------------------
# Pyomo
# ---------------------------------------------------------------------------------------------
def build(instance: Instance, *, relax: bool = False, horizon: Any = None,
          window: int | None = None) -> pyo.ConcreteModel:
    """The time-indexed hindsight IP (or its LP with ``relax=True``) as a Pyomo model, refused
    above ``_MAX_PYOMO_ENTRIES`` memory-row entries (~450 bytes each: use the default backend,
    :func:`build_matrix_model`, to go larger).

    The IP's default horizon is ``"safe"`` (exact); the LP's the greedy makespan (smaller).
    Rounds are counted from the first arrival (:func:`from_first_arrival`: ``horizon`` is a
    number of rounds from it; a long idle stretch is cut short, :func:`model_clock`) and
    labelled as the instance's (``x[i, p]``, ``kv_memory[t]``)."""
    if horizon is None and not relax:
        horizon = "safe"
    instance, clock = model_clock(instance, horizon, window)
    cols = columns(instance, horizon, window, with_memory_rows=True, ends=clock.ends,
                   pyomo=True)
    row, col, tokens = usage(instance, cols, pyomo=True)
    keys = list(zip(cols.request.tolist(), (cols.start + clock.shift[cols.request]).tolist(),
                    strict=True))
    domain = pyo.NonNegativeReals if relax else pyo.Binary
    m = pyo.ConcreteModel(name="batch_scheduling")
    m.x = pyo.Var(keys, domain=domain)  # x <= 1 is implied by start_once
    m.late = pyo.Var(range(instance.n), domain=domain)
    m.latency = pyo.Objective(
        expr=pyo.quicksum(c * m.x[k] for c, k in zip(cols.cost.tolist(), keys, strict=True))
        + pyo.quicksum(float(cols.late_cost[i]) * m.late[i] for i in range(instance.n)),
        sense=pyo.minimize)
    by_request: dict[int, list] = {i: [] for i in range(instance.n)}
    for k in keys:
        by_request[k[0]].append(k)
    m.start_once = pyo.Constraint(
        range(instance.n),
        rule=lambda m, i: pyo.quicksum(m.x[k] for k in by_request[i]) + m.late[i] == 1)
    order = np.argsort(row, kind="stable")
    bounds = np.searchsorted(row[order], np.arange(cols.rounds + 1))
    terms = [(col[order[bounds[t]:bounds[t + 1]]], tokens[order[bounds[t]:bounds[t + 1]]])
             for t in range(cols.rounds)]

    x_of_column = [m.x[k] for k in keys]

    def memory_rule(m: pyo.ConcreteModel, t: int) -> Any:
        cs, ws = terms[t]
        if not len(cs):
            return pyo.Constraint.Skip
        # built as one linear expression (no per-term operator calls: 1.4M terms on bs_offline_100)
        held = LinearExpression(constant=0, linear_coefs=ws.tolist(),
                                linear_vars=[x_of_column[c] for c in cs.tolist()])
        return held <= instance.kv_memory

    labels = clock.labels(cols.rounds)
    rounds = list(labels)  # the instance's rounds; terms[at[t]] their entries
    at = {t: k for k, t in enumerate(rounds)}
    m.kv_memory = pyo.Constraint(rounds, rule=lambda m, t: memory_rule(m, at[t]))
    if instance.max_batch is not None:
        def batch_rule(m: pyo.ConcreteModel, t: int) -> Any:
            cs = terms[t][0]
            if len(cs) <= instance.max_batch:
                return pyo.Constraint.Skip
            return pyo.quicksum(m.x[keys[c]] for c in cs.tolist()) <= instance.max_batch

        m.batch_size = pyo.Constraint(rounds, rule=lambda m, t: batch_rule(m, at[t]))
    m.index_names = {"x": ["request", "round"], "late": ["request"], "start_once": ["request"],
                     "kv_memory": ["round"], "batch_size": ["round"]}
    m.columns = cols  # rounds of the modelled instance: ``m.clock`` maps them back
    m.clock = clock
    m.origin = int(clock.shifts[0])  # the first arrival
    if not relax:  # the IP starts from warm_start_schedule (servopt.solve passes it to HiGHS)
        z = start_vector(cols, warm_start_schedule(instance))
        for k, key in enumerate(keys):
            m.x[key].value = float(z[k])
        for i in range(instance.n):
            m.late[i].value = float(z[len(keys) + i])
        m.warm_start = True
    return m


def decisions(model: pyo.ConcreteModel, instance: Instance) -> dict[str, pd.Series]:
    """Start round of each request (-1 when it is late) and the fractional starts
    (:func:`labelled_decisions`)."""
    keys = list(model.x)
    request = np.array([k[0] for k in keys], dtype=np.int64)
    rounds = np.array([k[1] for k in keys], dtype=np.int64)
    x = np.array([model.x[k].value or 0.0 for k in keys], dtype=float)
    late = np.array([model.late[i].value or 0.0 for i in range(instance.n)], dtype=float)
    return labelled_decisions(request, rounds, x, late)


def explain_infeasible(instance: Instance) -> str:
    """Domain reason of infeasibility (an instance that validates is always feasible)."""
    return (f"no schedule fits {instance.n} requests in {instance.kv_memory} KV tokens "
            f"within the horizon")


# ---------------------------------------------------------------------------------------------
# CVXPY (the LP), written independently: memory = sum_j shift_j((s + j) . X[:, t - j + 1])
# ---------------------------------------------------------------------------------------------
def build_cvxpy(instance: Instance, *, horizon: Any = None,
                window: int | None = None) -> CvxpyModel:
    """The LP relaxation in CVXPY over a request x round start matrix X (rounds counted from
    the first arrival and labelled as the instance's, as in :func:`build`)."""
    import cvxpy as cp

    instance, clock = model_clock(instance, horizon, window)
    # refused as the matrix form is (its columns are a part of this dense n x T matrix)
    _refuse_certainly_large(instance, horizon, window, clock.ends, with_memory_rows=True)
    T = horizon_rounds(instance, horizon)
    n = instance.n
    a, s, o = instance.arrival, instance.prompt_tokens, instance.output_tokens
    last = _last_starts(instance, T, window, clock.ends)
    rounds = np.arange(T)
    allowed = (rounds[None, :] >= a[:, None]) & (rounds[None, :] <= last[:, None])
    X = cp.Variable((n, T), nonneg=True)
    late = cp.Variable(n, nonneg=True)
    start = cp.multiply(allowed.astype(float), X)
    cost = np.where(allowed, rounds[None, :] + (o - a)[:, None], 0.0)
    late_cost = late_costs(instance, T, last, ends=clock.ends)
    memory = 0
    running = 0
    for j in range(1, min(int(o.max()), T) + 1):  # a j-th round later than T is never modelled
        weight = np.where(o >= j, s + j, 0).astype(float)
        if not weight.any():
            continue
        # tokens held in round t by requests in their j-th round: started at t - j + 1
        per_round = weight @ start  # (T,)
        shifted = cp.hstack([np.zeros(j - 1), per_round[: T - j + 1]]) if j > 1 else per_round
        memory = memory + shifted
        if instance.max_batch is not None:
            alive = (o >= j).astype(float) @ start
            running = running + (cp.hstack([np.zeros(j - 1), alive[: T - j + 1]])
                                 if j > 1 else alive)
    once = cp.sum(start, axis=1) + late == 1
    mem = memory <= instance.kv_memory
    labels = clock.labels(T)
    constraints = {"start_once": (once, pd.RangeIndex(n, name="request")),
                   "kv_memory": (mem, labels)}
    cons = [once, mem]
    if instance.max_batch is not None:
        cap = running <= instance.max_batch
        constraints["batch_size"] = (cap, labels)
        cons.append(cap)
    objective = cp.Minimize(cp.sum(cp.multiply(cost, start)) + late_cost @ late)
    variables = {"x": (start, pd.MultiIndex.from_arrays(  # request i's round t: t + shift_i
                     [np.repeat(np.arange(n), T), (np.arange(T)[None, :] + clock.shift[:, None]).ravel()],
                     names=["request", "round"])),
                 "late": (late, pd.RangeIndex(n, name="request"))}
    def labelled(values: dict[str, pd.Series]) -> dict[str, pd.Series]:
        x = values["x"]
        return labelled_decisions(x.index.get_level_values("request").to_numpy(np.int64),
                                  x.index.get_level_values("round").to_numpy(np.int64),
                                  x.to_numpy(float), values["late"].to_numpy(float))

    return CvxpyModel(cp.Problem(objective, cons), "min", constraints, variables,
                      decisions=labelled)


# ---------------------------------------------------------------------------------------------
# Matrix form (scipy.sparse) for large LPs
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class MatrixLP:
    """``min cost @ z  s.t.  A_eq z = 1 (start_once), A_mem z <= M (kv_memory), [A_cap z <= B],
    z >= 0`` with z = (x columns, late columns)."""

    cols: Columns
    cost: np.ndarray
    a_eq: sp.csr_matrix
    a_mem: sp.csr_matrix
    a_cap: sp.csr_matrix | None
    kv_memory: int
    max_batch: int | None
    relax: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        rows = self.a_eq.shape[0] + self.a_mem.shape[0] + (0 if self.a_cap is None else
                                                           self.a_cap.shape[0])
        return rows, self.a_eq.shape[1]


def build_matrix(instance: Instance, *, horizon: Any = None, window: int | None = None,
                 relax: bool = True, deadline: float | None = None,
                 ends: np.ndarray | None = None) -> MatrixLP:
    """The same model as :func:`build` as sparse matrices (no Python loop over terms), rounds
    from round 0 of ``instance``.

    ``deadline``: a ``time.perf_counter()`` value; the build raises TimeoutError at the first
    check between its stages (columns, memory entries, each row block) after it. ``ends``:
    :attr:`Clock.ends` (each run ends by then)."""
    cols = columns(instance, horizon, window, with_memory_rows=True, ends=ends)
    _on_time(deadline, f"{len(cols.request):,} start columns")
    row, col, tokens = usage(instance, cols)
    _on_time(deadline, f"{len(row):,} memory-row entries")
    nx, n, T = len(cols.request), instance.n, cols.rounds
    eq_rows = np.concatenate([cols.request, np.arange(n)])
    eq_cols = np.arange(nx + n)
    a_eq = sp.csr_matrix((np.ones(nx + n), (eq_rows, eq_cols)), shape=(n, nx + n))
    a_mem = sp.csr_matrix((tokens, (row, col)), shape=(T, nx + n))
    _on_time(deadline, "the memory rows")
    a_cap = None
    if instance.max_batch is not None:
        a_cap = sp.csr_matrix((np.ones(len(row)), (row, col)), shape=(T, nx + n))
        _on_time(deadline, "the batch rows")
    cost = np.concatenate([cols.cost, cols.late_cost])
    return MatrixLP(cols, cost, a_eq, a_mem, a_cap, instance.kv_memory, instance.max_batch,
                    relax)


def build_matrix_model(instance: Instance, *, relax: bool = False, horizon: Any = None,
                       window: int | None = None, deadline: float | None = None) -> MatrixModel:
    """The model of :func:`build` as a :class:`~servopt.core.matrix.MatrixModel` (what
    ``servopt.solve`` hands to HiGHS): same rows, columns, labels, defaults and prices.

    The IP starts from :func:`warm_start_schedule` (the best of a few exact-lookahead
    schedules), so a time limit always returns an incumbent at least that good; with the
    default (exact) horizon and no window, its ``bound_lp`` is the LP relaxation on the shorter
    makespan horizon (a lower bound on the hindsight optimum): with a time limit ``servopt.solve``
    solves it first, under its share of the limit, and reports the better of its value (rounded
    up to a whole round) and HiGHS's dual bound (``info["bound_kind"]``: ``lp_relaxation`` or
    ``mip_bound``); without one it is solved only when a limit among the model's options stopped
    HiGHS before its root LP. It is cut out of the IP's matrix
    (:func:`shorter_horizon_lp`), not built again. The LP is solved by interior point with
    crossover (faster than the simplex at n = 100, ``batch_scheduling_lp.md``).

    ``deadline`` (a ``time.perf_counter()`` value; ``servopt.solve`` passes its time limit's
    end): the build checks it between its stages and raises TimeoutError once it has passed
    (:func:`build_matrix`; the last check is before the warm start, which
    :func:`start_answer` computes without the matrix).
    """
    if horizon is None and not relax:
        horizon = "safe"
    instance, clock = model_clock(instance, horizon, window)  # relabelled as the instance's
    data = build_matrix(instance, horizon=horizon, window=window, relax=relax, deadline=deadline,
                        ends=clock.ends)
    cols = data.cols
    matrix = sp.vstack([data.a_eq, data.a_mem] + ([data.a_cap] if data.a_cap is not None else []),
                       format="csc")
    del data  # its row blocks are in ``matrix``
    _on_time(deadline, "the matrix")
    start = None if relax else start_vector(cols, warm_start_schedule(instance))
    mm = _labelled(instance, cols, np.concatenate([cols.cost, cols.late_cost]), matrix,
                   relax=relax, start=start, clock=clock)
    if not relax and window is None and horizon == "safe":  # the IP is the hindsight optimum: the
        # shorter-horizon LP bounds it (seconds at n = 100, where its own root LP is slower)
        kept = mm.matrix  # not ``mm``: the model would then hold itself in a cycle
        mm.bound_lp = lambda: shorter_horizon_lp(instance, kept, cols, clock)
    return mm


def start_answer(instance: Instance, *, horizon: Any = None, window: int | None = None,
                 deadline: float | None = None) -> dict[str, Any]:
    """The IP's warm start as :func:`build_matrix_model` with these options would hand it to
    HiGHS (by a ``deadline``: the best of its schedules computed by then), without the matrix
    (what ``servopt.solve`` returns when the build would not fit in its time limit):
    ``decisions`` labelled as a solve's, ``objective`` the model's cost of the start (rounds;
    its total latency when no request takes a late column, as with the default horizon),
    ``sense``, and ``info["start_schedule"]`` saying which schedule it is.
    A model too large to build is refused as the build would.

    Nothing is sized by the columns: a request started at p within its modelled starts
    (a_i..last_i) takes column (i, p) at cost p + o_i - a_i, any other its late column
    (:func:`late_costs`), so cost and labels come per request (:func:`labelled_decisions`).
    ``deadline`` (a ``time.perf_counter()`` value; ``servopt.solve`` passes its time limit's
    end): the warm start stops there (:func:`best_warm_start`), keeping the best schedule
    computed by then, at least shortest-first admission (:func:`greedy_schedule`)."""
    if horizon is None:
        horizon = "safe"
    instance, clock = model_clock(instance, horizon, window)
    _refuse_certainly_large(instance, horizon, window, clock.ends, with_memory_rows=True)
    greedy = greedy_schedule(instance)  # the horizon's, the late costs' and the first start
    rounds = horizon_rounds(instance, horizon, greedy=greedy)
    last = _last_starts(instance, rounds, window, clock.ends)
    _column_counts(instance, last, with_memory_rows=True, rounds=rounds)  # refused as the build is
    late_cost = late_costs(instance, rounds, last, greedy=greedy, ends=clock.ends)
    start, done = best_warm_start(instance, deadline=deadline, greedy=greedy)
    inside = start <= last  # (every start is at or after its arrival)
    a, o = instance.arrival, instance.output_tokens
    cost = np.where(inside, (start + o - a).astype(float), late_cost)
    total = len(warm_start_candidates())
    which = (f"warm_start_schedule (the best of its {total} lookahead schedules)" if done == total
             else f"the best of the first {done} of warm_start_schedule's {total} lookahead "
                  f"schedules (the time limit stopped the next; the first is shortest-first "
                  f"admission, greedy_schedule)")
    request = np.flatnonzero(inside)  # x[i, start_i] = 1, late[i] = 1 for the others
    decisions = labelled_decisions(request, start[request] + clock.shift[request], np.ones(len(request)),
                                   np.where(inside, 0.0, 1.0))
    return {"decisions": decisions, "objective": float(cost.sum()), "sense": "min",
            "info": {"start_schedule": which}}


def relaxation_note(instance: Instance, solution: Any, **options: Any) -> str | None:
    """Why an integer solution of this model is not a schedule (``servopt.solve`` then sets its
    ``bound_kind`` to ``lower_bound`` and puts this in ``info["note"]``), or None
    when it is one. A request in its late column (outside a ``window``, or past a short
    ``horizon``) is costed at its earliest late start with no memory: the proved ``bound`` is then
    a lower bound on the best schedule, and so is the value at ``mip_gap=0``, reached by no
    schedule (R21: ``generate(10)`` with ``horizon=10`` came back "optimal" at 146 with every
    request late; its optimum is 170); at a positive ``mip_gap`` the value can exceed the best
    schedule's (R34: ``generate(12, seed=10)``, ``window=8, mip_gap=0.05``: 141, optimum 140)."""
    late = solution.decisions.get("late") if solution.decisions else None
    if late is None:
        return None
    count = int(np.sum(np.asarray(late, dtype=float) > 0.5))
    if count == 0:
        return None
    given = ", ".join(f"{k}={options[k]!r}" for k in ("horizon", "window") if options.get(k) is not None)
    what = ("the bound is a lower bound on the best schedule (so is the value when solved with "
            "mip_gap=0; at a positive mip_gap it can exceed the best schedule's), and the value is "
            "not a schedule's latency" if solution.status == "optimal" else
            "the incumbent's value is not a schedule's latency (nor a bound: the bound is one)")
    return (f"{count} of {instance.n} requests are in their late column (started after the "
            f"modelled rounds{f' ({given})' if given else ''}, costed at the earliest late start "
            f"with no memory): {what}; solve without horizon/window for the hindsight optimum")


def cheap_bound(instance: Instance, *, horizon: Any = None, window: int | None = None) -> float:
    """A lower bound on the IP's optimum (rounds) without a solver: :func:`area_bound`, which
    bounds every schedule, so the IP with its default (exact) horizon and no window; nan for
    other options (their IP is a relaxation, which the area bound need not bound)."""
    if window is not None or horizon not in (None, "safe"):
        return math.nan
    return area_bound(from_first_arrival(instance)[0])


def _labelled(instance: Instance, cols: Columns, cost: np.ndarray, matrix: sp.csc_matrix, *,
              relax: bool, start: np.ndarray | None = None, clock: Clock) -> MatrixModel:
    """The MatrixModel of columns ``cols`` (then the late columns) and rows start_once,
    kv_memory[0..T-1] (and batch_size[0..T-1] with a cap) of ``matrix``, rounds labelled as the
    instance's (``clock``)."""
    n, T, nx = instance.n, cols.rounds, len(cols.request)
    labels = clock.labels(T)
    rows = {"start_once": Family(np.arange(n), pd.RangeIndex(n, name="request")),
            "kv_memory": Family(n + np.arange(T), labels)}
    lower = [np.ones(n), np.full(T, -np.inf)]
    upper = [np.ones(n), np.full(T, float(instance.kv_memory))]
    if instance.max_batch is not None:
        rows["batch_size"] = Family(n + T + np.arange(T), labels)
        lower.append(np.full(T, -np.inf))
        upper.append(np.full(T, float(instance.max_batch)))
    return MatrixModel(
        objective=cost, matrix=matrix,
        row_lower=np.concatenate(lower), row_upper=np.concatenate(upper),
        col_lower=np.zeros(nx + n), col_upper=np.full(nx + n, np.inf if relax else 1.0),
        rows=rows,
        columns={"x": Family(np.arange(nx), pd.MultiIndex.from_arrays(
                     [cols.request, cols.start + clock.shift[cols.request]],
                     names=["request", "round"])),
                 "late": Family(nx + np.arange(n), pd.RangeIndex(n, name="request"))},
        integer=None if relax else np.ones(nx + n, dtype=bool), start=start,
        decisions=lambda z: start_decisions(cols, z, n, clock.shift),
        # the IP without presolve: it removes nothing here, HiGHS does not poll for Ctrl-C
        # while it runs (28 s on bs_offline_100), and the search from the warm start improves
        # sooner (bs_offline_100, 10 s: 6277 against 6587)
        options={"solver": "ipm"} if relax else {"presolve": "off"}, info={"rounds": T})


def shorter_horizon_lp(instance: Instance, matrix: sp.csc_matrix, cols: Columns, clock: Clock
                       ) -> MatrixModel:
    """``build_matrix_model(instance, relax=True)`` (the LP on the makespan horizon T' <= T) cut
    out of the ``matrix`` of the model over columns ``cols`` (a longer horizon T, no window): its columns
    are those of ``cols`` that end by T' (start + o_i <= T'), then the late columns, costed for
    T'; its rows start_once, the first T' memory (and batch) rows, which the other columns
    never touch. No Python loop and no second pass over the memory entries."""
    rounds = horizon_rounds(instance, None)
    n, T, nx = instance.n, cols.rounds, len(cols.request)
    keep = np.flatnonzero(cols.start + instance.output_tokens[cols.request] <= rounds)
    last = _last_starts(instance, rounds, None, clock.ends)
    short = Columns(rounds, cols.request[keep], cols.start[keep], cols.cost[keep],
                    np.maximum(last, instance.arrival - 1),
                    late_costs(instance, rounds, last, ends=clock.ends))
    row_parts = [np.arange(n), n + np.arange(rounds)]
    if instance.max_batch is not None:
        row_parts.append(n + T + np.arange(rounds))
    cut = sp.csc_matrix(matrix[:, np.concatenate([keep, nx + np.arange(n)])][np.concatenate(row_parts)])
    cut.sort_indices()
    return _labelled(instance, short, np.concatenate([short.cost, short.late_cost]), cut, relax=True,
                     clock=clock)


def start_vector(cols: Columns, start: np.ndarray) -> np.ndarray:
    """Column values (x, then late) of a schedule given by start rounds; a start outside a
    request's modelled rounds takes its late column."""
    n = len(start)
    start = np.asarray(start, dtype=np.int64)
    first = np.searchsorted(cols.request, np.arange(n))  # each request's first column
    count = np.bincount(cols.request, minlength=n)
    first_round = np.zeros(n, dtype=np.int64)
    first_round[count > 0] = cols.start[first[count > 0]]
    offset = start - first_round
    inside = (offset >= 0) & (offset < count)
    z = np.zeros(len(cols.request) + n)
    z[(first + offset)[inside]] = 1.0
    z[len(cols.request) + np.flatnonzero(~inside)] = 1.0
    return z


def start_decisions(cols: Columns, z: np.ndarray, n: int, origin: int | np.ndarray = 0
                    ) -> dict[str, pd.Series]:
    """:func:`labelled_decisions` from column values ``z`` (the x columns, then the late ones);
    rounds ``origin`` + the columns' (those of a model counted from the first arrival; an array:
    request i's shift, :attr:`Clock.shift`)."""
    nx = len(cols.request)
    shift = origin[cols.request] if isinstance(origin, np.ndarray) else origin
    return labelled_decisions(cols.request, cols.start + shift, z[:nx], z[nx:nx + n])


def labelled_decisions(request: np.ndarray, rounds: np.ndarray, x: np.ndarray,
                       late: np.ndarray) -> dict[str, pd.Series]:
    """The decisions every backend reports, from the start values ``x`` of the (``request``,
    ``rounds``) pairs and each request's ``late`` value: ``start`` (the round of each request's
    largest start value, the earliest of equal ones; -1 when ``late`` is at least that value),
    the nonzero ``x`` by (request, round) and ``late``."""
    n = len(late)
    weight = np.zeros(n)
    start = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((-rounds, x))  # ascending x, then later rounds first: the largest value
    weight[request[order]] = x[order]  # per request is written last, the earliest of equal ones
    start[request[order]] = rounds[order]
    start[late >= weight] = -1
    keep = x > 1e-9
    xs = pd.Series(x[keep], index=pd.MultiIndex.from_arrays(
        [request[keep], rounds[keep]], names=["request", "round"]), name="x")
    return {"start": pd.Series(start, index=pd.RangeIndex(n, name="request"), name="start"),
            "x": xs, "late": pd.Series(late, index=pd.RangeIndex(n, name="request"), name="late")}


def area_bound(instance: Instance) -> float:
    """A closed-form lower bound on total latency (rounds) for requests all at round 0.

    The k-th request to finish has latency at least the k-th smallest output and at least the
    k smallest memory-time footprints divided by M (the memory area available by then); with
    arrivals it falls back to sum_i o_i. Arrivals all at one round count as all at round 0.
    """
    instance, _ = from_first_arrival(instance)
    o = np.sort(instance.output_tokens).astype(float)
    if not instance.offline:
        return float(o.sum())
    footprint = np.sort(instance.footprint())
    if float(footprint.astype(float).sum()) < 2.0**62:  # the int64 running sum is exact
        area = np.cumsum(footprint) / instance.kv_memory
    else:  # it would wrap past 2^63 (9.2e18 token-rounds): sum Python ints, divide exactly
        cum = np.cumsum(footprint.astype(object))
        memory = int(instance.kv_memory)
        area = np.array([c / memory for c in cum], dtype=float)
    return float(np.maximum(o, np.ceil(area - 1e-9)).sum()) if math.isfinite(area[-1]) else 0.0


# ---------------------------------------------------------------------------------------------
# Cover inequalities of the memory rows (valid for every schedule; they cut LP points)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CoverRows:
    """The memory-row entries of a column set, sorted by (round, request, tokens descending)."""

    round: np.ndarray
    column: np.ndarray
    request: np.ndarray
    tokens: np.ndarray
    bounds: np.ndarray  # entries of round t are bounds[t]:bounds[t + 1]


def cover_rows(instance: Instance, cols: Columns) -> CoverRows:
    """Index the memory rows once for :func:`cover_cuts`."""
    row, col, tokens = usage(instance, cols)
    request = cols.request[col]
    order = np.lexsort((-tokens, request, row))
    row, col, tokens, request = row[order], col[order], tokens[order], request[order]
    return CoverRows(row, col, request, tokens.astype(np.int64),
                     np.searchsorted(row, np.arange(cols.rounds + 1)))


def cover_cuts(instance: Instance, rows: CoverRows, x: np.ndarray,
               min_violation: float = 1e-4) -> list[tuple[np.ndarray, float]]:
    r"""The most violated memory cover of each round at the point ``x`` (start columns).

    The valid inequality (a knapsack cover with one pick per request): in round t, request i
    holds ``s_i + t - p + 1`` tokens when it started at p. Choose a set C of requests and a
    threshold w_i per request with ``sum_{i in C} w_i > M``. No schedule runs every request of
    C in round t with at least w_i tokens each, so::

        cover[t, C]:  sum_{i in C} sum_{p: s_i + t - p + 1 >= w_i} x[i, p]
                      + sum_{i not in C} sum_{p: s_i + t - p + 1 >= max_C w} x[i, p]  <=  |C| - 1

    (the second sum is the classic extension: any |C| picks among these hold at least
    sum_C w_i tokens). Separation is exact for the first sum: a group knapsack (dynamic program
    over tokens 0..M+1) minimises sum_{i in C} (1 - x-mass of i at >= w_i); a cut is returned
    when that is below 1 - ``min_violation``, after lowering the largest thresholds as long as
    sum_C w_i > M still holds (more columns, the same validity argument). Returns (columns,
    right-hand side) pairs.
    """
    M = instance.kv_memory
    cap = M + 1
    cuts = []
    value = x[rows.column]
    for t in range(len(rows.bounds) - 1):
        lo, hi = rows.bounds[t], rows.bounds[t + 1]
        v = value[lo:hi]
        if hi == lo or v.max(initial=0.0) <= 1e-9:
            continue
        req, tok = rows.request[lo:hi], rows.tokens[lo:hi]
        # per request (entries sorted by tokens descending): mass at >= each threshold
        start = np.r_[0, np.flatnonzero(req[1:] != req[:-1]) + 1]
        cum = np.cumsum(v)
        group_base = np.repeat(cum[start] - v[start], np.diff(np.r_[start, len(v)]))
        mass = cum - group_base
        cost = 1.0 - mass
        useful = (v > 1e-9) & (cost < 1.0 - min_violation)
        if not useful.any() or np.all((v < 1e-9) | (v > 1.0 - 1e-9)):  # integral: no cut
            continue
        group = np.cumsum(np.r_[1, (req[1:] != req[:-1]).astype(int)]) - 1
        level = np.arange(cap + 1)
        best = np.full(cap + 1, np.inf)
        best[0] = 0.0
        stages = []
        for g in np.unique(group[useful]):
            items = np.flatnonzero(useful & (group == g))
            w = np.minimum(tok[items], cap)
            src = level[None, :] - w[:, None]  # reach level l from l - w ...
            cand = np.where(src >= 0, best[np.maximum(src, 0)], np.inf)
            tail = np.minimum.accumulate(best[::-1])[::-1]  # ... and cap from any l >= cap - w
            top = (cap - w) + np.array([int(np.argmin(best[cap - k:])) for k in w])
            src[:, cap] = top
            cand[:, cap] = tail[cap - w]
            cand += cost[items][:, None]
            k = np.argmin(cand, axis=0)
            take = cand[k, level] < best - 1e-12
            pick = np.where(take, items[k], -1)
            prev = np.where(take, src[k, level], level)
            best = np.where(take, cand[k, level], best)
            stages.append((pick, prev))
        if best[cap] >= 1.0 - min_violation:
            continue
        chosen, at = [], cap
        for pick, prev in reversed(stages):
            if pick[at] >= 0:
                chosen.append(int(pick[at]))
            at = int(prev[at])
        members, weight = req[chosen], np.minimum(tok[chosen], cap).astype(np.int64)
        slack = int(weight.sum()) - cap  # lower the largest thresholds while sum_C w > M
        for k in np.argsort(-weight, kind="stable"):
            drop = min(slack, int(weight[k]) - 1)
            weight[k] -= drop
            slack -= drop
        threshold = np.full(instance.n, int(weight.max()), dtype=np.int64)
        threshold[members] = weight
        inside = tok >= threshold[req]
        cuts.append((rows.column[lo:hi][inside], float(len(chosen) - 1)))
    return cuts


# ---------------------------------------------------------------------------------------------
# Coarse-time relaxation: start rounds grouped into buckets (a relaxation solved as an IP)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CoarseLP(MatrixLP):
    """A :class:`MatrixLP` over bucket columns (``cols.start`` = first start of the bucket,
    ``last_start`` = its last) whose optimum minus ``constant`` bounds the hindsight optimum
    (for ``averaged`` models: the mean over the k offsets of that difference)."""

    last_start: np.ndarray | None = None
    bucket: int = 1
    offset: int = 0
    constant: float = 0.0


def bucket_wait_credit(wait: np.ndarray, bucket: int) -> np.ndarray:
    """g(d): mean over the ``bucket`` grid offsets of (start - first start of its bucket) for a
    start ``d`` rounds after arrival: d (2k - 1 - d) / 2k for d < k - 1, else (k - 1) / 2."""
    k = bucket
    d = np.asarray(wait, dtype=float)
    return np.where(d >= k - 1, (k - 1) / 2.0, d * (2 * k - 1 - d) / (2 * k))


def build_coarse_matrix(instance: Instance, bucket: int, *, offset: int = 0, averaged: bool = False,
                        price: np.ndarray | None = None, horizon: Any = None,
                        window: int | None = None) -> CoarseLP:
    r"""The coarse-time relaxation: each request picks one *bucket* of start rounds.

    Request i's starts a_i..last_i (those of :func:`columns`) are cut into buckets
    [a_i, a_i + offset - 1], then k = ``bucket`` rounds each from a_i + offset (the last one cut
    at last_i). Column (i, b) for a bucket b = [lo, hi]::

        y[i, b] in {0, 1};  cost c_i(b) = lo + o_i - a_i   (the least latency of any start in b)
        kv_memory[t]:  sum_{i, b} m_i(b, t) y[i, b] <= M,  m_i(b, t) = s_i + t - hi + 1 for
                       hi <= t <= lo + o_i - 1, else 0     (the least KV of any start in b)
        batch_size[t]: the same with 1 where m_i(b, t) > 0 (only with a cap)
        start_once[i]: sum_b y[i, b] + late[i] = 1   (``late`` as in the fine model)

    Every schedule maps (start s in b) to a bucket schedule that costs no more and holds no
    more KV or batch slots in any round, so the IP optimum -- and its dual bound at any time
    limit -- is a lower bound on every schedule's total latency. With k = 1 it is the fine IP.

    ``averaged``: cost c_i(b) + g(lo - a_i) (:func:`bucket_wait_credit`). For any start s,
    the mean over the k offsets of (s - first start of its bucket) is g(s - a_i) >= g(lo - a_i)
    (g grows with the wait), so the *mean over offsets 0..k-1* of these IPs' optima is a
    lower bound (no single one is): it gives back about (k - 1) / 2 rounds per request that
    the plain bucket cost loses.

    ``price`` mu >= 0 per round (e.g. the fine LP's memory prices, scaled): Lagrangian
    penalty. Cost min_{s in b} [s + o_i - a_i + sum_t mu_t KV_i(s, t)] and ``constant``
    = M sum_t mu_t: every schedule has latency >= latency + mu . (memory - M), so (IP optimum
    - constant) is still a bound; with the fine LP's prices its LP is at least the fine LP.
    """
    if isinstance(bucket, bool) or not isinstance(bucket, int | np.integer) or bucket < 1:
        raise InvalidInstanceError(f"bucket must be a whole number of rounds >= 1, got {bucket!r}")
    if isinstance(offset, bool) or not isinstance(offset, int | np.integer) or not 0 <= offset < bucket:
        raise InvalidInstanceError(f"offset must be a whole number of rounds in 0..bucket - 1 = "
                                   f"{bucket - 1}, got {offset!r}")
    if averaged and price is not None:
        raise InvalidInstanceError("a coarse model is either averaged over offsets or priced, not both")
    k = int(bucket)
    cols = columns(instance, horizon, window)
    n, T = instance.n, cols.rounds
    a, s, o = instance.arrival, instance.prompt_tokens, instance.output_tokens
    wait = cols.start - a[cols.request]
    index = wait // k if offset == 0 else np.where(wait < offset, 0, 1 + (wait - offset) // k)
    # fine columns are sorted by (request, start): a bucket is a run of equal (request, index)
    first = np.flatnonzero(np.r_[True, (np.diff(cols.request) != 0) | (np.diff(index) != 0)])
    request = cols.request[first]
    lo = cols.start[first]
    hi = np.r_[cols.start[first[1:] - 1], cols.start[-1:]] if len(first) else lo
    cost = (lo + o[request] - a[request]).astype(float)
    constant = 0.0
    if averaged:
        cost = cost + bucket_wait_credit(lo - a[request], k)
    if price is not None:
        mu = np.asarray(price, dtype=float)
        if mu.shape != (T,) or np.any(~np.isfinite(mu)) or np.any(mu < 0):
            raise InvalidInstanceError(f"price must hold one finite value >= 0 per modelled round "
                                       f"({T}), got shape {mu.shape}")
        row, col, tokens = usage(instance, cols)
        fine = cols.cost + np.bincount(col, weights=mu[row] * tokens, minlength=len(cols.cost))
        cost = np.minimum.reduceat(fine, first) if len(first) else cost
        constant = float(instance.kv_memory * mu.sum())
    length = np.maximum(0, o[request] - (hi - lo))
    col, j = run_rounds(length)
    row = hi[col] + j - 1
    tokens = (s[request][col] + j).astype(float)
    nb = len(request)
    a_eq = sp.csr_matrix((np.ones(nb + n), (np.r_[request, np.arange(n)], np.arange(nb + n))),
                         shape=(n, nb + n))
    a_mem = sp.csr_matrix((tokens, (row, col)), shape=(T, nb + n))
    a_cap = None
    if instance.max_batch is not None:
        a_cap = sp.csr_matrix((np.ones(len(row)), (row, col)), shape=(T, nb + n))
    coarse = Columns(T, request, lo, cost, cols.last, cols.late_cost)
    return CoarseLP(coarse, np.concatenate([cost, cols.late_cost]), a_eq, a_mem, a_cap,
                    instance.kv_memory, instance.max_batch, True, hi, k, int(offset), constant)
