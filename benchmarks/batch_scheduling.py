"""Round simulator of one worker's continuous batch, and the bound for the gap table.

Each round t: (1) requests with arrival <= t join the waiting queue; (2) every running request
needs one more KV token: if prompt + generated + 1 summed over the running set exceeds the
memory, the policy's ``preempt`` rule evicts requests (recompute: their KV is dropped, they go
back to the front of the queue with the tokens already emitted); (3) the policy's ``admit``
picks waiting requests, which the simulator admits in order if they fit in this round's
memory and batch cap (otherwise they are refused and counted); (4) every running request emits
one token; one that has emitted its true output length finishes at the end of the round, with
latency t + 1 - arrival. The cost is the total end-to-end latency in rounds.

This simulator is the independent judge of every method: it never reads a model's objective.
"""

from __future__ import annotations

import math
import time
from numbers import Integral
from typing import Any

import numpy as np

from servopt.benchmarks.harness import Bound, OptionError, Outcome, checked_keywords, refusing, written_at
from servopt.core import InvalidInstanceError
from servopt.core.checks import flag, whole_number
from servopt.instances.batch_scheduling import Instance
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules

SENSE = "min"
COST = "total end-to-end latency (rounds)"
FORESIGHT = ("hindsight",)  # plans on the predicted lengths taken as true: foresight when exact
DEFAULT_METHODS = ("fcfs", "spf", "mcsf", "bid_price", "bid_price_stationary")
# busy rounds a default simulation may need at least (:func:`busy_rounds`): the simulator takes
# 17-30 us a round on this machine (3 requests serialised by memory, and n = 2000-20000 Azure
# online, fcfs), so 1e7 rounds are 3-5 minutes per policy; n = 20000 Azure at load 1.2 needs
# ~7e4. A 247-byte file (outputs of 1e6 tokens, memory for one request) took ~15 s a million
# rounds for every method before this check
MAX_SIMULATED_ROUNDS = 10_000_000


def simulate(instance: Instance, policy: rules.Policy | str, *, trace: bool = False,
             max_rounds: int | None = None) -> dict[str, Any]:
    """Run ``policy`` (a prepared policy object, or a ``POLICIES`` name: made and prepared here)
    on ``instance``; per-request results and metrics.

    Returns a dict with ``latency``, ``ttft``, ``finish`` (rounds, per request), ``memory`` (KV
    tokens held in each round), ``preemptions``, ``refused`` and, with ``trace=True``,
    ``batch`` (running requests per round). ``decide_s`` is the time spent inside the policy.

    Per round the work is proportional to the running set and the waiting queue, never to n:
    the running set (admission order) and the waiting queue (FCFS order: preempted requests
    first, most recently preempted first, those of one round by admission; then arrivals by
    arrival round and id) are kept as arrays and updated only when a request joins or leaves.

    ``max_rounds``: None refuses, before the policy runs, an instance that needs more than
    ``MAX_SIMULATED_ROUNDS`` busy rounds (:func:`busy_rounds`); a number is the caller's own cap.
    """
    check_options(trace=trace, max_rounds=max_rounds)
    check_rounds(instance, max_rounds)
    if not isinstance(policy, rules.Policy):
        policy = rules.make_policy(policy)  # a name or a class (anything else is refused)
        policy.prepare(instance)
    n = instance.n
    a, s, o = instance.arrival, instance.prompt_tokens, instance.output_tokens
    M = instance.kv_memory
    cap = instance.max_batch if instance.max_batch is not None else n
    if max_rounds is None:
        max_rounds = int(a.max() + 4 * o.sum() + 100)
    status = np.zeros(n, dtype=np.int8)  # 0 not arrived, 1 waiting, 2 running, 3 done
    generated = np.zeros(n, dtype=np.int64)
    admitted_at = np.full(n, -1, dtype=np.int64)
    admit_seq = np.zeros(n, dtype=np.int64)
    ttft = np.full(n, -1, dtype=np.int64)
    finish = np.full(n, -1, dtype=np.int64)
    seen_generated, seen_admitted = _read_only_view(generated), _read_only_view(admitted_at)
    memory: list[int] = []
    batch: list[int] = []
    preemptions = refused = 0
    seq = 0
    decide_s = 0.0
    t = 0
    done = 0
    by_arrival = np.argsort(a, kind="stable")  # the FCFS order of arrivals (round, then id)
    arrived = a[by_arrival]
    next_arrival = 0
    running = np.zeros(0, dtype=np.int64)  # admission order
    need = np.zeros(0, dtype=np.int64)  # KV tokens of each running request this round
    left = np.zeros(0, dtype=np.int64)  # tokens each running request has still to emit
    waiting = np.zeros(0, dtype=np.int64)  # FCFS queue order
    while done < n:
        if t >= max_rounds:  # a protocol break, as routing's: a policy must admit eventually
            raise InvalidInstanceError(
                f"the policy {getattr(policy, 'name', type(policy).__name__)!r} did not finish "
                f"{n - done} of {n} requests within {max_rounds} rounds: it stalls ({waiting.size} "
                f"waiting, {running.size} running at round {t}); admit() must return waiting "
                "requests that fit")
        if next_arrival < n and arrived[next_arrival] <= t:
            last = int(np.searchsorted(arrived, t, side="right"))
            new = by_arrival[next_arrival:last]
            status[new] = 1
            waiting = np.concatenate([waiting, new])
            next_arrival = last
        if not running.size and not waiting.size:
            t = int(arrived[next_arrival])
            continue
        used = int(need.sum())  # prompt + generated + 1 over the running set
        # (2) overflow: the policy's preemption rule
        if used > M:
            state = _state(instance, t, used, waiting, running, seen_generated, seen_admitted)
            t0 = time.perf_counter()
            victims = _request_ids(_ask(policy.preempt, "preempt", state, used - M), n,
                                   "preempt", t)
            decide_s += time.perf_counter() - t0
            _check_ids(victims, status, 2, "preempt", t, a)
            status[victims] = 1
            preemptions += len(victims)
            used -= int(np.sum(s[victims] + generated[victims] + 1))
            if used > M:
                raise InvalidInstanceError(f"the policy's preempt() did not free enough memory at "
                                           f"round {t} ({used} > {M} KV tokens)")
            stay = status[running] == 2
            running, need, left = running[stay], need[stay], left[stay]
            # to the front of the queue, ahead of earlier preemptions; one round's by admission
            waiting = np.concatenate([victims[np.argsort(admit_seq[victims], kind="stable")],
                                      waiting])
        # (3) admission
        if waiting.size and len(running) < cap:
            state = _state(instance, t, used, waiting, running, seen_generated, seen_admitted)
            t0 = time.perf_counter()
            chosen = _request_ids(_ask(policy.admit, "admit", state), n, "admit", t)
            decide_s += time.perf_counter() - t0
            _check_ids(chosen, status, 1, "admit", t, a)
            count = len(running)
            admitted, tokens = [], []
            for i in chosen.tolist():
                tokens_i = int(s[i] + generated[i] + 1)
                if used + tokens_i > M or count >= cap:  # memory or batch cap: a refusal
                    refused += 1
                    continue
                status[i] = 2
                admitted_at[i] = t
                seq += 1
                admit_seq[i] = seq
                used += tokens_i
                count += 1
                admitted.append(i)
                tokens.append(tokens_i)
                if ttft[i] < 0:  # its first token comes at the end of this round
                    ttft[i] = t + 1 - a[i]
            if admitted:
                new = np.asarray(admitted, dtype=np.int64)
                running = np.concatenate([running, new])
                need = np.concatenate([need, tokens])
                left = np.concatenate([left, o[new] - generated[new]])
                waiting = waiting[status[waiting] == 1]
        # (4) one token for every running request
        generated[running] += 1
        memory.append(used)
        batch.append(len(running))
        left -= 1
        need += 1
        over = left <= 0
        if over.any():
            ended = running[over]
            status[ended] = 3
            finish[ended] = t
            done += len(ended)
            keep = ~over
            running, need, left = running[keep], need[keep], left[keep]
        t += 1
    latency = finish + 1 - a
    out = {"latency": latency, "ttft": ttft, "finish": finish, "memory": np.asarray(memory),
           "preemptions": preemptions, "refused": refused, "decide_s": decide_s,
           "rounds": t}
    if trace:
        out["batch"] = np.asarray(batch)
    return out


def check_options(*, trace: Any = False, max_rounds: Any = None) -> None:
    """Refuse a :func:`simulate` option that is not what it says (an :class:`OptionError` naming
    it, before any policy runs): ``trace`` True or False, ``max_rounds`` None (the default
    horizon) or a whole number of rounds >= 1 (-3 made every policy "stall" at round 0)."""
    with refusing("trace"):
        flag("trace", trace)
    if max_rounds is not None and (isinstance(max_rounds, bool | np.bool_)
                                   or not isinstance(max_rounds, Integral) or max_rounds < 1):
        raise OptionError(f"batch_scheduling: max_rounds must be a whole number of rounds >= 1 "
                          f"(or None: the default horizon), got {max_rounds!r}")


def busy_rounds(instance: Instance) -> int:
    """A lower bound on the busy rounds (a request running) of any schedule of ``instance``: the
    longest output, the total memory-time footprint over the memory (sum_i s_i o_i +
    o_i (o_i + 1) / 2 token-rounds, at most M a round; preemption only adds), and the output
    tokens over the batch cap. The simulator steps through busy rounds and jumps idle ones."""
    o = instance.output_tokens
    need = max(int(o.max()), -(-int(instance.footprint().sum()) // int(instance.kv_memory)))
    if instance.max_batch is not None:
        need = max(need, -(-int(o.sum()) // int(instance.max_batch)))
    return need


def check_rounds(instance: Instance, max_rounds: int | None = None) -> None:
    """Refuse, before any policy runs, an instance whose simulation cannot end within
    ``max_rounds`` (the last round, from round 0: at least the latest arrival plus its output
    and :func:`busy_rounds`), or, with ``max_rounds`` None, would step through more than
    ``MAX_SIMULATED_ROUNDS`` busy rounds."""
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(
            f"batch_scheduling needs a batch_scheduling instance, got {type(instance).__name__}")
    busy = busy_rounds(instance)
    what = (f"(the longest output, and the requests' memory-time footprint over kv_memory = "
            f"{instance.kv_memory:,} tokens")
    if max_rounds is None:
        if busy > MAX_SIMULATED_ROUNDS:
            raise InvalidInstanceError(
                f"simulating this instance steps through at least {busy:,} busy rounds {what}): at "
                f"most {MAX_SIMULATED_ROUNDS:,} by default (17-30 us a round: minutes per policy); "
                "pass max_rounds to simulate longer, or split the requests into windows "
                "(Instance.subset)")
        return
    last = max(busy, int(np.max(instance.arrival + instance.output_tokens)))
    if last > int(max_rounds):
        raise InvalidInstanceError(
            f"simulating this instance takes at least {last:,} rounds {what}, and the latest "
            f"arrival plus its output): more than max_rounds = {int(max_rounds):,}")


def _read_only_view(array: np.ndarray) -> np.ndarray:
    """A view a policy can read but not write (the simulator keeps writing the array)."""
    view = array.view()
    view.flags.writeable = False
    return view


def _state(instance: Instance, t: int, used: int, waiting: np.ndarray, running: np.ndarray,
           generated: np.ndarray, admitted_at: np.ndarray) -> rules.State:
    """The policy's view of the round: ``waiting`` and ``running`` are copies (a policy may
    sort them in place, as before), ``generated`` and ``admitted_at`` read-only views of the
    simulator's arrays (length n: copying them every round made each round cost O(n))."""
    return rules.State(t=t, kv_memory=instance.kv_memory, max_batch=instance.max_batch,
                       used=used, waiting=waiting.copy(), running=running.copy(),
                       generated=generated, admitted_at=admitted_at, prompt=instance.prompt_tokens,
                       predicted=instance.predicted_output, arrival=instance.arrival)


STATE_ARRAYS = ("generated", "admitted_at", "prompt", "predicted", "arrival")  # read-only


def _ask(rule: Any, method: str, *args: Any) -> Any:
    """Call a policy's rule; a write into the read-only state gets a message saying so, with
    the file and line of the write (:func:`~servopt.benchmarks.harness.written_at`)."""
    try:
        return rule(*args)
    except ValueError as exc:
        if "read-only" not in str(exc):
            raise
        line, named = written_at(exc, STATE_ARRAYS)
        example = named[0] if len(named) == 1 else "generated"
        raise InvalidInstanceError(
            f"the policy's {method}() wrote into an array of the state{line} ({exc}): the "
            "state's per-request arrays are the simulator's and read-only; copy one first "
            f"(np.array(state.{example})) to change it") from exc


@checked_keywords(simulate, check=check_options)
def evaluate(instance: Instance, method: Any, **kw: Any) -> Outcome:
    """Simulate ``method`` (a ``POLICIES`` name or a policy) and score it.

    cost : total end-to-end latency (rounds). wall_s : the policy's own time (prepare + every
    decision). ``trace=True`` changes nothing in the Outcome (its per-round arrays are not
    metrics): ``simulate(instance, method, trace=True)`` returns them (``method`` a name, or a
    policy object after its ``prepare(instance)``): ``batch`` (running requests per round) and
    ``memory`` (KV tokens per round), ``latency``, ``ttft`` and ``finish`` per request.

    Metrics (``Outcome.metrics``; name, unit, meaning):

    - ``mean_latency`` (rounds): mean end-to-end latency, finish + 1 - arrival.
    - ``mean_ttft`` (rounds): mean time to first token; a request's first token comes at the end
      of its first round running: t + 1 - arrival.
    - ``throughput`` (output tokens per round): over the rounds from the first arrival to the
      last finish, finish.max() + 1 - arrival.min().
    - ``preemptions`` (evictions): running requests evicted by the policy's ``preempt`` rule.
    - ``refused`` (admissions): requests ``admit`` returned that did not fit (memory, batch cap).
    - ``peak_memory`` (KV tokens): the most KV held in a round.
    - ``makespan_rounds`` (rounds): the round after the last finish, counted from round 0:
      finish.max() + 1.
    - ``makespan`` (rounds): deprecated duplicate of ``makespan_rounds`` (expert placement's
      ``makespan`` is in tokens per unit speed; committed CSVs still carry this name).
    """
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(
            f"batch_scheduling.evaluate needs a batch_scheduling instance, got "
            f"{type(instance).__name__}")
    check_options(trace=kw.get("trace", False), max_rounds=kw.get("max_rounds"))
    check_rounds(instance, kw.get("max_rounds"))
    policy = rules.make_policy(method)
    t0 = time.perf_counter()
    policy.prepare(instance)
    prepare_s = time.perf_counter() - t0
    result = simulate(instance, policy, **kw)
    latency = result["latency"]
    rounds = int(result["finish"].max() + 1 - instance.arrival.min())
    metrics = {
        "mean_latency": float(latency.mean()),
        "mean_ttft": float(result["ttft"].mean()),
        "throughput": float(instance.output_tokens.sum() / max(rounds, 1)),
        "preemptions": float(result["preemptions"]),
        "refused": float(result["refused"]),
        "peak_memory": float(result["memory"].max()),
        "makespan_rounds": float(result["finish"].max() + 1),
        "makespan": float(result["finish"].max() + 1),  # deprecated name of makespan_rounds
    }
    return Outcome(cost=float(latency.sum()), metrics=metrics,
                   wall_s=prepare_s + result["decide_s"], status="ok")


def _request_ids(value: Any, n: int, method: str, t: int | None = None) -> np.ndarray:
    """A policy's answer as request ids: whole numbers in 0..n-1 (a -1 or 2.7 would otherwise
    index some other request). ``t``: the round, named in the message."""
    ids = np.asarray(value)
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= n:
        when = "" if t is None else f" at round {t}"
        raise InvalidInstanceError(f"the policy's {method}(){when} must return request ids "
                                   f"(whole numbers in 0..{n - 1}), got {value!r}"[:300])
    return ids.astype(np.int64)


_STATUS = ("has not arrived yet", "is waiting", "is already running", "has already finished")


def _check_ids(ids: np.ndarray, status: np.ndarray, wanted: int, method: str, t: int,
               arrival: np.ndarray) -> None:
    """Refuse an answer that breaks the protocol, naming the round and the request: ``admit``
    returns waiting requests, ``preempt`` running ones, each at most once. (A waiting request
    that does not fit in memory or the batch cap is the simulator's refusal, counted as
    ``refused``, not an error.)"""
    wrong = status[ids] != wanted
    if wrong.any():
        i = int(ids[np.argmax(wrong)])
        why = _STATUS[status[i]] + (f" (it arrives at round {arrival[i]})" if status[i] == 0
                                    else "")
        allowed = "waiting requests (state.waiting)" if wanted == 1 else \
            "running requests (state.running)"
        raise InvalidInstanceError(f"the policy's {method}() at round {t} returned request {i}, "
                                   f"which {why}: it may only return {allowed}")
    if len(ids) > 1:  # a sort and a neighbour test: half of np.unique's cost, every round
        ordered = np.sort(ids)
        twice = ordered[1:] == ordered[:-1]
        if twice.any():
            i = int(ordered[1:][twice][0])
            raise InvalidInstanceError(f"the policy's {method}() at round {t} returned a request "
                                       f"twice: request {i}, {int((ids == i).sum())} times")


def whole_rounds(value: float) -> float:
    """A lower bound on total latency rounded up to whole rounds (every schedule's total is one).

    The solver's objective is accurate to about 1e-7 relative, so a value that exceeds an integer
    by less than that is solver noise and rounds down to it (an absolute 1e-6 would round a bound
    of 44,534 + 1e-5 up to 44,535, above a schedule of 44,534).
    """
    return float(math.ceil(value - max(1e-6, 1e-7 * abs(value))))


def _too_large_floor(instance: Instance, horizon: Any, window: Any, max_columns: int) -> str | None:
    """``bound(method="auto")``'s "model too large" status when the model's size is certainly over
    its limits (:func:`~servopt.models.batch_scheduling.size_lower_bound`, O(n): on the horizon's
    lower bound, and with ``window="auto"`` on arrivals the least window it can be, 64 rounds), so
    before the greedy plans that set the window and the horizon (16 s at 20,000 requests); None
    when it may fit (then the exact count decides)."""
    least = (None if instance.offline else 64) if window == "auto" else window
    _, columns, entries = model.size_lower_bound(instance, horizon, least)
    if columns > max_columns or entries > 100 * max_columns:
        return f"model too large (at least {columns:,} columns, {entries:,} memory-row entries)"
    return None


BOUND_METHODS = ("auto", "lp", "cover", "group", "coarse", "ip", "area")


def check_bound_options(*, method: Any = "auto", time_limit: Any = 600.0, max_columns: Any = 400_000,
                        horizon: Any = None, window: Any = "auto", group_size: Any = 8,
                        bucket: Any = 2, penalty: Any = 0.0) -> None:
    """The ``check`` of :func:`bound`: every option's value, whichever method reads it, before
    any work (a bad ``method`` or ``horizon`` was refused only after the greedy plans: 1.4 s and
    13 s at 4,000 requests), with the messages of the functions that read them."""
    from servopt.solvers.exact import seconds

    if not isinstance(method, str) or method not in BOUND_METHODS:
        raise OptionError(f"bound method must be auto, lp, cover, group, coarse, ip or area; "
                          f"got {method!r}", option="method")
    with refusing("time_limit"):
        seconds(time_limit)
    with refusing("max_columns"):
        whole_number("max_columns", max_columns)
    with refusing("horizon"):
        model.check_horizon(horizon)
    if not (window is None or (isinstance(window, str) and window == "auto")):
        with refusing("window"):
            whole_number("window (rounds)", window, low=0)
    with refusing("group_size"):
        rules.check_group_size(group_size)
    with refusing("bucket"):
        rules.check_bucket(bucket, 0.0)
    with refusing("penalty"):
        rules.check_bucket(1, penalty)


@checked_keywords(check=check_bound_options)
def bound(instance: Instance, *, method: str = "auto", time_limit: float | None = 600.0,
          max_columns: int = 400_000, horizon: Any = None, window: Any = "auto",
          group_size: int = 8, bucket: int = 2, penalty: float = 0.0) -> Bound:
    """Best provable lower bound on total latency (rounds), over the schedules that run each
    request without a break once admitted: a policy that preempts (the simulator resumes a
    preempted request where it stopped) can end below every bound here but ``area``, and its
    gap-table row is then marked ``below_bound``.

    method : ``lp`` (LP relaxation of the time-indexed model), ``cover`` (the LP strengthened by
    rounds of memory cover cuts for at most ``time_limit`` s, see
    :func:`servopt.solvers.batch_scheduling.cover_bound`), ``group`` (the LP in which the
    ``group_size`` requests the LP finishes last are scheduled integrally, by column generation for
    at most ``time_limit`` s, see :func:`servopt.solvers.batch_scheduling.group_bound`; no batch
    cap), ``coarse`` (the coarse-time IP: start rounds in buckets of ``bucket`` rounds, averaged
    over the bucket grid's offsets, or with ``penalty`` in (0, 1] one IP whose costs carry that
    share of the LP's memory prices; HiGHS dual bounds within ``time_limit`` s in all, see
    :func:`servopt.solvers.batch_scheduling.coarse_bound`), ``ip`` (HiGHS branch and bound with
    ``time_limit``: proved optimum or MIP dual bound; horizon ``"safe"`` by default, and "optimal"
    only when no request is left in a late column, e.g. outside ``window``), ``area`` (closed form,
    see :func:`servopt.models.batch_scheduling.area_bound`), or ``auto``: the LP when the model has
    at most ``max_columns`` start columns and rounds, else the closed form (at once, without a
    greedy plan, when an O(n) floor of the model's size is already over). The LP is never worse than the
    closed form is reported: the larger of the two is returned. Total latency is a whole number of
    rounds, so the LP or MIP bound is rounded up to the next integer. ``window="auto"`` limits each
    request's modelled starts, with arrivals, to twice the longest wait of a greedy schedule (the
    late columns keep the bound valid whatever the window). With more than ``max_columns``
    rounds (a long idle stretch) every method but ``area`` bounds the instance with its idle
    stretches cut short (:func:`servopt.models.batch_scheduling.compress_idle`: same optimum),
    unless a ``horizon`` in rounds is given.

    time_limit : seconds (default 600); None or infinity: no limit, for every method (``cover``
    and ``group`` then run until their loops end, which can take long on a large instance).
    ``cover`` and ``group`` count it from their entry and give each LP and IP what is left
    (``group``'s last pricing included); ``coarse`` shares it among its IPs; ``lp`` and
    ``ip`` give it to HiGHS after the model is built. Not timed: the greedy plan of
    ``window="auto"`` and the model builds; for ``ip`` also its warm-start schedule and the
    IP's build (at n = 200 these took 3-4 s before HiGHS started: a 3 s limit returned after
    9 s). Ctrl-C stops HiGHS at once and raises ``KeyboardInterrupt`` (no bound is returned).
    """
    t0 = time.perf_counter()
    max_columns = whole_number("max_columns", max_columns)  # -5 fell back to the closed form
    # total latency does not change when every arrival moves by the same rounds: bound the
    # stream from its first arrival (a clock stamped 1.7e9 rounds in made one row per round)
    instance, _ = model.from_first_arrival(instance)
    simple = model.area_bound(instance)
    if method == "auto":  # a model certainly too large is the area bound before any greedy plan
        floor = _too_large_floor(instance, horizon, window, max_columns)
        if floor is not None:
            return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0, status=floor)
    if window == "auto":  # with arrivals: starts up to twice the longest wait of a greedy plan
        wait = model.greedy_schedule(instance) - instance.arrival
        window = None if instance.offline else int(max(64, 2 * wait.max()))
    if method == "area":
        return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0)
    if method == "auto":
        rounds, n_columns, entries = model.model_size(instance, horizon, window)
        if n_columns > max_columns or entries > 100 * max_columns:
            return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0,
                         status=f"model too large ({n_columns:,} columns, {entries:,} "
                                "memory-row entries)")
        if rounds > max_columns:  # a long idle stretch: one memory row per round
            short = model.compress_idle(instance)  # same optimum, its LP still a lower bound
            if short is instance or model.horizon_rounds(short) > max_columns:
                return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0,
                             status=f"model too long ({rounds:,} rounds)")
            found = bound(short, method="auto", time_limit=time_limit, max_columns=max_columns,
                          horizon=horizon, window=window)
            found.wall_s = time.perf_counter() - t0
            found.status = f"idle stretches cut short ({rounds:,} rounds); {found.status}"
            return found
        method = "lp"
    elif horizon is None or horizon == "safe":  # a chosen method on a long idle stretch
        rounds = model.horizon_rounds(instance, horizon)
        short = model.compress_idle(instance) if rounds > max_columns else instance
        if short is not instance:  # one memory row per round: 1e9 idle rounds were 7.5 GB
            found = bound(short, method=method, time_limit=time_limit, max_columns=max_columns,
                          horizon=horizon, window=window, group_size=group_size, bucket=bucket,
                          penalty=penalty)
            found.wall_s = time.perf_counter() - t0
            found.status = f"idle stretches cut short ({rounds:,} rounds); {found.status}"
            return found
    loop_limit = math.inf if time_limit is None else time_limit  # the loops' "no limit"
    if method == "cover":
        cut = rules.cover_bound(instance, horizon=horizon, window=window, time_limit=loop_limit)
        if math.isnan(cut.bound):
            return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0,
                         status=f"cover not solved ({cut.status})")
        value = whole_rounds(cut.bound)
        if simple > value:
            return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0)
        return Bound(value, "lower_bound", wall_s=time.perf_counter() - t0,
                     status=f"{cut.rounds} cut rounds, {len(cut.cuts)} cuts ({cut.status})")
    if method == "group":
        group = rules.group_bound(instance, group_size=group_size, horizon=horizon, window=window,
                                  time_limit=loop_limit)
        if math.isnan(group.bound):
            return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0,
                         status=f"group not solved ({group.status})")
        value = max(simple, whole_rounds(group.bound))
        return Bound(value, "lower_bound", wall_s=time.perf_counter() - t0,
                     status=f"group of {len(group.group)}: {group.iterations} iterations, "
                            f"{group.status}, master {group.master:.6g}")
    if method == "coarse":
        coarse = rules.coarse_bound(instance, bucket=bucket, averaged=not penalty, penalty=penalty,
                                    horizon=horizon, window=window, report_lp=False,
                                    time_limit=loop_limit)
        value = whole_rounds(coarse.bound) if math.isfinite(coarse.bound) else -math.inf
        kind = "coarse bucket {}{}".format(bucket, f", penalty {penalty:g}" if penalty else ", averaged")
        return Bound(max(simple, value), "lower_bound", wall_s=time.perf_counter() - t0,
                     status=f"{kind}: {'/'.join(coarse.statuses)}")
    integer = method == "ip"  # ("lp" otherwise: check_bound_options refused any other name)
    if integer and horizon is None:
        horizon = "safe"  # no optimal schedule ends after it: the IP's optimum is the true one
    warm = model.warm_start_schedule(instance) if integer else None
    sol = rules.solve_lp(instance, horizon=horizon, window=window, time_limit=time_limit,
                         integer=integer, start=warm)
    if sol.status == "interrupted":  # Ctrl-C: stop, as everywhere (no bound to cache)
        raise KeyboardInterrupt(f"the {method} bound was interrupted")
    value = sol.bound
    if not math.isnan(value):
        value = whole_rounds(value)
    if math.isnan(value):
        return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0,
                     status=f"{method} not solved ({sol.status})")
    late = sol.decisions.get("late") if sol.decisions else None
    real = late is not None and float(np.max(late.to_numpy(), initial=0.0)) < 1e-6
    if integer and sol.status == "optimal" and real and value >= sol.objective - 1e-6:
        kind = "optimal"  # a real schedule (no request parked late) whose dual bound meets it
    else:
        kind = "mip_bound" if integer else "lp_relaxation"
    if simple > value:
        return Bound(simple, "lower_bound", wall_s=time.perf_counter() - t0)
    return Bound(float(value), kind, wall_s=time.perf_counter() - t0)
