"""The three Memphis enums whose *values are the wire values*.

They are ``str`` enums so that ``RetentionType.MESSAGES == "messages"`` and ``json.dumps`` emits the
wire text directly. Every API parameter that takes one of them also takes the plain string, as the
Go SDK does (docs/protocol.md §5.3, §8.1); :func:`coerce_enum` is the single place that turns
either form into the enum member, or raises ``LocalProtocolError`` naming the allowed values.
"""

from __future__ import annotations

import enum
from typing import Final, TypeVar

from memphis_core.nats._errors import LocalProtocolError

__all__ = ["RetentionType", "SchemaType", "StorageType", "coerce_enum"]


class RetentionType(enum.StrEnum):
    """How a station drops old messages (``retention_type`` on the wire, docs/protocol.md §5.3)."""

    MAX_MESSAGE_AGE_SECONDS = "message_age_sec"
    MESSAGES = "messages"
    BYTES = "bytes"
    ACK_BASED = "ack_based"


class StorageType(enum.StrEnum):
    """Where JetStream keeps a station's messages (``storage_type`` on the wire, docs/protocol.md
    §5.3)."""

    # ``DISK`` is the SDK enum's name, ``file`` the only wire value: the broker refuses ``disk``
    # (docs/protocol.md §5.4 step 8).
    DISK = "file"
    MEMORY = "memory"


class SchemaType(enum.StrEnum):
    """Schemaverse schema kinds (``type`` in schema creation and updates, docs/protocol.md §4.2,
    §8.1)."""

    PROTOBUF = "protobuf"
    JSON = "json"
    GRAPHQL = "graphql"
    AVRO = "avro"


_E = TypeVar("_E", RetentionType, StorageType, SchemaType)

# The error texts are the broker's own (docs/protocol.md §5.4 for retention and storage;
# docs/protocol.md §8.1 for the Go SDK's schema type check), so users see the same text whether
# we reject the value locally or the broker does.
_UNKNOWN: Final[dict[type[enum.StrEnum], str]] = {
    RetentionType: (
        "retention type can be one of the following message_age_sec/messages/bytes/ack_based"
    ),
    StorageType: "storage type can be one of the following file/memory",
    SchemaType: (
        "unsupported schema type, it can be one of the following protobuf/json/graphql/avro"
    ),
}


def coerce_enum(enum_type: type[_E], value: object) -> _E:
    """Return the member of ``enum_type`` for ``value`` (a member or its wire string).

    Strings are matched case-insensitively because the broker lower-cases retention and storage
    types before checking them (docs/protocol.md §5.4), so ``"Messages"`` means the same thing
    there as here.

    Args:
        enum_type: One of :class:`RetentionType`, :class:`StorageType`, :class:`SchemaType`.
        value: The caller's argument.

    Raises:
        LocalProtocolError: ``value`` is neither a member nor one of the allowed wire strings;
            the text lists the allowed values.
    """
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        try:
            # Lower-cased for schema types too: the Go SDK compares them lower-cased, and the broker
            # stores the lower-case value (docs/protocol.md §8.1).
            # Bound to a typed name first: the mypy run inside mypyc (the optional compiled
            # build, docs/compiled.md) types the call as Any and refuses to return it.
            member: _E = enum_type(value.lower())
            return member
        except ValueError:
            pass
    raise LocalProtocolError(_UNKNOWN[enum_type])
