"""The arguments of ``connect()``, declared once for the three frontends.

``memphis_sync.connect`` and the async frontends' ``connect`` (``_memphis_async/_connect.py``)
take ``host, username, **options: Unpack[ConnectArgs]`` and hand them to
:func:`connect_arguments`, so the option list, its defaults, its checks and its documentation
exist once: the core's :class:`~memphis_core.memphis._options.ConnectKeywords`, the
callbacks and the OpenTelemetry options below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from memphis_core import Client, LocalProtocolError, MemphisError, connect_options
from memphis_core.memphis._options import ConnectKeywords

from ._callbacks import ConnectionCallbacks

if TYPE_CHECKING:
    # Only for type checkers: with none of the three options given, nothing from
    # opentelemetry is imported (docs/tracing.md).
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["ConnectArgs", "connect_arguments"]

#: What a callback returns: ``None`` in memphis_sync (``ConnectArgs[None]``), also an
#: awaitable in the async frontends.
R = TypeVar("R")


class ConnectArgs(ConnectKeywords, Generic[R], total=False):
    """The keyword options of ``connect(host, username, **options)``: those of
    :class:`ConnectKeywords` and the connection callbacks (nats-py's ``disconnected_cb`` and
    friends).

    Callbacks never run on the I/O path; each frontend's ``connect`` says where they run.
    The type parameter is what a callback may return. memphis_sync takes
    ``ConnectArgs[None]``, so a type checker refuses there a callback that returns anything.
    """

    #: ``callback(error)`` when the connection to a server is lost (default None).
    on_disconnected: Callable[[MemphisError | None], R] | None
    #: ``callback()`` once connected again after a loss (default None).
    on_reconnected: Callable[[], R] | None
    #: ``callback(error)`` once, when the connection closes for good, whatever closed it
    #: (``None`` after a ``close()``; the cause when reconnecting gave up or the engine met
    #: an internal error; default None).
    on_closed: Callable[[MemphisError | None], R] | None
    #: ``callback(error)`` for a server ``-ERR`` that does not end the connection (default
    #: None).
    on_error: Callable[[MemphisError | None], R] | None
    #: OpenTelemetry spans for produce, receive, process and settle go to this provider
    #: (default None). Giving it, ``meter_provider`` or ``instrument=True`` turns the
    #: instrumentation on (docs/tracing.md); it needs the ``otel`` extra
    #: (``pip install memphis-sansio[otel]``). A provider left out is the global one.
    tracer_provider: TracerProvider | None
    #: The OpenTelemetry metrics (``messaging.client.operation.duration`` and the others of
    #: docs/tracing.md) go to this provider (default None; see ``tracer_provider``).
    meter_provider: MeterProvider | None
    #: True: instrument with OpenTelemetry's global providers, or those given (default False:
    #: no instrumentation unless a provider is given; nothing from opentelemetry is imported).
    instrument: bool


def connect_arguments(
    host: str | Sequence[str], username: str, options: ConnectArgs[Any]
) -> tuple[Client, ConnectionCallbacks]:
    """``connect``'s arguments checked: the sans-IO client to drive (instrumented when asked)
    and the callbacks.

    Raises:
        TypeError: a keyword :class:`ConnectArgs` does not declare.
        LocalProtocolError: a bad option, a callback that is not callable, a provider that is
            not an OpenTelemetry one, or OpenTelemetry asked for without the ``otel`` extra
            installed (nothing is dialled).
    """
    on_disconnected = options.pop("on_disconnected", None)
    on_reconnected = options.pop("on_reconnected", None)
    on_closed = options.pop("on_closed", None)
    on_error = options.pop("on_error", None)
    tracer_provider = options.pop("tracer_provider", None)
    meter_provider = options.pop("meter_provider", None)
    instrument = options.pop("instrument", False)
    if not isinstance(instrument, bool):
        raise LocalProtocolError(f"instrument must be a bool, not {instrument!r}")
    # What is left is the core's (a ConnectArgs is a ConnectKeywords); it refuses anything else.
    core: ConnectKeywords = options
    checked = connect_options(host, username, **core)
    callbacks = ConnectionCallbacks(
        on_disconnected=on_disconnected,
        on_reconnected=on_reconnected,
        on_closed=on_closed,
        on_error=on_error,
    )
    client = Client(checked)
    if instrument or tracer_provider is not None or meter_provider is not None:
        try:
            from ._otel import Telemetry  # noqa: PLC0415 - only when asked for (docs/tracing.md)
        except ImportError as exc:
            raise LocalProtocolError(
                "OpenTelemetry instrumentation needs the otel extra: "
                "pip install 'memphis-sansio[otel]'"
            ) from exc
        client.observer = Telemetry(client, tracer_provider, meter_provider)
    return client, callbacks
