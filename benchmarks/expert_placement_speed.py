"""Planning time for all 58 layers at deepseek_v3 shape: EPLB vs the bid-price placement.

Both methods run in the same process, interleaved (EPLB, bid price, EPLB, ...) on the same
instances, so machine load hits both alike; the table reports the median and the 90th
percentile over repetitions, and how often the bid-price plan was the faster of each pair.

Run: ``python benchmarks/expert_placement_speed.py [--reps 30] [--out benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import expert_placement as instances
from servopt.solvers import expert_placement as solvers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    rows = []
    for skew in (0.5, 1.0, 1.5):
        inst = instances.generate("deepseek_v3", windows=5, skew=skew, seed=0)
        methods = {"eplb": solvers.POLICIES["eplb"], "bid_price": solvers.POLICIES["bid_price"]}
        for method in methods.values():  # warm up
            method(inst)
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.reps):
            for name, method in methods.items():
                start = time.perf_counter()
                method(inst)
                times[name].append(1000 * (time.perf_counter() - start))
        faster = np.mean(np.array(times["bid_price"]) < np.array(times["eplb"]))
        for name, values in times.items():
            rows.append({"skew": skew, "method": name, "median_ms": np.median(values),
                         "p90_ms": np.percentile(values, 90), "reps": args.reps,
                         "bid_price_faster_share": faster})
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "expert_placement_speed.csv", index=False)
    text = ("# Planning time, deepseek_v3 shape (58 layers, 256 experts, 32 GPUs x 9 slots)\n\n"
            "Command: `python benchmarks/expert_placement_speed.py --reps "
            f"{args.reps}`. Shared 2-core machine: timings are noisy; runs are interleaved.\n\n"
            + markdown_table(table) + "\n")
    write_md(out / "expert_placement_speed.md", text)
    print(text)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
