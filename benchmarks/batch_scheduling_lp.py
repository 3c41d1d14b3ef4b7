"""How hard is the time-indexed model? LP solve times and the IP's gap within a time limit.

Run from the repository root::

    python benchmarks/batch_scheduling_lp.py [--lp 50,100,200] [--ip 20,30,50] [--seeds 2]
        [--ip-time 60] [--out benchmarks/results/batch_scheduling_lp.md]

Instances: Azure-calibrated lengths, all requests at round 0 (``generate(n, lengths="azure")``).
LP: HiGHS IPM with crossover on the sparse build. IP: HiGHS branch and bound warm-started with
the shortest-first schedule, ``--ip-time`` seconds; gap = (incumbent - dual bound) / bound.
Timings are wall-clock seconds on a shared 2-core machine (noisy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import batch_scheduling as instances
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lp", default="50,100,200")
    parser.add_argument("--ip", default="20,30,50")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--ip-time", type=float, default=60.0)
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_lp.md")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    rows = []
    for n in [int(x) for x in args.lp.split(",") if x]:
        for seed in range(args.seeds):
            inst = instances.generate(n, lengths="azure", seed=seed)
            t0 = time.perf_counter()
            sol = rules.solve_lp(inst)
            wall = time.perf_counter() - t0
            mcsf = bench.evaluate(inst, "mcsf").cost
            rows.append({"model": "LP", "n": n, "seed": seed, "rounds": sol.info["rounds"],
                         "columns": sol.info["columns"], "nonzeros": sol.info["nonzeros"],
                         "status": sol.status, "value": sol.objective, "bound": sol.bound,
                         "gap": 0.0, "wall_s": wall, "mcsf_over_bound": mcsf / sol.bound})
            print(rows[-1], flush=True)
    for n in [int(x) for x in args.ip.split(",") if x]:
        for seed in range(args.seeds):
            inst = instances.generate(n, lengths="azure", seed=seed)
            warm = model.greedy_schedule(inst)
            lp = rules.solve_lp(inst)
            t0 = time.perf_counter()
            sol = rules.solve_lp(inst, integer=True, time_limit=args.ip_time, start=warm)
            wall = time.perf_counter() - t0
            mcsf = bench.evaluate(inst, "mcsf").cost
            rows.append({"model": "IP", "n": n, "seed": seed, "rounds": sol.info["rounds"],
                         "columns": sol.info["columns"], "nonzeros": sol.info["nonzeros"],
                         "status": sol.status, "value": sol.objective, "bound": sol.bound,
                         "gap": sol.gap, "wall_s": wall, "mcsf_over_bound": mcsf / sol.bound,
                         "warm_start": model.schedule_latency(inst, warm),
                         "lp_bound": lp.objective})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    text = ["# batch_scheduling: time-indexed LP solve times and IP gaps", "",
            "Regenerate with `python benchmarks/batch_scheduling_lp.py "
            f"--lp {args.lp} --ip {args.ip} --seeds {args.seeds} --ip-time {args.ip_time:g}`.",
            "Azure-calibrated lengths, all requests at round 0; wall-clock seconds on a shared "
            "2-core machine (other jobs running: noisy).", "",
            markdown_table(frame)]
    write_md(out, "\n".join(text) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
