"""Expert placement instances: MoE expert loads per window and layer, and the GPU cluster.

An instance holds the measured expert loads ``loads[t, l, e]`` (tokens routed to logical expert
``e`` of MoE layer ``l`` during window ``t``; windows are successive measurement periods) and the
expert-parallel cluster: ``num_nodes`` nodes of ``gpus_per_node`` GPUs, each GPU with
``slots_per_gpu`` physical expert slots. Physical slot ``p`` lives on GPU ``p // slots_per_gpu``
(the layout of DeepSeek's EPLB ``phy2log`` maps).

Planning convention (predict, then evaluate): the methods see windows ``0 .. W-2`` (the
*history*; the last of them is the *planned window*) and are scored on window ``W-1`` (the
*next window*). With a single window, plan and evaluation use the same window.

Optional parts: expert groups (``num_groups``, for group-limited routing and DeepSeek's
hierarchical EPLB), a previous placement (``previous_placement[l, p]`` = logical expert in slot
``p``, ``-1`` for an empty slot) with a ``migration_cost`` in tokens per replica moved, and
relative GPU speeds (``gpu_speed[g]``; a GPU's time is its tokens divided by its speed).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from servopt.core import Instance as BaseInstance
from servopt.core import InvalidInstanceError
from servopt.core.checks import closest_names, either, number, synonym_hint, whole_number

DEFAULT_SIZES: dict[str, Any] = dict(layers=2, experts=8, groups=1, nodes=1, gpus_per_node=4, slots_per_gpu=3,
                                     tokens_per_window=4096.0)
PRESETS: dict[str, dict[str, Any]] = {
    # DeepSeek-V3: 256 routed experts in 8 groups, 58 MoE layers, 4 nodes x 8 GPUs, 9 slots/GPU
    "deepseek_v3": dict(layers=58, experts=256, groups=8, nodes=4, gpus_per_node=8,
                        slots_per_gpu=9, tokens_per_window=65536.0),
    # a small cluster for tests, notebooks and the quick benchmark
    "small": dict(layers=4, experts=32, groups=4, nodes=2, gpus_per_node=4, slots_per_gpu=5,
                  tokens_per_window=8192.0),
    # tiny enough for the exact MILP and brute force
    "tiny": dict(layers=2, experts=6, groups=2, nodes=1, gpus_per_node=3, slots_per_gpu=3,
                 tokens_per_window=600.0),
}


@dataclasses.dataclass(frozen=True, repr=False)
class Instance(BaseInstance):
    """Expert loads (windows x layers x experts, tokens) and the expert-parallel cluster.

    Fields (the module docstring gives the planning convention):

    loads : ``loads[t, l, e]``, tokens routed to logical expert ``e`` of MoE layer ``l`` in
        window ``t`` (tokens, >= 0; a 2-D array is one window).
    num_nodes : nodes in the cluster (count).
    gpus_per_node : GPUs per node (count).
    slots_per_gpu : physical expert slots per GPU (count); slot ``p`` is on GPU
        ``p // slots_per_gpu``, and GPUs x slots must hold every logical expert.
    num_groups : expert groups for group-limited routing (count, dividing the experts).
    previous_placement : optional layers x physical slots of logical expert ids (``-1``: an
        empty slot), the placement in force before this plan.
    migration_cost : tokens charged per replica moved from ``previous_placement`` (tokens, >= 0).
    gpu_speed : optional relative speed per GPU (dimensionless, > 0; a GPU's time is its tokens
        divided by its speed); None: all 1.
    """

    decision = "expert_placement"
    schema_version = 1

    loads: np.ndarray
    num_nodes: int = 1
    gpus_per_node: int = 4
    slots_per_gpu: int = 2
    num_groups: int = 1
    previous_placement: np.ndarray | None = None
    migration_cost: float = 0.0
    gpu_speed: np.ndarray | None = None

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> None:
        loads = _numeric_array("loads", self.loads, "a numeric array (windows x layers x experts)")
        if loads.ndim == 2:  # one window
            loads = loads[None]
        if loads.ndim != 3 or min(loads.shape) < 1:
            raise InvalidInstanceError(
                f"loads must have shape (windows, layers, experts) with at least one of each, "
                f"got shape {np.shape(self.loads)}")
        if not np.all(np.isfinite(loads)):
            raise InvalidInstanceError("loads must be finite numbers of tokens (found nan or inf)")
        if np.any(loads < 0):
            raise InvalidInstanceError("loads must be >= 0 tokens (found a negative expert load)")
        self._set("loads", loads)
        for name in ("num_nodes", "gpus_per_node", "slots_per_gpu", "num_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InvalidInstanceError(f"{name} must be a positive integer, got {value!r}")
            self._set(name, int(value))
        experts, gpus, slots = self.num_experts, self.num_gpus, self.num_slots
        if slots > MAX_SLOTS:  # (every evaluator holds layers x slots arrays: 1e11 slots in a
            # 2-number file raised MemoryError deep in a solver)
            raise InvalidInstanceError(
                f"{self.num_nodes} nodes x {self.gpus_per_node} GPUs x {self.slots_per_gpu} slots "
                f"= {slots:,} expert slots: at most {MAX_SLOTS:,}")
        if slots < experts:
            raise InvalidInstanceError(
                f"slots per GPU ({self.slots_per_gpu}) x GPUs ({gpus}) = {slots} < {experts} "
                f"logical experts: every expert needs a slot")
        if experts % self.num_groups:
            raise InvalidInstanceError(
                f"num_groups ({self.num_groups}) must divide the {experts} experts into equal "
                f"groups")
        self._set("migration_cost", number("migration_cost", self.migration_cost,
                                           lambda v: 0 <= v < math.inf,
                                           ">= 0 tokens per moved replica (a number)"))
        if self.gpu_speed is not None:
            speed = _numeric_array("gpu_speed", self.gpu_speed, f"one relative speed per GPU ({gpus})")
            if speed.shape != (gpus,):
                raise InvalidInstanceError(
                    f"gpu_speed must give one relative speed per GPU ({gpus}), got shape "
                    f"{speed.shape}")
            if not np.all(np.isfinite(speed)) or np.any(speed <= 0):
                raise InvalidInstanceError("gpu_speed must be finite and > 0 for every GPU")
            self._set("gpu_speed", speed)
        if self.previous_placement is not None:
            prev = _numeric_array("previous_placement", self.previous_placement,
                                  "integer expert ids (layers x physical slots, -1 if empty)",
                                  as_float=False)
            if prev.shape != (self.num_layers, slots):
                raise InvalidInstanceError(
                    f"previous_placement must be layers x physical slots = {self.num_layers} x "
                    f"{slots} (logical expert per slot, -1 if empty), got shape {prev.shape}")
            if prev.dtype.kind == "f" and not (np.all(np.isfinite(prev)) and np.all(prev == np.round(prev))):
                raise InvalidInstanceError("previous_placement must hold integer expert ids")
            prev = prev.astype(np.int64)
            if np.any(prev < -1) or np.any(prev >= experts):
                raise InvalidInstanceError(
                    f"previous_placement entries must be expert ids in 0..{experts - 1} or -1")
            self._set("previous_placement", prev)

    # -- derived sizes ----------------------------------------------------------------------------
    @property
    def num_windows(self) -> int:
        return int(self.loads.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.loads.shape[1])

    @property
    def num_experts(self) -> int:
        return int(self.loads.shape[2])

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    @property
    def num_slots(self) -> int:
        """Physical expert slots in the cluster (EPLB's ``num_replicas``)."""
        return self.num_gpus * self.slots_per_gpu

    @property
    def speed(self) -> np.ndarray:
        """Relative GPU speeds (ones when not given)."""
        return self.gpu_speed if self.gpu_speed is not None else np.ones(self.num_gpus)

    @property
    def history(self) -> np.ndarray:
        """Loads the planner may see: windows 0..W-2 (all windows when W == 1)."""
        return self.loads[:-1] if self.num_windows > 1 else self.loads

    @property
    def planned_loads(self) -> np.ndarray:
        """The planned window's loads (layers x experts): the last window of the history."""
        return self.history[-1]

    @property
    def next_loads(self) -> np.ndarray:
        """The next window's loads (layers x experts), on which plans are scored."""
        return self.loads[-1]

    def summary(self) -> str:
        groups = f", {self.num_groups} groups" if self.num_groups > 1 else ""
        return (f"expert placement: {self.num_windows} windows x {self.num_layers} layers x "
                f"{self.num_experts} experts{groups}; {self.num_nodes} nodes x "
                f"{self.gpus_per_node} GPUs x {self.slots_per_gpu} slots = {self.num_slots} "
                f"physical experts")


def _numeric_array(name: str, value: Any, rule: str, *, as_float: bool = True) -> np.ndarray:
    """``value`` as a numeric array; text, booleans and ragged lists are refused (never coerced)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"{name} must be {rule}") from None
    if arr.dtype.kind not in "iuf":
        raise InvalidInstanceError(f"{name} must be {rule}, got values of type {arr.dtype}")
    return arr.astype(float) if as_float else arr


# -- generators --------------------------------------------------------------------------------
# windows x layers x experts a generated instance may hold. Peak memory at the cap, measured once
# (2 shared cores, load 4) with DeepSeek-V3 and 1340 windows (19.9 million loads): generate() 0.78
# GB in 4 s (~33 bytes a load over the interpreter's 155 MB; 0.93 GB with an EPLB plan scored),
# `/usr/bin/time -f %M servopt generate expert_placement preset=deepseek_v3 windows=1340 -o F`
# 1.24 GB in 11 s, reading F back (servopt.instances.load) 1.66 GB in 12 s (~80 bytes a load).
# (The old cap, 1e8 "0.8 GB of floats", meant ~6.3 GB to generate; ~8 GB to read back, by the
# same rate.)
MAX_LOADS = 20_000_000
MAX_SLOTS = 1_000_000  # physical expert slots of an instance (generated, loaded or constructed)


def generate(
    preset: str | None = None,
    *,
    windows: int = 3,
    layers: int | None = None,
    experts: int | None = None,
    groups: int | None = None,
    nodes: int | None = None,
    gpus_per_node: int | None = None,
    slots_per_gpu: int | None = None,
    tokens_per_window: float | None = None,
    skew: float = 1.0,
    drift: float = 0.9,
    persistent: float = 0.0,
    seed: int = 0,
) -> Instance:
    """Skewed, drifting expert loads.

    Per layer, expert ``e`` has log-popularity ``x_te = sqrt(persistent) * skew * b_e +
    sqrt(1 - persistent) * skew * a_te`` where ``b_e ~ N(0, 1)`` is fixed (some experts stay
    popular) and ``a_te`` is a stationary AR(1) with coefficient ``drift`` between windows (the
    popularity drifts), so ``skew`` is the log-sd of popularity (heavy-tailed, log-normal) in
    every window. The correlation of the log-popularity between successive windows is therefore
    ``persistent + (1 - persistent) * drift``; with the default ``persistent=0`` it is ``drift``:
    0 draws every window afresh (independent windows), near 1 is slow drift (the next window
    looks like the last). This is the opposite of caching's ``drift``
    (:func:`servopt.instances.caching.generate`), the share of objects redrawn at each phase,
    where 0 means no change. The window's ``tokens_per_window`` routed tokens (token-expert pairs) are
    Poisson-sampled from the popularity. The default ``persistent=0`` (pure AR(1) drift) matches
    the issue's calibration (EPLB next-window balancedness about 0.85 / 0.68 / 0.51 under even
    split at log-sd 0.5 / 1.0 / 1.5). ``preset`` ("deepseek_v3", "small", "tiny") sets the
    cluster and the sizes (layers, experts, groups, nodes, GPUs, slots, tokens per window); a size
    given explicitly overrides the preset's (``generate("deepseek_v3", layers=2)``: two
    DeepSeek-V3 layers). Without a preset the sizes default to ``DEFAULT_SIZES``. The load-model
    arguments (windows, skew, drift, persistent) apply in every case.
    """
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise InvalidInstanceError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    given = dict(layers=layers, experts=experts, groups=groups, nodes=nodes, gpus_per_node=gpus_per_node,
                 slots_per_gpu=slots_per_gpu, tokens_per_window=tokens_per_window)
    sizes = {**(PRESETS[preset] if preset is not None else DEFAULT_SIZES),
             **{k: v for k, v in given.items() if v is not None}}
    layers, experts, groups = sizes["layers"], sizes["experts"], sizes["groups"]
    nodes, gpus_per_node, slots_per_gpu = sizes["nodes"], sizes["gpus_per_node"], sizes["slots_per_gpu"]
    tokens_per_window = sizes["tokens_per_window"]
    counts = dict(windows=windows, layers=layers, experts=experts, groups=groups, nodes=nodes,
                  gpus_per_node=gpus_per_node, slots_per_gpu=slots_per_gpu)
    for name, value in counts.items():
        whole_number(name, value)
    if windows * layers * experts > MAX_LOADS:
        raise InvalidInstanceError(
            f"windows x layers x experts = {windows * layers * experts:,} expert loads: at most "
            f"{MAX_LOADS:,} (about 80 bytes each to read back from a file; DeepSeek-V3 with 100 "
            f"windows is 1.5 million)")
    if nodes * gpus_per_node * slots_per_gpu > MAX_SLOTS:
        raise InvalidInstanceError(
            f"nodes x gpus_per_node x slots_per_gpu = {nodes * gpus_per_node * slots_per_gpu:,} physical "
            f"expert slots: at most {MAX_SLOTS:,}")
    number("tokens_per_window", tokens_per_window, lambda v: 0 < v <= 1e12, "in (0, 1e12]")
    number("skew", skew, lambda v: 0 <= v <= 10, "in [0, 10] (the log-sd of expert popularity)")
    number("drift", drift, lambda v: 0 <= v < 1,
           "in [0, 1) (the AR(1) coefficient of the drifting part of the popularity: with "
           "persistent=0 the correlation between successive windows, 0 independent windows, "
           "near 1 slow drift; caching's drift is the reverse, a share redrawn)")
    number("persistent", persistent, lambda v: 0 <= v <= 1, "in [0, 1]")
    rng = np.random.default_rng(whole_number("seed", seed, low=0))
    base = rng.standard_normal((layers, experts))
    # one windows x layers x experts array of floats, transformed in place (memory: see MAX_LOADS)
    ar = np.empty((windows, layers, experts))
    ar[0] = rng.standard_normal((layers, experts))
    innovation = np.sqrt(1.0 - drift**2)
    for t in range(1, windows):
        ar[t] = drift * ar[t - 1] + innovation * rng.standard_normal((layers, experts))
    ar *= np.sqrt(1.0 - persistent)  # log-popularity skew * (sqrt(p) b + sqrt(1 - p) a)
    ar += np.sqrt(persistent) * base[None]
    ar *= skew
    ar -= ar.max(axis=2, keepdims=True)
    np.exp(ar, out=ar)  # popularity, then its share of the window's tokens, then their mean
    ar /= ar.sum(axis=2, keepdims=True)
    ar *= tokens_per_window
    counts = rng.poisson(ar)
    ar[...] = counts  # the Poisson counts, as floats, into the same memory
    del counts
    return Instance(loads=ar, num_nodes=nodes, gpus_per_node=gpus_per_node,
                    slots_per_gpu=slots_per_gpu, num_groups=groups)


TRACE_OPTIONS = ("previous_placement", "migration_cost", "gpu_speed")


def from_trace(
    path: str | Path,
    *,
    window: int = 1,
    num_nodes: int | None = None,
    gpus_per_node: int = 8,
    slots_per_gpu: int | None = None,
    num_groups: int | None = None,
    **kwargs: Any,
) -> Instance:
    """An instance from a public expert-load JSON (``load_history`` of per-step layer loads).

    Every ``window`` steps are summed into one window. ``slots_per_gpu`` defaults to the fewest
    slots that hold every expert once plus one redundant slot per GPU. ``num_nodes`` (default 1)
    and ``num_groups`` (default 1) may also be given as :func:`generate` names them, ``nodes``
    and ``groups`` (one spelling of each, not both). Also accepted: ``previous_placement``,
    ``migration_cost`` and ``gpu_speed`` (the :class:`Instance` fields).
    """
    from servopt.instances.traces import read_expert_load

    num_nodes = either("num_nodes", num_nodes, "nodes", kwargs.pop("nodes", None), 1)
    num_groups = either("num_groups", num_groups, "groups", kwargs.pop("groups", None), 1)
    unknown = set(kwargs) - set(TRACE_OPTIONS)
    if unknown:
        accepted = ["window", "num_nodes", "nodes", "gpus_per_node", "slots_per_gpu", "num_groups",
                    "groups", *TRACE_OPTIONS]
        close = [f"{k!r} -> {c[0]!r}" for k in sorted(unknown)
                 if (c := closest_names(k, accepted))]
        why = [w for k in sorted(unknown) if (w := synonym_hint(k, "expert_placement", accepted))]
        raise InvalidInstanceError(f"unknown option(s) {sorted(unknown)} for from_trace; besides window, "
                                   f"num_nodes (or nodes), gpus_per_node, slots_per_gpu and num_groups "
                                   f"(or groups) it accepts {list(TRACE_OPTIONS)}"
                                   + (f"; did you mean {', '.join(close)}?" if close else "")
                                   + (f" {'; '.join(why)}" if why else ""))
    num_nodes = whole_number("num_nodes", num_nodes)
    gpus_per_node = whole_number("gpus_per_node", gpus_per_node)
    loads = read_expert_load(path, window=window)
    gpus = num_nodes * gpus_per_node
    if slots_per_gpu is None:
        slots_per_gpu = -(-loads.shape[2] // gpus) + 1
    return Instance(loads=loads, num_nodes=num_nodes, gpus_per_node=gpus_per_node,
                    slots_per_gpu=slots_per_gpu, num_groups=num_groups, **kwargs)


__all__ = ["PRESETS", "Instance", "from_trace", "generate"]
