"""The LP routers in threads route as they do one after another.

The expected values are the same calls run serially in the same process (no thread running
beside them). A race is likely, not certain: four rounds of two threads started together. With
the process-wide HiGHS object the routers had before, both cases failed in 10 of 10 runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from shared import in_threads

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as drg


@pytest.mark.parametrize("method", ["bid_price_lp", "bid_price_argmin"])
def test_lp_routers_in_threads_route_as_in_series(method: str) -> None:
    """The bid-price routers solve their epoch LPs on a HiGHS object of their thread: two
    threads routing two streams assign every request to the worker the serial runs do."""
    streams = [drg.generate(requests=40, workers=4, seed=seed) for seed in (1, 2)]

    def route(inst: Any) -> tuple[float, list[int]]:
        result = bench.simulate(inst, method)
        return result["cost"], np.asarray(result["worker"]).tolist()

    serial = [route(inst) for inst in streams]
    assert serial[0] != serial[1]  # two different answers, so a swap would show
    for _ in range(4):
        assert in_threads(streams, route) == serial
