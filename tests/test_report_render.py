"""``servopt report NAME.csv``: the md written again from the CSV's rows, in this version's layout,
keeping what the earlier md said about its run (command, provenance, hand-written notes).

Reads the committed quick.csv and quick.md of benchmarks/results from the source tree (a clone or
the unpacked sdist, as README "Tests and CI" says); an installed wheel does not carry them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks.report import render_md
from servopt.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _without_render_note(text: str) -> str:
    return "\n\n".join(p for p in text.split("\n\n") if not p.startswith("Rendered from `"))


def test_the_committed_quick_md_is_what_its_csv_renders_to(tmp_path):
    # the runner wrote quick.md from its rows in memory; rendering the CSV must give the same
    # tables (and a report layout change must come with a regenerated quick.md)
    for suffix in (".csv", ".md"):
        shutil.copy(RESULTS / f"quick{suffix}", tmp_path / f"quick{suffix}")
    before = (tmp_path / "quick.md").read_text()
    render_md(tmp_path / "quick.csv")
    after = (tmp_path / "quick.md").read_text()
    assert after != before and "Rendered from `quick.csv` by `servopt report`" in after
    assert _without_render_note(after) == before


def _old_md(folder: Path) -> Path:
    """An md in an earlier layout, with a hand-written paragraph and section."""
    rows = pd.read_csv(RESULTS / "quick.csv")
    rows = rows[rows["decision"] == "caching"]
    rows.to_csv(folder / "mine.csv", index=False)
    case = rows["case"].iloc[0]
    (folder / "mine.md").write_text(
        "# servopt benchmark: mine\n\nRegenerate with `servopt bench --name mine`.\n\n"
        "This table was rerun after a fix.\n\n`cost` is the mean over a case's runs.\n\n"
        f"## caching: {case}\n\n| method | runs |\n|---|---|\n| lru | 1 |\n\n"
        "## How to read this table\n\n- lru is the baseline.\n")
    return folder / "mine.csv"


def test_rendering_keeps_the_command_hand_notes_and_sections_and_replaces_the_tables(tmp_path):
    csv = _old_md(tmp_path)
    render_md(csv)
    text = (tmp_path / "mine.md").read_text()
    assert text.startswith("# servopt benchmark: mine\n\nRegenerate with `servopt bench --name "
                           "mine`.\n\nThis table was rerun after a fix.\n\nRendered from `mine.csv`")
    assert "an earlier run (the CSV's git history says which)" in text
    assert "| lru | 1 |" not in text and "| method | runs | cost | gap_runs |" in text
    assert text.rstrip().endswith("## How to read this table\n\n- lru is the baseline.")
    render_md(csv)  # again: the same md, one render note
    assert (tmp_path / "mine.md").read_text() == text


@pytest.mark.parametrize("setup, says", [
    (lambda d: d / "rows.txt", "not a .csv file"),
    (lambda d: d / "absent.csv", "no such file"),
    (lambda d: (d / "x.csv").write_text("a,b\n1,2\n") and d / "x.csv",
     r"not rows servopt bench wrote \(no column case, decision"),
    (lambda d: pd.read_csv(RESULTS / "quick.csv").assign(cost="many").to_csv(d / "t.csv")
     or d / "t.csv", "column cost holds text"),
])
def test_a_file_that_is_not_a_bench_csv_is_refused_by_name(tmp_path, setup, says):
    path = setup(tmp_path)
    with pytest.raises(ValueError, match=says):
        render_md(path)


def test_the_cli_renders_each_file_and_refuses_a_bad_one_in_one_line(tmp_path, capsys):
    csv = _old_md(tmp_path)
    assert main(["report", str(csv)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'mine.md'}"
    assert main(["report", str(tmp_path / "absent.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"servopt: error: {tmp_path / 'absent.csv'}: no such file"


def test_the_cli_checks_every_file_before_writing_any_md(tmp_path, capsys):
    # R25: `servopt report good.csv missing.csv` rewrote good's md, then stopped on the second
    csv = _old_md(tmp_path)
    before = (tmp_path / "mine.md").read_text()
    assert main(["report", str(csv), str(tmp_path / "absent.csv")]) == 2
    assert (tmp_path / "mine.md").read_text() == before


def test_report_out_writes_elsewhere_and_leaves_the_md_beside_the_csv_as_it_was(tmp_path, capsys):
    # R42: the README's `servopt report benchmarks/results/caching_full.csv` rewrote a tracked
    # file (every later bench then called the checkout dirty). With --out the md beside the CSV
    # is read for its notes and left byte for byte; the md written is the one an in-place render
    # of a copy writes
    here, copy, out = tmp_path / "here", tmp_path / "copy", tmp_path / "out"
    here.mkdir(), copy.mkdir()
    csv = _old_md(here)
    before = (here / "mine.md").read_bytes()
    assert main(["report", str(csv), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'mine.md'}"
    assert (here / "mine.md").read_bytes() == before
    render_md(_old_md(copy))
    assert (out / "mine.md").read_text() == (copy / "mine.md").read_text()


def test_report_out_refuses_two_csvs_of_one_name_before_writing(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert main(["report", str(_old_md(a)), str(_old_md(b)), "--out", str(tmp_path / "o")]) == 2
    assert "two CSVs would write the same mine.md" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
