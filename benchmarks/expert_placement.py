"""Expert placement evaluator: plan on the history, score the next window's GPU loads.

For a plan (a placement ``phy2log`` and its dispatch semantics) and a window's expert loads,
:func:`gpu_times` computes the realised per-GPU time (tokens / speed) per layer by this module's
own code:

- ``even``: every replica of an expert serves an equal share (what EPLB assumes);
- ``lp``: the min-max dispatch LP per layer (LPLB), solved here with SciPy's HiGHS on matrices
  built here (independent of the solver layer's highspy path);
- ``price``: the flows the plan's price-dispatch rule produces; they are checked here (non-
  negative, only on occupied slots, every expert's tokens served) before they are scored.

Cost = sum over layers of the max GPU time on the next window (tokens per unit speed: tokens
with equal speeds 1; the barrier of each layer's all-to-all) + ``migration_cost`` x migrations,
the objective of the placement model (:mod:`servopt.models.expert_placement`): a migration is a
replica placed on a GPU where the instance's ``previous_placement`` had no replica of that
expert, counted here by this module's own code (0 without a previous placement).
Balancedness = mean / max GPU time, per layer and aggregated over layers as sum of means / sum of
maxes; with equal GPU speeds the mean is fixed by the window, so without migrations min cost =
max balancedness (with unequal speeds the mean time depends on where tokens go, and a cheaper plan
can be less balanced).
The bound is the combinatorial lower bound on the hindsight-optimal placement for the next
window (no plan made without seeing it can do better; migrations count >= 0, so it bounds the cost
with migrations too), or the hindsight placement MILP's bound (migration term included) on small
instances.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from servopt.benchmarks.harness import Bound, OptionError, Outcome, checked_keywords, refusing, written_at
from servopt.core import InvalidInstanceError
from servopt.core.checks import number, whole_number
from servopt.core.registry import layer_module
from servopt.instances.expert_placement import Instance
from servopt.models.expert_placement import check_placement, makespan_lower_bound, solver_units
from servopt.solvers.expert_placement import DISPATCHES, Plan, price_dispatch

SENSE = "min"
COST = ("sum over layers of the next window's max GPU time (tokens per unit speed) + "
        "migration_cost x migrations")
DEFAULT_METHODS = ("no_replication", "eplb", "eplb_lp", "eplb_price", "bid_price",
                   "bid_price_lp", "exact")


def _slot_expert_counts(phy2log: np.ndarray, E: int) -> np.ndarray:
    L, R = phy2log.shape
    counts = np.zeros((L, E))
    rows = np.repeat(np.arange(L), R)
    ok = phy2log.ravel() >= 0
    np.add.at(counts, (rows[ok], phy2log.ravel()[ok]), 1.0)
    return counts


def _times_from_flows(flows: np.ndarray, instance: Instance) -> np.ndarray:
    L = flows.shape[0]
    G, S = instance.num_gpus, instance.slots_per_gpu
    return flows.reshape(L, G, S).sum(axis=2) / instance.speed


def _lp_times(phy2log: np.ndarray, w: np.ndarray, instance: Instance) -> np.ndarray:
    """Per-layer min-max dispatch by SciPy linprog; returns GPU times (layers, GPUs).

    Each layer's LP is written in the models' solver units (``solver_units``: 1/1024 of its
    largest expert load, speeds relative to the fastest GPU) with every GPU's row in time
    (tokens / relative speed <= makespan): HiGHS's tolerances are absolute, so in tokens loads
    of 1e-7 were served short and a GPU of relative speed 1e-9 had its speed dropped (the LP
    "infeasible"). Speed ratios beyond what the models are solved for are refused, as there."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    L, R = phy2log.shape
    E, G, S = instance.num_experts, instance.num_gpus, instance.slots_per_gpu
    speed = instance.speed
    times = np.zeros((L, G))
    for layer in range(L):  # one small LP per layer: independent, so the layers never mix
        unit, fastest = solver_units(w[layer], speed)  # tokens per load unit; refuses bad speeds
        slowness = fastest / speed  # a GPU's time per token, in units of the fastest GPU's
        slots = np.nonzero(phy2log[layer] >= 0)[0]
        n = slots.size
        experts, gpus = phy2log[layer, slots], slots // S
        a_eq = sp.coo_matrix((np.ones(n), (experts, np.arange(n))), shape=(E, n + 1))
        a_ub = sp.hstack([sp.coo_matrix((slowness[gpus], (gpus, np.arange(n))), shape=(G, n)),
                          sp.csr_matrix(-np.ones((G, 1)))])
        cost = np.zeros(n + 1)
        cost[-1] = 1.0
        res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(G), A_eq=a_eq, b_eq=w[layer] / unit,
                      bounds=(0, None), method="highs")
        if res.status != 0:
            raise InvalidInstanceError(f"layer {layer}: dispatch LP failed ({res.message})")
        flows = np.zeros(R)
        flows[slots] = np.maximum(res.x[:n], 0.0) * unit
        times[layer] = flows.reshape(G, S).sum(axis=1) / speed
    return times


def gpu_times(instance: Instance, plan: Plan, w: np.ndarray, dispatch: str | None = None
              ) -> np.ndarray:
    """Realised GPU times (layers, GPUs) of ``plan`` on loads ``w`` (layers x experts, tokens):
    each GPU's tokens / its speed, in tokens per unit speed (tokens when every speed is 1), under
    ``dispatch`` (default: the plan's own)."""
    phy2log = check_placement(instance, plan.phy2log)
    dispatch = dispatch or plan.dispatch
    if dispatch == "even":
        counts = _slot_expert_counts(phy2log, instance.num_experts)
        share = w / np.maximum(counts, 1.0)
        flows = np.where(phy2log >= 0, np.take_along_axis(share, np.maximum(phy2log, 0), 1), 0.0)
        return _times_from_flows(flows, instance)
    if dispatch == "lp":
        return _lp_times(phy2log, w, instance)
    if dispatch == "price":
        if plan.gpu_price is None:
            raise InvalidInstanceError("price dispatch needs the plan's gpu_price")
        flows = price_dispatch(phy2log, w, plan.gpu_price, instance.slots_per_gpu, instance.speed)
        _check_flows(flows, phy2log, w)
        return _times_from_flows(flows, instance)
    raise InvalidInstanceError(f"unknown dispatch {dispatch!r}; use even, lp or price")


def _check_flows(flows: np.ndarray, phy2log: np.ndarray, w: np.ndarray) -> None:
    """Flows non-negative, only on occupied slots and serving every expert's tokens, each to
    1e-9 (negative, stray) or 1e-7 (served) of the layer's largest load: relative, so the
    checks mean the same at any load scale."""
    L, E = w.shape
    scale = w.max(axis=1, keepdims=True)  # tokens: the layer's largest expert load
    if np.any(flows < -1e-9 * scale):
        raise InvalidInstanceError("dispatch sent a negative number of tokens")
    if np.any(np.abs(np.where(phy2log < 0, flows, 0.0)) > 1e-9 * scale):
        raise InvalidInstanceError("dispatch sent tokens to an empty slot")
    served = np.zeros((L, E))
    rows = np.repeat(np.arange(L), phy2log.shape[1])
    ok = phy2log.ravel() >= 0
    np.add.at(served, (rows[ok], phy2log.ravel()[ok]), flows.ravel()[ok])
    if np.any(np.abs(served - w) > 1e-7 * np.abs(w) + 1e-9 * scale):
        raise InvalidInstanceError("dispatch did not serve every expert's tokens exactly")


def balancedness(times: np.ndarray) -> float:
    """Aggregated over layers: sum of mean GPU times / sum of max GPU times (1 = perfect)."""
    peak = times.max(axis=1).sum()
    return float(times.mean(axis=1).sum() / peak) if peak > 0 else 1.0


def resolve(method: Any) -> Any:
    """The placement method a ``POLICIES`` name or a callable ``instance -> Plan`` stands for."""
    if isinstance(method, str):
        policies = layer_module("expert_placement", "solvers").POLICIES  # a replaced layer's
        if method not in policies:
            raise InvalidInstanceError(f"unknown method {method!r}; known: {sorted(policies)}")
        return policies[method]
    if not callable(method):
        raise InvalidInstanceError("method must be a POLICIES name or a callable instance -> Plan")
    return method


ARRAYS = ("loads", "history", "planned_loads", "next_loads", "previous_placement", "gpu_speed")


def _read_only_write(exc: ValueError, method: Any) -> InvalidInstanceError:
    """The error for a method that wrote into one of the instance's (read-only) arrays: its
    name, the line of its code that wrote (the deepest frame outside numpy), and what to do."""
    name = method if isinstance(method, str) else getattr(method, "__name__", type(method).__name__)
    where, named = written_at(exc, ARRAYS)
    example = named[0] if len(named) == 1 else "history"
    return InvalidInstanceError(
        f"the placement method {name!r} wrote into a read-only array of the instance{where}: the "
        "instance's arrays (loads and its views history, planned_loads, next_loads; "
        "previous_placement; gpu_speed) are the evaluator's and read-only; copy one first "
        f"(np.array(instance.{example})) to change it")


def check_options(*, dispatch: Any = None, detail: Any = True) -> None:
    """The ``check`` of :func:`evaluate`: ``dispatch`` None (the plan's own) or one of
    :data:`DISPATCHES`, refused before the method plans (an unknown name was refused only after
    it, and ``""``, 0 or False silently meant the plan's own); ``detail`` (True or False) is
    checked by :func:`~servopt.benchmarks.harness.checked_keywords`."""
    if dispatch is not None and not (isinstance(dispatch, str) and dispatch in DISPATCHES):
        raise OptionError(f"unknown dispatch {dispatch!r}; use even, lp or price (or None: the "
                          "plan's own)", option="dispatch")


@checked_keywords(check=check_options)
def evaluate(instance: Instance, method: Any, *, dispatch: str | None = None,
             detail: bool = True) -> Outcome:
    """Plan with ``method`` on the history and score it on the next window.

    cost: sum over layers of the next window's max GPU time (tokens per unit speed) under the
    plan's dispatch (or ``dispatch``) + ``migration_cost`` x ``migrations`` (replicas placed where
    the previous placement had none of that expert). With unequal GPU speeds the LP can have
    several optimal dispatches of the same makespan and different balancedness; the
    ``balancedness_lp`` reported is the one HiGHS returns.

    Migrations count (expert, GPU) pairs as numbered in ``previous_placement``. ``eplb``,
    ``eplb_lp``, ``eplb_price`` and ``no_replication`` ignore the previous placement (as EPLB
    does), so their migrations and cost depend on how the deployed GPUs are labelled (tiny
    preset, deployed = EPLB's plan, migration cost 5: eplb 481.83 with 0 migrations, 541.83 with
    12 once the deployed GPUs are renumbered); ``bid_price``, ``bid_price_lp`` and ``exact`` align
    their plan to it when ``migration_cost`` > 0 and score the same under any numbering of
    equal-speed GPUs, up to ties between plans (see :mod:`servopt.solvers.expert_placement`;
    the greedy's index tie-breaks are not small: with a previous placement they moved
    ``bid_price``'s cost by up to 7.1% over four renumberings of the small preset, migration
    cost 5); ``bid_price``, ``bid_price_lp`` and ``no_replication`` also under any numbering
    of GPUs whose speeds all differ (renumbered with their speeds; GPUs that share a speed tie as
    above: 2.3% with two speed tiers), while ``eplb``, like DeepSeek's, ignores ``gpu_speed``
    and then depends on it.
    A method that writes into the instance's (read-only) arrays gets an
    ``InvalidInstanceError`` naming it and the line that wrote.

    Metrics (``Outcome.metrics``; name, unit, meaning; "detail" marks those only with ``detail``):

    - ``balancedness`` (ratio in (0, 1]): next window, sum over layers of mean / sum of max GPU time.
    - ``max_load`` (tokens per unit speed): next window's max GPU time, mean over layers.
    - ``mean_load`` (tokens per unit speed): next window's mean GPU time, mean over layers.
    - ``makespan_tokens`` (tokens per unit speed): the cost's first term, sum over layers of the
      next window's max GPU time.
    - ``makespan`` (tokens per unit speed): deprecated duplicate of ``makespan_tokens`` (batch
      scheduling's ``makespan`` is in rounds; committed CSVs and scripts still read this name).
    - ``migrations`` (replicas): replicas on a GPU that held no replica of their expert before.
    - ``migration_cost`` (tokens per unit speed): the cost's second term, beta x migrations.
    - ``balancedness_same`` (ratio, detail): balancedness on the planned window.
    - ``gap_same`` (fraction, detail): planned-window cost (plan's dispatch, same migration
      cost) / the planned window's makespan bound - 1.
    - ``balancedness_even`` (ratio, detail): next window, the placement served by even split.
    - ``balancedness_lp`` (ratio, detail): next window, the placement served by the dispatch LP.
    - ``plan_ms`` (ms, detail): the method's planning time for all layers.
    - ``colocated`` (replicas, detail): extra replicas of an expert sharing a GPU (only EPLB
      makes them).
    """
    if not isinstance(instance, Instance):
        raise InvalidInstanceError("evaluate needs a servopt expert_placement Instance, got "
                                   f"{type(instance).__name__}")
    policy = resolve(method)
    planning = planning_view(instance)
    start = time.perf_counter()
    try:
        plan = policy(planning)
    except ValueError as exc:
        if isinstance(exc, InvalidInstanceError) or "read-only" not in str(exc):
            raise
        raise _read_only_write(exc, method) from exc
    wall = time.perf_counter() - start
    if not isinstance(plan, Plan):
        raise InvalidInstanceError("a method must return a servopt expert_placement Plan, got "
                                   f"{type(plan).__name__}")
    chosen = dispatch or plan.dispatch
    placement = check_placement(instance, plan.phy2log)  # checked: the int array scored below
    nxt = gpu_times(instance, plan, instance.next_loads, chosen)
    moved = migrations(instance, placement)
    moving = instance.migration_cost * moved
    cost = float(nxt.max(axis=1).sum()) + moving
    metrics: dict[str, float] = {"balancedness": balancedness(nxt),
                                 "max_load": float(nxt.max(axis=1).mean()),
                                 "mean_load": float(nxt.mean(axis=1).mean()),
                                 "makespan_tokens": float(nxt.max(axis=1).sum()),
                                 "makespan": float(nxt.max(axis=1).sum()),  # deprecated name
                                 "migrations": float(moved), "migration_cost": moving}
    if detail:
        same = gpu_times(instance, plan, instance.planned_loads, chosen)
        bound_same = makespan_lower_bound(instance.planned_loads, instance.num_gpus,
                                          instance.slots_per_gpu, instance.speed).sum()
        metrics["balancedness_same"] = balancedness(same)
        cost_same = float(same.max(axis=1).sum()) + moving
        metrics["gap_same"] = float(cost_same / bound_same - 1) if bound_same else 0.0
        for other in ("even", "lp"):
            metrics[f"balancedness_{other}"] = (metrics["balancedness"] if other == chosen else
                                                balancedness(gpu_times(instance, plan,
                                                                       instance.next_loads,
                                                                       other)))
        metrics["plan_ms"] = 1000.0 * wall
        metrics["colocated"] = float(_colocated(instance, placement))
    # the time measured here: a plan's own wall_s is its note, never the score
    return Outcome(cost=cost, metrics=metrics, wall_s=wall, status="ok")


def planning_view(instance: Instance) -> Instance:
    """The instance as a planner sees it: the scored window's loads are zeros, so a method that
    reads ``loads[-1]`` instead of ``history`` cannot plan with hindsight (``history``,
    ``planned_loads`` and everything else are unchanged)."""
    if instance.num_windows == 1:  # the planned window is the scored one: nothing is hidden
        return instance
    hidden = np.concatenate([instance.history, np.zeros_like(instance.loads[-1:])])
    return dataclasses.replace(instance, loads=hidden)


def migrations(instance: Instance, phy2log: np.ndarray) -> int:
    """Replicas placed on a GPU that held no replica of their expert in the previous placement
    (a second replica of an expert on the same GPU is not a new copy); 0 without one."""
    if instance.previous_placement is None:
        return 0
    phy2log = check_placement(instance, phy2log)
    gpu = np.arange(instance.num_slots) // instance.slots_per_gpu
    moved = 0
    for layer in range(instance.num_layers):  # (expert, GPU) pairs as sets, layer by layer
        now = {(int(e), int(g)) for e, g in zip(phy2log[layer], gpu, strict=True) if e >= 0}
        before = {(int(e), int(g)) for e, g in zip(instance.previous_placement[layer], gpu, strict=True)
                  if e >= 0}
        moved += len(now - before)
    return moved


def _colocated(instance: Instance, phy2log: np.ndarray) -> int:
    L = phy2log.shape[0]
    S = instance.slots_per_gpu
    gpu = np.arange(phy2log.shape[1]) // S
    key = np.where(phy2log >= 0, phy2log * instance.num_gpus + gpu[None, :], -1)
    extra = 0
    for layer in range(L):
        k = key[layer][key[layer] >= 0]
        extra += k.size - np.unique(k).size
    return extra


def check_bound_options(*, window: Any = "next", time_limit: Any = None,
                        milp_time_limit: Any = None, milp_max_binaries: Any = 2000) -> None:
    """The ``check`` of :func:`bound`, before anything is solved: ``window`` 'next' or
    'planned'; ``time_limit`` / ``milp_time_limit`` as :func:`_milp_limit` reads them (one at
    most; positive seconds, infinity or None; the older name's 0 means no MILP, and False is
    refused as any other flag given for a number); ``milp_max_binaries`` a whole number >= 0
    (-1, 2.5, NaN or True skipped the MILP silently, as if the layers were too large)."""
    if not (isinstance(window, str) and window in ("next", "planned")):
        raise OptionError(f"window must be 'next' or 'planned', got {window!r}", option="window")
    if isinstance(milp_time_limit, bool | np.bool_):  # (False was taken for 0; True is refused)
        raise OptionError(f"milp_time_limit must be positive seconds for each layer's MILP, 0 or "
                          f"None (no MILP), got {milp_time_limit!r}", option="milp_time_limit")
    with refusing("milp_time_limit" if time_limit is None else "time_limit"):
        _milp_limit(time_limit, milp_time_limit)
    with refusing("milp_max_binaries"):
        whole_number("milp_max_binaries", milp_max_binaries, low=0)


@checked_keywords(check=check_bound_options)
def bound(instance: Instance, *, window: str = "next", time_limit: float | None = None,
          milp_time_limit: float | None = None, milp_max_binaries: int = 2000) -> Bound:
    """Lower bound on the cost: sum over layers of the window's min makespan bound (migrations
    cost >= 0, so this bounds the cost with migrations as well).

    ``window``: ``next`` (the scored window, default) or ``planned``. With a MILP limit and at
    most ``milp_max_binaries`` binaries per layer, each layer's placement MILP (with the
    instance's migration cost) is solved too and its dual bound is used where larger (kind
    ``mip_bound``, ``optimal`` if all layers are proved optimal). The limit is either
    ``time_limit``, seconds for the whole call, the name the decode routing, batch scheduling
    and caching bounds take (capacity's simulated bound has no time limit), so
    ``gap_table(..., bound_kw={"time_limit": 60})`` reads the same (the layers' MILPs share it, each taking
    what is left divided by the layers left, and a layer reached with nothing left keeps its
    makespan bound), or ``milp_time_limit``, the older option: seconds for each layer's MILP
    (0: no MILP). Infinity: no limit; None for both (the default): no MILP; both given is
    refused. A layer whose MILP is not solved (the budget spent before it, or a migration cost
    beyond the MILP's range: ``status`` says so) keeps its makespan bound; with no layer's MILP
    solved the kind is ``lower_bound``.
    """
    start = time.perf_counter()
    run_milp, limit, per_call = _milp_limit(time_limit, milp_time_limit)
    w = instance.next_loads if window == "next" else instance.planned_loads
    per_layer = makespan_lower_bound(w, instance.num_gpus, instance.slots_per_gpu,
                                     instance.speed)
    kind, status = "lower_bound", "ok"
    if run_milp and instance.num_experts * instance.num_gpus <= milp_max_binaries:
        from servopt.models.expert_placement import MigrationRatioError, build
        from servopt.solvers import exact

        index = instance.num_windows - 1 if window == "next" else max(0, instance.num_windows - 2)
        all_optimal, solved, beyond, unsolved = True, 0, [], []
        for layer in range(instance.num_layers):
            layer_limit = limit
            if per_call and limit is not None:
                left = limit - (time.perf_counter() - start)
                if left <= 0:  # the budget is spent: this layer keeps its makespan bound
                    all_optimal = False
                    unsolved.append(layer)
                    continue
                layer_limit = left / (instance.num_layers - layer)
            try:
                model = build(instance, window=index, layers=[layer], makespan_lb=per_layer[layer])
            except MigrationRatioError:  # no MILP for this layer: its makespan bound stays valid
                all_optimal = False
                beyond.append(layer)
                continue
            # integrality to 1e-9: at HiGHS's default 1e-6 a replica at y = 1e-6 serves tokens
            # almost free, and the value came out up to ~1e-6 relative low, moving with the scale
            sol = exact.solve_model(model, time_limit=layer_limit, mip_gap=1e-6,
                                    prices=False, decision=instance.decision,
                                    solver_options={"mip_feasibility_tolerance": 1e-9})
            if sol.status == "interrupted":  # Ctrl-C: stop, as everywhere (no bound to cache)
                raise KeyboardInterrupt(f"the bound's MILP of layer {layer} was interrupted")
            proved = sol.bound >= sol.objective - 1e-9 * abs(sol.objective)  # relative: any scale
            all_optimal &= sol.status == "optimal" and proved
            solved += 1
            if not math.isnan(sol.bound):
                per_layer[layer] = max(per_layer[layer], sol.bound)
        kind = "optimal" if all_optimal else "mip_bound" if solved else "lower_bound"
        kept = [f"{len(beyond)} of {instance.num_layers} layer(s): migration cost beyond the "
                "MILP's range (MAX_MIGRATION_RATIO)"] if beyond else []
        if unsolved:
            kept.append(f"{len(unsolved)} of {instance.num_layers} layer(s): the time budget "
                        "was spent before them")
        if kept:
            status = "makespan bound kept for " + "; ".join(kept)
    return Bound(float(per_layer.sum()), kind, wall_s=time.perf_counter() - start, status=status)


def _milp_limit(time_limit: Any, milp_time_limit: Any) -> tuple[bool, float | None, bool]:
    """Whether :func:`bound` solves the placement MILPs, the limit in seconds (None: no limit)
    and whether it is the whole call's (``time_limit``) or each layer's (``milp_time_limit``);
    one of the two at most."""
    if time_limit is not None and milp_time_limit is not None:
        raise InvalidInstanceError(
            f"servopt.benchmarks.expert_placement.bound() takes time_limit (the whole call) or "
            f"the older milp_time_limit (each layer), not both (got "
            f"time_limit={time_limit!r}, milp_time_limit={milp_time_limit!r})")
    name, value = (("time_limit", time_limit) if milp_time_limit is None
                   else ("milp_time_limit", milp_time_limit))
    if value is None or (name == "milp_time_limit" and isinstance(value, int | float | np.number)
                         and value == 0):  # the older name's 0: no MILP, as it was (False is
        # refused by check_bound_options, before this)
        return False, None, False
    what = "the whole bound" if name == "time_limit" else "each layer's MILP"
    seconds = number(name, value, lambda v: v > 0,  # also refuses NaN and text
                     f"positive seconds for {what}, infinity (no limit) or None (no MILP)")
    return True, None if seconds == math.inf else seconds, name == "time_limit"


__all__ = ["DEFAULT_METHODS", "SENSE", "balancedness", "bound", "evaluate", "gpu_times", "migrations"]
