"""The tests read the library instances where the package keeps them
(``servopt.instances.library.LIBRARY_DIR``), not from ``instances/library`` beside the tests'
folder: audit R54 ran the tests copied beside an installed wheel, where that folder does not
exist, and 18 library tests failed or errored while the package's own copy was there (R54 F3)."""

from __future__ import annotations

import re
from pathlib import Path

from servopt.instances import library

TESTS = Path(__file__).resolve().parent
# the one test that means the source folders (pyproject's package list must name each of them),
# and this file, whose examples below are the old forms
SOURCE_FOLDERS = {"test_cli_new_user.py", Path(__file__).name}
BESIDE = re.compile(r'/\s*"instances"\s*/\s*"library"|"instances/library')


def test_no_test_builds_the_library_path_from_its_own_folder():
    beside = sorted(path.name for path in TESTS.glob("*.py")
                    if BESIDE.search(path.read_text()) and path.name not in SOURCE_FOLDERS)
    assert beside == [], f"read the library through LIBRARY_DIR in {beside}"


def test_the_pattern_finds_the_old_forms():
    # (else the test above would pass on anything)
    assert BESIDE.search('LIBRARY = Path(__file__).resolve().parents[1] / "instances" / "library"')
    assert BESIDE.search('ROOT / "instances/library/caching"')
    assert not BESIDE.search("from servopt.instances.library import LIBRARY_DIR")


def test_the_package_keeps_the_library_instances():
    # what the tests read instead: the 15 instances of the manifest, one folder per decision
    files = sorted(p.relative_to(library.LIBRARY_DIR).as_posix()
                   for p in library.LIBRARY_DIR.glob("*/*.json"))
    assert len(files) == 15 and (library.LIBRARY_DIR / "manifest.json").is_file()
    assert {f.split("/")[0] for f in files} == {"batch_scheduling", "caching", "capacity",
                                                 "decode_routing", "expert_placement"}
