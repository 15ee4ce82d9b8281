"""One shape for asyncio and trio, so that each async test body runs on both frontends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import trio

import memphis_asyncio
import memphis_trio

__all__ = ["Lib"]


class Lib:
    """What a test needs from the event loop library."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.memphis: ModuleType = memphis_asyncio if name == "asyncio" else memphis_trio

    def __repr__(self) -> str:
        return self.name

    def run(self, fn: Callable[[], Awaitable[None]]) -> None:
        if self.name == "asyncio":

            async def main() -> None:
                await fn()

            asyncio.run(main())
        else:
            trio.run(fn)

    def event(self) -> Any:
        return asyncio.Event() if self.name == "asyncio" else trio.Event()

    async def gather(self, *fns: Callable[[], Awaitable[None]]) -> None:
        """Run ``fns`` concurrently until all are done."""
        if self.name == "asyncio":
            async with asyncio.TaskGroup() as group:
                for fn in fns:

                    async def run(fn: Callable[[], Awaitable[None]] = fn) -> None:
                        await fn()

                    group.create_task(run())
        else:
            async with trio.open_nursery() as nursery:
                for fn in fns:
                    nursery.start_soon(fn)

    async def to_thread(self, fn: Callable[[], object]) -> None:
        if self.name == "asyncio":
            await asyncio.to_thread(fn)
        else:
            await trio.to_thread.run_sync(fn)

    @contextlib.asynccontextmanager
    async def cancel_after(self, seconds: float) -> AsyncIterator[list[bool]]:
        """Cancel the block after ``seconds`` (0 = at its first checkpoint); yields [cancelled]."""
        caught = [False]
        if self.name == "asyncio":
            try:
                async with asyncio.timeout(seconds):
                    yield caught
            except TimeoutError:
                caught[0] = True
        else:
            with trio.move_on_after(seconds) as scope:
                yield caught
            caught[0] = scope.cancelled_caught

    @contextlib.asynccontextmanager
    async def fail_after(self, seconds: float) -> AsyncIterator[None]:
        """A test deadline: a hang becomes a failure."""
        if self.name == "asyncio":
            async with asyncio.timeout(seconds):
                yield
        else:
            with trio.fail_after(seconds):
                yield

    async def sleep(self, seconds: float) -> None:
        """A pause inside a test scenario (a slow handler), never used to wait for a result."""
        if self.name == "asyncio":
            await asyncio.sleep(seconds)
        else:
            await trio.sleep(seconds)

    async def wait(self, event: Any, seconds: float = 10.0) -> None:
        async with self.fail_after(seconds):
            await event.wait()
