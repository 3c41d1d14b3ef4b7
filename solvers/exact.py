"""Exact and relaxed solves with HiGHS, through Pyomo (any model) or CVXPY (the LPs).

``solve(instance)`` builds ``servopt.models.<decision>.build(instance)`` and returns a
:class:`~servopt.core.Solution` with the incumbent, the proved bound, the gap, the primal
decisions and the prices. A model module may define three optional hooks:

- ``build_matrix_model(instance, *, relax, **options) -> MatrixModel``: the same formulation as
  sparse arrays with named, labelled row and column families (:mod:`servopt.core.matrix`).
  ``solve`` then hands it to HiGHS directly (:func:`solve_matrix`: no Pyomo build or
  translation, a warm start for a MIP, Ctrl-C keeps the incumbent) unless
  ``backend="pyomo"`` or an option only ``build`` takes is given;
- ``decisions(model, instance) -> dict`` to label the primal values like the instance
  (otherwise every variable comes back as a Series over its index);
- ``explain_infeasible(instance[, **options]) -> str`` for the domain message of an infeasible
  instance (given the build options when it takes ``**options``);
- ``start_from_relaxation(instance, relaxation) -> dict``: build options (e.g. ``start``) that
  warm-start the integer model from its solved LP relaxation (e.g. a rounded schedule). ``solve``
  then solves the relaxation first (its time counts against ``time_limit``) and hands the
  options to ``build`` / ``build_matrix_model``, so a time-limited MIP never ends worse than
  that start (``info["warm_start"]`` says whether it was given). A Ctrl-C during that LP
  stops the call at once: status ``interrupted``, no incumbent (the MIP was not started).
- ``time_estimate(instance, *, relax, **options) -> dict`` and ``start_answer(instance,
  **options) -> dict`` (both or neither): the matrix form's ``nonzeros``, estimated ``build_s``
  and ``setup_s`` (HiGHS's MIP set-up and root, during which it does not read its clock),
  counted without building it, and the IP's feasible start (``decisions``, ``objective``,
  ``sense``, optionally ``info`` for the solution's) without the matrix, by the limit's end when
  it takes a ``deadline`` (a ``time.perf_counter()`` value). Under a time limit ``solve`` then
  builds the IP only when
  build and set-up fit in what is left, passes the limit's end to
  ``build_matrix_model(..., deadline=)`` (which raises TimeoutError between its stages once it
  has passed), and otherwise returns the start, status ``time_limit``,
  ``info["build_skipped"]`` saying why; HiGHS is not started with less than ``setup_s`` left
  after the bound LP (``info["highs_skipped"]``);
- ``relaxation_note(instance, solution, **options) -> str | None``: why an integer solution is
  not a decision of the problem (batch scheduling's late columns, with a ``window`` or a short
  ``horizon``): its proved bound is then a lower bound on the decision's optimum (its value too
  only when solved with ``mip_gap=0``: within a positive gap the value can exceed it), not an
  optimum; ``solve`` sets its ``bound_kind`` to ``lower_bound`` and adds the reason to
  ``info["note"]`` (the status still says how the model's solve ended: ``optimal`` is the
  model's optimum within ``mip_gap``, not the decision's).
- ``cheap_bound(instance, **options) -> float``: a valid lower bound of a minimisation in closed
  form (nan: none for these options), reported (``bound_kind`` ``lower_bound``) when a stopped
  solve has no better one.

A Pyomo model that sets ``model.warm_start = True`` has given every variable the value of a
feasible point: a MIP starts from it (the matrix form's ``start``). A matrix form's ``bound_lp``
is solved before the MIP when the call has a time limit (and after it when a limit among the
model's options stopped it before its root LP); ``solution.info["bound_kind"]`` says where the
bound comes from.

``bound_kind`` uses the vocabulary of ``servopt.core.solution.BOUND_KINDS``: ``solve`` returns
``mip_bound``, ``lp_relaxation``, ``optimal``, ``lower_bound`` (a model's ``cheap_bound``) or
``none``.

Integer answers are whole-number points of the model. Every integer solve (the matrix and Pyomo
paths, ``solve_model``) runs at HiGHS's own ``mip_feasibility_tolerance`` (1e-6; a model's
``options`` or a caller's ``solver_options`` may set another), and its incumbent is rounded to
whole numbers on the integer variables, checked against every row (:func:`checked_incumbent`:
exact for rows of whole numbers below 1e9) and valued from that point, so ``objective`` is the
objective of the returned decisions. When the rounding breaks a row of a model with free
continuous variables, those are re-solved with the integers fixed (``info["incumbent_repaired"]``
says so). A point still broken is solved once more, on what is left of the time limit, at
:func:`integrality_tolerance` (below 1e-6 where integer variables that far from whole numbers
could move a row by half a unit, down to 1e-9; ``info["tight_retry"]``), and that answer is
kept when its incumbent passes the check (with the better of the two bounds). The tight
tolerance is never the only solve: HiGHS applies it to every row, and with row values of 1e8-1e9
it can call a feasible model infeasible. A point that still breaks a row is not reported: no
objective, decisions or prices, the bound kept, status ``error`` where HiGHS said optimal
(``time_limit`` / ``interrupted`` stay, without an incumbent), and
``info["incumbent_rejected"]`` names the first broken row and its values.
The objective HiGHS reports is also compared with the objective of the column values it returns
(:func:`values_mismatch`; highspy 1.16 after a MIP start can return a start's value for a column
its presolve removed, with the optimum's objective and status): where they differ, the MIP is
solved once more without its start (:func:`without_start_if_mismatched`) and values that still
disagree are reported with their own objective and the proved bound, never as ``optimal``
(``info["highs_values_mismatch"]``).

Prices follow the one convention of :mod:`servopt.core.solution`: for a MIP they are the duals of
the LP obtained by fixing the integer variables at the incumbent (``prices=True``), without the
rows a Pyomo model lists in ``model.valid_inequalities`` (cuts such as symmetry breaking, which
would soak up the prices) and the rows its ``model.valid_at_incumbent(model)`` returns (rows that
are cuts once the integers have their incumbent values: expert placement's link rows of placed
replicas; priced 0). A row none of whose columns is left free in that LP (all integer, or fixed:
decode routing's ``assign[i]``, a user's pin on integer variables) and that binds at the incumbent
has no price there: nothing in it can move, so its dual is arbitrary (HiGHS reported 0 whatever
the row cost); it is priced NaN, on every path, and ``info["prices_note"]`` names its families
(:data:`NO_PRICE_NOTE`; solve with ``relax=True`` for the LP's price of such a row). Such a row
with slack keeps its price 0 (a small change of its bound changes nothing, either way), and so
does the bound row of an integer column below its bound. A MIP whose LP would have nothing left to
move (:func:`_nothing_to_price`, :func:`_has_free_continuous`: its duals zero by construction)
reports no prices, says why in
``info["prices_skipped"]``, and keeps no share of its time limit for them. A solver
failure raises :class:`SolverFailedError` with the solver's cause, never ``InfeasibleError``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from servopt.core import InfeasibleError, Instance, InvalidInstanceError, Solution
from servopt.core.checks import flag, number
from servopt.core.cvxmodel import CvxpyModel
from servopt.core.matrix import MatrixModel
from servopt.core.registry import DECISIONS, layer_module, with_start_sources
from servopt.core.solution import clean_prices, normalise_dual, relative_gap

BACKENDS = ("highs", "pyomo", "cvxpy")

MIN_SOLVE_S = 1.0  # the main solve's least time: min(limit, max(MIN_SOLVE_S, MIN_SOLVE_SHARE x limit))
MIN_SOLVE_SHARE = 0.1
PRICE_LP_SHARE = 0.1  # of a MIP's time limit, kept from its solve for its price LP
FEASIBILITY_TOL = 1e-6  # a start checked without HiGHS: HiGHS's primal and integrality tolerances
# HiGHS's integrality (and MIP row) tolerance, 1e-6 by default: a binary at 1 - 1e-6 times a row
# coefficient of 2.4e6 (a batch request's KV tokens) lent 2.4 tokens, and a batch IP was "optimal"
# at 12.0000025 with a schedule over its KV limit (true optimum 16). Every incumbent is rounded
# and checked (:func:`checked_incumbent`); one that breaks a row is solved again at
# :func:`integrality_tolerance` (:func:`retry_tight`): below 1e-6 where integer variables that far
# from whole numbers could move a row by ROW_ROOM (half a unit: a whole-number row then cannot
# gain one), down to MIP_FEASIBILITY_TOL
MIP_FEASIBILITY_TOL = 1e-9
MIP_FEASIBILITY_MAX = 1e-6
ROW_ROOM = 0.5
# a rounded incumbent's row may miss its side by ROW_CHECK_ABS + ROW_CHECK_REL x the row's size
# (the largest of its sides and sum_j |a_ij x_j|): exact for whole-number rows below 1e9
ROW_CHECK_ABS = 1e-6
ROW_CHECK_REL = 1e-9
NOISE_REL = 1e-12  # a MIP objective within this share of its summed |terms| of 0 is 0


# HiGHS options for a time-limited MIP that starts from a feasible point (unless the model sets
# them): no feasibility jump, a heuristic that looks for a first incumbent (the start is one; it
# does not start from it) and does not check the clock: on the batch IP at n = 100 it held HiGHS
# 4.5 s on a 3 s limit (5.4 s in all, 3.9 s without it)
WARM_TIME_LIMITED = {"mip_heuristic_run_feasibility_jump": False}
# HiGHS's objective and the objective of the column values it returns may differ by this share of
# the summed |terms| (float noise): more, and the values are not the point HiGHS valued. highspy
# 1.16.0 does that after a MIP start: a column its presolve removed comes back at the start's value
# while the objective and status are those of the optimum (audit R58 F1, values worth 13 against
# 12 on a caching IP, 37.5 against 37 on a decode routing one, 2.5 against 2 on expert placement;
# 1.13-1.15 return the optimum's values), and on batch scheduling's tiny pricing IPs it reports an
# objective below values that are the optimum's (9.667 valued 3.667). Neither number is to be
# trusted alone. No HiGHS issue for it was found (GitHub issue search, 2026-12-01). The MIP is
# then solved once more without the start (:func:`without_start_if_mismatched`)
HIGHS_VALUES_RTOL = 1e-6


class TimeBudget:
    """A call's ``time_limit`` (seconds) as a budget counted from the call's entry: every step
    of the call (build, HiGHS, the fallback bound LP, the price LP) spends from it. ``limit``
    None: no limit (the methods then return None)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = None if limit is None else float(limit)
        self.start = time.perf_counter()

    def left(self) -> float | None:
        """Seconds left (negative once overspent)."""
        return None if self.limit is None else self.limit - (time.perf_counter() - self.start)

    def least(self) -> float | None:
        """The main solve's least slice: min(limit, max(1 s, a tenth of the limit))."""
        return None if self.limit is None else min(self.limit, max(MIN_SOLVE_S,
                                                                   MIN_SOLVE_SHARE * self.limit))

    def for_solve(self, reserve: float = 0.0) -> float | None:
        """HiGHS's time limit for the main solve: what is left less ``reserve`` x the limit (kept
        for the steps after it), but at least :meth:`least`, so that a budget the build has
        eaten still gets a solve that can return its warm start or first incumbent."""
        if self.limit is None:
            return None
        return max(self.left() - reserve * self.limit, self.least())

    def for_step(self, keep: float = 0.0) -> float | None:
        """HiGHS's time limit for a step after the main solve (the bound LP, the price LP): what is
        left less ``keep`` x the limit (kept for a later step); 0.0 when nothing is (the step is
        then skipped and ``info`` says so)."""
        return None if self.limit is None else max(0.0, self.left() - keep * self.limit)


def model_module(decision: str) -> Any:
    """The ``servopt.models.<decision>`` module (or the one registered for it)."""
    return layer_module(decision, "models")


def fill_start_hooks(decision: str) -> None:
    """Fill the hooks a built-in decision's model reads for its start, whatever was imported
    before (imports go only downward, so a layer above fills them when imported): this layer's
    ``servopt.solvers.<decision>`` (expert placement's fast plans, ``START_PLANS``) and, through
    the registry, the evaluator ``servopt.benchmarks.<decision>`` (decode routing's router
    routings, ``START_ROUTINGS``, and with them its ``time_estimate``). :func:`solve` calls it
    (and so ``servopt.solve`` and ``servopt solve``) before its clock starts; call it before
    ``servopt.models.<decision>.build`` and :func:`solve_model` (a constraint of your own) for
    the model :func:`solve` would build.
    Before, ``solve`` imported the solvers module only: a fresh ``exact.solve`` on decode
    routing had no start and another answer than the same call after anything had imported the
    evaluator (audit R52 F1). A decision without them (a plug-in) has none."""
    if decision in DECISIONS:
        layer_module(decision, "solvers")
        with_start_sources(decision)


def solve(
    instance: Instance,
    *,
    relax: bool = False,
    time_limit: float | None = None,
    mip_gap: float = 1e-4,
    backend: str = "highs",
    prices: bool = True,
    **options: Any,
) -> Solution:
    """Build the decision's model for ``instance`` and solve it with HiGHS.

    Parameters
    ----------
    relax : solve the LP relaxation instead of the integer model (a model without integer
        variables, ``LINEAR = True`` in its module such as capacity's, is solved as it is:
        ``relaxed`` False and ``bound_kind`` ``optimal``, as without it).
    time_limit : seconds for the whole call, counted from its entry; on expiry the incumbent
        and proved bound come back with status ``time_limit`` (not an error). None (default): no
        limit; integer models of the default generated instances can run for minutes (the
        command line defaults to 60 s). The budget covers, in order: a warm-start LP
        (``start_from_relaxation``), building the model, a matrix model's bound LP (a MIP's
        ``bound_lp``: on what is left less the MIP's least slice and its price share; the
        better of its value and HiGHS's dual bound is reported, ``info["bound_kind"]``),
        handing the model to HiGHS and HiGHS's solve, then the prices of a MIP (the LP with the
        integers fixed). HiGHS's solve gets what is left less 10% of the limit for a MIP's
        price LP, at least min(limit, max(1 s, limit / 10)) (a build that ate the budget still
        gets a solve that returns a first incumbent: the call then overruns by that much),
        except that a MIP whose start is feasible is not handed to HiGHS at all when nothing is
        left, or after the bound LP less than the model's estimate of HiGHS's MIP set-up and
        root (``time_estimate``): the start comes back as it is (``info["highs_skipped"] =
        "time_limit"``, with the bound LP's value if it was solved). A model with
        ``time_estimate`` and ``start_answer`` (the batch IP) is not built when its estimated
        build and set-up exceed what is left, and its build stops at the limit: the start comes
        back without the matrix (``info["build_skipped"]``), computed by the limit's end (the
        batch IP's: the best warm-start schedule found by then, ``info["start_schedule"]``). A
        stopped MIP whose model has a ``cheap_bound`` better than the bound found reports it
        (``bound_kind`` ``lower_bound``). A step with nothing left is skipped and says so:
        ``info["prices_skipped"] = "time_limit"`` (no prices: an empty ``prices``, never
        zeros), ``info["bound_lp_status"]``. A time-limited MIP with a
        start runs without HiGHS's feasibility jump (``WARM_TIME_LIMITED``). Not covered: the
        imports on a first call (the decision's solvers module and evaluator, which fill its
        model's start hooks, :func:`fill_start_hooks`: before the clock starts), the build of an
        LP relaxation (the batch LP of 1,000 requests: 14 s) and of a model without
        ``time_estimate`` (it does not check the clock: on the Pyomo path, ``backend="pyomo"``
        or a form without a matrix model such as caching's ``form="interval"``, a large model's
        build can alone outlast the limit) and the last stage of one with it (the batch IP: its
        warm start, 1 s at n = 400), CVXPY's compilation of its problem (``backend="cvxpy"``:
        5-15 s for a 400-request batch LP), the conversion of the results, and HiGHS overrunning
        its own limit: it checks the clock between phases, so on a large model its presolve or
        MIP set-up alone can outlast the limit when no estimate keeps it from starting (a
        decode-routing hindsight model of 1,000 requests on 32 workers: 49 s of presolve on a
        10 s limit before the model had its ``time_estimate``; now its start comes back in about
        1 s there, a few seconds with 1-2 workers, whose routers' simulations run more steps).
    mip_gap : relative MIP gap at which HiGHS stops.
    backend : ``highs`` (HiGHS on the model's matrix form where it has one,
        ``build_matrix_model``, otherwise on its Pyomo model), ``pyomo`` (always the Pyomo model)
        or ``cvxpy`` (the model's ``build_cvxpy`` LP: for an integer model, its relaxation,
        labelled ``relaxed``; except where the module's ``CVXPY_RELAXES`` is False, whose CVXPY
        form is another model, ``CVXPY_FORM``: expert placement's is the dispatch LP of a given
        placement, the previous one by default, not the placement problem; ``relax=True`` is
        refused there, as the CLI refuses ``--backend cvxpy``). ``solution.info["form"]`` says
        which model was solved (``matrix``, ``pyomo``, ``cvxpy`` or ``cvxpy: <CVXPY_FORM>``), and
        ``solution.info["instance"]`` fingerprints the instance (the model module's
        ``fingerprint(instance)`` of the fields the model reads, else ``content_hash()``), and
        ``solution.info["note"]`` (the module's ``solution_note``) says when the model's value
        is not what the decision's evaluator measures (decode routing where slots or KV bind),
        or why an integer answer is a relaxation's (batch scheduling with a request in its late
        column: ``bound_kind`` ``lower_bound``, the value a lower bound reached by no schedule;
        the status still says how the model's solve ended).
    options : passed to the model's ``build``.

    Starts: a built-in model's start from a layer above it (expert placement's fast plans,
    decode routing's router routings and with them its ``time_estimate``) reaches it through a
    hook that layer fills when imported; ``solve`` imports both first (:func:`fill_start_hooks`),
    so a call gives the same answer whatever the caller imported before
    (``info["start_routing"]`` names decode routing's start).

    Threads: the matrix path makes a HiGHS object per call and may run in several threads at
    once (the answers are the serial ones; a time-limited solve's incumbent depends on the CPU
    it gets, threads or not; only the process's very first HiGHS object waits for the lock
    below). The Pyomo path's solve (``_solve_model``: loading, HiGHS, the price LP) holds
    :data:`PROCESS_OUTPUT_LOCK`, since Pyomo captures HiGHS's output by redirecting file
    descriptors 1 and 2 of the whole process: Pyomo solves from several threads give the serial
    answers one at a time (their builds still run side by side); their time limit counts the
    wait, and one whose limit passes while it waits returns ``time_limit`` without an incumbent.
    ``backend="cvxpy"`` holds the same lock while it solves (:func:`solve_cvxpy`): its solves in
    threads give the serial answers, and its wait counts against the time limit likewise.
    """
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(f"solve() needs a servopt instance, got {type(instance).__name__}")
    if backend not in BACKENDS:
        raise InvalidInstanceError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    _check_options(relax=relax, time_limit=time_limit, mip_gap=mip_gap, prices=prices)
    time_limit = seconds(time_limit)  # inf: no limit
    module = model_module(instance.decision)
    fill_start_hooks(instance.decision)  # (a first call's imports before the clock starts)
    budget = TimeBudget(time_limit)
    cvxpy_relaxes = getattr(module, "CVXPY_RELAXES", True)  # False: build_cvxpy is another model
    if backend == "cvxpy" and relax and not cvxpy_relaxes:
        raise InvalidInstanceError(
            f"the CVXPY form of {instance.decision} is {getattr(module, 'CVXPY_FORM', 'another model')}, "
            f"not the relaxation of its integer model: use backend='highs' for relax=True")
    build = module.build_cvxpy if backend == "cvxpy" and hasattr(module, "build_cvxpy") else module.build
    params = inspect.signature(build).parameters
    accepted = [name for name, p in params.items() if p.kind == p.KEYWORD_ONLY and name != "relax"]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        raise InvalidInstanceError(
            f"unknown option(s) {', '.join(unknown)} for the {instance.decision} model "
            f"({backend}); it accepts: {', '.join(accepted) or 'none'}")
    start = time.perf_counter()
    warm = getattr(module, "start_from_relaxation", None)
    warm_info = None
    if warm is not None and not relax and backend != "cvxpy" and "start" not in options:
        _matrix_form(module, instance, relax, options)  # a model too large is refused before its LP
        lp = solve(instance, relax=True, time_limit=budget.for_solve(), prices=False, **options)
        warm_info = "rounded LP relaxation" if lp.status == "optimal" else f"none (LP {lp.status})"
        if lp.status == "optimal":
            options = {**options, **warm(instance, lp)}
    try:
        if warm_info == "none (LP interrupted)":  # Ctrl-C during the warm-start LP: stop now (a
            # stopped LP is no bound and the MIP was not started), as Ctrl-C anywhere else does
            solution = _interrupted_before_mip(instance.decision, lp.sense, prices=prices)
        elif backend == "cvxpy":
            if not hasattr(module, "build_cvxpy"):
                raise InvalidInstanceError(f"{instance.decision} has no CVXPY formulation")
            cvx = module.build_cvxpy(instance, **options)
            solution = solve_cvxpy(cvx, time_limit=budget.for_solve(), decision=instance.decision)
        elif backend == "highs" and _has_matrix_form(module, options) and (
                solution := _solve_matrix_form(module, instance, relax=relax, budget=budget,
                                               mip_gap=mip_gap, prices=prices, options=options)
        ) is not None:
            pass
        else:  # no matrix form (for these options or this instance: its builder gave None)
            model = module.build(instance, relax=relax, **options)
            solution = _solve_model(model, relax=relax, budget=budget, mip_gap=mip_gap,
                                    prices=prices, decision=instance.decision)  # in its units
            if solution.status in ("optimal", "time_limit", "interrupted") \
                    and not math.isnan(solution.objective):
                extract = getattr(module, "decisions", None)
                solution.decisions = extract(model, instance) if extract else _pyomo_values(model)
            solution.backend = backend
            solution.info["form"] = "pyomo"
    except InfeasibleError as exc:
        explain = getattr(module, "explain_infeasible", None)
        # (a module's explain_infeasible that takes **options can name the option at fault)
        takes = explain is not None and any(
            p.kind is p.VAR_KEYWORD for p in inspect.signature(explain).parameters.values())
        message = (explain(instance, **options) if takes else explain(instance)) if explain \
            else None
        raise InfeasibleError(message or str(exc)) from None
    # the CVXPY formulations are LPs: for an integer model (no ``LINEAR = True`` in its module) the
    # CVXPY solve is the relaxation, and the solution says so; a LINEAR model relaxes nothing, so
    # relax=True solves the model itself, whose optimum is its value (not a relaxation's bound)
    solution.relaxed = not getattr(module, "LINEAR", False) and (
        relax or (backend == "cvxpy" and cvxpy_relaxes))
    if backend == "cvxpy" or (relax and not solution.relaxed):
        # (solve_cvxpy cannot know whether its LP relaxes an integer model, nor the solvers below
        # whether relax=True relaxed anything)
        solution.info["bound_kind"] = _bound_kind(solution)
    if backend == "cvxpy":
        solution.info["form"] = "cvxpy" if cvxpy_relaxes else \
            f"cvxpy: {getattr(module, 'CVXPY_FORM', 'another model than the decision model')}"
    if not solution.relaxed and solution.status in ("time_limit", "interrupted"):
        _with_cheap_bound(module, instance, solution, options)
    solution.decisions = {name: _without_negative_zero(value)
                          for name, value in solution.decisions.items()}
    solution.wall_s = time.perf_counter() - start
    if warm_info is not None:
        solution.info["warm_start"] = warm_info
    note = getattr(module, "solution_note", None)  # what the model's value means for the evaluator
    if note is not None and (text := note(instance, **options)):
        solution.info["note"] = text
    relaxation = getattr(module, "relaxation_note", None)  # an integer answer that is no decision
    if relaxation is not None and not solution.relaxed and not math.isnan(solution.objective) \
            and (text := relaxation(instance, solution, **options)):
        if not math.isnan(solution.bound):  # (a stopped solve may have none: kind stays none)
            solution.info["bound_kind"] = "lower_bound"
        solution.info["note"] = "; ".join(filter(None, (solution.info.get("note"), text)))
    fingerprint = getattr(module, "fingerprint", None)  # rules built from it can check what they get
    solution.info["instance"] = fingerprint(instance) if fingerprint else instance.content_hash()
    return solution


def _interrupted_before_mip(decision: str, sense: str, *, prices: bool) -> Solution:
    """The answer of a MIP solve interrupted (Ctrl-C) during its warm-start LP: status
    ``interrupted``, no incumbent and no bound (``solve`` adds the model's ``cheap_bound``)."""
    info: dict[str, Any] = {"lp": False, "bound_kind": "none"}
    if prices:
        info["prices_skipped"] = "interrupted"
    return Solution(status="interrupted", objective=math.nan, bound=math.nan, gap=math.nan,
                    wall_s=0.0, sense=sense, relaxed=False,
                    backend="highs", decision=decision, info=info)


def _in_reported_units(solution: Solution, form: Any) -> Solution:
    """``solution`` of a model written in other units than it reports (``form``'s
    ``objective_scale`` and ``row_scale``: a MatrixModel's fields, or attributes of a Pyomo or
    CVXPY model; :mod:`servopt.core.matrix`) in the reported ones: objective and bound x the
    scale, the price of row family F x scale / row_scale[F]. Unchanged when there is none."""
    scale = float(getattr(form, "objective_scale", 1.0) or 1.0)
    rows = getattr(form, "row_scale", None) or {}
    if scale == 1.0 and not rows:
        return solution
    solution.objective *= scale
    solution.bound *= scale
    solution.prices = {name: price * (scale / float(rows.get(name, 1.0)))
                       for name, price in solution.prices.items()}
    return solution


def _without_negative_zero(value: Any) -> Any:
    """Float decisions with -0.0 (a solver's rounding of a variable at 0) written 0.0."""
    if isinstance(value, pd.DataFrame):
        dtypes = list(value.dtypes)
    elif isinstance(value, pd.Series):
        dtypes = [value.dtype]
    else:
        return value
    return value + 0.0 if all(pd.api.types.is_float_dtype(d) for d in dtypes) else value


def _has_matrix_form(module: Any, options: dict[str, Any]) -> bool:
    """Whether the model has a matrix form (``build_matrix_model``) taking these options."""
    builder = getattr(module, "build_matrix_model", None)
    if builder is None:
        return False
    params = inspect.signature(builder).parameters
    return set(options) <= {name for name, p in params.items() if p.kind == p.KEYWORD_ONLY}


def _solve_matrix_form(module: Any, instance: Instance, *, relax: bool, budget: TimeBudget,
                       mip_gap: float, prices: bool, options: dict[str, Any]) -> Solution | None:
    """Build the model's matrix form and solve it, spending from ``budget``. A time-limited
    MIP of a model with ``time_estimate`` and ``start_answer`` (module docstring) is not built
    when its estimated build and HiGHS set-up exceed what is left, and its build is stopped at
    the limit (``build_matrix_model``'s ``deadline``): either way the model's feasible start
    comes back without the matrix (:func:`_without_model`). None when the builder has no matrix
    form for this instance."""
    timed = not relax and budget.limit is not None
    estimate, answer = getattr(module, "time_estimate", None), getattr(module, "start_answer", None)
    costs = estimate(instance, relax=relax, **options) if timed and estimate and answer else {}
    if costs and budget.left() < costs["build_s"] + costs["setup_s"]:
        why = (f"time_limit: the model ({costs['nonzeros']:,.0f} nonzeros) would take about "
               f"{costs['build_s']:.1f} s to build and {costs['setup_s']:.1f} s of HiGHS set-up; "
               f"{max(budget.left(), 0.0):.1f} s were left")
        return _without_model(answer, instance, options, why=why, prices=prices, budget=budget)
    build = dict(options)
    if costs and "deadline" in inspect.signature(module.build_matrix_model).parameters:
        build["deadline"] = budget.start + budget.limit
    try:
        mm = module.build_matrix_model(instance, relax=relax, **build)
    except TimeoutError as exc:
        if "deadline" not in build or time.perf_counter() < build["deadline"]:
            raise  # not the deadline's
        return _without_model(answer, instance, options, why=f"time_limit: {exc}", prices=prices,
                              budget=budget)
    if mm is None:  # no matrix form for this instance: the caller solves the Pyomo model
        return None
    return _solve_matrix(mm, relax=relax, budget=budget, mip_gap=mip_gap, prices=prices,
                         decision=instance.decision, setup_s=costs.get("setup_s", 0.0))


def _without_model(answer: Any, instance: Instance, options: dict[str, Any], *, why: str,
                   prices: bool, budget: TimeBudget) -> Solution:
    """A time-limited MIP whose matrix was not built (or not finished): the model's feasible
    start (``answer``: its ``start_answer``, given the limit's end as its ``deadline`` when it
    takes one) as the incumbent, status ``time_limit``, no bound here (``solve`` adds the
    model's ``cheap_bound``), no prices, ``info["build_skipped"]`` saying why (and what the
    answer's ``info`` says, e.g. which start it is)."""
    start = time.perf_counter()
    timed = {}
    if budget.limit is not None and "deadline" in inspect.signature(answer).parameters:
        timed["deadline"] = budget.start + budget.limit
    given = answer(instance, **options, **timed)
    info: dict[str, Any] = {"lp": False, "form": "matrix", "bound_kind": "none",
                            "build_skipped": why, **given.get("info", {})}
    if prices:
        info["prices_skipped"] = "time_limit"
    solution = Solution(status="time_limit", objective=float(given["objective"]), bound=math.nan,
                        gap=math.nan, wall_s=time.perf_counter() - start, sense=given["sense"],
                        relaxed=False, backend="highs", decision=instance.decision, info=info)
    solution.decisions = dict(given["decisions"])
    return solution


def _with_cheap_bound(module: Any, instance: Instance, solution: Solution,
                      options: dict[str, Any]) -> None:
    """A stopped MIP's bound improved in place by the model's ``cheap_bound`` (a valid bound in
    closed form, nan: none) when that is better; ``bound_kind`` then ``lower_bound`` (a
    minimisation's: no model gives a max one)."""
    cheap = getattr(module, "cheap_bound", None)
    if cheap is None or solution.sense != "min":  # (the harness's vocabulary: ``lower_bound``)
        return
    params = inspect.signature(cheap).parameters
    value = float(cheap(instance, **{k: v for k, v in options.items() if k in params}))
    bound = solution.bound
    if math.isnan(value) or not (math.isnan(bound) or value > bound):
        return
    solution.bound = value
    solution.gap = relative_gap(solution.objective, value, solution.sense)
    solution.info["bound_kind"] = "lower_bound"


def _matrix_form(module: Any, instance: Instance, relax: bool, options: dict[str, Any]
                 ) -> MatrixModel | None:
    """The model's matrix form (``build_matrix_model``) when it has one for these options."""
    if not _has_matrix_form(module, options):
        return None
    return module.build_matrix_model(instance, relax=relax, **options)


def _check_options(*, relax: Any, time_limit: Any, mip_gap: Any, prices: Any) -> None:
    """Solver options in the user's terms (a string or negative number would otherwise reach
    HiGHS, or ``relax="no"`` would solve the relaxation)."""
    for name, value in (("relax", relax), ("prices", prices)):
        flag(name, value)
    seconds(time_limit)
    gap_option(mip_gap)


def gap_option(mip_gap: Any) -> float:
    """A MIP gap in the user's terms: a relative gap in [0, 1)."""
    return number("mip_gap", mip_gap, lambda v: 0 <= v < 1, "a relative gap in [0, 1)")


def seconds(time_limit: Any) -> float | None:
    """A time limit in the user's terms: positive seconds, or None (no limit); infinity means
    no limit too (a budget of inf would leave nan seconds for the later steps)."""
    if time_limit is None:
        return None
    number("time_limit", time_limit, lambda v: v > 0,  # also refuses NaN and text
           "positive (a number of seconds) or None (no limit)")
    return None if time_limit == math.inf else float(time_limit)


# ---------------------------------------------------------------------------------------------
# Pyomo + HiGHS
# ---------------------------------------------------------------------------------------------
def _highs() -> Any:
    from pyomo.contrib.solver.common.factory import SolverFactory

    return SolverFactory("highs")


def solve_model(
    model: pyo.ConcreteModel,
    *,
    relax: bool = False,
    time_limit: float | None = None,
    mip_gap: float = 1e-4,
    prices: bool = True,
    decision: str = "",
    solver_options: dict[str, Any] | None = None,
) -> Solution:
    """Solve a Pyomo model with HiGHS; return status, objective, bound, gap and prices.

    ``time_limit`` is a budget for the whole call (translation to HiGHS, solve, prices), as in
    :func:`solve` (without the build). Raises :class:`InfeasibleError` when HiGHS proves the
    model infeasible.
    """
    return _solve_model(model, relax=relax, budget=TimeBudget(seconds(time_limit)), mip_gap=mip_gap,
                        prices=prices, decision=decision, solver_options=solver_options)


# Pyomo's HiGHS interface captures the solver's output by redirecting the process's file
# descriptors 1 and 2 (pyomo.common.tee), as new_highs's banner silencing does: two threads doing
# it at once broke each other (RuntimeError 'Captured output ... does not match sys.stdout',
# DeveloperError 'Deadlock closing capture_output', OSError Bad file descriptor, stdout left
# swallowed). Whatever redirects them holds this lock; the Pyomo path's solves run one at a time
PROCESS_OUTPUT_LOCK = threading.RLock()


def _lock_wait(limit: float | None) -> float:
    """The ``acquire`` timeout for a wait of at most ``limit`` seconds: -1 (no limit) for None or
    anything ``acquire`` cannot take (infinity, above ``threading.TIMEOUT_MAX``, ~292 years)."""
    return -1 if limit is None or limit >= threading.TIMEOUT_MAX else max(limit, 0.0)


def _waited(*, sense: str, relaxed: bool, backend: str, decision: str, wall_s: float,
            info: dict[str, Any]) -> Solution:
    """The answer of a solve whose time limit passed while it waited for
    :data:`PROCESS_OUTPUT_LOCK`: status ``time_limit``, no incumbent, no bound."""
    return Solution(status="time_limit", objective=math.nan, bound=math.nan, gap=math.nan,
                    wall_s=wall_s, sense=sense, relaxed=relaxed, backend=backend,
                    decision=decision,
                    info={**info, "bound_kind": "none",
                          "waited": "the time limit passed while another thread's solve held "
                                    "the process's output (CVXPY and Pyomo solves run one at a "
                                    "time)"})


def _solve_model(model: pyo.ConcreteModel, *, relax: bool, budget: TimeBudget, mip_gap: float,
                 prices: bool, decision: str, solver_options: dict[str, Any] | None = None
                 ) -> Solution:
    """:func:`solve_model` spending from ``budget`` (started by the caller; a call waiting for
    another thread's Pyomo solve spends from it while it waits, and stops waiting at the limit:
    status ``time_limit`` without an incumbent, ``info["waited"]`` saying why)."""
    left = budget.left()
    if not PROCESS_OUTPUT_LOCK.acquire(timeout=_lock_wait(left)):
        objective = next(model.component_data_objects(pyo.Objective, active=True))
        return _waited(sense="min" if objective.sense == pyo.minimize else "max", relaxed=relax,
                       backend="highs", decision=decision, wall_s=0.0,
                       info={"lp": _is_lp(model)})
    try:
        return _solve_model_locked(model, relax=relax, budget=budget, mip_gap=mip_gap,
                                   prices=prices, decision=decision, solver_options=solver_options)
    finally:
        PROCESS_OUTPUT_LOCK.release()


def _solve_model_locked(model: pyo.ConcreteModel, *, relax: bool, budget: TimeBudget,
                        mip_gap: float, prices: bool, decision: str,
                        solver_options: dict[str, Any] | None = None) -> Solution:
    """:func:`_solve_model` holding :data:`PROCESS_OUTPUT_LOCK`."""
    if not relax:
        return _solve_model_as_is(model, relax=False, budget=budget, mip_gap=mip_gap,
                                  prices=prices, decision=decision, solver_options=solver_options)
    # the caller's model is relaxed for this solve only: its integer domains come back however
    # the solve ends (a later integer solve of it would otherwise return the LP, "optimal").
    # Reversed in place, not cloned: 0.65 s against 8.1 s for a clone on bs_offline_100's 115k
    # variables (/tmp/g1/clone_vs_reverse.py, one run); the LP's values stay in the model, as an
    # integer solve's do
    relaxation = pyo.TransformationFactory("core.relax_integer_vars")
    token = relaxation.apply_to(model)
    try:
        return _solve_model_as_is(model, relax=True, budget=budget, mip_gap=mip_gap,
                                  prices=prices, decision=decision, solver_options=solver_options)
    finally:
        relaxation.apply_to(model, reverse=token)


def _solve_model_as_is(model: pyo.ConcreteModel, *, relax: bool, budget: TimeBudget,
                       mip_gap: float, prices: bool, decision: str,
                       solver_options: dict[str, Any] | None = None) -> Solution:
    """:func:`_solve_model_once`, for a MIP retried at :func:`integrality_tolerance` when its
    rounded incumbent broke a row (:func:`retry_tight`), and without its warm start when HiGHS
    did not value the values it returned (:func:`without_start_if_mismatched`)."""
    def once(tight: bool, use_start: bool = True) -> Solution:
        return _solve_model_once(model, relax=relax, budget=budget, mip_gap=mip_gap, prices=prices,
                                 decision=decision, solver_options=solver_options, tight=tight,
                                 use_start=use_start)

    given = "mip_feasibility_tolerance" in (solver_options or {})
    can_tighten = not relax and not _is_lp(model) and not given
    first = retry_tight(once, can_tighten, budget)
    return without_start_if_mismatched(
        first, lambda: retry_tight(lambda tight: once(tight, False), can_tighten, budget), budget)


def _solve_model_once(model: pyo.ConcreteModel, *, relax: bool, budget: TimeBudget,
                      mip_gap: float, prices: bool, decision: str,
                      solver_options: dict[str, Any] | None = None,
                      tight: bool = False, use_start: bool = True) -> Solution:
    """:func:`_solve_model` of ``model`` as it stands (already relaxed when ``relax``);
    ``tight``: at :func:`integrality_tolerance` instead of HiGHS's own; ``use_start`` False:
    without the model's warm start."""
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

    start = time.perf_counter()
    objective = next(model.component_data_objects(pyo.Objective, active=True))
    sense = "min" if objective.sense == pyo.minimize else "max"
    options = {"mip_rel_gap": mip_gap, "output_flag": False}
    options.update(solver_options or {})
    kwargs: dict[str, Any] = {"solver_options": options}
    started = use_start and not relax and bool(getattr(model, "warm_start", False))
    if budget.limit is not None and started:
        options = {**WARM_TIME_LIMITED, **options}
        kwargs["solver_options"] = options
    with _noting_interrupts() as interrupted:
        solver = _highs()
        if started:
            _pass_warm_start(solver, model)
        else:  # loaded here, before HiGHS's limit is set, so that the loading (seconds for a
            solver.set_instance(model)  # large model) counts against the budget; the solve
            # below only checks the loaded model for changes (0.09 s against 3.6 s to load
            # bs_offline_100's IP)
        if not relax and tight and "mip_feasibility_tolerance" not in options:  # as on the
            options["mip_feasibility_tolerance"] = _pyomo_integrality_tolerance(solver)  # matrix path
        if budget.limit is not None:  # a MIP keeps a share of the limit for its price LP
            priced = prices and not _is_lp(model) and _has_free_continuous(model)
            kwargs["time_limit"] = budget.for_solve(PRICE_LP_SHARE if priced else 0.0)
        result = solver.solve(
            model, raise_exception_on_nonoptimal_result=False, load_solutions=False, **kwargs
        )
    term = result.termination_condition
    if term in (TerminationCondition.provenInfeasible, TerminationCondition.locallyInfeasible):
        raise InfeasibleError(f"{_the_model(decision)} is infeasible")
    if term == TerminationCondition.infeasibleOrUnbounded:
        raise InfeasibleError(f"{_the_model(decision)} is infeasible (or unbounded)")
    has_solution = result.solution_status in (SolutionStatus.optimal, SolutionStatus.feasible)
    if term == TerminationCondition.convergenceCriteriaSatisfied:
        status = "optimal"
    elif term == TerminationCondition.maxTimeLimit:
        status = "time_limit"
    elif term == TerminationCondition.unbounded:
        status = "unbounded"
    elif term == TerminationCondition.interrupted or interrupted:  # Ctrl-C inside HiGHS (which
        status = "interrupted"  # Pyomo reports as an error): keep the incumbent
    else:
        status = "error"
    value = math.nan
    checked: dict[str, str] = {}
    mismatch = None
    if has_solution:
        result.solution_loader.load_vars()
        if not relax and not _is_lp(model):  # rounded and checked, as on the matrix path
            mismatch = _pyomo_values_mismatch(solver, status, started=started,
                                              scale=float(getattr(model, "objective_scale", 1.0)
                                                          or 1.0))
            rejected, repaired = _checked_pyomo_incumbent(
                solver, model, budget.for_step(),
                float(options.get("mip_feasibility_tolerance", MIP_FEASIBILITY_MAX)))
            has_solution, status = recorded_check(checked, repaired, rejected, status)
            if mismatch is not None:
                checked["highs_values_mismatch"] = mismatch
                status = unclaimed(status, mismatch)
    if has_solution:
        value = float(pyo.value(objective))
    bound = result.objective_bound
    bound = float(bound) if bound is not None and math.isfinite(bound) else math.nan
    if status == "optimal" and _is_lp(model):
        bound = value
    if math.isnan(bound) and status == "optimal":
        bound = value
    solution = Solution(
        status=status,
        objective=value,
        bound=bound,
        gap=relative_gap(value, bound, sense),
        wall_s=0.0,
        sense=sense,
        relaxed=relax,
        backend="highs",
        decision=decision,
        info={"lp": _is_lp(model), **checked},
    )
    if prices and has_solution:
        if solution.info["lp"]:  # only an optimal LP's duals are prices (not a stopped iterate's)
            if status == "optimal":
                solution.prices = _pyomo_prices(model, result.solution_loader.get_duals(), sense)
            else:
                solution.info["prices_skipped"] = (
                    "time_limit" if term == TerminationCondition.maxTimeLimit
                    else f"the LP ended {status!r} without valid duals")
        else:
            step = budget.for_step()
            if not _has_free_continuous(model):
                solution.info["prices_skipped"] = INTEGER_PRICES_SKIPPED
            elif step == 0.0:
                solution.info["prices_skipped"] = "time_limit"
            else:
                fixed = _fixed_integer_prices_in_place(solver, model, sense, step)
                if fixed is None:
                    fixed = _fixed_integer_prices(model, sense, step)
                solution.prices, skipped = fixed
                if skipped is not None:
                    solution.info["prices_skipped"] = skipped
                elif note := _no_price_note(solution.prices):
                    solution.info["prices_note"] = note
    elif prices:
        solution.info["prices_skipped"] = "time_limit" if status == "time_limit" else "no solution"
    solution.info["bound_kind"] = _bound_kind(solution)
    solution.wall_s = time.perf_counter() - start
    return _in_reported_units(solution, model)


def _pyomo_values_mismatch(solver: Any, status: str, *, started: bool, scale: float
                           ) -> dict[str, Any] | None:
    """:func:`values_mismatch` of the MIP Pyomo's HiGHS interface just solved (its
    ``highspy.Highs``: HiGHS's objective against its column values'), None without that
    interface's internals (another Pyomo)."""
    highs = getattr(solver, "_solver_model", None)
    if highs is None:
        return None
    lp = highs.getLp()
    x = np.asarray(highs.getSolution().col_value, dtype=float)
    cost = np.asarray(lp.col_cost_, dtype=float)
    if x.shape != cost.shape:
        return None
    info = highs.getInfo()
    return values_mismatch(float(info.objective_function_value), float(cost @ x + lp.offset_),
                           float(np.abs(cost) @ np.abs(x) + abs(lp.offset_)),
                           float(info.mip_dual_bound), status, started=started, scale=scale)


def _pyomo_lp(solver: Any) -> tuple[Any, Any] | None:
    """The model Pyomo's HiGHS interface loaded (a ``highspy.HighsLp`` copy) and its matrix as
    scipy.sparse, or None without that interface's internals (another Pyomo)."""
    highs = getattr(solver, "_solver_model", None)
    if highs is None:
        return None
    return _lp_matrix(highs.getLp())


def _lp_matrix(lp: Any) -> tuple[Any, Any]:
    """A ``highspy.HighsLp`` and its matrix as scipy.sparse."""
    import highspy
    import scipy.sparse as sp

    shape = (lp.num_row_, lp.num_col_)
    parts = (np.asarray(lp.a_matrix_.value_, dtype=float), np.asarray(lp.a_matrix_.index_),
             np.asarray(lp.a_matrix_.start_))
    matrix = (sp.csr_matrix(parts, shape=shape) if lp.a_matrix_.format_ == highspy.MatrixFormat.kRowwise
              else sp.csc_matrix(parts, shape=shape))
    return lp, matrix


def _pyomo_integer(lp: Any) -> np.ndarray:
    """The integer columns of a ``highspy.HighsLp`` as a bool mask."""
    import highspy

    integer = np.zeros(lp.num_col_, dtype=bool)
    kinds = list(lp.integrality_)
    if kinds:
        integer[:] = [kind != highspy.HighsVarType.kContinuous for kind in kinds]
    return integer


def _pyomo_integrality_tolerance(solver: Any) -> float:
    """:func:`integrality_tolerance` of the model loaded in Pyomo's HiGHS interface
    (``MIP_FEASIBILITY_TOL`` when its internals are not there to read it)."""
    loaded = _pyomo_lp(solver)
    if loaded is None:
        return MIP_FEASIBILITY_TOL
    lp, matrix = loaded
    return integrality_tolerance(matrix, _pyomo_integer(lp))


def _checked_pyomo_incumbent(solver: Any, model: pyo.ConcreteModel, time_limit: float | None,
                             tolerance: float) -> tuple[str | None, str | None]:
    """The loaded incumbent of a Pyomo MIP rounded, checked and repaired in place
    (:func:`repaired_incumbent` on the model HiGHS holds): its integer variables set to whole
    numbers (and its continuous ones re-solved when the rounding broke a row). Returns why it was
    rejected and how it was repaired (None: not). Without Pyomo's HiGHS internals (another
    Pyomo), the integer variables are rounded and the constraints evaluated, without repair.
    ``tolerance``: the solve's integrality tolerance."""
    import highspy

    var_map = getattr(solver, "_pyomo_var_to_solver_var_map", None)
    con_map = getattr(solver, "_solver_con_to_pyomo_con_map", None) or {}
    loaded = _pyomo_lp(solver)
    if loaded is None or var_map is None or getattr(solver, "_model", None) is not model:
        return _checked_pyomo_expressions(model, tolerance), None
    lp, matrix = loaded
    integer = _pyomo_integer(lp)
    x = np.zeros(lp.num_col_)
    columns = {}
    for var_id, column in var_map.items():
        var = solver._vars[var_id][0]
        columns[column] = var
        x[column] = 0.0 if var.value is None else float(var.value)

    def names(row: int) -> str:
        con = con_map.get(row)
        return con.name if con is not None else f"row {row}"

    sense = "max" if lp.sense_ == highspy.ObjSense.kMaximize else "min"
    point, _, rejected, repaired = repaired_incumbent(
        np.asarray(lp.col_cost_, dtype=float), matrix, np.asarray(lp.row_lower_, dtype=float),
        np.asarray(lp.row_upper_, dtype=float), np.asarray(lp.col_lower_, dtype=float),
        np.asarray(lp.col_upper_, dtype=float), integer, x, offset=float(lp.offset_),
        sense=sense, time_limit=time_limit, names=names, tolerance=tolerance)
    if point is not None:
        for column, var in columns.items():
            if integer[column] or repaired is not None:
                var.set_value(float(point[column]), skip_validation=True)
    return rejected, repaired


def _checked_pyomo_expressions(model: pyo.ConcreteModel, tolerance: float) -> str | None:
    """:func:`_checked_pyomo_incumbent` without HiGHS's copy: the integer variables rounded in
    place, every active constraint evaluated (its body against its sides, with the tolerance of
    :func:`row_violations`). Returns why the point was rejected (None: it was not)."""
    for var in model.component_data_objects(pyo.Var, active=True):
        if not var.is_continuous() and not var.fixed and var.value is not None:
            var.set_value(float(round(var.value)), skip_validation=True)
    broken, first = 0, ""
    for con in model.component_data_objects(pyo.Constraint, active=True):
        body = float(pyo.value(con.body))
        lower = -math.inf if con.lower is None else float(pyo.value(con.lower))
        upper = math.inf if con.upper is None else float(pyo.value(con.upper))
        size = max(abs(body), *(abs(v) for v in (lower, upper) if math.isfinite(v)))
        tol = ROW_CHECK_ABS + ROW_CHECK_REL * size
        if body < lower - tol or body > upper + tol:
            broken += 1
            first = first or (f"{con.name}: {body:.10g} "
                              + (f"> {upper:.10g}" if body > upper else f"< {lower:.10g}"))
    if not broken:
        return None
    return _rejected_text(f"{broken} row{'s' if broken > 1 else ''} (e.g. {first})", tolerance)


def _the_model(decision: str, what: str = "model") -> str:
    """``the <decision> model`` in a message, or ``the model`` when no decision is named."""
    return f"the {decision} {what}" if decision else f"the {what}"


def _pass_warm_start(solver: Any, model: pyo.ConcreteModel) -> None:
    """Hand HiGHS the variables' current values as a MIP start (a model that sets
    ``model.warm_start = True`` gives every variable a value of a feasible point). Pyomo's HiGHS
    interface has no warm-start option: the model is loaded first and the start set on its
    ``highspy.Highs`` object, which the following ``solve`` of the same model reuses."""
    import highspy

    solver.set_instance(model)
    highs = solver._solver_model
    values = np.zeros(highs.getNumCol())
    for var_id, column in solver._pyomo_var_to_solver_var_map.items():
        value = solver._vars[var_id][0].value
        values[column] = 0.0 if value is None else float(value)
    start = highspy.HighsSolution()
    start.col_value = values
    start.value_valid = True
    highs.setSolution(start)


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[list]:
    """While HiGHS runs, Ctrl-C still raises KeyboardInterrupt (which stops HiGHS: Pyomo then
    reports an error) and is also noted, so the caller can tell an interrupt from a failure."""
    noted: list = []
    if threading.current_thread() is not threading.main_thread():
        yield noted  # signal handlers belong to the main thread
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:  # someone else handles Ctrl-C: leave it
        yield noted
        return

    def note(signum: int, frame: Any) -> None:
        noted.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


INTEGER_PRICES_SKIPPED = ("integer model: with its integer variables fixed nothing is left to move, "
                          "so its prices would be zero by construction; solve with relax=True for "
                          "the LP's prices")


class SolverFailedError(RuntimeError):
    """The solver failed (not installed, crashed, refused the model): nothing is proved about
    the instance; the message keeps the solver's own cause."""


def _bound_kind(solution: Solution) -> str:
    """Where ``solution.bound`` comes from, in the vocabulary of ``servopt.core.solution.BOUND_KINDS``:
    ``none`` (no bound), ``mip_bound`` (a MIP's dual bound), ``lp_relaxation`` (the optimum of
    an integer model's relaxation, ``relax=True``), ``optimal`` (an LP's proved optimum)."""
    if math.isnan(solution.bound):
        return "none"
    if not solution.info.get("lp", False):
        return "mip_bound"
    return "lp_relaxation" if solution.relaxed else "optimal"


def _has_free_continuous(model: pyo.ConcreteModel) -> bool:
    """Whether a MIP has a continuous variable that is not fixed and is in the objective: without
    one, the LP with the integers fixed has an objective that nothing left to move changes, so
    its duals are zero by construction (the caching IP's flow form: its occupancy is free but
    costs nothing)."""
    from pyomo.common.collections import ComponentSet
    from pyomo.core.expr import identify_variables

    free = [v for v in model.component_data_objects(pyo.Var, active=True)
            if v.is_continuous() and not v.fixed and not (v.lb is not None and v.lb == v.ub)]
    if not free:
        return False
    costed = ComponentSet()
    for objective in model.component_data_objects(pyo.Objective, active=True):
        costed.update(identify_variables(objective.expr, include_fixed=False))
    return any(v in costed for v in free)


def _nothing_to_price(mm: MatrixModel) -> bool:
    """Whether the LP of ``mm`` with its integer columns fixed has no free column with a cost
    (every column integer, fixed by its own bounds, or of objective 0), so that its objective is
    constant and its duals are zero by construction (the caching IP: its occupancy columns are
    free but cost nothing). A continuous column with a cost that equality rows determine once
    the integers are fixed does count: those rows' duals are then its cost moved through the
    rows, a true sensitivity."""
    if mm.integer is None:
        return False
    free = ~np.asarray(mm.integer, dtype=bool) & (np.asarray(mm.col_lower) != np.asarray(mm.col_upper))
    return not (free & (np.asarray(mm.objective) != 0)).any()


def _is_lp(model: pyo.ConcreteModel) -> bool:
    return all(
        v.is_continuous() or v.fixed for v in model.component_data_objects(pyo.Var, active=True)
    )


def _fixed_integer_prices_in_place(solver: Any, model: pyo.ConcreteModel, sense: str,
                                   time_limit: float | None = None
                                   ) -> tuple[dict[str, pd.Series], str | None] | None:
    """:func:`_fixed_integer_prices` on the HiGHS object that solved the MIP: its integer columns
    fixed at the incumbent (rounded) and made continuous, then one LP solve. No clone and no second
    translation of the model (on bs_offline_100 those took 30-40 s of a 10 s solve). None when
    Pyomo's persistent interface does not expose what this needs (then the clone is used)."""
    import highspy

    highs = getattr(solver, "_solver_model", None)
    rows = getattr(solver, "_pyomo_con_to_solver_con_map", None)
    if highs is None or rows is None or getattr(solver, "_model", None) is not model:
        return None
    n = highs.getNumCol()
    x = np.asarray(highs.getSolution().col_value, dtype=float)
    if x.size != n:
        return None
    lp = highs.getLp()  # a copy: the LP is solved afresh, as the clone would be
    cuts = _cut_rows(model, rows)
    at_incumbent = [rows[con] for con in _incumbent_cuts(model) if con in rows]
    cuts = cuts + at_incumbent
    if cuts:  # valid inequalities leave the price LP (free rows: their duals are 0)
        row_lower, row_upper = np.asarray(lp.row_lower_, dtype=float), np.asarray(lp.row_upper_, dtype=float)
        row_lower[cuts], row_upper[cuts] = -np.inf, np.inf
        lp.row_lower_, lp.row_upper_ = row_lower, row_upper
    continuous = highspy.HighsVarType.kContinuous
    integer = np.asarray([i for i, kind in enumerate(lp.integrality_) if kind != continuous], dtype=np.int64)
    if integer.size:
        lower, upper = np.asarray(lp.col_lower_, dtype=float), np.asarray(lp.col_upper_, dtype=float)
        lower[integer] = upper[integer] = np.round(x[integer])
        lp.col_lower_, lp.col_upper_ = lower, upper
    lp.integrality_ = []
    _, matrix = _lp_matrix(lp)
    lower, upper = np.asarray(lp.col_lower_, dtype=float), np.asarray(lp.col_upper_, dtype=float)
    frozen = _rows_without_free_column(matrix, lower != upper)  # and binding at the incumbent:
    frozen &= _binding_rows(matrix, np.where(lower == upper, lower, x),  # (fixed columns only
                            np.asarray(lp.row_lower_, dtype=float),  # count in those rows)
                            np.asarray(lp.row_upper_, dtype=float))
    fixed = new_highs()
    fixed.passModel(lp)
    if time_limit is not None:  # (HiGHS ignores a negative limit: spent is 0, stop at once)
        fixed.setOptionValue("time_limit", max(float(time_limit), 0.0))
    fixed.run()
    status = fixed.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        return {}, ("time_limit" if status == highspy.HighsModelStatus.kTimeLimit
                    else f"the fixed-integer LP ended {fixed.modelStatusToString(status)!r}")
    dual = np.asarray(fixed.getSolution().row_dual, dtype=float)
    dual[at_incumbent] = 0.0  # (free rows: 0 already; said for clarity)
    dual[frozen] = np.nan  # no free column: no price (module docstring)
    skip = _cut_names(model)
    return _pyomo_prices(model, {con: dual[row] for con, row in rows.items()
                                 if con.parent_component().name not in skip}, sense,
                         skip=skip), None


def _incumbent_cuts(model: pyo.ConcreteModel) -> list[Any]:
    """The rows ``model.valid_at_incumbent(model)`` names (none without that hook): rows that
    are valid inequalities once the integer variables hold the incumbent's values (expert
    placement's ``link[l,e,g]`` where y[l,e,g] = 1: ``f <= u`` is implied by the demand row when
    u = w, a cut when u < w), so they leave the price LP (priced 0), as ``valid_inequalities``
    do; left in, such a row binds with the demand row and HiGHS may put the price on either."""
    hook = getattr(model, "valid_at_incumbent", None)
    return [] if hook is None else list(hook(model))


def _binding_rows(matrix: Any, x: np.ndarray, row_lower: np.ndarray, row_upper: np.ndarray,
                  tol: float = 1e-7) -> np.ndarray:
    """Rows of ``matrix`` whose activity at ``x`` sits on a bound (within ``tol``, relative to
    the bound's size). A row with no free column and slack keeps its price 0: a small change of
    its bound changes nothing, in either direction; only a binding one has no price."""
    import scipy.sparse as sp

    activity = sp.csr_matrix(matrix) @ np.asarray(x, dtype=float)
    def on(bound: np.ndarray) -> np.ndarray:  # (an infinite bound is never reached)
        bound = np.asarray(bound, dtype=float)
        with np.errstate(invalid="ignore"):
            near = np.abs(activity - bound) <= tol * np.maximum(1.0, np.abs(bound))
        return np.isfinite(bound) & near

    return on(row_lower) | on(row_upper)


def _rows_without_free_column(matrix: Any, free: np.ndarray) -> np.ndarray:
    """Rows of ``matrix`` (scipy.sparse) with no nonzero in a ``free`` column: in the price LP of
    a MIP (integers fixed) nothing in them can move, so they get no price (NaN)."""
    import scipy.sparse as sp

    a = sp.csr_matrix(matrix)
    nonzero = sp.csr_matrix((a.data != 0, a.indices, a.indptr), shape=a.shape, dtype=float)
    return nonzero @ np.asarray(free, dtype=float) == 0


NO_PRICE_NOTE = ("no price (NaN) for binding rows over integer variables only: with the integers "
                 "fixed at the incumbent nothing in them can move, so a dual there would be "
                 "arbitrary (0 whatever the row costs); solve with relax=True for the LP's prices")


def _no_price_note(prices: dict[str, pd.Series]) -> str | None:
    """``info["prices_note"]`` of a MIP's prices: which families have rows priced NaN
    (:data:`NO_PRICE_NOTE`), None when none has."""
    counts = {name: int(np.isnan(series.to_numpy(dtype=float)).sum())
              for name, series in prices.items() if len(series)}
    listed = [f"{name} ({n} of {len(prices[name])})" for name, n in counts.items() if n]
    if not listed:
        return None
    return f"{NO_PRICE_NOTE}: {', '.join(listed)}"


def _cut_names(model: pyo.ConcreteModel) -> set[str]:
    """The constraint families ``model.valid_inequalities`` names: cuts (symmetry breaking, a
    combinatorial bound) that change no integer solution's LP but would soak up its prices."""
    return set(getattr(model, "valid_inequalities", ()) or ())


def _cut_rows(model: pyo.ConcreteModel, rows: dict[Any, int]) -> list[int]:
    """The solver rows of the constraints in ``model``'s valid-inequality families."""
    names = _cut_names(model)
    return [row for con, row in rows.items() if con.parent_component().name in names]


def _con_binding(con: Any, tol: float = 1e-7) -> bool:
    """Whether the Pyomo row ``con`` sits on one of its bounds at the variables' current values
    (as :func:`_binding_rows`)."""
    value = pyo.value(con.body, exception=False)
    if value is None:
        return True  # (no value: no price rather than a guess)
    return any(bound is not None and math.isfinite(bound)
               and abs(value - bound) <= tol * max(1.0, abs(bound))
               for bound in (pyo.value(con.lower), pyo.value(con.upper)))


def _fixed_integer_prices(model: pyo.ConcreteModel, sense: str, time_limit: float | None = None
                          ) -> tuple[dict[str, pd.Series], str | None]:
    """Prices of a MIP: duals of the LP with the integer variables fixed at the incumbent (HiGHS
    given ``time_limit`` s), and why there are none (None when there are)."""
    from pyomo.contrib.solver.common.results import TerminationCondition
    from pyomo.core.expr import identify_variables

    lp = model.clone()
    for var in lp.component_data_objects(pyo.Var, active=True):
        if not var.is_continuous() and not var.fixed and var.value is not None:
            var.fix(round(var.value))
    for name in _cut_names(lp):  # valid inequalities leave the price LP
        getattr(lp, name).deactivate()
    given: dict[Any, float] = {}  # rows priced without the LP: cuts at the incumbent 0, rows
    for con in _incumbent_cuts(lp):  # with no free column NaN (module docstring)
        if con.active:
            con.deactivate()
            given[con] = 0.0
    for con in lp.component_data_objects(pyo.Constraint, active=True):
        if not any(v.is_continuous() and not (v.lb is not None and v.lb == v.ub)
                   for v in identify_variables(con.body, include_fixed=False)):
            con.deactivate()  # (its value is that of fixed variables: binding or slack for good)
            given[con] = math.nan if _con_binding(con) else 0.0
    pyo.TransformationFactory("core.relax_integer_vars").apply_to(lp)
    kwargs: dict[str, Any] = {} if time_limit is None else {"time_limit": float(time_limit)}
    result = _highs().solve(
        lp,
        raise_exception_on_nonoptimal_result=False,
        load_solutions=False,
        solver_options={"output_flag": False},
        **kwargs,
    )
    term = result.termination_condition
    if term != TerminationCondition.convergenceCriteriaSatisfied:
        return {}, ("time_limit" if term == TerminationCondition.maxTimeLimit
                    else f"the fixed-integer LP ended {term.name!r}")
    duals = dict(result.solution_loader.get_duals())
    duals.update(given)
    return _pyomo_prices(lp, duals, sense), None


def _pyomo_prices(model: pyo.ConcreteModel, duals: Any, sense: str, skip: set[str] = frozenset()
                  ) -> dict[str, pd.Series]:
    """Prices of every active constraint family of ``model`` but those named in ``skip``."""
    names = getattr(model, "index_names", {}) or {}
    prices: dict[str, pd.Series] = {}
    for component in model.component_objects(pyo.Constraint, descend_into=True):
        if component.name in skip:
            continue
        if not component.active and not any(con in duals for con in component.values()):
            continue  # (a scalar row left out of the price LP is inactive, but priced)
        keys, values, inequality = [], [], True
        for key, con in component.items():
            if con not in duals:  # (a row left out of a price LP is in ``duals`` when priced)
                continue
            dual = float(duals[con])
            if con.equality:
                row, inequality = "eq", False
            elif con.has_ub() and not con.has_lb():
                row = "le"
            elif con.has_lb() and not con.has_ub():
                row = "ge"
            else:  # ranged: the active side is the one the dual's sign points to
                row = "le" if (dual < 0) == (sense == "min") else "ge"
            keys.append(key)
            values.append(normalise_dual(dual, sense=sense, row=row, convention="pyomo"))
        if not keys and not (component.is_indexed() and len(component) == 0):
            continue  # an indexed family with no row (all skipped, or none to index) stays
        if component.is_indexed() and len(component) < len(component.index_set()):
            # a row the model skipped (Constraint.Skip: it could never bind) still gets its
            # price, 0, so prices are labelled like the data (every round, every gap)
            order = list(component.index_set())
            keys, values = _fill_skipped(order, keys, values)
        name = component.name  # (a Block's row is blk.pin: its local name pin would replace a
        # top-level pin's prices, R44 F4; a top-level family's name is its local name)
        index = _make_index(keys, names.get(name))
        series = pd.Series(np.asarray(values, dtype=float), index=index, name=name)
        prices[name] = clean_prices(series, inequality=inequality)
    return prices


def _fill_skipped(order: list[Any], keys: list[Any], values: list[float]) -> tuple[list, list]:
    """``keys``/``values`` completed with 0 for every key of ``order`` they lack, in that order."""
    given = dict(zip(keys, values, strict=True))
    return order, [given.get(key, 0.0) for key in order]


def _make_index(keys: list[Any], names: Any) -> pd.Index:
    if keys and isinstance(keys[0], tuple):
        return pd.MultiIndex.from_tuples(keys, names=list(names) if names else None)
    if names:
        name = names[0] if isinstance(names, list | tuple) else names
        return pd.Index(keys, name=name)
    return pd.Index(keys)


def _pyomo_values(model: pyo.ConcreteModel) -> dict[str, pd.Series]:
    names = getattr(model, "index_names", {}) or {}
    out: dict[str, pd.Series] = {}
    for var in model.component_objects(pyo.Var, active=True):
        keys = list(var.keys())
        values = [var[k].value for k in keys]
        name = var.name  # (unique: blk.x, not x, for a Block's variable, as for prices)
        if keys == [None]:
            out[name] = pd.Series(values, name=name, dtype=float)
        else:
            index = _make_index(keys, names.get(name))
            out[name] = pd.Series(values, index=index, name=name, dtype=float)
    return out


@contextlib.contextmanager
def _c_stdout_silenced() -> Iterator[None]:
    """Send the C-level stdout to /dev/null (HiGHS prints its banner there when an instance is
    constructed, which would otherwise interleave with tables and progress bars). Holds
    :data:`PROCESS_OUTPUT_LOCK`: another thread's redirect in between would be restored wrongly."""
    with PROCESS_OUTPUT_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


_BANNER_SHOWN = False  # HiGHS prints its banner once per process, at the first Highs()


def new_highs() -> Any:
    """A silent ``highspy.Highs`` for the matrix paths. Only the process's first one needs its
    banner silenced, and only if :data:`PROCESS_OUTPUT_LOCK` is free at once; later ones take no
    lock, so a matrix solve never waits for another thread's Pyomo or CVXPY solve (that solve has
    the output redirected: a banner printed meanwhile goes to its capture)."""
    global _BANNER_SHOWN
    import highspy

    if _BANNER_SHOWN or not PROCESS_OUTPUT_LOCK.acquire(blocking=False):
        highs = highspy.Highs()
    else:
        try:
            with _c_stdout_silenced():
                highs = highspy.Highs()
        finally:
            PROCESS_OUTPUT_LOCK.release()
    _BANNER_SHOWN = True
    highs.setOptionValue("output_flag", False)
    return highs


# ---------------------------------------------------------------------------------------------
# Matrix models + HiGHS (no Pyomo in between)
# ---------------------------------------------------------------------------------------------
def solve_matrix(
    mm: MatrixModel,
    *,
    relax: bool = False,
    time_limit: float | None = None,
    mip_gap: float = 1e-4,
    prices: bool = True,
    decision: str = "",
) -> Solution:
    """Solve a :class:`~servopt.core.matrix.MatrixModel` with HiGHS; the same Solution as
    :func:`solve_model` (status, objective, bound, gap, labelled decisions and prices).

    A MIP starts from ``mm.start`` when given; its prices are the duals of the LP with the
    integer columns fixed at the incumbent. Ctrl-C stops HiGHS and keeps the incumbent
    (status ``interrupted``). Raises :class:`InfeasibleError` when HiGHS proves infeasibility.
    ``time_limit`` is a budget for the whole call, as in :func:`solve` (without the build).
    """
    return _solve_matrix(mm, relax=relax, budget=TimeBudget(seconds(time_limit)), mip_gap=mip_gap,
                         prices=prices, decision=decision)


def _solve_matrix(mm: MatrixModel, *, relax: bool, budget: TimeBudget, mip_gap: float,
                  prices: bool, decision: str, setup_s: float = 0.0) -> Solution:
    """:func:`_solve_matrix_once` at HiGHS's integrality tolerance, then, for a MIP whose
    rounded incumbent broke a row, once more at :func:`integrality_tolerance` (module
    docstring); a MIP whose values HiGHS did not value after its start, once more without the
    start (:func:`without_start_if_mismatched`)."""
    def once(tight: bool, use_start: bool = True) -> Solution:
        return _solve_matrix_once(mm, relax=relax, budget=budget, mip_gap=mip_gap, prices=prices,
                                  decision=decision, setup_s=setup_s, tight=tight,
                                  use_start=use_start)

    integer = mm.is_mip and not relax and "mip_feasibility_tolerance" not in mm.options
    can_tighten = integer and integrality_tolerance(mm.matrix, mm.integer) < MIP_FEASIBILITY_MAX
    first = retry_tight(once, can_tighten, budget)
    return without_start_if_mismatched(
        first, lambda: retry_tight(lambda tight: once(tight, False), can_tighten, budget), budget)


def recorded_check(into: dict[str, Any], repaired: str | None, rejected: str | None,
                    status: str) -> tuple[bool, str]:
    """Record in ``into`` (a solution's info) how a rounded incumbent fared; (whether it is
    reported, the status: ``error`` for a rejected one where HiGHS said optimal)."""
    if repaired is not None:
        into["incumbent_repaired"] = repaired
    if rejected is None:
        return True, status
    into["incumbent_rejected"] = rejected
    return False, "error" if status == "optimal" else status


def retry_tight(once: Any, can_tighten: bool, budget: TimeBudget) -> Solution:
    """``once(False)``; if its rounded incumbent was rejected and a tighter tolerance exists,
    ``once(True)`` on what is left of the budget, kept when it returns a checked incumbent (with
    the better of the two proved bounds). The tight solve is never the only one: at row values
    of 1e8-1e9 HiGHS's MIP, which applies the tolerance to every row, can call a feasible model
    infeasible there (review R10: 8 of 150 random MIPs with 1e7 coefficients)."""
    first = once(False)
    if not (can_tighten and first.info.get("incumbent_rejected")):
        return first
    left = budget.left()
    if left is not None and left <= 0.0:
        return first
    try:
        second = once(True)
    except (InfeasibleError, SolverFailedError) as exc:  # not a proof: the first solve's stands
        first.info["tight_retry"] = f"failed ({exc})"[:200]
        return first
    if second.info.get("incumbent_rejected") or math.isnan(second.objective):
        first.info["tight_retry"] = f"no checked incumbent ({second.status})"
        return first
    bounds = [b for b in (first.bound, second.bound) if not math.isnan(b)]
    if bounds:  # both solves' bounds are valid (a looser tolerance only relaxes the model)
        second.bound = max(bounds) if second.sense == "min" else min(bounds)
        second.gap = relative_gap(second.objective, second.bound, second.sense)
    second.info["tight_retry"] = "after the default tolerance's incumbent was rejected"
    second.wall_s += first.wall_s
    return second


def values_mismatch(reported: float, raw: float, terms: float, bound: float, status: str, *,
                    started: bool, scale: float = 1.0) -> dict[str, Any] | None:
    """``info["highs_values_mismatch"]`` when HiGHS's objective ``reported`` is not the objective
    ``raw`` of the column values it returned (``terms``: their summed |cost x value| and
    |offset|; :data:`HIGHS_VALUES_RTOL`), else None. ``bound``: HiGHS's dual bound; ``status``:
    how HiGHS ended; ``started``: a MIP start was given; ``scale``: the model's objective scale
    (the numbers are reported in the reported units)."""
    if not (math.isfinite(reported) and math.isfinite(raw)):
        return None
    if abs(raw - reported) <= HIGHS_VALUES_RTOL * max(1.0, terms, abs(reported)):
        return None
    return {"highs_objective": reported * scale, "objective_of_values": raw * scale,
            "highs_bound": bound * scale, "highs_status": status, "started": started,
            "note": ("HiGHS returned column values whose objective is not the one it reported "
                     "(seen with highspy 1.16 after a MIP start); 'retry' says what followed")}


def unclaimed(status: str, mismatch: dict[str, Any] | None) -> str:
    """The status of a MIP answer whose values HiGHS did not value (``mismatch``): ``error``
    where HiGHS said optimal (the values are feasible and kept, but not its optimum)."""
    return "error" if mismatch is not None and status == "optimal" else status


def without_start_if_mismatched(first: Solution, again: Any, budget: TimeBudget) -> Solution:
    """``first``, or when its values were not HiGHS's (``info["highs_values_mismatch"]``, after
    a MIP start) ``again()``: the same MIP solved without the start on what is left of the budget.
    Its answer is kept when its values agree with HiGHS (with the better of the two bounds);
    otherwise the better of the two feasible points, never called optimal, and the info says
    what happened. Out of time: ``first``, status ``time_limit`` where HiGHS said optimal."""
    mismatch = first.info.get("highs_values_mismatch")
    if not mismatch or not mismatch.get("started"):
        return first
    left = budget.left()
    if left is not None and left <= 0.0:
        mismatch["retry"] = "skipped: no time left"
        if first.status == "error" and mismatch["highs_status"] == "optimal":
            first.status = "time_limit"
        return first
    try:
        second = again()
    except (InfeasibleError, SolverFailedError) as exc:  # the start was feasible: not a proof
        mismatch["retry"] = f"without the start: failed ({exc})"[:200]
        return first
    sense = first.sense
    bounds = [b for b in (first.bound, second.bound) if not math.isnan(b)]
    best = math.nan if not bounds else max(bounds) if sense == "min" else min(bounds)
    if "highs_values_mismatch" not in second.info and not math.isnan(second.objective):
        mismatch["retry"] = "re-solved without the start: its values agree with HiGHS"
        second.info["highs_values_mismatch"] = mismatch
        kept = second
    else:
        mismatch["retry"] = ("re-solved without the start: "
                             + ("its values disagree too" if "highs_values_mismatch" in second.info
                                else f"no incumbent ({second.status})"))
        better = (not math.isnan(second.objective)
                  and (second.objective < first.objective if sense == "min"
                       else second.objective > first.objective))
        kept = second if better else first
        kept.info["highs_values_mismatch"] = mismatch
        if kept.status == "optimal":
            kept.status = "error"
    if bounds and best != kept.bound:
        other = second if kept is first else first
        kept.info["bound_kind"] = other.info.get("bound_kind", kept.info.get("bound_kind"))
    kept.bound = best
    kept.gap = relative_gap(kept.objective, kept.bound, sense)
    kept.wall_s += (second.wall_s if kept is first else first.wall_s)
    return kept


def _solve_matrix_once(mm: MatrixModel, *, relax: bool, budget: TimeBudget, mip_gap: float,
                       prices: bool, decision: str, setup_s: float = 0.0,
                       tight: bool = False, use_start: bool = True) -> Solution:
    """:func:`solve_matrix` spending from ``budget`` (started by the caller); ``tight``: at
    :func:`integrality_tolerance` instead of HiGHS's own; ``use_start`` False: without
    ``mm.start`` (as if it had none). ``setup_s``: the
    seconds HiGHS's MIP set-up and root are expected to take before it reads its clock again
    (the model's ``time_estimate``; 0: unknown): a MIP with a feasible start is not handed to
    HiGHS with less than that left after the bound LP (HiGHS could only return the start,
    late)."""
    import highspy

    start = time.perf_counter()
    integer = mm.is_mip and not relax
    given = mm.start if use_start else None
    # a MIP keeps a share of the limit for its price LP, after its solve (none when that LP
    # would have nothing to move: its prices are skipped)
    price_share = PRICE_LP_SHARE if integer and prices and not _nothing_to_price(mm) else 0.0
    timed = integer and budget.limit is not None
    if timed and given is not None and budget.left() <= 0.0 and _start_is_feasible(mm):
        # the build ate the budget (a model without ``time_estimate`` does not check the clock):
        # HiGHS's MIP set-up, which does not either, would overrun it again (6-10 s at n = 400
        # batch scheduling) to return this start
        return _in_reported_units(_start_only(mm, "time_limit", given, prices=prices,
                                              decision=decision, wall_s=time.perf_counter() - start),
                                  mm)
    extra: dict[str, Any] = {}
    lp_bound = math.nan
    if timed and mm.bound_lp is not None:
        # the model's bound LP first, on what is left less the MIP's least slice and the prices':
        # a short limit then returns its bound (where HiGHS would stop before its own root LP, as
        # the batch IP at n = 100 on 5 s), a long one keeps for the MIP whatever the LP left
        keep, reserve = price_share, budget.least()
        if setup_s > 0.0 and budget.for_step(keep=keep) - reserve <= setup_s:
            keep, reserve = 0.0, 0.0  # HiGHS will not run after it (nor its prices): it takes all
        step = budget.for_step(keep=keep) - reserve
        if step <= 0.0:
            extra["bound_lp_status"] = "skipped: time_limit"
        else:
            lp_bound, extra = _bound_lp_value(mm, step)
            if extra.get("bound_lp_status") == "interrupted":  # Ctrl-C: stop with the start
                kept = given if given is not None and _start_is_feasible(mm) else None
                return _in_reported_units(_start_after_bound_lp(
                    mm, "interrupted", kept, lp_bound, extra, prices=prices, decision=decision,
                    since=start), mm)
    if timed and setup_s > 0.0 and given is not None and budget.left() <= setup_s \
            and _start_is_feasible(mm):  # HiGHS would not get past its set-up and root in time:
        # the start, with the bound LP's value when it was solved
        return _in_reported_units(_start_after_bound_lp(
            mm, "time_limit", given, lp_bound, extra, prices=prices, decision=decision,
            since=start), mm)
    highs = _load_matrix(mm, integer=integer)
    options: dict[str, Any] = {"mip_rel_gap": float(mip_gap), **mm.options}
    if integer and tight and "mip_feasibility_tolerance" not in options:
        options["mip_feasibility_tolerance"] = integrality_tolerance(mm.matrix, mm.integer)
    limit = budget.for_solve(price_share)
    if limit is not None:
        options["time_limit"] = limit
        if integer and given is not None:
            options = {**WARM_TIME_LIMITED, **options}
    for name, value in options.items():
        highs.setOptionValue(name, value)
    if integer and given is not None:
        warm = highspy.HighsSolution()
        warm.col_value = given
        warm.value_valid = True
        highs.setSolution(warm)
    # HiGHS's interrupt callbacks cost about 8 us per simplex iteration (30% of a 0.1 s LP):
    # only a long solve (a MIP or a large LP) needs Ctrl-C to stop it rather than to wait
    interrupted = _run_interruptible(highs, poll=integer or mm.matrix.nnz >= INTERRUPT_NONZEROS)
    ms = highspy.HighsModelStatus
    model_status = highs.getModelStatus()
    if model_status == ms.kInfeasible:
        raise InfeasibleError(f"{_the_model(decision)} is infeasible")
    if model_status == ms.kUnboundedOrInfeasible:
        raise InfeasibleError(f"{_the_model(decision)} is infeasible (or unbounded)")
    status = {ms.kOptimal: "optimal", ms.kTimeLimit: "time_limit", ms.kIterationLimit: "time_limit",
              ms.kInterrupt: "interrupted", ms.kUnbounded: "unbounded"}.get(model_status, "error")
    if interrupted and status != "optimal":
        status = "interrupted"
    info = highs.getInfo()
    solution_values = highs.getSolution()
    has_solution = bool(info.primal_solution_status == 2)  # kSolutionStatusFeasible
    value = float(info.objective_function_value) if has_solution else math.nan
    empty = model_status == ms.kModelEmpty
    if empty:  # no column: the rows hold at 0 or nothing does; every price is 0
        if np.any(mm.row_lower > 0) or np.any(mm.row_upper < 0):
            raise InfeasibleError(f"{_the_model(decision)} is infeasible")
        status, has_solution, value = "optimal", True, float(mm.offset)
    values = np.asarray(solution_values.col_value, dtype=float) if has_solution else None
    if integer and has_solution and not empty:  # rounded, checked against the rows, its value
        # recomputed (HiGHS's integrality tolerance lends room in a row: module docstring)
        terms = np.abs(mm.objective) @ np.abs(values) + abs(mm.offset)
        mismatch = values_mismatch(value, float(mm.objective @ values + mm.offset), float(terms),
                                   float(info.mip_dual_bound), status, started=given is not None,
                                   scale=float(getattr(mm, "objective_scale", 1.0) or 1.0))
        values, value, rejected, repaired = _checked_matrix_incumbent(
            mm, values, budget.for_step(keep=price_share),
            float(options.get("mip_feasibility_tolerance", MIP_FEASIBILITY_MAX)))
        has_solution, status = recorded_check(extra, repaired, rejected, status)
        if mismatch is not None:
            extra["highs_values_mismatch"] = mismatch
            status = unclaimed(status, mismatch)
    if integer:
        bound = float(info.mip_dual_bound)
        bound = bound if math.isfinite(bound) else math.nan
        if status == "optimal" and math.isnan(bound):
            bound = value
        extra["bound_kind"] = "mip_bound"
        if "bound_lp_s" in extra:  # solved first (a time limit): the better of the two bounds
            bound, extra["bound_kind"] = _better_bound(mm, bound, lp_bound)
        elif (status == "time_limit" and mm.bound_lp is not None and not timed
                and (math.isnan(bound) or int(info.mip_node_count) == 0)):
            # no budget (a limit among the model's options) and stopped before (or at) the root:
            # the model's cheap relaxation may bound it better
            bound, extra = _bound_from_lp(mm, bound, budget.for_step(keep=price_share))
        if has_solution and values is not None:  # an optimum of 0 up to the rounding of its own
            # terms (0.1 + 0.2 - 0.3 = 5.6e-17 against HiGHS's 2.8e-17) is 0: a relative gap of
            # two such noises would be 1 or more (review R10)
            noise = NOISE_REL * float(np.abs(mm.objective) @ np.abs(values) + abs(mm.offset))
            value = 0.0 if abs(value) <= noise else value
            bound = 0.0 if abs(bound) <= noise else bound
        if math.isnan(bound):  # stopped before HiGHS (or the bound LP) proved any bound
            extra["bound_kind"] = "none"
    else:
        bound = value if status == "optimal" else math.nan
    solution = Solution(status=status, objective=value, bound=bound,
                        gap=relative_gap(value, bound, mm.sense), wall_s=0.0, sense=mm.sense,
                        relaxed=relax, backend="highs", decision=decision,
                        info={"lp": not integer, "form": "matrix", "rows": mm.shape[0],
                              "columns": mm.shape[1], "nonzeros": int(mm.matrix.nnz), **mm.info,
                              **extra})
    if has_solution:
        solution.decisions = _column_values(mm, values)
        if prices:
            skipped = None
            if integer:
                step = budget.for_step()
                if _nothing_to_price(mm):
                    skipped = INTEGER_PRICES_SKIPPED
                elif step == 0.0:
                    skipped = "time_limit"
                else:
                    solution.prices, skipped = _fixed_matrix_prices(mm, values, highs, step)
                    if skipped is None and (note := _no_price_note(solution.prices)):
                        solution.info["prices_note"] = note
            elif empty:
                solution.prices = _matrix_prices(mm, np.zeros(mm.shape[0]), np.zeros(0))
            elif status == "optimal" and solution_values.dual_valid:  # not a stopped LP's duals
                solution.prices = _matrix_prices(mm, np.asarray(solution_values.row_dual),
                                                 np.asarray(solution_values.col_dual))
            else:
                skipped = ("time_limit" if model_status == ms.kTimeLimit
                           else f"the LP ended {status!r} without valid duals")
            if skipped is not None:
                solution.info["prices_skipped"] = skipped
    elif prices:
        solution.info["prices_skipped"] = (  # a MIP with nothing to price never had a price LP
            INTEGER_PRICES_SKIPPED if integer and _nothing_to_price(mm)
            else "time_limit" if model_status == ms.kTimeLimit else "no solution")
    solution.info.setdefault("bound_kind", _bound_kind(solution))
    solution.wall_s = time.perf_counter() - start
    return _in_reported_units(solution, mm)


def _bound_from_lp(mm: MatrixModel, bound: float, time_limit: float | None
                   ) -> tuple[float, dict[str, Any]]:
    """The better of a MIP's dual ``bound`` and the optimum of its ``bound_lp`` (HiGHS given
    ``time_limit`` s, None: no limit), and how it was obtained (:func:`_bound_lp_value`,
    :func:`_better_bound`)."""
    value, extra = _bound_lp_value(mm, time_limit)
    bound, extra["bound_kind"] = _better_bound(mm, bound, value)
    return bound, extra


def _bound_lp_value(mm: MatrixModel, time_limit: float | None) -> tuple[float, dict[str, Any]]:
    """The optimum of a MIP's ``bound_lp`` within ``time_limit`` s (its build and load included;
    None: no limit; nan when not solved) and how it went (``bound_lp_s``, ``bound_lp`` or
    ``bound_lp_status``). When every column is integer with an integral cost the MIP's objective
    is a whole number, so the LP value is rounded to the next one (less a 1e-7 relative
    tolerance for solver noise)."""
    import highspy

    start = time.perf_counter()
    lp = mm.bound_lp()
    highs = _load_matrix(lp, integer=False)
    for name, value in lp.options.items():
        highs.setOptionValue(name, value)
    if time_limit is not None:  # HiGHS gets what the LP's build and load left of its seconds
        left = float(time_limit) - (time.perf_counter() - start)
        if left <= 0.0:
            return math.nan, {"bound_lp_s": time.perf_counter() - start,
                              "bound_lp_status": "not solved in time"}
        highs.setOptionValue("time_limit", left)
    interrupted = _run_interruptible(highs, poll=lp.matrix.nnz >= INTERRUPT_NONZEROS)
    extra: dict[str, Any] = {"bound_lp_s": time.perf_counter() - start}
    if interrupted:  # Ctrl-C (its value is still a bound if it finished)
        extra["bound_lp_status"] = "interrupted"
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        extra.setdefault("bound_lp_status", "not solved in time")
        return math.nan, extra
    value = float(highs.getInfo().objective_function_value)
    if _integral_objective(mm):  # rounded to a whole number, up for min, down for max
        tol = max(1e-6, 1e-7 * abs(value))
        value = float(math.ceil(value - tol) if mm.sense == "min" else math.floor(value + tol))
        extra["bound_lp_rounded"] = "up" if mm.sense == "min" else "down"
    extra["bound_lp"] = value
    return value, extra


def _integral_objective(mm: MatrixModel) -> bool:
    """Every column integer with a whole cost and a whole offset: every value is a whole number."""
    return (mm.integer is not None and bool(np.all(mm.integer))
            and bool(np.all(mm.objective == np.round(mm.objective)))
            and float(mm.offset).is_integer())


def _better_bound(mm: MatrixModel, bound: float, lp: float) -> tuple[float, str]:
    """The better of a MIP's dual ``bound`` and its bound LP's value ``lp`` (nan: none), and its
    ``bound_kind``."""
    if math.isnan(lp) or not (math.isnan(bound) or (lp > bound if mm.sense == "min" else lp < bound)):
        return bound, "mip_bound"
    return lp, "lp_relaxation"


def _start_is_feasible(mm: MatrixModel) -> bool:
    """``mm.start`` within the column bounds, whole on the integer columns and within the row
    bounds, to HiGHS's tolerances (what HiGHS checks of a MIP start before it uses it)."""
    x = np.asarray(mm.start, dtype=float)
    if x.shape != (mm.shape[1],) or not np.all(np.isfinite(x)):
        return False
    tol = FEASIBILITY_TOL
    if np.any(x < mm.col_lower - tol) or np.any(x > mm.col_upper + tol):
        return False
    whole = x[mm.integer] if mm.integer is not None else x[:0]
    if np.any(np.abs(whole - np.round(whole)) > tol):
        return False
    activity = mm.matrix @ x
    return not (np.any(activity < mm.row_lower - tol) or np.any(activity > mm.row_upper + tol))


def integrality_tolerance(matrix: Any, integer: np.ndarray | None) -> float:
    """HiGHS's ``mip_feasibility_tolerance`` for a MIP (``integer``: its bool mask): the largest
    tolerance t <= ``MIP_FEASIBILITY_MAX`` (HiGHS's default) at which integer variables t away from
    whole numbers move no row by more than ``ROW_ROOM`` (t x the largest sum_j |a_ij| over a row's
    integer columns), but at least ``MIP_FEASIBILITY_TOL``. So a whole-number row cannot gain a
    unit (the audit's 2.4M-token rows: about 2e-8), and models of modest coefficients keep
    HiGHS's default (the library's MIPs: row sums up to 14,059; at 1e-9, dr_hindsight_20x3 took
    1.4-2.7x as long)."""
    import scipy.sparse as sp

    if integer is None or not np.any(integer):
        return MIP_FEASIBILITY_MAX
    a = sp.csc_matrix(matrix)
    if not a.nnz:
        return MIP_FEASIBILITY_MAX
    weights = np.abs(a.data)
    if not np.all(integer):
        weights = weights * np.repeat(np.asarray(integer, dtype=bool), np.diff(a.indptr))
    largest = float(np.bincount(a.indices, weights=weights, minlength=a.shape[0]).max())
    if largest <= 0.0:
        return MIP_FEASIBILITY_MAX
    return float(min(MIP_FEASIBILITY_MAX, max(MIP_FEASIBILITY_TOL, ROW_ROOM / largest)))


def row_violations(matrix: Any, row_lower: np.ndarray, row_upper: np.ndarray, x: np.ndarray,
                   *, integer: np.ndarray | None = None, tolerance: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``matrix @ x`` outside [``row_lower``, ``row_upper``] by more than
    ``ROW_CHECK_ABS`` + the larger of ``ROW_CHECK_REL`` x the row's size (the largest of its
    finite sides and sum_j |a_ij x_j|) and the room the solve's integrality ``tolerance`` gave it
    (``tolerance`` x sum_j |a_ij| over its ``integer`` columns, at most ``ROW_ROOM``), and the
    activity ``matrix @ x``. A row of whole numbers on integer columns (whole-number sides) is
    held to ``ROW_CHECK_ABS`` alone: a rounded point's activity is then a whole number, exact in
    floating point below 2**53, so any miss is at least 1 at any size (prompts of 3e9 tokens)."""
    import scipy.sparse as sp

    x = np.asarray(x, dtype=float)
    activity = np.asarray(matrix @ x, dtype=float).ravel()
    lower, upper = np.asarray(row_lower, dtype=float), np.asarray(row_upper, dtype=float)
    near = np.flatnonzero((activity < lower - ROW_CHECK_ABS) | (activity > upper + ROW_CHECK_ABS))
    if not near.size:  # the usual case: no row is looked at twice
        return near, activity
    part = abs(sp.csr_matrix(matrix)[near])
    size = part @ np.abs(x)
    sides = np.maximum(np.where(np.isfinite(lower[near]), np.abs(lower[near]), 0.0),
                       np.where(np.isfinite(upper[near]), np.abs(upper[near]), 0.0))
    room = np.zeros(len(near))
    if integer is not None and tolerance > 0.0:
        room = np.minimum(ROW_ROOM, tolerance * (part @ np.asarray(integer, dtype=float)))
    tol = ROW_CHECK_ABS + np.maximum(ROW_CHECK_REL * np.maximum(size, sides), room)
    if integer is not None:  # whole-number rows: exact
        whole = np.asarray(integer, dtype=bool)
        part = part.tocsr()
        bad_entry = (part.data != np.round(part.data)) | ~whole[part.indices]
        row_of = np.repeat(np.arange(len(near)), np.diff(part.indptr))
        exact_row = np.bincount(row_of, weights=bad_entry, minlength=len(near)) == 0
        for side in (lower[near], upper[near]):
            exact_row &= ~np.isfinite(side) | (side == np.round(side))
        tol = np.where(exact_row, ROW_CHECK_ABS, tol)
    bad = (activity[near] < lower[near] - tol) | (activity[near] > upper[near] + tol)
    return near[bad], activity


def checked_incumbent(objective: np.ndarray, matrix: Any, row_lower: np.ndarray,
                      row_upper: np.ndarray, col_lower: np.ndarray, col_upper: np.ndarray,
                      integer: np.ndarray, x: np.ndarray, *, offset: float = 0.0,
                      tolerance: float = 0.0
                      ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """A MIP's incumbent ``x`` as servopt reports it: its integer columns (bool mask
    ``integer``) rounded to whole numbers (HiGHS accepts a value within its integrality
    tolerance: 1 - 1e-6 times a coefficient of 2.4e6 lent 2.4 KV tokens), its objective
    recomputed from that point (``objective @ x + offset``), the rows it breaks
    (:func:`row_violations`; ``tolerance``: the solve's integrality tolerance), the columns
    outside their bounds (by more than ``ROW_CHECK_ABS``) and the activity. The point is
    feasible when both are empty."""
    x = np.asarray(x, dtype=float).copy()
    whole = np.asarray(integer, dtype=bool)
    x[whole] = np.round(x[whole])
    rows, activity = row_violations(matrix, row_lower, row_upper, x, integer=whole,
                                    tolerance=tolerance)
    cols = np.flatnonzero((x < np.asarray(col_lower, dtype=float) - ROW_CHECK_ABS)
                          | (x > np.asarray(col_upper, dtype=float) + ROW_CHECK_ABS))
    value = float(np.asarray(objective, dtype=float) @ x + offset)
    return x, value, rows, cols, activity


def _broken_text(names: Any, rows: np.ndarray, cols: np.ndarray, activity: np.ndarray,
                 row_lower: np.ndarray, row_upper: np.ndarray, x: np.ndarray) -> str:
    """What a rounded incumbent breaks, in words: how many rows (and columns), the first named
    by ``names(row)`` with its activity and the side it misses (the model's units)."""
    parts = []
    if rows.size:
        r = int(rows[0])
        side, sign = ((row_upper[r], ">") if activity[r] > row_upper[r] else (row_lower[r], "<"))
        parts.append(f"{rows.size} row{'s' if rows.size > 1 else ''} (e.g. {names(r)}: "
                     f"{activity[r]:.10g} {sign} {side:.10g})")
    if cols.size:
        parts.append(f"{cols.size} column bound{'s' if cols.size > 1 else ''} (e.g. column "
                     f"{int(cols[0])} at {x[int(cols[0])]:.10g})")
    return " and ".join(parts)


def _rejected_text(broke: str, tolerance: float) -> str:
    """``info["incumbent_rejected"]``: why a MIP's incumbent is not reported."""
    return (f"HiGHS's incumbent, its integer variables rounded to whole numbers, breaks {broke}: "
            f"HiGHS accepts a variable within its integrality tolerance ({tolerance:g}) of a "
            f"whole number, which a large coefficient turns into room in a row; no incumbent is "
            f"reported (status 'error' where HiGHS said optimal), the bound stands")


def _fixed_integer_point(objective: np.ndarray, matrix: Any, row_lower: np.ndarray,
                         row_upper: np.ndarray, col_lower: np.ndarray, col_upper: np.ndarray,
                         integer: np.ndarray, x: np.ndarray, *, offset: float, sense: str,
                         time_limit: float | None) -> np.ndarray | None:
    """The continuous columns re-solved (an LP, HiGHS given ``time_limit`` s) with the integer
    columns fixed at ``x`` (whole numbers): the best point with those integers, or None when
    there is none (or it was not found in time)."""
    import highspy

    whole = np.asarray(integer, dtype=bool)
    lower, upper = np.array(col_lower, dtype=float), np.array(col_upper, dtype=float)
    lower[whole] = upper[whole] = x[whole]
    highs = new_highs()
    highs.passModel(highs_lp(objective, matrix, row_lower, row_upper, lower, upper,
                             offset=offset, sense=sense))
    if time_limit is not None:
        highs.setOptionValue("time_limit", max(float(time_limit), 0.1))
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    point = np.asarray(highs.getSolution().col_value, dtype=float).copy()
    point[whole] = x[whole]
    return point


def repaired_incumbent(objective: np.ndarray, matrix: Any, row_lower: np.ndarray,
                    row_upper: np.ndarray, col_lower: np.ndarray, col_upper: np.ndarray,
                    integer: np.ndarray, x: np.ndarray, *, offset: float, sense: str,
                    time_limit: float | None, names: Any, tolerance: float
                    ) -> tuple[np.ndarray | None, float, str | None, str | None]:
    """:func:`checked_incumbent`, and when the rounded point breaks a row of a model with free
    continuous columns, those re-solved with the integers fixed (:func:`_fixed_integer_point`;
    e.g. an expert's tokens served by a replica at y = 1e-9 move elsewhere). Returns the point,
    its objective, why it was rejected (None: it was not) and how it was repaired (None: it
    needed no repair). ``tolerance``: the solve's integrality tolerance."""
    args = (objective, matrix, row_lower, row_upper, col_lower, col_upper, integer)
    point, value, rows, cols, activity = checked_incumbent(*args, x, offset=offset,
                                                           tolerance=tolerance)
    if not rows.size and not cols.size:
        return point, value, None, None
    broke = _broken_text(names, rows, cols, activity, np.asarray(row_lower, dtype=float),
                         np.asarray(row_upper, dtype=float), point)
    free = ~np.asarray(integer, dtype=bool) & (np.asarray(col_lower) != np.asarray(col_upper))
    if not cols.size and free.any():
        fixed = _fixed_integer_point(*args, point, offset=offset, sense=sense,
                                     time_limit=time_limit)
        if fixed is not None:
            again, value, rows, cols, _ = checked_incumbent(*args, fixed, offset=offset,
                                                            tolerance=tolerance)
            if not rows.size and not cols.size:
                return again, value, None, (f"rounded, the integer variables broke {broke}; the "
                                            f"continuous variables were re-solved with them fixed")
    return None, math.nan, _rejected_text(broke, tolerance), None


def _checked_matrix_incumbent(mm: MatrixModel, values: np.ndarray, time_limit: float | None,
                              tolerance: float
                              ) -> tuple[np.ndarray | None, float, str | None, str | None]:
    """:func:`repaired_incumbent` of a matrix model's incumbent (objective in the model's units),
    rows named by their family and label."""
    def names(row: int) -> str:
        for name, fam in mm.rows.items():
            hit = np.flatnonzero(fam.positions == row)
            if hit.size:
                return f"{name}[{fam.index[int(hit[0])]}]"
        return f"row {row}"

    return repaired_incumbent(mm.objective, mm.matrix, mm.row_lower, mm.row_upper, mm.col_lower,
                           mm.col_upper, mm.integer, values, offset=mm.offset, sense=mm.sense,
                           time_limit=time_limit, names=names, tolerance=tolerance)


def _start_only(mm: MatrixModel, status: str, start: np.ndarray | None, *, prices: bool,
                decision: str, wall_s: float) -> Solution:
    """A MIP stopped before HiGHS ran (``status`` ``time_limit``: the budget was spent;
    ``interrupted``: Ctrl-C during its bound LP), its feasible ``start`` (None: none) as the
    incumbent: no bound, no prices, and ``info["highs_skipped"]`` says why."""
    values = None if start is None else np.asarray(start, dtype=float)
    value = math.nan if values is None else float(mm.objective @ values + mm.offset)
    info: dict[str, Any] = {"lp": False, "form": "matrix", "rows": mm.shape[0], "columns": mm.shape[1],
                            "nonzeros": int(mm.matrix.nnz), **mm.info, "bound_kind": "none",
                            "highs_skipped": status}
    if mm.bound_lp is not None:
        info["bound_lp_status"] = f"skipped: {status}"
    if prices:
        info["prices_skipped"] = INTEGER_PRICES_SKIPPED if _nothing_to_price(mm) else status
    solution = Solution(status=status, objective=value, bound=math.nan, gap=math.nan,
                        wall_s=wall_s, sense=mm.sense, relaxed=False, backend="highs",
                        decision=decision, info=info)
    if values is not None:
        solution.decisions = _column_values(mm, values)
    return solution


def _start_after_bound_lp(mm: MatrixModel, status: str, start: np.ndarray | None, lp_bound: float,
                          extra: dict[str, Any], *, prices: bool, decision: str, since: float
                          ) -> Solution:
    """:func:`_start_only` after the bound LP ran (``extra``: how it went): its value, when it
    was solved, is the bound."""
    solution = _start_only(mm, status, start, prices=prices, decision=decision,
                           wall_s=time.perf_counter() - since)
    if "bound_lp_s" in extra:  # it ran: not skipped
        solution.info.pop("bound_lp_status", None)
    solution.info.update(extra)
    if not math.isnan(lp_bound):
        solution.bound, solution.info["bound_kind"] = _better_bound(mm, math.nan, lp_bound)
        solution.gap = relative_gap(solution.objective, solution.bound, mm.sense)
    return solution


def _column_values(mm: MatrixModel, values: np.ndarray) -> dict[str, pd.Series | pd.DataFrame]:
    """The decisions of column values ``values``: the model's ``decisions``, else each column
    family as a labelled Series."""
    if mm.decisions is not None:
        return dict(mm.decisions(values))  # (a Mapping: a decoder may say dict[str, Series])
    return {name: pd.Series(_at(values, fam.positions, math.nan), index=fam.index, name=name)
            for name, fam in mm.columns.items()}


def _load_matrix(mm: MatrixModel, *, integer: bool) -> Any:
    """A silent ``highspy.Highs`` holding ``mm`` (its integrality only with ``integer``), passed
    as arrays: the model :func:`highs_lp` describes, without its per-element copies into a
    ``HighsLp`` (3.6 s of 4.3 s for 20M nonzeros, batch scheduling at n = 400)."""
    import highspy
    import scipy.sparse as sp

    a = sp.csc_matrix(mm.matrix)
    rows, cols = a.shape
    kinds = (np.asarray(mm.integer, dtype=np.int32) if integer and mm.integer is not None
             else np.zeros(cols, dtype=np.int32))
    sense = highspy.ObjSense.kMaximize if mm.sense == "max" else highspy.ObjSense.kMinimize
    highs = new_highs()
    status = highs.passModel(
        cols, rows, a.nnz, int(highspy.MatrixFormat.kColwise), int(sense), float(mm.offset),
        np.asarray(mm.objective, dtype=float),
        np.asarray(mm.col_lower, dtype=float), np.asarray(mm.col_upper, dtype=float),
        np.asarray(mm.row_lower, dtype=float), np.asarray(mm.row_upper, dtype=float),
        a.indptr.astype(np.int32, copy=False), a.indices.astype(np.int32, copy=False),
        a.data.astype(float, copy=False), kinds)
    if status == highspy.HighsStatus.kError:
        raise InvalidInstanceError(f"HiGHS refused the model ({rows} rows, {cols} columns)")
    if cols and not kinds.any():  # an LP: no integrality at all, as a HighsLp without one
        highs.changeColIntegrality(0, highspy.HighsVarType.kContinuous)
    return highs


def highs_lp(objective: np.ndarray, matrix: Any, row_lower: np.ndarray, row_upper: np.ndarray,
             col_lower: np.ndarray, col_upper: np.ndarray, *, integer: np.ndarray | None = None,
             offset: float = 0.0, sense: str = "min") -> Any:
    """A ``highspy.HighsLp`` from arrays (any scipy.sparse ``matrix``; +-inf for no bound;
    ``integer`` a bool mask, None for an LP): the one place the matrix paths load HiGHS."""
    import highspy
    import scipy.sparse as sp

    a = sp.csc_matrix(matrix)
    lp = highspy.HighsLp()
    lp.num_row_, lp.num_col_ = a.shape
    lp.sense_ = highspy.ObjSense.kMaximize if sense == "max" else highspy.ObjSense.kMinimize
    lp.offset_ = float(offset)
    lp.col_cost_ = np.asarray(objective, dtype=float)
    lp.col_lower_ = np.asarray(col_lower, dtype=float)
    lp.col_upper_ = np.asarray(col_upper, dtype=float)
    lp.row_lower_ = np.asarray(row_lower, dtype=float)
    lp.row_upper_ = np.asarray(row_upper, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data.astype(float, copy=False)
    if integer is not None and np.any(integer):
        kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
        lp.integrality_ = [kinds[flag] for flag in np.asarray(integer, dtype=bool).tolist()]
    return lp


INTERRUPT_NONZEROS = 100_000


def _run_interruptible(highs: Any, poll: bool = True) -> bool:
    """Run HiGHS in a thread of its own; Ctrl-C cancels the solve (keeping the incumbent) instead
    of waiting for it to end, at HiGHS's next interrupt poll (none during a MIP's presolve,
    which runs to its end first). Returns whether the run was interrupted. However the wait ends (a
    Ctrl-C as the thread starts, a second one, any error), the solve is cancelled and joined
    before this returns or raises: no solve is left running. ``poll=False``: HiGHS does not poll
    for the cancel (no callbacks), so a Ctrl-C is noted and the (short) solve finishes."""
    if threading.current_thread() is not threading.main_thread():
        highs.run()
        return False
    highs.HandleUserInterrupt = poll  # HiGHS polls cancelSolve() through its interrupt callbacks
    interrupted = False
    done = threading.Event()  # waited on, not Thread.join: an interrupted join can leave the
    # thread looking stopped while it runs (Python < 3.12)

    def run() -> None:
        try:
            highs.run()
        finally:
            done.set()

    worker = threading.Thread(target=run, name="highs", daemon=True)
    try:
        try:
            with _sigint_blocked():  # the thread inherits the mask: Ctrl-C stays with us
                worker.start()
        except KeyboardInterrupt:  # delivered as the mask is lifted
            interrupted = True
            highs.cancelSolve()
        while not done.is_set():
            try:
                done.wait(0.1)
            except KeyboardInterrupt:
                interrupted = True
                highs.cancelSolve()
    finally:
        if worker.ident is not None and not done.is_set():
            highs.cancelSolve()
            done.wait()
    return interrupted


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back from this thread (and threads it starts) inside the block (POSIX)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _matrix_prices(mm: MatrixModel, row_dual: np.ndarray, col_dual: np.ndarray,
                   fixed: np.ndarray | None = None, x: np.ndarray | None = None
                   ) -> dict[str, pd.Series]:
    """Prices of the row and bound-row families; ``fixed`` marks the integer columns fixed at the
    incumbent ``x``: their bound rows where they sit on the bound, and the rows with no other
    column left free that bind at ``x``, are priced NaN (no price: nothing in them can move, as
    on the Pyomo path; module docstring); such rows with slack keep their 0."""
    out: dict[str, pd.Series] = {}
    frozen = on_bound = None
    if fixed is not None:
        free = (np.asarray(fixed) == 0) & (np.asarray(mm.col_lower) != np.asarray(mm.col_upper))
        frozen = _rows_without_free_column(mm.matrix, free)
        upper = np.asarray(mm.col_upper, dtype=float)
        on_bound = np.ones(len(upper), dtype=bool)
        if x is not None:
            frozen &= _binding_rows(mm.matrix, x, np.asarray(mm.row_lower, dtype=float),
                                    np.asarray(mm.row_upper, dtype=float))
            with np.errstate(invalid="ignore"):
                on_bound = np.isfinite(upper) & (np.abs(np.asarray(x, dtype=float) - upper)
                                                 <= 1e-7 * np.maximum(1.0, np.abs(upper)))
    for name, fam in mm.rows.items():
        rows = fam.positions
        present = rows >= 0
        dual = _at(row_dual, rows, 0.0)
        lower, upper = _at(mm.row_lower, rows, -np.inf), _at(mm.row_upper, rows, np.inf)
        equality = present & (lower == upper)
        ranged_le = (dual < 0) == (mm.sense == "min")  # a ranged row: the side the dual binds
        less = ~equality & (np.isinf(lower) | (np.isfinite(upper) & ranged_le))
        price = np.where(less, normalise_dual(dual, sense=mm.sense, row="le", convention="pyomo"),
                         normalise_dual(dual, sense=mm.sense, row="ge", convention="pyomo"))
        price = np.where(equality, dual, np.where(present, price, 0.0))
        if frozen is not None:  # no free column in the price LP: no price (module docstring)
            price = np.where(present & _at(frozen.astype(float), rows, 0.0).astype(bool),
                             np.nan, price)
        out[name] = clean_prices(pd.Series(price, index=fam.index, name=name),
                                 inequality=not equality.any())
    for name, fam in mm.bound_rows.items():
        reduced = _at(col_dual, fam.positions, 0.0)
        dual = np.maximum(normalise_dual(reduced, sense=mm.sense, row="le", convention="pyomo"),
                          0.0)
        if fixed is not None:  # a fixed integer column: its reduced cost prices the fixing, not
            held = _at(fixed, fam.positions, 0.0) > 0  # the bound; on its bound nothing can
            dual[held] = 0.0  # move (no price), below it the bound is slack (0)
            dual[held & _at(on_bound.astype(float), fam.positions, 0.0).astype(bool)] = np.nan
        out[name] = clean_prices(pd.Series(dual, index=fam.index, name=name), inequality=True)
    return out


def give_seconds(highs: Any, left: float | None) -> None:
    """Let the next ``run()`` of ``highs`` (a ``highspy.Highs``) go on for ``left`` more
    seconds (None or infinity: no limit). HiGHS's run clock counts on across the runs of one
    object, ``clearSolver`` or not (HiGHS 1.16: an object that had run 19 s, given a limit of
    9.5 s, stopped at once), and its ``time_limit`` is compared with that total: the limit set
    is the run time so far plus ``left``."""
    if left is None or not math.isfinite(left):
        highs.setOptionValue("time_limit", math.inf)
    else:
        highs.setOptionValue("time_limit", highs.getRunTime() + max(float(left), 0.0))


def _fixed_matrix_prices(mm: MatrixModel, values: np.ndarray, highs: Any,
                         time_limit: float | None = None) -> tuple[dict[str, pd.Series], str | None]:
    """Prices of a MIP: duals of the LP with the integer columns fixed at the incumbent, and why
    there are none (None when there are). Solved on ``highs``, the object that holds the MIP
    (no second load of the model): its solver state cleared, the integer columns made
    continuous and fixed, its options reset (as a fresh object's), ``time_limit`` seconds more."""
    import highspy

    fixed = np.round(values)
    columns = np.flatnonzero(mm.integer).astype(np.int32)
    highs.clearSolver()
    highs.resetOptions()
    highs.setOptionValue("output_flag", False)
    if time_limit is not None:  # HiGHS's clock counts on from the MIP's run (clearSolver keeps it)
        give_seconds(highs, time_limit)
    highs.changeColsIntegrality(len(columns), columns, np.zeros(len(columns), dtype=np.uint8))
    highs.changeColsBounds(len(columns), columns, fixed[columns], fixed[columns])
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        return {}, "time_limit" if status == highspy.HighsModelStatus.kTimeLimit else \
            f"the fixed-integer LP ended {highs.modelStatusToString(status)!r}"
    sol = highs.getSolution()
    return _matrix_prices(mm, np.asarray(sol.row_dual), np.asarray(sol.col_dual),
                          fixed=mm.integer.astype(float), x=np.asarray(sol.col_value)), None


def _at(values: np.ndarray, positions: np.ndarray, missing: float) -> np.ndarray:
    """``values[positions]`` with ``missing`` where a position is -1."""
    out = np.full(len(positions), missing, dtype=float)
    present = positions >= 0
    out[present] = np.asarray(values, dtype=float)[positions[present]]
    return out


# ---------------------------------------------------------------------------------------------
# CVXPY + HiGHS
# ---------------------------------------------------------------------------------------------
def solve_cvxpy(
    cvx: CvxpyModel, *, time_limit: float | None = None, decision: str = ""
) -> Solution:
    """Solve a labelled CVXPY LP with HiGHS; prices normalised like the Pyomo path.

    The solve holds :data:`PROCESS_OUTPUT_LOCK` (CVXPY's HiGHS interface prints HiGHS's banner,
    silenced by redirecting the process's stdout), so CVXPY and Pyomo solves in several threads
    run one at a time and give the serial answers (``tests/test_threads_cvxpy.py``); the wait
    counts against ``time_limit`` (seconds), and a call whose limit passes while it waits returns
    ``time_limit`` without a solution (``info["waited"]``), as a Pyomo solve does."""
    import cvxpy as cp

    start = time.perf_counter()
    if not PROCESS_OUTPUT_LOCK.acquire(timeout=_lock_wait(time_limit)):
        return _waited(sense=cvx.sense, relaxed=True, backend="cvxpy", decision=decision,
                       wall_s=time.perf_counter() - start,
                       info={"lp": True, "prices_skipped": "time_limit"})
    opts: dict[str, Any] = {}
    try:
        if time_limit is not None:  # what the wait left
            opts["time_limit"] = max(float(time_limit) - (time.perf_counter() - start), 0.0)
        with _c_stdout_silenced(), warnings.catch_warnings():  # CVXPY's HiGHS interface prints
            # the banner even when not verbose, and warns "may be inaccurate" at a time limit
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            cvx.problem.solve(solver="HIGHS", verbose=False, **opts)
    except (cp.error.SolverError, ValueError) as exc:  # the solver failed (not installed, crashed,
        # or ended in a status CVXPY cannot unpack: "Cannot unpack invalid solution"): not a proof
        raise SolverFailedError(f"the solver failed on {_the_model(decision, 'LP')} (CVXPY, HiGHS), "
                                f"which says nothing about its feasibility: {exc}") from exc
    finally:
        PROCESS_OUTPUT_LOCK.release()
    status = cvx.problem.status
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleError(f"{_the_model(decision)} is infeasible")
    if status in (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE):
        value, mapped = (-math.inf if cvx.sense == "min" else math.inf), "unbounded"
    elif status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        value, mapped = float(cvx.problem.value), "optimal"
    elif status == cp.USER_LIMIT:  # HiGHS stopped at time_limit: CVXPY keeps no iterate or bound
        value, mapped = math.nan, "time_limit"
    else:
        value, mapped = math.nan, "error"
    solution = Solution(
        status=mapped,
        objective=value,
        bound=value,
        gap=0.0 if mapped == "optimal" else math.nan,
        wall_s=0.0,
        sense=cvx.sense,
        relaxed=True,
        backend="cvxpy",
        decision=decision,
        info={"lp": True},
    )
    if mapped == "time_limit":
        solution.info["prices_skipped"] = "time_limit"
    if mapped == "optimal":
        for name, (con, index) in cvx.constraints.items():
            dual = np.asarray(con.dual_value, dtype=float).ravel()
            row = "eq" if isinstance(con, cp.constraints.Equality | cp.constraints.Zero) else "le"
            price = normalise_dual(dual, sense=cvx.sense, row=row, convention="cvxpy")
            series = pd.Series(price, index=index, name=name)
            solution.prices[name] = clean_prices(series, inequality=row != "eq")
        for name, (var, index) in cvx.variables.items():
            values = np.asarray(var.value, dtype=float).ravel()
            solution.decisions[name] = pd.Series(values, index=index, name=name)
        if cvx.decisions is not None:
            solution.decisions = cvx.decisions(solution.decisions)
    solution.info["bound_kind"] = _bound_kind(solution)
    solution.wall_s = time.perf_counter() - start
    return _in_reported_units(solution, cvx)
