"""Helpers shared by several test files (not tests themselves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servopt.solvers import batch_scheduling as rules


def marked_line(path: str | Path, tag: str) -> tuple[int, str]:
    """The number and code of the line of ``path`` that ends with the marker comment
    ``# writes: <tag>`` (the code as an error message quotes it: the whole line, stripped)."""
    lines = Path(path).read_text().splitlines()
    found = [(k + 1, text.strip()) for k, text in enumerate(lines)
             if text.rstrip().endswith(f"# writes: {tag}")]
    assert len(found) == 1, found
    return found[0]


class Replay(rules.Policy):
    """Admit each request at its planned round: the batch simulator scores a schedule."""

    name = "replay"

    def __init__(self, start: np.ndarray) -> None:
        self.start = start

    def admit(self, state: rules.State) -> np.ndarray:
        return state.waiting[self.start[state.waiting] <= state.t]
