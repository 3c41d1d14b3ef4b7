"""Online admission and ageing variants tried on the Mooncake blocks (none ships).

Each variant changes the shipped value order without a price (``cost_freq_size``: cost x aged
request rate / size, ageing switching online between recency and 50 cache-fulls):

- ``doorkeeper``: a block is admitted only from its second request on (TinyLFU's doorkeeper);
- ``tau200``: one fixed slow ageing of 200 cache-fulls (no switching);
- ``experts_0_200_h30``: switching between recency and 200 cache-fulls, scored over 30
  cache-fulls (instead of 50 and 3);
- ``recency_boost``: LRU where a block requested again within 10 cache-fulls of its previous
  request gets 10 cache-fulls of extra priority (a two-segment, 2Q-like cache).

Tuning view: first half of the trace, miss cost over LRU's minus 1 (negative = better). Reported
view: the whole trace, share of LRU's gap to the LP bound closed (bound from the committed
``caching_full.csv``). Run: ``python benchmarks/caching_admission.py`` (``--report`` rewrites
the markdown from the CSVs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from servopt.benchmarks import caching as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances.caching import Instance
from servopt.solvers import caching as cs

RESULTS = Path("benchmarks/results")


class Doorkeeper(cs.CostFreqSize):
    """The value order, admitting a block only from its second request on."""

    name = "doorkeeper"

    def start(self, instance: Instance) -> None:
        super().start(instance)
        self.seen = [False] * instance.objects

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        priority = super().touch(t, o, hit)
        first = not self.seen[o]
        self.seen[o] = True
        return None if first else priority


class RecencyBoost(cs.BasePolicy):
    """LRU with ``boost`` cache-fulls of extra priority for a block whose previous request was
    at most ``reach`` cache-fulls ago."""

    name = "recency_boost"

    def __init__(self, reach: float = 10.0, boost: float = 10.0) -> None:
        self.reach, self.boost = reach, boost

    def start(self, instance: Instance) -> None:
        super().start(instance)
        fulls = instance.capacity / float(instance.size.mean())
        self.reach_steps, self.boost_steps = self.reach * fulls, self.boost * fulls
        self.last = [None] * instance.objects

    def touch(self, t: int, o: int, hit: bool) -> float:
        last, self.last[o] = self.last[o], t
        return t + (self.boost_steps if last is not None and t - last <= self.reach_steps else 0.0)


VARIANTS = {
    "shipped_order": lambda: cs.CostFreqSize(experts=cs.EXPERTS),
    "doorkeeper": lambda: Doorkeeper(experts=cs.EXPERTS),
    "tau200": lambda: cs.CostFreqSize(tau_objects=200.0),
    "experts_0_200_h30": lambda: cs.CostFreqSize(experts=(0.0, 200.0), horizon=30.0),
    "recency_boost": RecencyBoost,
}


def main() -> None:
    tuning, reported = [], []
    for p, lp in bench.committed_bounds(RESULTS / "caching_full.csv"):
        if p["workload"] != "mooncake":
            continue
        inst = bench.make_instance(**p)
        half = cs.request_window(inst, 0, inst.requests // 2)
        label = {"cost": p["cost"], "cache": p["cache_share"]}
        lru_half = bench.simulate(half, "lru").miss_cost
        lru = bench.simulate(inst, "lru").miss_cost
        tuning.append(label | {k: bench.simulate(half, v()).miss_cost / lru_half - 1
                               for k, v in VARIANTS.items()})
        reported.append(label | {k: bench.closed_gap(bench.simulate(inst, v()).miss_cost, lru, lp)
                                 for k, v in VARIANTS.items()})
        print(tuning[-1], reported[-1], flush=True)
    tune, rep = pd.DataFrame(tuning), pd.DataFrame(reported)
    tune.to_csv(RESULTS / "caching_admission_tuning.csv", index=False)
    rep.to_csv(RESULTS / "caching_admission.csv", index=False)
    report(tune, rep)


def report(tune: pd.DataFrame, rep: pd.DataFrame) -> None:
    """Write ``caching_admission.md`` from the two tables."""
    tune, rep = (frame.astype({"cache": str}) for frame in (tune, rep))
    doc = (__doc__ or "").split("\n\n")
    text = ["# Caching: online admission and ageing variants on Mooncake blocks", "",
            "Command: `python benchmarks/caching_admission.py`.", "", "\n\n".join(doc[1:3]), "",
            "## First half of the trace (miss cost over LRU's, minus 1)", "",
            markdown_table(tune, floatfmt="+.4f"), "",
            "## Whole trace (share of LRU's gap to the bound closed)", "",
            markdown_table(rep, floatfmt=".3f"), ""]
    write_md(RESULTS / "caching_admission.md", "\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the markdown from the committed CSVs")
    if parser.parse_args().report:
        report(pd.read_csv(RESULTS / "caching_admission_tuning.csv"),
               pd.read_csv(RESULTS / "caching_admission.csv"))
    else:
        main()
