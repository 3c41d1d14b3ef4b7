"""Predicted maximum stable rate vs the simulated knee, for every benchmark cell.

Usage::

    python -m servopt.benchmarks.capacity_knee --out benchmarks/results --jobs 2 \\
        [--requests N] [--seeds R] [--max-seeds R2]

Writes ``capacity_knee.csv`` and ``capacity_knee.md``: per cell the simulated knee (see
:mod:`servopt.benchmarks.capacity` for its definition and estimator), its bracket, drift
estimates and standard error, the saturated throughput, and next to them the model's bounds
(compute, corrected memory, slots, first-order memory), the binding resource and the relative
errors of the prediction. The simulated columns do not depend on the model, so ``--from-csv``
recomputes the prediction columns from the current model without simulating again.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from servopt.benchmarks import capacity as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.benchmarks.runner import die_with_parent

SIMULATED = ["knee", "knee_lo", "knee_hi", "drift_lo", "drift_hi", "knee_se", "seeds", "undecided",
             "saturated", "recompute_fraction", "preemptions_per_request", "simulations", "sim_s"]


def run_cell(workload: str, regime: str, n_requests: int, seed: int, seeds: int,
             max_seeds: int) -> dict[str, Any]:
    start = time.perf_counter()
    instance = bench.make_cell(workload=workload, regime=regime)
    row = {"workload": workload, "regime": regime}
    row.update(bench.knee_report(instance, n_requests=n_requests, seed=seed, seeds=seeds,
                                 max_seeds=max_seeds))
    row["sim_s"] = time.perf_counter() - start
    print(f"{workload}/{regime}: knee {row['knee']:.4g} ({row['sim_s']:.0f} s)", file=sys.stderr, flush=True)
    return row


def target_met(error: float, binding: str, kv_over_size_bias: float) -> str:
    """The issue's targets: 2% where compute or slots bind, 10% (5% if M >= 4 E[s^2]/E[s]) memory."""
    if binding != "memory":
        return "yes" if abs(error) <= 0.02 else "no"
    limit = 0.05 if kv_over_size_bias >= 4 else 0.10
    return "yes" if abs(error) <= limit else "no"


def with_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """The simulated columns of ``frame`` joined with the current model's predictions."""
    sim = frame[["workload", "regime"] + [c for c in SIMULATED if c in frame.columns]]
    rows = []
    for row in sim.to_dict("records"):
        row.update(bench.prediction_report(bench.make_cell(workload=row["workload"], regime=row["regime"])))
        rows.append(row)
    out = pd.DataFrame(rows)
    first = out[["compute_bound", "memory_first_order", "slot_bound"]].min(axis=1)
    for name, col in (("knee", "knee"), ("saturated", "saturated")):
        out[f"error_{name}"] = out["predicted"] / out[col] - 1
        out[f"first_order_error_{name}"] = first / out[col] - 1
        out[f"met_{name}"] = [target_met(e, b, k) for e, b, k in zip(
            out[f"error_{name}"], out["binding"], out["kv_over_size_bias"], strict=True)]
    out["target"] = [("2%" if b != "memory" else "5%" if k >= 4 else "10%")
                     for b, k in zip(out["binding"], out["kv_over_size_bias"], strict=True)]
    return out


def write_report(frame: pd.DataFrame, out: Path, provenance: str) -> str:
    """Join the predictions, write the CSV and the markdown."""
    frame = with_predictions(frame)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "capacity_knee.csv", index=False)
    frame = frame.assign(knee_resolution=frame["knee_hi"] / frame["knee_lo"] - 1)
    cols = ["workload", "regime", "binding", "compute_bound", "memory_first_order", "memory_bound",
            "slot_bound", "predicted", "knee", "knee_resolution", "knee_se", "saturated",
            "error_knee", "error_saturated", "first_order_error_knee", "kv_over_size_bias", "target",
            "met_knee", "seeds", "undecided", "preemptions_per_request", "predicted_preemptions",
            "recompute_fraction", "predicted_recompute"]
    text = (
        "# capacity: predicted maximum stable rate vs the simulated knee\n\n"
        f"{provenance}\n\n"
        "Rates in requests/s per worker. `knee` = the rate where the drift of requests in system "
        "crosses 1% of the arrival rate (definition and estimator in `servopt.benchmarks.capacity`: "
        "replications with common random numbers across rates, balanced lengths, the first 25% of "
        "each horizon discarded, the drift as the least-squares slope of requests in system with "
        "the arrival-count noise as a control variate, its standard error between seeds, more "
        "seeds when the test is within 2 standard errors of 1%, bisection on log rate); "
        "`undecided` = bisection steps still within 2 standard errors with the most seeds; "
        "`knee_resolution` = hi / lo - 1 of the final bracket (the knee is its geometric middle); "
        "`knee_se` = the larger standard error of drift / rate at the two ends, about the knee's "
        "relative standard error. `saturated` = the throughput of the same worker with an "
        "endless queue (25%-75% of completions). By definition the knee lies near saturated / "
        "(1 - 0.01), about 1% above the largest stable rate. error_* = predicted / estimate - 1; "
        "first_order_error uses the memory bound as usually stated (M / (t E[g]) with the "
        "self-consistent t). kv_over_size_bias = M / (E[s^2] / E[s]); `target` = the issue's "
        "target for the cell (2% where compute or slots bind; 10% where memory binds, 5% when "
        "kv_over_size_bias >= 4). preemptions_per_request and recompute_fraction are simulated at "
        "the stable end of the bracket, predicted_* are the model's estimates.\n\n"
        + markdown_table(frame[cols]) + "\n")
    write_md(out / "capacity_knee.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20000, help="arrivals per simulation")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=4, help="replications per rate")
    parser.add_argument("--max-seeds", type=int, default=8,
                        help="replications per rate when the test is undecided")
    parser.add_argument("--cells", nargs="*", help="workload/regime cells (default: all)")
    parser.add_argument("--from-csv", default=None,
                        help="rebuild the report from a CSV this script wrote (no simulation)")
    parser.add_argument("--source", default="",
                        help="with --from-csv: the command and note of the run that wrote the CSV")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    out = Path(args.out)
    if args.from_csv:
        frame = pd.read_csv(args.from_csv)
        provenance = (f"Simulation: {args.source or 'an earlier run of this script'}. Predictions from "
                      "the current model, report rebuilt from the run's CSV with `python -m "
                      "servopt.benchmarks.capacity_knee --from-csv CSV --source TEXT`.")
        print(write_report(frame, out, provenance))
        return 0
    cells = [(w, r) for w in bench.REGIMES for r in bench.REGIMES[w]]
    if args.cells:
        cells = [tuple(c.split("/")) for c in args.cells]
    start = time.perf_counter()
    n = len(cells)
    with cf.ProcessPoolExecutor(max_workers=args.jobs, initializer=die_with_parent,
                                initargs=(os.getpid(),)) as pool:
        rows = list(pool.map(run_cell, *zip(*cells, strict=True), [args.requests] * n, [args.seed] * n,
                             [args.seeds] * n, [args.max_seeds] * n))
    command = "python -m servopt.benchmarks.capacity_knee " + " ".join(
        sys.argv[1:] if argv is None else argv)
    provenance = (f"Command: `{command}` ({args.requests} arrivals per simulation, {args.seeds} seeds "
                  f"per rate (up to {args.max_seeds} when undecided) from seed {args.seed}; "
                  f"{time.perf_counter() - start:.0f} s wall on a 2-core machine shared with other jobs).")
    print(write_report(pd.DataFrame(rows), out, provenance))
    return 0


if __name__ == "__main__":
    require_checkout(__file__)
    sys.exit(main())
