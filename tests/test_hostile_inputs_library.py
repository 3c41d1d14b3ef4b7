"""The library manifest's field types are checked on load, naming the entry and the field (on a
temporary copy: the real manifest is never edited). Before, "objective": "abc" and "solve": [1]
were tracebacks in `servopt library verify`, "size": "huge" said "tuple.index(x): x not in tuple"
and "bound": true was listed as 1."""

from __future__ import annotations

import json
import shutil

import pytest

from servopt import cli
from servopt.core import InvalidInstanceError
from servopt.instances import library


def _copy(tmp_path):
    shutil.copy(library.LIBRARY_DIR / "manifest.json", tmp_path / "manifest.json")
    return tmp_path / "manifest.json"


def _edit(path, field, value, index=0):
    data = json.loads(path.read_text())
    data["instances"][index][field] = value
    path.write_text(json.dumps(data))
    return data["instances"][index]["name"]


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("objective", "abc", "a finite number or null"),
    ("bound", True, "a finite number or null"),
    ("wall_s", [1], "a finite number or null"),
    ("solve", [1], "an object of solve options"),
    ("size", "huge", "one of small, medium, large"),
    ("decision", 5, "text"),
    ("sha256", "abc", "64 lowercase hexadecimal digits"),
    ("file", "../../etc/passwd", "a path inside the library folder"),
])
def test_a_field_of_the_wrong_type_is_refused_naming_the_entry(tmp_path, field, value, rule):
    path = _copy(tmp_path)
    name = _edit(path, field, value)
    with pytest.raises(InvalidInstanceError) as caught:
        library.read_manifest(path)
    assert f"entry 0 ({name!r}): field {field!r} must be {rule}, got {value!r}" in str(caught.value)


def test_unknown_missing_and_twice_listed_entries(tmp_path):
    path = _copy(tmp_path)
    data = json.loads(path.read_text())
    del data["instances"][1]["objective"]
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInstanceError, match=r"entry 1 \(.*\): missing field\(s\) \['objective'\]"):
        library.read_manifest(path)
    data = json.loads(_copy(tmp_path).read_text())
    data["instances"].append(data["instances"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInstanceError, match="listed twice"):
        library.read_manifest(path)


def test_library_verify_says_which_field_in_one_line(tmp_path, monkeypatch, capsys):
    _edit(_copy(tmp_path), "objective", "abc")
    monkeypatch.setattr(library, "LIBRARY_DIR", tmp_path)
    assert cli.main(["library", "verify", "bs_offline_10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'objective' must be a finite number or null" in err[0], err


def test_the_real_manifest_passes():
    entries = library.read_manifest()
    assert len(entries) >= 15 and all(e.size in library.SIZES for e in entries.values())
