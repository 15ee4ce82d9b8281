"""Fixtures for the frontend tests: one embedded broker per module, and ``lib`` (asyncio, trio)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.async_lib import Lib
from tests.support.names import TOKEN


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(token=TOKEN) as b:
        yield b


@pytest.fixture(params=["asyncio", "trio"])
def lib(request: pytest.FixtureRequest) -> Lib:
    return Lib(request.param)
