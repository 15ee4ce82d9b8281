"""``memphis bench produce|consume``: a quick throughput check against a live broker.

For a developer's "is it fast enough here?", not a benchmark suite (``bench/throughput.py``
compares clients). Progress is drawn on stderr with rich; the results table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

import memphis_sync

from ._connection import open_connection
from ._errors import USAGE, CliError
from ._output import print_table

__all__ = ["bench_consume", "bench_produce"]

Settings = Mapping[str, Any]

#: Redraw step for pipelined modes: advancing rich per message would cost as much as producing.
_STEP: Final = 1000
#: How long a consume may go without a single message before it gives up.
_STALL: Final = 10.0


@contextmanager
def _progress() -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(file=sys.stderr)) as progress:
        yield progress


def _check(args: argparse.Namespace) -> None:
    if args.count < 1:
        raise CliError(f"--count must be at least 1, got {args.count}", USAGE)
    if args.size < 1:
        raise CliError(f"--size must be at least 1 byte, got {args.size}", USAGE)
    if args.batch < 0:
        raise CliError(f"--batch must be 0 or more, got {args.batch}", USAGE)


def _produce_all(
    producer: memphis_sync.Producer,
    payload: bytes,
    count: int,
    batch: int,
    progress: Progress,
    description: str,
) -> list[float]:
    """Produce ``count`` messages; returns per-message latencies (sync mode only), seconds."""
    task = progress.add_task(description, total=count)
    latencies: list[float] = []
    if batch == 1:
        clock = time.perf_counter
        for i in range(count):
            started = clock()
            producer.produce(payload)
            latencies.append(clock() - started)
            if (i + 1) % 100 == 0 or i + 1 == count:
                progress.update(task, completed=i + 1)
        return latencies
    step = batch or _STEP
    for i in range(count):
        producer.produce(payload, async_produce=True)
        if (i + 1) % step == 0:
            if batch:
                producer.flush()
            progress.update(task, completed=i + 1)
    producer.flush()
    progress.update(task, completed=count)
    return latencies


def _report(args: argparse.Namespace, mode: str, elapsed: float, latencies: list[float]) -> None:
    total_bytes = args.count * args.size
    result: dict[str, Any] = {
        "mode": mode,
        "station": args.station,
        "messages": args.count,
        "size": args.size,
        "batch": args.batch,
        "elapsed_s": round(elapsed, 6),
        "msgs_per_s": round(args.count / elapsed, 1) if elapsed > 0 else None,
        "mb_per_s": round(total_bytes / elapsed / 1e6, 3) if elapsed > 0 else None,
        "p50_ms": None,
        "p99_ms": None,
    }
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        result["p50_ms"] = round(cuts[49] * 1e3, 3)
        result["p99_ms"] = round(cuts[98] * 1e3, 3)
    if args.json:
        print(json.dumps(result), flush=True)
        return
    rows = [
        ("mode", mode),
        ("station", args.station),
        ("messages", f"{args.count:,} x {args.size:,} B"),
        ("batch", str(args.batch)),
        ("elapsed", f"{elapsed:.3f} s"),
        ("msgs/s", f"{result['msgs_per_s']:,.0f}" if elapsed > 0 else "-"),
        ("MB/s", f"{result['mb_per_s']:,.2f}" if elapsed > 0 else "-"),
    ]
    # Latency rows only where they were measured (a synchronous produce): a consume or an
    # async produce has no per-message produce latency to show.
    for key, label in (("p50_ms", "p50 produce latency"), ("p99_ms", "p99 produce latency")):
        if result[key] is not None:
            rows.append((label, f"{result[key]:.3f} ms"))
    print_table(f"memphis bench {mode}", ("metric", "value"), rows, right=frozenset({"value"}))


def bench_produce(args: argparse.Namespace, settings: Settings) -> int:
    """Produce ``--count`` messages of ``--size`` bytes and report the rate.

    ``--batch 1``: synchronous produce (each waits for its ack), latencies p50/p99 measured.
    ``--batch N``: async produce with a ``flush()`` every N messages. ``--batch 0``: async
    produce and one ``flush()`` at the end.
    """
    _check(args)
    payload = b"x" * args.size
    with open_connection(settings) as conn:
        conn.create_station(args.station)
        producer = conn.create_producer(args.station, args.producer)
        with _progress() as progress:
            started = time.perf_counter()
            latencies = _produce_all(producer, payload, args.count, args.batch, progress, "produce")
            elapsed = time.perf_counter() - started
    mode = "produce (sync)" if args.batch == 1 else "produce (async)"
    _report(args, mode, elapsed, latencies)
    return 0


def bench_consume(args: argparse.Namespace, settings: Settings) -> int:
    """Fill the station with ``--count`` messages, then fetch (``--batch`` at a time) and ack
    them with a new consumer group, timing only the consume part.

    Raises:
        CliError: no message arrived for 10 s before ``--count`` were consumed.
    """
    _check(args)
    batch = args.batch or 100
    payload = b"x" * args.size
    group = f"memphis-cli-bench-{uuid.uuid4().hex[:8]}"
    with open_connection(settings) as conn:
        conn.create_station(args.station)
        producer = conn.create_producer(args.station, args.producer)
        with _progress() as progress:
            _produce_all(producer, payload, args.count, 0, progress, "fill")
            # A new group starts at the station's first message, so it has >= count to read.
            consumer = conn.create_consumer(
                args.station, group, batch_size=batch, batch_max_wait_time=1.0
            )
            task = progress.add_task("consume", total=args.count)
            received = 0
            started = last_seen = time.perf_counter()
            while received < args.count:
                messages = consumer.fetch(min(batch, args.count - received))
                for msg in messages:
                    msg.ack()
                received += len(messages)
                now = time.perf_counter()
                if messages:
                    last_seen = now
                    progress.update(task, completed=received)
                elif now - last_seen > _STALL:
                    raise CliError(f"only {received} of {args.count} messages arrived")
            elapsed = time.perf_counter() - started
        consumer.destroy()
    _report(args, f"consume (fetch {batch} + ack)", elapsed, [])
    return 0
