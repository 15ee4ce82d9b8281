"""``mypy --strict`` on files outside the repository, as a user's program is checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def mypy_strict(folder: Path, *files: str) -> str:
    """Type-check ``files`` in ``folder`` (its own cache); return the output, fail on an error."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(folder / ".cache"), *files],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def mypy_strict_outside(source: Path, tmp_path: Path) -> None:
    """Copy ``source``'s Python files to ``tmp_path`` (so the repository is not on the path) and
    assert ``mypy --strict`` passes on them there."""
    files = sorted(p.name for p in source.glob("*.py"))
    assert files, f"no Python files in {source}"
    for name in files:
        shutil.copy(source / name, tmp_path / name)
    assert "Success" in mypy_strict(tmp_path, *files)
