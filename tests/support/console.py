"""The console suite's broker handle, log-in step and screenshot type."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats

from tests.support.launcher import Launcher
from tests.support.names import TOKEN

__all__ = ["ConsoleBroker", "Screenshot", "log_in"]

T = TypeVar("T")


@dataclass
class ConsoleBroker:
    """A running ``memphis-broker`` with its console: the process, its NATS port, the URL."""

    proc: Launcher
    nats_port: int
    console_url: str  # ends with "/"

    def jetstream(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``body(js)`` on a fresh nats-py connection: the independent view of JetStream."""

        async def main() -> T:
            nc = await nats.connect(f"nats://127.0.0.1:{self.nats_port}", token=TOKEN)
            try:
                return await body(nc.jetstream())
            finally:
                await nc.close()

        # Playwright's sync API runs an event loop in this thread: asyncio gets its own.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, main()).result(timeout=60)


def log_in(page: Any, secret: str = TOKEN) -> None:
    """Log ``page`` in to the console as root with ``secret``."""
    page.goto("/login")
    page.fill("#username", "root")
    page.fill("#secret", secret)
    page.click("#login")


#: The ``screenshot`` fixture's type: ``screenshot(page, name)`` returns the PNG's path.
Screenshot = Callable[[Any, str], Path]
