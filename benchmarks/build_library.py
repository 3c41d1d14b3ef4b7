"""Build the named instance library: ``python -m servopt.benchmarks.build_library``.

Each spec names an instance, its size class, how it is generated (a generator and parameters,
seeded) and the solve that gives its best known objective and bound. Small instances are solved
to proved optimality, medium ones to a stated MIP gap (or exactly, for the LPs), or for a stated
time where that gap is out of reach (``cache_mm_5k``: 30 s), and large ones carry the LP
relaxation bound. A medium bound is at least what a default solve (mip_gap 1e-4) proves in about
30 s: a looser one (``bs_offline_15`` at mip_gap 0.01 recorded 237 where 239 is proved in 7 s)
undersells the instance (``tests/test_library_bounds.py``). Running it rewrites
``instances/library/`` and its manifest; ``servopt library verify`` re-solves each small and
medium instance with the options recorded here (``benchmarks/library.py``: ``check``).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from servopt.benchmarks import library as lib_bench
from servopt.benchmarks.report import require_checkout
from servopt.instances import library

# (name, size, decision, generator, generator params, solve options, how obtained)
SPECS: list[tuple[str, str, str, str, dict[str, Any], dict[str, Any], str]] = [
    ("ep_tiny", "small", "expert_placement", "generate", {"preset": "tiny", "seed": 0},
     {"mip_gap": 0.0}, "placement MILP, HiGHS to proved optimality"),
    ("ep_12x4", "medium", "expert_placement", "generate",
     {"layers": 2, "experts": 12, "gpus_per_node": 4, "slots_per_gpu": 4, "seed": 1},
     {"mip_gap": 1e-4}, "placement MILP, HiGHS to 0.01% gap"),
    ("ep_small_preset", "large", "expert_placement", "generate", {"preset": "small", "seed": 0},
     {"relax": True}, "LP relaxation of the placement MILP (bound only)"),
    ("dr_hindsight_8x2", "small", "decode_routing", "generate_steps",
     {"requests": 8, "workers": 2, "seed": 0}, {"mip_gap": 0.0}, "hindsight IP, HiGHS to proved optimality"),
    ("dr_hindsight_20x3", "medium", "decode_routing", "generate_steps",
     {"requests": 20, "workers": 3, "seed": 0}, {"mip_gap": 1e-3},
     "hindsight IP, HiGHS to 0.1% gap"),
    ("dr_hindsight_200x4", "large", "decode_routing", "generate_steps",
     {"requests": 200, "workers": 4, "seed": 0}, {"relax": True},
     "LP relaxation of the hindsight IP (bound only)"),
    ("bs_offline_10", "small", "batch_scheduling", "generate", {"n": 10, "seed": 0},
     {"mip_gap": 0.0},
     "time-indexed IP, HiGHS to proved optimality"),
    ("bs_offline_15", "medium", "batch_scheduling", "generate", {"n": 15, "seed": 0},
     {"mip_gap": 0.0}, "time-indexed IP, HiGHS to proved optimality"),
    ("bs_offline_100", "large", "batch_scheduling", "generate", {"n": 100, "seed": 0},
     {"relax": True}, "LP relaxation of the time-indexed IP (bound only)"),
    ("cap_conversation", "small", "capacity", "generate", {"requests": 500, "seed": 0}, {},
     "fluid LP (an LP: its optimum is proved)"),
    ("cap_code", "medium", "capacity", "generate",
     {"workload": "code", "requests": 5000, "seed": 0}, {}, "fluid LP"),
    ("cap_conversation_large", "large", "capacity", "generate",
     {"requests": 50000, "seed": 1}, {}, "fluid LP"),
    ("cache_mm_300", "small", "caching", "generate", {"requests": 300, "seed": 0},
     {"mip_gap": 0.0}, "caching IP (flow form, binary keep): the offline optimum, HiGHS to proved "
     "optimality"),
    ("cache_mm_5k", "medium", "caching", "generate", {"requests": 5000, "seed": 0},
     {"time_limit": 30}, "caching IP (flow form, binary keep), HiGHS stopped at 30 s: its "
     "incumbent and proved bound (the interval LP alone gives 134870.5)"),
    ("cache_mm_100k", "large", "caching", "generate", {"requests": 100_000, "seed": 0},
     {"relax": True}, "interval LP (flow form)"),
]


def build(names: list[str] | None = None) -> list[library.Entry]:
    """Generate, solve and record the specs (all, or the named ones); rewrite the manifest."""
    entries = library.read_manifest()
    for name, size, decision, generator, params, solve_kw, obtained in SPECS:
        if names and name not in names:
            continue
        module = importlib.import_module(f"servopt.instances.{decision}")
        make = getattr(module, generator)
        call = f"servopt.instances.{decision}.{generator}(**{params!r})"
        entry = lib_bench.add(name, size, lambda make=make, params=params: make(**params),
                              solve_kw, f"{obtained}; instance: {call}")
        entries[name] = entry
        print(f"{name:24} {size:6} objective={entry.objective} bound={entry.bound} "
              f"({entry.bound_kind}, {entry.wall_s:.1f} s)")
    library.write_manifest(list(entries.values()))
    return list(entries.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these specs (default: all)")
    build(parser.parse_args().names or None)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
