"""Every notebook in notebooks/ executes top to bottom without error, and the outputs stored in
it (what a reader sees on GitHub) are the ones a fresh execution prints.

The text of every code cell's outputs (streams, and the plain-text form of results and
displays; images are not compared) must equal a fresh run's, except in cells tagged:

- ``varies``: cells that print timings (no other cell may print one);
- ``needs-traces``: cells that read a public trace from ``../shared/traces`` (or
  ``$SERVOPT_TRACES``); compared only where every trace they name is found, since without the
  folder they print that it is absent.

The re-execution is marked ``slow`` (two minutes for the six notebooks, a sixth of the default
run): ``python -m pytest -m slow`` runs it, and so does CI after the default run. After a change
that moves a figure or edits a docstring a notebook prints, store the fresh outputs with
``nice -n 10 python tests/test_notebooks.py [NAME ...]`` (all notebooks without a name), read
the diff, and fix any prose the new figures contradict.

Runs the notebooks of notebooks/ from the source tree (a clone or the unpacked sdist, as README
"Tests and CI" says); an installed wheel does not carry them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIMEOUT_S = 180
TRACE_NAMES = ("azure2023_code.csv", "mooncake_synthetic.jsonl")


def execute(path: Path) -> Any:
    """A fresh execution of the notebook at ``path`` (nbformat node), run in its folder."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                                     record_timing=False,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return notebook


def text_outputs(cell: Any) -> list[tuple[str, ...]]:
    """What a reader reads in a code cell's outputs: each stream's text, each result's or
    display's plain text (a figure's is its size and axes), each error's name and value.
    Consecutive pieces of one stream are joined: where the kernel cuts a stream depends on
    timing, not on what was printed."""
    out: list[tuple[str, ...]] = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            if out and out[-1][0] == "stream" and out[-1][1] == output["name"]:
                out[-1] = ("stream", output["name"], out[-1][2] + output["text"])
            else:
                out.append(("stream", output["name"], output["text"]))
        elif kind in ("execute_result", "display_data"):
            out.append((kind, output.get("data", {}).get("text/plain", "")))
        elif kind == "error":
            out.append(("error", output["ename"], output["evalue"]))
    return out


def tags(cell: Any) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def traces_present(source: str) -> bool:
    """Whether every shared trace the cell's source names is found on this machine."""
    from servopt.instances import traces

    named = [name for name in TRACE_NAMES if name in source]
    return all(traces.shared_trace(name) is not None for name in named)


def _first_difference(a: str, b: str) -> str:
    k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"stored ...{a[max(0, k - 60):k + 60]!r}... fresh ...{b[max(0, k - 60):k + 60]!r}..."


@pytest.mark.slow  # two minutes for the six (a kernel each); CI runs it (.ci/run's second step)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_current(path):
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    import nbformat

    stored = nbformat.read(path, as_version=4)
    fresh = execute(path)
    errors = [out for cell in fresh.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    assert len(stored.cells) == len(fresh.cells)
    stale = []
    for k, (old, new) in enumerate(zip(stored.cells, fresh.cells, strict=True)):
        if old.cell_type != "code" or "varies" in tags(old):
            continue
        if "needs-traces" in tags(old) and not traces_present(old.source):
            continue
        if text_outputs(old) != text_outputs(new):
            a = "\n".join(map(repr, text_outputs(old)))
            b = "\n".join(map(repr, text_outputs(new)))
            stale.append(f"cell {k}: {_first_difference(a, b)}")
    assert not stale, (f"{path.name}: stored outputs differ from a fresh run (store the fresh "
                       f"ones with `python tests/test_notebooks.py {path.stem}` and read the "
                       "diff):\n" + "\n".join(stale))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_timings_only_in_varies_cells(path):
    """A cell that prints a wall-clock figure is tagged ``varies`` (else its stored output would
    go stale on every run); checked on the stored outputs, by the usual spellings of a timing."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(path, as_version=4)
    timed = [k for k, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and "varies" not in tags(cell)
             and any(re.search(r"wall_s|time=\d|plan_ms|router_us|solved in", "".join(t[1:]))
                     for t in text_outputs(cell))]
    assert not timed, f"{path.name}: cells {timed} print a timing but are not tagged varies"


def store(paths: list[Path]) -> None:
    """Execute each notebook and write it back with its fresh outputs."""
    import nbformat

    for path in paths:
        notebook = execute(path)
        nbformat.write(notebook, path)
        print(f"stored {path.name}")


if __name__ == "__main__":
    names = sys.argv[1:]
    store([NOTEBOOK_DIR / f"{n.removesuffix('.ipynb')}.ipynb" for n in names] if names else NOTEBOOKS)
