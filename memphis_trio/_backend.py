"""The trio backend of the shared async driver (see ``_memphis_async._backend``).

Cancellation in trio is level-triggered: inside a cancelled scope every checkpoint raises
``Cancelled`` again, so cleanup that must finish (closing a connection after its ``async with``
block was cancelled) runs in a shielded scope with a deadline of its own.
"""

from __future__ import annotations

import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final

import trio

from _memphis_async import Event, Spawner, Stream, Task

__all__ = ["TrioBackend"]

_BROKEN: Any = (trio.BrokenResourceError, trio.ClosedResourceError)
_READ_SIZE: Final = 65536


def _os_error(exc: BaseException) -> OSError:
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return cause
    return ConnectionError(str(exc) or type(exc).__name__)


async def _shielded_send(send: Callable[[], Awaitable[None]], timeout: float) -> None:
    """Finish a write even if the caller is cancelled (a frame torn half-way would corrupt the
    stream), within ``timeout`` seconds of a server that does not read."""
    with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout) as scope:
        await send()
    if scope.cancelled_caught:
        raise TimeoutError("timed out writing to the server")


class _SocketStream:
    """Plain TCP on a non-blocking socket, read and written without trio's stream wrappers.

    A write is one ``send()`` from the calling task, with no checkpoint when the socket takes it
    all (the common case); a read is ``recv()`` after ``wait_readable``. trio's ``SocketStream``
    yields to the scheduler after every write and read: in an interleaved A/B of the bench's
    sync produce it did 5,537 and 6,302 msg/s (128 B, 1 KiB) at 101-107 us of CPU per message,
    this stream 9,807 and 9,802 at 53 us (docs/sansio.md §6).
    """

    __slots__ = ("_sock", "_timeout", "_torn")

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout
        # A write ended half-way (timed out, or a KeyboardInterrupt, which trio delivers even
        # inside a shield): the server holds part of a frame, so nothing may follow it.
        self._torn = False

    async def receive_into(self, feed: Callable[[bytes], bool]) -> None:
        sock = self._sock
        waited = False
        try:
            while True:
                try:
                    data = sock.recv(_READ_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    waited = True
                    continue
                more = feed(data)
                if not waited:
                    # No wait since the last read: let the other tasks run (and a cancellation
                    # in), also before returning, since the driver's reader calls again at once.
                    await trio.lowlevel.checkpoint()
                if not more:
                    return
                waited = False
        except _BROKEN as exc:
            raise _os_error(exc) from exc

    async def send_all(self, data: bytes) -> None:
        if self._torn:
            raise ConnectionError("an earlier write ended half-way: the stream is unusable")
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            rest = memoryview(data)[sent:]
            try:
                await _shielded_send(lambda: self._send_rest(rest), self._timeout)
            except BaseException:
                self._torn = True
                raise

    async def _send_rest(self, rest: memoryview) -> None:
        sock = self._sock
        try:
            while rest:
                await trio.lowlevel.wait_writable(sock)
                try:
                    rest = rest[sock.send(rest) :]
                except BlockingIOError:
                    continue
        except _BROKEN as exc:
            raise _os_error(exc) from exc

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str, timeout: float
    ) -> Stream:
        plain = trio.SocketStream(trio.socket.from_stdlib_socket(self._sock))
        tls = trio.SSLStream(plain, context, server_hostname=server_hostname)
        try:
            with trio.fail_after(timeout):
                await tls.do_handshake()
        except trio.TooSlowError:
            raise TimeoutError("timed out during the TLS handshake") from None
        except _BROKEN as exc:
            raise _os_error(exc) from exc
        return _TlsStream(tls, self._timeout)

    async def aclose(self) -> None:
        trio.lowlevel.notify_closing(self._sock)  # a reader waiting on it wakes
        self._sock.close()


class _TlsStream:
    """TLS over TCP, through ``trio.SSLStream``."""

    __slots__ = ("_stream", "_timeout")

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], timeout: float) -> None:
        self._stream = stream
        self._timeout = timeout

    async def receive_into(self, feed: Callable[[bytes], bool]) -> None:
        try:
            while feed(bytes(await self._stream.receive_some(_READ_SIZE))):
                pass
        except _BROKEN as exc:
            raise _os_error(exc) from exc

    async def send_all(self, data: bytes) -> None:
        try:
            await _shielded_send(lambda: self._stream.send_all(data), self._timeout)
        except _BROKEN as exc:
            raise _os_error(exc) from exc

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str, timeout: float
    ) -> Stream:
        raise ConnectionError("the stream is encrypted already")

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


class _TrioTask:
    """A task with its own cancel scope, so that one task can be stopped without the others."""

    __slots__ = ("_done", "_scope")

    def __init__(self) -> None:
        self._scope = trio.CancelScope()
        self._done = trio.Event()

    async def run(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            with self._scope:
                await fn()
        finally:
            self._done.set()

    def cancel(self) -> None:
        self._scope.cancel()

    async def join(self) -> None:
        await self._done.wait()


class _NurserySpawner:
    __slots__ = ("_nursery",)

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> Task:
        task = _TrioTask()
        self._nursery.start_soon(task.run, fn, name=name)
        return task


class _SystemSpawner:
    """For ``conn = await connect(...)``: no nursery outlives that call, so the connection's
    tasks become trio system tasks (cancelled when ``trio.run`` ends). The driver never lets
    an exception out of them, which is what system tasks require."""

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> Task:
        task = _TrioTask()
        trio.lowlevel.spawn_system_task(task.run, fn, name=name)
        return task


class _NurseryGroup:
    """``async with``: a nursery that is always exited without the block's exception (the
    connection stopped its tasks already; strict exception groups would wrap it)."""

    def __init__(self) -> None:
        self._manager = trio.open_nursery()

    async def __aenter__(self) -> Spawner:
        return _NurserySpawner(await self._manager.__aenter__())

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._manager.__aexit__(None, None, None)


class TrioBackend:
    async def connect_tcp(self, host: str, port: int, timeout: float) -> Stream:
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(host, port)  # sets TCP_NODELAY
        except trio.TooSlowError:
            raise TimeoutError(f"timed out connecting to {host}:{port}") from None
        # The connected socket, taken out of trio's wrappers (see _SocketStream).
        sock = socket.socket(fileno=stream.socket.detach())
        sock.setblocking(False)
        return _SocketStream(sock, timeout)

    def event(self) -> Event:
        return trio.Event()

    def monotonic(self) -> float:
        return trio.current_time()

    async def wait_event(self, event: Event, deadline: float | None) -> bool:
        with trio.move_on_at(math.inf if deadline is None else deadline):
            await event.wait()
        return event.is_set()

    def open_task_group(self) -> _NurseryGroup:
        return _NurseryGroup()

    def background_spawner(self) -> Spawner:
        return _SystemSpawner()

    def only_cancellations(self, error: BaseException) -> bool:
        if isinstance(error, BaseExceptionGroup):
            return all(self.only_cancellations(inner) for inner in error.exceptions)
        return isinstance(error, trio.Cancelled)

    async def shielded(self, fn: Callable[[], Awaitable[None]], timeout: float) -> None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout):
            await fn()
