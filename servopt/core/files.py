"""Writing a file whole or not at all: the one helper every servopt writer goes through
(``Instance.to_json``, ``Solution.save``, the benchmark cache and reports)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def replace_file(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temporary)`` to write a new file beside ``path`` (same folder, so same file
    system), then move it onto ``path`` with :func:`os.replace`; returns ``path``. A write that
    fails or is interrupted (killed, a full disk, a file-size limit) leaves the old file or none,
    never half of the new one, and removes its temporary file where it can; a symbolic link at
    ``path`` is replaced, not followed, and a reader never sees half a file."""
    path = Path(path)
    # (a name near the file system's 255-byte limit gets a short temporary name instead of
    # one longer than the limit)
    stem = path.name if len(os.fsencode(path.name)) <= 200 else "servopt"
    temporary = path.parent / f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # new and ours alone; its mode follows the umask, as a plain write's would (mkstemp's: 0600)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def replace_text(path: str | Path, text: str) -> Path:
    """Write ``text`` at ``path`` through :func:`replace_file`."""
    return replace_file(path, lambda temporary: temporary.write_text(text))
