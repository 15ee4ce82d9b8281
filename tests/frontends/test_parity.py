"""Behaviour parity: the same scenario, checked the same way, on all three frontends.

The public classes are generated from one source (scripts/unasync.py), so these can only
differ through the engines; each case below once behaved differently between memphis_sync and
the async frontends. The test bodies are blocking; for the async frontends they run through
the conformance suite's portal (tests/support/frontends.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import memphis_core
from memphis_broker import EmbeddedBroker
from tests.support.frontends import Frontend, available_frontends, open_frontend
from tests.support.names import TOKEN, USER, unique
from tests.support.probe import connections
from tests.support.waits import wait_until


@pytest.fixture(scope="module", params=available_frontends())
def frontend(request: pytest.FixtureRequest) -> Iterator[Frontend]:
    fe = open_frontend(request.param)
    yield fe
    fe.close()


@pytest.fixture
def connect(frontend: Frontend, broker: EmbeddedBroker) -> Iterator[Callable[..., Any]]:
    with connections(frontend.memphis, broker, USER, connection_token=TOKEN) as connect:
        yield connect


def test_a_raising_error_handler_is_logged_and_consuming_goes_on(
    connect: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Once: the blocking consume thread died, the async loop logged and went on.
    conn = connect()
    station = unique("st")
    producer = conn.create_producer(station, "p")
    batches: list[list[bytes]] = []
    done = threading.Event()

    def handler(messages: list[Any], error: Any, context: Any) -> None:
        if messages:
            batches.append([m.data for m in messages])
            for message in messages:
                message.ack()
            if len(batches) == 1:
                raise RuntimeError("handler bug")
            done.set()

    def error_handler(consumer: Any, error: Any) -> None:
        raise ValueError("error handler bug")

    consumer = conn.create_consumer(
        station, "c", pull_interval=0.05, batch_max_wait_time=0.2, error_handler=error_handler
    )
    producer.produce(b"first")
    consumer.consume(handler)
    wait_until(lambda: len(batches) == 1, timeout=10, what="the first batch")
    producer.produce(b"second")
    wait_until(done.is_set, timeout=10, what="a batch after the handler raised")
    consumer.stop_consume()
    assert batches == [[b"first"], [b"second"]]
    logged = [r for r in caplog.records if r.name == "memphis.consumer"]
    assert any("error handler of consumer c raised" in r.getMessage() for r in logged)


def test_destroying_a_producer_reports_its_unflushed_failures(
    connect: Callable[..., Any], frontend: Frontend
) -> None:
    # Once: destroy waited 30 s in one frontend and without limit in the other, and dropped
    # the failures of async produces nobody had flushed.
    conn = connect()
    station = unique("st")
    producer = conn.create_producer(station, "p")
    producer.produce(b"stored")
    connect().destroy_station(station)
    producer.produce(b"lost", async_produce=True, ack_wait=1.0)
    with pytest.raises(frontend.memphis.AsyncProduceError):
        producer.destroy()


def test_connection_events_are_logged_alike(
    connect: Callable[..., Any], broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Once: logger names differed between frontends, and server errors were logged by one.
    caplog.set_level(logging.INFO, logger="memphis")
    conn = connect()
    conn.close()
    text = [r.getMessage() for r in caplog.records if r.name == "memphis.connection"]
    assert f"connected to {broker.host}:{broker.port}" in text


def test_an_internal_error_closes_the_connection_with_a_memphis_error(
    connect: Callable[..., Any], frontend: Frontend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once: MemphisConnectError in one frontend, MemphisError in the others; now every waiter
    # gets ConnectionClosedError naming the internal error, in all three.
    conn = connect()
    producer = conn.create_producer(unique("st"), "p")

    def broken(self: memphis_core.Client, data: bytes, now: float) -> None:
        raise IndexError("engine bug")

    monkeypatch.setattr(memphis_core.Client, "receive_data", broken)
    with pytest.raises(frontend.memphis.ConnectionClosedError, match="internal error"):
        producer.produce(b"x")  # its PubAck is the next read: the engine breaks on it


def test_an_internal_error_calls_on_closed_once_with_the_error(
    connect: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review finding: once the engine policy took the core's events after a crash, on_closed
    # was never called (memphis_sync used to call it, the async engines never did): a user
    # relying on it to learn that the connection died heard nothing.
    closed: list[BaseException | None] = []
    conn = connect(on_closed=closed.append)
    producer = conn.create_producer(unique("st"), "p")

    def broken(self: memphis_core.Client, data: bytes, now: float) -> None:
        raise IndexError("engine bug")

    monkeypatch.setattr(memphis_core.Client, "receive_data", broken)
    with pytest.raises(Exception, match="internal error"):
        producer.produce(b"x")
    wait_until(lambda: closed, timeout=10, what="on_closed after the engine broke")
    conn.close()
    assert len(closed) == 1
    assert isinstance(closed[0], memphis_core.MemphisError)
    assert "engine bug" in str(closed[0])


def test_waiting_on_a_connection_that_closes_raises_connection_closed(
    connect: Callable[..., Any], frontend: Frontend
) -> None:
    # Once: the raw cause in one frontend, ConnectionClosedError in the others.
    conn = connect()
    consumer = conn.create_consumer(unique("st"), "c", batch_max_wait_time=10.0)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            consumer.fetch()
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=fetch)
    waiter.start()
    conn.close()  # before or during the fetch: either way it must end with the same error
    waiter.join(15)
    assert not waiter.is_alive()
    assert [type(e) for e in errors] == [frontend.memphis.ConnectionClosedError]
