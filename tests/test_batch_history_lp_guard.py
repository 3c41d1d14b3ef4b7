"""The online bid-price rules' history LP has the offline load-sample LP's size guard and falls
back instead of raising (audit R27, finding 2).

A stream of 40 requests with predictions of a few hundred tokens gave a history LP of 110k start
columns and 15.6M memory-row entries: ``bid_price_stationary`` spent 445 s in ``prepare`` and
``bid_price`` more than 165 s (the same LP); with ``time_limit=5`` the rule raised after 58 s
instead of falling back. (The offline path's entries limit was 100x ``max_columns`` then, so it
solved the same requests' whole LP at round 0 for 250 s; it is 25x now:
tests/test_batch_offline_lp_guard.py.)

The references here are the documented fallback rules run directly: the load sample built by
hand from its description (requests evenly by predicted output, memory scaled by size / n,
halved from min(n, sample) while the LP has more than ``sample_max_columns`` start columns or
10x as many entries, counted with the model's own counter), and price 0 (order by predicted
output alone) when even 8 requests are too many or the LP stops at its time limit.
"""

from __future__ import annotations

import contextlib
import signal
import warnings

import numpy as np
import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.instances import batch_scheduling as inst_mod
from servopt.instances.batch_scheduling import Instance
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules

SHIPPED = (200_000, 2_000_000)  # the load-sample LP's limits: 200,000 columns, 10x entries


@contextlib.contextmanager
def within(seconds: int):
    """Fail (not hang) when the block runs longer than ``seconds``: the old code spent minutes."""
    def alarm(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def audit_stream() -> Instance:
    """The audit's reproducer (R27 bs6.py): 40 requests over 200 rounds, kv_memory 944."""
    rng = np.random.default_rng(0)
    n = 40
    a = np.sort(rng.choice(200, n, replace=False))
    s = rng.choice(np.arange(20, 400), n, replace=False)
    o = rng.integers(5, 80, n)
    pred = rng.choice(np.arange(5, 300), n, replace=False)
    return Instance(kv_memory=int((s + o).max() * 2), arrival=a, prompt_tokens=s,
                    output_tokens=o, predicted_output=pred)


def documented_sample(inst: Instance, size: int) -> Instance:
    """The load sample as the docstrings describe it, written out here: planning lengths
    (prediction capped at M - s, at least 1), ``size`` requests at evenly spaced ranks of the
    predicted output (ties by arrival order), memory M * size / n rounded but never below a
    sampled request's prompt + planned output, arrivals from the first one."""
    pred = np.maximum(np.minimum(inst.predicted_output, inst.kv_memory - inst.prompt_tokens), 1)
    by_pred = np.argsort(pred, kind="stable")
    chosen = np.sort(by_pred[np.linspace(0, inst.n - 1, size).round().astype(int)])
    peak = int(np.max(inst.prompt_tokens[chosen] + pred[chosen]))
    return Instance(kv_memory=max(round(inst.kv_memory * size / inst.n), peak),
                    arrival=inst.arrival[chosen] - inst.arrival.min(),
                    prompt_tokens=inst.prompt_tokens[chosen], output_tokens=pred[chosen],
                    predicted_output=pred[chosen])


def over(inst: Instance, limits: tuple[int, int]) -> bool:
    """The model's own count of start columns and memory-row entries against ``limits``."""
    _, columns, entries = model.model_size(inst)
    return columns > limits[0] or entries > limits[1]


@pytest.mark.slow  # three full evaluations of the audit stream and a sample LP (~13 s)
def test_the_audit_stream_is_priced_on_a_load_sample_in_seconds():
    inst = audit_stream()
    # by hand: the whole window (40 requests) and half of it are over the shipped limits (the
    # window: about 110k columns and 15.5M entries), 10 requests are within them
    assert over(documented_sample(inst, 40), SHIPPED)
    assert over(documented_sample(inst, 20), SHIPPED)
    assert not over(documented_sample(inst, 10), SHIPPED)
    rule = rules.BidPriceStationary()
    with within(120), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a sample price is no warning
        cost = bench.evaluate(inst, rule).cost  # (prepare included: 445 s before)
    assert rule.price_from == "sample" and rule.sample_size == 10
    reference = rules.BidPriceStationary.learn(documented_sample(inst, 10))
    assert reference > 0
    assert rule.price == pytest.approx(reference, rel=1e-9)
    assert cost == bench.evaluate(inst, rules.BidPriceStationary(price=reference)).cost
    assert cost < bench.evaluate(inst, "mcsf").cost  # 7587 against 10231 here


def test_a_window_whose_smallest_sample_is_too_large_prices_at_zero_and_says_so():
    # outputs of 300-800 rounds: the history LP has about 39M entries (minutes in HiGHS before)
    # and even 8 requests' LP has more than 2M; no LP is solved, both rules warn
    inst = inst_mod.generate(40, arrivals="poisson", load=1.0, output_range=(300, 800), seed=0)
    window = rules.history_window(inst, 60)
    assert over(documented_sample(window, 8), SHIPPED)
    stationary, bid = rules.BidPriceStationary(), rules.BidPrice()
    with within(60):
        with pytest.warns(RuntimeWarning, match="load sample of 8 requests.*price is 0"):
            stationary.prepare(inst)
        with pytest.warns(RuntimeWarning, match="load sample of 8 requests.*price is 0"):
            bid.prepare(inst)
    assert stationary.price == 0.0 and stationary.price_from == "zero"
    assert stationary.sample_size == 8
    assert bid.history_from == "zero" and bid.history_size == 8
    assert bid._modes[1][1] == 0.0 and len(bid._modes[1][0]) == 0  # online: price 0 throughout
    # the documented fallback run directly: price 0, order by predicted output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cost = bench.evaluate(inst, rules.BidPriceStationary()).cost
    assert cost == bench.evaluate(inst, rules.BidPriceStationary(price=0.0)).cost


def test_the_guard_follows_sample_max_columns_for_both_rules():
    # a small stream with the limit lowered so that its 40-request window is over it and a
    # 20-request sample within: the online price of both rules is the sample's
    inst = inst_mod.generate(40, arrivals="poisson", load=1.0, seed=3)
    window = rules.history_window(inst, 60)
    _, columns, entries = model.model_size(documented_sample(window, 20))
    limit = max(columns, -(-entries // 10))
    assert over(documented_sample(window, 40), (limit, 10 * limit))
    reference = rules.BidPriceStationary.learn(documented_sample(window, 20))
    stationary = rules.BidPriceStationary(sample_max_columns=limit)
    stationary.prepare(inst)
    assert stationary.price_from == "sample" and stationary.sample_size == 20
    assert stationary.price == pytest.approx(reference, rel=1e-9)
    bid = rules.BidPrice(sample_max_columns=limit)
    bid.prepare(inst)
    assert bid.history_from == "sample" and bid.history_size == 20
    assert bid._modes[1][1] == pytest.approx(reference, rel=1e-9)
    assert bench.evaluate(inst, rules.BidPriceStationary(sample_max_columns=limit)).cost \
        == bench.evaluate(inst, rules.BidPriceStationary(price=reference)).cost
    # the shipped limits leave this window's own LP alone: the price of before
    shipped = rules.BidPriceStationary()
    shipped.prepare(inst)
    assert shipped.price_from == "lp" and shipped.sample_size == 0
    assert shipped.price == pytest.approx(rules.BidPriceStationary.learn(window), rel=1e-9)


def test_a_history_lp_stopped_by_its_time_limit_falls_back_to_price_zero():
    # a window within the limits (1.37M entries: seconds in HiGHS) and 0.05 s for HiGHS: the
    # rule raised InvalidInstanceError ("stopped before its optimum"); now price 0 and a warning
    inst = inst_mod.generate(40, arrivals="poisson", load=1.0, output_range=(50, 150), seed=0)
    assert not over(documented_sample(inst, 40), SHIPPED)
    rule = rules.BidPriceStationary(time_limit=0.05)
    with pytest.warns(RuntimeWarning, match="history window of 40 requests stopped before"):
        rule.prepare(inst)
    assert rule.price == 0.0 and rule.price_from == "zero" and rule.sample_size == 0
    with pytest.warns(RuntimeWarning, match="stopped before"):
        cost = bench.evaluate(inst, rule).cost
    assert cost == bench.evaluate(inst, rules.BidPriceStationary(price=0.0)).cost
    # learn itself still refuses a stopped LP: it is asked for that LP's price
    with pytest.raises(Exception, match="stopped before its optimum"):
        rules.BidPriceStationary.learn(inst, time_limit=0.05)


def test_a_stopped_offline_sample_lp_falls_back_too():
    # BidPrice's offline load-sample LP is the same kind of LP: stopped, price 0 and a warning
    inst = inst_mod.generate(200, seed=1)
    rule = rules.BidPrice(max_columns=1, sample_max_columns=200_000, time_limit=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rule.prepare(inst)
    if rule.price_from == "sample":  # a fast machine solved it within 0.01 s
        pytest.skip("the sample LP finished within 0.01 s here")
    assert rule.price_from == "zero" and rule.tail == 0.0 and rule.sample_size == 120
    assert any("load sample of 120 requests stopped before" in str(w.message) for w in caught)
