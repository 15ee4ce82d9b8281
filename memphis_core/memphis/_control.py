"""The Memphis control-plane wire format: subjects, request bodies and reply parsers (pure).

Every ``$memphis_*`` request is a plain NATS request whose payload is a JSON object
(docs/protocol.md §2). The builders below emit exactly the keys of the reference,
in the reference's order (the Go SDK's struct order, docs/protocol.md §5, §7), as
compact UTF-8 JSON. The
broker decodes them with Go's ``encoding/json`` and so does not care about order or spacing, but a
stable, documented byte form makes captures diffable against the Go SDK and keeps tests exact.

Replies come in two styles (docs/protocol.md §2):

* **plain string**: empty body = success, anything else = the error text; some callers treat
  a text containing ``already exist`` / ``not exist`` as success;
* **JSON** with an ``error`` field; a body that is not a JSON object falls back to the plain-string
  rule (old brokers, and the real broker's own error path for consumer creation, docs/protocol.md
  §7.2).

Parsers never raise on a broker's *error text*: they return it for the session to turn into the
typed error. They raise ``RemoteProtocolError`` only when a JSON reply has the wrong shape. The
``$memphis_sdk_clients_updates`` (docs/protocol.md §4.1) and functions (docs/protocol.md §4.3)
broadcasts are parsed
here too; those parsers never raise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, TypedDict

from memphis_core.nats._errors import LocalProtocolError, RemoteProtocolError

from ._enums import SchemaType, coerce_enum
from ._names import internal_name, name_error
from ._options import (
    ConsumerOptions,
    StationOptions,
    producer_options,
)
from ._schemas import SchemaInit, fold_keys, parse_schema_init

__all__ = [
    "ALREADY_EXIST",
    "CONSUMER_CREATIONS",
    "CONSUMER_DESTRUCTIONS",
    "CREATE_REQ_VERSION",
    "DESTROY_REQ_VERSION",
    "NACKED_DLS",
    "NOTIFICATIONS",
    "NOT_EXIST",
    "PM_ACKS",
    "PRODUCER_CREATIONS",
    "PRODUCER_DESTRUCTIONS",
    "SCHEMAVERSE_DLS",
    "SCHEMA_ATTACHMENTS",
    "SCHEMA_CREATIONS",
    "SCHEMA_DETACHMENTS",
    "SDK_CLIENTS_UPDATES",
    "SDK_LANG",
    "STATION_CREATIONS",
    "STATION_DESTRUCTIONS",
    "ClientsUpdate",
    "ConsumerCreateRequest",
    "ConsumerCreated",
    "DlsConfiguration",
    "Identity",
    "ProducerCreateRequest",
    "ProducerCreated",
    "StationCreateRequest",
    "consumer_destroy_body",
    "dls_subject",
    "encode_consumer_create",
    "encode_station_create",
    "nacked_dls_body",
    "parse_clients_update",
    "parse_consumer_reply",
    "parse_destroy_reply",
    "parse_plain_reply",
    "parse_producer_reply",
    "parse_schema_create_reply",
    "parse_station_create_reply",
    "pm_ack_body",
    "producer_create_body",
    "producer_destroy_body",
    "schema_attach_body",
    "schema_create_body",
    "schema_detach_body",
    "schema_updates_subject",
    "station_destroy_body",
]

# Subjects (docs/protocol.md §3).
STATION_CREATIONS: Final = "$memphis_station_creations"
STATION_DESTRUCTIONS: Final = "$memphis_station_destructions"
PRODUCER_CREATIONS: Final = "$memphis_producer_creations"
PRODUCER_DESTRUCTIONS: Final = "$memphis_producer_destructions"
CONSUMER_CREATIONS: Final = "$memphis_consumer_creations"
CONSUMER_DESTRUCTIONS: Final = "$memphis_consumer_destructions"
SCHEMA_CREATIONS: Final = "$memphis_schema_creations"
SCHEMA_ATTACHMENTS: Final = "$memphis_schema_attachments"
SCHEMA_DETACHMENTS: Final = "$memphis_schema_detachments"
SCHEMAVERSE_DLS: Final = "$memphis_schemaverse_dls"
NOTIFICATIONS: Final = "$memphis_notifications"
PM_ACKS: Final = "$memphis_pm_acks"
NACKED_DLS: Final = "$memphis_nacked_dls"
# One subject for every client of the broker, not one per station: each client filters the pushes by
# station itself (docs/protocol.md §4.1).
SDK_CLIENTS_UPDATES: Final = "$memphis_sdk_clients_updates"

# docs/protocol.md §2.5: req_version 4 (sdk_lang) for creations, 1 (connection_id) for destructions.
# Below 4 the broker replaces ``app_id`` with the connection id, and below 2 it refuses partitioned
# stations and creates no missing station (docs/protocol.md §2.5).
CREATE_REQ_VERSION: Final = 4
DESTROY_REQ_VERSION: Final = 1
#: ``sdk_lang`` as memphis-py sends it (docs/protocol.md §2.5); the broker only
#: stores it.
SDK_LANG: Final = "python"


class Identity(NamedTuple):
    """Who we are in the control requests that carry it: the Memphis user, this connection's
    id (the one in the CONNECT name) and this process's ``app_id``."""

    username: str
    connection_id: str
    app_id: str


def schema_updates_subject(internal_station: str) -> str:
    """``$memphis_schema_updates_<internal>`` (docs/protocol.md §4.2)."""
    return f"$memphis_schema_updates_{internal_station}"


def dls_subject(internal_station: str, internal_group: str) -> str:
    """``$memphis_dls_<internal>.<internalCG>``: subject *and* queue group (docs/protocol.md
    §7.10)."""
    # The ``.`` form only: the broker publishes each resend to an older ``_`` form too, and
    # subscribing to both would hand every resent message to this group twice (docs/protocol.md
    # §7.10).
    return f"$memphis_dls_{internal_station}.{internal_group}"


# ------------------------------------------------------------------------------ wire shapes


class DlsConfiguration(TypedDict):
    """``dls_configuration`` of a station creation (docs/protocol.md §5.3)."""

    poison: bool
    schemaverse: bool


class StationCreateRequest(TypedDict):
    """docs/protocol.md §5.3."""

    name: str
    retention_type: str
    retention_value: int
    storage_type: str
    replicas: int
    idempotency_window_in_ms: int
    schema_name: str
    dls_configuration: DlsConfiguration
    username: str
    tiered_storage_enabled: bool
    partitions_number: int
    dls_station: str


class ProducerCreateRequest(TypedDict):
    """docs/protocol.md §6.1."""

    name: str
    station_name: str
    connection_id: str
    producer_type: Literal["application"]
    req_version: int
    username: str
    app_id: str
    sdk_lang: str


class ConsumerCreateRequest(TypedDict):
    """docs/protocol.md §7.1."""

    name: str
    station_name: str
    connection_id: str
    consumer_type: Literal["application"]
    consumers_group: str
    max_ack_time_ms: int
    max_msg_deliveries: int
    username: str
    start_consume_from_sequence: int
    last_messages: int
    req_version: int
    app_id: str
    sdk_lang: str


def _dumps(body: Mapping[str, Any]) -> bytes:
    try:
        # Compact and not ASCII-escaped, as Go's encoding/json writes it (docs/protocol.md §0.2), so
        # captures compare byte for byte with the Go SDK's.
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in a user-supplied str
        raise LocalProtocolError(f"request contains text that is not valid UTF-8: {exc}") from None


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a str, not {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------ stations (§5)


def encode_station_create(opts: StationOptions, *, username: str) -> bytes:
    """Build the ``$memphis_station_creations`` body from validated options (docs/protocol.md
    §5.3)."""
    body: StationCreateRequest = {
        "name": opts.name,
        "retention_type": opts.retention_type.value,
        "retention_value": opts.retention_value,
        "storage_type": opts.storage_type.value,
        "replicas": opts.replicas,
        "idempotency_window_in_ms": opts.idempotency_window_ms,
        "schema_name": opts.schema_name,
        "dls_configuration": {
            "poison": opts.send_poison_msg_to_dls,
            "schemaverse": opts.send_schema_failed_msg_to_dls,
        },
        "username": _text(username, "username"),
        "tiered_storage_enabled": opts.tiered_storage_enabled,
        # Never 0 here (the options turn 0 into 1): the broker reads 0 as "an old SDK" and refuses
        # the creation (docs/protocol.md §5.4 step 5).
        "partitions_number": opts.partitions_number,
        "dls_station": opts.dls_station,
    }
    return _dumps(body)


def station_destroy_body(station_name: str, *, username: str) -> bytes:
    """``$memphis_station_destructions``: ``{"station_name", "username"}`` (docs/protocol.md §5.7).

    Raises:
        LocalProtocolError: a non-``str`` argument.
    """
    return _dumps(
        {
            "station_name": _text(station_name, "station name"),
            "username": _text(username, "username"),
        }
    )


# ------------------------------------------------------------------------------ producers (§6)


def producer_create_body(
    station_name: str, producer_name: str, *, connection_id: str, username: str, app_id: str
) -> bytes:
    """``$memphis_producer_creations`` body (docs/protocol.md §6.1); the producer name is
    lower-cased.

    Raises:
        LocalProtocolError: a bad station or producer name (broker texts, docs/protocol.md §5.1).
    """
    opts = producer_options(station_name, producer_name)
    body: ProducerCreateRequest = {
        # Lower-cased by ``producer_options`` above: the broker stores producer names lower-cased,
        # and the ``$memphis_producedBy`` header must carry the same spelling (docs/protocol.md
        # §6.1, §6.5).
        "name": opts.name,
        "station_name": opts.station_name,
        "connection_id": _text(connection_id, "connection_id"),
        "producer_type": "application",
        "req_version": CREATE_REQ_VERSION,
        "username": _text(username, "username"),
        "app_id": _text(app_id, "app_id"),
        "sdk_lang": SDK_LANG,
    }
    return _dumps(body)


def producer_destroy_body(
    station_name: str, producer_name: str, *, connection_id: str, username: str
) -> bytes:
    """``$memphis_producer_destructions`` body (docs/protocol.md §6.8), ``req_version`` 1.

    ``producer_name`` is sent as given: pass the name the producer was created with.

    Raises:
        LocalProtocolError: a non-``str`` argument.
    """
    return _dumps(
        {
            # Destroy matches by name, station and connection id (docs/protocol.md §6.8);
            # ``req_version`` 1 makes the broker use the connection id, so another connection's
            # producer of the same name is left alone.
            "name": _text(producer_name, "producer name"),
            "station_name": _text(station_name, "station name"),
            "username": _text(username, "username"),
            "connection_id": _text(connection_id, "connection_id"),
            "req_version": DESTROY_REQ_VERSION,
        }
    )


# ------------------------------------------------------------------------------ consumers (§7)


def encode_consumer_create(
    opts: ConsumerOptions, *, connection_id: str, username: str, app_id: str
) -> bytes:
    """Build the ``$memphis_consumer_creations`` body from validated options (docs/protocol.md
    §7.1).

    The consumer name and group are sent with their original case; the broker lower-cases.
    """
    body: ConsumerCreateRequest = {
        "name": opts.name,
        # The station name goes out as given: the broker maps it to its internal name itself.
        "station_name": opts.station_name,
        "connection_id": _text(connection_id, "connection_id"),
        "consumer_type": "application",
        # Already defaulted to the consumer name when empty (docs/protocol.md §7.1); sent with its
        # case, since the broker lower-cases it into the durable name.
        "consumers_group": opts.consumer_group,
        # Milliseconds as an int: JSON durations in Memphis bodies are integers (docs/protocol.md
        # §0.2).
        "max_ack_time_ms": opts.max_ack_time_ms,
        "max_msg_deliveries": opts.max_msg_deliveries,
        "username": _text(username, "username"),
        "start_consume_from_sequence": opts.start_consume_from_seq,
        "last_messages": opts.last_messages,
        "req_version": CREATE_REQ_VERSION,
        "app_id": _text(app_id, "app_id"),
        "sdk_lang": SDK_LANG,
    }
    return _dumps(body)


def consumer_destroy_body(
    station_name: str, name: str, *, connection_id: str, username: str
) -> bytes:
    """``$memphis_consumer_destructions`` body (docs/protocol.md §7.12), ``req_version`` 1.

    Raises:
        LocalProtocolError: a non-``str`` argument.
    """
    return _dumps(
        {
            "name": _text(name, "consumer name"),
            "station_name": _text(station_name, "station name"),
            "username": _text(username, "username"),
            "connection_id": _text(connection_id, "connection_id"),
            "req_version": DESTROY_REQ_VERSION,
        }
    )


def pm_ack_body(pm_id: int | str, cg_name: str) -> bytes:
    """``$memphis_pm_acks`` body: ack of a *resent* poison message (docs/protocol.md §7.11).

    Args:
        pm_id: The ``$memphis_pm_id`` header (a decimal string on the wire) or its int value.
        cg_name: The ``$memphis_pm_cg_name`` header.

    Raises:
        LocalProtocolError: ``pm_id`` is not a non-negative integer.
    """
    # The header is text, but the broker's struct field is a number: a quoted id would be a Go
    # unmarshal error and the resend would never be acknowledged (docs/protocol.md §7.11).
    if isinstance(pm_id, str) and pm_id.isascii() and pm_id.isdigit():
        pm_id = int(pm_id)
    if isinstance(pm_id, bool) or not isinstance(pm_id, int) or pm_id < 0:
        raise LocalProtocolError(f"invalid poison message id {pm_id!r}")
    return _dumps({"id": pm_id, "cg_name": _text(cg_name, "cg_name")})


def nacked_dls_body(
    internal_station: str, *, error: str, partition: int, cg_name: str, seq: int
) -> bytes:
    """``$memphis_nacked_dls`` body sent after ``+TERM`` by ``dead_letter`` (docs/protocol.md
    §9.3).

    Args:
        internal_station: The station's internal name.
        error: The user's reason.
        partition: Partition the message came from (1 for single/legacy stations).
        cg_name: The consumer group as given at creation.
        seq: The stream sequence.

    Raises:
        LocalProtocolError: ``partition`` < 1 (the broker would crash on 0, docs/protocol.md
            §12.2 item 10) or a negative ``seq``.
    """
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 1:
        raise LocalProtocolError("dead letter partition must be 1 or more")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise LocalProtocolError("dead letter sequence must be a non-negative int")
    return _dumps(
        {
            "station_name": _text(internal_station, "station name"),
            "error": _text(error, "reason"),
            "partition": partition,
            "cg_name": _text(cg_name, "cg_name"),
            "seq": seq,
        }
    )


# ------------------------------------------------------------------------------ schemas (§8)


def schema_create_body(
    name: str, schema_type: SchemaType | str, schema_content: str, *, username: str
) -> bytes:
    """``$memphis_schema_creations`` body (docs/protocol.md §8.2).

    The name is validated client-side *without* lower-casing, as the Go SDK does; the file is
    read by the frontend (the core does no I/O) and passed as ``schema_content``.

    Raises:
        LocalProtocolError: ``Schema name can not be empty`` and the other name texts,
            ``unsupported schema type, ...`` listing the allowed types.
    """
    error = name_error(_text(name, "schema name"), "Schema")
    if error is not None:
        raise LocalProtocolError(error)
    kind = coerce_enum(SchemaType, schema_type)
    return _dumps(
        {
            "name": name,
            "type": kind.value,
            "created_by_username": _text(username, "username"),
            "schema_content": _text(schema_content, "schema content"),
            # Always empty from an SDK: for protobuf the broker picks the first message of the file
            # itself (docs/protocol.md §8.3).
            "message_struct_name": "",
        }
    )


def schema_attach_body(schema_name: str, station_name: str, *, username: str) -> bytes:
    """``$memphis_schema_attachments`` body (docs/protocol.md §8.5), used by ``enforce_schema``."""
    return _dumps(
        {
            "name": _text(schema_name, "schema name"),
            "station_name": _text(station_name, "station name"),
            "username": _text(username, "username"),
        }
    )


def schema_detach_body(station_name: str, *, username: str) -> bytes:
    """``$memphis_schema_detachments`` body (docs/protocol.md §8.6)."""
    return _dumps(
        {
            "station_name": _text(station_name, "station name"),
            "username": _text(username, "username"),
        }
    )


# ---------------------------------------------------------------- replies

#: Success markers inside plain-string error replies (docs/protocol.md §2.3).
ALREADY_EXIST: Final = "already exist"
NOT_EXIST: Final = "not exist"


def _decode(body: bytes) -> str:
    # Error texts are for humans; never fail on a stray byte from the broker.
    return bytes(body).decode("utf-8", errors="replace")


def parse_plain_reply(body: bytes, *, success_if: str | None = None) -> str | None:
    """Apply the plain-string reply rule (docs/protocol.md §2): return the error text, or None.

    Args:
        body: The reply payload.
        success_if: A substring that turns an error text into success (``ALREADY_EXIST`` for
            station creation, ``NOT_EXIST`` for destructions).
    """
    if not body:
        return None
    text = _decode(body)
    # A substring, not an equality: the broker's texts embed names (``Station orders already
    # exists``, ``Station  does not exist``), and only the marker is stable (docs/protocol.md §2.3).
    if success_if is not None and success_if in text:
        return None
    return text


def parse_station_create_reply(body: bytes) -> str | None:
    """Station creation: ``already exist`` in the error counts as success (docs/protocol.md
    §5.3)."""
    return parse_plain_reply(body, success_if=ALREADY_EXIST)


def parse_destroy_reply(body: bytes) -> str | None:
    """Station/producer/consumer destruction: ``not exist`` counts as success (docs/protocol.md
    §2)."""
    return parse_plain_reply(body, success_if=NOT_EXIST)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The reply as a JSON object, or None when the plain-string rule applies (docs/protocol.md
    §2)."""
    if not body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if value is None:  # Go: unmarshalling ``null`` into a struct is a no-op, not an error
        return {}
    # Keys folded to lower case: Go matches JSON keys to struct fields without regard to case, so a
    # peer may capitalise them and still be right (docs/protocol.md §0.2).
    return fold_keys(value) if isinstance(value, dict) else None


def _error_field(obj: Mapping[str, Any]) -> str | None:
    # A missing ``error`` is Go's zero value, the empty string: success (docs/protocol.md §0.2).
    error = obj.get("error", "")
    if error is None:
        return None
    if not isinstance(error, str):
        raise RemoteProtocolError(f"reply field 'error' is not a string: {error!r}")
    return error or None


def parse_schema_create_reply(body: bytes) -> str | None:
    """Schema creation: JSON ``{"error": ""}``; ``already exists`` is success (docs/protocol.md
    §8.2)."""
    obj = _json_object(body)
    error = parse_plain_reply(body) if obj is None else _error_field(obj)
    # "already exists" (with an s), unlike the station rule: a schema of another type is reported as
    # ``<name> already exist with type - <type>`` and must stay an error (docs/protocol.md §8.3).
    if error is not None and "already exists" in error:
        return None
    return error


def _flag(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RemoteProtocolError(f"reply field {key!r} is not a bool: {value!r}")
    return value


def _partitions(obj: Mapping[str, Any]) -> tuple[int, ...]:
    update = obj.get("partitions_update")
    if update is None:
        return ()
    if not isinstance(update, dict):
        raise RemoteProtocolError(f"partitions_update is not an object: {update!r}")
    plist = fold_keys(update).get("partitions_list")
    if plist is None:
        return ()
    # Partitions count from 1 (docs/protocol.md §0.1): a 0 would build a stream name no broker
    # creates, so the reply is refused here rather than at the first produce.
    if not isinstance(plist, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in plist
    ):
        raise RemoteProtocolError(f"partitions_list is not a list of partitions: {plist!r}")
    return tuple(plist)


def _int_keyed(value: object, what: str) -> dict[int, int]:
    # Go encodes map[int]int keys as decimal strings (docs/protocol.md §0.2).
    # ``null`` reads as false, as Go's zero value for a bool (docs/protocol.md §4.1).
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{what} is not an object: {value!r}")
    out: dict[int, int] = {}
    for key, fid in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()) or (
            isinstance(fid, bool) or not isinstance(fid, int)
        ):
            raise RemoteProtocolError(f"{what} has a bad entry {key!r}: {fid!r}")
        out[int(key)] = fid
    return out


def _schema(obj: Mapping[str, Any]) -> SchemaInit | None:
    try:
        return parse_schema_init(obj.get("schema_update"))
    except ValueError as exc:
        raise RemoteProtocolError(f"bad schema_update in reply: {exc}") from None


@dataclass(frozen=True, slots=True)
class ProducerCreated:
    """Parsed ``$memphis_producer_creations`` reply (docs/protocol.md §6.2).

    ``error`` set means creation failed (nothing else is meaningful then). ``legacy`` is True
    when the broker answered with a plain string (an old broker): no partition information.
    """

    error: str | None = None
    partitions: tuple[int, ...] = ()
    schema: SchemaInit | None = None
    schemaverse_to_dls: bool = False
    send_notification: bool = False
    station_version: int = 0
    functions: dict[int, int] = field(default_factory=dict)
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class ConsumerCreated:
    """Parsed ``$memphis_consumer_creations`` reply (docs/protocol.md §7.2); see
    :class:`ProducerCreated`."""

    error: str | None = None
    partitions: tuple[int, ...] = ()
    schema: SchemaInit | None = None
    legacy: bool = False


def parse_producer_reply(body: bytes) -> ProducerCreated:
    """Parse a producer creation reply, with the old-broker plain-string fallback.

    Raises:
        RemoteProtocolError: the reply is a JSON object with ill-typed fields.
    """
    obj = _json_object(body)
    if obj is None:
        # An old broker answers producer creation in plain text: success then means a legacy station
        # with its single stream (docs/protocol.md §2.2, §5.8).
        return ProducerCreated(error=parse_plain_reply(body), legacy=True)
    error = _error_field(obj)
    if error is not None:
        return ProducerCreated(error=error)
    version = obj.get("station_version", 0)
    # ``station_version`` only matters for per-partition functions (docs/protocol.md §2.5, §4.3): a
    # missing one is tolerated, not refused.
    if version is None:
        version = 0
    if isinstance(version, bool) or not isinstance(version, int):
        raise RemoteProtocolError(f"station_version is not an int: {version!r}")
    return ProducerCreated(
        partitions=_partitions(obj),
        schema=_schema(obj),
        schemaverse_to_dls=_flag(obj, "schemaverse_to_dls"),
        send_notification=_flag(obj, "send_notification"),
        station_version=version,
        functions=_int_keyed(
            obj.get("station_partitions_first_functions"), "station_partitions_first_functions"
        ),
    )


def parse_consumer_reply(body: bytes) -> ConsumerCreated:
    """Parse a consumer creation reply (docs/protocol.md §7.2).

    A non-JSON reply means an empty partitions list (legacy stream ``<internal>``) and the
    plain-string rule; that is also how the real broker reports creation errors.

    Raises:
        RemoteProtocolError: the reply is a JSON object with ill-typed fields.
    """
    obj = _json_object(body)
    if obj is None:
        # The real broker answers a consumer-create error in plain text, and then a second time in
        # JSON (docs/protocol.md §12.2 item 4): the first reply counts, so the text is what we see.
        return ConsumerCreated(error=parse_plain_reply(body), legacy=True)
    error = _error_field(obj)
    if error is not None:
        return ConsumerCreated(error=error)
    return ConsumerCreated(partitions=_partitions(obj), schema=_schema(obj))


@dataclass(frozen=True, slots=True)
class ClientsUpdate:
    """One ``$memphis_sdk_clients_updates`` message (docs/protocol.md §4.1)."""

    type: Literal["send_notification", "schemaverse_to_dls", "remove_station"]
    station_name: str
    update: bool

    @property
    def internal_station(self) -> str:
        """Key of the per-station flags (the broker already sends internal names)."""
        return internal_name(self.station_name)


_CLIENT_UPDATE_TYPES: Final = ("send_notification", "schemaverse_to_dls", "remove_station")


def parse_clients_update(body: bytes) -> ClientsUpdate | None:
    """Parse a clients update; None for anything to ignore (docs/protocol.md §4.1).

    Undecodable JSON and unknown types are ignored as the Go SDK does, so this never raises:
    one bad broadcast must not stop the listener (memphis-py stops on one).
    """
    obj = _json_object(body)
    if not obj:
        return None
    kind = obj.get("type")
    station = obj.get("station_name", "")
    update = obj.get("update")
    if kind not in _CLIENT_UPDATE_TYPES or not isinstance(station, str):
        return None
    # A push with a wrong type is ignored like an unknown one: guessing a flag's value from a
    # malformed push could turn DLS reporting off for a station.
    if update is not None and not isinstance(update, bool):
        return None
    return ClientsUpdate(type=kind, station_name=station, update=bool(update))
