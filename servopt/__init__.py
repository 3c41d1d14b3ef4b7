"""servopt: mathematical optimization for the control decisions inside LLM serving systems.

>>> import servopt
>>> from servopt.instances import caching
>>> solution = servopt.solve(caching.generate(seed=0), relax=True)   # doctest: +SKIP
>>> servopt.gap_table(caching.generate(seed=0))                       # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

from servopt.core import (
    DECISIONS,
    InfeasibleError,
    Instance,
    InvalidInstanceError,
    Solution,
)

if TYPE_CHECKING:
    import pandas as pd

__version__ = "0.1.0"

# In a source checkout the layers live beside this folder (instances/, models/, ...); an installed
# copy has them inside it. Let ``import servopt.instances`` work in both.
_root = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "instances").is_dir() and (_root / "instances").is_dir():
    __path__.append(str(_root))


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
    """Solve ``instance`` exactly (or its LP relaxation) with HiGHS.

    relax : solve the LP relaxation instead of the integer model.
    time_limit : seconds for the whole call (None or infinity: no limit); on expiry the
        incumbent and the proved bound come back with status ``time_limit``, not an error.
    mip_gap : relative MIP gap in [0, 1) at which HiGHS stops (``solution.gap`` says what is left).
    backend : ``highs`` (the model's matrix form where it has one, else its Pyomo model),
        ``pyomo`` or ``cvxpy`` (an LP; for an integer model, its relaxation).
    prices : compute constraint prices (``solution.prices``; for a MIP, the LP with the integers
        fixed).
    options : passed to the decision model's ``build`` (e.g. caching's ``form``).

    Returns a :class:`Solution` (objective and bound in the model's units; ``status`` one of
    ``optimal``, ``time_limit``, ``interrupted`` (Ctrl-C, incumbent kept), ``unbounded``,
    ``error``). Raises :class:`InvalidInstanceError` for something that is not an instance or a
    bad option (text, a negative time limit, a gap outside [0, 1), an unknown backend or build
    option), and :class:`InfeasibleError` when the model has no feasible solution (with the
    decision's explanation where it has one). The details, including what the time limit covers:
    :func:`servopt.solvers.exact.solve`.

    Threads: calls from several threads give the serial answers on the ``highs`` matrix path
    (a HiGHS object per call), and on the Pyomo and CVXPY paths (``backend="pyomo"`` or
    ``"cvxpy"``, or a model without a matrix form), whose solves take turns (they redirect the
    process's stdout while HiGHS runs), so they gain nothing from threads. Ctrl-C is caught
    only in the main thread. A Pyomo or CVXPY solve's time limit counts its wait for another
    thread's: when it passes while waiting, the status is ``time_limit`` with no incumbent.
    """
    from servopt.solvers import exact

    return exact.solve(instance, relax=relax, time_limit=time_limit, mip_gap=mip_gap,
                       backend=backend, prices=prices, **options)


def gap_table(instance: Instance, methods: Any = None, *, bound_kw: dict[str, Any] | None = None,
              **evaluate_kw: Any) -> pd.DataFrame:
    """Every method's realised cost against the best bound, one row per method; see
    :func:`servopt.benchmarks.gap_table`. ``evaluate_kw`` go to the decision's ``evaluate``,
    ``bound_kw`` to its ``bound``; a keyword either does not take is an InvalidInstanceError
    that lists the ones it does.

    The bound's ``time_limit`` (seconds, ``bound_kw={"time_limit": t}``) defaults, by decision:

    - expert_placement: None, no placement MILP (the combinatorial makespan bound only); with
      a limit each layer's MILP (up to ``milp_max_binaries``) is solved, sharing it.
    - decode_routing: 60 s for the hindsight IP (where it applies; else a closed-form bound).
    - batch_scheduling: 600 s for whichever bound ``method`` solves (the default ``auto``: the
      LP relaxation, or the closed-form area bound, which takes no solver time).
    - capacity: none; its bound is a simulation (kind ``simulated``) and takes no time limit.
    - caching: None, the offline LP runs to its end (a limit reached gives no bound, NaN).
    """
    from servopt.benchmarks import gap_table as _gap_table

    return _gap_table(instance, methods, bound_kw=bound_kw, **evaluate_kw)


def load(path: str | _Path) -> Instance:
    """Load an instance file of any decision, or a library instance by name.

    A file is JSON ``{"decision": ..., "schema_version": ..., "fields": {...}}`` with the fields
    of that decision's ``Instance`` (arrays as lists or ``{"ndarray": [...], "dtype": ...}``,
    tables as ``{"frame": {column: [...]}}``; the format is in :mod:`servopt.core.instance`);
    JSON text itself is accepted too. A name that is no file but names an instance of the
    library (``servopt library list``, e.g. ``bs_offline_15``) loads that instance, checked
    against its recorded sha256, as ``servopt solve NAME`` does. Returns the decision's own
    ``Instance`` subclass, validated; raises ``InvalidInstanceError``.
    """
    from servopt.instances import load as _load

    if isinstance(path, _Path):  # a Path names a file or a library instance, never JSON text
        path = str(path) if not _is_file(str(path)) and str(path) == path.name else path
    if isinstance(path, str) and not path.lstrip().startswith(("{", "[")) \
            and not path.endswith((".json", ".gz")) and not _is_file(path):
        from servopt.instances import library

        manifest = library.read_manifest()
        if path in manifest:
            return library.load(path)
        import difflib

        close = difflib.get_close_matches(path, list(manifest), n=3)
        if close:
            raise InvalidInstanceError(f"{path}: neither a file nor the name of a library instance "
                                       f"(did you mean {', '.join(close)}? `servopt library list` "
                                       "lists them)")
    return _load(path)


def _is_file(path: str) -> bool:
    try:
        return _Path(path).exists()
    except (OSError, ValueError):  # a name too long for the file system: not a file
        return False


__all__ = [
    "DECISIONS",
    "InfeasibleError",
    "Instance",
    "InvalidInstanceError",
    "Solution",
    "__version__",
    "gap_table",
    "load",
    "solve",
]
