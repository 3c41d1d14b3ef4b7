"""Does the bid-price placement gain from LP prices? Measured: no; it loses as their weight grows.

``BidPrice(gpu_price=..., price_weight=a)`` scales the bid of expert e's next replica by
``1 - a + a G price_e``, ``price_e`` the price of the GPUs hosting e in the deployed placement.
Prices come from one of two LPs solved on the planning window: the deployed placement's dispatch
LP (``servopt.solve(instance, placement=deployed)``, the source the docstring names) or the
placement MILP's relaxation (``relax=True``). Everything else as in
``expert_placement_migration.py`` at beta = 0: small preset, deployed = EPLB's plan of the window
before the planned one, scored by the evaluator on the next window (makespan summed over layers).
``a = 0`` is the price-free rule that ``POLICIES["bid_price"]`` runs.

Second part: do the planned window's prices act in price dispatch? On the full case's instances
(deepseek_v3, skews 0.5 / 1.0 / 1.5, ``--full-seeds`` seeds from 0; plan on the planning view, score
on the next window) two plans are served with price dispatch: ``eplb_price`` (EPLB's plan with the
dispatch-LP prices of the planned window) and ``BidPrice(tight=0.05)`` (the bid-price plan with
the tight-set prices of its own planned-window dispatch: the GPUs within 5% of the planned
makespan priced, the rest 0). Each is scored with its own prices (``real``), with uniform prices
(``uniform``: water-filling) and with each layer's prices permuted across its GPUs (``perm``,
seeded: the injection path is live when this moves the cost). For ``eplb_price`` the part counts
the replicated experts whose replicas sit on more than one GPU (``replicated``) and those whose
GPUs differ in price by more than price dispatch's tolerance (``unequal``: only then can the
prices drop a replica), and checks whether the next window's price-dispatch flows with real
prices equal those with uniform prices (``same_flows``); ``eplb_lp`` (the same plan, the LP
dispatch) is scored too. ``speeds = two_tiers``: the same for skew 1.0, seeds 0..2 (fewer when
``--full-seeds`` is below 3), with GPU speeds 1.0 / 0.7 alternating (EPLB's plan ignores speeds;
the dispatches serve at them).

Run: ``python benchmarks/expert_placement_prices.py [--seeds 10] [--first-seed 0]
[--full-seeds 10] [--out benchmarks/results]`` (the second part takes about 3 minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import servopt
from servopt.benchmarks import expert_placement as bench
from servopt.benchmarks.expert_placement_migration import deployed
from servopt.benchmarks.report import load_average, markdown_table, require_checkout, write_md
from servopt.instances import expert_placement as instances
from servopt.solvers import expert_placement as solvers

WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
SKEWS = (0.5, 1.0, 1.5)
TWO_TIERS = (1.0, 0.7)  # GPU speeds, alternating by GPU index
TIER_SEEDS = 3
TIGHT = 0.05


def unequal_prices(plan: solvers.Plan, slots_per_gpu: int, tol: float = 1e-9) -> tuple[int, int]:
    """Replicated experts with replicas on more than one GPU, and those of them whose GPUs'
    prices differ by more than ``tol`` x the layer's highest price (price dispatch's own test:
    only such an expert has a replica that the prices take out of its water-filling)."""
    gpu = np.arange(plan.phy2log.shape[1]) // slots_per_gpu
    replicated = unequal = 0
    for layer, row in enumerate(plan.phy2log):
        price = plan.gpu_price[layer]
        for expert in np.unique(row[row >= 0]):
            gpus = np.unique(gpu[row == expert])
            if len(gpus) > 1:
                replicated += 1
                unequal += bool(np.ptp(price[gpus]) > tol * np.abs(price).max())
    return replicated, unequal


def served(inst: instances.Instance, plan: solvers.Plan, seed: int) -> dict[str, float]:
    """Next-window cost of ``plan`` with its own, uniform and per-layer permuted GPU prices."""
    rng = np.random.default_rng(seed)
    price = plan.gpu_price
    variants = {"real": price, "uniform": np.ones_like(price),
                "perm": np.stack([row[rng.permutation(len(row))] for row in price])}
    costs = {}
    for name, gpu_price in variants.items():
        fixed = dataclasses.replace(plan, gpu_price=gpu_price)
        costs[f"cost_{name}"] = bench.evaluate(inst, lambda _, fixed=fixed: fixed, detail=False).cost
    return costs


def dispatch_rows(full_seeds: int) -> list[dict]:
    """The second part (module docstring): ``eplb_price`` and ``BidPrice(tight)`` with their
    prices real, uniform and permuted, on the full case's instances and with two speed tiers."""
    cells = [("equal", skew, seed) for skew in SKEWS for seed in range(full_seeds)]
    cells += [("two_tiers", 1.0, seed) for seed in range(min(TIER_SEEDS, full_seeds))]
    rows = []
    for speeds, skew, seed in cells:
        inst = instances.generate("deepseek_v3", windows=5, skew=skew, seed=seed)
        if speeds == "two_tiers":
            tiers = np.resize(np.asarray(TWO_TIERS), inst.num_gpus)
            inst = dataclasses.replace(inst, gpu_speed=tiers)
        view = bench.planning_view(inst)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = solvers.POLICIES["eplb_price"](view)
            replicated, unequal = unequal_prices(plan, inst.slots_per_gpu)
            flows = [solvers.price_dispatch(plan.phy2log, inst.next_loads, price,
                                            inst.slots_per_gpu, inst.speed)
                     for price in (plan.gpu_price, np.ones_like(plan.gpu_price))]
            rows.append({"part": "eplb_price", "speeds": speeds, "skew": skew, "seed": seed,
                         "replicated": replicated, "unequal": unequal,
                         "same_flows": bool(np.array_equal(*flows)), **served(inst, plan, seed),
                         "cost_eplb_lp": bench.evaluate(inst, "eplb_lp", detail=False).cost})
            plan = solvers.BidPrice(tight=TIGHT)(view)
            rows.append({"part": f"bid_price_tight_{TIGHT}", "speeds": speeds, "skew": skew,
                         "seed": seed, **served(inst, plan, seed),
                         "cost_bid_price": bench.evaluate(inst, "bid_price", detail=False).cost})
        print(speeds, skew, seed, flush=True)
    return rows


def dispatch_text(frame: pd.DataFrame) -> str:
    """The second part's md section from its rows."""
    frame = frame.assign(uniform_vs_real=frame.cost_uniform / frame.cost_real - 1,
                         perm_vs_real=frame.cost_perm / frame.cost_real - 1,
                         eplb_lp_vs_real=frame.cost_eplb_lp / frame.cost_real - 1,
                         bid_price_vs_real=frame.cost_bid_price / frame.cost_real - 1)
    table = frame.groupby(["part", "speeds", "skew"], sort=False).agg(
        seeds=("seed", "size"),
        replicated=("replicated", "sum"),
        unequal=("unequal", "sum"),
        same_flows=("same_flows", lambda v: f"{int(v.fillna(False).sum())} / {len(v)}"),
        mean_uniform_vs_real=("uniform_vs_real", "mean"),
        max_abs_uniform_vs_real=("uniform_vs_real", lambda v: float(v.abs().max())),
        mean_perm_vs_real=("perm_vs_real", "mean"),
        mean_eplb_lp_vs_real=("eplb_lp_vs_real", "mean"),
        mean_bid_price_vs_real=("bid_price_vs_real", "mean")).reset_index()
    tight = table.part != "eplb_price"
    counts = ["replicated", "unequal", "same_flows"]
    table[counts] = table[counts].astype(object)
    table.loc[tight, counts] = ""  # counted for eplb_price only
    return ("## Do the planned window's prices act in price dispatch?\n\n"
            "Full-case instances (second part of the script's docstring). Costs are next-window "
            "makespans summed over layers, as fractions over the cost with the plan's own prices "
            "(`real`): `uniform` = uniform prices (water-filling), `perm` = each layer's prices "
            "permuted across its GPUs, `eplb_lp` = EPLB's plan with the LP dispatch, `bid_price` "
            "= the default rule (`tight = 1`, whose prices are uniform; the same plan as "
            f"`BidPrice(tight={TIGHT})`). `replicated` / `unequal`: replicated experts on more "
            "than one GPU / of which on GPUs of unequal price (beyond price dispatch's "
            "tolerance), summed over seeds and layers; `same_flows`: instances whose price-dispatch "
            "flows with real prices equal those with uniform prices.\n\n"
            + markdown_table(table.fillna("")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--full-seeds", type=int, default=10,
                        help="full-case seeds (from 0) of the second part; 0 skips it")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    load_before = load_average()
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
    dispatch = None
    if args.full_seeds:  # nullable columns: blank, not nan or 1305.0, in the first part's rows
        dispatch = pd.DataFrame(dispatch_rows(args.full_seeds)).astype(
            {"replicated": "Int64", "unequal": "Int64", "same_flows": "boolean"})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # one CSV: the first part's rows as before (part = bid_price_weights), then the second's
    both = pd.concat([frame.assign(part="bid_price_weights"), dispatch])
    both[["part"] + [c for c in both.columns if c != "part"]].to_csv(
        out / "expert_placement_prices.csv", index=False)
    summary = frame.groupby(["prices", "price_weight"]).agg(
        mean_vs_price_free=("vs_price_free", "mean"),
        worse_seeds=("vs_price_free", lambda v: int((v > 1e-9).sum())),
        better_seeds=("vs_price_free", lambda v: int((v < -1e-9).sum())),
        mean_vs_eplb=("vs_eplb", "mean")).reset_index()
    seeds = f"{args.first_seed}..{args.first_seed + args.seeds - 1}"
    text = (f"# Expert placement: the bid-price rule with LP prices (seeds {seeds})\n\n"
            f"Command: `python benchmarks/expert_placement_prices.py --seeds {args.seeds} "
            f"--first-seed {args.first_seed} --full-seeds {args.full_seeds}`. Load average before "
            f"/ after the run: {load_before} / {load_average()}. "
            "Set-up and the two price sources: the script's "
            "docstring. `vs_price_free`: cost over the price-free rule's on the same seed, minus "
            "1 (mean over seeds); `worse_seeds` / `better_seeds`: seeds where the priced rule is "
            "worse / better than the price-free one; `vs_eplb`: the same against DeepSeek EPLB.\n\n"
            + markdown_table(summary) + "\n"
            + ("" if dispatch is None else "\n" + dispatch_text(dispatch)))
    write_md(out / "expert_placement_prices.md", text)
    print(text)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
