"""Decode routing: do ``bid_price_argmin``'s LP prices earn their place? Real, zeroed and permuted.

``bid_price_argmin`` is ``BidPrice(gate=True, pick="price", refresh=2, discount=0.8)``: every 2
steps (and when the plan's shares are used up) it solves the epoch LP relaxation, keeps the plan
as a gate (a request may only go to a worker with planned share left) and sends each request, among
the open workers, to ``argmin_g sum_h rho_gh w_ih + sigma_g + kappa_g (s_i + 1)``, ties to the fewest
KV tokens. The ablation keeps everything (the same LP solves, the same gate) and replaces only the
prices the router reads, right after each solve (:class:`Ablated` overrides ``_solve``):

- ``real``: the LP's prices as solved (the router itself; checked against ``bid_price_argmin``);
- ``zero``: rho, sigma, kappa all 0, so every open worker ties and least-KV picks among them (checked
  against ``gate_kv``: the same gate with ``pick="kv"`` and ``refresh=2``);
- ``perm``: each solve's per-worker prices (rho's rows, sigma, kappa together) permuted across
  workers by a seeded random permutation: the same price levels, on the wrong workers.

Reference rows on the same streams: ``bid_price`` (the default router) and ``least_kv``. Metrics
come from the evaluator (``servopt.benchmarks.decode_routing.evaluate``): ``cost`` (total decode
step time of the run, ms), ``idle_fraction`` (barrier idle over the measured window), ``e2e_mean_s``.
Streams: ``servopt.instances.decode_routing.generate`` (Azure-calibrated, Poisson), conversation and
code lengths, 4 and 8 workers, 85% and 95% load, ``--requests`` requests (800), seeds 0..2.

Run: ``python benchmarks/decode_routing_price_ablation.py [--seeds 3] [--requests 800]
[--out benchmarks/results]`` (3 minutes of simulation in the committed run, 7 at load 7 on 2 cores).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks import decode_routing as bench
from servopt.benchmarks.report import load_average, markdown_table, require_checkout, write_md
from servopt.instances import decode_routing as streams
from servopt.solvers import decode_routing as routing

ARGMIN = {"gate": True, "pick": "price", "refresh": 2, "discount": 0.8}  # POLICIES["bid_price_argmin"]
WORKLOADS = ("conversation", "code")
FLEETS = (4, 8)
LOADS = (0.85, 0.95)
ABLATIONS = ("real", "zero", "perm")
METRICS = ("cost", "idle_fraction", "e2e_mean_s")


class Ablated(routing.BidPrice):
    """``bid_price_argmin`` with its LP prices replaced after every solve (``how``: real, zero,
    perm); counts the solves and those whose prices differ across workers."""

    def __init__(self, how: str, seed: int = 0) -> None:
        super().__init__(**ARGMIN)
        self.how, self.rng = how, np.random.default_rng(seed)
        self.lp_solves = self.priced_apart = 0

    def _solve(self, view: routing.FleetView) -> None:
        super()._solve(view)
        self.lp_solves += 1
        per_worker = np.hstack([self.rho, self.sigma[:, None], self.kappa[:, None]])
        self.priced_apart += bool(np.ptp(per_worker, axis=0).max() > 0)
        if self.how == "zero":
            self.rho, self.sigma, self.kappa = (np.zeros_like(self.rho), np.zeros_like(self.sigma),
                                                np.zeros_like(self.kappa))
        elif self.how == "perm":
            order = self.rng.permutation(len(self.sigma))
            self.rho, self.sigma, self.kappa = self.rho[order], self.sigma[order], self.kappa[order]


def run(workload: str, workers: int, load: float, seed: int, requests: int) -> list[dict]:
    instance = streams.generate(workload=workload, workers=workers, load=load, requests=requests,
                                seed=seed)
    routers = {how: Ablated(how, seed) for how in ABLATIONS}
    routers |= {"bid_price_argmin": "bid_price_argmin",
                "gate_kv": lambda: routing.BidPrice(**(ARGMIN | {"pick": "kv"})),
                "bid_price": "bid_price", "least_kv": "least_kv"}
    rows = []
    for name, router in routers.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = bench.evaluate(instance, router)
        row = {"workload": workload, "workers": workers, "load": load, "seed": seed,
               "router": name, "cost": outcome.cost,
               "idle_fraction": outcome.metrics["idle_fraction"],
               "e2e_mean_s": outcome.metrics["e2e_mean_s"],
               "lp_solves": getattr(router, "lp_solves", np.nan),
               "priced_apart": getattr(router, "priced_apart", np.nan),
               "wall_s": time.perf_counter() - start}
        rows.append(row)
    return rows


def summary(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per cell: ratios of each ablation (and reference) to ``real`` on the same stream."""
    keys = ["workload", "workers", "load", "seed"]
    wide = frame.pivot_table(index=keys, columns="router", values=list(METRICS))
    ratio = {f"{m}_{how}": wide[m][how] / wide[m]["real"]
             for m in METRICS for how in ("zero", "perm", "bid_price", "least_kv")}
    ratio = pd.DataFrame(ratio).reset_index()
    cells = ratio.groupby(["workload", "workers", "load"])
    table = cells.agg(
        seeds=("seed", "size"),
        idle_zero=("idle_fraction_zero", "mean"),
        idle_zero_lower=("idle_fraction_zero", lambda v: int((v < 1).sum())),
        idle_perm=("idle_fraction_perm", "mean"),
        cost_zero=("cost_zero", "mean"),
        cost_perm=("cost_perm", "mean"),
        e2e_zero=("e2e_mean_s_zero", "mean"),
        e2e_perm=("e2e_mean_s_perm", "mean"),
        idle_bid_price=("idle_fraction_bid_price", "mean"),
        cost_bid_price=("cost_bid_price", "mean"),
        idle_least_kv=("idle_fraction_least_kv", "mean"),
    ).reset_index()

    def span(column: str) -> str:
        v = ratio[column]
        return f"{v.mean():.3f} [{v.min():.3f}, {v.max():.3f}]"

    real = frame[frame.router == "real"].set_index(keys)
    same = {name: frame[frame.router == name].set_index(keys)[["cost", "idle_fraction"]]
            for name in ("bid_price_argmin", "gate_kv", "zero")}
    facts = {
        "runs": str(len(ratio)),
        "idle_zero_lower": str(int((ratio["idle_fraction_zero"] < 1).sum())),
        "idle_zero": span("idle_fraction_zero"), "idle_perm": span("idle_fraction_perm"),
        "cost_zero": span("cost_zero"), "cost_perm": span("cost_perm"),
        "e2e_zero": span("e2e_mean_s_zero"), "e2e_perm": span("e2e_mean_s_perm"),
        "cost_bid_price": span("cost_bid_price"), "idle_bid_price": span("idle_fraction_bid_price"),
        "idle_least_kv": span("idle_fraction_least_kv"),
        "real_is_argmin": str(bool(np.allclose(same["bid_price_argmin"], real[["cost", "idle_fraction"]],
                                               rtol=0, atol=0))),
        "zero_is_gate_kv": str(bool(np.allclose(same["gate_kv"], same["zero"], rtol=0, atol=0))),
        "solves": str(int(real["lp_solves"].sum())),
        "priced_apart": str(int(real["priced_apart"].sum())),
    }
    return table, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    load_before = load_average()
    rows = []
    for workload in WORKLOADS:
        for workers in FLEETS:
            for load in LOADS:
                for seed in range(args.seeds):
                    rows += run(workload, workers, load, seed, args.requests)
                    print(workload, workers, load, seed, flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "decode_routing_price_ablation.csv", index=False)
    table, f = summary(frame)
    text = (
        "# Decode routing: bid_price_argmin with its LP prices real, zeroed, permuted\n\n"
        f"Command: `python benchmarks/decode_routing_price_ablation.py --seeds {args.seeds} "
        f"--requests {args.requests}`. Load average before / after the run: {load_before} / "
        f"{load_average()}. Set-up: the script's docstring (same LP solves and gate; only the "
        "prices the router reads are replaced after each solve). Ratios are the ablation's value "
        "over the real prices' on the same stream (mean over seeds), so **> 1 means the real "
        "prices help**; `idle_zero_lower`: seeds where zeroed prices gave less barrier idle; "
        "`*_bid_price` / `*_least_kv`: the default `bid_price` router / least-KV over "
        "`bid_price_argmin`.\n\n"
        + markdown_table(table) + "\n\n"
        f"Over all {f['runs']} runs (mean [min, max] of the ratio to real prices): barrier idle "
        f"zero {f['idle_zero']} (lower in {f['idle_zero_lower']} of {f['runs']}), perm "
        f"{f['idle_perm']}; total step time (cost) zero {f['cost_zero']}, perm {f['cost_perm']}; "
        f"e2e mean zero {f['e2e_zero']}, perm {f['e2e_perm']}. `bid_price` over "
        f"`bid_price_argmin`: cost {f['cost_bid_price']}, idle {f['idle_bid_price']}; least-KV "
        f"over `bid_price_argmin`: idle {f['idle_least_kv']}.\n\n"
        f"Checks: the subclass with real prices gives `bid_price_argmin`'s cost and idle exactly: "
        f"{f['real_is_argmin']}; zeroed prices give exactly the gate with least-KV (`gate_kv`): "
        f"{f['zero_is_gate_kv']}. The real-price runs solved {f['solves']} LPs, of which "
        f"{f['priced_apart']} priced the workers differently (so the prices could act).\n")
    write_md(out / "decode_routing_price_ablation.md", text)
    print(text)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
