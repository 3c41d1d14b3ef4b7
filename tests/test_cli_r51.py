"""The command line's problems found by audit R51: ``generate -o`` wrote in place (a failed write
destroyed the old file), ``bench --suite ""`` ran the quick suite, a folder at ``OUT/NAME.md`` was
found after all the runs, whole-number options refused the e-notation README promises,
``generate -o newdir/`` wrote a file named newdir, and ``solve`` echoed 15 KB of JSON text back."""

from __future__ import annotations

import errno
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from servopt import cli
from servopt.benchmarks import registry, report, runner
from servopt.core import files
from servopt.instances import caching


@pytest.fixture(autouse=True)
def _registry_restored(monkeypatch):
    monkeypatch.setattr(registry, "_CASES", dict(registry._CASES))
    monkeypatch.setattr(registry, "_ORIGINS", dict(registry._ORIGINS))


@pytest.fixture
def no_runs(monkeypatch):
    """A bench that gets as far as its runs fails the test."""
    def run(*args, **kwargs):
        raise AssertionError("the runs started")
    monkeypatch.setattr(runner, "run", run)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("servopt: error: "), err
    return err


# -- F1: generate -o and Instance.to_json write whole or not at all ---------------------------

def _half_then_fail(monkeypatch):
    """``Path.write_text`` writes half of its text, then fails as a full disk would."""
    real = Path.write_text

    def write_text(self, data, *args, **kwargs):
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", write_text)


def test_generate_failed_write_keeps_old_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "keep.json"
    assert cli.main(["generate", "caching", "requests=50", "-o", str(target)]) == 0
    old = target.read_bytes()
    caching.Instance.from_dict(json.loads(old))  # a good instance to start from
    _half_then_fail(monkeypatch)
    assert cli.main(["generate", "caching", "requests=500", "-o", str(target)]) == 2
    assert "cannot write it (No space left on device)" in _error(capsys)
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]  # no temporary file left


def test_to_json_failed_write_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "inst.json"
    target.write_text("the old file")
    instance = caching.generate(requests=50, objects=20, seed=0)
    _half_then_fail(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        instance.to_json(target)
    assert target.read_text() == "the old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inst.json"]


def test_to_json_writes_the_text_it_returns(tmp_path):
    instance = caching.generate(requests=50, objects=20, seed=0)
    target = tmp_path / "inst.json"
    target.write_text("x" * 100_000)  # a longer old file: nothing of it may remain
    text = instance.to_json(target)
    assert target.read_text() == text
    assert caching.Instance.from_dict(json.loads(target.read_text())).to_json() == text


def test_generate_under_a_file_size_limit_keeps_old_file(tmp_path):
    """The audit's reproducer: ``ulimit -f 20`` (20 KiB) and a 5000-request instance."""
    target = tmp_path / "keep.json"
    command = [sys.executable, "-m", "servopt", "generate", "caching"]
    subprocess.run([*command, "requests=50", "-o", str(target)], check=True, capture_output=True)
    old = target.read_bytes()
    assert len(old) < 20 * 1024

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, 20 * 1024))
    done = subprocess.run([*command, "requests=5000", "-o", str(target)], capture_output=True,
                          text=True, preexec_fn=limit)
    assert done.returncode == 2, done.stderr
    assert "cannot write it (File too large)" in done.stderr
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]


def test_one_atomic_writer():
    """The reports, the solution files and the instances share one helper, not copies."""
    from servopt.core import solution

    assert report.write_atomic is files.replace_file is solution.replace_file


# -- F2: bench --suite "" ---------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--list"], ["--case", "capacity_quick"]])
def test_bench_empty_suite_refused(tmp_path, capsys, no_runs, extra):
    assert cli.main(["bench", "--suite", "", "--out", str(tmp_path / "o"), *extra]) == 2
    assert "--suite: an empty name (an unset shell variable?)" in _error(capsys)
    assert not (tmp_path / "o").exists()


def test_bench_blank_suite_refused(tmp_path, capsys, no_runs):
    assert cli.main(["bench", "--suite", "  ", "--out", str(tmp_path)]) == 2
    assert "--suite: an empty name" in _error(capsys)


# -- F3: a folder where bench writes a report, refused before the runs ------------------------

@pytest.mark.parametrize("suffix", [".md", ".csv", "-gap.png", "-cost-time.png", "-tracebacks.txt"])
def test_bench_report_folder_refused_before_runs(tmp_path, capsys, no_runs, suffix):
    (tmp_path / f"quick{suffix}").mkdir()
    code = cli.main(["bench", "--case", "capacity_quick", "--out", str(tmp_path), "--name",
                     "quick", "--quiet", "--no-plots"])
    assert code == 2
    err = _error(capsys)
    assert f"{tmp_path / f'quick{suffix}'}: a folder where servopt bench writes" in err
    assert ".tmp" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"quick{suffix}"]


def test_bench_default_name_checked_too(tmp_path, capsys, no_runs):
    (tmp_path / "capacity_quick.md").mkdir()  # the name --case gives the report
    assert cli.main(["bench", "--case", "capacity_quick", "--out", str(tmp_path), "--quiet"]) == 2
    assert "capacity_quick.md: a folder" in _error(capsys)


# -- F4: whole numbers in e-notation ----------------------------------------------------------

CAPACITY = ["capacity", "--workload", "code", "--rate", "20"]


def test_capacity_requests_and_kv_tokens_in_e_notation(capsys):
    assert cli.main([*CAPACITY, "--requests", "10000", "--kv-tokens", "500000"]) == 0
    plain = capsys.readouterr().out
    assert cli.main([*CAPACITY, "--requests", "1e4", "--kv-tokens", "5e5"]) == 0
    assert capsys.readouterr().out == plain
    assert "10000 length samples" in plain and "M=500000 KV tokens" in plain


@pytest.mark.parametrize(("argv", "dest", "value"), [
    (["capacity", "--workload", "code", "--sim-requests", "2e3"], "sim_requests", 2000),
    (["capacity", "--workload", "code", "--sim-seeds", "1E1"], "sim_seeds", 10),
    (["capacity", "--workload", "code", "--token-budget", "4.096e3"], "token_budget", 4096),
    (["capacity", "--workload", "code", "--batch-cap", "2.56e2"], "batch_cap", 256),
    (["capacity", "--workload", "code", "--prefill-chunk", "5e2"], "prefill_chunk", 500),
    (["capacity", "--workload", "code", "--gpus", "2e0"], "gpus", 2),
    (["capacity", "--workload", "code", "--seed", "1e1"], "seed", 10),
    (["solve", "f.json", "--prices", "1e1"], "prices", 10),
    (["bench", "--jobs", "2e0"], "jobs", 2),
    (["generate", "caching", "-o", "x.json", "--seed", "1e30"], "seed", 10**30),  # exactly
    (["generate", "caching", "-o", "x.json", "--seed", "7"], "seed", 7),
])
def test_whole_number_options_take_e_notation(argv, dest, value):
    assert getattr(cli.build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize("value", ["1.5", "1e-1", "1.0", "abc", "1e400", "nan"])
def test_whole_number_options_refuse_others(capsys, value):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*CAPACITY, "--requests", value])
    assert exit_.value.code == 2
    err = _error(capsys)
    assert f"argument --requests: a whole number is needed (e.g. 10000 or 1e4), got '{value}'" in err


# -- F5: generate -o newdir/ ------------------------------------------------------------------

@pytest.mark.parametrize("tail", ["newdir/", "newdir/.", "."])
def test_generate_folder_path_refused(tmp_path, capsys, tail):
    path = f"{tmp_path}/{tail}"
    assert cli.main(["generate", "caching", "requests=50", "-o", path]) == 2
    assert f"-o {path}: a folder path" in _error(capsys)
    assert list(tmp_path.iterdir()) == []


# -- F6: solve with an empty or JSON-like argument --------------------------------------------

@pytest.mark.parametrize("argument", ["", "   "])
def test_solve_empty_argument(capsys, argument):
    assert cli.main(["solve", argument]) == 2
    err = _error(capsys)
    assert "solve: an empty file name (an unset shell variable?)" in err
    assert "JSON text" not in err  # (solve does not take JSON text)


def test_solve_json_text_says_what_is_accepted(capsys):
    assert cli.main(["solve", '{"a":1}']) == 2
    assert ("solve takes an instance file (`servopt generate` writes one) or the name of a "
            "library instance") in _error(capsys)


def test_solve_long_json_text_is_shortened(capsys):
    text = caching.generate(requests=50, seed=0).to_json()
    assert len(text) > 10_000
    assert cli.main(["solve", text]) == 2
    err = _error(capsys)
    assert "not JSON text" in err and len(err) < 400


def test_solve_long_name_is_shortened(capsys):
    assert cli.main(["solve", "x" * 20_000]) == 2
    err = _error(capsys)
    assert "File name too long" in err and len(err) < 300


# -- minor ones -------------------------------------------------------------------------------

def test_generate_usage_shows_params_optional(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "-o", "x.json"])
    err = _error(capsys)
    assert "required: decision " in err and "params" not in err


def test_generate_seed_has_help():
    text = cli.build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    assert "seed of the generator's random draws (default 0" in " ".join(text.split())


def test_capacity_negative_seed_names_the_option(capsys):
    assert cli.main([*CAPACITY, "--seed", "-1"]) == 2
    assert "servopt: error: --seed: " in _error(capsys)


def test_bench_case_typo_suggests_close_names(tmp_path, capsys, no_runs):
    assert cli.main(["bench", "--case", "capacity_quik", "--out", str(tmp_path)]) == 2
    err = _error(capsys)
    assert "--case capacity_quik: no benchmark case of that name (did you mean capacity_quick" in err
    assert "['" not in err  # no Python list reprs


def test_mip_without_incumbent_says_why_no_prices(tmp_path, capsys):
    """A caching MIP stopped before any incumbent: no prices because there is nothing to fix the
    integers at, not because of the integer model (R51, minor)."""
    path = tmp_path / "c.json"
    caching.generate(requests=200, objects=40, seed=0).to_json(path)
    assert cli.main(["solve", str(path), "--time-limit", "1e-9"]) == 1
    out = capsys.readouterr().out
    assert "status    time_limit" in out and "objective nan" in out
    assert ("prices    none: no incumbent to fix the integer variables at (the time limit came "
            "first)") in out
    assert "zero by construction" not in out


def test_an_abbreviation_of_an_option_with_two_spellings_is_that_option(capsys):
    # closes: --memory was "ambiguous" between --memory-utilisation and --memory-utilization,
    # two spellings of one option; an abbreviation of two different options still is ambiguous
    args = ["capacity", "--workload", "code", "--rate", "5"]
    assert cli.main([*args, "--memory-utilisation", "0.8"]) == 0
    spelled = capsys.readouterr().out
    assert cli.main([*args, "--memory", "0.8"]) == 0
    assert capsys.readouterr().out == spelled
    assert cli.main([*args, "--memory-utilisation", "0.6"]) == 0
    assert capsys.readouterr().out != spelled  # (the option is read, not dropped)
    with pytest.raises(SystemExit) as stop:
        cli.main([*args, "--t", "5"])
    assert stop.value.code == 2
    assert "ambiguous option: --t could match --trace, --token-budget" in capsys.readouterr().err


def test_a_name_near_the_file_system_limit_is_written(tmp_path, capsys):
    # closes: the temporary file beside OUT was named ".OUT.<pid>.<hex>.tmp", 20-odd bytes longer
    # than OUT, so an OUT name the file system takes (255 bytes) failed with "File name too long"
    name = "i" * 250 + ".json"
    target = tmp_path / name
    assert cli.main(["generate", "caching", "requests=30", "objects=5", "-o", str(target)]) == 0
    assert len(caching.Instance.from_json(target).object_id) == 30
    files.replace_text(target, "x")  # and over an existing file, through the one helper
    assert target.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == [name]
