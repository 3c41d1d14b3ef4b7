"""Does the bid-price placement gain from LP prices? Measured: no; it loses as their weight grows.

``BidPrice(gpu_price=..., price_weight=a)`` scales the bid of expert e's next replica by
``1 - a + a G price_e``, ``price_e`` the price of the GPUs hosting e in the deployed placement.
Prices come from one of two LPs solved on the planning window: the deployed placement's dispatch
LP (``servopt.solve(instance, placement=deployed)``, the source the docstring names) or the
placement MILP's relaxation (``relax=True``). Everything else as in
``expert_placement_migration.py`` at beta = 0: small preset, deployed = EPLB's plan of the window
before the planned one, scored by the evaluator on the next window (makespan summed over layers).
``a = 0`` is the price-free rule that ``POLICIES["bid_price"]`` runs.

Run: ``python benchmarks/expert_placement_prices.py [--seeds 10] [--first-seed 0]
[--out benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd

import servopt
from servopt.benchmarks import expert_placement as bench
from servopt.benchmarks.expert_placement_migration import deployed
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.solvers import expert_placement as solvers

WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        inst = deployed(seed, 0.0)
        view = bench.planning_view(inst)
        sources = {"dispatch_lp": servopt.solve(view, placement=inst.previous_placement),
                   "placement_lp": servopt.solve(view, relax=True)}
        free = bench.evaluate(inst, solvers.BidPrice(), detail=False).cost
        eplb = bench.evaluate(inst, "eplb", detail=False).cost
        for source, solution in sources.items():
            for weight in WEIGHTS:
                rule = solvers.BidPrice.from_solution(solution, inst.num_layers, inst.num_gpus,
                                                      price_weight=weight)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cost = bench.evaluate(inst, rule, detail=False).cost
                rows.append({"seed": seed, "prices": source, "price_weight": weight, "cost": cost,
                             "vs_price_free": cost / free - 1, "vs_eplb": cost / eplb - 1})
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "expert_placement_prices.csv", index=False)
    summary = frame.groupby(["prices", "price_weight"]).agg(
        mean_vs_price_free=("vs_price_free", "mean"),
        worse_seeds=("vs_price_free", lambda v: int((v > 1e-9).sum())),
        better_seeds=("vs_price_free", lambda v: int((v < -1e-9).sum())),
        mean_vs_eplb=("vs_eplb", "mean")).reset_index()
    seeds = f"{args.first_seed}..{args.first_seed + args.seeds - 1}"
    text = (f"# Expert placement: the bid-price rule with LP prices (seeds {seeds})\n\n"
            f"Command: `python benchmarks/expert_placement_prices.py --seeds {args.seeds} "
            f"--first-seed {args.first_seed}`. Set-up and the two price sources: the script's "
            "docstring. `vs_price_free`: cost over the price-free rule's on the same seed, minus "
            "1 (mean over seeds); `worse_seeds` / `better_seeds`: seeds where the priced rule is "
            "worse / better than the price-free one; `vs_eplb`: the same against DeepSeek EPLB.\n\n"
            + markdown_table(summary) + "\n")
    write_md(out / "expert_placement_prices.md", text)
    print(text)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
