"""The instance library: manifest, hash check (tampered files are reported), verify, CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from servopt import cli
from servopt.benchmarks import library as lib_bench
from servopt.core import InvalidInstanceError
from servopt.instances import library

SMALL = library.names(sizes=("small",))


def test_every_decision_has_three_sizes():
    entries = library.read_manifest()
    for decision in ("expert_placement", "decode_routing", "batch_scheduling", "capacity",
                     "caching"):
        sizes = {e.size for e in entries.values() if e.decision == decision}
        assert sizes == {"small", "medium", "large"}, decision
    for e in entries.values():
        if e.size == "small":
            assert e.bound_kind in ("optimal", "lp_relaxation")


@pytest.mark.parametrize("name", SMALL)
def test_small_instances_verify(name):
    table = lib_bench.verify([name])
    assert bool(table["ok"].iloc[0]), table["message"].iloc[0]


@pytest.fixture
def library_copy(tmp_path, monkeypatch):
    target = tmp_path / "library"
    shutil.copytree(library.LIBRARY_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(library, "LIBRARY_DIR", target)
    return target


def test_tampered_file_is_reported_not_trusted(library_copy, capsys):
    name = SMALL[0]
    entry = library.entry(name)
    path = library_copy / entry.file
    path.write_text(path.read_text().replace(",", ", ", 1))
    with pytest.raises(InvalidInstanceError, match="corrupted or was modified"):
        library.load(name)
    table = lib_bench.verify([name])
    assert not table["ok"].iloc[0] and "modified" in table["message"].iloc[0]
    assert cli.main(["library", "verify", name]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_changed_manifest_value_fails_verify(library_copy):
    name = SMALL[0]
    manifest = library_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    for item in data["instances"]:
        if item["name"] == name:
            key = "objective" if item["bound_kind"] == "optimal" else "bound"
            item[key] = item[key] * 1.01 + 1.0
    manifest.write_text(json.dumps(data))
    table = lib_bench.verify([name])
    assert not table["ok"].iloc[0] and "differs" in table["message"].iloc[0]


def test_manifest_decision_must_match_the_file(library_copy):
    name = SMALL[0]
    manifest = library_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    for item in data["instances"]:
        if item["name"] == name:
            item["decision"] = "caching" if item["decision"] != "caching" else "capacity"
    manifest.write_text(json.dumps(data))
    with pytest.raises(InvalidInstanceError, match="the manifest says"):
        library.load(name)


def test_missing_file_and_bad_manifest(library_copy):
    name = SMALL[0]
    (library_copy / library.entry(name).file).unlink()
    with pytest.raises(InvalidInstanceError, match="missing"):
        library.load(name)
    (library_copy / "manifest.json").write_text("{broken")
    with pytest.raises(InvalidInstanceError, match="manifest is malformed"):
        library.read_manifest()


def test_cli_list_and_show(capsys):
    assert cli.main(["library", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SMALL)
    assert cli.main(["library", "show", SMALL[0]]) == 0
    assert "sha256" in capsys.readouterr().out
    assert cli.main(["library", "show", "no_such_instance"]) == 2
    capsys.readouterr()
    assert cli.main(["library", "show", "ep_tny"]) == 2  # a typo: the close names (R51)
    assert "no library instance named 'ep_tny'; did you mean ep_tiny" in capsys.readouterr().err
    assert cli.main(["library", "list", "extra"]) == 2  # names are for show/verify
    # solve takes a library name where a file is expected (after the sha256 check)
    assert cli.main(["solve", "ep_tiny"]) == 0
    out = capsys.readouterr().out
    recorded = library.entry("ep_tiny").objective
    assert f"objective {recorded:.8g}" in out and "status    optimal" in out


def test_verify_check_by_hand():
    # an optimum must be reproduced within rtol
    opt = library.Entry(name="x", decision="caching", size="small", file="x.json", sha256="",
                        objective=5.0, bound=5.0, bound_kind="optimal", solve={}, obtained="")
    assert lib_bench.check(opt, 5.00001, 5.00001, 1e-5)[0]
    assert not lib_bench.check(opt, 5.1, 5.1, 1e-5)[0]
    # a MIP recorded as [bound 10, incumbent 12] (min): a re-solve proving [11, 12] or finding
    # [9.5, 11.5] is consistent; [12.5, 13] (bound above the recorded incumbent) or [8, 9]
    # (incumbent below the recorded bound) contradicts it
    mip = library.Entry(name="y", decision="caching", size="medium", file="y.json", sha256="",
                        objective=12.0, bound=10.0, bound_kind="mip_bound", solve={}, obtained="")
    assert lib_bench.check(mip, 12.0, 11.0, 1e-5)[0]
    assert lib_bench.check(mip, 11.5, 9.5, 1e-5)[0]
    assert not lib_bench.check(mip, 13.0, 12.5, 1e-5)[0]
    assert not lib_bench.check(mip, 9.0, 8.0, 1e-5)[0]
    # max: recorded [incumbent 12, bound 14]; [13, 13.5] is consistent, [14.5, 15] is not
    big = library.Entry(name="z", decision="caching", size="medium", file="z.json", sha256="",
                        objective=12.0, bound=14.0, bound_kind="mip_bound", solve={}, obtained="")
    assert lib_bench.check(big, 13.0, 13.5, 1e-5)[0]
    assert not lib_bench.check(big, 14.5, 15.0, 1e-5)[0]


def test_an_objective_below_its_bound_is_not_called_optimal(monkeypatch):
    # a solver answer whose objective is below its own bound (gap -inf against a bound of 0) is a
    # contradiction, not an optimum: the library records it as a MIP interval, which check() judges
    from servopt.core.solution import Solution, relative_gap
    answer = Solution(status="optimal", objective=-5.0, bound=0.0, gap=relative_gap(-5.0, 0.0),
                      wall_s=0.0)
    monkeypatch.setattr(lib_bench.exact, "solve", lambda instance, **kw: answer)
    assert answer.gap == float("-inf")
    assert lib_bench.solve_entry(None, {})[2] == "mip_bound"
    exact_answer = Solution(status="optimal", objective=5.0, bound=5.0, gap=0.0, wall_s=0.0)
    monkeypatch.setattr(lib_bench.exact, "solve", lambda instance, **kw: exact_answer)
    assert lib_bench.solve_entry(None, {})[2] == "optimal"


def test_every_manifest_summary_is_what_its_instance_says_now():
    # R25: a summary wording change (caching's "of distinct bytes" -> "of the requested objects'
    # tokens") left the manifest describing the instances in the old words
    stale = [(name, library.entry(name).summary, library.load(name).summary())
             for name in library.names(sizes=("small", "medium", "large"))
             if library.entry(name).summary != library.load(name).summary()]
    assert not stale
