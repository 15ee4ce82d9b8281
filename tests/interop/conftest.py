"""Interop fixtures: ONE session-scoped EmbeddedBroker shared by memphis-py, nats-py and our SDK.

* ``broker`` — token-mode ``EmbeddedBroker`` (token ``memphis``, user ``root``), free port,
  temporary store, for the whole session.
* ``sdk`` — an open ``memphis_sync`` connection to it, closed after the test.
* ``name`` — unique names per test: ``name("st")`` → ``<test>-st-<uuid>``.

Marker ``memphis_py_defect(n, ...)``: the test works around (never asserts) memphis-py 1.3.1
defect #n of reference/memphis-py 1.3.1's known defects (README, Features) (e.g. #1: ``bytes``
payloads rejected, so
``bytearray`` is used; #2: ``dict`` headers rejected, so ``memphis.Headers`` is used).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import memphis_sync
from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN, USER, unique


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "memphis_py_defect(*numbers): works around memphis-py 1.3.1 defects "
        "(memphis-py 1.3.1's known defects (README, Features)) instead of testing them",
    )


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(store_dir=tmp_path_factory.mktemp("interop-broker"), token=TOKEN) as b:
        yield b


@pytest.fixture
def sdk(broker: EmbeddedBroker) -> Iterator[memphis_sync.Connection]:
    with memphis_sync.connect(broker.host, USER, connection_token=TOKEN, port=broker.port) as conn:
        yield conn


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    test = request.node.name.split("[")[0].removeprefix("test_")[:30]

    def make(kind: str) -> str:
        return unique(f"{test}-{kind}")

    return make
