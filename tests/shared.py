"""Helpers shared by several test files (not tests themselves)."""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servopt.solvers import batch_scheduling as rules
from servopt.solvers import exact


def marked_line(path: str | Path, tag: str) -> tuple[int, str]:
    """The number and code of the line of ``path`` that ends with the marker comment
    ``# writes: <tag>`` (the code as an error message quotes it: the whole line, stripped)."""
    lines = Path(path).read_text().splitlines()
    found = [(k + 1, text.strip()) for k, text in enumerate(lines)
             if text.rstrip().endswith(f"# writes: {tag}")]
    assert len(found) == 1, found
    return found[0]


def small_instance(decision: str, *, cache_requests: int = 50) -> Any:
    """A built-in decision's instance small enough to run every method on in a second."""
    gen = importlib.import_module(f"servopt.instances.{decision}")
    return {
        "expert_placement": lambda: gen.generate(windows=2, layers=1, experts=8, nodes=1,
                                                 gpus_per_node=4, slots_per_gpu=3, seed=0),
        "batch_scheduling": lambda: gen.generate(8, seed=0),
        "caching": lambda: gen.generate(requests=cache_requests, objects=10, seed=0),
        "capacity": lambda: gen.generate(requests=200, seed=0),
        "decode_routing": lambda: gen.generate_steps(requests=6, workers=2),
    }[decision]()


def toy_cache_case(name: str) -> Any:
    """A registered-case shape for results-cache tests: the toy decision, 3 products, one seed."""
    from servopt.benchmarks import Case

    import toy_decision

    return Case(name=name, decision="toy_production", grid=({"products": 3},), seeds=(0,),
                make_instance=toy_decision.make_instance, methods=("greedy", "exact"))


def cache_entry(cache: Path, method: str) -> tuple[Path, dict]:
    """The results-cache file of ``method``'s row in the folder ``cache`` (the first by name), and
    the row."""
    for path in sorted(cache.glob("*.json")):
        row = json.loads(path.read_text())
        if row["method"] == method:
            return path, row
    raise AssertionError(method)


Replay = rules.Planned  # (tests/ name for it)


def in_threads(work: list[Any], run: Any) -> list[Any]:
    """``run(item)`` for every item, each in its own thread, started together; an exception comes
    back as its text in place of the result (in a thread it would otherwise only be printed)."""
    out: list[Any] = [None] * len(work)
    gate = threading.Barrier(len(work))

    def target(k: int) -> None:
        gate.wait()
        try:
            out[k] = run(work[k])
        except Exception as exc:  # compared as a value by the tests
            out[k] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=target, args=(k,)) for k in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


@contextlib.contextmanager
def output_lock_held_elsewhere(seconds: float) -> Iterator[None]:
    """Another thread's Pyomo or CVXPY solve, simulated by a thread holding the lock such a solve
    holds, for at most ``seconds`` (released when the block ends)."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with exact.PROCESS_OUTPUT_LOCK:
            taken.set()
            done.wait(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(10)
    try:
        yield
    finally:
        done.set()
        holder.join()


def wheel_tree(site: Path) -> Path:
    """servopt's Python files laid out under ``site`` as a wheel installs them: each package of
    pyproject.toml's list in the folder its dotted name gives, from the folder package-dir maps
    it to (setuptools' rule: a package not in the mapping sits in its parent's folder; a wheel
    takes a package's own modules, no subfolder, and no benchmarks/results). Returns
    ``site / "servopt"``."""
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    for package in config["packages"]:
        parent, name = package, []
        while parent not in mapping:
            parent, _, last = parent.rpartition(".")
            name.insert(0, last)
        target = site.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for path in root.joinpath(mapping[parent], *name).glob("*.py"):
            shutil.copy2(path, target / path.name)
    return site / "servopt"
