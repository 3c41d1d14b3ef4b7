"""Decode routing, full: both Azure-calibrated workloads (conversation, code) at 70 / 85 / 95%
of the fleet's balanced capacity, 8 and 32 workers (64 slots, 131072 KV tokens, 10 ms + 1e-4 ms
per KV token per step), three seeds; 1000 requests per worker on conversation lengths, 2000 on
code lengths (metrics in steady state, see the simulator). Bound: the busy-time lower bound
(arrivals in seconds: ``busy_lower_bound``, never below the simple bound).
``bid_price_argmin`` (1.6-2.1x ``bid_price_lp``'s decision time, ``decode_routing_speed.md``,
and worse than ``bid_price_lp`` in the earlier table) is left to the hindsight and quick cases.
The shared Azure code trace is the case ``decode_routing_trace``; the hindsight gap table on
~200-request step-clock streams is the case ``decode_routing_hindsight``."""

from servopt.benchmarks.decode_routing import FULL_METHODS, make_cell
from servopt.benchmarks.registry import Case

GRID = tuple(
    {"kind": "synthetic", "workload": w, "workers": g, "load": load}
    for w in ("conversation", "code") for g in (8, 32) for load in (0.7, 0.85, 0.95)
)

CASE = Case(
    name="decode_routing_full",
    decision="decode_routing",
    grid=GRID,
    seeds=(0, 1, 2),
    make_instance=make_cell,
    methods=FULL_METHODS,
    suites=("full",),
    description="routers on Azure-calibrated streams and the Azure code trace",
)
