"""The decode simulator's clock is the same in any time unit and at any epoch (audit R7: with c0,
c1 and arrivals in units of 2^-20, ~10 ns steps, its absolute 1e-9 s arrival tolerance routed
requests a step early and round_robin cost 13916.86 instead of 13917.19; with arrivals near 1e11 s
its summed step times lost the precision of a step and jsq's cost moved 0.6%). Expected values:
the same run in plain units from time 0 (scaling by a power of two and shifting onto a grid the
offset keeps exact change no arithmetic)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as gen
from servopt.solvers import decode_routing as routing

# routers whose own choices carry no absolute tolerance (the bid-price routers' tie test has a
# floor of 1e-9 ms: not the simulator's business)
ROUTERS = ["round_robin", "random", "jsq", "least_kv", "least_kv_sorted", "p2c_kv",
           "least_outstanding"]


def _stream() -> gen.Instance:
    return gen.generate(requests=150, workers=3, seed=2)


def _moved(inst: gen.Instance, *, scale: float = 1.0, offset: float = 0.0) -> gen.Instance:
    req = inst.requests.copy()
    req["arrival_s"] = req["arrival_s"] * scale + offset
    return dataclasses.replace(inst, step_ms=inst.step_ms * scale,
                               ms_per_kv_token=inst.ms_per_kv_token * scale,
                               prefill_ms_per_token=inst.prefill_ms_per_token * scale,
                               requests=req)


@pytest.mark.parametrize("scale", [2.0**-20, 2.0**-30])
def test_the_simulator_routes_every_request_at_the_same_step_in_any_time_unit(scale):
    base = _stream()
    small = _moved(base, scale=scale)
    for method in ROUTERS:
        plain, scaled = bench.simulate(base, method), bench.simulate(small, method)
        assert scaled["cost"] / scale == plain["cost"], method
        assert np.array_equal(scaled["worker"], plain["worker"]), method
        np.testing.assert_array_equal(scaled["finish_t"] / scale, plain["finish_t"])


class _Recorder(routing.RoundRobin):
    """round_robin that notes the clock it is shown and the arrivals it routes."""

    def route(self, view, ids):
        self.seen.append((view.now, float(self.instance.arrival[ids].max())))
        super().route(view, ids)

    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        self.seen = []


def test_the_simulator_gives_the_same_run_at_a_late_epoch():
    # arrivals on a grid of 2^-10 s, so that adding 2^36 s (~2,200 years) keeps them exact
    base = _stream()
    req = base.requests.copy()
    req["arrival_s"] = np.round(req["arrival_s"] * 1024) / 1024
    base = dataclasses.replace(base, requests=req)
    offset = 2.0**36
    late = _moved(base, offset=offset)
    assert np.array_equal(late.arrival - offset, base.arrival)  # the grid survived the shift
    for method in ROUTERS:
        plain, shifted = bench.simulate(base, method), bench.simulate(late, method)
        assert shifted["cost"] == plain["cost"], method
        assert np.array_equal(shifted["worker"], plain["worker"]), method
        assert shifted["metrics"] == {**plain["metrics"], "router_us": shifted["metrics"]["router_us"]}
        # times are reported in the instance's frame (to the float spacing at 2^36 s, 2^-16 s)
        np.testing.assert_allclose(shifted["finish_t"] - offset, plain["finish_t"], atol=2.0**-15)
    # a router sees the clock in the instance's frame: every request it routes has arrived
    recorder = _Recorder()
    bench.simulate(late, recorder)
    assert recorder.seen and all(now >= arrived and now < offset + 100 for now, arrived
                                 in recorder.seen)
