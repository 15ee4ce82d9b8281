"""Fixtures for the ``memphis`` command's tests: one broker, and the CLI run in-process.

* ``broker`` — ONE token-mode ``memphis_broker.EmbeddedBroker`` for the session (free port,
  temporary store, token ``memphis``), stopped at the end.
* ``cli`` — ``cli("station", "list", stdin=...)`` runs ``memphis_cli.main(argv)`` in this
  process with the broker's address in MEMPHIS_HOST/PORT/CONNECTION_TOKEN (every other
  MEMPHIS_* variable removed) and returns the exit code and captured stdout/stderr.
* ``name`` — unique station/consumer names, so tests never see each other's state.
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from memphis_broker import EmbeddedBroker
from memphis_cli import main
from tests.support.cli import Cli, Result
from tests.support.names import TOKEN


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(store_dir=tmp_path_factory.mktemp("cli-broker"), token=TOKEN) as b:
        yield b


@pytest.fixture
def broker_env(broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for var in list(os.environ):
        if var.startswith("MEMPHIS_"):
            monkeypatch.delenv(var)
    env = {
        "MEMPHIS_HOST": broker.host,
        "MEMPHIS_PORT": str(broker.port),
        "MEMPHIS_CONNECTION_TOKEN": TOKEN,
    }
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return env


@pytest.fixture
def cli(
    broker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    def run(*argv: str, stdin: str | bytes | None = None) -> Result:
        capsys.readouterr()
        if isinstance(stdin, bytes):
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        elif stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def name() -> Callable[[str], str]:
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"
