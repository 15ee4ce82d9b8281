"""``mypy --strict`` on files outside the repository, as a user's program is checked."""

from __future__ import annotations

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
