"""Consumers: registration, JetStream pulls, prefetch, and settling what was delivered.

The broker creates one durable pull consumer per partition for each consumer group; the client
only checks that they exist (``$JS.API.CONSUMER.INFO``) and then pulls from them with
``$JS.API.CONSUMER.MSG.NEXT`` requests (docs/protocol.md "Consumers"). A pull is a multi-reply
request: messages arrive on its own inbox until the batch is full or the server ends the pull
with a status (404 no messages, 408 expired, 409 gone or busy).

Nothing a caller was handed may vanish: messages that did not reach user code (a fetch the
caller stopped waiting for, a prefetch nobody read yet) stay with the consumer for its next
fetch, and are nacked when the consumer or the connection goes away, so the broker redelivers
them at once instead of after ``max_ack_time``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from memphis_core.nats._errors import (
    ConnectionClosedError,
    ConnectionLostError,
    LocalProtocolError,
    MemphisError,
    NoRespondersError,
    RequestTimeoutError,
)
from memphis_core.nats._frames import Msg

from . import _control as rq
from ._deliveries import (
    ConsumerState,
    Delivery,
    ack_publishes,
    consume_should_stop,
    dead_letter_publishes,
    delay_publishes,
    nack_publishes,
)
from ._dispatch import PENDING, ControlRequest, Dispatcher, ReplyHandler
from ._errors import (
    MessageAlreadySettledError,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
)
from ._jetstream import IN_PROGRESS, consumer_info_subject, pull_body, pull_subject
from ._operation import Operation
from ._options import ConsumerOptions, FetchOptions
from ._partitions import choose_partition, stream_name
from ._producers import retry_delay
from ._stations import Stations

__all__ = ["CONSUMER_PING_INTERVAL", "STATION_UNREACHABLE", "ConsumerError", "Consumers"]

#: Consumers check every 30 s that their durables still exist, as the Go SDK does.
CONSUMER_PING_INTERVAL: Final = 30.0
#: Seconds for one ``CONSUMER.INFO`` request (the control-request timeout).
# The same 20 s as one control-request attempt (docs/protocol.md §2.1): CONSUMER.INFO goes to
# JetStream rather than the control plane, but a user expects one creation to have one budget.
INFO_TIMEOUT: Final = 20.0
# The Go SDK's text (docs/protocol.md §7.9, §11.2): applications match on it.
STATION_UNREACHABLE: Final = "station unreachable"
# Worded apart from STATION_UNREACHABLE on purpose: this one heals on its own (a leader election,
# docs/cluster-client.md), that one never does; a consume loop must tell them apart.
STATION_UNAVAILABLE: Final = "memphis: station temporarily unavailable (no JetStream leader)"
# How long past a pull's own expiry we wait for the server's 408 before calling it over.
# docs/protocol.md §7.6: a pull the server never ends is given up ``expires`` + 1 s after it was
# sent. Without a grace the client would give up just before the 408 that would have brought the
# last messages with it.
_PULL_GRACE: Final = 1.0
# 409 texts after which the consumer is gone for good rather than momentarily busy.
# Matched as prefixes of the status description, lower-cased: nats-server words 409s for humans
# ("Consumer Deleted"), and other 409s ("Exceeded MaxWaiting") only mean "busy".
_GONE: Final = ("consumer deleted", "consumer not found", "stream not found")
# Statuses that end a pull normally: 404 no messages, 408 expired, 409 busy/limits.
# docs/protocol.md §7.6. A pull that ends this way is a normal (maybe empty) batch, not an error: an
# idle station answers every pull with a 404 or 408.
_PULL_OVER: Final = frozenset({404, 408, 409})
# A message handed back unread is only handed out again well before the broker redelivers it
# (at max_ack_time): a tenth of max_ack_time (at most 1 s) of margin covers the time between a
# fetch returning it and the application acknowledging it.
_MAX_DEADLINE_MARGIN: Final = 1.0


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
        "_arrived",
        "_by_key",
        "_dispatcher",
        "_identity",
        "_pulls",
        "_report",
        "_stations",
        "closing",
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
        self._pulls: dict[int, _Pull] = {}  # id(op) -> its pull, to find it when abandoned
        # Eager pulls that received messages in the bytes being fed: ``hand_over`` gives those to
        # their waiters once the whole chunk is parsed (see ``fetch``).
        self._arrived: dict[int, _Pull] = {}
        self.closing = False
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
        if not consumer.unreachable and self._dispatcher.session.is_connected:
            self._query_durables(consumer, None, now)

    def _ready(self, consumer: ConsumerState, op: Operation[ConsumerState]) -> None:
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

    def _unreachable(self, consumer: ConsumerState, *, notify: bool = True) -> None:
        """The station or the group's durable is gone: fail from now on, and say so once."""
        if consumer.unreachable:
            return
        # Forgotten from the cache too: creating the consumer again (after the station was
        # re-created) must register anew, not hand back this dead one.
        consumer.unreachable = True
        consumer.ping_at = None
        self._forget(consumer, destroyed=False)
        if notify:
            # Reported once, as an event: the frontend routes it to the consumer's error handler,
            # which is how the Go SDK tells a consumer its station is gone (docs/protocol.md §7.9).
            self._report(ConsumerError(consumer, StationUnreachableError(STATION_UNREACHABLE)))

    def station_gone(self, internal: str, *, notify: bool) -> None:
        """The station was destroyed: every consumer of it is unreachable from now on."""
        for consumer in list(self._by_key.values()):
            if consumer.station.internal == internal:
                self._unreachable(consumer, notify=notify)

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
            consumer.destroyed = True
        consumer.ping_at = None
        key = _key(consumer.options)
        if self._by_key.get(key) is not consumer:
            return  # already forgotten (or never cached)
        del self._by_key[key]
        if consumer.dls_sid is not None:
            self._dispatcher.unsubscribe(consumer.dls_sid)
            consumer.dls_sid = None
        # Nobody will fetch these any more: hand them back for redelivery.
        self._release_held(consumer)
        # The station's schema subscription is reference-counted over producers and consumers and
        # dropped with the last one (docs/protocol.md §1.6).
        self._stations.detach(consumer.station)

    @staticmethod
    def on_dls_resend(consumer: ConsumerState, msg: Msg) -> None:
        """A poison message the broker resent to this group: the next fetch returns it first."""
        consumer.dls.append(Delivery(msg, consumer, None))

    # ---------------------------------------------------------------- the periodic check

    def start_pings(self, consumer: ConsumerState, now: float) -> None:
        """Begin the periodic durable check; frontends call it when consuming starts."""
        if consumer.ping_at is None and not consumer.unreachable:
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
        self, consumer: ConsumerState, opts: FetchOptions, now: float
    ) -> Operation[list[Delivery]]:
        """See ``Client.fetch``; ``opts`` are validated already."""
        if consumer.destroyed:
            raise LocalProtocolError(f"consumer {consumer.name} was closed or destroyed")
        batch_size, prefetch = opts.batch_size, opts.prefetch
        partition_key, partition_number = opts.partition_key, opts.partition_number
        # Fails through the operation, not by raising: fetch is the consume loop's call too, and the
        # loop learns "stop" from the error it receives (``consume_should_stop``).
        if consumer.unreachable:
            failed: Operation[list[Delivery]] = Operation("fetch")
            failed.fail(StationUnreachableError(STATION_UNREACHABLE))
            return failed
        chosen = partition_key is not None or partition_number is not None
        partition = None
        if chosen:
            partition = choose_partition(
                consumer.station.partitions,
                key=partition_key,
                number=partition_number,
                rr=consumer.rr,
                station=consumer.station.internal,
                fetch=True,
            )
        # A prefetched batch only answers a fetch for its own partition: handing out messages of
        # partition 2 to a fetch that asked for partition 3 would break the ordering per key that a
        # partition key promises (docs/protocol.md §6.6).
        same_partition = not chosen or partition == consumer.prefetched_partition
        returned = consumer.take_returned(batch_size, now, partition, chosen)
        # Order of sources: messages given back unread first (their ack deadline runs), then
        # resent dead letters (docs/protocol.md §7.7), then a prefetched batch, then a pull.
        if returned:
            self._refresh(returned, now)
            result = Operation.completed("fetch", returned)
        elif consumer.dls:
            result = Operation.completed("fetch", consumer.take_dls(batch_size))
        elif same_partition and (stored := self._take_stored(consumer, batch_size, now)):
            result = Operation.completed("fetch", stored)
        elif consumer.prefetch_op is not None and same_partition:
            # The batch we want is already on its way: wait for it instead of pulling again
            # (two pulls on one durable would interleave their deliveries).
            waiter: Operation[list[Delivery]] = Operation("fetch")
            consumer.prefetch_waiters.append((waiter, batch_size, opts.eager))
            pending = self._pulls.get(id(consumer.prefetch_op))
            if opts.eager and pending is not None:
                pending.eager = True
                if pending.messages:  # arrived before this fetch: hand them over now
                    self._hand_over(pending, now)
            return waiter
        else:
            # Round robin only for a fresh pull, not when a stored batch answers: the next partition
            # is consumed when the server is actually asked (docs/protocol.md §7.5).
            if not chosen:
                partition = choose_partition(
                    consumer.station.partitions,
                    rr=consumer.rr,
                    station=consumer.station.internal,
                    fetch=True,
                )
            pull = self._pull(consumer, partition, batch_size, now, opts.timeout)
            pull.prefetch_next = prefetch
            pull.eager = opts.eager
            return pull.op
        # A fetch served from memory starts the prefetch too, or a consumer reading prefetched
        # batches would fall back to a pull per fetch after the first one.
        if prefetch and consumer.prefetch_op is None and not consumer.prefetched:
            self._start_prefetch(consumer, partition, batch_size, now)
        return result

    def _pull(
        self,
        consumer: ConsumerState,
        partition: int | None,
        batch: int,
        now: float,
        timeout: float | None = None,
    ) -> _Pull:
        # A fetch's own timeout shortens the pull on the server: it then ends with a 408 and
        # whatever arrived, instead of being cancelled with messages on their way.
        wait = consumer.options.batch_max_wait_time
        if timeout is not None:
            wait = min(wait, timeout)
        pull = _Pull(self, Operation("fetch"), consumer, partition, batch)
        pull.deadline = now + wait
        self._send_pull(pull, now, 0.0)
        self._pulls[id(pull.op)] = pull
        return pull

    def _send_pull(self, pull: _Pull, now: float, delay: float) -> None:
        """(Re)send ``pull``'s request for what is left of its batch and of its wait."""
        consumer = pull.consumer
        stream = stream_name(consumer.station.internal, pull.partition)
        wait = pull.deadline - now - delay
        # Never replayed after a reconnect: the server would deliver a second batch into an
        # inbox nobody reads any more.
        pull.token = self._dispatcher.session.request(
            pull_subject(stream, consumer.durable),
            pull_body(pull.batch - len(pull.messages), wait),
            now=now,
            timeout=wait + delay + _PULL_GRACE,
            multi=True,
            replay=False,
            delay=delay,
        )
        self._dispatcher.register(pull.token, pull)

    def _start_prefetch(
        self, consumer: ConsumerState, partition: int | None, batch: int, now: float
    ) -> None:
        if partition is None and consumer.station.partitions:
            partition = choose_partition(
                consumer.station.partitions,
                rr=consumer.rr,
                station=consumer.station.internal,
                fetch=True,
            )
        # The prefetch uses the default wait (no timeout of its own): nobody waits for it yet, and a
        # longer wait means fuller batches.
        consumer.prefetch_op = self._pull(consumer, partition, batch, now).op
        consumer.prefetched_partition = partition

    def _pull_finished(
        self, pull: _Pull, now: float, *, failed: MemphisError | None = None
    ) -> None:
        """Bookkeeping when a pull ends: store a prefetch and serve its waiters, chain the next."""
        self._pulls.pop(id(pull.op), None)
        consumer = pull.consumer
        # A prefetch pull's batch belongs to the consumer's store, not to the operation: the fetch
        # that started it returned long ago, and the next fetches read from the store.
        if consumer.prefetch_op is pull.op:
            consumer.prefetch_op = None
            waiters, consumer.prefetch_waiters = consumer.prefetch_waiters, []
            if failed is not None:
                for waiter, _, _ in waiters:
                    waiter.fail(failed)
                return
            if not pull.abandoned:
                consumer.prefetched.extend(pull.messages)
                pull.messages = []  # now owned by the store; the op reports an empty batch
            for waiter, size, _ in waiters:
                waiter.finish(self._take_stored(consumer, size, now))
            return
        idle = consumer.prefetch_op is None and not consumer.prefetched
        # The prefetch starts only once this pull is over: two pulls on one durable at the same time
        # would split deliveries between them, and neither batch would be in order.
        # Never while closing: a new pull would bring in a batch nobody will read.
        if (
            pull.prefetch_next
            and idle
            and not failed
            and not consumer.destroyed
            and not self.closing
        ):
            self._start_prefetch(consumer, pull.partition, pull.batch, now)

    def hand_over(self, now: float) -> None:
        """The bytes fed so far are parsed: eager fetches get the messages that came in them.

        An eager fetch (the consume loop's, an iteration's) returns as soon as a read brought
        at least one message, instead of when its batch is full or its pull expires: a message
        that arrives alone is handled after one network hop, not after ``batch_max_wait_time``.
        The pull itself goes on on the server until it is full or expires (JetStream cannot
        shorten one, docs/protocol.md §7.6); from then on it is the consumer's prefetch pull,
        and what else it brings is stored for the next fetch, which waits for it rather than
        start a second pull on the durable. Handing over once per chunk rather than per
        message keeps batches as large as the reads.
        """
        if not self._arrived:
            return  # the common case, on every chunk read: no new dict, no loop
        arrived, self._arrived = self._arrived, {}
        for pull in arrived.values():
            if pull.messages and not pull.abandoned:
                self._hand_over(pull, now)

    def _hand_over(self, pull: _Pull, now: float) -> None:
        consumer = pull.consumer
        if consumer.prefetch_op is pull.op:
            # A prefetch pull (or an eager pull handed over before): its messages go to the
            # store, and eager waiters at the head of the queue are served from it.
            waiters = consumer.prefetch_waiters
            if not waiters or not waiters[0][2]:
                return  # the first in line waits for the whole batch, as a plain fetch does
            pull.batch -= len(pull.messages)
            consumer.prefetched.extend(pull.messages)
            pull.messages = []
            while waiters and waiters[0][2] and consumer.prefetched:
                waiter, size, _ = waiters.pop(0)
                waiter.finish(self._take_stored(consumer, size, now))
            return
        if (
            pull.op.done
            or consumer.prefetch_op is not None
            or (consumer.prefetched and consumer.prefetched_partition != pull.partition)
        ):
            # Finished already, or another pull or stored batch is the consumer's background
            # one: the store holds one partition's messages at a time (a fetch for partition 1
            # must never get partition 2's, docs/protocol.md §6.6), so this pull ends as usual.
            return
        delivered, pull.messages = pull.messages, []
        pull.batch -= len(delivered)
        op = pull.op
        self._pulls.pop(id(op), None)
        pull.op = Operation("fetch")  # the rest of the pull belongs to the consumer's store
        pull.handed_over = True
        self._pulls[id(pull.op)] = pull
        consumer.prefetch_op = pull.op
        consumer.prefetched_partition = pull.partition
        op.finish(delivered)

    def _take_stored(self, consumer: ConsumerState, size: int, now: float) -> list[Delivery]:
        """Up to ``size`` messages from the consumer's store, their ack time restored.

        A message stored while the application was busy (a slow consume handler, a prefetch
        read late) has used up part of ``max_ack_time`` on the broker before anyone saw it.
        Those with less than half of it left are refreshed (``+WPI``), so the application
        gets the whole budget instead of acking after the broker has redelivered.
        """
        stored = consumer.take_prefetched(size, now)
        half = consumer.options.max_ack_time / 2
        stale = [m for m in stored if m.deadline - now < half]
        if stale:
            self._refresh(stale, now)
        return stored

    def next_pull(
        self,
        consumer: ConsumerState,
        received: int,
        error: MemphisError | None,
        now: float,
        *,
        chosen: bool = False,
    ) -> float | None:
        """The consume loop's policy, the same in every frontend: after a batch of
        ``received`` messages (or ``error``), how long to wait before the next fetch, or None
        to stop. ``chosen``: the loop reads one partition (a key or a number).

        At once after a full batch, or when the last pull ended full on the server (its earlier
        messages were handed over before, so this batch looks short), or while the loop's own
        pull goes on after a hand-over, or while messages the next fetch can take are kept for
        it: more are probably there, and the next fetch costs no request or waits on the one
        in flight. (memphis-py sleeps after every batch, capping a default consumer at 10
        msg/s.) Otherwise the station is drained: wait ``pull_interval``. An error that cannot
        heal (the station or durable is gone, the connection closed) stops the loop; any
        other (a timeout, a broker busy with an election) is reported and the loop goes on
        after ``pull_interval``.
        """
        if consume_should_stop(error):
            return None
        # Kept messages count only for a loop that reads every partition: stored messages of
        # another partition would skip the pause for ever on a chosen one.
        if error is None and (
            received >= consumer.options.batch_size
            or consumer.last_pull_full
            or self._handed_over_pull(consumer) is not None
            or (not chosen and consumer.holds_unexpired(now))
        ):
            return 0.0
        return consumer.options.pull_interval

    def end_eager_pull(self, consumer: ConsumerState) -> None:
        """The eager reader left (a consume loop stopped, an iteration was left): end the pull
        that went on for it after an early hand-over, as if that reader had abandoned it.

        Otherwise it would keep taking messages from the durable into a store nobody reads,
        for up to ``batch_max_wait_time``, while other members of the group could have had
        them. What it already brought stays in the store for the next fetch.
        """
        pull = self._handed_over_pull(consumer)
        if pull is not None and not consumer.prefetch_waiters:
            self.abandon_fetch(pull.op)

    def _handed_over_pull(self, consumer: ConsumerState) -> _Pull | None:
        """The consumer's background pull, if it is one that went on after a hand-over."""
        op = consumer.prefetch_op
        pull = None if op is None else self._pulls.get(id(op))
        return pull if pull is not None and pull.handed_over else None

    def abandon_fetch(self, op: Operation[list[Delivery]]) -> None:
        """The caller stopped waiting for ``op`` (cancelled, timed out, stop_consume).

        Its messages stay with the consumer: the next fetch returns them first (while their ack
        deadline holds), so a cancelled fetch costs no delivery attempt. A pull still waiting on
        the server is cancelled by dropping its inbox subscription: the server discards a pull
        request whose reply subject lost interest, so it cannot keep taking a share of new
        messages that nobody reads.
        """
        if op.done:
            if op.error is None:
                # A fetch that finished before the caller gave up: its messages were delivered to
                # the operation but never reached user code, so they count as unread.
                self.give_back(op.outcome())
            return
        pull = self._pulls.pop(id(op), None)
        if pull is not None:
            self._abandon_pull(pull, None)
            return
        for consumer in self._by_key.values():  # a fetch waiting for a prefetch
            waiters = consumer.prefetch_waiters
            consumer.prefetch_waiters = [w for w in waiters if w[0] is not op]

    def _abandon_pull(self, pull: _Pull, error: MemphisError | None) -> None:
        """End ``pull`` for its caller now: with an empty batch, or with ``error``."""
        # The handler stays registered: messages still in flight to the dropped inbox are kept
        # (or, while closing, nacked) as they arrive (_Pull.on_reply), until the session says
        # the drain is over. Marked before ``abandon_request``, which may complete at once for
        # a pull never sent.
        pull.abandoned = True
        self._dispatcher.session.abandon_request(pull.token)
        self.give_back(pull.messages)
        pull.messages = []
        consumer = pull.consumer
        op = pull.op
        if consumer.prefetch_op is op:
            consumer.prefetch_op = None
            waiters, consumer.prefetch_waiters = consumer.prefetch_waiters, []
            for waiter, _, _ in waiters:
                if error is None:
                    waiter.finish([])  # their batch was never going to come
                else:
                    waiter.fail(error)
        if error is None:
            op.finish([])
        else:
            op.fail(error)

    def give_back(self, messages: list[Delivery]) -> None:
        """Keep unread messages for the next fetch of their consumer (see ``returned``).

        When there will be no next fetch (the consumer is gone, the connection is closing)
        they are nacked instead, so the broker hands them to another member at once.
        """
        for message in messages:
            if message.settled is not None:
                continue
            consumer = message.consumer
            # No next fetch will come for these: nack now so another member gets them at once,
            # instead of after ``max_ack_time`` (docs/protocol.md §7.7).
            if consumer.destroyed or consumer.unreachable or self.closing:
                self.release([message])
            else:
                consumer.returned.append(message)

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
        self.closing = True
        # Pulls still waiting end now, their callers told the connection is closing; what they
        # already brought in, or still bring in, is nacked by give_back.
        closing = ConnectionClosedError("the connection is closing")
        for key, pull in list(self._pulls.items()):
            if not pull.op.done:
                del self._pulls[key]
                self._abandon_pull(pull, closing)
        for consumer in self._by_key.values():
            self._release_held(consumer)

    def _release_held(self, consumer: ConsumerState) -> None:
        self.release(list(consumer.returned))
        consumer.returned.clear()
        self.release(list(consumer.prefetched))
        consumer.prefetched.clear()
        if consumer.prefetch_op is not None:
            self.abandon_fetch(consumer.prefetch_op)
            consumer.prefetch_op = None

    def _refresh(self, messages: list[Delivery], now: float) -> None:
        """Messages handed out again after being given back: tell the broker they are still
        being worked on (``+WPI`` restarts its ack timer) and move their deadline, so the
        application gets a whole ``max_ack_time`` instead of what was left of it."""
        for message in messages:
            reply = message.msg.reply
            if reply is None:
                continue  # a DLS resend: no ack timer on the broker
            wait = message.consumer.options.max_ack_time
            message.deadline = now + wait - min(wait / 10, _MAX_DEADLINE_MARGIN)
            self._dispatcher.publish([(reply, IN_PROGRESS)])

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

    def dead_letter(self, message: Delivery, reason: str) -> None:
        publishes = dead_letter_publishes(message, reason)
        self._settle(message, "dead-lettered")
        self._dispatcher.publish(publishes)


class _Pull(ReplyHandler):
    """One JetStream pull: collect messages until the batch is full or the server ends it.

    The batch goes to the caller's operation; an abandoned pull (nobody waits any more) nacks
    it instead, and a prefetch pull's batch is stored on the consumer by ``_pull_finished``.
    """

    __slots__ = (
        "abandoned",
        "batch",
        "checked",
        "consumer",
        "consumers",
        "deadline",
        "eager",
        "handed_over",
        "messages",
        "op",
        "partition",
        "prefetch_next",
        "retries",
        "token",
    )

    def __init__(
        self,
        consumers: Consumers,
        op: Operation[list[Delivery]],
        consumer: ConsumerState,
        partition: int | None,
        batch: int,
    ) -> None:
        self.consumers = consumers
        self.op = op
        self.consumer = consumer
        self.partition = partition
        self.batch = batch
        self.messages: list[Delivery] = []
        self.abandoned = False  # nobody will read the result: give the messages back
        self.prefetch_next = False  # start the prefetch pull once this one is over
        self.eager = False  # someone waits for whatever arrives (Consumers.hand_over)
        self.handed_over = False  # went on in the background after an early hand-over
        self.token = 0  # the session request carrying it
        self.deadline = 0.0  # when the batch is due (batch_max_wait_time after the fetch)
        self.retries = 0  # pulls re-sent after a 503
        self.checked = False  # the durables were looked up after a 503

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        if msg is None:
            raise AssertionError("a pull completed without a message")
        status = msg.status
        if status is None:
            # The local deadline ends a little before the broker's ack wait: a message given back
            # unread is only handed out again while an ack can still reach the broker in time.
            wait = self.consumer.options.max_ack_time
            deadline = now + wait - min(wait / 10, _MAX_DEADLINE_MARGIN)
            delivery = Delivery(msg, self.consumer, self.partition, deadline)
            if self.abandoned:
                self.consumers.give_back([delivery])
                return False
            self.messages.append(delivery)
            if len(self.messages) < self.batch:
                if self.eager:
                    self.consumers._arrived[id(self)] = self
                return False
            # The batch is full: no more messages can come for this pull (the server counts the
            # batch too), so the request ends without waiting for a status.
            self.consumers._dispatcher.session.cancel_request(token)
            self.consumer.last_pull_full = True
            return self._finish(now)
        # A 100 carries no message; ending the pull on it would return an empty batch while the
        # server still holds the pull open.
        if status == 100:
            return False  # idle heartbeat / flow control: the pull goes on
        # Every other status ends the pull on the server's side (docs/protocol.md §7.6).
        self.consumers._dispatcher.session.cancel_request(token)
        self.consumer.last_pull_full = False
        if status == 409 and msg.description.lower().startswith(_GONE):
            # The durable was deleted under us: nothing will ever come from it again.
            self.consumers._unreachable(self.consumer)
            self._fail(StationUnreachableError(STATION_UNREACHABLE), now)
        elif status not in _PULL_OVER and not self.messages:
            # 400 (bad request) and the like: say so rather than look like "no messages".
            self._fail(MemphisError(f"memphis: pull failed: {status} {msg.description}"), now)
        else:
            # 404 no messages, 408 expired, other 409s (too many pulls waiting...): over.
            self._finish(now)
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        if self.abandoned:
            return  # the drain is over; the caller's operation finished long ago
        if isinstance(error, RequestTimeoutError | ConnectionLostError):
            # Expired without the server's 408, or the transport died: what arrived is real,
            # and its ack subjects stay valid after a reconnect.
            self._finish(now)
        elif isinstance(error, NoRespondersError):
            # Transient-error retry (docs/cluster-client.md, "Leader elections"). Nobody
            # serves MSG.NEXT for this durable: it is gone, or its stream is electing a leader.
            # Look the durable up once (only "not found" makes it unreachable) and pull again
            # with backoff until the fetch's own deadline.
            consumer = self.consumer
            if not self.checked:
                self.checked = True
                self.consumers.check_durables(consumer, now)
            # Messages already delivered are handed out even when the rest of the pull hit a 503:
            # their ack subjects are valid, and holding them back would only make them wait out
            # max_ack_time.
            if self.messages:
                self._finish(now)
                return
            delay = retry_delay(self.retries)
            if consumer.unreachable:
                self._fail(StationUnreachableError(STATION_UNREACHABLE), now)
            elif (
                now + delay < self.deadline
                and not consumer.destroyed
                and not self.consumers._dispatcher.session.closed
            ):
                self.retries += 1
                self.consumers._send_pull(self, now, delay)
            else:
                unavailable = StationTemporarilyUnavailableError(STATION_UNAVAILABLE)
                unavailable.__cause__ = error
                self._fail(unavailable, now)
        else:
            self._fail(error, now)

    def _finish(self, now: float) -> bool:
        self.consumers._pull_finished(self, now)
        self.op.finish(self.messages)
        if self.abandoned:
            self.consumers.give_back(self.messages)
        return True

    def _fail(self, error: MemphisError, now: float) -> None:
        # The caller's operation first: whatever happens while giving the messages back, the
        # caller must not be left waiting.
        self.op.fail(error)
        self.consumers._pull_finished(self, now, failed=error)
        self.consumers.give_back(self.messages)  # never handed out: the next fetch has them


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
        error = _js_api_error(msg.payload)
        if error is not None:
            if _transient(msg.payload, error) and self._retry(now):
                return True
            self._failed(MemphisError(f"memphis: {error}"), error)
            return True
        # Creation finishes only when the last partition answered: a reply per partition, in any
        # order.
        self.remaining.left -= 1
        if self.remaining.left == 0 and self.op is not None:
            self.consumers._ready(self.consumer, self.op)
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
        if self.consumers._dispatcher.session.closed:
            return False
        self.retries += 1
        dispatcher = self.consumers._dispatcher
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
                consumers._stations.detach(self.consumer.station)
            self.op.fail(error)
        elif "consumer not found" in text or "stream not found" in text:
            # The periodic check: the station (or the group's durable) was destroyed under us.
            consumers._unreachable(self.consumer)


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


def _js_api_error(payload: bytes) -> str | None:
    """The ``error.description`` of a JetStream API reply, or None on success."""
    try:
        body = json.loads(payload)
    except ValueError:
        # A reply that is not JSON counts as an error, never as "exists": creating a consumer on a
        # durable nobody could confirm would fail later, at the first pull, with a worse message.
        return f"malformed JetStream reply: {payload[:80]!r}"
    if not isinstance(body, dict):
        return f"malformed JetStream reply: {payload[:80]!r}"
    error = body.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("description", error))
    return str(error)
