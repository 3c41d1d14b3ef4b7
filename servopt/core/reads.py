"""Which data files a block of code read, by content digest: what a benchmark cache keys a run
on, so a cached row is reused only while every file behind it is unchanged.

:func:`recording_reads` collects ``{what: digest}`` inside its block; readers call
:func:`note_read` (``"file:PATH"`` for a file opened, ``"shared:NAME"`` for a public-trace
lookup, ``ABSENT`` when nothing was found). Used by the trace readers and by every instance,
expert-load or solution file read through :func:`servopt.core.instance.read_text_file`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

ABSENT = "absent"  # what a read of a file that is not there records

_FILE_DIGESTS: dict[tuple[str, int, int], bytes] = {}  # (path, size, mtime_ns) -> sha256
_READS: ContextVar[dict[str, str] | None] = ContextVar("servopt_trace_reads", default=None)


def file_digest(path: Path) -> bytes:
    """sha256 of a file's content, read in 1 MiB chunks and remembered while the file's size
    and modification time stay the same (a benchmark run asks once per case)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_DIGESTS[key] = digest.digest()
    return _FILE_DIGESTS[key]


def note_read(what: str, path: Path | None) -> None:
    """Record ``what`` (``"file:PATH"`` or ``"shared:NAME"``) with the digest of ``path``'s
    content (``ABSENT`` for None) when a :func:`recording_reads` block is open."""
    reads = _READS.get()
    if reads is not None:
        reads[what] = file_digest(path).hex()[:32] if path is not None else ABSENT


@contextmanager
def recording_reads() -> Iterator[dict[str, str]]:
    """Record every data file read inside the block, as ``{what: digest}``: ``"shared:NAME"``
    for a public-trace lookup (``"absent"`` if not found) and ``"file:PATH"`` for a file a reader
    opened (a trace, an instance or expert-load JSON, a saved solution's files)."""
    reads: dict[str, str] = {}
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)
