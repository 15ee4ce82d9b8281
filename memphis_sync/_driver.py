"""The blocking frontend's engine: one I/O thread per connection pumping a sans-IO Client.

The I/O thread reads the socket, feeds the core, fires its timers and wakes every waiting user
thread (one condition variable); it also dials again when the core says a reconnect is due.
User threads call into the core under ``lock`` and either write the bytes it queued themselves
(plain TCP: one thread hop less per synchronous call) or wake the I/O thread to do it (TLS,
whose socket objects are not safe to read and write from two threads, and async produce, where
letting bytes pile up while the I/O thread is busy coalesces many messages into one write).
User callbacks (consumer error handlers) never run on the I/O thread: they go to a callback
thread, so a handler that blocks or calls back into the connection cannot stall it.
Nothing here decides anything about the protocol: it only moves bytes and waits.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from _memphis_io import tls_context
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
    ServerError,
    TLSUpgradeRequired,
)

__all__ = ["Driver"]

T = TypeVar("T")
_READ_SIZE: Final = 65536
_log = logging.getLogger("memphis_sync")


class Driver:
    def __init__(self, client: Client) -> None:
        self.client = client
        options = client.options
        self._timeout = options.timeout
        self._ssl = None if options.tls is None else tls_context(options.tls)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._send_lock = threading.Lock()
        # The transport and its generation change together, under ``lock``: a write prepared
        # for one transport must never go out on the next one.
        self._sock: socket.socket | None = None
        self._generation = 0
        self._selector = selectors.DefaultSelector()  # select() breaks past fd 1024
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._wake_pending = False
        self._stop = False
        self.closed_error: MemphisError | None = None
        self.closed = False
        self.on_consumer_error: Callable[[ConsumerError], None] = lambda error: None
        self._callbacks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._callback_thread: threading.Thread | None = None
        self._thread = threading.Thread(target=self._run, name="memphis-io", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Dial, hand the socket to the I/O thread and wait for the handshake.

        Raises:
            MemphisConnectError: refused, timed out, rejected credentials, TLS failure.
        """
        self._dial()
        self._thread.start()
        # A safety net only (the core's handshake timer fires first): each given server may
        # take a whole timeout before the next one is tried.
        tries = len(self.client.options.servers)
        deadline = time.monotonic() + tries * self._timeout + 1.0
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
        """Close the core (failing whatever still waits), write what it queued, stop threads."""
        with self.lock:
            self.client.close()
            self.changed.notify_all()
        self._send_pending()
        self._stop = True
        self.wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self._timeout + 1)
        self._mark_closed(None)
        self._close_socket()
        self._callbacks.put(None)
        with contextlib.suppress(OSError):
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _mark_closed(self, error: MemphisError | None) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.closed_error = error
            self.changed.notify_all()

    # ------------------------------------------------------------------ used by user threads

    def call(self, fn: Callable[[float], T], *, send: bool = True) -> T:
        """Run ``fn(now)`` on the core under the lock, then get the bytes it queued written.

        If the call started a timer earlier than the one the I/O thread sleeps towards (an
        ack_wait, a fetch), the I/O thread is woken so that the deadline is honoured.
        """
        with self.lock:
            if self.closed:
                raise ConnectionClosedError("the connection is closed")
            before = self.client.next_deadline()
            result = fn(time.monotonic())
            after = self.client.next_deadline()
        if send:
            self.send_soon()
        if after is not None and (before is None or after < before):
            self.wake()
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

    def wait(self, op: Operation[T]) -> T:
        """Block until ``op`` is done, then return its result or raise its error.

        The core always finishes an operation (reply, timeout, connection closed), so this
        needs no timeout of its own.
        """
        with self.changed:
            while not op.done:
                if self.closed:
                    op.fail(self.closed_error or ConnectionClosedError("the connection is closed"))
                    break
                self.changed.wait()
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

    def run_callback(self, callback: Callable[[], None]) -> None:
        """Run user code on the callback thread (started on first use)."""
        if self._callback_thread is None:
            self._callback_thread = threading.Thread(
                target=self._run_callbacks, name="memphis-callbacks", daemon=True
            )
            self._callback_thread.start()
        self._callbacks.put(callback)

    def _run_callbacks(self) -> None:
        while (callback := self._callbacks.get()) is not None:
            try:
                callback()
            except Exception:
                _log.exception("a memphis callback raised")

    # ------------------------------------------------------------------ socket plumbing

    def _dial(self) -> None:
        # The core's server pool chooses whom to dial (first connect and every reconnect).
        server = self.client.session.current_server
        assert server is not None  # a Client always gives its session the servers
        try:
            sock = socket.create_connection(server, timeout=self._timeout)
        except OSError as exc:
            with self.lock:
                self.client.connection_failed(time.monotonic(), exc)
            self._dispatch(self._take_events())
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Reads only happen when the selector says so; the timeout bounds writes, so a peer
        # that stops reading fails the connection instead of blocking every thread.
        sock.settimeout(self._timeout)
        with self.lock:
            if self._stop or self.closed:
                sock.close()  # close() ran while we were dialling
                return
            self._install(sock)
            self.client.connection_made(time.monotonic())

    def _install(self, sock: socket.socket | None) -> None:
        """Swap the transport (under ``lock``)."""
        old, self._sock = self._sock, sock
        self._generation += 1
        if old is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(old)
            with contextlib.suppress(OSError):
                old.close()
        if sock is not None:
            self._selector.register(sock, selectors.EVENT_READ)

    def _upgrade_tls(self) -> None:
        assert self._ssl is not None
        sock = self._sock
        if sock is None:
            return
        try:
            # Verify the certificate against the server being dialled, not the first one given.
            tls_sock = self._ssl.wrap_socket(sock, server_hostname=self.client.session.tls_hostname)
        except (OSError, ssl.SSLError) as exc:
            self._close_socket()
            with self.lock:
                self.client.connection_failed(time.monotonic(), exc)
            return
        with self.lock:
            # wrap_socket detached ``sock``: register the wrapper in its place.
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            self._sock = None
            self._install(tls_sock)
            self.client.tls_established()

    def _close_socket(self) -> None:
        with self.lock:
            self._install(None)

    def _send_pending(self) -> None:
        with self._send_lock:
            with self.lock:
                data = self.client.data_to_send()
                sock, generation = self._sock, self._generation
            if not data or sock is None:
                return
            try:
                sock.sendall(data)
            except OSError as exc:
                with self.lock:
                    if generation == self._generation:  # not a transport already replaced
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
                self._mark_closed(event.error)
            elif isinstance(event, ConsumerError):
                self.run_callback(functools.partial(self.on_consumer_error, event))
            elif isinstance(event, ServerError):
                _log.warning("memphis server error: %s", event.message)

    # ------------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug here must not leave every waiter hanging
            _log.exception("memphis I/O thread crashed")
            with self.lock:
                self.client.close()
            self._mark_closed(MemphisConnectError(f"I/O thread crashed: {exc!r}"))
            raise

    def _loop(self) -> None:
        client = self.client
        while not self._stop:
            self._send_pending()
            with self.lock:
                deadline = client.next_deadline()
                sock = self._sock
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = {key.fileobj for key, _ in self._selector.select(wait)}
            if self._wake_r in ready:
                # Drain first, then clear: a wake() in between then leaves a byte behind and
                # costs one spurious turn, instead of a lost wakeup.
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
                self._wake_pending = False
            chunks = self._read(sock) if sock is not None and sock in ready else []
            with self.lock:
                now = time.monotonic()
                if sock is self._sock:  # not replaced meanwhile (TLS upgrade, close)
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
            # TLS may hold decrypted bytes that the selector cannot see.
            while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
                data = sock.recv(_READ_SIZE)
                chunks.append(data)
        except (BlockingIOError, ssl.SSLWantReadError, TimeoutError):
            pass
        except OSError:
            chunks.append(b"")  # EOF as far as the core is concerned
        return chunks
