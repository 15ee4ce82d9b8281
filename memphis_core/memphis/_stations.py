"""What one connection knows about stations: partitions, produce subjects and the live schema.

A station's partitions list and schema are shared by every producer and consumer of that
station on one connection. The Go SDK stores them per internal station name and lets each
creation reply overwrite them (docs/protocol.md §6.2); schema updates pushed by the broker
on ``$memphis_schema_updates_<internal>`` land here too, and so reach producers and consumers that
are already running. The subscription to those updates lives as long as some producer or
consumer of ours uses the station (a reference count).
"""

from __future__ import annotations

from . import _control as rq
from ._dispatch import Dispatcher
from ._names import internal_name
from ._partitions import produce_subject
from ._schemas import Schema, parse_schema_update
from ._validators import serialize_plain

__all__ = ["StationState", "Stations"]


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
        # Cached subjects are dropped with every new list: a subject built for the old functions map
        # could send a partition's messages past (or into) a function that changed.
        self._subjects = {}

    def subject(self, partition: int | None) -> str:
        """The produce subject of a partition, built once (a hot path: every message)."""
        # Keyed by partition number, with None for a legacy station's single stream
        # (docs/protocol.md §5.8), so the subject is not rebuilt for every message.
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
        # Read at call time: a schema push between two produces applies to the second one at once
        # (docs/protocol.md §4.2).
        return serialize_plain(message) if schema is None else schema.serialize(message)


class Stations:
    """The stations this connection's producers and consumers use."""

    __slots__ = ("_by_internal", "_dispatcher")

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        # Keyed by internal name, as the Go SDK keys its maps, so ``Orders.EU`` and ``orders.eu``
        # share one entry; the consumer-side lookups by external name are the Go SDK's bug we avoid
        # (docs/protocol.md §12.1 item 7).
        self._by_internal: dict[str, StationState] = {}

    def find(self, internal: str) -> StationState | None:
        return self._by_internal.get(internal)

    def attach(self, name: str, reply: rq.ProducerCreated | rq.ConsumerCreated) -> StationState:
        """Apply a creation reply to the station; follow its schema updates while in use."""
        internal = internal_name(name)
        station = self._by_internal.get(internal)
        if station is None:
            station = self._by_internal[internal] = StationState(name, internal)
        # Only a producer reply carries the functions map; a consumer's keeps what we knew.
        functions = dict(reply.functions) if isinstance(reply, rq.ProducerCreated) else None
        # Each reply overwrites the list (docs/protocol.md §6.2): the latest creation reply is the
        # broker's current view of the station.
        station.set_routing(
            tuple(reply.partitions), station.functions if functions is None else functions
        )
        # The reply carries the schema because the push subscription is made only after it: a schema
        # enforced in between would otherwise be missed (docs/protocol.md §4.2).
        station.schema = None if reply.schema is None else Schema(reply.schema)
        # One subscription per station, however many producers and consumers use it: each push then
        # arrives once, and the station is the target that ``Client._on_push`` recognises.
        if station.schema_sid is None:
            station.schema_sid = self._dispatcher.subscribe(
                rq.schema_updates_subject(station.internal), station
            )
        station.refcount += 1
        return station

    def detach(self, station: StationState) -> None:
        """One producer or consumer stopped using the station; forget it after the last."""
        station.refcount -= 1
        if station.refcount > 0:
            return
        if station.schema_sid is not None:
            self._dispatcher.unsubscribe(station.schema_sid)
            station.schema_sid = None
        # Clamped: a detach after ``station_gone`` already dropped it must not leave a negative
        # count that a later attach would have to climb back from.
        station.refcount = 0
        # Identity check: after a station was destroyed and used again, the dict may hold a newer
        # StationState for the same name, which must survive the old one's last detach.
        if self._by_internal.get(station.internal) is station:
            del self._by_internal[station.internal]

    @staticmethod
    def on_schema_update(station: StationState, payload: bytes) -> None:
        """A push on ``$memphis_schema_updates_<internal>``: swap the station's schema."""
        # A push that does not parse leaves the schema as it is (``None`` from the parser): dropping
        # validation because of one bad push would let invalid messages through.
        update = parse_schema_update(payload)
        if update is not None:
            station.schema = None if update.schema is None else Schema(update.schema)
