"""Time ``read_mooncake`` on a long Mooncake trace: the shared ``mooncake_synthetic.jsonl``
repeated (each copy's timestamps shifted past the previous one's) to ``--lines`` lines, written
once to ``/tmp``. Each run is a fresh process; runs of the code at ``--before`` (that commit's
``instances/traces.py``, as ``git show`` gives it) alternate with runs of the working tree's, and
every run prints a digest of the frame read, so the two can be checked to give the same result.

    python benchmarks/traces_speed.py --lines 1000000 --repeat 3 --before e002680

Prints wall and CPU seconds and the peak resident memory of each run (one machine, shared:
quote the runs as measured, with the command).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from servopt.benchmarks.report import require_checkout

RUN = r"""
import hashlib, importlib.util, resource, sys, time
from itertools import chain
import numpy as np
source, path = sys.argv[1], sys.argv[2]
if source == "current":
    from servopt.instances import traces
else:
    spec = importlib.util.spec_from_file_location("traces_before", source)
    traces = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(traces)
wall, cpu = time.perf_counter(), time.process_time()
frame = traces.read_mooncake(path)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
digest = hashlib.sha256()
for column in ("arrival_s", "prompt_tokens", "output_tokens"):
    digest.update(frame[column].to_numpy().tobytes())
blocks = frame["block_ids"]
digest.update(np.fromiter(map(len, blocks), dtype=np.int64, count=len(blocks)).tobytes())
digest.update(np.fromiter(chain.from_iterable(blocks), dtype=np.int64).tobytes())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"{len(frame)} {wall:.2f} {cpu:.2f} {peak:.2f} {digest.hexdigest()[:16]}")
"""


def make_trace(lines: int) -> Path:
    """The shared Mooncake trace repeated to ``lines`` lines in /tmp (kept for later runs)."""
    from servopt.instances.traces import shared_trace

    source = shared_trace("mooncake_synthetic.jsonl")
    if source is None:
        raise SystemExit("mooncake_synthetic.jsonl is needed (../shared/traces or SERVOPT_TRACES)")
    target = Path(tempfile.gettempdir()) / f"servopt_mooncake_{lines}.jsonl"
    if target.exists():
        return target
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    span = max(r["timestamp"] for r in records) + 1000  # ms between copies
    partial = target.with_suffix(".partial")
    with open(partial, "w") as out:
        for k in range(lines):
            copy, i = divmod(k, len(records))
            out.write(json.dumps({**records[i], "timestamp": records[i]["timestamp"] + copy * span}) + "\n")
    partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", help="a commit whose instances/traces.py is timed too")
    args = parser.parse_args()
    trace = make_trace(args.lines)
    sources = {"current": "current"}
    if args.before:
        root = Path(__file__).resolve().parents[1]
        text = subprocess.run(["git", "show", f"{args.before}:instances/traces.py"], cwd=root,
                              check=True, capture_output=True, text=True).stdout
        before = Path(tempfile.gettempdir()) / f"servopt_traces_{args.before}.py"
        before.write_text(text)
        sources = {f"before ({args.before})": str(before), "current": "current"}
    print(f"{trace} ({trace.stat().st_size / 2**20:.0f} MiB)")
    print(f"{'code':22} {'rows':>8} {'wall s':>7} {'CPU s':>6} {'peak GiB':>8}  frame digest")
    for _ in range(args.repeat):
        for label, source in sources.items():
            out = subprocess.run([sys.executable, "-c", RUN, source, str(trace)], check=True,
                                 capture_output=True, text=True).stdout.split()
            rows, wall, cpu, peak, digest = out
            print(f"{label:22} {rows:>8} {wall:>7} {cpu:>6} {peak:>8}  {digest}", flush=True)


if __name__ == "__main__":
    require_checkout(__file__)
    main()
