"""Defects a new user met on the command line and in the packaging (audit of a fresh install).

Each test says what it closes; each failed on the code before the fix. Work the command must not
start (a simulation, a benchmark run) is replaced by a recorder that fails the test if reached.

The packaging tests read README.md, pyproject.toml, MANIFEST.in, the instances/library folders and
benchmarks/results from the source tree (a clone or the unpacked sdist, as README "Tests and CI"
says); an installed wheel does not carry them.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

from servopt import cli

import toy_decision  # noqa: F401  (registers the toy decision)
from toy_decision import ToyInstance, make_instance

ROOT = Path(__file__).resolve().parents[1]
WYNDOR = {"profit": [3.0, 5.0], "usage": [[1, 0], [0, 2], [3, 2]], "capacity": [4, 12, 18]}


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("servopt: error: "), err
    return lines[0]


@pytest.fixture
def no_simulation(monkeypatch):
    """The knee search fails the test if reached (the options must be refused before it)."""
    from servopt.benchmarks import capacity as bench

    def refuse(*args, **kw):
        raise AssertionError("the simulation ran")

    monkeypatch.setattr(bench, "find_knee", refuse)


@pytest.fixture
def no_bench_run(monkeypatch):
    """runner.run fails the test if reached (bench options must be refused before the runs)."""
    from servopt.benchmarks import runner

    def refuse(*args, **kw):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(runner, "run", refuse)


# ---------------------------------------------------------------------------------------------
# 1. capacity: the GPU's timing profile; options that would be ignored
# ---------------------------------------------------------------------------------------------
CAPACITY = ["capacity", "--workload", "code", "--rate", "10", "--requests", "300"]


def test_capacity_gpu_picks_its_timing_profile(capsys):
    # closes: --gpu h100-80gb kept the A100 profile's t = 12 ms + 0.06 ms/token without a word.
    # The llama3-8b@h100 preset is d0 = 8 ms, d1 = 0.03 ms/token, b = 8192, C = 1024
    assert cli.main([*CAPACITY, "--gpu", "h100-80gb"]) == 0
    captured = capsys.readouterr()
    assert "t=8 ms + 0.03 ms/token" in captured.out and "b=8192" in captured.out
    assert "worker profile llama3-8b@h100" in captured.err
    # the default GPU keeps the default profile, without a note
    assert cli.main(CAPACITY) == 0
    captured = capsys.readouterr()
    assert "t=12 ms + 0.06 ms/token" in captured.out and captured.err == ""


def test_capacity_notes_a_profile_of_another_gpu(capsys):
    # closes: an L4 worker (no preset) or an explicit A100 profile on an H100 sized silently
    assert cli.main([*CAPACITY, "--gpu", "l4-24gb"]) == 0
    captured = capsys.readouterr()
    assert "t=12 ms + 0.06 ms/token" in captured.out  # the only llama3-8b profile left: A100's
    assert "llama3-8b@a100 is a100's, not l4-24gb's" in captured.err
    assert cli.main([*CAPACITY, "--gpu", "h100-80gb", "--profile", "llama3-8b@a100"]) == 0
    assert "is a100's, not h100-80gb's (--profile llama3-8b@h100 is the preset for it)" in \
        capsys.readouterr().err
    # both timings given: nothing of the preset's timing is used, no note
    assert cli.main([*CAPACITY, "--gpu", "l4-24gb", "--step-ms", "20", "--per-token-ms", "0.1"]) == 0
    captured = capsys.readouterr()
    assert "t=20 ms + 0.1 ms/token" in captured.out and captured.err == ""


@pytest.mark.parametrize("extra", [["--gpu", "h100-80gb"], ["--gpus", "2"],
                                   ["--memory-utilisation", "0.5"]])
def test_capacity_refuses_kv_sizing_options_with_kv_tokens(extra, capsys):
    # closes: --kv-tokens silently overrode --gpu, --gpus and --memory-utilisation
    assert cli.main([*CAPACITY, "--kv-tokens", "20000", *extra]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"servopt: error: {extra[0]}") and "--kv-tokens" in line


@pytest.mark.parametrize("extra", [["--sim-requests", "600"], ["--sim-seeds", "3"]])
def test_capacity_refuses_simulation_options_without_simulate(extra, capsys):
    # closes: --sim-requests / --sim-seeds were ignored without --simulate
    assert cli.main([*CAPACITY, "--kv-tokens", "20000", *extra]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"servopt: error: {extra[0]}") and "--simulate" in line


# ---------------------------------------------------------------------------------------------
# 2. capacity --simulate: absurd run lengths refused up front; MemoryError is one line
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--sim-requests", "1000000000", "at most 1,000,000 arrivals per run"),
    ("--sim-requests", "1000000000000", "at most 1,000,000 arrivals per run"),
    ("--sim-seeds", "1000000000", "at most 100 replications"),
    ("--sim-seeds", "101", "at most 100 replications")])
def test_capacity_refuses_absurd_simulations_before_the_report(flag, value, message, no_simulation,
                                                               capsys):
    # closes: 1e9 arrivals printed the report, then a numpy MemoryError traceback; 1e12 hung
    assert cli.main([*CAPACITY, "--kv-tokens", "20000", "--simulate", flag, value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before the report
    assert message in _one_error_line(captured.err)


def test_memory_error_is_one_line(monkeypatch, capsys):
    # closes: a MemoryError escaped main as a traceback
    import numpy as np

    def exhausted(args):
        np.empty(2**62, dtype=np.int8)  # numpy refuses to allocate 4 EiB: its own MemoryError

    monkeypatch.setattr(cli, "cmd_generate", exhausted)
    assert cli.main(["generate", "caching", "-o", "x.json"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "out of memory" in line and "4.00 EiB" in line


# ---------------------------------------------------------------------------------------------
# 3. bench --jobs: bounded, and never more workers than runs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", ["0", "-3", "257", "100000"])
def test_bench_refuses_jobs_out_of_range(jobs, no_bench_run, tmp_path, capsys):
    # closes: --jobs 100000 was accepted (a pool of 100000 processes)
    assert cli.main(["bench", "--jobs", jobs, "--out", str(tmp_path)]) == 2
    assert "--jobs must be >= 1 worker process (at most 256)" in _one_error_line(capsys.readouterr().err)


def test_runner_starts_no_more_workers_than_units(monkeypatch):
    # closes: jobs=8 started 8 processes for 3 units (one task: the bound and two methods)
    import concurrent.futures as cf

    from servopt.benchmarks import Case, run
    from servopt.benchmarks import runner as runner_mod

    started = []

    class Recording(cf.ProcessPoolExecutor):
        def __init__(self, max_workers=None, **kw):
            started.append(max_workers)
            super().__init__(max_workers=max_workers, **kw)

    monkeypatch.setattr(runner_mod.cf, "ProcessPoolExecutor", Recording)
    case = Case(name="toy_jobs", decision="toy_production", grid=({"products": 3},), seeds=(0,),
                make_instance=make_instance, methods=("greedy", "exact"))
    frame = run([case], jobs=8, progress=False)
    assert started == [3] and len(frame) == 2
    for jobs in (0, -1, 257, 2.0, True):
        with pytest.raises(ValueError, match="jobs must be a whole number"):
            run([case], jobs=jobs, progress=False)


# ---------------------------------------------------------------------------------------------
# 4 and 9. the sdist carries what its tests and README need; the wheel lists every package
# ---------------------------------------------------------------------------------------------
def test_manifest_carries_the_results_the_tests_read_and_the_ci_script(monkeypatch):
    # closes: the sdist had no benchmarks/results (tests/test_results_scripts.py reads five
    # committed CSV files there), no .ci/run and no results README (the README links it).
    # setuptools' own MANIFEST.in reader decides, over the files of the checkout (it globs
    # from the current folder)
    from setuptools.command.egg_info import FileList

    monkeypatch.chdir(ROOT)
    files = FileList()
    files.allfiles = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                      if p.is_file() and ".git" not in p.parts]
    for line in (ROOT / "MANIFEST.in").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            files.process_template_line(line)
    named = re.findall(r'"(\w+\.csv)"', (ROOT / "tests/test_results_scripts.py").read_text())
    needed = [f"benchmarks/results/{name}" for name in named
              if (ROOT / "benchmarks" / "results" / name).exists()]  # (not its tmp_path files)
    assert len(needed) >= 3
    needed += ["benchmarks/results/README.md", ".ci/run", "constraints-min.txt"]  # (.ci/run reads it)
    assert set(needed) <= set(files.files), sorted(set(needed) - set(files.files))


def test_every_library_folder_is_a_listed_package_with_its_json():
    # closes: setuptools warned 'Package would be ignored' for each instances/library/<decision>
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = sorted({p.parent.name for p in (ROOT / "instances" / "library").glob("*/*.json")})
    assert len(folders) == 5
    for folder in folders:
        package = f"servopt.instances.library.{folder}"
        assert package in config["packages"], package
        assert "*.json" in config["package-data"][package]
    assert "*.json" in config["package-data"]["servopt.instances.library"]  # manifest.json


# ---------------------------------------------------------------------------------------------
# 5. solve --out says what it wrote
# ---------------------------------------------------------------------------------------------
def _written(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("written"))


def test_solve_out_names_the_files_written(tmp_path, capsys):
    # closes: 'written sol/ (solution.json, prices/, decisions/)' also for an integer program,
    # which writes no prices/
    ip = tmp_path / "ip"
    assert cli.main(["solve", "bs_offline_10", "--out", str(ip)]) == 0
    line = _written(capsys.readouterr().out)
    assert not (ip / "prices").exists() and "no prices/" in line
    assert "prices/," not in line and "prices/*" not in line
    for name in ("late", "start", "x"):  # the batch IP's decisions, as the model names them
        assert (ip / "decisions" / f"{name}.csv").exists() and name in line
    path = tmp_path / "w.json"
    ToyInstance(**WYNDOR).to_json(path)
    lp = tmp_path / "lp"
    assert cli.main(["solve", str(path), "--out", str(lp)]) == 0
    line = _written(capsys.readouterr().out)
    assert "prices/capacity.csv" in line and "decisions/x.csv" in line and "no " not in line
    assert (lp / "prices" / "capacity.csv").exists() and (lp / "decisions" / "x.csv").exists()


# ---------------------------------------------------------------------------------------------
# 6. README blocks run on their own
# ---------------------------------------------------------------------------------------------
def _undefined_names(source: str) -> set[str]:
    """Names a code block reads but neither binds, imports nor gets from builtins."""
    tree = ast.parse(source)
    bound, read = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return read - bound


def test_each_readme_python_block_defines_what_it_uses():
    # closes: the instance-file block called servopt.load without `import servopt` (it ran in
    # the README test only because an earlier block had imported it)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 4
    for block in blocks:
        assert _undefined_names(block) == set(), block[:200]


def test_readme_commands_solve_only_files_an_earlier_command_wrote():
    # closes: `servopt solve b.json ...` with no README command that creates b.json
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    written, solved = set(), 0
    for block in blocks:
        for line in block.splitlines():
            command = line.split("#")[0].split()
            if command[:2] == ["servopt", "generate"] and "-o" in command:
                written.add(command[command.index("-o") + 1])
            elif command[:2] == ["servopt", "solve"] and command[2].endswith(".json"):
                solved += 1
                assert command[2] in written, line
    assert solved >= 3


# ---------------------------------------------------------------------------------------------
# 7. bench --name is a plain file name
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a/b", "../x", "..", "/tmp/x", "", " x"])
def test_bench_name_must_be_a_plain_file_name(name, no_bench_run, tmp_path, capsys):
    # closes: --name a/b ran every case, then failed in pandas; --name ../x wrote outside --out
    assert cli.main(["bench", "--case", "caching_quick", "--out", str(tmp_path / "o"),
                     "--name", name]) == 2
    assert "--name" in _one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------
# 8. generate: errors in the user's terms
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("decision", "item", "message"), [
    ("capacity", "workload=[1,2]", "workload must be a name, got [1, 2]"),
    ("decode_routing", 'arrivals={"a": 1}', 'arrivals must be a name, got {"a": 1}'),
    ("caching", "requests=[5,1]", "requests must be a number, got [5, 1]")])
def test_generate_refuses_a_list_for_a_single_value(decision, item, message, tmp_path, capsys):
    # closes: "unhashable type: 'list'"
    assert cli.main(["generate", decision, item, "-o", str(tmp_path / "x.json")]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_generate_names_the_parameter_behind_an_overflow(tmp_path, capsys):
    # closes: prediction_error=1e9 printed numpy RuntimeWarnings (site-packages lines), then an
    # error about the internal column 'predicted_tokens'
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = cli.main(["generate", "decode_routing", "prediction_error=1e9", "requests=50",
                         "-o", str(tmp_path / "x.json")])
    assert code == 2
    assert [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)] == []
    line = _one_error_line(capsys.readouterr().err)
    # (E20: the spread is capped at 10, so it is refused by name before any draw)
    assert "prediction_error must be a finite spread in [0, 10]" in line and "predicted_tokens" not in line
    # a message that names the parameter itself is left as it is
    assert cli.main(["generate", "capacity", "prediction_error=1", "-o", str(tmp_path / "x.json")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("servopt: error: generate capacity: unknown worker field(s) ['prediction_error']")
    assert not (tmp_path / "x.json").exists()


def test_generate_checks_the_output_path(tmp_path, capsys):
    # closes: -o '' and -o /missing/x.json gave bare errno messages ("[Errno 21] Is a directory")
    for output, message in (("", "-o: an empty path"),
                            (str(tmp_path / "missing" / "x.json"), "no such folder"),
                            (str(tmp_path), "a folder, not a file")):
        assert cli.main(["generate", "caching", "requests=50", "-o", output]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert message in line and "Errno" not in line
    assert not (tmp_path / "missing").exists()
    assert cli.main(["generate", "caching", "requests=50", "-o", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["decision"] == "caching"


# ---------------------------------------------------------------------------------------------
# 10. --version, python -m servopt, solve NAME
# ---------------------------------------------------------------------------------------------
def test_version_and_python_dash_m():
    # closes: no --version; `python -m servopt` said "No module named servopt.__main__"
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "servopt", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"servopt {version('servopt')}"
    done = subprocess.run([sys.executable, "-m", "servopt", "solve", "nosuch"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "neither a file nor the name of a library instance" in done.stderr


def test_no_command_is_a_usage_error_with_the_help_on_stderr(capsys):
    # closes: `servopt` alone printed the help and exited 0, so a script that lost its command
    # passed as a successful run
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "usage: servopt" in err and "COMMAND" in err


def test_solve_an_unknown_name_says_neither_file_nor_library(capsys):
    # closes: `servopt solve bs_ofline_15` said only "no such file"
    assert cli.main(["solve", "bs_ofline_15"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "neither a file nor the name of a library instance" in line and "bs_offline_15" in line


@pytest.mark.parametrize("argv, says", [
    (["--rate", "-1"], "--rate: arrival_rate"),
    (["--rate", "5", "--kv-tokens", "-5"], "--kv-tokens: kv_tokens"),
    (["--rate", "5", "--token-budget", "0"], "--token-budget: token_budget"),
])
def test_capacity_errors_name_the_option(argv, says, capsys):
    assert cli.main(["capacity", "--workload", "conversation", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_capacity_headroom_is_printed_as_given(capsys):
    assert cli.main(["capacity", "--workload", "conversation", "--rate", "5", "--headroom",
                     "0.99999"]) == 0
    assert "99.999% headroom" in capsys.readouterr().out  # was rounded to "100%"
