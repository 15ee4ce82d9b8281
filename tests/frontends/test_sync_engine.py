"""memphis_sync's engine (``memphis_sync._driver``): properties of its threads that the
conformance suite cannot reach deterministically, and user threads sharing one connection."""

from __future__ import annotations

import select
import selectors
import socket
import ssl
import threading
import time
from typing import Any

import pytest

import memphis_sync
from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN, USER, unique
from tests.support.sync_client import connect, drain


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


def _tls_pair() -> tuple[ssl.SSLSocket, ssl.SSLSocket, socket.socket, socket.socket]:
    """A TLS 1.2 client and server connected through two socket pairs whose middle ends the
    test holds: ``(client, server, server_out, client_in)``; bytes the server sends arrive on
    ``server_out`` and reach the client only when the test writes them to ``client_in``.
    (TLS 1.2: no session tickets after the handshake to get in the way.)"""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server_raw, server_out = socket.socketpair()
    client_in, client_raw = socket.socketpair()
    relaying = threading.Event()
    relaying.set()

    def relay(src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.05)
        while relaying.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue  # a poll interval: the handshake is over when relaying is cleared
            if not data:
                return
            dst.sendall(data)

    relays = [
        threading.Thread(target=relay, args=(server_out, client_in), daemon=True),
        threading.Thread(target=relay, args=(client_in, server_out), daemon=True),
    ]
    servers: list[ssl.SSLSocket] = []
    handshake = threading.Thread(
        target=lambda: servers.append(server_ctx.wrap_socket(server_raw, server_side=True))
    )
    for t in [*relays, handshake]:
        t.start()
    client = client_ctx.wrap_socket(client_raw, server_hostname="localhost")
    handshake.join(10)
    relaying.clear()
    for t in relays:
        t.join(10)
    server_out.settimeout(None)
    return client, servers[0], server_out, client_in


def test_a_partial_tls_record_does_not_block_the_io_thread() -> None:
    # Known debt: the selector reports a TLS socket readable as soon as part of a record
    # arrives; a blocking recv then waited for the rest of the record, up to the socket
    # timeout, deaf to kicks and timers.
    from memphis_sync._driver import Driver

    client, server, server_out, client_in = _tls_pair()
    try:
        server.sendall(b"PING\r\n")
        record = server_out.recv(65536)
        assert record[0] == 23  # one application-data record
        client_in.sendall(record[:8])  # its header and a little of its body
        client.settimeout(5.0)
        lock = threading.Lock()
        started = time.monotonic()
        assert Driver._read_now(client, lock) == []  # nothing complete yet, nothing waited
        assert time.monotonic() - started < 1.0
        assert client.gettimeout() == 5.0  # writes still get the socket timeout
        client_in.sendall(record[8:])
        assert select.select([client], [], [], 5)[0]
        assert Driver._read_now(client, lock) == [b"PING\r\n"]
    finally:
        for s in (client, server, server_out, client_in):
            s.close()


def test_threads_share_one_connection(own_broker: EmbeddedBroker) -> None:
    threads, each = 4, 200
    with connect(own_broker) as conn:
        producer = conn.create_producer("threads", "shared")
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(each):
                    if i % 2:
                        producer.produce(f"{n}-{i}", async_produce=True)
                    else:
                        producer.produce(f"{n}-{i}")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        producer.flush()
        assert not errors
        consumer = conn.create_consumer("threads", "reader", batch_max_wait_time=0.3)
        got = sorted(m.data.decode() for m in drain(consumer))
        assert got == sorted(f"{n}-{i}" for n in range(threads) for i in range(each))


def test_close_fails_waiting_calls_instead_of_hanging(own_broker: EmbeddedBroker) -> None:
    conn = connect(own_broker)
    consumer = conn.create_consumer("closing", "c", batch_max_wait_time=5.0)
    result: list[BaseException | list[memphis_sync.Message]] = []

    def fetch() -> None:
        try:
            result.append(consumer.fetch(1))
        except memphis_sync.MemphisError as exc:
            result.append(exc)

    fetcher = threading.Thread(target=fetch)
    fetcher.start()
    started = time.monotonic()
    conn.close()
    fetcher.join(5)
    assert not fetcher.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(result[0], memphis_sync.MemphisError)
    with pytest.raises(memphis_sync.ConnectionClosedError):
        conn.create_producer("closing", "late")


@pytest.mark.parametrize("async_produce", [False, True])
def test_a_refused_produce_still_writes_its_schema_report_at_once(
    broker: EmbeddedBroker, async_produce: bool
) -> None:
    # Review finding: a produce refused by the schema queues its DLS report before raising;
    # the engine only wrote it at its next turn for another reason (a timer seconds later,
    # or the next ping), since nothing woke it for a call that raised.
    from tests.support.names import SCHEMAS

    with connect(broker) as conn:
        schema, station = unique("schema"), unique("st")
        conn.create_schema(schema, memphis_sync.SchemaType.JSON, str(SCHEMAS / "test.schema.json"))
        conn.create_station(station, schema_name=schema)
        producer = conn.create_producer(station, "p")
        with pytest.raises(memphis_sync.MemphisSchemaError):
            producer.produce({"region": "no locality"}, async_produce=async_produce)
        session = conn._client.session
        deadline = time.monotonic() + 1.0  # the engine's turn takes milliseconds
        while session._out and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not session._out, "the DLS report is still queued in the core"


def test_on_closed_is_called_when_the_io_thread_ends_before_seeing_the_close(
    broker: EmbeddedBroker,
) -> None:
    # Review finding: close() closes the core, then stops the I/O thread; an I/O thread
    # that was between its dispatch and its loop check exited without taking the Closed
    # event, and on_closed(None) was never called. The end state of that race: the I/O
    # thread is gone before close() runs.
    closed: list[object] = []
    conn = connect(broker, on_closed=closed.append)
    driver = conn._driver
    driver._stop = True
    driver.kick()
    driver._thread.join(timeout=10)
    assert not driver._thread.is_alive()
    conn.close()
    deadline = time.monotonic() + 10
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == [None]


def test_events_are_acted_on_in_the_order_the_core_emitted_them(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review finding: the I/O thread and a caller receiving its reply each took the core's
    # events, then acted on them, unordered: a caller that took a Disconnected could drop the
    # transport after the I/O thread had taken the next ReconnectDue and dialled, closing the
    # new socket. Two batches taken one after the other must be acted on in that order.
    conn = connect(broker)
    driver = conn._driver
    driver._stop = True  # the I/O thread would take the batches below itself
    driver.kick()
    driver._thread.join(timeout=10)
    first, second = object(), object()
    batches = [[first], [second]]
    acted: list[object] = []
    first_taken, second_acted = threading.Event(), threading.Event()

    def dispatch(events: list[object]) -> None:
        for event in events:
            if event is first:
                first_taken.set()
                # Bounded: in order, the second batch cannot be acted on meanwhile.
                second_acted.wait(timeout=0.5)
            acted.append(event)
            if event is second:
                second_acted.set()

    monkeypatch.setattr(driver, "_take_events", lambda: batches.pop(0) if batches else [])
    monkeypatch.setattr(driver, "_dispatch", dispatch)
    caller = threading.Thread(target=driver._dispatch_events)
    caller.start()
    assert first_taken.wait(timeout=10)
    io_thread = threading.Thread(target=driver._dispatch_events)
    io_thread.start()
    caller.join(timeout=10)
    io_thread.join(timeout=10)
    assert acted == [first, second]
    monkeypatch.undo()
    conn.close()
