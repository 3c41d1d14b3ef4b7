"""The bench cache key covers one's own code in the layouts R17 found it missed: a helper in a
namespace package, a package's own __init__ (``from . import NAME``), a module reached through a
symlink with relative imports, a plug-in installed where third-party packages live, and a
policy object with a ``func`` attribute (taken for a functools.partial: a traceback)."""
from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from servopt.benchmarks import runner
from servopt.benchmarks.registry import Case

import toy_decision  # noqa: F401  (registers the toy decision)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    top = name.split(".")[0]
    for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    return importlib.import_module(name)


def _case(module) -> Case:
    return Case(name=f"layout_{uuid.uuid4().hex[:6]}", decision="toy_production",
                make_instance=module.make, methods=("greedy",))


CASES_TEXT = """
    import toy_decision
    {imports}

    def make(*, seed):
        return toy_decision.generate(products={expr}, seed=seed)
"""


def _edited_key_differs(tmp_path, monkeypatch, module_name, helper: Path, after: str):
    module = _import(tmp_path, monkeypatch, module_name)
    first = runner.code_fingerprint(_case(module))
    _write(helper, after)  # (another size: no stale bytecode)
    assert runner.code_fingerprint(_case(module)) != first, f"{helper.name} is not in the key"


def test_a_helper_in_a_namespace_package_is_keyed(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:6]
    helper = tmp_path / f"ns_{tag}" / "scale.py"  # (a folder without __init__.py)
    _write(helper, "FACTOR = 4\n")
    _write(tmp_path / f"cases_{tag}.py", CASES_TEXT.format(
        imports=f"from ns_{tag} import scale", expr="scale.FACTOR"))
    _edited_key_differs(tmp_path, monkeypatch, f"cases_{tag}", helper, "FACTOR = 7  # edited\n")


def test_a_packages_own_init_is_keyed(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:6]
    init = tmp_path / f"cfg_{tag}" / "__init__.py"
    _write(init, "PRODUCTS = 4\n")
    _write(tmp_path / f"cfg_{tag}" / "cases.py", CASES_TEXT.format(
        imports="from . import PRODUCTS", expr="PRODUCTS"))
    _edited_key_differs(tmp_path, monkeypatch, f"cfg_{tag}.cases", init, "PRODUCTS = 9  # edited\n")


def test_a_symlinked_module_with_relative_imports_is_keyed(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:6]
    package = tmp_path / f"pkg_{tag}"
    _write(package / "__init__.py", "")
    helper = package / "helper.py"
    _write(helper, "N = 4\n")
    _write(tmp_path / "shared_code" / "cases_impl.py", CASES_TEXT.format(
        imports="from . import helper", expr="helper.N"))
    (package / "cases.py").symlink_to(tmp_path / "shared_code" / "cases_impl.py")
    _edited_key_differs(tmp_path, monkeypatch, f"pkg_{tag}.cases", helper, "N = 9  # edited\n")


def test_a_plugin_installed_among_third_party_packages_is_keyed(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:6]
    plugin = tmp_path / f"sp_cases_{tag}.py"
    _write(plugin, CASES_TEXT.format(imports="N = 4", expr="N"))
    outside = runner._outside_folders()  # (the real ones too: else the walk crawls the stdlib)
    monkeypatch.setattr(runner, "_outside_folders", lambda: (*outside, tmp_path.resolve()))
    _edited_key_differs(tmp_path, monkeypatch, f"sp_cases_{tag}", plugin,
                        CASES_TEXT.format(imports="N = 9  # edited", expr="N"))


def test_a_policy_object_with_a_func_attribute_is_not_taken_for_a_partial(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:6]
    _write(tmp_path / f"wrap_{tag}.py", """
        import toy_decision

        class Policy:
            def __init__(self, func):
                self.func = func

            def __call__(self, instance):
                return self.func(instance)

        def make(*, seed):
            return toy_decision.generate(seed=seed)

        WRAPPED = Policy(toy_decision.greedy)
    """)
    module = _import(tmp_path, monkeypatch, f"wrap_{tag}")
    case = Case(name=f"wrap_{tag}", decision="toy_production", make_instance=module.WRAPPED,
                methods=("greedy",))
    assert runner.code_fingerprint(case) is not None  # (was AttributeError: no attribute 'args')


def test_a_partial_is_keyed_by_its_arguments_content_not_their_repr(tmp_path, monkeypatch):
    # R19: numpy shortens the repr of an array past 1,000 elements: two arrays that differ at
    # index 1000 had the same key, and the second run was served the first one's rows
    import functools

    import numpy as np

    tag = uuid.uuid4().hex[:6]
    _write(tmp_path / f"part_{tag}.py", """
        import toy_decision

        def make(*, seed, weights):
            return toy_decision.generate(products=4 + int(weights.sum()) % 3, seed=seed)
    """)
    module = _import(tmp_path, monkeypatch, f"part_{tag}")
    first = np.arange(2000.0)
    second = first.copy()
    second[1000] += 1.0
    keys = [runner.code_fingerprint(Case(name=f"part_{tag}", decision="toy_production",
                                         make_instance=functools.partial(module.make, weights=w),
                                         methods=("greedy",)))
            for w in (first, second, first.copy())]
    assert keys[0] != keys[1] and keys[0] == keys[2]


def test_the_runner_itself_is_in_the_key():
    # R19: _results_script took runner.py, whose own source names '__name__ == "__main__"',
    # for a results script, and left it out of every key
    from servopt.benchmarks import registry

    case = registry.cases(suite="quick")[0]
    files = [str(path) for _, path in runner._source_files(case)]
    assert any(path.endswith("benchmarks/runner.py") for path in files)
    assert any(path.endswith("benchmarks/harness.py") for path in files)


def test_a_lazily_imported_module_is_not_loaded_by_the_key(tmp_path, monkeypatch):
    # R19: reading __file__ of every module in sys.modules loaded a LazyLoader module, and its
    # missing dependency stopped servopt bench before anything ran
    import importlib.util

    tag = uuid.uuid4().hex[:6]
    _write(tmp_path / f"optional_{tag}.py", f"import not_installed_dep_{tag}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.find_spec(f"optional_{tag}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    lazy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, f"optional_{tag}", lazy)
    loader.exec_module(lazy)
    _write(tmp_path / f"cases_{tag}.py", CASES_TEXT.format(imports="", expr="4"))
    module = _import(tmp_path, monkeypatch, f"cases_{tag}")
    assert runner.code_fingerprint(_case(module)) is not None


def test_a_relative_import_past_the_top_level_is_not_a_traceback(tmp_path, monkeypatch):
    # R19: `from ........ import helper` in a function never run (legal Python) made _resolve
    # index past the file's parents: IndexError out of servopt bench
    tag = uuid.uuid4().hex[:6]
    _write(tmp_path / f"deep_{tag}.py", """
        import toy_decision

        def make(*, seed):
            if seed < 0:
                from ........ import helper  # noqa: F401
            return toy_decision.generate(seed=seed)
    """)
    module = _import(tmp_path, monkeypatch, f"deep_{tag}")
    assert runner.code_fingerprint(_case(module)) is not None
