"""Fixtures for the frontend tests: one embedded broker per module (``broker``), one of the test's
own (``own_broker``) for tests that kill, freeze or stop its server, and ``lib`` (asyncio, trio)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.async_lib import Lib
from tests.support.names import TOKEN


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(token=TOKEN) as b:
        yield b


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, with its file store in ``tmp_path``."""
    with EmbeddedBroker(store_dir=tmp_path / "store", token=TOKEN) as running:
        yield running


@pytest.fixture(params=["asyncio", "trio"])
def lib(request: pytest.FixtureRequest) -> Lib:
    return Lib(request.param)
