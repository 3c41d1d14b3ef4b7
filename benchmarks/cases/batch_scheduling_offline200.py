"""Batch scheduling: 200 Azure-calibrated requests all at round 0 (the LP takes minutes)."""

from servopt.benchmarks.batch_scheduling import DEFAULT_METHODS
from servopt.benchmarks.registry import Case

CASE = Case(
    name="batch_scheduling_offline200",
    decision="batch_scheduling",
    grid=({"lengths": "azure", "n": 200, "arrivals": "offline"},),
    seeds=(0, 1, 2, 3, 4),
    methods=DEFAULT_METHODS,
    bound_kw={"time_limit": 1200.0},
    suites=("full",),
    description="n = 200 all at once against the LP relaxation",
)
