"""Is the upper side of the batch-scheduling bracket converged? The schedule search with more time.

Run from the repository root (one process per size, then the report)::

    python benchmarks/batch_scheduling_search_time.py --sizes 50 --seeds 0,1 --time 900 \
        --csv benchmarks/results/batch_scheduling_search_time_50.csv
    python benchmarks/batch_scheduling_search_time.py --sizes 100 --seeds 0,1 --time 900 \
        --csv benchmarks/results/batch_scheduling_search_time_100.csv
    python benchmarks/batch_scheduling_search_time.py --report \
        --csv benchmarks/results/batch_scheduling_search_time_50.csv \
        --csv benchmarks/results/batch_scheduling_search_time_100.csv

Instances: those of ``batch_scheduling_bound.md`` (``generate(n, lengths="azure", seed=s)``, all
requests at round 0). Each row runs the ``Hindsight`` search (the best of the MC-SF,
warm-start and bid-price plans (shortest-first when the committed table was made), improved by
a search over admission orders and a large
neighbourhood search) with ``--time`` seconds and compares its total latency, scored by the
evaluator, with the committed bracket of that instance (``batch_scheduling_bound.csv``: ``best``
= every method, the IP incumbent and a 240 s search; ``lower`` = the best lower bound). If a
longer search finds markedly better schedules, part of the bracket's width is the upper side's.
Wall-clock time limits on a shared 2-core machine: results depend on the load (noted in the report).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.report import require_checkout, write_md
from servopt.instances import batch_scheduling as instances
from servopt.solvers import batch_scheduling as rules

COMMITTED = Path("benchmarks/results/batch_scheduling_bound.csv")


def run(sizes: list[int], seeds: list[int], time_limit: float, csv: Path) -> None:
    committed = pd.read_csv(COMMITTED).set_index(["n", "seed"])
    for n in sizes:
        for seed in seeds:
            inst = instances.generate(n, lengths="azure", seed=seed)
            search = rules.Hindsight(time_limit=time_limit)
            start = time.perf_counter()
            cost = bench.evaluate(inst, search).cost
            ref = committed.loc[(float(n), float(seed))]
            row = {"n": n, "seed": seed, "time": time_limit, "search_s": time.perf_counter() - start,
                   "load_avg": os.getloadavg()[0], "cost": cost, "committed_best": ref["best"],
                   "lower": ref["lower"], "cost_over_best": cost / ref["best"],
                   "bracket_before": ref["best"] / ref["lower"] - 1,
                   "bracket_after": min(cost, ref["best"]) / ref["lower"] - 1}
            pd.DataFrame([row]).to_csv(csv, mode="a", header=not csv.exists(), index=False)
            print(row, flush=True)


def report(csvs: list[Path]) -> None:
    rows = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True).sort_values(["n", "seed"])
    out = Path("benchmarks/results/batch_scheduling_search_time.md")
    lines = ["# batch_scheduling: the schedule search with more time", "",
             "Commands: the docstring of `benchmarks/batch_scheduling_search_time.py` (rows: "
             f"{', '.join(f'`{c.name}`' for c in csvs)}). "
             "`committed_best`: the best schedule in `batch_scheduling_bound.csv` (every method, "
             "the IP incumbent and a 240 s search); `cost`: the search alone with `time` seconds; "
             "`load_avg`: the machine's 1-minute load when the row finished (2 cores, shared).", "",
             "| n | seed | time s | load | cost | committed best | cost / best | lower | "
             "bracket before | bracket after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.itertuples(index=False):
        lines.append(f"| {r.n} | {r.seed} | {r.time:g} | {r.load_avg:.1f} | {r.cost:g} | "
                     f"{r.committed_best:g} | {r.cost_over_best:.4f} | {r.lower:g} | "
                     f"{r.bracket_before:.2%} | {r.bracket_after:.2%} |")
    write_md(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--time", type=float, default=900.0)
    parser.add_argument("--csv", type=Path, action="append", required=True,
                        help="rows file (one per process; --report: every one)")
    parser.add_argument("--report", action="store_true", help="only write the .md from the CSV")
    args = parser.parse_args()
    if args.report:
        report(args.csv)
        return
    run([int(x) for x in args.sizes.split(",")], [int(x) for x in args.seeds.split(",")],
        args.time, args.csv[0])


if __name__ == "__main__":
    require_checkout(__file__)
    main()
