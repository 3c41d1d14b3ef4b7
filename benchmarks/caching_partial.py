"""Run part of the ``caching_full`` grid and assemble ``caching_full.csv/.md`` from the run cache.

The full case (21 instances of 1e5-1.2e5 requests) did not fit the time available on the shared
machine in one go. This script runs the given subset of the case's grid with the current code,
then assembles every ``caching_full`` row found in the runner's cache folder (earlier runs
included; for a (params, seed, method) computed more than once the newest row wins) into the
usual report files.

Run: ``python benchmarks/caching_partial.py --workload mooncake --cost unit``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd

from servopt.benchmarks.cases.caching_full import CASE
from servopt.benchmarks.report import write_reports
from servopt.benchmarks.runner import assemble, run


def cached_rows(cache: Path, case: str) -> list[dict]:
    rows = []
    for path in cache.glob("*.json"):
        try:
            row = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if row.get("case") == case and not str(row.get("status", "")).startswith("error"):
            row["_mtime"] = path.stat().st_mtime
            rows.append(row)
    frame = pd.DataFrame(rows).sort_values("_mtime")
    frame = frame.drop_duplicates(["params", "seed", "method"], keep="last")
    return [{k: v for k, v in r.items() if k != "_mtime"} for r in frame.to_dict("records")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", default=None, help="only this workload of the grid")
    parser.add_argument("--cost", default=None, help="only this Mooncake cost model")
    parser.add_argument("--share", type=float, action="append", help="only these cache shares")
    parser.add_argument("--skew", type=float, action="append", help="only these Zipf skews")
    parser.add_argument("--methods", default=None, help="comma-separated methods")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--assemble-only", action="store_true")
    args = parser.parse_args()
    cache = Path(args.out) / "cache"
    grid = [p for p in CASE.grid
            if (args.workload is None or p["workload"] == args.workload)
            and (args.cost is None or p.get("cost") == args.cost)
            and (not args.share or p["cache_share"] in args.share)
            and (not args.skew or p.get("skew") in args.skew)]
    if not args.assemble_only and grid:
        methods = tuple(args.methods.split(",")) if args.methods else None
        subset = dataclasses.replace(CASE, grid=tuple(grid), methods=methods)
        run([subset], jobs=args.jobs, cache_dir=cache, progress=False)
    rows = cached_rows(cache, CASE.name)
    frame = assemble(rows)
    write_reports(frame, args.out, "caching_full",
                  command="python benchmarks/caching_partial.py (see its docstring)")
    print(frame.groupby("method")["gap"].describe())


if __name__ == "__main__":
    main()
