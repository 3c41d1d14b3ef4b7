"""Per-cell table of the capacity gap benchmark: workers each method provisions, per cell.

Usage::

    python -m servopt.benchmarks.capacity_report benchmarks/results/capacity_full.csv
    python -m servopt.benchmarks.capacity_report --help

Prints a markdown table (one row per cell: the simulated minimum and each method's worker count,
marked ``(unstable)`` where the simulated worker is unstable at lambda / N), rendered from the CSV
that ``servopt bench --case capacity_full`` writes; it is appended to ``capacity_full.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from servopt.benchmarks.report import require_checkout
from servopt.core.errors import InvalidInstanceError

COLUMNS = ("params", "method", "cost", "bound", "status")


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


def read_results(path: Path) -> pd.DataFrame:
    """The benchmark CSV at ``path``; a missing file or column is an :class:`InvalidInstanceError`."""
    if not path.is_file():
        raise InvalidInstanceError(f"{path}: no such file (give the CSV that "
                                   "`servopt bench --case capacity_full` wrote)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInstanceError(f"{path}: not a readable CSV ({str(exc).strip()})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInstanceError(f"{path}: column(s) {', '.join(missing)} missing; a capacity "
                                   f"benchmark CSV has {', '.join(COLUMNS)}")
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servopt.benchmarks.capacity_report",
        description="Print the per-cell worker-count table (markdown) of a capacity benchmark CSV.")
    parser.add_argument("csv", type=Path, help="the CSV `servopt bench --case capacity_full` wrote, "
                        "e.g. benchmarks/results/capacity_full.csv")
    args = parser.parse_args(argv)
    try:
        frame = read_results(args.csv)
    except InvalidInstanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(cell_table(frame))
    return 0


if __name__ == "__main__":
    require_checkout(__file__)
    sys.exit(main())
