"""Library entries with no recorded value (R46 F1): ``add`` refuses to record an empty solve,
``check``/``verify`` fail such an entry with a row naming it instead of a TypeError, and a
re-solve that found only one end of a MIP interval is judged by that end.

Expected outcomes are worked by hand from the interval rule: a min MIP recorded as
[bound, incumbent] = [10, 12] is consistent with a re-solve [lo, hi] when lo <= 12 and 10 <= hi.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from servopt.benchmarks import library as lib_bench
from servopt.core.solution import Solution
from servopt.instances import expert_placement, library

NAN = math.nan


def entry(objective, bound, kind, name="e"):
    return library.Entry(name=name, decision="caching", size="medium", file="e.json",
                         sha256="", objective=objective, bound=bound, bound_kind=kind, solve={},
                         obtained="")


@pytest.mark.parametrize("objective, bound, kind, missing", [
    (None, 5.0, "mip_bound", "objective"),
    (6.0, None, "mip_bound", "bound"),
    (None, None, "mip_bound", "objective and no bound"),
    (None, 5.0, "optimal", "objective"),
    (5.0, None, "lp_relaxation", "bound"),
])
def test_a_null_recorded_value_fails_the_check_naming_the_instance(objective, bound, kind,
                                                                   missing):
    ok, message = lib_bench.check(entry(objective, bound, kind, name="cache_x"), 6.0, 5.0, 1e-6)
    assert not ok
    assert "'cache_x'" in message and "records no" in message
    assert all(word in message for word in missing.split(" and no "))


def test_null_values_the_check_does_not_use_are_fine():
    # an LP relaxation records no objective; an optimum is judged by its objective alone
    assert lib_bench.check(entry(None, 5.0, "lp_relaxation"), NAN, 5.0, 1e-6)[0]
    assert lib_bench.check(entry(5.0, None, "optimal"), 5.0, 5.0, 1e-6)[0]


def test_a_resolve_with_one_end_is_judged_by_that_end():
    mip = entry(12.0, 10.0, "mip_bound")  # min: [10, 12]
    ok, message = lib_bench.check(mip, NAN, 11.0, 1e-6)  # [11, inf): 11 <= 12
    assert ok and "no incumbent" in message
    assert not lib_bench.check(mip, NAN, 12.5, 1e-6)[0]  # a bound above the recorded incumbent
    assert lib_bench.check(mip, 11.0, NAN, 1e-6)[0]  # (-inf, 11]: 10 <= 11
    assert not lib_bench.check(mip, 9.0, NAN, 1e-6)[0]  # an incumbent below the recorded bound
    ok, message = lib_bench.check(mip, NAN, NAN, 1e-6)
    assert not ok and "neither" in message
    big = entry(12.0, 14.0, "mip_bound")  # max: [incumbent 12, bound 14]
    assert lib_bench.check(big, NAN, 13.0, 1e-6)[0]  # (-inf, 13]: 12 <= 13
    assert not lib_bench.check(big, NAN, 11.5, 1e-6)[0]  # a bound below the recorded incumbent


@pytest.fixture
def library_copy(tmp_path, monkeypatch):
    target = tmp_path / "library"
    shutil.copytree(library.LIBRARY_DIR, target,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(library, "LIBRARY_DIR", target)
    return target


def test_verify_reports_a_null_entry_and_goes_on(library_copy):
    manifest = library_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    for item in data["instances"]:
        if item["name"] == "ep_tiny":
            item.update(objective=None, bound=None, bound_kind="mip_bound")
    manifest.write_text(json.dumps(data))
    table = lib_bench.verify(["ep_tiny", "bs_offline_10"]).set_index("name")
    assert not table.loc["ep_tiny", "ok"]
    assert "'ep_tiny'" in table.loc["ep_tiny", "message"]
    assert "records no" in table.loc["ep_tiny", "message"]
    assert table.loc["bs_offline_10", "ok"], table.loc["bs_offline_10", "message"]


@pytest.mark.parametrize("answer, relax, missing", [
    (Solution(status="time_limit", objective=NAN, bound=NAN, gap=NAN, wall_s=0.0), False,
     "objective and no bound"),
    (Solution(status="time_limit", objective=NAN, bound=7.0, gap=NAN, wall_s=0.0), False,
     "objective"),
    (Solution(status="optimal", objective=NAN, bound=NAN, gap=NAN, wall_s=0.0), True, "bound"),
])
def test_add_refuses_an_empty_solve_and_writes_nothing(tmp_path, monkeypatch, answer, relax,
                                                       missing):
    monkeypatch.setattr(lib_bench.exact, "solve", lambda instance, **kw: answer)
    solve_kw = {"relax": True} if relax else {"time_limit": 0.05}
    with pytest.raises(RuntimeError, match=f"'ep_empty'.*found no {missing}"):
        lib_bench.add("ep_empty", "large", lambda: expert_placement.generate(), solve_kw,
                      "test", directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_add_still_records_a_solve_with_values(tmp_path, monkeypatch):
    answer = Solution(status="time_limit", objective=12.0, bound=10.0, gap=1 / 6, wall_s=0.0)
    monkeypatch.setattr(lib_bench.exact, "solve", lambda instance, **kw: answer)
    e = lib_bench.add("ep_some", "medium", lambda: expert_placement.generate(),
                      {"time_limit": 1}, "test", directory=tmp_path)
    assert (e.objective, e.bound, e.bound_kind) == (12.0, 10.0, "mip_bound")
    assert (tmp_path / e.file).is_file()
