"""API contract: solver options are checked by name (never refused silently by HiGHS, which then
kept the previous call's setting), and no option leaks from one call into the next."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from shared import small_instance

from servopt.benchmarks import caching as bc
from servopt.benchmarks import decode_routing as bd
from servopt.core.errors import InvalidInstanceError
from servopt.instances import caching as ic
from servopt.instances import decode_routing as idr
from servopt.solvers import decode_routing as routing

BAD_LIMITS = [-1.0, 0, 0.0, math.nan, -math.inf, "5", True]
BAD_GAPS = [-1.0, math.nan, 1.0, 2.0, "0.1"]


@pytest.fixture(scope="module")
def steps() -> idr.Instance:
    return idr.generate_steps(requests=6, workers=2)  # hindsight IP: ~0.6 s to the default gap


@pytest.mark.parametrize("bad", BAD_LIMITS)
def test_decode_bound_refuses_bad_time_limit(steps: idr.Instance, bad: object) -> None:
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bd.bound(steps, time_limit=bad)


@pytest.mark.parametrize("bad", BAD_GAPS)
def test_decode_bound_refuses_bad_mip_gap(steps: idr.Instance, bad: object) -> None:
    with pytest.raises(InvalidInstanceError, match="mip_gap"):
        bd.bound(steps, mip_gap=bad)


def test_decode_bound_options_do_not_leak(steps: idr.Instance) -> None:
    """A loose gap, then a refused one, then the default: the last is proved optimal (the old code
    ran mip_gap=-1 at the previous call's 0.5 and returned its bound as if proved)."""
    loose = bd.bound(steps, time_limit=60, mip_gap=0.5)
    with pytest.raises(InvalidInstanceError, match="mip_gap"):
        bd.bound(steps, time_limit=60, mip_gap=-1)
    again = bd.bound(steps, time_limit=60)
    assert again.kind == "optimal"
    assert again.value >= loose.value - 1e-9 * abs(loose.value)
    # no limit spelled as infinity or None: the same proved optimum
    assert bd.bound(steps, time_limit=math.inf).value == pytest.approx(again.value, rel=1e-9)
    assert bd.bound(steps, time_limit=None).value == pytest.approx(again.value, rel=1e-9)


def test_solve_matrix_and_epoch_ip_refuse_bad_options() -> None:
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        routing.EpochIP(time_limit=-1)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        routing.EpochIP(time_limit=math.nan)
    routing.EpochIP(time_limit=None)  # no limit


@pytest.mark.parametrize("bad", [-1.0, 0, math.nan, "10"])
def test_caching_bound_refuses_bad_time_limit(bad: object) -> None:
    inst = ic.generate(requests=50, objects=10, seed=0)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bc.bound(inst, time_limit=bad)
    # no limit: the same LP value as the default
    assert bc.bound(inst, time_limit=math.inf).value == pytest.approx(bc.bound(inst).value)


# --- batch scheduling: the hindsight search stops only at its time limit -----------------------
@pytest.mark.parametrize("bad", [None, math.inf, math.nan, 0, -1.0, "3", True])
def test_hindsight_refuses_a_limit_it_cannot_stop_at(bad: object) -> None:
    """None used to fail deep in prepare (None * 3 / 4) and NaN or infinity looped forever."""
    from servopt.solvers import batch_scheduling as bs

    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bs.Hindsight(time_limit=bad)


@pytest.mark.parametrize("bad", [None, math.inf, math.nan, 0])
def test_searches_refuse_a_limit_they_cannot_stop_at(bad: object) -> None:
    from servopt.instances import batch_scheduling as ib
    from servopt.models import batch_scheduling as mb
    from servopt.solvers import batch_scheduling as bs

    inst = ib.generate(12, seed=0)
    start = mb.warm_start_schedule(inst)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bs.search_order(inst, start, time_limit=bad)
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        bs.improve_schedule(inst, start, time_limit=bad)


# --- low-level helpers: an unknown sense or row is an error, not "max" / "le" -----------------
def test_relative_gap_refuses_unknown_sense() -> None:
    from servopt.core.solution import relative_gap

    # by hand: min, value 110 over bound 100 -> 0.1; max, value 90 under bound 100 -> 0.1
    assert relative_gap(110.0, 100.0, "min") == pytest.approx(0.1)
    assert relative_gap(90.0, 100.0, "max") == pytest.approx(0.1)
    # an infinite bound is infinitely far from a finite value (the tolerance called it 0)
    assert relative_gap(4.0, -math.inf) == relative_gap(4.0, math.inf, "max") == math.inf
    for bad in ("minimize", "MIN", "maximise", None):
        with pytest.raises(ValueError, match="sense"):
            relative_gap(110.0, 100.0, bad)  # type: ignore[arg-type]


def test_normalise_dual_refuses_unknown_sense_or_row() -> None:
    from servopt.core.solution import normalise_dual

    # by hand: a min problem's <= row, Pyomo dual d(obj)/d(ub) = -2 -> price 2 (relaxing saves 2)
    assert normalise_dual(-2.0, sense="min", row="le", convention="pyomo") == 2.0
    for bad in ("leq", "<=", "LE", None):
        with pytest.raises(ValueError, match="row"):
            normalise_dual(-2.0, sense="min", row=bad, convention="pyomo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sense"):
        normalise_dual(-2.0, sense="minimize", row="le", convention="pyomo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="convention"):
        normalise_dual(-2.0, sense="min", row="le", convention="gurobi")  # type: ignore[arg-type]


# --- unknown keywords: named by the public function, with what it accepts --------------------
_small = small_instance


@pytest.mark.parametrize("decision, method, accepted", [
    ("expert_placement", "eplb", "dispatch, detail"),
    ("batch_scheduling", "fcfs", "trace, max_rounds"),  # evaluate passes **kw to simulate
    ("caching", "lru", "record"),
])
def test_evaluate_unknown_keyword_names_the_public_function(decision: str, method: str,
                                                             accepted: str) -> None:
    """It was a bare TypeError naming simulate() (batch, caching) or evaluate() itself."""
    import servopt

    inst = _small(decision)
    bench = servopt.benchmarks.harness.benchmark_module(decision)
    for call in (lambda: bench.evaluate(inst, method, seed=1),
                 lambda: servopt.gap_table(inst, [method], seed=1)):
        with pytest.raises(InvalidInstanceError) as err:
            call()
        text = str(err.value)
        assert f"servopt.benchmarks.{decision}.evaluate() got an unexpected keyword argument 'seed'" in text
        assert text.endswith(f"it accepts: {accepted}")


def test_gap_table_bound_keyword_names_the_bound_and_a_close_option() -> None:
    import servopt

    with pytest.raises(InvalidInstanceError) as err:
        servopt.gap_table(_small("expert_placement"), ["eplb"], bound_kw={"milp_time_limt": 5})
    assert str(err.value) == (
        "servopt.benchmarks.expert_placement.bound() got an unexpected keyword argument "
        "'milp_time_limt' (did you mean 'milp_time_limit'?); it accepts: window, time_limit, "
        "milp_time_limit, milp_max_binaries")
    with pytest.raises(InvalidInstanceError,
                       match=r"capacity\.bound\(\) got an unexpected keyword argument 'time_limit'"):
        servopt.gap_table(_small("capacity"), ["plan"], bound_kw={"time_limit": 5})


def test_known_keywords_still_pass_and_signatures_show() -> None:
    import inspect

    from servopt.benchmarks import batch_scheduling as bb
    from servopt.benchmarks import caching as bcach
    from servopt.benchmarks import expert_placement as be

    inst = _small("caching")
    # record=True goes through evaluate to simulate (the keyword the wrapper must let pass)
    assert bcach.evaluate(inst, "lru", record=True).cost == bcach.simulate(inst, "lru").miss_cost
    assert bb.evaluate(_small("batch_scheduling"), "fcfs", max_rounds=10_000).status == "ok"
    assert "dispatch" in inspect.signature(be.evaluate).parameters  # help() shows the real one


# --- documented behaviour that was not the behaviour ------------------------------------------
def _mooncake(tmp_path, prompts: list[list[int]]):
    import json

    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps({"timestamp": 1000 * k, "input_length": 512 * len(ids),
                                        "output_length": 1, "hash_ids": ids}) + "\n"
                            for k, ids in enumerate(prompts)))
    return path


def test_caching_from_trace_max_requests_is_at_most(tmp_path) -> None:
    """Prompts of 3, 2 and 4 blocks: max_requests=5 keeps 3 + 2 = 5 block requests, 8 keeps 5
    (the third prompt would make 9), 2 keeps no whole prompt (it kept the first one: 3 > 2)."""
    path = _mooncake(tmp_path, [[0, 1, 2], [0, 3], [0, 1, 4, 5]])
    assert ic.from_trace(path, max_requests=5, cache_share=0.5).requests == 5
    assert ic.from_trace(path, max_requests=8, cache_share=0.5).requests == 5
    assert ic.from_trace(path, max_requests=9, cache_share=0.5).requests == 9
    with pytest.raises(InvalidInstanceError, match=r"max_requests=2 keeps no whole prompt.*3 blocks"):
        ic.from_trace(path, max_requests=2, cache_share=0.5)


def test_capacity_whole_number_messages_name_the_unit() -> None:
    from servopt.instances import capacity as cap

    with pytest.raises(InvalidInstanceError, match=r"^batch_cap must be a whole number of requests"):
        cap.generate(batch_cap=2.5)
    with pytest.raises(InvalidInstanceError, match=r"^requests must be a whole number, got 100.9"):
        cap.generate(requests=100.9)
    with pytest.raises(InvalidInstanceError, match=r"^token_budget must be a whole number of tokens"):
        cap.generate(token_budget=10.5)
    with pytest.raises(InvalidInstanceError, match=r"did you mean 'kv_capacity' -> 'kv_tokens'"):
        cap.generate(kv_capacity=1000)


@pytest.mark.parametrize("decision", ["expert_placement", "batch_scheduling"])
def test_instance_docstring_lists_every_field(decision: str) -> None:
    """The README promises help(...Instance) lists the fields: each is named with a unit."""
    import dataclasses
    import importlib

    cls = importlib.import_module(f"servopt.instances.{decision}").Instance
    doc = cls.__doc__ or ""
    for field in dataclasses.fields(cls):
        assert f"\n    {field.name} :" in doc, field.name


# --- the top-level API: what help() shows and what load() accepts ---------------------------
def test_solve_and_gap_table_signatures_show_their_keywords() -> None:
    import inspect

    import servopt

    params = inspect.signature(servopt.solve).parameters
    for name in ("relax", "time_limit", "mip_gap", "backend", "prices", "options"):
        assert name in params, name
    doc = servopt.solve.__doc__ or ""
    assert "InvalidInstanceError" in doc and "InfeasibleError" in doc and "seconds" in doc
    assert inspect.signature(servopt.gap_table).return_annotation in ("pd.DataFrame", "DataFrame")
    # the keywords reach exact.solve: a refused one is refused there
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        servopt.solve(ic.generate(requests=20, objects=5), relax=True, time_limit=-1)


def test_load_takes_a_library_name_like_the_cli(tmp_path, monkeypatch) -> None:
    import servopt
    from servopt.instances import library

    item = library.read_manifest()["bs_offline_15"]
    by_name = servopt.load("bs_offline_15")
    assert by_name.decision == item.decision
    assert by_name.content_hash() == servopt.load(item.path).content_hash()  # the recorded file
    with pytest.raises(InvalidInstanceError, match="did you mean bs_offline_15"):
        servopt.load("bs_offline_1x")
    with pytest.raises(InvalidInstanceError, match="no such file"):
        servopt.load("no_such_thing_at_all")
    # a Path that is a bare name does the same (it said "no such file"); one with a folder does not
    assert servopt.load(Path("bs_offline_15")).content_hash() == by_name.content_hash()
    with pytest.raises(InvalidInstanceError, match="no such file"):
        servopt.load(tmp_path / "bs_offline_15")
    # a file of that name in the working directory wins, as in the CLI
    monkeypatch.chdir(tmp_path)
    servopt.load(library.read_manifest()["ep_tiny"].path).to_json(tmp_path / "bs_offline_15")
    assert servopt.load("bs_offline_15").decision == "expert_placement"


def test_decode_routing_decisions_are_what_the_annotation_says() -> None:
    """decisions() was annotated dict[str, Series] but returns x as a request x worker frame."""
    import typing

    import pandas as pd

    import servopt
    from servopt.models import decode_routing as mdr

    hint = typing.get_type_hints(mdr.decisions, {"pd": pd, **vars(mdr)})["return"]
    allowed = typing.get_args(typing.get_args(hint)[1])
    sol = servopt.solve(servopt.load("dr_hindsight_8x2"), backend="pyomo", prices=False)
    assert {k: type(v) for k, v in sol.decisions.items()} == {
        "worker": pd.Series, "u": pd.Series, "x": pd.DataFrame}
    assert all(isinstance(v, allowed) for v in sol.decisions.values())
