"""The Memphis layer's one way onto the NATS session: requests, pushes and publishes.

Every request the client sends carries one :class:`ReplyHandler` as its owner in the session's
own record of it (one registry per reply token: the session's); every subscription made for
broker pushes is registered here with the object it feeds. :meth:`Dispatcher.dispatch` then
hands each session event to its owner, so the components (stations, producers, consumers) never
see each other's replies and never call back into the ``Client`` that composes them.

Control-plane requests (``$memphis_*``) share one handler, :class:`ControlRequest`: the Go SDK
gives each attempt 20 s and retries only on timeout, five more times (docs/protocol.md
§2.1). A retry is the same request sent again; the broker's creates are
idempotent, which is what makes that safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from memphis_core.nats._errors import MemphisError, RequestTimeoutError
from memphis_core.nats._events import (
    PingCompleted,
    RepliesReceived,
    ReplyReceived,
    RequestFailed,
    ServerError,
    SessionEvent,
    TransportEvent,
)
from memphis_core.nats._frames import Msg
from memphis_core.nats._session import Session

from ._errors import PermissionsViolationError
from ._operation import Operation

__all__ = [
    "CONTROL_RETRIES",
    "CONTROL_TIMEOUT",
    "PENDING",
    "ControlRequest",
    "ControlRetry",
    "Dispatcher",
    "Publishes",
    "ReplyHandler",
    "memphis_text",
]

#: Seconds per control-request attempt, and how many more attempts follow a timeout.
CONTROL_TIMEOUT: Final = 20.0
# docs/protocol.md §2.1: 20 s per attempt, six attempts in all, so a control call can take two
# minutes against an unreachable control plane. These are the Go SDK's numbers; a caller with a
# shorter patience uses its frontend's timeout, not a different policy here.
CONTROL_RETRIES: Final = 5
#: Returned by a control ``parse`` whose operation is finished later by follow-up requests.
# A sentinel rather than None: None is a legitimate result (destroy, enforce), and consumer creation
# finishes only after its CONSUMER.INFO lookups (docs/protocol.md §7.2).
PENDING: Final = object()
#: What a message action or a report puts on the wire, as (subject, payload) publishes.
Publishes = list[tuple[str, bytes]]
# JetStream ack subjects come from the server and are valid by construction (see
# Session.publish_to_reply); everything else we publish is one of our own subjects.
# Every other fire-and-forget subject is a ``$memphis_*`` constant of ours, so this prefix is enough
# to tell the two apart without checking each subject.
_ACK_PREFIX: Final = "$JS.ACK."
# nats-server's text when it refuses a publish (docs/protocol.md §1.4): the connection stays up
# and the request simply never gets a reply. The parser strips the outer single quotes; Go's %q
# quotes the subject, and a subject has no '"' of its own.
_REFUSED_PUBLISH: Final = re.compile(
    r'permissions violation for publish to "(?P<subject>[^"]+)"', re.IGNORECASE
)


class ControlRetry:
    """A control request got no reply in time and was sent again (attempt ``attempt``)."""

    __slots__ = ("attempt", "subject", "what")

    def __init__(self, what: str, subject: str, attempt: int) -> None:
        self.what = what
        self.subject = subject
        self.attempt = attempt

    def __repr__(self) -> str:
        return f"ControlRetry({self.what!r}, {self.subject!r}, {self.attempt})"


class ReplyHandler:
    """What to do with the replies to one request, or with its failure.

    ``on_reply`` gets every reply the session routes to the token (``msg`` is None for the PONG
    that completes a ``ping``) and returns True when the handler is finished, so the dispatcher can
    forget it; a multi-reply pull stays registered until then. ``on_error`` gets the session's
    ``RequestFailed`` (timeout, no responders, connection lost or closed) and always finishes.
    """

    __slots__ = ()

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        raise NotImplementedError

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        raise NotImplementedError

    def on_payload(self, token: int, payload: bytes, now: float) -> bool | None:
        """A plain reply (no headers) on the shared inbox, given as its payload alone.

        Return as ``on_reply`` does, or None to have it given to ``on_reply`` as a ``Msg``
        (the default): a handler that reads only the payload (a produce's PubAck) overrides
        this, and PubAcks read in bulk then cost no ``Msg`` each.
        """
        return None


class Dispatcher:
    """Routes session events to the handler or push target registered for them."""

    __slots__ = ("_pushes", "_refusable", "report", "session")

    def __init__(
        self, session: Session, report: Callable[[ControlRetry], None] | None = None
    ) -> None:
        self.session = session
        # Where a retried control request is reported (the client's events: frontends log it).
        self.report = report
        # sid -> the object that pushes on that subscription feed (the Client decides what to
        # do with each kind; the dispatcher only remembers who asked).
        self._pushes: dict[int, object] = {}
        # token -> subject of the requests that fail at once when the server refuses to let us
        # publish to their subject (``request(refusable=True)``); pruned as they end.
        self._refusable: dict[int, str] = {}

    # ---------------------------------------------------------------- requests

    def request(
        self,
        subject: str,
        body: bytes,
        handler: ReplyHandler,
        *,
        now: float,
        timeout: float,
        multi: bool = False,
        replay: bool = True,
        refusable: bool = False,
    ) -> int:
        """Send a request with ``handler`` as its owner; return the token.

        With ``refusable``, a ``Permissions Violation for Publish to "<subject>"`` from the
        server fails the oldest such request still waiting on that subject at once
        (``handler.on_error`` with a :class:`PermissionsViolationError` carrying the server's
        text) instead of at its timeout: nats-server drops a refused publish, so no reply
        comes. That ``-ERR`` is then not reported as a ``ServerError``: use it only for
        requests the client makes on its own behalf (lookups, introspection).
        """
        token = self.session.request(
            subject, body, now=now, timeout=timeout, multi=multi, replay=replay, owner=handler
        )
        if refusable:
            self._refusable[token] = subject
        return token

    def register(self, token: int, handler: ReplyHandler) -> None:
        """Make ``handler`` the owner of a request the caller sent through the session itself."""
        self.session.attach(token, handler)

    def cancel(self, token: int) -> None:
        """Forget a request: later replies to it are dropped, and no failure is reported."""
        self.session.cancel_request(token)

    def control(
        self, what: str, subject: str, body: bytes, parse: Callable[[bytes], Any], now: float
    ) -> Operation[Any]:
        """A ``$memphis_*`` request whose reply ``parse`` turns into the operation's result.

        ``parse`` raises a ``MemphisError`` for an error reply (the operation fails with it), or
        returns :data:`PENDING` when follow-up requests will finish the operation.
        """
        op: Operation[Any] = Operation(what)
        self.send_control(ControlRequest(self, op, subject, body, parse), now)
        return op

    def send_control(self, request: ControlRequest, now: float) -> None:
        self.request(request.subject, request.body, request, now=now, timeout=request.timeout)

    def ping(self) -> Operation[None]:
        """Done once the server has processed everything sent before (a PING round trip)."""
        op: Operation[None] = Operation("ping")
        self.session.ping(_Pong(op))
        return op

    # ---------------------------------------------------------------- pushes and publishes

    def subscribe(self, subject: str, target: object, queue: str | None = None) -> int:
        """Subscribe for broker pushes; messages on it are reported with ``target``."""
        sid = self.session.subscribe(subject, queue)
        self._pushes[sid] = target
        return sid

    def unsubscribe(self, sid: int) -> None:
        self.session.unsubscribe(sid)
        # Messages already in flight for this sid are dropped by ``push_target``: after an UNSUB the
        # server may still deliver what it had routed.
        self._pushes.pop(sid, None)

    def push_target(self, sid: int) -> tuple[bool, object]:
        """``(True, target)`` for one of our push subscriptions, ``(False, None)`` otherwise
        (a message still in flight when we unsubscribed)."""
        if sid in self._pushes:
            return True, self._pushes[sid]
        return False, None

    def publish(self, publishes: Publishes) -> None:
        """Send fire-and-forget publishes (acks, nacks, DLS reports, notifications)."""
        session = self.session
        for subject, payload in publishes:
            if subject.startswith(_ACK_PREFIX):
                session.publish_to_reply(subject, payload)  # server-given: already valid
            else:
                # Buffered while disconnected (docs/cluster-client.md, "What happens to messages in
                # flight"): an ack made during an outage is written after the handshake, not lost.
                session.publish(subject, payload)

    # ---------------------------------------------------------------- routing

    def dispatch(self, events: Iterable[SessionEvent], now: float) -> list[TransportEvent | Msg]:
        """Hand replies and request failures to their handlers; return every other event
        (push messages and connection events) for the client, in order."""
        rest: list[TransportEvent | Msg] = []
        # Tokens whose handler said it is finished during this batch. A multi-reply request (a
        # pull) can have a reply and its end in one batch, the end queued before the reply made
        # the handler cancel the request: a finished handler hears nothing more (ReplyHandler).
        finished: set[int] = set()
        refusable = self._refusable  # usually empty: one truth test per finished request
        for event in events:
            # Every request of this layer has its handler as owner; a request without one (made on
            # the bare session) has nobody to tell.
            # ReplyReceived first: a pull batch is one per message, a run of PubAcks one
            # RepliesReceived (23 ns an isinstance that fails, paid per run, not per message).
            if isinstance(event, ReplyReceived):  # pulled messages, replies with headers
                # The handler decides when it is finished: a pull gets every message of its batch
                # and cancels its request itself; a single-reply request is over with this reply.
                handler = cast("ReplyHandler | None", event.owner)
                token = event.token
                if (
                    handler is not None
                    and token not in finished
                    and handler.on_reply(token, event.msg, now)
                ):
                    finished.add(token)
                    if refusable:
                        refusable.pop(token, None)
            elif isinstance(event, RepliesReceived):  # PubAcks, a run of them in one event
                for index, request in enumerate(event.requests):
                    handler = cast("ReplyHandler | None", request.owner)
                    token = request.token
                    if handler is None or token in finished:
                        continue
                    done = handler.on_payload(token, event.payloads[index], now)
                    if done is None:
                        done = handler.on_reply(token, event.msg(index), now)
                    # A single-reply request left the session with this reply: only a multi-reply
                    # one can hear of its token again in this batch.
                    if done and request.multi:
                        finished.add(token)
                    if done and refusable:
                        refusable.pop(token, None)
            elif isinstance(event, RequestFailed):
                handler = cast("ReplyHandler | None", event.owner)
                if refusable:
                    refusable.pop(event.token, None)
                if handler is not None and event.token not in finished:
                    handler.on_error(event.token, memphis_text(event.error), now)
            elif isinstance(event, PingCompleted):
                handler = cast("ReplyHandler | None", event.owner)
                if handler is not None:
                    # A PING completes with no message: ``None`` tells the handler it was the PONG.
                    handler.on_reply(event.token, None, now)
            else:
                if (
                    isinstance(event, ServerError)
                    and self._refusable
                    and self._refused(event.message, now)
                ):
                    # Answered a refusable request (a lookup of the client's own): not a server
                    # error of the caller's, nothing to log or call back.
                    continue
                rest.append(event)
        return rest

    def _refused(self, message: str, now: float) -> bool:
        """Fail the oldest refusable request still waiting on the subject the server refused;
        True if there was one.

        nats-server sends one ``-ERR`` per refused publish, in the order it read them, so each
        one ends one request: the oldest on that subject.
        """
        match = _REFUSED_PUBLISH.fullmatch(message)
        if match is None:
            return False
        subject = match["subject"]
        for token, refused in self._refusable.items():  # insertion = sending order
            if refused != subject:
                continue
            del self._refusable[token]
            request = self.session.pending(token)
            handler = None if request is None else cast("ReplyHandler | None", request.owner)
            if handler is None:
                return False
            self.session.cancel_request(token)
            handler.on_error(token, PermissionsViolationError(f"memphis: {message}"), now)
            return True
        return False


def memphis_text(error: MemphisError) -> MemphisError:
    """``error`` with nats.go's ``nats:`` prefix worded ``memphis:``, as the Memphis SDKs word it.

    The Go SDK rewrites ``nats`` to ``memphis`` in the errors it passes on (docs/protocol.md
    §0.3); the NATS session keeps the NATS texts, and this layer words them for its users.
    """
    text = str(error)
    if not text.startswith("nats: "):
        return error
    worded = type(error)("memphis: " + text[len("nats: ") :])
    worded.__cause__ = error.__cause__
    return worded


class ControlRequest(ReplyHandler):
    """A ``$memphis_*`` control request: parse the reply; on timeout send it again."""

    __slots__ = ("attempts", "body", "dispatcher", "op", "parse", "retries", "subject", "timeout")

    def __init__(
        self,
        dispatcher: Dispatcher,
        op: Operation[Any],
        subject: str,
        body: bytes,
        parse: Callable[[bytes], Any],
        *,
        timeout: float = CONTROL_TIMEOUT,
        retries: int = CONTROL_RETRIES,
    ) -> None:
        self.dispatcher = dispatcher
        self.op = op
        self.subject = subject
        self.body = body
        self.parse = parse
        self.timeout = timeout
        self.retries = retries
        self.attempts = 1

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        if msg is None:  # only a ping completes without a message
            # Tokens are never shared between a ping and a request, so this would be a routing bug.
            raise AssertionError("a control request completed without a reply")
        try:
            # Every reply style of docs/protocol.md §2.2 is the parse function's business: plain
            # text, JSON with ``error``, or either; this handler only knows success from failure.
            result = self.parse(msg.payload)
        except MemphisError as exc:
            self.op.fail(exc)
            return True
        if result is not PENDING:
            self.op.finish(result)
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        # The retry is the same body on the same subject: the broker's creates treat an existing
        # object as success (docs/protocol.md §2.3), so a request that did arrive the first time
        # does no harm the second time.
        if isinstance(error, RequestTimeoutError) and self.retries > 0 and not self.op.done:
            # Only a timeout is retried: the request may simply not have reached a control
            # plane (one restarting, say). Any other failure is an answer.
            self.retries -= 1
            # Counted for the final error text: "6 attempt(s)" tells the user the whole two-minute
            # budget was spent, not one slow reply (docs/protocol.md §2.1).
            self.attempts += 1
            self.dispatcher.send_control(self, now)
            if self.dispatcher.report is not None:
                self.dispatcher.report(ControlRetry(self.op.what, self.subject, self.attempts))
            return
        if isinstance(error, RequestTimeoutError):
            named: MemphisError = RequestTimeoutError(
                f"{self.op.what}: no reply on {self.subject} within {self.timeout:g} s, "
                f"{self.attempts} attempt(s)"
            )
        else:
            # No responders is not retried (docs/protocol.md §2.1): nobody serves the subject, and
            # the Go SDK's swallowing of it on the first attempt is a bug we do not copy (§12.1 item
            # 1).
            named = type(error)(f"{self.op.what}: {error}")
        # The root cause stays the cause: a closed connection's error carries the transport or
        # protocol error that closed it, and callers look there.
        named.__cause__ = error if error.__cause__ is None else error.__cause__
        self.op.fail(named)


class _Pong(ReplyHandler):
    __slots__ = ("op",)

    def __init__(self, op: Operation[None]) -> None:
        self.op = op

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        self.op.finish(None)
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        self.op.fail(error)
