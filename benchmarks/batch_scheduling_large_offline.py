"""Offline bid-price rule beyond the whole-LP limit: the load-sample price against the full LP.

Above ``max_columns`` start columns (200k, about n = 300 all at once) ``BidPrice`` prices with one
stationary price learned on a 120-request load sample instead of solving the whole LP, whose
time grows faster than n^2. This script compares, on offline instances (``generate(n, seed)``):
the rule as it ships, the rule forced to the sample price (``max_columns=1`` for the whole LP,
the shipped 200k limit for the sample's LP), MC-SF and shortest predicted first; total latency
from the evaluator, wall time of the whole evaluation, and where each bid-price rule's price came
from (``price_from``: lp, sample, zero; ``sample_size``). A forced row whose price did not come
from a sample (e.g. it fell to 0 because the sample's LP was too large) stops the script.

    python benchmarks/batch_scheduling_large_offline.py [--cases 200:1,200:2,400:0]
        [--out benchmarks/results/batch_scheduling_large_offline.md]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling as bench
from servopt.benchmarks import report
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import batch_scheduling as instances
from servopt.models import batch_scheduling as model
from servopt.solvers import batch_scheduling as rules

SHIPPED_LIMIT = 200_000  # BidPrice's default max_columns: the sample LP's limit when forced


def forced_sample_rule() -> rules.BidPrice:
    """The bid-price rule that always prices with the load sample (whole-LP limit 1 column),
    the sample's LP held to the shipped limit."""
    return rules.BidPrice(max_columns=1, sample_max_columns=SHIPPED_LIMIT)


def parse_cases(text: str) -> list[tuple[int, int]]:
    """``"200:1,400:0"`` -> [(200, 1), (400, 0)]; anything else is refused in one line."""
    cases = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) < 1:
            raise SystemExit(f"--cases: {item!r} is not n:seed (whole numbers, n >= 1)")
        cases.append((int(parts[0]), int(parts[1])))
    return cases


def run(cases: list[tuple[int, int]]) -> pd.DataFrame:
    """One row per (n, seed, method): total latency (rounds), wall seconds, price source."""
    rows = []
    for n, seed in cases:
        inst = instances.generate(n, seed=seed)
        columns = model.model_size(rules.planning_instance(inst))[1]
        methods = {"mcsf": "mcsf", "spf": "spf", "bid_price": rules.BidPrice(),
                   "bid_price_sample": forced_sample_rule()}
        for label, method in methods.items():
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                out = bench.evaluate(inst, method)
            wall = time.perf_counter() - start
            for w in caught:
                print(f"warning ({label}, n={n}, seed={seed}): {w.message}", flush=True)
            source = getattr(method, "price_from", "")
            if label == "bid_price_sample" and source != "sample":
                raise SystemExit(
                    f"n={n} seed={seed}: the forced sample rule's price came from {source!r}, not "
                    "from a load sample: its row would not measure the sample price")
            rows.append({"n": n, "seed": seed, "lp_columns": columns, "method": label,
                         "price_from": source, "sample_size": getattr(method, "sample_size", 0),
                         "tail_price": (method.tail if source in ("sample", "zero")
                                        else float("nan")),
                         "total_latency": out.cost, "wall_s": wall})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    mcsf = frame[frame["method"] == "mcsf"].set_index(["n", "seed"])["total_latency"]
    full = frame[frame["method"] == "bid_price"].set_index(["n", "seed"])["total_latency"]
    frame["vs_mcsf"] = [c / mcsf[(n, s)] - 1 for n, s, c in
                        zip(frame["n"], frame["seed"], frame["total_latency"], strict=True)]
    frame["vs_bid_price"] = [c / full[(n, s)] - 1 if m.startswith("bid_price") else float("nan")
                             for n, s, m, c in zip(frame["n"], frame["seed"], frame["method"],
                                                   frame["total_latency"], strict=True)]
    frame["total_latency"] = frame["total_latency"].round().astype("int64")  # whole rounds
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="200:1,200:2,400:0", help="n:seed pairs")
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_large_offline.md")
    args = parser.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    cases = parse_cases(args.cases)
    load_start = report.load_average()
    frame = run(cases)
    setting = {**report.environment(), "load average at start": load_start,
               "load average at end": report.load_average()}
    text = ["# batch_scheduling: the offline bid-price rule beyond the whole-LP limit", "",
            f"Regenerate with `python benchmarks/batch_scheduling_large_offline.py --cases "
            f"{args.cases}`. `bid_price` is the rule as it ships (whole LP up to 200k start "
            "columns, else the load-sample price); `bid_price_sample` always uses the sample "
            "price (`BidPrice(max_columns=1, sample_max_columns=200_000)`: the sample's LP held "
            "to the shipped limit). price_from: where the rule's price came from (lp: the whole "
            "LP; sample: one stationary price learned on a load sample of sample_size requests); "
            "tail_price: that stationary price (latency rounds per KV token-round; blank for the "
            "whole-LP rows, which price each round). total_latency in rounds; vs_mcsf and "
            "vs_bid_price: relative to MC-SF and to the shipped rule on the same instance. "
            "wall_s: the whole evaluation on a shared 2-core machine (noisy).", "",
            *(f"- {key}: {value}" for key, value in setting.items()), "",
            markdown_table(frame), ""]
    write_md(Path(args.out), "\n".join(text))
    frame.to_csv(Path(args.out).with_suffix(".csv"), index=False)
    print("wrote", args.out)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
