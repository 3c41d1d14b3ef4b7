"""Capacity planning instances: a workload, a worker profile and a target arrival rate.

A workload is a sample of request lengths (prompt tokens ``s``, output tokens ``o``), read from a
trace or drawn from a parametric generator, and a target arrival rate ``lambda`` (requests per
second, for the whole fleet). A worker runs continuous batching with

- ``kv_tokens`` M: KV-cache capacity in tokens;
- ``token_budget`` b: at most b tokens processed per iteration (vLLM ``max_num_batched_tokens``);
- ``batch_cap`` B: at most B requests in the running batch (vLLM ``max_num_seqs``);
- ``prefill_chunk`` C: at most C prompt tokens of one request per iteration (chunked prefill;
  never more than b either, so the chunk in effect is ``chunk_tokens`` = min(C, b));
- iteration time ``step_overhead_s + per_token_s * tokens`` seconds (d0 + d1 * tokens);
- ``headroom`` delta: the fraction of a worker's maximum stable rate kept free by the plan.

A request whose peak KV need (``s + o - 1``: the last output token's KV is never stored) exceeds
``kv_tokens`` can never finish on any fleet: constructing such an instance raises
:class:`~servopt.core.InfeasibleError` naming it. Decode routing and batch scheduling count one
token more (``s + o`` must fit their ``kv_capacity`` / ``kv_memory``: their simulators reserve
the KV of the token being generated), so a request of ``kv_tokens + 1`` tokens fits here but
not there.

Helpers derive the KV capacity from a model's shape and a GPU's memory
(:func:`kv_tokens_from_model`). The model, GPU and timing presets are illustrative round numbers
(public model configs; iteration times of the right order for an A100/H100), not measurements.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any

import numpy as np

from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.core import Instance as BaseInstance
from servopt.core.checks import closest_names, flag, number, synonym, synonym_hint, whole_number

# Illustrative model shapes (public configs): layers, KV heads, head dim, weight bytes (bf16).
MODEL_PRESETS: dict[str, dict[str, float]] = {
    "llama3-8b": {"layers": 32, "kv_heads": 8, "head_dim": 128, "weight_bytes": 16.1e9},
    "qwen2.5-7b": {"layers": 28, "kv_heads": 4, "head_dim": 128, "weight_bytes": 15.2e9},
    "llama3-70b": {"layers": 80, "kv_heads": 8, "head_dim": 128, "weight_bytes": 141.1e9},
}
# Illustrative GPU memory in bytes.
GPU_PRESETS: dict[str, float] = {
    "a100-80gb": 80 * 2**30,
    "h100-80gb": 80 * 2**30,
    "l4-24gb": 24 * 2**30,
    "a10g-24gb": 24 * 2**30,
}
# Illustrative worker timing: d0 (s per iteration), d1 (s per token); vLLM-like defaults.
PROFILE_PRESETS: dict[str, dict[str, float]] = {
    "llama3-8b@a100": {
        "step_overhead_s": 0.012,
        "per_token_s": 6.0e-5,
        "token_budget": 4096,
        "batch_cap": 256,
        "prefill_chunk": 512,
    },
    "llama3-8b@h100": {
        "step_overhead_s": 0.008,
        "per_token_s": 3.0e-5,
        "token_budget": 8192,
        "batch_cap": 256,
        "prefill_chunk": 1024,
    },
}
WORKLOAD_PRESETS = ("conversation", "code", "long_output")


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, dtype_bytes: float = 2) -> float:
    """Bytes of KV cache one token occupies: 2 (K and V) x layers x KV heads x head dim x dtype."""
    return 2.0 * layers * kv_heads * head_dim * dtype_bytes


def kv_tokens_from_model(
    *,
    layers: int,
    kv_heads: int,
    head_dim: int,
    weight_bytes: float,
    gpu_memory_bytes: float,
    dtype_bytes: float = 2,
    memory_utilisation: float = 0.9,
    gpus: int = 1,
    activation_bytes: float = 0.0,
) -> int:
    """KV tokens a worker of ``gpus`` GPUs holds (vLLM's ``gpu_memory_utilization`` rule).

    usable = utilisation x GPU memory x gpus - weights - activations; tokens = usable / bytes per
    token. Raises ``InvalidInstanceError`` when the weights do not fit.
    """
    for name, value in {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim, "gpus": gpus}.items():
        if not (isinstance(value, int | np.integer) and value >= 1):
            raise InvalidInstanceError(f"{name} must be a positive integer, got {value!r}")
    number("memory_utilisation", memory_utilisation, lambda v: 0 < v <= 1, "in (0, 1]")
    number("gpu_memory_bytes", gpu_memory_bytes, lambda v: 0 < v < math.inf, "a number of bytes > 0")
    number("dtype_bytes", dtype_bytes, lambda v: 0 < v < math.inf, "a number of bytes > 0")
    number("weight_bytes", weight_bytes, lambda v: 0 <= v < math.inf, "a number of bytes >= 0")
    number("activation_bytes", activation_bytes, lambda v: 0 <= v < math.inf, "a number of bytes >= 0")
    usable = memory_utilisation * gpu_memory_bytes * gpus - weight_bytes - activation_bytes
    if usable <= 0:
        raise InvalidInstanceError(
            f"the weights ({weight_bytes / 2**30:.1f} GiB) and activations do not fit in "
            f"{memory_utilisation:.0%} of {gpus} x {gpu_memory_bytes / 2**30:.1f} GiB: no KV cache left"
        )
    return int(usable // kv_bytes_per_token(layers, kv_heads, head_dim, dtype_bytes))


def preset_kv_tokens(model: str, gpu: str, *, gpus: int = 1, memory_utilisation: float = 0.9) -> int:
    """KV tokens for an (illustrative) model preset on a GPU preset."""
    if not isinstance(model, str) or model not in MODEL_PRESETS:
        raise InvalidInstanceError(f"unknown model preset {model!r}; known: {sorted(MODEL_PRESETS)}")
    if not isinstance(gpu, str) or gpu not in GPU_PRESETS:
        raise InvalidInstanceError(f"unknown GPU preset {gpu!r}; known: {sorted(GPU_PRESETS)}")
    shape = MODEL_PRESETS[model]
    return kv_tokens_from_model(
        layers=int(shape["layers"]),
        kv_heads=int(shape["kv_heads"]),
        head_dim=int(shape["head_dim"]),
        weight_bytes=shape["weight_bytes"],
        gpu_memory_bytes=GPU_PRESETS[gpu],
        gpus=gpus,
        memory_utilisation=memory_utilisation,
    )


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False,
              unit: str | None = "tokens") -> Any:
    """``value`` as a finite number > 0 (>= 0 with ``allow_zero``), a whole number (of ``unit``,
    named in the message) with ``integer``."""
    if isinstance(value, str | bytes | bool | np.bool_):  # "5" or True is not silently a number
        raise InvalidInstanceError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise InvalidInstanceError(f"{name} must be a finite number {rule}, got {value!r}")
    if integer:
        if number != int(number):
            what = f"a whole number of {unit}" if unit else "a whole number"
            raise InvalidInstanceError(f"{name} must be {what}, got {value!r}")
        return int(number)
    return number


@dataclasses.dataclass(frozen=True, repr=False)
class Instance(BaseInstance):
    """One capacity-planning instance (the module docstring gives the symbols).

    prompt_tokens, output_tokens : the workload's request lengths s and o (tokens), one per sample.
    arrival_rate : lambda, the fleet's target rate (requests/s).
    kv_tokens : M, KV-cache capacity of one worker (tokens).
    token_budget : b, tokens processed per iteration at most.
    batch_cap : B, requests in the running batch at most.
    prefill_chunk : C, prompt tokens of one request per iteration at most.
    step_overhead_s, per_token_s : iteration time d0 + d1 * tokens (seconds, seconds per token).
    headroom : delta, the share of a worker's maximum stable rate the plan keeps free (0..1).
    workload : a label (the preset's name, or the trace's); also read as ``name``, as on the
        other decisions' instances.
    """

    decision = "capacity"
    schema_version = 1

    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_rate: float
    kv_tokens: int
    token_budget: int = 4096
    batch_cap: int = 256
    prefill_chunk: int = 512
    step_overhead_s: float = 0.012
    per_token_s: float = 6.0e-5
    headroom: float = 0.1
    workload: str = "custom"

    def validate(self) -> None:
        s = np.asarray(self.prompt_tokens)
        o = np.asarray(self.output_tokens)
        for name, arr in (("prompt_tokens", s), ("output_tokens", o)):
            if arr.ndim != 1 or arr.size == 0:
                raise InvalidInstanceError(f"{name} must be a non-empty list of request lengths")
            if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise InvalidInstanceError(f"{name} must be whole numbers of tokens")
        if s.shape != o.shape:
            raise InvalidInstanceError(
                f"prompt_tokens ({s.size}) and output_tokens ({o.size}) must describe the same requests"
            )
        s, o = s.astype(np.int64), o.astype(np.int64)
        if np.any(s < 1):
            raise InvalidInstanceError(
                f"prompt_tokens must be >= 1 (request {int(np.argmin(s))} has {s.min()})"
            )
        if np.any(o < 1):
            raise InvalidInstanceError(
                f"output_tokens must be >= 1 (request {int(np.argmin(o))} has {o.min()}): "
                "every request emits at least one token"
            )
        self._set("prompt_tokens", s)
        self._set("output_tokens", o)
        self._set("arrival_rate", _positive("arrival_rate (requests/s)", self.arrival_rate))
        self._set(
            "kv_tokens", _positive("kv_tokens (KV-cache capacity of a worker)", self.kv_tokens, integer=True)
        )
        self._set("token_budget", _positive("token_budget", self.token_budget, integer=True))
        self._set("batch_cap", _positive("batch_cap", self.batch_cap, integer=True,
                                                unit="requests running at once"))
        self._set("prefill_chunk", _positive("prefill_chunk", self.prefill_chunk, integer=True))
        self._set("step_overhead_s", _positive("step_overhead_s", self.step_overhead_s, allow_zero=True))
        self._set("per_token_s", _positive("per_token_s", self.per_token_s, allow_zero=True))
        if self.step_overhead_s == 0 and self.per_token_s == 0:
            raise InvalidInstanceError(
                "step_overhead_s and per_token_s cannot both be 0: an iteration must take time"
            )
        headroom = _positive("headroom", self.headroom, allow_zero=True)
        if headroom >= 1:
            raise InvalidInstanceError(f"headroom must be in [0, 1), got {headroom}")
        self._set("headroom", headroom)
        if self.token_budget < self.batch_cap:
            raise InvalidInstanceError(
                f"token_budget ({self.token_budget}) must be >= batch_cap ({self.batch_cap}): every "
                "running request must be able to decode in one iteration (vLLM's rule)"
            )
        peak = s + o - 1
        worst = int(np.argmax(peak))
        if peak[worst] > self.kv_tokens:
            raise InfeasibleError(
                f"request {worst} (0-based, in arrival order) needs {peak[worst]} KV tokens (prompt "
                f"{s[worst]} + output {o[worst]} - 1) but a worker holds only kv_tokens = "
                f"{self.kv_tokens}: it can never finish; raise kv_tokens (--kv-tokens) or drop "
                "requests longer than the KV capacity (drop_too_long, --drop-too-long)"
            )
        if not isinstance(self.workload, str):
            raise InvalidInstanceError("workload must be a text label")

    @property
    def requests(self) -> int:
        return int(self.prompt_tokens.size)

    @property
    def name(self) -> str:
        """The workload label, under the name the other decisions' instances give their label
        (read-only: set ``workload``)."""
        return self.workload if isinstance(self.workload, str) else ""

    @property
    def chunk_tokens(self) -> int:
        """Prompt tokens of one request per iteration, min(C, b): a chunk never exceeds the
        iteration's token budget (as in vLLM, and the simulator)."""
        return min(self.prefill_chunk, self.token_budget)

    def summary(self) -> str:
        return (
            f"capacity: {self.workload} workload, {self.requests} length samples "
            f"(E[s]={self.prompt_tokens.mean():.0f}, E[o]={self.output_tokens.mean():.0f}), "
            f"rate {self.arrival_rate:.4g} req/s; worker M={self.kv_tokens} KV tokens, "
            f"b={self.token_budget}, B={self.batch_cap}, C={self.prefill_chunk}, "
            f"t={self.step_overhead_s * 1e3:.3g} ms + {self.per_token_s * 1e3:.3g} ms/token"
        )

    def with_(self, **changes: Any) -> Instance:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


MAX_DROPPED = 0.01  # share of a preset's requests that may be too long for the KV capacity
# a generated sample: 0.6 GB and 0.6-3.5 s at the cap (benchmarks/results/limits.md, three runs at
# load 1-5); a larger one
# is more likely a typo than a workload
MAX_REQUESTS = 10_000_000


def workload_lengths(
    workload: str, requests: int, rng: np.random.Generator, *, max_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw (prompt, output) token lengths of a parametric workload preset.

    - ``conversation``: chat turns with history; prompt lognormal (median ~700, mean ~1000),
      output lognormal (median ~180, mean ~250), weakly correlated. A generic chat shape, not a
      fit of the Azure 2023 conversation trace: decode routing's ``conversation`` is that fit
      (prompt median 1020, mean 1155; output median 129, mean 211; uncorrelated), so the two
      decisions' "conversation" requests differ (shorter prompts and longer outputs here);
      ``decode_routing.sample_lengths("conversation", n, rng)`` draws the Azure-calibrated ones;
    - ``code``: code completion shaped like the Azure 2023 code trace; long prompts (median
      ~1340, mean ~2060), short outputs (median ~13, mean ~21: a lighter tail than the trace's
      mean of 28; decode routing's generator matches the published means);
    - ``long_output``: short prompts (mean ~300) and long generations (mean ~800).

    With ``max_tokens``, requests that do not fit a worker of that many KV tokens by capacity's
    rule (``s + o - 1 <= max_tokens``, the module docstring) are dropped.
    """
    if workload == "conversation":
        z = rng.standard_normal((requests, 2))
        s = np.exp(6.55 + 0.85 * z[:, 0])
        o = np.exp(5.2 + 0.8 * (0.3 * z[:, 0] + 0.954 * z[:, 1]))
        s, o = np.clip(s, 16, 8000), np.clip(o, 4, 2000)
    elif workload == "code":
        s = np.exp(7.2 + 1.05 * rng.standard_normal(requests))
        o = np.exp(2.6 + 0.95 * rng.standard_normal(requests))
        s, o = np.clip(s, 8, 7500), np.clip(o, 4, 1900)
    elif workload == "long_output":
        s = np.exp(5.4 + 0.7 * rng.standard_normal(requests))
        o = np.exp(6.45 + 0.7 * rng.standard_normal(requests))
        s, o = np.clip(s, 8, 4000), np.clip(o, 16, 4000)
    else:
        raise InvalidInstanceError(f"unknown workload preset {workload!r}; known: {WORKLOAD_PRESETS}")
    s, o = np.rint(s).astype(np.int64), np.rint(o).astype(np.int64)
    if max_tokens is not None:
        keep = s + o - 1 <= max_tokens
        s, o = s[keep], o[keep]
    return s, o


# the worker fields in ms that generate and from_trace also take (decode routing's unit), and
# the field in seconds each sets
MS_FIELDS = {"step_ms": "step_overhead_s", "per_token_ms": "per_token_s"}
# A fixed overhead of a second or more per iteration (step_overhead_s) is refused as a unit slip
# (ms written as s): each running request would decode at most one token a second, while serving
# iterations take milliseconds (the presets: 8 and 12 ms). A constructed Instance keeps any value.
MAX_STEP_OVERHEAD_S = 1.0
GENERATE_OPTIONS = ("workload", "requests", "arrival_rate", "kv_tokens", "profile", "model", "gpu",
                    "headroom", "seed")
TRACE_OPTIONS = ("format", "arrival_rate", "kv_tokens", "max_requests", "headroom",
                 "drop_too_long", "profile")


def _worker_fields(profile: str, worker: dict[str, Any], where: str,
                   options: tuple[str, ...]) -> dict[str, Any]:
    """The profile preset's worker fields with ``worker``'s overrides (``step_ms`` and
    ``per_token_ms`` in ms, converted to seconds); an unknown name is refused, saying what
    capacity calls it where another decision's name was given (``where``: the function)."""
    if not isinstance(profile, str) or profile not in PROFILE_PRESETS:
        raise InvalidInstanceError(f"unknown profile preset {profile!r}; known: {sorted(PROFILE_PRESETS)}")
    fields = dict(PROFILE_PRESETS[profile])
    unknown = set(worker) - set(fields) - set(MS_FIELDS)
    if unknown:
        accepted = [*fields, *MS_FIELDS, *options]
        # a name in ms (step_overhead_ms) is pointed at the ms spellings, not the seconds fields
        close = {k: ([found[0]] if (found := synonym(k, "capacity", accepted)) else
                     ("ms" in k.split("_") and difflib.get_close_matches(k, list(MS_FIELDS), n=1))
                     or closest_names(k, accepted)) for k in sorted(unknown)}
        hint = [f"{k!r} -> {c[0]!r}" for k, c in close.items() if c]
        why = [w for k in sorted(unknown) if (w := synonym_hint(k, "capacity", accepted))]
        what = (f"worker field(s) {sorted(unknown)}" if where == "generate"
                else f"option(s) {sorted(unknown)} for {where}")
        raise InvalidInstanceError(
            f"unknown {what}; worker fields: {sorted(fields)} (step_ms and "
            f"per_token_ms give the times in ms); {where}'s other options: {', '.join(options)} "
            "(kv_tokens: KV-cache capacity of a worker, tokens)"
            + (f"; did you mean {', '.join(hint)}?" if hint else "")
            + (f" {'; '.join(why)}" if why else ""))
    worker = dict(worker)
    given_s = worker.get("step_overhead_s")
    if isinstance(given_s, np.ndarray) and given_s.ndim == 0:
        given_s = given_s.item()
    for ms, seconds in MS_FIELDS.items():
        if ms in worker and worker[ms] is None:  # None: not given (as the other two-name options)
            del worker[ms]
        if ms not in worker:
            continue
        if seconds in worker:
            raise InvalidInstanceError(
                f"give {seconds} (seconds) or {ms} (milliseconds), not both: two spellings of one "
                f"worker field (got {seconds}={worker[seconds]!r} and {ms}={worker[ms]!r})")
        worker[seconds] = number(ms, worker.pop(ms), lambda v: 0 <= v < math.inf,
                                 "a finite number of ms >= 0") / 1e3
    if (isinstance(given_s, int | float | np.number) and not isinstance(given_s, bool)
            and _finite(given_s) and given_s >= MAX_STEP_OVERHEAD_S):  # (else the check below)
        raise InvalidInstanceError(
            f"step_overhead_s is in seconds: {given_s:g} s of fixed time per iteration would let "
            f"each running request decode at most {1 / given_s:.2g} tokens/s, while serving "
            f"iterations take milliseconds (the presets: 8 and 12 ms); for {given_s:g} ms pass "
            f"step_ms={given_s:g} (or step_overhead_s={given_s / 1e3:g})")
    fields.update(worker)
    return fields


def _finite(value: Any) -> bool:
    """Whether a number is finite as a float (an int too large for one is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def generate(
    *,
    workload: str = "conversation",
    requests: int = 2000,
    arrival_rate: float = 20.0,
    kv_tokens: int | None = None,
    profile: str = "llama3-8b@a100",
    model: str = "llama3-8b",
    gpu: str = "a100-80gb",
    headroom: float = 0.1,
    seed: int = 0,
    **worker: Any,
) -> Instance:
    """A capacity instance from a workload preset and a worker profile preset.

    ``requests`` length samples are drawn (default 2000; ``servopt capacity --workload`` draws
    the same number, so for the same seed it sizes this instance). ``workload`` presets are
    described in :func:`workload_lengths` (their ``conversation`` is not decode routing's).
    ``kv_tokens`` defaults to the (illustrative) model x GPU preset; ``worker`` overrides any
    profile field (``token_budget``, ``batch_cap``, ``prefill_chunk``, ``step_overhead_s`` in
    seconds, ``per_token_s`` in seconds per token), the two times also in milliseconds as
    ``step_ms`` and ``per_token_ms`` (decode routing's unit; one spelling of each, not both). A
    ``step_overhead_s`` of 1 s or more is refused as milliseconds written as seconds
    (``MAX_STEP_OVERHEAD_S``). Requests longer than the KV capacity are dropped from the sample;
    more than ``MAX_DROPPED`` (1%) dropped is an error, since the sample would no longer be the
    workload.
    """
    if not isinstance(workload, str) or workload not in WORKLOAD_PRESETS:  # before the presets
        raise InvalidInstanceError(f"unknown workload preset {workload!r}; known: {WORKLOAD_PRESETS}")
    fields = _worker_fields(profile, worker, "generate", GENERATE_OPTIONS)
    if kv_tokens is None:
        kv_tokens = preset_kv_tokens(model, gpu)
    kv = _positive("kv_tokens (KV-cache capacity of a worker)", kv_tokens, integer=True)
    requests = _positive("requests", requests, integer=True, unit=None)
    if requests > MAX_REQUESTS:
        raise InvalidInstanceError(f"requests must be at most {MAX_REQUESTS:,}, got {requests:,}")
    rng = np.random.default_rng(whole_number("seed", seed, low=0))
    s, o = workload_lengths(workload, requests, rng, max_tokens=kv)
    if s.size < (1 - MAX_DROPPED) * requests:
        raise InvalidInstanceError(
            f"only {s.size} of {requests} {workload} requests fit in kv_tokens = {kv} (prompt + output - 1): "
            f"a worker this small cannot serve the workload, and sizing it on the {s.size} that fit "
            "would be wrong; raise kv_tokens")
    return Instance(
        prompt_tokens=s,
        output_tokens=o,
        arrival_rate=arrival_rate,
        kv_tokens=kv,
        headroom=headroom,
        workload=workload,
        **fields,
    )


def from_trace(
    path: str | Path,
    *,
    format: str = "azure",
    arrival_rate: float | None = None,
    kv_tokens: int,
    max_requests: int | None = None,
    headroom: float = 0.1,
    drop_too_long: bool = False,
    profile: str = "llama3-8b@a100",
    **worker: Any,
) -> Instance:
    """A capacity instance whose length samples come from a trace file.

    ``format``: ``azure``, ``mooncake`` or ``burstgpt``. ``arrival_rate`` defaults to the trace's
    own mean rate (requests / span). Requests with no output or no prompt tokens are dropped
    (the first hold no decode slot; the second are malformed: every request has at least one
    prompt token). ``drop_too_long`` drops requests longer than the KV capacity instead of
    rejecting the instance. The fleet then serves only the kept requests, so the default rate
    is theirs (the trace's rate times the kept share; a given ``arrival_rate`` is taken as the
    kept requests'), and the workload label says how many of each kind were dropped.
    ``worker`` overrides profile fields as in :func:`generate` (``step_ms``, ``per_token_ms`` in
    milliseconds too).
    """
    from servopt.instances import traces

    readers = {"azure": traces.read_azure, "mooncake": traces.read_mooncake, "burstgpt": traces.read_burstgpt}
    if not isinstance(format, str) or format not in readers:
        raise InvalidInstanceError(f"unknown trace format {format!r}; known: {sorted(readers)}")
    flag("drop_too_long", drop_too_long)
    fields = _worker_fields(profile, worker, "from_trace", TRACE_OPTIONS)
    kv_tokens = _positive("kv_tokens (KV-cache capacity of a worker)", kv_tokens, integer=True)
    if arrival_rate is not None:
        arrival_rate = _positive("arrival_rate (requests/s)", arrival_rate)
    # (BurstGPT's failed requests, 0 response tokens, are kept by the reader so that the filter
    # below drops and counts them as it does the other formats')
    frame = readers[format](path, drop_failed=False) if format == "burstgpt" else readers[format](path)
    if max_requests is not None:
        frame = frame.iloc[: whole_number("max_requests", max_requests)]
    total = len(frame)
    span = float(frame["arrival_s"].max() - frame["arrival_s"].min())
    usable = (frame["output_tokens"] >= 1) & (frame["prompt_tokens"] >= 1)
    label = Path(path).stem
    if not usable.all():
        label += f" ({int((~usable).sum())} of {total} requests without a prompt or an output dropped)"
    frame = frame[usable]
    if frame.empty:
        raise InvalidInstanceError(f"{path}: no request with a prompt and an output")
    s = frame["prompt_tokens"].to_numpy(np.int64)
    o = frame["output_tokens"].to_numpy(np.int64)
    if drop_too_long:
        keep = s + o - 1 <= kv_tokens
        if not keep.any():
            raise InvalidInstanceError(
                f"{path}: none of its {s.size} requests fits in kv_tokens = {kv_tokens} (prompt + output "
                f"- 1 tokens; the shortest needs {int((s + o - 1).min())}); raise kv_tokens (--kv-tokens)")
        if not keep.all():
            label += f" ({int((~keep).sum())} of {total} requests longer than kv_tokens dropped)"
        s, o = s[keep], o[keep]
    if arrival_rate is None:
        if span <= 0:
            raise InvalidInstanceError(f"{path}: cannot infer a rate from one instant; pass "
                                       "arrival_rate (--rate)")
        arrival_rate = (total - 1) / span * (s.size / total)  # the kept requests' rate
    return Instance(
        prompt_tokens=s,
        output_tokens=o,
        arrival_rate=float(arrival_rate),
        kv_tokens=kv_tokens,
        headroom=headroom,
        workload=label,
        **fields,
    )
