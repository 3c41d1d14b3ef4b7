"""The committed batch-scheduling tables, rerun for the rules that order the waiting queue: are
the costs identical now that long queues keep their order (``KeptOrder``) instead of being
sorted every round?

For each unit (parameters, seed, method) of the registered cases (default
``batch_scheduling_quick`` and ``batch_scheduling_full``) and each method of ``spf``, ``mcsf``,
``bid_price`` and ``bid_price_stationary``, the policy is prepared once and simulated twice: with
the shipped threshold (queues of ``KEEP_ORDER_FROM`` = 512 requests or more kept in order, as
the committed tables would be recomputed now) and with every queue kept in order (threshold 0,
so the kept order decides in every round, also on the small instances). Both total latencies
(the evaluator's cost, rounds) are compared with the committed table's cost.

    python benchmarks/batch_scheduling_kept_order_check.py \\
        [--cases batch_scheduling_quick:quick,batch_scheduling_full:batch_scheduling_full]
        [--out benchmarks/results/batch_scheduling_kept_order_check.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.registry import discover
from servopt.benchmarks.report import require_checkout, write_md
from servopt.solvers import batch_scheduling as rules

METHODS = ("spf", "mcsf", "bid_price", "bid_price_stationary")


def check(case_name: str, table: Path) -> list[dict]:
    case = discover()[case_name]
    committed = pd.read_csv(table)
    committed = committed[committed["case"] == case_name]
    rows = []
    for _, row in committed[committed["method"].isin(METHODS)].iterrows():
        params = json.loads(row["params"])
        instance = case.instance(int(row["seed"]), params)
        policy = rules.make_policy(row["method"])
        policy.prepare(instance)
        costs = {}
        for label, threshold in (("shipped", rules.KEEP_ORDER_FROM), ("every_round", 0)):
            saved = rules.KEEP_ORDER_FROM
            rules.KEEP_ORDER_FROM = threshold
            try:
                t0 = time.perf_counter()
                out = bench.simulate(instance, policy)
                costs[label] = float(out["latency"].sum())
                costs[f"{label}_s"] = time.perf_counter() - t0
            finally:
                rules.KEEP_ORDER_FROM = saved
        rows.append({"case": case_name, "params": row["params"], "seed": int(row["seed"]),
                     "method": row["method"], "committed": float(row["cost"]), **costs,
                     "identical": costs["shipped"] == costs["every_round"] == float(row["cost"])})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="batch_scheduling_quick:quick,"
                                            "batch_scheduling_full:batch_scheduling_full",
                        help="case:table pairs (table = benchmarks/results/<table>.csv)")
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_kept_order_check.md")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    rows = []
    for item in args.cases.split(","):
        case_name, table = item.split(":")
        rows += check(case_name, Path("benchmarks/results") / f"{table}.csv")
    frame = pd.DataFrame(rows)
    frame.to_csv(Path(args.out).with_suffix(".csv"), index=False)
    summary = frame.groupby(["case", "method"]).agg(units=("identical", "size"),
                                                     identical=("identical", "sum")).reset_index()
    lines = ["# batch_scheduling: committed costs rerun with the kept queue order", "",
             f"Command: `python {' '.join(sys.argv)}`. Each unit of the committed table for the "
             "rules that order the waiting queue, simulated with the shipped threshold (queues "
             "of 512 or more kept in order) and with every queue kept in order (threshold 0); "
             "`identical` counts the units whose two total latencies both equal the committed "
             "cost. Per-unit figures in the csv next to this file.", "",
             "| case | method | units | identical |", "|---|---|---:|---:|"]
    lines += [f"| {r.case} | {r.method} | {r.units} | {r.identical} |" for r in summary.itertuples()]
    lines += ["", f"All identical: {'yes' if frame['identical'].all() else 'NO'}.", ""]
    write_md(Path(args.out), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    require_checkout(__file__)
    main()
