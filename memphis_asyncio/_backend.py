"""The asyncio backend of the shared async driver (see ``_memphis_async._backend``).

Cancellation in asyncio is edge-triggered: one ``CancelledError`` per ``cancel()``, and code in
``finally`` may await freely afterwards. What cleanup needs protecting from is a *second*
cancel (a caller's ``asyncio.timeout`` firing while ``close()`` runs): it therefore runs in a
task of its own behind ``asyncio.shield``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final

from _memphis_async import Event, Spawner, Stream, Task

__all__ = ["AsyncioBackend"]

# Cleanup tasks still running after their caller was cancelled (the loop keeps weak refs only).
_CLEANUPS: set[asyncio.Task[None]] = set()
# Bytes kept while the driver is not reading (it dispatches a transport event) before the
# transport stops reading: the peer then waits in TCP's flow control, and memory stays bounded.
_BACKLOG_LIMIT: Final = 1 << 20


class _FeedProtocol(asyncio.Protocol):
    """Feeds the driver from ``data_received`` (no StreamReader, no task woken per chunk) and
    tracks write backpressure (``pause_writing``/``resume_writing``).

    Why not a StreamReader and a reader task: in an interleaved A/B of the bench's sync produce
    this path did 10,478 and 9,915 msg/s (128 B, 1 KiB), the StreamReader 9,476 and 8,764, at
    49-52 against 56-57 us of CPU per message (docs/sansio.md §6).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._feed: Callable[[bytes], bool] | None = None  # set while the driver reads
        self._stopped: asyncio.Future[None] | None = None  # the reading ended (or failed)
        self._backlog: collections.deque[bytes] = collections.deque()  # while nobody reads
        self._backlog_size = 0  # bytes in ``_backlog``
        self._reading_paused = False  # we called ``transport.pause_reading()``
        self._lost: OSError | None = None
        self._drained: asyncio.Future[None] | None = None  # set while writing is paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        feed = self._feed
        if feed is None:
            self._backlog.append(data)
            self._backlog_size += len(data)
            transport = self.transport
            if (
                self._backlog_size >= _BACKLOG_LIMIT
                and not self._reading_paused
                and transport is not None
            ):
                self._reading_paused = True
                transport.pause_reading()
            return
        try:
            more = feed(data)
        except Exception as exc:
            # A bug, not a transport failure: the reader task raises it, and the driver ends
            # the connection with it (asyncio would only log it and drop the transport).
            self._stop(exc)
            return
        if not more:
            self._stop(None)

    def eof_received(self) -> bool | None:
        self.data_received(b"")
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            if isinstance(exc, OSError):
                self._lost = exc
            else:
                self._lost = ConnectionResetError(str(exc) if exc else "the connection closed")
        self._stop(self._lost)
        self.resume_writing()  # a writer waiting for the drain wakes and finds the loss

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _stop(self, error: Exception | None) -> None:
        self._feed = None
        stopped, self._stopped = self._stopped, None
        if stopped is not None and not stopped.done():
            if error is None:
                stopped.set_result(None)
            else:
                stopped.set_exception(error)

    async def receive_into(self, feed: Callable[[bytes], bool]) -> None:
        backlog = self._backlog
        while backlog:
            data = backlog.popleft()
            self._backlog_size -= len(data)
            if not feed(data):
                return
        if self._lost is not None:
            raise self._lost
        stopped = self._stopped = asyncio.get_running_loop().create_future()
        self._feed = feed
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        try:
            await stopped
        finally:
            self._feed = None
            self._stopped = None

    async def drain(self, timeout: float) -> None:
        """Wait while the transport's write buffer is above its high-water mark, at most
        ``timeout`` seconds (a server that stops reading must not hold the writer, and with
        it the pump's timers, forever).

        Raises:
            TimeoutError: still full after ``timeout``.
            OSError: the connection was lost.
        """
        drained = self._drained
        if drained is not None:
            try:
                async with asyncio.timeout(timeout):
                    # A cancelled writer leaves the future for the next one.
                    await asyncio.shield(drained)
            except TimeoutError:
                raise TimeoutError("timed out writing to the server") from None
        if self._lost is not None:
            raise self._lost


class _AsyncioStream:
    __slots__ = ("_protocol", "_timeout", "_transport")

    def __init__(
        self, transport: asyncio.Transport, protocol: _FeedProtocol, timeout: float
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._timeout = timeout  # bounds a write blocked by a server that does not read

    async def receive_into(self, feed: Callable[[bytes], bool]) -> None:
        await self._protocol.receive_into(feed)

    async def send_all(self, data: bytes) -> None:
        transport = self._transport
        if transport.is_closing():
            raise ConnectionResetError("the transport is closed")
        transport.write(data)  # everything is handed over here, before any await
        try:
            await self._protocol.drain(self._timeout)
        except TimeoutError:
            transport.abort()  # a close would wait to flush to a server that does not read
            raise

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str, timeout: float
    ) -> Stream:
        # The same protocol reads the decrypted stream (the SSL transport calls its
        # data_received); start_tls pauses the plain reading during the handshake.
        upgraded = await asyncio.get_running_loop().start_tls(
            self._transport,
            self._protocol,
            context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=timeout,
        )
        if upgraded is None:
            raise ConnectionResetError("the connection closed during the TLS handshake")
        assert isinstance(upgraded, asyncio.Transport)
        self._protocol.transport = upgraded
        return _AsyncioStream(upgraded, self._protocol, self._timeout)

    async def aclose(self) -> None:
        # No waiting for the close: for a dead peer it could take long, and closing flushes
        # what is buffered on its own (the loop keeps the transport until then).
        with contextlib.suppress(Exception):
            self._transport.close()


class _AsyncioTask:
    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    def cancel(self) -> None:
        self._task.cancel()

    async def join(self) -> None:
        await asyncio.wait([self._task])  # never raises the task's exception


class _LoopSpawner:
    """Tasks on the running loop, kept alive by strong references until they finish."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> Task:
        async def run() -> None:
            await fn()

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return _AsyncioTask(task)


class _TaskGroup:
    """``async with``: owns the connection's tasks; on exit any left over are cancelled and
    awaited (the asyncio counterpart of a nursery, without ExceptionGroup wrapping)."""

    def __init__(self) -> None:
        self._spawner = _LoopSpawner()

    async def __aenter__(self) -> Spawner:
        return self._spawner

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks = list(self._spawner.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class AsyncioBackend:
    async def connect_tcp(self, host: str, port: int, timeout: float) -> Stream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(_FeedProtocol, host, port)
        except TimeoutError:
            raise TimeoutError(f"timed out connecting to {host}:{port}") from None
        assert isinstance(transport, asyncio.Transport)
        # asyncio sets TCP_NODELAY on TCP transports.
        return _AsyncioStream(transport, protocol, timeout)

    def event(self) -> Event:
        return asyncio.Event()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def wait_event(self, event: Event, deadline: float | None) -> bool:
        if deadline is None:
            await event.wait()
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await event.wait()
        return event.is_set()

    def open_task_group(self) -> _TaskGroup:
        return _TaskGroup()

    def background_spawner(self) -> Spawner:
        return _LoopSpawner()

    def only_cancellations(self, error: BaseException) -> bool:
        if isinstance(error, BaseExceptionGroup):
            return all(self.only_cancellations(inner) for inner in error.exceptions)
        return isinstance(error, asyncio.CancelledError)

    async def shielded(self, fn: Callable[[], Awaitable[None]], timeout: float) -> None:
        async def bounded() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await fn()

        task = asyncio.get_running_loop().create_task(bounded())
        _CLEANUPS.add(task)
        task.add_done_callback(_CLEANUPS.discard)
        await asyncio.shield(task)
