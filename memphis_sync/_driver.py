"""The blocking frontend's engine: one I/O thread per connection pumping a sans-IO Client.

The I/O thread reads the socket, feeds the core, fires its timers and wakes every waiting user
thread (one condition variable); it also dials again when the core says a reconnect is due.
User threads call into the core under ``lock`` and either write the bytes it queued themselves
(``run``: plain TCP, one thread hop less per synchronous call) or wake the I/O thread to do it
(``kick``: TLS, whose socket objects are not safe to read and write from two threads, and
async produce or acks, where letting bytes pile up while the I/O thread is busy coalesces many
messages into one write). Nothing here decides anything about the protocol: it only moves
bytes and waits. What it does with each event (``react``) and how a connection starts,
drains and ends, or wraps a crash (``Lifecycle``), is written once in ``memphis_core`` for
every engine, this one and the async one alike.

Why two engines over one policy, not this one as a backend of the async driver: the blocking
engine lets a caller waiting for a reply read it itself (:meth:`Driver.receive_on_caller`, the
leader/follower read: one write and one read on the caller's thread per synchronous produce).
As a backend of the async driver, a reader thread would read every reply and wake the caller
across threads (a futex and a GIL hand-over per round trip, where the async frontends feed the
core and wake the caller inside one thread). This engine's sync produce reaches 0.57-0.62 of
the limit (the README's performance table), and the project holds sync produce to 0.6. The
policy is shared; only moving bytes and waiting differ.

Its interface is the async ``Driver``'s (``call``, ``run``, ``wait``, ``wait_for``, ``kick``,
``notify``, ``spawn``, ``call_user``, ``check_callback``, ``shutdown``) with threads for tasks,
because the public classes of memphis_sync are generated from the async ones
(``scripts/unasync.py``). Unlike the async engines it refuses coroutine functions as
callbacks and handlers (:func:`refuse_coroutine`): no thread here could run them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import queue
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from _memphis_io import ConnectionCallbacks, connection_log, log_crash, tls_context
from memphis_core import (
    Client,
    Closed,
    CloseIncompleteError,
    ConnectionClosedError,
    ConsumerError,
    Lifecycle,
    MemphisError,
    Operation,
    react,
)
from memphis_core.memphis._engine import CLOSE_TIMEOUT

__all__ = ["CLOSE_TIMEOUT", "Driver", "Task", "refuse_coroutine"]

T = TypeVar("T")
_READ_SIZE: Final = 65536
# Seconds a leading caller polls before re-checking its operation, and at most how long the
# I/O thread waits for a leader to hand the socket back.
_LEAD_SLICE: Final = 0.05


class Task:
    """A thread started by :meth:`Driver.spawn` (the blocking counterpart of an async task)."""

    __slots__ = ("_driver", "thread")

    def __init__(self, driver: Driver, thread: threading.Thread) -> None:
        self._driver = driver
        self.thread = thread

    def join(self) -> None:
        """Wait for the thread; bounded by the close deadline while the driver closes, so a
        handler stuck in user code cannot keep ``close()`` from closing."""
        deadline = self._driver.join_deadline
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.thread.join(timeout)


def refuse_coroutine(fn: object, name: str) -> None:
    """Refuse a coroutine function given to memphis_sync as ``name`` (a handler or callback).

    Called with it would return a coroutine that nothing awaits: the callback would never run,
    silently. Checked when it is given, before any byte is sent.

    Raises:
        TypeError: ``fn`` is a coroutine function (or an object whose ``__call__`` is one).
    """
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the method, not callable()
    ):
        raise TypeError(
            f"{name} is a coroutine function: memphis_sync calls it in a thread and cannot "
            "await it; pass a plain function (or use memphis_asyncio / memphis_trio)"
        )


class Driver:
    def __init__(self, client: Client, callbacks: ConnectionCallbacks | None = None) -> None:
        self.client = client
        self._callbacks = callbacks or ConnectionCallbacks()
        for name, callback in self._callbacks.named():
            refuse_coroutine(callback, name)
        self.life = Lifecycle(client)
        options = client.options
        self._timeout = options.timeout
        self._ssl = None if options.tls is None else tls_context(options.tls)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()  # the one thread reading the socket holds it
        # Held from taking the core's events to having acted on them (``_dispatch_events``).
        # Reentrant: a failed dial, itself an action, dispatches the events it caused.
        self._dispatch_lock = threading.RLock()
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
        self.on_consumer_error: Callable[[ConsumerError], None] = lambda error: None
        self.join_deadline: float | None = None  # set while closing: bounds Task.join
        self._callback_queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._callback_thread: threading.Thread | None = None
        self._thread = threading.Thread(target=self._run, name="memphis-io", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        """True once the connection is closed (waiters stop waiting, calls are refused)."""
        return self.life.closed

    def start(self) -> None:
        """Dial, hand the socket to the I/O thread and wait for the handshake.

        Raises:
            MemphisConnectError: refused, timed out, rejected credentials, TLS failure.
        """
        self.dial()
        self._thread.start()
        deadline = self.life.start_deadline(time.monotonic())
        with self.changed:
            while not self.client.is_connected and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
            failure = self.life.start_failure()
        if failure is not None:
            self.close()
            raise failure

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
        # The I/O thread may have stopped before taking the core's Closed event (it was past
        # its dispatch when ``_stop`` was set): announce it here, so that on_closed runs. Only
        # that one: the others ask for work (a ReconnectDue would dial) on a finished client.
        with self._dispatch_lock:
            closed = [event for event in self._take_events() if isinstance(event, Closed)]
            self._dispatch(closed)
        self._mark_closed(None)
        self.drop_transport()
        self._callback_queue.put(None)  # after the on_closed queued above, if any
        with contextlib.suppress(OSError):
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _mark_closed(self, error: MemphisError | None) -> None:
        with self.lock:
            self.life.closed_by(error)
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
                raise ConnectionClosedError.because(self.life.error)
            try:
                if kick or not timers:
                    # A kick wakes the I/O thread anyway, which then sleeps towards the new
                    # deadline: comparing deadlines here would cost more than the call (the
                    # async produce path).
                    result = fn(time.monotonic())
                    moved = False
                else:
                    before = self.client.next_deadline()
                    result = fn(time.monotonic())
                    after = self.client.next_deadline()
                    moved = after is not None and (before is None or after < before)
            except Exception:
                # A refused call may have queued bytes before raising (a produce refused by
                # the schema queues its DLS report, docs/protocol.md §9.2): write them now,
                # not at the I/O thread's next turn for another reason.
                self.kick()
                raise
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
        if not op.done and not self.receive_on_caller(op):
            self.kick()  # the I/O thread must learn of the new timer and read the reply
        return self.wait(op)

    def receive_on_caller(self, op: Operation[Any]) -> bool:
        """The caller receives: read the socket on this thread until ``op`` is done (the
        leader/follower read); False if this thread could not lead or handed back early.

        Only for plain TCP (a TLS socket must not be used from two threads). The read lock
        makes this thread the only reader; the I/O thread keeps firing timers and, once we
        give the lock back, reads again. We hand over as soon as a timer is due, the
        transport changes or the connection closes. What is read goes through
        :meth:`_received`, the I/O thread's own step after a read: this is not a second loop
        that decides anything, only a second reader.
        """
        if self._ssl is not None or not self._read_lock.acquire(timeout=_LEAD_SLICE):
            return False
        with self.lock:
            sock = self._sock
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
            while not op.done and not self.closed:
                with self.lock:
                    if sock is not self._sock:
                        return False  # the transport changed: the I/O thread takes over
                    deadline = self.client.next_deadline()
                wait = _LEAD_SLICE if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    return False  # a timer is due: the I/O thread fires it
                if not poller.poll(min(wait, _LEAD_SLICE) * 1000):
                    continue
                chunks = self._read(sock)
                if not chunks:
                    continue  # not expected: we polled and are the only reader
                try:
                    if not self._received(sock, chunks, timers=False):
                        return False  # the transport changed: the I/O thread takes over
                except Exception as exc:
                    # An engine bug met on the caller's thread ends the connection exactly as
                    # on the I/O thread: every waiter, this one included, gets it as the cause.
                    self._crashed(exc)
                    return False
                self._dispatch_events()  # wakes every other waiter too
                self._send_pending()  # PONGs, acks queued by what we read
                if not chunks[-1]:
                    return False  # EOF (its Disconnected was acted on above): hand back
            return True
        finally:
            with self.lock:
                if sock is self._sock:
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
            while not op.done and not self.closed:
                self.changed.wait()
        if not op.done:
            # The core finishes every operation it holds when it closes, before its Closed
            # event: only an engine crash whose close broke too leaves one unfinished.
            raise ConnectionClosedError.because(self.life.error)
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

    @staticmethod
    def check_callback(fn: object, name: str) -> None:
        """Check a handler or callback the user gives (``name``) before anything is sent.

        Raises:
            TypeError: a coroutine function (see :func:`refuse_coroutine`).
        """
        refuse_coroutine(fn, name)

    def spawn(self, fn: Callable[[], None], name: str) -> Task:
        """Run ``fn`` in a daemon thread; a bug in it closes the connection with the error."""

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:
                self._crashed(exc)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        return Task(self, thread)

    def in_task(self, task: Task | None) -> bool:
        """Whether the caller runs inside ``task`` (a handle returned by :meth:`spawn`)."""
        return task is not None and task.thread is threading.current_thread()

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
            # The I/O thread may close the connection meanwhile (a server failure ending the
            # last reconnect): the lifecycle then gives no drain, or the drain ends with it.
            op = self.call(lambda now: self.life.shutdown(now, timeout), closed_ok=True)
            try:
                if op is not None:
                    self.wait(op)
            except MemphisError as exc:
                failure = self.life.drain_failure(exc)
        finally:
            self.close()
        if failure is not None:
            raise failure

    def _crashed(self, exc: Exception) -> None:
        log_crash(exc)
        with self._dispatch_lock:  # the crash takes the core's events (see _dispatch_events)
            with self.lock:
                # Fails the operations the core still holds, naming the cause.
                closed = self.life.crash(exc)
                self.changed.notify_all()
            if closed is not None:
                # Announced like any close (on_closed(error) runs), then finished: whichever
                # thread met the bug, the I/O thread may be the one that died of it.
                self._dispatch([closed])

    # ------------------------------------------------------------------ socket plumbing

    # The actions ``react`` takes (memphis_core.Engine).

    def dial(self) -> None:
        """Dial the server the core's pool chose (the first connect and every reconnect)."""
        try:
            sock = socket.create_connection(self.client.current_server, timeout=self._timeout)
        except OSError as exc:
            with self.lock:
                self.client.connection_failed(time.monotonic(), exc)
            self._dispatch_events()
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

    def upgrade_tls(self) -> None:
        """Wrap the socket in TLS (the server asked for it in its INFO)."""
        assert self._ssl is not None
        sock = self._sock
        if sock is None:
            return
        try:
            # Verify the certificate against the server being dialled, not the first one given.
            tls_sock = self._ssl.wrap_socket(sock, server_hostname=self.client.tls_hostname)
        except (OSError, ssl.SSLError) as exc:
            self.drop_transport()
            with self.lock:
                self.client.connection_failed(time.monotonic(), exc)
            # The I/O thread takes the events this caused on its next turn: make it come now
            # (with no timer left, a failed first connect, it would sleep until start gives up).
            self.kick()
            return
        with self.lock:
            # wrap_socket detached ``sock``: register the wrapper in its place.
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            self._sock = None
            self._install(tls_sock)
            self.client.tls_established()

    def drop_transport(self) -> None:
        """Close the socket (lost, or the connection ended)."""
        with self.lock:
            self._install(None)

    def finish(self, error: MemphisError | None) -> None:
        """The client closed (``error``: why): close the socket, release every waiter."""
        self.drop_transport()
        self._mark_closed(error)

    def consumer_error(self, event: ConsumerError) -> None:
        """The connection hands it to a thread of its own: user code never runs here."""
        self.on_consumer_error(event)

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

    def _dispatch_events(self) -> None:
        """Take the core's events and act on them, as one step against any other thread's.

        The I/O thread and a caller receiving its reply both dispatch. Taken apart, a caller
        could take a Disconnected, the I/O thread then the ReconnectDue after it and dial,
        and the caller's late ``drop_transport`` close the socket just dialled: actions must
        run in the order the core emitted the events.
        """
        with self._dispatch_lock:
            self._dispatch(self._take_events())

    def _dispatch(self, events: list[Any]) -> None:
        server = self.client.server_name
        for event in events:
            for fn, args in self._callbacks.announce(event, server):
                # One callback thread, fed in order: user code never runs on the I/O thread,
                # and on_disconnected always comes before the on_reconnected that follows it.
                self._run_callback(functools.partial(self._user_callback, fn, args))
            react(event, self)

    def _received(self, sock: socket.socket | None, chunks: list[bytes], *, timers: bool) -> bool:
        """The step after a read, whoever read (the I/O thread, or a caller receiving): feed
        ``chunks`` read from ``sock`` to the core and fire due timers (``timers``); the reader
        then dispatches the events. False when ``sock`` is no longer the transport (replaced
        by a TLS upgrade or dropped meanwhile): its bytes are discarded."""
        with self.lock:
            now = time.monotonic()
            current = sock is self._sock
            if current:
                for chunk in chunks:
                    self.client.receive_data(chunk, now)
            if timers:
                self.client.handle_timeout(now)
        return current

    # ------------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug here must not leave every waiter hanging
            # Logged with its traceback by _crashed; every waiter gets it as the cause.
            self._crashed(exc)

    def _loop(self) -> None:
        while not self._stop:
            # Cleared before the queue is read: a kick that still sees it set came after data
            # this turn's write will carry, so it need not send another wake-up byte. Kicks made
            # while we write or read then cost nothing (one byte per turn instead of per call).
            self._wake_pending = False
            self._send_pending()
            with self.lock:
                deadline = self.client.next_deadline()
                sock = self._sock
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = {key.fileobj for key, _ in self._selector.select(wait)}
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            # A caller receiving its reply (``receive_on_caller``) holds the read lock and reads
            # the socket itself: then skip reading this turn (it hands the socket back when done).
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
                self._received(sock, chunks, timers=True)
            finally:
                if reading:
                    self._read_lock.release()
            self._dispatch_events()
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
