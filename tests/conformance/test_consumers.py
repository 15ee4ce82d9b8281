"""Consumers: options and defaults (checked on the broker's durable), fetch, ack/nack/delay,
consumer groups, start sequence / last messages, prefetch, destroy, ``conn.fetch_messages``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.probe import BrokerProbe, Recorder
from tests.support.waits import wait_until

WAIT = 0.3
BATCH_ERROR = "Batch size can not be greater than 5000 or less than 1"


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def _produce(conn: Any, station: str, n: int, **kwargs: Any) -> None:
    producer = conn.create_producer(station, "p")
    for i in range(n):
        producer.produce(f"m{i}".encode(), async_produce=True, **kwargs)
    producer.flush()


def test_defaults_on_the_broker(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station)
    conn.create_consumer(station, "Billing")
    config = probe.consumer_config(station, "billing")  # group = consumer name, lower-cased
    assert config is not None
    assert config.ack_wait == pytest.approx(30)  # max_ack_time=30.0
    assert config.max_deliver == 10  # max_msg_deliveries=10
    assert _enum(config.deliver_policy) == "all"  # start 1 / last -1
    assert _enum(config.ack_policy) == "explicit"
    assert config.filter_subject == f"{probe.stream(station)}.final"
    (row,) = probe.consumers(station)
    assert row["consumers_group"].lower() == "billing"


def test_every_option_reaches_the_broker(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station, partitions_number=2)
    conn.create_consumer(
        station,
        "c",
        consumer_group="Group.One",
        pull_interval=0.2,
        batch_size=50,
        batch_max_wait_time=0.5,
        max_ack_time=12.5,
        max_msg_deliveries=3,
        start_consume_from_seq=1,
        last_messages=-1,
    )
    for p in (1, 2):
        config = probe.consumer_config(station, "group#one", p)  # '.' -> '#'
        assert config is not None
        assert config.ack_wait == pytest.approx(12.5)
        assert config.max_deliver == 3


def test_fetch_returns_messages_in_order_with_headers_and_sequence(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    for i in range(5):
        producer.produce(f"m{i}".encode(), headers={"i": str(i)})
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT)
    msgs = consumer.fetch(batch_size=10)
    assert [m.data for m in msgs] == [f"m{i}".encode() for i in range(5)]
    assert [m.headers["i"] for m in msgs] == [str(i) for i in range(5)]
    assert [m.sequence_number for m in msgs] == [1, 2, 3, 4, 5]


def test_fetch_batch_size_limits_the_batch(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    _produce(conn, station, 7)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT, batch_size=2)
    assert len(consumer.fetch(batch_size=3)) == 3
    assert len(consumer.fetch(batch_size=3)) == 3
    assert len(consumer.fetch(batch_size=3)) == 1


def test_fetch_on_an_empty_station_waits_about_batch_max_wait_time(
    conn: Any, name: Callable[[str], str]
) -> None:
    consumer = conn.create_consumer(name("st"), "c", batch_max_wait_time=0.5)
    started = time.monotonic()
    assert consumer.fetch() == []
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3.0


@pytest.mark.parametrize("size", [0, 5001, -1])
def test_batch_size_bounds(
    memphis: Any, conn: Any, name: Callable[[str], str], size: int
) -> None:
    station = name("st")
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.create_consumer(station, "c", batch_size=size)
    assert str(info.value) == BATCH_ERROR
    consumer = conn.create_consumer(station, "ok", batch_max_wait_time=WAIT)
    with pytest.raises(memphis.LocalProtocolError) as info:
        consumer.fetch(batch_size=size)
    assert str(info.value) == BATCH_ERROR
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.fetch_messages(station, "fm", batch_size=size)
    assert str(info.value) == BATCH_ERROR


def test_batch_size_limits_are_inclusive(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    _produce(conn, station, 2)
    consumer = conn.create_consumer(station, "c", batch_size=5000, batch_max_wait_time=WAIT)
    assert [m.data for m in consumer.fetch(batch_size=1)] == [b"m0"]
    assert [m.data for m in consumer.fetch(batch_size=5000)] == [b"m1"]


def test_ack_removes_the_message(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 3)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT, max_ack_time=1.0)
    msgs = consumer.fetch()
    assert len(msgs) == 3
    for m in msgs:
        m.ack()
    wait_until(lambda: probe.ack_floor(station, "c") == 3, what="acks on the broker")
    # Unacked messages would come back after max_ack_time=1 s; a 1.5 s window sees none.
    again = conn.create_consumer(station, "c", batch_max_wait_time=1.5, max_ack_time=1.0)
    assert again.fetch() == []


def test_unacked_message_is_redelivered_after_max_ack_time(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 1)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT, max_ack_time=0.5)
    (first,) = consumer.fetch()
    redelivered = wait_until(consumer.fetch, timeout=10, what="redelivery")
    assert [(m.data, m.sequence_number) for m in redelivered] == [
        (first.data, first.sequence_number)
    ]
    redelivered[0].ack()


def test_nack_redelivers_at_once(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    _produce(conn, station, 1)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=5.0, max_ack_time=30)
    # batch_size=1: a fetch returns as soon as one message is there (else it waits the window).
    (msg,) = consumer.fetch(batch_size=1)
    msg.nack()
    started = time.monotonic()
    again = consumer.fetch(batch_size=1)
    assert time.monotonic() - started < 4.0  # not the 30 s ack timeout, not the fetch window
    assert [(m.data, m.sequence_number) for m in again] == [(msg.data, msg.sequence_number)]
    again[0].ack()


def test_delay_redelivers_after_the_delay(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    _produce(conn, station, 1)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT, max_ack_time=30)
    (msg,) = consumer.fetch()
    started = time.monotonic()
    msg.delay(1.5)
    assert consumer.fetch() == []  # still delayed
    again = wait_until(consumer.fetch, timeout=10, what="delayed redelivery")
    assert time.monotonic() - started >= 1.3
    assert [m.sequence_number for m in again] == [msg.sequence_number]
    again[0].ack()


def test_negative_delay_is_refused(
    memphis: Any, conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 1)
    (msg,) = conn.create_consumer(station, "c", batch_max_wait_time=WAIT).fetch()
    with pytest.raises(memphis.LocalProtocolError):
        msg.delay(-1)


def test_consumer_group_members_share_the_messages(
    connect: Callable[..., Any], name: Callable[[str], str]
) -> None:
    station = name("st")
    first, second = connect(), connect()
    _produce(first, station, 20)
    a = first.create_consumer(station, "a", consumer_group="workers", batch_max_wait_time=WAIT)
    b = second.create_consumer(station, "b", consumer_group="workers", batch_max_wait_time=WAIT)
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    for _ in range(20):
        for consumer, got in ((a, got_a), (b, got_b)):
            batch = consumer.fetch(batch_size=3)
            for m in batch:
                m.ack()
            got += [m.data for m in batch]
        if len(got_a) + len(got_b) >= 20:
            break
    assert got_a
    assert got_b
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == sorted(f"m{i}".encode() for i in range(20))


def test_separate_groups_each_get_every_message(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 4)
    for group in ("g1", "g2"):
        consumer = conn.create_consumer(
            station, f"c-{group}", consumer_group=group, batch_max_wait_time=WAIT
        )
        assert [m.data for m in consumer.fetch()] == [b"m0", b"m1", b"m2", b"m3"]


def test_start_consume_from_seq(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 5)
    consumer = conn.create_consumer(
        station, "c", start_consume_from_seq=3, batch_max_wait_time=WAIT
    )
    assert [m.sequence_number for m in consumer.fetch()] == [3, 4, 5]
    config = probe.consumer_config(station, "c")
    assert _enum(config.deliver_policy) == "by_start_sequence"
    assert config.opt_start_seq == 3


def test_last_messages(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    _produce(conn, station, 5)
    consumer = conn.create_consumer(station, "c", last_messages=2, batch_max_wait_time=WAIT)
    assert [m.data for m in consumer.fetch()] == [b"m3", b"m4"]


def test_last_messages_zero_means_only_new_messages(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 3)
    consumer = conn.create_consumer(station, "c", last_messages=0, batch_max_wait_time=WAIT)
    assert consumer.fetch() == []
    conn.produce(station, "p", b"fresh")
    assert [m.data for m in consumer.fetch()] == [b"fresh"]


def test_last_messages_on_a_multi_partition_station(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station, partitions_number=2)
    _produce(conn, station, 6)  # round robin: m0,m2,m4 -> p1; m1,m3,m5 -> p2
    consumer = conn.create_consumer(station, "c", last_messages=1, batch_max_wait_time=WAIT)
    assert [m.data for m in consumer.fetch(partition_number=1)] == [b"m4"]
    assert [m.data for m in consumer.fetch(partition_number=2)] == [b"m5"]


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"start_consume_from_seq": 2, "last_messages": 1},
            "Consumer creation options can't contain both startConsumeFromSequence and "
            "lastMessages",
        ),
        ({"start_consume_from_seq": 0}, "startConsumeFromSequence has to be a positive number"),
        ({"last_messages": -2}, "min value for LastMessages is -1"),
        ({"max_msg_deliveries": 0}, None),
        ({"max_msg_deliveries": 11}, None),
        ({"max_ack_time": 0}, None),
        ({"batch_max_wait_time": -1}, None),
        ({"pull_interval": -1}, None),
    ],
    ids=["seq-and-last", "seq-0", "last-2", "deliveries-0", "deliveries-11", "ack-0", "wait",
         "interval"],
)
def test_bad_consumer_options(
    memphis: Any,
    conn: Any,
    probe: BrokerProbe,
    name: Callable[[str], str],
    kwargs: dict[str, Any],
    text: str | None,
) -> None:
    station = name("st")
    conn.create_station(station)
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.create_consumer(station, "c", **kwargs)
    if text is not None:
        assert str(info.value) == text
    assert probe.consumers(station) == []


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        ("", "Consumer name can not be empty"),
        ("c c", "Only alphanumeric and the '_', '-', '.' characters are allowed in Consumer"),
        ("c-", "Consumer name can not start or end with non alphanumeric character"),
    ],
)
def test_bad_consumer_names(
    memphis: Any, conn: Any, name: Callable[[str], str], bad: str, text: str
) -> None:
    with pytest.raises(memphis.LocalProtocolError) as info:
        conn.create_consumer(name("st"), bad)
    assert str(info.value) == text
    with pytest.raises(memphis.LocalProtocolError):
        conn.create_consumer(name("st"), "ok", consumer_group=bad or "-")


def test_prefetch_serves_the_next_batch(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    _produce(conn, station, 4)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT)
    first = consumer.fetch(batch_size=2, prefetch=True)
    second = consumer.fetch(batch_size=2)
    assert [m.data for m in first + second] == [b"m0", b"m1", b"m2", b"m3"]


def test_destroy_unregisters_and_removes_the_durable(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT)
    assert probe.consumer_config(station, "c") is not None
    consumer.destroy()
    assert probe.consumers(station) == []
    assert probe.consumer_config(station, "c") is None
    with pytest.raises(memphis.MemphisError):
        consumer.fetch()


def test_destroying_one_group_member_keeps_the_durable(
    connect: Callable[..., Any], probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    first, second = connect(), connect()
    a = first.create_consumer(station, "a", consumer_group="g", batch_max_wait_time=WAIT)
    b = second.create_consumer(station, "b", consumer_group="g", batch_max_wait_time=WAIT)
    a.destroy()
    assert probe.consumer_config(station, "g") is not None
    first.produce(station, "p", b"still served")
    assert [m.data for m in b.fetch()] == [b"still served"]


def test_leaving_a_with_block_keeps_the_groups_progress(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # Report: leaving the block destroyed the group's last member, the broker deleted the
    # durable, and the restarted worker got every acked message again (docs/protocol.md §7.12).
    station = name("st")
    _produce(conn, station, 2)
    with conn.create_consumer(
        station, "worker", consumer_group="g", batch_max_wait_time=WAIT
    ) as consumer:
        msgs = consumer.fetch()
        assert [m.data for m in msgs] == [b"m0", b"m1"]
        for m in msgs:
            m.ack()
        wait_until(lambda: probe.ack_floor(station, "g") == 2, what="acks on the broker")
    assert probe.consumer_config(station, "g") is not None
    with pytest.raises(memphis.LocalProtocolError, match="closed"):
        consumer.fetch()  # forgotten by the connection
    conn.produce(station, "p", b"m2")
    again = conn.create_consumer(station, "worker", consumer_group="g", batch_max_wait_time=WAIT)
    assert [m.data for m in again.fetch()] == [b"m2"]


def test_leaving_a_with_block_stops_the_loop_and_hands_unread_messages_on_at_once(
    conn: Any, name: Callable[[str], str]
) -> None:
    # Leaving the block closes the consumer on the client side: its consume loop ends before
    # the block does, and the messages it held unread are nacked, so another member of the
    # group gets them now, not after max_ack_time (docs/protocol.md §7.12).
    station = name("st")
    _produce(conn, station, 3)
    with conn.create_consumer(
        station, "a", consumer_group="g", batch_size=3, batch_max_wait_time=WAIT, max_ack_time=30
    ) as consumer:
        for msg in consumer:  # one batch of 3; the 2 unread go back to the consumer
            msg.ack()
            break
    other = conn.create_consumer(station, "b", consumer_group="g", batch_max_wait_time=WAIT)
    got: list[bytes] = []
    wait_until(lambda: got.extend(m.data for m in other.fetch()) or len(got) >= 2, what="m1, m2")
    assert sorted(got) == [b"m1", b"m2"]  # well within the 30 s max_ack_time
    rec = Recorder()
    with conn.create_consumer(
        station, "c", consumer_group="g", pull_interval=0.05, batch_max_wait_time=WAIT
    ) as looping:
        looping.consume(rec)  # a loop running (and pulling) when the block ends
    conn.produce(station, "p", b"m3")
    assert [m.data for m in other.fetch()] == [b"m3"]  # not taken by a loop of "c"
    assert not [call for call in rec.calls if call and call[0]]


def test_iteration_yields_messages(conn: Any, name: Callable[[str], str]) -> None:
    station = name("st")
    _produce(conn, station, 5)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=WAIT, batch_size=2)
    got = []
    for msg in consumer:
        msg.ack()
        got.append(msg.data)
        if len(got) == 5:
            break
    assert got == [f"m{i}".encode() for i in range(5)]


def test_fetch_messages_defaults(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 3)
    started = time.monotonic()
    msgs = conn.fetch_messages(station, "fm")
    assert [m.data for m in msgs] == [b"m0", b"m1", b"m2"]
    config = probe.consumer_config(station, "fm")
    assert config.ack_wait == pytest.approx(10)  # FetchMaxAckTime 10 s (docs/protocol.md §7.13)
    assert config.max_deliver == 2  # FetchMaxMsgDeliveries 2
    for m in msgs:
        m.ack()
    # Default wait is 100 ms: an empty fetch comes back quickly.
    assert conn.fetch_messages(station, "fm") == []
    assert time.monotonic() - started < 5.0


def test_a_handler_that_is_not_callable_is_refused_before_the_consumer_exists(
    memphis: Any, conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_station(station)
    with pytest.raises(memphis.LocalProtocolError, match="error_handler must be callable"):
        conn.create_consumer(station, "c", error_handler=3)
    with pytest.raises(memphis.LocalProtocolError, match="error_handler must be callable"):
        conn.fetch_messages(station, "fm", error_handler=3)
    assert probe.consumers(station) == []


def test_fetch_messages_reuses_the_consumer_and_takes_options(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    station = name("st")
    _produce(conn, station, 5)
    first = conn.fetch_messages(
        station, "fm", batch_size=2, consumer_group="fm-group", max_ack_time=20.0,
        max_msg_deliveries=4, batch_max_wait_time=WAIT,
    )
    assert [m.data for m in first] == [b"m0", b"m1"]
    for m in first:
        m.ack()
    # The same consumer (station, name, group, broker-side options): the durable goes on from
    # where the first fetch left it. A different group would be another consumer (the field
    # report behind test_consumers_are_cached_by_group_and_options).
    second = conn.fetch_messages(
        station, "fm", batch_size=10, consumer_group="fm-group", max_ack_time=20.0,
        max_msg_deliveries=4, batch_max_wait_time=WAIT,
    )
    assert [m.data for m in second] == [b"m2", b"m3", b"m4"]
    config = probe.consumer_config(station, "fm-group")
    assert config.ack_wait == pytest.approx(20)
    assert config.max_deliver == 4
    assert len(probe.consumers(station)) == 1


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
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
