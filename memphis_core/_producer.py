"""Per-station and per-producer client state, and the produce hot path.

A station's partitions list and schema are shared by every producer and consumer of the
station on one connection (memphis-client-protocol section 7.2: the Go SDK stores them per
internal station and each creation reply overwrites them); schema updates pushed by the broker
(section 5.2) land there and so reach producers and consumers already running.
"""

from __future__ import annotations

from typing import Final

from ._errors import MemphisError
from ._partitions import RoundRobin, choose_partition, produce_subject
from ._requests import NOTIFICATIONS, SCHEMAVERSE_DLS
from ._schemas import (
    Schema,
    SchemaValidationError,
    schema_failure_notification_body,
    schemaverse_dls_body,
    serialize_plain,
)

__all__ = [
    "DEFAULT_WINDOW",
    "DEFAULT_WINDOW_BYTES",
    "ProducerState",
    "StationState",
    "encode_produce_headers",
    "schema_failure_publishes",
]

_HEADER_START: Final = b"NATS/1.0\r\n"
#: Async produces waiting for their PubAck, at most: by count and by bytes. Memory is bounded
#: by these (and the bytes are kept for replay after a reconnect), not by how fast the caller
#: produces or how many messages it sends in all.
DEFAULT_WINDOW: Final = 4096
DEFAULT_WINDOW_BYTES: Final = 32 * 1024 * 1024


class StationState:
    """What this connection knows about one station (keyed by internal name)."""

    __slots__ = (
        "_subjects",
        "functions",
        "internal",
        "name",
        "partitions",
        "refcount",
        "schema",
        "schema_sid",
        "schemaverse_to_dls",
    )

    def __init__(self, name: str, internal: str) -> None:
        self.name = name
        self.internal = internal
        self.partitions: tuple[int, ...] = ()
        self.schema: Schema | None = None
        self.schemaverse_to_dls = False
        self.functions: dict[int, int] = {}
        self.schema_sid: int | None = None  # subscription to $memphis_schema_updates_<internal>
        self.refcount = 0  # producers + consumers using the subscription
        self._subjects: dict[int | None, str] = {}  # partition -> produce subject

    def set_routing(self, partitions: tuple[int, ...], functions: dict[int, int]) -> None:
        """New partitions list / functions map from a creation reply (each reply overwrites)."""
        self.partitions = partitions
        self.functions = functions
        self._subjects = {}

    def subject(self, partition: int | None) -> str:
        """The produce subject of a partition, built once (a hot path: every message)."""
        subject = self._subjects.get(partition)
        if subject is None:
            subject = self._subjects[partition] = produce_subject(
                self.internal, partition, self.functions
            )
        return subject

    def serialize(self, message: object) -> bytes:
        """Bytes to publish for ``message``: validated when the station enforces a schema.

        Raises:
            MemphisSchemaError: validation failed (``SchemaValidationError``) or the message type
                is not supported.
        """
        schema = self.schema
        return serialize_plain(message) if schema is None else schema.serialize(message)


class ProducerState:
    """One registered producer. ``in_flight`` counts produces still waiting for their PubAck."""

    __slots__ = (
        "destroyed",
        "first_error",
        "header_prefix",
        "in_flight",
        "in_flight_bytes",
        "name",
        "rr",
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
        # Section 7.4 step 1: every message carries these two; they never change for a
        # producer, so encode them once rather than per message.
        self.header_prefix = (
            _HEADER_START
            + f"$memphis_connectionId: {connection_id}\r\n$memphis_producedBy: {name}\r\n".encode()
        )
        self.in_flight = 0
        self.in_flight_bytes = 0
        self.window = DEFAULT_WINDOW
        self.window_bytes = DEFAULT_WINDOW_BYTES
        self.first_error: MemphisError | None = None
        self.destroyed = False

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
        return self.in_flight <= self.window // 2 and self.in_flight_bytes <= self.window_bytes // 2

    def subject_for(self, key: str | None, number: int | None) -> tuple[str, int | None]:
        """Subject and partition for the next message (raises LocalProtocolError on bad input)."""
        station = self.station
        partition = choose_partition(
            station.partitions, key=key, number=number, rr=self.rr, station=station.internal
        )
        return station.subject(partition), partition


def encode_produce_headers(
    prefix: bytes, msg_id: str | None, headers: tuple[tuple[str, str], ...]
) -> bytes:
    """The header block of one produced message (already validated user headers).

    The message id goes out twice: ``msg-id`` is what the Memphis broker's JetStream fork
    de-duplicates on, ``Nats-Msg-Id`` is what stock JetStream (our own broker) does (DESIGN
    section 3, memphis-broker-protocol section 11.1), so idempotency holds on both.
    """
    if msg_id is None and not headers:
        return prefix + b"\r\n"
    parts = [prefix]
    if msg_id is not None:
        encoded = msg_id.encode()
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
) -> list[tuple[str, bytes]]:
    """The reports a failed validation triggers (sections 7.7 and 7.8), as publishes.

    Nothing when the station does not send schema failures to its DLS; the notification only
    when the broker turned notifications on (``send_notification``).
    """
    station = producer.station
    if not station.schemaverse_to_dls:
        return []
    data = exc.data or b""
    error = str(exc)
    all_headers = [
        ("$memphis_connectionId", connection_id),
        ("$memphis_producedBy", producer.name),
        *headers,
    ]
    publishes = [
        (
            SCHEMAVERSE_DLS,
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
                NOTIFICATIONS,
                schema_failure_notification_body(
                    producer.station_name, producer_name=producer.name, error=error, data=data
                ),
            )
        )
    return publishes
