"""Decode routing, hindsight gap with exact predicted output lengths: the streams of the case
``decode_routing_hindsight`` with ``predicted_tokens`` = the true output, so the routers that read
predictions know every length (the issue's calibration router). Bound: the same hindsight IP
(60 s)."""

from servopt.benchmarks.decode_routing import make_cell
from servopt.benchmarks.registry import Case

CASE = Case(
    name="decode_routing_hindsight_pred",
    decision="decode_routing",
    grid=tuple({"kind": "hindsight", "workload": w, "workers": 4, "requests": 200,
                "prediction_error": 0.0}
               for w in ("conversation", "code")),
    seeds=(0, 1, 2),
    make_instance=make_cell,
    methods=("jsq", "least_kv", "least_kv_sorted", "bid_price", "bid_price_lp", "epoch_ip"),
    bound_kw={"time_limit": 60.0},
    suites=("full",),
    description="online routers that know every output length vs the hindsight optimum",
)
