"""The throughput cost of ``memphis-broker --sync always`` (fsync before every acknowledgement).

Two embedded brokers, one with nats-server's default sync interval (2 minutes) and one with
``sync_interval="always"``, each with a file store on this machine's disk. On each, memphis_sync
produces N messages of 128 B synchronously (one PubAck per message) and N asynchronously (all
PubAcks confirmed by ``flush()``). Runs are interleaved; each cell is the median of ``--runs``.

Run: ``.venv/bin/python bench/durability.py [--runs 3] [--n 2000]`` (also ``make bench``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import memphis_sync as memphis
from memphis_broker import EmbeddedBroker

PAYLOAD = b"x" * 128


def _rate(broker: EmbeddedBroker, station: str, n: int, *, asynchronous: bool) -> float:
    with memphis.connect(broker.host, "root", connection_token="memphis", port=broker.port) as c:
        producer = c.create_producer(station, "p")
        started = time.perf_counter()
        for _ in range(n):
            producer.produce(PAYLOAD, async_produce=asynchronous)
        if asynchronous:
            producer.flush()
        return n / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000, help="messages per sync run (async: 10x)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        brokers = {
            "default (2 min)": EmbeddedBroker(store_dir=Path(tmp) / "default"),
            "always": EmbeddedBroker(store_dir=Path(tmp) / "always", sync_interval="always"),
        }
        for broker in brokers.values():
            broker.start()
        try:
            results: dict[tuple[str, str], list[float]] = {}
            for run in range(args.runs):
                for name, broker in brokers.items():
                    for mode, asynchronous, n in (
                        ("sync", False, args.n),
                        ("async", True, 10 * args.n),
                    ):
                        rate = _rate(broker, f"d{run}-{mode}", n, asynchronous=asynchronous)
                        results.setdefault((name, mode), []).append(rate)
        finally:
            for broker in brokers.values():
                broker.stop()
    print(f"memphis_sync produce, 128 B, msgs/s, median of {args.runs} interleaved runs")
    print(f"{'--sync':<18}{'sync produce':>14}{'async produce':>15}")
    for name in brokers:
        sync = statistics.median(results[(name, "sync")])
        asynchronous = statistics.median(results[(name, "async")])
        print(f"{name:<18}{sync:>14,.0f}{asynchronous:>15,.0f}")
    for mode in ("sync", "async"):
        cost = statistics.median(results[("always", mode)]) / statistics.median(
            results[("default (2 min)", mode)]
        )
        print(f"always / default, {mode} produce: {cost:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
