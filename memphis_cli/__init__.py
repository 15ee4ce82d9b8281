"""memphis_cli: the ``memphis`` command, a shell tool for Memphis brokers.

Built only on the public API of :mod:`memphis_sync` (plus nats-py for memphis_broker's DLS
admin functions, which no client protocol request reaches)::

    memphis station create orders --partitions 3
    echo hello | memphis produce orders --headers source=shell
    memphis consume orders --consumer cli --count 1 --json
    memphis bench produce --count 100000 --size 512

``main(argv)`` runs it in-process and returns the exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``memphis`` command with ``argv`` (default: ``sys.argv[1:]``); the exit code.

    The command's libraries (rich, nats-py: the ``cli`` extra) load here, so that a venv
    without them (``make demo`` installs only the broker) gets one line, not a traceback.
    """
    try:
        from ._cli import main as run  # noqa: PLC0415 - deliberately lazy, see above
    except ImportError as exc:
        print(
            f"memphis: the command needs {exc.name!r}: pip install 'memphis-sansio[cli]'",
            file=sys.stderr,
        )
        return 1
    return run(argv)
