"""Expert placement: hand-checked values where a changed line went unnoticed (found by mutation testing).

Each test names the mutant it kills; the expected numbers are hand calculations on tiny instances.
"""

from __future__ import annotations

import numpy as np
import pytest

from servopt.benchmarks import expert_placement as bench
from servopt.core import InvalidInstanceError
from servopt.instances.expert_placement import Instance
from servopt.solvers import expert_placement as sv


def test_gap_same_counts_the_migration_cost_by_hand():
    # kills: gap_same computed from the planned window's makespan alone (migrations left out).
    # Planned window 6, 2, 2; next window 1, 1, 10; 2 GPUs x 2 slots; previous GPU 0: experts 1, 2,
    # GPU 1: expert 0; migration cost 1 token per moved replica. no_replication packs the planned
    # window as expert 0 -> GPU 0, experts 1, 2 -> GPU 1: all 3 replicas move (cost 3).
    # Next window: GPU times 1 and 11 -> cost 11 + 3 = 14. Planned window: times 6 and 4; the spare
    # slot lets expert 0 split, so its bound is total / GPUs = 10 / 2 = 5; planned-window cost
    # 6 + 3 = 9 -> gap_same = 9 / 5 - 1 = 0.8 (0.2 without the migrations).
    prev = np.array([[1, 2, 0, -1]])
    inst = Instance(loads=np.array([[[6.0, 2.0, 2.0]], [[1.0, 1.0, 10.0]]]), num_nodes=1,
                    gpus_per_node=2, slots_per_gpu=2, previous_placement=prev, migration_cost=1.0)
    out = bench.evaluate(inst, "no_replication")
    assert out.metrics["migrations"] == 3
    assert out.cost == pytest.approx(14.0)
    assert out.metrics["gap_same"] == pytest.approx(0.8)


def test_a_dispatch_that_loses_a_tenth_of_a_percent_of_tokens_is_refused():
    # kills: the served-tokens check loosened to 1% (rtol=1e-2). Expert 0 has 1000 tokens on slots
    # 0 and 2, expert 1 has 2 on slot 1. A dispatch sending 499 + 500 serves 999 of 1000: a rule
    # that drops one token in a thousand would be scored on fewer tokens than the window has.
    phy2log = np.array([[0, 1, 0, -1]])
    w = np.array([[1000.0, 2.0]])
    bench._check_flows(np.array([[500.0, 2.0, 500.0, 0.0]]), phy2log, w)  # exact: accepted
    with pytest.raises(InvalidInstanceError, match="every expert"):
        bench._check_flows(np.array([[499.0, 2.0, 500.0, 0.0]]), phy2log, w)


def test_tight_prices_are_normalised_by_gpu_speed_like_the_lp_duals():
    # kills: tight_prices normalised by the number of tight GPUs instead of sum_g s_g pi_g = 1.
    # One expert (8 tokens) on a GPU of speed 1 and one of speed 3: the LP dispatch gives both GPU
    # time 2 and duals (1/4, 1/4) (hand calculation in test_dispatch_lp_with_gpu_speeds_by_hand);
    # the prices read off the tight GPUs must be the same, not (1/2, 1/2).
    speed = np.array([1.0, 3.0])
    np.testing.assert_allclose(sv.tight_prices(np.array([[2.0, 2.0]]), speed), [[0.25, 0.25]])
    flows, _, lp_price = sv.lp_dispatch(np.array([[0, 1, 0, -1]]), np.array([[8.0, 0.0]]), 2, speed)
    np.testing.assert_allclose(sv.tight_prices(sv.gpu_times(flows, 2, speed), speed), lp_price,
                               atol=1e-9)
    # a GPU below the maximum gets no price: times 2, 1 on speeds 1, 3 -> (1, 0)
    np.testing.assert_allclose(sv.tight_prices(np.array([[2.0, 1.0]]), speed), [[1.0, 0.0]])


@pytest.mark.parametrize("bad", [4, -2])
def test_previous_placement_ids_are_checked_at_the_boundary(bad):
    # kills: 'prev >= experts' loosened to 'prev > experts' (the existing case used id 7 of 4). With
    # 4 experts the ids are 0..3 and -1 (empty slot): 4 and -2 name no expert and must be refused,
    # while 3 and -1 are accepted.
    ok = np.array([[0, 1, 2, 3, -1, -1, -1, -1]])
    Instance(loads=np.ones((1, 1, 4)), previous_placement=ok)
    prev = ok.copy()
    prev[0, 4] = bad
    with pytest.raises(InvalidInstanceError, match=r"expert ids in 0\.\.3 or -1"):
        Instance(loads=np.ones((1, 1, 4)), previous_placement=prev)


def test_the_milp_bound_is_used_up_to_exactly_milp_max_binaries():
    # kills: 'at most milp_max_binaries binaries per layer' read as 'fewer than'. Planned window
    # 3, 3, 3, 3; next window 10, 1, 1, 1; 2 GPUs x 2 slots (test_bound_uses_the_scored_window_by_hand):
    # the combinatorial bound is 10, the hindsight MILP proves 11. 4 experts x 2 GPUs = 8 binaries.
    inst = Instance(loads=np.array([[[3.0, 3.0, 3.0, 3.0]], [[10.0, 1.0, 1.0, 1.0]]]),
                    num_nodes=1, gpus_per_node=2, slots_per_gpu=2)
    at_limit = bench.bound(inst, milp_time_limit=5, milp_max_binaries=8)
    assert (at_limit.value, at_limit.kind) == (pytest.approx(11.0), "optimal")
    over = bench.bound(inst, milp_time_limit=5, milp_max_binaries=7)
    assert (over.value, over.kind) == (pytest.approx(10.0), "lower_bound")


def test_a_replicated_expert_takes_the_price_of_its_cheapest_gpu():
    # kills: an expert's price read from the most expensive GPU hosting it instead of the cheapest
    # (its demand dual; the existing hand case hosts every expert on one GPU only).
    # Risk-weighted loads 7, 6, 3 as in test_bid_price_bids_by_hand (kappa 0.5). The previous
    # placement has expert 0 on both GPUs (GPU 0: experts 0, 1; GPU 1: experts 0, 2); prices
    # pi = (1, 0). Expert prices x sum of speeds (2): e0 min(1, 0) x 2 = 0, e1 2, e2 0, so the bids
    # (price_weight 0.5) are 7 x 0.5 = 3.5, 6 x (0.5 + 1) = 9, 3 x 0.5 = 1.5: the extra replica goes
    # to expert 1. With e0 priced at its dearer GPU (2) its bid would be 7 x 1.5 = 10.5.
    inst = Instance(loads=np.array([[[1.0, 6.0, 5.0]], [[5.0, 6.0, 1.0]], [[4.0, 4.0, 4.0]]]),
                    num_nodes=1, gpus_per_node=2, slots_per_gpu=2,
                    previous_placement=np.array([[0, 1, 0, 2]]))
    plan = sv.BidPrice(gpu_price=np.array([[1.0, 0.0]]))(inst)
    assert plan.info["count"].tolist() == [[1, 2, 1]]
