"""How close is each method to the hindsight optimum? A bracket [lower bound, best schedule found].

Run from the repository root::

    python benchmarks/batch_scheduling_bound.py [--sizes 20,50,100] [--seeds 5] [--ip-max 50]
        [--ip-time 60] [--search-time 60] [--cut-time 120] [--exact 12,16]
        [--out benchmarks/results/batch_scheduling_bound.md]

Instances: Azure-calibrated lengths, all requests at round 0 (``generate(n, lengths="azure",
seed=s)``, seeds 0..seeds-1, the seeds of the full case). For each instance:

- lower bound LB = max(ceil(LP with cover cuts), ceil(IP dual bound), ceil(group), ceil(coarse)): the
  LP relaxation strengthened by rounds of memory cover cuts (``cover_bound``, at most
  ``--cut-time`` s); the IP (HiGHS, ``--ip-time`` s, only for n <= ``--ip-max``) carries the
  same cuts and is warm-started with the best schedule found; with ``--group-time`` > 0, the
  LP in which the ``--group-size`` requests the LP finishes last are scheduled integrally
  (``group_bound``: column generation and its last pricing within ``--group-time`` s; the committed
  results were made when the last 30 s of pricing came on top of it);
  with ``--coarse-time`` > 0, the coarse-time IP (``coarse_bound``: start rounds in buckets of
  2, averaged over both grid offsets, ``--coarse-time`` s in all; its own table is
  ``batch_scheduling_coarse.md``);
- best schedule found UB = the least total latency of every method, the IP incumbent and the
  ``hindsight`` method (the best of the MC-SF, warm-start and bid-price plans improved by
  a local search over the admission order, then large-neighbourhood search, ``--search-time``
  s in all; the committed tables were made when its second plan was shortest-first, before
  ``warm_start_schedule``), each scored by the evaluator;
- every method's cost / LB and cost / UB: its distance to the optimum lies between the two.

``--exact`` sizes are solved to optimality (IP on the safe horizon, 300 s limit) to measure how
far the LP relaxation, and the LP with cover cuts, are below the optimum where it is known.
``--reuse`` adds only the group bound to the per-instance rows of an earlier run (its CSVs,
``<out>.csv`` and ``<out>_exact.csv``), keeping every other column, and recomputes the lower
bound, the bracket and the ratios from them.
Timings are wall-clock on a shared 2-core machine (noisy); the search, the cut loop and the IP
are time-limited, so their results depend on the machine's load.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import batch_scheduling as instances
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules

METHODS = ("fcfs", "spf", "mcsf", "bid_price", "bid_price_stationary")


def group(inst: instances.Instance, size: int, group_time: float, horizon: str | None = None
          ) -> dict:
    """The group bound (``group_bound``) and how it ended."""
    g = rules.group_bound(inst, group_size=size, time_limit=group_time, horizon=horizon)
    return {"group": g.bound, "group_master": g.master, "group_status": g.status,
            "group_s": g.wall_s}


def bracket(inst: instances.Instance, ip_time: float | None, search_time: float,
            cut_time: float, group_size: int = 8, group_time: float = 0.0,
            coarse_time: float = 0.0) -> dict:
    """Lower bound, best schedule found and every method's cost on one instance."""
    t0 = time.perf_counter()
    lp = rules.solve_lp(inst)
    row = {"lp": lp.objective, "lp_s": time.perf_counter() - t0}
    cut = rules.cover_bound(inst, time_limit=cut_time)
    row.update({"cover": cut.bound, "cover_rounds": cut.rounds, "cover_s": cut.wall_s})
    costs = {m: bench.evaluate(inst, m).cost for m in METHODS}
    search = rules.Hindsight(time_limit=search_time)
    t0 = time.perf_counter()
    costs["hindsight"] = bench.evaluate(inst, search).cost
    row["search_s"] = time.perf_counter() - t0
    row["search_start"] = model.schedule_latency(inst, search.initial)
    lower = bench.whole_rounds(max(lp.objective, cut.bound))
    row["ip_bound"] = row["ip_value"] = math.nan
    if ip_time is not None:
        ip = rules.solve_lp(inst, integer=True, time_limit=ip_time, start=search.planned,
                            cuts=cut.cuts)
        row["ip_bound"], row["ip_value"] = ip.bound, ip.objective
        if math.isfinite(ip.bound):
            lower = max(lower, bench.whole_rounds(ip.bound))
        if ip.decisions and model.is_feasible(inst, ip.decisions["start"].to_numpy()):
            costs["ip"] = model.schedule_latency(inst, ip.decisions["start"].to_numpy())
    if group_time > 0:
        row.update(group(inst, group_size, group_time))
        lower = max(lower, bench.whole_rounds(row["group"]))
    if coarse_time > 0:
        row["coarse"] = rules.coarse_bound(inst, bucket=2, time_limit=coarse_time, report_lp=False).bound
        if math.isfinite(row["coarse"]):
            lower = max(lower, bench.whole_rounds(row["coarse"]))
    best = min(costs.values())
    row.update({"lower": float(lower), "best": best, "bracket": best / lower - 1.0})
    for m in (*METHODS, "hindsight"):
        row[f"{m}/lower"] = costs[m] / lower
        row[f"{m}/best"] = costs[m] / best
    return row


def exact_gap(inst: instances.Instance, cut_time: float, group_size: int = 8,
              group_time: float = 0.0, coarse_time: float = 0.0) -> dict:
    """LP, LP with cover cuts and methods against the proved optimum (small instances)."""
    lp = rules.solve_lp(inst, horizon="safe")
    cut = rules.cover_bound(inst, horizon="safe", time_limit=cut_time)
    warm = rules.plan_schedule(inst, rules.MCSF())
    ip = rules.solve_lp(inst, horizon="safe", integer=True, time_limit=300.0, start=warm)
    row = {"status": ip.status, "optimum": ip.objective, "ip_bound": ip.bound,
           "lp": lp.objective, "cover": cut.bound, "lp/optimum": lp.objective / ip.objective,
           "cover/optimum": cut.bound / ip.objective}
    if group_time > 0:
        row.update(group(inst, group_size, group_time, horizon="safe"))
        row["group/optimum"] = row["group"] / ip.objective
    if coarse_time > 0:
        row["coarse"] = rules.coarse_bound(inst, bucket=2, horizon="safe", time_limit=coarse_time,
                                            report_lp=False).bound
        row["coarse/optimum"] = row["coarse"] / ip.objective
    for m in METHODS:
        row[f"{m}/optimum"] = bench.evaluate(inst, m).cost / ip.objective
    return row


def reuse(args: argparse.Namespace, out: Path) -> tuple[pd.DataFrame, list]:
    """Add the group bound to the rows of an earlier run; recompute lower, bracket, ratios."""
    frame = pd.read_csv(out.with_suffix(".csv"))
    frame = frame[frame["n"].isin([int(x) for x in args.sizes.split(",") if x])
                  & (frame["seed"] < args.seeds)]
    rows = []
    for _, old in frame.iterrows():
        n, seed = int(old["n"]), int(old["seed"])
        inst = instances.generate(n, lengths="azure", seed=seed)
        row = {**old.to_dict(), **group(inst, args.group_size, args.group_time)}
        costs = {m: old[f"{m}/best"] * old["best"] for m in (*METHODS, "hindsight")}
        lower = max(old["lower"], bench.whole_rounds(row["group"]))
        row.update({"lower": float(lower), "bracket": old["best"] / lower - 1.0})
        for m, cost in costs.items():
            row[f"{m}/lower"] = cost / lower
        rows.append(row)
        print({k: row[k] for k in ("n", "seed", "cover", "group", "group_master", "lower",
                                   "best", "bracket")}, flush=True)
    exact_rows = []
    exact_path = out.with_name(out.stem + "_exact.csv")
    if exact_path.exists():
        old_exact = pd.read_csv(exact_path)
        old_exact = old_exact[old_exact["n"].isin([int(x) for x in args.exact.split(",") if x])]
        for _, old in old_exact.iterrows():
            inst = instances.generate(int(old["n"]), lengths="azure", seed=int(old["seed"]))
            row = {**old.to_dict(), **group(inst, args.group_size, args.group_time, "safe")}
            row["group/optimum"] = row["group"] / old["optimum"]
            exact_rows.append(row)
            print({k: row[k] for k in ("n", "seed", "optimum", "cover", "group")}, flush=True)
    return pd.DataFrame(rows), exact_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,50,100")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ip-max", type=int, default=50)
    parser.add_argument("--ip-time", type=float, default=60.0)
    parser.add_argument("--search-time", type=float, default=60.0)
    parser.add_argument("--cut-time", type=float, default=120.0)
    parser.add_argument("--exact", default="12,16")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--group-time", type=float, default=0.0)
    parser.add_argument("--coarse-time", type=float, default=0.0)
    parser.add_argument("--reuse", action="store_true",
                        help="add the group bound to the rows of the CSVs at --out (no re-solve "
                             "of the rest)")
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_bound.md")
    parser.add_argument("--part", default="",
                        help="write only this part's rows (<out>.part-NAME.csv), no report")
    parser.add_argument("--combine", action="store_true",
                        help="write the report from the parts already computed (no solving)")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.combine:
        parts = sorted(out.parent.glob(out.stem + ".part-*.csv"))
        frame = pd.concat([pd.read_csv(f) for f in parts]).sort_values(["n", "seed"])
        exact_parts = sorted(out.parent.glob(out.stem + "_exact.part-*.csv"))
        exact_rows = (pd.concat([pd.read_csv(f) for f in exact_parts]).sort_values(["n", "seed"])
                      .to_dict("records") if exact_parts else [])
        write_report(args, out, frame, exact_rows, parts=len(parts) + len(exact_parts))
        return
    exact_rows, rows = [], []
    if args.reuse:
        frame, exact_rows = reuse(args, out)
        rows = frame.to_dict("records")
    for n in [] if args.reuse else [int(x) for x in args.exact.split(",") if x]:
        for seed in range(args.seeds):
            inst = instances.generate(n, lengths="azure", seed=seed)
            row = {"n": n, "seed": seed, **exact_gap(inst, args.cut_time, args.group_size,
                                                     args.group_time, args.coarse_time)}
            exact_rows.append(row)
            print(row, flush=True)
    for n in [] if args.reuse else [int(x) for x in args.sizes.split(",") if x]:
        for seed in range(args.seeds):
            inst = instances.generate(n, lengths="azure", seed=seed)
            ip_time = args.ip_time if n <= args.ip_max else None
            row = {"n": n, "seed": seed, **bracket(inst, ip_time, args.search_time,
                                                   args.cut_time, args.group_size,
                                                   args.group_time, args.coarse_time)}
            rows.append(row)
            print(row, flush=True)
    frame = pd.DataFrame(rows)
    if args.part:
        if rows:
            frame.to_csv(out.with_name(f"{out.stem}.part-{args.part}.csv"), index=False)
        if exact_rows:
            pd.DataFrame(exact_rows).to_csv(
                out.with_name(f"{out.stem}_exact.part-{args.part}.csv"), index=False)
        return
    write_report(args, out, frame, exact_rows)


def write_report(args: argparse.Namespace, out: Path, frame: pd.DataFrame, exact_rows: list,
                 parts: int = 0) -> None:
    """The markdown report and the CSVs of the bracket (and of the exact sizes)."""
    frame.to_csv(out.with_suffix(".csv"), index=False)
    ratio_cols = [c for c in frame.columns if "/" in c]
    summary = frame.groupby("n")[["bracket", *ratio_cols]].mean().reset_index()
    text = ["# batch_scheduling: distance to the hindsight optimum, bracketed", "",
            "Regenerate with `python benchmarks/batch_scheduling_bound.py "
            f"--sizes {args.sizes} --seeds {args.seeds} --ip-max {args.ip_max} "
            f"--ip-time {args.ip_time:g} --search-time {args.search_time:g} "
            f"--cut-time {args.cut_time:g} --exact {args.exact}"
            + (f" --group-size {args.group_size} --group-time {args.group_time:g}"
               if args.group_time > 0 else "")
            + (f" --coarse-time {args.coarse_time:g}" if args.coarse_time > 0 else "") + "`"
            + (f" (computed here as {parts} parallel parts with `--part NAME` and the same "
               "options, then combined with `--combine`)." if parts else ".")
            + (" The group-bound columns were added with `--reuse --group-size "
               f"{args.group_size} --group-time {args.group_time:g}` to the rows of the run "
               "before (every other column is that run's)." if args.group_time > 0 else ""),
            "Azure-calibrated lengths, all requests at round 0, seeds 0.."
            f"{args.seeds - 1}. lower = max(ceil LP with cover cuts, ceil IP dual bound with the "
            "same cuts" + (", ceil group bound: the LP with the requests it finishes last "
                           "scheduled integrally, by column generation; `group_master` is the "
                           "master's value when the loop stopped, a bound only when "
                           "`group_status` is converged" if args.group_time > 0 else "")
            + "); best = best schedule found (every method, the IP incumbent and the "
            "`hindsight` search: order search, then LNS), all scored "
            "by the evaluator. A method's distance to the optimum lies between cost/best - 1 "
            "and cost/lower - 1; bracket = best/lower - 1 is the width of that interval. "
            "Time-limited search and IP on a shared 2-core machine (noisy).", ""]
    if exact_rows:
        exact = pd.DataFrame(exact_rows)
        exact.to_csv(out.with_name(out.stem + "_exact.csv"), index=False)
        text += ["## Where the optimum is proved (small n): how far below it the LP and the LP "
                 "with cover cuts are" + (" (and the group bound, safe horizon)"
                                          if args.group_time > 0 else ""), "",
                 markdown_table(exact), ""]
    text += ["## Bracket per size (means over seeds)", "", markdown_table(summary), "",
             "## Per instance", "",
             "`ip_bound` is the IP's dual bound with the cuts when HiGHS stopped; 0 means HiGHS "
             "did not finish its root node in the time (a trivial bound, not a computed one); "
             "blank: no IP was run (n above `--ip-max`).", "",
             markdown_table(frame), ""]
    write_md(out, "\n".join(text) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
