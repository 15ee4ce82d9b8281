"""The pull table (each cell, its docstring diagram) and the pull rules, bytes in and events out.

The rules: one store per consumer and partition that fetches, iteration and the consume loop
all take from; what was given back comes first; a fetch without a partition choice reads every
partition; a plain fetch ends once the server says nothing more is pending.
"""

from __future__ import annotations

import pytest

from memphis_core import MessageAlreadySettledError, StationUnreachableError
from memphis_core.memphis import _pulls
from memphis_core.memphis._deliveries import ConsumerState, MessageView
from memphis_core.memphis._pulls import (
    LIVE_STATES,
    TABLE,
    Pull,
    PullInput,
    PullState,
    render_table,
    transition,
)
from tests.support.scripted_broker import Script, Sent, connected, consumer, pull_request, pulls
from tests.support.state_tables import (
    assert_diagram_generated,
    check_cell,
    every_cell,
    reachable,
)
from tests.support.wire_vectors import server_hmsg

NEXT = "$JS.API.CONSUMER.MSG.NEXT."


@every_cell(PullState, PullInput)
def test_every_cell(state: PullState, event: PullInput) -> None:
    check_cell(TABLE, transition, state, event, "the pull")


def test_ended_and_failed_are_terminal_and_every_state_is_reachable() -> None:
    for state in (PullState.ENDED, PullState.FAILED):
        assert not [event for event in PullInput if (state, event) in TABLE]
    assert reachable(TABLE, PullState.OPEN) == set(PullState)


def test_a_live_pull_can_always_be_abandoned_and_an_abandoned_one_never_fails() -> None:
    assert all(transition(state, PullInput.ABANDON) is PullState.ABANDONED for state in LIVE_STATES)
    # Nobody waits for an abandoned pull: no error can reach anyone, and it is never re-sent.
    assert {target for (s, _), target in TABLE.items() if s is PullState.ABANDONED} == {
        PullState.ABANDONED,
        PullState.ENDED,
    }


def test_docstring_diagram_is_generated_from_the_table() -> None:
    assert_diagram_generated(_pulls, render_table(), TABLE)


# ------------------------------------------------------------------------------ the rules


def test_a_fetch_reads_every_partition_and_returns_what_one_of_them_holds() -> None:
    # The drain loop of the issue: messages wait in one partition, the others are empty. The
    # fetch pulls both, returns as soon as the partition that had messages said nothing more
    # is pending, and leaves both pulls to run to their expiry.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    op = script.client.fetch(state, 10, script.now)
    sent = pulls(script)
    assert sorted(s.subject for s in sent) == [NEXT + "orders$1.billing", NEXT + "orders$2.billing"]
    p2 = next(s for s in sent if s.subject.endswith("orders$2.billing"))
    read = b"".join(
        script.delivery(p2, "orders$2", "billing", n, b"m%d" % n, pending=3 - n) for n in (1, 2, 3)
    )
    script.feed(read)
    assert [m.data for m in op.outcome()] == [b"m1", b"m2", b"m3"]
    assert script.take() == [], "no pull is cut short (docs/protocol.md §7.7)"
    # The next fetch of the drain loop waits on both pulls rather than send two more, pulls
    # both partitions again once those expired, and the loop ends only when both come back
    # empty.
    again = script.client.fetch(state, 10, script.now)
    assert pulls(script) == []
    script.advance(4.0)
    for pull in sent:
        script.status(pull, 408, "Request Timeout")
    assert not again.done, "it still has a second of its own wait"
    sent = pulls(script)
    assert len(sent) == 2
    assert all(s.json() == {"batch": 10, "expires": 1_000_000_000} for s in sent)
    script.status(sent[0], 408, "Request Timeout")
    assert not again.done, "the other partition may still deliver"
    script.status(sent[1], 408, "Request Timeout")
    assert again.outcome() == []


def _unsubscribed(sent: list[Sent], pull: Sent, script: Script) -> bool:
    """Whether ``sent`` holds an UNSUB of ``pull``'s inbox."""
    sid = script.sids[pull.reply or ""]
    return any(s.op == "UNSUB" and s.sid == sid for s in sent)


def _served_by_partition_2() -> tuple[Script, ConsumerState, Sent, Sent]:
    """A fetch of both partitions, ended by partition 2's one message while partition 1's pull
    (the first ``Sent``) is still open."""
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    op = script.client.fetch(state, 10, script.now)
    p1, p2 = sorted(pulls(script), key=lambda s: s.subject)
    script.deliver(p2, "orders$2", "billing", 1, b"b1", pending=0)
    assert [m.data for m in op.outcome()] == [b"b1"]
    return script, state, p1, p2


def test_a_served_fetch_leaves_the_other_partitions_pull_to_run_into_the_store() -> None:
    # The bug: the fetch ended with partition 2's messages and dropped the inbox of partition
    # 1's pull. A message the server routed to that pull in the instant its UNSUB arrived found
    # no interest and was delivered again at once: a delivery spent that nobody saw. Now the
    # pull runs to its expiry, and what it brings is the next fetch's, in order.
    script, state, p1, _ = _served_by_partition_2()
    client = script.client
    assert script.take() == [], "no UNSUB, nor anything else, for the pull left running"
    script.advance(1.0)
    script.feed(
        script.delivery(p1, "orders$1", "billing", 1, b"a1", pending=1)
        + script.delivery(p1, "orders$1", "billing", 2, b"a2", pending=0)
    )
    assert [m.data for m in state.held.partitions[1]] == [b"a1", b"a2"]
    again = client.fetch(state, 10, script.now, partition_number=1)
    assert [m.data for m in again.outcome()] == [b"a1", b"a2"], "first, in order, at once"
    assert script.take() == [], "served from the store: no pull, no UNSUB"
    # The server ends it at its expiry, as any pull: only then does its inbox go (the server
    # forgot the request: nothing can be routed to it), and the partition is free again.
    script.advance(4.0)
    script.status(p1, 408, "Request Timeout")
    assert [s.op for s in script.take()] == ["UNSUB"]
    assert 1 not in client._pulls.reader(state).pulls
    later = client.fetch(state, 10, script.now, partition_number=1)
    (fresh,) = pulls(script)
    assert fresh.subject.endswith("orders$1.billing")
    script.deliver(fresh, "orders$1", "billing", 3, b"a3", pending=0)
    assert [m.data for m in later.outcome()] == [b"a3"]


def test_a_cancelled_fetch_leaves_its_pulls_running_and_the_next_fetch_takes_their_messages() -> (
    None
):
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    op = client.fetch(state, 10, script.now)
    p1, p2 = sorted(pulls(script), key=lambda s: s.subject)
    client.abandon_fetch(op)
    assert op.outcome() == []
    assert script.take() == [], "neither pull is cut short"
    script.deliver(p2, "orders$2", "billing", 1, b"b1", pending=0)
    script.deliver(p1, "orders$1", "billing", 1, b"a1", pending=0)
    assert not [s for s in script.take() if s.payload == b"-NAK"], "kept, not nacked"
    again = client.fetch(state, 10, script.now)
    assert sorted(m.data for m in again.outcome()) == [b"a1", b"b1"]
    for pull in (p1, p2):
        script.status(pull, 408, "Request Timeout")
    assert not client._pulls.reader(state).pulls
    # Only now, the server having ended them: nothing can be routed to these inboxes any more.
    assert [s.op for s in script.take()] == ["UNSUB", "UNSUB"]


def test_closing_the_consumer_ends_its_running_pulls_and_nacks_what_they_still_bring() -> None:
    # The one place a pull on the wire is cut short: no read can come any more. Its inbox goes
    # (UNSUB, then a PING whose PONG says nothing more can arrive), and what was already on its
    # way is nacked, so another member gets it at once rather than after max_ack_time.
    script, state, p1, p2 = _served_by_partition_2()
    kept = script.deliver(p1, "orders$1", "billing", 1, b"a1", pending=1)
    script.client.close_consumer(state)
    sent = script.take()
    assert _unsubscribed(sent, p1, script)
    assert _unsubscribed(sent, p2, script)
    assert (kept, b"-NAK") in [(s.subject, s.payload) for s in sent]
    late = script.deliver(p1, "orders$1", "billing", 2, b"a2", pending=0)
    assert [(s.subject, s.payload) for s in script.take()] == [(late, b"-NAK")]
    script.feed(b"PONG\r\nPONG\r\n")
    assert script.take() == []


def test_what_a_pull_left_running_brought_gets_its_ack_time_back_when_read_late() -> None:
    # A message that came in after its fetch ended waited in the store, its ack timer running
    # on the broker, until the next read: read past half of max_ack_time, it is refreshed with
    # +WPI and gets a whole max_ack_time again; read past its deadline, it is not handed out
    # (the broker has delivered it again).
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0, max_ack_time=30.0)
    client = script.client
    op = client.fetch(state, 10, script.now)
    p1, p2 = sorted(pulls(script), key=lambda s: s.subject)
    script.deliver(p2, "orders$2", "billing", 1, b"b1", pending=0)
    assert [m.data for m in op.outcome()] == [b"b1"]
    late = script.deliver(p1, "orders$1", "billing", 1, b"late", pending=0)
    stale = script.deliver(p2, "orders$2", "billing", 2, b"stale", pending=0)
    script.advance(5.0)
    for pull in (p1, p2):
        script.status(pull, 408, "Request Timeout")
    script.take()
    script.advance(11.0)  # 16 s after they came in: less than half of max_ack_time left
    again = client.fetch(state, 1, script.now, partition_number=1)
    (message,) = again.outcome()
    assert message.data == b"late"
    assert [(s.subject, s.payload) for s in script.take()] == [(late, b"+WPI")]
    assert message.deadline > script.now + 28.0  # a whole max_ack_time, less the margin
    script.advance(14.0)  # 30 s: past the deadline of the one still held
    last = client.fetch(state, 10, script.now, partition_number=2)
    assert not last.done, "the broker delivered it again: handing it out too would duplicate it"
    assert all(s.payload != b"+WPI" or s.subject != stale for s in script.take())


def test_a_fetch_left_with_a_retry_waiting_ends_it_for_nothing_is_on_the_wire() -> None:
    # A 503 put the pull in its backoff when the fetch was cancelled: nothing can be on its way
    # to it, so it ends there (no UNSUB: its request was never re-sent) instead of being re-sent
    # for nobody.
    script = connected()
    client = script.client
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    op = client.fetch(state, 10, script.now, partition_number=1)
    script.status(pulls(script)[0], 503)
    script.take()  # the durable lookups after the first 503
    assert client._pulls.reader(state).pulls[1].state is PullState.RETRYING
    client.abandon_fetch(op)
    assert not client._pulls.reader(state).pulls
    script.advance(1.0)
    assert pulls(script) == []


def test_a_pull_left_running_that_meets_a_503_is_not_sent_again_for_nobody() -> None:
    # The same rule from the other side: the fetch ended first, then a 503 (no responders, a
    # leader election) answered the pull it left running. Nothing is on the wire for it any
    # more, so it ends there rather than be re-sent, after its backoff, to take messages for a
    # store nobody reads; the next fetch pulls the partition itself.
    script, state, p1, _ = _served_by_partition_2()
    client = script.client
    script.status(p1, 503)
    script.take()  # the durable lookups after the first 503
    assert 1 not in client._pulls.reader(state).pulls
    script.advance(0.2)  # past the backoff
    assert pulls(script) == [], "not re-sent"
    again = client.fetch(state, 10, script.now, partition_number=1)
    (fresh,) = pulls(script)
    script.deliver(fresh, "orders$1", "billing", 1, b"a1", pending=0)
    assert [m.data for m in again.outcome()] == [b"a1"]


def test_a_fetch_takes_from_every_partition_in_turn() -> None:
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    first = client.fetch(state, 10, script.now, eager=True)
    p1, p2 = sorted(pulls(script), key=lambda s: s.subject)
    read = b"".join(
        [
            *(script.delivery(p1, "orders$1", "billing", n, b"a%d" % n, 9) for n in (1, 2, 3)),
            *(script.delivery(p2, "orders$2", "billing", n, b"b%d" % n, 9) for n in (1, 2, 3)),
        ]
    )
    script.feed(read)
    batch = [m.data for m in first.outcome()]
    # Each partition's messages keep their order, and neither waits behind the other.
    assert sorted(batch) == [b"a1", b"a2", b"a3", b"b1", b"b2", b"b3"]
    assert [d for d in batch if d.startswith(b"a")] == [b"a1", b"a2", b"a3"]
    assert batch[:2] in ([b"a1", b"b1"], [b"b1", b"a1"])


def test_an_iteration_takes_one_message_and_the_rest_stays_in_order() -> None:
    # ``break`` at the 2nd message of a batch of 10: nothing unread lives in the frontend, so
    # the next fetch starts at message 3, and what arrives later comes after it.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    step = client.next_message(state, script.now)
    pull, _ = sorted(pulls(script), key=lambda s: s.subject)  # every partition is pulled
    assert pull.json() == {"batch": 10, "expires": 5_000_000_000}, "pulls ask for a whole batch"
    script.feed(
        b"".join(
            script.delivery(pull, "orders$1", "billing", n, b"m%d" % n, 10 - n) for n in range(1, 6)
        )
    )
    assert [m.data for m in step.outcome()] == [b"m1"]
    second = client.next_message(state, script.now)
    assert [m.data for m in second.outcome()] == [b"m2"]  # at once, from the consumer
    client.end_eager_pull(state)  # the iteration is left after m2: both pulls end
    assert [s.op for s in script.take()] == ["UNSUB", "PING", "UNSUB", "PING"]
    # Already on its way when the pull was dropped: kept, after m3-m5.
    script.feed(
        b"".join(
            script.delivery(pull, "orders$1", "billing", n, b"m%d" % n, 10 - n) for n in (6, 7)
        )
    )
    rest = client.fetch(state, 10, script.now, partition_number=1)
    assert [m.data for m in rest.outcome()] == [b"m3", b"m4", b"m5", b"m6", b"m7"]


def test_given_back_messages_come_before_what_arrived_since() -> None:
    # A consume loop stopped with a batch in hand gives it back while its pull goes on: the next
    # fetch returns the given-back messages first.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    op = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    (pull,) = pulls(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a", pending=5)
    batch = op.outcome()
    script.deliver(pull, "orders$1", "billing", 2, b"b", pending=4)  # nobody waits: kept
    client.give_back(batch)
    nxt = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    assert [m.data for m in nxt.outcome()] == [b"a", b"b"]


def test_a_plain_fetch_waits_while_the_server_says_more_are_pending() -> None:
    script = connected()
    state = consumer(script, batch_size=3, batch_max_wait_time=5.0)
    op = script.client.fetch(state, 3, script.now, partition_number=1)
    (pull,) = pulls(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a", pending=1)
    assert not op.done
    script.deliver(pull, "orders$1", "billing", 2, b"b", pending=0)
    assert [m.data for m in op.outcome()] == [b"a", b"b"]


def test_fetches_waiting_on_one_pull_are_served_in_the_order_they_asked() -> None:
    script = connected()
    state = consumer(script, batch_size=2, batch_max_wait_time=5.0)
    client = script.client
    first = client.fetch(state, 2, script.now, partition_number=1)
    second = client.fetch(state, 2, script.now, partition_number=1, eager=True)
    (pull,) = pulls(script)  # one pull on the durable, not two
    script.deliver(pull, "orders$1", "billing", 1, b"a", pending=3)
    assert not first.done
    assert not second.done, "the eager one must not take the first's share"
    script.deliver(pull, "orders$1", "billing", 2, b"b", pending=2)  # full: the pull ends
    assert [m.data for m in first.outcome()] == [b"a", b"b"]
    (again,) = pulls(script)
    script.deliver(again, "orders$1", "billing", 3, b"c", pending=1)
    assert [m.data for m in second.outcome()] == [b"c"]


def test_a_fetch_of_another_partition_is_not_held_back_by_an_earlier_one_still_waiting() -> None:
    # Two callers fetch one partition each: the second one's messages arrived with nothing more
    # pending, so it ends although the first still waits (up to batch_max_wait_time) for its own.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    first = client.fetch(state, 10, script.now, partition_number=1)
    second = client.fetch(state, 10, script.now, partition_number=2)
    third = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    p1, p2 = sorted(pulls(script), key=lambda s: s.subject)
    script.deliver(p1, "orders$1", "billing", 1, b"a", pending=3)
    script.deliver(p2, "orders$2", "billing", 1, b"b", pending=0)
    assert not first.done
    assert [m.data for m in second.outcome()] == [b"b"]
    assert not third.done, "it reads partition 1: the first fetch's share is not taken from it"
    script.deliver(p1, "orders$1", "billing", 2, b"c", pending=0)
    assert [m.data for m in first.outcome()] == [b"a", b"c"]


def test_a_fetch_waiting_on_a_longer_pull_still_ends_at_its_own_timeout() -> None:
    # The prefetch pull runs for batch_max_wait_time (5 s); a fetch(timeout=0.5) that waits on
    # it instead of pulling again must still return after 0.5 s, as documented.
    script = connected()
    state = consumer(script, batch_size=2, batch_max_wait_time=5.0)
    client = script.client
    first = client.fetch(state, 2, script.now, partition_number=1, prefetch=True)
    (pull,) = pulls(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a", pending=1)
    script.deliver(pull, "orders$1", "billing", 2, b"b", pending=0)  # full: the pull is over
    assert [m.data for m in first.outcome()] == [b"a", b"b"]
    (prefetch,) = pulls(script)
    second = client.fetch(state, 2, script.now, partition_number=1, timeout=0.5)
    assert pulls(script) == [], "it waits on the prefetch pull"
    assert client.next_deadline() == pytest.approx(script.now + 0.5)
    script.advance(0.4)
    assert not second.done
    script.advance(0.1)
    assert second.outcome() == []
    script.deliver(prefetch, "orders$1", "billing", 3, b"late", pending=0)  # kept, not lost
    assert [m.data for m in client.fetch(state, 2, script.now).outcome()] == [b"late"]


def test_a_destroyed_consumer_leaves_nothing_behind_when_its_loop_ends_later() -> None:
    # The frontends end the consume loop (end_eager_pull, next_pull) after the destroy went
    # through: that must not bring back per-consumer state the destroy dropped, or every
    # consumer created and destroyed on a long-lived connection would stay in memory.
    script = connected()
    state = consumer(script, batch_size=10)
    client = script.client
    op = client.fetch(state, 10, script.now, partition_number=1, eager=True)
    script.deliver(pull_request(script), "orders$1", "billing", 1, b"a", pending=0)
    assert [m.data for m in op.outcome()] == [b"a"]
    destroyed = client.destroy_consumer(state, script.now)
    script.reply(script.one("PUB", "$memphis_consumer_destructions"), b"")
    assert destroyed.outcome() is None
    client.next_pull(state, 1, None, script.now)
    client.end_eager_pull(state)
    assert state not in client._pulls._readers


def test_a_new_fetch_does_not_take_the_messages_an_earlier_one_waits_with() -> None:
    # The first fetch holds a and waits for the 3 the server says are pending; a second caller's
    # fetch of the same partition queues behind it instead of taking a at once.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    first = client.fetch(state, 2, script.now, partition_number=1)
    (pull,) = pulls(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a", pending=3)
    second = client.fetch(state, 2, script.now, partition_number=1, eager=True)
    assert not second.done
    assert pulls(script) == [], "it waits on the same pull"
    script.deliver(pull, "orders$1", "billing", 2, b"b", pending=2)  # full: the pull ends
    assert [m.data for m in first.outcome()] == [b"a", b"b"]
    (again,) = pulls(script)  # the second one pulls for itself now
    script.deliver(again, "orders$1", "billing", 3, b"c", pending=1)
    assert [m.data for m in second.outcome()] == [b"c"]


def test_a_new_fetch_takes_at_once_what_no_waiting_fetch_collects() -> None:
    # The fetch waiting on partition 1 holds nothing: a fetch of every partition takes what
    # partition 2 holds at once.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    kept = client.fetch(state, 10, script.now, partition_number=2, eager=True)
    (p2,) = pulls(script)
    script.deliver(p2, "orders$2", "billing", 1, b"x1", pending=1)
    assert [m.data for m in kept.outcome()] == [b"x1"]
    script.deliver(p2, "orders$2", "billing", 2, b"x2", pending=0)  # nobody waits: kept
    waiting = client.fetch(state, 10, script.now, partition_number=1)
    assert not waiting.done
    every = client.fetch(state, 10, script.now)
    assert [m.data for m in every.outcome()] == [b"x2"]


def test_a_gone_durable_fails_every_waiting_fetch_of_the_consumer() -> None:
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    op = script.client.fetch(state, 10, script.now)
    p1, _ = sorted(pulls(script), key=lambda s: s.subject)
    script.status(p1, 409, "Consumer Deleted")
    with pytest.raises(StationUnreachableError):
        op.outcome()
    assert state.unreachable
    assert "UNSUB" in [s.op for s in script.take()]  # the other partition's pull ends too


def test_a_dead_letter_resent_while_a_fetch_waits_is_handed_to_it() -> None:
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    op = script.client.fetch(state, 10, script.now, partition_number=1, eager=True)
    script.take()
    script.push(
        "$memphis_dls_orders.billing",
        b"poison",
        {"$memphis_pm_id": "7", "$memphis_pm_cg_name": "billing"},
    )
    assert [m.data for m in op.outcome()] == [b"poison"]


def test_message_metadata_comes_from_the_ack_subject_and_in_progress_sends_wpi() -> None:
    script = connected()
    state = consumer(script, batch_size=1, max_ack_time=10.0)
    op = script.client.fetch(state, 1, script.now, partition_number=1)
    (pull,) = pulls(script)
    reply = "$JS.ACK.orders$1.billing.2.17.41.1700000000500000000.6"
    block = b"NATS/1.0\r\nmsg-id: order-1\r\nNats-Msg-Id: order-1\r\nuser: v\r\n\r\n"
    script.feed(server_hmsg("orders$1.final", script.sids[pull.reply or ""], reply, block, b"x"))
    (delivery,) = op.outcome()
    view = MessageView(delivery)
    assert view.msg_id == "order-1"
    assert view.headers == {"user": "v"}
    assert (view.sequence_number, view.consumer_sequence, view.delivery_count) == (17, 41, 2)
    assert view.timestamp == 1_700_000_000.5
    assert view.pending == 6
    script.take()
    script.advance(8.0)
    script.client.in_progress(delivery, script.now)
    assert [(s.subject, s.payload) for s in script.take()] == [(reply, b"+WPI")]
    assert delivery.deadline > script.now + 8.0  # a whole max_ack_time again, less the margin
    script.client.ack(delivery)
    with pytest.raises(MessageAlreadySettledError):
        script.client.in_progress(delivery, script.now)


def test_the_consume_loop_has_its_next_pull_under_way_while_the_handler_works() -> None:
    # Pipelining: the batch that filled a pull is handed over and the next pull is sent in the
    # same step, not when the loop asks again after its handler returned.
    script = connected()
    state = consumer(script, batch_size=4, batch_max_wait_time=5.0)
    client = script.client
    op = client.fetch(state, 4, script.now, partition_number=1, eager=True)
    (pull,) = pulls(script)
    script.feed(
        b"".join(
            script.delivery(pull, "orders$1", "billing", n, b"m%d" % n, 9) for n in range(1, 5)
        )
    )
    assert [m.data for m in op.outcome()] == [b"m1", b"m2", b"m3", b"m4"]
    (following,) = pulls(script)
    assert following.json() == {"batch": 4, "expires": 5_000_000_000}


def test_an_iteration_refills_when_less_than_half_a_batch_is_held() -> None:
    script = connected()
    state = consumer(script, batch_size=4, batch_max_wait_time=5.0)
    client = script.client
    step = client.next_message(
        state,
        script.now,
    )
    p1, _ = sorted(pulls(script), key=lambda s: s.subject)
    script.feed(
        b"".join(script.delivery(p1, "orders$1", "billing", n, b"m%d" % n, 9) for n in range(1, 5))
    )
    taken = [m.data for m in step.outcome()]
    assert pulls(script) == [], "3 held: no new pull yet"
    taken += [m.data for m in client.next_message(state, script.now).outcome()]
    assert pulls(script) == [], "2 held, half a batch: still none"
    taken += [m.data for m in client.next_message(state, script.now).outcome()]
    (refill,) = pulls(script)  # 1 held: the refill is under way before the store runs dry
    assert refill.subject.endswith("orders$1.billing")
    taken += [m.data for m in client.next_message(state, script.now).outcome()]
    assert taken == [b"m1", b"m2", b"m3", b"m4"]


def test_a_held_message_past_its_deadline_is_never_handed_out_even_behind_a_fresh_one() -> None:
    # Given back after a refresh moved its deadline, a message can sit before an older one.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0, max_ack_time=10.0)
    client = script.client
    op = client.fetch(state, 10, script.now, partition_number=1)
    (pull,) = pulls(script)
    script.feed(
        b"".join(script.delivery(pull, "orders$1", "billing", n, b"m%d" % n, 0) for n in (1, 2))
    )
    first, second = op.outcome()
    script.advance(6.0)
    client.in_progress(first, script.now)  # first now lives until t=15, second until t=9
    client.give_back([second])
    client.give_back([first])
    script.advance(4.0)
    again = client.fetch(state, 10, script.now, partition_number=1)
    assert [m.data for m in again.outcome()] == [b"m1"]


def test_a_fetch_served_from_the_store_leaves_the_prefetch_pull_alone() -> None:
    script = connected()
    state = consumer(script, batch_size=2, batch_max_wait_time=5.0)
    client = script.client
    first = client.fetch(state, 2, script.now, partition_number=1, prefetch=True)
    (pull,) = pulls(script)
    script.deliver(pull, "orders$1", "billing", 1, b"a", pending=5)
    script.deliver(pull, "orders$1", "billing", 2, b"b", pending=4)
    assert [m.data for m in first.outcome()] == [b"a", b"b"]
    (prefetch,) = pulls(script)
    script.deliver(prefetch, "orders$1", "billing", 3, b"c", pending=3)
    second = client.fetch(state, 2, script.now, partition_number=1)
    assert [m.data for m in second.outcome()] == [b"c"]
    assert "UNSUB" not in [s.op for s in script.take()], "the prefetch pull goes on"
    script.deliver(prefetch, "orders$1", "billing", 4, b"d", pending=2)
    assert [m.data for m in client.fetch(state, 2, script.now, partition_number=1).outcome()] == [
        b"d"
    ]


# ------------------------------------------------------------------ every cell, bytes in


def _into(script: Script, start: PullState, event: PullInput) -> tuple[Pull, Sent]:
    """A fetch's pull on partition 1, brought to ``start`` the way the server would."""
    batch = 1 if event is PullInput.FULL else 2
    # A 503 gives up when the backoff (50 ms, then 100 ms) would end past the pull's expiry.
    timeout = {PullState.OPEN: 0.03, PullState.RETRYING: 0.12}.get(start)
    if event is not PullInput.GIVE_UP:
        timeout = None
    state = consumer(script, batch_size=batch, batch_max_wait_time=5.0)
    script.client.fetch(state, batch, script.now, partition_number=1, timeout=timeout)
    (sent,) = pulls(script)
    pull = script.client._pulls.reader(state).pulls[1]
    if start is PullState.RETRYING:
        script.status(sent, 503)
        script.advance(0.05)
        (sent,) = pulls(script)
    elif start is PullState.ABANDONED:
        script.client.close_consumer(state)
    assert pull.state is start
    return pull, sent


@pytest.mark.parametrize(("start", "event"), list(TABLE), ids=lambda c: c.name)
def test_every_cell_is_reached_through_the_wire(start: PullState, event: PullInput) -> None:
    # The table says where each input leads; this drives a real pull there with the server's
    # own bytes (or the consumer's close), so no cell is reachable on paper only.
    script = connected()
    pull, sent = _into(script, start, event)
    if event in (PullInput.MESSAGE, PullInput.FULL):
        script.deliver(sent, "orders$1", "billing", 1, b"m", pending=5)
    elif event is PullInput.ABANDON:
        script.client.close_consumer(pull.consumer)
    else:
        code, text = {
            PullInput.HEARTBEAT: (100, "Idle Heartbeat"),
            PullInput.OVER: (408, "Request Timeout"),
            PullInput.GONE: (409, "Consumer Deleted"),
            PullInput.REFUSED: (400, "Bad Request"),
            PullInput.RETRY: (503, ""),
            PullInput.GIVE_UP: (503, ""),
        }[event]
        script.status(sent, code, text)
    assert pull.state is TABLE[(start, event)]
