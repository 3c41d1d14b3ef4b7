"""Does the control variate in the drift estimate reduce its variance? Measured, per rate.

Usage::

    python benchmarks/capacity_drift_variance.py --out benchmarks/results [--seeds 24] [--first-seed 0]
        [--multipliers 0.95,0.99,1.01,1.05,1.25] [--name capacity_drift_variance]

For two workloads (code with 16k KV tokens, conversation with 60k; generator seed 4, 600 length
samples) and rates from 0.95x to 1.25x the saturated throughput (measured on
``SATURATION_REQUESTS`` = 8000 queued requests, seed 0, fixed here so that a change of the
capacity module's default horizon does not move the rates silently), run the stability test's
single replication (:func:`servopt.benchmarks.capacity._one_run`, 3000 arrivals, 25% warm-up) on
``--seeds`` seeds and report the between-seed standard deviation of the drift / lambda with the
control variate (the estimate the knee search uses) and of the plain slope of requests in system,
and their paired difference (both are computed from the same runs).
Every cell reuses the same arrival path per seed (unit-rate gaps scaled by the rate), so paired
differences in different cells are not independent evidence. Writes ``NAME.csv`` and ``NAME.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks import capacity as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import capacity as instances

CELLS = (("code", 16_000), ("conversation", 60_000))
MULTIPLIERS = (0.95, 0.99, 1.01, 1.05, 1.25)
SATURATION_REQUESTS = 8000  # requests queued at time 0 for the saturated throughput (rates' unit)
RUN_REQUESTS = 3000  # arrivals per replication
WARMUP = 0.25  # share of each run's horizon left out of the slopes


def measure(seeds: int, first_seed: int = 0, multipliers: tuple[float, ...] = MULTIPLIERS) -> pd.DataFrame:
    rows = []
    for workload, kv_tokens in CELLS:
        instance = instances.generate(workload=workload, requests=600, kv_tokens=kv_tokens, seed=4)
        saturated = bench.saturated_throughput(instance, n_requests=SATURATION_REQUESTS)
        for multiplier in multipliers:
            rate = multiplier * saturated
            seed_range = range(first_seed, first_seed + seeds)
            runs = [bench._one_run(instance, rate, RUN_REQUESTS, seed, WARMUP) for seed in seed_range]
            drift = np.array([run["drift"] for run in runs])
            raw = np.array([run["raw"] for run in runs])
            rows.append({"workload": workload, "kv_tokens": kv_tokens, "rate_over_saturated": multiplier,
                         "seeds": seeds, "drift_mean": drift.mean(), "drift_sd": drift.std(ddof=1),
                         "raw_mean": raw.mean(), "raw_sd": raw.std(ddof=1),
                         "sd_ratio": drift.std(ddof=1) / raw.std(ddof=1),
                         "paired_diff": (drift - raw).mean(),
                         "paired_diff_se": (drift - raw).std(ddof=1) / np.sqrt(seeds)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--multipliers", default=",".join(map(str, MULTIPLIERS)))
    parser.add_argument("--name", default="capacity_drift_variance")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    multipliers = tuple(float(m) for m in args.multipliers.split(","))
    start = time.perf_counter()
    frame = measure(args.seeds, args.first_seed, multipliers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / f"{args.name}.csv", index=False)
    command = (f"python benchmarks/capacity_drift_variance.py --out {args.out} --seeds {args.seeds} "
               f"--first-seed {args.first_seed} --multipliers {args.multipliers} --name {args.name}")
    text = ("# capacity: variance of the drift estimate with and without the control variate\n\n"
            f"Regenerate with `{command}` ({time.perf_counter() - start:.0f} s). Rates are multiples of the "
            f"saturated throughput measured on {SATURATION_REQUESTS} queued requests; each replication has "
            f"{RUN_REQUESTS} arrivals, the first {WARMUP:.0%} of its horizon left out. "
            "drift = the knee search's estimate (fit of N(t) on 1, t and the arrival noise X(t)); "
            "raw = plain slope of N(t); "
            "both / lambda; sd between seeds; sd_ratio = drift_sd / raw_sd "
            "(below 1: the control variate helps); "
            "paired_diff = mean over seeds of drift - raw (same runs), with its standard error. "
            "Cells share each seed's arrival path, so their paired differences move together.\n\n"
            + markdown_table(frame) + "\n")
    write_md(out / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    require_checkout(__file__)
    sys.exit(main())
