"""Quick expert-placement case: the small preset (32 experts, 2 nodes x 4 GPUs x 5 slots,
4 layers), plan on window t, score window t + 1; every method against the next window's bound."""

from servopt.benchmarks.registry import Case

CASE = Case(
    name="expert_placement_quick",
    decision="expert_placement",
    grid=({"preset": "small", "windows": 5, "skew": 1.0},),
    seeds=(0, 1),
    suites=("quick",),
    description="small MoE cluster, log-sd 1.0 popularity with AR(1) drift 0.9",
)
