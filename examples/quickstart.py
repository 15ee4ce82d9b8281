"""Quickstart: a station, a producer, a consumer; produce a few messages, fetch and ack them.

Run against any Memphis-compatible broker (``memphis-broker`` or ``make demo``)::

    MEMPHIS_HOST=127.0.0.1 MEMPHIS_PORT=6666 MEMPHIS_CONNECTION_TOKEN=memphis \\
        python examples/quickstart.py

Environment: ``MEMPHIS_HOST`` (127.0.0.1), ``MEMPHIS_PORT`` (6666), ``MEMPHIS_USERNAME`` (root),
``MEMPHIS_CONNECTION_TOKEN`` (memphis). Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import os
import sys

import memphis_sync as memphis

STATION = "quickstart-orders"


def connect() -> memphis.Connection:
    host = os.environ.get("MEMPHIS_HOST", "127.0.0.1")
    port = int(os.environ.get("MEMPHIS_PORT", "6666"))
    user = os.environ.get("MEMPHIS_USERNAME", "root")
    token = os.environ.get("MEMPHIS_CONNECTION_TOKEN", "memphis")
    conn = memphis.connect(host, user, connection_token=token, port=port)
    print(f"connected to {host}:{port} as {user}")
    return conn


def main() -> int:
    with connect() as conn:
        station = conn.create_station(STATION, retention_value=600)
        print(f"created station {STATION!r}")
        try:
            producer = station.create_producer("web")
            orders = [{"id": i, "item": item} for i, item in enumerate(["book", "pen", "lamp"])]
            for order in orders:
                producer.produce(
                    order, headers={"source": "quickstart"}, msg_id=f"order-{order['id']}"
                )
            print(f"produced {len(orders)} messages")

            consumer = station.create_consumer("billing", batch_max_wait_time=1.0)
            messages = consumer.fetch(batch_size=10)
            print(f"fetched {len(messages)} messages")
            for msg in messages:
                print(f"  seq={msg.sequence_number} data={msg.data.decode()} headers={msg.headers}")
                msg.ack()
            print(f"acked {len(messages)} messages")
            expected = [
                b'{"id":0,"item":"book"}',
                b'{"id":1,"item":"pen"}',
                b'{"id":2,"item":"lamp"}',
            ]
            if [m.data for m in messages] != expected:
                print("unexpected messages", file=sys.stderr)
                return 1
        finally:
            station.destroy()
            print(f"destroyed station {STATION!r}")
    print("quickstart: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
