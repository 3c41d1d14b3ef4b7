"""The bench table and plots never hide a missing bound or an infinite gap, and say their units.

Expected figures are hand calculations on hand-made frames (a gap is (cost - bound) / bound for
the min decision caching), or read from the runner's rows, never from the summary under test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import matplotlib
import numpy as np
import pandas as pd
import pytest

from servopt.benchmarks import Case, run
from servopt.benchmarks import plots as plots_mod
from servopt.benchmarks import report as report_mod
from servopt.benchmarks import runner as runner_mod
from servopt.benchmarks.harness import Bound

import toy_decision  # (tests/toy_decision.py)

matplotlib.use("Agg")

NAN, INF = math.nan, math.inf
SMALL, LARGE = '{"requests": 300}', '{"objects": 4000, "requests": 40000}'


def _row(method, params, cost, bound, *, kind="lp_relaxation", bound_status="ok", case="c",
         status="ok", wall_s=0.1, seed=0):
    gap = NAN if math.isnan(bound) else (INF if bound == 0 else (cost - bound) / bound)
    return {"case": case, "decision": "caching", "params": params, "seed": seed, "method": method,
            "cost": cost, "bound": bound, "bound_kind": kind, "gap": gap, "wall_s": wall_s,
            "status": status, "bound_status": bound_status}


def _timelimit_frame():
    """R15's repro: two cells, the large one's LP stopped at its time limit (no bound)."""
    return pd.DataFrame([
        _row("lru", SMALL, 12.0, 10.0), _row("belady", SMALL, 10.5, 10.0),
        _row("lru", LARGE, 1000.0, NAN, kind="none", bound_status="time_limit"),
        _row("belady", LARGE, 700.0, NAN, kind="none", bound_status="time_limit"),
    ])


def _md_rows(text):
    """The table rows of a markdown text as {method: {column: cell}}."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells, strict=True))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


# -- 1. the table counts the runs without a bound and says so ------------------------------------
def test_a_run_without_a_bound_is_counted_and_named_not_ok():
    summary = report_mod.summarise(_timelimit_frame()).set_index("method")
    lru = summary.loc["lru"]
    assert lru["runs"] == 2 and lru["gap_runs"] == 1
    assert lru["gap_mean"] == pytest.approx(0.2) and lru["gap_max"] == pytest.approx(0.2)  # 12/10-1
    assert lru["cost"] == pytest.approx(506.0)  # (12 + 1000) / 2: every run that ran
    assert lru["status"] == "no bound in 1 of 2 runs (time_limit)"
    text = report_mod.format_gap_table(_timelimit_frame())
    cells = _md_rows(text)
    assert cells["lru"]["gap_runs"] == "1" and cells["lru"]["runs"] == "2"
    assert cells["belady"]["gap_mean"] == "0.05"  # 10.5 / 10 - 1
    assert cells["belady"]["status"] == "no bound in 1 of 2 runs (time_limit)"
    assert f"No bound for 1 of 2 instances (time_limit: params {LARGE} seed 0)" in text


def test_every_bound_missing_says_no_bound_not_blank_and_not_ok():
    frame = _timelimit_frame()
    frame = frame[frame["params"] == LARGE]
    cells = _md_rows(report_mod.format_gap_table(frame))
    for method in ("lru", "belady"):
        assert cells[method]["gap_runs"] == "0"
        assert cells[method]["gap_mean"] == cells[method]["gap_max"] == "no bound"
        assert cells[method]["status"] == "no bound in 1 of 1 run (time_limit)"


def test_a_bound_that_raised_is_named_in_the_status_and_in_the_md(tmp_path):
    frame = pd.DataFrame([_row("lru", SMALL, 13956.0, NAN, kind="error",
                               bound_status="error: OptionError: unknown LP method 'bogus'")])
    summary = report_mod.summarise(frame)
    assert summary.loc[0, "status"] == "no bound in 1 of 1 run (bound raised OptionError)"
    report_mod.write_reports(frame, tmp_path, "r")
    cells = _md_rows((tmp_path / "r.md").read_text())
    assert cells["lru"]["status"] == "no bound in 1 of 1 run (bound raised OptionError)"


def test_a_bad_status_and_a_missing_bound_are_both_said():
    frame = _timelimit_frame()
    frame.loc[0, "status"] = "unstable"
    summary = report_mod.summarise(frame).set_index("method")
    assert summary.loc["lru", "status"] == "1 unstable; no bound in 1 of 2 runs (time_limit)"
    assert summary.loc["belady", "status"] == "no bound in 1 of 2 runs (time_limit)"


def test_the_runner_s_frame_without_a_bound_in_one_cell(monkeypatch):
    # through the runner: a bound at its time limit in the products=4 cell (kind none, NaN), the
    # real bound in the products=3 cell; the runner assembles bound_status and the gaps
    real = runner_mod.compute_bound

    def bound(instance, **kw):
        if len(instance.profit) == 4:
            return Bound(NAN, "none", status="time_limit")
        return real(instance, **kw)

    monkeypatch.setattr(runner_mod, "compute_bound", bound)
    case = Case(name="toy_half", decision="toy_production", grid=({"products": 3}, {"products": 4}),
                seeds=(0,), make_instance=toy_decision.make_instance, methods=("greedy",))
    frame = run([case], jobs=1, progress=False)
    assert len(frame) == 2 and frame["cost"].notna().all()
    has_bound = frame["bound"].notna()
    assert has_bound.sum() == 1
    row = report_mod.summarise(frame).iloc[0]
    assert row["runs"] == 2 and row["gap_runs"] == 1
    assert row["gap_mean"] == frame.loc[has_bound, "gap"].iloc[0]
    assert row["status"] == "no bound in 1 of 2 runs (time_limit)"


def test_a_gap_against_another_instance_s_bound_is_not_called_a_missing_bound():
    # (the runner blanks the gap of a run whose instance is not its bound's: its status says so)
    frame = pd.DataFrame([_row("lru", SMALL, 12.0, 10.0, status="instance mismatch: x")])
    frame["gap"] = NAN
    row = report_mod.summarise(frame).iloc[0]
    assert row["runs"] == 1 and row["gap_runs"] == 0 and "no bound" not in row["status"]


# -- 4. units and digits --------------------------------------------------------------------------
def test_costs_under_one_percent_apart_are_told_apart_and_units_are_said(tmp_path):
    frame = pd.DataFrame([_row("jsq", SMALL, 19531.2, 19000.0),
                          _row("least_kv", SMALL, 19534.9, 19000.0)])
    report_mod.write_reports(frame, tmp_path, "d")
    md = (tmp_path / "d.md").read_text()
    cells = _md_rows(md)
    assert (cells["jsq"]["cost"], cells["least_kv"]["cost"]) == ("19531.2", "19534.9")
    table_end = md.index("| least_kv |")
    after = md[table_end:]
    assert "Units: `gap_mean` / `gap_max` are fractions of the bound" in after
    assert "0.05 is 5 %" in after and "seconds per run" in after
    assert "CSV's `gap` column" in md  # the CSV's gap is named as the same fraction


def test_markdown_table_formats_per_column():
    frame = pd.DataFrame({"a": [1234567.0], "b": [1234567.0], "c": [INF], "d": [NAN]})
    assert report_mod.markdown_table(frame, {"a": ".7g"}).splitlines()[2] == \
        "| 1234567 | 1.235e+06 | inf |  |"
    assert report_mod.markdown_table(frame).splitlines()[2] == "| 1.235e+06 | 1.235e+06 | inf |  |"


# -- 2, 3. the plots, read back from the figures ----------------------------------------------------
def _bars(ax):
    """{y tick label: bar width} of a horizontal bar panel."""
    labels = {round(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    return {labels[round(p.get_y() + p.get_height() / 2)]: p.get_width() for p in ax.patches}


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_gap_plot_draws_no_bar_for_no_bound_and_clips_inf(tmp_path, saved_figures):
    rows = [_row("lru", SMALL, 12.0, 10.0, case="a"),  # 20 %
            _row("zero", SMALL, 5.0, 0.0, case="a", kind="lower_bound"),  # inf: a bound of 0
            _row("nob", SMALL, 7.0, NAN, case="a", kind="none", bound_status="time_limit"),
            _row("opt", SMALL, 10.0, 10.0, case="a")]  # 0 %: a bar of no length, said "0 %"
    paths = plots_mod.write_plots(pd.DataFrame(rows), tmp_path, "p")
    assert [p.name for p in paths] == ["p-gap.png", "p-cost-time.png"]
    ax = saved_figures[0].axes[0]
    bars = _bars(ax)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    nob = next(label for label in labels if label.startswith("nob"))
    assert nob not in bars  # no bar at all (not a bar of 0, which reads as optimal)
    assert bars["lru"] == pytest.approx(20.0) and bars["opt"] == 0.0
    zero = next(label for label in labels if label.startswith("zero"))
    assert bars[zero] == pytest.approx(plots_mod.INF_REACH * 20.0)  # clipped past the largest
    assert ax.get_xlim()[1] < 100  # the axis is the finite gaps', not 1.8e308
    texts = _texts(ax)
    assert "no bound" in texts and "inf" in texts and "20 %" in texts and "0 %" in texts
    assert "%" in ax.get_xlabel()


def test_gap_plot_of_a_case_with_only_infinite_gaps(saved_figures, tmp_path):
    plots_mod.write_plots(pd.DataFrame([_row("a", SMALL, 5.0, 0.0, kind="lower_bound")]),
                          tmp_path, "p")
    ax = saved_figures[0].axes[0]
    assert list(_bars(ax).values()) == [plots_mod.INF_ALONE] and "inf" in _texts(ax)
    assert np.isfinite(ax.get_xlim()).all() and ax.get_xlim()[1] < 1e3


def test_tradeoff_plot_shows_gaps_not_costs_of_mixed_scale(saved_figures, tmp_path):
    # caching's instances differ in scale (Mooncake 5,606, multimodal 106,300): the mean cost
    # mixes them; the plot shows each method's mean gap (in %) against its time per run
    rows = [_row("lru", SMALL, 5606.0, 5000.0, wall_s=0.01),      # gap 0.1212
            _row("lru", LARGE, 106300.0, 100000.0, wall_s=0.03),  # gap 0.063
            _row("belady", SMALL, 5100.0, 5000.0, wall_s=0.2),    # gap 0.02
            _row("belady", LARGE, 101000.0, 100000.0, wall_s=0.4)]  # gap 0.01
    plots_mod.write_plots(pd.DataFrame(rows), tmp_path, "t")
    ax = saved_figures[1].axes[0]
    points = {line.get_label(): (line.get_xdata()[0], line.get_ydata()[0])
              for line in ax.get_lines() if len(line.get_xdata())}
    assert points["lru"] == pytest.approx((0.02, (606 / 5000 + 6300 / 100000) / 2 * 100))
    assert points["belady (foresight)"] == pytest.approx((0.3, 1.5))  # belady: an offline reference
    assert ax.get_xlabel() == "wall time per run (s)" and "%" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lru", "belady (foresight)"]


def test_tradeoff_plot_names_missing_bounds_and_inf_and_wraps_to_a_grid(saved_figures, tmp_path):
    rows = []
    for k in range(5):
        rows += [_row("lru", SMALL, 12.0, 10.0, case=f"c{k}"),
                 _row("lru", LARGE, 30.0, NAN, case=f"c{k}", kind="none",
                      bound_status="time_limit"),
                 _row("nob", SMALL, 7.0, NAN, case=f"c{k}", kind="none",
                      bound_status="time_limit"),
                 _row("zero", SMALL, 5.0, 0.0, case=f"c{k}", kind="lower_bound")]
    plots_mod.write_plots(pd.DataFrame(rows), tmp_path, "g")
    fig = saved_figures[1]
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 5
    rows_of_panels = {round(ax.get_position().y0, 3) for ax in shown}
    assert len(rows_of_panels) == 2  # 3 + 2, not a strip of 5
    width, height = fig.get_size_inches()
    assert width / height < 2.5
    legend = [t.get_text() for t in shown[0].get_legend().get_texts()]
    assert legend == ["lru (gap in 1 of 2 runs)", "nob (no bound: not drawn)",
                      "zero (gap inf, drawn clipped)"]
    drawn = {line.get_label(): line.get_ydata() for line in shown[0].get_lines()}
    assert len(drawn["nob (no bound: not drawn)"]) == 0  # no point at 0 (or anywhere)
    assert drawn["zero (gap inf, drawn clipped)"][0] == pytest.approx(plots_mod.INF_REACH * 20.0)


# -- 5. an interrupted write leaves the old report, whole -----------------------------------------
WRITE_UNDER_A_SIZE_LIMIT = textwrap.dedent("""
    import json, resource, signal, sys
    import pandas as pd
    from servopt.benchmarks import plots, report
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    frame = pd.DataFrame(json.loads(sys.argv[2]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
    failed = []
    for name, write in (("reports", report.write_reports), ("plots", plots.write_plots)):
        try:
            write(frame, sys.argv[1], "r")
        except OSError:
            failed.append(name)
    print(json.dumps(failed))
""")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_write_cut_short_leaves_the_old_report_whole(tmp_path):
    # a full disk, simulated by a file size limit of 400 bytes on the writing process: the new
    # report cannot be written, and the old one (larger than the limit) must stay as it was
    old = {f"r{suffix}": f"old {suffix} report, whole\n" * 100
           for suffix in (".csv", ".md", "-gap.png", "-cost-time.png")}
    for name, text in old.items():
        (tmp_path / name).write_text(text)
    frame = _timelimit_frame().to_dict(orient="list")
    done = subprocess.run([sys.executable, "-c", WRITE_UNDER_A_SIZE_LIMIT, str(tmp_path),
                           json.dumps(frame), "400"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["reports", "plots"]  # both refused by the limit
    # every old file as it was (the old code left each one cut at 400 bytes), no temporary left
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        name: text.encode() for name, text in old.items()}
    # without a limit the same writes replace every file, and leave no temporary either
    done = subprocess.run([sys.executable, "-c", WRITE_UNDER_A_SIZE_LIMIT, str(tmp_path),
                           json.dumps(frame), str(10**8)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert json.loads(done.stdout) == [], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(old)
    assert pd.read_csv(tmp_path / "r.csv").shape == (4, 12)
    assert "no bound in 1 of 2 runs (time_limit)" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r-gap.png").read_bytes().startswith(b"\x89PNG")


def test_the_units_line_states_the_gap_in_the_decision_s_sense(tmp_path):
    # closes: every md said the gap is (cost - bound) / |bound|, also for a max decision (the
    # toy's profit), whose gap is (bound - cost) / |bound| (R53 F1); checked by hand on the
    # runner's own row: a profit below the bound has a positive gap
    case = Case(name="toy_units", decision="toy_production", grid=({"products": 3},),
                seeds=(0,), make_instance=toy_decision.make_instance, methods=("nothing",))
    frame = run([case], jobs=1, progress=False)
    row = frame.iloc[0]
    assert row["cost"] < row["bound"]
    assert row["gap"] == pytest.approx((row["bound"] - row["cost"]) / abs(row["bound"]))
    text = report_mod.format_gap_table(frame)
    assert "(bound - cost) / |bound|" in text and "(cost - bound)" not in text
    caching = report_mod.format_gap_table(pd.DataFrame([_row("lru", SMALL, 12.0, 10.0)]))
    assert "(cost - bound) / |bound|" in caching and "(bound - cost)" not in caching
