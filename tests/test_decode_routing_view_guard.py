"""Decode routing: a router sees the fleet, it never owns it (review R11).

The simulator hands routers a view (``benchmarks.decode_routing.RouterView``) whose attributes
cannot be rebound, which holds none of the simulator's own state (the per-worker queues), whose
``assign`` refuses request ids that are not whole numbers, and an instance without the true output
lengths (``RouterInstance``). Every case here ran on the old code with a wrong cost or a numpy
error; the expected costs come from the built-in routers run alone or from replaying the routes.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from servopt.benchmarks import decode_routing as bench
from servopt.core import InvalidInstanceError
from servopt.instances import decode_routing as gen
from servopt.solvers import decode_routing as routing


def _stream(**kw):
    return gen.generate(requests=120, workers=4, seed=0, **kw)


class _Replay(routing.Router):
    """Routes each request to a given worker: the cost of an assignment, by a router that only
    assigns."""

    def __init__(self, worker):
        self.worker = worker

    def choose(self, view, request):
        return int(self.worker[request])


class _RebindsOnStep(routing.LeastKV):
    """The audit's "normalise" bug: rebinds (does not write) a fleet array at step 3."""

    name = "norm_kv"

    def on_step(self, view):
        if view.step == 3:
            view.kv_running = view.kv_running / max(view.kv_running.max(), 1)


def test_rebinding_a_view_array_is_refused_naming_the_router_the_method_and_the_step():
    # old code: the simulator went on with the router's array (13680.8 reported, 13752.1 when the
    # same routes were replayed), status ok
    with pytest.raises(InvalidInstanceError) as info:
        bench.evaluate(_stream(), _RebindsOnStep())
    message = str(info.value)
    assert message.startswith("router _RebindsOnStep ('norm_kv'): its on_step() at step 3 set "
                              "view.kv_running (")
    assert "view.kv_running = view.kv_running / max(view.kv_running.max(), 1)" in message
    assert "read-only" in message


@pytest.mark.parametrize("act, what", [
    (lambda view: setattr(view, "run_generated", view.run_generated + 1), "set view.run_generated"),
    (lambda view: setattr(view, "step", 0), "set view.step"),
    (lambda view: setattr(view, "workers", 2), "set view.workers"),
    (lambda view: setattr(view, "my_note", 1), "set view.my_note"),  # no new attributes either
    (lambda view: delattr(view, "queued"), "deleted view.queued"),
    (lambda view: setattr(view, "assign", lambda i, g: None), "set view.assign"),
])
def test_no_attribute_of_the_view_can_be_set_or_deleted(act, what):
    class Sets(routing.LeastKV):
        name = "sets"

        def choose(self, view, request):
            act(view)
            return super().choose(view, request)

    with pytest.raises(InvalidInstanceError, match=rf"^router Sets \('sets'\): its choose\(\) \(called "
                                                   rf"from its route\(\)\) at step \d+ {what} \("):
        bench.evaluate(_stream(), Sets())


def test_a_router_that_swallows_the_refusal_leaves_the_run_as_least_kv_s():
    # the property the guard is for: whatever a router does to its view, the simulator's state is
    # its own; this one catches the refusal and carries on, and scores what least-KV scores
    class Stubborn(routing.LeastKV):
        tries = 0

        def on_step(self, view):
            try:
                view.kv_running = np.zeros(view.workers, dtype=np.int64)
            except InvalidInstanceError:
                type(self).tries += 1

    inst = _stream()
    out = bench.simulate(inst, Stubborn())
    plain = bench.simulate(inst, "least_kv")
    assert Stubborn.tries == out["metrics"]["steps"] > 0  # refused at every step, then ignored
    assert out["cost"] == plain["cost"]
    assert np.array_equal(out["worker"], plain["worker"])


class _SwapsQueueHeads(routing.JoinShortestQueue):
    """The audit's sticky-routing break: swaps the heads of workers 0 and 1's queues."""

    name = "swap"

    def on_step(self, view):
        q = view.queues
        if q[0] and q[1]:
            q[0][0], q[1][0] = q[1][0], q[0][0]


def test_the_queues_are_out_of_a_router_s_reach():
    # old code: view.queues was the simulator's list of deques: cost 30388.3 reported, 34417.1 when
    # its recorded assignment was replayed; popping one stalled the simulator (bare RuntimeError)
    inst = _stream(slots=4, load=1.5)
    with pytest.raises(InvalidInstanceError) as info:
        bench.evaluate(inst, _SwapsQueueHeads())
    message = str(info.value)
    assert message.startswith("router _SwapsQueueHeads ('swap'): its on_step() at step 0 read "
                              "view.queues (")
    assert "the per-worker queues are the simulator's" in message


@pytest.mark.parametrize("name", ["queues", "_worker_of", "_queued", "_kv_queued", "_routable",
                                  "lock", "_done_outputs", "fleet", "_fleet"])
def test_none_of_the_simulator_s_own_state_is_an_attribute_of_the_view(name):
    # hasattr is how a router would probe: it sees nothing (old code: every one but the last two)
    found = {}

    class Probe(routing.RoundRobin):
        def on_step(self, view):
            found[name] = hasattr(view, name)

    bench.simulate(_stream(), Probe())
    assert found == {name: False}


def test_every_documented_attribute_reads_what_the_simulator_holds():
    # the solvers' FleetView protocol, read at every step with arrivals and checked against the
    # instance and the routes made so far (round robin: request i on worker i mod 4)
    inst = _stream()
    G = inst.workers
    checked = []

    class Reader(routing.RoundRobin):
        def route(self, view, ids):
            assert (view.workers, view.slots, view.kv_capacity) == (G, inst.slots, inst.kv_capacity)
            assert np.array_equal(view.prompt, inst.prompt) and view.predicted is None
            assert isinstance(view.step, int) and isinstance(view.now, float)
            routed = np.flatnonzero(view.worker_of >= 0)
            assert np.array_equal(view.worker_of[routed], routed % G)
            assert view.run_ids.shape == view.run_worker.shape == view.run_generated.shape
            assert np.array_equal(view.run_worker, view.run_ids % G)
            per_worker = np.bincount(view.run_worker, minlength=G)
            assert np.array_equal(view.running, per_worker)
            kv = np.bincount(view.run_worker, weights=inst.prompt[view.run_ids] + view.run_generated,
                             minlength=G)
            assert np.array_equal(view.kv_running, kv)
            done = view.completed_ids()
            assert np.array_equal(view.completed_outputs(), inst.output[done])
            waiting = np.setdiff1d(routed, np.concatenate([view.run_ids, done]))
            assert np.array_equal(view.queued, np.bincount(waiting % G, minlength=G))
            assert np.array_equal(view.kv_queued, np.bincount(waiting % G, weights=inst.prompt[waiting],
                                                              minlength=G))
            checked.append(view.step)
            super().route(view, ids)

    assert bench.simulate(inst, Reader())["cost"] == bench.simulate(inst, "round_robin")["cost"]
    assert len(checked) > 50


def test_the_finished_requests_lengths_are_read_only_too():
    # old code: completed_outputs() was a writable slice of the simulator's record
    class Writes(routing.RoundRobin):
        def on_step(self, view):
            if len(view.completed_outputs()):
                view.completed_outputs()[0] = 1

    with pytest.raises(InvalidInstanceError, match=r"its on_step\(\) wrote into a read-only array"):
        bench.evaluate(_stream(), Writes())


@pytest.mark.parametrize("request_id, shown", [
    (lambda i: float(i), r"request 0.0 \(float\)"),  # old: numpy IndexError
    (lambda i: True if i == 1 else int(i), r"request True \(bool\)"),  # old: "truth value..."
    # numpy scalars as value and dtype, the same under numpy 1.x and 2.x (numpy 1.26's repr
    # was True (bool_), 2.x's np.True_ (bool), against Python's True (bool) above)
    (lambda i: np.bool_(i == 0) if i == 0 else int(i), r"request True \(numpy bool\)"),
    (lambda i: np.float64(i), r"request 0.0 \(numpy float64\)"),
    (lambda i: str(i), r"request '0' \(str\)"),  # old: TypeError comparing str and int
    (lambda i: None, r"request None \(NoneType\)"),
])
def test_a_request_id_that_is_not_a_whole_number_is_refused_in_the_router_s_terms(request_id, shown):
    class Ids(routing.Router):
        def route(self, view, ids):
            for i in ids:
                view.assign(request_id(int(i)), 0)

    with pytest.raises(InvalidInstanceError, match=rf"router assigned {shown} at step \d+; request "
                                                   r"ids are whole numbers"):
        bench.evaluate(_stream(), Ids())


def test_numpy_integer_request_ids_are_accepted():
    # ids straight from the array route() is given (np.int64): the same run as plain ints
    class NumpyIds(routing.Router):
        def route(self, view, ids):
            for i in ids:
                view.assign(i, int(i) % view.workers)

    inst = _stream()
    assert bench.evaluate(inst, NumpyIds()).cost == bench.evaluate(inst, "round_robin").cost


class _Peek(routing.Router):
    """The audit's peek: reads the true output lengths from the instance reset() was given."""

    name = "peek"

    def choose(self, view, request):
        out = self.instance.output
        return int(np.argmin(view.kv_running + view.kv_queued + 0 * out[request]))


def test_the_true_output_lengths_are_not_in_the_router_s_instance():
    # old code: scored ok (the solvers' docstring says true lengths are never shown)
    with pytest.raises(InvalidInstanceError) as info:
        bench.evaluate(_stream(), _Peek())
    message = str(info.value)
    assert message.startswith("router _Peek ('peek'): its choose() (called from its route()) at "
                              "step 0 read instance.output (")
    assert "routers are not shown the true output lengths" in message


@pytest.mark.parametrize("name", ["output", "output_tokens", "requests"])
def test_reading_the_outputs_in_reset_is_refused(name):
    class Reads(routing.LeastKV):
        name = "reads"

        def reset(self, instance, seed=0):
            super().reset(instance, seed)
            getattr(instance, name)

    with pytest.raises(InvalidInstanceError, match=rf"^router Reads \('reads'\): its reset\(\) read "
                                                   rf"instance.{name} \("):
        bench.evaluate(_stream(), Reads())


def test_the_router_s_instance_holds_the_visible_data_read_only():
    inst = gen.generate(requests=60, workers=3, seed=2, prediction_error=0.5)
    seen = {}

    class Keeps(routing.LeastKV):
        def reset(self, instance, seed=0):
            super().reset(instance, seed)
            for name in ("workers", "slots", "kv_capacity", "step_ms", "ms_per_kv_token",
                         "prefill_ms_per_token", "arrival_unit", "n_requests", "name"):
                seen[name] = getattr(instance, name)
            for name in ("arrival", "prompt", "predicted"):
                seen[name] = getattr(instance, name)
                assert not seen[name].flags.writeable
            try:
                instance.workers = 1
            except InvalidInstanceError as exc:
                seen["refused"] = str(exc)

    bench.simulate(inst, Keeps())
    for name in ("workers", "slots", "kv_capacity", "step_ms", "ms_per_kv_token",
                 "prefill_ms_per_token", "arrival_unit", "n_requests", "name"):
        assert seen[name] == getattr(inst, name), name
    for name in ("arrival", "prompt", "predicted"):
        assert np.array_equal(seen[name], getattr(inst, name)), name
    assert seen["refused"] == "set instance.workers"


def test_an_unknown_attribute_of_the_router_s_instance_names_what_it_holds():
    class Summary(routing.LeastKV):
        def reset(self, instance, seed=0):
            super().reset(instance, seed)
            instance.summary()

    with pytest.raises(InvalidInstanceError, match=r"its reset\(\) read instance.summary \(.*which a "
                                                   r"router is not shown: the instance holds arrival, "):
        bench.evaluate(_stream(), Summary())


@pytest.mark.parametrize("method", sorted(set(routing.POLICIES) - {"epoch_ip"}))
def test_every_built_in_router_runs_on_the_guarded_view_and_instance(method):
    # and its routes, replayed by a router that only assigns, cost what it was scored
    inst = gen.generate(requests=150, workers=4, seed=1, prediction_error=0.5)
    out = bench.simulate(inst, method)
    assert out["cost"] == bench.simulate(inst, _Replay(out["worker"]))["cost"]


def test_a_router_that_ran_can_still_be_copied_and_pickled():
    # its instance is a RouterInstance, whose __setattr__ refuses: copies and pickles go around it
    inst = gen.generate(requests=60, workers=3, seed=2, prediction_error=0.5)
    router = routing.BidPrice()
    first = bench.simulate(inst, router)["cost"]
    held = router.instance
    assert copy.copy(held) is held and copy.deepcopy(held) is held
    back = pickle.loads(pickle.dumps(router)).instance
    assert type(back) is bench.RouterInstance
    for name in bench.RouterInstance.__slots__:
        assert np.array_equal(getattr(back, name), getattr(held, name)), name
    assert not back.prompt.flags.writeable and not back.predicted.flags.writeable
    assert bench.simulate(inst, pickle.loads(pickle.dumps(router)))["cost"] == first


# --- review R13: the write flag numpy lets a holder set back -------------------------------------
_SHOWN_ARRAYS = ("running", "queued", "kv_running", "kv_queued", "prompt", "predicted", "worker_of",
                 "run_ids", "run_worker", "run_generated")


def _shown(view):
    arrays = {name: getattr(view, name) for name in _SHOWN_ARRAYS}
    arrays["completed_outputs()"] = view.completed_outputs()
    arrays["completed_ids()"] = view.completed_ids()
    return arrays


def _tamper(array) -> int:
    """Every write numpy lets the holder of ``array`` make: set the write flag of the array, then
    of each array below it (``.base``), and halve what it holds; the number of arrays written."""
    written = 0
    while isinstance(array, np.ndarray):
        try:
            array.flags.writeable = True
        except ValueError:  # numpy refuses while a base is read-only: try the base
            pass
        else:
            if array.size:
                array[...] = array // 2 if array.dtype.kind in "iu" else array / 2
                written += 1
        array = array.base
    return written


class _Tampers(routing.LeastKV):
    """Least-KV that writes into everything it was shown: the instance's arrays in reset, at step
    3 that step's arrays, at step 6 those it kept from step 1."""

    name = "tampers"

    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        self.kept, self.written = None, 0
        for name in ("arrival", "prompt", "predicted"):
            self.written += _tamper(getattr(instance, name))

    def on_step(self, view):
        if view.step == 1:
            self.kept = _shown(view)
        if view.step in (3, 6):
            for array in (_shown(view) if view.step == 3 else self.kept).values():
                self.written += _tamper(array)


def test_a_router_that_resets_the_write_flag_is_refused_by_name():
    # review R13 (byp2.py): the view's arrays were the fleet's own, locked by their write flag,
    # which the holder can set back: `a = view.kv_running; a.flags.writeable = True; a //= 2` at
    # step 3 reported 13834.32 while the same routes replayed cost 13877.99, status ok
    class Resets(routing.LeastKV):
        name = "reset_kv"

        def on_step(self, view):
            if view.step == 3:
                a = view.kv_running
                a.flags.writeable = True
                a //= 2

    with pytest.raises(InvalidInstanceError) as info:
        bench.evaluate(gen.generate(requests=200, workers=4, seed=0), Resets())
    message = str(info.value)
    assert message.startswith("router Resets ('reset_kv'): its on_step() made writeable a read-only "
                              "array of the view or instance (")
    assert "a.flags.writeable = True" in message


def test_whatever_a_router_writes_into_what_it_was_shown_the_run_is_least_kv_s():
    # the arrays a router is shown are copies (or records the simulator never reads): unlocking
    # them or their bases, now or later, and writing changes nothing of the run, nor the
    # instance. Old code: the view's arrays were the fleet's (their write flag can be set back),
    # the instance's were views of its frame: the run and the caller's instance changed
    inst = gen.generate(requests=200, workers=4, seed=0, prediction_error=0.5)
    before = {name: getattr(inst, name).copy() for name in ("arrival", "prompt", "output",
                                                           "predicted")}
    router = _Tampers()
    out = bench.simulate(inst, router)
    plain = bench.simulate(inst, "least_kv")
    assert router.written > 0  # (what it could write is its own: worker_of's and completed_*()'s)
    assert out["cost"] == plain["cost"]
    assert np.array_equal(out["worker"], plain["worker"])
    timed = ("router_us",)  # (the router's own time: its writes take some)
    assert {k: v for k, v in out["metrics"].items() if k not in timed} == {
        k: v for k, v in plain["metrics"].items() if k not in timed}
    for name, values in before.items():
        assert np.array_equal(getattr(inst, name), values), name
    assert bench.simulate(inst, _Replay(out["worker"]))["cost"] == out["cost"]


def test_the_shown_arrays_and_their_bases_cannot_be_made_writeable():
    # numpy refuses to set the write flag of each (and of each base that is an array, except the
    # records of worker_of and the finished requests, which the simulator writes and never reads)
    refused = {}

    class Probe(routing.RoundRobin):
        def on_step(self, view):
            if view.step != 5:
                return
            for name, array in _shown(view).items():
                chain, base = [], array
                while isinstance(base, np.ndarray):
                    try:
                        base.flags.writeable = True
                        chain.append("writeable")
                    except ValueError:
                        chain.append("refused")
                    base = base.base
                refused[name] = (chain, type(base).__name__)

    bench.simulate(gen.generate(requests=120, workers=4, seed=0, prediction_error=0.5), Probe())
    for name in ("running", "queued", "kv_running", "kv_queued", "prompt", "predicted", "run_ids",
                 "run_worker", "run_generated"):
        assert refused[name] == (["refused"], "bytes"), name  # memory no one can write
    for name in ("worker_of", "completed_outputs()", "completed_ids()"):
        assert refused[name][0][0] == "refused", name


def test_a_kept_copy_stays_as_it_was_and_assign_shows_in_the_next_read():
    # a router reads copies made for each call; within route() the counts include what it routed
    seen = []

    class Keeps(routing.Router):
        def route(self, view, ids):
            for i in ids:
                first = view.kv_queued
                view.assign(int(i), 0)
                seen.append((first.copy(), view.kv_queued.copy(), int(view.prompt[i]),
                             int(view.worker_of[i])))

    bench.simulate(_stream(), Keeps())
    for first, after, prompt, worker in seen:
        assert after[0] == first[0] + prompt and np.array_equal(after[1:], first[1:])
        assert worker == 0


class _Snap(routing.LeastKV):
    """Keeps copy.copy(view) (review R13's pk.py) and what the view showed at step 10."""

    name = "snap"

    def on_step(self, view):
        if view.step == 10:
            self.at10 = copy.copy(view)
            self.values = {name: np.array(a) for name, a in _shown(view).items()}


def test_a_router_that_kept_its_view_can_be_pickled_and_deep_copied():
    # review R13 (pk.py): the view's class is made per simulation, so pickle refused a router
    # holding copy.copy(view); pickled or deep-copied, a view is a FrozenView: what it shows then
    inst = gen.generate(requests=120, workers=4, seed=0, prediction_error=0.5)
    router = _Snap()
    bench.simulate(inst, router)
    assert copy.copy(router.at10) is router.at10
    for back in (pickle.loads(pickle.dumps(router)).at10, copy.deepcopy(router).at10):
        assert type(back) is bench.FrozenView
        assert back.step > 10  # copy.copy kept the live view: pickled at the run's end
        record = _shown(back)
        assert set(record) == set(router.values)
        for name in ("prompt", "predicted"):
            assert np.array_equal(record[name], router.values[name])
        assert len(record["completed_ids()"]) == inst.n_requests  # (the view at the end)
        assert np.array_equal(np.sort(record["completed_ids()"]), np.arange(inst.n_requests))
        with pytest.raises(InvalidInstanceError, match="routes nothing"):
            back.assign(0, 0)
        with pytest.raises(InvalidInstanceError):
            back.kv_running = None
