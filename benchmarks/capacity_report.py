"""Per-cell table of the capacity gap benchmark: workers each method provisions, per cell.

Usage::

    python -m servopt.benchmarks.capacity_report benchmarks/results/capacity_full.csv

Prints a markdown table (one row per cell: the simulated minimum and each method's worker count,
marked ``(unstable)`` where the simulated worker is unstable at lambda / N), rendered from the CSV
that ``servopt bench --case capacity_full`` writes; it is appended to ``capacity_full.md``.
"""

from __future__ import annotations

import json
import sys

import pandas as pd


def cell_table(frame: pd.DataFrame) -> str:
    """Markdown: cells as rows, methods as columns, the simulated minimum first."""
    methods = list(dict.fromkeys(frame["method"]))
    lines = ["| cell | simulated minimum | " + " | ".join(methods) + " |",
             "|---" * (len(methods) + 2) + "|"]
    for params, rows in frame.groupby("params", sort=False):
        p = json.loads(params)
        by = rows.set_index("method")
        cells = []
        for m in methods:
            r = by.loc[m]
            status = str(r["status"])
            mark = "" if status == "ok" else f" ({status})"
            cells.append(f"{int(r['cost'])}{mark}")
        cell = f"{p['workload']}/{p['regime']}"
        lines.append(f"| {cell} | {int(rows['bound'].iloc[0])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    print(cell_table(pd.read_csv(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
