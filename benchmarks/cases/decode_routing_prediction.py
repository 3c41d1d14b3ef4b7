"""Decode routing with predicted output lengths: the same Azure-calibrated streams as the full
case (8 workers, 85% and 95% load, three seeds) with ``predicted_tokens`` = true output x
exp(N(0, e^2)) for prediction noise e = 0 (exact), 0.5 (moderate) and 1.0 (large), next to the
stream without predictions. Routers that read predictions (``bid_price``, ``bid_price_lp``) use
them; the deployed baselines do not. The noise is the same draw for every method."""

from servopt.benchmarks.decode_routing import make_cell
from servopt.benchmarks.registry import Case

GRID = tuple(
    {"kind": "synthetic", "workload": w, "workers": 8, "load": load, "prediction_error": e}
    for w in ("conversation", "code") for load in (0.85, 0.95) for e in (None, 0.0, 0.5, 1.0)
)

CASE = Case(
    name="decode_routing_prediction",
    decision="decode_routing",
    grid=GRID,
    seeds=(0, 1, 2),
    make_instance=make_cell,
    methods=("jsq", "least_kv", "least_kv_sorted", "bid_price", "bid_price_lp"),
    suites=("full",),
    description="bid-price routers with exact, moderately and very noisy predicted output lengths",
)
