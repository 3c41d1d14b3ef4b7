"""Peak memory and time at the project's size caps: one input just under each cap, one just over.

Each input runs in its own subprocess, so its peak RSS (``os.wait4``'s ``ru_maxrss``, the child
and any process it waited for) is that input's alone. Under the cap the figure is what the cap's
code comment promises; over it the input must be refused with ``InvalidInstanceError`` before
anything large is allocated (peak RSS near the ``baseline`` row, an interpreter that only
imports the same modules, and a call time well under a second).

Usage::

    nice -n 10 python -m servopt.benchmarks.limits --out benchmarks/results
    python -m servopt.benchmarks.limits --only caching_requests --out /tmp/limits

writes ``limits.csv`` (one row per input) and ``limits.md`` (the command, the machine and its
load average at start and end, then the table). Where the input at the cap itself would take
more than a few minutes, the row is at a stated fraction of it (its ``size`` column says which).
Input files (a trace or instance file of a given size, a sparse or gzip file over a cap) are made
in the temporary folder by this process before the row's child starts, untimed, and deleted at
the end of the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

# -- the inputs (run in the child) ---------------------------------------------------------------
# Each function builds one input and returns {"size": the capped quantity, "phases": {step: s}}.
# The parameters below were found by bisection on the size counts (model_size, intervals), which
# the child reports again, so a drift in a generator shows as a size on the wrong side of its cap.


def _timed(phases: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    t = time.perf_counter()
    try:
        return fn()
    finally:  # a refusal's time too
        phases[name] = round(time.perf_counter() - t, 3)


def caching_requests(requests: int, objects: int = 5_000_000, policy: str | None = "belady", *,
                     phases: dict[str, float]) -> dict:
    from servopt.benchmarks import harness
    from servopt.instances import caching

    inst = _timed(phases, "generate", lambda: caching.generate(requests=requests, objects=objects))
    if policy:
        _timed(phases, policy, lambda: harness.evaluate(inst, policy))
    return {"size": requests, "phases": phases}


def caching_phases(phases_: int, objects: int = 5_000_000, *, phases: dict[str, float]) -> dict:
    from servopt.instances import caching

    _timed(phases, "generate", lambda: caching.generate(requests=1000, objects=objects, phases=phases_))
    return {"size": phases_ * objects, "phases": phases}


def ep_loads(windows: int, method: str | None = "eplb", *, phases: dict[str, float]) -> dict:
    from servopt.benchmarks import expert_placement as bench
    from servopt.instances import expert_placement

    inst = _timed(phases, "generate", lambda: expert_placement.generate("deepseek_v3", windows=windows))
    if method:
        _timed(phases, method, lambda: bench.evaluate(inst, method))
    return {"size": int(inst.loads.size), "phases": phases}


def ep_loads_read(path: str, method: str | None = "eplb", *, phases: dict[str, float]) -> dict:
    from servopt.benchmarks import expert_placement as bench
    from servopt.instances import load

    inst = _timed(phases, "load", lambda: load(path))
    if method:
        _timed(phases, method, lambda: bench.evaluate(inst, method))
    return {"size": int(inst.loads.size), "phases": phases}


def ep_slots_eval(nodes: int, method: str = "eplb", *, phases: dict[str, float]) -> dict:
    """What a plan costs at many slots: deepseek_v3, 2 windows, ``nodes`` x 8 GPUs x 9 slots,
    generate and evaluate (the evaluator's dispatch LPs, one a layer, grow with the GPUs)."""
    from servopt.benchmarks import expert_placement as bench
    from servopt.instances import expert_placement

    inst = _timed(phases, "generate", lambda: expert_placement.generate(
        "deepseek_v3", windows=2, nodes=nodes, gpus_per_node=8, slots_per_gpu=9))
    _timed(phases, method, lambda: bench.evaluate(inst, method))
    return {"size": int(inst.num_slots), "phases": phases}


def ep_slots(nodes: int, *, phases: dict[str, float]) -> dict:
    from servopt.instances import expert_placement

    _timed(phases, "generate", lambda: expert_placement.generate(
        "tiny", windows=1, nodes=nodes, gpus_per_node=100, slots_per_gpu=10))
    return {"size": nodes * 100 * 10, "phases": phases}


def decode_requests(requests: int, *, phases: dict[str, float]) -> dict:
    from servopt.instances import decode_routing

    _timed(phases, "generate", lambda: decode_routing.generate(requests=requests))
    return {"size": requests, "phases": phases}


def capacity_requests(requests: int, *, phases: dict[str, float]) -> dict:
    from servopt.instances import capacity

    _timed(phases, "generate", lambda: capacity.generate(requests=requests))
    return {"size": requests, "phases": phases}


def capacity_run(n_requests: int, *, phases: dict[str, float]) -> dict:
    """One simulated rate as the comment at benchmarks/capacity.py MAX_REQUESTS measures it:
    0.95 x the model's max stable rate, warm-up 0.25, one seed."""
    from servopt.benchmarks import capacity as bench
    from servopt.instances import capacity
    from servopt.models import capacity as model

    inst = capacity.generate(requests=2000, seed=0)
    rate = 0.95 * model.bounds(inst).max_stable_rate
    _timed(phases, "check_rate", lambda: bench.check_rate(inst, rate, n_requests=n_requests))
    return {"size": n_requests, "phases": phases}


def batch_columns(horizon: int, *, phases: dict[str, float]) -> dict:
    from servopt.instances import batch_scheduling
    from servopt.models import batch_scheduling as bm

    inst = batch_scheduling.generate(1000, output_range=(2, 2))
    _timed(phases, "columns", lambda: bm.columns(inst, horizon))
    return {"size": bm.model_size(inst, horizon)[1], "phases": phases}


def batch_requests(requests: int, *, phases: dict[str, float]) -> dict:
    from servopt.instances import batch_scheduling

    _timed(phases, "generate", lambda: batch_scheduling.generate(requests))
    return {"size": requests, "phases": phases}


def batch_solve(requests: int, time_limit: float | None = None, relax: bool = False,
                backend: str = "highs", *, phases: dict[str, float]) -> dict:
    """``servopt.solve`` of ``generate(requests)`` (uniform lengths, all at round 0); ``size``:
    the fine memory-row entries of the model it builds (the IP's "safe" horizon, the LP's
    makespan one; counted after the solve, not timed)."""
    import servopt
    from servopt.instances import batch_scheduling
    from servopt.models import batch_scheduling as bm

    inst = batch_scheduling.generate(requests)
    solution = _timed(phases, f"solve({backend}{', relax' if relax else ''}, time_limit={time_limit})",
                      lambda: servopt.solve(inst, relax=relax, time_limit=time_limit, backend=backend))
    short, clock = bm.model_clock(inst, None if relax else "safe")
    size = bm.model_size(short, None if relax else "safe", None, clock.ends)[2]
    return {"size": size, "phases": phases, "status": str(solution.status)}


def cache_lp(requests: int, time_limit: float | None = None, backend: str = "highs", *,
             phases: dict[str, float]) -> dict:
    """``servopt.solve(relax=True, backend=backend)`` (the flow LP on HiGHS: as sparse data, or
    built in Pyomo / CVXPY) of a generated workload (400 objects, generate's default, as the
    audit's)."""
    import servopt

    inst = _cache_instance(requests, objects=400)
    shown = "" if backend == "highs" else f"{backend}, "
    solution = _timed(phases, f"solve({shown}relax, time_limit={time_limit})",
                      lambda: servopt.solve(inst, relax=True, time_limit=time_limit, backend=backend))
    return {"size": requests, "phases": phases, "status": str(solution.status)}


def batch_nonzeros(horizon: int, whole: bool = True, *, phases: dict[str, float]) -> dict:
    """``whole``: build_matrix_model (the IP with its warm start) and HiGHS's copy, as
    ``servopt.solve`` does; else build_matrix alone (the LP's matrices)."""
    from servopt.instances import batch_scheduling
    from servopt.models import batch_scheduling as bm
    from servopt.solvers import exact

    inst = batch_scheduling.generate(1000, output_range=(3, 3))
    if whole:
        mm = _timed(phases, "build_matrix_model", lambda: bm.build_matrix_model(inst, horizon=horizon))
        _timed(phases, "load_highs", lambda: exact._load_matrix(mm, integer=True))
    else:
        _timed(phases, "build_matrix", lambda: bm.build_matrix(inst, horizon=horizon))
    return {"size": bm.model_size(inst, horizon)[2], "phases": phases}


def decode_entries(requests: int, workers: int = 32, *, phases: dict[str, float]) -> dict:
    from servopt.instances import decode_routing
    from servopt.models import decode_routing as dm
    from servopt.solvers import exact

    inst = decode_routing.generate_steps(requests=requests, workers=workers)
    mm = _timed(phases, "build_matrix_model", lambda: dm.build_matrix_model(inst))
    _timed(phases, "load_highs", lambda: exact._load_matrix(mm, integer=True))
    return {"size": dm.model_size(inst)["entries"], "phases": phases}


def decode_solve(requests: int, time_limit: float | None = None, backend: str = "highs",
                 workers: int = 32, *, phases: dict[str, float]) -> dict:
    """``servopt.solve`` of ``generate_steps(requests, workers)`` (the hindsight IP; its LP with
    ``backend="cvxpy"``) through ``backend``; ``size``: the model's nonzeros (model_size)."""
    import servopt
    from servopt.instances import decode_routing
    from servopt.models import decode_routing as dm

    inst = decode_routing.generate_steps(requests=requests, workers=workers)
    solution = _timed(phases, f"solve({backend}, time_limit={time_limit})",
                      lambda: servopt.solve(inst, time_limit=time_limit, backend=backend))
    return {"size": dm.model_size(inst)["entries"], "phases": phases,
            "status": str(solution.status)}


def _cache_instance(requests: int, objects: int = 2000) -> Any:
    from servopt.instances import caching

    return caching.generate(requests=requests, objects=objects)


def cache_interval(requests: int, *, phases: dict[str, float]) -> dict:
    from servopt.models import caching as cm

    inst = _cache_instance(requests)
    iv = cm.intervals(inst)
    size = int((iv.end - iv.start)[iv.fits].sum())
    _timed(phases, "interval_matrix", lambda: cm.interval_matrix(inst, iv))
    return {"size": size, "phases": phases}


def cache_binaries(requests: int, time_limit: float = 10.0, max_binaries: int | None = None, *,
                   phases: dict[str, float]) -> dict:
    """The caching IP with a time limit; ``max_binaries`` lifts the cap (from Python, as the
    error message offers) to see what the cap prevents."""
    import servopt
    from servopt.models import caching as cm

    inst = _cache_instance(requests, objects=400)  # generate()'s default, as the audit's
    size = int(cm.intervals(inst).fits.sum())
    lifted = {} if max_binaries is None else {"max_binaries": max_binaries}
    _timed(phases, "build_matrix_model", lambda: cm.build_matrix_model(inst, **lifted))
    solution = _timed(phases, f"solve(time_limit={time_limit:g})",
                      lambda: servopt.solve(inst, time_limit=time_limit, **lifted))
    return {"size": size, "phases": phases, "status": str(solution.status)}


def decode_workers(workers: int, requests: int = 200_000, method: str | None = "jsq", *,
                   phases: dict[str, float]) -> dict:
    from servopt.benchmarks import decode_routing as bench
    from servopt.instances import decode_routing

    inst = _timed(phases, "generate", lambda: decode_routing.generate(requests=requests,
                                                                      workers=workers))
    if method:
        _timed(phases, method, lambda: bench.evaluate(inst, method))
    return {"size": inst.workers, "phases": phases}


def text_trace(path: str, *, phases: dict[str, float]) -> dict:
    """A Mooncake JSONL trace read by ``read_mooncake`` (which checks the text's size first)."""
    from servopt.instances import traces

    _timed(phases, "read_mooncake", lambda: traces.read_mooncake(path))
    return {"size": Path(path).stat().st_size, "phases": phases}


def text_load(path: str, *, phases: dict[str, float]) -> dict:
    """An instance JSON file read by ``instances.load`` (``read_text_file``, then the schema)."""
    from servopt.instances import load

    _timed(phases, "load", lambda: load(path))
    return {"size": Path(path).stat().st_size, "phases": phases}


def baseline(*, phases: dict[str, float]) -> dict:
    """The interpreter with every module the other rows import: what a refusal should cost."""
    import servopt  # noqa: F401
    from servopt.benchmarks import capacity, expert_placement, harness  # noqa: F401
    from servopt.benchmarks import decode_routing as routing_bench  # noqa: F401
    from servopt.instances import batch_scheduling, caching, decode_routing, load, traces  # noqa: F401
    from servopt.models import batch_scheduling, caching, decode_routing  # noqa: F401,F811
    from servopt.solvers import exact  # noqa: F401

    return {"size": 0, "phases": {}}


def _ep_file(windows: int) -> list[str]:
    """The CLI writing a generated expert-placement file (the row's RSS is the CLI's)."""
    return ["servopt", "generate", "expert_placement", "preset=deepseek_v3", f"windows={windows}",
            "-o", str(_scratch(f"ep_{windows}.json"))]


# -- input files, made by the parent before a row's child starts (not timed) -------------------
# An argument "@KIND:N" names the file FILES[KIND](N) makes (kept for the run, then deleted).


def _scratch(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"servopt_limits_{name}"


def _mooncake_file(limit: int) -> Path:
    """The shared Mooncake trace repeated (each copy's timestamps after the previous copy's) to
    as many whole lines as fit in ``limit`` bytes."""
    from servopt.instances.traces import shared_trace

    path = _scratch(f"mooncake_{limit}.jsonl")
    if path.exists():
        return path
    source = shared_trace("mooncake_synthetic.jsonl")
    if source is None:
        raise SystemExit("mooncake_synthetic.jsonl is needed (../shared/traces or SERVOPT_TRACES)")
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    tails = [json.dumps({k: v for k, v in r.items() if k != "timestamp"})[1:] for r in records]
    span = max(r["timestamp"] for r in records) + 1000  # ms between copies
    size, partial = 0, path.with_suffix(".partial")
    with open(partial, "w") as out:
        for copy in count():
            for record, tail in zip(records, tails, strict=True):
                line = f'{{"timestamp": {record["timestamp"] + copy * span}, {tail}\n'
                if size + len(line) > limit:
                    break
                out.write(line)
                size += len(line)
            else:
                continue
            break
    partial.replace(path)
    return path


def _sparse_file(size: int) -> Path:
    """``size`` zero bytes, as a sparse file (no disk used)."""
    path = _scratch(f"sparse_{size}.json")
    with open(path, "wb") as out:
        out.truncate(size)
    return path


def _gzip_bomb(size: int) -> Path:
    """A gzip file of ``size`` bytes of newlines once decompressed (about 1/1000 of it on disk)."""
    import gzip

    path = _scratch(f"gzip_{size}.jsonl")
    if not path.exists():
        with gzip.open(path, "wb", compresslevel=9) as out:
            piece = b"\n" * 2**20
            for _ in range(size // len(piece)):
                out.write(piece)
            out.write(b"\n" * (size % len(piece)))
    return path


def _caching_file(requests: int) -> Path:
    """The CLI's caching instance file of ``requests`` requests (100,000 objects), as the comment
    at ``MAX_TEXT_BYTES`` measures the largest instance files."""
    path = _scratch(f"caching_{requests}.json")
    if not path.exists():
        subprocess.run(["servopt", "generate", "caching", f"requests={requests}", "objects=100000",
                        "-o", str(path)], check=True, capture_output=True)
    return path


def _batch_file(requests: int) -> list[str]:
    """The CLI writing a generated batch-scheduling file (the row's RSS is the CLI's)."""
    return ["servopt", "generate", "batch_scheduling", f"n={requests}",
            "-o", str(_scratch(f"batch_{requests}.json"))]


def _batch_made(requests: int) -> Path:
    cli = _batch_file(requests)
    if not Path(cli[-1]).exists():
        subprocess.run(cli, check=True, capture_output=True)
    return Path(cli[-1])


def _ep_made(windows: int) -> Path:
    cli = _ep_file(windows)
    if not Path(cli[-1]).exists():
        subprocess.run(cli, check=True, capture_output=True)
    return Path(cli[-1])


def _caching_padded(size: int) -> Path:
    """:func:`_caching_file` at the generators' cap (10 million requests), then spaces (JSON white
    space) to ``size`` bytes."""
    path = _scratch(f"caching_padded_{size}.json")
    if not path.exists():
        source = _caching_file(10_000_000)
        partial = path.with_suffix(".partial")
        with open(source, "rb") as src, open(partial, "wb") as out:
            while piece := src.read(2**24):
                out.write(piece)
            left = size - out.tell()
            if left < 0:
                raise SystemExit(f"{source} is larger than {size} bytes")
            while left:
                out.write(b" " * min(left, 2**24))
                left -= min(left, 2**24)
        partial.replace(path)
    return path


FILES: dict[str, Callable[[int], Path]] = {
    "ep_file": _ep_made, "mooncake": _mooncake_file, "sparse": _sparse_file,
    "gzip": _gzip_bomb, "caching": _caching_file, "caching_padded": _caching_padded,
    "batch_file": _batch_made,
}


# -- the table of caps ----------------------------------------------------------------------------
# (row name, cap as written in the code, cap value, function, args under, args over, note).
# ``args under`` / ``args over`` None: no such row (the cap is checked by another row).
_TEXT = "servopt/core/instance.py MAX_TEXT_BYTES"
CASES: list[tuple[str, str, int, str, tuple | None, tuple | None, str]] = [
    ("baseline", "-", 0, "baseline", (), None, "interpreter + imports"),
    ("caching_requests", "instances/caching.py MAX_REQUESTS", 10_000_000, "caching_requests",
     (10_000_000,), (10_000_001,), "generate (5e6 objects) + belady: the policies' path (the "
     "refusal's ~250 bytes a request and 2.5 GB are theirs; the LP is capped far lower, "
     "cache_lp_requests)"),
    ("caching_requests_lru", "instances/caching.py MAX_REQUESTS", 10_000_000, "caching_requests",
     (10_000_000, 5_000_000, "lru"), None, "generate (5e6 objects) + lru"),
    ("caching_objects", "instances/caching.py MAX_OBJECTS", 5_000_000, "caching_requests",
     (1000, 5_000_000, None), (1000, 5_000_001, None), "generate, 1000 requests"),
    ("caching_phase_cells", "instances/caching.py MAX_PHASE_CELLS", 50_000_000, "caching_phases",
     (10,), (11,), "generate, 5e6 objects x phases"),
    ("ep_loads", "instances/expert_placement.py MAX_LOADS", 20_000_000, "ep_loads",
     (1346,), (1347,), "deepseek_v3 generate + eplb (14,848 loads a window)"),
    ("ep_loads_cli", "instances/expert_placement.py MAX_LOADS", 20_000_000, "cli:_ep_file",
     (1346,), (1347,), "servopt generate expert_placement ... -o FILE"),
    ("ep_loads_read", "instances/expert_placement.py MAX_LOADS", 20_000_000, "ep_loads_read",
     ("@ep_file:1346",), None, "instances.load(FILE) + eplb"),
    ("ep_slots", "instances/expert_placement.py MAX_SLOTS", 1_000_000, "ep_slots",
     (1000,), (1001,), "generate only (tiny preset, nodes x 100 GPUs x 10 slots, one window): "
     "what the cap costs to hold, not to plan or evaluate (ep_slots_eval)"),
    ("ep_slots_eval", "instances/expert_placement.py MAX_SLOTS", 1_000_000, "ep_slots_eval",
     (125,), None, "deepseek_v3, 2 windows, 125 nodes x 8 GPUs x 9 slots (9,000 slots, 0.9% of "
     "the cap): generate + evaluate(eplb), mostly the evaluator's dispatch LPs (scipy linprog, "
     "one a layer); more GPUs cost more (the audit: 73 s here), so plan from this row, not "
     "ep_slots"),
    ("decode_requests", "instances/decode_routing.py MAX_REQUESTS", 10_000_000, "decode_requests",
     (10_000_000,), (10_000_001,), "generate"),
    ("decode_workers", "instances/decode_routing.py MAX_WORKERS", 100_000, "decode_workers",
     (100_000,), (100_001,), "generate (200,000 requests) + jsq"),
    ("capacity_requests", "instances/capacity.py MAX_REQUESTS", 10_000_000, "capacity_requests",
     (10_000_000,), (10_000_001,), "generate"),
    ("capacity_run", "benchmarks/capacity.py MAX_REQUESTS", 16_000_000, "capacity_run",
     (1_000_000,), (16_000_001,), "check_rate, one seed; under: 1/16 of the cap (a run at the cap "
     "is 13-48 min)"),
    ("batch_requests", "instances/batch_scheduling.py MAX_REQUESTS", 10_000_000, "batch_requests",
     (10_000_000,), (10_000_001,), "generate (uniform lengths, all at round 0)"),
    ("batch_requests_cli", "instances/batch_scheduling.py MAX_REQUESTS", 10_000_000,
     "cli:_batch_file", (10_000_000,), (10_000_001,), "servopt generate batch_scheduling n=N -o FILE"),
    ("batch_requests_load", "instances/batch_scheduling.py MAX_REQUESTS", 10_000_000, "text_load",
     ("@batch_file:10000000",), None, "instances.load of the 10M-request file"),
    ("batch_columns", "models/batch_scheduling.py _MAX_COLUMNS", 30_000_000, "batch_columns",
     (30_001,), (30_002,), "columns(), n=1000 offline, o=2"),
    ("batch_columns_early", "models/batch_scheduling.py _MAX_COLUMNS", 30_000_000, "batch_solve",
     None, (100_000, None, True), "servopt.solve(generate(100000), relax=True): refused on "
     "size_lower_bound before the greedy horizon (the audit: 146 s to refuse before)"),
    ("batch_columns_early_ip", "models/batch_scheduling.py _MAX_COLUMNS", 30_000_000,
     "batch_solve", None, (1_000_000, 2.0), "servopt.solve(generate(1000000), time_limit=2): as "
     "batch_columns_early, the IP's path (time_estimate)"),
    ("batch_pyomo_entries", "models/batch_scheduling.py _MAX_PYOMO_ENTRIES", 5_000_000,
     "batch_solve", (110, 2.0, False, "pyomo"), (400, 2.0, False, "pyomo"),
     "servopt.solve(generate(n), backend='pyomo', time_limit=2), the IP; under: n=110, a third "
     "of the cap (peak RSS less the baseline's, per entry, times the cap: the cap's estimate); "
     "over: n=400 (18.1M entries: the audit's 7.98 GB and 131 s), refused after the greedy "
     "horizon"),
    ("batch_nonzeros", "models/batch_scheduling.py _MAX_NONZEROS", 60_000_000, "batch_nonzeros",
     (20_002,), (20_003,), "build_matrix_model + HiGHS passModel, n=1000 offline, o=3"),
    ("batch_nonzeros_lp", "models/batch_scheduling.py _MAX_NONZEROS", 60_000_000, "batch_nonzeros",
     (20_002, False), None, "build_matrix alone (the LP's matrices), n=1000 offline, o=3"),
    ("decode_entries", "models/decode_routing.py MAX_ENTRIES", 30_000_000, "decode_entries",
     (4363,), (4364,), "generate_steps(workers=32), build_matrix_model + HiGHS passModel"),
    ("decode_pyomo_entries", "models/decode_routing.py MAX_PYOMO_ENTRIES", 5_000_000,
     "decode_solve", (258, 2.0, "pyomo"), (749, 2.0, "pyomo"),
     "servopt.solve(generate_steps(n, workers=32), backend='pyomo', time_limit=2), the IP; "
     "under: n=258, a third of the cap (peak RSS less the baseline's, per entry, times the cap: "
     "the cap's estimate); over: n=749, refused before the build (R45 F3: 1.83 GB and 77 s at "
     "n=1000 before the cap)"),
    ("decode_cvxpy_entries", "models/decode_routing.py MAX_CVXPY_ENTRIES", 8_000_000,
     "decode_solve", (400, 2.0, "cvxpy"), (1159, 2.0, "cvxpy"),
     "as decode_pyomo_entries through CVXPY (the hindsight LP); under: n=400, a third of the "
     "cap; over: n=1159, refused before the build"),
    ("cache_interval_nonzeros", "models/caching.py MAX_INTERVAL_NONZEROS", 5_000_000,
     "cache_interval", (8848,), (8849,), "interval_matrix, 2000 objects"),
    ("cache_lp_requests", "models/caching.py MAX_LP_REQUESTS", 500_000, "cache_lp",
     (250_000, 60.0), (500_001,), "servopt.solve(relax=True, time_limit=60), 400 objects "
     "(generate's default); under: half the cap (no optimum in 200 s with no limit, one run at "
     "load ~2: the peak is the row's point)"),
    ("cache_lp_pyomo", "models/caching.py MAX_LP_REQUESTS", 500_000, "cache_lp",
     (100_000, None, "pyomo"), None, "as cache_lp_requests through Pyomo (the same cap: its "
     "model is heavier; scale the peak over baseline linearly for the cap), no time limit"),
    ("cache_lp_cvxpy", "models/caching.py MAX_LP_REQUESTS", 500_000, "cache_lp",
     (100_000, None, "cvxpy"), None, "as cache_lp_pyomo through CVXPY"),
    ("cache_binaries", "models/caching.py MAX_BINARIES", 50_000, "cache_binaries",
     (50_400, 5.0), (50_401, 5.0), "build_matrix_model (IP) + servopt.solve(time_limit=5), "
     "400 objects (generate's default)"),
    ("cache_binaries_lifted", "models/caching.py MAX_BINARIES", 50_000, "cache_binaries",
     (80_000, 5.0, 200_000), None, "as cache_binaries with max_binaries lifted, at the 80k "
     "requests the commit adding the cap quotes (24 s on a 5 s limit); killed after 300 s"),
    ("cache_binaries_320k", "models/caching.py MAX_BINARIES", 50_000, "cache_binaries",
     (320_000, 5.0, 1_000_000), None, "as cache_binaries_lifted at the commit's 320k requests "
     "(minutes and 6 GB then); killed after 300 s"),
    ("text_bytes_trace", _TEXT, 2**30, "text_trace", (f"@mooncake:{2**30}",),
     (f"@sparse:{2**30 + 1}",), "read_mooncake; under: the shared Mooncake trace repeated to the "
     "whole lines that fit in 1 GiB; over: a sparse file of 1 GiB + 1 byte"),
    ("text_bytes_trace_quarter", _TEXT, 2**30, "text_trace", (f"@mooncake:{2**28}",), None,
     "read_mooncake, as text_bytes_trace at a quarter of the cap (the cost per MB)"),
    ("text_bytes_trace_gzip", _TEXT, 2**30, "text_trace", None, (f"@gzip:{2**30 + 1}",),
     "read_mooncake of a gzip file of 1 GiB + 1 byte of newlines once decompressed (1 MB on disk)"),
    ("text_bytes_load", _TEXT, 2**30, "text_load", (f"@caching_padded:{2**30}",),
     (f"@sparse:{2**30 + 1}",), "instances.load; under: caching_largest's file followed by "
     "spaces to 1 GiB (no generated instance comes nearer); over: a sparse file of 1 GiB + 1 byte"),
    ("text_bytes_load_largest", _TEXT, 2**30, "text_load", ("@caching:10000000",), None,
     "instances.load of the largest instance a generator writes (servopt generate caching "
     "requests=10000000 objects=100000, the generators' cap)"),
    ("text_bytes_load_gzip", _TEXT, 2**30, "text_load", None, (f"@gzip:{2**30 + 1}",),
     "instances.load of a gzip file of 1 GiB + 1 byte of newlines once decompressed"),
]
# seconds: rows whose run may not end by itself
ROW_TIMEOUT = {"cache_binaries_lifted": 300.0, "cache_binaries_320k": 300.0}


def _child(function: str, args: list[Any]) -> None:
    """Run one input and print one JSON line: its result, or the refusal."""
    from servopt.core.errors import InvalidInstanceError

    fn = globals()[function]
    rss0 = _self_rss_mb()
    t = time.perf_counter()
    phases: dict[str, float] = {}
    try:
        out = fn(*args, phases=phases)
        out["outcome"] = "ran"
    except InvalidInstanceError as exc:
        out = {"outcome": f"refused: {type(exc).__name__}", "message": str(exc)[:300], "phases": phases}
    out["call_s"] = round(time.perf_counter() - t, 3)
    out["imports_rss_mb"] = round(rss0)
    print(json.dumps(out), flush=True)


def _self_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run ``cmd``; its wall time, peak RSS (MB, wait4) and last stdout line as JSON."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
        status, usage, timed_out = 0, None, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        lines = out.read().strip().splitlines()
        tail = err.read().strip().splitlines()[-1:] or [""]
    row: dict[str, Any] = {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    if timed_out:
        row["outcome"] = f"timeout after {timeout:g} s"
        return row
    if cmd[0] == "servopt":  # the CLI prints no JSON: its exit status and last error line
        row["outcome"] = "ran" if proc.returncode == 0 else f"exit {proc.returncode}: {tail[0][:300]}"
        return row
    try:
        row.update(json.loads(lines[-1]))
    except (IndexError, ValueError):
        row["outcome"] = f"exit {proc.returncode}: {tail[0][:300]}"
    return row


def _command(function: str, args: tuple) -> list[str]:
    if function.startswith("cli:"):
        return globals()[function[4:]](*args)
    listed = []
    for a in args:
        if isinstance(a, str) and a.startswith("@"):  # a file made here (not timed)
            kind, _, n = a[1:].partition(":")
            a = str(FILES[kind](int(n)))
        listed.append(a)
    args = tuple(listed)
    return [sys.executable, "-m", "servopt.benchmarks.limits", "--child", function, json.dumps(list(args))]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def require_checkout(script: str) -> None:
    """:func:`servopt.benchmarks.report.require_checkout`, in the parent only: a child
    (``--child``) must not import the report module, whose imports would count in its peak RSS."""
    if "--child" in sys.argv:
        return
    from servopt.benchmarks.report import require_checkout as check

    check(script)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="run only this row (repeatable)")
    parser.add_argument("--out", default=None, help="directory for limits.csv and limits.md")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per input (killed after)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other rows of OUT/limits.csv (and its run's header) and "
                             "replace only the rows run now")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        _child(opts.child[0], json.loads(opts.child[1]))
        return
    names = [c[0] for c in CASES]
    for name in opts.only or []:
        if name not in names:
            parser.error(f"unknown row {name!r}; choose from {names}")
    command = "python -m servopt.benchmarks.limits " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = f"{platform.node()}, {os.cpu_count()} cores, {platform.python_version()}, {platform.platform()}"
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        machine += f", {mem:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    machine += f"; this run at niceness {os.nice(0)}"
    load_start = _load()
    rows = []
    for name, cap_name, cap, function, under, over, note in CASES:
        if opts.only and name not in opts.only:
            continue
        for side, args in (("under", under), ("over", over)):
            if args is None:
                continue
            row = {"row": name, "side": side, "cap": cap_name, "cap_value": cap, "note": note,
                   "args": json.dumps(list(args))}
            row.update(_run(_command(function, args), min(opts.timeout, ROW_TIMEOUT.get(name, opts.timeout))))
            row["load_after"] = _load()
            rows.append(row)
            print(json.dumps(row), flush=True)
    for path in Path(tempfile.gettempdir()).glob("servopt_limits_*"):
        path.unlink()
    load_end = _load()
    if opts.out:
        earlier: list[str] = []
        if opts.merge:
            rows, earlier = _merged(Path(opts.out), rows)
        _write(Path(opts.out), rows, command, machine, load_start, load_end, earlier)


FIELDS = ["row", "side", "cap", "cap_value", "size", "outcome", "wall_s", "call_s", "peak_rss_mb",
          "imports_rss_mb", "phases", "load_after", "note", "args", "message"]


def _merged(out: Path, rows: list[dict]) -> tuple[list[dict], list[str]]:
    """``rows`` (this run's) with the rows of ``out/limits.csv`` whose row names this run did
    not run, in ``CASES`` order, and the header lines of the run(s) those came from (from
    ``out/limits.md``), each marked as an earlier run's."""
    new = {r["row"] for r in rows}
    kept = []
    if (out / "limits.csv").exists():
        with open(out / "limits.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r["row"] in new:
                    continue
                r["cap_value"] = int(r["cap_value"])
                r["peak_rss_mb"] = int(r["peak_rss_mb"])
                r["phases"] = json.loads(r["phases"] or "{}")
                if r["size"] != "":
                    r["size"] = int(r["size"])
                else:
                    del r["size"]
                kept.append({k: v for k, v in r.items() if v != "" or k in ("call_s",)})
    earlier = []
    if kept and (out / "limits.md").exists():
        for line in (out / "limits.md").read_text().splitlines():
            if not line.strip():
                break  # the header ends at the first blank line
            earlier.append(line if line.startswith("Earlier run") else f"Earlier run (the rows "
                           f"not run above): {line}")
    order = {c[0]: k for k, c in enumerate(CASES)}
    merged = sorted(kept + rows, key=lambda r: (order.get(r["row"], len(order)),
                                                 r["side"] != "under"))
    return merged, earlier


def _write(out: Path, rows: list[dict], command: str, machine: str, load_start: str, load_end: str,
           earlier: list[str] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "limits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "phases": json.dumps(r.get("phases", {}))})
    lines = [f"Command: `{command}` (one run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             f"Machine: {machine} (shared with other jobs)",
             f"Load average (1, 5, 15 min): {load_start} at start, {load_end} at end",
             *(earlier or []),
             "",
             "Peak RSS: the child process's (os.wait4 ru_maxrss), interpreter and imports included "
             "(compare the over rows with `baseline`); wall: the child's; call: the row's function "
             "(its imports and small set-up included); phases: each step alone (in an over row, the "
             "refused call). `size` is the capped quantity of the input (over rows: the arguments).",
             "",
             "| row | side | cap | size | outcome | wall s | call s | peak RSS MB | phases (s) | load after |"
             "",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = r.get("size")
        size = "args " + r["args"] if size is None else f"{size:,}"
        lines.append(
            f"| {r['row']} | {r['side']} | {r['cap']} = {r['cap_value']:,} | "
            f"{size} | {r.get('outcome', '')} | {r['wall_s']} | "
            f"{r.get('call_s', '')} | {r['peak_rss_mb']:,} | "
            f"{', '.join(f'{k} {v}' for k, v in r.get('phases', {}).items())} | {r['load_after']} |")
    lines += ["", "Refusals (the over rows' messages):", ""]
    lines += [f"- {r['row']}: {r['message']}" for r in rows if r.get("message")]
    lines += ["", "Notes per row:", ""]
    lines += [f"- {name}: {note}" for name, _, _, _, _, _, note in CASES
              if any(r["row"] == name for r in rows)]
    (out / "limits.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
