"""Dask cluster runs refuse, in one line, what would give silently wrong numbers: a worker with
other servopt code or without servopt, a row computed on other trace content, a mistyped
--scheduler; and a lost scheduler or a unit that kills its workers is one line naming it."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import threading
from pathlib import Path

import pytest

from servopt.benchmarks import Case
from servopt.benchmarks import cluster as checks
from servopt.benchmarks import runner as runner_mod
from servopt.instances import traces

from toy_decision import make_instance

distributed = pytest.importorskip("distributed")

CASE = Case(name="toy_cluster", decision="toy_production", grid=({"products": 3},), seeds=(0,),
            make_instance=make_instance, methods=("greedy",))


def sha(data: bytes) -> str:
    """The digest a trace read records: sha256, first 32 hex digits (computed here by hashlib)."""
    return hashlib.sha256(data).hexdigest()[:32]


@pytest.fixture
def client_traces(tmp_path, monkeypatch):
    """This machine's trace folder (SERVOPT_TRACES) holding azure.csv."""
    folder = tmp_path / "client_traces"
    folder.mkdir()
    (folder / "azure.csv").write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n")
    monkeypatch.setenv("SERVOPT_TRACES", str(folder))
    return folder


# --- item 5: a worker that mounts the traces elsewhere reuses the client's cached rows ----------

def test_a_read_recorded_at_another_path_is_compared_by_name_and_digest(client_traces):
    content = (client_traces / "azure.csv").read_bytes()
    worker_path = "/mnt/elsewhere/traces/azure.csv"  # not a file on this machine
    assert not Path(worker_path).exists()
    # what a worker's run records: its lookup of the name and the file its reader opened
    reads = {"shared:azure.csv": sha(content), f"file:{worker_path}": sha(content)}
    assert traces.reads_unchanged(reads)  # (the path-based check said False: recompute always)
    assert traces.changed_read(reads) is None
    # a file read without a lookup is found by its name in this machine's trace folder
    assert traces.reads_unchanged({f"file:{worker_path}": sha(content)})
    # other content under the same name is a change, whichever entry carries it
    other = sha(b"other bytes")
    assert traces.changed_read({f"file:{worker_path}": other}) == (
        f"file:{worker_path}", other, sha(content))
    assert traces.changed_read({"shared:azure.csv": other, f"file:{worker_path}": other}) == (
        "shared:azure.csv", other, sha(content))
    assert traces.changed_read({"file:/mnt/elsewhere/nothere.csv": sha(content)}) == (
        "file:/mnt/elsewhere/nothere.csv", sha(content), traces.ABSENT)


def test_a_file_that_exists_here_is_still_compared_at_its_path(client_traces, tmp_path):
    own = tmp_path / "mine.csv"
    own.write_bytes(b"abc")
    assert traces.reads_unchanged({f"file:{own}": sha(b"abc")})
    own.write_bytes(b"abd")
    assert traces.changed_read({f"file:{own}": sha(b"abc")}) == (f"file:{own}", sha(b"abc"),
                                                                 sha(b"abd"))


# --- item 2: a row computed on other trace content is refused, naming it ------------------------

def _row(reads: dict[str, str], **stamp: str) -> dict:
    return {"case": "capacity_quick", "method": "fluid", "seed": 3, "status": "ok", "cost": 1.0,
            "trace_reads": reads, **stamp}


def test_a_row_read_on_another_trace_of_the_same_name_is_refused(client_traces):
    content = (client_traces / "azure.csv").read_bytes()
    fake = sha(b"a worker's own azure.csv")
    row = _row({"shared:azure.csv": fake, "file:/w/azure.csv": fake},
               **{checks.WORKER: "tcp://10.0.0.7:40000", checks.WORKER_CODE: "f" * 16})
    with pytest.raises(RuntimeError) as err:
        checks.checked_row(row, "f" * 16)
    text = str(err.value)
    assert "\n" not in text
    for part in ("tcp://10.0.0.7:40000", "capacity_quick", "fluid", "seed 3", "azure.csv",
                 fake[:12], sha(content)[:12]):
        assert part in text
    # a worker that does not have the trace the client has (its row would say skipped)
    with pytest.raises(RuntimeError, match="no such file but this machine has sha256"):
        checks.checked_row(_row({"shared:azure.csv": traces.ABSENT}))


def test_a_row_on_the_same_traces_elsewhere_is_kept_without_the_stamp(client_traces):
    digest = sha((client_traces / "azure.csv").read_bytes())
    row = _row({"shared:azure.csv": digest, "file:/w/azure.csv": digest},
               **{checks.WORKER: "tcp://10.0.0.7:40000", checks.WORKER_CODE: "f" * 16})
    kept = checks.checked_row(dict(row), "f" * 16)
    assert kept == {k: v for k, v in row.items() if k not in (checks.WORKER, checks.WORKER_CODE)}


def test_a_row_computed_by_other_code_is_refused(client_traces):
    row = _row({}, **{checks.WORKER: "tcp://10.0.0.7:40000", checks.WORKER_CODE: "0" * 16})
    with pytest.raises(RuntimeError, match=r"tcp://10.0.0.7:40000 ran case capacity_quick, "
                                           r"method fluid, seed 3 with other servopt code"):
        checks.checked_row(row, "1" * 16)
    bound = {**row, "method": "__bound__", checks.WORKER_CODE: "0" * 16}
    with pytest.raises(RuntimeError, match=r"ran case capacity_quick, the bound, seed 3 with"):
        checks.checked_row(bound, "1" * 16)


# --- item 6: a mistyped --scheduler names it ----------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1:8799x", "tcp://127.0.0.1:", "tcp://host:99999",
                                     "127.0.0.1", "nope://127.0.0.1:8786"])
def test_a_mistyped_scheduler_address_names_the_option(address):
    with pytest.raises(ValueError) as err:
        checks.check_address(address)
    assert str(err.value).startswith(f"--scheduler {address!r}")
    assert "invalid literal" not in str(err.value)


@pytest.mark.parametrize("address", ["local", "127.0.0.1:8786", "tcp://10.0.0.5:8786",
                                     "tcp://[::1]:8786", "inproc://10.0.0.1/123/1"])
def test_a_scheduler_address_is_accepted(address):
    checks.check_address(address)


# --- item 3: Dask's failures become one line naming what happened -------------------------------

def test_a_killed_worker_names_the_case_method_and_seed():
    from distributed.scheduler import KilledWorker

    units = [("abc123", CASE, {"products": 3}, 7, "greedy"), ("def456", CASE, {}, 1, "exact")]
    error = checks.one_line(KilledWorker("servopt-abc123", None, 3), units, "tcp://h:8786")
    assert "\n" not in str(error)
    assert str(error).startswith('case toy_cluster, method greedy, seed 7, params {"products": 3} '
                                 "killed the Dask worker that ran it 4 times")
    assert "cached" in str(error)
    try:  # a future cancelled by a lost scheduler: distributed 2024.7 on names the reason
        from distributed.client import FutureCancelledError
        cancelled = FutureCancelledError("servopt-def456", reason="scheduler-connection-lost")
        reason = "scheduler-connection-lost"
    except ImportError:  # earlier: concurrent.futures' CancelledError, without one
        cancelled, reason = cf.CancelledError("servopt-def456"), "CancelledError"
    lost = checks.one_line(cancelled, units, "tcp://h:8786")
    assert str(lost).startswith(f"lost the Dask scheduler tcp://h:8786 mid-run ({reason})")
    assert checks.one_line(ZeroDivisionError("x"), units, "local") is None
    with pytest.raises(RuntimeError, match=r"^case toy_cluster, method exact, seed 1 killed"):
        with checks.dask_errors(units, "local"):
            raise KilledWorker("servopt-def456", None, 0)
    with pytest.raises(ZeroDivisionError):  # not Dask's: unchanged
        with checks.dask_errors(units, "local"):
            raise ZeroDivisionError


# --- items 1 and 4 on a real cluster: the pre-run check of every worker --------------------------

def test_workers_with_the_clients_code_pass_and_one_with_other_code_is_named(monkeypatch):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        ((worker, info),) = client.scheduler_info()["workers"].items()
        worker = f"{worker} (name {info['name']})"  # as dask worker --name shows it
        codes = checks.check_workers(client, [CASE, CASE], timeout=30)
        assert codes == {"toy_cluster": runner_mod.code_fingerprint(CASE)}
        # the unit wrapper stamps what the worker ran with
        row = client.submit(checks.on_worker, runner_mod.run_unit, CASE, {"products": 3}, 0,
                            "greedy", pure=False).result()
        assert row[checks.WORKER] == worker
        assert row[checks.WORKER_CODE] == codes["toy_cluster"]
        assert checks.checked_row(row, codes["toy_cluster"])["status"] == "ok"

        # the worker (its own thread in this process) computes another fingerprint
        real = runner_mod.code_fingerprint
        main = threading.main_thread()
        monkeypatch.setattr(runner_mod, "code_fingerprint", lambda case: real(case)
                            if threading.current_thread() is main else "0123456789abcdef")
        with pytest.raises(RuntimeError) as err:
            checks.check_workers(client, [CASE], timeout=30)
        text = str(err.value)
        assert "\n" not in text
        assert text.startswith(f"Dask worker {worker} runs other servopt code than this machine "
                               f"for case toy_cluster (code fingerprint 0123456789abcdef against "
                               f"{real(CASE)})")
        # and a row it computes after the check (a worker that joined later) is refused
        row = client.submit(checks.on_worker, runner_mod.run_unit, CASE, {"products": 3}, 0,
                            "greedy", pure=False).result()
        with pytest.raises(RuntimeError, match="with other servopt code"):
            checks.checked_row(row, real(CASE))


def test_a_worker_without_servopt_is_named_instead_of_hanging(tmp_path):
    # a worker process in which servopt cannot be imported (set up by a Dask preload script,
    # run in the worker before it serves anything)
    preload = tmp_path / "no_servopt.py"
    preload.write_text("import sys\nsys.modules['servopt'] = None  # as if not installed\n")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0", preload=[str(preload)]) as cluster, \
            distributed.Client(cluster) as client:
        ((worker, info),) = client.scheduler_info()["workers"].items()
        worker = f"{worker} (name {info['name']})"
        with pytest.raises(RuntimeError) as err:
            checks.check_workers(client, [CASE], timeout=60)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"Dask worker {worker} cannot import servopt.benchmarks.cluster "
                           "(ModuleNotFoundError: ")
