"""Generator inputs and CLI messages (audits R20 #3, #4 and R21 #6-#12; E16's unit note).

Each test says what it closes; each failed on the code before the fix (e0863b4).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servopt import cli
from servopt.core import InfeasibleError, InvalidInstanceError
from servopt.instances import IgnoredParameterWarning, library, traces
from servopt.instances import batch_scheduling as bs
from servopt.instances import capacity as cp
from servopt.instances import decode_routing as dr
from servopt.instances import expert_placement as ep

AZURE_CODE = Path("/work/shared/traces/azure2023_code.csv")


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("servopt: error: "), err
    return lines[0]


def _no_warning(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args, **kwargs)


# -- R21 #6: a parameter with no effect is not silently ignored ---------------------------------
@pytest.mark.parametrize("given, needs", [
    (dict(load=0.3), "arrivals='poisson'"),
    (dict(max_output=3), "lengths='azure'"),
    (dict(prompt_scale=2.5), "lengths='azure'"),
    (dict(lengths="azure", prompt_range=(2, 9)), "lengths='uniform'"),
    (dict(lengths="azure", output_range=(2, 9)), "lengths='uniform'"),
    (dict(kv_memory=500, concurrency=2.0), "kv_memory is None"),
])
def test_batch_generate_names_a_parameter_it_ignores(given, needs):
    # closes: generate(15, load=0.3) == generate(15) with nothing said (load needs Poisson arrivals)
    name = next(k for k in given if k not in ("lengths", "kv_memory"))
    with pytest.warns(IgnoredParameterWarning, match=rf"^{name}=.* no effect unless {re.escape(needs)}"):
        inst = bs.generate(15, **given)
    without = {k: v for k, v in given.items() if k != name}
    assert inst.content_hash() == bs.generate(15, **without).content_hash()  # it is indeed ignored


def test_batch_generate_says_nothing_when_every_parameter_acts():
    _no_warning(bs.generate, 15)  # defaults
    poisson = _no_warning(bs.generate, 15, arrivals="poisson", load=0.3)
    assert poisson.name.endswith("load0.3")
    _no_warning(bs.generate, 15, lengths="azure", max_output=3, prompt_scale=2.5)
    _no_warning(bs.generate, 15, prompt_range=(2, 9), output_range=(1, 3), concurrency=2.0)
    # the defaults are the documented ones: passing them is the same instance
    assert (bs.generate(20, arrivals="poisson", lengths="azure", seed=3).content_hash()
            == bs.generate(20, arrivals="poisson", lengths="azure", seed=3, load=1.0,
                           prompt_scale=1 / 32, max_output=64, concurrency=6.0).content_hash())


def test_decode_generate_names_burstiness_without_bursty_arrivals():
    # closes: generate(requests=50, burstiness=9.0) == generate(requests=50), silently
    with pytest.warns(IgnoredParameterWarning, match="burstiness=9.0 has no effect unless arrivals='bursty'"):
        inst = dr.generate(requests=50, burstiness=9.0)
    assert inst.content_hash() == dr.generate(requests=50).content_hash()
    bursty = _no_warning(dr.generate, requests=50, arrivals="bursty", burstiness=9.0)
    assert bursty.content_hash() != _no_warning(dr.generate, requests=50, arrivals="bursty").content_hash()


@pytest.mark.parametrize("argv, says", [
    (["batch_scheduling", "load=0.3"], "load=0.3 has no effect unless arrivals='poisson'"),
    (["batch_scheduling", "max_output=3"], "max_output=3 has no effect unless lengths='azure'"),
    (["decode_routing", "burstiness=9"], "burstiness=9 has no effect unless arrivals='bursty'"),
])
def test_servopt_generate_refuses_a_parameter_it_would_ignore(tmp_path, capsys, argv, says):
    out = tmp_path / "x.json"
    assert cli.main(["generate", *argv, "-o", str(out)]) == 2
    assert says in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


# -- R20 #3: decode generate does not silently shorten prompts ----------------------------------
def test_decode_generate_refuses_a_kv_capacity_most_requests_exceed():
    # closes: kv_capacity=3000 on code clipped 21% of the prompts (mean 2048 -> 1635), name unchanged
    prompt, output = dr.sample_lengths("code", 600, np.random.default_rng(0))  # generate's draw
    over = int(np.sum(prompt + output > 3000))
    assert over > 6  # more than 1% of 600
    with pytest.raises(InvalidInstanceError, match=rf"kv_capacity=3,000: {over} of the 600 code requests"):
        dr.generate(workload="code", requests=600, kv_capacity=3000)


def test_decode_generate_counts_the_few_prompts_it_shortens():
    prompt, output = dr.sample_lengths("code", 600, np.random.default_rng(0))
    kv = int(np.sort(prompt + output)[-2])  # exactly one request is longer
    inst = dr.generate(workload="code", requests=600, kv_capacity=kv)
    assert inst.name.endswith("(1 prompt shortened to the KV)")
    row = int(np.argmax(prompt + output))
    assert inst.prompt[row] == kv - output[row] and inst.output[row] == output[row]
    others = np.arange(600) != row
    assert np.array_equal(inst.prompt[others], prompt[others])
    assert "shortened" not in dr.generate(workload="code", requests=600, kv_capacity=kv + 1000).name


# -- R20 #4: each decision's per-request KV rule, stated and as stated ---------------------------
def test_the_kv_rules_differ_by_one_token_as_the_docs_say():
    K, s, o = 100, 60, 41  # s + o = K + 1, s + o - 1 = K
    fits = cp.Instance(prompt_tokens=[s], output_tokens=[o], arrival_rate=1.0, kv_tokens=K)
    assert fits.requests == 1
    with pytest.raises(InfeasibleError):
        dr.Instance(workers=1, slots=1, kv_capacity=K, step_ms=1.0, ms_per_kv_token=0.0,
                    requests=pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [s], "output_tokens": [o]}))
    with pytest.raises(InfeasibleError):
        bs.Instance(kv_memory=K, arrival=[0], prompt_tokens=[s], output_tokens=[o])
    # the docs say so (decode's said it "holds prompt + j" and that from_trace refuses as
    # capacity.from_trace does)
    assert "prompt + output - 1 <= kv_tokens" in dr.from_trace.__doc__
    assert "as :func:`servopt.instances.capacity.from_trace` refuses them" not in dr.from_trace.__doc__
    assert "peak need is ``prompt + output``" in dr.__doc__
    assert "s + o - 1 <=" in bs.__doc__ and "s + o`` must fit" in cp.__doc__


# -- R21 #7: wrong argument types are named ------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: ep.generate(["tiny"]), "preset"),
    (lambda: cp.generate(profile=[]), "profile"),
    (lambda: cp.generate(model=[]), "model"),
    (lambda: cp.generate(gpu=[]), "GPU"),
    (lambda: cp.generate(workload=[]), "workload"),
    (lambda: dr.generate(workload=[]), "workload"),
    (lambda: dr.generate_steps(workload=[]), "workload"),
    (lambda: cp.from_trace("x.csv", format=[], kv_tokens=1000), "format"),
    (lambda: dr.from_trace(pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [1],
                                         "output_tokens": [1]}), name=1), "name"),
    (lambda: library.entry(["a"]), "library instance"),
])
def test_a_wrong_type_is_named(call, name):
    with pytest.raises(InvalidInstanceError, match=name):
        call()


def _burst_csv(tmp_path: Path) -> Path:
    path = tmp_path / "burst.csv"
    path.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                    "0,ChatGPT,10,5,15,Conversation log\n"
                    "1,GPT-4,20,0,20,Conversation log\n"
                    "2,GPT-4,30,7,37,Conversation log\n"
                    "3,Other,40,9,49,API log\n"
                    "4,ChatGPT,50,3,53,API log\n")
    return path


def test_read_burstgpt_takes_a_list_of_models(tmp_path):
    # closes: model=["ChatGPT", "GPT-4"] was pandas' "Lengths must match to compare"
    path = _burst_csv(tmp_path)
    both = traces.read_burstgpt(path, model=["ChatGPT", "GPT-4"])
    assert both["prompt_tokens"].tolist() == [10, 30, 50]  # the GPT-4 row with 0 tokens dropped
    assert traces.read_burstgpt(path, model="GPT-4")["prompt_tokens"].tolist() == [30]
    kept = traces.read_burstgpt(path, model=("GPT-4",), drop_failed=False)
    assert kept["prompt_tokens"].tolist() == [20, 30]
    for bad in ([], [1], 3):
        with pytest.raises(InvalidInstanceError, match="model must be a model name"):
            traces.read_burstgpt(path, model=bad)


# -- R21 #8: true/false options take True or False -----------------------------------------------
@pytest.mark.parametrize("value", ["no", "abc", 1, -1, math.nan, None])
def test_boolean_options_refuse_what_is_not_a_bool(tmp_path, value):
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_tokens": [5, 6], "output_tokens": [2, 3]})
    with pytest.raises(InvalidInstanceError, match="clip_to_kv must be True or False"):
        dr.from_trace(frame, clip_to_kv=value)
    with pytest.raises(InvalidInstanceError, match="drop_too_long must be True or False"):
        cp.from_trace(tmp_path / "none.csv", kv_tokens=1000, drop_too_long=value)
    with pytest.raises(InvalidInstanceError, match="drop_failed must be True or False"):
        traces.read_burstgpt(_burst_csv(tmp_path), drop_failed=value)


def test_prediction_error_true_is_not_a_spread_of_one():
    # closes: generate(prediction_error=True) ran with spread 1.0
    for call in (dr.generate, dr.from_trace):
        args = (pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [5], "output_tokens": [2]}),) \
            if call is dr.from_trace else ()
        with pytest.raises(InvalidInstanceError, match="prediction_error must be a finite spread"):
            call(*args, prediction_error=True)


# -- R21 #9: a clean error, with no numpy warning before it --------------------------------------
def test_zero_step_times_are_refused_before_the_capacity_is_computed():
    # closes: a divide-by-zero RuntimeWarning (fleet_capacity) printed before the clean error
    with pytest.raises(InvalidInstanceError, match="step_ms and ms_per_kv_token are both 0"):
        _no_warning(dr.generate, requests=20, step_ms=0, ms_per_kv_token=0)
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_tokens": [5, 6], "output_tokens": [2, 3]})
    with pytest.raises(InvalidInstanceError, match="step_ms and ms_per_kv_token are both 0"):
        _no_warning(dr.from_trace, frame, step_ms=0, ms_per_kv_token=0, load=0.5)


@pytest.mark.parametrize("spread", [10.5, 1e3, 1e12])
def test_a_huge_prediction_spread_is_refused_without_an_overflow(spread):
    # closes: batch generate(noise=1e12) warned "overflow in exp", then returned an instance
    with pytest.raises(InvalidInstanceError, match=r"noise must be in \[0, 10\]"):
        _no_warning(bs.generate, 10, noise=spread)
    with pytest.raises(InvalidInstanceError, match=r"prediction_error must be a finite spread in \[0, 10\]"):
        _no_warning(dr.generate, requests=20, prediction_error=spread)
    assert _no_warning(bs.generate, 10, noise=10).n == 10  # the cap itself is accepted


# -- R21 #10: numbers on the command line --------------------------------------------------------
def test_the_cli_reads_a_whole_number_in_e_notation(tmp_path, capsys):
    # closes: requests=1e4 -> "requests must be a whole number >= 1, got 10000.0"
    out = tmp_path / "x.json"
    assert cli.main(["generate", "batch_scheduling", "n=1e3", "prompt_range=[1,4e1]", "-o", str(out)]) == 0
    from servopt.instances import load

    assert load(out).content_hash() == bs.generate(1000).content_hash()
    assert cli._parse_value("1e30") == 10**30 and isinstance(cli._parse_value("1.5e3"), int)
    assert cli._parse_value("2.5e-1") == 0.25 and cli._parse_value("2.0") == 2.0
    assert isinstance(cli._parse_value("2.0"), float)  # a decimal point without an exponent stays


def test_a_pair_parameter_says_it_takes_a_pair(tmp_path, capsys):
    # closes: prompt_range=a -> "prompt_range must be a number"
    assert cli.main(["generate", "batch_scheduling", "prompt_range=a", "-o", str(tmp_path / "x.json")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "prompt_range must be a pair of numbers written as [low,high]" in line


# -- R21 #11: servopt capacity names its options -------------------------------------------------
@pytest.mark.parametrize("argv, flag", [
    (["--step-ms", "0", "--per-token-ms", "0"], "--step-ms and --per-token-ms cannot both be 0"),
    (["--kv-tokens", "5"], "--kv-tokens: "),
    (["--memory-utilisation", "0"], "--memory-utilisation: "),
    (["--gpus", "0"], "--gpus: "),
    (["--model", "nosuch"], "--model: "),
    (["--gpu", "nosuch"], "--gpu: "),
    (["--profile", "nosuch"], "--profile: "),
    (["--simulate", "--sim-requests", "0"], "--sim-requests: "),
])
def test_capacity_errors_name_the_flag(capsys, argv, flag):
    assert cli.main(["capacity", "--workload", "code", "--rate", "10", *argv]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"servopt: error: {flag}"), line
    for internal in ("step_overhead_s and", "n_requests"):
        assert internal not in line


# -- R21 #12: solve checks the instance first; usage errors are one line -------------------------
def test_solve_refuses_a_seconds_clock_decode_instance_before_backend_advice(tmp_path, capsys):
    path = tmp_path / "dr.json"
    dr.generate(requests=10).to_json(path)
    assert cli.main(["solve", str(path), "--backend", "cvxpy"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "arrivals counted in decode steps" in line and "--relax" not in line


@pytest.mark.parametrize("argv, command", [
    (["solve"], "solve"),
    (["generate", "decode_routing", "-o"], "generate"),
    (["capacity", "--workload", "nosuch"], "capacity"),
    (["solve", "x.json", "--bogus"], "solve"),
    (["nosuch"], None),
])
def test_usage_errors_are_one_line(capsys, argv, command):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert captured.out == "" and "usage:" not in captured.err
    prefix = f"servopt: error: {command}: " if command else "servopt: error: argument COMMAND"
    assert line.startswith(prefix), line
    assert line.endswith(f"(servopt {command + ' ' if command else ''}--help for the usage)")


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["solve", "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: servopt solve")


# -- E16's note: the objective's unit ------------------------------------------------------------
def test_solve_prints_the_objective_with_its_unit(tmp_path, capsys):
    path = tmp_path / "bs.json"
    bs.generate(4, seed=0).to_json(path)
    assert cli.main(["solve", str(path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("objective"))
    assert line.endswith("  (rounds)"), line  # batch scheduling's objective: total latency in rounds
