"""The blocking frontend's engine: one I/O thread per connection pumping a sans-IO Client.

The I/O thread reads the socket, feeds the core, fires its timers and wakes every waiting user
thread (one condition variable); it also dials again when the core says a reconnect is due.
User threads call into the core under ``lock`` and either write the bytes it queued themselves
(plain TCP: one thread hop less per synchronous call) or wake the I/O thread to do it (TLS,
whose socket objects are not safe to read and write from two threads, and async produce, where
letting bytes pile up while the I/O thread is busy coalesces many messages into one write).
Nothing here decides anything about the protocol: it only moves bytes and waits.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from memphis_core import TLS as TLSFiles
from memphis_core import (
    Client,
    Closed,
    ConnectionClosedError,
    ConsumerError,
    Disconnected,
    MemphisConnectError,
    MemphisError,
    Operation,
    ReconnectDue,
    RequestTimeoutError,
    TLSUpgradeRequired,
)

__all__ = ["Pump"]

T = TypeVar("T")
_READ_SIZE: Final = 65536


def _ssl_context(files: TLSFiles) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise MemphisConnectError(f"memphis: error loading ca file: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(files.cert_file), str(files.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise MemphisConnectError(f"memphis: error loading client certificate: {exc}") from None
    return context


class Pump:
    def __init__(self, client: Client) -> None:
        self.client = client
        options = client.options
        self._host = options.host
        self._port = options.port
        self._timeout = options.timeout
        self._ssl = None if options.tls is None else _ssl_context(options.tls)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._stop = False
        self.closed_error: MemphisError | None = None
        self.closed = False
        self.on_consumer_error: Callable[[ConsumerError], None] = lambda error: None
        self._thread = threading.Thread(target=self._run, name="memphis-io", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Dial, hand the socket to the I/O thread and wait for the handshake.

        Raises:
            MemphisConnectError: refused, timed out, rejected credentials, TLS failure.
        """
        self._dial()
        self._thread.start()
        deadline = time.monotonic() + self._timeout + 1.0
        with self.changed:
            while not self.client.is_connected and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
            if self.client.is_connected:
                return
        self.close()
        error = self.closed_error or MemphisConnectError("timed out connecting to the broker")
        raise error if isinstance(error, MemphisConnectError) else MemphisConnectError(str(error))

    def close(self) -> None:
        """Close the core (failing whatever still waits), write what it queued, stop the thread."""
        with self.lock:
            self.client.close()
            self.changed.notify_all()
        self._send_pending()
        self._stop = True
        self.wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        with self.lock:
            self.closed = True
            self.changed.notify_all()
        self._close_socket()
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    # ------------------------------------------------------------------ used by user threads

    def call(self, fn: Callable[[float], T], *, send: bool = True) -> T:
        """Run ``fn(now)`` on the core under the lock, then get the bytes it queued written."""
        with self.lock:
            if self.closed:
                raise ConnectionClosedError("the connection is closed")
            result = fn(time.monotonic())
        if send:
            self.send_soon()
        return result

    def send_soon(self) -> None:
        if self._ssl is None:
            self._send_pending()
        else:
            self.wake()

    def wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            # OSError: the buffer is full (a wake is pending anyway) or the pair is closed.
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def wait(self, op: Operation[T], timeout: float | None = None) -> T:
        """Block until ``op`` is done, then return its result or raise its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while not op.done:
                if self.closed and not op.done:
                    op.fail(ConnectionClosedError("the connection is closed"))
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RequestTimeoutError("memphis: timeout")
                self.changed.wait(remaining)
        return op.outcome()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate()`` (evaluated under the lock) holds; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while not predicate():
                if self.closed:
                    return predicate()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.changed.wait(remaining)
        return True

    # ------------------------------------------------------------------ socket plumbing

    def _dial(self) -> None:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        except OSError as exc:
            with self.lock:
                self.client.connection_failed(time.monotonic(), exc)
            self._dispatch(self._take_events())
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self._sock = sock
        with self.lock:
            self.client.connection_made(time.monotonic())

    def _upgrade_tls(self) -> None:
        assert self._ssl is not None
        sock = self._sock
        if sock is None:
            return
        try:
            sock.settimeout(self._timeout)
            tls_sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
            tls_sock.settimeout(None)
        except (OSError, ssl.SSLError) as exc:
            self._close_socket()
            with self.lock:
                self.client.connection_failed(time.monotonic(), exc)
            return
        self._sock = tls_sock
        with self.lock:
            self.client.tls_established()

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _send_pending(self) -> None:
        with self._send_lock:
            with self.lock:
                data = self.client.data_to_send()
            sock = self._sock
            if not data or sock is None:
                return
            try:
                sock.sendall(data)
            except OSError as exc:
                # The read side sees the same failure; report it once through the core.
                with self.lock:
                    self.client.connection_failed(time.monotonic(), exc)
                    self.changed.notify_all()
                self.wake()

    def _take_events(self) -> list[Any]:
        with self.lock:
            events = self.client.events()
            self.changed.notify_all()
        return events

    def _dispatch(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Disconnected):
                self._close_socket()
            elif isinstance(event, ReconnectDue):
                self._dial()
            elif isinstance(event, TLSUpgradeRequired):
                self._upgrade_tls()
            elif isinstance(event, Closed):
                self._close_socket()
                with self.lock:
                    self.closed = True
                    self.closed_error = event.error
                    self.changed.notify_all()
            elif isinstance(event, ConsumerError):
                self.on_consumer_error(event)

    # ------------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        client = self.client
        while not self._stop:
            self._send_pending()
            with self.lock:
                deadline = client.next_deadline()
            sock = self._sock
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            readers: list[Any] = [self._wake_r] if sock is None else [self._wake_r, sock]
            try:
                ready, _, _ = select.select(readers, [], [], wait)
            except (OSError, ValueError):
                ready = []  # the socket was closed under us; the core hears about it below
            if self._wake_r in ready:
                self._wake_pending = False
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            chunks = self._read(sock) if sock is not None and sock in ready else []
            with self.lock:
                now = time.monotonic()
                for chunk in chunks:
                    client.receive_data(chunk, now)
                client.handle_timeout(now)
            self._dispatch(self._take_events())
            if self.closed:
                break

    @staticmethod
    def _read(sock: socket.socket) -> list[bytes]:
        chunks: list[bytes] = []
        try:
            data = sock.recv(_READ_SIZE)
            chunks.append(data)
            # TLS may hold decrypted bytes that select() cannot see.
            while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
                data = sock.recv(_READ_SIZE)
                chunks.append(data)
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError:
            chunks.append(b"")  # EOF as far as the core is concerned
        return chunks
