"""Schemaverse on the client: schema updates, lazy validators, message (de)serialisation.

The broker tells a client which schema a station enforces in the ``schema_update`` field of the
producer/consumer creation reply and then on ``$memphis_schema_updates_<internal>``
(docs/protocol.md §4.2, §6.2, §8.7). A :class:`Schema` is built from that ``init`` object
and compiles its validator on first use, so that

* ``memphis_core`` imports only the standard library: protobuf, jsonschema, fastavro and
  graphql-core are imported inside the functions that need them, and a missing one raises
  :class:`MissingExtraError` naming the ``memphis-sansio[schemas]`` extra;
* a station whose messages are never produced or deserialised never pays for a compile.

:meth:`Schema.serialize` is the producer side (docs/protocol.md §6.4, §8.8): it turns the
user's message into the exact bytes to publish and validates them. :func:`serialize_plain` is
the same for stations without a schema. :meth:`Schema.deserialize` backs
``Message.data_deserialized()`` (docs/protocol.md §7.14). The DLS report and the Slack
notification bodies sent after a validation failure (docs/protocol.md §9.2) are built here too,
next to the error they report.

The per-type compilers and validators, the lazy-import helpers and :func:`serialize_plain` live
in :mod:`memphis_core.memphis._validators` (split out to keep modules small); the public names
among them are re-exported here, so this module stays the one to import from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._errors import MemphisSchemaError, MissingExtraError, SchemaValidationError
from ._validators import (
    VALIDATORS,
    Invalid,
    SchemaInit,
    Validator,
    best_effort_bytes,
    compact_json,
)

__all__ = [
    "NOTIFICATION_SCHEMA_FAILURE",
    "Schema",
    "SchemaInit",
    "SchemaUpdate",
    "fold_keys",
    "notification_body",
    "parse_schema_init",
    "parse_schema_update",
    "schema_failure_notification_body",
    "schemaverse_dls_body",
]

# The Go SDK's texts, grammar included (docs/protocol.md §11.1, §11.2): applications match on them,
# so they are kept word for word.
_DESERIALIZATION_FAILED: Final = (
    "Deserialization has been failed since the message format does not align with the "
    "currently attached schema: "
)
#: ``Type`` of the schema-failure notification (docs/protocol.md §9.2).
NOTIFICATION_SCHEMA_FAILURE: Final = "schema_validation_fail_alert"


def fold_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Lower-case the keys of a JSON object (later duplicates win).

    Go's ``encoding/json`` matches keys case-insensitively, and the broker relies on it: schema
    updates arrive as ``UpdateType`` (untagged Go field, docs/protocol.md §4.2) and a broker could
    as well send ``updatetype``. Folding once lets every reader use lower-case keys.
    """
    # Later duplicates win, as in Go's decoder when two keys differ only in case.
    return {key.lower(): value for key, value in obj.items() if isinstance(key, str)}


# ------------------------------------------------------------------------------ updates (§4.2)


def _field(obj: Mapping[str, Any], key: str, kind: type[str] | type[int]) -> Any:
    value = obj.get(key)
    if value is None:  # Go zero value
        return kind()
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{key} should be {kind.__name__}, got {value!r}")
    return value


def parse_schema_init(obj: object) -> SchemaInit | None:
    """Parse a ``schema_update``/``init`` object; None when it names no schema.

    "No schema" is an empty ``schema_name`` or ``type``: the broker sends zero values for a drop
    (docs/protocol.md §4.2) and the Go SDK keys on the type, memphis-py/JS on the name; either
    empty means the station validates nothing.

    Raises:
        ValueError: ``obj`` is not an object or a field has the wrong JSON type.
    """
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ValueError(f"schema init should be an object, got {obj!r}")
    init = fold_keys(obj)
    name = _field(init, "schema_name", str)
    kind = _field(init, "type", str)
    active = init.get("active_version")
    if active is None:
        active = {}
    if not isinstance(active, dict):
        raise ValueError(f"active_version should be an object, got {active!r}")
    version = fold_keys(active)
    # Checked after the field types, so a malformed object is still an error and not silently a
    # drop; only a well-formed empty one means "no schema".
    if not name or not kind:
        return None
    return SchemaInit(
        schema_name=name,
        schema_type=kind,
        version_number=_field(version, "version_number", int),
        descriptor=_field(version, "descriptor", str),
        schema_content=_field(version, "schema_content", str),
        message_struct_name=_field(version, "message_struct_name", str),
    )


@dataclass(frozen=True, slots=True)
class SchemaUpdate:
    """A ``$memphis_schema_updates_<internal>`` message: ``init`` (attach) or ``drop`` (detach)."""

    kind: Literal["init", "drop"]
    schema: SchemaInit | None


def parse_schema_update(body: bytes) -> SchemaUpdate | None:
    """Parse a schema update; None for anything to ignore.

    ``UpdateType`` 1 = init, 2 = drop (keys case-insensitive, docs/protocol.md §4.2). An init
    that names no schema is reported as a drop (the Go SDK would store an empty schema: same
    effect). Never raises: a malformed broadcast must not kill the station's listener.
    """
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    update = fold_keys(obj)
    kind = update.get("updatetype")
    # ``True == 1`` in Python: without the bool test, ``"UpdateType": true`` would read as an init.
    if kind == 2 and not isinstance(kind, bool):
        return SchemaUpdate("drop", None)
    if kind != 1 or isinstance(kind, bool):
        return None
    try:
        schema = parse_schema_init(update.get("init"))
    except ValueError:
        return None
    return SchemaUpdate("drop", None) if schema is None else SchemaUpdate("init", schema)


class Schema:
    """The schema a station enforces, compiled on first use.

    Build it from the ``schema_update`` of a creation reply or the ``init`` of a schema update:
    ``Schema(init)``. Compilation errors are remembered: the same error is raised again on every
    use rather than recompiling per message.
    """

    __slots__ = ("_compile_error", "_validator", "init")

    def __init__(self, init: SchemaInit) -> None:
        self.init = init
        self._validator: Validator | None = None
        # The text, not the exception: re-raising one instance would grow its traceback.
        self._compile_error: str | None = None

    @property
    def name(self) -> str:
        """The schema name."""
        return self.init.schema_name

    @property
    def schema_type(self) -> str:
        """The wire type (``protobuf``, ``json``, ``graphql``, ``avro``)."""
        return self.init.schema_type

    def __repr__(self) -> str:
        return (
            f"Schema(name={self.init.schema_name!r}, type={self.init.schema_type!r}, "
            f"version={self.init.version_number})"
        )

    def _compiled(self) -> Validator:
        if self._validator is not None:
            return self._validator
        if self._compile_error is not None:
            raise SchemaValidationError(self._compile_error)
        factory = VALIDATORS.get(self.init.schema_type)
        try:
            if factory is None:
                raise Invalid("invalid schema type")
            self._validator = factory(self.init)
        # Only the compile result of the schema itself is cached; a missing library is a property of
        # the process, not of the schema.
        except MissingExtraError:
            raise  # not cached: installing the extra and retrying must work
        except Invalid as exc:
            self._compile_error = exc.text
            raise SchemaValidationError(exc.text) from None
        return self._validator

    def compile(self) -> None:
        """Compile now instead of on first use (e.g. to surface errors early).

        Raises:
            MissingExtraError: the library for this schema type is not installed.
            SchemaValidationError: the schema itself does not compile, or the type is unknown
                (``Schema validation has failed: invalid schema type``).
        """
        self._compiled()

    def serialize(self, message: object) -> bytes:
        """Turn a user message into the bytes to publish, validating it (docs/protocol.md §8.8).

        Accepted inputs per type: protobuf: message objects, bytes-like, dicts (protobuf JSON);
        json: bytes-like/str (JSON text), dicts, lists, dataclass instances; avro: the same,
        validated against the Avro schema and sent as JSON; graphql: query text (str or
        UTF-8 bytes) or a ``graphql`` ``DocumentNode``.

        Raises:
            SchemaValidationError: ``Schema validation has failed: <err>`` where err is
                ``unsupported message type``, ``invalid message format, expecting protobuf``,
                ``invalid message format, expecting GraphQL``, ``Bad JSON format - <e>``,
                ``Bad Avro format - <e>``, ``invalid schema type`` or the validator's text.
            MissingExtraError: the library for this schema type is not installed.
        """
        validator = self._compiled()
        try:
            return validator.serialize(message)
        except Invalid as exc:
            raise SchemaValidationError(exc.text, exc.data) from None
        except MissingExtraError:
            raise
        # A message type the validator cannot take at all is still a validation failure for the
        # caller and for the DLS report (docs/protocol.md §8.8, "unsupported message type").
        except MemphisSchemaError as exc:  # serialize_plain's own errors
            raise SchemaValidationError(str(exc), best_effort_bytes(message)) from None

    def deserialize(self, data: bytes) -> object:
        """Decode received bytes for ``Message.data_deserialized()`` (docs/protocol.md §7.14).

        Returns:
            protobuf: a message object of the schema's type; json/avro: the decoded JSON value
            (a dict for object schemas); graphql: the query text.

        Raises:
            MemphisSchemaError: ``Deserialization has been failed since the message format does
                not align with the currently attached schema: <e>``.
            MissingExtraError: the library for this schema type is not installed.
        """
        try:
            # The consumer-side text differs from the producer's (docs/protocol.md §7.14): a compile
            # error here is reported as a deserialisation failure, since the message itself was fine
            # when sent.
            return self._compiled().deserialize(bytes(data))
        except Invalid as exc:
            raise MemphisSchemaError(_DESERIALIZATION_FAILED + exc.text) from None
        except SchemaValidationError as exc:  # compile failure
            raise MemphisSchemaError(_DESERIALIZATION_FAILED + exc.validation_error) from None


# ------------------------------------------------------------------------------ reports (§9.2)


def _joined_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    # docs/protocol.md §9.2: one JSON string per key, several values joined by a space.
    out: dict[str, list[str]] = {}
    for key, value in headers:
        out.setdefault(key, []).append(value)
    return {key: " ".join(values) for key, values in out.items()}


def schemaverse_dls_body(
    internal_station: str,
    *,
    producer_name: str,
    connection_id: str,
    data: bytes,
    headers: Iterable[tuple[str, str]],
    validation_error: str,
) -> bytes:
    """``$memphis_schemaverse_dls`` body reporting a message that failed validation
    (docs/protocol.md §9.2).

    Only to be sent when the station's ``schemaverse_to_dls`` flag is true.

    Args:
        internal_station: Internal station name.
        producer_name: The producer's name.
        connection_id: The connection id (CONNECT name prefix).
        data: The message bytes (``SchemaValidationError.data``); sent as lower-case hex.
        headers: All headers of the message, ``$memphis_connectionId`` and
            ``$memphis_producedBy`` included, as ``(key, value)`` pairs.
        validation_error: The error text to show in the DLS.
    """
    return compact_json(
        {
            # The internal name: the broker keys dead letters by it (docs/protocol.md §9.2), unlike
            # the notification, which is for a human.
            "station_name": internal_station,
            "producer": {"name": producer_name, "connection_id": connection_id},
            # ``size`` is always 0 from the Go SDK; the broker computes the real one.
            "message": {"size": 0, "data": bytes(data).hex(), "headers": _joined_headers(headers)},
            "validation_error": validation_error,
        }
    )


def notification_body(title: str, msg: str, code: str, kind: str) -> bytes:
    """``$memphis_notifications`` body; the keys are capitalised as Go sends them (docs/protocol.md
    §9.2)."""
    return compact_json({"Title": title, "Msg": msg, "Code": code, "Type": kind})


def schema_failure_notification_body(
    station_name: str, *, producer_name: str, error: str, data: bytes
) -> bytes:
    """The notification sent after a schemaverse DLS report when ``send_notification`` is on.

    Args:
        station_name: The station name as the user gave it.
        producer_name: The producer's name.
        error: The validation error text.
        data: The failed message; sent as text (invalid UTF-8 replaced).
    """
    return notification_body(
        "Schema validation has failed",
        f"Station: {station_name}\nProducer: {producer_name}\nError: {error}",
        # ``Code`` is shown to a human in Slack: replacement characters beat refusing the report.
        bytes(data).decode("utf-8", errors="replace"),
        NOTIFICATION_SCHEMA_FAILURE,
    )
