"""Type checkers see the installed package: ``mypy --strict`` on the examples, outside the repo.

Field report: after ``pip install -e .``, ``mypy --strict app.py`` outside the source tree said
``Cannot find implementation or library stub for module named "memphis_sync"``: setuptools'
editable install is an import hook type checkers cannot follow. The build backend is now
hatchling, whose editable install is a plain ``.pth`` path entry. This test copies the examples
to a temporary folder (so the repository is not on the path) and type-checks them there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.typecheck import mypy_strict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("folder", [".", "asyncio", "trio"])
def test_examples_type_check_from_outside_the_source_tree(tmp_path: Path, folder: str) -> None:
    type_check_outside(EXAMPLES / folder, tmp_path)


def type_check_outside(source: Path, tmp_path: Path) -> None:
    """Copy ``source``'s Python files to ``tmp_path`` and assert ``mypy --strict`` passes there."""
    files = sorted(p.name for p in source.glob("*.py"))
    assert files, f"no examples in {source}"
    for name in files:
        shutil.copy(source / name, tmp_path / name)
    assert "Success" in mypy_strict(tmp_path, *files)
