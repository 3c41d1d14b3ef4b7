"""Instance and solution files: a key the writers never emit is refused by name, not ignored
(R28 #2: a "max_batch" beside "fields" loaded as None and moved the objective from 436 to 186;
a typo'd "dtpye" silently made the array float64)."""

from __future__ import annotations

import json

import pytest

import servopt
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as bs
from servopt.instances.library import LIBRARY_DIR


def _data():
    return bs.generate(12, seed=0).to_dict()


def test_the_writer_emits_exactly_the_accepted_keys():
    data = _data()
    assert sorted(data) == ["decision", "fields", "schema_version"]
    assert servopt.load(json.dumps(data)).content_hash() == bs.generate(12, seed=0).content_hash()


@pytest.mark.parametrize("key", ["max_batch", "schema_versoin", "field"])
def test_a_top_level_key_beside_fields_is_refused(key):
    data = _data()
    data[key] = 2
    with pytest.raises(InvalidInstanceError, match=rf"unknown top-level key\(s\) \['{key}'\]"):
        servopt.load(json.dumps(data))
    with pytest.raises(InvalidInstanceError, match=key):
        bs.Instance.from_dict(data)


@pytest.mark.parametrize("extra, name", [({"dtpye": "int64"}, "dtpye"), ({"shape": [3, 4]}, "shape")])
def test_a_stray_key_in_an_array_is_refused(extra, name):
    data = _data()
    assert set(data["fields"]["arrival"]) == {"ndarray", "dtype"}
    data["fields"]["arrival"].update(extra)
    with pytest.raises(InvalidInstanceError, match=rf"field 'arrival'.*unknown key\(s\) \['{name}'\]"):
        servopt.load(json.dumps(data))


@pytest.mark.parametrize("extra", [{"index": [1, 0]}, {"columns": ["b", "a"]}])
def test_a_stray_key_in_a_frame_is_refused(extra):
    data = json.loads((LIBRARY_DIR / "decode_routing" / "dr_hindsight_8x2.json").read_text())
    assert set(data["fields"]["requests"]) == {"frame"}
    servopt.load(json.dumps(data))  # as shipped: loads
    data["fields"]["requests"].update(extra)
    key = next(iter(extra))
    with pytest.raises(InvalidInstanceError, match=rf"field 'requests'.*unknown key\(s\) \['{key}'\]"):
        servopt.load(json.dumps(data))


def test_the_dtype_may_still_be_left_out():
    # a hand-written array without "dtype" reads as float64, as documented; only extra keys go
    data = _data()
    data["fields"]["kv_memory"] = 5000
    del data["fields"]["arrival"]["dtype"]
    assert servopt.load(json.dumps(data)).arrival.tolist() == bs.generate(12, seed=0).arrival.tolist()


def _saved_head(tmp_path):
    from servopt.core import Solution
    folder = servopt.solve(bs.generate(6, seed=0), relax=True).save(tmp_path / "s")
    head = json.loads((folder / "solution.json").read_text())
    return Solution, folder, head


def test_solution_json_holds_exactly_what_save_writes(tmp_path):
    Solution, folder, head = _saved_head(tmp_path)
    from servopt.core.solution import _HEAD_KEYS
    assert set(head) == _HEAD_KEYS
    assert Solution.load(folder).objective == pytest.approx(head["objective"])


@pytest.mark.parametrize("key", ["objectve", "max_batch"])
def test_solution_json_refuses_an_unknown_key(tmp_path, key):
    Solution, folder, head = _saved_head(tmp_path)
    (folder / "solution.json").write_text(json.dumps({**head, key: 1.0}))
    with pytest.raises(InvalidInstanceError, match=rf"unknown key\(s\) \['{key}'\]"):
        Solution.load(folder)


def test_solution_json_refuses_a_missing_objective(tmp_path):
    # it read as NaN (no objective) without a word
    Solution, folder, head = _saved_head(tmp_path)
    del head["objective"]
    head["gap"] = None  # so the gap check cannot catch it instead
    (folder / "solution.json").write_text(json.dumps(head))
    with pytest.raises(InvalidInstanceError, match="objective is missing"):
        Solution.load(folder)
