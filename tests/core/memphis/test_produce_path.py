"""The produce path, bytes in and events out: one record per message, from the first write to
the PubAck, through a reconnect, a 503 resend and a drain (docs/protocol.md §6.4,
docs/cluster-client.md)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memphis_core import (
    CloseIncompleteError,
    MemphisError,
    PubAck,
    RemoteProtocolError,
    SchemaValidationError,
    produce_options,
)
from memphis_core.memphis._produce_state import ProduceState
from memphis_core.memphis._producers import Produce
from tests.support.scripted_broker import Script, Sent, connected, producer
from tests.support.wire_vectors import server_hmsg, server_msg


def hpubs(script: Script) -> list[Sent]:
    return [s for s in script.take() if s.op == "HPUB"]


def reconnect(script: Script) -> list[Sent]:
    """Lose the connection, redial after the reconnect interval; what the replay wrote."""
    script.feed(b"")
    script.advance(1.0)
    script.connect()  # the handshake (CONNECT, SUBs, PING) and its PONG
    return hpubs(script)


def ack(script: Script, sent: Sent, seq: int) -> None:
    script.reply(sent, {"stream": "orders$1", "seq": seq})


def test_a_produce_is_one_session_record_and_nothing_else_holds_its_bytes() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    script.client.produce(prod, b"payload", produce_options(msg_id="m-1"), script.now)
    (sent,) = hpubs(script)
    (record,) = [r for r in script.client.session._requests if b"payload" in r.data]
    produce = record.owner
    assert isinstance(produce, Produce)
    assert produce.request is record  # the handler reaches the message only through the record
    # A mypyc-compiled class lists its attributes in __mypyc_attrs__ (tests/support/compiled.py).
    attributes = getattr(Produce, "__mypyc_attrs__", None) or Produce.__slots__
    assert not {"payload", "block", "data"} & set(attributes)
    assert produce.state is ProduceState.WAITING
    ack(script, sent, 1)
    assert produce.state is ProduceState.ACKED
    assert len(script.client.session._requests) == 0


def test_replay_after_a_reconnect_writes_every_unacknowledged_record_once_in_order() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    opts = [produce_options(async_produce=True, msg_id=f"m-{i}") for i in range(5)]
    ops = [script.client.produce(prod, b"%d" % i, opts[i], script.now) for i in range(3)]
    first = hpubs(script)
    ack(script, first[1], 1)  # the middle one is in: it must not go again
    script.feed(b"")
    # Made while offline: queued in the session, written after the next handshake.
    ops += [script.client.produce(prod, b"%d" % i, opts[i], script.now) for i in (3, 4)]
    assert script.take() == []
    script.advance(1.0)
    script.connect()
    replayed = hpubs(script)
    assert [s.payload for s in replayed] == [b"0", b"2", b"3", b"4"]
    # The same reply subjects and message ids as the first time: the broker de-duplicates.
    assert [s.reply for s in replayed[:2]] == [first[0].reply, first[2].reply]
    assert [s.headers["Nats-Msg-Id"] for s in replayed] == ["m-0", "m-2", "m-3", "m-4"]  # type: ignore[index]
    for seq, sent in enumerate(replayed, 2):
        ack(script, sent, seq)
    assert all(op.done and op.error is None for op in ops)
    assert prod.in_flight == prod.in_flight_bytes == 0
    assert reconnect(script) == []  # nothing is left to replay


def test_a_503_resend_interrupted_by_a_reconnect_goes_out_once() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    op = script.client.produce(prod, b"m", produce_options(msg_id="m-1"), script.now)
    (first,) = hpubs(script)
    script.status(first, 503)
    script.take()  # the station lookup, unanswered: an election as far as anyone knows
    produce = script.client.session.pending(int(first.reply.rsplit(".", 1)[1]))  # type: ignore[union-attr]
    assert produce is not None
    assert isinstance(produce.owner, Produce)
    assert produce.owner.state is ProduceState.RETRYING
    # The backoff had not run out when the connection dropped: the replay sends it.
    (replayed,) = reconnect(script)
    assert (replayed.reply, replayed.payload, replayed.headers) == (
        first.reply,
        first.payload,
        first.headers,
    )
    script.advance(1.0)  # the old backoff's timer finds it sent: no second copy
    assert hpubs(script) == []
    ack(script, replayed, 9)
    result = op.outcome()
    assert result is not None
    assert result.sequence == 9
    assert prod.in_flight == 0


def test_drain_waits_for_a_produce_that_is_being_resent_after_a_503() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    script.client.produce(prod, b"m", produce_options(async_produce=True), script.now)
    (first,) = hpubs(script)
    script.status(first, 503)
    drain = script.client.drain(script.now, timeout=5.0)
    assert not drain.done  # still in flight: the window slot is kept while it retries
    assert prod.in_flight == 1
    script.advance(0.05)
    (again,) = hpubs(script)
    ack(script, again, 1)
    assert drain.outcome() is None
    assert prod.in_flight == 0


def test_drain_reports_a_produce_whose_station_is_gone() -> None:
    script = connected()
    prod = producer(script)
    script.take()
    script.client.produce(prod, b"m", produce_options(async_produce=True, msg_id="x"), script.now)
    (first,) = hpubs(script)
    script.status(first, 503)
    (lookup,) = [s for s in script.take() if s.subject.startswith("$JS.API.STREAM.INFO.")]
    drain = script.client.drain(script.now, timeout=5.0)
    assert not drain.done
    script.reply(
        lookup, {"error": {"code": 404, "err_code": 10059, "description": "stream not found"}}
    )
    with pytest.raises(CloseIncompleteError, match="station unreachable") as info:
        drain.outcome()
    (failure,) = info.value.failures
    assert (failure.position, failure.msg_id) == (1, "x")


@pytest.mark.parametrize("outcome", ["acked", "failed"])
def test_a_finished_produce_is_freed_by_reference_counting(outcome: str) -> None:
    # A million async produces must not wait for the cycle collector: once a produce is over,
    # nothing may keep its record (and the message bytes in it) but the caller's handle.
    import gc

    script = connected()
    prod = producer(script)
    script.take()
    opts = produce_options(async_produce=True)
    gc.collect()
    gc.disable()
    try:
        ops = [script.client.produce(prod, b"x" * 100, opts, script.now) for _ in range(50)]
        for seq, sent in enumerate(hpubs(script), 1):
            if outcome == "acked":
                ack(script, sent, seq)
            else:
                script.reply(sent, {"error": {"code": 400, "description": "bad"}})
        assert all(op.done for op in ops)
        prod.take_failures()
        live = [o for o in gc.get_objects() if isinstance(o, Produce)]
        assert live == []
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "reply",
    [b'{"stream":"orders$1"}', b'{"seq":1}', b"not json", b'{"stream":"orders$1","seq":"1"}'],
)
def test_a_malformed_pub_ack_fails_an_async_produce_for_its_handle_and_for_flush(
    reply: bytes,
) -> None:
    # Field report: the async path used to keep any reply without "error" undecoded, so the
    # handle failed on reading it while flush() (and close) counted the message as stored.
    script = connected()
    prod = producer(script)
    script.take()
    op = script.client.produce(prod, b"m", produce_options(async_produce=True), script.now)
    (sent,) = hpubs(script)
    script.reply(sent, reply)
    assert op.done
    with pytest.raises(RemoteProtocolError, match="malformed pub-ack"):
        op.outcome()
    failures = prod.take_failures()
    assert failures is not None
    assert [f.position for f in failures.failures] == [1]


def test_a_message_refused_by_the_schema_waits_for_no_window_slot() -> None:
    # Review finding: once the schema failure was decided inside ``Client.produce``, an async
    # produce of an invalid message first waited for half of a full window to drain, only to
    # be refused afterwards (and not at all, its DLS report lost, if the connection closed
    # meanwhile). It takes no slot: nothing should hold it back.
    script = connected()
    state = producer(script)
    opts = produce_options(async_produce=True)
    while not state.window_full:
        script.client.produce(state, b"x", opts, script.now)
    assert script.client.backpressure(state, b"next") is not None
    refused = SchemaValidationError("'locality' is a required property", b"{}")
    assert script.client.backpressure(state, refused) is None


# What each produce is answered with, and what its handle must then say.
ANSWERS = {
    "ack": (lambda seq: b'{"stream":"orders$1","seq":%d}' % seq, None),
    "duplicate": (lambda seq: b'{"stream":"orders$1","seq":%d,"duplicate":true}' % seq, None),
    "domain": (lambda seq: b'{"stream":"orders$1","seq":%d,"domain":"hub"}' % seq, None),
    "error": (lambda seq: b'{"error":{"code":400,"description":"bad"}}', MemphisError),
    "malformed": (lambda seq: b'{"stream":"orders$1"}', RemoteProtocolError),
}


@settings(max_examples=60, deadline=None)
@given(
    answers=st.lists(st.sampled_from(sorted(ANSWERS)), min_size=1, max_size=10),
    order=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    ping=st.booleans(),
)
def test_pub_acks_read_in_bulk_end_each_produce_as_its_own_reply_says(
    answers: list[str], order: random.Random, cuts: list[int], ping: bool
) -> None:
    # A read full of PubAcks (in any order, with a server PING and a late reply among them, cut
    # anywhere) ends every async produce as one read of the same bytes would, handles and
    # flush's failures, with their positions, alike.
    script = connected()
    prod = producer(script)
    script.take()
    ops = [
        script.client.produce(prod, b"m", produce_options(async_produce=True), script.now)
        for _ in answers
    ]
    sent = hpubs(script)
    inbox_sid = script.sids["_INBOX.t.*"]
    frames = [
        server_msg(s.reply or "", inbox_sid, None, ANSWERS[a][0](seq))
        for seq, (s, a) in enumerate(zip(sent, answers, strict=True), 1)
    ]
    order.shuffle(frames)
    frames.insert(len(frames) // 2, server_msg("_INBOX.t.99999", inbox_sid, None, b"late"))
    if ping:
        frames.insert(1, b"PING\r\n")
    data = b"".join(frames)
    start = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):  # b"" would mean EOF
        script.feed(data[start:cut])
        start = cut
    script.feed(data[start:])
    assert prod.in_flight == 0
    assert prod.in_flight_bytes == 0
    for seq, (op, answer) in enumerate(zip(ops, answers, strict=True), 1):
        error = ANSWERS[answer][1]
        if error is None:
            assert op.outcome() == PubAck("orders$1", seq, answer == "duplicate")
        else:
            with pytest.raises(error):
                op.outcome()
    failures = prod.take_failures()
    failed = [i for i, a in enumerate(answers, 1) if ANSWERS[a][1] is not None]
    assert ([f.position for f in failures.failures] if failures else []) == failed
    assert (b"PONG\r\n" in script.client.data_to_send()) is ping


def test_replayed_produces_answered_in_one_read_with_a_503_among_them() -> None:
    # After a reconnect the replayed produces are answered in one read: a plain PubAck, a 503
    # (an election: the lookup stays unanswered), a duplicate, an error and a plain PubAck again,
    # with the handshake's PONG. Each ends as its own reply says, the 503 one keeps its window
    # slot until its resend is in, and the drain names the failed message by its position.
    script = connected()
    prod = producer(script)
    script.take()
    opts = [produce_options(async_produce=True, msg_id=f"m-{i}") for i in range(5)]
    ops = [script.client.produce(prod, b"%d" % i, opts[i], script.now) for i in range(5)]
    assert len(hpubs(script)) == 5
    replayed = reconnect(script)
    assert [s.payload for s in replayed] == [b"0", b"1", b"2", b"3", b"4"]
    inbox_sid = script.sids["_INBOX.t.*"]
    bodies = [
        b'{"stream":"orders$1","seq":1}',
        None,
        b'{"stream":"orders$1","seq":2,"duplicate":true}',
        b'{"error":{"code":503,"description":"no quorum"}}',
        b'{"stream":"orders$1","seq":3}',
    ]
    block = b"NATS/1.0 503\r\n\r\n"
    script.feed(
        b"".join(
            server_hmsg(s.reply or "", inbox_sid, None, block, b"")
            if body is None
            else server_msg(s.reply or "", inbox_sid, None, body)
            for s, body in zip(replayed, bodies, strict=True)
        )
        + b"PING\r\n"
    )
    assert [op.done for op in ops] == [True, False, True, True, True]
    assert ops[0].outcome() == PubAck("orders$1", 1, False)
    assert ops[2].outcome() == PubAck("orders$1", 2, True)
    assert ops[4].outcome() == PubAck("orders$1", 3, False)
    with pytest.raises(MemphisError, match="no quorum"):
        ops[3].outcome()
    assert prod.in_flight == 1
    drain = script.client.drain(script.now, timeout=5.0)
    assert not drain.done
    script.advance(0.05)
    (again,) = hpubs(script)
    assert (again.reply, again.payload) == (replayed[1].reply, b"1")
    ack(script, again, 4)
    assert ops[1].outcome() == PubAck("orders$1", 4, False)
    assert prod.in_flight == prod.in_flight_bytes == 0
    with pytest.raises(CloseIncompleteError) as info:
        drain.outcome()
    assert [f.position for f in info.value.failures] == [4]
