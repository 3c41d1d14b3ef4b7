"""Benchmark scripts name the servopt their results md was made with, refuse to run on another
checkout's servopt, and create the folder given as --out before they work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import servopt
from servopt.benchmarks import batch_scheduling_large_offline, report

PACKAGE = Path(servopt.__file__).resolve().parent
BENCHMARKS = Path(batch_scheduling_large_offline.__file__).resolve().parent


def _head() -> str:
    """The commit of the checkout the tests import servopt from (git asked directly)."""
    done = subprocess.run(["git", "-C", str(PACKAGE), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0 or not (PACKAGE.parent / ".git").exists():
        pytest.skip("servopt is not imported from a git checkout here")
    return done.stdout.strip()


def test_write_md_puts_the_checkout_under_the_title(tmp_path: Path) -> None:
    head = _head()
    path = report.write_md(tmp_path / "a" / "b" / "r.md", "# Title\n\nBody line.\n")
    lines = path.read_text().splitlines()
    assert lines[0] == "# Title" and lines[1] == "" and lines[3] == "" and lines[4] == "Body line."
    state = r"\((clean|dirty: \d+ modified, \d+ untracked)\)"
    assert re.fullmatch(rf"servopt {head} {state}", lines[2])  # the commit, not a scratch folder


def test_require_checkout_accepts_its_own_script() -> None:
    report.require_checkout(BENCHMARKS / "batch_scheduling_large_offline.py")  # no exit


def test_require_checkout_refuses_a_script_of_another_checkout(tmp_path: Path) -> None:
    other = tmp_path / "other" / "benchmarks" / "batch_scheduling_large_offline.py"
    other.parent.mkdir(parents=True)
    shutil.copy(BENCHMARKS / "batch_scheduling_large_offline.py", other)
    with pytest.raises(SystemExit, match="not from this checkout"):
        report.require_checkout(other)


def test_script_run_from_another_checkout_stops_before_working(tmp_path: Path) -> None:
    """``python other/benchmarks/X.py``: sys.path[0] is other/benchmarks, so servopt comes from
    elsewhere (here: the servopt these tests import, put on PYTHONPATH); the old script ran that
    code and wrote its figures."""
    other = tmp_path / "other" / "benchmarks" / "batch_scheduling_large_offline.py"
    other.parent.mkdir(parents=True)
    shutil.copy(BENCHMARKS / "batch_scheduling_large_offline.py", other)
    out = tmp_path / "out" / "r.md"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    done = subprocess.run([sys.executable, str(other), "--cases", "20:0", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
                          check=False)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and "not from this checkout" in message[0]
    assert str(tmp_path / "other") in message[0] and str(PACKAGE) in message[0]
    assert not out.parent.exists()


def test_every_script_checks_its_checkout() -> None:
    missing = [p.name for p in sorted(BENCHMARKS.glob("*.py"))
               if 'if __name__ == "__main__":' in (text := p.read_text())
               and 'if __name__ == "__main__":\n    require_checkout(__file__)' not in text]
    assert missing == []


def test_out_folder_is_created(tmp_path: Path) -> None:
    """--out in a folder that does not exist (the old script computed, then died on writing)."""
    out = tmp_path / "new" / "sub" / "large.md"
    batch_scheduling_large_offline.main(["--cases", "20:0", "--out", str(out)])
    assert out.with_suffix(".csv").is_file()
    assert out.read_text().splitlines()[2].startswith("servopt ")
