"""The shortest-first and bid-price rules keep the waiting queue's order from round to round
(:class:`servopt.solvers.batch_scheduling.KeptOrder`) instead of sorting the whole queue every
round; their decisions must be exactly those of the plain rules that re-sort every round.

The references below are written simply: each round, the whole waiting queue sorted by the key
with a stable argsort (ties in queue order), then the rule's own admission test. They are
compared on many small random instances (all at once and online, preemption, a batch cap, equal
predicted lengths, noisy predictions, predictions swapped mid-run) on every admit answer and
every output of the simulator; and :class:`KeptOrder` alone is compared with a stable argsort
under random queue changes, including ones the simulator never makes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.instances import batch_scheduling as inst_mod
from servopt.instances.batch_scheduling import Instance
from servopt.solvers import batch_scheduling as rules


@pytest.fixture(autouse=True)
def keep_every_queue(monkeypatch, request):
    """The rules keep queues of KEEP_ORDER_FROM (512) requests or more in order and sort shorter
    ones afresh; here every queue is kept (the small instances below would never reach 512)."""
    monkeypatch.setattr(rules, "KEEP_ORDER_FROM", 0)


# ---------------------------------------------------------------------------------------------
# the references: sort the whole queue every round
# ---------------------------------------------------------------------------------------------
def resorted(state: Any, key: np.ndarray) -> np.ndarray:
    return state.waiting[np.argsort(key, kind="stable")]


class ResortSPF(rules.ShortestPredictedFirst):
    def admit(self, state):
        order = resorted(state, state.remaining(state.waiting))
        return rules.admit_with_watermark(state, order, self.watermark)


class ResortMCSF(rules.MCSF):
    def admit(self, state):
        order = resorted(state, state.remaining(state.waiting))
        return rules.admit_with_lookahead(state, order)


class ResortBidPrice(rules.BidPrice):
    def admit(self, state):
        order = resorted(state, self.score(state, state.waiting))
        skip = self.skip if self.skip is not None else bool(
            np.any((state.arrival > 0) & (state.arrival <= state.t)))

        def patient(first):
            return not state.t - state.arrival[first] > self.patience * state.predicted[first]

        return rules._lookahead(state, order, state.current(order), state.remaining(order),
                                patient if skip else False)


class ResortBidPriceStationary(rules.BidPriceStationary):
    admit = ResortBidPrice.admit


RESORT = {rules.ShortestPredictedFirst: ResortSPF, rules.MCSF: ResortMCSF,
          rules.BidPrice: ResortBidPrice, rules.BidPriceStationary: ResortBidPriceStationary}


def test_every_rule_that_sorts_the_queue_has_a_reference():
    sorting = {cls for cls in rules.POLICIES.values() if "_kept_order" in cls.admit.__code__.co_names}
    assert sorting == set(RESORT)


# ---------------------------------------------------------------------------------------------
# whole runs compared
# ---------------------------------------------------------------------------------------------
def run(instance: Instance, policy: Any) -> tuple[dict, list]:
    """Simulate, logging every admit question and answer (round, queue, running, answer)."""
    log: list = []
    admit = policy.admit

    def logged(state):
        out = admit(state)
        log.append((state.t, state.used, state.waiting.tolist(), state.running.tolist(),
                    np.asarray(out).tolist()))
        return out

    policy.admit = logged
    return bench.simulate(instance, policy, trace=True), log


def assert_same_run(instance: Instance, policy: rules.Policy, reference: rules.Policy) -> tuple[dict, list]:
    new, new_log = run(instance, policy)
    old, old_log = run(instance, reference)
    assert new_log == old_log
    for key in ("latency", "ttft", "finish", "memory", "batch"):
        np.testing.assert_array_equal(new[key], old[key], err_msg=key)
    for key in ("preemptions", "refused", "rounds"):
        assert new[key] == old[key], key
    return new, new_log


def pair(cls: type, *args: Any, **kw: Any) -> tuple[rules.Policy, rules.Policy]:
    return cls(*args, **kw), RESORT[cls](*args, **kw)


def random_instance(seed: int) -> Instance:
    """Small, tight memory, all at once or online; every third with predictions drawn from two
    values (many equal keys), some with a batch cap or noisy predictions."""
    rng = np.random.default_rng(seed)
    arrivals = ("offline", "poisson")[(seed // 2) % 2]
    load = float(rng.choice([0.8, 1.2, 2.0]))  # (drawn either way: the same stream of draws)
    inst = inst_mod.generate(
        int(rng.integers(10, 80)), lengths=("azure", "uniform")[seed % 2],
        arrivals=arrivals, load=load if arrivals == "poisson" else None,
        concurrency=float(rng.choice([1.5, 2.0, 4.0])), noise=float(rng.choice([0.0, 0.5])),
        max_batch=(None, None, 3)[seed % 3], seed=seed)
    if seed % 3 == 0:
        few = rng.choice([3, 5], inst.n)
        inst = dataclasses.replace(inst, predicted_output=few)
    return inst


def policies(seed: int, instance: Instance) -> list[tuple[rules.Policy, rules.Policy]]:
    rng = np.random.default_rng(seed)
    prices = rng.exponential(0.02, int(rng.integers(1, 2 * instance.n)))
    prices[rng.random(len(prices)) < 0.3] = 0.0
    return [pair(rules.ShortestPredictedFirst), pair(rules.ShortestPredictedFirst, watermark=0.0),
            pair(rules.MCSF),
            pair(rules.BidPrice, prices),  # by-round prices: the keys move with the round
            pair(rules.BidPrice, prices, tail=0.05, skip=True, patience=0.5),
            pair(rules.BidPrice, np.zeros(0), tail=float(rng.exponential(0.02))),
            pair(rules.BidPrice, np.zeros(0), tail=0.0, skip=True),
            pair(rules.BidPriceStationary, float(rng.exponential(0.02))),
            pair(rules.BidPriceStationary, 0.02, backlog_factor=0.5),  # price moves with backlog
            pair(rules.BidPriceStationary, 0.02, backlog_factor=0.5, skip=False, patience=0.0)]


@pytest.mark.parametrize("seed", range(30))
def test_same_decisions_as_resorting_every_round(seed):
    instance = random_instance(seed)
    for policy, reference in policies(seed, instance):
        assert_same_run(instance, policy, reference)


def test_the_random_runs_cover_preemption_ties_arrivals_and_the_kept_paths():
    preempted = ties = online = capped = 0
    rebuilds = rekeys = calls = 0
    for seed in range(12):  # a sample of the seeds above
        instance = random_instance(seed)
        online += not instance.offline
        capped += instance.max_batch is not None
        ties += len(np.unique(instance.predicted_output)) <= 2
        for policy, _ in policies(seed, instance):
            out, log = run(instance, policy)
            preempted += out["preemptions"] > 0
            kept = policy._kept_order
            rebuilds, rekeys, calls = rebuilds + kept.rebuilds, rekeys + kept.rekeys, calls + len(log)
    assert preempted >= 40 and ties >= 4 and online >= 6 and capped >= 4
    # the kept order is followed, not rebuilt, in most rounds; the moving prices are re-keyed
    assert rebuilds < 0.05 * calls and rekeys > 0.05 * calls


class Swapper:
    """Mixin: replaces ``state.predicted`` with another read-only array from some rounds on
    (as a policy that trusts other predictions would), and back."""

    swaps: ClassVar[dict] = {}

    def admit(self, state):
        for t0, predicted in sorted(self.swaps.items()):
            if state.t >= t0:
                state.predicted = predicted
        return super().admit(state)


def swapped(cls: type, swaps: dict, *args: Any, **kw: Any) -> tuple[rules.Policy, rules.Policy]:
    new = type("New", (Swapper, cls), {"swaps": swaps})(*args, **kw)
    ref = type("Ref", (Swapper, RESORT[cls]), {"swaps": swaps})(*args, **kw)
    return new, ref


def frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("seed", range(12))
def test_predictions_swapped_mid_run_are_noticed(seed):
    instance = random_instance(seed)
    rng = np.random.default_rng(seed)
    other = frozen(rng.integers(1, 30, instance.n))
    swaps = {3: other, 9: instance.predicted_output, 14: frozen(instance.output_tokens)}
    for cls, args in ((rules.ShortestPredictedFirst, ()), (rules.MCSF, ()),
                      (rules.BidPrice, (np.zeros(0),)), (rules.BidPriceStationary, (0.02,))):
        kw = {"tail": 0.01} if cls is rules.BidPrice else {}
        new, ref = swapped(cls, swaps, *args, **kw)
        assert_same_run(instance, new, ref)


def test_a_swap_changes_the_decisions_and_forces_a_new_sort():
    # the swaps above matter: MC-SF told the true outputs from round 5 on decides otherwise,
    # and the kept order sorts afresh at the swap (and follows the queue in the rounds around it)
    instance = inst_mod.generate(60, noise=1.0, concurrency=2.0, seed=3)  # all at round 0
    new, ref = swapped(rules.MCSF, {5: frozen(instance.output_tokens)})
    counts = {}
    admit = new.admit

    def counted(state):
        out = admit(state)
        counts[state.t] = new._kept_order.rebuilds
        return out

    new.admit = counted
    out = assert_same_run(instance, new, ref)[0]
    plain = bench.simulate(instance, rules.MCSF())
    assert not np.array_equal(out["latency"], plain["latency"])
    assert counts[5] == counts[4] + 1 and counts[4] == counts[3] and counts[6] == counts[5]


def edit_predictions(policy: Any, state: Any) -> None:
    """A writable copy of the predictions, edited in place every round (the kept order must
    not trust a writable array)."""
    if not hasattr(policy, "mine"):
        policy.mine = np.array(state.predicted)
    policy.mine[(state.t * 7) % len(policy.mine)] = 1 + state.t % 9
    state.predicted = policy.mine


class InPlace(rules.MCSF):
    def admit(self, state):
        edit_predictions(self, state)
        return super().admit(state)


class InPlaceReference(ResortMCSF):
    def admit(self, state):
        edit_predictions(self, state)
        return super().admit(state)


def test_predictions_edited_in_place_are_noticed():
    changed = 0
    for seed in range(6):
        instance = random_instance(seed)
        out = assert_same_run(instance, InPlace(), InPlaceReference())[0]
        changed += not np.array_equal(out["latency"], bench.simulate(instance, rules.MCSF())["latency"])
    assert changed >= 3


@pytest.mark.parametrize("arrivals", ["offline", "poisson"])
def test_same_decisions_across_the_threshold(arrivals, monkeypatch):
    # queues above and below the threshold in one run (online: short, kept, short again)
    # (the threshold is 512; 40 here, so that a small instance crosses it both ways)
    monkeypatch.setattr(rules, "KEEP_ORDER_FROM", 40)
    instance = inst_mod.generate(150, lengths="azure", arrivals=arrivals, noise=0.5, seed=5,
                                 load=6.0 if arrivals == "poisson" else None)
    for policy, reference in (pair(rules.ShortestPredictedFirst), pair(rules.MCSF),
                              pair(rules.BidPrice, np.zeros(0), tail=0.01),
                              pair(rules.BidPriceStationary, 0.01)):
        queue = [len(q) for _, _, q, _, _ in assert_same_run(instance, policy, reference)[1]]
        assert policy._kept_order.rebuilds >= 1 and max(queue) >= 40 and min(queue) < 40


def test_the_default_threshold(monkeypatch):
    monkeypatch.undo()  # the module's own value, not this file's
    assert rules.KEEP_ORDER_FROM == 512


def test_a_policy_object_reused_on_another_instance_sorts_afresh():
    a, b = random_instance(1), random_instance(2)
    policy = rules.MCSF()
    for instance in (a, b, a):
        np.testing.assert_array_equal(bench.simulate(instance, policy)["latency"],
                                      bench.simulate(instance, ResortMCSF())["latency"])


# ---------------------------------------------------------------------------------------------
# KeptOrder alone, under random queue changes (some the simulator never makes)
# ---------------------------------------------------------------------------------------------
def test_kept_order_equals_a_stable_sort_under_random_queue_changes():
    rng = np.random.default_rng(0)
    for trial in range(90):
        n = int(rng.integers(5, 60 if trial % 3 else 300))
        prompt = frozen(rng.integers(1, 6, n))
        predicted = frozen(rng.integers(1, 4, n))  # few values: many ties
        generated = np.zeros(n, dtype=np.int64)
        admitted_at = np.full(n, -1, dtype=np.int64)
        seen_generated, seen_admitted = generated.view(), admitted_at.view()
        seen_generated.flags.writeable = seen_admitted.flags.writeable = False
        queue = list(rng.permutation(n)[: int(rng.integers(1, n + 1))])
        outside = [i for i in range(n) if i not in queue]
        kept = rules.KeptOrder()
        price = 0.5
        follows = 0
        for t in range(40):
            state = rules.State(t=t, kv_memory=100, max_batch=None, used=0,
                                waiting=np.asarray(queue, dtype=np.int64), running=np.zeros(0, np.int64),
                                generated=seen_generated, admitted_at=seen_admitted, prompt=prompt,
                                predicted=predicted, arrival=frozen(np.zeros(n, dtype=np.int64)))

            def key(st, ids, price=price * (trial % 2)):  # every other trial: integer keys
                return st.remaining(ids) + price * st.current(ids)

            before = kept.rebuilds
            got = kept.order(state, key, ("price", price))
            follows += kept.rebuilds == before
            want = state.waiting[np.argsort(key(state, state.waiting), kind="stable")]
            np.testing.assert_array_equal(got, want, err_msg=f"trial {trial} round {t}")
            # the policy takes a few from the head; some are admitted, one may be refused
            many = trial % 3 == 0 and t % 4 == 0  # then more than 32 leave at once
            take = min(40, len(queue)) if many else int(rng.integers(0, min(3, len(queue)) + 1))
            chosen = got[:take].copy()
            kept.took(chosen, np.arange(take))
            for i in chosen.tolist():
                if rng.random() < (0.9 if many else 0.8):
                    queue.remove(i)
                    admitted_at[i] = t
                    generated[i] += 1
                    outside.append(i)
            # the next round's changes
            change = rng.integers(0, 8)
            if change == 0 and outside:  # preempted: back at the front
                i = outside.pop(int(rng.integers(len(outside))))
                queue.insert(0, i)
            elif change == 1 and outside:  # an arrival at the back
                queue.append(outside.pop(int(rng.integers(len(outside)))))
            elif change == 2 and queue:  # a waiting request ran (never in the simulator)
                generated[queue[int(rng.integers(len(queue)))]] += 1
            elif change == 3 and len(queue) > 1:  # the queue reordered (never in the simulator)
                a, b = rng.choice(len(queue), 2, replace=False)
                queue[a], queue[b] = queue[b], queue[a]
            elif change == 4 and queue:  # a request twice (never in the simulator)
                queue.insert(int(rng.integers(len(queue) + 1)), queue[int(rng.integers(len(queue)))])
            elif change == 5:
                price = float(rng.choice([0.0, 0.5, 1.0, 2.0 / 3.0]))
            elif change == 6 and queue:  # removed without being taken (never in the simulator)
                outside.append(queue.pop(int(rng.integers(len(queue)))))
            if not queue:
                queue.append(outside.pop())
            queue = [i for k, i in enumerate(queue) if i not in queue[:k]] if change != 4 else queue
        assert follows > 0
