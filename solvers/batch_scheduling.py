"""Admission policies for one worker's continuous batch, and the LP/IP solves behind the prices.

Policy protocol
---------------
A policy subclasses :class:`Policy` (which supplies ``prepare`` and vLLM's ``preempt``; write at
least ``admit``) and has

- ``prepare(instance)``: everything it may compute before round 0 (an LP for the prices, a
  hindsight plan); the evaluator times it as decision time. It is given the whole instance,
  true output lengths included, and nothing polices what it reads: the built-in online policies
  read only what they are allowed to (prompt sizes, predicted outputs, and arrivals as they
  happen): the requests present at round 0 and a named history window (:func:`history_window`).
- ``admit(state) -> array of request ids``: the waiting requests to admit in this round, in
  order. The simulator admits them in that order and refuses (and counts) any that would not fit
  in this round's memory or batch cap; an id that is not waiting (running, finished, not yet
  arrived, out of range) or is given twice is an error (``InvalidInstanceError`` naming the round
  and the request).
- ``preempt(state, excess) -> array of request ids``: running requests to evict when the
  running set needs ``excess`` more KV tokens than the memory holds. The default is vLLM's rule:
  the most recently admitted first, recomputed later (their KV is dropped; on readmission they
  prefill prompt + generated tokens again and keep the tokens already streamed).

``state`` is a :class:`State`: the round, memory figures and per-request arrays, all
read-only; ``generated`` and ``admitted_at`` are live views of the simulator's arrays (they
change as the rounds go: copy one, ``np.array(state.generated)``, to keep a round's values).
Rules are
vectorised numpy; nothing calls a solver once the prices are known. A round's work is
proportional to the waiting queue and the running set, never to n.

No rule reads a request that has not arrived: each ``admit`` and ``preempt`` decides the same
whether the per-request arrays hold the whole stream (the simulator passes the instance's) or
only the requests arrived by round t (a live scheduler; tests drive every rule both ways). The
two figures a rule keeps per instance to stay O(waiting) per round, the first arrival round
after 0 and running sums of prompt + predicted output in arrival order, are read only up to
round t (:func:`arrived_after_round_0`, :func:`arrived_mean_need`).
The shortest-first and bid-price rules do not sort a long waiting queue (``KEEP_ORDER_FROM``,
512 requests, or more) every round: :class:`KeptOrder` keeps it in order from round to round
(admitted requests deleted, preempted and arrived ones inserted by binary search, all checked
against the state), with exactly the order a stable sort gives (ties in queue order);
shorter queues are sorted afresh.

Methods (``POLICIES``)
----------------------
- ``fcfs``: vLLM's scheduler: FCFS queue with preempted requests back at its front, admission
  while free KV - need >= watermark (1% of the KV cache, the default ``watermark=0.01`` of
  vLLM's V0 block manager, the free-memory watermark the issue describes; the V1 KV cache
  manager defaults to 0: ``FCFS(watermark=0.0)``), stopping at the first request that does not
  fit (head-of-line blocking); preemption of the most recently admitted request by recomputation (vLLM's
  ``running_queue.pop()`` victim, to the front of the queue as in V0 and V1). Three simplifications:
  memory is counted in tokens, not in vLLM's 16-token blocks (the watermark is ``int(0.01 M)``
  tokens; vLLM's, in whole blocks, is 0 below 1,600 tokens); the simulator asks for
  admissions in a round where it preempted, which vLLM V1 skips (no effect on ``fcfs``: the
  victim, back at the queue's head, never fits in the memory it freed; ``spf`` may admit then);
  and a round both prefills the admitted requests and decodes the running ones, as V1's chunked
  scheduler does (every policy here is judged on that round model), whereas V0's default
  scheduler, whose watermark this takes, runs no decode in a step that prefills (R32: two
  requests, A at round 0 with 5 output tokens, B at round 2 with 1: latencies 5 and 1 here, 6 and
  1 under V0).
- ``spf``: the same admission test and preemption, queue ordered by shortest predicted output.
- ``mcsf``: Memory-Constrained Shortest First (Jaillet et al., arXiv 2502.07115): waiting
  requests by predicted output ascending; admit while, with predicted lengths, memory stays
  within M at every predicted completion round of the running set plus the new ones; stop at
  the first that does not fit. Reading of the paper (its Algorithm 1; confirmed against the
  paper's abstract page and two secondary summaries found with the search tool, which
  describe it as adding requests "in ascending decode order" while the memory at the future
  completion times stays within the limit; the algorithm text itself was not retrievable):
  the admitted set is the *longest prefix* of the sorted queue that passes the check. Memory
  only grows between completions, so checking at the predicted completion rounds is the same
  as checking every future round; since adding a request never lowers memory, the longest
  feasible prefix is exactly "stop at the first request that fails". Ties keep the queue
  order (arrival). Wang, Ye and Zhou (arXiv 2508.06133) read it the same way and show it
  degrades when prompt sizes vary widely, which is what these Azure-calibrated instances have.
- ``bid_price``: the LP's memory prices mu[t] (latency rounds per KV token-round) turn each
  request into a score: its predicted latency plus the price of its memory-time footprint,
  ``r_i + sum_k mu[t+k] (c_i + k)``; requests are admitted in score order with MC-SF's
  lookahead check. All at once, the prices come from the LP relaxation solved on the
  predicted instance (rounds past the plan use its average price) and admission stops at the
  first request that fails the check, as MC-SF does. Once requests arrive over time there is
  no plan, so every round gets the average price learned on the history window (the first
  ``history`` requests of the stream itself, an in-sample window: their prompts and predicted
  outputs before they arrive, see :func:`history_window`; a live deployment passes an earlier
  stream as ``history``), and admission *skips* a request that fails the check and
  tries the next ones, unless that request has already waited more than ``patience`` (2)
  times its predicted output; then it blocks the queue as in MC-SF, so no request starves.
  Which of the two applies is read from what has arrived, since a live scheduler cannot know
  whether more requests will come: until a request arrives after round 0 the rule is the
  all-at-once rule on the requests present at round 0 (their LP's prices, stop at the first
  failure); from the round a request arrives after round 0 on, the online rule (history price,
  skipping). All at once nothing ever arrives later, so that rule holds throughout; on a
  stream only the rounds before its first arrival after round 0 are all-at-once rounds
  (``skip=True`` / ``False`` fixes the admission mode instead).
  Why, measured on tuning seeds 10-29 (not the reported 0-4), n = 200, paired vs MC-SF (tuning
  runs, not committed tables; the reported figures are in ``benchmarks/results``):
  stopping at the first failure left memory idle behind a large request while arrivals
  queued (load 0.8: one seed +7.0%); always skipping starved large requests in overload
  (load 1.3: one seed +1.7%, and +12% on reported seed 0 in a first full run); with the
  patience guard: load 0.8 / 1.0 / 1.3 mean -7.8% / -17.1% / -18.2%, worst seed -2.1% /
  -10.5% / -6.3%. All at once, skipping starves the large requests the LP prices already
  schedule (n = 100: -5% vs -11% vs MC-SF), so the offline rule stops.
- ``bid_price_stationary``: one price mu learned on a history window (the LP of the first
  ``history`` requests, predicted lengths, or a given history instance; the average of mu over
  the rounds up to the last positive price) and applied in every round (a window whose LP is
  over the limits of ``bid_price``'s load-sample LP, 200,000 start columns or 2M memory-row
  entries, is priced on a load sample of it, as the offline rule's large LPs are, and an LP
  stopped at ``time_limit`` gives price 0 with a warning: :func:`history_price`; both rules'
  online prices come from it); same admission as
  ``bid_price`` (skip once a request has arrived after round 0, stop until then), plus a
  backlog guard: when the backlog is more than ``backlog_factor`` (4) times what fits in
  memory (M over the mean prompt + predicted output of the requests arrived so far), the
  price is scaled down by backlog_factor / backlog, toward shortest predicted first
  (``backlog_factor=None`` turns it off). With skipping admission the guard makes no
  measurable difference (n = 2000, load 1.3, seeds 10-29: +0.28% +- 0.31% cost with it; load
  1.0, seeds 10-19: -0.9% +- 0.6%; ``batch_scheduling_summary.md``) and is inactive at
  n = 200; it is kept as harmless (taking it out would move the committed n = 2000 rows), not
  for a measured gain. With stop-at-first admission it had hurt (-29.5% vs -34.1% vs MC-SF at
  load 1.3).
- ``hindsight``: the best schedule found with lengths known (predicted lengths as the truth):
  the best of the MC-SF plan, the IP's warm start (the best of a few exact-lookahead orderings)
  and the bid-price plan, improved for three quarters of
  ``time_limit`` s by a local search over the admission order (:func:`search_order`: each
  order placed request by request at its earliest feasible round, :func:`serial_schedule`),
  then for one quarter by large-neighbourhood search (:func:`improve_schedule`: free the
  requests starting in a window of rounds and re-solve their starts exactly with a small IP,
  the others fixed). It plans with idle stretches cut short (``compress_idle``) and puts the
  plan back on the instance's rounds part by part (:func:`close_idle`).
  With exact predictions it is an upper bound on the hindsight optimum, not an online method:
  it plans on every request, future arrivals included (the one rule that does).

The MC-SF lookahead and vLLM admission read requests in this module's terms: a request that
was preempted returns with its emitted tokens (c = prompt + generated + 1 in its first round
back), and a request that outlives its prediction is predicted to end in the current round.
On an empty batch the FCFS/SPF head request is admitted whenever it fits in memory at all
(vLLM would reject, as ``NEVER``, one that cannot pass the watermark even alone).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from servopt.core import InfeasibleError, InvalidInstanceError, Solution
from servopt.core.checks import number, whole_number
from servopt.core.registry import layer_module
from servopt.core.solution import clean_prices, normalise_dual, relative_gap
from servopt.instances.batch_scheduling import Instance
from servopt.models import batch_scheduling as model
from servopt.solvers.exact import (
    INTERRUPT_NONZEROS,
    MIP_FEASIBILITY_MAX,
    TimeBudget,
    _run_interruptible,
    checked_incumbent,
    give_seconds,
    highs_lp,
    integrality_tolerance,
    new_highs,
    recorded_check,
    retry_tight,
    seconds,
    unclaimed,
    values_mismatch,
    without_start_if_mismatched,
)

VLLM_WATERMARK = 0.01
EXHAUSTIVE_ORDERS = 6  # search_order tries every admission order up to this many requests
SERIAL_MAX_ENTRIES = 1_000_000_000  # serial_schedule's n x rounds snapshots (8 GB of floats)
LONG_ROUNDS = 50_000  # a learning window spanning more rounds has its idle stretches cut short
MAX_LP_COLUMNS = 200_000  # the bid-price rules' LP size limit (start columns; x 100 or x 10 entries)
KEEP_ORDER_FROM = 512  # waiting queues this long or longer are kept in order (KeptOrder), shorter
# ones sorted afresh each round (cheaper below about this length on this machine: the kept order
# costs a few passes over the queue plus a fixed ~50 us per round, a sort ~n log n)


# ---------------------------------------------------------------------------------------------
# State and the policy base
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class State:
    """What a policy sees at the start of a round (after any preemption of this round).

    t : the round. used : KV tokens the running requests hold in this round (prompt + generated
    + the token of this round). waiting : ids of arrived requests not running, in the FCFS queue
    order (preempted requests first; most recently preempted first). running : ids in
    admission order (oldest first). generated : tokens each request has emitted so far.
    admitted_at : the round of each request's latest admission (-1 if never). prompt,
    predicted, arrival : per request. In the simulator, ``waiting`` and ``running`` are the
    policy's own copies; the per-request arrays are read-only (``generated`` and
    ``admitted_at`` are views of the simulator's, current in the round they are given: copy
    them to keep a round's values). ``current(waiting)`` and ``remaining(waiting)`` are computed
    once per round and come back read-only (copy them to change them); a policy that replaces
    ``predicted`` (or ``prompt``) gets fresh values, but one that then edits its own array in
    place must replace it again.
    """

    t: int
    kv_memory: int
    max_batch: int | None
    used: int
    waiting: np.ndarray
    running: np.ndarray
    generated: np.ndarray
    admitted_at: np.ndarray
    prompt: np.ndarray
    predicted: np.ndarray
    arrival: np.ndarray

    _queue_memo: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def current(self, ids: np.ndarray) -> np.ndarray:
        """KV tokens each request holds in this round if it runs (prompt + generated + 1)."""
        return self._per_queue(ids, State._current)

    def remaining(self, ids: np.ndarray) -> np.ndarray:
        """Predicted remaining rounds including this one.

        At least 1 once the prediction is hit, and at most what the memory allows (a request
        never needs more than M tokens, so a longer prediction is known to be wrong).
        """
        return self._per_queue(ids, State._remaining)

    def _current(self, ids: np.ndarray) -> np.ndarray:
        return self.prompt[ids] + self.generated[ids] + 1

    def _remaining(self, ids: np.ndarray) -> np.ndarray:
        # clip(p - g, 1, max(M - s - g, 1)) = max(min(p, M - s) - g, 1)
        capped = np.minimum(self.predicted[ids], self.kv_memory - self.prompt[ids])
        return np.maximum(capped - self.generated[ids], 1)

    def _per_queue(self, ids: np.ndarray, compute: Any) -> np.ndarray:
        """``compute(self, ids)``, kept (read-only) for the round when ``ids`` is the waiting
        queue: a bid-price rule's ``admit`` and its ``score`` both ask for it. The kept values
        are returned only while the queue holds the same ids in the same order (a policy may
        sort it in place) and the state's arrays and memory are the same objects (a policy may
        replace ``predicted``): one comparison instead of several gathers."""
        if ids is not self.waiting:
            return compute(self, ids)
        inputs = (self.prompt, self.generated, self.predicted, self.kv_memory)
        kept = self._queue_memo.get(compute)
        if kept is not None and len(kept[0]) == len(ids) and (kept[0] == ids).all() \
                and all(x is y for x, y in zip(kept[1], inputs, strict=True)):
            return kept[2]
        values = compute(self, ids)
        values.flags.writeable = False
        self._queue_memo[compute] = (ids.copy(), inputs, values)
        return values

    def slots(self) -> int:
        """Requests that may still be admitted this round: the batch cap less the running set,
        or, with no cap, the whole waiting queue (not the stream's size, which a live scheduler
        does not know)."""
        if self.max_batch is None:
            return len(self.waiting)
        return max(0, self.max_batch - len(self.running))


class Policy:
    """Base policy: no preparation, vLLM's preemption (most recently admitted first)."""

    name = "policy"

    def prepare(self, instance: Instance) -> None:
        """Work done before round 0 (timed as decision time)."""

    def admit(self, state: State) -> np.ndarray:
        """Request ids to admit this round, from ``state.waiting``, in the order to try them:
        the simulator admits each that fits the free KV tokens and the batch cap, and counts
        the others as refused."""
        raise NotImplementedError

    def preempt(self, state: State, excess: int) -> np.ndarray:
        """Evict the most recently admitted running requests until ``excess`` tokens are freed."""
        order = state.running[::-1]
        freed = np.cumsum(state.current(order))
        count = int(np.searchsorted(freed, excess)) + 1
        return order[:count]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Planned(Policy):
    """Admit each request at its planned round ``start[i]`` (one that could not be admitted then
    waits, ahead of later plans): the evaluator scores a schedule made elsewhere (an IP's, a
    search's). Not a method: a schedule planned with hindsight."""

    name = "planned"

    def __init__(self, start: np.ndarray) -> None:
        self.start = np.asarray(start, dtype=np.int64)

    def prepare(self, instance: Instance) -> None:
        if self.start.shape != (instance.n,):
            raise InvalidInstanceError(f"Planned: the schedule has {self.start.size} start rounds "
                                       f"for {instance.n} requests (one each)")

    def admit(self, state: State) -> np.ndarray:
        due = state.waiting[self.start[state.waiting] <= state.t]
        return due[np.argsort(self.start[due], kind="stable")]


def admit_with_watermark(state: State, queue: np.ndarray, watermark: float) -> np.ndarray:
    """Admit a queue prefix while free - need >= watermark tokens (vLLM's ``can_allocate``).

    Only the head of the queue is read: a prefix of 8 requests, doubled while every request in
    it passes (the work is proportional to the requests examined, not to the queue).
    """
    if not len(queue):
        return queue
    slots = state.slots()
    mark = int(watermark * state.kv_memory)
    limit = min(len(queue), slots)
    size = min(limit, 8)
    while size:
        need = np.cumsum(state.current(queue[:size]))
        ok = (state.kv_memory - state.used - need >= mark)
        if not len(state.running):
            # vLLM would drop a request that can never pass the watermark ("NEVER"); here the
            # empty batch takes the head request whenever it fits in memory at all
            ok[0] = need[0] <= state.kv_memory
        if not ok.all():
            return queue[: int(np.argmin(ok))]
        if size == limit:
            break
        size = min(2 * size, limit)
    return queue[:limit]


class KeptOrder:
    """The waiting queue in ascending order of a per-request key, ties in queue order, kept from
    one round to the next: exactly ``w[np.argsort(key(state, w), kind="stable")]`` for the
    waiting queue ``w``, without sorting the whole queue every round.

    Between two rounds the simulator's queue changes at its ends only: the requests the policy
    admitted leave, preempted ones return at the front, arrivals join at the back; a waiting
    request's key inputs (prompt, tokens generated, prediction) do not change. :meth:`order`
    checks all of that against the state, exactly, and then deletes the admitted ids from the
    kept order and inserts the newcomers by binary search (a newcomer at the front goes before
    the requests of equal key, one at the back after them: queue order). The work per round is a
    few passes over the queue (comparisons, no sort). When anything else changed it sorts the
    queue afresh, as every round did before: a new simulation, another ``predicted`` or
    ``prompt`` array (or a writable one, which could be edited in place), another memory, a
    request of the queue that has run since, a queue not of that form. When only ``params`` (the
    key's other inputs: a price that moves with the round or the backlog) changed, every key is
    recomputed and sorted from the previous order (nearly sorted: numpy's stable sort, a
    timsort, is then about linear); equal keys must come out in queue order (they do when their
    inputs are equal, as they were equal before too), else the queue is sorted afresh.

    A policy calls :meth:`order` once per ``admit`` and then :meth:`took` with the ids it
    returns and their places in the order.
    """

    def __init__(self) -> None:
        self.queue: np.ndarray | None = None  # the waiting queue at the last call (own copy) ...
        self.generated: np.ndarray = np.zeros(0, dtype=np.int64)  # ... its tokens generated then
        self.ids = np.zeros(0, dtype=np.int64)  # that queue in key order
        self.key: np.ndarray = np.zeros(0)  # their keys, ascending
        self.inputs: tuple = ()
        self.params: Any = None
        self.t = 0
        self.kv_memory = -1
        self.taken = np.zeros(0, dtype=np.int64)  # the ids returned then ...
        self.taken_at = np.zeros(0, dtype=np.int64)  # ... and their places in ``ids``
        # buffers reused from round to round (a fresh array of the queue's size each round
        # costs more than the comparisons themselves): the queue, tokens generated (two, swapped)
        self._queue_buffer = np.zeros(0, dtype=np.int64)
        self._generated_buffers = [np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)]
        self.flag = np.zeros(0, dtype=bool)  # scratch, all False between calls
        self.position = np.zeros(0, dtype=np.int64)  # scratch: places in the queue
        self.rebuilds = 0  # calls that sorted the whole queue afresh (for tests and benchmarks)
        self.rekeys = 0  # calls that recomputed every key and sorted from the previous order

    def forget(self) -> None:
        """Keep nothing: the next :meth:`order` sorts the queue afresh."""
        self.queue = None

    def order(self, state: State, key: Any, params: Any = None) -> np.ndarray:
        """The waiting queue sorted by ``key(state, ids)`` (stable). ``params``: what the keys
        depend on besides the state's per-request arrays (compared with ``==``, arrays by
        identity). The returned array belongs to this object: do not write into it."""
        w = state.waiting
        inputs = (state.prompt, state.predicted, state.generated)
        total = len(w)
        spare = self._generated_buffers[1]
        if len(spare) < total or len(self.flag) != len(state.prompt) \
                or spare.dtype != state.generated.dtype:
            self._reserve(total, len(state.prompt), state.generated.dtype)
            spare = self._generated_buffers[1]
        generated = np.take(state.generated, w, out=spare[:total], mode="wrap")
        if not self._follow(state, w, generated, key, inputs, params):
            self._rebuild(state, w, key)
        self._generated_buffers.reverse()  # this round's tokens generated are kept
        self.generated = generated
        self.queue = self._queue_buffer[:total]
        self.queue[:] = w
        self.inputs, self.params, self.t = inputs, params, state.t
        self.kv_memory = state.kv_memory
        self.taken = self.taken_at = np.zeros(0, dtype=np.int64)
        return self.ids

    def took(self, chosen: np.ndarray, places: np.ndarray) -> None:
        """The ids the policy returns this round and their places in the order it was given."""
        self.taken, self.taken_at = np.asarray(chosen, dtype=np.int64), np.asarray(places,
                                                                                 dtype=np.int64)

    def _reserve(self, total: int, n: int, dtype: Any) -> None:
        """Buffers for a queue of ``total`` requests out of ``n``."""
        if len(self.flag) != n:
            self.flag = np.zeros(n, dtype=bool)
            self.position = np.zeros(n, dtype=np.int64)
            self.queue = None  # another instance: nothing kept applies
        if len(self._queue_buffer) < total or self._generated_buffers[0].dtype != dtype:
            size = max(total, n)
            if self.queue is not None:  # keep what the last round left in the old buffers
                self.queue, self.generated = self.queue.copy(), self.generated.copy()
            self._queue_buffer = np.zeros(size, dtype=np.int64)
            self._generated_buffers = [np.zeros(size, dtype=dtype), np.zeros(size, dtype=dtype)]

    def _rebuild(self, state: State, w: np.ndarray, key: Any) -> None:
        self.rebuilds += 1
        k = np.asarray(key(state, w))
        by_key = np.argsort(k, kind="stable")
        self.ids, self.key = w[by_key], k[by_key]

    def _follow(self, state: State, w: np.ndarray, generated: np.ndarray, key: Any, inputs: tuple,
                params: Any) -> bool:
        """Update the kept order to the queue ``w`` (``generated``: its requests' tokens
        generated); False if it cannot be (then it is sorted afresh)."""
        if self.queue is None or state.t <= self.t or state.kv_memory != self.kv_memory \
                or any(x is not y for x, y in zip(inputs, self.inputs, strict=True)) \
                or state.prompt.flags.writeable or state.predicted.flags.writeable:
            return False
        ids, keys, queue = self.ids, self.key, self.queue
        # what left: the ids this policy returned last time that were admitted since
        left_at = np.zeros(0, dtype=np.int64)  # their places in the last queue, ascending
        gone = state.admitted_at[self.taken] >= self.t if len(self.taken) else None
        if gone is not None and gone.any():
            left, places = self.taken[gone], self.taken_at[gone]
            if np.array_equal(places, np.arange(len(places))):
                ids, keys = ids[len(places):], keys[len(places):]  # a prefix (most rules)
            else:
                ids, keys = np.delete(ids, places), np.delete(keys, places)
            self.flag[left] = True
            left_at = np.flatnonzero(self.flag[queue])
            self.flag[left] = False
            if len(left_at) != len(left):
                return False  # a request twice in the queue
        elif len(w) == len(queue) == len(ids) and _same_params(params, self.params) \
                and (w == queue).all() and (generated == self.generated).all():
            return True  # the same queue as last time (a round that admitted nothing)
        # the queue now: newcomers in front, the others in the same order, newcomers at the back
        size, total = len(queue) - len(left_at), len(w)
        if not size or total < size or len(ids) != size:
            return False
        stays = np.flatnonzero(left_at != np.arange(len(left_at)))
        head = int(stays[0]) if len(stays) else len(left_at)  # the first that stayed
        hits = np.flatnonzero(w[: total - size + 1] == queue[head])
        if not hits.size:
            return False
        first = int(hits[0])
        # the same requests in the same order, none of which has run since (same key inputs)
        if len(left_at) <= 32:  # compare piece by piece between the places that left
            at, start = first, 0
            for stop in (*left_at.tolist(), len(queue)):
                if stop > start:
                    end = at + stop - start
                    if not (np.array_equal(w[at:end], queue[start:stop])
                            and np.array_equal(generated[at:end], self.generated[start:stop])):
                        return False
                    at = end
                start = stop + 1
        else:
            stay = np.ones(len(queue), dtype=bool)
            stay[left_at] = False
            if not (np.array_equal(w[first: first + size], queue[stay])
                    and np.array_equal(generated[first: first + size], self.generated[stay])):
                return False
        front, back = w[:first], w[first + size:]
        new = np.concatenate([front, back])
        if _same_params(params, self.params):
            if new.size:  # insert the newcomers (sorted among themselves) by binary search
                k = np.asarray(key(state, new))
                by_key = np.argsort(k, kind="stable")
                new, k = new[by_key], k[by_key]
                at = np.where(by_key < len(front), np.searchsorted(keys, k, "left"),
                              np.searchsorted(keys, k, "right"))
                ids, keys = np.insert(ids, at, new), np.insert(keys, at, k)
            self.ids, self.key = ids, keys
            return True
        # new keys for all: sort from the old order (nearly sorted), then ties in queue order
        self.rekeys += 1
        arranged = np.concatenate([ids, new])
        k = np.asarray(key(state, arranged))
        by_key = np.argsort(k, kind="stable")
        ids, keys = arranged[by_key], k[by_key]
        tie = keys[1:] == keys[:-1]
        if tie.any():  # equal keys must stay in queue order (so they do when their inputs are equal)
            self.position[w] = np.arange(total)
            position = self.position[ids]
            if (tie & (position[1:] <= position[:-1])).any():
                return False  # a tie out of queue order (or a request twice in the queue)
        self.ids, self.key = ids, keys
        return True


def _same_params(a: Any, b: Any) -> bool:
    """Key parameters equal: tuples item by item, arrays by identity, the rest by ``==``."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_params(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is b
    return type(a) is type(b) and a == b


def _kept_order(policy: Policy) -> KeptOrder:
    """The policy's :class:`KeptOrder` (made on first use)."""
    kept = policy.__dict__.get("_kept_order")
    if kept is None:
        kept = policy.__dict__["_kept_order"] = KeptOrder()
    return kept


def _remaining(state: State, ids: np.ndarray) -> np.ndarray:
    """Shortest-first key: predicted remaining rounds."""
    return state.remaining(ids)


def _head_lookahead(state: State, order: np.ndarray) -> np.ndarray:
    """``_lookahead(state, order, ..., skip=False)`` reading only the head of ``order``: a head
    of 16 requests, doubled while every request in it is admitted (stop-at-first-failure admits
    a prefix, so a longer head gives the same answer once one fails)."""
    slots = state.slots()
    if not len(order) or not slots or int(state.current(order[:1])[0]) > state.kv_memory - state.used:
        return np.zeros(0, dtype=np.int64)  # the first does not fit in this round's free memory
    size = min(len(order), 16)
    while True:
        head = order[:size]
        chosen = _lookahead(state, head, state.current(head), state.remaining(head), False)
        if len(chosen) < size or size == len(order) or len(chosen) >= slots:
            return chosen
        size = min(2 * size, len(order))


def admit_with_lookahead(state: State, queue: np.ndarray, *, skip: bool = False) -> np.ndarray:
    """Admit in queue order while memory stays within M at every predicted completion round.

    ``skip=False`` stops at the first request that does not fit (MC-SF); ``skip=True`` tries
    the next ones too. The check is :func:`servopt.models.batch_scheduling.fits` (with skipping,
    for every remaining candidate at once): a request that fails never fits later in the same
    round, as each admission only adds memory.
    """
    return _lookahead(state, queue, state.current(queue), state.remaining(queue), skip)


def _lookahead(state: State, queue: np.ndarray, c_new: np.ndarray, r_new: np.ndarray,
               skip: bool | Any) -> np.ndarray:
    """:func:`admit_with_lookahead` given the queue's KV tokens ``c_new`` and predicted
    remaining rounds ``r_new``. ``skip`` may also be a function of the first request that
    fails (its id): True to skip it and try the next ones, False to stop there."""
    places = _lookahead_places(state, queue, c_new, r_new, skip)
    return np.asarray(queue)[places].astype(np.int64, copy=False)


def _lookahead_places(state: State, queue: np.ndarray, c_new: np.ndarray, r_new: np.ndarray,
                      skip: bool | Any) -> np.ndarray:
    """:func:`_lookahead`'s answer as places in ``queue``."""
    chosen: list[int] = []
    slots = state.slots()
    if not len(queue) or not slots:
        return np.asarray(chosen, dtype=np.int64)
    c_run = state.current(state.running).tolist()
    r_run = state.remaining(state.running).tolist()
    free_now = state.kv_memory - state.used
    skipping = skip is True
    k = 0
    while k < len(queue) and len(chosen) < slots:
        if skipping:  # the first of the remaining candidates that fits
            small = k + np.flatnonzero(c_new[k:] <= free_now)  # in this round's free memory
            if not small.size:
                break
            ok = model.fits(c_run, r_run, c_new[small], r_new[small], state.kv_memory)
            if not ok.any():
                break
            k = int(small[np.argmax(ok)])
        elif not (c_new[k] <= free_now and _fits_one(c_run, r_run, int(c_new[k]), int(r_new[k]),
                                                     state.kv_memory)):
            if skip is False or not skip(int(queue[k])):
                break
            skipping = True
            continue
        chosen.append(k)
        c_run.append(int(c_new[k]))
        r_run.append(int(r_new[k]))
        free_now -= int(c_new[k])
        k += 1
    return np.asarray(chosen, dtype=np.int64)


def _fits_one(c_run: list[int], r_run: list[int], c_new: int, r_new: int, memory: int) -> bool:
    """:func:`servopt.models.batch_scheduling.fits` for one candidate, the running set as lists.

    The fast path of MC-SF's stop-at-first-failure loop: a batch of at most 16 requests (the
    usual case) is checked in plain Python, larger ones by ``model.fits``. Same points and sums
    (memory at every completion offset r - 1 of the running set and of the candidate); tests
    check that both agree on random running sets. Measured need: with ``model.fits`` in its
    place, MC-SF's online simulation took 1.4-1.7x as long (``benchmarks/batch_scheduling_speed.py
    --sizes 2000,8000 --repeat 3`` on a working copy without it, n = 2000 and 8000, seed 0).
    """
    if len(r_run) > 16:
        return model.fits(c_run, r_run, c_new, r_new, memory)
    for end in (*r_run, r_new):
        k = end - 1
        held = c_new + k if r_new > k else 0
        for c, r in zip(c_run, r_run, strict=True):
            if r > k:
                held += c + k
        if held > memory:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------
def check_watermark(watermark: Any) -> float:
    """vLLM's watermark: the share of KV memory kept free at admission, a number in [0, 1)."""
    return number("watermark", watermark, lambda v: 0 <= v < 1,
                  "the share of KV memory kept free at admission, a number in [0, 1)")


def check_history(history: Any) -> int | Instance:
    """A stationary price's learning window: an :class:`Instance`, or the number of the
    instance's first requests: a whole number >= 1, as a window of none has no LP to learn
    from)."""
    if isinstance(history, Instance):
        return history
    return whole_number("history (requests of the learning window, or an Instance)", history)


def check_skip(skip: Any) -> bool | None:
    """The admission mode: None (read from the arrivals), True (skip) or False (stop)."""
    if skip is not None and not isinstance(skip, bool | np.bool_):  # "no" or -1 was True
        raise InvalidInstanceError(f"skip must be None (read from the arrivals), True or False, "
                                   f"got {skip!r}")
    return None if skip is None else bool(skip)


class FCFS(Policy):
    """vLLM: FCFS queue, watermark admission, head-of-line blocking, LIFO recompute preemption."""

    name = "fcfs"

    def __init__(self, watermark: float = VLLM_WATERMARK) -> None:
        self.watermark = check_watermark(watermark)

    def admit(self, state: State) -> np.ndarray:
        return admit_with_watermark(state, state.waiting, self.watermark)


class ShortestPredictedFirst(Policy):
    """vLLM's admission test and preemption with the queue sorted by predicted remaining output."""

    name = "spf"

    def __init__(self, watermark: float = VLLM_WATERMARK) -> None:
        self.watermark = check_watermark(watermark)

    def admit(self, state: State) -> np.ndarray:
        kept = _kept_order(self)
        w = state.waiting
        if len(w) < KEEP_ORDER_FROM:  # a short queue: sorted afresh
            kept.forget()
            if len(state.running) and len(w) and int(state.current(w).min()) > (
                    state.kv_memory - state.used - int(self.watermark * state.kv_memory)):
                return w[:0]  # no request passes the watermark: the head fails whatever the order
            order = w[np.argsort(state.remaining(w), kind="stable")]
            return admit_with_watermark(state, order, self.watermark)
        order = kept.order(state, _remaining)  # the queue by predicted remaining rounds, stable
        chosen = admit_with_watermark(state, order, self.watermark).copy()  # a prefix
        kept.took(chosen, np.arange(len(chosen)))
        return chosen


class MCSF(Policy):
    """Memory-Constrained Shortest First (Jaillet et al. 2025), on predicted output lengths."""

    name = "mcsf"

    def admit(self, state: State) -> np.ndarray:
        kept = _kept_order(self)
        w = state.waiting
        if len(w) < KEEP_ORDER_FROM:  # a short queue: sorted afresh
            kept.forget()
            c = state.current(w)
            if _none_fits(state, c):
                return np.zeros(0, dtype=np.int64)
            r = state.remaining(w)
            by_r = np.argsort(r, kind="stable")
            return _lookahead(state, w[by_r], c[by_r], r[by_r], False)
        order = kept.order(state, _remaining)  # the queue by predicted remaining rounds, stable
        chosen = _head_lookahead(state, order)  # a prefix
        kept.took(chosen, np.arange(len(chosen)))
        return chosen


def _none_fits(state: State, c: np.ndarray) -> bool:
    """No waiting request (KV tokens ``c``) fits in this round's free memory or batch: the
    lookahead admits nothing, whatever the order (the rules then skip sorting the queue)."""
    return not len(c) or not state.slots() or int(c.min()) > state.kv_memory - state.used


# ---------------------------------------------------------------------------------------------
# LP / IP solves (matrix path with highspy) and the bid-price rules
# ---------------------------------------------------------------------------------------------
def _model_rows(instance: Instance, lp_data: model.MatrixLP
                ) -> tuple[Any, np.ndarray, np.ndarray]:
    """The model's rows as (matrix (CSC), lower, upper): start_once (= 1), kv_memory (<= M),
    [batch_size (<= B)]."""
    import scipy.sparse as sp

    parts = [lp_data.a_eq, lp_data.a_mem] + ([lp_data.a_cap] if lp_data.a_cap is not None else [])
    n, T = instance.n, lp_data.cols.rounds
    lower = np.concatenate([np.ones(n)] + [np.full(T, -np.inf)] * (len(parts) - 1))
    upper = np.concatenate([np.ones(n), np.full(T, float(instance.kv_memory))]
                           + ([np.full(T, float(instance.max_batch))]
                              if lp_data.a_cap is not None else []))
    return sp.vstack(parts, format="csc"), lower, upper


def _highs_problem(instance: Instance, lp_data: model.MatrixLP, *, integer: bool = False,
                   time_limit: float | None = None, mip_gap: float = 1e-4,
                   lp_solver: str = "ipm", cuts: list | None = None, tight: bool = False) -> Any:
    """A ``highspy.Highs`` loaded with the matrix model: rows start_once, kv_memory,
    [batch_size], then the ``cuts`` (columns, right-hand side: sum of x over columns <= rhs).
    ``tight``: an IP at :func:`servopt.solvers.exact.integrality_tolerance`, not HiGHS's own."""
    a, lower, upper = _model_rows(instance, lp_data)
    h = new_highs()
    if time_limit is not None:  # (spent: 0, stop at once; HiGHS ignores a negative limit)
        h.setOptionValue("time_limit", max(float(time_limit), 0.0))
    if integer:
        h.setOptionValue("mip_rel_gap", float(mip_gap))
        if tight:  # integrality tight enough that no memory row gains a token (a binary at
            # 1 - 1e-6 lent ~2.4 KV tokens per 2.4M-token prompt: a schedule over the limit)
            h.setOptionValue("mip_feasibility_tolerance",
                             integrality_tolerance(a, np.ones(a.shape[1], dtype=bool)))
    else:
        h.setOptionValue("solver", lp_solver)
    cols = a.shape[1]
    h.passModel(highs_lp(lp_data.cost, a, lower, upper, np.zeros(cols),
                         np.ones(cols) if integer else np.full(cols, np.inf),
                         integer=np.ones(cols, dtype=bool) if integer else None))
    for columns_, rhs in cuts or ():
        h.addRow(-np.inf, rhs, len(columns_), np.asarray(columns_, dtype=np.int32),
                 np.ones(len(columns_)))
    return h


def solve_lp(instance: Instance, *, horizon: Any = None, window: int | None = None,
             time_limit: float | None = None, integer: bool = False,
             mip_gap: float = 1e-4, start: np.ndarray | None = None,
             lp_solver: str = "ipm", cuts: list | None = None) -> Solution:
    """Solve the time-indexed model (LP, or IP with ``integer=True``) built as sparse matrices.

    Same model as ``servopt.solve(instance, relax=True)`` (tests check they agree), built
    without Python loops so that n = 200 fits. Its rounds run from round 0 of the instance's
    clock (one memory row per round): for a stream whose clock starts later, solve
    ``model.from_first_arrival(instance)[0]`` (same costs) and add the shift to its rounds.
    Prices follow the servopt convention;
    ``decisions["start"]`` holds the (largest-weight) start round of each request, -1 if late.
    ``start`` (start rounds of a feasible schedule; default for the IP:
    :func:`~servopt.models.batch_scheduling.warm_start_schedule`) warm-starts the IP. ``lp_solver`` is
    HiGHS's LP method (``ipm`` with crossover: faster than ``simplex`` at n = 100 in our runs).
    ``cuts`` (from :func:`cover_bound`, same horizon and window) are added as rows; they are
    valid for every schedule, so the IP's bound stays valid and gets stronger.
    The IP's incumbent is rounded, checked against the model's rows and valued from that
    point; one that breaks a row is solved again at
    :func:`servopt.solvers.exact.integrality_tolerance` and otherwise not reported (status
    ``error`` where HiGHS said optimal, the bound kept, ``info["incumbent_rejected"]`` naming
    the row), as in :mod:`servopt.solvers.exact` (:func:`~servopt.solvers.exact.retry_tight`).
    ``time_limit`` counts from after the model's build (each solve gets what is left).
    Ctrl-C cancels HiGHS (status ``interrupted``, an IP's incumbent kept).
    """
    import highspy

    time_limit = seconds(time_limit)  # HiGHS ignores a value it refuses (-1: no limit at all)
    t0 = time.perf_counter()
    lp_data = model.build_matrix(instance, horizon=horizon, window=window)
    n, T = instance.n, lp_data.cols.rounds
    cols = lp_data.cols
    if integer:
        start = model.warm_start_schedule(instance) if start is None else start
    budget = TimeBudget(time_limit)

    def once(tight: bool, started: bool = True) -> Solution:
        h = _highs_problem(instance, lp_data, integer=integer, time_limit=budget.left(),
                           mip_gap=mip_gap, lp_solver=lp_solver, cuts=cuts, tight=tight)
        if integer and started:
            _warm_start(h, model.start_vector(cols, start))
        interrupted = _run_interruptible(h, poll=integer or h.getNumNz() >= INTERRUPT_NONZEROS)
        status_model = h.getModelStatus()
        info = h.getInfo()
        ms = highspy.HighsModelStatus
        if status_model == ms.kOptimal:
            status = "optimal"
        elif status_model in (ms.kTimeLimit, ms.kIterationLimit):
            status = "time_limit"
        elif status_model == ms.kInfeasible:
            raise InfeasibleError(model.explain_infeasible(instance))
        else:
            status = "error"
        if interrupted and status != "optimal":  # Ctrl-C: HiGHS cancelled, the incumbent kept
            status = "interrupted"
        solution = h.getSolution()
        has_primal = solution.value_valid
        value = float(info.objective_function_value) if has_primal else math.nan
        z = np.asarray(solution.col_value, dtype=float) if has_primal else None
        checked: dict[str, Any] = {}
        if integer and has_primal:  # values HiGHS did not value (a 1.16 start after presolve, R58)
            raw = np.asarray(lp_data.cost, dtype=float) * z
            mismatch = values_mismatch(value, float(raw.sum()), float(np.abs(raw).sum()),
                                       float(info.mip_dual_bound), status, started=started)
            if mismatch is not None:  # solved again without the start below
                checked["highs_values_mismatch"] = mismatch
                status = unclaimed(status, mismatch)
        if integer and has_primal:  # the incumbent rounded, checked against the model's rows
            # (not the cuts, valid for every schedule) and its latency recomputed from it
            z, value, rejected = _checked_ip_point(instance, lp_data, z)
            has_primal, status = recorded_check(checked, None, rejected, status)
            value = value if has_primal else math.nan
        if integer:
            bound = float(info.mip_dual_bound)
            bound = bound if math.isfinite(bound) else math.nan
        else:
            bound = value if status == "optimal" else math.nan
        result = Solution(status=status, objective=value, bound=bound,
                          gap=relative_gap(value, bound), wall_s=0.0, relaxed=not integer,
                          backend="highs-matrix", decision=instance.decision)
        if has_primal:
            result.decisions = model.start_decisions(cols, z, n)
        if not integer and status == "optimal" and solution.dual_valid:  # a stopped LP: no prices
            dual = np.asarray(solution.row_dual)
            price = normalise_dual(dual[n:n + T], sense="min", row="le", convention="pyomo")
            result.prices["kv_memory"] = clean_prices(
                pd.Series(price, index=pd.RangeIndex(T, name="round"), name="kv_memory"),
                inequality=True)
            result.prices["start_once"] = pd.Series(
                normalise_dual(dual[:n], sense="min", row="eq", convention="pyomo"),
                index=pd.RangeIndex(n, name="request"), name="start_once")
            if lp_data.a_cap is not None:
                price = normalise_dual(dual[n + T:n + 2 * T], sense="min", row="le",
                                       convention="pyomo")
                result.prices["batch_size"] = clean_prices(
                    pd.Series(price, index=pd.RangeIndex(T, name="round"), name="batch_size"),
                    inequality=True)
        result.info = {"rounds": T, "columns": int(h.getNumCol()), "nonzeros": int(h.getNumNz()),
                       **checked}
        return result

    # HiGHS's own integrality tolerance first, the tight one only as a retry after a rejected
    # incumbent, as in servopt.solvers.exact (retry_tight)
    tighter = integer and integrality_tolerance(_model_rows(instance, lp_data)[0], np.ones(
        len(cols.request), dtype=bool)) < MIP_FEASIBILITY_MAX
    result = retry_tight(once, tighter, budget)
    if integer:  # values HiGHS did not value after the start: the same IP without it
        result = without_start_if_mismatched(
            result, lambda: retry_tight(lambda tight: once(tight, started=False), tighter, budget),
            budget)
    result.wall_s = time.perf_counter() - t0
    return result


def _checked_ip_point(instance: Instance, lp_data: model.MatrixLP, z: np.ndarray
                      ) -> tuple[np.ndarray, float, str | None]:
    """The IP's incumbent ``z`` rounded to whole numbers, its total latency (rounds) recomputed
    from that point, and why it is rejected (None: it is a schedule of the model): the rows
    start_once, kv_memory and batch_size it breaks (:func:`servopt.solvers.exact.checked_incumbent`;
    exact, the data being whole numbers)."""
    a, lower, upper = _model_rows(instance, lp_data)
    n, T = instance.n, lp_data.cols.rounds
    cols = len(lp_data.cost)
    point, value, rows, bad_cols, activity = checked_incumbent(
        lp_data.cost, a, lower, upper, np.zeros(cols), np.ones(cols), np.ones(cols, dtype=bool), z)
    if not rows.size and not bad_cols.size:
        return point, value, None
    family = ("start_once", "kv_memory", "batch_size")
    named = [f"{family[0]}[{r}]" if r < n else f"{family[1 + (r - n) // T]}[{(r - n) % T}]"
             for r in rows[:1].tolist()]
    what = (f"{rows.size} row(s), e.g. {named[0]}: {activity[rows[0]]:.10g} outside "
            f"[{lower[rows[0]]:.10g}, {upper[rows[0]]:.10g}]" if rows.size
            else f"{bad_cols.size} column bound(s)")
    return point, math.nan, (f"HiGHS's incumbent, rounded to whole numbers, breaks {what} "
                             "(HiGHS accepts a binary within its integrality tolerance of 0 or 1): "
                             "no incumbent is reported; the bound stands")


@dataclasses.dataclass
class CoverBound:
    """The LP relaxation strengthened by rounds of memory cover cuts (:func:`cover_bound`).

    bound : a valid lower bound on total latency (rounds): the LP optimum with every cut added
    so far. lp : the plain LP optimum. cuts : the cut rows (for :func:`solve_lp`'s ``cuts``).
    history : the bound after each round. status : why the loop stopped.
    """

    bound: float
    lp: float
    cuts: list
    rounds: int
    history: list
    status: str
    wall_s: float


def _finite_seconds(name: str, value: Any, who: str) -> float:
    """A loop's time budget: seconds > 0, infinity for no limit (None, NaN or text refused by
    name: the loops count down from it)."""
    return number(name, value, lambda v: v > 0, f"a number of seconds > 0 (inf: no limit) for {who}")


def cover_bound(instance: Instance, *, rounds: int = 100, time_limit: float = 300.0,
                horizon: Any = None, window: int | None = None,
                min_gain: float = 1e-5) -> CoverBound:
    """Cut loop: solve the LP, add the most violated memory cover of every round
    (:func:`servopt.models.batch_scheduling.cover_cuts`), re-solve (dual simplex, warm), repeat.

    Stops after ``rounds`` rounds, when no cut is violated, when the last three rounds gained
    less than ``min_gain`` (relative) in total, or at ``time_limit`` s (infinity: no limit),
    counted from the call's entry: the model's build, the first LP and every re-solve spend
    from it (each LP gets what is left; a round that does not finish in time is dropped). The
    build does not check the clock (the time-indexed model of 200 requests: about a second).
    A first LP that does not finish in time gives no bound: ``bound`` and ``lp`` nan, status
    ``time_limit: the LP relaxation did not finish``. Each value in ``history`` is the optimum
    of an LP whose every row is valid for all schedules, hence a lower bound. Ctrl-C stops
    HiGHS at once and raises ``KeyboardInterrupt``.
    """
    import highspy

    time_limit = _finite_seconds("time_limit", time_limit, "cover_bound")
    t0 = time.perf_counter()

    def left() -> float:
        return time_limit - (time.perf_counter() - t0)

    lp_data = model.build_matrix(instance, horizon=horizon, window=window)
    h = _highs_problem(instance, lp_data)
    optimal = highspy.HighsModelStatus.kOptimal
    if not _run_for(h, left()):
        return CoverBound(bound=math.nan, lp=math.nan, cuts=[], rounds=0, history=[],
                          status="time_limit: the LP relaxation did not finish",
                          wall_s=time.perf_counter() - t0)
    if h.getModelStatus() != optimal:
        raise RuntimeError(f"the LP relaxation did not solve: {h.getModelStatus()}")
    value = float(h.getInfo().objective_function_value)
    rows = model.cover_rows(instance, lp_data.cols)
    nx = len(lp_data.cols.request)
    h.setOptionValue("solver", "simplex")
    history, cuts, status = [value], [], "rounds"
    for _ in range(rounds):
        if left() <= 0:
            status = "time_limit"
            break
        x = np.asarray(h.getSolution().col_value)[:nx]
        new = model.cover_cuts(instance, rows, x)
        if not new:
            status = "no violated cut"
            break
        for columns_, rhs in new:
            h.addRow(-np.inf, rhs, len(columns_), columns_.astype(np.int32), np.ones(len(columns_)))
        if not _run_for(h, left()):
            status = "time_limit"
            break
        if h.getModelStatus() != optimal:
            raise RuntimeError(f"the cut LP did not solve: {h.getModelStatus()}")
        cuts += new
        value = max(value, float(h.getInfo().objective_function_value))
        history.append(value)
        if len(history) > 3 and history[-1] - history[-4] < min_gain * abs(history[-1]):
            status = "stalled"
            break
    return CoverBound(bound=value, lp=history[0], cuts=cuts, rounds=len(history) - 1,
                      history=history, status=status, wall_s=time.perf_counter() - t0)


def _run_for(h: Any, left: float) -> bool:
    """Run HiGHS (``h``) for at most ``left`` more seconds (infinity: no limit; HiGHS's clock
    counts on across the runs of one object: :func:`servopt.solvers.exact.give_seconds`),
    Ctrl-C cancelling it at once (``KeyboardInterrupt`` then raised). False when it was
    stopped by the time limit (or ``left`` was already spent)."""
    import highspy

    if left <= 0:
        return False
    give_seconds(h, left)
    if _run_interruptible(h):
        raise KeyboardInterrupt("the bound's LP was interrupted")
    stopped = (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit)
    return h.getModelStatus() not in stopped


@dataclasses.dataclass
class GroupBound:
    """The LP with one group of requests scheduled integrally (:func:`group_bound`).

    bound : a valid lower bound on total latency (rounds). master : the restricted master's
    value when the loop stopped (the bound it converges to; not itself a bound before the
    pricing proves that no column improves it). lp : the plain LP optimum. group : the
    requests whose schedules are columns. history : (master, lower bound) per iteration.
    """

    bound: float
    master: float
    lp: float
    group: np.ndarray
    iterations: int
    history: list
    status: str
    wall_s: float


def tail_group(instance: Instance, size: int, lp: Solution) -> np.ndarray:
    """The ``size`` requests that the LP finishes last (largest mean completion round)."""
    x = lp.decisions["x"]
    req = x.index.get_level_values("request").to_numpy()
    end = x.index.get_level_values("round").to_numpy() + instance.output_tokens[req]
    weight = np.bincount(req, weights=x.to_numpy(), minlength=instance.n)
    late = lp.decisions["late"].to_numpy()
    mean_end = (np.bincount(req, weights=x.to_numpy() * end, minlength=instance.n)
                + late * (instance.arrival.max() + 10 ** 6)) / np.maximum(weight + late, 1e-12)
    return np.sort(np.lexsort((-np.arange(instance.n), mean_end))[::-1][:size])


def check_group_size(group_size: Any) -> None:
    """:func:`group_bound`'s ``group_size``: a whole number of requests >= 1."""
    if isinstance(group_size, bool) or not isinstance(group_size, int | np.integer) or group_size < 1:
        raise InvalidInstanceError(f"group_size must be a whole number of requests >= 1, got {group_size!r}")


def check_bucket(bucket: Any, penalty: Any) -> None:
    """:func:`coarse_bound`'s ``bucket`` (a whole number of rounds >= 1) and ``penalty`` (the
    share of the LP's memory prices charged, in [0, 1])."""
    if isinstance(bucket, bool) or not isinstance(bucket, int | np.integer) or bucket < 1:
        raise InvalidInstanceError(f"bucket must be a whole number of rounds >= 1, got {bucket!r}")
    if isinstance(penalty, bool) or not (isinstance(penalty, int | float) and 0 <= penalty <= 1):
        raise InvalidInstanceError(f"penalty is the share of the LP's memory prices charged: a number "
                                   f"in [0, 1], got {penalty!r}")


def group_bound(instance: Instance, *, group: np.ndarray | None = None, group_size: int = 8,
                time_limit: float = 120.0, price_time: float = 2.0, final_time: float = 30.0,
                horizon: Any = None, window: int | None = None) -> GroupBound:
    r"""Column generation: the LP in which a group G of requests is scheduled integrally.

    The LP's weakness is that it runs a request as a blend of many fractional starts, which
    fills memory to the last token in every round; it does this most where only a few large
    requests remain (the tail), where no schedule can. Here the requests of G (default: the
    ``group_size`` requests the LP finishes last) are not start columns but *whole schedules
    of G*: a column q picks one start (or the late column) for every request of G such that
    G alone fits in M in every round. The master LP::

        min  sum_k cost_k x_k + sum_q cost_q lam_q
        s.t. start_once[i]:  sum_{k of i} x_k + late_i = 1            (i not in G)
             convexity:      sum_q lam_q = 1
             kv_memory[t]:   sum_k tokens_k(t) x_k + sum_q tokens_q(t) lam_q <= M

    Every schedule restricted to G is such a column (G's memory is part of the total), so the
    master's optimum over all columns is a lower bound on every schedule's total latency, and
    at least the LP. Columns are priced by a small IP (G's requests, memory prices mu[t] from
    the master's duals, HiGHS, ``price_time`` s, doubled each time it neither finds a column
    nor proves that none exists): after each pricing,
    ``master + min(0, pricing lower bound - convexity dual)`` is a valid bound (Lagrangian),
    whatever the time limits; the loop stops when no column has negative reduced cost or when
    only the last pricing's share of ``time_limit`` is left, then one last pricing certifies
    the bound.

    ``time_limit`` (s; infinity: no limit) counts from the call's entry and covers every LP and
    IP: the first LP (the plain relaxation, which picks G), each master LP and pricing IP, and
    the last pricing, which gets ``min(final_time, what is left)`` (the loop keeps
    ``min(final_time, time_limit / 4)`` for it). Not timed: the two model builds and the
    greedy pricing heuristic (each a fraction of a second at n = 200). A first LP that does
    not finish in time gives no bound (``bound`` nan, status ``time_limit: the LP relaxation
    did not finish``); a master LP stopped by the limit ends the loop with the bound of the
    last master solved. Ctrl-C cancels HiGHS at once and raises ``KeyboardInterrupt``.
    """
    import highspy
    import scipy.sparse as sp

    time_limit = _finite_seconds("time_limit", time_limit, "group_bound")
    price_time = _finite_seconds("price_time", price_time, "group_bound")
    final_time = _finite_seconds("final_time", final_time, "group_bound")
    t0 = time.perf_counter()
    if instance.max_batch is not None:
        raise InvalidInstanceError("group_bound does not model a batch cap: it needs an instance "
                                   "with max_batch None")
    if group is None:
        check_group_size(group_size)
    reserve = min(final_time, time_limit / 4)  # kept from the loop for the last pricing

    def left() -> float:
        return time_limit - (time.perf_counter() - t0)

    def loop_left() -> float:
        return left() - reserve

    inf = highspy.kHighsInf
    # (a budget already spent, microseconds after the call began, is a stopped LP, not a
    # user's bad time limit)
    lp = solve_lp(instance, horizon=horizon, window=window, time_limit=left()) if left() > 0 \
        else None
    lp_status = "time_limit" if lp is None else lp.status
    if lp_status == "interrupted":
        raise KeyboardInterrupt("the group bound's LP was interrupted")
    if lp_status != "optimal":
        return GroupBound(bound=math.nan, master=math.nan, lp=math.nan,
                          group=np.asarray([] if group is None else group, dtype=np.int64),
                          iterations=0, history=[],
                          status="time_limit: the LP relaxation did not finish"
                                 + ("" if lp_status == "time_limit" else f" ({lp_status})"),
                          wall_s=time.perf_counter() - t0)
    if group is None:
        group = tail_group(instance, min(group_size, instance.n), lp)
    group = np.unique(np.asarray(group, dtype=np.int64))
    if group.size == 0 or group.min() < 0 or group.max() >= instance.n:
        raise InvalidInstanceError(f"group must list request ids in 0..{instance.n - 1}")
    data = model.build_matrix(instance, horizon=horizon, window=window)
    cols, n, T, M = data.cols, instance.n, data.cols.rounds, float(instance.kv_memory)
    nx = len(cols.request)
    in_group = np.zeros(n, dtype=bool)
    in_group[group] = True
    mine = in_group[cols.request]
    # master: rows start_once (free for G), convexity, kv_memory; G's own columns fixed to 0
    a = sp.vstack([data.a_eq, sp.csr_matrix((1, nx + n)), data.a_mem], format="csc")
    row_lo = np.concatenate([np.where(in_group, -inf, 1.0), [1.0], np.full(T, -inf)])
    row_hi = np.concatenate([np.where(in_group, inf, 1.0), [1.0], np.full(T, M)])
    col_hi = np.concatenate([np.where(mine, 0.0, inf), np.where(in_group, 0.0, inf)])
    h = new_highs()
    h.setOptionValue("solver", "simplex")
    master = highspy.HighsLp()
    master.num_col_, master.num_row_ = a.shape[1], a.shape[0]
    master.col_cost_, master.col_lower_, master.col_upper_ = data.cost, np.zeros(a.shape[1]), col_hi
    master.row_lower_, master.row_upper_ = row_lo, row_hi
    master.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    master.a_matrix_.start_, master.a_matrix_.index_, master.a_matrix_.value_ = (
        a.indptr, a.indices, a.data)
    h.passModel(master)
    # pricing: G's start columns and late columns; rows: one per request of G, kv_memory
    ks = np.flatnonzero(mine)
    member = np.searchsorted(group, cols.request[ks])
    row, col, tokens = model.usage(instance, cols)
    keep = mine[col]
    use = sp.csc_matrix((tokens[keep], (row[keep], np.searchsorted(ks, col[keep]))),
                        shape=(T, len(ks)))
    g = len(group)
    sub = sp.vstack([sp.hstack([sp.csr_matrix((np.ones(len(ks)), (member, np.arange(len(ks)))),
                                              shape=(g, len(ks))), sp.identity(g)]),
                     sp.hstack([use, sp.csr_matrix((T, g))])], format="csc")
    base_cost = np.concatenate([cols.cost[ks], cols.late_cost[group]])

    def add_column(pick: np.ndarray) -> None:
        """A schedule of G: ``pick`` flags its start (and late) columns in pricing order."""
        chosen = np.flatnonzero(pick[:len(ks)])
        tokens_t = np.asarray(use[:, chosen].sum(axis=1)).ravel()
        rows_ = np.concatenate([[n], n + 1 + np.flatnonzero(tokens_t)]).astype(np.int32)
        values = np.concatenate([[1.0], tokens_t[tokens_t > 0]])
        h.addCol(float(base_cost[pick].sum()), 0.0, inf, len(rows_), rows_, values)

    def column_of(start: np.ndarray) -> np.ndarray | None:
        pick = np.zeros(len(ks) + g, dtype=bool)
        key = {(int(cols.request[k]), int(cols.start[k])): j for j, k in enumerate(ks)}
        for m, i in enumerate(group):
            j = key.get((int(i), int(start[i])))
            if j is None:
                pick[len(ks) + m] = True
            else:
                pick[j] = True
        return pick

    add_column(np.r_[np.zeros(len(ks), dtype=bool), np.ones(g, dtype=bool)])  # all late
    for start in (model.greedy_schedule(instance), plan_schedule(instance, MCSF())):
        add_column(column_of(start))

    owner = np.r_[member, np.arange(g)]  # request (position in G) of each pricing column
    o_g, s_g = instance.output_tokens[group], instance.prompt_tokens[group]
    starts = [cols.start[ks][member == m] for m in range(g)]
    at = [np.flatnonzero(member == m) for m in range(g)]
    rng = np.random.default_rng(0)

    def greedy(cost: np.ndarray, tries: int = 24) -> tuple[float, np.ndarray]:
        """Heuristic pricing: place G's requests one by one, each at its cheapest start that
        fits with those placed before (or late); orders: by cheapest cost, by prompt size, random."""
        from numpy.lib.stride_tricks import sliding_window_view

        cheapest = np.array([min(cost[at[m]].min(initial=math.inf), cost[len(ks) + m])
                             for m in range(g)])
        orders = [np.argsort(cheapest, kind="stable"), np.argsort(-s_g, kind="stable")]
        orders += [rng.permutation(g) for _ in range(tries)]
        best_value, best_pick = math.inf, None
        for order in orders:
            free = np.full(T + int(o_g.max()), M)
            pick = np.zeros(len(ks) + g, dtype=bool)
            total = 0.0
            for m in order:
                choice, value = len(ks) + m, cost[len(ks) + m]
                if at[m].size:
                    need = s_g[m] + 1.0 + np.arange(o_g[m])
                    windows = sliding_window_view(free, o_g[m])[starts[m]]
                    ok = np.all(windows >= need, axis=1)
                    c = np.where(ok, cost[at[m]], math.inf)
                    j = int(np.argmin(c))
                    if c[j] < value:
                        choice, value = at[m][j], c[j]
                        free[starts[m][j]:starts[m][j] + o_g[m]] -= need
                pick[choice] = True
                total += value
            if total < best_value:
                best_value, best_pick = total, pick
        return best_value, best_pick

    def price(cost: np.ndarray, limit: float, upper: float,
              warm: np.ndarray | None) -> tuple[float, float, np.ndarray | None]:
        """Exact pricing (HiGHS) over the columns that can be in a schedule of G costing at most
        ``upper`` (a column whose cost exceeds its request's cheapest by more than ``upper``
        minus the sum of the cheapest costs cannot be; the optimum is kept, so the MIP's dual
        bound is a valid lower bound on the pricing optimum)."""
        cheapest = np.full(g, math.inf)
        np.minimum.at(cheapest, owner, cost)
        keep = cost - cheapest[owner] <= upper - cheapest.sum() + 1e-6
        keep[len(ks):] = True
        idx = np.flatnonzero(keep)
        part = sub[:, idx]
        prob = highspy.HighsLp()
        prob.num_col_, prob.num_row_ = part.shape[1], part.shape[0]
        prob.col_cost_ = cost[idx]
        prob.col_lower_, prob.col_upper_ = np.zeros(part.shape[1]), np.ones(part.shape[1])
        prob.row_lower_ = np.concatenate([np.ones(g), np.full(T, -inf)])
        prob.row_upper_ = np.concatenate([np.ones(g), np.full(T, M)])
        prob.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        prob.a_matrix_.start_, prob.a_matrix_.index_, prob.a_matrix_.value_ = (
            part.indptr, part.indices, part.data)
        prob.integrality_ = [highspy.HighsVarType.kInteger] * part.shape[1]

        def run(started: bool) -> tuple[Any, float, float, np.ndarray | None]:
            """HiGHS on the pricing IP, from the warm pick or not: the object, its reported
            objective, the cost of its values recomputed (inf: none) and their pick."""
            p = new_highs()
            p.setOptionValue("time_limit", float(max(min(limit, left()), 0.1)))
            p.setOptionValue("mip_rel_gap", 1e-6)
            p.passModel(prob)
            if started:
                _warm_start(p, keep[keep] & warm[keep])
            if _run_interruptible(p):
                raise KeyboardInterrupt("the group bound's pricing was interrupted")
            sol = p.getSolution()
            if not sol.value_valid:
                return p, math.nan, math.inf, None
            pick = np.zeros(len(cost), dtype=bool)
            pick[idx[np.asarray(sol.col_value) > 0.5]] = True
            return p, float(p.getInfo().objective_function_value), float(cost[pick].sum()), pick

        # the column's cost is recomputed from the values HiGHS returns. After a MIP start,
        # highspy 1.16 can return values whose cost is not the objective it reports (audit R58
        # F1): the start's values with the optimum's objective, or the optimum's values with an
        # objective below them (here, on tiny pricing IPs). The values' cost is then neither the
        # least reduced cost nor a bound on it, so such a pricing is solved again without its
        # start (servopt.solvers.exact does the same); an optimal pricing proves the lower of its
        # two numbers as the least cost, and the column is a real one at its recomputed cost
        started = warm is not None and bool(np.all(keep[warm]))
        p, reported, value, pick = run(started)
        optimal = p.getModelStatus() == highspy.HighsModelStatus.kOptimal
        if started and optimal and pick is not None and values_mismatch(
                reported, value, float(np.abs(cost[pick]).sum()), math.nan, "optimal",
                started=True) is not None:
            p, reported, value, pick = run(False)
            optimal = p.getModelStatus() == highspy.HighsModelStatus.kOptimal
        low = float(p.getInfo().mip_dual_bound)
        if pick is None:
            return math.inf, low, None
        if optimal:
            proved = min(value, reported) if math.isfinite(reported) else value
            low = max(low, proved - 1e-6 * max(1.0, abs(proved)))
        return value, low, pick

    history: list = []
    best, status, value, cost, sigma = -math.inf, "time_limit", math.nan, base_cost, 0.0
    tol = 1e-6 * max(1.0, abs(lp.objective))
    while True:
        if not _run_for(h, loop_left()):  # stopped: the last master solved stands (value, duals)
            status = "time_limit"
            break
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"the group master LP did not solve: {h.getModelStatus()}")
        value = float(h.getInfo().objective_function_value)
        dual = np.asarray(h.getSolution().row_dual)
        sigma, mu = float(dual[n]), np.maximum(-dual[n + 1:], 0.0)
        cost = base_cost + np.concatenate([use.T @ mu, np.zeros(g)])
        found, pick = greedy(cost)
        low = -math.inf
        if found - sigma > -tol and loop_left() > 0:  # the heuristic found nothing: exact pricing
            found2, low, pick2 = price(cost, min(price_time, loop_left()), found, pick)
            if found2 < found:
                found, pick = found2, pick2
            if math.isfinite(low):
                best = max(best, value + min(0.0, low - sigma))
        history.append((value, best))
        if found - sigma > -tol:
            status = "converged" if low - sigma > -tol else "stalled"
            if status == "converged" or loop_left() <= 0:
                break
            price_time *= 2  # not proved: price again, longer, while time is left
            continue
        if loop_left() <= 0:
            status = "time_limit"
            break
        add_column(pick)
    if status == "converged":
        best = max(best, value)
    elif math.isfinite(value) and min(final_time, left()) > 0:  # the last master solved
        found, _ = greedy(cost)
        _, low, _ = price(cost, min(final_time, left()), found, None)
        if math.isfinite(low):
            best = max(best, value + min(0.0, low - sigma))
    return GroupBound(bound=max(best, lp.objective), master=value, lp=lp.objective, group=group,
                      iterations=len(history), history=history, status=status,
                      wall_s=time.perf_counter() - t0)


@dataclasses.dataclass
class CoarseBound:
    """The coarse-time relaxation solved as IPs (:func:`coarse_bound`).

    bound : a valid lower bound on total latency (rounds). lp : the coarse LP's value (same
    averaging / constant; weaker than the fine LP unless priced). values, bounds, statuses :
    per solved model (one per offset when averaged): incumbent and dual bound (constant
    removed), HiGHS status. columns : bucket columns per model.
    """

    bound: float
    lp: float
    bucket: int
    averaged: bool
    penalty: float
    values: list
    bounds: list
    statuses: list
    columns: list
    wall_s: float


def coarse_bound(instance: Instance, *, bucket: int = 2, averaged: bool = True, penalty: float = 0.0,
                 offset: int = 0, time_limit: float = 120.0, horizon: Any = None,
                 window: int | None = None, mip_gap: float = 1e-6, report_lp: bool = True) -> CoarseBound:
    """Lower bound from the coarse-time IP (:func:`servopt.models.batch_scheduling.build_coarse_matrix`).

    ``averaged`` (default): the k = ``bucket`` IPs of offsets 0..k-1 with the wait credit, each
    for ``time_limit`` / k s; the bound is the mean of their dual bounds. Otherwise one IP
    (``offset``) with bucket costs, or, with ``penalty`` theta in (0, 1], costs penalised by
    theta x the fine LP's memory prices (the Lagrangian form; theta = 1 is never below the fine
    LP). Every dual bound is valid at any time limit, so the result is always a lower bound;
    a model whose root LP does not finish in time contributes nothing (bound -inf).
    ``time_limit`` (s, infinity: no limit) covers, with ``penalty``, the fine LP first, then
    the IPs (each its share of what is left); the model builds are not timed. Ctrl-C cancels
    HiGHS at once and raises ``KeyboardInterrupt``.
    ``report_lp`` also solves each model's LP relaxation for ``CoarseBound.lp`` (a reporting
    figure, up to a quarter of the time; the bound does not use it): off, ``lp`` is nan.
    """
    import highspy

    check_bucket(bucket, penalty)
    if averaged and penalty > 0:
        raise InvalidInstanceError("coarse_bound: pass averaged=False with a penalty (a priced model is "
                                   "a bound on its own)")
    if isinstance(time_limit, bool) or not (isinstance(time_limit, int | float) and time_limit > 0):
        raise InvalidInstanceError(f"time_limit must be a number of seconds > 0, got {time_limit!r}")
    t0 = time.perf_counter()
    price = None
    if penalty > 0:  # the fine LP's prices, within the budget
        lp = solve_lp(instance, horizon=horizon, window=window,
                      time_limit=None if math.isinf(time_limit) else time_limit)
        if lp.status == "interrupted":
            raise KeyboardInterrupt("the coarse bound's LP was interrupted")
        if "kv_memory" not in lp.prices:  # stopped before its optimum: no prices, no bound
            return CoarseBound(bound=-math.inf, lp=math.nan, bucket=int(bucket), averaged=False,
                               penalty=float(penalty), values=[], bounds=[],
                               statuses=[f"fine LP {lp.status}"], columns=[],
                               wall_s=time.perf_counter() - t0)
        price = penalty * lp.prices["kv_memory"].to_numpy()
    offsets = range(int(bucket)) if averaged else [offset]
    values, bounds, statuses, ncols, lps = [], [], [], [], []
    for k, off in enumerate(offsets):
        data = model.build_coarse_matrix(instance, int(bucket), offset=off, averaged=averaged,
                                         price=price, horizon=horizon, window=window)
        left = (time_limit - (time.perf_counter() - t0)) / (len(offsets) - k)
        if report_lp:
            relaxed = _highs_problem(instance, data, time_limit=max(left, 0.1) / 4)
            if _run_interruptible(relaxed):
                raise KeyboardInterrupt("the coarse bound's LP was interrupted")
            ok = relaxed.getModelStatus() == highspy.HighsModelStatus.kOptimal
            lps.append(float(relaxed.getInfo().objective_function_value) - data.constant if ok
                       else math.nan)
        else:
            lps.append(math.nan)
        left = (time_limit - (time.perf_counter() - t0)) / (len(offsets) - k)
        h = _highs_problem(instance, data, integer=True, time_limit=max(left, 0.1), mip_gap=mip_gap)
        if _run_interruptible(h):
            raise KeyboardInterrupt("the coarse bound's IP was interrupted")
        info = h.getInfo()
        low = float(info.mip_dual_bound)
        bounds.append(low - data.constant if math.isfinite(low) else -math.inf)
        values.append(float(info.objective_function_value) - data.constant
                      if h.getSolution().value_valid else math.nan)
        statuses.append(str(h.getModelStatus()).split(".")[-1].removeprefix("k").lower())
        ncols.append(len(data.cols.request))
    bound = float(np.mean(bounds))
    return CoarseBound(bound=bound, lp=float(np.mean(lps)), bucket=int(bucket), averaged=bool(averaged),
                       penalty=float(penalty), values=values, bounds=bounds, statuses=statuses,
                       columns=ncols, wall_s=time.perf_counter() - t0)


def _check_price(value: Any, name: str, *, vector: bool = False) -> Any:
    """A memory price (rounds of latency per KV token-round): finite and >= 0, a number or, with
    ``vector``, one per round."""
    try:
        price = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"{name} must be {'a vector of ' if vector else 'a '}number"
                                   f"{'s' if vector else ''} (rounds per KV token-round)") from None
    if isinstance(value, bool | str) or price.ndim != (1 if vector else 0):
        raise InvalidInstanceError(f"{name} must be {'one number per round' if vector else 'one number'}"
                                   f" (rounds per KV token-round), got {value!r}")
    if not np.all(np.isfinite(price)) or np.any(price < 0):
        raise InvalidInstanceError(f"{name} must be finite and >= 0 (rounds per KV token-round)")
    return price


def _check_patience(patience: float) -> float:
    """Rounds a request may wait, in multiples of its predicted output, before it blocks the queue."""
    if isinstance(patience, bool) or not (isinstance(patience, int | float) and patience >= 0):
        raise InvalidInstanceError(f"patience is how many times its predicted output a request may wait "
                                   f"before it blocks the queue: a number >= 0, got {patience!r}")
    return float(patience)


def _warm_start(h: Any, values: np.ndarray) -> None:
    """Give HiGHS (a ``highspy.Highs``) a feasible integer point (column values) to start from."""
    import highspy

    start = highspy.HighsSolution()
    start.col_value = values
    start.value_valid = True
    h.setSolution(start)


def _lp_prices(solution: Solution, time_limit: float | None) -> np.ndarray:
    """The memory prices of a solved LP, refused when it stopped before the optimum (a
    KeyboardInterrupt again when Ctrl-C stopped it: an interrupt, not a bad instance)."""
    if solution.status == "interrupted":
        raise KeyboardInterrupt("the bid-price LP was interrupted")
    if "kv_memory" not in solution.prices:
        raise InvalidInstanceError(
            f"the bid-price LP stopped before its optimum (status {solution.status}, time_limit "
            f"{time_limit}): its duals are not prices; raise time_limit or pass None")
    return solution.prices["kv_memory"].to_numpy()


def planning_instance(instance: Instance) -> Instance:
    """The instance a policy may plan on: predicted outputs taken as the truth.

    Prompts larger than the memory allows are impossible with true lengths; with predictions a
    request may look too long, so its predicted output is capped at M - s_i.
    """
    pred = np.minimum(instance.predicted_output, instance.kv_memory - instance.prompt_tokens)
    return instance.with_outputs(np.maximum(pred, 1))


def lp_too_large(instance: Instance, max_columns: int, max_entries: int) -> bool:
    """Does the LP (default horizon) have more than ``max_columns`` start columns or
    ``max_entries`` memory-row entries? First on :func:`~servopt.models.batch_scheduling.size_lower_bound`
    (O(n)), so that an instance certainly too large is told before the greedy plan that sets the
    horizon (16 s at 20,000 requests)."""
    _, columns, entries = model.size_lower_bound(instance)
    if columns > max_columns or entries > max_entries:
        return True
    _, columns, entries = model.model_size(instance)
    return columns > max_columns or entries > max_entries


def load_sample(instance: Instance, size: int, limits: tuple[int, int] | None = None) -> Instance:
    """``size`` requests spread evenly over the instance (by predicted output), with the memory
    scaled by size / n so that the sample loads the memory as the whole instance does; with
    ``limits`` (columns, entries), halved (down to 8 requests) until its LP is within them."""
    def too_large(inst: Instance) -> bool:
        return limits is not None and lp_too_large(planning_instance(inst), *limits)

    if instance.n <= size and not too_large(instance):
        return instance
    size = min(size, instance.n)
    sample = _sample(instance, size)
    while size > 8 and too_large(sample):
        size = max(8, size // 2)
        sample = _sample(instance, size)
    return sample


def _sample(instance: Instance, size: int) -> Instance:
    """``size`` requests evenly by predicted output, on their planning lengths (capped predictions
    stand in for the true outputs, which a policy never reads), in memory scaled by size / n but
    never below a sampled request's planned peak."""
    order = np.argsort(instance.predicted_output, kind="stable")
    chosen = np.sort(order[np.linspace(0, instance.n - 1, size).round().astype(int)])
    sample = planning_instance(instance).subset(chosen)
    peak = int(np.max(sample.prompt_tokens + sample.output_tokens))
    memory = max(round(instance.kv_memory * size / instance.n), peak)
    return dataclasses.replace(sample, kv_memory=memory)


def history_window(instance: Instance, history: int | Instance) -> Instance:
    """The window a stationary price is learned on: a given instance, or the first requests.

    With a number, the window is the first ``history`` requests of the instance itself (by
    arrival): on a stream these are requests the rule has not seen at round 0, so the price is
    learned in-sample (their prompts and predicted outputs, never their true lengths). A live
    deployment passes an earlier stream's requests as an :class:`Instance` instead.
    """
    if isinstance(history, Instance):
        return history
    first = np.argsort(instance.arrival, kind="stable")[: min(int(history), instance.n)]
    return instance.subset(first)


def _stationary_price(mu: np.ndarray) -> float:
    """One price from an LP's memory prices by round: their mean over the rounds up to the last
    positive one (the plan's busy rounds; its idle end would dilute it), 0 if none is positive."""
    busy = np.flatnonzero(mu > 0)
    return float(mu[: busy[-1] + 1].mean()) if len(busy) else 0.0


def learning_plan(history: Instance) -> Instance:
    """The instance whose LP :meth:`BidPriceStationary.learn` solves for a history window: its
    planning instance from its first arrival (a price per round is the same from whichever round
    the clock starts), idle stretches cut short when it spans more than ``LONG_ROUNDS`` rounds."""
    plan, _ = model.from_first_arrival(planning_instance(history))
    if model.horizon_rounds(plan) > LONG_ROUNDS:
        plan = model.compress_idle(plan)
    return plan


def _learned_or_zero(plan: Instance, time_limit: float | None, who: str, what: str
                     ) -> float | None:
    """The stationary price of the LP of ``plan`` (a :func:`learning_plan`), or None, with a
    ``RuntimeWarning`` naming ``what`` was solved, when the LP stopped before its optimum."""
    solution = solve_lp(plan, time_limit=time_limit)
    if solution.status == "interrupted":  # Ctrl-C: stop, as everywhere (a price of 0 is no
        raise KeyboardInterrupt(f"{who}: {what} was interrupted")  # rule's: R39 F1)
    if "kv_memory" in solution.prices:
        return _stationary_price(solution.prices["kv_memory"].to_numpy())
    warnings.warn(
        f"{who}: {what} stopped before its optimum (status {solution.status}, time_limit "
        f"{time_limit} s): its duals are not prices, so the price is 0 and the rule orders by "
        "predicted output alone; raise time_limit or pass None to price it",
        RuntimeWarning, stacklevel=4)
    return None


def sample_price(instance: Instance, size: int, max_columns: int, time_limit: float | None,
                 who: str, too_large: str, of: str) -> tuple[float | None, int]:
    """The stationary price learned on a :func:`load_sample` of ``size`` requests of
    ``instance`` whose LP is within ``max_columns`` start columns and 10 x ``max_columns``
    memory-row entries: (price, sample size), price None with a ``RuntimeWarning`` when even 8
    requests' LP is over the limits or the LP stopped at ``time_limit``. ``too_large`` says why
    no larger LP was solved, ``of`` what the sample's requests are (both in the warnings)."""
    limits = (max_columns, 10 * max_columns)
    small = load_sample(instance, size, limits)
    if lp_too_large(planning_instance(small), *limits):
        _, columns, entries = model.model_size(planning_instance(small))
        warnings.warn(
            f"{who}: {too_large} and so is the LP of a load sample of {small.n} requests "
            f"({columns:,} start columns, {entries:,} memory-row entries; limits {limits[0]:,} and "
            f"{limits[1]:,} from sample_max_columns={max_columns:,}): the price is 0 and the rule "
            "orders by predicted output alone; raise sample_max_columns to price it",
            RuntimeWarning, stacklevel=4)
        return None, small.n
    price = _learned_or_zero(learning_plan(small), time_limit, who,
                             f"the LP of a load sample of {small.n} {of}")
    return price, small.n


def history_price(history: Instance, *, time_limit: float | None = None, sample: int = 120,
                  max_columns: int = MAX_LP_COLUMNS, who: str = "BidPriceStationary"
                  ) -> tuple[float, str, int]:
    """The online bid-price rules' stationary price of a history window, with the size guard
    of :class:`BidPrice`'s load-sample LP: (price, source, sample size).

    - ``"lp"``: the window's own LP (:meth:`BidPriceStationary.learn`) when it has at most
      ``max_columns`` start columns and 10 x ``max_columns`` memory-row entries, counted before
      anything is built (a window of 40 requests with predictions of a few hundred tokens had
      110k columns and 15.6M entries: minutes in HiGHS);
    - ``"sample"``: otherwise the LP of :func:`load_sample` (``sample`` requests evenly by
      predicted output, memory scaled to the same load, halved down to 8 until within the
      limits);
    - ``"zero"``, with a ``RuntimeWarning``: even 8 requests' LP is over the limits, or the LP
      stopped at ``time_limit`` (s of HiGHS, the build not counted): price 0, the rule orders
      by predicted output alone.
    """
    limits = (max_columns, 10 * max_columns)
    window, _ = model.from_first_arrival(planning_instance(history))
    plan = learning_plan(window)  # what learn(history) solves
    if not lp_too_large(plan, *limits):
        price = _learned_or_zero(plan, time_limit, who,
                                 f"the LP of the history window of {window.n} requests")
        return (0.0, "zero", 0) if price is None else (price, "lp", 0)
    price, size = sample_price(window, sample, max_columns, time_limit, who,
                               "the history window's LP is too large",
                               "requests of the history window")
    return (0.0, "zero", size) if price is None else (price, "sample", size)


MAX_FILLED_ROUNDS = 10_000_000  # rounds of prices BidPrice.from_solution fills in (80 MB)


def _solution_prices(solution: Solution, who: str, *, fill: bool = True) -> np.ndarray:
    """The ``kv_memory`` prices of a solved batch_scheduling LP relaxation, one per round 0..T-1
    in round order; refused (naming ``who``) for anything else. Rounds the LP has no memory row
    for (a stream's long idle stretches, cut short: ``models.batch_scheduling.model_clock``)
    are slack, price 0: filled in with ``fill`` (up to ``MAX_FILLED_ROUNDS`` rounds in all),
    left out without it."""
    decision = getattr(solution, "decision", "")
    prices = getattr(solution, "prices", None)
    if decision == "batch_scheduling" and getattr(solution, "status", "optimal") != "optimal":
        raise InvalidInstanceError(
            f"the batch_scheduling LP was not solved to optimality (status {solution.status}): "
            "its duals are not prices")
    if decision in ("", "batch_scheduling") and getattr(solution, "relaxed", True) is False:
        raise InvalidInstanceError(
            f"{who}.from_solution needs the LP relaxation's prices: solve with relax=True "
            "(a MIP's prices are the duals with the integers fixed, here all zero)")
    if decision not in ("", "batch_scheduling") or not isinstance(prices, dict) \
            or "kv_memory" not in prices or prices["kv_memory"].index.names != ["round"]:
        raise InvalidInstanceError(
            f"{who}.from_solution needs a solved batch_scheduling LP (its kv_memory prices by "
            f"round); got a {decision or type(solution).__name__} solution")
    price = prices["kv_memory"].sort_index()
    rounds = np.asarray(price.index)
    first = rounds.min() if len(rounds) else 0
    if not (np.issubdtype(rounds.dtype, np.integer) and np.all(np.diff(rounds) > 0)):
        raise InvalidInstanceError(f"{who}.from_solution needs one kv_memory price for each "
                                   "round t0, t0 + 1, ..., t0 + T-1 (labelled by round; t0 the "
                                   "first arrival)")
    values = price.to_numpy(dtype=float)  # one price per round, in order
    span = int(rounds[-1] - first + 1) if len(rounds) else 0
    if span == len(rounds) or not fill:
        return values
    if span > MAX_FILLED_ROUNDS:
        raise InvalidInstanceError(
            f"{who}.from_solution: the LP's rounds span {span:,} rounds with long idle stretches "
            f"cut short ({span - len(rounds):,} rounds without a memory row); a price per round "
            f"over them is more than {MAX_FILLED_ROUNDS:,}: use BidPriceStationary.from_solution, "
            f"or solve the busy part of the stream alone")
    filled = np.zeros(span)  # the cut rounds are idle: memory slack, price 0
    filled[rounds - first] = values
    return filled


def arrived_after_round_0(policy: Policy, state: State) -> bool:
    """Has some request arrived after the first arrival round by round ``state.t`` (first
    arrival < arrival <= t; the first arrival is round 0 of a stream that starts there)?

    What the bid-price rules' mode is decided on: a fact about arrived requests only. The first
    arrival round after 0 is kept per instance (``_per_instance``) and compared with t, so the
    answer is the same whether the state's arrays hold the whole stream (the simulator) or only
    the requests arrived so far (a live scheduler).
    """
    first = _per_instance(policy, "_first_late", (state.arrival,),
                          lambda: _first_after_round_0(state.arrival))
    return first <= state.t


def _first_after_round_0(arrival: np.ndarray) -> float:
    """The first arrival round after the first one (round 0 of a stream that starts there; a
    clock that starts later is read from its first arrival), inf when there is none."""
    late = arrival[arrival > arrival.min()] if arrival.size else arrival
    return float(late.min()) if late.size else math.inf


def arrived_mean_need(policy: Policy, state: State) -> float:
    """Mean of prompt + predicted output (KV tokens) over the requests arrived by round
    ``state.t`` (arrival <= t), nan if none has.

    The running sums in arrival order are kept per instance and read up to the requests arrived
    by t, so the value is the same with the whole stream's arrays or the arrived requests' only.
    """
    arrival, total = _per_instance(policy, "_need_by_arrival",
                                   (state.arrival, state.prompt, state.predicted),
                                   lambda: _need_by_arrival(state))
    k = int(np.searchsorted(arrival, state.t, side="right"))
    return float(total[k - 1]) / k if k else math.nan


def _need_by_arrival(state: State) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(state.arrival, kind="stable")
    need = np.asarray(state.prompt + state.predicted, dtype=np.int64)[order]
    return state.arrival[order], np.cumsum(need)


class BidPrice(Policy):
    """Score = predicted remaining rounds + price of the memory-time footprint; MC-SF check.

    prices : mu[t], latency rounds per KV token-round for each round (from the LP relaxation),
        indexed by round: ``prices[k]`` is the price of round ``origin`` + k of the run. Given
        prices are used in every round.
    origin : the round of ``prices[0]`` (default 0; :meth:`from_solution` takes the LP's first
        labelled round, learned prices the instance's first arrival, so that a clock which does
        not start at 0 prices the same rounds).
    tail : price used past the end of ``prices`` (default: their mean over the rounds up to the
        last positive one).
    skip : None (default) decides the admission mode from what has arrived: stop at the first
        request that fails the check (as MC-SF) until a request arrives after round 0, then skip
        it and try the next ones (with the ``patience`` guard). True / False fix it.
    history : the window the online price is learned on (:func:`history_window`).
    max_columns : above this many start columns (or 25x as many memory-row entries: 5M by
        default; the committed n = 200 LPs have at most 4.2M, 40 requests predicted to run a few
        hundred rounds 16M, minutes) the offline LP (its size grows as n^2, its time faster) is
        not solved: the rule prices with one stationary price learned on a sample of
        ``sample`` requests (fewer if its LP has more
        than ``sample_max_columns`` start columns or 10x as many entries) with the memory scaled
        to keep the same load (``tail``; 0 if even 8 are too many: then it orders by predicted
        output alone, and says so with a ``RuntimeWarning`` and ``price_from == "zero"``).
    sample_max_columns : the sample LP's limit (default ``max_columns``). To force the sample
        price on an instance whose whole LP is small, pass ``max_columns=1`` and this limit
        (``max_columns=1`` alone also limits the sample's LP to 1 column: price 0). The history
        window's LP (online) has the same limit: above it, its price is learned on a load sample
        of the window (:func:`history_price`; ``history_from`` / ``history_size`` say where the
        online price came from, as ``price_from`` / ``sample_size`` for the all-at-once one).
        A sample's or the history's LP stopped at ``time_limit`` gives price 0 with a
        ``RuntimeWarning`` (``"zero"``); the whole offline LP stopped there is refused (its
        per-round duals are not prices).
    price_from : after ``prepare``, where the all-at-once price came from: ``"given"``,
        ``"lp"`` (the whole LP), ``"sample"`` (a load sample of ``sample_size`` requests),
        ``"zero"`` (even the smallest sample's LP was too large, or the sample's LP stopped at
        ``time_limit``: price 0) or ``"none"`` (no request at round 0).

    Learned prices (``prices=None``) follow what has arrived too. A live scheduler cannot know
    whether more requests will come, so while every request it has seen arrived at round 0 the
    rule is the all-at-once rule on them: prices from the LP relaxation of the requests present
    at round 0 (predicted lengths), stop at the first failure. From the first round in which a
    request has arrived after round 0 on, the plan no longer holds and it is the online rule:
    the history window's price in every round, skipping with patience. On an all-at-once
    instance this is the whole LP in every round, as before; on a stream only the rounds before
    the first later arrival use the round-0 plan. (``prepare`` learns the history price only when
    the instance has a later arrival: a solve no decision would read otherwise.)
    """

    name = "bid_price"

    def __init__(self, prices: np.ndarray | None = None, *, tail: float | None = None,
                 skip: bool | None = None, time_limit: float | None = None,
                 history: int | Instance = 60, patience: float = 2.0,
                 max_columns: int = MAX_LP_COLUMNS, sample: int = 120,
                 sample_max_columns: int | None = None, origin: int = 0) -> None:
        self.max_columns = whole_number("max_columns", max_columns)
        self.sample = whole_number("sample", sample)
        self.sample_max_columns = (self.max_columns if sample_max_columns is None else
                                   whole_number("sample_max_columns", sample_max_columns))
        self.price_from = "given" if prices is not None else ""
        self.sample_size = 0
        self.history_from, self.history_size = ("given", 0) if prices is not None else ("", 0)
        self.prices = None if prices is None else _check_price(prices, "prices", vector=True)
        self.given = prices is not None  # else learned afresh for every instance in prepare()
        self.patience = _check_patience(patience)
        self.tail = None if tail is None else float(_check_price(tail, "tail"))
        self.given_tail = tail
        self.history = check_history(history)
        self.skip = check_skip(skip)
        self.time_limit = seconds(time_limit)  # refused now, not at the first LP
        self.origin = whole_number("origin", origin, low=0)  # the round prices[0] prices
        self._modes: tuple | None = None  # (all-at-once, online) prices, each (mu, tail, p0, p1)
        if self.prices is not None:
            given = self._priced(self.prices, self.tail)
            self._modes = (given, given)
            self._use(given)

    @classmethod
    def from_solution(cls, solution: Solution, **kw: Any) -> BidPrice:
        """The rule from a solved LP relaxation (its ``kv_memory`` prices by round).

        Solve the LP of ``planning_instance(instance)`` (predicted lengths taken as the truth:
        ``servopt.solve(planning_instance(instance), relax=True)``), not of the instance itself:
        its true output lengths are what the rule must not know, and prices from them schedule
        with information no online rule has. The prices keep the LP's round labels (the model
        counts rounds from the first arrival and labels them as the instance's): ``origin`` is
        its first labelled round, so an LP of requests stamped with the run's rounds prices the
        run's rounds; one whose requests were re-stamped from 0 at round t0 needs
        ``origin=t0``.

        A MIP solution is refused: with every start variable binary, fixing them leaves no
        memory row a dual, so its prices are all zero and the rule would be plain shortest-first.
        """
        prices = _solution_prices(solution, cls.__name__)
        rounds = solution.prices["kv_memory"].index  # from the first arrival, as the model's
        return cls(prices, **{"origin": int(rounds.min()) if len(rounds) else 0, **kw})

    def prepare(self, instance: Instance) -> None:
        if self.given:
            return
        # rounds from the first arrival (its "round 0"): prices[k] prices round origin + k, so a
        # clock that does not start at 0 neither sizes the LP nor shifts the prices
        instance, self.origin = model.from_first_arrival(instance)
        first = np.flatnonzero(instance.arrival == 0)  # the requests known at round 0
        present = instance if instance.offline else instance.subset(first) if first.size else None
        at_once = self._plan_prices(present)
        online = at_once
        self.history_from, self.history_size = "none", 0
        if not instance.offline:  # online: the history window's average price in every round
            price, self.history_from, self.history_size = history_price(
                history_window(instance, self.history), time_limit=self.time_limit,
                sample=self.sample, max_columns=self.sample_max_columns, who=type(self).__name__)
            online = self._priced(np.zeros(0), price)
        self._modes = (at_once, online)
        self._use(at_once)

    def _plan_prices(self, present: Instance | None) -> tuple:
        """All-at-once prices for the requests ``present`` at round 0 (None: no request is): the
        LP relaxation of their planning instance, or, when that LP is too large, one price learned
        on a load sample."""
        self.sample_size = 0
        if present is None:
            self.price_from = "none"
            return self._priced(np.zeros(0), 0.0)
        plan = planning_instance(present)
        if lp_too_large(plan, self.max_columns, 25 * self.max_columns):
            price, self.sample_size = sample_price(
                present, self.sample, self.sample_max_columns, self.time_limit,
                type(self).__name__,
                f"the whole LP is too large (max_columns={self.max_columns:,})", "requests")
            self.price_from = "zero" if price is None else "sample"
            return self._priced(np.zeros(0), price or 0.0)
        self.price_from = "lp"
        mu = _lp_prices(solve_lp(plan, time_limit=self.time_limit), self.time_limit)
        return self._priced(mu, None if self.given_tail is None else float(self.given_tail))

    @staticmethod
    def _priced(mu: np.ndarray, tail: float | None) -> tuple:
        """(prices, tail, and their running sums for :meth:`footprint_price`)."""
        if tail is None:
            tail = _stationary_price(mu)
        p0 = np.concatenate([[0.0], np.cumsum(mu)])
        p1 = np.concatenate([[0.0], np.cumsum(mu * np.arange(len(mu)))])
        return mu, float(tail), p0, p1

    def _use(self, mode: tuple) -> None:
        self.prices, self.tail, self._p0, self._p1 = mode

    def _select(self, online: bool) -> None:
        """Price with the online prices once a request has arrived after round 0, else with the
        all-at-once ones (the same two for given prices)."""
        if self._modes is not None:
            mode = self._modes[1 if online else 0]
            if mode[2] is not self._p0:
                self._use(mode)

    def footprint_price(self, t: int, c: np.ndarray, r: np.ndarray) -> np.ndarray:
        """sum_{k<r} mu[t+k] (c + k): price of holding c, c+1, ... tokens for r rounds from t,
        with the prices in use (those of the last ``admit`` or ``score`` call's round)."""
        T = len(self.prices)
        t = max(int(t) - self.origin, 0)  # rounds of the price vector (none waits before origin)
        if T == 0 and t >= 0:  # online: every round at the tail price (the terms below, with
            return self.tail * (c * r + r * (r - 1) / 2)  # mu empty: inside 0, first c, k0 0)
        lo = min(t, T)
        hi = np.minimum(t + r, T)
        s0 = self._p0[hi] - self._p0[lo]
        s1 = self._p1[hi] - self._p1[lo]
        inside = c * s0 + s1 - t * s0
        # rounds past the price vector at the tail price
        k0 = np.maximum(T - t, 0)
        outside_rounds = np.maximum(r - k0, 0)
        first = c + np.minimum(k0, r)
        outside = self.tail * (first * outside_rounds
                               + outside_rounds * (outside_rounds - 1) / 2)
        return inside + outside

    def score(self, state: State, ids: np.ndarray) -> np.ndarray:
        """Admission score of the waiting requests ``ids`` (lowest admitted first): predicted
        remaining rounds plus the price of the memory-time footprint. A subclass that orders
        the queue otherwise overrides this; ``admit`` calls it on the waiting queue in every
        round where some waiting request fits in the free memory."""
        self._select(arrived_after_round_0(self, state))
        r = state.remaining(ids)
        return r + self.footprint_price(state.t, state.current(ids), r)

    def order_params(self, state: State) -> Any:
        """What the built-in score depends on besides each request's tokens and remaining rounds
        (the prices, and the round while it is inside the price vector), for :class:`KeptOrder`;
        None for a subclass with its own ``score`` or ``footprint_price`` (its queue is sorted
        afresh every round)."""
        cls = type(self)
        if cls.score is not BidPrice.score or cls.footprint_price is not BidPrice.footprint_price:
            return None
        T = len(self.prices)
        t = state.t - self.origin
        return (self._p0, self._p1, self.tail, T, t if t < T else -1)

    def admit(self, state: State) -> np.ndarray:
        online = arrived_after_round_0(self, state)
        skip = self.skip if self.skip is not None else online
        self._select(online)

        def patient(first: int) -> bool:
            # skip the request that fails the check, unless it has waited more than `patience`
            # times its predicted output (then it blocks the queue, as in MC-SF: no starvation)
            return not state.t - state.arrival[first] > self.patience * state.predicted[first]

        params = self.order_params(state)
        w = state.waiting
        if params is None or len(w) < KEEP_ORDER_FROM:
            # a short queue, or a score of the subclass's own: sort the queue every round
            _kept_order(self).forget()
            c = state.current(w)
            if _none_fits(state, c):
                return np.zeros(0, dtype=np.int64)
            by_score = np.argsort(self.score(state, w), kind="stable")
            return _lookahead(state, w[by_score], c[by_score], state.remaining(w)[by_score],
                              patient if skip else False)
        kept = _kept_order(self)
        order = kept.order(state, self.score, params)  # the queue by score, stable
        chosen = _head_lookahead(state, order)  # stop at the first failure: a prefix
        places = np.arange(len(chosen))
        if skip and len(chosen) < min(len(order), state.slots()) and patient(int(order[len(chosen)])):
            # the first that fails is skipped: the rest of the queue is read
            places = _lookahead_places(state, order, state.current(order), state.remaining(order),
                                       patient)
            chosen = order[places]
        kept.took(chosen, places)
        return chosen


class BidPriceStationary(BidPrice):
    """One price learned on a history window, applied online (see the module docstring).

    The admission mode follows what has arrived, as :class:`BidPrice`'s (``skip=None``: stop at
    the first failure until a request arrives after round 0, then skip with patience); the
    backlog guard's "requests that fit at once" is the memory over the mean prompt + predicted
    output of the requests arrived so far.

    The price is learned by :func:`history_price`: the history window's LP when it has at most
    ``sample_max_columns`` start columns and 10x as many memory-row entries (the limits of
    :class:`BidPrice`'s load-sample LP), else the LP of a load sample of the window (``sample``
    requests or fewer, as :class:`BidPrice`'s offline fallback); price 0, with a
    ``RuntimeWarning``, when even 8 requests' LP is too large or the LP stops at
    ``time_limit`` (s of HiGHS; default None, no limit). ``price_from`` says which (``"given"``,
    ``"lp"``, ``"sample"``, ``"zero"``) and ``sample_size`` the sample's requests (0: none).
    """

    name = "bid_price_stationary"

    def __init__(self, price: float | None = None, *, history: int | Instance = 60,
                 backlog_factor: float | None = 4.0, skip: bool | None = None,
                 time_limit: float | None = None, patience: float = 2.0, sample: int = 120,
                 sample_max_columns: int = MAX_LP_COLUMNS) -> None:
        self.price = None if price is None else float(_check_price(price, "price"))
        self.given = price is not None  # else learned afresh for every instance in prepare()
        self.price_from = "given" if self.given else ""
        self.sample_size = 0
        self.sample = whole_number("sample", sample)
        self.sample_max_columns = whole_number("sample_max_columns", sample_max_columns)
        self.patience = _check_patience(patience)
        self.history = check_history(history)
        if backlog_factor is not None:
            number("backlog_factor", backlog_factor, lambda v: 0 < v < math.inf,
                   "a finite number > 0, or None (no backlog guard)")
        self.backlog_factor = backlog_factor
        self.skip = check_skip(skip)
        self.time_limit = seconds(time_limit)  # refused now, not at the first LP

    @classmethod
    def from_solution(cls, solution: Solution, **kw: Any) -> BidPriceStationary:
        """The rule with the stationary price of a solved LP relaxation, as :meth:`learn` makes
        it: the mean of its ``kv_memory`` prices over the rounds up to the last positive one.
        Solve the LP of ``planning_instance(history)`` (predicted lengths), as for
        :meth:`BidPrice.from_solution`; a MIP or an unsolved LP, or a negative or non-finite
        price in any round (an edited file: R44 F1), is refused the same way."""
        prices = _check_price(_solution_prices(solution, cls.__name__, fill=False), "prices",
                              vector=True)
        return cls(_stationary_price(prices), **kw)

    @staticmethod
    def learn(history: Instance, time_limit: float | None = None) -> float:
        """Average memory price (rounds per token-round) of the LP on a history window (its idle
        stretches cut short when it spans more than ``LONG_ROUNDS`` rounds), whatever its size;
        refused when the LP stops at ``time_limit``. The rules' ``prepare`` goes through
        :func:`history_price` instead (size guard, fallbacks)."""
        plan = learning_plan(history)
        return _stationary_price(_lp_prices(solve_lp(plan, time_limit=time_limit), time_limit))

    def prepare(self, instance: Instance) -> None:
        if self.given:
            self.price_from, self.sample_size = "given", 0
            return
        self.price, self.price_from, self.sample_size = history_price(
            history_window(instance, self.history), time_limit=self.time_limit,
            sample=self.sample, max_columns=self.sample_max_columns, who=type(self).__name__)

    def _select(self, online: bool) -> None:
        """One price in every round: nothing to select."""

    def price_now(self, state: State) -> float:
        """The stationary price, scaled down by the backlog guard (latency rounds per KV
        token-round). The guard counts the requests that fit at once with the mean prompt +
        predicted output of the requests arrived by this round (:func:`arrived_mean_need`)."""
        price = self.price
        if self.backlog_factor is None:
            return price
        mean_need = arrived_mean_need(self, state)
        if not mean_need > 0:  # nothing has arrived (or only empty requests): no backlog
            return price
        fit = state.kv_memory / mean_need  # requests that fit at once
        backlog = len(state.waiting) / max(fit, 1.0)
        if backlog > self.backlog_factor:
            price = price * self.backlog_factor / backlog
        return price

    def score(self, state: State, ids: np.ndarray) -> np.ndarray:
        """Predicted remaining rounds plus the stationary price (scaled down by the backlog
        guard) times the memory-time footprint."""
        c, r = state.current(ids), state.remaining(ids)
        price = self.price_now(state)
        return r + price * (c * r + r * (r - 1) / 2)

    def order_params(self, state: State) -> Any:
        """The price of this round (the score's only input besides each request's tokens and
        remaining rounds); None for a subclass with its own ``score`` or ``price_now``."""
        cls = type(self)
        if cls.score is not BidPriceStationary.score \
                or cls.price_now is not BidPriceStationary.price_now:
            return None
        return ("stationary", float(self.price_now(state)))


# ---------------------------------------------------------------------------------------------
# Schedules with known lengths: a policy's plan and large-neighbourhood search (LNS)
# ---------------------------------------------------------------------------------------------
def _per_instance(policy: Policy, name: str, arrays: tuple[np.ndarray, ...], compute: Any) -> Any:
    """``compute()``, a figure of the instance's arrays (O(n)), kept on ``policy`` while the
    state shows the same read-only arrays (an instance's, which cannot change), so that a
    round costs O(waiting) rather than O(n); recomputed for writable arrays."""
    cached = policy.__dict__.get(name)
    if cached is not None and all(x is y for x, y in zip(cached[0], arrays, strict=True)):
        return cached[1]
    value = compute()
    if not any(arr.flags.writeable for arr in arrays):
        policy.__dict__[name] = (arrays, value)
    return value


def plan_schedule(instance: Instance, policy: Policy) -> np.ndarray:
    """Start rounds when ``policy`` admits with the instance's lengths taken as known.

    Rounds run as in the simulator, but a request is admitted only if memory stays within M
    at every future round (true lengths), so the plan never preempts; with a lookahead policy
    and exact predictions this is the policy's own schedule.
    """
    plan = instance.with_outputs(instance.output_tokens)
    a, s, o, M = plan.arrival, plan.prompt_tokens, plan.output_tokens, plan.kv_memory
    n = plan.n
    policy.prepare(plan)
    start = np.full(n, -1, dtype=np.int64)
    generated = np.zeros(n, dtype=np.int64)
    t = int(a.min())
    while np.any(start < 0):
        running = np.flatnonzero((start >= 0) & (start + o > t))
        waiting = np.flatnonzero((start < 0) & (a <= t))
        if not waiting.size and not running.size:
            t = int(a[start < 0].min())
            continue
        running = running[np.lexsort((running, start[running]))]
        generated[running] = t - start[running]
        c_run = s[running] + generated[running] + 1
        r_run = start[running] + o[running] - t
        if waiting.size and (plan.max_batch is None or len(running) < plan.max_batch):
            state = State(t=t, kv_memory=M, max_batch=plan.max_batch, used=int(c_run.sum()),
                          waiting=waiting[np.lexsort((waiting, a[waiting]))], running=running,
                          generated=generated.copy(), admitted_at=start.copy(), prompt=s,
                          predicted=o, arrival=a)
            for i in np.asarray(policy.admit(state), dtype=np.int64):
                full = plan.max_batch is not None and len(c_run) >= plan.max_batch
                if start[i] >= 0 or full or not model.fits(c_run, r_run, int(s[i] + 1),
                                                             int(o[i]), M):
                    continue
                start[i] = t
                c_run, r_run = np.append(c_run, s[i] + 1), np.append(r_run, o[i])
        t += 1
    return start


def reoptimise(instance: Instance, start: np.ndarray, free: np.ndarray, lo: int, hi: int,
               time_limit: float = 2.0) -> np.ndarray:
    """Best start rounds of the ``free`` requests in rounds [lo, hi] with the others fixed.

    A small time-indexed IP (HiGHS): the fixed requests' memory (and batch slots) are
    subtracted from every round's capacity; each free request keeps its current start as an
    allowed column, and the current schedule is the warm start, so the result is never worse.
    """
    import highspy
    import scipy.sparse as sp

    a, s, o, M = instance.arrival, instance.prompt_tokens, instance.output_tokens, instance.kv_memory
    free = np.asarray(free, dtype=np.int64)
    rounds = int(max(hi + o.max(), np.max(start + o))) + 1
    fixed = np.ones(instance.n, dtype=bool)
    fixed[free] = False
    keep = np.where(fixed, start, -1)
    used, busy = np.zeros(rounds), np.zeros(rounds)
    if fixed.any():
        sub = instance.subset(np.flatnonzero(fixed))
        used = model.memory_profile(sub, start[fixed], rounds)
        busy = model.batch_profile(sub, start[fixed], rounds).astype(float)
    starts = [np.union1d(np.arange(max(a[i], lo), max(a[i], min(hi, rounds - o[i])) + 1),
                         [start[i]]) for i in free]
    once = np.repeat(np.arange(len(free)), [len(ps) for ps in starts])  # start_once row
    req, st = free[once], np.concatenate(starts)
    col, j = model.run_rounds(o[req])
    row = st[col] + j - 1
    parts = [sp.csr_matrix((np.ones(len(req)), (once, np.arange(len(req)))),
                           shape=(len(free), len(req))),
        sp.csr_matrix(((s[req][col] + j).astype(float), (row, col)), shape=(rounds, len(req)))]
    upper = [np.ones(len(free)), M - used]
    if instance.max_batch is not None:
        parts.append(sp.csr_matrix((np.ones(len(row)), (row, col)), shape=(rounds, len(req))))
        upper.append(instance.max_batch - busy)
    mat = sp.vstack(parts, format="csc")
    h = new_highs()
    h.setOptionValue("time_limit", max(float(time_limit), 0.0))  # (HiGHS ignores one below 0)
    h.setOptionValue("mip_rel_gap", 1e-6)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = mat.shape[1], mat.shape[0]
    lp.col_cost_ = (st + o[req] - a[req]).astype(float)
    lp.col_lower_ = np.zeros(mat.shape[1])
    lp.col_upper_ = np.ones(mat.shape[1])
    lp.row_lower_ = np.concatenate([np.ones(len(free))] + [np.full(rounds, -np.inf)]
                                   * (len(parts) - 1))
    lp.row_upper_ = np.concatenate(upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = mat.indptr, mat.indices, mat.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * mat.shape[1]
    h.passModel(lp)
    warm = np.zeros(mat.shape[1])
    warm[np.flatnonzero(st == start[req])] = 1.0
    _warm_start(h, warm)
    h.run()
    sol = h.getSolution()
    if not sol.value_valid:
        return start
    z = np.asarray(sol.col_value) > 0.5
    new = keep.copy()
    new[req[z]] = st[z]
    if np.any(new < 0) or not model.is_feasible(instance, new):
        return start
    return new if model.schedule_latency(instance, new) <= model.schedule_latency(
        instance, start) else start


def serial_schedule(instance: Instance, order: np.ndarray, rounds: int | None = None,
                    free: np.ndarray | None = None, first: int = 0,
                    start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Place requests one by one in ``order``, each at the earliest round (>= its arrival)
    where it fits in memory in every round of its run, given those placed before (the serial
    schedule generation of project scheduling; known lengths).

    Returns start rounds and ``snapshots`` (free KV tokens per round before each placement),
    so that a caller changing the order from position ``first`` on can pass ``free`` (the
    snapshots) and ``start`` of an earlier call and re-place only the tail. ``rounds`` is the
    length of the memory profile (default: enough to place every request after all others).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    a, s, o, M = instance.arrival, instance.prompt_tokens, instance.output_tokens, instance.kv_memory
    if instance.max_batch is not None:
        raise InvalidInstanceError("serial_schedule does not model a batch cap: it needs an "
                                   "instance with max_batch None")
    if rounds is None:
        rounds = int(a.max() + o.sum() + 1)
    if free is None:
        if instance.n * rounds > SERIAL_MAX_ENTRIES:
            raise InvalidInstanceError(
                f"serial_schedule would keep {instance.n:,} snapshots of a {rounds:,}-round memory "
                f"profile ({instance.n * rounds * 8 / 1e9:,.1f} GB; limit {SERIAL_MAX_ENTRIES:,} "
                "entries), too large for the order search: cut idle stretches first (idle_cut, "
                "as search_order does), or use fewer requests or an online policy such as mcsf")
        free = np.empty((instance.n, rounds))
        free[0] = M
        start = np.full(instance.n, -1, dtype=np.int64)
        first = 0
    else:
        start = start.copy()
    profile = free[first].copy()
    for k in range(first, instance.n):
        free[k] = profile
        i = order[k]
        need = s[i] + 1 + np.arange(o[i])
        room = np.flatnonzero(profile[a[i]:] >= need[0])  # a start needs s_i + 1 free tokens
        p = -1
        lo = a[i] + int(room[0]) if room.size else rounds
        while lo + o[i] <= rounds:  # scan candidate starts in chunks of 128 rounds
            hi = min(rounds, lo + 128 + o[i] - 1)
            ok = np.all(sliding_window_view(profile[lo:hi], o[i]) >= need, axis=1)
            if ok.any():
                p = lo + int(np.argmax(ok))
                break
            lo = hi - o[i] + 1
        if p < 0:
            raise ValueError("serial_schedule: the profile is too short; pass more rounds")
        start[i] = p
        profile[p:p + o[i]] -= need
    return start, free


def search_seconds(time_limit: Any, who: str) -> float:
    """A local search's ``time_limit``: finite seconds > 0. The searches stop only at their
    deadline, so None or infinity (no limit) would never return and NaN never ends the loop:
    each is refused by name (:class:`InvalidInstanceError`)."""
    if time_limit is None or (isinstance(time_limit, int | float | np.number)
                              and not isinstance(time_limit, bool) and math.isinf(time_limit)):
        raise InvalidInstanceError(
            f"{who}: time_limit must be a finite number of seconds > 0 (the search stops only at "
            f"its time limit, so there is no 'no limit'), got {time_limit!r}")
    return number("time_limit", time_limit, lambda v: v > 0,
                  f"a finite number of seconds > 0 for {who}")


def search_order(instance: Instance, start: np.ndarray, *, time_limit: float = 30.0,
                 seed: int = 0, temperature: float = 0.5) -> np.ndarray:
    """Local search over the admission order, each order decoded by :func:`serial_schedule`.

    With at most ``EXHAUSTIVE_ORDERS`` requests every order is decoded once instead. Otherwise
    starts from the order of a schedule's start rounds (ties: shorter output first); a move
    swaps two requests or moves one to another position (half of the moves within 4
    positions), and only the changed tail is re-placed. Moves that do not increase the total
    latency are kept, worse ones with the simulated-annealing probability
    exp(-increase / temp), temp falling linearly from ``temperature`` rounds to 0 over
    ``time_limit`` s. Orders whose schedule would end after twice the starting makespan are
    skipped. Returns the start rounds of the best order found
    (never worse than the decoded starting order), on the instance's rounds.

    The search runs on the instance with its idle stretches cut short (:func:`idle_cut`; a
    gap of 1e9 rounds would size the n x rounds snapshots by it) and its schedule is put back
    part by part (:func:`close_idle`).
    """
    time_limit = search_seconds(time_limit, "search_order")
    short, shift = idle_cut(instance)
    found = _search_order(short, np.asarray(start, dtype=np.int64) - shift,
                          time_limit=time_limit, seed=seed, temperature=temperature)
    return close_idle(short, found) + shift


def _search_order(instance: Instance, start: np.ndarray, *, time_limit: float, seed: int,
                  temperature: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, o = instance.n, instance.output_tokens
    order = np.lexsort((np.arange(n), o, start))
    rounds = int(2 * np.max(start + o) + o.max() + 1)  # orders that need more are skipped
    try:
        current, free = serial_schedule(instance, order, rounds)
    except InvalidInstanceError:  # too large to search: said as it is, not retried longer
        raise
    except ValueError:  # the order needs more rounds than the first guess
        rounds = int(instance.arrival.max() + o.sum() + 1)
        current, free = serial_schedule(instance, order, rounds)
    cost = model.schedule_latency(instance, current)
    best, best_cost = current.copy(), cost
    if n <= EXHAUSTIVE_ORDERS:  # few requests: every order, once (no time budget to spend)
        for perm in itertools.permutations(range(n)):
            try:
                trial, _ = serial_schedule(instance, order[list(perm)], rounds)
            except ValueError:
                continue
            trial_cost = model.schedule_latency(instance, trial)
            if trial_cost < best_cost:
                best, best_cost = trial, trial_cost
        return best
    deadline = time.perf_counter() + time_limit
    t0 = time.perf_counter()
    while n > 1:
        now = time.perf_counter()
        if now >= deadline:
            break
        i = int(rng.integers(0, n))
        j = int(rng.integers(0, n)) if rng.random() < 0.5 else min(n - 1, max(0, i + int(
            rng.integers(-4, 5))))  # half of the moves are local
        if i == j:
            continue
        new = order.copy()
        if rng.random() < 0.5:
            new[i], new[j] = new[j], new[i]
        else:
            new = np.insert(np.delete(new, i), j, order[i])
        first = int(min(i, j))
        kept = free[first:].copy()  # the snapshots the move rewrites (those before stay valid)
        try:
            trial, _ = serial_schedule(instance, new, rounds, free, first, current)
        except ValueError:
            free[first:] = kept
            continue
        trial_cost = model.schedule_latency(instance, trial)
        temp = temperature * max(0.0, 1.0 - (now - t0) / max(time_limit, 1e-9))
        if trial_cost <= cost or (temp > 0 and rng.random() < math.exp((cost - trial_cost) / temp)):
            order, current, cost = new, trial, trial_cost
            if cost < best_cost:
                best, best_cost = current.copy(), cost
        else:
            free[first:] = kept
    return best


def improve_schedule(instance: Instance, start: np.ndarray, *, time_limit: float = 60.0,
                     max_free: int = 10, sub_time: float = 1.0, seed: int = 0,
                     width: int | None = None, reach: float = 1.0) -> np.ndarray:
    """Large-neighbourhood search on a feasible schedule (known lengths), for ``time_limit`` s.

    Each step frees the requests that start in a random window of rounds (at most
    ``max_free`` of them), lets them start anywhere from ``reach`` windows before to ``reach``
    windows after it, and re-solves their starts exactly with :func:`reoptimise` (HiGHS,
    ``sub_time`` s); improvements are kept. The window is ``width`` rounds, by default a random
    2-4 times the mean rounds between starts (tried on n = 20 and 50, not tuned further).
    Returns start rounds. The search runs on the instance with its idle stretches cut short
    (:func:`idle_cut`, the start's parts moved with them by :func:`close_idle`) and its schedule
    is put back part by part (:func:`close_idle`), so windows never fall in a long gap.
    """
    time_limit = search_seconds(time_limit, "improve_schedule")
    if not model.is_feasible(instance, start):
        raise InvalidInstanceError(
            "improve_schedule needs a feasible schedule to start from: one start round per "
            "request, none before its arrival, KV memory within kv_memory (and the batch cap) "
            "in every round")
    short, shift = idle_cut(instance)
    if short is not instance:
        found = improve_schedule(short, close_idle(instance, start) - shift,
                                 time_limit=time_limit, max_free=max_free, sub_time=sub_time,
                                 seed=seed, width=width, reach=reach)
        return found + shift  # found is already closed part by part
    rng = np.random.default_rng(seed)
    o = instance.output_tokens
    best = np.asarray(start, dtype=np.int64).copy()
    deadline = time.perf_counter() + time_limit
    stale = 0  # re-solves of a window holding every request that found nothing better
    while time.perf_counter() < deadline and instance.n > 1:
        if stale >= 5:  # the whole schedule was re-optimised in windows and did not improve
            break
        first, makespan = int(best.min()), int(np.max(best + o))
        size = width if width is not None else max(
            4, round(rng.uniform(2.0, 4.0) * (makespan - first) / instance.n))
        lo = int(rng.integers(first, max(first + 1, makespan - size)))
        free = np.flatnonzero((best >= lo) & (best < lo + size))
        if len(free) > max_free:
            free = np.sort(rng.choice(free, max_free, replace=False))
        if len(free) < 2:
            continue
        left = max(0.05, deadline - time.perf_counter())
        pad = int(reach * size)
        before = model.schedule_latency(instance, best)
        best = reoptimise(instance, best, free, lo - pad, lo + size + pad,
                          time_limit=min(sub_time, left))
        improved = model.schedule_latency(instance, best) < before
        stale = 0 if improved else stale + (len(free) == instance.n)
    return close_idle(instance, best)


def idle_cut(instance: Instance) -> tuple[Instance, np.ndarray]:
    """:func:`servopt.models.batch_scheduling.compress_idle` of ``instance`` (its idle stretches
    cut short, the first arrival at round 0) and each request's shift in rounds (instance
    arrival - compressed arrival, the same for every request of one part; a schedule of the
    compressed instance + shift is on the instance's rounds, see :func:`close_idle`)."""
    short = model.compress_idle(instance)
    if short is instance:
        return short, np.zeros(instance.n, dtype=np.int64)
    return short, (instance.arrival - short.arrival).astype(np.int64)


def idle_parts(instance: Instance) -> np.ndarray:
    """Each request's part (0, 1, ... in arrival order): a new part starts at a request arriving
    no earlier than the requests before it can all finish one after another (their last arrival
    + the sum of their outputs, in rounds), as in :func:`servopt.models.batch_scheduling.compress_idle`
    but with a part starting exactly then too, so that the parts of a compressed instance (whose
    next part arrives exactly then) are found again."""
    a, o = instance.arrival, instance.output_tokens
    order = np.argsort(a, kind="stable")
    label = np.zeros(instance.n, dtype=np.int64)
    part, latest, work = 0, 0, 0
    for k, i in enumerate(order):  # one pass over the requests, as compress_idle
        if k and a[i] >= latest + work:
            part, work = part + 1, 0
        label[i] = part
        latest, work = max(latest, int(a[i])), work + int(o[i])
    return label


def close_idle(instance: Instance, start: np.ndarray) -> np.ndarray:
    """A schedule (start rounds) whose parts of ``instance`` do not meet, at no higher latency.

    Parts are those of :func:`idle_parts`: a part's requests arrive by round A (its last
    arrival) and could all run one after another by A + the sum of their outputs, no later than
    the next part's first arrival. Each part's requests are taken alone
    (memory and batch use only fall) and every round from A on in which none of them runs is
    cut out (those starting later move that many rounds earlier: the requests running in each
    remaining round and their rounds into their runs are unchanged, and none moves before A,
    so before its arrival). A part then ends by A + its output sum, so the parts are disjoint
    in time and the schedule is feasible if each part's was; shifted by :func:`idle_cut`'s
    shifts, it is feasible on the uncompressed instance with the same total latency (rounds).
    Vectorised over requests; nothing is sized by rounds.
    """
    start = np.asarray(start, dtype=np.int64)
    if instance.n == 0:
        return start.copy()
    part = idle_parts(instance)
    last = np.zeros(int(part.max()) + 1, dtype=np.int64)
    np.maximum.at(last, part, instance.arrival.astype(np.int64))
    order = np.lexsort((start, part))  # by part, then start round
    g, p = part[order], start[order]
    end = p + instance.output_tokens[order].astype(np.int64)
    floor = last[g]  # the part's last arrival: rounds from it on may be cut
    # the latest end among the part's earlier starts: a running maximum within each part, on
    # ranks of the ends (keys part * (n + 1) + rank stay small whatever the rounds)
    values, rank = np.unique(end, return_inverse=True)
    running = np.maximum.accumulate(g * (instance.n + 1) + rank) - g * (instance.n + 1)
    before = np.full(len(p), -1, dtype=np.int64)  # -1: no earlier start in the part
    same = g[1:] == g[:-1]
    before[1:][same] = values[running[:-1][same]]
    idle = np.maximum(0, p - np.maximum(before, floor))  # idle rounds in [floor, p) before k
    total = np.cumsum(idle)
    first = np.r_[0, np.flatnonzero(~same) + 1]  # each part's first index
    within = total - (total - idle)[first][g]  # cut rounds before start k, within its part
    closed = np.empty_like(start)
    closed[order] = p - within
    return closed


class Hindsight(Policy):
    """The best schedule found with lengths known in advance (predicted lengths as the truth).

    Plans of MC-SF, the IP's warm start (:func:`servopt.models.batch_scheduling.warm_start_schedule`:
    the best of a few exact-lookahead orderings, shortest-first among them) and the bid-price
    rule (its LP on the whole instance) are computed; the best is improved by :func:`search_order` (three
    quarters of ``time_limit`` seconds) and :func:`improve_schedule` (one quarter) and replayed (each
    request admitted at its planned round, with the
    lookahead check). With exact predictions it is the best schedule found (an upper bound on
    the hindsight optimum), not an online method. The search runs on the instance with its idle
    stretches cut short (:func:`idle_cut`), so a gap of 1e9 rounds between arrivals sizes
    nothing; its schedule goes back on the instance's rounds part by part (:func:`close_idle`),
    feasible there with the same total latency.

    time_limit : the search's budget, finite seconds > 0 (it has no other stop: None, infinity,
        NaN or <= 0 are refused when the policy is made).
    """

    name = "hindsight"

    def __init__(self, time_limit: float = 30.0, seed: int = 0) -> None:
        self.time_limit = search_seconds(time_limit, "Hindsight")
        self.seed = whole_number("seed", seed, low=0)

    def prepare(self, instance: Instance) -> None:
        # planned on the instance with its idle stretches cut short (a clock stamped 1.7e9
        # rounds in, or a gap of 1e9 rounds between arrivals, would size the search's n x rounds
        # arrays by it), then put back on the instance's rounds part by part (close_idle)
        plan, shift = idle_cut(planning_instance(instance))
        candidates = [model.warm_start_schedule(plan), plan_schedule(plan, MCSF()),
                      plan_schedule(plan, BidPrice(time_limit=self.time_limit))]
        costs = [model.schedule_latency(plan, c) for c in candidates]
        initial = candidates[int(np.argmin(costs))]
        if plan.max_batch is None:  # the order search does not model a batch cap
            ordered = search_order(plan, initial, time_limit=self.time_limit * 3 / 4,
                                   seed=self.seed)
            lns_time = self.time_limit / 4
        else:
            ordered, lns_time = initial, self.time_limit
        best = improve_schedule(plan, ordered, time_limit=lns_time, seed=self.seed)
        self.planned = close_idle(plan, best) + shift
        self.initial = close_idle(plan, initial) + shift  # on the instance's rounds, as ``planned``

    def admit(self, state: State) -> np.ndarray:
        w = state.waiting
        due = w[self.planned[w] <= state.t]
        order = due[np.lexsort((state.predicted[due], self.planned[due]))]
        return admit_with_lookahead(state, order, skip=True)


POLICIES: dict[str, Any] = {
    "fcfs": FCFS,
    "spf": ShortestPredictedFirst,
    "mcsf": MCSF,
    "bid_price": BidPrice,
    "bid_price_stationary": BidPriceStationary,
    "hindsight": Hindsight,
}


def make_policy(method: Any) -> Policy:
    """The policy to run for ``method``: a new object for a ``POLICIES`` name or a policy class;
    a policy object is returned as it is, not copied, so whatever state it keeps from an earlier
    run (counters, caches, anything ``prepare`` does not reset) carries over into the next
    (``gap_table`` refuses one object listed twice; pass two objects, or the class)."""
    if isinstance(method, str):
        policies = layer_module("batch_scheduling", "solvers").POLICIES  # a replaced layer's
        if method not in policies:
            raise InvalidInstanceError(
                f"unknown batch_scheduling method {method!r}; known: {', '.join(policies)}")
        return policies[method]()
    if isinstance(method, type) and issubclass(method, Policy):
        return method()
    if isinstance(method, Policy):
        return method
    raise InvalidInstanceError(f"a batch_scheduling method must be a POLICIES name or an object of a "
                               f"subclass of servopt.solvers.batch_scheduling.Policy (write its "
                               f"admit(state)), got {type(method).__name__}")
