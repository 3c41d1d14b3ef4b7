"""Hostile instance and trace files are refused by name, not read as other numbers: true/false
inside numeric arrays (numpy reads them as 1 and 0), a JSON key given twice (the last won
silently), 2**63 in an int64 array (it wrapped to -2**63 with a RuntimeWarning), -0.0 (shown as
"-0"), and a Mooncake line whose timestamp is out of range or whose fields are text.

The library instances are read where the installed package keeps them (``LIBRARY_DIR``), and a
file that cannot be read there fails its own tests, not the collection of every test (audit R54 F3)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import servopt
from servopt.core import InvalidInstanceError
from servopt.instances import library, traces

SMALL = {"batch_scheduling": "bs_offline_10", "caching": "cache_mm_300", "capacity": "cap_code",
         "decode_routing": "dr_hindsight_8x2", "expert_placement": "ep_tiny"}


def _data(name: str) -> dict:
    paths = sorted(library.LIBRARY_DIR.glob(f"*/{name}.json"))
    if len(paths) != 1:
        raise FileNotFoundError(f"library instance {name}: {len(paths)} files {name}.json in "
                                f"the folders of {library.LIBRARY_DIR}, not one")
    return json.loads(paths[0].read_text())


def _numeric_arrays(value, where=()):
    """(path of keys, array dict) of every {"ndarray": [numbers...]} inside a field."""
    if isinstance(value, dict):
        if "ndarray" in value and value.get("dtype") != "bool" and value["ndarray"]:
            yield where, value
        else:
            for k, v in value.items():
                yield from _numeric_arrays(v, (*where, k))


def _plant(array: dict) -> None:
    cell = array["ndarray"]
    while isinstance(cell[0], list):
        cell = cell[0]
    cell[0] = True


def _planted() -> list:
    """(decision, field, key path) of every numeric array of each SMALL instance, read at
    collection. A file that cannot be read gives one case for its decision, which fails in the
    test with the reading error, so the other tests of the session still run."""
    cases = []
    for decision, name in sorted(SMALL.items()):
        try:
            fields = _data(name)["fields"]
        except (OSError, ValueError, KeyError):
            cases.append(pytest.param(decision, None, (), id=f"{decision}-unreadable"))
            continue
        cases += [pytest.param(decision, field, where, id=f"{decision}-{field}-{'.'.join(where)}")
                  for field, value in fields.items() for where, _ in _numeric_arrays(value)]
    return cases


PLANTED = _planted()


def _get(d, keys):
    for k in keys:
        d = d[k]
    return d


@pytest.mark.parametrize("form", ["ndarray", "plain list"])
@pytest.mark.parametrize(("decision", "field", "where"), PLANTED)
def test_true_inside_a_numeric_array_is_refused(decision, field, where, form):
    data = _data(SMALL[decision])
    holder = data["fields"] if not where else _get(data["fields"], (field, *where[:-1]))
    key = field if not where else where[-1]
    array = data["fields"][field] if not where else holder[key]
    _plant(array)
    if form == "plain list":
        holder[key] = array["ndarray"]
    with pytest.raises(InvalidInstanceError, match=f"field '{field}'.*expected numbers, found "
                                                   "true/false"):
        servopt.load(json.dumps(data))


def test_the_audit_case_true_as_a_prompt_length():
    data = _data("bs_offline_10")
    data["fields"]["prompt_tokens"]["ndarray"][0] = True  # was read as a 1-token prompt
    with pytest.raises(InvalidInstanceError, match="'prompt_tokens': expected numbers, found "
                                                   "true/false"):
        servopt.load(json.dumps(data))


def test_a_key_given_twice_is_refused(tmp_path):
    text = json.dumps(_data("bs_offline_10"))
    assert text.count('"kv_memory": 180') == 1
    path = tmp_path / "twice.json"
    path.write_text(text.replace('"kv_memory": 180', '"kv_memory": 180, "kv_memory": 1000'))
    with pytest.raises(InvalidInstanceError, match=r"twice\.json: the key 'kv_memory' appears "
                                                   "twice"):
        servopt.load(path)
    # an expert-load trace too
    trace = tmp_path / "load.json"
    trace.write_text('{"load_history": [{"logical_expert_load": [[1, 2]]}], '
                     '"load_history": [{"logical_expert_load": [[5, 6]]}]}')
    with pytest.raises(InvalidInstanceError, match=r"load\.json: the key 'load_history' appears"):
        traces.read_expert_load(trace)


def test_two_to_the_63_in_an_int64_array_is_refused_without_a_warning():
    data = _data("bs_offline_10")
    data["fields"]["prompt_tokens"]["ndarray"][0] = 9223372036854775807.0  # is 2**63 as a float
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cast's "invalid value encountered" RuntimeWarning
        with pytest.raises(InvalidInstanceError, match="outside the int64 range"):
            servopt.load(json.dumps(data))
    data["fields"]["prompt_tokens"]["ndarray"][0] = 2**63  # as a JSON integer (uint64 in numpy)
    with pytest.raises(InvalidInstanceError, match="outside the int64 range"):
        servopt.load(json.dumps(data))


def test_minus_zero_is_zero():
    data = _data("cache_mm_300")
    data["fields"]["capacity"] = -0.0
    data["fields"]["miss_cost"]["ndarray"][0] = -0.0
    inst = servopt.load(json.dumps(data))
    assert "capacity 0 tokens" in inst.summary() and "-0" not in inst.summary()
    assert not np.signbit(inst.capacity) and not np.signbit(inst.miss_cost[0])


def _mooncake(tmp_path, lines):
    path = tmp_path / "mooncake.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


GOOD = {"timestamp": 0, "input_length": 100, "output_length": 10}


def test_a_mooncake_timestamp_out_of_range_is_refused(tmp_path):
    path = _mooncake(tmp_path, [GOOD, {**GOOD, "timestamp": 1e300}])
    with pytest.raises(InvalidInstanceError, match=r"line 2: timestamp 1e[+]?300 is not milliseconds"):
        traces.read_mooncake(path)
    frame = traces.read_mooncake(_mooncake(tmp_path, [GOOD, {**GOOD, "timestamp": 2000}]))
    assert list(frame["arrival_s"]) == [0.0, 2.0]  # (milliseconds, read as seconds / 1000)


@pytest.mark.parametrize(("field", "value"), [("input_length", "100"), ("timestamp", "10"),
                                              ("output_length", "7")])
def test_a_mooncake_number_given_as_text_is_refused(tmp_path, field, value):
    path = _mooncake(tmp_path, [GOOD, GOOD, {**GOOD, field: value}])
    with pytest.raises(InvalidInstanceError, match=f"line 3: .*{field}.* must be a number.*got '{value}'"):
        traces.read_mooncake(path)


def _collect(folder: Path) -> subprocess.CompletedProcess:
    """``pytest --collect-only`` of ``folder`` in a fresh interpreter (no project pytest config)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--collect-only", str(folder)], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def test_this_module_collects_outside_the_checkout_and_without_its_library(tmp_path):
    """R54 ran the tests copied beside an installed wheel: this module's collection-time glob of
    ``tests/../instances/library`` found nothing there and stopped the whole session."""
    here = sorted(f"test_hostile_inputs_files.py::test_true_inside_a_numeric_array_is_refused"
                  f"[{case.id}-{form}]" for case in PLANTED for form in ("ndarray", "plain list"))
    assert len(here) == 32  # 16 numeric arrays in the five files (the ids name them), two forms
    copy = tmp_path / "away"
    copy.mkdir()
    shutil.copy(__file__, copy)
    done = _collect(copy)  # the library where the package keeps it: the same cases as here
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(line for line in done.stdout.splitlines() if "numeric_array" in line) == here

    (copy / "conftest.py").write_text(  # a package without its library: these tests fail alone
        "from servopt.instances import library\n"
        f"library.LIBRARY_DIR = library.Path({str(tmp_path / 'empty')!r})\n")
    done = _collect(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(line.split("[")[1] for line in done.stdout.splitlines() if "numeric_array" in line) \
        == sorted(f"{decision}-unreadable-{form}]" for decision in SMALL
                  for form in ("ndarray", "plain list"))
