"""Where does the bound bracket of batch scheduling come from: the schedules or the bound?

Run from the repository root (each section can run alone, in parallel; ``--report`` then
writes the markdown from the CSVs already computed)::

    python benchmarks/batch_scheduling_diagnosis.py --section small   # n = 12, 16
    python benchmarks/batch_scheduling_diagnosis.py --section ip      # n = 20, 30
    python benchmarks/batch_scheduling_diagnosis.py --section lns     # n = 50, 100
    python benchmarks/batch_scheduling_diagnosis.py --report

Instances: Azure-calibrated lengths, all requests at round 0 (the instances of
``batch_scheduling_bound.py``). Sections:

- ``small``: the optimum proved by the IP (safe horizon, ``--exact-time`` s) against the
  ``hindsight`` search (order search then LNS, ``--small-search`` s): does the search find it?
- ``ip``: the IP with the cover cuts, warm-started with the search's schedule, run for
  ``--ip-time`` s: does it find a better schedule (then the search is the loose side) or move
  its bound (then the relaxation is)?
- ``lns``: the search's schedule (``--search-time`` s) improved by a larger neighbourhood
  (``--lns-free`` requests freed per window, ``--lns-sub`` s per exact sub-IP, ``--lns-time``
  s); and how fully each uses the memory: utilisation = sum of footprints / (M x makespan),
  for the best schedule and for the LP (its last round with memory in use).

Timings are wall-clock on a shared 2-core machine (noisy); searches and IPs are time-limited.
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
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules


def small(n: int, seed: int, exact_time: float, search_time: float) -> dict:
    inst = instances.generate(n, lengths="azure", seed=seed)
    warm = rules.plan_schedule(inst, rules.MCSF())
    ip = rules.solve_lp(inst, horizon="safe", integer=True, time_limit=exact_time, start=warm)
    search = rules.Hindsight(time_limit=search_time)
    search.prepare(inst)
    found = model.schedule_latency(inst, search.planned)
    return {"status": ip.status, "optimum": ip.objective, "ip_bound": ip.bound, "search": found,
            "search/optimum": found / ip.objective}


def long_ip(n: int, seed: int, ip_time: float, search_time: float, cut_time: float) -> dict:
    inst = instances.generate(n, lengths="azure", seed=seed)
    cut = rules.cover_bound(inst, time_limit=cut_time)
    search = rules.Hindsight(time_limit=search_time)
    search.prepare(inst)
    found = model.schedule_latency(inst, search.planned)
    t0 = time.perf_counter()
    ip = rules.solve_lp(inst, integer=True, time_limit=ip_time, start=search.planned, cuts=cut.cuts)
    ip_s = time.perf_counter() - t0
    ip_cost = math.nan
    if ip.decisions and model.is_feasible(inst, ip.decisions["start"].to_numpy()):
        ip_cost = model.schedule_latency(inst, ip.decisions["start"].to_numpy())
    lower0 = bench.whole_rounds(cut.bound)
    lower = max(lower0, bench.whole_rounds(ip.bound)) if math.isfinite(ip.bound) else lower0
    best = min(found, ip_cost) if math.isfinite(ip_cost) else found
    return {"lp": cut.lp, "cover": cut.bound, "search": found, "ip_status": ip.status,
            "ip_s": ip_s, "ip_bound": ip.bound, "ip_schedule": ip_cost,
            "bracket_cover": found / lower0 - 1.0, "bracket_after_ip": best / lower - 1.0,
            "ip_moved_bound": lower - lower0, "ip_improved_schedule": found - best}


def utilisation(inst: instances.Instance, rounds: int) -> float:
    return float(inst.footprint().sum() / (inst.kv_memory * rounds))


def lns(n: int, seed: int, search_time: float, lns_time: float, lns_free: int,
        lns_sub: float) -> dict:
    inst = instances.generate(n, lengths="azure", seed=seed)
    lp = rules.solve_lp(inst)
    search = rules.Hindsight(time_limit=search_time)
    search.prepare(inst)
    found = model.schedule_latency(inst, search.planned)
    better = rules.improve_schedule(inst, search.planned, time_limit=lns_time, max_free=lns_free,
                                    sub_time=lns_sub, seed=seed + 1)
    best = model.schedule_latency(inst, better)
    x = lp.decisions["x"]
    req = x.index.get_level_values("request").to_numpy()
    lp_end = int(np.max(x.index.get_level_values("round").to_numpy() + inst.output_tokens[req]))
    makespan = int(np.max(better + inst.output_tokens))
    lower = bench.whole_rounds(lp.objective)
    return {"lp": lp.objective, "search": found, "lns": best, "lns_gain": found - best,
            "best/lp_bound": best / lower - 1.0, "util_schedule": utilisation(inst, makespan),
            "util_lp": utilisation(inst, lp_end), "makespan": makespan, "lp_makespan": lp_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=("small", "ip", "lns"), default=None)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--small-sizes", default="12,16")
    parser.add_argument("--ip-sizes", default="20,30")
    parser.add_argument("--ip-seeds", default="0,1,2,3,4;0,1")
    parser.add_argument("--lns-sizes", default="50,100")
    parser.add_argument("--lns-seeds", default="0,1,2,3,4;0,4")
    parser.add_argument("--exact-time", type=float, default=300.0)
    parser.add_argument("--small-search", type=float, default=20.0)
    parser.add_argument("--ip-time", type=float, default=300.0)
    parser.add_argument("--cut-time", type=float, default=60.0)
    parser.add_argument("--search-time", type=float, default=120.0)
    parser.add_argument("--lns-time", type=float, default=120.0)
    parser.add_argument("--lns-free", type=int, default=20)
    parser.add_argument("--lns-sub", type=float, default=5.0)
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_diagnosis.md")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    out = Path(args.out)

    def seeds_of(sizes: str, seeds: str) -> list[tuple[int, int]]:
        groups = seeds.split(";")
        return [(int(n), int(s)) for k, n in enumerate(sizes.split(","))
                for s in groups[min(k, len(groups) - 1)].split(",")]

    if args.section:
        rows = []
        if args.section == "small":
            cells = [(int(n), s) for n in args.small_sizes.split(",") for s in range(args.seeds)]
        elif args.section == "ip":
            cells = seeds_of(args.ip_sizes, args.ip_seeds)
        else:
            cells = seeds_of(args.lns_sizes, args.lns_seeds)
        for n, seed in cells:
            if args.section == "small":
                row = small(n, seed, args.exact_time, args.small_search)
            elif args.section == "ip":
                row = long_ip(n, seed, args.ip_time, args.search_time / 2, args.cut_time)
            else:
                row = lns(n, seed, args.search_time * (2 if n > 50 else 1), args.lns_time,
                          args.lns_free, args.lns_sub)
            rows.append({"n": n, "seed": seed, **row})
            print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(out.with_name(f"{out.stem}_{args.section}.csv"), index=False)
    if args.report:
        write_report(args, out)


def write_report(args: argparse.Namespace, out: Path) -> None:
    text = ["# batch_scheduling: is the bracket the schedules' or the bound's?", "",
            "Written by `python benchmarks/batch_scheduling_diagnosis.py` run as separate "
            f"processes: `--section small --exact-time {args.exact_time:g}`, `--section ip "
            f"--ip-seeds \"{args.ip_seeds}\"`, `--section lns --lns-seeds \"{args.lns_seeds}\"`, "
            "then `--report` with the same options. Azure-calibrated lengths, all requests at "
            "round 0. Time-limited searches and IPs on a shared 2-core machine (noisy; three "
            "other heavy jobs ran at the same time).", ""]
    titles = {"small": f"Proved optima (IP, safe horizon, {args.exact_time:g} s) against the "
                       f"search ({args.small_search:g} s)",
              "ip": f"The IP with cover cuts for {args.ip_time:g} s, warm-started with the search "
                    f"({args.search_time / 2:g} s); lower bounds rounded up",
              "lns": f"The search ({args.search_time:g} s; 2x at n = 100) then LNS with "
                     f"{args.lns_free} free requests per window and {args.lns_sub:g} s exact "
                     f"sub-IPs ({args.lns_time:g} s); memory utilisation of the best schedule "
                     "and of the LP"}
    for section, title in titles.items():
        path = out.with_name(f"{out.stem}_{section}.csv")
        if path.exists():
            text += [f"## {title}", "", markdown_table(pd.read_csv(path)), ""]
    write_md(out, "\n".join(text) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
