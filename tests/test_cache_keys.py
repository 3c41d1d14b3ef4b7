"""A cached benchmark row is served only by the same code and the same data: a fix in a module
outside the decision's own (a checker) and a rewritten instance file each recompute it."""

from __future__ import annotations

import numpy as np

import servopt
from servopt.benchmarks import Case, run
from servopt.benchmarks import runner as runner_mod
from servopt.instances import batch_scheduling as bs

FILE_CASE_PATH: list = []  # the instance file the case below reads (set by the test)


def _from_file(seed: int) -> bs.Instance:
    return servopt.load(FILE_CASE_PATH[0])


def _instance(outputs: list[int]) -> bs.Instance:
    return bs.Instance(kv_memory=40, arrival=np.zeros(len(outputs), dtype=np.int64),
                       prompt_tokens=np.full(len(outputs), 5), output_tokens=outputs)


def test_a_rewritten_instance_file_is_recomputed(tmp_path):
    path = tmp_path / "inst.json"
    FILE_CASE_PATH[:] = [path]
    case = Case(name="from_file", decision="batch_scheduling", make_instance=_from_file,
                methods=("fcfs",), seeds=(0,))
    # FCFS on one request at round 0: its latency is its output tokens (hand figure)
    _instance([3]).to_json(path)
    first = run([case], jobs=1, cache_dir=tmp_path / "cache", progress=False)
    assert first.loc[0, "cost"] == 3
    _instance([9]).to_json(path)
    again = run([case], jobs=1, cache_dir=tmp_path / "cache", progress=False)
    assert again.loc[0, "cost"] == 9  # the old file's row (3) was served before


def test_the_fingerprint_covers_every_source_file(tmp_path, monkeypatch):
    case = Case(name="b", decision="batch_scheduling")
    before = runner_mod.code_fingerprint(case)
    labels = dict(runner_mod._source_files(case))
    checks = labels["servopt/core/checks.py"]  # not one of batch scheduling's own modules
    edited = tmp_path / "checks.py"
    edited.write_bytes(checks.read_bytes() + b"\n# a fix\n")
    monkeypatch.setattr(runner_mod, "_source_files",
                        lambda c: sorted({**labels, "servopt/core/checks.py": edited}.items()))
    assert runner_mod.code_fingerprint(case) != before
