"""Quick batch scheduling case: 30 requests all at round 0 and 60 Poisson arrivals at memory
load 1.0 (uniform lengths, mixed prompt sizes), every default method against the LP bound."""

from servopt.benchmarks.registry import Case

CASE = Case(
    name="batch_scheduling_quick",
    decision="batch_scheduling",
    grid=(
        {"n": 30, "arrivals": "offline"},
        {"n": 60, "arrivals": "poisson", "load": 1.0},
    ),
    seeds=(0, 1),
    suites=("quick",),
    description="FCFS (vLLM), SPF, MC-SF and the bid-price rules vs the time-indexed LP bound",
)
