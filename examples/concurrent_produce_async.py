"""Produce from many tasks on asyncio or trio: one connection, every produce pipelined.

Tasks that share a connection share its socket: while one task's ``await producer.produce(...)``
waits for its PubAck, the other tasks' messages are already on the wire, so ten tasks producing
one message at a time get far more through than one task. A single task gets the same effect
with ``async_produce=True`` and one ``await producer.flush()``, which raises the first failure
(``async_produce.py`` shows it on its own). Task groups are the one thing that differs between
asyncio (the default) and trio (``--lib trio``) here.

The broker: see example_setup.py; ``MESSAGES`` (20000): how many messages. Exits non-zero if
anything does not behave as expected.
"""

from __future__ import annotations

import os
import sys
import time

from example_setup import broker_args, event_loop_library

# --lib picks the frontend; memphis_trio and memphis_asyncio have one API (the same classes),
# so all below runs on either. mypy checks it against memphis_trio's.
LIB = event_loop_library(__doc__)
if LIB == "trio":
    import trio

    import memphis_trio as memphis
else:
    import asyncio

    import memphis_asyncio as memphis  # type: ignore[no-redef]  # the same API

TASKS = 10


async def main() -> None:
    count = int(os.environ.get("MESSAGES", "20000"))
    per_task = max(1, count // 20 // TASKS)
    payload = b"x" * 128
    async with memphis.connect(**broker_args()) as conn:
        station = await conn.create_station(f"{LIB}-concurrent-produce", retention_value=600)
        try:
            producer = await station.create_producer("loader")

            async def produce_some() -> None:
                for _ in range(per_task):
                    await producer.produce(payload)  # waits for its own PubAck

            started = time.perf_counter()
            await produce_some()
            one_task = per_task / (time.perf_counter() - started)
            print(f"1 task: {per_task} messages, {one_task:,.0f} msgs/s")

            started = time.perf_counter()
            if LIB == "trio":
                async with trio.open_nursery() as nursery:
                    for _ in range(TASKS):
                        nursery.start_soon(produce_some)
            else:
                async with asyncio.TaskGroup() as group:
                    for _ in range(TASKS):
                        group.create_task(produce_some())
            many_tasks = per_task * TASKS / (time.perf_counter() - started)
            print(f"{TASKS} tasks: {per_task * TASKS} messages, {many_tasks:,.0f} msgs/s")

            started = time.perf_counter()
            for _ in range(count):
                await producer.produce(payload, async_produce=True)
            await producer.flush()
            pipelined = count / (time.perf_counter() - started)
            print(f"1 task, async produce + flush: {count} messages, {pipelined:,.0f} msgs/s")

            expected = per_task * (1 + TASKS) + count
            consumer = await station.create_consumer("counter", batch_max_wait_time=0.5)
            stored = 0
            while batch := await consumer.fetch(batch_size=5000):
                stored += len(batch)
                for msg in batch:
                    await msg.ack()
            print(f"stored: {stored} messages")
            if stored != expected:
                sys.exit(f"expected {expected} messages")
        finally:
            await station.destroy()


if __name__ == "__main__":
    trio.run(main) if LIB == "trio" else asyncio.run(main())
