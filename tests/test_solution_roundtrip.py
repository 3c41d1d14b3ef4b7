"""Solution.save -> Solution.load gives back every table exactly as the solve returned it: the
same type (Series or DataFrame), index, columns, dtypes and values, for each decision and backend.

Decode routing's ``x`` (request x worker share, a DataFrame) used to come back as a long Series
over (request, worker): a saved solution did not load in its own shape.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.core import InvalidInstanceError, Solution
from servopt.instances import library
from servopt.solvers import expert_placement as ep_rules

# the small library instance of each decision (``servopt library list``)
SMALL = {"expert_placement": "ep_tiny", "decode_routing": "dr_hindsight_8x2",
         "batch_scheduling": "bs_offline_10", "capacity": "cap_conversation",
         "caching": "cache_mm_300"}
# (backend, relax): the integer model and its relaxation on the HiGHS and Pyomo paths, and the
# CVXPY LP (which has no relax=True of its own)
SOLVES = [("highs", False), ("highs", True), ("pyomo", False), ("pyomo", True), ("cvxpy", False)]


def assert_same_table(back: object, saved: object, where: str) -> None:
    assert type(back) is type(saved), f"{where}: {type(saved).__name__} came back as {type(back).__name__}"
    if isinstance(saved, pd.DataFrame):
        pd.testing.assert_frame_equal(back, saved, check_exact=True, obj=where)
        assert list(back.columns) == list(saved.columns), where  # (equal also in order)
    else:
        pd.testing.assert_series_equal(back, saved, check_exact=True, obj=where)
    assert list(back.index) == list(saved.index), where


def assert_round_trip(solution: Solution, folder) -> Solution:
    back = Solution.load(solution.save(folder))
    for kind in ("decisions", "prices"):
        saved, loaded = getattr(solution, kind), getattr(back, kind)
        assert sorted(loaded) == sorted(saved), kind
        for name, table in saved.items():
            assert_same_table(loaded[name], table, f"{kind}.{name}")
    return back


@pytest.mark.parametrize("decision", sorted(SMALL))
@pytest.mark.parametrize(("backend", "relax"), SOLVES)
def test_every_decision_and_backend_round_trips_exactly(decision, backend, relax, tmp_path):
    instance = library.load(SMALL[decision])
    options = {}
    if decision == "expert_placement" and backend == "cvxpy":  # its CVXPY LP is the dispatch LP
        options["placement"] = ep_rules.POLICIES["eplb"](instance).phy2log
    solution = servopt.solve(instance, backend=backend, relax=relax, **options)
    assert solution.status == "optimal"
    assert solution.decisions, "nothing to round-trip"
    assert_round_trip(solution, tmp_path)


def test_decode_routing_share_comes_back_as_the_request_by_worker_frame(tmp_path):
    solution = servopt.solve(library.load("dr_hindsight_8x2"))
    x = solution.decisions["x"]
    assert isinstance(x, pd.DataFrame) and x.shape == (8, 2)  # what solve returns
    back = Solution.load(solution.save(tmp_path)).decisions["x"]
    assert back.shape == (8, 2)
    assert back.index.name == "request" and back.columns.name == "worker"
    assert back.columns.tolist() == [0, 1]
    # one worker per request in the IP's answer: each row sums to 1, hand-checkable
    np.testing.assert_array_equal(back.sum(axis=1).to_numpy(), np.ones(8))


def _frame() -> pd.DataFrame:
    """Rows and columns out of order, a two-level column index (one level unnamed), and a column
    of each kind, with a missing float and an empty text."""
    columns = pd.MultiIndex.from_tuples([("b", 2), ("a", 10), ("b", 1), ("c", 0), ("a", 3)],
                                        names=["group", None])
    rows = pd.MultiIndex.from_tuples([(3, "z"), (1, "y"), (2, "")], names=["request", "tag"])
    return pd.DataFrame({("b", 2): np.array([7, -1, 0], dtype=np.int64),
                         ("a", 10): [0.1, np.nan, 1e-300],
                         ("b", 1): np.array([0.5, 0.25, 3.0], dtype=np.float32),
                         ("c", 0): [True, False, True],
                         ("a", 3): ["x", "", "NA"]}, index=rows)[columns]


def test_a_frame_of_mixed_kinds_and_orders_round_trips(tmp_path):
    frame = _frame()
    solution = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                        decisions={"share": frame, "plain": frame[("a", 10)].rename("plain")},
                        prices={"cap": pd.DataFrame([[1.5, 2.0]], index=pd.Index(["g"], name="gpu"),
                                                    columns=pd.Index([5, 4], name="step"))})
    back = assert_round_trip(solution, tmp_path)
    assert back.decisions["share"].dtypes.astype(str).tolist()[:4] == \
        ["int64", "float64", "float32", "bool"]
    # rows may be re-sorted in the file: the frame is rebuilt by label
    path = tmp_path / "decisions" / "share.csv"
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], *sorted(text[1:], reverse=True)]) + "\n")
    again = Solution.load(tmp_path).decisions["share"]
    pd.testing.assert_frame_equal(again.loc[frame.index], frame, check_exact=True)


def test_a_frame_that_cannot_be_put_back_is_refused_at_save(tmp_path):
    twice = pd.DataFrame([[1.0, 2.0]], columns=["w", "w"])
    solution = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                        decisions={"x": twice})
    with pytest.raises(InvalidInstanceError, match="decisions/x repeats the column label 'w'"):
        solution.save(tmp_path)
    solution.decisions = {"x": pd.DataFrame([[1.0], [2.0]], index=[0, 0])}
    with pytest.raises(InvalidInstanceError, match="decisions/x repeats the row label 0"):
        solution.save(tmp_path / "rows")


def test_an_edited_frame_file_is_refused_in_the_users_terms(tmp_path):
    solution = servopt.solve(library.load("dr_hindsight_8x2"))
    solution.save(tmp_path)
    head_path = tmp_path / "solution.json"
    head = json.loads(head_path.read_text())
    columns = head["tables"]["decisions"]["x"]["columns"]
    assert columns["names"] == ["worker"] and columns["labels"] == [["0"], ["1"]]
    # a worker dropped from solution.json while the file still has its cells
    head["tables"]["decisions"]["x"]["columns"] = {**columns, "labels": [["0"]], "values": ["float"]}
    head_path.write_text(json.dumps(head))
    with pytest.raises(InvalidInstanceError, match=r"x\.csv: line 3 has the column label 1, which "
                                                   r"solution.json does not list \(its columns: 0\)"):
        Solution.load(tmp_path)
    for bad, message in (({**columns, "levels": ["int", "int"]}, "leave no row level"),
                         ({**columns, "values": ["float"]}, r"values must be a list of 2 kinds"),
                         ({**columns, "labels": [[0], [1]]}, "labels must be a list of column labels"),
                         ("worker", "columns must be an object")):
        head["tables"]["decisions"]["x"]["columns"] = bad
        head_path.write_text(json.dumps(head))
        with pytest.raises(InvalidInstanceError, match=message):
            Solution.load(tmp_path)


def test_a_folder_saved_before_frames_were_recorded_still_loads_long(tmp_path):
    """A solution.json without a table's ``columns`` (written by an earlier servopt) reads back
    as the long Series it always did."""
    solution = servopt.solve(library.load("dr_hindsight_8x2"), relax=True)
    solution.save(tmp_path)
    head_path = tmp_path / "solution.json"
    head = json.loads(head_path.read_text())
    del head["tables"]["decisions"]["x"]["columns"]
    head["tables"]["decisions"]["x"]["values"] = "float"
    head_path.write_text(json.dumps(head))
    long = Solution.load(tmp_path).decisions["x"]
    expected = solution.decisions["x"].stack(future_stack=True).rename("x")
    pd.testing.assert_series_equal(long, expected, check_exact=True)


def test_a_missing_or_doubled_cell_is_named(tmp_path):
    """Without the labels' digest (an older solution.json, or one edited to match), a cell taken
    out of the long file or listed twice is still caught when the frame is rebuilt."""
    solution = servopt.solve(library.load("dr_hindsight_8x2"))
    solution.save(tmp_path)
    head_path, path = tmp_path / "solution.json", tmp_path / "decisions" / "x.csv"
    head = json.loads(head_path.read_text())
    del head["tables"]["decisions"]["x"]["labels_sha256"]
    head["tables"]["decisions"]["x"]["rows"] = 15
    head_path.write_text(json.dumps(head))
    lines = path.read_text().splitlines()
    assert lines[0] == "request,worker,x" and lines[4].startswith("1,1,")
    path.write_text("\n".join([*lines[:4], *lines[5:]]) + "\n")  # request 1 on worker 1 removed
    with pytest.raises(InvalidInstanceError, match="the cell of row 1 and column 1 is missing"):
        Solution.load(tmp_path)
    head["tables"]["decisions"]["x"]["rows"] = 16
    head_path.write_text(json.dumps(head))
    path.write_text("\n".join([*lines[:4], lines[3], *lines[5:]]) + "\n")  # (1, 0) twice
    with pytest.raises(InvalidInstanceError, match="the cell of row 1 and column 0 is listed twice"):
        Solution.load(tmp_path)


def test_a_frame_without_columns_or_with_a_nan_column_is_refused(tmp_path):
    for frame, message in ((pd.DataFrame(index=pd.Index([1, 2], name="request")),
                            "2 rows and no columns"),
                           (pd.DataFrame([[1.0, 2.0]], columns=[0.5, np.nan]),
                            "has a column label that is None or NaN"),
                           (pd.DataFrame([[1.0, 2.0]], columns=pd.Index(["a", None])),
                            "has a column label that is None or NaN"),  # (was "duplicate values")
                           (pd.DataFrame([[1.0]], index=pd.Index([3], name="x"), columns=["c"]),
                            r"index level names \(x, level_1\) must differ .* name 'x'")):
        solution = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                            decisions={"x": frame})
        with pytest.raises(InvalidInstanceError, match=message):
            solution.save(tmp_path)


def test_a_hostile_frame_header_is_refused_in_memory_of_the_file_size(tmp_path):
    """Review R6: a 0.7 MB folder listing 20,000 row and 20,000 column labels, one cell each, made
    load count 4e8 cells (3 GB) before naming the first missing one."""
    solution = servopt.solve(library.load("dr_hindsight_8x2"))
    solution.save(tmp_path)
    head_path, path = tmp_path / "solution.json", tmp_path / "decisions" / "x.csv"
    head = json.loads(head_path.read_text())
    n = 20_000
    table = head["tables"]["decisions"]["x"]
    table.pop("labels_sha256", None)
    table["rows"] = n
    table["columns"]["labels"] = [[str(k)] for k in range(n)]
    table["columns"]["values"] = ["float"] * n
    head_path.write_text(json.dumps(head))
    path.write_text("request,worker,x\n" + "".join(f"{i},{i},1.0\n" for i in range(n)))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInstanceError, match="the cell of row 0 and column 1 is missing"):
            Solution.load(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"


def test_values_of_a_table_saved_without_values_are_refused(tmp_path):
    """Review R6: solution.json edited to say a table holds no values (kind "none") made load
    drop its numbers silently."""
    servopt.solve(library.load("bs_offline_10")).save(tmp_path)
    head_path = tmp_path / "solution.json"
    head = json.loads(head_path.read_text())
    head["tables"]["decisions"]["start"]["values"] = "none"
    head_path.write_text(json.dumps(head))
    with pytest.raises(InvalidInstanceError, match=r"start\.csv: column 'start' must be empty"):
        Solution.load(tmp_path)
    empty = pd.Series([None, None], index=pd.Index([0, 1], name="request"), name="note")
    saved = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                     decisions={"note": empty})
    saved.save(tmp_path / "empty")
    pd.testing.assert_series_equal(Solution.load(tmp_path / "empty").decisions["note"], empty)


def test_an_index_level_named_like_its_table_is_refused_at_save(tmp_path):
    """Review R6: a Series whose index level has the table's own name saved, then failed to load
    ("expected index columns, then a column 'x'"): refused when saved, naming both."""
    series = pd.Series([1.0, 2.0], index=pd.Index([0, 1], name="x"), name="x")
    solution = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                        decisions={"x": series})
    with pytest.raises(InvalidInstanceError, match=r"index level names \(x\) must differ"):
        solution.save(tmp_path)
    twice = pd.Series([1.0], index=pd.MultiIndex.from_tuples([(0, 1)], names=["a", "a"]), name="y")
    with pytest.raises(InvalidInstanceError, match=r"index level names \(a, a\) must differ"):
        Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                 decisions={"y": twice}).save(tmp_path)
