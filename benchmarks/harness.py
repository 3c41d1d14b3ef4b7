"""The evaluator protocol and the gap table.

Each decision's benchmark module ``servopt.benchmarks.<d>`` provides

- ``evaluate(instance, method, **kw) -> Outcome``: runs the method (a name from
  ``servopt.solvers.<d>.POLICIES`` or a policy object) and scores its decisions with the
  module's own evaluator (a simulator for online decisions), never the model's objective;
- ``bound(instance, **kw) -> Bound``: the best bound on the cost, saying which kind:
  ``optimal``, ``mip_bound``, ``lp_relaxation`` or ``lower_bound`` (proved), or ``simulated``
  (capacity: an empirical reference from simulation, not a proof);
- optionally ``SENSE`` (``"min"`` by default) and ``DEFAULT_METHODS``.

``evaluate`` and ``bound`` are decorated with :func:`checked_keywords`, which refuses an unknown
keyword and, given ``check=``, a bad option value, both as :class:`OptionError` before any method
runs; ``evaluate.check_options(**kw)`` runs the same checks without running anything (what
:func:`gap_table` does once before its loop).

``gap = (cost - bound) / |bound|`` for a min decision, ``(bound - cost) / |bound|`` for a max one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import math
import numbers
import os
import re
import sys
import time
import traceback
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from servopt.core import Instance, InvalidInstanceError
from servopt.core.checks import closest_names
from servopt.core.registry import layer_module
from servopt.core.solution import BOUND_KINDS, relative_gap

# optimal: a proved optimum; mip_bound: a MIP's dual bound; lp_relaxation: an LP relaxation's
# value; lower_bound: another proved bound (combinatorial, hindsight; above the optimum for a
# max-sense decision); simulated: the best value
# found by simulation (e.g. the fewest stable workers), an empirical reference, not a proof.
TABLE_COLUMNS = ["method", "cost", "bound", "bound_kind", "gap", "wall_s", "status"]


def written_at(exc: BaseException, names: tuple[str, ...] | list[str]) -> tuple[str, list[str]]:
    """Where a policy wrote into a read-only array (numpy's "assignment destination is
    read-only"): `` (file, line N: code)`` of the deepest frame of ``exc`` outside numpy, and
    which of ``names`` (the arrays the evaluator lends) that line mentions."""
    numpy_dir = os.path.dirname(np.__file__)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not frame.filename.startswith(numpy_dir):
            code = (frame.line or "").strip()
            named = [n for n in names if re.search(rf"\b{n}\b", code)]
            return f" ({frame.filename}, line {frame.lineno}{': ' + code if code else ''})", named
    return "", []


@dataclasses.dataclass
class Outcome:
    """What an evaluator reports for one method on one instance.

    cost : the realised cost, computed by the evaluator (units: the decision's cost unit).
    metrics : the decision's own metrics (name -> number).
    wall_s : wall-clock seconds of the method, as each evaluator can separate them:
        expert_placement the planning call (or the plan's own ``wall_s``); decode_routing the
        router's decisions; batch_scheduling the policy's ``prepare`` and every decision;
        capacity the planning call less its calls of the simulated worker; caching the whole
        replay (the rule decides inside it, so the cache's bookkeeping and the method's
        preparation, such as an LP, are included: ``requests_per_s`` is its rate).
    status : ``ok`` or a short reason the method did not produce a full decision.

    Speed and throughput metrics differ by decision, and two kinds must not be compared: the
    method's own speed and the served system's throughput. Method speed: expert_placement
    ``plan_ms`` (ms of planning for all layers, the same measure as ``wall_s`` x 1000),
    decode_routing ``router_us`` (microseconds of router time per request), caching
    ``requests_per_s`` (requests replayed per wall-clock second, cache bookkeeping included).
    System throughput: batch_scheduling ``throughput`` (output tokens per simulated round),
    decode_routing ``throughput_tok_s`` (output tokens per simulated second of decode steps).
    Each decision's ``evaluate`` docstring lists every metric with its unit.
    """

    cost: float
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    wall_s: float = math.nan
    status: str = "ok"


@dataclasses.dataclass
class Bound:
    """A bound on the optimal cost. ``kind`` is one of :data:`BOUND_KINDS`."""

    value: float
    kind: str
    wall_s: float = math.nan
    status: str = "ok"

    def __post_init__(self) -> None:
        if self.kind not in BOUND_KINDS:
            raise ValueError(f"bound kind {self.kind!r} is not one of {BOUND_KINDS}")


F = TypeVar("F", bound=Callable[..., Any])


def accepted_keywords(func: Callable[..., Any], *forwards: Callable[..., Any]) -> list[str]:
    """The options a call of ``func`` takes: its own parameters with a default and the
    keyword-only ones of each function its ``**kw`` is passed on to (the required ones, such as
    the instance and the method, are not options)."""
    names = [p.name for p in inspect.signature(func).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty]
    for forward in forwards:
        names += [p.name for p in inspect.signature(forward).parameters.values()
                  if p.kind is p.KEYWORD_ONLY and p.name not in names]
    return names


class OptionError(InvalidInstanceError):
    """An option of an evaluator or a bound that it does not take or whose value it refuses (the
    caller's error, not a method's): :func:`gap_table` raises it instead of making error rows.
    ``option``: the option refused, when one is named (:func:`gap_table` then says its value)."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@contextlib.contextmanager
def refusing(option: str) -> Iterator[None]:
    """Inside, an :class:`InvalidInstanceError` (a shared check refusing the value of ``option``:
    ``whole_number``, ``number``, ``seconds``) is re-raised as an :class:`OptionError` naming it,
    with the same message: for a decision's ``check=`` function (:func:`checked_keywords`)."""
    try:
        yield
    except OptionError as exc:
        if exc.option is None:
            exc.option = option
        raise
    except InvalidInstanceError as exc:
        raise OptionError(str(exc), option=option) from None


def unknown_keywords(public: str, given: Iterable[str], accepted: list[str]) -> None:
    """Refuse keywords ``public`` (the public function's dotted name) does not take: an
    :class:`OptionError` naming it, each unknown keyword (with a close accepted one if
    there is one) and every keyword it accepts; nothing when all are known."""
    unknown = [k for k in given if k not in accepted]
    if not unknown:
        return
    parts = []
    for key in unknown:
        close = closest_names(str(key), accepted)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    takes = ", ".join(accepted) if accepted else "no keyword options"
    noun = "argument" if len(parts) == 1 else "arguments"  # Python's words, with the public name
    raise OptionError(f"{public}() got an unexpected keyword {noun} {', '.join(parts)}; "
                               f"it accepts: {takes}")


_KINDS = {bool: "True or False", int: "a whole number", float: "a number", str: "text"}


def option_kinds(func: Callable[..., Any], *forwards: Callable[..., Any]) -> dict[str, tuple[
        frozenset[type], bool]]:
    """The options of ``func`` (and of ``forwards``, as :func:`accepted_keywords`) whose annotation
    is ``bool``, ``int``, ``float``, ``str`` or a union of them (with None or not): name ->
    (the kinds, whether None is in the annotation). An option annotated otherwise (``Any``, a
    class) is not listed, nor any of a function whose annotations do not resolve."""
    kinds: dict[str, tuple[frozenset[type], bool]] = {}
    for f in (func, *forwards):
        try:
            hints = typing.get_type_hints(inspect.unwrap(f))
        except Exception:  # (a name only imported for type checkers: no kinds from this one)
            continue
        for p in inspect.signature(f).parameters.values():
            if (p.name in kinds or p.name not in hints or p.default is p.empty
                    or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)):
                continue
            hint = hints[p.name]
            args = typing.get_args(hint) if isinstance(hint, types.UnionType) or \
                typing.get_origin(hint) is typing.Union else (hint,)
            simple = frozenset(a for a in args if a is not type(None))
            if simple and simple <= set(_KINDS):
                kinds[p.name] = (simple, type(None) in args)
    return kinds


def of_kind(value: Any, kinds: frozenset[type], none: bool) -> bool:
    """Whether ``value`` is of an option's annotated kinds: a bool option takes True or False, an
    int option a whole number (not True/False), a float option a number, a str option text;
    None when the annotation has it."""
    if value is None:
        return none
    is_bool = isinstance(value, bool | np.bool_)
    return ((bool in kinds and is_bool) or (str in kinds and isinstance(value, str))
            or (int in kinds and not is_bool and isinstance(value, numbers.Integral))
            or (float in kinds and not is_bool and isinstance(value, numbers.Real)))


def kind_error(public: str, name: str, value: Any, kinds: frozenset[type], none: bool,
               why: BaseException | None = None) -> OptionError:
    """The :class:`OptionError` for ``public``'s option ``name`` given ``value`` (not of
    ``kinds``), with the error the call ended in, if any."""
    want = " or ".join(_KINDS[k] for k in (bool, int, float, str) if k in kinds)
    return OptionError(f"{public}(): option {name} must be {want}{' (or None)' if none else ''}, "
                       f"got {value!r}" + (f" ({type(why).__name__}: {why})" if why else ""),
                       option=name)


def checked_keywords(*forwards: Callable[..., Any],
                     check: Callable[..., None] | None = None) -> Callable[[F], F]:
    """Decorate a decision's public ``evaluate`` or ``bound``: a keyword it does not take (nor the
    functions in ``forwards`` its ``**kw`` goes to) is refused by :func:`unknown_keywords` before
    the call, instead of a TypeError naming an internal function (``simulate()``, ``bound()``);
    a flag (an option annotated ``bool``) that is not True or False is refused (the evaluator
    would take "no" as true); then ``check(**options)``, when given, refuses a bad option value (it raises
    :class:`OptionError` naming the option), also before the call: before any method runs.
    The decorated function's ``check_options(**options)`` runs these checks alone, and its
    ``checks_values`` says whether it was given a ``check`` (:func:`gap_table` trusts such an
    evaluator to refuse every bad option value before it runs). An option
    of another annotated kind (int, float, str: :func:`option_kinds`) is left to the evaluator,
    whose message is the more precise; but a call that ends in a bare TypeError or ValueError
    while such an option is not of its kind (decode_routing's ``seed="x"``: numpy's
    "SeedSequence expects int") is re-raised as an :class:`OptionError` naming the option.
    ``help()`` and ``inspect.signature`` still show the function's own signature."""
    def decorate(func: F) -> F:
        public = f"{func.__module__}.{func.__qualname__}"
        accepted = accepted_keywords(func, *forwards)
        required = [p.name for p in inspect.signature(func).parameters.values()
                    if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]

        kinds = option_kinds(func, *forwards)

        def check_options(**options: Any) -> None:
            unknown_keywords(public, options, accepted)
            for key, value in options.items():  # a flag is never judged by the evaluator: here
                if key in kinds and kinds[key][0] == {bool} and not of_kind(value, *kinds[key]):
                    raise kind_error(public, key, value, *kinds[key])
            if check is not None:
                check(**options)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            options = {k: v for k, v in kwargs.items() if k not in required}
            check_options(**options)
            try:
                return func(*args, **kwargs)
            except (TypeError, ValueError) as exc:  # not an evaluator's own refusal: an option?
                if isinstance(exc, InvalidInstanceError):
                    raise
                for key, value in options.items():
                    if key in kinds and not of_kind(value, *kinds[key]):
                        raise kind_error(public, key, value, *kinds[key], exc) from exc
                raise

        wrapper.accepted_keywords = accepted  # type: ignore[attr-defined]
        wrapper.check_options = check_options  # type: ignore[attr-defined]
        wrapper.checks_values = check is not None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]
    return decorate


def benchmark_module(decision: str) -> Any:
    """The evaluator module of ``decision`` (``servopt.benchmarks.<decision>``, or a registered
    plug-in's)."""
    return layer_module(decision, "benchmarks")


def method_names(decision: str) -> list[str]:
    """The default methods of a decision: ``DEFAULT_METHODS`` or all of ``POLICIES``."""
    bench = benchmark_module(decision)
    if hasattr(bench, "DEFAULT_METHODS"):
        return list(bench.DEFAULT_METHODS)
    return list(layer_module(decision, "solvers").POLICIES)


def _policies(decision: str) -> dict[str, Any]:
    """The decision's ``POLICIES`` (empty when it has no solvers layer, as a registered decision
    may not, or none)."""
    try:
        return dict(getattr(layer_module(decision, "solvers"), "POLICIES", {}) or {})
    except InvalidInstanceError:
        return {}


def known_methods(decision: str) -> tuple[str, ...] | None:
    """The method names ``decision``'s evaluator takes: its ``POLICIES`` then any other of its
    ``DEFAULT_METHODS``; None when it declares neither (a plug-in that resolves names itself)."""
    names = list(_policies(decision))
    names += [m for m in getattr(benchmark_module(decision), "DEFAULT_METHODS", ()) if m not in names]
    return tuple(names) if names else None


def evaluate(instance: Instance, method: Any, **kwargs: Any) -> Outcome:
    """Evaluate one method on an instance with the decision's evaluator. An evaluator (a
    plug-in's) that returns anything but an :class:`Outcome` is a TypeError naming it."""
    outcome = benchmark_module(instance.decision).evaluate(instance, method, **kwargs)
    if not isinstance(outcome, Outcome):
        raise TypeError(f"the {instance.decision} evaluator returned {type(outcome).__name__}, "
                        "not a servopt.benchmarks.harness.Outcome")
    said = f"the {instance.decision} evaluator reported"
    if not isinstance(outcome.status, str):
        raise TypeError(f"{said} status {outcome.status!r}: a status is text ('ok' or why not)")
    for field in ("cost", "wall_s"):
        value = getattr(outcome, field)
        if not _is_real(value):
            raise TypeError(f"{said} {field} {value!r}: a number (NaN where it has none)")
    if not isinstance(outcome.metrics, dict):
        raise TypeError(f"{said} metrics {outcome.metrics!r}: a dict of name: number")
    if outcome.status in ("ok", "optimal") and math.isnan(float(outcome.cost)):
        raise ValueError(f"{said} cost nan with status {outcome.status} (a cost it did not "
                         "measure needs a status saying why)")
    return outcome


def _is_real(value: Any) -> bool:
    """A real number (NaN and infinity included: infinity is a cost no finite fleet reaches)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def compute_bound(instance: Instance, **kwargs: Any) -> Bound:
    """The decision's best provable bound on ``instance`` (its evaluator's ``bound`` with
    ``kwargs``), with the wall seconds it took when the evaluator did not time itself. A
    ``bound`` (a plug-in's) that returns anything but a :class:`Bound` is a TypeError naming it."""
    start = time.perf_counter()
    bound = benchmark_module(instance.decision).bound(instance, **kwargs)
    if not isinstance(bound, Bound):
        raise TypeError(f"the {instance.decision} bound returned {type(bound).__name__}, "
                        "not a servopt.benchmarks.harness.Bound")
    for field in ("value", "wall_s"):
        if not _is_real(getattr(bound, field)):
            raise TypeError(f"the {instance.decision} bound returned {field} "
                            f"{getattr(bound, field)!r}: a number (NaN where it has none)")
    if math.isnan(bound.wall_s):
        bound.wall_s = time.perf_counter() - start
    return bound


BELOW_BOUND = "below_bound"
ABOVE_BOUND = "above_bound"  # (the same for a max-sense decision: a value above its upper bound)


def flag_below_bound(gap: float, status: str, sense: str = "min") -> str:
    """``status``, or :data:`BELOW_BOUND` (:data:`ABOVE_BOUND` for a ``max`` decision) when an
    ``ok`` (or ``optimal``) run's cost beats the provable bound (gap < 0, ``-inf`` included: a
    cost below a bound of 0): the method did something outside the bound's model (e.g. batch scheduling's
    preemption, which the non-preemptive hindsight model excludes) or something is wrong. The
    tolerance is :func:`relative_gap`'s: a cost within ``GAP_RTOL`` of its bound has gap 0 and is
    not flagged."""
    if status in ("ok", "optimal") and gap < 0:
        return ABOVE_BOUND if sense == "max" else BELOW_BOUND
    return status


def outcome_row(method: str, outcome: Outcome, bound: Bound, sense: str) -> dict[str, Any]:
    """One gap-table row."""
    gap = relative_gap(float(outcome.cost), float(bound.value), sense)
    row: dict[str, Any] = {
        "method": method,
        "cost": float(outcome.cost),
        "bound": float(bound.value),
        "bound_kind": bound.kind,
        "gap": gap,
        "wall_s": float(outcome.wall_s),
        "status": flag_below_bound(gap, outcome.status, sense),
    }
    for key, value in outcome.metrics.items():
        if key in row:
            raise ValueError(f"metric name {key!r} clashes with a gap-table column")
        row[key] = value
    return row


def method_label(method: Any) -> str:
    """A gap-table label: the name itself, else the policy's ``name`` attribute when the object
    or its own class sets it, else its class or function name (a subclass of ``Policy`` that sets
    no name is labelled by its class, not by the base's generic ``policy``)."""
    if isinstance(method, str):
        return method
    name = getattr(method, "name", None)
    own = ("name" in method.__dict__ if isinstance(method, type) else
           "name" in getattr(method, "__dict__", {}) or "name" in type(method).__dict__)
    if isinstance(name, str) and name and own:
        return name
    return getattr(method, "__name__", None) or type(method).__name__


def _stateless(method: Any) -> bool:
    """Whether listing ``method`` twice runs it twice from scratch: a class (each run makes its
    own object) or a plain function; a policy object, a bound method or a ``partial`` can carry
    state from one run into the next."""
    return isinstance(method, type) or inspect.isfunction(method) or inspect.isbuiltin(method)


# values that are data, never a method of any decision: a list entry of these ran as an error
# row (a RuntimeWarning and ``error: ... lacks start()``), though it is the caller's mistake
_DATA = (type(None), bool, numbers.Number, bytes, bytearray, str, list, tuple, set, frozenset,
         dict, np.ndarray, np.generic, pd.Series, pd.DataFrame)


def _resolver(decision: str) -> Callable[[Any], Any] | None:
    """The decision's own check of a method: its solvers' ``make_policy`` (batch scheduling,
    caching, decode routing) or its evaluator module's ``resolve`` (capacity, expert
    placement), else None (a plug-in without one)."""
    with contextlib.suppress(InvalidInstanceError):
        found = getattr(layer_module(decision, "solvers"), "make_policy", None)
        if callable(found):
            return found
    found = getattr(benchmark_module(decision), "resolve", None)
    return found if callable(found) else None


def _check_method(decision: str, where: str, method: Any) -> None:
    """Refuse, before anything runs, an entry of a methods list (``where``: ``methods[i]`` or
    ``label 'x'``) that is no method: data (None, a number, a list, a dict, ...), or an object
    (neither a class nor callable) the decision's own check refuses (:func:`_resolver`; it is
    given the object itself, so nothing is made or called). A name is checked by
    :func:`_labelled`; a class or a callable (a factory, a plan function) is left to the
    evaluator, which makes or calls it as it runs (what it raises then is the method's row)."""
    said = f"{method!r}"
    said = said if len(said) <= 60 else said[:57] + "..."
    if isinstance(method, _DATA) and not isinstance(method, str):
        raise InvalidInstanceError(
            f"gap_table(): {where} is {said} ({type(method).__name__}), not a {decision} method: "
            "give a method name, a policy class or function, or a policy object"
            + (" (a dict {label: method} is the whole methods argument, naming the rows)"
               if isinstance(method, dict) else ""))
    if isinstance(method, str | type) or callable(method):
        return
    check = _resolver(decision)
    if check is None:
        return
    try:
        check(method)
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"gap_table(): {where} ({type(method).__name__} object) is "
                                   f"not a {decision} method: {exc}") from None
    except Exception:  # (a plug-in's check that fails otherwise: left to the run, as before)
        return


def _labelled(decision: str, methods: Any) -> list[tuple[str, Any]]:
    """``(label, method)`` per method of a :func:`gap_table` call, every label unique and a
    built-in's name only on a row of that built-in; refused (by name) are: a name listed twice,
    an unknown name, one policy object listed twice (a class or a plain function may be: each
    run starts afresh), a dict label that names another built-in (a label may name the
    built-in's own class or function, ``{"fcfs": POLICIES["fcfs"]}``), an entry that is no
    method (:func:`_check_method`, naming its position or label), and ``methods`` that is
    neither a list of methods nor a dict."""
    known = known_methods(decision)
    builtin = set(known or ())

    def check_name(name: str, where: str) -> None:
        if known is not None and name not in builtin:
            close = difflib.get_close_matches(name, known, n=1)
            raise InvalidInstanceError(
                f"gap_table(): {where}{name!r} is not a {decision} method"
                + (f" (did you mean {close[0]!r}?)" if close else "") + f"; known: {', '.join(known)}")

    if isinstance(methods, dict):
        labelled = []
        for key, method in methods.items():
            label = str(key)
            if any(label == other for other, _ in labelled):
                raise InvalidInstanceError(f"gap_table(): two methods are labelled {label!r}")
            if isinstance(method, str):
                check_name(method, f"label {label!r}: ")
            else:
                _check_method(decision, f"label {label!r}", method)
            if label in builtin and method != label and method is not _policies(decision).get(label):
                what = repr(method) if isinstance(method, str) else f"a {type(method).__name__} object"
                raise InvalidInstanceError(
                    f"gap_table(): the label {label!r} is the name of a built-in {decision} "
                    f"method but maps to {what}; give it another label (a built-in's name labels "
                    "only that built-in's row)")
            labelled.append((label, method))
    else:
        try:
            chosen = list(methods) if methods is not None else None
        except TypeError:  # (not iterable: a policy alone, a number)
            raise InvalidInstanceError(
                f"gap_table(): methods is a {type(methods).__name__}, not a list of methods "
                "(names, policy classes, functions or objects) or a dict {label: method}; "
                "a single policy goes in a list: [policy]") from None
        if chosen is None:
            chosen = method_names(decision)
        for i, method in enumerate(chosen):
            if not isinstance(method, str):
                _check_method(decision, f"methods[{i}]", method)
        names = [m for m in chosen if isinstance(m, str)]
        for name in names:
            check_name(name, "")
            if names.count(name) > 1:
                raise InvalidInstanceError(f"gap_table(): method {name!r} is listed twice")
        # a name keeps its label; an object's label is its name or class, with #2, #3, ... when
        # that is taken by an earlier row or is a built-in's name (which labels only the built-in)
        used = set(names)
        labelled = []
        for method in chosen:
            label = method
            if not isinstance(method, str):
                base = label = method_label(method)
                count = 1
                while label in used or label in builtin:
                    count += 1
                    label = f"{base}#{count}"
                used.add(label)
            labelled.append((label, method))
    objects: dict[int, str] = {}
    for label, method in labelled:
        if not isinstance(method, str) and not _stateless(method):
            if id(method) in objects:
                raise InvalidInstanceError(
                    f"gap_table(): the same object is listed twice (rows {objects[id(method)]!r} "
                    f"and {label!r}): its second run would start from the state the first left "
                    "in it; pass two separate objects (or the class, or a POLICIES name)")
            objects[id(method)] = label
    return labelled


def _caller_level() -> int:
    """The ``stacklevel`` of a warning from :func:`gap_table` that points at the first caller
    outside servopt (``servopt.gap_table`` is a wrapper around it)."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("servopt"):
        level, frame = level + 1, frame.f_back
    return level


def _keyword_error(exc: BaseException, options: set[str]) -> bool:
    """Whether ``exc`` is an evaluator refusing one of ``options`` (not a method's own error)."""
    text = str(exc)
    return (isinstance(exc, TypeError | InvalidInstanceError)
            and "unexpected keyword argument" in text and any(f"'{k}'" in text for k in options))


def _option_named(exc: BaseException, options: dict[str, Any]) -> str | None:
    """The option of ``options`` an evaluator's ValueError or TypeError (InvalidInstanceError
    included) is about, or None: its message names the option (as a word) and shows the value
    given (its repr or text), as an evaluator's own range check does ("eps must be in [0, 1),
    got -1"; "unknown dispatch 'bogus'"). Only for a plug-in evaluator without a value check
    (its ``evaluate`` not decorated by :func:`checked_keywords` with ``check=``): the match can
    misfire on a method's own error that happens to name an option and its value, and misses a
    refusal worded otherwise, so an evaluator with a check is never second-guessed by it."""
    if not isinstance(exc, TypeError | ValueError):
        return None
    text = str(exc)
    for key, value in options.items():
        shown = {repr(value), str(value)} - {""}
        if re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", text) and any(v in text for v in shown):
            return key
    return None


def gap_table(
    instance: Instance,
    methods: Iterable[Any] | dict[str, Any] | None = None,
    *,
    bound_kw: dict[str, Any] | None = None,
    **evaluate_kw: Any,
) -> pd.DataFrame:
    """One row per method: ``method, cost, bound, bound_kind, gap, wall_s, status`` + metrics
    (``status`` is ``below_bound``, ``above_bound`` for a max decision, for a run whose cost beats
    the bound: see :func:`flag_below_bound`).

    ``methods`` defaults to the decision's default methods; it may mix POLICIES names and policy
    objects (your own heuristic next to the built-in ones), or be a dict ``{label: method}`` to
    name the rows. A name is its row's label, and may be listed once. An object is labelled by its
    ``name`` attribute or class, with ``#2``, ``#3`` when an earlier row has that label or it is
    the name of one of the decision's built-in methods (an object labels no row ``fcfs``: only
    the built-in does). In a dict, a label that is a built-in's name must map to that name (or
    to that built-in's own ``POLICIES`` entry). The same policy object may not appear twice (its
    second run would start from its first run's state); pass two objects. A class or a plain
    function may appear twice (every run starts afresh), its rows labelled as above
    (``fcfs#2``, ``fcfs#3`` for ``POLICIES["fcfs"]`` twice). Each entry is checked before
    anything runs: a name, a class or a callable (a factory or a plan function, which the
    evaluator makes or calls as it runs), or an object the decision's own check takes (its
    solvers' ``make_policy`` or its evaluator module's ``resolve``, given the object alone);
    anything else (None, a number, a list, a dict inside the list, an object without the
    decision's protocol) is an :class:`InvalidInstanceError` naming its position
    (``methods[1]``) or label (:func:`_check_method`).

    A method that fails gives a row with ``status`` ``error: <exception>`` (cost and gap NaN), as
    ``servopt bench`` does, and a ``RuntimeWarning`` naming its label and the error; its
    traceback (text) is in ``table.attrs["tracebacks"][label]``.

    What is the caller's, not a method's, raises instead of making rows: the instance (checked
    when it is built, and its type here), the methods list (above), and the options. Before the
    bound and before any method runs, ``evaluate_kw`` go through the evaluator's
    ``evaluate.check_options`` and ``bound_kw`` through ``bound.check_options`` (see
    :func:`checked_keywords`): an unknown keyword or a value the evaluator refuses (e.g. batch
    scheduling's ``max_rounds=-3``, capacity's ``eps=-1``) is an :class:`OptionError` naming the
    option (``gap_table() for capacity: option eps=-1 refused: ...`` when the check names it).
    Every built-in evaluator and bound has such a check. An :class:`OptionError` a method's
    evaluation raises (an evaluator that checks an option only as it runs) is re-raised too, as
    is a failing bound. Only for a plug-in evaluator without a value check (no ``check=``: its
    ``evaluate.checks_values`` false or absent), a ValueError or TypeError whose message names
    one of ``evaluate_kw`` and shows its value (:func:`_option_named`: "horizon must be >= 1,
    got -3") is taken for the evaluator refusing it as it runs and raised as an
    :class:`OptionError` at the first method that meets it; such a guess would also raise for a
    method's own error that happened to name an option and its value. With a check, a method's
    error is always its row. ``evaluate_kw`` go to every ``evaluate`` call and ``bound_kw`` to
    the bound.
    """
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(f"gap_table() needs a servopt instance, got {type(instance).__name__}")
    bench = benchmark_module(instance.decision)
    sense = getattr(bench, "SENSE", "min")
    if isinstance(methods, str):  # one method name (iterating the string would give letters)
        methods = [methods]
    labelled = _labelled(instance.decision, methods)
    if not labelled:
        raise InvalidInstanceError("gap_table() needs at least one method (None: the decision's defaults)")
    options = set(evaluate_kw) | set(bound_kw or {})
    # the caller's options are checked once, before the bound and any method runs: a value the
    # evaluator or the bound refuses is the caller's error for every row, not a method's
    for public, given in ((bench.evaluate, evaluate_kw), (bench.bound, bound_kw or {})):
        check = getattr(public, "check_options", None)
        if check is None:
            continue
        try:
            check(**given)
        except OptionError as exc:
            if exc.option not in given:  # (batch's check, an unknown keyword: said as it is)
                raise
            raise OptionError(f"gap_table() for {instance.decision}: option {exc.option}="
                              f"{given[exc.option]!r} refused: {exc}", option=exc.option) from None
    # an evaluator with a value check has refused every bad option above: a method's error
    # that happens to name an option and its value is the method's (its row), never guessed at
    guess = not getattr(bench.evaluate, "checks_values", False)
    try:
        bound = compute_bound(instance, **(bound_kw or {}))
    except TypeError as exc:  # an option the bound does not take
        if not _keyword_error(exc, options):
            raise
        raise InvalidInstanceError(f"gap_table() for {instance.decision}: {exc}") from None
    rows: list[dict[str, Any]] = []
    tracebacks: dict[str, str] = {}
    for label, method in labelled:
        try:
            outcome = evaluate(instance, method, **evaluate_kw)
        except OptionError:  # (an evaluator that checks an option only when it runs)
            raise
        except Exception as exc:  # the method's failure is its row, as in the runner
            if _keyword_error(exc, options):  # (an option the evaluator does not take)
                if isinstance(exc, TypeError):
                    raise InvalidInstanceError(f"gap_table() for {instance.decision}: {exc}") from None
                raise
            key = _option_named(exc, evaluate_kw) if guess else None
            if key is not None:  # the caller's option, refused as the evaluator ran: every row's
                raise OptionError(f"gap_table() for {instance.decision}: option {key}="
                                  f"{evaluate_kw[key]!r} refused: {exc}") from exc
            tracebacks[label] = traceback.format_exc()
            warnings.warn(
                f"gap_table(): method {label!r} failed: {type(exc).__name__}: {exc} (its row's "
                f"status is error; its traceback is in table.attrs['tracebacks'][{label!r}])",
                RuntimeWarning, stacklevel=_caller_level())
            rows.append({"method": label, "cost": math.nan, "bound": float(bound.value),
                         "bound_kind": bound.kind, "gap": math.nan, "wall_s": math.nan,
                         "status": f"error: {type(exc).__name__}: {exc}"})
            continue
        # (a metric named like a column raises: the evaluator's defect, every row's)
        rows.append(outcome_row(label, outcome, bound, sense))
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in TABLE_COLUMNS]
    frame = frame[TABLE_COLUMNS + extra]
    frame.attrs["tracebacks"] = tracebacks
    return frame
