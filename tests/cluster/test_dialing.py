"""Dialling on every frontend over real sockets: server lists, dead servers, flapping servers.

No broker is needed for these: a dead port refuses, and a tiny scripted TCP server plays a
node that completes the NATS handshake and then breaks every connection.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from memphis_broker._server import free_port
from tests.support.names import TOKEN, USER

INFO = (
    b'INFO {"server_id":"flappy","version":"2.10.0","max_payload":1048576,'
    b'"headers":true,"proto":1}\r\n'
)


class FlappingServer(threading.Thread):
    """Accepts, sends INFO, answers the handshake PING with PONG, and sends garbage as soon as
    the client sends anything more (a replayed request, a PING): a node that lets every
    connection complete its handshake and breaks it before any request can complete."""

    def __init__(self) -> None:
        super().__init__(name="flapping-server", daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2.0)
                try:
                    conn.sendall(INFO)
                    data = b""
                    while b"PING\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(b"PONG\r\n")
                    if data.endswith(b"PING\r\n") and not conn.recv(65536):
                        continue  # the client closed
                    conn.sendall(b"BOGUS\r\n")  # a protocol error, before any reply
                except OSError:
                    pass

    def close(self) -> None:
        self._halt.set()
        self.sock.close()
        self.join(5)


@pytest.fixture
def flapping() -> Iterator[FlappingServer]:
    server = FlappingServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_max_reconnect_is_enforced_against_a_flapping_server(
    memphis: Any, flapping: FlappingServer
) -> None:
    conn = memphis.connect(
        f"127.0.0.1:{flapping.port}",
        USER,
        connection_token=TOKEN,
        max_reconnect=2,
        reconnect_interval=0.05,
        timeout=2.0,
    )
    try:
        started = time.monotonic()
        with pytest.raises(memphis.ConnectionClosedError) as caught:
            conn.create_station("never")
        assert time.monotonic() - started < 10.0  # not the 120 s of control-request retries
        # The real cause is named: the server's protocol violation.
        assert isinstance(caught.value.__cause__, memphis.RemoteProtocolError)
        assert "BOGUS" in str(caught.value) or "unknown" in str(caught.value).lower()
        assert flapping.connections == 3  # the first connect and max_reconnect=2 attempts
    finally:
        conn.close()


def test_first_connect_skips_a_dead_server(memphis: Any, flapping: FlappingServer) -> None:
    # One server refuses; the other completes the handshake: connect() succeeds whichever the
    # shuffle tried first (the flapping one breaks the connection only after connect returned).
    dead = free_port()
    for _ in range(4):
        conn = memphis.connect(
            [f"nats://127.0.0.1:{dead}", f"127.0.0.1:{flapping.port}"],
            USER,
            connection_token=TOKEN,
            reconnect=False,
            timeout=2.0,
        )
        # The repr names the server in use, not the first one given.
        assert f"127.0.0.1:{flapping.port} " in repr(conn)
        conn.close()
    assert flapping.connections == 4


def test_every_given_server_dead_fails_the_connect(memphis: Any) -> None:
    ports = f"127.0.0.1:{free_port()},nats://127.0.0.1:{free_port()}"
    with pytest.raises(memphis.MemphisConnectError):
        memphis.connect(ports, USER, connection_token=TOKEN, timeout=2.0)
