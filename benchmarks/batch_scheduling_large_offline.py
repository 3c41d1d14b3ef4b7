"""Offline bid-price rule beyond the whole-LP limit: the load-sample price against the full LP.

Above ``max_columns`` start columns (200k, about n = 300 all at once) ``BidPrice`` prices with one
stationary price learned on a 120-request load sample instead of solving the whole LP, whose
time grows faster than n^2. This script compares, on offline instances (``generate(n, seed)``):
the rule as it ships, the rule forced to the sample price (``max_columns=1``), MC-SF and shortest
predicted first; total latency from the evaluator, wall time of the whole evaluation.

    python benchmarks/batch_scheduling_large_offline.py [--cases 200:1,200:2,400:0]
        [--out benchmarks/results/batch_scheduling_large_offline.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.report import markdown_table
from servopt.instances import batch_scheduling as instances
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="200:1,200:2,400:0", help="n:seed pairs")
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_large_offline.md")
    args = parser.parse_args()
    rows = []
    for item in args.cases.split(","):
        n, seed = (int(x) for x in item.split(":"))
        inst = instances.generate(n, seed=seed)
        columns = model.model_size(rules.planning_instance(inst))[1]
        methods = {"mcsf": "mcsf", "spf": "spf", "bid_price": "bid_price",
                   "bid_price_sample": rules.BidPrice(max_columns=1)}
        for label, method in methods.items():
            start = time.perf_counter()
            out = bench.evaluate(inst, method)
            rows.append({"n": n, "seed": seed, "lp_columns": columns, "method": label,
                         "total_latency": out.cost, "wall_s": time.perf_counter() - start})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    mcsf = frame[frame["method"] == "mcsf"].set_index(["n", "seed"])["total_latency"]
    frame["vs_mcsf"] = [c / mcsf[(n, s)] - 1 for n, s, c in
                        zip(frame["n"], frame["seed"], frame["total_latency"], strict=True)]
    text = ["# batch_scheduling: the offline bid-price rule beyond the whole-LP limit", "",
            f"Regenerate with `python benchmarks/batch_scheduling_large_offline.py --cases "
            f"{args.cases}`. `bid_price` is the rule as it ships (whole LP up to 200k start "
            "columns, else the load-sample price); `bid_price_sample` always uses the sample "
            "price. wall_s: the whole evaluation on a shared 2-core machine (noisy).", "",
            markdown_table(frame), ""]
    Path(args.out).write_text("\n".join(text))
    frame.to_csv(Path(args.out).with_suffix(".csv"), index=False)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
