"""R22's API consistency on the evaluators, solvers and models: every metric an evaluator returns
is documented with its unit in its ``evaluate`` docstring (and nothing else is), the metrics that
mixed units get names carrying them, the names and docstrings the audit found missing exist, and
what the docstrings say about options matches the signatures."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import numpy as np
import pytest

import servopt
from servopt.benchmarks import batch_scheduling as bb
from servopt.benchmarks import caching as bc
from servopt.benchmarks import expert_placement as be
from servopt.benchmarks.harness import Outcome
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as ib
from servopt.instances import caching as ic
from servopt.instances import capacity as icap
from servopt.instances import decode_routing as idr
from servopt.instances.expert_placement import Instance as ExpertInstance
from servopt.solvers import batch_scheduling as sb
from servopt.solvers import caching as sc
from servopt.solvers import decode_routing as sd
from servopt.solvers import expert_placement as se

SECTION = "Metrics (``Outcome.metrics``"
BULLET = re.compile(r"^- ``(\w+)`` \((.+?)\):", re.M)


def documented_metrics(decision: str) -> dict[str, str]:
    """name -> its parenthesis (unit, and ``detail`` when only with that option) from the
    Metrics section of ``servopt.benchmarks.<decision>.evaluate``'s docstring."""
    doc = inspect.getdoc(importlib.import_module(f"servopt.benchmarks.{decision}").evaluate) or ""
    assert SECTION in doc, f"{decision}.evaluate has no Metrics section"
    section = doc.split(SECTION, 1)[1]
    bullets = [line for line in section.splitlines() if line.startswith("- ``")]
    found = {m[1]: m[2] for m in BULLET.finditer(section)}
    assert len(found) == len(bullets), f"{decision}: a metric line without '(unit):' {bullets}"
    return found


def _expert() -> ExpertInstance:
    # planned window 6, 2, 2; next 1, 1, 10; 2 GPUs x 2 slots; previous GPU 0: experts 1, 2,
    # GPU 1: expert 0; migration cost 1 (tests/test_expert_placement_hand_checks.py)
    return ExpertInstance(loads=np.array([[[6.0, 2.0, 2.0]], [[1.0, 1.0, 10.0]]]), num_nodes=1,
                          gpus_per_node=2, slots_per_gpu=2,
                          previous_placement=np.array([[1, 2, 0, -1]]), migration_cost=1.0)


def _caching() -> ic.Instance:
    # requests 1, 1, 0, 0, 1; object 0 has 2 tokens, object 1 10 (> the capacity 5: never cached)
    return ic.Instance(time=np.arange(5, dtype=float), object_id=np.array([1, 1, 0, 0, 1]),
                       size=np.array([2.0, 10.0]), miss_cost=np.array([2.0, 7.0]), capacity=5)


def _batch(arrival: list[int], prompt: list[int], output: list[int], kv: int = 100) -> ib.Instance:
    return ib.Instance(kv_memory=kv, arrival=np.array(arrival), prompt_tokens=np.array(prompt),
                       output_tokens=np.array(output))


RUNS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "expert_placement": (_expert, "no_replication", {}),
    "decode_routing": (lambda: idr.generate(requests=40, workers=2, seed=0), "jsq", {}),
    "batch_scheduling": (lambda: _batch([0, 0, 0], [2, 3, 4], [3, 2, 2], kv=10), "fcfs", {}),
    "capacity": (lambda: icap.generate(requests=300, arrival_rate=5.0), "first_order",
                 {"n_requests": 500, "seeds": 1, "window": 200}),
    "caching": (_caching, "lru", {}),
}


@pytest.mark.parametrize("decision", list(RUNS))
def test_the_documented_metrics_are_the_ones_evaluate_returns(decision: str) -> None:
    make, method, options = RUNS[decision]
    documented = documented_metrics(decision)
    outcome = importlib.import_module(f"servopt.benchmarks.{decision}").evaluate(
        make(), method, **options)
    assert set(outcome.metrics) == set(documented)
    for name, unit in documented.items():
        assert unit.strip(), f"{decision} metric {name} has no unit"


def test_expert_metrics_without_detail_are_the_ones_not_marked_detail() -> None:
    documented = documented_metrics("expert_placement")
    plain = {name for name, unit in documented.items() if "detail" not in unit}
    assert set(be.evaluate(_expert(), "no_replication", detail=False).metrics) == plain
    assert {"max_load", "mean_load", "makespan_tokens"} <= plain


def test_capacity_documents_its_nine_metrics() -> None:
    assert set(documented_metrics("capacity")) == {
        "stable", "per_worker_rate", "predicted_rate", "slope_ratio", "slope_se",
        "compute_utilisation", "kv_utilisation", "preemptions_per_request", "observations"}


# --- makespan in its unit (item 2) ---------------------------------------------------------------
def test_batch_makespan_rounds_by_hand() -> None:
    # request 0 (arrives 0, 3 tokens) runs rounds 0-2; request 1 (arrives 5, 2 tokens) runs
    # rounds 5-6: the round after the last finish is 7
    out = bb.evaluate(_batch([0, 5], [1, 1], [3, 2]), "fcfs")
    assert out.metrics["makespan_rounds"] == 7.0
    assert out.metrics["makespan"] == out.metrics["makespan_rounds"]  # deprecated duplicate
    assert out.metrics["throughput"] == pytest.approx(5 / 7)  # 5 tokens over rounds 0..6


def test_expert_makespan_tokens_by_hand() -> None:
    # no_replication puts expert 0 on one GPU, experts 1 and 2 on the other: next-window GPU times
    # 1 and 1 + 10 = 11, so the makespan is 11 tokens; the 3 replicas all move (cost 3 x 1)
    out = be.evaluate(_expert(), "no_replication")
    assert out.metrics["makespan_tokens"] == pytest.approx(11.0)
    assert out.metrics["makespan"] == out.metrics["makespan_tokens"]  # deprecated duplicate
    assert out.cost == pytest.approx(11.0 + 3.0)


def test_expert_cost_and_gpu_times_state_the_unit_evaluate_states() -> None:
    assert "tokens per unit speed" in be.COST  # it said "(tokens)"
    assert "tokens per unit speed" in " ".join(inspect.getdoc(be.evaluate).split())
    assert "tokens per unit speed" in " ".join(inspect.getdoc(be.gpu_times).split())


# --- caching's hit ratio on tokens (item 9) -----------------------------------------------------
def test_caching_token_hit_ratio_by_hand() -> None:
    # one hit (object 0 at request 3: 2 tokens) of 10 + 10 + 2 + 2 + 10 = 34 tokens requested
    metrics = bc.evaluate(_caching(), "lru").metrics
    assert metrics["token_hit_ratio"] == pytest.approx(2 / 34)
    assert metrics["byte_hit_ratio"] == metrics["token_hit_ratio"]


# --- names (item 18) ------------------------------------------------------------------------------
def test_decode_routing_has_make_policy_like_the_other_solvers() -> None:
    assert sd.make_policy is sd.make_router
    assert isinstance(sd.make_policy("jsq"), sd.JoinShortestQueue)
    for module in (sb, sc):
        assert callable(module.make_policy)


def _gap_instance() -> ExpertInstance:
    # loads 5, 3, 3, 1, 1 on 3 GPUs x 2 slots (one extra replica). Bound 13 / 3. Best by hand:
    # expert 0 split over two GPUs that also hold 3 and 1 (3 + a = 1 + 5 - a: 4.5 each), the third
    # GPU 3 + 1 = 4 -> 4.5; splitting a 3 instead leaves the 5 with at least 5. Gap 4.5 / (13 / 3)
    # - 1 = 3.8 %: above 1 %, below 5 %
    return ExpertInstance(loads=np.array([[[5.0, 3.0, 3.0, 1.0, 1.0]]]), num_nodes=1,
                          gpus_per_node=3, slots_per_gpu=2)


def test_exact_placement_takes_mip_gap_as_its_target_gap() -> None:
    inst = _gap_instance()
    default = se.exact_placement(inst, milp_max_binaries=0)  # no MILP: the candidates only
    assert default.info["bound"][0] == pytest.approx(13 / 3)
    assert default.info["makespan"][0] == pytest.approx(4.5)
    assert default.info["status"] == "uncertified"  # 3.8 % > the default 1 %
    loose = se.exact_placement(inst, mip_gap=0.05, milp_max_binaries=0)
    assert loose.info["status"] == "certified"
    assert se.exact_placement(inst, target_gap=0.05, milp_max_binaries=0).info["status"] == "certified"
    assert se.exact_placement(inst, mip_gap=0.02, milp_max_binaries=0).info["status"] == "uncertified"
    np.testing.assert_array_equal(loose.phy2log, default.phy2log)


def test_exact_placement_refuses_both_gap_names_and_names_the_one_given() -> None:
    inst = _gap_instance()
    with pytest.raises(InvalidInstanceError, match="not both"):
        se.exact_placement(inst, target_gap=0.01, mip_gap=0.01)
    with pytest.raises(InvalidInstanceError, match=r"^mip_gap must be >= 0"):
        se.exact_placement(inst, mip_gap=-1.0)
    with pytest.raises(InvalidInstanceError, match=r"^target_gap must be >= 0"):
        se.exact_placement(inst, target_gap="a")


# --- docstrings (items 6, 7, 16, 19, 21) ---------------------------------------------------------
def test_the_solver_docstrings_the_audit_found_missing_exist() -> None:
    for thing in (sd.Router.route, sd.Router.choose, sd.Router.reset, sd.FleetView.assign,
                  sb.Policy.admit, sc.Policy.start, sc.Policy.touch):
        assert (thing.__doc__ or "").strip(), thing.__qualname__
    assert "per token" in " ".join((se.check_gpu_price.__doc__ or "").split())  # its unit


def test_the_model_docstrings_the_audit_found_missing_exist() -> None:
    from servopt.models import caching as mc
    from servopt.models import capacity as mcap
    from servopt.models import expert_placement as mep

    for thing in (mep.explain_infeasible, mcap.explain_infeasible, mc.explain_infeasible):
        assert (thing.__doc__ or "").strip(), thing.__module__
    for func, unit in {mcap.rate_bound: "req/s", mep.window_loads: "tokens"}.items():
        assert unit in " ".join((func.__doc__ or "").split()), func.__name__


def test_trace_and_record_say_they_change_no_outcome() -> None:
    for module, flag in ((bb, "trace"), (bc, "record")):
        doc = " ".join(inspect.getdoc(module.evaluate).split())
        assert f"``{flag}=True`` changes nothing in the Outcome" in doc
        assert f"simulate(instance, method, {flag}=True)" in doc


def test_outcome_maps_every_speed_and_throughput_metric_to_its_decision() -> None:
    doc = " ".join((Outcome.__doc__ or "").split())
    pairs = {"plan_ms": "expert_placement", "router_us": "decode_routing",
             "requests_per_s": "caching", "throughput": "batch_scheduling",
             "throughput_tok_s": "decode_routing"}
    for name, decision in pairs.items():
        assert f"{decision} ``{name}``" in doc, name
        assert name in documented_metrics(decision), name  # a metric its evaluator returns


def _bound_time_limit(decision: str) -> tuple[bool, Any]:
    """Whether the decision's bound takes ``time_limit`` and its default."""
    bound = importlib.import_module(f"servopt.benchmarks.{decision}").bound
    if "time_limit" not in bound.accepted_keywords:
        return False, None
    params = inspect.signature(bound).parameters
    if "time_limit" in params:
        return True, params["time_limit"].default
    return True, inspect.signature(sc.solve_lp).parameters["time_limit"].default  # caching's **kw


def test_gap_table_states_each_bound_time_limit_default() -> None:
    doc = inspect.getdoc(servopt.gap_table) or ""
    for decision in servopt.DECISIONS:
        line = re.search(rf"^- {decision}: (.*)$", doc, re.M)
        assert line, decision
        takes, default = _bound_time_limit(decision)
        said = line[1]
        if not takes:
            assert said.startswith("none;"), decision
        elif default is None:
            assert said.startswith("None,"), decision
        else:
            assert said.startswith(f"{default:g} s "), decision


def test_expert_bound_says_which_bounds_take_time_limit() -> None:
    doc = " ".join(inspect.getdoc(be.bound).split())
    assert "every decision's bound takes it" not in doc
    assert "capacity's simulated bound has no time limit" in doc
    assert _bound_time_limit("capacity")[0] is False
    for decision in ("decode_routing", "batch_scheduling", "caching"):
        assert _bound_time_limit(decision)[0], decision


# --- the objective's unit (item 17) --------------------------------------------------------------
def test_each_model_objective_unit_is_the_evaluator_cost_unit_where_they_are_one_quantity() -> None:
    # the placement, routing, scheduling and caching models minimise the evaluator's cost;
    # capacity's LP maximises one worker's rate (req/s) while its evaluator counts workers
    for decision in ("expert_placement", "decode_routing", "batch_scheduling", "caching"):
        unit = importlib.import_module(f"servopt.models.{decision}").OBJECTIVE_UNIT
        cost = importlib.import_module(f"servopt.benchmarks.{decision}").COST
        assert unit and unit.removeprefix("the instance's ") in cost, decision
    assert importlib.import_module("servopt.models.capacity").OBJECTIVE_UNIT == "req/s"


def test_solution_summary_shows_the_objective_unit() -> None:
    from servopt.core import Solution

    # 2 GPUs of speed 2, planned window 6, 2, 2 on 4 slots: 10 tokens / (2 x 2) = 2.5 per layer
    inst = ExpertInstance(loads=np.array([[[6.0, 2.0, 2.0]], [[1.0, 1.0, 10.0]]]), num_nodes=1,
                          gpus_per_node=2, slots_per_gpu=2, gpu_speed=np.array([2.0, 2.0]))
    solution = servopt.solve(inst)
    assert solution.objective == pytest.approx(2.5, rel=1e-6)
    assert "bound=2.5 (tokens per unit speed) gap=" in solution.summary()
    for decision in servopt.DECISIONS:
        unit = importlib.import_module(f"servopt.models.{decision}").OBJECTIVE_UNIT
        one = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                       decision=decision)
        assert f"bound=1 ({unit}) gap=" in one.summary()
    plain = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0, decision="toy")
    assert "bound=1 gap=" in plain.summary()  # a decision without models: no unit, no error
