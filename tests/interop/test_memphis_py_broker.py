"""memphis-py 1.3.1 against memphis_broker: the official SDK's own flows, checked on the broker.

Each test drives memphis-py end to end and observes the effect with an independent nats-py
connection (streams, durables, ack state), so "it worked" is the broker's word, not the SDK's.
memphis-py defects (memphis-py 1.3.1's known defects (README, Features)) are worked around and
marked, never asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from memphis import Headers
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from memphis_broker import EmbeddedBroker
from tests.support.interop import run_memphis_py, stream_exists, stream_messages, stream_of
from tests.support.waits import poll

pytestmark = pytest.mark.memphis_py_defect(1, 2)

BINARY = bytes(range(256))


def test_station_producer_consumer_lifecycle(
    broker: EmbeddedBroker, name: Callable[[str], str]
) -> None:
    station, group = name("st"), name("cg")
    stream = stream_of(station)

    async def body(m: Any, js: JetStreamContext) -> None:
        st = await m.station(name=station, idempotency_window_ms=60_000)
        info = await js.stream_info(stream)
        assert info.config.subjects == [f"{stream}.>"]
        assert info.config.duplicate_window == 60.0

        producer = await m.producer(station_name=station, producer_name="py-prod")
        headers = Headers()
        headers.add("trace", "t-1")
        headers.add("Mixed-Case", "Value With Spaces")
        await producer.produce(bytearray(BINARY), headers=headers, msg_id="py-id-1")
        await producer.produce({"k": [1, "é"]})
        await producer.produce("héllo ☃")

        stored = await stream_messages(js, stream)
        assert [s.data for s in stored] == [
            BINARY,
            b'{"k": [1, "\\u00e9"]}',
            "héllo ☃".encode(),
        ]
        assert {s.subject for s in stored} == {f"{stream}.final"}

        consumer = await m.consumer(
            station_name=station, consumer_name="py-cons", consumer_group=group
        )
        durable = await js.consumer_info(stream, group)
        assert durable.config.durable_name == group

        msgs = await consumer.fetch(batch_size=10)
        assert [bytes(x.get_data()) for x in msgs] == [s.data for s in stored]
        assert [x.get_sequence_number() for x in msgs] == [1, 2, 3]
        first = msgs[0].get_headers()
        assert first["trace"] == "t-1"
        assert first["Mixed-Case"] == "Value With Spaces"
        assert first["msg-id"] == "py-id-1"
        assert first["$memphis_producedBy"] == "py-prod"
        assert first["$memphis_connectionId"] == m.connection_id
        assert "msg-id" not in msgs[1].get_headers()

        info_before = await js.consumer_info(stream, group)
        assert info_before.num_ack_pending == 3
        for x in msgs:
            await x.ack()

        async def all_acked() -> bool:
            ci = await js.consumer_info(stream, group)
            return bool(ci.num_ack_pending == 0 and ci.ack_floor.stream_seq == 3)

        await poll(all_acked, what="memphis-py acks on the durable")

        await consumer.destroy()
        with pytest.raises(NotFoundError):
            await js.consumer_info(stream, group)
        await producer.destroy()
        await st.destroy()
        assert not await stream_exists(js, stream)

    run_memphis_py(broker, body)


def test_existing_station_is_success_and_partitions_round_robin(
    broker: EmbeddedBroker, name: Callable[[str], str]
) -> None:
    station = name("st")

    async def body(m: Any, js: JetStreamContext) -> None:
        await m.station(name=station, partitions_number=3)
        await m.station(name=station, partitions_number=3)  # "already exists" is success
        for p in (1, 2, 3):
            assert await stream_exists(js, stream_of(station, p))
        assert not await stream_exists(js, stream_of(station, 4))

        producer = await m.producer(station_name=station, producer_name="py-rr")
        for i in range(6):
            await producer.produce(bytearray(b"m%d" % i))
        counts = [len(await stream_messages(js, stream_of(station, p))) for p in (1, 2, 3)]
        assert counts == [2, 2, 2]

        await producer.produce(bytearray(b"pinned"), producer_partition_number=3)
        last = await stream_messages(js, stream_of(station, 3))
        assert last[-1].data == b"pinned"

    run_memphis_py(broker, body)


def test_dotted_station_name_maps_to_the_same_stream(
    broker: EmbeddedBroker, name: Callable[[str], str]
) -> None:
    station = name("a") + ".eu.orders"  # internal name: '.' -> '#'

    async def body(m: Any, js: JetStreamContext) -> None:
        await m.station(name=station)
        stream = stream_of(station)
        assert "#" in stream
        producer = await m.producer(station_name=station, producer_name="py-dot")
        await producer.produce(bytearray(b"dotted"))
        consumer = await m.consumer(station_name=station, consumer_name="py-dot-c")
        msgs = await consumer.fetch(batch_size=1)
        assert [bytes(x.get_data()) for x in msgs] == [b"dotted"]
        await msgs[0].ack()
        assert [s.data for s in await stream_messages(js, stream)] == [b"dotted"]

    run_memphis_py(broker, body)


def test_nack_redelivers_to_the_group(broker: EmbeddedBroker, name: Callable[[str], str]) -> None:
    station = name("st")

    async def body(m: Any, js: JetStreamContext) -> None:
        producer = await m.producer(station_name=station, producer_name="py-p")
        await producer.produce(bytearray(b"again"))
        consumer = await m.consumer(station_name=station, consumer_name="py-c")
        (first,) = await consumer.fetch(batch_size=1)
        await first.nack()

        async def redelivered() -> list[Any]:
            return list(await consumer.fetch(batch_size=1))

        (second,) = await poll(redelivered, what="redelivery after nack")
        assert bytes(second.get_data()) == b"again"
        assert second.message.metadata.num_delivered == 2
        await second.ack()

        async def acked() -> bool:
            ci = await js.consumer_info(stream_of(station), "py-c")
            return bool(ci.num_ack_pending == 0 and ci.num_redelivered == 0)

        await poll(acked, what="ack of the redelivered message")

    run_memphis_py(broker, body)
