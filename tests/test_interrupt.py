"""A benchmark run killed mid-way loses only the units in flight; the next run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from servopt.benchmarks import Case, run

import toy_decision

SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import toy_decision
    from servopt.benchmarks import Case, run

    def slow(instance):
        time.sleep(0.4)
        return toy_decision.greedy(instance)

    toy_decision.POLICIES["slow"] = slow
    case = Case(name="toy_slow", decision="toy_production", seeds=tuple(range(12)),
                make_instance=toy_decision.make_instance, methods=("slow",))
    frame = run([case], jobs={jobs}, cache_dir={cache!r}, progress=False)
    print("ROWS", len(frame))
    """
)


def _script(tmp_path: Path, jobs: int) -> str:
    return SCRIPT.format(tests=str(Path(__file__).parent), jobs=jobs, cache=str(tmp_path))


@pytest.mark.parametrize(("jobs", "sig"), [(1, signal.SIGKILL), (2, signal.SIGINT)])
def test_killed_run_resumes_from_cache(tmp_path, monkeypatch, computed_units, jobs, sig):
    proc = subprocess.Popen([sys.executable, "-c", _script(tmp_path, jobs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*.json"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    proc.communicate(timeout=30)
    finished = len(list(tmp_path.glob("*.json")))
    assert 6 <= finished < 24, "the run should have been stopped part-way"
    assert not list(tmp_path.glob("*.tmp")) or sig == signal.SIGKILL

    # resume in this process, counting what is computed again
    monkeypatch.setitem(toy_decision.POLICIES, "slow", toy_decision.greedy)
    case = Case(name="toy_slow", decision="toy_production", seeds=tuple(range(12)),
                make_instance=toy_decision.make_instance, methods=("slow",))
    frame = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert len(frame) == 12
    assert len(computed_units) == 24 - finished
