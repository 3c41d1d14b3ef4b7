"""Unattended runs: a killed ``servopt bench`` leaves no worker behind, SIGTERM stops it as Ctrl-C.

A benchmark run's pool workers used to outlive a ``kill -9`` of the parent (re-parented to PID 1,
computing on at 150-180 MB each until killed by hand), and SIGTERM ended the CLI with status 143,
no message and the same orphans. These tests start real processes and kill them.
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

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or sys.platform == "win32",
                                reason="reads the process table from /proc and sends POSIX signals")

TESTS = str(Path(__file__).parent)

BENCH = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import toy_decision
    from servopt import cli
    from servopt.benchmarks import Case, registry

    def slow(instance):
        time.sleep(0.3)
        return toy_decision.greedy(instance)

    toy_decision.POLICIES["slow"] = slow
    registry.register(Case(name="toy_unattended", decision="toy_production",
                           seeds=tuple(range(40)), make_instance=toy_decision.make_instance,
                           methods=("slow",)))
    sys.exit(cli.main(["bench", "--case", "toy_unattended", "--jobs", "2", "--no-plots",
                       "--quiet", "--out", {out!r}]))
    """
)


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] != "Z"  # (a zombie has ended; only its entry is left)


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    """The processes of ``pids`` still running after up to ``seconds`` s (killed if so)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for pid in left:  # do not leak them from the test either
        os.kill(pid, signal.SIGKILL)
    return left


def _start_bench(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[int]]:
    """A ``servopt bench --jobs 2`` in a subprocess, returned once both workers have finished
    units (so they are running), with its cache folder and its worker pids. Its output goes to
    files (``stderr.txt``): an orphaned worker holding a pipe open would hang the test."""
    out = tmp_path / "out"
    with open(tmp_path / "stdout.txt", "w") as stdout, open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", BENCH.format(tests=TESTS, out=str(out))],
                                stdout=stdout, stderr=stderr)
    cache = out / "cache"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(cache.glob("*.json"))) >= 4 and len(_children(proc.pid)) >= 2:
            break
        time.sleep(0.05)
    workers = _children(proc.pid)
    if len(workers) < 2:
        proc.kill()
        proc.wait()
        _wait_gone(workers, 0)
        pytest.fail(f"the bench did not start 2 workers: {workers}\n"
                    f"{(tmp_path / 'stderr.txt').read_text()}")
    return proc, cache, workers


def test_kill_9_of_a_bench_takes_its_pool_workers_with_it(tmp_path):
    proc, _, workers = _start_bench(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _wait_gone(workers, 5.0) == [], "pool workers outlived their killed parent"


def test_sigterm_stops_a_bench_as_ctrl_c_does(tmp_path):
    proc, cache, workers = _start_bench(tmp_path)
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        left = _wait_gone(workers, 5.0)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("servopt: terminated (SIGTERM); finished runs are cached "
                                            "and the next run resumes"), err
    assert "Traceback" not in err
    assert left == [], "pool workers outlived a terminated parent"
    finished = len(list(cache.glob("*.json")))
    assert 4 <= finished < 80, "the run should have stopped part-way with what finished kept"
    assert not list(cache.glob("*.tmp"))


WATCHED = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from servopt.benchmarks import runner

    def child(parent):
        if {poll!r}:
            sys.platform = "other"  # (this child only) as on a system without prctl
        print("CHILD", os.getpid(), runner.die_with_parent(parent), flush=True)
        time.sleep(60)

    p = multiprocessing.get_context("fork").Process(target=child, args=(os.getpid(),))
    p.start()
    p.join()  # (until this process is killed; a child that failed ends the wait)
    """
)


@pytest.mark.parametrize(("poll", "how"), [(False, "pdeathsig"), (True, "poll")])
def test_a_worker_dies_with_its_parent_by_prctl_and_by_polling(poll, how):
    if not poll and not sys.platform.startswith("linux"):
        pytest.skip("prctl(PR_SET_PDEATHSIG) is Linux's")
    proc = subprocess.Popen([sys.executable, "-c", WATCHED.format(poll=poll)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line[:1] == ["CHILD"] and line[2] == how, line
        child = int(line[1])
        assert _alive(child)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    try:
        assert _wait_gone([child], 5.0) == []
    finally:
        proc.stdout.close()


def test_sigterm_ends_a_solve_at_once_as_by_default(tmp_path):
    # closes: SIGTERM was made an interrupt for every command, so a solve through Pyomo waited
    # for HiGHS's next interrupt check (minutes), lost its bound and reported a solver failure;
    # only bench (whose finished runs are worth keeping) stops gracefully on SIGTERM
    started = tmp_path / "started"
    script = ("import pathlib, sys, time\n"
              "from servopt import cli\n"
              "cli.cmd_solve = lambda args: (pathlib.Path(sys.argv[1]).touch(), time.sleep(60))\n"
              "sys.exit(cli.main(['solve', 'anything']))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(started)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert started.exists(), "the solve never started"
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGTERM  # ended by the signal, not by a handler


def test_sigterm_handler_is_only_the_clis_while_it_runs():
    # main() puts SIGTERM back as it found it (a program that calls main() keeps its own)
    from servopt import cli

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("this test process has a SIGTERM handler of its own")
    with cli.sigterm_as_interrupt() as terminated:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # (the handler runs at the next bytecode; the raise ends the sleep)
        assert terminated == [signal.SIGTERM]
        # a second SIGTERM is not waited out: the default action (ending the process) is back
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_handled_by_the_embedding_program_is_left_to_it():
    from servopt import cli

    def own(signum, frame):
        seen.append(signum)

    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, own)
    try:
        with cli.sigterm_as_interrupt() as terminated:
            assert signal.getsignal(signal.SIGTERM) is own
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM] and terminated == []
