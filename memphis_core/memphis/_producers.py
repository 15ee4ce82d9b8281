"""Producers: registration, the produce hot path, PubAck handling and schema-failure reports.

A produce is a JetStream publish with a reply subject on the session's shared inbox; the
stream's PubAck (or its error) comes back there and is matched by token (docs/protocol.md
"Producers"). Async produces are bounded by a window of messages and bytes in flight, so memory
follows the window, not how fast the caller produces.
"""

from __future__ import annotations

from typing import Final

from memphis_core.nats._errors import (
    MemphisError,
    NoRespondersError,
    RemoteProtocolError,
    RequestTimeoutError,
)
from memphis_core.nats._frames import Msg
from memphis_core.nats._inflight import PendingRequest

from . import _control as rq
from ._dispatch import Dispatcher, Publishes, ReplyHandler
from ._errors import (
    AsyncProduceError,
    ProduceFailure,
    SchemaValidationError,
    StationTemporarilyUnavailableError,
    StationUnreachableError,
)
from ._jetstream import PubAck, is_plain_pub_ack, js_api_error, parse_pub_ack, stream_info_subject
from ._operation import Operation
from ._options import ProduceOptions, ProducerOptions
from ._partitions import RoundRobin, choose_partition
from ._produce_state import PRODUCE_DONE, ProduceInput, ProduceMachine, ProduceState
from ._schemas import schema_failure_notification_body, schemaverse_dls_body
from ._stations import Stations, StationState

__all__ = [
    "DEFAULT_WINDOW",
    "DEFAULT_WINDOW_BYTES",
    "ProduceOperation",
    "ProducerState",
    "Producers",
    "encode_produce_headers",
    "schema_failure_publishes",
]

# Every produce carries a header block (docs/protocol.md §6.5), so produces are always HPUB; the
# block is assembled as bytes from a per-producer prefix, since only the msg-id and the user
# headers differ between messages.
_HEADER_START: Final = b"NATS/1.0\r\n"
#: Async produces waiting for their PubAck, at most: by count and by bytes. Memory is bounded
#: by these (and the bytes are kept for replay after a reconnect), not by how fast the caller
#: produces or how many messages it sends in all.
DEFAULT_WINDOW: Final = 4096
DEFAULT_WINDOW_BYTES: Final = 32 * 1024 * 1024
#: Failed async produces described one by one until the next flush; past this only the count
#: grows, so a broker outage under a fast producer cannot grow memory without bound.
MAX_FAILURES_KEPT: Final = 1000


# ---- transient JetStream errors (docs/cluster-client.md, "Leader elections") ----------------
# A NATS 503 on a produce means no stream leader took the message (a JetStream cluster electing
# one after a node died): it was not stored, so sending it again cannot duplicate it. Retried
# with this backoff (seconds: first delay, doubling, capped) until the produce's ack_wait.
# Short first delay: most 503s during a produce are the last moments of an election that is already
# ending; nats-server's election timeouts are 4 to 9 s, hence the cap of 1 s.
RETRY_FIRST: Final = 0.05
RETRY_MAX: Final = 1.0


# A 503 also comes back when the station's stream no longer exists (another connection destroyed
# the station): nobody will ever take the message, and retrying through ack_wait would only hide
# that. After a produce's 503, one ``$JS.API.STREAM.INFO`` tells the two apart: JetStream's
# "stream not found" (err_code 10059) is a final answer, anything else (the stream's info, an
# error with code 503, no answer within this many seconds) is treated as an election
# (docs/cluster-client.md, "Leader elections").
STATION_CHECK_TIMEOUT: Final = 2.0


def retry_delay(retries: int) -> float:
    """Seconds to wait before retry number ``retries + 1`` after a 503."""
    # The shift is bounded so a long outage cannot build a huge integer before the cap applies.
    return min(RETRY_FIRST * (1 << min(retries, 16)), RETRY_MAX)


class ProducerState:
    """One registered producer. ``in_flight`` counts produces still waiting for their PubAck."""

    __slots__ = (
        "checked_through",
        "checking",
        "destroyed",
        "failed",
        "failures",
        "gone_through",
        "header_prefix",
        "in_flight",
        "in_flight_bytes",
        "name",
        "produced",
        "rr",
        "stale",
        "station",
        "station_name",
        "window",
        "window_bytes",
    )

    def __init__(
        self, station: StationState, station_name: str, name: str, connection_id: str
    ) -> None:
        self.station = station
        self.station_name = station_name
        self.name = name
        self.rr = RoundRobin()
        # Every message carries these two (docs/protocol.md §6.5); they never
        # change for a producer, so encode them once rather than per message.
        # The producer name in ``$memphis_producedBy`` is the lower-cased one sent at creation, so
        # the broker can attribute dead letters to the producer record it stored (docs/protocol.md
        # §6.5).
        self.header_prefix = (
            _HEADER_START
            + f"$memphis_connectionId: {connection_id}\r\n$memphis_producedBy: {name}\r\n".encode()
        )
        self.in_flight = 0
        self.in_flight_bytes = 0
        self.window = DEFAULT_WINDOW
        self.window_bytes = DEFAULT_WINDOW_BYTES
        self.produced = 0  # messages handed to the wire: a failure's position
        self.failures: list[ProduceFailure] = []  # async failures not yet reported by a flush
        self.failed = 0  # how many, including those past MAX_FAILURES_KEPT
        self.destroyed = False
        # Stale, not destroyed: the user's producer object still works once the broker has it again,
        # and the next create_producer (or connection-level produce) re-registers it.
        self.stale = False  # a produce found no stream: create_producer registers again
        # One STREAM.INFO at a time per producer: an async window of 503s asks once, not 4096 times.
        self.checking = False
        # A lookup found the stream gone when this many messages had been produced: a 503 for
        # one of them fails at once. Later produces may reach a station created anew under the
        # same name, so their 503s are looked up again rather than failed on an old answer.
        # A PubAck clears it (a stream exists again). 0: nothing known to be gone.
        self.gone_through = 0
        # A lookup answered when this many messages had been produced: their 503s need no other
        # one. A lookup that got no answer leaves it, so the next 503 asks again.
        self.checked_through = 0

    def take_failures(self) -> AsyncProduceError | None:
        """The async failures since the last call, as one error (None if there were none)."""
        if not self.failed:
            return None
        error = AsyncProduceError(self._sorted_failures(), self.failed)
        error.__cause__ = self.failures[0].error if self.failures else None
        self.failures = []
        self.failed = 0
        return error

    def _sorted_failures(self) -> tuple[ProduceFailure, ...]:
        # In the order the messages were produced, not the order they failed: a produce whose
        # lookup found the station gone fails before the older ones still waiting out a backoff.
        return tuple(sorted(self.failures, key=_by_position))

    @property
    def window_full(self) -> bool:
        """An async produce must wait: too many messages, or too many bytes, unacknowledged."""
        return self.in_flight >= self.window or self.in_flight_bytes >= self.window_bytes

    @property
    def window_drained(self) -> bool:
        """A waiting async produce may go on: half of both budgets is free again.

        Waking at one free slot would ping-pong between the producing code and the I/O for
        every acknowledgement; half the window amortises it.
        """
        # Hysteresis between ``window_full`` and this: a blocked producer resumes only when both
        # budgets are half free (docs/protocol.md §13.1).
        return self.in_flight <= self.window // 2 and self.in_flight_bytes <= self.window_bytes // 2

    def subject_for(
        self, key: str | None, number: int | None, msg_id: str | None = None
    ) -> tuple[str, int | None]:
        """Subject and partition for the next message (raises LocalProtocolError on bad input)."""
        station = self.station
        partition = choose_partition(
            station.partitions,
            key=key,
            number=number,
            rr=self.rr,
            station=station.internal,
            msg_id=msg_id,
        )
        return station.subject(partition), partition


def _by_position(failure: ProduceFailure) -> int:
    return failure.position


def encode_produce_headers(
    prefix: bytes, msg_id: str | None, headers: tuple[tuple[str, str], ...]
) -> bytes:
    """The header block of one produced message (already validated user headers).

    The message id goes out twice: ``msg-id`` is what the Memphis broker's JetStream fork
    de-duplicates on, ``Nats-Msg-Id`` is what stock JetStream (our own broker) does, so
    idempotency holds on both (docs/protocol.md §6.5, §14).
    """
    # Most messages have neither: the cached prefix plus the blank line is the whole block.
    if msg_id is None and not headers:
        return prefix + b"\r\n"
    parts = [prefix]
    if msg_id is not None:
        encoded = msg_id.encode()
        # Both headers with one value: they must never disagree, or the two brokers would
        # de-duplicate differently. ``msg-id`` is hidden from consumers again (docs/protocol.md
        # §7.14).
        parts.append(b"msg-id: %b\r\nNats-Msg-Id: %b\r\n" % (encoded, encoded))
    for key, value in headers:
        parts.append(f"{key}: {value}\r\n".encode())
    parts.append(b"\r\n")
    return b"".join(parts)


def schema_failure_publishes(
    producer: ProducerState,
    exc: SchemaValidationError,
    headers: tuple[tuple[str, str], ...],
    connection_id: str,
    send_notification: bool,
) -> Publishes:
    """The reports a failed validation triggers, as publishes (docs/protocol.md §9.2).

    Nothing when the station does not send schema failures to its DLS; the notification only
    when the broker turned notifications on (``send_notification``).
    """
    station = producer.station
    # The client's flag is the only gate: the broker stores every report it gets without checking
    # the station's setting (docs/protocol.md §9.2).
    if not station.schemaverse_to_dls:
        return []
    # The bytes that would have been sent, so the DLS shows what the producer really produced (sent
    # as lower-case hex, docs/protocol.md §9.2).
    data = exc.data or b""
    error = str(exc)
    all_headers = [
        # The SDK headers are part of the report so the broker can attribute the dead letter to this
        # producer and connection, as it would for a stored message.
        ("$memphis_connectionId", connection_id),
        ("$memphis_producedBy", producer.name),
        *headers,
    ]
    publishes = [
        (
            rq.SCHEMAVERSE_DLS,
            schemaverse_dls_body(
                station.internal,
                producer_name=producer.name,
                connection_id=connection_id,
                data=data,
                headers=all_headers,
                validation_error=error,
            ),
        )
    ]
    if send_notification:
        publishes.append(
            (
                rq.NOTIFICATIONS,
                # Uses the station name as the user gave it: the notification text is for a human
                # (Slack on the real broker), not a key.
                schema_failure_notification_body(
                    producer.station_name, producer_name=producer.name, error=error, data=data
                ),
            )
        )
    return publishes


class ProduceOperation(Operation[PubAck]):
    """The operation of one produce: done with its :class:`PubAck`, or failed.

    An async produce's plain PubAck is only decoded when someone asks (``outcome``): nobody
    may, and decoding costs 0.65 us a PubAck where recognising it costs 0.18 (timeit). Anything but
    the plain shape is decoded on arrival, so a malformed reply fails the produce for
    ``flush()`` as well as for its handle.
    """

    __slots__ = ("_raw", "position")

    def __init__(self, position: int) -> None:
        super().__init__("produce")
        self._raw: bytes | None = None
        #: The message's position among its producer's messages (1-based), as failures name it.
        self.position = position

    def finish_raw(self, payload: bytes) -> None:
        """Done, with a PubAck that ``outcome`` decodes when asked."""
        if not self.done:
            self._raw = payload
            self.done = True

    def outcome(self) -> PubAck:
        raw = self._raw
        if raw is not None:
            self._raw = None
            # Cannot fail: only a payload that is_plain_pub_ack accepted is kept undecoded.
            self._result = parse_pub_ack(raw)
        return super().outcome()


class Produce(ProduceMachine):  # and so a ReplyHandler (see ProduceMachine)
    """Waits for one PubAck; keeps the producer's in-flight count and its async failures.

    A 503 (no stream leader, or no stream) is retried with backoff until ``deadline`` (the
    produce's ack_wait), then fails with ``StationTemporarilyUnavailableError``. A 503 also
    starts one lookup of the stream (:class:`_StationCheck`), unless one answered since the
    message was produced: a stream that no longer exists fails the produce at once with
    ``StationUnreachableError``.
    """

    __slots__ = (
        "deadline",
        "dispatcher",
        "is_async",
        "msg_id",
        "op",
        "position",
        "producer",
        "request",
        "retries",
        "size",
        "subject",
    )

    def __init__(
        self,
        op: ProduceOperation,
        producer: ProducerState,
        opts: ProduceOptions,
        size: int,
        position: int,
        deadline: float,
        dispatcher: Dispatcher,
        subject: str,
    ) -> None:
        self.op = op
        self.producer = producer
        self.is_async = opts.async_produce
        self.msg_id = opts.msg_id
        self.size = size
        self.position = position
        self.deadline = deadline
        self.dispatcher = dispatcher
        self.subject = subject
        super().__init__()  # WAITING; see _produce_state.py for the table
        self.retries = 0  # resends so far: the backoff grows with them
        # The session's record of the request, set once it is made: the message is held there
        # only, and the same record serves the replay after a reconnect and the resend after a 503.
        self.request: PendingRequest | None = None

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        if msg is None:
            raise AssertionError("a produce completed without a PubAck")
        return self.on_payload(token, msg.payload, now)

    def on_payload(self, token: int, payload: bytes, now: float) -> bool:
        # A PubAck is only ever read as its payload: read in bulk it comes without a Msg.
        if self.state in PRODUCE_DONE:
            return True  # the first outcome stands, as for any Operation
        # One regex match instead of a JSON parse: a PubAck is small, fixed-format JSON. Anything
        # else (an error, a duplicate, a malformed reply) takes the exact path below, so that a
        # produce the handle would report as failed is never counted as acknowledged by flush().
        if self.is_async and is_plain_pub_ack(payload):
            # Hot path: nobody reads an async produce's PubAck, only whether it failed.
            self._advance(ProduceInput.PUB_ACK)
            self.op.finish_raw(payload)
            return True
        try:
            ack = parse_pub_ack(payload)
        except (MemphisError, RemoteProtocolError) as exc:
            self._advance(ProduceInput.FAILURE)
            # Kept without its traceback: the frames in it hold this handler, and the error is
            # kept (for flush) long after, so the cycle would outlive the produce.
            self._failed(exc.with_traceback(None))
        else:
            self._advance(ProduceInput.PUB_ACK)
            self.op.finish(ack)
        return True

    def _advance(self, event: ProduceInput) -> None:
        state = self.advance(event)
        if state in PRODUCE_DONE:
            # The record points back at this handler (its owner): dropping the link lets reference
            # counting free both, and the message bytes, the moment the session lets go of the
            # record, instead of leaving every finished produce to the cycle collector.
            self.request = None
            # Only once the produce is truly over: while it retries it still occupies its window
            # slot, so a blocked async producer does not flood a station electing a leader.
            producer = self.producer
            producer.in_flight -= 1
            producer.in_flight_bytes -= self.size
            if state is ProduceState.ACKED:
                producer.gone_through = 0  # a stream took it: whatever was gone is back

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        if self.state in PRODUCE_DONE:
            return  # the first outcome stands, as for any Operation
        dispatcher = self.dispatcher
        producer = self.producer
        station = producer.station_name
        # A resend's own timeout after 503s is the same story: no stream took the message.
        # The session ends a request on a 503 at once (docs/protocol.md §6.7): the message was not
        # stored, so re-sending cannot duplicate it, unlike a resend after a timeout.
        no_stream = isinstance(error, NoRespondersError) or (
            self.state is ProduceState.RETRYING and isinstance(error, RequestTimeoutError)
        )
        if no_stream and self.position <= producer.gone_through:
            self.fail_unreachable(error)
            return
        if no_stream:
            # A produce made after the last answered lookup asks (again): a lookup that timed out
            # or died with the connection told nothing, and must not leave a gone station to
            # be retried for the whole ack_wait.
            unchecked = self.position > producer.checked_through
            if unchecked and not producer.checking and dispatcher.session.is_connected:
                self._check_station(now)
            # Transient-error retry (docs/cluster-client.md): still in flight meanwhile.
            delay = retry_delay(self.retries)
            # A timeout is never retried: the message may have been stored with its PubAck lost, and
            # only the caller (with a msg_id) can resend it safely.
            retry = isinstance(error, NoRespondersError) and now + delay < self.deadline
            request = self.request
            if (
                retry
                and request is not None
                and not producer.destroyed
                and not dispatcher.session.closed
            ):
                self.retries += 1
                self._advance(ProduceInput.NO_RESPONDERS)
                # The same bytes, reply subject and msg-id: nothing was stored the first time.
                dispatcher.session.resend(request, now=now, delay=delay)
                return
            # No stream took it all along: a long election, or the station is gone (destroyed,
            # or lost by a broker that restarted empty). The producer may be stale: the next
            # create_producer registers it again.
            producer.stale = True
            unavailable: MemphisError = StationTemporarilyUnavailableError(
                f"produce to station {station!r}: no JetStream stream took the message within "
                "ack_wait (503 no responders): a leader election"
            )
        elif isinstance(error, RequestTimeoutError):
            unavailable = RequestTimeoutError(f"produce to station {station!r}: no PubAck in time")
        else:
            # Same type, station named: callers matching on the exception class keep working, and
            # the text says which produce failed.
            unavailable = type(error)(f"produce to station {station!r}: {error}")
        self._over(unavailable, error)

    def fail_unreachable(self, cause: MemphisError) -> None:
        """The station's stream does not exist: end this produce now (its retry is cancelled)."""
        if self.state in PRODUCE_DONE:
            return
        # The retry that may still be waiting for its delay must not go out after the failure.
        if self.request is not None:
            self.dispatcher.cancel(self.request.token)
        self.producer.stale = True  # the next create_producer registers again
        self._over(
            StationUnreachableError(
                f"produce to station {self.producer.station_name!r}: station unreachable: its "
                f"stream {self.subject.partition('.')[0]!r} no longer exists"
            ),
            cause,
        )

    def _check_station(self, now: float) -> None:
        stream = self.subject.partition(".")[0]  # produce subjects are ``<stream>.<...>``
        self.producer.checking = True
        self.dispatcher.request(
            stream_info_subject(stream),
            b"",
            _StationCheck(self),
            now=now,
            timeout=min(STATION_CHECK_TIMEOUT, max(self.deadline - now, 0.001)),
            replay=False,
        )

    def _over(self, error: MemphisError, cause: MemphisError) -> None:
        error.__cause__ = cause if cause.__cause__ is None else cause.__cause__
        self._advance(ProduceInput.FAILURE)
        self._failed(error)

    def _failed(self, error: MemphisError) -> None:
        self.op.fail(error)
        if self.is_async:
            # Nobody waits for an async produce: its failure is kept for flush() and close().
            producer = self.producer
            producer.failed += 1
            # ``failed`` counts all of them, ``failures`` describes the first 1000: flush reports
            # the exact count without memory growing with an outage.
            if len(producer.failures) < MAX_FAILURES_KEPT:
                producer.failures.append(
                    ProduceFailure(producer.name, self.position, self.msg_id, error)
                )


class _StationCheck(ReplyHandler):
    """``$JS.API.STREAM.INFO`` after a produce's first 503: an election, or a gone station?"""

    __slots__ = ("produce",)

    def __init__(self, produce: Produce) -> None:
        self.produce = produce

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        if msg is None:
            raise AssertionError("STREAM.INFO completed without a reply")
        produce = self.produce
        producer = produce.producer
        producer.checking = False
        producer.checked_through = producer.produced
        error = js_api_error(msg.payload)
        # Only "not found" is final: a reply with the stream's info, or an error with code 503 (no
        # stream leader yet), is an election, and the produce's retries go on.
        if error is not None and "not found" in error.lower():
            # Every message produced so far went to the stream found gone; later ones get a
            # lookup of their own.
            producer.gone_through = producer.produced
            produce.fail_unreachable(MemphisError(f"memphis: {error}"))
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        # No answer (a 503 of the JetStream API itself, a timeout, a lost connection): nothing is
        # known, so the produce goes on as in an election, and its next 503 asks again.
        self.produce.producer.checking = False


def _check(error: str | None) -> None:
    if error is not None:
        raise MemphisError(error)


class Producers:
    """This connection's producers, cached by station and name as the Go SDK does."""

    __slots__ = (
        "_by_key",
        "_dispatcher",
        "_identity",
        "_retired",
        "_stations",
        "send_notification",
    )

    def __init__(self, dispatcher: Dispatcher, stations: Stations, identity: rq.Identity) -> None:
        self._dispatcher = dispatcher
        self._stations = stations
        self._identity = identity
        # Keyed ``<internal station>_<producer name>`` as the Go SDK keys its cache
        # (docs/protocol.md §6.9): the internal name, so ``Orders`` and ``orders`` share one
        # producer, as the broker lower-cases station names anyway.
        self._by_key: dict[str, ProducerState] = {}
        self._retired: list[ProducerState] = []  # forgotten, with produces still to report
        # Whether the broker wants schema-failure notifications; set by producer creation
        # replies and by clients-update pushes.
        self.send_notification = False

    def create(self, opts: ProducerOptions, now: float) -> Operation[ProducerState]:
        """Register a producer; one already registered under this station and name is reused."""
        key = f"{opts.internal_station}_{opts.name}"
        cached = self._by_key.get(key)
        # A cached producer whose produces found no stream: the broker may have lost it (restarted
        # empty, or the station was destroyed and created again); a fresh registration recreates the
        # station on demand (docs/protocol.md §5.6).
        if cached is not None and cached.stale:
            self._forget(cached)  # the broker forgot it: register again
            cached = None
        if cached is not None:
            return Operation.completed("create_producer", cached)
        who = self._identity
        body = rq.producer_create_body(
            opts.station_name,
            opts.name,
            connection_id=who.connection_id,
            username=who.username,
            app_id=who.app_id,
        )

        def parse(payload: bytes) -> ProducerState:
            reply = rq.parse_producer_reply(payload)
            _check(reply.error)
            station = self._stations.attach(opts.station_name, reply)
            # Each creation reply carries the current flags (docs/protocol.md §6.2): they overwrite
            # whatever an earlier reply or push set.
            station.schemaverse_to_dls = reply.schemaverse_to_dls
            self.send_notification = reply.send_notification
            cached = self._by_key.get(key)
            # Two creates of one producer can be in flight at once (two threads of a sync frontend);
            # the second registration exists on the broker too, but the cache keeps one object per
            # key.
            if cached is not None:  # created concurrently under the same name: keep the first
                self._stations.detach(station)
                return cached
            producer = ProducerState(station, opts.station_name, opts.name, who.connection_id)
            self._by_key[key] = producer
            return producer

        # Concurrent creates are not merged: each sends its own request, and the first reply to be
        # parsed wins the cache slot.
        return self._dispatcher.control("create_producer", rq.PRODUCER_CREATIONS, body, parse, now)

    def destroy(self, producer: ProducerState, now: float) -> Operation[None]:
        who = self._identity
        body = rq.producer_destroy_body(
            producer.station_name,
            producer.name,
            connection_id=who.connection_id,
            username=who.username,
        )

        def parse(reply: bytes) -> None:
            _check(rq.parse_destroy_reply(reply))
            # Only after the broker confirmed; ``not exist`` counts as confirmed (docs/protocol.md
            # §2.3), so a producer the broker already lost can still be destroyed.
            self._forget(producer)

        return self._dispatcher.control(
            "destroy_producer", rq.PRODUCER_DESTRUCTIONS, body, parse, now
        )

    def station_gone(self, internal: str) -> None:
        """The station was destroyed: its producers can only fail from now on."""
        for producer in list(self._by_key.values()):
            if producer.station.internal == internal:
                self._forget(producer)

    def _forget(self, producer: ProducerState) -> None:
        if producer.destroyed:
            return
        producer.destroyed = True
        key = f"{producer.station.internal}_{producer.name}"
        if self._by_key.get(key) is producer:
            del self._by_key[key]
        self._stations.detach(producer.station)
        if producer.in_flight or producer.failed:
            # Its produces in flight and failures not yet reported still count for close():
            # forgetting the producer must not forget them.
            self._retired.append(producer)

    def produce(
        self, producer: ProducerState, payload: bytes, opts: ProduceOptions, now: float
    ) -> ProduceOperation:
        """Choose the partition and publish serialised ``payload``; see ``Client.produce``."""
        subject, _ = producer.subject_for(opts.partition_key, opts.partition_number, opts.msg_id)
        block = encode_produce_headers(producer.header_prefix, opts.msg_id, opts.headers)
        session = self._dispatcher.session
        # A request, not a publish: the PubAck comes back on the shared inbox (docs/protocol.md §6.4
        # step 4). Replayable, so a produce made during an outage goes out after the handshake with
        # the same reply subject and msg-id.
        # The position of this message among the producer's messages: an async failure names it, so
        # the caller can tell which of many produces failed.
        position = producer.produced + 1
        op = ProduceOperation(position)
        size = len(payload)
        produce = Produce(
            op, producer, opts, size, position, now + opts.ack_wait, self._dispatcher, subject
        )
        token = session.request(
            subject, payload, headers=block, now=now, timeout=opts.ack_wait, owner=produce
        )
        # Counted once the session accepted it: a produce refused locally (too large) raises and
        # takes no window slot.
        produce.request = session.pending(token)
        producer.produced = position
        producer.in_flight += 1
        producer.in_flight_bytes += size
        return op

    def _all(self) -> list[ProducerState]:
        # Registered producers, and forgotten ones that still have something to report.
        self._retired = [p for p in self._retired if p.in_flight or p.failed]
        return [*self._by_key.values(), *self._retired]

    def in_flight(self) -> int:
        """Produces of every producer still waiting for their PubAck."""
        return sum(producer.in_flight for producer in self._all())

    def take_failures(self) -> tuple[tuple[ProduceFailure, ...], int]:
        """Every producer's unreported async failures (cleared), and how many in all."""
        failures: list[ProduceFailure] = []
        count = 0
        for producer in self._all():
            failures += producer._sorted_failures()
            count += producer.failed
            producer.failures = []
            producer.failed = 0
        return tuple(failures), count

    def report_schema_failure(
        self, producer: ProducerState, exc: SchemaValidationError, opts: ProduceOptions
    ) -> None:
        """Send the schemaverse DLS report (and notification) for a message that failed."""
        # Offline, the report is dropped rather than buffered: it is diagnostics, and it must not
        # use up the reconnect buffer that acks and produces need.
        if self._dispatcher.session.is_connected:
            self._dispatcher.publish(
                schema_failure_publishes(
                    producer,
                    exc,
                    opts.headers,
                    self._identity.connection_id,
                    self.send_notification,
                )
            )
