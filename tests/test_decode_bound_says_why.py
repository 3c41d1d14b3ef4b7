"""decode_routing.bound says why it fell back to the busy-time bound (R14: a stream where KV can
bind had bound 8 against an optimum of 18 with status ok, where a little more KV gives the
hindsight optimum 18): the bound is valid but the gap it shows may be the bound's."""
import pandas as pd

from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as gen
from servopt.instances.decode_routing import Instance


def _stream(kv_capacity: int) -> Instance:
    return Instance(requests=pd.DataFrame(dict(arrival_s=[1.5, 2.5], prompt_tokens=[3, 1],
                                               output_tokens=[4, 3])),
                    workers=3, slots=64, kv_capacity=kv_capacity, step_ms=0.0,
                    ms_per_kv_token=1.0, prefill_ms_per_token=0.0, arrival_unit="step")


def test_a_stream_where_kv_can_bind_says_so():
    found = bench.bound(_stream(9))
    assert found.kind == "lower_bound"
    assert found.status.startswith("busy-time bound: KV can bind")


def test_the_same_stream_with_room_is_the_hindsight_optimum_without_a_note():
    # with 12 KV tokens nothing binds: the hindsight IP's optimum, 18 by R14's brute force
    found = bench.bound(_stream(12))
    assert found.kind == "optimal" and found.value == 18.0
    assert not found.status.startswith("busy-time")


def test_arrivals_in_seconds_say_so():
    found = bench.bound(gen.generate(requests=40, seed=0), time_limit=5)
    assert found.status.startswith("busy-time bound: arrivals in seconds")
