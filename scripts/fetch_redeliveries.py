"""How often a ``fetch()`` loop makes the broker spend a delivery that no caller saw.

Starts an embedded broker and runs ``--rounds`` rounds of the drain loop ``while batch :=
consumer.fetch(): ack each``, each on a new 3-partition station holding 6 messages (two per
partition) read by a new consumer group. After each loop it reads JetStream's own count of
deliveries to the group (``delivered.consumer_seq`` of each partition's durable, redeliveries
included) and prints how many rounds counted more than the 6 messages: a round where a
message was delivered, lost to nobody, and delivered again (docs/protocol.md §7.7). A message
the caller saw twice would show too (``delivery_count`` above 1).

Run: ``.venv/bin/python scripts/fetch_redeliveries.py [--rounds 50] [--wait 0.5]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker
from memphis_core.memphis._names import internal_name

PARTITIONS = 3
MESSAGES = 6


async def _delivered(broker: EmbeddedBroker, station: str, group: str) -> int:
    nc = await nats.connect(**broker.connect_options())
    try:
        js = nc.jetstream()
        total = 0
        for p in range(1, PARTITIONS + 1):
            info = await js.consumer_info(f"{internal_name(station)}${p}", internal_name(group))
            total += info.delivered.consumer_seq
        return total
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="fetch loops to run")
    parser.add_argument(
        "--wait", type=float, default=0.5, help="the consumer's batch_max_wait_time (s)"
    )
    args = parser.parse_args()
    broker = EmbeddedBroker().start()
    spent = 0
    try:
        with memphis.connect(
            broker.host, "root", connection_token=broker.token, port=broker.port
        ) as conn:
            for _ in range(args.rounds):
                station = f"redeliveries-{uuid.uuid4().hex[:8]}"
                producer = conn.create_station(
                    station, partitions_number=PARTITIONS
                ).create_producer("p")
                for i in range(MESSAGES):
                    producer.produce(b"m%d" % i)
                consumer = conn.create_consumer(station, "c", batch_max_wait_time=args.wait)
                seen = 0
                while batch := consumer.fetch(batch_size=10):
                    for message in batch:
                        seen += 1
                        message.ack()
                # The loop ended on an empty fetch, so every pull is over: nothing more is
                # delivered after this count.
                delivered = asyncio.run(_delivered(broker, station, "c"))
                if delivered > MESSAGES or seen != MESSAGES:
                    spent += 1
                    print(f"  {station}: {seen} seen, {delivered} delivered")
    finally:
        broker.stop()
    print(f"{spent} of {args.rounds} rounds spent a delivery nobody saw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
