"""``_memphis_io/_otel.py``'s ``Telemetry`` driven through a scripted broker, bytes in and spans
out: what the real-broker tests cannot make happen on demand (an application's tracer that
raises, a PubAck that does not come)."""

from __future__ import annotations

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from _memphis_io._otel import Telemetry
from memphis_core import Delivery, LocalProtocolError, produce_options
from memphis_core.nats._headers import encode_header_block
from tests.support.scripted_broker import (
    Script,
    ack_subject,
    connected,
    consumer,
    producer,
    pull_request,
)
from tests.support.wire_vectors import server_hmsg


class Broken(SpanProcessor):
    """An application's span processor that raises when a span starts, or when it ends."""

    def __init__(self, at: str) -> None:
        self.at = at

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.at == "start":
            raise RuntimeError("the application's tracer broke")

    def on_end(self, span: ReadableSpan) -> None:
        if self.at == "end":
            raise RuntimeError("the application's exporter broke")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _instrumented(processor: SpanProcessor, reader: InMemoryMetricReader | None = None) -> Script:
    script = connected()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(metric_readers=[reader or InMemoryMetricReader()])
    script.client.observer = Telemetry(script.client, tracer_provider, meter_provider)
    return script


def _fetched(script: Script, count: int) -> list[Delivery]:
    state = consumer(script, batch_size=count)
    op = script.client.fetch(state, count, script.now, partition_number=1)
    pull = pull_request(script)
    for seq in range(1, count + 1):
        script.deliver(pull, "orders$1", "billing", seq, b"m", pending=count - seq)
    return op.outcome()


@pytest.mark.parametrize("at", ["start", "end"])
def test_a_raising_tracer_costs_spans_never_a_produce_an_ack_or_a_handler_call(at: str) -> None:
    script = _instrumented(Broken(at))
    prod = producer(script)
    script.take()
    op = script.client.produce(prod, b"x", produce_options(), script.now)
    sent = script.one("HPUB")
    script.reply(sent, {"stream": "orders$1", "seq": 1})  # the span ends in here: must not raise
    assert op.outcome().sequence == 1
    (message,) = _fetched(script, 1)
    script.take()
    script.client.ack(message)
    (ack,) = script.take()
    assert (ack.subject, ack.payload) == (message.msg.reply, b"+ACK")  # the ack went out
    observer = script.client.observer
    assert observer is not None
    observer.received(message.consumer, [message], 0)
    ran = []
    with observer.processing(message.consumer, [message]):
        ran.append(True)
    failure = ValueError("the handler's own")
    with pytest.raises(ValueError) as raised, observer.processing(message.consumer, [message]):
        raise failure
    assert raised.value is failure
    assert ran == [True]


def test_pubacks_that_do_not_come_hold_back_no_other_send_span(
    exporter: InMemorySpanExporter,
) -> None:
    script = _instrumented(SimpleSpanProcessor(exporter))
    prod = producer(script)
    script.take()
    opts = produce_options(async_produce=True)
    # More than a few oldest produces wait (a station in a leader election, say)...
    for i in range(70):
        script.client.produce(prod, b"slow%d" % i, opts, script.now)
    slow = script.take()
    ops = [script.client.produce(prod, b"m%d" % i, opts, script.now) for i in range(100)]
    for seq, sent in enumerate(script.take(), 71):
        script.reply(sent, {"stream": "orders$1", "seq": seq})
    assert all(op.done for op in ops)
    # ...while each later PubAck ends its span as it is read.
    assert len(exporter.get_finished_spans()) == 100
    for seq, sent in enumerate(slow, 1):
        script.reply(sent, {"stream": "orders$1", "seq": seq})
    assert len(exporter.get_finished_spans()) == 170


def test_a_creation_context_the_caller_wrote_is_kept_and_linked(
    exporter: InMemorySpanExporter,
) -> None:
    script = _instrumented(SimpleSpanProcessor(exporter))
    prod = producer(script)
    script.take()
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"TraceParent": theirs, "tracestate": "vendor=1"}
    script.client.produce(prod, b"x", produce_options(headers=headers), script.now)
    sent = script.one("HPUB")
    assert sent.headers is not None
    assert (sent.headers.get("TraceParent"), sent.headers.get("tracestate")) == (theirs, "vendor=1")
    assert sent.headers.get("traceparent") is None  # not a second, different context
    script.reply(sent, {"stream": "orders$1", "seq": 1})
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.CLIENT  # its context is not the message's creation context
    (link,) = span.links
    assert (link.context.trace_id, link.context.span_id) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
    )
    assert link.context.trace_state.get("vendor") == "1"


def test_a_malformed_context_the_caller_wrote_is_replaced_by_the_send_spans(
    exporter: InMemorySpanExporter,
) -> None:
    script = _instrumented(SimpleSpanProcessor(exporter))
    prod = producer(script)
    script.take()
    opts = produce_options(headers={"traceparent": "mine"})
    script.client.produce(prod, b"x", opts, script.now)
    sent = script.one("HPUB")
    script.reply(sent, {"stream": "orders$1", "seq": 1})
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER
    assert sent.headers is not None
    context = span.context
    assert sent.headers.get("traceparent") == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )


SENT_BY = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _traced_delivery(script: Script) -> Delivery:
    """One message fetched whose headers carry ``SENT_BY``, its producer's context."""
    state = consumer(script, batch_size=1)
    op = script.client.fetch(state, 1, script.now, partition_number=1)
    pull = pull_request(script)
    assert pull.reply is not None
    block = encode_header_block({"$memphis_producedBy": "p", "traceparent": SENT_BY})
    ack = ack_subject("orders$1", "billing", 1)
    script.feed(server_hmsg("orders$1.final", script.sids[pull.reply], ack, block, b"m"))
    (delivery,) = op.outcome()
    return delivery


def test_a_handler_call_continues_the_producers_trace(exporter: InMemorySpanExporter) -> None:
    script = _instrumented(SimpleSpanProcessor(exporter))
    delivery = _traced_delivery(script)
    observer = script.client.observer
    assert observer is not None
    with observer.processing(delivery.consumer, [delivery]):
        pass
    (process,) = exporter.get_finished_spans()
    assert process.parent is not None
    assert process.parent.span_id == 0xB7AD6B7169203331
    assert [link.context.span_id for link in process.links] == [0xB7AD6B7169203331]


def test_a_handler_call_inside_an_application_span_stays_its_child(
    exporter: InMemorySpanExporter,
) -> None:
    script = _instrumented(SimpleSpanProcessor(exporter))
    delivery = _traced_delivery(script)
    observer = script.client.observer
    assert observer is not None
    tracer = TracerProvider().get_tracer("app")
    with (
        tracer.start_as_current_span("app") as app,
        observer.processing(delivery.consumer, [delivery]),
    ):
        pass
    (process,) = exporter.get_finished_spans()
    assert process.parent is not None
    assert process.parent.span_id == app.get_span_context().span_id
    assert [link.context.span_id for link in process.links] == [0xB7AD6B7169203331]


def _points(reader: InMemoryMetricReader) -> dict[str, list[dict[str, object]]]:
    """Metric name -> the attributes of each of its points."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: [dict(point.attributes or {}) for point in metric.data.data_points]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def test_a_produce_refused_before_sending_is_a_failed_send_but_not_a_message_sent(
    exporter: InMemorySpanExporter,
) -> None:
    reader = InMemoryMetricReader()
    script = _instrumented(SimpleSpanProcessor(exporter), reader)
    prod = producer(script)
    script.take()
    with pytest.raises(LocalProtocolError):
        script.client.produce(prod, b"x", produce_options(partition_number=9), script.now)
    assert script.take() == []
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["error.type"] == "LocalProtocolError"
    points = _points(reader)
    assert [p["error.type"] for p in points["messaging.client.operation.duration"]] == [
        "LocalProtocolError"
    ]
    assert "messaging.client.sent.messages" not in points


def test_a_close_ends_the_send_spans_still_waiting_with_its_error(
    exporter: InMemorySpanExporter,
) -> None:
    script = _instrumented(SimpleSpanProcessor(exporter))
    prod = producer(script)
    script.take()
    opts = produce_options(async_produce=True)
    for i in range(3):
        script.client.produce(prod, b"m%d" % i, opts, script.now)
    assert exporter.get_finished_spans() == ()
    script.client.close()
    spans = exporter.get_finished_spans()
    assert [dict(s.attributes or {})["error.type"] for s in spans] == ["ConnectionClosedError"] * 3
