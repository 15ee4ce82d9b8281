"""A test-only blocking driver: runs a memphis_core Session over a real socket.

Deliberately tiny and single-threaded: it exists to check the sans-IO core against a real
nats-server, not to be a frontend. ``run_until(predicate)`` pumps until the predicate over the
events seen so far holds, and fails the test if the time budget runs out first. What it does
with each transport event is ``memphis_core.react``'s decision, as in every frontend; the
methods below are its actions.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Callable

from memphis_core import ConsumerError, MemphisError, react
from memphis_core.nats._events import SessionEvent, TransportEvent
from memphis_core.nats._session import Session

__all__ = ["Driver"]


class Driver:
    def __init__(
        self, session: Session, port: int, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.session = session
        self.port = port
        self.ssl_context = ssl_context
        self.sock: socket.socket | None = None
        self.seen: list[SessionEvent] = []

    def dial(self) -> None:
        try:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError as exc:
            self.sock = None
            self.session.connection_failed(time.monotonic(), exc)
            return
        self.sock.setblocking(False)
        self.session.connection_made(time.monotonic())

    def drop_transport(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def upgrade_tls(self) -> None:
        assert self.sock is not None
        assert self.ssl_context is not None
        self.sock.setblocking(True)
        try:
            self.sock = self.ssl_context.wrap_socket(self.sock, server_hostname="localhost")
        except (OSError, ssl.SSLError) as exc:
            self.drop_transport()
            self.session.connection_failed(time.monotonic(), exc)
            return
        self.sock.setblocking(False)
        self.session.tls_established()

    def _flush_out(self) -> None:
        data = self.session.data_to_send()
        if data and self.sock is not None:
            self.sock.setblocking(True)
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self.drop_transport()
                self.session.connection_failed(time.monotonic(), exc)
            else:
                if self.sock is not None:
                    self.sock.setblocking(False)

    def finish(self, error: MemphisError | None) -> None:
        self.drop_transport()

    def consumer_error(self, event: ConsumerError) -> None:
        raise AssertionError(f"a bare Session has no consumers: {event!r}")

    def _dispatch(self) -> None:
        for event in self.session.events():
            self.seen.append(event)
            if isinstance(event, TransportEvent):  # replies are the test's to read
                react(event, self)

    def step(self, max_wait: float) -> None:
        self._flush_out()
        now = time.monotonic()
        deadline = self.session.next_deadline()
        wait = max_wait if deadline is None else max(0.0, min(max_wait, deadline - now))
        if self.sock is not None:
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                try:
                    data = self.sock.recv(65536)
                except (BlockingIOError, ssl.SSLWantReadError):
                    data = None
                except OSError:
                    data = b""
                if data is not None:
                    self.session.receive_data(data, time.monotonic())
        elif wait > 0:
            time.sleep(wait)  # no socket: waiting for the session's own reconnect deadline
        self.session.handle_timeout(time.monotonic())
        self._dispatch()
        self._flush_out()

    def run_until(
        self, predicate: Callable[[list[SessionEvent]], bool], timeout: float = 10.0
    ) -> None:
        end = time.monotonic() + timeout
        while not predicate(self.seen):
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met in {timeout}s; events: {self.seen[-10:]}")
            self.step(min(remaining, 0.25))

    def close(self) -> None:
        self.session.close()
        self._flush_out()  # the last bytes, before Closed drops the socket
        self._dispatch()
        self.drop_transport()
