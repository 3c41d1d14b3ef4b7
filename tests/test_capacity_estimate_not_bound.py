"""The corrected memory bound is an estimate, the uncorrected one a bound (models/capacity.py's
docstring): on a worker that serves one request at a time the true capacity is a hand
calculation."""
import pytest

from servopt.instances.capacity import Instance
from servopt.models import capacity as model


def _one_at_a_time() -> Instance:
    # batch cap 1 and KV = one prompt: one request in the worker at a time, nothing stranded
    return Instance(prompt_tokens=[158] * 4, output_tokens=[1] * 4, kv_tokens=158,
                    token_budget=64, batch_cap=1, prefill_chunk=1, step_overhead_s=0.001,
                    per_token_s=0.001, arrival_rate=10.0)


def test_uncorrected_rate_is_the_hand_computed_capacity():
    # 158 one-token chunks of 1 ms + 1 ms each (the last emits the only output token):
    # 0.316 s a request, one at a time: 1 / 0.316 req/s
    capacity = 1 / (158 * (0.001 + 0.001 * 1))
    assert model.bounds(_one_at_a_time(), corrected=False).max_stable_rate == pytest.approx(capacity)


def test_corrected_rate_falls_below_the_true_capacity_so_it_is_no_bound():
    capacity = 1 / 0.316
    corrected = model.bounds(_one_at_a_time()).max_stable_rate
    assert corrected < 0.7 * capacity  # 2.11 against 3.16: documented as an estimate
    assert "estimate" in model.__doc__ and "not a bound" in model.__doc__
