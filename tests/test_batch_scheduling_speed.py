"""The batch-scheduling simulator and online rules give IDENTICAL decisions to the code they
replaced (commit fd03291), which did O(n) work per round.

The reference below is that code as it was (``git show fd03291:benchmarks/batch_scheduling.py``
and ``...:solvers/batch_scheduling.py``), copied verbatim except for the names: the round
simulator and the ``State`` it built (full copies of ``generated`` and ``admitted_at``, waiting
and running found by scanning ``status``), vLLM's watermark admission, MC-SF's lookahead
(``model.fits`` per candidate), the bid-price rule's admission and footprint price and the
stationary rule's score. Every policy of ``POLICIES`` but ``hindsight`` is run by both on random
instances (all at once and online, with and without a batch cap, noisy predictions, memory tight
enough to preempt) and every output is compared: latency, ttft, finish, memory trace,
preemptions, refused admissions, rounds, and the admission made in every round.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import numpy as np
import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as inst_mod
from servopt.instances.batch_scheduling import Instance
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


# ---------------------------------------------------------------------------------------------
# the reference: the code as of fd03291, verbatim but for names
# ---------------------------------------------------------------------------------------------
def reference_simulate(instance: Instance, policy: Any, *, trace: bool = False,
             max_rounds: int | None = None) -> dict[str, Any]:
    """Run ``policy`` (already prepared) on ``instance``; per-request results and metrics.

    Returns a dict with ``latency``, ``ttft``, ``finish`` (rounds, per request), ``memory`` (KV
    tokens held in each round), ``preemptions``, ``refused`` and, with ``trace=True``,
    ``batch`` (running requests per round). ``decide_s`` is the time spent inside the policy.
    """
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
    queue_key = np.lexsort((np.arange(n), a)).argsort().astype(np.float64)  # FCFS rank
    ttft = np.full(n, -1, dtype=np.int64)
    finish = np.full(n, -1, dtype=np.int64)
    memory: list[int] = []
    batch: list[int] = []
    preemptions = refused = 0
    seq = 0
    decide_s = 0.0
    t = 0
    done = 0
    by_arrival = np.argsort(a, kind="stable")
    next_arrival = 0
    while done < n:
        if t >= max_rounds:
            raise RuntimeError(f"the policy did not finish {n - done} requests within "
                               f"{max_rounds} rounds (it stalls)")
        while next_arrival < n and a[by_arrival[next_arrival]] <= t:
            status[by_arrival[next_arrival]] = 1
            next_arrival += 1
        running = np.flatnonzero(status == 2)
        waiting = np.flatnonzero(status == 1)
        if not running.size and not waiting.size:
            t = int(a[by_arrival[next_arrival]])
            continue
        running = running[np.argsort(admit_seq[running], kind="stable")]
        used = int(np.sum(s[running] + generated[running] + 1))
        # (2) overflow: the policy's preemption rule
        if used > M:
            state = reference_state(instance, t, used, waiting, running, generated, admitted_at, queue_key)
            t0 = time.perf_counter()
            victims = bench._request_ids(policy.preempt(state, used - M), n, "preempt")
            decide_s += time.perf_counter() - t0
            if len(np.unique(victims)) < len(victims):
                raise InvalidInstanceError(f"the policy's preempt() returned a request twice: "
                                           f"{victims.tolist()[:10]}")
            if not np.all(status[victims] == 2):
                raise InvalidInstanceError("the policy's preempt() returned a request that is not "
                                           "running")
            status[victims] = 1
            queue_key[victims] = -(t + 1) * 1e9 + admit_seq[victims]  # front of the queue
            preemptions += len(victims)
            used -= int(np.sum(s[victims] + generated[victims] + 1))
            if used > M:
                raise InvalidInstanceError(f"the policy's preempt() did not free enough memory at "
                                           f"round {t} ({used} > {M} KV tokens)")
            running = running[status[running] == 2]
            waiting = np.flatnonzero(status == 1)
        # (3) admission
        waiting = waiting[np.argsort(queue_key[waiting], kind="stable")]
        if waiting.size and len(running) < cap:
            state = reference_state(instance, t, used, waiting, running, generated, admitted_at, queue_key)
            t0 = time.perf_counter()
            chosen = bench._request_ids(policy.admit(state), n, "admit")
            decide_s += time.perf_counter() - t0
            count = len(running)
            for i in chosen:
                need = int(s[i] + generated[i] + 1)
                if status[i] != 1 or used + need > M or count >= cap:
                    refused += 1
                    continue
                status[i] = 2
                admitted_at[i] = t
                seq += 1
                admit_seq[i] = seq
                used += need
                count += 1
        # (4) one token for every running request
        running = np.flatnonzero(status == 2)
        generated[running] += 1
        first = running[(ttft[running] < 0)]
        ttft[first] = t + 1 - a[first]
        memory.append(used)
        batch.append(len(running))
        ended = running[generated[running] >= o[running]]
        status[ended] = 3
        finish[ended] = t
        done += len(ended)
        t += 1
    latency = finish + 1 - a
    out = {"latency": latency, "ttft": ttft, "finish": finish, "memory": np.asarray(memory),
           "preemptions": preemptions, "refused": refused, "decide_s": decide_s,
           "rounds": t}
    if trace:
        out["batch"] = np.asarray(batch)
    return out


def reference_state(instance: Instance, t: int, used: int, waiting: np.ndarray, running: np.ndarray,
           generated: np.ndarray, admitted_at: np.ndarray, queue_key: np.ndarray) -> ReferenceState:
    return ReferenceState(t=t, kv_memory=instance.kv_memory, max_batch=instance.max_batch,
                       used=used, waiting=waiting, running=running, generated=generated.copy(),
                       admitted_at=admitted_at.copy(), prompt=instance.prompt_tokens,
                       predicted=instance.predicted_output, arrival=instance.arrival)


@dataclasses.dataclass
class ReferenceState:
    """What a policy sees at the start of a round (after any preemption of this round).

    t : the round. used : KV tokens the running requests hold in this round (prompt + generated
    + the token of this round). waiting : ids of arrived requests not running, in the FCFS queue
    order (preempted requests first). running : ids in admission order (oldest first).
    generated : tokens each request has emitted so far. admitted_at : the round of each
    request's latest admission (-1 if never). prompt, predicted, arrival : per request.
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

    def current(self, ids: np.ndarray) -> np.ndarray:
        """KV tokens each request holds in this round if it runs (prompt + generated + 1)."""
        return self.prompt[ids] + self.generated[ids] + 1

    def remaining(self, ids: np.ndarray) -> np.ndarray:
        """Predicted remaining rounds including this one.

        At least 1 once the prediction is hit, and at most what the memory allows (a request
        never needs more than M tokens, so a longer prediction is known to be wrong).
        """
        longest = self.kv_memory - self.prompt[ids] - self.generated[ids]
        return np.clip(self.predicted[ids] - self.generated[ids], 1, np.maximum(longest, 1))

    def slots(self) -> int:
        cap = self.max_batch if self.max_batch is not None else len(self.prompt)
        return max(0, cap - len(self.running))


def reference_admit_with_watermark(state: Any, queue: np.ndarray, watermark: float) -> np.ndarray:
    """Admit a queue prefix while free - need >= watermark tokens (vLLM's ``can_allocate``)."""
    if not len(queue):
        return queue
    mark = int(watermark * state.kv_memory)
    need = np.cumsum(state.current(queue))
    ok = (state.kv_memory - state.used - need >= mark)
    if not len(state.running):
        # vLLM would drop a request that can never pass the watermark ("NEVER"); here the
        # empty batch takes the head request whenever it fits in memory at all
        ok[0] = need[0] <= state.kv_memory
    count = int(np.argmin(ok)) if not ok.all() else len(queue)
    return queue[: min(count, state.slots())]


def reference_admit_with_lookahead(state: Any, queue: np.ndarray, *, skip: bool = False) -> np.ndarray:
    """Admit in queue order while memory stays within M at every predicted completion round.

    ``skip=False`` stops at the first request that does not fit (MC-SF); ``skip=True`` tries
    the next ones too.
    """
    c_run = state.current(state.running)
    r_run = state.remaining(state.running)
    chosen: list[int] = []
    slots = state.slots()
    if not len(queue) or not slots:
        return np.asarray(chosen, dtype=np.int64)
    c_new, r_new = state.current(queue), state.remaining(queue)
    free_now = state.kv_memory - state.used
    if skip:  # only requests that fit in this round's free memory can be admitted
        small = c_new <= free_now
        queue, c_new, r_new = queue[small], c_new[small], r_new[small]
    for k, i in enumerate(queue):
        if len(chosen) >= slots:
            break
        if c_new[k] <= free_now and model.fits(c_run, r_run, int(c_new[k]), int(r_new[k]),
                                               state.kv_memory):
            chosen.append(int(i))
            c_run, r_run = np.append(c_run, c_new[k]), np.append(r_run, r_new[k])
            free_now -= c_new[k]
        elif not skip:
            break
    return np.asarray(chosen, dtype=np.int64)


class ReferenceFCFS(rules.FCFS):
    def admit(self, state: Any) -> np.ndarray:
        return reference_admit_with_watermark(state, state.waiting, self.watermark)


class ReferenceSPF(rules.ShortestPredictedFirst):
    def admit(self, state: Any) -> np.ndarray:
        w = state.waiting
        order = w[np.argsort(state.remaining(w), kind="stable")]
        return reference_admit_with_watermark(state, order, self.watermark)


class ReferenceMCSF(rules.MCSF):
    def admit(self, state: Any) -> np.ndarray:
        w = state.waiting
        order = w[np.argsort(state.remaining(w), kind="stable")]
        return reference_admit_with_lookahead(state, order)


def arrived_after_0(state: Any) -> bool:
    """Has a request arrived after round 0 by this round (the bid-price rules' mode)?"""
    return bool(np.any((state.arrival > 0) & (state.arrival <= state.t)))


class ReferenceBidPrice(rules.BidPrice):
    def footprint_price(self, t: int, c: np.ndarray, r: np.ndarray) -> np.ndarray:
        """sum_{k<r} mu[t+k] (c + k): price of holding c, c+1, ... tokens for r rounds from t."""
        T = len(self.prices)
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

    def score(self, state: Any, ids: np.ndarray) -> np.ndarray:
        self._select(arrived_after_0(state))  # the online prices once a later request arrived
        r = state.remaining(ids)
        return r + self.footprint_price(state.t, state.current(ids), r)

    def admit(self, state: Any) -> np.ndarray:
        w = state.waiting
        order = w[np.argsort(self.score(state, w), kind="stable")]
        skip = self.skip if self.skip is not None else arrived_after_0(state)
        chosen = reference_admit_with_lookahead(state, order)
        if not skip or len(chosen) == len(order) or len(chosen) >= state.slots():
            return chosen
        # skip the request that fails the check, unless it has waited more than `patience`
        # times its predicted output (then it blocks the queue, as in MC-SF: no starvation)
        first = order[len(chosen)]
        if state.t - state.arrival[first] > self.patience * state.predicted[first]:
            return chosen
        return reference_admit_with_lookahead(state, order, skip=True)


class ReferenceBidPriceStationary(rules.BidPriceStationary):
    admit = ReferenceBidPrice.admit

    def score(self, state: Any, ids: np.ndarray) -> np.ndarray:
        r = state.remaining(ids)
        c = state.current(ids)
        price = self.price
        arrived = state.arrival <= state.t  # the mean over the requests arrived by now
        fit = state.kv_memory / float(np.mean((state.prompt + state.predicted)[arrived]))
        backlog = len(state.waiting) / max(fit, 1.0)
        if self.backlog_factor is not None and backlog > self.backlog_factor:
            price = price * self.backlog_factor / backlog
        return r + price * (c * r + r * (r - 1) / 2)


def memory_stays_within(c_run, r_run, c_new, r_new, memory) -> bool:
    """The definition, by brute force: the running set plus the newcomer, round by round
    (a request holds c + k tokens k rounds from now while k < r), never above ``memory``."""
    c = [*c_run, c_new]
    r = [*r_run, r_new]
    return all(sum(ci + k for ci, ri in zip(c, r, strict=True) if ri > k) <= memory for k in range(max(r)))


def running_sets(rng):
    """Random running sets and candidates, with the edge cases: no running request, equal
    remaining rounds, a candidate finishing before / with / after every running request, and
    batches above the fast path's 16 requests."""
    for trial in range(2000):
        size = (0, 1, int(rng.integers(2, 16)), int(rng.integers(17, 30)))[trial % 4]
        memory = int(rng.integers(5, 400))
        c = rng.integers(1, 40, size)
        r = (np.full(size, int(rng.integers(1, 10))) if trial % 7 == 0
             else rng.integers(1, 30, size))
        c_new = rng.integers(1, 40, 6)
        r_new = rng.integers(1, 30, 6)
        if size:  # finishing first, together with the first / last, and last
            r_new[:4] = [1, r.min(), r.max(), r.max() + 3]
        yield c, r, c_new, r_new, memory


def test_the_memory_check_and_its_fast_path_agree_with_the_definition():
    rng = np.random.default_rng(5)
    answers = set()
    for c, r, c_new, r_new, memory in running_sets(rng):
        want = [memory_stays_within(c.tolist(), r.tolist(), int(c_new[q]), int(r_new[q]), memory)
                for q in range(6)]
        answers.update(want)
        assert model.fits(c, r, c_new, r_new, memory).tolist() == want  # every candidate at once
        assert [model.fits(c, r, int(c_new[q]), int(r_new[q]), memory) for q in range(6)] == want
        assert [rules._fits_one(c.tolist(), r.tolist(), int(c_new[q]), int(r_new[q]), memory)
                for q in range(6)] == want
    assert answers == {True, False}


def test_memory_check_by_hand():
    # M = 10; running: 5 tokens, 3 rounds left (5, 6, 7). A newcomer of 2 tokens for 4 rounds
    # holds 2, 3, 4, 5: totals 7, 9, 11 -> overflow in the third round
    assert not model.fits([5], [3], 2, 4, 10)
    assert model.fits([5], [3], 2, 2, 10)  # 2, 3: totals 7, 9
    assert model.fits([], [], 7, 4, 10) and not model.fits([], [], 8, 4, 10)  # alone: 7..10, 8..11
    # the three as one array of candidates, plus 1 token for 4 rounds (1, 2, 3, 4: 6, 8, 10)
    assert model.fits([5], [3], np.array([2, 2, 1]), np.array([4, 2, 4]), 10).tolist() == [
        False, True, True]


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------
REFERENCE = {  # every POLICIES method but hindsight, with its reference twin
    "fcfs": (rules.FCFS, ReferenceFCFS),
    "spf": (rules.ShortestPredictedFirst, ReferenceSPF),
    "mcsf": (rules.MCSF, ReferenceMCSF),
    "bid_price": (rules.BidPrice, ReferenceBidPrice),
    "bid_price_stationary": (rules.BidPriceStationary, ReferenceBidPriceStationary),
}
OUTPUTS = ("latency", "ttft", "finish", "memory", "batch")


def test_every_online_rule_has_a_reference():
    assert set(REFERENCE) == set(rules.POLICIES) - {"hindsight"}


def twin(policy: rules.Policy) -> rules.Policy:
    """The same policy object (prepared: same prices), with the reference code."""
    ref = copy.deepcopy(policy)
    ref.__class__ = next(r for p, r in REFERENCE.values() if type(policy) is p)
    return ref


def recorded(policy: Any) -> list:
    """Wrap ``policy``'s admit and preempt to log every question and answer."""
    log: list = []
    admit, preempt = policy.admit, policy.preempt

    def logged_admit(state: Any) -> np.ndarray:
        out = admit(state)
        log.append(("admit", state.t, state.used, list(state.waiting), list(state.running),
                    np.asarray(out).tolist()))
        return out

    def logged_preempt(state: Any, excess: int) -> np.ndarray:
        out = preempt(state, excess)
        log.append(("preempt", state.t, state.used, excess, list(state.running),
                    np.asarray(out).tolist()))
        return out

    policy.admit, policy.preempt = logged_admit, logged_preempt
    return log


def assert_identical(instance: Instance, policy: rules.Policy) -> dict:
    """Run the (prepared) policy with the new code and its twin with the reference; compare."""
    ref = twin(policy)
    new_log, ref_log = recorded(policy), recorded(ref)
    new = bench.simulate(instance, policy, trace=True)
    old = reference_simulate(instance, ref, trace=True)
    assert new_log == ref_log
    for key in OUTPUTS:
        np.testing.assert_array_equal(new[key], old[key], err_msg=key)
    for key in ("preemptions", "refused", "rounds"):
        assert new[key] == old[key], key
    return new


def random_instance(seed: int) -> Instance:
    """Small, tight-memory instances: all at once or online, noisy predictions, some with a cap;
    one in five with memory for 25 average requests (a batch of more than 16: the lookahead's
    numpy path)."""
    rng = np.random.default_rng(1000 + seed)
    arrivals = ("offline", "poisson")[(seed // 2) % 2]
    load = float(rng.choice([0.8, 1.0, 1.5]))  # (drawn either way: the same stream of draws)
    return inst_mod.generate(
        int(rng.integers(8, 60)), lengths=("azure", "uniform")[seed % 2],
        arrivals=arrivals, load=load if arrivals == "poisson" else None,
        concurrency=25.0 if seed % 5 == 4 else float(rng.choice([1.5, 2.0, 3.0])),
        noise=float(rng.choice([0.0, 0.5, 1.0])),
        max_batch=(None, 2, 4)[seed % 3], seed=seed)


def given_policies(instance: Instance, seed: int) -> list[rules.Policy]:
    """Each rule with its parameters varied; the bid-price rules with given prices (no LP)."""
    rng = np.random.default_rng(seed)
    prices = rng.exponential(0.01, int(rng.integers(1, 3 * instance.n)))
    prices[rng.random(len(prices)) < 0.3] = 0.0
    return [rules.FCFS(), rules.FCFS(watermark=0.0), rules.FCFS(watermark=0.2),
            rules.ShortestPredictedFirst(), rules.MCSF(),
            rules.BidPrice(prices),  # by-round prices, then the tail (their mean)
            rules.BidPrice(prices, tail=0.05, skip=True, patience=0.5),
            rules.BidPrice(np.zeros(0), tail=float(rng.exponential(0.01))),  # as online
            rules.BidPriceStationary(float(rng.exponential(0.01))),
            rules.BidPriceStationary(0.02, backlog_factor=0.5, skip=False),
            rules.BidPriceStationary(0.02, backlog_factor=None, patience=0.0)]


@pytest.mark.parametrize("seed", range(30))
def test_same_decisions_as_the_reference_on_random_instances(seed):
    instance = random_instance(seed)
    for policy in given_policies(instance, seed):
        assert_identical(instance, policy)


def test_the_random_instances_preempt_refuse_cap_and_arrive():
    # the comparison above covers preemption, a batch cap, arrivals and noisy predictions
    instances = [random_instance(seed) for seed in range(30)]
    assert sum(bench.simulate(i, rules.FCFS())["preemptions"] > 0 for i in instances) >= 10
    assert sum(bench.simulate(i, rules.ShortestPredictedFirst())["preemptions"] > 0
               for i in instances) >= 10
    assert sum(i.max_batch is not None for i in instances) >= 10
    assert max(bench.simulate(i, rules.MCSF(), trace=True)["batch"].max() for i in instances) > 16
    assert sum(not i.offline for i in instances) >= 10
    assert sum(np.any(i.predicted_output != i.output_tokens) for i in instances) >= 10


class GreedyLargestFirst(rules.Policy):
    """A user's policy: the whole queue, largest prompt first (the simulator refuses what does
    not fit), and it sorts ``state.waiting`` in place, which the old State allowed."""

    def admit(self, state: Any) -> np.ndarray:
        w = state.waiting
        w.sort()  # in place: state.waiting must be the policy's own copy
        return w[np.argsort(-state.prompt[w], kind="stable")]


def test_a_users_policy_gets_the_same_answers_and_refusals():
    for seed in range(6):
        instance = random_instance(seed)
        new_log, ref_log = recorded(policy := GreedyLargestFirst()), recorded(ref := GreedyLargestFirst())
        new = bench.simulate(instance, policy, trace=True)
        old = reference_simulate(instance, ref, trace=True)
        for key in OUTPUTS:
            np.testing.assert_array_equal(new[key], old[key], err_msg=key)
        assert (new["preemptions"], new["refused"]) == (old["preemptions"], old["refused"])
        assert new["refused"] > 0
        assert [e for e in new_log if e[0] == "admit"] == [e for e in ref_log if e[0] == "admit"]


class LargestPromptFirst(rules.BidPrice):
    """A user's bid-price rule with its own score (admit must call it)."""

    def score(self, state: Any, ids: np.ndarray) -> np.ndarray:
        return -state.prompt[ids].astype(float)


class ReferenceLargestPromptFirst(ReferenceBidPrice):
    score = LargestPromptFirst.score


def test_a_users_own_bid_price_score_is_used_as_before():
    for seed in range(8):
        instance = random_instance(seed)
        policy, ref = LargestPromptFirst(np.zeros(0), tail=0.0), ReferenceLargestPromptFirst(
            np.zeros(0), tail=0.0)
        new_log, ref_log = recorded(policy), recorded(ref)
        new = bench.simulate(instance, policy, trace=True)
        old = reference_simulate(instance, ref, trace=True)
        assert new_log == ref_log
        for key in OUTPUTS:
            np.testing.assert_array_equal(new[key], old[key], err_msg=key)


@pytest.mark.slow  # 30 rules x instance runs with learned prices (~15 s); the 30 random
# instances above check the same decisions in the default run
@pytest.mark.parametrize("arrivals", ["offline", "poisson"])
def test_same_decisions_with_learned_prices_on_medium_instances(arrivals):
    # the shipped methods with their default parameters (the bid-price rules learn their prices
    # with the LP: on the whole instance all at once, on the history window online)
    n = 40 if arrivals == "offline" else 400
    for noise, max_batch in ((0.0, None), (0.5, None), (0.5, 6)):
        instance = inst_mod.generate(n, lengths="azure", arrivals=arrivals, noise=noise,
                                     load=1.0 if arrivals == "poisson" else None,
                                     max_batch=max_batch, seed=7)
        for name in REFERENCE:
            policy = rules.make_policy(name)
            policy.prepare(instance)
            assert_identical(instance, policy)


@pytest.mark.slow  # 1500 requests, five rules, each against its reference (~9 s)
def test_same_decisions_on_a_larger_online_instance():
    instance = inst_mod.generate(1500, lengths="azure", arrivals="poisson", load=1.0, noise=0.5,
                                 seed=3)
    for policy in (rules.FCFS(), rules.ShortestPredictedFirst(), rules.MCSF(),
                   rules.BidPrice(np.zeros(0), tail=0.002), rules.BidPriceStationary(0.002)):
        out = assert_identical(instance, policy)
        assert out["rounds"] > 5000


# ---------------------------------------------------------------------------------------------
# the state a policy sees
# ---------------------------------------------------------------------------------------------
class Writer(rules.FCFS):
    def __init__(self, field: str, method: str = "admit") -> None:
        super().__init__()
        self.field, self.method = field, method

    def admit(self, state: Any) -> np.ndarray:
        if self.method == "admit":
            getattr(state, self.field)[0] = 5
        return super().admit(state)

    def preempt(self, state: Any, excess: int) -> np.ndarray:
        if self.method == "preempt":
            getattr(state, self.field)[:] = 0
        return super().preempt(state, excess)


@pytest.mark.parametrize("field", ["generated", "admitted_at", "prompt", "predicted", "arrival"])
def test_a_policy_writing_into_the_state_gets_a_clear_error(field):
    instance = inst_mod.generate(30, lengths="azure", concurrency=1.5, seed=11)
    with pytest.raises(InvalidInstanceError, match=r"admit\(\) wrote into an array.*read-only"):
        bench.simulate(instance, Writer(field))
    assert bench.simulate(instance, rules.FCFS())["preemptions"] > 0
    with pytest.raises(InvalidInstanceError, match=r"preempt\(\) wrote into.*copy one first"):
        bench.simulate(instance, Writer(field, "preempt"))


class Scribbler(rules.FCFS):
    """Overwrites its copy of ``waiting`` or ``running`` after deciding (allowed: a copy)."""

    def __init__(self, field: str, method: str) -> None:
        super().__init__()
        self.field, self.method = field, method

    def admit(self, state: Any) -> np.ndarray:
        out = super().admit(state).copy()
        if self.method == "admit":
            getattr(state, self.field)[:] = 0
        return out

    def preempt(self, state: Any, excess: int) -> np.ndarray:
        out = super().preempt(state, excess).copy()
        if self.method == "preempt":
            getattr(state, self.field)[:] = 0
        return out


def test_a_policy_may_change_its_copy_of_waiting_and_running():
    instance = inst_mod.generate(30, lengths="azure", concurrency=1.5, seed=11)
    clean = bench.simulate(instance, rules.FCFS())
    assert clean["preemptions"] > 0
    for field in ("waiting", "running"):
        for method in ("admit", "preempt"):
            out = bench.simulate(instance, Scribbler(field, method))
            np.testing.assert_array_equal(out["latency"], clean["latency"])


def test_a_policy_error_that_is_not_about_the_state_passes_through():
    class Broken(rules.FCFS):
        def admit(self, state: Any) -> np.ndarray:
            raise ValueError("my own bug")

    with pytest.raises(ValueError, match="my own bug"):
        bench.simulate(inst_mod.generate(5, seed=1), Broken())


def test_preempt_sees_the_waiting_queue_in_fcfs_order():
    # the old simulator passed preempt() the waiting ids in id order; the State documents the
    # FCFS queue order (preempted first), which admit() saw. preempt's queue must be admit's
    # queue of the same round without this round's victims (admit's from the reference)
    instance = inst_mod.generate(60, lengths="azure", arrivals="poisson", load=1.5,
                                 concurrency=1.5, seed=4)

    class Watcher(rules.FCFS):
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict = {}

        def preempt(self, state: Any, excess: int) -> np.ndarray:
            out = super().preempt(state, excess)
            self.seen[state.t] = (list(state.waiting), set(out.tolist()))
            return out

    watcher, ref = Watcher(), ReferenceFCFS()
    ref_log = recorded(ref)
    bench.simulate(instance, watcher)
    reference_simulate(instance, ref)
    queues = {e[1]: e[3] for e in ref_log if e[0] == "admit"}
    assert len(watcher.seen) >= 5 and any(len(w) > 1 for w, _ in watcher.seen.values())
    for t, (waiting, victims) in watcher.seen.items():
        if t in queues:
            assert waiting == [i for i in queues[t] if i not in victims]


def test_per_instance_figures_are_cached_only_for_read_only_arrays():
    calls = []
    policy = rules.MCSF()
    frozen, other = np.arange(4), np.arange(4)
    frozen.flags.writeable = other.flags.writeable = False
    writable = np.arange(4)

    def figure(arr):
        return lambda: calls.append(1) or int(arr.sum())

    assert rules._per_instance(policy, "_x", (frozen,), figure(frozen)) == 6
    assert rules._per_instance(policy, "_x", (frozen,), figure(frozen)) == 6
    assert len(calls) == 1  # the same read-only array: computed once
    assert rules._per_instance(policy, "_x", (other,), figure(other)) == 6
    assert len(calls) == 2  # another array: computed again
    for value in (6, 10):
        writable[0] = value - 6
        assert rules._per_instance(policy, "_x", (writable,), figure(writable)) == value
    assert len(calls) == 4  # a writable array (it may change): computed every time


def test_a_policy_that_replaces_the_predictions_gets_its_own_remaining_rounds():
    # MC-SF fed the true outputs through the state must act as MC-SF on an instance whose
    # predictions are the true outputs: remaining() reads the state's own predictions
    inst = inst_mod.generate(60, arrivals="poisson", noise=0.8, seed=3)
    exact_predictions = dataclasses.replace(inst, predicted_output=inst.output_tokens)

    class Told(rules.MCSF):
        def admit(self, state):
            state.predicted = inst.output_tokens
            return super().admit(state)

    told = bench.evaluate(inst, Told()).cost
    assert told == bench.evaluate(exact_predictions, "mcsf").cost
    assert told != bench.evaluate(inst, "mcsf").cost  # the predictions did matter here
