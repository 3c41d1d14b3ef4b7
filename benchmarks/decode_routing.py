"""Decode-step simulator with the barrier: the independent evaluator of decode routers.

Each decode step (in this order):

1. requests that have arrived (``arrival_s <= now``; ``now`` is the clock in seconds, or the
   step number when ``arrival_unit == "step"``) are routed, in arrival order, by the router;
   each joins its worker's FIFO queue and never moves (sticky);
2. a worker whose running requests would need more than K KV tokens this step
   (``sum (s + j + 1) > K``, j = tokens generated so far) preempts its most recently admitted
   request back to the head of its queue; it keeps the j tokens it generated, whose KV is
   recomputed with its prompt when it is admitted again (vLLM's recompute preemption);
3. each worker admits from the head of its queue (FCFS, head-of-line blocking) while it has a
   free slot and ``sum (s + j + 1) + s_i + j_i + 1 <= K`` (j_i > 0 for a preempted request);
4. every running request generates one token. Worker g's work is ``W_g = c1 L_g + p P_g`` ms,
   with L_g = sum (s + j) its resident KV tokens and P_g the tokens it prefilled this step
   (s_i + j_i of each request it admitted); the step takes ``c0 + max_g W_g`` ms (the barrier);
   worker g idles ``max W - W_g``;
5. requests with j = output_tokens finish at the end of the step.

When no request is running or queued the clock jumps to the next arrival (no step is run).

The clock in seconds counts from the first arrival (a compensated sum of step times, as precise at
any epoch; times are reported in the instance's frame), and an arrival less than ``ARRIVAL_TOL``
x c0 (x c1 when c0 = 0) after it counts as arrived, a share of a step, so a run is the same in
any time unit (with the step clock: ``STEP_ARRIVAL_TOL`` of a step). Routers' own tie tolerances
are theirs (the bid-price routers' has a floor of 1e-9 ms, so in units of 2^-20 ms they can
choose differently).

Metrics are measured in steady state, over the steps that start inside the measurement window
``[arrival of request floor(warmup * n), last arrival]`` (``warmup`` = 0.2 by default): the
warm-up from an empty fleet and the drain after the last arrival, when the fleet is not at the
offered load and there is nothing left to route, are left out (the drain of a few long requests
can be most of the steps of a run). When all requests arrive at once, or the window holds no
step, every step is measured. Over the measured steps:
``idle_fraction`` (mean over steps of the barrier idle fraction
``sum_g (max W - W_g) / (G max W)``), ``imbalance`` (mean over steps of ``(max W - mean W) /
(c0 + max W)``, the share of the step's wall time spent waiting at the barrier: what a perfect
balance could save), ``throughput_tok_s`` (tokens generated / time of those steps),
``queue_mean`` (requests waiting in worker queues, mean over steps), ``step_ms_mean``; over the
requests that arrive inside the window: ``tpot_mean_ms`` / ``tpot_p99_ms`` (time per output token
after the first, over requests with more than one; NaN when there is none), ``e2e_mean_s`` /
``e2e_p99_s`` (finish - arrival; in step-clock mode from the step that routed the request).
With the step clock, a fractional arrival is routed at the next whole step, and the window runs
from ``ceil`` of its first arrival to ``ceil`` of the last. Over the whole run:
``idle_fraction_run`` (sum_k sum_g (max W - W_g) / sum_k G max W over every step),
``completed``, ``preemptions``, ``router_us`` (router time per request, microseconds),
``steps``, ``window_steps``. ``cost`` is the total step time of the whole run in ms (sum over
steps of ``c0 + max W``), the hindsight model's objective.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from servopt.benchmarks.harness import Bound, OptionError, Outcome, checked_keywords, refusing, written_at
from servopt.core import InvalidInstanceError
from servopt.instances.decode_routing import Instance
from servopt.models import decode_routing as model
from servopt.solvers import decode_routing as routing

SENSE = "min"
COST = "total decode step time of the run (ms)"
# an arrival within this share of c0 (of c1 when c0 = 0) after the clock in seconds, or of a step
# with the step clock, is routed at it: float noise of the summed step times
ARRIVAL_TOL = 1e-7
STEP_ARRIVAL_TOL = 1e-9
DEFAULT_METHODS = ("round_robin", "random", "jsq", "least_kv", "p2c_kv", "least_outstanding",
                   "least_kv_sorted", "bid_price", "bid_price_lp", "bid_price_argmin")
FULL_METHODS = tuple(m for m in DEFAULT_METHODS if m != "bid_price_argmin")


def _shown(value: Any) -> str:
    """A router's id in a message, as its value and type: a numpy scalar as its value and dtype,
    since its repr and type name differ between numpy 1.x and 2.x (True / np.True_, bool_ / bool,
    5 / np.int64(5))."""
    if isinstance(value, np.generic):
        return f"{value.item()!r} (numpy {value.dtype.name})"
    return f"{value!r} ({type(value).__name__})"


class Fleet:
    """The simulator's fleet state. Routers are shown it through :class:`RouterView`, never this
    object (``servopt.solvers.decode_routing`` documents what the view holds): the view hands out
    read-only copies (:func:`_snapshot`), and the arrays it shows live (``worker_of``, the finished
    requests' record) are the router's own copies, which the simulator writes and never reads."""

    def __init__(self, instance: Instance) -> None:
        n, G = instance.n_requests, instance.workers
        self.workers, self.slots, self.kv_capacity = G, instance.slots, instance.kv_capacity
        self.prompt = instance.prompt
        self.predicted = instance.predicted
        self.step, self.now = 0, 0.0
        self.worker_of = np.full(n, -1, dtype=np.int64)
        self.queues: list[deque[int]] = [deque() for _ in range(G)]
        self.running = np.zeros(G, dtype=np.int64)
        self.queued = np.zeros(G, dtype=np.int64)
        self.kv_running = np.zeros(G, dtype=np.int64)
        self.kv_queued = np.zeros(G, dtype=np.int64)
        self.run_ids = np.zeros(0, dtype=np.int64)
        self.run_worker = np.zeros(0, dtype=np.int64)
        self.run_generated = np.zeros(0, dtype=np.int64)
        self._n_done = 0
        self._routable = (0, 0)
        # this router call's read-only copies of the arrays above, made when first read
        # (:func:`router_view`); cleared by :meth:`new_call` and, for what it changes, by assign
        self.shown: dict[str, np.ndarray] = {}
        # shown live, written here, never read here: the router's copy of worker_of and the
        # record of finished requests. The owners are read-only (so are the views handed out, and
        # numpy refuses to make those writeable); the simulator writes through its aliases. A
        # router that unlocks an owner by hand changes only what it is shown.
        self.worker_of_shown = np.full(n, -1, dtype=np.int64)
        self.done_outputs = np.zeros(n, dtype=np.int64)
        self.done_ids = np.zeros(n, dtype=np.int64)
        self._worker_of_w, self._done_outputs_w, self._done_ids_w = (
            self.worker_of_shown.view(), self.done_outputs.view(), self.done_ids.view())
        for owner in (self.worker_of_shown, self.done_outputs, self.done_ids):
            owner.flags.writeable = False

    def new_call(self) -> None:
        """Before each router call: the copies shown in the last one are the router's to keep
        (they stay as they were); the next reads copy the fleet as it is now."""
        self.shown.clear()

    def assign(self, request: int, worker: int) -> None:
        """Route ``request`` to ``worker`` (once; it stays there)."""
        if isinstance(request, bool) or not isinstance(request, int | np.integer):
            raise InvalidInstanceError(
                f"router assigned request {_shown(request)} at step "
                f"{self.step}; request ids are whole numbers, the ids route() was given "
                "(view.assign(int(i), g))")
        lo, hi = self._routable
        if not lo <= request < hi:
            raise InvalidInstanceError(f"router assigned request {request}, which is not waiting "
                                       f"to be routed at step {self.step}")
        if self.worker_of[request] >= 0:
            raise InvalidInstanceError(f"router assigned request {request} twice (to worker "
                                       f"{self.worker_of[request]} and {worker}); routing is sticky")
        if isinstance(worker, bool) or not (isinstance(worker, int | np.integer)
                                            and 0 <= worker < self.workers):
            raise InvalidInstanceError(f"router chose worker {_shown(worker)}; workers are "
                                       f"0..{self.workers - 1} (whole numbers)")
        self.worker_of[request] = worker
        self._worker_of_w[request] = worker
        self.queues[worker].append(request)
        self.queued[worker] += 1
        self.kv_queued[worker] += self.prompt[request]
        shown = self.shown
        if shown:  # the counts a router reads next include this request
            shown.pop("queued", None)
            shown.pop("kv_queued", None)

    def finished(self, outputs: np.ndarray, ids: np.ndarray) -> None:
        """Record requests ``ids`` (output lengths ``outputs``) as finished, in this order."""
        m = len(ids)
        self._done_outputs_w[self._n_done:self._n_done + m] = outputs
        self._done_ids_w[self._n_done:self._n_done + m] = ids
        self._n_done += m

    def completed_outputs(self) -> np.ndarray:
        return self.done_outputs[: self._n_done]

    def completed_ids(self) -> np.ndarray:
        return self.done_ids[: self._n_done]


class _Refused(InvalidInstanceError):
    """A router set or deleted an attribute of its view or instance, or read the true output
    lengths; :func:`_ask` names the router, its method, the step and the line."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class RouterView:
    """The fleet as a router sees it (``servopt.solvers.decode_routing.FleetView``), made for each
    simulation by :func:`router_view`: read-only properties and ``assign``. Its attributes cannot
    be set, added or deleted (a rebound ``view.kv_running`` was the simulator's own: the run went
    on with the router's array), and it holds the simulator's state under no attribute (not the
    per-worker queues, nor the arrays the simulator works on). Its arrays are copies made for the
    router (:func:`_snapshot`; ``worker_of`` and ``completed_*()`` are read-only views of records
    the simulator writes and never reads), so no write into one, even after resetting numpy's
    write flag (review R13: ``a = view.kv_running; a.flags.writeable = True; a //= 2`` changed the
    fleet), can change the run. Python cannot stop a router that digs on purpose (through the
    closures of this class's properties, ``sys._getframe`` or raw memory addresses): the view
    guards against mistakes and shortcuts, not against code written to reach the simulator."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise _Refused(f"set view.{name}")

    def __delattr__(self, name: str) -> None:
        raise _Refused(f"deleted view.{name}")

    def __copy__(self) -> RouterView:  # nothing of it can change: a copy is the view itself
        return self

    def __deepcopy__(self, memo: dict) -> FrozenView:
        return self.frozen()

    def __reduce__(self) -> tuple:  # its class is made per simulation: pickled as a FrozenView
        return self.frozen().__reduce__()

    def frozen(self) -> FrozenView:
        """What the view shows now, as a :class:`FrozenView` (a record; it routes nothing)."""
        return FrozenView({name: getattr(self, name) for name in FrozenView.FIELDS},
                          self.completed_outputs(), self.completed_ids())


def _snapshot(array: np.ndarray) -> np.ndarray:
    """A read-only copy of a 1-D array whose memory is an immutable ``bytes`` object: numpy
    refuses to make it (or its base) writeable, and it shares nothing with ``array``."""
    return np.frombuffer(array.tobytes(), dtype=array.dtype)


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def router_view(fleet: Fleet) -> RouterView:
    """The view of ``fleet`` handed to a router: reads give copies of the fleet's current arrays
    (the simulator replaces ``run_ids``, ``run_worker`` and ``run_generated`` as requests join
    and leave), made once per router call (``queued`` and ``kv_queued`` again after each
    ``assign``); the fleet itself is reached only by the view's own methods."""
    shown = fleet.shown

    def snapshot(name: str, doc: str) -> property:
        def get(self: RouterView) -> np.ndarray:
            try:
                return shown[name]
            except KeyError:
                array = shown[name] = _snapshot(getattr(fleet, name))
                return array
        return property(get, doc=doc)

    class View(RouterView):
        __slots__ = ()
        workers, slots, kv_capacity = fleet.workers, fleet.slots, fleet.kv_capacity
        prompt = _snapshot(fleet.prompt)
        predicted = None if fleet.predicted is None else _snapshot(fleet.predicted)
        # live: assign writes it (the router's copy; the simulator routes by its own)
        worker_of = _read_only(fleet.worker_of_shown)
        step = property(lambda self: fleet.step, doc="decode step number")
        now = property(lambda self: fleet.now, doc="clock (s, or the step with the step clock)")
        running = snapshot("running", "running requests per worker")
        queued = snapshot("queued", "queued requests per worker")
        kv_running = snapshot("kv_running", "KV tokens of the running requests per worker")
        kv_queued = snapshot("kv_queued", "prompt tokens of the queued requests per worker")
        run_ids = snapshot("run_ids", "running requests (admission order)")
        run_worker = snapshot("run_worker", "worker of each running request")
        run_generated = snapshot("run_generated", "tokens generated by each running request")

        def assign(self, request: int, worker: int) -> None:
            """Route ``request`` to ``worker`` (once; it stays there)."""
            fleet.assign(request, worker)

        def completed_outputs(self) -> np.ndarray:
            """Output lengths of the finished requests (finish order)."""
            return fleet.completed_outputs()

        def completed_ids(self) -> np.ndarray:
            """Ids of the finished requests (finish order)."""
            return fleet.completed_ids()

    View.__name__ = View.__qualname__ = "RouterView"
    return View()


class FrozenView:
    """A record of what a :class:`RouterView` showed at one step (what pickling or deep-copying a
    view gives: the live view's class is made per simulation). Read-only like the view; its
    ``assign`` refuses (it routes nothing)."""

    FIELDS = ("workers", "slots", "kv_capacity", "step", "now", "running", "queued", "kv_running",
              "kv_queued", "prompt", "predicted", "worker_of", "run_ids", "run_worker",
              "run_generated")
    __slots__ = (*FIELDS, "_outputs", "_ids")

    def __init__(self, fields: dict[str, Any], outputs: np.ndarray, ids: np.ndarray) -> None:
        put = super().__setattr__
        for name in self.FIELDS:
            value = fields[name]
            put(name, _snapshot(value) if isinstance(value, np.ndarray) else value)
        put("_outputs", _snapshot(outputs))  # (the view's completed_*(): methods, kept here)
        put("_ids", _snapshot(ids))

    def assign(self, request: int, worker: int) -> None:
        raise InvalidInstanceError(f"a FrozenView (a record of step {self.step}) routes nothing: "
                                   "route with the view the simulator passes")

    def completed_outputs(self) -> np.ndarray:
        return self._outputs

    def completed_ids(self) -> np.ndarray:
        return self._ids

    def __setattr__(self, name: str, value: Any) -> None:
        raise _Refused(f"set view.{name}")

    def __delattr__(self, name: str) -> None:
        raise _Refused(f"deleted view.{name}")

    def __reduce__(self) -> tuple:
        return (_restore_frozen_view, ({name: getattr(self, name) for name in self.FIELDS},
                                       self._outputs, self._ids))


def _restore_frozen_view(fields: dict[str, Any], outputs: np.ndarray,
                         ids: np.ndarray) -> FrozenView:
    """A pickled :class:`FrozenView` back."""
    return FrozenView(fields, outputs, ids)


VIEW_SHOWN = ("workers", "slots", "kv_capacity", "step", "now", "running", "queued", "kv_running",
              "kv_queued", "prompt", "predicted", "worker_of", "run_ids", "run_worker",
              "run_generated", "assign()", "completed_outputs()", "completed_ids()")


class RouterInstance:
    """The stream as a router's ``reset`` sees it: the fleet's constants and the visible request
    data (``arrival``, ``prompt``, ``predicted``; read-only), not the true output lengths
    (``output``, and the request frame that holds them, are refused by name). Its attributes
    cannot be set."""

    __slots__ = ("arrival", "arrival_unit", "block_ids", "kv_capacity", "ms_per_kv_token",
                 "n_requests", "name", "predicted", "prefill_ms_per_token", "prompt", "slots",
                 "step_ms", "workers")
    SCALARS = ("arrival_unit", "kv_capacity", "ms_per_kv_token", "n_requests", "name",
               "prefill_ms_per_token", "slots", "step_ms", "workers")
    HIDDEN = ("output", "output_tokens", "requests")
    # (the slots' types: what :class:`servopt.solvers.decode_routing.InstanceView` promises)
    arrival: np.ndarray
    arrival_unit: str
    block_ids: tuple[tuple[int, ...], ...] | None
    kv_capacity: int
    ms_per_kv_token: float
    n_requests: int
    name: str
    predicted: np.ndarray | None
    prefill_ms_per_token: float
    prompt: np.ndarray
    slots: int
    step_ms: float
    workers: int

    def __init__(self, instance: Instance) -> None:
        put = super().__setattr__
        for name in self.SCALARS:
            put(name, getattr(instance, name))
        predicted = instance.predicted
        # copies (:func:`_snapshot`): the instance's arrays are read-only views of its frame, whose
        # block numpy lets any holder of the view's .base make writeable again
        put("arrival", _snapshot(instance.arrival))
        put("prompt", _snapshot(instance.prompt))
        put("predicted", None if predicted is None else _snapshot(predicted))
        ids = instance.block_ids
        put("block_ids", None if ids is None else tuple(tuple(b) for b in ids))

    def __getattr__(self, name: str) -> Any:  # only for names not found above
        if name in self.HIDDEN:
            raise _Refused(f"read instance.{name}")
        raise AttributeError(f"a router's instance has no attribute {name!r} (it has "
                             f"{', '.join(self.__slots__)})")

    def __setattr__(self, name: str, value: Any) -> None:
        raise _Refused(f"set instance.{name}")

    def __delattr__(self, name: str) -> None:
        raise _Refused(f"deleted instance.{name}")

    def __copy__(self) -> RouterInstance:  # immutable: a copy is the object itself
        return self

    def __deepcopy__(self, memo: dict) -> RouterInstance:
        return self

    def __reduce__(self) -> tuple:  # pickled by its fields (its __setattr__ refuses the default)
        return _restore_router_instance, ({name: getattr(self, name) for name in self.__slots__},)


def _restore_router_instance(fields: dict[str, Any]) -> RouterInstance:
    """A pickled :class:`RouterInstance` back (its arrays read-only again)."""
    new = object.__new__(RouterInstance)
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            value = _snapshot(value)
        object.__setattr__(new, name, value)
    return new


def _label(router: routing.Router) -> str:
    label = type(router).__name__
    name = getattr(router, "name", None)
    if isinstance(name, str) and name not in ("router", label):
        label += f" ({name!r})"
    return label


def _where(router: routing.Router, method: str, exc: BaseException) -> str:
    """The router's method that raised ``exc``: ``method``, or the innermost of the router's own
    methods below it (``choose() (called from its route())``)."""
    where = method
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame of the router's own methods
        if tb.tb_frame.f_locals.get("self") is router:
            where = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return f"{where}() (called from its {method}())" if where != method else f"{where}()"


def _line_outside_here(exc: BaseException) -> str:
    """`` (file, line N: code)`` of the deepest frame of ``exc`` outside this module."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename != __file__:
            code = (frame.line or "").strip()
            return f" ({frame.filename}, line {frame.lineno}{': ' + code if code else ''})"
    return ""


def _ask(router: routing.Router, method: str, *args: Any, step: int | None = None) -> None:
    """Call ``router.<method>(*args)``; a write into a read-only array, or an attribute of the view
    or instance set, deleted or (the true output lengths) read, gets a message saying so.

    The view's arrays (and the instance's) are read-only copies, so an in-place edit fails with
    numpy's bare ``ValueError``; the message names the router's method that wrote
    (``choose`` when the base ``route`` called it, or whichever of its own methods did) and the
    file and line of the write (:func:`~servopt.benchmarks.harness.written_at`). ``step``: the
    decode step, named in the message (None for ``reset``).
    """
    try:
        getattr(router, method)(*args)
    except _Refused as exc:
        at = "" if step is None else f" at step {step}"
        if exc.what.startswith("read"):
            why = ("routers are not shown the true output lengths (the request frame holds them): "
                   "finished requests' lengths are in view.completed_outputs(), predictions in "
                   "instance.predicted / view.predicted")
        else:
            thing = exc.what.split()[-1].split(".")[0]
            why = (f"the {thing} is the simulator's and read-only (route with view.assign(i, g)); "
                   "keep the router's own state on the router (self.load = "
                   "np.array(view.kv_running))")
        raise InvalidInstanceError(
            f"router {_label(router)}: its {_where(router, method, exc)}{at} {exc.what}"
            f"{_line_outside_here(exc)}: {why}") from None
    except AttributeError as exc:
        held = getattr(exc, "obj", None)
        if not isinstance(held, RouterView | RouterInstance):
            raise
        at = "" if step is None else f" at step {step}"
        kind = "view" if isinstance(held, RouterView) else "instance"
        shown = ", ".join(VIEW_SHOWN if kind == "view" else RouterInstance.__slots__)
        raise InvalidInstanceError(
            f"router {_label(router)}: its {_where(router, method, exc)}{at} read {kind}."
            f"{exc.name}{_line_outside_here(exc)}, which a router is not shown: the {kind} holds "
            f"{shown}"
            + (" (the per-worker queues are the simulator's; route with view.assign(i, g))"
               if kind == "view" else "")) from None
    except ValueError as exc:
        unlocked = "WRITEABLE flag to True" in str(exc)  # numpy refused to make one writeable
        if "read-only" not in str(exc) and not unlocked:
            raise
        line, _ = written_at(exc, ())
        did = "made writeable a read-only" if unlocked else "wrote into a read-only"
        raise InvalidInstanceError(
            f"router {_label(router)}: its {_where(router, method, exc)} {did} "
            f"array of the "
            f"{'instance' if method == 'reset' else 'view or instance'}{line} ({exc}): the "
            "simulator's arrays (view.prompt, running, queued, kv_running, kv_queued, worker_of, "
            "run_ids, run_worker, run_generated, predicted) are read-only while a router runs; "
            "copy one first (np.array(view.kv_running)) to change it, and route with "
            "view.assign(i, g)"
        ) from exc


def simulate(instance: Instance, router: routing.Router | str, *, seed: int = 0,
             warmup: float = 0.2) -> dict[str, Any]:
    """Run the decode-step simulation; return metrics, per-request times and per-step series.

    router : a router object, or a ``POLICIES`` name or factory (a fresh router is made, as
        :func:`evaluate` does; an unknown name is refused with the list of names).
    warmup : share of the requests whose arrival period is left out of the steady-state metrics.
    """
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(f"simulate needs a decode_routing Instance, got {type(instance).__name__}")
    # (seed -1: numpy's bare "expected non-negative integer", after the router's reset ran;
    # warmup False ran as 0): refused before the router is made, as evaluate refuses them
    check_options(seed=seed, warmup=warmup)
    router = routing.make_router(router)
    n, G = instance.n_requests, instance.workers
    B, K = instance.slots, instance.kv_capacity
    c0, c1, p = instance.step_ms, instance.ms_per_kv_token, instance.prefill_ms_per_token
    arrival, prompt, output = instance.arrival, instance.prompt, instance.output
    step_clock = instance.arrival_unit == "step"
    # in seconds the clock runs from the first arrival, so the summed step times keep the
    # precision of a run's length at any epoch (from 1e11 s, jsq's cost moved 0.6%); times are
    # reported in the instance's frame. The generators and trace readers start at 0: no shift
    origin = 0.0 if step_clock else float(arrival[0])
    if origin != 0.0:
        arrival = arrival - origin
    # an arrival this close after the clock has arrived (float noise of the summed step times):
    # a share of a step, so the same in any time unit (1e-9 s at c0 = 10 ms, as it was)
    tol = (ARRIVAL_TOL * (c0 if c0 > 0 else c1) / 1000.0 if not step_clock
           else STEP_ARRIVAL_TOL)
    fleet = Fleet(instance)
    view = router_view(fleet)  # the router never holds the fleet (its queues, its attributes)
    # nor the instance: the true output lengths are the simulator's alone
    _ask(router, "reset", RouterInstance(instance), seed)
    route_s = 0.0

    arrive_t = np.full(n, np.nan)
    first_t = np.full(n, np.nan)
    finish_t = np.full(n, np.nan)
    run_out = np.zeros(0, dtype=np.int64)
    run_prompt = np.zeros(0, dtype=np.int64)
    steps_t, steps_ms, steps_idle, steps_compute, steps_queue = [], [], [], [], []
    steps_slots, steps_kv, steps_mean, steps_tokens, steps_k = [], [], [], [], []
    t, k, nxt, done = 0.0, 0, 0, 0
    # the clock t = base + (the step times since base, in ms) / 1000, their sum compensated
    # (Neumaier): a plain running sum of seconds drifted past the arrival tolerance after ~1e5
    # busy steps (0.1 ms steps: 5.7e-7 of a step short at 30 s), and an arrival exactly at a
    # step's start joined a step late
    base, ms_sum, ms_comp = 0.0, 0.0, 0.0
    preemptions = 0
    kept = np.zeros(n, dtype=np.int64)  # tokens a preempted request generated before (recomputed)
    last_arrival = float(arrival[-1])
    while done < n:
        if len(fleet.run_ids) == 0 and fleet.queued.sum() == 0:
            if step_clock:
                k = max(k, math.ceil(arrival[nxt] - tol))
            else:
                if float(arrival[nxt]) > t:  # idle until then: the sum starts again there
                    t = base = float(arrival[nxt])
                    ms_sum = ms_comp = 0.0
        now = float(k) if step_clock else t
        fleet.step, fleet.now = k, (now + origin if origin != 0.0 else now)
        start = time.perf_counter()
        fleet.new_call()
        _ask(router, "on_step", view, step=k)
        hi = int(np.searchsorted(arrival, now + tol, side="right"))
        if hi > nxt:
            ids = np.arange(nxt, hi)
            arrive_t[ids] = t if step_clock else arrival[ids]
            fleet._routable = (nxt, hi)
            fleet.new_call()
            _ask(router, "route", view, ids, step=k)
            fleet._routable = (hi, hi)
            missing = ids[fleet.worker_of[ids] < 0]
            if len(missing):
                raise InvalidInstanceError(f"router {getattr(router, 'name', router)!r} left "
                                           f"request(s) {missing[:5].tolist()} unrouted")
            nxt = hi
        route_s += time.perf_counter() - start

        # 2. preemption where the KV would overflow this step (rare: loop over those workers)
        over = np.flatnonzero(fleet.kv_running + fleet.running > K)
        if len(over):
            keep = np.ones(len(fleet.run_ids), dtype=bool)
            for g in over:
                pos = np.flatnonzero(fleet.run_worker == g)[::-1]  # newest first
                for q in pos:
                    if fleet.kv_running[g] + fleet.running[g] <= K:
                        break
                    i = int(fleet.run_ids[q])
                    keep[q] = False
                    fleet.kv_running[g] -= prompt[i] + fleet.run_generated[q]
                    kept[i] = fleet.run_generated[q]
                    fleet.running[g] -= 1
                    fleet.queues[g].appendleft(i)
                    fleet.queued[g] += 1
                    fleet.kv_queued[g] += prompt[i]
                    preemptions += 1
            fleet.run_ids, fleet.run_worker = fleet.run_ids[keep], fleet.run_worker[keep]
            fleet.run_generated, run_out = fleet.run_generated[keep], run_out[keep]
            run_prompt = run_prompt[keep]

        # 3. admission, FCFS per worker
        admit: list[int] = []
        admit_w: list[int] = []
        for g in np.flatnonzero((fleet.queued > 0) & (fleet.running < B)):
            queue = fleet.queues[g]
            while queue and fleet.running[g] < B:
                i = queue[0]
                if fleet.kv_running[g] + fleet.running[g] + prompt[i] + kept[i] + 1 > K:
                    break
                queue.popleft()
                fleet.queued[g] -= 1
                fleet.kv_queued[g] -= prompt[i]
                fleet.running[g] += 1
                fleet.kv_running[g] += prompt[i] + kept[i]
                admit.append(i)
                admit_w.append(int(g))
        prefill = np.zeros(G)
        if admit:
            a = np.asarray(admit, dtype=np.int64)
            aw = np.asarray(admit_w, dtype=np.int64)
            fleet.run_ids = np.concatenate([fleet.run_ids, a])
            fleet.run_worker = np.concatenate([fleet.run_worker, aw])
            fleet.run_generated = np.concatenate([fleet.run_generated, kept[a]])
            run_out = np.concatenate([run_out, output[a]])
            run_prompt = np.concatenate([run_prompt, prompt[a]])
            if p > 0:
                prefill = p * np.bincount(aw, weights=prompt[a] + kept[a], minlength=G)
        n_run = len(fleet.run_ids)
        if n_run == 0:
            if fleet.queued.sum() > 0:
                raise RuntimeError("simulator stalled: requests queued but none admissible")
            continue

        # 4. one decode step with the barrier
        work = c1 * fleet.kv_running + prefill
        top = float(work.max())
        step_ms = c0 + top
        steps_t.append(t)
        steps_k.append(k)
        steps_ms.append(step_ms)
        steps_idle.append(G * top - float(work.sum()))
        steps_compute.append(G * top)
        steps_mean.append(float(work.sum()) / G)
        steps_tokens.append(n_run)
        steps_queue.append(int(fleet.queued.sum()))
        steps_slots.append(int(fleet.running.max()))
        steps_kv.append(int((fleet.kv_running + fleet.running).max()))
        total = ms_sum + step_ms
        ms_comp += ((ms_sum - total) + step_ms if abs(ms_sum) >= abs(step_ms)
                    else (step_ms - total) + ms_sum)
        ms_sum = total
        t = base + (ms_sum + ms_comp) / 1000.0
        k += 1
        fresh = fleet.run_generated == 0
        if fresh.any():
            ids = fleet.run_ids[fresh]
            first_t[ids] = np.where(np.isnan(first_t[ids]), t, first_t[ids])
        fleet.run_generated += 1
        fleet.kv_running += fleet.running

        # 5. finished requests leave
        fin = fleet.run_generated >= run_out
        if fin.any():
            ids = fleet.run_ids[fin]
            wk = fleet.run_worker[fin]
            finish_t[ids] = t
            fleet.running -= np.bincount(wk, minlength=G)
            fleet.kv_running -= np.bincount(
                wk, weights=run_prompt[fin] + fleet.run_generated[fin], minlength=G
            ).astype(np.int64)
            fleet.finished(run_out[fin], ids)
            done += len(ids)
            keep = ~fin
            fleet.run_ids, fleet.run_worker = fleet.run_ids[keep], fleet.run_worker[keep]
            fleet.run_generated, run_out = fleet.run_generated[keep], run_out[keep]
            run_prompt = run_prompt[keep]

    steps_ms_a = np.asarray(steps_ms)
    steps_t_a = np.asarray(steps_t)
    idle = np.asarray(steps_idle)
    compute = np.asarray(steps_compute)
    queue = np.asarray(steps_queue)
    # steady-state window: steps starting in [arrival of request floor(warmup n), last arrival]
    w0 = int(warmup * n)
    if step_clock:
        t_step = np.asarray(steps_k, dtype=float)
        lo_t, hi_t = math.ceil(arrival[w0] - tol), math.ceil(arrival[-1] - tol)
    else:
        t_step, lo_t, hi_t = steps_t_a, float(arrival[w0]), last_arrival
    edge = tol / 1000  # (1e-12 s at c0 = 10 ms)
    win = (t_step >= lo_t - edge) & (t_step <= hi_t + edge)
    steady = bool(hi_t > lo_t and win.any())
    if not steady:
        win = np.ones(len(steps_ms_a), dtype=bool)
    req_in = arrival >= arrival[w0] if steady else np.ones(n, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(compute > 0, idle / np.where(compute > 0, compute, 1.0), 0.0)
    top_w = steps_ms_a - c0
    lost = (top_w - np.asarray(steps_mean)) / np.where(steps_ms_a > 0, steps_ms_a, 1.0)
    tok_w = np.asarray(steps_tokens, dtype=float)[win]
    measured_s = steps_ms_a[win].sum() / 1000.0
    # tokens / time of the measured steps (every step when there is no distinct window): time
    # the fleet sat idle between arrivals is not decode time
    throughput = tok_w.sum() / max(measured_s, 1e-12)
    outs = output[req_in]
    tpot = ((finish_t - first_t)[req_in][outs > 1] / (outs[outs > 1] - 1) * 1000.0)
    e2e = (finish_t - arrive_t)[req_in]
    metrics = {
        "throughput_tok_s": float(throughput),
        "idle_fraction": float(frac[win].mean()),
        "imbalance": float(lost[win].mean()),
        "tpot_mean_ms": float(tpot.mean()) if len(tpot) else math.nan,
        "tpot_p99_ms": float(np.percentile(tpot, 99)) if len(tpot) else math.nan,
        "e2e_mean_s": float(np.mean(e2e)),
        "e2e_p99_s": float(np.percentile(e2e, 99)),
        "queue_mean": float(queue[win].mean()),
        "step_ms_mean": float(steps_ms_a[win].mean()),
        "idle_fraction_run": float(idle.sum() / compute.sum()) if compute.sum() > 0 else 0.0,
        "completed": int(done),
        "preemptions": int(preemptions),
        "router_us": route_s / n * 1e6,
        "steps": len(steps_ms),
        "window_steps": int(win.sum()),
    }
    if origin != 0.0:  # back in the instance's frame
        arrive_t, first_t, finish_t, steps_t_a = (x + origin for x in (arrive_t, first_t,
                                                                        finish_t, steps_t_a))
    return {
        "cost": float(steps_ms_a.sum()),
        "metrics": metrics,
        "route_s": route_s,
        "worker": fleet.worker_of.copy(),
        "arrive_t": arrive_t,
        "first_t": first_t,
        "finish_t": finish_t,
        "steps": {"t": steps_t_a, "step_ms": steps_ms_a, "idle": idle,
                  "compute": compute, "queue": queue, "window": win,
                  "tokens": np.asarray(steps_tokens),
                  "max_running": np.asarray(steps_slots), "max_kv": np.asarray(steps_kv)},
    }


def check_options(*, seed: Any = 0, warmup: Any = 0.2) -> None:
    """The ``check`` of :func:`evaluate`, before the router is made or reset: ``seed`` a whole
    number >= 0, ``warmup`` a share of the requests in [0, 1) (not True or False: False ran as
    0; text or None were a TypeError once the router was made)."""
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer) or seed < 0:
        raise OptionError(f"option seed must be a whole number >= 0, got {seed!r}", option="seed")
    if isinstance(warmup, bool | np.bool_) or not isinstance(warmup, int | float | np.number) \
            or isinstance(warmup, np.complexfloating):
        raise OptionError(f"option warmup must be a number, got {warmup!r} (a share of the "
                          "requests in [0, 1))", option="warmup")
    if not 0.0 <= warmup < 1.0:  # (NaN fails it too)
        raise OptionError(f"warmup must be a share of the requests in [0, 1), got {warmup!r}",
                          option="warmup")


@checked_keywords(check=check_options)
def evaluate(instance: Instance, method: str | routing.Router | Callable[[], routing.Router], *,
             seed: int = 0, warmup: float = 0.2, **kw: Any) -> Outcome:
    """Simulate ``method`` (a POLICIES name, a router, or a router class or factory:
    :func:`servopt.solvers.decode_routing.make_router`) on ``instance``.

    ``cost`` is the total step time (ms); ``wall_s`` the router's decision time (s);
    ``warmup`` the share of requests left out of the steady-state metrics (see module doc).

    Metrics (``Outcome.metrics``; name, unit, meaning; "window" over the measured steps or the
    requests arriving in the steady-state window, "run" over the whole run):

    - ``throughput_tok_s`` (tokens/s): window, tokens generated / time of those steps.
    - ``idle_fraction`` (fraction): window, mean over steps of sum_g (max W - W_g) / (G max W).
    - ``imbalance`` (fraction of step time): window, mean of (max W - mean W) / (c0 + max W).
    - ``tpot_mean_ms`` (ms): window, mean time per output token after the first (NaN: none).
    - ``tpot_p99_ms`` (ms): window, its 99th percentile.
    - ``e2e_mean_s`` (s): window, mean finish - arrival (step clock: from the routing step).
    - ``e2e_p99_s`` (s): window, its 99th percentile.
    - ``queue_mean`` (requests): window, requests waiting in worker queues, mean over steps.
    - ``step_ms_mean`` (ms): window, mean step time c0 + max W.
    - ``idle_fraction_run`` (fraction): run, sum of idle / sum of G max W over every step.
    - ``completed`` (requests): run, requests finished.
    - ``preemptions`` (evictions): run, recompute preemptions.
    - ``router_us`` (microseconds per request): run, router decision time / requests.
    - ``steps`` (steps): run, decode steps run.
    - ``window_steps`` (steps): steps measured in the window.

    A router's own counts (its ``run_metrics()``) are added: ``epoch_ip`` reports
    ``epoch_solves`` (steps whose IP it solved), ``epoch_time_limited`` (solves stopped at its
    per-step ``time_limit``, routed by the incumbent) and ``epoch_fallbacks`` (steps routed by
    least-KV: no incumbent).
    """
    if not isinstance(instance, Instance):
        raise InvalidInstanceError("evaluate needs a decode_routing Instance")
    router = routing.make_router(method)
    if kw:
        raise InvalidInstanceError(f"unknown evaluate option(s) {sorted(kw)}")
    result = simulate(instance, router, seed=seed, warmup=warmup)
    own = getattr(router, "run_metrics", None)  # the router's counts (epoch_ip: its solves)
    metrics = {**result["metrics"], **(_router_metrics(router, own()) if callable(own) else {})}
    return Outcome(cost=result["cost"], metrics=metrics, wall_s=result["route_s"])


def _router_metrics(router: routing.Router, own: Any) -> dict[str, float]:
    """A router's ``run_metrics()`` as metrics: a dict of real numbers whose names are not the
    evaluator's (refused by name otherwise: they would overwrite what the simulator measured)."""
    if not isinstance(own, dict) or not all(
            isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int | float | np.number)
            for k, v in own.items()):
        raise InvalidInstanceError(f"{_label(router)}.run_metrics() must return a dict of names to "
                                   f"numbers, got {own!r}")
    clash = sorted(set(own) & set(METRIC_NAMES))
    if clash:
        raise InvalidInstanceError(f"{_label(router)}.run_metrics() names the evaluator's own "
                                   f"metric(s) {clash}: choose other names")
    return {k: float(v) for k, v in own.items()}


METRIC_NAMES = ("throughput_tok_s", "idle_fraction", "imbalance", "tpot_mean_ms", "tpot_p99_ms",
                "e2e_mean_s", "e2e_p99_s", "queue_mean", "step_ms_mean", "idle_fraction_run",
                "completed", "preemptions", "router_us", "steps", "window_steps")


def simple_lower_bound(instance: Instance) -> float:
    """A lower bound on total step time valid for any router (ms).

    Every step costs c0 and at least the mean worker's work; the number of steps is at least
    the longest output and at least all tokens / (G B); each request's work is at least
    c1 sum_{j < o} (s + j) + p s (preemption only adds work).
    """
    o = instance.output.astype(float)
    steps = max(o.max(), math.ceil(o.sum() / (instance.workers * instance.slots)))
    return float(instance.step_ms * steps + model.request_work(instance).sum() / instance.workers)


def busy_lower_bound(instance: Instance) -> float:
    """A lower bound on total step time from the arrivals (ms), valid for any router.

    The total step time is the time the fleet spends running steps, and it runs steps whenever
    a request is waiting or running (the clock only jumps when the fleet is empty). Request i is
    in the system from its arrival a_i until it finishes, at least o_i steps later; its j-th step
    lasts at least c0 + c1 (s_i + j) (its own worker holds its s_i + j tokens), plus p s_i in
    the step it is admitted. So the fleet is busy on the union of [a_i, a_i + d_i) with
    d_i = c0 o_i + c1 (o_i s_i + o_i (o_i - 1) / 2) + p s_i ms. With arrivals counted in steps
    the same argument counts steps: at least |union of [ceil a_i, ceil a_i + o_i)| of them, each
    costing c0 plus at least the mean worker's work. The result is never below
    :func:`simple_lower_bound`.
    """
    o, c0 = instance.output.astype(float), instance.step_ms
    work = model.request_work(instance)
    simple = simple_lower_bound(instance)
    if instance.arrival_unit == "step":
        start = np.ceil(instance.arrival - 1e-9)  # the simple bound has the slot count's steps
        return max(simple, float(c0 * model.union_length(start, start + o)
                                 + work.sum() / instance.workers))
    start = instance.arrival * 1000.0
    return max(simple, model.union_length(start, start + c0 * o + work))


def check_bound_options(*, time_limit: Any = 60.0, mip_gap: Any = 1e-4,
                        step_block: Any = 1) -> None:
    """The ``check`` of :func:`bound`, whichever bound answers: ``time_limit`` and ``mip_gap``
    as :func:`servopt.solvers.decode_routing.check_options` reads them, ``step_block`` a whole
    number >= 1 (not True, which ran as 1; on an instance without the hindsight IP a bad one
    was ignored)."""
    with refusing("time_limit"):
        routing.check_options(time_limit, 0.0)
    with refusing("mip_gap"):
        routing.check_options(None, mip_gap)
    if isinstance(step_block, bool | np.bool_) or not isinstance(step_block, int | np.integer) \
            or step_block < 1:
        raise OptionError(f"step_block must be a whole number of steps >= 1, got {step_block!r}",
                          option="step_block")


def _no_hindsight(instance: Instance) -> str:
    """Why the hindsight model does not bound ``instance`` (:func:`bound` then returns the
    busy-time bound)."""
    if instance.arrival_unit != "step":
        return ("arrivals in seconds: the step each request arrives at depends on the routing, "
                "which the hindsight model (in decode steps) takes as given")
    which = " and ".join(name.replace("kv_memory", "KV") for name, on in
                         model.binding(instance).items() if on)
    return (f"{which} can bind, and the hindsight model leaves queueing out "
            "(the gap to it can be large even for an optimal router)")


@checked_keywords(check=check_bound_options)
def bound(instance: Instance, *, time_limit: float | None = 60.0, mip_gap: float = 1e-4,
          step_block: int = 1) -> Bound:
    """Best provable bound on the total step time (ms).

    On a step-clock stream where slots and KV cannot bind, the hindsight IP (HiGHS, matrix path)
    gives the optimum (``optimal``, when its dual bound meets the incumbent) or its dual bound
    (``mip_bound``: at the time limit, or when HiGHS stops within ``mip_gap``);
    ``step_block > 1`` solves the smaller blocked relaxation (a valid ``lower_bound``).
    Otherwise, or when that model is too large (``models.decode_routing.MAX_ENTRIES``),
    :func:`busy_lower_bound` (``lower_bound``; the fleet's unavoidable busy time).
    When ``solve_matrix`` rejects HiGHS's integer answer (its rounded routing breaks a row), the
    dual bound is still a proof: it is reported (``mip_bound``) with a status that says so
    (``incumbent rejected (row): ...``; an error only when that bound is not finite).
    When HiGHS stops at ``time_limit`` the status starts with ``time_limit``: ``time_limit`` with
    its dual bound (``mip_bound``), or ``time_limit: ...: the value is the busy-time bound``
    when that bound is better or HiGHS has none (``lower_bound``; a time-limited answer, not the
    IP's). ``time_limit`` covers HiGHS's solve only, and HiGHS checks its clock between phases:
    building the matrices is not counted, and on a large model presolve alone can outlast the
    limit (the hindsight cell of 6,000 requests and 4 workers: 26.8 s of wall time on a 5 s
    limit, R24; 1,000 requests on 32 workers: 49 s on a 10 s limit, R45). Unlike
    ``servopt.solve``, this bound does not skip the IP by ``models.decode_routing.time_estimate``:
    a skipped IP would leave only the busy-time bound. ``time_limit=None``: no limit.
    """
    start = time.perf_counter()
    routing.check_options(time_limit, mip_gap)  # refused whichever bound answers
    simple = busy_lower_bound(instance)
    if not model.hindsight_exact(instance):  # valid, but often far below the optimum: say why
        return Bound(simple, "lower_bound", wall_s=time.perf_counter() - start,
                     status=f"busy-time bound: {_no_hindsight(instance)}")
    unit = model.work_unit(instance)  # rows in KV tokens: HiGHS's tolerances are absolute
    try:
        mat = model.hindsight_matrices(instance, step_block=step_block, unit=unit)
    except model.ModelTooLarge:  # more nonzeros than model.MAX_ENTRIES: the busy-time bound
        return Bound(simple, "lower_bound", wall_s=time.perf_counter() - start,
                     status="busy-time bound: the hindsight model is too large "
                            f"(more than {model.MAX_ENTRIES:,} nonzeros; try step_block)")
    res = routing.solve_matrix(mat, time_limit=time_limit, mip_gap=mip_gap)
    wall = time.perf_counter() - start
    # HiGHS's dual bound, in ms: at mip_gap > 0 "optimal" may stop below the optimum
    value, objective = float(res["bound"]) * unit, float(res["objective"]) * unit
    # solve_matrix rejects an incumbent whose rounded routing breaks a row (status "error" where
    # HiGHS said optimal): the routing is not reported, the dual bound is still a proof
    rejected = (res.get("info") or {}).get("incumbent_rejected")
    note = None
    if rejected is not None:  # a note, not an error: the bound returned below is a proof
        said = "" if res["status"] == "error" else f"{res['status']}; "
        note = f"{said}incumbent rejected ({rejected})"
    if not math.isfinite(value) or value < simple:  # the busy-time bound is the better proof
        if note is None and res["status"] != "optimal":  # a stopped solve is said, not "ok" (R24)
            how = "at the time limit" if res["status"] == "time_limit" else "with status error"
            note = (f"{res['status']}: HiGHS stopped the hindsight IP {how} "
                    + ("without a finite dual bound" if not math.isfinite(value)
                       else "with a dual bound below it"))
        return Bound(simple, "lower_bound", wall_s=wall,
                     status="ok" if note is None else f"{note}: the value is the busy-time bound")
    if note is not None:
        note += ": the value is HiGHS's dual bound"
    # proved: HiGHS closed the gap to its absolute MIP gap (1e-6 in the solver's unit), not just
    # to mip_gap
    proved = res["status"] == "optimal" and value >= objective - max(1e-6 * unit, 1e-9 * abs(value))
    if proved and step_block == 1:
        return Bound(objective, "optimal", wall_s=wall)
    kind = "mip_bound" if step_block == 1 else "lower_bound"
    if note is None and res["status"] == "error":  # (HiGHS's own failure: said, with a reason)
        note = "error: HiGHS ended the hindsight IP with status error"
    return Bound(value, kind, wall_s=wall, status=note or res["status"])


# ---------------------------------------------------------------------------------------------
# Benchmark cells (used by the registered cases)
# ---------------------------------------------------------------------------------------------
FLEET = {"slots": 64, "kv_capacity": 131072, "step_ms": 10.0, "ms_per_kv_token": 1e-4}


def make_cell(*, kind: str = "synthetic", seed: int = 0, workload: str = "conversation",
              workers: int = 8, load: float = 0.85, requests: int | None = None,
              arrivals: str = "poisson", trace: str = "azure2023_code.csv",
              prediction_error: float | None = None) -> Instance:
    """One benchmark instance.

    kind : ``synthetic`` (Azure-calibrated generator; ``requests`` default 1000 per worker on
        conversation lengths and 2000 per worker on code lengths, whose requests are 8x shorter,
        so that the steady-state window spans about a thousand steps or more),
        ``trace`` (a shared public trace replayed at ``load`` x the fleet's capacity; ``seed``
        picks which consecutive block of ``requests`` to replay, all of it by default) or
        ``hindsight`` (a step-clock stream of ``requests`` (default 200) for the hindsight bound).
    prediction_error : add ``predicted_tokens`` = true output x exp(N(0, error^2))
        (0 = exact predictions).
    """
    from servopt.instances import decode_routing as gen
    from servopt.instances import traces

    if kind == "synthetic":
        n = requests or (2000 if workload == "code" else 1000) * workers
        return gen.generate(workload=workload, requests=n, workers=workers, load=load,
                            arrivals=arrivals, seed=seed, prediction_error=prediction_error,
                            **FLEET)
    if kind == "trace":
        path = traces.shared_trace(trace)
        if path is None:
            raise InvalidInstanceError(f"shared trace {trace!r} not found (set SERVOPT_TRACES)")
        frame = traces.read_azure(path)
        if requests is not None:
            start = (seed * requests) % max(len(frame) - requests, 1)
            frame = frame.iloc[start:start + requests]
        return gen.from_trace(frame, workers=workers, load=load, name=f"{trace} load={load:g}",
                              **FLEET)
    if kind == "hindsight":
        inst = gen.generate_steps(workload=workload, requests=requests or 200, workers=workers,
                                  seed=seed, step_ms=FLEET["step_ms"],
                                  ms_per_kv_token=FLEET["ms_per_kv_token"])
        if prediction_error is None:
            return inst
        rng = np.random.default_rng([seed, 1])
        frame = inst.requests.assign(
            predicted_tokens=gen.predicted_lengths(inst.output, prediction_error, rng))
        name = f"{inst.name} prediction noise {prediction_error:g}"
        return dataclasses.replace(inst, requests=frame, name=name)
    raise InvalidInstanceError(f"unknown benchmark cell kind {kind!r}")


def _start_routing_of(router: str, instance: Instance) -> np.ndarray:
    """The worker of each request when ``router`` routes ``instance`` (the hindsight IP's start)."""
    return np.asarray(simulate(instance, router)["worker"])


# the hindsight IP starts from these routers' routings (models.decode_routing.START_ROUTINGS):
# the model, a layer below, cannot import this simulator
model.START_ROUTINGS.update({name: functools.partial(_start_routing_of, name)
                             for name in model.START_ROUTERS})
