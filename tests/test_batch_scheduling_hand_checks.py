"""Batch scheduling: hand-worked checks added by mutation testing (round 2).

Each test says the hole it closes: a mutant of the simulator, a rule or the model that every
other test let through. Expected values are worked by hand in the comments, or come from a
brute-force count of the memory held in every future round."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from servopt.benchmarks import batch_scheduling as bench
from servopt.core import InvalidInstanceError
from servopt.instances.batch_scheduling import Instance, generate
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def make(kv, prompts, outputs, arrivals=None, predicted=None, max_batch=None) -> Instance:
    n = len(prompts)
    return Instance(kv_memory=kv, arrival=np.zeros(n, int) if arrivals is None else arrivals,
                    prompt_tokens=prompts, output_tokens=outputs, predicted_output=predicted,
                    max_batch=max_batch)


def state(*, kv, used=0, waiting=(), running=(), prompt, generated=None, predicted=None, arrival=None,
          t=0, max_batch=None) -> rules.State:
    n = len(prompt)
    return rules.State(t=t, kv_memory=kv, max_batch=max_batch, used=used,
                       waiting=np.asarray(waiting, dtype=np.int64),
                       running=np.asarray(running, dtype=np.int64),
                       generated=np.zeros(n, int) if generated is None else np.asarray(generated),
                       admitted_at=np.full(n, -1), prompt=np.asarray(prompt),
                       predicted=np.ones(n, int) if predicted is None else np.asarray(predicted),
                       arrival=np.zeros(n, int) if arrival is None else np.asarray(arrival))


# ---------------------------------------------------------------------------------------------
# simulator
# ---------------------------------------------------------------------------------------------
class EvictAll(rules.FCFS):
    """FCFS admission; on overflow every running request is preempted at once."""

    def preempt(self, state, excess):
        return state.running.copy()


def test_preemptions_count_every_request_evicted_in_a_round():
    # closes: a round's preemptions counted once whatever the number of victims.
    # M = 10, two requests (prompt 1, output 6) admitted at round 0: memory 4, 6, 8, 10; round 4
    # needs 12 and both are evicted (2 preemptions). Back in queue order (0 then 1), each needs
    # 1 + 4 + 1 = 6: only 0 fits (6, then 7 in round 5, done: latency 6); 1 joins at round 6
    # (6, 7; latency 8). Memory 4, 6, 8, 10, 6, 7, 6, 7.
    out = bench.simulate(make(10, [1, 1], [6, 6]), EvictAll())
    assert out["preemptions"] == 2
    assert out["latency"].tolist() == [6, 8]
    assert out["memory"].tolist() == [4, 6, 8, 10, 6, 7, 6, 7]
    assert bench.evaluate(make(10, [1, 1], [6, 6]), EvictAll()).metrics["preemptions"] == 2.0


class Greedy(rules.Policy):
    """Asks for every waiting request every round (the simulator refuses what does not fit)."""

    name = "greedy"

    def admit(self, state):
        return state.waiting


def test_refused_admissions_are_counted_one_by_one():
    # closes: refusals not counted. M = 10, prompts 4, 4, 4, output 1: round 0 admits 0 (5) and
    # refuses 1 (5 + 5 = 10 fits!) ... by hand: 0 needs 5, 1 needs 5 -> 10 <= 10 admitted, 2 needs
    # 5 -> 15 > 10 refused (1). Round 1: 2 admitted alone. Refused 1 in all; latencies 1, 1, 2.
    out = bench.simulate(make(10, [4, 4, 4], [1, 1, 1]), Greedy())
    assert out["refused"] == 1 and out["latency"].tolist() == [1, 1, 2]
    # a batch cap of 1: round 0 refuses 1 and 2, round 1 refuses 2: 3 refusals
    capped = bench.simulate(make(10, [4, 4, 4], [1, 1, 1], max_batch=1), Greedy())
    assert capped["refused"] == 3 and capped["latency"].tolist() == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# vLLM's rules (FCFS watermark, LIFO preemption) and SPF
# ---------------------------------------------------------------------------------------------
def test_lifo_preemption_evicts_no_more_than_the_excess_needs():
    # closes: one victim too many when the most recent requests free exactly the excess.
    # Running in admission order 0, 1, 2 holding 5, 4, 3 tokens (prompt + generated + 1)
    s = state(kv=12, used=12, running=[0, 1, 2], prompt=[4, 3, 2])
    policy = rules.FCFS()
    assert policy.preempt(s, 3).tolist() == [2]  # request 2 frees exactly 3
    assert policy.preempt(s, 4).tolist() == [2, 1]  # 3 is not enough: 3 + 4 = 7
    assert policy.preempt(s, 7).tolist() == [2, 1]
    assert policy.preempt(s, 8).tolist() == [2, 1, 0]


def test_vllm_default_watermark_is_one_percent_of_the_kv_blocks():
    # closes: another default watermark. vLLM's BlockSpaceManager(watermark=0.01) keeps
    # int(0.01 x blocks) free: here M = 1000 tokens -> 10. Request 0 holds 490 (prompt 489) in
    # round 0; request 1 (prompt 494, needs 495) leaves 1000 - 490 - 495 = 15 >= 10 free: admitted
    # at once (latency 1). With a 2% watermark (20 tokens) it would wait until round 2 (latency 3).
    inst = make(1000, [489, 494], [2, 1])
    for policy in (rules.FCFS(), rules.ShortestPredictedFirst()):
        assert policy.watermark == 0.01
        assert bench.simulate(inst, policy)["latency"].tolist() == [2, 1]
    assert bench.simulate(inst, rules.FCFS(watermark=0.02))["latency"].tolist() == [2, 3]


def test_an_empty_batch_takes_a_head_that_fills_the_memory_exactly():
    # closes: the empty-batch exception to the watermark refusing a request that needs exactly M.
    # M = 200 (watermark 2 tokens), nothing running, prompt 199: it holds 199 + 1 = 200 = M in its
    # only round, so it fits (latency 1); refusing it would leave it waiting for ever
    for policy in (rules.FCFS(), rules.ShortestPredictedFirst()):
        assert bench.simulate(make(200, [199], [1]), policy)["latency"].tolist() == [1]
        assert policy.admit(state(kv=200, waiting=[0], prompt=[199])).tolist() == [0]


def test_spf_orders_by_predicted_remaining_output_not_the_whole_prediction():
    # closes: SPF sorting by the prediction instead of what is left of it. M = 8, nothing running:
    # request 0 was preempted after 4 of its 5 predicted tokens (remaining 1, needs 2 + 4 + 1 = 7),
    # request 1 is new (predicted 3, needs 3). Shortest remaining first: 0, then 1 would make 10 > 8.
    s = state(kv=8, waiting=[1, 0], prompt=[2, 2], generated=[4, 0], predicted=[5, 3])
    assert rules.ShortestPredictedFirst(watermark=0.0).admit(s).tolist() == [0]


def test_spf_admits_a_request_that_fills_the_memory_exactly():
    # closes: the shortcut 'nothing passes the watermark' firing when the smallest request fits
    # exactly. M = 10, watermark int(0.01 x 10) = 0, 6 tokens in use (request 2 running): request 0
    # (1 round predicted, first) needs 4 = the 4 free tokens (free after = 0 >= 0): admitted;
    # request 1 (2 rounds, needs 5) is not.
    s = state(kv=10, used=6, waiting=[1, 0], running=[2], prompt=[3, 4, 5], predicted=[1, 2, 1])
    assert rules.ShortestPredictedFirst().admit(s).tolist() == [0]


def test_watermark_admission_stops_at_the_free_batch_slots():
    # closes: more requests asked for than the batch has slots. Cap 3, one running: 2 slots, and
    # memory for all four waiting
    s = state(kv=1000, used=10, waiting=[1, 2, 3, 4], running=[0], prompt=[9, 1, 1, 1, 1], max_batch=3)
    assert rules.FCFS().admit(s).tolist() == [1, 2]
    assert rules.FCFS().admit(state(kv=1000, waiting=[1, 2, 3, 4], prompt=[9, 1, 1, 1, 1])).tolist() == [
        1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# the look-ahead check of MC-SF and the bid-price rules, against brute force
# ---------------------------------------------------------------------------------------------
def held_by_brute_force(c_run, r_run, c_new, r_new, memory) -> bool:
    """Memory within ``memory`` in every future round k (a request with r rounds left holds
    c + k tokens while k < r), counted round by round."""
    horizon = max([r_new, *r_run])
    for k in range(horizon):
        held = sum(c + k for c, r in zip(c_run, r_run, strict=True) if r > k)
        held += c_new + k if r_new > k else 0
        if held > memory:
            return False
    return True


def test_the_lookahead_check_agrees_with_a_round_by_round_count():
    # closes: off-by-one in the completion offsets (r vs r - 1, > vs >=) of either form of the
    # check, and the candidate's own completion round left out. Every running set of up to 2
    # requests with c in 1..3, r in 1..4, candidates c, r in 1..4, memory 6, 9, 12: tight cases
    # (memory exactly reached at some round) are among them.
    values = range(1, 5)
    checked = tight = 0
    for size in range(0, 3):
        for run in itertools.product(itertools.product(range(1, 4), values), repeat=size):
            c_run = [c for c, _ in run]
            r_run = [r for _, r in run]
            for c_new, r_new, memory in itertools.product(values, values, (6, 9, 12)):
                want = held_by_brute_force(c_run, r_run, c_new, r_new, memory)
                assert rules._fits_one(c_run, r_run, c_new, r_new, memory) == want
                assert bool(model.fits(c_run, r_run, c_new, r_new, memory)) == want
                checked += 1
                tight += want and not held_by_brute_force(c_run, r_run, c_new, r_new, memory - 1)
    # the vectorised form checks many candidates at once: same answers
    c_run, r_run = [3, 2], [2, 4]
    cands = np.array(list(itertools.product(values, values)))
    got = model.fits(c_run, r_run, cands[:, 0], cands[:, 1], 12)
    assert got.tolist() == [held_by_brute_force(c_run, r_run, c, r, 12) for c, r in cands]
    assert checked > 1000 and tight > 50


def test_the_lookahead_check_of_more_than_16_running_requests():
    # closes: the large-batch branch of the fast check. 17 running requests holding 1 token with
    # 2 rounds left: 17 now, 34 next round; a candidate (c = 2, r = 1) adds 2 now: 19 then 34
    c_run, r_run = [1] * 17, [2] * 17
    assert held_by_brute_force(c_run, r_run, 2, 1, 34)
    assert rules._fits_one(c_run, r_run, 2, 1, 34) and not rules._fits_one(c_run, r_run, 2, 2, 34)
    assert not held_by_brute_force(c_run, r_run, 2, 2, 34)  # 34 + 3 at round 1


# ---------------------------------------------------------------------------------------------
# the bid-price rule's prices
# ---------------------------------------------------------------------------------------------
def test_the_tail_price_averages_the_busy_rounds_only():
    # closes: the tail averaged over the whole vector. Prices 0, 2, 4, 0, 0: the last positive one
    # is round 2, so the tail is (0 + 2 + 4) / 3 = 2 (not 6 / 5 = 1.2)
    rule = rules.BidPrice(np.array([0.0, 2.0, 4.0, 0.0, 0.0]))
    assert rule.tail == pytest.approx(2.0)
    assert rules.BidPrice(np.zeros(3)).tail == 0.0


def test_the_footprint_price_online_and_past_the_price_vector_by_hand():
    # closes: the online price dropping the growth term, or the rounds past the vector starting
    # from c instead of where the holding has grown to.
    # Online (no vector), tail 0.5: holding 3, 4, 5, 6 tokens -> 0.5 x 18 = 9
    online = rules.BidPrice(np.zeros(0), tail=0.5)
    assert online.footprint_price(7, np.array([3]), np.array([4]))[0] == pytest.approx(9.0)
    # vector 1, 1 then tail 2: from round 1, holding 3 (round 1 at price 1), then 4, 5 past the
    # vector at 2: 3 + 2 x 9 = 21
    rule = rules.BidPrice(np.array([1.0, 1.0]), tail=2.0)
    assert rule.footprint_price(1, np.array([3]), np.array([3]))[0] == pytest.approx(21.0)
    # from round 5 (all past the vector): 2 x (3 + 4) = 14
    assert rule.footprint_price(5, np.array([3]), np.array([2]))[0] == pytest.approx(14.0)


# ---------------------------------------------------------------------------------------------
# the model's horizon
# ---------------------------------------------------------------------------------------------
def test_the_no_idle_horizon_counts_from_the_last_arrival():
    # closes: the horizon A_max + sum o_i without its A_max. Requests of 1 round arriving at rounds
    # 0 and 10: any schedule ends at round 11 or later (request 1 cannot start before 10), so a
    # bound of sum o_i = 2 rounds would cut every schedule; A_max + sum o_i = 12 holds them
    inst = make(10, [1, 1], [1, 1], arrivals=[0, 10])
    assert model.no_idle_horizon(inst) == 12
    best = model.schedule_latency(inst, np.array([0, 10]))  # each runs on arrival: 1 + 1
    assert best == 2.0 and int(np.max(np.array([0, 10]) + inst.output_tokens)) <= model.no_idle_horizon(inst)


def test_the_pyomo_ip_defaults_to_the_safe_horizon_too():
    # closes: the Pyomo form of the IP built on the greedy makespan (5 rounds) by default, where it
    # parks a request in the late column and reports 10, below every real schedule. The instance
    # and its optimum 11 (brute force over the safe horizon) are those of
    # test_batch_scheduling.py::test_ip_default_horizon_gives_the_true_optimum_not_a_late_column
    from servopt.solvers import exact

    inst = make(7, [3, 5, 2, 3], [3, 1, 1, 1], arrivals=np.array([0, 1, 1, 3]))
    sol = exact.solve(inst, backend="pyomo")
    assert sol.info["form"] == "pyomo"
    assert sol.objective == pytest.approx(11.0) and sol.decisions["late"].max() < 1e-9


def test_the_bid_price_rules_default_patience_is_twice_the_predicted_output():
    # closes: another default patience. The module docstring's rule: skip a request that fails the
    # check unless it has waited more than 2 x its predicted output. M = 10; running: one request
    # holding 5 tokens, 3 rounds left (5, 6, 7). A (prompt 4, 2 rounds predicted) would hold 5, 6:
    # 12 next round -> fails; B (prompt 0, 3 rounds) holds 1, 2, 3: 6, 8, 10 -> fits. A arrived at
    # round 1; at round 4 it has waited 3 <= 2 x 2: skipped, B admitted. (With patience 1, 3 > 2.)
    s = state(kv=10, used=5, waiting=[1, 2], running=[0], prompt=[2, 4, 0], generated=[2, 0, 0],
              predicted=[5, 2, 3], arrival=[0, 1, 2], t=4)
    for rule in (rules.BidPrice(np.zeros(1), tail=0.0), rules.BidPriceStationary(price=0.0)):
        assert rule.patience == 2.0
        assert rule.admit(s).tolist() == [2]
    assert rules.BidPrice(np.zeros(1), tail=0.0, patience=1.0).admit(s).tolist() == []


def test_a_planned_schedule_is_replayed_and_a_wrong_length_refused():
    """Planned admits each request at its planned round: two requests of 2 + 3 tokens that
    cannot run together in 6 tokens of memory, planned one after the other, end at rounds 3 and
    6 (hand count: the first runs rounds 0-2, the second 3-5)."""
    inst = Instance(kv_memory=6, arrival=np.array([0, 0]), prompt_tokens=np.array([2, 2]),
                    output_tokens=np.array([3, 3]))
    out = bench.simulate(inst, rules.Planned(np.array([0, 3])))
    assert out["ttft"].tolist() == [1, 4] and out["latency"].tolist() == [3, 6]
    with pytest.raises(InvalidInstanceError, match="2 start rounds for 3 requests"):
        bench.evaluate(generate(3, seed=0), rules.Planned(np.array([0, 1])))
