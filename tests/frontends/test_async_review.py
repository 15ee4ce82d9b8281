"""Regression tests for what review found in the async frontends."""

from __future__ import annotations

import trio

from memphis_broker import EmbeddedBroker
from tests.support.async_lib import Lib
from tests.support.names import unique

from .test_async_frontends import connect


def test_block_exception_survives_a_cancelled_exit(broker: EmbeddedBroker) -> None:
    # trio: our own tasks, cancelled with the block, used to replace the block's exception
    # with a group of Cancelled that the outer scope then swallowed.
    import memphis_trio

    seen: list[BaseException] = []

    async def main() -> None:
        with trio.move_on_after(0.3):
            try:
                async with memphis_trio.connect(
                    broker.host, "root", connection_token="memphis", port=broker.port
                ):
                    try:
                        await trio.sleep(5)
                    except trio.Cancelled:
                        raise RuntimeError("mine") from None
            except RuntimeError as exc:
                seen.append(exc)

    trio.run(main)
    assert [str(e) for e in seen] == ["mine"]


def test_cancelled_close_still_closes(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        conn = await lib.memphis.connect(
            broker.host, "root", connection_token="memphis", port=broker.port
        )
        started = lib.event()

        async def slow(messages: object, error: object, context: object) -> None:
            started.set()
            await lib.sleep(1.0)

        consumer = await conn.create_consumer(unique("st"), "c", batch_max_wait_time=0.1)
        await consumer.consume(slow)
        await lib.wait(started)
        async with lib.cancel_after(0.1):
            await conn.close()
        async with lib.fail_after(10):
            while conn.is_connected:
                await lib.sleep(0.05)

    lib.run(body)


def test_raising_error_handler_keeps_the_connection(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn, connect(lib, broker) as other:
            called = lib.event()

            def handler(consumer: object, error: object) -> None:
                called.set()
                raise ValueError("buggy handler")

            station = unique("st")
            consumer = await conn.create_consumer(station, "c", error_handler=handler)
            await consumer.consume(lambda messages, error, context: None)
            await (await other.create_station(station)).destroy()
            await lib.wait(called, 45)
            assert conn.is_connected
            producer = await conn.create_producer(unique("st"), "p")
            assert (await producer.produce(b"still here")).sequence == 1

    lib.run(body)


def test_restarting_consume_leaves_one_loop(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            consumer = await conn.create_consumer(
                station, "c", batch_max_wait_time=0.05, pull_interval=0.01
            )
            calls = {"first": 0, "second": 0}
            restarted = lib.event()

            async def first(messages: object, error: object, context: object) -> None:
                calls["first"] += 1
                if calls["first"] == 1:
                    await consumer.stop_consume()
                    await consumer.consume(second)
                    restarted.set()

            async def second(messages: object, error: object, context: object) -> None:
                calls["second"] += 1

            await consumer.consume(first)
            await lib.wait(restarted)
            async with lib.fail_after(10):
                while calls["second"] < 5:
                    await lib.sleep(0.02)
            assert calls["first"] == 1
            await consumer.stop_consume()

    lib.run(body)
