"""The hindsight IP's warm start: before (shortest-first greedy) and after (warm_start_schedule).

``servopt.solve(instance, time_limit=...)`` hands HiGHS the time-indexed IP (matrix form, exact
"safe" horizon) with a feasible schedule as its start. Before this change the start was
:func:`servopt.models.batch_scheduling.greedy_schedule` (shortest true output first, stop at the
first request that does not fit) and the bound was HiGHS's dual bound alone; after, the start is
:func:`~servopt.models.batch_scheduling.warm_start_schedule` (the best of 18 exact-lookahead
schedules) and the bound is the better of HiGHS's and the LP relaxation on the makespan horizon
rounded up (``solution.info["bound_kind"]`` says which; under a time limit that LP is solved
before the IP, since the limit became a budget for the whole ``solve_matrix`` call: bound LP,
HiGHS and prices; the build, timed apart as ``build_s``, is outside it). For each instance and
time limit both variants are solved (the "before" one rebuilt from the same matrix model with
the greedy start and no ``bound_lp``); the table gives the start's latency and build time, the
incumbent, the bound and its kind, the status and the wall time of the solve, next to the
cheap heuristics' total latency from the evaluator (exact predictions, so MC-SF, SPF and the
bid-price rule run their own plans).

    python benchmarks/batch_scheduling_warm_start.py [--limits 10,60]
        [--out benchmarks/results/batch_scheduling_warm_start.md]
    python benchmarks/batch_scheduling_warm_start.py --bracket   # the warm start alone on the
        # bound bracket's Azure instances (n = 50, 100) against their best schedules found

Instances: the library's ``bs_offline_15`` and ``bs_offline_100`` and ``generate(50, seed=0)``
(the generator and seed of the library's batch instances at n = 50). Wall time on a shared
2-core machine (noisy); HiGHS's search is time-limited, so incumbents can vary with the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import batch_scheduling as instances
from servopt.instances import library
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules
from servopt.solvers import exact

# --bracket's input, the committed bound table: next to this script whatever --out and the working
# directory are (it was read from --out's folder, so any --out but benchmarks/results failed)
BOUND = Path(__file__).resolve().parent / "results" / "batch_scheduling_bound.csv"


def cases() -> dict[str, instances.Instance]:
    return {"bs_offline_15": library.load("bs_offline_15"),
            "generate(50, seed=0)": instances.generate(50, seed=0),
            "bs_offline_100": library.load("bs_offline_100")}


def solve(inst: instances.Instance, limit: float, variant: str) -> dict:
    """One time-limited IP solve through the matrix form, with the variant's start and bound."""
    t0 = time.perf_counter()
    mm = model.build_matrix_model(inst)
    if variant == "before":
        greedy = model.greedy_schedule(inst)
        cols = model.columns(inst, "safe")
        mm = dataclasses.replace(mm, start=model.start_vector(cols, greedy), bound_lp=None)
        start_cost = model.schedule_latency(inst, greedy)
    else:
        start_cost = float(mm.objective @ mm.start)
    build_s = time.perf_counter() - t0
    sol = exact.solve_matrix(mm, time_limit=limit, decision="batch_scheduling")
    schedule = sol.decisions["start"].to_numpy()
    real = bool(model.is_feasible(inst, schedule))
    return {"start": start_cost, "build_s": build_s, "incumbent": sol.objective,
            "evaluated": bench.evaluate(inst, rules.Planned(schedule)).cost if real else math.nan,
            "bound": sol.bound, "bound_kind": sol.info.get("bound_kind", ""),
            "bound_lp_s": sol.info.get("bound_lp_s", math.nan),
            "status": sol.status, "solve_s": sol.wall_s}


def bracket(out: Path, bound: Path = BOUND) -> None:
    """The warm start alone on the bound bracket's instances (``bound``, the committed
    ``batch_scheduling_bound.csv``, n = 50 and 100): its total latency against that table's best
    schedule found and the bid-price and MC-SF rules' (from the table's ratios). ``out`` names
    the output only."""
    table = pd.read_csv(bound)
    rows = []
    for _, r in table[table.n.isin([50, 100])].iterrows():
        inst = instances.generate(int(r.n), lengths="azure", seed=int(r.seed))
        t0 = time.perf_counter()
        warm = model.schedule_latency(inst, model.warm_start_schedule(inst))
        rows.append({"n": int(r.n), "seed": int(r.seed), "warm_start": warm,
                     "warm_start_s": time.perf_counter() - t0, "best": r.best, "lower": r.lower,
                     "warm_start/best": warm / r.best, "bid_price/best": r["bid_price/best"],
                     "mcsf/best": r["mcsf/best"],
                     "warm_start/bid_price": warm / (r["bid_price/best"] * r.best)})
    frame = pd.DataFrame(rows)
    frame.to_csv(out.with_name(out.stem + "_bracket.csv"), index=False)
    text = ["# batch_scheduling: the IP's warm start alone on the bound bracket's instances", "",
            "Regenerate with `python benchmarks/batch_scheduling_warm_start.py --bracket`. "
            "Azure-calibrated lengths, all at round 0, seeds 0-4 (`batch_scheduling_bound.md`): "
            "`warm_start` = total latency of `warm_start_schedule` (true lengths), `best` and "
            "`lower` = that table's best schedule found and lower bound, `bid_price/best` and "
            "`mcsf/best` = its ratios for the rules. Seconds on a shared machine (noisy).", "",
            markdown_table(frame), ""]
    write_md(out.with_name(out.stem + "_bracket.md"), "\n".join(text))
    print("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="10,60", help="IP time limits (s)")
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_warm_start.md")
    parser.add_argument("--bracket", action="store_true",
                        help="only the warm start against the bound bracket's best schedules")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    if args.bracket:
        bracket(Path(args.out))
        return
    limits = [float(x) for x in args.limits.split(",")]
    first_load = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse",
                             "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows = []
    for name, inst in cases().items():
        heuristics = {m: bench.evaluate(inst, m).cost for m in ("mcsf", "spf", "bid_price")}
        for limit in limits:
            for variant in ("before", "after"):
                row = {"instance": name, "n": inst.n, "limit_s": limit, "variant": variant,
                       **solve(inst, limit, variant), **heuristics}
                rows.append(row)
                print(row, flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    load = os.getloadavg()[0]
    text = ["# batch_scheduling: the hindsight IP's warm start, before and after", "",
            f"Regenerate with `python benchmarks/batch_scheduling_warm_start.py --limits "
            f"{args.limits}`. `start`: total latency (rounds) of the warm start; `build_s`: "
            "model build including the start; `incumbent`/`bound`: HiGHS's best schedule and "
            "the reported lower bound (`bound_kind`: HiGHS's dual bound, or the makespan-horizon "
            "LP relaxation rounded up when it is the better one; `bound_lp_s`: the seconds that "
            "LP took, when it was tried: first, under the limit); `evaluated`: the incumbent "
            "schedule replayed by the simulator; `solve_s`: wall time of `solve_matrix` (bound "
            "LP, HiGHS, prices), for which `limit_s` is the budget of the whole call (the build "
            "is outside it); `mcsf`, `spf`, "
            "`bid_price`: the evaluator's total latency of the cheap rules (exact predictions). "
            f"Code of {commit}; shared 2-core machine (load {first_load:.1f} at the start, "
            f"{load:.1f} at the end): timings and time-limited incumbents are noisy.", "",
            markdown_table(table), ""]
    write_md(out, "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    main()
