"""Solving with the Pyomo backend from several threads gives what solving one after another
gives, and leaves stdout working.

The expected values are the same solves run serially in the same process first. Before the
Pyomo path's solves took turns (exact.PROCESS_OUTPUT_LOCK) this failed in 4 of 4 runs (the
subprocess hung until the timeout; run outside pytest, the same script exited 1 with its
stdout swallowed, and Pyomo raised 'Captured output ... does not match sys.stdout').
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PYOMO_SCRIPT = textwrap.dedent("""
    import json, os, threading
    import servopt
    from servopt.instances import library
    from servopt.solvers.exact import new_highs

    insts = [library.load(name) for name in ("cache_mm_300", "ep_12x4", "dr_hindsight_8x2")]

    def solve(inst):
        s = servopt.solve(inst, backend="pyomo")
        return [s.status, s.objective, s.bound]

    serial = [solve(inst) for inst in insts]
    rounds = []
    for _ in range(3):
        out = [None] * (len(insts) + 2)
        gate = threading.Barrier(len(out))

        def run(k):
            gate.wait()
            try:
                out[k] = solve(insts[k]) if k < len(insts) else (new_highs(), "made")[1]
            except Exception as exc:
                out[k] = f"{type(exc).__name__}: {exc}"

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(out))]
        [t.start() for t in threads]
        [t.join() for t in threads]
        rounds.append(out)
    os.write(1, (json.dumps({"serial": serial, "rounds": rounds}) + "\\n").encode())
""")


def test_pyomo_backend_in_threads_solves_as_in_series() -> None:
    """The Pyomo path redirects the process's stdout while HiGHS runs; its solves (and
    new_highs's banner silencing) take turns: three threads solving three library instances
    with backend='pyomo' (beside two making matrix-path HiGHS objects) get the serial answers,
    and stdout still works afterwards. In a subprocess: the redirects are process-wide."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.run([sys.executable, "-c", PYOMO_SCRIPT], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"stdout lost: {proc.stdout[-500:]!r} {proc.stderr[-1500:]!r}"
    got = json.loads(lines[-1])
    expected = got["serial"] + ["made", "made"]
    assert all(row[0] == "optimal" for row in got["serial"])
    for row in got["rounds"]:
        assert row == expected
    assert "Exception in thread" not in proc.stderr, proc.stderr[-2000:]
