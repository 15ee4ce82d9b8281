"""The frontends when nats-server dies, freezes or stops under them (a broker of the test's own).

* kill -9 of nats-server under a running producer and consumer, restarted on the same port and
  store: the client reconnects by itself and resumes; with ``msg_id`` no acknowledged message is
  lost and none is stored twice; every produce that was in flight either completes or raises.
  Blocking client, and the async driver on memphis_asyncio and memphis_trio (the pump redials by
  itself).
* a frozen server (SIGSTOP): a produce's ``ack_wait`` still bounds it.
* a stopped server with reconnect off: ``consume`` ends with ``ConnectionClosedError``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker
from tests.support.async_lib import Lib
from tests.support.frontends import connect_root
from tests.support.sync_client import connect, drain


def test_kill_9_and_restart_loses_nothing_and_stores_nothing_twice(
    own_broker: EmbeddedBroker,
) -> None:
    total = 300
    conn = connect(own_broker, reconnect_interval=0.05, max_reconnect=-1)
    try:
        station = conn.create_station("crash-test", partitions_number=2)
        producer = station.create_producer("writer")
        consumer = station.create_consumer(
            "reader", batch_size=500, batch_max_wait_time=0.5, max_ack_time=30
        )
        produced = threading.Event()
        halfway = threading.Event()
        failures: list[BaseException] = []
        outcomes = {"completed": 0, "raised": 0}

        def produce_all() -> None:
            try:
                for i in range(total):
                    if i == total // 3:
                        halfway.set()
                    # The same msg_id on a retry: whatever reached the stream is not stored twice.
                    while True:
                        try:
                            producer.produce(
                                f"{i}".encode(),
                                msg_id=f"m-{i}",
                                partition_number=1 + i % 2,
                                ack_wait=2.0,
                            )
                            outcomes["completed"] += 1
                            break
                        except memphis.MemphisError:
                            outcomes["raised"] += 1
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)
            finally:
                produced.set()

        writer = threading.Thread(target=produce_all)
        writer.start()
        assert halfway.wait(30)
        own_broker.restart_server(kill=True)
        assert produced.wait(120), "a produce hung across the restart"
        writer.join()
        assert not failures
        assert outcomes["completed"] == total
        assert conn.is_connected
        # Fetch from both partitions until both are empty.
        seen: list[int] = []
        for _ in range(4):
            seen.extend(int(m.data) for m in drain(consumer))
        assert sorted(seen) == list(range(total)), "lost or duplicated messages"
    finally:
        conn.close()


def test_consumer_resumes_after_restart(own_broker: EmbeddedBroker) -> None:
    conn = connect(own_broker, reconnect_interval=0.05, max_reconnect=-1)
    try:
        producer = conn.create_producer("resume", "p")
        consumer = conn.create_consumer("resume", "c", batch_max_wait_time=0.3)
        producer.produce(b"before", msg_id="before")
        assert [m.data for m in drain(consumer)] == [b"before"]
        own_broker.restart_server(kill=True)
        producer.produce(b"after", msg_id="after", ack_wait=5.0)
        assert [m.data for m in drain(consumer)] == [b"after"]
    finally:
        conn.close()


async def drain_async(consumer: Any) -> list[bytes]:
    received: list[bytes] = []
    while True:
        batch = await consumer.fetch(500)
        if not batch:
            return received
        for message in batch:
            await message.ack()
        received.extend(m.data for m in batch)


def test_kill_9_and_restart_loses_nothing(lib: Lib, own_broker: EmbeddedBroker) -> None:
    total = 200
    restarted = [False]

    async def body() -> None:
        async with connect_root(
            lib.memphis, own_broker, reconnect_interval=0.05, max_reconnect=-1
        ) as conn:
            producer = await conn.create_producer("crash-test", "writer")
            consumer = await conn.create_consumer(
                "crash-test", "reader", batch_size=500, batch_max_wait_time=0.5
            )
            halfway = lib.event()

            async def produce_all() -> None:
                for i in range(total):
                    if i == total // 3:
                        halfway.set()
                    while True:  # the same msg_id on a retry: never stored twice
                        try:
                            await producer.produce(f"{i}".encode(), msg_id=f"m-{i}", ack_wait=2.0)
                            break
                        except lib.memphis.MemphisError:
                            pass  # failed for sure or maybe: retry, dedup makes it safe

            async def crash() -> None:
                await lib.wait(halfway)
                # In a worker thread: the loop keeps running, produces are in flight.
                await lib.to_thread(lambda: own_broker.restart_server(kill=True))
                restarted[0] = True

            async with lib.fail_after(120):
                await lib.gather(produce_all, crash)
            assert conn.is_connected
            seen = [int(data) for data in await drain_async(consumer)]
            assert sorted(seen) == list(range(total)), "lost or duplicated messages"
            # The consumer resumes too.
            await producer.produce(b"after", msg_id="after")
            assert await drain_async(consumer) == [b"after"]

    lib.run(body)
    assert restarted[0]


def wait_until_stopped(pid: int, timeout: float = 5.0) -> None:
    """SIGSTOP is delivered asynchronously: poll /proc until the process is really stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as status:
            if any(line.startswith("State:\tT") for line in status):
                return
        time.sleep(0.001)  # polling interval of a condition check
    raise AssertionError(f"process {pid} did not stop")


# Regression test for a finding of the review of the blocking frontend and the core.
def test_ack_wait_is_honoured_while_the_io_thread_sleeps(own_broker: EmbeddedBroker) -> None:
    # The I/O thread sleeps towards its next deadline (the 120 s keepalive here); a new, earlier
    # deadline must wake it, or a frozen server makes produce() wait two minutes.
    with connect(own_broker) as conn:
        producer = conn.create_producer("frozen", "p")
        producer.produce(b"warm-up")
        pid = own_broker.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        wait_until_stopped(pid)
        try:
            started = time.monotonic()
            with pytest.raises(memphis.RequestTimeoutError):
                producer.produce(b"x", ack_wait=0.5)
            assert time.monotonic() - started < 5
        finally:
            os.kill(pid, signal.SIGCONT)


# Regression test for a finding of the review of the blocking frontend and the core.
def test_consume_stops_when_the_connection_closes(own_broker: EmbeddedBroker) -> None:
    conn = connect(own_broker, reconnect=False)
    calls: list[memphis.MemphisError | None] = []
    consumer = conn.create_consumer("closing", "c", batch_max_wait_time=0.1, pull_interval=0.05)
    consumer.consume(lambda messages, error, context: calls.append(error))
    own_broker.stop_server()
    task = consumer._task
    assert task is not None
    task.thread.join(10)
    assert not task.thread.is_alive(), "consume kept spinning on a closed connection"
    assert isinstance(calls[-1], memphis.ConnectionClosedError)
    own_broker.start_server()
    conn.close()
