"""Does the LP's own schedule information find better schedules? Alpha-point orders, decoded.

Run from the repository root::

    python benchmarks/batch_scheduling_alpha_points.py --sizes 50,100 --seeds 0,1,2,3,4

Instances: those of ``batch_scheduling_bound.md`` (``generate(n, lengths="azure", seed=s)``, all
requests at round 0). For each, the LP relaxation is solved and each request gets its alpha-point
(the first start round by which an alpha share of its fractional start weight is placed; alpha in
0.05..0.95) or its mean start round; requests are ordered by that key (ties: shorter output) and
placed by :func:`servopt.solvers.batch_scheduling.serial_schedule` (each at its earliest feasible
round: over all orders this reaches the optimum). The best of these schedules (feasibility checked,
total latency by ``models.batch_scheduling.schedule_latency``, as the committed ``best``) is
compared with the committed bracket (``batch_scheduling_bound.csv``: ``best`` = every method, the IP
incumbent and a 240 s order search; ``lower`` = the best lower bound). Alpha-point orders are the
classic LP-based list schedules for time-indexed relaxations; if they beat the search, the bracket's
upper side was loose.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import batch_scheduling as instances
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules

COMMITTED = Path("benchmarks/results/batch_scheduling_bound.csv")
OUT = Path("benchmarks/results/batch_scheduling_alpha_points")
ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def order_keys(n: int, x: pd.Series) -> dict[str, np.ndarray]:
    """Per request: its alpha-points and mean start round under the LP's start weights ``x``
    (index ``(request, round)``)."""
    frame = x.rename("w").reset_index().sort_values(["request", "round"])
    keys = {f"alpha {a:g}": np.zeros(n) for a in ALPHAS} | {"mean": np.zeros(n)}
    for i, rows in frame.groupby("request"):
        rounds, weight = rows["round"].to_numpy(), rows["w"].to_numpy()
        share = np.cumsum(weight) / weight.sum()
        for a in ALPHAS:
            keys[f"alpha {a:g}"][i] = rounds[np.searchsorted(share, a)]
        keys["mean"][i] = (rounds * weight).sum() / weight.sum()
    return keys


def run(sizes: list[int], seeds: list[int]) -> pd.DataFrame:
    committed = pd.read_csv(COMMITTED).set_index(["n", "seed"])
    rows = []
    for n in sizes:
        for seed in seeds:
            inst = instances.generate(n, lengths="azure", seed=seed)
            t0 = time.perf_counter()
            lp = rules.solve_lp(inst)
            costs = {}
            for name, key in order_keys(n, lp.decisions["x"]).items():
                start, _ = rules.serial_schedule(inst, np.lexsort((inst.output_tokens, key)))
                if not model.is_feasible(inst, start):
                    raise RuntimeError(f"n={n} seed={seed} {name}: the decoded schedule is infeasible")
                costs[name] = model.schedule_latency(inst, start)
            name = min(costs, key=costs.get)
            ref = committed.loc[(n, seed)]
            rows.append({"n": n, "seed": seed, "lp": lp.objective, "lower": ref["lower"],
                         "committed_best": ref["best"], "alpha_best": costs[name], "order": name,
                         "alpha_best/committed_best": costs[name] / ref["best"],
                         "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def report(frame: pd.DataFrame, command: str) -> None:
    ratio = frame["alpha_best/committed_best"]
    text = ["# batch_scheduling: alpha-point schedules from the LP against the committed best", "",
            f"Command: `{command}`.", "", (__doc__ or "").split("\n\n")[3].replace("\n", " "), "",
            f"The best alpha-point schedule is {ratio.min() - 1:+.1%} to {ratio.max() - 1:+.1%} "
            f"against the committed best schedule (below 0 would mean a better schedule).", "",
            markdown_table(frame, floatfmt=".4g"), ""]
    write_md(OUT.with_suffix(".md"), "\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,100")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    result = run(sizes, seeds)
    result.to_csv(OUT.with_suffix(".csv"), index=False)
    report(result, f"python benchmarks/batch_scheduling_alpha_points.py --sizes {args.sizes} "
                   f"--seeds {args.seeds}")
