"""Capacity, full: every regime (compute, memory, mixed, batch cap) of two workloads.

Workloads: the Azure 2023 code trace's lengths and the conversation-like generator. Cost =
workers provisioned for ~10x one worker's rate; bound = the least number of workers the
simulation shows stable (see :mod:`servopt.benchmarks.capacity`).
"""

from servopt.benchmarks.capacity import REGIMES, make_cell
from servopt.benchmarks.registry import Case

CASE = Case(
    name="capacity_full",
    decision="capacity",
    grid=tuple({"workload": w, "regime": r} for w in REGIMES for r in REGIMES[w]),
    make_instance=make_cell,
    methods=("plan", "fluid_lp", "first_order", "compute_only", "utilisation", "queue_depth"),
    evaluate_kw={"n_requests": 10000, "seeds": 3, "max_seeds": 6, "window": 3000},
    bound_kw={"n_requests": 10000, "seeds": 3, "max_seeds": 6},
    suites=("full",),
    description="planning rule vs reactive autoscalers on the simulated worker",
)
