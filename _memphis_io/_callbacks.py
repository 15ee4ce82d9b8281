"""Connection callbacks (nats-py's ``disconnected_cb`` and friends), the same in every frontend.

``connect(on_disconnected=..., on_reconnected=..., on_closed=..., on_error=...)``. Each driver
passes every connection event to :meth:`ConnectionCallbacks.announce` (which logs it) and runs
the callbacks it returns off its I/O path (a task in the async frontends, where a callback may
be a coroutine function; a thread in memphis_sync, which refuses coroutine functions), so a
slow or failing callback cannot stall the connection. What the engine itself does with the
event is ``memphis_core.react``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from memphis_core import (
    Closed,
    Connected,
    ConsumerError,
    ControlRetry,
    Disconnected,
    LocalProtocolError,
    MemphisError,
    ServerError,
)
from memphis_core.nats._events import TransportEvent

from ._log import log_event

__all__ = ["ConnectionCallbacks", "ErrorCallback", "EventCallback"]

#: ``callback(error)``: the cause (``None`` for a close the user asked for).
ErrorCallback = Callable[[MemphisError | None], Awaitable[None] | None]
#: ``callback()``.
EventCallback = Callable[[], Awaitable[None] | None]


class ConnectionCallbacks:
    """The four optional connection callbacks, checked when ``connect`` is called.

    Raises:
        LocalProtocolError: a callback that is not callable (nothing is dialled).
    """

    __slots__ = ("on_closed", "on_disconnected", "on_error", "on_reconnected")

    def __init__(
        self,
        *,
        on_disconnected: ErrorCallback | None = None,
        on_reconnected: EventCallback | None = None,
        on_closed: ErrorCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.on_disconnected = on_disconnected
        self.on_reconnected = on_reconnected
        self.on_closed = on_closed
        self.on_error = on_error
        for name, value in self.named():
            if value is not None and not callable(value):
                raise LocalProtocolError(f"{name} must be callable, not {type(value).__name__}")

    def named(self) -> list[tuple[str, Callable[..., Any] | None]]:
        """Each callback with the name of its ``connect`` parameter (None: not given)."""
        return [(name, getattr(self, name)) for name in self.__slots__]

    def announce(
        self, event: TransportEvent | ConsumerError | ControlRetry, server: str
    ) -> list[tuple[Callable[..., Any], tuple[Any, ...]]]:
        """Log ``event`` (``server``: the ``host:port`` in use) and return the callbacks it
        triggers, with their arguments, for the engine to run off its I/O path."""
        log_event(event, server)
        return self.calls_for(event)

    def calls_for(
        self, event: TransportEvent | ConsumerError | ControlRetry
    ) -> list[tuple[Callable[..., Any], tuple[Any, ...]]]:
        """The callbacks ``event`` triggers, with their arguments (often none)."""
        if isinstance(event, Disconnected) and self.on_disconnected is not None:
            return [(self.on_disconnected, (event.error,))]
        if isinstance(event, Connected) and event.reconnected and self.on_reconnected is not None:
            return [(self.on_reconnected, ())]
        if isinstance(event, Closed) and self.on_closed is not None:
            return [(self.on_closed, (event.error,))]
        if isinstance(event, ServerError) and self.on_error is not None:
            return [(self.on_error, (MemphisError(f"server error: {event.message}"),))]
        return []
