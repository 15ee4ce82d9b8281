"""The one exception hierarchy shared by the core, the three frontends and the broker helpers.

Modelled on h11's split: ``LocalProtocolError`` means *you* misused the API (raised before a
single byte is queued), ``RemoteProtocolError`` means the peer misbehaved (the connection is
poisoned). Broker replies map to the typed Memphis errors below.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosedError",
    "ConnectionLostError",
    "LocalProtocolError",
    "MemphisConnectError",
    "MemphisError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "NoRespondersError",
    "RemoteProtocolError",
    "RequestAbandonedError",
    "RequestTimeoutError",
    "StationUnreachableError",
]


class MemphisError(Exception):
    """Base class of every error this library raises on purpose."""


class LocalProtocolError(MemphisError, ValueError):
    """The caller asked for something invalid; nothing was sent.

    Also a ``ValueError`` so that code written for "bad argument" keeps working.
    """


class RemoteProtocolError(MemphisError):
    """The server sent something that breaks the NATS protocol or our limits.

    Once raised from ``receive_data`` the connection is poisoned: every later call raises again.
    """


class MemphisConnectError(MemphisError):
    """Connecting, authenticating or reconnecting failed."""


class ConnectionClosedError(MemphisConnectError):
    """The connection is closed (by the user, or after reconnects were exhausted)."""


class RequestTimeoutError(MemphisError, TimeoutError):
    """A request or a publish acknowledgement did not arrive in time."""


class NoRespondersError(MemphisError):
    """A request went to a subject nobody listens on (NATS status 503)."""


class MemphisSchemaError(MemphisError):
    """A message does not validate against the station's schema, or a schema is invalid."""


class MemphisHeaderError(MemphisError, ValueError):
    """A header name or value cannot be sent (e.g. a key starting with ``$memphis``)."""


class StationUnreachableError(MemphisError):
    """The consumer's station or durable is gone (``station unreachable`` in the Go SDK)."""


class ConnectionLostError(MemphisConnectError):
    """The connection dropped while a request that is not replayed was waiting for its reply."""


class RequestAbandonedError(MemphisError):
    """The caller abandoned the request (e.g. a cancelled fetch); what still arrived was drained."""
