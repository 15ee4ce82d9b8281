"""``make console``: a broker with its console and sample traffic to look at; Ctrl-C stops it.

Station ``console-orders`` (3 partitions) gets about 10 messages a second. Group ``billing``
acknowledges what it fetches, except every 25th message, which exhausts its deliveries and
lands in the dead-letter station; group ``audit`` reads slowly, so its lag grows and shrinks.
Usage: ``python scripts/console_traffic.py [--console-port PORT]`` (default 9000).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker
from memphis_broker.console import add_arguments, start_embedded

STATION = "console-orders"
ITEMS = ("book", "pen", "lamp", "desk", "mug")


def traffic(conn: memphis.Connection) -> None:
    station = conn.create_station(STATION, partitions_number=3, retention_value=3600)
    producer = station.create_producer("shop")
    billing = station.create_consumer(
        "billing-1",
        consumer_group="billing",
        batch_max_wait_time=0.1,
        max_ack_time=2.0,
        max_msg_deliveries=2,
    )
    audit = station.create_consumer("audit-1", consumer_group="audit", batch_max_wait_time=0.1)
    for n in itertools.count():
        producer.produce({"order": n, "item": ITEMS[n % len(ITEMS)]}, headers={"source": "shop"})
        for msg in billing.fetch(batch_size=10):
            if json.loads(msg.data)["order"] % 25:  # every 25th is never acked: poison
                msg.ack()
        if n % 20 == 0:
            for msg in audit.fetch(batch_size=100):
                msg.ack()
        time.sleep(0.1)  # pacing the sample traffic, not waiting for anything


def main() -> int:
    parser = argparse.ArgumentParser(description="a broker with its console and sample traffic")
    add_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memphis-console-") as store:
        broker = EmbeddedBroker(port=0, store_dir=store).start()
        stop_console, console = start_embedded(broker, args.console_port)
        print(f"broker up on {broker.url}{console}; log in as root, token 'memphis'", flush=True)
        try:
            with memphis.connect(
                broker.host, "root", connection_token=broker.token or "memphis", port=broker.port
            ) as conn:
                traffic(conn)
        except KeyboardInterrupt:
            pass
        finally:
            stop_console()
            broker.stop()
    print("broker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
