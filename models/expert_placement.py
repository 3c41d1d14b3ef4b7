r"""Expert placement: the placement MILP and the token-dispatch LP (Pyomo; CVXPY for the LP).

Sets and data (one window ``t``, layers are independent)
--------------------------------------------------------
l in L layers, e in E logical experts, g in G GPUs (node n(g)), S slots per GPU, GPU speed s_g
(relative; a GPU's time is tokens / s_g), w_le the tokens routed to expert e of layer l in the
window, k(e) the group of expert e.

Placement MILP (``build(instance)``)
------------------------------------
Variables: ``y[l,e,g]`` in {0,1} (a replica of e on g; at most one per GPU), ``f[l,e,g] >= 0``
(tokens of e served on g), ``z[l] >= 0`` (the layer's makespan, tokens of the slowest GPU per
unit speed).

    min   sum_l z[l]  +  beta * sum_{l,e,g: e not on g before} y[l,e,g]
    s.t.  demand[l,e]:    sum_g f[l,e,g] = w[l,e]              (every token is served)
          link[l,e,g]:    f[l,e,g] <= u[l,e,g] * y[l,e,g]       (only by a placed replica)
          slots[l,g]:     sum_e y[l,e,g] <= S                   (slots per GPU)
          placed[l,e]:    sum_g y[l,e,g] >= min(G, max(1, ceil(w[l,e] / (z_ub s_max))))
          gpu_load[l,g]:  sum_e f[l,e,g] <= s_g z[l]            (the all-to-all barrier)

``u[l,e,g] = min(w[l,e], s_g z_ub)`` with ``z_ub`` an upper bound on the optimal makespan (the
option ``makespan_ub``, e.g. a heuristic plan's value; when not given ``max_e w[l,e] / s_min``,
which is not such a bound but leaves ``u = w``: no strengthening). Both the
strengthened link and the replica-count form of ``placed`` (a replica serves at most
``s_g z_ub`` tokens) are valid for every plan at least as good as ``z_ub``, so they keep an
optimum and cut the LP relaxation. Further valid inequalities: ``lower[l]``:
``z[l] >= lb[l]`` (the combinatorial bound, option ``makespan_lb``); symmetry breaking
``order[l,g]``: GPUs of equal speed are interchangeable (all GPUs when every speed is equal, across
nodes), so their loads may be taken non-increasing (only when no previous placement and no group
locality pin GPUs; the symmetry rows make one-sided price readings lopsided, see below). With
``group_locality=True`` binary ``x[l,k,n]`` puts every group on one node: ``group_node[l,k]``
``sum_n x = 1`` and ``local[l,e,g]``: ``y[l,e,g] <= x[l,k(e),n(g)]``. The migration term (option
``beta`` = the instance's ``migration_cost``; present only with a previous placement and beta > 0)
counts replicas placed where the previous placement had none of that expert.

Warm start and bound of a stopped solve: the built MILP gives every variable the value of the best
per layer of the fast plans (:func:`start_candidates`, dispatched by the LP; the plans are
``servopt.solvers.expert_placement``'s, reached through :data:`START_PLANS`, which that module
fills when imported and ``servopt.solvers.exact.solve`` imports it) that meets its
rows for the options given (``model.warm_start``; none when some layer has no such plan, or by
default with a ``makespan_ub``, see :func:`build`'s ``start``), so a
time-limited ``servopt.solve`` ends with a plan at least that good; :func:`cheap_bound` (the
combinatorial bound summed over the layers) is its bound when HiGHS proved none better (R45 F1:
objective nan and bound nan or 0 on three deepseek_v3 layers in 10 s, where the fast plans are
optimal). The Pyomo build and its hand-over to HiGHS do not read the clock (12 deepseek_v3 layers:
~13 s of build and ~38 s of loading at load 5-6 on a 10 s limit); at that size
``servopt.solvers.expert_placement.exact_placement`` certifies the plan in well under a second.

Dispatch LP (``build(instance, placement=phy2log)``, ``build_cvxpy``)
---------------------------------------------------------------------
For a fixed placement (``phy2log[l, p]``: the expert in physical slot p, on GPU p // S), LPLB's
problem: ``min sum_l z[l]`` s.t. ``demand[l,e]`` and ``gpu_load[l,g]`` as above with flows only
on placed (e, g) pairs.

Units the solver sees
---------------------
HiGHS's tolerances are absolute (feasibility 1e-7, MIP gap 1e-6, matrix entries at or below
1e-9 dropped), so the models hand it loads in units of :func:`load_unit` tokens (the largest
expert load of the modelled layers is 1024 units) and speeds relative to the fastest GPU: ``f``
and the token rows (``demand``, ``link``, ``gpu_load``, ``order``) in load units, ``z`` and the
time rows (``lower``, ``gpu_time``) in load units per fastest-GPU speed. Written in tokens,
loads of 1e-7 gave "optimal" makespan 0 where 2e-7 is a proved bound. With unequal GPU speeds a
GPU's ``gpu_load`` row reads ``sum_e f[l,e,g] <= capacity[l,g]`` and ``gpu_time[l,g]``:
``capacity[l,g] / s_g <= z[l]`` (time units), so no row carries a slow GPU's tiny speed
(``s_g / s_max`` of 1e-9 is dropped by HiGHS). The models carry ``objective_scale`` and
``row_scale``: ``servopt.solve`` and ``solve_model`` report objective, bound and prices in tokens
(per token, per slot, ...), :func:`decisions` reports ``f``, ``capacity`` (tokens) and ``z`` as
documented. A row of one's own on a built model's ``f`` or ``z`` is in those units
(``model.load_unit``, ``model.objective_scale``). The placement MILP's numbers are also rounded
to 36 significant bits, in the direction that keeps it a relaxation (:func:`rounded`), so that
HiGHS gets the same bits, and returns the same placement, whatever the units (its value moves by
< 2e-11 relative). Speed ratios (fastest / slowest) above :data:`MAX_SPEED_RATIO` and migration
costs above :data:`MAX_MIGRATION_RATIO` load units are refused (``InvalidInstanceError``).

Prices (servopt sign convention: improvement per unit of extra capacity)
------------------------------------------------------------------------
``gpu_load[l,g]`` (pi_lg >= 0, sum_g s_g pi_lg = 1 per layer): the reduction of layer l's
makespan (tokens per unit speed, i.e. barrier time in token units) per extra token of capacity
on GPU g; it is positive only on the bottleneck GPUs, and it is the share of the barrier that GPU
g is responsible for. ``demand[l,e]`` (lambda_le): the increase of the makespan per extra token
routed to expert e; lambda_le = min over GPUs hosting e of pi_lg, so an expert whose tokens only
reach bottleneck GPUs is the one worth replicating, and placing one more replica of e on GPU g is
worth (lambda_le - pi_lg) per token it takes (the reduced cost of the column ``f[l,e,g]``).
The MILP's relaxation (``relax=True``) also prices its placement rows: ``link[l,e,g]`` (>= 0),
the makespan saved per extra token that a replica of e on g could serve (u[l,e,g] one higher);
``slots[l,g]`` (>= 0), the makespan saved per extra slot on GPU g; ``placed[l,e]`` (>= 0), the
makespan saved per replica of e fewer required (a valid-inequality row: usually 0);
``gpu_time[l,g]`` (>= 0, only with unequal speeds): the makespan saved per unit of extra time on
GPU g, ``s_g pi_lg`` (summing to 1 per layer). A MIP's prices (the LP with the integer variables
fixed at the incumbent) are the dispatch LP's of the incumbent placement: the link rows of placed
replicas leave that LP (:func:`placed_links`; their price is 0: such a replica may take any share
of its expert), the link row of an absent replica prices it (>= lambda_le - pi_lg), and the rows
over ``y`` (and ``x``) only, ``slots``, ``placed``, ``group_node``, ``local``, have no price there
where they bind (NaN: nothing in them can move; ``relax=True`` prices them; with slack, 0).
These readings hold for the dispatch LP and the MILP's relaxation as built by default; with
``makespan_lb`` the ``lower[l]`` row can take the whole price (every ``gpu_load`` price 0), and the
``order`` rows make the dual of an interchangeable GPU depend on its position in the chain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import scipy.sparse as sp

from servopt.core import InvalidInstanceError
from servopt.core.checks import flag, number, whole_number
from servopt.core.cvxmodel import CvxpyModel
from servopt.instances.expert_placement import Instance

OBJECTIVE_UNIT = "tokens per unit speed"  # sum_l z[l] + beta x moves: the slowest GPU's tokens / speed
CVXPY_RELAXES = False  # build_cvxpy is the dispatch LP of a placement, not the MILP's relaxation
CVXPY_FORM = "the dispatch LP of a given placement (placement=..., default the previous one)"


# -- shared helpers ---------------------------------------------------------------------------
def window_loads(instance: Instance, window: int | None = None) -> np.ndarray:
    """Loads (layers x experts, tokens routed to each expert) of ``window`` (default: the
    planned window)."""
    if window is None:
        return instance.planned_loads
    if isinstance(window, bool) or not isinstance(window, int | np.integer):
        raise InvalidInstanceError(f"window must be a window index (an integer), got {window!r}")
    if not -instance.num_windows <= int(window) < instance.num_windows:
        raise InvalidInstanceError(
            f"window {window} is out of range: the instance has {instance.num_windows} windows")
    return instance.loads[int(window)]


def check_placement(instance: Instance, phy2log: Any, *, distinct: bool = False) -> np.ndarray:
    """Validate a placement (layers x slots of expert ids, -1 empty) against the instance.

    Every expert needs a replica. ``distinct=True`` also enforces the MILP's rule of at most one
    replica of an expert per GPU (DeepSeek's EPLB may put two replicas of one expert on a GPU;
    they then simply share that GPU's tokens).
    """
    placement = np.asarray(phy2log)
    shape = (instance.num_layers, instance.num_slots)
    if placement.shape != shape:
        raise InvalidInstanceError(
            f"placement must be layers x physical slots = {shape[0]} x {shape[1]}, got "
            f"{placement.shape}")
    if placement.dtype.kind not in "iuf" or (placement.dtype.kind == "f" and not (
            np.all(np.isfinite(placement)) and np.all(placement == np.round(placement)))):
        raise InvalidInstanceError("placement must hold integer expert ids (-1 for an empty slot)")
    placement = placement.astype(np.int64)
    E, G, S = instance.num_experts, instance.num_gpus, instance.slots_per_gpu
    if np.any(placement < -1) or np.any(placement >= E):
        raise InvalidInstanceError(f"placement entries must be expert ids 0..{E - 1} or -1")
    hosted = placement_matrix(placement, E, G, S)
    per_gpu = np.zeros((instance.num_layers, E, G), dtype=np.int64)
    layer = np.repeat(np.arange(instance.num_layers), instance.num_slots)
    gpu = np.tile(np.arange(instance.num_slots) // S, instance.num_layers)
    expert = placement.ravel()
    ok = expert >= 0
    np.add.at(per_gpu, (layer[ok], expert[ok], gpu[ok]), 1)
    if distinct and np.any(per_gpu > 1):
        l, e, g = np.argwhere(per_gpu > 1)[0]
        raise InvalidInstanceError(
            f"placement puts two replicas of expert {e} on GPU {g} in layer {l}: at most one "
            f"replica of an expert per GPU")
    missing = ~hosted.any(axis=2)
    if np.any(missing):
        l, e = np.argwhere(missing)[0]
        raise InvalidInstanceError(f"placement leaves expert {e} of layer {l} without a replica")
    return placement


def placement_matrix(phy2log: np.ndarray, E: int, G: int, S: int) -> np.ndarray:
    """Boolean (layers, E, G): expert e has a replica on GPU g."""
    L, R = phy2log.shape
    out = np.zeros((L, E, G), dtype=bool)
    layer = np.repeat(np.arange(L), R)
    gpu = np.tile(np.arange(R) // S, L)
    expert = phy2log.ravel()
    ok = expert >= 0
    out[layer[ok], expert[ok], gpu[ok]] = True
    return out


def makespan_lower_bound(w: np.ndarray, num_gpus: int, slots_per_gpu: int,
                         speed: np.ndarray | None = None) -> np.ndarray:
    """Combinatorial lower bound on each layer's min makespan (w: layers x experts).

    max of (i) total tokens / total speed and (ii) the replica-count bound: a makespan z needs
    at least max(1, ceil(w_e / (z s_max))) replicas of expert e (a GPU serves at most s_g z
    tokens) and at most min(G, ...) per expert, all within G S slots; the smallest z for which
    the counts fit is found exactly over the breakpoints w_e / (k s_max).
    """
    w = np.atleast_2d(np.asarray(w, dtype=float))
    speed = np.ones(num_gpus) if speed is None else np.asarray(speed, dtype=float)
    s_max, G, R = float(speed.max()), num_gpus, num_gpus * slots_per_gpu
    E = w.shape[1]
    total = w.sum(axis=1) / speed.sum()
    # one replica per expert on the fastest GPU at most: w_e / (G s_max) with all G replicas
    single = w.max(axis=1) / (min(G, R - E + 1) * s_max)
    # breakpoints z = w_e / (k s_max), k = 1..G: the replica count of e drops exactly there, so
    # need(z) is constant on [b_i, b_i+1) and the least feasible z is a breakpoint (bisection).
    k = np.arange(1, G + 1)
    cand = np.sort((w[:, :, None] / (k[None, None, :] * s_max)).reshape(w.shape[0], -1), axis=1)
    rows = np.arange(w.shape[0])
    lo = np.zeros(w.shape[0], dtype=np.int64)  # invariant: the answer index is in [lo, hi]
    hi = np.full(w.shape[0], cand.shape[1] - 1, dtype=np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = replicas_needed(w, cand[rows, mid], s_max) <= R
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    count = cand[rows, lo]
    return np.maximum.reduce([total, single, count])


def replicas_needed(w: np.ndarray, z: np.ndarray, s_max: float = 1.0) -> np.ndarray:
    """sum_e max(1, ceil(w_e / (z s_max))): the fewest replicas a makespan z allows, per layer."""
    z = np.maximum(np.asarray(z, dtype=float), 1e-300)[:, None]
    return np.maximum(1.0, np.ceil(w / (z * s_max) - 1e-9)).sum(axis=1)


MAX_SPEED_RATIO = 1e12  # fastest / slowest GPU speed that the solver's rows are written for
MAX_MIGRATION_RATIO = 1e12  # migration cost per replica, in load units, that the MILP is written for


class MigrationRatioError(InvalidInstanceError):
    """The migration cost is beyond :data:`MAX_MIGRATION_RATIO` makespan units of a layer's loads:
    the MILP is not built (a bound without it, the makespan bound, stays valid)."""
LINK_FLOOR = 1e-6  # load units: a link bound s_g z_ub below this is replaced by the load (valid)


LOAD_UNITS = 1024.0  # the largest expert load in load units: HiGHS's absolute tolerances (1e-6 for a
# MIP's rows) are then ~1e-9 of it, as they were in tokens on windows of ~1e3 tokens per expert (at
# 1.0 a MILP's makespan sat 1e-6 of the largest load below its GPU's tokens); a power of two, so
# the division is exact


def load_unit(w: np.ndarray) -> float:
    """Tokens per load unit of the rows HiGHS sees: the largest expert load in ``w`` / 1024
    (:data:`LOAD_UNITS`; 1 when every load is 0). Loads scaled by c give the same rows, hence the
    same answers times c."""
    peak = float(np.max(w, initial=0.0))
    return peak / LOAD_UNITS if peak > 0 else 1.0


def rounded(x: Any, direction: str) -> np.ndarray:
    """``x`` rounded ``"down"`` or ``"up"`` to 36 significant bits (a relative change below 2^-36,
    1.5e-11). The placement MILP's data are rounded so, so that an instance in other units gives
    HiGHS the same bits: a division by the unit leaves last-bit round-off that differs with the
    unit, and HiGHS's path, hence which of equally good placements the MILP returns, follows the
    last bits (a 1e-9 scaling of a tiny instance changed the exact method's cost by 0.2%). The
    directions keep the MILP a relaxation: loads, the migration cost and the makespan lower bound
    down, speeds and the makespan upper bound up, so its value and bound stay lower bounds.
    Always an array, of ``x``'s shape (0-d for a number: ``float()`` takes it)."""
    mantissa, exponent = np.frexp(np.asarray(x, dtype=float))
    step = np.floor if direction == "down" else np.ceil
    return np.asarray(np.ldexp(step(mantissa * 2.0**36) / 2.0**36, exponent))


def solver_units(w: np.ndarray, speed: np.ndarray) -> tuple[float, float]:
    """``(load unit in tokens, fastest speed)`` of the rows HiGHS sees for loads ``w`` (tokens)
    on GPUs of ``speed``: f in load units, z in load units per fastest speed (module docstring).

    Refuses (``InvalidInstanceError``, naming the field) speeds whose fastest / slowest ratio is
    above :data:`MAX_SPEED_RATIO` (a slow GPU's row then needs coefficients beyond what HiGHS
    solves to the reported precision) and loads whose GPU times overflow a double.
    """
    speed = np.asarray(speed, dtype=float)
    s_max, s_min = float(speed.max()), float(speed.min())
    ratio = s_max / s_min
    if not ratio <= MAX_SPEED_RATIO:
        fast, slow = int(np.argmax(speed)), int(np.argmin(speed))
        raise InvalidInstanceError(
            f"gpu_speed: GPU {fast} (speed {s_max:g}) is {ratio:.3g} times as fast as GPU {slow} "
            f"(speed {s_min:g}); the dispatch and placement models are solved for speed ratios up to "
            f"{MAX_SPEED_RATIO:.0e} (a slower GPU's share of the tokens is below double precision "
            f"of the makespan)")
    unit = load_unit(w)
    w = np.asarray(w, dtype=float)
    with np.errstate(over="ignore"):
        longest = float(w.sum(axis=-1).max(initial=0.0)) / s_min
    if not math.isfinite(longest):
        raise InvalidInstanceError(
            f"loads / gpu_speed: a layer's {float(w.sum(axis=-1).max()):g} tokens on a GPU of speed "
            f"{s_min:g} take longer than a double holds (GPU time = tokens / speed)")
    return unit, s_max


# -- Pyomo ------------------------------------------------------------------------------------
def build(
    instance: Instance,
    *,
    relax: bool = False,
    window: int | None = None,
    layers: list[int] | None = None,
    placement: Any = None,
    makespan_ub: Any = None,
    makespan_lb: Any = None,
    beta: float | None = None,
    group_locality: bool = False,
    symmetry: bool = True,
    max_binaries: int = 100_000,
    start: bool | None = None,
) -> pyo.ConcreteModel:
    """The placement MILP, or the dispatch LP when ``placement`` (phy2log) is given.

    window : which window's loads (default the planned window); layers : a subset of layers.
    makespan_ub / makespan_lb : per-layer bounds (scalar or array over ``layers``) for the valid
    inequalities: a ``makespan_lb`` above what a simple plan reaches is refused
    (:func:`feasible_makespan`; with ``group_locality`` the layer's tokens on its slowest GPU), and
    ``servopt.solve`` notes one above the proved bound (:func:`solution_note`); a ``makespan_ub``
    below the optimum leaves no plan (``InfeasibleError``, :func:`explain_infeasible` names it).
    beta : migration cost (tokens per new replica; default the instance's). symmetry and
    group_locality : True or False.
    max_binaries : refuse to build a larger MILP (a deepseek_v3 instance has 475,136 binaries
    over its 58 layers): solve a few ``layers`` at a time, or use the decomposition
    ``servopt.solvers.expert_placement.exact_placement``, which certifies plans at that size.
    start : give the MILP a feasible start (``model.warm_start``, module docstring) when one of
    the fast plans meets its rows: True, False, or None (default: a start unless ``makespan_ub``
    is given, the value of a plan the caller already holds, as ``exact_placement``'s per-layer
    MILPs do; there a start would only change which of equally good plans HiGHS returns).
    """
    flag("symmetry", symmetry)  # ("no" and "abc" were taken as True)
    flag("group_locality", group_locality)
    if start is not None:
        flag("start", start)
    max_binaries = whole_number("max_binaries", max_binaries, low=0)
    w_all = window_loads(instance, window)
    layer_ids = _layer_ids(instance, layers)
    if placement is not None:
        return _build_dispatch(instance, check_placement(instance, placement), w_all, layer_ids)
    E, G, S = instance.num_experts, instance.num_gpus, instance.slots_per_gpu
    binaries = len(layer_ids) * E * G
    if binaries > max_binaries:
        raise InvalidInstanceError(
            f"the placement MILP for {len(layer_ids)} layers x {E} experts x {G} GPUs would have "
            f"{binaries} binaries (limit max_binaries={max_binaries}): pass layers=[...] to solve "
            f"a few layers, or use servopt.solvers.expert_placement.exact_placement")
    speed = instance.speed
    w_tokens = w_all[layer_ids]
    unit, s_max = solver_units(w_tokens, speed)
    time_unit = unit / s_max  # z in this many tokens per unit speed
    # loads in load units, speeds relative to the fastest, bounds in time units (36 bits: rounded)
    w, s = rounded(w_tokens / unit, "down"), rounded(speed / s_max, "up")
    ub = rounded(_per_layer(makespan_ub, len(layer_ids), w_tokens.max(axis=1) / speed.min())
                 / time_unit, "up")
    lb_tokens = _per_layer(makespan_lb, len(layer_ids), np.zeros(len(layer_ids)))
    if makespan_lb is not None:
        _check_lower_bound(instance, w_tokens, lb_tokens, layer_ids, group_locality)
    lb = rounded(lb_tokens / time_unit, "down")
    beta = instance.migration_cost if beta is None else number(
        "beta", beta, lambda v: 0 <= v < math.inf, ">= 0 tokens per moved replica (a number)")
    beta_units = float(rounded(beta / time_unit, "down"))
    prev = instance.previous_placement
    if prev is not None and beta_units > MAX_MIGRATION_RATIO:
        raise MigrationRatioError(
            f"migration_cost: {beta:g} tokens per moved replica is {beta_units:.3g} times the "
            f"makespan unit of these loads ({time_unit:g} tokens per unit speed: the largest expert "
            f"load / 1024 / the fastest speed); the placement MILP is solved for ratios up to "
            f"{MAX_MIGRATION_RATIO:.0e} (beyond, the makespans are lost in the round-off of the "
            f"migration term)")
    m = pyo.ConcreteModel(name="expert_placement")
    m.L, m.E, m.G = pyo.Set(initialize=layer_ids), pyo.RangeSet(0, E - 1), pyo.RangeSet(0, G - 1)
    pos = {l: i for i, l in enumerate(layer_ids)}
    m.y = pyo.Var(m.L, m.E, m.G, domain=pyo.UnitInterval if relax else pyo.Binary)
    m.f = pyo.Var(m.L, m.E, m.G, domain=pyo.NonNegativeReals)
    m.z = pyo.Var(m.L, domain=pyo.NonNegativeReals)

    def cap(l: int, e: int, g: int) -> float:
        # a replica serves at most s_g z_ub; where that is below LINK_FLOOR of a load unit the
        # weaker (valid) w is kept, so that no row carries a coefficient HiGHS would drop
        most = s[g] * ub[pos[l]]
        return float(w[pos[l], e] if most < LINK_FLOOR else min(w[pos[l], e], most))

    m.demand = pyo.Constraint(m.L, m.E, rule=lambda m, l, e: sum(m.f[l, e, g] for g in m.G)
                              == float(w[pos[l], e]))
    m.link = pyo.Constraint(m.L, m.E, m.G, rule=lambda m, l, e, g: m.f[l, e, g]
                            <= cap(l, e, g) * m.y[l, e, g])
    m.slots = pyo.Constraint(m.L, m.G, rule=lambda m, l, g: sum(m.y[l, e, g] for e in m.E) <= S)

    def need(l: int, e: int) -> int:
        if ub[pos[l]] <= 0:
            return 1
        return max(1, min(G, math.ceil(w[pos[l], e] / ub[pos[l]] - 1e-9)))

    m.placed = pyo.Constraint(m.L, m.E, rule=lambda m, l, e: sum(m.y[l, e, g] for g in m.G)
                              >= need(l, e))
    _gpu_rows(m, s, lambda m, l, g: sum(m.f[l, e, g] for e in m.E))
    m.lower = pyo.Constraint(m.L, rule=lambda m, l: m.z[l] >= float(lb[pos[l]]))
    objective = sum(m.z[l] for l in m.L)
    if prev is not None and beta > 0:
        before = placement_matrix(prev, E, G, S)
        objective = objective + float(beta_units) * sum(
            m.y[l, e, g] for l in m.L for e in m.E for g in m.G if not before[l, e, g])
    if group_locality:
        if instance.num_groups % instance.num_nodes:
            raise InvalidInstanceError(
                f"group locality needs the {instance.num_groups} groups to divide among "
                f"{instance.num_nodes} nodes")
        size = E // instance.num_groups
        m.K = pyo.RangeSet(0, instance.num_groups - 1)
        m.N = pyo.RangeSet(0, instance.num_nodes - 1)
        m.x = pyo.Var(m.L, m.K, m.N, domain=pyo.UnitInterval if relax else pyo.Binary)
        m.group_node = pyo.Constraint(m.L, m.K, rule=lambda m, l, k: sum(m.x[l, k, n]
                                                                         for n in m.N) == 1)
        m.local = pyo.Constraint(m.L, m.E, m.G, rule=lambda m, l, e, g: m.y[l, e, g]
                                 <= m.x[l, e // size, g // instance.gpus_per_node])
    if symmetry and prev is None and not group_locality:
        pairs = [(l, g) for l in layer_ids for g in range(G - 1)
                 if (g + 1) % instance.gpus_per_node and speed[g] == speed[g + 1]]
        pairs += [(l, g) for l in layer_ids for g in range(G - 1)
                  if not (g + 1) % instance.gpus_per_node and np.all(speed == speed[0])]
        m.order = pyo.Constraint(pyo.Set(initialize=pairs, dimen=2), rule=lambda m, l, g: sum(
            m.f[l, e, g] for e in m.E) >= sum(m.f[l, e, g + 1] for e in m.E))
    m.obj = pyo.Objective(expr=objective, sense=pyo.minimize)
    # valid inequalities: the MIP's prices (the LP with the placement fixed) are read without
    # them, as the dispatch LP of the incumbent gives them, not soaked up by a cut
    m.valid_inequalities = ("lower", "order") if hasattr(m, "order") else ("lower",)
    m.valid_at_incumbent = placed_links
    if not relax and (start if start is not None else makespan_ub is None):  # a feasible start:
        # servopt.solve hands it to HiGHS (exact: ``warm_start``)
        _set_start(m, instance, w_tokens, layer_ids, w, s, ub, lb, beta_units, hasattr(m, "order"),
                   group_locality)
    m.index_names = {"y": ["layer", "expert", "gpu"], "f": ["layer", "expert", "gpu"],
                     "z": ["layer"], "demand": ["layer", "expert"],
                     "link": ["layer", "expert", "gpu"], "slots": ["layer", "gpu"],
                     "placed": ["layer", "expert"], "gpu_load": ["layer", "gpu"],
                     "lower": ["layer"], "order": ["layer", "gpu"],
                     "capacity": ["layer", "gpu"], "gpu_time": ["layer", "gpu"],
                     "x": ["layer", "group", "node"], "group_node": ["layer", "group"],
                     "local": ["layer", "expert", "gpu"]}
    _in_units(m, unit, time_unit)
    return m


#: The module of the fast plans the MILP starts from (``counts_by_bids``, ``balanced_plan``,
#: ``pack_ring``, ``no_replication_placement``, ``eplb``, ``align_to_previous``, ``lp_dispatch``):
#: ``servopt.solvers.expert_placement``, a layer above, sets itself here when imported (imports go
#: only downward), and ``servopt.solvers.exact.solve`` imports it before it builds. None: the
#: MILP has no start.
START_PLANS: Any = None


def start_candidates(instance: Instance, w: np.ndarray, layer_ids: list[int]) -> list[np.ndarray]:
    """The fast plans (phy2log over ``layer_ids``, for loads ``w`` of those layers) that the
    placement MILP starts from, those of :func:`~servopt.solvers.expert_placement.exact_placement`
    before its MILP: the balanced plan, the ring plan, EPLB's (equal speeds only) and one replica
    per expert (LPT); relabelled onto the previous GPUs, and the previous placement itself (on
    the layers where it hosts every expert), with a migration cost. None without
    :data:`START_PLANS`."""
    plans = START_PLANS
    if plans is None:
        return []
    G, S, speed = instance.num_gpus, instance.slots_per_gpu, instance.speed
    R, E = instance.num_slots, instance.num_experts
    count = plans.counts_by_bids(w, R, min(G, R - E + 1))
    out = [plans.balanced_plan(w, G, S, speed), plans.pack_ring(w, count, G, S, speed),
           plans.no_replication_placement(w, G, S, speed)]
    if instance.gpu_speed is None:
        out.append(plans.eplb(w, R, instance.num_groups, instance.num_nodes, G)[0])
    prev = instance.previous_placement
    if prev is not None and instance.migration_cost > 0:
        before = prev[layer_ids]
        out = [plans.align_to_previous(c, before, G, S, speed) for c in out]
        kept = placement_matrix(before, E, G, S).any(axis=2).all(axis=1)  # layers it serves
        out.append(np.where(kept[:, None], before, out[0]))  # (else the balanced plan's layer)
    return out


def _set_start(m: pyo.ConcreteModel, instance: Instance, w_tokens: np.ndarray,
               layer_ids: list[int], w: np.ndarray, s: np.ndarray, ub: np.ndarray, lb: np.ndarray,
               beta_units: float, ordered: bool, group_locality: bool) -> None:
    """Give every variable of the placement MILP ``m`` the value of a feasible point, the best
    per layer of :func:`start_candidates` (each served by the dispatch LP) that meets every row of
    the model as built (``makespan_ub``'s link caps and replica counts, group locality, the
    symmetry order, after relabelling GPUs of equal speed), and set ``m.warm_start``. Nothing is
    set when some layer has no such plan (a ``makespan_ub`` whose replica counts or per-replica
    caps no candidate meets; a plan above ``makespan_ub`` can meet them: they cap each replica's
    tokens, not a GPU's, and such a start is then feasible for the model as built).
    ``w``, ``s``, ``ub``, ``lb``, ``beta_units``: the model's data, in its units."""
    plans = START_PLANS
    if plans is None:  # (no fast plans: no start, ``m.warm_start`` unset)
        return
    E, G, S = instance.num_experts, instance.num_gpus, instance.slots_per_gpu
    L = len(layer_ids)
    prev = instance.previous_placement
    before = (placement_matrix(prev[layer_ids], E, G, S) if prev is not None and beta_units > 0
              else np.zeros((L, E, G), dtype=bool))
    most = s[None, :] * ub[:, None]  # (L, G): what a replica may serve under makespan_ub
    cap = np.where((most < LINK_FLOOR)[:, None, :], w[:, :, None],
                   np.minimum(w[:, :, None], most[:, None, :]))
    need = np.where(ub[:, None] <= 0, 1, np.maximum(1, np.minimum(
        G, np.ceil(w / np.where(ub > 0, ub, 1.0)[:, None] - 1e-9)))).astype(np.int64)
    size = E // instance.num_groups
    best_value = np.full(L, np.inf)
    best_y, best_f = np.zeros((L, E, G), dtype=bool), np.zeros((L, E, G))
    for phy2log in start_candidates(instance, w_tokens, layer_ids):
        hosted = placement_matrix(phy2log, E, G, S)
        flows, _, _ = plans.lp_dispatch(phy2log, w_tokens, S, instance.speed)
        f = np.zeros((L, E, G))
        ok = phy2log >= 0
        layer = np.repeat(np.arange(L), phy2log.shape[1])[ok.ravel()]
        gpu = np.tile(np.arange(phy2log.shape[1]) // S, L)[ok.ravel()]
        np.add.at(f, (layer, phy2log[ok], gpu), flows[ok])
        total = f.sum(axis=2)  # tokens: in the model's (rounded) load units, each expert's sum w
        f = np.where(total[:, :, None] > 0, f * (w / np.where(total > 0, total, 1.0))[:, :, None],
                     0.0)
        f = np.where(hosted, f, 0.0)
        valid = hosted.any(axis=2).all(axis=1) & (hosted.sum(axis=2) >= need).all(axis=1)
        valid &= (f <= cap * (1 + 1e-12) + 1e-12).all(axis=(1, 2))
        valid &= np.isclose(f.sum(axis=2), w, rtol=1e-12, atol=1e-12).all(axis=1)
        if group_locality:  # every group's replicas on one node
            nodes = hosted.reshape(L, instance.num_groups, size, instance.num_nodes, -1)
            valid &= (nodes.any(axis=(2, 4)).sum(axis=2) <= 1).all(axis=1)
        z = np.maximum((f.sum(axis=1) * (1.0 / s)[None, :]).max(axis=1), lb)
        value = z + beta_units * (hosted & ~before).sum(axis=(1, 2))
        better = valid & (value < best_value)
        best_value[better] = value[better]
        best_y[better], best_f[better] = hosted[better], f[better]
    if not np.all(np.isfinite(best_value)):
        return
    if ordered:  # the ``order`` rows: loads non-increasing along each chain of interchangeable GPUs
        speed = instance.speed
        equal = bool(np.all(speed == speed[0]))
        start = 0
        for g in range(1, G + 1):
            linked = g < G and (equal or (g % instance.gpus_per_node and speed[g] == speed[g - 1]))
            if linked:
                continue
            chain = np.arange(start, g)
            for i in range(L):
                order = chain[np.argsort(-best_f[i][:, chain].sum(axis=0), kind="stable")]
                best_y[i][:, chain], best_f[i][:, chain] = best_y[i][:, order], best_f[i][:, order]
            start = g
    pos = {l: i for i, l in enumerate(layer_ids)}
    load = best_f.sum(axis=1)
    z = np.maximum((load * (1.0 / s)[None, :]).max(axis=1), lb)
    for (l, e, g), var in m.y.items():
        var.value = float(best_y[pos[l], e, g])
    for (l, e, g), var in m.f.items():
        var.value = float(best_f[pos[l], e, g])
    for l, var in m.z.items():
        var.value = float(z[pos[l]])
    if hasattr(m, "capacity"):
        for (l, g), var in m.capacity.items():
            var.value = float(load[pos[l], g])
    if hasattr(m, "x"):
        per_group = best_y.reshape(L, instance.num_groups, size, instance.num_nodes, -1)
        on = per_group.any(axis=(2, 4))  # (L, groups, nodes)
        for (l, k, n), var in m.x.items():
            var.value = float(on[pos[l], k, n])
    m.warm_start = True


def cheap_bound(instance: Instance, *, window: int | None = None, layers: list[int] | None = None,
                **_: Any) -> float:
    """A lower bound of the placement MILP's (and the dispatch LP's) objective, in its reported
    units (tokens per unit speed), reported by ``servopt.solve`` when a stopped solve has no
    better one: the combinatorial bound (:func:`makespan_lower_bound`) summed over the modelled
    layers, on the model's own rounded loads and speeds (:func:`rounded`: those the MILP sees,
    never above the instance's, so the bound holds for the model as built), a relative 1e-12
    below. Valid with every option: the migration term is >= 0, and ``makespan_ub``/``_lb``,
    group locality and the symmetry rows only remove plans (or keep an optimum)."""
    layer_ids = _layer_ids(instance, layers)
    w_tokens = window_loads(instance, window)[layer_ids]
    unit, s_max = solver_units(w_tokens, instance.speed)
    w = rounded(w_tokens / unit, "down")
    s = rounded(instance.speed / s_max, "up")
    bound = makespan_lower_bound(w, instance.num_gpus, instance.slots_per_gpu, s)
    return float(bound.sum() * (unit / s_max) * (1 - 1e-12))


def placed_links(m: pyo.ConcreteModel) -> list[Any]:
    """The ``link[l,e,g]`` rows whose replica is placed (y[l,e,g] at 1 in the model's current
    values, a MIP's incumbent): with y fixed at 1 the row reads ``f <= u``, implied by the demand
    row when u = w and a cut (valid for plans at least as good as ``makespan_ub``) when u < w, so
    the MIP's price LP leaves it out (``servopt.solvers.exact``: ``valid_at_incumbent``) and is
    the dispatch LP of the incumbent placement. Left in, a replica serving all of its expert's
    tokens has its link and demand rows both binding, and HiGHS put every demand price at the
    bottleneck's (demand 1 for an expert on an idle GPU, where one more token costs nothing)."""
    return [m.link[key] for key in m.link
            if m.y[key].value is not None and round(m.y[key].value) == 1]


def _gpu_rows(m: pyo.ConcreteModel, s: np.ndarray, tokens: Any) -> None:
    """``gpu_load[l,g]``: the GPU's tokens ``tokens(m, l, g)`` <= s_g z[l] (equal speeds), or
    <= capacity[l,g] with ``gpu_time[l,g]``: capacity[l,g] / s_g <= z[l] (unequal speeds: the
    speed stays out of the token row; module docstring). ``s``: speeds relative to the fastest."""
    if np.all(s == 1.0):
        m.gpu_load = pyo.Constraint(m.L, m.G, rule=lambda m, l, g: tokens(m, l, g) <= m.z[l])
        return
    m.capacity = pyo.Var(m.L, m.G, domain=pyo.NonNegativeReals)
    m.gpu_load = pyo.Constraint(m.L, m.G, rule=lambda m, l, g: tokens(m, l, g) <= m.capacity[l, g])
    m.gpu_time = pyo.Constraint(m.L, m.G, rule=lambda m, l, g: float(1.0 / s[g]) * m.capacity[l, g]
                                <= m.z[l])


def _in_units(m: pyo.ConcreteModel, unit: float, time_unit: float) -> None:
    """Record the units of a built model (module docstring): reported = scale x the model's."""
    m.load_unit = unit
    m.objective_scale = time_unit
    m.row_scale = {"demand": unit, "link": unit, "gpu_load": unit, "order": unit,
                   "lower": time_unit, "gpu_time": time_unit}
    m.value_scale = {"f": unit, "capacity": unit, "z": time_unit}


def _per_layer(value: Any, n: int, default: np.ndarray) -> np.ndarray:
    if value is None:
        return np.asarray(default, dtype=float)
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.size not in (1, n):
        raise InvalidInstanceError(f"makespan bounds must be a number or one number per layer ({n}), "
                                   f"got {value!r}")
    arr = np.broadcast_to(arr.astype(float), (n,)).copy()
    if not np.all(np.isfinite(arr)):
        raise InvalidInstanceError("makespan bounds must be finite numbers of tokens")
    return arr


def _layer_ids(instance: Instance, layers: Any) -> list[int]:
    """``layers`` (None: every layer) as a list of layer indices, refused by name otherwise
    (``layers=0`` was a TypeError: a list of one layer is ``layers=[0]``)."""
    if layers is None:
        return list(range(instance.num_layers))
    rule = (f"layers must be a non-empty list of layer indices in 0..{instance.num_layers - 1} "
            f"(one layer: layers=[0]), got {layers!r}")
    if not isinstance(layers, list | tuple | range | np.ndarray) or np.ndim(layers) != 1:
        raise InvalidInstanceError(rule)
    ids = list(layers)
    if not ids or any(isinstance(x, bool | np.bool_) or not isinstance(x, int | np.integer)
                      or not 0 <= x < instance.num_layers for x in ids):
        raise InvalidInstanceError(rule)
    return [int(x) for x in ids]


def feasible_makespan(instance: Instance, w: np.ndarray) -> np.ndarray:
    """Each layer's makespan (tokens per unit speed) under a cheap plan the placement MILP allows
    (without group locality): one replica per expert, heaviest first, each to the GPU with a free
    slot where it would finish first (LPT; ``E <= G S`` slots, so one is always free). An upper
    bound on every layer's least makespan, so a valid ``makespan_lb`` never exceeds it (loose
    where replicating a hot expert pays: :func:`solution_note` covers the rest)."""
    w = np.atleast_2d(np.asarray(w, dtype=float))
    G, S, speed = instance.num_gpus, instance.slots_per_gpu, instance.speed
    L, E = w.shape
    order = np.argsort(-w, axis=1, kind="stable")
    load, used, rows = np.zeros((L, G)), np.zeros((L, G), dtype=np.int64), np.arange(L)
    for k in range(E):
        size = w[rows, order[:, k]]
        finish = np.where(used >= S, np.inf, (load + size[:, None]) / speed)
        gpu = np.argmin(finish, axis=1)
        load[rows, gpu] += size
        used[rows, gpu] += 1
    return (load / speed).max(axis=1)


def _check_lower_bound(instance: Instance, w: np.ndarray, lb: np.ndarray,
                       layer_ids: list[int], group_locality: bool = False) -> None:
    """Refuse a ``makespan_lb`` above a makespan some placement reaches (:func:`feasible_makespan`;
    with ``group_locality``, whose plans it does not respect, the layer's tokens on its slowest
    GPU, a makespan no placement exceeds): the row ``z[l] >= lb[l]`` would then cut off every
    optimum, and the MILP's "optimal" value would be the cut's (R21: makespan_lb=1e9 on the tiny
    preset came back optimal 2e9 - 0.01)."""
    reach = (w.sum(axis=1) / float(instance.speed.min()) if group_locality
             else feasible_makespan(instance, w))
    over = np.nonzero(lb > reach * (1 + 1e-9))[0]  # (NaN compares False: nothing refused)
    if over.size:
        i = int(over[0])
        raise InvalidInstanceError(
            f"makespan_lb={lb[i]:.10g} for layer {layer_ids[i]} is above the makespan "
            f"{reach[i]:.10g} (tokens per unit speed) that "
            + ("no placement of that layer exceeds (all its tokens on its slowest GPU)"
               if group_locality else "a simple placement of that layer already reaches")
            + ": a lower bound must not exceed the optimum (leave makespan_lb out, or pass the "
            "proved one, makespan_lower_bound(loads, gpus, slots_per_gpu, speed))")


def solution_note(instance: Instance, **options: Any) -> str | None:
    """What ``servopt.solve``'s value rests on (``solution.info["note"]``): with a
    ``makespan_lb`` above the combinatorial bound (:func:`makespan_lower_bound`) on some layer the
    "optimal" value is optimal only if that user cut is a valid lower bound (one above a simple
    plan's makespan is refused by :func:`build`, one below it cannot be checked cheaply); None
    otherwise."""
    if options.get("makespan_lb") is None or options.get("placement") is not None:
        return None
    layer_ids = _layer_ids(instance, options.get("layers"))
    w = window_loads(instance, options.get("window"))[layer_ids]
    lb = _per_layer(options["makespan_lb"], len(layer_ids), np.zeros(len(layer_ids)))
    proved = makespan_lower_bound(w, instance.num_gpus, instance.slots_per_gpu, instance.speed)
    above = [layer_ids[i] for i in np.nonzero(lb > proved * (1 + 1e-9))[0]]
    if not above:
        return None
    return (f"makespan_lb is above the proved makespan bound on layer(s) "
            f"{', '.join(map(str, above[:8]))}{' ...' if len(above) > 8 else ''}: the value is "
            f"optimal only if your makespan_lb is a valid lower bound (a cut above a layer's least "
            f"makespan makes it wrong)")


def _build_dispatch(instance: Instance, placement: np.ndarray, w_all: np.ndarray,
                    layer_ids: list[int]) -> pyo.ConcreteModel:
    E, G, S = instance.num_experts, instance.num_gpus, instance.slots_per_gpu
    speed = instance.speed
    unit, s_max = solver_units(w_all[layer_ids], speed)
    w, s = w_all / unit, speed / s_max  # load units, speeds relative to the fastest
    hosted = placement_matrix(placement, E, G, S)
    pairs = [(l, e, g) for l in layer_ids for e, g in zip(*np.nonzero(hosted[l]), strict=True)]
    m = pyo.ConcreteModel(name="expert_dispatch")
    m.L, m.E, m.G = pyo.Set(initialize=layer_ids), pyo.RangeSet(0, E - 1), pyo.RangeSet(0, G - 1)
    m.P = pyo.Set(initialize=[(int(l), int(e), int(g)) for l, e, g in pairs], dimen=3)
    m.f = pyo.Var(m.P, domain=pyo.NonNegativeReals)
    m.z = pyo.Var(m.L, domain=pyo.NonNegativeReals)
    by_expert: dict[tuple[int, int], list] = {}
    by_gpu: dict[tuple[int, int], list] = {}
    for key in m.P:
        by_expert.setdefault(key[:2], []).append(key)
        by_gpu.setdefault((key[0], key[2]), []).append(key)
    m.demand = pyo.Constraint(m.L, m.E, rule=lambda m, l, e: sum(
        m.f[k] for k in by_expert[l, e]) == float(w[l, e]))
    _gpu_rows(m, s, lambda m, l, g: sum(m.f[k] for k in by_gpu.get((l, g), [])))
    m.obj = pyo.Objective(expr=sum(m.z[l] for l in m.L), sense=pyo.minimize)
    m.index_names = {"f": ["layer", "expert", "gpu"], "z": ["layer"],
                     "demand": ["layer", "expert"], "gpu_load": ["layer", "gpu"],
                     "capacity": ["layer", "gpu"], "gpu_time": ["layer", "gpu"]}
    _in_units(m, unit, unit / s_max)
    return m


def decisions(model: pyo.ConcreteModel, instance: Instance) -> dict[str, pd.Series]:
    """Primal values: ``z`` per layer (tokens per unit speed), ``f`` per (layer, expert, gpu) and
    ``capacity`` per (layer, gpu) (tokens), ``y`` (and ``x``) when placing."""
    out: dict[str, pd.Series] = {}
    names = model.index_names
    scale = getattr(model, "value_scale", {})  # the model's f, capacity and z are in solver units
    for var in model.component_objects(pyo.Var, active=True):
        keys = list(var.keys())
        values = np.array([var[k].value if var[k].value is not None else np.nan for k in keys])
        values = values * float(scale.get(var.local_name, 1.0))
        index = (pd.MultiIndex.from_tuples(keys, names=names[var.local_name])
                 if keys and isinstance(keys[0], tuple)
                 else pd.Index(keys, name=names[var.local_name][0]))
        out[var.local_name] = pd.Series(values, index=index, name=var.local_name)
    return out


def explain_infeasible(instance: Instance, **options: Any) -> str:
    """Domain reason an expert placement model has no solution (for ``InfeasibleError``), in
    terms of the ``options`` it was built with: a ``makespan_ub`` (the MILP keeps only plans at
    least that good: below a layer's least makespan none is left), ``group_locality``, else slots
    against experts."""
    reasons = []
    ub = options.get("makespan_ub")
    if ub is not None and options.get("placement") is None:
        try:
            layer_ids = _layer_ids(instance, options.get("layers"))
            w = window_loads(instance, options.get("window"))[layer_ids]
            ub_tokens = _per_layer(ub, len(layer_ids), np.zeros(len(layer_ids)))
        except InvalidInstanceError:
            layer_ids = []
        proved = (makespan_lower_bound(w, instance.num_gpus, instance.slots_per_gpu, instance.speed)
                  if layer_ids else np.zeros(0))
        below = np.nonzero(ub_tokens < proved * (1 - 1e-9))[0] if layer_ids else np.zeros(0, int)
        if below.size:
            i = int(below[0])
            reasons.append(
                f"makespan_ub={ub_tokens[i]:.10g} is below layer {layer_ids[i]}'s least possible "
                f"makespan (the proved bound {proved[i]:.10g} tokens per unit speed): the model "
                f"with makespan_ub keeps only placements at least that good, and none is; raise "
                f"makespan_ub or leave it out")
        else:
            reasons.append(
                f"makespan_ub={ub!r} leaves no placement: the model with makespan_ub keeps only "
                f"placements at least that good (each replica serves at most the GPU's speed x "
                f"makespan_ub tokens); raise makespan_ub or leave it out")
    if options.get("group_locality") is True:
        reasons.append(
            f"group_locality=True puts each of the {instance.num_groups} expert groups on one of "
            f"the {instance.num_nodes} nodes ({instance.gpus_per_node} GPUs x "
            f"{instance.slots_per_gpu} slots each), which cannot be met")
    if reasons:
        return "no placement fits: " + "; ".join(reasons)
    return (f"no placement fits: {instance.num_experts} experts need a slot each and "
            f"{instance.num_slots} slots exist (or group locality cannot be met)")


# -- matrix path and CVXPY for the dispatch LP ---------------------------------------------------
def dispatch_matrices(placement: np.ndarray, w: np.ndarray, slots_per_gpu: int,
                      speed: np.ndarray) -> dict[str, Any]:
    """Sparse matrices of the dispatch LP over all layers, in solver units (variables: one flow
    per occupied slot, then one makespan per layer).

    Layer l's flows and demand rows are in ``load_unit[l]`` tokens (:func:`load_unit` of the
    layer); its makespan is in ``load_unit[l] / speed_unit`` (``speed_unit``: the
    fastest speed), and GPU g's row is its time, ``sum of its flows / s'_g - z <= 0`` with
    ``s'_g = speed[g] / speed_unit``: no entry below 1, and loads of any scale give the same
    matrices (module docstring). In tokens: a flow is x * load_unit[layer], a makespan
    z * load_unit[layer] / speed_unit, and GPU g's row dual (servopt's sign; summing to 1 per
    layer) / speed[g] is its price per token of capacity. Returns ``c``, ``A_eq``/``b_eq`` (rows:
    layer-major experts, ``demand``), ``A_ub``/``b_ub`` (rows: layer-major GPUs, ``gpu_load``),
    ``slot_layer``/``slot_index`` of each flow, ``load_unit`` and ``speed_unit``. Refuses speeds
    beyond :data:`MAX_SPEED_RATIO` (:func:`solver_units`).
    """
    L, R = placement.shape
    E = w.shape[1]
    G = R // slots_per_gpu
    speed = np.asarray(speed, dtype=float)
    _, s_max = solver_units(w, speed)
    peak = w.max(axis=1)
    unit = np.where(peak > 0, peak / LOAD_UNITS, 1.0)  # per layer: load_unit of that layer
    occupied = placement >= 0
    slot_layer, slot_index = np.nonzero(occupied)
    n_flow = slot_layer.size
    expert = placement[slot_layer, slot_index]
    gpu = slot_index // slots_per_gpu
    cols = np.arange(n_flow)
    A_eq = sp.csr_matrix((np.ones(n_flow), (slot_layer * E + expert, cols)),
                         shape=(L * E, n_flow + L))
    rows_ub = np.concatenate([slot_layer * G + gpu, np.arange(L * G)])
    cols_ub = np.concatenate([cols, n_flow + np.repeat(np.arange(L), G)])
    vals_ub = np.concatenate([s_max / speed[gpu], -np.ones(L * G)])
    A_ub = sp.csr_matrix((vals_ub, (rows_ub, cols_ub)), shape=(L * G, n_flow + L))
    c = np.concatenate([np.zeros(n_flow), np.ones(L)])
    return {"c": c, "A_eq": A_eq, "b_eq": (w / unit[:, None]).reshape(-1),
            "A_ub": A_ub, "b_ub": np.zeros(L * G), "slot_layer": slot_layer,
            "slot_index": slot_index, "load_unit": unit, "speed_unit": s_max}


def build_cvxpy(instance: Instance, *, placement: Any = None,
                window: int | None = None) -> CvxpyModel:
    """The dispatch LP in CVXPY (placement: phy2log; default the instance's previous placement),
    in solver units like :func:`build` (``objective_scale``, ``row_scale``: reported in tokens)."""
    import cvxpy as cp

    if placement is None:
        placement = instance.previous_placement
    if placement is None:
        raise InvalidInstanceError(
            "the dispatch LP needs a placement: pass placement=phy2log (layers x slots)")
    placement = check_placement(instance, placement)
    w_tokens = window_loads(instance, window)
    L, E, G = instance.num_layers, instance.num_experts, instance.num_gpus
    S, speed = instance.slots_per_gpu, instance.speed
    unit, s_max = solver_units(w_tokens, speed)
    w, s = w_tokens / unit, speed / s_max
    hosted = placement_matrix(placement, E, G, S)
    l_idx, e_idx, g_idx = np.nonzero(hosted)
    n = l_idx.size
    f = cp.Variable(n, nonneg=True)
    z = cp.Variable(L, nonneg=True)
    to_expert = sp.csr_matrix((np.ones(n), (l_idx * E + e_idx, np.arange(n))), shape=(L * E, n))
    to_gpu = sp.csr_matrix((np.ones(n), (l_idx * G + g_idx, np.arange(n))), shape=(L * G, n))
    each = sp.kron(sp.eye(L), np.ones((G, 1)), format="csr")  # z[l] on each of its GPUs' rows
    demand = to_expert @ f == w.reshape(-1)
    idx_le = pd.MultiIndex.from_product([range(L), range(E)], names=["layer", "expert"])
    idx_lg = pd.MultiIndex.from_product([range(L), range(G)], names=["layer", "gpu"])
    idx_f = pd.MultiIndex.from_arrays([l_idx, e_idx, g_idx], names=["layer", "expert", "gpu"])
    constraints = {"demand": (demand, idx_le)}
    variables = {"f": (unit * f, idx_f), "z": ((unit / s_max) * z, pd.RangeIndex(L, name="layer"))}
    if np.all(s == 1.0):
        constraints["gpu_load"] = (to_gpu @ f <= each @ z, idx_lg)
    else:  # the speed stays out of the token row (module docstring)
        capacity = cp.Variable(L * G, nonneg=True)
        constraints["gpu_load"] = (to_gpu @ f <= capacity, idx_lg)
        constraints["gpu_time"] = (sp.diags(np.tile(1.0 / s, L)) @ capacity <= each @ z, idx_lg)
        variables["capacity"] = (unit * capacity, idx_lg)
    problem = cp.Problem(cp.Minimize(cp.sum(z)), [con for con, _ in constraints.values()])
    model = CvxpyModel(problem, "min", constraints, variables)
    model.load_unit = unit
    model.objective_scale = unit / s_max  # servopt.solve reports objective, bound and prices in tokens
    model.row_scale = {"demand": unit, "gpu_load": unit, "gpu_time": unit / s_max}
    return model


__all__ = ["LINK_FLOOR", "LOAD_UNITS", "MAX_MIGRATION_RATIO", "MAX_SPEED_RATIO", "OBJECTIVE_UNIT",
           "MigrationRatioError", "build", "build_cvxpy", "cheap_bound",
           "check_placement", "decisions", "dispatch_matrices", "explain_infeasible",
           "feasible_makespan", "load_unit", "makespan_lower_bound", "placed_links",
           "placement_matrix", "rounded",
           "solution_note", "solver_units", "start_candidates", "window_loads"]
