"""nats-py ↔ our SDK (memphis_sync) on the broker's own streams and durables.

* What our producer puts on the wire, as a plain JetStream pull consumer bound to the
  broker-created durable (``<station>$1``, durable = consumer group) sees it.
* What a plain ``js.publish`` to ``<station>$1.final`` looks like to our consumer.
* ``Nats-Msg-Id`` de-duplication between the two, both ways.
* Our acks, nacks and deliveries as the server accounts them (``consumer_info``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext

import memphis_sync
from memphis_broker import EmbeddedBroker
from tests.support.interop import (
    produced_headers,
    run_nats,
    sdk_consumer,
    stream_messages,
    stream_of,
)
from tests.support.waits import poll

BINARY = bytes(range(256))


def test_sdk_messages_read_by_nats_pull_consumer_on_the_broker_durable(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station, group = name("st"), name("cg")
    sdk.create_station(station)
    sdk.create_consumer(station, "sdk-c", consumer_group=group)  # the broker creates the durable
    producer = sdk.create_producer(station, "sdk-p")
    producer.produce(BINARY, headers={"trace": "t1", "Mixed-Case": "V a:l"}, msg_id="id-1")
    producer.produce(b"no-id")
    conn_id = sdk.connection_id
    stream = stream_of(station)

    async def body(js: JetStreamContext) -> None:
        info = await js.consumer_info(stream, group)
        assert info.config.durable_name == group
        sub = await js.pull_subscribe_bind(durable=group, stream=stream)
        msgs = await sub.fetch(2, timeout=5)
        assert [m.data for m in msgs] == [BINARY, b"no-id"]
        assert {m.subject for m in msgs} == {f"{stream}.final"}
        assert msgs[0].headers == produced_headers(
            conn_id, "id-1", {"trace": "t1", "Mixed-Case": "V a:l"}
        )
        assert msgs[1].headers == produced_headers(conn_id)
        assert [m.metadata.sequence.stream for m in msgs] == [1, 2]
        for m in msgs:
            await m.ack_sync()
        after = await js.consumer_info(stream, group)
        assert after.num_ack_pending == 0
        assert after.ack_floor.stream_seq == 2
        assert after.num_pending == 0

    run_nats(broker, body)


def test_sdk_partitioned_produce_lands_on_the_partition_stream(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = sdk.create_station(station, partitions_number=3).create_producer("sdk-p")
    for p in (3, 1, 2, 3):
        producer.produce(b"to-%d" % p, partition_number=p)

    async def body(js: JetStreamContext) -> dict[int, list[bytes]]:
        return {
            p: [s.data for s in await stream_messages(js, stream_of(station, p))] for p in (1, 2, 3)
        }

    assert run_nats(broker, body) == {1: [b"to-1"], 2: [b"to-2"], 3: [b"to-3", b"to-3"]}


def test_nats_publish_fetched_by_sdk(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    consumer = sdk_consumer(sdk, station)
    subject = f"{stream_of(station)}.final"

    async def body(js: JetStreamContext) -> None:
        await js.publish(subject, BINARY, headers={"trace": "n1", "Mixed-Case": "V a:l"})
        await js.publish(subject, b"")
        await js.publish(
            subject,
            b"memphis-like",
            headers={
                "$memphis_producedBy": "nats-py",
                "$memphis_connectionId": "not-a-connection",
                "msg-id": "n-3",
                "Nats-Msg-Id": "n-3",
            },
        )

    run_nats(broker, body)
    msgs = consumer.fetch(batch_size=3)
    assert [m.data for m in msgs] == [BINARY, b"", b"memphis-like"]
    assert [m.headers for m in msgs] == [
        {"trace": "n1", "Mixed-Case": "V a:l"},
        {},
        {},  # msg-id and Nats-Msg-Id are idempotency headers, hidden (docs/protocol.md §7.14)
    ]
    assert [m.sequence_number for m in msgs] == [1, 2, 3]
    assert {m.delivery_count for m in msgs} == {1}
    for m in msgs:
        m.ack()


def test_nats_msg_id_and_sdk_msg_id_dedup_both_ways(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    producer = sdk.create_station(station).create_producer("sdk-p")
    subject = f"{stream_of(station)}.final"

    first = producer.produce(b"sdk-A", msg_id="A")
    assert first is not None

    def publish(msg_id: str, data: bytes) -> bool:
        async def body(js: JetStreamContext) -> bool:
            ack = await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
            return bool(ack.duplicate)

        return run_nats(broker, body)

    assert publish("A", b"nats-A") is True  # SDK first: nats-py is the duplicate
    assert publish("B", b"nats-B") is False
    second = producer.produce(b"sdk-B", msg_id="B")  # nats-py first: the SDK is the duplicate
    assert second is not None
    assert second.duplicate

    async def stored(js: JetStreamContext) -> list[bytes]:
        return [s.data for s in await stream_messages(js, stream_of(station))]

    assert run_nats(broker, stored) == [b"sdk-A", b"nats-B"]


def test_sdk_acks_and_nacks_observed_via_consumer_info(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station, group = name("st"), name("cg")
    stream = stream_of(station)
    sdk.create_station(station)
    consumer = sdk.create_consumer(station, "sdk-c", consumer_group=group, max_ack_time=30.0)
    producer = sdk.create_producer(station, "sdk-p")
    for i in range(5):
        producer.produce(b"m%d" % i, async_produce=True)
    producer.flush()

    def info_until(pred: Callable[[Any], bool], what: str) -> Any:
        async def body(js: JetStreamContext) -> Any:
            async def check() -> Any:
                ci = await js.consumer_info(stream, group)
                return ci if pred(ci) else None

            return await poll(check, what=what)

        return run_nats(broker, body)

    ci = info_until(lambda ci: ci.num_pending == 5, "5 pending")
    assert ci.config.ack_wait == 30.0

    msgs = consumer.fetch(batch_size=5)
    assert [m.data for m in msgs] == [b"m%d" % i for i in range(5)]
    ci = info_until(lambda ci: ci.delivered.stream_seq == 5, "5 delivered")
    assert ci.num_ack_pending == 5
    assert ci.num_pending == 0
    assert ci.ack_floor.stream_seq == 0

    for m in msgs[:3]:
        m.ack()
    info_until(
        lambda ci: ci.num_ack_pending == 2 and ci.ack_floor.stream_seq == 3,
        "3 acks",
    )

    msgs[3].nack()
    (again,) = consumer.fetch(batch_size=1)
    assert again.data == b"m3"
    assert again.delivery_count == 2
    ci = info_until(lambda ci: ci.num_redelivered == 1, "one redelivered")
    assert ci.delivered.consumer_seq == 6

    again.ack()
    msgs[4].ack()
    info_until(
        lambda ci: ci.num_ack_pending == 0 and ci.ack_floor.stream_seq == 5,
        "all acked",
    )
