"""The commands half of :class:`~._session.Session`: publish, request, subscribe, flush.

A mixin only to keep each module readable: these methods queue bytes and bookkeeping on the
session's own state (declared below for the type checker); every state transition stays in
``_session.py`` and ``_state.py``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from . import _commands as cmd
from ._errors import LocalProtocolError, MemphisConnectError
from ._inflight import InFlight, PendingRequest, Subscription
from ._outbound import HeadersLike, encode_publish, encode_request
from ._state import CONNECT_SENT, ConnState

__all__ = ["SessionCommands"]


class SessionCommands:
    state: ConnState
    max_payload: int
    _out: list[bytes]
    _offline: list[bytes]
    _offline_size: int
    _buffer_limit: int
    _inbox_bytes: bytes
    _next_token: int
    _next_sid: int
    _requests: InFlight
    _request_sids: dict[int, int]
    _draining: dict[int, int]
    _subs: dict[int, Subscription]
    _pong_waiters: deque[int]
    _flushes_unsent: list[int]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def _release(self, request: PendingRequest) -> None: ...

    def publish(
        self,
        subject: str,
        payload: bytes | bytearray | memoryview = b"",
        *,
        headers: HeadersLike | None = None,
        reply: str | None = None,
    ) -> None:
        """Queue a core NATS publish (buffered while reconnecting, up to the buffer limit).

        Raises:
            LocalProtocolError: bad subject or headers, or larger than the server's max_payload.
            ConnectionClosedError: the session is closed.
            MemphisConnectError: disconnected and the reconnect buffer is full.
        """
        self._check_open()
        self._queue(encode_publish(subject, payload, headers, reply, self.max_payload))

    def publish_to_reply(self, reply: str, payload: bytes) -> None:
        """Publish to a reply subject the server gave us (a JetStream ack subject).

        The parser only yields subjects free of whitespace, and JetStream never puts wildcards
        in them, so the per-subject check is skipped: ack subjects are all distinct, and
        checking each one cost a quarter of the consume path.

        Raises:
            ConnectionClosedError, MemphisConnectError: as :meth:`publish`.
        """
        self._check_open()
        self._queue(
            b"PUB %b %d\r\n%b\r\n"
            % (reply.encode("utf-8", "surrogateescape"), len(payload), payload)
        )

    def _queue(self, data: bytes) -> None:
        if self.state is ConnState.CONNECTED:
            self._out.append(data)
            return
        if self._offline_size + len(data) > self._buffer_limit:
            raise MemphisConnectError("disconnected and the reconnect buffer is full")
        self._offline.append(data)
        self._offline_size += len(data)

    def request(
        self,
        subject: str,
        payload: bytes | bytearray | memoryview = b"",
        *,
        now: float,
        timeout: float,
        headers: HeadersLike | None = None,
        multi: bool = False,
        replay: bool = True,
    ) -> int:
        """Send a request whose replies arrive on the shared inbox; return its token.

        Each reply becomes ``ReplyReceived(token, msg)``. A single-reply request ends with its
        first reply; a ``multi`` one (a JetStream pull) lasts until ``cancel_request`` or its
        deadline. It ends with ``RequestFailed`` on timeout, on a 503 (no responders), or when
        the connection is lost and ``replay`` is false (replayable requests are re-sent after a
        reconnect, with the same reply subject) or the session closes.

        Raises:
            LocalProtocolError: bad subject/headers, payload too large, timeout not positive.
            ConnectionClosedError: the session is closed.
        """
        self._check_open()
        if timeout <= 0:
            raise LocalProtocolError("timeout must be positive")
        token = self._next_token
        # JetStream delivers pulled messages with their *stream* subject, so replies of a
        # multi-reply request can only be told apart by subscription: it gets an inbox of its
        # own, one token deeper than the shared ``<inbox>.*`` so that one does not match it.
        reply = (
            b"%bp.%d" % (self._inbox_bytes, token)
            if multi
            else b"%b%d" % (self._inbox_bytes, token)
        )
        data = encode_request(subject, payload, headers, reply, self.max_payload)
        self._next_token = token + 1
        request = PendingRequest(token, data, now + timeout, multi, replay)
        if multi:
            request.sid = self._next_sid
            self._next_sid += 1
            self._request_sids[request.sid] = token
            data = b"SUB %b %d\r\n%b" % (reply, request.sid, data)
            request.data = data
        self._requests.add(request)
        if self.state is ConnState.CONNECTED:
            request.sent = True
            self._out.append(data)
        return token

    def cancel_request(self, token: int) -> None:
        """Forget a request: later replies to it are dropped, no event follows."""
        request = self._requests.pop(token)
        if request is not None:
            self._release(request)

    def abandon_request(self, token: int) -> None:
        """End a multi-reply request early without losing what is already on its way.

        Its inbox is unsubscribed (the server drops a pull whose reply subject has no interest
        any more), but replies sent before the server saw the UNSUB still arrive as
        ``ReplyReceived``, so they can be given back rather than silently dropped. A PING
        follows the UNSUB; its PONG proves nothing more can come, and a ``RequestFailed``
        then closes the request.
        """
        request = self._requests.get(token)
        if request is None or not request.sid or self.state is not ConnState.CONNECTED:
            self.cancel_request(token)
            return
        self._requests.pop(token)
        sid = request.sid
        del self._request_sids[sid]
        self._draining[sid] = token
        self._out.append(cmd.encode_unsub(sid))
        self._out.append(cmd.PING)
        self._pong_waiters.append(-sid)  # negative: the end of a drain, not a flush

    def subscribe(self, subject: str, queue: str | None = None) -> int:
        """Subscribe (replayed after every reconnect) and return the sid.

        Raises:
            LocalProtocolError: bad subject or queue name.
            ConnectionClosedError: the session is closed.
        """
        self._check_open()
        sid = self._next_sid
        data = cmd.encode_sub(subject, sid, queue)
        self._next_sid = sid + 1
        self._subs[sid] = Subscription(sid, subject, queue)
        if self.state in CONNECT_SENT:
            self._out.append(data)
        return sid

    def unsubscribe(self, sid: int, max_msgs: int | None = None) -> None:
        """Unsubscribe now, or after ``max_msgs`` more messages."""
        sub = self._subs.get(sid)
        if sub is None:
            return
        if max_msgs is None or max_msgs <= 0:
            del self._subs[sid]
        else:
            sub.remaining = max_msgs
        if self.state in CONNECT_SENT:
            self._out.append(cmd.encode_unsub(sid, max_msgs))

    def flush(self) -> int:
        """Send a PING; ``FlushCompleted(token)`` follows once the server processed all before."""
        self._check_open()
        token = self._next_token
        self._next_token = token + 1
        if self.state is ConnState.CONNECTED:
            self._pong_waiters.append(token)
            self._out.append(cmd.PING)
        else:
            self._flushes_unsent.append(token)
        return token
