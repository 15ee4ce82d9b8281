"""Partitions: key-based routing (same key, same partition, same order) and round robin.

A partition key is hashed with MurmurHash3 (seed 31) exactly as the Go and Python SDKs do, so
every SDK sends a given key to the same partition. Without a key, a producer cycles through the
partitions; ``partition_number`` picks one explicitly.

The broker: see example_setup.py. Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from example_setup import broker_args  # the broker's address, from the environment

import memphis_sync as memphis

STATION = "partitions-demo"
PARTITIONS = 3


def main() -> None:
    ok = True
    with memphis.connect(**broker_args()) as conn:
        station = conn.create_station(STATION, partitions_number=PARTITIONS)
        print(f"created station {STATION!r} with {PARTITIONS} partitions")
        try:
            producer = station.create_producer("events")
            users = ["alice", "bob", "carol", "dave"]
            for step in range(3):
                for user in users:
                    producer.produce(f"{user}:{step}", partition_key=user, async_produce=True)
            for i in range(PARTITIONS):
                producer.produce(f"round-robin:{i}")  # one to each partition, in turn
            producer.produce("pinned", partition_number=PARTITIONS)
            producer.flush()
            print(f"produced {len(users) * 3} keyed, {PARTITIONS} round-robin, 1 pinned message")

            consumer = station.create_consumer("reader", batch_max_wait_time=0.5, batch_size=100)
            where: dict[str, set[int]] = defaultdict(set)
            for partition in range(1, PARTITIONS + 1):
                messages = consumer.fetch(batch_size=100, partition_number=partition)
                texts = [m.data.decode() for m in messages]
                for m in messages:
                    m.ack()
                print(f"partition {partition}: {', '.join(texts)}")
                for text in texts:
                    where[text.split(":")[0]].add(partition)
                # Per key, messages stay in produce order inside their partition.
                for user in users:
                    steps = [t for t in texts if t.startswith(f"{user}:")]
                    ok &= steps == sorted(steps)
            for user in users:
                print(f"key {user!r} -> partition {sorted(where[user])}")
                ok &= len(where[user]) == 1
            ok &= where["round-robin"] == set(range(1, PARTITIONS + 1))
            ok &= where["pinned"] == {PARTITIONS}
        finally:
            station.destroy()
    if not ok:
        sys.exit("a key was spread over partitions, out of order, or not routed as asked")


if __name__ == "__main__":
    main()
