"""How many copies of one ``msg_id`` a station stores, per partition count.

Starts an embedded broker, produces the same message with the same ``msg_id`` ``--times`` times
(synchronously, as retries would be) on stations of 1, 2, 3 and 5 partitions, and prints the
messages stored in each partition's stream, read over nats-py's JetStream API.

Run: ``.venv/bin/python scripts/msg_id_dedup.py [--times 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker

PARTITIONS = (1, 2, 3, 5)


async def _stored(broker: EmbeddedBroker, station: str, partitions: int) -> list[int]:
    nc = await nats.connect(**broker.connect_options())
    try:
        js = nc.jetstream()
        return [
            (await js.stream_info(f"{station}${p}")).state.messages
            for p in range(1, partitions + 1)
        ]
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=3, help="produces of the same msg_id")
    args = parser.parse_args()
    broker = EmbeddedBroker().start()
    try:
        with memphis.connect(
            broker.host, "root", connection_token=broker.token, port=broker.port
        ) as conn:
            print(f"one msg_id produced {args.times} times")
            print(f"{'partitions':>10}  {'stored':>6}  per partition")
            for n in PARTITIONS:
                station = f"dedup{n}"
                producer = conn.create_station(station, partitions_number=n).create_producer("p")
                for _ in range(args.times):
                    producer.produce(b"payment", msg_id="order-1")
                counts = asyncio.run(_stored(broker, station, n))
                print(f"{n:>10}  {sum(counts):>6}  {counts}")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
