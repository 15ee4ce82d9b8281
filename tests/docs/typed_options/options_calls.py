"""Type-checked by ``tests/docs/test_options_typing.py`` with ``mypy --strict``, never run.

The options of ``connect``, ``create_station``, ``create_consumer``, ``fetch_messages``,
``fetch`` and ``produce`` are declared once, as TypedDicts taken through ``**options:
Unpack[...]``. A type checker must still see each of them exactly: the calls without a comment
are right and must pass; each call marked ``# type: ignore[<code>]`` is wrong (a misspelt
keyword, a value of the wrong type) and must be an error, because ``--strict`` reports an
ignore comment that silences nothing (``warn_unused_ignores``).
"""

from __future__ import annotations

import memphis_asyncio
import memphis_sync
import memphis_trio


async def a_coroutine_callback(error: memphis_sync.MemphisError | None) -> None:
    del error


def blocking(conn: memphis_sync.Connection) -> None:
    memphis_sync.connect("h1:4222,h2:4222", "root", connection_token="t", port=1, on_error=print)
    # A coroutine function could never be awaited by the blocking frontend (it also raises
    # TypeError at run time): refused by the type checker as well.
    memphis_sync.connect("h", "root", on_closed=a_coroutine_callback)  # type: ignore[arg-type]
    consumer_ = conn.create_consumer("s", "c", error_handler=lambda c, e: None)
    consumer_.consume(a_coroutine_handler)  # type: ignore[arg-type]
    memphis_sync.connect("h", "root", token="t")  # type: ignore[call-arg]
    memphis_sync.connect("h", "root", password="p", port="1")  # type: ignore[arg-type]
    conn.create_station("s", retention_type="messages", partitions_number=2)
    conn.create_station("s", partitions=2)  # type: ignore[call-arg]
    conn.create_station("s", replicas=1.5)  # type: ignore[arg-type]
    station = memphis_sync.Station(conn, "s")
    station.create_consumer("c", consumer_group="g", batch_size=5, max_msg_deliveries=3)
    station.create_consumer("c", max_deliveries=3)  # type: ignore[call-arg]
    consumer = conn.create_consumer("s", "c", last_messages=10, error_handler=None)
    conn.create_consumer("s", "c", batch_size="5")  # type: ignore[arg-type]
    messages: list[memphis_sync.Message] = consumer.fetch(5, prefetch=True, timeout=0.5)
    consumer.fetch(5, partition=2)  # type: ignore[call-arg]
    conn.fetch_messages("s", "c", batch_size=5, max_ack_time=3.0, partition_number=1)
    conn.fetch_messages("s", "c", prefetch=0.5)  # type: ignore[arg-type]
    producer = conn.create_producer("s", "p")
    ack: memphis_sync.PubAck = producer.produce(b"x", msg_id="1", headers={"k": "v"})
    handle: memphis_sync.ProduceHandle = producer.produce(b"x", async_produce=True, ack_wait=1.0)
    producer.produce(b"x", msg="1")  # type: ignore[call-overload]
    conn.produce("s", "p", b"x", partition_key="k")
    conn.produce("s", "p", b"x", partition_number="1")  # type: ignore[call-overload]
    del messages, ack, handle


async def a_coroutine_handler(message: memphis_sync.Message) -> None:
    del message


async def trio_calls(conn: memphis_trio.Connection) -> None:
    async with memphis_trio.connect("h", "root", password="p", on_closed=a_coroutine_callback):
        pass
    async with memphis_trio.connect("h", "root", password="p", reconnect=False) as other:
        await other.create_station("s", storage_type=memphis_trio.StorageType.MEMORY)
    await memphis_trio.connect("h", "root", pasword="p")  # type: ignore[call-arg]
    consumer = await conn.create_consumer("s", "c", pull_interval=0.5)
    await consumer.fetch(3, partition_number=2)
    await consumer.fetch(3, partition_number="2")  # type: ignore[arg-type]


async def asyncio_calls(conn: memphis_asyncio.Connection) -> None:
    await memphis_asyncio.connect("h", "root", connection_token="t", timeout=5.0)
    await memphis_asyncio.connect("h", "root", timeout="5")  # type: ignore[arg-type]
    await conn.create_consumer("s", "c", start_consume_from_seq=7)
    await conn.create_consumer("s", "c", start_seq=7)  # type: ignore[call-arg]
