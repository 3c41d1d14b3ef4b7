"""Full caching benchmark (issue 7): the multimodal generator at three skews and three cache
sizes with 10^5 requests, and the Mooncake synthetic trace's prefix blocks at capacities from
0.5% to 20% of its distinct blocks."""

from servopt.benchmarks.caching import make_instance
from servopt.benchmarks.registry import Case

MULTIMODAL = tuple(
    {"workload": "multimodal", "requests": 100_000, "objects": 20_000, "skew": skew,
     "cache_share": share}
    for skew in (0.6, 0.9, 1.2) for share in (0.01, 0.05, 0.2))
MOONCAKE = tuple(
    {"workload": "mooncake", "cache_share": share, "cost": cost}
    for cost in ("unit", "position") for share in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2))

CASE = Case(
    name="caching_full",
    decision="caching",
    grid=MULTIMODAL + MOONCAKE,
    seeds=(0,),
    make_instance=make_instance,
    suites=("full",),
    description="issue 7 benchmark: multimodal 3 skews x 3 cache sizes x 1e5 requests; Mooncake "
                "blocks at 0.5%-20% of distinct blocks, unit and position costs",
)
