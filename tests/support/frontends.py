"""One blocking API over the three frontends, so that a single test body runs on all of them.

``memphis_sync`` is used as it is. For ``memphis_asyncio`` and ``memphis_trio`` a
:class:`Portal` runs that frontend's event loop in a background thread, and :class:`Blocking`
proxies its objects: every method call is executed *inside* the loop thread and, when it returns
an awaitable, awaited there; the caller blocks until the result arrives. Results that are
frontend objects (connections, stations, producers, consumers, messages) come back proxied too,
so a test written as ``conn.create_station(...).create_producer("p").produce(b"x")`` works
unchanged on all three.

The mapping, in full:

* ``obj.method(*args)`` → ``obj.method(*args)`` in the loop, ``await``-ed if awaitable;
* ``with obj:`` → ``async with obj:`` entered and exited by one task that the portal keeps
  (trio requires cancel scopes and nurseries to be entered and exited by the same task);
* ``for x in obj`` → ``async for x in obj`` (each ``__anext__`` awaited in the loop);
* a plain callable passed as an argument (``consume`` handlers, ``error_handler``) is handed to
  the frontend as an ``async`` function that runs the test's callable in a worker thread
  (``to_thread``), so the callable may itself call the blocking proxies (``msg.ack()``);
* exceptions propagate unchanged; module attributes that are classes (errors, enums,
  ``Headers``, ``TLS``) are passed through untouched.

Which frontends run: every one in ``ALL_FRONTENDS`` whose package exports ``connect``, or the
list in the environment variable ``MEMPHIS_CONFORMANCE_FRONTENDS`` (comma-separated ids, each
optionally ``id=module`` to test an out-of-tree package; an id containing ``trio`` runs on the
trio portal, ``sync`` directly, anything else on the asyncio portal).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType, TracebackType
from typing import Any, Literal

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN, USER

__all__ = [
    "ALL_FRONTENDS",
    "Frontend",
    "available_frontends",
    "connect_root",
    "frontend_fixtures",
    "open_frontend",
]

#: Frontend id → package. Order is the parametrisation order.
ALL_FRONTENDS: dict[str, str] = {
    "sync": "memphis_sync",
    "asyncio": "memphis_asyncio",
    "trio": "memphis_trio",
}


def connect_root(memphis: Any, broker: EmbeddedBroker, **options: Any) -> Any:
    """``memphis.connect()`` to ``broker`` as the suites' user, with the token; ``options`` are
    connect()'s other keywords. What it returns: a frontend's own (a connection, or for the
    async frontends an awaitable that is also an async context manager)."""
    return memphis.connect(broker.host, USER, connection_token=TOKEN, port=broker.port, **options)


def available_frontends() -> list[str]:
    """The frontends to test: ``MEMPHIS_CONFORMANCE_FRONTENDS``, else every importable one."""
    chosen = os.environ.get("MEMPHIS_CONFORMANCE_FRONTENDS", "").strip()
    if chosen:
        names = []
        for item in chosen.split(","):
            name, _, target = item.strip().partition("=")
            if target:
                ALL_FRONTENDS[name] = target
            names.append(name)
        return names
    found = []
    for name, package in ALL_FRONTENDS.items():
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        if callable(getattr(module, "connect", None)):
            found.append(name)
    return found


class Frontend:
    """A frontend as the tests see it.

    ``memphis`` is the blocking API namespace every test uses; ``module`` is the package itself
    and ``run(async_fn)`` runs a native coroutine function in the frontend's loop, for the few
    tests of async-only idioms (``async with connect(...)`` owning a nursery).
    """

    def __init__(
        self, name: str, memphis: Any, module: ModuleType, portal: Portal | None = None
    ) -> None:
        self.name = name
        self.memphis = memphis
        self.module = module
        self._portal = portal

    @property
    def is_async(self) -> bool:
        return self._portal is not None

    def run(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        if self._portal is None:
            raise TypeError(f"{self.name} is not an async frontend")
        return self._portal.call(fn)

    def close(self) -> None:
        if self._portal is not None:
            self._portal.stop()

    def __repr__(self) -> str:
        return f"Frontend({self.name!r})"


def open_frontend(name: str) -> Frontend:
    module = importlib.import_module(ALL_FRONTENDS[name])
    if name == "sync":
        return Frontend(name, module, module)
    portal: Portal = TrioPortal() if "trio" in name else AsyncioPortal()
    return Frontend(name, BlockingModule(module, portal), module, portal)


def frontend_fixtures(scope: Literal["session", "module"]) -> tuple[Any, Any]:
    """The ``frontend`` and ``memphis`` fixtures, parametrised over every available frontend,
    for a conftest: ``frontend, memphis = frontend_fixtures("session")``.

    ``scope`` is the frontend's: a suite with a broker per session opens each frontend once,
    the cluster suite (a cluster per module) once per module.
    """

    @pytest.fixture(scope=scope, params=available_frontends() or ["none"])
    def frontend(request: pytest.FixtureRequest) -> Iterator[Frontend]:
        if request.param == "none":
            pytest.skip("no frontend exports connect()")
        fe = open_frontend(request.param)
        yield fe
        fe.close()

    @pytest.fixture
    def memphis(frontend: Frontend) -> Any:
        """The API namespace of the current frontend (see the conformance conftest)."""
        return frontend.memphis

    return frontend, memphis


# ------------------------------------------------------------------------------- portals


class Portal:
    """Runs coroutines of one event loop (in its own thread) on behalf of blocking callers."""

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` inside the loop; await the result there if it is awaitable."""
        raise NotImplementedError

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Start a background task in the loop (used to hold async context managers)."""
        raise NotImplementedError

    def event(self) -> Any:
        """A loop-native event (``set()`` from inside the loop, ``await wait()``)."""
        raise NotImplementedError

    async def to_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking callable in a worker thread without blocking the loop."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


async def _call_and_await(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


class AsyncioPortal(Portal):
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="asyncio-portal", daemon=True
        )
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(_call_and_await(fn, args, kwargs), self._loop)
        return future.result()

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        def start() -> None:
            task: asyncio.Task[None] = self._loop.create_task(fn())  # type: ignore[arg-type]
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._loop.call_soon_threadsafe(start)

    def event(self) -> Any:
        return asyncio.Event()

    async def to_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class TrioPortal(Portal):
    def __init__(self) -> None:
        import trio

        self._trio = trio
        ready: concurrent.futures.Future[tuple[Any, Any, Any]] = concurrent.futures.Future()

        async def main() -> None:
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                ready.set_result((trio.lowlevel.current_trio_token(), nursery, done))
                await done.wait()
                nursery.cancel_scope.cancel()

        self._thread = threading.Thread(target=trio.run, args=(main,), name="trio-portal")
        self._thread.daemon = True
        self._thread.start()
        self._token, self._nursery, self._done = ready.result(10)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._trio.from_thread.run(
            _call_and_await, fn, args, kwargs, trio_token=self._token
        )

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._trio.from_thread.run_sync(self._nursery.start_soon, fn, trio_token=self._token)

    def event(self) -> Any:
        return self._trio.Event()

    async def to_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._trio.to_thread.run_sync(fn, *args)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._trio.from_thread.run_sync(self._done.set, trio_token=self._token)
        self._thread.join(10)


# ------------------------------------------------------------------------------- proxies


class BlockingModule:
    """The frontend module seen through a portal: ``connect`` and friends become blocking."""

    def __init__(self, module: ModuleType, portal: Portal) -> None:
        self._module = module
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if inspect.isclass(value) or not callable(value):
            return value
        return _blocking_callable(value, self._portal, self._module.__name__)

    def __repr__(self) -> str:
        return f"<blocking {self._module.__name__}>"


def _wrap(value: Any, portal: Portal, package: str) -> Any:
    if isinstance(value, list):
        return [_wrap(v, portal, package) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v, portal, package) for v in value)
    if isinstance(value, BaseException) or inspect.isclass(value):
        return value
    module = type(value).__module__ or ""
    if module.startswith(package) or module.lstrip("_").startswith("memphis_"):
        # Objects of the frontend (or the shared ``_memphis_async`` code) that carry async
        # methods, a context manager or an async iterator; plain data passes through as is.
        if any(inspect.iscoroutinefunction(getattr(type(value), n, None)) for n in dir(value)):
            return Blocking(value, portal, package)
        if hasattr(value, "__aenter__") or hasattr(value, "__aiter__"):
            return Blocking(value, portal, package)
    return value


def _unwrap_arg(value: Any, portal: Portal, package: str) -> Any:
    if isinstance(value, Blocking):
        return value._target
    if callable(value) and not inspect.isclass(value) and not inspect.iscoroutinefunction(value):
        fn = value

        async def bridged(*args: Any) -> Any:
            wrapped = [_wrap(a, portal, package) for a in args]
            return await portal.to_thread(fn, *wrapped)

        return bridged
    return value


def _blocking_callable(fn: Callable[..., Any], portal: Portal, package: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_unwrap_arg(a, portal, package) for a in args)
        kwargs = {k: _unwrap_arg(v, portal, package) for k, v in kwargs.items()}
        return _wrap(portal.call(fn, *args, **kwargs), portal, package)

    return call


class Blocking:
    """A frontend object whose async methods, context manager and iterator are made blocking."""

    def __init__(self, target: Any, portal: Portal, package: str) -> None:
        self._target = target
        self._portal = portal
        self._package = package
        self._exit: Any = None
        self._exited: concurrent.futures.Future[None] | None = None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not inspect.isclass(value):
            return _blocking_callable(value, self._portal, self._package)
        return _wrap(value, self._portal, self._package)

    def __enter__(self) -> Any:
        entered: concurrent.futures.Future[Any] = concurrent.futures.Future()
        exited: concurrent.futures.Future[None] = concurrent.futures.Future()
        exit_event = self._portal.call(self._portal.event)
        target = self._target

        async def holder() -> None:
            try:
                async with target as value:
                    entered.set_result(value)
                    await exit_event.wait()
            except BaseException as err:  # surfaced to whichever side is waiting
                if not entered.done():
                    entered.set_exception(err)
                else:
                    exited.set_exception(err)
                if not isinstance(err, Exception):
                    raise
            else:
                exited.set_result(None)

        self._portal.spawn(holder)
        value = entered.result()
        self._exit, self._exited = exit_event, exited
        return _wrap(value, self._portal, self._package)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._exited is not None
        self._portal.call(self._exit.set)
        self._exited.result()

    def __iter__(self) -> Iterator[Any]:
        iterator = self._portal.call(self._target.__aiter__)
        try:
            while True:
                try:
                    item = self._portal.call(iterator.__anext__)
                except StopAsyncIteration:
                    return
                yield _wrap(item, self._portal, self._package)
        finally:
            # ``break`` in the test closes the async generator in its loop (``aclose``).
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                self._portal.call(aclose)

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"
