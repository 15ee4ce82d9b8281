"""Consumers: registration, the durable check, and settling what was delivered.

The broker creates one durable pull consumer per partition for each consumer group; the client
only checks that they exist (``$JS.API.CONSUMER.INFO``) and then pulls from them with
``$JS.API.CONSUMER.MSG.NEXT`` requests (docs/protocol.md "Consumers"). The pulls, the fetches
waiting for them and what a consumer holds are ``_pulls.py``'s.

Nothing a caller was handed may vanish: messages that did not reach user code (a fetch the
caller stopped waiting for, a pull's messages nobody read yet) stay with the consumer for its
next fetch, and are nacked when the consumer or the connection goes away, so the broker
redelivers them at once instead of after ``max_ack_time``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from memphis_core.nats._errors import LocalProtocolError, MemphisError, NoRespondersError
from memphis_core.nats._frames import Msg

from . import _control as rq
from ._deliveries import (
    ConsumerLife,
    ConsumerState,
    Delivery,
    LifeInput,
    ack_publishes,
    dead_letter_publishes,
    delay_publishes,
    nack_publishes,
)
from ._dispatch import PENDING, ControlRequest, Dispatcher, ReplyHandler
from ._errors import MessageAlreadySettledError, StationUnreachableError
from ._jetstream import consumer_info_subject, js_api_error
from ._operation import Operation
from ._options import ConsumerOptions, FetchOptions
from ._partitions import stream_name
from ._producers import retry_delay
from ._pulls import STATION_UNREACHABLE, Pulls
from ._stations import Stations

__all__ = ["CONSUMER_PING_INTERVAL", "ConsumerError", "Consumers"]

#: Consumers check every 30 s that their durables still exist, as the Go SDK does.
CONSUMER_PING_INTERVAL: Final = 30.0
#: Seconds for one ``CONSUMER.INFO`` request (the control-request timeout).
# The same 20 s as one control-request attempt (docs/protocol.md §2.1): CONSUMER.INFO goes to
# JetStream rather than the control plane, but a user expects one creation to have one budget.
INFO_TIMEOUT: Final = 20.0


class ConsumerError:
    """Something went wrong for a consumer outside any call (e.g. its station was destroyed)."""

    __slots__ = ("consumer", "error")

    def __init__(self, consumer: ConsumerState, error: MemphisError) -> None:
        self.consumer = consumer
        self.error = error

    def __repr__(self) -> str:
        return f"ConsumerError({self.consumer.name!r}, {self.error!r})"


def _key(opts: ConsumerOptions) -> ConsumerOptions:
    # Cached by everything that defines the consumer (station, name, group and every option),
    # not by station and name alone as the Go SDK's cache: there, creating "worker" in group g2
    # after g1 handed back the g1 consumer, and g2 was never registered.
    return opts


class Consumers:
    """This connection's consumers and every pull in progress."""

    __slots__ = (
        "_by_key",
        "_dispatcher",
        "_identity",
        "_report",
        "_stations",
        "pulls",
        "settles",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        stations: Stations,
        identity: rq.Identity,
        report: Callable[[ConsumerError], None],
    ) -> None:
        self._dispatcher = dispatcher
        self._stations = stations
        self._identity = identity
        self._report = report
        # Keyed by the whole (frozen) options object, see ``_key``: two creations that differ in any
        # option are two consumers, as the broker sees two registrations.
        self._by_key: dict[ConsumerOptions, ConsumerState] = {}
        #: Every pull and waiting fetch (``_pulls.py``).
        self.pulls = Pulls(
            dispatcher,
            check_durables=self.check_durables,
            gone=self.mark_unreachable,
            release=self.release,
        )
        # Acks, nacks and dead letters written so far: a close must confirm they arrived.
        # A counter, not a flag, so tests can check that a close confirms every settle; only "zero
        # or not" decides whether ``drain`` needs a flush PING.
        self.settles = 0

    # ---------------------------------------------------------------- registration

    def create(self, opts: ConsumerOptions, now: float) -> Operation[ConsumerState]:
        """Register a consumer, then check that its durable exists on every partition."""
        cached = self._by_key.get(_key(opts))
        if cached is not None:
            # No request for a cached consumer: the broker already has this registration on this
            # connection, and a second one would only add a record (docs/protocol.md §6.9 for
            # producers; consumers are cached the same way, §7.13).
            return Operation.completed("create_consumer", cached)
        who = self._identity
        body = rq.encode_consumer_create(
            opts, connection_id=who.connection_id, username=who.username, app_id=who.app_id
        )
        op: Operation[ConsumerState] = Operation("create_consumer")

        def parse(payload: bytes) -> object:
            reply = rq.parse_consumer_reply(payload)
            if reply.error is not None:
                raise MemphisError(reply.error)
            station = self._stations.attach(opts.station_name, reply)
            # Timed from when the reply arrived, not from this call: after a retried control
            # request the call's ``now`` is 20 s old or more, and the lookups would expire at
            # once although the consumer was created.
            self._query_durables(ConsumerState(station, opts), op, request.replied_at)
            return PENDING  # ``_ready`` finishes ``op`` once every durable answered

        request = _CreateRequest(self._dispatcher, op, rq.CONSUMER_CREATIONS, body, parse)
        request.replied_at = now
        self._dispatcher.send_control(request, now)
        return op

    def _query_durables(
        self, consumer: ConsumerState, op: Operation[ConsumerState] | None, now: float
    ) -> None:
        # A legacy station (empty partitions list) has one stream without a ``$<p>`` suffix, which
        # ``stream_name`` builds from ``None`` (docs/protocol.md §5.8).
        partitions = consumer.station.partitions or (None,)
        countdown = _Countdown(len(partitions))
        for partition in partitions:
            stream = stream_name(consumer.station.internal, partition)
            subject = consumer_info_subject(stream, consumer.durable)
            # One lookup per partition, all sent at once: the broker creates the group's durable on
            # every partition stream (docs/protocol.md §7.3), and a consumer that works on some
            # partitions only would lose the messages of the others. The shared countdown finishes
            # creation on the last.
            lookup = _ConsumerInfo(self, consumer, op, countdown, subject, now + INFO_TIMEOUT)
            # An empty body asks for the consumer's info; the reply is a JSON object with ``error``
            # when the durable or its stream is missing (docs/protocol.md §7.3).
            self._dispatcher.request(subject, b"", lookup, now=now, timeout=INFO_TIMEOUT)

    def check_durables(self, consumer: ConsumerState, now: float) -> None:
        """Ask now whether the durables still exist (the periodic check, brought forward)."""
        # Offline, a lookup would only be queued for replay, and a second one for the next ping; the
        # next scheduled check after the reconnect is soon enough.
        if consumer.active and self._dispatcher.session.is_connected:
            self._query_durables(consumer, None, now)

    def ready(self, consumer: ConsumerState, op: Operation[ConsumerState]) -> None:
        """All durables exist: subscribe to DLS resends and hand the consumer out."""
        if op.done:
            return
        key = _key(consumer.options)
        # The same check as in ``create``, again after the lookups: another create of the same
        # consumer may have finished while this one waited for its durables.
        cached = self._by_key.get(key)
        if cached is not None:  # created concurrently under the same name: keep the first
            self._stations.detach(consumer.station)
            op.finish(cached)
            return
        # One queue group per consumer group, so the broker's resend reaches one member.
        subject = rq.dls_subject(consumer.station.internal, consumer.durable)
        # Subscribed only once every durable answered: a consumer whose creation fails must not have
        # taken resent dead letters that no fetch will ever return.
        consumer.dls_sid = self._dispatcher.subscribe(subject, consumer, queue=subject)
        self._by_key[key] = consumer
        op.finish(consumer)

    def mark_unreachable(self, consumer: ConsumerState, *, notify: bool = True) -> None:
        """The station or the group's durable is gone: fail from now on, and say so once."""
        # Once only; and not for a consumer we destroyed ourselves (its pulls then hear
        # "consumer deleted" too): its error handler must not hear of it.
        if consumer.step(LifeInput.GONE) is not ConsumerLife.ACTIVE:
            return
        # Forgotten from the cache too: creating the consumer again (after the station was
        # re-created) must register anew, not hand back this dead one.
        consumer.ping_at = None
        self._forget(consumer, destroyed=False)
        if notify:
            # Reported once, as an event: the frontend routes it to the consumer's error handler,
            # which is how the Go SDK tells a consumer its station is gone (docs/protocol.md §7.9).
            self._report(ConsumerError(consumer, StationUnreachableError(STATION_UNREACHABLE)))

    def creation_failed(self, consumer: ConsumerState) -> None:
        """A durable lookup failed after the broker registered the consumer: undo the station
        bookkeeping that the registration did."""
        self._stations.detach(consumer.station)

    def station_gone(self, internal: str, *, notify: bool) -> None:
        """The station was destroyed: every consumer of it is unreachable from now on."""
        for consumer in list(self._by_key.values()):
            if consumer.station.internal == internal:
                self.mark_unreachable(consumer, notify=notify)

    def destroy(self, consumer: ConsumerState, now: float) -> Operation[None]:
        opts = consumer.options
        who = self._identity
        body = rq.consumer_destroy_body(
            opts.station_name, opts.name, connection_id=who.connection_id, username=who.username
        )

        def parse(reply: bytes) -> None:
            error = rq.parse_destroy_reply(reply)
            if error is not None:
                raise MemphisError(error)
            # Only after the broker confirmed: a destroy that failed (a timeout) leaves the consumer
            # usable and cached, as the caller still holds it.
            self._forget(consumer, destroyed=True)

        return self._dispatcher.control(
            "destroy_consumer", rq.CONSUMER_DESTRUCTIONS, body, parse, now
        )

    def close(self, consumer: ConsumerState) -> None:
        """See ``Client.close_consumer``."""
        self._forget(consumer, destroyed=True)

    def _forget(self, consumer: ConsumerState, *, destroyed: bool) -> None:
        if destroyed:
            consumer.step(LifeInput.DESTROY)
        consumer.ping_at = None
        key = _key(consumer.options)
        if self._by_key.get(key) is not consumer:
            return  # already forgotten (or never cached)
        del self._by_key[key]
        if consumer.dls_sid is not None:
            self._dispatcher.unsubscribe(consumer.dls_sid)
            consumer.dls_sid = None
        # Nobody will fetch these any more: hand them back for redelivery. Waiting fetches of a
        # consumer that became unreachable hear it; those of a destroyed one end empty.
        self.pulls.drop(
            consumer, None if destroyed else StationUnreachableError(STATION_UNREACHABLE)
        )
        # The station's schema subscription is reference-counted over producers and consumers and
        # dropped with the last one (docs/protocol.md §1.6).
        self._stations.detach(consumer.station)

    def on_dls_resend(self, consumer: ConsumerState, msg: Msg) -> None:
        """A poison message the broker resent to this group: a fetch waiting gets it at the end
        of the read, otherwise the next fetch returns it first."""
        self.pulls.resent(Delivery(msg, consumer, None))

    # ---------------------------------------------------------------- the periodic check

    def start_pings(self, consumer: ConsumerState, now: float) -> None:
        """Begin the periodic durable check; frontends call it when consuming starts."""
        if consumer.ping_at is None and consumer.active:
            # Only consumers that consume are checked (docs/protocol.md §7.9): a consumer used for a
            # single fetch does not keep a timer running for the life of the connection.
            consumer.ping_at = now + CONSUMER_PING_INTERVAL

    def next_deadline(self) -> float | None:
        deadline: float | None = None
        for consumer in self._by_key.values():
            at = consumer.ping_at
            if at is not None and (deadline is None or at < deadline):
                deadline = at
        return deadline

    def handle_timeout(self, now: float) -> None:
        connected = self._dispatcher.session.is_connected
        for consumer in list(self._by_key.values()):
            if consumer.ping_at is not None and now >= consumer.ping_at:
                # Rescheduled before the check is sent, so a check that never answers cannot stop
                # the timer.
                consumer.ping_at = now + CONSUMER_PING_INTERVAL
                # Offline, a check would only queue up: it waits for the next turn instead.
                if connected:
                    self.check_durables(consumer, now)

    # ---------------------------------------------------------------- pulls

    def fetch(
        self,
        consumer: ConsumerState,
        opts: FetchOptions,
        now: float,
        *,
        take: int | None = None,
    ) -> Operation[list[Delivery]]:
        """See ``Client.fetch``; ``opts`` are validated already."""
        if consumer.destroyed:
            raise LocalProtocolError(f"consumer {consumer.name} was closed or destroyed")
        # Fails through the operation, not by raising: fetch is the consume loop's call too, and the
        # loop learns "stop" from the error it receives (``consume_should_stop``).
        if consumer.unreachable:
            failed: Operation[list[Delivery]] = Operation("fetch")
            failed.fail(StationUnreachableError(STATION_UNREACHABLE))
            return failed
        return self.pulls.fetch(consumer, opts, now, take=take)

    def release(self, messages: list[Delivery]) -> None:
        """Nack messages that nobody will read (the consumer is going away): the broker
        redelivers them at once, to another member of the group, instead of after
        ``max_ack_time``."""
        if self._dispatcher.session.closed:
            return  # nothing can be sent: the broker redelivers them after max_ack_time
        for message in messages:
            if message.settled is None:
                message.settled = "nacked"
                self.settles += 1
                self._dispatcher.publish(nack_publishes(message))

    def release_all(self) -> None:
        """Nack everything held unread by every consumer: the connection is closing, and from
        now on whatever a pull still brings in is nacked as it arrives."""
        self.pulls.close(list(self._by_key.values()))

    # ---------------------------------------------------------------- settling

    def _settle(self, message: Delivery, how: str) -> None:
        # A message is settled once, as nats-py refuses a second ack: acking after a nack, or
        # dead-lettering after an ack, would otherwise report a message already processed.
        if message.settled is not None:
            raise MessageAlreadySettledError(
                f"message {message.sequence_number} was already {message.settled}"
            )
        message.settled = how
        self.settles += 1

    def ack(self, message: Delivery) -> None:
        # Publishes are built before the message is marked settled: building may refuse (a malformed
        # resend id, a bad delay), and a refused settle must leave the message settleable.
        publishes = ack_publishes(message)
        self._settle(message, "acked")
        self._dispatcher.publish(publishes)

    def nack(self, message: Delivery) -> None:
        publishes = nack_publishes(message)
        self._settle(message, "nacked")
        self._dispatcher.publish(publishes)

    def delay(self, message: Delivery, seconds: float) -> None:
        publishes = delay_publishes(message, seconds)  # may refuse: settle only after it
        self._settle(message, "delayed")
        self._dispatcher.publish(publishes)

    def in_progress(self, message: Delivery, now: float) -> None:
        # Only an unsettled message has an ack timer to restart: after an ack the broker would
        # ignore it, and after a nack it would delay a redelivery already asked for.
        if message.settled is not None:
            raise MessageAlreadySettledError(
                f"message {message.sequence_number} was already {message.settled}"
            )
        self.pulls.in_progress(message, now)

    def dead_letter(self, message: Delivery, reason: str) -> None:
        publishes = dead_letter_publishes(message, reason)
        self._settle(message, "dead-lettered")
        self._dispatcher.publish(publishes)


class _Countdown:
    """Shared by the CONSUMER.INFO requests of one round: how many have still to answer."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


class _CreateRequest(ControlRequest):
    """The consumer-creation request; remembers when its reply arrived (see ``create``)."""

    __slots__ = ("replied_at",)

    replied_at: float

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        # The creation reply's arrival time, used to time the durable lookups that follow it.
        self.replied_at = now
        return super().on_reply(token, msg, now)


class _ConsumerInfo(ReplyHandler):
    """``$JS.API.CONSUMER.INFO`` for one partition: at creation (all must exist) and as a ping.

    At creation a transient answer (NATS 503, or a JetStream error with code 503 that is not a
    "not found") is retried with backoff until ``deadline``: a stream electing a leader.
    """

    __slots__ = ("consumer", "consumers", "deadline", "op", "remaining", "retries", "subject")

    def __init__(
        self,
        consumers: Consumers,
        consumer: ConsumerState,
        op: Operation[ConsumerState] | None,
        remaining: _Countdown,
        subject: str = "",
        deadline: float = 0.0,
    ) -> None:
        self.consumers = consumers
        self.consumer = consumer
        self.op = op  # None for the periodic ping
        self.remaining = remaining
        self.subject = subject
        self.deadline = deadline
        self.retries = 0

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        if msg is None:
            raise AssertionError("CONSUMER.INFO completed without a reply")
        error = js_api_error(msg.payload)
        if error is not None:
            if _transient(msg.payload, error) and self._retry(now):
                return True
            self._failed(MemphisError(f"memphis: {error}"), error)
            return True
        # Creation finishes only when the last partition answered: a reply per partition, in any
        # order.
        self.remaining.left -= 1
        if self.remaining.left == 0 and self.op is not None:
            self.consumers.ready(self.consumer, self.op)
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        if isinstance(error, NoRespondersError) and self._retry(now):
            return
        self._failed(error, str(error))

    def _retry(self, now: float) -> bool:
        """Transient-error retry: look again after a backoff, if creation still waits for it."""
        delay = retry_delay(self.retries)
        # The periodic check is never retried: it runs again in 30 s anyway, and a 503 must not make
        # a consumer unreachable (only "not found" does).
        if self.op is None or self.op.done or now + delay >= self.deadline:
            return False
        dispatcher = self.consumers.pulls.dispatcher
        if dispatcher.session.closed:
            return False
        self.retries += 1
        token = dispatcher.session.request(
            self.subject, b"", now=now, timeout=self.deadline - now, delay=delay
        )
        dispatcher.register(token, self)
        return True

    def _failed(self, error: MemphisError, text: str) -> None:
        consumers = self.consumers
        if self.op is not None:
            if not self.op.done:
                # Creation failed after the broker registered it: undo the station bookkeeping.
                consumers.creation_failed(self.consumer)
            self.op.fail(error)
        elif "consumer not found" in text or "stream not found" in text:
            # The periodic check: the station (or the group's durable) was destroyed under us.
            consumers.mark_unreachable(self.consumer)


def _transient(payload: bytes, description: str) -> bool:
    """A JetStream API error that an election explains (code 503), not a missing resource."""
    # A "not found" is a final answer whatever code it comes with: retrying it would only delay the
    # creation's failure by the 20 s budget (docs/cluster-client.md, "Leader elections").
    if "not found" in description.lower():
        return False
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == 503
