"""Server lists, discovery, failover order and max_reconnect: bytes in, events out.

The pool policy is documented in docs/cluster-client.md; these tests pin it down against a
session fed with scripted server bytes (no network, no clock).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memphis_core import (
    TLS,
    ConnectionClosedError,
    LocalProtocolError,
    RemoteProtocolError,
    connect_options,
)
from memphis_core.nats._events import (
    Closed,
    Connected,
    Disconnected,
    ReconnectDue,
    RequestFailed,
)
from memphis_core.nats._pool import ServerPool, parse_server, server_name
from memphis_core.nats._session import Session
from memphis_core.nats._state import ConnState

A, B, C = ("a", 4222), ("b", 4223), ("c", 4224)


def info(**extra: object) -> bytes:
    fields: dict[str, object] = {"server_id": "x", "max_payload": 1048576, "headers": True}
    fields.update(extra)
    return b"INFO " + json.dumps(fields).encode() + b"\r\n"


def make(servers: list[tuple[str, int]], **kwargs: object) -> Session:
    options: dict[str, object] = {
        "token": "memphis",
        "inbox_prefix": "_INBOX.t",
        "servers": servers,
        "randomize_servers": False,
        "ping_interval": 0,
    }
    options.update(kwargs)
    return Session(**options)  # type: ignore[arg-type]


def handshake(session: Session, now: float, server_info: bytes | None = None) -> None:
    session.connection_made(now)
    session.receive_data(server_info or info(), now)
    session.data_to_send()
    session.receive_data(b"PONG\r\n", now)
    assert isinstance(session.events()[-1], Connected)


def due(session: Session, now: float) -> ReconnectDue:
    """Fire the reconnect timer at ``now`` and return the ReconnectDue."""
    session.handle_timeout(now)
    events = [e for e in session.events() if isinstance(e, ReconnectDue)]
    assert len(events) == 1, events
    return events[0]


# ------------------------------------------------------------------------ parsing the list


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broker", (("broker", 6666), None)),
        ("broker:4222", (("broker", 4222), None)),
        ("nats://broker:4222", (("broker", 4222), "nats")),
        ("tls://broker", (("broker", 6666), "tls")),
        ("NATS://broker:1/", (("broker", 1), "nats")),
        ("[::1]:4222", (("::1", 4222), None)),
        ("[::1]", (("::1", 6666), None)),
        ("::1", (("::1", 6666), None)),
        ("xhttp://broker", (("xhttp://broker", 6666), None)),
    ],
)
def test_parse_server(text: str, expected: tuple[tuple[str, int], str | None]) -> None:
    assert parse_server(text, 6666) == expected


@pytest.mark.parametrize("text", ["", ":4222", "h:0", "h:70000", "[::1]x"])
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_server(text, 6666)


def test_connect_options_take_a_list_or_a_comma_separated_string() -> None:
    listed = connect_options(["a:1", "nats://b:2", "c"], "u", password="p", port=9)
    assert listed.servers == (("a", 1), ("b", 2), ("c", 9))
    assert (listed.host, listed.port) == ("a", 1)  # single-host callers see the first
    joined = connect_options("a:1, nats://b:2,c", "u", password="p", port=9)
    assert joined.servers == listed.servers
    assert connect_options("a:1,a:1", "u", password="p").servers == (("a", 1),)
    single = connect_options("https://broker", "u", password="p")
    assert single.servers == (("broker", 6666),)
    assert not single.ignore_discovered_servers
    assert connect_options("a", "u", password="p", ignore_discovered_servers=True).servers


@pytest.mark.parametrize(
    ("host", "text"),
    [
        ([], "can not be empty"),
        ("a,,b", "host can not be empty"),
        (["a", 3], "host must be a str, not int"),
        ("tls://a", "asks for TLS"),
        (b"a", "host must be a str or a list"),
    ],
)
def test_connect_options_bad_server_lists(host: object, text: str) -> None:
    with pytest.raises(LocalProtocolError, match=text):
        connect_options(host, "u", password="p")  # type: ignore[arg-type]


def test_tls_scheme_accepted_with_tls_files() -> None:
    opts = connect_options("tls://a:1", "u", password="p", tls=TLS("c", "k", "ca"))
    assert opts.servers == (("a", 1),)


# ------------------------------------------------------------------------ first connect


def test_first_connect_tries_each_given_server_once_then_gives_up() -> None:
    session = make([A, B, C], max_reconnect=5)
    assert session.current_server == A
    session.connection_failed(0.0, ConnectionRefusedError("refused a"))
    (event,) = session.events()
    assert isinstance(event, Disconnected)
    assert event.reconnect_at == 0.0  # the next server at once
    assert due(session, 0.0) == ReconnectDue(0, B)  # not a reconnect attempt
    session.connection_failed(0.0, ConnectionRefusedError("refused b"))
    session.events()
    assert due(session, 0.0) == ReconnectDue(0, C)
    session.connection_made(0.0)
    session.receive_data(b"", 0.0)  # C accepted and hung up before INFO
    events = session.events()
    assert isinstance(events[-1], Closed)
    assert "closed by the server" in str(events[-1].error)


def test_first_connect_succeeds_on_the_second_server() -> None:
    session = make([A, B])
    session.connection_failed(0.0, ConnectionRefusedError("refused"))
    session.events()
    assert due(session, 0.0).server == B
    handshake(session, 0.0)
    assert session.current_server == B


def test_single_server_first_connect_is_not_retried() -> None:
    session = make([A])
    session.connection_failed(0.0, ConnectionRefusedError("refused"))
    (closed,) = session.events()
    assert isinstance(closed, Closed)


def test_servers_are_shuffled_by_the_given_rng() -> None:
    servers = [(f"h{i}", 4222) for i in range(8)]
    orders = {
        tuple(make(servers, randomize_servers=True, rng=random.Random(seed)).servers)
        for seed in range(5)
    }
    assert len(orders) > 1  # not the given order every time
    again = make(servers, randomize_servers=True, rng=random.Random(3)).servers
    assert again == make(servers, randomize_servers=True, rng=random.Random(3)).servers
    assert sorted(again) == sorted(servers)


# ------------------------------------------------------------------------ discovery


def test_connect_urls_are_added_and_stale_ones_dropped() -> None:
    session = make([A])
    handshake(session, 0.0, info(connect_urls=["a:4222", "b:4223", "c:4224"]))
    assert session.servers == [A, B, C]
    # A topology update: c left the cluster, d joined.
    session.receive_data(info(connect_urls=["a:4222", "b:4223", "d:1"]), 0.0)
    assert session.servers == [A, B, ("d", 1)]
    session.receive_data(info(connect_urls=[7, ":1", "e:0"]), 0.0)  # junk is ignored
    assert session.servers == [A]  # the given server is never dropped


def test_ignore_discovered_servers() -> None:
    session = make([A], ignore_discovered_servers=True)
    handshake(session, 0.0, info(connect_urls=["b:4223"]))
    assert session.servers == [A]


def test_discovered_ip_servers_keep_the_given_tls_name() -> None:
    session = make([("broker.example", 4222)])
    handshake(session, 0.0, info(connect_urls=["10.0.0.2:4222", "other.example:4222"]))
    session.receive_data(b"", 1.0)
    session.events()
    assert due(session, 1.0).server == ("10.0.0.2", 4222)
    assert session.tls_hostname == "broker.example"
    session.connection_failed(1.0, OSError("down"))
    session.events()
    assert due(session, 1.0).server == ("other.example", 4222)
    assert session.tls_hostname == "other.example"


# ------------------------------------------------------------------------ failover


def test_lost_server_goes_last_and_another_is_dialled_at_once() -> None:
    session = make([A, B, C], reconnect_interval=2.0)
    handshake(session, 0.0)
    session.receive_data(b"", 10.0)
    (event,) = session.events()
    assert event == Disconnected(event.error, 10.0, A)  # type: ignore[union-attr]
    assert due(session, 10.0) == ReconnectDue(1, B)
    assert session.servers == [B, C, A]


def test_events_name_the_server_they_concern_after_a_failover() -> None:
    # Report: after a failover the logs named the first configured server, whatever was used.
    session = make([A, B, C])
    handshake(session, 0.0)
    session.receive_data(b"", 1.0)
    (lost,) = session.events()
    assert isinstance(lost, Disconnected)
    assert lost.server == A  # the pool has already moved on to B
    assert str(lost.error) == "a:4222: connection closed by the server"
    assert due(session, 1.0).server == B
    session.connection_failed(1.0, ConnectionRefusedError("refused"))
    (failed,) = session.events()
    assert isinstance(failed, Disconnected)
    assert (failed.server, str(failed.error)) == (B, "b:4223: refused")
    assert due(session, 1.0).server == C
    session.connection_made(1.0)
    session.receive_data(info(), 1.0)
    session.receive_data(b"PONG\r\n", 1.0)
    (connected,) = session.events()
    assert connected == Connected(session.server_info, reconnected=True, server=C)
    session.close()
    assert session.events()[-1] == Closed(None, C)


def test_reconnect_interval_is_counted_per_server() -> None:
    session = make([A, B], reconnect_interval=2.0)
    handshake(session, 0.0)
    session.receive_data(b"", 10.0)  # A lost at 10
    session.events()
    assert due(session, 10.0).server == B
    session.connection_failed(10.5, ConnectionRefusedError("b down"))
    (event,) = session.events()
    # A was lost at 10: it is dialled again at 12, not at 10.5 and not at 12.5.
    assert isinstance(event, Disconnected)
    assert event.reconnect_at == 12.0
    assert due(session, 12.0) == ReconnectDue(2, A)


def test_single_server_waits_the_interval() -> None:
    session = make([A], reconnect_interval=2.0)
    handshake(session, 0.0)
    session.receive_data(b"", 5.0)
    (event,) = session.events()
    assert isinstance(event, Disconnected)
    assert event.reconnect_at == 7.0


def test_lame_duck_mode_moves_to_another_server_without_counting_an_attempt() -> None:
    session = make([A, B], max_reconnect=0 + 1)
    handshake(session, 0.0)
    token = session.request("svc", b"q", now=0.0, timeout=30.0)
    session.data_to_send()
    session.receive_data(info(ldm=True), 1.0)
    (event,) = session.events()
    assert isinstance(event, Disconnected)
    assert "lame duck" in str(event.error)
    assert event.reconnect_at == 1.0
    assert due(session, 1.0) == ReconnectDue(0, B)
    handshake(session, 1.0)
    # The waiting request is replayed on the new server.
    assert f"PUB svc _INBOX.t.{token} 1".encode() in session.data_to_send()


def test_lame_duck_mode_with_nowhere_to_go_is_ignored() -> None:
    session = make([A])
    handshake(session, 0.0)
    session.receive_data(info(ldm=True), 1.0)
    assert session.events() == []
    assert session.is_connected


# ------------------------------------------------------------------------ max_reconnect


def flapping_server_round(session: Session, now: float) -> list[object]:
    """One reconnect against a server that completes the handshake and then breaks."""
    session.connection_made(now)
    session.receive_data(info(), now)
    session.data_to_send()
    session.receive_data(b"PONG\r\n", now)
    session.data_to_send()
    session.receive_data(b"BOGUS\r\n", now)  # breaks before answering anything else
    return list(session.events())


def test_max_reconnect_holds_against_a_server_that_breaks_after_the_handshake() -> None:
    session = make([A], max_reconnect=2, reconnect_interval=1.0)
    handshake(session, 0.0)
    token = session.request("$memphis_station_creations", b"{}", now=0.0, timeout=120.0)
    session.data_to_send()
    session.receive_data(b"", 0.0)
    session.events()
    now = 0.0
    rounds = 0
    while session.state is not ConnState.CLOSED:
        assert rounds < 5, "max_reconnect=2 was not enforced"
        now += 1.0
        due(session, now)
        events = flapping_server_round(session, now)
        rounds += 1
    assert rounds == 2
    failed = [e for e in events if isinstance(e, RequestFailed)]
    assert [f.token for f in failed] == [token]
    error = failed[0].error
    assert isinstance(error, ConnectionClosedError)
    assert isinstance(error.__cause__, RemoteProtocolError)  # the real cause is not lost
    assert "BOGUS" in str(error) or "unknown" in str(error).lower() or str(error.__cause__)
    closed = events[-1]
    assert isinstance(closed, Closed)
    assert isinstance(closed.error, RemoteProtocolError)


def test_a_reconnect_proven_by_a_pong_starts_a_new_count() -> None:
    session = make([A], max_reconnect=1, reconnect_interval=1.0)
    handshake(session, 0.0)
    for outage in range(3):  # more outages than max_reconnect: each one recovers
        now = 10.0 * (outage + 1)
        session.receive_data(b"", now)
        session.events()
        assert due(session, now + 1.0).attempt == 1
        handshake(session, now + 1.0)
        # The reconnect sends a PING after the replay; its PONG proves the server works.
        assert session.data_to_send().endswith(b"PING\r\n")
        session.receive_data(b"PONG\r\n", now + 1.0)
    assert session.is_connected


def _dial_until_closed(
    session: Session, up: Callable[[float, tuple[str, int]], bool] = lambda at, server: False
) -> list[tuple[float, tuple[str, int] | None]]:
    """Fail every dial (except those ``up(time, server)`` accepts, which connect) until the
    session closes or connects; return ``(time, server)`` of each attempt."""
    attempts: list[tuple[float, tuple[str, int] | None]] = []
    while session.state is not ConnState.CLOSED:
        deadline = session.next_deadline()
        assert deadline is not None
        server = due(session, deadline).server
        attempts.append((deadline, server))
        if server is not None and up(deadline, server):
            handshake(session, deadline)
            return attempts
        session.connection_failed(deadline, ConnectionRefusedError("down"))
    return attempts


def test_failed_dial_counts_as_an_attempt_on_its_server() -> None:
    # nats.go's MaxReconnect: a budget per server, each server retried after reconnect_interval.
    session = make([A, B], max_reconnect=3, reconnect_interval=1.0)
    handshake(session, 0.0)
    session.receive_data(b"", 0.0)
    session.events()
    attempts = _dial_until_closed(session)
    assert attempts == [(0.0, B), (1.0, A), (1.0, B), (2.0, A), (2.0, B), (3.0, A)]
    closed = session.events()[-1]
    assert isinstance(closed, Closed)
    assert "down" in str(closed.error)


def test_the_defaults_and_three_servers_survive_a_6_s_outage_of_the_only_live_one() -> None:
    # Report: max_reconnect counted over the whole pool gave up after about 3.5 s with three
    # servers (two of them dead), and every call then failed with ConnectionClosedError.
    session = make([A, B, C])  # max_reconnect=10, reconnect_interval=1.0
    handshake(session, 0.0)
    session.receive_data(b"", 100.0)  # A, the only live server, goes down for 6 s
    session.events()
    attempts = _dial_until_closed(session, lambda at, server: server == A and at >= 106.0)
    assert attempts[-1] == (106.0, A)  # back after 6 s: the first dial to it connects
    assert session.is_connected
    # Each server is dialled once per reconnect_interval: B and C at 100..105, A at 101..106.
    assert len(attempts) == 3 * 6


def test_the_budget_in_seconds_is_max_reconnect_times_the_interval_whatever_the_pool() -> None:
    for servers in ([A], [A, B, C]):
        session = make(servers, max_reconnect=10, reconnect_interval=1.0)
        handshake(session, 0.0)
        session.receive_data(b"", 0.0)
        session.events()
        attempts = _dial_until_closed(session)
        assert len(attempts) == 10 * len(servers)
        assert attempts[-1][0] == 10.0  # the last attempt; a Closed follows at once


# ------------------------------------------------------------------------ properties


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    steps=st.lists(
        st.tuples(st.sampled_from(["lose", "fail", "discover", "ldm", "connect"]), st.integers()),
        max_size=40,
    ),
)
def test_the_next_server_is_never_the_one_just_lost(
    n: int, seed: int, steps: list[tuple[str, int]]
) -> None:
    servers = [(f"h{i}", 4222) for i in range(n)]
    session = make(servers, randomize_servers=True, rng=random.Random(seed), max_reconnect=-1)
    handshake(session, 0.0)
    now = 0.0
    for step, value in steps:
        now += 0.5
        action = step
        if session.state is ConnState.RECONNECT_DUE:
            if action == "connect":
                handshake(session, now)
                continue
            action = "fail"  # the dial the pool asked for failed
        elif session.state is ConnState.DISCONNECTED:
            deadline = session.next_deadline()
            assert deadline is not None
            now = max(now, deadline)
            due(session, now)
            continue
        before = session.current_server
        others = len(session.servers) > 1
        if action == "lose":
            session.receive_data(b"", now)
        elif action == "fail" and session.state is ConnState.RECONNECT_DUE:
            session.connection_failed(now, OSError("down"))
        elif action == "discover":
            urls = [f"d{(value + i) % 4}:1" for i in range(value % 3)]
            session.receive_data(info(connect_urls=urls), now)
            continue
        elif action == "ldm":
            session.receive_data(info(ldm=True), now)
        else:
            continue
        session.events()
        if session.state is ConnState.DISCONNECTED:
            if others:
                assert session.current_server != before
            assert len(session.servers) == len(set(session.servers))


def test_pool_needs_a_server() -> None:
    with pytest.raises(LocalProtocolError):
        ServerPool([], rng=random.Random(0))


def test_an_ipv6_server_is_named_in_brackets_in_errors_as_in_logs() -> None:
    # The error of a lost IPv6 server named it "::1:4222", the logs "[::1]:4222": the log line
    # could not drop the repeated name and the two texts disagreed.
    v6 = ("::1", 4222)
    session = make([v6, B])
    handshake(session, 0.0)
    session.receive_data(b"", 1.0)
    (lost,) = session.events()
    assert isinstance(lost, Disconnected)
    assert str(lost.error) == "[::1]:4222: connection closed by the server"
    assert server_name(v6) == "[::1]:4222"
