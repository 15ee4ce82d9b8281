"""End-to-end throughput: our frontends, memphis-py 1.3.1, nats-py and the limit, one broker.

Every client does the same work on the same broker (``memphis_broker.EmbeddedBroker``, started
here on a free port): it produces to, or consumes from, the single stream of a fresh station
(``<station>$1``, subject ``<station>$1.final``). Workloads:

* ``sync produce``   -- one message at a time, each waiting for its PubAck
  (ours: ``produce()``; memphis-py: ``await produce()``; nats-py: ``await js.publish()``);
* ``async produce``  -- pipelined, every PubAck confirmed before the clock stops
  (ours: ``produce(async_produce=True)`` + ``flush()``; memphis-py: ``produce(nonblocking=True,
  concurrent_task_limit=1000)`` then all its tasks awaited; nats-py: ``js.publish_async`` +
  ``publish_async_completed()``);
* ``fetch+ack bN``   -- a station pre-filled with exactly N messages is drained by
  ``fetch(batch N)`` and one ``ack()`` per message (nats-py: ``pull_subscribe_bind`` on a durable
  configured like the broker's, ``fetch(N)`` + ``msg.ack()``). The clock stops after the last ack
  call; the run then checks that the durable's ack floor reached N;
* ``consume() bN``   -- the same pre-filled station drained by ``consume(handler)`` on a consumer
  with ``batch_size`` N, the handler acking each message; the clock stops when N were handled
  (nats-py: a push subscription on a durable with a callback that acks, ``max_ack_pending`` N;
  memphis-py is not run here).

The yardstick is the ``limit`` client (bench/limit.py): thin loops over one blocking stdlib
socket that put the same bytes on the wire as our producer and consumer (HPUB with the Memphis
headers, a reply on a wildcard inbox; pull requests and ``+ACK`` acks) and read replies by framing
alone. Sync produce: one HPUB, wait for its PubAck. Async produce: windows of 1,000 pre-encoded
HPUBs written as one buffer, then their 1,000 PubAcks. Fetch+ack (and the limit of a consume()
row): one pull of N, then the N acks as one buffer. It is what one Python process can get
through this broker at all; every other row shows its ``÷limit`` ratio.

The producers of all three clients put the same bytes on the wire: memphis-py and ours add the
``$memphis_connectionId`` / ``$memphis_producedBy`` headers by themselves, and nats-py is given the
same two headers. Every produce run is checked afterwards: the stream must hold exactly N messages.

Timing is wall-clock (``time.perf_counter``) around the work only (connect, station and
producer/consumer creation are outside); the CPU column is this process's CPU time over the same
span (all its threads: the client's I/O thread included, nats-server excluded), which is far less
sensitive than wall time to other load on a shared machine. Each cell is the median of ``--runs``
runs; runs are interleaved (run 1 of every client, then run 2, ...), and ratios are medians of
the per-run ratios, so slow drifts of the machine hit both sides of a ratio alike.

Memory: a subprocess (importing nothing but ``memphis_sync``, forked from a small shell because
Linux carries the forking process's peak RSS into the child) async-produces 1,000,000 messages
and reports its peak RSS (``ru_maxrss``, cross-checked with ``VmHWM``); a second one does 100,000.
Bounded memory means the two peaks differ by far less than the payload of the extra 900,000
messages.

Goals (PASS/FAIL under the table), first the data path's shares of the limit: async produce
>= 0.65, fetch+ack (b100 and b1000) >= 0.7, consume() b100 >= 0.7 and >= 1.3x nats-py's push
subscription, memphis_sync's sync produce >= 0.6; client CPU per message <= 8 us (async
produce) and <= 6 us (fetch+ack); then async produce >= 2x nats-py and >= 5x memphis-py; sync
produce >= 1.2x nats-py; fetch+ack >= 2x memphis-py; every frontend of ours within 20% of our
fastest; memory bounded. A goal is checked for every frontend it names and both sizes (the
worst counts).
Our async frontends are found automatically: a package that exports ``connect`` is benchmarked.

Run: ``.venv/bin/python bench/throughput.py [--quick]
[--only sync,asyncio,trio,nats-py,memphis-py,limit] [--runs 3] [--json out.json] [--strict]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import limit  # noqa: E402  (bench/limit.py, found through the path set just above)

USER: Final = "root"
TOKEN: Final = "memphis"
SIZES: Final = (128, 1024)
OPS: Final = ("sync", "async", "fetch100", "fetch1000", "consume100")
OP_LABELS: Final = {
    "sync": "sync produce",
    "async": "async produce",
    "fetch100": "fetch+ack b100",
    "fetch1000": "fetch+ack b1000",
    "consume100": "consume() b100",
}
#: Consuming workloads and their batch size (fetch: per fetch call; consume: the consumer's
#: ``batch_size``). The limit loop pulls with the same batch size for both.
BATCH: Final = {"fetch100": 100, "fetch1000": 1000, "consume100": 100}
CONSUME_OPS: Final = frozenset({"consume100"})
#: How long a consume() run may take before it is called stuck.
CONSUME_TIMEOUT: Final = 300.0

# Client ids, in table order. Ours first; "nats-py" and "memphis-py" are the baselines.
OURS: Final = ("memphis_sync", "memphis_asyncio", "memphis_trio")
NATS_PY: Final = "nats-py"
MEMPHIS_PY: Final = "memphis-py"
#: The yardstick: thin loops over a plain socket (bench/limit.py), the same bytes on the wire.
LIMIT: Final = "limit"
#: memphis-py is left out of the consume() row: it compares our frontends with nats-py's push
#: subscription and with the limit.
SKIPPED: Final = frozenset({(MEMPHIS_PY, "consume100")})
ALIASES: Final = {
    "sync": "memphis_sync",
    "memphis_sync": "memphis_sync",
    "asyncio": "memphis_asyncio",
    "memphis_asyncio": "memphis_asyncio",
    "trio": "memphis_trio",
    "memphis_trio": "memphis_trio",
    "nats": NATS_PY,
    "nats-py": NATS_PY,
    "natspy": NATS_PY,
    "memphis-py": MEMPHIS_PY,
    "memphispy": MEMPHIS_PY,
    "memphis": MEMPHIS_PY,
    "limit": LIMIT,
}
#: memphis-py's non-blocking produce: the value its README recommends and python-peers §5 used.
MEMPHIS_PY_TASK_LIMIT: Final = 1000
#: How long a consume run waits for the server to report all acks (validation, not timed).
ACK_FLOOR_WAIT: Final = 10.0

#: Peak-RSS growth always tolerated between the two memory runs (allocator noise).
MEMORY_SLACK_MIB: Final = 4.0

#: Checks a run's result on the broker (after the clock stopped, before teardown).
Verify = Callable[[], None]


class Clock:
    """Wall and process-CPU time of the measured section of one run."""

    __slots__ = ("_cpu0", "_wall0", "cpu", "wall")

    def __init__(self) -> None:
        self._wall0 = self._cpu0 = self.wall = self.cpu = 0.0

    def start(self) -> None:
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()

    def stop(self) -> float:
        """Stop; return the wall-clock seconds."""
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0
        return self.wall


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    monitor_url: str


@dataclass
class Plan:
    runs: int
    n: dict[str, int]  # messages per run, by op
    scaled: dict[tuple[str, str], int] = field(default_factory=dict)  # (client, op) -> n
    rss_counts: tuple[int, int] = (100_000, 1_000_000)
    rss_size: int = 128

    def count(self, client: str, op: str) -> int:
        return self.scaled.get((client, op), self.n[op])


def full_plan(runs: int) -> Plan:
    n = {
        "sync": 20_000,
        "async": 100_000,
        "fetch100": 100_000,
        "fetch1000": 100_000,
        "consume100": 100_000,
    }
    # memphis-py's non-blocking produce runs one asyncio task per message (~11k msg/s): 100k
    # messages would take ~9 s a run for no extra precision.
    return Plan(runs=runs, n=n, scaled={(MEMPHIS_PY, "async"): 40_000})


def quick_plan() -> Plan:
    n = {"sync": 1_000, "async": 10_000, "fetch100": 5_000, "fetch1000": 5_000, "consume100": 5_000}
    return Plan(runs=1, n=n, rss_counts=(10_000, 100_000))


# ---------------------------------------------------------------------- broker-side checks


def _jsz(broker: Broker) -> list[dict[str, Any]]:
    url = f"{broker.monitor_url}/jsz?streams=true&consumers=true&config=false"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    streams: list[dict[str, Any]] = []
    for account in body.get("account_details") or []:
        streams.extend(account.get("stream_detail") or [])
    return streams


def _stream(broker: Broker, name: str) -> dict[str, Any]:
    for stream in _jsz(broker):
        if stream.get("name") == name:
            return stream
    raise RuntimeError(f"stream {name} not found")


def check_stored(broker: Broker, station: str, n: int) -> None:
    """The produce run's stream holds exactly ``n`` messages."""
    stored = _stream(broker, stream_of(station))["state"]["messages"]
    if stored != n:
        raise RuntimeError(f"{station}: {stored} messages stored, expected {n}")


def check_acked(broker: Broker, station: str, durable: str, n: int) -> None:
    """The consume run's durable has its ack floor at ``n`` (every ack reached the server)."""
    deadline = time.monotonic() + ACK_FLOOR_WAIT
    floor = -1
    while time.monotonic() < deadline:
        for consumer in _stream(broker, stream_of(station)).get("consumer_detail") or []:
            if consumer.get("name") == durable:
                floor = consumer["ack_floor"]["stream_seq"]
        if floor == n:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{station}/{durable}: ack floor {floor}, expected {n}")


def stream_of(station: str) -> str:
    return f"{station}$1"


# ---------------------------------------------------------------------- workloads


def payload_of(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def run_memphis_sync(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    import memphis_sync

    payload = payload_of(size)
    with memphis_sync.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
        if op in ("sync", "async"):
            producer = conn.create_producer(station, "bench-producer")
            produce = producer.produce
            if op == "sync":
                clock.start()
                for _ in range(n):
                    produce(payload)
                elapsed = clock.stop()
                verify()
            else:
                clock.start()
                for _ in range(n):
                    produce(payload, async_produce=True)
                producer.flush()
                elapsed = clock.stop()
                verify()
            producer.destroy()
            return elapsed
        batch = BATCH[op]
        consumer = conn.create_consumer(station, "bench-consumer", batch_size=batch)
        if op in CONSUME_OPS:
            handled = 0
            done = threading.Event()
            failures: list[BaseException] = []

            def handler(messages: list[Any], error: BaseException | None, context: Any) -> None:
                nonlocal handled
                if error is not None:
                    failures.append(error)
                    done.set()
                for message in messages:
                    message.ack()
                handled += len(messages)
                if handled >= n:
                    done.set()

            clock.start()
            consumer.consume(handler)
            finished = done.wait(CONSUME_TIMEOUT)
            elapsed = clock.stop()
            consumer.stop_consume()
            _check_consumed(finished, failures, handled, n)
            verify()
            consumer.destroy()
            return elapsed
        fetch = consumer.fetch
        got = 0
        clock.start()
        while got < n:
            messages = fetch(batch)
            for message in messages:
                message.ack()
            got += len(messages)
        elapsed = clock.stop()
        verify()
        consumer.destroy()
        return elapsed


def _check_consumed(finished: bool, failures: list[BaseException], handled: int, n: int) -> None:
    if failures:
        raise RuntimeError(f"consume handler got an error: {failures[0]!r}")
    if not finished:
        raise RuntimeError(f"consume() handled {handled} of {n} in {CONSUME_TIMEOUT:.0f} s")


@dataclass(frozen=True)
class AsyncLib:
    """What differs between asyncio and trio for a run: running a blocking check in a
    thread, an Event, and waiting for it at most so many seconds (True: it was set)."""

    offload: Callable[[Verify], Awaitable[None]]
    new_event: Callable[[], Any]
    wait_event: Callable[[Any, float], Awaitable[bool]]


async def _wait_asyncio(event: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def _wait_trio(event: Any, seconds: float) -> bool:
    import trio

    with trio.move_on_after(seconds):
        await event.wait()
        return True
    return False


async def _ours_async(
    mod: Any,
    broker: Broker,
    op: str,
    size: int,
    n: int,
    station: str,
    verify: Verify,
    clock: Clock,
    lib: AsyncLib,
) -> float:
    """One run on an async frontend (memphis_asyncio or memphis_trio: the same API, awaited)."""
    offload = lib.offload
    payload = payload_of(size)
    async with mod.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
        if op in ("sync", "async"):
            producer = await conn.create_producer(station, "bench-producer")
            produce = producer.produce
            if op == "sync":
                clock.start()
                for _ in range(n):
                    await produce(payload)
                elapsed = clock.stop()
                await offload(verify)
            else:
                clock.start()
                for _ in range(n):
                    await produce(payload, async_produce=True)
                await producer.flush()
                elapsed = clock.stop()
                await offload(verify)
            await producer.destroy()
            return elapsed
        batch = BATCH[op]
        consumer = await conn.create_consumer(station, "bench-consumer", batch_size=batch)
        awaited_ack: bool | None = None  # whether Message.ack() returns an awaitable
        if op in CONSUME_OPS:
            handled = 0
            done = lib.new_event()
            failures: list[BaseException] = []

            async def handler(
                messages: list[Any], error: BaseException | None, context: Any
            ) -> None:
                nonlocal handled, awaited_ack
                if error is not None:
                    failures.append(error)
                    done.set()
                for message in messages:
                    result = message.ack()
                    if awaited_ack is None:
                        awaited_ack = inspect.isawaitable(result)
                    if awaited_ack:
                        await result
                handled += len(messages)
                if handled >= n:
                    done.set()

            clock.start()
            start = consumer.consume(handler)
            if inspect.isawaitable(start):
                await start
            finished = await lib.wait_event(done, CONSUME_TIMEOUT)
            elapsed = clock.stop()
            stopped = consumer.stop_consume()
            if inspect.isawaitable(stopped):
                await stopped
            _check_consumed(finished, failures, handled, n)
            await offload(verify)
            await consumer.destroy()
            return elapsed
        fetch = consumer.fetch
        got = 0
        clock.start()
        while got < n:
            messages = await fetch(batch)
            for message in messages:
                result = message.ack()
                if awaited_ack is None:
                    awaited_ack = inspect.isawaitable(result)
                if awaited_ack:
                    await result
            got += len(messages)
        elapsed = clock.stop()
        await offload(verify)
        await consumer.destroy()
        return elapsed


def run_memphis_asyncio(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    mod = importlib.import_module("memphis_asyncio")
    lib = AsyncLib(asyncio.to_thread, asyncio.Event, _wait_asyncio)
    return asyncio.run(_ours_async(mod, broker, op, size, n, station, verify, clock, lib))


def run_memphis_trio(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    import trio

    mod = importlib.import_module("memphis_trio")
    lib = AsyncLib(trio.to_thread.run_sync, trio.Event, _wait_trio)
    result: float = trio.run(_ours_async, mod, broker, op, size, n, station, verify, clock, lib)
    return result


async def _settle_nats(nc: Any, verify: Verify) -> None:
    """Push out what nats-py still buffers (acks), then check without blocking its loop."""
    await nc.flush()
    await asyncio.to_thread(verify)


async def _nats_py(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    payload = payload_of(size)
    stream = stream_of(station)
    subject = f"{stream}.final"
    nc = await nats.connect(f"nats://{broker.host}:{broker.port}", token=TOKEN)
    try:
        js = nc.jetstream()
        if op in ("sync", "async"):
            # The two headers every Memphis producer sends, so the wire bytes are the same.
            headers = {
                "$memphis_connectionId": "00000000-0000-4000-8000-000000000000",
                "$memphis_producedBy": "bench-producer",
            }
            if op == "sync":
                publish = js.publish
                clock.start()
                for _ in range(n):
                    await publish(subject, payload, headers=dict(headers))
                elapsed = clock.stop()
                await _settle_nats(nc, verify)
                return elapsed
            publish_async = js.publish_async
            clock.start()
            for _ in range(n):
                await publish_async(subject, payload, headers=dict(headers))
            await js.publish_async_completed()
            elapsed = clock.stop()
            await _settle_nats(nc, verify)
            return elapsed
        batch = BATCH[op]
        durable = "bench-natspy"
        if op in CONSUME_OPS:
            return await _nats_py_push(nc, js, op, n, station, verify, clock)
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=subject,
                max_ack_pending=-1,
                ack_wait=30,
            ),
        )
        psub = await js.pull_subscribe_bind(durable, stream)
        got = 0
        clock.start()
        while got < n:
            messages = await psub.fetch(batch, timeout=5)
            for message in messages:
                await message.ack()
            got += len(messages)
        elapsed = clock.stop()
        await _settle_nats(nc, verify)
        return elapsed
    finally:
        await nc.close()


async def _nats_py_push(
    nc: Any, js: Any, op: str, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    """nats-py's callback consumer: a push subscription on a durable, ``msg.ack()`` each.

    The durable is made before the clock starts with a deliver subject nobody listens on yet
    (the server holds a push consumer without interest), so the clock covers only the delivery
    the subscription triggers. ``max_ack_pending`` is the consume() batch size: at most one
    batch unacknowledged, as with our consume().
    """
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    stream = stream_of(station)
    config = ConsumerConfig(
        durable_name="bench-natspy",
        deliver_subject=nc.new_inbox(),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=f"{stream}.final",
        max_ack_pending=BATCH[op],
        ack_wait=30,
    )
    await js.add_consumer(stream, config)
    handled = 0
    done = asyncio.Event()

    async def handler(message: Any) -> None:
        nonlocal handled
        await message.ack()
        handled += 1
        if handled >= n:
            done.set()

    clock.start()
    sub = await js.subscribe_bind(stream, config, "bench-natspy", cb=handler, manual_ack=True)
    finished = await _wait_asyncio(done, CONSUME_TIMEOUT)
    elapsed = clock.stop()
    await sub.unsubscribe()
    _check_consumed(finished, [], handled, n)
    await _settle_nats(nc, verify)
    return elapsed


def run_nats_py(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    return asyncio.run(_nats_py(broker, op, size, n, station, verify, clock))


async def _memphis_py(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    import memphis

    payload = bytearray(payload_of(size))  # memphis-py 1.3.1 rejects bytes (python-peers 1.4 #1)
    client = memphis.Memphis()
    # 127.0.0.1, not localhost: its connect sleeps 1 s for "localhost" (python-peers 1.4 #10).
    await client.connect(host=broker.host, username=USER, connection_token=TOKEN, port=broker.port)
    try:
        if op in ("sync", "async"):
            producer = await client.producer(station_name=station, producer_name="bench-producer")
            produce = producer.produce
            if op == "sync":
                clock.start()
                for _ in range(n):
                    await produce(payload)
                elapsed = clock.stop()
                await _settle_nats(client.broker_manager, verify)
                return elapsed
            clock.start()
            for _ in range(n):
                await produce(
                    payload, nonblocking=True, concurrent_task_limit=MEMPHIS_PY_TASK_LIMIT
                )
            # Its tasks are the only handle on the acks (failures are swallowed: the stored
            # count is checked afterwards).
            while producer.background_tasks:
                await asyncio.gather(*list(producer.background_tasks), return_exceptions=True)
            elapsed = clock.stop()
            await _settle_nats(client.broker_manager, verify)
            return elapsed
        batch = BATCH[op]
        consumer = await client.consumer(
            station_name=station, consumer_name="bench-consumer", batch_size=batch
        )
        got = 0
        clock.start()
        while got < n:
            messages = await consumer.fetch(batch)
            for message in messages:
                await message.ack()
            got += len(messages)
        elapsed = clock.stop()
        await _settle_nats(client.broker_manager, verify)
        await consumer.destroy()
        return elapsed
    finally:
        await client.close()


def run_memphis_py(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    return asyncio.run(_memphis_py(broker, op, size, n, station, verify, clock))


def run_limit(
    broker: Broker, op: str, size: int, n: int, station: str, verify: Verify, clock: Clock
) -> float:
    """The thin socket loops of bench/limit.py; consuming, on the durable of the group
    "bench-consumer" that ``measure`` made with memphis_sync (a consume() row's limit is the
    fetch+ack loop with the same batch size)."""
    stream = stream_of(station)
    with limit.connect(broker.host, broker.port, TOKEN) as wire:
        limit.subscribe_inbox(wire)
        if op == "sync":
            payload = payload_of(size)
            clock.start()
            limit.sync_produce(wire, f"{stream}.final", payload, n)
        elif op == "async":
            payload = payload_of(size)
            clock.start()
            limit.async_produce(wire, f"{stream}.final", payload, n)
        else:
            clock.start()
            acked = limit.fetch_ack(wire, stream, "bench-consumer", BATCH[op], n)
            if acked != n:
                raise RuntimeError(f"limit fetch+ack: {acked} of {n} messages")
        elapsed = clock.stop()
        verify()
        return elapsed


RUNNERS: Final[dict[str, Callable[[Broker, str, int, int, str, Verify, Clock], float]]] = {
    "memphis_sync": run_memphis_sync,
    "memphis_asyncio": run_memphis_asyncio,
    "memphis_trio": run_memphis_trio,
    NATS_PY: run_nats_py,
    MEMPHIS_PY: run_memphis_py,
    LIMIT: run_limit,
}
DURABLES: Final = {NATS_PY: "bench-natspy"}  # the rest use the broker's: the group name


def available_clients() -> list[str]:
    """Every client that can run here; an async frontend counts once it exports ``connect``."""
    found: list[str] = []
    for name in (*OURS, NATS_PY, MEMPHIS_PY, LIMIT):
        if name == LIMIT:
            found.append(name)  # stdlib only
            continue
        module = {NATS_PY: "nats", MEMPHIS_PY: "memphis"}.get(name, name)
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if name in OURS and not callable(getattr(mod, "connect", None)):
            continue  # the package exists but the frontend is not written yet
        if name == "memphis_trio":
            try:
                importlib.import_module("trio")
            except ImportError:
                continue
        found.append(name)
    return found


# ---------------------------------------------------------------------- one measurement


class Admin:
    """A memphis_sync connection that creates, fills and destroys the stations of the runs."""

    def __init__(self, broker: Broker) -> None:
        import memphis_sync

        self.broker = broker
        self.conn = memphis_sync.connect(
            broker.host, USER, connection_token=TOKEN, port=broker.port
        )
        self._serial = 0

    def fresh_station(self, client: str, op: str, size: int) -> str:
        self._serial += 1
        tag = client.replace("memphis_", "").replace("-", "")
        name = f"bench_{tag}_{op}_{size}_{self._serial}"
        self.conn.create_station(name)
        return name

    def fill(self, station: str, size: int, n: int) -> None:
        producer = self.conn.create_producer(station, "bench-filler")
        payload = payload_of(size)
        for _ in range(n):
            producer.produce(payload, async_produce=True)
        producer.flush()
        producer.destroy()
        check_stored(self.broker, station, n)

    def destroy(self, station: str) -> None:
        self.conn.destroy_station(station)

    def close(self) -> None:
        self.conn.close()


def measure(admin: Admin, client: str, op: str, size: int, n: int) -> tuple[float, float]:
    """One run: a fresh station (pre-filled with ``n`` for a consume), the work, the checks."""
    station = admin.fresh_station(client, op, size)
    try:
        if op in BATCH:
            admin.fill(station, size, n)
        broker = admin.broker
        durable = DURABLES.get(client, "bench-consumer")

        def verify() -> None:
            if op in BATCH:
                check_acked(broker, station, durable, n)
            else:
                check_stored(broker, station, n)

        group = None
        if client == LIMIT and op in BATCH:
            # The limit loop only pulls: the broker makes the group's durable for it.
            group = admin.conn.create_consumer(station, "bench-consumer", batch_size=BATCH[op])
        gc.collect()
        clock = Clock()
        RUNNERS[client](broker, op, size, n, station, verify, clock)
        if group is not None:
            group.destroy()
        return n / clock.wall, clock.cpu / n * 1e6
    finally:
        admin.destroy(station)


# ---------------------------------------------------------------------- memory


def rss_child(host: str, port: int, count: int, size: int) -> None:
    """Subprocess body: async-produce ``count`` messages, print peak RSS and the rate as JSON."""
    import memphis_sync

    payload = payload_of(size)
    clock = Clock()
    station = f"bench_rss_{count}_{os.getpid()}"
    with memphis_sync.connect(host, USER, connection_token=TOKEN, port=port) as conn:
        conn.create_station(station)
        producer = conn.create_producer(station, "bench-rss")
        produce = producer.produce
        clock.start()
        for _ in range(count):
            produce(payload, async_produce=True)
        producer.flush()
        elapsed = clock.stop()
        producer.destroy()
        conn.destroy_station(station)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "count": count,
                "peak_rss_kib": peak_kib,
                "hwm_kib": _vm_hwm_kib(),
                "rate": count / elapsed,
            }
        )
    )


def _vm_hwm_kib() -> int | None:
    """Peak RSS of this process image from /proc (Linux), a cross-check of ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass
class Memory:
    counts: tuple[int, int]
    size: int
    peak_mib: tuple[float, float]  # ru_maxrss
    rates: tuple[float, float]
    hwm_mib: tuple[float, float] | None = None  # /proc VmHWM, when available

    @property
    def growth_mib(self) -> float:
        return self.peak_mib[1] - self.peak_mib[0]

    @property
    def extra_payload_mib(self) -> float:
        return (self.counts[1] - self.counts[0]) * self.size / 2**20

    @property
    def limit_mib(self) -> float:
        # Holding every message (payload alone, before any per-message object) would grow the
        # peak by ``extra_payload_mib``; bounded means a small fraction of it, with a floor
        # for allocator noise at small counts (--quick).
        return max(0.1 * self.extra_payload_mib, MEMORY_SLACK_MIB)

    @property
    def bounded(self) -> bool:
        return self.growth_mib < self.limit_mib


def measure_memory(broker: Broker, plan: Plan) -> Memory:
    peaks: list[float] = []
    hwms: list[float] = []
    rates: list[float] = []
    for count in plan.rss_counts:
        child = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--rss-child",
            f"{broker.host}:{broker.port}:{count}:{plan.rss_size}",
        ]
        if os.name == "posix" and Path("/bin/sh").exists():
            # Linux carries a process's peak RSS across exec, and a child forked straight
            # from this (large) process starts with ours: fork it from a small shell instead.
            # The trailing command keeps the shell from exec'ing python in its own place.
            child = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *child]
        out = subprocess.run(
            child,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        peaks.append(result["peak_rss_kib"] / 1024)
        if result.get("hwm_kib") is not None:
            hwms.append(result["hwm_kib"] / 1024)
        rates.append(result["rate"])
    return Memory(
        plan.rss_counts,
        plan.rss_size,
        (peaks[0], peaks[1]),
        (rates[0], rates[1]),
        (hwms[0], hwms[1]) if len(hwms) == 2 else None,
    )


# ---------------------------------------------------------------------- report


@dataclass
class Cell:
    client: str
    op: str
    size: int
    n: int
    rates: list[float] = field(default_factory=list)  # msgs/s, one per run
    cpu_us: list[float] = field(default_factory=list)  # client-process CPU us per message

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def median_cpu_us(self) -> float:
        return statistics.median(self.cpu_us)


@dataclass
class Goal:
    name: str
    status: str  # PASS / FAIL / SKIP
    detail: str


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _spread(rates: list[float]) -> str:
    if len(rates) < 2:
        return "-"
    mid = statistics.median(rates)
    return f"±{(max(rates) - min(rates)) / 2 / mid * 100:.0f}%"


class Results:
    def __init__(self, clients: list[str]) -> None:
        self.clients = clients
        self.cells: dict[tuple[str, str, int], Cell] = {}

    def median(self, client: str, op: str, size: int) -> float | None:
        cell = self.cells.get((client, op, size))
        return None if cell is None or not cell.rates else cell.median

    def ratio(self, client: str, other: str, op: str, size: int) -> float | None:
        """Median of the per-run ratios (runs are interleaved, so run i of both clients ran
        within seconds of each other); the ratio of medians if the run counts differ."""
        mine, theirs = self.cells.get((client, op, size)), self.cells.get((other, op, size))
        if mine is None or theirs is None or not mine.rates or not theirs.rates:
            return None
        if len(mine.rates) != len(theirs.rates):
            return mine.median / theirs.median
        return statistics.median(a / b for a, b in zip(mine.rates, theirs.rates, strict=True))

    def share_of_best(self, client: str, op: str, size: int) -> float | None:
        """This frontend's rate over our fastest frontend's, per run, median over runs."""
        cells = [
            cell for c in OURS if (cell := self.cells.get((c, op, size))) is not None and cell.rates
        ]
        mine = self.cells.get((client, op, size))
        if mine is None or not mine.rates or len({len(c.rates) for c in cells}) != 1:
            return None
        bests: list[float] = [max(values) for values in zip(*(c.rates for c in cells), strict=True)]
        shares: list[float] = [r / b for r, b in zip(mine.rates, bests, strict=True)]
        return statistics.median(shares)

    def table(self) -> list[str]:
        head = (
            f"{'workload':<16}{'size':>6}  {'client':<16}{'msgs/s':>10}{'spread':>8}"
            f"{'CPU us/msg':>11}{'N':>9}{'÷limit':>8}{'÷nats-py':>10}{'÷memphis-py':>13}"
            f"{'÷our best':>11}"
        )
        lines = [head, "-" * len(head)]
        for op in OPS:
            for size in SIZES:
                first = True
                for client in self.clients:
                    cell = self.cells.get((client, op, size))
                    if cell is None or not cell.rates:
                        continue
                    ours = client in OURS
                    label = f"{OP_LABELS[op]:<16}{_size(size):>6}" if first else " " * 22
                    first = False
                    vs_nats = self.ratio(client, NATS_PY, op, size) if ours else None
                    vs_mpy = self.ratio(client, MEMPHIS_PY, op, size) if ours else None
                    vs_best = self.share_of_best(client, op, size) if ours else None
                    vs_limit = self.ratio(client, LIMIT, op, size) if client != LIMIT else None
                    lines.append(
                        f"{label}  {client:<16}{cell.median:>10,.0f}{_spread(cell.rates):>8}"
                        f"{cell.median_cpu_us:>11.1f}{cell.n:>9,}{_fmt_ratio(vs_limit):>8}"
                        f"{_fmt_ratio(vs_nats):>10}{_fmt_ratio(vs_mpy):>13}{_fmt_ratio(vs_best):>11}"
                    )
        return lines

    def _worst(
        self, ops: Iterable[str], other: str, clients: Iterable[str] = OURS
    ) -> tuple[float, str] | None:
        worst: tuple[float, str] | None = None
        for client in clients:
            for op in ops:
                for size in SIZES:
                    ratio = self.ratio(client, other, op, size)
                    if ratio is not None and (worst is None or ratio < worst[0]):
                        worst = (ratio, f"{client} {OP_LABELS[op]} {_size(size)}")
        return worst

    def goals(self, memory: Memory | None) -> list[Goal]:
        goals: list[Goal] = []
        # The data-path targets (README "Performance"): shares of the limit, then ratios to the
        # peers. Every one is checked for each frontend it names and both sizes; the worst counts.
        for name, ops, other, bound, clients in (
            ("async produce >= 0.65 of the limit", ("async",), LIMIT, 0.65, OURS),
            (
                "fetch+ack b100 and b1000 >= 0.7 of the limit",
                ("fetch100", "fetch1000"),
                LIMIT,
                0.7,
                OURS,
            ),
            ("consume() b100 >= 0.7 of the limit", ("consume100",), LIMIT, 0.7, OURS),
            (
                "consume() b100 >= 1.3x nats-py push subscription",
                ("consume100",),
                NATS_PY,
                1.3,
                OURS,
            ),
            (
                "sync produce (memphis_sync) >= 0.6 of the limit",
                ("sync",),
                LIMIT,
                0.6,
                ("memphis_sync",),
            ),
            ("async produce >= 2x nats-py publish_async", ("async",), NATS_PY, 2.0, OURS),
            ("sync produce >= 1.2x nats-py js.publish", ("sync",), NATS_PY, 1.2, OURS),
            (
                "async produce >= 5x memphis-py non-blocking produce",
                ("async",),
                MEMPHIS_PY,
                5.0,
                OURS,
            ),
            (
                "fetch+ack >= 2x memphis-py fetch+ack",
                ("fetch100", "fetch1000"),
                MEMPHIS_PY,
                2.0,
                OURS,
            ),
        ):
            worst = self._worst(ops, other, clients)
            if worst is None:
                goals.append(Goal(name, "SKIP", f"needs one of ours and {other}"))
            else:
                status = "PASS" if worst[0] >= bound else "FAIL"
                goals.append(Goal(name, status, f"worst {worst[0]:.2f}x ({worst[1]})"))
        for name, ops, bound in (
            ("client CPU per async produce <= 8 us", ("async",), 8.0),
            ("client CPU per fetch+ack message <= 6 us", ("fetch100", "fetch1000"), 6.0),
        ):
            cpu = [
                (cell.median_cpu_us, f"{client} {OP_LABELS[op]} {_size(size)}")
                for client in OURS
                for op in ops
                for size in SIZES
                if (cell := self.cells.get((client, op, size))) is not None and cell.cpu_us
            ]
            if not cpu:
                goals.append(Goal(name, "SKIP", "none of ours measured"))
            else:
                most = max(cpu)
                status = "PASS" if most[0] <= bound else "FAIL"
                goals.append(Goal(name, status, f"worst {most[0]:.1f} us ({most[1]})"))
        ours = [c for c in OURS if c in self.clients]
        name = "each frontend within 20% of our fastest"
        if len(ours) < 2:
            goals.append(Goal(name, "SKIP", f"only {', '.join(ours) or 'none'} measured"))
        else:
            worst_f: tuple[float, str] | None = None
            for op in OPS:
                for size in SIZES:
                    for client in ours:
                        share = self.share_of_best(client, op, size)
                        if share is not None and (worst_f is None or share < worst_f[0]):
                            worst_f = (share, f"{client} {OP_LABELS[op]} {_size(size)}")
            assert worst_f is not None
            status = "PASS" if worst_f[0] >= 0.8 else "FAIL"
            goals.append(Goal(name, status, f"worst {worst_f[0]:.2f} of fastest ({worst_f[1]})"))
        name = "memory bounded by the in-flight window"
        if memory is None:
            goals.append(Goal(name, "SKIP", "not measured"))
        else:
            goals.append(
                Goal(
                    name,
                    "PASS" if memory.bounded else "FAIL",
                    f"peak RSS {memory.peak_mib[0]:.1f} -> {memory.peak_mib[1]:.1f} MiB "
                    f"(+{memory.growth_mib:.1f}) for {memory.counts[0]:,} -> "
                    f"{memory.counts[1]:,} msgs; limit +{memory.limit_mib:.1f} MiB",
                )
            )
        return goals


def _size(size: int) -> str:
    return f"{size // 1024}KiB" if size % 1024 == 0 else f"{size}B"


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run, small N (smoke test)")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated clients: sync, asyncio, trio, nats-py, memphis-py, limit "
        "(default: all)",
    )
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 3; quick 1)")
    ap.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS measurement")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal FAILs")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def select_clients(only: str) -> list[str]:
    available = available_clients()
    if not only:
        return available
    wanted: list[str] = []
    for raw in only.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in ALIASES:
            raise SystemExit(f"unknown client {raw!r}; choose from {', '.join(sorted(ALIASES))}")
        client = ALIASES[name]
        if client not in available:
            raise SystemExit(f"{client} is not available here")
        if client not in wanted:
            wanted.append(client)
    return [c for c in available if c in wanted]


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` gives them ("n/a" without
    it): printed with every run's figures (latency.py uses it too)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        host, port, count, size = args.rss_child.rsplit(":", 3)
        rss_child(host, int(port), int(count), int(size))
        return 0
    plan = quick_plan() if args.quick else full_plan(3)
    if args.runs is not None:
        plan.runs = max(1, args.runs)
    clients = select_clients(args.only)
    if not clients:
        raise SystemExit("no client to benchmark")

    from memphis_broker import EmbeddedBroker

    results = Results(clients)
    for client in clients:
        for op in OPS:
            if (client, op) in SKIPPED:
                continue
            for size in SIZES:
                results.cells[client, op, size] = Cell(client, op, size, plan.count(client, op))
    started = time.monotonic()
    # The load average goes with the figures: on a busy machine they are not comparable.
    load_start = loadavg()
    memory: Memory | None = None
    with EmbeddedBroker() as embedded:
        broker = Broker(embedded.host, embedded.port, embedded.monitor_url)
        admin = Admin(broker)
        try:
            for run in range(plan.runs):
                for op in OPS:
                    for size in SIZES:
                        for client in clients:
                            if (client, op) in SKIPPED:
                                continue
                            cell = results.cells[client, op, size]
                            rate, cpu_us = measure(admin, client, op, size, cell.n)
                            cell.rates.append(rate)
                            cell.cpu_us.append(cpu_us)
                print(
                    f"# run {run + 1}/{plan.runs} done ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            admin.close()
        if not args.no_memory and "memphis_sync" in clients:
            memory = measure_memory(broker, plan)
    elapsed = time.monotonic() - started
    load_end = loadavg()

    versions = _versions(clients)
    print(
        f"End-to-end throughput, msgs/s (median of {plan.runs} run{'s' * (plan.runs > 1)}, "
        f"wall clock), one EmbeddedBroker on 127.0.0.1; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {versions}"
    )
    print()
    for line in results.table():
        print(line)
    print()
    scaled = [
        f"{client} {OP_LABELS[op]}: N={n:,}"
        for (client, op), n in plan.scaled.items()
        if client in clients
    ]
    print(
        "N = messages per run; spread = half the min-max range over the median; CPU = CPU time "
        "of this process (client side, all threads) per message. Ratios: a client ÷ the limit "
        "(thin socket loops, bench/limit.py; consume() rows: its fetch+ack loop, same batch), "
        "ours ÷ baseline and ours ÷ our fastest frontend, median of the per-run ratios."
        + (f" Scaled down: {'; '.join(scaled)}." if scaled else "")
    )
    if memory is not None:
        print(
            f"memphis_sync async produce, {_size(memory.size)}: peak RSS "
            f"{memory.peak_mib[0]:.1f} MiB at {memory.counts[0]:,} msgs "
            f"({memory.rates[0]:,.0f} msgs/s), {memory.peak_mib[1]:.1f} MiB at "
            f"{memory.counts[1]:,} msgs ({memory.rates[1]:,.0f} msgs/s); ru_maxrss of a "
            "subprocess that imports only memphis_sync"
            + (
                f" (VmHWM {memory.hwm_mib[0]:.1f} / {memory.hwm_mib[1]:.1f} MiB)"
                if memory.hwm_mib
                else ""
            )
        )
    print()
    goals = results.goals(memory)
    for goal in goals:
        print(f"{goal.status:<5} {goal.name}: {goal.detail}")
    print(
        f"\ntotal {elapsed:.0f} s; load average (1, 5, 15 min) {load_start} at the start, "
        f"{load_end} at the end"
    )

    if args.json:
        report = {
            "runs": plan.runs,
            "python": platform.python_version(),
            "versions": versions,
            "cells": [asdict(cell) | {"median": cell.median} for cell in results.cells.values()],
            "memory": None if memory is None else asdict(memory) | {"bounded": memory.bounded},
            "goals": [asdict(goal) for goal in goals],
            "seconds": elapsed,
            "loadavg_start": load_start,
            "loadavg_end": load_end,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.strict and any(goal.status == "FAIL" for goal in goals):
        return 1
    return 0


def _versions(clients: list[str]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist, client in (("nats-py", NATS_PY), ("memphis-py", MEMPHIS_PY)):
        if client in clients:
            try:
                parts.append(f"{dist} {version(dist)}")
            except PackageNotFoundError:  # pragma: no cover - imported fine, metadata missing
                parts.append(dist)
    return ", ".join(parts) or "our frontends only"


if __name__ == "__main__":
    sys.exit(main())
