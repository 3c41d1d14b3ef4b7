"""Matrix form against Pyomo: wall time of ``servopt.solve`` on the library's large instances.

Run: ``python -m servopt.benchmarks.exact_matrix`` (writes
``benchmarks/results/exact_matrix.{md,csv}``). Each instance is solved through the model's
``build_matrix_model`` (``backend="highs"``, the default) and through its Pyomo model
(``backend="pyomo"``), alternating, best of ``--repeats``; wall time includes the build and the
result labelling. Both must reach the same objective (the script fails otherwise). ``load``: the
1-minute load average after the row (a shared 2-core machine).

``--ip-only`` measures only the time-limited IP rows and replaces them in the csv at ``--out``,
keeping its LP rows (the time limit's meaning changed under the IPs, not the LPs).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import library
from servopt.solvers import exact

# (library instance, relax, time limit s): the LPs of the large instances, and IPs with a limit
CASES = (
    ("cache_mm_5k", True, None),
    ("cache_mm_100k", True, None),
    ("bs_offline_15", True, None),
    ("bs_offline_100", True, None),
    ("bs_offline_15", False, 60.0),
    ("bs_offline_100", False, 10.0),
    ("dr_hindsight_20x3", True, None),
    ("dr_hindsight_200x4", True, None),
    ("dr_hindsight_20x3", False, 10.0),
)


def measure(repeats: int = 2, cases: tuple = CASES) -> pd.DataFrame:
    rows = []
    for name, relax, limit in cases:
        instance = library.load(name)
        best: dict[str, float] = {}
        result = {}
        for _ in range(repeats):
            for backend in ("highs", "pyomo"):
                start = time.perf_counter()
                sol = exact.solve(instance, relax=relax, time_limit=limit, backend=backend)
                wall = time.perf_counter() - start
                best[backend] = min(best.get(backend, math.inf), wall)
                result[backend] = sol
        fast, slow = result["highs"], result["pyomo"]
        if fast.status == "optimal" and slow.status == "optimal" and not math.isclose(
                fast.objective, slow.objective, rel_tol=1e-6):
            raise AssertionError(f"{name}: the matrix form gives {fast.objective}, Pyomo "
                                 f"{slow.objective}")
        rows.append({"instance": name, "problem": "LP" if relax else f"IP ({limit:g} s)",
                     "matrix_s": best["highs"], "pyomo_s": best["pyomo"],
                     "speedup": best["pyomo"] / best["highs"],
                     "matrix_status": fast.status, "matrix_objective": fast.objective,
                     "matrix_bound": fast.bound, "pyomo_status": slow.status,
                     "pyomo_objective": slow.objective, "pyomo_bound": slow.bound})
        rows[-1]["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
        print(rows[-1], file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--ip-only", action="store_true",
                        help="rerun only the time-limited IP rows, keeping the csv's LP rows")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    csv = args.out / "exact_matrix.csv"
    if args.ip_only:
        table = measure(args.repeats, tuple(c for c in CASES if c[2] is not None))
        old = pd.read_csv(csv)
        lp = old[old["problem"] == "LP"]
        order = [(name, "LP" if relax else f"IP ({limit:g} s)") for name, relax, limit in CASES]
        table = pd.concat([lp, table], ignore_index=True)
        table = table.set_index(["instance", "problem"]).loc[order].reset_index()
    else:
        table = measure(args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse",
                             "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rerun = (f" The IP rows were rerun with `--ip-only --repeats {args.repeats}` (code of {commit}; "
             "`time_limit` is the budget of the whole call: build, bound LP, HiGHS, prices; a "
             "batch IP whose estimated build and HiGHS set-up do not fit is not built, or not "
             "handed to HiGHS, and comes back as its start); the LP rows are from the last full "
             "run (their `load` is that run's at its end)." if args.ip_only else "")
    text = ("# Matrix form against Pyomo in `servopt.solve`\n\n"
            f"Regenerate with `python -m servopt.benchmarks.exact_matrix --repeats {args.repeats}`."
            " Wall seconds (build + solve + labelled results), best of the repeats, the two "
            "paths alternating; shared 2-core machine (`load`: the 1-minute load average after "
            "the row). IP rows have a time limit for the whole call: both forms start from the "
            "model's feasible schedule where it gives one (batch scheduling: the matrix form's "
            "`start`, the Pyomo model's variable values, handed to HiGHS by `solve_model`)."
            + rerun + "\n\n" + markdown_table(table) + "\n")
    write_md(args.out / "exact_matrix.md", text)
    print(text)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
