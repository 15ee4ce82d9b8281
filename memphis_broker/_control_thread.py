"""``ControlPlaneThread``: a control plane on its own asyncio loop in a background thread.

What lets blocking code (the sync client, pytest, the launcher) own a control plane: the
embedded broker, the local cluster and the tests' failover cluster all run theirs this way.
``ControlPlaneGroup`` starts and stops one control plane per cluster node as one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from memphis_broker._control import ControlPlane

__all__ = ["ControlPlaneGroup", "ControlPlaneThread", "Plane"]


class Plane(Protocol):
    """What the thread runs: a :class:`~memphis_broker.ControlPlane`, or several as one."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


P = TypeVar("P", bound=Plane)


class ControlPlaneGroup:
    """Several control planes on one cluster (one per node, say), started and stopped as one.

    :meth:`start` starts the first plane alone, then the others together: the first creates the
    key-value buckets, and identical creates racing from several nodes on a fresh cluster
    sometimes go unanswered for a whole request timeout. :meth:`stop` stops every plane, and
    an error of one does not keep the others running (errors are not raised).
    """

    def __init__(self, planes: list[ControlPlane]) -> None:
        self.planes = planes

    async def start(self) -> None:
        await self.planes[0].start()
        await asyncio.gather(*(cp.start() for cp in self.planes[1:]))

    async def stop(self) -> None:
        await asyncio.gather(*(cp.stop() for cp in self.planes), return_exceptions=True)


class ControlPlaneThread(Generic[P]):
    """Runs the plane ``make()`` builds (on the thread's own loop) until :meth:`stop`.

    Args:
        make: builds the plane; called on the thread's loop, once per :meth:`start`.
        name: the thread's name.

    Attributes: ``loop`` (the thread's event loop, None before the first start) and ``plane``
    (the plane while it serves, else None).
    """

    def __init__(self, make: Callable[[], P], name: str) -> None:
        self._make = make
        self._name = name
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.plane: P | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and wait until the plane serves (no-op while it runs).

        Raises:
            Exception: whatever the plane's ``start()`` raised (it is stopped then).
            TimeoutError: it did not serve within ``timeout`` seconds.
        """
        if self.running:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(ready)), name=self._name, daemon=True
        )
        self._thread.start()
        ready.result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the plane and wait up to ``timeout`` seconds for the thread to end."""
        if self._thread is None:
            return
        if self.loop is not None and self._stop_event is not None:
            self.loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        self._thread = None

    async def _main(self, ready: Future[None]) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        plane = self._make()
        try:
            await plane.start()
        except BaseException as err:
            ready.set_exception(err)
            await plane.stop()
            return
        self.plane = plane
        ready.set_result(None)
        try:
            await self._stop_event.wait()
        finally:
            await plane.stop()
            self.plane = None
