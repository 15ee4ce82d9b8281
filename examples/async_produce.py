"""Async produce: pipeline many messages, then ``flush()`` once; compare with sync produce.

``produce(..., async_produce=True)`` returns as soon as the message is queued; a bounded window
of unacknowledged messages keeps memory flat (produce blocks when it is full). ``flush()`` waits
for every acknowledgement and raises the first failure, so nothing is lost silently.

The broker: see example_setup.py; ``MESSAGES`` (20000): how many messages.
Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import os
import sys
import time

from example_setup import broker_args  # the broker's address, from the environment

import memphis_sync as memphis

STATION = "async-produce-demo"


def main() -> None:
    count = int(os.environ.get("MESSAGES", "20000"))
    sync_count = max(1, count // 20)
    payload = b"x" * 128
    with memphis.connect(**broker_args()) as conn:
        station = conn.create_station(STATION, retention_value=600)
        try:
            producer = station.create_producer("loader")

            started = time.perf_counter()
            for _ in range(sync_count):
                producer.produce(payload)
            sync_rate = sync_count / (time.perf_counter() - started)
            print(f"sync produce: {sync_count} messages, {sync_rate:,.0f} msgs/s")

            started = time.perf_counter()
            for _ in range(count):
                producer.produce(payload, async_produce=True)
            producer.flush()
            async_rate = count / (time.perf_counter() - started)
            print(f"async produce + flush: {count} messages, {async_rate:,.0f} msgs/s")
            print(f"async/sync: {async_rate / sync_rate:.1f}x")

            consumer = station.create_consumer("counter", batch_max_wait_time=0.5)
            stored = 0
            while batch := consumer.fetch(batch_size=5000):
                stored += len(batch)
                for msg in batch:
                    msg.ack()
            print(f"stored: {stored} messages")
            if stored != count + sync_count:
                sys.exit(f"expected {count + sync_count} messages")
        finally:
            station.destroy()


if __name__ == "__main__":
    main()
