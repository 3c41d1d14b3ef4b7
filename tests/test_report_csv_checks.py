"""``servopt report NAME.csv`` checks the rows it renders (R44 F2, F6).

A row's ``gap`` is the runner's ``relative_gap(cost, bound)`` (its decision's SENSE): a gap that
is not (edited, or left on a row whose cost was removed) is refused naming the row, instead of
moving ``gap_mean`` silently; and ``gap_mean`` / ``gap_max`` are over the runs ``gap_runs``
counts. Truth: the committed quick.csv (written by the runner) and gaps worked out by hand.

Reads the committed benchmarks/results/quick.csv from the source tree (a clone or the unpacked
sdist, as README "Tests and CI" says); an installed wheel does not carry it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks.report import read_rows, render_md, summarise
from servopt.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _quick(tmp_path: Path, edit=None) -> Path:
    """A copy of quick.csv (and its md), row 0 (batch fcfs: cost 661, bound 517) edited."""
    rows = pd.read_csv(RESULTS / "quick.csv", dtype=str, keep_default_na=False)
    assert (rows.loc[0, "method"], float(rows.loc[0, "cost"]), float(rows.loc[0, "bound"])) == \
        ("fcfs", 661.0, 517.0)
    if edit:
        edit(rows)
    path = tmp_path / "quick.csv"
    rows.to_csv(path, index=False)
    shutil.copy(RESULTS / "quick.md", tmp_path / "quick.md")
    return path


def test_the_committed_bench_csvs_pass_the_check():
    checked = 0
    for path in sorted(RESULTS.glob("*.csv")):
        head = pd.read_csv(path, nrows=0).columns
        if {"case", "method", "cost", "bound", "gap", "wall_s", "status", "params", "seed",
                "decision", "bound_kind"} <= set(head):
            read_rows(path)
            checked += 1
    assert checked >= 5


def test_a_gap_edited_against_its_cost_and_bound_is_refused_naming_the_row(tmp_path, capsys):
    path = _quick(tmp_path, lambda rows: rows.__setitem__("gap", rows["gap"].where(
        rows.index != 0, "-5")))
    with pytest.raises(ValueError, match=r"data row 1 \(case batch_scheduling_quick, method fcfs"
                                         r".*gap -5\.0.*cost 661\.0 and bound 517\.0"):
        read_rows(path)
    md = (tmp_path / "quick.md").read_text()
    assert main(["report", str(path)]) == 2  # (the CLI says a ValueError on one line)
    assert "data row 1" in capsys.readouterr().err
    assert (tmp_path / "quick.md").read_text() == md  # nothing written


def test_a_gap_left_on_a_row_without_a_cost_is_refused(tmp_path):
    path = _quick(tmp_path, lambda rows: rows.__setitem__("cost", rows["cost"].where(
        rows.index != 0, "")))
    with pytest.raises(ValueError, match=r"data row 1 .*its cost is empty"):
        read_rows(path)


@pytest.mark.parametrize("gap", [str((661 - 517) / 517 * (1 + 1e-9)), "0.2785300"])
def test_a_gap_within_rounding_of_its_cost_and_bound_is_kept(tmp_path, gap):
    # (661 - 517) / 517 = 0.27853...: a CSV rounded to 7 digits, or off in the last bits, reads
    path = _quick(tmp_path, lambda rows: rows.__setitem__("gap", rows["gap"].where(
        rows.index != 0, gap)))
    assert read_rows(path)["gap"].iloc[0] == pytest.approx(144 / 517, rel=1e-6)


def test_an_empty_gap_beside_a_cost_and_bound_is_kept(tmp_path):
    # the runner empties the gap of a run on another instance than its bound's
    path = _quick(tmp_path, lambda rows: rows.__setitem__("gap", rows["gap"].where(
        rows.index != 0, "")))
    assert math.isnan(read_rows(path)["gap"].iloc[0])


def test_an_infinite_gap_against_a_bound_of_0_is_kept_and_a_wrong_sign_is_not(tmp_path):
    def zero_bound(sign):
        def edit(rows):
            rows.loc[0, "bound"], rows.loc[0, "gap"] = "0.0", sign + "inf"
        return edit
    assert read_rows(_quick(tmp_path, zero_bound("")))["gap"].iloc[0] == math.inf
    with pytest.raises(ValueError, match="data row 1"):
        read_rows(_quick(tmp_path, zero_bound("-")))


def test_a_decision_report_does_not_know_takes_either_sense(tmp_path):
    # a plug-in's rows, the plug-in not loaded: its SENSE is unknown, a gap of either sign
    # (cost 12 against bound 10: 0.2 for min, -0.2 for max) is a gap of its cost and bound
    frame = pd.DataFrame({"case": "mine", "decision": "not_loaded", "params": "{}", "seed": 0,
                          "method": ["a", "b", "c"], "cost": 12.0, "bound": 10.0,
                          "bound_kind": "optimal", "gap": [0.2, -0.2, 0.5], "wall_s": 1.0,
                          "status": "ok"})
    frame.iloc[:2].to_csv(tmp_path / "a.csv", index=False)
    assert len(read_rows(tmp_path / "a.csv")) == 2
    frame.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match=r"data row 3 .*min or max: relative_gap gives 0\.2 or "
                                         r"-0\.2"):
        read_rows(tmp_path / "b.csv")


def test_gap_mean_and_max_are_over_the_runs_gap_runs_counts():
    # a hand-made frame (summarise does not read files): run 3 has a gap but no cost, so it is no
    # run; the two runs are 0.1 and 0.3: mean 0.2, max 0.3 (before: mean of 0.1, 0.3 and 0.9)
    frame = pd.DataFrame({"case": "c", "decision": "batch_scheduling", "method": "m",
                          "cost": [110.0, 130.0, math.nan], "bound": 100.0,
                          "gap": [0.1, 0.3, 0.9], "wall_s": 1.0, "bound_kind": "optimal",
                          "status": "ok"})
    row = summarise(frame).iloc[0]
    assert (row["runs"], row["gap_runs"]) == (2, 2)
    assert row["gap_mean"] == pytest.approx(0.2) and row["gap_max"] == pytest.approx(0.3)


def test_the_committed_quick_csv_still_renders(tmp_path):
    render_md(_quick(tmp_path))
    assert "Rendered from `quick.csv`" in (tmp_path / "quick.md").read_text()


def test_an_md_beside_the_csv_that_is_not_text_is_named(tmp_path, capsys):
    path = _quick(tmp_path)
    (tmp_path / "quick.md").write_bytes(b"# t\n\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"quick\.md: the md beside the CSV is not utf-8 text "
                                         r"\(invalid start byte at byte 5\)"):
        render_md(path)
    assert main(["report", str(path)]) == 2
    assert f"{tmp_path / 'quick.md'}: the md beside the CSV" in capsys.readouterr().err
    assert (tmp_path / "quick.md").read_bytes() == b"# t\n\n\xff\xfe\n"


def test_a_folder_in_place_of_the_md_is_named_and_left_alone(tmp_path):
    path = _quick(tmp_path)
    (tmp_path / "quick.md").unlink()
    (tmp_path / "quick.md").mkdir()
    with pytest.raises(ValueError, match=r"quick\.md: a folder where servopt report writes the md"):
        render_md(path)
    assert (tmp_path / "quick.md").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == \
        ["quick.csv", "quick.md"]  # (no temporary file left)
    out = tmp_path / "out"
    out.mkdir()
    render_md(path, out_dir=out)  # elsewhere: the folder is not an md to keep notes from
    assert "Rendered from `quick.csv`" in (out / "quick.md").read_text()


def test_a_header_without_rows_is_named_as_such(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("case,decision,params,seed,method,cost,bound,bound_kind,gap,wall_s,status\n")
    with pytest.raises(ValueError, match="a header and no rows"):
        read_rows(path)


def test_report_writes_no_md_when_a_later_csvs_md_cannot_be_read(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    a, b = _quick(first), _quick(second)
    before = (first / "quick.md").read_bytes()
    (second / "quick.md").write_bytes(b"# t\n\n\xff\n")
    assert main(["report", str(a), str(b)]) == 2
    assert f"{second / 'quick.md'}: the md beside the CSV" in capsys.readouterr().err
    assert (first / "quick.md").read_bytes() == before  # the first md was not rewritten


def _one_cell(tmp_path: Path, column: str, row: int, text: str) -> Path:
    """A copy of quick.csv with ``text`` in ``column`` of data row ``row`` + 1."""
    return _quick(tmp_path, lambda rows: rows.__setitem__(column, rows[column].where(
        rows.index != row, text)))


@pytest.mark.parametrize("wall_s", ["-1.5", "inf"])
def test_a_negative_or_infinite_wall_time_is_refused_naming_the_row(tmp_path, wall_s):
    """The runner writes a run's seconds (>= 0) or NaN for a run that has none (R44)."""
    path = _one_cell(tmp_path, "wall_s", 2, wall_s)
    with pytest.raises(ValueError, match=rf"data row 3 \(case .*\): wall_s {float(wall_s)!r}: "):
        read_rows(path)


def test_a_failed_runs_empty_wall_time_is_read(tmp_path):
    """NaN seconds are what the runner writes for a run that failed or was skipped."""
    path = _one_cell(tmp_path, "wall_s", 2, "")
    assert math.isnan(read_rows(path)["wall_s"].iloc[2])


@pytest.mark.parametrize("status", ["", "  "])
def test_an_empty_status_is_refused_naming_the_row(tmp_path, status):
    path = _one_cell(tmp_path, "status", 4, status)
    with pytest.raises(ValueError, match=r"data row 5 \(case .*an empty status"):
        read_rows(path)
