"""The bench plots mark what the md table says (R41 F1-F3): the methods that use the future, the
methods whose runs were not all ok, and which kind of bound a case's gaps are measured against.

Expected marks are read from the md table of the same hand-made frame (its foresight line, its
``status`` and ``bound_kind`` columns, :func:`report.format_gap_table`), never from plots.py;
the figures are read back through their artists (tick labels, bar hatches and colours, marker
fill, line data, titles).
"""

from __future__ import annotations

import math
import re

import matplotlib
import pandas as pd
import pytest
from matplotlib.colors import same_color

from servopt.benchmarks import plots as plots_mod
from servopt.benchmarks import report as report_mod

matplotlib.use("Agg")

NAN = math.nan
SMALL, LARGE = '{"requests": 300}', '{"objects": 4000, "requests": 40000}'
FORESIGHT_LINE = "Offline references that use the future (not rules one can deploy): "


def _row(method, cost, bound, *, decision="caching", case="c", params=SMALL, seed=0,
         kind="lp_relaxation", status="ok", wall_s=0.1):
    gap = NAN if math.isnan(bound) or math.isnan(cost) else (cost - bound) / abs(bound)
    return {"case": case, "decision": decision, "params": params, "seed": seed, "method": method,
            "cost": cost, "bound": bound, "bound_kind": kind, "gap": gap, "wall_s": wall_s,
            "status": status, "bound_status": "ok"}


def _md_tables(frame: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str]]:
    """Per case of the md text: its table (as strings) and the text after it."""
    text = report_mod.format_gap_table(frame)
    out = {}
    for part in text.split("## ")[1:]:
        case = part.splitlines()[0].split(": ", 1)[1].strip()
        lines = [line for line in part.splitlines() if line.startswith("| ")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
        out[case] = (pd.DataFrame(body, columns=header), part)
    return out


def _table_foresight(part: str) -> set[str]:
    lines = [line for line in part.splitlines() if line.startswith(FORESIGHT_LINE)]
    return set(lines[0][len(FORESIGHT_LINE):].rstrip(".").split(", ")) if lines else set()


def _bars(ax):
    """{method: (tick label, bar)} of a gap panel, the method being the tick label up to its
    first space or colon."""
    labels = {round(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    out = {}
    for patch in ax.patches:
        label = labels[round(patch.get_y() + patch.get_height() / 2)]
        out[label.split(":")[0].split(" ")[0]] = (label, patch)
    return out


def _points(ax):
    """{method: its marker line} of a trade-off panel (legend text up to its first space)."""
    return {line.get_label().split(" ")[0]: line for line in ax.get_lines()
            if not line.get_label().startswith("_") and len(line.get_xdata())}


def _rings(ax):
    """The (x, y) of every red open circle drawn off the legend (the flag around a point)."""
    return {(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.get_lines()
            if line.get_label().startswith("_") and line.get_marker() == "o"
            and same_color(line.get_markeredgecolor(), "tab:red")
            and str(line.get_markerfacecolor()) == "none"}


def _zero_lines(ax):
    """Horizontal lines across the whole panel at y = 0 (an axhline)."""
    return [line for line in ax.get_lines()
            if list(line.get_ydata()) == [0, 0] and list(line.get_xdata()) == [0, 1]]


# -- F1: foresight methods, as the table names them ---------------------------------------------
def test_foresight_methods_are_named_hatched_and_open_as_the_table_says(tmp_path, saved_figures):
    # caching: belady and lp_schedule see the future (the md's foresight line names them); lru
    # and bid_price are online rules. The foresight ones have the shortest bars here, as in
    # the committed quick run.
    rows = [_row("lru", 13.0, 10.0, wall_s=0.01), _row("belady", 10.5, 10.0, wall_s=0.02),
            _row("bid_price", 11.5, 10.0, wall_s=0.2), _row("lp_schedule", 10.2, 10.0, wall_s=0.5)]
    frame = pd.DataFrame(rows)
    table, part = _md_tables(frame)["c"]
    ahead = _table_foresight(part)
    assert ahead == {"belady", "lp_schedule"}  # (the table's word, read independently)
    plots_mod.write_plots(frame, tmp_path, "f")
    gap_ax, trade_ax = saved_figures[0].axes[0], saved_figures[1].axes[0]
    bars = _bars(gap_ax)
    assert set(bars) == set(table["method"])
    for method, (label, patch) in bars.items():
        if method in ahead:
            assert label == f"{method} (foresight)" and patch.get_hatch(), method
        else:
            assert label == method and not patch.get_hatch(), method
    assert "foresight" in gap_ax.get_title() and "future" in gap_ax.get_title()
    points = _points(trade_ax)
    assert set(points) == set(table["method"])
    for method, line in points.items():
        hollow = str(line.get_markerfacecolor()) == "none"
        assert hollow == (method in ahead), method
    assert "foresight" in trade_ax.get_title()


def test_no_foresight_note_where_the_table_has_none(tmp_path, saved_figures):
    # expert placement has no foresight methods: no "(foresight)", no hatch, no note
    rows = [_row("eplb", 12.0, 10.0, decision="expert_placement", kind="lower_bound"),
            _row("exact", 10.4, 10.0, decision="expert_placement", kind="lower_bound")]
    frame = pd.DataFrame(rows)
    assert _table_foresight(_md_tables(frame)["c"][1]) == set()
    plots_mod.write_plots(frame, tmp_path, "n")
    gap_ax, trade_ax = saved_figures[0].axes[0], saved_figures[1].axes[0]
    assert all(label == m and not patch.get_hatch() for m, (label, patch) in _bars(gap_ax).items())
    assert "foresight" not in gap_ax.get_title() + trade_ax.get_title()
    assert all(line.get_markerfacecolor() != "none" for line in _points(trade_ax).values())


# -- F2: flagged methods and the bound's line in the trade-off figure ----------------------------
def _flag_frame():
    # capacity: two ok plans, one unstable (fewer workers than the simulated minimum: -25 %);
    # batch scheduling: fcfs ok, spf below its bound in one of two runs, mcsf errored in one
    rows = [_row("plan", 12.0, 10.0, decision="capacity", case="cap", kind="simulated",
                 wall_s=0.01),
            _row("fluid_lp", 11.0, 10.0, decision="capacity", case="cap", kind="simulated",
                 wall_s=0.05),
            _row("utilisation", 7.5, 10.0, decision="capacity", case="cap", kind="simulated",
                 status="unstable", wall_s=0.001)]
    for seed, spf in ((0, 95.0), (1, 110.0)):
        rows += [_row("fcfs", 130.0, 100.0, decision="batch_scheduling", case="bs", seed=seed),
                 _row("spf", spf, 100.0, decision="batch_scheduling", case="bs", seed=seed,
                      status="below_bound" if spf < 100 else "ok")]
    rows += [_row("mcsf", 120.0, 100.0, decision="batch_scheduling", case="bs", seed=0),
             _row("mcsf", NAN, 100.0, decision="batch_scheduling", case="bs", seed=1,
                  status="error: ValueError: boom")]
    return pd.DataFrame(rows)


def test_flagged_methods_are_ringed_red_and_the_bound_is_a_line(tmp_path, saved_figures):
    frame = _flag_frame()
    tables = _md_tables(frame)
    plots_mod.write_plots(frame, tmp_path, "r")
    gap_fig, trade_fig = saved_figures
    for k, case in enumerate(["cap", "bs"]):
        table = tables[case][0]
        flagged = set(table.loc[table["status"] != "ok", "method"])
        assert flagged == ({"utilisation"} if case == "cap" else {"spf", "mcsf"})
        # hand: the mean gap of each method over its runs with a gap, in percent
        expected_y = {"plan": 20.0, "fluid_lp": 10.0, "utilisation": -25.0, "fcfs": 30.0,
                      "spf": 2.5, "mcsf": 20.0}
        ax = trade_fig.axes[k]
        points = _points(ax)
        assert {m: float(line.get_ydata()[0]) for m, line in points.items()} == pytest.approx(
            {m: expected_y[m] for m in table["method"]})
        ringed = {m for m, line in points.items()
                  if (float(line.get_xdata()[0]), float(line.get_ydata()[0])) in _rings(ax)}
        assert ringed == flagged, case
        assert len(_zero_lines(ax)) == 1  # the bound, at a gap of 0
        low, high = ax.get_ylim()
        assert low < 0 < high
        assert "red" in ax.get_title()
        # the gap figure's cue for the same methods: a red bar
        red = {m for m, (_, patch) in _bars(gap_fig.axes[k]).items()
               if same_color(patch.get_facecolor(), "tab:red")}
        assert red == flagged, case
        # no online method is drawn in the flag's red
        assert not any(same_color(line.get_color(), "tab:red") for line in points.values())


def test_the_bound_line_puts_zero_on_a_panel_of_close_positive_gaps(tmp_path, saved_figures):
    # decode routing's quick panel: gaps of 4.6-5.1 % filled the whole axis; 0 is now on it
    rows = [_row(m, cost, 100.0, decision="decode_routing", kind="lower_bound", wall_s=w)
            for m, cost, w in (("jsq", 104.6, 0.01), ("least_kv", 105.1, 0.02))]
    plots_mod.write_plots(pd.DataFrame(rows), tmp_path, "d")
    ax = saved_figures[1].axes[0]
    assert len(_zero_lines(ax)) == 1
    low, high = ax.get_ylim()
    assert low <= 0 and high >= 5.1


# -- F3: the bound's kind in each panel's title ---------------------------------------------------
def test_each_panel_title_names_the_bound_kind_the_table_gives(tmp_path, saved_figures):
    rows = [_row("lru", 12.0, 10.0, case="one", kind="lp_relaxation"),
            _row("lru", 12.0, 10.0, decision="capacity", case="sim", kind="simulated"),
            # decode routing's quick case: a busy-time lower bound on one instance, a
            # time-limited MIP's dual bound on the other
            _row("jsq", 109.0, 100.0, decision="decode_routing", case="mix", kind="lower_bound"),
            _row("jsq", 101.0, 100.0, decision="decode_routing", case="mix", params=LARGE,
                 kind="mip_bound")]
    frame = pd.DataFrame(rows)
    tables = _md_tables(frame)
    kinds = {case: set("/".join(t["bound_kind"]).split("/")) for case, (t, _) in tables.items()}
    assert kinds == {"one": {"lp_relaxation"}, "sim": {"simulated"},
                     "mix": {"lower_bound", "mip_bound"}}
    plots_mod.write_plots(frame, tmp_path, "k")
    for fig in saved_figures:
        titles = {re.match(r"\w+: (\w+)", ax.get_title()).group(1): ax.get_title()
                  for ax in fig.axes if ax.get_visible()}
        assert set(titles) == set(kinds)
        for case, title in titles.items():
            assert all(kind in title for kind in kinds[case]), (case, title)
            others = {"lp_relaxation", "simulated", "lower_bound", "mip_bound"} - kinds[case]
            assert not any(kind in title for kind in others), (case, title)
        # the simulated reference is said not to be a proved bound; the mixed one, mixed
        assert "not a proved bound" in titles["sim"] and "mixed" in titles["mix"]
        assert "not a proved bound" not in titles["one"] + titles["mix"]
