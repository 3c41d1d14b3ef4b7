"""Where the gap to the bound comes from: online rules next to references with foresight.

For each full-case setting, the share of LRU's gap to the LP bound that a method closes
(``closed``; 1 = reaches the bound). The bound is the committed ``caching_full.csv``'s (the LP
does not depend on any policy).

Multimodal (seed 0, the reported instances): LRU's gap in absolute terms (encoder ms and as a share
of the miss cost of serving every request from the encoder), the shipped ``bid_price``, the
``static`` reference (best fixed set for the whole trace's expected popularity) and
``phase_static``: the best fixed set of each popularity phase with that phase's true request
probabilities (foresight of the drift, filling free room with other objects). Requests within a
phase are independent draws, so an online rule that has to estimate popularity from the past does
not know more than ``phase_static`` does; what it leaves open is the realised sequence, which only
the LP (foresight of every request) uses. Between them, two count rules: ``count_cost`` (evict
the lowest miss cost x requests so far / size: online, perfect counts, no ageing) and
``phase_count`` (the same count restarted at each phase change with half the old counts
carried: it knows when popularity changes, not how). ``kept_rare``: share of the bytes
``phase_static`` keeps (over the phases) in objects expected fewer than 2 requests in the phase,
which a rule that counts requests cannot tell apart from the many objects it sees once.

Mooncake (the whole trace, both cost models): what predicting reuse could close. Online:
``bid_price`` (shipped), ``doorkeeper`` (TinyLFU's doorkeeper: a block is admitted from its second
request on, LRU order), ``lfu`` (perfect request counts). Hindsight: ``feature_table``
(admission by the probability that a block is requested again within 10 cache-fulls of requests
given its request count so far, the time since its last request and its distance to the end of
its prompt, the probability table fitted on the whole trace and the best of five thresholds:
an upper reference for any online predictor built on these prefix features), ``static``,
``never_reused`` (LRU that bypasses blocks never requested again), ``oracle_new`` / ``oracle_seen``
/ ``oracle_all`` (LRU that admits a first-seen / an already-seen / any block only if it is
requested again within 10 cache-fulls; others always for ``oracle_new`` and ``oracle_seen``,
first-seen never for ``oracle_seen``), and ``belady_size``.

Run: ``python benchmarks/caching_references.py`` (about 10 minutes on the shared machine).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks import caching as bench
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.instances import caching as instances
from servopt.instances.traces import read_mooncake, shared_trace
from servopt.models import caching as model
from servopt.solvers import caching as cs

REACH = 10.0  # cache-fulls of requests: "requested again soon"
RESULTS = Path("benchmarks/results")


class _PhaseCount(cs.BasePolicy):
    """Evict the lowest c_o / s_o x requests counted since the last phase change (earlier counts
    weighed by ``carry`` at each change; ``bounds`` = [0, n]: one count from the start, an online
    rule with perfect counts)."""

    def __init__(self, bounds: np.ndarray, carry: float = 0.5) -> None:
        self.changes, self.carry, self.name = [int(b) for b in bounds[1:-1]], carry, "count"

    def start(self, instance: instances.Instance) -> None:
        super().start(instance)
        self.count, self.phase, self.rerank = [0.0] * instance.objects, 0, False

    def touch(self, t: int, o: int, hit: bool) -> float:
        if self.phase < len(self.changes) and t >= self.changes[self.phase]:
            self.phase += 1
            self.count = [c * self.carry for c in self.count]
            self.rerank = True
        self.count[o] += 1
        return self.density[o] * self.count[o]

    def priority(self, o: int) -> float:
        return self.density[o] * self.count[o]


class _Admit(cs.BasePolicy):
    """LRU order; a request's block is kept only where ``admit[t]`` is True."""

    def __init__(self, admit: np.ndarray, name: str) -> None:
        self.admit, self.name = admit.tolist(), name

    def touch(self, t: int, o: int, hit: bool) -> float | None:
        return float(t) if self.admit[t] else None


def _history(inst: instances.Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per request: earlier requests of its object, requests since its last one (10^9 for a
    first request), requests until its next one (to the end of the trace when none)."""
    n = inst.requests
    next_request = model.intervals(inst).next_request
    previous = np.full(n, -1, dtype=np.int64)
    again = next_request < n
    previous[next_request[again]] = np.flatnonzero(again)
    since = np.where(previous >= 0, np.arange(n) - previous, 10**9)
    # rank of each request among its object's requests: position in the stable sort by object
    order = np.argsort(inst.object_id, kind="stable")
    counts = np.bincount(inst.object_id, minlength=inst.objects)
    prior = np.empty(n, dtype=np.int64)
    prior[order] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    return prior, since, next_request - np.arange(n)


def _to_prompt_end() -> np.ndarray:
    """Per block request of the Mooncake trace: blocks after it in its prompt."""
    frame = read_mooncake(shared_trace("mooncake_synthetic.jsonl"))
    lengths = frame["block_ids"].map(len).to_numpy()
    position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(lengths, lengths) - 1 - position


def mooncake_row(inst: instances.Instance, lp: float, to_end: np.ndarray) -> dict:
    prior, since, distance = _history(inst)
    reach = REACH * inst.capacity / float(inst.size.mean())
    soon = distance <= reach
    costs = {m: bench.simulate(inst, m).miss_cost for m in ("lru", "bid_price", "lfu", "static",
                                                            "belady_size")}
    costs["doorkeeper"] = bench.simulate(inst, _Admit(prior > 0, "doorkeeper")).miss_cost
    # hindsight-fitted table over (prior count, time since last request, blocks to prompt end)
    cell = (np.minimum(prior, 6) * 100
            + np.digitize(since, [30, 100, 300, 1000, 3000, 10000, 30000, 10**8]) * 10
            + np.minimum(to_end, 4))
    rate = np.bincount(cell, soon, minlength=1000) / np.maximum(np.bincount(cell, minlength=1000), 1)
    costs["feature_table"] = min(bench.simulate(inst, _Admit(rate[cell] >= th, "table")).miss_cost
                                 for th in (0.05, 0.1, 0.2, 0.3, 0.5))
    costs["never_reused"] = bench.simulate(inst, _Admit(distance < inst.requests - np.arange(
        inst.requests), "never")).miss_cost
    costs["oracle_new"] = bench.simulate(inst, _Admit((prior > 0) | soon, "new")).miss_cost
    costs["oracle_seen"] = bench.simulate(inst, _Admit((prior > 0) & soon, "seen")).miss_cost
    costs["oracle_all"] = bench.simulate(inst, _Admit(soon, "all")).miss_cost
    lru = costs["lru"]
    row = {"lru_gap": lru / lp - 1}
    row.update({m: bench.closed_gap(c, lru, lp) for m, c in costs.items() if m != "lru"})
    return row


def multimodal_row(params: dict, inst: instances.Instance, lp: float) -> dict:
    bounds, probability = instances.phase_popularity(
        **{k: v for k, v in params.items() if k != "workload"})
    costs = {m: bench.simulate(inst, m).miss_cost for m in ("lru", "bid_price", "static")}
    costs["count_cost"] = bench.simulate(inst, _PhaseCount(np.array([0, inst.requests]))).miss_cost
    costs["phase_count"] = bench.simulate(inst, _PhaseCount(bounds)).miss_cost
    costs["phase_static"] = bench.simulate(inst, cs.PhaseStatic(bounds, probability)).miss_cost
    every_miss = float(inst.miss_cost[inst.object_id].sum())
    lru = costs["lru"]
    row = {"lru_gap": lru / lp - 1, "lru_gap_ms": lru - lp, "lru_gap_of_all": (lru - lp) / every_miss}
    row.update({m: bench.closed_gap(c, lru, lp) for m, c in costs.items() if m != "lru"})
    # how much of what phase_static keeps is rare: members (bytes) expected < 2 requests per phase
    rare, kept = 0.0, 0.0
    for k, p in enumerate(probability):
        mu = (bounds[k + 1] - bounds[k]) * p
        member = cs.static_set(inst, mu)
        kept += float(inst.size[member].sum())
        rare += float(inst.size[member & (mu < 2)].sum())
    row["kept_rare"] = rare / kept if kept else float("nan")
    return row


def main() -> None:
    to_end = _to_prompt_end()
    multimodal, mooncake = [], []
    for p, lp in bench.committed_bounds(RESULTS / "caching_full.csv"):
        inst = bench.make_instance(**p)
        if p["workload"] == "multimodal":
            row = {"skew": p["skew"], "cache": p["cache_share"], **multimodal_row(p, inst, lp)}
            multimodal.append(row)
        else:
            row = {"cost": p["cost"], "cache": p["cache_share"], **mooncake_row(inst, lp, to_end)}
            mooncake.append(row)
        print(row, flush=True)
    mm, mc = pd.DataFrame(multimodal), pd.DataFrame(mooncake)
    mm.to_csv(RESULTS / "caching_references_multimodal.csv", index=False)
    mc.to_csv(RESULTS / "caching_references_mooncake.csv", index=False)
    doc = (__doc__ or "").split("\n\n")
    text = ["# Caching: online rules next to references with foresight", "",
            "Command: `python benchmarks/caching_references.py`. Columns after `lru_gap`: share of "
            "LRU's gap to the LP bound closed (1 = the bound; negative = worse than LRU).", "",
            "\n\n".join(doc[1:4]), "", "## Multimodal (seed 0)", "",
            markdown_table(mm, floatfmt=".3g"), "", "## Mooncake blocks", "",
            markdown_table(mc, floatfmt=".3g"), ""]
    write_md(RESULTS / "caching_references.md", "\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    argparse.ArgumentParser(description=__doc__).parse_args()
    main()
