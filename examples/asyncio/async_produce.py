"""Async produce with asyncio: pipeline many messages, ``flush()`` once; and concurrent tasks.

``await producer.produce(..., async_produce=True)`` returns as soon as the message is queued;
a bounded window of unacknowledged messages keeps memory flat (the call waits when the window
is full). ``await producer.flush()`` waits for every acknowledgement and raises the first
failure. Synchronous produces from many tasks share one connection and are pipelined too.

Environment: ``MEMPHIS_HOST``, ``MEMPHIS_PORT``, ``MEMPHIS_USERNAME``,
``MEMPHIS_CONNECTION_TOKEN`` (see quickstart.py), ``MESSAGES`` (20000). Exits non-zero if
anything does not behave as expected.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import memphis_asyncio as memphis

STATION = "asyncio-async-produce"
TASKS = 10


def connect() -> memphis.Connecting:
    return memphis.connect(
        os.environ.get("MEMPHIS_HOST", "127.0.0.1"),
        os.environ.get("MEMPHIS_USERNAME", "root"),
        connection_token=os.environ.get("MEMPHIS_CONNECTION_TOKEN", "memphis"),
        port=int(os.environ.get("MEMPHIS_PORT", "6666")),
    )


async def main() -> int:
    count = int(os.environ.get("MESSAGES", "20000"))
    per_task = max(1, count // 20 // TASKS)
    payload = b"x" * 128
    async with connect() as conn:
        station = await conn.create_station(STATION, retention_value=600)
        try:
            producer = await station.create_producer("loader")

            async def produce_some() -> None:
                for _ in range(per_task):
                    await producer.produce(payload)  # waits for its own PubAck

            started = time.perf_counter()
            async with asyncio.TaskGroup() as group:
                for _ in range(TASKS):
                    group.create_task(produce_some())
            sync_count = per_task * TASKS
            sync_rate = sync_count / (time.perf_counter() - started)
            print(f"sync produce, {TASKS} tasks: {sync_count} messages, {sync_rate:,.0f} msgs/s")

            started = time.perf_counter()
            for _ in range(count):
                await producer.produce(payload, async_produce=True)
            await producer.flush()
            async_rate = count / (time.perf_counter() - started)
            print(f"async produce + flush: {count} messages, {async_rate:,.0f} msgs/s")

            consumer = await station.create_consumer("counter", batch_max_wait_time=0.5)
            stored = 0
            while batch := await consumer.fetch(batch_size=5000):
                stored += len(batch)
                for msg in batch:
                    await msg.ack()
            print(f"stored: {stored} messages")
            if stored != count + sync_count:
                print(f"expected {count + sync_count} messages", file=sys.stderr)
                return 1
        finally:
            await station.destroy()
    print("async_produce (asyncio): OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
