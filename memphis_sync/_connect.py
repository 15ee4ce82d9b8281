"""``memphis_sync.connect``: the blocking frontend's entry point (hand-written: it owns the
engine; the public classes it returns are generated from the async ones)."""

from __future__ import annotations

from memphis_core import TLS, Client, connect_options

from ._connection import Connection
from ._driver import Driver

__all__ = ["connect"]


def connect(
    host: str,
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
) -> Connection:
    """Connect to a Memphis broker; use as ``with memphis.connect(...) as conn:``.

    Exactly one of ``connection_token`` / ``password`` is required. Reconnects are automatic
    (``max_reconnect`` attempts per outage, ``reconnect_interval`` apart, -1 = forever).

    Raises:
        LocalProtocolError: bad arguments (nothing is dialled).
        MemphisConnectError: the broker is unreachable or refused the credentials.
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
    )
    driver = Driver(Client(options))
    driver.start()
    return Connection(driver)
