"""Quickstart: a station, a producer, a consumer; produce a few messages, fetch and ack them.

Run against any Memphis-compatible broker (``memphis-broker`` or ``make demo``)::

    MEMPHIS_HOST=127.0.0.1 MEMPHIS_PORT=6666 MEMPHIS_CONNECTION_TOKEN=memphis \\
        python examples/quickstart.py

The broker's address comes from the environment (example_setup.py says which variables, and
their defaults); ``memphis.connect(**broker)`` is
``memphis.connect(host, username, connection_token=token, port=port)``. Exits non-zero if
anything does not behave as expected.
"""

from __future__ import annotations

import sys

from example_setup import broker_args

import memphis_sync as memphis

STATION = "quickstart-orders"


def main() -> None:
    broker = broker_args()
    with memphis.connect(**broker) as conn:
        print(f"connected to {broker['host']}:{broker['port']} as {broker['username']}")
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
                sys.exit(f"unexpected messages: {[m.data for m in messages]}")
        finally:
            station.destroy()
            print(f"destroyed station {STATION!r}")


if __name__ == "__main__":
    main()
