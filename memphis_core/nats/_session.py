"""The NATS session: one logical connection that survives transports and reconnects.

Sans-IO in the h11/aioquic style: the frontend feeds bytes (``receive_data``), drains bytes
(``data_to_send``), dispatches ``events()``, and wakes the session at ``next_deadline()`` through
``handle_timeout(now)``. The session never reads a clock; every call that starts a timer takes
``now`` (any monotonic float, in seconds). State transitions come from ``_state.py``.

What it owns: the handshake and auth, server PING -> PONG, client keepalive,
subscription ids, ONE wildcard reply inbox shared by every request (control-plane requests and
JetStream pub-acks; a pull gets an inbox subscription of its own, since pulled messages carry
their stream subject), request correlation and timeouts, and the reconnect policy with replay
of subscriptions, unanswered requests and publishes buffered while offline. Which server to dial
is the server pool's choice (``_pool.py``): the session names it in ``current_server`` and in
each ``ReconnectDue`` (docs/cluster-client.md).
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from . import _commands as cmd
from . import _errors as err
from . import _events as ev
from ._commands import PublishHeaders, connect_fields, encode_publish, encode_request
from ._frames import Err, Info, Msg, Ping, Pong, Replies
from ._inflight import (
    AbandonPing,
    InFlight,
    PendingRequest,
    PongWaiter,
    RoundTripPing,
    Subscription,
    keepalive_ping,
)
from ._parser import ParseError, Parser
from ._pool import Server, ServerPool, server_name
from ._state import (
    CONNECT_SENT,
    READING_STATES,
    TRANSPORT_STATES,
    ConnState,
    Input,
    transition,
)

__all__ = ["Session"]

# sid 1 is reserved for the shared ``<inbox>.*`` subscription made with every CONNECT; user
# subscriptions and per-pull inboxes count up from 2, so a MSG on sid 1 is always a reply and its
# last subject token is the request token (``_on_msg``).
_INBOX_SID: Final = 1
# The NATS default before the server's INFO tells us the real limit (docs.nats.io: max_payload).
_DEFAULT_MAX_PAYLOAD: Final = 1_048_576
# -ERR texts after which nats-server keeps the connection open (docs.nats.io, Client Protocol,
# "-ERR"): every other -ERR is followed by the server closing the socket.
_NON_FATAL_ERRS: Final = ("permissions violation", "invalid subject")
# Matched lower-cased and as a substring: nats-server sends it quoted and capitalised (-ERR
# 'Authorization Violation'), and it is the one text that triggers the ``fallback_user`` retry.
_AUTH_VIOLATION: Final = "authorization violation"


class Session:
    """A NATS client connection, as a state machine (no I/O).

    Args:
        name: the CONNECT ``name`` (the connection's name in the server's monitoring), or None.
        token: token auth (sent as ``auth_token``), or None.
        user: user/password auth: the CONNECT ``user``, or None.
        password: the CONNECT ``pass`` that goes with ``user``.
        fallback_user: a second ``user`` tried once, at once and without counting an attempt,
            when the server refuses the first with ``Authorization Violation`` during a
            handshake; it is then used for every later reconnect.
        reconnect: whether a lost connection is re-established.
        max_reconnect: failed reconnect attempts per server before giving up (-1 = forever),
            as nats.go's ``MaxReconnect``: the session gives up once every server of the pool
            was tried that many times since the last useful connection.
            An attempt only counts as a success once the server answered a PING sent after
            the replay (see ``_on_connected``): a server that completes the handshake and
            then drops us is a failed attempt, not a fresh start.
        reconnect_interval: seconds before a server is dialled again after it was tried (a
            different server of the pool is dialled at once).
        timeout: seconds allowed for each handshake (transport made -> PONG).
        ping_interval: seconds between client keepalive PINGs (0 disables them).
        max_pings_out: unanswered keepalive PINGs before the connection is declared stale.
        tls: expect to upgrade to TLS after INFO (emits ``TLSUpgradeRequired``).
        reconnect_buffer_size: bytes of publishes kept while disconnected.
        inbox_prefix: override the random reply inbox prefix (tests).
        servers: the ``(host, port)`` servers to use; empty means the frontend dials a server
            of its own choosing and ``current_server`` is None (tests of the bare session).
        ignore_discovered_servers: do not add the servers of INFO ``connect_urls`` to the pool.
        randomize_servers: shuffle the pool (nats.go's default; False keeps the given order).
        rng: the source of those shuffles; a fresh ``random.Random()`` when None. Tests pass
            a seeded one.

    Raises:
        LocalProtocolError: ``token`` together with ``user``/``password``, a ``password`` or
            ``fallback_user`` without ``user``, or a timeout or interval out of range.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        fallback_user: str | None = None,
        reconnect: bool = True,
        max_reconnect: int = 10,
        reconnect_interval: float = 1.0,
        timeout: float = 15.0,
        ping_interval: float = 120.0,
        max_pings_out: int = 2,
        tls: bool = False,
        reconnect_buffer_size: int = 8 * 1024 * 1024,
        inbox_prefix: str | None = None,
        servers: Sequence[Server] = (),
        ignore_discovered_servers: bool = False,
        randomize_servers: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        # A server takes one auth method per CONNECT: mixing them would send a secret it ignores.
        if token is not None and (user is not None or password is not None):
            raise err.LocalProtocolError("token auth and user/password auth are exclusive")
        if user is None and (password is not None or fallback_user is not None):
            raise err.LocalProtocolError("password and fallback_user need a user")
        if timeout <= 0 or reconnect_interval < 0 or ping_interval < 0 or max_pings_out < 1:
            raise err.LocalProtocolError("timeouts and intervals must be positive")
        self._name = name
        self._token = token
        self._password = password
        # The user in use; the fallback replaces it once. The choice sticks for every later
        # reconnect, since it lives on the session, not on the transport.
        self._user = user
        self._fallback_user = fallback_user
        self._reconnect = reconnect
        # reconnect=False is the same policy as "zero attempts allowed" (docs/protocol.md §1.1), so
        # ``_lost`` needs only one test.
        self._max_reconnect = max_reconnect if reconnect else 0
        self._reconnect_interval = reconnect_interval
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._max_pings_out = max_pings_out
        self._tls = tls
        self._buffer_limit = reconnect_buffer_size
        self._pool = (
            ServerPool(
                servers,
                rng=rng if rng is not None else random.Random(),
                randomize=randomize_servers,
                discover=not ignore_discovered_servers,
            )
            if servers
            else None
        )

        self.state = ConnState.IDLE
        self.server_info: dict[str, Any] = {}
        self.max_payload: int = _DEFAULT_MAX_PAYLOAD  # until the server's INFO says otherwise
        self._ever_connected = False
        self._attempts = 0  # reconnect attempts since the last connection proved useful
        self._out: list[bytes] = []
        self._offline: list[bytes] = []  # publishes made while not connected
        self._offline_size = 0
        self._events: list[ev.SessionEvent] = []

        self._handshake_deadline: float | None = None
        self._reconnect_at: float | None = None
        self._ping_at: float | None = None
        self._pings_out = 0  # unanswered keepalive PINGs
        # Keepalive, round-trip and abandon PINGs share one queue because the server answers PINGs
        # in the order it read them: the n-th PONG belongs to the n-th PING, whatever its purpose.
        self._pong_waiters: deque[PongWaiter] = deque()  # what each PING in flight is for
        self._pings_unsent: list[RoundTripPing] = []

        # Sids are never reused within a session: a late MSG for a dropped subscription must not be
        # mistaken for one of a newer subscription that happened to get the same number.
        self._next_sid = _INBOX_SID + 1
        self._subs: dict[int, Subscription] = {}
        prefix = inbox_prefix or f"_INBOX.{uuid.uuid4().hex}"
        self._inbox = prefix + "."
        # Requests are encoded on the hot path (every produce): keep the inbox as bytes so the reply
        # subject is one %-format, not an encode per request.
        self._inbox_bytes = cmd.subject_bytes(prefix) + b"."
        self._inbox_len = len(self._inbox)
        # A placeholder until ``connection_made`` makes the parser of the first transport.
        self._parser = self._new_parser()
        # Tokens start at 1 so that 0 can mean "no request" in ``_request_sids.get(sid, 0)``.
        self._next_token = 1
        self._requests = InFlight()
        self._delayed: list[tuple[float, int]] = []  # (send at, token) of delayed requests
        self._request_sids: dict[int, int] = {}  # sid of a multi-reply request's inbox -> token
        self._abandoned: dict[int, PendingRequest] = {}  # sid -> an abandoned multi-reply request

    # ---------------------------------------------------------------- introspection

    @property
    def is_connected(self) -> bool:
        return self.state is ConnState.CONNECTED

    @property
    def closed(self) -> bool:
        """Closed for good: nothing can be sent any more (requests and publishes raise)."""
        return self.state is ConnState.CLOSED

    @property
    def current_server(self) -> Server | None:
        """The ``(host, port)`` to dial now (first connect, or after ``ReconnectDue``), or the
        server in use. None when the session was made without ``servers``."""
        return None if self._pool is None else self._pool.current

    @property
    def tls_hostname(self) -> str | None:
        """The name to check the current server's certificate against (``server_hostname``).

        The host being dialled, except for a discovered server advertised as an IP address:
        then the first host name the user gave, since a cluster's certificates name that.
        """
        return None if self._pool is None else self._pool.tls_hostname()

    @property
    def servers(self) -> list[Server]:
        """The pool in the order it will be tried (given plus discovered servers)."""
        return [] if self._pool is None else self._pool.servers

    # ---------------------------------------------------------------- transport lifecycle

    def connection_made(self, now: float) -> None:
        """A new transport is open (first connect, or after ``ReconnectDue``)."""
        # A fresh parser per transport: bytes left over from the dead one (half a MSG) would
        # otherwise be glued to the new server's INFO and poison the parse.
        self.state = transition(self.state, Input.CONNECTION_MADE)
        self._parser = self._new_parser()
        self._out.clear()  # anything queued for the dead transport is replayed from state
        # The timeout covers everything up to the handshake PONG (INFO, TLS, CONNECT), as the Go
        # SDK's connect timeout does (docs/protocol.md §1.1).
        self._handshake_deadline = now + self._timeout

    def connection_failed(self, now: float, error: BaseException | str) -> None:
        """Dialing failed, or the transport broke (OSError, TLS failure, ...).

        A transport error says only "Connection refused"; the error the caller sees names the
        server it concerns (a field report: "[Errno 111] Connection refused", but where?).
        """
        server = self.current_server
        # Errors of our own (already typed, already worded) keep their text; raw OSErrors and
        # strings from the frontend get the server prefixed.
        if server is not None and not isinstance(error, err.MemphisError):
            error = f"{server[0]}:{server[1]}: {error or type(error).__name__}"
        if self.state is ConnState.IDLE:
            # The very first dial failed: it is not retried (docs/protocol.md §1.4), but with
            # several servers each is tried once first, as nats.go does.
            pool = self._pool
            if pool is None or not pool.initial_left():
                self._give_up(_as_connect_error(error), Input.GIVE_UP)
                return
            # Remember the failure time, so that this server is not re-dialled within
            # reconnect_interval once the pool wraps around to it again.
            pool.failed(now)
            pool.rotate()
            self.state = transition(self.state, Input.LOST)
            # No pause between the given servers on the first connect: each is tried once, in pool
            # order, one right after the other (docs/cluster-client.md, "First connect").
            self._reconnect_at = now
            self._events.append(ev.Disconnected(_as_connect_error(error), now, server))
            return
        self._lost(now, _as_connect_error(error))

    def tls_established(self) -> None:
        """The frontend finished the TLS upgrade asked for by ``TLSUpgradeRequired``."""
        self.state = transition(self.state, Input.TLS_DONE)
        self._send_connect()

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the transport; ``b""`` means EOF.

        Never raises: a protocol violation by the server becomes a ``Disconnected`` event carrying
        a ``RemoteProtocolError`` (that transport is poisoned; bytes still arriving on it are
        ignored) and the reconnect policy applies.
        """
        # Bytes that arrive in other states (after a loss, during the TLS upgrade) belong to a
        # transport the session no longer reads: dropping them keeps a dying socket from reaching
        # the parser of the next one.
        if self.state not in READING_STATES:
            return
        if not data:
            self._lost(now, err.MemphisConnectError("connection closed by the server"))
            return
        error: err.RemoteProtocolError | None = None
        try:
            frames = self._parser.feed(data)
        except ParseError as exc:
            # Handle what was complete before the bad bytes first, so the outcome does not
            # depend on where the transport happened to cut the stream.
            frames, error = exc.frames, exc
        for frame in frames:
            if self.state not in READING_STATES:
                return  # an earlier frame ended this transport
            # A Msg first: a pulled batch is one per message, while a run of replies (PubAcks)
            # is one Replies frame, so testing it second costs 23 ns a run, not a message.
            if isinstance(frame, Msg):
                self._on_msg(frame)
            elif isinstance(frame, Replies):
                self._on_replies(frame)
            elif isinstance(frame, Ping):
                # Answer at once, in every state after INFO: nats-server closes a client that leaves
                # its PINGs unanswered (max_pings_out), even mid-handshake.
                self._out.append(cmd.PONG)
            elif isinstance(frame, Pong):
                self._on_pong(now)
            elif isinstance(frame, Info):
                self._on_info(frame.fields, now)
            elif isinstance(frame, Err):
                self._on_err(frame.message, now)
            # +OK only arrives in verbose mode, which we never ask for.
        if error is not None:
            self._lost(now, error)

    def close(self, error: err.MemphisError | None = None) -> None:
        """Close for good: every waiting request fails with ``ConnectionClosedError``.

        ``error``: why, when it is not the user's wish (a frontend's engine broke); waiting
        requests and the ``Closed`` event then carry it.
        """
        if self.state is ConnState.CLOSED:
            return
        self._give_up(error, Input.CLOSE)

    # ---------------------------------------------------------------- commands

    def publish(
        self,
        subject: str,
        payload: bytes | bytearray | memoryview = b"",
        *,
        headers: PublishHeaders | None = None,
        reply: str | None = None,
    ) -> None:
        """Queue a core NATS publish (buffered while reconnecting, up to the buffer limit).

        Raises:
            LocalProtocolError: bad subject or headers, or larger than the server's max_payload.
            ConnectionClosedError: the session is closed.
            MemphisConnectError: disconnected and the reconnect buffer is full.
        """
        self._check_open()
        # Checked against the server's max_payload here, before queueing: a too-large PUB would make
        # nats-server close the whole connection (-ERR 'Maximum Payload Violation').
        self._queue(encode_publish(subject, payload, headers, reply, self.max_payload))

    def publish_to_reply(self, reply: str, payload: bytes) -> None:
        """Publish to a reply subject the server gave us (a JetStream ack subject).

        The subject is not checked (see ``encode_reply_publish``): it came from the server.

        Raises:
            ConnectionClosedError, MemphisConnectError: as :meth:`publish`.
        """
        self._check_open()
        # Acks carry no headers and no reply (docs/protocol.md §7.8): a plain PUB is enough.
        self._queue(cmd.encode_reply_publish(reply, payload))

    def _queue(self, data: bytes) -> None:
        if self.state is ConnState.CONNECTED:
            self._out.append(data)
            return
        # The offline buffer is bounded (8 MiB by default, docs/cluster-client.md): an app that
        # keeps acking through a long outage must get an error, not unbounded memory growth.
        if self._offline_size + len(data) > self._buffer_limit:
            raise err.MemphisConnectError("disconnected and the reconnect buffer is full")
        self._offline.append(data)
        self._offline_size += len(data)

    def request(
        self,
        subject: str,
        payload: bytes | bytearray | memoryview = b"",
        *,
        now: float,
        timeout: float,
        headers: PublishHeaders | None = None,
        multi: bool = False,
        replay: bool = True,
        delay: float = 0.0,
        owner: object = None,
    ) -> int:
        """Send a request whose replies arrive on the shared inbox; return its token.

        With ``delay`` (seconds) the request is registered now (its deadline is still
        ``now + timeout``) but written only ``delay`` seconds later: how a caller backs off
        before retrying after a 503 without a timer of its own.

        Each reply becomes ``ReplyReceived(token, msg, owner)``, or, for a reply without headers
        on the shared inbox (a PubAck), an entry of a ``RepliesReceived`` that carries a run of
        them read together: ``owner`` is anything the caller
        wants back with the request's replies and its failure (its handler), so it needs no
        registry of its own. A single-reply request ends with its
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
            raise err.LocalProtocolError("timeout must be positive")
        token = self._next_token
        # JetStream delivers pulled messages with their *stream* subject, so replies of a
        # multi-reply request can only be told apart by subscription: it gets an inbox of its
        # own, one token deeper than the shared ``<inbox>.*`` so that one does not match it.
        reply = (
            b"%bp.%d" % (self._inbox_bytes, token)
            if multi
            else b"%b%d" % (self._inbox_bytes, token)
        )
        # Encoded once and kept: a replay after a reconnect writes the very same bytes, so the reply
        # subject (and a msg-id header) stay identical and the broker's dedup still works.
        data = encode_request(subject, payload, headers, reply, self.max_payload)
        self._next_token = token + 1
        request = PendingRequest(token, data, now + timeout, multi, replay, owner)
        if multi:
            request.sid = self._next_sid
            self._next_sid += 1
            self._request_sids[request.sid] = token
            # The SUB travels in the same bytes as the request, before it: the server must know the
            # inbox before it can route the first pulled message to it, and on a replay both must be
            # re-sent together (a new transport has no subscriptions).
            data = b"SUB %b %d\r\n%b" % (reply, request.sid, data)
            request.data = data
        self._send(request, now, delay)
        return token

    def _send(self, request: PendingRequest, now: float, delay: float) -> None:
        self._requests.add(request)
        if delay > 0:
            # Registered in ``_requests`` at once (so the deadline already runs and a reconnect
            # replays it), but held back from the wire until the delay is over.
            request.sent = False
            heapq.heappush(self._delayed, (now + delay, request.token))
        # Made while not connected: stays unsent, and ``_on_connected`` writes it after the next
        # handshake together with the rest of the replay.
        elif self.state is ConnState.CONNECTED:
            request.sent = True
            self._out.append(request.data)
        else:
            request.sent = False

    def pending(self, token: int) -> PendingRequest | None:
        """The record of request ``token`` while it waits for a reply, else None."""
        return self._requests.get(token)

    def attach(self, token: int, owner: object) -> None:
        """Set the owner of request ``token`` (made without one); nothing if it is over."""
        request = self._requests.get(token)
        if request is not None:
            request.owner = owner

    def resend(self, request: PendingRequest, *, now: float, delay: float) -> None:
        """Send a single-reply request that ended with a 503 again, after ``delay`` seconds.

        The same record goes again: the same bytes, reply subject and token, with its deadline
        unchanged. Only a 503 allows this: nobody received the first attempt, so no late reply
        to it can be confused with one to the resend.

        Raises:
            LocalProtocolError: the request is still waiting, or is a multi-reply one.
            ConnectionClosedError: the session is closed.
        """
        self._check_open()
        if request.multi or self._requests.get(request.token) is request:
            raise err.LocalProtocolError("only a single-reply request that ended can be resent")
        self._send(request, now, delay)

    def cancel_request(self, token: int) -> None:
        """Forget a request: later replies to it are dropped, no event follows."""
        request = self._requests.pop(token)
        if request is not None:
            self._release(request)
            return
        # An abandoned request whose owner is finished before the PONG (a pull that got its last
        # message in the meantime): its inbox is already unsubscribed, and "no event follows"
        # holds for it too, so the PONG must not report it to an owner that has let go.
        for sid, abandoned in self._abandoned.items():
            if abandoned.token == token:
                del self._abandoned[sid]
                return

    def abandon_request(self, token: int) -> None:
        """End a multi-reply request early without losing what is already on its way.

        Its inbox is unsubscribed (the server drops a pull whose reply subject has no interest
        any more), but replies sent before the server saw the UNSUB still arrive as
        ``ReplyReceived``, so they can be given back rather than silently dropped. A PING
        follows the UNSUB; its PONG proves nothing more can come, and a ``RequestFailed``
        then closes the request.
        """
        request = self._requests.get(token)
        if request is not None and not request.sent:
            # Never written (a delayed retry, or made offline): nothing can be on its way, so
            # it ends at once, with the event that tells its owner to let go of it.
            self.cancel_request(token)
            self._events.append(
                ev.RequestFailed(
                    token, err.RequestAbandonedError("request abandoned"), request.owner
                )
            )
            return
        if request is None or not request.sid or self.state is not ConnState.CONNECTED:
            self.cancel_request(token)
            return
        self._requests.pop(token)
        sid = request.sid
        del self._request_sids[sid]
        self._abandoned[sid] = request
        # UNSUB then PING: the server handles a client's commands in order, so once the PONG comes
        # back no message for this inbox can still be in the pipe; until then, messages already
        # routed keep arriving on ``_abandoned`` and are given back (docs/protocol.md §7.7).
        self._out.append(cmd.encode_unsub(sid))
        self._out.append(cmd.PING)
        self._pong_waiters.append(AbandonPing(sid))

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
        # Before CONNECT is sent, the SUB would be written ahead of it; ``_send_connect`` replays
        # every subscription anyway, so just record it.
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
            # Kept so that a replay after a reconnect re-sends the UNSUB with what is left of the
            # max, not the original count.
            sub.remaining = max_msgs
        if self.state in CONNECT_SENT:
            self._out.append(cmd.encode_unsub(sid, max_msgs))

    def ping(self, owner: object = None) -> int:
        """Send a PING; ``PingCompleted(token, owner)`` follows once the server processed all
        before it (nats.go's ``Flush``). If the session closes first, ``RequestFailed`` does."""
        self._check_open()
        token = self._next_token
        self._next_token = token + 1
        if self.state is ConnState.CONNECTED:
            self._pong_waiters.append(RoundTripPing(token, owner))
            self._out.append(cmd.PING)
        else:
            # A PING made offline is answered by the first transport that works: it goes out
            # after the replay, so its PONG means "the replay was processed".
            self._pings_unsent.append(RoundTripPing(token, owner))
        return token

    # ---------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """The earliest time ``handle_timeout`` must be called, or None."""
        # Called after every operation by every frontend: no list, no generator, a few compares.
        best = self._requests.earliest()
        for t in (self._handshake_deadline, self._reconnect_at, self._ping_at):
            if t is not None and (best is None or t < best):
                best = t
        delayed = self._delayed
        while delayed:
            request = self._requests.get(delayed[0][1])
            if request is not None and not request.sent:
                t = delayed[0][0]
                if best is None or t < best:
                    best = t
                break
            # Stale heap entries are dropped lazily here rather than on cancel, which keeps cancel
            # O(1).
            heapq.heappop(delayed)  # answered, cancelled or sent early (a reconnect replay)
        return best

    def handle_timeout(self, now: float) -> None:
        """Fire every timer due at ``now``; afterwards ``next_deadline()`` is None or > ``now``."""
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._lost(now, err.MemphisConnectError("timed out waiting for the server handshake"))
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self.state = transition(self.state, Input.RECONNECT_TIMER)
            # The session does not dial: the frontend does, and reports back through
            # ``connection_made`` or ``connection_failed`` (docs/sansio.md §2).
            self._events.append(ev.ReconnectDue(self._attempts, self.current_server))
        if self._ping_at is not None and now >= self._ping_at:
            # nats.go's rule: a PING is due and max_pings_out are already unanswered. A silently
            # dead TCP peer (a node that lost power) is only noticed this way (docs/protocol.md
            # §1.4).
            if self._pings_out >= self._max_pings_out:
                self._lost(now, err.MemphisConnectError("stale connection: PINGs went unanswered"))
            else:
                # Keepalive PINGs go in the same queue as round-trip PINGs: a ping() pending behind
                # a keepalive is then completed by the right PONG.
                self._pings_out += 1
                self._pong_waiters.append(keepalive_ping)
                self._out.append(cmd.PING)
                self._ping_at = now + self._ping_interval
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, token = heapq.heappop(delayed)
            request = self._requests.get(token)
            if request is not None and not request.sent and self.state is ConnState.CONNECTED:
                request.sent = True
                self._out.append(request.data)
            # Offline, it stays unsent: the replay after the next handshake sends it.
        # Expiry runs after the delayed sends above, so a delayed request whose deadline is also due
        # fails with a timeout instead of being sent and forgotten.
        for request in self._requests.expire(now):
            self._release(request)
            self._events.append(
                ev.RequestFailed(
                    request.token, err.RequestTimeoutError("nats: timeout"), request.owner
                )
            )

    # ---------------------------------------------------------------- output

    def events(self) -> list[ev.SessionEvent]:
        """Return and clear the events produced since the last call."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the current transport."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    # ---------------------------------------------------------------- internals: input

    def _new_parser(self) -> Parser:
        parser = Parser()
        # Replies on the shared inbox are recognised in bulk (``_on_replies``).
        parser.expect_replies(self._inbox_bytes, _INBOX_SID)
        return parser

    def _on_replies(self, frame: Replies) -> None:
        # The same rules as a reply in ``_on_msg``, for a run of them at once: a MSG carries no
        # status (so no 503 here), the first reply ends a single-reply request, and a reply to a
        # request that is over is dropped. One event for the run, no Msg per reply.
        requests, payloads = self._requests.answered(frame.tokens, frame.payloads)
        if requests:
            self._events.append(ev.RepliesReceived(requests, payloads, self._inbox, _INBOX_SID))

    def _on_msg(self, msg: Msg) -> None:
        sid = msg.sid
        if sid == _INBOX_SID:
            try:
                # Replies on the shared inbox are routed by the subject's last token, which is the
                # request token: no per-request subscription, so a produce costs one PUB, not
                # SUB+PUB+UNSUB.
                token = int(msg.subject[self._inbox_len :])
            except ValueError:
                return  # not one of ours (cannot happen with our own inbox; be robust)
        else:
            # A pull's messages arrive with their stream subject (docs/protocol.md §7.6), so only
            # the sid of the pull's own inbox ties them to the request.
            token = self._request_sids.get(sid, 0)
            # An abandoned pull whose UNSUB is not yet confirmed: hand the message over anyway so
            # its owner can nack it, rather than let it wait out max_ack_time.
            if not token and sid in self._abandoned:
                abandoned = self._abandoned[sid]
                self._events.append(ev.ReplyReceived(abandoned.token, msg, abandoned.owner))
                return
        if token:
            request = self._requests.get(token)
            if request is None:
                return  # late reply to a request that timed out or was cancelled
            # No responders (the client announced ``no_responders``, docs/protocol.md §1.3): the
            # server answers at once with an empty 503 instead of letting the request time out. It
            # ends even a multi-reply request: nobody will ever answer it.
            if msg.status == 503:
                self._requests.pop(token)
                self._release(request)
                self._events.append(
                    ev.RequestFailed(
                        token,
                        err.NoRespondersError("nats: no responders available for request"),
                        request.owner,
                    )
                )
                return
            # The first reply ends a single-reply request; later duplicates are dropped
            # (docs/protocol.md §2.1).
            if not request.multi:
                self._requests.pop(token)
            self._events.append(ev.ReplyReceived(token, msg, request.owner))
            return
        sub = self._subs.get(msg.sid)
        if sub is None:
            return  # in flight when we unsubscribed
        # Mirror the server's auto-unsubscribe count so the replay after a reconnect asks for what
        # is left, and a message after the last one is dropped as "not ours".
        if sub.remaining is not None:
            sub.remaining -= 1
            if sub.remaining <= 0:
                del self._subs[msg.sid]
        self._events.append(msg)

    def _on_info(self, fields: dict[str, Any], now: float) -> None:
        # Every INFO replaces the last one: cluster updates carry the full current description.
        self.server_info = fields
        value = fields.get("max_payload", _DEFAULT_MAX_PAYLOAD)
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        self.max_payload = value if ok else _DEFAULT_MAX_PAYLOAD
        # A value that is not a positive int (a broken or hostile INFO) falls back to the NATS
        # default rather than disabling the size check in the parser.
        self._parser.max_payload = self.max_payload
        pool = self._pool
        urls = fields.get("connect_urls")
        if pool is not None and isinstance(urls, list):
            # Every INFO, also the handshake one, can carry ``connect_urls``: a cluster sends the
            # full current list each time, so the pool is replaced, not merged.
            pool.discovered(urls)
        if self.state is not ConnState.AWAITING_INFO:
            # An INFO update: cluster topology (handled above), or lame duck mode. A server
            # in lame duck mode stops accepting connections and will close ours within its
            # grace period; leave now, while other nodes can take us, rather than be cut off
            # in the middle of a request. Not a failed attempt: nothing failed.
            if (
                fields.get("ldm") is True
                and self.state is ConnState.CONNECTED
                and self._reconnect
                and pool is not None
                and len(pool) > 1
            ):
                self._lost(
                    now,
                    err.MemphisConnectError("the server entered lame duck mode"),
                    counted=False,
                )
            return
        # Refuse to talk in the clear when TLS was asked for: silently continuing without it would
        # send the token or password unencrypted.
        server_tls = bool(fields.get("tls_required") or fields.get("tls_available"))
        if self._tls and not server_tls:
            self._lost(
                now, err.MemphisConnectError("TLS was requested but the server does not offer it")
            )
            return
        if fields.get("tls_required") and not self._tls:
            self._lost(now, err.MemphisConnectError("the server requires TLS; pass tls=..."))
            return
        if self._tls:
            self.state = transition(self.state, Input.INFO_TLS)
            # CONNECT waits until ``tls_established``: the credentials must only travel inside TLS.
            self._events.append(ev.TLSUpgradeRequired(fields))
            return
        self.state = transition(self.state, Input.INFO)
        self._send_connect()

    def _on_pong(self, now: float) -> None:
        if self.state is ConnState.AWAITING_PONG:
            self._on_connected(now)
            return
        self._pings_out = 0  # any PONG proves the connection is alive
        # ... and, in CONNECTED, that the server processed the replay queued before any PING
        # we sent on this transport: from here a loss starts a new count of attempts.
        self._attempts = 0
        if self._pool is not None:
            self._pool.refill()
        if self._pong_waiters:
            # PONGs come back in the order of our PINGs (the server answers in order), so the
            # oldest waiter is the one this PONG answers.
            waiter = self._pong_waiters.popleft()
            if isinstance(waiter, RoundTripPing):
                self._events.append(ev.PingCompleted(waiter.token, waiter.owner))
            elif isinstance(waiter, AbandonPing):
                self._end_abandon(waiter.sid, err.RequestAbandonedError("request abandoned"))

    def _on_err(self, message: str, now: float) -> None:
        lowered = message.lower()
        # Only once connected: during the handshake every -ERR means the server is about to close
        # the socket, whatever its text.
        if self.state is ConnState.CONNECTED and lowered.startswith(_NON_FATAL_ERRS):
            self._events.append(ev.ServerError(message))
            return
        error = err.MemphisConnectError(message)
        if (
            self.state is ConnState.AWAITING_PONG
            and _AUTH_VIOLATION in lowered
            and self._fallback_user is not None
        ):
            # The caller's second user, tried once (docs/protocol.md §1.2 says why it has one).
            self._user = self._fallback_user
            self._fallback_user = None
            self._lost(now, error, immediate=True)
            return
        # Only the *first* handshake gives up at once. After an outage the same -ERR may come from a
        # node still starting up, so it counts as one more failed attempt instead.
        if self.state is ConnState.AWAITING_PONG and not self._ever_connected:
            # A rejected first handshake (bad credentials) will not get better by retrying.
            self._give_up(error, Input.GIVE_UP)
            return
        self._lost(now, error)

    # ---------------------------------------------------------------- internals: state changes

    def _send_connect(self) -> None:
        options = connect_fields(
            name=self._name,
            tls=self._tls,
            token=self._token,
            user=self._user,
            password=self._password,
        )
        out = self._out
        out.append(cmd.encode_connect(options))
        # The shared inbox is re-subscribed with the same prefix on every transport, so replies to
        # requests replayed after a reconnect still reach their tokens.
        out.append(cmd.encode_sub(self._inbox + "*", _INBOX_SID))
        for sub in self._subs.values():
            out.append(cmd.encode_sub(sub.subject, sub.sid, sub.queue))
            if sub.remaining is not None:
                # Auto-unsubscribe must be replayed too, or the new server would deliver forever.
                out.append(cmd.encode_unsub(sub.sid, sub.remaining))
        # CONNECT is not acknowledged (verbose is off), and a refused CONNECT is only reported by an
        # -ERR: the PONG to this PING is the first proof the server accepted us.
        out.append(cmd.PING)  # its PONG ends the handshake

    def _on_connected(self, now: float) -> None:
        self.state = transition(self.state, Input.PONG)
        reconnected = self._ever_connected
        self._ever_connected = True
        # ``_attempts`` is NOT reset here: a server that completes the handshake and then
        # breaks the connection (overloaded, restarting, rejecting what we replay) is a failed
        # attempt, or max_reconnect would never be reached against it. The reset happens at
        # the first PONG after the replay (``_on_pong``).
        self._handshake_deadline = None
        self._pings_out = 0
        # PINGs of the previous transport will never be answered; the round trips were moved to
        # ``_pings_unsent`` by ``_lost`` and are re-sent below.
        self._pong_waiters.clear()
        # Keepalive starts only once connected: during the handshake the handshake deadline already
        # bounds the wait.
        self._ping_at = now + self._ping_interval if self._ping_interval else None
        out = self._out
        # Replay in creation order: requests waiting for a reply, publishes made while offline,
        # then round-trip PINGs (their PONG must come after everything queued before them).
        for request in self._requests:
            if not request.sent or request.replay:
                request.sent = True
                out.append(request.data)
        out.extend(self._offline)
        self._offline.clear()
        self._offline_size = 0
        for waiter in self._pings_unsent:
            self._pong_waiters.append(waiter)
            out.append(cmd.PING)
        if self._attempts and not self._pings_unsent:
            # A reconnect with nothing else to prove it: this PING's PONG ends the count of
            # failed attempts (the first connect starts at zero and needs no proof).
            self._pong_waiters.append(keepalive_ping)
            out.append(cmd.PING)
        self._pings_unsent.clear()
        self._events.append(ev.Connected(self.server_info, reconnected, self.current_server))

    def _lost(
        self,
        now: float,
        error: err.MemphisError,
        *,
        immediate: bool = False,
        counted: bool = True,
    ) -> None:
        """This transport is over: fail what cannot be replayed, choose the next server.

        ``immediate``: redial the same server at once, not counted (the fallback-user retry).
        ``counted=False``: move on without counting an attempt (lame duck mode).
        """
        if self.state not in TRANSPORT_STATES:
            return  # already disconnected or closed: a second report of the same outage
        # Named before the pool moves on: logs and callbacks must say which server was lost.
        lost = self.current_server
        error = _naming(lost, error)
        self.state = transition(self.state, Input.LOST)
        self._handshake_deadline = None
        self._ping_at = None
        self._pings_out = 0
        # Bytes queued for this transport but not yet written are dropped: requests and
        # subscriptions are replayed from state after the next handshake, and an ack lost here only
        # means the broker redelivers the message after max_ack_time (docs/cluster-client.md, "What
        # happens to messages in flight").
        self._out.clear()
        # Round-trip PINGs in flight must be answered by the next transport; abandoned requests end
        # with this one.
        # Prepended, not appended: round trips in flight are older than ones made while offline,
        # and their completions must come out in the order they were made.
        self._pings_unsent[:0] = [w for w in self._pong_waiters if isinstance(w, RoundTripPing)]
        self._pong_waiters.clear()
        for sid in list(self._abandoned):
            self._end_abandon(sid, err.RequestAbandonedError("request abandoned"))
        for request in list(self._requests):
            # Not replayable (a pull: a re-sent pull would deliver a second batch that its
            # owner no longer waits for; the consume loop pulls again instead). Unsent requests
            # stay and go out after the next handshake.
            if request.sent and not request.replay:
                self._requests.pop(request.token)
                self._release(request)
                self._events.append(
                    ev.RequestFailed(
                        request.token,
                        err.ConnectionLostError(f"connection lost: {error}"),
                        request.owner,
                    )
                )
            else:
                request.sent = False
        pool = self._pool
        if pool is not None:
            pool.failed(now)
        if immediate:
            self._reconnect_at = now
        # Before the first successful handshake the reconnect policy does not apply: ``connect()``
        # fails at once (docs/protocol.md §1.4).
        elif not self._ever_connected:
            # The first connect: each given server once, at once, then give up.
            if pool is None or not pool.initial_left():
                self._events.append(ev.Disconnected(error, None, lost))
                self._give_up(error, Input.GIVE_UP)
                return
            pool.rotate()
            self._reconnect_at = now
        else:
            if counted:
                self._attempts += 1
            limit = self._max_reconnect if counted else -1
            # max_reconnect is a budget per server, as nats.go's MaxReconnect (docs/cluster-
            # client.md): the server just lost goes last, and the next one with attempts left is
            # dialled, at once unless it was itself tried less than reconnect_interval ago.
            if pool is None:
                exhausted = 0 <= limit < self._attempts
            else:
                exhausted = pool.next_with_budget(limit) is None
            if exhausted:
                self._events.append(ev.Disconnected(error, None, lost))
                self._give_up(error, Input.GIVE_UP)
                return
            if pool is None:
                self._reconnect_at = now + self._reconnect_interval
            else:
                self._reconnect_at = pool.due(now, self._reconnect_interval)
        self._events.append(ev.Disconnected(error, self._reconnect_at, lost))

    def _give_up(self, error: err.MemphisError | None, how: Input) -> None:
        self.state = transition(self.state, how)
        self._handshake_deadline = self._reconnect_at = self._ping_at = None
        closed = err.ConnectionClosedError(
            "the connection is closed" if error is None else f"the connection is closed: {error}"
        )
        # Waiting calls see why: e.g. the RemoteProtocolError of the last attempt.
        # Without this, a call waiting through 10 failed attempts would see only "closed"
        # (docs/cluster-client.md, "Reconnecting and failover").
        closed.__cause__ = error
        self._delayed.clear()
        for request in self._requests.clear():
            self._request_sids.pop(request.sid, None)
            self._events.append(ev.RequestFailed(request.token, closed, request.owner))
        for sid in list(self._abandoned):
            self._end_abandon(sid, closed)
        # PINGs still waiting for their PONG will never get it.
        waiters = [w for w in self._pong_waiters if isinstance(w, RoundTripPing)]
        for waiter in [*waiters, *self._pings_unsent]:
            self._events.append(ev.RequestFailed(waiter.token, closed, waiter.owner))
        self._pong_waiters.clear()
        self._pings_unsent.clear()
        # Buffered publishes die with the session: nothing will ever send them, and their callers
        # already returned (acks are fire-and-forget, docs/protocol.md §7.8).
        self._offline.clear()
        self._offline_size = 0
        self._events.append(ev.Closed(error, self.current_server))

    # ---------------------------------------------------------------- internals: helpers

    def _end_abandon(self, sid: int, error: err.MemphisError) -> None:
        request = self._abandoned.pop(sid, None)
        if request is not None:  # None: its owner cancelled it first (``cancel_request``)
            self._events.append(ev.RequestFailed(request.token, error, request.owner))

    def _release(self, request: PendingRequest) -> None:
        """A multi-reply request ended: drop its own inbox subscription."""
        if request.sid:
            del self._request_sids[request.sid]
            # Offline, the subscription exists on no server (the replay leaves it out, since the
            # request is gone), so there is nothing to UNSUB.
            if self.state is ConnState.CONNECTED and request.sent:
                self._out.append(cmd.encode_unsub(request.sid))

    def _check_open(self) -> None:
        if self.state is ConnState.CLOSED:
            raise err.ConnectionClosedError("the connection is closed")


def _naming(server: Server | None, error: err.MemphisError) -> err.MemphisError:
    """``error`` with the server it concerns in front, unless it already names it.

    Only plain connect errors ("connection closed by the server", "stale connection") are
    reworded; typed errors (a protocol violation, an authorization error) keep their own text.
    """
    if server is None or type(error) is not err.MemphisConnectError:
        return error
    name = server_name(server)
    text = str(error)
    return error if text.startswith(name) else err.MemphisConnectError(f"{name}: {text}")


def _as_connect_error(error: BaseException | str) -> err.MemphisError:
    if isinstance(error, err.MemphisError):
        return error
    return err.MemphisConnectError(str(error) or type(error).__name__)
