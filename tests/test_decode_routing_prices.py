"""``BidPrice.from_solution``: the textbook bid-price rule with the fixed prices of an epoch LP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.core import InvalidInstanceError
from servopt.core.solution import Solution
from servopt.instances import decode_routing as inst_mod
from servopt.models import decode_routing as model
from servopt.solvers import decode_routing as routing
from servopt.solvers import exact


def priced(rho, sigma, kappa, **kw) -> Solution:
    """A hand-made epoch LP solution: rho (G, H), sigma (G,), kappa (G,)."""
    rho = np.asarray(rho, dtype=float)
    G, H = rho.shape
    gh = pd.MultiIndex.from_product([range(G), range(H)], names=["worker", "step"])
    worker = pd.RangeIndex(G, name="worker")
    args = dict(status="optimal", objective=0.0, bound=0.0, gap=0.0, wall_s=0.0, relaxed=True,
                decision="decode_routing",
                prices={"worker_load": pd.Series(rho.ravel(), index=gh),
                        "slots": pd.Series(np.asarray(sigma, dtype=float), index=worker),
                        "kv_memory": pd.Series(np.asarray(kappa, dtype=float), index=worker)})
    args.update(kw)
    return Solution(**args)


def two_workers(prompts, arrivals=None) -> inst_mod.Instance:
    n = len(prompts)
    frame = pd.DataFrame({"arrival_s": arrivals if arrivals is not None else np.arange(n, dtype=float),
                          "prompt_tokens": prompts, "output_tokens": [3] * n})
    return inst_mod.Instance(workers=2, slots=8, kv_capacity=10_000, step_ms=1.0, ms_per_kv_token=0.01,
                             arrival_unit="step", requests=frame)


def test_hand_set_prices_give_the_known_routing():
    # H = 1: a new request's profile is its prompt s (alive at h = 0 with probability 1), so
    # worker 0 costs 0.002 s ms and worker 1 a flat 1 ms: s < 500 -> 0, s > 500 -> 1, s = 500 a tie
    # that goes to the worker with fewer KV tokens
    router = routing.BidPrice.from_solution(priced([[0.002], [0.0]], [0.0, 1.0], [0.0, 0.0]))
    inst = two_workers([100, 800, 499, 501, 500, 500], arrivals=[0, 1, 2, 3, 10, 10])
    worker = bench.simulate(inst, router)["worker"]
    # at step 10 both workers are empty again (outputs of 3 tokens): the first 500 goes to worker
    # 0 (lowest index), the second to worker 1 (worker 0 now holds 500 queued tokens)
    assert worker.tolist() == [0, 1, 0, 1, 0, 1]
    assert router.name == "bid_price_fixed"


def test_kv_price_and_horizon_enter_the_score():
    # H = 2 with survival 1 - 1/128 at h = 1 under the default prior (no request finished yet):
    # rho only on worker 1 at h = 1, kappa only on worker 0: worker 0 costs 0.01 (s + 1), worker 1
    # 0.02 (s + 1) (1 - 1/128) -> worker 0 for every prompt
    router = routing.BidPrice.from_solution(priced([[0.0, 0.0], [0.0, 0.02]], [0.0, 0.0], [0.01, 0.0]))
    inst = two_workers([10, 2000, 300])
    assert bench.simulate(inst, router)["worker"].tolist() == [0, 0, 0]
    # the same with kappa 0.03 on worker 0: 0.03 (s + 1) > 0.02 (s + 1) S(1) -> worker 1
    router = routing.BidPrice.from_solution(priced([[0.0, 0.0], [0.0, 0.02]], [0.0, 0.0], [0.03, 0.0]))
    assert bench.simulate(inst, router)["worker"].tolist() == [1, 1, 1]


def test_from_a_solved_epoch_lp():
    # worker 0 carries 1000 tokens, worker 1 none: the LP's barrier price sits on worker 0, so the
    # request goes to worker 1, as the epoch LP's own plan does
    epoch = model.Epoch(base_load=[[1000.0, 900.0], [0.0, 0.0]], profile=[[400.0, 380.0]], demand=[1.0],
                        kv_need=[401.0], free_slots=[4, 4], free_kv=[5000, 5000], ms_per_kv_token=0.01,
                        discount=0.8)
    sol = exact.solve_model(model.build_epoch(epoch, relax=True), relax=True, decision="decode_routing")
    router = routing.BidPrice.from_solution(sol)
    rho = router.fixed[0]
    assert rho.shape == (2, 2)
    assert rho[0] == pytest.approx([0.01, 0.008])  # gamma^h c1 on the barrier worker
    assert rho[1] == pytest.approx([0.0, 0.0])
    inst = two_workers([400])
    assert bench.simulate(inst, router)["worker"].tolist() == [1]
    # the CVXPY twin gives the same prices
    cvx = exact.solve_cvxpy(model.build_epoch_cvxpy(epoch), decision="decode_routing")
    np.testing.assert_allclose(routing.BidPrice.from_solution(cvx).fixed[0], rho, atol=1e-7)


def test_refuses_a_mip_another_decision_and_the_hindsight_model():
    epoch = model.Epoch(base_load=[[10.0], [0.0]], profile=[[5.0]], demand=[1.0], kv_need=[6.0],
                        free_slots=[1, 1], free_kv=[100, 100], ms_per_kv_token=0.01)
    mip = exact.solve_model(model.build_epoch(epoch, relax=False), decision="decode_routing")
    with pytest.raises(InvalidInstanceError, match="relax=True"):
        routing.BidPrice.from_solution(mip)
    with pytest.raises(InvalidInstanceError, match="'caching' solution"):
        routing.BidPrice.from_solution(priced([[1.0]], [0.0], [0.0], decision="caching"))
    with pytest.raises(InvalidInstanceError, match="decode_routing epoch LP"):
        routing.BidPrice.from_solution({"worker_load": 1})
    inst = inst_mod.Instance(workers=2, slots=4, kv_capacity=1000, step_ms=1.0, ms_per_kv_token=0.01,
                             arrival_unit="step", requests=pd.DataFrame(
                                 {"arrival_s": [0.0, 0.0, 1.0], "prompt_tokens": [10, 20, 30],
                                  "output_tokens": [2, 3, 1]}))
    hindsight = exact.solve(inst, relax=True)
    with pytest.raises(InvalidInstanceError, match="step_load"):
        routing.BidPrice.from_solution(hindsight)
    # prices for 2 workers on a 3-worker fleet
    router = routing.BidPrice.from_solution(priced([[0.0], [0.0]], [0.0, 0.0], [0.0, 0.0]))
    three = inst_mod.Instance(**{**two_workers([5]).__dict__, "workers": 3})
    with pytest.raises(InvalidInstanceError, match="3"):
        bench.simulate(three, router)


@pytest.mark.parametrize("backend", ["highs", "pyomo", "cvxpy"])
def test_step_prices_and_the_floor_price_sum_to_one_at_every_step(backend):
    # the u_k column (objective coefficient 1) prices out: sum_g step_load[g,k] + step_floor[k]
    # = 1, and the floor's price is 0 where the barrier is above the floor (complementary
    # slackness); on this stream the floor binds on many steps, so both cases occur
    inst = inst_mod.generate_steps(requests=40, workers=3, seed=2)
    sol = exact.solve(inst, relax=True, backend=backend)
    load = sol.prices["step_load"].groupby(level="step").sum().to_numpy()
    floor_price = sol.prices["step_floor"].to_numpy()
    np.testing.assert_allclose(load + floor_price, 1.0, atol=1e-6)
    above = sol.decisions["u"].to_numpy() > model.step_floor(inst) + 1e-6
    assert above.any() and (~above).any()
    np.testing.assert_allclose(floor_price[above], 0.0, atol=1e-6)


def test_the_gated_router_keeps_its_last_epoch_for_labelled_prices():
    inst = inst_mod.generate(workload="conversation", workers=3, requests=60, load=0.9, seed=1)
    router = routing.make_router("bid_price_lp")
    assert router.epoch is None
    bench.simulate(inst, router)
    epoch = router.epoch
    assert router.solves >= 1 and isinstance(epoch, model.Epoch)
    assert epoch.base_load.shape == (3, router.horizon)
    # the router's last plan came from this epoch: Pyomo and CVXPY solve it to the same value,
    # and the Pyomo prices are labelled by worker and horizon step
    pyo_sol = exact.solve_model(model.build_epoch(epoch, relax=True), relax=True, decision="decode_routing")
    cvx_sol = exact.solve_cvxpy(model.build_epoch_cvxpy(epoch))
    assert pyo_sol.objective == pytest.approx(cvx_sol.objective, rel=1e-6)
    assert list(pyo_sol.prices["worker_load"].index.names) == ["worker", "step"]
    assert len(pyo_sol.prices["worker_load"]) == 3 * router.horizon
    # the plan the router kept is that epoch's optimum: same planned requests per worker in total
    assert router.share.sum() == pytest.approx(float(epoch.demand.sum()))
