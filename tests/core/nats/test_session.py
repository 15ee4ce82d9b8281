"""Bytes in, events out: the NATS session against scripted server bytes (no network)."""

from __future__ import annotations

import json

import pytest

from memphis_core import (
    ConnectionClosedError,
    LocalProtocolError,
    MemphisConnectError,
    NoRespondersError,
    RemoteProtocolError,
    RequestTimeoutError,
)
from memphis_core.nats._events import (
    Closed,
    Connected,
    Disconnected,
    PingCompleted,
    ReconnectDue,
    RepliesReceived,
    ReplyReceived,
    RequestFailed,
    ServerError,
    TLSUpgradeRequired,
)
from memphis_core.nats._frames import Msg
from memphis_core.nats._session import Session
from memphis_core.nats._state import ConnState

INFO = b'INFO {"server_id":"x","version":"2.15.1","max_payload":1048576,"headers":true}\r\n'
INBOX = "_INBOX.test"


def make(**kwargs: object) -> Session:
    options: dict[str, object] = {"token": "s3cret", "inbox_prefix": INBOX}
    options.update(kwargs)
    return Session(**options)  # type: ignore[arg-type]


def connect_lines(session: Session) -> list[bytes]:
    return session.data_to_send().split(b"\r\n")


def handshake(session: Session, now: float = 0.0) -> None:
    session.connection_made(now)
    session.receive_data(INFO, now)
    session.data_to_send()
    session.receive_data(b"PONG\r\n", now)
    events = session.events()
    assert isinstance(events[-1], Connected)


def test_connect_sends_connect_sub_inbox_and_ping() -> None:
    session = make(name="orders-service")
    session.connection_made(0.0)
    assert session.data_to_send() == b""  # the server speaks first
    session.receive_data(INFO, 0.0)
    lines = connect_lines(session)
    assert lines[0].startswith(b"CONNECT {")
    options = json.loads(lines[0][len(b"CONNECT ") :])
    assert options["name"] == "orders-service"
    assert options["auth_token"] == "s3cret"
    assert options["headers"] is True
    assert options["no_responders"] is True
    assert options["protocol"] == 1
    assert options["verbose"] is False
    assert options["lang"] == "python"
    assert "user" not in options
    assert lines[1] == f"SUB {INBOX}.* 1".encode()
    assert lines[2] == b"PING"
    assert session.state is ConnState.AWAITING_PONG
    session.receive_data(b"PONG\r\n", 0.0)
    (event,) = session.events()
    assert event == Connected(session.server_info, reconnected=False)
    assert session.is_connected


def test_a_plain_nats_conversation_needs_no_name_and_no_credentials() -> None:
    # The session is a NATS client: no option of a Memphis broker is needed to publish, subscribe
    # and make a request against any nats-server.
    session = Session(inbox_prefix=INBOX)
    session.connection_made(0.0)
    session.receive_data(INFO, 0.0)
    options = json.loads(connect_lines(session)[0][len(b"CONNECT ") :])
    assert not {"name", "user", "pass", "auth_token"} & set(options)
    session.receive_data(b"PONG\r\n", 0.0)
    session.events()
    sid = session.subscribe("greetings.>")
    session.publish("greetings.en", b"hello")
    token = session.request("time.now", b"", now=0.0, timeout=1.0)
    assert session.data_to_send() == (
        f"SUB greetings.> {sid}\r\nPUB greetings.en 5\r\nhello\r\n"
        f"PUB time.now {INBOX}.{token} 0\r\n\r\n".encode()
    )
    session.receive_data(f"MSG greetings.en {sid} 5\r\nhello\r\n".encode(), 0.0)
    session.receive_data(f"MSG {INBOX}.{token} 1 2\r\n12\r\n".encode(), 0.0)
    pushed, replied = session.events()
    assert isinstance(pushed, Msg)
    assert (pushed.subject, pushed.payload) == ("greetings.en", b"hello")
    # A reply without headers on the shared inbox comes in bulk, as PubAcks do.
    assert isinstance(replied, RepliesReceived)
    assert [r.token for r in replied.requests] == [token]
    assert replied.msg(0) == Msg(f"{INBOX}.{token}", 1, None, b"12")
    # A request nobody answers fails with nats.go's own text.
    late = session.request("time.now", b"", now=0.0, timeout=1.0)
    session.handle_timeout(1.0)
    (failed,) = session.events()
    assert isinstance(failed, RequestFailed)
    assert failed.token == late
    assert str(failed.error) == "nats: timeout"


def test_user_and_password_are_sent_as_given() -> None:
    session = make(token=None, user="root$7", password="pw")
    session.connection_made(0.0)
    session.receive_data(INFO, 0.0)
    options = json.loads(connect_lines(session)[0][len(b"CONNECT ") :])
    assert options["user"] == "root$7"
    assert options["pass"] == "pw"
    assert "auth_token" not in options


@pytest.mark.parametrize(
    "credentials",
    [
        {"token": "t", "user": "u", "password": "p"},
        {"token": "t", "password": "p"},
        {"password": "p"},
        {"fallback_user": "u"},
    ],
)
def test_auth_options_that_cannot_go_together(credentials: dict[str, str]) -> None:
    with pytest.raises(LocalProtocolError):
        Session(**credentials)  # type: ignore[arg-type]


def test_authorization_violation_falls_back_to_the_fallback_user_once() -> None:
    session = make(token=None, user="root$1", password="pw", fallback_user="root")
    session.connection_made(0.0)
    session.receive_data(INFO, 0.0)
    session.data_to_send()
    session.receive_data(b"-ERR 'Authorization Violation'\r\n", 0.0)
    events = session.events()
    assert isinstance(events[0], Disconnected)
    assert events[0].reconnect_at == 0.0  # immediate retry, not counted as an attempt
    session.handle_timeout(0.0)
    assert session.events() == [ReconnectDue(0)]
    session.connection_made(0.0)
    session.receive_data(INFO, 0.0)
    options = json.loads(connect_lines(session)[0][len(b"CONNECT ") :])
    assert options["user"] == "root"
    # The second rejection is final: a first connect is never retried.
    session.receive_data(b"-ERR 'Authorization Violation'\r\n", 0.0)
    (closed,) = session.events()
    assert isinstance(closed, Closed)
    assert isinstance(closed.error, MemphisConnectError)
    assert "Authorization Violation" in str(closed.error)
    assert session.state is ConnState.CLOSED


def test_token_auth_error_closes_with_clear_error() -> None:
    session = make()
    session.connection_made(0.0)
    session.receive_data(INFO, 0.0)
    session.receive_data(b"-ERR 'Authorization Violation'\r\n", 0.0)
    (closed,) = session.events()
    assert isinstance(closed, Closed)
    assert str(closed.error) == "Authorization Violation"


def test_server_ping_is_answered_in_every_connected_state() -> None:
    session = make()
    session.connection_made(0.0)
    session.receive_data(INFO + b"PING\r\n", 0.0)
    assert session.data_to_send().endswith(b"PING\r\nPONG\r\n")
    session.receive_data(b"PONG\r\nPING\r\n", 0.0)
    assert session.data_to_send() == b"PONG\r\n"


def test_request_reply_correlation_on_one_inbox() -> None:
    session = make()
    handshake(session)
    first = session.request("svc.a", b"1", now=0.0, timeout=5.0)
    second = session.request("svc.b", b"2", now=0.0, timeout=5.0)
    assert session.data_to_send() == (
        f"PUB svc.a {INBOX}.{first} 1\r\n1\r\nPUB svc.b {INBOX}.{second} 1\r\n2\r\n".encode()
    )
    session.receive_data(f"MSG {INBOX}.{second} 1 2\r\nok\r\n".encode(), 0.0)
    session.receive_data(f"MSG {INBOX}.{first} 1 2\r\nhi\r\n".encode(), 0.0)
    events = session.events()
    replies = [
        (request.token, payload)
        for event in events
        if isinstance(event, RepliesReceived)
        for request, payload in zip(event.requests, event.payloads, strict=True)
    ]
    assert replies == [(second, b"ok"), (first, b"hi")]
    # A duplicate reply for a finished request is dropped.
    session.receive_data(f"MSG {INBOX}.{first} 1 2\r\nhi\r\n".encode(), 0.0)
    assert session.events() == []
    assert session._requests.__len__() == 0


def test_no_responders_is_a_typed_error() -> None:
    session = make()
    handshake(session)
    token = session.request("nobody", now=0.0, timeout=5.0)
    block = "NATS/1.0 503 No Responders\r\n\r\n"
    frame = f"HMSG {INBOX}.{token} 1 {len(block)} {len(block)}\r\n{block}\r\n"
    session.receive_data(frame.encode(), 0.0)
    (event,) = session.events()
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, NoRespondersError)


def test_request_timeout_and_deadlines() -> None:
    session = make(ping_interval=0)
    handshake(session)
    assert session.next_deadline() is None
    a = session.request("a", now=1.0, timeout=2.0)
    b = session.request("b", now=1.0, timeout=1.0)
    assert session.next_deadline() == 2.0
    session.handle_timeout(1.5)
    assert session.events() == []
    session.handle_timeout(2.0)
    (event,) = session.events()
    assert event == RequestFailed(b, event.error)  # type: ignore[union-attr]
    assert isinstance(event.error, RequestTimeoutError)  # type: ignore[union-attr]
    assert session.next_deadline() == 3.0
    session.cancel_request(a)
    assert session.next_deadline() is None


def test_multi_reply_request_lasts_until_cancelled() -> None:
    session = make()
    handshake(session)
    token = session.request(
        "$JS.API.CONSUMER.MSG.NEXT.s.c", b"{}", now=0.0, timeout=5.0, multi=True
    )
    # Pulled messages keep their stream subject, so a pull gets an inbox subscription of its own.
    sub, pub, _ = session.data_to_send().split(b"\r\n", 2)
    reply = f"{INBOX}.p.{token}"
    assert sub.split() == [b"SUB", reply.encode(), b"2"]
    assert pub == f"PUB $JS.API.CONSUMER.MSG.NEXT.s.c {reply} 2".encode()
    for i in range(3):
        session.receive_data(f"MSG orders$1.final 2 {reply} 1\r\n{i}\r\n".encode(), 0.0)
    assert [e.msg.payload for e in session.events()] == [b"0", b"1", b"2"]  # type: ignore[union-attr]
    session.cancel_request(token)
    assert session.data_to_send() == b"UNSUB 2\r\n"
    session.receive_data(b"MSG orders$1.final 2 1\r\nx\r\n", 0.0)
    assert session.events() == []


def test_subscription_messages_are_delivered_as_msgs() -> None:
    session = make()
    handshake(session)
    sid = session.subscribe("orders.>", queue="workers")
    assert session.data_to_send() == f"SUB orders.> workers {sid}\r\n".encode()
    session.receive_data(f"MSG orders.new {sid} 3\r\nabc\r\n".encode(), 0.0)
    (msg,) = session.events()
    assert isinstance(msg, Msg)
    assert (msg.subject, msg.sid, msg.payload) == ("orders.new", sid, b"abc")
    session.unsubscribe(sid)
    assert session.data_to_send() == f"UNSUB {sid}\r\n".encode()
    session.receive_data(f"MSG orders.new {sid} 3\r\nabc\r\n".encode(), 0.0)
    assert session.events() == []


def test_unsubscribe_after_max_messages() -> None:
    session = make()
    handshake(session)
    sid = session.subscribe("x")
    session.unsubscribe(sid, 2)
    session.data_to_send()
    for _ in range(3):
        session.receive_data(f"MSG x {sid} 0\r\n\r\n".encode(), 0.0)
    assert len(session.events()) == 2


def test_keepalive_pings_and_stale_connection() -> None:
    session = make(ping_interval=10.0, max_pings_out=2)
    handshake(session, now=0.0)
    session.data_to_send()
    assert session.next_deadline() == 10.0
    session.handle_timeout(10.0)
    assert session.data_to_send() == b"PING\r\n"
    session.receive_data(b"PONG\r\n", 10.5)
    session.handle_timeout(20.0)
    session.handle_timeout(30.0)
    assert session.data_to_send() == b"PING\r\nPING\r\n"
    session.handle_timeout(40.0)  # two unanswered: stale
    (event,) = session.events()
    assert isinstance(event, Disconnected)
    assert "stale" in str(event.error)
    assert event.reconnect_at == 41.0


def test_flush_completes_on_its_own_pong() -> None:
    session = make(ping_interval=10.0)
    handshake(session)
    session.data_to_send()
    session.handle_timeout(10.0)  # keepalive PING goes first
    token = session.ping()
    assert session.data_to_send() == b"PING\r\nPING\r\n"
    session.receive_data(b"PONG\r\n", 10.0)
    assert session.events() == []
    session.receive_data(b"PONG\r\n", 10.0)
    assert session.events() == [PingCompleted(token)]


def test_reconnect_replays_subscriptions_requests_and_offline_publishes() -> None:
    session = make(ping_interval=0, reconnect_interval=2.0)
    handshake(session, now=0.0)
    sid = session.subscribe("events")
    token = session.request("svc", b"q", now=0.0, timeout=30.0)
    lost = session.request("once", b"q", now=0.0, timeout=30.0, replay=False)
    session.data_to_send()
    session.receive_data(b"", 1.0)
    events = session.events()
    assert isinstance(events[0], RequestFailed)
    assert events[0].token == lost
    assert events[1] == Disconnected(events[1].error, 3.0)  # type: ignore[union-attr]
    session.publish("offline", b"p")
    flush = session.ping()
    assert session.data_to_send() == b""
    assert session.next_deadline() == 3.0
    session.handle_timeout(3.0)
    assert session.events() == [ReconnectDue(1)]
    session.connection_made(3.0)
    session.receive_data(INFO, 3.0)
    replay = session.data_to_send().split(b"\r\n")
    assert replay[1:4] == [f"SUB {INBOX}.* 1".encode(), f"SUB events {sid}".encode(), b"PING"]
    session.receive_data(b"PONG\r\n", 3.0)
    assert session.data_to_send() == (
        f"PUB svc {INBOX}.{token} 1\r\nq\r\nPUB offline 1\r\np\r\nPING\r\n".encode()
    )
    assert session.events() == [Connected(session.server_info, reconnected=True)]
    session.receive_data(f"MSG {INBOX}.{token} 1 1\r\na\r\nPONG\r\n".encode(), 3.0)
    assert [type(e) for e in session.events()] == [RepliesReceived, PingCompleted]
    assert flush


def test_reconnects_exhausted_closes_and_fails_waiting_requests() -> None:
    session = make(ping_interval=0, max_reconnect=1, reconnect_interval=1.0)
    handshake(session)
    token = session.request("svc", now=0.0, timeout=60.0)
    session.receive_data(b"", 0.0)
    session.events()
    session.handle_timeout(1.0)
    session.connection_failed(1.0, ConnectionRefusedError("refused"))
    events = session.events()
    assert [type(e) for e in events] == [ReconnectDue, Disconnected, RequestFailed, Closed]
    assert isinstance(events[2].error, ConnectionClosedError)  # type: ignore[union-attr]
    assert events[2].token == token  # type: ignore[union-attr]
    assert session.next_deadline() is None
    with pytest.raises(ConnectionClosedError):
        session.publish("x", b"")


def test_first_connect_failure_is_not_retried() -> None:
    session = make()
    session.connection_failed(0.0, ConnectionRefusedError("refused"))
    (closed,) = session.events()
    assert isinstance(closed, Closed)
    assert "refused" in str(closed.error)


def test_handshake_timeout() -> None:
    session = make(timeout=2.0)
    session.connection_made(0.0)
    assert session.next_deadline() == 2.0
    session.handle_timeout(2.0)
    assert isinstance(session.events()[-1], Closed)


def test_protocol_error_becomes_disconnect_and_transport_is_poisoned() -> None:
    session = make(ping_interval=0)
    handshake(session)
    session.receive_data(b"BOGUS\r\n", 0.0)
    (event,) = session.events()
    assert isinstance(event, Disconnected)
    assert isinstance(event.error, RemoteProtocolError)
    session.receive_data(b"PING\r\n", 0.0)  # stragglers from the dead transport are ignored
    assert session.data_to_send() == b""


def test_non_fatal_server_error_keeps_connection() -> None:
    session = make()
    handshake(session)
    session.receive_data(b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n", 0.0)
    (event,) = session.events()
    assert isinstance(event, ServerError)
    assert session.is_connected


def test_max_payload_checked_before_anything_is_queued() -> None:
    session = make()
    session.connection_made(0.0)
    session.receive_data(INFO.replace(b"1048576", b"10"), 0.0)
    session.receive_data(b"PONG\r\n", 0.0)
    session.data_to_send()
    with pytest.raises(LocalProtocolError, match="max_payload"):
        session.publish("x", b"0123456789A")
    with pytest.raises(LocalProtocolError):
        session.request("x", b"0123456789A", now=0.0, timeout=1.0)
    assert session.data_to_send() == b""
    assert session._requests.__len__() == 0


def test_tls_upgrade_happens_before_connect() -> None:
    session = make(tls=True)
    session.connection_made(0.0)
    session.receive_data(INFO.replace(b"{", b'{"tls_required":true,', 1), 0.0)
    (event,) = session.events()
    assert isinstance(event, TLSUpgradeRequired)
    assert session.data_to_send() == b""
    session.tls_established()
    assert session.data_to_send().startswith(b"CONNECT ")


def test_tls_requested_but_not_offered() -> None:
    session = make(tls=True)
    session.connection_made(0.0)
    session.receive_data(INFO, 0.0)
    disconnected, closed = session.events()
    assert disconnected == Disconnected(closed.error, None)  # type: ignore[union-attr]
    assert isinstance(closed, Closed)
    assert "TLS" in str(closed.error)


def test_close_is_idempotent_and_fails_requests() -> None:
    session = make()
    handshake(session)
    token = session.request("svc", now=0.0, timeout=1.0)
    session.close()
    session.close()
    events = session.events()
    assert [type(e) for e in events] == [RequestFailed, Closed]
    assert events[0].token == token  # type: ignore[union-attr]
    assert events[1] == Closed(None)


def test_subscribe_between_connect_and_pong_reaches_this_transport() -> None:
    session = make()
    session.connection_made(0.0)
    session.receive_data(INFO, 0.0)
    session.data_to_send()  # CONNECT, the inbox SUB, PING
    sid = session.subscribe("late.subject")
    session.receive_data(b"PONG\r\n", 0.0)
    assert session.data_to_send() == f"SUB late.subject {sid}\r\n".encode()


def abandoned_pull() -> tuple[Session, int, int]:
    """A connected session with one pull sent, then abandoned: ``(session, token, inbox sid)``."""
    session = make(ping_interval=0)
    handshake(session)
    token = session.request(
        "$JS.API.CONSUMER.MSG.NEXT.s.c", b"{}", now=0.0, timeout=5.0, multi=True
    )
    session.data_to_send()
    sid = session._requests.get(token).sid  # type: ignore[union-attr]
    session.abandon_request(token)
    return session, token, sid


def test_abandoned_pull_drains_what_was_already_sent() -> None:
    session, token, sid = abandoned_pull()
    # The inbox is dropped and a PING marks the point after which nothing more can come.
    assert session.data_to_send() == f"UNSUB {sid}\r\nPING\r\n".encode()
    session.receive_data(f"MSG orders$1.final {sid} 1\r\nx\r\n".encode(), 0.0)
    (late,) = session.events()
    assert isinstance(late, ReplyReceived)
    assert (late.token, late.msg.payload) == (token, b"x")
    session.receive_data(b"PONG\r\n", 0.0)
    (done,) = session.events()
    assert isinstance(done, RequestFailed)
    assert done.token == token
    session.receive_data(f"MSG orders$1.final {sid} 1\r\ny\r\n".encode(), 0.0)
    assert session.events() == []


def test_abandoned_pull_cancelled_by_its_owner_reports_nothing_at_the_pong() -> None:
    # A pull that gets its last message between the abandon and the PONG is finished: its owner
    # cancels it, and the PONG must not then fail it (the pull's table refuses that input).
    session, token, sid = abandoned_pull()
    session.data_to_send()
    session.receive_data(f"MSG orders$1.final {sid} 1\r\nx\r\n".encode(), 0.0)
    (late,) = session.events()
    assert isinstance(late, ReplyReceived)
    session.cancel_request(token)
    session.receive_data(b"PONG\r\n", 0.0)
    assert session.events() == []


def test_resend_sends_the_same_record_after_its_delay_and_only_once_it_ended() -> None:
    session = make()
    handshake(session)
    owner = object()
    token = session.request("orders", b"m", now=0.0, timeout=5.0, owner=owner)
    record = session.pending(token)
    assert record is not None
    first = session.data_to_send()
    with pytest.raises(LocalProtocolError, match="ended"):
        session.resend(record, now=0.0, delay=0.1)  # still waiting: a second copy would race
    session.receive_data(f"HMSG {INBOX}.{token} 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n".encode(), 0.0)
    (failed,) = session.events()
    assert isinstance(failed, RequestFailed)
    assert (failed.token, failed.owner) == (token, owner)
    session.resend(record, now=0.0, delay=0.1)
    assert session.data_to_send() == b""
    assert session.next_deadline() == 0.1
    session.handle_timeout(0.1)
    assert session.data_to_send() == first  # the very same bytes, reply subject included
    session.receive_data(f"MSG {INBOX}.{token} 1 2\r\nok\r\n".encode(), 0.2)
    (reply,) = session.events()
    assert isinstance(reply, RepliesReceived)
    assert [(r.token, r.owner) for r in reply.requests] == [(token, owner)]
    assert reply.payloads == [b"ok"]
    multi = session.request("pull", b"", now=0.0, timeout=5.0, multi=True)
    pull = session.pending(multi)
    assert pull is not None
    session.cancel_request(multi)
    with pytest.raises(LocalProtocolError):
        session.resend(pull, now=0.0, delay=0.0)


def _spelled(events: list[object]) -> list[object]:
    """Events with each run of replies spelled out as (token, owner, payload), in order."""
    out: list[object] = []
    for event in events:
        if isinstance(event, RepliesReceived):
            out += [
                (request.token, request.owner, payload)
                for request, payload in zip(event.requests, event.payloads, strict=True)
            ]
        elif isinstance(event, RequestFailed):
            out.append((event.token, type(event.error)))
        else:
            out.append(event)
    return out


@pytest.mark.parametrize("bytewise", [False, True], ids=["one read", "byte by byte"])
def test_replies_in_one_read_keep_their_order_among_other_events(bytewise: bool) -> None:
    # Replies to requests of different owners, one cancelled and one timed out, a 503, a
    # server PING and a non-fatal -ERR between them: each reply reaches its own request's
    # owner, the gone ones are dropped, and nothing changes places, however the reads cut it.
    session = make(ping_interval=0)
    handshake(session)
    a = session.request("a", now=0.0, timeout=5.0, owner="first")
    cancelled = session.request("b", now=0.0, timeout=5.0, owner="first")
    timed_out = session.request("c", now=0.0, timeout=1.0, owner="second")
    no_responders = session.request("d", now=0.0, timeout=5.0, owner="second")
    e = session.request("e", now=0.0, timeout=5.0, owner="second")
    f = session.request("f", now=0.0, timeout=5.0, owner="first")
    session.cancel_request(cancelled)
    session.handle_timeout(1.0)
    session.data_to_send()
    assert _spelled(session.events()) == [(timed_out, RequestTimeoutError)]
    block = "NATS/1.0 503\r\n\r\n"
    data = (
        f"MSG {INBOX}.{a} 1 1\r\na\r\nPING\r\n"
        f"MSG {INBOX}.{cancelled} 1 1\r\nb\r\nMSG {INBOX}.{timed_out} 1 1\r\nc\r\n"
        f"HMSG {INBOX}.{no_responders} 1 {len(block)} {len(block)}\r\n{block}\r\n"
        f"MSG {INBOX}.{e} 1 0\r\n\r\n-ERR 'Permissions Violation for Publish to \"x\"'\r\n"
        f"MSG {INBOX}.{f} 1 1\r\nf\r\nMSG {INBOX}.{a} 1 1\r\na\r\n"
    ).encode()
    for piece in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        session.receive_data(piece, 1.0)
    assert _spelled(session.events()) == [
        (a, "first", b"a"),
        (no_responders, NoRespondersError),
        (e, "second", b""),
        ServerError('Permissions Violation for Publish to "x"'),
        (f, "first", b"f"),  # and the second reply to ``a`` is dropped
    ]
    assert session.data_to_send() == b"PONG\r\n"
    assert len(session._requests) == 0
