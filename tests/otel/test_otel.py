"""Spans and metrics of ``_memphis_io/_otel.py`` (docs/tracing.md), on the three frontends,
against the real broker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.otel.conftest import Recorded
from tests.support.probe import destroy_elsewhere


def _one(otel: Recorded, name: str) -> ReadableSpan:
    spans = otel.spans(name)
    assert len(spans) == 1, [s.name for s in otel.spans()]
    return spans[0]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _settles(otel: Recorded) -> list[ReadableSpan]:
    return [s for s in otel.spans() if _attrs(s)["messaging.operation.type"] == "settle"]


def test_a_sync_produce_is_a_send_span_ended_by_its_puback(
    conn: Any, otel: Recorded, station: str, broker: Any
) -> None:
    producer = conn.create_station(station, partitions_number=2).create_producer("p")
    ack = producer.produce(b"x", msg_id="m-1", partition_number=2)
    span = _one(otel, f"send {station}")
    assert span.kind is SpanKind.PRODUCER
    assert span.status.status_code is StatusCode.UNSET
    assert _attrs(span) == {
        "messaging.system": "memphis",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": station,
        "messaging.destination.partition.id": "2",
        "messaging.message.id": "m-1",
        "server.address": broker.host,
        "server.port": broker.port,
    }
    assert ack.stream.endswith("$2")
    metrics = otel.metrics()
    ((sent_attrs, sent),) = metrics["messaging.client.sent.messages"]
    assert sent.value == 1
    assert "messaging.message.id" not in sent_attrs  # one series per station, not per message
    assert sent_attrs["messaging.destination.partition.id"] == "2"
    ((_, duration),) = metrics["messaging.client.operation.duration"]
    assert duration.count == 1


def test_async_produces_end_their_spans_at_their_pubacks(
    conn: Any, otel: Recorded, station: str
) -> None:
    producer = conn.create_producer(station, "p")
    handles = [producer.produce(b"m%d" % i, async_produce=True) for i in range(5)]
    producer.flush()
    assert all(h.done for h in handles)
    spans = otel.spans(f"send {station}")
    assert len(spans) == 5
    assert {s.status.status_code for s in spans} == {StatusCode.UNSET}
    # Each span has its own context: one per message, each one the parent of its consumers.
    assert len({s.context.span_id for s in spans}) == 5


def test_a_produce_whose_puback_fails_ends_its_span_with_the_error(
    conn: Any, connect: Callable[..., Any], memphis: Any, otel: Recorded, station: str
) -> None:
    producer = conn.create_producer(station, "p")
    producer.produce(b"first")
    destroy_elsewhere(connect, station)
    with pytest.raises(memphis.StationUnreachableError):
        producer.produce(b"lost")
    producer.produce(b"lost too", async_produce=True)
    with pytest.raises(memphis.AsyncProduceError):
        producer.flush()
    first, *failed = otel.spans(f"send {station}")
    assert first.status.status_code is StatusCode.UNSET
    assert len(failed) == 2
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        assert _attrs(span)["error.type"] == "StationUnreachableError"
    errors = [a.get("error.type") for a, _ in otel.metrics()["messaging.client.sent.messages"]]
    assert sorted(map(str, errors)) == ["None", "StationUnreachableError"]


def test_fetch_is_a_receive_span_linked_to_each_producer_and_acks_are_settle_spans(
    conn: Any, otel: Recorded, station: str
) -> None:
    producer = conn.create_producer(station, "p")
    producer.produce(b"a", headers={"k": "v"}, msg_id="id-a")
    producer.produce(b"b")
    send_a, send_b = otel.spans(f"send {station}")
    consumer = conn.create_consumer(station, "c", batch_max_wait_time=1.0)
    batch = consumer.fetch(batch_size=10)
    assert [m.data for m in batch] == [b"a", b"b"]
    # The trace context travels in headers that the application does not see.
    assert batch[0].headers == {"k": "v"}
    assert batch[1].headers == {}
    # ...and that it can read, to continue the trace in spans of its own.
    context = send_a.context
    assert batch[0].trace_context == {
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-"
        f"{context.trace_flags:02x}"
    }
    receive = _one(otel, f"receive {station}")
    assert receive.kind is SpanKind.CLIENT
    attrs = _attrs(receive)
    assert attrs["messaging.operation.type"] == "receive"
    assert attrs["messaging.batch.message_count"] == 2
    assert attrs["messaging.consumer.group.name"] == "c"
    assert attrs["messaging.destination.partition.id"] == "1"
    assert [link.context.span_id for link in receive.links] == [
        send_a.context.span_id,
        send_b.context.span_id,
    ]
    batch[0].ack()
    batch[1].nack()
    again = consumer.fetch(batch_size=1)
    again[0].delay(5.0)
    settles = _settles(otel)
    assert [s.name for s in settles] == [f"ack {station}", f"nack {station}", f"delay {station}"]
    assert [_attrs(s)["messaging.operation.name"] for s in settles] == ["ack", "nack", "delay"]
    assert {s.kind for s in settles} == {SpanKind.CLIENT}
    assert _attrs(settles[0])["messaging.message.id"] == "id-a"
    assert _attrs(settles[0])["messaging.operation.type"] == "settle"
    consumed = otel.metrics()["messaging.client.consumed.messages"]
    assert sum(p.value for _, p in consumed) == 3


def test_a_second_settle_is_a_settle_span_with_its_error(
    conn: Any, memphis: Any, otel: Recorded, station: str
) -> None:
    conn.create_producer(station, "p").produce(b"a")
    (message,) = conn.create_consumer(station, "c", batch_max_wait_time=1.0).fetch()
    message.dead_letter("bad")
    with pytest.raises(memphis.MessageAlreadySettledError):
        message.ack()
    dead, again = _settles(otel)
    assert (dead.name, again.name) == (f"dead_letter {station}", f"ack {station}")
    assert _attrs(dead)["messaging.operation.name"] == "dead_letter"
    assert dead.status.status_code is StatusCode.UNSET
    assert _attrs(again)["error.type"] == "MessageAlreadySettledError"
    assert again.status.status_code is StatusCode.ERROR


def test_consume_makes_a_process_span_current_in_the_handler_and_records_its_error(
    conn: Any, otel: Recorded, station: str
) -> None:
    producer = conn.create_producer(station, "p")
    producer.produce(b"ok")
    producer.produce(b"boom")
    seen: list[tuple[bytes, int]] = []
    done = threading.Event()

    def handler(messages: list[Any], error: Any, context: Any) -> None:
        for message in messages:
            seen.append((message.data, trace.get_current_span().get_span_context().span_id))
            if message.data == b"boom":
                done.set()
                raise RuntimeError("handler failed")
            message.ack()

    consumer = conn.create_consumer(station, "c", batch_size=1, batch_max_wait_time=1.0)
    consumer.consume(handler)
    assert done.wait(20)
    consumer.stop_consume()
    processes = otel.spans(f"process {station}")
    assert len(processes) == 2
    ok, boom = processes
    assert [span_id for _, span_id in seen] == [ok.context.span_id, boom.context.span_id]
    assert ok.kind is SpanKind.CONSUMER
    assert ok.status.status_code is StatusCode.UNSET
    assert boom.status.status_code is StatusCode.ERROR
    assert _attrs(boom)["error.type"] == "RuntimeError"
    # One message per call: the producer's span is the parent, so its trace goes on here.
    sends = otel.spans(f"send {station}")
    assert [p.parent.span_id if p.parent else None for p in processes] == [
        s.context.span_id for s in sends
    ]
    assert [p.context.trace_id for p in processes] == [s.context.trace_id for s in sends]
    receives = otel.spans(f"receive {station}")
    assert [_attrs(r)["messaging.batch.message_count"] for r in receives] == [1, 1]
    # The handler takes a list (a batch API): its count is there for one message too.
    assert [_attrs(p)["messaging.batch.message_count"] for p in processes] == [1, 1]
    durations = otel.metrics()["messaging.process.duration"]
    assert sorted(str(a.get("error.type")) for a, _ in durations) == ["None", "RuntimeError"]


def test_instrument_must_be_a_bool(connect: Callable[..., Any], memphis: Any) -> None:
    with pytest.raises(memphis.LocalProtocolError, match="instrument must be a bool"):
        connect(instrument="yes")


@pytest.mark.parametrize("option", ["tracer_provider", "meter_provider"])
def test_a_provider_must_be_one(connect: Callable[..., Any], memphis: Any, option: str) -> None:
    with pytest.raises(memphis.LocalProtocolError, match=f"{option} must be an OpenTelemetry"):
        connect(**{option: "yes"})
