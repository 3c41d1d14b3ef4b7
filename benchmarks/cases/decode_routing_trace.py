"""Decode routing on the shared Azure LLM inference 2023 code trace (8,819 requests), replayed at
85% and 95% of the fleet's balanced capacity on its own lengths, 8 and 32 workers."""

from servopt.benchmarks.decode_routing import FULL_METHODS, make_cell
from servopt.benchmarks.registry import Case

CASE = Case(
    name="decode_routing_trace",
    decision="decode_routing",
    grid=tuple({"kind": "trace", "trace": "azure2023_code.csv", "workers": g, "load": load}
               for g in (8, 32) for load in (0.85, 0.95)),
    seeds=(0,),
    make_instance=make_cell,
    methods=FULL_METHODS,
    suites=("full",),
    description="routers on the Azure 2023 code trace",
)
