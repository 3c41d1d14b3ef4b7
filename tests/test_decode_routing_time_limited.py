"""Decode routing's hindsight IP under a time limit (R45 F2) and the Python-object backends' size
caps (R45 F3).

F2: ``generate_steps(requests=1000, workers=32)`` on a 10 s limit spent 49 s in HiGHS's presolve
and returned neither a routing nor a bound, though every routing is feasible there and least-KV
found one in 0.12 s. The model now starts HiGHS from the best fast router's routing, offers it
(``start_answer``) when build and presolve cannot fit in the limit (``time_estimate``), and
reports the closed-form busy-time bound (``cheap_bound``). Expected values come from the
evaluator (``servopt.benchmarks.decode_routing``: its simulator, its ``busy_lower_bound``), from
hand calculation and from brute force over every routing, not from the model's code.

F3: the Pyomo and CVXPY paths took the matrix path's 30M-entry cap (~7 GB and minutes through
Pyomo at the cap); each now has its own, refused before anything is built.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from test_decode_routing import stream as decode_stream

import servopt
from servopt.benchmarks import decode_routing as bench
from servopt.core import InvalidInstanceError
from servopt.instances import decode_routing as inst_mod
from servopt.models import decode_routing as model
from servopt.solvers import decode_routing as routing
from servopt.solvers import exact


class Fixed(routing.Router):
    """Routes request i to ``plan[i]``: the evaluator's cost of a given routing."""

    name = "fixed"

    def __init__(self, plan):
        self.plan = [int(g) for g in plan]

    def choose(self, view, request):
        return self.plan[request]


def stream(rows, **kw):
    """test_decode_routing's step-clock stream, with room for more KV and slots by default."""
    return decode_stream(rows, **{"slots": 4, "kv_capacity": 1000, **kw})


def test_a_limit_that_cannot_cover_presolve_returns_the_best_fast_routing_and_the_busy_bound():
    # 400 requests on 32 workers: 2.7M nonzeros, HiGHS's presolve alone ~18 s here; on a 1 s
    # limit the old code returned no routing and no bound (R45 F2 at 1,000 requests: 49 s)
    inst = inst_mod.generate_steps(requests=400, workers=32)
    assert model.hindsight_exact(inst)  # every routing is feasible, the evaluator is the model
    t = time.perf_counter()
    sol = servopt.solve(inst, time_limit=1.0)
    wall = time.perf_counter() - t
    assert wall < 5.0  # the start's simulations only (no build, no HiGHS)
    assert sol.status == "time_limit" and "build_skipped" in sol.info
    costs = {name: bench.evaluate(inst, name).cost for name in model.START_ROUTERS}
    # the best of the fast routers that ran by the limit's end (least-KV at least), valued
    # as the evaluator values it
    tried = [name for name in model.START_ROUTERS if f"{name} " in sol.info["start_routing"]]
    assert tried and tried[0] == "least_kv"
    assert sol.objective == pytest.approx(min(costs[n] for n in tried), rel=1e-9)
    assert sol.objective <= costs["least_kv"] * (1 + 1e-12)
    # its routing costs that in the simulator, and the bound is the busy-time bound
    worker = sol.decisions["worker"].to_numpy()
    assert bench.evaluate(inst, Fixed(worker)).cost == pytest.approx(sol.objective, rel=1e-9)
    assert sol.bound == pytest.approx(bench.busy_lower_bound(inst), rel=1e-12)
    assert sol.info["bound_kind"] == "lower_bound"
    assert sol.bound <= sol.objective and 0.0 < sol.gap < 0.1


def test_the_start_is_the_evaluators_cost_of_the_best_fast_routing_and_is_feasible():
    inst = inst_mod.generate_steps(requests=30, workers=3, seed=1)
    assert model.hindsight_exact(inst)
    costs = {name: bench.evaluate(inst, name).cost for name in model.START_ROUTERS}
    answer = model.start_answer(inst)
    assert answer["objective"] == pytest.approx(min(costs.values()), rel=1e-12)
    worker = answer["decisions"]["worker"].to_numpy()
    assert bench.evaluate(inst, Fixed(worker)).cost == pytest.approx(answer["objective"], rel=1e-12)
    # the symmetry fixing (x_ig = 0 for g > i) holds: workers renamed by first use
    assert all(worker[i] <= i for i in range(len(worker)))
    for options in ({}, {"symmetry": False}, {"step_block": 3}):
        mm = model.build_matrix_model(inst, **options)
        assert mm.start is not None and exact._start_is_feasible(mm), options
        # a time-limited solve (HiGHS runs its 1 s) ends no worse than that start
        start_value = (mm.objective @ mm.start + mm.offset) * mm.objective_scale
        solved = servopt.solve(inst, time_limit=1.0, **options)
        assert solved.objective <= start_value * (1 + 1e-9) + 1e-9, options
    # step_block 1: the model's value of the start is the evaluator's cost
    mm = model.build_matrix_model(inst)
    assert (mm.objective @ mm.start + mm.offset) * mm.objective_scale == pytest.approx(
        min(costs.values()), rel=1e-12)
    assert mm.info["start_routing"].startswith(min(costs, key=costs.get))


def test_no_start_where_no_fast_routing_meets_the_slots_rows():
    # one worker, one slot, two requests at step 0 then one at step 5: the model (everything
    # runs from its arrival) breaks its slots row at step 0 whatever the routing; the simulator
    # queues. No start, no estimate (the model is built as before) and start_answer refuses.
    inst = stream([(0, 10, 2), (0, 10, 2), (5, 10, 1)], workers=1, slots=1)
    assert model.binding(inst)["slots"]
    assert model.start_routing(inst) is None
    assert model.time_estimate(inst) == {}
    with pytest.raises(InvalidInstanceError, match="slots and KV rows"):
        model.start_answer(inst)


def _brute_optimum(inst, step_block=1):
    """The best routing's total step time by brute force, from the definition (c0 per active
    step, then the largest worker load of each block of step_block active steps)."""
    a = np.ceil(inst.arrival - 1e-9).astype(int)
    steps = sorted({int(a[i]) + j for i in range(inst.n_requests) for j in range(inst.output[i])})
    pos = {k: p for p, k in enumerate(steps)}
    best = math.inf
    for plan in itertools.product(range(inst.workers), repeat=inst.n_requests):
        load = np.zeros((inst.workers, (len(steps) - 1) // step_block + 1))
        for i, g in enumerate(plan):
            for j in range(inst.output[i]):
                w = inst.ms_per_kv_token * (inst.prompt[i] + j)
                w += inst.prefill_ms_per_token * inst.prompt[i] if j == 0 else 0.0
                load[g, pos[int(a[i]) + j] // step_block] += w
        best = min(best, inst.step_ms * len(steps) + load.max(axis=0).sum())
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cheap_bound_is_below_the_brute_force_optimum_with_every_option(seed):
    rng = np.random.default_rng(seed)
    rows = [(int(rng.integers(0, 4)), int(rng.integers(5, 40)), int(rng.integers(1, 6)))
            for _ in range(6)]
    inst = stream(sorted(rows), workers=2, slots=8, prefill_ms_per_token=0.01)
    assert model.hindsight_exact(inst)
    assert model.cheap_bound(inst) == pytest.approx(bench.busy_lower_bound(inst), rel=1e-12)
    for step_block in (1, 2, 3):
        optimum = _brute_optimum(inst, step_block)
        for symmetry in (True, False):
            assert model.cheap_bound(inst, step_block=step_block, symmetry=symmetry) \
                <= optimum + 1e-9, (step_block, symmetry)


def test_cheap_bound_leaves_out_the_slot_count_where_the_blocked_model_has_no_slots_rows():
    # one worker, one slot, two requests of 3 tokens (prompt 10) at step 0. With step_block=2 the
    # model has no slots rows: 3 active steps, blocks {0, 1} and {2}, one worker carrying both:
    # u = 2 x 0.1 x (10 + 11) = 4.2 and 2 x 0.1 x 12 = 2.4, value 3 x 1 + 6.6 = 9.6 by hand.
    # The busy bound's slot count (ceil(6 / 1) = 6 steps: 12.6) is no bound of that model.
    inst = stream([(0, 10, 3), (0, 10, 3)], workers=1, slots=1)
    assert model.cheap_bound(inst, step_block=2) == pytest.approx(9.6, rel=1e-12)
    solved = servopt.solve(inst, step_block=2, mip_gap=0.0)
    assert solved.objective == pytest.approx(9.6, rel=1e-9)


def test_the_estimate_counts_presolve_and_lets_a_small_model_be_solved():
    inst = inst_mod.generate_steps(requests=30, workers=3, seed=1)
    costs = model.time_estimate(inst)
    nnz = model.build_matrix_model(inst).matrix.nnz
    assert costs["nonzeros"] == nnz
    assert model.time_estimate(inst, step_block=4)["nonzeros"] == model.build_matrix_model(
        inst, step_block=4).matrix.nnz
    assert costs["build_s"] + costs["setup_s"] < 0.5
    sol = servopt.solve(inst, time_limit=1.0)  # HiGHS runs (it may not finish in 1 s)
    assert "build_skipped" not in sol.info and "highs_skipped" not in sol.info
    assert sol.info["bound_kind"] in ("mip_bound", "optimal")
    # F2's instance: 6.8M nonzeros, over 49 s of presolve measured: not started on 10 s
    big = inst_mod.generate_steps(requests=1000, workers=32)
    assert model.time_estimate(big)["setup_s"] > 40.0


def counted_simulate(monkeypatch, slow=None):
    """Log each router the evaluator simulates (the start's routers call bench.simulate);
    ``slow`` (call number: seconds) sleeps after that call."""
    calls = []
    real = bench.simulate

    def simulate(instance, router, *args, **kw):
        out = real(instance, router, *args, **kw)
        calls.append(router)
        time.sleep((slow or {}).get(len(calls), 0.0))
        return out

    monkeypatch.setattr(bench, "simulate", simulate)
    return calls


def tried_in(note):
    """The routers a ``start_routing`` note names as tried ("<router> <value>")."""
    return [name for name in model.START_ROUTERS if f" {name} " in f" {note.split('(', 1)[1]}"]


def test_a_build_stopped_by_its_deadline_hands_its_routings_over_without_simulating_again(
        monkeypatch):
    # R48 F2: the build simulated least_kv, least_kv_sorted, jsq and passed its deadline; the
    # answer then simulated least_kv again and said 3 routers were "not tried by the time limit"
    inst = inst_mod.generate_steps(requests=40, workers=3, seed=2)
    assert model.hindsight_exact(inst)
    # the estimate lets the build start; the second simulation ends past the 2 s limit (0.5 s
    # had the first one alone pass it on a loaded machine: R49)
    monkeypatch.setattr(model, "time_estimate", lambda *a, **k: {
        "nonzeros": 1.0, "build_s": 0.0, "setup_s": 0.0})
    calls = counted_simulate(monkeypatch, slow={2: 2.1})
    sol = servopt.solve(inst, time_limit=2.0)
    assert sol.status == "time_limit" and "build passed its deadline" in sol.info["build_skipped"]
    assert len(calls) == len(set(calls)) >= 2  # no router simulated twice
    assert calls == list(model.START_ROUTERS[:len(calls)])
    note = sol.info["start_routing"]
    assert tried_in(note) == calls  # the note names exactly the routers simulated
    left = len(model.START_ROUTERS) - len(calls)
    assert (f"{left} more not tried by the time limit" in note) == (left > 0)
    # the answer is the best of them, as the (unpatched) evaluator costs them
    monkeypatch.undo()
    costs = [bench.evaluate(inst, name).cost for name in calls]
    assert sol.objective == pytest.approx(min(costs), rel=1e-9)
    assert bench.evaluate(inst, Fixed(sol.decisions["worker"].to_numpy())).cost == \
        pytest.approx(sol.objective, rel=1e-9)


def test_start_answer_takes_a_stopped_builds_routings_once_and_only_for_its_instance(
        monkeypatch):
    inst = inst_mod.generate_steps(requests=40, workers=3, seed=2)
    other = inst_mod.generate_steps(requests=40, workers=3, seed=2)  # equal, not the same object
    costs = {name: bench.evaluate(inst, name).cost for name in model.START_ROUTERS}
    calls = counted_simulate(monkeypatch)
    with pytest.raises(TimeoutError):
        model.build_matrix_model(inst, deadline=time.perf_counter())  # stops after least_kv
    assert calls == ["least_kv"]
    # no deadline: the three routers the build did not reach are simulated, least_kv is not
    given = model.start_answer(inst)
    assert calls == list(model.START_ROUTERS)
    assert tried_in(given["info"]["start_routing"]) == list(model.START_ROUTERS)
    assert "not tried" not in given["info"]["start_routing"]
    assert given["objective"] == pytest.approx(min(costs.values()), rel=1e-9)
    # taken once: a second call simulates all four again; another instance never takes them
    del calls[:]
    model.start_answer(inst)
    assert calls == list(model.START_ROUTERS)
    del calls[:]
    with pytest.raises(TimeoutError):
        model.build_matrix_model(inst, deadline=time.perf_counter())
    model.start_answer(other, deadline=time.perf_counter())
    assert calls == ["least_kv", "least_kv"]  # the build's, then other's own first router
    # with the deadline passed, start_answer runs its first router only (as before)
    del calls[:]
    note = model.start_answer(inst, deadline=time.perf_counter())["info"]["start_routing"]
    assert calls == ["least_kv"] and "3 more not tried by the time limit" in note


def test_the_start_does_not_begin_a_router_that_would_end_past_the_deadline(monkeypatch):
    # R48 F2's skip path after the fix above: 2.3 s a router at n = 2,000 on 1 worker, and a
    # router begun just before the limit's end ran 1.9 s past it (9.4 s on 7.5 s)
    inst = inst_mod.generate_steps(requests=40, workers=3, seed=2)
    calls = counted_simulate(monkeypatch, slow={1: 0.4})  # least_kv "takes" 0.4 s
    note = model.start_answer(inst, deadline=time.perf_counter() + 0.6)["info"]["start_routing"]
    assert calls == ["least_kv"] and "3 more not tried by the time limit" in note
    del calls[:]  # with time for them, all four run
    note = model.start_answer(inst, deadline=time.perf_counter() + 60.0)["info"]["start_routing"]
    assert calls == list(model.START_ROUTERS) and "not tried" not in note


def test_the_start_estimate_counts_the_simulators_steps_at_one_worker():
    # R48 F2: the four simulations at n = 2,000 on 1 worker (52,238 active steps, 425k request-
    # step pairs) took 9.6 s (R48) and 16.7 s (E40, load 2.6), ~20-40 us a pair; the old rate
    # (6 us a pair, from 32 workers) said 2.6 s, so a 7.5 s limit ran 10.6 s. The simulator
    # steps the fleet once per active step: counted here by hand from the arrivals and outputs.
    inst = inst_mod.generate_steps(requests=2000, workers=1)
    costs = model.time_estimate(inst)
    start_s = costs["build_s"] - model.BUILD_S_PER_NONZERO * costs["nonzeros"]
    assert 8.0 < start_s < 40.0
    a = np.ceil(inst.arrival - 1e-9).astype(np.int64)  # step clock: arrival step, then o steps
    steps = len(set(itertools.chain.from_iterable(
        range(s, s + o) for s, o in zip(a.tolist(), inst.output.tolist(), strict=True))))
    assert steps > 50_000
    assert start_s == pytest.approx(model.START_S_PER_STEP * steps
                                    + model.START_S_PER_PAIR * inst.output.sum(), rel=1e-9)
    # at 32 workers the same formula stays at the measured scale (0.41 s at n = 400)
    big = inst_mod.generate_steps(requests=400, workers=32)
    costs = model.time_estimate(big)
    assert 0.2 < costs["build_s"] - model.BUILD_S_PER_NONZERO * costs["nonzeros"] < 1.5
    # an LP relaxation's build simulates nothing
    lp = model.time_estimate(inst, relax=True)
    assert lp["build_s"] == pytest.approx(model.BUILD_S_PER_NONZERO * lp["nonzeros"])


@pytest.mark.parametrize("backend, cap_name", [("pyomo", "MAX_PYOMO_ENTRIES"),
                                               ("cvxpy", "MAX_CVXPY_ENTRIES")])
def test_the_python_object_backends_refuse_above_their_own_cap_pointing_to_the_default(
        backend, cap_name):
    # 1,200 requests on 32 workers: 8.3M entries, under the matrix path's 30M (R45 F3: through
    # Pyomo ~77 s and 1.8 GB at 1,000 requests; about 7 GB at the old shared cap)
    inst = inst_mod.generate_steps(requests=1200, workers=32)
    entries = model.model_size(inst)["entries"]
    assert 8_000_000 < entries < model.MAX_ENTRIES
    t = time.perf_counter()
    with pytest.raises(InvalidInstanceError, match="default backend") as err:
        servopt.solve(inst, backend=backend, time_limit=5)
    assert time.perf_counter() - t < 3.0
    cap = getattr(model, cap_name)
    assert f"{entries:,}" in str(err.value) and f"{cap:,}" in str(err.value)


def test_the_pyomo_cap_is_lifted_by_max_entries_and_small_models_agree():
    big = inst_mod.generate_steps(requests=1200, workers=32)  # 8.3M entries
    with pytest.raises(InvalidInstanceError, match="default backend"):
        model.check_size(big, backend="pyomo")
    model.check_size(big, max_entries=10_000_000, backend="pyomo")  # the caller's: taken
    inst = inst_mod.generate_steps(requests=20, workers=2, seed=3)
    pyomo = servopt.solve(inst, backend="pyomo", relax=True)  # a small model still builds
    matrix = servopt.solve(inst, relax=True)
    assert pyomo.objective == pytest.approx(matrix.objective, rel=1e-6)
