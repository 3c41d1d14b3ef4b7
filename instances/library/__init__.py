"""The named instance library: benchmark instances of every decision with their best known values.

``manifest.json`` lists, per instance: its decision, size class (``small``: the optimum of the
decision's model proved -- for capacity that model is the fluid LP, for caching the IP whose
relaxation, the interval LP, bounds the larger ones; ``medium``; ``large``: bound only), file, sha256 of the
file, the best known objective and bound, the kind of bound, the solve options that reproduce them,
and how they were obtained. A file whose hash does not match the manifest is reported as corrupted
or tampered and never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from servopt.core import Instance, InvalidInstanceError
from servopt.core.checks import closest_names
from servopt.core.instance import DuplicateKeyError, unique_keys

LIBRARY_DIR = Path(__file__).resolve().parent
SIZES = ("small", "medium", "large")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One library instance as the manifest records it."""

    name: str
    decision: str
    size: str
    file: str
    sha256: str
    objective: float | None
    bound: float | None
    bound_kind: str
    solve: dict[str, Any]
    obtained: str
    wall_s: float | None = None
    summary: str = ""

    @property
    def path(self) -> Path:
        return LIBRARY_DIR / self.file


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(path: Path | None = None) -> dict[str, Entry]:
    """Entries by name; an unreadable manifest is an :class:`InvalidInstanceError`."""
    path = path or LIBRARY_DIR / "manifest.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(), object_pairs_hook=unique_keys)
        items = raw["instances"]
        if not isinstance(items, list):
            raise TypeError(f"'instances' must be a list, got {type(items).__name__}")
        entries = [_entry(item, number) for number, item in enumerate(items)]
    except (json.JSONDecodeError, KeyError, TypeError, DuplicateKeyError) as exc:
        raise InvalidInstanceError(f"{path}: the library manifest is malformed ({exc})") from None
    named = {e.name: e for e in entries}
    if len(named) != len(entries):
        twice = sorted({e.name for e in entries if sum(f.name == e.name for f in entries) > 1})
        raise InvalidInstanceError(f"{path}: the library manifest is malformed (instance name(s) "
                                   f"{twice} listed twice)")
    return named


_TEXT = ("name", "decision", "file", "sha256", "bound_kind", "obtained", "summary")
_NUMBER_OR_NULL = ("objective", "bound", "wall_s")


def _entry(item: Any, number: int) -> Entry:
    """One manifest entry with the types :class:`Entry` states (TypeError naming the entry and
    field otherwise: a text objective failed deep in ``library verify``, a size outside
    :data:`SIZES` as 'tuple.index(x): x not in tuple', a ``true`` bound was listed as 1)."""
    if not isinstance(item, dict):
        raise TypeError(f"entry {number} is not an object")
    label = f"entry {number}" + (f" ({item['name']!r})" if isinstance(item.get("name"), str) else "")
    fields = {f.name for f in dataclasses.fields(Entry)}
    required = {f.name for f in dataclasses.fields(Entry) if f.default is dataclasses.MISSING}
    unknown, missing = sorted(set(item) - fields), sorted(required - set(item))
    if unknown or missing:
        raise TypeError(f"{label}: " + "; ".join(
            ([f"unknown field(s) {unknown}"] if unknown else [])
            + ([f"missing field(s) {missing}"] if missing else [])))

    def bad(field: str, rule: str) -> TypeError:
        return TypeError(f"{label}: field {field!r} must be {rule}, got {item[field]!r}")

    for field in _TEXT:
        if field in item and not isinstance(item[field], str):
            raise bad(field, "text")
    for field in _NUMBER_OR_NULL:
        value = item.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise bad(field, "a finite number or null")
    if item["size"] not in SIZES:
        raise bad("size", f"one of {', '.join(SIZES)}")
    solve = item["solve"]
    if not isinstance(solve, dict):
        raise bad("solve", "an object of solve options")
    if len(item["sha256"]) != 64 or not all(c in "0123456789abcdef" for c in item["sha256"]):
        raise bad("sha256", "64 lowercase hexadecimal digits")
    file = Path(item["file"])
    if file.is_absolute() or ".." in file.parts or not item["file"]:
        raise bad("file", "a path inside the library folder")
    return Entry(**item)


def write_manifest(entries: list[Entry], path: Path | None = None) -> None:
    path = path or LIBRARY_DIR / "manifest.json"
    data = {"schema_version": 1,
            "instances": [dataclasses.asdict(e) for e in sorted(entries, key=_order)]}
    path.write_text(json.dumps(data, indent=1) + "\n")


def _order(entry: Entry) -> tuple[str, int, str]:
    return entry.decision, SIZES.index(entry.size), entry.name


def entry(name: str) -> Entry:
    entries = read_manifest()
    if not isinstance(name, str) or name not in entries:
        close = closest_names(name, entries, n=3) if isinstance(name, str) else []
        raise InvalidInstanceError(
            f"no library instance named {name!r}; "
            + (f"did you mean {', '.join(close)}? " if close else "")
            + "`servopt library list` shows them")
    return entries[name]


def load(name: str) -> Instance:
    """Load a library instance after checking its file against the manifest's sha256."""
    from servopt.instances import load as load_file

    item = entry(name)
    if not item.path.is_file():
        raise InvalidInstanceError(f"library instance {name!r}: file {item.file} is missing")
    digest = sha256_file(item.path)
    if digest != item.sha256:
        raise InvalidInstanceError(
            f"library instance {name!r}: {item.file} is corrupted or was modified "
            f"(sha256 {digest[:12]}... does not match the manifest's {item.sha256[:12]}...)")
    instance = load_file(item.path)
    if instance.decision != item.decision:
        raise InvalidInstanceError(
            f"library instance {name!r}: the file holds a {instance.decision} instance, the "
            f"manifest says {item.decision}")
    return instance


def names(decision: str | None = None, sizes: tuple[str, ...] = SIZES) -> list[str]:
    return [e.name for e in sorted(read_manifest().values(), key=_order)
            if (decision is None or e.decision == decision) and e.size in sizes]
