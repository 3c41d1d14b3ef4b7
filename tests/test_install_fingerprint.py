"""The code fingerprint is a function of servopt's code, not of how servopt is installed.

A checkout keeps the layers beside ``servopt/`` (``instances/``, ``models/``, ...); a wheel puts
them all inside ``servopt/`` (pyproject.toml's package-dir mapping). The fingerprint hashed every
file under each package's folder, labelled by the folder it was walked from, so a wheel hashed
each layer twice (once under ``servopt/``) and the results scripts too: a Dask client on a wheel
refused workers on a checkout of the same commit (audit R54 F1).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

from shared import wheel_tree

from servopt.benchmarks import registry, runner

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, pickle, sys
import servopt
from servopt.benchmarks import registry, runner
(case,) = registry.cases(names=[sys.argv[1]])
with open(sys.argv[2], "rb") as file:  # the same case as the checkout sends it to a Dask worker
    sent = pickle.load(file)
print(json.dumps({"init": servopt.__file__, "fingerprint": runner.code_fingerprint(case),
                  "labels": [label for label, _ in runner._source_files(case)],
                  "sent": runner.code_fingerprint(sent), "origin": case.origin_file}))
"""


def test_a_wheel_layout_gives_the_checkout_fingerprint(tmp_path):
    site = tmp_path / "site"
    wheel_tree(site)
    assert (site / "servopt" / "instances" / "caching.py").is_file()
    assert (site / "servopt" / "benchmarks" / "caching_price_scale.py").is_file()  # shipped
    name = "caching_quick"
    (case,) = registry.cases(names=[name])
    sent = tmp_path / "case.pickle"
    sent.write_bytes(pickle.dumps(case))
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, name, str(sent)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    wheel = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(wheel["init"]).resolve() == (site / "servopt" / "__init__.py").resolve()
    assert Path(wheel["origin"]).is_relative_to(site)  # (the wheel's own case module)

    labels = [label for label, _ in runner._source_files(case)]
    # the same modules under the same labels, each once (the old wheel walk: 158 against 64)
    assert wheel["labels"] == labels and len(set(labels)) == len(labels)
    assert wheel["fingerprint"] == runner.code_fingerprint(case)
    # a Dask worker on the wheel given the checkout's case, which names the checkout's case
    # module as the file that built it (on the same machine, a file there too): the same code
    assert case.origin_file == str(ROOT / "benchmarks" / "cases" / f"{name}.py")
    assert wheel["sent"] == wheel["fingerprint"]


def test_the_labels_are_module_paths_and_leave_the_results_scripts_out():
    # the expected set from the checkout's folders by hand: servopt/ itself, then each layer
    # folder (and its subpackages) beside it, each module once, the results scripts (a
    # benchmarks/<name>.py with a __main__ block) left out
    expected = set()
    for label_root, folder in [("servopt", ROOT / "servopt"), ("servopt/instances", ROOT / "instances"),
                               ("servopt/models", ROOT / "models"),
                               ("servopt/solvers", ROOT / "solvers"),
                               ("servopt/benchmarks", ROOT / "benchmarks")]:
        for path in folder.rglob("*.py"):
            if not (path.parent / "__init__.py").is_file():
                continue
            if folder.name == "benchmarks" and path.parent == folder \
                    and 'if __name__ == "__main__":' in path.read_text():
                continue
            expected.add(f"{label_root}/{path.relative_to(folder).as_posix()}")
    found = runner._servopt_files()
    assert set(found) == expected
    assert "servopt/instances/caching.py" in found and "servopt/core/checks.py" in found
    assert "servopt/benchmarks/caching_price_scale.py" not in found
    assert "servopt/benchmarks/cases/caching_quick.py" in found
