"""Does a coarse-time integer relaxation lift the lower bound at n = 20-100? (issue 5)

Run from the repository root::

    python benchmarks/batch_scheduling_coarse.py [--sizes 20,50,100] [--seeds 0,1,2,3,4]
        [--time 60] [--out benchmarks/results/batch_scheduling_coarse.md]

(``--part NAME`` writes only ``<out>.part-NAME.csv``; ``--combine`` writes the report from the
parts, ``--exact-time`` naming the --time of the exact rows; ``--exact 12,16`` measures the
proved-optimum instances instead, see below.)
Instances: those of ``batch_scheduling_bound.csv`` (``generate(n, lengths="azure", seed=s)``,
all requests at round 0, horizon from the greedy schedule, ``late`` columns). Each
method is :func:`servopt.solvers.batch_scheduling.coarse_bound` with ``--time`` s in all:

- ``ip``: bucket 1 (the fine IP, no cuts): HiGHS's dual bound at the time limit;
- ``coarse2`` / ``coarse4``: buckets of 2 / 4 start rounds, the least latency and least KV of
  any start in the bucket (offset 0);
- ``avg2`` / ``avg4``: the same with the wait credit g, the mean over the k grid offsets (each
  offset's IP gets time / k s);
- ``priced``: bucket 1 with costs penalised by 0.5 x the fine LP's memory prices (Lagrangian).

Each column ``<m>`` is that method's valid lower bound (``-inf`` when its root LP did not
finish), ``<m>_lp`` its LP relaxation (same averaging or constant), ``<m>_status`` HiGHS's
status per solved model. ``cover``, ``group``, ``lower`` (best lower bound so far) and
``best`` (best schedule found) are read from the committed ``batch_scheduling_bound.csv``;
``lower_new`` = max(lower, ceil of every method's bound) and ``bracket_new`` = best /
lower_new - 1. ``--exact``: the instances of ``batch_scheduling_bound_exact.csv`` (n = 12, 16,
safe horizon, optimum proved by the IP), each method against that optimum, written to
``<out>_exact.csv`` and shown by the report. Wall-clock limits on a shared 2-core machine:
results depend on its load.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import batch_scheduling as instances
from servopt.solvers import batch_scheduling as rules

METHODS = {
    "ip": {"bucket": 1, "averaged": False},
    "coarse2": {"bucket": 2, "averaged": False},
    "coarse4": {"bucket": 4, "averaged": False},
    "avg2": {"bucket": 2, "averaged": True},
    "avg4": {"bucket": 4, "averaged": True},
    "priced": {"bucket": 1, "averaged": False, "penalty": 0.5},
}
BOUND_CSV = Path(__file__).parent / "results" / "batch_scheduling_bound.csv"
EXACT_CSV = Path(__file__).parent / "results" / "batch_scheduling_bound_exact.csv"


def measure_exact(n: int, seed: int, time_limit: float, reference: pd.DataFrame) -> dict:
    """Every method's bound on one small instance (safe horizon) against the proved optimum."""
    inst = instances.generate(n, lengths="azure", seed=seed)
    ref = reference[(reference["n"] == n) & (reference["seed"] == seed)].iloc[0]
    optimum = float(ref["optimum"])
    row = {"n": n, "seed": seed, "optimum": optimum, "status": ref["status"],
           "lp/opt": float(ref["lp"]) / optimum, "cover/opt": float(ref["cover"]) / optimum,
           "group/opt": float(ref["group"]) / optimum}
    for name, options in METHODS.items():
        result = rules.coarse_bound(inst, time_limit=time_limit, horizon="safe", **options)
        row[f"{name}/opt"] = result.bound / optimum
        row[f"{name}_status"] = "/".join(result.statuses)
        print(n, seed, name, round(result.bound, 2), optimum, result.statuses, flush=True)
    return row


def measure(n: int, seed: int, time_limit: float, reference: pd.DataFrame,
            methods: tuple = tuple(METHODS)) -> dict:
    """Every method's bound on one instance, against the committed bracket."""
    inst = instances.generate(n, lengths="azure", seed=seed)
    t0 = time.perf_counter()
    lp = rules.solve_lp(inst)
    row = {"n": n, "seed": seed, "lp": lp.objective, "lp_s": time.perf_counter() - t0}
    ref = reference[(reference["n"] == n) & (reference["seed"] == seed)]
    for key in ("cover", "group", "lower", "best"):
        row[key] = float(ref[key].iloc[0]) if len(ref) else math.nan
    lower = row["lower"]
    for name in methods:
        result = rules.coarse_bound(inst, time_limit=time_limit, **METHODS[name])
        row.update({name: result.bound, f"{name}_lp": result.lp, f"{name}_s": result.wall_s,
                    f"{name}_status": "/".join(result.statuses)})
        if math.isfinite(result.bound):
            lower = max(lower, bench.whole_rounds(result.bound))
        print(n, seed, name, round(result.bound, 2), round(result.lp, 2), result.statuses, flush=True)
    row["lower_new"] = float(lower)
    row["bracket"] = row["best"] / row["lower"] - 1.0
    row["bracket_new"] = row["best"] / lower - 1.0
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,50,100")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--time", type=float, default=60.0)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="a subset of: " + ", ".join(METHODS))
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_coarse.md")
    parser.add_argument("--note", default="", help="with --combine: a sentence on the run's conditions")
    parser.add_argument("--exact", default="")
    parser.add_argument("--exact-time", type=float, default=None,
                        help="with --combine: the --time the --exact rows were measured with")
    parser.add_argument("--part", default="")
    parser.add_argument("--combine", action="store_true")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    out = Path(args.out)
    if args.combine:
        parts = sorted(out.parent.glob(out.stem + ".part-*.csv"))
        frame = pd.concat([pd.read_csv(f) for f in parts]).sort_values(["n", "seed"])
        write_report(args, out, frame, len(parts))
        return
    if args.exact:
        reference = pd.read_csv(EXACT_CSV)
        rows = [measure_exact(n, s, args.time, reference) for n in [int(x) for x in args.exact.split(",")]
                for s in [int(x) for x in args.seeds.split(",")]]
        pd.DataFrame(rows).to_csv(out.with_name(f"{out.stem}_exact.csv"), index=False)
        return
    reference = pd.read_csv(BOUND_CSV)
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    rows = [measure(n, s, args.time, reference, methods) for n in [int(x) for x in args.sizes.split(",")]
            for s in [int(x) for x in args.seeds.split(",")]]
    frame = pd.DataFrame(rows)
    if args.part:
        frame.to_csv(out.with_name(f"{out.stem}.part-{args.part}.csv"), index=False)
        return
    write_report(args, out, frame, 0)


def write_report(args: argparse.Namespace, out: Path, frame: pd.DataFrame, parts: int) -> None:
    """Markdown report (per size: each method's bound relative to the LP and the old lower
    bound; per instance) and the CSV."""
    frame.to_csv(out.with_suffix(".csv"), index=False)
    methods = [m for m in METHODS if m in frame.columns]
    summary = []
    for n, group in frame.groupby("n"):
        row = {"n": n, "instances": len(group)}
        for name in ("cover", "group"):
            row[f"{name}/lp - 1"] = float(np.mean(group[name] / group["lp"] - 1.0))
        for name in methods:  # over the instances where the IP got past its root LP
            own = group[f"{name}_lp"]
            done = np.isfinite(group[name]) & (group[name] >= own - 1e-6 * own.abs())
            row[f"{name}/lp - 1"] = float(np.mean(group[name][done] / group["lp"][done] - 1.0))
            row[f"{name} roots"] = int(done.sum())
        for name in methods:
            row[f"{name}_lp/lp - 1"] = float(np.mean(group[f"{name}_lp"] / group["lp"] - 1.0))
        row["lifts (of instances)"] = int((group["lower_new"] > group["lower"]).sum())
        row["bracket"] = float(group["bracket"].mean())
        row["bracket_new"] = float(group["bracket_new"].mean())
        summary.append(row)
    summary = pd.DataFrame(summary)
    lift = summary[["n", "instances", "lifts (of instances)", "bracket", "bracket_new",
                    *[f"{m}/lp - 1" for m in ("cover", "group", *methods)],
                    *[f"{m} roots" for m in methods]]]
    relax = summary[["n", *[f"{m}_lp/lp - 1" for m in methods]]]
    exact_path = out.with_name(f"{out.stem}_exact.csv")
    exact_time = args.time if getattr(args, "exact_time", None) is None else args.exact_time
    exact = []
    if exact_path.exists():
        table = pd.read_csv(exact_path)
        mean = table.drop(columns=["seed"]).groupby("n").mean(numeric_only=True).reset_index()
        sizes = ",".join(map(str, sorted(table["n"].unique())))
        exact = ["## Where the optimum is proved (n = 12, 16; safe horizon): bound / optimum", "",
                 f"`python benchmarks/batch_scheduling_coarse.py --exact {sizes} "
                 f"--seeds {','.join(map(str, sorted(table['seed'].unique())))} --time {exact_time:g}`. "
                 "Means per size, then per instance.", "",
                 markdown_table(mean), "", markdown_table(table), ""]
    text = ["# batch_scheduling: a coarse-time integer relaxation as a lower bound", "",
            f"Regenerate with `python benchmarks/batch_scheduling_coarse.py --sizes {args.sizes} "
            f"--seeds {args.seeds} --time {args.time:g}"
            + (f" --methods {args.methods}" if args.methods != ",".join(METHODS) else "") + "`"
            + (f" (computed as {parts} parallel parts with `--part NAME` and the same --time, then "
               "`--combine`)." if parts else "."),
            "Methods and columns: see the script's docstring. Bounds relative to the fine LP "
            "(positive = above it); `bracket` is the committed best / lower - 1, `bracket_new` "
            "the same with the best of these bounds added. A method's mean is over the instances "
            "where its IP finished the root LP in time (`<m> roots`; elsewhere its dual bound is "
            "valid but useless, e.g. 0). Shared 2-core machine (noisy; every IP is "
            "time-limited)." + (f" {args.note}" if getattr(args, "note", "") else ""), "",
            *exact,
            "## Lower bounds against the fine LP (means over seeds)", "", markdown_table(lift), "",
            "## The relaxations' own LPs against the fine LP", "", markdown_table(relax), "",
            "## Per instance", "", markdown_table(frame), ""]
    write_md(out, "\n".join(text) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
