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

from collections.abc import Awaitable, Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Unpack

from _memphis_io import ConnectionCallbacks
from _memphis_io._connect import ConnectArgs, connect_arguments
from memphis_core import Client

from ._connection import Connection
from ._driver import Driver

if TYPE_CHECKING:
    from ._backend import Backend, Spawner

__all__ = ["ConnectFunction", "Connecting", "make_connect"]


class Connecting:
    """What ``connect(...)`` returns: ``await`` it, or ``async with`` it."""

    def __init__(self, backend: Backend, client: Client, callbacks: ConnectionCallbacks) -> None:
        self._backend = backend
        self._client = client
        self._callbacks = callbacks
        self._group: Any = None
        self._connection: Connection | None = None

    async def _open(self, spawner: Spawner) -> Connection:
        driver = Driver(self._client, self._backend, spawner, self._callbacks)
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
    """The type of ``memphis_trio.connect`` / ``memphis_asyncio.connect``."""

    def __call__(
        self,
        host: str | Sequence[str],
        username: str,
        **options: Unpack[ConnectArgs[Awaitable[None] | None]],
    ) -> Connecting:
        """Connect to a Memphis broker: ``async with connect(...) as conn`` or
        ``conn = await connect(...)``.

        The callbacks of :class:`ConnectArgs` may be plain or coroutine functions; each call
        runs in a task of its own, never on the I/O path.

        Args:
            host: the server(s), as :class:`ConnectKeywords` describes.
            username: the Memphis user.
            options: the options of :class:`ConnectArgs`.

        Raises:
            TypeError: an unknown keyword, at once.
            LocalProtocolError: bad arguments, at once (nothing is dialled).
            MemphisConnectError: on ``await`` / entering: no server was reachable, or the
                broker refused the credentials.
        """
        ...


def make_connect(backend: Backend) -> ConnectFunction:
    """``connect`` for one backend (the frontends' only glue besides the backend itself)."""

    def connect(
        host: str | Sequence[str],
        username: str,
        **options: Unpack[ConnectArgs[Awaitable[None] | None]],
    ) -> Connecting:
        return Connecting(backend, *connect_arguments(host, username, options))

    # Written once, on the type: an IDE shows it from there, help() and the reference from here.
    connect.__doc__ = ConnectFunction.__call__.__doc__
    return connect
