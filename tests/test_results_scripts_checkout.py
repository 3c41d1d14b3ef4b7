"""The results scripts (``benchmarks/<name>.py`` with a ``__main__`` block) refuse in one line,
naming what they need, outside the root of their source checkout.

A wheel ships them as ``servopt.benchmarks.<name>`` but not ``benchmarks/results``: the old
``require_checkout`` let such a copy through and ``python -m servopt.benchmarks.caching_price_scale``
ended in a FileNotFoundError traceback (audit R54 F2); run from another folder, a checkout's
script did the same.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from shared import wheel_tree

ROOT = Path(__file__).resolve().parents[1]
MAIN = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if MAIN.search(p.read_text()))

# each script run as ``python -m`` would (``--help``: a script that does not refuse prints its
# help and exits 0 before any work), its exit recorded
DRIVER = """
import json, runpy, sys
codes = {}
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    try:
        runpy.run_module(f"servopt.benchmarks.{name}", run_name="__main__", alter_sys=True)
        codes[name] = "ran"
    except SystemExit as exc:
        codes[name] = exc.code if isinstance(exc.code, str) else f"exit {exc.code}"
    except BaseException as exc:
        codes[name] = f"traceback {type(exc).__name__}: {exc}"
print(json.dumps(codes))
"""


def _run(args: list[str], cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, check=False)


def test_a_checkout_script_run_from_elsewhere_refuses_in_one_line(tmp_path):
    assert not (tmp_path / "benchmarks" / "results").exists()
    for args in (["-m", "servopt.benchmarks.caching_price_scale"],
                 [str(ROOT / "benchmarks" / "caching_price_scale.py")]):
        done = _run(args, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("caching_price_scale.py: run it from the root of its source "
                                   f"checkout (cd {ROOT})"), lines[0]
        assert "no benchmarks/results" in lines[0] and done.stdout == ""


def test_an_installed_copy_refuses_in_one_line_wherever_it_is_run(tmp_path):
    package = wheel_tree(tmp_path / "site")
    assert (package / "benchmarks" / "caching_price_scale.py").is_file()
    # (also from a folder that has a benchmarks/results: it is not the installed script's; not
    # the checkout's root, whose servopt/ would come first on sys.path with -m)
    other = tmp_path / "other"
    (other / "benchmarks" / "results").mkdir(parents=True)
    for cwd in (tmp_path, other):
        done = _run(["-m", "servopt.benchmarks.caching_price_scale"], cwd=cwd,
                    pythonpath=tmp_path / "site")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert "need a source checkout of servopt" in lines[0], lines[0]
        assert "run from its root" in lines[0] and str(package) in lines[0]


def test_every_results_script_of_an_installed_copy_refuses(tmp_path):
    assert len(SCRIPTS) >= 40 and "caching_price_scale" in SCRIPTS and "exact_matrix" in SCRIPTS
    wheel_tree(tmp_path / "site")
    done = _run(["-c", DRIVER, *SCRIPTS], cwd=tmp_path, pythonpath=tmp_path / "site")
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = {name: code for name, code in codes.items()
             if "\n" in code or not code.startswith(f"{name}.py: the results scripts need a "
                                                    "source checkout of servopt")}
    assert wrong == {}
    assert not (tmp_path / "site" / "servopt" / "benchmarks" / "results").exists()
