"""What every engine that drives a :class:`Client` decides, written once and sans-IO.

An engine (memphis_sync's threads, the trio and asyncio tasks of ``_memphis_async``, a loop of
the embedder's own such as ``examples/custom_loop.py``) only moves bytes and waits. What it
does with each event and how a connection starts, drains and ends is policy, and lives here:

* :func:`react`: the event → action table. The engine supplies the actions (:class:`Engine`:
  drop the transport, dial, upgrade to TLS, finish, hand a consumer error over); which event
  calls which is decided by one table, for every engine.
* :class:`Lifecycle`: the start deadline, the error a failed start raises, the drain-then-close
  sequence of a shutdown, and the wrapping of an engine crash; its phases are an enum and a
  transition table (:data:`TRANSITIONS`), as the connection's are (``nats/_state.py``).

Actions may be plain methods (a blocking engine) or coroutine functions (an async engine):
:func:`react` returns what the action returned, for the async engine to await.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

from memphis_core.nats._errors import LocalProtocolError, MemphisConnectError, MemphisError
from memphis_core.nats._events import (
    Closed,
    Connected,
    Disconnected,
    ReconnectDue,
    ServerError,
    TLSUpgradeRequired,
)
from memphis_core.nats._state import TableEnum
from memphis_core.nats._state import step as step_table

from ._client import Client, ClientEvent
from ._consumers import ConsumerError
from ._dispatch import ControlRetry
from ._errors import CloseIncompleteError
from ._operation import Operation

__all__ = [
    "ACTIONS",
    "CLOSE_TIMEOUT",
    "START_SLACK",
    "TRANSITIONS",
    "Engine",
    "Lifecycle",
    "Phase",
    "Step",
    "react",
    "transition",
]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
#: Seconds ``start`` allows beyond the handshake timeouts of every given server: a safety net,
#: the core's own handshake timer fires first.
START_SLACK: Final = 1.0
#: Seconds a close lets the engine's tasks or threads finish (the last write, consume handlers
#: still running) beyond the drain timeout, before it stops waiting for them.
CLOSE_TIMEOUT: Final = 10.0


class Engine(Protocol[R_co]):
    """The actions an engine offers :func:`react`; each returns ``R_co`` (``None``, or an
    awaitable for an async engine)."""

    def drop_transport(self) -> R_co:
        """``Disconnected``: close the transport, drop what it did not write, and wait for
        ``ReconnectDue`` (or ``Closed``)."""
        ...

    def dial(self) -> R_co:
        """``ReconnectDue``: dial ``Client.current_server``, then call ``connection_made`` or
        ``connection_failed``."""
        ...

    def upgrade_tls(self) -> R_co:
        """``TLSUpgradeRequired``: wrap the transport in TLS for ``Client.tls_hostname``, then
        call ``tls_established`` (or ``connection_failed``)."""
        ...

    def finish(self, error: MemphisError | None) -> R_co:
        """``Closed``: the client is finished (``error``: why, None after a ``close()``);
        close the transport and release every waiter."""
        ...

    def consumer_error(self, event: ConsumerError) -> R_co:
        """``ConsumerError``: hand it to that consumer's error handler, off the I/O path."""
        ...


# Event type → what it asks of the engine (None: nothing; ``Connected`` wakes the waiters the
# engine wakes after every batch of events anyway). Every ``ClientEvent`` has a row: a test walks
# the table against the union, so a new event cannot go unhandled by one engine only.
ACTIONS: Final[dict[type, Callable[[Engine[Any], Any], Any] | None]] = {
    Disconnected: lambda engine, event: engine.drop_transport(),
    ReconnectDue: lambda engine, event: engine.dial(),
    TLSUpgradeRequired: lambda engine, event: engine.upgrade_tls(),
    Closed: lambda engine, event: engine.finish(event.error),
    ConsumerError: lambda engine, event: engine.consumer_error(event),
    Connected: None,
    ServerError: None,
    ControlRetry: None,
}


def react(event: ClientEvent, engine: Engine[R]) -> R | None:
    """Do what ``event`` asks of ``engine``; return the action's result (None when the event
    asks nothing). An async engine awaits a result that is not None.

    Raises:
        LocalProtocolError: ``event`` is not a ``ClientEvent`` (a bug in the caller).
    """
    try:
        action = ACTIONS[type(event)]
    except KeyError:
        raise LocalProtocolError(f"not a client event: {event!r}") from None
    return None if action is None else action(engine, event)


class Phase(TableEnum):
    """Where an engine's connection is in its life (not the transport's state: that is the
    session's ``ConnState``)."""

    STARTING = "starting"  # dialling, the first handshake not finished
    OPEN = "open"  # started; reconnects happen inside this phase
    DRAINING = "draining"  # shutdown: waiting for the core's drain
    CLOSED = "closed"  # the client is closed: by the user, the reconnect policy or a crash


class Step(TableEnum):
    """What moves a :class:`Lifecycle` from one phase to the next."""

    STARTED = "started"  # the first handshake finished
    SHUTDOWN = "shutdown"  # the user closes (drain, then close)
    CLOSED = "closed"  # the client closed (``Closed`` event, or a close without drain)
    CRASHED = "crashed"  # the engine met a bug


#: (phase, step) → next phase. A pair not listed is a bug in the engine
#: (:class:`LocalProtocolError`). Closing and crashing are possible from every phase and
#: CLOSED is terminal; a shutdown of a closed connection is a no-op (a second ``close()``).
TRANSITIONS: Final[dict[tuple[Phase, Step], Phase]] = {
    (Phase.STARTING, Step.STARTED): Phase.OPEN,
    (Phase.STARTING, Step.CLOSED): Phase.CLOSED,
    (Phase.STARTING, Step.CRASHED): Phase.CLOSED,
    (Phase.OPEN, Step.SHUTDOWN): Phase.DRAINING,
    (Phase.OPEN, Step.CLOSED): Phase.CLOSED,
    (Phase.OPEN, Step.CRASHED): Phase.CLOSED,
    (Phase.DRAINING, Step.SHUTDOWN): Phase.DRAINING,
    (Phase.DRAINING, Step.CLOSED): Phase.CLOSED,
    (Phase.DRAINING, Step.CRASHED): Phase.CLOSED,
    (Phase.CLOSED, Step.SHUTDOWN): Phase.CLOSED,
    (Phase.CLOSED, Step.CLOSED): Phase.CLOSED,
    (Phase.CLOSED, Step.CRASHED): Phase.CLOSED,
}


def transition(phase: Phase, step: Step) -> Phase:
    """The phase ``step`` leads to from ``phase`` (:data:`TRANSITIONS`).

    Raises:
        LocalProtocolError: ``step`` cannot happen in ``phase`` (a bug in the engine).
    """
    return step_table(TRANSITIONS, phase, step, "the engine lifecycle")


class Lifecycle:
    """One connection's start, shutdown and crash policy, for the engine that drives ``client``.

    Not thread-safe: a threaded engine calls it under the lock it holds for the client.
    """

    __slots__ = ("client", "error", "phase")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.phase = Phase.STARTING
        #: Why the connection closed (None: closed by the user, or still open).
        self.error: MemphisError | None = None

    def _move(self, step: Step) -> Phase:
        self.phase = transition(self.phase, step)
        return self.phase

    @property
    def closed(self) -> bool:
        """True once the client is closed: waiters stop waiting, calls are refused."""
        return self.phase is Phase.CLOSED

    # ------------------------------------------------------------------ start

    def start_deadline(self, now: float) -> float:
        """When ``start`` stops waiting for the first handshake (monotonic seconds).

        Each given server may take a whole ``timeout`` (dial and handshake) before the next one
        is tried, so the net is ``len(servers) * timeout`` plus :data:`START_SLACK`.
        """
        options = self.client.options
        return now + len(options.servers) * options.timeout + START_SLACK

    def start_failure(self) -> MemphisConnectError | None:
        """The outcome of the wait for the first handshake: None if the client is connected
        (the connection is then open), else the error ``start`` raises once it has closed
        the engine (a close error that is not a connect error is wrapped in one, so that
        ``connect`` raises only ``MemphisConnectError``)."""
        if self.client.is_connected and not self.closed:
            self._move(Step.STARTED)
            return None
        error = self.error or MemphisConnectError("timed out connecting to the broker")
        return error if isinstance(error, MemphisConnectError) else MemphisConnectError(str(error))

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, now: float, timeout: float) -> Operation[None] | None:
        """Begin a close as a drain (once the engine stopped its consume loops): the core's
        drain operation to wait for, or None when the client is already closed (the close
        that ended it already failed, by name, everything it held). The engine closes
        afterwards whatever the drain's outcome (see :meth:`drain_failure`)."""
        if self._move(Step.SHUTDOWN) is Phase.CLOSED:
            return None
        return self.client.drain(now, timeout)

    @staticmethod
    def drain_failure(error: BaseException | None) -> CloseIncompleteError | None:
        """What a shutdown raises after the close, given the error the drain's wait ended with:
        a :class:`CloseIncompleteError` says what was not confirmed; any other error means the
        connection closed under the drain, which already failed everything it held by name."""
        return error if isinstance(error, CloseIncompleteError) else None

    def closed_by(self, error: MemphisError | None) -> None:
        """The client closed (its ``Closed`` event, or the engine's own ``close``)."""
        if not self.closed:
            self.error = error
        self._move(Step.CLOSED)

    # ------------------------------------------------------------------ crash

    def crash(self, exc: BaseException) -> Closed | None:
        """The engine met a bug (``exc``): close the client with an error naming it, so that
        every operation the core holds fails with it as the cause.

        Returns:
            the ``Closed`` event the engine dispatches like any other (announced, so that
            ``on_closed(error)`` runs, then :func:`react`: ``finish``), or None if there is
            nothing to dispatch: the connection was closed already, or the core's own
            ``Closed`` was taken before the crash and is being dispatched (it finishes).

        The phase moves first: if the core is what broke, closing it may break again, and the
        engine must still release its waiters (they raise :attr:`error`).
        """
        if self.closed:
            return None
        self._move(Step.CRASHED)
        self.error = error = MemphisError(f"memphis: internal error: {exc!r}")
        # If closing breaks too, the engine still announces the close it made itself: the
        # crash being reported is the one that matters, and on_closed must hear of it.
        closed: Closed | None = Closed(error)
        with contextlib.suppress(Exception):
            self.client.close(error)
            # Only the Closed event: the transport is dropped by ``finish``, and a crash is
            # not a disconnect to announce.
            closed = next((e for e in self.client.events() if isinstance(e, Closed)), None)
        return closed
