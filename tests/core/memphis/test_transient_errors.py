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
    Operation,
    ProducerState,
    PubAck,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
    consumer_options,
    produce_options,
    station_options,
)
from memphis_core.memphis._deliveries import consume_should_stop
from tests.support.scripted_broker import (
    CONSUMER_REPLY,
    INFO_OK,
    Script,
    Sent,
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
    # The same record goes again, reply subject included: nothing was stored the first time.
    assert again.reply == first.reply
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
    (failure,) = prod.failures
    assert isinstance(failure.error, StationTemporarilyUnavailableError)


STREAM_NOT_FOUND = {
    "type": "io.nats.jetstream.api.v1.stream_info_response",
    "error": {"code": 404, "err_code": 10059, "description": "stream not found"},
}
STREAM_LEADERLESS = {
    "type": "io.nats.jetstream.api.v1.stream_info_response",
    "error": {
        "code": 503,
        "err_code": 10008,
        "description": "JetStream system temporarily unavailable",
    },
}
STREAM_INFO_OK = {"type": "io.nats.jetstream.api.v1.stream_info_response", "config": {}}


def split(sent: list[Sent]) -> tuple[list[Sent], list[Sent]]:
    """(HPUBs, STREAM.INFO lookups) among what the client wrote."""
    lookups = [s for s in sent if s.subject.startswith("$JS.API.STREAM.INFO.")]
    return [s for s in sent if s.op == "HPUB"], lookups


def produce_until_lookup(script: Script, prod: ProducerState) -> tuple[Operation[PubAck], Sent]:
    """A sync produce answered by a 503: its operation and the STREAM.INFO lookup it started."""
    op = script.client.produce(prod, b"m", produce_options(), script.now)
    script.status(hpubs(script)[0], 503)
    pubs, (lookup,) = split(script.take())
    assert pubs == []  # the resend waits for its backoff
    return op, lookup


def test_produce_503_looks_the_stream_up_once_and_a_gone_station_fails_at_once() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    op = script.client.produce(prod, b"m", produce_options(), script.now)
    (first,) = hpubs(script)
    script.status(first, 503)
    pubs, (lookup,) = split(script.take())
    assert pubs == []  # the resend waits for its backoff
    assert lookup.subject == "$JS.API.STREAM.INFO.orders$1"  # the stream of the produce subject
    script.reply(lookup, STREAM_NOT_FOUND)
    assert op.done  # at once, not after ack_wait
    with pytest.raises(StationUnreachableError, match="'orders'") as caught:
        op.outcome()
    assert not isinstance(caught.value, StationTemporarilyUnavailableError)
    assert prod.in_flight == 0
    assert prod.in_flight_bytes == 0
    assert prod.stale  # create_producer registers again
    script.advance(1.0)
    assert script.take() == []  # the cancelled resend never goes out
    # A produce made after the lookup answered may reach a station created anew under the same
    # name: its 503 is looked up again, and fails once that lookup also finds nothing.
    again, second = produce_until_lookup(script, prod)
    assert not again.done
    script.reply(second, STREAM_NOT_FOUND)
    with pytest.raises(StationUnreachableError):
        again.outcome()


def test_a_station_recreated_after_the_gone_lookup_is_an_election_again() -> None:
    # Destroyed, found gone, then created anew by someone else: a 503 of the new stream's
    # leader election must be retried, not failed as "gone" by what the old lookup said.
    script = connected()
    prod = producer(script)
    script.take()
    old, lookup = produce_until_lookup(script, prod)
    script.reply(lookup, STREAM_NOT_FOUND)
    assert isinstance(old.error, StationUnreachableError)
    op, check = produce_until_lookup(script, prod)
    assert not op.done
    script.reply(check, STREAM_LEADERLESS)
    assert not op.done
    script.advance(0.05)
    (resend,) = hpubs(script)
    script.reply(resend, {"stream": "orders$1", "seq": 1})
    assert op.outcome() is not None


def test_a_lookup_left_unanswered_is_made_again_and_a_gone_station_still_fails_within_3_s() -> None:
    # The first lookup times out (a slow or restarting JetStream API): the produce's next 503
    # asks again, instead of retrying for the whole ack_wait on a station that is gone.
    script = connected()
    prod = producer(script)
    script.take()
    start = script.now
    op, _unanswered = produce_until_lookup(script, prod)
    while not op.done and script.now - start < 3.0:
        script.advance(0.05)
        pubs, lookups = split(script.take())
        for sent in pubs:
            script.status(sent, 503)
        for lookup in lookups:
            script.reply(lookup, STREAM_NOT_FOUND)
    assert isinstance(op.error, StationUnreachableError)


@pytest.mark.parametrize(
    "answer", [STREAM_INFO_OK, STREAM_LEADERLESS], ids=["exists", "leaderless"]
)
def test_produce_503_with_the_stream_still_there_is_an_election(answer: object) -> None:
    script = connected()
    prod = producer(script)
    script.take()
    op, lookup = produce_until_lookup(script, prod)
    script.reply(lookup, answer)  # type: ignore[arg-type]
    assert not op.done
    script.advance(0.05)
    (resend,) = hpubs(script)
    script.status(resend, 503)
    script.advance(0.1)
    pubs, lookups = split(script.take())
    assert lookups == []  # looked up once, after the first 503 only
    script.reply(pubs[0], {"stream": "orders$1", "seq": 3})
    assert op.outcome() is not None
    assert not prod.gone_through


def test_a_window_of_async_503s_looks_the_stream_up_once() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    opts = produce_options(async_produce=True)
    ops = [script.client.produce(prod, b"m", opts, script.now) for _ in range(20)]
    for sent in hpubs(script):
        script.status(sent, 503)
    _, lookups = split(script.take())
    assert len(lookups) == 1
    script.reply(lookups[0], STREAM_NOT_FOUND)
    # The produce that asked fails at once; the others at their next 503, within the first
    # backoff step, not after ack_wait.
    script.advance(0.05)
    for sent in hpubs(script):
        script.status(sent, 503)
    assert all(op.done for op in ops)
    error = prod.take_failures()
    assert error is not None
    assert error.count == 20
    assert all(isinstance(f.error, StationUnreachableError) for f in error.failures)
    assert sorted(f.position for f in error.failures) == list(range(1, 21))
    assert prod.in_flight == 0


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
    # The fetch hears it at once, without waiting for the retry already scheduled: that retry
    # is dropped, and nothing more is sent for the pull.
    with pytest.raises(StationUnreachableError):
        op.outcome()
    assert consume_should_stop(op.error)
    script.advance(1.0)
    assert not [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")]


def test_abandoning_a_fetch_that_waits_to_retry_sends_nothing_more() -> None:
    script = connected()
    state = consumer(script)
    requests = script.client.session._requests
    before = len(requests)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.status(pull_request(script), 503)
    for check in infos(script):
        script.reply(check, INFO_OK)
    script.client.abandon_fetch(op)
    assert op.outcome() == []
    script.advance(1.0)
    assert not [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")]
    assert len(requests) == before  # the pull (and its handler) is not kept forever


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
