"""Decode routing above capacity: both Azure-calibrated workloads at 125% of the fleet's balanced
capacity, 8 and 32 workers, one seed. Queues grow on every worker, so the steady-state
throughput is each router's service capacity: it says how much throughput any routing can add
over JSQ once the fleet saturates (the issue's 95%-load throughput target)."""

from servopt.benchmarks.decode_routing import make_cell
from servopt.benchmarks.registry import Case

CASE = Case(
    name="decode_routing_saturation",
    decision="decode_routing",
    grid=tuple({"kind": "synthetic", "workload": w, "workers": g, "load": 1.25}
               for w in ("conversation", "code") for g in (8, 32)),
    seeds=(0,),
    make_instance=make_cell,
    methods=("jsq", "least_kv", "least_kv_sorted", "bid_price"),
    suites=("full",),
    description="router service capacity when every worker is saturated",
)
