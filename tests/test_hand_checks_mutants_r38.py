"""Edge cases of the results cache, limits and report found by mutation testing (R38).

Each test names the R38 mutant it kills (ids of /tmp/R38/findings.md) and says where its expected
value comes from: an evaluator called directly, a row written out by hand, or a count by hand,
never the code under test echoing itself.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import math
import sys
import types

import pandas as pd
import pytest
from shared import cache_entry, toy_cache_case

from servopt.benchmarks import Case, limits, runner
from servopt.benchmarks import caching as caching_bench
from servopt.benchmarks.report import summarise
from servopt.core.registry import layer_module, register_decision, unregister_decision
from servopt.instances import caching

import toy_decision  # noqa: F401  (registers the toy decision)

REQUESTS = 300  # a caching instance solved in well under a second


def _lru_cost(objects: int) -> float:
    """The lru cost of the seed-0 caching instance, from the evaluator called directly."""
    instance = caching.generate(requests=REQUESTS, objects=objects, seed=0)
    return caching_bench.evaluate(instance, "lru").cost


def scaled_by_factor(instance, method, **kw):
    """An evaluator that multiplies the cost by the plain value FACTOR of its registered layer."""
    out = caching_bench.evaluate(instance, method, **kw)
    out.cost *= layer_module("caching", "benchmarks").FACTOR
    return out


def test_a_changed_plain_value_of_a_registered_layer_is_a_new_key_and_a_rerun(tmp_path):
    # kills K16 (runner._case_code keys a plain value of a registered namespace by its name only,
    # so FACTOR=2's row was served after FACTOR became 3). Expected: the evaluator called directly
    # on the same instance, times 2 then times 3; the second run reads nothing from the cache.
    case = Case(name="e29_k16", decision="caching", grid=({"requests": REQUESTS,
                                                           "objects": 60},),
                methods=("lru",), seeds=(0,))
    plain = _lru_cost(60)
    cache = tmp_path / "cache"
    seen = {}
    for factor in (2, 3):
        register_decision("caching", replace=True, benchmarks=types.SimpleNamespace(
            evaluate=scaled_by_factor, bound=caching_bench.bound, SENSE="min", FACTOR=factor))
        try:
            fingerprint = runner.code_fingerprint(case)
            frame = runner.run([case], jobs=1, cache_dir=cache, progress=False)
        finally:
            unregister_decision("caching")
        seen[factor] = fingerprint
        assert frame.attrs["runs_cached"] == 0, factor
        assert frame.loc[frame.method == "lru", "cost"].item() == pytest.approx(factor * plain)
    assert seen[2] != seen[3]


HELPER = """
from servopt.instances import caching
OBJECTS = 60
def make(seed, requests={requests}):
    return caching.generate(requests=requests, objects=OBJECTS, seed=seed)
"""

CASE_FILE = """
import e29_k19_helper
from servopt.benchmarks import Case
e29_k19_helper.OBJECTS = {objects}
CASE = Case(name="e29_k19", decision="caching", grid=({{"requests": {requests}}},), seeds=(0,),
            methods=("lru",), make_instance=e29_k19_helper.make)
"""


def test_an_edit_to_the_case_file_alone_is_a_new_key_and_a_rerun(tmp_path, monkeypatch):
    # kills K19 (runner._case_code does not hash case.origin_file). make_instance lives in a
    # helper module that the case file configures (OBJECTS = 60, then 80, the helper untouched):
    # only the case file's text changes. Expected: a new fingerprint, no cached run, and the cost
    # of the 80-object instance from the evaluator called directly.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "e29_k19_helper.py").write_text(HELPER.format(requests=REQUESTS))
    monkeypatch.delitem(sys.modules, "e29_k19_helper", raising=False)
    case_file = tmp_path / "cases" / "e29_k19_case.py"
    case_file.parent.mkdir()
    cache = tmp_path / "cache"
    seen = {}
    for objects in (60, 80):
        case_file.write_text(CASE_FILE.format(objects=objects, requests=REQUESTS))
        spec = importlib.util.spec_from_file_location("e29_k19_case", case_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        case = module.CASE
        assert case.origin_file is not None
        seen[objects] = runner.code_fingerprint(case)
        frame = runner.run([case], jobs=1, cache_dir=cache, progress=False)
        assert frame.attrs["runs_cached"] == 0, objects
        assert frame.loc[frame.method == "lru", "cost"].item() == pytest.approx(_lru_cost(objects))
    monkeypatch.delitem(sys.modules, "e29_k19_helper", raising=False)
    assert seen[60] != seen[80]
    assert _lru_cost(60) != _lru_cost(80)  # (the two instances do differ)


def test_an_edit_to_a_package_init_alone_is_a_new_key_and_a_rerun(tmp_path, monkeypatch):
    # kills K20 (runner._case_code.add_file does not hash the __init__.py of the packages a
    # followed file sits in). make_instance is e29k20pkg.helper.make; only the package's
    # __init__.py changes (it sets helper.OBJECTS to 60, then 80). Expected: a new fingerprint,
    # no cached run, the cost of the 80-object instance from the evaluator called directly.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "e29k20pkg"
    package.mkdir()
    (package / "helper.py").write_text(HELPER.format(requests=REQUESTS))
    cache = tmp_path / "cache"
    seen = {}
    for objects in (60, 80):
        (package / "__init__.py").write_text(f"from . import helper\nhelper.OBJECTS = {objects}\n")
        for name in [n for n in sys.modules if n.startswith("e29k20pkg")]:
            monkeypatch.delitem(sys.modules, name)
        importlib.invalidate_caches()
        helper = importlib.import_module("e29k20pkg.helper")
        assert helper.OBJECTS == objects
        case = Case(name="e29_k20", decision="caching", grid=({"requests": REQUESTS},),
                    seeds=(0,), methods=("lru",), make_instance=helper.make)
        seen[objects] = runner.code_fingerprint(case)
        frame = runner.run([case], jobs=1, cache_dir=cache, progress=False)
        assert frame.attrs["runs_cached"] == 0, objects
        assert frame.loc[frame.method == "lru", "cost"].item() == pytest.approx(_lru_cost(objects))
    for name in [n for n in sys.modules if n.startswith("e29k20pkg")]:
        monkeypatch.delitem(sys.modules, name)
    assert seen[60] != seen[80]


def _toy_case():
    return toy_cache_case("e29_toy_cache")


_entry = cache_entry


def _rewrite(path, row, **fields):
    """The entry with ``fields`` changed and its digest recomputed: only the values are wrong."""
    row = {**row, **fields}
    row[runner.CHECKSUM] = runner._digest(row)
    path.write_text(json.dumps(row))


@pytest.mark.parametrize("bound", [math.inf, -math.inf])
def test_a_bound_entry_with_an_infinite_bound_is_recomputed(tmp_path, capsys, bound):
    # kills C4 (cache_row_problem refuses a NaN bound only, so a +-inf bound row is read back and
    # written for good). Expected, from the docstring's rule "a bound without a finite value is
    # never cached": one warning saying so, and the gaps of the clean run (finite).
    case = _toy_case()
    clean = runner.run([case], jobs=1, cache_dir=tmp_path, progress=False)
    path, row = _entry(tmp_path, runner.BOUND)
    _rewrite(path, row, bound=bound)
    capsys.readouterr()
    again = runner.run([case], jobs=1, cache_dir=tmp_path, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "never cached" in err[0] and "recomputing" in err[0], err
    assert again.attrs["runs_cached"] == clean.attrs["runs"] - 1
    assert list(again["gap"]) == list(clean["gap"]) and not again["gap"].isna().any()


@pytest.mark.parametrize("bound", [math.inf, -math.inf])
def test_a_bound_row_with_an_infinite_bound_is_not_written(tmp_path, bound):
    # kills C4 on the writer's side (_write_cache uses the same check). A well-formed bound row,
    # written out by hand, whose bound is +-inf (a solver's dual bound before it found one).
    row = {"case": "c", "decision": "caching", "params": "{}", "method": runner.BOUND,
           "instance": "i", "instance_hash": "h", "status": "ok", "seed": 0,
           runner.TRACE_READS: {}, "cost": math.nan, "wall_s": 0.1, "bound": bound,
           "bound_kind": "lp"}
    assert "never cached" in runner.cache_row_problem(row, digest=False)
    runner._write_cache(tmp_path, "k", row)
    assert not (tmp_path / "k.json").exists()
    assert runner.cache_row_problem({**row, "bound": 7.5}, digest=False) is None  # (well-formed)


def _limits_row(name, side, peak):
    row = {field: "" for field in limits.FIELDS}
    row.update(row=name, side=side, cap="-", cap_value=0, outcome="ok", wall_s=1.0,
               peak_rss_mb=peak, phases="{}")
    return row


def test_limits_merge_keeps_one_row_per_rerun_input_and_the_others_in_cases_order(tmp_path):
    # kills L1 (limits._merged keeps the earlier run's row of an input this run measured again,
    # so limits.csv / limits.md show two figures for one cap). Rows written out by hand: the
    # earlier csv has caching_requests (under, 300 MB) then baseline (under, 100 MB); this run
    # measured baseline again (120 MB). Expected, in CASES order (baseline is its first entry):
    # baseline at 120 only, then the kept caching_requests row; the earlier header marked.
    assert limits.CASES[0][0] == "baseline" and limits.CASES[1][0] == "caching_requests"
    with open(tmp_path / "limits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=limits.FIELDS)
        writer.writeheader()
        writer.writerow(_limits_row("caching_requests", "under", 300))
        writer.writerow(_limits_row("baseline", "under", 100))
    (tmp_path / "limits.md").write_text("Command: `old`\nMachine: m\n\nbody\n")
    new = [dict(_limits_row("baseline", "under", 120), phases={})]
    merged, earlier = limits._merged(tmp_path, new)
    assert [(r["row"], r["peak_rss_mb"]) for r in merged] == [("baseline", 120),
                                                            ("caching_requests", 300)]
    assert earlier == ["Earlier run (the rows not run above): Command: `old`",
                       "Earlier run (the rows not run above): Machine: m"]


@pytest.mark.parametrize("how, fields, said", [
    # kills C11 (an entry with a field the writer never writes is accepted; it would become a
    # column of the run's frame): a method row carrying "gap".
    ("extra field", {"gap": 0.0}, "unknown field 'gap'"),
    # kills C8 (a bool seed passes the type check, and False == 0 passes the identity check).
    ("seed a bool", {"seed": False}, "seed is False"),
    # kills C7 (wall_s < -1 instead of < 0): -0.5 s, just inside the mutant's boundary.
    ("negative wall time", {"wall_s": -0.5}, "wall_s is -0.5"),
])
def test_an_entry_with_a_wrong_field_is_recomputed_with_one_warning(tmp_path, capsys, how,
                                                                    fields, said):
    # Expected: the reader's rule (exactly the writer's fields, a whole non-bool seed, no negative
    # wall time): one warning naming the problem, only that unit recomputed, the clean costs.
    case = _toy_case()
    clean = runner.run([case], jobs=1, cache_dir=tmp_path, progress=False)
    path, row = _entry(tmp_path, "greedy")
    _rewrite(path, row, **fields)
    capsys.readouterr()
    again = runner.run([case], jobs=1, cache_dir=tmp_path, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and said in err[0] and repr(str(path)) in err[0], err
    assert again.attrs["runs_cached"] == clean.attrs["runs"] - 1
    keep = ["method", "cost", "bound", "gap", "status"]
    pd.testing.assert_frame_equal(again[keep], clean[keep])


def test_a_bad_entry_is_removed_when_the_recomputed_row_is_not_cacheable(tmp_path):
    # kills C9 (_write_cache leaves an old entry of the key in place when the new row is not
    # cached, so it is read, warned of and recomputed on every run). Promise of _write_cache's
    # docstring; the error row is written out by hand.
    (tmp_path / "k.json").write_text("{not json")
    row = {"case": "c", "decision": "caching", "params": "{}", "method": "lru", "instance": "i",
           "instance_hash": "h", "status": "error: ValueError: x", "seed": 0,
           runner.TRACE_READS: {}, "cost": math.nan, "wall_s": math.nan}
    runner._write_cache(tmp_path, "k", row)
    assert not (tmp_path / "k.json").exists()


def test_the_no_bound_note_counts_only_the_runs_that_ran():
    # kills P10 (report.summarise: "no bound in k of N runs" with N = all rows, error rows too).
    # One group, written out by hand: an ok run without a bound (time_limit) and an error run
    # (no cost). By hand: 1 run produced a cost, and that 1 has no bound.
    frame = pd.DataFrame({
        "case": ["c", "c"], "method": ["m", "m"], "decision": ["caching"] * 2,
        "cost": [5.0, math.nan], "gap": [math.nan, math.nan], "bound": [math.nan, math.nan],
        "wall_s": [0.1, math.nan], "bound_kind": ["lp", "lp"],
        "bound_status": ["time_limit"] * 2, "status": ["ok", "error: ValueError: x"]})
    out = summarise(frame)
    assert list(out["status"]) == ["1 error; no bound in 1 of 1 run (time_limit)"]
