"""PNG plots of a benchmark frame: gap by method per case, and gap against time per case.

Both show what the table shows: a method whose runs have no bound draws no bar or point but says
``no bound``; an infinite gap (a bound of 0) is drawn clipped at the panel's edge and says ``inf``;
gaps are in percent of the bound, and each panel's title names the bound's kind (the table's
``bound_kind``: capacity's ``simulated`` is an empirical reference, not a proved bound); a method
whose runs were not all ok (unstable, below_bound, an error, a run without a bound) is red in the
gap plot and ringed in red in the trade-off plot; a method that uses the future (the table's
"offline references", :func:`~servopt.benchmarks.report.foresight_methods`) is named
``(foresight)`` and drawn hatched or with an open marker.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.benchmarks.report import NO_BOUND, foresight_methods, summarise, write_atomic

# how far past the largest finite gap an infinite one is drawn (and where a case with only
# infinite gaps draws them, in percent)
INF_REACH = 1.25
INF_ALONE = 100.0
GRID_COLUMNS = 3  # panels per row of the trade-off figure
FLAG_COLOUR = "tab:red"  # a method whose runs were not all ok, in both figures (no method is red)
FORESIGHT_HATCH = "xx"  # a foresight method's bar (an infinite gap's clipped bar is "//")
# bound kinds that are no bound: a run without one (its status says so)
NOT_A_KIND = ("", "none", "nan", "None", "error")


def bound_kinds(block: pd.DataFrame) -> list[str]:
    """The kinds of bound a case's rows of :func:`summarise` are measured against (their
    ``bound_kind`` column, split at "/"), sorted, without the entries that are no bound."""
    return sorted({kind for text in block["bound_kind"].astype(str) for kind in text.split("/")}
                  - set(NOT_A_KIND))


def bound_title(block: pd.DataFrame) -> str:
    """The bound a case's gaps are measured against, in a few words for its panel's title, from
    the ``bound_kind`` column of its rows of :func:`summarise`: ``bound: lp_relaxation``,
    ``bound: lower_bound + mip_bound (mixed)`` when its instances have bounds of different kinds,
    capacity's ``simulated`` said to be an empirical reference, ``no bound`` when none has one."""
    kinds = bound_kinds(block)
    if not kinds:
        return "no bound"
    if kinds == ["simulated"]:
        return "vs the simulated minimum (empirical, not a proved bound)"
    text = " + ".join(k if k != "simulated" else "simulated (empirical)" for k in kinds)
    return f"bound: {text}" + (" (mixed)" if len(kinds) > 1 else "")


def gap_bars(block: pd.DataFrame) -> pd.DataFrame:
    """What the gap plot draws for one case's rows of :func:`summarise`: per method its
    ``label``, ``gap_pct`` (the mean gap in percent; NaN: no gap), ``width`` (the bar drawn, in
    percent: NaN for no bar, an infinite gap clipped to the panel), ``note`` (``no bound``,
    ``no run``, ``no gap``, ``inf``, ``-inf`` or empty), ``flagged`` (a status other than ok) and
    ``foresight`` (a method that uses the future: its label says ``(foresight)``)."""
    gaps = block["gap_mean"].to_numpy(dtype=float) * 100
    finite = np.abs(gaps[np.isfinite(gaps)])
    reach = INF_REACH * finite.max() if finite.size and finite.max() > 0 else INF_ALONE
    notes, widths = [], []
    for gap, runs, status in zip(gaps, block["runs"], block["status"], strict=True):
        if math.isnan(gap):
            notes.append("no run" if runs == 0 else NO_BOUND if NO_BOUND in str(status)
                         else "no gap")
            widths.append(math.nan)
        elif math.isinf(gap):
            notes.append("inf" if gap > 0 else "-inf")
            widths.append(math.copysign(reach, gap))
        else:
            notes.append("")
            widths.append(gap)
    flagged = (block["status"] != "ok").to_numpy()
    foresight = np.array([str(m) in foresight_methods(str(d))
                          for m, d in zip(block["method"], block["decision"], strict=True)],
                         dtype=bool)
    names = [f"{m} (foresight)" if ahead else str(m)
             for m, ahead in zip(block["method"], foresight, strict=True)]
    labels = [f"{name}: {st}" if bad else name
              for name, st, bad in zip(names, block["status"], flagged, strict=True)]
    return pd.DataFrame({"method": block["method"].to_numpy(), "label": labels, "gap_pct": gaps,
                         "width": widths, "note": notes, "flagged": flagged,
                         "foresight": foresight})


def gap_figure(summary: pd.DataFrame) -> Any:
    """One panel per case: a horizontal bar per method, its mean gap to the bound in percent
    (:func:`gap_bars`: no bar but ``no bound`` for a method without one, an infinite gap clipped
    and marked ``inf``, red for a method whose runs were not all ok, cross-hatched for one that
    uses the future); the title names the bound's kind (:func:`bound_title`). Returns the
    matplotlib figure."""
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(summary["case"]))
    fig, axes = plt.subplots(len(cases), 1, figsize=(9, 2.2 + 0.38 * len(summary)),
                             squeeze=False)
    for ax, case in zip(axes[:, 0], cases, strict=True):
        block = summary[summary["case"] == case]
        bars = gap_bars(block)
        y = np.arange(len(bars))
        drawn = bars["width"].notna().to_numpy()
        colours = np.where(bars["flagged"], FLAG_COLOUR, "tab:blue")
        patches = ax.barh(y[drawn], bars["width"][drawn], color=colours[drawn])
        for patch, note, ahead in zip(patches, bars["note"][drawn], bars["foresight"][drawn],
                                      strict=True):
            hatch = "//" if note in ("inf", "-inf") else ""  # (clipped, and its note says inf)
            hatch += FORESIGHT_HATCH if ahead else ""
            if hatch:
                patch.set_hatch(hatch)
                patch.set_edgecolor("white")  # (the hatch's colour: seen on blue and red)
        ax.set_yticks(y, bars["label"], fontsize=8)
        ax.axvline(0, color="black", linewidth=0.6)
        right = np.nanmax(np.abs(bars["width"])) if drawn.any() else 1.0
        for row, yy in zip(bars.itertuples(index=False), y, strict=True):
            # each bar's value (a gap of 0 is a bar of no length: "0 %" says it is one) or its
            # note, at the bar's end or at 0 where no bar is drawn
            x = row.width if not math.isnan(row.width) else 0.0
            ax.annotate(row.note or f"{row.gap_pct:.3g} %", (x, yy),
                        xytext=(3 if x >= 0 else -3, 0), textcoords="offset points",
                        ha="left" if x >= 0 else "right", va="center", fontsize=8,
                        fontstyle="italic" if row.note else "normal")
        left = min(0.0, float(np.nanmin(bars["width"]))) if drawn.any() else 0.0
        ax.set_xlim(left * 1.4, right * 1.15)  # (room for the values written past the bars)
        keys = ["red: not every run ok or with a bound"]
        if bars["foresight"].any():
            keys.append("cross-hatched: foresight, uses the future")
        ax.set_title(f"{block['decision'].iloc[0]}: {case}, {bound_title(block)}\n"
                     f"({'; '.join(keys)})", fontsize=9)
        ax.set_xlabel(gap_axis_label(block))
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


def gap_axis_label(block: pd.DataFrame) -> str:
    """The gap axis: to the bound, or to the simulated minimum when that is the case's only
    reference (capacity: not a bound)."""
    if bound_kinds(block) == ["simulated"]:
        return "mean gap to the simulated minimum (%)"
    return "mean gap to bound (% of the bound)"


def tradeoff_points(block: pd.DataFrame) -> pd.DataFrame:
    """What the trade-off plot draws for one case's rows of :func:`summarise`: per method ``x``
    (mean wall-clock seconds per run, at least 1e-6 for the log axis), ``y`` (mean gap in
    percent; NaN: no point, an infinite gap clipped to the panel) and ``legend`` (the method, with
    ``(foresight)``, ``no bound``, ``gap in k of n runs``, ``inf`` or a status other than ok where that
    applies), and :func:`gap_bars`' ``note``, ``flagged`` and ``foresight``."""
    bars = gap_bars(block)
    legends = []
    for row, runs, gap_runs, status in zip(bars.itertuples(index=False), block["runs"],
                                           block["gap_runs"], block["status"], strict=True):
        text = str(row.method) + (" (foresight)" if row.foresight else "")
        if row.note in ("inf", "-inf"):
            text += f" (gap {row.note}, drawn clipped)"
        elif row.note:
            text += f" ({row.note}: not drawn)"
        if 0 < gap_runs < runs:
            text += f" (gap in {gap_runs} of {runs} runs)"
        bad = [part for part in str(status).split("; ") if not part.startswith(NO_BOUND)]
        if row.flagged and bad and bad != ["ok"]:  # (unstable, below_bound, errors)
            text += f" ({'; '.join(bad)})"
        legends.append(text)
    return pd.DataFrame({"method": bars["method"], "x": block["wall_s"].clip(lower=1e-6).to_numpy(),
                         "y": bars["width"].to_numpy(), "legend": legends,
                         "note": bars["note"].to_numpy(), "flagged": bars["flagged"].to_numpy(),
                         "foresight": bars["foresight"].to_numpy()})


def tradeoff_figure(summary: pd.DataFrame) -> Any:
    """Per case a panel (a grid of :data:`GRID_COLUMNS` per row): each method's mean gap to the
    bound (%) against its mean wall-clock seconds per run (log axis), the methods named in a
    legend (:func:`tradeoff_points`). Gaps, not costs: a case's instances differ in scale, so a
    mean cost would mix them. A line at 0 is the bound; a method whose runs were not all ok is
    ringed in red (the gap plot's red), one that uses the future has an open marker (the title
    says which cue the panel uses), an infinite gap is drawn clipped and says ``inf``; the title names
    the bound's kind (:func:`bound_title`). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    from matplotlib.transforms import blended_transform_factory

    cases = list(dict.fromkeys(summary["case"]))
    ncols = min(GRID_COLUMNS, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    # (each panel's legend beside it, off the points: with 0 on the axis they sit closer)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.8 * ncols, 4.4 * nrows), squeeze=False)
    methods = list(dict.fromkeys(summary["method"]))
    markers = "osD^vP*Xh<>p"
    # the default colour cycle less its red (C3), which marks a flagged method
    colours = [f"C{k}" for k in range(10) if k != 3]
    for ax, case in zip(axes.flat, cases, strict=False):
        block = summary[summary["case"] == case]
        points = tradeoff_points(block)
        for row in points.itertuples(index=False):
            k = methods.index(row.method)
            colour = colours[k % len(colours)]
            style = {"color": colour, "marker": markers[k % len(markers)], "linestyle": "",
                     "markerfacecolor": "none" if row.foresight else colour}
            if math.isnan(row.y):  # (a legend entry, no point)
                ax.plot([], [], label=row.legend, **style)
                continue
            ax.plot([row.x], [row.y], label=row.legend, markersize=7, markeredgewidth=1.3,
                    **style)
            if row.flagged:  # (a ring, outside the legend: the legend's text says why)
                ax.plot([row.x], [row.y], marker="o", markersize=15, linestyle="",
                        markerfacecolor="none", markeredgecolor=FLAG_COLOUR, markeredgewidth=1.5,
                        label="_flagged")
            if row.note:
                ax.annotate(row.note, (row.x, row.y), xytext=(4, 4), textcoords="offset points",
                            fontsize=7, fontstyle="italic")
        keys = []
        if not np.isfinite(points["y"].to_numpy(dtype=float)).any():
            ax.text(0.5, 0.5, "no method has a gap to a bound:\nnothing to draw", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9, fontstyle="italic")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.set_xscale("log")  # (ticks at 1, 2, 5 per decade, written plainly: 0.02, 0.5)
            x = points["x"].to_numpy(dtype=float)
            wide = np.log10(x.max() / x.min()) > 2  # (over two decades: 1, 10, 100 only)
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            # the bound, at a gap of 0 (on the axis: a panel of gaps 4.6-5.1 % shows how far
            # they are from it, not only how far from each other)
            ax.axhline(0, color="black", linewidth=0.8, linestyle="--", label="_bound")
            low, high = ax.get_ylim()
            ax.set_ylim(min(low, 0.0), max(high, 0.0))
            simulated = bound_title(block).startswith("vs the simulated")
            ax.text(0.01, 0.0, "simulated minimum" if simulated else "bound",
                    transform=blended_transform_factory(ax.transAxes, ax.transData),
                    ha="left", va="bottom", fontsize=7, fontstyle="italic")
            drawn = np.isfinite(points["y"].to_numpy(dtype=float))
            if points["flagged"].to_numpy(dtype=bool)[drawn].any():
                keys.append("red ring: not every run ok or with a bound")
            if points["foresight"].to_numpy(dtype=bool)[drawn].any():
                keys.append("open marker: foresight, uses the future")
        ax.set_xlabel("wall time per run (s)")
        ax.set_ylabel(gap_axis_label(block))
        ax.set_title(f"{block['decision'].iloc[0]}: {case}\n{bound_title(block)}"
                     + "".join(f"\n({key})" for key in keys), fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    for ax in axes.flat[len(cases):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def write_plots(frame: pd.DataFrame, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``<name>-gap.png`` (:func:`gap_figure`) and ``<name>-cost-time.png`` (the gap
    against time: :func:`tradeoff_figure`), each whole or not at all; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(frame)
    if summary.empty:
        return []
    out = Path(out_dir)
    paths = []
    for suffix, draw in (("gap", gap_figure), ("cost-time", tradeoff_figure)):
        fig = draw(summary)
        try:
            path = write_atomic(out / f"{name}-{suffix}.png",
                                lambda temporary, fig=fig: fig.savefig(temporary, dpi=110,
                                                                       format="png"))
        finally:
            plt.close(fig)
        paths.append(path)
    return paths
