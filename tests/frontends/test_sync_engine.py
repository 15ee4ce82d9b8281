"""memphis_sync's engine (``memphis_sync._driver``): properties of its threads that the
conformance suite cannot reach deterministically."""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Any

import memphis_sync
from memphis_broker import EmbeddedBroker
from tests.frontends._support import TOKEN, USER, unique


class _StaleOnce:
    """A selector that, once armed, reports the connection readable when it is not.

    This is the state the I/O thread is in when a caller leading a round trip has read the bytes
    that its ``select()`` saw, between that ``select()`` and the I/O thread's read.
    """

    def __init__(self, inner: selectors.BaseSelector) -> None:
        self.inner = inner
        self.stale: Any = None
        self.used = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        sock, self.stale = self.stale, None
        if sock is not None:
            self.used.set()
            return [(self.inner.get_key(sock), selectors.EVENT_READ)]
        return self.inner.select(timeout)


def test_a_stale_readiness_report_does_not_stall_the_io_thread(broker: EmbeddedBroker) -> None:
    # CI field report: a fetch right after a synchronous produce sent its pull only 15 s later
    # (the socket timeout) and returned nothing. The produce's caller had read the PubAck that
    # the I/O thread's select() had seen; the I/O thread's recv then waited for data that never
    # came, deaf to the fetch's kick.
    with memphis_sync.connect(
        broker.host, USER, connection_token=TOKEN, port=broker.port, timeout=30
    ) as conn:
        station = unique("stale")
        conn.produce(station, "p", b"waiting")
        consumer = conn.create_consumer(station, "c", batch_max_wait_time=0.2)
        driver = conn._driver
        selector = _StaleOnce(driver._selector)
        driver._selector = selector  # type: ignore[assignment]
        selector.stale = driver._sock
        driver.kick()  # the I/O thread's next turn meets the stale report
        assert selector.used.wait(10)
        # The pull goes out through the I/O thread. Stalled in recv until the next bytes come
        # (the 30 s socket timeout, or nats-server's first PING, 2 s after connecting), it
        # would send it after the fetch's own deadline (0.2 s + 1 s of grace) had passed: [].
        assert [m.data for m in consumer.fetch()] == [b"waiting"]


def test_close_when_the_io_thread_closes_the_connection_first_does_not_raise(
    broker: EmbeddedBroker,
) -> None:
    # CI field report: close() raised ConnectionClosedError when the I/O thread closed the
    # connection (the last reconnect attempt failed) between close()'s "still open?" check and
    # its drain call. The close must be quiet: the I/O thread's close already failed, by name,
    # everything the connection held.
    conn = memphis_sync.connect(broker.host, USER, connection_token=TOKEN, port=broker.port)
    driver = conn._driver
    call = driver.call

    def closed_first(fn: Any, **kwargs: Any) -> Any:
        driver._mark_closed(None)  # what the I/O thread does when the connection ends
        return call(fn, **kwargs)

    driver.call = closed_first  # type: ignore[method-assign]
    conn.close()
    assert driver.closed


def test_a_socket_closed_under_the_io_thread_is_not_read() -> None:
    # Review finding: a leader that read EOF closes the socket; the I/O thread, woken by the
    # same EOF, then polled the closed socket and died of the ValueError as an internal error.
    from memphis_sync._driver import Driver

    mine, peer = socket.socketpair()
    peer.close()
    mine.close()
    assert Driver._readable_now(mine) is False
