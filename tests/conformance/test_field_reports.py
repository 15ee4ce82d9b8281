"""Field reports from users of the Memphis SDKs and nats-py, replayed on all three frontends.

Each test is one report: it failed before its fix, against the real broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN, USER
from tests.support.probe import BrokerProbe
from tests.support.waits import wait_until


def test_consumers_are_cached_by_group_and_options(conn: Any, name: Callable[[str], str]) -> None:
    # Report: create_consumer("worker", g1) then ("worker", g2) returned the g1 consumer; g2 was
    # never registered and never received a message.
    station = name("st")
    producer = conn.create_producer(station, "p")
    g1 = conn.create_consumer(station, "worker", consumer_group="g1", batch_max_wait_time=0.5)
    g2 = conn.create_consumer(station, "worker", consumer_group="g2", batch_max_wait_time=0.5)
    assert (g1.consumer_group, g2.consumer_group) == ("g1", "g2")
    again = conn.create_consumer(station, "worker", consumer_group="g1", batch_max_wait_time=0.5)
    assert again.consumer_group == "g1"
    producer.produce(b"to both groups")
    assert [m.data for m in g1.fetch()] == [b"to both groups"]
    assert [m.data for m in g2.fetch()] == [b"to both groups"]


def test_idempotency_window_below_the_brokers_floor_is_refused(
    conn: Any, memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: idempotency_window=0 was accepted and the broker used 120 s.
    for window in (0, 0.05):
        with pytest.raises(memphis.LocalProtocolError, match="idempotency_window"):
            conn.create_station(name("st"), idempotency_window=window)
    conn.create_station(name("st"), idempotency_window=0.1)


def test_a_partition_number_the_station_lacks_is_refused_whatever_the_count(
    conn: Any, memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: 9 on a 3-partition station raised, 5 on a 1-partition station was ignored.
    one = conn.create_station(name("one"))
    three = conn.create_station(name("three"), partitions_number=3)
    for station, number in ((one, 5), (three, 9)):
        producer = station.create_producer("p")
        with pytest.raises(memphis.LocalProtocolError, match="Partition number is out of range"):
            producer.produce(b"x", partition_number=number)


def test_flush_lists_every_failed_async_produce(
    connect: Callable[..., Any], memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: flush() raised one bare NoRespondersError, nothing about which messages.
    station = name("st")
    conn = connect()
    producer = conn.create_producer(station, "p")
    producer.produce(b"stored")
    other = connect()
    other.destroy_station(station)
    other.close()
    for i in range(3):
        producer.produce(b"x", async_produce=True, msg_id=f"id-{i}", ack_wait=3.0)
    with pytest.raises(memphis.AsyncProduceError) as info:
        producer.flush()
    error = info.value
    assert error.count == 3
    assert [(f.position, f.msg_id) for f in error.failures] == [
        (2, "id-0"),
        (3, "id-1"),
        (4, "id-2"),
    ]
    # No stream answers (503) and a lookup finds none; on a loaded machine the first attempt may
    # time out before its 503 comes back. Either way the message was not stored.
    unstored = (memphis.StationUnreachableError, memphis.RequestTimeoutError)
    assert all(isinstance(f.error, unstored) for f in error.failures)
    assert all(station in str(f.error) for f in error.failures)
    producer.flush()  # reported once: the next flush is clean


def test_unsupported_message_types_are_type_errors_naming_the_type(
    conn: Any, memphis: Any, name: Callable[[str], str], probe: BrokerProbe
) -> None:
    # Report: a set, a datetime, an int or None gave "MemphisSchemaError: unsupported message
    # type" on a station with no schema.
    import datetime

    station = name("st")
    producer = conn.create_producer(station, "p")
    for message in ({1, 2}, datetime.datetime.now(), 7, None):
        with pytest.raises(TypeError, match=type(message).__name__) as info:
            producer.produce(message)
        assert isinstance(info.value, memphis.MessageTypeError)
    assert probe.message_count(station) == 0


def test_user_headers_exclude_the_sdks_own(
    conn: Any, memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: consumers saw msg-id among the user headers.
    station = name("st")
    producer = conn.create_producer(station, "p")
    producer.produce(b"x", headers={"trace": "t-1"}, msg_id="m-1")
    (message,) = conn.create_consumer(station, "c", batch_max_wait_time=0.5).fetch()
    assert message.headers == {"trace": "t-1"}
    for key in ("msg-id", "Nats-Msg-Id", "$memphis_producedBy"):
        with pytest.raises(memphis.MemphisHeaderError):
            producer.produce(b"x", headers={key: "v"})


def test_every_error_class_is_importable_from_the_frontend(memphis: Any) -> None:
    # Report: NoRespondersError and ConnectionLostError were exported by no frontend.
    import memphis_core

    # ParseError never reaches user code: the session turns it into a disconnect, and what a
    # caller sees is ConnectionClosedError or MemphisConnectError with its text.
    errors = {
        name
        for name in memphis_core.__all__
        if isinstance(getattr(memphis_core, name), type)
        and issubclass(getattr(memphis_core, name), memphis_core.MemphisError)
        and name != "ParseError"
    }
    missing = sorted(name for name in errors if not hasattr(memphis, name))
    assert missing == []


def test_producers_and_consumers_are_context_managers(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    with conn.create_producer(station, "p") as producer:
        producer.produce(b"x", async_produce=True)
    assert [row["name"] for row in probe.producers(station) if row.get("is_active")] == []
    with conn.create_consumer(station, "c", batch_max_wait_time=0.5) as consumer:
        assert [m.data for m in consumer.fetch()] == [b"x"]
    # Closed here only: the group and its durable stay on the broker (docs/protocol.md §7.12).
    assert probe.consumer_config(station, "c") is not None


def test_a_broker_outage_is_logged(
    memphis: Any, restartable: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Report: with logging.DEBUG on, a 6 s broker outage produced no log record, and the logger
    # names differed between frontends.
    caplog.set_level(logging.DEBUG, logger="memphis")
    conn = memphis.connect(
        restartable.host,
        USER,
        connection_token=TOKEN,
        port=restartable.port,
        reconnect_interval=0.2,
        max_reconnect=-1,
    )
    try:
        restartable.kill_server()
        restartable.start_server()
        wait_until(
            lambda: any("reconnected" in r.getMessage() for r in caplog.records),
            timeout=20,
            what="a 'reconnected' log record",
        )
    finally:
        conn.close()
    connection = [r for r in caplog.records if r.name == "memphis.connection"]
    text = [r.getMessage() for r in connection]
    assert any(t.startswith("connected to ") for t in text)
    assert any(t.startswith("disconnected from ") for t in text)
    assert any(t.startswith("reconnect attempt ") for t in text)
    assert any(t.startswith("reconnected to ") for t in text)


def test_logs_and_connected_server_name_the_server_actually_used(
    memphis: Any, restartable: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Report: with a server list, the log lines named the first configured server (a dead
    # one), whichever server the connection used.
    from tests.support.natsserver import free_port

    caplog.set_level(logging.DEBUG, logger="memphis")
    dead = f"127.0.0.1:{free_port()}"
    live = f"{restartable.host}:{restartable.port}"
    disconnected: list[Any] = []
    conn = memphis.connect(
        [dead, live],
        USER,
        connection_token=TOKEN,
        reconnect_interval=0.2,
        max_reconnect=-1,
        on_disconnected=disconnected.append,
    )
    try:
        assert conn.connected_server == live
        restartable.kill_server()
        wait_until(lambda: conn.connected_server is None, what="the loss noticed")
        restartable.start_server()
        wait_until(lambda: conn.connected_server == live, timeout=20, what="a reconnect")
    finally:
        conn.close()
    assert conn.connected_server is None
    text = [r.getMessage() for r in caplog.records if r.name == "memphis.connection"]
    assert f"connected to {live}" in text
    assert any(t.startswith(f"disconnected from {live}: ") for t in text)
    assert f"reconnected to {live}" in text
    # Every attempt names the server it dials.
    attempts = [t for t in text if t.startswith("reconnect attempt ")]
    assert attempts
    assert all(t.endswith((f" to {live}", f" to {dead}")) for t in attempts)
    # The callback's error names the server it concerns: the live one lost, or a dead one
    # that could not be dialled.
    assert any(str(e).startswith(f"{live}: ") for e in disconnected)
    assert all(str(e).startswith((f"{live}: ", f"{dead}: ")) for e in disconnected)


def test_connection_errors_name_the_server(memphis: Any) -> None:
    # Report: "[Errno 111] Connection refused" with no host:port.
    from tests.support.natsserver import free_port

    port = free_port()
    with pytest.raises(memphis.MemphisConnectError, match=f"127.0.0.1:{port}"):
        memphis.connect("127.0.0.1", USER, connection_token=TOKEN, port=port, reconnect=False)


def test_connection_callbacks_fire_on_outage_and_close(
    memphis: Any, restartable: EmbeddedBroker
) -> None:
    # Report: no connection events; nats-py users expect callbacks.
    seen: list[tuple[str, Any]] = []
    conn = memphis.connect(
        restartable.host,
        USER,
        connection_token=TOKEN,
        port=restartable.port,
        reconnect_interval=0.2,
        max_reconnect=-1,
        on_disconnected=lambda error: seen.append(("disconnected", error)),
        on_reconnected=lambda: seen.append(("reconnected", None)),
        on_closed=lambda error: seen.append(("closed", error)),
    )
    restartable.kill_server()
    wait_until(
        lambda: any(k == "disconnected" for k, _ in seen), timeout=10, what="on_disconnected"
    )
    restartable.start_server()
    wait_until(lambda: any(k == "reconnected" for k, _ in seen), timeout=20, what="on_reconnected")
    conn.close()
    wait_until(lambda: any(k == "closed" for k, _ in seen), timeout=10, what="on_closed")
    assert isinstance(dict(seen)["disconnected"], memphis.MemphisError)
    assert dict(seen)["closed"] is None  # a close the user asked for
    with pytest.raises(memphis.LocalProtocolError, match="on_closed must be callable"):
        memphis.connect(restartable.host, USER, connection_token=TOKEN, on_closed="nope")
