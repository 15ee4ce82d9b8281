"""Soak a local 3-node cluster under a mixed workload while nodes are SIGKILLed (docs/cluster.md).

    make soak                       # SOAK_MINUTES=10 (default)
    python scripts/soak.py --minutes 2

Runs ``memphis-broker --cluster 3`` (which restarts a killed node, docs/cluster.md) and, against
it with memphis_sync:

* two producers, each sending sequential ids (``msg_id`` = payload) with a synchronous produce,
  at most ``--rate`` per second each (default 200);
  a produce that raises is retried with the same ``msg_id`` until acknowledged, so the stream's
  deduplication keeps a retry of a write that had in fact been stored from storing it twice;
* one consumer group of two members, one reading with ``fetch()``, the other with
  ``consume()``, acking what it gets;
* a random node SIGKILLed every 20-40 s.

At the end the producers stop, the group drains for up to 60 s, and the script prints:
acked produces, stored (distinct ids in the stream), delivered (distinct ids), lost (acked but
not stored), duplicates by id in the stream, ids stored but never delivered, redeliveries
(at-least-once: a message whose ack was lost with its node comes again). It exits 1 when an
acknowledged produce was lost, a stored id is duplicated or a stored message was never
delivered, 0 otherwise. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

import nats

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import memphis_sync  # noqa: E402
from memphis_broker._server import stop_process  # noqa: E402

STATION: Final = "soak"
GROUP: Final = "soak-group"
NODES: Final = 3


class Tally:
    """What the clients saw, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.delivered: collections.Counter[str] = collections.Counter()
        self.produce_errors = 0
        self.consume_errors = 0

    def ack(self, msg_id: str) -> None:
        with self.lock:
            self.acked.add(msg_id)

    def deliver(self, msg_id: str) -> None:
        with self.lock:
            self.delivered[msg_id] += 1


def _node_pid(store: Path, index: int) -> int | None:
    log = store / f"node-{index}" / "nats-server.log"
    starts = re.findall(r"^\[(\d+)\].*Starting nats-server", log.read_text(), re.MULTILINE)
    return int(starts[-1]) if starts else None


def _producer(conn: Any, name: str, tally: Tally, stop: threading.Event, rate: float) -> None:
    producer = conn.create_producer(STATION, name)
    i = 0
    next_at = time.monotonic()
    while not stop.is_set():
        next_at += 1.0 / rate
        # Pacing to --rate (a schedule, not synchronisation): the machine stays usable and
        # the final read-back stays short.
        time.sleep(max(0.0, next_at - time.monotonic()))
        msg_id = f"{name}-{i}"
        while not stop.is_set():
            try:
                producer.produce(msg_id.encode(), msg_id=msg_id, ack_wait=10.0)
            except memphis_sync.MemphisError:
                with tally.lock:
                    tally.produce_errors += 1
                continue  # the same msg_id again: deduplicated if it had been stored
            tally.ack(msg_id)
            break
        i += 1


def _fetcher(consumer: Any, tally: Tally, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for msg in consumer.fetch():
                tally.deliver(bytes(msg.data).decode())
                msg.ack()
        except memphis_sync.MemphisError:
            with tally.lock:
                tally.consume_errors += 1


def _handler(tally: Tally) -> Any:
    def handle(msgs: list[Any], error: Exception | None, _context: Any) -> None:
        if error is not None:
            with tally.lock:
                tally.consume_errors += 1
        for msg in msgs:
            tally.deliver(bytes(msg.data).decode())
            try:
                msg.ack()
            except memphis_sync.MemphisError:
                with tally.lock:
                    tally.consume_errors += 1  # redelivered later: counted as a redelivery

    return handle


async def _stored_ids(servers: list[str]) -> list[str]:
    """Every message's id in the station's stream, read with an ephemeral ordered consumer."""
    nc = await nats.connect([f"nats://{s}" for s in servers], token="memphis")
    try:
        js = nc.jetstream(timeout=10)
        stream = f"{STATION}$1"
        info = await js.stream_info(stream)
        total = info.state.messages
        sub = await js.subscribe(f"{stream}.>", ordered_consumer=True, stream=stream)
        ids: list[str] = []
        while len(ids) < total:
            msg = await sub.next_msg(timeout=10)
            ids.append(msg.data.decode())
        await sub.unsubscribe()
        return ids
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--minutes",
        type=float,
        default=float(os.environ.get("SOAK_MINUTES", "10")),
        help="how long the workload and the kills run",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed of the kill schedule")
    p.add_argument(
        "--rate", type=float, default=200.0, help="produces per second per producer (at most)"
    )
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="memphis-soak-") as tmp:
        store = Path(tmp) / "store"
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memphis_broker",
                "--cluster",
                str(NODES),
                "--port",
                "0",
                "--monitor-port",
                "0",
                "--store-dir",
                str(store),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert launcher.stdout is not None
            line = launcher.stdout.readline().strip()
            if not line.startswith("memphis-broker ready:"):
                print(f"soak: the cluster did not start: {line!r}", file=sys.stderr)
                return 1
            servers = line.split("servers ", 1)[1].split(" ", 1)[0].split(",")
            print(f"soak: {line}", flush=True)
            return _soak(servers, store, args.minutes * 60, args.rate, rng, tally)
        finally:
            stop_process(launcher, 60)


def _soak(
    servers: list[str],
    store: Path,
    seconds: float,
    rate: float,
    rng: random.Random,
    tally: Tally,
) -> int:
    stop_producing = threading.Event()
    stop_consuming = threading.Event()
    with memphis_sync.connect(servers, "root", connection_token="memphis", timeout=30) as conn:
        conn.create_station(STATION, replicas=3)
        fetcher = conn.create_consumer(
            STATION, "fetcher", consumer_group=GROUP, batch_max_wait_time=1.0, max_ack_time=10
        )
        consumer = conn.create_consumer(
            STATION, "consumer", consumer_group=GROUP, batch_max_wait_time=1.0, max_ack_time=10
        )
        threads = [
            threading.Thread(target=_producer, args=(conn, f"p{k}", tally, stop_producing, rate))
            for k in range(2)
        ]
        threads.append(threading.Thread(target=_fetcher, args=(fetcher, tally, stop_consuming)))
        for t in threads:
            t.start()
        consumer.consume(_handler(tally))
        started = time.monotonic()
        kills = 0
        while True:
            pause = rng.uniform(20, 40)
            if time.monotonic() + pause - started > seconds:
                break
            time.sleep(pause)  # the kill schedule itself, not synchronisation
            victim = rng.randrange(NODES)
            pid = _node_pid(store, victim)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass  # still restarting from the last kill
            with tally.lock:
                print(
                    f"soak: {time.monotonic() - started:5.0f} s  killed node {victim}  "
                    f"acked {len(tally.acked)}  delivered {len(tally.delivered)}",
                    flush=True,
                )
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))  # the rest of the run
        stop_producing.set()
        for t in threads[:2]:
            t.join(60)
        stored = asyncio.run(_stored_ids(servers))
        wanted = set(stored)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with tally.lock:
                if wanted <= set(tally.delivered):
                    break
            time.sleep(0.5)  # polling the drain, bounded by the deadline
        stop_consuming.set()
        consumer.stop_consume()
        threads[2].join(30)
    with tally.lock:
        acked, delivered = set(tally.acked), collections.Counter(tally.delivered)
    distinct = set(stored)
    lost = acked - distinct
    duplicates = len(stored) - len(distinct)
    undelivered = distinct - set(delivered)
    redelivered = sum(n - 1 for n in delivered.values())
    print(
        f"soak: {seconds / 60:g} min, {kills} node kills: acked {len(acked)}, "
        f"stored {len(distinct)}, delivered {len(delivered)}, lost {len(lost)}, "
        f"duplicates {duplicates}, undelivered {len(undelivered)}, redelivered {redelivered} "
        f"(produce retries {tally.produce_errors}, consume errors {tally.consume_errors})",
        flush=True,
    )
    if lost:
        print(f"soak: lost ids (first 20): {sorted(lost)[:20]}", flush=True)
    if undelivered:
        print(f"soak: undelivered ids (first 20): {sorted(undelivered)[:20]}", flush=True)
    return 1 if lost or duplicates or undelivered else 0


if __name__ == "__main__":
    sys.exit(main())
