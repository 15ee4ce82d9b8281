"""Type checkers see the installed package: ``mypy --strict`` on the examples, outside the repo.

Field report: after ``pip install -e .``, ``mypy --strict app.py`` outside the source tree said
``Cannot find implementation or library stub for module named "memphis_sync"``: setuptools'
editable install is an import hook type checkers cannot follow. The build backend is now
hatchling, whose editable install is a plain ``.pth`` path entry. This test copies the examples
to a temporary folder (so the repository is not on the path) and type-checks them there.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.typecheck import mypy_strict_outside

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_type_check_from_outside_the_source_tree(tmp_path: Path) -> None:
    mypy_strict_outside(EXAMPLES, tmp_path)
