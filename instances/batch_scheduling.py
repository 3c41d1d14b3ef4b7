"""Batch scheduling: which waiting request joins the running batch of one worker.

Time is counted in rounds (one forward pass of the batch). Request ``i`` arrives at round
``arrival[i]`` with ``prompt_tokens[i]`` prompt tokens and will generate ``output_tokens[i]``
tokens (the truth, hidden from online policies, which see ``predicted_output[i]``). If it is
admitted at round ``p`` it prefills and emits its first token in round ``p``, one token per round
after that, and finishes at the end of round ``p + o_i - 1``; in its ``j``-th round it holds
``s_i + j`` KV tokens. Its end-to-end latency is ``p + o_i - a_i`` rounds. The KV memory of the
worker is ``kv_memory`` tokens; ``max_batch`` optionally caps the number of running requests.

A request whose peak need ``s_i + o_i`` exceeds ``kv_memory`` can never run: constructing such
an instance raises :class:`~servopt.core.InfeasibleError` naming the request. Decode routing has
the same rule (``s + o <= kv_capacity``); capacity's model counts one token less (``s + o - 1 <=
kv_tokens``), so a request of ``kv_tokens + 1`` tokens fits a capacity worker but not here.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.core import Instance as BaseInstance
from servopt.core.checks import either, number, whole_number
from servopt.core.instance import MAX_MAGNITUDE
from servopt.instances import warn_ignored

MAX_OUTPUT = 1_000_000  # output tokens per request: beyond any model's output limit
# sigma of the log-normal prediction error: e^10 = 22,026 times the truth at one sigma, past any
# useful predictor (1e12 overflowed exp in predict and was accepted)
MAX_NOISE = 10.0
MAX_PROMPT = 10_000_000  # prompt tokens per request: beyond any model's context
# requests per instance, as the other decisions' generators cap them; refused by the generators,
# by a file's loader before its arrays are decoded, and by the constructor before its int64
# copies. ``servopt generate batch_scheduling n=50000000`` wrote 494 MB at a 4.16 GB peak (audit
# R12); at the cap generate and write, and load, are in benchmarks/results/limits.md
# (batch_requests, batch_requests_load)
MAX_REQUESTS = 10_000_000

#: Log-normal fit of the Azure LLM inference trace 2023 (code): context tokens median 1469,
#: mean 2048, max 7437; generated tokens median 13, mean 28, min 6 (README of the shared traces).
#: The spread is set from the unclipped mean, so after clipping to [low, high] the draws have the
#: trace's medians but means 1977 and 28.7 (the trace: 2047.8 and 27.9; audit R55). Kept, since
#: every committed batch-scheduling table was drawn from it; decode routing's generator solves
#: for the clipped mean instead (``decode_routing.lognormal_sigma``).
AZURE_PROMPT = {"median": 1469.0, "mean": 2048.0, "low": 3, "high": 7437}
AZURE_OUTPUT = {"median": 13.0, "mean": 28.0, "low": 6, "high": 1899}


@dataclasses.dataclass(frozen=True, repr=False)
class Instance(BaseInstance):
    """One worker's requests and KV memory (tokens, rounds); see the module docstring.

    Fields (per-request arrays have one whole number per request, request ``i`` at index ``i``):

    kv_memory : the worker's KV-cache capacity (KV tokens).
    arrival : round in which each request arrives (rounds; one round = one forward pass).
    prompt_tokens : prompt length s_i (tokens).
    output_tokens : true output length o_i (tokens; one generated per round), hidden from online
        policies.
    predicted_output : the output length online policies see (tokens, >= 1). None when
        constructing means exact predictions: it is then a copy of ``output_tokens``, so after
        construction it is always an array.
    max_batch : cap on the requests running at once (requests), or None (KV memory only).
    name : a free label (e.g. the trace it came from).
    """

    decision = "batch_scheduling"
    schema_version = 1

    kv_memory: int
    arrival: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    predicted_output: np.ndarray | None = None
    max_batch: int | None = None
    name: str = ""

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "data") -> Instance:
        """As :meth:`servopt.core.Instance.from_dict`, refusing more than ``MAX_REQUESTS``
        arrivals before any field is decoded into arrays."""
        fields = data.get("fields") if isinstance(data, dict) else None
        arrival = fields.get("arrival") if isinstance(fields, dict) else None
        if isinstance(arrival, dict):  # {"ndarray": [...], "dtype": ...}
            arrival = arrival.get("ndarray")
        if isinstance(arrival, list):
            _check_requests(len(arrival), f"{source}: field 'arrival' has")
        return super().from_dict(data, source=source)

    def validate(self) -> None:
        if isinstance(self.kv_memory, bool) or not isinstance(self.kv_memory, int | np.integer):
            raise InvalidInstanceError(
                f"kv_memory must be a whole number of KV tokens, got {self.kv_memory!r}")
        if self.kv_memory < 1:
            raise InvalidInstanceError(f"kv_memory must be >= 1 token, got {self.kv_memory}")
        self._set("kv_memory", int(self.kv_memory))
        try:  # before the int64 copies below
            _check_requests(len(self.arrival), "arrival has")
        except TypeError:
            pass  # not a list: refused below by name
        arrays = {}
        for name in ("arrival", "prompt_tokens", "output_tokens", "predicted_output"):
            value = getattr(self, name)
            if value is None:
                if name == "predicted_output":
                    continue
                raise InvalidInstanceError(f"{name} is required: one entry per request, got None")
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError):
                raise InvalidInstanceError(f"{name} must be a 1-D list of whole numbers") from None
            if arr.ndim != 1:
                raise InvalidInstanceError(f"{name} must be a 1-D list (one entry per request)")
            if arr.dtype.kind == "f":
                if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                    bad = int(np.argmax(~np.isfinite(arr) | (arr != np.round(arr))))
                    raise InvalidInstanceError(
                        f"{name}[{bad}] = {arr[bad]}: must be a whole number")
            elif arr.size and arr.dtype.kind not in "iu":
                raise InvalidInstanceError(f"{name} must hold whole numbers, got {arr.dtype}")
            arrays[name] = arr.astype(np.int64)
        n = len(arrays["arrival"])
        if n == 0:
            raise InvalidInstanceError("the instance needs at least one request")
        for name, arr in arrays.items():
            if len(arr) != n:
                raise InvalidInstanceError(
                    f"{name} has {len(arr)} entries but arrival has {n}: one per request")
        rules = (("arrival", 0, "an arrival round must be >= 0"),
                 ("prompt_tokens", 0, "prompt tokens must be >= 0"),
                 ("output_tokens", 1, "every request generates at least one output token"),
                 ("predicted_output", 1, "a predicted output length must be >= 1 token"))
        for name, low, rule in rules:
            if name in arrays and np.any(arrays[name] < low):
                bad = int(np.argmax(arrays[name] < low))
                raise InvalidInstanceError(f"{name}[{bad}] = {arrays[name][bad]}: {rule}")
        for name in ("output_tokens", "predicted_output"):  # the simulator steps one token a round
            if name in arrays and np.any(arrays[name] > MAX_OUTPUT):
                bad = int(np.argmax(arrays[name] > MAX_OUTPUT))
                raise InvalidInstanceError(
                    f"{name}[{bad}] = {arrays[name][bad]:,}: at most {MAX_OUTPUT:,} tokens per "
                    f"request (rounds are simulated one token at a time)")
        if "predicted_output" not in arrays:
            arrays["predicted_output"] = arrays["output_tokens"].copy()
        for name, arr in arrays.items():
            self._set(name, arr)
        if self.max_batch is not None:
            if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int | np.integer):
                raise InvalidInstanceError(f"max_batch must be a whole number or None, got "
                                           f"{self.max_batch!r}")
            if self.max_batch < 1:
                raise InvalidInstanceError(f"max_batch must be >= 1 request, got {self.max_batch}")
            self._set("max_batch", int(self.max_batch))
        peak = self.prompt_tokens + self.output_tokens
        if np.any(peak > self.kv_memory):
            bad = int(np.argmax(peak > self.kv_memory))
            raise InfeasibleError(
                f"request {bad} can never run: its peak KV need is {peak[bad]} tokens "
                f"({self.prompt_tokens[bad]} prompt + {self.output_tokens[bad]} output) but the "
                f"worker's kv_memory is {self.kv_memory} tokens")

    # -- derived quantities ---------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of requests."""
        return len(self.arrival)

    @property
    def peak_need(self) -> np.ndarray:
        """Peak KV tokens of each request (prompt + output)."""
        return self.prompt_tokens + self.output_tokens

    def footprint(self, predicted: bool = False) -> np.ndarray:
        """Memory-time footprint of each request in token-rounds: sum_j (s_i + j), j = 1..o_i."""
        o = self.predicted_output if predicted else self.output_tokens
        return self.prompt_tokens * o + o * (o + 1) // 2

    @property
    def offline(self) -> bool:
        """True when every request arrives at round 0."""
        return bool(np.all(self.arrival == 0))

    def with_outputs(self, outputs: np.ndarray) -> Instance:
        """The same instance with other (e.g. predicted) output lengths taken as the truth."""
        outputs = np.asarray(outputs, dtype=np.int64)
        return dataclasses.replace(self, output_tokens=outputs, predicted_output=outputs)

    def subset(self, index: np.ndarray) -> Instance:
        """The instance restricted to some requests (arrivals kept as they are)."""
        index = np.asarray(index)
        return dataclasses.replace(
            self, arrival=self.arrival[index], prompt_tokens=self.prompt_tokens[index],
            output_tokens=self.output_tokens[index], predicted_output=self.predicted_output[index])

    def summary(self) -> str:
        first = int(self.arrival.min()) if self.n else 0
        span = int(self.arrival.max()) - first + 1 if self.n else 0
        mode = (f"all at round {first}" if span == 1 else f"arrivals over {span} rounds"
                + (f" from round {first}" if first else ""))
        noise = np.mean(np.abs(self.predicted_output - self.output_tokens) / self.output_tokens)
        cap = f", batch cap {self.max_batch}" if self.max_batch else ""
        return (f"batch scheduling{(' ' + self.name) if self.name else ''}: {self.n} requests "
                f"({mode}), kv_memory {self.kv_memory} tokens{cap}, prompt mean "
                f"{self.prompt_tokens.mean():.0f}, output mean {self.output_tokens.mean():.1f}, "
                f"prediction error {noise:.0%}")


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------
def _check_requests(n: int, what: str) -> None:
    """Refuse more than ``MAX_REQUESTS`` requests; ``what`` starts the message ("n is")."""
    if n > MAX_REQUESTS:
        raise InvalidInstanceError(
            f"{what} {n:,} requests: at most {MAX_REQUESTS:,} per batch-scheduling instance "
            f"(as the other decisions; at the cap generating and writing a file take ~0.9 GB, reading it "
            f"back ~1.2 GB): split the stream into windows of requests")


def _lognormal(rng: np.random.Generator, spec: dict, size: int) -> np.ndarray:
    mu = np.log(spec["median"])
    sigma = np.sqrt(2.0 * np.log(spec["mean"] / spec["median"]))
    return np.clip(np.rint(rng.lognormal(mu, sigma, size)), spec["low"], spec["high"])


def predict(output_tokens: np.ndarray, noise: float, rng: np.random.Generator,
            max_tokens: int | None = None) -> np.ndarray:
    """Predicted output lengths: truth x exp(N(0, noise^2)), rounded, in [1, max_tokens].

    ``noise`` 0 gives exact predictions; ``max_tokens`` is the generation cap every request
    carries (a predictor never predicts past it).
    """
    noise = _noise(noise)
    factor = np.exp(rng.normal(0.0, noise, len(output_tokens))) if noise > 0 else 1.0
    pred = np.maximum(1, np.rint(output_tokens * factor))
    if max_tokens is not None:
        pred = np.minimum(pred, max_tokens)
    return pred.astype(np.int64)


def _noise(noise: Any) -> float:
    """The prediction error's sigma, refused by name unless in [0, ``MAX_NOISE``]."""
    return number("noise", noise, lambda v: 0 <= v <= MAX_NOISE,
                  f"in [0, {MAX_NOISE:g}] (the sigma of the log-normal prediction error; "
                  f"{MAX_NOISE:g} is already a factor e^{MAX_NOISE:g} = {math.exp(MAX_NOISE):,.0f} at "
                  "one sigma)")


def _rounds(values: np.ndarray, why: str) -> np.ndarray:
    """Arrival rounds as int64, refusing (with the real value) what the cast would wrap."""
    if values.size and not (np.all(np.isfinite(values)) and values.max() <= MAX_MAGNITUDE):
        worst = values[~np.isfinite(values)][0] if not np.all(np.isfinite(values)) else values.max()
        raise InvalidInstanceError(
            f"{why}: the arrivals would reach round {worst:.3g}, beyond {MAX_MAGNITUDE:.0e} rounds")
    return np.floor(values).astype(np.int64)


def _range(name: str, value: Any, low: int, high: int) -> tuple[int, int]:
    """An inclusive (low, high) pair of whole numbers of tokens."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidInstanceError(f"{name} must be a pair (low, high) of whole numbers, got {value!r}")
    first = whole_number(f"{name}[0]", value[0], low=low, high=high)
    second = whole_number(f"{name}[1]", value[1], low=first, high=high)
    return first, second


def _check_scales(prompt_scale: Any, concurrency: Any, max_output: Any) -> None:
    """The generators' scale parameters, each by name (a huge prompt_scale overflowed int64)."""
    number("prompt_scale", prompt_scale, lambda v: 0 < v <= 1e3, "in (0, 1000]")
    number("concurrency", concurrency, lambda v: 0 < v <= 1e6,
           "in (0, 1e6] (requests' mean peak KV needs that fit in memory)")
    whole_number("max_output", max_output, high=MAX_OUTPUT)


def generate(
    n: int | None = None,
    *,
    requests: int | None = None,
    arrivals: str = "offline",
    load: float | None = None,
    lengths: str = "uniform",
    prompt_range: tuple[int, int] | None = None,
    output_range: tuple[int, int] | None = None,
    prompt_scale: float | None = None,
    max_output: int | None = None,
    kv_memory: int | None = None,
    concurrency: float | None = None,
    noise: float = 0.0,
    max_batch: int | None = None,
    seed: int = 0,
) -> Instance:
    """A random instance of ``n`` requests (default 30).

    requests : the same as ``n``, under the other decisions' name (give one of them, not both).
    arrivals : ``offline`` (all at round 0) or ``poisson`` (rate set by ``load``).
    load : offered memory load for Poisson arrivals (default 1.0): expected KV token-rounds
        arriving per round divided by ``kv_memory`` (1.0 = memory is exactly saturated on average).
    lengths : ``uniform`` (integers in ``prompt_range`` and ``output_range``, inclusive; default
        (1, 40) and (1, 20)) or ``azure`` (log-normal fits of the Azure 2023 code trace: its medians,
        means 1977 / 28.7 tokens where the trace has 2048 / 27.9; prompts
        multiplied by ``prompt_scale``, default 1/32, so memory binds at small n, outputs capped
        at ``max_output`` rounds, default 64).
    kv_memory : tokens; default ``concurrency`` (default 6.0) x the mean peak need, at least the
        largest need.
    noise : sigma of the multiplicative log-normal error of the predicted output lengths (at
        most ``MAX_NOISE``).

    A parameter given that has no effect with the others (``load`` without
    ``arrivals="poisson"``; ``prompt_scale`` and ``max_output`` without ``lengths="azure"``;
    ``prompt_range`` and ``output_range`` with it; ``concurrency`` with ``kv_memory``) is
    ignored with an :class:`~servopt.instances.IgnoredParameterWarning` naming what it needs
    (``servopt generate`` refuses it).
    """
    n = either("n", n, "requests", requests, 30)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        what = "n" if requests is None else "requests"
        raise InvalidInstanceError(f"{what} must be a positive number of requests, got {n!r}")
    _check_requests(int(n), f"{'n' if requests is None else 'requests'} is")
    given = {"load": load, "prompt_range": prompt_range, "output_range": output_range,
             "prompt_scale": prompt_scale, "max_output": max_output, "concurrency": concurrency}
    needs = {"load": ("arrivals='poisson'", arrivals == "poisson"),
             "prompt_scale": ("lengths='azure'", lengths == "azure"),
             "max_output": ("lengths='azure'", lengths == "azure"),
             "prompt_range": ("lengths='uniform'", lengths == "uniform"),
             "output_range": ("lengths='uniform'", lengths == "uniform"),
             "concurrency": ("kv_memory is None (it sizes the default kv_memory)", kv_memory is None)}
    for name, value in given.items():
        if value is not None and not needs[name][1] and lengths in ("uniform", "azure") and (
                arrivals in ("offline", "poisson")):
            warn_ignored("batch_scheduling.generate", name, value, needs[name][0])
    load = 1.0 if load is None else load
    prompt_range = (1, 40) if prompt_range is None else prompt_range
    output_range = (1, 20) if output_range is None else output_range
    prompt_scale = 1 / 32 if prompt_scale is None else prompt_scale
    max_output = 64 if max_output is None else max_output
    concurrency = 6.0 if concurrency is None else concurrency
    _check_scales(prompt_scale, concurrency, max_output)
    seed = whole_number("seed", seed, low=0)
    noise = _noise(noise)
    load = number("load", load, lambda v: 0 < v < float("inf"), "a finite number > 0")
    if kv_memory is not None:
        kv_memory = whole_number("kv_memory", kv_memory)
    rng = np.random.default_rng(seed)
    if lengths == "uniform":
        p0, p1 = _range("prompt_range", prompt_range, 0, MAX_PROMPT)
        o0, o1 = _range("output_range", output_range, 1, MAX_OUTPUT)
        output_range = (o0, o1)
        prompt = rng.integers(p0, p1 + 1, n)
        output = rng.integers(o0, o1 + 1, n)
    elif lengths == "azure":
        if not prompt_scale > 0:
            raise InvalidInstanceError(f"prompt_scale must be > 0, got {prompt_scale}")
        prompt = np.maximum(1, np.rint(_lognormal(rng, AZURE_PROMPT, n) * prompt_scale))
        output = np.minimum(_lognormal(rng, AZURE_OUTPUT, n), max_output)
    else:
        raise InvalidInstanceError(f"lengths must be 'uniform' or 'azure', got {lengths!r}")
    prompt, output = prompt.astype(np.int64), output.astype(np.int64)
    peak = prompt + output
    if kv_memory is None:
        kv_memory = int(max(peak.max(), round(concurrency * peak.mean())))
    predicted = predict(output, noise, rng, output_range[1] if lengths == "uniform" else max_output)
    if arrivals == "offline":
        arrival = np.zeros(n, dtype=np.int64)
    elif arrivals == "poisson":
        footprint = prompt * output + output * (output + 1) / 2
        rate = load * kv_memory / footprint.mean()  # requests per round
        with np.errstate(over="ignore", divide="ignore"):
            gaps = rng.exponential(1.0 / rate, n) if rate > 0 else np.full(n, np.inf)
            arrival = _rounds(np.cumsum(gaps), f"load {load:g} is too small")
        arrival -= arrival[0]
    else:
        raise InvalidInstanceError(f"arrivals must be 'offline' or 'poisson', got {arrivals!r}")
    name = f"{lengths}-{arrivals}" + (f"-load{load:g}" if arrivals == "poisson" else "")
    return Instance(kv_memory=int(kv_memory), arrival=arrival, prompt_tokens=prompt,
                    output_tokens=output, predicted_output=predicted, max_batch=max_batch,
                    name=name)


def from_trace(
    path: str | Path | pd.DataFrame,
    *,
    n: int | None = None,
    max_requests: int | None = None,
    start: int = 0,
    round_s: float = 0.05,
    rate_scale: float = 1.0,
    prompt_scale: float = 1 / 32,
    max_output: int = 64,
    kv_memory: int | None = None,
    concurrency: float = 6.0,
    noise: float = 0.0,
    max_batch: int | None = None,
    seed: int = 0,
) -> Instance:
    """Requests ``start .. start + n - 1`` of an Azure 2023 CSV trace, or of a request frame of
    :mod:`servopt.instances.traces` (``arrival_s`` seconds, sorted; ``prompt_tokens``,
    ``output_tokens``), as :func:`servopt.instances.decode_routing.from_trace` also takes.

    Arrival seconds (divided by ``rate_scale``) become rounds of ``round_s`` seconds; prompts are
    multiplied by ``prompt_scale`` and outputs capped at ``max_output`` as in :func:`generate`.
    ``n`` (default 200) may also be given as ``max_requests``, the other decisions' name in
    their ``from_trace`` (one of them, not both).
    """
    from servopt.instances.traces import from_frame, read_azure

    _check_scales(prompt_scale, concurrency, max_output)
    seed = whole_number("seed", seed, low=0)
    noise = _noise(noise)
    name = "n" if max_requests is None else "max_requests"
    n = whole_number(name, either("n", n, "max_requests", max_requests, 200))
    _check_requests(n, f"{name} is")
    start = whole_number("start", start, low=0)
    if kv_memory is not None:
        kv_memory = whole_number("kv_memory", kv_memory)
    if isinstance(path, str | Path):
        frame, label = read_azure(path, rate_scale=rate_scale), f"trace:{Path(path).name}"
    else:  # a request frame (anything else is refused by from_frame, naming its type)
        frame, label = from_frame(path, rate_scale=rate_scale), "trace frame"
    if start + n > len(frame):
        raise InvalidInstanceError(
            f"the trace has {len(frame)} requests: cannot take {name}={n} from start={start}")
    round_s = number("round_s", round_s, lambda v: 0 < v < float("inf"), "a number of seconds > 0")
    part = frame.iloc[start:start + n]
    seconds = part["arrival_s"].to_numpy() - part["arrival_s"].iloc[0]
    arrival = _rounds(seconds / round_s, f"round_s {round_s:g} s is too short")
    prompt = np.maximum(1, np.rint(part["prompt_tokens"].to_numpy() * prompt_scale)).astype(np.int64)
    output = np.clip(part["output_tokens"].to_numpy(), 1, max_output).astype(np.int64)
    peak = prompt + output
    if kv_memory is None:
        kv_memory = int(max(peak.max(), round(concurrency * peak.mean())))
    rng = np.random.default_rng(seed)
    return Instance(kv_memory=int(kv_memory), arrival=arrival, prompt_tokens=prompt,
                    output_tokens=output, predicted_output=predict(output, noise, rng, max_output),
                    max_batch=max_batch, name=label)
