"""Connection callbacks (nats-py's ``disconnected_cb`` and friends), the same in every frontend.

``connect(on_disconnected=..., on_reconnected=..., on_closed=..., on_error=...)``. Each driver
passes every connection event to :meth:`ConnectionCallbacks.calls_for` and runs what it returns
off its I/O path (a task in the async frontends, where a callback may be a coroutine function;
a thread in memphis_sync), so a slow or failing callback cannot stall the connection.
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
        for name, value in (
            ("on_disconnected", on_disconnected),
            ("on_reconnected", on_reconnected),
            ("on_closed", on_closed),
            ("on_error", on_error),
        ):
            if value is not None and not callable(value):
                raise LocalProtocolError(f"{name} must be callable, not {type(value).__name__}")
        self.on_disconnected = on_disconnected
        self.on_reconnected = on_reconnected
        self.on_closed = on_closed
        self.on_error = on_error

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
