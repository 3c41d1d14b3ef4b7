"""Numbers at the edge of the legal ranges: sums past int64, stretches of 1e10 decode steps, and
a seconds clock summed over 1e5+ steps. Expected values come from exact integer arithmetic or
from step-by-step float sums, not from the code under test."""

from __future__ import annotations

import numpy as np

from servopt.instances import batch_scheduling as bs_instances
from servopt.models import batch_scheduling as bs_model


def test_area_bound_sums_footprints_past_int64():
    # 900,000 requests at round 0, prompt 1e7 and output 1e6 (both at their caps): the
    # footprints sum to 9.45e18 token-rounds, past 2^63; an int64 running sum wraps and the
    # bound came out 4.7% low (3.68e17 against 3.87e17)
    n, s, o, memory = 900_000, 10_000_000, 1_000_000, 11_000_000
    inst = bs_instances.Instance(kv_memory=memory, arrival=np.zeros(n, dtype=np.int64),
                                 prompt_tokens=np.full(n, s, dtype=np.int64),
                                 output_tokens=np.full(n, o, dtype=np.int64))
    footprint = s * o + o * (o + 1) // 2  # Python int: sum_j (s + j), j = 1..o
    # the k-th finisher needs the k smallest footprints' area: ceil(k footprint / M), exactly
    exact = sum(max(o, -(-k * footprint // memory)) for k in range(1, n + 1))
    assert exact > 2**63 // memory  # the instance does reach past int64
    got = bs_model.area_bound(inst)
    # the bound divides in floats (1 ulp at 8.6e11 is 1.2e-4 of a round), so a term may round
    # down by one round: at most n of 3.9e17
    assert exact - n <= got <= exact
