"""Reconnects : a kill -9 of nats-server loses no acknowledged message, ``msg_id``
keeps retries from duplicating, producers and consumers resume by themselves; with
``reconnect=False`` or once ``max_reconnect`` is used up the connection is closed for good.
What the application is told of an outage: log records, ``connected_server`` and the connection
callbacks, each naming the server it concerns.

Each test gets its own broker (file storage in a temp dir), since it kills the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.frontends import connect_root
from tests.support.names import TOKEN, USER
from tests.support.probe import Recorder
from tests.support.waits import wait_until

WAIT = 0.3


@pytest.fixture
def connect_to(memphis: Any) -> Iterator[Callable[..., Any]]:
    opened: list[Any] = []

    def _connect(broker: EmbeddedBroker, **kwargs: Any) -> Any:
        kwargs.setdefault("reconnect_interval", 0.1)
        conn = connect_root(memphis, broker, **kwargs)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        try:
            conn.close()
        except Exception as err:  # closing after a dead broker may complain; never hang
            print(f"close: {err!r}")


def _retry(memphis: Any, fn: Callable[[], Any], what: str) -> Any:
    """Call ``fn`` until it stops raising MemphisError: the broker's control plane reconnects
    to the restarted nats-server on its own schedule and answers ``no responders`` until then.
    """
    result: list[Any] = []

    def attempt() -> bool:
        try:
            result.append(fn())
        except memphis.MemphisError:
            return False
        return True

    wait_until(attempt, timeout=30, what=what)
    return result[0]


def _produce_retrying(memphis: Any, producer: Any, data: bytes, msg_id: str) -> int:
    """What an application does around an outage: retry until acked (same msg_id)."""
    attempts = 0

    def done() -> bool:
        nonlocal attempts
        attempts += 1
        try:
            producer.produce(data, msg_id=msg_id, ack_wait=2.0)
        except memphis.MemphisError:
            return False
        return True

    wait_until(done, timeout=30, what=f"produce of {msg_id!r} to succeed")
    return attempts


def test_kill_and_restart_loses_nothing_and_duplicates_nothing(
    memphis: Any,
    restartable: EmbeddedBroker,
    connect_to: Callable[..., Any],
) -> None:
    conn = connect_to(restartable)
    producer = conn.create_producer("orders", "p")
    for i in range(5):
        producer.produce(f"m{i}".encode(), msg_id=f"id-{i}")
    restartable.kill_server()
    wait_until(lambda: not conn.is_connected, what="the client to notice the outage")
    restartable.start_server()
    back = time.monotonic()
    wait_until(lambda: conn.is_connected, timeout=20, what="the client to reconnect")
    # reconnect_interval=0.1: back within a few attempts, not after some unrelated timer.
    assert time.monotonic() - back < 5.0
    # The last message again (a retry whose ack was lost), then new ones.
    _produce_retrying(memphis, producer, b"m4", "id-4")
    for i in range(5, 8):
        _produce_retrying(memphis, producer, f"m{i}".encode(), f"id-{i}")
    consumer = _retry(
        memphis,
        lambda: conn.create_consumer("orders", "c", batch_max_wait_time=WAIT),
        "the control plane to answer again",
    )
    got = [m.data for m in consumer.fetch(batch_size=20)]
    assert got == [f"m{i}".encode() for i in range(8)]


def test_consume_resumes_after_restart(
    restartable: EmbeddedBroker, connect_to: Callable[..., Any]
) -> None:
    conn = connect_to(restartable)
    producer = conn.create_producer("events", "p")
    consumer = conn.create_consumer("events", "c", pull_interval=0.05, batch_max_wait_time=WAIT)
    rec = Recorder()

    def handler(msgs: list[Any], error: Any, context: Any) -> None:
        for m in msgs or []:
            m.ack()
            rec(bytes(m.data))

    producer.produce(b"before")
    consumer.consume(handler)
    try:
        rec.wait_for(lambda calls: (b"before",) in calls)
        restartable.kill_server()
        restartable.start_server()
        wait_until(lambda: conn.is_connected, timeout=20, what="the client to reconnect")

        def sent() -> bool:
            try:
                producer.produce(b"after", msg_id="after", ack_wait=2.0)
            except Exception:
                return False
            return True

        wait_until(sent, timeout=30, what="a produce after the restart")
        rec.wait_for(lambda calls: (b"after",) in calls, timeout=30)
    finally:
        consumer.stop_consume()
    # Nothing lost, nothing foreign. "before" may come twice: JetStream is at-least-once, and
    # its ack, in flight or not yet on the broker's disk when nats-server is SIGKILLed, can be
    # lost with it (seen in CI: before, before, after).
    calls = [c[0] for c in rec.calls]
    assert calls[0] == b"before"
    assert calls[-1] == b"after"
    assert set(calls) == {b"before", b"after"}


def test_without_reconnect_the_connection_closes(
    memphis: Any, restartable: EmbeddedBroker, connect_to: Callable[..., Any]
) -> None:
    conn = connect_to(restartable, reconnect=False)
    conn.create_station("s1")
    restartable.kill_server()
    wait_until(lambda: not conn.is_connected, what="the connection to drop")
    restartable.start_server()
    with pytest.raises(memphis.MemphisConnectError):
        conn.create_station("s2")
    assert not conn.is_connected


def test_gives_up_after_max_reconnect(
    memphis: Any, restartable: EmbeddedBroker, connect_to: Callable[..., Any]
) -> None:
    conn = connect_to(restartable, max_reconnect=2, reconnect_interval=0.1)
    restartable.stop_server()

    def closed() -> bool:
        try:
            conn.create_station("never")
        except memphis.ConnectionClosedError:
            return True
        except memphis.MemphisError:
            return False  # still trying
        raise AssertionError("create_station succeeded with the server down")

    wait_until(closed, timeout=30, what="the client to give up")
    assert not conn.is_connected


def test_the_defaults_and_three_servers_survive_a_6_s_outage_of_the_only_live_one(
    memphis: Any, restartable: EmbeddedBroker, name: Callable[[str], str]
) -> None:
    # Report: max_reconnect counted over the whole pool; with the defaults (10 attempts, 1 s)
    # and two dead servers listed beside the live one, the client gave up after about 3.5 s
    # (docs/cluster-client.md, "The budget in seconds").
    from tests.support.nats_server import free_port

    live = f"{restartable.host}:{restartable.port}"
    servers = [f"127.0.0.1:{free_port()}", live, f"127.0.0.1:{free_port()}"]
    conn = memphis.connect(servers, USER, connection_token=TOKEN)  # default budget
    try:
        station = name("st")
        producer = conn.create_producer(station, "p")
        producer.produce(b"before")
        restartable.kill_server()
        down = time.monotonic()
        wait_until(lambda: not conn.is_connected, what="the loss noticed")
        time.sleep(6.0)  # the outage itself: nothing to wait for but the clock
        restartable.start_server()
        wait_until(lambda: conn.is_connected, timeout=20, what="a reconnect")
        assert time.monotonic() - down >= 6.0
        _produce_retrying(memphis, producer, b"after", msg_id="after-outage")
    finally:
        conn.close()


# ----------------------------------------------------------------- what the application is told


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_a_broker_outage_is_logged(
    memphis: Any, restartable: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Report: with logging.DEBUG on, a 6 s broker outage produced no log record, and the logger
    # names differed between frontends.
    caplog.set_level(logging.DEBUG, logger="memphis")
    conn = connect_root(memphis, restartable, reconnect_interval=0.2, max_reconnect=-1)
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


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_logs_and_connected_server_name_the_server_actually_used(
    memphis: Any, restartable: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Report: with a server list, the log lines named the first configured server (a dead
    # one), whichever server the connection used.
    from tests.support.nats_server import free_port

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


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_connection_callbacks_fire_on_outage_and_close(
    memphis: Any, restartable: EmbeddedBroker
) -> None:
    # Report: no connection events; nats-py users expect callbacks.
    seen: list[tuple[str, Any]] = []
    conn = connect_root(
        memphis,
        restartable,
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
