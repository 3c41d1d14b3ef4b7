"""The Instance base: validation at construction and JSON round trip.

Every decision's ``Instance`` is a frozen dataclass that subclasses :class:`Instance`, sets the
class attributes ``decision`` and ``schema_version``, and implements ``validate()`` (raising
:class:`InvalidInstanceError`) and ``summary()``. Fields are numpy arrays, pandas frames, plain
scalars, strings, lists or dicts of those, or ``None``.

The JSON file is ``{"decision": ..., "schema_version": ..., "fields": {...}}``. Arrays are written
as ``{"ndarray": nested list, "dtype": ...}`` and frames as ``{"frame": {column: list}}``; nothing
else is ever reconstructed from a file, so loading data never runs code. Any other key (at the
top, or beside "ndarray"/"dtype" or "frame") is refused by name, not ignored: a field written
beside "fields" would otherwise load as its default.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import stat
import zlib
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from servopt.core.errors import InfeasibleError, InvalidInstanceError
from servopt.core.files import replace_text
from servopt.core.reads import note_read

DECISIONS: tuple[str, ...] = (
    "expert_placement",
    "decode_routing",
    "batch_scheduling",
    "capacity",
    "caching",
)

_ALLOWED_DTYPES = {"float64", "float32", "int64", "int32", "int16", "int8", "bool", "uint8"}
# No quantity in a serving instance (tokens, ms, bytes, req/s, costs) comes near 1e12, and HiGHS
# treats coefficients near 1e20 as infinite: a larger finite number is a mistake in the data.
MAX_MAGNITUDE = 1e12


@dataclasses.dataclass(frozen=True)
class Instance:
    """Base class of every decision's instance (a frozen dataclass validated at construction)."""

    decision: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    #: fields holding identifiers (hashes, ids), not quantities: exempt from the magnitude check
    identifier_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        # before validate (whose int64 casts would wrap a huge value) on what the caller gave,
        # and after it on the normalised fields (lists, integer arrays, frames as validated)
        self._check_magnitudes()
        if hasattr(self, "name") and not isinstance(self.name, str):
            raise InvalidInstanceError(f"name must be text (a label), got {type(self.name).__name__}")
        self.validate()
        self._check_magnitudes()
        self._freeze()

    def _check_magnitudes(self) -> None:
        for field in dataclasses.fields(self):
            if field.name not in self.identifier_fields:
                _check_magnitude(getattr(self, field.name), field.name)

    def _freeze(self) -> None:
        """The instance is frozen, and so is its data: array fields, and the columns of frame
        fields, become read-only copies, so a policy that edits values in place (``a[0] = 9``,
        ``inst.requests.loc[0, "prompt_tokens"] = 9``, ``.iloc``, ``.at``) fails at once instead
        of changing the instance for every method evaluated after it (and the caller's arrays
        stay theirs). Pandas cannot lock a frame's structure: replacing a whole column or
        dropping rows in place is not caught, so don't. ``frame.copy()`` gives an editable copy."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray) and value.flags.writeable:
                self._set(field.name, _read_only(value))
            elif isinstance(value, pd.DataFrame):  # (to_numpy() views are read-only already
                # under copy-on-write while the frame's own blocks are not: always rebuild)
                columns = {c: _read_only(value[c].to_numpy()) for c in value.columns}
                self._set(field.name, pd.DataFrame(columns, index=value.index, copy=False))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling and ``copy.deepcopy`` skip ``__post_init__``: freeze the copy's arrays too."""
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self._freeze()

    # -- to be provided by each decision ------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`InvalidInstanceError` naming the field and the rule broken."""

    def summary(self) -> str:
        """One line describing the instance."""
        return f"{self.decision} instance"

    # -- helpers for subclasses ---------------------------------------------------------------
    def _set(self, name: str, value: Any) -> None:
        """Normalise a field during ``validate`` (the dataclass is frozen)."""
        object.__setattr__(self, name, value)

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The instance as the JSON object :meth:`to_json` writes: ``decision``,
        ``schema_version`` and ``fields`` (arrays as ``{"ndarray": [...], "dtype": ...}``, tables
        as ``{"frame": {column: [...]}}``)."""
        fields = {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {
            "decision": self.decision,
            "schema_version": self.schema_version,
            "fields": fields,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON text; also write it to ``path`` when given, whole or not at all (a
        write that fails or is interrupted leaves the old file as it was: :func:`replace_text`)."""
        text = json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)
        if path is not None:
            replace_text(path, text)
        return text

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "data") -> Self:
        """The instance a :meth:`to_dict` object describes, validated; an older
        ``schema_version`` is upgraded. ``source`` names the data in error messages (e.g. the
        file). Anything else is an :class:`InvalidInstanceError`."""
        if not isinstance(data, dict):
            raise InvalidInstanceError(f"{source}: expected a JSON object with 'decision' and 'fields'")
        decision = data.get("decision")
        if decision != cls.decision:
            raise InvalidInstanceError(
                f"{source}: this is a {decision!r} instance, not a {cls.decision!r} instance"
            )
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInstanceError(
                f"{source}: 'schema_version' must be a whole number >= 1, got {version!r}")
        if version > cls.schema_version:
            raise InvalidInstanceError(
                f"{source}: schema_version {version} is newer than this servopt understands "
                f"({cls.schema_version}) for {cls.decision}; upgrade servopt"
            )
        stray = sorted(set(data) - _FILE_KEYS, key=str)
        if stray:  # e.g. a field written beside "fields" instead of inside it: not ignored
            raise InvalidInstanceError(
                f"{source}: unknown top-level key(s) {stray}; an instance file holds only "
                f"{sorted(_FILE_KEYS)}, and every field goes inside 'fields'")
        raw = data.get("fields")
        if not isinstance(raw, dict):
            raise InvalidInstanceError(f"{source}: 'fields' must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInstanceError(
                f"{source}: unknown field(s) {unknown} for a {cls.decision} instance; "
                f"known fields are {sorted(known)}"
            )
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for name, value in raw.items():  # (no instance field holds true/false: each is a number,
            # text, or an array, list or frame of numbers, where numpy would read true as 1)
            if ("bool" not in str(fields[name].type) and not isinstance(value, bool)
                    and _holds_true_false(value)):
                raise InvalidInstanceError(
                    f"{source}: field {name!r}: expected numbers, found true/false")
        kwargs = {name: _decode(value, f"{source}: field {name!r}") for name, value in raw.items()}
        kwargs = cls._upgrade(version, kwargs)
        required = [name for name, f in fields.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in kwargs]
        if missing:
            raise InvalidInstanceError(f"{source}: missing field(s) {missing} of a {cls.decision} instance")
        for name, value in kwargs.items():
            if isinstance(value, bool) and "bool" not in str(fields[name].type):
                raise InvalidInstanceError(f"{source}: field {name!r}: expected a number, got {value!r}")
        try:
            return cls(**kwargs)
        except (TypeError, InvalidInstanceError) as exc:  # TypeError: a value of the wrong kind
            # reached the constructor; the rules validate() checks do not know the file: name it
            raise InvalidInstanceError(f"{source}: {exc}") from None
        except InfeasibleError as exc:  # well formed, but no decision is feasible
            raise InfeasibleError(f"{source}: {exc}") from None

    @classmethod
    def _upgrade(cls, version: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Migrate fields written by an older schema version (override when the schema changes)."""
        return fields

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> Self:
        """Load from a JSON file path or JSON text."""
        text, source = read_json_text(path_or_text)
        data = parse_json(text, source)
        try:
            return cls.from_dict(data, source=source)
        except RecursionError:
            raise InvalidInstanceError(f"{source}: the JSON is nested too deeply") from None

    def content_hash(self) -> str:
        """A stable hash of the instance's content (sha256 of its canonical JSON)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__}: {self.summary()}>"


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (``json.loads`` would keep the last silently)."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads`` that refuses a key given twice in one object
    (raises :class:`DuplicateKeyError`): ``{"kv_memory": 180, "kv_memory": 1000}`` is a mistake
    in the file, not a value of 1000."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(f"the key {key!r} appears twice in one JSON object")
            seen.add(key)
    return out


def parse_json(text: str, source: str) -> Any:
    """``json.loads`` with every failure (bad syntax, too deep nesting, a key given twice in one
    object) as InvalidInstanceError."""
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise InvalidInstanceError(f"{source}: {exc} (which value is meant?)") from None
    except json.JSONDecodeError as exc:
        raise InvalidInstanceError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidInstanceError(f"{source}: the JSON is nested too deeply") from None


GZIP_MAGIC = b"\x1f\x8b"  # a gzip file's first two bytes: such a file is read decompressed


# The most bytes of text a data file may hold (after decompression), so that a small gzip file
# cannot expand to gigabytes in memory (a 3 MB "bomb" of 3.2 GB). The largest legitimate
# instances are those generated at the generators' caps: caching's at MAX_REQUESTS = 10 million
# is 244 MB (benchmarks/results/limits.md, text_bytes_load_largest; scaling a 100,000-request
# file had said ~0.58 GB, but its 100,000 objects do not grow with the requests); by that
# scaling decode routing ~0.27 GB, expert placement ~0.11 GB at MAX_LOADS. The library's largest
# file is 2.2 MB (cache_mm_100k.json). 1 GiB leaves room above them all.
MAX_TEXT_BYTES = 1 << 30


def regular_file(path: Path, what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path``, refusing anything but a regular file (a device such as /dev/zero
    reads forever, a FIFO blocks until someone writes) before it is opened."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InvalidInstanceError(f"{path}: cannot read ({exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise InvalidInstanceError(f"{path}: cannot read: {kind}, not a regular {what}")
    return info


def check_text_size(path: Path, what: str = "file") -> None:
    """Refuse a file (plain, or gzip told by its first bytes) holding more than
    :data:`MAX_TEXT_BYTES` of text, for readers that stream it (the trace readers): a gzip file is
    decompressed in 1 MiB pieces and counted, never held, so a bomb stops at the cap."""
    try:
        info = regular_file(path, what)
        with open(path, "rb") as handle:
            compressed = handle.read(2) == GZIP_MAGIC
            if not compressed:
                size = info.st_size
            else:
                handle.seek(0)
                size = 0
                with gzip.GzipFile(fileobj=handle) as unpacked:
                    while size <= MAX_TEXT_BYTES and (piece := unpacked.read(1 << 20)):
                        size += len(piece)
    except (OSError, EOFError, zlib.error) as exc:  # also a damaged gzip file (worded as the
        raise InvalidInstanceError(f"{path}: cannot be read ({exc})") from None  # trace readers)
    if size > MAX_TEXT_BYTES:
        raise InvalidInstanceError(
            f"{path}: more than {MAX_TEXT_BYTES:,} bytes of text{' once decompressed' if compressed else ''}"
            f": cut the {what} to the time window you need first")


def read_text_file(path: Path) -> str:
    """A data file's text: UTF-8, with or without a byte-order mark, plain or gzip-compressed
    (told by the content's first bytes, as the trace readers do, not by the name), a regular
    file of at most :data:`MAX_TEXT_BYTES` of text. Noted in an open
    :func:`servopt.core.reads.recording_reads` block (a benchmark cache keys on it)."""
    path = Path(path)
    regular_file(path)
    too_big = (f"{path}: more than {MAX_TEXT_BYTES:,} bytes of text: larger than any instance "
               "servopt generates (a damaged or hostile file?)")
    try:
        note_read(f"file:{path.resolve()}", path)
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):  # (replaced since the stat)
                raise InvalidInstanceError(f"{path}: not a regular file")
            if info.st_size > MAX_TEXT_BYTES and handle.read(2) != GZIP_MAGIC:
                raise InvalidInstanceError(too_big)  # (plain text: refused before it is read)
            handle.seek(0)
            data = handle.read(MAX_TEXT_BYTES + 1)
        if data[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as unpacked:
                data = unpacked.read(MAX_TEXT_BYTES + 1)  # (stops there: a bomb is not expanded)
        if len(data) > MAX_TEXT_BYTES:
            raise InvalidInstanceError(too_big)
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInstanceError(f"{path}: cannot read: not UTF-8 text ({exc})") from None
    except (OSError, EOFError, zlib.error) as exc:  # also a damaged gzip file
        raise InvalidInstanceError(f"{path}: cannot read ({exc})") from None


def read_json_text(path_or_text: str | Path) -> tuple[str, str]:
    """Return (text, source label) for a path or for JSON text itself. A file may be gzip-compressed
    and may start with a UTF-8 byte-order mark (see :func:`read_text_file`); so may the text."""
    if not isinstance(path_or_text, str | Path):
        raise InvalidInstanceError(
            f"expected a file path or JSON text, got {type(path_or_text).__name__}")
    if isinstance(path_or_text, str):
        path_or_text = path_or_text.removeprefix("\ufeff")
    if isinstance(path_or_text, Path) or not str(path_or_text).lstrip().startswith(("{", "[")):
        if not str(path_or_text).strip():
            raise InvalidInstanceError("empty input: expected a file path or JSON text")
        path = Path(path_or_text)
        try:
            exists = path.exists()
        except (OSError, ValueError) as exc:  # e.g. a long text that is not JSON: name too long
            shown = str(path_or_text)[:40] + ("..." if len(str(path_or_text)) > 40 else "")
            raise InvalidInstanceError(
                f"{shown!r} is neither JSON text (which starts with '{{') nor a readable file "
                f"path ({exc.__class__.__name__})") from None
        if not exists:
            raise InvalidInstanceError(f"{path}: no such file")
        return read_text_file(path), str(path)
    return str(path_or_text), "JSON text"


def _read_only(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.flags.writeable = False
    return array


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise InvalidInstanceError("cannot write non-finite numbers to JSON")
        return {"ndarray": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, pd.DataFrame):
        return {"frame": {str(c): _encode(value[c].to_numpy()) for c in value.columns}}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInstanceError("cannot write non-finite numbers to JSON")
    return value


def _check_magnitude(value: Any, name: str) -> None:
    """Refuse a finite number beyond :data:`MAX_MAGNITUDE` in a scalar, a numeric array (float or
    integer), a list or tuple of numbers, or a frame's numeric columns (NaN and infinity are left
    to each decision's ``validate``, which names the rule; text and ragged lists too)."""
    if isinstance(value, bool | np.bool_):
        return
    if isinstance(value, list | tuple):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError, OverflowError):
            return  # ragged or mixed: validate refuses it by name
    if isinstance(value, int) and not isinstance(value, np.integer):  # any size, exactly
        big = abs(value) > MAX_MAGNITUDE
    elif isinstance(value, int | float | np.integer | np.floating):
        big = math.isfinite(value) and abs(value) > MAX_MAGNITUDE
    elif isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
        finite = value[np.isfinite(value)]
        big = finite.size > 0 and float(np.abs(finite).max()) > MAX_MAGNITUDE
    elif isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.size:
        big = bool(value.max() > MAX_MAGNITUDE or value.min() < -MAX_MAGNITUDE)
    elif isinstance(value, np.ndarray) and value.dtype.kind == "O" and value.size:
        # Python ints past int64 (10**20) make an object array: find them without a Python loop
        try:
            numbers = pd.to_numeric(pd.Series(value.ravel()), errors="coerce").to_numpy(dtype=float)
        except (TypeError, ValueError):
            return
        numbers = numbers[np.isfinite(numbers)]
        big = numbers.size > 0 and float(np.abs(numbers).max()) > MAX_MAGNITUDE
    elif isinstance(value, pd.DataFrame):
        for column in value.columns:
            _check_magnitude(value[column].to_numpy(), f"{name} column {column!r}")
        return
    else:
        return
    if big:
        raise InvalidInstanceError(
            f"field {name!r}: a value beyond {MAX_MAGNITUDE:.0e} (no serving quantity is that large, and the "
            "solvers treat such numbers as infinite); check the units")


def _decode_array(data: Any, dtype: str, where: str) -> np.ndarray:
    """A JSON nested list as a ``dtype`` array, refusing what a cast would silently change."""
    target = np.dtype(dtype)
    try:
        found = np.array(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInstanceError(f"{where}: not a rectangular {dtype} array ({exc})") from None
    if found.size == 0:
        return found.astype(target)
    kind = found.dtype.kind
    if kind not in "biuf":
        raise InvalidInstanceError(f"{where}: expected numbers, found {found.dtype} values")
    if (kind == "b") != (target.kind == "b"):
        expected = "true/false" if target.kind == "b" else "numbers"
        raise InvalidInstanceError(f"{where}: expected {expected} for a {dtype} array")
    if kind == "f" and not np.all(np.isfinite(found)):
        raise InvalidInstanceError(f"{where}: NaN or infinity (JSON instances hold finite numbers)")
    if target.kind in "iu":
        if kind == "f" and np.any(found != np.floor(found)):
            raise InvalidInstanceError(f"{where}: expected whole numbers for a {dtype} array")
        info = np.iinfo(target)
        # exact: the range ends are powers of two (float(2**63 - 1) rounds up to 2**63, which a
        # float comparison with info.max let through, and the cast wrapped it to -2**63)
        low, high = int(found.min()), int(found.max())
        if low < info.min or high > info.max:
            raise InvalidInstanceError(f"{where}: a value outside the {dtype} range [{info.min}, {info.max}]")
    if target.kind == "f" and np.abs(found).max() > np.finfo(target).max:
        raise InvalidInstanceError(f"{where}: a value beyond the {dtype} range")
    decoded = found.astype(target)
    return decoded + decoded.dtype.type(0) if target.kind == "f" else decoded  # -0.0 -> 0.0


_FILE_KEYS = frozenset({"decision", "schema_version", "fields"})  # what to_dict writes
_ARRAY_KEYS = frozenset({"ndarray", "dtype"})
_FRAME_KEYS = frozenset({"frame"})


def _refuse_stray(value: dict[str, Any], allowed: frozenset[str], what: str, where: str) -> None:
    """Refuse keys beside an array's or a table's own (a typo'd "dtpye" would read as float64)."""
    stray = sorted(set(value) - allowed, key=str)
    if stray:
        raise InvalidInstanceError(
            f"{where}: unknown key(s) {stray} in {what}; it holds only {sorted(allowed)}")


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if "ndarray" in value:
            _refuse_stray(value, _ARRAY_KEYS, "an array", where)
            dtype = value.get("dtype", "float64")
            if not isinstance(dtype, str) or dtype not in _ALLOWED_DTYPES:
                raise InvalidInstanceError(f"{where}: unsupported array dtype {dtype!r}")
            return _decode_array(value["ndarray"], dtype, where)
        if "frame" in value:
            _refuse_stray(value, _FRAME_KEYS, "a table", where)
            cols = value["frame"]
            if not isinstance(cols, dict):
                raise InvalidInstanceError(f"{where}: 'frame' must map column names to arrays")
            decoded = {c: _decode(v, f"{where} column {c!r}") for c, v in cols.items()}
            try:
                return pd.DataFrame(decoded)
            except ValueError as exc:
                raise InvalidInstanceError(f"{where}: columns differ in length ({exc})") from None
        return {k: _decode(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if isinstance(value, float) and value == 0.0:
        return 0.0  # -0.0 (a "capacity -0 tokens" summary) is 0
    return value


def _holds_true_false(value: Any) -> bool:
    """Whether a parsed JSON value holds ``true`` or ``false`` anywhere (in a list, an array's
    ``ndarray``, a frame's column): numpy and pandas read them as 1 and 0 among numbers."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is True or item is False:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            kinds = set(map(type, item))  # one C-level pass (a loop in Python was 0.33 s for
            if bool in kinds:  # three 1e6-entry columns)
                return True
            if list in kinds or dict in kinds:
                stack.extend(v for v in item if isinstance(v, list | dict))
    return False
