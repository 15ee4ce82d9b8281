"""memphis_asyncio and memphis_trio against the real (embedded) broker, written natively async.

Every test body is an ``async def`` that runs under ``asyncio.run`` and ``trio.run`` (the
``lib`` fixture). What only one library has (``asyncio.timeout``/``wait_for``, trio cancel
scopes and nurseries) is tested in that library's own idiom. Waits are on events and
conditions with a failing deadline, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
import trio

from memphis_broker import EmbeddedBroker
from tests.support.async_lib import Lib
from tests.support.frontends import connect_root
from tests.support.names import TOKEN, USER, unique


def connect(lib: Lib, broker: EmbeddedBroker, **kwargs: Any) -> Any:
    return connect_root(lib.memphis, broker, **kwargs)


# ----------------------------------------------------------------------------- lifecycle


def test_async_with_connects_and_closes(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            assert conn.is_connected
            assert isinstance(conn, lib.memphis.Connection)
        assert not conn.is_connected
        with pytest.raises(lib.memphis.ConnectionClosedError):
            await conn.create_station(unique("closed"))

    lib.run(body)


def test_await_connect_then_close_twice(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        conn = await connect(lib, broker)
        assert conn.is_connected
        await conn.create_station(unique("st"))
        await conn.close()
        await conn.close()
        assert not conn.is_connected

    lib.run(body)


def test_refused_connection_raises_connect_error(lib: Lib) -> None:
    from memphis_broker._server import free_port

    async def body() -> None:
        port = free_port("127.0.0.1")
        with pytest.raises(lib.memphis.MemphisConnectError):
            await lib.memphis.connect("127.0.0.1", USER, connection_token=TOKEN, port=port)
        with pytest.raises(lib.memphis.MemphisConnectError):
            async with lib.memphis.connect("127.0.0.1", USER, connection_token=TOKEN, port=port):
                raise AssertionError("unreachable")

    lib.run(body)


def test_bad_arguments_raise_at_call_time(lib: Lib) -> None:
    # Validation happens before anything is awaited or dialled.
    with pytest.raises(lib.memphis.LocalProtocolError):
        lib.memphis.connect("127.0.0.1", USER)


def test_body_exception_is_not_wrapped(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        box: list[Any] = []

        async def fail_inside() -> None:
            async with connect(lib, broker) as conn:
                box.append(conn)
                consumer = await conn.create_consumer(unique("st"), "c", pull_interval=0.05)
                await consumer.consume(lambda msgs, err, ctx: None)
                raise KeyError("boom")

        with pytest.raises(KeyError):  # not an ExceptionGroup from the nursery / task group
            await fail_inside()
        assert not box[0].is_connected

    lib.run(body)


# ----------------------------------------------------------------------------- produce / fetch


def test_produce_fetch_ack(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = await conn.create_station(unique("st"))
            producer = await station.create_producer("p")
            ack = await producer.produce(b"one", headers={"k": "v"})
            assert ack.sequence == 1
            for i in range(300):
                handle = await producer.produce(f"a{i}".encode(), async_produce=True)
                assert isinstance(handle, lib.memphis.ProduceHandle)
            await producer.flush()
            await conn.produce(station.name, "p2", {"via": "conn"})
            consumer = await station.create_consumer("c", batch_size=500, batch_max_wait_time=0.5)
            msgs = await consumer.fetch(batch_size=500)
            assert [m.data for m in msgs[:2]] == [b"one", b"a0"]
            assert len(msgs) == 302
            assert msgs[0].headers == {"k": "v"}
            assert json.loads(msgs[-1].data_deserialized()) == {"via": "conn"}
            assert [m.sequence_number for m in msgs] == list(range(1, 303))
            for m in msgs:
                await m.ack()
            # Acked: nothing comes back to the group.
            assert await consumer.fetch(batch_size=10) == []

    lib.run(body)


def test_async_produce_window_applies_backpressure(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            producer = await conn.create_producer(unique("st"), "p")
            state = producer._state
            # The core's window, by count and by bytes (shrunk so 2000 messages exceed both).
            state.window, state.window_bytes = 256, 64 * 1024
            peak = peak_bytes = 0
            for i in range(2000):
                size = 1024 if i % 2 else 10
                await producer.produce(b"%d" % i + b"x" * size, async_produce=True)
                peak = max(peak, state.in_flight)
                peak_bytes = max(peak_bytes, state.in_flight_bytes)
            await producer.flush()
            assert 0 < peak <= state.window
            assert 0 < peak_bytes <= state.window_bytes + 1100  # the last one may cross the line
            assert state.in_flight == state.in_flight_bytes == 0
            ack = await producer.produce(b"last")
            assert ack.sequence == 2001

    lib.run(body)


@pytest.mark.parametrize("async_produce", [False, True])
def test_a_refused_produce_still_writes_its_schema_report_at_once(
    lib: Lib, broker: EmbeddedBroker, async_produce: bool
) -> None:
    # Review finding: a produce refused by the schema queues its DLS report before raising;
    # the pump only wrote it at its next turn for another reason (a timer seconds later, or
    # the next ping), since nothing woke it for a call that raised.
    from tests.support.names import SCHEMAS

    async def body() -> None:
        async with connect(lib, broker) as conn:
            schema, station = unique("schema"), unique("st")
            await conn.create_schema(
                schema, lib.memphis.SchemaType.JSON, str(SCHEMAS / "test.schema.json")
            )
            await conn.create_station(station, schema_name=schema)
            producer = await conn.create_producer(station, "p")
            with pytest.raises(lib.memphis.MemphisSchemaError):
                await producer.produce({"region": "no locality"}, async_produce=async_produce)
            session = conn._client.session
            deadline = time.monotonic() + 1.0  # the pump's turn takes milliseconds
            while session._out and time.monotonic() < deadline:
                await lib.sleep(0.01)
            assert not session._out, "the DLS report is still queued in the core"

    lib.run(body)


def test_async_for_yields_and_gives_back_the_rest(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            producer = await conn.create_producer(station, "p")
            for i in range(5):
                await producer.produce(f"m{i}".encode())
            consumer = await conn.create_consumer(
                station, "c", batch_size=3, batch_max_wait_time=0.5, max_ack_time=30
            )
            seen = []
            async with contextlib.aclosing(aiter(consumer)) as messages:
                async for msg in messages:
                    seen.append(msg.data)
                    await msg.ack()
                    if len(seen) == 4:
                        break
            assert seen == [b"m0", b"m1", b"m2", b"m3"]
            # m4 was fetched with m3 but never handed out: the consumer kept it, so the next
            # fetch returns it at once, without a second delivery.
            started = time.monotonic()
            (rest,) = await consumer.fetch(batch_size=1)
            assert rest.data == b"m4"
            assert rest.delivery_count == 1
            assert time.monotonic() - started < 2.0

    lib.run(body)


# ----------------------------------------------------------------------------- consume


def test_consume_and_stop_consume(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            producer = await conn.create_producer(station, "p")
            consumer = await conn.create_consumer(
                station, "c", pull_interval=0.05, batch_size=4, batch_max_wait_time=5.0
            )
            consumer.set_context({"tenant": "t"})
            got: list[bytes] = []
            contexts: list[Any] = []
            enough = lib.event()

            async def handler(msgs: list[Any], error: Any, context: Any) -> None:
                contexts.append(context)
                for m in msgs:
                    got.append(m.data)
                    await m.ack()
                if len(got) >= 10:
                    enough.set()

            await consumer.consume(handler)
            await consumer.consume(handler)  # already consuming: no second loop
            for i in range(10):
                await producer.produce(f"m{i}".encode(), async_produce=True)
            await producer.flush()
            await lib.wait(enough)
            started = time.monotonic()
            await consumer.stop_consume()  # a 5 s pull is pending: must not wait it out
            assert time.monotonic() - started < 1.0
            assert got == [f"m{i}".encode() for i in range(10)]
            assert all(c == {"tenant": "t"} for c in contexts)
            calls = len(contexts)
            await producer.produce(b"after stop")
            assert [m.data for m in await consumer.fetch(batch_size=1)] == [b"after stop"]
            assert len(contexts) == calls

    lib.run(body)


def test_consume_loop_ends_with_the_block(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        called = lib.event()

        async def handler(msgs: list[Any], error: Any, context: Any) -> None:
            called.set()

        started = time.monotonic()
        async with lib.fail_after(10), connect(lib, broker) as conn:
            station = unique("st")
            await conn.produce(station, "p", b"first")
            consumer = await conn.create_consumer(
                station, "c", pull_interval=0.05, batch_size=1, batch_max_wait_time=5.0
            )
            await consumer.consume(handler)
            await called.wait()
            # No stop_consume: leaving the block stops the loop and its pending 5 s pull.
        assert time.monotonic() - started < 4.0
        assert not conn.is_connected

    lib.run(body)


def test_handler_exception_goes_to_error_handler(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            reported = lib.event()
            errors: list[Any] = []

            async def on_error(consumer: Any, error: Any) -> None:
                errors.append((consumer, error))
                reported.set()

            consumer = await conn.create_consumer(
                station, "c", pull_interval=0.05, batch_max_wait_time=0.2, error_handler=on_error
            )

            async def handler(msgs: list[Any], error: Any, context: Any) -> None:
                raise RuntimeError("handler bug")

            await consumer.consume(handler)
            await lib.wait(reported)
            await consumer.stop_consume()
            assert errors[0][0] is consumer
            assert isinstance(errors[0][1], lib.memphis.MemphisError)
            assert "handler bug" in str(errors[0][1])

    lib.run(body)


# Regression test for a finding of the review of the async frontends.
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


# Regression test for a finding of the review of the async frontends.
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


# ----------------------------------------------------------------------------- cancellation


def test_cancelled_fetch_gives_its_batch_back_promptly(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            producer = await conn.create_producer(station, "p")
            consumer = await conn.create_consumer(
                station, "c", batch_max_wait_time=1.0, max_ack_time=30, max_msg_deliveries=5
            )
            # The pull waits on an empty station: cancel it meanwhile, then produce. The pull runs
            # on to its expiry (docs/protocol.md §7.7), so what it receives is kept by the
            # consumer: a and b each arrive on it as they are produced, and a fetch returns at once
            # what the consumer holds, so a may come back alone, and b from the next fetch.
            async with lib.cancel_after(0.3) as cancelled:
                await consumer.fetch(batch_size=5)
            assert cancelled[0]
            await producer.produce(b"a")
            await producer.produce(b"b")
            started = time.monotonic()
            msgs: list[Any] = []
            async with lib.fail_after(10):
                while len(msgs) < 2:
                    msgs += await consumer.fetch(batch_size=5)
            # Back at once: nothing more is pending behind b, so no fetch waits out
            # batch_max_wait_time for a full batch; not after max_ack_time (30 s) either, and
            # without a second delivery (a cancelled fetch costs no delivery attempt).
            assert time.monotonic() - started < 0.9
            assert [m.data for m in msgs] == [b"a", b"b"]
            assert [m.delivery_count for m in msgs] == [1, 1]

    lib.run(body)


def test_fetch_cancelled_at_once_leaves_nothing_pending(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            producer = await conn.create_producer(station, "p")
            for i in range(3):
                await producer.produce(f"m{i}".encode())
            consumer = await conn.create_consumer(
                station, "c", batch_max_wait_time=2.0, max_ack_time=30, max_msg_deliveries=5
            )
            async with lib.cancel_after(0) as cancelled:
                await consumer.fetch(batch_size=3)
            assert cancelled[0]
            started = time.monotonic()
            got: list[bytes] = []
            async with lib.fail_after(20):
                while len(got) < 3:
                    for m in await consumer.fetch(batch_size=3):
                        got.append(m.data)
                        await m.ack()
            assert sorted(got) == [b"m0", b"m1", b"m2"]
            # Given back by the core, not left to max_ack_time (30 s). The abandoned pull stays
            # queued on the server until it expires (2 s) and may take part of the batch, so
            # the bound is that expiry; it drops to ~0 once abandon_fetch cancels the pull.
            assert time.monotonic() - started < 10.0

    lib.run(body)


def test_cancelled_produce_keeps_the_connection_usable(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            producer = await conn.create_producer(station, "p")
            async with lib.cancel_after(0) as cancelled:
                await producer.produce(b"cancelled wait", msg_id="m1")
            assert cancelled[0]
            await producer.flush()  # the cancelled produce's ack is still counted, then lands
            assert producer._state.in_flight == 0
            ack = await producer.produce(b"next")
            assert ack.sequence == 2  # the cancelled one was stored; nothing is corrupted
            again = await producer.produce(b"cancelled wait", msg_id="m1")
            assert again.duplicate

    lib.run(body)


def test_cancelled_flush_keeps_the_connection_usable(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        async with connect(lib, broker) as conn:
            producer = await conn.create_producer(unique("st"), "p")
            for i in range(2000):
                await producer.produce(b"%d" % i, async_produce=True)
            async with lib.cancel_after(0) as cancelled:
                await producer.flush()
            assert cancelled[0]
            await producer.flush()
            ack = await producer.produce(b"last")
            assert ack.sequence == 2001

    lib.run(body)


# Regression test for a finding of the review of the async frontends.
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


# Regression test for a finding of the review of the async frontends.
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


# ----------------------------------------------------------------------------- native idioms


def test_asyncio_timeout_and_wait_for_are_honoured(broker: EmbeddedBroker) -> None:
    lib = Lib("asyncio")

    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            consumer = await conn.create_consumer(station, "c", batch_max_wait_time=5.0)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await consumer.fetch()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(consumer.fetch(), 0.2)
            assert time.monotonic() - started < 2.0
            task = asyncio.create_task(consumer.fetch())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await conn.produce(station, "p", b"still fine")
            assert [m.data for m in await consumer.fetch(batch_size=1)] == [b"still fine"]

    lib.run(body)


def test_trio_cancel_scopes_are_honoured(broker: EmbeddedBroker) -> None:
    lib = Lib("trio")

    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            consumer = await conn.create_consumer(station, "c", batch_max_wait_time=5.0)
            started = time.monotonic()
            with trio.move_on_after(0.2) as scope:
                await consumer.fetch()
            assert scope.cancelled_caught
            with pytest.raises(trio.TooSlowError), trio.fail_after(0.2):
                await consumer.fetch()
            assert time.monotonic() - started < 2.0
            await conn.produce(station, "p", b"still fine")
            assert [m.data for m in await consumer.fetch(batch_size=1)] == [b"still fine"]

    lib.run(body)


def test_trio_cancelled_block_still_closes(broker: EmbeddedBroker) -> None:
    lib = Lib("trio")

    async def body() -> None:
        box: list[Any] = []
        with trio.move_on_after(0.5) as scope:
            async with connect(lib, broker) as conn:
                box.append(conn)
                consumer = await conn.create_consumer(
                    unique("st"), "c", pull_interval=0.05, batch_max_wait_time=5.0
                )
                await consumer.consume(lambda msgs, err, ctx: None)
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert not box[0].is_connected  # closed in a shielded scope despite the cancel

    lib.run(body)


def test_trio_connection_tasks_live_in_the_nursery(broker: EmbeddedBroker) -> None:
    lib = Lib("trio")

    async def body() -> None:
        me = trio.lowlevel.current_task()
        outside = len(me.child_nurseries)
        async with connect(lib, broker) as conn:
            (nursery,) = me.child_nurseries[outside:]
            names = {task.name for task in nursery.child_tasks}
            assert {"memphis-reader", "memphis-pump"} <= names
            consumer = await conn.create_consumer(unique("st"), "c", pull_interval=0.05)
            await consumer.consume(lambda msgs, err, ctx: None)
            assert any(t.name.startswith("memphis-consume") for t in nursery.child_tasks)
        assert len(me.child_nurseries) == outside

    lib.run(body)


def test_asyncio_messages_actions_are_awaitable(broker: EmbeddedBroker) -> None:
    lib = Lib("asyncio")

    async def body() -> None:
        async with connect(lib, broker) as conn:
            station = unique("st")
            producer = await conn.create_producer(station, "p")
            await producer.produce(b"x")
            consumer = await conn.create_consumer(
                station, "c", batch_max_wait_time=0.5, max_ack_time=30
            )
            (msg,) = await consumer.fetch()
            await msg.nack()
            (again,) = await consumer.fetch()
            assert again.data == b"x"
            assert again.delivery_count == 2
            await again.dead_letter("bad")
            assert await consumer.fetch() == []

    lib.run(body)


def test_close_fails_waiting_calls_promptly(lib: Lib, broker: EmbeddedBroker) -> None:
    async def body() -> None:
        conn = await connect(lib, broker)
        consumer = await conn.create_consumer(unique("st"), "c", batch_max_wait_time=5.0)
        waiting = lib.event()
        outcome: list[BaseException] = []

        async def fetcher() -> None:
            waiting.set()
            try:
                await consumer.fetch()
            except lib.memphis.MemphisError as exc:
                outcome.append(exc)

        async def closer() -> None:
            await waiting.wait()
            await conn.close()

        started = time.monotonic()
        async with lib.fail_after(10):
            await lib.gather(fetcher, closer)
        assert time.monotonic() - started < 2.0  # not the 5 s pull
        assert isinstance(outcome[0], lib.memphis.ConnectionClosedError)
        with pytest.raises(lib.memphis.ConnectionClosedError):
            await conn.create_producer(unique("st"), "late")

    lib.run(body)
