"""The overview's throughput sampler (``console._metrics.RateHistory``): it reads JetStream only
while the console is in use, and stops when asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from memphis_broker.console._metrics import ACTIVE_WINDOW_S, RateHistory


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for a condition the sampler's task reaches."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)
    assert condition(), what


def test_sampler_reads_only_while_the_console_is_in_use() -> None:
    async def main() -> None:
        now = [1000.0]
        reads: asyncio.Queue[None] = asyncio.Queue()

        async def totals() -> tuple[int, int]:
            reads.put_nowait(None)
            return reads.qsize(), 0

        history = RateHistory(totals, interval=0.001, clock=lambda: now[0])
        task = asyncio.create_task(history.run())
        # No browser has asked for a page: parked, no JetStream read at all.
        await _until(lambda: history.parked, "parked before any console use")
        assert reads.empty()

        history.touch()
        async with asyncio.timeout(5):
            await reads.get()
            await reads.get()
        await _until(lambda: len(history.points) > 0, "a rate point from two samples")

        # The window passes without another page request: parked again, reads stop.
        now[0] += ACTIVE_WINDOW_S
        await _until(lambda: history.parked, "parked once the window passed")
        while not reads.empty():
            reads.get_nowait()
        history.touch()
        async with asyncio.timeout(5):
            await reads.get()

        history.stop()
        async with asyncio.timeout(5):
            await task

    asyncio.run(main())


def test_sampler_stops_while_parked() -> None:
    async def main() -> None:
        async def totals() -> tuple[int, int]:
            raise AssertionError("no read expected")

        history = RateHistory(totals)
        task = asyncio.create_task(history.run())
        await _until(lambda: history.parked, "parked")
        history.stop()
        async with asyncio.timeout(5):
            await task

    asyncio.run(main())
