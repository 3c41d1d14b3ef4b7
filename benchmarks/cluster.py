"""Checks that keep a benchmark run on a Dask cluster from giving silently wrong numbers.

A Dask worker runs whatever servopt and traces its own machine has, and the client caches its
rows under the client's code fingerprint. So, for ``runner.run(..., scheduler=...)``:

- :func:`check_address` refuses a ``--scheduler`` value that is not an address, naming it;
- :func:`check_workers`, before anything is submitted, asks every worker (with stdlib callables
  only, so a worker without servopt answers with an error instead of dying) to import servopt
  and compute each case's code fingerprint, and stops in one line naming the first worker that
  cannot or whose fingerprint is not the client's;
- :func:`on_worker` runs one unit and stamps the row with the worker's address and code
  fingerprint, and :func:`checked_row` (on the client) refuses a row computed by other code
  (a worker that joined after the check) or on traces whose content differs from the client's
  files of the same name (:func:`servopt.instances.traces.changed_read`), then removes the stamp;
- :func:`dask_errors` turns what Dask raises when the scheduler is lost or a unit kills its
  workers (``KilledWorker``) into one-line ``RuntimeError`` s naming what happened (the case,
  method and seed of a killed unit).

Units that finished before a failure were handed to the runner, which cached them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from servopt.instances import traces

BOUND = "__bound__"  # the method name of a case's bound row (the runner's, defined here below it)
TRACE_READS = "trace_reads"  # a cached row's record of the traces its run found or read

PROBE_TIMEOUT_S = 60.0  # seconds for every worker to answer the pre-run check
WORKER = "dask_worker"  # a row's stamp: the address of the worker that computed it
WORKER_CODE = "dask_worker_code"  # a row's stamp: that worker's code fingerprint of the case
KEY_PREFIX = "servopt-"  # the runner's Dask keys are KEY_PREFIX + the unit's cache key


def check_address(scheduler: str) -> None:
    """Refuse a ``--scheduler`` value that is neither ``"local"`` nor a Dask address
    (``host:port``, ``tcp://host:port``, ...), naming it, with ``ValueError``."""
    if scheduler == "local":
        return
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend

    hint = "give the Dask scheduler's host:port (e.g. tcp://10.0.0.5:8786) or 'local'"
    try:
        scheme, location = parse_address(scheduler, strict=False)
        get_backend(scheme)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--scheduler {scheduler!r}: not a Dask address ({exc}); {hint}") from None
    if scheme in ("tcp", "tls", "ws", "wss"):
        host, sep, port = location.rpartition(":")
        if not sep:
            raise ValueError(f"--scheduler {scheduler!r}: no port; {hint}")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--scheduler {scheduler!r}: port {port!r} is not a number from 1 "
                             f"to 65535; {hint}")
        if not host.strip("[]"):
            raise ValueError(f"--scheduler {scheduler!r}: no host; {hint}")


def fingerprints(cases: Iterable[Any]) -> dict[str, str | None]:
    """``{case name: code fingerprint}`` of the given cases on this machine (run on the
    client, and on each worker by :func:`check_workers`)."""
    from servopt.benchmarks.runner import code_fingerprint

    return {case.name: code_fingerprint(case) for case in cases}


def _first_difference(mine: dict[str, str], theirs: Any) -> str | None:
    if not isinstance(theirs, dict):
        return f"answered {theirs!r}"
    for name, digest in mine.items():
        if theirs.get(name) != digest:
            return (f"runs other servopt code than this machine for case {name} (code "
                    f"fingerprint {theirs.get(name)} against {digest})")
    return None


def _run_everywhere(client: Any, timeout: float, function: Callable, *args: Any) -> dict:
    """``client.run(function, *args)`` on every worker, each answer a value or the exception
    the worker raised; ``RuntimeError`` if they have not all answered in ``timeout`` s."""
    pool = cf.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(client.run, function, *args, on_error="return")
        return future.result(timeout=timeout)
    except cf.TimeoutError:
        raise RuntimeError(
            f"the Dask workers did not answer the pre-run check ({function.__name__}) within "
            f"{timeout:g} s; nothing was submitted: see the worker logs") from None
    finally:
        pool.shutdown(wait=False)


def _worker_labels(client: Any) -> dict[str, str]:
    """``{address: "address (name N)"}`` of the connected workers (the name given to
    ``dask worker --name``, which the address alone does not show)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # (a Dask that lists every worker without being asked)
        info = client.scheduler_info()
    labels = {}
    for address, worker in info.get("workers", {}).items():
        name = str(worker.get("name", ""))
        labels[address] = f"{address} (name {name})" if name and name != address else address
    return labels


def check_workers(client: Any, cases: Iterable[Any], *, plugins: Iterable[str] = (),
                  timeout: float = PROBE_TIMEOUT_S) -> dict[str, str | None]:
    """Before any unit is submitted: every worker now connected imports servopt, loads the
    client's plug-in modules (``plugins``: ``servopt bench --plugin``, see
    :func:`servopt.benchmarks.registry.load_plugin`; a worker must have their decisions and
    cases registered too) and computes the client's code fingerprint for every case (which
    covers the plug-ins' source), else ``RuntimeError`` naming the first worker that does not
    (and what it has instead). ``timeout``: seconds for all to answer.
    Returns the client's ``{case name: fingerprint}`` (for :func:`checked_row`).

    The first question is asked with :func:`importlib.import_module` (a stdlib callable), so a
    worker without servopt answers with its ImportError instead of dying while it unpickles a
    servopt function (which left the client waiting forever)."""
    cases = list({case.name: case for case in cases}.values())
    mine = fingerprints(cases)
    fix = ("install the client's servopt on every worker, with the same files of the cases' "
           "own code and plug-ins (or run without --scheduler); nothing was submitted")
    answers = _run_everywhere(client, timeout, importlib.import_module, __name__)
    labels = _worker_labels(client)
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise RuntimeError(f"Dask worker {labels.get(worker, worker)} cannot import "
                               f"{__name__} ({type(answer).__name__}: {answer}); {fix}")
    plugins = list(plugins)
    if plugins:
        from servopt.benchmarks.registry import load_plugins

        answers = _run_everywhere(client, timeout, load_plugins, plugins)
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                raise RuntimeError(
                    f"Dask worker {labels.get(worker, worker)} cannot load the plug-in modules "
                    f"{', '.join(plugins)} ({type(answer).__name__}: {answer}); give every "
                    "worker the same files on its PYTHONPATH; nothing was submitted")
    answers = _run_everywhere(client, timeout, fingerprints, cases)
    for worker, answer in sorted(answers.items()):
        label = labels.get(worker, worker)
        if isinstance(answer, BaseException):
            raise RuntimeError(f"Dask worker {label} cannot compute the cases' code fingerprint "
                               f"({type(answer).__name__}: {answer}); {fix}")
        different = _first_difference(mine, answer)
        if different is not None:
            raise RuntimeError(f"Dask worker {label} {different}; {fix}")
    return mine


def on_worker(function: Callable[..., dict[str, Any]], case: Any, *args: Any) -> dict[str, Any]:
    """``function(case, *args)`` (the runner's ``run_unit``) on a Dask worker, its row stamped
    with the worker's address and its code fingerprint of ``case`` (for :func:`checked_row`)."""
    from distributed import get_worker

    row = function(case, *args)
    try:
        worker = get_worker()
    except ValueError:  # not on a worker (a test calling it directly)
        row[WORKER] = "(no worker)"
    else:
        name = str(worker.name)
        row[WORKER] = worker.address + (f" (name {name})" if name and name != worker.address
                                        else "")
    row[WORKER_CODE] = fingerprints([case])[case.name]
    return row


def checked_row(row: dict[str, Any], fingerprint: str | None = None) -> dict[str, Any]:
    """A worker's row made fit for the client's table and cache: ``RuntimeError`` naming the
    worker, case, method and seed if the row was computed by other code than ``fingerprint``
    (the client's, when the row carries :func:`on_worker`'s stamp), or read a trace whose
    content is not this machine's file of that name (an absent trace counts: the run would
    be skipped on one side only). Returns the row without the stamp."""
    worker = row.pop(WORKER, None)
    code = row.pop(WORKER_CODE, None)
    where = f"Dask worker {worker}" if worker else "a Dask worker"
    unit = _unit_words(row.get("case"), row.get("method"), row.get("seed"))
    if fingerprint is not None and code is not None and code != fingerprint:
        raise RuntimeError(f"{where} ran {unit} with other servopt code than this machine's "
                           f"(code fingerprint {code} against {fingerprint}): install the "
                           "client's servopt on every worker; the row was not kept")
    reads = row.get(TRACE_READS)
    changed = traces.changed_read(reads) if isinstance(reads, dict) else None
    if changed is not None:
        what, theirs, here = changed
        kind, _, name = what.partition(":")
        label = name if kind == "shared" else f"{name.rsplit('/', 1)[-1]} (at {name} there)"

        def said(digest: str) -> str:
            return "no such file" if digest == traces.ABSENT else f"sha256 {digest[:12]}..."
        raise RuntimeError(f"{where} ran {unit} on trace {label} with {said(theirs)} but this "
                           f"machine has {said(here)}: give every worker the client's traces "
                           "(SERVOPT_TRACES); the row was not kept")
    return row


def _unit_named(key: Any, units: dict[str, tuple]) -> str:
    text = str(key)
    unit = units.get(text[len(KEY_PREFIX):] if text.startswith(KEY_PREFIX) else text)
    if unit is None:
        return f"the Dask task {text}"
    _, case, params, seed, method = unit
    from servopt.benchmarks.registry import params_label

    return _unit_words(case.name, method, seed) + (f", params {params_label(params)}"
                                                   if params else "")


def _unit_words(case: Any, method: Any, seed: Any) -> str:
    what = "the bound" if method == BOUND else f"method {method}"
    return f"case {case}, {what}, seed {seed}"


class UnitKilledError(RuntimeError):
    """A unit's process was killed (a signal: the OOM killer, a segfault in a solver, kill -9):
    one line naming the unit. The run failed, it was not misused: ``exit_status`` 1 (the
    command line's status for a run that failed), not the 2 of bad input or options."""

    exit_status = 1


def one_line(exc: BaseException, units: Iterable[tuple], scheduler: str) -> RuntimeError | None:
    """The one-line ``RuntimeError`` for what Dask raised during a run, else None (not Dask's).
    ``units``: the runner's ``(key, case, params, seed, method)`` that were submitted."""
    from distributed.comm import CommClosedError
    from distributed.scheduler import KilledWorker

    kept = "the runs that finished are cached (unless --no-cache) and the next run resumes"
    where = "a local Dask cluster" if scheduler == "local" else f"the Dask scheduler {scheduler}"
    if isinstance(exc, KilledWorker):
        named = _unit_named(exc.args[0] if exc.args else "?", {u[0]: u for u in units})
        attempts = exc.args[2] + 1 if len(exc.args) > 2 and isinstance(exc.args[2], int) else None
        return UnitKilledError(f"{named} killed the Dask worker that ran it"
                            + (f" {attempts} times" if attempts else "")
                            + f" (out of memory? see the worker logs, or run it without "
                            f"--scheduler); {kept}")
    # a cancelled future: distributed's FutureCancelledError (2024.7 on, which names its reason)
    # subclasses concurrent.futures' CancelledError, which is what earlier releases raise
    if isinstance(exc, CommClosedError | cf.CancelledError):
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return RuntimeError(f"lost {where} mid-run ({reason}); {kept}")
    return None


class _NoConnectionTracebacks(logging.Filter):
    """Drops the Dask client's logged tracebacks of a failed connection (its attempts to
    reconnect to a lost scheduler): the run then stops with one line saying so."""

    def filter(self, record: logging.LogRecord) -> bool:
        from distributed.comm import CommClosedError

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError | CommClosedError | OSError)


@contextmanager
def dask_errors(units: Iterable[tuple], scheduler: str) -> Iterator[None]:
    """Inside the block, what :func:`one_line` recognises is raised as its one-line
    ``RuntimeError`` (the Dask traceback is dropped), and the Dask client logs no traceback of
    a lost connection; anything else passes unchanged."""
    units = list(units)
    quiet = _NoConnectionTracebacks()
    client_log = logging.getLogger("distributed.client")
    client_log.addFilter(quiet)
    try:
        yield
    except Exception as exc:
        clean = one_line(exc, units, scheduler)
        if clean is None:
            raise
        raise clean from None
    finally:
        client_log.removeFilter(quiet)
