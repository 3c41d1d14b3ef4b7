"""A killed ``servopt bench --scheduler local`` leaves no Dask worker behind.

The process pool's workers die with their parent by ``runner.die_with_parent`` (PR_SET_PDEATHSIG,
tests/test_unattended.py). The local Dask cluster's workers are not given that guard: they are
spawned by Dask's nannies, which run in the bench process, and each worker process watches a pipe
from it and exits when the pipe closes (``distributed.process.AsyncProcess``), whatever killed the
parent. HiGHS releases the GIL while it solves, so that watch runs during a solve too. These
tests pin that behaviour (a Dask upgrade or a change to how ``runner`` starts the cluster could
lose it) by starting a real bench on a local cluster and killing it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_unattended import _alive, _children, _wait_gone

pytest.importorskip("dask.distributed")
pytestmark = [pytest.mark.skipif(not Path("/proc/self/stat").exists() or sys.platform == "win32",
                                 reason="reads the process table from /proc and sends POSIX signals"),
              pytest.mark.slow]

TESTS = str(Path(__file__).parent)

# a module the spawned Dask workers import by name (from PYTHONPATH) when they unpickle the case:
# it adds the slow policy to the toy decision there as here
TOY = textwrap.dedent(
    """
    import time
    import toy_decision

    def slow(instance):
        time.sleep(0.3)
        return toy_decision.greedy(instance)

    toy_decision.POLICIES["slow"] = slow

    def make_instance(*, seed, products=3):
        return toy_decision.make_instance(seed=seed, products=products)
    """
)

BENCH = textwrap.dedent(
    """
    import sys
    import orphan_toy
    from servopt import cli
    from servopt.benchmarks import Case, registry

    registry.register(Case(name="toy_orphans", decision="toy_production", seeds=tuple(range(60)),
                           make_instance=orphan_toy.make_instance, methods=("slow",)))
    sys.exit(cli.main(["bench", "--case", "toy_orphans", "--scheduler", "local", "--jobs", "2",
                       "--no-plots", "--quiet", "--out", {out!r}]))
    """
)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _start_dask_bench(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[int]]:
    """A ``servopt bench --scheduler local --jobs 2`` in a subprocess, returned once its workers
    have finished units (so they are computing), with its cache folder and every process it
    started (the two Dask workers and multiprocessing's resource tracker)."""
    (tmp_path / "orphan_toy.py").write_text(TOY)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in [str(tmp_path), TESTS, os.environ.get("PYTHONPATH", "")] if p)}
    with open(tmp_path / "stdout.txt", "w") as stdout, open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", BENCH.format(out=str(out))], env=env,
                                stdout=stdout, stderr=stderr)
    cache = out / "cache"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(cache.glob("*.json"))) >= 4:
            break
        time.sleep(0.05)
    started = [p for p in _descendants(proc.pid) if _alive(p)]
    if proc.poll() is not None or len(started) < 2:
        proc.kill()
        proc.wait()
        _wait_gone(started, 0)
        pytest.fail(f"the bench did not get its Dask workers running: {started}\n"
                    f"{(tmp_path / 'stderr.txt').read_text()}")
    return proc, cache, started


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_dask_bench_takes_its_local_workers_with_it(tmp_path, sig):
    proc, cache, started = _start_dask_bench(tmp_path)
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    finally:
        left = _wait_gone(started, 10.0)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 143), err
    assert left == [], f"processes of the Dask run outlived its {sig.name}ed parent: {left}\n{err}"
    assert len(list(cache.glob("*.json"))) < 60, "the run should have been stopped part-way"
