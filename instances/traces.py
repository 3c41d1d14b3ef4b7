"""Readers for public LLM-serving trace formats, all returning one standard request frame.

Request frames have the columns ``arrival_s`` (seconds from the first request kept, float),
``prompt_tokens`` and ``output_tokens`` (int64), and ``block_ids`` (a list of prefix block ids
per request) where the format has them. Every reader takes ``rate_scale`` (arrivals sped up by
this factor: 2.0 doubles the request rate) and a time window ``start_s`` / ``end_s`` in seconds
of the original trace, measured from its first request.

Formats
-------
- Azure LLM inference 2023 CSV: ``TIMESTAMP,ContextTokens,GeneratedTokens`` (``TIMESTAMP``
  date-times as published: ISO 8601, or one format inferred from the first row, in which an
  ambiguous ``12/11/2023`` reads month first; UTC offsets honoured; or plain numbers read as
  seconds).
- Mooncake JSONL: ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids`` (one id
  per 512-token block of the prompt: a line needs ``len(hash_ids) == ceil(input_length / 512)``,
  as on every line of the published traces; ids hashed over another block size are refused).
  A key given twice in one line's object is refused (which value is meant?), as in instance files.
- BurstGPT CSV: ``Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type``
  (``Timestamp`` in seconds; windows are measured before ``model`` / failed rows are dropped).
- Expert-load JSON: ``{"load_history": [{"logical_expert_load": [[...] per layer]} per step]}``
  (loads are numbers >= 0; ``true`` / ``false`` are refused).

Every file may be gzip-compressed (told by its content, whatever its name) and may start with a
UTF-8 byte-order mark. CSV files are read by their header's columns, in any order and beside
other columns: a column the reader uses may appear only once, and a data row may not hold more
values than the header has names (empty fields beyond them, as a trailing comma leaves, are
ignored). Token counts must be whole numbers of at most ``MAX_TOKENS``. Numeric timestamps above
``MAX_SECONDS`` (later than the year 5000 as seconds) are refused: they are milliseconds or
finer. Requests are returned sorted by arrival time (ties keep file order), whatever the file's
order. Errors name the 1-based data row (CSV, header excluded) or file line (JSONL).
"""

from __future__ import annotations

import csv
import gc
import gzip
import json
import os
import re
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servopt.core import InvalidInstanceError, checks
from servopt.core.instance import (
    GZIP_MAGIC,
    DuplicateKeyError,
    check_text_size,
    read_text_file,
    regular_file,
    unique_keys,
)
from servopt.core.reads import ABSENT
from servopt.core.reads import file_digest as _file_digest
from servopt.core.reads import note_read as _note_read
from servopt.core.reads import recording_reads as recording_reads  # the runner's entry point

REQUEST_COLUMNS = ["arrival_s", "prompt_tokens", "output_tokens"]
MAX_TOKENS = 10**12  # beyond any context window; larger counts are data errors (and overflow int64)
INT64 = (-(2**63), 2**63 - 1)
MAX_SECONDS = 1e11  # a numeric timestamp beyond this is not seconds (year 5138 as a Unix time)
BLOCK_TOKENS = 512  # tokens per Mooncake hash id (prefix block)


def trace_folders() -> list[Path]:
    """Where public traces are looked for, in order: ``$SERVOPT_TRACES``, then ``shared/traces``
    beside the package's parents and the working directory's parent. A ``$SERVOPT_TRACES`` that
    names no folder is refused (the user meant their folder, not whatever the fallback holds)."""
    candidates = []
    if os.environ.get("SERVOPT_TRACES"):
        chosen = Path(os.environ["SERVOPT_TRACES"])
        if not chosen.is_dir():
            what = "a file, not a folder" if chosen.exists() else "no such folder"
            raise InvalidInstanceError(f"SERVOPT_TRACES={chosen}: {what} (set it to the folder "
                                       "holding the traces, or unset it)")
        candidates.append(chosen)
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "traces" for p in here.parents[:4]]
    candidates.append(Path.cwd().parent / "shared" / "traces")
    return candidates


def shared_trace(name: str) -> Path | None:
    """Path of a public trace in ``$SERVOPT_TRACES`` or ``../shared/traces`` (None if absent;
    a ``$SERVOPT_TRACES`` that names no folder raises :class:`InvalidInstanceError`)."""
    found = next((folder / name for folder in trace_folders() if (folder / name).is_file()), None)
    _note_read(f"shared:{name}", found)
    return found


def reads_unchanged(reads: dict[str, str]) -> bool:
    """Whether every lookup and file in ``reads`` (from :func:`recording_reads`) would give
    the same content now: the same shared trace found for each name, each file unchanged
    (see :func:`changed_read`)."""
    return changed_read(reads) is None


def changed_read(reads: dict[str, str]) -> tuple[str, str, str] | None:
    """The first entry of ``reads`` (from :func:`recording_reads`, possibly made on another
    machine) whose content differs here, as ``(what, recorded digest, digest here)`` (a digest
    is ``"absent"`` for no file), else None.

    ``"shared:NAME"`` is compared with this machine's :func:`shared_trace` lookup of NAME. A
    ``"file:PATH"`` is compared by name and digest, not by where it was: it is covered by a
    ``"shared:"`` entry of its file name with the same digest (a shared trace found in another
    folder, as on a cluster worker that mounts the traces elsewhere); otherwise PATH here, or
    where PATH is not a file here, the shared trace of its name."""
    shared = {name: digest for what, digest in reads.items()
              for kind, _, name in [what.partition(":")] if kind == "shared"}
    for what, digest in reads.items():
        kind, _, name = what.partition(":")
        if kind == "shared":
            path = shared_trace(name)
        elif kind == "file":
            base = Path(name).name
            if shared.get(base) == digest:
                continue  # the same content as the shared lookup of its name, checked there
            path = Path(name) if Path(name).is_file() else shared_trace(base)
        else:
            return what, digest, ABSENT
        here = ABSENT if path is None else _file_digest(path).hex()[:32]
        if here != digest:
            return what, digest, here
    return None


def _open_checked(path: str | Path) -> Path:
    if not isinstance(path, str | os.PathLike):  # e.g. a request frame given where a file is read
        raise InvalidInstanceError(
            f"a trace file path (str or os.PathLike) is needed here, got {type(path).__name__}; "
            f"only decode routing's and batch scheduling's from_trace also take a request frame")
    path = Path(path)
    if path.is_dir():
        raise InvalidInstanceError(f"{path}: a folder, not a trace file")
    if not path.exists():
        raise InvalidInstanceError(f"{path}: no such trace file")
    regular_file(path, "trace file")  # (a device reads forever, a FIFO blocks: before opening)
    check_text_size(path, "trace file")  # the readers stream it: a gzip bomb stops at the cap
    _note_read(f"file:{path.resolve()}", path)
    return path


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as head:
        return head.read(2) == GZIP_MAGIC


def _read_csv(path: Path, used: list[str], *, strip_names: bool = False,
              **options: Any) -> pd.DataFrame:
    """A CSV trace, plain or gzip (told by its content, not its name), with or without a UTF-8
    byte-order mark, read by its header's columns: empty fields beyond them (a trailing comma)
    are dropped, while a data row with more values than the header has names is refused (pandas
    would shift every column one place, taking the first as an index); so is a ``used`` column
    named twice in the header (``strip_names``: names compared without the spaces around them).
    A file that is not CSV says so."""
    compressed = _is_gzip(path)
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as head:
            first = head.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInstanceError(f"{path}: cannot be read ({exc})") from None
    if first in (b"{", b"["):  # pandas would read a JSON object as one header of thousands of columns
        raise InvalidInstanceError(f"{path}: a JSON file{_jsonl_hint(path)}, not a CSV trace")
    read = {"encoding": "utf-8-sig", "compression": "gzip" if compressed else "infer", **options}
    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False,
                             index_col=False, **read)
        names = [str(v).strip() if strip_names else str(v) for v in header.iloc[0]]
        for column in used:
            places = [k + 1 for k, name in enumerate(names) if name == column]
            if len(places) > 1:
                raise InvalidInstanceError(
                    f"{path}: column {column!r} appears {len(places)} times in the header (columns "
                    f"{', '.join(map(str, places))}): ambiguous; rename or remove all but one")
        try:
            with warnings.catch_warnings():
                # pandas warns (and drops the values) when a data row is wider than the header
                warnings.filterwarnings("error", category=pd.errors.ParserWarning)
                return pd.read_csv(path, index_col=False, **read)
        except (pd.errors.ParserWarning, pd.errors.ParserError) as exc:
            if isinstance(exc, pd.errors.ParserError) and not _WIDER.search(str(exc)):
                raise
        # some data row has more fields than the header names: refused if any holds a value
        wider = _first_wider_row(path, compressed, len(names), options)
        if wider is not None:
            row, fields, value = wider
            raise InvalidInstanceError(
                f"{path}: data row {row}: data rows have {fields} fields, the header {len(names)} "
                f"(the extra field holds {value!r}): name every column in the header, or remove "
                "the extra values")
        with warnings.catch_warnings():  # the extra fields are all empty: nothing is lost
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False, usecols=range(len(names)), **read)
    except pd.errors.ParserError as exc:
        found = _WIDER.search(str(exc))
        if found:
            raise InvalidInstanceError(
                f"{path}: line {found[2]} has {found[3]} fields where the lines before it have "
                f"{found[1]}") from None
        raise InvalidInstanceError(f"{path}: not a CSV file{_jsonl_hint(path)} ({exc})") from None
    except (UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InvalidInstanceError(f"{path}: not a CSV file{_jsonl_hint(path)} ({exc})") from None
    except (OSError, EOFError, zlib.error) as exc:  # a damaged compressed file
        raise InvalidInstanceError(f"{path}: cannot be read ({exc})") from None


_WIDER = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")  # pandas' ParserError


def _jsonl_hint(path: Path) -> str:
    return " (a JSON-lines file: Mooncake format?)" if ".jsonl" in path.suffixes else ""


def _first_wider_row(path: Path, compressed: bool, width: int,
                     options: dict[str, Any]) -> tuple[int, int, str] | None:
    """The first data row (1-based, blank lines skipped as pandas does) holding a non-empty value
    beyond the header's ``width`` fields, as ``(row, its fields, the first such value)``; None if
    every field beyond the header is empty. Read with the csv module: only a file pandas warned
    about is scanned."""
    dialect = {"skipinitialspace": bool(options.get("skipinitialspace", False))}
    try:
        with (gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
              if compressed else open(path, encoding="utf-8-sig", errors="replace",
                                      newline="")) as handle:
            rows = (r for r in csv.reader(handle, **dialect) if r)
            next(rows, None)  # the header
            for number, fields in enumerate(rows, start=1):
                extra = [v for v in fields[width:] if v.strip()]
                if extra:
                    return number, len(fields), extra[0]
    except (csv.Error, OSError, EOFError, zlib.error):
        raise InvalidInstanceError(
            f"{path}: data rows have more fields than the header ({width}): name every column in "
            "the header, or remove the extra values") from None
    return None


def _require(frame: pd.DataFrame, columns: list[str], path: Path, fmt: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = [str(c)[:40] for c in frame.columns[:8]]
        more = f" and {len(frame.columns) - 8} more" if len(frame.columns) > 8 else ""
        raise InvalidInstanceError(
            f"{path}: not {'an' if fmt[0] in 'AEIOU' else 'a'} {fmt} trace: missing column(s) "
            f"{missing}; found {found}{more}")


def _check_window(rate_scale: float, start_s: float | None, end_s: float | None) -> None:
    checks.number("rate_scale", rate_scale, lambda v: 0 < v < np.inf, "a positive number")
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if value is not None:
            checks.number(name, value, np.isfinite, "a number of seconds or None")


def _numbers(values: Any) -> pd.Series:
    """``pd.to_numeric(values, errors="coerce")``, also for integers too large for a float
    (pandas raises OverflowError there; they become inf and are refused as too large)."""
    def one(v: Any) -> float:
        try:
            return float(v)
        except OverflowError:
            return np.inf
        except (TypeError, ValueError):
            return np.nan

    try:
        numbers = pd.to_numeric(values, errors="coerce")
    except OverflowError:
        return pd.Series([one(v) for v in values], index=values.index, dtype=float)
    missed = numbers.isna() & values.notna()
    if missed.any():  # pandas < 3 reads such digits as text, and coerces them to NaN: inf too
        again = np.array([one(v) for v in values[missed]], dtype=float)
        numbers = numbers.astype(float)
        numbers[missed] = np.where(np.isinf(again), again, np.nan)
    return numbers


def _seconds(values: Any, path: Path, column: str, where: str, *, unit: str = "s") -> pd.Series:
    """Numeric timestamps in seconds (``unit`` ``"s"``, or ``"ms"``: converted); values beyond
    ``MAX_SECONDS`` are refused as another unit."""
    seconds = _numbers(values) / (1000.0 if unit == "ms" else 1.0)
    finite = seconds[np.isfinite(seconds.to_numpy(dtype=float))]
    if len(finite) and finite.abs().max() > MAX_SECONDS:
        top = finite.abs().idxmax()
        if unit == "ms":
            raise InvalidInstanceError(
                f"{path}: {where} {top}: {column} {values.loc[top]} is not milliseconds (as "
                "milliseconds it is later than the year 5000): this format takes milliseconds")
        raise InvalidInstanceError(
            f"{path}: {where} {top}: {column} {values.loc[top]} is not seconds (as seconds it is "
            f"later than the year 5000): this format takes seconds; divide milliseconds by 1000")
    return seconds


def _finish(frame: pd.DataFrame, path: Path, rate_scale: float, start_s: float | None,
            end_s: float | None, *, where: str = "data row", origin: float | None = None,
            check: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Check the token counts, sort by arrival, cut the window and scale the rate. ``frame``'s
    index holds each request's 1-based ``where`` (data row or file line) for messages;
    ``origin``: the time the window is measured from (default: the first request); ``check``:
    the format's own test of the checked rows (int64 token counts), before any is sorted or cut."""
    _check_window(rate_scale, start_s, end_s)
    for col in ("prompt_tokens", "output_tokens"):
        column = frame[col]
        if column.dtype == bool or (column.dtype == object and column.map(
                lambda v: isinstance(v, bool)).any()):
            raise InvalidInstanceError(f"{path}: {col} holds true/false, not token counts")
        values = _numbers(column)
        if values.isna().any():
            row = frame.index[int(values.isna().to_numpy().argmax())]
            raise InvalidInstanceError(f"{path}: {where} {row}: {col} is not a number")
        if (values < 0).any():
            pos = int((values < 0).to_numpy().argmax())
            raise InvalidInstanceError(
                f"{path}: {where} {frame.index[pos]}: {col} is negative ({values.iloc[pos]})")
        whole = values.to_numpy(dtype=float)
        if np.any(whole > MAX_TOKENS):
            pos = int(np.argmax(whole > MAX_TOKENS))
            raise InvalidInstanceError(f"{path}: {where} {frame.index[pos]}: {col} is "
                                       f"{values.iloc[pos]:g}, more than {MAX_TOKENS:.0e} tokens")
        if np.any(whole != np.round(whole)):
            pos = int(np.argmax(whole != np.round(whole)))
            raise InvalidInstanceError(f"{path}: {where} {frame.index[pos]}: {col} is not a whole "
                                       f"number of tokens ({values.iloc[pos]})")
        frame[col] = values.astype(np.int64)
    t = frame["arrival_s"].to_numpy(dtype=float)
    if not np.all(np.isfinite(t)):
        pos = int(np.argmax(~np.isfinite(t)))
        raise InvalidInstanceError(f"{path}: {where} {frame.index[pos]}: the arrival time is "
                                   "missing or not a number")
    if check is not None:
        check(frame)
    frame = frame.iloc[np.argsort(t, kind="stable")].reset_index(drop=True)
    if len(frame):
        frame["arrival_s"] = frame["arrival_s"] - (frame["arrival_s"].iloc[0] if origin is None
                                                   else origin)
    if start_s is not None:
        frame = frame[frame["arrival_s"] >= start_s]
    if end_s is not None:
        frame = frame[frame["arrival_s"] < end_s]
    if frame.empty:
        if start_s is None and end_s is None:
            raise InvalidInstanceError(f"{path}: no request in the trace (a header only?)")
        raise InvalidInstanceError(f"{path}: no request in the time window [{start_s}, {end_s})")
    frame = frame.reset_index(drop=True)
    frame["arrival_s"] = (frame["arrival_s"] - frame["arrival_s"].iloc[0]) / rate_scale
    return frame


def from_frame(frame: Any, *, rate_scale: float = 1.0, start_s: float | None = None,
               end_s: float | None = None, label: str = "trace frame") -> pd.DataFrame:
    """A request frame made by the caller (``arrival_s`` in seconds, sorted; ``prompt_tokens``,
    ``output_tokens``; other columns are dropped), checked as the readers check a file and returned
    as they return one: a copy re-zeroed at its first request, windowed and rate-scaled. Errors
    name ``label`` and the 0-based row; an unsorted frame is refused (sort it by ``arrival_s``)."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInstanceError(f"{label}: expected a pandas DataFrame of requests or a trace "
                                   f"path, got {type(frame).__name__}")
    twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if twice:
        raise InvalidInstanceError(f"{label}: column(s) {twice} appear more than once: ambiguous")
    missing = [c for c in REQUEST_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInstanceError(f"{label}: missing column(s) {missing}; a request frame has "
                                   f"{REQUEST_COLUMNS}")
    arrival = frame["arrival_s"]
    if arrival.dtype == bool or (arrival.dtype == object and arrival.map(
            lambda v: isinstance(v, bool)).any()):
        raise InvalidInstanceError(f"{label}: arrival_s holds true/false, not seconds")
    out = pd.DataFrame({"arrival_s": _numbers(arrival).to_numpy(dtype=float),
                        "prompt_tokens": frame["prompt_tokens"].to_numpy(),
                        "output_tokens": frame["output_tokens"].to_numpy()})
    t = out["arrival_s"].to_numpy()
    late = np.isfinite(t[:-1]) & np.isfinite(t[1:]) & (np.diff(t) < 0)
    if late.any():
        row = int(late.argmax()) + 1
        raise InvalidInstanceError(
            f"{label}: arrival_s must be sorted: row {row} arrives at {t[row]:g} s, before row "
            f"{row - 1} at {t[row - 1]:g} s (sort the frame by arrival_s)")
    return _finish(out, Path(label), rate_scale, start_s, end_s, where="row")


def read_azure(path: str | Path, *, rate_scale: float = 1.0, start_s: float | None = None,
               end_s: float | None = None) -> pd.DataFrame:
    """Read an Azure LLM inference 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    path = _open_checked(path)
    _check_window(rate_scale, start_s, end_s)
    raw = _read_csv(path, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    _require(raw, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"], path, "Azure LLM inference")
    raw.index = raw.index + 1  # 1-based data rows in messages
    if pd.api.types.is_numeric_dtype(raw["TIMESTAMP"]) and raw["TIMESTAMP"].dtype != bool:
        # numbers: seconds (e.g. epoch or relative)
        seconds = _seconds(raw["TIMESTAMP"], path, "TIMESTAMP", "data row")
        seconds = seconds - seconds.min()
    else:
        seconds = _date_times(raw["TIMESTAMP"], path)
    frame = pd.DataFrame({"arrival_s": seconds, "prompt_tokens": raw["ContextTokens"],
                          "output_tokens": raw["GeneratedTokens"]})
    return _finish(frame, path, rate_scale, start_s, end_s)


def _date_times(column: pd.Series, path: Path) -> pd.Series:
    """Seconds since the earliest of ``column``'s date-times: ISO 8601 where the first row is
    (rows may differ in fractional seconds), else all read in the one format pandas infers from
    the first row (per-row guessing would read 12/11 and 13/11 in two orders); UTC offsets are
    honoured (a log crossing a daylight-saving change), but a mix of stamps with
    and without one is refused."""
    text = column.astype(str).str.strip()
    empty = column.isna().to_numpy() | (text == "").to_numpy()
    if empty.any():
        raise InvalidInstanceError(f"{path}: data row {column.index[int(empty.argmax())]}: TIMESTAMP "
                                   "is empty")
    offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
    if offset.any() and not offset.all():
        row = int((offset != offset.iloc[0]).to_numpy().argmax())
        raise InvalidInstanceError(
            f"{path}: data row {column.index[row]}: TIMESTAMP {text.iloc[row]!r} "
            f"{'has no' if offset.iloc[0] else 'has a'} UTC offset while data row {column.index[0]}'s "
            f"{'has one' if offset.iloc[0] else 'does not'}: give all times in one zone")
    stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    caught: list = []
    if len(stamps) and pd.isna(stamps.iloc[0]):  # not ISO 8601 (which allows any fraction or offset per row)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stamps = pd.to_datetime(text, errors="coerce", utc=True)
    if any("infer format" in str(w.message) for w in caught):
        raise InvalidInstanceError(f"{path}: TIMESTAMP {text.iloc[0]!r}: a date-time format that "
                                   "cannot be recognised; use ISO 8601 (2023-11-16 18:17:03.98)")
    if stamps.isna().any():
        row = int(stamps.isna().to_numpy().argmax())
        raise InvalidInstanceError(
            f"{path}: data row {column.index[row]}: TIMESTAMP {text.iloc[row]!r} is not a date-time "
            f"in the format of data row {column.index[0]} ({text.iloc[0]!r})")
    return (stamps - stamps.min()).dt.total_seconds()


def read_mooncake(path: str | Path, *, rate_scale: float = 1.0, start_s: float | None = None,
                  end_s: float | None = None) -> pd.DataFrame:
    """Read a Mooncake JSONL trace (``timestamp`` ms, lengths, ``hash_ids`` of 512-token blocks)."""
    path = _open_checked(path)
    _check_window(rate_scale, start_s, end_s)
    compressed = _is_gzip(path)
    # a million lines hold two million lists and dicts: the cycle collector's passes over them
    # (there are no cycles to find) took more time than the parsing
    with _collector_paused():
        parsed = _mooncake_at_once(path, compressed)
        if parsed is None:  # some line is not as expected: this reader names the first one
            parsed = _mooncake_by_line(path, compressed)
        records, lines, with_ids = parsed
        columns = ["arrival_s", "prompt_tokens", "output_tokens", "block_ids"]
        try:
            frame = pd.DataFrame(records, columns=columns, index=lines)
        except OverflowError:  # pandas < 3, on an integer too large for a float (pandas 3 keeps
            # its column as objects): all as objects, and that value is refused as too large below
            frame = pd.DataFrame(records, columns=columns, index=lines, dtype=object)
    frame["arrival_s"] = _seconds(frame["arrival_s"], path, "timestamp", "line", unit="ms")
    check = (lambda rows: _check_blocks(rows, path)) if with_ids else None
    return _finish(frame, path, rate_scale, start_s, end_s, where="line", check=check)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off inside the block, then as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_MISSING = object()
_FIELDS = ("timestamp", "input_length", "output_length")


def _mooncake_at_once(path: Path, compressed: bool) -> tuple[list, list[int], bool] | None:
    """The records, their file lines and whether they have hash_ids, with each line only parsed
    and the other checks made over many lines at once; None if anything is not as expected
    (then :func:`_mooncake_by_line` names the first offending line). Lines are parsed by the
    scanner ``json.loads`` uses, so the values are the same. A line whose count of ``:`` differs
    from its object's count of keys (a key given twice, or a nested object, or ``:`` in text) is
    parsed again, refusing a key given twice (no line of the shared Mooncake trace is)."""
    scan = json.JSONDecoder().scan_once
    strict = json.JSONDecoder(object_pairs_hook=unique_keys).scan_once
    columns: tuple[list, ...] = ([], [], [], [])  # _FIELDS, then hash_ids (or _MISSING)
    lines: list[int] = []
    chunk: list = []

    def take() -> bool:  # move a chunk's values to the columns (its dicts are then dropped)
        if set(map(type, chunk)) != {dict}:
            return False
        try:
            for field, column in zip(_FIELDS, columns[:3], strict=True):
                column.extend(map(itemgetter(field), chunk))
        except KeyError:
            return False
        columns[3].extend(map(dict.get, chunk, repeat("hash_ids"), repeat(_MISSING)))
        chunk.clear()
        return True

    try:
        options = {"encoding": "utf-8-sig"}  # strict: a byte that is not UTF-8 raises
        with gzip.open(path, "rt", **options) if compressed else open(path, **options) as handle:
            for number, line in enumerate(handle, start=1):  # \n, \r\n or \r line ends
                try:
                    rec, end = scan(line, 0)
                except StopIteration:  # no value at the start: a blank line, or leading space
                    if line.strip():
                        return None
                    continue
                if end < len(line) and line[end:].strip(" \t\n\r"):  # what json.loads skips
                    return None
                # every key is followed by a ':', so as many ':' as keys means no key twice
                if line.count(":") != (len(rec) if type(rec) is dict else 0):
                    strict(line, 0)  # DuplicateKeyError (a ValueError) for a key given twice
                chunk.append(rec)
                lines.append(number)
                if len(chunk) == 4096 and not take():
                    return None
    except (ValueError, RecursionError, OSError, EOFError, zlib.error):  # (UnicodeError: a ValueError)
        return None
    if not lines or (chunk and not take()):
        return None
    stamps, inputs, outputs, ids = columns
    absent = ids.count(_MISSING)
    if absent == len(ids):
        ids = [[] for _ in ids]
    elif absent or set(map(type, ids)) != {list}:
        return None
    elif any(ids) and (set(map(type, chain.from_iterable(ids))) != {int}
                       or min(chain.from_iterable(ids)) < INT64[0]
                       or max(chain.from_iterable(ids)) > INT64[1]):
        return None
    if not all(set(map(type, column)) <= {int, float, type(None)} for column in columns[:3]):
        return None  # true/false or text ("100"): the line-by-line reader names the line
    return list(zip(stamps, inputs, outputs, ids, strict=True)), lines, absent == 0


def _mooncake_by_line(path: Path, compressed: bool) -> tuple[list, list[int], bool]:
    """The records, their file lines and whether they have hash_ids, checked line by line: the
    first line that is not a Mooncake request raises, named by its 1-based number."""
    records, lines = [], []
    with_ids = without_ids = 0  # lines with and without hash_ids: a mix is refused
    number = 0
    try:
        # undecodable bytes kept as surrogates, so the line that holds them can be named
        options = {"encoding": "utf-8-sig", "errors": "surrogateescape"}
        with gzip.open(path, "rt", **options) if compressed else open(path, **options) as handle:
            for number, line in enumerate(handle, start=1):  # \n, \r\n or \r line ends
                line.encode("utf-8")  # UnicodeEncodeError on a byte that was not UTF-8
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line, object_pairs_hook=unique_keys)
                except DuplicateKeyError as exc:  # json.loads alone keeps the last value silently
                    raise InvalidInstanceError(f"{path}: line {number}: {exc} (which value is "
                                               "meant?)") from None
                except (ValueError, RecursionError) as exc:  # also an integer of > 4300 digits
                    raise InvalidInstanceError(f"{path}: line {number} is not JSON ({exc})") from None
                if not isinstance(rec, dict):
                    raise InvalidInstanceError(f"{path}: line {number} is not a JSON object")
                missing = [k for k in ("timestamp", "input_length", "output_length") if k not in rec]
                if missing:
                    raise InvalidInstanceError(f"{path}: line {number}: missing {missing}")
                ids = rec.get("hash_ids", [])
                if not isinstance(ids, list) or not all(
                        isinstance(i, int) and not isinstance(i, bool) and INT64[0] <= i <= INT64[1]
                        for i in ids):
                    raise InvalidInstanceError(f"{path}: line {number}: hash_ids must be a list of "
                                               f"64-bit integers")
                if "hash_ids" in rec:
                    with_ids += 1
                else:
                    without_ids += 1
                if with_ids and without_ids:
                    has = "hash_ids" in rec
                    raise InvalidInstanceError(
                        f"{path}: line {number} {'has' if has else 'has no'} hash_ids while the lines "
                        f"before it {'do not' if has else 'have'}: every line needs its prefix "
                        "blocks, or none")
                for field, what in zip(_FIELDS, ("the arrival time (timestamp) must be a number "
                                                  "(ms)", "input_length must be a number of "
                                                  "tokens", "output_length must be a number of "
                                                  "tokens"), strict=True):
                    value = rec[field]  # text ("100") is refused as an instance file refuses it
                    if isinstance(value, bool | str) or not isinstance(value, int | float | None):
                        got = "true/false" if isinstance(value, bool) else repr(value)
                        raise InvalidInstanceError(f"{path}: line {number}: {what}, got {got}")
                records.append((rec["timestamp"], rec["input_length"], rec["output_length"], ids))
                lines.append(number)
    except UnicodeError:
        raise InvalidInstanceError(f"{path}: line {number} is not UTF-8 text") from None
    except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip file
        raise InvalidInstanceError(f"{path}: cannot be read ({exc})") from None
    if not records:
        raise InvalidInstanceError(f"{path}: the trace has no request")
    return records, lines, with_ids > 0


def _check_blocks(frame: pd.DataFrame, path: Path) -> None:
    """Each line's hash ids must be its prompt's 512-token blocks: ``ceil(input_length / 512)``
    of them (caching reads the ids, the other decisions the length: they must describe one
    prompt)."""
    counts = np.fromiter(map(len, frame["block_ids"]), dtype=np.int64, count=len(frame))
    tokens = frame["prompt_tokens"].to_numpy()
    blocks = -(-tokens // BLOCK_TOKENS)
    wrong = counts != blocks
    if wrong.any():
        pos = int(wrong.argmax())
        raise InvalidInstanceError(
            f"{path}: line {frame.index[pos]}: {counts[pos]} hash_ids for input_length "
            f"{tokens[pos]}, which is {blocks[pos]} blocks of {BLOCK_TOKENS} tokens "
            f"(ceil({tokens[pos]} / {BLOCK_TOKENS})): every hash id is one {BLOCK_TOKENS}-token "
            "block of the prompt (ids over another block size?)")


def read_burstgpt(path: str | Path, *, rate_scale: float = 1.0, start_s: float | None = None,
                  end_s: float | None = None, model: str | list[str] | None = None,
                  drop_failed: bool = True) -> pd.DataFrame:
    """Read a BurstGPT CSV; ``model`` keeps one model's rows (a name such as ``"ChatGPT"``, or a
    list of names: their rows), ``drop_failed`` (True or False) drops 0-token replies."""
    path = _open_checked(path)
    _check_window(rate_scale, start_s, end_s)
    checks.flag("drop_failed", drop_failed)
    models = [model] if isinstance(model, str) else model
    if model is not None and (not isinstance(models, list | tuple) or not models
                              or not all(isinstance(m, str) for m in models)):
        raise InvalidInstanceError(
            f"model must be a model name (e.g. 'ChatGPT') or a non-empty list of names, got {model!r}")
    raw = _read_csv(path, ["Timestamp", "Model", "Request tokens", "Response tokens"],
                    strip_names=True, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    _require(raw, ["Timestamp", "Request tokens", "Response tokens"], path, "BurstGPT")
    if raw.empty:
        raise InvalidInstanceError(f"{path}: no request in the trace (a header only?)")
    raw.index = raw.index + 1  # 1-based data rows in messages
    stamps = _seconds(raw["Timestamp"], path, "Timestamp", "data row")
    origin = float(np.nanmin(stamps.to_numpy(dtype=float))) if stamps.notna().any() else None
    if model is not None:
        if "Model" not in raw.columns:
            raise InvalidInstanceError(f"{path}: no 'Model' column to filter on")
        raw = raw[raw["Model"].astype(str).str.strip().isin(models)]
    if drop_failed:
        raw = raw[_numbers(raw["Response tokens"]) != 0]
    frame = pd.DataFrame({"arrival_s": stamps.loc[raw.index],
                          "prompt_tokens": raw["Request tokens"],
                          "output_tokens": raw["Response tokens"]})
    if frame.empty:
        kept = ([f"model {model!r}" if isinstance(model, str) else f"a model in {list(models)}"]
                if model is not None else [])
        kept += ["a reply (Response tokens > 0)"] if drop_failed else []
        raise InvalidInstanceError(f"{path}: no request with {' and '.join(kept)}")
    # windows are seconds from the trace's first request, whichever rows are kept
    return _finish(frame, path, rate_scale, start_s, end_s, origin=origin)


def read_expert_load(path: str | Path, *, window: int = 1) -> np.ndarray:
    """Read an expert-load JSON and sum every ``window`` steps: array (windows, layers, experts).

    A trailing partial window is dropped, unless the file has fewer steps than one window (then
    all steps form one window). The file may be gzip-compressed and start with a UTF-8
    byte-order mark, as may an instance JSON (:func:`servopt.load`) and every trace.
    """
    path = _open_checked(path)
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise InvalidInstanceError(f"window must be a positive number of steps, got {window}")
    try:
        data = json.loads(read_text_file(path), object_pairs_hook=unique_keys)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInstanceError(f"{path}: not valid JSON ({exc})") from None
    except DuplicateKeyError as exc:  # ("kv": 1, "kv": 2 kept the last silently)
        raise InvalidInstanceError(f"{path}: {exc} (which value is meant?)") from None
    history = data.get("load_history") if isinstance(data, dict) else None
    if not isinstance(history, list) or not history:
        raise InvalidInstanceError(f"{path}: expected a non-empty 'load_history' list")
    steps = []
    for number, step in enumerate(history):
        load = step.get("logical_expert_load") if isinstance(step, dict) else None
        try:
            arr = np.asarray(load)
        except (ValueError, TypeError):
            arr = np.empty(0)
        if arr.ndim != 2:
            raise InvalidInstanceError(
                f"{path}: step {number}: 'logical_expert_load' must be a layers x experts list")
        if arr.size == 0:
            raise InvalidInstanceError(f"{path}: step {number}: 'logical_expert_load' has no layer "
                                       f"or no expert (shape {arr.shape})")
        if arr.dtype.kind not in "iuf" or bool in set(map(type, chain.from_iterable(load))):
            # true/false (among numbers they read as 1 and 0) or text are not token counts
            kind = "true/false" if arr.dtype.kind in "biuf" else f"{arr.dtype}"
            raise InvalidInstanceError(f"{path}: step {number}: 'logical_expert_load' must hold "
                                       f"token counts (numbers), got {kind} values")
        steps.append(arr.astype(float))
    shapes = {s.shape for s in steps}
    if len(shapes) != 1:
        raise InvalidInstanceError(f"{path}: steps disagree on layers x experts: {sorted(shapes)}")
    loads = np.stack(steps)
    if not np.all(np.isfinite(loads)) or np.any(loads < 0):
        raise InvalidInstanceError(f"{path}: expert loads must be finite and >= 0")
    count = max(1, len(steps) // window)
    usable = loads[: count * window] if len(steps) >= window else loads
    return usable.reshape(count, -1, *loads.shape[1:]).sum(axis=1)
