"""Decode routing, quick: one Azure-conversation stream (4 workers, 85% load) and one small
step-clock stream whose hindsight IP bound is solved (time-limited) for the gap."""

from servopt.benchmarks.decode_routing import DEFAULT_METHODS, make_cell
from servopt.benchmarks.registry import Case

CASE = Case(
    name="decode_routing_quick",
    decision="decode_routing",
    grid=(
        {"kind": "synthetic", "workload": "conversation", "workers": 4, "load": 0.85,
         "requests": 800},
        {"kind": "hindsight", "workload": "conversation", "workers": 3, "requests": 24},
    ),
    seeds=(0,),
    make_instance=make_cell,
    methods=DEFAULT_METHODS,
    bound_kw={"time_limit": 5.0},
    suites=("quick",),
    description="barrier idle / throughput / latency of the routers; hindsight gap on a tiny stream",
)
