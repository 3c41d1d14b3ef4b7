"""Tuning data of the bid-price rule's ageing (not the reported instances).

Multimodal generator with seed 1 (the benchmark uses seed 0) on the benchmark's 9 settings, and
the first half of the Mooncake trace's requests at the benchmark's 12 settings. For each setting:
miss cost over LRU's, minus 1, of GDSF, the static reference, the value order with fixed slow
ageing (tau = 50 cache-fulls, the previous default) and with the ageing adapting online between
pure recency and 50 cache-fulls at discount horizons 3, 10 and 30 cache-fulls (3 ships).
The value order is the rule without a price (``cost_freq_size``): on the warm-up the price
scale is 0 in almost every setting. Run: ``python benchmarks/caching_tuning.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from servopt.benchmarks import caching as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.solvers import caching as cs

HORIZONS = (3.0, 10.0, 30.0)


def settings() -> list[dict]:
    out = [{"workload": "multimodal", "requests": 100_000, "objects": 20_000, "skew": skew,
            "cache_share": share, "seed": 1} for skew in (0.6, 0.9, 1.2) for share in (0.01, 0.05, 0.2)]
    out += [{"workload": "mooncake", "cache_share": share, "cost": cost}
            for cost in ("unit", "position") for share in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)]
    return out


def methods() -> dict:
    out = {"lru": "lru", "gdsf": "gdsf", "static": "static",
           "fixed_tau50": lambda: cs.CostFreqSize(tau_objects=50.0)}
    for h in HORIZONS:
        out[f"adaptive_h{h:g}"] = lambda h=h: cs.CostFreqSize(experts=cs.EXPERTS, horizon=h)
    return out


def main() -> None:
    rows = []
    for p in settings():
        inst = bench.make_instance(**p)
        if p["workload"] == "mooncake":
            inst = cs.request_window(inst, 0, inst.requests // 2)  # first half: the past only
            label = f"{bench.setting_label(p)} (first half)"
        else:
            label = f"{bench.setting_label(p)} (seed 1)"
        cost = {}
        for name, method in methods().items():
            cost[name] = bench.simulate(inst, method() if callable(method) else method).miss_cost
        row = {"workload": label, "cache": p["cache_share"]}
        row.update({k: cost[k] / cost["lru"] - 1 for k in cost if k != "lru"})
        rows.append(row)
        print(row, flush=True)
    frame = pd.DataFrame(rows)
    folder = Path("benchmarks/results")
    frame.to_csv(folder / "caching_tuning.csv", index=False)
    text = ["# Caching: tuning data of the bid-price rule's ageing", "",
            "Command: `python benchmarks/caching_tuning.py`. Miss cost over LRU's, minus 1 "
            "(negative = better than LRU). Multimodal generator seed 1 (reported: seed 0); first "
            "half of the Mooncake trace (reported: whole trace). `fixed_tau50`: the previous "
            "rule's value order; `adaptive_hH`: ageing switching online between recency and 50 "
            "cache-fulls, discount horizon H cache-fulls (H = 3 ships).", "",
            markdown_table(frame.astype({"cache": str}), floatfmt="+.4f")]
    worst = frame[frame["workload"].str.startswith("mooncake")].drop(
        columns=["workload", "cache", "gdsf", "static"]).max()
    text += ["", "Worst excess over LRU on the Mooncake half: "
             + ", ".join(f"{k} {v:+.4f}" for k, v in worst.items())]
    write_md(folder / "caching_tuning.md", "\n".join(text) + "\n")


if __name__ == "__main__":
    require_checkout(__file__)
    argparse.ArgumentParser(description=__doc__).parse_args()
    main()
