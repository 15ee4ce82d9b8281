"""Latency: the sync produce round trip, and produce-to-handler at a fixed offered rate.

One broker (``memphis_broker.EmbeddedBroker`` on a free port), one process, every client in turn:

* ``sync produce RTT`` -- one message at a time, each waiting for its PubAck; every round trip
  (``time.perf_counter_ns`` before the call, after it returns) is recorded. Clients: our three
  frontends (``produce()``), nats-py (``js.publish`` with the two Memphis headers) and the limit
  loop (bench/limit.py: a blocking socket, the same bytes, framing only).
* ``produce->handler @ R/s`` -- a paced producer (its own thread for memphis_sync, its own task
  for the async clients) offers R messages a second with ``produce(async_produce=True)``
  (nats-py: ``js.publish_async``), stamping ``time.perf_counter_ns()`` into each payload just
  before the call; a consumer in the same process (its own connection) runs ``consume(handler)``
  (nats-py: a push subscription with a callback), and the handler records now minus the stamp
  and acks. The producer sends whatever is due every time it wakes, so a late wake-up shows as
  a burst, not as a lower rate; the achieved rate is printed beside each row.

Our consumer is a pull consumer: a batch is handed to the handler when it is full or when the
pull expires. So the consumer settings are part of the figure: ``--batch`` (default 100) and
``--max-wait`` (``batch_max_wait_time``, default 0.001 s, the smallest the client accepts), with
``pull_interval=0`` (pull again at once after a short batch). nats-py's push consumer delivers
each message as it is stored.

Values go into HdrHistograms (microseconds, 3 significant digits); the first ``--warmup``
seconds of each run are not recorded. Output: a table (p50, p99, p99.9, max, count), a JSON file
of the figures and a percentile-spectrum plot per measurement (``--out``, default bench/out/:
latency.json and latency.png).

Run: ``.venv/bin/python bench/latency.py [--quick] [--duration 10] [--rates 1000,10000]
[--only sync,asyncio,trio,nats-py,limit] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import platform
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import limit  # noqa: E402  (bench/limit.py)
import throughput  # noqa: E402  (bench/throughput.py: shared station set-up, client names)
from throughput import (  # noqa: E402
    LIMIT,
    NATS_PY,
    OURS,
    TOKEN,
    USER,
    Broker,
    _wait_asyncio,
    _wait_trio,
    check_stored,
    loadavg,
    payload_of,
    stream_of,
)

CLIENTS: Final = (*OURS, NATS_PY, LIMIT)
#: throughput.py's client names, less memphis-py (not measured here).
ALIASES: Final = {
    alias: client for alias, client in throughput.ALIASES.items() if client in CLIENTS
}
SIZE: Final = 128
#: Histogram range: 1 us to 60 s, 3 significant digits.
LOWEST_US: Final = 1
HIGHEST_US: Final = 60_000_000
#: A stamped payload: the send time (ns), and whether to record it (0 during warm-up).
STAMP: Final = struct.Struct("<qB")
#: How long the consumer may take to catch up after the producer stopped.
DRAIN_TIMEOUT: Final = 60.0
PERCENTILES: Final = (50.0, 99.0, 99.9)
PRODUCER: Final = "bench-latency"
GROUP: Final = "bench-latency"

_HEADERS: Final = {
    "$memphis_connectionId": limit.CONNECTION_ID,
    "$memphis_producedBy": PRODUCER,
}


def new_histogram() -> Any:
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

    return HdrHistogram(LOWEST_US, HIGHEST_US, 3)


def _record(histogram: Any, micros: float) -> None:
    histogram.record_value(min(max(int(micros), LOWEST_US), HIGHEST_US))


@dataclass(frozen=True)
class Settings:
    seconds: float  # recorded part of each run
    warmup: float  # unrecorded start of each run
    batch: int
    max_wait: float


@dataclass
class Row:
    measurement: str  # "sync produce RTT" or "produce->handler @ 1,000/s"
    client: str
    histogram: Any
    offered: float | None = None  # msgs/s
    achieved: float | None = None  # msgs/s the producer really sent
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        h = self.histogram
        out: dict[str, Any] = {
            "measurement": self.measurement,
            "client": self.client,
            "count": h.get_total_count(),
            "p50_us": h.get_value_at_percentile(50.0),
            "p99_us": h.get_value_at_percentile(99.0),
            "p99_9_us": h.get_value_at_percentile(99.9),
            "max_us": h.get_max_value(),
            "mean_us": round(h.get_mean_value(), 1),
        }
        if self.offered is not None:
            out["offered_per_s"] = self.offered
            out["achieved_per_s"] = round(self.achieved or 0.0)
        return out


# ---------------------------------------------------------------------- sync produce RTT


def rtt_memphis_sync(broker: Broker, station: str, s: Settings) -> Any:
    import memphis_sync

    histogram = new_histogram()
    payload = payload_of(SIZE)
    clock = time.perf_counter_ns
    with memphis_sync.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
        produce = conn.create_producer(station, PRODUCER).produce
        warm_end = clock() + int(s.warmup * 1e9)
        while clock() < warm_end:
            produce(payload)
        end = clock() + int(s.seconds * 1e9)
        while (t0 := clock()) < end:
            produce(payload)
            _record(histogram, (clock() - t0) / 1000)
    return histogram


async def _rtt_ours_async(mod: Any, broker: Broker, station: str, s: Settings) -> Any:
    histogram = new_histogram()
    payload = payload_of(SIZE)
    clock = time.perf_counter_ns
    async with mod.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
        produce = (await conn.create_producer(station, PRODUCER)).produce
        warm_end = clock() + int(s.warmup * 1e9)
        while clock() < warm_end:
            await produce(payload)
        end = clock() + int(s.seconds * 1e9)
        while (t0 := clock()) < end:
            await produce(payload)
            _record(histogram, (clock() - t0) / 1000)
    return histogram


async def _rtt_nats_py(broker: Broker, station: str, s: Settings) -> Any:
    import nats

    histogram = new_histogram()
    payload = payload_of(SIZE)
    subject = f"{stream_of(station)}.final"
    clock = time.perf_counter_ns
    nc = await nats.connect(f"nats://{broker.host}:{broker.port}", token=TOKEN)
    try:
        publish = nc.jetstream().publish
        warm_end = clock() + int(s.warmup * 1e9)
        while clock() < warm_end:
            await publish(subject, payload, headers=dict(_HEADERS))
        end = clock() + int(s.seconds * 1e9)
        while (t0 := clock()) < end:
            await publish(subject, payload, headers=dict(_HEADERS))
            _record(histogram, (clock() - t0) / 1000)
    finally:
        await nc.close()
    return histogram


def rtt_limit(broker: Broker, station: str, s: Settings) -> Any:
    histogram = new_histogram()
    payload = payload_of(SIZE)
    subject = f"{stream_of(station)}.final"
    clock = time.perf_counter_ns
    with limit.connect(broker.host, broker.port, TOKEN) as wire:
        limit.subscribe_inbox(wire)
        # The loop itself is the thinnest possible; time it in chunks so that the clock check
        # does not add a call per message: a chunk of 100 is ~10-30 ms on loopback.
        warm_end = clock() + int(s.warmup * 1e9)
        while clock() < warm_end:
            limit.sync_produce(wire, subject, payload, 100, PRODUCER)

        def on_ack(t0: int) -> None:
            _record(histogram, (clock() - t0) / 1000)

        end = clock() + int(s.seconds * 1e9)
        while clock() < end:
            limit.sync_produce(wire, subject, payload, 100, PRODUCER, on_ack)
    return histogram


def measure_rtt(client: str, broker: Broker, station: str, s: Settings) -> Any:
    if client == "memphis_sync":
        return rtt_memphis_sync(broker, station, s)
    if client == "memphis_asyncio":
        mod = importlib.import_module("memphis_asyncio")
        return asyncio.run(_rtt_ours_async(mod, broker, station, s))
    if client == "memphis_trio":
        import trio

        mod = importlib.import_module("memphis_trio")
        return trio.run(_rtt_ours_async, mod, broker, station, s)
    if client == NATS_PY:
        return asyncio.run(_rtt_nats_py(broker, station, s))
    return rtt_limit(broker, station, s)


# ---------------------------------------------------------------------- produce -> handler


class Pacing:
    """When each message is due: ``rate`` a second from ``start_ns``, ``total`` in all."""

    def __init__(self, rate: float, s: Settings) -> None:
        self.rate = rate
        self.total = max(1, int(rate * (s.warmup + s.seconds)))
        self.warm = int(rate * s.warmup)
        self.start_ns = time.perf_counter_ns()
        self.sent = 0

    def due(self) -> int:
        """How many messages are due now and not yet sent."""
        elapsed = time.perf_counter_ns() - self.start_ns
        return min(self.total, int(elapsed * self.rate / 1e9) + 1) - self.sent

    def sleep_for(self) -> float:
        """Seconds until the next message is due (<= 0: now)."""
        at = self.start_ns + self.sent * 1e9 / self.rate
        return (at - time.perf_counter_ns()) / 1e9

    def payload(self, pad: bytes) -> bytes:
        record = 1 if self.sent >= self.warm else 0
        self.sent += 1
        return STAMP.pack(time.perf_counter_ns(), record) + pad

    def achieved(self, end_ns: int) -> float:
        return self.sent / max((end_ns - self.start_ns) / 1e9, 1e-9)


class Tally:
    """The handler side: record stamped payloads, count them, signal when all arrived."""

    def __init__(self, total: int, done: Callable[[], None]) -> None:
        self.histogram = new_histogram()
        self.total = total
        self.handled = 0
        self._done = done

    def take(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        stamp, record = STAMP.unpack_from(data)
        if record:
            _record(self.histogram, (now - stamp) / 1000)
        self.handled += 1
        if self.handled == self.total:
            self._done()


def _pad() -> bytes:
    return payload_of(SIZE)[STAMP.size :]


def e2e_memphis_sync(broker: Broker, station: str, rate: float, s: Settings) -> tuple[Any, float]:
    import memphis_sync

    pad = _pad()
    done = threading.Event()
    tally = Tally(0, done.set)
    errors: list[BaseException] = []

    def handler(messages: list[Any], error: BaseException | None, context: Any) -> None:
        if error is not None:
            errors.append(error)
        for message in messages:
            tally.take(message.data)
            message.ack()

    connect = memphis_sync.connect
    with (
        connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as cconn,
        connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as pconn,
    ):
        consumer = cconn.create_consumer(
            station,
            GROUP,
            batch_size=s.batch,
            batch_max_wait_time=s.max_wait,
            pull_interval=0,
        )
        produce = pconn.create_producer(station, PRODUCER).produce
        consumer.consume(handler)
        pacing = Pacing(rate, s)  # the clock starts now
        tally.total = pacing.total
        while pacing.sent < pacing.total:
            for _ in range(pacing.due()):
                produce(pacing.payload(pad), async_produce=True)
            wait = pacing.sleep_for()
            if wait > 0:
                time.sleep(wait)  # pacing the offered load, not synchronisation
        achieved = pacing.achieved(time.perf_counter_ns())
        finished = done.wait(DRAIN_TIMEOUT)
        consumer.stop_consume()
        _check(finished, errors, tally)
    return tally.histogram, achieved


@dataclass(frozen=True)
class AsyncLib:
    sleep: Callable[[float], Awaitable[None]]
    new_event: Callable[[], Any]
    wait_event: Callable[[Any, float], Awaitable[bool]]


async def _e2e_ours_async(
    mod: Any, lib: AsyncLib, broker: Broker, station: str, rate: float, s: Settings
) -> tuple[Any, float]:
    pad = _pad()
    done = lib.new_event()
    tally = Tally(0, done.set)
    errors: list[BaseException] = []
    awaited_ack: bool | None = None

    async def handler(messages: list[Any], error: BaseException | None, context: Any) -> None:
        nonlocal awaited_ack
        if error is not None:
            errors.append(error)
        for message in messages:
            tally.take(message.data)
            result = message.ack()
            if awaited_ack is None:
                awaited_ack = inspect.isawaitable(result)
            if awaited_ack:
                await result

    connect = mod.connect
    async with (
        connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as cconn,
        connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as pconn,
    ):
        consumer = await cconn.create_consumer(
            station,
            GROUP,
            batch_size=s.batch,
            batch_max_wait_time=s.max_wait,
            pull_interval=0,
        )
        produce = (await pconn.create_producer(station, PRODUCER)).produce
        await consumer.consume(handler)
        pacing = Pacing(rate, s)
        tally.total = pacing.total
        while pacing.sent < pacing.total:
            for _ in range(pacing.due()):
                await produce(pacing.payload(pad), async_produce=True)
            wait = pacing.sleep_for()
            # Always yield, so that the consumer task runs even when the producer is late.
            await lib.sleep(max(wait, 0.0))
        achieved = pacing.achieved(time.perf_counter_ns())
        finished = await lib.wait_event(done, DRAIN_TIMEOUT)
        await consumer.stop_consume()
        _check(finished, errors, tally)
    return tally.histogram, achieved


async def _e2e_nats_py(broker: Broker, station: str, rate: float, s: Settings) -> tuple[Any, float]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    pad = _pad()
    stream = stream_of(station)
    subject = f"{stream}.final"
    done = asyncio.Event()
    tally = Tally(0, done.set)
    nc = await nats.connect(f"nats://{broker.host}:{broker.port}", token=TOKEN)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            durable_name="bench-latency-natspy",
            deliver_subject=nc.new_inbox(),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subject,
            max_ack_pending=s.batch,
            ack_wait=30,
        )
        await js.add_consumer(stream, config)

        async def handler(message: Any) -> None:
            tally.take(message.data)
            await message.ack()

        sub = await js.subscribe_bind(
            stream, config, "bench-latency-natspy", cb=handler, manual_ack=True
        )
        publish_async = js.publish_async
        pacing = Pacing(rate, s)
        tally.total = pacing.total
        while pacing.sent < pacing.total:
            for _ in range(pacing.due()):
                await publish_async(subject, pacing.payload(pad), headers=dict(_HEADERS))
            await asyncio.sleep(max(pacing.sleep_for(), 0.0))
        achieved = pacing.achieved(time.perf_counter_ns())
        await js.publish_async_completed()
        finished = await _wait_asyncio(done, DRAIN_TIMEOUT)
        await sub.unsubscribe()
        _check(finished, [], tally)
    finally:
        await nc.close()
    return tally.histogram, achieved


def _check(finished: bool, errors: list[BaseException], tally: Tally) -> None:
    if errors:
        raise RuntimeError(f"the consume handler got an error: {errors[0]!r}")
    if not finished:
        raise RuntimeError(f"handled {tally.handled} of {tally.total} in {DRAIN_TIMEOUT:.0f} s")


def measure_e2e(
    client: str, broker: Broker, station: str, rate: float, s: Settings
) -> tuple[Any, float]:
    if client == "memphis_sync":
        return e2e_memphis_sync(broker, station, rate, s)
    if client == "memphis_asyncio":
        mod = importlib.import_module("memphis_asyncio")
        lib = AsyncLib(asyncio.sleep, asyncio.Event, _wait_asyncio)
        return asyncio.run(_e2e_ours_async(mod, lib, broker, station, rate, s))
    if client == "memphis_trio":
        import trio

        mod = importlib.import_module("memphis_trio")
        lib = AsyncLib(trio.sleep, trio.Event, _wait_trio)
        result: tuple[Any, float] = trio.run(_e2e_ours_async, mod, lib, broker, station, rate, s)
        return result
    return asyncio.run(_e2e_nats_py(broker, station, rate, s))


# ---------------------------------------------------------------------- report


def table(rows: list[Row]) -> list[str]:
    head = (
        f"{'measurement':<28}{'client':<17}{'p50 us':>11}{'p99 us':>11}{'p99.9 us':>11}"
        f"{'max us':>11}{'count':>9}{'sent/s':>9}"
    )
    lines = [head, "-" * len(head)]
    last = ""
    for row in rows:
        f = row.figures()
        label = row.measurement if row.measurement != last else ""
        last = row.measurement
        sent = f"{f['achieved_per_s']:,}" if "achieved_per_s" in f else "-"
        lines.append(
            f"{label:<28}{row.client:<17}{f['p50_us']:>11,}{f['p99_us']:>11,}"
            f"{f['p99_9_us']:>11,}{f['max_us']:>11,}{f['count']:>9,}{sent:>9}"
        )
    return lines


#: Percentiles of the spectrum plot (x = 1 / (1 - p), the usual HdrHistogram axis).
SPECTRUM: Final = (
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
)  # fmt: skip


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measurements = list(dict.fromkeys(row.measurement for row in rows))
    fig, axes = plt.subplots(
        1, len(measurements), figsize=(5.2 * len(measurements), 4.4), squeeze=False
    )
    for ax, measurement in zip(axes[0], measurements, strict=True):
        for row in rows:
            if row.measurement != measurement or row.histogram.get_total_count() == 0:
                continue
            xs = [1.0 / (1.0 - p / 100.0) for p in SPECTRUM]
            ys = [max(row.histogram.get_value_at_percentile(p), 1) for p in SPECTRUM]
            ax.plot(xs, ys, marker=".", label=row.client)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [1.0, 2.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99", "99.999"])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (us)")
        ax.set_title(measurement, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument(
        "--duration", type=float, default=None, help="recorded seconds per run (default 10)"
    )
    ap.add_argument(
        "--rates", default="1000,10000", help="offered msgs/s for produce->handler (comma list)"
    )
    ap.add_argument("--only", default="", help="comma-separated clients (default: all)")
    ap.add_argument("--batch", type=int, default=100, help="our consumer's batch_size")
    ap.add_argument(
        "--max-wait", type=float, default=0.001, help="our consumer's batch_max_wait_time, s"
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"), help="where the JSON/PNG go")
    return ap.parse_args(argv)


def select(only: str) -> list[str]:
    available = [c for c in CLIENTS if _available(c)]
    if not only:
        return available
    wanted = set()
    for raw in only.split(","):
        name = raw.strip().lower()
        if name and name not in ALIASES:
            raise SystemExit(f"unknown client {raw!r}; choose from {', '.join(sorted(ALIASES))}")
        if name:
            wanted.add(ALIASES[name])
    return [c for c in available if c in wanted]


def _available(client: str) -> bool:
    if client == LIMIT:
        return True
    module = {NATS_PY: "nats"}.get(client, client)
    try:
        mod = importlib.import_module(module)
        if client == "memphis_trio":
            importlib.import_module("trio")
    except ImportError:
        return False
    return client == NATS_PY or callable(getattr(mod, "connect", None))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.duration if args.duration is not None else (1.0 if args.quick else 10.0)
    if seconds <= 0:
        raise SystemExit("--duration must be > 0 seconds")
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        raise SystemExit(f"--rates must be numbers (msgs/s), not {args.rates!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise SystemExit("--rates needs at least one rate > 0")
    if args.batch < 1:
        raise SystemExit("--batch must be >= 1")
    settings = Settings(
        seconds=seconds,
        warmup=min(1.0, seconds / 5),
        batch=args.batch,
        max_wait=args.max_wait,
    )
    clients = select(args.only)
    if not clients:
        raise SystemExit("no client to measure")

    import memphis_sync
    from memphis_broker import EmbeddedBroker

    load_start = loadavg()
    started = time.monotonic()
    rows: list[Row] = []
    with EmbeddedBroker() as embedded:
        broker = Broker(embedded.host, embedded.port, embedded.monitor_url)
        with memphis_sync.connect(
            broker.host, USER, connection_token=TOKEN, port=broker.port
        ) as admin:
            serial = 0

            def fresh(tag: str) -> str:
                nonlocal serial
                serial += 1
                name = f"lat_{tag}_{serial}"
                admin.create_station(name)
                return name

            for client in clients:
                station = fresh("rtt")
                histogram = measure_rtt(client, broker, station, settings)
                rows.append(Row("sync produce RTT", client, histogram))
                admin.destroy_station(station)
                print(f"# {client} sync produce RTT done", file=sys.stderr, flush=True)
            for rate in rates:
                for client in clients:
                    if client == LIMIT:
                        continue  # no consume() in the thin loops
                    station = fresh("e2e")
                    histogram, achieved = measure_e2e(client, broker, station, rate, settings)
                    check_stored(broker, station, max(1, int(rate * (settings.warmup + seconds))))
                    rows.append(
                        Row(f"produce->handler @ {rate:,.0f}/s", client, histogram, rate, achieved)
                    )
                    admin.destroy_station(station)
                    print(f"# {client} @ {rate:,.0f}/s done", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    load_end = loadavg()

    header = (
        f"Latency, microseconds (HdrHistogram), {seconds:g} s recorded per row after "
        f"{settings.warmup:g} s warm-up, {SIZE} B messages, one EmbeddedBroker on 127.0.0.1; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; our consumer: batch_size "
        f"{settings.batch}, batch_max_wait_time {settings.max_wait:g} s, pull_interval 0; "
        f"load average {load_start} at start, {load_end} at end"
    )
    print(header)
    print()
    for line in table(rows):
        print(line)
    print(f"\ntotal {elapsed:.0f} s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "header": header,
        "rows": [row.figures() for row in rows],
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "seconds": round(elapsed),
    }
    (out / "latency.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(rows, out / "latency.png", header[: header.index("; our consumer")])
    print(f"wrote {out / 'latency.json'} and {out / 'latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
