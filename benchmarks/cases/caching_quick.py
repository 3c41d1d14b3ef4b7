"""Quick caching case: a small multimodal workload and a Mooncake prefix, every method."""

from servopt.benchmarks.caching import make_instance
from servopt.benchmarks.registry import Case

CASE = Case(
    name="caching_quick",
    decision="caching",
    grid=(
        {"workload": "multimodal", "requests": 4000, "objects": 800, "skew": 0.9,
         "cache_share": 0.05},
        {"workload": "mooncake", "max_requests": 6000, "cache_share": 0.05},
    ),
    seeds=(0,),
    make_instance=make_instance,
    suites=("quick",),
    description="LRU ... bid price vs the interval-LP bound on 4k multimodal requests and the "
                "first 6k Mooncake block requests",
)
