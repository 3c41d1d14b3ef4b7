"""A HiGHS object whose MIP report is replaced: it says it stopped by its time limit after
``nodes`` nodes with dual bound ``dual`` (what a loaded machine makes hard to reproduce)."""

from __future__ import annotations

from typing import Any

from servopt.solvers import exact


def stop_the_nth_highs(monkeypatch: Any, n: int, nodes: int, dual: float) -> list:
    """Patch ``exact.new_highs`` so that the n-th object made (1-based) reports a time-limit stop
    with ``nodes`` nodes explored and dual bound ``dual``; returns the list of objects made."""
    import highspy

    real = exact.new_highs
    made: list = []

    class Stopped:
        def __init__(self, inner: Any) -> None:
            object.__setattr__(self, "inner", inner)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def __setattr__(self, name: str, value: Any) -> None:
            setattr(self.inner, name, value)

        def getModelStatus(self) -> Any:
            return highspy.HighsModelStatus.kTimeLimit

        def getInfo(self) -> Any:
            info = self.inner.getInfo()
            info.mip_node_count, info.mip_dual_bound = nodes, dual
            return info

    def made_one() -> Any:
        made.append(real())
        return Stopped(made[-1]) if len(made) == n else made[-1]

    monkeypatch.setattr(exact, "new_highs", made_one)
    return made
