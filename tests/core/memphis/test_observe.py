"""The facts ``Client`` reports to an observer (``memphis_core/memphis/_observe.py``), bytes in
and facts out: what tracing (docs/tracing.md) is built on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from memphis_core import (
    ConsumerState,
    Delivery,
    LocalProtocolError,
    MessageAlreadySettledError,
    ProducerState,
    produce_options,
)
from memphis_core.memphis._observe import Observer, ProduceWatch
from memphis_core.memphis._options import ProduceOptions
from memphis_core.memphis._producers import ProduceOperation
from tests.support.scripted_broker import Script, connected, consumer, producer, pull_request


class Recorder:
    """An observer that writes down every fact, and adds a header to every produce."""

    def __init__(self) -> None:
        self.facts: list[tuple[str, object]] = []
        self.pending: list[ProduceOperation] = []

    def producing(
        self, producer: ProducerState, opts: ProduceOptions
    ) -> tuple[ProduceOptions, ProduceWatch]:
        self.facts.append(("producing", producer.name))

        def watch(op: ProduceOperation | None, error: BaseException | None) -> None:
            self.facts.append(("watch", None if error is None else type(error).__name__))
            if op is not None:
                self.pending.append(op)

        return dataclasses.replace(opts, headers=(*opts.headers, ("traceparent", "tp"))), watch

    def progress(self) -> None:
        for op in [op for op in self.pending if op.done]:
            self.facts.append(("done", op.error is None))
            self.pending.remove(op)

    @contextmanager
    def settling(self, delivery: Delivery, how: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.facts.append((how, type(exc).__name__))
            raise
        self.facts.append((how, delivery.sequence_number))

    def received(
        self,
        consumer: ConsumerState,
        deliveries: Sequence[Delivery],
        started: int,
        error: BaseException | None = None,
        *,
        batch: bool = True,
    ) -> None:
        raise AssertionError("reported by the frontends, not by the client")

    @contextmanager
    def processing(self, consumer: ConsumerState, deliveries: Sequence[Delivery]) -> Iterator[None]:
        raise AssertionError("reported by the frontends, not by the client")
        yield


def _observed() -> tuple[Script, Recorder]:
    script = connected()
    recorder = Recorder()
    observer: Observer = recorder
    script.client.observer = observer
    return script, recorder


def test_a_produce_is_reported_before_it_is_encoded_and_again_when_its_puback_arrives() -> None:
    script, recorder = _observed()
    prod = producer(script)
    script.take()
    op = script.client.produce(prod, b"x", produce_options(headers={"k": "v"}), script.now)
    sent = script.one("HPUB")
    assert sent.headers is not None
    assert sent.headers.get("traceparent") == "tp"  # the observer's header went out
    assert sent.headers.get("k") == "v"
    assert recorder.facts == [("producing", "web"), ("watch", None)]
    script.reply(sent, {"stream": "orders$1", "seq": 1})
    assert op.done
    assert recorder.facts[-1] == ("done", True)


def test_a_produce_refused_before_sending_is_reported_with_its_error() -> None:
    script, recorder = _observed()
    prod = producer(script)
    script.take()
    with pytest.raises(LocalProtocolError):
        script.client.produce(prod, b"x", produce_options(partition_number=9), script.now)
    assert recorder.facts == [("producing", "web"), ("watch", "LocalProtocolError")]
    assert script.take() == []


def test_a_failed_puback_is_reported_when_it_fails() -> None:
    script, recorder = _observed()
    prod = producer(script)
    script.take()
    script.client.produce(prod, b"x", produce_options(ack_wait=1.0), script.now)
    script.advance(1.1)
    assert recorder.facts[-1] == ("done", False)


def test_settles_are_reported_with_their_outcome() -> None:
    script, recorder = _observed()
    state = consumer(script, batch_size=3)
    op = script.client.fetch(state, 3, script.now, partition_number=1)
    pull = pull_request(script)
    for seq in (3, 4, 5):
        script.deliver(pull, "orders$1", "billing", seq, b"m", pending=5 - seq)
    first, second, third = op.outcome()
    script.client.ack(first)
    script.client.delay(second, 1.0)
    with pytest.raises(MessageAlreadySettledError):
        script.client.nack(first)
    script.client.dead_letter(third, "bad")
    assert recorder.facts == [
        ("ack", 3),
        ("delay", 4),
        ("nack", "MessageAlreadySettledError"),
        ("dead_letter", 5),
    ]


def test_delivered_trace_context_is_hidden_from_the_application() -> None:
    from memphis_core.memphis._names import is_shown_header, is_user_header

    for key in ("traceparent", "tracestate", "TraceParent"):
        assert is_user_header(key), "a producer may still send it by hand"
        assert not is_shown_header(key)
    assert is_shown_header("k")
    assert not is_shown_header("$memphis_producedBy")
