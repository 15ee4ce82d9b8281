"""The async engine shared by memphis_trio and memphis_asyncio: it pumps one sans-IO ``Client``.

Theory of operation
-------------------
Two tasks per connection, both in the connection's task group (a nursery for
``async with connect(...)``):

* the **reader** owns the reading: the stream hands each chunk to ``_feed``, synchronously
  (asyncio calls it from ``Protocol.data_received``, so no task wakes per chunk), which gives it
  to ``client.receive_data`` and wakes the waiters. Only when a chunk brings transport events
  (TLS upgrade, disconnect) or the EOF does the feed stop the reading and leave them to the
  reader task, which dispatches them (they may await) and reads on. It never writes: a reader
  stuck in ``send_all`` while the server is stuck sending to us would be the classic
  both-buffers-full deadlock. Bytes the core queues in reply (PONGs, CONNECT) are moved to
  ``_pending`` and the pump is kicked.
* the **pump** owns ``send_all`` and the timers: fire ``handle_timeout`` when
  ``next_deadline()`` is due, redial when the core says ``ReconnectDue``, then write
  everything queued — ``_pending`` plus ``client.data_to_send()`` — as ONE write per turn, and
  sleep until the next deadline or a kick. User calls (produce, ack, fetch...) only queue bytes in
  the core and kick the pump, so a burst of async produces becomes one write, not one per
  message; a call that waits for its reply writes it itself when nobody is writing
  (``write_through``: one task switch less per round trip).

Waiting: every user call that needs an answer holds an :class:`~memphis_core.Operation` and
loops on ``changed()`` — one event per connection, replaced each time it fires — re-checking
``op.done`` (or any predicate) after each wake-up. The feed fires it after every chunk, the
pump after every timer turn; there is no polling.

Transports are swapped under the tasks (reconnect, TLS): the current one is ``_stream``. A read
or write that finishes on a stream that is no longer current is stale and ignored, and
``_pending`` is cleared with each swap because the core replays whatever a new transport needs
(bytes queued for the old one must never reach the new one, e.g. a PUB before CONNECT).

Nothing here decides anything about Memphis or NATS; it only moves bytes and waits. What it
does with each event (``memphis_core.react``) and how a connection starts, drains and ends, or
wraps a crash (``memphis_core.Lifecycle``), is written once in the core for every engine.
memphis_sync keeps an engine of its own over the same policy, not a backend of this driver: its
callers read their replies themselves (``receive_on_caller``), which a reader task cannot offer
and which sync produce throughput depends on (see ``memphis_sync/_driver.py``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

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

from ._backend import Backend, Event, Spawner, Stream, Task

__all__ = ["CLOSE_TIMEOUT", "Driver", "Task"]

T = TypeVar("T")

# The spawn token of the task running now, so that closing from inside a task (a consume handler
# calling ``conn.close()``) does not wait for itself.
_CURRENT: ContextVar[object] = ContextVar("memphis_task")


class Driver:
    """Pumps one ``Client`` over one backend. Create it, then ``await start()``."""

    def __init__(
        self,
        client: Client,
        backend: Backend,
        spawner: Spawner,
        callbacks: ConnectionCallbacks | None = None,
    ) -> None:
        self.client = client
        self.backend = backend
        self._spawner = spawner
        self._callbacks = callbacks or ConnectionCallbacks()
        options = client.options
        self._ssl = None if options.tls is None else tls_context(options.tls)
        self._stream: Stream | None = None
        self._pending: list[bytes] = []  # queued by the reader, written by the pump
        self._reading: Stream | None = None  # the stream the reader task reads
        # Left by ``_feed`` for the reader task: the events of a chunk, and whether it was EOF.
        self._held: tuple[list[Any], bool] | None = None
        self._changed: Event | None = None  # created on demand by waiters
        self._wake = backend.event()
        self._kicked = False
        self._writing = False  # a send_all is in progress (pump or write-through)
        self._skipped = False  # the pump found a write-through in progress and left the bytes
        self._transport = backend.event()  # fired when a new stream is installed
        self._tasks: dict[object, Task] = {}  # by spawn token; a task removes itself
        self._pump_task: Task | None = None
        self.life = Lifecycle(client)
        self.on_consumer_error: Callable[[ConsumerError], None] = lambda event: None

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        """True once the connection is closed (waiters stop waiting, calls are refused)."""
        return self.life.closed

    async def start(self) -> None:
        """Dial, start the tasks and wait for the handshake.

        Raises:
            MemphisConnectError: refused, timed out, rejected credentials, TLS failure.
        """
        try:
            await self.dial()
            if not self.closed:
                self.spawn(self._reader, "memphis-reader")
                self._pump_task = self.spawn(self._pump, "memphis-pump")
            deadline = self.life.start_deadline(self.backend.monotonic())
            while not self.client.is_connected and not self.closed:
                if not await self.backend.wait_event(self.changed(), deadline):
                    break
        except BaseException:
            await self.aclose()  # cancelled or failed half-way: leave nothing running
            raise
        failure = self.life.start_failure()
        if failure is not None:
            await self.aclose()
            raise failure

    async def aclose(self) -> None:
        """Close the core (failing every waiter), let the pump write what is left, stop all tasks.

        Safe to call more than once and from a cancelled context.
        """
        await self.backend.shielded(self._close, CLOSE_TIMEOUT)
        self.cancel_tasks()  # whatever outlived the timeout

    async def _close(self) -> None:
        try:
            if not self.closed:
                self.client.close()
                await self._dispatch(self.client.events())
            pump = self._pump_task
            if pump is not None:
                # Its last turn writes the final bytes (acks) and drops the stream.
                await pump.join()
            self.cancel_tasks()
            current = _CURRENT.get(None)
            for token, task in list(self._tasks.items()):
                if token is not current:
                    await task.join()
        finally:
            # Even when the graceful part ran out of time: never leak the socket.
            await self.drop_transport()

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> Task:
        """Start ``fn`` in the connection's task group; it is cancelled by ``aclose``."""
        token = object()

        async def guarded() -> None:
            _CURRENT.set(token)
            try:
                await fn()
            except Exception as exc:
                # A bug, not a protocol outcome (the core reports those as events). End the
                # connection with it rather than crash the user's nursery or a system task.
                await self._crashed(exc)
            finally:
                self._tasks.pop(token, None)

        task = self._tasks[token] = self._spawner.spawn(guarded, name)
        return task

    def in_task(self, task: Task | None) -> bool:
        """Whether the caller runs inside ``task`` (a handle returned by :meth:`spawn`)."""
        token = _CURRENT.get(None)
        return task is not None and self._tasks.get(token) is task

    def cancel_tasks(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    async def _crashed(self, exc: Exception) -> None:
        log_crash(exc)
        if self.closed:
            return  # nothing left to fail, and on_closed was called already
        # Fails the operations the core still holds, naming the cause.
        closed = self.life.crash(exc)
        if closed is not None:
            # Announced like any close (on_closed(error) runs), then ``finish`` releases
            # every waiter.
            await self._dispatch([closed])
        else:
            self.notify()  # the Closed being dispatched elsewhere finishes; wake waiters now
        # The task that broke may be the pump, which would have dropped the stream.
        await self.drop_transport()

    # ------------------------------------------------------------------ used by user tasks

    def call(self, fn: Callable[[float], T], *, kick: bool = True, closed_ok: bool = False) -> T:
        """Run ``fn(now)`` on the core and get the pump to write what it queued.

        Raises:
            ConnectionClosedError: the connection is closed (unless ``closed_ok``: for calls
                that only give something back to the core, which are harmless after a close).
        """
        if self.closed and not closed_ok:
            raise ConnectionClosedError.because(self.life.error)
        try:
            result = fn(self.backend.monotonic())
        except Exception:
            # A refused call may have queued bytes before raising (a produce refused by the
            # schema queues its DLS report, docs/protocol.md §9.2): the pump writes them now,
            # not at its next turn for another reason.
            self.kick()
            raise
        if kick:
            self.kick()
        return result

    async def call_user(self, fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        """Run a user callback; a coroutine function's result is awaited."""
        result = fn(*args)
        if inspect.isawaitable(result):
            await result

    @staticmethod
    def check_callback(fn: object, name: str) -> None:
        """Check a handler or callback the user gives (``name``): the async frontends take
        plain and coroutine functions alike, so nothing is refused here (memphis_sync's
        engine refuses coroutine functions)."""

    async def _user_callback(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            await self.call_user(fn, *args)
        except Exception:
            connection_log.exception("a connection callback raised")

    async def shutdown(self, before: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Close as a drain: ``before()`` (stop consume loops), then the core's drain (every
        async produce acknowledged and every ack confirmed, up to ``timeout`` seconds), then
        the hard close. One shielded unit: with asyncio a cancelled caller returns at once
        while the shielded work goes on, so a second step after it would never run.

        Raises:
            CloseIncompleteError: the drain could not confirm everything (see the core).
        """
        failure: list[CloseIncompleteError | None] = [None]  # set by run()

        async def run() -> None:
            await before()
            op = self.call(lambda now: self.life.shutdown(now, timeout), closed_ok=True)
            try:
                if op is not None:
                    await self.wait(op)
            except MemphisError as exc:
                failure[0] = self.life.drain_failure(exc)
            await self._close()

        await self.backend.shielded(run, timeout + 2 * CLOSE_TIMEOUT)
        self.cancel_tasks()  # whatever outlived the timeout
        if failure[0] is not None:
            raise failure[0]

    async def run(self, fn: Callable[[float], Operation[T]]) -> T:
        """``call`` then ``wait``: the whole round trip of one operation."""
        op = self.call(fn, kick=False)
        await self.write_through()
        return await self.wait(op)

    async def write_through(self) -> None:
        """Write what the core queued from this task, when nobody is writing.

        For calls that wait for a reply anyway: it saves the hop to the pump on the latency
        path (the blocking frontend does the same from the user thread). Bursts of calls
        that do not wait (async produce, acks) leave the writing to the pump, which coalesces.
        Every backend's ``send_all`` is cancel-safe (a caller may be cancelled at any await:
        no byte is lost and no frame torn), so any task may write.
        """
        if self._writing or self._stream is None:
            self.kick()  # the pump writes, or will once the current write is done
            return
        try:
            await self._write()
        finally:
            if self._skipped:
                self._skipped = False
                self.kick()  # the pump skipped bytes queued meanwhile

    def kick(self) -> None:
        """Make the pump take a turn (cheap when one is already due)."""
        if not self._kicked:
            self._kicked = True
            self._wake.set()

    def changed(self) -> Event:
        """The event fired at the next "something changed" (a chunk read, a timer turn)."""
        event = self._changed
        if event is None:
            event = self._changed = self.backend.event()
        return event

    def notify(self) -> None:
        event = self._changed
        if event is not None:
            self._changed = None
            event.set()

    async def wait(self, op: Operation[T]) -> T:
        """Wait for ``op``, then return its result or raise its error.

        Cancellation leaves ``op`` running in the core; callers that must give something back
        (a fetch's messages) catch it and tell the core.
        """
        while not op.done and not self.closed:
            await self.changed().wait()
        if not op.done:
            # The core finishes every operation it holds when it closes, before its Closed
            # event: only an engine crash whose close broke too leaves one unfinished.
            raise ConnectionClosedError.because(self.life.error)
        return op.outcome()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` holds; False after ``timeout`` or once closed without it."""
        deadline = None if timeout is None else self.backend.monotonic() + timeout
        while not predicate():
            if self.closed:
                return predicate()
            if not await self.backend.wait_event(self.changed(), deadline):
                return predicate()
        return True

    # ------------------------------------------------------------------ transport events

    async def _dispatch(self, events: list[Any]) -> None:
        server = self.client.server_name
        for event in events:
            for fn, args in self._callbacks.announce(event, server):
                if isinstance(event, Closed):
                    # Inline: the close is about to cancel the connection's tasks.
                    await self._user_callback(fn, args)
                else:
                    self.spawn(functools.partial(self._user_callback, fn, args), "memphis-callback")
            action = react(event, self)
            if action is not None:
                await action

    # The actions ``react`` takes (memphis_core.Engine).

    async def drop_transport(self) -> None:
        """Close the stream (lost, or the connection ended)."""
        stream, self._stream = self._stream, None
        self._pending.clear()
        if stream is not None:
            await stream.aclose()  # a reader blocked on it wakes with OSError (stale: ignored)
        # The reader reports the loss; the pump must take a turn for the new deadline (an
        # immediate redial, a reconnect interval) instead of sleeping towards an older timer.
        self.kick()

    async def dial(self) -> None:
        """Dial the server the core's pool chose (the first connect and every reconnect)."""
        host, port = self.client.current_server
        try:
            stream = await self.backend.connect_tcp(host, port, self.client.options.timeout)
        except OSError as exc:
            await self._failed(exc)
            return
        if self.closed:  # closed while we were dialling
            await stream.aclose()
            return
        self._pending.clear()
        self._stream = stream
        self.client.connection_made(self.backend.monotonic())
        self._new_transport()
        self.kick()  # the handshake deadline is now the pump's next deadline

    async def upgrade_tls(self) -> None:
        """Wrap the stream in TLS (the server asked for it in its INFO)."""
        stream = self._stream
        if stream is None or self._ssl is None:
            return
        # Verify the certificate against the server being dialled, not the first one given.
        host = self.client.tls_hostname
        assert host is not None
        try:
            upgraded = await stream.start_tls(self._ssl, host, self.client.options.timeout)
        except OSError as exc:
            if self._stream is stream:
                await self.drop_transport()
            await self._failed(exc)
            return
        if self._stream is not stream:  # dropped during the handshake
            await upgraded.aclose()
            return
        self._stream = upgraded
        self.client.tls_established()  # queues CONNECT
        self.kick()

    async def finish(self, error: MemphisError | None) -> None:
        """The client closed (``error``: why): release every waiter; the pump writes the last
        bytes, then drops the transport."""
        self.life.closed_by(error)
        self.kick()
        self._new_transport()  # a reader waiting for a transport must see the close
        self.notify()

    async def consumer_error(self, event: ConsumerError) -> None:
        """The connection hands it to a task of its own."""
        self.on_consumer_error(event)

    async def _failed(self, exc: BaseException) -> None:
        self.client.connection_failed(self.backend.monotonic(), exc)
        await self._dispatch(self.client.events())
        self.kick()  # the reconnect deadline changed
        self.notify()

    def _new_transport(self) -> None:
        event, self._transport = self._transport, self.backend.event()
        event.set()

    # ------------------------------------------------------------------ the two tasks

    async def _reader(self) -> None:
        while not self.closed:
            stream = self._stream
            if stream is None:
                await self._transport.wait()
                continue
            self._reading = stream
            try:
                await stream.receive_into(self._feed)
            except OSError as exc:
                if self._stream is stream and not self.closed:
                    await self._failed(exc)
                continue
            held, self._held = self._held, None
            if held is None or self._stream is not stream or self.closed:
                continue  # stopped for a transport we already dropped
            # What ``_feed`` left to a task: events to dispatch (they may await), or the EOF.
            events, eof = held
            if events:
                await self._dispatch(events)
            if not self._queue_reply() and eof and self._stream is stream:
                await self.drop_transport()  # EOF the core ignored: never spin on it
            self.notify()

    def _feed(self, data: bytes) -> bool:
        """One chunk from the stream being read, straight into the core (the stream calls it
        synchronously: from ``Protocol.data_received`` for asyncio). False stops the reading
        until the reader task has dispatched what this left in ``_held``."""
        if self._stream is not self._reading or self.closed:
            return False  # bytes from a transport we already dropped
        client = self.client
        client.receive_data(data, self.backend.monotonic())  # b"" = EOF
        events = client.events()
        if events or not data:
            self._held = (events, not data)
            return False
        self._queue_reply()
        self.notify()
        return True

    def _queue_reply(self) -> bool:
        """Hand what the core queued in reply to a read (PONGs, CONNECT) to the pump; whether
        there was any."""
        out = self.client.data_to_send()
        if out:
            self._pending.append(out)
            self.kick()
        return bool(out)

    async def _pump(self) -> None:
        client = self.client
        backend = self.backend
        while True:
            self._wake = backend.event()
            self._kicked = False
            now = backend.monotonic()
            deadline = client.next_deadline()
            if deadline is not None and now >= deadline:
                client.handle_timeout(now)
                events = client.events()
                if events:
                    await self._dispatch(events)
                self.notify()
            await self._write()
            if self.closed and not self._skipped:  # else a write-through kicks us once done
                await self.drop_transport()
                return
            if not self._kicked:
                await backend.wait_event(self._wake, client.next_deadline())

    async def _write(self) -> None:
        if self._writing:
            self._skipped = True
            return
        data = self.client.data_to_send()
        if self._pending:
            self._pending.append(data)
            data = b"".join(self._pending)
            self._pending.clear()
        stream = self._stream
        if not data or stream is None:
            return
        self._writing = True
        try:
            await stream.send_all(data)
        except OSError as exc:
            failed = functools.partial(self._write_failed, stream, exc)
            if self.in_task(self._pump_task):
                await failed()
            else:
                # A caller writing through may be cancelled: a cancellation inside the
                # dispatch (an async on_closed awaits) would lose the events the core just
                # gave up, ``finish`` among them, and leave every waiter hanging.
                await self.backend.shielded(failed, CLOSE_TIMEOUT)
        finally:
            self._writing = False

    async def _write_failed(self, stream: Stream, exc: OSError) -> None:
        # Checked here, not before: asyncio runs a shielded call in a task of its own, and the
        # pump or the reader may have reported the same loss in between.
        if self._stream is stream and not self.closed:
            await self._failed(exc)
