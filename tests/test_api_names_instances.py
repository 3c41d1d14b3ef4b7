"""R22's API-consistency items on the instances and CLI side: one name or unit where the five
decisions disagreed, aliases where one decision's name was missing, and messages that say what
a decision calls a quantity another decision names differently.

Each test failed on the code before its change (the item number is R22's).

``test_readme_lists_the_synonyms`` reads README.md from the source tree (a clone or the unpacked
sdist, as README "Tests and CI" says); an installed wheel does not carry it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import numpy as np
import pandas as pd
import pytest

from servopt import cli
from servopt.core.errors import InvalidInstanceError
from servopt.instances import batch_scheduling as bs
from servopt.instances import caching as ca
from servopt.instances import capacity as cp
from servopt.instances import decode_routing as dr
from servopt.instances import expert_placement as ep
from servopt.instances import load


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("servopt: error: "), lines
    return lines[0]


def _azure_csv(path, rows: int = 60) -> str:
    """A small Azure-format trace (numeric seconds): prompt 100 + 7 i, output 5 + i % 40."""
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"{0.5 * i},{100 + 7 * i},{5 + i % 40}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# -- 1: drift means opposite things in expert placement and caching --------------------------------
def test_drift_range_message_and_docstrings_say_which_drift():
    with pytest.raises(InvalidInstanceError, match=r"drift must be in \[0, 1\) \(the AR\(1\) "
                       r"coefficient of the drifting part of the popularity: with persistent=0 the "
                       r"correlation between successive windows, 0 independent windows"):
        ep.generate("tiny", drift=1.0)
    with pytest.raises(InvalidInstanceError, match=r"drift must be in \[0, 1\] \(the share of "
                       r"objects redrawn at each phase: 0 stationary\)"):
        ca.generate(drift=1.5)
    assert "correlation" in ep.generate.__doc__ and "caching" in ep.generate.__doc__
    assert "0 = stationary" in ca.generate.__doc__ and "expert" in ca.generate.__doc__


def test_drift_docstrings_describe_what_each_generator_does():
    # expert: drift is the correlation of log-popularity between windows (the loads' Poisson
    # noise is small at 1e6 tokens over 64 experts, so the log loads carry it)
    def window_correlation(drift: float) -> float:
        inst = ep.generate(windows=2, layers=1, experts=64, slots_per_gpu=16, drift=drift,
                           tokens_per_window=1e6, seed=1)
        logs = np.log(inst.loads[:, 0, :] + 1)
        return float(np.corrcoef(logs[0], logs[1])[0, 1])

    assert abs(window_correlation(0.0)) < 0.35 and window_correlation(0.95) > 0.85
    # caching: drift 0 keeps every phase's popularity, drift 1 redraws the ranks
    _, same = ca.phase_popularity(drift=0.0, phases=3, seed=2)
    _, moved = ca.phase_popularity(drift=1.0, phases=3, seed=2)
    assert np.array_equal(same[0], same[2]) and not np.array_equal(moved[0], moved[2])


# -- 3: servopt capacity draws as many samples as capacity.generate --------------------------------
def test_cli_capacity_default_sample_is_generates(capsys):
    argv = ["capacity", "--workload", "code", "--rate", "10", "--kv-tokens", "20000"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    inst = cp.generate(workload="code", arrival_rate=10, kv_tokens=20000)
    assert inst.requests == 2000  # generate's documented default
    assert inst.summary() in out  # the same sample: 2000 draws, not 4000
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["capacity"].format_help()
    assert "default 2000, as servopt.instances.capacity.generate draws" in " ".join(help_text.split())


# -- 4: "conversation" lengths differ between capacity and decode routing ----------------------
def test_conversation_presets_differ_as_their_docstrings_say():
    rng = np.random.default_rng(0)
    s, o = cp.workload_lengths("conversation", 40_000, rng)
    prompt, output = dr.sample_lengths("conversation", 40_000, rng)
    # the figures the docstrings quote, by the samples' medians (within 5%)
    assert np.median(s) == pytest.approx(700, rel=0.05) and np.median(o) == pytest.approx(180, rel=0.05)
    assert np.median(prompt) == pytest.approx(1020, rel=0.05)
    assert np.median(output) == pytest.approx(129, rel=0.05)
    doc = " ".join(cp.workload_lengths.__doc__.split())
    assert "not a fit of the Azure 2023 conversation trace" in doc and "median 1020" in doc
    assert "capacity.workload_lengths" in dr.generate.__doc__


# -- 5: capacity takes its step times in ms too --------------------------------------------------
def test_capacity_takes_step_times_in_ms():
    inst = cp.generate(requests=200, step_ms=20, per_token_ms=0.05)
    assert inst.step_overhead_s == pytest.approx(0.020) and inst.per_token_s == pytest.approx(5e-5)
    with pytest.raises(InvalidInstanceError, match=r"give step_overhead_s \(seconds\) or step_ms "
                       r"\(milliseconds\), not both"):
        cp.generate(requests=200, step_ms=20, step_overhead_s=0.02)
    with pytest.raises(InvalidInstanceError, match=r"give per_token_s \(seconds\) or per_token_ms"):
        cp.generate(requests=200, per_token_ms=0.05, per_token_s=5e-5)
    with pytest.raises(InvalidInstanceError, match="step_ms must be a finite number of ms >= 0"):
        cp.generate(requests=200, step_ms=-1)


def test_capacity_from_trace_takes_step_times_in_ms(tmp_path):
    path = _azure_csv(tmp_path / "t.csv")
    inst = cp.from_trace(path, kv_tokens=5000, step_ms=15, per_token_ms=0.1)
    assert inst.step_overhead_s == pytest.approx(0.015) and inst.per_token_s == pytest.approx(1e-4)
    with pytest.raises(InvalidInstanceError, match="not both"):
        cp.from_trace(path, kv_tokens=5000, per_token_ms=0.1, per_token_s=1e-4)


def test_a_step_overhead_of_a_second_is_refused_as_a_unit_slip():
    with pytest.raises(InvalidInstanceError, match=r"step_overhead_s is in seconds: 12 s .*pass "
                       r"step_ms=12 \(or step_overhead_s=0.012\)"):
        cp.generate(requests=200, step_overhead_s=12)
    with pytest.raises(InvalidInstanceError, match="step_overhead_s is in seconds"):
        cp.generate(requests=200, step_overhead_s=1.0)
    assert cp.generate(requests=200, step_overhead_s=0.5).step_overhead_s == 0.5
    # a constructed instance keeps any value (the hand checks use 1 s iterations)
    assert cp.Instance(prompt_tokens=[1], output_tokens=[1], arrival_rate=1.0, kv_tokens=10,
                       step_overhead_s=2.0).step_overhead_s == 2.0


def test_cli_step_ms_is_passed_in_ms(capsys):
    # --step-ms 1500 is what the user meant (ms): not refused as a unit slip
    argv = ["capacity", "--workload", "code", "--rate", "1", "--kv-tokens", "20000", "--requests",
            "300", "--step-ms", "1500", "--per-token-ms", "0.05"]
    assert cli.main(argv) == 0
    assert "t=1.5e+03 ms + 0.05 ms/token" in capsys.readouterr().out


# -- 9: caching's capacity share is of tokens ------------------------------------------------------
def test_caching_summary_and_share_message_say_tokens():
    inst = ca.Instance(time=[0, 1, 2, 3, 4, 5], object_id=[1, 1, 2, 1, 0, 2], size=[1, 1, 3],
                       miss_cost=[1, 1, 1], capacity=3)
    # requested objects 0, 1, 2 hold 1 + 1 + 3 = 5 tokens; the cache holds 3 of them
    assert "capacity 3 tokens (60.0% of the requested objects' tokens)" in inst.summary()
    assert "bytes" not in inst.summary()
    with pytest.raises(InvalidInstanceError, match=r"a share of the catalogue's tokens"):
        ca.generate(cache_share=2)


# -- 10: batch scheduling counts requests as the others do -----------------------------------------
def test_batch_generate_takes_requests_for_n():
    by_alias, by_n = bs.generate(requests=12, seed=3), bs.generate(12, seed=3)
    assert by_alias.n == 12 and by_alias.to_json() == by_n.to_json()
    assert bs.generate(seed=3).n == 30  # the default is unchanged
    with pytest.raises(InvalidInstanceError, match="give n or requests, not both"):
        bs.generate(12, requests=12)
    with pytest.raises(InvalidInstanceError, match="requests must be a positive number"):
        bs.generate(requests=0)


def test_batch_from_trace_takes_max_requests_for_n(tmp_path):
    path = _azure_csv(tmp_path / "t.csv")
    by_alias, by_n = bs.from_trace(path, max_requests=20), bs.from_trace(path, n=20)
    assert by_alias.n == 20 and by_alias.to_json() == by_n.to_json()
    with pytest.raises(InvalidInstanceError, match="give n or max_requests, not both"):
        bs.from_trace(path, n=20, max_requests=20)
    with pytest.raises(InvalidInstanceError, match="cannot take max_requests=100 from start=0"):
        bs.from_trace(path, max_requests=100)


def test_cli_generate_batch_with_requests(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert cli.main(["generate", "batch_scheduling", "requests=10", "-o", str(out)]) == 0
    assert load(out).n == 10
    capsys.readouterr()
    assert cli.main(["generate", "batch_scheduling", "n=3", "requests=4", "-o", str(out)]) == 2
    # the message names both parameters itself: no "with n=3, requests=4:" before it
    assert _error(capsys) == ("servopt: error: generate batch_scheduling: give n or requests, not "
                              "both: they are two names of one parameter (got n=3 and requests=4)")


# -- 11: the same quantity under each decision's name --------------------------------------------
def test_every_synonym_is_a_name_its_decision_takes():
    from servopt.core.checks import SYNONYMS

    takes = {
        "decode_routing": set(inspect.signature(dr.generate).parameters),
        "batch_scheduling": set(inspect.signature(bs.generate).parameters),
        "capacity": (set(inspect.signature(cp.generate).parameters)
                     | set(cp.PROFILE_PRESETS["llama3-8b@a100"])),
        "caching": set(inspect.signature(ca.generate).parameters),
        "expert_placement": set(inspect.signature(ep.generate).parameters),
    }
    for _, names in SYNONYMS:
        assert len(names) >= 2
        for decision, name in names.items():
            assert name in takes[decision], (decision, name)


@pytest.mark.parametrize("decision, given, ours", [
    ("batch_scheduling", "kv_capacity", "kv_memory"),
    ("batch_scheduling", "slots", "max_batch"),
    ("batch_scheduling", "prediction_error", "noise"),
    ("decode_routing", "kv_tokens", "kv_capacity"),
    ("decode_routing", "noise", "prediction_error"),
    ("decode_routing", "step_overhead_s", "step_ms"),
    ("caching", "arrival_rate", "rate"),
])
def test_cli_unknown_parameter_says_what_this_decision_calls_it(decision, given, ours, tmp_path,
                                                                capsys):
    assert cli.main(["generate", decision, f"{given}=5", "-o", str(tmp_path / "x.json")]) == 2
    line = _error(capsys)
    assert f"unknown parameter {given!r}" in line
    assert f"this decision calls it {ours!r}" in line


@pytest.mark.parametrize("given, ours", [("rate", "arrival_rate"), ("slots", "batch_cap"),
                                         ("max_batch", "batch_cap"), ("kv_memory", "kv_tokens")])
def test_capacity_unknown_field_says_what_capacity_calls_it(given, ours, tmp_path):
    with pytest.raises(InvalidInstanceError, match=f"this decision calls it '{ours}'"):
        cp.generate(requests=100, **{given: 5})
    with pytest.raises(InvalidInstanceError, match=f"this decision calls it '{ours}'"):
        cp.from_trace(_azure_csv(tmp_path / "t.csv"), kv_tokens=5000, **{given: 5})


def test_synonym_hint_only_where_the_decision_has_a_name():
    from servopt.core.checks import synonym_hint

    assert synonym_hint("kv_memory", "expert_placement") == ""
    assert synonym_hint("kv_memory", "batch_scheduling") == ""  # its own name
    assert synonym_hint("whatever", "capacity") == ""
    # a name the function does not take is not offered
    assert synonym_hint("noise", "decode_routing", accepted=["workers"]) == ""


def test_readme_lists_the_synonyms():
    from pathlib import Path

    from servopt.core.checks import SYNONYMS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for _, names in SYNONYMS:
        for name in names.values():
            assert f"`{name}`" in readme, name


# -- 12: decode routing's from_trace adds predictions -----------------------------------------------
def test_decode_from_trace_adds_predicted_lengths():
    n = 4000
    frame = pd.DataFrame({"arrival_s": np.arange(n) * 0.01, "prompt_tokens": np.full(n, 100),
                          "output_tokens": 100 + np.arange(n) % 400})
    assert "predicted_tokens" not in dr.from_trace(frame).requests  # none unless asked
    exact = dr.from_trace(frame, prediction_error=0.0)
    assert np.array_equal(exact.predicted, exact.output)
    noisy = dr.from_trace(frame, prediction_error=0.5, seed=1)
    ratio = np.log(noisy.predicted / noisy.output)  # N(0, 0.5^2) up to rounding (outputs >= 100)
    assert abs(ratio.mean()) < 0.05 and ratio.std() == pytest.approx(0.5, rel=0.05)
    again = dr.from_trace(frame, prediction_error=0.5, seed=1)
    other = dr.from_trace(frame, prediction_error=0.5, seed=2)
    assert np.array_equal(again.predicted, noisy.predicted)
    assert not np.array_equal(other.predicted, noisy.predicted)
    with pytest.raises(InvalidInstanceError, match="prediction_error must be a finite spread"):
        dr.from_trace(frame, prediction_error=-1)
    with pytest.raises(InvalidInstanceError, match="seed must be a whole number"):
        dr.from_trace(frame, prediction_error=0.5, seed=-1)


# -- 13: servopt generate --generator trace ------------------------------------------------------
def test_cli_generate_from_a_trace(tmp_path, capsys):
    path = _azure_csv(tmp_path / "t.csv")
    out = tmp_path / "d.json"
    assert cli.main(["generate", "decode_routing", "--generator", "trace", f"path={path}",
                     "max_requests=40", "prediction_error=0.3", "--seed", "4", "-o", str(out)]) == 0
    direct = dr.from_trace(path, max_requests=40, prediction_error=0.3, seed=4)
    assert load(out).to_json() == direct.to_json()
    out = tmp_path / "c.json"
    assert cli.main(["generate", "capacity", "--generator", "trace", f"path={path}",
                     "kv_tokens=5000", "-o", str(out)]) == 0
    assert load(out).to_json() == cp.from_trace(path, kv_tokens=5000).to_json()
    capsys.readouterr()
    for argv, message in (
            (["capacity", "--generator", "trace", "kv_tokens=5000"], "give the trace file as path=FILE"),
            (["capacity", "--generator", "trace", f"path={path}"], "from_trace needs kv_tokens=VALUE"),
            (["capacity", "--generator", "trace", f"path={path}", "kv_tokens=5000", "--seed", "2"],
             "--seed 2 would not be used"),
            (["caching", "--generator", "nope"], "generators: default, trace")):
        assert cli.main(["generate", *argv, "-o", str(tmp_path / "x.json")]) == 2
        assert message in _error(capsys)


# -- 14: expert placement's from_trace takes generate's names ---------------------------------------
def test_expert_from_trace_takes_nodes_and_groups(tmp_path):
    path = tmp_path / "loads.json"
    step = {"logical_expert_load": [[1, 2, 3, 4], [4, 3, 2, 1]]}
    path.write_text(json.dumps({"load_history": [step] * 4}))
    short = ep.from_trace(path, nodes=2, groups=2, gpus_per_node=2)
    long = ep.from_trace(path, num_nodes=2, num_groups=2, gpus_per_node=2)
    assert (short.num_nodes, short.num_groups) == (2, 2)
    assert short.to_json() == long.to_json()
    default = ep.from_trace(path)
    assert (default.num_nodes, default.num_groups) == (1, 1)
    with pytest.raises(InvalidInstanceError, match="give num_nodes or nodes, not both"):
        ep.from_trace(path, num_nodes=2, nodes=2)
    with pytest.raises(InvalidInstanceError, match="give num_groups or groups, not both"):
        ep.from_trace(path, num_groups=2, groups=2)
    with pytest.raises(InvalidInstanceError, match=r"unknown option\(s\) \['node'\].*did you mean "
                       r"'node' -> 'nodes'"):
        ep.from_trace(path, node=2)


# -- 15: capacity's label is also its name ------------------------------------------------------
def test_capacity_instance_has_a_read_only_name():
    inst = cp.generate(workload="code", requests=100)
    assert inst.name == "code" == inst.workload
    assert "name" not in inst.to_dict()["fields"]
    back = load(inst.to_json())
    assert back.name == "code" and back.to_json() == inst.to_json()
    assert dataclasses.replace(inst, workload="mine").name == "mine"
    with pytest.raises(AttributeError):
        inst.name = "other"


# -- 20: vLLM's spelling of the memory share ---------------------------------------------------
def test_cli_capacity_takes_memory_utilization(capsys):
    base = ["capacity", "--workload", "code", "--rate", "5", "--requests", "300"]
    assert cli.main([*base, "--memory-utilization", "0.5"]) == 0
    out = capsys.readouterr().out
    # llama3-8b (32 layers, 8 KV heads, head dim 128, bf16: 131072 bytes a token, 16.1e9 bytes of
    # weights) on 80 GiB at 50%
    tokens = math.floor((0.5 * 80 * 2**30 - 16.1e9) / (2 * 32 * 8 * 128 * 2))
    assert f"M={tokens} KV tokens" in out
    assert cli.main([*base, "--memory-utilisation", "0.5"]) == 0
    assert capsys.readouterr().out == out
