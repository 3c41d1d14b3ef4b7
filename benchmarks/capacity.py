"""Capacity evaluator: a discrete-event simulation of one continuous-batching worker.

The simulator (:func:`simulate`) advances one iteration at a time, like vLLM's scheduler:

1. running requests are scheduled in admission order: a decoding request takes 1 token of the
   budget b, a prefilling one min(remaining prompt, C); a decode writes one more KV token;
2. if the decodes' new KV does not fit in M, the most recently admitted request is preempted
   (its KV freed, put back at the front of the queue, recomputed on re-admission: prompt plus
   the tokens it had generated) until it fits;
3. waiting requests are admitted FCFS (preempted ones first) while a batch slot and budget
   remain and the head's whole prompt fits in the free KV (it is reserved at admission); the
   first that does not fit blocks the queue (no skipping);
4. the iteration lasts d0 + d1 x tokens seconds; a prefill that completes emits the first output
   token, each decode iteration one more; a request leaves when it has emitted o tokens.

Knee (the simulated maximum stable rate). Definition: the knee of a worker is the arrival rate
lambda* at which the drift of N(t), the requests in system, over the measurement window crosses
``eps x lambda`` (default eps = 1%): below it the worker is *stable*, above it *unstable*. In
overload the worker runs saturated, so the drift is lambda - mu (mu = its saturated throughput)
and the knee lies at about mu / (1 - eps): ~1% above the largest stable rate, by definition.

Estimator (:func:`check_rate`, :func:`find_knee`):

- replications r = 0..R-1 with common random numbers: replication r has the same request lengths
  and unit-rate Poisson gaps at every rate (arrival times = gaps / lambda), so rates are compared
  on the same traffic; lengths are *balanced* (shuffled copies of the instance's samples), so the
  horizon's mean lengths are the instance's and length-sampling noise does not move the knee;
- each run has ``n_requests`` arrivals; the first ``warmup`` (25%) of the arrival horizon H is
  discarded (the start from an empty worker) and the window [0.25 H, H] is sampled on a grid of
  2001 equally spaced times;
- drift: the coefficient of t in the least-squares fit of N(t) on (1, t, X(t)) over the window,
  where X(t) = A(t) - lambda t is the arrival count's deviation from its known mean (a control
  variate, E X(t) = 0). In overload N follows X one for one and the fit removes the arrival
  noise: measured (``benchmarks/capacity_drift_variance.py``, 24 seeds, two workloads) the
  between-seed sd is 0.38-0.70x the plain slope's at 1.01-1.25x the saturated rate, but 2.0-2.9x
  at 0.95x (0.67-1.13x at 0.99x), where completions absorb X and fitting its coefficient costs
  variance (more seeds before a stable rate is decided). Both estimates agree on average
  (paired difference within about one standard error; ``capacity_drift_variance_check.md``).
  ``raw_slope_ratio`` keeps the plain slope of N;
- the estimate is the mean of the R slopes / lambda, its standard error their standard deviation
  / sqrt(R) (between replications, so it accounts for the autocorrelation of N(t)); when
  |estimate - eps| < 2 standard errors the test is *undecided* and R doubles up to ``max_seeds``;
- bisection on log lambda from a bracket [S, 1.03 S] around the saturated throughput S (widened
  by 3% steps until it holds a stable and an unstable rate) until hi / lo <= 1.01; the knee is
  sqrt(lo x hi), so it is resolved to +-0.5%. Its statistical error is about the standard error of
  the drift / lambda at the bracket ends (above the knee drift / lambda rises one for one with
  log lambda); :class:`Knee` reports both.

Gap table for a planning decision. ``evaluate`` runs a planning method (it may observe the
simulated fleet, as reactive autoscalers do) and scores its plan: cost = workers provisioned for
the instance's target rate; the plan is stable iff one worker is stable at lambda / N in the
simulation (the arrivals split evenly and at random over identical workers; the same drift test,
seeds and eps as the knee); an unstable plan gets status ``unstable``. ``bound`` (kind
``simulated``: an empirical reference carrying the simulation's noise, not a proof) is the least N
whose worker that same test, with the same options, calls stable at lambda / N. When the model
puts the fleet at most ``SCAN_ALL`` (12) workers, every N from 1 up is tested (cost about N / 2
tests at the bound's rate, less than a knee search), so the bound holds with no assumption: every
plan the evaluator calls stable costs at least this much, gap > 0 is over-provisioning and a
negative gap comes with status ``unstable``. Larger fleets start the search at ceil(lambda /
knee_hi): fewer workers put a worker above the knee's unstable end and are taken as unstable
without a test; from there a galloping search then a bisection over N finds the least stable
fleet in O(log N) tests (:func:`least_stable`; for the 3-length instance below at 1e7 req/s with
600 arrivals a scan one worker at a time made 566 stability tests, 37 s, the search 28, 0.9 s).
That assumes the test is monotone in the rate above knee_hi, which is not proved: with common
random numbers the drift estimate is a smooth function of the rate (generate(500, seed=0), 36
rates from 0.98 knee_lo to 1.05 knee_hi: stable up to 1.006 knee_lo, unstable from 1.008 knee_lo,
knee_hi = 1.0074 knee_lo), but a rate whose test is undecided gets more seeds (``max_seeds``)
than its neighbours and may be judged differently; a plan judged stable below such a bound shows
status ``below_bound`` in gap tables. The first ``SCAN_FIRST`` sizes past the start are tested
one at a time, so an answer among them is the scan's; past them, where the test is not monotone,
the bisection returns a stable N whose N - 1 is unstable, not always the first such N (the bound's
``status`` says so): with short horizons near the knee verdicts flip between neighbours (prompts
100/200/300 and outputs 10/20/30 tokens, M = 10,000, 600 arrivals, 2 seeds: at 1e7 req/s the
search gives 191,604 workers where a scan finds 190,980, 0.3% fewer; at 3e6 req/s 57,481 against
57,294). The registered cells size their fleets at about 10 workers, under ``SCAN_ALL``, and
never take this path.
(ceil(lambda / knee_lo), the bound before, was too high: rates in (knee_lo, knee_hi] are often
stable, e.g. 5 workers at 5 x sqrt(knee_lo knee_hi) on generate(500, seed=0), bound 6.)

The defaults (``N_REQUESTS`` = 8000 arrivals, ``SEEDS`` = 2 replications, ``window`` = 600
observed arrivals) keep ``servopt.gap_table(instance)`` to about 15-20 seconds. Shorter horizons are
not safe: on the default instance 3000 arrivals put the knee at 8.87 req/s against 11.82 with 8000
(saturated throughput 12.05 / 11.78), because the drift of a short run at 0.75x saturation
already exceeds eps, and the gap table called a stable 2-worker plan unstable. So
:func:`find_knee` distrusts a knee more than 10% below the saturated throughput (no stable rate
can lie far below a worker's throughput with a backlog) and doubles the horizon, up to 4 times.
The evaluator and :func:`bound` do not: they judge with ``n_requests`` as given, alike.
The registered benchmark cases pass their own horizons and seeds.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from servopt.benchmarks.harness import Bound, Outcome, checked_keywords, method_label, refusing
from servopt.core import InvalidInstanceError
from servopt.core.checks import number, whole_number
from servopt.core.registry import layer_module
from servopt.instances.capacity import Instance
from servopt.models import capacity as model
from servopt.solvers import capacity as policies

SENSE = "min"
COST = "workers provisioned"
DEFAULT_METHODS = ("plan", "fluid_lp", "first_order", "compute_only", "utilisation", "queue_depth")
N_REQUESTS = 8000
MIN_REQUESTS = 500  # fewer arrivals per run: the drift test sees too short a horizon to judge
# Arrivals per simulated run: the CLI's --sim-requests cap (1e6) doubled HORIZON_DOUBLINGS = 4
# times, as find_knee may do (its doublings stop at this cap). Memory and time
# grow linearly: one run, _simulate_run(generate(requests=2000, seed=0), 0.95 x the model's
# max_stable_rate, n, 0, 0.25), took 47 s and +294 MB peak RSS for n = 1e6, 249 s and +1.19 GB
# for n = 4e6 (load 1.5-3; the audit saw 180 s for 1e6 at load 5-8), so a run at the cap holds
# ~4.7 GB and takes 13-48 min per simulated rate, and a find_knee at the cap (5 or more rates,
# each a run per seed) takes hours. (The old comment's "~13 GB" was ~3x the memory, and no time.)
# benchmarks/results/limits.md measured +321-336 MB and 50-66 s at n = 1e6 (two runs, load 1-4;
# the third, at load 5: 99 s, 399 MB peak), ~5.4 GB at the cap if linear.
MAX_REQUESTS = 16_000_000
MAX_RUN_SEEDS = 1000  # replications per simulated rate
SEEDS = 2
MAX_SEEDS = None
EPS = 0.01
SCAN_ALL = 12  # bound(): fleets the model sizes at most this large are checked from one worker up
SCAN_FIRST = 32  # fleet sizes past the start tested one at a time before galloping
KNEE_FLOOR = 0.9  # a knee below this share of the saturated throughput: the horizon is too short
HORIZON_DOUBLINGS = 4
WARMUP = 0.25


@dataclasses.dataclass
class SimResult:
    """What one simulation recorded, per log entry (one iteration, or a quiet stretch of
    ``iterations`` decode-only iterations simulated at once), unless noted."""

    times: np.ndarray  # end time of the entry (s)
    in_system: np.ndarray  # requests arrived and not finished (at the entry's last start)
    waiting: np.ndarray  # requests waiting for admission
    tokens: np.ndarray  # tokens processed in the entry
    kv_used: np.ndarray  # KV token-iterations held in the entry (KV held, for one iteration)
    iterations: np.ndarray  # iterations in the entry
    done_times: np.ndarray  # per request: completion time (nan if unfinished)
    preemptions: int
    recomputed_tokens: int  # tokens processed beyond w(s, o) by finished requests
    work_tokens: int  # sum of w(s, o) over finished requests

    @property
    def completed(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.done_times)))


def simulate(
    instance: Instance,
    prompt: np.ndarray,
    output: np.ndarray,
    arrivals: np.ndarray,
    *,
    max_iterations: int | None = None,
    skip: bool = True,
    until: float | None = None,
) -> SimResult:
    """Simulate one worker of ``instance`` on requests arriving at ``arrivals`` (sorted, s).

    ``until``: stop at the first iteration that starts at or after this time (s); requests not
    finished by then have ``done_times`` nan. A run that needs more than ``max_iterations`` loop
    passes (default: 100 per request, at least 1e7; generate(2000) at 0.95 of the knee takes at
    most 1.3 per request, so a fixed 1e7 could cut short a run of ``MAX_REQUESTS`` arrivals)
    raises InvalidInstanceError: cut short, it would read as a growing backlog, an unstable rate.
    ``skip``: log quiet stretches as one entry (every running request decoding, no admission,
    preemption or completion possible before the stretch ends). The clock still advances one
    iteration at a time, with the same rounding as with ``skip=False``, so both give identical
    ``done_times`` and ``preemptions`` (bit for bit, also when an arrival falls exactly at an
    iteration's start); only the log is coarser, and with ``until`` a stretch may run past it (no
    request finishes inside a stretch).
    """
    s_all = np.asarray(prompt, dtype=np.int64)
    o_all = np.asarray(output, dtype=np.int64)
    arr = np.asarray(arrivals, dtype=float)
    if np.any(s_all + o_all - 1 > instance.kv_tokens):
        raise InvalidInstanceError("a simulated request is longer than the KV capacity")
    n_req = s_all.size
    M, b, B = instance.kv_tokens, instance.token_budget, instance.batch_cap
    C, d0, d1 = instance.prefill_chunk, instance.step_overhead_s, instance.per_token_s
    gen = np.zeros(n_req, dtype=np.int64)  # output tokens emitted so far
    processed = np.zeros(n_req, dtype=np.int64)  # tokens processed for the request
    r_id = np.empty(0, dtype=np.int64)  # running batch, admission order
    r_need = np.empty(0, dtype=np.int64)  # prefill tokens left (0: decoding)
    r_kv = np.empty(0, dtype=np.int64)  # KV tokens held
    r_left = np.empty(0, dtype=np.int64)  # output tokens still to emit
    used = 0
    front: collections.deque[int] = collections.deque()  # preempted, served first
    next_arrival = completed = preemptions = 0
    clock = 0.0
    times, in_sys, waiting, tok_log, kv_log, iters = [], [], [], [], [], []
    done_times = np.full(n_req, np.nan)
    stop = math.inf if until is None else float(until)
    if max_iterations is None:
        max_iterations = max(10**7, 100 * n_req)
    # iterations with a prompt chunk, never skipped: a run to the end has at least these (one
    # stopped by ``until`` may leave prompts unread, so it is not refused on them)
    prefill = -(-int(s_all.sum()) // b)
    if until is None and prefill > max_iterations:  # refused now, not after minutes of iterations
        raise InvalidInstanceError(
            f"the simulation needs at least {prefill:,} iterations (the {int(s_all.sum()):,} prompt "
            f"tokens of its {n_req:,} requests at token_budget = {b:,} a step), more than "
            f"max_iterations = {max_iterations:,}: simulate fewer arrivals per run (n_requests) "
            "or shorter prompts")
    for _ in range(max_iterations):
        if clock >= stop:
            break
        arrived = int(np.searchsorted(arr, clock, side="right"))
        if r_id.size == 0 and not front and next_arrival >= arrived:
            if next_arrival >= n_req:
                break
            clock = max(clock, float(arr[next_arrival]))
            arrived = int(np.searchsorted(arr, clock, side="right"))
        # 1. running requests take their tokens in admission order
        dec = r_need == 0
        demand = np.where(dec, 1, np.minimum(r_need, C))
        alloc = np.minimum(demand, np.maximum(0, b - (np.cumsum(demand) - demand)))
        growth = int(np.count_nonzero(dec & (alloc > 0)))
        # 2. preempt the newest request until the decodes' new KV fits
        while growth > M - used:
            used -= int(r_kv[-1])
            preemptions += 1
            front.appendleft(int(r_id[-1]))
            r_id, r_need, r_kv, r_left = r_id[:-1], r_need[:-1], r_kv[:-1], r_left[:-1]
            dec, alloc = dec[:-1], alloc[:-1]
            growth = int(np.count_nonzero(dec & (alloc > 0)))
        budget = b - int(alloc.sum())
        free = M - used - growth
        # 3. FCFS admission; the whole prompt (plus generated tokens to recompute) is reserved
        new: list[tuple[int, int, int, int]] = []
        slots = B - r_id.size
        while slots > 0 and budget > 0:
            if front:
                cand = front[0]
            elif next_arrival < arrived:
                cand = next_arrival
            else:
                break
            target = int(s_all[cand] + gen[cand])
            if target > free:
                break
            if front:
                front.popleft()
            else:
                next_arrival += 1
            chunk = min(C, target, budget)
            new.append((cand, target, int(o_all[cand] - gen[cand]), chunk))
            free -= target
            used += target
            budget -= chunk
            slots -= 1
        if new:
            ids, targets, lefts, chunks = (np.asarray(c, dtype=np.int64) for c in zip(*new, strict=True))
            r_id = np.concatenate([r_id, ids])
            r_need = np.concatenate([r_need, targets])
            r_kv = np.concatenate([r_kv, targets])
            r_left = np.concatenate([r_left, lefts])
            dec = np.concatenate([dec, np.zeros(len(new), dtype=bool)])
            alloc = np.concatenate([alloc, chunks])
        tokens = int(alloc.sum())
        kv_log.append(used + growth)
        clock += d0 + d1 * tokens
        # 4. progress
        processed[r_id] += alloc
        grow = dec & (alloc > 0)
        r_kv = r_kv + grow
        used += growth
        r_need = r_need - np.where(dec, 0, alloc)
        emits = grow | (~dec & (r_need == 0) & (alloc > 0))
        r_left = r_left - emits
        gen[r_id[emits]] += 1
        fin = r_left == 0
        if fin.any():
            completed += int(fin.sum())
            used -= int(r_kv[fin].sum())
            done_times[r_id[fin]] = clock
            keep = ~fin
            r_id, r_need, r_kv, r_left = r_id[keep], r_need[keep], r_kv[keep], r_left[keep]
        times.append(clock)
        in_sys.append(arrived - completed)
        waiting.append(arrived - next_arrival + len(front))
        tok_log.append(tokens)
        iters.append(1)
        # quiet stretch: all running requests decode; jump over the iterations in which
        # nothing but the clock, the KV held and the tokens left changes
        if not skip or r_id.size == 0 or r_need.any():
            continue
        dec_n = int(r_id.size)
        step = d0 + d1 * dec_n
        jump = min(int(r_left.min()) - 1, (M - used) // dec_n)
        if jump < 1:
            continue
        head_waits = bool(front) or next_arrival < int(np.searchsorted(arr, clock, side="right"))
        head_at = math.inf  # when an admission could end the stretch
        if dec_n < B and dec_n < b:  # an admission is possible in principle
            if head_waits:
                head = front[0] if front else next_arrival
                if int(s_all[head] + gen[head]) <= M - used - dec_n:
                    continue  # the head fits at the next iteration
            elif next_arrival < n_req:
                jump = min(jump, int((arr[next_arrival] - clock) / step))
                if jump < 1:
                    continue
                head_at = float(arr[next_arrival])
        # the clock advances step by step, as iteration by iteration, so both see the same
        # rounded start times (an arrival exactly at a start is admitted there or not alike);
        # the stretch stops at the first start the head has arrived by (simulated one by one)
        jump, last_start, end = quiet_clock(clock, step, jump, head_at)
        kv_log.append(jump * used + dec_n * jump * (jump + 1) // 2)
        processed[r_id] += jump
        gen[r_id] += jump
        r_kv = r_kv + jump
        r_left = r_left - jump
        used += jump * dec_n
        clock = end
        arrived = int(np.searchsorted(arr, last_start, side="right"))
        times.append(clock)
        in_sys.append(arrived - completed)
        waiting.append(arrived - next_arrival + len(front))
        tok_log.append(jump * dec_n)
        iters.append(jump)
    else:
        if completed < n_req and clock < stop:  # cut short: not a backlog, say so
            raise InvalidInstanceError(
                f"the simulation stopped after max_iterations = {max_iterations:,} iterations "
                f"with {n_req - completed:,} of {n_req:,} requests unfinished (at {clock:.6g} s); "
                "a run cut short would read as a growing backlog, i.e. an unstable rate: "
                "simulate fewer arrivals per run (n_requests)")
    finished = ~np.isnan(done_times)
    work = int((s_all + o_all - 1)[finished].sum())
    return SimResult(
        np.asarray(times),
        np.asarray(in_sys),
        np.asarray(waiting),
        np.asarray(tok_log),
        np.asarray(kv_log),
        np.asarray(iters),
        done_times,
        preemptions,
        int(processed[finished].sum()) - work,
        work,
    )


def quiet_clock(clock: float, step: float, jump: int, head_at: float = math.inf) -> tuple[int, float, float]:
    """The clock over a quiet stretch of up to ``jump`` iterations of ``step`` seconds, added one
    at a time in floats (``c_k = c_{k-1} + step``, rounded each time, as :func:`simulate` does
    iteration by iteration), in O(1) memory and O(binades crossed) time, not O(jump).

    Returns ``(j, c_{j-1}, c_j)``: j is ``jump``, or the first k >= 1 with c_k >= ``head_at`` if
    that comes sooner. Exact, not an approximation: within one binade
    [2^e, 2^(e+1)) the floats are multiples of one ulp u, and c + step rounds to c plus step
    rounded to a multiple of u, the same increment every time (with a tie at u/2 ties-to-even
    can alternate once, then it settles); so once two successive increments inside a binade
    are equal, every further one is, until a sum could leave the binade. Those runs are added
    as one product (exact: the result is a float of the binade); steps near a binade's end, and
    the first two in each, are added one by one.
    """
    k, x, prev = 0, float(clock), float(clock)
    d_last, seg_last = math.nan, None  # the last single increment and the binade it stayed in
    steady = False  # the last two single increments were equal and inside one binade
    while k < jump and (x < head_at or k == 0):
        if steady:
            d = d_last
            n = jump - k
            if d > 0:
                top = math.ldexp(1.0, math.frexp(x)[1])  # the binade's end
                n = min(n, int((top - x) / d) - 2)  # each sum stays below top (margin 2 steps)
                if head_at < math.inf:
                    n = min(n, int((head_at - x) / d) - 2)  # stop before the head's start
            if n >= 1:
                prev = x + (n - 1) * d
                x = x + n * d
                k += n
                continue
        nx = x + step
        d = nx - x
        e0 = math.frexp(x)[1]
        seg = e0 if x > 0 and math.frexp(nx)[1] == e0 else None
        steady = seg is not None and seg == seg_last and d == d_last
        d_last, seg_last = d, seg
        prev, x, k = x, nx, k + 1
    return k, prev, x


# ---------------------------------------------------------------------------------------------
# workloads for the simulation (common random numbers)
# ---------------------------------------------------------------------------------------------
def sample_requests(
    instance: Instance, n_requests: int, seed: int = 0, *, balanced: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Request lengths drawn from the instance's samples, and unit-rate Poisson arrival times (s).

    ``balanced`` (default): the lengths are shuffled copies of the instance's samples, so every
    block of ``instance.requests`` consecutive arrivals holds each sample exactly once and the
    horizon's mean lengths equal the instance's (no length-sampling noise; the marginal law of
    each request is the same as with i.i.d. draws). ``balanced=False``: i.i.d. draws.
    """
    rng = np.random.default_rng(seed)
    if balanced:
        copies = -(-n_requests // instance.requests)
        idx = np.concatenate([rng.permutation(instance.requests) for _ in range(copies)])[:n_requests]
    else:
        idx = rng.integers(0, instance.requests, n_requests)
    unit = np.cumsum(rng.exponential(size=n_requests))
    return instance.prompt_tokens[idx], instance.output_tokens[idx], unit


def check_requests(n_requests: int) -> None:
    """Refuse a run length the drift test cannot judge (the CLI checks its options with it)."""
    if isinstance(n_requests, bool) or not isinstance(n_requests, int | np.integer):
        raise InvalidInstanceError(
            f"n_requests must be a whole number of arrivals per run (at least {MIN_REQUESTS}), got "
            f"{n_requests!r}")
    if not n_requests >= MIN_REQUESTS:
        raise InvalidInstanceError(
            f"a simulated rate needs at least {MIN_REQUESTS} arrivals per run (the first "
            f"{WARMUP:.0%} are warm-up), got n_requests = {n_requests}")
    if n_requests > MAX_REQUESTS:  # 1e9 was a MemoryError, 1e12 never ended
        raise InvalidInstanceError(
            f"n_requests must be at most {MAX_REQUESTS:,} arrivals per run (each simulated rate "
            f"holds them in memory), got {n_requests:,}")


def _seed_list(seeds: int | Any, seed: int = 0) -> list[int]:
    if isinstance(seeds, str | bytes | bool):
        raise InvalidInstanceError(f"seeds must be a number of seeds or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int | np.integer):
        if not 1 <= seeds <= MAX_RUN_SEEDS:
            raise InvalidInstanceError(f"seeds must be between 1 and {MAX_RUN_SEEDS} "
                                       f"replications, got {seeds}")
        return [seed + i for i in range(int(seeds))]
    listed = [int(x) for x in seeds]
    if not 1 <= len(listed) <= MAX_RUN_SEEDS:
        raise InvalidInstanceError(f"seeds must list between 1 and {MAX_RUN_SEEDS} seeds, got "
                                   f"{len(listed)}")
    return listed


def saturated_throughput(
    instance: Instance, *, n_requests: int = N_REQUESTS, seed: int = 0, seeds: int = 1
) -> float:
    """Requests/s of a worker with an endless queue (all requests waiting at time 0).

    Measured between the 25% and 75% completions, away from the start-up and drain transients;
    the mean over ``seeds`` replications (seeds ``seed, seed + 1, ...``).
    """
    check_requests(n_requests)
    rates = []
    for r in _seed_list(seeds, seed):
        s, o, _ = sample_requests(instance, n_requests, r)
        res = simulate(instance, s, o, np.zeros(n_requests))
        done = np.sort(res.done_times[~np.isnan(res.done_times)])
        lo, hi = int(0.25 * done.size), int(0.75 * done.size)
        rates.append((hi - lo) / (done[hi] - done[lo]))
    return float(np.mean(rates))


@dataclasses.dataclass
class RateCheck:
    """Stability of one worker at one rate, from one or more replications (seeds).

    ``slope_ratio`` is the drift estimate of the module docstring divided by the rate, ``se``
    its standard error (between seeds; nan with one seed); ``raw_slope_ratio`` the plain mean
    slope of requests in system (no control variate). Other fields are means over the seeds.
    """

    rate: float
    stable: bool
    slope_ratio: float  # drift of requests in system / rate
    mean_in_system: float
    preemptions_per_request: float
    recompute_fraction: float
    compute_utilisation: float  # token throughput / peak (b per full iteration)
    kv_utilisation: float  # time-average KV held / M over the run, idle time as 0 (_kv_utilisation)
    se: float = math.nan
    raw_slope_ratio: float = math.nan
    seeds: int = 1
    decided: bool = True  # |slope_ratio - eps| >= 2 se (always True with one seed)


# instance id -> {key: result}, for the instances alive: an entry goes when its instance is
# garbage collected (a weak reference's callback), so the memo holds the results (a few floats
# each) and never the instances. It held them before, up to 512 entries: 40 distinct
# 400k-request instances evaluated and deleted kept 260 MB
_MEMO: dict[int, dict[tuple, Any]] = {}
_WATCH: dict[int, weakref.ref] = {}
_MEMO_ENTRIES = 512  # results kept in all (cleared when reached)
# one lock for _MEMO and _WATCH; a weak reference's callback (run by the collector anywhere, also
# inside a locked region of the same thread) never waits for it: when it is held, the callback
# leaves its drop in _DROPS, which the next holder applies
_LOCK = threading.Lock()
_DROPS: collections.deque[tuple[int, weakref.ref]] = collections.deque()


def _drop(ident: int, ref: weakref.ref) -> None:
    """Drop the results of the collected instance with id ``ident`` (with the lock held)."""
    if _WATCH.get(ident) is ref:
        del _WATCH[ident]
        _MEMO.pop(ident, None)


def _drain() -> None:
    """Apply the drops the callbacks left while the lock was held (with the lock held)."""
    while _DROPS:
        _drop(*_DROPS.popleft())


def _forget(ident: int, ref: weakref.ref) -> None:
    """The instance with id ``ident`` was collected: drop its results now, or, if the lock is
    held (another thread, or this one in the middle of the memo), leave it for the holder."""
    if _LOCK.acquire(blocking=False):
        try:
            _drain()
            _drop(ident, ref)
        finally:
            _LOCK.release()
    else:
        _DROPS.append((ident, ref))


def _memo(instance: Instance, key: tuple, compute: Callable[[], Any]) -> Any:
    """Simulations are deterministic in (instance, arguments): the methods of one gap table often
    check the same per-worker rate or observe the same fleet, so the result is kept while the
    instance object lives (keyed by its id; a weak reference drops the results when it goes, so
    a later object with the same id never sees them). Thread-safe: the table is read and changed
    under one lock (iterating it while another thread inserted, or a collector's callback removed,
    an entry raised 'dictionary changed size during iteration'), ``compute`` runs outside it."""
    ident = id(instance)
    with _LOCK:
        _drain()
        ref = _WATCH.get(ident)
        if ref is None or ref() is not instance:
            _MEMO.pop(ident, None)
            _WATCH[ident] = weakref.ref(instance, lambda r, ident=ident: _forget(ident, r))
        results = _MEMO.setdefault(ident, {})
        if key in results:
            return results[key]
    value = compute()
    with _LOCK:
        _drain()
        if sum(map(len, _MEMO.values())) >= _MEMO_ENTRIES:
            for kept in _MEMO.values():
                kept.clear()
        results[key] = value
    return value


def _one_run(instance: Instance, rate: float, n_requests: int, seed: int, warmup: float) -> dict[str, float]:
    return _memo(instance, ("run", rate, n_requests, seed, warmup),
                 lambda: _simulate_run(instance, rate, n_requests, seed, warmup))


def _simulate_run(
    instance: Instance, rate: float, n_requests: int, seed: int, warmup: float
) -> dict[str, float]:
    """One replication at ``rate``: slopes over the window [warmup x H, H] (H = last arrival)."""
    s, o, unit = sample_requests(instance, n_requests, seed)
    arrivals = unit / rate
    horizon = float(arrivals[-1])
    res = simulate(instance, s, o, arrivals, until=horizon)
    grid = np.linspace(warmup * horizon, horizon, 2001)
    # requests in system at each grid time: arrived by then minus finished by then
    arrived = np.searchsorted(arrivals, grid, side="right")
    finished = np.searchsorted(np.sort(res.done_times[~np.isnan(res.done_times)]), grid, side="right")
    in_system = (arrived - finished).astype(float)
    raw = float(np.polyfit(grid, in_system, 1)[0])
    # control variate: regress N(t) on t and on the arrival noise X(t) = A(t) - lambda t (mean 0);
    # the coefficient of t is the drift with the part of N that follows X removed
    design = np.column_stack([np.ones_like(grid), grid, arrived - rate * grid])
    drift = float(np.linalg.lstsq(design, in_system, rcond=None)[0][1])
    peak = instance.token_budget / (instance.step_overhead_s + instance.per_token_s * instance.token_budget)
    span = res.times <= horizon
    elapsed = float(res.times[span][-1]) if span.any() else horizon
    return {
        "drift": drift / rate,
        "raw": raw / rate,
        "mean_in_system": float(in_system.mean()),
        "preemptions_per_request": res.preemptions / n_requests,
        "recompute_fraction": res.recomputed_tokens / max(res.work_tokens, 1),
        "compute_utilisation": float(res.tokens[span].sum()) / elapsed / peak,
        "kv_utilisation": _kv_utilisation(instance, res, span, elapsed),
    }


def _kv_utilisation(instance: Instance, res: SimResult, span: np.ndarray, elapsed: float) -> float:
    """Time-average KV tokens held over [0, ``elapsed``] / M, idle time counted as 0 KV: the log
    entries ``span`` (those ending by ``elapsed``), each weighted by its busy time d0 x iterations
    + d1 x tokens, the time base of ``compute_utilisation`` (tokens / elapsed / peak). Exact for
    the simulator's log: an entry is one iteration, or a quiet stretch whose iterations all last
    d0 + d1 x (tokens / iterations), so its KV token-iterations x that length is its KV-seconds.
    Before, the rate check took a mean per iteration (idle time left out) and the fleet observer
    gave each idle gap the KV of the entry after it: one worker busy 0.3% of the time showed 0.10
    on both, where the time average is 0.0003 (R40 F1). 0.0 when no entry ends by ``elapsed``."""
    if not span.any() or elapsed <= 0:
        return 0.0
    kv, iters = res.kv_used[span], res.iterations[span]
    length = instance.step_overhead_s + instance.per_token_s * res.tokens[span] / iters
    return float((kv * length).sum() / elapsed) / instance.kv_tokens


def check_rate(
    instance: Instance,
    rate: float,
    *,
    n_requests: int = N_REQUESTS,
    seed: int = 0,
    seeds: int = 1,
    max_seeds: int | None = None,
    eps: float = EPS,
    warmup: float = WARMUP,
) -> RateCheck:
    """Simulate one worker at ``rate`` (req/s) and apply the drift test of the module docstring.

    Replications use seeds ``seed, seed + 1, ...`` (the same at every rate: common random
    numbers). When the test is undecided (|drift / rate - eps| < 2 standard errors) the number
    of seeds doubles, up to ``max_seeds`` (default: no extra seeds).
    """
    number("rate", rate, lambda v: 0 < v < math.inf, "a number of requests/s > 0")
    check_run_options(n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds, eps=eps,
                      warmup=warmup)
    limit = max(seeds, max_seeds or seeds)
    runs = [_one_run(instance, rate, n_requests, seed + i, warmup) for i in range(seeds)]
    while True:
        drift = np.array([r["drift"] for r in runs])
        se = float(drift.std(ddof=1) / math.sqrt(drift.size)) if drift.size > 1 else math.nan
        decided = drift.size < 2 or abs(drift.mean() - eps) >= 2 * se
        if decided or len(runs) >= limit:
            break
        extra = min(len(runs), limit - len(runs))
        runs += [_one_run(instance, rate, n_requests, seed + len(runs) + i, warmup) for i in range(extra)]

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in runs]))

    return RateCheck(
        rate=rate,
        stable=bool(drift.mean() <= eps),
        slope_ratio=float(drift.mean()),
        mean_in_system=mean("mean_in_system"),
        preemptions_per_request=mean("preemptions_per_request"),
        recompute_fraction=mean("recompute_fraction"),
        compute_utilisation=mean("compute_utilisation"),
        kv_utilisation=mean("kv_utilisation"),
        se=se,
        raw_slope_ratio=mean("raw"),
        seeds=len(runs),
        decided=bool(decided),
    )


@dataclasses.dataclass
class Knee:
    """The simulated maximum stable rate of one worker (req/s) and how it was found.

    ``lo`` (stable) and ``hi`` (unstable) bracket the knee with hi / lo <= 1 + resolution;
    ``rate`` = sqrt(lo hi). ``drift_lo`` / ``drift_hi``: the drift estimates (/ rate) there,
    ``se``: the larger of their standard errors, which is also about the knee's relative
    standard error (above the knee drift / rate rises one for one with log rate).
    ``undecided``: bisection steps whose test stayed within 2 standard errors of eps.
    """

    rate: float
    lo: float
    hi: float
    saturated: float
    simulations: int
    drift_lo: float = math.nan
    drift_hi: float = math.nan
    se: float = math.nan
    seeds: int = 1
    undecided: int = 0
    at_lo: RateCheck | None = None
    n_requests: int = 0  # arrivals per simulated run (after any horizon doubling)


def find_knee(
    instance: Instance,
    *,
    n_requests: int = N_REQUESTS,
    seed: int = 0,
    seeds: int = 1,
    max_seeds: int | None = None,
    eps: float = EPS,
    warmup: float = WARMUP,
    resolution: float = 0.01,
) -> Knee:
    """Bisection on log rate between a stable and an unstable rate until hi / lo <= 1 + resolution.

    The bracket starts at [S, 1.03 S], S = the saturated throughput (the knee lies near
    S / (1 - eps)), and widens by 3% steps until it holds a stable and an unstable rate. A knee
    below ``KNEE_FLOOR`` x S says the horizon is too short for the drift test (a stable worker's
    queue is still settling): the search is repeated with twice ``n_requests``, at most
    ``HORIZON_DOUBLINGS`` times and never past ``MAX_REQUESTS`` arrivals (at the cap the knee
    found is returned as it is).
    """
    for _ in range(HORIZON_DOUBLINGS):
        knee = _find_knee(instance, n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds,
                          eps=eps, warmup=warmup, resolution=resolution)
        if knee.rate >= KNEE_FLOOR * knee.saturated or n_requests >= MAX_REQUESTS:
            return knee  # (a doubling past the cap was refused mid-search, possibly hours in)
        n_requests = min(2 * n_requests, MAX_REQUESTS)
    return _find_knee(instance, n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds,
                      eps=eps, warmup=warmup, resolution=resolution)


def _find_knee(
    instance: Instance,
    *,
    n_requests: int,
    seed: int,
    seeds: int,
    max_seeds: int | None,
    eps: float,
    warmup: float,
    resolution: float,
) -> Knee:
    sat = saturated_throughput(instance, n_requests=n_requests, seed=seed, seeds=min(seeds, 2))
    checks: dict[float, RateCheck] = {}

    def stable(rate: float) -> bool:
        checks[rate] = check_rate(instance, rate, n_requests=n_requests, seed=seed, seeds=seeds,
                                  max_seeds=max_seeds, eps=eps, warmup=warmup)
        return checks[rate].stable

    lo, hi = sat, 1.03 * sat
    while not stable(lo):
        hi, lo = lo, lo / 1.03
    while stable(hi):
        lo, hi = hi, hi * 1.03
    while hi / lo > 1 + resolution:
        mid = math.sqrt(lo * hi)
        if stable(mid):
            lo = mid
        else:
            hi = mid
    end = (checks[lo], checks[hi])
    return Knee(
        rate=math.sqrt(lo * hi),
        lo=lo,
        hi=hi,
        saturated=sat,
        simulations=sum(c.seeds for c in checks.values()) + min(seeds, 2),
        drift_lo=end[0].slope_ratio,
        drift_hi=end[1].slope_ratio,
        se=float(np.nanmax([end[0].se, end[1].se])) if seeds > 1 else math.nan,
        seeds=max(c.seeds for c in checks.values()),
        undecided=sum(not c.decided for c in checks.values()),
        at_lo=end[0],
        n_requests=n_requests,
    )


def check_run_options(*, n_requests: Any, seed: Any, seeds: Any, max_seeds: Any, eps: Any, warmup: Any,
                      window: Any = None) -> None:
    """Refuse simulation options of the wrong type or range: an
    :class:`~servopt.benchmarks.harness.OptionError` (an ``InvalidInstanceError``) naming the
    option. ``window`` None: not checked (the calls that take no window)."""
    with refusing("n_requests"):
        check_requests(n_requests)
    with refusing("seed"):
        whole_number("seed", seed, low=0)
    with refusing("seeds"):
        whole_number("seeds", seeds)
        _seed_list(seeds)  # at most MAX_RUN_SEEDS
    if max_seeds is not None:
        with refusing("max_seeds"):  # (_seed_list's message would say "seeds")
            whole_number("max_seeds", max_seeds, high=MAX_RUN_SEEDS)
    with refusing("eps"):
        number("eps", eps, lambda v: 0 <= v < 1,
               "in [0, 1) (the drift per request/s a stable run may show)")
    with refusing("warmup"):
        number("warmup", warmup, lambda v: 0 <= v < 1,
               "in [0, 1) (the share of a run dropped as warm-up)")
    if window is not None:
        with refusing("window"):  # 1e12 allocated its arrivals for minutes (a MemoryError)
            whole_number("window", window, high=MAX_REQUESTS)


def check_options(*, n_requests: Any = N_REQUESTS, seed: Any = 0, seeds: Any = SEEDS,
                  max_seeds: Any = MAX_SEEDS, eps: Any = EPS, warmup: Any = WARMUP,
                  window: Any = 600) -> None:
    """The ``check`` of :func:`evaluate` and :func:`bound` (which takes no ``window``): every
    option as :func:`check_run_options` checks it, before the method or any simulation runs;
    ``window`` a whole number of arrivals in [1, ``MAX_REQUESTS``] (None was a TypeError from
    inside the observer's sampling)."""
    if window is None:  # (None here is a value given, refused by name; not "unchecked")
        with refusing("window"):
            whole_number("window", window)
    check_run_options(n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds, eps=eps,
                      warmup=warmup, window=window)


def resolve(method: Any) -> Callable[..., policies.Plan]:
    """A POLICIES name or a callable ``policy(instance, observe) -> Plan``, refused otherwise."""
    known = layer_module("capacity", "solvers").POLICIES  # a replaced layer's (register_decision)
    if isinstance(method, str):
        if method not in known:
            raise InvalidInstanceError(f"unknown method {method!r}; known: {sorted(known)}")
        return known[method]
    if not callable(method):
        raise InvalidInstanceError(
            f"method must be one of {sorted(known)} or a callable policy(instance, observe) -> "
            f"Plan, got {method!r}")
    return method


# ---------------------------------------------------------------------------------------------
# evaluator protocol
# ---------------------------------------------------------------------------------------------
def fleet_observer(
    instance: Instance, *, window: int = 3000, seed: int = 1
) -> Callable[[int], dict[str, float]]:
    """The measurements a reactive autoscaler sees on a fleet of N workers over a window.

    Returns ``observe(workers) -> {compute_utilisation, kv_utilisation, mean_waiting,
    final_waiting, throughput}`` from a simulation of one worker at lambda / N for ``window``
    arrivals (per worker; the workers are identical and statistically alike), over the
    simulation's steps that end by the last arrival. ``mean_waiting`` and ``final_waiting``
    count every request arrived and not yet admitted, also those arriving while an iteration
    runs (:func:`_backlog`); when no step ends by the last arrival (heavy overload) the window
    is [0, last arrival] with the first step's backlog.
    """
    s, o, unit = sample_requests(instance, window, seed)

    def observe(workers: int) -> dict[str, float]:
        if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
            raise InvalidInstanceError(f"a fleet needs a whole number of workers >= 1, got {workers!r}")
        return dict(_memo(instance, ("observe", workers, window, seed), lambda: measure(workers)))

    def measure(workers: int) -> dict[str, float]:
        rate = instance.arrival_rate / workers
        arrivals = unit / rate
        res = simulate(instance, s, o, arrivals, until=float(arrivals[-1]))
        span = res.times <= arrivals[-1]
        elapsed = float(res.times[span][-1]) if span.any() else float(arrivals[-1])
        peak = instance.token_budget / (
            instance.step_overhead_s + instance.per_token_s * instance.token_budget
        )
        dt = np.diff(np.concatenate([[0.0], res.times[span]]))
        done = np.count_nonzero(res.done_times <= elapsed)
        mean_waiting, final_waiting = _backlog(instance, res, arrivals, span, elapsed, dt)
        return {
            "compute_utilisation": float(res.tokens[span].sum()) / elapsed / peak,
            "kv_utilisation": _kv_utilisation(instance, res, span, elapsed),
            "mean_waiting": mean_waiting,
            "final_waiting": final_waiting,
            "throughput": done / elapsed,
        }

    return observe


def _backlog(instance: Instance, res: SimResult, arrivals: np.ndarray, span: np.ndarray,
             elapsed: float, dt: np.ndarray) -> tuple[float, float]:
    """``(mean_waiting, final_waiting)`` of :func:`fleet_observer`'s window [0, ``elapsed``]:
    the log's ``waiting`` counts the requests arrived by an entry's last iteration start, so
    the requests arriving while an iteration runs (admitted at the next start at the earliest)
    are added: sum over arrivals a in (r, e] of (e - a) for each entry ending at e whose last
    iteration started at r = e - (d0 + d1 x tokens / iterations). When no entry ends within the
    window (one long first iteration at heavy overload) the window is [0, last arrival] with the
    first entry's backlog (arrivals minus admissions) counted to its end. Without this, one
    worker at 1e4 req/s (``capacity.generate(requests=300, arrival_rate=1e4)``, window 600)
    showed an empty queue: its first iteration ran 0.043 s while 400 requests arrived, and
    ``queue_depth`` stopped at 1 worker (R21)."""
    d0, d1 = instance.step_overhead_s, instance.per_token_s
    arrivals = np.asarray(arrivals, dtype=float)
    total = np.r_[0.0, np.cumsum(arrivals)]

    def after(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arrivals in (lo, hi] and the sum of hi - a over them."""
        i = np.searchsorted(arrivals, lo, side="right")
        j = np.searchsorted(arrivals, np.maximum(hi, lo), side="right")
        return j - i, (j - i) * np.maximum(hi, lo) - (total[j] - total[i])

    last_start = res.times - (d0 + d1 * res.tokens / np.maximum(res.iterations, 1))
    if span.any():
        count, area = after(last_start[span], res.times[span])
        mean = float(((res.waiting[span] * dt).sum() + area.sum()) / elapsed)
        return mean, float(res.waiting[span][-1] + count[-1])
    if not len(res.times):
        return 0.0, 0.0
    end = float(arrivals[-1])  # the window: [0, last arrival], inside the first entry
    start = res.times[0] - (d0 * res.iterations[0] + d1 * res.tokens[0])
    count, area = after(np.array([last_start[0]]), np.array([end]))
    queued = float(res.waiting[0]) * max(end - float(start), 0.0)
    return float((queued + area[0]) / end), float(res.waiting[0] + count[0])


@checked_keywords(check=check_options)
def evaluate(
    instance: Instance,
    method: Any,
    *,
    n_requests: int = N_REQUESTS,
    seed: int = 0,
    seeds: int = SEEDS,
    max_seeds: int | None = MAX_SEEDS,
    eps: float = EPS,
    warmup: float = WARMUP,
    window: int = 600,
) -> Outcome:
    """Run a planning method and check its plan on the simulated worker (see module docstring).

    ``method``: a ``POLICIES`` name or a callable ``policy(instance, observe) -> Plan``. cost :
    the plan's workers; status ``unstable`` when the evaluator's drift test calls one worker at
    lambda / workers unstable.

    Metrics (``Outcome.metrics``; name, unit, meaning; all but ``observations`` and
    ``predicted_rate`` from :func:`check_rate` at the per-worker rate, means over its seeds):

    - ``stable`` (1 or 0): whether the drift test calls the worker stable (slope_ratio <= eps).
    - ``per_worker_rate`` (req/s): the instance's arrival rate / the plan's workers.
    - ``predicted_rate`` (req/s): the plan's own ``max_stable_rate`` per worker (NaN: none).
    - ``slope_ratio`` (fraction of the rate): drift of requests in system / the rate.
    - ``slope_se`` (fraction of the rate): standard error of ``slope_ratio`` between seeds (NaN
      with one seed).
    - ``compute_utilisation`` (fraction): token throughput / the worker's peak (b per full
      iteration).
    - ``kv_utilisation`` (fraction): time-average KV tokens held / the worker's KV memory M, over
      the run with idle time counted as 0 (the time base of ``compute_utilisation``).
    - ``preemptions_per_request`` (preemptions per arrival): preemptions / requests simulated.
    - ``observations`` (calls): how many times the method called ``observe`` (the simulated
      fleet).
    """
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(
            f"evaluate needs a servopt capacity Instance, got {type(instance).__name__}")
    policy = resolve(method)
    check_run_options(n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds, eps=eps,
                      warmup=warmup, window=window)
    observe = fleet_observer(instance, window=window, seed=seed + 1)
    spent = {"s": 0.0, "n": 0}

    def timed_observe(workers: int) -> dict[str, float]:
        start = time.perf_counter()
        try:
            return observe(workers)
        finally:
            spent["s"] += time.perf_counter() - start
            spent["n"] += 1

    start = time.perf_counter()
    plan = policy(instance, timed_observe)
    wall = time.perf_counter() - start - spent["s"]
    label = method_label(method)
    if not isinstance(plan, policies.Plan):
        raise InvalidInstanceError(f"capacity method {label!r} must return a servopt capacity Plan "
                                   f"(workers, ...), got {plan!r}")
    if isinstance(plan.workers, bool) or not isinstance(plan.workers, int | np.integer) or plan.workers < 1:
        raise InvalidInstanceError(f"capacity method {label!r}: the plan's workers must be a whole "
                                   f"number >= 1, got {plan.workers!r}")
    predicted = plan.max_stable_rate  # a metric of the row: a number (req/s), NaN for none
    if (isinstance(predicted, bool) or not isinstance(predicted, numbers.Real)
            or math.isinf(predicted) or predicted < 0):
        raise InvalidInstanceError(
            f"capacity method {label!r}: the plan's max_stable_rate must be a number of req/s >= 0 "
            f"(NaN: the method has none), got {predicted!r}")
    per_worker = instance.arrival_rate / plan.workers
    check = check_rate(instance, per_worker, n_requests=n_requests, seed=seed, seeds=seeds,
                       max_seeds=max_seeds, eps=eps, warmup=warmup)
    metrics = {
        "stable": float(check.stable),
        "per_worker_rate": per_worker,
        "predicted_rate": float(predicted),
        "slope_ratio": check.slope_ratio,
        "slope_se": check.se,
        "compute_utilisation": check.compute_utilisation,
        "kv_utilisation": check.kv_utilisation,
        "preemptions_per_request": check.preemptions_per_request,
        "observations": float(spent["n"]),
    }
    return Outcome(
        cost=float(plan.workers), metrics=metrics, wall_s=wall, status="ok" if check.stable else "unstable"
    )


@checked_keywords(check=check_options)
def bound(
    instance: Instance,
    *,
    n_requests: int = N_REQUESTS,
    seed: int = 0,
    seeds: int = SEEDS,
    max_seeds: int | None = MAX_SEEDS,
    eps: float = EPS,
    warmup: float = WARMUP,
) -> Bound:
    """The least number of workers N whose worker the evaluator's own test calls stable at lambda / N.

    The test is :func:`check_rate` with these options (the evaluator's when both get the same).
    Fleets the model puts at most ``SCAN_ALL`` workers are scanned from N = 1: every smaller
    fleet was tested and called unstable, so no plan the evaluator calls stable costs less.
    Larger fleets start at ceil(lambda / knee_hi) (:func:`find_knee`; fewer workers load one
    above the knee's unstable end, taken as unstable untested: see the module docstring) and
    take the test as monotone from there: ``SCAN_FIRST`` sizes one at a time, then a galloping
    search and a bisection over N (:func:`least_stable`), O(log N) tests; an answer past the
    scanned sizes says so in ``status`` (a stable fleet one worker above an unstable one, the
    least only if the test is monotone).

    Time: every test is a :func:`check_rate` (its seeds' simulations at lambda / N), and a rate
    that needs a large fleet takes the ``SCAN_FIRST`` tests past the start plus O(log N) more,
    each near the knee, where the simulations are longest; so the bound's time grows with the
    fleet size, not only with ``n_requests``: at ``arrival_rate`` 1e4 or more on a default
    worker (hundreds of workers and more) it takes minutes where ``plan`` takes seconds (R21
    #14; the rate is not capped).
    """
    start = time.perf_counter()
    check_run_options(n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds, eps=eps,
                      warmup=warmup)
    rate = instance.arrival_rate

    def stable(workers: int) -> bool:
        return check_rate(instance, rate / workers, n_requests=n_requests, seed=seed, seeds=seeds,
                          max_seeds=max_seeds, eps=eps, warmup=warmup).stable

    if rate / model.bounds(instance).max_stable_rate <= SCAN_ALL:
        workers = 1
        while not stable(workers):
            workers += 1
    else:
        knee = find_knee(instance, n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds,
                         eps=eps, warmup=warmup)
        first = max(1, math.ceil(rate / knee.hi - 1e-9))
        workers = least_stable(stable, first)
        if workers >= first + SCAN_FIRST:
            return Bound(float(workers), "simulated", wall_s=time.perf_counter() - start,
                         status=f"searched past {first + SCAN_FIRST - 1:,} workers: stable, one "
                                "fewer unstable (the least if the test is monotone in the rate)")
    return Bound(float(workers), "simulated", wall_s=time.perf_counter() - start)


def least_stable(stable: Callable[[int], bool], start: int) -> int:
    """The least fleet size N >= ``start`` with ``stable(N)``: the first ``SCAN_FIRST`` sizes
    one at a time (exactly the scan's answer when it lies there, whatever the test does), then,
    taking the test as monotone in N (more workers, a lower rate per worker: the assumption of
    :func:`bound`'s large fleets), galloping (steps 1, 2, 4, ... past the last size scanned)
    until one is stable and bisection between it and the last unstable one: about
    2 log2(N - start) more tests where a scan one worker at a time took N - start. Without the
    assumption the answer past the scanned sizes is a stable N whose N - 1 is unstable, not
    necessarily the least (1e7 req/s on three request lengths: 191,604 where a scan finds 190,980).
    """
    for size in range(start, start + SCAN_FIRST):
        if stable(size):
            return size
    unstable, step = start + SCAN_FIRST - 1, 1
    while not stable(unstable + step):
        unstable, step = unstable + step, 2 * step
    found = unstable + step
    while found - unstable > 1:
        middle = (unstable + found) // 2
        if stable(middle):
            found = middle
        else:
            unstable = middle
    return found


def knee_report(
    instance: Instance,
    *,
    n_requests: int = N_REQUESTS,
    seed: int = 0,
    seeds: int = 1,
    max_seeds: int | None = None,
    eps: float = EPS,
    warmup: float = WARMUP,
) -> dict[str, Any]:
    """The simulated knee of one instance (one benchmark cell) and what the simulation saw there.

    Only simulated quantities: the prediction is compared in :func:`prediction_report`.
    """
    knee = find_knee(instance, n_requests=n_requests, seed=seed, seeds=seeds, max_seeds=max_seeds,
                     eps=eps, warmup=warmup)
    at_lo = knee.at_lo
    return {
        "knee": knee.rate,
        "knee_lo": knee.lo,
        "knee_hi": knee.hi,
        "drift_lo": knee.drift_lo,
        "drift_hi": knee.drift_hi,
        "knee_se": knee.se,
        "seeds": knee.seeds,
        "undecided": knee.undecided,
        "saturated": knee.saturated,
        "recompute_fraction": at_lo.recompute_fraction if at_lo else math.nan,
        "preemptions_per_request": at_lo.preemptions_per_request if at_lo else math.nan,
        "simulations": knee.simulations,
    }


def prediction_report(instance: Instance) -> dict[str, Any]:
    """The model's bounds for one instance (closed form; no simulation)."""
    predicted = model.bounds(instance)
    corr = model.memory_corrections(instance, rate=predicted.memory)
    return {
        "compute_bound": predicted.compute,
        "memory_bound": predicted.memory,
        "memory_first_order": predicted.memory_first_order,
        "slot_bound": predicted.slots,
        "predicted": predicted.max_stable_rate,
        "binding": predicted.binding,
        "predicted_preemptions": corr["preemptions_per_request"],
        "predicted_recompute": corr["recompute_fraction"],
        "kv_over_size_bias": instance.kv_tokens / predicted.means["prompt_size_bias"],
    }


# ---------------------------------------------------------------------------------------------
# benchmark cells
# ---------------------------------------------------------------------------------------------
# Regimes per workload: worker fields that make one resource bind (on the llama3-8b@a100
# illustrative profile: b = 4096, B = 256, C = 512, t = 12 ms + 0.06 ms/token).
REGIMES: dict[str, dict[str, dict[str, Any]]] = {
    "azure_code": {
        "compute": {"kv_tokens": 400_000},
        "memory_tight": {"kv_tokens": 9_000},
        "memory": {"kv_tokens": 16_000},
        "memory_large": {"kv_tokens": 32_000},
        "mixed": {"kv_tokens": 100_000},
        "batch_cap": {"kv_tokens": 400_000, "batch_cap": 8},
    },
    "conversation": {
        "compute": {"kv_tokens": 2_000_000, "token_budget": 2048, "batch_cap": 1024},
        "memory": {"kv_tokens": 32_000},
        "memory_large": {"kv_tokens": 64_000},
        "memory_huge": {"kv_tokens": 128_000},
        "mixed": {"kv_tokens": 330_000},
        "batch_cap": {"kv_tokens": 2_000_000, "batch_cap": 32},
    },
}


def make_cell(
    *,
    seed: int = 0,
    workload: str = "azure_code",
    regime: str = "memory",
    rate_multiple: float = 10.3,
    samples: int = 4000,
) -> Instance:
    """One benchmark cell: a workload's lengths, a regime's worker, a target rate.

    ``azure_code`` takes the lengths of ``azure2023_code.csv`` (found by
    :func:`servopt.instances.traces.shared_trace`; ``seed`` changes nothing there: the
    simulations' seeds are the harness's); other workloads come from
    :func:`servopt.instances.capacity.generate` with ``samples`` draws. The target rate is
    ``rate_multiple`` times the planning rule's per-worker maximum stable rate (about ten workers).
    """
    from servopt.instances import capacity as instances
    from servopt.instances.traces import shared_trace

    if workload not in REGIMES or regime not in REGIMES[workload]:
        raise InvalidInstanceError(
            f"unknown cell {workload}/{regime}; known: "
            + ", ".join(f"{w}/{r}" for w in REGIMES for r in REGIMES[w])
        )
    whole_number("seed", seed, low=0)
    worker = dict(REGIMES[workload][regime])
    if workload == "azure_code":  # the trace's lengths: the seed draws nothing here
        path = shared_trace("azure2023_code.csv")
        if path is None:
            raise InvalidInstanceError("azure2023_code.csv not found in $SERVOPT_TRACES or "
                                       "../shared/traces: set SERVOPT_TRACES to the folder "
                                       "holding it")
        inst = instances.from_trace(path, arrival_rate=1.0, **worker)
    else:
        inst = instances.generate(workload=workload, requests=samples, seed=seed, arrival_rate=1.0, **worker)
    rate = rate_multiple * model.bounds(inst).max_stable_rate
    return inst.with_(arrival_rate=rate, workload=f"{workload}/{regime}")
