"""Capacity, quick: one memory-bound cell on the Azure code lengths, short simulations."""

from servopt.benchmarks.capacity import make_cell
from servopt.benchmarks.registry import Case

CASE = Case(
    name="capacity_quick",
    decision="capacity",
    grid=({"workload": "azure_code", "regime": "memory"},),
    make_instance=make_cell,
    methods=("plan", "fluid_lp", "first_order", "compute_only", "utilisation", "queue_depth"),
    evaluate_kw={"n_requests": 2500, "seeds": 2, "window": 800},
    bound_kw={"n_requests": 2500, "seeds": 2},
    suites=("quick",),
    description="workers provisioned for ~10x one worker's rate vs the simulated minimum",
)
