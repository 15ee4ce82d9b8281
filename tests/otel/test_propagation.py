"""Trace context across processes and connections, messages without one, cancelled fetches,
and the instrumentation off (docs/tracing.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from memphis_broker import EmbeddedBroker
from tests.conformance.test_lifecycle import _cancel_after, _fetch_holding_messages
from tests.otel.conftest import Recorded
from tests.support.frontends import Frontend
from tests.support.names import TOKEN, USER
from tests.support.probe import BrokerProbe

ROOT = Path(__file__).resolve().parents[2]

# Another process produces with the global providers (``instrument=True``) and prints its send
# span's trace and span ids.
PRODUCER = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import memphis_sync as memphis

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    host, port, station = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with memphis.connect(host, "root", connection_token="memphis", port=port,
                         instrument=True) as conn:
        conn.create_producer(station, "p").produce(b"traced")
    (span,) = exporter.get_finished_spans()
    print(json.dumps([span.name, span.context.trace_id, span.context.span_id]))
    """
)


def _python(script: str, *args: str) -> str:
    """What ``script`` prints, run in a new interpreter (with ``args``) from the checkout."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    ).stdout


def _produce_in_another_process(broker: EmbeddedBroker, station: str) -> tuple[int, int]:
    out = _python(PRODUCER, broker.host, str(broker.port), station)
    name, trace_id, span_id = json.loads(out)
    assert name == f"send {station}"
    return trace_id, span_id


async def _until(frontend: Frontend, done: Callable[[], bool], seconds: float) -> None:
    """Wait until ``done()`` (checked every 20 ms, at most ``seconds``) in the frontend's loop."""
    if "trio" in frontend.name:
        import trio

        sleep: Callable[[float], Awaitable[None]] = trio.sleep
    else:
        import asyncio

        sleep = asyncio.sleep
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        await sleep(0.02)


def _native_connect(frontend: Frontend, broker: EmbeddedBroker, otel: Recorded) -> Any:
    """The async frontend's own ``connect(...)``, instrumented, for ``async with``."""
    return frontend.module.connect(
        broker.host,
        USER,
        connection_token=TOKEN,
        port=broker.port,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )


def _consume_and_ack(
    frontend: Frontend,
    broker: EmbeddedBroker,
    connect: Callable[..., Any],
    otel: Recorded,
    station: str,
) -> None:
    """One message consumed by a handler that acks it, natively on each frontend (an async
    handler acks in its own task, where its process span is current)."""
    if not frontend.is_async:
        acked = threading.Event()

        def handler(messages: list[Any], error: Any, context: Any) -> None:
            for message in messages:
                message.ack()
                acked.set()

        consumer = connect().create_consumer(station, "c", batch_max_wait_time=1.0)
        consumer.consume(handler)
        assert acked.wait(20)
        consumer.stop_consume()
        return

    async def body() -> None:
        async with _native_connect(frontend, broker, otel) as native:
            consumer = await native.create_consumer(station, "c", batch_max_wait_time=1.0)
            acked: list[bytes] = []

            async def handler(messages: list[Any], error: Any, context: Any) -> None:
                for message in messages:
                    await message.ack()
                    acked.append(message.data)

            await consumer.consume(handler)
            await _until(frontend, lambda: bool(acked), 20)
            await consumer.stop_consume()
            assert acked

    frontend.run(body)


def test_one_trace_from_a_produce_in_another_process_to_the_handlers_ack(
    frontend: Frontend,
    broker: EmbeddedBroker,
    connect: Callable[..., Any],
    otel: Recorded,
    station: str,
) -> None:
    connect().create_station(station)
    trace_id, send_id = _produce_in_another_process(broker, station)
    _consume_and_ack(frontend, broker, connect, otel, station)
    process = otel.spans(f"process {station}")[0]
    (settle,) = otel.spans(f"ack {station}")
    (receive,) = otel.spans(f"receive {station}")
    assert process.context.trace_id == trace_id
    assert process.parent is not None
    assert process.parent.span_id == send_id
    assert [link.context.span_id for link in process.links] == [send_id]
    assert [link.context.span_id for link in receive.links] == [send_id]
    # The ack runs inside the handler: its settle span is a child of the process span.
    assert settle.context.trace_id == trace_id
    assert settle.parent is not None
    assert settle.parent.span_id == process.context.span_id


def test_a_message_without_trace_context_gets_well_formed_consumer_spans(
    connect: Callable[..., Any], otel: Recorded, station: str
) -> None:
    # As from the Go or Node SDK: no traceparent header.
    plain = connect(tracer_provider=None, meter_provider=None)
    plain.create_producer(station, "p").produce(b"untraced", headers={"k": "v"})
    assert otel.spans() == []
    consumer = connect().create_consumer(station, "c", batch_max_wait_time=1.0)
    received = []
    for message in consumer:
        received.append(message)
        break
    (message,) = received
    assert message.headers == {"k": "v"}
    assert message.trace_context == {}
    message.ack()
    (receive,) = otel.spans(f"receive {station}")
    assert receive.links == ()
    assert receive.context.is_valid
    # A step of the loop hands over one message (a single-message API): no batch count.
    assert "messaging.batch.message_count" not in dict(receive.attributes or {})
    (settle,) = otel.spans(f"ack {station}")
    assert settle.links == ()
    assert settle.kind is SpanKind.CLIENT


def test_a_cancelled_fetch_makes_no_receive_span_for_the_messages_it_keeps(
    frontend: Frontend,
    broker: EmbeddedBroker,
    connect: Callable[..., Any],
    probe: BrokerProbe,
    otel: Recorded,
    station: str,
) -> None:
    if not frontend.is_async:
        pytest.skip("cancellation is an async idiom; memphis_sync has fetch(timeout=)")
    _fetch_holding_messages(connect(), probe, station, 5.0)
    sends = {s.context.span_id for s in otel.spans(f"send {station}")}
    name = f"receive {station}"

    async def body() -> tuple[Any, int, int, list[bytes]]:
        async with _native_connect(frontend, broker, otel) as native:
            consumer = await native.create_consumer(
                station, "c", batch_max_wait_time=5.0, max_ack_time=30
            )
            (first,) = await consumer.fetch(batch_size=1)
            before = len(otel.spans(name))
            cancelled = await _cancel_after(frontend, consumer.fetch(batch_size=3), 1.0)
            after = len(otel.spans(name))
            again = await consumer.fetch(batch_size=2)
            for message in [first, *again]:
                await message.ack()
            return cancelled, before, after, [bytes(m.data) for m in again]

    cancelled, before, after, again = frontend.run(body)
    assert cancelled is None
    assert (before, after) == (1, 1)
    assert again == [b"m1", b"m2"]
    _first, kept = otel.spans(name)
    assert dict(kept.attributes or {})["messaging.batch.message_count"] == 2
    assert {link.context.span_id for link in kept.links} <= sends
    assert len(kept.links) == 2


def test_without_the_options_nothing_from_opentelemetry_is_imported(
    broker: EmbeddedBroker,
) -> None:
    script = textwrap.dedent(
        """
        import sys
        import memphis_asyncio, memphis_trio
        import memphis_sync as memphis

        with memphis.connect(sys.argv[1], "root", connection_token="memphis",
                             port=int(sys.argv[2])) as conn:
            conn.create_producer("otel-off", "p").produce(b"x", headers={"traceparent": "mine"})
            (message,) = conn.create_consumer("otel-off", "c").fetch()
            message.ack()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert _python(script, broker.host, str(broker.port)).strip() == "[]"
