"""Decode routing: the hindsight model's size is checked before anything is allocated.

The ``max_entries`` refusal used to run after :func:`activity`, which lists every (request,
active step) pair: 400 requests of 1e6 output tokens (within the caps) were 4e8 pairs, and
``servopt solve`` died of "out of memory" (2.98 GiB for one array) before it could refuse.
:func:`model_size` now counts the model from the requests' intervals. Here it is checked
against counts taken from ``activity()`` itself on random streams, and the refusal of a large
stream against a memory ceiling."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from servopt.core import InvalidInstanceError
from servopt.instances import decode_routing as inst_mod
from servopt.models import decode_routing as model
from servopt.solvers import exact


def stream(arrivals, prompts, outputs, *, workers=2, slots=None, kv=None) -> inst_mod.Instance:
    frame = pd.DataFrame({"arrival_s": np.asarray(arrivals, dtype=float),
                          "prompt_tokens": prompts, "output_tokens": outputs})
    need = int(np.sum(np.asarray(prompts) + np.asarray(outputs)))
    return inst_mod.Instance(workers=workers, slots=len(frame) if slots is None else slots,
                             kv_capacity=need if kv is None else kv, step_ms=10.0,
                             ms_per_kv_token=1e-4, requests=frame, arrival_unit="step")


def counted_from_activity(inst, step_block):
    """The size as the builders used to count it: from the listed (request, step) pairs."""
    act = model.activity(inst)
    block = np.arange(len(act.steps)) // step_block
    pairs = len(np.unique(block[act.step] * inst.n_requests + act.request))
    count = np.bincount(act.step, minlength=len(act.steps))
    need = np.bincount(act.step, weights=act.kv_need, minlength=len(act.steps))
    families = 1
    if step_block == 1:
        families += int(count.max() > inst.slots) + int(need.max() > inst.kv_capacity)
    return {"rows": len(act.request), "pairs": pairs, "families": families,
            "entries": pairs * inst.workers * families,
            "count": int(count.max()), "count_step": int(act.steps[np.argmax(count)]),
            "need": int(need.max()), "need_step": int(act.steps[np.argmax(need)])}


def random_stream(rng):
    n = int(rng.integers(1, 12))
    kind = int(rng.integers(0, 3))
    if kind == 0:  # overlapping
        arrivals = np.sort(rng.integers(0, 20, n))
    elif kind == 1:  # with idle stretches between bursts (steps with no row)
        arrivals = np.cumsum(rng.integers(0, 2, n) * rng.integers(0, 60, n))
    else:  # fractional arrival times (a request starts at the next whole step)
        arrivals = np.sort(rng.random(n) * 30)
    prompts = rng.integers(1, 30, n)
    outputs = rng.integers(1, int(rng.integers(2, 40)), n)
    need = int(np.max(prompts + outputs))
    # slots and KV from "never bind" down to "bind somewhere"
    slots = int(rng.integers(1, n + 1))
    kv = int(rng.integers(need, need * (n + 1) + 1))
    return stream(arrivals, prompts, outputs, workers=int(rng.integers(1, 4)), slots=slots, kv=kv)


@pytest.mark.parametrize("seed", range(3))
def test_closed_form_size_and_peaks_match_the_activity(seed):
    rng = np.random.default_rng(seed)
    for _ in range(80):
        inst = random_stream(rng)
        for step_block in (1, 2, 3, 7):
            want = counted_from_activity(inst, step_block)
            got = model.model_size(inst, step_block)
            assert got == {k: want[k] for k in ("rows", "pairs", "families", "entries")}, (
                inst.requests.to_dict("list"), step_block)
        peak = model.peak_activity(inst)
        assert peak == {k: want[k] for k in ("count", "count_step", "need", "need_step")}
        assert model.binding(inst) == {"slots": want["count"] > inst.slots,
                                       "kv_memory": want["need"] > inst.kv_capacity}


def test_model_size_by_hand():
    # requests at steps 0 (3 steps: 0-2), 1.5 -> 2 (2 steps: 2-3), 10 (4 steps: 10-13): active
    # steps 0-3 and 10-13, positions 0-3 and 4-7; with blocks of 3 (positions 0-2, 3-5, 6-7)
    # request 0 meets block 0, request 1 (positions 2-3) blocks 0 and 1, request 2 (4-7)
    # blocks 1 and 2: 5 pairs; with blocks of 1, 3 + 2 + 4 = 9. Peak: steps 2 holds 2
    # requests (0 at its 3rd token: 5 + 2 + 1, 1 at its first: 7 + 0 + 1) = 16 KV tokens.
    inst = stream([0, 1.5, 10], [5, 7, 1], [3, 2, 4], workers=2, slots=1, kv=15)
    assert model.model_size(inst, 3) == {"rows": 9, "pairs": 5, "families": 1, "entries": 10}
    # step_block 1: slots (2 > 1) and KV (16 > 15) can bind: 3 families
    assert model.model_size(inst, 1) == {"rows": 9, "pairs": 9, "families": 3, "entries": 54}
    assert model.peak_activity(inst) == {"count": 2, "count_step": 2, "need": 16, "need_step": 2}


def huge_stream(requests=20, workers=2):
    """Output 1e6 tokens each (the cap): activity() would list 2e7 pairs, 160 MB per array and
    about 1.3 GB in all; the model 2e7 x 2 workers = 4e7 nonzeros, above MAX_ENTRIES."""
    inst = inst_mod.generate_steps(requests=requests, workers=workers, seed=0)
    frame = inst.requests.copy()
    frame["output_tokens"] = inst_mod.MAX_OUTPUT
    return inst_mod.Instance(workers=workers, slots=requests, kv_capacity=10**9, step_ms=10.0,
                             ms_per_kv_token=1e-4, requests=frame, arrival_unit="step")


def test_a_huge_stream_is_refused_before_anything_is_allocated():
    inst = huge_stream()
    entries = 20 * inst_mod.MAX_OUTPUT * 2
    calls = [lambda: model.hindsight_matrices(inst),
             lambda: model.build_matrix_model(inst),
             lambda: model.build(inst, relax=True),
             lambda: model.build_cvxpy(inst),
             lambda: exact.solve(inst, time_limit=10)]
    for call in calls:
        tracemalloc.start()
        try:
            with pytest.raises(model.ModelTooLarge, match=f"{entries:,} nonzeros"):
                call()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 20e6  # bytes; the pairs' arrays alone are 160 MB each
    # the note and the infeasibility message are counted the same way
    tracemalloc.start()
    try:
        assert model.solution_note(inst) is None
        assert model.hindsight_exact(inst)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_blocked_models_refuse_an_activity_too_long_to_list(monkeypatch):
    # with step_block > 1 the nonzeros can be few while activity() still lists sum_i o_i pairs
    inst = stream([0, 0, 5], [1, 2, 3], [40, 30, 50], workers=1)
    rows = 120
    assert model.model_size(inst, 40)["entries"] < rows
    monkeypatch.setattr(model, "MAX_ENTRIES", rows - 1)
    with pytest.raises(model.ModelTooLarge, match="120 \\(request, active step\\) pairs"):
        model.hindsight_matrices(inst, step_block=40)
    model.hindsight_matrices(inst, step_block=40, max_entries=rows)  # lifted from Python
    monkeypatch.setattr(model, "MAX_ENTRIES", rows)
    model.hindsight_matrices(inst, step_block=40)


@pytest.mark.parametrize("step_block", [1, 3])
def test_a_model_at_the_limit_builds_and_one_entry_over_is_refused(step_block):
    rng = np.random.default_rng(5)
    inst = stream(np.sort(rng.integers(0, 30, 12)), rng.integers(1, 20, 12),
                  rng.integers(1, 25, 12), workers=3, slots=4, kv=200)
    entries = counted_from_activity(inst, step_block)["entries"]
    mat = model.hindsight_matrices(inst, step_block=step_block, max_entries=entries)
    n_blocks = mat.A.shape[1] - 12 * 3
    # the counted entries are the matrix's: x entries of every family, less the u and assign ones
    assert mat.A.nnz - 3 * n_blocks - 12 * 3 == entries
    with pytest.raises(model.ModelTooLarge, match=f"{entries:,} nonzeros"):
        model.hindsight_matrices(inst, step_block=step_block, max_entries=entries - 1)


def test_options_are_still_checked_first():
    inst = huge_stream()
    with pytest.raises(InvalidInstanceError, match="step_block"):
        model.hindsight_matrices(inst, step_block=0)
    frame = inst.requests.copy()
    seconds = inst_mod.Instance(workers=2, slots=20, kv_capacity=10**9, step_ms=10.0,
                                ms_per_kv_token=1e-4, requests=frame, arrival_unit="s")
    with pytest.raises(InvalidInstanceError, match="arrival_unit='step'"):
        model.hindsight_matrices(seconds)


def test_batch_model_size_does_not_wrap_around_int64():
    # 1000 requests of 1e6 tokens over a horizon of 1e13 rounds: each has 1e13 - 1e6 + 1 start
    # columns of 1e6 memory entries, 1e19 entries apiece, past int64 (9.2e18): the count
    # wrapped to 1.86e18; it must be the product (float past 2**62) and stay a refusal
    from servopt.instances.batch_scheduling import Instance as Batch
    from servopt.models import batch_scheduling as batch

    inst = Batch(kv_memory=2_000_000, arrival=np.zeros(1000, int), prompt_tokens=np.ones(1000, int),
                 output_tokens=np.full(1000, 10**6))
    rounds, starts, entries = batch.model_size(inst, horizon=10**13)
    assert rounds == 10**13
    assert starts == 1000 * (10**13 - 10**6 + 1)  # exact: int64 holds it
    assert entries == pytest.approx(1000 * (10**13 - 10**6 + 1) * 10**6, rel=1e-12)
    # time_estimate, which decides whether to build, refuses it outright (1636c1e: a model its
    # lower bound on the size already puts over a cap is refused before any schedule is computed)
    with pytest.raises(InvalidInstanceError, match=r"10,000,000,000,000 rounds, one memory row"):
        batch.time_estimate(inst, horizon=10**13)
    # a small one stays exact: 3 requests, horizon 10, outputs 2, 3, 4: 9 + 8 + 7 columns
    small = Batch(kv_memory=100, arrival=np.zeros(3, int), prompt_tokens=np.ones(3, int),
                  output_tokens=np.array([2, 3, 4]))
    assert batch.model_size(small, horizon=10) == (10, 24, 9 * 2 + 8 * 3 + 7 * 4)


def test_batch_memory_rows_are_refused_before_the_columns_are_allocated():
    # 30 requests of 3000 tokens: 2.6M start columns (under their 30M cap) of 3000 memory
    # entries each, 7.8e9 (over 60M): the refusal came after the columns' arrays (about 100 MB)
    # were built; it is now counted from the requests
    from servopt.instances.batch_scheduling import generate
    from servopt.models import batch_scheduling as batch

    inst = generate(30, output_range=(3000, 3000))
    _, starts, entries = batch.model_size(inst, "safe")
    assert starts < 30_000_000 < 60_000_000 < entries
    for call in (lambda: batch.start_answer(inst), lambda: batch.build_matrix_model(inst),
                 lambda: batch.build(inst), lambda: exact.solve(inst, time_limit=10)):
        tracemalloc.start()
        try:
            # (refused on the O(n) lower bound of the count since 1636c1e: "at least 410,220,000
            # entries", under the exact 7.8e9 and over the cap all the same)
            # (the Pyomo build has its own 5M cap)
            with pytest.raises(InvalidInstanceError, match=r"memory rows would have (at least )?"
                                                           r"[\d,]+ entries \(more than (60|5),000,000"):
                call()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 20e6  # bytes; 2.6M columns are 21 MB per array
