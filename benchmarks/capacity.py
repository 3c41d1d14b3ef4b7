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

Knee (the simulated maximum stable rate). With Poisson arrivals at rate lambda over a horizon of
``n_requests`` arrivals (common random numbers across rates: the same lengths and unit-rate
gaps), the number of requests in system is regressed on time over the second half of the
arrival horizon; the worker is *unstable* at lambda iff the slope exceeds ``eps x lambda``
(default eps = 1%). The knee is the boundary between stable and unstable rates, found by
bisection on log lambda from a bracket around the saturated throughput, until hi / lo <= 1.01,
and reported as sqrt(lo x hi) (so it is resolved to about 1%).

Gap table for a planning decision. ``evaluate`` runs a planning method (it may observe the
simulated fleet, as reactive autoscalers do) and scores its plan: cost = workers provisioned for
the instance's target rate; the plan is stable iff one worker is stable at lambda / N in the
simulation (the arrivals split evenly and at random over identical workers); an unstable plan
gets status ``unstable``. ``bound`` = ceil(lambda / knee): the least number of workers the
simulation shows stable (stability is monotone in N), kind ``simulated``: an empirical reference
(the knee carries the simulation's noise), not a proof. Every plan the simulation finds stable
costs at least this much, so gap > 0 is over-provisioning and a negative gap (with status
``unstable``) under-provisioning.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from servopt.benchmarks.harness import Bound, Outcome
from servopt.core import InvalidInstanceError
from servopt.instances.capacity import Instance
from servopt.models import capacity as model
from servopt.solvers import capacity as policies

SENSE = "min"
DEFAULT_METHODS = ("plan", "fluid_lp", "first_order", "compute_only", "utilisation", "queue_depth")
N_REQUESTS = 20000
EPS = 0.01


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
    max_iterations: int = 10**7,
    skip: bool = True,
) -> SimResult:
    """Simulate one worker of ``instance`` on requests arriving at ``arrivals`` (sorted, s).

    ``skip``: simulate quiet stretches at once (every running request decoding, no admission,
    preemption or completion possible before the stretch ends); the trajectory is the same as
    with ``skip=False``, iteration by iteration, up to floating-point rounding of the clock.
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
    for _ in range(max_iterations):
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
        if dec_n < B and dec_n < b:  # an admission is possible in principle
            if head_waits:
                head = front[0] if front else next_arrival
                if int(s_all[head] + gen[head]) <= M - used - dec_n:
                    continue  # the head fits at the next iteration
            elif next_arrival < n_req:
                jump = min(jump, int((arr[next_arrival] - clock) / step))
                if jump < 1:
                    continue
        last_start = clock + (jump - 1) * step
        kv_log.append(jump * used + dec_n * jump * (jump + 1) // 2)
        processed[r_id] += jump
        gen[r_id] += jump
        r_kv = r_kv + jump
        r_left = r_left - jump
        used += jump * dec_n
        clock += jump * step
        arrived = int(np.searchsorted(arr, last_start, side="right"))
        times.append(clock)
        in_sys.append(arrived - completed)
        waiting.append(arrived - next_arrival + len(front))
        tok_log.append(jump * dec_n)
        iters.append(jump)
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


# ---------------------------------------------------------------------------------------------
# workloads for the simulation (common random numbers)
# ---------------------------------------------------------------------------------------------
def sample_requests(
    instance: Instance, n_requests: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Request lengths resampled from the instance's samples, and unit-rate arrival times."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, instance.requests, n_requests)
    unit = np.cumsum(rng.exponential(size=n_requests))
    return instance.prompt_tokens[idx], instance.output_tokens[idx], unit


def saturated_throughput(instance: Instance, *, n_requests: int = N_REQUESTS, seed: int = 0) -> float:
    """Requests/s of a worker with an endless queue (all requests waiting at time 0).

    Measured between the 25% and 75% completions, away from the start-up and drain transients.
    """
    s, o, _ = sample_requests(instance, n_requests, seed)
    res = simulate(instance, s, o, np.zeros(n_requests))
    done = np.sort(res.done_times[~np.isnan(res.done_times)])
    lo, hi = int(0.25 * done.size), int(0.75 * done.size)
    return (hi - lo) / (done[hi] - done[lo])


@dataclasses.dataclass
class RateCheck:
    """Stability of one worker at one rate."""

    rate: float
    stable: bool
    slope_ratio: float  # slope of requests in system / rate
    mean_in_system: float
    preemptions_per_request: float
    recompute_fraction: float
    compute_utilisation: float  # token throughput / peak (b per full iteration)
    kv_utilisation: float  # mean KV held / M, per iteration


def check_rate(
    instance: Instance, rate: float, *, n_requests: int = N_REQUESTS, seed: int = 0, eps: float = EPS
) -> RateCheck:
    """Simulate one worker at ``rate`` (req/s) and apply the slope test of the module docstring."""
    if not rate > 0:
        raise InvalidInstanceError(f"rate must be > 0, got {rate}")
    s, o, unit = sample_requests(instance, n_requests, seed)
    arrivals = unit / rate
    horizon = float(arrivals[-1])
    res = simulate(instance, s, o, arrivals)
    window = (res.times >= horizon / 2) & (res.times <= horizon)
    if np.count_nonzero(window) >= 2:
        slope = float(np.polyfit(res.times[window], res.in_system[window], 1)[0])
    else:  # iterations longer than half the horizon: hopelessly overloaded
        slope = rate
    peak = instance.token_budget / (instance.step_overhead_s + instance.per_token_s * instance.token_budget)
    span = res.times <= horizon
    elapsed = float(res.times[span][-1]) if span.any() else horizon
    tokens = float(res.tokens[span].sum())
    return RateCheck(
        rate=rate,
        stable=slope <= eps * rate,
        slope_ratio=slope / rate,
        mean_in_system=float(res.in_system[window].mean()) if window.any() else math.nan,
        preemptions_per_request=res.preemptions / n_requests,
        recompute_fraction=res.recomputed_tokens / max(res.work_tokens, 1),
        compute_utilisation=tokens / elapsed / peak,
        kv_utilisation=(float(res.kv_used[span].sum() / res.iterations[span].sum()) / instance.kv_tokens
                        if span.any() else 0.0),
    )


@dataclasses.dataclass
class Knee:
    """The simulated maximum stable rate of one worker (req/s) and how it was found."""

    rate: float
    lo: float
    hi: float
    saturated: float
    simulations: int


def find_knee(
    instance: Instance,
    *,
    n_requests: int = N_REQUESTS,
    seed: int = 0,
    eps: float = EPS,
    resolution: float = 0.01,
) -> Knee:
    """Bisection on log rate between a stable and an unstable rate until hi / lo <= 1 + resolution."""
    sat = saturated_throughput(instance, n_requests=n_requests, seed=seed)
    runs = 1

    def stable(rate: float) -> bool:
        nonlocal runs
        runs += 1
        return check_rate(instance, rate, n_requests=n_requests, seed=seed, eps=eps).stable

    lo, hi = 0.97 * sat, 1.03 * sat
    while not stable(lo):
        hi, lo = lo, lo * 0.92
    while stable(hi):
        lo, hi = hi, hi * 1.08
    while hi / lo > 1 + resolution:
        mid = math.sqrt(lo * hi)
        if stable(mid):
            lo = mid
        else:
            hi = mid
    return Knee(rate=math.sqrt(lo * hi), lo=lo, hi=hi, saturated=sat, simulations=runs)


# ---------------------------------------------------------------------------------------------
# evaluator protocol
# ---------------------------------------------------------------------------------------------
def fleet_observer(
    instance: Instance, *, window: int = 3000, seed: int = 1
) -> Callable[[int], dict[str, float]]:
    """The measurements a reactive autoscaler sees on a fleet of N workers over a window.

    Returns ``observe(workers) -> {compute_utilisation, kv_utilisation, mean_waiting,
    final_waiting, throughput}`` from a simulation of one worker at lambda / N for ``window``
    arrivals (per worker; the workers are identical and statistically alike).
    """
    s, o, unit = sample_requests(instance, window, seed)

    def observe(workers: int) -> dict[str, float]:
        if workers < 1:
            raise InvalidInstanceError(f"a fleet needs at least one worker, got {workers}")
        rate = instance.arrival_rate / workers
        arrivals = unit / rate
        res = simulate(instance, s, o, arrivals)
        span = res.times <= arrivals[-1]
        elapsed = float(res.times[span][-1]) if span.any() else float(arrivals[-1])
        peak = instance.token_budget / (
            instance.step_overhead_s + instance.per_token_s * instance.token_budget
        )
        dt = np.diff(np.concatenate([[0.0], res.times[span]]))
        done = np.count_nonzero(res.done_times <= elapsed)
        return {
            "compute_utilisation": float(res.tokens[span].sum()) / elapsed / peak,
            "kv_utilisation": float((res.kv_used[span] / res.iterations[span] * dt).sum() / elapsed)
            / instance.kv_tokens,
            "mean_waiting": float((res.waiting[span] * dt).sum() / elapsed),
            "final_waiting": float(res.waiting[span][-1]) if span.any() else 0.0,
            "throughput": done / elapsed,
        }

    return observe


def evaluate(
    instance: Instance,
    method: Any,
    *,
    n_requests: int = N_REQUESTS,
    seed: int = 0,
    eps: float = EPS,
    window: int = 3000,
) -> Outcome:
    """Run a planning method and check its plan on the simulated worker (see module docstring)."""
    policy = policies.POLICIES[method] if isinstance(method, str) else method
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
    per_worker = instance.arrival_rate / plan.workers
    check = check_rate(instance, per_worker, n_requests=n_requests, seed=seed, eps=eps)
    metrics = {
        "stable": float(check.stable),
        "per_worker_rate": per_worker,
        "predicted_rate": plan.max_stable_rate,
        "slope_ratio": check.slope_ratio,
        "compute_utilisation": check.compute_utilisation,
        "kv_utilisation": check.kv_utilisation,
        "preemptions_per_request": check.preemptions_per_request,
        "observations": float(spent["n"]),
    }
    return Outcome(
        cost=float(plan.workers), metrics=metrics, wall_s=wall, status="ok" if check.stable else "unstable"
    )


def bound(instance: Instance, *, n_requests: int = N_REQUESTS, seed: int = 0, eps: float = EPS) -> Bound:
    """ceil(lambda / knee): the least number of workers the simulation shows stable."""
    start = time.perf_counter()
    knee = find_knee(instance, n_requests=n_requests, seed=seed, eps=eps)
    workers = max(1, math.ceil(instance.arrival_rate / knee.lo - 1e-9))
    return Bound(float(workers), "simulated", wall_s=time.perf_counter() - start)


def knee_report(
    instance: Instance, *, n_requests: int = N_REQUESTS, seed: int = 0, eps: float = EPS
) -> dict[str, Any]:
    """Predicted bounds against the simulated knee, for one instance (one benchmark cell)."""
    predicted = model.bounds(instance)
    knee = find_knee(instance, n_requests=n_requests, seed=seed, eps=eps)
    at_knee = check_rate(instance, knee.lo, n_requests=n_requests, seed=seed, eps=eps)
    return {
        "knee": knee.rate,
        "knee_lo": knee.lo,
        "knee_hi": knee.hi,
        "saturated": knee.saturated,
        "compute_bound": predicted.compute,
        "memory_bound": predicted.memory,
        "memory_first_order": predicted.memory_first_order,
        "slot_bound": predicted.slots,
        "predicted": predicted.max_stable_rate,
        "binding": predicted.binding,
        "error": predicted.max_stable_rate / knee.rate - 1,
        "first_order_error": min(predicted.compute, predicted.memory_first_order, predicted.slots) / knee.rate
        - 1,
        "recompute_fraction": at_knee.recompute_fraction,
        "preemptions_per_request": at_knee.preemptions_per_request,
        "kv_over_size_bias": instance.kv_tokens / predicted.means["prompt_size_bias"],
        "simulations": knee.simulations + 1,
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
    :func:`servopt.instances.traces.shared_trace`); other workloads come from
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
    worker = dict(REGIMES[workload][regime])
    if workload == "azure_code":
        path = shared_trace("azure2023_code.csv")
        if path is None:
            raise InvalidInstanceError("azure2023_code.csv not found (set SERVOPT_TRACES)")
        inst = instances.from_trace(path, arrival_rate=1.0, **worker)
    else:
        inst = instances.generate(workload=workload, requests=samples, seed=seed, arrival_rate=1.0, **worker)
    rate = rate_multiple * model.bounds(inst).max_stable_rate
    return inst.with_(arrival_rate=rate, workload=f"{workload}/{regime}")
