"""Parameter checks shared by the generators: each names the parameter and the rule it breaks."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from servopt.core.errors import InvalidInstanceError


def whole_number(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int, refused unless it is a whole number in [low, high] (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidInstanceError(f"{name} must be a whole number >= {low}, got {value!r}")
    if high is not None and value > high:
        raise InvalidInstanceError(f"{name} must be at most {high:,}, got {value:,}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """A true/false option as a bool, refused by name unless True or False (numpy's too): "no",
    1 or NaN are not answers, and Python would take them as true."""
    if not isinstance(value, bool | np.bool_):
        raise InvalidInstanceError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def number(name: str, value: Any, ok: Callable[[float], bool], rule: str) -> float:
    """``value`` as a float, refused unless it is a real number (not a bool) with ``ok(value)``;
    ``rule`` says the range in the user's terms (NaN fails every comparison, so it is refused;
    so is an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not ok(value):
        raise InvalidInstanceError(f"{name} must be {rule}, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # a Python int past a float's range (10**400)
        raise InvalidInstanceError(f"{name} must be {rule}, got an integer of {len(str(abs(value)))} "
                                   "digits, beyond a float's range (about 1.8e308)") from None


def either(name: str, value: Any, alias: str, alias_value: Any, default: Any) -> Any:
    """The value of a parameter that has two names (``name`` and its ``alias``): the one given,
    ``default`` when neither is (None means not given); refused when both are."""
    if value is not None and alias_value is not None:
        raise InvalidInstanceError(
            f"give {name} or {alias}, not both: they are two names of one parameter (got "
            f"{name}={value!r} and {alias}={alias_value!r})")
    if value is not None:
        return value
    return alias_value if alias_value is not None else default


#: One quantity under each decision's name for it (R22). These are not aliases: a decision
#: refuses another decision's name, and the unknown-parameter messages use this table to say
#: what the decision calls it (:func:`synonym_hint`). The README's "Your own instance" lists it.
SYNONYMS: tuple[tuple[str, dict[str, str]], ...] = (
    ("KV-cache capacity of one worker, in tokens",
     {"decode_routing": "kv_capacity", "batch_scheduling": "kv_memory", "capacity": "kv_tokens"}),
    ("requests running at once on one worker (batch slots)",
     {"decode_routing": "slots", "batch_scheduling": "max_batch", "capacity": "batch_cap"}),
    ("request arrival rate, in requests/s",
     {"capacity": "arrival_rate", "caching": "rate"}),
    ("spread (sigma) of the log-normal error of the predicted output lengths, 0 = exact",
     {"decode_routing": "prediction_error", "batch_scheduling": "noise"}),
    ("fixed time of one step or iteration: step_ms in ms, step_overhead_s in seconds",
     {"decode_routing": "step_ms", "capacity": "step_overhead_s"}),
)


def synonym(name: str, decision: str, accepted: Any = None) -> tuple[str, str, str] | None:
    """``(ours, what, theirs)``: ``decision``'s name ``ours`` of the quantity ``what`` that
    ``theirs`` (other decisions) name ``name`` (from :data:`SYNONYMS`); None when the table has
    no other name for it here (or, with ``accepted``, a collection of the names the function
    takes, when the function does not take that name)."""
    for what, names in SYNONYMS:
        ours = names.get(decision)
        if ours is None or ours == name or name not in names.values():
            continue
        if accepted is not None and ours not in accepted:
            continue
        return ours, what, " and ".join(d for d, n in names.items() if n == name)
    return None


def synonym_hint(name: str, decision: str, accepted: Any = None) -> str:
    """What ``decision`` calls the quantity another decision names ``name`` (:func:`synonym`):
    ``"this decision calls it 'X' (...)"``, or ``""`` when it has no other name here."""
    found = synonym(name, decision, accepted)
    if found is None:
        return ""
    ours, what, theirs = found
    return f"this decision calls it {ours!r} ({what}; {name!r} is {theirs}'s name)"


def closest_names(name: str, accepted: Iterable[str], n: int = 1) -> list[str]:
    """The accepted names a misspelled ``name`` most likely means: first those that begin with
    ``name`` as whole words (``gpus`` -> ``gpus_per_node``; ``difflib`` alone offered
    ``gpu_speed``), then ``difflib``'s closest matches; at most ``n``."""
    accepted = [str(a) for a in accepted]
    words = str(name).split("_")
    prefixed = [a for a in accepted if a != name and a.split("_")[:len(words)] == words]
    close = difflib.get_close_matches(str(name), accepted, n=n)
    return list(dict.fromkeys(prefixed + close))[:n]
