"""README "Tests and CI" says where each public trace the code reads comes from: its upstream
repository and file (the project ships neither trace, and nothing said where a wheel or sdist
user finds them: audit R54 F3), and how the tests must be run (from the source tree, with an
editable install).

Reads README.md from the source tree (a clone or the unpacked sdist, as README "Tests and CI"
says); an installed wheel does not carry it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
# the upstream of each trace, from the traces' own notes (shared/traces/README.md)
UPSTREAM = {
    "azure2023_code.csv": ("Azure/AzurePublicDataset", "data/AzureLLMInferenceTrace_code.csv"),
    "mooncake_synthetic.jsonl": ("kvcache-ai/Mooncake",
                                 "FAST25-release/traces/synthetic_trace.jsonl"),
}


def _tests_and_ci() -> str:
    text = README.read_text().split("\n## Tests and CI\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(text.split())  # (a name may be wrapped at any space)


def _shared_traces_read() -> set[str]:
    """The names the package looks up as shared traces (``shared_trace("NAME")``, a ``TRACE``
    constant, a registered case's ``"trace": "NAME"``), from its source where it is installed."""
    names: set[str] = set()
    for package in ("servopt.instances", "servopt.benchmarks", "servopt.benchmarks.cases"):
        for path in Path(importlib.import_module(package).__file__).parent.glob("*.py"):
            text = path.read_text()
            names |= set(re.findall(r'shared_trace\("([^"]+)"\)', text))
            names |= set(re.findall(r'^TRACE = "([^"]+)"', text, flags=re.M))
            names |= set(re.findall(r'"trace": "([^"]+)"', text))
    return names


def test_every_shared_trace_the_code_reads_has_a_known_upstream():
    assert _shared_traces_read() == set(UPSTREAM)


def test_the_readme_names_each_traces_upstream_repository_and_file():
    section = _tests_and_ci()
    for name, (repository, upstream) in UPSTREAM.items():
        sentence = next((s for s in section.split(". ") if f"`{name}`" in s), "")
        assert repository in sentence and f"`{upstream}`" in sentence, name
    assert "`$SERVOPT_TRACES`" in section and "`shared/traces/` beside the checkout" in section


def test_the_readme_says_the_tests_need_the_source_tree_and_an_editable_install():
    section = _tests_and_ci()
    assert "source tree" in section and "unpacked sdist" in section
    assert '`pip install -e ".[test]"`' in section
