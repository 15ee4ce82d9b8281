"""Consumer groups: workers that share a station's messages, and a group that sees them all.

Every consumer belongs to a consumer group (by default a group of its own). Each message of a
station is delivered to one member of each group: two workers in group ``billing`` split the
orders between them, while the one consumer of group ``audit`` gets every order too. The
workers use ``consume(handler)``, which calls the handler from a background thread for every
batch until ``stop_consume()``.

The broker: see example_setup.py. Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from typing import Any

from example_setup import broker_args  # the broker's address, from the environment

import memphis_sync as memphis

STATION = "consumer-group-orders"
ORDERS = 30


def main() -> None:
    handled: Counter[str] = Counter()  # order id -> times handled by the billing group
    per_worker: Counter[str] = Counter()
    lock = threading.Lock()  # handlers run in each worker's own thread
    all_handled = threading.Event()

    def handler(messages: list[memphis.Message], error: Any, worker: Any) -> None:
        if error is not None:
            print(f"{worker}: {error}", file=sys.stderr)
            return
        for msg in messages:
            with lock:
                handled[msg.data.decode()] += 1
                per_worker[worker] += 1
                if len(handled) == ORDERS:
                    all_handled.set()
            msg.ack()

    with memphis.connect(**broker_args()) as conn:
        station = conn.create_station(STATION, partitions_number=3, retention_value=600)
        try:
            # Both workers wait for work before any arrives, so they share it from the start.
            # Each pull reads one partition (round robin) and waits up to batch_max_wait_time
            # for a full batch.
            workers = []
            for name in ("worker-1", "worker-2"):
                worker = station.create_consumer(
                    name,
                    consumer_group="billing",
                    batch_size=5,
                    batch_max_wait_time=0.5,
                    pull_interval=0.1,
                )
                worker.set_context(name)  # the handler's third argument
                worker.consume(handler)
                workers.append(worker)
            audit = station.create_consumer(
                "auditor", consumer_group="audit", batch_max_wait_time=0.5
            )

            producer = station.create_producer("shop")
            for i in range(ORDERS):
                producer.produce(f"order-{i}".encode(), async_produce=True)
            producer.flush()
            print(f"produced {ORDERS} orders over 3 partitions")
            if not all_handled.wait(timeout=30):
                sys.exit(f"billing handled only {len(handled)} orders")
            for worker in workers:
                worker.stop_consume()
            one, two = per_worker["worker-1"], per_worker["worker-2"]
            duplicates = sum(n - 1 for n in handled.values())
            print(f"billing: {one} + {two} = {one + two} messages, {duplicates} duplicates")

            seen: set[str] = set()
            while len(seen) < ORDERS and (batch := audit.fetch(batch_size=ORDERS)):
                for msg in batch:
                    seen.add(msg.data.decode())
                    msg.ack()
            print(f"audit: {len(seen)} messages")
            if one + two != ORDERS or duplicates or len(seen) != ORDERS:
                sys.exit("each order must be billed once and audited once")
        finally:
            station.destroy()


if __name__ == "__main__":
    main()
