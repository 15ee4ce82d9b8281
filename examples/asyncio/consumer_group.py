"""Consumer groups with asyncio: workers that share a station's messages, and a group that sees
them all.

Each message of a station is delivered to one member of each consumer group: two workers in
group ``billing`` split the orders, while group ``audit`` gets every order too. The workers use
``await consumer.consume(handler)``, which runs a task of the connection that awaits the
handler for every batch until ``await consumer.stop_consume()``.

Environment: ``MEMPHIS_HOST``, ``MEMPHIS_PORT``, ``MEMPHIS_USERNAME``,
``MEMPHIS_CONNECTION_TOKEN`` (see quickstart.py). Exits non-zero if anything does not behave as
expected.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from typing import Any

import memphis_asyncio as memphis

STATION = "asyncio-consumer-group"
ORDERS = 30


def connect() -> memphis.Connecting:
    return memphis.connect(
        os.environ.get("MEMPHIS_HOST", "127.0.0.1"),
        os.environ.get("MEMPHIS_USERNAME", "root"),
        connection_token=os.environ.get("MEMPHIS_CONNECTION_TOKEN", "memphis"),
        port=int(os.environ.get("MEMPHIS_PORT", "6666")),
    )


async def main() -> int:
    handled: Counter[str] = Counter()  # order id -> times handled by the billing group
    per_worker: Counter[str] = Counter()
    all_handled = asyncio.Event()

    async def handler(messages: list[memphis.Message], error: Any, worker: Any) -> None:
        if error is not None:
            print(f"{worker}: {error}", file=sys.stderr)
            return
        for msg in messages:
            handled[msg.data.decode()] += 1
            per_worker[worker] += 1
            await msg.ack()
        if len(handled) == ORDERS:
            all_handled.set()

    async with connect() as conn:
        station = await conn.create_station(STATION, partitions_number=3, retention_value=600)
        try:
            # Both workers wait for work before any arrives, so they share it from the start.
            # Each pull reads one partition (round robin) and waits up to batch_max_wait_time
            # for a full batch.
            workers = []
            for name in ("worker-1", "worker-2"):
                worker = await station.create_consumer(
                    name,
                    consumer_group="billing",
                    batch_size=5,
                    batch_max_wait_time=0.5,
                    pull_interval=0.1,
                )
                worker.set_context(name)  # the handler's third argument
                await worker.consume(handler)
                workers.append(worker)
            audit = await station.create_consumer(
                "auditor", consumer_group="audit", batch_max_wait_time=0.5
            )

            producer = await station.create_producer("shop")
            for i in range(ORDERS):
                await producer.produce(f"order-{i}".encode(), async_produce=True)
            await producer.flush()
            print(f"produced {ORDERS} orders over 3 partitions")

            try:
                async with asyncio.timeout(30):
                    await all_handled.wait()
            except TimeoutError:
                print(f"billing handled only {len(handled)} orders", file=sys.stderr)
                return 1
            for worker in workers:
                await worker.stop_consume()
            one, two = per_worker["worker-1"], per_worker["worker-2"]
            duplicates = sum(n - 1 for n in handled.values())
            print(f"billing: {one} + {two} = {one + two} messages, {duplicates} duplicates")

            seen: set[str] = set()
            while len(seen) < ORDERS and (batch := await audit.fetch(batch_size=ORDERS)):
                for msg in batch:
                    seen.add(msg.data.decode())
                    await msg.ack()
            print(f"audit: {len(seen)} messages")
            if one + two != ORDERS or duplicates or len(seen) != ORDERS:
                return 1
        finally:
            await station.destroy()
    print("consumer_group (asyncio): OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
