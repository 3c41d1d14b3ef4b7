"""Caching instances: a request sequence for objects of different sizes and miss costs.

An instance is the offline view of one cache: requests ``r = 0..n-1`` at non-decreasing times
``time[r]`` (s) for objects ``object_id[r]``; object ``o`` has ``size[o]`` (tokens: embedding
tokens of a multimodal item, or 512 per prefix KV block) and ``miss_cost[o]`` (what one miss
costs: encoder milliseconds, or block-recompute units); the cache holds ``capacity`` tokens.

Generators
----------
- :func:`generate`: a multimodal embedding workload (thumbnail, image, audio, video objects whose
  size and encoder cost are not proportional), Zipf popularity with skew ``skew`` and popularity
  drift between phases.
- :func:`from_trace`: prefix KV blocks of a Mooncake JSONL trace (each ``hash_ids`` entry is a
  512-token block), miss cost 1 per block or growing with the block's position in the prompt.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from servopt.core import Instance as BaseInstance
from servopt.core import InvalidInstanceError
from servopt.core.checks import number, whole_number
from servopt.instances.traces import BLOCK_TOKENS

# kind: (median size in embedding tokens, size spread (lognormal sigma), encoder ms fixed,
#        encoder ms per token, share of objects)
MULTIMODAL_KINDS: dict[str, tuple[float, float, float, float, float]] = {
    "thumbnail": (64.0, 0.2, 4.0, 0.02, 0.40),
    "image": (576.0, 0.3, 12.0, 0.015, 0.35),
    "audio": (750.0, 0.5, 30.0, 0.03, 0.15),
    "video": (4096.0, 0.6, 40.0, 0.05, 0.10),
}


@dataclasses.dataclass(frozen=True, repr=False)
class Instance(BaseInstance):
    """A caching instance (see the module docstring for units).

    time : (n,) request times in seconds, non-decreasing.
    object_id : (n,) requested object of each request, in ``0..objects-1``.
    size : (objects,) object size in tokens (> 0).
    miss_cost : (objects,) cost of one miss of the object (>= 0; ms of encoder time or units).
    capacity : cache size in tokens (>= 0).
    kind : (objects,) small-int object kind (index into ``kind_names``); optional.
    kind_names : names of the kinds.
    popularity : (objects,) expected number of requests of each object over the trace under the
        generator's true (drifting) popularity; optional (traces have none).
    name : a label of the workload.
    """

    decision = "caching"
    schema_version = 1
    identifier_fields = ("object_id",)  # object indexes: range-checked by validate, by name

    time: np.ndarray
    object_id: np.ndarray
    size: np.ndarray
    miss_cost: np.ndarray
    capacity: float
    kind: np.ndarray | None = None
    kind_names: list[str] = dataclasses.field(default_factory=list)
    popularity: np.ndarray | None = None
    name: str = ""

    def validate(self) -> None:
        def vector(field: str, dtype: Any) -> np.ndarray:
            if np.asarray(getattr(self, field)).dtype.kind in "USOb":  # text, objects, true/false
                raise InvalidInstanceError(f"{field} must be a vector of numbers")
            try:
                value = np.asarray(getattr(self, field), dtype=dtype)
            except (TypeError, ValueError):
                raise InvalidInstanceError(f"{field} must be a vector of numbers") from None
            if value.ndim != 1:
                raise InvalidInstanceError(f"{field} must be one-dimensional, got shape "
                                           f"{value.shape}")
            self._set(field, value)
            return value

        time = vector("time", float)
        raw_ids = np.asarray(self.object_id)
        if raw_ids.size and raw_ids.dtype.kind == "f":
            if not np.all(np.isfinite(raw_ids)) or np.any(raw_ids != np.round(raw_ids)):
                raise InvalidInstanceError("object_id must be whole numbers (object indexes)")
        if raw_ids.size and raw_ids.dtype.kind in "iuf" and (
                raw_ids.max() > 2**62 or raw_ids.min() < -(2**62)):  # before the int64 cast wraps it
            worst = raw_ids.max() if raw_ids.max() > 2**62 else raw_ids.min()
            raise InvalidInstanceError(
                f"a request asks for object {worst:.6g}, which has no size and miss cost (object_id "
                f"values are object indexes 0..{np.size(self.size) - 1})")
        ids = vector("object_id", np.int64)
        size = vector("size", float)
        cost = vector("miss_cost", float)
        if len(time) != len(ids):
            raise InvalidInstanceError(
                f"time has {len(time)} entries but object_id has {len(ids)}: one time per request")
        if len(size) != len(cost):
            raise InvalidInstanceError(
                f"size has {len(size)} objects but miss_cost has {len(cost)}: one each per object")
        for field, value in (("time", time), ("size", size), ("miss_cost", cost)):
            if not np.all(np.isfinite(value)):
                raise InvalidInstanceError(f"{field} must be finite numbers")
        if np.any(size <= 0):
            o = int(np.argmax(size <= 0))
            raise InvalidInstanceError(f"size of object {o} is {size[o]:g}: sizes must be > 0 "
                                       "tokens")
        if np.any(cost < 0):
            o = int(np.argmax(cost < 0))
            raise InvalidInstanceError(f"miss_cost of object {o} is {cost[o]:g}: miss costs must "
                                       "be >= 0")
        if len(time) > 1 and np.any(np.diff(time) < 0):
            r = int(np.argmax(np.diff(time) < 0)) + 1
            raise InvalidInstanceError(
                f"time must be sorted: request {r} at {time[r]:g} s comes before request {r - 1} "
                f"at {time[r - 1]:g} s")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(size)):
            bad = int(ids[(ids < 0) | (ids >= len(size))][0])
            raise InvalidInstanceError(
                f"a request asks for object {bad}, which has no size and miss cost (objects are "
                f"0..{len(size) - 1})")
        capacity = number("capacity", self.capacity, lambda v: 0 <= v < np.inf,
                          "a finite number of tokens >= 0")
        self._set("capacity", capacity)
        if not isinstance(self.kind_names, list | tuple) or not all(
                isinstance(k, str) for k in self.kind_names):
            raise InvalidInstanceError(f"kind_names must be a list of names (text), got {self.kind_names!r}")
        if self.kind is not None:
            raw_kind = np.asarray(self.kind)
            if raw_kind.size and raw_kind.dtype.kind == "f" and (
                    not np.all(np.isfinite(raw_kind)) or np.any(raw_kind != np.round(raw_kind))):
                raise InvalidInstanceError("kind must be whole numbers (indexes into kind_names)")
            kind = vector("kind", np.int64)
            if len(kind) != len(size):
                raise InvalidInstanceError(f"kind has {len(kind)} entries for {len(size)} objects")
            if len(kind) and (kind.min() < 0 or (self.kind_names and
                                                  kind.max() >= len(self.kind_names))):
                raise InvalidInstanceError("kind must index kind_names")
        self._set("kind_names", list(self.kind_names))
        if self.popularity is not None:
            popularity = vector("popularity", float)
            if len(popularity) != len(size) or np.any(~np.isfinite(popularity)) or np.any(
                    popularity < 0):
                raise InvalidInstanceError("popularity must give each object an expected request "
                                           "count >= 0")

    # -- convenience -------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        return len(self.object_id)

    @property
    def objects(self) -> int:
        return len(self.size)

    def summary(self) -> str:
        seen = np.unique(self.object_id)
        distinct = float(self.size[seen].sum())
        share = (f"{self.capacity / distinct:.1%} of the requested objects' tokens" if distinct
                 else "no request")
        label = f"{self.name}: " if self.name else ""
        return (f"caching {label}{self.requests} requests, {len(seen)} objects, capacity "
                f"{self.capacity:.0f} tokens ({share})")


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------
def generate(
    *,
    requests: int = 2000,
    objects: int = 400,
    skew: float = 0.9,
    cache_share: float = 0.05,
    drift: float = 0.1,
    phases: int = 5,
    rate: float = 100.0,
    seed: int = 0,
) -> Instance:
    """A multimodal embedding workload.

    requests : number of requests; objects : catalogue size.
    skew : Zipf exponent of popularity (p ~ rank^-skew).
    cache_share : capacity as a share of the catalogue's total size (tokens).
    drift : share of objects whose popularity rank is redrawn at each of ``phases - 1`` phase
        boundaries: 0 = stationary, 1 = every rank redrawn. This is the opposite of expert
        placement's ``drift`` (:func:`servopt.instances.expert_placement.generate`), the
        correlation between successive windows, where 0 means independent windows.
    rate : request rate (requests/s) of the Poisson arrivals.

    Memory and time: the instance holds 16 bytes a request and 32 an object, but a run needs
    ~250 bytes a request at its peak: measured once at the cap (``MAX_REQUESTS`` = 10 million
    requests, 5 million objects, load 1-4 on 2 shared cores): generating 0.89 GB in 17 s
    (~85 bytes a request over the interpreter), writing the JSON file 2.6 GB in 22 s,
    ``lru`` 2.0 GB in 53 s, ``belady`` 2.4 GB in 41 s, and reading such a file back (10 million
    requests) 2.5 GB in 11 s, ``lru`` and ``belady`` on it adding no more (peak RSS of
    ``harness.evaluate(generate(requests=10_000_000, objects=5_000_000), "lru")`` and alike).
    """
    _check_multimodal(requests, objects, skew, cache_share, drift, phases, rate)
    seed = whole_number("seed", seed, low=0)
    draw = _multimodal_draw(requests, objects, skew, drift, phases, rate, seed)
    return Instance(time=draw["time"], object_id=draw["object_id"], size=draw["size"],
                    miss_cost=draw["miss_cost"],
                    capacity=float(np.round(cache_share * draw["size"].sum())), kind=draw["kind"],
                    kind_names=list(MULTIMODAL_KINDS), popularity=draw["popularity"],
                    name=f"multimodal skew={skew:g}")


def phase_popularity(*, requests: int = 2000, objects: int = 400, skew: float = 0.9,
                     cache_share: float = 0.05, drift: float = 0.1, phases: int = 5,
                     rate: float = 100.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The generator's true popularity per phase (foresight, for oracle references only).

    Returns ``bounds`` (phases + 1 request indexes: phase k is requests ``bounds[k]..bounds[k+1]-1``)
    and ``probability`` (phases x objects: each phase's request distribution). Same arguments
    as :func:`generate` (``cache_share`` is checked but does not change the popularity)."""
    _check_multimodal(requests, objects, skew, cache_share, drift, phases, rate)
    seed = whole_number("seed", seed, low=0)
    draw = _multimodal_draw(requests, objects, skew, drift, phases, rate, seed)
    return draw["bounds"], draw["probability"]


# Requests a generated trace may hold: what a run of it is practical for (measured at the cap, see
# generate's docstring: under a minute and 2.6 GB at most per step; the audit's 5e7 did not
# finish generating in 240 s).
MAX_REQUESTS = 10_000_000
MAX_OBJECTS = 5_000_000  # catalogue size of a generated workload
MAX_PHASE_CELLS = 50_000_000  # phases x objects: the generator keeps each phase's popularity (8 B)


def _check_multimodal(requests: int, objects: int, skew: float, cache_share: float, drift: float,
                      phases: int, rate: float) -> None:
    if (n := whole_number("requests", requests)) > MAX_REQUESTS:
        raise InvalidInstanceError(
            f"requests must be at most {MAX_REQUESTS:,}, got {n:,} (a policy's run needs ~250 "
            "bytes a request at its peak: 2.5 GB and about a minute per policy at the cap; the "
            "LP bound takes at most 500,000)")
    whole_number("objects", objects, high=MAX_OBJECTS)
    whole_number("phases", phases)
    if phases * objects > MAX_PHASE_CELLS:
        raise InvalidInstanceError(
            f"phases x objects = {phases * objects:,}: at most {MAX_PHASE_CELLS:,} (the generator keeps "
            "each phase's popularity of every object)")
    number("skew", skew, lambda v: 0 <= v <= 10, "in [0, 10] (the Zipf exponent)")
    number("drift", drift, lambda v: 0 <= v <= 1,
           "in [0, 1] (the share of objects redrawn at each phase: 0 stationary)")
    number("cache_share", cache_share, lambda v: 0 <= v <= 1, "in [0, 1] (a share of the catalogue's tokens)")
    number("rate", rate, lambda v: 0 < v <= 1e9, "in (0, 1e9] requests/s")


def _multimodal_draw(requests: int, objects: int, skew: float, drift: float, phases: int,
                     rate: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = list(MULTIMODAL_KINDS)
    spec = np.array([MULTIMODAL_KINDS[k] for k in names])
    kind = rng.choice(len(names), size=objects, p=spec[:, 4] / spec[:, 4].sum())
    size = np.round(spec[kind, 0] * np.exp(spec[kind, 1] * rng.standard_normal(objects)))
    size = np.maximum(size, 16.0)
    # encoder time: a fixed launch/preprocess cost plus a per-token cost, with +-20% noise
    cost = (spec[kind, 2] + spec[kind, 3] * size) * rng.uniform(0.8, 1.2, objects)
    cost = np.round(cost, 3)
    weights = np.arange(1, objects + 1, dtype=float) ** -skew
    rank = rng.permutation(objects)  # rank[o]: popularity rank of object o
    ids = np.empty(requests, dtype=np.int64)
    expected = np.zeros(objects)
    probability = np.zeros((phases, objects))
    bounds = np.linspace(0, requests, phases + 1).astype(int)
    for phase in range(phases):
        if phase > 0 and drift > 0:
            moved = rng.choice(objects, size=round(drift * objects), replace=False)
            rank[moved] = rank[rng.permutation(moved)]
        p = weights[rank]
        lo, hi = bounds[phase], bounds[phase + 1]
        probability[phase] = p / p.sum()
        ids[lo:hi] = rng.choice(objects, size=hi - lo, p=probability[phase])
        expected += (hi - lo) * p / p.sum()
    time = np.cumsum(rng.exponential(1.0 / rate, requests))
    time -= time[0]
    return {"time": time, "object_id": ids, "size": size, "miss_cost": cost, "kind": kind,
            "popularity": expected, "probability": probability, "bounds": bounds}


def from_trace(
    path: str | Path,
    *,
    cache_share: float = 0.05,
    cost: str = "unit",
    max_requests: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Instance:
    """Prefix KV blocks of a Mooncake JSONL trace as a caching instance.

    Each ``hash_ids`` entry of a prompt is one request for a 512-token block, in prompt order.
    cache_share : capacity as a share of the trace's distinct blocks (x 512 tokens), rounded to
        whole blocks; a share > 0 that rounds to no block is refused (too small for the trace).
    cost : ``"unit"`` (one unit per missed block) or ``"position"`` (a missed block at
        position ``j`` of its prompt costs ``1 + j / 16``: attention over a longer prefix makes
        later blocks dearer to recompute).
    max_requests : keep only the first whole prompts whose blocks total at most this many
        block requests (a prompt is never cut; fewer than the first prompt's blocks is refused;
        a run needs ~250 bytes a block request at its peak, as :func:`generate`'s instances do).
    """
    from servopt.instances.traces import read_mooncake

    if cost not in ("unit", "position"):
        raise InvalidInstanceError(f"cost must be 'unit' or 'position', got {cost!r}")
    cache_share = number("cache_share", cache_share, lambda v: 0 <= v <= 1,
                         "in [0, 1] (a share of the trace's distinct blocks)")
    if max_requests is not None:
        max_requests = whole_number("max_requests", max_requests)
    frame = read_mooncake(path, start_s=start_s, end_s=end_s)
    lengths = frame["block_ids"].map(len).to_numpy()
    if max_requests is not None:
        keep = int(np.searchsorted(np.cumsum(lengths), max_requests, side="right"))
        if keep == 0 and len(lengths):  # it kept the whole first prompt: 79 blocks for 1
            raise InvalidInstanceError(
                f"{path}: max_requests={max_requests} keeps no whole prompt: the first prompt has "
                f"{int(lengths[0])} blocks (max_requests counts block requests; pass at least "
                f"{int(lengths[0])})")
        frame, lengths = frame.iloc[:keep], lengths[:keep]
    blocks = np.fromiter((b for ids in frame["block_ids"] for b in ids), dtype=np.int64,
                         count=int(lengths.sum()))
    if blocks.size == 0:
        raise InvalidInstanceError(f"{path}: the trace has no hash_ids blocks")
    position = np.arange(len(blocks)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    times = np.repeat(frame["arrival_s"].to_numpy(dtype=float), lengths)
    unique, first, ids = np.unique(blocks, return_index=True, return_inverse=True)
    first_position = position[first].astype(float)
    miss = np.ones(len(unique)) if cost == "unit" else 1.0 + first_position / 16.0
    size = np.full(len(unique), float(BLOCK_TOKENS))
    bucket = np.minimum(np.floor(np.log2(first_position + 1)).astype(np.int64), 7)
    cached = float(np.round(cache_share * len(unique)))  # whole blocks
    if cached == 0 and cache_share > 0:  # every policy would miss every block: nothing to compare
        raise InvalidInstanceError(
            f"{path}: cache_share {cache_share:g} of this trace's {len(unique)} distinct blocks is "
            f"{cache_share * len(unique):.2g} blocks, which rounds to an empty cache: the share is "
            f"too small for this trace; use cache_share >= 1/{len(unique)} = "
            f"{1 / len(unique):.3g} (one {BLOCK_TOKENS}-token block) or a longer trace "
            "(cache_share=0 asks for the empty cache)")
    return Instance(time=times, object_id=ids.astype(np.int64), size=size, miss_cost=miss,
                    capacity=cached * BLOCK_TOKENS,
                    # kind k: blocks first seen at positions 2^k - 1 .. 2^(k+1) - 2; the last kind
                    # holds every position from 127 up (prompts reach 374 blocks in the trace)
                    kind=bucket,
                    kind_names=[f"position<{2 ** (k + 1) - 1}" for k in range(7)] + ["position>=127"],
                    name=f"mooncake blocks cost={cost}")
