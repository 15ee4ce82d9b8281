"""Leader elections: transient JetStream errors are retried within the call's own deadline.

During an election a JetStream cluster answers 503 (no responders) for a few seconds; a produce,
a pull and a durable lookup retry with backoff, and only "not found" means a station is gone
(docs/cluster-client.md). Played against the scripted broker: bytes in, events out.
"""

from __future__ import annotations

import pytest

from memphis_core import (
    ConsumerState,
    MemphisError,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
    consume_should_stop,
    consumer_options,
    produce_options,
    station_options,
)

from .scripted_broker import Script, Sent
from .test_client import (
    CONSUMER_REPLY,
    INFO_OK,
    connected,
    consumer,
    producer,
    pull_request,
)


def hpubs(script: Script) -> list[Sent]:
    return [s for s in script.take() if s.op == "HPUB"]


def infos(script: Script) -> list[Sent]:
    return [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.INFO.")]


# ------------------------------------------------------------------------------ produce


def test_produce_503_is_retried_with_the_same_bytes_until_acknowledged() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    op = script.client.produce(prod, b"m", produce_options(msg_id="id-1"), script.now)
    (first,) = hpubs(script)
    script.status(first, 503)
    assert not op.done
    assert prod.in_flight == 1  # still in flight while it waits to be resent
    assert hpubs(script) == []  # not resent at once: backoff
    script.advance(0.05)
    (again,) = hpubs(script)
    assert (again.subject, again.payload, again.headers) == (
        first.subject,
        first.payload,
        first.headers,
    )
    assert again.reply != first.reply  # a new token
    script.status(again, 503)
    script.advance(0.05)
    assert hpubs(script) == []  # the backoff doubles
    script.advance(0.05)
    (third,) = hpubs(script)
    script.reply(third, {"stream": "orders$1", "seq": 7})
    ack = op.outcome()
    assert ack is not None
    assert ack.sequence == 7
    assert prod.in_flight == 0


def test_produce_503_until_ack_wait_fails_as_temporarily_unavailable() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    op = script.client.produce(prod, b"m", produce_options(ack_wait=1.0), script.now)
    sends = 0
    while not op.done:
        for sent in hpubs(script):
            sends += 1
            script.status(sent, 503)
        if not op.done:
            script.advance(0.05)
        assert script.now < 2.0
    assert sends > 3
    with pytest.raises(StationTemporarilyUnavailableError) as caught:
        op.outcome()
    assert not isinstance(caught.value, StationUnreachableError)
    assert prod.in_flight == 0
    assert script.now <= 1.0


def test_async_produce_failure_is_kept_for_flush() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    opts = produce_options(async_produce=True, ack_wait=0.1)
    op = script.client.produce(prod, b"m", opts, script.now)
    for _ in range(10):
        for sent in hpubs(script):
            script.status(sent, 503)
        script.advance(0.05)
    assert op.done
    assert isinstance(prod.first_error, StationTemporarilyUnavailableError)


# ------------------------------------------------------------------------------ pulls


def test_pull_503_is_retried_within_batch_max_wait_time() -> None:
    script = connected()
    state = consumer(script, batch_max_wait_time=5.0)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.status(pull_request(script), 503)
    for check in infos(script):
        script.reply(check, INFO_OK)
    assert not op.done
    script.advance(0.05)
    retry = pull_request(script)
    assert retry.json() == {"batch": 10, "expires": pytest.approx(4_950_000_000, rel=0.01)}
    script.deliver(retry, "orders$1", "billing", 3, b"after the election")
    script.status(retry, 408, "Request Timeout")
    (message,) = op.outcome()
    assert message.data == b"after the election"
    assert not state.unreachable


def test_pull_503_past_the_deadline_is_temporary_and_does_not_stop_consume() -> None:
    script = connected()
    state = consumer(script, batch_max_wait_time=0.5)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.status(pull_request(script), 503)
    for check in infos(script):
        script.status(check, 503)  # the lookup gets no answer either: an election
    while not op.done:
        script.advance(0.05)
        for sent in script.take():
            if sent.subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
                script.status(sent, 503)
        assert script.now < 1.0
    with pytest.raises(StationTemporarilyUnavailableError) as caught:
        op.outcome()
    assert not consume_should_stop(caught.value)
    assert not state.unreachable
    # The consume loop's next fetch pulls again.
    script.client.fetch(state, 10, script.now, partition_number=1)
    pull_request(script)


def test_pull_503_with_the_durable_gone_is_unreachable() -> None:
    script = connected()
    state = consumer(script)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.status(pull_request(script), 503)
    checks = infos(script)
    script.reply(checks[0], {"error": {"code": 404, "description": "consumer not found"}})
    assert state.unreachable
    script.advance(0.05)
    script.status(pull_request(script), 503)  # the retry already scheduled: 503 again
    with pytest.raises(StationUnreachableError):
        op.outcome()
    assert consume_should_stop(op.error)


def test_abandoning_a_fetch_that_waits_to_retry_sends_nothing_more() -> None:
    script = connected()
    state = consumer(script)
    handlers = script.client._dispatcher._handlers
    before = set(handlers)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.status(pull_request(script), 503)
    for check in infos(script):
        script.reply(check, INFO_OK)
    script.client.abandon_fetch(op)
    assert op.outcome() == []
    script.advance(1.0)
    assert not [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")]
    assert set(handlers) == before  # the pull's handler is not kept forever


# ------------------------------------------------------------------------------ lookups


def create(script: Script) -> tuple[object, list[Sent]]:
    op = script.client.create_consumer(consumer_options("orders", "billing"), script.now)
    script.reply(script.one("PUB", "$memphis_consumer_creations"), CONSUMER_REPLY)
    return op, infos(script)


@pytest.mark.parametrize(
    "answer", ["status", {"error": {"code": 503, "description": "JetStream system temporarily"}}]
)
def test_durable_lookup_at_creation_retries_a_503(answer: object) -> None:
    script = connected()
    op, checks = create(script)
    for check in checks:
        if answer == "status":
            script.status(check, 503)
        else:
            script.reply(check, answer)  # type: ignore[arg-type]
    assert not op.done  # type: ignore[attr-defined]
    script.advance(0.05)
    for check in infos(script):
        script.reply(check, {"type": "io.nats.jetstream.api.v1.consumer_info_response"})
    assert isinstance(op.outcome(), ConsumerState)  # type: ignore[attr-defined]


def test_durable_lookup_not_found_fails_creation_at_once() -> None:
    script = connected()
    op, checks = create(script)
    script.reply(checks[0], {"error": {"code": 404, "description": "consumer not found"}})
    with pytest.raises(MemphisError, match="consumer not found"):
        op.outcome()  # type: ignore[attr-defined]


def test_create_consumer_after_a_retried_control_request() -> None:
    # The lookups are timed from the reply, not from the call: the control request was
    # retried after 20 s, so the call's own time is stale by then.
    script = connected()
    op = script.client.create_consumer(consumer_options("orders", "billing"), script.now)
    script.one("PUB", "$memphis_consumer_creations")
    script.advance(20.0)  # the first attempt timed out; a retry goes out
    retry = script.one("PUB", "$memphis_consumer_creations")
    script.advance(1.0)
    script.reply(retry, CONSUMER_REPLY)
    checks = infos(script)
    assert len(checks) == 2
    script.advance(0.001)  # any timer turn: the lookups must not be overdue already
    assert not op.done
    for check in checks:
        script.reply(check, {"type": "io.nats.jetstream.api.v1.consumer_info_response"})
    assert isinstance(op.outcome(), ConsumerState)


def test_station_create_is_unchanged_by_the_retry_policy() -> None:
    # Control-plane requests keep their own policy (retry on timeout only).
    script = connected()
    op = script.client.create_station(station_options("s"), script.now)
    script.no_streams()
    script.status(script.one("PUB", "$memphis_station_creations"), 503)
    assert op.done
    with pytest.raises(MemphisError):
        op.outcome()
