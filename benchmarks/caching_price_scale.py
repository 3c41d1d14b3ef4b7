"""What the shipped bid-price rule does with its LP price on each full-case instance.

For each setting: the price learned on the warm-up (the mean LP price of a token-step over the
first 20% of requests), the price scale the warm-up replay chose (0 = the price is switched off:
the rule is then the value order without admission control), the range of the sliding-window
prices over the run, and the share of LRU's gap closed by ``bid_price`` and by the same rule
without a price (``cost_freq_size``), from the committed ``caching_full.csv``.
Run: ``python benchmarks/caching_price_scale.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from servopt.benchmarks import caching as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.solvers import caching as cs

RESULTS = Path("benchmarks/results")


def main() -> None:
    full = pd.read_csv(RESULTS / "caching_full.csv")
    rows = []
    for params, group in full.groupby("params", sort=False):
        p = json.loads(params)
        inst = bench.make_instance(**p)
        policy = cs.make_policy("bid_price")
        result = bench.simulate(inst, policy)
        cost = group.set_index("method")["cost"]
        bound = float(group["bound"].iloc[0])
        if abs(result.miss_cost - float(cost["bid_price"])) > 1e-6 * max(1.0, result.miss_cost):
            raise RuntimeError(f"{params}: bid_price cost differs from caching_full.csv")
        learned = [price for t, price in policy.prices[1:]]  # price x scale after the warm-up
        rows.append({"workload": bench.setting_label(p), "cache": str(p["cache_share"]),
                     "scale": policy.price_scale,
                     "acting_price_min": min(learned) if learned else 0.0,
                     "acting_price_max": max(learned) if learned else 0.0,
                     "closed_bid_price": bench.closed_gap(float(cost["bid_price"]),
                                                          float(cost["lru"]), bound),
                     "closed_no_price": bench.closed_gap(float(cost["cost_freq_size"]),
                                                         float(cost["lru"]), bound)})
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(RESULTS / "caching_price_scale.csv", index=False)
    off = int((frame["scale"] == 0).sum())
    text = ["# Caching: the bid-price rule's price on each full-case instance", "",
            "Command: `python benchmarks/caching_price_scale.py`. `scale`: the price scale the "
            "warm-up replay chose (0 = price off); `acting_price_*`: price x scale over the "
            "sliding-window refreshes (miss cost per token-step); `closed_*`: share of LRU's gap "
            "to the bound closed with and without the price.", "",
            f"The warm-up replay switched the price off in {off} of {len(frame)} settings.", "",
            markdown_table(frame, floatfmt=".3g"), ""]
    write_md(RESULTS / "caching_price_scale.md", "\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    argparse.ArgumentParser(description=__doc__).parse_args()
    main()
