"""``servopt.solve`` on a decode-routing stream where slots or KV can bind says that the
hindsight model's value is no bound: a router realises less than its "optimal" value."""

import dataclasses

import pandas as pd

import servopt
from servopt.benchmarks import decode_routing as bench
from servopt.instances import decode_routing as dr

# one slot per worker: request 3 arrives with 1 and 2 still running on the other workers
SLOTS_BIND = dr.Instance(
    workers=3, slots=1, kv_capacity=23, step_ms=10.0, ms_per_kv_token=1.0, arrival_unit="step",
    requests=pd.DataFrame({"arrival_s": [0, 1, 2, 2, 3], "prompt_tokens": [4, 3, 0, 7, 5],
                           "output_tokens": [5, 1, 3, 1, 5]}))


def test_binding_slots_note_and_a_router_below_the_model_value():
    solution = servopt.solve(SLOTS_BIND)
    assert solution.status == "optimal"
    realised = bench.evaluate(SLOTS_BIND, "round_robin").cost
    assert realised < solution.objective - 1e-9  # so the model's value bounds nothing
    assert "slots can bind" in solution.info["note"]
    assert bench.bound(SLOTS_BIND).value <= realised + 1e-9  # the harness's bound stays valid


def test_no_note_where_the_model_is_exact():
    roomy = dataclasses.replace(SLOTS_BIND, slots=5, kv_capacity=10_000)
    solution = servopt.solve(roomy)
    assert "note" not in solution.info
    # exact here: no router beats the proved optimum
    for method in ("round_robin", "least_kv", "jsq"):
        assert bench.evaluate(roomy, method).cost >= solution.objective - 1e-9


def test_cli_prints_the_note(tmp_path, capsys):
    from servopt import cli
    path = tmp_path / "slots.json"
    SLOTS_BIND.to_json(path)
    assert cli.main(["solve", str(path)]) in (0, None)
    assert "note      slots can bind" in capsys.readouterr().out


def test_the_note_survives_save_and_load(tmp_path):
    solution = servopt.solve(SLOTS_BIND)
    back = servopt.Solution.load(solution.save(tmp_path / "sol"))
    assert back.info["note"] == solution.info["note"]
