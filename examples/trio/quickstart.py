"""Quickstart with trio: a station, a producer, a consumer; produce, fetch and ack.

The same calls as ``examples/quickstart.py``, awaited. ``async with memphis.connect(...)``
owns the connection's tasks (a nursery) and closes it at the end of the block.

Environment: ``MEMPHIS_HOST`` (127.0.0.1), ``MEMPHIS_PORT`` (6666), ``MEMPHIS_USERNAME`` (root),
``MEMPHIS_CONNECTION_TOKEN`` (memphis). Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import os
import sys

import trio

import memphis_trio as memphis

STATION = "trio-quickstart-orders"


async def main() -> int:
    host = os.environ.get("MEMPHIS_HOST", "127.0.0.1")
    port = int(os.environ.get("MEMPHIS_PORT", "6666"))
    user = os.environ.get("MEMPHIS_USERNAME", "root")
    token = os.environ.get("MEMPHIS_CONNECTION_TOKEN", "memphis")
    async with memphis.connect(host, user, connection_token=token, port=port) as conn:
        print(f"connected to {host}:{port} as {user}")
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
                print("unexpected messages", file=sys.stderr)
                return 1
        finally:
            await station.destroy()
    print("quickstart (trio): OK")
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
