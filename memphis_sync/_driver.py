"""The blocking frontend's engine: one I/O thread per connection pumping a sans-IO Client.

The I/O thread reads the socket, feeds the core, fires its timers and wakes every waiting user
thread (one condition variable); it also dials again when the core says a reconnect is due.
User threads call into the core under ``lock`` and either write the bytes it queued themselves
(``run``: plain TCP, one thread hop less per synchronous call) or wake the I/O thread to do it
(``kick``: TLS, whose socket objects are not safe to read and write from two threads, and
async produce or acks, where letting bytes pile up while the I/O thread is busy coalesces many
messages into one write). Nothing here decides anything about the protocol: it only moves
bytes and waits.

Its interface is the async ``Driver``'s (``call``, ``run``, ``wait``, ``wait_for``, ``kick``,
``notify``, ``spawn``, ``call_user``, ``shutdown``) with threads for tasks, because the public
classes of memphis_sync are generated from the async ones (``scripts/unasync.py``).
"""

from __future__ import annotations

import contextlib
import functools
import queue
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from _memphis_io import ConnectionCallbacks, connection_log, log_event, server_name, tls_context
from memphis_core import (
    Client,
    Closed,
    CloseIncompleteError,
    ConnectionClosedError,
    ConsumerError,
    Disconnected,
    MemphisConnectError,
    MemphisError,
    Operation,
    ReconnectDue,
    TLSUpgradeRequired,
)

__all__ = ["CLOSE_TIMEOUT", "Driver", "Task"]

T = TypeVar("T")
_READ_SIZE: Final = 65536
# Seconds a leading caller polls before re-checking its operation, and at most how long the
# I/O thread waits for a leader to hand the socket back.
_LEAD_SLICE: Final = 0.05
#: How long ``close()`` lets threads finish (consume handlers) beyond the drain timeout.
CLOSE_TIMEOUT: Final = 10.0


class Task:
    """A thread started by :meth:`Driver.spawn` (the blocking counterpart of an async task)."""

    __slots__ = ("_driver", "thread")

    def __init__(self, driver: Driver, thread: threading.Thread) -> None:
        self._driver = driver
        self.thread = thread

    def cancel(self) -> None:
        """Threads cannot be cancelled: the loops they run check the driver's stop flags."""

    def join(self) -> None:
        """Wait for the thread; bounded by the close deadline while the driver closes, so a
        handler stuck in user code cannot keep ``close()`` from closing."""
        deadline = self._driver.join_deadline
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.thread.join(timeout)


class Driver:
    def __init__(self, client: Client, callbacks: ConnectionCallbacks | None = None) -> None:
        self.client = client
        self._callbacks = callbacks or ConnectionCallbacks()
        options = client.options
        self._timeout = options.timeout
        self._ssl = None if options.tls is None else tls_context(options.tls)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()  # the one thread reading the socket holds it
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
        self.join_deadline: float | None = None  # set while closing: bounds Task.join
        self._tasks: dict[threading.Thread, Task] = {}
        self._callback_queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
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
        self.kick()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self._timeout + 1)
        self._mark_closed(None)
        self._close_socket()
        self._callback_queue.put(None)  # after the on_closed queued above, if any
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

    def call(
        self,
        fn: Callable[[float], T],
        *,
        kick: bool = True,
        closed_ok: bool = False,
        timers: bool = True,
    ) -> T:
        """Run ``fn(now)`` on the core under the lock; with ``kick`` the I/O thread writes what
        it queued (coalesced with whatever else is queued).

        If the call started a timer earlier than the one the I/O thread sleeps towards (an
        ack_wait, a fetch), the I/O thread is woken so that the deadline is honoured.

        Raises:
            ConnectionClosedError: the connection is closed (unless ``closed_ok``: for calls
                that only give something back to the core, harmless after a close).
        """
        with self.lock:
            if self.closed and not closed_ok:
                raise ConnectionClosedError.because(self.closed_error)
            if kick or not timers:
                # A kick wakes the I/O thread anyway, which then sleeps towards the new
                # deadline: comparing deadlines here would cost more than the call (the async
                # produce path).
                result = fn(time.monotonic())
                moved = False
            else:
                before = self.client.next_deadline()
                result = fn(time.monotonic())
                after = self.client.next_deadline()
                moved = after is not None and (before is None or after < before)
        if kick or moved:
            self.kick()
        return result

    def run(self, fn: Callable[[float], Operation[T]]) -> T:
        """``call`` then ``wait``, writing from this thread: the round trip of one operation.

        Leader/follower: when no other thread is reading the socket, this thread reads the
        reply itself instead of waiting to be woken by the I/O thread. A synchronous produce
        then costs one write and one read on the caller's thread, as a thin loop over a socket
        would; the hop to the I/O thread and back (two wake-ups) cost more than the broker.
        """
        op = self.call(fn, kick=False, timers=False)
        self._write_through()
        if not op.done and not self._lead(op):
            self.kick()  # the I/O thread must learn of the new timer and read the reply
        return self.wait(op)

    def _lead(self, op: Operation[Any]) -> bool:
        """Read the socket on this thread until ``op`` is done; False if we could not lead.

        Only for plain TCP (a TLS socket must not be used from two threads). The read lock
        makes this thread the only reader; the I/O thread keeps firing timers and, once we
        give the lock back, reads again. We hand over as soon as a timer is due, the
        transport changes or the connection closes, so nothing here decides anything: it is
        the I/O thread's loop body, run by whoever is waiting.
        """
        if self._ssl is not None or not self._read_lock.acquire(timeout=_LEAD_SLICE):
            return False
        with self.lock:
            sock, generation = self._sock, self._generation
            if sock is None:
                self._read_lock.release()
                return False
            # While we lead, the I/O thread does not watch the socket: otherwise every reply
            # would wake it too, only to find the bytes gone (a wake-up per message is what
            # leading saves).
            self._selector.unregister(sock)
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            client = self.client
            while not op.done and not self.closed:
                with self.lock:
                    if generation != self._generation:
                        return False  # the transport changed: the I/O thread takes over
                    deadline = client.next_deadline()
                wait = _LEAD_SLICE if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    return False  # a timer is due: the I/O thread fires it
                if not poller.poll(min(wait, _LEAD_SLICE) * 1000):
                    continue
                chunks = self._read(sock)
                if not chunks:
                    continue  # not expected: we polled and are the only reader
                try:
                    with self.lock:
                        if generation != self._generation:
                            return False
                        now = time.monotonic()
                        for chunk in chunks:
                            client.receive_data(chunk, now)
                except Exception as exc:
                    # An engine bug met on the caller's thread ends the connection exactly as
                    # on the I/O thread: every waiter, this one included, gets it as the cause.
                    self._crashed(exc)
                    return False
                self._dispatch(self._take_events())  # wakes every other waiter too
                self._send_pending()  # PONGs, acks queued by what we read
                if not chunks[-1]:
                    return False  # EOF: the I/O thread handles the disconnect
            return True
        finally:
            with self.lock:
                if generation == self._generation:
                    self._selector.register(sock, selectors.EVENT_READ)
            self._read_lock.release()

    def _write_through(self) -> None:
        # TLS sockets are not safe to use from two threads: the I/O thread writes those.
        if self._ssl is None:
            self._send_pending()
        else:
            self.kick()

    def kick(self) -> None:
        """Make the I/O thread take a turn (cheap when one is already due)."""
        if not self._wake_pending:
            self._wake_pending = True
            # OSError: the buffer is full (a wake is pending anyway) or the pair is closed.
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def notify(self) -> None:
        """Wake every thread waiting in ``wait`` / ``wait_for`` to re-check its condition."""
        with self.changed:
            self.changed.notify_all()

    def wait(self, op: Operation[T]) -> T:
        """Block until ``op`` is done, then return its result or raise its error.

        The core always finishes an operation (reply, timeout, connection closed), so this
        needs no timeout of its own.
        """
        with self.changed:
            while not op.done:
                if self.closed:
                    op.fail(ConnectionClosedError.because(self.closed_error))
                    break
                self.changed.wait()
        return op.outcome()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate()`` (evaluated under the lock) holds; False on timeout or
        once closed without it."""
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

    def call_user(self, fn: Callable[..., object], *args: Any) -> None:
        """Run a user callback (on the calling thread: never the I/O thread)."""
        fn(*args)

    def spawn(self, fn: Callable[[], None], name: str) -> Task:
        """Run ``fn`` in a daemon thread; a bug in it closes the connection with the error."""

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:
                self._crashed(exc)
            finally:
                self._tasks.pop(threading.current_thread(), None)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        task = self._tasks[thread] = Task(self, thread)
        thread.start()
        return task

    def in_task(self, task: Task | None) -> bool:
        """Whether the caller runs inside ``task`` (a handle returned by :meth:`spawn`)."""
        return task is not None and task.thread is threading.current_thread()

    def cancel_tasks(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    def _run_callback(self, callback: Callable[[], None]) -> None:
        if self._callback_thread is None:
            self._callback_thread = threading.Thread(
                target=self._callback_loop, name="memphis-callbacks", daemon=True
            )
            self._callback_thread.start()
        self._callback_queue.put(callback)

    def _callback_loop(self) -> None:
        while (callback := self._callback_queue.get()) is not None:
            callback()

    def _user_callback(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.call_user(fn, *args)
        except Exception:
            connection_log.exception("a connection callback raised")

    def shutdown(self, before: Callable[[], None], timeout: float) -> None:
        """Close as a drain: ``before()`` (stop consume loops), then the core's drain (every
        async produce acknowledged and every ack confirmed, up to ``timeout`` seconds), then
        the hard close.

        Raises:
            CloseIncompleteError: the drain could not confirm everything (see the core).
        """
        self.join_deadline = time.monotonic() + timeout + CLOSE_TIMEOUT
        failure: CloseIncompleteError | None = None
        try:
            before()
            if not self.closed:
                try:
                    # The I/O thread can close the connection between the check above and this
                    # call (a server failure ending the last reconnect): call() then raises
                    # ConnectionClosedError, which means the same as a close during the wait.
                    op = self.call(lambda now: self.client.drain(now, timeout))
                    self.wait(op)
                except CloseIncompleteError as exc:
                    failure = exc
                except MemphisError:
                    pass  # closed under us: the close already failed what it held, by name
        finally:
            self.close()
        if failure is not None:
            raise failure

    def _crashed(self, exc: Exception) -> None:
        connection_log.error("memphis: internal error", exc_info=exc)
        error = MemphisError(f"memphis: internal error: {exc!r}")
        with self.lock:
            with contextlib.suppress(Exception):
                # Fails the operations the core still holds, naming the cause.
                self.client.close(error)
            if not self.closed:
                self.closed = True
                self.closed_error = error
            self.changed.notify_all()

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
                self.kick()

    def _take_events(self) -> list[Any]:
        with self.lock:
            events = self.client.events()
            self.changed.notify_all()
        return events

    def _dispatch(self, events: list[Any]) -> None:
        # The server in use, not the first one given; events about a server name their own.
        server = server_name(self.client.session.current_server) or self.client.options.server
        for event in events:
            log_event(event, server)
            for fn, args in self._callbacks.calls_for(event):
                # One callback thread, fed in order: user code never runs on the I/O thread,
                # and on_disconnected always comes before the on_reconnected that follows it.
                self._run_callback(functools.partial(self._user_callback, fn, args))
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
                # The connection hands it to a thread of its own: user code never runs here.
                self.on_consumer_error(event)

    # ------------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug here must not leave every waiter hanging
            # Logged with its traceback by _crashed; every waiter gets it as the cause.
            self._crashed(exc)

    def _loop(self) -> None:
        client = self.client
        while not self._stop:
            # Cleared before the queue is read: a kick that still sees it set came after data
            # this turn's write will carry, so it need not send another wake-up byte. Kicks made
            # while we write or read then cost nothing (one byte per turn instead of per call).
            self._wake_pending = False
            self._send_pending()
            with self.lock:
                deadline = client.next_deadline()
                sock = self._sock
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = {key.fileobj for key, _ in self._selector.select(wait)}
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            # A caller leading a round trip (``_lead``) holds the read lock and reads the socket
            # itself: then skip reading this turn (the leader hands the socket back when done).
            # Read and feed under the one read lock, as the leader does: releasing it between
            # the two would let a leader feed newer bytes before ours.
            reading = sock is not None and sock in ready and self._read_lock.acquire(blocking=False)
            try:
                # The selector's answer may be stale by now: a leader may have taken the bytes
                # between our select() and the read lock. Check again as the only reader, since
                # a recv on a socket with a timeout waits for data (CPython polls before the
                # recv, MSG_DONTWAIT or not) and would keep this thread from every kick and
                # timer for a whole socket timeout.
                fresh = reading and sock is not None and self._readable_now(sock)
                chunks = self._read_now(sock, self._send_lock) if fresh and sock is not None else []
                with self.lock:
                    now = time.monotonic()
                    if sock is self._sock:  # not replaced meanwhile (TLS upgrade, close)
                        for chunk in chunks:
                            client.receive_data(chunk, now)
                    client.handle_timeout(now)
            finally:
                if reading:
                    self._read_lock.release()
            self._dispatch(self._take_events())
            if self.closed:
                break

    @staticmethod
    def _readable_now(sock: socket.socket) -> bool:
        """Whether ``sock`` has something to read right now (bytes, EOF or an error)."""
        if isinstance(sock, ssl.SSLSocket):
            # Nobody leads on TLS: the selector's answer still holds. (A record that is not
            # complete yet is left for the next turn by ``_read_now``.)
            return True
        poller = select.poll()
        try:
            poller.register(sock, select.POLLIN)
        except (ValueError, OSError):
            # Closed meanwhile (a leader read EOF and dropped the transport): nothing to read,
            # and the caller's check against the current socket discards this turn anyway.
            return False
        return bool(poller.poll(0))

    @staticmethod
    def _read_now(sock: socket.socket, send_lock: threading.Lock) -> list[bytes]:
        """``_read`` that never waits: a TLS socket is non-blocking for the read alone.

        The selector reports a TLS socket readable as soon as part of a record arrived, and a
        blocking recv then waits for the rest of the record, up to the socket timeout, deaf
        to kicks and timers. Non-blocking, an incomplete record raises SSLWantReadError and
        is read on a later turn. Only this thread uses a TLS socket except ``close()``'s
        last write, which ``send_lock`` keeps out while the socket is non-blocking.
        """
        if not isinstance(sock, ssl.SSLSocket):
            return Driver._read(sock)
        with send_lock:
            timeout = sock.gettimeout()
            try:
                sock.settimeout(0.0)
            except OSError:
                return [b""]  # closed meanwhile: EOF as far as the core is concerned
            try:
                return Driver._read(sock)
            finally:
                with contextlib.suppress(OSError):
                    sock.settimeout(timeout)

    @staticmethod
    def _read(sock: socket.socket) -> list[bytes]:
        chunks: list[bytes] = []
        try:
            # Only called when the socket is readable: with its timeout set, recv would
            # otherwise wait (see ``_loop``).
            if isinstance(sock, ssl.SSLSocket):
                data = sock.recv(_READ_SIZE)
            else:
                data = sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
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
