"""Typing a user meets without casts, checked with ``mypy --strict`` from outside the tree.

Field report: ``message.data_deserialized()["id"]`` needed a cast (it returned ``object``),
``contextlib.aclosing(aiter(consumer))`` did not type-check (``__aiter__`` was typed as a plain
``AsyncIterator``, which has no ``aclose``), and ``ConsumeHandlerError``, which an error handler
receives, could not be imported from any frontend. ``typed/consumer_typing.py`` writes each of
these the way a user would.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.typecheck import mypy_strict_outside

TYPED = Path(__file__).resolve().parent / "typed"


def test_consumer_typing_needs_no_casts(tmp_path: Path) -> None:
    mypy_strict_outside(TYPED, tmp_path)
