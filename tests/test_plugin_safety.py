"""One's own cases and decisions (plug-ins) are cached, checked and reported as safely as the
built-ins: the cache key covers their code, a wrong instance is refused, a non-deterministic
``make_instance`` is caught, a failure says where, and ``servopt bench --plugin`` loads them
(on Dask workers too).

``test_the_readme_plugin_example_runs`` reads README.md from the source tree (a clone or the
unpacked sdist, as README "Tests and CI" says); an installed wheel does not carry it."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
import textwrap
import types
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servopt.benchmarks import caching as caching_bench
from servopt.benchmarks import registry, runner
from servopt.benchmarks.registry import Case
from servopt.cli import main
from servopt.core import InvalidInstanceError
from servopt.core import registry as core_registry
from servopt.core.registry import register_decision, unregister_decision
from servopt.instances import caching

import toy_decision

SMALL = {"requests": 300, "objects": 60}  # a caching instance solved in well under a second


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stem: str, text: str,
            *, load: bool = True) -> types.ModuleType | Path:
    """Write ``tmp_path/<stem>_<tag>.py`` and import it (a fresh name per test); returns the
    module (or, ``load=False``, the path)."""
    path = tmp_path / f"{stem}.py"
    path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    if not load:
        return path
    monkeypatch.delitem(sys.modules, stem, raising=False)
    importlib.invalidate_caches()
    return importlib.import_module(stem)


def _rewrite(module: types.ModuleType, text: str) -> types.ModuleType:
    """Edit a module's file (a different size, so no stale bytecode) and reload it."""
    Path(module.__file__).write_text(textwrap.dedent(text))
    importlib.invalidate_caches()
    return importlib.reload(module)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True)
def _registry_restored(monkeypatch):
    """Cases and plug-ins registered by a test are forgotten after it (a later Dask run would
    otherwise load this test's plug-in files on its workers)."""
    monkeypatch.setattr(registry, "_CASES", dict(registry._CASES))
    monkeypatch.setattr(registry, "_ORIGINS", dict(registry._ORIGINS))
    monkeypatch.setattr(registry, "_PLUGINS", {}, raising=False)  # (absent before --plugin)


# -- 1. the cache key covers the code a case runs ---------------------------------------------

def test_register_decision_refuses_to_replace_a_built_in_layer_silently():
    with pytest.raises(ValueError, match=r"'caching' is a built-in decision.*replace=True"):
        register_decision("caching", benchmarks=types.SimpleNamespace())
    assert core_registry.registered_layers("caching") == {}


def test_an_override_of_a_built_in_layer_is_cached_apart_from_the_plain_run(tmp_path):
    """R16 t18: the override's rows were served to the later plain run (29401 for 14700.5)."""
    case = Case(name="e11_override", decision="caching", grid=(SMALL,), methods=("lru",))
    instance = caching.generate(**SMALL, seed=0)
    plain_cost = caching_bench.evaluate(instance, "lru").cost  # the evaluator, directly

    def doubled(instance, method, **kw):
        out = caching_bench.evaluate(instance, method, **kw)
        out.cost *= 2
        return out

    cache = tmp_path / "cache"
    first = runner.run([case], cache_dir=cache, progress=False)
    assert first.loc[0, "cost"] == pytest.approx(plain_cost)
    register_decision("caching", replace=True, benchmarks=types.SimpleNamespace(
        evaluate=doubled, bound=caching_bench.bound, SENSE="min"))
    try:
        override = runner.run([case], cache_dir=cache, progress=False)
    finally:
        unregister_decision("caching")
    assert override.attrs["runs_cached"] == 0
    assert override.loc[0, "cost"] == pytest.approx(2 * plain_cost)
    again = runner.run([case], cache_dir=cache, progress=False)
    assert again.attrs["runs_cached"] == 2
    assert again.loc[0, "cost"] == pytest.approx(plain_cost)


POLICY = """
import toy_decision

def scaled(instance):
    return toy_decision.greedy(instance) * {factor}

toy_decision.POLICIES["scaled_{tag}"] = scaled
"""


def test_an_edited_plugin_policy_is_recomputed(tmp_path, monkeypatch):
    tag = _tag()
    module = _module(tmp_path, monkeypatch, f"e11pol_{tag}", POLICY.format(factor=0.5, tag=tag))
    try:
        case = Case(name="e11_policy", decision="toy_production",
                    make_instance=toy_decision.make_instance, methods=(f"scaled_{tag}",))
        instance = toy_decision.make_instance(seed=0)
        greedy_profit = float(instance.profit @ toy_decision.greedy(instance))  # by hand
        first = runner.run([case], cache_dir=tmp_path / "cache", progress=False)
        assert first.loc[0, "cost"] == pytest.approx(0.5 * greedy_profit)
        _rewrite(module, POLICY.format(factor=0.25, tag=tag) + "\n# edited\n")
        second = runner.run([case], cache_dir=tmp_path / "cache", progress=False)
        assert second.loc[0, "cost"] == pytest.approx(0.25 * greedy_profit)
        assert second.attrs["runs_cached"] == 0  # (one key per case: its bound too)
    finally:
        toy_decision.POLICIES.pop(f"scaled_{tag}", None)


CASE_MODULE = """
import toy_decision
import {helper}

def make(*, seed):
    return toy_decision.generate(products={helper}.PRODUCTS, seed=seed)

def make_late(*, seed):
    import {late}  # imported inside the function only
    return toy_decision.generate(products={late}.PRODUCTS, seed=seed)

def make_other(*, seed):
    return toy_decision.generate(products=5, seed=seed)
"""


def test_an_edited_helper_module_is_recomputed(tmp_path, monkeypatch):
    """R16: a helper module imported by make_instance's module, edited, was served from cache
    (at module level or inside the function: both are found from the import statements)."""
    tag = _tag()
    helper = _module(tmp_path, monkeypatch, f"e11help_{tag}", "PRODUCTS = 3\n")
    late = _module(tmp_path, monkeypatch, f"e11late_{tag}", "PRODUCTS = 3\n")
    cases = _module(tmp_path, monkeypatch, f"e11cases_{tag}", CASE_MODULE.format(
        helper=helper.__name__, late=late.__name__))
    for make, edited in ((cases.make, helper), (cases.make_late, late)):
        case = Case(name=f"e11_helper_{make.__name__}", decision="toy_production",
                    make_instance=make, methods=("nothing",))
        first = runner.run([case], cache_dir=tmp_path / "cache", progress=False)
        assert first.loc[0, "instance"] == "toy production: 3 products, 2 resources"
        _rewrite(edited, "PRODUCTS = 4  # edited\n")
        second = runner.run([case], cache_dir=tmp_path / "cache", progress=False)
        assert second.attrs["runs_cached"] == 0
        assert second.loc[0, "instance"] == "toy production: 4 products, 2 resources"


def test_another_make_instance_of_the_same_module_is_recomputed(tmp_path, monkeypatch):
    """R16 swapcase: a case swapping make_instance within one module was served the old rows."""
    tag = _tag()
    helper = _module(tmp_path, monkeypatch, f"e11help_{tag}", "PRODUCTS = 3\n")
    cases = _module(tmp_path, monkeypatch, f"e11cases_{tag}", CASE_MODULE.format(
        helper=helper.__name__, late=helper.__name__))
    make_case = Case(name="e11_swap", decision="toy_production", make_instance=cases.make,
                     methods=("nothing",))
    runner.run([make_case], cache_dir=tmp_path / "cache", progress=False)
    other_case = Case(name="e11_swap", decision="toy_production",
                      make_instance=cases.make_other, methods=("nothing",))
    other = runner.run([other_case], cache_dir=tmp_path / "cache", progress=False)
    assert other.attrs["runs_cached"] == 0
    assert other.loc[0, "instance"] == "toy production: 5 products, 2 resources"


def _session_module(name: str, source: str) -> types.ModuleType:
    """A module with no file, as a function typed into a REPL or ``python -c`` has."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(textwrap.dedent(source), "<stdin>", "exec"), module.__dict__)
    return module


def test_a_function_typed_into_a_session_is_keyed_by_its_code(monkeypatch):
    name = f"e11session_{_tag()}"
    monkeypatch.setitem(sys.modules, name, None)
    source = """
    import toy_decision
    PRODUCTS = {n}
    def make(*, seed):
        return toy_decision.generate(products=PRODUCTS, seed=seed)
    """
    keys = []
    for n in (3, 4, 3):
        module = _session_module(name, source.format(n=n))
        keys.append(runner.code_fingerprint(Case(name="e11_session", decision="toy_production",
                                                 make_instance=module.make)))
    assert keys[0] is not None
    assert keys[0] != keys[1]  # other code: another key
    assert keys[0] == keys[2]  # the same code again: the same key


def test_code_with_nothing_to_hash_is_run_but_never_cached(tmp_path, monkeypatch, capsys):
    """A callable object of a class typed into a session: no file, no code object to hash."""
    name = f"e11session_{_tag()}"
    monkeypatch.setitem(sys.modules, name, None)
    module = _session_module(name, """
    import toy_decision
    class Maker:
        def __call__(self, *, seed):
            return toy_decision.generate(seed=seed)
    """)
    case = Case(name="e11_unhashable", decision="toy_production", make_instance=module.Maker(),
                methods=("greedy",))
    assert runner.code_fingerprint(case) is None
    cache = tmp_path / "cache"
    for _ in range(2):
        frame = runner.run([case], cache_dir=cache, progress=False)
        assert frame.attrs["runs_cached"] == 0 and list(frame["status"]) == ["ok"]
        err = capsys.readouterr().err
        assert err.count("servopt bench: case e11_unhashable is not cached:") == 1
    assert not list(cache.glob("*.json"))


# -- 2. make_instance must return an Instance of the case's decision ---------------------------

def _wrong_decision(*, seed):
    from servopt.instances import decode_routing

    return decode_routing.generate(seed=seed, requests=20)


def _a_dict(*, seed):
    return {"not": "an instance"}


@pytest.mark.parametrize(("make", "message"), [
    (_wrong_decision, "case e11_wrong (caching): make_instance returned a decode_routing "
                      "instance, not a caching one"),
    (_a_dict, "case e11_wrong (caching): make_instance returned a dict, not a servopt Instance"),
])
def test_make_instance_of_another_kind_is_refused(make, message):
    case = Case(name="e11_wrong", decision="caching", make_instance=make, methods=("lru",))
    with pytest.raises(InvalidInstanceError, match=re.escape(message)):
        case.instance(0, {})
    frame = runner.run([case], progress=False)
    assert frame.loc[0, "status"] == f"error: InvalidInstanceError: {message}"
    assert np.isnan(frame.loc[0, "cost"])


# -- 3. the bound and each method must have run on one instance --------------------------------

_DRAWS = iter(range(1000, 2000))


def _changing(*, seed):  # a user's bug: another instance on each call for one seed
    return caching.generate(**SMALL, seed=next(_DRAWS))


def test_a_non_deterministic_make_instance_marks_its_rows(tmp_path):
    """R16 ndcase: rows on different instances against one bound were all ``ok``."""
    case = Case(name="e11_nondet", decision="caching", make_instance=_changing,
                methods=("lru", "belady"))
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # (the 2nd from the cache)
        frame = runner.run([case], cache_dir=cache, progress=False)
        assert list(frame["status"].str.startswith("error: instance differs from the bound's")) \
            == [True, True]
        assert "make_instance gave another instance for seed 0" in frame.loc[0, "status"]
        assert frame["gap"].isna().all()
    assert frame.attrs["runs_cached"] == 3


def test_a_deterministic_case_has_one_instance_per_task():
    case = Case(name="e11_det", decision="caching", grid=(SMALL,), methods=("lru", "belady"))
    rows = [runner.run_unit(case, SMALL, 0, m) for m in (runner.BOUND, "lru", "belady")]
    assert {row["instance_hash"] for row in rows} == {caching.generate(**SMALL).content_hash()}
    frame = runner.assemble(rows)
    assert list(frame["status"]) == ["ok", "ok"]


def test_a_cache_entry_without_the_instance_hash_is_recomputed(tmp_path, capsys):
    case = Case(name="e11_old_entry", decision="caching", grid=(SMALL,), methods=("lru",))
    cache = tmp_path / "cache"
    runner.run([case], cache_dir=cache, progress=False)
    for path in cache.glob("*.json"):  # an entry as the previous format wrote it
        row = json.loads(path.read_text())
        del row["instance_hash"], row[runner.CHECKSUM]
        row[runner.CHECKSUM] = runner._digest(row)
        path.write_text(json.dumps(row))
    again = runner.run([case], cache_dir=cache, progress=False)
    assert again.attrs["runs_cached"] == 0
    assert list(again["status"]) == ["ok"]
    assert "missing instance_hash" in capsys.readouterr().err


# -- 4. a failure says where -------------------------------------------------------------------

def _check(x):
    return 1 / x  # the user's failing line


def _parse(x):
    return _check(x)


def _make_failing(*, seed):
    return caching.generate(requests=int(_parse(seed)) or 100, seed=seed)


def test_a_failed_run_keeps_the_users_failing_line():
    """R16 t19: the traceback kept servopt's outer frames and cut the user's line."""
    case = Case(name="e11_tb", decision="caching", make_instance=_make_failing, methods=("lru",))
    row = runner.run_unit(case, {}, 0, "lru")
    assert "return 1 / x  # the user's failing line" in row["traceback"]
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if "# the user's failing line" in text and "return" in text)
    assert row["error_at"] == f"{__file__}:{line}"
    frame = runner.run([case], progress=False)
    entries = frame.attrs["tracebacks"]
    assert {(e["method"], e["error_at"]) for e in entries} == {
        (runner.BOUND, f"{__file__}:{line}"), ("lru", f"{__file__}:{line}")}
    assert "traceback" not in frame.columns  # (the table stays one line a row)


# -- 5, 6. servopt bench --plugin ----------------------------------------------------------------

PLUGIN = """
from servopt.benchmarks.registry import Case, register
from servopt.instances import caching

def make(*, seed, requests=300):
    return caching.generate(requests=requests, objects=60, seed=seed)

def make_failing(*, seed):
    raise ValueError(f"my generator broke on seed {{seed}}")  # line 9

register(Case(name="{name}", decision="caching", make_instance=make, methods=("lru",),
              suites=("e11",)))
register(Case(name="{name}_fails", decision="caching", make_instance=make_failing,
              methods=("lru",), suites=("e11fail",)))
"""


def test_bench_plugin_by_path_runs_and_is_reported(tmp_path, monkeypatch, capsys):
    name = f"e11_plug_{_tag()}"
    path = _module(tmp_path, monkeypatch, f"e11plugin_{_tag()}", PLUGIN.format(name=name),
                   load=False)
    out = tmp_path / "out"
    argv = ["bench", "--plugin", str(path), "--case", name, "--out", str(out), "--no-plots",
            "--quiet", "--jobs", "1", "--name", "r"]
    assert main(argv) == 0
    lru = caching_bench.evaluate(caching.generate(requests=300, objects=60, seed=0), "lru")
    frame = pd.read_csv(out / "r.csv")
    assert len(frame) == 1 and frame.loc[0, "cost"] == pytest.approx(lru.cost)
    report = (out / "r.md").read_text()
    assert f"Regenerate with `servopt bench --plugin {path} --case {name}" in report
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert f"- plug-ins: {path.stem} ({path}, sha256 {digest})" in report
    # a second run reads every row from the cache
    assert main(argv) == 0
    assert "- from the cache: 2 of 2 runs" in (out / "r.md").read_text()


def test_bench_plugin_by_module_name_from_the_working_folder(tmp_path, monkeypatch):
    name = f"e11_plug_{_tag()}"
    stem = f"e11plugin_{_tag()}"
    (tmp_path / f"{stem}.py").write_text(textwrap.dedent(PLUGIN.format(name=name)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert main(["bench", "--plugin", stem, "--case", name, "--out", str(tmp_path / "o"),
                 "--no-plots", "--quiet", "--jobs", "1", "--no-cache"]) == 0


def test_bench_says_where_a_plugin_case_failed(tmp_path, monkeypatch, capsys):
    name = f"e11_plug_{_tag()}"
    path = _module(tmp_path, monkeypatch, f"e11plugin_{_tag()}", PLUGIN.format(name=name),
                   load=False)
    out = tmp_path / "out"
    assert main(["bench", "--plugin", str(path), "--case", f"{name}_fails", "--out", str(out),
                 "--no-plots", "--quiet", "--jobs", "1", "--name", "r"]) == 1
    err = capsys.readouterr().err
    assert f"ValueError: my generator broke on seed 0 (at {path}:9)" in err
    assert f"tracebacks are in {out / 'r-tracebacks.txt'}" in err
    text = (out / "r-tracebacks.txt").read_text()
    assert f'File "{path}", line 9, in make_failing' in text
    assert text.count("== case") == 2  # the bound's and the method's


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path, capsys):
    assert main(["bench", "--plugin", "e11_no_such_module", "--out", str(tmp_path)]) == 2
    assert "--plugin e11_no_such_module: no module named 'e11_no_such_module'" in \
        capsys.readouterr().err
    broken = tmp_path / "e11broken.py"
    broken.write_text("x = 1\nraise RuntimeError('half-written plug-in')\n")
    assert main(["bench", "--plugin", str(broken), "--out", str(tmp_path)]) == 2
    assert f"plug-in {broken} (line 2): RuntimeError: half-written plug-in" in \
        capsys.readouterr().err


def test_an_unknown_case_says_how_to_add_one(tmp_path, capsys):
    assert main(["bench", "--case", "e11_nonexistent", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--case e11_nonexistent: no benchmark case of that name" in err  # (no list repr: R51)
    assert "--plugin MODULE" in err


DECISION_PLUGIN = """
import dataclasses, types
import toy_decision
from servopt.benchmarks.registry import Case, register
from servopt.core.registry import register_decision

DECISION = "{decision}"

@dataclasses.dataclass(frozen=True, repr=False)
class PInstance(toy_decision.ToyInstance):
    decision = DECISION

def generate(*, products=3, seed=0):
    toy = toy_decision.generate(products=products, seed=seed)
    return PInstance(profit=toy.profit, usage=toy.usage, capacity=toy.capacity)

ns = types.SimpleNamespace
register_decision(DECISION,
    instances=ns(Instance=PInstance, generate=generate),
    models=ns(build=toy_decision.build, build_cvxpy=toy_decision.build_cvxpy, LINEAR=True),
    solvers=ns(POLICIES=toy_decision.POLICIES),
    benchmarks=ns(evaluate=toy_decision.evaluate, bound=toy_decision.bound, SENSE="max",
                  COST="profit"))
CASE = register(Case(name="{decision}_case", decision=DECISION, seeds=(0, 1),
                     methods=("greedy", "exact"), suites=("e11dask",)))
"""


def test_a_plugin_decision_runs_on_a_local_dask_cluster(tmp_path, monkeypatch):
    """R16 kcase2: the workers knew nothing of the plug-in ('unknown decision')."""
    pytest.importorskip("dask.distributed")
    decision = f"e11_toy_{_tag()}"
    path = tmp_path / "e11_dask_plugin.py"
    path.write_text(textwrap.dedent(DECISION_PLUGIN.format(decision=decision)))
    tests_dir = str(Path(__file__).parent)  # (the workers import toy_decision by name)
    monkeypatch.setenv("PYTHONPATH", tests_dir)
    monkeypatch.delitem(sys.modules, "e11_dask_plugin", raising=False)
    try:
        registry.load_plugin(str(path))
        (case,) = registry.cases(names=[f"{decision}_case"])
        frame = runner.run([case], jobs=1, scheduler="local", progress=False)
    finally:
        unregister_decision(decision)
    assert list(frame["status"]) == ["ok"] * 4
    for seed in (0, 1):  # the toy decision's evaluator on the same instances, directly
        toy = toy_decision.generate(seed=seed)
        for method in ("greedy", "exact"):
            row = frame[(frame["seed"] == seed) & (frame["method"] == method)].iloc[0]
            assert row["cost"] == pytest.approx(toy_decision.evaluate(toy, method).cost)
        assert row["gap"] == pytest.approx(0, abs=1e-9)  # the exact method meets the LP bound


# -- 7. the README's plug-in example runs --------------------------------------------------------

def test_the_readme_plugin_example_runs(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Adding a decision, case or method", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    example = next(b for b in blocks if b.startswith("# my_cases.py"))
    path = tmp_path / "my_cases.py"
    path.write_text(example)
    monkeypatch.delitem(sys.modules, "my_cases", raising=False)
    # (test_core runs every README block in one namespace, which registers toy_mine too)
    monkeypatch.delitem(registry._CASES, "toy_mine", raising=False)
    monkeypatch.delitem(registry._ORIGINS, "toy_mine", raising=False)
    out = tmp_path / "out"
    assert main(["bench", "--plugin", str(path), "--case", "toy_mine", "--out", str(out),
                 "--no-plots", "--quiet", "--jobs", "1", "--name", "mine"]) == 0
    frame = pd.read_csv(out / "mine.csv")
    assert set(frame["status"]) == {"ok"}
    exact = frame[frame["method"] == "exact"]
    assert np.allclose(exact["gap"], 0, atol=1e-9)  # the LP's optimum meets its own bound
    nothing = frame[frame["method"] == "nothing"]
    assert (nothing["cost"] == 0).all() and np.allclose(nothing["gap"], 1)  # nothing made
