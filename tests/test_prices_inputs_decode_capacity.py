"""Prices handed to the decode-routing and capacity rules from outside the simulator.

A saved solution may be edited (values) and re-sorted (rows are matched by label); a router may
be started by a live system without a request stream. Expected values are set by hand.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.core import InvalidInstanceError
from servopt.core.solution import Solution
from servopt.instances import capacity as cap_inst
from servopt.instances import decode_routing as inst_mod
from servopt.models import capacity as cap_model
from servopt.solvers import capacity as cap_rules
from servopt.solvers import decode_routing as routing
from servopt.solvers import exact


def priced(rho, sigma, kappa, order=None) -> Solution:
    """A hand-made epoch LP solution; ``order`` lists the rows of every family (default: sorted)."""
    rho = np.asarray(rho, dtype=float)
    G, H = rho.shape
    gh = pd.MultiIndex.from_product([range(G), range(H)], names=["worker", "step"])
    load = pd.Series(rho.ravel(), index=gh, name="worker_load")
    slots = pd.Series(np.asarray(sigma, dtype=float), index=pd.RangeIndex(G, name="worker"), name="slots")
    kv = pd.Series(np.asarray(kappa, dtype=float), index=pd.RangeIndex(G, name="worker"), name="kv_memory")
    if order is not None:  # a re-sorted file: the same labelled values in another row order
        load = load.iloc[::-1]
        slots, kv = slots.iloc[order], kv.iloc[order]
    return Solution(status="optimal", objective=0.0, bound=0.0, gap=0.0, wall_s=0.0, relaxed=True,
                    decision="decode_routing",
                    prices={"worker_load": load, "slots": slots, "kv_memory": kv})


def two_workers(prompts, arrivals) -> inst_mod.Instance:
    frame = pd.DataFrame({"arrival_s": np.asarray(arrivals, dtype=float), "prompt_tokens": prompts,
                          "output_tokens": [3] * len(prompts)})
    return inst_mod.Instance(workers=2, slots=8, kv_capacity=10_000, step_ms=1.0, ms_per_kv_token=0.01,
                             arrival_unit="step", requests=frame)


# -- decode routing: BidPrice.from_solution -------------------------------------------------------
@pytest.mark.parametrize("family, label", [("worker_load", "worker 1, step 0"), ("slots", "worker 1"),
                                           ("kv_memory", "worker 1")])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5])
def test_a_nan_infinite_or_negative_price_is_refused_naming_family_and_label(family, label, bad):
    rho, sigma, kappa = np.zeros((2, 1)), np.zeros(2), np.zeros(2)
    {"worker_load": rho[:, 0], "slots": sigma, "kv_memory": kappa}[family][1] = bad
    # old code: accepted, and every score on worker 1 is nan -> every request to worker 0
    expected = rf"{family} price for {label} is {bad!r}.*finite and >= 0"
    with pytest.raises(InvalidInstanceError, match=expected):
        routing.BidPrice.from_solution(priced(rho, sigma, kappa))


def test_a_nan_edited_into_a_saved_epoch_solution_is_refused(tmp_path):
    # the auditor's case: a solved epoch LP saved, one worker_load value edited to nan, loaded
    epoch_sol = priced([[0.002], [0.0]], [0.0, 1.0], [0.0, 0.0])
    epoch_sol.save(tmp_path / "ep")
    path = tmp_path / "ep" / "prices" / "slots.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",nan"  # worker 1's slot price
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInstanceError, match="slots price for worker 1 is nan"):
        routing.BidPrice.from_solution(Solution.load(tmp_path / "ep"))


def test_prices_are_read_by_worker_label_not_row_order(tmp_path):
    # H = 1, rho = 0.002 on worker 0 only, sigma = 1 ms on worker 1 only: by hand, a prompt s goes
    # to worker 0 when 0.002 s < 1 (s < 500) and to worker 1 when s > 500
    inst = two_workers([100, 800, 499, 501], arrivals=[0, 1, 2, 3])
    by_hand = [0, 1, 0, 1]
    resorted = routing.BidPrice.from_solution(priced([[0.002], [0.0]], [0.0, 1.0], [0.0, 0.0], order=[1, 0]))
    np.testing.assert_array_equal(resorted.fixed[1], [0.0, 1.0])  # sigma by worker label
    np.testing.assert_array_equal(resorted.fixed[0], [[0.002], [0.0]])
    assert bench.simulate(inst, resorted)["worker"].tolist() == by_hand
    # kappa the same way: kappa = 0.01 on worker 1 only, rho = 0.002 on worker 0: worker 0 costs
    # 0.002 s, worker 1 0.01 (s + 1) > 0.002 s -> worker 0 for every prompt (old code: the
    # re-sorted rows put kappa on worker 0 -> worker 1 for every prompt)
    kv = routing.BidPrice.from_solution(priced([[0.002], [0.0]], [0.0, 0.0], [0.0, 0.01], order=[1, 0]))
    np.testing.assert_array_equal(kv.fixed[2], [0.0, 0.01])
    assert bench.simulate(inst, kv)["worker"].tolist() == [0, 0, 0, 0]
    # the same through a saved folder whose CSV rows were re-sorted by hand
    priced([[0.002], [0.0]], [0.0, 1.0], [0.0, 0.0]).save(tmp_path / "ep")
    for family in ("slots", "kv_memory", "worker_load"):
        path = tmp_path / "ep" / "prices" / f"{family}.csv"
        head, *rows = path.read_text().splitlines()
        path.write_text("\n".join([head, *rows[::-1]]) + "\n")
    loaded = Solution.load(tmp_path / "ep")
    assert loaded.prices["slots"].index.tolist() == [1, 0]  # the file order is kept on load
    router = routing.BidPrice.from_solution(loaded)
    np.testing.assert_array_equal(router.fixed[1], [0.0, 1.0])
    assert bench.simulate(inst, router)["worker"].tolist() == by_hand


def test_missing_extra_and_repeated_labels_are_refused():
    good = priced(np.zeros((2, 2)), [0.0, 0.0], [0.0, 0.0])
    gh = good.prices["worker_load"].index
    # worker_load: (0, 1) twice and (1, 0) missing (right row count: old code left rho[1, 0] = 0)
    twice = pd.Series([0.0, 0.1, 0.2, 0.0], index=gh[[0, 1, 1, 3]])
    sol = Solution(**{**vars(good), "prices": {**good.prices, "worker_load": twice}})
    with pytest.raises(InvalidInstanceError, match=r"worker_load prices label .* \(0, 1\) twice"):
        routing.BidPrice.from_solution(sol)
    for family, labels in (("slots", [0, 2]), ("kv_memory", [1, 1]), ("slots", [0, 1, 2])):
        series = pd.Series(np.zeros(len(labels)), index=pd.Index(labels, name="worker"))
        sol = Solution(**{**vars(good), "prices": {**good.prices, family: series}})
        with pytest.raises(InvalidInstanceError, match=family):
            routing.BidPrice.from_solution(sol)
    text = pd.Series([0.0, 0.0], index=pd.Index(["a", "b"], name="worker"))
    with pytest.raises(InvalidInstanceError, match="whole numbers"):
        routing.BidPrice.from_solution(Solution(**{**vars(good), "prices": {**good.prices, "slots": text}}))


def test_from_solution_docstring_warns_of_stale_prices_first():
    head = routing.BidPrice.from_solution.__doc__.split("\n\n")[1]
    assert "stale" in head.lower() and "bid_price" in head


# -- decode routing: simulate and Router.reset ----------------------------------------------------
def test_simulate_accepts_a_policies_name_and_refuses_an_unknown_one():
    inst = inst_mod.generate(requests=60, workers=3, seed=4)
    by_name = bench.simulate(inst, "least_kv")  # old code: AttributeError 'str' has no 'reset'
    by_object = bench.simulate(inst, routing.LeastKV())
    np.testing.assert_array_equal(by_name["worker"], by_object["worker"])
    assert by_name["cost"] == by_object["cost"]
    with pytest.raises(InvalidInstanceError) as from_simulate:
        bench.simulate(inst, "least_kvv")
    with pytest.raises(InvalidInstanceError) as from_evaluate:
        bench.evaluate(inst, "least_kvv")
    assert str(from_simulate.value) == str(from_evaluate.value)
    with pytest.raises(InvalidInstanceError, match="Instance"):
        bench.simulate("least_kv", inst)


class _StandIn:
    """Only what the module docstring says ``reset`` reads: any other attribute raises."""

    __slots__ = ("ms_per_kv_token", "predicted", "workers")

    def __init__(self, instance: inst_mod.Instance) -> None:
        self.workers, self.ms_per_kv_token = instance.workers, instance.ms_per_kv_token
        self.predicted = None if instance.predicted is None else True  # only its None-ness


@pytest.mark.parametrize("predictions", [False, True])
@pytest.mark.parametrize("name", sorted(routing.POLICIES))
def test_routers_start_from_workers_price_and_prediction_flag_alone(name, predictions):
    inst = inst_mod.generate(requests=30, workers=3, seed=2, load=0.9,
                             **({"prediction_error": 0.3} if predictions else {}))
    assert (inst.predicted is not None) == predictions
    reference = bench.simulate(inst, routing.make_router(name))["worker"]
    router = routing.make_router(name)
    real_reset = router.reset
    router.reset = lambda instance, seed=0: real_reset(_StandIn(instance), seed)
    np.testing.assert_array_equal(bench.simulate(inst, router)["worker"], reference)


def test_the_documented_live_start_works():
    router = routing.make_router("bid_price")
    router.reset(types.SimpleNamespace(workers=8, ms_per_kv_token=0.01, predicted=None))
    assert router.book is not None  # no predictions: the load-book forecast


# -- capacity: plan_from_solution -------------------------------------------------------------------
def _edit(folder, family, value, kind="prices"):
    path = folder / kind / f"{family}.csv"
    head, first, *rest = path.read_text().splitlines()
    path.write_text("\n".join([head, first.rsplit(",", 1)[0] + f",{value}", *rest]) + "\n")


@pytest.fixture(scope="module")
def capacity_case():
    inst = cap_inst.generate()
    return inst, exact.solve(inst)


def test_capacity_plan_from_a_clean_saved_solution_names_the_closed_form_binding(capacity_case, tmp_path):
    inst, sol = capacity_case
    sol.save(tmp_path / "cap")
    plan = cap_rules.plan_from_solution(inst, Solution.load(tmp_path / "cap"))
    bounds = cap_model.bounds(inst)  # the closed-form bounds, independent of the LP's duals
    assert plan.binding == bounds.binding
    assert plan.max_stable_rate == pytest.approx(bounds.max_stable_rate, rel=1e-6)
    assert np.isfinite(plan.price) and plan.price > 0


@pytest.mark.parametrize("family", ["kv_memory", "batch_slots", "token_budget", "busy_time"])
@pytest.mark.parametrize("bad", ["nan", "inf", "-0.25"])
def test_capacity_plan_refuses_a_bad_price(capacity_case, tmp_path, family, bad):
    # old code: nan in kv_memory named 'memory' with price nan, nan in batch_slots 'memory' with
    # price 0.0 (the binding resource is 'slots' by the closed-form bounds)
    inst, sol = capacity_case
    sol.save(tmp_path / "cap")
    _edit(tmp_path / "cap", family, bad)
    if bad == "-0.25":  # a negative price loads (a valid number) and the rule refuses it
        with pytest.raises(InvalidInstanceError, match=rf"{family} price is -0.25.*finite and >= 0"):
            cap_rules.plan_from_solution(inst, Solution.load(tmp_path / "cap"))
    else:  # nan / inf are never prices: refused on loading, naming the file
        with pytest.raises(InvalidInstanceError,
                           match=rf"{family}.csv: the {family} price is {float(bad)!r}.*finite number"):
            Solution.load(tmp_path / "cap")


@pytest.mark.parametrize("decision", ["theta", "r"])
def test_capacity_plan_refuses_a_nan_decision_and_a_nan_objective(capacity_case, tmp_path, decision):
    inst, sol = capacity_case
    sol.save(tmp_path / "cap")
    _edit(tmp_path / "cap", decision, "nan", kind="decisions")
    with pytest.raises(InvalidInstanceError, match=rf"{decision} decision is nan"):
        cap_rules.plan_from_solution(inst, Solution.load(tmp_path / "cap"))
    sol.save(tmp_path / "obj")
    meta = json.loads((tmp_path / "obj" / "solution.json").read_text())
    meta["objective"] = -1.0
    (tmp_path / "obj" / "solution.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInstanceError, match="objective"):
        cap_rules.plan_from_solution(inst, Solution.load(tmp_path / "obj"))


def test_capacity_plan_refuses_a_missing_price(capacity_case):
    inst, sol = capacity_case
    prices = {k: v for k, v in sol.prices.items() if k != "batch_slots"}
    with pytest.raises(InvalidInstanceError, match="no batch_slots price"):
        cap_rules.plan_from_solution(inst, Solution(**{**vars(sol), "prices": prices}))
