"""Decode routing: the bid-price router with its load-book forecast against the exact forecast.

``bid_price`` keeps its forecast in a load book (rebuilt when the fleet's KV now differs from the
book's by more than ``tolerance`` x the fleet's total); ``forecast="exact"`` recomputes it from
every running request at each step with arrivals (the rule before the book; same decisions as
then). Two modes, both paired (the same streams for both forecasts):

- ``python benchmarks/decode_routing_forecast.py --jobs 2 [--seeds 10,11] [--tolerances
  0.02,0.03,0.05]`` simulates both on the full case's grid (both Azure-calibrated workloads at
  70 / 85 / 95% load, 8 and 32 workers) and writes ``decode_routing_forecast_tuning.md`` / ``.csv``:
  how the default tolerance was chosen, on seeds 10-11 (not the reported 0-2).
- ``python benchmarks/decode_routing_forecast.py --reported --jobs 2`` simulates the exact
  forecast on the reported cells (full case seeds 0-2 and the Azure code trace), pairs it with
  the ``bid_price`` rows of the current ``decode_routing_full.csv`` and writes
  ``decode_routing_forecast.md``.
- ``python benchmarks/decode_routing_forecast.py --predictions --jobs 2 [--seeds 10,11]`` runs the
  load book on streams with predicted output lengths (which ship with the exact forecast) against
  the exact forecast, on the prediction case's grid (8 workers, 85% / 95% load, noise 0 / 0.5 /
  1.0) for seeds that are not reported, and writes ``decode_routing_forecast_predictions.md``.
- ``python benchmarks/decode_routing_forecast.py --baseline OLD.csv`` pairs the ``bid_price`` rows
  of a results CSV written before the book (e.g. ``git show ebe9f88~1:benchmarks/results/
  decode_routing_full.csv > OLD.csv``) with the current ``decode_routing_full.csv`` instead (how
  the first version of ``decode_routing_forecast.md`` was made, before the largest-first order).
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks import decode_routing as bench
from servopt.benchmarks.report import require_checkout, write_md
from servopt.benchmarks.runner import die_with_parent
from servopt.instances.traces import shared_trace
from servopt.solvers import decode_routing as routing

METRICS = ("idle_fraction", "throughput_tok_s", "e2e_mean_s", "queue_mean")


def cells(seeds: list[int]) -> list[dict]:
    """The full case's grid for each seed, and the Azure code trace (one block: with seed 0)."""
    out = [{"workload": w, "workers": g, "load": load, "seed": s}
           for s in seeds for w in ("conversation", "code") for g in (8, 32) for load in (0.7, 0.85, 0.95)]
    if 0 in seeds and shared_trace("azure2023_code.csv") is not None:
        out += [{"workload": "trace:azure2023_code", "workers": g, "load": load, "seed": 0}
                for g in (8, 32) for load in (0.85, 0.95)]
    return out


class _BookWithPredictions(routing.BidPrice):
    """The load book also on streams with predictions (the shipped rule uses the exact forecast
    there)."""

    def reset(self, instance, seed: int = 0) -> None:
        super().reset(instance, seed)
        if self.book is None:
            self.book = routing._LoadBook(instance.workers, self.horizon, self.span)


def run(job: tuple[dict, str, float | None]) -> dict:
    cell, variant, tolerance = job
    if "noise" in cell:
        inst = bench.make_cell(seed=cell["seed"], workload=cell["workload"].split()[0],
                               workers=cell["workers"], load=cell["load"], prediction_error=cell["noise"])
        router = routing.BidPrice() if variant == "exact" else _BookWithPredictions()
        m = bench.simulate(inst, router)["metrics"]
        return {**{k: v for k, v in cell.items() if k != "noise"}, "variant": variant,
                **{k: m[k] for k in METRICS}, "router_us": m["router_us"]}
    if cell["workload"].startswith("trace:"):
        inst = bench.make_cell(kind="trace", workers=cell["workers"], load=cell["load"])
    else:
        inst = bench.make_cell(seed=cell["seed"], workload=cell["workload"], workers=cell["workers"],
                               load=cell["load"])
    router = (routing.BidPrice(forecast="exact") if variant == "exact"
              else routing.BidPrice(tolerance=tolerance))
    m = bench.simulate(inst, router)["metrics"]
    return {**cell, "variant": variant, **{k: m[k] for k in METRICS},
            "rebuilds": getattr(router.book, "rebuilds", np.nan), "steps": m["steps"]}


def paired_table(rows: pd.DataFrame, variants: list[str], title: str, command: str) -> list[str]:
    """Markdown: per cell the mean idle of each forecast and the book / exact ratios per seed."""
    key = ["workload", "workers", "load"]
    lines = [f"# {title}", "", f"Command: `{command}`. Same streams for both forecasts; metrics in "
             "steady state; ratios are book / exact per seed, then the mean over seeds (min-max in "
             "brackets).", ""]
    ex = rows[rows.variant == "exact"].set_index([*key, "seed"]).sort_index()
    for v in variants:
        lines += [f"## {v}", "", "| workload | workers | load | seeds | idle exact | idle book "
                  "| idle ratio | throughput ratio | e2e ratio | queue exact | queue book |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        bk = rows[rows.variant == v].set_index([*key, "seed"]).sort_index()
        ratio = (bk[list(METRICS[:3])] / ex[list(METRICS[:3])]).dropna()
        for cell, r in ratio.groupby(level=[0, 1, 2], sort=False):
            e, b = ex.loc[cell], bk.loc[cell]
            fmt = [f"{r[m].mean():.3f} [{r[m].min():.3f}-{r[m].max():.3f}]" for m in METRICS[:3]]
            lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]:g} | {len(r)} | {e.idle_fraction.mean():.4f} | "
                         f"{b.idle_fraction.mean():.4f} | {' | '.join(fmt)} | {e.queue_mean.mean():.2f} | "
                         f"{b.queue_mean.mean():.2f} |")
        geo = np.exp(np.log(ratio).mean())
        lines += ["", f"Over all {len(ratio)} paired runs: geometric mean ratio idle "
                  f"{geo.idle_fraction:.4f}, throughput {geo.throughput_tok_s:.4f}, "
                  f"e2e {geo.e2e_mean_s:.4f}; idle ratio min "
                  f"{ratio.idle_fraction.min():.3f}, max {ratio.idle_fraction.max():.3f}.", ""]
    return lines


def from_results(path: str | Path, variant: str) -> pd.DataFrame:
    """The bid_price rows of a decode-routing results CSV (full case and trace) as paired rows."""
    raw = pd.read_csv(path)
    raw = raw[(raw.method == "bid_price") & (raw.status == "ok")
              & raw.case.isin(["decode_routing_full", "decode_routing_trace"])]
    params = raw.params.map(json.loads)
    workload = params.map(lambda p: "trace:azure2023_code" if p.get("kind") == "trace" else p["workload"])
    return pd.DataFrame({"workload": workload.values, "workers": params.map(lambda p: p["workers"]).values,
                         "load": params.map(lambda p: p["load"]).values, "seed": raw.seed.values,
                         "variant": variant, **{m: raw[m].values for m in METRICS}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seeds", default="10,11")
    parser.add_argument("--tolerances", default="0.02,0.03,0.05")
    parser.add_argument("--baseline", help="results CSV written with the exact forecast")
    parser.add_argument("--predictions", action="store_true",
                        help="the load book on streams with predictions, vs the exact forecast")
    parser.add_argument("--reported", action="store_true",
                        help="simulate the exact forecast on the reported cells")
    parser.add_argument("--current", default="benchmarks/results/decode_routing_full.csv")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    out = Path(args.out)
    if args.predictions:
        seeds = [int(s) for s in args.seeds.split(",")]
        grid = [{"workload": f"{w} noise={e:g}", "workers": 8, "load": load, "seed": s, "noise": e}
                for s in seeds for w in ("conversation", "code") for load in (0.85, 0.95)
                for e in (0.0, 0.5, 1.0)]
        jobs = [(c, v, None) for c in grid for v in ("exact", "book")]
        with ProcessPoolExecutor(args.jobs, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            rows = pd.DataFrame(list(pool.map(run, jobs)))
        lines = paired_table(rows, ["book"], "decode_routing: load book vs exact forecast on streams "
                             "with predicted output lengths (paired, seeds not reported)",
                             f"python benchmarks/decode_routing_forecast.py --predictions --jobs "
                             f"{args.jobs} --seeds {args.seeds}")
        us = rows.pivot_table(index=["workload", "load", "seed"], columns="variant", values="router_us")
        lines += ["Router wall time per request (us, shared machine, noisy), geometric mean book / "
                  f"exact: {np.exp(np.log(us['book'] / us['exact']).mean()):.2f}x.", ""]
        name = "decode_routing_forecast_predictions"
    elif args.reported:
        jobs = [(c, "exact", None) for c in cells([0, 1, 2])]
        with ProcessPoolExecutor(args.jobs, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            exact = pd.DataFrame(list(pool.map(run, jobs)))
        rows = pd.concat([exact.drop(columns=["rebuilds", "steps"]),
                          from_results(args.current, "book")])
        lines = paired_table(rows, ["book"], "decode_routing: load-book forecast vs exact forecast, "
                             "reported seeds (paired)",
                             f"python benchmarks/decode_routing_forecast.py --reported --jobs {args.jobs}")
        name = "decode_routing_forecast"
    elif args.baseline:
        rows = pd.concat([from_results(args.baseline, "exact"), from_results(args.current, "book")])
        lines = paired_table(rows, ["book"], "decode_routing: load-book forecast vs exact forecast, "
                             "reported seeds (paired)",
                             "python benchmarks/decode_routing_forecast.py --baseline OLD.csv (OLD.csv: "
                             "decode_routing_full.csv before the book, commit ebe9f88~1)")
        name = "decode_routing_forecast"
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        variants = [("exact", None)] + [(f"book {float(t):g}", float(t)) for t in args.tolerances.split(",")]
        jobs = [(c, v, t) for c in cells(seeds) for v, t in variants]
        with ProcessPoolExecutor(args.jobs, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            rows = pd.DataFrame(list(pool.map(run, jobs)))
        lines = paired_table(rows, [v for v, _ in variants[1:]], "decode_routing: load-book forecast "
                             "vs exact forecast, tuning seeds (paired)",
                             f"python benchmarks/decode_routing_forecast.py --jobs {args.jobs} --seeds "
                             f"{args.seeds} --tolerances {args.tolerances}")
        name = "decode_routing_forecast_tuning"
    rows.to_csv(out / f"{name}.csv", index=False)
    path = out / f"{name}.md"
    write_md(path, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
