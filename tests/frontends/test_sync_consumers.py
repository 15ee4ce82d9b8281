"""Regression tests for problems found in review of the blocking frontend and the core."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(store_dir=tmp_path / "store") as running:
        yield running


def connect(broker: EmbeddedBroker, **kwargs: object) -> memphis.Connection:
    return memphis.connect(
        broker.host,
        "root",
        connection_token="memphis",
        port=broker.port,
        **kwargs,  # type: ignore[arg-type]
    )


def wait_until_stopped(pid: int, timeout: float = 5.0) -> None:
    """SIGSTOP is delivered asynchronously: poll /proc until the process is really stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as status:
            if any(line.startswith("State:\tT") for line in status):
                return
        time.sleep(0.001)  # polling interval of a condition check
    raise AssertionError(f"process {pid} did not stop")


def test_ack_wait_is_honoured_while_the_io_thread_sleeps(broker: EmbeddedBroker) -> None:
    # The I/O thread sleeps towards its next deadline (the 120 s keepalive here); a new, earlier
    # deadline must wake it, or a frozen server makes produce() wait two minutes.
    with connect(broker) as conn:
        producer = conn.create_producer("frozen", "p")
        producer.produce(b"warm-up")
        pid = broker.server.pid
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


def test_error_handler_may_call_back_into_the_connection(broker: EmbeddedBroker) -> None:
    with connect(broker) as conn, connect(broker) as other:
        done = threading.Event()
        seen: list[str] = []

        def on_error(consumer: memphis.Consumer, error: memphis.MemphisError) -> None:
            # Blocking calls from a handler used to deadlock the I/O thread that ran it.
            conn.create_station("handler-made-this")
            seen.append(str(error))
            done.set()
            raise RuntimeError("a buggy handler must not kill the connection")

        consumer = conn.create_consumer("doomed", "c", error_handler=on_error)
        consumer.consume(lambda messages, error, context: None)
        other.create_station("doomed").destroy()
        assert done.wait(45), "the error handler was never called"
        assert seen == ["station unreachable"]
        assert conn.is_connected
        conn.create_producer("handler-made-this", "still-works").produce(b"ok")
        consumer.stop_consume()


def test_consume_stops_when_the_connection_closes(broker: EmbeddedBroker) -> None:
    conn = connect(broker, reconnect=False)
    calls: list[memphis.MemphisError | None] = []
    consumer = conn.create_consumer("closing", "c", batch_max_wait_time=0.1, pull_interval=0.05)
    consumer.consume(lambda messages, error, context: calls.append(error))
    broker.stop_server()
    task = consumer._task
    assert task is not None
    task.thread.join(10)
    assert not task.thread.is_alive(), "consume kept spinning on a closed connection"
    assert isinstance(calls[-1], memphis.ConnectionClosedError)
    broker.start_server()
    conn.close()


def test_recreating_an_unreachable_consumer_gives_a_working_one(broker: EmbeddedBroker) -> None:
    with connect(broker) as conn, connect(broker) as other:
        gone = threading.Event()
        first = conn.create_consumer(
            "reborn", "c", batch_max_wait_time=0.2, error_handler=lambda c, e: gone.set()
        )
        other.create_station("reborn").destroy()
        # The failed pull makes the client check the durable at once; "consumer not found"
        # marks it unreachable for good and tells the error handler.
        with pytest.raises(memphis.StationUnreachableError):
            first.fetch(1)
        assert gone.wait(10)
        with pytest.raises(memphis.StationUnreachableError):
            first.fetch(1)
        second = conn.create_consumer("reborn", "c", batch_max_wait_time=0.2)
        assert second is not first
        producer = conn.create_producer("reborn", "p2")
        producer.produce(b"after")
        assert [m.data for m in second.fetch(5)] == [b"after"]


def test_prefetch_keeps_order_and_respects_the_requested_partition(broker: EmbeddedBroker) -> None:
    with connect(broker) as conn:
        station = conn.create_station("prefetching", partitions_number=2)
        producer = station.create_producer("p")
        for i in range(6):
            producer.produce(f"p1-{i}", partition_number=1)
            producer.produce(f"p2-{i}", partition_number=2)
        consumer = station.create_consumer("c", batch_max_wait_time=0.3)
        first = consumer.fetch(3, prefetch=True, partition_number=1)
        assert [m.data for m in first] == [b"p1-0", b"p1-1", b"p1-2"]
        other = consumer.fetch(2, partition_number=2)
        assert [m.data for m in other] == [b"p2-0", b"p2-1"]
        rest = consumer.fetch(3, partition_number=1)
        assert [m.data for m in rest] == [b"p1-3", b"p1-4", b"p1-5"]
        for message in first + other + rest:
            message.ack()
