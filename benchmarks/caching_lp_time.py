"""Wall and CPU time of the default caching LP on every instance of the ``caching_full`` case.

Run: ``python benchmarks/caching_lp_time.py [--out benchmarks/results]``, one solve at a time
(no other job of this script in parallel). Writes ``caching_lp_time.{md,csv}``: per instance the
requests, the capacity rows kept by the reduced flow network, wall and CPU seconds of
``solve_lp`` (default: reduced network, HiGHS dual simplex with Devex pricing) and the bound.
The issue's target: under a minute for 10^5 requests.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks.caching import make_instance
from servopt.benchmarks.cases.caching_full import CASE
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.solvers import caching as cs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    rows = []
    load_before = os.getloadavg()[0]
    for params in CASE.grid:
        instance = make_instance(seed=CASE.seeds[0], **params)
        cpu, start = time.process_time(), time.perf_counter()
        lp = cs.solve_lp(instance)
        rows.append({**{k: v for k, v in params.items() if k != "objects"},
                     "requests": instance.requests, "wall_s": time.perf_counter() - start,
                     "cpu_s": time.process_time() - cpu, "bound": lp.value})
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    frame.to_csv(out / "caching_lp_time.csv", index=False)
    wall = frame["wall_s"]
    text = ["# Caching LP solve time on the caching_full instances", "",
            "Command: `python benchmarks/caching_lp_time.py --out benchmarks/results`, one solve at "
            f"a time on the 2-core machine (1-minute load average {load_before:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end).", "",
            f"Wall time: median {wall.median():.1f} s, max {wall.max():.1f} s; "
            f"{int((wall < 60).sum())} of {len(wall)} under a minute.", "",
            markdown_table(frame, floatfmt=".4g"), ""]
    write_md(out / "caching_lp_time.md", "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    main()
