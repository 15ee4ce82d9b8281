"""The root of the library's one exception hierarchy, and the errors of the NATS layer.

Modelled on h11's split: ``LocalProtocolError`` means *you* misused the API (raised before a
single byte is queued), ``RemoteProtocolError`` means the peer misbehaved (the connection is
poisoned). The root is called ``MemphisError`` although it lives in the NATS layer because users
catch one base for everything this library raises, whichever layer raised it; the layer above
adds its own subclasses, and re-exports these beside them from the one module that is the public
home of every error and draws the whole hierarchy.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosedError",
    "ConnectionLostError",
    "LocalProtocolError",
    "MemphisConnectError",
    "MemphisError",
    "NoRespondersError",
    "RemoteProtocolError",
    "RequestAbandonedError",
    "RequestTimeoutError",
]


class MemphisError(Exception):
    """Base class of every error this library raises on purpose."""


# Raised synchronously by the call that was given the bad input, never later through an event:
# nothing has been queued, so the connection is unaffected.
class LocalProtocolError(MemphisError, ValueError):
    """The caller asked for something invalid; nothing was sent.

    Also a ``ValueError`` so that code written for "bad argument" keeps working.
    """


class RemoteProtocolError(MemphisError):
    """The server sent something that breaks the NATS protocol or our limits.

    Raised by the parser; ``receive_data`` never lets it escape: the session reports it in a
    ``Disconnected`` event, ignores whatever still arrives on that transport (it is poisoned)
    and applies the reconnect policy. It also reaches callers from ``Msg.headers`` when a header
    line of a received message is malformed.
    """


class MemphisConnectError(MemphisError):
    """Connecting, authenticating or reconnecting failed."""


class ConnectionClosedError(MemphisConnectError):
    """The connection is closed (by the user, or after reconnects were exhausted)."""

    @classmethod
    def because(cls, cause: MemphisError | None) -> ConnectionClosedError:
        """What a call meets on a connection that ``cause`` ended (None: closed by the user).

        The root cause (the protocol or transport error that ended the connection) stays
        reachable as ``__cause__``, whichever call first notices the close.
        """
        text = "the connection is closed" + ("" if cause is None else f": {cause}")
        error = cls(text)
        if isinstance(cause, ConnectionClosedError) and cause.__cause__ is not None:
            error.__cause__ = cause.__cause__
        else:
            error.__cause__ = cause
        return error


# A ``TimeoutError`` too, so ``except TimeoutError`` in frontend code catches it; the session's text
# is nats.go's ``nats: timeout`` (docs/protocol.md §0.3, §2.1).
class RequestTimeoutError(MemphisError, TimeoutError):
    """A request or a publish acknowledgement did not arrive in time."""


# Not a subclass of RequestTimeoutError: control requests retry timeouts only (docs/protocol.md
# §2.1), and nobody listening is an answer, not a lost request.
class NoRespondersError(MemphisError):
    """A request went to a subject nobody listens on (NATS status 503)."""


# Only requests made with ``replay=False`` (JetStream pulls) fail with this; replayable ones (a
# JetStream publish, a request/reply) wait for the next connection instead
# (docs/cluster-client.md).
class ConnectionLostError(MemphisConnectError):
    """The connection dropped while a request that is not replayed was waiting for its reply."""


class RequestAbandonedError(MemphisError):
    """The caller abandoned the request (e.g. a fetch that stopped waiting); what still arrived
    was given to it."""
