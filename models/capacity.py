"""Capacity: stability bounds of one continuous-batching worker, and a fluid LP over request classes.

Symbols (units)
---------------
Request classes k with mix p_k (fraction of requests, sum 1); per request of prompt s and output o:

- w(s, o) = s + o - 1 tokens processed: the prompt in chunks, then one token per decode iteration
  (the last prefill chunk emits the first output token);
- P(s) = ceil(s / C) prefill iterations, where C is the chunk actually used, min(prefill_chunk,
  token_budget) (``Instance.chunk_tokens``: a chunk never exceeds the iteration's token budget);
- n(s, o) = P(s) + o - 1 iterations in the running batch (one batch slot each);
- g(s, o) = P(s) s + sum_{j=1}^{o-1} (s + j) = (P + o - 1) s + o (o - 1) / 2 KV token-iterations:
  the prompt's KV is reserved from admission (vLLM allocates a prompt's blocks when it admits it)
  and decode iteration j holds s + j tokens. ``kv_footprint(..., reserve="chunks")`` gives the
  variant where only the processed chunks hold KV: sum_{k=1}^{P} min(k C, s) + sum_j (s + j).

Worker: KV capacity M tokens, token budget b per iteration, batch cap B, iteration time
d0 + d1 x tokens seconds. A busy worker at rate lambda processes lambda E[w] tokens per second,
so its self-consistent iteration time is t(lambda) = d0 / (1 - d1 lambda E[w]).

Bounds (requests per second; as stated, each is an upper bound on the throughput of the worker,
up to the noise of a finite simulation; the *corrected* memory bound below is not):

- compute  mu_c = b / (E[w] (d0 + d1 b))          (every iteration full: Li, Dai and Peng)
- memory   mu_m = M / (d0 E[g] + M d1 E[w])       (Little's law on KV: lambda t(lambda) E[g] <= M)
- slots    mu_s = B / (d0 E[n] + B d1 E[w])       (Little's law on batch slots)

mu_m and mu_s are lambda t(lambda) E[a] <= A solved for lambda with the self-consistent t. The
*corrected* memory bound replaces M by the usable memory M - L, where L = E[s^2] / (2 E[s]) is
the free memory stranded at the head of the line (FCFS waits until the next prompt fits; the
gap left is the residual of a length-biased prompt) and, when KV is the first resource to saturate
(only then do preemptions happen), inflates E[w] by the expected recomputation after preemption
at the operating point (a fixed point; see :func:`memory_corrections`). The corrected bound is an
*estimate* of where FCFS admission saturates, not a bound: where little memory is stranded the
simulator sustains more (batch_cap 1 and M = s, four 158-token prompts with one output token:
2.11 req/s corrected, 3.16 uncorrected, 3.16 simulated; ``bounds(..., corrected=False)`` is the
bound). The maximum stable rate is the minimum of the three (with the corrected memory bound,
so an estimate too; ``corrected=False``: an upper bound); the binding resource is its argmin.
The evaluator's bound on the fleet (``servopt.benchmarks.capacity.bound``) does not rest on it:
it is the least fleet the simulator's own stability test accepts.
The recomputation term switches on where KV overtakes the slots as the first resource to
saturate, so more batch slots can lower the rate there: on conversation lengths at 110 req/s,
batch_cap 340 -> 360 moves the bound from 12.69 (slots bind) to 11.97 req/s per worker (memory,
-5.7%) and the plan from 10 to 11 workers. The simulator agrees in direction (admitting more
lets KV run out, and preemption costs recomputation: its knee moves 12.79 -> 12.47, -2.5%) but
not in size; its least stable fleet stays at 9. A larger token budget can do the same (it lets
compute stop binding before memory: prompts [77]x4 + [38]x4, outputs [14]x4 + [43]x4, M 9000,
B 256, d0 12 ms, d1 1 ms: budget 256 -> 512 moves the corrected rate 11.24 -> 9.61 req/s while
the uncorrected one rises 11.24 -> 11.43).

Fluid LP (rates; the ``build`` and ``build_cvxpy`` formulations)
-------------------------------------------------------------------
Variables: x_k >= 0 requests/s of class k, r >= 0 iterations per second, theta sustainable rate.

    max theta
    mix[k]:          x_k = p_k theta
    busy_time:       d0 r + d1 sum_k w_k x_k <= 1                 (seconds per second)
    kv_memory:       sum_k g_k x_k <= M' r                        (KV token-iterations per second)
    token_budget:    sum_k w_k x_k <= b r                         (tokens per second)
    batch_slots:     sum_k n_k x_k <= B r                         (slot-iterations per second)

(M' = the usable memory of the corrected bound, or M with ``corrected=False``.) For a fixed mix
its optimum is exactly min(mu_c, mu_m, mu_s). The solver sees it in units taken from that
closed-form bound (:func:`lp_units`: rates in mu, time in the iteration time there, each capacity
row divided by its capacity), so every term is near 1 at the optimum whatever the scale of the
times or the token counts; ``servopt.solve`` reports theta, x, r and the prices below per second.
Prices (servopt convention: >= 0, improvement of theta per unit of relaxation):

- ``busy_time``: requests/s per unit of worker time (= theta, the LP is homogeneous);
- ``kv_memory``: requests/s per extra KV token-iteration per second; times r it is what one
  more token of usable memory M' is worth, in requests/s per token (per physical KV token:
  times dM'/dM, :func:`marginal_values`);
- ``token_budget``: requests/s per extra token per second of budget (times r: per unit of b);
- ``batch_slots``: requests/s per extra slot-iteration per second (times r: per batch slot);
- ``mix[k]`` (<= 0, equality rows): change of theta per extra req/s of class-k traffic forced
  on top of the mix; its magnitude ranks the classes by how much of the binding resource a
  request of the class consumes.

:func:`marginal_values` turns them into d theta / dM (per physical KV token: the ``kv_memory``
price is per usable token of M', so it is multiplied by dM'/dM), d theta / db, d theta / dB,
-d theta / d d0 (rate lost per ms of step overhead) and elasticities (% rate per % resource;
for d0, % rate lost per % of d0, with the same sign as its value).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.core.checks import flag
from servopt.core.cvxmodel import CvxpyModel
from servopt.instances.capacity import Instance

OBJECTIVE_UNIT = "req/s"  # theta, one worker's sustainable request rate
LINEAR = True  # no integer variables: the CVXPY form solves the same model


# ---------------------------------------------------------------------------------------------
# per-request quantities
# ---------------------------------------------------------------------------------------------
def prefill_iterations(prompt: Any, chunk: int) -> np.ndarray:
    """P(s) = ceil(s / C): iterations to prefill a prompt of s tokens in chunks of C (callers pass
    ``Instance.chunk_tokens`` = min(prefill_chunk, token_budget))."""
    s = np.asarray(prompt, dtype=np.int64)
    return -(-s // int(chunk))


def work_tokens(prompt: Any, output: Any) -> np.ndarray:
    """w(s, o) = s + o - 1 tokens a request makes the worker process."""
    return np.asarray(prompt, dtype=np.int64) + np.asarray(output, dtype=np.int64) - 1


def slot_iterations(prompt: Any, output: Any, chunk: int) -> np.ndarray:
    """n(s, o) = P(s) + o - 1 iterations a request spends in the running batch."""
    return prefill_iterations(prompt, chunk) + np.asarray(output, dtype=np.int64) - 1


def kv_footprint(prompt: Any, output: Any, chunk: int, *, reserve: str = "admission") -> np.ndarray:
    """g(s, o): KV token-iterations a request holds over its life in the batch.

    ``reserve="admission"``: the whole prompt is held from admission (P s during prefill);
    ``reserve="chunks"``: only processed chunks are held (sum_{k<=P} min(k C, s)).
    Decode iteration j = 1..o-1 holds s + j tokens in both.
    """
    # in float64: products of lengths up to the instance's 1e12 pass int64's 9.2e18 (P s with
    # s = 1e11, C = 512 is 2e19) and would wrap silently; below 2**53 (every realistic case) each
    # term is a whole number held exactly, as in integer arithmetic ((o - 1) o and (p - 1) p are
    # even, so their halves are exact)
    s = np.asarray(prompt, dtype=np.int64)
    o = np.asarray(output, dtype=np.int64).astype(np.float64)
    p = prefill_iterations(s, chunk).astype(np.float64)
    s = s.astype(np.float64)
    decode = (o - 1) * s + o * (o - 1) / 2
    if reserve == "admission":
        prefill = p * s
    elif reserve == "chunks":
        prefill = float(chunk) * ((p - 1) * p / 2) + s
    else:
        raise ValueError(f"reserve must be 'admission' or 'chunks', got {reserve!r}")
    return prefill + decode


# ---------------------------------------------------------------------------------------------
# closed-form bounds
# ---------------------------------------------------------------------------------------------
def preemption_probability(prompt: np.ndarray, decode_iterations: float, completions: float) -> float:
    """pi = E[ int_0^s exp(-q ceil(u / n_dec)) du ] / E[s], n_dec = q d (see :func:`memory_corrections`).

    ``prompt``: prompt lengths s (tokens); ``decode_iterations`` d = E[o] - 1; ``completions`` q
    per iteration. Exact sum over whole iterations: the first k = floor(s / n_dec) steps of
    n_dec tokens survive j = 1..k iterations, the rest s - k n_dec survives k + 1.
    """
    s = np.asarray(prompt, dtype=float)
    if decode_iterations <= 0:
        return 0.0
    q = float(completions)
    step = q * decode_iterations
    k = np.floor(s / step)
    r = math.exp(-q)
    survive = step * r * (1.0 - r**k) / -math.expm1(-q) + (s - k * step) * r ** (k + 1)
    return float(survive.mean() / s.mean())


def memory_corrections(
    instance: Instance, recompute_fraction: float | None = None, rate: float | None = None
) -> dict[str, float]:
    """Corrections that make the memory bound realistic under FCFS admission with preemption.

    head_of_line_tokens L = E[s^2] / (2 E[s]): KV left free while the head prompt waits to fit
    (the mean residual of a length-biased prompt; FCFS never skips the head).

    preemptions_per_request pi: after the admissions of an iteration the free KV R is about
    uniform on [0, s_head) (s_head length-biased: E_lb[f(s)] = E[s f(s)] / E[s]); the next
    iteration's decodes need n_dec = q (E[o] - 1) new tokens (q = completions per iteration, below),
    and a request is preempted when they do not fit before a completion frees memory. With
    completions Poisson at q per iteration, free KV u lasts ceil(u / n_dec) iterations and
    survives them with probability exp(-q ceil(u / n_dec)), so, per admission (one per request),
    pi = E[ int_0^s exp(-q ceil(u / n_dec)) du ] / E[s]. Counting whole iterations matters when
    the batch is large (q of order 1): for q -> 0 it tends to E[d (1 - exp(-s / d))] / E[s],
    d = E[o] - 1 (the previous, deterministic-consumption estimate E[min(s, d)] / E[s] is
    larger, and does not fall as the batch grows as the simulated rate does).

    recompute_tokens r = E[min(s, C (1 + 1 / (2 q)))]: the victim is the newest request; it has
    had its first chunk and, on average, half the 1 / q iterations between completions to
    process more chunks (q = lambda t(lambda) completions per iteration at the operating point
    ``rate``; default: the memory bound with the head-of-line correction only).

    recompute_fraction = pi r / E[w]: the extra work of recomputation lengthens the iterations
    (E[w] grows by this fraction). Pass ``recompute_fraction`` to override the estimate.
    """
    s = instance.prompt_tokens.astype(float)
    o = instance.output_tokens.astype(float)
    work = float(work_tokens(s, o).mean())
    hol = float((s**2).mean() / (2 * s.mean()))
    if rate is None:
        footprint = float(kv_footprint(s, o, instance.chunk_tokens).mean())
        rate = rate_bound(max(instance.kv_tokens - hol, 1.0), footprint, instance, work)
    per_iteration = max(rate * self_consistent_iteration(instance, rate, work), 1e-12)
    preempt = preemption_probability(s, float(o.mean()) - 1.0, per_iteration)
    reach = instance.chunk_tokens * (1.0 + 1.0 / (2.0 * per_iteration))
    recompute = float(np.minimum(s, reach).mean())
    if recompute_fraction is None:
        recompute_fraction = preempt * recompute / work
    return {
        "head_of_line_tokens": hol,
        "preemptions_per_request": preempt,
        "recompute_tokens": recompute,
        "recompute_fraction": float(recompute_fraction),
    }


@dataclasses.dataclass
class Bounds:
    """Per-worker stability bounds (requests/s) and what binds."""

    compute: float
    memory: float
    slots: float
    memory_first_order: float
    binding: str
    max_stable_rate: float
    iteration_s: float
    usable_kv_tokens: float
    means: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def means(instance: Instance) -> dict[str, float]:
    """E[s], E[o], E[w], E[n], E[g] (admission reservation) and E[s^2] / E[s] of the workload."""
    s, o, c = instance.prompt_tokens, instance.output_tokens, instance.chunk_tokens
    return {
        "prompt": float(s.mean()),
        "output": float(o.mean()),
        "work": float(work_tokens(s, o).mean()),
        "slot_iterations": float(slot_iterations(s, o, c).mean()),
        "kv_footprint": float(kv_footprint(s, o, c).mean()),
        "prompt_size_bias": float((s.astype(float) ** 2).mean() / s.mean()),
    }


def self_consistent_iteration(instance: Instance, rate: float, mean_work: float) -> float:
    """t(lambda) = d0 / (1 - d1 lambda E[w]) seconds, capped at the full-budget iteration time."""
    d0, d1, b = instance.step_overhead_s, instance.per_token_s, instance.token_budget
    full = d0 + d1 * b
    denom = 1.0 - d1 * rate * mean_work
    return full if denom <= 0 else min(full, d0 / denom)


def rate_bound(capacity: float, footprint: float, instance: Instance, mean_work: float) -> float:
    """The rate (req/s) at which a resource of size ``capacity`` is full: lambda solving
    lambda t(lambda) footprint = capacity, i.e. capacity / (d0 footprint + capacity d1 E[w])
    (d0 s per iteration, d1 s per token, ``mean_work`` E[w] tokens per request; ``footprint``
    in resource units x iterations per request)."""
    d0, d1 = instance.step_overhead_s, instance.per_token_s
    return capacity / (d0 * footprint + capacity * d1 * mean_work)


def bounds(instance: Instance, *, corrected: bool = True, recompute_fraction: float | None = None) -> Bounds:
    """The compute, memory and slot bounds of one worker (requests/s) and which one binds."""
    m = means(instance)
    d0, d1, b = instance.step_overhead_s, instance.per_token_s, instance.token_budget
    compute = b / (m["work"] * (d0 + d1 * b))
    slots = rate_bound(instance.batch_cap, m["slot_iterations"], instance, m["work"])
    first = rate_bound(instance.kv_tokens, m["kv_footprint"], instance, m["work"])
    usable = float(instance.kv_tokens)
    memory = first
    if corrected:
        corr = memory_corrections(instance, recompute_fraction)
        kv_left = max(instance.kv_tokens - corr["head_of_line_tokens"], 1.0)
        memory = rate_bound(kv_left, m["kv_footprint"], instance, m["work"])
        # KV saturates first (preemptions and recomputation) when it holds fewer requests' worth
        # of token-iterations than the slots and the token budget: kv / E[g] < min(B / E[n],
        # b / E[w]). For d0 > 0 that is memory < min(compute, slots); at d0 = 0 the three rate
        # bounds all equal 1 / (d1 E[w]) and only this comparison tells (ties: KV does not bind)
        kv_first = kv_left / m["kv_footprint"] < (1 - 1e-9) * min(
            instance.batch_cap / m["slot_iterations"], b / m["work"])
        extra = 1.0
        if kv_first:
            for _ in range(50):  # fixed point: the recomputation depends on the operating point
                corr = memory_corrections(instance, recompute_fraction, rate=memory)
                extra = 1.0 + corr["recompute_fraction"]
                new = rate_bound(kv_left, m["kv_footprint"], instance, m["work"] * extra)
                done = abs(new - memory) <= 1e-12 * memory
                memory = new
                if done:
                    break
        # the KV capacity M' that, in the uncorrected formula, sustains the corrected rate:
        # M' / (d0 E[g] + M' d1 E[w]) = kv_left / (d0 E[g] + kv_left d1 E[w] extra) gives
        # M' = kv_left d0 E[g] / (d0 E[g] + kv_left d1 E[w] (extra - 1)), kv_left itself without
        # recomputation (not memory d0 E[g] / (1 - memory d1 E[w]): when M is large that
        # denominator cancels, and M' near 1e12 was off by 2e4 tokens, dM'/dd0 by 2e9 tokens/s)
        held = d0 * m["kv_footprint"]
        usable = (kv_left * held / (held + kv_left * d1 * m["work"] * (extra - 1.0))
                  if d0 > 0 and extra > 1.0 else kv_left)
    values = {"compute": compute, "slots": slots, "memory": memory}
    rate = min(values.values())
    # ties (all three at d0 = 0 when KV does not saturate first) name compute, then slots
    binding = next(name for name, value in values.items() if value <= rate * (1 + 1e-9))
    return Bounds(
        compute=compute,
        memory=memory,
        slots=slots,
        memory_first_order=first,
        binding=binding,
        max_stable_rate=rate,
        iteration_s=self_consistent_iteration(instance, rate, m["work"]),
        usable_kv_tokens=usable,
        means=m,
    )


def workers_needed(rate: float, max_stable_rate: float, headroom: float) -> int:
    """N = ceil(lambda / ((1 - delta) mu)): workers for a target rate with headroom delta."""
    if not max_stable_rate > 0:
        raise InfeasibleError("a worker sustains no request at all; no fleet size is stable")
    return max(1, math.ceil(rate / ((1.0 - headroom) * max_stable_rate) - 1e-9))


# ---------------------------------------------------------------------------------------------
# request classes and the fluid LP
# ---------------------------------------------------------------------------------------------
def request_classes(instance: Instance, *, prompt_bins: int = 4, output_bins: int = 4) -> pd.DataFrame:
    """Group the length samples into classes by prompt and output quantile bins.

    Columns: ``share`` p_k, mean ``prompt``, ``output``, and the class means of ``work`` w_k,
    ``slot_iterations`` n_k and ``kv_footprint`` g_k (means of the members, so sum_k p_k a_k
    equals the sample mean exactly). Index ``request_class`` labelled ``s<i>o<j>``.
    """
    s, o, c = instance.prompt_tokens, instance.output_tokens, instance.chunk_tokens

    def bins(values: np.ndarray, count: int) -> np.ndarray:
        edges = np.unique(np.quantile(values, np.linspace(0, 1, count + 1)[1:-1]))
        return np.searchsorted(edges, values, side="right")

    frame = pd.DataFrame(
        {
            "sb": bins(s, prompt_bins),
            "ob": bins(o, output_bins),
            "prompt": s,
            "output": o,
            "work": work_tokens(s, o),
            "slot_iterations": slot_iterations(s, o, c),
            "kv_footprint": kv_footprint(s, o, c),
        }
    )
    grouped = frame.groupby(["sb", "ob"], sort=True)
    out = grouped[["prompt", "output", "work", "slot_iterations", "kv_footprint"]].mean()
    out.insert(0, "share", grouped.size() / len(frame))
    out.index = pd.Index([f"s{i}o{j}" for i, j in out.index], name="request_class")
    return out.astype(float)


@dataclasses.dataclass(frozen=True)
class LpUnits:
    """The units the fluid LP is written in (:func:`lp_units`).

    time_s : u, seconds per time unit (iterations per second r is written r u);
    rate : mu, requests/s per unit of x and theta (x and theta are written x / mu).
    """

    time_s: float
    rate: float

    def row_scale(self, instance: Instance, memory: float) -> dict[str, float]:
        """Reported units per model unit of each row family: mix in mu req/s, kv_memory in
        M' / u token-iterations/s, token_budget in b / u tokens/s, batch_slots in B / u
        slot-iterations/s (busy_time is seconds per second in both)."""
        u = self.time_s
        return {"mix": self.rate, "kv_memory": memory / u, "token_budget": instance.token_budget / u,
                "batch_slots": instance.batch_cap / u}


def lp_units(instance: Instance, closed_form: Bounds) -> LpUnits:
    """Units that put every term of the fluid LP near 1 at its optimum, from the closed-form
    bound it reproduces: rates in mu = the bound's max_stable_rate, time in u = the iteration time
    t(mu) at that operating point (the full-budget iteration d0 + d1 b when t(mu) is not > 0, as at
    d0 = 0). The rows then read

        busy_time:    (d0 / u) r' + sum_k (d1 w_k mu) x'_k <= 1
        kv_memory:    sum_k (g_k mu u / M') x'_k <= r'        (and likewise b and B)

    with x' = x / mu, theta' = theta / mu (about 1) and r' = r u (about 1 iteration per u): each
    coefficient is the share of a second, of the memory, of the budget or of the slots one term
    takes at the optimum. HiGHS drops matrix entries below 1e-9, refuses them above 1e15 and its
    tolerances are absolute: in seconds and tokens a step time of 1e-10 s dropped the busy-time
    row (the LP came back "unbounded") and prompts of 1e11 tokens made KV coefficients of 1e21. In
    these units a dropped entry moves the optimum by about 1e-9 of itself, and the model is the
    same at any scale of the times (all times x c: u x c, mu / c).
    """
    d0, d1 = instance.step_overhead_s, instance.per_token_s
    rate = closed_form.max_stable_rate
    unit = self_consistent_iteration(instance, rate, closed_form.means["work"])
    if not (math.isfinite(unit) and unit > 0):
        unit = d0 + d1 * instance.token_budget
    return LpUnits(time_s=float(unit), rate=float(rate))


CLASS_COLUMNS = ("share", "work", "slot_iterations", "kv_footprint")  # what the LP reads


def _check_lp_options(corrected: Any, classes: Any, recompute_fraction: Any) -> None:
    """The fluid LP's build options in the user's terms, refused by name (``classes=2`` was an
    AttributeError deep in the build, ``corrected="abc"`` taken as True)."""
    flag("corrected", corrected)
    if classes is not None:
        if not isinstance(classes, pd.DataFrame):
            raise InvalidInstanceError(
                f"classes must be None (the instance's request_classes) or a DataFrame with "
                f"columns {', '.join(CLASS_COLUMNS)}, one row per class, got {type(classes).__name__}")
        missing = [c for c in CLASS_COLUMNS if c not in classes.columns]
        if missing or classes.empty:
            raise InvalidInstanceError(
                f"classes must have columns {', '.join(CLASS_COLUMNS)} and at least one row "
                f"(see request_classes); missing: {', '.join(missing) or 'none'}, rows: {len(classes)}")
        values = classes[list(CLASS_COLUMNS)].to_numpy()
        if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)) \
                or np.any(values < 0) or not np.isclose(classes["share"].sum(), 1.0):
            raise InvalidInstanceError("classes: share, work, slot_iterations and kv_footprint "
                                       "must be finite numbers >= 0, the shares summing to 1")
    if recompute_fraction is not None and (
            isinstance(recompute_fraction, bool)
            or not isinstance(recompute_fraction, int | float | np.number)
            or not 0 <= recompute_fraction < math.inf):
        raise InvalidInstanceError(f"recompute_fraction must be None (estimated) or a finite "
                                   f"number >= 0 (extra work per unit of work), got "
                                   f"{recompute_fraction!r}")


def _lp_data(
    instance: Instance, corrected: bool, classes: pd.DataFrame | None, recompute_fraction: float | None
) -> tuple[pd.DataFrame, float, LpUnits]:
    """The classes, the usable memory M' (tokens) and the LP's units (:func:`lp_units`)."""
    _check_lp_options(corrected, classes, recompute_fraction)
    classes = request_classes(instance) if classes is None else classes
    if not corrected:
        return classes, float(instance.kv_tokens), lp_units(instance, bounds(instance, corrected=False))
    corrected_bounds = bounds(instance, recompute_fraction=recompute_fraction)
    if instance.step_overhead_s == 0 and corrected_bounds.binding == "memory":
        # with no step overhead r is free and no M' can bind: carry the recomputation the
        # corrected memory bound charges into the work instead (then the LP is min(mu) again)
        extra = 1.0 + memory_corrections(instance, recompute_fraction,
                                         rate=corrected_bounds.memory)["recompute_fraction"]
        classes = classes.assign(work=classes["work"] * extra)
    return classes, corrected_bounds.usable_kv_tokens, lp_units(instance, corrected_bounds)


def _coefficients(instance: Instance, classes: pd.DataFrame, memory: float,
                  units: LpUnits) -> dict[str, Any]:
    """The LP's coefficients in its units (:func:`lp_units`), one array per class each."""
    u, mu = units.time_s, units.rate
    return {
        "share": classes["share"].to_numpy(float),
        "busy_r": instance.step_overhead_s / u,
        "busy_x": instance.per_token_s * mu * classes["work"].to_numpy(float),
        "kv_memory": classes["kv_footprint"].to_numpy(float) * (mu * u / memory),
        "token_budget": classes["work"].to_numpy(float) * (mu * u / instance.token_budget),
        "batch_slots": classes["slot_iterations"].to_numpy(float) * (mu * u / instance.batch_cap),
    }


def build(
    instance: Instance,
    *,
    relax: bool = False,
    corrected: bool = True,
    classes: pd.DataFrame | None = None,
    recompute_fraction: float | None = None,
) -> pyo.ConcreteModel:
    """The fluid LP (Pyomo); ``relax`` is accepted for the common interface (it is an LP).

    Written in the units of :func:`lp_units` (x and theta in mu req/s, r in iterations per u
    seconds, each capacity row divided by its capacity); ``objective_scale`` and ``row_scale``
    make ``servopt.solve`` report theta, the bound and every price per second as documented, and
    :func:`decisions` reports x, r and theta per second. ``units`` holds the units.
    """
    classes, memory, units = _lp_data(instance, corrected, classes, recompute_fraction)
    keys = list(classes.index)
    c = {name: (dict(zip(keys, v, strict=True)) if isinstance(v, np.ndarray) else v)
         for name, v in _coefficients(instance, classes, memory, units).items()}

    m = pyo.ConcreteModel(name="capacity_fluid_lp")
    m.K = pyo.Set(initialize=keys, ordered=True)
    m.x = pyo.Var(m.K, domain=pyo.NonNegativeReals)
    m.r = pyo.Var(domain=pyo.NonNegativeReals)
    m.theta = pyo.Var(domain=pyo.NonNegativeReals)
    m.mix = pyo.Constraint(m.K, rule=lambda m, k: m.x[k] == c["share"][k] * m.theta)
    m.busy_time = pyo.Constraint(expr=c["busy_r"] * m.r + sum(c["busy_x"][k] * m.x[k] for k in m.K) <= 1.0)
    for name in ("kv_memory", "token_budget", "batch_slots"):
        m.add_component(name, pyo.Constraint(expr=sum(c[name][k] * m.x[k] for k in m.K) - m.r <= 0))
    m.rate = pyo.Objective(expr=m.theta, sense=pyo.maximize)  # in units of mu req/s
    m.index_names = {"mix": ["request_class"], "x": ["request_class"]}
    m.usable_kv_tokens = memory
    m.units = units
    m.objective_scale = units.rate  # servopt.solve reports theta and the prices per second
    m.row_scale = units.row_scale(instance, memory)
    return m


def build_cvxpy(
    instance: Instance,
    *,
    corrected: bool = True,
    classes: pd.DataFrame | None = None,
    recompute_fraction: float | None = None,
) -> CvxpyModel:
    """The same fluid LP in CVXPY (independent formulation, for cross-checks), in the units of
    :func:`build`; its variables are reported per second."""
    import cvxpy as cp

    classes, memory, units = _lp_data(instance, corrected, classes, recompute_fraction)
    c = _coefficients(instance, classes, memory, units)
    x = cp.Variable(len(classes), nonneg=True)
    r = cp.Variable(nonneg=True)
    theta = cp.Variable(nonneg=True)
    rows = {
        "mix": x == c["share"] * theta,
        "busy_time": cp.reshape(c["busy_r"] * r + c["busy_x"] @ x, (1,), order="C") <= 1.0,
        **{name: cp.reshape(c[name] @ x - r, (1,), order="C") <= 0
           for name in ("kv_memory", "token_budget", "batch_slots")},
    }
    single = pd.Index([None])
    index = {
        name: (pd.Index(classes.index, name="request_class") if name == "mix" else single) for name in rows
    }
    problem = cp.Problem(cp.Maximize(theta), list(rows.values()))
    model = CvxpyModel(
        problem,
        "max",
        {k: (v, index[k]) for k, v in rows.items()},
        {
            "x": (x * units.rate, pd.Index(classes.index, name="request_class")),
            # scalars labelled 0, as the Pyomo path's one-entry series
            "r": (cp.reshape(r / units.time_s, (1,), order="C"), pd.RangeIndex(1)),
            "theta": (cp.reshape(theta * units.rate, (1,), order="C"), pd.RangeIndex(1)),
        },
    )
    model.objective_scale = units.rate  # theta, the bound and the prices per second
    model.row_scale = units.row_scale(instance, memory)
    return model


def decisions(model: pyo.ConcreteModel, instance: Instance) -> dict[str, Any]:
    """Primal values: class rates x (req/s), iterations per second r, sustainable rate theta
    (the model's values, written in its ``units``, per second)."""
    units = getattr(model, "units", LpUnits(time_s=1.0, rate=1.0))
    x = pd.Series({k: pyo.value(model.x[k]) * units.rate for k in model.K}, name="x", dtype=float)
    x.index.name = "request_class"
    return {
        "x": x,
        "r": pd.Series([pyo.value(model.r) / units.time_s], name="r"),
        "theta": pd.Series([pyo.value(model.theta) * units.rate], name="theta"),
    }


def usable_kv_slope(instance: Instance, *, corrected: bool = True,
                    recompute_fraction: float | None = None) -> float:
    """dM'/dM: usable KV tokens M' of the corrected memory bound per physical KV token (1 for the
    uncorrected bound), by a forward difference of 0.1% of M (M' is a closed form with a fixed
    point, not linear in M: the head-of-line and recomputation corrections move with it; forward,
    because less memory than M may not fit the instance's largest request)."""
    if not corrected:
        return 1.0
    return _usable_kv_change(instance, "kv_tokens", max(1, round(1e-3 * instance.kv_tokens)),
                             recompute_fraction)


def usable_kv_per_overhead(instance: Instance, *, corrected: bool = True,
                           recompute_fraction: float | None = None) -> float:
    """dM'/dd0: usable KV tokens M' of the corrected memory bound per second of step overhead d0
    (0 for the uncorrected bound, where M' = M), by a forward difference of 0.1% of d0 (1 us when
    d0 = 0). The corrections move M' with d0, so the value of d0 is not the busy-time price alone.
    """
    if not corrected:
        return 0.0
    d0 = instance.step_overhead_s
    return _usable_kv_change(instance, "step_overhead_s", 1e-3 * d0 if d0 > 0 else 1e-6,
                             recompute_fraction)


def _usable_kv_change(instance: Instance, field: str, step: float,
                      recompute_fraction: float | None) -> float:
    """Forward difference of the corrected bound's usable KV M' in one worker field, per unit.

    The moved point is only evaluated by :func:`bounds`, never rebuilt through the constructor:
    a valid instance at the edge of a field's range (kv_tokens or step_overhead_s near the 1e12
    magnitude limit) moved 0.1% forward lies past that range, and the closed forms hold there."""
    moved = copy.copy(instance)  # a shallow copy: the arrays are shared, read-only
    object.__setattr__(moved, field, getattr(instance, field) + step)
    up = bounds(moved, recompute_fraction=recompute_fraction).usable_kv_tokens
    here = bounds(instance, recompute_fraction=recompute_fraction).usable_kv_tokens
    return (up - here) / step


def fingerprint(instance: Instance) -> str:
    """A hash of what the LP reads: the lengths and the worker profile, not the target rate, the
    headroom or the label (one solve plans every rate)."""
    return instance.with_(arrival_rate=1.0, headroom=0.0, workload="").content_hash()


CAPACITY_ROWS = {  # the LP's capacity rows and their prices' units (see the module docstring)
    "busy_time": "req/s per unit of worker time",
    "kv_memory": "req/s per KV token-iteration per second",
    "token_budget": "req/s per token per second of budget",
    "batch_slots": "req/s per slot-iteration per second",
}
LP_DECISIONS = {"theta": "req/s", "r": "iterations per second"}


def _one_value(solution: Any, kind: str, name: str) -> float:
    """The single value of a capacity LP solution's price (``kind="prices"``) or decision, refused
    (``InvalidInstanceError`` naming it) when missing, not one row, nan, infinite or negative."""
    table = getattr(solution, kind, None)
    if not isinstance(table, dict) or name not in table:
        raise InvalidInstanceError(f"the capacity solution has no {name} {kind[:-1]}: solve the fluid "
                                   f"LP (servopt.solve(instance)) and pass its solution")
    series = table[name]
    if len(series) != 1:
        raise InvalidInstanceError(f"the capacity solution's {name} {kind[:-1]} must be one value, "
                                   f"got {len(series)}")
    try:
        value = float(series.iloc[0])
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"the capacity solution's {name} {kind[:-1]} must be a number, "
                                   f"got {series.iloc[0]!r}") from None
    if not (math.isfinite(value) and value >= 0):
        unit = CAPACITY_ROWS.get(name) or LP_DECISIONS[name]
        what = "a capacity row's price" if kind == "prices" else "the LP's value of it"
        raise InvalidInstanceError(f"the capacity solution's {name} {kind[:-1]} is {value!r}: {what} "
                                   f"must be finite and >= 0 ({unit}); re-solve the LP or correct "
                                   f"the saved value")
    return value


def marginal_values(solution: Any, instance: Instance, *, corrected: bool = True,
                    recompute_fraction: float | None = None) -> pd.Series:
    """What one more unit of each worker resource is worth, from the LP prices.

    Returns a Series: ``kv_token`` (req/s per physical KV token: the LP's memory row holds the
    usable memory M', so its price times r is per usable token and is multiplied by
    :func:`usable_kv_slope`; pass ``corrected`` as the model was built), ``token_budget`` (req/s
    per token of b), ``batch_slot`` (req/s per slot), ``step_overhead_ms`` (req/s lost per ms of
    d0: the busy-time price, less the memory price times what M' gains from d0,
    :func:`usable_kv_per_overhead`), and the elasticities ``*_elasticity`` (% sustainable rate
    per % of the resource; ``step_overhead_ms_elasticity`` is % rate lost per % of d0, positive
    like ``step_overhead_ms``).

    The four capacity rows' prices and the decisions theta and r must each be one finite value
    >= 0: anything else (e.g. a nan edited into a saved solution) raises ``InvalidInstanceError``
    naming it, since a nan elasticity would name a wrong binding resource.
    """
    price = {name: _one_value(solution, "prices", name) for name in CAPACITY_ROWS}
    theta = _one_value(solution, "decisions", "theta")
    r = _one_value(solution, "decisions", "r")
    values = {
        "kv_token": price["kv_memory"] * r * usable_kv_slope(
            instance, corrected=corrected, recompute_fraction=recompute_fraction),
        "token_budget": price["token_budget"] * r,
        "batch_slot": price["batch_slots"] * r,
        "step_overhead_ms": (price["busy_time"] - price["kv_memory"] * usable_kv_per_overhead(
            instance, corrected=corrected, recompute_fraction=recompute_fraction)) * r * 1e-3,
    }
    scale = {
        "kv_token": instance.kv_tokens,
        "token_budget": instance.token_budget,
        "batch_slot": instance.batch_cap,
        "step_overhead_ms": instance.step_overhead_s * 1e3,
    }
    for key in list(values):
        values[f"{key}_elasticity"] = values[key] * scale[key] / theta if theta > 0 else math.nan
    return pd.Series(values, name="marginal_value")


def explain_infeasible(instance: Instance) -> str:
    """Domain reason the capacity LP has no solution (for ``InfeasibleError``): the worker's
    resources."""
    return (
        "the capacity LP is infeasible: check that the worker has positive KV memory, token "
        "budget and batch cap"
    )
