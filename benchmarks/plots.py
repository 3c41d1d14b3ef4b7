"""PNG plots of a benchmark frame: gap by method per decision, and cost against time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks.report import summarise


def write_plots(frame: pd.DataFrame, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``<name>-gap.png`` and ``<name>-cost-time.png``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(frame)
    if summary.empty:
        return []
    out = Path(out_dir)
    cases = list(dict.fromkeys(summary["case"]))
    paths = []

    fig, axes = plt.subplots(len(cases), 1, figsize=(8, 2.2 + 0.35 * len(summary)), squeeze=False)
    for ax, case in zip(axes[:, 0], cases, strict=True):
        block = summary[summary["case"] == case]
        gaps = block["gap_mean"].to_numpy(dtype=float) * 100
        flagged = (block["status"] != "ok").to_numpy()  # unstable, below_bound, errors
        labels = [f"{m} ({st})" if bad else m
                  for m, st, bad in zip(block["method"], block["status"], flagged, strict=True)]
        ax.barh(labels, np.nan_to_num(gaps), color=np.where(flagged, "tab:red", "tab:blue"))
        ax.set_title(f"{block['decision'].iloc[0]}: {case} (red: not every run ok)", fontsize=9)
        ax.set_xlabel("mean gap to bound (%)")
        ax.invert_yaxis()
    fig.tight_layout()
    path = out / f"{name}-gap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.6), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        block = summary[summary["case"] == case]
        ax.scatter(block["wall_s"].clip(lower=1e-6), block["cost"])
        for row in block.itertuples(index=False):
            ax.annotate(row.method, (max(row.wall_s, 1e-6), row.cost), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("decision time (s)")
        ax.set_ylabel("mean cost")
        ax.set_title(case, fontsize=9)
    fig.tight_layout()
    path = out / f"{name}-cost-time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths
