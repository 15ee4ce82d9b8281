"""``memphis_sync.connect``: the blocking frontend's entry point (hand-written: it owns the
engine; the public classes it returns are generated from the async ones)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from _memphis_io._connect import ConnectArgs, connect_arguments

from ._connection import Connection
from ._driver import Driver

__all__ = ["Connecting", "connect"]

#: What :func:`connect` returns. In the async frontends it is an object to ``await`` or to use
#: in ``async with``; in this blocking one, the :class:`Connection` itself (use it in ``with``,
#: or call ``close()``). The name exists so that code annotated for one frontend reads the same
#: in all three.
Connecting = Connection


def connect(
    host: str | Sequence[str], username: str, **options: Unpack[ConnectArgs[None]]
) -> Connection:
    """Connect to a Memphis broker and return the open connection; use it as ``with
    memphis.connect(...) as conn:``, which closes it at the end of the block.

    The callbacks of :class:`ConnectArgs` are plain functions, called in order in one thread of
    the connection, never on the I/O thread.

    Args:
        host: the server(s), as :class:`ConnectKeywords` describes.
        username: the Memphis user.
        options: the options of :class:`ConnectArgs`.

    Raises:
        TypeError: an unknown keyword.
        LocalProtocolError: bad arguments (nothing is dialled).
        MemphisConnectError: no server was reachable, or the broker refused the credentials.
    """
    client, callbacks = connect_arguments(host, username, options)
    driver = Driver(client, callbacks)
    driver.start()
    return Connection(driver)
