r"""Decode routing models: the hindsight assignment IP and the short-horizon (epoch) assignment IP.

Notation (units in brackets)
----------------------------
G workers g, each with B batch slots and K KV tokens; step time ``c0 + max_g W_g`` [ms], with
``W_g = c1 L_g + p P_g``: L_g the KV tokens resident on g [tokens], c1 ``ms_per_kv_token``,
P_g the prompt tokens g admits in the step, p ``prefill_ms_per_token``.

1. Hindsight model (``build(instance)``; needs ``arrival_unit == "step"``)
--------------------------------------------------------------------------
Request i arrives at step a_i (``ceil(arrival_s)``), has prompt s_i and true output o_i, and is
active on steps k = a_i, ..., a_i + o_i - 1, where it holds l_ik = s_i + (k - a_i) KV tokens and
costs w_ik = c1 l_ik (+ p s_i on its first step). Full knowledge of o_i; every request starts the
step it arrives (no queueing). Over the set of active steps k (rows and prices are labelled by
the step number k; steps where nothing runs have no row):

    min   sum_k (c0 + u_k)                                                     [ms]
    s.t.  assign[i]:        sum_g x_ig = 1                                      (each request once)
          step_load[g,k]:   sum_{i active at k} w_ik x_ig <= u_k                (barrier epigraph)
          slots[g,k]:       sum_{i active at k} x_ig <= B                       (if it can bind)
          kv_memory[g,k]:   sum_{i active at k} (l_ik + 1) x_ig <= K            (if it can bind)
          x_ig in {0, 1} (x_ig = 0 for g > i: workers are identical, symmetry breaking),
          u_k >= f_k, the makespan floor of step k (``step_floor``: max(sum_i w_ik / G,
          max_i w_ik, sum of the G-th and (G+1)-th largest w_ik)), valid for any assignment.

When neither slots nor KV can bind for any assignment (``hindsight_exact``), the simulator of
:mod:`servopt.benchmarks.decode_routing` realises exactly this cost for any sticky assignment, so
the optimum is the best any router can do and the IP's dual bound is a valid lower bound.
``step_block=b`` groups b consecutive active steps into one epigraph row
(``sum_{k in block} W_gk <= u_block``), a relaxation that stays a valid lower bound and is b times
smaller; with b > 1 the ``slots`` and ``kv_memory`` rows are left out (still a relaxation).

Each u_k also has the lower bound ``step_floor[k]``: u_k >= f_k (:func:`step_floor`; valid for
any assignment, it tightens the LP; ``hindsight_matrices`` imposes it as a variable bound,
``build_matrix_model`` as the labelled row, like the Pyomo model).

The solvers see the step_load / step_floor rows, u and the objective in units of
:func:`work_unit` ms (c1: KV tokens), not in ms: HiGHS's tolerances are absolute, so rows in a
tiny number of ms let an "optimal" answer sit below what its assignment costs. The models carry
``objective_scale`` and ``row_scale``; ``servopt.solve`` and ``solve_model`` report objective,
bound, u and prices in ms (:func:`hindsight_matrices` stays in ms unless given ``unit``). A row
of one's own on ``m.u`` or ``m.total_step_ms`` of a built Pyomo model is in those work units
(divide ms by ``work_unit(instance)``).

Prices (LP relaxation): ``step_load[g,k]`` is the ms of total step time saved per ms of load
removed from worker g at step k (>= 0); ``step_floor[k]`` the ms saved per ms the floor of step k
is lowered (>= 0); at every step they sum to 1 over g and the floor (the u_k column's reduced
cost). Where the floor binds (u_k = f_k: 693 of 1224 steps of the LP of
``generate_steps(requests=40, workers=3, seed=2)``) the step's price sits mostly on the floor and
the ``step_load`` prices there are degenerate (backends may split it differently), and so are
``assign[i]``, the marginal ms of total step time that request i costs. ``slots[g,k]`` and
``kv_memory[g,k]`` (present only where they can bind) are the ms of total step time saved per
extra batch slot / extra KV token on worker g at step k (>= 0).

2. Epoch model (``build_epoch(epoch)``; what an online router solves at a decision epoch)
----------------------------------------------------------------------------------------
At a decision epoch the resident requests of each worker give a predicted base load b_gh for
the next H steps h = 0..H-1; waiting request (or request class) i with demand d_i has a
predicted KV profile w_ih (its KV at step h times the probability it is still running) and needs
n_i = s_i + 1 KV tokens to start. gamma^h discounts later steps.

    min   sum_h gamma^h c1 u_h                                                  [ms]
    s.t.  assign[i]:        sum_g x_ig = d_i                 (work conserving: all routed now)
          worker_load[g,h]: b_gh + sum_i w_ih x_ig <= u_h    (predicted barrier epigraph) [tokens]
          slots[g]:         sum_i x_ig <= S_g                (free batch slots)
          kv_memory[g]:     sum_i n_i x_ig <= F_g            (free KV tokens)
          x_ig in {0, 1, ..., d_i} (in [0, d_i] for the relaxation), u_h >= 0.

Prices (LP relaxation, the bid prices): ``worker_load[g,h]`` = rho_gh, ms of discounted step time per
KV token added to worker g at step h (>= 0, summing to gamma^h c1 over g where u_h > 0; at a step
whose loads are all 0, u_h rests on its bound and the sum can be less, and the split among equal
workers is the solver's choice, degenerate); ``slots[g]`` = ms per
extra free slot on g; ``kv_memory[g]`` = ms per extra free KV token on g; ``assign[i]`` = the ms
one more request of class i costs. The bid-price rule sends request i to
``argmin_g sum_h rho_gh w_ih + sigma_g + kappa_g n_i``.

Both models also exist as sparse matrices (``hindsight_matrices``, ``epoch_matrices``) for the
HiGHS matrix path; the tests check that they agree with the Pyomo models.
:func:`build_matrix_model` labels the hindsight matrices for ``servopt.solve``'s default path.
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import scipy.sparse as sp

from servopt.core import InvalidInstanceError
from servopt.core.checks import flag, number
from servopt.core.cvxmodel import CvxpyModel
from servopt.core.matrix import Family, MatrixModel
from servopt.instances.decode_routing import Instance

OBJECTIVE_UNIT = "ms"  # total decode step time, sum_k (c0 + u_k)


# ---------------------------------------------------------------------------------------------
# Hindsight model
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Activity:
    """Which request is active at which step, with its load: one row per (request, step)."""

    request: np.ndarray  # request index
    step: np.ndarray  # position in ``steps``
    work: np.ndarray  # ms of load-dependent work w_ik
    kv_need: np.ndarray  # KV tokens needed l_ik + 1
    steps: np.ndarray  # the active step numbers
    start: np.ndarray  # a_i per request


def activity(instance: Instance) -> Activity:
    """The (request, active step) pairs of a step-clock instance, vectorised."""
    if instance.arrival_unit != "step":
        raise InvalidInstanceError(
            "the hindsight model needs arrivals counted in decode steps (arrival_unit='step'); "
            "with arrivals in seconds the step at which a request starts depends on the router; "
            "make a step-clock stream with instances.decode_routing.generate_steps "
            "(servopt generate decode_routing --generator steps)")
    start = np.ceil(instance.arrival - 1e-9).astype(np.int64)
    out = instance.output
    req = np.repeat(np.arange(len(out)), out)
    first = np.repeat(np.cumsum(out) - out, out)
    offset = np.arange(len(req)) - first
    step_no = start[req] + offset
    steps, pos = np.unique(step_no, return_inverse=True)
    prompt = instance.prompt[req]
    kv = prompt + offset
    work = instance.ms_per_kv_token * kv + instance.prefill_ms_per_token * prompt * (offset == 0)
    return Activity(req, pos, work.astype(float), kv + 1, steps, start)


def _start_steps(instance: Instance) -> np.ndarray:
    """a_i: the step each request starts (its arrival, rounded up), as :func:`activity` has it."""
    if instance.arrival_unit != "step":
        activity(instance)  # raises the message for arrivals in seconds
    return np.ceil(instance.arrival - 1e-9).astype(np.int64)


def peak_activity(instance: Instance) -> dict[str, int]:
    """The most requests active at one step and the most KV tokens they need (sum of
    l_ik + 1 over the requests active at step k), over all steps, with the first step of each,
    counted from the n intervals [a_i, a_i + o_i - 1] without listing the (request, step) pairs
    (:func:`activity` has sum_i o_i of them: 4e8 for 400 requests of 1e6 tokens). The count
    only rises at a start, so its maximum is at some a_i; each active request needs one more
    token per step and none starts or ends between, so the KV need's maximum is at some last
    step a_i + o_i - 1. O(n log n)."""
    a = _start_steps(instance)
    e = a + instance.output - 1  # last active step
    s = instance.prompt
    sa, se = np.sort(a), np.sort(e)

    def active_at(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Requests active at steps k, and the sum of s_i - a_i + 1 over them."""
        base = s - a + 1
        by_a = np.r_[0, np.cumsum(base[np.argsort(a, kind="stable")])]
        by_e = np.r_[0, np.cumsum(base[np.argsort(e, kind="stable")])]
        started = np.searchsorted(sa, k, side="right")  # a_i <= k
        ended = np.searchsorted(se, k, side="left")  # e_i < k
        return started - ended, by_a[started] - by_e[ended]

    count, _ = active_at(sa)
    ends = np.unique(e)
    on, base = active_at(ends)
    need = base + ends * on
    kc, kn = int(np.argmax(count)), int(np.argmax(need))
    return {"count": int(count[kc]), "count_step": int(sa[kc]), "need": int(need[kn]),
            "need_step": int(ends[kn])}


def binding(instance: Instance) -> dict[str, bool]:
    """Whether slots / KV could bind for some assignment (all active requests on one worker),
    from the peaks of :func:`peak_activity` (without listing the (request, step) pairs)."""
    peak = peak_activity(instance)
    return {"slots": peak["count"] > instance.slots,
            "kv_memory": peak["need"] > instance.kv_capacity}


def hindsight_exact(instance: Instance) -> bool:
    """True when the hindsight model is exactly what the simulator realises for any router."""
    if instance.arrival_unit != "step":
        return False
    return not any(binding(instance).values())


def solution_note(instance: Instance, **options: object) -> str | None:
    """What the hindsight model's value is not, for this instance (``servopt.solve`` puts it in
    ``solution.info["note"]``), or None when it is the best any router can do (or, blocked, a
    lower bound on it: :func:`relaxation_note`). Where slots or KV can bind the model keeps every
    request running from its arrival, while the simulator queues it: the value is then neither an
    achievable cost nor a bound, whatever the ``options`` (``step_block`` included)."""
    bind = binding(instance)
    if not any(bind.values()):
        return None
    which = " and ".join(name.replace("kv_memory", "KV") for name, on in bind.items() if on)
    return (f"{which} can bind on this stream: the model runs every request from its arrival, "
            f"the simulator queues it, so this value is neither a router's cost nor a bound on "
            f"one (servopt.benchmarks.decode_routing.bound gives a valid bound)")


def relaxation_note(instance: Instance, solution: Any, **options: Any) -> str | None:
    """Why an integer solution of the hindsight model is not an optimal routing (``servopt.solve``
    then sets its ``bound_kind`` to ``lower_bound`` and adds this to ``info["note"]``), or None.
    With ``step_block`` > 1 (and neither slots nor KV binding: else :func:`solution_note` says
    the value bounds nothing) the model is the blocked relaxation: its proved ``bound`` is a lower
    bound on the best any router can do, and so is its value at ``mip_gap=0`` (not at the default
    1e-4: R34, ``generate_steps(requests=12, workers=3, seed=5)`` at step_block=3 came back
    "optimal" at 7331.726, above the 7331.598 optimum at step_block=1), and its ``worker`` routing
    can cost more (R21: 4270.50 "optimal" at step_block=10**6 against the 4293.39 optimum of
    ``generate_steps(requests=10)``)."""
    step_block = options.get("step_block", 1)
    if not isinstance(step_block, int | np.integer) or step_block <= 1 or any(
            binding(instance).values()):
        return None
    return (f"step_block={int(step_block)} solves the blocked relaxation of the hindsight model: "
            f"its bound is a lower bound on the best any router can do (so is its value when "
            f"solved with mip_gap=0; at a positive mip_gap the value can exceed the step_block=1 "
            f"optimum), not an optimum; the routing it returns can cost more")


def _check_options(step_block: Any, symmetry: Any = True) -> None:
    """The builders' options, checked in the user's terms."""
    if isinstance(step_block, bool | np.bool_) or not isinstance(step_block, int | np.integer) \
            or step_block < 1:
        raise InvalidInstanceError(f"step_block must be a positive integer, got {step_block!r}")
    flag("symmetry", symmetry)


def _blocks(n_steps: int, step_block: int, symmetry: bool = True) -> np.ndarray:
    """Block of each active step; also checks the builders' options in the user's terms."""
    _check_options(step_block, symmetry)
    return np.arange(n_steps) // int(step_block)


def block_steps(steps: np.ndarray, step_block: int = 1) -> np.ndarray:
    """The label of each (block of) active step(s): its first step number k, on the stream's
    step clock (``arrival_s`` in steps). Rows, prices and ``u`` of the hindsight model carry it."""
    return np.asarray(steps, dtype=np.int64)[::int(step_block)]


def step_floor(instance: Instance, step_block: int = 1, act: Activity | None = None) -> np.ndarray:
    """A lower bound on u of every (block of) step(s), valid for any assignment [ms].

    The load-dependent time of a block is the makespan of scheduling its active requests (with
    their work in the block as sizes) on G identical workers, so it is at least the classic
    bound max(total / G, largest size, G-th + (G+1)-th largest sizes): with G + 1 requests two
    share a worker. Used as the lower bound of u (``u_floor``); it tightens the LP relaxation.
    """
    act = act or activity(instance)
    G, n_req = instance.workers, instance.n_requests
    block = _blocks(len(act.steps), step_block)
    n_blocks = int(block.max()) + 1
    key = block[act.step] * n_req + act.request
    uniq, inv = np.unique(key, return_inverse=True)
    size = np.bincount(inv, weights=act.work)
    blk = uniq // n_req
    order = np.lexsort((-size, blk))  # by block, largest first
    size, blk = size[order], blk[order]
    start = np.searchsorted(blk, np.arange(n_blocks))
    rank = np.arange(len(size)) - start[blk]
    floor = np.bincount(blk, weights=size, minlength=n_blocks) / G
    floor = np.maximum(floor, size[start])
    pair = np.zeros(n_blocks)
    np.add.at(pair, blk[(rank == G - 1) | (rank == G)], size[(rank == G - 1) | (rank == G)])
    has_pair = np.bincount(blk[rank == G], minlength=n_blocks) > 0
    return np.where(has_pair, np.maximum(floor, pair), floor)


def work_unit(instance: Instance) -> float:
    """The ms of one unit of the rows the solver sees: c1 (``ms_per_kv_token``; the rows are then
    in KV tokens), else p (``prefill_ms_per_token``), else 1 ms.

    :func:`build`, :func:`build_matrix_model` and :func:`build_cvxpy` write the step_load and
    step_floor rows and u in this unit and the objective in it too (offset c0 x steps / unit),
    and report objective, bound, u and prices in ms (``objective_scale``, ``row_scale``).
    Written in ms, the rows shrink with the time unit while HiGHS's feasibility tolerance (1e-6)
    and MIP gap floor (1e-6) are absolute: with c0 and c1 in units 1e-5 of a ms,
    dr_hindsight_8x2 came back "optimal", gap 0, 1467.28 where its assignment costs 1467.76
    (the proved optimum); at 1e-9 "optimal" at 1430.0 for 1495.28. In tokens the model is
    the same whatever the time unit."""
    for unit in (instance.ms_per_kv_token, instance.prefill_ms_per_token):
        if unit > 0:
            return float(unit)
    return 1.0


MAX_ENTRIES = 30_000_000  # hindsight model nonzeros (about 2 GB to build and load)
# The Python-object backends hold far more per entry than the matrix path (~70 bytes an entry
# with HiGHS's copy, benchmarks/results/limits.md decode_entries), so each has a cap of its own
# (R45 F3, generate_steps(requests=N, workers=32), servopt.solve(..., time_limit=10)): the Pyomo
# model (``backend="pyomo"``, :func:`build`) ~124 bytes and ~5.5 s an entry-million to build,
# ~230 bytes and ~11 s with HiGHS's copy, none of it time-limited (1,000 requests, 6.83M
# entries: 1.83 GB, 77 s); its cap of 5M is about 1.5 GB and 60 s. CVXPY's LP (``backend=
# "cvxpy"``, :func:`build_cvxpy`) ~170 bytes an entry (6.83M: 1.42 GB, 19 s); its cap of 8M is
# about 1.7 GB. Both extrapolated linearly, not run at the caps; limits.py's rows at a third of
# each (load 3.5-4): Pyomo 1.66M entries 604 MB peak (445 MB over the 159 MB baseline, 269
# bytes an entry), 24 s; CVXPY 2.68M entries 661 MB (187 bytes an entry), 8.8 s.
MAX_PYOMO_ENTRIES = 5_000_000
MAX_CVXPY_ENTRIES = 8_000_000
_BACKEND_CAPS = {"highs": MAX_ENTRIES, "pyomo": MAX_PYOMO_ENTRIES, "cvxpy": MAX_CVXPY_ENTRIES}


class ModelTooLarge(InvalidInstanceError):
    """The hindsight model would exceed ``max_entries`` nonzeros."""


def model_size(instance: Instance, step_block: int = 1) -> dict[str, int]:
    """The hindsight model's size, counted from the requests' intervals without building
    :func:`activity`: ``rows`` of the activity (sum_i o_i (request, step) pairs), ``pairs``
    (distinct (row block, request) pairs: one entry per worker in each row family), ``families``
    (step_load, plus slots and KV where they can bind, only with ``step_block`` 1) and
    ``entries`` = pairs x workers x families, the nonzeros :func:`build` would write.

    Blocks are runs of ``step_block`` consecutive *active* steps; request i is active on the
    consecutive steps a_i..a_i + o_i - 1, positions q_i..q_i + o_i - 1 among the active steps
    (q_i: active steps before a_i, from the union of the intervals), so it meets
    floor((q_i + o_i - 1) / b) - floor(q_i / b) + 1 blocks."""
    _check_options(step_block)
    b = int(step_block)
    a, out = _start_steps(instance), instance.output
    rows = int(out.sum())
    if b == 1:
        pairs = rows
        peak = peak_activity(instance)
        families = 1 + int(peak["count"] > instance.slots) + int(peak["need"] > instance.kv_capacity)
    else:
        order = np.argsort(a, kind="stable")
        sa, send = a[order], (a + out)[order]  # intervals [a, a + o) by start
        reach = np.maximum.accumulate(send)  # the furthest end so far
        new_run = np.r_[True, sa[1:] >= reach[:-1]]  # starts a run of the union
        run = np.cumsum(new_run) - 1
        run_start = sa[new_run]
        run_end = np.maximum.reduceat(send, np.flatnonzero(new_run))
        before = np.r_[0, np.cumsum(run_end - run_start)[:-1]]  # active steps before each run
        q = np.empty_like(a)
        q[order] = before[run] + (sa - run_start[run])
        pairs = int(np.sum((q + out - 1) // b - q // b + 1))
        families = 1
    return {"rows": rows, "pairs": pairs, "families": families,
            "entries": pairs * instance.workers * families}


def check_size(instance: Instance, step_block: int = 1, max_entries: int | None = None, *,
               backend: str = "highs") -> None:
    """Refuse a hindsight model too large to build in memory, before anything is allocated
    (:func:`model_size`, from the n requests): one entry per (row block, request, worker) in
    each family (3200 requests x 64 workers, one step per block: 45M entries, 3 GB), and, with
    ``step_block`` > 1, the activity table the build starts from (one row per request and
    active step, some 60 bytes each: 400 requests of 1e6 tokens are 4e8 rows; refused above
    the larger of ``max_entries`` and ``MAX_ENTRIES``). None: the cap of the ``backend`` that
    builds it (``highs``, the matrix path: ``MAX_ENTRIES``; ``pyomo``: ``MAX_PYOMO_ENTRIES``;
    ``cvxpy``: ``MAX_CVXPY_ENTRIES``), whose refusal points to the default backend."""
    if max_entries is not None and (isinstance(max_entries, bool | np.bool_) or not isinstance(
            max_entries, int | np.integer) or max_entries < 1):
        raise InvalidInstanceError(
            f"max_entries must be a whole number of nonzeros >= 1 (or None: "
            f"{_BACKEND_CAPS[backend]:,}), got {max_entries!r}")
    cap = _BACKEND_CAPS[backend]
    size = model_size(instance, step_block)
    entries, pairs, families = size["entries"], size["pairs"], size["families"]
    if max_entries is None and backend != "highs" and entries > cap:
        name = {"pyomo": "Pyomo", "cvxpy": "CVXPY"}[backend]
        raise ModelTooLarge(
            f"the hindsight model would have {entries:,} nonzeros ({pairs:,} request-step "
            f"blocks x {instance.workers} workers x {families} row families), more than "
            f"{cap:,} for the {name} backend, which keeps Python objects per entry (about "
            f"{'230' if backend == 'pyomo' else '170'} bytes each): use the default backend "
            f"(servopt solve without --backend {backend}; backend='highs' from Python), whose "
            f"matrix form takes up to {MAX_ENTRIES:,} nonzeros, or a larger step_block; from "
            f"Python, pass max_entries to try anyway")
    max_entries = MAX_ENTRIES if max_entries is None else int(max_entries)
    if entries > max_entries:
        raise ModelTooLarge(
            f"the hindsight model would have {entries:,} nonzeros ({pairs:,} request-step "
            f"blocks x {instance.workers} workers x {families} row families; limit max_entries="
            f"{max_entries:,}): use fewer requests or workers, a larger step_block, or from Python "
            "pass max_entries to try anyway (its presolve alone can outlast a time limit)")
    rows_limit = max(MAX_ENTRIES, max_entries)  # a larger max_entries lifts it too
    if size["rows"] > rows_limit:  # only with step_block > 1: else rows = pairs <= entries
        raise ModelTooLarge(
            f"the hindsight model is built from {size['rows']:,} (request, active step) pairs "
            f"(the sum of output_tokens; limit {rows_limit:,}), however few nonzeros "
            f"step_block={step_block} leaves: use fewer or shorter requests, or from Python "
            "pass a larger max_entries to try anyway")


def build(instance: Instance, *, relax: bool = False, step_block: int = 1,
          symmetry: bool = True, max_entries: int | None = None) -> pyo.ConcreteModel:
    """The hindsight assignment IP (see the module docstring); ``relax`` gives its LP. Refused
    above ``max_entries`` nonzeros (default ``MAX_PYOMO_ENTRIES``: the Pyomo model holds Python
    objects per entry; the default backend's :func:`build_matrix_model` takes ``MAX_ENTRIES``)."""
    _check_options(step_block, symmetry)
    # before activity() allocates sum_i o_i rows
    check_size(instance, step_block, max_entries, backend="pyomo")
    act = activity(instance)
    G, n_req = instance.workers, instance.n_requests
    block = _blocks(len(act.steps), step_block, symmetry)
    n_blocks = int(block.max()) + 1
    bind = binding(instance) if step_block == 1 else {"slots": False, "kv_memory": False}
    # terms of each (block) row: request -> coefficient, built with numpy then grouped
    rb = block[act.step]
    key = rb * n_req + act.request
    uniq, inv = np.unique(key, return_inverse=True)
    unit = work_unit(instance)  # rows, u and the objective in this many ms (tokens for c1 > 0)
    coef = np.bincount(inv, weights=act.work / unit)
    terms: list[list[tuple[int, float]]] = [[] for _ in range(n_blocks)]
    for k, c in zip(uniq.tolist(), coef.tolist(), strict=True):
        terms[k // n_req].append((k % n_req, c))

    m = pyo.ConcreteModel(name="decode_routing_hindsight")
    m.I = pyo.RangeSet(0, n_req - 1)
    m.G = pyo.RangeSet(0, G - 1)
    # rows are labelled by step number k (a block by its first step); pos[k] = its position
    labels = block_steps(act.steps, step_block)
    pos = {k: p for p, k in enumerate(labels.tolist())}
    m.K = pyo.Set(initialize=labels.tolist(), ordered=True)
    domain = pyo.UnitInterval if relax else pyo.Binary
    m.x = pyo.Var(m.I, m.G, domain=domain)
    floor = step_floor(instance, step_block, act) / unit
    m.u = pyo.Var(m.K, domain=pyo.NonNegativeReals)
    m.step_floor = pyo.Constraint(m.K, rule=lambda m, k: m.u[k] >= float(floor[pos[k]]))
    if symmetry:
        for i in range(min(n_req, G)):
            for g in range(i + 1, G):
                m.x[i, g].fix(0)
    m.assign = pyo.Constraint(m.I, rule=lambda m, i: sum(m.x[i, g] for g in m.G) == 1)
    m.step_load = pyo.Constraint(
        m.G, m.K, rule=lambda m, g, k: sum(c * m.x[i, g] for i, c in terms[pos[k]]) <= m.u[k])
    if bind["slots"] or bind["kv_memory"]:
        members: list[list[tuple[int, float]]] = [[] for _ in range(len(act.steps))]
        for i, k, n in zip(act.request.tolist(), act.step.tolist(), act.kv_need.tolist(),
                           strict=True):
            members[k].append((i, n))
        if bind["slots"]:
            m.slots = pyo.Constraint(m.G, m.K, rule=lambda m, g, k: sum(
                m.x[i, g] for i, _ in members[pos[k]]) <= instance.slots)
        if bind["kv_memory"]:
            m.kv_memory = pyo.Constraint(m.G, m.K, rule=lambda m, g, k: sum(
                n * m.x[i, g] for i, n in members[pos[k]]) <= instance.kv_capacity)
    m.total_step_ms = pyo.Objective(expr=instance.step_ms * len(act.steps) / unit + sum(
        m.u[k] for k in m.K), sense=pyo.minimize)  # in units of ``unit`` ms (work_unit)
    m.objective_scale = unit  # servopt.solve reports objective, bound and prices in ms
    m.row_scale = {"step_load": unit, "step_floor": unit}
    names = {"assign": ["request"], "step_load": ["worker", "step"], "step_floor": ["step"],
             "slots": ["worker", "step"],
             "kv_memory": ["worker", "step"], "x": ["request", "worker"], "u": ["step"]}
    m.index_names = names
    m.active_steps = act.steps
    return m


@dataclasses.dataclass
class MatrixLP:
    """min c x + offset s.t. row_lo <= A x <= row_hi, col_lo <= x <= col_hi (x integer where set)."""

    c: np.ndarray
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    integer: np.ndarray
    offset: float
    rows: dict[str, slice]
    cols: dict[str, slice]
    steps: np.ndarray | None = None  # hindsight: the step number labelling each block row


def hindsight_matrices(instance: Instance, *, relax: bool = False, step_block: int = 1,
                       symmetry: bool = True, max_entries: int | None = None,
                       unit: float = 1.0) -> MatrixLP:
    """The hindsight model of :func:`build` as sparse matrices (same variables and rows): in ms
    by default; ``unit`` (ms, e.g. :func:`work_unit`) writes the step_load rows, the u floor
    and the objective in that many ms instead."""
    _check_options(step_block, symmetry)
    check_size(instance, step_block, max_entries)  # before activity() allocates sum_i o_i rows
    act = activity(instance)
    G, n_req = instance.workers, instance.n_requests
    block = _blocks(len(act.steps), step_block, symmetry)
    n_blocks = int(block.max()) + 1
    bind = binding(instance) if step_block == 1 else {"slots": False, "kv_memory": False}
    nx = n_req * G
    rows, cols, vals, lo, hi = [], [], [], [], []
    n_rows = 0
    row_slices = {}
    # assign[i]
    i_idx = np.repeat(np.arange(n_req), G)
    rows.append(i_idx)
    cols.append(np.arange(nx))
    vals.append(np.ones(nx))
    lo.append(np.ones(n_req))
    hi.append(np.ones(n_req))
    row_slices["assign"] = slice(0, n_req)
    n_rows = n_req
    g_all = np.arange(G)

    def family(name: str, step_of: np.ndarray, req: np.ndarray, coef: np.ndarray, n_k: int,
               rhs: float, with_u: bool) -> None:
        nonlocal n_rows
        # row (g, k) = n_rows + g * n_k + k ; one entry per (term, g)
        r = (n_rows + g_all[None, :] * n_k + step_of[:, None]).ravel()
        c = (req[:, None] * G + g_all[None, :]).ravel()
        v = np.repeat(coef, G)
        rows.append(r)
        cols.append(c)
        vals.append(v)
        if with_u:
            rr = (n_rows + g_all[:, None] * n_k + np.arange(n_k)[None, :]).ravel()
            rows.append(rr)
            cols.append(nx + np.tile(np.arange(n_k), G))
            vals.append(-np.ones(G * n_k))
        lo.append(np.full(G * n_k, -np.inf))
        hi.append(np.full(G * n_k, rhs))
        row_slices[name] = slice(n_rows, n_rows + G * n_k)
        n_rows += G * n_k

    family("step_load", block[act.step], act.request, act.work / unit, n_blocks, 0.0, True)
    if bind["slots"]:
        family("slots", act.step, act.request, np.ones(len(act.step)), len(act.steps),
               float(instance.slots), False)
    if bind["kv_memory"]:
        family("kv_memory", act.step, act.request, act.kv_need.astype(float), len(act.steps),
               float(instance.kv_capacity), False)
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_rows, nx + n_blocks))
    col_hi = np.concatenate([np.ones(nx), np.full(n_blocks, np.inf)])
    if symmetry:
        for i in range(min(n_req, G)):
            col_hi[i * G + i + 1:(i + 1) * G] = 0.0
    c = np.concatenate([np.zeros(nx), np.ones(n_blocks)])
    integer = np.concatenate([np.full(nx, not relax), np.zeros(n_blocks, dtype=bool)])
    col_lo = np.concatenate([np.zeros(nx), step_floor(instance, step_block, act) / unit])
    return MatrixLP(c, A, np.concatenate(lo), np.concatenate(hi), col_lo, col_hi,
                    integer, instance.step_ms * len(act.steps) / unit, row_slices,
                    {"x": slice(0, nx), "u": slice(nx, nx + n_blocks)},
                    block_steps(act.steps, step_block))


def build_matrix_model(instance: Instance, *, relax: bool = False, step_block: int = 1,
                       symmetry: bool = True, max_entries: int | None = None,
                       deadline: float | None = None) -> MatrixModel:
    """The hindsight model of :func:`build` as a :class:`~servopt.core.matrix.MatrixModel` (what
    ``servopt.solve`` hands to HiGHS): the rows of :func:`hindsight_matrices` plus the
    ``step_floor`` rows, labelled like the Pyomo model's. The IP's ``start`` is the best fast
    router's routing that is feasible for it (:func:`start_routing`; none when no candidate
    is: slots or KV binding), so a time-limited solve never ends worse than that routing.
    ``deadline`` (a ``time.perf_counter()`` value; ``servopt.solve`` passes its time limit's
    end): TimeoutError between the stages once it has passed (the start begins no router
    that would end past it), leaving the routings it simulated for :func:`start_answer` on this
    instance, which ``servopt.solve`` returns next: it does not simulate them again."""
    _check_options(step_block, symmetry)
    check_size(instance, step_block, max_entries)  # before the start's simulations, which on a
    # model too large to build would run for minutes (test_size_checks' huge stream)
    simulated: dict[str, np.ndarray] = {}
    try:
        start_point = None if relax else start_routing(
            instance, step_block=step_block, symmetry=symmetry, deadline=deadline,
            simulated=simulated)
        _on_time(deadline, "the start routing")
        unit = work_unit(instance)  # rows, u and objective in this many ms; reported in ms
        mat = hindsight_matrices(instance, relax=relax, step_block=step_block,
                                 symmetry=symmetry, max_entries=max_entries, unit=unit)
        _on_time(deadline, "the matrices")
    except TimeoutError:
        if simulated:
            _leave_for_start_answer(instance, simulated)
        raise
    G, n_req = instance.workers, instance.n_requests
    steps = mat.steps
    n_k, nx = len(steps), n_req * G
    floor = mat.col_lo[nx:]
    # step_floor[k]: u[k] >= floor_k, appended after the other rows
    matrix = sp.vstack([mat.A, sp.csr_matrix((np.ones(n_k), (np.arange(n_k), nx + np.arange(n_k))),
                                             shape=(n_k, nx + n_k))], format="csc")
    base = mat.A.shape[0]
    rows = {"assign": Family(np.arange(n_req), pd.RangeIndex(n_req, name="request")),
            "step_floor": Family(base + np.arange(n_k), pd.Index(steps, name="step"))}
    for name, block in mat.rows.items():
        if name == "assign":
            continue
        per_worker = (block.stop - block.start) // G
        labels = steps if per_worker == n_k else activity(instance).steps
        rows[name] = Family(np.arange(block.start, block.stop), pd.MultiIndex.from_product(
            [range(G), labels], names=["worker", "step"]))

    def decode(z: np.ndarray) -> dict[str, pd.Series]:
        return _labelled_decisions(z[:nx].reshape(n_req, G), pd.Series(
            z[nx:] * unit, index=pd.Index(steps, name="step"), name="u"))

    col_lo = mat.col_lo.copy()
    col_lo[nx:] = 0.0
    return MatrixModel(
        objective=mat.c, matrix=matrix, row_lower=np.concatenate([mat.row_lo, floor]),
        row_upper=np.concatenate([mat.row_hi, np.full(n_k, np.inf)]), col_lower=col_lo,
        col_upper=mat.col_hi, rows=rows,
        columns={"x": Family(np.arange(nx), pd.MultiIndex.from_product(
                     [range(n_req), range(G)], names=["request", "worker"])),
                 "u": Family(nx + np.arange(n_k), pd.Index(steps, name="step"))},
        offset=mat.offset, integer=None if relax else mat.integer, decisions=decode,
        objective_scale=unit, row_scale={"step_load": unit, "step_floor": unit},
        start=None if start_point is None else start_point.vector(G),
        info={} if start_point is None else {"start_routing": start_point.which})


def _on_time(deadline: float | None, done: str) -> None:
    """TimeoutError when the build's ``deadline`` (a ``time.perf_counter()`` value) has passed,
    naming the stage just ``done``."""
    if deadline is not None and time.perf_counter() >= deadline:
        raise TimeoutError(f"the decode-routing hindsight model's build passed its deadline "
                           f"({done}); the matrix was not finished")


# ---------------------------------------------------------------------------------------------
# A feasible start, a closed-form bound and the time estimate (servopt.solve's hooks)
# ---------------------------------------------------------------------------------------------
# The fast routers whose routings are tried as the IP's start, in this order (least-KV first:
# the best of them on generate_steps; one simulation each, 0.1-0.3 s at 1,000 requests and 32
# workers). With a deadline only the first is certain to run.
START_ROUTERS = ("least_kv", "least_kv_sorted", "jsq", "round_robin")
#: Each start router's routing of an instance (router name -> function(instance) -> worker of
#: each request), from the evaluator's simulator: ``servopt.benchmarks.decode_routing``, a layer
#: above, fills it when imported (imports go only downward), as ``servopt.solve``,
#: ``servopt solve``, ``servopt.solvers.exact.solve`` (through ``exact.fill_start_hooks``), the
#: harness and the benchmarks do. Empty: the IP has no start and no
#: :func:`time_estimate`, and is built whatever the time limit.
START_ROUTINGS: dict[str, Any] = {}


@dataclasses.dataclass
class StartRouting:
    """A routing feasible for the hindsight model with these options: ``worker`` of each request
    (relabelled by first use, so x_ig = 0 for g > i holds), ``u`` of each (block of) step(s) in
    the solver's unit (:func:`work_unit`), ``objective`` the model's value of it [ms], ``steps``
    the labels of u, ``unit`` and ``which`` (the router and what else was tried)."""

    worker: np.ndarray
    u: np.ndarray
    objective: float
    steps: np.ndarray
    unit: float
    which: str

    def x(self, workers: int) -> np.ndarray:
        """The assignment x[i, g] (1 where request i runs on worker g)."""
        x = np.zeros((len(self.worker), workers))
        x[np.arange(len(self.worker)), self.worker] = 1.0
        return x

    def vector(self, workers: int) -> np.ndarray:
        """The point (x request-major, then u) of :func:`build_matrix_model`'s columns."""
        return np.concatenate([self.x(workers).ravel(), self.u])

    def decisions(self, workers: int) -> dict[str, pd.Series | pd.DataFrame]:
        """Labelled as a solve's (:func:`_labelled_decisions`), u in ms."""
        return _labelled_decisions(self.x(workers), pd.Series(
            self.u * self.unit, index=pd.Index(self.steps, name="step")))


def _by_first_use(worker: np.ndarray) -> np.ndarray:
    """The same routing with the workers renamed in order of first use (identical workers: the
    cost is the same), so request i's worker is at most i (the model's symmetry fixing)."""
    _, first = np.unique(worker, return_index=True)
    used = worker[np.sort(first)]  # workers in order of first use
    rename = np.empty(int(worker.max()) + 1, dtype=np.int64)
    rename[used] = np.arange(len(used))
    return rename[worker]


def routing_value(instance: Instance, worker: Any, *, step_block: int = 1,
                  act: Activity | None = None) -> tuple[float, np.ndarray, bool]:
    """The hindsight model's value [ms] of the sticky routing ``worker`` (one worker per
    request), its u per (block of) step(s) in :func:`work_unit` (the least feasible u: the
    largest worker load, at least the step floor), and whether it meets the slots and KV rows
    the model has (only with ``step_block`` 1, where they can bind). Where
    :func:`hindsight_exact` holds, with ``step_block`` 1, the value is the simulator's cost of
    the routing (``servopt.benchmarks.decode_routing``)."""
    act = act or activity(instance)
    worker = np.asarray(worker, dtype=np.int64)
    G, unit = instance.workers, work_unit(instance)
    block = _blocks(len(act.steps), step_block)
    n_b = int(block.max()) + 1
    on = worker[act.request]
    load = np.bincount(on * n_b + block[act.step], weights=act.work / unit,
                       minlength=G * n_b).reshape(G, n_b)
    u = np.maximum(load.max(axis=0), step_floor(instance, step_block, act) / unit)
    feasible = True
    if step_block == 1:
        bind = binding(instance)
        n_k = len(act.steps)
        if bind["slots"]:
            count = np.bincount(on * n_k + act.step, minlength=G * n_k)
            feasible &= bool(count.max() <= instance.slots)
        if bind["kv_memory"]:
            need = np.bincount(on * n_k + act.step, weights=act.kv_need, minlength=G * n_k)
            feasible &= bool(need.max() <= instance.kv_capacity)
    offset = instance.step_ms * len(act.steps) / unit  # as the model's objective, then in ms
    return float((offset + u.sum()) * unit), u, feasible


def start_routing(instance: Instance, *, step_block: int = 1, symmetry: bool = True,
                  deadline: float | None = None,
                  simulated: dict[str, np.ndarray] | None = None) -> StartRouting | None:
    """The best of the ``START_ROUTERS`` routings (each simulated by the evaluator,
    ``servopt.benchmarks.decode_routing.simulate``, through :data:`START_ROUTINGS`: none without
    it) that is feasible for the hindsight model with
    these options, valued by the model (:func:`routing_value`), or None when none is (slots or
    KV rows broken: the model runs every request from its arrival, the simulator queues). By a
    ``deadline`` (``time.perf_counter()``) it starts no router that would end past it (one
    taking as long as the last it simulated; it always has one). ``simulated`` (router name:
    its routing of this instance, relabelled by first use): routings already simulated, taken
    as they are; those it simulates are added."""
    _check_options(step_block, symmetry)
    simulated = {} if simulated is None else simulated
    act = activity(instance)
    best: StartRouting | None = None
    tried = []
    last_s = 0.0  # the last simulation's seconds here: the next one takes about as long
    routers = [name for name in START_ROUTERS if name in START_ROUTINGS or name in simulated]
    for name in routers:
        if name not in simulated:
            if deadline is not None and tried and time.perf_counter() + last_s >= deadline:
                break
            began = time.perf_counter()
            simulated[name] = _by_first_use(START_ROUTINGS[name](instance))
            last_s = time.perf_counter() - began
        worker = simulated[name]
        value, u, feasible = routing_value(instance, worker, step_block=step_block, act=act)
        tried.append(f"{name} {value:.6g}" if feasible else f"{name} infeasible")
        if feasible and (best is None or value < best.objective):
            best = StartRouting(worker, u, value, block_steps(act.steps, step_block),
                                work_unit(instance), name)
    if best is not None:
        skipped = len(routers) - len(tried)
        best.which = (f"{best.which} (the best feasible of {', '.join(tried)}"
                      + (f"; {skipped} more not tried by the time limit" if skipped else "")
                      + ")")
    return best


def start_answer(instance: Instance, *, step_block: int = 1, symmetry: bool = True,
                 max_entries: int | None = None, deadline: float | None = None) -> dict[str, Any]:
    """The IP's start as :func:`build_matrix_model` with these options would give HiGHS, without
    the matrix (what ``servopt.solve`` returns when the build would not fit in its time limit):
    ``decisions`` labelled as a solve's, ``objective`` the model's value of the routing [ms],
    ``sense`` and ``info["start_routing"]`` (which router, and which were tried). The routings a
    :func:`build_matrix_model` of this instance simulated before its ``deadline`` stopped it
    are taken as they are (not simulated again), and routers it did not reach are simulated
    only while the ``deadline`` has not passed. A model too large to build is
    refused as the build would; an instance where no fast router's routing is feasible for the
    model (slots or KV binding) is refused (:func:`time_estimate` gives no estimate there, so
    ``servopt.solve`` builds the model instead)."""
    check_size(instance, step_block, max_entries)
    best = start_routing(instance, step_block=step_block, symmetry=symmetry, deadline=deadline,
                         simulated=_left_by_build(instance))
    if best is None:
        raise InvalidInstanceError(
            "no fast router's routing meets the hindsight model's slots and KV rows on this "
            "stream (the model runs every request from its arrival): solve the model instead")
    return {"decisions": best.decisions(instance.workers), "objective": best.objective,
            "sense": "min", "info": {"start_routing": best.which}}


# The routings a build stopped by its deadline had simulated, kept for the start_answer that
# servopt.solve calls next on the same instance (R48 F2: it simulated them all again, and its
# note said those routers were not tried): one slot, (a weak reference to the instance, router
# name: routing). The routings depend on the instance alone (not on step_block or symmetry:
# routing_value values them per option). start_answer takes (and clears) the slot; it is
# dropped with its instance. Another build stopped meanwhile (another thread) replaces it:
# start_answer then simulates again, as before.
_LEFT: tuple[weakref.ref, dict[str, np.ndarray]] | None = None


def _leave_for_start_answer(instance: Instance, simulated: dict[str, np.ndarray]) -> None:
    global _LEFT

    def drop(ref: weakref.ref) -> None:
        global _LEFT
        if _LEFT is not None and _LEFT[0] is ref:
            _LEFT = None

    _LEFT = (weakref.ref(instance, drop), dict(simulated))


def _left_by_build(instance: Instance) -> dict[str, np.ndarray]:
    """The routings a stopped build left for this very ``instance`` (empty: none), cleared."""
    global _LEFT
    left, _LEFT = _LEFT, None
    return dict(left[1]) if left is not None and left[0]() is instance else {}


def union_length(start: np.ndarray, end: np.ndarray) -> float:
    """Measure of the union of the intervals [start_i, end_i) (in any order)."""
    order = np.argsort(start, kind="stable")
    start, end = np.asarray(start, dtype=float)[order], np.asarray(end, dtype=float)[order]
    reach = np.maximum.accumulate(end)
    before = np.concatenate([[-np.inf], reach[:-1]])
    return float(np.sum(np.maximum(0.0, end - np.maximum(start, before))))


def request_work(instance: Instance) -> np.ndarray:
    """Each request's least work [ms] beyond the steps' c0: c1 sum_{j < o} (s + j) + p s (its own
    worker holds its s + j tokens in its j-th step, and its prompt is prefilled once)."""
    s, o = instance.prompt.astype(float), instance.output.astype(float)
    return instance.ms_per_kv_token * (o * s + o * (o - 1) / 2) + instance.prefill_ms_per_token * s


def _active_steps(instance: Instance) -> int:
    """The number of active steps (|union of [a_i, a_i + o_i)|), without :func:`activity`."""
    a = _start_steps(instance)
    return int(union_length(a, a + instance.output))


def cheap_bound(instance: Instance, *, step_block: int = 1, symmetry: bool = True) -> float:
    """A lower bound on the hindsight model's optimum [ms], in closed form from the requests
    (``servopt.benchmarks.decode_routing.busy_lower_bound``'s, which also bounds every router):
    every active step costs c0 (the model's offset) and the u of a (block of) step(s) is at
    least the mean worker's work in it, so sum_k u_k >= the total work / G, with any
    ``step_block`` (sum over blocks) and either ``symmetry`` (fixing x only raises the optimum).
    The busy bound's other term (c0 x ceil(sum o / (G B)) + work / G) is kept only where every
    step of the model holds at most G B requests: slots cannot bind, or the slots rows are in
    the model (``step_block`` 1); with ``step_block`` > 1 and binding slots it is left out."""
    _check_options(step_block, symmetry)
    o, c0 = instance.output.astype(float), instance.step_ms
    work = float(request_work(instance).sum())
    value = c0 * _active_steps(instance) + work / instance.workers
    if step_block == 1 or not binding(instance)["slots"]:
        steps = max(float(o.max()), math.ceil(o.sum() / (instance.workers * instance.slots)))
        value = max(value, c0 * steps + work / instance.workers)
    return float(value)


# Seconds of the hindsight IP's build and of HiGHS's set-up on it, calibrated on this shared
# 2-core machine at load 4-5 (engineer E39, R45 F2; generate_steps(requests=n, workers=G)):
# build_matrix_model without its start 0.2-0.5 us a nonzero (n, G = 100-1,000, 4-32: 0.35M-6.9M
# nonzeros); HiGHS's presolve (on, its default here), through most of which it
# does not read its clock: 3.35 s at n = 200 (1.29M nonzeros, 2.6 us each), 17.7 s at n = 400
# (2.74M, 6.5 us), 49 s at n = 1,000 (6.9M, 7.1 us; R45: 49 s on a 10 s limit, no incumbent).
# The estimate takes the high rates, so a limit that cannot cover presolve returns the start at
# once rather than overrunning it without an answer; a quiet machine is faster.
# The start's four simulations (START_ROUTERS) step the fleet once per active step in Python, so
# they cost per step more than per (request, step) pair: measured here at load 2.6 (engineer
# E40, R48 F2; `uptime` 2.58, 2.64, 3.42), all four together, 230-410 us a step and 3.5-39 us a
# pair: G = 1, n = 2,000 (52,238 steps, 425k pairs) 16.7 s; G = 2, n = 1,000 (14,500, 213k)
# 3.3 s; G = 8, n = 400 (2,233, 84k) 0.64 s; G = 32, n = 200, 400, 1,000 (1,115-1,790 steps,
# 39k-213k pairs) 0.33, 0.41, 0.74 s. A rate a pair alone (6 us, from G = 32) said 2.6 s at
# G = 1, n = 2,000, and R48 measured 9.6 s there (a 7.5 s limit ran 10.6 s). 300 us a step and
# 1.5 us a pair cover every run above within 40% (the high side at small G). A second run (load
# 3.1): G = 1, n = 1,000 (28,046 steps) 4.6 s; G = 2, n = 2,000 (26,619) 5.4 s; G = 4, n =
# 1,000 (7,722) 1.5 s; G = 32, n = 1,000 0.57 s: 165-200 us a step at small G, so the
# estimate is up to 2x high there on a quieter machine.
BUILD_S_PER_NONZERO = 6e-7
START_S_PER_STEP = 3e-4
START_S_PER_PAIR = 1.5e-6
SETUP_S_PER_NONZERO = 7.5e-6


def time_estimate(instance: Instance, *, relax: bool = False, step_block: int = 1,
                  symmetry: bool = True, max_entries: int | None = None) -> dict[str, float]:
    """What :func:`build_matrix_model` with these options would cost, counted without building
    it (:func:`model_size`): ``nonzeros`` of its matrix, ``build_s`` the seconds of its build
    (with the start's simulations, ``start_s`` of them: per active step and per (request,
    step) pair, whatever the ``step_block``) and ``setup_s`` those of HiGHS's presolve and
    set-up on it, at the measured rates (``BUILD_S_PER_NONZERO``, ``START_S_PER_STEP``,
    ``START_S_PER_PAIR``, ``SETUP_S_PER_NONZERO``; a busy machine takes longer).
    ``servopt.solve`` under a time limit builds the IP only when both fit in what is left, and
    otherwise returns :func:`start_answer` (``relax``: the LP, no start, no simulation).
    Empty (no estimate: the model is built whatever the limit, as before) where slots or KV
    can bind, where no fast routing need be feasible for the model."""
    _check_options(step_block, symmetry)
    check_size(instance, step_block, max_entries)  # refused as the build would
    if not hindsight_exact(instance) or not START_ROUTINGS:  # (no start: see START_ROUTINGS)
        return {}
    size = model_size(instance, step_block)
    n_x = instance.n_requests * instance.workers
    steps = _active_steps(instance)
    blocks = -(-steps // int(step_block))
    # the x terms of every family, assign's, then u's in step_load (G a block) and step_floor
    nonzeros = float(size["entries"] + n_x + (instance.workers + 1) * blocks)
    # the simulator steps every active step and carries each request through its o_i of them
    start_s = 0.0 if relax else (START_S_PER_STEP * steps
                                 + START_S_PER_PAIR * float(instance.output.sum()))
    return {"nonzeros": nonzeros, "build_s": BUILD_S_PER_NONZERO * nonzeros + start_s,
            "start_s": start_s, "setup_s": SETUP_S_PER_NONZERO * nonzeros}


def build_cvxpy(instance: Instance, *, step_block: int = 1, symmetry: bool = True,
                max_entries: int | None = None) -> CvxpyModel:
    """The LP relaxation of the hindsight model in CVXPY, with the same symmetry fixing as
    :func:`build` by default (x_ig = 0 for g > i: valid for the IP, and it lifts the LP a little,
    so both backends give the same bound). Refused above ``max_entries`` nonzeros (default
    ``MAX_CVXPY_ENTRIES``: CVXPY holds Python objects per entry)."""
    import cvxpy as cp

    _check_options(step_block, symmetry)
    check_size(instance, step_block, max_entries, backend="cvxpy")
    unit = work_unit(instance)  # rows, u and objective in this many ms; reported in ms
    mat = hindsight_matrices(instance, relax=True, step_block=step_block, symmetry=symmetry,
                             max_entries=MAX_ENTRIES if max_entries is None else max_entries,
                             unit=unit)
    G, n_req = instance.workers, instance.n_requests
    nx = n_req * G
    x = cp.Variable(nx)
    u = cp.Variable(mat.c.size - nx)
    z = cp.hstack([x, u])
    cons = {}
    constraints = []
    for name, rs in mat.rows.items():
        block = mat.A[rs]
        con = (block @ z == mat.row_hi[rs]) if name == "assign" else (block @ z <= mat.row_hi[rs])
        constraints.append(con)
        if name == "assign":
            index = pd.RangeIndex(n_req, name="request")
        else:
            # every other family is per (worker, step row): the slots and KV rows exist only
            # with step_block 1, where the rows are the active steps themselves
            index = pd.MultiIndex.from_product([range(G), mat.steps], names=["worker", "step"])
        cons[name] = (con, index)
    floor = u >= mat.col_lo[nx:]
    cons["step_floor"] = (floor, pd.Index(mat.steps, name="step"))
    constraints += [x >= 0, x <= mat.col_hi[:nx], floor]
    problem = cp.Problem(cp.Minimize(cp.sum(u) + mat.offset), constraints)
    xi = pd.MultiIndex.from_product([range(n_req), range(G)], names=["request", "worker"])
    model = CvxpyModel(problem, "min", cons,
                       {"x": (x, xi), "u": (unit * u, pd.Index(mat.steps, name="step"))},
                       decisions=lambda values: _labelled_decisions(
                           values["x"].to_numpy(float).reshape(n_req, G), values["u"]))
    model.objective_scale = unit  # servopt.solve reports objective, bound and prices in ms
    model.row_scale = {"step_load": unit, "step_floor": unit}
    return model


def decisions(model: pyo.ConcreteModel, instance: Instance) -> dict[str, pd.Series | pd.DataFrame]:
    """The worker of each request (argmax of x, a Series), the per-step epigraph u (ms, a
    Series) and the shares x (a request x worker DataFrame): :func:`_labelled_decisions`."""
    n_req, G = instance.n_requests, instance.workers
    x = np.array([[pyo.value(model.x[i, g]) or 0.0 for g in range(G)] for i in range(n_req)])
    unit = getattr(model, "objective_scale", 1.0)  # u is in that many ms (work_unit)
    u = pd.Series([pyo.value(model.u[k]) * unit for k in model.K], name="u",
                  index=pd.Index(list(model.K), name="step"))
    return _labelled_decisions(x, u)


def _labelled_decisions(x: np.ndarray, u: pd.Series) -> dict[str, pd.Series | pd.DataFrame]:
    """What every backend reports from the (requests x workers) shares ``x`` and the step
    epigraph ``u`` (ms): ``worker`` (each request's largest share, the lowest worker of equal
    ones), ``u`` and ``x`` as a (request x worker) frame."""
    worker = pd.Series(np.argmax(x, axis=1), index=pd.RangeIndex(len(x), name="request"),
                       name="worker")
    share = pd.DataFrame(x, index=worker.index, columns=pd.RangeIndex(x.shape[1], name="worker"))
    return {"worker": worker, "u": u.rename("u"), "x": share}


def explain_infeasible(instance: Instance) -> str:
    """Domain reason of infeasibility: the step with the most active requests and the one with
    the most KV need (:func:`peak_activity`, without listing the (request, step) pairs)."""
    peak = peak_activity(instance)
    count, need = peak["count"], peak["need"]
    G = instance.workers
    short = []
    if count > G * instance.slots:
        short.append(f"at step {peak['count_step']} {count} requests are active for {G} x "
                     f"{instance.slots} slots")
    if need > G * instance.kv_capacity:
        short.append(f"at step {peak['need_step']} they need {need} KV tokens for {G} x "
                     f"{instance.kv_capacity}")
    if not short:  # the totals fit: the requests of some step cannot be split over the workers
        short.append(f"the totals fit (at most {count} requests for {G} x {instance.slots} "
                     f"slots, {need} KV tokens for {G} x {instance.kv_capacity}), but the "
                     f"requests active together cannot be split over the workers")
    return "no sticky assignment starts every request on arrival: " + "; ".join(short)


# ---------------------------------------------------------------------------------------------
# Epoch model
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Epoch:
    """Data of one decision epoch (arrays; units: tokens, ms).

    base_load : (G, H) predicted KV tokens of resident requests at each horizon step.
    profile : (I, H) predicted KV tokens of each waiting request (class) at each horizon step.
    demand : (I,) requests of each class to route now (1 for a real request).
    kv_need : (I,) KV tokens a request of the class needs to start (prompt + 1).
    free_slots : (G,) batch slots free on each worker.
    free_kv : (G,) KV tokens free on each worker.
    ms_per_kv_token : c1.
    discount : gamma per horizon step.
    """

    base_load: np.ndarray
    profile: np.ndarray
    demand: np.ndarray
    kv_need: np.ndarray
    free_slots: np.ndarray
    free_kv: np.ndarray
    ms_per_kv_token: float
    discount: float = 0.8

    def __post_init__(self) -> None:
        def tokens(name: str, value: Any, two_d: bool = False) -> np.ndarray:
            try:
                arr = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise InvalidInstanceError(f"{name} must be an array of numbers, got "
                                           f"{type(value).__name__}") from None
            if not np.isfinite(arr).all() or (arr < 0).any():
                raise InvalidInstanceError(f"{name} must be finite and >= 0 (tokens, slots or "
                                           "requests), got NaN, inf or a negative entry")
            return np.atleast_2d(arr) if two_d else arr.ravel()

        self.base_load = tokens("base_load", self.base_load, two_d=True)
        self.profile = tokens("profile", self.profile, two_d=True)
        self.demand = tokens("demand", self.demand)
        self.kv_need = tokens("kv_need", self.kv_need)
        self.free_slots = tokens("free_slots", self.free_slots)
        self.free_kv = tokens("free_kv", self.free_kv)
        self.ms_per_kv_token = number("ms_per_kv_token", self.ms_per_kv_token,
                                      lambda v: 0 <= v < math.inf, "a finite number >= 0 (ms)")
        self.discount = number("discount", self.discount, lambda v: 0 < v <= 1, "in (0, 1]")
        G, H = self.base_load.shape
        n = self.profile.shape[0]
        if self.profile.shape[1] != H:
            raise InvalidInstanceError(f"profile has {self.profile.shape[1]} horizon steps, "
                                       f"base_load has {H}")
        for name, arr, size in (("demand", self.demand, n), ("kv_need", self.kv_need, n),
                                ("free_slots", self.free_slots, G), ("free_kv", self.free_kv, G)):
            if arr.size != size:
                raise InvalidInstanceError(f"{name} has {arr.size} entries, expected {size}")

    @property
    def weights(self) -> np.ndarray:
        """Objective weight of u_h: gamma^h c1 (ms per token)."""
        H = self.base_load.shape[1]
        return self.ms_per_kv_token * self.discount ** np.arange(H)


def build_epoch(epoch: Epoch, *, relax: bool = False) -> pyo.ConcreteModel:
    """The epoch assignment IP (see the module docstring); ``relax`` gives the LP whose duals
    are the bid prices."""
    G, H = epoch.base_load.shape
    n = epoch.profile.shape[0]
    m = pyo.ConcreteModel(name="decode_routing_epoch")
    m.I = pyo.RangeSet(0, n - 1)
    m.G = pyo.RangeSet(0, G - 1)
    m.H = pyo.RangeSet(0, H - 1)
    if not relax:
        _whole_demand(epoch)
    m.x = pyo.Var(m.I, m.G, domain=pyo.NonNegativeReals if relax else pyo.NonNegativeIntegers,
                  bounds=lambda m, i, g: (0.0, float(epoch.demand[i])))
    m.u = pyo.Var(m.H, domain=pyo.NonNegativeReals)
    w = epoch.weights
    m.assign = pyo.Constraint(m.I, rule=lambda m, i: sum(m.x[i, g] for g in m.G)
                              == float(epoch.demand[i]))
    m.worker_load = pyo.Constraint(m.G, m.H, rule=lambda m, g, h: float(epoch.base_load[g, h]) + sum(
        float(epoch.profile[i, h]) * m.x[i, g] for i in m.I) <= m.u[h])
    m.slots = pyo.Constraint(m.G, rule=lambda m, g: sum(m.x[i, g] for i in m.I)
                             <= float(epoch.free_slots[g]))
    m.kv_memory = pyo.Constraint(m.G, rule=lambda m, g: sum(
        float(epoch.kv_need[i]) * m.x[i, g] for i in m.I) <= float(epoch.free_kv[g]))
    m.discounted_step_ms = pyo.Objective(expr=sum(float(w[h]) * m.u[h] for h in m.H),
                                         sense=pyo.minimize)
    m.index_names = {"assign": ["request"], "worker_load": ["worker", "step"], "slots": ["worker"],
                     "kv_memory": ["worker"], "x": ["request", "worker"], "u": ["step"]}
    return m


def _whole_demand(epoch: Epoch) -> None:
    """The epoch IP routes whole requests: every class's demand d_i must be a whole number."""
    if not np.array_equal(epoch.demand, np.round(epoch.demand)):
        k = int(np.argmax(epoch.demand != np.round(epoch.demand)))
        raise InvalidInstanceError(f"the epoch IP routes whole requests: class {k} has demand "
                                   f"{float(epoch.demand[k])}; use relax=True for fractional demand")


def epoch_matrices(epoch: Epoch, *, relax: bool = True) -> MatrixLP:
    """The epoch model as sparse matrices; variables x (I*G, request-major) then u (H)."""
    if not relax:
        _whole_demand(epoch)
    G, H = epoch.base_load.shape
    n = epoch.profile.shape[0]
    nx = n * G
    ig_i = np.repeat(np.arange(n), G)
    ig_g = np.tile(np.arange(G), n)
    blocks = []
    # assign[i]: rows 0..n-1
    blocks.append((ig_i, np.arange(nx), np.ones(nx)))
    # worker_load[g,h]: rows n + g*H + h ; x terms profile[i,h], u_h term -1
    r = n + (ig_g[:, None] * H + np.arange(H)[None, :])
    blocks.append((r.ravel(), np.repeat(np.arange(nx), H), epoch.profile[ig_i].ravel()))
    rr = n + (np.arange(G)[:, None] * H + np.arange(H)[None, :]).ravel()
    blocks.append((rr, nx + np.tile(np.arange(H), G), -np.ones(G * H)))
    base = n + G * H
    blocks.append((base + ig_g, np.arange(nx), np.ones(nx)))  # slots[g]
    blocks.append((base + G + ig_g, np.arange(nx), epoch.kv_need[ig_i]))  # kv_memory[g]
    n_rows = base + 2 * G
    A = sp.csr_matrix((np.concatenate([b[2] for b in blocks]),
                       (np.concatenate([b[0] for b in blocks]),
                        np.concatenate([b[1] for b in blocks]))), shape=(n_rows, nx + H))
    row_lo = np.concatenate([epoch.demand, np.full(G * H + 2 * G, -np.inf)])
    row_hi = np.concatenate([epoch.demand, -epoch.base_load.ravel(), epoch.free_slots,
                             epoch.free_kv])
    col_hi = np.concatenate([epoch.demand[ig_i], np.full(H, np.inf)])
    return MatrixLP(np.concatenate([np.zeros(nx), epoch.weights]), A, row_lo, row_hi,
                    np.zeros(nx + H), col_hi,
                    np.concatenate([np.full(nx, not relax), np.zeros(H, dtype=bool)]), 0.0,
                    {"assign": slice(0, n), "worker_load": slice(n, n + G * H),
                     "slots": slice(base, base + G), "kv_memory": slice(base + G, n_rows)},
                    {"x": slice(0, nx), "u": slice(nx, nx + H)})


def build_epoch_cvxpy(epoch: Epoch) -> CvxpyModel:
    """The epoch LP relaxation in CVXPY, written independently of the Pyomo model."""
    import cvxpy as cp

    G, H = epoch.base_load.shape
    n = epoch.profile.shape[0]
    x = cp.Variable((n, G), nonneg=True)
    u = cp.Variable(H, nonneg=True)
    assign = cp.sum(x, axis=1) == epoch.demand
    # load[g, h] = base[g, h] + (x^T profile)[g, h] <= u[h]
    load = epoch.base_load + x.T @ epoch.profile <= np.ones((G, 1)) @ cp.reshape(u, (1, H),
                                                                               order="C")
    slots = cp.sum(x, axis=0) <= epoch.free_slots
    kv = epoch.kv_need @ x <= epoch.free_kv
    upper = x <= np.repeat(epoch.demand[:, None], G, axis=1)
    problem = cp.Problem(cp.Minimize(epoch.weights @ u), [assign, load, slots, kv, upper])
    gh = pd.MultiIndex.from_product([range(G), range(H)], names=["worker", "step"])
    return CvxpyModel(problem, "min",
                      {"assign": (assign, pd.RangeIndex(n, name="request")),
                       "worker_load": (load, gh),
                       "slots": (slots, pd.RangeIndex(G, name="worker")),
                       "kv_memory": (kv, pd.RangeIndex(G, name="worker"))},
                      {"x": (x, pd.MultiIndex.from_product([range(n), range(G)],
                                                           names=["request", "worker"])),
                       "u": (u, pd.RangeIndex(H, name="step"))})

