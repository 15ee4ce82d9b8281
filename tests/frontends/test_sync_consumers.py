"""The blocking client's consumers against a broker of the test's own: error handlers that call
back into the connection, a consumer recreated after its station was destroyed, prefetch across
partitions."""

from __future__ import annotations

import threading

import pytest

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker
from tests.support.sync_client import connect


# Regression test for a finding of the review of the blocking frontend and the core.
def test_error_handler_may_call_back_into_the_connection(own_broker: EmbeddedBroker) -> None:
    with connect(own_broker) as conn, connect(own_broker) as other:
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


# Regression test for a finding of the review of the blocking frontend and the core.
def test_recreating_an_unreachable_consumer_gives_a_working_one(own_broker: EmbeddedBroker) -> None:
    with connect(own_broker) as conn, connect(own_broker) as other:
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


# Regression test for a finding of the review of the blocking frontend and the core.
def test_prefetch_keeps_order_and_respects_the_requested_partition(
    own_broker: EmbeddedBroker,
) -> None:
    with connect(own_broker) as conn:
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
