"""``servopt bench --plugin FILE``: what a plug-in raises (or exits with) while it is imported
is one line naming the plug-in and the user's own line, never servopt's or importlib's
(R17: a missing dependency named neither, a syntax error was "at <frozen importlib>", a refused
register_decision pointed into servopt/core, and sys.exit(3) left servopt silently with 3)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from servopt.cli import main
from servopt.core import registry as core_registry


@pytest.fixture(autouse=True)
def _own_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_plugin`` puts a plug-in's folder first on ``sys.path``: not beyond this test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _write(folder: Path, stem: str, text: str) -> Path:
    """Write ``folder/<stem>_<tag>.py`` (a fresh module name per test); returns its path."""
    path = folder / f"{stem}_{uuid.uuid4().hex[:8]}.py"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _bench(plugin: str, out: Path) -> int:
    return main(["bench", "--plugin", plugin, "--case", "caching_quick", "--out", str(out),
                 "--no-plots", "--quiet"])


def test_a_missing_dependency_names_the_plugin_and_its_line(tmp_path, capsys):
    path = _write(tmp_path, "e14missing", """
        x = 1
        import e14_not_a_module_xyz  # line 2
    """)
    assert _bench(str(path), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert (f"servopt: error: plug-in {path} (line 2): ModuleNotFoundError: No module named "
            "'e14_not_a_module_xyz'") in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing was run


def test_a_syntax_error_is_at_the_plugins_line_not_importlibs(tmp_path, capsys):
    path = _write(tmp_path, "e14syntax", """
        import math

        def f(:
            return math.pi
    """)
    assert _bench(str(path), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"plug-in {path} (line 3): SyntaxError: invalid syntax" in err
    assert "frozen" not in err and "importlib" not in err


def test_a_refused_builtin_decision_points_at_the_plugin_not_servopt(tmp_path, capsys):
    solvers = core_registry.layer_module("caching", "solvers")
    path = _write(tmp_path, "e14override", """
        import types
        from servopt.core.registry import register_decision
        register_decision("caching", solvers=types.SimpleNamespace())  # line 3
    """)
    assert _bench(str(path), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert (f"plug-in {path} (line 3): ValueError: register_decision: 'caching' is a built-in "
            "decision") in err
    assert "pass replace=True" in err
    assert "servopt/core" not in err and " at " not in err
    assert core_registry.layer_module("caching", "solvers") is solvers  # refused: not replaced
    assert core_registry.registered_layers("caching") == {}


def test_sys_exit_in_a_plugin_is_reported_with_servopts_status(tmp_path, capsys):
    path = _write(tmp_path, "e14exits", """
        import sys
        sys.exit(3)
    """)
    assert _bench(str(path), tmp_path / "out") == 2  # not the plug-in's 3, and no SystemExit
    err = capsys.readouterr().err
    assert f"plug-in {path} exited (sys.exit(3)) while being imported, at line 2" in err
    quiet = _write(tmp_path, "e14exitnone", "raise SystemExit\n")
    assert _bench(str(quiet), tmp_path / "out") == 2
    assert f"plug-in {quiet} exited (sys.exit()) while being imported, at line 1" in \
        capsys.readouterr().err


def test_an_error_in_a_function_or_a_helper_module_names_both_lines(tmp_path, capsys,
                                                                    monkeypatch):
    helper = _write(tmp_path, "e14helper", """
        def make():
            return {"a": 1}["b"]  # line 2
    """)
    path = _write(tmp_path, "e14user", f"""
        import {helper.stem}

        def build():
            return {helper.stem}.make()  # line 4

        build()
    """)
    assert _bench(str(path), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"plug-in {path} (line 4): KeyError: 'b' (at {helper}:2)" in err
    # named as a module (from the working folder), it is named so, with its file
    monkeypatch.chdir(tmp_path)
    assert _bench(path.stem, tmp_path / "out") == 2
    assert f"plug-in {path.stem} ({path}, line 4): KeyError: 'b' (at {helper}:2)" in \
        capsys.readouterr().err


def test_a_refused_plugin_option_keeps_its_own_message(tmp_path, capsys):
    missing = tmp_path / "e14_nowhere.py"
    assert _bench(str(missing), tmp_path / "out") == 2
    assert f"servopt: error: --plugin {missing}: no such .py file" in capsys.readouterr().err


def test_a_case_refused_when_built_is_at_the_plugins_line_not_at_generated_code(tmp_path, capsys):
    # before: "... got -1 (at <string>:14)", the dataclass __init__ Python generates
    path = _write(tmp_path, "e14case", """
        from servopt.benchmarks.registry import Case, register
        register(Case(name="e14neg", decision="caching", seeds=(-1,), suites=("e14",)))
    """)
    assert _bench(str(path), tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"servopt: error: plug-in {path} (line 2): InvalidInstanceError: case 'e14neg': "
                   "seeds must be whole numbers >= 0, got -1")
