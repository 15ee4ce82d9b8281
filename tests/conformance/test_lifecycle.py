"""Close, cancel and early exit: nothing a caller was told is accepted vanishes silently.

Each test runs on all three frontends against the real broker and checks the effect on the
broker (messages stored, ack floors, dead-letter rows), not the client's own say-so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.frontends import Frontend
from tests.support.names import TOKEN, USER
from tests.support.probe import BrokerProbe, orphaned_producer
from tests.support.waits import wait_until


def test_close_delivers_every_async_produce(
    connect: Callable[..., Any], probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # Field report: 3,000 async produces then leaving ``with`` stored 0-2,500 of them.
    station = name("st")
    with connect() as conn:
        conn.create_station(station)
        producer = conn.create_producer(station, "p")
        for i in range(3000):
            producer.produce(b"m%d" % i, async_produce=True)
    assert probe.message_count(station) == 3000


def test_acks_written_before_close_reach_the_broker(
    connect: Callable[..., Any], probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # Field report: 50 acked messages were all redelivered after close, their acks unwritten.
    station = name("st")
    with connect() as conn:
        producer = conn.create_producer(station, "p")
        for i in range(50):
            producer.produce(b"m%d" % i, async_produce=True)
        producer.flush()
        consumer = conn.create_consumer(station, "c", batch_size=50, batch_max_wait_time=1.0)
        got = consumer.fetch(batch_size=50)
        assert len(got) == 50
        for message in got:
            message.ack()
    assert probe.ack_floor(station, "c") == 50


def test_close_reports_async_produces_that_failed_unflushed(
    connect: Callable[..., Any], memphis: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    # Its station destroyed behind its back: the next async produce finds no stream.
    conn, producer = orphaned_producer(connect, station)
    producer.produce(b"lost", async_produce=True, msg_id="the-lost-one", ack_wait=1.0)
    with pytest.raises(memphis.CloseIncompleteError) as info:
        conn.close()
    error = info.value
    assert error.count == 1
    assert [(f.position, f.msg_id) for f in error.failures] == [(2, "the-lost-one")]
    assert "the-lost-one" in str(error)
    assert not conn.is_connected


def test_cancelled_polls_cost_no_delivery_attempt(
    conn: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # Field report: polling with a 0.5 s timeout on a consumer that waits 2 s burned a delivery
    # per poll, and after 10 polls all 3 messages sat in the dead-letter store unread.
    station = name("st")
    producer = conn.create_producer(station, "p")
    for i in range(3):
        producer.produce(b"m%d" % i)
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=2.0, max_msg_deliveries=2)
    got: list[Any] = []
    for _ in range(15):
        for message in consumer.fetch(batch_size=10, timeout=0.5):
            got.append(message)
            message.ack()
    assert sorted(m.data for m in got) == [b"m0", b"m1", b"m2"]
    assert [m.delivery_count for m in got] == [1, 1, 1]
    assert probe.dls_rows(station) == []


def test_cancelled_fetch_keeps_its_batch_for_the_next_fetch(
    frontend: Frontend,
    broker: EmbeddedBroker,
    connect: Callable[..., Any],
    probe: BrokerProbe,
    name: Callable[[str], str],
) -> None:
    # Real cancellation (a timeout around the call, a cancel scope), 15 times over.
    _async_only(frontend)
    station = name("st")
    conn = connect()
    producer = conn.create_producer(station, "p")
    for i in range(3):
        producer.produce(b"m%d" % i)
    conn.create_consumer(station, "c", batch_max_wait_time=2.0, max_msg_deliveries=2)
    module = frontend.module

    async def polls() -> list[tuple[bytes, int]]:
        got: list[tuple[bytes, int]] = []
        async with module.connect(
            broker.host, USER, connection_token=TOKEN, port=broker.port
        ) as native:
            consumer = await native.create_consumer(
                station, "c", batch_max_wait_time=2.0, max_msg_deliveries=2
            )
            for _ in range(15):
                batch = await _cancel_after(frontend, consumer.fetch(batch_size=10), 0.5)
                for message in batch or []:
                    got.append((message.data, message.delivery_count))
                    await message.ack()
        return got

    got = frontend.run(polls)
    assert sorted(data for data, _ in got) == [b"m0", b"m1", b"m2"]
    assert {count for _, count in got} == {1}
    assert probe.dls_rows(station) == []


def _async_only(frontend: Frontend) -> None:
    if not frontend.is_async:
        pytest.skip("cancellation is an async idiom; memphis_sync has fetch(timeout=)")


async def _cancel_after(frontend: Frontend, awaitable: Any, seconds: float) -> Any:
    if "trio" in frontend.name:
        import trio

        with trio.move_on_after(seconds):
            return await awaitable
        return None
    import asyncio

    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        return None


def test_leaving_iteration_early_keeps_the_rest_for_the_next_fetch(
    conn: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = conn.create_producer(station, "p")
    for i in range(5):
        producer.produce(b"m%d" % i)
    consumer = conn.create_consumer(station, "c", batch_size=3, batch_max_wait_time=0.5)
    seen = []
    for message in consumer:
        seen.append(message.data)
        message.ack()
        if len(seen) == 4:
            break
    assert seen == [b"m0", b"m1", b"m2", b"m3"]
    (rest,) = consumer.fetch(batch_size=1, timeout=1.0)
    assert (rest.data, rest.delivery_count) == (b"m4", 1)


def test_settling_twice_is_a_typed_error(
    conn: Any, memphis: Any, name: Callable[[str], str]
) -> None:
    station = name("st")
    conn.create_producer(station, "p").produce(b"x")
    (message,) = conn.create_consumer(station, "c", batch_max_wait_time=0.5).fetch()
    message.ack()
    for settle in (message.ack, message.nack, lambda: message.dead_letter("late")):
        with pytest.raises(memphis.MessageAlreadySettledError):
            settle()


def test_calls_on_a_closed_connection_raise_connection_closed(
    connect: Callable[..., Any], memphis: Any, name: Callable[[str], str]
) -> None:
    conn = connect()
    producer = conn.create_producer(name("st"), "p")
    conn.close()
    with pytest.raises(memphis.ConnectionClosedError):
        producer.produce(b"x")
    conn.close()  # idempotent


def test_close_during_a_waiting_fetch_ends_both_promptly(
    connect: Callable[..., Any], memphis: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # Review finding: the fetch (the pull held for 5 s) hung for ever and close() raised
    # ConnectionClosedError from inside the core, leaving the socket open. A fetch with messages
    # in hand no longer waits once the broker says nothing more is pending, so the state under
    # test is a pull held open on an empty station.
    station = name("st")
    conn = connect()
    conn.create_producer(station, "p")
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=5.0)
    _close_during_fetch(memphis, conn, consumer, 10, lambda: probe.num_waiting(station, "c") == 1)


def _close_during_fetch(
    memphis: Any, conn: Any, consumer: Any, batch_size: int, reached: Callable[[], bool]
) -> None:
    """Close ``conn`` while another thread's ``fetch(batch_size)`` is in the state ``reached``
    waits for: both end within 4 s, the fetch with ConnectionClosedError."""
    import threading
    import time

    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            consumer.fetch(batch_size=batch_size)
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=fetch)
    waiter.start()
    wait_until(reached, what="the fetch in the state under test")
    started = time.monotonic()
    conn.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert time.monotonic() - started < 4.0
    assert [type(e) for e in errors] == [memphis.ConnectionClosedError]
    assert not conn.is_connected


def _fetch_holding_messages(
    conn: Any, probe: BrokerProbe, station: str, batch_max_wait_time: float
) -> Any:
    """A consumer ``c`` of ``station`` whose next ``fetch(batch_size=3)`` has m1 and m2 delivered
    while the broker says m3 is still pending but sends nothing more: it already holds m0 (left
    unacked) and the durable's ``max_ack_pending`` is 3. That fetch waits with messages in hand."""
    producer = conn.create_producer(station, "p")
    for i in range(4):
        producer.produce(b"m%d" % i)
    conn.create_consumer(station, "c", batch_max_wait_time=batch_max_wait_time, max_ack_time=30)
    probe.limit_ack_pending(station, "c", 3)
    return conn.create_consumer(
        station, "c", batch_max_wait_time=batch_max_wait_time, max_ack_time=30
    )


def test_close_during_a_fetch_holding_messages_nacks_them_and_ends_both_promptly(
    connect: Callable[..., Any], memphis: Any, probe: BrokerProbe, name: Callable[[str], str]
) -> None:
    # The state the close test above had before a plain fetch learnt to end once nothing is
    # pending: the fetch holds 2 of its 3 while the pull is held on the broker. The close fails
    # it and nacks the 2: another member gets them at once, not after max_ack_time (30 s).
    import time

    station = name("st")
    conn = connect()
    consumer = _fetch_holding_messages(conn, probe, station, 5.0)
    (first,) = consumer.fetch(batch_size=1)
    assert first.data == b"m0"
    # m1 and m2 delivered to the waiting fetch (m0 makes the third unacked) and read by the
    # client: the close nacks what the consumer holds. (Deliveries still on the wire when the
    # close ends are left to max_ack_time.)
    held = consumer._state.held
    _close_during_fetch(
        memphis,
        conn,
        consumer,
        3,
        lambda: sum(len(queue) for queue in held.partitions.values()) == 2,
    )
    other = connect().create_consumer(station, "c", batch_max_wait_time=5.0, max_ack_time=30)
    started = time.monotonic()
    again = other.fetch(batch_size=2)
    # Nacked, so redelivered at once, in the broker's redelivery order.
    assert sorted((m.data, m.delivery_count) for m in again) == [(b"m1", 2), (b"m2", 2)]
    assert time.monotonic() - started < 4.0


def test_a_fetch_cancelled_with_messages_in_hand_keeps_them_for_the_next_fetch(
    frontend: Frontend,
    broker: EmbeddedBroker,
    connect: Callable[..., Any],
    probe: BrokerProbe,
    name: Callable[[str], str],
) -> None:
    # Cancelled while it holds m1 and m2 and waits for more: the next fetch returns them at
    # once, without a second delivery (no nack, no wait for max_ack_time).
    _async_only(frontend)
    import time

    station = name("st")
    _fetch_holding_messages(connect(), probe, station, 5.0)
    module = frontend.module

    async def body() -> tuple[Any, list[tuple[bytes, int]], float]:
        async with module.connect(
            broker.host, USER, connection_token=TOKEN, port=broker.port
        ) as native:
            consumer = await native.create_consumer(
                station, "c", batch_max_wait_time=5.0, max_ack_time=30
            )
            (first,) = await consumer.fetch(batch_size=1)
            assert first.data == b"m0"
            cancelled = await _cancel_after(frontend, consumer.fetch(batch_size=3), 1.0)
            assert probe.ack_pending(station, "c") == 3, "m1 and m2 were delivered to it"
            started = time.monotonic()
            again = await consumer.fetch(batch_size=2)
            took = time.monotonic() - started
            for message in [first, *again]:
                await message.ack()
            return cancelled, [(m.data, m.delivery_count) for m in again], took

    cancelled, again, took = frontend.run(body)
    assert cancelled is None
    assert again == [(b"m1", 1), (b"m2", 1)]
    assert took < 1.0


# Regression test for a field report from users of the Memphis SDKs or nats-py: it failed
# before its fix, against the real broker.
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
