"""The seam between the shared async code and one event loop (trio or asyncio).

Everything in ``_memphis_async`` is written against these protocols; ``memphis_trio`` and
``memphis_asyncio`` each implement them in about a hundred lines. The seam is deliberately
small (httpcore's ``NetworkBackend`` is the model): a byte stream, an event, a clock, a way to
wait for an event until a deadline, task spawning, and a shielded cleanup. The stream pushes what
it reads into the driver's ``feed`` (asyncio: from ``Protocol.data_received``, with no task in
between), which feeds the sans-IO core at once (docs/sansio.md §6). Whatever differs in
*how* the two libraries cancel lives behind it: trio cancellation is level-triggered (every
checkpoint inside a cancelled scope raises again, so cleanup needs a shielded scope), asyncio's
is edge-triggered (one ``CancelledError`` per ``cancel()``, so cleanup may await freely but has
to be protected from a second cancel by running in a task of its own).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["Backend", "Event", "Spawner", "Stream", "Task"]


class Stream(Protocol):
    """A connected byte stream. Every transport failure surfaces as ``OSError``.

    One task may be in ``receive_into`` while another calls ``send_all`` (the driver's reader
    and pump, or a user task writing through); never two of the same kind at once.
    """

    async def receive_into(self, feed: Callable[[bytes], bool]) -> None:
        """Hand every chunk that arrives to ``feed`` (``b""`` at EOF), synchronously, until
        ``feed`` returns False; then return. ``feed`` returns False when the driver has
        something to await (events to dispatch, the EOF) before it reads on: no chunk is fed
        after that, and a chunk that arrived meanwhile waits for the next call.
        """
        ...

    async def send_all(self, data: bytes) -> None:
        """Write everything (waiting while the peer is slow: this is the backpressure, at
        most the connection's timeout: a server that stops reading must not stop the pump and
        its timers; after that the stream is unusable).

        Raises:
            OSError: the connection failed; ``TimeoutError`` when the wait ran out.

        Cancel-safe: a caller cancelled during the wait neither drops bytes nor tears a frame
        (asyncio: ``write`` hands everything to the transport before the first await; trio:
        what the socket does not take at once is written under a shield, bounded by the
        connection's timeout). Any task may therefore write, not only the driver's pump.
        """
        ...

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str, timeout: float
    ) -> Stream:
        """Run a client TLS handshake over this stream and return the encrypted stream."""
        ...

    async def aclose(self) -> None:
        """Close now, without a graceful shutdown; never raises ``OSError``."""
        ...


class Event(Protocol):
    """A one-shot event (trio's shape: no ``clear``; the driver replaces fired events)."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


class Task(Protocol):
    """A handle on a spawned task."""

    def cancel(self) -> None:
        """Ask the task to stop at its next checkpoint (idempotent)."""
        ...

    async def join(self) -> None:
        """Wait until the task has finished; never raises the task's own exception."""
        ...


class Spawner(Protocol):
    """Where a connection's tasks live: a nursery / task group, or the loop itself."""

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> Task: ...


class Backend(Protocol):
    """One event loop's primitives."""

    async def connect_tcp(self, host: str, port: int, timeout: float) -> Stream:
        """Dial ``host:port`` with TCP_NODELAY (``timeout`` also bounds a blocked write).

        Raises:
            OSError: refused, unreachable, unresolvable, or ``TimeoutError`` after ``timeout``.
        """
        ...

    def event(self) -> Event: ...

    def monotonic(self) -> float:
        """The clock that ``wait_event`` deadlines are measured on (fed to the core as ``now``)."""
        ...

    async def wait_event(self, event: Event, deadline: float | None) -> bool:
        """Wait until ``event`` is set or the ``monotonic()`` ``deadline`` passes (move-on-at).

        Returns whether the event is set. Cancellation of the caller propagates.
        """
        ...

    def open_task_group(self) -> AbstractAsyncContextManager[Spawner]:
        """A structured home for tasks (a trio nursery), owned by an ``async with`` block.

        Leaving it waits for the tasks; it never wraps the block's own exception in an
        ``ExceptionGroup`` (the connection has stopped its tasks by then).
        """
        ...

    def background_spawner(self) -> Spawner:
        """A home for the tasks of a connection opened by ``await connect(...)`` (no block)."""
        ...

    def only_cancellations(self, error: BaseException) -> bool:
        """True if ``error`` (possibly an exception group) holds nothing but cancellations."""
        ...

    async def shielded(self, fn: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Run cleanup ``fn`` to completion even if the caller is being cancelled.

        ``fn`` is given at most ``timeout`` seconds, then cancelled; the caller's own
        cancellation still propagates afterwards (trio) or at once while ``fn`` finishes in the
        background (asyncio).
        """
        ...
