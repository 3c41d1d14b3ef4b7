"""The bid-price rules' own CPU time per request (``touch``, no LP solve), before and after a
change of :mod:`servopt.solvers.caching`.

Run: ``python benchmarks/caching_touch_time.py [--before REF] [--repeats R]``. Loads the module
as committed at ``REF`` (``git show``) next to the current one, then alternates the two on the
same stream (multimodal, 1e5 requests, 20,000 objects, skew 0.9, cache 5%, seed 0) and prints the
best of ``R`` CPU times per request. Each rule is driven by a bare loop of ``touch`` calls (every
request a miss: the rule's work, without a cache around it). The rules: ``cost_freq_size`` (no
price), a fixed price that refuses objects, and a rule that logs every request for a warm-up it
does not reach (the cost of keeping the log). Also the cost of the catalogue check alone
(``0 <= o < objects``) and of a log append alone (``timeit``). Prints only; quote one run with
its command (the machine is shared: compare the two columns of the same run, not runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

from servopt.benchmarks.report import require_checkout
from servopt.instances import caching as ci
from servopt.solvers import caching as current


def committed(ref: str) -> ModuleType:
    """``solvers/caching.py`` as committed at ``ref``, imported under another name."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "show", f"{ref}:solvers/caching.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "caching_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("caching_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["caching_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rules(m: ModuleType, n: int) -> dict[str, Any]:
    return {
        "cost_freq_size": lambda: m.CostFreqSize(experts=m.EXPERTS),
        "fixed price 1e-4": lambda: m.BidPrice(price=1e-4, tune=False, priced=False,
                                               experts=m.EXPERTS),
        # before: a share of 2n never ends; after: 2n requests, never reached
        "logging, warm-up not reached": lambda: m.BidPrice(warmup=2 * n, window_cap=None,
                                                           experts=m.EXPERTS),
    }


def touch_seconds(policy: Any, inst: ci.Instance, ids: list[int]) -> float:
    policy.start(inst)
    touch = policy.touch
    cpu = time.process_time()
    for t, o in enumerate(ids):
        touch(t, o, False)
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", default="HEAD", help="git ref of the 'before' module")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    before = committed(args.before)
    inst = ci.generate(requests=100_000, objects=20_000, skew=0.9, cache_share=0.05, seed=0)
    ids = inst.object_id.tolist()
    n = len(ids)
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeats):
        for label, module in (("before", before), ("after", current)):
            for name, make in rules(module, n).items():
                seconds = touch_seconds(make(), inst, ids)
                best[name, label] = min(best.get((name, label), float("inf")), seconds)
    print(f"best of {args.repeats}, CPU us per request, {n:,} requests; before = {args.before}")
    for name in rules(current, n):
        b, a = best[name, "before"], best[name, "after"]
        print(f"  {name:30s} before {1e6 * b / n:6.2f}  after {1e6 * a / n:6.2f}  "
              f"after / before {a / b:.3f}")
    loops = 1_000_000
    check = min(timeit.repeat("0 <= o < objects", "o, objects = 1234, 20000", number=loops,
                              repeat=7)) / loops
    empty = min(timeit.repeat("pass", number=loops, repeat=7)) / loops
    append = min(timeit.repeat("log.append(o)", "o, log = 1234, []", number=loops,
                               repeat=7)) / loops
    print(f"  catalogue check alone: {1e9 * (check - empty):.0f} ns per request; "
          f"log append alone: {1e9 * (append - empty):.0f} ns per request")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
