"""The byte streams of the asyncio and trio backends, over a socket pair (no broker).

What the shared driver relies on (``_memphis_async._backend.Stream``): ``receive_into`` feeds
chunks in order and stops when the feed says so, keeping what arrives meanwhile for the next
call; ``send_all`` is cancel-safe, so any task may write (docs/sansio.md §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.testing

from memphis_asyncio._backend import _BACKLOG_LIMIT, _AsyncioStream, _FeedProtocol
from memphis_trio._backend import _SocketStream


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    return ours, peer


@contextlib.asynccontextmanager
async def _trio_stream(
    timeout: float, send_buffer: int | None = None
) -> AsyncIterator[tuple[_SocketStream, socket.socket]]:
    """memphis_trio's stream on one end of a socket pair, and the plain peer socket."""
    ours, peer = _pair()
    if send_buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    stream = _SocketStream(ours, timeout)
    try:
        yield stream, peer
    finally:
        await stream.aclose()
        peer.close()


async def _asyncio_stream(
    timeout: float, send_buffer: int | None = None
) -> tuple[_AsyncioStream, asyncio.Transport, _FeedProtocol, socket.socket]:
    """memphis_asyncio's stream on one end of a socket pair, its transport and protocol, and
    the plain peer socket."""
    ours, peer = _pair()
    if send_buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(_FeedProtocol, sock=ours)
    assert isinstance(transport, asyncio.Transport)
    return _AsyncioStream(transport, protocol, timeout), transport, protocol, peer


def _collect(into: list[bytes], stop_after: int) -> Callable[[bytes], bool]:
    """A feed that keeps chunks and asks to stop once ``stop_after`` bytes or the EOF
    arrived (as the driver's does)."""

    def feed(data: bytes) -> bool:
        into.append(data)
        return bool(data) and sum(map(len, into)) < stop_after

    return feed


def test_trio_receive_into_stops_when_asked_and_resumes_in_order() -> None:
    async def body() -> None:
        got: list[bytes] = []
        async with _trio_stream(timeout=5.0) as (stream, peer):
            peer.sendall(b"first")
            with trio.fail_after(5):
                await stream.receive_into(_collect(got, 5))
                peer.sendall(b"second")
                await stream.receive_into(_collect(got, 11))
        assert b"".join(got) == b"firstsecond"

    trio.run(body)


def test_asyncio_receive_into_keeps_what_arrives_while_stopped() -> None:
    async def body() -> None:
        stream, _, protocol, peer = await _asyncio_stream(timeout=5.0)
        got: list[bytes] = []
        peer.sendall(b"first")
        async with asyncio.timeout(5):
            await stream.receive_into(_collect(got, 5))
            peer.sendall(b"second")
            # Arrives while nobody reads (data_received keeps it), fed by the next call.
            while not protocol._backlog:
                await asyncio.sleep(0)
            await stream.receive_into(_collect(got, 11))
        assert b"".join(got) == b"firstsecond"
        peer.close()
        async with asyncio.timeout(5):
            await stream.receive_into(_collect(got, 12))  # the EOF is fed as b"": it stops
        assert got[-1] == b""
        await stream.aclose()

    asyncio.run(body())


def test_trio_send_cancelled_while_blocked_still_sends_every_byte() -> None:
    async def body() -> None:
        data = bytes(range(256)) * 16384  # 4 MiB: far more than the socket buffers hold
        received = bytearray()
        async with (
            _trio_stream(timeout=10.0, send_buffer=4096) as (stream, peer),
            trio.open_nursery() as nursery,
        ):
            scope = trio.CancelScope()

            async def send() -> None:
                with scope:
                    await stream.send_all(data)

            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()  # the send waits for the peer
            scope.cancel()  # a caller giving up must not tear the frame
            peer_trio = trio.socket.from_stdlib_socket(peer)
            with trio.fail_after(10):
                while len(received) < len(data):
                    received += await peer_trio.recv(65536)
        assert bytes(received) == data

    trio.run(body)


def test_trio_send_to_a_peer_that_never_reads_times_out() -> None:
    async def body() -> None:
        async with _trio_stream(timeout=0.2, send_buffer=4096) as (stream, _):
            with pytest.raises(TimeoutError), trio.fail_after(10):
                await stream.send_all(b"x" * (4 << 20))

    trio.run(body)


def test_asyncio_stops_reading_while_its_backlog_is_full() -> None:
    """A peer that keeps sending while the driver is not reading (it dispatches a transport
    event) fills the backlog only up to a bound: then the transport pauses, and the rest
    waits in the kernel until the driver reads again, in order."""

    async def body() -> None:
        stream, transport, protocol, peer = await _asyncio_stream(timeout=5.0)
        data = bytes(range(256)) * 32768  # 8 MiB: more than the bound and the socket buffers
        sender = asyncio.get_running_loop().run_in_executor(None, peer.sendall, data)
        async with asyncio.timeout(10):
            while transport.is_reading():  # nobody reads: the transport must pause
                await asyncio.sleep(0.01)
        held = protocol._backlog_size
        assert 0 < held <= _BACKLOG_LIMIT + 262144  # the bound, plus one read at most
        assert not sender.done()  # the rest waits in the kernel, not in our memory
        got: list[bytes] = []
        async with asyncio.timeout(10):
            await stream.receive_into(_collect(got, len(data)))
            await sender
        assert b"".join(got) == data
        peer.close()
        await stream.aclose()

    asyncio.run(body())


def test_trio_send_interrupted_half_way_refuses_the_next_write() -> None:
    """A KeyboardInterrupt reaches the main task even inside the send's shield: the frame is
    torn, so the next write must fail instead of appending bytes to half a frame."""

    @trio.lowlevel.enable_ki_protection
    def press_ctrl_c() -> None:
        # From protected code trio delivers it to the main task at its next checkpoint.
        signal.raise_signal(signal.SIGINT)

    async def body() -> None:
        async with _trio_stream(timeout=10.0, send_buffer=4096) as (stream, peer):
            async with trio.open_nursery() as nursery:

                async def interrupt() -> None:
                    await trio.testing.wait_all_tasks_blocked()  # the send waits for the peer
                    press_ctrl_c()

                nursery.start_soon(interrupt)
                with pytest.raises(KeyboardInterrupt):
                    await stream.send_all(b"x" * (4 << 20))
            peer_trio = trio.socket.from_stdlib_socket(peer)
            async with trio.open_nursery() as nursery:

                async def read_on() -> None:  # the peer reads again: a write could proceed
                    while await peer_trio.recv(65536):
                        pass

                nursery.start_soon(read_on)
                with pytest.raises(OSError), trio.fail_after(5):
                    await stream.send_all(b"PING\r\n")
                nursery.cancel_scope.cancel()

    trio.run(body)


def test_trio_receive_into_that_did_not_wait_is_still_a_checkpoint() -> None:
    """The driver's reader calls again at once after a stop (events to dispatch): a call that
    found data ready must still be a checkpoint (a cancellation gets in, other tasks get a
    turn), or a peer that keeps sending would starve them."""

    async def body() -> None:
        async with _trio_stream(timeout=5.0) as (stream, peer):
            peer.sendall(b"INFO {}\r\n")
            got: list[bytes] = []
            with trio.CancelScope() as scope:
                scope.cancel()
                await stream.receive_into(lambda data: got.append(data) or False)
            assert got == [b"INFO {}\r\n"]  # fed, then the checkpoint delivered the cancel
            assert scope.cancelled_caught

    trio.run(body)


def test_asyncio_send_to_a_peer_that_never_reads_times_out() -> None:
    """asyncio buffers every write, but the writer then waits for the buffer to drain: bounded
    by the connection's timeout, like trio's, and the transport is aborted (a close would
    wait to flush to the peer forever)."""

    async def body() -> None:
        stream, _, protocol, peer = await _asyncio_stream(timeout=0.2, send_buffer=4096)
        async with asyncio.timeout(10):
            with pytest.raises(TimeoutError, match="writing"):
                await stream.send_all(b"x" * (4 << 20))
            while not protocol._lost:  # aborted: the loss is reported, nothing lingers
                await asyncio.sleep(0.01)
        peer.close()

    asyncio.run(body())
