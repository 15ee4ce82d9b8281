"""Bounded waits for a condition: the one way a test waits (never a sleep of a guessed length).

:func:`wait_until` polls a plain predicate from blocking code; :func:`poll` awaits an async one
inside a running asyncio loop (the broker tests and nats-py observers). Both return the first
truthy value and raise ``AssertionError`` naming what never happened once the bound is reached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["poll", "wait_until"]

T = TypeVar("T")

#: First pause between two checks, in seconds; it doubles up to :data:`_MAX_DELAY`.
_FIRST_DELAY = 0.005
_MAX_DELAY = 0.1


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Call ``predicate`` until it returns something truthy, pausing 5 ms doubling to 100 ms.

    Args:
        predicate: checked at once, then after each pause.
        timeout: the bound in seconds.
        what: named in the error.

    Returns:
        The first truthy value.

    Raises:
        AssertionError: ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, _MAX_DELAY)


async def poll(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float | None = None,
) -> T:
    """Async :func:`wait_until`: await ``predicate()`` until it returns something truthy.

    Args:
        predicate: awaited at once, then after each pause.
        timeout: the bound in seconds.
        what: named in the error.
        interval: a fixed pause in seconds (0: check again at once, for a predicate that waits
            by itself, such as one that fetches with a timeout); ``None`` pauses 5 ms doubling
            to 100 ms.

    Returns:
        The first truthy value.

    Raises:
        AssertionError: ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY if interval is None else interval
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(delay)
        if interval is None:
            delay = min(delay * 2, _MAX_DELAY)
