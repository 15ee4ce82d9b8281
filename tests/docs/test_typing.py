"""Typing a user meets without casts, checked with ``mypy --strict`` from outside the tree.

Field report: ``message.data_deserialized()["id"]`` needed a cast (it returned ``object``),
``contextlib.aclosing(aiter(consumer))`` did not type-check (``__aiter__`` was typed as a plain
``AsyncIterator``, which has no ``aclose``), and ``ConsumeHandlerError``, which an error handler
receives, could not be imported from any frontend. ``typed/consumer_typing.py`` writes each of
these the way a user would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TYPED = Path(__file__).resolve().parent / "typed"


def test_consumer_typing_needs_no_casts(tmp_path: Path) -> None:
    files = sorted(p.name for p in TYPED.glob("*.py"))
    assert files
    for name in files:
        shutil.copy(TYPED / name, tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".cache"), *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
