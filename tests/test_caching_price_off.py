"""Caching's bid-price rule solves no window LP while its price scale is 0 (R50 F3).

With ``price_scale`` 0 the admission threshold is -inf, so a window price could change no
decision; the rule used to solve every window LP anyway (three of four a run, a third of its
time). Truth: the number of ``solve_lp`` calls counted by a spy, and the decisions of the same rule
without a price (``cost_freq_size``), simulated by the evaluator."""

from __future__ import annotations

from servopt.benchmarks import caching as bench
from servopt.instances import caching as ci
from servopt.solvers import caching as cs


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = cs.solve_lp

    def spy(instance, **kw):
        calls.append(len(instance.object_id))
        return real(instance, **kw)

    monkeypatch.setattr(cs, "solve_lp", spy)
    return calls


def test_a_rule_given_scale_zero_solves_no_lp_and_decides_as_without_a_price(monkeypatch):
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=2)
    calls = _counting(monkeypatch)
    rule = cs.BidPrice(warmup=0.2, refresh=0.2, tune=False, price_scale=0.0, experts=cs.EXPERTS)
    priced = bench.simulate(inst, rule, record=True)
    assert calls == []  # windows at 600, 1200, 1800, 2400: none solved
    assert [t for t, _ in rule.prices] == [0, 600, 1200, 1800, 2400]
    assert all(price == 0 for _, price in rule.prices)
    plain = bench.simulate(inst, cs.make_policy("cost_freq_size"), record=True)
    assert priced.hit.tolist() == plain.hit.tolist() and priced.miss_cost == plain.miss_cost


def test_a_warm_up_that_chooses_scale_zero_solves_its_lp_once(monkeypatch):
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=2)
    calls = _counting(monkeypatch)
    rule = cs.make_policy("bid_price")  # warm-up 0.2 n = 600 requests, refreshed every 600
    bench.simulate(inst, rule)
    assert rule.price_scale == 0  # (what the warm-up replay chose here; the premise)
    assert calls == [600]  # the warm-up's LP (for the tuning), and no window after it


def test_a_priced_rule_still_solves_every_window(monkeypatch):
    inst = ci.generate(requests=3000, objects=600, cache_share=0.02, seed=2)
    calls = _counting(monkeypatch)
    bench.simulate(inst, cs.make_policy("bid_price_window"))  # scale 1 at face value
    assert calls == [600, 600, 600, 600]
