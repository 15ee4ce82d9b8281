"""The asyncio backend of the shared async driver (see ``_memphis_async._backend``).

Cancellation in asyncio is edge-triggered: one ``CancelledError`` per ``cancel()``, and code in
``finally`` may await freely afterwards. What cleanup needs protecting from is a *second*
cancel (a caller's ``asyncio.timeout`` firing while ``close()`` runs): it therefore runs in a
task of its own behind ``asyncio.shield``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType

from _memphis_async import Event, Spawner, Stream, Task

__all__ = ["AsyncioBackend"]

# Room for a few 64 KiB reads in the StreamReader before the transport pauses reading.
_LIMIT = 1 << 20
# Cleanup tasks still running after their caller was cancelled (the loop keeps weak refs only).
_CLEANUPS: set[asyncio.Task[None]] = set()


class _AsyncioStream:
    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self._reader.read(max_bytes)

    async def send_all(self, data: bytes) -> None:
        writer = self._writer
        if writer.is_closing():
            raise ConnectionResetError("the transport is closed")
        writer.write(data)
        await writer.drain()

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str, timeout: float
    ) -> Stream:
        # The same reader and writer carry the encrypted stream afterwards.
        await self._writer.start_tls(
            context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
        )
        return self

    async def aclose(self) -> None:
        # No wait_closed(): for a dead peer it could take long, and closing flushes what is
        # buffered on its own (the loop keeps the transport until then).
        with contextlib.suppress(Exception):
            self._writer.close()


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
    # write() buffers everything synchronously; only drain() can be cancelled.
    cancel_safe_send = True

    async def connect_tcp(self, host: str, port: int, timeout: float) -> Stream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=_LIMIT)
        except TimeoutError:
            raise TimeoutError(f"timed out connecting to {host}:{port}") from None
        return _AsyncioStream(reader, writer)  # asyncio sets TCP_NODELAY on TCP transports

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
