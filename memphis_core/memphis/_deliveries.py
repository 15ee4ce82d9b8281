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
from typing import TYPE_CHECKING, Any, Final

from memphis_core.nats._errors import ConnectionClosedError, LocalProtocolError, MemphisError
from memphis_core.nats._frames import Msg

from ._control import NACKED_DLS, PM_ACKS, nacked_dls_body, pm_ack_body
from ._dispatch import Publishes
from ._errors import StationUnreachableError
from ._jetstream import ACK, NAK, TERM, AckMetadata, nak_delay_body, parse_ack_subject
from ._names import is_user_header
from ._options import ConsumerOptions
from ._partitions import RoundRobin
from ._stations import StationState

if TYPE_CHECKING:
    from ._operation import Operation

__all__ = [
    "DLS_BUFFER",
    "ConsumerState",
    "Delivery",
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


class ConsumerState:
    """One registered consumer (a member of ``options.consumer_group``)."""

    __slots__ = (
        "destroyed",
        "dls",
        "dls_sid",
        "durable",
        "handle",
        "last_pull_full",
        "options",
        "ping_at",
        "prefetch_op",
        "prefetch_waiters",
        "prefetched",
        "prefetched_partition",
        "returned",
        "rr",
        "station",
        "unreachable",
    )

    def __init__(self, station: StationState, options: ConsumerOptions) -> None:
        self.station = station
        self.options = options
        # The durable is named after the group, not the consumer: every member of a group pulls from
        # the same JetStream consumer, which is what spreads messages over the members (§7.3).
        self.durable = options.internal_group
        self.rr = RoundRobin()
        # ``maxlen`` drops the oldest silently: a resend that falls out is not lost, it stays in the
        # broker's DLS and can be resent again.
        self.dls: deque[Delivery] = deque(maxlen=DLS_BUFFER)
        self.dls_sid: int | None = None
        # Prefetch (docs/protocol.md §7.7): at most one pull in flight for it, started only
        # after the caller's own pull finished (two pulls on one durable would interleave
        # deliveries), and its batch kept with the partition it came from.
        self.prefetch_op: Operation[list[Delivery]] | None = None
        self.prefetched: deque[Delivery] = deque()
        self.prefetched_partition: int | None = None  # of the stored batch, or the one coming
        # Fetches waiting for the prefetch in flight (a second pull would interleave with it):
        # (operation, batch size, eager). Each waiter keeps its own batch size: the prefetched
        # batch is split among them in the order they asked.
        self.prefetch_waiters: list[tuple[Operation[list[Delivery]], int, bool]] = []
        # Delivered but never read: a fetch that was cancelled, an iteration left early, a
        # consume loop stopped with a batch in hand. The next fetch returns them first, while
        # their ack deadline holds; they are nacked only when the consumer goes away, so a
        # cancelled fetch never costs a delivery attempt (docs/protocol.md §7.7).
        self.returned: deque[Delivery] = deque()
        self.ping_at: float | None = None
        # Whether the last pull that ended was full on the server: more messages are probably
        # waiting, even when the consume loop received only the last part of that batch (the
        # rest was handed over earlier, see Consumers.hand_over).
        self.last_pull_full = False
        # Sticky: once the durable check (docs/protocol.md §7.9) found the group or station gone,
        # every later fetch raises at once instead of pulling from a consumer that no longer exists.
        self.unreachable = False
        self.destroyed = False
        # The frontend's public object for this consumer (where error events are routed).
        self.handle: object = None

    def holds_unexpired(self, now: float) -> bool:
        """Whether messages kept for the next fetch (given back or prefetched) are still
        within their ack deadline."""
        return any(m.deadline > now for m in self.returned) or any(
            m.deadline > now for m in self.prefetched
        )

    @property
    def name(self) -> str:
        return self.options.name

    def take_dls(self, batch_size: int) -> list[Delivery]:
        """Resent poison messages come before fresh ones (docs/protocol.md §7.7, step 1)."""
        dls = self.dls
        # At most ``batch_size``, also from the DLS buffer: the Go SDK hands out one message too few
        # here (docs/protocol.md §12.1 item 5), we give a full batch.
        return [dls.popleft() for _ in range(min(batch_size, len(dls)))]

    def take_prefetched(self, batch_size: int, now: float) -> list[Delivery]:
        """Up to ``batch_size`` prefetched messages, dropping those past their ack deadline
        (the broker has redelivered them, possibly to another member: handing them out too
        would process them twice)."""
        stored = self.prefetched
        out: list[Delivery] = []
        while stored and len(out) < batch_size:
            message = stored.popleft()
            if message.deadline > now:
                out.append(message)
        return out

    def take_returned(
        self, batch_size: int, now: float, partition: int | None, chosen: bool
    ) -> list[Delivery]:
        """Messages given back unread, oldest first (only ``partition``'s when ``chosen``),
        dropping those past their ack deadline.

        A message past its deadline is not handed out: the broker redelivers it anyway, and a
        second copy in the application would be processed twice. It needs no nack either.
        """
        out: list[Delivery] = []
        kept: deque[Delivery] = deque()
        for message in self.returned:
            # Past the deadline the broker has already redelivered it (or will before the caller can
            # ack), so acking this copy could confirm a delivery another member is now processing.
            if message.deadline <= now:
                continue
            if len(out) < batch_size and (not chosen or message.partition == partition):
                out.append(message)
            else:
                kept.append(message)
        self.returned = kept
        return out


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
        ``Nats-Msg-Id``) are hidden. The Go SDK shows ``msg-id``; see ``is_user_header``."""
        headers = self.msg.headers
        if headers is None:
            return {}
        out: dict[str, str] = {}
        for key, value in headers.items():
            # ``key not in out`` keeps the first value of a repeated key, as the Go SDK's header map
            # does (docs/protocol.md §7.14).
            if key not in out and is_user_header(key):
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
        (``$memphis*``, and the ``msg-id`` / ``Nats-Msg-Id`` idempotency keys) are hidden
        (docs/protocol.md §7.14). An empty dict when the message has none.
        """
        return self._received.headers

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
