"""Events the NATS session hands to its frontend (h11 style: past-tense facts).

Messages for user subscriptions are delivered as the parser's own :class:`~._frames.Msg` objects
(no wrapper on the hot path); everything else is one of the small slotted classes below.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._errors import MemphisError
from ._frames import Msg
from ._inflight import PendingRequest

__all__ = [
    "Closed",
    "Connected",
    "Disconnected",
    "PingCompleted",
    "ReconnectDue",
    "RepliesReceived",
    "ReplyReceived",
    "RequestFailed",
    "ServerError",
    "SessionEvent",
    "TLSUpgradeRequired",
    "TransportEvent",
]


# Slotted classes with value equality instead of dataclasses: events are made per reply on the
# produce and pull paths, and tests compare them by value. ``__slots__`` is annotated ClassVar so
# that it stays readable on the class when mypyc compiles this module (docs/compiled.md): mypyc
# drops an unannotated ``__slots__``, and ``__eq__``/``__repr__`` read it.
class _Base:
    __slots__: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        slots: tuple[str, ...] = self.__slots__
        return type(self) is type(other) and all(
            getattr(self, s) == getattr(other, s) for s in slots
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        slots: tuple[str, ...] = self.__slots__
        args = ", ".join(f"{s}={getattr(self, s)!r}" for s in slots)
        return f"{type(self).__name__}({args})"


class TLSUpgradeRequired(_Base):
    """The server's INFO arrived; wrap the transport in TLS, then call ``tls_established()``."""

    __slots__: ClassVar[tuple[str, ...]] = ("server_info",)

    def __init__(self, server_info: dict[str, Any]) -> None:
        self.server_info = server_info


class Connected(_Base):
    """The handshake finished (the PONG to our post-CONNECT PING arrived) with ``server``.

    ``server`` is the ``(host, port)`` connected to (None for a session made without servers).
    """

    __slots__: ClassVar[tuple[str, ...]] = ("reconnected", "server", "server_info")

    def __init__(
        self,
        server_info: dict[str, Any],
        reconnected: bool,
        server: tuple[str, int] | None = None,
    ) -> None:
        self.server_info = server_info
        self.reconnected = reconnected
        self.server = server


class Disconnected(_Base):
    """The transport is unusable: the frontend must close it.

    ``reconnect_at`` is the monotonic time of the next attempt, or None when the session is
    about to close (a :class:`Closed` event follows). ``server`` is the ``(host, port)`` lost
    (or that could not be dialled): by the time the event is read, the pool has moved on.
    """

    __slots__: ClassVar[tuple[str, ...]] = ("error", "reconnect_at", "server")

    def __init__(
        self,
        error: MemphisError | None,
        reconnect_at: float | None,
        server: tuple[str, int] | None = None,
    ) -> None:
        self.error = error
        self.reconnect_at = reconnect_at
        self.server = server


class ReconnectDue(_Base):
    """The backoff deadline passed: dial ``server``, then call ``connection_made`` or
    ``connection_failed``.

    ``attempt`` counts the consecutive failed attempts so far (0 while the first connect tries
    the next given server). ``server`` is the ``(host, port)`` the pool chose; None only for a
    session made without servers, whose frontend dials its own.
    """

    __slots__: ClassVar[tuple[str, ...]] = ("attempt", "server")

    def __init__(self, attempt: int, server: tuple[str, int] | None = None) -> None:
        self.attempt = attempt
        self.server = server


class Closed(_Base):
    """Terminal. ``error`` is None after a user ``close()``; ``server`` the last one used."""

    __slots__: ClassVar[tuple[str, ...]] = ("error", "server")

    def __init__(self, error: MemphisError | None, server: tuple[str, int] | None = None) -> None:
        self.error = error
        self.server = server


class ServerError(_Base):
    """A ``-ERR`` after the handshake that did not end the connection (e.g. a permissions error)."""

    __slots__: ClassVar[tuple[str, ...]] = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


# Internal to the core: the layer above consumes these, frontends never see them (they are not a
# ``TransportEvent``).
# ``owner`` is whatever the request was made with (``Session.request(owner=...)``): the layer above
# finds its handler there, so a reply is looked up once, by the session, and no second registry
# by token exists.
class ReplyReceived(_Base):
    """A reply for request ``token`` (made by ``owner``) arrived."""

    __slots__: ClassVar[tuple[str, ...]] = ("msg", "owner", "token")

    def __init__(self, token: int, msg: Msg, owner: object = None) -> None:
        self.token = token
        self.msg = msg
        self.owner = owner


class RepliesReceived(_Base):
    """Plain replies (no headers) on the shared inbox, in the order they arrived: reply ``i``
    answers ``requests[i]`` (its ``token`` and ``owner``) with ``payloads[i]``.

    One event for a run of replies read together (a read full of PubAcks), with no ``Msg``
    each; :meth:`msg` builds the ``Msg`` for whoever needs one.
    """

    __slots__: ClassVar[tuple[str, ...]] = ("inbox", "payloads", "requests", "sid")

    def __init__(
        self, requests: list[PendingRequest], payloads: list[bytes], inbox: str, sid: int
    ) -> None:
        self.requests = requests
        self.payloads = payloads
        self.inbox = inbox  # the reply subjects' prefix: the subject is ``<inbox><token>``
        self.sid = sid  # the shared inbox's subscription, which every reply came on

    def msg(self, index: int) -> Msg:
        """Reply ``index`` as the ``Msg`` it arrived as."""
        request = self.requests[index]
        return Msg(f"{self.inbox}{request.token}", self.sid, None, self.payloads[index])


class RequestFailed(_Base):
    """Request ``token`` ended without a (further) reply: timeout, 503, connection lost."""

    __slots__: ClassVar[tuple[str, ...]] = ("error", "owner", "token")

    def __init__(self, token: int, error: MemphisError, owner: object = None) -> None:
        self.token = token
        self.error = error
        self.owner = owner


class PingCompleted(_Base):
    """The server answered the PING of ``ping()`` number ``token``: it processed all before it."""

    __slots__: ClassVar[tuple[str, ...]] = ("owner", "token")

    def __init__(self, token: int, owner: object = None) -> None:
        self.token = token
        self.owner = owner


# ``Msg`` is a session event as it is, not wrapped: push messages are the most frequent event after
# replies, and a wrapper per message would be pure overhead.
SessionEvent = (
    TLSUpgradeRequired
    | Connected
    | Disconnected
    | ReconnectDue
    | Closed
    | ServerError
    | ReplyReceived
    | RepliesReceived
    | RequestFailed
    | PingCompleted
    | Msg
)

#: The events about the connection itself (everything but request outcomes and messages).
TransportEvent = TLSUpgradeRequired | Connected | Disconnected | ReconnectDue | Closed | ServerError
