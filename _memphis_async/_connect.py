"""``connect`` for the async frontends: memphis_trio and memphis_asyncio bind
:func:`make_connect` to their backend.

``connect(...)`` returns a :class:`Connecting`, usable two ways:

* ``async with connect(...) as conn:`` — structured: the connection's tasks (the reader, the
  pump, consume loops, error-handler calls) live in a task group owned by the block (a trio
  nursery); leaving the block closes the connection and waits for them.
* ``conn = await connect(...)`` — the tasks are spawned on the loop itself (trio: as system
  tasks) and live until ``await conn.close()``. ``async with conn:`` closes it too.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from _memphis_io import ConnectionCallbacks, ErrorCallback, EventCallback
from memphis_core import TLS, Client, connect_options
from memphis_core.memphis._options import ConnectOptions

from ._connection import Connection
from ._driver import Driver

if TYPE_CHECKING:
    from ._backend import Backend, Spawner

__all__ = ["ConnectFunction", "Connecting", "make_connect"]


class Connecting:
    """What ``connect(...)`` returns: ``await`` it, or ``async with`` it."""

    def __init__(
        self, backend: Backend, options: ConnectOptions, callbacks: ConnectionCallbacks
    ) -> None:
        self._backend = backend
        self._options = options
        self._callbacks = callbacks
        self._group: Any = None
        self._connection: Connection | None = None

    async def _open(self, spawner: Spawner) -> Connection:
        driver = Driver(Client(self._options), self._backend, spawner, self._callbacks)
        await driver.start()
        return Connection(driver)

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open(self._backend.background_spawner()).__await__()

    async def __aenter__(self) -> Connection:
        group = self._backend.open_task_group()
        spawner = await group.__aenter__()
        try:
            self._connection = await self._open(spawner)
        except BaseException:
            await group.__aexit__(None, None, None)
            raise
        self._group = group
        return self._connection

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._connection is not None:
                await self._connection.close()
        finally:
            # The block's own exception is not handed to the group: our tasks are stopped by
            # now, and a nursery would wrap it in an ExceptionGroup.
            try:
                await self._group.__aexit__(None, None, None)
            except BaseException as group_error:
                # A cancellation of our own tasks must not replace the block's exception (the
                # caller's cancellation is delivered again at its next checkpoint).
                if e is None or not self._backend.only_cancellations(group_error):
                    raise


class ConnectFunction(Protocol):
    """The signature of ``memphis_trio.connect`` / ``memphis_asyncio.connect``."""

    def __call__(
        self,
        host: str | Sequence[str],
        username: str,
        *,
        connection_token: str | None = ...,
        password: str | None = ...,
        account_id: int = ...,
        port: int = ...,
        reconnect: bool = ...,
        max_reconnect: int = ...,
        reconnect_interval: float = ...,
        timeout: float = ...,
        tls: TLS | None = ...,
        ignore_discovered_servers: bool = ...,
        on_disconnected: ErrorCallback | None = ...,
        on_reconnected: EventCallback | None = ...,
        on_closed: ErrorCallback | None = ...,
        on_error: ErrorCallback | None = ...,
    ) -> Connecting: ...


def make_connect(backend: Backend) -> ConnectFunction:
    """``connect`` for one backend (the frontends' only glue besides the backend itself)."""

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
    ) -> Connecting:
        """Connect to a Memphis broker: ``async with connect(...) as conn`` or
        ``conn = await connect(...)``.

        ``host`` is one server or several, as a list or comma-separated (``"h1:4222,h2:4222"``,
        ``nats://`` / ``tls://`` prefixes accepted, ``port`` where none is given); the servers a
        cluster advertises are added unless ``ignore_discovered_servers`` (docs/cluster-client.md).
        Exactly one of ``connection_token`` / ``password`` is required. Reconnects are automatic:
        a lost server is tried last, another is dialled at once, one server again only after
        ``reconnect_interval`` seconds; once every server failed ``max_reconnect`` attempts the
        connection closes (-1 = forever). So an outage of about ``max_reconnect *
        reconnect_interval`` seconds (10 s with the defaults) is survived, however many servers.

        Args:
            host: the server(s), see above.
            username: the Memphis user.
            connection_token: token auth (default None).
            password: password auth, as ``<username>$<account_id>`` (default None).
            account_id: the Memphis tenant for password auth (default 1).
            port: the port of servers given without one (default 6666).
            reconnect: re-establish a lost connection (default True).
            max_reconnect: failed attempts per server before giving up, as nats.go's
                ``MaxReconnect`` (default 10; -1 = forever).
            reconnect_interval: seconds before dialling the same server again (default 1.0).
            timeout: seconds for each dial and handshake (default 15.0).
            tls: client certificate, key and CA for mutual TLS (default None).
            ignore_discovered_servers: use only the servers given (default False).
            on_disconnected: ``callback(error)`` when the connection to a server is lost.
            on_reconnected: ``callback()`` once connected again after a loss.
            on_closed: ``callback(error)`` when the connection closes for good (``None`` after a
                ``close()``).
            on_error: ``callback(error)`` for a server ``-ERR`` that does not end the connection.
                Callbacks never run on the I/O path: in their own task (they may be coroutine
                functions) in the async frontends, in a thread in memphis_sync.

        Raises:
            LocalProtocolError: bad arguments, at once (nothing is dialled).
            MemphisConnectError: on ``await`` / entering: no server was reachable, or the
                broker refused the credentials.
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
        return Connecting(backend, options, callbacks)

    return connect
