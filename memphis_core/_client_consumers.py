"""The consumer half of :class:`~._client.Client`: registration, pulls, prefetch, acks.

A mixin only to keep each module readable; it uses the client's session, handler table and
caches, declared below for the type checker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from . import _requests as rq
from ._consumer import (
    ConsumerState,
    Publishes,
    ReceivedMessage,
    ack_publishes,
    dead_letter_publishes,
    delay_publishes,
    nack_publishes,
)
from ._errors import LocalProtocolError, MemphisError, StationUnreachableError
from ._handlers import (
    PENDING,
    STATION_UNREACHABLE,
    ConsumerInfo,
    Control,
    Countdown,
    Handler,
    Pull,
)
from ._jetstream import consumer_info_subject, pull_body, pull_subject
from ._operation import Operation
from ._options import ConsumerOptions, fetch_options
from ._partitions import choose_fetch_partition, stream_name

if TYPE_CHECKING:
    from ._client import ConsumerError, Subscriber, TransportEvent
    from ._producer import StationState
    from ._session import Session

__all__ = ["CONSUMER_PING_INTERVAL", "ConsumerOps"]

#: Section 8.7: consumers check every 30 s that their durables still exist.
CONSUMER_PING_INTERVAL: Final = 30.0
#: Section 2: 20 s per control request attempt.
INFO_TIMEOUT: Final = 20.0
# How long past a pull's own expiry we wait for the server's 408 before calling it over.
_PULL_GRACE: Final = 1.0


def _key(opts: ConsumerOptions) -> str:
    # Section 8.3: cached per connection as <internal station>_<lower-cased consumer name>.
    return f"{opts.internal_station}_{opts.name.lower()}"


class ConsumerOps:
    session: Session
    username: str
    connection_id: str
    app_id: str
    _handlers: dict[int, Handler]
    _subscriptions: dict[int, Subscriber]
    _consumers: dict[str, ConsumerState]
    _events: list[TransportEvent | ConsumerError]
    _pulls: dict[int, Pull]  # id(op) -> its pull, to find it again when the caller gives up

    if TYPE_CHECKING:

        def send_control(self, handler: Control, now: float) -> None: ...

        def _control(
            self, what: str, subject: str, body: bytes, parse: Callable[[bytes], Any], now: float
        ) -> Operation[Any]: ...

        def _attach_station(self, name: str, reply: rq.ConsumerCreated) -> StationState: ...

        def _detach_station(self, station: StationState) -> None: ...

        def _consumer_error(self, consumer: ConsumerState, error: MemphisError) -> None: ...

    # ------------------------------------------------------------------ registration

    def create_consumer(self, opts: ConsumerOptions, now: float) -> Operation[ConsumerState]:
        """Register a consumer, then check its durable exists on every partition (section 8.3)."""
        cached = self._consumers.get(_key(opts))
        if cached is not None:
            return Operation.completed("create_consumer", cached)
        body = rq.encode_consumer_create(
            opts, connection_id=self.connection_id, username=self.username, app_id=self.app_id
        )
        op: Operation[ConsumerState] = Operation("create_consumer")

        def parse(payload: bytes) -> object:
            reply = rq.parse_consumer_reply(payload)
            if reply.error is not None:
                raise MemphisError(reply.error)
            station = self._attach_station(opts.station_name, reply)
            self._query_durables(ConsumerState(station, opts), op, now)
            return PENDING  # ``consumer_ready`` finishes ``op`` once every durable answered

        self.send_control(Control(op, rq.CONSUMER_CREATIONS, body, parse, 20.0, 5), now)
        return op

    def _query_durables(
        self, consumer: ConsumerState, op: Operation[ConsumerState] | None, now: float
    ) -> None:
        partitions = consumer.station.partitions or (None,)
        countdown = Countdown(len(partitions))
        for partition in partitions:
            stream = stream_name(consumer.station.internal, partition)
            subject = consumer_info_subject(stream, consumer.durable)
            token = self.session.request(subject, b"", now=now, timeout=INFO_TIMEOUT)
            self._handlers[token] = ConsumerInfo(consumer, op, countdown)

    def check_durables(self, consumer: ConsumerState, now: float) -> None:
        """Ask now whether the durables still exist (the section 8.7 ping, brought forward)."""
        if not consumer.unreachable and self.session.is_connected:
            self._query_durables(consumer, None, now)

    def consumer_ready(self, consumer: ConsumerState, op: Operation[ConsumerState]) -> None:
        """All durables exist: subscribe to DLS resends and hand the consumer out."""
        if op.done:
            return
        key = _key(consumer.options)
        cached = self._consumers.get(key)
        if cached is not None:  # created concurrently under the same name: keep the first
            self._detach_station(consumer.station)
            op.finish(cached)
            return
        subject = rq.dls_subject(consumer.station.internal, consumer.durable)
        consumer.dls_sid = self.session.subscribe(subject, queue=subject)
        self._subscriptions[consumer.dls_sid] = consumer
        self._consumers[key] = consumer
        op.finish(consumer)

    def consumer_failed(self, consumer: ConsumerState) -> None:
        """Creation failed after the broker registered it: undo the station bookkeeping."""
        self._detach_station(consumer.station)

    def consumer_unreachable(self, consumer: ConsumerState, *, notify: bool = True) -> None:
        """The station or the group's durable is gone: fail from now on, and say so once."""
        if consumer.unreachable:
            return
        consumer.unreachable = True
        consumer.ping_at = None
        self._forget_consumer(consumer, destroyed=False)
        if notify:
            self._consumer_error(consumer, StationUnreachableError(STATION_UNREACHABLE))

    def start_consumer_pings(self, consumer: ConsumerState, now: float) -> None:
        """Begin the 30 s durable check (section 8.7); frontends call it when consuming starts."""
        if consumer.ping_at is None and not consumer.unreachable:
            consumer.ping_at = now + CONSUMER_PING_INTERVAL

    def cached_consumer(self, opts: ConsumerOptions) -> ConsumerState | None:
        return self._consumers.get(_key(opts))

    def destroy_consumer(self, consumer: ConsumerState, now: float) -> Operation[None]:
        opts = consumer.options
        body = rq.consumer_destroy_body(
            opts.station_name, opts.name, connection_id=self.connection_id, username=self.username
        )

        def parse(reply: bytes) -> None:
            error = rq.parse_destroy_reply(reply)
            if error is not None:
                raise MemphisError(error)
            self._forget_consumer(consumer, destroyed=True)

        return self._control("destroy_consumer", rq.CONSUMER_DESTRUCTIONS, body, parse, now)

    def _forget_consumer(self, consumer: ConsumerState, *, destroyed: bool) -> None:
        if destroyed:
            consumer.destroyed = True
        consumer.ping_at = None
        key = _key(consumer.options)
        if self._consumers.get(key) is not consumer:
            return  # already forgotten (or never cached)
        del self._consumers[key]
        if consumer.dls_sid is not None:
            self.session.unsubscribe(consumer.dls_sid)
            self._subscriptions.pop(consumer.dls_sid, None)
            consumer.dls_sid = None
        # Nobody will fetch these any more: hand them back for redelivery.
        self.release_messages(list(consumer.prefetched))
        consumer.prefetched.clear()
        if consumer.prefetch_op is not None:
            self.abandon_fetch(consumer.prefetch_op)
            consumer.prefetch_op = None
        self._detach_station(consumer.station)

    # ------------------------------------------------------------------ pulls

    def fetch(
        self,
        consumer: ConsumerState,
        batch_size: int,
        now: float,
        *,
        partition_key: str | None = None,
        partition_number: int | None = None,
        prefetch: bool = False,
    ) -> Operation[list[ReceivedMessage]]:
        """Pull up to ``batch_size`` messages: DLS resends first, then a prefetched batch, then
        a fresh pull that the server holds for ``batch_max_wait_time`` (section 8.6).

        With ``prefetch`` the next batch is pulled as soon as this one is complete and kept
        for the next call (one that asks for the same partition, or lets us choose).

        Raises:
            LocalProtocolError: bad batch size or partition choice; the consumer was destroyed.
        """
        if consumer.destroyed:
            raise LocalProtocolError(f"consumer {consumer.name} was destroyed")
        # The one validation of fetch arguments, for every frontend (section 8.4 texts).
        opts = fetch_options(
            batch_size,
            prefetch=prefetch,
            partition_key=partition_key,
            partition_number=partition_number,
        )
        batch_size, prefetch = opts.batch_size, opts.prefetch
        partition_key, partition_number = opts.partition_key, opts.partition_number
        if consumer.unreachable:
            failed: Operation[list[ReceivedMessage]] = Operation("fetch")
            failed.fail(StationUnreachableError(STATION_UNREACHABLE))
            return failed
        chosen = partition_key is not None or partition_number is not None
        partition = None
        if chosen:
            partition = choose_fetch_partition(
                consumer.station.partitions,
                key=partition_key,
                number=partition_number,
                rr=consumer.rr,
                station=consumer.station.internal,
            )
        same_partition = not chosen or partition == consumer.prefetched_partition
        if consumer.dls:
            result = Operation.completed("fetch", consumer.take_dls(batch_size))
        elif consumer.prefetched and same_partition:
            result = Operation.completed("fetch", consumer.take_prefetched(batch_size))
        elif consumer.prefetch_op is not None and same_partition:
            # The batch we want is already on its way: wait for it instead of pulling again.
            waiter: Operation[list[ReceivedMessage]] = Operation("fetch")
            consumer.prefetch_waiters.append((waiter, batch_size))
            return waiter
        else:
            if not chosen:
                partition = choose_fetch_partition(
                    consumer.station.partitions, rr=consumer.rr, station=consumer.station.internal
                )
            pull = self._pull(consumer, partition, batch_size, now)
            pull.prefetch_next = prefetch
            return pull.op
        if prefetch and consumer.prefetch_op is None and not consumer.prefetched:
            self._start_prefetch(consumer, partition, batch_size, now)
        return result

    def _pull(self, consumer: ConsumerState, partition: int | None, batch: int, now: float) -> Pull:
        wait = consumer.options.batch_max_wait_time
        stream = stream_name(consumer.station.internal, partition)
        token = self.session.request(
            pull_subject(stream, consumer.durable),
            pull_body(batch, wait),
            now=now,
            timeout=wait + _PULL_GRACE,
            multi=True,
            replay=False,
        )
        pull = Pull(Operation("fetch"), consumer, partition, batch)
        pull.token = token
        self._handlers[token] = pull
        self._pulls[id(pull.op)] = pull
        return pull

    def _start_prefetch(
        self, consumer: ConsumerState, partition: int | None, batch: int, now: float
    ) -> None:
        if partition is None and consumer.station.partitions:
            partition = choose_fetch_partition(
                consumer.station.partitions, rr=consumer.rr, station=consumer.station.internal
            )
        consumer.prefetch_op = self._pull(consumer, partition, batch, now).op
        consumer.prefetched_partition = partition

    def pull_finished(self, pull: Pull, now: float, *, failed: MemphisError | None = None) -> None:
        """Bookkeeping when a pull ends: store a prefetch and serve its waiters, chain the next."""
        self._pulls.pop(id(pull.op), None)
        consumer = pull.consumer
        if consumer.prefetch_op is pull.op:
            consumer.prefetch_op = None
            waiters, consumer.prefetch_waiters = consumer.prefetch_waiters, []
            if failed is not None:
                for waiter, _ in waiters:
                    waiter.fail(failed)
                return
            if not pull.abandoned:
                consumer.prefetched.extend(pull.messages)
                pull.messages = []  # now owned by the store; the op reports an empty batch
            for waiter, size in waiters:
                waiter.finish(consumer.take_prefetched(size))
            return
        idle = consumer.prefetch_op is None and not consumer.prefetched
        if pull.prefetch_next and idle and not failed and not consumer.destroyed:
            self._start_prefetch(consumer, pull.partition, pull.batch, now)

    def abandon_fetch(self, op: Operation[list[ReceivedMessage]]) -> None:
        """The caller stopped waiting for ``op`` (cancelled, timed out, stop_consume).

        Its messages will never reach user code, so they are nacked and redelivered at once
        instead of after ``max_ack_time``. A pull still waiting on the server is cancelled by
        dropping its inbox subscription: the server discards a pull request whose reply subject
        lost interest, so it cannot keep taking a share of new messages that nobody reads.
        """
        if op.done:
            if op.error is None:
                self.release_messages(op.outcome())
            return
        pull = self._pulls.pop(id(op), None)
        if pull is not None:
            # The handler stays registered: messages still in flight to the dropped inbox are
            # nacked as they arrive (Pull.on_reply), until the session says the drain is over.
            pull.abandoned = True
            self.session.abandon_request(pull.token)
            self.release_messages(pull.messages)
            pull.messages = []
            consumer = pull.consumer
            if consumer.prefetch_op is op:
                consumer.prefetch_op = None
                waiters, consumer.prefetch_waiters = consumer.prefetch_waiters, []
                for waiter, _ in waiters:
                    waiter.finish([])  # their batch was never going to come
            op.finish([])
            return
        for consumer in self._consumers.values():  # a fetch waiting for a prefetch
            waiters = consumer.prefetch_waiters
            consumer.prefetch_waiters = [w for w in waiters if w[0] is not op]

    def release_messages(self, messages: list[ReceivedMessage]) -> None:
        """Nack messages that will not be handled (given back for immediate redelivery)."""
        for message in messages:
            self._publish_all(nack_publishes(message))

    # ------------------------------------------------------------------ message actions

    def _publish_all(self, publishes: Publishes) -> None:
        session = self.session
        for subject, payload in publishes:
            if subject.startswith("$JS.ACK."):
                session.publish_to_reply(subject, payload)  # server-given: already valid
            else:
                session.publish(subject, payload)

    def ack(self, message: ReceivedMessage) -> None:
        self._publish_all(ack_publishes(message))

    def nack(self, message: ReceivedMessage) -> None:
        self._publish_all(nack_publishes(message))

    def delay(self, message: ReceivedMessage, seconds: float) -> None:
        """Raises MemphisError for a DLS resend, LocalProtocolError for a bad delay."""
        self._publish_all(delay_publishes(message, seconds))

    def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        self._publish_all(dead_letter_publishes(message, reason))
