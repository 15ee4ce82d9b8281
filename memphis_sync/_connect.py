"""``memphis_sync.connect``: the blocking frontend's entry point (hand-written: it owns the
engine; the public classes it returns are generated from the async ones)."""

from __future__ import annotations

from collections.abc import Sequence

from _memphis_io import ConnectionCallbacks, ErrorCallback, EventCallback
from memphis_core import TLS, Client, connect_options

from ._connection import Connection
from ._driver import Driver

__all__ = ["connect"]


def connect(
    host: str | Sequence[str],
    username: str,
    *,
    connection_token: str | None = None,
    password: str | None = None,
    account_id: int = 1,
    port: int = 6666,
    reconnect: bool = True,
    max_reconnect: int = 10,
    reconnect_interval: float = 1.0,
    timeout: float = 15.0,
    tls: TLS | None = None,
    ignore_discovered_servers: bool = False,
    on_disconnected: ErrorCallback | None = None,
    on_reconnected: EventCallback | None = None,
    on_closed: ErrorCallback | None = None,
    on_error: ErrorCallback | None = None,
) -> Connection:
    """Connect to a Memphis broker; use as ``with memphis.connect(...) as conn:``.

    ``host`` is one server or several, as a list or comma-separated (``"h1:4222,h2:4222"``,
    ``nats://`` / ``tls://`` prefixes accepted, ``port`` where none is given); the servers a
    cluster advertises are added unless ``ignore_discovered_servers`` (docs/cluster-client.md).
    Exactly one of ``connection_token`` / ``password`` is required. Reconnects are automatic:
    a lost server is tried last, another is dialled at once, one server again only after
    ``reconnect_interval`` seconds; ``max_reconnect`` consecutive failed attempts end the
    connection (-1 = forever).

    Args:
        host: the server(s), see above.
        username: the Memphis user.
        connection_token: token auth (default None).
        password: password auth, as ``<username>$<account_id>`` (default None).
        account_id: the Memphis tenant for password auth (default 1).
        port: the port of servers given without one (default 6666).
        reconnect: re-establish a lost connection (default True).
        max_reconnect: consecutive failed attempts before giving up (default 10; -1 = forever).
        reconnect_interval: seconds before dialling the same server again (default 1.0).
        timeout: seconds for each dial and handshake (default 15.0).
        tls: client certificate, key and CA for mutual TLS (default None).
        ignore_discovered_servers: use only the servers given (default False).
        on_disconnected: ``callback(error)`` when the connection to a server is lost.
        on_reconnected: ``callback()`` once connected again after a loss.
        on_closed: ``callback(error)`` when the connection closes for good (``None`` after a
            ``close()``).
        on_error: ``callback(error)`` for a server ``-ERR`` that does not end the connection.
            Callbacks never run on the I/O path: they are plain functions, called in a
            thread of the connection.

    Raises:
        LocalProtocolError: bad arguments (nothing is dialled).
        MemphisConnectError: no server was reachable, or the broker refused the credentials.
    """
    options = connect_options(
        host,
        username,
        connection_token=connection_token,
        password=password,
        account_id=account_id,
        port=port,
        reconnect=reconnect,
        max_reconnect=max_reconnect,
        reconnect_interval=reconnect_interval,
        timeout=timeout,
        tls=tls,
        ignore_discovered_servers=ignore_discovered_servers,
    )
    callbacks = ConnectionCallbacks(
        on_disconnected=on_disconnected,
        on_reconnected=on_reconnected,
        on_closed=on_closed,
        on_error=on_error,
    )
    driver = Driver(Client(options), callbacks)
    driver.start()
    return Connection(driver)
