"""A Hypothesis state machine over the NATS session.

Server frames, application calls, time passing, disconnects and reconnects in any order. The
invariants: every request resolves exactly once (a reply, or a failure), never twice; after
``handle_timeout(now)`` no deadline is in the past; a closed session holds no requests.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from memphis_core import ConnectionClosedError
from memphis_core.nats._events import (
    Closed,
    Connected,
    Disconnected,
    PingCompleted,
    ReconnectDue,
    RepliesReceived,
    ReplyReceived,
    RequestFailed,
    TLSUpgradeRequired,
)
from memphis_core.nats._session import Session
from memphis_core.nats._state import ConnState

INFO = b'INFO {"server_id":"x","max_payload":4096,"headers":true}\r\n'
INBOX = "_INBOX.m"


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.session = Session(
            token="t",
            inbox_prefix=INBOX,
            max_reconnect=3,
            reconnect_interval=1.0,
            ping_interval=5.0,
            timeout=3.0,
        )
        self.now = 0.0
        self.issued: set[int] = set()
        self.multi: set[int] = set()
        self.cancelled: set[int] = set()
        self.resolved: Counter[int] = Counter()
        self.replies: Counter[int] = Counter()
        self.pull_sids: dict[int, int] = {}
        # Start connected: a failed *first* connect closes the session for good (by design),
        # which would end most runs before the interesting reconnect paths.
        self.session.connection_made(self.now)
        self.session.receive_data(INFO + b"PONG\r\n", self.now)
        self.drain()
        assert self.session.is_connected

    # ------------------------------------------------------------------ plumbing
    def drain(self) -> None:
        self.session.data_to_send()
        for event in self.session.events():
            if isinstance(event, ReplyReceived):
                self.replied(event.token)
            elif isinstance(event, RepliesReceived):
                for request in event.requests:
                    self.replied(request.token)
            elif isinstance(event, RequestFailed | PingCompleted):
                assert event.token in self.issued
                self.resolved[event.token] += 1
            elif isinstance(event, TLSUpgradeRequired):
                raise AssertionError("no TLS asked for")
            elif isinstance(event, (Connected, Disconnected, ReconnectDue, Closed)):
                pass

    def replied(self, token: int) -> None:
        assert token in self.issued
        self.replies[token] += 1
        if token not in self.multi:
            self.resolved[token] += 1

    # ------------------------------------------------------------------ server
    @precondition(lambda self: self.session.state is ConnState.AWAITING_INFO)
    @rule()
    def server_info(self) -> None:
        self.session.receive_data(INFO, self.now)
        self.drain()

    @precondition(lambda self: self.session.state in (ConnState.AWAITING_PONG, ConnState.CONNECTED))
    @rule()
    def server_pong(self) -> None:
        self.session.receive_data(b"PONG\r\n", self.now)
        self.drain()

    @rule()
    def server_ping(self) -> None:
        self.session.receive_data(b"PING\r\n", self.now)
        self.drain()

    @precondition(lambda self: self.session.state is ConnState.CONNECTED)
    @rule(data=st.data(), status=st.sampled_from([None, 503, 408]))
    def server_reply(self, data: st.DataObject, status: int | None) -> None:
        token = data.draw(st.sampled_from(sorted(self.issued))) if self.issued else 999
        # Single replies come on the shared inbox (sid 1) by subject; a multi request's replies
        # on its own subscription, whose sid is found from the SUB it sent.
        sid = self.pull_sids.get(token, 1)
        subject = "stream.final" if sid != 1 else f"{INBOX}.{token}"
        if status is None:
            frame = f"MSG {subject} {sid} 2\r\nok\r\n"
        else:
            block = f"NATS/1.0 {status} X\r\n\r\n"
            frame = f"HMSG {subject} {sid} {len(block)} {len(block)}\r\n{block}\r\n"
        self.session.receive_data(frame.encode(), self.now)
        self.drain()

    @rule(fatal=st.booleans())
    def server_err(self, fatal: bool) -> None:
        text = b"-ERR 'Stale Connection'\r\n" if fatal else b"-ERR 'Permissions Violation'\r\n"
        self.session.receive_data(text, self.now)
        self.drain()

    @rule(junk=st.binary(min_size=1, max_size=20))
    def server_junk(self, junk: bytes) -> None:
        self.session.receive_data(junk, self.now)
        self.drain()

    @rule()
    def eof(self) -> None:
        self.session.receive_data(b"", self.now)
        self.drain()

    # ------------------------------------------------------------------ application
    @rule(timeout=st.floats(0.1, 20.0), multi=st.booleans(), replay=st.booleans())
    def request(self, timeout: float, multi: bool, replay: bool) -> None:
        try:
            token = self.session.request(
                "svc", b"x", now=self.now, timeout=timeout, multi=multi, replay=replay
            )
        except ConnectionClosedError:
            assert self.session.state is ConnState.CLOSED
            return
        assert token not in self.issued
        self.issued.add(token)
        if multi:
            self.multi.add(token)
            self.pull_sids[token] = self.session._requests.get(token).sid  # type: ignore[union-attr]
        self.drain()

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        open_tokens = sorted(
            t for t in self.issued if not self.resolved[t] and t not in self.cancelled
        )
        if open_tokens:
            token = data.draw(st.sampled_from(open_tokens))
            self.session.cancel_request(token)
            self.cancelled.add(token)

    @rule()
    def publish_and_flush(self) -> None:
        if self.session.state is ConnState.CLOSED:
            return
        self.session.publish("p", b"data")
        # A PING round trip ends once too: with its PONG, or failed when the session closes.
        self.issued.add(self.session.ping())
        self.drain()

    @rule(dt=st.floats(0.0, 4.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.session.handle_timeout(self.now)
        deadline = self.session.next_deadline()
        assert deadline is None or deadline > self.now
        self.drain()

    @precondition(lambda self: self.session.state is ConnState.RECONNECT_DUE)
    @rule(ok=st.booleans())
    def dial(self, ok: bool) -> None:
        if ok:
            self.session.connection_made(self.now)
        else:
            self.session.connection_failed(self.now, OSError("refused"))
        self.drain()

    @precondition(lambda self: len(self.issued) > 8)
    @rule()
    def close(self) -> None:
        self.session.close()
        self.drain()

    # ------------------------------------------------------------------ invariants
    @invariant()
    def resolved_at_most_once(self) -> None:
        assert all(count <= 1 for count in self.resolved.values()), self.resolved

    @invariant()
    def closed_holds_nothing(self) -> None:
        if self.session.state is ConnState.CLOSED:
            assert self.session._requests.__len__() == 0
            assert self.session.next_deadline() is None

    def teardown(self) -> None:
        self.session.close()
        self.drain()
        for token in self.issued - self.cancelled:
            assert self.resolved[token] == 1, (token, self.resolved[token])


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
