"""How far the placement MILP gets on one deepseek_v3 layer, naive vs strengthened, against
the decomposition's certificate.

One layer (256 experts, 32 GPUs x 9 slots = 8,192 binaries) of the planned window. Three ways
to a certified makespan: (1) the naive MILP of DESIGN.md (no valid inequalities, no symmetry
breaking, no warm start), (2) the MILP with the heuristic plan's makespan as z_ub (strengthened links and
replica counts), the combinatorial bound as a lower bound on z and GPU-load ordering, and (3)
the decomposition (combinatorial bound + replica counts + placement + dispatch LP), which is
what ``exact`` uses at this size.

Run: ``python benchmarks/expert_placement_milp.py [--time-limit 10] [--skew 1.0]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import expert_placement as instances
from servopt.models import expert_placement as models
from servopt.solvers import exact
from servopt.solvers import expert_placement as solvers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--skew", type=float, default=1.0)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    inst = instances.generate("deepseek_v3", windows=2, skew=args.skew, seed=0)
    one = instances.Instance(loads=inst.loads[:, :1], num_nodes=4, gpus_per_node=8,
                             slots_per_gpu=9, num_groups=8)
    rows = []
    start = time.perf_counter()
    plan = solvers.exact_placement(one)
    rows.append({"method": "decomposition (exact)", "makespan": plan.info["makespan"][0],
                 "bound": plan.info["bound"][0], "wall_s": time.perf_counter() - start})
    ub, lb = plan.info["makespan"][0], plan.info["bound"][0]
    for name, options in (("naive MILP", {"symmetry": False, "start": False}),  # HiGHS alone:
                          # no warm start from the fast plans (build's default since 45ff862)
                          ("strengthened MILP", {"makespan_ub": ub, "makespan_lb": lb})):
        start = time.perf_counter()
        model = models.build(one, **options)
        sol = exact.solve_model(model, time_limit=args.time_limit, mip_gap=1e-4, prices=False)
        rows.append({"method": f"{name} ({args.time_limit:g} s)", "makespan": sol.objective,
                     "bound": sol.bound, "wall_s": time.perf_counter() - start})
    table = pd.DataFrame(rows)
    table["gap"] = table["makespan"] / table["bound"] - 1
    text = ("# Placement MILP vs decomposition, one deepseek_v3 layer (256 experts, 32 GPUs x 9 "
            f"slots), skew {args.skew}\n\nCommand: `python benchmarks/expert_placement_milp.py "
            f"--time-limit {args.time_limit:g} --skew {args.skew}` (wall_s includes Pyomo "
            "construction; shared machine).\n\n" + markdown_table(table) + "\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_md(out / "expert_placement_milp.md", text)
    print(text)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
