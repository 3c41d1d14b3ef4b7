"""Every built-in evaluator and bound refuses a bad option value before anything runs (E10).

Before, only batch_scheduling passed a ``check=`` to ``checked_keywords``; the other four
decisions refused (some) bad values only inside ``evaluate`` / ``bound``, after a method had
planned or the bound had been computed, some not at all (found by trying each value on the old
code):

- expert_placement: ``dispatch=""``, ``0`` or ``False`` silently scored the plan's own dispatch;
  ``milp_max_binaries=-1``, ``2.5``, NaN or True silently skipped the MILP (kind
  ``lower_bound``); ``milp_time_limit=False`` ran as 0 (no MILP);
- decode_routing: ``warmup=False`` ran as 0; ``step_block=True`` ran as 1, and any bad
  ``step_block`` was ignored on an instance without the hindsight IP;
- caching: an unknown ``algorithm`` was ignored by the ``pyomo``/``networkx`` LP methods;
- capacity: ``window=10**12`` allocated arrivals for minutes, ``window=None`` a TypeError;
- and everywhere else the refusal came after the bound (capacity's: simulations) had run.

``gap_table`` guessed from a method's error message whether it was an option refusal; for an
evaluator with a ``check`` it no longer does: a method's own ValueError is its row.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

from servopt.benchmarks import harness
from servopt.benchmarks.harness import Bound, OptionError, gap_table

CALLS: list[str] = []


# ---------------------------------------------------------------------------------------------
# one small instance and one recording method per decision
# ---------------------------------------------------------------------------------------------
def _capacity():
    from servopt.instances import capacity as ci
    from servopt.solvers.capacity import Plan

    def recorded(instance, observe):
        CALLS.append("capacity")
        return Plan(1)

    return ci.generate(seed=0), recorded


def _expert():
    from servopt.instances import expert_placement as ei
    from servopt.solvers.expert_placement import POLICIES

    def recorded(instance):
        CALLS.append("expert_placement")
        return POLICIES["no_replication"](instance)

    return ei.generate(seed=0), recorded


def _caching():
    from servopt.instances import caching as chi
    from servopt.solvers.caching import LRU

    class Recorded(LRU):
        name = "recorded"

        def start(self, instance):
            CALLS.append("caching")
            return super().start(instance)

    return chi.generate(requests=300, seed=0), Recorded()


def _decode():
    from servopt.instances import decode_routing as di
    from servopt.solvers.decode_routing import JoinShortestQueue

    class Recorded(JoinShortestQueue):
        name = "recorded"

        def reset(self, instance, seed=0):
            CALLS.append("decode_routing")
            return super().reset(instance, seed)

    return di.generate(requests=60, workers=3, seed=0), Recorded()


MAKE = {"capacity": _capacity, "expert_placement": _expert, "caching": _caching,
        "decode_routing": _decode}

# (decision, "evaluate" or "bound", the options given, the option refused). Each value here was
# accepted by the old evaluate.check_options (and many by the evaluator: see the docstring).
NAN, INF = math.nan, math.inf
BAD = [
    *[("capacity", "evaluate", {"n_requests": v}, "n_requests")
      for v in (-1, 0, 499, NAN, INF, True, "x", 10**12, 2.5, None)],
    *[("capacity", "evaluate", {"seed": v}, "seed") for v in (-1, NAN, True, "x", 2.5, None)],
    *[("capacity", "evaluate", {"seeds": v}, "seeds") for v in (0, True, 10**12, 2.5, None)],
    *[("capacity", "evaluate", {"max_seeds": v}, "max_seeds") for v in (0, True, 10**12, 2.5, INF)],
    *[("capacity", "evaluate", {"eps": v}, "eps") for v in (-1, 1, NAN, INF, True, "x", None)],
    *[("capacity", "evaluate", {"warmup": v}, "warmup") for v in (-0.1, 1.0, NAN, True, None)],
    *[("capacity", "evaluate", {"window": v}, "window")
      for v in (0, -1, True, 2.5, NAN, None, 10**12)],
    *[("capacity", "bound", {k: v}, k) for k, v in (("n_requests", 100), ("seed", -1),
                                                     ("seeds", 0), ("max_seeds", 2.5),
                                                     ("eps", NAN), ("warmup", 1.0))],
    *[("expert_placement", "evaluate", {"dispatch": v}, "dispatch")
      for v in ("", 0, False, "x", "EVEN", 1, NAN)],
    *[("expert_placement", "bound", {"window": v}, "window") for v in ("x", None, 0, "")],
    *[("expert_placement", "bound", {"time_limit": v}, "time_limit")
      for v in (0, -1, NAN, True, "5")],
    *[("expert_placement", "bound", {"milp_time_limit": v}, "milp_time_limit")
      for v in (-1, NAN, True, False, "x")],
    *[("expert_placement", "bound", {"milp_max_binaries": v}, "milp_max_binaries")
      for v in (-1, 2.5, NAN, INF, True, None)],
    ("expert_placement", "bound", {"time_limit": 5, "milp_time_limit": 5}, "time_limit"),
    *[("caching", "evaluate", {"record": v}, "record") for v in ("no", 0, None)],
    *[("caching", "bound", {"method": v}, "method") for v in ("HIGHS", None, 0, True)],
    *[("caching", "bound", {"time_limit": v}, "time_limit") for v in (0, -1, NAN, True, "x")],
    *[("caching", "bound", {"algorithm": v}, "algorithm") for v in ("x", None, 1)],
    ("caching", "bound", {"method": "networkx", "algorithm": "x"}, "algorithm"),
    ("caching", "bound", {"method": "pyomo", "algorithm": "simplex"}, "algorithm"),
    *[("caching", "bound", {"reduce": v}, "reduce") for v in ("no", 0)],
    *[("decode_routing", "evaluate", {"seed": v}, "seed") for v in (-1, True, "x", 2.5, None, NAN)],
    *[("decode_routing", "evaluate", {"warmup": v}, "warmup")
      for v in (-0.1, 1.0, NAN, INF, True, False, "x", None)],
    *[("decode_routing", "bound", {"time_limit": v}, "time_limit") for v in (0, -1, NAN, True, "x")],
    *[("decode_routing", "bound", {"mip_gap": v}, "mip_gap") for v in (-1, 1, NAN, True, None, "x")],
    *[("decode_routing", "bound", {"step_block": v}, "step_block")
      for v in (0, -1, True, 2.5, NAN, "x", None)],
]


def _id(case) -> str:
    decision, where, kw, _ = case
    return f"{decision}-{where}-" + ",".join(f"{k}={v!r}" for k, v in kw.items())


@pytest.fixture(scope="module")
def made():
    return {decision: make() for decision, make in MAKE.items()}


@pytest.fixture
def no_bound(monkeypatch):
    """gap_table's bound replaced by one that records its call (and solves nothing)."""
    def recorded(instance, **kw):
        CALLS.append("bound")
        return Bound(1.0, "lower_bound")

    monkeypatch.setattr(harness, "compute_bound", recorded)
    CALLS.clear()
    yield
    CALLS.clear()


def _bench(decision: str):
    return harness.benchmark_module(decision)


@pytest.mark.parametrize("case", BAD, ids=[_id(c) for c in BAD])
def test_check_options_refuses_the_value_by_name(case):
    decision, where, kw, option = case
    public = getattr(_bench(decision), where)
    with pytest.raises(OptionError, match=re.escape(option)) as caught:
        public.check_options(**kw)
    assert caught.value.option == option


@pytest.mark.parametrize("case", BAD, ids=[_id(c) for c in BAD])
def test_gap_table_refuses_it_before_the_bound_and_every_method(case, made, no_bound):
    decision, where, kw, option = case
    instance, method = made[decision]
    given = {"bound_kw": kw} if where == "bound" else kw
    says = (f"gap_table() for {decision}: option {option}={kw[option]!r} refused: ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no error row, no RuntimeWarning)
        with pytest.raises(OptionError, match=re.escape(says)):
            gap_table(instance, {"mine": method}, **given)
    assert CALLS == []  # neither the bound nor the method ran


@pytest.mark.parametrize("case", [c for c in BAD if c[1] == "evaluate"],
                         ids=[_id(c) for c in BAD if c[1] == "evaluate"])
def test_evaluate_refuses_it_before_the_method_runs(case, made):
    decision, _, kw, option = case
    instance, method = made[decision]
    CALLS.clear()
    with pytest.raises(OptionError, match=re.escape(option)) as caught:
        _bench(decision).evaluate(instance, method, **kw)
    assert CALLS == [] and caught.value.option == option  # (the option, for gap_table to say)


# valid values at the edges of each range: accepted by the checks (and by the evaluators)
GOOD = {
    "capacity": [("evaluate", {"eps": 0, "warmup": 0.0, "seed": 0, "max_seeds": None,
                               "n_requests": 500, "seeds": np.int64(1000), "window": 1}),
                 ("evaluate", {"window": 16_000_000, "n_requests": 16_000_000, "eps": 0.999}),
                 ("bound", {"eps": 0.0, "max_seeds": 1, "seed": 10**12})],
    "expert_placement": [("evaluate", {"dispatch": None}), ("evaluate", {"dispatch": "price"}),
                         ("evaluate", {"dispatch": np.str_("lp"), "detail": np.False_}),
                         ("bound", {"milp_time_limit": 0, "milp_max_binaries": 0}),
                         ("bound", {"time_limit": INF, "window": "planned"}),
                         ("bound", {"milp_time_limit": 1e-3, "milp_max_binaries": np.int64(5)})],
    "caching": [("evaluate", {"record": np.True_}),
                ("bound", {"method": "networkx", "algorithm": "ipm", "time_limit": INF}),
                ("bound", {"time_limit": None, "algorithm": "auto", "reduce": False})],
    "decode_routing": [("evaluate", {"seed": np.int64(0), "warmup": 0}),
                       ("evaluate", {"seed": 10**12, "warmup": 0.999}),
                       ("bound", {"time_limit": None, "mip_gap": 0, "step_block": 10**12}),
                       ("bound", {"time_limit": INF, "mip_gap": 0.5, "step_block": np.int64(1)})],
}


@pytest.mark.parametrize("decision", sorted(GOOD))
def test_valid_edge_values_pass_the_check_and_run(decision, made):
    bench = _bench(decision)
    for where, kw in GOOD[decision]:
        public = getattr(bench, where)
        assert public.checks_values  # (the old evaluators had no value check)
        public.check_options(**kw)
    # the cheap ones run for real (capacity's simulations are left to its own tests)
    inst, _ = made[decision]
    if decision == "expert_placement":
        assert bench.bound(inst, milp_time_limit=0, milp_max_binaries=0).kind == "lower_bound"
        assert math.isfinite(bench.evaluate(inst, "eplb", dispatch=np.str_("lp")).cost)
    elif decision == "caching":
        nx = bench.bound(inst, method="networkx", algorithm="ipm").value
        assert nx == pytest.approx(bench.bound(inst).value, rel=1e-6)  # (two LP formulations)
    elif decision == "decode_routing":
        assert bench.evaluate(inst, "jsq", seed=np.int64(0), warmup=0).cost == \
            bench.evaluate(inst, "jsq", seed=0, warmup=0.0).cost


# ---------------------------------------------------------------------------------------------
# a method's own error that names an option and its value is its row, not the caller's error
# ---------------------------------------------------------------------------------------------
def _raising(decision: str, message: str):
    if decision == "capacity":
        def method(instance, observe):
            raise ValueError(message)
        return method
    if decision == "expert_placement":
        def method(instance):
            raise ValueError(message)
        return method
    from servopt.solvers.caching import LRU
    from servopt.solvers.decode_routing import JoinShortestQueue

    if decision == "caching":
        class Crash(LRU):
            name = "crash"

            def start(self, instance):
                raise ValueError(message)
        return Crash()

    class Crashing(JoinShortestQueue):
        name = "crash"

        def reset(self, instance, seed=0):
            raise ValueError(message)
    return Crashing()


OWN = [("capacity", {"eps": 0.05}, "eps must be at most 0.02 for my rule, got 0.05"),
       ("expert_placement", {"dispatch": "lp"}, "dispatch 'lp' needs my prices, got 'lp'"),
       ("caching", {"record": True}, "record True is not supported by my cache"),
       ("decode_routing", {"seed": 3}, "seed 3 is not a seed my router takes")]


@pytest.mark.parametrize("decision, kw, message", OWN, ids=[o[0] for o in OWN])
def test_a_methods_own_error_naming_an_option_is_its_row(decision, kw, message, made, no_bound):
    # before: gap_table matched the option's name and value in the message and raised an
    # OptionError blaming the caller's (valid) option
    instance, _ = made[decision]
    with pytest.warns(RuntimeWarning, match=f"method 'mine' failed: ValueError: {message}"):
        table = gap_table(instance, {"mine": _raising(decision, message)}, **kw)
    assert table["status"].tolist() == [f"error: ValueError: {message}"]
    assert math.isnan(table["cost"][0])


def test_a_plug_in_evaluator_without_a_check_keeps_the_message_match(made, monkeypatch, no_bound):
    # (a guard, not a regression: the fallback _option_named stays for an evaluator that has no
    # check; this passed on the old code too)
    bench = _bench("decode_routing")
    instance, _ = made["decode_routing"]

    def evaluate(instance, method, **kw):  # a plug-in's evaluator: no checked_keywords
        raise ValueError(f"horizon must be >= 1, got {kw['horizon']!r}")

    monkeypatch.setattr(bench, "evaluate", evaluate)
    with pytest.raises(OptionError, match=r"option horizon=-3 refused: horizon must be >= 1"):
        gap_table(instance, ["jsq"], horizon=-3)


@pytest.mark.parametrize("decision, kw, option", [
    ("decode_routing", {"warmup": False}, "warmup"),  # before: ran as warmup 0
    ("decode_routing", {"warmup": True}, "warmup"),
    ("decode_routing", {"warmup": "x"}, "warmup"),  # before: a bare TypeError
    ("decode_routing", {"seed": -1}, "seed"),
    ("caching", {"record": "no"}, "record"),  # before: taken as true, the replay recorded
    ("caching", {"record": 1}, "record"),
])
def test_simulate_checks_its_options_as_evaluate_does(decision, kw, option, made):
    instance, method = made[decision]
    CALLS.clear()
    with pytest.raises(OptionError, match=re.escape(option)) as caught:
        _bench(decision).simulate(instance, method, **kw)
    assert CALLS == [] and caught.value.option == option
