"""Summary of the committed expert-placement benchmark, per skew and method.

Reads ``benchmarks/results/expert_placement_full.csv`` (from ``servopt bench --case
expert_placement_full ...``) and writes ``expert_placement_summary.md``: balancedness on the next
window (the plan's dispatch, even split, LP) and on the planned window, the gap to the next
window's bound, the planned-window gap (certification), planning time, and per seed whether the
bid-price plan with price dispatch beats EPLB's placement with LP dispatch.

Run: ``python benchmarks/expert_placement_summary.py [--results benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from servopt.benchmarks.report import markdown_table, require_checkout, write_md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args()
    folder = Path(args.results)
    frame = pd.read_csv(folder / "expert_placement_full.csv")
    frame["skew"] = [json.loads(p)["skew"] for p in frame["params"]]
    table = frame.groupby(["skew", "method"], sort=False).agg(
        runs=("seed", "size"),
        bal_next=("balancedness", "mean"),
        bal_next_even=("balancedness_even", "mean"),
        bal_next_lp=("balancedness_lp", "mean"),
        bal_same=("balancedness_same", "mean"),
        gap_mean=("gap", "mean"),
        gap_max=("gap", "max"),
        gap_same_max=("gap_same", "max"),
        plan_ms_median=("plan_ms", "median"),
        bound_kind=("bound_kind", "first"),
    ).reset_index()
    pivot = frame.pivot_table(index=["skew", "seed"], columns="method", values="balancedness")
    wins = (pivot["bid_price"] > pivot["eplb_lp"]).groupby(level="skew").agg(["sum", "size"])
    margin = (pivot["bid_price"] - pivot["eplb_lp"]).groupby(level="skew").min()
    times = frame.pivot_table(index=["skew", "seed"], columns="method", values="plan_ms")
    faster = (times["bid_price"] < times["eplb"]).groupby(level="skew").agg(["sum", "size"])
    head = pd.DataFrame({
        "skew": wins.index,
        "bid_price beats eplb_lp (seeds)": [f"{a}/{b}" for a, b in wins.to_numpy()],
        "smallest margin": margin.to_numpy(),
        "bid_price plans faster than eplb (seeds)": [f"{a}/{b}" for a, b in faster.to_numpy()],
    })
    text = ("# Expert placement benchmark summary (deepseek_v3 shape)\n\n"
            "Plan on window t, evaluate on window t + 1; 10 seeds per skew (log-sd of expert "
            "popularity). `bal_*` = balancedness (sum of mean / sum of max GPU load over the 58 "
            "layers); `gap` = (cost - bound) / bound against the next window's combinatorial "
            "bound; `gap_same_max` = worst gap on the planned window against its bound "
            "(certification); `plan_ms` = planning time for all 58 layers (noisy: shared "
            "machine, one process per run; see expert_placement_speed.md for interleaved "
            "timings).\n\nCommand: `python benchmarks/expert_placement_summary.py`\n\n"
            + markdown_table(head) + "\n\n" + markdown_table(table) + "\n")
    write_md(folder / "expert_placement_summary.md", text)
    print(text)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
