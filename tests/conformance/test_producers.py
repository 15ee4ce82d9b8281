"""Producers: payload kinds, headers, idempotency, sync/async produce, flush, destroy."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.probe import BrokerProbe, destroy_elsewhere, orphaned_producer
from tests.support.waits import wait_until

WAIT = 0.5


def _fetch_all(consumer: Any, expected: int) -> list[Any]:
    """Fetch until ``expected`` messages arrived (a fetch may return a partial batch)."""
    got: list[Any] = []
    for _ in range(20):
        got += consumer.fetch(batch_size=max(1, min(expected - len(got), 5000)))
        if len(got) >= expected:
            break
    return got


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"raw bytes", b"raw bytes"),
        (bytearray(b"a bytearray"), b"a bytearray"),
        (memoryview(b"a memoryview"), b"a memoryview"),
        ("héllo text", "héllo text".encode()),
        (b"", b""),
    ],
    ids=["bytes", "bytearray", "memoryview", "str", "empty"],
)
def test_payload_kinds_round_trip(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str], message: Any, wire: bytes
) -> None:
    station = conn.create_station(name("st"))
    station.create_producer("p").produce(message)
    consumer = station.create_consumer("c", batch_max_wait_time=WAIT)
    msgs = consumer.fetch()
    assert [bytes(m.data) for m in msgs] == [wire]


def test_dict_is_sent_as_json(conn: Any, name: Callable[[str], str]) -> None:
    station = conn.create_station(name("st"))
    doc = {"id": 1, "name": "ünïcode", "tags": ["a", "b"], "nested": {"ok": True}}
    station.create_producer("p").produce(doc)
    (msg,) = station.create_consumer("c", batch_max_wait_time=WAIT).fetch()
    assert json.loads(msg.data) == doc
    # No schema attached: data_deserialized() is the raw bytes.
    assert msg.data_deserialized() == bytes(msg.data)


def test_plain_object_is_sent_as_json(conn: Any, name: Callable[[str], str]) -> None:
    @dataclass
    class Order:
        id: int
        item: str

    station = conn.create_station(name("st"))
    station.create_producer("p").produce(Order(7, "book"))
    (msg,) = station.create_consumer("c", batch_max_wait_time=WAIT).fetch()
    assert json.loads(msg.data) == {"id": 7, "item": "book"}


def test_unsupported_message_type_is_refused_before_sending(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    with pytest.raises(memphis.MemphisError, match="unsupported message type"):
        producer.produce(object())
    assert probe.message_count(station) == 0


def test_sync_produce_is_stored_when_it_returns(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    for i in range(5):
        producer.produce(f"m{i}".encode())
        assert probe.message_count(station) == i + 1  # no waiting: produce waited for the ack


def test_headers_dict_and_producer_headers(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "Web-Producer")
    producer.produce(b"x", headers={"trace-id": "abc", "Mixed-Case": "Value"})
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    assert dict(msg.headers) == {"trace-id": "abc", "Mixed-Case": "Value"}
    assert not any(k.startswith("$memphis") for k in msg.headers)
    ((_data, stored),) = probe.stored(station)
    # docs/protocol.md §6.4: the SDK's own headers are on the wire, producer name lower-cased (7.1).
    assert stored["$memphis_producedBy"] == "web-producer"
    assert stored["$memphis_connectionId"]
    assert stored["trace-id"] == "abc"


def test_headers_object(memphis: Any, conn: Any, name: Callable[[str], str]) -> None:
    headers = memphis.Headers()
    headers.add("k1", "v1")
    headers.add("k2", "v2")
    station = name("st")
    conn.create_producer(station, "p").produce(b"x", headers=headers)
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    assert msg.headers["k1"] == "v1"
    assert msg.headers["k2"] == "v2"
    assert not any(k.startswith("$memphis") for k in msg.headers)


def test_message_without_user_headers_has_empty_headers(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_producer(station, "p").produce(b"x")
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    assert len(msg.headers) == 0


@pytest.mark.parametrize("key", ["$memphis_connectionId", "$memphis", "$memphisAnything"])
def test_reserved_header_keys_are_refused_before_sending(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str], key: str
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    with pytest.raises(memphis.MemphisHeaderError) as info:
        producer.produce(b"x", headers={key: "spoof"})
    assert str(info.value) == "keys in headers should not start with $memphis"
    assert isinstance(info.value, memphis.MemphisError)
    as_object = memphis.Headers()
    as_object.add("fine", "v")
    as_object.add(key, "spoof")
    with pytest.raises(memphis.MemphisHeaderError, match=r"^keys in headers should not start"):
        producer.produce(b"x", headers=as_object)
    with pytest.raises(memphis.MemphisHeaderError):
        conn.produce(station, "p", b"x", headers={key: "spoof"})
    assert probe.message_count(station) == 0


@pytest.mark.parametrize(
    "headers",
    [{"bad key": "v"}, {"k": "line\r\nbreak"}, {"": "v"}, {"colon:key": "v"}],
    ids=["space", "crlf", "empty", "colon"],
)
def test_malformed_headers_are_refused(
    memphis: Any,
    conn: Any,
    probe: BrokerProbe,
    name: Callable[[str], str],
    headers: dict[str, str],
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    with pytest.raises(memphis.MemphisError):
        producer.produce(b"x", headers=headers)
    assert probe.message_count(station) == 0


def test_msg_id_deduplicates(conn: Any, probe: BrokerProbe, name: Callable[[str], str]) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    producer.produce(b"first", msg_id="order-1")
    producer.produce(b"second", msg_id="order-1")  # duplicate: accepted, not stored
    producer.produce(b"third", msg_id="order-2")
    assert probe.message_count(station) == 2
    stored = probe.stored(station)
    assert [d for d, _h in stored] == [b"first", b"third"]
    # : the id goes out as both dedup headers (Memphis fork and stock JetStream).
    assert stored[0][1]["msg-id"] == "order-1"
    assert stored[0][1]["Nats-Msg-Id"] == "order-1"


def test_msg_id_dedup_across_producers_and_async(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station)
    a = conn.create_producer(station, "a")
    b = conn.create_producer(station, "b")
    a.produce(b"one", msg_id="same")
    b.produce(b"two", msg_id="same", async_produce=True)
    b.flush()
    assert probe.message_count(station) == 1


def test_empty_msg_id_is_refused(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    with pytest.raises(memphis.LocalProtocolError, match=r"^msg id can not be empty$"):
        producer.produce(b"x", msg_id="")
    assert probe.message_count(station) == 0


@pytest.mark.parametrize("ack_wait", [0, -1.0])
def test_bad_ack_wait_is_refused(
    memphis: Any, conn: Any, name: Callable[[str], str], ack_wait: float
) -> None:
    producer = conn.create_producer(name("st"), "p")
    with pytest.raises(memphis.LocalProtocolError):
        producer.produce(b"x", ack_wait=ack_wait)


def test_async_produce_and_flush(conn: Any, probe: BrokerProbe, name: Callable[[str], str]) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    n = 500
    handles = [producer.produce(f"{i}".encode(), async_produce=True) for i in range(n)]
    assert [h.position for h in handles] == list(range(1, n + 1))
    producer.flush()
    assert probe.message_count(station) == n  # everything acked when flush returns
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT, batch_size=n)
    got = _fetch_all(consumer, n)
    assert [int(m.data) for m in got] == list(range(n))  # order kept
    producer.flush()  # nothing pending: returns at once


def test_flush_raises_the_first_async_failure(
    memphis: Any, connect: Callable[..., Any], name: Callable[[str], str]
) -> None:
    station = name("st")
    conn, other = connect(), connect()
    producer = conn.create_producer(station, "p")
    producer.produce(b"ok", async_produce=True)
    producer.flush()
    # Destroy the station behind this connection's back: its streams are gone, so every
    # publish now fails at the server (no stream listens on the subject).
    other.create_station(station).destroy()
    for i in range(3):
        producer.produce(f"lost {i}".encode(), async_produce=True)
    with pytest.raises(memphis.MemphisError):
        producer.flush()


def test_sync_produce_to_a_vanished_station_raises(
    memphis: Any, connect: Callable[..., Any], name: Callable[[str], str]
) -> None:
    station = name("st")
    conn, other = connect(), connect()
    producer = conn.create_producer(station, "p")
    other.create_station(station).destroy()
    with pytest.raises(memphis.MemphisError):
        producer.produce(b"nobody stores this", ack_wait=5.0)


def test_conn_produce_without_creating_a_producer(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.produce(station, "Implicit", b"one")
    conn.produce(station, "implicit", b"two", headers={"k": "v"}, msg_id="id-2")
    conn.produce(station, "implicit", b"two again", msg_id="id-2")
    conn.produce(station, "implicit", b"three", async_produce=True)
    wait_until(lambda: probe.message_count(station) == 3, what="3 stored messages")
    stored = probe.stored(station)
    assert [d for d, _h in stored] == [b"one", b"two", b"three"]
    assert {h["$memphis_producedBy"] for _d, h in stored} == {"implicit"}
    assert stored[1][1]["k"] == "v"
    # One cached producer for both spellings of the name.
    assert len([r for r in probe.producers(station) if r["name"] == "implicit"]) == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [({"bogus": 1}, "TypeError"), ({"ack_wait": 0}, "LocalProtocolError")],
    ids=["unknown keyword", "bad value"],
)
def test_conn_produce_refuses_bad_options_before_creating_its_producer(
    memphis: Any,
    conn: Any,
    probe: BrokerProbe,
    name: Callable[[str], str],
    options: dict[str, object],
    error: str,
) -> None:
    # Bad input is refused before any byte is sent: not even the producer it would create.
    station = name("st")
    conn.create_station(station)
    with pytest.raises(getattr(memphis, error, TypeError)):
        conn.produce(station, "p", b"x", **options)
    assert probe.producers(station) == []


def test_create_producer_registers_on_the_broker(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    st = conn.create_station(station)
    st.create_producer("first")
    conn.create_producer(station, "second")
    assert sorted(r["name"] for r in probe.producers(station)) == ["first", "second"]


def test_create_producer_twice_returns_a_working_producer(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    one = conn.create_producer(station, "p")
    two = conn.create_producer(station, "p")
    one.produce(b"a")
    two.produce(b"b")
    assert probe.message_count(station) == 2
    assert len(probe.producers(station)) == 1  # cached per connection (docs/protocol.md §6.1)


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        ("", "Producer name can not be empty"),
        ("bad name", "Only alphanumeric and the '_', '-', '.' characters are allowed in Producer"),
        ("_p", "Producer name can not start or end with non alphanumeric character"),
        ("p" * 129, "Producer should be under 128 characters"),
    ],
)
def test_bad_producer_names(
    memphis: Any, conn: Any, name: Callable[[str], str], bad: str, text: str
) -> None:
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.create_producer(name("st"), bad)
    assert str(info.value) == text


def test_destroy_unregisters_and_disables_the_producer(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    producer.produce(b"before")
    producer.destroy()
    assert probe.producers(station) == []
    with pytest.raises(memphis.MemphisError):
        producer.produce(b"after")
    assert probe.message_count(station) == 1
    # A new producer of the same name works again.
    conn.create_producer(station, "p").produce(b"new")
    assert probe.message_count(station) == 2


def test_a_produce_to_a_station_destroyed_elsewhere_is_unreachable_within_3_s(
    connect: Callable[..., Any], memphis: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # A 503 from a stream that no longer exists is not a leader election: it must not be retried
    # through the whole ack_wait (15 s by default). Also a field report: produce raised a bare
    # NoRespondersError, and create_producer handed back the same dead cached producer forever.
    station = name("st")
    conn = connect()
    producer = conn.create_producer(station, "p")
    producer.produce(b"first")
    destroy_elsewhere(connect, station)  # behind this connection's back
    started = time.monotonic()
    with pytest.raises(memphis.StationUnreachableError, match=station):
        producer.produce(b"lost")
    assert time.monotonic() - started < 3.0
    # The async form is reported by flush, as unreachable too.
    producer.produce(b"lost", async_produce=True)
    with pytest.raises(memphis.AsyncProduceError) as info:
        producer.flush()
    assert time.monotonic() - started < 6.0
    (failure,) = info.value.failures
    assert isinstance(failure.error, memphis.StationUnreachableError)
    # create_producer registers again, and the station lives again.
    conn.create_producer(station, "p").produce(b"second")
    assert probe.message_count(station) == 1


def test_async_produce_returns_a_handle_to_check_or_wait_for(
    connect: Callable[..., Any], memphis: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn = connect()
    producer = conn.create_producer(station, "p")
    handle = producer.produce(b"first", async_produce=True)
    ack = handle.wait(timeout=10)
    assert handle.done
    assert handle.position == 1
    assert (ack.sequence, ack.duplicate) == (1, False)
    assert handle.result() == ack
    # A failure reaches the handle, and flush() still reports it: the handle is optional.
    destroy_elsewhere(connect, station)
    lost = producer.produce(b"lost", async_produce=True, msg_id="m-2")
    with pytest.raises(memphis.StationUnreachableError):
        lost.wait(timeout=10)
    with pytest.raises(memphis.StationUnreachableError):
        lost.result()
    with pytest.raises(memphis.AsyncProduceError) as info:
        producer.flush()
    assert [(f.position, f.msg_id) for f in info.value.failures] == [(2, "m-2")]


def test_one_producer_shared_by_threads(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(50):
                producer.produce(f"{w}-{i}".encode(), async_produce=i % 2 == 0)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    producer.flush()
    assert errors == []
    assert probe.message_count(station) == 200
    stored = [d.decode() for d, _h in probe.stored(station)]
    for w in range(4):  # each thread's messages stay in its own order
        mine = [s for s in stored if s.startswith(f"{w}-")]
        assert mine == [f"{w}-{i}" for i in range(50)]


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
def test_flush_lists_every_failed_async_produce(
    connect: Callable[..., Any], memphis: Any, name: Callable[[str], str]
) -> None:
    # Report: flush() raised one bare NoRespondersError, nothing about which messages.
    station = name("st")
    _, producer = orphaned_producer(connect, station)
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


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
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
