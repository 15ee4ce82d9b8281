"""Tracing: one trace from a producer, through the broker, to the handler that acks the message.

Needs the ``otel`` extra and the OpenTelemetry SDK (``pip install 'memphis-sansio[otel]'
opentelemetry-sdk``). Two connections stand for two services: the first produces an order,
the second consumes it with ``consume(handler)`` and acks it. Every span is printed to the
console as JSON (the SDK's ``ConsoleSpanExporter``), then a summary of the trace: ``send``
(PRODUCER) in the first service; ``receive`` (CLIENT), ``process`` (CONSUMER, a child of
``send`` through the message's ``traceparent`` header) and ``ack`` (CLIENT, a settle span:
the ack inside the handler) in the second. docs/tracing.md lists every span and attribute.

Run against any Memphis-compatible broker (example_setup.py says where it is found)::

    python examples/tracing.py
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from example_setup import broker_args
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import memphis_sync as memphis

STATION = "tracing-orders"


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    kept = InMemorySpanExporter()  # for the summary below
    provider.add_span_processor(SimpleSpanProcessor(kept))
    broker = broker_args()
    with (
        memphis.connect(**broker, tracer_provider=provider) as shop,
        memphis.connect(**broker, tracer_provider=provider) as billing,
    ):
        station = shop.create_station(STATION, retention_value=600)
        try:
            station.create_producer("web").produce({"id": 1, "item": "book"}, msg_id="order-1")
            acked = threading.Event()

            def handler(messages: list[Any], error: Any, context: Any) -> None:
                for message in messages:
                    message.ack()
                    acked.set()

            consumer = billing.create_consumer(STATION, "billing", batch_max_wait_time=1.0)
            consumer.consume(handler)
            if not acked.wait(30):
                sys.exit("the order was not consumed within 30 s")
            consumer.stop_consume()
        finally:
            station.destroy()
    spans = kept.get_finished_spans()
    traces = {span.context.trace_id for span in spans if not span.name.startswith("receive")}
    print(f"{len(spans)} spans: " + ", ".join(span.name for span in spans))
    if len(traces) != 1:
        sys.exit(f"expected one trace from send to ack, got {len(traces)}")
    print(f"one trace {traces.pop():032x}: send -> process -> ack")


if __name__ == "__main__":
    main()
