"""Units and spans in what users read: instance summaries count a stream's span from its first
arrival, `servopt library list` / `show` give the objective's unit, and `servopt capacity --help`
states the units of b, B and C (review R40)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servopt import cli
from servopt.instances import batch_scheduling as batch
from servopt.instances import decode_routing as decode


def _decode(arrivals: list[float]) -> decode.Instance:
    frame = pd.DataFrame({"arrival_s": arrivals, "prompt_tokens": [10] * len(arrivals),
                          "output_tokens": [3] * len(arrivals)})
    return decode.Instance(workers=2, slots=4, kv_capacity=1000, step_ms=1.0,
                           ms_per_kv_token=0.01, requests=frame)


def _batch(arrivals: list[int]) -> batch.Instance:
    n = len(arrivals)
    return batch.Instance(kv_memory=100, arrival=np.array(arrivals), prompt_tokens=np.full(n, 5),
                          output_tokens=np.full(n, 3), predicted_output=np.full(n, 3))


def test_a_decode_stream_s_span_runs_from_its_first_arrival():
    # arrivals at 1000, 1001, 1002 s span 2 s (the summary said "over 1002s")
    assert "3 requests over 2s from 1000s," in _decode([1000.0, 1001.0, 1002.0]).summary()
    assert "3 requests over 2s," in _decode([0.0, 1.0, 2.0]).summary()


@pytest.mark.parametrize(("arrivals", "text"), [
    ([500, 501, 502], "(arrivals over 3 rounds from round 500)"),  # said: over 503 rounds
    ([7, 7, 7], "(all at round 7)"),                                  # said: over 8 rounds
    ([0, 0, 0], "(all at round 0)"),
    ([0, 4, 9], "(arrivals over 10 rounds)"),                         # rounds 0..9
])
def test_a_batch_stream_s_span_counts_its_rounds_from_the_first_arrival(arrivals, text):
    assert text in _batch(arrivals).summary()


def test_library_list_and_show_give_the_objective_s_unit(capsys):
    # the units are the models' OBJECTIVE_UNIT, written here by hand: capacity's objective is one
    # worker's request rate, batch scheduling's total latency in rounds
    assert cli.main(["library", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["cap_conversation"].endswith(" req/s")
    assert rows["bs_offline_10"].endswith(" rounds")
    assert cli.main(["library", "show", "cap_conversation"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("  objective ") and line.endswith("(req/s)")
               for line in out.splitlines())


def test_capacity_help_states_the_units_of_b_B_and_C(capsys):
    with pytest.raises(SystemExit):
        cli.main(["capacity", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for unit in ("b: tokens processed per iteration", "B: requests in the running batch",
                 "C: prompt tokens of one request per iteration"):
        assert unit in text
