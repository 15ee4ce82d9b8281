"""``_memphis_io/_otel.py``'s ``Telemetry`` driven through a scripted broker, bytes in and spans
out: what the real-broker tests cannot make happen on demand (an application's tracer that
raises, PubAcks that do not come, a close with produces in flight, contexts written by hand)."""

from __future__ import annotations

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from _memphis_io._otel import Telemetry
from memphis_core import (
    Delivery,
    LocalProtocolError,
    ProducerState,
    produce_options,
)
from memphis_core.memphis._observe import Observer
from memphis_core.memphis._producers import ProduceOperation
from memphis_core.nats._headers import encode_header_block
from tests.support.scripted_broker import (
    Sent,
    ack_subject,
    connected,
    consumer,
    producer,
    pull_request,
)
from tests.support.wire_vectors import server_hmsg

#: A producer's context, as another process would have written it (W3C's example ids).
SENT_BY = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SENT_BY_TRACE, SENT_BY_SPAN = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


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


class Scene:
    """A scripted client instrumented by ``Telemetry``, what it recorded, and producer
    ``web`` of ``orders``."""

    def __init__(self, processor: SpanProcessor | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(processor or SimpleSpanProcessor(self.exporter))
        meter_provider = MeterProvider(metric_readers=[self.reader])
        self.script = script = connected()
        self.observer: Observer = Telemetry(script.client, tracer_provider, meter_provider)
        script.client.observer = self.observer
        self.producer: ProducerState = producer(script)
        script.take()

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def produce(self, data: bytes, **options: object) -> ProduceOperation:
        opts = produce_options(**options)  # type: ignore[arg-type]
        return self.script.client.produce(self.producer, data, opts, self.script.now)

    def ack_all(self, sent: list[Sent], first: int) -> None:
        """The PubAck of each of ``sent``, in order, one read each (sequences from ``first``)."""
        for seq, request in enumerate(sent, first):
            self.script.reply(request, {"stream": "orders$1", "seq": seq})

    def fetched(self, block: bytes | None = None) -> Delivery:
        """One message fetched (headers: ``block`` when given)."""
        script = self.script
        state = consumer(script, batch_size=1)
        op = script.client.fetch(state, 1, script.now, partition_number=1)
        pull = pull_request(script)
        assert pull.reply is not None
        if block is None:
            script.deliver(pull, "orders$1", "billing", 1, b"m")
        else:
            ack = ack_subject("orders$1", "billing", 1)
            script.feed(server_hmsg("orders$1.final", script.sids[pull.reply], ack, block, b"m"))
        (delivery,) = op.outcome()
        return delivery

    def metric_points(self) -> dict[str, list[dict[str, object]]]:
        """Metric name -> the attributes of each of its points."""
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: [dict(point.attributes or {}) for point in metric.data.data_points]
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


@pytest.fixture
def scene() -> Scene:
    return Scene()


@pytest.mark.parametrize("at", ["start", "end"])
def test_a_raising_tracer_costs_spans_never_a_produce_an_ack_or_a_handler_call(at: str) -> None:
    scene = Scene(Broken(at))
    script, observer = scene.script, scene.observer
    op = scene.produce(b"x")
    scene.ack_all([script.one("HPUB")], 1)  # the span ends in here: must not raise
    assert op.outcome().sequence == 1
    message = scene.fetched()
    script.take()
    script.client.ack(message)
    (ack,) = script.take()
    assert (ack.subject, ack.payload) == (message.msg.reply, b"+ACK")  # the ack went out
    observer.received(message.consumer, [message], 0)
    ran = []
    with observer.processing(message.consumer, [message]):
        ran.append(True)
    failure = ValueError("the handler's own")
    with pytest.raises(ValueError) as raised, observer.processing(message.consumer, [message]):
        raise failure
    assert raised.value is failure
    assert ran == [True]


def test_pubacks_that_do_not_come_hold_back_no_other_send_span(scene: Scene) -> None:
    # More than a few oldest produces wait (a station in a leader election, say)...
    for i in range(70):
        scene.produce(b"slow%d" % i, async_produce=True)
    slow = scene.script.take()
    ops = [scene.produce(b"m%d" % i, async_produce=True) for i in range(100)]
    scene.ack_all(scene.script.take(), 71)
    assert all(op.done for op in ops)
    # ...while each later PubAck ends its span as it is read.
    assert len(scene.spans()) == 100
    scene.ack_all(slow, 1)
    assert len(scene.spans()) == 170


def test_a_close_ends_the_send_spans_still_waiting_with_its_error(scene: Scene) -> None:
    for i in range(3):
        scene.produce(b"m%d" % i, async_produce=True)
    assert scene.spans() == ()
    scene.script.client.close()
    errors = [dict(s.attributes or {})["error.type"] for s in scene.spans()]
    assert errors == ["ConnectionClosedError"] * 3


def test_a_produce_refused_before_sending_is_a_failed_send_but_not_a_message_sent(
    scene: Scene,
) -> None:
    with pytest.raises(LocalProtocolError):
        scene.produce(b"x", partition_number=9)
    assert scene.script.take() == []
    (span,) = scene.spans()
    assert dict(span.attributes or {})["error.type"] == "LocalProtocolError"
    points = scene.metric_points()
    assert [p["error.type"] for p in points["messaging.client.operation.duration"]] == [
        "LocalProtocolError"
    ]
    assert "messaging.client.sent.messages" not in points


def test_a_creation_context_the_caller_wrote_is_kept_and_linked(scene: Scene) -> None:
    scene.produce(b"x", headers={"TraceParent": SENT_BY, "tracestate": "vendor=1"})
    sent = scene.script.one("HPUB")
    assert sent.headers is not None
    assert (sent.headers.get("TraceParent"), sent.headers.get("tracestate")) == (
        SENT_BY,
        "vendor=1",
    )
    assert sent.headers.get("traceparent") is None  # not a second, different context
    scene.ack_all([sent], 1)
    (span,) = scene.spans()
    assert span.kind is SpanKind.CLIENT  # its context is not the message's creation context
    (link,) = span.links
    assert (link.context.trace_id, link.context.span_id) == (SENT_BY_TRACE, SENT_BY_SPAN)
    assert link.context.trace_state.get("vendor") == "1"


def test_a_malformed_context_the_caller_wrote_is_replaced_by_the_send_spans(scene: Scene) -> None:
    scene.produce(b"x", headers={"traceparent": "mine"})
    sent = scene.script.one("HPUB")
    scene.ack_all([sent], 1)
    (span,) = scene.spans()
    assert span.kind is SpanKind.PRODUCER
    assert sent.headers is not None
    context = span.context
    assert sent.headers.get("traceparent") == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )


def _traced(scene: Scene, name: str = "traceparent") -> Delivery:
    return scene.fetched(encode_header_block({"$memphis_producedBy": "p", name: SENT_BY}))


@pytest.mark.parametrize("name", ["traceparent", "Traceparent"])
def test_a_handler_call_continues_the_producers_trace(scene: Scene, name: str) -> None:
    # Written in any case (a Go producer may canonicalise it), as it is hidden in any case.
    delivery = _traced(scene, name)
    with scene.observer.processing(delivery.consumer, [delivery]):
        pass
    (process,) = scene.spans()
    assert process.parent is not None
    assert process.parent.span_id == SENT_BY_SPAN
    assert [link.context.span_id for link in process.links] == [SENT_BY_SPAN]


def test_a_handler_call_inside_an_application_span_stays_its_child(scene: Scene) -> None:
    delivery = _traced(scene)
    tracer = TracerProvider().get_tracer("app")
    with (
        tracer.start_as_current_span("app") as app,
        scene.observer.processing(delivery.consumer, [delivery]),
    ):
        pass
    (process,) = scene.spans()
    assert process.parent is not None
    assert process.parent.span_id == app.get_span_context().span_id
    assert [link.context.span_id for link in process.links] == [SENT_BY_SPAN]


def test_durations_have_the_conventions_bucket_boundaries_in_seconds(scene: Scene) -> None:
    scene.produce(b"x")
    scene.ack_all([scene.script.one("HPUB")], 1)
    data = scene.reader.get_metrics_data()
    assert data is not None
    (duration,) = [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "messaging.client.operation.duration"
    ]
    (point,) = duration.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
    )  # fmt: skip
