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
