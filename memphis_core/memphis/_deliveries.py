"""What a consumer holds: its buffers, each message delivered to it, and how one is settled.

A :class:`Delivery` is one message handed to a consumer, from a JetStream pull or a DLS resend
(a core NATS push from the broker). Settling it (ack, nack, delay, dead letter) is a publish to
its ack subject, or to a ``$memphis_*`` subject for a resend that has no ack subject
(docs/protocol.md "Consumers"). :class:`MessageView` is the read-only face that the frontends'
public ``Message`` classes extend with those actions.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final

from memphis_core.nats._errors import ConnectionClosedError, LocalProtocolError, MemphisError
from memphis_core.nats._frames import Msg
from memphis_core.nats._state import TableEnum, step

from ._control import NACKED_DLS, PM_ACKS, nacked_dls_body, pm_ack_body
from ._dispatch import Publishes
from ._errors import StationUnreachableError
from ._jetstream import ACK, NAK, TERM, AckMetadata, nak_delay_body, parse_ack_subject
from ._names import is_shown_header, trace_carrier
from ._options import ConsumerOptions
from ._partitions import RoundRobin
from ._stations import StationState

__all__ = [
    "DLS_BUFFER",
    "LIFE_TABLE",
    "ConsumerLife",
    "ConsumerState",
    "Delivery",
    "Held",
    "LifeInput",
    "MessageView",
    "ack_publishes",
    "consume_should_stop",
    "dead_letter_publishes",
    "delay_publishes",
    "nack_publishes",
]

#: Resent poison messages kept for fetch() while no handler takes them (docs/protocol.md
#: §7.10: the Go SDK keeps 10 000 and overwrites the oldest; so do we, which bounds memory).
DLS_BUFFER: Final = 10_000
# Headers the broker adds to a resent dead letter (docs/protocol.md §7.10). A resend has no
# JetStream ack subject, so these two are the only way to acknowledge it (§7.11).
_PM_ID: Final = "$memphis_pm_id"
_PM_CG: Final = "$memphis_pm_cg_name"


class Held:
    """The deliveries one consumer holds unread: one queue per partition, plus DLS resends.

    Everything a fetch, an iteration or a consume loop hands out is taken from here, and
    everything that did not reach user code comes back here: a pull's messages as they arrive
    (whether or not a fetch waits for them), and those given back by a cancelled fetch, a
    stopped consume loop or a closing connection. Each partition's queue is oldest first, so
    what was given back is handed out before what arrived after it (docs/protocol.md §7.7).
    """

    __slots__ = ("backlog", "dls", "partitions", "turn")

    def __init__(self) -> None:
        self.partitions: dict[int | None, deque[Delivery]] = {}
        # ``maxlen`` drops the oldest silently: a resend that falls out is not lost, it stays in the
        # broker's DLS and can be resent again.
        self.dls: deque[Delivery] = deque(maxlen=DLS_BUFFER)
        # Per partition, how many messages the server said were still waiting after the last one it
        # delivered (the ``pending`` token of the ack subject, docs/protocol.md §7.14): a consume
        # loop pulls again at once while it is not zero.
        self.backlog: dict[int | None, int] = {}
        self.turn = 0  # which partition a fetch over several takes from first (fairness)

    def add(self, message: Delivery) -> None:
        """A message that just arrived: the newest of its partition."""
        queue = self.partitions.get(message.partition)
        if queue is None:
            queue = self.partitions[message.partition] = deque()
        queue.append(message)

    def give_back(self, messages: list[Delivery]) -> None:
        """Messages handed out but never read: they go before what arrived since."""
        for message in reversed(messages):
            queue = self.partitions.get(message.partition)
            if queue is None:
                queue = self.partitions[message.partition] = deque()
            queue.appendleft(message)

    def count(self, partitions: tuple[int | None, ...], now: float) -> int:
        """How many messages a fetch over ``partitions`` could take now (those past their
        deadline at the front of a queue are dropped first)."""
        total = len(self.dls)
        for partition in partitions:
            queue = self.partitions.get(partition)
            if queue:
                _drop_expired(queue, now)
                total += len(queue)
        return total

    def holding(self, partitions: tuple[int | None, ...]) -> list[int | None]:
        """Those of ``partitions`` whose queue is not empty (expired messages included)."""
        queues = self.partitions
        return [p for p in partitions if queues.get(p)]

    def take(self, partitions: tuple[int | None, ...], size: int, now: float) -> list[Delivery]:
        """Up to ``size`` messages: resent dead letters first (docs/protocol.md §7.7, step 1),
        then the partitions' queues in turn, one message each, starting at a partition that
        moves on with every take, so no partition waits behind a busy one."""
        dls = self.dls
        # At most ``size``, also from the DLS buffer: the Go SDK hands out one message too few here
        # (docs/protocol.md §12.1 item 5), we give a full batch.
        out = [dls.popleft() for _ in range(min(size, len(dls)))]
        queues = []
        for partition in partitions:
            queue = self.partitions.get(partition)
            if queue:
                _drop_expired(queue, now)
                if queue:
                    queues.append(queue)
        if queues and len(out) < size:
            self.turn += 1
            start = self.turn % len(queues)
            queues = queues[start:] + queues[:start]
            while len(out) < size and queues:
                for queue in list(queues):
                    if len(out) == size:
                        break
                    message = queue.popleft()
                    if message.deadline > now:
                        out.append(message)
                    if not queue:
                        queues.remove(queue)
        return out

    def clear(self) -> list[Delivery]:
        """Everything held, which the caller now owns (to nack it)."""
        out = [m for queue in self.partitions.values() for m in queue]
        self.partitions.clear()
        out.extend(self.dls)
        self.dls.clear()
        return out


def _drop_expired(queue: deque[Delivery], now: float) -> None:
    # Past its deadline the broker has already redelivered a message (or will before the caller can
    # ack), maybe to another member: handing it out too would process it twice. It needs no nack.
    # Deadlines grow along a queue, so only its front is checked here; ``take`` checks each
    # message it hands out, for the rare one given back after a refresh moved its deadline.
    while queue and queue[0].deadline <= now:
        queue.popleft()


class ConsumerLife(TableEnum):
    """Whether a consumer can still be read from (``ConsumerState.life``)."""

    ACTIVE = "active"  # registered; its durables exist as far as we know
    UNREACHABLE = "unreachable"  # its station or the group's durable is gone: fetches fail
    DESTROYED = "destroyed"  # the broker confirmed our destroy: using it is the caller's mistake


class LifeInput(TableEnum):
    GONE = "gone"  # a durable check or a pull found the durable or the station gone
    DESTROY = "destroy"  # the broker confirmed the destroy this client asked for


_L, _LI = ConsumerLife, LifeInput
#: Every (state, input) pair is allowed; the table is walked by a test.
LIFE_TABLE: Final = {
    (_L.ACTIVE, _LI.GONE): _L.UNREACHABLE,
    (_L.ACTIVE, _LI.DESTROY): _L.DESTROYED,
    (_L.UNREACHABLE, _LI.GONE): _L.UNREACHABLE,
    (_L.UNREACHABLE, _LI.DESTROY): _L.DESTROYED,
    # A pull of ours hears "consumer deleted" after our own destroy: nothing to tell anyone.
    (_L.DESTROYED, _LI.GONE): _L.DESTROYED,
    (_L.DESTROYED, _LI.DESTROY): _L.DESTROYED,
}


class ConsumerState:
    """One registered consumer (a member of ``options.consumer_group``)."""

    __slots__ = (
        "dls_sid",
        "durable",
        "handle",
        "held",
        "life",
        "options",
        "ping_at",
        "rr",
        "station",
    )

    def __init__(self, station: StationState, options: ConsumerOptions) -> None:
        self.station = station
        self.options = options
        # The durable is named after the group, not the consumer: every member of a group pulls from
        # the same JetStream consumer, which is what spreads messages over the members (§7.3).
        self.durable = options.internal_group
        self.held = Held()
        # Only ``choose_partition``'s signature needs it: a fetch without a key or a number reads
        # every partition (``Held.take`` keeps that fair).
        self.rr = RoundRobin()
        self.dls_sid: int | None = None
        self.ping_at: float | None = None
        # Sticky: once the durable check (docs/protocol.md §7.9) found the group or station gone,
        # every later fetch raises at once instead of pulling from a consumer that no longer exists.
        # Set only by ``step``, from ``LIFE_TABLE``.
        self.life = ConsumerLife.ACTIVE
        # The frontend's public object for this consumer (where error events are routed).
        self.handle: object = None

    @property
    def name(self) -> str:
        return self.options.name

    def step(self, event: LifeInput) -> ConsumerLife:
        """Move ``life`` along ``LIFE_TABLE``; return the state it was in."""
        before = self.life
        self.life = step(LIFE_TABLE, before, event, "the consumer")
        return before

    @property
    def active(self) -> bool:
        """Neither gone nor destroyed: pulls may start and what arrives is kept."""
        return self.life is ConsumerLife.ACTIVE

    @property
    def unreachable(self) -> bool:
        """The station or the group's durable is gone (a destroyed consumer is not)."""
        return self.life is ConsumerLife.UNREACHABLE

    @property
    def destroyed(self) -> bool:
        return self.life is ConsumerLife.DESTROYED


def consume_should_stop(error: MemphisError | None) -> bool:
    """Whether a consume loop must end after ``error`` instead of pulling again."""
    # StationTemporarilyUnavailableError is deliberately absent: a 503 during a leader election
    # heals within seconds, and the loop must survive it (docs/cluster-client.md, "Leader
    # elections").
    return isinstance(error, StationUnreachableError | ConnectionClosedError)


class Delivery:
    """A message delivered to a consumer: from a pull (JetStream) or a DLS resend (core NATS).

    ``deadline`` is the monotonic time after which the broker will have redelivered it
    (received + ``max_ack_time``, less a margin); infinite for a DLS resend, which the broker
    does not redeliver on a timer. ``settled`` records the first ack, nack, delay or dead letter:
    a message is settled once.
    """

    __slots__ = ("_meta", "consumer", "deadline", "msg", "partition", "settled")

    def __init__(
        self,
        msg: Msg,
        consumer: ConsumerState,
        partition: int | None,
        deadline: float = math.inf,
    ) -> None:
        self.msg = msg
        self.consumer = consumer
        self.partition = partition
        self.deadline = deadline
        self.settled: str | None = None
        self._meta: AckMetadata | None = None

    @property
    def data(self) -> bytes:
        return self.msg.payload

    @property
    def headers(self) -> dict[str, str]:
        """User headers: the first value of each key; the SDK's own (``$memphis*``, ``msg-id``,
        ``Nats-Msg-Id``, trace context) are hidden. The Go SDK shows ``msg-id``; see
        ``is_shown_header``."""
        headers = self.msg.headers
        if headers is None:
            return {}
        out: dict[str, str] = {}
        for key, value in headers.items():
            # ``key not in out`` keeps the first value of a repeated key, as the Go SDK's header map
            # does (docs/protocol.md §7.14).
            if key not in out and is_shown_header(key):
                out[key] = value
        return out

    def header(self, key: str) -> str | None:
        headers = self.msg.headers
        return None if headers is None else headers.get(key)

    @property
    def metadata(self) -> AckMetadata | None:
        # Parsed on first use and cached: most handlers read none of the metadata, and the ack
        # subject of every pulled message would otherwise be split even when only ``ack`` is called.
        if self._meta is None and self.msg.reply is not None:
            self._meta = parse_ack_subject(self.msg.reply)
        return self._meta

    @property
    def sequence_number(self) -> int:
        """The stream sequence; 0 for a DLS resend (as in the Go SDK, docs/protocol.md §7.14)."""
        meta = self.metadata
        return 0 if meta is None else meta.stream_seq

    @property
    def delivery_count(self) -> int:
        meta = self.metadata
        return 0 if meta is None else meta.delivered

    @property
    def msg_id(self) -> str | None:
        # Written twice by producers (docs/protocol.md §6.5): ``msg-id`` for the Memphis broker's
        # JetStream fork, ``Nats-Msg-Id`` for stock JetStream; either one names the message.
        return self.header("msg-id") or self.header("Nats-Msg-Id")

    @property
    def pm_id(self) -> str | None:
        return self.header(_PM_ID)

    @property
    def pm_cg_name(self) -> str | None:
        return self.header(_PM_CG)

    def __repr__(self) -> str:
        return f"<Delivery seq={self.sequence_number} {len(self.data)} bytes>"


def ack_publishes(message: Delivery) -> Publishes:
    """``+ACK``; a DLS resend has no ack subject and is acknowledged on ``$memphis_pm_acks``."""
    reply = message.msg.reply
    if reply is not None:
        return [(reply, ACK)]
    pm_id, cg = message.pm_id, message.pm_cg_name
    # A core NATS message without the resend headers was not sent by the broker's resend: there is
    # nothing to acknowledge it to.
    if pm_id is None or cg is None:
        return []
    try:
        # The broker removes this group from the dead letter and deletes it when no group is left
        # (docs/protocol.md §7.11); the body carries the id as a JSON number, hence the parse.
        return [(PM_ACKS, pm_ack_body(pm_id, cg))]
    except LocalProtocolError:
        return []  # the broker sent a malformed id: nothing we could acknowledge


def nack_publishes(message: Delivery) -> Publishes:
    """``-NAK``: redeliver now. A DLS resend has nothing to nack."""
    reply = message.msg.reply
    # A resend cannot be nacked: it was published once, as core NATS, and nothing redelivers it
    # (docs/protocol.md §7.11). A no-op rather than an error, so a generic handler works on both.
    return [] if reply is None else [(reply, NAK)]


def delay_publishes(message: Delivery, seconds: float) -> Publishes:
    """``-NAK {"delay": ns}``.

    Raises:
        MemphisError: ``cannot delay DLS message`` (the check the Go SDK means to make).
        LocalProtocolError: a negative delay.
    """
    reply = message.msg.reply
    if reply is None:
        # The Go SDK means to refuse this but checks the filtered headers, so it never does
        # (docs/protocol.md §12.1 item 4); we refuse it, with its text.
        raise MemphisError("cannot delay DLS message")
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
        raise LocalProtocolError(f"delay must be a finite number of seconds >= 0, not {seconds!r}")
    return [(reply, nak_delay_body(seconds))]


def dead_letter_publishes(message: Delivery, reason: str) -> Publishes:
    """``+TERM`` then the ``$memphis_nacked_dls`` report that makes the broker store it."""
    reply = message.msg.reply
    if reply is None:
        return []
    consumer = message.consumer
    body = nacked_dls_body(
        consumer.station.internal,
        error=reason,
        partition=message.partition or 1,  # the broker refuses 0; legacy stations use 1
        cg_name=consumer.options.consumer_group,
        seq=message.sequence_number,
    )
    # +TERM first: it stops further deliveries of the message even if the report that
    # follows is lost; the report only makes the broker store a copy (docs/protocol.md §9.3).
    return [(reply, TERM), (NACKED_DLS, body)]


class MessageView:
    """The read-only face of a received message that every frontend's ``Message`` shares.

    Frontends subclass it and add the actions (``ack``, ``nack``, ``delay``, ``dead_letter``),
    which are blocking calls in one and coroutines in the others.
    """

    __slots__ = ("_received",)

    def __init__(self, received: Delivery) -> None:
        self._received = received

    @property
    def data(self) -> bytes:
        """The payload as sent by the producer (``bytes``), exactly as stored in the stream.

        No schema is applied: with a schema on the station, use :meth:`data_deserialized`.
        """
        return self._received.data

    @property
    def headers(self) -> dict[str, str]:
        """User headers, as a new ``dict[str, str]`` on each access.

        Only the first value of a key given several times is kept. The SDK's own headers
        (``$memphis*``, the ``msg-id`` / ``Nats-Msg-Id`` idempotency keys, and the W3C
        ``traceparent`` / ``tracestate`` of docs/tracing.md) are hidden (docs/protocol.md
        §7.14). An empty dict when the message has none.
        """
        return self._received.headers

    @property
    def trace_context(self) -> dict[str, str]:
        """The W3C trace context the message carries, which :attr:`headers` hides: its
        ``traceparent`` and ``tracestate`` headers, keyed in lower case (docs/tracing.md).

        A carrier for an OpenTelemetry propagator's ``extract``, to make a span of your own
        (in a ``for`` / ``async for`` body, say) that continues or links to the producer's.
        An empty dict when the producer sent none (another SDK, the instrumentation off).
        """
        headers = self._received.msg.headers
        return {} if headers is None else trace_carrier(headers.items())

    @property
    def sequence_number(self) -> int:
        """The message's sequence number in its partition's stream (from 1, an ``int``).

        Taken from the JetStream ack subject. 0 for a dead letter resent by the broker, which
        arrives without one (docs/protocol.md §7.10, §7.14).
        """
        return self._received.sequence_number

    @property
    def delivery_count(self) -> int:
        """How many times the broker has delivered this message to the group, this one included.

        1 on the first delivery; it grows with each nack, delay or ``max_ack_time`` expiry,
        up to the consumer's ``max_msg_deliveries``, after which the message becomes a dead
        letter (docs/protocol.md §7.8, §9.1). 0 for a dead letter resent by the broker.
        """
        return self._received.delivery_count

    @property
    def msg_id(self) -> str | None:
        """The idempotency key the producer gave (``produce(msg_id=...)``), or None.

        The broker stores one message per key within its duplicates window; the key travels in
        the ``msg-id`` header, which :attr:`headers` hides (docs/protocol.md §6.5, §7.14).
        """
        return self._received.msg_id

    @property
    def consumer_sequence(self) -> int:
        """This delivery's sequence in the group's durable consumer (from 1; each redelivery
        gets a new one). 0 for a dead letter resent by the broker. From the ack subject."""
        meta = self._received.metadata
        return 0 if meta is None else meta.consumer_seq

    @property
    def timestamp(self) -> float | None:
        """When the broker stored the message: seconds since the Unix epoch (UTC, a
        ``float``), from the ack subject. None for a dead letter resent by the broker."""
        meta = self._received.metadata
        return None if meta is None else meta.timestamp_ns / 1e9

    @property
    def pending(self) -> int:
        """How many messages the broker still held for the group after this one when it
        delivered it (the ack subject's ``pending``). 0 for a dead letter resent by the broker."""
        meta = self._received.metadata
        return 0 if meta is None else meta.pending

    @property
    def partition(self) -> int | None:
        """The partition (from 1) whose stream the message was pulled from.

        None for a legacy station's single stream (docs/protocol.md §5.8; the Go SDK calls it
        partition 1) and for a dead letter resent by the broker, which arrives as a core NATS
        message from no stream (docs/protocol.md §7.10).
        """
        return self._received.partition

    def data_deserialized(self) -> Any:
        """Decode with the station's schema, or raw bytes without one.

        What it returns depends on the station's schema, known only at run time: a ``dict`` (or
        whatever JSON value was sent) for JSON Schema and Avro, a protobuf message for
        protobuf, ``str`` for GraphQL, ``bytes`` without a schema. Hence ``Any``: index a JSON
        station's dict, or annotate the variable (``order: dict[str, Any] = ...``), without a
        cast.

        Raises:
            MemphisSchemaError: the data does not match the station's current schema.
        """
        schema = self._received.consumer.station.schema
        # The schema is looked up now, not at delivery: a schema attached or detached since then is
        # the one the caller expects to see (docs/protocol.md §7.14, §4.2).
        return bytes(self.data) if schema is None else schema.deserialize(self.data)

    def __repr__(self) -> str:
        return f"<Message seq={self.sequence_number} {len(self.data)} bytes>"
