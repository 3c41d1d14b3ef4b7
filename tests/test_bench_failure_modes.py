"""``servopt bench`` when things go wrong mid-run (R39): a Ctrl-C or SIGTERM that a solver
absorbs, a pool worker killed, a cache that cannot be written, a scheduler address that is not
a Dask scheduler."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path

import pytest

from servopt import cli
from servopt.benchmarks import Case, run
from servopt.benchmarks import runner as runner_mod
from servopt.benchmarks.harness import evaluate

import toy_decision


@pytest.fixture
def sigint_raises(monkeypatch):
    """Ctrl-C raises KeyboardInterrupt here even when pytest runs in a background job (which
    inherits SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def absorbs_sigint(instance):
    """A policy whose solver catches Ctrl-C (as servopt's HiGHS wrapper does: it cancels the
    solve and reports ``interrupted``) and goes on with what it has."""
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass
    return toy_decision.nothing(instance)


def absorbs_sigterm(instance):
    """The same with SIGTERM, which ``servopt bench`` raises as a KeyboardInterrupt."""
    try:
        signal.raise_signal(signal.SIGTERM)
    except KeyboardInterrupt:
        pass
    return toy_decision.nothing(instance)


def _toy_case(monkeypatch, method: str, policy) -> Case:
    monkeypatch.setitem(toy_decision.POLICIES, method, policy)
    return Case(name=f"toy_{method}", decision="toy_production", seeds=(0,),
                make_instance=toy_decision.make_instance, methods=("greedy", method))


def _cached(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]


# -- F1: an interrupt a solver absorbed stops the run, and its unit is not cached -----------

def test_a_ctrl_c_absorbed_by_an_in_process_unit_stops_the_run_uncached(
        tmp_path, monkeypatch, sigint_raises):
    case = _toy_case(monkeypatch, "absorbs_sigint", absorbs_sigint)
    with pytest.raises(KeyboardInterrupt, match="absorbs_sigint"):
        run([case], jobs=1, cache_dir=tmp_path, progress=False)
    methods = sorted(row["method"] for row in _cached(tmp_path))
    assert methods == sorted([runner_mod.BOUND, "greedy"])  # what finished before it is kept


def test_a_sigterm_absorbed_by_a_unit_ends_the_command_with_143(tmp_path, monkeypatch, capsys):
    case = _toy_case(monkeypatch, "absorbs_sigterm", absorbs_sigterm)

    def bench(args):
        run([case], jobs=1, cache_dir=tmp_path, progress=False)
        return 0

    with cli.sigterm_as_interrupt() as terminated:
        code = cli._run_command(argparse.Namespace(func=bench), terminated)
    assert code == cli.EXIT_TERMINATED
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert "absorbs_sigterm" not in {row["method"] for row in _cached(tmp_path)}


def test_a_sigterm_the_command_swallowed_still_exits_143(capsys):
    def swallows(args):
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            pass
        return 0

    with cli.sigterm_as_interrupt() as terminated:
        code = cli._run_command(argparse.Namespace(func=swallows), terminated)
    assert code == cli.EXIT_TERMINATED
    assert "terminated (SIGTERM)" in capsys.readouterr().err


# (60 requests: the evaluator's cost is 2429 with the learned price and 2422 with price 0, the
# row the old code cached as ok; at 40 both are 1645 and the test could not tell)
BPS_GRID = ({"n": 60, "arrivals": "poisson", "load": 1.0, "lengths": "azure",
             "max_output": 1000},)


def test_an_interrupted_price_lp_is_not_cached_and_the_rerun_is_the_evaluators_cost(
        tmp_path, monkeypatch):
    """R39 F1's shape: bid_price_stationary's price LP interrupted (status ``interrupted``, as
    ``_run_interruptible`` reports a Ctrl-C) priced the rule at 0, and the bench cached that
    cost as ok. Now the run stops, nothing of that unit is cached, and the clean rerun's cost
    is the evaluator's."""
    from servopt.solvers import batch_scheduling as rules

    case = Case(name="e34_bps", decision="batch_scheduling", grid=BPS_GRID, seeds=(0,),
                methods=("bid_price_stationary",))
    real = rules.solve_lp

    def interrupted_when_learning(instance, **kw):
        solution = real(instance, **kw)
        if sys._getframe(1).f_code.co_name != "_learned_or_zero":  # (the bound's LP: solved)
            return solution
        return dataclasses.replace(solution, status="interrupted", prices={})

    monkeypatch.setattr(rules, "solve_lp", interrupted_when_learning)
    with pytest.raises(KeyboardInterrupt):
        run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert [row["method"] for row in _cached(tmp_path)] == [runner_mod.BOUND]

    monkeypatch.setattr(rules, "solve_lp", real)
    frame = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    row = frame[frame["method"] == "bid_price_stationary"].iloc[0]
    expected = evaluate(case.instance(0, BPS_GRID[0]), "bid_price_stationary").cost
    assert row["status"] == "ok" and row["cost"] == expected



def _interrupted_after(real):
    """``real`` (a servopt.solvers.exact solve), its answer relabelled as a Ctrl-C's."""
    def solve(*args, **kw):
        return dataclasses.replace(real(*args, **kw), status="interrupted")
    return solve


def test_an_interrupted_caching_lp_is_an_interrupt_not_a_timeout(monkeypatch):
    from servopt.instances import caching as instances
    from servopt.solvers import caching, exact

    monkeypatch.setattr(exact, "solve", _interrupted_after(exact.solve))
    with pytest.raises(KeyboardInterrupt):  # (was TimeoutError: an error row, the bench went on)
        caching.solve_lp(instances.generate(seed=0), method="pyomo")


def test_an_interrupted_capacity_lp_is_an_interrupt(monkeypatch):
    from servopt.instances import capacity as instances
    from servopt.solvers import capacity, exact

    monkeypatch.setattr(exact, "solve", _interrupted_after(exact.solve))
    with pytest.raises(KeyboardInterrupt):  # (was "solve it again without a time limit")
        capacity.fluid_lp(instances.generate(seed=0))


def test_an_interrupted_placement_milp_is_an_interrupt_in_the_rule_and_the_bound(monkeypatch):
    from servopt.benchmarks import expert_placement as bench
    from servopt.instances import expert_placement as instances
    from servopt.solvers import exact
    from servopt.solvers import expert_placement as placement

    instance = instances.generate(seed=0, slots_per_gpu=2)  # (both solve a layer's MILP)
    monkeypatch.setattr(exact, "solve_model", _interrupted_after(exact.solve_model))
    with pytest.raises(KeyboardInterrupt):  # (was a plan from the cut-short MILP, status ok)
        placement.exact_placement(instance, target_gap=0.0)
    with pytest.raises(KeyboardInterrupt):  # (was a weaker bound, cached as ok)
        bench.bound(instance, time_limit=30)


# -- F3: a pool worker killed mid-unit names the unit, exits 1, keeps what finished ---------

def dies(instance):
    """A unit whose process is killed (the OOM killer, a segfault in a solver's C code)."""
    import os

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_pool_worker_names_its_unit_and_keeps_the_finished_rows(tmp_path, monkeypatch):
    monkeypatch.setitem(toy_decision.POLICIES, "dies", dies)
    case = Case(name="toy_dies", decision="toy_production", seeds=(0, 1, 2),
                make_instance=toy_decision.make_instance, methods=("greedy",))
    dying = Case(name="toy_dies_2", decision="toy_production", seeds=(3,),
                 make_instance=toy_decision.make_instance, methods=("dies",))
    with pytest.raises(runner_mod.UnitKilledError) as caught:
        run([case, dying], jobs=2, cache_dir=tmp_path, progress=False)
    text = str(caught.value)
    assert "case toy_dies_2, method dies, seed 3" in text and "SIGKILL" in text, text
    assert "\n" not in text
    cached = _cached(tmp_path)
    assert all(row["case"] == "toy_dies" or row["method"] == runner_mod.BOUND for row in cached)
    assert not list(Path(tmp_path).glob("*.tmp"))

    def fails(args):
        raise caught.value

    code = cli._run_command(argparse.Namespace(func=fails), [])
    assert code == 1  # the run failed (not 2: bad input or options)


# -- F4: the cache folder is checked up front, and a cache write that fails is not fatal ----

def test_a_cache_folder_that_is_a_file_is_refused_before_any_run(tmp_path, monkeypatch,
                                                                computed_units):
    cache = tmp_path / "cache"
    cache.write_text("")
    case = Case(name="toy_cache", decision="toy_production", seeds=(0,),
                make_instance=toy_decision.make_instance, methods=("greedy",))
    with pytest.raises(ValueError, match=r"cache folder .* is a file"):
        run([case], jobs=1, cache_dir=cache, progress=False)
    assert computed_units == []


def test_a_full_disk_warns_once_and_the_run_finishes_uncached(tmp_path, monkeypatch, capsys):
    import errno
    import os

    real = runner_mod.replace_file
    writes: list[Path] = []

    def fills_up(path, write):  # the first entry fits, then the disk is full
        if writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes.append(path)
        return real(path, write)

    monkeypatch.setattr(runner_mod, "replace_file", fills_up)
    case = Case(name="toy_full", decision="toy_production", seeds=(0, 1, 2),
                make_instance=toy_decision.make_instance, methods=("greedy", "nothing"))
    frame = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert len(frame) == 6 and set(frame["status"]) == {"ok"}
    err = capsys.readouterr().err
    assert err.count("cannot write the cache") == 1 and "ENOSPC" in err, err
    assert len(list(tmp_path.glob("*.json"))) == 1


# -- F2: an address that accepts TCP but is not a Dask scheduler is one line, not a hang -----

@pytest.fixture
def not_dask():
    """Two local servers that are not Dask schedulers: one accepts and never answers (the
    kernel completes the TCP handshake of a listening socket), one answers HTTP 400."""
    import socket
    import threading

    silent, http = socket.socket(), socket.socket()
    for server in (silent, http):
        server.bind(("127.0.0.1", 0))
        server.listen(8)

    def answer() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = http.accept()
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                conn.close()

    threading.Thread(target=answer, daemon=True).start()
    yield {name: f"tcp://127.0.0.1:{server.getsockname()[1]}"
           for name, server in (("silent", silent), ("http", http))}
    silent.close()
    http.close()


def test_a_server_that_accepts_but_never_answers_dask_is_one_line_not_a_hang(not_dask):
    import time

    pytest.importorskip("dask.distributed")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="no Dask scheduler answered within 1 s"):
        runner_mod.connect(not_dask["silent"], wait_s=1)
    assert time.monotonic() - start < 10


def test_a_server_that_answers_http_is_not_called_out_of_memory(not_dask):
    pytest.importorskip("dask.distributed")
    with pytest.raises(RuntimeError, match="answered, but not as a Dask scheduler"):
        runner_mod.connect(not_dask["http"], wait_s=5)


def exits(instance):
    """A unit whose code (or a library it calls) ends its process with os._exit."""
    import os

    os._exit(3)


def test_a_pool_worker_that_exits_names_its_unit_and_the_status(monkeypatch):
    monkeypatch.setitem(toy_decision.POLICIES, "exits", exits)
    case = Case(name="toy_exits", decision="toy_production", seeds=(0,),
                make_instance=toy_decision.make_instance, methods=("exits",))
    with pytest.raises(runner_mod.UnitKilledError,
                       match=r"case toy_exits, method exits, seed 0 ended the worker process "
                             r"that ran it \(exit status 3\)"):
        run([case], jobs=2, progress=False)
