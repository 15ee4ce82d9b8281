"""Memphis control-plane replies: parsers for creation/destruction replies and broadcasts (pure).

Split out of ``_requests`` (which builds the request bodies) to keep both modules small; every
name here is re-exported by ``_requests``, so ``from . import _requests as rq`` and
``rq.parse_producer_reply`` keep working.

Replies come in two styles (memphis-client-protocol.md section 2):

* **plain string**: empty body = success, anything else = the error text; some callers treat
  a text containing ``already exist`` / ``not exist`` as success;
* **JSON** with an ``error`` field; a body that is not a JSON object falls back to the plain-string
  rule (old brokers, and the real broker's own error path for consumer creation, section 8.2).

Parsers never raise on a broker's *error text*: they return it for the session to turn into the
typed error. They raise ``RemoteProtocolError`` only when a JSON reply has the wrong shape. The
``$memphis_sdk_clients_updates`` (section 5.1) and functions (section 5.3) broadcasts are parsed
here too; those parsers never raise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._errors import RemoteProtocolError
from ._names import internal_name
from ._schemas import SchemaInit, fold_keys, parse_schema_init

__all__ = [
    "ALREADY_EXIST",
    "NOT_EXIST",
    "ClientsUpdate",
    "ConsumerCreated",
    "ProducerCreated",
    "parse_clients_update",
    "parse_consumer_reply",
    "parse_destroy_reply",
    "parse_functions_update",
    "parse_plain_reply",
    "parse_producer_reply",
    "parse_schema_create_reply",
    "parse_station_create_reply",
]

#: Success markers inside plain-string error replies (section 2).
ALREADY_EXIST: Final = "already exist"
NOT_EXIST: Final = "not exist"


def _decode(body: bytes) -> str:
    # Error texts are for humans; never fail on a stray byte from the broker.
    return bytes(body).decode("utf-8", errors="replace")


def parse_plain_reply(body: bytes, *, success_if: str | None = None) -> str | None:
    """Apply the plain-string reply rule (section 2): return the error text, or None.

    Args:
        body: The reply payload.
        success_if: A substring that turns an error text into success (``ALREADY_EXIST`` for
            station creation, ``NOT_EXIST`` for destructions).
    """
    if not body:
        return None
    text = _decode(body)
    if success_if is not None and success_if in text:
        return None
    return text


def parse_station_create_reply(body: bytes) -> str | None:
    """Station creation: ``already exist`` in the error counts as success (section 6.1)."""
    return parse_plain_reply(body, success_if=ALREADY_EXIST)


def parse_destroy_reply(body: bytes) -> str | None:
    """Station/producer/consumer destruction: ``not exist`` counts as success (section 2)."""
    return parse_plain_reply(body, success_if=NOT_EXIST)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The reply as a JSON object, or None when the plain-string rule applies (section 2)."""
    if not body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if value is None:  # Go: unmarshalling ``null`` into a struct is a no-op, not an error
        return {}
    return fold_keys(value) if isinstance(value, dict) else None


def _error_field(obj: Mapping[str, Any]) -> str | None:
    error = obj.get("error", "")
    if error is None:
        return None
    if not isinstance(error, str):
        raise RemoteProtocolError(f"reply field 'error' is not a string: {error!r}")
    return error or None


def parse_schema_create_reply(body: bytes) -> str | None:
    """Schema creation: JSON ``{"error": ""}``; ``already exists`` is success (section 10.1)."""
    obj = _json_object(body)
    error = parse_plain_reply(body) if obj is None else _error_field(obj)
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
    if not isinstance(plist, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in plist
    ):
        raise RemoteProtocolError(f"partitions_list is not a list of partitions: {plist!r}")
    return tuple(plist)


def _int_keyed(value: object, what: str) -> dict[int, int]:
    # Go encodes map[int]int keys as decimal strings (reference section 0).
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
    """Parsed ``$memphis_producer_creations`` reply (section 7.2).

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
    """Parsed ``$memphis_consumer_creations`` reply (section 8.2); see :class:`ProducerCreated`."""

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
        return ProducerCreated(error=parse_plain_reply(body), legacy=True)
    error = _error_field(obj)
    if error is not None:
        return ProducerCreated(error=error)
    version = obj.get("station_version", 0)
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
    """Parse a consumer creation reply (section 8.2).

    A non-JSON reply means an empty partitions list (legacy stream ``<internal>``) and the
    plain-string rule; that is also how the real broker reports creation errors.

    Raises:
        RemoteProtocolError: the reply is a JSON object with ill-typed fields.
    """
    obj = _json_object(body)
    if obj is None:
        return ConsumerCreated(error=parse_plain_reply(body), legacy=True)
    error = _error_field(obj)
    if error is not None:
        return ConsumerCreated(error=error)
    return ConsumerCreated(partitions=_partitions(obj), schema=_schema(obj))


@dataclass(frozen=True, slots=True)
class ClientsUpdate:
    """One ``$memphis_sdk_clients_updates`` message (section 5.1)."""

    type: Literal["send_notification", "schemaverse_to_dls", "remove_station"]
    station_name: str
    update: bool

    @property
    def internal_station(self) -> str:
        """Key of the per-station flags (the broker already sends internal names)."""
        return internal_name(self.station_name)


_CLIENT_UPDATE_TYPES: Final = ("send_notification", "schemaverse_to_dls", "remove_station")


def parse_clients_update(body: bytes) -> ClientsUpdate | None:
    """Parse a clients update; None for anything to ignore (section 5.1).

    Undecodable JSON and unknown types are ignored as the Go SDK does, so this never raises:
    one bad broadcast must not stop the listener (memphis-py defect, python-peers.md 1.4 #14).
    """
    obj = _json_object(body)
    if not obj:
        return None
    kind = obj.get("type")
    station = obj.get("station_name", "")
    update = obj.get("update")
    if kind not in _CLIENT_UPDATE_TYPES or not isinstance(station, str):
        return None
    if update is not None and not isinstance(update, bool):
        return None
    return ClientsUpdate(type=kind, station_name=station, update=bool(update))


def parse_functions_update(body: bytes) -> dict[int, int] | None:
    """Parse ``{"functions": {"<partition>": <id>}}`` (section 5.3); None if malformed."""
    obj = _json_object(body)
    if obj is None:
        return None
    try:
        return _int_keyed(obj.get("functions"), "functions")
    except RemoteProtocolError:
        return None
