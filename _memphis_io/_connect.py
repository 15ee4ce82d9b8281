"""The arguments of ``connect()``, declared once for the three frontends.

``memphis_sync.connect`` and the async frontends' ``connect`` (``_memphis_async/_connect.py``)
take ``host, username, **options: Unpack[ConnectArgs]`` and hand them to
:func:`connect_arguments`, so the option list, its defaults, its checks and its documentation
exist once: the core's :class:`~memphis_core.memphis._options.ConnectKeywords` and the
callbacks below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from memphis_core import MemphisError, connect_options
from memphis_core.memphis._options import ConnectKeywords, ConnectOptions

from ._callbacks import ConnectionCallbacks

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


def connect_arguments(
    host: str | Sequence[str], username: str, options: ConnectArgs[Any]
) -> tuple[ConnectOptions, ConnectionCallbacks]:
    """``connect``'s arguments checked: the core's options and the callbacks.

    Raises:
        TypeError: a keyword :class:`ConnectArgs` does not declare.
        LocalProtocolError: a bad option or a callback that is not callable (nothing is
            dialled).
    """
    on_disconnected = options.pop("on_disconnected", None)
    on_reconnected = options.pop("on_reconnected", None)
    on_closed = options.pop("on_closed", None)
    on_error = options.pop("on_error", None)
    # What is left is the core's (a ConnectArgs is a ConnectKeywords); it refuses anything else.
    core: ConnectKeywords = options
    checked = connect_options(host, username, **core)
    callbacks = ConnectionCallbacks(
        on_disconnected=on_disconnected,
        on_reconnected=on_reconnected,
        on_closed=on_closed,
        on_error=on_error,
    )
    return checked, callbacks
