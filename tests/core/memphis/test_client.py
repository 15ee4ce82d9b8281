"""The Memphis Client, bytes in and events out, against a scripted broker (no network).

Each test plays the server: it reads what the client wrote and answers with the bytes
nats-server and the Memphis control plane would send. Together they walk every reply handler
(control requests with their retry, PubAcks, pulls, prefetch, abandoned pulls, durable checks)
and the reconnect replay.
"""

from __future__ import annotations

import json

import pytest

from memphis_core import (
    Client,
    Closed,
    CloseIncompleteError,
    Connected,
    ConnectionClosedError,
    ConsumerError,
    ControlRetry,
    Delivery,
    Disconnected,
    LocalProtocolError,
    MemphisError,
    Operation,
    PubAck,
    ReconnectDue,
    RequestTimeoutError,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
    consumer_options,
    produce_options,
    producer_options,
    station_options,
)
from tests.support.scripted_broker import (
    CONSUMER_REPLY,
    INFO,
    INFO_OK,
    PRODUCER_REPLY,
    Script,
    connected,
    consumer,
    producer,
    pull_request,
)
from tests.support.wire_vectors import server_info


def connect_fields_of(script: Script) -> dict[str, object]:
    """The CONNECT JSON of the handshake ``script`` just started."""
    script.client.connection_made(script.now)
    script.feed(server_info(INFO))
    (connect,) = [s for s in script.take() if s.op == "CONNECT"]
    return connect.fields


def test_the_connect_name_carries_the_connection_id_and_username() -> None:
    # How the Memphis broker learns our connection id (docs/protocol.md §1.3).
    fields = connect_fields_of(Script())
    assert fields["name"] == "cid::root"
    assert fields["auth_token"] == "memphis"
    assert "user" not in fields


def test_password_mode_sends_the_account_user_then_falls_back_to_the_bare_username() -> None:
    script = Script(connection_token=None, password="pw", account_id=7)
    fields = connect_fields_of(script)
    assert (fields["user"], fields["pass"]) == ("root$7", "pw")
    script.feed(b"-ERR 'Authorization Violation'\r\n")
    script.advance(0.0)  # the retry is due at once
    fields = connect_fields_of(script)
    assert (fields["user"], fields["pass"]) == ("root", "pw")


# ------------------------------------------------------------------------------ control plane


def test_create_station_sends_the_reference_body_and_succeeds_on_empty_reply() -> None:
    script = connected()
    op = script.client.create_station(station_options("orders", partitions_number=2), 0.0)
    script.no_streams()
    request = script.one("PUB", "$memphis_station_creations")
    body = request.json()
    assert isinstance(body, dict)
    assert body["name"] == "orders"
    assert body["partitions_number"] == 2
    assert body["username"] == "root"
    assert not op.done
    script.reply(request, b"")
    assert op.done
    assert op.outcome() == ()  # a new station: nothing differs


def test_control_error_reply_fails_the_operation_with_its_text() -> None:
    script = connected()
    op = script.client.enforce_schema("s", "orders", 0.0)
    script.reply(script.one("PUB", "$memphis_schema_attachments"), "Schema s does not exist")
    with pytest.raises(MemphisError, match=r"^Schema s does not exist$"):
        op.outcome()


def test_control_request_is_retried_on_timeout_then_succeeds() -> None:
    script = connected()
    op = script.client.create_station(station_options("orders"), script.now)
    script.no_streams()
    first = script.one("PUB", "$memphis_station_creations")
    script.advance(20.0)  # one attempt's timeout
    again = script.one("PUB", "$memphis_station_creations")
    retries = [e for e in script.events() if isinstance(e, ControlRetry)]
    assert [(r.what, r.attempt) for r in retries] == [("create_station", 2)]  # frontends log it
    assert again.payload == first.payload
    assert again.reply != first.reply  # a new token: a late first reply is not mistaken
    script.reply(first, b"late answer to a dead token")
    assert not op.done
    script.reply(again, b"")
    assert op.outcome() == ()


def test_control_request_gives_up_after_five_retries() -> None:
    script = connected()
    op = script.client.create_station(station_options("orders"), script.now)
    attempts = 0
    while not op.done:
        attempts += len([s for s in script.take() if s.subject == "$memphis_station_creations"])
        script.advance(20.0)
    assert attempts == 6
    # Field report: "RequestTimeoutError: memphis: timeout" could have been any call.
    with pytest.raises(RequestTimeoutError, match=r"^create_station: no reply on .* 6 attempt"):
        op.outcome()


def test_flush_completes_on_its_pong() -> None:
    script = connected()
    op = script.client.ping()
    assert [s.op for s in script.take()] == ["PING"]
    assert not op.done
    script.feed(b"PONG\r\n")
    assert op.outcome() is None


# ------------------------------------------------------------------------------ producers


def test_create_producer_follows_schema_updates_and_is_cached() -> None:
    script = connected()
    first = producer(script)
    assert first.station.partitions == (1, 2)
    assert script.one("SUB", "$memphis_schema_updates_orders").queue is None
    again = script.client.create_producer(producer_options("orders", "web"), script.now)
    assert again.done, "a cached producer needs no request"
    assert again.outcome() is first
    assert script.take() == []


def test_sync_produce_headers_partition_and_puback() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    opts = produce_options(msg_id="m-1", headers={"k": "v"}, partition_number=2)
    op = script.client.produce(prod, b"hello", opts, script.now)
    sent = script.one("HPUB")
    assert sent.subject == "orders$2.final"
    assert sent.payload == b"hello"
    assert sent.headers is not None
    assert sent.headers.get("$memphis_connectionId") == "cid"
    assert sent.headers.get("$memphis_producedBy") == "web"
    assert sent.headers.get("msg-id") == sent.headers.get("Nats-Msg-Id") == "m-1"
    assert sent.headers.get("k") == "v"
    assert prod.in_flight == 1
    script.reply(sent, {"stream": "orders$2", "seq": 7, "duplicate": False})
    assert op.outcome() == PubAck("orders$2", 7, False)
    assert prod.in_flight == 0


def test_produce_round_robins_over_partitions() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    for _ in range(3):
        script.client.produce(prod, b"x", produce_options(async_produce=True), script.now)
    assert [s.subject for s in script.take()] == [
        "orders$1.final",
        "orders$2.final",
        "orders$1.final",
    ]


def test_async_window_fills_and_drains_and_keeps_the_first_failure() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    prod.window = 4
    opts = produce_options(async_produce=True)
    ops = [script.client.produce(prod, b"x", opts, script.now) for _ in range(4)]
    assert prod.window_full
    sent = [s for s in script.take() if s.op == "HPUB"]
    script.reply(sent[0], {"error": {"code": 503, "description": "stream offline"}})
    assert not prod.window_full
    assert not prod.window_drained  # three of four still in flight: not half free yet
    script.reply(sent[1], {"stream": "orders$1", "seq": 1})
    assert prod.window_drained
    assert "stream offline" in str(prod.failures[0].error)
    with pytest.raises(MemphisError):
        ops[0].outcome()
    # An async produce's PubAck is decoded only when asked for.
    assert ops[1].outcome() == PubAck("orders$1", 1, False)


def test_produce_times_out_after_ack_wait_and_frees_the_window() -> None:
    script = connected()
    prod = producer(script)
    op = script.client.produce(prod, b"x", produce_options(ack_wait=2.0), script.now)
    script.advance(1.9)
    assert not op.done
    script.advance(0.2)
    with pytest.raises(RequestTimeoutError):
        op.outcome()
    assert prod.in_flight == 0
    assert prod.in_flight_bytes == 0


def test_destroyed_producer_refuses_to_produce_before_sending() -> None:
    script = connected()
    prod = producer(script)
    op = script.client.destroy_producer(prod, script.now)
    script.reply(script.one("PUB", "$memphis_producer_destructions"), b"")
    assert op.outcome() is None
    # The station's schema subscription goes with its last user.
    assert [s.op for s in script.take()] == ["UNSUB"]
    with pytest.raises(LocalProtocolError, match="destroyed"):
        script.client.produce(prod, b"x", produce_options(), script.now)
    assert script.take() == []


# ------------------------------------------------------------------------------ consumers


def test_create_consumer_checks_every_durable_then_subscribes_to_dls() -> None:
    script = connected()
    state = consumer(script)
    dls = script.one("SUB", "$memphis_dls_orders.billing")
    assert dls.queue == "$memphis_dls_orders.billing"  # one member of the group gets a resend
    assert state.durable == "billing"


def test_create_consumer_fails_when_a_durable_is_missing_and_undoes_the_station() -> None:
    script = connected()
    opts = consumer_options("orders", "billing")
    op = script.client.create_consumer(opts, script.now)
    script.reply(script.one("PUB", "$memphis_consumer_creations"), CONSUMER_REPLY)
    infos = [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.INFO.")]
    script.reply(infos[0], INFO_OK)
    script.reply(infos[1], {"error": {"code": 404, "description": "consumer not found"}})
    with pytest.raises(MemphisError, match="consumer not found"):
        op.outcome()
    assert [s.op for s in script.take()] == ["UNSUB"]  # the schema-updates subscription


def test_fetch_pulls_collects_until_the_server_ends_the_pull_and_acks() -> None:
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=2.0)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    pull = pull_request(script)
    assert pull.subject == "$JS.API.CONSUMER.MSG.NEXT.orders$1.billing"
    assert pull.json() == {"batch": 10, "expires": 2_000_000_000}
    # The server says more wait behind each (``pending``): the fetch waits for them.
    acks = [script.deliver(pull, "orders$1", "billing", seq, b"m%d" % seq, 3) for seq in (5, 6)]
    assert not op.done
    script.status(pull, 404, "No Messages")
    batch = op.outcome()
    assert [(m.data, m.sequence_number, m.partition) for m in batch] == [
        (b"m5", 5, 1),
        (b"m6", 6, 1),
    ]
    assert batch[0].headers == {"user": "v"}  # $memphis* headers are hidden
    assert [s.op for s in script.take()] == ["UNSUB"]  # the pull's inbox is dropped
    script.client.ack(batch[0])
    script.client.nack(batch[1])
    sent = script.take()
    assert [(s.subject, s.payload) for s in sent] == [(acks[0], b"+ACK"), (acks[1], b"-NAK")]


def test_full_batch_ends_the_pull_and_prefetch_starts_the_next() -> None:
    script = connected()
    state = consumer(script, batch_size=2)
    op = script.client.fetch(state, 2, script.now, partition_number=2, prefetch=True)
    pull = pull_request(script)
    script.deliver(pull, "orders$2", "billing", 1, b"a", pending=1)
    script.deliver(pull, "orders$2", "billing", 2, b"b")
    assert [m.data for m in op.outcome()] == [b"a", b"b"]
    prefetch = pull_request(script)  # started as soon as the batch was complete
    assert prefetch.subject.endswith("orders$2.billing")
    script.deliver(prefetch, "orders$2", "billing", 3, b"c")
    script.status(prefetch, 408, "Request Timeout")
    assert not script.client._pulls.reader(state).pulls
    nxt = script.client.fetch(state, 2, script.now, partition_number=2)
    assert nxt.done, "the prefetched batch is served without a new pull"
    assert [m.data for m in nxt.outcome()] == [b"c"]


def test_fetch_waits_for_a_prefetch_in_flight_instead_of_pulling_twice() -> None:
    script = connected()
    state = consumer(script, batch_size=1)
    first = script.client.fetch(state, 1, script.now, partition_number=1, prefetch=True)
    script.deliver(pull_request(script), "orders$1", "billing", 1, b"a")
    assert first.done
    prefetch = pull_request(script)
    second = script.client.fetch(state, 1, script.now, partition_number=1)
    assert not second.done
    assert script.take() == []  # no second pull on the same durable
    script.deliver(prefetch, "orders$1", "billing", 2, b"b")
    assert [m.data for m in second.outcome()] == [b"b"]


def test_an_eager_fetch_ends_with_each_read_and_the_pull_goes_on_for_the_next() -> None:
    # The consume loop's and an iteration's fetch: a message that arrives alone is handed over
    # at the end of its read, not when the batch is full or the pull expires.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=30.0)
    client = script.client
    op = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    pull = pull_request(script)
    one_read = b"".join(script.delivery(pull, "orders$1", "billing", n, b"m%d" % n) for n in (1, 2))
    script.feed(one_read)
    assert [m.data for m in op.outcome()] == [b"m1", b"m2"]  # the whole read, in one batch
    # The pull goes on for the consumer: the next fetch waits on it and sends no second pull.
    nxt = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    assert not nxt.done
    assert script.take() == []
    script.deliver(pull, "orders$1", "billing", 3, b"m3")
    assert [m.data for m in nxt.outcome()] == [b"m3"]
    # What arrives with nobody waiting is kept for the next fetch.
    script.deliver(pull, "orders$1", "billing", 4, b"m4")
    script.status(pull, 408, "Request Timeout")
    assert not script.client._pulls.reader(state).pulls
    kept = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    assert [m.data for m in kept.outcome()] == [b"m4"]
    # The server counted 4 of the batch of 10 against this pull; a new pull asks for 10 again.
    client.fetch(state, 10, script.now, partition_number=1, eager=True)
    assert pull_request(script).json() == {"batch": 10, "expires": 30_000_000_000}


def test_a_plain_fetch_still_waits_for_the_batch_or_the_end_of_the_pull() -> None:
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=30.0)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"m1", pending=1)
    assert not op.done, "one more is waiting on the server"
    script.status(pull, 408, "Request Timeout")
    assert [m.data for m in op.outcome()] == [b"m1"]


def test_an_eager_fetch_counts_what_it_handed_over_against_the_batch() -> None:
    # The server ends the pull after ``batch`` messages in all: the last one completes it even
    # when earlier ones were handed over already.
    script = connected()
    state = consumer(script, batch_size=2, batch_max_wait_time=30.0)
    client = script.client
    first = client.fetch(state, 2, script.now, partition_number=1, eager=True)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a")
    assert [m.data for m in first.outcome()] == [b"a"]
    second = client.fetch(state, 2, script.now, partition_number=1, eager=True)
    script.deliver(pull, "orders$1", "billing", 2, b"b")
    assert [m.data for m in second.outcome()] == [b"b"]
    # The pull is over (the batch is full on the server too): its inbox goes, and the next
    # pull starts at once, while the reader works on b.
    sent = script.take()
    assert sent[0].op == "UNSUB"
    assert [s.json() for s in sent if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")] == [
        {"batch": 2, "expires": 30_000_000_000}
    ]


def test_the_eager_reader_leaving_ends_the_pull_that_went_on_for_it() -> None:
    # A stopped consume loop must not keep taking messages into a store nobody reads, while
    # other members of the group could have them.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=30.0)
    client = script.client
    op = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a")
    assert op.done
    client.end_eager_pull(state)
    # The server drops a pull whose inbox lost interest; the PING confirms the UNSUB.
    assert [s.op for s in script.take()] == ["UNSUB", "PING"]
    assert not script.client._pulls.reader(state).pulls
    script.deliver(pull, "orders$1", "billing", 2, b"late")  # was already on its way
    later = client.fetch(state, 10, script.now, partition_number=1)
    assert [m.data for m in later.outcome()] == [b"late"]  # kept, not lost


def test_an_eager_pull_never_makes_another_partitions_store_its_own() -> None:
    # Review finding: a hand-over relabelled a store holding partition 2's prefetched message
    # as partition 1's, and the next fetch for partition 1 returned it (breaking per-key order).
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=30.0)
    client = script.client
    client.fetch(state, 1, script.now, partition_number=2, prefetch=True)
    script.deliver(pull_request(script), "orders$2", "billing", 1, b"p2-a")
    script.deliver(pull_request(script), "orders$2", "billing", 2, b"p2-b")  # stored
    eager = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"p1-a")
    script.status(pull, 408, "Request Timeout")
    assert [(m.data, m.partition) for m in eager.outcome()] == [(b"p1-a", 1)]
    after = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    assert not after.done  # a pull of its own: nothing of partition 2's
    assert pull_request(script).subject.endswith("orders$1.billing")
    assert [(m.data, m.partition) for m in state.held.partitions[2]] == [(b"p2-b", 2)]


def test_a_message_kept_while_the_handler_was_busy_gets_its_ack_time_back() -> None:
    # Review finding: a message stored at t=0 and handed out at t=25 had 4 s of its 30 s ack
    # time left, and nothing told the broker it was being worked on.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=30.0, max_ack_time=30.0)
    client = script.client
    first = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a")
    assert first.done
    ack = script.deliver(pull, "orders$1", "billing", 2, b"b")  # nobody waits: kept
    script.status(pull, 408, "Request Timeout")
    script.take()
    script.now += 25.0
    (message,) = client.fetch(state, 10, script.now, partition_number=1, eager=True).outcome()
    assert message.data == b"b"
    sent = script.take()
    assert [(s.subject, s.payload) for s in sent if s.payload == b"+WPI"] == [(ack, b"+WPI")]
    assert message.deadline - script.now > 25.0


def test_the_consume_policy_after_eager_batches() -> None:
    script = connected()
    state = consumer(script, batch_size=2, batch_max_wait_time=30.0, pull_interval=1.0)
    client = script.client
    first = client.fetch(state, 2, script.now, partition_number=1, eager=True)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a")
    # Short, but the pull goes on for the loop: fetch again at once and wait on it.
    assert client.next_pull(state, len(first.outcome()), None, script.now) == 0.0
    second = client.fetch(state, 2, script.now, partition_number=1, eager=True)
    script.deliver(pull, "orders$1", "billing", 2, b"b", pending=5)
    # Review finding: the last part of a batch that filled up on the server looked short, and
    # the loop paused pull_interval although more messages were waiting (``pending``).
    assert client.next_pull(state, len(second.outcome()), None, script.now) == 0.0
    third = client.fetch(state, 2, script.now, partition_number=1, eager=True)
    # The pull started for the loop while the handler worked on b ends empty; the third fetch
    # then pulls for itself, and that one ends empty too.
    script.status(pull_request(script), 408, "Request Timeout")
    script.status(pull_request(script), 408, "Request Timeout")
    assert client.next_pull(state, len(third.outcome()), None, script.now) == 1.0  # drained


def test_the_consume_policy_ignores_kept_messages_a_partition_loop_cannot_take() -> None:
    # Review finding: a message of partition 2 kept for the next fetch made a loop reading
    # partition 1 skip pull_interval on every turn until that message's deadline.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=30.0, pull_interval=1.0)
    client = script.client
    op = client.fetch(state, 10, script.now, partition_number=2)
    pull = pull_request(script)
    script.deliver(pull, "orders$2", "billing", 1, b"x")
    script.status(pull, 408, "Request Timeout")
    client.abandon_fetch(op)  # finished, never read: kept for the next fetch
    assert client.next_pull(state, 0, None, script.now, chosen=True) == 1.0
    assert client.next_pull(state, 0, None, script.now) == 0.0  # a loop over every partition


def test_abandoned_fetch_keeps_what_arrived_and_what_is_still_coming() -> None:
    # A cancelled fetch costs no delivery attempt: nothing is nacked, the next fetch returns
    # what the abandoned pull brought in, before and after the abandon.
    script = connected()
    state = consumer(script)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"early", pending=1)
    script.client.abandon_fetch(op)
    assert op.outcome() == []
    assert script.take() == []  # no -NAK, and the pull goes on (docs/protocol.md §7.7)
    script.deliver(pull, "orders$1", "billing", 2, b"late")
    assert script.take() == []
    script.status(pull, 408, "Request Timeout")  # the server ends it at its expiry
    again = script.client.fetch(state, 10, script.now, partition_number=1)
    assert again.done, "kept messages are served without a pull"
    assert [m.data for m in again.outcome()] == [b"early", b"late"]
    assert not [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT")]


def test_kept_messages_past_their_ack_deadline_are_not_handed_out() -> None:
    script = connected()
    state = consumer(script, max_ack_time=10.0)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.deliver(pull_request(script), "orders$1", "billing", 1, b"stale")
    script.client.abandon_fetch(op)
    script.advance(9.5)  # within max_ack_time, but inside the safety margin
    fresh = script.client.fetch(state, 10, script.now, partition_number=1)
    assert not fresh.done, "the broker redelivers it: handing it out too would duplicate it"


def test_drain_nacks_kept_messages_and_waits_for_async_produces() -> None:
    script = connected()
    prod = producer(script)
    state = consumer(script)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    kept = script.deliver(pull_request(script), "orders$1", "billing", 1, b"unread")
    script.client.abandon_fetch(op)
    script.take()
    script.client.produce(prod, b"x", produce_options(async_produce=True), script.now)
    produce = script.one("HPUB")
    drain = script.client.drain(script.now, timeout=5.0)
    assert (kept, b"-NAK") in [(s.subject, s.payload) for s in script.take()]
    with pytest.raises(ConnectionClosedError, match="closing"):
        script.client.produce(prod, b"y", produce_options(), script.now)
    assert not drain.done  # an async produce is still unacknowledged
    script.reply(produce, {"stream": "orders$1", "seq": 1})
    assert [s.op for s in script.take()] == ["PING"]  # confirms the nack was processed
    assert not drain.done
    script.feed(b"PONG\r\n")  # answers the abandoned pull's PING
    assert not drain.done
    script.feed(b"PONG\r\n")  # answers the drain's
    assert drain.outcome() is None


def test_drain_timeout_says_what_was_not_confirmed() -> None:
    script = connected()
    prod = producer(script)
    script.client.produce(prod, b"x", produce_options(async_produce=True), script.now)
    drain = script.client.drain(script.now, timeout=2.0)
    script.advance(2.0)
    with pytest.raises(CloseIncompleteError, match="1 async produce") as info:
        drain.outcome()
    assert info.value.unconfirmed == 1


def test_drain_reports_async_failures_nobody_flushed() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    opts = produce_options(async_produce=True, msg_id="m-7", ack_wait=0.5)
    script.client.produce(prod, b"x", opts, script.now)
    # No stream answers (503) until ack_wait runs out: resent meanwhile, then failed.
    for _ in range(10):
        for sent in script.take():
            if sent.op == "HPUB":
                script.status(sent, 503)
        script.advance(0.1)
    drain = script.client.drain(script.now)
    with pytest.raises(CloseIncompleteError) as info:
        drain.outcome()
    (failure,) = info.value.failures
    assert (failure.position, failure.msg_id) == (1, "m-7")
    assert isinstance(failure.error, StationTemporarilyUnavailableError)
    assert prod.stale, "the next create_producer registers again"


def test_pull_timeout_without_408_keeps_what_arrived() -> None:
    script = connected()
    state = consumer(script, batch_max_wait_time=1.0)
    op = script.client.fetch(state, 5, script.now, partition_number=1)
    script.deliver(pull_request(script), "orders$1", "billing", 1, b"kept")
    script.advance(2.1)  # the pull's expiry plus its grace
    assert [m.data for m in op.outcome()] == [b"kept"]


def test_deleted_durable_makes_the_consumer_unreachable_once() -> None:
    script = connected()
    state = consumer(script)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    pull = pull_request(script)
    script.status(pull, 409, "Consumer Deleted")
    with pytest.raises(StationUnreachableError):
        op.outcome()
    errors = [e for e in script.events() if isinstance(e, ConsumerError)]
    assert len(errors) == 1
    assert errors[0].consumer is state
    again = script.client.fetch(state, 10, script.now)
    with pytest.raises(StationUnreachableError):
        again.outcome()
    assert not [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT")]


def test_no_responders_on_a_pull_checks_the_durable() -> None:
    # A 503 may be a leader election: the durable is looked up and the pull retried (the
    # retry itself is tested in test_transient_errors.py).
    script = connected()
    state = consumer(script)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.status(pull_request(script), 503)
    assert not op.done
    checks = [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.INFO.")]
    assert len(checks) == 2, "a 503 may be a leader election: only a lookup can tell"
    for check in checks:
        script.reply(check, INFO_OK)
    assert not state.unreachable


def test_periodic_durable_check_finds_a_deleted_station() -> None:
    script = connected()
    state = consumer(script)
    script.client.start_consumer_pings(state, script.now)
    script.take()
    script.advance(30.0)
    checks = [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.INFO.")]
    assert len(checks) == 2
    script.reply(checks[0], {"error": {"code": 404, "description": "stream not found"}})
    assert state.unreachable
    assert any(isinstance(e, ConsumerError) for e in script.events())


def test_dls_resend_comes_first_and_is_acked_through_the_broker() -> None:
    script = connected()
    state = consumer(script)
    script.take()
    headers = {"$memphis_pm_id": "17", "$memphis_pm_cg_name": "billing", "user": "v"}
    script.push("$memphis_dls_orders.billing", b"poison", headers)
    op = script.client.fetch(state, 10, script.now)
    assert op.done, "a resend is served without a pull"
    (message,) = op.outcome()
    assert (message.data, message.sequence_number) == (b"poison", 0)
    script.client.ack(message)
    ack = script.one("PUB", "$memphis_pm_acks")
    assert ack.json() == {"id": 17, "cg_name": "billing"}
    with pytest.raises(MemphisError, match="cannot delay DLS message"):
        script.client.delay(message, 1.0)


def test_dead_letter_terminates_and_reports() -> None:
    script = connected()
    state = consumer(script)
    op = script.client.fetch(state, 1, script.now, partition_number=2)
    ack = script.deliver(pull_request(script), "orders$2", "billing", 9, b"bad")
    (message,) = op.outcome()
    script.take()
    script.client.dead_letter(message, "cannot parse")
    sent = script.take()
    assert (sent[0].subject, sent[0].payload) == (ack, b"+TERM")
    report = sent[1]
    assert report.subject == "$memphis_nacked_dls"
    body = report.json()
    assert isinstance(body, dict)
    assert (body["station_name"], body["partition"], body["error"]) == ("orders", 2, "cannot parse")


def test_station_removed_by_the_broker_drops_producers_and_consumers() -> None:
    script = connected()
    prod = producer(script)
    state = consumer(script)
    script.take()
    script.push(
        "$memphis_sdk_clients_updates",
        json.dumps({"type": "remove_station", "station_name": "orders", "update": False}).encode(),
    )
    assert prod.destroyed
    assert state.unreachable
    errors = [e for e in script.events() if isinstance(e, ConsumerError)]
    assert [type(e.error) for e in errors] == [StationUnreachableError]
    unsubs = [s.op for s in script.take()]
    assert unsubs.count("UNSUB") == 2  # the DLS resends and the station's schema updates


def test_destroy_consumer_nacks_prefetched_messages() -> None:
    script = connected()
    state = consumer(script, batch_size=1)
    script.client.fetch(state, 1, script.now, partition_number=1, prefetch=True)
    script.deliver(pull_request(script), "orders$1", "billing", 1, b"a")
    prefetch = pull_request(script)
    kept = script.deliver(prefetch, "orders$1", "billing", 2, b"b")
    assert len(state.held.partitions[1]) == 1
    op = script.client.destroy_consumer(state, script.now)
    script.reply(script.one("PUB", "$memphis_consumer_destructions"), b"")
    assert op.outcome() is None
    script.take()
    assert (kept, b"-NAK") in [(s.subject, s.payload) for s in script.sent]
    with pytest.raises(LocalProtocolError, match="destroyed"):
        script.client.fetch(state, 1, script.now)


# ------------------------------------------------------------------------------ reconnect


def test_reconnect_replays_subscriptions_and_waiting_control_requests() -> None:
    script = connected()
    state = consumer(script)
    script.take()
    op = script.client.create_station(station_options("later"), script.now)
    script.no_streams()
    request = script.one("PUB", "$memphis_station_creations")
    script.feed(b"")  # the server closed the connection
    events = script.events()
    assert isinstance(events[0], Disconnected)
    assert events[0].reconnect_at == script.now + 1.0
    script.advance(1.0)
    assert isinstance(script.events()[0], ReconnectDue)
    replayed = script.connect()
    subjects = [s.subject for s in replayed if s.op == "SUB"]
    assert f"$memphis_dls_{state.station.internal}.billing" in subjects
    assert "$memphis_schema_updates_orders" in subjects
    # Requests go out again once the new handshake is confirmed (after its PONG).
    resent = [s for s in script.take() if s.subject == "$memphis_station_creations"]
    assert [s.reply for s in resent] == [request.reply]  # same token: the reply still matches
    connected_event = script.events()[-1]
    assert isinstance(connected_event, Connected)
    assert connected_event.reconnected
    script.reply(request, b"")
    assert op.outcome() == ()


def test_pull_in_flight_when_the_connection_drops_keeps_its_messages() -> None:
    script = connected()
    state = consumer(script)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    script.deliver(pull_request(script), "orders$1", "billing", 1, b"arrived")
    script.feed(b"")
    assert [m.data for m in op.outcome()] == [b"arrived"]
    script.advance(1.0)
    replayed = script.connect()
    assert not [s for s in replayed if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT")], (
        "a pull is never replayed: its batch would go to an inbox nobody reads"
    )


def test_close_fails_every_waiting_operation() -> None:
    script = connected()
    prod = producer(script)
    produce = script.client.produce(prod, b"x", produce_options(), script.now)
    flush = script.client.ping()
    script.client.close()
    assert isinstance(script.events()[-1], Closed)
    for op in (produce, flush):
        with pytest.raises(ConnectionClosedError):
            op.outcome()


def test_operations_are_typed() -> None:
    # The handle types the frontends rely on.
    script = connected()
    prod = producer(script)
    op: Operation[PubAck | None] = script.client.produce(prod, b"x", produce_options(), script.now)
    assert isinstance(op, Operation)
    assert isinstance(script.client, Client)
    batch: list[Delivery] = []
    assert batch == []


# ------------------------------------------------------------------------------ review findings


def test_a_prefetched_batch_past_its_ack_deadline_is_not_handed_out() -> None:
    # The broker redelivers it (maybe to another member): handing it out too is a duplicate.
    script = connected()
    state = consumer(script, batch_size=1, max_ack_time=2.0)
    script.client.fetch(state, 1, script.now, partition_number=1, prefetch=True)
    script.deliver(pull_request(script), "orders$1", "billing", 1, b"a")
    script.deliver(pull_request(script), "orders$1", "billing", 2, b"prefetched")
    assert len(state.held.partitions[1]) == 1
    script.advance(3.0)
    late = script.client.fetch(state, 1, script.now, partition_number=1)
    assert not late.done, "the expired prefetched message must not answer the fetch"


def test_returned_messages_get_their_ack_timer_restarted() -> None:
    script = connected()
    state = consumer(script, max_ack_time=10.0)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    ack = script.deliver(pull_request(script), "orders$1", "billing", 1, b"kept")
    script.client.abandon_fetch(op)
    script.take()
    script.advance(5.0)
    again = script.client.fetch(state, 10, script.now, partition_number=1)
    (message,) = again.outcome()
    assert (ack, b"+WPI") in [(s.subject, s.payload) for s in script.take()]
    assert message.deadline > script.now + 8.0  # a whole max_ack_time, less the margin


def test_close_with_a_pull_in_flight_fails_it_and_nacks_its_messages() -> None:
    # Review finding: the drain left the pull waiting; the close then raised from inside the
    # core and the fetch hung for ever.
    script = connected()
    state = consumer(script, batch_size=10)
    op = script.client.fetch(state, 10, script.now, partition_number=1)
    held = script.deliver(pull_request(script), "orders$1", "billing", 1, b"held", pending=1)
    script.client.drain(script.now, timeout=1.0)
    with pytest.raises(ConnectionClosedError, match="closing"):
        op.outcome()
    assert (held, b"-NAK") in [(s.subject, s.payload) for s in script.take()]
    script.client.close()  # must not raise
    assert isinstance(script.events()[-1], Closed)


def test_a_drain_starts_no_new_prefetch() -> None:
    script = connected()
    state = consumer(script, batch_size=1)
    op = script.client.fetch(state, 1, script.now, partition_number=1, prefetch=True)
    pull = pull_request(script)
    script.client.drain(script.now)
    script.deliver(pull, "orders$1", "billing", 1, b"a")
    assert op.done
    assert not [s for s in script.take() if s.subject.startswith("$JS.API.CONSUMER.MSG.NEXT")]


def test_failures_of_a_stale_producer_still_reach_close() -> None:
    # Review finding: re-registering a stale producer forgot its unreported failures.
    script = connected()
    prod = producer(script)
    script.take()
    opts = produce_options(async_produce=True, msg_id="lost", ack_wait=0.3)
    script.client.produce(prod, b"x", opts, script.now)
    for _ in range(6):
        for sent in script.take():
            if sent.op == "HPUB":
                script.status(sent, 503)
        script.advance(0.1)
    assert prod.stale
    again = script.client.create_producer(producer_options("orders", "web"), script.now)
    script.reply(script.one("PUB", "$memphis_producer_creations"), PRODUCER_REPLY)
    assert again.outcome() is not prod
    drain = script.client.drain(script.now)
    with pytest.raises(CloseIncompleteError) as info:
        drain.outcome()
    assert [f.msg_id for f in info.value.failures] == ["lost"]


def test_acks_written_after_the_drains_ping_get_a_ping_of_their_own() -> None:
    script = connected()
    state = consumer(script, batch_size=2)
    op = script.client.fetch(state, 2, script.now, partition_number=1)
    pull = pull_request(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a", pending=1)
    script.deliver(pull, "orders$1", "billing", 2, b"b")
    first, second = op.outcome()
    script.client.ack(first)
    script.take()
    drain = script.client.drain(script.now)
    assert [s.op for s in script.take()] == ["PING"]
    script.client.ack(second)  # another thread acking during close
    script.feed(b"PONG\r\n")
    assert not drain.done, "that PONG does not vouch for the second ack"
    assert "PING" in [s.op for s in script.take()]
    script.feed(b"PONG\r\n")
    assert drain.outcome() is None
