"""Instance base: validation at construction, JSON round trip, and clear errors on bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import servopt
from servopt.core import InvalidInstanceError
from servopt.instances import load

from toy_decision import ToyInstance

WYNDOR = {"profit": [3.0, 5.0], "usage": [[1, 0], [0, 2], [3, 2]], "capacity": [4, 12, 18]}


def test_validation_at_construction_names_the_rule():
    with pytest.raises(InvalidInstanceError, match="usage must be resources x products"):
        ToyInstance(profit=[1.0, 2.0], usage=[[1.0]], capacity=[1.0])
    assert issubclass(InvalidInstanceError, ValueError)


def test_json_round_trip(tmp_path):
    inst = ToyInstance(**WYNDOR)
    path = tmp_path / "toy.json"
    inst.to_json(path)
    data = json.loads(path.read_text())
    assert data["decision"] == "toy_production" and data["schema_version"] == 2
    back = load(path)
    assert isinstance(back, ToyInstance)
    np.testing.assert_array_equal(back.usage, inst.usage)
    assert back.content_hash() == inst.content_hash()
    assert ToyInstance.from_json(inst.to_json()).summary() == inst.summary()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"fields": {}}', "no 'decision' field"),
        ('{"decision": "nonsense", "schema_version": 1, "fields": {}}', "unknown decision"),
        ('{"decision": "toy_production", "schema_version": 3, "fields": {}}', "newer than"),
        ('{"decision": "toy_production", "schema_version": 2, "fields": {"bogus": 1}}',
         "unknown field"),
        ('{"decision": "toy_production", "schema_version": 2, "fields": {"profit": [1]}}',
         "missing"),
        ('{"decision": "toy_production", "schema_version": 2, "fields": '
         '{"profit": {"ndarray": [1], "dtype": "object"}, "usage": [[1]], "capacity": [1]}}',
         "unsupported array dtype"),
        # arrays whose cast would crash or silently change a number
        *[('{"decision": "toy_production", "schema_version": 2, "fields": '
           f'{{"profit": {{"ndarray": {values}, "dtype": "{dtype}"}}, "usage": [[1, 1]], "capacity": [1]}}}}',
           message) for values, dtype, message in [
              ("[1e300, 1]", "int64", "outside the int64 range"),
              ("[300, 1]", "uint8", "outside the uint8 range"),
              ("[1.5, 1]", "int64", "whole numbers"),
              ("[5.5, 1]", "bool", "expected true/false"),
              ("[true, false]", "float64", "expected numbers"),
              ('["a", 1]', "float64", "expected numbers"),
              ("[NaN, 1]", "float64", "NaN or infinity"),
              ("[Infinity, 1]", "int64", "NaN or infinity"),
              ("[[1], [1, 2]]", "float64", "not a rectangular"),
              ("[2e12, 1]", "float64", "beyond 1e\\+12"),
          ]],
        ('{"decision": "toy_production", "schema_version": true, "fields": {}}', "schema_version"),
        ('{"decision": "toy_production", "schema_version": 0, "fields": {}}', "schema_version"),
    ],
)
def test_bad_files_are_reported_clearly(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InvalidInstanceError, match=message):
        load(path)


def test_other_decision_is_refused():
    inst = ToyInstance(**WYNDOR)
    data = inst.to_dict()
    data["decision"] = "caching"
    with pytest.raises(InvalidInstanceError, match="not a 'toy_production' instance"):
        ToyInstance.from_dict(data)


def test_missing_file():
    with pytest.raises(InvalidInstanceError, match="no such file"):
        load("/nonexistent/instance.json")


def test_top_level_api():
    inst = ToyInstance(**WYNDOR)
    sol = servopt.solve(inst)
    assert sol.objective == pytest.approx(36.0)
    top = sol.top_prices(1)
    assert top.iloc[0]["price"] == pytest.approx(1.5)  # the 2 x2 <= 12 row, by hand


def test_top_prices_overall_and_per_family():
    import pandas as pd

    from servopt.core import Solution

    sol = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0, prices={
        "balance": pd.Series([5.0, -7.0, 6.0]),
        "capacity": pd.Series([0.5, 0.0, 2.0], index=pd.Index(["a", "b", "c"], name="gpu")),
        "scalar": pd.Series([3.0], index=[np.nan]),  # a scalar row (nan label) must not break it
    })
    overall = sol.top_prices(3)
    assert list(overall["price"]) == [-7.0, 6.0, 5.0]  # by magnitude: the balance rows hide the rest
    per = sol.top_prices(1, per_family=True)
    assert list(per["family"]) == ["balance", "capacity", "scalar"]
    assert list(per["price"]) == [-7.0, 2.0, 3.0] and per.loc[1, "index"] == "c"


def test_instance_arrays_are_read_only_copies():
    # a policy that edits its inputs in place must fail, not change the instance for every
    # method evaluated after it; the caller's own arrays stay writable and unshared
    from servopt.instances import caching

    size = np.array([1.0, 2.0])
    inst = caching.Instance(time=np.arange(3.0), object_id=np.array([0, 1, 0]), size=size,
                            miss_cost=np.array([1.0, 1.0]), capacity=2.0)
    with pytest.raises(ValueError, match="read-only"):
        inst.size /= 2
    size[0] = 5.0  # the caller's array is still theirs
    assert inst.size.tolist() == [1.0, 2.0]
    assert caching.Instance.from_json(inst.to_json()).size.flags.writeable is False


def test_the_readme_python_examples_run():
    # every ```python block of the README, run in order in one namespace
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # our own README, not data
    assert namespace["instance"].decision == "batch_scheduling"


def test_copies_and_unpickled_instances_keep_read_only_arrays():
    # deepcopy and pickle skip __post_init__: a "safe copy" must not reopen the hole
    import copy
    import pickle

    from servopt.instances import caching

    inst = caching.generate(requests=200, seed=0)
    for other in (copy.deepcopy(inst), pickle.loads(pickle.dumps(inst))):
        assert other.to_json() == inst.to_json()
        with pytest.raises(ValueError, match="read-only"):
            other.miss_cost /= 2
