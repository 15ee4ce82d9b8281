"""Errors that only the Memphis layer raises: schemas, headers, stations that went away.

They extend the NATS layer's ``MemphisError`` so that one ``except MemphisError`` catches
everything the library raises on purpose.
"""

from __future__ import annotations

from memphis_core.nats._errors import MemphisError

__all__ = ["MemphisHeaderError", "MemphisSchemaError", "StationUnreachableError"]


class MemphisSchemaError(MemphisError):
    """A message does not validate against the station's schema, or a schema is invalid."""


class MemphisHeaderError(MemphisError, ValueError):
    """A header name or value cannot be sent (e.g. a key starting with ``$memphis``)."""


class StationUnreachableError(MemphisError):
    """The consumer's station or durable is gone (``station unreachable`` in the Go SDK)."""
