"""Instance base: validation at construction, JSON round trip, and clear errors on bad files.

``test_the_readme_python_examples_run`` reads README.md from the source tree (a clone or the
unpacked sdist, as README "Tests and CI" says); an installed wheel does not carry it."""

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


# ---------------------------------------------------------------------------------------------
# Mutation round 2: core helpers (each test says the hole it closes)
# ---------------------------------------------------------------------------------------------
def test_content_hash_sees_every_field_and_only_the_content():
    # closes: a hash of part of the JSON (two instances differing only in a late field hashed
    # alike), or of the fields without the decision
    base = ToyInstance(**WYNDOR)
    same = ToyInstance(profit=[3.0, 5.0], usage=np.array([[1, 0], [0, 2], [3, 2]]), capacity=(4, 12, 18))
    assert same.content_hash() == base.content_hash()
    for change in ({"capacity": [4, 12, 19]}, {"sense": "min"}, {"profit": [3.0, 5.5]}):
        other = ToyInstance(**{**WYNDOR, **change})
        assert other.content_hash() != base.content_hash(), change
    # a difference in the last number of a long instance (its usage row is written last)
    usage = np.ones((1, 300))
    long = ToyInstance(profit=np.ones(300), usage=usage, capacity=[5.0])
    usage[0, -1] = 2.0
    assert long.content_hash() != ToyInstance(profit=np.ones(300), usage=usage, capacity=[5.0]).content_hash()


def test_a_huge_negative_number_is_refused_like_a_huge_positive_one():
    # closes: the magnitude check looking only at large positive scalars and integer arrays
    for value in (-2e12, 2e12):
        with pytest.raises(InvalidInstanceError, match="beyond 1e\\+12"):
            ToyInstance(profit=[value, 1.0], usage=[[1, 0]], capacity=[1.0])
        with pytest.raises(InvalidInstanceError, match="beyond 1e\\+12"):
            ToyInstance(profit=np.array([int(value), 1], dtype=np.int64), usage=[[1, 0]], capacity=[1.0])
    from servopt.core.instance import _check_magnitude

    with pytest.raises(InvalidInstanceError, match="beyond"):
        _check_magnitude(-2e12, "budget")
    _check_magnitude(-1e12, "budget")  # the limit itself is allowed


def test_whole_number_and_number_checks_at_their_edges():
    # closes: off-by-one at low / high, and True accepted as 1
    from servopt.core.checks import number, whole_number

    assert whole_number("workers", 1) == 1 and whole_number("workers", 0, low=0) == 0
    assert whole_number("workers", 5, high=5) == 5 and whole_number("workers", np.int64(3)) == 3
    for bad, match in ((0, ">= 1"), (6, "at most 5"), (True, ">= 1"), (2.0, ">= 1")):
        with pytest.raises(InvalidInstanceError, match=match):
            whole_number("workers", bad, high=5)
    assert number("rate", 0.5, lambda v: v > 0, "positive") == 0.5
    for bad in (True, False, "1", float("nan"), -1.0):
        with pytest.raises(InvalidInstanceError, match="rate must be positive"):
            number("rate", bad, lambda v: v >= 0 if not isinstance(v, str) else False, "positive")


def test_matrix_families_must_label_every_position_and_stay_inside_the_model():
    # closes: a family with fewer positions than labels, and positions below -1, accepted
    import pandas as pd

    from servopt.core.matrix import Family, MatrixModel

    with pytest.raises(ValueError, match="positions"):
        Family([0, 1], pd.RangeIndex(3))
    with pytest.raises(ValueError, match="positions"):
        Family([0, 1, 2], pd.RangeIndex(2))

    def model(rows=None, columns=None, bound_rows=None, integer=None):
        return MatrixModel(objective=[1.0, 1.0], matrix=np.eye(2), row_lower=[0.0, 0.0],
                           row_upper=[1.0, 1.0], col_lower=[0.0, 0.0], col_upper=[1.0, 1.0],
                           rows=rows or {"r": Family([0, 1], pd.RangeIndex(2))},
                           columns=columns or {"x": Family([0, 1], pd.RangeIndex(2))},
                           bound_rows=bound_rows or {}, integer=integer)

    assert model(rows={"r": Family([-1, 1], pd.RangeIndex(2))}).rows["r"].positions.tolist() == [-1, 1]
    for families in ({"rows": {"r": Family([0, 2], pd.RangeIndex(2))}},
                     {"rows": {"r": Family([-2, 1], pd.RangeIndex(2))}},
                     {"columns": {"x": Family([0, 2], pd.RangeIndex(2))}},
                     {"bound_rows": {"u": Family([2], pd.RangeIndex(1))}}):
        with pytest.raises(ValueError, match=r"outside 0\.\.1"):
            model(**families)
    # one integer column makes a MIP; none (or no mask) an LP
    assert model(integer=[True, False]).is_mip and not model(integer=[False, False]).is_mip
    assert not model().is_mip


def test_clean_prices_tolerance_is_relative_to_the_largest_price():
    # closes: the noise tolerance not scaled by the largest price. Prices of 1000 per unit: a
    # -1e-5 is 1e-8 of the largest, solver noise (-> 0); at scale 1 it is a real -1e-5
    import pandas as pd

    from servopt.core.solution import clean_prices

    big = clean_prices(pd.Series([-1e-5, 1000.0]), inequality=True)
    assert big.tolist() == [0.0, 1000.0]
    small = clean_prices(pd.Series([-1e-5, 1.0]), inequality=True)
    assert small.tolist() == [-1e-5, 1.0]


def test_relative_gap_tolerance_is_relative_to_the_bound():
    # closes: an absolute 1e-9 tolerance. A solver's objective 1e9 + 0.5 against its bound 1e9
    # differs by 5e-10 relative: the same value (gap 0); 1e9 + 10 is a real gap of 1e-8
    from servopt.core.solution import relative_gap

    assert relative_gap(1e9 + 0.5, 1e9) == 0.0
    assert relative_gap(1e9 + 10, 1e9) == pytest.approx(1e-8)
    assert relative_gap(1e9 - 0.5, 1e9, "max") == 0.0


def test_solution_summary_top_prices_and_save(tmp_path):
    # closes: the LP relaxation / model label swapped, top_prices returning more than n rows,
    # objective and bound swapped in solution.json, stale CSVs of an earlier save kept
    import pandas as pd

    from servopt.core import Solution

    prices = {"capacity": pd.Series([0.5, 3.0, 2.0, 1.0], index=pd.RangeIndex(4, name="gpu"))}
    sol = Solution(status="time_limit", objective=12.0, bound=10.0, gap=0.2, wall_s=1.0,
                   prices=prices, relaxed=True, decision="toy")
    assert "LP relaxation" in sol.summary()
    assert "LP relaxation" not in Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0,
                                           wall_s=0.0).summary()
    top = sol.top_prices(2)
    assert list(top["price"]) == [3.0, 2.0] and list(top["index"]) == [1, 2]
    assert len(sol.top_prices(2, per_family=True)) == 2
    sol.save(tmp_path)
    head = json.loads((tmp_path / "solution.json").read_text())
    assert (head["objective"], head["bound"], head["gap"], head["relaxed"]) == (12.0, 10.0, 0.2, True)
    assert head["prices"] == ["capacity"]
    again = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                     prices={"memory": pd.Series([1.0])})
    again.save(tmp_path)
    assert sorted(p.name for p in (tmp_path / "prices").iterdir()) == ["memory.csv"]
    back = pd.read_csv(tmp_path / "prices" / "memory.csv", index_col=0)
    assert back["memory"].tolist() == [1.0]


def test_register_and_unregister_a_decision():
    import types

    from servopt.core import registry
    solvers = types.SimpleNamespace(POLICIES={})
    registry.register_decision("toy_plugin_test", solvers=solvers)
    try:
        assert registry.known_decisions()[:5] == registry.DECISIONS
        assert "toy_plugin_test" in registry.known_decisions()
        assert registry.layer_module("toy_plugin_test", "solvers") is solvers
    finally:
        registry.unregister_decision("toy_plugin_test")
    assert "toy_plugin_test" not in registry.known_decisions()
    registry.unregister_decision("toy_plugin_test")  # forgetting twice is no error
    with pytest.raises(ValueError, match="unknown layer"):
        registry.register_decision("toy_plugin_test", bogus=solvers)
