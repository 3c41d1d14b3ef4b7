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

from servopt.benchmarks import run

import toy_decision

# The slow policy and the case live in a module file that both the killed run and the resumed
# one import: the cache keys rows by the source of the code a case runs (a policy swapped for
# another is other code, recomputed), so the resumed run must run the same code, only faster.
SLOW_MODULE = textwrap.dedent(
    """
    import os, time
    import toy_decision
    from servopt.benchmarks import Case

    def slow(instance):
        time.sleep(float(os.environ.get("SERVOPT_TEST_DELAY_S", "0.4")))
        return toy_decision.greedy(instance)

    toy_decision.POLICIES["slow"] = slow

    def case():
        return Case(name="toy_slow", decision="toy_production", seeds=tuple(range(12)),
                    make_instance=toy_decision.make_instance, methods=("slow",))
    """
)

SCRIPT = textwrap.dedent(
    """
    import signal  # Ctrl-C as in a terminal even if this test runs in a background job (which
    signal.signal(signal.SIGINT, signal.default_int_handler)  # inherits SIGINT ignored)
    import sys
    sys.path[:0] = [{tests!r}, {code!r}]
    import toy_slow_policy
    from servopt.benchmarks import run

    frame = run([toy_slow_policy.case()], jobs={jobs}, cache_dir={cache!r}, progress=False)
    print("ROWS", len(frame))
    """
)


def _script(tmp_path: Path, jobs: int) -> str:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "toy_slow_policy.py").write_text(SLOW_MODULE)
    return SCRIPT.format(tests=str(Path(__file__).parent), code=str(code), jobs=jobs,
                         cache=str(tmp_path))


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

    # resume in this process, the same code without the delay, counting what is computed again
    import importlib

    monkeypatch.setenv("SERVOPT_TEST_DELAY_S", "0")
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.delitem(sys.modules, "toy_slow_policy", raising=False)
    monkeypatch.setitem(toy_decision.POLICIES, "slow", toy_decision.greedy)  # (restored after)
    slow_policy = importlib.import_module("toy_slow_policy")
    frame = run([slow_policy.case()], jobs=1, cache_dir=tmp_path, progress=False)
    assert len(frame) == 12
    assert len(computed_units) == 24 - finished


SOLVE_SCRIPT = textwrap.dedent(
    """
    import signal  # Ctrl-C as in a terminal even if this test runs in a background job (which
    signal.signal(signal.SIGINT, signal.default_int_handler)  # inherits SIGINT ignored)
    import os, signal, threading
    from servopt.instances import batch_scheduling as bi
    from servopt.models import batch_scheduling as m
    from servopt.solvers import exact
    model = m.build(bi.generate(40, seed=0))  # an IP HiGHS does not finish in 60 s
    threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    try:
        sol = exact.solve_model(model, time_limit=60, decision="batch_scheduling")
        print("STATUS", sol.status)
    except KeyboardInterrupt:  # Ctrl-C landed in Pyomo's own Python code: also an interrupt
        print("STATUS interrupted (KeyboardInterrupt)")
    """
)


def test_ctrl_c_inside_highs_is_reported_as_interrupted_not_as_an_error():
    # HiGHS through Pyomo reports Ctrl-C as an error; exact notes the signal, so the CLI can
    # exit 130 and the library check stop, instead of calling it a solver failure
    out = subprocess.run([sys.executable, "-c", SOLVE_SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert "STATUS interrupted" in out.stdout, out.stdout + out.stderr
