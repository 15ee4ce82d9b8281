"""The sans-IO session over a real socket to a real nats-server (JetStream on).

Covers the handshake, both auth modes (and a wrong password), pub/sub, request/reply, headers,
a server PING answered, a kill -9 + restart after which subscriptions work again, and byte-level
interop with nats-py in both directions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memphis_core.nats._events import (
    Closed,
    Connected,
    Disconnected,
    PingCompleted,
    ReplyReceived,
    SessionEvent,
)
from memphis_core.nats._frames import Msg
from memphis_core.nats._headers import Headers
from memphis_core.nats._session import Session
from tests.support.driver import Driver
from tests.support.nats_server import NatsServer


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path, token="memphis") as server:
        yield server


def connected(driver: Driver) -> Driver:
    driver.dial()
    driver.run_until(lambda seen: any(isinstance(e, Connected) for e in seen))
    return driver


def flushed(driver: Driver) -> None:
    """Wait until the server has processed everything sent so far (PING/PONG round trip)."""
    token = driver.session.ping()
    driver.run_until(lambda seen: PingCompleted(token) in seen)


def msgs(seen: list[SessionEvent]) -> list[Msg]:
    return [e for e in seen if isinstance(e, Msg)]


def test_token_handshake_pubsub_and_request_reply(token_server: NatsServer) -> None:
    a = connected(Driver(Session(token="memphis"), token_server.port))
    b = connected(Driver(Session(token="memphis"), token_server.port))
    info = a.session.server_info
    assert info["headers"] is True
    assert info["jetstream"] is True
    sid = b.session.subscribe("svc.echo")
    flushed(b)
    token = a.session.request("svc.echo", b"hello", now=time.monotonic(), timeout=5)
    a.step(0)
    b.run_until(lambda seen: len(msgs(seen)) == 1)
    request = msgs(b.seen)[0]
    assert (request.sid, request.payload) == (sid, b"hello")
    assert request.reply is not None
    b.session.publish(request.reply, b"world", headers={"k": "v"})
    b.step(0)
    a.run_until(lambda seen: any(isinstance(e, ReplyReceived) for e in seen))
    reply = next(e for e in a.seen if isinstance(e, ReplyReceived))
    assert reply.token == token
    assert reply.msg.payload == b"world"
    assert reply.msg.headers == Headers([("k", "v")])
    a.close()
    b.close()


def test_no_responders_against_real_server(token_server: NatsServer) -> None:
    from memphis_core import NoRespondersError
    from memphis_core.nats._events import RequestFailed

    a = connected(Driver(Session(token="memphis"), token_server.port))
    a.session.request("nobody.home", b"", now=time.monotonic(), timeout=5)
    a.run_until(lambda seen: any(isinstance(e, RequestFailed) for e in seen))
    failed = next(e for e in a.seen if isinstance(e, RequestFailed))
    assert isinstance(failed.error, NoRespondersError)
    a.close()


def test_user_password_auth_and_plain_username_fallback(tmp_path: Path) -> None:
    # The server knows "app" only without the "$1" account suffix: the fallback user is tried.
    with NatsServer(tmp_path, user="app", password="s3cret") as server:
        ok = connected(
            Driver(Session(user="app$1", password="s3cret", fallback_user="app"), server.port)
        )
        assert ok.session.is_connected
        ok.close()
    with NatsServer(tmp_path / "b", user="app$1", password="s3cret") as server:
        ok = connected(
            Driver(Session(user="app$1", password="s3cret", fallback_user="app"), server.port)
        )
        ok.close()
        bad = Driver(Session(user="app$1", password="wrong", fallback_user="app"), server.port)
        bad.dial()
        bad.run_until(lambda seen: any(isinstance(e, Closed) for e in seen))
        closed = next(e for e in bad.seen if isinstance(e, Closed))
        assert "Authorization Violation" in str(closed.error)


def test_wrong_token_is_a_clear_error(token_server: NatsServer) -> None:
    bad = Driver(Session(token="nope"), token_server.port)
    bad.dial()
    bad.run_until(lambda seen: any(isinstance(e, Closed) for e in seen))
    closed = next(e for e in bad.seen if isinstance(e, Closed))
    assert "Authorization Violation" in str(closed.error)


def test_server_ping_is_answered(tmp_path: Path) -> None:
    # A server that PINGs every 100 ms and drops clients after 2 unanswered PINGs: staying
    # connected across many intervals proves the PONGs went out.
    server = NatsServer(tmp_path, token="memphis")
    server.start()
    server.stop()
    conf = (tmp_path / "nats.conf").read_text()
    (tmp_path / "nats.conf").write_text(conf + 'ping_interval: "100ms"\nping_max: 2\n')
    import subprocess

    from tests.support.nats_server import find_nats_server, wait_for_port

    proc = subprocess.Popen([find_nats_server(), "-c", str(tmp_path / "nats.conf")])
    try:
        wait_for_port(server.port, process=proc)
        driver = connected(Driver(Session(token="memphis", ping_interval=0), server.port))
        sid = driver.session.subscribe("tick")
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            driver.step(0.05)
        assert not any(isinstance(e, Disconnected) for e in driver.seen)
        driver.session.publish("tick", b"still here")
        driver.run_until(lambda seen: len(msgs(seen)) == 1)
        assert msgs(driver.seen)[0].sid == sid
        driver.close()
    finally:
        proc.terminate()
        proc.wait()


def test_kill_restart_replays_subscriptions(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, token="memphis").start()
    try:
        sub = connected(
            Driver(
                Session(
                    token="memphis",
                    reconnect_interval=0.05,
                    max_reconnect=-1,
                ),
                server.port,
            )
        )
        sid = sub.session.subscribe("after.restart")
        sub.step(0)
        server.kill()
        sub.run_until(lambda seen: any(isinstance(e, Disconnected) for e in seen))
        server.start()
        sub.run_until(
            lambda seen: any(isinstance(e, Connected) and e.reconnected for e in seen), timeout=15
        )
        pub = connected(Driver(Session(token="memphis"), server.port))
        pub.session.publish("after.restart", b"again")
        pub.step(0)
        sub.run_until(lambda seen: len(msgs(seen)) == 1)
        assert msgs(sub.seen)[0].sid == sid
        assert msgs(sub.seen)[0].payload == b"again"
        pub.close()
        sub.close()
    finally:
        server.stop()


def test_interop_with_nats_py_headers_both_ways(token_server: NatsServer) -> None:
    import nats

    ours = connected(Driver(Session(token="memphis"), token_server.port))
    ours.session.subscribe("from.natspy")
    flushed(ours)
    payload = bytes(range(256)) * 4

    async def natspy_side() -> tuple[bytes, dict[str, str]]:
        nc = await nats.connect(token_server.url, token="memphis")
        received: asyncio.Future[tuple[bytes, dict[str, str]]] = (
            asyncio.get_running_loop().create_future()
        )

        async def handler(msg: nats.aio.msg.Msg) -> None:
            if not received.done():
                received.set_result((msg.data, dict(msg.headers or {})))

        await nc.subscribe("from.ours", cb=handler)
        await nc.flush()
        await nc.publish("from.natspy", payload, headers={"X-Trace": "abc", "Nats-Msg-Id": "7"})
        await nc.flush()
        # Let our side publish now that nats-py is subscribed.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, ours_publish)
        result = await asyncio.wait_for(received, 10)
        await nc.close()
        return result

    def ours_publish() -> None:
        ours.run_until(lambda seen: len(msgs(seen)) == 1)
        ours.session.publish(
            "from.ours", payload, headers=Headers([("X-Trace", "xyz"), ("a", "1")])
        )
        ours.step(0)

    data, headers = asyncio.run(natspy_side())
    got = msgs(ours.seen)[0]
    assert got.payload == payload
    assert got.headers is not None
    assert got.headers["X-Trace"] == "abc"
    assert got.headers["Nats-Msg-Id"] == "7"
    assert data == payload
    assert headers == {"X-Trace": "xyz", "a": "1"}
    ours.close()
