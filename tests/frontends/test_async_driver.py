"""The shared async driver (``_memphis_async._driver``) over each backend, with a stand-in
client and stream (no broker): what happens to a write that fails in a caller's task."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from _memphis_async._driver import Driver
from _memphis_io import ConnectionCallbacks
from memphis_asyncio._backend import AsyncioBackend
from memphis_core import ConnectionClosedError
from memphis_core.nats._events import Closed
from memphis_trio._backend import TrioBackend


class _GivesUpClient:
    """Stands in for ``memphis_core.Client`` with reconnect off: a request to write, and a
    transport failure that closes the client for good."""

    options = SimpleNamespace(tls=None)
    server_name = "127.0.0.1:6666"

    def __init__(self) -> None:
        self._events: list[Any] = []

    def data_to_send(self) -> bytes:
        return b"PING\r\n"

    def connection_failed(self, now: float, error: BaseException) -> None:
        self._events.append(Closed(ConnectionClosedError(f"lost: {error}")))

    def events(self) -> list[Any]:
        events, self._events = self._events, []
        return events


class _BrokenStream:
    async def send_all(self, data: bytes) -> None:
        raise ConnectionResetError("reset by peer")

    async def aclose(self) -> None:
        pass


class _NoSpawner:
    def spawn(self, fn: Any, name: str) -> Any:
        raise AssertionError("nothing here runs off the caller's task")


def _driver(backend: Any, closed_seen: list[object]) -> Driver:
    async def on_closed(error: object) -> None:
        await (trio.sleep(0) if isinstance(backend, TrioBackend) else asyncio.sleep(0))
        closed_seen.append(error)

    driver = Driver(
        _GivesUpClient(),  # type: ignore[arg-type]
        backend,
        _NoSpawner(),
        ConnectionCallbacks(on_closed=on_closed),
    )
    driver._stream = _BrokenStream()  # type: ignore[assignment]
    return driver


def test_trio_write_failing_in_a_cancelled_caller_still_closes() -> None:
    """The caller's cancellation must not cut the dispatch of the close its write caused:
    ``on_closed`` runs and the driver is closed (every waiter released)."""

    async def body() -> None:
        closed_seen: list[object] = []
        driver = _driver(TrioBackend(), closed_seen)
        with trio.CancelScope() as scope:
            scope.cancel()
            await driver.write_through()
        assert driver.closed
        assert len(closed_seen) == 1

    trio.run(body)


def test_asyncio_write_failing_in_a_cancelled_caller_still_closes() -> None:
    async def body() -> None:
        closed_seen: list[object] = []
        driver = _driver(AsyncioBackend(), closed_seen)

        async def caller() -> None:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await driver.write_through()

        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(caller())
        async with asyncio.timeout(5):
            while not driver.closed:
                await asyncio.sleep(0.01)
        assert len(closed_seen) == 1

    asyncio.run(body())
