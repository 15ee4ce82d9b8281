"""Conformance suite: every call, default and error, against a real broker.

How one test body runs on all three frontends
---------------------------------------------
Tests are plain (blocking) functions that talk to the ``memphis`` fixture, a namespace with the
public API of (``memphis.connect``, ``memphis.RetentionType``, ``memphis.MemphisError``,
...). For the sync frontend it *is* the ``memphis_sync`` module. For ``memphis_asyncio`` and
``memphis_trio`` it is a blocking proxy (``_frontends.BlockingModule``): the frontend's event loop
runs in a background thread and every call is executed and awaited there, ``with`` maps to
``async with`` (entered and exited by one task), ``for`` to ``async for``, and plain handler
callables are bridged to ``async`` callables that run them in a worker thread. So the tests
never mention ``await``; the proxy is the only place that knows a frontend is async.

The frontends are those whose package exports ``connect`` (select one with
``pytest -k '[sync]'``, or set ``MEMPHIS_CONFORMANCE_FRONTENDS=sync,trio``). The few async-only
idioms (``async with connect()`` owning a nursery) are tested natively through
``frontend.run(async_fn)``; everything else is one body for all three.

Fixtures
--------
* ``broker`` — ONE token-mode ``EmbeddedBroker`` (token ``memphis``, user ``root``) for the whole
  session, on a free port with a temporary store. ``password_broker`` — a second one in
  user/password mode (root / ``memphis``), started on first use. ``restartable`` — a broker
  of the test's own, for the reconnect tests that kill nats-server.
* ``memphis`` — the API namespace of the current frontend (parametrised).
* ``connect`` — ``connect(**overrides)`` with the session broker's host/port/token filled in;
  connections it opens are closed after the test.
* ``conn`` — one open connection for the test.
* ``probe`` — :class:`BrokerProbe`, a read-only nats-py view of the broker's streams, durable
  consumers and DLS rows, to check effects on the broker rather than the client's say-so.
* ``name`` — a name factory: ``name("orders")`` → ``orders-<uuid>``; every station, producer,
  consumer and schema in the suite is unique, so tests never interfere.

Everything about starting the broker lives in this file; adapt here if its API changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.frontends import frontend_fixtures
from tests.support.names import PASSWORD, TOKEN, USER, unique
from tests.support.probe import BrokerProbe, connections


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    store = tmp_path_factory.mktemp("conformance-broker")
    with EmbeddedBroker(store_dir=store, token=TOKEN) as b:
        yield b


@pytest.fixture(scope="session")
def password_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    store = tmp_path_factory.mktemp("conformance-password-broker")
    with EmbeddedBroker(store_dir=store, users={}, root_password=PASSWORD) as b:
        yield b


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own (file store in tmp_path), for tests that kill the server."""
    with EmbeddedBroker(store_dir=tmp_path / "store", token=TOKEN) as b:
        yield b


@pytest.fixture(scope="session")
def probe(broker: EmbeddedBroker) -> Iterator[BrokerProbe]:
    p = BrokerProbe(broker)
    yield p
    p.close()


frontend, memphis = frontend_fixtures("session")


@pytest.fixture
def connect(memphis: Any, broker: EmbeddedBroker) -> Iterator[Callable[..., Any]]:
    with connections(memphis, broker, USER, connection_token=TOKEN) as connect:
        yield connect


@pytest.fixture
def conn(connect: Callable[..., Any]) -> Any:
    return connect()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    test = request.node.name.split("[")[0].removeprefix("test_")

    def make(kind: str = "") -> str:
        return unique(f"{test[:40]}-{kind}" if kind else test[:50])

    return make
