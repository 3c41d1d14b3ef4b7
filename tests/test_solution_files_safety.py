"""Solution.save touches only its own files; Solution.load refuses a solution.json that is not
one save could have written, naming the file and field (never a traceback or a silent number)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from servopt.core import InvalidInstanceError, Solution


def _solution(prices: tuple[str, ...] = ("cap",), decisions: tuple[str, ...] = ("x",)) -> Solution:
    """A small hand-made solution: objective 10, bound 8 (gap (10 - 8) / 8 = 0.25 by hand)."""
    index = pd.Index([0, 1], name="worker")
    return Solution(status="time_limit", objective=10.0, bound=8.0, gap=0.25, wall_s=0.5,
                    prices={p: pd.Series([1.5, 2.0], index=index, name=p) for p in prices},
                    decisions={d: pd.Series([3.0, 4.0], index=index, name=d) for d in decisions})


def test_save_keeps_files_it_did_not_write(tmp_path):
    """A CSV of the user's in prices/ or decisions/ survives a save (it used to be deleted)."""
    (tmp_path / "prices").mkdir()
    (tmp_path / "decisions").mkdir()
    mine = tmp_path / "prices" / "budget_2025.csv"
    mine.write_text("year,budget\n2025,1\n")
    other = tmp_path / "decisions" / "notes.csv"
    other.write_text("a\n1\n")
    _solution().save(tmp_path)
    assert mine.read_text() == "year,budget\n2025,1\n"
    assert other.read_text() == "a\n1\n"
    assert Solution.load(tmp_path).prices["cap"].tolist() == [1.5, 2.0]


def test_save_removes_the_tables_of_the_previous_save(tmp_path):
    """A table the earlier save listed and this one does not is removed; the user's file stays."""
    _solution(prices=("cap", "old"), decisions=("x", "y")).save(tmp_path)
    (tmp_path / "prices" / "mine.csv").write_text("k,v\n1,2\n")
    assert (tmp_path / "prices" / "old.csv").is_file()
    _solution().save(tmp_path)
    assert not (tmp_path / "prices" / "old.csv").exists()
    assert not (tmp_path / "decisions" / "y.csv").exists()
    assert (tmp_path / "prices" / "mine.csv").is_file()
    assert sorted(Solution.load(tmp_path).prices) == ["cap"]


def test_save_ignores_a_listed_name_that_is_a_path(tmp_path):
    """An edited solution.json listing '../keep' does not make the next save delete ../keep.csv."""
    out = tmp_path / "out"
    _solution().save(out)
    keep = out / "keep.csv"
    keep.write_text("k\n1\n")
    head = json.loads((out / "solution.json").read_text())
    head["prices"] = ["cap", "../keep"]
    (out / "solution.json").write_text(json.dumps(head))
    _solution().save(out)
    assert keep.is_file()


@pytest.mark.parametrize("folder", ["prices", "decisions"])
def test_save_refuses_a_symlinked_table_folder(tmp_path, folder):
    """A symlinked prices/ (or decisions/) is refused before anything is written or removed:
    the files it points at stay as they were."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "cap.csv"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / folder)
    with pytest.raises(InvalidInstanceError, match=f"{folder}.*symbolic link"):
        _solution(prices=("cap",), decisions=("cap",)).save(out)
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["cap.csv"]


def test_save_refuses_a_table_folder_that_is_a_file(tmp_path):
    (tmp_path / "prices").write_text("not a folder")
    with pytest.raises(InvalidInstanceError, match=r"prices.*not a folder"):
        _solution().save(tmp_path)


def _edited(tmp_path, edit) -> str:
    """Save, change solution.json's text with ``edit`` (head dict -> JSON text), return the
    load's message."""
    _solution().save(tmp_path)
    path = tmp_path / "solution.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(InvalidInstanceError) as info:
        Solution.load(tmp_path)
    assert "solution.json" in str(info.value)
    return str(info.value)


def _set(**fields):
    def edit(head):
        for key, value in fields.items():
            head[key] = value
        return json.dumps(head)
    return edit


def test_a_saved_solution_loads_with_its_gap(tmp_path):
    back = Solution.load(_solution().save(tmp_path))
    assert (back.objective, back.bound, back.gap) == (10.0, 8.0, 0.25)


@pytest.mark.parametrize("tables, field", [
    ({"prices": [1]}, "tables.prices"),
    ({"decisions": "x"}, "tables.decisions"),
    ({"prices": {"cap": [1]}}, "tables.prices.cap"),
    ({"prices": {"cap": {"rows": 2, "values": "float", "levels": 5}}}, "levels"),
    ({"prices": {"cap": {"rows": "2", "values": "float", "levels": ["int"]}}}, "rows"),
    ({"prices": {"cap": {"rows": 2, "values": "decimal", "levels": ["int"]}}}, "values"),
    ({"prices": {"cap": {"rows": 2, "values": "float", "levels": ["date"]}}}, r"levels\[0\]"),
])
def test_load_refuses_malformed_table_records(tmp_path, tables, field):
    """These were AttributeError / TypeError tracebacks, or (an unknown kind) read as text."""
    def edit(head):
        head["tables"].update(tables)
        return json.dumps(head)
    assert field.split("\\")[0] in _edited(tmp_path, edit)


@pytest.mark.parametrize("objective, bound, gap", [(100, 50, 0.0), (10, 8, 0.5), (10, 10, 0.1),
                                                   (10, 0, 0.0), (None, 8, 0.25)])
def test_load_refuses_a_gap_that_does_not_match(tmp_path, objective, bound, gap):
    """objective 100, bound 50: the gap is (100 - 50) / 50 = 1 by hand, not 0; a bound of 0
    under a different objective: infinite; no objective: no gap."""
    assert "gap" in _edited(tmp_path, _set(objective=objective, bound=bound, gap=gap))


@pytest.mark.parametrize("objective, bound, gap, expected", [
    (100, 50, 1.0, 1.0), (100, 50, None, None), (10, 0, "Infinity", float("inf")),
    (None, 8, None, None),
    # an infinite bound under a finite objective: an infinite gap (relative_gap called it 0, so
    # a time-limited MIP with bound -inf saved and then failed to load: review R5)
    (4.0, "-Infinity", "Infinity", float("inf"))])
def test_load_accepts_a_consistent_or_unknown_gap(tmp_path, objective, bound, gap, expected):
    _solution().save(tmp_path)
    path = tmp_path / "solution.json"
    head = json.loads(path.read_text())
    head.update(objective=objective, bound=bound, gap=gap)
    path.write_text(json.dumps(head))
    back = Solution.load(tmp_path)
    assert (back.gap != back.gap) if expected is None else back.gap == expected


@pytest.mark.parametrize("text, what", [
    ('"wall_s": 1e400', "1e400"),  # read as inf before
    ('"wall_s": NaN', "NaN"),
    ('"wall_s": Infinity', "Infinity"),
    ('"objective": -Infinity', "-Infinity"),
    ('"wall_s": 1' + "0" * 400, "wall_s"),
])
def test_load_refuses_numbers_json_does_not_have(tmp_path, text, what):
    def edit(head):
        key = text.split(":")[0].strip('"')
        head[key] = "PLACEHOLDER"
        return json.dumps(head).replace(f'"{key}": "PLACEHOLDER"', text)
    assert what in _edited(tmp_path, edit)


def test_save_replaces_symbolic_links_to_files_instead_of_writing_through_them(tmp_path):
    """A link in place of solution.json or a table pointed outside the folder, and save wrote the
    target (review R5: both victims were overwritten)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.json").write_text("precious")
    (outside / "victim.csv").write_text("precious")
    out = tmp_path / "out"
    (out / "prices").mkdir(parents=True)
    solution = _solution()
    name = sorted(solution.prices)[0]
    (out / "solution.json").symlink_to(outside / "victim.json")
    (out / "prices" / f"{name}.csv").symlink_to(outside / "victim.csv")
    solution.save(out)
    assert (outside / "victim.json").read_text() == "precious"
    assert (outside / "victim.csv").read_text() == "precious"
    assert not (out / "solution.json").is_symlink() and not (out / "prices" / f"{name}.csv").is_symlink()
    assert Solution.load(out).objective == solution.objective
    assert sorted(p.name for p in out.rglob(".*.tmp")) == []  # no temporary file left
