"""``Solution.load`` reads ``solution.json`` with the guards every other JSON reader has (R44 F5):
a key given twice is refused (it silently kept the last: a "time_limit" solution read back as
"optimal"), and nesting too deep is an InvalidInstanceError naming the file (it was a raw
RecursionError). Truth: the files as written here, and what ``servopt.instances.load`` says."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from servopt.core import InvalidInstanceError, Solution
from servopt.instances import load as load_instance


def _saved(tmp_path) -> str:
    index = pd.Index([0, 1], name="worker")
    Solution(status="time_limit", objective=10.0, bound=8.0, gap=0.25, wall_s=0.5,
             prices={"cap": pd.Series([1.5, 2.0], index=index, name="cap")}).save(tmp_path)
    return (tmp_path / "solution.json").read_text()


def test_a_key_given_twice_is_refused_naming_the_file_and_key(tmp_path):
    text = _saved(tmp_path)
    assert Solution.load(tmp_path).status == "time_limit"
    (tmp_path / "solution.json").write_text(text.replace("{", '{"status": "optimal",', 1))
    with pytest.raises(InvalidInstanceError, match=r"solution\.json: the key 'status' appears "
                                                   r"twice in one JSON object"):
        Solution.load(tmp_path)


def test_a_key_given_twice_in_a_table_record_is_refused(tmp_path):
    text = _saved(tmp_path)
    head = json.loads(text)
    rows = head["tables"]["prices"]["cap"]["rows"]
    (tmp_path / "solution.json").write_text(text.replace(f'"rows": {rows}', f'"rows": 9, "rows": {rows}', 1))
    with pytest.raises(InvalidInstanceError, match="the key 'rows' appears twice"):
        Solution.load(tmp_path)


def test_nesting_too_deep_is_refused_as_the_instance_reader_refuses_it(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "solution.json").write_text(deep)
    with pytest.raises(InvalidInstanceError, match=r"solution\.json: the JSON is nested too deeply"):
        Solution.load(tmp_path)
    (tmp_path / "instance.json").write_text(deep)
    with pytest.raises(InvalidInstanceError, match="the JSON is nested too deeply"):
        load_instance(tmp_path / "instance.json")
