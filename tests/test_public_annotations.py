"""Public annotations say what the code passes and returns (R46 F2-F5): a type checker or a
runtime checker reading them is not misled."""

from __future__ import annotations

import typing

import numpy as np

from servopt.benchmarks.decode_routing import RouterInstance
from servopt.instances import decode_routing as idr
from servopt.solvers import decode_routing as routing


def test_router_reset_is_typed_by_what_the_simulator_passes():
    # the protocol lists exactly what a RouterInstance holds (its slots), nothing it refuses
    members = {name for name, value in vars(routing.InstanceView).items()
               if isinstance(value, property)}
    assert members == set(RouterInstance.__slots__)
    assert not members & set(RouterInstance.HIDDEN)
    assert "summary" not in members
    for router in [routing.Router(), *(make() for make in routing.POLICIES.values())]:
        hints = typing.get_type_hints(type(router).reset)
        assert hints["instance"] is routing.InstanceView, type(router).__name__
    # what the simulator builds has every member, of the promised kind
    shown = RouterInstance(idr.generate(seed=0, requests=20))
    for name in members:
        want = typing.get_type_hints(getattr(routing.InstanceView, name).fget)["return"]
        kinds = tuple(typing.get_origin(k) or k for k in typing.get_args(want)) or (want,)
        kinds = tuple(object if k is typing.Any else k for k in kinds)
        if float in kinds:
            kinds += (int,)
        assert isinstance(getattr(shown, name), kinds), (name, want)


def test_decode_bound_time_limit_is_annotated_optional():
    # time_limit=None is "no limit" (check_options takes it; test_api_contract runs it), as in
    # the other decisions' bound(); the harness reads the annotation to judge an option's kind
    from servopt.benchmarks import batch_scheduling, harness
    from servopt.benchmarks import decode_routing as bd

    hint = typing.get_type_hints(typing.cast(typing.Any, bd.bound).__wrapped__)["time_limit"]
    assert type(None) in typing.get_args(hint)
    assert harness.option_kinds(bd.bound)["time_limit"] == \
        harness.option_kinds(batch_scheduling.bound)["time_limit"] == (frozenset({float}), True)


def test_expert_placement_rounded_returns_the_array_it_promises():
    from servopt.models.expert_placement import rounded

    # 36 significant bits (frexp's mantissa in [0.5, 1) times 2^36, whole): at 1.0 = 0.5 * 2^1 a
    # step is 2^-36 * 2 = 2^-35, so 1 + 2^-40 rounds down to 1 and up to 1 + 2^-35 (by hand)
    x = 1.0 + 2.0**-40
    down, up = rounded(x, "down"), rounded(x, "up")
    assert isinstance(down, np.ndarray) and down.shape == () and float(down) == 1.0
    assert isinstance(up, np.ndarray) and float(up) == 1.0 + 2.0**-35
    down[()] = 2.0  # an array: writable like the rounded arrays it returns for arrays
    rows = rounded(np.array([[x, 3.0]]), "up")
    assert rows.shape == (1, 2) and rows.tolist() == [[1.0 + 2.0**-35, 3.0]]


def test_matrix_model_decisions_annotation_covers_decode_routings_dataframe():
    import pandas as pd

    from servopt.core.matrix import MatrixModel
    from servopt.models import decode_routing as mdr

    hint = typing.get_type_hints(MatrixModel)["decisions"]
    call = next(a for a in typing.get_args(hint) if a is not type(None))
    returned = typing.get_args(typing.get_args(call)[1])[1]  # dict[str, <this>]
    kinds = typing.get_args(returned) or (returned,)
    mm = mdr.build_matrix_model(idr.generate_steps(requests=8, workers=2, seed=0))
    decided = mm.decisions(np.zeros(len(mm.objective)))
    assert isinstance(decided["x"], pd.DataFrame)  # request x worker shares
    for name, value in decided.items():
        assert isinstance(value, kinds), (name, type(value).__name__, returned)


def test_results_scripts_public_functions_are_annotated():
    import inspect

    from servopt.benchmarks import batch_scheduling_speed, decode_routing_speed

    for module, names in ((batch_scheduling_speed, ("run_one", "faster", "measure")),
                          (decode_routing_speed, ("stage_us", "log_phi_per_request", "timer_us",
                                                  "cpu_us"))):
        for name in names:
            func = getattr(module, name)
            hints = typing.get_type_hints(func)  # (the names resolve)
            wanted = set(inspect.signature(func).parameters) | {"return"}
            assert wanted <= set(hints), (module.__name__, name, wanted - set(hints))


def test_decode_evaluate_method_annotation_takes_a_router_class():
    # gap_table and users pass a router class or factory (make_router builds it): the annotation
    # says so, as make_router's does
    import collections.abc

    from servopt.benchmarks import decode_routing as bd

    hint = typing.get_type_hints(typing.cast(typing.Any, bd.evaluate).__wrapped__)["method"]
    assert any(typing.get_origin(a) is collections.abc.Callable for a in typing.get_args(hint))
    assert typing.get_args(hint) == typing.get_args(
        typing.get_type_hints(routing.make_router)["method"])
    outcome = bd.evaluate(idr.generate_steps(requests=12, workers=2, seed=0),
                          routing.JoinShortestQueue)
    assert outcome.metrics["completed"] == 12
