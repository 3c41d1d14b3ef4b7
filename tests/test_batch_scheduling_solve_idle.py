"""``servopt.solve`` on a batch instance with a long idle stretch: the model is built with its idle
stretches cut short, each part's runs capped to end by the next part's first arrival, and
answered in the instance's rounds (``model_clock``). Before, arrivals [0, 1e7, 1e7] built 1e7
memory rows and 1e7 start columns (the OOM killer). Truth: brute force on each part (parts
never meet in an optimal schedule) and hand counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_batch_scheduling import brute_force as brute_force_within

import servopt
from servopt.core import InvalidInstanceError
from servopt.instances.batch_scheduling import Instance
from servopt.models import batch_scheduling as model

GAP = Instance(kv_memory=100, arrival=np.array([0, 10**7, 10**7]),
               prompt_tokens=np.array([10, 10, 10]), output_tokens=np.array([3, 3, 3]))


def test_the_model_of_the_audit_instance_is_small():
    # counted without building: before, about 3e7 nonzeros (1e7 start columns of request 0)
    assert model.time_estimate(GAP)["nonzeros"] < 100
    short, clock = model.model_clock(GAP, "safe")
    assert short.arrival.tolist() == [0, 3, 3] and clock.shift.tolist() == [0, 10**7 - 3, 10**7 - 3]


@pytest.mark.parametrize("kw", [{}, {"time_limit": 5.0}, {"backend": "pyomo"}, {"window": 5}])
def test_solve_across_1e7_idle_rounds(kw):
    # each request runs at its arrival (10 + 3 tokens, three at once: 39 <= 100): 3 x 3 = 9
    sol = servopt.solve(GAP, **kw)
    assert sol.status == "optimal" and sol.objective == 9.0
    assert sol.decisions["start"].tolist() == [0, 10**7, 10**7]
    assert sol.info.get("rows", 0) < 100


def test_the_lp_prices_are_labelled_by_the_instance_rounds():
    sol = servopt.solve(GAP, relax=True)
    assert sol.status == "optimal" and sol.objective == 9.0
    # the modelled rounds only: 0..2 and 1e7..1e7+2 (the cut stretch has no memory row)
    assert sol.prices["kv_memory"].index.tolist() == [0, 1, 2, 10**7, 10**7 + 1, 10**7 + 2]
    assert sol.prices["kv_memory"].index.name == "round"


def parts(seed: int) -> list[Instance]:
    rng = np.random.default_rng(seed)

    def part() -> Instance:
        n = int(rng.integers(1, 3))
        return Instance(kv_memory=12, arrival=rng.integers(0, 3, n),
                        prompt_tokens=rng.integers(1, 7, n), output_tokens=rng.integers(1, 4, n))
    return [part() for _ in range(3)]


def joined(pieces: list[Instance], gaps: list[int]) -> Instance:
    """The parts one after another, each ``gap`` rounds after the one before can end (its last
    arrival + its outputs): no optimal schedule lets them meet."""
    arrival, offset = [], 0
    for k, piece in enumerate(pieces):
        arrival.append(piece.arrival + offset)
        offset += int(piece.arrival.max() + piece.output_tokens.sum()) + (gaps[k] if k < len(gaps) else 0)
    cat = lambda name: np.concatenate([getattr(p, name) for p in pieces])  # noqa: E731
    return Instance(kv_memory=12, arrival=np.concatenate(arrival), prompt_tokens=cat("prompt_tokens"),
                    output_tokens=cat("output_tokens"))


def brute_force(piece: Instance) -> float:
    return brute_force_within(piece, int(piece.arrival.max() + piece.output_tokens.sum()))


@pytest.mark.parametrize("seed", range(4))
def test_cut_model_matches_brute_force_part_by_part(monkeypatch, seed):
    # cut short from a few rounds on (IDLE_ROUNDS 0), so brute force can check the optimum
    monkeypatch.setattr(model, "IDLE_ROUNDS", 0)
    pieces = parts(seed)
    inst = joined(pieces, [5, 40])
    truth = sum(brute_force(p) for p in pieces)
    _, clock = model.model_clock(inst, "safe")
    assert len(clock.shifts) >= 3  # three parts at least (a part may split further), each moved
    for kw in ({}, {"backend": "pyomo"}):
        sol = servopt.solve(inst, mip_gap=0.0, **kw)
        assert sol.status == "optimal" and sol.objective == truth
        start = sol.decisions["start"].to_numpy()
        assert model.is_feasible(inst, start) and model.schedule_latency(inst, start) == truth
    lp = servopt.solve(inst, relax=True)
    assert lp.objective <= truth + 1e-9
    # a window keeps the IP a lower bound (late columns), exact once it reaches every start
    assert servopt.solve(inst, window=0, mip_gap=0.0).objective <= truth
    assert servopt.solve(inst, window=20, mip_gap=0.0).objective == truth
    labels = lp.prices["kv_memory"].index.to_numpy()
    assert np.all(np.diff(labels) > 0) and labels[0] == inst.arrival.min()


@pytest.mark.parametrize("seed", range(4))
def test_every_start_column_ends_before_the_next_part_arrives(monkeypatch, seed):
    # the cap that makes any schedule of the cut model (a stopped solve's incumbent too) a
    # schedule of the instance once moved back: a run of part k ends by part k + 1's arrival
    monkeypatch.setattr(model, "IDLE_ROUNDS", 0)
    pieces = parts(seed)
    inst = joined(pieces, [5, 40])
    sizes = np.cumsum([p.n for p in pieces])
    part = np.searchsorted(sizes, np.arange(inst.n), side="right")
    first = np.array([inst.arrival[part == k].min() for k in range(3)])
    mm = model.build_matrix_model(inst)
    x = mm.columns["x"].index
    request, rounds = x.get_level_values("request").to_numpy(), x.get_level_values("round").to_numpy()
    ends = rounds + inst.output_tokens[request]
    nxt = part[request] + 1
    inside = nxt < 3
    assert np.all(ends[inside] <= first[nxt[inside]])
    assert np.all(rounds >= inst.arrival[request])  # labelled in the instance's rounds


def test_the_rows_are_counted_before_building(monkeypatch):
    # one request, a chosen horizon of 2e7 rounds and a window of 0: one start column, 3 entries,
    # but 2e7 memory rows, refused by name (a chosen horizon is not cut short)
    inst = Instance(kv_memory=100, arrival=np.array([0]), prompt_tokens=np.array([10]),
                    output_tokens=np.array([3]))
    with pytest.raises(InvalidInstanceError, match="20,000,000 rounds"):
        servopt.solve(inst, horizon=2 * 10**7, window=0)
    assert math.isfinite(servopt.solve(inst).objective)


def test_bid_price_rules_from_the_lp_of_a_stream_with_a_cut_idle_stretch():
    # review R10: from_solution refused the prices of an LP whose idle stretch was cut (its
    # rounds jump from 5 to 2,000,000). The cut rounds are idle (price 0); the prices of the
    # two busy parts equal those of the same stream with a short gap (no cut), shifted.
    from servopt.solvers.batch_scheduling import BidPrice, BidPriceStationary

    def stream(gap):
        return Instance(kv_memory=12, arrival=np.array([0, 1, gap, gap]),
                        prompt_tokens=np.array([5, 4, 6, 3]), output_tokens=np.array([3, 2, 3, 2]))

    cut = servopt.solve(stream(2_000_000), relax=True).prices["kv_memory"]
    near = servopt.solve(stream(10), relax=True).prices["kv_memory"]
    assert cut.index[-1] == 2_000_003 and len(cut) < 20  # cut short
    rule = BidPrice.from_solution(servopt.solve(stream(2_000_000), relax=True))
    assert len(rule.prices) == 2_000_004 and rule.origin == 0
    assert np.allclose(rule.prices[:6], near.loc[0:5]) and not rule.prices[6:2_000_000].any()
    assert np.allclose(rule.prices[2_000_000:], near.loc[10:13])
    stationary = BidPriceStationary.from_solution(servopt.solve(stream(2_000_000), relax=True))
    busy = np.concatenate([near.loc[0:5].to_numpy(), near.loc[10:13].to_numpy()])
    last = np.flatnonzero(busy > 0)[-1]
    assert stationary.price == pytest.approx(busy[: last + 1].mean())  # over the busy rounds
