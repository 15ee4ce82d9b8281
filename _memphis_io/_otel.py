"""OpenTelemetry spans and metrics from the client's facts, for the three frontends at once.

Imported only when ``connect`` is given ``tracer_provider``, ``meter_provider`` or
``instrument=True`` (see :func:`~._connect.connect_arguments`): without them nothing from
``opentelemetry`` is imported. :class:`Telemetry` is the core's
:class:`~memphis_core.memphis._observe.Observer`; docs/tracing.md lists the spans, their
attributes and the metrics, after the OpenTelemetry messaging semantic conventions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from memphis_core import LocalProtocolError, __version__
from memphis_core.memphis._names import trace_carrier

if TYPE_CHECKING:
    from memphis_core import Client
    from memphis_core.memphis._deliveries import ConsumerState, Delivery
    from memphis_core.memphis._observe import ProduceWatch
    from memphis_core.memphis._options import ProduceOptions
    from memphis_core.memphis._producers import ProduceOperation, ProducerState

__all__ = ["SEMCONV_VERSION", "Telemetry"]

#: The version of the OpenTelemetry semantic conventions the spans and metrics follow.
SEMCONV_VERSION: Final = "1.44.0"
_SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
_SCOPE: Final = "memphis_sansio"

# Attribute names (the messaging and general conventions).
SYSTEM: Final = "messaging.system"
OPERATION_NAME: Final = "messaging.operation.name"
OPERATION_TYPE: Final = "messaging.operation.type"
DESTINATION: Final = "messaging.destination.name"
PARTITION: Final = "messaging.destination.partition.id"
MESSAGE_ID: Final = "messaging.message.id"
GROUP: Final = "messaging.consumer.group.name"
BATCH_COUNT: Final = "messaging.batch.message_count"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
#: Attributes that name one message: on spans only, never on metrics (their cardinality).
_SPAN_ONLY: Final = frozenset({MESSAGE_ID, BATCH_COUNT})

#: W3C trace context only, whatever global propagator the application set: these are the
#: headers ``Message.headers`` hides (``memphis_core.memphis._names.is_shown_header``).
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACE_HEADERS: Final = frozenset(_PROPAGATOR.fields)

Attributes = dict[str, AttributeValue]

#: Where a failure of the application's tracer, meter or exporter is logged: the operation it
#: was measuring goes on as if the instrumentation were off (docs/tracing.md).
_log = logging.getLogger(__name__)
_FAILED: Final = "OpenTelemetry instrumentation failed (%s); the operation goes on without it"

#: Up to this many produces in flight, ``Telemetry.progress`` looks at each of them every time.
_SCAN_LIMIT: Final = 64

# The metrics (name, unit, description), after the messaging conventions.
_OPERATION_DURATION: Final = (
    "messaging.client.operation.duration",
    "s",
    "Duration of a messaging operation: a send until its PubAck, a receive, a settle.",
)
_PROCESS_DURATION: Final = ("messaging.process.duration", "s", "Duration of a handler call.")
#: The bucket boundaries (seconds) the conventions give both durations: the SDK's default ones
#: were made for milliseconds, and would put nearly every operation in the first bucket.
_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_SENT: Final = (
    "messaging.client.sent.messages",
    "{message}",
    "Number of messages the producer attempted to send to the broker.",
)
_CONSUMED: Final = (
    "messaging.client.consumed.messages",
    "{message}",
    "Number of messages handed to the application by receives.",
)


def _now() -> float:
    return time.perf_counter()


class _Send:
    """One produce whose span waits for its PubAck (or failure)."""

    __slots__ = ("attributes", "op", "span", "started")

    def __init__(
        self, op: ProduceOperation, span: Span, attributes: Attributes, started: float
    ) -> None:
        self.op = op
        self.span = span
        self.attributes = attributes
        self.started = started


class Telemetry:
    """Turns one connection's facts into spans and metrics (the core's ``Observer``).

    Args:
        client: the connection's client (``server.address`` / ``server.port`` are its
            current server when a span starts).
        tracer_provider: the provider of the spans; None: the global one.
        meter_provider: the provider of the metrics; None: the global one.

    Raises:
        LocalProtocolError: a provider that is not one (it has no ``get_tracer`` /
            ``get_meter``): at ``connect``, not at the first produce.
    """

    def __init__(
        self,
        client: Client,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        for option, value, method in (
            ("tracer_provider", tracer_provider, "get_tracer"),
            ("meter_provider", meter_provider, "get_meter"),
        ):
            if value is not None and not callable(getattr(value, method, None)):
                raise LocalProtocolError(
                    f"{option} must be an OpenTelemetry provider (with {method}), not {value!r}"
                )
        self._client = client
        self._tracer = trace.get_tracer(
            _SCOPE, __version__, tracer_provider, schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider, schema_url=_SCHEMA_URL)
        self._duration = meter.create_histogram(
            *_OPERATION_DURATION, explicit_bucket_boundaries_advisory=_BUCKETS
        )
        self._process = meter.create_histogram(
            *_PROCESS_DURATION, explicit_bucket_boundaries_advisory=_BUCKETS
        )
        self._sent = meter.create_counter(*_SENT)
        self._consumed = meter.create_counter(*_CONSUMED)
        self._pending = deque[_Send]()
        #: The oldest unfinished produce at the last ``progress`` (see there).
        self._front: _Send | None = None

    # ------------------------------------------------------------------ attributes

    def _attributes(self, station: str, operation: str, kind: str) -> Attributes:
        host, port = self._client.current_server
        return {
            SYSTEM: "memphis",
            OPERATION_NAME: operation,
            OPERATION_TYPE: kind,
            DESTINATION: station,
            SERVER_ADDRESS: host,
            SERVER_PORT: port,
        }

    def _consumer_attributes(
        self, consumer: ConsumerState, deliveries: Sequence[Delivery], operation: str, kind: str
    ) -> Attributes:
        attributes = self._attributes(consumer.station.name, operation, kind)
        attributes[GROUP] = consumer.options.consumer_group
        partitions = {d.partition for d in deliveries}
        if len(partitions) == 1:
            (partition,) = partitions
            if partition is not None:
                attributes[PARTITION] = str(partition)
        if len(deliveries) == 1:
            msg_id = deliveries[0].msg_id
            if msg_id is not None:
                attributes[MESSAGE_ID] = msg_id
        return attributes

    @staticmethod
    def _links(deliveries: Sequence[Delivery]) -> list[Link]:
        """A link to each message's creation context (its producer's ``send`` span); none
        for a message sent without one (another SDK, the instrumentation off)."""
        links = []
        for delivery in deliveries:
            context = _producer_context(delivery)
            if context is not None:
                links.append(Link(context))
        return links

    # ------------------------------------------------------------------ send

    def producing(
        self, producer: ProducerState, opts: ProduceOptions
    ) -> tuple[ProduceOptions, ProduceWatch]:
        # Never raises into produce(): a span processor or exporter of the application that
        # raises costs the span, not the message (docs/tracing.md).
        try:
            return self._producing(producer, opts)
        except Exception:
            _log.exception(_FAILED, "send")
            return opts, _unwatched

    def _producing(
        self, producer: ProducerState, opts: ProduceOptions
    ) -> tuple[ProduceOptions, ProduceWatch]:
        station = producer.station.name
        attributes = self._attributes(station, "send", "send")
        if opts.msg_id is not None:
            attributes[MESSAGE_ID] = opts.msg_id
        if opts.partition_number is not None:
            attributes[PARTITION] = str(opts.partition_number)
        given = trace_carrier(opts.headers)
        custom = _span_context(given.get("traceparent"), given.get("tracestate"))
        if custom is not None:
            # The caller put a creation context in the headers: the conventions keep it as it
            # is, and the send span, whose context is then not the message's, is a CLIENT span
            # that links to it.
            span = self._tracer.start_span(
                f"send {station}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
                links=[Link(custom)],
            )
        else:
            span = self._tracer.start_span(
                f"send {station}", kind=SpanKind.PRODUCER, attributes=attributes
            )
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
            # A malformed context the caller wrote is replaced by the send span's.
            headers = tuple(h for h in opts.headers if h[0].lower() not in _TRACE_HEADERS)
            opts = dataclasses.replace(opts, headers=headers + tuple(carrier.items()))
        started = _now()

        def watch(op: ProduceOperation | None, error: BaseException | None) -> None:
            if op is not None and not op.done:
                self._pending.append(_Send(op, span, attributes, started))
                return
            try:
                if op is None:
                    # Refused before a byte was written: not a message sent.
                    self._end_send(span, attributes, started, error, sent=False)
                else:
                    self._finish(_Send(op, span, attributes, started))
            except Exception:
                _log.exception(_FAILED, "send")

        return opts, watch

    def progress(self) -> None:
        pending = self._pending
        # PubAcks come back mostly in the order the produces went out (per stream they do):
        # finished ones are taken off the front, so that thousands of async produces in
        # flight cost nothing per read.
        while pending and pending[0].op.done:
            self._finish_logged(pending.popleft())
        if not pending:
            self._front = None
            return
        front = pending[0]
        if front is self._front or len(pending) <= _SCAN_LIMIT:
            # The oldest produce has waited since the last look (a PubAck slow to come, a 503
            # retried): those behind it that finished end now, not when it does, and the queue
            # stays as long as what is in flight.
            waiting = deque[_Send]()
            for send in pending:
                if send.op.done:
                    self._finish_logged(send)
                else:
                    waiting.append(send)
            self._pending = waiting
        self._front = front

    def _finish_logged(self, send: _Send) -> None:
        # Called from the client's event processing: raising there would end the connection.
        try:
            self._finish(send)
        except Exception:
            _log.exception(_FAILED, "send")

    def _finish(self, send: _Send) -> None:
        op = send.op
        if op.error is None:
            # Which partition's stream stored it: the PubAck names the stream,
            # ``<station>$<partition>`` (docs/protocol.md §6.6).
            stream = op.outcome().stream
            _, dollar, partition = stream.rpartition("$")
            if dollar and partition.isdigit():
                send.attributes[PARTITION] = partition
                send.span.set_attribute(PARTITION, partition)
        self._end_send(send.span, send.attributes, send.started, op.error, sent=True)

    def _end_send(
        self,
        span: Span,
        attributes: Attributes,
        started: float,
        error: BaseException | None,
        *,
        sent: bool,
    ) -> None:
        if error is not None:
            _fail(span, attributes, error)
        span.end()
        metric = _metric_attributes(attributes)
        self._duration.record(_now() - started, metric)
        if sent:
            # The conventions count the messages the producer tried to send to the broker.
            self._sent.add(1, metric)

    # ------------------------------------------------------------------ receive

    def received(
        self,
        consumer: ConsumerState,
        deliveries: Sequence[Delivery],
        started: int,
        error: BaseException | None = None,
        *,
        batch: bool = True,
    ) -> None:
        try:
            self._received(consumer, deliveries, started, error, batch)
        except Exception:
            _log.exception(_FAILED, "receive")

    def _received(
        self,
        consumer: ConsumerState,
        deliveries: Sequence[Delivery],
        started: int,
        error: BaseException | None,
        batch: bool,
    ) -> None:
        attributes = self._consumer_attributes(consumer, deliveries, "receive", "receive")
        # The conventions: the count on spans of batch APIs (fetch, a consume turn), zero and
        # one included; not on those of single-message ones (a step of ``for`` / ``async for``).
        if batch:
            attributes[BATCH_COUNT] = len(deliveries)
        span = self._tracer.start_span(
            f"receive {consumer.station.name}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=self._links(deliveries),
            start_time=started,
        )
        if error is not None:
            _fail(span, attributes, error)
        span.end()
        metric = _metric_attributes(attributes)
        self._duration.record((time.time_ns() - started) / 1e9, metric)
        if deliveries:
            self._consumed.add(len(deliveries), metric)

    # ------------------------------------------------------------------ process

    @contextmanager
    def processing(self, consumer: ConsumerState, deliveries: Sequence[Delivery]) -> Iterator[None]:
        with _measured("process", lambda: self._process_scope(consumer, deliveries)):
            yield

    def _process_scope(self, consumer: ConsumerState, deliveries: Sequence[Delivery]) -> _Scope:
        attributes = self._consumer_attributes(consumer, deliveries, "process", "process")
        attributes[BATCH_COUNT] = len(deliveries)  # the handler takes a list: a batch API
        links = self._links(deliveries)
        # One message: its producer's context is the parent, so the producer's trace goes on
        # through the handler (and its settles). A batch has several: links only. Nor when
        # the handler runs inside a span of the application (a consume loop started in one):
        # the conventions advise against taking the parent from the message then, so that
        # span stays the parent and the producer's is linked.
        parent = None
        if len(deliveries) == 1 and not trace.get_current_span().get_span_context().is_valid:
            parent = _producer_context(deliveries[0])
        context = None
        if parent is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        span = self._tracer.start_span(
            f"process {consumer.station.name}",
            context,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        return _Scope(span, attributes, self._process, current=True)

    # ------------------------------------------------------------------ settle

    @contextmanager
    def settling(self, delivery: Delivery, how: str) -> Iterator[None]:
        with _measured("settle", lambda: self._settle_scope(delivery, how)):
            yield

    def _settle_scope(self, delivery: Delivery, how: str) -> _Scope:
        deliveries = (delivery,)
        attributes = self._consumer_attributes(delivery.consumer, deliveries, how, "settle")
        span = self._tracer.start_span(
            # The conventions' span name, ``{messaging.operation.name} {destination}``: the
            # settle's own name (``ack orders``), its type ``settle`` an attribute.
            f"{how} {delivery.consumer.station.name}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=self._links(deliveries),
        )
        return _Scope(span, attributes, self._duration, current=False)


def _unwatched(op: ProduceOperation | None, error: BaseException | None) -> None:
    """The watch of a produce whose span could not be started: nothing to end."""


class _Scope:
    """A span around a block (a handler call, a settle), measured by ``histogram``."""

    __slots__ = ("attributes", "histogram", "span", "started", "token")

    def __init__(
        self, span: Span, attributes: Attributes, histogram: Histogram, *, current: bool
    ) -> None:
        self.span = span
        self.attributes = attributes
        self.histogram = histogram
        self.started = _now()
        # The span is current in the block when ``current`` (the handler's own spans and its
        # settles become its children).
        self.token = otel_context.attach(trace.set_span_in_context(span)) if current else None

    def end(self, error: BaseException | None) -> None:
        if self.token is not None:
            otel_context.detach(self.token)
        if error is not None:
            _fail(self.span, self.attributes, error)
        self.span.end()
        self.histogram.record(_now() - self.started, _metric_attributes(self.attributes))


@contextmanager
def _measured(what: str, start: Callable[[], _Scope]) -> Iterator[None]:
    """Run the block inside the scope ``start`` makes, then end it; an exception leaving the
    block marks the span and the metric with its type and goes on unchanged. The
    instrumentation's own failures are logged, never raised: the block runs exactly once
    whatever the application's tracer or meter does."""
    try:
        scope: _Scope | None = start()
    except Exception:
        _log.exception(_FAILED, what)
        scope = None
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        if scope is not None:
            try:
                scope.end(error)
            except Exception:
                _log.exception(_FAILED, what)


def _metric_attributes(attributes: Attributes) -> Attributes:
    return {k: v for k, v in attributes.items() if k not in _SPAN_ONLY}


def _fail(span: Span, attributes: Attributes, error: BaseException) -> None:
    """Mark ``span`` (and the metrics' ``attributes``) with ``error``, per the conventions:
    status ERROR, ``error.type`` the exception's class, the exception recorded."""
    attributes[ERROR_TYPE] = type(error).__qualname__
    span.set_attribute(ERROR_TYPE, type(error).__qualname__)
    span.record_exception(error)
    span.set_status(StatusCode.ERROR, str(error))


def _producer_context(delivery: Delivery) -> trace.SpanContext | None:
    """The span context a message's ``traceparent`` header carries, or None (no header, or a
    malformed one: the consumer's spans are then made without it)."""
    headers = delivery.msg.headers
    if headers is None:
        return None
    carrier = trace_carrier(headers.items())
    return _span_context(carrier.get("traceparent"), carrier.get("tracestate"))


def _span_context(traceparent: str | None, tracestate: str | None) -> trace.SpanContext | None:
    """The span context W3C ``traceparent`` / ``tracestate`` values carry, or None (none, or
    malformed)."""
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    context = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    return context if context.is_valid else None
