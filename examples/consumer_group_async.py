"""Consumer groups on asyncio or trio: ``consume(handler)`` with a coroutine handler.

Two workers in group ``billing`` split a station's orders, as in ``consumer_group.py``; here
``await worker.consume(handler)`` starts a task of the connection (with trio, in its nursery)
that awaits the handler for every batch, until ``await worker.stop_consume()``. Handlers run on
the event loop, so they share state without locks. Meanwhile the consumer of group ``audit``
reads every order with ``fetch``, which waits at most ``batch_max_wait_time``: that loop also
bounds the wait for the workers, so no timer of either library is needed.

On asyncio by default; ``--lib trio`` for trio. The broker: see example_setup.py. Exits
non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

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

ORDERS = 30


async def main() -> None:
    billed: Counter[str] = Counter()  # order id -> times handled by the billing group
    per_worker: Counter[str] = Counter()

    async def bill(messages: list[memphis.Message], error: Any, worker: Any) -> None:
        if error is not None:
            print(f"{worker}: {error}", file=sys.stderr)
            return
        for msg in messages:
            billed[msg.data.decode()] += 1
            per_worker[worker] += 1
            await msg.ack()

    async with memphis.connect(**broker_args()) as conn:
        station = await conn.create_station(
            f"{LIB}-consumer-group", partitions_number=3, retention_value=600
        )
        try:
            workers = []
            for name in ("worker-1", "worker-2"):
                worker = await station.create_consumer(
                    name, consumer_group="billing", batch_max_wait_time=0.5, pull_interval=0.1
                )
                worker.set_context(name)  # the handler's third argument
                await worker.consume(bill)
                workers.append(worker)
            auditor = await station.create_consumer(
                "auditor", consumer_group="audit", batch_max_wait_time=0.5
            )

            producer = await station.create_producer("shop")
            for i in range(ORDERS):
                await producer.produce(f"order-{i}".encode(), async_produce=True)
            await producer.flush()
            print(f"produced {ORDERS} orders over 3 partitions")

            audited: set[str] = set()
            deadline = time.monotonic() + 30
            while (len(billed) < ORDERS or len(audited) < ORDERS) and time.monotonic() < deadline:
                for msg in await auditor.fetch(batch_size=ORDERS):
                    audited.add(msg.data.decode())
                    await msg.ack()
            for worker in workers:
                await worker.stop_consume()
            one, two = per_worker["worker-1"], per_worker["worker-2"]
            twice = sum(n - 1 for n in billed.values())
            print(f"billing: {one} + {two} = {one + two} messages, {twice} duplicates")
            print(f"audit: {len(audited)} messages")
            if one + two != ORDERS or twice or len(audited) != ORDERS:
                sys.exit("each order must be billed once and audited once")
        finally:
            await station.destroy()


if __name__ == "__main__":
    trio.run(main) if LIB == "trio" else asyncio.run(main())
