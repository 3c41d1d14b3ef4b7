"""The bench cache checks an entry file's size (and that it is a regular file) before reading it:
an entry above :data:`runner.MAX_ENTRY_BYTES`, which no row the runner writes comes near, is a
bad entry (recomputed, one warning line naming the file), never read into memory whole. Before,
the whole file was read and parsed first, however large."""

from __future__ import annotations

import builtins
import io
import json
import os
import threading
from pathlib import Path

import pytest

from servopt.benchmarks import Case, run
from servopt.benchmarks import runner as runner_mod

import toy_decision  # noqa: F401  (registers the toy decision)
from toy_decision import make_instance


def _case():
    return Case(name="toy_cache_size_case", decision="toy_production", grid=({"products": 3},),
                seeds=(0,), make_instance=make_instance, methods=("greedy", "exact"))


def _entry(cache: Path, method: str) -> Path:
    for path in sorted(cache.glob("*.json")):
        if json.loads(path.read_text())["method"] == method:
            return path
    raise AssertionError(method)


def _pad_to(path: Path, size: int) -> None:
    """The entry's own valid JSON followed by spaces to ``size`` bytes: still the same row to a
    JSON parser (trailing white space is allowed), so only the size makes it a bad entry."""
    text = path.read_text()
    path.write_text(text + " " * (size - len(text.encode())))
    assert path.stat().st_size == size
    assert json.loads(path.read_text())["method"] == "greedy"


def test_an_entry_above_the_cap_is_recomputed_with_one_warning(tmp_path, capsys, computed_units):
    case = _case()
    clean = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    path = _entry(tmp_path, "greedy")
    size = runner_mod.MAX_ENTRY_BYTES + 1
    _pad_to(path, size)
    capsys.readouterr()
    computed_units.clear()
    again = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"servopt bench: ignoring cache entry {str(path)!r} ({size} bytes, more than "
                   f"any entry holds (at most {runner_mod.MAX_ENTRY_BYTES})); recomputing it"]
    assert [unit[3] for unit in computed_units] == ["greedy"]  # only that entry was a miss
    assert list(again["cost"]) == list(clean["cost"])
    # overwritten with the recomputed row, of its real size: read without a warning next time
    assert path.stat().st_size < 10_000
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert capsys.readouterr().err == ""


def test_an_entry_at_the_cap_is_still_read(tmp_path, capsys, computed_units):
    case = _case()
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    _pad_to(_entry(tmp_path, "greedy"), runner_mod.MAX_ENTRY_BYTES)
    capsys.readouterr()
    computed_units.clear()
    again = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert capsys.readouterr().err == ""
    assert computed_units == [] and again.attrs["runs_cached"] == again.attrs["runs"]


def test_an_entry_above_the_cap_is_not_opened(tmp_path, capsys, monkeypatch):
    # refused on its stat alone: a sparse entry file of 64 GiB (no disk used) is never opened
    case = _case()
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    path = _entry(tmp_path, "greedy")
    os.truncate(path, 64 * 2**30)
    opened: list[str] = []
    real_open = builtins.open

    def spying_open(file, *args, **kwargs):
        if str(file) == str(path):
            opened.append(str(file))
            raise AssertionError(f"the entry {file} was opened for reading")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spying_open)
    monkeypatch.setattr(io, "open", spying_open)  # (pathlib's read_text opens through io.open)
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert opened == []
    assert f"({64 * 2**30} bytes, more than any entry holds" in capsys.readouterr().err
    assert path.stat().st_size < 10_000  # replaced by the recomputed row


def test_an_entry_that_is_not_a_regular_file_is_not_opened(tmp_path, capsys, computed_units):
    # a FIFO in an entry's place blocked the reader until something wrote to it; the thread
    # below opens it for writing after 5 s so that such a reader ends (and the test fails)
    case = _case()
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    path = _entry(tmp_path, "greedy")
    path.unlink()
    os.mkfifo(path)
    done = threading.Event()

    def unblock() -> None:
        if not done.wait(5.0):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # (no reader waiting)
                pass

    helper = threading.Thread(target=unblock, daemon=True)
    helper.start()
    capsys.readouterr()
    computed_units.clear()
    try:
        run([case], jobs=1, cache_dir=tmp_path, progress=False)
    finally:
        done.set()
        helper.join()
    err = capsys.readouterr().err.splitlines()
    assert err == [f"servopt bench: ignoring cache entry {str(path)!r} (not a regular file); "
                   "recomputing it"]
    assert [unit[3] for unit in computed_units] == ["greedy"]


@pytest.mark.parametrize("method", ["greedy", "exact", runner_mod.BOUND])
def test_the_entries_the_runner_writes_are_far_below_the_cap(tmp_path, method):
    run([_case()], jobs=1, cache_dir=tmp_path, progress=False)
    assert _entry(tmp_path, method).stat().st_size * 100 < runner_mod.MAX_ENTRY_BYTES


def test_an_entry_too_large_to_be_read_back_is_not_written(tmp_path, monkeypatch, capsys):
    """Review R6: a unit whose parameters held a 1.1 MB string was cached, then refused with a
    warning and rewritten on every later run; now it is recomputed silently and never cached."""
    monkeypatch.setattr(runner_mod, "MAX_ENTRY_BYTES", 4096)

    def make(products, tag, seed):
        return make_instance(products=products, seed=seed)

    case = Case(name="big_params", decision="toy_production", seeds=(0,), make_instance=make,
                grid=({"products": 3, "tag": "x" * 5000},), methods=("greedy",))
    first = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    second = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert list(first["cost"]) == list(second["cost"])
    assert not any(tmp_path.rglob("*.json"))  # nothing cached for it
    assert "ignoring cache entry" not in capsys.readouterr().err
