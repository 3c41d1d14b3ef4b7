"""Capacity planning methods: the bound-based planning rule, the fluid LP, and reactive autoscalers.

Policy protocol
---------------
A method is a callable ``policy(instance, observe) -> Plan``. ``observe(workers)`` is supplied by
the evaluator and returns what a fleet of that many workers would show over a measurement window
at the instance's target rate: one worker at lambda / N, simulated from empty (no warm-up) for
the evaluator's ``window`` arrivals. Per worker: ``compute_utilisation`` (token throughput / peak
token throughput, 0-1), ``kv_utilisation`` (time-average KV tokens held / ``kv_tokens``, idle 0),
``mean_waiting`` (time-average requests waiting, counting those that arrive during an
iteration), ``final_waiting`` (requests waiting at the window's end) and ``throughput``
(requests completed per second since the window's start: the ramp-up from empty keeps it below
lambda / N even on a stable fleet). The planning rules never call it; the reactive baselines
can only act on it, as an autoscaler acts on metrics.
A :class:`Plan` says how many workers, the per-worker maximum stable rate the method believes in
(nan for reactive methods), the binding resource and its marginal value.

Methods (``POLICIES``)
----------------------
- ``plan``: the planning rule. mu = min(compute, corrected memory, slot bound) per worker (see
  :mod:`servopt.models.capacity`), N = ceil(lambda / ((1 - delta) mu)); reports the binding
  resource and its price from closed-form derivatives (no solver).
- ``fluid_lp``: the same N from the fluid LP solved with HiGHS; prices from its duals
  (:func:`plan_from_solution` builds that plan from a solution you solved yourself).
- ``first_order``: the bounds as usually stated (memory M / (t E[g]) without the head-of-line
  and recomputation corrections), same headroom.
- ``compute_only``: only the compute bound (token throughput; Li, Dai and Peng), same headroom:
  what sizing from token throughput alone gives when KV memory binds.
- ``utilisation``: Kubernetes HPA on compute utilisation (token throughput / peak): desired =
  ceil(N x utilisation / target), target 80 %, tolerance 10 % (HPA's default), scale-up at most
  max(2 N, N + 4) per round (HPA's default scale-up policy), starting from twice the
  compute-only fleet, at most 20 rounds.
- ``queue_depth``: KEDA / HPA on ``vllm:num_requests_waiting`` with an AverageValue target of 5
  waiting requests per worker (desired = ceil(total waiting / 5), the vLLM production-stack
  style trigger), the same scale-up limit, no scale-in, starting from one worker: it adds
  workers only after a queue has built up within the measurement window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from servopt.core import InvalidInstanceError
from servopt.core.checks import number, whole_number
from servopt.instances.capacity import Instance
from servopt.models import capacity as model

Observe = Callable[[int], dict[str, float]]


@dataclasses.dataclass
class Plan:
    """A fleet size and what the method believes about one worker.

    workers : workers to provision for the instance's target rate.
    max_stable_rate : the method's per-worker maximum stable rate (req/s; nan if none).
    binding : the resource the method says binds (``compute``/``memory``/``slots``/``unknown``).
    price : req/s of per-worker sustainable rate per extra unit of the binding resource
        (per KV token, per token of budget, per batch slot); nan if the method has none.
    detail : method-specific numbers (bounds, the HPA trajectory, ...).
    """

    workers: int
    max_stable_rate: float = math.nan
    binding: str = "unknown"
    price: float = math.nan
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


def bound_prices(instance: Instance, bounds: model.Bounds, *, corrected: bool = True) -> dict[str, float]:
    """d mu / d resource for each resource, in closed form (0 for the non-binding ones); the KV
    price is per physical KV token (times dM'/dM when ``bounds`` is the corrected bound).

    For a Little's-law bound mu = A / (d0 F + A d1 E[w]): d mu / dA = d0 F / (d0 F + A d1 E[w])^2;
    for the compute bound mu_c = b / (E[w] (d0 + d1 b)): d mu / db = d0 / (E[w] (d0 + d1 b)^2).
    ``step_overhead_ms`` is the rate lost per extra ms of d0, with M' moving with d0 in the
    corrected memory bound (dM'/dd0 from :func:`~servopt.models.capacity.usable_kv_per_overhead`).
    """
    m = bounds.means
    d0, d1 = instance.step_overhead_s, instance.per_token_s
    out = {"kv_token": 0.0, "token_budget": 0.0, "batch_slot": 0.0, "step_overhead_ms": 0.0}
    mu = bounds.max_stable_rate
    if bounds.binding == "compute":
        b = instance.token_budget
        out["token_budget"] = d0 / (m["work"] * (d0 + d1 * b) ** 2)
        out["step_overhead_ms"] = mu / (d0 + d1 * b) * 1e-3
    else:
        capacity, footprint, key = (
            (bounds.usable_kv_tokens, m["kv_footprint"], "kv_token")
            if bounds.binding == "memory"
            else (instance.batch_cap, m["slot_iterations"], "batch_slot")
        )
        den = d0 * footprint + capacity * d1 * m["work"]
        per_capacity = d0 * footprint / den**2
        out[key] = per_capacity
        out["step_overhead_ms"] = mu**2 * footprint / capacity * 1e-3
        if key == "kv_token":  # M' moves with M and with d0 (the corrections)
            out[key] *= model.usable_kv_slope(instance, corrected=corrected)
            out["step_overhead_ms"] -= per_capacity * model.usable_kv_per_overhead(
                instance, corrected=corrected) * 1e-3
    return out


PRICE_KEY = {"compute": "token_budget", "memory": "kv_token", "slots": "batch_slot"}


def _from_rate(instance: Instance, rate: float, binding: str, price: float, **detail: Any) -> Plan:
    workers = model.workers_needed(instance.arrival_rate, rate, instance.headroom)
    return Plan(workers=workers, max_stable_rate=rate, binding=binding, price=price, detail=detail)


def plan(instance: Instance, observe: Observe | None = None) -> Plan:
    """The planning rule: corrected bounds, N = ceil(lambda / ((1 - delta) min bound))."""
    bounds = model.bounds(instance)
    prices = bound_prices(instance, bounds)
    return _from_rate(
        instance,
        bounds.max_stable_rate,
        bounds.binding,
        prices[PRICE_KEY[bounds.binding]],
        bounds=bounds.as_dict(),
        prices=prices,
    )


def first_order(instance: Instance, observe: Observe | None = None) -> Plan:
    """The bounds without the memory corrections (the memory bound as usually stated)."""
    bounds = model.bounds(instance, corrected=False)
    prices = bound_prices(instance, bounds, corrected=False)
    return _from_rate(
        instance, bounds.max_stable_rate, bounds.binding, prices[PRICE_KEY[bounds.binding]], prices=prices
    )


def compute_only(instance: Instance, observe: Observe | None = None) -> Plan:
    """Only the compute (token-throughput) bound."""
    bounds = model.bounds(instance, corrected=False)
    bounds = dataclasses.replace(bounds, binding="compute", max_stable_rate=bounds.compute)
    return _from_rate(instance, bounds.compute, "compute",
                      bound_prices(instance, bounds, corrected=False)["token_budget"])


def fluid_lp(instance: Instance, observe: Observe | None = None) -> Plan:
    """N from the fluid LP's optimum (HiGHS); binding resource and price from its duals."""
    from servopt.solvers import exact

    solution = exact.solve(instance)
    if solution.status == "interrupted":  # Ctrl-C: stop, not "solve it without a time limit"
        raise KeyboardInterrupt("the capacity LP was interrupted")
    return plan_from_solution(instance, solution)


def plan_from_solution(instance: Instance, solution: Any) -> Plan:
    """The fleet plan from a solved capacity LP (``servopt.solve(instance)``): the per-worker
    maximum stable rate is its optimum, N = ceil(lambda / ((1 - delta) mu)), and the binding
    resource and its price come from its duals (the resource with the largest elasticity). A
    price or decision that is nan, infinite or negative (a capacity row's price is >= 0) is refused
    with ``InvalidInstanceError`` naming it (:func:`servopt.models.capacity.marginal_values`)."""
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(
            f"plan_from_solution(instance, solution) needs a capacity Instance first, got "
            f"{type(instance).__name__}"
            + (" (the arguments are swapped?)" if hasattr(instance, "prices") else ""))
    prices = getattr(solution, "prices", None)
    if getattr(solution, "decision", "capacity") not in ("", "capacity") or not isinstance(prices, dict):
        raise InvalidInstanceError(f"plan_from_solution needs a solved capacity LP, got a "
                                   f"{getattr(solution, 'decision', '') or type(solution).__name__} solution")
    if solution.status != "optimal":  # a stopped solve says nothing about the instance (R21)
        raise InvalidInstanceError(
            f"plan_from_solution needs the capacity LP solved to optimality; this solution's "
            f"status is {solution.status!r} (its value is not the maximum stable rate): solve it "
            f"again without a time limit, or with a longer one")
    solved_for = getattr(solution, "info", {}).get("instance")
    if solved_for is not None and solved_for != model.fingerprint(instance):
        raise InvalidInstanceError("this solution was solved for another worker or workload (the LP "
                                   "reads the lengths and the worker's profile; the rate and headroom "
                                   "may differ): solve this instance")
    values = model.marginal_values(solution, instance)  # refuses nan / negative prices
    rate = solution.objective
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise InvalidInstanceError(f"the capacity solution's objective (the per-worker maximum stable "
                                   f"rate, req/s) is {rate!r}: it must be a finite number > 0")
    rows = {"memory": "kv_token", "compute": "token_budget", "slots": "batch_slot"}
    binding = max(rows, key=lambda k: values[f"{rows[k]}_elasticity"])
    return _from_rate(
        instance, float(rate), binding, float(values[rows[binding]]), marginal_values=values.to_dict()
    )


def _need_observe(observe: Any, name: str) -> None:
    if not callable(observe):
        raise InvalidInstanceError(
            f"{name} is a reactive autoscaler: it needs observe(workers) -> fleet metrics; run it with "
            f"servopt.benchmarks.capacity.evaluate(instance, {name!r}), which supplies one")


def _loop_options(tolerance: Any, rounds: Any) -> tuple[float, int]:
    """The reactive autoscalers' ``tolerance`` (a share >= 0) and ``rounds`` (observations, a
    whole number >= 1; 0 or -1 returned the first guess unobserved), refused by name."""
    tolerance = number("tolerance", tolerance, lambda v: 0.0 <= v < math.inf,
                       "a finite share >= 0 (HPA's default 0.1)")
    return tolerance, whole_number("rounds", rounds, low=1, high=10_000)


def _scale_up_limit(workers: int) -> int:
    """HPA's default scale-up policy: at most double, or add 4 pods, whichever is more."""
    return max(2 * workers, workers + 4)


def utilisation(
    instance: Instance, observe: Observe, *, target: float = 0.8, tolerance: float = 0.1, rounds: int = 20
) -> Plan:
    """Kubernetes HPA on compute utilisation: desired = ceil(N x util / target). ``target`` in
    (0, 1], ``tolerance`` >= 0, ``rounds`` (observations) a whole number >= 1: others are refused
    by name before any observation."""
    _need_observe(observe, "utilisation")
    target = number("utilisation target", target, lambda v: 0.0 < v <= 1.0,
                    "a share of the worker's peak token throughput in (0, 1]")
    tolerance, rounds = _loop_options(tolerance, rounds)
    start = model.bounds(instance, corrected=False).compute
    workers = 2 * model.workers_needed(instance.arrival_rate, start, 0.0)
    seen, history = set(), []
    for _ in range(rounds):
        util = observe(workers)["compute_utilisation"]
        history.append((workers, util))
        ratio = util / target
        if abs(ratio - 1.0) <= tolerance:
            break
        desired = min(max(1, math.ceil(workers * ratio - 1e-9)), _scale_up_limit(workers))
        if desired in seen or desired == workers:
            workers = max(workers, desired) if desired in seen else desired
            break
        seen.add(workers)
        workers = desired
    return Plan(workers=workers, binding="compute", detail={"history": history})


def queue_depth(
    instance: Instance, observe: Observe, *, target: float = 5.0, tolerance: float = 0.1, rounds: int = 30
) -> Plan:
    """Scale out on waiting requests per worker (HPA formula, at most doubling, no scale-in).
    ``target`` (waiting requests per worker) > 0, ``tolerance`` >= 0, ``rounds`` a whole number
    >= 1: others are refused by name before any observation (target=0 was a ZeroDivisionError,
    -1 ran 30 simulations)."""
    _need_observe(observe, "queue_depth")
    target = number("queue_depth target", target, lambda v: 0.0 < v < math.inf,
                    "a finite number of waiting requests per worker > 0")
    tolerance, rounds = _loop_options(tolerance, rounds)
    workers, history = 1, []
    for _ in range(rounds):
        waiting = observe(workers)["mean_waiting"]
        history.append((workers, waiting))
        if waiting <= target * (1 + tolerance):
            break
        workers = min(_scale_up_limit(workers), max(workers + 1, math.ceil(workers * waiting / target)))
    return Plan(workers=workers, binding="unknown", detail={"history": history})


POLICIES: dict[str, Callable[..., Plan]] = {
    "plan": plan,
    "fluid_lp": fluid_lp,
    "first_order": first_order,
    "compute_only": compute_only,
    "utilisation": utilisation,
    "queue_depth": queue_depth,
}
