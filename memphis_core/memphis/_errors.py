"""Errors that only the Memphis layer raises: schemas, headers, stations that went away.

They extend the NATS layer's ``MemphisError`` so that one ``except MemphisError`` catches
everything the library raises on purpose.
"""

from __future__ import annotations

from memphis_core.nats._errors import MemphisError

__all__ = [
    "MemphisHeaderError",
    "MemphisSchemaError",
    "StationTemporarilyUnavailableError",
    "StationUnreachableError",
]


class MemphisSchemaError(MemphisError):
    """A message does not validate against the station's schema, or a schema is invalid."""


class MemphisHeaderError(MemphisError, ValueError):
    """A header name or value cannot be sent (e.g. a key starting with ``$memphis``)."""


class StationUnreachableError(MemphisError):
    """The consumer's station or durable is gone (``station unreachable`` in the Go SDK)."""


class StationTemporarilyUnavailableError(MemphisError):
    """JetStream did not serve the station within the call's deadline, but it was not found gone.

    What a leader election in a JetStream cluster looks like (NATS status 503 for a few seconds,
    docs/cluster-client.md): the call was retried with backoff until its own deadline
    (``ack_wait`` for a produce, ``batch_max_wait_time`` for a fetch). A consume loop reports it
    to its handler and keeps pulling; it never ends a consume loop, unlike
    :class:`StationUnreachableError`.
    """
