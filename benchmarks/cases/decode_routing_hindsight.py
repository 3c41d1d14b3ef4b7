"""Decode routing, hindsight gap: ~200-request step-clock streams on 4 workers (slots and KV
never bind, so the hindsight IP is exactly what the simulator realises), Azure conversation and
code lengths, three seeds. Bound: the hindsight IP's optimum or MIP dual bound (60 s)."""

from servopt.benchmarks.decode_routing import DEFAULT_METHODS, make_cell
from servopt.benchmarks.registry import Case

CASE = Case(
    name="decode_routing_hindsight",
    decision="decode_routing",
    grid=tuple({"kind": "hindsight", "workload": w, "workers": 4, "requests": 200}
               for w in ("conversation", "code")),
    seeds=(0, 1, 2),
    make_instance=make_cell,
    methods=(*DEFAULT_METHODS, "epoch_ip"),
    bound_kw={"time_limit": 60.0},
    suites=("full",),
    description="online routers vs the hindsight optimum on small streams",
)
