"""Decode routing: holes found by mutation testing (a changed line that no other test noticed).

Each test names the mutant it kills; the expected numbers are hand-traced decode steps.
"""

from __future__ import annotations

import pandas as pd
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as inst_mod
from servopt.solvers import decode_routing as routing


def stream(rows, **kw):
    frame = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"])
    args = dict(workers=2, slots=2, kv_capacity=100, step_ms=1.0, ms_per_kv_token=0.1,
                arrival_unit="step")
    args.update(kw)
    return inst_mod.Instance(requests=frame, **args)


class Fixed(routing.Router):
    """Routes request i to ``plan[i]``."""

    name = "fixed"

    def __init__(self, plan):
        self.plan = list(plan)

    def choose(self, view, request):
        return self.plan[request]


def test_preemption_stops_as_soon_as_the_step_fits_exactly():
    # kills: the preemption loop's stop test 'sum (s + j + 1) <= K' turned into '< K'.
    # K = 30, one worker: r0 (s=20, o=2), r1 (s=6, o=2), r2 (s=1, o=2) are admitted at step 0
    # (21 + 7 + 2 = 30 <= 30). Step 1 needs 22 + 8 + 3 = 33 > 30: the newest, r2, is preempted, and
    # the rest needs exactly 30 = K, so preemption stops there (1 preemption); r0 and r1 finish after
    # step 1 (2.0 ms), r2 restarts at step 2 and finishes after step 3 (4.0 ms). Preempting r1 as well
    # would make it finish at 4.0 ms too. (The simpler mutant of the outer test, '> K' -> '>= K',
    # is equivalent: this stop test alone decides.)
    inst = stream([(0, 20, 2), (0, 6, 2), (0, 1, 2)], workers=1, slots=4, kv_capacity=30,
                  ms_per_kv_token=0.0, step_ms=1.0)
    res = bench.simulate(inst, Fixed([0, 0, 0]))
    assert res["metrics"]["preemptions"] == 1
    assert res["steps"]["max_kv"].tolist() == [30, 30, 2, 3]  # r2 alone: 1 + 0 + 1, then 1 + 1 + 1
    assert res["finish_t"] * 1000 == pytest.approx([2.0, 2.0, 4.0])
