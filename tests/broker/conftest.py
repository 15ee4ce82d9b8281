"""Fixtures for the broker suite: a real nats-server + control plane, checked with nats-py.

The broker is exercised with plain nats-py (not our SDK), so it is verified independently of the
client. One token-mode broker is shared by the session; tests isolate themselves with unique
station names. Tests that restart things start their own broker.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.control_client import Body, connect

_counter = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(store_dir=tmp_path_factory.mktemp("broker")) as b:
        yield b


@pytest.fixture
def run(broker: EmbeddedBroker) -> Callable[[Body], None]:
    """Run an async test body with a connected :class:`Client` on the session broker."""

    def runner(body: Body) -> None:
        async def main() -> None:
            client = await connect(broker)
            try:
                await asyncio.wait_for(body(client), 60)
            finally:
                await client.nc.close()

        asyncio.run(main())

    return runner


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A station name unique to this test (valid, lower case)."""
    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:80]
    return f"{base}-{next(_counter)}"
