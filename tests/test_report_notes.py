"""The bench md says "no run" where no run produced a cost (R18: it said "no bound" against a
bound that was there) and carries the bounds' own notes (R18: decode's "busy-time bound: ..." was
only in the CSV, so a reader could not tell which gaps are against the weaker bound)."""
import math

import pandas as pd

from servopt.benchmarks import report


def _row(method, cost, seed=0, status="ok", bound_status="ok", bound=10.0):
    return dict(case="c", decision="caching", params="{}", seed=seed, method=method, cost=cost,
                bound=bound, bound_kind="lp_relaxation",
                gap=(cost - bound) / bound if not math.isnan(cost) else math.nan, wall_s=0.1,
                status=status, bound_status=bound_status)


def _table_row(text: str, method: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_method_without_any_run_says_no_run_not_no_bound():
    frame = pd.DataFrame([_row("lru", 12.0), _row("crash", math.nan, status="error: ValueError: boom"),
                          _row("crash", math.nan, seed=1, status="error: ValueError: boom")])
    cells = _table_row(report.format_gap_table(frame), "crash")
    assert cells[4:6] == ["no run", "no run"]  # gap_mean, gap_max
    assert _table_row(report.format_gap_table(frame), "lru")[4] == "0.2"


def test_bound_notes_reach_the_md():
    note = "busy-time bound: KV can bind"
    frame = pd.DataFrame([_row("lru", 12.0, seed=0, bound_status=note),
                          _row("lru", 11.0, seed=1)])
    text = report.format_gap_table(frame)
    assert (f"Bound notes (the CSV's `bound_status` has each instance's): {note} "
            "(1 of 2 instances).") in text


def test_bound_notes_that_differ_only_in_figures_are_one_note():
    # R19: batch_scheduling_full's 15 "model too large (N columns, ...)" notes made one
    # 1,374-character line
    frame = pd.DataFrame([_row("lru", 12.0, seed=s, bound_status=f"model too large ({c:,} columns)")
                          for s, c in enumerate((1_800_000, 12_200_000, 3_000_000))]
                         + [_row("lru", 11.0, seed=3)])
    text = report.format_gap_table(frame)
    assert "model too large (… columns) (3 of 4 instances)." in text
    assert "1,800,000" not in text


def test_no_bound_notes_line_when_every_bound_is_plain():
    frame = pd.DataFrame([_row("lru", 12.0, seed=0), _row("lru", 11.0, seed=1, bound_status="optimal")])
    assert "Bound notes" not in report.format_gap_table(frame)


def test_every_report_file_is_moved_into_place_whole(tmp_path, monkeypatch):
    # R18: the size-limit test stops at the first file (the CSV), so the md's and the plots'
    # writes were never shown to go through a temporary file and os.replace
    from servopt.benchmarks import plots

    moved = []
    real = report.os.replace

    def replace(source, target):
        moved.append(str(target).rsplit("/", 1)[-1])
        return real(source, target)

    monkeypatch.setattr(report.os, "replace", replace)
    frame = pd.DataFrame([_row("lru", 12.0), _row("fifo", 13.0)])
    report.write_reports(frame, tmp_path, "r")
    plots.write_plots(frame, tmp_path, "r")
    assert sorted(moved) == ["r-cost-time.png", "r-gap.png", "r.csv", "r.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(moved)  # no temporary left
