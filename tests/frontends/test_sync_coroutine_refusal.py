"""memphis_sync refuses a coroutine function given as a handler or callback, at once, with a
``TypeError`` naming the parameter, before any byte is sent: no thread of it could await the
coroutine, so the callback would silently never run."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import memphis_sync
from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN, USER, unique


async def _coroutine_function(*args: object) -> None:
    """What a user of the async frontends would pass."""


class _AsyncCallable:
    async def __call__(self, *args: object) -> None:
        """An object whose ``__call__`` is a coroutine function."""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A server socket nobody accepts on: a dial would show up in its backlog."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def _dialled(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize("name", ["on_disconnected", "on_reconnected", "on_closed", "on_error"])
@pytest.mark.parametrize("callback", [_coroutine_function, _AsyncCallable()], ids=["def", "call"])
def test_a_coroutine_connection_callback_is_refused_before_dialling(
    listener: socket.socket, name: str, callback: Any
) -> None:
    port = listener.getsockname()[1]
    options: dict[str, Any] = {name: callback}
    with pytest.raises(TypeError, match=rf"^{name} is a coroutine function"):
        memphis_sync.connect("127.0.0.1", USER, connection_token=TOKEN, port=port, **options)
    assert not _dialled(listener)


def test_plain_connection_callbacks_are_accepted(broker: EmbeddedBroker) -> None:
    closed = threading.Event()
    conn = memphis_sync.connect(
        broker.host,
        USER,
        connection_token=TOKEN,
        port=broker.port,
        on_closed=lambda error: closed.set(),
    )
    conn.close()
    assert closed.wait(10)


def test_a_coroutine_consume_handler_is_refused_and_nothing_starts(broker: EmbeddedBroker) -> None:
    with memphis_sync.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
        station = unique("coro-handler")
        conn.produce(station, "p", b"one")
        consumer = conn.create_consumer(station, "c", batch_max_wait_time=0.2)
        with pytest.raises(TypeError, match=r"^handler is a coroutine function"):
            consumer.consume(_coroutine_function)
        # No loop was started by the refused call: a plain handler starts one and gets the
        # message (were one running, this call would be ignored and the message lost to it).
        got = threading.Event()
        consumer.consume(lambda messages, error, context: messages and got.set())
        assert got.wait(10)
        consumer.stop_consume()


def test_a_coroutine_error_handler_is_refused_before_the_consumer_is_created(
    broker: EmbeddedBroker,
) -> None:
    with memphis_sync.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
        station = conn.create_station(unique("coro-error-handler"))
        with pytest.raises(TypeError, match=r"^error_handler is a coroutine function"):
            station.create_consumer("c", error_handler=_coroutine_function)
        with pytest.raises(TypeError, match=r"^error_handler is a coroutine function"):
            conn.fetch_messages(station.name, "f", error_handler=_AsyncCallable())
        # Nothing reached the broker: no consumer group was registered.
        assert conn.station_info(station.name).consumer_groups == ()
