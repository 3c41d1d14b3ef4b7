"""The ``servopt`` command line: solve, generate, bench (and more per decision).

Errors print one line ``servopt: error: ...``; never a traceback. Exit status: 0 done, 1 the job
ran but failed (a benchmark run raised, a solve found neither a solution nor a bound), 2 bad
input or options, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM: a benchmark stops as on
Ctrl-C, its finished runs cached; a second SIGTERM, or one to any other command, ends the process
at once, as by default).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servopt.core.checks import closest_names, synonym_hint
from servopt.core.errors import InvalidInstanceError
from servopt.core.files import replace_text
from servopt.core.instance import DECISIONS

DEFAULT_OUT = "servopt-results"
CAPACITY_OPTIONS = {  # the capacity instance's fields, by the option that sets each
    "arrival_rate": "--rate", "kv_tokens": "--kv-tokens", "token_budget": "--token-budget",
    "batch_cap": "--batch-cap", "prefill_chunk": "--prefill-chunk",
    "step_overhead_s": "--step-ms (/ 1000)", "per_token_s": "--per-token-ms (/ 1000)",
    "step_ms": "--step-ms", "per_token_ms": "--per-token-ms",
    "headroom": "--headroom", "requests": "--requests",
    "memory_utilisation": "--memory-utilisation", "gpus": "--gpus", "model preset": "--model",
    "GPU preset": "--gpu", "profile preset": "--profile", "seed": "--seed"}
# capacity --sim-requests: about 0.4 GB and a minute per simulated rate (1e6 arrivals: 0.39 GB
# peak, 47 s, measured by an audit)
MAX_SIM_REQUESTS = 1_000_000
MAX_SIM_SEEDS = 100  # capacity --sim-seeds: replications per simulated rate
DEFAULT_GPU = "a100-80gb"
DEFAULT_PROFILE = "llama3-8b@a100"


def _json_number(text: str) -> int | float:
    """A JSON number with a fraction or an exponent: a whole number written in e-notation
    (``requests=1e4``, ``1.5e3``) is that int (JSON reads it as the float 10000.0, which a count
    refuses), exactly (``1e30`` is 10**30, not the float's 1000000000000000019884624838656);
    anything else is a float."""
    if "e" in text.lower():
        from decimal import Decimal, InvalidOperation

        with contextlib.suppress(InvalidOperation, ValueError, OverflowError):
            exact = Decimal(text)
            if exact.is_finite() and exact == exact.to_integral_value() and exact.adjusted() < 400:
                return int(exact)
    number = float(text)
    if math.isinf(number):  # (JSON has no infinity: only a literal beyond a float's range)
        raise ValueError(f"{text} is beyond any number servopt takes (a float reaches 1.8e308)")
    return number


def _whole_number(text: str) -> int:
    """argparse's ``type=`` of the whole-number options: an integer, also in e-notation
    (``--requests 1e4``) as a generate parameter takes it (:func:`_json_number`); anything else
    (``1.5``, ``1.0``, text) is refused, and argparse names the option."""
    with contextlib.suppress(ValueError):
        return int(text)
    with contextlib.suppress(ValueError):
        number = _json_number(text.strip())
        if isinstance(number, int):
            return number
    raise argparse.ArgumentTypeError(f"a whole number is needed (e.g. 10000 or 1e4), got {text!r}")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text, parse_float=_json_number)
    except json.JSONDecodeError:
        return text


def _parse_params(items: list[str]) -> dict[str, Any]:
    params = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"parameter {item!r} must look like name=value")
        key, value = item.split("=", 1)
        try:
            params[key.strip().replace("-", "_")] = _parse_value(value)
        except ValueError as exc:
            raise ValueError(f"{key.strip()}={value}: {exc}") from None
    return params


def _check_params(generate: Any, params: dict[str, Any], decision: str) -> None:
    """Refuse an unknown generator parameter (listing the known ones), text for a number and a
    list or object where the parameter takes a single value."""
    import inspect

    signature = inspect.signature(generate)
    known = [name for name, p in signature.parameters.items()
             if name != "seed" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for name, value in params.items():
        parameter = signature.parameters.get(name)
        if name == "seed":
            raise ValueError(f"generate {decision}: give the seed as --seed {value}, not seed={value}")
        if parameter is None and not takes_any:
            hint = synonym_hint(name, decision, known)
            raise ValueError(f"generate {decision}: unknown parameter {name!r} "
                             f"(parameters: {', '.join(known)})" + (f"; {hint}" if hint else ""))
        if parameter is None:
            continue
        annotation = str(parameter.annotation)
        numeric = ("int" in annotation or "float" in annotation) and "str" not in annotation
        if isinstance(value, str) and "tuple" in annotation and numeric:  # (low, high) ranges
            raise ValueError(f"generate {decision}: {name} must be a pair of numbers written as "
                             f"[low,high] (e.g. {name}=[1,40]), got {value!r}")
        if isinstance(value, str) and numeric:
            raise ValueError(f"generate {decision}: {name} must be a number, got {value!r}")
        collection = ("tuple", "list", "dict", "Sequence", "Mapping", "ndarray", "Any")
        if (isinstance(value, list | dict) and parameter.annotation is not parameter.empty
                and not any(word in annotation for word in collection)):
            kind = "a number" if numeric else "a name" if "str" in annotation else "a single value"
            raise ValueError(f"generate {decision}: {name} must be {kind}, got {json.dumps(value)}")


# the option whose value makes a from_trace draw at random (its seed is used only then)
_TRACE_RANDOM = {"decode_routing": "prediction_error", "batch_scheduling": "noise"}


def _trace_params(from_trace: Any, params: dict[str, Any], decision: str,
                  seed: int) -> tuple[dict[str, Any], dict[str, int]]:
    """``generate DECISION --generator trace path=FILE ...``: the parameters for the decision's
    ``from_trace`` (``path`` under the name of its first argument) and its seed (none when it
    draws nothing at random: a --seed other than 0 is then refused)."""
    import inspect

    parameters = inspect.signature(from_trace).parameters
    first = next(iter(parameters))
    if "path" not in params:
        raise ValueError(f"generate {decision} --generator trace: give the trace file as "
                         f"path=FILE (servopt.instances.{decision}.from_trace's {first})")
    value = params.pop("path")
    if not isinstance(value, str):  # path=2023 reads as a number: it names a file
        value = json.dumps(value)
    if first in params and first != "path":
        raise ValueError(f"generate {decision} --generator trace: give the trace file once, as path=")
    params = {first: value, **params}
    missing = [name for name, p in parameters.items() if p.default is p.empty
               and p.kind is p.KEYWORD_ONLY and name not in params]
    if missing:
        raise ValueError(f"generate {decision} --generator trace: from_trace needs "
                         f"{', '.join(f'{name}=VALUE' for name in missing)}")
    random = _TRACE_RANDOM.get(decision)  # the one option that makes from_trace draw
    if "seed" in parameters and (random is None or params.get(random) not in (None, 0)):
        return params, {"seed": seed}
    if "seed" in parameters and seed:
        raise ValueError(f"generate {decision} --generator trace: --seed {seed} would not be used "
                         f"(servopt.instances.{decision}.from_trace draws at random only for "
                         f"{random}=...)")
    if "seed" in parameters:
        return params, {"seed": seed}
    if seed:
        raise ValueError(f"generate {decision} --generator trace: --seed {seed} would not be used "
                         f"(servopt.instances.{decision}.from_trace draws nothing at random)")
    return params, {}


def cmd_solve(args: argparse.Namespace) -> int:
    from servopt.instances import load
    from servopt.solvers import exact

    if not 0 <= args.mip_gap < 1:
        raise ValueError(f"--mip-gap must be in [0, 1), got {args.mip_gap}")
    if args.prices < 0:
        raise ValueError(f"--prices must be >= 0, got {args.prices}")
    time_limit = None if args.time_limit == 0 else args.time_limit
    if time_limit is not None and not 0 < time_limit < math.inf:
        raise ValueError(f"--time-limit must be positive seconds (0 for none), got {args.time_limit}")
    if not args.file.strip():
        raise ValueError("solve: an empty file name (an unset shell variable?); give an instance "
                         "file or the name of a library instance (`servopt library list`)")
    shown = args.file if len(args.file) <= 60 else args.file[:60] + "..."  # (not 15 KB of JSON)
    try:
        exists = Path(args.file).exists()
    except (OSError, ValueError) as exc:  # a name too long for a file name, a NUL in it
        exists, why = False, exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    else:
        why = None
    if not exists and args.file.lstrip().startswith(("{", "[")):
        raise ValueError(f"{shown}: solve takes an instance file (`servopt generate` writes one) "
                         "or the name of a library instance (`servopt library list`), not JSON text")
    if why is not None:
        raise ValueError(f"{shown!r}: neither a readable file path nor the name of a library "
                         f"instance ({why})")
    if not exists and not args.file.endswith(".json"):
        from servopt.instances import library

        manifest = library.read_manifest()
        if args.file in manifest:  # a library name: checked against its sha256
            instance = library.load(args.file)
            recorded = manifest[args.file].solve
            if recorded.get("relax") and not args.relax:
                print(f"note: the library records {args.file} with its LP relaxation (its exact "
                      "model is large: building and solving it can take minutes); add --relax for "
                      "the recorded solve", file=sys.stderr)
        else:
            close = closest_names(args.file, manifest, n=3)
            raise ValueError(f"{shown}: neither a file nor the name of a library instance ("
                             + (f"did you mean {', '.join(close)}? " if close else "")
                             + "`servopt library list` lists them)")
    else:
        instance = load(args.file)
    module = exact.model_module(instance.decision)
    linear = getattr(module, "LINEAR", False)
    if instance.decision == "decode_routing" and getattr(instance, "arrival_unit", "step") != "step":
        module.activity(instance)  # refuses a seconds clock (no model of it), before any --backend advice
    if args.backend == "cvxpy" and not getattr(module, "CVXPY_RELAXES", True):
        raise ValueError(f"--backend cvxpy: the CVXPY form of {instance.decision} is "
                         f"{getattr(module, 'CVXPY_FORM', 'another model')}, which needs more than the "
                         "instance (Python only: see its build_cvxpy); use the default --backend highs "
                         "(add --relax for the LP relaxation)")
    if args.backend == "cvxpy" and not args.relax and not linear:
        raise ValueError(f"--backend cvxpy solves LPs only, and the {instance.decision} model is an "
                         "integer program: add --relax for its LP relaxation, or use the default "
                         "--backend highs for the exact model")
    if args.out is not None:
        args.out = writable_folder(args.out)  # before the solve, not after it
    print(instance.summary(), flush=True)  # before the build, which can take a while
    solution = exact.solve(instance, relax=args.relax, time_limit=time_limit,
                           backend=args.backend, mip_gap=args.mip_gap)
    kind = ("LP relaxation (a bound)" if solution.relaxed else "LP" if solution.info.get("lp", linear)
            else "MIP (prices: duals of the LP with the integers fixed at the incumbent)")
    form = solution.info.get("form")
    where = solution.backend if not form or solution.backend == "cvxpy" else f"highs, {form} form"
    print(f"problem   {kind} [{where}]")
    print(f"status    {solution.status}")
    from servopt.core.solution import objective_unit

    unit = objective_unit(solution.decision)
    print(f"objective {solution.objective:.8g}" + (f"  ({unit})" if unit else ""))
    source = solution.info.get("bound_kind", "mip_bound")  # where a MIP's bound comes from
    print(f"bound     {solution.bound:.8g}" + ("" if source in ("mip_bound", "optimal") else f"  ({source})"))
    if solution.info.get("note"):
        print(f"note      {solution.info['note']}")
    skipped_highs = solution.info.get("highs_skipped")
    if skipped_highs or solution.info.get("build_skipped"):
        why = ("interrupted during the bound LP" if skipped_highs == "interrupted"
               else f"{skipped_highs}: the build and bound LP left less than its set-up" if skipped_highs
               else "time_limit: the model would not be built in time")
        print(f"          HiGHS did not run ({why}): the incumbent is the model's start, with "
              + ("no bound" if math.isnan(solution.bound) else "the bound above") + " and no prices")
    gap = solution.gap
    print(f"gap       {gap:.4%}" if math.isfinite(gap) else "gap       n/a")
    print(f"time      {solution.wall_s:.2f} s")
    if solution.status == "time_limit":
        found = [name for name, value in (("an incumbent", solution.objective),
                                          ("a proved bound", solution.bound)) if not math.isnan(value)]
        what = " and ".join(found) if found else "neither an incumbent nor a bound"
        print(f"          time limit of {time_limit:g} s reached with {what} (the limit covers the "
              "build where the model checks the clock, a MIP's bound LP (solved first), the "
              "solve and the prices; --time-limit S for longer, 0 for none)")
    skipped = solution.info.get("prices_skipped")
    if skipped == "time_limit":
        print("prices    none: the time limit left no time for the price LP (--time-limit S for "
              "longer)")
    elif skipped == exact.INTEGER_PRICES_SKIPPED and math.isnan(solution.objective):
        # (exact names the model's reason, which holds only once there is an incumbent to fix)
        print("prices    none: no incumbent to fix the integer variables at"
              + (" (the time limit came first)" if solution.status == "time_limit" else ""))
    elif skipped == exact.INTEGER_PRICES_SKIPPED:
        print("prices    none: integer model, with its integer variables fixed nothing is left to "
              "move, so its prices would be zero by construction (add --relax for the LP's prices)")
    elif skipped:
        print(f"prices    none: {skipped}")
    if args.out is not None:
        folder = solution.save(args.out)
        parts = (("prices", solution.prices), ("decisions", solution.decisions))
        written = ["solution.json"] + [
            f"{part}/{next(iter(tables))}.csv" if len(tables) == 1
            else f"{part}/{{{','.join(sorted(tables))}}}.csv" for part, tables in parts if tables]
        missing = [f"{part}/" for part, tables in parts if not tables]
        print(f"written   {folder}/: {', '.join(written)}"
              + (f" (no {' or '.join(missing)}: the solution has none)" if missing else ""))
    top = solution.top_prices(args.prices, per_family=True)
    if not top.empty:
        print(f"largest prices, up to {args.prices} per constraint family (capacity rows: objective "
              "improvement per unit of extra capacity; equality rows: d objective / d right-hand side)"
              + ("" if solution.info.get("lp", True) else
                 ", with the integer decisions fixed at the incumbent (--relax for the LP "
                 "relaxation's prices)") + ":")
        for row in top.itertuples(index=False):
            scalar = row.index is None or (isinstance(row.index, float) and math.isnan(row.index))
            print(f"  {row.family}{'' if scalar else f'[{row.index}]'} = {row.price:.6g}")
    no_price = [f"{family} ({int(series.isna().sum())} of {len(series)} rows)"  # NaN: no price
                for family, series in solution.prices.items() if series.isna().any()]
    if no_price and args.prices > 0:  # (a MIP's binding rows over integer variables only:
        # solution.info["prices_note"]; --prices 0 asks for no prices, so none of this either)
        print(f"no price  {', '.join(no_price)}: binding rows over integer variables only (with "
              "the integers fixed at the incumbent nothing in them can move, so the LP prices "
              "nothing there; add --relax for the LP's prices)")
    if solution.status == "time_limit" and math.isnan(solution.objective) and math.isnan(solution.bound):
        print(f"servopt: error: nothing found within the time limit of {time_limit:g} s",
              file=sys.stderr)
        return 1
    rejected = solution.info.get("incumbent_rejected")
    if rejected:  # also under time_limit / interrupted, where the incumbent is dropped the same way
        print(f"          {rejected}")
    if solution.status == "error":  # (a Ctrl-C inside HiGHS is "interrupted": exact notes it)
        print("servopt: error: the solver stopped without a solution "
              + ("(its incumbent broke a row once rounded; see above)" if rejected
                 else "(a solver failure)"), file=sys.stderr)
        return 1  # the job ran but failed (the module docstring's table)
    if solution.status == "interrupted":
        print("servopt: interrupted; " + interrupted_note(solution), file=sys.stderr)
        return 130
    return 0


def interrupted_note(solution: Any) -> str:
    """What an interrupted solve kept, for its last line: the incumbent and bound shown, or why
    there is no incumbent (HiGHS through Pyomo loses it on Ctrl-C; the matrix form keeps it)."""
    have_bound = not math.isnan(solution.bound)
    if not math.isnan(solution.objective):
        return ("the incumbent and bound above are what the solver had" if have_bound
                else "the incumbent above is what the solver had (no bound was proved)")
    bound = "; the bound above is what it had proved" if have_bound else " and no bound"
    if solution.info.get("form") == "pyomo":
        return ("no incumbent: HiGHS solved through the Pyomo model, which keeps none on "
                "Ctrl-C (the matrix form, the default --backend highs where the model has one, "
                f"keeps it){bound}")
    return f"no incumbent was found before the interrupt{bound}"


def writable_file(path: str, option: str) -> Path:
    """An output file option (``-o``): a path whose folder exists and is writable, checked before
    any work is done (an existing file is replaced)."""
    if not str(path).strip():
        raise ValueError(f"{option}: an empty path (an unset shell variable?)")
    if os.path.basename(path) in ("", ".", "..") or (os.altsep and path.endswith(os.altsep)):
        raise ValueError(f"{option} {path}: a folder path (it ends in {path[-1]!r}); give a file name")
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{option} {path}: a folder, not a file")
    folder = out.parent
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {path}: {folder} is a file, not a folder")
    if not folder.exists():
        raise ValueError(f"{option} {path}: no such folder {folder} (create it first)")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {path}: folder {folder} is not writable "
                         f"({exc.strerror or exc})") from None
    return out


def cmd_generate(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    from servopt.core.registry import layer_module
    from servopt.instances import IgnoredParameterWarning

    module = layer_module(args.decision, "instances")
    trace = args.generator == "trace"
    name = ("from_trace" if trace else "generate" if args.generator in (None, "default")
            else f"generate_{args.generator}")
    generate = getattr(module, name, None)
    if not callable(generate):
        others = sorted(n.removeprefix("generate_") for n in dir(module) if n.startswith("generate_"))
        if callable(getattr(module, "from_trace", None)):
            others.append("trace")
        raise ValueError(f"generate {args.decision}: no generator {args.generator!r} "
                         f"(generators: default{''.join(', ' + n for n in others)})")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    params = _parse_params(args.params)
    seed = {"seed": args.seed}
    if trace:  # the trace file is from_trace's first argument, whatever its name there
        params, seed = _trace_params(generate, params, args.decision, args.seed)
    _check_params(generate, params, args.decision)
    output = writable_file(args.output, "-o")
    given = ", ".join(item.strip() for item in args.params)
    try:
        # numpy's overflow warnings (a huge spread, a huge time) point into site-packages: the
        # value is judged by the instance's checks below, which name the parameters given
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            # a parameter given that has no effect (load=0.3 with offline arrivals): refused,
            # where the Python API warns (a sweep passing one set of parameters keeps running)
            warnings.simplefilter("error", IgnoredParameterWarning)
            instance = generate(**seed, **params)
    except (ValueError, TypeError, ArithmeticError, IgnoredParameterWarning) as exc:
        message = str(exc)
        if given and not any(re.match(rf"{re.escape(name)}\b", message) or f"{name} must" in message
                             or repr(name) in message or f"{name}={params[name]!r}" in message
                             for name in params):
            # about an internal field (a column the parameters produced): name what was given
            message = f"with {given}: {message}"
        raise ValueError(f"generate {args.decision}: {message}") from None
    except MemoryError:
        raise ValueError(f"generate {args.decision}: out of memory"
                         + (f" with {given} (a smaller instance?)" if given else "")) from None
    try:
        instance.to_json(output)
    except OSError as exc:
        raise ValueError(f"-o {args.output}: cannot write it ({exc.strerror or exc})") from None
    print(f"wrote {args.output}: {instance.summary()}")
    return 0


def writable_folder(path: str) -> Path:
    """``--out``: the folder, created if missing and checked writable before any work is done."""
    if not str(path).strip():
        raise ValueError("--out: an empty path (an unset shell variable?)")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {path}: a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(f"--out {path}: not a writable folder ({exc.strerror or exc})") from None
    return out


def report_name(name: str) -> str:
    """``bench --name``: a plain file name (the reports are ``NAME.md``, ``NAME.csv`` and
    ``NAME-*.png`` inside --out), checked before the runs."""
    if not name.strip():
        raise ValueError("--name: an empty name (an unset shell variable?)")
    if name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise ValueError(f"--name {name}: a plain file name is needed, without a folder part (the "
                         "reports go into --out)")
    if "\0" in name or name != name.strip():
        raise ValueError(f"--name {name!r}: a file name without a NUL or surrounding spaces is needed")
    if len(name.encode()) > 200:
        raise ValueError(f"--name: {len(name.encode())} bytes is too long for a file name (at most 200)")
    return name


def default_report_name(suite: str, cases: list[str] | None) -> str:
    """``bench``'s report name without ``--name``: the suite, or the cases joined by "-"; when
    that passes 200 bytes (all 16 registered cases gave "File name too long"), the first case,
    the count of the others and a digest of the whole list, so distinct lists stay distinct."""
    if not cases:
        return suite
    joined = "-".join(cases)
    if len(joined.encode()) <= 200:
        return joined
    digest = hashlib.sha256(joined.encode()).hexdigest()[:10]
    return f"{cases[0][:120]}-and-{len(cases) - 1}-more-{digest}"


REPORT_SUFFIXES = (".csv", ".md", "-gap.png", "-cost-time.png", "-tracebacks.txt")  # bench's files


def report_targets(out: Path, name: str) -> None:
    """Refuse, before the runs, a folder where ``servopt bench`` writes one of its files
    (``OUT/NAME.md``, ``.csv``, the plots, the tracebacks): its replace would fail after all the
    runs, naming a temporary file (``servopt report`` checks its md the same way)."""
    for suffix in REPORT_SUFFIXES:
        target = out / f"{name}{suffix}"
        if target.is_dir():
            raise ValueError(f"{target}: a folder where servopt bench writes its {suffix.lstrip('.-')} "
                             "file: move it, or choose another --name or --out")


def list_cases(cases: list[Any]) -> int:
    """``servopt bench --list``: each registered case, its decision, suites and runs (parameter
    sets x seeds x (methods + the bound)), computing nothing."""
    print(f"{'case':34} {'decision':17} {'suites':18} {'runs':>5}  description")
    for case in cases:
        runs = len(case.tasks()) * (len(case.method_list()) + 1)
        print(f"{case.name:34} {case.decision:17} {','.join(case.suites):18} {runs:5d}  "
              f"{case.description}".rstrip())
    print("run a suite with servopt bench --suite NAME (default quick), cases with --case NAME")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from servopt.benchmarks import registry, report, runner

    if not 1 <= args.jobs <= runner.MAX_JOBS:
        raise ValueError(f"--jobs must be >= 1 worker process (at most {runner.MAX_JOBS}), got "
                         f"{args.jobs}")
    if args.name is not None:
        report_name(args.name)
    if args.suite is not None and not args.suite.strip():
        raise ValueError("--suite: an empty name (an unset shell variable?)")
    if args.case and args.suite is not None:
        raise ValueError("give --suite or --case, not both (--case runs the named cases whatever "
                         "their suite)")
    if args.list and (args.case or args.suite is not None):
        raise ValueError("--list lists every registered case; it takes no --suite or --case")
    args.suite = args.suite or "quick"
    if args.case:  # a name given twice is one case (and one part of the report's name)
        args.case = list(dict.fromkeys(args.case))
    loaded = [load_plugin(spec) for spec in args.plugin or []]  # before discovery: their cases
    if args.list:
        return list_cases(registry.cases())
    if args.case:  # (registry.cases' own message lists every case, without a close match)
        known = [case.name for case in registry.cases()]
        for case in args.case:
            if case not in known:
                close = closest_names(case, known, n=3)
                raise ValueError(f"--case {case}: no benchmark case of that name ("
                                 + (f"did you mean {', '.join(close)}? " if close else "")
                                 + "`servopt bench --list` lists them; a case of one's own: "
                                 "--plugin MODULE)")
    selected = registry.cases(suite=None if args.case else args.suite, names=args.case or None)
    if not selected:
        known = registry.suites()
        raise ValueError(f"bench: no benchmark case is registered for suite {args.suite!r}"
                         + (f" (suites with cases: {', '.join(known)})" if known else ""))
    out = writable_folder(args.out)  # before the runs: a bad --out must not lose hours of work
    name = args.name or default_report_name(args.suite, args.case)
    report_targets(out, name)  # (and a folder where a report goes: R51 F3)
    cache = None if args.no_cache else out / "cache"
    load_start = report.load_average()
    own = runner.own_sources(selected)  # (before the runs: the code they ran)
    frame = runner.run(selected, jobs=args.jobs, scheduler=args.scheduler, cache_dir=cache,
                       progress=not args.quiet)
    # what the figures depend on besides the code (HiGHS's version, the machine's load)
    provenance = {**report.environment(), "load average at start": load_start,
                  "load average at end": report.load_average(),
                  **({"plug-ins": "; ".join(loaded)} if loaded else {}),
                  **({"code outside servopt (hashed into the cache keys)": "; ".join(
                      f"{path} sha256 {digest}" for path, digest in own.items())} if own else {}),
                  "jobs": (f"the workers of the Dask scheduler {args.scheduler}"
                           if args.scheduler not in (None, "local")
                           else str(frame.attrs.get("jobs", args.jobs))
                           + (" (a local Dask cluster)" if args.scheduler else ""))}
    if frame.attrs.get("runs_cached"):
        provenance["from the cache"] = (f"{frame.attrs['runs_cached']} of {frame.attrs['runs']} "
                                        "runs (computed by an earlier run, perhaps under other "
                                        "versions or load)")
    argv = getattr(args, "argv", None)
    command = "servopt " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    paths = report.write_reports(frame, out, name, command=command, provenance=provenance)
    tracebacks = frame.attrs.get("tracebacks") or []
    traceback_file = out / f"{name}-tracebacks.txt"
    if tracebacks:  # every failed run's traceback (the table and the lines below say only where)
        paths.append(write_tracebacks(tracebacks, traceback_file))
    else:  # an earlier run's, about runs that have now succeeded: it would describe no row here
        with contextlib.suppress(FileNotFoundError):
            traceback_file.unlink()
    if not args.no_plots:
        from servopt.benchmarks import plots

        paths += plots.write_plots(frame, out, name)
    else:  # an earlier run's plots would sit beside this report as if they were its own
        for stale in (out / f"{name}-gap.png", out / f"{name}-cost-time.png"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    print(report.format_gap_table(frame))
    print()
    print("wrote " + ", ".join(str(p) for p in paths))
    code = 0
    for column, what in (("status", "run(s)"), ("bound_status", "bound(s)")):
        if not len(frame) or column not in frame.columns:
            continue
        failed = frame[frame[column].astype(str).str.startswith("error")]
        if column == "bound_status":  # one bound per task, repeated on each of its method rows
            failed = failed.drop_duplicates(["case", "params", "seed"])
        for case, rows in failed.groupby("case", sort=False):
            first = rows.iloc[0]
            where = f"{first['method']}, " if column == "status" else ""
            at = _error_at(tracebacks, first, bound=column == "bound_status")
            print(f"servopt: error: {case}: {len(rows)} {what} failed; first ({where}seed "
                  f"{first['seed']}): {first[column].removeprefix('error: ')}"
                  + (f" (at {at})" if at else ""), file=sys.stderr)
            code = 1
    if tracebacks:
        print(f"servopt: the failed runs' tracebacks are in {traceback_file}", file=sys.stderr)
    return code


def load_plugin(spec: str) -> str:
    """``bench --plugin``: import the module (a name or a .py path) before the cases are
    discovered; returns its state for the report's provenance (``name (file, sha256 ...)``).
    What the module raises while it is imported (``sys.exit`` included) is one line naming the
    plug-in, its line and, when deeper, the user's line: see :func:`_plugin_failure`."""
    import hashlib

    from servopt.benchmarks import registry

    try:
        module = registry.load_plugin(spec)
    except SystemExit as exc:  # an exit status of its own would pass for servopt's
        code = "" if exc.code is None else repr(exc.code)
        file, line, _ = _plugin_where(spec, exc)
        raise ValueError(f"plug-in {spec}{f' ({file})' if file else ''} exited "
                         f"(sys.exit({code})) while being imported"
                         + (f", at line {line}" if line else "")) from None
    except Exception as exc:  # its own code failed: say where, not a deep traceback
        message = _plugin_failure(spec, exc)
        if message is None:  # the --plugin refused before anything of it ran: already one line
            raise
        raise ValueError(message) from None
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        return f"{module.__name__} (no source file)"
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()[:12]
    return f"{module.__name__} ({file}, sha256 {digest})"


def _plugin_frames(exc: BaseException) -> list[Any]:
    """The traceback frames of ``exc`` below the import that ``registry.load_plugin`` started
    and outside importlib's own machinery (outermost first): the plug-in's frames and what it
    called. Empty when the exception came from ``load_plugin`` itself (a refused --plugin)."""
    import traceback

    from servopt.benchmarks import registry

    frames = traceback.extract_tb(exc.__traceback__)
    here = Path(registry.__file__).resolve()
    starts = [i for i, f in enumerate(frames)
              if f.name == "load_plugin" and _resolved(f.filename) == here]
    below = frames[starts[0] + 1:] if starts else frames
    machinery = Path(_importlib_dir()).resolve()
    return [f for f in below if not f.filename.startswith("<frozen ")
            and not _under(_resolved(f.filename), (machinery,))]


def _importlib_dir() -> str:
    """The folder of the standard library's importlib (its frames are not the user's)."""
    import importlib

    return str(Path(importlib.__file__).parent)


def _resolved(filename: str) -> Path | None:
    """``filename`` of a frame made absolute, or None for ``<string>`` and the like."""
    if filename.startswith("<"):
        return None
    with contextlib.suppress(OSError, RuntimeError):
        return Path(filename).resolve()
    return None


def _under(path: Path | None, folders: Any) -> bool:
    return path is not None and any(path.is_relative_to(folder) for folder in folders)


def _plugin_where(spec: str, exc: BaseException) -> tuple[str, int | None, str]:
    """Where a plug-in failed: ``(file, line, at)``: its file when it was named as a module
    (else ``""``: the user gave the path), the line of the innermost frame in its own file (None if
    none ran: a syntax error), and ``file:line`` of the innermost frame of the user's code
    (outside servopt, the standard library and site-packages) when that is another place (a
    helper module the plug-in imports), else ``""``."""
    from servopt.benchmarks.runner import _outside_folders

    frames = _plugin_frames(exc)
    is_path = spec.endswith(".py") or "/" in spec or os.sep in spec
    own = _resolved(frames[0].filename) if frames else None
    syntax = isinstance(exc, SyntaxError) and bool(exc.filename)
    if own is None and syntax:  # the plug-in itself did not compile: no frame of it ran
        own = _resolved(str(exc.filename))
    if own is None and is_path:
        own = _resolved(spec)
    if syntax and own is not None and _resolved(str(exc.filename)) == own:
        line = exc.lineno
    else:
        line = next((f.lineno for f in reversed(frames) if _resolved(f.filename) == own), None)
    file = "" if is_path or own is None else str(own)
    # servopt's own code (its packages are mapped from several folders), the standard library
    # and installed packages (the folders the cache key does not follow) are not the user's
    ours = {Path(folder).resolve() for name, mod in list(sys.modules.items())
            if name == "servopt" or name.startswith("servopt.")
            for folder in (getattr(mod, "__path__", None) or [])}
    ours |= set(_outside_folders())
    at = ""
    if syntax and _resolved(str(exc.filename)) != own:
        at = f"{exc.filename}:{exc.lineno}"
    else:
        # (``<string>``: code Python generated, such as a dataclass's ``__init__``)
        user = [f for f in frames if not f.filename.startswith("<")
                and not _under(_resolved(f.filename), ours)]
        if user and (_resolved(user[-1].filename), user[-1].lineno) != (own, line):
            at = f"{user[-1].filename}:{user[-1].lineno}"
    return file, line, at


def _plugin_failure(spec: str, exc: Exception) -> str | None:
    """One line for an exception raised while the plug-in ``spec`` was imported:
    ``plug-in FILE (line N): Type: message`` (and ``(at helper.py:M)`` when the error is
    deeper, in a module of the user's that the plug-in imported); None when ``load_plugin``
    refused the --plugin itself (its own message already names it)."""
    if not _plugin_frames(exc) and not isinstance(exc, SyntaxError):
        return None
    file, line, at = _plugin_where(spec, exc)
    where = ", ".join(([file] if file else []) + ([f"line {line}"] if line else []))
    text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    if isinstance(exc, ModuleNotFoundError):
        text += f" (is it installed for {sys.executable}, or on PYTHONPATH?)"
    return (f"plug-in {spec}" + (f" ({where})" if where else "")
            + f": {type(exc).__name__}: {text}" + (f" (at {at})" if at else ""))


def _error_at(tracebacks: list[dict[str, Any]], row: Any, *, bound: bool) -> str:
    """The ``file:line`` of the failed run ``row`` (its bound's, ``bound``) from the frame's
    ``attrs["tracebacks"]``, else ``""``."""
    from servopt.benchmarks.runner import BOUND

    method = BOUND if bound else row["method"]
    for entry in tracebacks:
        if (entry["case"], entry["params"], entry["seed"], entry["method"]) == (
                row["case"], row["params"], row["seed"], method):
            return str(entry.get("error_at") or "")
    return ""


def write_tracebacks(tracebacks: list[dict[str, Any]], path: Path) -> Path:
    """Write every failed run's traceback (innermost frames) to ``path``; returns it."""
    from servopt.benchmarks.runner import BOUND

    parts = []
    for entry in tracebacks:
        what = "the bound" if entry["method"] == BOUND else f"method {entry['method']}"
        parts.append(f"== case {entry['case']}, {what}, seed {entry['seed']}, params "
                     f"{entry['params']} (at {entry.get('error_at') or '?'})\n{entry['traceback']}")
    return replace_text(path, "\n".join(parts))


def cmd_report(args: argparse.Namespace) -> int:
    """``servopt report NAME.csv ...``: each md rendered again from its CSV (nothing computed)."""
    from servopt.benchmarks.report import check_renderable, checkout_line, read_rows, render_md

    for csv in args.csv:  # every CSV checked before any folder is made or md written
        read_rows(csv)
    out = None
    if args.out is not None:
        names = [Path(csv).with_suffix(".md").name for csv in args.csv]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"--out {args.out}: two CSVs would write the same {twice[0]}; "
                             "render them into different folders")
        out = writable_folder(args.out)
    for csv in args.csv:  # and every md read and target checked (an unreadable second md would
        check_renderable(csv, out)  # otherwise be found after the first md was written)
    code = checkout_line()  # before the first md is written: it would count as a change
    for csv in args.csv:
        print(f"wrote {render_md(csv, code, out)}")
    return 0


def cmd_library(args: argparse.Namespace) -> int:
    from servopt.instances import library

    if args.all and args.action != "verify":
        raise ValueError(f"--all applies to library verify, not library {args.action}")
    if args.action == "list":
        if args.names:
            raise ValueError(f"library list takes no names (got {' '.join(args.names)}); "
                             "`servopt library show NAME` shows one")
        entries = library.read_manifest()
        if not entries:
            print("the instance library is empty")
            return 0
        from servopt.core.solution import objective_unit

        print(f"{'name':34} {'decision':17} {'size':6} {'objective':>14} {'bound':>14}  "
              f"{'kind':13} unit")
        for name in library.names():
            e = entries[name]
            obj = "" if e.objective is None else f"{e.objective:.8g}"
            bound = "" if e.bound is None else f"{e.bound:.8g}"
            print(f"{e.name:34} {e.decision:17} {e.size:6} {obj:>14} {bound:>14}  "
                  f"{e.bound_kind:13} {objective_unit(e.decision)}".rstrip())
        return 0
    if args.action == "show":
        if len(args.names) != 1:
            raise ValueError("library show takes exactly one NAME")
        e = library.entry(args.names[0])
        instance = library.load(e.name)
        print(f"{e.name}: {instance.summary()}")
        from servopt.core.solution import objective_unit

        unit = objective_unit(e.decision)
        for key in ("decision", "size", "file", "objective", "bound", "bound_kind", "solve",
                    "obtained", "wall_s", "sha256"):
            value = e.path.resolve() if key == "file" else getattr(e, key)
            note = f"  ({unit})" if unit and key in ("objective", "bound") and value is not None else ""
            print(f"  {key:10} {value}{note}")
        return 0
    from servopt.benchmarks import library as lib_bench

    sizes = ("small", "medium", "large") if args.all else ("small", "medium")
    table = lib_bench.verify(args.names or None, sizes=sizes)
    for row in table.itertuples(index=False):
        mark = "ok  " if row.ok else "FAIL"
        took = f"{row.wall_s:7.2f}s" if math.isfinite(row.wall_s) else "      -"
        print(f"{mark} {row.name:34} {took}  {row.message}")
    failed = int((~table["ok"]).sum()) if len(table) else 0
    print(f"{len(table) - failed} of {len(table)} library instances verified")
    return 1 if failed else 0


def cmd_capacity(args: argparse.Namespace) -> int:
    """Size a fleet: per-worker bounds, the binding resource, its price and the worker count."""
    from servopt.instances import capacity as instances
    from servopt.models import capacity as model
    from servopt.solvers import capacity as rules

    if args.trace == "":
        raise ValueError("--trace: an empty path (an unset shell variable?)")
    if args.trace:  # options of the other source would be silently ignored
        ignored = [flag for flag, given in (("--requests", args.requests is not None),
                                            ("--seed", args.seed is not None and not args.simulate))
                   if given]
        if ignored:
            raise ValueError(f"{' and '.join(ignored)}: with --trace the length samples are the "
                             "trace's (--seed only seeds --simulate)")
    elif args.format is not None or args.drop_too_long:
        flags = [f for f, given in (("--format", args.format is not None),
                                    ("--drop-too-long", args.drop_too_long)) if given]
        raise ValueError(f"{' and '.join(flags)} appl{'ies' if len(flags) == 1 else 'y'} to --trace, "
                         "not to a --workload preset")
    if args.kv_tokens is not None:  # the options that derive the KV size would be ignored
        ignored = [flag for flag, value in (("--gpu", args.gpu), ("--gpus", args.gpus),
                                            ("--memory-utilisation", args.memory_utilisation))
                   if value is not None]
        if ignored:
            raise ValueError(f"{' and '.join(ignored)}: with --kv-tokens the KV size is given, not "
                             "derived from the GPU (--profile sets the timings)")
    sim_options = [flag for flag, value in (("--sim-requests", args.sim_requests),
                                            ("--sim-seeds", args.sim_seeds)) if value is not None]
    if sim_options and not args.simulate:
        raise ValueError(f"{' and '.join(sim_options)} appl{'ies' if len(sim_options) == 1 else 'y'} "
                         "to --simulate, which is not given")
    args.format = args.format or "azure"
    if args.requests is None:  # generate's own default: the same sample as `servopt generate`
        args.requests = _default(instances.generate, "requests")
    args.seed = 0 if args.seed is None else args.seed
    args.sim_requests = 8000 if args.sim_requests is None else args.sim_requests
    args.sim_seeds = 2 if args.sim_seeds is None else args.sim_seeds
    if args.simulate:  # check the simulation's options before printing the report
        from servopt.benchmarks import capacity as bench

        if args.sim_requests > MAX_SIM_REQUESTS:  # 1e9 ran out of memory, 1e12 never ended
            raise ValueError(f"--sim-requests: at most {MAX_SIM_REQUESTS:,} arrivals per run (each "
                             f"simulated rate holds them in memory), got {args.sim_requests:,}")
        try:
            bench.check_requests(args.sim_requests)
        except InvalidInstanceError as exc:  # its parameter is n_requests: name the option
            text = re.sub(r"\bn_requests\b", "--sim-requests", str(exc).replace("n_requests = ", ""))
            raise InvalidInstanceError(text if text.startswith("--sim-requests")
                                       else f"--sim-requests: {text}") from None
        if args.sim_seeds < 1:
            raise ValueError(f"--sim-seeds: seeds must be >= 1, got {args.sim_seeds}")
        if args.sim_seeds > MAX_SIM_SEEDS:
            raise ValueError(f"--sim-seeds: at most {MAX_SIM_SEEDS} replications per simulated rate, "
                             f"got {args.sim_seeds:,}")
    worker = {"token_budget": args.token_budget, "batch_cap": args.batch_cap,
              "prefill_chunk": args.prefill_chunk}
    for option, value in (("--step-ms", args.step_ms), ("--per-token-ms", args.per_token_ms)):
        if value is not None and not 0 <= value < math.inf:
            raise ValueError(f"{option} must be a finite number of ms >= 0, got {value:g}")
    if args.step_ms == 0 and args.per_token_ms == 0:  # (the instance's message names its fields)
        raise ValueError("--step-ms and --per-token-ms cannot both be 0: an iteration must take time")
    worker["step_ms"], worker["per_token_ms"] = args.step_ms, args.per_token_ms  # (ms: converted
    worker = {k: v for k, v in worker.items() if v is not None}  # by the instance's generator)
    kv = args.kv_tokens
    gpu = None if kv is not None else args.gpu or DEFAULT_GPU  # None: no GPU behind the KV size
    if kv is None:
        try:
            kv = instances.preset_kv_tokens(
                args.model, gpu, gpus=1 if args.gpus is None else args.gpus,
                memory_utilisation=0.9 if args.memory_utilisation is None else args.memory_utilisation)
        except InvalidInstanceError as exc:
            raise InvalidInstanceError(_capacity_flagged(str(exc))) from None
    notes = []
    timed = {"step_ms", "per_token_ms"} <= set(worker)  # both timings given: no preset's
    if args.profile is None:  # the preset for this model on this GPU, where there is one
        match = f"{args.model}@{gpu.split('-')[0]}" if gpu else None
        args.profile = match if match in instances.PROFILE_PRESETS else DEFAULT_PROFILE
        if args.profile != DEFAULT_PROFILE:
            notes.append(f"note: worker profile {args.profile} (the preset for --model {args.model} "
                         f"on --gpu {gpu}; --profile to choose another)")
    profile_model, _, profile_gpu = args.profile.partition("@")
    if gpu and profile_gpu and gpu.split("-")[0] != profile_gpu and not timed:
        match = f"{args.model}@{gpu.split('-')[0]}"
        other = (f"--profile {match} is the preset for it" if match in instances.PROFILE_PRESETS
                 else f"no preset for {args.model} on it")
        notes.append(f"note: the timing profile {args.profile} is {profile_gpu}'s, not {gpu}'s "
                     f"({other}); give --step-ms and --per-token-ms for this GPU")
    if not args.trace and args.rate is None:
        raise ValueError("--rate is required with --workload (requests/s for the fleet)")
    try:
        if args.trace:
            inst = instances.from_trace(args.trace, format=args.format, arrival_rate=args.rate,
                                        kv_tokens=kv, headroom=args.headroom, profile=args.profile,
                                        drop_too_long=args.drop_too_long, **worker)
        else:
            inst = instances.generate(workload=args.workload, requests=args.requests,
                                      arrival_rate=args.rate, kv_tokens=kv, profile=args.profile,
                                      headroom=args.headroom, seed=args.seed, **worker)
    except InvalidInstanceError as exc:  # name the option the user typed, not the field
        raise InvalidInstanceError(_capacity_flagged(str(exc))) from None
    bounds = model.bounds(inst)
    plan = rules.plan(inst)
    prices = plan.detail["prices"]
    if profile_model != args.model and not timed:
        notes.append(f"note: the timing profile {args.profile} is {profile_model}'s, not "
                     f"{args.model}'s; give --step-ms and --per-token-ms for this model")
    for note in notes:
        print(note, file=sys.stderr)
    print(inst.summary())
    print("per-worker maximum stable rate (requests/s):")
    print(f"  compute bound          {bounds.compute:10.4g}")
    print(f"  memory bound           {bounds.memory:10.4g}   (first order M/(t E[g]): "
          f"{bounds.memory_first_order:.4g})")
    print(f"  batch-slot bound       {bounds.slots:10.4g}")
    print(f"binding resource         {bounds.binding} -> {bounds.max_stable_rate:.4g} req/s per "
          f"worker (iteration {bounds.iteration_s * 1e3:.3g} ms)")
    print("marginal value (req/s per worker for one more unit):")
    print(f"  KV token               {prices['kv_token']:10.4g}")
    print(f"  token of budget        {prices['token_budget']:10.4g}")
    print(f"  batch slot             {prices['batch_slot']:10.4g}")
    print(f"  -1 ms step overhead    {prices['step_overhead_ms']:10.4g}")
    print(f"workers for {inst.arrival_rate:.4g} req/s with {100 * inst.headroom:.6g}% headroom: "
          f"{plan.workers}")
    if args.simulate:
        from servopt.benchmarks import capacity as bench

        knee = bench.find_knee(inst, n_requests=args.sim_requests, seed=args.seed, seeds=args.sim_seeds)
        print(f"simulated knee           {knee.rate:10.4g} req/s per worker, bracket "
              f"[{knee.lo:.4g}, {knee.hi:.4g}] (prediction {bounds.max_stable_rate / knee.rate - 1:+.1%}; "
              f"{args.sim_seeds} x {knee.n_requests} arrivals per rate)")
    return 0


def _capacity_flagged(text: str) -> str:
    """A capacity generator's message, led by the ``servopt capacity`` option that sets the field
    it is about (``--kv-tokens: only 0 of 2000 code requests fit in kv_tokens = 5 ...``): the
    field it starts with or quotes, else the first field name (one with an underscore) in it."""
    field = next((name for name in CAPACITY_OPTIONS
                  if text.startswith(f"{name} ") or f"'{name}'" in text
                  or text.startswith(f"unknown {name} ")), None)
    if field is None:
        found = [(match.start(), name) for name in CAPACITY_OPTIONS if "_" in name
                 and (match := re.search(rf"(?<![\w-]){re.escape(name)}\b", text))]
        field = min(found)[1] if found else None
    return f"{CAPACITY_OPTIONS[field]}: {text}" if field else text


def _default(function: Any, name: str) -> Any:
    """The default value of ``function``'s parameter ``name`` (one source for the CLI's)."""
    import inspect

    return inspect.signature(function).parameters[name].default


def _capacity_generate() -> Any:
    from servopt.instances import capacity

    return capacity.generate


def _version() -> str:
    from servopt import __version__

    return __version__


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, ``servopt: error: ...`` (naming the
    command, and where to find its usage) with exit status 2, as every other error of the
    command line; ``--help`` prints the usage as before. Its subcommands' parsers are of this
    class too (argparse makes them of the parent's class)."""

    def error(self, message: str) -> Any:
        command = self.prog.removeprefix("servopt").strip()
        where = f"{command}: " if command else ""
        help_hint = f"servopt {command} --help" if command else "servopt --help"
        line = f"{where}{message} ({help_hint} for the usage)".replace("\n", " ")
        self.exit(2, f"servopt: error: {line}\n")

    def _get_option_tuples(self, option_string: str) -> list:
        # an abbreviation matching two spellings of one option (--memory: --memory-utilisation
        # and --memory-utilization) is that option, not ambiguous; one tuple per action
        seen: set[int] = set()
        return [t for t in super()._get_option_tuples(option_string)
                if id(t[0]) not in seen and not seen.add(id(t[0]))]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="servopt",
        description="Optimization models, bounds and bid-price rules for LLM serving decisions.",
    )
    parser.add_argument("--version", action="version", version=f"servopt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("solve", help="solve an instance file exactly (or its LP relaxation)")
    p.add_argument("file", help="instance JSON file, or the name of a library instance "
                                "(`servopt library list`)")
    p.add_argument("--relax", action="store_true", help="solve the LP relaxation")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                   help="seconds for the whole solve: build, solver, bound and prices (default "
                        "60; 0 for none); on expiry the incumbent and the proved bound are shown. "
                        "Not stopped by it: a large model's build where it does not check the "
                        "clock (LP relaxations, the Pyomo and CVXPY paths) and HiGHS's presolve, "
                        "which can outlast the limit on models of millions of nonzeros "
                        "(help(servopt.solve) lists what is covered)")
    p.add_argument("--mip-gap", type=float, default=1e-4, help="relative MIP gap (default 1e-4)")
    p.add_argument("--backend", choices=["highs", "pyomo", "cvxpy"], default="highs",
                   help="highs (default): HiGHS on the model's matrix form where it has one, "
                        "else on its Pyomo model; pyomo: always the Pyomo model; cvxpy: the LP")
    p.add_argument("--prices", type=_whole_number, default=5, metavar="N",
                   help="show the N largest prices of each constraint family (default 5)")
    p.add_argument("--out", metavar="DIR",
                   help="also write the solution there: solution.json, prices/<family>.csv, "
                        "decisions/<name>.csv")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("generate", help="generate an instance: servopt generate DECISION k=v ...")
    p.add_argument("decision", help="one of: " + ", ".join(DECISIONS))
    p.add_argument("params", nargs="*", default=[],  # (default: the usage shows it optional)
                   help="generator parameters as name=value (the generate() arguments of "
                        "servopt.instances.DECISION; an unknown name lists the known ones)")
    p.add_argument("--seed", type=_whole_number, default=0,
                   help="seed of the generator's random draws (default 0; a whole number >= 0)")
    p.add_argument("--generator", default=None,
                   help="another generator of the decision's instances module (generate_NAME), "
                        "e.g. decode_routing's 'steps' (arrivals in decode steps, for the hindsight "
                        "model), or 'trace': the decision's from_trace, reading path=FILE (its other "
                        "options as name=value)")
    p.add_argument("-o", "--output", required=True, help="output JSON file")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("bench", help="run registered benchmark cases and print the gap table")
    p.add_argument("--suite", default=None, help="suite to run (default: quick)")
    p.add_argument("--case", action="append", help="run only this case (repeatable)")
    p.add_argument("--jobs", type=_whole_number, default=2,
                   help="worker processes (default 2, at most 256, never more than the runs to "
                        "compute; with --scheduler ADDRESS the cluster's own workers run the cases "
                        "and --jobs is not used)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, or 'local' to start a local Dask cluster")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_argument("--plugin", action="append", metavar="MODULE",
                   help="import this module first (a name importable from the working folder or "
                        "PYTHONPATH, or a .py path; repeatable): it registers cases "
                        "(register(Case(...))) and decisions (register_decision); on Dask each "
                        "worker imports it too. The cache keys rows by its source, and by the "
                        "modules it imports outside site-packages")
    p.add_argument("--name", default=None, help="report file name (default: the suite; with "
                   "--case, the case names joined by -)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute everything (else finished runs are reused from OUT/cache; "
                        "failed and skipped runs, and a bound stopped by its time limit without "
                        "a value, are computed again by the next run). The cache must be "
                        "trusted: an entry damaged by accident is recomputed with a warning, one "
                        "edited on purpose is not detected. A row is keyed by servopt's source "
                        "and the case's own modules (and those they import, found on sys.path); "
                        "use --no-cache after changing a module imported by a computed name "
                        "(importlib.import_module), a data file your code reads, or a "
                        "site-packages library")
    p.add_argument("--no-plots", action="store_true",
                   help="skip the PNG plots (an earlier run's plots of this --out and --name are removed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true",
                   help="list the registered cases (with --plugin's), their suites and runs; run none")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="write NAME.md again beside NAME.csv (rows servopt bench "
                       "wrote) in this version's layout, recomputing nothing")
    p.add_argument("csv", nargs="+", help="NAME.csv files servopt bench wrote")
    p.add_argument("--out", default=None,
                   help="folder to write NAME.md into (default: beside NAME.csv, replacing it)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("library", help="the named instance library: list, show NAME, verify")
    p.add_argument("action", nargs="?", default="list", choices=["list", "show", "verify"],
                   help="list (default), show NAME, or verify [NAME ...]")
    p.add_argument("names", nargs="*", help="instance names (show: one; verify: default all "
                   "small and medium)")
    p.add_argument("--all", action="store_true", help="verify: include the large instances")
    p.set_defaults(func=cmd_library)

    p = sub.add_parser("capacity", help="size a fleet: KV-aware stability bounds and workers")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", help="trace file with request lengths (see --format)")
    source.add_argument("--workload", choices=["conversation", "code", "long_output"],
                        help="parametric workload preset")
    p.add_argument("--format", default=None, choices=["azure", "mooncake", "burstgpt"],
                   help="format of --trace (default azure)")
    p.add_argument("--rate", type=float, default=None,
                   help="target requests/s for the fleet (default with --trace: the trace's rate)")
    p.add_argument("--kv-tokens", type=_whole_number, default=None, metavar="M",
                   help="KV-cache tokens per worker (default: from --model, --gpu, --gpus and "
                        "--memory-utilisation)")
    p.add_argument("--model", default="llama3-8b", help="model preset for the KV size (illustrative)")
    p.add_argument("--gpu", default=None,
                   help=f"GPU preset for the KV size (illustrative; default {DEFAULT_GPU})")
    p.add_argument("--gpus", type=_whole_number, default=None, help="GPUs per worker (default 1)")
    p.add_argument("--memory-utilisation", "--memory-utilization", type=float, default=None,
                   help="share of GPU memory for weights and KV (default 0.9; vLLM's "
                        "--gpu-memory-utilization)")
    p.add_argument("--profile", default=None,
                   help="worker timing preset (default: the preset for --model on --gpu where there "
                        f"is one, else {DEFAULT_PROFILE}; the notes say which)")
    p.add_argument("--token-budget", type=_whole_number, default=None,
                   help="b: tokens processed per iteration (default: the profile's)")
    p.add_argument("--batch-cap", type=_whole_number, default=None,
                   help="B: requests in the running batch at most (default: the profile's)")
    p.add_argument("--prefill-chunk", type=_whole_number, default=None,
                   help="C: prompt tokens of one request per iteration (default: the profile's)")
    p.add_argument("--step-ms", type=float, default=None, help="d0: ms per iteration")
    p.add_argument("--per-token-ms", type=float, default=None, help="d1: ms per token")
    p.add_argument("--headroom", type=float, default=0.1, help="fraction kept free (default 0.1)")
    p.add_argument("--requests", type=_whole_number, default=None,
                   help=f"length samples of a preset (default "
                        f"{_default(_capacity_generate(), 'requests')}, as "
                        "servopt.instances.capacity.generate draws)")
    p.add_argument("--drop-too-long", action="store_true",
                   help="drop trace requests longer than the KV capacity instead of failing")
    p.add_argument("--seed", type=_whole_number, default=None,
                   help="seed of a preset's samples and of --simulate (default 0)")
    p.add_argument("--simulate", action="store_true", help="also find the simulated knee (slow)")
    p.add_argument("--sim-requests", type=_whole_number, default=None,
                   help=f"with --simulate: arrivals per simulation (default 8000, at most "
                        f"{MAX_SIM_REQUESTS:,})")
    p.add_argument("--sim-seeds", type=_whole_number, default=None,
                   help=f"with --simulate: replications per simulated rate (default 2, at most "
                        f"{MAX_SIM_SEEDS})")
    p.set_defaults(func=cmd_capacity)
    return parser


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C stopped
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM during ``servopt bench``, raised where Ctrl-C's KeyboardInterrupt would be, so that
    what stops a benchmark on Ctrl-C (the pool's workers stopped, finished runs kept) also stops
    it on ``kill`` or a scheduler's termination. Other commands keep SIGTERM's default (a solve
    cancelled through Pyomo would wait for HiGHS's next interrupt check, minutes on a large
    model, and lose its bound)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """Within the block, the first SIGTERM raises :class:`Terminated` and puts SIGTERM's default
    back, so a second one ends the process at once; the list yielded is non-empty after a
    SIGTERM. Only in the main thread, and only where SIGTERM has its default action (an
    embedding program's handler, or an inherited ignore, is left alone)."""
    import threading

    terminated: list[int] = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield terminated
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM is not to be waited out
        raise Terminated

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield terminated
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "func", None) is cmd_generate and not any(x.startswith("-") for x in extra):
        args.params += extra  # name=value items after an option (argparse does not intermix them)
    elif extra:
        command = getattr(args, "command", None)
        where = f"{command}: " if command else ""
        parser.exit(2, f"servopt: error: {where}unrecognized arguments: {' '.join(extra)} "
                       f"(servopt {command + ' ' if command else ''}--help for the usage)\n")
    if not getattr(args, "func", None):  # a usage error (as argparse's): a script that lost its
        parser.print_help(sys.stderr)  # command must not pass as a successful run
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # (bench's "Regenerate with")
    handled = sigterm_as_interrupt() if args.func is cmd_bench else contextlib.nullcontext([])
    with handled as terminated:
        return _run_command(args, terminated)


def _run_command(args: argparse.Namespace, terminated: list[int]) -> int:
    """Run the parsed command; errors become one line and an exit status (the module docstring)."""
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at interpreter exit
        if terminated:  # a SIGTERM ends the command as one, whatever it returned: a command that
            # caught the interrupt itself returned 130, and one whose solver absorbed it (HiGHS
            # cancelled) must not pass for a finished run with status 0
            if code != EXIT_INTERRUPTED:
                print("servopt: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        return code
    except BrokenPipeError:  # the reader went away (``servopt solve f.json | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (:func:`sigterm_as_interrupt`)
        note = "; finished runs are cached and the next run resumes" if args.func is cmd_bench else ""
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"servopt: {what}{note}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except MemoryError as exc:  # numpy's names the array it could not allocate; Python's is empty
        detail = (str(exc).strip().splitlines() or [""])[0]
        print(f"servopt: error: out of memory{': ' + detail if detail else ''} (a smaller instance, "
              "or fewer or shorter runs?)", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError, RuntimeError, ImportError, ArithmeticError) as exc:
        message = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        # one line, all of it: a file name with a newline hid the reason after it
        line = message.strip().replace("\r", "\\r").replace("\n", "\\n")
        print(f"servopt: error: {line}", file=sys.stderr)
        # (a run that failed rather than bad input, e.g. a unit that killed its worker, says so)
        return int(getattr(exc, "exit_status", 2))


if __name__ == "__main__":
    sys.exit(main())
