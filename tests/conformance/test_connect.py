"""connect(): auth modes, validation before dialling, host normalisation, lifecycle."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from memphis_broker import EmbeddedBroker, free_port
from tests.support.frontends import Frontend
from tests.support.names import PASSWORD, TOKEN, USER

AUTH_ERROR = "you have to connect with one of the following methods: connection token / password"


def test_token_connect_reports_connected_and_close_disconnects(
    connect: Callable[..., Any], name: Callable[[str], str]
) -> None:
    conn = connect()
    assert conn.is_connected is True
    conn.create_station(name("st"))  # the connection really talks to the broker
    conn.close()
    assert conn.is_connected is False


def test_context_manager_closes_the_connection(memphis: Any, broker: EmbeddedBroker) -> None:
    with memphis.connect(
        broker.host, USER, connection_token=TOKEN, port=broker.port
    ) as conn:
        assert conn.is_connected
        inside = conn
    assert inside.is_connected is False


def test_context_manager_closes_on_error(memphis: Any, broker: EmbeddedBroker) -> None:
    kept: list[Any] = []

    def body() -> None:
        with memphis.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
            kept.append(conn)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert kept[0].is_connected is False


def test_close_twice_is_harmless(connect: Callable[..., Any]) -> None:
    conn = connect()
    conn.close()
    conn.close()
    assert not conn.is_connected


def test_calls_after_close_raise_connection_closed(
    memphis: Any, connect: Callable[..., Any], name: Callable[[str], str]
) -> None:
    conn = connect()
    conn.close()
    with pytest.raises(memphis.ConnectionClosedError):
        conn.create_station(name("st"))
    assert issubclass(memphis.ConnectionClosedError, memphis.MemphisError)


def test_password_mode(
    memphis: Any, password_broker: EmbeddedBroker, name: Callable[[str], str]
) -> None:
    with memphis.connect(
        password_broker.host, USER, password=PASSWORD, port=password_broker.port
    ) as conn:
        assert conn.is_connected
        station = conn.create_station(name("st"))
        producer = station.create_producer("p")
        producer.produce(b"over password auth")
        consumer = station.create_consumer("c", batch_max_wait_time=0.5)
        assert [m.data for m in consumer.fetch()] == [b"over password auth"]


def test_password_mode_with_explicit_account_id(
    memphis: Any, password_broker: EmbeddedBroker
) -> None:
    with memphis.connect(
        password_broker.host,
        USER,
        password=PASSWORD,
        account_id=1,
        port=password_broker.port,
    ) as conn:
        assert conn.is_connected


def test_wrong_password_is_a_connect_error(
    memphis: Any, password_broker: EmbeddedBroker
) -> None:
    started = time.monotonic()
    with pytest.raises(memphis.MemphisConnectError) as info:
        memphis.connect(
            password_broker.host,
            USER,
            password="not-the-password",
            port=password_broker.port,
            reconnect=False,
            timeout=4.0,
        )
    assert "authorization" in str(info.value).lower()
    # The server's -ERR is the answer (after the plain-username retry): no waiting out timeout.
    assert time.monotonic() - started < 3.0


def test_token_on_a_password_broker_is_a_connect_error(
    memphis: Any, password_broker: EmbeddedBroker
) -> None:
    with pytest.raises(memphis.MemphisConnectError, match=r"(?i)authorization"):
        memphis.connect(
            password_broker.host,
            USER,
            connection_token=TOKEN,
            port=password_broker.port,
            reconnect=False,
            timeout=5.0,
        )


def test_wrong_token_is_a_connect_error(memphis: Any, broker: EmbeddedBroker) -> None:
    with pytest.raises(memphis.MemphisConnectError, match=r"(?i)authorization"):
        memphis.connect(
            broker.host,
            USER,
            connection_token="wrong-token",
            port=broker.port,
            reconnect=False,
            timeout=5.0,
        )


def test_nothing_listening_is_a_connect_error(memphis: Any) -> None:
    port = free_port("127.0.0.1")
    with pytest.raises(memphis.MemphisConnectError):
        memphis.connect(
            "127.0.0.1", USER, connection_token=TOKEN, port=port, reconnect=False, timeout=2.0
        )


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"connection_token": TOKEN, "password": PASSWORD},
        {"connection_token": "", "password": ""},
        {"connection_token": None, "password": None},
    ],
    ids=["neither", "both", "both-empty", "both-none"],
)
def test_exactly_one_auth_method_checked_before_dialling(
    memphis: Any, auth: dict[str, Any]
) -> None:
    # Nothing listens on this port: reaching the network would give MemphisConnectError, so a
    # LocalProtocolError proves the check runs before any connection attempt.
    port = free_port("127.0.0.1")
    with pytest.raises(memphis.LocalProtocolError) as info:
        memphis.connect("127.0.0.1", USER, port=port, reconnect=False, **auth)
    # The Go SDK's text first (users match on it), then which mistake it was.
    which = "both" if auth.get("connection_token") and auth.get("password") else "neither"
    assert str(info.value).startswith(f"{AUTH_ERROR}: {which} ")
    assert isinstance(info.value, memphis.MemphisError)


@pytest.mark.parametrize("scheme", ["http://", "https://"])
def test_http_scheme_is_stripped_from_host(
    connect: Callable[..., Any], broker: EmbeddedBroker, scheme: str
) -> None:
    conn = connect(host=scheme + broker.host)
    assert conn.is_connected


@pytest.mark.parametrize(
    ("tls_args", "text"),
    [
        (("cert.pem", "", ""), "must provide a TLS key file"),
        (("", "key.pem", "ca.pem"), "must provide a TLS cert file"),
        (("cert.pem", "key.pem", ""), "must provide a TLS ca file"),
    ],
)
def test_tls_needs_all_three_files(
    memphis: Any, tls_args: tuple[str, str, str], text: str
) -> None:
    port = free_port("127.0.0.1")
    with pytest.raises(memphis.LocalProtocolError, match=f"^{text}$"):
        memphis.connect(
            "127.0.0.1", USER, connection_token=TOKEN, port=port, tls=memphis.TLS(*tls_args)
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 0},
        {"port": 70000},
        {"timeout": 0},
        {"reconnect_interval": -1.0},
        {"max_reconnect": -2},
        {"account_id": -1},
    ],
    ids=lambda d: next(iter(d)),
)
def test_bad_connect_options_are_local_errors(memphis: Any, bad: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"connection_token": TOKEN, "port": free_port("127.0.0.1")}
    kwargs.update(bad)
    with pytest.raises(memphis.LocalProtocolError):
        memphis.connect("127.0.0.1", USER, **kwargs)


def test_two_connections_are_independent(
    connect: Callable[..., Any], name: Callable[[str], str]
) -> None:
    first, second = connect(), connect()
    station = name("st")
    first.create_station(station)
    first.produce(station, "p", b"from first")
    consumer = second.create_consumer(station, "c", batch_max_wait_time=0.5)
    first.close()
    assert second.is_connected
    assert [m.data for m in consumer.fetch()] == [b"from first"]


def test_native_async_with_connect_owns_its_tasks(
    frontend: Frontend, broker: EmbeddedBroker, name: Callable[[str], str]
) -> None:
    """The async frontends' own idiom, without the blocking proxy: ``async with connect()``."""
    if not frontend.is_async:
        pytest.skip("async frontends only")
    memphis = frontend.module
    station = name("st")

    async def body() -> tuple[bool, list[bytes], bool]:
        async with memphis.connect(
            broker.host, USER, connection_token=TOKEN, port=broker.port
        ) as conn:
            inside = conn.is_connected
            producer = await conn.create_producer(station, "p")
            await producer.produce(b"native")
            consumer = await conn.create_consumer(station, "c", batch_max_wait_time=0.3)
            messages = await consumer.fetch()
            for msg in messages:
                await msg.ack()
            got = [bytes(m.data) for m in messages]
        return inside, got, conn.is_connected

    inside, got, after = frontend.run(body)
    assert inside is True
    assert got == [b"native"]
    assert after is False


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_connection_errors_name_the_server(memphis: Any) -> None:
    # Report: "[Errno 111] Connection refused" with no host:port.
    from tests.support.nats_server import free_port

    port = free_port()
    with pytest.raises(memphis.MemphisConnectError, match=f"127.0.0.1:{port}"):
        memphis.connect("127.0.0.1", USER, connection_token=TOKEN, port=port, reconnect=False)
