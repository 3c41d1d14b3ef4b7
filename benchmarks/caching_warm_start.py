"""Caching IP with and without the warm start from the rounded LP schedule, on the library.

Run: ``python benchmarks/caching_warm_start.py [--out benchmarks/results]``. Writes
``caching_warm_start.md`` and ``.csv``. For each library caching instance and time limit:
``before`` is the IP as ``servopt.solve`` ran it before the warm start (the same matrix model
handed to HiGHS without a start, :func:`servopt.solvers.exact.solve_matrix`), ``after`` is
``servopt.solve(instance, time_limit=...)`` (matrix path, the LP relaxation solved and rounded
first, inside the limit); ``before, pyomo`` / ``after, pyomo`` the same on the Pyomo path.
``rounded_lp``: the miss cost of the ``lp_schedule`` method, replayed by the evaluator.
Timings are wall-clock on a 2-core machine shared with other jobs: noisy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks import caching as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.core import InvalidInstanceError
from servopt.instances import library
from servopt.models import caching as mc
from servopt.solvers import exact

INSTANCES = ("cache_mm_300", "cache_mm_5k", "cache_mm_100k")
LIMITS = (10.0, 60.0)


def run(name: str, limit: float, variant: str, rounded: float) -> dict:
    inst = library.load(name)
    start = time.perf_counter()
    if variant == "before":
        sol = exact.solve_matrix(mc.build_matrix_model(inst), time_limit=limit, decision="caching")
    elif variant == "before, pyomo":
        sol = exact.solve_model(mc.build(inst), time_limit=limit, decision="caching")
    else:
        sol = exact.solve(inst, time_limit=limit,
                          backend="pyomo" if variant == "after, pyomo" else "highs")
    wall = time.perf_counter() - start
    return {"instance": name, "limit_s": limit, "variant": variant, "status": sol.status,
            "incumbent": sol.objective, "bound": sol.bound, "gap": sol.gap, "wall_s": wall,
            "rounded_lp": rounded, "incumbent_over_rounded": sol.objective / rounded - 1,
            "warm_start": sol.info.get("warm_start", "none")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    rows = []
    for name in INSTANCES:
        inst = library.load(name)
        try:
            mc.build_matrix_model(inst)  # refused above max_binaries before anything is built
        except InvalidInstanceError as exc:
            rows.append({"instance": name, "status": "refused", "note": str(exc)[:70]})
            continue
        rounded = bench.evaluate(inst, "lp_schedule").cost
        for limit in LIMITS:
            for variant in ("before", "after", "before, pyomo", "after, pyomo"):
                row = run(name, limit, variant, rounded)
                row["library_bound"] = library.entry(name).bound
                rows.append(row)
                print(row, flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "caching_warm_start.csv", index=False)
    cols = ["instance", "limit_s", "variant", "status", "incumbent", "rounded_lp",
            "incumbent_over_rounded", "bound", "library_bound", "gap", "wall_s", "warm_start"]
    refused = frame[frame["status"] == "refused"]
    shown = frame[frame["status"] != "refused"][[c for c in cols if c in frame]]
    text = ["# Caching IP: warm start from the rounded LP schedule", "",
            "Command: `python benchmarks/caching_warm_start.py --out benchmarks/results` "
            "(wall-clock on a 2-core machine shared with other engineers' jobs: timings are "
            "noisy).", "",
            "`before`: the IP's matrix model handed to HiGHS without a start (what "
            "`servopt.solve` did before); `after`: `servopt.solve(instance, time_limit=limit)`, "
            "which solves the LP relaxation, rounds it (the `lp_schedule` method's schedule) and "
            "starts the IP from it, all inside the limit; `before, pyomo` / `after, pyomo`: the "
            "same on the Pyomo model (`backend=\"pyomo\"`; before: "
            "`exact.solve_model(build(instance))`). `wall_s` includes building the model. "
            "`rounded_lp`: the `lp_schedule` method's miss cost replayed by the evaluator; "
            "`incumbent_over_rounded` < 0: the IP improved on it, 0: it ended at the start "
            "(HiGHS accepted it). `library_bound`: the manifest's bound when the table was made "
            "(`servopt library show NAME` gives its kind); `bound`: the IP's proved bound.", "",
            markdown_table(shown, floatfmt=".6g"), ""]
    for _, row in refused.iterrows():
        text += [f"{row['instance']}: refused, {row['note']}... (above `max_binaries`; the LP "
                 "and `lp_schedule` bracket its optimum)", ""]
    write_md(out / "caching_warm_start.md", "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    main()
