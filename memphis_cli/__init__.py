"""memphis_cli: the ``memphis`` command, a shell tool for Memphis brokers.

Built only on the public API of :mod:`memphis_sync` (plus nats-py for what the Memphis
protocol cannot ask: station listing and details, and memphis_broker's DLS admin functions)::

    memphis station create orders --partitions 3
    echo hello | memphis produce orders --headers source=shell
    memphis consume orders --consumer cli --count 1 --json
    memphis bench produce --count 100000 --size 512

``main(argv)`` runs it in-process and returns the exit code.
"""

from __future__ import annotations

from ._cli import build_parser, main

__all__ = ["build_parser", "main"]
