"""Does ``solve`` honour a time limit? Wall time of a hard MIP against the limit.

Run: ``python -m servopt.benchmarks.exact_time_limit`` (writes
``benchmarks/results/exact_time_limit.md``). The MIP is a Cornuejols-Dawande market split
instance: tiny, and out of reach of branch and bound, so every limit expires.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from servopt.benchmarks.report import markdown_table
from servopt.solvers import exact


def market_split(seed: int = 3, m: int = 5, n: int = 40) -> pyo.ConcreteModel:
    """min sum |slack| s.t. a_i x = floor(sum_j a_ij / 2) for m rows, x in {0, 1}^n, a in [0, 99]."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, size=(m, n))
    rhs = a.sum(axis=1) // 2
    mod = pyo.ConcreteModel()
    mod.x = pyo.Var(range(n), domain=pyo.Binary)
    mod.sp = pyo.Var(range(m), domain=pyo.NonNegativeReals)
    mod.sm = pyo.Var(range(m), domain=pyo.NonNegativeReals)
    mod.split = pyo.Constraint(range(m), rule=lambda mo, i: sum(
        int(a[i, j]) * mo.x[j] for j in range(n)) + mo.sp[i] - mo.sm[i] == int(rhs[i]))
    mod.obj = pyo.Objective(expr=sum(mod.sp[i] + mod.sm[i] for i in range(m)))
    return mod


def measure(limits: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)) -> pd.DataFrame:
    rows = []
    for limit in limits:
        start = time.perf_counter()
        sol = exact.solve_model(market_split(), time_limit=limit, prices=False)
        wall = time.perf_counter() - start
        rows.append({"time_limit_s": limit, "wall_s": wall, "ratio": wall / limit,
                     "status": sol.status, "incumbent": sol.objective, "bound": sol.bound})
    return pd.DataFrame(rows)


def main() -> None:
    table = measure()
    out = Path(__file__).resolve().parent / "results" / "exact_time_limit.md"
    text = ("# Time limits in `servopt.solvers.exact`\n\n"
            "Regenerate with `python -m servopt.benchmarks.exact_time_limit`. Market split MIP "
            "(5 rows, 40 binaries, seed 3): wall time of build + solve + result loading against "
            "the limit passed to HiGHS.\n\n" + markdown_table(table) + "\n")
    out.write_text(text)
    print(text, file=sys.stdout)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()
    main()
