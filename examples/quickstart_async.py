"""Quickstart on asyncio or trio: a station, a producer, a consumer; produce, fetch and ack.

The same calls as ``quickstart.py``, awaited. ``async with memphis.connect(...)`` owns the
connection's tasks (with trio, a nursery) and closes the connection at the end of the block.
``memphis_asyncio`` and ``memphis_trio`` have one API, so this program runs on either::

    python examples/quickstart_async.py              # asyncio
    python examples/quickstart_async.py --lib trio

The broker: see example_setup.py. Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import sys

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

STATION = f"{LIB}-quickstart-orders"


async def main() -> None:
    async with memphis.connect(**broker_args()) as conn:
        station = await conn.create_station(STATION, retention_value=600)
        print(f"created station {STATION!r}")
        try:
            producer = await station.create_producer("web")
            orders = [{"id": i, "item": item} for i, item in enumerate(["book", "pen", "lamp"])]
            sequences = []
            for order in orders:
                ack = await producer.produce(
                    order, headers={"source": "quickstart"}, msg_id=f"order-{order['id']}"
                )
                assert ack is not None  # a synchronous produce returns the broker's PubAck
                sequences.append(ack.sequence)
            print(f"produced {len(orders)} messages, stored as seq={sequences}")

            consumer = await station.create_consumer("billing", batch_max_wait_time=1.0)
            messages = await consumer.fetch(batch_size=10)
            print(f"fetched {len(messages)} messages")
            for msg in messages:
                print(f"  seq={msg.sequence_number} data={msg.data.decode()} headers={msg.headers}")
                await msg.ack()
            print(f"acked {len(messages)} messages")
            if [msg.data for msg in messages] != [
                b'{"id":0,"item":"book"}',
                b'{"id":1,"item":"pen"}',
                b'{"id":2,"item":"lamp"}',
            ]:
                sys.exit(f"unexpected messages: {[m.data for m in messages]}")
        finally:
            await station.destroy()


if __name__ == "__main__":
    trio.run(main) if LIB == "trio" else asyncio.run(main())
