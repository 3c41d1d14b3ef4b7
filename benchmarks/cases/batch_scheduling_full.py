"""Batch scheduling, full: Azure-calibrated lengths (prompts x 1/32, outputs capped at 64),
memory for about 6 average requests, five paired seeds.

(a) all requests at round 0, n = 50 and 100; (b) Poisson arrivals at memory load 0.8 / 1.0 /
1.3, n = 200 and 2000; (c) prediction noise sigma 0.25 / 0.5 / 1.0 (log-normal factor) at
n = 100 all at once and n = 200 online at load 1.0. Bound: the LP relaxation of the
time-indexed model (with arrivals: starts limited to twice a greedy plan's longest wait, late
columns keep it valid); at n = 2000 the model is too large and the bound is sum_i o_i. The
n = 200 all-at-once LP (minutes per instance) is the case ``batch_scheduling_offline200``."""

from servopt.benchmarks.batch_scheduling import DEFAULT_METHODS
from servopt.benchmarks.registry import Case

AZURE = {"lengths": "azure"}
GRID = (
    tuple({**AZURE, "n": n, "arrivals": "offline"} for n in (50, 100))
    + tuple({**AZURE, "n": n, "arrivals": "poisson", "load": load}
            for n in (200, 2000) for load in (0.8, 1.0, 1.3))
    + tuple({**AZURE, "n": 100, "arrivals": "offline", "noise": s} for s in (0.25, 0.5, 1.0))
    + tuple({**AZURE, "n": 200, "arrivals": "poisson", "load": 1.0, "noise": s}
            for s in (0.25, 0.5, 1.0))
)

CASE = Case(
    name="batch_scheduling_full",
    decision="batch_scheduling",
    grid=GRID,
    seeds=(0, 1, 2, 3, 4),
    methods=DEFAULT_METHODS,
    suites=("full",),
    description="admission rules vs the time-indexed LP bound: all at once, online, noisy",
)
