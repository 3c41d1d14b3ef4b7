"""Decode routing instances: data-parallel decode workers with a step barrier, and a request stream.

A fleet of ``workers`` identical decode workers, each with ``slots`` batch slots and room for
``kv_capacity`` KV tokens. Every decode step ends at a barrier: it lasts
``step_ms + ms_per_kv_token * max_g L_g`` milliseconds (plus ``prefill_ms_per_token`` times the
prompt tokens a worker admits in that step), where ``L_g`` is the KV tokens resident on worker
``g``. A request is routed once to one worker and stays there; while it generates its ``j``-th
output token (j = 0, 1, ...) it holds ``prompt + j`` KV tokens (``L_g`` counts these) and needs
room for ``prompt + j + 1`` (the new token's KV), and it leaves after ``output_tokens`` steps, so
its peak need is ``prompt + output`` KV tokens. Online methods see ``prompt_tokens`` and, when
given, ``predicted_tokens``; the true ``output_tokens`` are hidden from them.

A request whose ``prompt + output`` exceeds ``kv_capacity`` can never finish: constructing such
an instance raises :class:`~servopt.core.InfeasibleError` naming it. Batch scheduling has the
same rule (``s + o <= kv_memory``); capacity's model counts one token less (``s + o - 1 <=
kv_tokens``: the last token's KV is never stored), so a request of exactly ``kv_capacity + 1``
tokens fits a capacity worker of that size but not a decode-routing one.

``requests`` is a frame numbered 0..n-1 in arrival order (its values are read-only in the
instance; edit a ``requests.copy()`` and build a new instance) with columns ``arrival_s``
(seconds, or decode steps when ``arrival_unit == "step"``), ``prompt_tokens``,
``output_tokens`` and optionally ``predicted_tokens``. ``block_ids`` optionally lists the
prefix block ids of each request.

Generators are calibrated to the Azure LLM inference traces 2023 (Splitwise, ISCA 2024):
conversation context mean 1155 / median 1020 tokens, output mean 211 / median 129 (max 1000);
code context mean 2048 / median 1469, output mean 28 / median 13. Lengths are log-normal with the
published median and a spread solved so that the (clipped) mean matches the published mean.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.core import Instance as _Base
from servopt.core.checks import flag, number, whole_number
from servopt.instances import traces

REQUIRED = ("arrival_s", "prompt_tokens", "output_tokens")
MAX_OUTPUT = 1_000_000  # output tokens per request: beyond any model's output limit
ARRIVAL_UNITS = ("s", "step")
# Decode workers of an instance. The simulator keeps a queue (760 bytes empty) and counters per
# worker, so 1e11 workers in a small file was a MemoryError from the Python API; 100,000 is 76 MB
# of empty queues and far beyond any data-parallel decode fleet (hundreds of workers). Slots
# need no cap: nothing is allocated per slot (more slots than requests is simply no limit).
MAX_WORKERS = 100_000
# pandas' inferred kinds of a column of numbers (anything else, e.g. boolean or string, is refused)
NUMERIC_KINDS = ("integer", "floating", "mixed-integer-float", "decimal", "empty")

# (median, mean, clip max) of the Azure 2023 traces, tokens.
WORKLOADS: dict[str, dict[str, tuple[float, float, int]]] = {
    "conversation": {"prompt": (1020.0, 1155.0, 8192), "output": (129.0, 211.0, 1000)},
    "code": {"prompt": (1469.0, 2048.0, 8192), "output": (13.0, 28.0, 2000)},
}


@dataclasses.dataclass(frozen=True, repr=False)
class Instance(_Base):
    """A decode-routing instance (units: tokens, milliseconds, seconds of arrival).

    workers : number of data-parallel decode workers G.
    slots : batch slots per worker B (requests decoding at once).
    kv_capacity : KV tokens a worker holds K.
    step_ms : fixed time of one decode step c0 (ms).
    ms_per_kv_token : time per KV token on the most loaded worker c1 (ms per token).
    requests : frame ``arrival_s, prompt_tokens, output_tokens[, predicted_tokens]``.
    prefill_ms_per_token : optional prefill time per admitted prompt token (ms per token).
    arrival_unit : ``"s"`` (arrivals in seconds) or ``"step"`` (arrivals in decode steps).
    block_ids : optional prefix block ids per request (list of lists of ints).
    name : free label.
    """

    decision = "decode_routing"
    schema_version = 1
    identifier_fields = ("block_ids",)  # prefix-block hashes may be any 64-bit integers

    workers: int
    slots: int
    kv_capacity: int
    step_ms: float
    ms_per_kv_token: float
    requests: pd.DataFrame
    prefill_ms_per_token: float = 0.0
    arrival_unit: str = "s"
    block_ids: list | None = None
    name: str = ""

    def validate(self) -> None:
        for field in ("workers", "slots", "kv_capacity"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InvalidInstanceError(f"{field} must be a positive integer, got {value!r}")
            self._set(field, int(value))
        if self.workers > MAX_WORKERS:
            raise InvalidInstanceError(
                f"workers is {self.workers:,}: at most {MAX_WORKERS:,} decode workers (the "
                "simulator keeps a queue per worker)")
        for field in ("step_ms", "ms_per_kv_token", "prefill_ms_per_token"):
            value = number(field, getattr(self, field), lambda v: 0 <= v < math.inf,
                           "a finite number >= 0 ms")
            self._set(field, value)
        if self.step_ms + self.ms_per_kv_token <= 0:
            raise InvalidInstanceError("step_ms and ms_per_kv_token are both 0: steps take no time")
        if self.arrival_unit not in ARRIVAL_UNITS:
            raise InvalidInstanceError(
                f"arrival_unit must be one of {ARRIVAL_UNITS}, got {self.arrival_unit!r}")
        self._set("requests", _check_requests(self.requests, self.kv_capacity))
        if self.block_ids is not None:
            ids = self.block_ids
            if not isinstance(ids, list) or len(ids) != len(self.requests):
                raise InvalidInstanceError(
                    f"block_ids must list one block-id list per request ({len(self.requests)})")
            for row, item in enumerate(ids):
                if not isinstance(item, list) or not all(
                        isinstance(b, int | np.integer) and not isinstance(b, bool) for b in item):
                    raise InvalidInstanceError(f"block_ids[{row}] must be a list of integers")
            self._set("block_ids", [[int(b) for b in item] for item in ids])

    # -- convenience views --------------------------------------------------------------------
    @property
    def n_requests(self) -> int:
        return len(self.requests)

    @property
    def arrival(self) -> np.ndarray:
        return self.requests["arrival_s"].to_numpy(dtype=float)

    @property
    def prompt(self) -> np.ndarray:
        return self.requests["prompt_tokens"].to_numpy(dtype=np.int64)

    @property
    def output(self) -> np.ndarray:
        return self.requests["output_tokens"].to_numpy(dtype=np.int64)

    @property
    def predicted(self) -> np.ndarray | None:
        if "predicted_tokens" not in self.requests.columns:
            return None
        return self.requests["predicted_tokens"].to_numpy(dtype=np.int64)

    def summary(self) -> str:
        r = self.requests
        first = float(r["arrival_s"].iloc[0]) if len(r) else 0.0
        span = float(r["arrival_s"].iloc[-1]) - first if len(r) else 0.0  # (sorted by arrival)
        unit = "s" if self.arrival_unit == "s" else " steps"
        start = f" from {first:.6g}{unit}" if first else ""
        label = f"{self.name}: " if self.name else ""
        return (f"{label}decode routing: {len(r)} requests over {span:.4g}{unit}{start}, {self.workers} "
                f"workers x {self.slots} slots x {self.kv_capacity} KV tokens, prompt mean "
                f"{r['prompt_tokens'].mean():.0f}, output mean {r['output_tokens'].mean():.0f}")


def _check_requests(frame: Any, kv_capacity: int) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInstanceError(f"requests must be a pandas DataFrame, got {type(frame).__name__}")
    if frame.columns.duplicated().any():
        twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise InvalidInstanceError(f"requests: column(s) {twice} appear more than once")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InvalidInstanceError(f"requests: missing column(s) {missing}; need {list(REQUIRED)}")
    for col in frame.columns:  # true/false or text would be taken as counts by to_numeric below
        kind = pd.api.types.infer_dtype(frame[col], skipna=True)
        if kind not in NUMERIC_KINDS:
            raise InvalidInstanceError(
                f"requests: column {col} must hold numbers, got {kind} values")
    extra = [c for c in frame.columns if c not in (*REQUIRED, "predicted_tokens")]
    if extra:
        raise InvalidInstanceError(
            f"requests: unknown column(s) {extra}; allowed are {[*REQUIRED, 'predicted_tokens']}")
    if len(frame) == 0:
        raise InvalidInstanceError("requests: the stream has no request")
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        head = ", ".join(map(str, frame.index[:4].tolist()))
        raise InvalidInstanceError(
            f"requests: the frame's index must be 0..{len(frame) - 1} (requests are numbered in "
            f"arrival order and every per-request result is labelled by that number), got "
            f"[{head}, ...]: pass frame.reset_index(drop=True), keeping your ids in your own frame")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame), name="request"))
    arrival = pd.to_numeric(frame["arrival_s"], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(arrival)):
        row = int(np.argmax(~np.isfinite(arrival)))
        raise InvalidInstanceError(f"requests: request {row}: arrival_s is missing or not a number")
    if np.any(arrival < 0):
        row = int(np.argmax(arrival < 0))
        raise InvalidInstanceError(f"requests: request {row}: arrival_s is negative ({arrival[row]})")
    if np.any(np.diff(arrival) < 0):
        row = int(np.argmax(np.diff(arrival) < 0)) + 1
        raise InvalidInstanceError(
            f"requests: arrival_s must be sorted: request {row} arrives at {arrival[row]:g}, "
            f"before request {row - 1} at {arrival[row - 1]:g}")
    out["arrival_s"] = arrival
    for col in ("prompt_tokens", "output_tokens", "predicted_tokens"):
        if col not in frame.columns:
            continue
        raw = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(raw)):
            row = int(np.argmax(~np.isfinite(raw)))
            raise InvalidInstanceError(f"requests: request {row}: {col} is missing or not a number")
        if np.any(raw != np.round(raw)):
            row = int(np.argmax(raw != np.round(raw)))
            raise InvalidInstanceError(f"requests: request {row}: {col} must be a whole number of "
                                       f"tokens, got {raw[row]}")
        low = 0 if col == "prompt_tokens" else 1
        if np.any(raw < low):
            row = int(np.argmax(raw < low))
            what = "negative" if raw[row] < 0 else "0 (a request generates at least one token)"
            raise InvalidInstanceError(f"requests: request {row}: {col} is {what}: {raw[row]:g}")
        if col == "output_tokens" and np.any(raw > MAX_OUTPUT):
            row = int(np.argmax(raw > MAX_OUTPUT))
            raise InvalidInstanceError(
                f"requests: request {row}: output_tokens is {raw[row]:,.0f}: at most {MAX_OUTPUT:,} "
                f"tokens per request (decode steps are simulated one token at a time)")
        out[col] = raw.astype(np.int64)
    need = out["prompt_tokens"].to_numpy() + out["output_tokens"].to_numpy()
    if np.any(need > kv_capacity):
        row = int(np.argmax(need > kv_capacity))
        raise InfeasibleError(
            f"requests: request {row} needs {need[row]} KV tokens (prompt "
            f"{out['prompt_tokens'].iloc[row]} + output {out['output_tokens'].iloc[row]}) but a "
            f"worker holds only kv_capacity={kv_capacity}: it could never finish")
    return out


# ---------------------------------------------------------------------------------------------
# Length distributions and capacity
# ---------------------------------------------------------------------------------------------
def _clipped_lognormal_mean(mu: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for log-normal X (natural-log mean mu, std sigma)."""
    z = (math.log(cap) - mu) / sigma
    return math.exp(mu + sigma**2 / 2) * stats.norm.cdf(z - sigma) + cap * stats.norm.sf(z)


def lognormal_sigma(median: float, mean: float, cap: float) -> float:
    """Spread of a log-normal with this median whose mean after clipping at ``cap`` is ``mean``."""
    mu = math.log(median)
    return float(optimize.brentq(lambda s: _clipped_lognormal_mean(mu, s, cap) - mean, 1e-3, 5.0))


def sample_lengths(workload: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output token counts of ``n`` requests of an Azure-calibrated workload."""
    if not isinstance(workload, str) or workload not in WORKLOADS:
        raise InvalidInstanceError(f"workload must be one of {sorted(WORKLOADS)}, got {workload!r}")
    out = []
    for part in ("prompt", "output"):
        median, mean, cap = WORKLOADS[workload][part]
        sigma = lognormal_sigma(median, mean, cap)
        draw = np.exp(rng.normal(math.log(median), sigma, n))
        out.append(np.clip(np.round(draw), 1, cap).astype(np.int64))
    return out[0], out[1]


PREFILL_SAMPLES = 20_000  # sampled steps of one worker, for fleet_capacity's prefill term


def fleet_capacity(prompt: np.ndarray, output: np.ndarray, *, workers: int, slots: int,
                   kv_capacity: int, step_ms: float, ms_per_kv_token: float,
                   prefill_ms_per_token: float = 0.0) -> float:
    """Requests per second the fleet sustains on this length mix (fluid model).

    A request held in a slot for o steps contributes on average
    ``kbar = E[o s + o(o-1)/2] / E[o]`` KV tokens per step it is resident. With n requests per
    worker (capped by the slots and by the KV: ``n kbar <= K``) the G workers finish, and admit,
    ``a = G n / E[o]`` requests per step. The decode work is balanced: ``c1 n kbar`` ms on every
    worker. A prompt is prefilled whole, on its worker, in its admission step, and the step waits
    for the slowest worker, so the prefill term is ``p P`` with P the expected largest
    per-worker sum of admitted prompt tokens: each worker admits Poisson(a / G) requests per step
    with prompts drawn from the mix (P from the distribution of one worker's sum, estimated on
    :data:`PREFILL_SAMPLES` sampled steps, fewer when a step admits hundreds, with a fixed seed,
    so the result is deterministic; with thousands of admissions per worker and step, the
    normal law of the sum; with one worker
    P = a E[s], the balanced mean). A step takes ``c0 + c1 n kbar + p P`` ms
    and the fleet finishes ``G n / (E[o] step)`` requests per ms.
    """
    s = prompt.astype(float)
    o = output.astype(float)
    mean_o = o.mean()
    kbar = float(np.mean(o * s + o * (o - 1) / 2) / mean_o)
    n = min(float(slots), kv_capacity / kbar)
    per_worker = n / mean_o  # admissions per worker per step
    if prefill_ms_per_token == 0 or workers == 1:
        largest = per_worker * s.mean()
    else:
        rng = np.random.default_rng(0)
        # at most about 4e6 prompts drawn: fewer sampled steps as admissions per step grow
        samples = int(min(PREFILL_SAMPLES, max(1000, 4e6 / per_worker)))
        if per_worker <= 4000:
            counts = rng.poisson(per_worker, samples)
            drawn = s[rng.integers(0, len(s), int(counts.sum()))]
            sums = np.bincount(np.repeat(np.arange(samples), counts), weights=drawn,
                               minlength=samples)
        else:  # thousands of admissions per worker and step: their sum is normal (its moments)
            sums = np.maximum(0.0, rng.normal(per_worker * s.mean(),
                                              math.sqrt(per_worker * np.mean(s * s)), samples))
        sums = np.sort(sums)
        share = np.arange(samples + 1) / samples
        largest = float(np.sum(sums * np.diff(share ** workers)))  # E[max of G iid sums]
    step = step_ms + ms_per_kv_token * n * kbar + prefill_ms_per_token * largest
    return workers * n / (mean_o * step) * 1000.0


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------
def predicted_lengths(output: np.ndarray, error: float, rng: np.random.Generator) -> np.ndarray:
    """``predicted_tokens`` = true output x exp(N(0, error^2)), rounded, at least 1 token
    (``error`` at most ``MAX_PREDICTION_ERROR``)."""
    if isinstance(error, bool | np.bool_) or not (
            isinstance(error, int | float | np.integer | np.floating) and math.isfinite(error)
            and 0 <= error <= MAX_PREDICTION_ERROR):
        raise InvalidInstanceError(
            f"prediction_error must be a finite spread in [0, {MAX_PREDICTION_ERROR:g}] (0 = exact "
            f"predictions; {MAX_PREDICTION_ERROR:g} is a factor e^{MAX_PREDICTION_ERROR:g} = "
            f"{math.exp(MAX_PREDICTION_ERROR):,.0f} at one sigma), got {error!r}")
    noisy = output * np.exp(rng.normal(0.0, error, len(output)))
    return np.maximum(1, np.round(noisy)).astype(np.int64)


# a generated stream: 1.1 GB and 2-5 s to generate at the cap (benchmarks/results/limits.md, three
# runs at load 1-5);
# a larger one is more likely a typo than a workload
MAX_REQUESTS = 10_000_000
MAX_LOAD = 100.0  # offered load as a multiple of the fleet's capacity
# sigma of the log-normal prediction error (as batch scheduling's MAX_NOISE): e^10 = 22,026 times
# the truth at one sigma; larger spreads overflowed exp into negative predicted lengths
MAX_PREDICTION_ERROR = 10.0
# share of a generated stream whose prompt may be shortened to fit a small kv_capacity (as
# capacity.generate's MAX_DROPPED): more, and the stream is no longer the workload
MAX_CLIPPED = 0.01


def _times(step_ms: Any, ms_per_kv_token: Any, prefill_ms_per_token: Any) -> tuple[float, float, float]:
    """The step-time parameters (ms, ms per token), each refused by name unless finite and >= 0."""
    return tuple(number(name, value, lambda v: 0 <= v < math.inf, "a finite number >= 0 ms")
                 for name, value in (("step_ms", step_ms), ("ms_per_kv_token", ms_per_kv_token),
                                     ("prefill_ms_per_token", prefill_ms_per_token)))


def _some_time(step_ms: float, ms_per_kv_token: float) -> None:
    """Refuse step times that are both 0 (checked before fleet_capacity divides by the step)."""
    if step_ms + ms_per_kv_token <= 0:
        raise InvalidInstanceError("step_ms and ms_per_kv_token are both 0: steps take no time")


def _load(value: Any) -> float:
    return number("load", value, lambda v: 0 < v <= MAX_LOAD,
                  f"in (0, {MAX_LOAD:g}] times the fleet's capacity")


def generate(*, workload: str = "conversation", requests: int = 600, workers: int = 4,
             load: float = 0.85, arrivals: str = "poisson", slots: int = 64,
             kv_capacity: int = 131072, step_ms: float = 10.0, ms_per_kv_token: float = 1e-4,
             prefill_ms_per_token: float = 0.0, prediction_error: float | None = None,
             burstiness: float | None = None, seed: int = 0) -> Instance:
    """An Azure-calibrated request stream at ``load`` times the fleet's capacity
    (:func:`fleet_capacity`: balanced decode, and the barrier's largest prefill when
    ``prefill_ms_per_token`` > 0).

    workload : ``conversation`` or ``code`` (Azure LLM inference 2023 length statistics). Not
        capacity's presets of the same names: its ``conversation`` is a generic chat shape with
        shorter prompts and longer outputs (prompt median ~700, output median ~180, against 1020
        and 129 here); see :func:`servopt.instances.capacity.workload_lengths`.
    load : arrival rate / :func:`fleet_capacity` (0.7, 0.85, 0.95 in the benchmark).
    arrivals : ``poisson``, or ``bursty`` (gamma inter-arrival times with squared coefficient
        of variation ``burstiness``, default 4.0; with ``poisson`` a given ``burstiness`` has no
        effect and is ignored with an :class:`~servopt.instances.IgnoredParameterWarning`,
        refused by ``servopt generate``).
    prediction_error : when given, add ``predicted_tokens`` = true output x exp(N(0, error^2)).
    kv_capacity : a request whose prompt + output exceeds it has its prompt shortened to fit,
        and the name counts them; more than ``MAX_CLIPPED`` (1%) of the requests is refused
        (the stream would no longer be the workload).
    """
    requests = whole_number("requests", requests, high=MAX_REQUESTS)
    workers, slots = whole_number("workers", workers), whole_number("slots", slots)
    kv_capacity = whole_number("kv_capacity", kv_capacity)
    step_ms, ms_per_kv_token, prefill_ms_per_token = _times(step_ms, ms_per_kv_token,
                                                            prefill_ms_per_token)
    _some_time(step_ms, ms_per_kv_token)
    load = _load(load)
    if arrivals not in ("poisson", "bursty"):
        raise InvalidInstanceError(f"arrivals must be 'poisson' or 'bursty', got {arrivals!r}")
    if burstiness is not None and arrivals != "bursty":
        from servopt.instances import warn_ignored

        warn_ignored("decode_routing.generate", "burstiness", burstiness, "arrivals='bursty'")
    burstiness = number("burstiness", 4.0 if burstiness is None else burstiness,
                        lambda v: 0 < v < math.inf,
                        "a finite number > 0 (squared coefficient of variation of the gaps)")
    if prediction_error is not None:  # refused by name before the draw
        predicted_lengths(np.ones(0, dtype=np.int64), prediction_error, np.random.default_rng(0))
    rng = np.random.default_rng(whole_number("seed", seed, low=0))
    prompt, output = sample_lengths(workload, int(requests), rng)
    too_long = prompt + output > kv_capacity
    clipped = int(too_long.sum())
    if clipped > MAX_CLIPPED * requests:
        need = prompt + output
        raise InvalidInstanceError(
            f"kv_capacity={kv_capacity:,}: {clipped:,} of the {requests:,} {workload} requests "
            f"({clipped / requests:.0%}) need more KV tokens (prompt + output) than a worker holds "
            f"(the longest {int(need.max()):,}); shortening their prompts would change the workload "
            f"(at most {MAX_CLIPPED:.0%} are shortened): raise kv_capacity")
    prompt = np.minimum(prompt, np.maximum(kv_capacity - output, 0))
    rate = load * fleet_capacity(prompt, output, workers=workers, slots=slots,
                                 kv_capacity=kv_capacity, step_ms=step_ms,
                                 ms_per_kv_token=ms_per_kv_token,
                                 prefill_ms_per_token=prefill_ms_per_token)
    if arrivals == "poisson":
        gaps = rng.exponential(1.0 / rate, int(requests))
    else:
        shape = 1.0 / burstiness
        gaps = rng.gamma(shape, 1.0 / (rate * shape), int(requests))
    arrival = np.cumsum(gaps) - gaps[0]
    frame = pd.DataFrame({"arrival_s": arrival, "prompt_tokens": prompt, "output_tokens": output})
    if prediction_error is not None:
        frame["predicted_tokens"] = predicted_lengths(output, prediction_error, rng)
    return Instance(workers=int(workers), slots=int(slots), kv_capacity=int(kv_capacity),
                    step_ms=float(step_ms), ms_per_kv_token=float(ms_per_kv_token),
                    prefill_ms_per_token=float(prefill_ms_per_token), requests=frame,
                    name=f"{workload} {arrivals} load={load:g}"
                    + (f" ({clipped:,} prompt{'s' * (clipped != 1)} shortened to the KV)"
                       if clipped else ""))


def generate_steps(*, workload: str = "conversation", requests: int = 200, workers: int = 4,
                   per_step: float | None = None, slots: int | None = None,
                   kv_capacity: int | None = None, step_ms: float = 10.0,
                   ms_per_kv_token: float = 1e-4, seed: int = 0) -> Instance:
    """A small stream with arrivals counted in decode steps, for the hindsight bound.

    ``per_step`` is the Poisson arrival rate in requests per step (default: enough for about
    eight requests per worker in flight). Arrivals are whole steps: each request arrives at the
    step its arrival time falls in (rounded down: a time of 3.7 steps is step 3), counted from
    the first request's step, so the first request arrives at step 0 and several requests can
    arrive at one step. Slots and KV default to values that never bind
    (every request starts the step it arrives), so the hindsight IP is exact for it.
    """
    requests = whole_number("requests", requests, high=MAX_REQUESTS)
    workers = whole_number("workers", workers)
    if per_step is not None:
        number("per_step", per_step, lambda v: 0 < v < math.inf, "> 0 (arrivals per decode step)")
    if slots is not None:
        slots = whole_number("slots", slots)
    if kv_capacity is not None:
        kv_capacity = whole_number("kv_capacity", kv_capacity)
    step_ms, ms_per_kv_token, _ = _times(step_ms, ms_per_kv_token, 0.0)
    rng = np.random.default_rng(whole_number("seed", seed, low=0))
    prompt, output = sample_lengths(workload, int(requests), rng)
    rate = per_step if per_step is not None else 8.0 * workers / float(output.mean())
    arrival = np.floor(np.cumsum(rng.exponential(1.0 / rate, int(requests))))
    arrival -= arrival[0]
    slots = slots if slots is not None else int(requests)
    if kv_capacity is None:
        kv_capacity = int(np.sum(prompt + output))
    frame = pd.DataFrame({"arrival_s": arrival, "prompt_tokens": prompt, "output_tokens": output})
    return Instance(workers=int(workers), slots=slots, kv_capacity=int(kv_capacity),
                    step_ms=float(step_ms), ms_per_kv_token=float(ms_per_kv_token),
                    requests=frame, arrival_unit="step", name=f"{workload} hindsight")


def from_trace(frame: pd.DataFrame | str | Path, *, workers: int = 8, slots: int = 64,
               kv_capacity: int = 131072, step_ms: float = 10.0, ms_per_kv_token: float = 1e-4,
               prefill_ms_per_token: float = 0.0, load: float | None = None,
               rate_scale: float = 1.0, max_requests: int | None = None,
               clip_to_kv: bool = False, prediction_error: float | None = None, seed: int = 0,
               name: str = "") -> Instance:
    """An instance from a request frame of :mod:`servopt.instances.traces` (or an Azure CSV path).

    load : when given, arrivals are rescaled so the offered rate is ``load`` times the fleet's
        capacity (:func:`fleet_capacity`) on the trace's own lengths; otherwise
        ``rate_scale`` multiplies the trace's rate.
    max_requests : keep only the first requests.
    clip_to_kv : shorten each request whose prompt + output exceeds ``kv_capacity`` (its
        output to at most half the KV, its prompt to the rest; the instance's name counts them).
        False (default): such a request is an :class:`~servopt.core.InfeasibleError` that counts
        them and names the first. The rule is ``prompt + output <= kv_capacity`` (the module
        docstring); :func:`servopt.instances.capacity.from_trace` refuses (or, with
        ``drop_too_long``, drops) by its own model's rule, ``prompt + output - 1 <= kv_tokens``,
        so a request one token longer than the KV is kept there and refused here.
    name : a label (text); the name counts any clipped requests.
    prediction_error : when given, add ``predicted_tokens`` = true output x exp(N(0, error^2))
        (after any clipping), drawn with ``seed``, as :func:`generate` does.
    A request with 0 output tokens (a failed request in the Azure traces) is kept with 1.
    """
    if not isinstance(name, str):
        raise InvalidInstanceError(f"name must be a text label, got {name!r}")
    clip_to_kv = flag("clip_to_kv", clip_to_kv)
    if isinstance(frame, str | Path):
        frame = traces.read_azure(frame)
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInstanceError("from_trace needs a request frame or a trace path")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InvalidInstanceError(f"trace frame: missing column(s) {missing}")
    for field, value in (("workers", workers), ("slots", slots), ("kv_capacity", kv_capacity)):
        whole_number(field, value)
    step_ms, ms_per_kv_token, prefill_ms_per_token = _times(step_ms, ms_per_kv_token,
                                                            prefill_ms_per_token)
    _some_time(step_ms, ms_per_kv_token)
    if max_requests is not None:
        whole_number("max_requests", max_requests)
    seed = whole_number("seed", seed, low=0)
    if prediction_error is not None:  # refused by name before any work on the frame
        predicted_lengths(np.ones(0, dtype=np.int64), prediction_error, np.random.default_rng(0))
    if frame.columns.duplicated().any():
        twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise InvalidInstanceError(f"trace frame: column(s) {twice} appear more than once")
    for column in REQUIRED:  # the casts below would turn NaN, negative or fractional counts quietly
        kind = pd.api.types.infer_dtype(frame[column], skipna=True)
        if kind not in NUMERIC_KINDS:
            raise InvalidInstanceError(f"trace frame: column {column} must hold numbers, got {kind} values")
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0)
        if column != "arrival_s":
            bad |= values != np.round(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise InvalidInstanceError(
                f"trace frame: row {row}: {column} is {frame[column].iloc[row]!r}; it must be a "
                f"finite number >= 0{'' if column == 'arrival_s' else ' of whole tokens'}")
    arrival = frame["arrival_s"].to_numpy(dtype=float)
    if np.any(np.diff(arrival) < 0):  # shifted to its first row, it read as a negative arrival
        row = int(np.argmax(np.diff(arrival) < 0)) + 1
        raise InvalidInstanceError(
            f"trace frame: arrival_s must be sorted: row {row} arrives at {arrival[row]:g} s, before "
            f"row {row - 1} at {arrival[row - 1]:g} s (sort the frame by arrival_s)")
    if max_requests is not None:
        frame = frame.iloc[: int(max_requests)]
    rate_scale = number("rate_scale", rate_scale, lambda v: 0 < v < math.inf, "a number > 0")
    if load is not None:
        load = _load(load)
    out = frame[list(REQUIRED)].copy().reset_index(drop=True)
    out["arrival_s"] = out["arrival_s"] - float(out["arrival_s"].iloc[0]) if len(out) else 0.0
    out["output_tokens"] = np.maximum(out["output_tokens"].to_numpy(dtype=np.int64), 1)
    prompt = out["prompt_tokens"].to_numpy(dtype=np.int64)
    output = out["output_tokens"].to_numpy(dtype=np.int64)
    too_long = prompt + output > kv_capacity
    clipped = int(too_long.sum())
    if clipped and not clip_to_kv:
        row = int(np.argmax(too_long))
        raise InfeasibleError(
            f"trace: {clipped:,} of {len(out):,} requests need more KV tokens than a worker holds "
            f"(kv_capacity={kv_capacity:,}); the first, row {row}, needs {prompt[row] + output[row]:,} "
            f"(prompt {prompt[row]:,} + output {output[row]:,}). Pass clip_to_kv=True to shorten "
            f"them, or a larger kv_capacity")
    if clipped:  # only the requests that do not fit: output to at most half the KV, prompt the rest
        output = np.where(too_long, np.minimum(output, np.maximum(kv_capacity - prompt,
                                                                  kv_capacity // 2)), output)
        out["output_tokens"] = output
        out["prompt_tokens"] = np.minimum(prompt, kv_capacity - output)
    if load is not None:
        cap = fleet_capacity(out["prompt_tokens"].to_numpy(), out["output_tokens"].to_numpy(),
                             workers=workers, slots=slots, kv_capacity=kv_capacity,
                             step_ms=step_ms, ms_per_kv_token=ms_per_kv_token,
                             prefill_ms_per_token=prefill_ms_per_token)
        span = float(out["arrival_s"].iloc[-1])
        rate = (len(out) - 1) / span if span > 0 else math.inf
        if not math.isfinite(rate):
            raise InvalidInstanceError("trace: all requests arrive at once; cannot rescale to a load")
        rate_scale = load * cap / rate
    out["arrival_s"] = out["arrival_s"] / rate_scale
    if prediction_error is not None:
        out["predicted_tokens"] = predicted_lengths(out["output_tokens"].to_numpy(dtype=np.int64),
                                                    prediction_error, np.random.default_rng(seed))
    block_ids = None
    if "block_ids" in frame.columns:
        block_ids = [list(map(int, b)) for b in frame["block_ids"].iloc[: len(out)]]
    note = f" ({clipped:,} request{'s' * (clipped != 1)} clipped to the KV)" if clipped else ""
    return Instance(workers=int(workers), slots=int(slots), kv_capacity=int(kv_capacity),
                    step_ms=float(step_ms), ms_per_kv_token=float(ms_per_kv_token),
                    prefill_ms_per_token=float(prefill_ms_per_token), requests=out,
                    block_ids=block_ids, name=(name or "trace") + note)
