"""The expert-placement benchmark: deepseek_v3-shaped instances (256 experts in 8 groups, 58 MoE
layers, 4 nodes x 8 GPUs x 9 slots) at three popularity skews (log-sd 0.5 / 1.0 / 1.5) with AR(1)
drift 0.9 between windows, 10 seeds; every method plans on window t (seeing windows up to t) and
is scored on window t + 1 against the combinatorial bound of the next window."""

from servopt.benchmarks.registry import Case

CASE = Case(
    name="expert_placement_full",
    decision="expert_placement",
    grid=tuple({"preset": "deepseek_v3", "windows": 5, "skew": skew} for skew in (0.5, 1.0, 1.5)),
    seeds=tuple(range(10)),
    suites=("full",),
    description="deepseek_v3 shape, three skews, 10 seeds, plan on t / evaluate on t + 1",
)
